//! Request counters shared between workers and the supervisor: one atomic per
//! worker slot in an anonymous MAP_SHARED mapping made before fork.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};

use super::metrics::Metrics;
use super::SLOTS;

pub struct Stats {
    counters: &'static [AtomicU64],
    metrics: &'static Metrics,
    free: Vec<usize>,
    by_pid: HashMap<i32, usize>,
    retired: u64,
}

impl Stats {
    pub fn new() -> nix::Result<Stats> {
        let len = NonZeroUsize::new(SLOTS * 8 + std::mem::size_of::<Metrics>()).expect("non-zero");
        // SAFETY: a fresh anonymous shared mapping, never unmapped, holding only atomics
        // (zeroed pages are valid AtomicU64 values).
        let ptr = unsafe {
            nix::sys::mman::mmap_anonymous(
                None,
                len,
                nix::sys::mman::ProtFlags::PROT_READ | nix::sys::mman::ProtFlags::PROT_WRITE,
                nix::sys::mman::MapFlags::MAP_SHARED,
            )?
        };
        // SAFETY: the mapping is SLOTS*8 bytes, page-aligned and lives for the process.
        let counters =
            unsafe { std::slice::from_raw_parts(ptr.as_ptr() as *const AtomicU64, SLOTS) };
        // SAFETY: the metrics block follows the counters, 8-byte aligned, zeroed, never unmapped.
        let metrics = unsafe { &*((ptr.as_ptr() as *const u8).add(SLOTS * 8) as *const Metrics) };
        Ok(Stats {
            counters,
            metrics,
            free: (0..SLOTS).rev().collect(),
            by_pid: HashMap::new(),
            retired: 0,
        })
    }

    /// Takes a free slot for a worker about to be forked (slot 0 is reused when full).
    pub fn claim(&mut self) -> usize {
        let s = self.free.pop().unwrap_or(0);
        self.counters[s].store(0, Ordering::Relaxed);
        self.metrics.set_connections(s, 0);
        self.metrics.set_admission_waiting(s, 0);
        s
    }

    pub fn metrics(&self) -> &'static Metrics {
        self.metrics
    }

    pub fn counter(&self, slot: usize) -> &'static AtomicU64 {
        &self.counters[slot]
    }

    pub fn assign(&mut self, slot: usize, pid: i32) {
        self.by_pid.insert(pid, slot);
    }

    pub fn release(&mut self, slot: usize) {
        self.free.push(slot);
    }

    /// A worker is gone: its count moves to the retired total and its slot is freed.
    pub fn retire(&mut self, pid: i32) {
        if let Some(s) = self.by_pid.remove(&pid) {
            self.metrics.set_connections(s, 0);
            self.metrics.set_admission_waiting(s, 0);
            self.retired += self.counters[s].swap(0, Ordering::Relaxed);
            self.free.push(s);
        }
    }

    pub fn of(&self, pid: i32) -> u64 {
        self.by_pid
            .get(&pid)
            .map(|&s| self.counters[s].load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.retired
            + self
                .by_pid
                .values()
                .map(|&s| self.counters[s].load(Ordering::Relaxed))
                .sum::<u64>()
    }
}
