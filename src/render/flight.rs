//! Single flight for tile misses: when several workers miss the same tile at once,
//! one decodes it and the others wait (up to `SINGLE_FLIGHT_WAIT`) for it to reach
//! the shared cache instead of decoding it too. A waiter gives up at the bound or as
//! soon as the decoding worker is found dead, and then decodes the tile itself.
//!
//! A waiting worker does not serve its other connections meanwhile; it waits at most
//! about as long as decoding the tile itself would have kept it busy.

use std::sync::OnceLock;
use std::time::Duration;

struct SingleFlight {
    flights: &'static shm::Flights,
    bound: Duration,
}

/// This worker's table of tiles in flight, set once when it starts.
static FLIGHTS: OnceLock<SingleFlight> = OnceLock::new();

/// Gives this worker the table of tiles in flight; single flight is off when `bound`
/// is zero (decodes are still counted).
pub fn install(flights: &'static shm::Flights, bound: Duration) {
    let _ = FLIGHTS.set(SingleFlight { flights, bound });
}

/// What a tile miss does next.
pub enum Miss {
    /// The tile reached the cache while this worker waited.
    Cached(Vec<u8>),
    /// Decode it; other workers that miss it meanwhile wait while the mark (if any)
    /// is held, so keep it until the tile is stored.
    Decode(Option<shm::Flight<'static>>),
}

/// Called on a miss of `key`: waits for another worker's decode of the same tile, or
/// marks this one's.
pub fn on_miss(cache: &shm::Cache, key: (u64, u64)) -> Miss {
    let Some(sf) = FLIGHTS.get() else {
        return Miss::Decode(None);
    };
    if sf.bound.is_zero() {
        sf.flights.record_decoded();
        return Miss::Decode(None);
    }
    let mark = match sf.flights.begin(key) {
        shm::Begin::Lead(flight) => {
            // Another worker may have stored it and gone between this worker's miss
            // and its mark: its store comes before its mark's release.
            if let Some(bytes) = stored(cache, key) {
                return Miss::Cached(bytes);
            }
            Some(flight)
        }
        shm::Begin::Alone => None,
        shm::Begin::Follow(waiter) => {
            let end = waiter.wait(sf.bound, || cache.contains(key));
            if let Some(bytes) = stored(cache, key) {
                return Miss::Cached(bytes);
            }
            log::debug!("single flight: decoding after the wait ended ({end:?})");
            None
        }
    };
    sf.flights.record_decoded();
    Miss::Decode(mark)
}

/// The value of `key` if the cache holds it, looked up only then (a lookup that
/// misses counts as a miss, and this one already did).
fn stored(cache: &shm::Cache, key: (u64, u64)) -> Option<Vec<u8>> {
    cache.contains(key).then(|| cache.get(key)).flatten()
}

/// Stores a decoded tile: one other workers wait for is kept even when a full cache
/// would refuse a new key (several clients asked for it at once).
pub fn store(
    cache: &shm::Cache,
    key: (u64, u64),
    bytes: &[u8],
    mark: Option<&shm::Flight>,
) -> bool {
    if mark.is_some_and(shm::Flight::followed) {
        cache.put_admitted(key, bytes)
    } else {
        cache.put(key, bytes)
    }
}
