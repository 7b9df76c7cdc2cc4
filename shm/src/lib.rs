//! Shared-memory cache for tessera's forked workers.
//!
//! The supervisor creates one region before forking (a memfd mapped `MAP_SHARED`, so
//! every worker inherits the same pages; `memmap2::map_anon` would be private after
//! fork, and the `shared_memory` crate uses named segments and no crash-safe locking).
//! The region holds a header of counters, an index and an arena. Values of any size
//! (up to a quarter of the arena) are written one after another into the arena, a ring
//! whose positions only grow, so the budget holds as many small tiles as fit, byte for
//! byte; the oldest are overwritten first, and a value still being read when its turn
//! comes is written again at the head (a second chance, so a scan of new tiles does not
//! flush the ones in use). Once the arena is full, a new value is stored only if its
//! key missed recently or, at random, once in 64 times, so that walking more tiles than
//! fit keeps a steady part of them instead of replacing everything before it is read
//! again. A key maps to a small set of candidate index entries (set-associative), where
//! a CLOCK bit per entry picks the victim.
//!
//! Every index entry is guarded by a seqlock of atomics: readers never block and copy
//! the value out, then re-check the sequence and that the arena has not overwritten it
//! meanwhile (a writer moves the arena's tail past what it will overwrite before
//! writing), so a torn read is never returned; a writer
//! takes an entry by one CAS from an even sequence to an odd one that also carries its
//! pid, writes, and publishes with the next even sequence. A writer killed mid-write
//! leaves an odd sequence that no reader accepts; the next writer (or the supervisor,
//! through [`Cache::reclaim_dead`]) sees that the owner is gone, takes the entry under its
//! own pid, clears the key and only then publishes it. The protocol is model-checked with
//! `loom` (`seqlock::model`; the arena's rule for overwritten bytes in `arena::model`).
//!
//! Beside the cache, two small tables shared the same way and safe against a dead
//! holder in the same manner (a word naming the holder's pid, taken and released by
//! compare-and-swap): admission slots for expensive requests ([`Slots`]) and
//! single-flight marks for cache misses ([`Flights`]).

mod admission;
mod arena;
mod flight;
mod proc;
mod region;
mod seqlock;
mod slots;
mod words;

pub use flight::{Begin, Flight, FlightStats, Flights, Follower, WaitEnd};
pub use region::{Cache, CacheError, Stats};
pub use slots::{Slot, SlotStats, Slots, MAX_SLOTS};
pub use words::TableError;

/// iipsrv's megabyte: `MAX_IMAGE_CACHE_SIZE` is given in units of 1 024 000 bytes.
pub const IIPSRV_MB: u64 = 1_024_000;

/// Cache budget in bytes for a `MAX_IMAGE_CACHE_SIZE` value in iipsrv megabytes.
/// Negative, zero and non-finite values disable the cache.
pub fn budget_bytes(megabytes: f64) -> u64 {
    if megabytes.is_finite() && megabytes > 0.0 {
        (megabytes * IIPSRV_MB as f64) as u64
    } else {
        0
    }
}

/// A 128-bit cache key from the parts that identify a cached value.
pub fn key(parts: &[&[u8]]) -> (u64, u64) {
    // Two independent FNV-1a variants; a collision needs both to collide.
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x6c62_272e_07bb_0142;
    for p in parts {
        for &byte in p.iter().chain(std::iter::once(&0xFF)) {
            a = (a ^ byte as u64).wrapping_mul(0x0000_0100_0000_01b3);
            b = (b ^ byte as u64)
                .wrapping_mul(0x0000_0100_0000_01b3)
                .rotate_left(5);
        }
    }
    // Key (0, 0) marks an empty entry.
    (a | 1, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_uses_iipsrv_megabytes() {
        assert_eq!(budget_bytes(10.0), 10_240_000);
        assert_eq!(budget_bytes(0.5), 512_000);
        assert_eq!(budget_bytes(0.0), 0);
        assert_eq!(budget_bytes(-3.0), 0);
        assert_eq!(budget_bytes(f64::NAN), 0);
    }

    #[test]
    fn keys_separate_their_parts() {
        assert_ne!(key(&[b"ab", b"c"]), key(&[b"a", b"bc"]));
        assert_ne!(key(&[b"x"]), key(&[b"y"]));
        assert_eq!(key(&[b"x", b"1"]), key(&[b"x", b"1"]));
        assert_ne!(key(&[]), (0, 0));
    }
}
