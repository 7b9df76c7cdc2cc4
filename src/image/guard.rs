//! Memory-mapped image files that may shrink while they are served.
//!
//! Archives replace files in place (`cp new.tif served.tif` truncates the file first),
//! and touching a page of a map beyond the file's new end raises SIGBUS, which would
//! kill the worker. Every file map is registered here; a SIGBUS handler that finds the
//! faulting address inside one maps a page of zeros over it (`mmap(MAP_FIXED)`, which
//! is async-signal-safe in practice: a plain system call) and records the fault, so the
//! faulting read sees zeros and the code goes on. The request that touched the page is
//! then answered with an error ([`take_fault`]) and the worker drops its opened images,
//! so the next request sees the file as it is now. Reading through `pread` instead would
//! have cost a copy of every tile; the maps stay.
//!
//! A SIGBUS anywhere else (not in a registered map) is not ours to hide: the handler
//! restores the default action and the fault, raised again, ends the process.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Once;

/// Maps registered at once; beyond this a map is served unguarded (and counted).
const SLOTS: usize = 8192;

struct Slot {
    start: AtomicUsize,
    end: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot {
    start: AtomicUsize::new(0),
    end: AtomicUsize::new(0),
};

static MAPS: [Slot; SLOTS] = [EMPTY; SLOTS];
static FAULTED: AtomicBool = AtomicBool::new(false);
static FAULTS: AtomicUsize = AtomicUsize::new(0);
static UNGUARDED: AtomicUsize = AtomicUsize::new(0);
static PAGE: AtomicUsize = AtomicUsize::new(4096);
static INSTALL: Once = Once::new();

/// A file map, guarded for as long as it lives.
pub struct Map {
    // Dropped first: the range is unregistered before it is unmapped.
    _guard: Registration,
    map: memmap2::Mmap,
}

impl From<memmap2::Mmap> for Map {
    fn from(map: memmap2::Mmap) -> Map {
        Map {
            _guard: register(&map),
            map,
        }
    }
}

impl std::ops::Deref for Map {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.map
    }
}

/// A registered map; unregistered when dropped (before the map itself is unmapped).
pub struct Registration(Option<usize>);

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(i) = self.0 {
            MAPS[i].end.store(0, Ordering::Release);
            MAPS[i].start.store(0, Ordering::Release);
        }
    }
}

/// Guards the map at `bytes` (a file map that lives at least as long as the result).
pub fn register(bytes: &[u8]) -> Registration {
    install();
    let start = bytes.as_ptr() as usize;
    if bytes.is_empty() {
        return Registration(None);
    }
    for (i, slot) in MAPS.iter().enumerate() {
        if slot
            .start
            .compare_exchange(0, start, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            slot.end.store(start + bytes.len(), Ordering::Release);
            return Registration(Some(i));
        }
    }
    UNGUARDED.fetch_add(1, Ordering::Relaxed);
    Registration(None)
}

/// Whether a read from a guarded map faulted since the last call (and forgets it).
pub fn take_fault() -> bool {
    FAULTED.swap(false, Ordering::AcqRel)
}

/// Faults absorbed since the process started.
pub fn faults() -> usize {
    FAULTS.load(Ordering::Relaxed)
}

fn install() {
    INSTALL.call_once(|| {
        // SAFETY: sysconf and sigaction with a handler that only does atomic loads and
        // stores, mmap and sigaction: async-signal-safe.
        unsafe {
            let page = libc::sysconf(libc::_SC_PAGESIZE);
            if page > 0 {
                PAGE.store(page as usize, Ordering::Relaxed);
            }
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigbus as *const () as usize;
            sa.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut sa.sa_mask);
            if libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut()) != 0 {
                log::error!(
                    "cannot install the SIGBUS handler: a file truncated while served will end its worker"
                );
            }
        }
    });
}

fn guarded(addr: usize) -> bool {
    MAPS.iter().any(|s| {
        let start = s.start.load(Ordering::Acquire);
        start != 0 && addr >= start && addr < s.end.load(Ordering::Acquire)
    })
}

extern "C" fn on_sigbus(_sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers; the rest are
    // system calls on the faulting page.
    unsafe {
        let addr = (*info).si_addr() as usize;
        if guarded(addr) {
            let page = PAGE.load(Ordering::Relaxed);
            let at = addr & !(page - 1);
            let r = libc::mmap(
                at as *mut libc::c_void,
                page,
                libc::PROT_READ,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
                -1,
                0,
            );
            if r != libc::MAP_FAILED {
                FAULTED.store(true, Ordering::Release);
                FAULTS.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
        // Not a guarded map: the default action, taken when the access faults again.
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_truncated_map_reads_zeros_and_reports_the_fault() {
        let path = std::env::temp_dir().join(format!("guard-{}.bin", std::process::id()));
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(&vec![7u8; 64 * 1024]).unwrap();
        f.sync_all().unwrap();
        let file = std::fs::File::open(&path).unwrap();
        // SAFETY: the test truncates the file on purpose; the guard absorbs the fault.
        let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
        let reg = register(&map);
        assert!(!take_fault());
        assert_eq!(map[60_000], 7);
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(4096)
            .unwrap();
        // The first page is still in the file; the last is not.
        assert_eq!(std::hint::black_box(&map[..])[100], 7);
        assert!(!take_fault());
        let past = std::hint::black_box(&map[..])[60_000];
        assert_eq!(past, 0);
        assert!(take_fault());
        assert!(!take_fault(), "reported once");
        drop(reg);
        drop(map);
        std::fs::remove_file(&path).unwrap();
    }
}
