//! Where values go: one ring of bytes for all of them, and a small set of candidate
//! index entries per key. A ring whose positions only grow holds as many values as fit
//! its bytes, whatever their sizes, overwrites the oldest first, and lets a reader tell
//! whether a value was overwritten under it by one comparison with the tail; a set of a
//! few entries per key keeps a lookup to a handful of reads. These rules are what a
//! lookup's safety rests on besides the seqlock, so they are stated here once.

use crate::seqlock::Entry;
use std::ops::Range;
use std::sync::atomic::{fence, AtomicU64, Ordering};

/// Candidate index entries per key. With 8, about one run in twenty of 150 values into
/// a 500-entry index put more than 8 in one set; the overflow evicted values the arena
/// still held, and a client reading the same tiles again then evicted one more with
/// each miss. With 16 (same index size), that takes over 16 in a set: about one run in
/// two thousand.
pub(crate) const WAYS: usize = 16;
/// Largest value: this fraction of the arena, so one value never flushes the cache.
pub(crate) const MAX_VALUE_SHARE: u64 = 4;
/// Bound on the compare-and-swap loop that reserves arena space.
const RESERVE_TRIES: usize = 1000;

/// Where a value of `len8` bytes (a multiple of 8) goes when the head is at `head`: at
/// the head, or at the start of the next lap if it would run past the arena's end (a
/// value is never split). Returns `(start, end)`.
fn placement(head: u64, len8: u64, arena: u64) -> (u64, u64) {
    let off = head % arena;
    let start = if off + len8 > arena {
        head + (arena - off)
    } else {
        head
    };
    (start, start + len8)
}

/// Which of `sets` sets holds `key`: a multiplicative hash of both halves.
fn set_of(key: (u64, u64), sets: u64) -> u64 {
    let h = (key.0 ^ key.1.rotate_left(29)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> 32) % sets
}

/// The candidate entries of `key` in an index of `entries` entries.
pub(crate) fn set(entries: u64, key: (u64, u64)) -> Range<u64> {
    let n = entries;
    if n <= WAYS as u64 {
        return 0..n;
    }
    let sets = n / WAYS as u64;
    // Not `key.0` alone: it is always odd (0 marks an empty entry), so with an even
    // number of sets only half of them would ever be used.
    let start = set_of(key, sets) * WAYS as u64;
    start..start + WAYS as u64
}

/// The entry of `set` that a value for `key` goes to: the one that holds the same key,
/// else an empty or `dead` one, else a CLOCK victim, found from the shared `hand`.
pub(crate) fn pick<'a>(
    set: Range<u64>,
    key: (u64, u64),
    entry: impl Fn(u64) -> &'a Entry,
    dead: impl Fn(&Entry) -> bool,
    hand: &AtomicU64,
) -> u64 {
    let mut pick = None;
    for i in set.clone() {
        let e = entry(i);
        if e.k1.load(Ordering::Relaxed) == key.0 && e.k2.load(Ordering::Relaxed) == key.1 {
            pick = Some(i);
            break;
        }
        if pick.is_none() && dead(e) {
            pick = Some(i);
        }
    }
    let ways = set.end - set.start;
    pick.unwrap_or_else(|| {
        let mut chosen = set.start;
        let hand = hand.fetch_add(1, Ordering::Relaxed);
        for step in 0..2 * ways {
            let i = set.start + (hand + step) % ways;
            if entry(i).referenced.swap(0, Ordering::Relaxed) == 0 {
                chosen = i;
                break;
            }
        }
        chosen
    })
}

/// Reserves room for `len` bytes at the arena's `head`, in space nobody else writes,
/// and declares the bytes it covers overwritten (moves the `tail` past them, then
/// fences) before the caller writes them. Returns `(start, end)`, `None` if the head
/// kept moving under it.
pub(crate) fn reserve(
    head: &AtomicU64,
    tail: &AtomicU64,
    len: u64,
    arena_len: u64,
) -> Option<(u64, u64)> {
    let len8 = len.div_ceil(8) * 8;
    let mut reserved = None;
    for _ in 0..RESERVE_TRIES {
        let at = head.load(Ordering::Relaxed);
        let (start, end) = placement(at, len8, arena_len);
        if head
            .compare_exchange_weak(at, end, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            reserved = Some((start, end));
            break;
        }
    }
    let (start, end) = reserved?;
    tail.fetch_max(end.saturating_sub(arena_len), Ordering::Relaxed);
    fence(Ordering::Release);
    Some((start, end))
}

/// Writes `value` into the `arena` at position `start`, which [`reserve`] gave.
pub(crate) fn write(arena: &[AtomicU64], start: u64, value: &[u8]) {
    let arena_len = arena.len() as u64 * 8;
    let len8 = (value.len() as u64).div_ceil(8) * 8;
    let first = ((start % arena_len) / 8) as usize;
    let words = &arena[first..first + (len8 / 8) as usize];
    let whole = value.chunks_exact(8);
    let rest = whole.remainder();
    for (w, chunk) in words.iter().zip(whole) {
        let word: [u8; 8] = chunk.try_into().expect("chunks of 8");
        w.store(u64::from_le_bytes(word), Ordering::Relaxed);
    }
    if !rest.is_empty() {
        let mut b = [0u8; 8];
        b[..rest.len()].copy_from_slice(rest);
        words[words.len() - 1].store(u64::from_le_bytes(b), Ordering::Relaxed);
    }
}

/// The words of the value of `len` bytes at position `pos`, if an index entry that
/// says so can be right: the value fits the arena's limit and lies inside it.
pub(crate) fn value_words(arena: &[AtomicU64], pos: u64, len: u64) -> Option<&[AtomicU64]> {
    let arena_len = arena.len() as u64 * 8;
    let first = ((pos % arena_len) / 8) as usize;
    let words = len.div_ceil(8) as usize;
    if len > arena_len / MAX_VALUE_SHARE || pos % 8 != 0 || first + words > arena.len() {
        return None;
    }
    Some(&arena[first..first + words])
}

/// The first `len` bytes of `words`. Whether they are still the value the reader was
/// after is for it to check afterwards (the tail, and the entry's seqlock).
pub(crate) fn copy_out(words: &[AtomicU64], len: u64) -> Vec<u8> {
    let mut out = vec![0u8; words.len() * 8];
    for (o, w) in out.chunks_exact_mut(8).zip(words) {
        o.copy_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
    }
    out.truncate(len as usize);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key;

    #[test]
    fn keys_spread_over_every_set() {
        // Real keys (odd first halves) into an even number of sets: all of them used,
        // none far above the mean.
        let sets = 62;
        let mut load = vec![0u32; sets as usize];
        for t in 0..6200u32 {
            load[set_of(key(&[b"big.tif", &t.to_le_bytes()]), sets) as usize] += 1;
        }
        assert!(load.iter().all(|&n| (60..=140).contains(&n)), "{load:?}");
    }

    #[test]
    fn placement_never_splits_a_value() {
        assert_eq!(placement(0, 16, 64), (0, 16));
        assert_eq!(placement(48, 16, 64), (48, 64));
        assert_eq!(placement(56, 16, 64), (64, 80));
        assert_eq!(placement(130, 8, 64), (130, 138));
        assert_eq!(placement(184, 16, 64), (192, 208));
    }
}

/// A model check with `loom` of the rule a reader relies on to refuse overwritten
/// bytes, under every interleaving the C11 memory model allows.
#[cfg(test)]
mod model {
    use loom::sync::atomic::{fence, AtomicU64, Ordering};
    use loom::sync::Arc;

    /// The arena's rule, as in [`reserve`] and `Cache::get`: a writer moves the tail
    /// past the words it will overwrite, fences, then writes; a reader copies, fences,
    /// and accepts only if the tail has not passed the value's position.
    #[test]
    fn an_overwritten_value_is_never_accepted() {
        loom::model(|| {
            let tail = Arc::new(AtomicU64::new(0));
            let words = Arc::new([AtomicU64::new(5), AtomicU64::new(5)]);
            let w = {
                let (tail, words) = (tail.clone(), words.clone());
                loom::thread::spawn(move || {
                    tail.fetch_max(2, Ordering::Relaxed);
                    fence(Ordering::Release);
                    for x in words.iter() {
                        x.store(9, Ordering::Relaxed);
                    }
                })
            };
            // The value at position 0 (two words of 5) is read while being overwritten.
            let pos = 0;
            let v = [
                words[0].load(Ordering::Relaxed),
                words[1].load(Ordering::Relaxed),
            ];
            fence(Ordering::Acquire);
            if tail.load(Ordering::Relaxed) <= pos {
                assert_eq!(v, [5, 5], "accepted overwritten bytes");
            }
            w.join().unwrap();
        });
    }
}
