//! Which new values a full cache stores. Once the arena is full, every value stored
//! overwrites older ones, so storing every miss would let a walk over more tiles than
//! fit replace the whole cache before anything in it is read again. The policy is kept
//! apart from the arena's mechanics, which store whatever they are given.

use crate::proc::me as pid;
use std::sync::atomic::{AtomicU64, Ordering};

/// Once the arena is full, a new value is stored with odds of one in this many, or when
/// its key missed recently (see `Cache::admit`). Each value stored at random overwrites
/// old ones that may be in use. Two walks half a list apart over tiles filling four times
/// a 10 MB arena hit 16 % of 22 000 requests with 1 in 16, 19 % with 1 in 64 (20 % if
/// never); popular tiles among many asked once are hit 8 times in 10 with 1 in 16 and 9
/// with 1 in 64 (`popular_keys_stay_among_many_asked_once`).
/// Keys asked again soon are stored through the table of refused keys whatever this is.
const ADMIT_ONE_IN: u64 = 64;
/// Index entries per slot of the table of recently refused keys.
pub(crate) const ENTRIES_PER_GHOST: u64 = 4;

/// A per-process pseudo-random number (xorshift64*), for admission; reseeded in each
/// forked process so that workers do not draw the same sequence.
fn random() -> u64 {
    thread_local! {
        static STATE: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
    }
    STATE.with(|st| {
        let me = pid();
        let (owner, mut x) = st.get();
        if owner != me || x == 0 {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
            x = (me << 32 ^ t).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        }
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        st.set((me, x));
        x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32
    })
}

/// Whether a full arena stores a new value for `key`: if the key is in `ghost`, the
/// table of recently refused keys (and it leaves it), or at random one time in
/// [`ADMIT_ONE_IN`]. A key refused is put in the table, so its next miss is stored.
pub(crate) fn admit_when_full(ghost: &[AtomicU64], key: (u64, u64)) -> bool {
    let spot = (key.0.rotate_left(17) ^ key.1).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
    let slot = &ghost[(spot % ghost.len() as u64) as usize];
    let mark = key.1 | 1;
    if slot.load(Ordering::Relaxed) == mark {
        slot.store(0, Ordering::Relaxed);
        return true;
    }
    if random() % ADMIT_ONE_IN == 0 {
        return true;
    }
    slot.store(mark, Ordering::Relaxed);
    false
}
