//! Who holds a shared word: this process's id, whether another process still exists,
//! and a clock every process reads alike (for the age of a marker another one wrote).

/// This process's id, as stored in the tables' owner words.
pub(crate) fn me() -> u64 {
    std::process::id() as u64
}

/// Whether process `p` exists. A zombie counts as alive until it is reaped; the
/// supervisor reaps its workers as soon as they die and then frees what they held.
pub(crate) fn alive(p: u64) -> bool {
    if p == 0 || p > i32::MAX as u64 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence.
    let r = unsafe { libc::kill(p as i32, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// Milliseconds of `CLOCK_MONOTONIC`: system-wide, so a time one process stores is
/// comparable with another's clock. Never 0 (0 marks "not set").
pub(crate) fn now_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000).max(1)
}

/// Empties every word in `words` whose owner (`owner_of` its value) no longer exists.
/// Returns how many were emptied.
pub(crate) fn clear_dead<'a>(
    words: impl Iterator<Item = &'a std::sync::atomic::AtomicU64>,
    owner_of: impl Fn(u64) -> u64,
) -> u64 {
    use std::sync::atomic::Ordering;
    let mut n = 0;
    for w in words {
        let v = w.load(Ordering::Acquire);
        if v != 0
            && !alive(owner_of(v))
            && w.compare_exchange(v, 0, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            n += 1;
        }
    }
    n
}
