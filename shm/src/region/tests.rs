//! Tests of the whole cache through its own API: values in and out, the arena wrapping
//! and overwriting, admission under scans and popular keys, CLOCK eviction, clearing,
//! and the repair of entries dead writers left locked.

use super::*;
use crate::key;

fn cache(bytes: u64) -> Cache {
    Cache::create(bytes).unwrap().unwrap()
}

#[test]
fn put_get_and_sizes() {
    let c = cache(16 << 20);
    let st = c.stats();
    assert!(st.entries > 0 && st.capacity <= 16 << 20);
    let k = key(&[b"a.tif", b"1", b"2"]);
    assert_eq!(c.get(k), None);
    let v: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
    assert!(c.put(k, &v));
    assert_eq!(c.get(k).unwrap(), v);
    // Odd lengths and the larger classes.
    for len in [0usize, 1, 7, 9, 40_000, 130_000, 500_000] {
        let k = key(&[b"len", &len.to_le_bytes()]);
        let v: Vec<u8> = (0..len).map(|i| (i * 7 % 256) as u8).collect();
        assert!(c.put(k, &v), "{len}");
        assert_eq!(c.get(k).unwrap(), v, "{len}");
    }
    let quarter = c.stats().capacity / MAX_VALUE_SHARE;
    assert!(!c.put(key(&[b"huge"]), &vec![0; quarter as usize + 1]));
    let st = c.stats();
    assert_eq!(st.inserts, 8);
    assert_eq!(st.hits, 8);
    assert_eq!(st.misses, 1);
    assert_eq!(st.bytes, 20_000 + 1 + 7 + 9 + 40_000 + 130_000 + 500_000);
    // Replacing keeps byte accounting exact.
    assert!(c.put(k, &[1, 2, 3]));
    assert_eq!(c.get(k).unwrap(), vec![1, 2, 3]);
    assert_eq!(c.stats().bytes, 3 + 1 + 7 + 9 + 40_000 + 130_000 + 500_000);
}

#[test]
fn small_values_fill_the_budget() {
    // iipsrv's default budget (10 MB) and 8 KB tiles: nearly all of it holds values.
    let c = cache(10 * 1_024_000);
    let v = vec![7u8; 8 * 1024];
    for i in 0..3000u64 {
        assert!(c.put_unfiltered(key(&[&i.to_le_bytes()]), &v));
    }
    let live = (0..3000u64)
        .filter(|i| c.get(key(&[&i.to_le_bytes()])).is_some())
        .count() as u64;
    let st = c.stats();
    assert!(live >= 1100, "only {live} of 3000 8 KB values kept");
    assert_eq!(st.bytes, live * 8192);
    assert!(st.bytes <= 10 * 1_024_000);
    // The most recent ones are among them.
    assert!(c.get(key(&[&2999u64.to_le_bytes()])).is_some());
}

#[test]
fn overwritten_values_are_misses_never_wrong() {
    let c = cache(64 * 1024);
    let value =
        |i: u64| -> Vec<u8> { (0..(1000 + i % 3000)).map(|j| (i * 31 + j) as u8).collect() };
    // Far more than the arena holds: it wraps many times.
    for i in 0..500u64 {
        assert!(c.put_unfiltered(key(&[&i.to_le_bytes()]), &value(i)));
        for j in i.saturating_sub(40)..=i {
            if let Some(v) = c.get(key(&[&j.to_le_bytes()])) {
                assert_eq!(v, value(j), "value {j} read back wrong");
            }
        }
    }
    assert_eq!(c.get(key(&[&499u64.to_le_bytes()])), Some(value(499)));
    assert_eq!(c.get(key(&[&0u64.to_le_bytes()])), None);
    assert!(c.stats().bytes <= c.stats().capacity);
}

/// times the arena), storing every miss with `put`.
fn walk_hits(c: &Cache, put: impl Fn(&Cache, (u64, u64), &[u8]) -> bool) -> usize {
    let v = vec![3u8; 4096];
    let mut hits = 0;
    for round in 0..6 {
        for i in 0u64..1000 {
            let k = key(&[b"walk", &i.to_le_bytes()]);
            match c.get(k) {
                Some(got) => {
                    assert_eq!(got, v);
                    hits += usize::from(round >= 3);
                }
                None => {
                    put(c, k, &v);
                }
            }
        }
    }
    hits
}

#[test]
fn a_walk_longer_than_the_cache_keeps_a_share_of_it() {
    // Storing every miss, each value is overwritten before the walk comes back to it.
    let all = walk_hits(&cache(1_024_000), |c, k, v| c.put_unfiltered(k, v));
    assert_eq!(all, 0);
    // Admission keeps a steady part of the walk, which is hit on every round.
    let c = cache(1_024_000);
    let hits = walk_hits(&c, |c, k, v| c.put(k, v));
    assert!(hits >= 300, "{hits} hits of 3000");
    assert!(c.stats().refused > 1000, "{:?}", c.stats());
}

/// Share of the requests for 100 popular keys of 4 KB (400 KB, well within the
/// arena) answered by the cache when they are a fifth of 20 000 requests and every
/// other request is for a key never asked before.
fn popular_share(c: &Cache, put: impl Fn(&Cache, (u64, u64), &[u8]) -> bool) -> f64 {
    let v = vec![5u8; 4096];
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let (mut asked, mut hits) = (0u32, 0u32);
    for i in 0u64..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let k = if x % 5 == 0 {
            asked += 1;
            key(&[b"popular", &(x / 5 % 100).to_le_bytes()])
        } else {
            key(&[b"once", &i.to_le_bytes()])
        };
        match c.get(k) {
            Some(got) => {
                assert_eq!(got, v);
                hits += 1;
            }
            None => {
                put(c, k, &v);
            }
        }
    }
    f64::from(hits) / f64::from(asked)
}

#[test]
fn popular_keys_stay_among_many_asked_once() {
    // Storing every miss, the keys asked once push the popular ones out between two
    // of their requests, but for those that happen to come back quickly.
    let all = popular_share(&cache(1_024_000), |c, k, v| c.put_unfiltered(k, v));
    assert!(all < 0.5, "{all}");
    // Admission keeps nine in ten of them (about eight with odds of 1 in 16 for the
    // others, which then replace popular ones more often).
    let kept = popular_share(&cache(1_024_000), |c, k, v| c.put(k, v));
    assert!(kept > 0.85, "{kept}");
}

#[test]
fn a_full_cache_stores_a_key_that_misses_again_soon() {
    let c = cache(1_024_000);
    let filler = vec![1u8; 4096];
    for i in 0u64..400 {
        assert!(c.put_unfiltered(key(&[&i.to_le_bytes()]), &filler));
    }
    // Full: new keys are mostly refused, but each is stored by its second try.
    let mut first_try = 0;
    for i in 0u64..100 {
        let k = key(&[b"new", &i.to_le_bytes()]);
        if c.put(k, b"value") {
            first_try += 1;
        } else {
            assert!(c.put(k, b"value"), "key {i} refused twice");
        }
        assert_eq!(c.get(k).as_deref(), Some(&b"value"[..]));
    }
    assert!(first_try < 30, "{first_try} of 100 stored at once");
    // Emptied: every value is stored again until the arena is full.
    c.clear();
    let refused = c.stats().refused;
    for i in 0u64..200 {
        assert!(c.put(key(&[b"after", &i.to_le_bytes()]), &filler));
    }
    assert_eq!(c.stats().refused, refused);
}

#[test]
fn admission_decided_ahead_and_presence_without_a_lookup() {
    let c = cache(1_024_000);
    let k = key(&[b"ahead"]);
    assert!(!c.contains(k));
    assert!(c.admit_new(k), "an arena with room admits");
    assert!(c.put_admitted(k, b"v"));
    assert!(c.contains(k));
    let filler = vec![1u8; 4096];
    for i in 0u64..400 {
        assert!(c.put_admitted(key(&[&i.to_le_bytes()]), &filler));
    }
    assert!(!c.contains(k), "overwritten by the filler");
    let before = c.stats();
    assert_eq!(
        (before.hits, before.misses),
        (0, 0),
        "contains is no lookup"
    );
    // Full: a new key is refused ahead as `put` would refuse it (and admitted on
    // its next miss); a value admitted ahead is stored whatever the arena holds.
    let fresh: Vec<_> = (0u64..50)
        .map(|i| key(&[b"fresh", &i.to_le_bytes()]))
        .collect();
    let mut refused = 0;
    for k in &fresh {
        if !c.admit_new(*k) {
            refused += 1;
            assert!(c.admit_new(*k), "refused twice in a row");
        }
    }
    assert!(refused > 40, "{refused} of 50 refused at once");
    assert_eq!(c.stats().refused, refused);
    for k in &fresh {
        assert!(c.put_admitted(*k, b"companion"));
        assert!(c.contains(*k));
    }
    c.clear();
    assert!(!c.contains(fresh[0]));
}

#[test]
fn values_that_fit_the_arena_stay_whatever_their_keys() {
    // 150 tiles of 4.7 KB in one iipsrv megabyte (arena ~992 KB), under 300 sets of
    // keys: a second pass over them must find every one. Uneven sets of the index
    // lost some in about one key set in twenty when a key had 8 candidate entries.
    let mut runs_with_misses = 0;
    for run in 0u32..300 {
        let c = cache(1_024_000);
        let keys: Vec<_> = (0u32..150)
            .map(|t| crate::key(&[b"tile", &run.to_le_bytes(), &t.to_le_bytes()]))
            .collect();
        for (i, k) in keys.iter().enumerate() {
            assert!(c.put(*k, &[i as u8; 4700]));
        }
        let misses = keys.iter().filter(|k| c.get(**k).is_none()).count();
        if misses > 0 {
            runs_with_misses += 1;
        }
    }
    assert!(
        runs_with_misses <= 2,
        "{runs_with_misses} of 300 runs missed"
    );
}

#[test]
fn clear_and_eviction() {
    let c = cache(1 << 20);
    let n = c.stats().entries;
    for i in 0..n * 3 {
        assert!(c.put(key(&[&i.to_le_bytes()]), &[i as u8; 100]));
    }
    let st = c.stats();
    assert!(st.evictions > 0);
    assert!(st.bytes <= n * 100);
    // A hot key that keeps being read survives a scan of new keys (CLOCK).
    let hot = key(&[b"hot"]);
    assert!(c.put(hot, b"hot value"));
    for i in 0..2000u64 {
        assert!(c.get(hot).is_some(), "lost after {i}");
        c.put(key(&[b"scan", &i.to_le_bytes()]), &[1; 10]);
    }
    assert_eq!(c.get(hot).as_deref(), Some(&b"hot value"[..]));
    c.clear();
    assert_eq!(c.get(hot), None);
    assert_eq!(c.stats().bytes, 0);
    assert!(c.put(hot, b"again"));
    assert_eq!(c.get(hot).as_deref(), Some(&b"again"[..]));
}

#[test]
fn dead_writers_are_reclaimed() {
    let c = cache(1 << 20);
    let k = key(&[b"victim"]);
    // A pid that cannot exist.
    assert!(c.lock_entry_as(k, i32::MAX as u64 - 7));
    assert_eq!(c.locked_entries(), 1);
    assert_eq!(c.get(k), None, "a half-written entry is never read");
    assert_eq!(c.reclaim_dead(), 1);
    assert_eq!(c.locked_entries(), 0);
    assert_eq!(c.stats().reclaimed, 1);
    assert!(c.put(k, b"fresh"));
    assert_eq!(c.get(k).as_deref(), Some(&b"fresh"[..]));
    // A live owner is left alone.
    let k2 = key(&[b"busy"]);
    let set_taken = c.lock_entry_as(k2, std::process::id() as u64);
    if set_taken {
        assert_eq!(c.reclaim_dead(), 0);
    }
}

#[test]
fn tiny_budgets() {
    assert!(Cache::create(0).unwrap().is_none());
    assert!(Cache::create(1000).unwrap().is_none());
    let c = cache(200_000);
    assert!(c.put(key(&[b"x"]), b"y"));
    assert_eq!(c.get(key(&[b"x"])).as_deref(), Some(&b"y"[..]));
}
