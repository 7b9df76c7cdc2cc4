//! Admission control: an export that reads or writes more than `EXPENSIVE_PIXELS`
//! runs only in one of `MAX_EXPENSIVE_WORKERS` slots shared by all workers, so that
//! a flood of whole-image exports leaves the other workers serving tiles. Without a
//! free slot the request is either put back for the worker's event loop to try again
//! shortly (it may wait up to `EXPENSIVE_WAIT`; the loop keeps serving its other
//! connections meanwhile) or answered 503 with `Retry-After`. An admitted request
//! that the event loop can wait for is rendered in a child process
//! ([`offload`](super::offload)), so its worker keeps serving tiles meanwhile.

use super::offload::{self, Forked, Job};
use crate::config::Config;
use crate::response::Response;
use std::cell::{Cell, RefCell};
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
    /// Whether the request being answered may be handed to a child process, and the
    /// child it was handed to.
    static MAY_FORK: Cell<bool> = const { Cell::new(false) };
    static FORKED: RefCell<Option<Job>> = const { RefCell::new(None) };
    /// Rounds of the event loop (see [`turn_over`]) left before this worker, which has
    /// just finished an expensive request, takes another: the rest of the round it
    /// finished in, and the next, which brings what arrived while it ran.
    static JUST_RAN: Cell<u8> = const { Cell::new(0) };
}

/// The slot an expensive request holds while it runs.
pub struct Admitted(#[allow(dead_code)] shm::Slot<'static>);

impl Drop for Admitted {
    fn drop(&mut self) {
        JUST_RAN.with(|j| j.set(2));
    }
}

/// Called by the event loop after each round of its connections. Until then, a worker
/// that has just finished an expensive request puts back the next one it meets (when
/// that one may wait): the tiles that arrived on its other connections meanwhile are
/// served first, instead of waiting behind exports taken one after another.
pub fn turn_over() {
    JUST_RAN.with(|j| j.set(j.get().saturating_sub(1)));
}

/// Turns admission on in this worker: `limit` expensive requests at once across all
/// workers (0: off).
pub fn install(slots: &'static shm::Slots, limit: usize) {
    let _ = ADMISSION.set(Admission { slots, limit });
}

/// What became of a request [`attempt`] ran.
pub enum Attempt {
    /// Answered here (in a child: its answer is the child's to hand back).
    Answered,
    /// Put back to wait for a slot.
    PutBack,
    /// Admitted and rendering in a child process.
    Forked(Job),
}

/// Runs `answer` (one request) and says whether it was answered, put back to wait for
/// a slot (only when `may_wait`) or handed to a child process (only when `may_fork`);
/// in the last two cases its response is to be thrown away.
pub fn attempt<R>(may_wait: bool, may_fork: bool, answer: impl FnOnce() -> R) -> (R, Attempt) {
    ATTEMPT.with(|a| a.set((may_wait, false)));
    MAY_FORK.with(|f| f.set(may_fork));
    let r = answer();
    MAY_FORK.with(|f| f.set(false));
    let put_back = ATTEMPT.with(|a| a.replace((false, false)).1);
    let how = match FORKED.with(|f| f.borrow_mut().take()) {
        Some(job) => Attempt::Forked(job),
        None if put_back => Attempt::PutBack,
        None => Attempt::Answered,
    };
    (r, how)
}

/// Whether an expensive request could be admitted now (always, with admission off).
pub fn slot_free() -> bool {
    ADMISSION
        .get()
        .filter(|a| a.limit > 0)
        .is_none_or(|a| a.slots.any_free(a.limit))
}

/// Counts a request that waits for a slot (once per request).
pub fn record_waited() {
    if let Some(a) = ADMISSION.get() {
        a.slots.record_waited();
    }
}

/// Admits a request that reads `source` pixels and writes `output` pixels: `Ok` with
/// the slot it holds while it runs (none needed for a cheap request, or with
/// admission off), else the 503 to answer (thrown away when the request was put back
/// to wait).
pub fn enter(cfg: &Config, source: u64, output: u64) -> Result<Option<Admitted>, Response> {
    let Some(a) = ADMISSION.get().filter(|a| a.limit > 0) else {
        return Ok(None);
    };
    if source.max(output) <= cfg.expensive_pixels {
        return Ok(None);
    }
    let (may_wait, _) = ATTEMPT.with(Cell::get);
    let yielding = may_wait && JUST_RAN.with(Cell::get) > 0;
    if let Some(slot) = (!yielding).then(|| a.slots.try_acquire(a.limit)).flatten() {
        if !cfg.expensive_in_child || !MAY_FORK.with(Cell::get) || offload::in_child() {
            return Ok(Some(Admitted(slot)));
        }
        match offload::fork() {
            Ok(Forked::Child) => return Ok(Some(Admitted(slot))),
            Ok(Forked::Parent(job)) => {
                // The child holds the slot from now on and frees it when it is done
                // (or dies): this process's copy must not.
                slot.hand_to(u64::from(job.pid()));
                std::mem::forget(slot);
                FORKED.with(|f| *f.borrow_mut() = Some(job));
                return Err(busy(cfg));
            }
            Err(e) => {
                log::warn!("cannot fork to render a large export ({e}); rendering it here");
                return Ok(Some(Admitted(slot)));
            }
        }
    }
    ATTEMPT.with(|c| c.set((may_wait, may_wait)));
    if !may_wait {
        a.slots.record_rejected();
        log::info!(
            "expensive request refused: all {} export slots busy",
            a.limit
        );
    }
    Err(busy(cfg))
}

fn busy(cfg: &Config) -> Response {
    let mut r = Response::text_error(
        cfg,
        503,
        "Server busy with other large exports; try again shortly",
    );
    r.headers.push(("Retry-After".into(), RETRY_AFTER.into()));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`attempt`] without forking: the result and whether it was put back.
    fn tried<R>(may_wait: bool, answer: impl FnOnce() -> R) -> (R, bool) {
        let (r, how) = attempt(may_wait, false, answer);
        (r, matches!(how, Attempt::PutBack))
    }

    #[test]
    fn slots_are_taken_in_turn_and_a_worker_lets_others_go_after_an_export() {
        let slots: &'static shm::Slots = Box::leak(Box::new(shm::Slots::create(1).unwrap()));
        install(slots, 1);
        let cfg = Config::from_vars(|_| None);
        let big = cfg.expensive_pixels + 1;
        assert!(matches!(enter(&cfg, 10, 10), Ok(None)), "cheap: no slot");
        let held = enter(&cfg, big, 1).expect("a free slot");
        assert!(held.is_some());
        // Taken: refused at once when the request may not wait, put back when it may.
        let (r, put_back) = tried(false, || enter(&cfg, big, 1).map(|_| ()));
        assert_eq!((r.unwrap_err().status, put_back), (503, false));
        let (r, put_back) = tried(true, || enter(&cfg, 1, big).map(|_| ()));
        assert!(r.is_err() && put_back);
        assert_eq!(slots.stats().rejected, 1, "only the final refusal counts");
        drop(held);
        // Just finished one: the next waits for two rounds of the event loop, unless it
        // may not wait at all.
        let (r, put_back) = tried(true, || enter(&cfg, big, 1).map(|_| ()));
        assert!(r.is_err() && put_back, "put back right after an export");
        turn_over();
        let (_, put_back) = tried(true, || enter(&cfg, big, 1).map(|_| ()));
        assert!(put_back, "and for the whole next round");
        assert!(tried(false, || enter(&cfg, big, 1).map(|s| s.is_some()))
            .0
            .unwrap());
        turn_over();
        turn_over();
        let (r, put_back) = tried(true, || enter(&cfg, big, 1).map(|s| s.is_some()));
        assert!(r.unwrap() && !put_back);
        assert_eq!(slots.stats().in_use, 0);
    }
}
