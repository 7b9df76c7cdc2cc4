//! Admission control: an export that reads or writes more than `EXPENSIVE_PIXELS`
//! runs only in one of `MAX_EXPENSIVE_WORKERS` slots shared by all workers, so that
//! a flood of whole-image exports leaves the other workers serving tiles. Without a
//! free slot the request is either put back for the worker's event loop to try again
//! shortly (it may wait up to `EXPENSIVE_WAIT`; the loop keeps serving its other
//! connections meanwhile) or answered 503 with `Retry-After`.

use crate::config::Config;
use crate::response::Response;
use std::cell::Cell;
use std::sync::OnceLock;

/// Seconds a client refused a slot is told to wait before trying again.
const RETRY_AFTER: &str = "2";

struct Admission {
    slots: &'static shm::Slots,
    /// Slots this worker may use (the first `limit` of the table).
    limit: usize,
}

/// This worker's admission table, set once when it starts (a worker lives with one
/// configuration; a reload starts new workers).
static ADMISSION: OnceLock<Admission> = OnceLock::new();

thread_local! {
    /// Whether the request being answered may be put back to wait for a slot, and
    /// whether it was. Workers answer one request at a time on one thread.
    static ATTEMPT: Cell<(bool, bool)> = const { Cell::new((false, false)) };
}

/// Turns admission on in this worker: `limit` expensive requests at once across all
/// workers (0: off).
pub fn install(slots: &'static shm::Slots, limit: usize) {
    let _ = ADMISSION.set(Admission { slots, limit });
}

/// Runs `answer` (one request) and says whether it was put back to wait for a slot,
/// which only happens when `may_wait`: its response is then to be thrown away.
pub fn attempt<R>(may_wait: bool, answer: impl FnOnce() -> R) -> (R, bool) {
    ATTEMPT.with(|a| a.set((may_wait, false)));
    let r = answer();
    let put_back = ATTEMPT.with(|a| a.replace((false, false)).1);
    (r, put_back)
}

/// Counts a request that waits for a slot (once per request).
pub fn record_waited() {
    if let Some(a) = ADMISSION.get() {
        a.slots.record_waited();
    }
}

/// Admits a request that reads `source` pixels and writes `output` pixels: `Ok` with
/// the slot it holds while it runs (none needed for a cheap request, or with
/// admission off), else the 503 to answer.
pub fn enter(
    cfg: &Config,
    source: u64,
    output: u64,
) -> Result<Option<shm::Slot<'static>>, Response> {
    let Some(a) = ADMISSION.get().filter(|a| a.limit > 0) else {
        return Ok(None);
    };
    if source.max(output) <= cfg.expensive_pixels {
        return Ok(None);
    }
    if let Some(slot) = a.slots.try_acquire(a.limit) {
        return Ok(Some(slot));
    }
    let may_wait = ATTEMPT.with(|c| {
        let (may_wait, _) = c.get();
        c.set((may_wait, may_wait));
        may_wait
    });
    if !may_wait {
        a.slots.record_rejected();
        log::info!(
            "expensive request refused: all {} export slots busy",
            a.limit
        );
    }
    let mut r = Response::text_error(
        cfg,
        503,
        "Server busy with other large exports; try again shortly",
    );
    r.headers.push(("Retry-After".into(), RETRY_AFTER.into()));
    Err(r)
}
