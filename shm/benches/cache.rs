//! Get and put latency of a 20 KB tile in the shared cache, alone and while a second
//! (forked) process hammers the same region with gets and puts.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;

const TILE: usize = 20 * 1024;
/// Keys the measured loop cycles through (all fit the region: hits for gets).
const KEYS: u64 = 512;

fn value(k: u64) -> Vec<u8> {
    (0..TILE).map(|i| (i as u64 * 31 + k) as u8).collect()
}

fn bench(c: &mut Criterion, cache: &shm::Cache, label: &str) {
    let values: Vec<Vec<u8>> = (0..KEYS).map(value).collect();
    for k in 0..KEYS {
        cache.put((k, 1), &values[k as usize]);
    }
    let mut g = c.benchmark_group(format!("20 KB tile, {label}"));
    let mut i = 0u64;
    g.bench_function("get (hit)", |b| {
        b.iter(|| {
            i = (i + 1) % KEYS;
            black_box(cache.get((i, 1)))
        })
    });
    let mut j = 0u64;
    g.bench_function("put", |b| {
        b.iter(|| {
            j = (j + 1) % KEYS;
            black_box(cache.put((j, 1), &values[j as usize]))
        })
    });
    g.finish();
}

fn one_process(c: &mut Criterion) {
    let cache = shm::Cache::create(64 << 20).unwrap().unwrap();
    bench(c, &cache, "1 process");
}

fn two_processes(c: &mut Criterion) {
    let cache = shm::Cache::create(64 << 20).unwrap().unwrap();
    // SAFETY: the child only touches the shared region and exits with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        // Other worker: gets and puts over the same keys until killed (bounded: 10 min).
        let v = value(7);
        let start = std::time::Instant::now();
        let mut k = 0u64;
        while start.elapsed() < std::time::Duration::from_secs(600) {
            k = (k + 7) % KEYS;
            if cache.get((k, 1)).is_none() {
                cache.put((k, 1), &v);
            }
            if k % 8 == 0 {
                cache.put((k, 1), &v);
            }
        }
        unsafe { libc::_exit(0) };
    }
    bench(c, &cache, "2 processes");
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
}

criterion_group!(benches, one_process, two_processes);
criterion_main!(benches);
