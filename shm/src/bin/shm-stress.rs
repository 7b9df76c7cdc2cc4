//! Stress worker for the shared cache's multi-process test: attaches to the region
//! on the descriptor in `SHM_STRESS_FD`, then until `SHM_STRESS_UNTIL` (Unix ms) puts
//! and gets random self-checking values, printing `reads=N torn=M` at the end.
//! With `SHM_STRESS_HANG=1` it locks an entry as a writer would and never finishes,
//! to be killed mid-write.

use std::time::{SystemTime, UNIX_EPOCH};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A value that carries its own length and checksum.
fn make(i: u64, version: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len + 32);
    v.extend_from_slice(&i.to_le_bytes());
    v.extend_from_slice(&version.to_le_bytes());
    v.extend_from_slice(&(len as u64).to_le_bytes());
    v.extend((0..len).map(|k| {
        (k as u64)
            .wrapping_mul(31)
            .wrapping_add(i * 7)
            .wrapping_add(version) as u8
    }));
    let sum = v.iter().fold(0u64, |a, &b| {
        a.wrapping_mul(1_000_003).wrapping_add(b as u64)
    });
    v.extend_from_slice(&sum.to_le_bytes());
    v
}

fn valid(i: u64, v: &[u8]) -> bool {
    if v.len() < 32 {
        return false;
    }
    let (body, tail) = v.split_at(v.len() - 8);
    let sum = body.iter().fold(0u64, |a, &b| {
        a.wrapping_mul(1_000_003).wrapping_add(b as u64)
    });
    let idx = u64::from_le_bytes(body[..8].try_into().unwrap());
    let len = u64::from_le_bytes(body[16..24].try_into().unwrap()) as usize;
    sum == u64::from_le_bytes(tail.try_into().unwrap()) && idx == i && len + 24 == body.len()
}

fn main() {
    let fd: i32 = std::env::var("SHM_STRESS_FD")
        .expect("SHM_STRESS_FD")
        .parse()
        .unwrap();
    let until: u64 = std::env::var("SHM_STRESS_UNTIL")
        .expect("SHM_STRESS_UNTIL")
        .parse()
        .unwrap();
    let cache = shm::Cache::attach(fd).expect("attach");
    if std::env::var("SHM_STRESS_HANG").is_ok() {
        let k = shm::key(&[b"hang", &std::process::id().to_le_bytes()]);
        let locked = cache.lock_entry_as(k, std::process::id() as u64);
        println!("locked={locked}");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    }
    let mut x: u64 = (std::process::id() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // xorshift* output: the raw low bits of consecutive states are correlated.
        x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 32
    };
    let (mut reads, mut torn, mut version) = (0u64, 0u64, 0u64);
    while now_ms() < until {
        let i = rnd() % 128;
        let k = shm::key(&[b"stress", &i.to_le_bytes()]);
        if rnd() % 2 == 0 {
            version += 1;
            let len = 100 + (rnd() % 60_000) as usize;
            cache.put(k, &make(i, version, len));
        } else if let Some(v) = cache.get(k) {
            reads += 1;
            if !valid(i, &v) {
                torn += 1;
            }
        }
    }
    let st = cache.stats();
    println!(
        "reads={reads} torn={torn} hits={} misses={} inserts={}",
        st.hits, st.misses, st.inserts
    );
}
