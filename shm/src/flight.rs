//! Single flight for cache misses: when several workers miss the same key at once,
//! the first marks the key in flight and computes the value; the others wait for the
//! mark to go, then read the value from the cache. A mark is one word holding the
//! owner's pid and a fingerprint of the key, taken by a single compare-and-swap and
//! dropped the same way, so nothing is locked that a dead owner could leave held:
//! a waiter gives up when its wait reaches its bound or the owner no longer exists,
//! and a mark whose owner died is cleared by the next process that meets it (and by
//! the supervisor when it reaps the owner). Marks are direct-mapped by key; a key
//! whose place is taken by another key's mark is computed without one.

use crate::proc::{alive, clear_dead, me, now_ms};
use crate::words::{TableError, Words};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Places for marks: far more than workers computing at once, so two keys in flight
/// together rarely share one.
const PLACES: usize = 1024;
/// Words per place: the mark, when it was taken (ms, [`now_ms`]), how many wait on it.
const STRIDE: usize = 4;
const MARK: usize = 0;
const STARTED: usize = 1;
const WAITERS: usize = 2;
/// A mark older than this is not waited on: its owner is stuck, or died and its pid
/// was given to another process before anyone cleared the mark.
const STALE_MS: u64 = 120_000;

const DECODED: usize = 0;
const WAITS: usize = 1;
const TIMEOUTS: usize = 2;
const ORPHANED: usize = 3;
const COUNTERS: usize = 8;

/// How often a waiter looks whether the value is there.
const POLL: Duration = Duration::from_millis(2);

/// Figures for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlightStats {
    /// Values computed after a miss (by an owner, or by a process that did not wait).
    pub decoded: u64,
    /// Misses that waited on another process's computation.
    pub waits: u64,
    /// Waits that reached their bound.
    pub timeouts: u64,
    /// Marks whose owner died before it finished.
    pub orphaned: u64,
}

/// The table of in-flight marks.
pub struct Flights {
    words: Words,
}

/// What a miss should do.
pub enum Begin<'a> {
    /// Compute the value, then store it; the mark goes when this is dropped.
    Lead(Flight<'a>),
    /// Another process is computing it: [`Follower::wait`].
    Follow(Follower<'a>),
    /// Compute it without a mark (its place is taken by another key).
    Alone,
}

/// This process's mark on a key.
pub struct Flight<'a> {
    table: &'a Flights,
    place: usize,
    mark: u64,
}

/// A wait on another process's mark.
pub struct Follower<'a> {
    table: &'a Flights,
    place: usize,
    mark: u64,
}

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitEnd {
    /// The value is there (the caller's check said so).
    Ready,
    /// The owner finished (the value may still be missing: it may not have been
    /// stored, or have failed).
    Finished,
    /// The owner died computing it.
    OwnerDied,
    /// The bound passed first.
    TimedOut,
}

fn mark_of(owner: u64, key: (u64, u64)) -> u64 {
    (owner << 32) | (key.1 as u32 as u64) | 1
}

fn owner_of(mark: u64) -> u64 {
    mark >> 32
}

/// The place of a key's mark: from the half of the key the fingerprint does not use.
fn place_of(key: (u64, u64)) -> usize {
    (key.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) as usize % PLACES
}

impl Flights {
    pub fn create() -> Result<Flights, TableError> {
        Ok(Flights {
            words: Words::new(COUNTERS + PLACES * STRIDE)?,
        })
    }

    fn counter(&self, i: usize) -> &AtomicU64 {
        &self.words.all()[i]
    }

    fn word(&self, place: usize, which: usize) -> &AtomicU64 {
        &self.words.all()[COUNTERS + place * STRIDE + which]
    }

    /// Marks `key` in flight for this process, or says whom to wait for.
    pub fn begin(&self, key: (u64, u64)) -> Begin<'_> {
        self.begin_as(key, me())
    }

    fn begin_as(&self, key: (u64, u64), pid: u64) -> Begin<'_> {
        let place = place_of(key);
        let mine = mark_of(pid, key);
        let slot = self.word(place, MARK);
        // Bounded: each failed exchange means another process changed the mark.
        for _ in 0..4 {
            let m = slot.load(Ordering::Acquire);
            if m == 0 {
                if slot
                    .compare_exchange(0, mine, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    self.word(place, WAITERS).store(0, Ordering::Relaxed);
                    self.word(place, STARTED).store(now_ms(), Ordering::Release);
                    return Begin::Lead(Flight {
                        table: self,
                        place,
                        mark: mine,
                    });
                }
                continue;
            }
            let owner = owner_of(m);
            if !alive(owner) {
                if slot
                    .compare_exchange(m, 0, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    self.counter(ORPHANED).fetch_add(1, Ordering::Relaxed);
                }
                continue;
            }
            let started = self.word(place, STARTED).load(Ordering::Acquire);
            let stale = started != 0 && now_ms().saturating_sub(started) > STALE_MS;
            // The same key, and not this process's own mark: it never waits on itself.
            if owner != pid && (m as u32) == (mine as u32) && !stale {
                self.word(place, WAITERS).fetch_add(1, Ordering::Relaxed);
                self.counter(WAITS).fetch_add(1, Ordering::Relaxed);
                return Begin::Follow(Follower {
                    table: self,
                    place,
                    mark: m,
                });
            }
            return Begin::Alone;
        }
        Begin::Alone
    }

    /// Counts a value computed after a miss.
    pub fn record_decoded(&self) {
        self.counter(DECODED).fetch_add(1, Ordering::Relaxed);
    }

    /// Clears every mark whose owner no longer exists. Returns how many.
    pub fn reclaim_dead(&self) -> u64 {
        let marks = (0..PLACES).map(|place| self.word(place, MARK));
        let n = clear_dead(marks, owner_of);
        self.counter(ORPHANED).fetch_add(n, Ordering::Relaxed);
        n
    }

    pub fn stats(&self) -> FlightStats {
        let c = |i| self.counter(i).load(Ordering::Relaxed);
        FlightStats {
            decoded: c(DECODED),
            waits: c(WAITS),
            timeouts: c(TIMEOUTS),
            orphaned: c(ORPHANED),
        }
    }
}

impl std::fmt::Debug for Flights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flights")
            .field("stats", &self.stats())
            .finish()
    }
}

impl Flight<'_> {
    /// Whether another process waits for this value (a reason to keep it even in a
    /// full cache).
    pub fn followed(&self) -> bool {
        self.table.word(self.place, WAITERS).load(Ordering::Relaxed) > 0
    }
}

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        let t = self.table;
        t.word(self.place, STARTED).store(0, Ordering::Relaxed);
        let _ = t.word(self.place, MARK).compare_exchange(
            self.mark,
            0,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }
}

impl Follower<'_> {
    /// Waits until `ready()` says the value is there, the mark goes, its owner dies or
    /// `bound` passes, looking every couple of milliseconds.
    pub fn wait(self, bound: Duration, mut ready: impl FnMut() -> bool) -> WaitEnd {
        let t = self.table;
        let deadline = Instant::now() + bound;
        loop {
            if ready() {
                return WaitEnd::Ready;
            }
            if t.word(self.place, MARK).load(Ordering::Acquire) != self.mark {
                return if ready() {
                    WaitEnd::Ready
                } else {
                    WaitEnd::Finished
                };
            }
            if !alive(owner_of(self.mark)) {
                let _ = t.word(self.place, MARK).compare_exchange(
                    self.mark,
                    0,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                );
                t.counter(ORPHANED).fetch_add(1, Ordering::Relaxed);
                return WaitEnd::OwnerDied;
            }
            let now = Instant::now();
            if now >= deadline {
                t.counter(TIMEOUTS).fetch_add(1, Ordering::Relaxed);
                return WaitEnd::TimedOut;
            }
            std::thread::sleep(POLL.min(deadline - now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GONE: u64 = i32::MAX as u64 - 7;
    const KEY: (u64, u64) = (0x1234_5677, 0xABCD_EF01_2345_6789);

    #[test]
    fn one_leads_the_others_follow_until_it_is_done() {
        let f = Flights::create().unwrap();
        // pid 1 (init) is alive and stands for the other worker.
        let Begin::Lead(lead) = f.begin_as(KEY, 1) else {
            panic!("first miss leads")
        };
        let Begin::Follow(w) = f.begin(KEY) else {
            panic!("second miss follows")
        };
        assert!(lead.followed());
        let t = Instant::now();
        let end = std::thread::scope(|s| {
            let h = s.spawn(|| w.wait(Duration::from_secs(5), || false));
            std::thread::sleep(Duration::from_millis(50));
            drop(lead);
            h.join().unwrap()
        });
        assert_eq!(end, WaitEnd::Finished);
        assert!(t.elapsed() < Duration::from_secs(2));
        // Done: the next miss leads again.
        assert!(matches!(f.begin(KEY), Begin::Lead(_)));
        assert_eq!(f.stats().waits, 1);
    }

    #[test]
    fn a_wait_ends_when_the_value_is_there_or_at_its_bound() {
        let f = Flights::create().unwrap();
        let Begin::Lead(_lead) = f.begin_as(KEY, 1) else {
            panic!()
        };
        let Begin::Follow(w) = f.begin(KEY) else {
            panic!()
        };
        assert_eq!(w.wait(Duration::from_secs(5), || true), WaitEnd::Ready);
        let Begin::Follow(w) = f.begin(KEY) else {
            panic!()
        };
        let t = Instant::now();
        assert_eq!(
            w.wait(Duration::from_millis(60), || false),
            WaitEnd::TimedOut
        );
        let spent = t.elapsed();
        assert!(spent >= Duration::from_millis(60) && spent < Duration::from_secs(1));
        assert_eq!(f.stats().timeouts, 1);
    }

    #[test]
    fn a_dead_owners_mark_is_never_waited_on() {
        let f = Flights::create().unwrap();
        std::mem::forget(f.begin_as(KEY, GONE));
        // The next miss clears it and leads.
        assert!(matches!(f.begin(KEY), Begin::Lead(_)));
        assert_eq!(f.stats().orphaned, 1);
        std::mem::forget(f.begin_as(KEY, GONE));
        assert_eq!(f.reclaim_dead(), 1);
    }

    #[test]
    fn a_waiter_leaves_when_the_owner_is_killed() {
        let f = Flights::create().unwrap();
        // SAFETY: the child only touches the shared words, then sleeps until killed.
        let child = unsafe { libc::fork() };
        assert!(child >= 0, "fork");
        if child == 0 {
            std::mem::forget(f.begin(KEY));
            unsafe {
                libc::sleep(30);
                libc::_exit(0)
            };
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while owner_of(f.word(place_of(KEY), MARK).load(Ordering::Acquire)) != child as u64 {
            assert!(Instant::now() < deadline, "the child never marked the key");
            std::thread::sleep(Duration::from_millis(5));
        }
        let Begin::Follow(w) = f.begin(KEY) else {
            panic!("the child's mark is followed")
        };
        let t = Instant::now();
        let end = std::thread::scope(|s| {
            let h = s.spawn(|| w.wait(Duration::from_secs(20), || false));
            std::thread::sleep(Duration::from_millis(50));
            unsafe {
                libc::kill(child, libc::SIGKILL);
                libc::waitpid(child, std::ptr::null_mut(), 0);
            }
            h.join().unwrap()
        });
        assert_eq!(end, WaitEnd::OwnerDied);
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert!(matches!(f.begin(KEY), Begin::Lead(_)));
    }

    #[test]
    fn a_process_never_waits_on_itself_nor_on_another_key() {
        let f = Flights::create().unwrap();
        let _lead = f.begin(KEY);
        assert!(matches!(f.begin(KEY), Begin::Alone));
        // Same place, another fingerprint.
        let other = (KEY.0, KEY.1 ^ 2);
        assert_eq!(place_of(other), place_of(KEY));
        let before = f.stats().waits;
        let _ = f.begin_as(other, 1);
        assert_eq!(f.stats().waits, before);
    }
}
