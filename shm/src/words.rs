//! A block of atomic words in an anonymous shared mapping, made by the supervisor
//! before it forks so that every worker sees the same words. The admission slots and
//! the single-flight markers live in such blocks: small, fixed-size, and needed
//! whether or not the tile cache is on.

use std::sync::atomic::AtomicU64;

/// Why a shared table could not be made.
#[derive(Debug)]
pub enum TableError {
    Map(std::io::Error),
}

impl std::fmt::Display for TableError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TableError::Map(e) => write!(
                f,
                "cannot map shared memory for the admission and single-flight tables: {e}"
            ),
        }
    }
}

impl std::error::Error for TableError {}

pub(crate) struct Words {
    base: *mut AtomicU64,
    len: usize,
}

// SAFETY: the words are only accessed through atomics; the mapping lives as long as
// the handle.
unsafe impl Send for Words {}
unsafe impl Sync for Words {}

impl Words {
    /// `len` zeroed words, shared with processes forked afterwards.
    pub(crate) fn new(len: usize) -> Result<Words, TableError> {
        let bytes = len.max(1) * 8;
        // SAFETY: a fresh anonymous shared mapping; the kernel zeroes it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(TableError::Map(std::io::Error::last_os_error()));
        }
        Ok(Words {
            base: p.cast(),
            len: len.max(1),
        })
    }

    pub(crate) fn all(&self) -> &[AtomicU64] {
        // SAFETY: the mapping holds `len` page-aligned words, valid as atomics when zero.
        unsafe { std::slice::from_raw_parts(self.base, self.len) }
    }
}

impl Drop for Words {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`.
        unsafe { libc::munmap(self.base.cast(), self.len * 8) };
    }
}
