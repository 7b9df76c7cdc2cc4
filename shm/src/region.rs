//! The shared region: layout, seqlocked index entries, the value arena, lookup,
//! insertion, reclaim.

use crate::proc::{alive, me as pid};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{fence, AtomicU64, Ordering};

const MAGIC: u64 = 0x7465_7373_6572_6104;
/// Candidate index entries per key. With 8, about one run in twenty of 150 values into
/// a 500-entry index put more than 8 in one set; the overflow evicted values the arena
/// still held, and a client reading the same tiles again then evicted one more with
/// each miss. With 16 (same index size), that takes over 16 in a set: about one run in
/// two thousand.
const WAYS: usize = 16;
/// One index entry per this many bytes of budget: values down to this size (small JPEG
/// tiles of flat areas) can still fill the arena.
const BYTES_PER_ENTRY: u64 = 2048;
/// Index entry size: seq, reserved, key (2), generation, len, referenced, position.
const ENTRY_HEAD: usize = 64;
const HEADER: usize = 4096;
/// Largest value: this fraction of the arena, so one value never flushes the cache.
const MAX_VALUE_SHARE: u64 = 4;
/// Bound on the compare-and-swap loop that reserves arena space.
const RESERVE_TRIES: usize = 1000;
/// Once the arena is full, a new value is stored with odds of one in this many, or when
/// its key missed recently (see [`Cache::admit`]). Each value stored at random overwrites
/// old ones that may be in use. Two walks half a list apart over tiles filling four times
/// a 10 MB arena hit 16 % of 22 000 requests with 1 in 16, 19 % with 1 in 64 (20 % if
/// never); popular tiles among many asked once are hit 8 times in 10 with 1 in 16 and 9
/// with 1 in 64 (`popular_keys_stay_among_many_asked_once`).
/// Keys asked again soon are stored through the table of refused keys whatever this is.
const ADMIT_ONE_IN: u64 = 64;
/// Index entries per slot of the table of recently refused keys.
const ENTRIES_PER_GHOST: u64 = 4;

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
    /// Arena position of the value (a multiple of 8).
    pos: AtomicU64,
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

/// The sequence word of `e` if it is published (not being written) and holds `key` in
/// `generation`: the first check of a lookup, which re-reads the word after copying.
fn published_for(e: &Entry, key: (u64, u64), generation: u64) -> Option<u64> {
    let s = e.seq.load(Ordering::Acquire);
    (s & 1 == 0
        && e.k1.load(Ordering::Relaxed) == key.0
        && e.k2.load(Ordering::Relaxed) == key.1
        && e.generation.load(Ordering::Relaxed) == generation)
        .then_some(s)
}

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
    /// keys asked again soon are found there — and one in [`ADMIT_ONE_IN`] others, at
    /// random, so that a steady share of a long walk stays and is hit on the next round.
    fn admit(&self, key: (u64, u64)) -> bool {
        let h = self.header();
        let arena_len = h.arena_len.load(Ordering::Relaxed);
        let head = h.head.load(Ordering::Relaxed);
        if head.saturating_sub(h.filled_from.load(Ordering::Relaxed)) < arena_len {
            return true;
        }
        let ghost = self.ghost();
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
        h.refused.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// The candidate entries of `key`.
    fn set(&self, key: (u64, u64)) -> std::ops::Range<u64> {
        let n = self.header().entries.load(Ordering::Relaxed);
        if n <= WAYS as u64 {
            return 0..n;
        }
        let sets = n / WAYS as u64;
        // Not `key.0` alone: it is always odd (0 marks an empty entry), so with an even
        // number of sets only half of them would ever be used.
        let start = set_of(key, sets) * WAYS as u64;
        start..start + WAYS as u64
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
            let first = ((pos % arena_len) / 8) as usize;
            let words = len.div_ceil(8) as usize;
            if len > arena_len / MAX_VALUE_SHARE
                || pos % 8 != 0
                || first + words > arena.len()
                || h.tail.load(Ordering::Relaxed) > pos
            {
                continue;
            }
            let mut out = vec![0u8; words * 8];
            for (o, w) in out.chunks_exact_mut(8).zip(&arena[first..first + words]) {
                o.copy_from_slice(&w.load(Ordering::Relaxed).to_le_bytes());
            }
            out.truncate(len as usize);
            // A writer moves the tail past the bytes it is about to overwrite before it
            // writes them, and fences; so if any word copied above is newer than the
            // value, this load sees the tail past `pos`.
            fence(Ordering::Acquire);
            let tail = h.tail.load(Ordering::Relaxed);
            if e.seq.load(Ordering::Relaxed) != s1 || tail > pos {
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
        let len8 = len.div_ceil(8) * 8;
        let mut reserved = None;
        for _ in 0..RESERVE_TRIES {
            let head = h.head.load(Ordering::Relaxed);
            let (start, end) = placement(head, len8, arena_len);
            if h.head
                .compare_exchange_weak(head, end, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                reserved = Some((start, end));
                break;
            }
        }
        let Some((start, end)) = reserved else {
            return false;
        };
        h.tail
            .fetch_max(end.saturating_sub(arena_len), Ordering::Relaxed);
        fence(Ordering::Release);
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
        // Then the index entry: the same key, else an empty or dead one, else a CLOCK
        // victim.
        let tail = h.tail.load(Ordering::Relaxed);
        let dead = |e: &Entry| {
            e.k1.load(Ordering::Relaxed) == 0
                || e.generation.load(Ordering::Relaxed) != generation
                || e.pos.load(Ordering::Relaxed) < tail
        };
        let mut pick = None;
        for i in set.clone() {
            let e = self.entry(i);
            if e.k1.load(Ordering::Relaxed) == key.0 && e.k2.load(Ordering::Relaxed) == key.1 {
                pick = Some(i);
                break;
            }
            if pick.is_none() && dead(e) {
                pick = Some(i);
            }
        }
        let ways = set.end - set.start;
        let pick = pick.unwrap_or_else(|| {
            let mut chosen = set.start;
            let hand = h.hand.fetch_add(1, Ordering::Relaxed);
            for step in 0..2 * ways {
                let i = set.start + (hand + step) % ways;
                if self.entry(i).referenced.swap(0, Ordering::Relaxed) == 0 {
                    chosen = i;
                    break;
                }
            }
            chosen
        });
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
        let lock = locked(s, pid());
        if e.seq
            .compare_exchange(s, lock, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        fence(Ordering::Release);
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
        e.seq.store(published(lock), Ordering::Release);
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

    /// Hits over the last three of six rounds of a walk over 1 000 keys of 4 KB (four
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

    /// The arena's rule, as in `Cache::insert` and `Cache::get`: a writer moves the tail
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
