//! Admission slots: at most K processes at a time may run an expensive request
//! (a large region export), whichever worker they are. Each slot is one word holding
//! the pid of the process that runs in it, 0 when free; taking one is a single
//! compare-and-swap, so no lock exists that a dead process could leave held. A
//! slot whose holder died (SIGKILL, a crash) is taken over by the next process that
//! asks, and the supervisor frees the slots of every worker it reaps.

use crate::proc::{alive, clear_dead, me};
use crate::words::{TableError, Words};
use std::sync::atomic::{AtomicU64, Ordering};

/// Most slots a table holds (a limit above it is this).
pub const MAX_SLOTS: usize = 256;

const ADMITTED: usize = 0;
const REJECTED: usize = 1;
const RECLAIMED: usize = 2;
const WAITED: usize = 3;
const HANDED: usize = 4;
const COUNTERS: usize = 8;

/// Figures for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlotStats {
    /// Slots whose holder is alive.
    pub in_use: u64,
    /// Expensive requests given a slot.
    pub admitted: u64,
    /// Expensive requests refused (503) for want of a slot.
    pub rejected: u64,
    /// Expensive requests that waited for a slot before they got one or were refused.
    pub waited: u64,
    /// Slots freed after their holder died.
    pub reclaimed: u64,
    /// Slots handed by their holder to a child process that runs the request.
    pub handed: u64,
}

/// The table of admission slots.
pub struct Slots {
    words: Words,
    capacity: usize,
}

/// A slot held by this process; freed when dropped.
pub struct Slot<'a> {
    slots: &'a Slots,
    index: usize,
}

/// Whether a slot whose word is `holder` is taken, as process `pid` sees it: by a live
/// process, or by `pid` itself (a zombie counts as alive until it is reaped).
fn held(holder: u64, pid: u64) -> bool {
    holder != 0 && (holder == pid || alive(holder))
}

impl Slots {
    /// A table of `capacity` slots (at least 1, at most [`MAX_SLOTS`]).
    pub fn create(capacity: usize) -> Result<Slots, TableError> {
        let capacity = capacity.clamp(1, MAX_SLOTS);
        Ok(Slots {
            words: Words::new(COUNTERS + capacity)?,
            capacity,
        })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn counter(&self, i: usize) -> &AtomicU64 {
        &self.words.all()[i]
    }

    fn entries(&self) -> &[AtomicU64] {
        &self.words.all()[COUNTERS..]
    }

    /// A slot among the first `limit`, if one is free (or held by a dead process).
    pub fn try_acquire(&self, limit: usize) -> Option<Slot<'_>> {
        self.acquire_as(limit, me())
    }

    fn acquire_as(&self, limit: usize, pid: u64) -> Option<Slot<'_>> {
        for (index, e) in self.entries().iter().enumerate().take(limit) {
            let holder = e.load(Ordering::Acquire);
            if held(holder, pid) {
                continue;
            }
            if e.compare_exchange(holder, pid, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                if holder != 0 {
                    self.counter(RECLAIMED).fetch_add(1, Ordering::Relaxed);
                }
                self.counter(ADMITTED).fetch_add(1, Ordering::Relaxed);
                return Some(Slot { slots: self, index });
            }
        }
        None
    }

    /// Whether one of the first `limit` slots is free (or held by a dead process), so
    /// that [`try_acquire`](Self::try_acquire) would likely succeed.
    pub fn any_free(&self, limit: usize) -> bool {
        self.entries()
            .iter()
            .take(limit)
            .any(|e| !held(e.load(Ordering::Acquire), me()))
    }

    /// Counts an expensive request refused for want of a slot.
    pub fn record_rejected(&self) {
        self.counter(REJECTED).fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an expensive request that had to wait for a slot.
    pub fn record_waited(&self) {
        self.counter(WAITED).fetch_add(1, Ordering::Relaxed);
    }

    /// Frees every slot whose holder no longer exists. Returns how many.
    pub fn reclaim_dead(&self) -> u64 {
        let n = clear_dead(self.entries().iter(), |holder| holder);
        self.counter(RECLAIMED).fetch_add(n, Ordering::Relaxed);
        n
    }

    pub fn stats(&self) -> SlotStats {
        let c = |i| self.counter(i).load(Ordering::Relaxed);
        SlotStats {
            in_use: self
                .entries()
                .iter()
                .filter(|e| {
                    let h = e.load(Ordering::Relaxed);
                    h != 0 && alive(h)
                })
                .count() as u64,
            admitted: c(ADMITTED),
            rejected: c(REJECTED),
            waited: c(WAITED),
            reclaimed: c(RECLAIMED),
            handed: c(HANDED),
        }
    }
}

impl std::fmt::Debug for Slots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slots")
            .field("capacity", &self.capacity)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Slot<'_> {
    /// Makes process `pid` (a child this process just forked to run the request) the
    /// slot's holder, so that the slot is freed when that process drops it or dies.
    /// The caller forgets its own `Slot`; the child's copy frees it.
    pub fn hand_to(&self, pid: u64) -> bool {
        let e = &self.slots.entries()[self.index];
        let moved = e
            .compare_exchange(me(), pid, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok();
        if moved {
            self.slots.counter(HANDED).fetch_add(1, Ordering::Relaxed);
        }
        moved
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let e = &self.slots.entries()[self.index];
        // Only if it is still ours: a slot is never taken from a live holder, so this
        // fails only if someone wrongly judged this process dead.
        let _ = e.compare_exchange(me(), 0, Ordering::AcqRel, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pid that cannot exist (above the kernel's limit).
    const GONE: u64 = i32::MAX as u64 - 7;

    #[test]
    fn a_handed_slot_belongs_to_the_child_and_frees_when_it_dies() {
        let s = Slots::create(1).unwrap();
        let slot = s.try_acquire(1).unwrap();
        // pid 1 is alive: the slot stays held after this process forgets its copy.
        assert!(slot.hand_to(1));
        std::mem::forget(slot);
        assert!(s.try_acquire(1).is_none(), "held by the child");
        assert_eq!(s.stats().handed, 1);
        // The child dies without freeing it: the next process takes it over.
        s.entries()[0].store(GONE, Ordering::Release);
        let again = s.try_acquire(1).expect("a dead child's slot is free");
        assert_eq!(s.stats().reclaimed, 1);
        // A slot this process no longer holds cannot be handed on.
        s.entries()[0].store(GONE, Ordering::Release);
        assert!(!again.hand_to(1));
        assert_eq!(s.stats().handed, 1);
    }

    #[test]
    fn at_most_the_limit_are_held_and_a_drop_frees_one() {
        let s = Slots::create(4).unwrap();
        let a = s.acquire_as(2, 1).map(std::mem::forget);
        assert!(a.is_some());
        // pid 1 (init) is alive: its slot stays held, one of two is left.
        assert!(s.any_free(2));
        let b = s.try_acquire(2).expect("second slot");
        assert!(!s.any_free(2));
        assert!(s.try_acquire(2).is_none(), "both held");
        assert_eq!(s.stats().in_use, 2);
        drop(b);
        let c = s.try_acquire(2).expect("freed by the drop");
        assert!(
            s.try_acquire(1).is_none(),
            "limit 1: the first slot is held"
        );
        drop(c);
        assert_eq!(s.stats().in_use, 1);
        assert!(s.try_acquire(0).is_none(), "limit 0 admits nobody");
        assert_eq!(s.stats().admitted, 3);
    }

    #[test]
    fn a_dead_holders_slot_is_taken_over() {
        let s = Slots::create(2).unwrap();
        let dead = s.acquire_as(1, GONE).expect("free slot");
        std::mem::forget(dead);
        assert_eq!(s.stats().in_use, 0, "a dead holder does not count");
        let mine = s.try_acquire(1).expect("taken over from the dead holder");
        assert_eq!(s.stats().reclaimed, 1);
        assert_eq!(s.stats().in_use, 1);
        drop(mine);
        // The supervisor's sweep frees them too.
        std::mem::forget(s.acquire_as(2, GONE));
        std::mem::forget(s.acquire_as(2, GONE));
        assert_eq!(s.reclaim_dead(), 2);
        assert_eq!(s.stats().reclaimed, 3);
    }

    #[test]
    fn a_killed_child_leaves_no_slot_held() {
        let s = Slots::create(1).unwrap();
        // SAFETY: the child only touches the shared words and leaves with _exit.
        let child = unsafe { libc::fork() };
        assert!(child >= 0, "fork");
        if child == 0 {
            let held = s.try_acquire(1);
            // Held, never released: the child is killed while it waits here.
            let code = if held.is_some() { 0 } else { 1 };
            std::mem::forget(held);
            unsafe {
                libc::sleep(30);
                libc::_exit(code)
            };
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while s.entries()[0].load(Ordering::Acquire) != child as u64 {
            assert!(std::time::Instant::now() < deadline, "child took no slot");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(s.try_acquire(1).is_none(), "held by a live child");
        unsafe {
            libc::kill(child, libc::SIGKILL);
            libc::waitpid(child, std::ptr::null_mut(), 0);
        }
        assert!(s.try_acquire(1).is_some(), "the dead child's slot is free");
    }

    #[test]
    fn limits_beyond_capacity_are_the_capacity() {
        let s = Slots::create(10_000).unwrap();
        assert_eq!(s.capacity(), MAX_SLOTS);
        let held: Vec<_> = (0..MAX_SLOTS)
            .map(|_| s.acquire_as(usize::MAX, 1))
            .collect();
        assert!(held.iter().all(Option::is_some));
        assert!(s.try_acquire(usize::MAX).is_none());
        std::mem::forget(held);
    }
}
