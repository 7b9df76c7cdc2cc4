//! The cache as the workers see it: one memfd, created by the supervisor and mapped by
//! every worker, whose layout is checked once on attach so that every later access can
//! trust it. Lookups and insertions tie together the pieces kept apart elsewhere: the
//! seqlock of each index entry (`seqlock`), where values go in the arena and which entry
//! they take (`arena`), and which new values a full cache stores (`admission`).

use crate::admission::{self, ENTRIES_PER_GHOST};
use crate::arena::{self, MAX_VALUE_SHARE, WAYS};
use crate::seqlock::{self, locked, published_for, Entry};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, AtomicU64, Ordering};

const MAGIC: u64 = 0x7465_7373_6572_6104;
/// One index entry per this many bytes of budget: values down to this size (small JPEG
/// tiles of flat areas) can still fill the arena.
const BYTES_PER_ENTRY: u64 = 2048;
/// Index entry size: seq, reserved, key (2), generation, len, referenced, position.
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
    /// Live values whose index entry was given to another key, or whose bytes the
    /// arena overwrote, counted when their entry is reused.
    pub evictions: u64,
    /// Bytes of the values that can be read now (counted from the index).
    pub bytes: u64,
    /// Entries freed after their writer died mid-write.
    pub reclaimed: u64,
    /// Values not stored because the arena was full and their key had not missed
    /// recently.
    pub refused: u64,
    /// Index entries, and bytes of the value arena.
    pub entries: u64,
    pub capacity: u64,
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
    reclaimed: AtomicU64,
    /// Index entries (a multiple of [`WAYS`]), from byte [`HEADER`] on.
    entries: AtomicU64,
    /// Where the arena starts and its length in bytes (a multiple of 8).
    arena_offset: AtomicU64,
    arena_len: AtomicU64,
    /// Arena positions only grow: the byte at position `p` lives at `p % arena_len`.
    /// `head` is where the next value goes; every byte from `tail` on is as its writer
    /// left it, bytes before `tail` may have been overwritten.
    head: AtomicU64,
    tail: AtomicU64,
    /// The head when the cache was last emptied: the arena is full once the head is
    /// `arena_len` past it.
    filled_from: AtomicU64,
    refused: AtomicU64,
    /// The table of recently refused keys: `ghost_len` words from `ghost_offset`.
    ghost_offset: AtomicU64,
    ghost_len: AtomicU64,
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

/// What an insertion is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Insert {
    /// A value just computed: counted, and stored if admitted.
    New,
    /// A value read near the arena's tail, moved to the head.
    SecondChance,
    /// Admitted beforehand ([`Cache::admit_new`]): counted, always stored.
    Admitted,
}

impl Cache {
    /// Creates a region for `budget` bytes (index and values; the header adds 4 KiB).
    /// `None` when the budget is too small to be useful.
    pub fn create(budget: u64) -> Result<Option<Cache>, CacheError> {
        let entries = budget / BYTES_PER_ENTRY / WAYS as u64 * WAYS as u64;
        let index = entries * ENTRY_HEAD as u64;
        let ghost_len = (entries / ENTRIES_PER_GHOST).max(1);
        let arena = budget.saturating_sub(index + ghost_len * 8) / 8 * 8;
        if entries < WAYS as u64 || arena < 4096 {
            return Ok(None);
        }
        let ghost_offset = HEADER as u64 + index;
        let arena_offset = ghost_offset + ghost_len * 8;
        let size = arena_offset + arena;
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
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size as libc::off_t) } != 0 {
            return Err(CacheError::Os("ftruncate", std::io::Error::last_os_error()));
        }
        let c = Self::map(fd, size as usize)?;
        let h = c.header();
        h.size.store(size, Ordering::Relaxed);
        h.generation.store(1, Ordering::Relaxed);
        h.entries.store(entries, Ordering::Relaxed);
        h.arena_offset.store(arena_offset, Ordering::Relaxed);
        h.arena_len.store(arena, Ordering::Relaxed);
        h.ghost_offset.store(ghost_offset, Ordering::Relaxed);
        h.ghost_len.store(ghost_len, Ordering::Relaxed);
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
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let index_end =
            (HEADER as u64).checked_add(r(&h.entries).saturating_mul(ENTRY_HEAD as u64));
        let arena_end = r(&h.arena_offset).checked_add(r(&h.arena_len));
        let ghost_end = r(&h.ghost_len)
            .checked_mul(8)
            .and_then(|g| g.checked_add(r(&h.ghost_offset)));
        if index_end.is_none_or(|e| e > r(&h.ghost_offset))
            || ghost_end.is_none_or(|e| e > r(&h.arena_offset))
            || r(&h.ghost_len) == 0
            || r(&h.ghost_offset) % 8 != 0
            || arena_end != Some(size as u64)
            || r(&h.arena_len) % 8 != 0
            || r(&h.arena_len) == 0
            || r(&h.arena_offset) % 8 != 0
        {
            return Err(CacheError::Invalid("corrupt layout"));
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

    fn entry(&self, i: u64) -> &Entry {
        let off = HEADER + i as usize * ENTRY_HEAD;
        debug_assert!(off + ENTRY_HEAD <= self.size);
        // SAFETY: `attach`/`create` validated that the index lies inside the mapping;
        // entries are 8-byte aligned and made of atomics.
        unsafe { &*(self.base.add(off) as *const Entry) }
    }

    /// `n` words of the region from byte `off`, which `attach`/`create` validated.
    fn words(&self, off: u64, n: u64) -> &[AtomicU64] {
        let (off, n) = (off as usize, n as usize);
        debug_assert!(off % 8 == 0 && off + n * 8 <= self.size);
        // SAFETY: `attach`/`create` checked that the arena and the table of refused keys
        // lie inside the mapping, 8-byte aligned; the region holds atomics only.
        unsafe { std::slice::from_raw_parts(self.base.add(off) as *const AtomicU64, n) }
    }

    /// The arena as words.
    fn arena(&self) -> &[AtomicU64] {
        let h = self.header();
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        self.words(r(&h.arena_offset), r(&h.arena_len) / 8)
    }

    /// The table of recently refused keys, as words.
    fn ghost(&self) -> &[AtomicU64] {
        let h = self.header();
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        self.words(r(&h.ghost_offset), r(&h.ghost_len))
    }

    /// Whether a new value for `key` may be stored now. Until the arena is full, always.
    /// Then a stored value makes room by overwriting the oldest ones; storing every miss
    /// would let a client that walks more tiles than fit (a scan, or many tiles requested
    /// once) replace the whole cache before anything in it is read again, so that nothing
    /// ever hits. A full arena stores a value whose key missed recently — it is in the
    /// table of refused keys, which holds about a quarter of the index's count, so only
    /// keys asked again soon are found there — and one in `ADMIT_ONE_IN` others, at
    /// random, so that a steady share of a long walk stays and is hit on the next round.
    fn admit(&self, key: (u64, u64)) -> bool {
        let h = self.header();
        let arena_len = h.arena_len.load(Ordering::Relaxed);
        let head = h.head.load(Ordering::Relaxed);
        if head.saturating_sub(h.filled_from.load(Ordering::Relaxed)) < arena_len {
            return true;
        }
        if admission::admit_when_full(self.ghost(), key) {
            return true;
        }
        h.refused.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// The candidate entries of `key`.
    fn set(&self, key: (u64, u64)) -> std::ops::Range<u64> {
        arena::set(self.header().entries.load(Ordering::Relaxed), key)
    }

    /// Copies out the value stored under `key`, if any. Never blocks.
    pub fn get(&self, key: (u64, u64)) -> Option<Vec<u8>> {
        let h = self.header();
        let generation = h.generation.load(Ordering::Acquire);
        let arena = self.arena();
        let arena_len = arena.len() as u64 * 8;
        for i in self.set(key) {
            let e = self.entry(i);
            let Some(s1) = published_for(e, key, generation) else {
                continue;
            };
            let len = e.len.load(Ordering::Relaxed);
            let pos = e.pos.load(Ordering::Relaxed);
            let Some(words) = arena::value_words(arena, pos, len) else {
                continue;
            };
            if h.tail.load(Ordering::Relaxed) > pos {
                continue;
            }
            let out = arena::copy_out(words, len);
            // A writer moves the tail past the bytes it is about to overwrite before it
            // writes them, and fences; so if any word copied above is newer than the
            // value, this load sees the tail past `pos`.
            fence(Ordering::Acquire);
            let tail = h.tail.load(Ordering::Relaxed);
            if !seqlock::unchanged(e, s1) || tail > pos {
                continue; // rewritten while copying
            }
            e.referenced.store(1, Ordering::Relaxed);
            h.hits.fetch_add(1, Ordering::Relaxed);
            // Second chance: a value still read when the arena is about to overwrite it
            // moves to the head, so what is in use survives a scan of new values.
            if h.head.load(Ordering::Relaxed).saturating_sub(pos) > arena_len / 4 * 3 {
                self.insert(key, &out, Insert::SecondChance);
            }
            return Some(out);
        }
        h.misses.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Frees an entry left odd by a writer that no longer exists. True if freed.
    fn repair(&self, e: &Entry, s: u64) -> bool {
        let freed = seqlock::repair(e, s);
        if freed {
            self.header().reclaimed.fetch_add(1, Ordering::Relaxed);
        }
        freed
    }

    /// Stores `value` under `key`, unless the arena is full and the key is not admitted
    /// (see [`admit`](Self::admit)). Returns false when it is not stored: also when it is
    /// larger than a quarter of the
    /// arena or every candidate entry is being written by another live process.
    pub fn put(&self, key: (u64, u64), value: &[u8]) -> bool {
        self.insert(key, value, Insert::New)
    }

    /// Whether a value about to be computed for `key` will be stored: [`put`](Self::put)'s
    /// admission, decided (and a refusal recorded) now, for a caller that computes more
    /// when its values will be kept. Store it then with [`put_admitted`](Self::put_admitted).
    pub fn admit_new(&self, key: (u64, u64)) -> bool {
        !self.set(key).is_empty() && self.admit(key)
    }

    /// [`put`](Self::put) without admission, for values [`admit_new`](Self::admit_new)
    /// admitted and values computed along with them.
    pub fn put_admitted(&self, key: (u64, u64), value: &[u8]) -> bool {
        self.insert(key, value, Insert::Admitted)
    }

    /// [`put`](Self::put) without admission: the arena's mechanics under any load.
    #[cfg(test)]
    fn put_unfiltered(&self, key: (u64, u64), value: &[u8]) -> bool {
        self.put_admitted(key, value)
    }

    /// Whether a value is stored under `key`, without reading it or counting a lookup.
    pub fn contains(&self, key: (u64, u64)) -> bool {
        let h = self.header();
        let generation = h.generation.load(Ordering::Acquire);
        let tail = h.tail.load(Ordering::Relaxed);
        self.set(key).any(|i| {
            let e = self.entry(i);
            published_for(e, key, generation).is_some() && e.pos.load(Ordering::Relaxed) >= tail
        })
    }

    fn insert(&self, key: (u64, u64), value: &[u8], how: Insert) -> bool {
        let count = how != Insert::SecondChance;
        let h = self.header();
        let arena = self.arena();
        let arena_len = arena.len() as u64 * 8;
        let len = value.len() as u64;
        if len > arena_len / MAX_VALUE_SHARE {
            return false;
        }
        let generation = h.generation.load(Ordering::Acquire);
        let set = self.set(key);
        if set.is_empty() || (how == Insert::New && !self.admit(key)) {
            return false;
        }
        // The value first, in arena space nobody else writes: reserve it, declare the
        // bytes it covers overwritten (tail), then write.
        let Some((start, _)) = arena::reserve(&h.head, &h.tail, len, arena_len) else {
            return false;
        };
        arena::write(arena, start, value);
        // Then the index entry: the same key, else an empty or dead one, else a CLOCK
        // victim.
        let tail = h.tail.load(Ordering::Relaxed);
        let dead = |e: &Entry| {
            e.k1.load(Ordering::Relaxed) == 0
                || e.generation.load(Ordering::Relaxed) != generation
                || e.pos.load(Ordering::Relaxed) < tail
        };
        let pick = arena::pick(set, key, |i| self.entry(i), dead, &h.hand);
        let e = self.entry(pick);
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
        let Some(lock) = seqlock::lock(e, s) else {
            return false;
        };
        let same = e.k1.load(Ordering::Relaxed) == key.0 && e.k2.load(Ordering::Relaxed) == key.1;
        let was_value =
            e.k1.load(Ordering::Relaxed) != 0 && e.generation.load(Ordering::Relaxed) == generation;
        if was_value && !same {
            h.evictions.fetch_add(1, Ordering::Relaxed);
        }
        e.k1.store(key.0, Ordering::Relaxed);
        e.k2.store(key.1, Ordering::Relaxed);
        e.generation.store(generation, Ordering::Relaxed);
        e.len.store(len, Ordering::Relaxed);
        e.pos.store(start, Ordering::Relaxed);
        // A new value has not been asked for yet: it is the first a CLOCK sweep takes,
        // before any that has been read since its last sweep.
        e.referenced.store(u64::from(!count), Ordering::Relaxed);
        seqlock::publish(e, lock);
        if count {
            h.inserts.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    /// Empties the cache at once (SIGHUP): every entry of an older generation is a miss.
    pub fn clear(&self) {
        let h = self.header();
        h.generation.fetch_add(1, Ordering::AcqRel);
        // Nothing in the arena is live any more: store every value until it is full again.
        h.filled_from
            .store(h.head.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// Frees every entry a dead process left mid-write. Returns how many were freed.
    pub fn reclaim_dead(&self) -> u64 {
        let mut n = 0;
        for i in 0..self.header().entries.load(Ordering::Relaxed) {
            let e = self.entry(i);
            let s = e.seq.load(Ordering::Acquire);
            if s & 1 == 1 && self.repair(e, s) {
                n += 1;
            }
        }
        n
    }

    /// Entries currently locked by a writer (odd sequence).
    pub fn locked_entries(&self) -> u64 {
        (0..self.header().entries.load(Ordering::Relaxed))
            .filter(|&i| self.entry(i).seq.load(Ordering::Acquire) & 1 == 1)
            .count() as u64
    }

    pub fn stats(&self) -> Stats {
        let h = self.header();
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let generation = h.generation.load(Ordering::Acquire);
        let tail = r(&h.tail);
        let bytes = (0..r(&h.entries))
            .map(|i| self.entry(i))
            .filter(|e| {
                r(&e.seq) & 1 == 0
                    && r(&e.k1) != 0
                    && r(&e.generation) == generation
                    && r(&e.pos) >= tail
            })
            .map(|e| r(&e.len))
            .sum();
        Stats {
            hits: r(&h.hits),
            misses: r(&h.misses),
            inserts: r(&h.inserts),
            evictions: r(&h.evictions),
            bytes,
            reclaimed: r(&h.reclaimed),
            refused: r(&h.refused),
            entries: r(&h.entries),
            capacity: r(&h.arena_len),
        }
    }

    /// Simulates a writer that died after locking an entry (for tests of the repair path).
    #[doc(hidden)]
    pub fn lock_entry_as(&self, key: (u64, u64), owner: u64) -> bool {
        let e = self.entry(self.set(key).start);
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
mod tests;
