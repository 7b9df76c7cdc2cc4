//! The seqlock that guards each index entry, kept apart from the cache so that the
//! whole crash-safety argument can be read, and model-checked, in one place. Readers
//! must never block and never return a torn value, and a writer killed mid-write must
//! never leave an entry locked for good: so the entry's state is one word that says at
//! once whether it is being written and by which process, readers accept only what
//! that word shows unchanged around their copy, and any process can tell a dead
//! writer's entry from a live one's and take it back.

use crate::proc::{alive, me as pid};
use std::sync::atomic::{fence, AtomicU64, Ordering};

/// An index entry: the seqlock word and what it guards.
#[repr(C)]
pub(crate) struct Entry {
    /// The seqlock word; see [`locked`].
    pub(crate) seq: AtomicU64,
    _reserved: AtomicU64,
    pub(crate) k1: AtomicU64,
    pub(crate) k2: AtomicU64,
    pub(crate) generation: AtomicU64,
    pub(crate) len: AtomicU64,
    pub(crate) referenced: AtomicU64,
    /// Arena position of the value (a multiple of 8).
    pub(crate) pos: AtomicU64,
}

/// The write count in a seqlock word: bits 0..32, odd while the entry is being written.
const COUNT: u64 = 0xFFFF_FFFF;

/// The seqlock word of an entry taken for writing by `owner`, from its word `s`: the count
/// moves to the next odd value and the owner's pid fills bits 32..64. Taking the lock and
/// naming its owner are one atomic step, so a live writer never looks ownerless to a
/// process that would reclaim a dead writer's entry.
pub(crate) fn locked(s: u64, owner: u64) -> u64 {
    (owner << 32) | ((s + 1 + (s & 1)) & COUNT)
}

/// The word that publishes an entry written under the odd word `s`: the next even count,
/// no owner.
fn published(s: u64) -> u64 {
    (s + 1) & COUNT
}

/// The pid holding an odd seqlock word.
fn owner_of(s: u64) -> u64 {
    s >> 32
}

/// The sequence word of `e` if it is published (not being written) and holds `key` in
/// `generation`: the first check of a lookup, which re-reads the word after copying.
pub(crate) fn published_for(e: &Entry, key: (u64, u64), generation: u64) -> Option<u64> {
    let s = e.seq.load(Ordering::Acquire);
    (s & 1 == 0
        && e.k1.load(Ordering::Relaxed) == key.0
        && e.k2.load(Ordering::Relaxed) == key.1
        && e.generation.load(Ordering::Relaxed) == generation)
        .then_some(s)
}

/// The last check of a lookup, after the reader's acquire fence: whether the word is
/// still `s`, the one [`published_for`] returned, so nothing was written meanwhile.
pub(crate) fn unchanged(e: &Entry, s: u64) -> bool {
    e.seq.load(Ordering::Relaxed) == s
}

/// Takes `e`, whose word was the even `s`, for writing under this process's pid.
/// Returns the lock word, to [`publish`] with; `None` if another process took it first.
pub(crate) fn lock(e: &Entry, s: u64) -> Option<u64> {
    let lock = locked(s, pid());
    e.seq
        .compare_exchange(s, lock, Ordering::Acquire, Ordering::Relaxed)
        .ok()?;
    fence(Ordering::Release);
    Some(lock)
}

/// Ends a write begun by [`lock`]: everything written since is visible with the word.
pub(crate) fn publish(e: &Entry, lock: u64) {
    e.seq.store(published(lock), Ordering::Release);
}

/// Frees an entry left odd (word `s`) by a writer that no longer exists, empty. True if
/// this process freed it.
pub(crate) fn repair(e: &Entry, s: u64) -> bool {
    if s & 1 == 0 || alive(owner_of(s)) {
        return false;
    }
    // Whoever wins this CAS repairs, holding the entry under its own pid (still odd,
    // so no reader looks inside) while the half-written key is cleared; only then is
    // the entry published, empty.
    let mine = locked(s, pid());
    if e.seq
        .compare_exchange(s, mine, Ordering::AcqRel, Ordering::Relaxed)
        .is_err()
    {
        return false;
    }
    fence(Ordering::Release);
    e.k1.store(0, Ordering::Relaxed);
    e.k2.store(0, Ordering::Relaxed);
    e.seq.store(published(mine), Ordering::Release);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seqlock_words() {
        // Even → odd with the owner → next even without it; the count wraps in 32 bits.
        let l = locked(6, 4242);
        assert_eq!((l & 1, owner_of(l), l & COUNT), (1, 4242, 7));
        assert_eq!(published(l), 8);
        let l = locked(COUNT - 1, 7);
        assert_eq!((owner_of(l), l & COUNT), (7, COUNT));
        assert_eq!(published(l), 0);
        // A repairer re-locks an odd word: still odd, new owner, count moves on.
        let r = locked(locked(10, 99), 5);
        assert_eq!((r & 1, owner_of(r), r & COUNT), (1, 5, 13));
        assert_eq!(published(r), 14);
    }
}

/// A model check of the seqlock protocol with `loom`, which runs every interleaving the
/// C11 memory model allows. The model's entry is the protocol's core (word, key, two data
/// words that must never be seen apart); its steps use the real [`locked`] and
/// [`published`] words and the orderings of [`lock`], [`publish`], [`repair`] and the
/// lookup in `Cache::get` — change them together.
#[cfg(test)]
mod model {
    use super::{locked, owner_of, published};
    use loom::sync::atomic::{fence, AtomicU64, Ordering};
    use loom::sync::Arc;

    #[derive(Default)]
    struct Entry {
        seq: AtomicU64,
        key: AtomicU64,
        data: [AtomicU64; 2],
    }

    /// [`lock`], a write, [`publish`], as `Cache::put` does them. `die_after` stops a
    /// writer midway.
    fn write(e: &Entry, owner: u64, key: u64, value: u64, die_after: Option<usize>) -> bool {
        let s = e.seq.load(Ordering::Acquire);
        if s & 1 == 1 {
            return false;
        }
        let lock = locked(s, owner);
        if e.seq
            .compare_exchange(s, lock, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        fence(Ordering::Release);
        e.key.store(key, Ordering::Relaxed);
        for (i, d) in e.data.iter().enumerate() {
            if die_after == Some(i) {
                return true;
            }
            d.store(value, Ordering::Relaxed);
        }
        e.seq.store(published(lock), Ordering::Release);
        true
    }

    /// [`published_for`], a copy, [`unchanged`], as `Cache::get` does them: what a
    /// reader accepts for `key`.
    fn read(e: &Entry, key: u64) -> Option<[u64; 2]> {
        let s1 = e.seq.load(Ordering::Acquire);
        if s1 & 1 == 1 || e.key.load(Ordering::Relaxed) != key {
            return None;
        }
        let v = [
            e.data[0].load(Ordering::Relaxed),
            e.data[1].load(Ordering::Relaxed),
        ];
        fence(Ordering::Acquire);
        (e.seq.load(Ordering::Relaxed) == s1).then_some(v)
    }

    /// [`repair`], with `dead` standing for the liveness test of the owner's pid.
    fn repair(e: &Entry, me: u64, dead: u64) -> bool {
        let s = e.seq.load(Ordering::Acquire);
        if s & 1 == 0 || owner_of(s) != dead {
            return false;
        }
        let mine = locked(s, me);
        if e.seq
            .compare_exchange(s, mine, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        fence(Ordering::Release);
        e.key.store(0, Ordering::Relaxed);
        e.seq.store(published(mine), Ordering::Release);
        true
    }

    #[test]
    fn readers_never_accept_a_torn_value() {
        // Two writes against a reader: every interleaving with up to three preemptions
        // (unbounded takes 45 s and found nothing more).
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(3);
        b.check(|| {
            let e = Arc::new(Entry::default());
            // Every actor runs on a spawned thread: loom explores those interleavings.
            let w = {
                let e = e.clone();
                loom::thread::spawn(move || {
                    write(&e, 11, 7, 1, None);
                    write(&e, 11, 7, 2, None);
                })
            };
            let r = {
                let e = e.clone();
                loom::thread::spawn(move || read(&e, 7))
            };
            if let Some([a, b]) = r.join().unwrap() {
                assert_eq!(a, b, "torn read");
                assert!(a == 1 || a == 2);
            }
            w.join().unwrap();
        });
    }

    #[test]
    fn a_dead_writers_entry_is_reclaimed_and_never_read() {
        loom::model(|| {
            let e = Arc::new(Entry::default());
            // Process 13 dies after the first of two data words.
            assert!(write(&e, 13, 7, 5, Some(1)));
            let r = {
                let e = e.clone();
                loom::thread::spawn(move || repair(&e, 21, 13))
            };
            let reader = {
                let e = e.clone();
                loom::thread::spawn(move || read(&e, 7))
            };
            assert_eq!(
                reader.join().unwrap(),
                None,
                "a half-written entry was read"
            );
            let repaired = r.join().unwrap();
            assert!(repaired);
            // Afterwards the entry is free and empty, and a new writer can use it.
            assert_eq!(e.seq.load(Ordering::Acquire) & 1, 0);
            assert_eq!(read(&e, 7), None);
            assert!(write(&e, 21, 7, 9, None));
            assert_eq!(read(&e, 7), Some([9, 9]));
        });
    }

    #[test]
    fn a_live_writer_is_never_repaired() {
        loom::model(|| {
            let e = Arc::new(Entry::default());
            let w = {
                let e = e.clone();
                loom::thread::spawn(move || write(&e, 11, 7, 3, None))
            };
            // Another process looking for dead writers (11 is alive, 13 is the dead pid).
            let r = {
                let e = e.clone();
                loom::thread::spawn(move || repair(&e, 21, 13))
            };
            assert!(!r.join().unwrap());
            assert!(w.join().unwrap());
            assert_eq!(read(&e, 7), Some([3, 3]));
        });
    }
}
