//! The shared region: layout, seqlocked entries, lookup, insertion, reclaim.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, AtomicU64, Ordering};

const MAGIC: u64 = 0x7465_7373_6572_6101;
/// Candidate entries per key in a size class.
const WAYS: usize = 8;
/// Largest value per size class, and the share of the budget each class gets (%).
const CLASSES: [(usize, u64); 3] = [(32 * 1024, 60), (128 * 1024, 30), (512 * 1024, 10)];
/// Entry header size: seq, reserved, key (2), generation, len, referenced, spare.
const ENTRY_HEAD: usize = 64;
const HEADER: usize = 4096;

/// Why the region could not be created or attached.
#[derive(Debug)]
pub enum CacheError {
    Os(&'static str, std::io::Error),
    Invalid(&'static str),
}

impl std::fmt::Display for CacheError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CacheError::Os(what, e) => write!(f, "shared cache: {what}: {e}"),
            CacheError::Invalid(what) => write!(f, "shared cache: {what}"),
        }
    }
}

impl std::error::Error for CacheError {}

/// Counters, readable by any process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub hits: u64,
    pub misses: u64,
    pub inserts: u64,
    pub evictions: u64,
    /// Value bytes currently stored.
    pub bytes: u64,
    /// Entries freed after their writer died mid-write.
    pub reclaimed: u64,
    /// Entries and value bytes the region can hold.
    pub entries: u64,
    pub capacity: u64,
}

#[repr(C)]
struct ClassHead {
    entries: AtomicU64,
    offset: AtomicU64,
    stride: AtomicU64,
    capacity: AtomicU64,
}

#[repr(C)]
struct Header {
    magic: AtomicU64,
    size: AtomicU64,
    generation: AtomicU64,
    hand: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    inserts: AtomicU64,
    evictions: AtomicU64,
    bytes: AtomicU64,
    reclaimed: AtomicU64,
    classes: [ClassHead; 3],
}

#[repr(C)]
struct Entry {
    /// The seqlock word; see [`locked`].
    seq: AtomicU64,
    _reserved: AtomicU64,
    k1: AtomicU64,
    k2: AtomicU64,
    generation: AtomicU64,
    len: AtomicU64,
    referenced: AtomicU64,
    _spare: AtomicU64,
}

/// A handle on the shared region. Cloning is not needed: forked children inherit it.
pub struct Cache {
    base: *mut u8,
    size: usize,
    fd: OwnedFd,
}

// SAFETY: the region is only accessed through atomics; the pointer stays valid for
// the lifetime of the handle (the mapping is released on drop).
unsafe impl Send for Cache {}
unsafe impl Sync for Cache {}

fn pid() -> u64 {
    std::process::id() as u64
}

/// The write count in a seqlock word: bits 0..32, odd while the entry is being written.
const COUNT: u64 = 0xFFFF_FFFF;

/// The seqlock word of an entry taken for writing by `owner`, from its word `s`: the count
/// moves to the next odd value and the owner's pid fills bits 32..64. Taking the lock and
/// naming its owner are one atomic step, so a live writer never looks ownerless to a
/// process that would reclaim a dead writer's entry.
fn locked(s: u64, owner: u64) -> u64 {
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

fn alive(p: u64) -> bool {
    if p == 0 || p > i32::MAX as u64 {
        return false;
    }
    // SAFETY: signal 0 only checks for existence.
    let r = unsafe { libc::kill(p as i32, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

impl Cache {
    /// Creates a region for `budget` bytes of values. `None` when the budget holds no entry.
    pub fn create(budget: u64) -> Result<Option<Cache>, CacheError> {
        let mut layout = [(0u64, 0u64, 0u64, 0u64); 3];
        let mut off = HEADER as u64;
        for (i, (cap, share)) in CLASSES.iter().enumerate() {
            let stride = (ENTRY_HEAD + cap) as u64;
            let mut n = budget * share / 100 / stride;
            if n >= WAYS as u64 {
                n -= n % WAYS as u64;
            }
            layout[i] = (n, off, stride, *cap as u64);
            off += n * stride;
        }
        if layout.iter().all(|l| l.0 == 0) {
            return Ok(None);
        }
        // SAFETY: plain syscalls on a descriptor we own.
        let fd = unsafe { libc::memfd_create(c"tessera-cache".as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(CacheError::Os(
                "memfd_create",
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: fd is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        if unsafe { libc::ftruncate(fd.as_raw_fd(), off as libc::off_t) } != 0 {
            return Err(CacheError::Os("ftruncate", std::io::Error::last_os_error()));
        }
        let c = Self::map(fd, off as usize)?;
        let h = c.header();
        h.size.store(off, Ordering::Relaxed);
        h.generation.store(1, Ordering::Relaxed);
        for (i, (n, o, s, cap)) in layout.iter().enumerate() {
            h.classes[i].entries.store(*n, Ordering::Relaxed);
            h.classes[i].offset.store(*o, Ordering::Relaxed);
            h.classes[i].stride.store(*s, Ordering::Relaxed);
            h.classes[i].capacity.store(*cap, Ordering::Relaxed);
        }
        h.magic.store(MAGIC, Ordering::Release);
        Ok(Some(c))
    }

    /// Attaches to a region created by [`create`](Self::create) in another process,
    /// given its descriptor (e.g. inherited across exec).
    pub fn attach(fd: RawFd) -> Result<Cache, CacheError> {
        // SAFETY: the caller hands over a descriptor it owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
            return Err(CacheError::Os("fstat", std::io::Error::last_os_error()));
        }
        let size = st.st_size as usize;
        if size < HEADER {
            return Err(CacheError::Invalid("region too small"));
        }
        let c = Self::map(fd, size)?;
        let h = c.header();
        if h.magic.load(Ordering::Acquire) != MAGIC || h.size.load(Ordering::Relaxed) != size as u64
        {
            return Err(CacheError::Invalid("not a tessera cache region"));
        }
        for ch in &h.classes {
            let end = ch.offset.load(Ordering::Relaxed)
                + ch.entries.load(Ordering::Relaxed) * ch.stride.load(Ordering::Relaxed);
            if end > size as u64
                || ch.stride.load(Ordering::Relaxed)
                    < ENTRY_HEAD as u64 + ch.capacity.load(Ordering::Relaxed)
            {
                return Err(CacheError::Invalid("corrupt class table"));
            }
        }
        Ok(c)
    }

    fn map(fd: OwnedFd, size: usize) -> Result<Cache, CacheError> {
        // SAFETY: a shared read-write mapping of the whole memfd.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(CacheError::Os("mmap", std::io::Error::last_os_error()));
        }
        Ok(Cache {
            base: p.cast(),
            size,
            fd,
        })
    }

    /// The region's descriptor (to hand to a process that attaches).
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn header(&self) -> &Header {
        // SAFETY: the header lies at the start of a mapping of at least HEADER bytes,
        // page-aligned, and consists of atomics only.
        unsafe { &*(self.base as *const Header) }
    }

    fn entry(&self, class: usize, i: u64) -> (&Entry, &[AtomicU64]) {
        let c = &self.header().classes[class];
        let off = c.offset.load(Ordering::Relaxed) + i * c.stride.load(Ordering::Relaxed);
        let words = c.capacity.load(Ordering::Relaxed) as usize / 8;
        debug_assert!(off as usize + ENTRY_HEAD + words * 8 <= self.size);
        // SAFETY: `attach`/`create` validated that every entry of every class lies
        // inside the mapping; entries are 8-byte aligned and made of atomics.
        unsafe {
            let e = &*(self.base.add(off as usize) as *const Entry);
            let d = std::slice::from_raw_parts(
                self.base.add(off as usize + ENTRY_HEAD) as *const AtomicU64,
                words,
            );
            (e, d)
        }
    }

    /// The candidate entries of `k1` in `class`.
    fn set(&self, class: usize, k1: u64) -> std::ops::Range<u64> {
        let n = self.header().classes[class].entries.load(Ordering::Relaxed);
        if n <= WAYS as u64 {
            return 0..n;
        }
        let sets = n / WAYS as u64;
        let start = (k1 % sets) * WAYS as u64;
        start..start + WAYS as u64
    }

    /// Copies out the value stored under `key`, if any. Never blocks.
    pub fn get(&self, key: (u64, u64)) -> Option<Vec<u8>> {
        let h = self.header();
        let generation = h.generation.load(Ordering::Acquire);
        for class in 0..CLASSES.len() {
            for i in self.set(class, key.0) {
                let (e, data) = self.entry(class, i);
                let s1 = e.seq.load(Ordering::Acquire);
                if s1 & 1 == 1
                    || e.k1.load(Ordering::Relaxed) != key.0
                    || e.k2.load(Ordering::Relaxed) != key.1
                    || e.generation.load(Ordering::Relaxed) != generation
                {
                    continue;
                }
                let len = e.len.load(Ordering::Relaxed) as usize;
                if len > data.len() * 8 {
                    continue;
                }
                let mut out = Vec::with_capacity(len.div_ceil(8) * 8);
                for w in &data[..len.div_ceil(8)] {
                    out.extend_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
                }
                out.truncate(len);
                fence(Ordering::Acquire);
                if e.seq.load(Ordering::Relaxed) != s1 {
                    continue; // overwritten while copying
                }
                e.referenced.store(1, Ordering::Relaxed);
                h.hits.fetch_add(1, Ordering::Relaxed);
                return Some(out);
            }
        }
        h.misses.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Frees an entry left odd by a writer that no longer exists. True if freed.
    fn repair(&self, e: &Entry, s: u64) -> bool {
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
        self.header().reclaimed.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Stores `value` under `key`. Returns false when it is too large for any class or
    /// every candidate entry is being written by another live process.
    pub fn put(&self, key: (u64, u64), value: &[u8]) -> bool {
        let h = self.header();
        let Some(class) = (0..CLASSES.len()).find(|&c| {
            h.classes[c].entries.load(Ordering::Relaxed) > 0
                && h.classes[c].capacity.load(Ordering::Relaxed) as usize >= value.len()
        }) else {
            return false;
        };
        let generation = h.generation.load(Ordering::Acquire);
        let set = self.set(class, key.0);
        let ways = set.end - set.start;
        if ways == 0 {
            return false;
        }
        // The same key, else an empty or stale entry, else a CLOCK victim.
        let mut pick = None;
        for i in set.clone() {
            let (e, _) = self.entry(class, i);
            if e.k1.load(Ordering::Relaxed) == key.0 && e.k2.load(Ordering::Relaxed) == key.1 {
                pick = Some(i);
                break;
            }
            if pick.is_none()
                && (e.k1.load(Ordering::Relaxed) == 0
                    || e.generation.load(Ordering::Relaxed) != generation)
            {
                pick = Some(i);
            }
        }
        let pick = pick.unwrap_or_else(|| {
            let mut chosen = set.start;
            for step in 0..2 * ways {
                let i = set.start + (h.hand.fetch_add(1, Ordering::Relaxed) + step) % ways;
                let (e, _) = self.entry(class, i);
                if e.referenced.swap(0, Ordering::Relaxed) == 0 {
                    chosen = i;
                    break;
                }
            }
            chosen
        });
        let (e, data) = self.entry(class, pick);
        let mut s = e.seq.load(Ordering::Acquire);
        if s & 1 == 1 {
            if !self.repair(e, s) {
                return false;
            }
            s = e.seq.load(Ordering::Acquire);
            if s & 1 == 1 {
                return false;
            }
        }
        let lock = locked(s, pid());
        if e.seq
            .compare_exchange(s, lock, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        fence(Ordering::Release);
        let was_live =
            e.k1.load(Ordering::Relaxed) != 0 && e.generation.load(Ordering::Relaxed) == generation;
        if was_live {
            let old = e.len.load(Ordering::Relaxed);
            let same =
                e.k1.load(Ordering::Relaxed) == key.0 && e.k2.load(Ordering::Relaxed) == key.1;
            if !same {
                h.evictions.fetch_add(1, Ordering::Relaxed);
            }
            h.bytes
                .fetch_sub(old.min(h.bytes.load(Ordering::Relaxed)), Ordering::Relaxed);
        }
        e.k1.store(key.0, Ordering::Relaxed);
        e.k2.store(key.1, Ordering::Relaxed);
        e.generation.store(generation, Ordering::Relaxed);
        e.len.store(value.len() as u64, Ordering::Relaxed);
        for (w, chunk) in data.iter().zip(value.chunks(8)) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            w.store(u64::from_le_bytes(b), Ordering::Relaxed);
        }
        e.referenced.store(1, Ordering::Relaxed);
        e.seq.store(published(lock), Ordering::Release);
        h.inserts.fetch_add(1, Ordering::Relaxed);
        h.bytes.fetch_add(value.len() as u64, Ordering::Relaxed);
        true
    }

    /// Empties the cache at once (SIGHUP): every entry of an older generation is a miss.
    pub fn clear(&self) {
        let h = self.header();
        h.generation.fetch_add(1, Ordering::AcqRel);
        h.bytes.store(0, Ordering::Relaxed);
    }

    /// Frees every entry a dead process left mid-write. Returns how many were freed.
    pub fn reclaim_dead(&self) -> u64 {
        let mut n = 0;
        for class in 0..CLASSES.len() {
            let entries = self.header().classes[class].entries.load(Ordering::Relaxed);
            for i in 0..entries {
                let (e, _) = self.entry(class, i);
                let s = e.seq.load(Ordering::Acquire);
                if s & 1 == 1 && self.repair(e, s) {
                    n += 1;
                }
            }
        }
        n
    }

    /// Entries currently locked by a writer (odd sequence).
    pub fn locked_entries(&self) -> u64 {
        let mut n = 0;
        for class in 0..CLASSES.len() {
            let entries = self.header().classes[class].entries.load(Ordering::Relaxed);
            for i in 0..entries {
                if self.entry(class, i).0.seq.load(Ordering::Acquire) & 1 == 1 {
                    n += 1;
                }
            }
        }
        n
    }

    pub fn stats(&self) -> Stats {
        let h = self.header();
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            hits: r(&h.hits),
            misses: r(&h.misses),
            inserts: r(&h.inserts),
            evictions: r(&h.evictions),
            bytes: r(&h.bytes),
            reclaimed: r(&h.reclaimed),
            entries: h.classes.iter().map(|c| r(&c.entries)).sum(),
            capacity: h
                .classes
                .iter()
                .map(|c| r(&c.entries) * r(&c.capacity))
                .sum(),
        }
    }

    /// Simulates a writer that died after locking an entry (for tests of the repair path).
    #[doc(hidden)]
    pub fn lock_entry_as(&self, key: (u64, u64), owner: u64) -> bool {
        let set = self.set(0, key.0);
        let (e, _) = self.entry(0, set.start);
        let s = e.seq.load(Ordering::Acquire);
        if s & 1 == 1
            || e.seq
                .compare_exchange(s, locked(s, owner), Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return false;
        }
        e.k1.store(key.0, Ordering::Relaxed);
        e.k2.store(key.1, Ordering::Relaxed);
        true
    }
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("size", &self.size)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping; no reference into it outlives the handle.
        unsafe { libc::munmap(self.base.cast(), self.size) };
    }
}

#[cfg(test)]
mod tests {
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
        assert!(!c.put(key(&[b"huge"]), &vec![0; 600_000]));
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
            let _ = c.get(hot);
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
}

/// A model check of the seqlock protocol with `loom`, which runs every interleaving the
/// C11 memory model allows. The model's entry is the protocol's core (word, key, two data
/// words that must never be seen apart); its steps use the real [`locked`] and
/// [`published`] words and the orderings of [`Cache::get`], [`Cache::put`] and
/// [`Cache::repair`] — change them together.
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

    /// `Cache::put`: take the word, write, publish. `die_after` stops a writer midway.
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

    /// `Cache::get`: what a reader accepts for `key`.
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

    /// `Cache::repair`, with `dead` standing for the liveness test of the owner's pid.
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
