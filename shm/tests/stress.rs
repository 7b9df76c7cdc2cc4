//! Several processes hammer one region while others are killed with SIGKILL,
//! some of them in the middle of a write: no read may be torn, and after reclaim no
//! entry may stay locked.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn spawn(fd: i32, until: u64, hang: bool) -> Child {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shm-stress"));
    c.env("SHM_STRESS_FD", fd.to_string())
        .env("SHM_STRESS_UNTIL", until.to_string())
        .stdout(Stdio::piped());
    if hang {
        c.env("SHM_STRESS_HANG", "1");
    }
    c.spawn().unwrap()
}

#[test]
fn concurrent_writers_killed_at_random() {
    let secs: u64 = std::env::var("SHM_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let cache = shm::Cache::create(8 << 20).unwrap().unwrap();
    let fd = cache.fd();
    // Let the children inherit the region's descriptor.
    assert_eq!(unsafe { libc::fcntl(fd, libc::F_SETFD, 0) }, 0);
    let start_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let until = start_ms + secs * 1000;
    let mut workers: Vec<Child> = (0..4).map(|_| spawn(fd, until, false)).collect();
    let mut finished = Vec::new();
    let (mut kills, mut hung_kills) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tick = 0u64;
    while Instant::now() + Duration::from_millis(300) < deadline {
        std::thread::sleep(Duration::from_millis(100));
        tick += 1;
        // Every 0.3 s kill a worker mid-run and replace it.
        if tick % 3 == 0 {
            let victim = (tick as usize / 3) % workers.len();
            let mut w = workers.remove(victim);
            unsafe { libc::kill(w.id() as i32, libc::SIGKILL) };
            let _ = w.wait();
            kills += 1;
            workers.push(spawn(fd, until, false));
        }
        // Every second, a writer that dies holding an entry.
        if tick % 10 == 5 {
            let mut h = spawn(fd, until, true);
            // Kill it only once it reports holding its entry: under load a fixed delay
            // could kill it before it locked anything.
            let mut line = String::new();
            let out = h.stdout.take().expect("piped stdout");
            let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line);
            unsafe { libc::kill(h.id() as i32, libc::SIGKILL) };
            let _ = h.wait();
            if line.trim() == "locked=true" {
                hung_kills += 1;
            }
        }
    }
    for w in workers {
        finished.push(w.wait_with_output().unwrap());
    }
    let (mut reads, mut torn) = (0u64, 0u64);
    for out in &finished {
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        for part in text.split_whitespace() {
            if let Some(v) = part.strip_prefix("reads=") {
                reads += v.parse::<u64>().unwrap();
            }
            if let Some(v) = part.strip_prefix("torn=") {
                torn += v.parse::<u64>().unwrap();
            }
        }
    }
    let reclaimed_now = cache.reclaim_dead();
    let st = cache.stats();
    println!(
        "{secs} s, 4 workers: {reads} verified reads, {torn} torn, {kills} random kills, {hung_kills} \
         kills mid-write, {} entries reclaimed ({reclaimed_now} by the final sweep), {} inserts, {} evictions",
        st.reclaimed, st.inserts, st.evictions
    );
    assert_eq!(torn, 0, "torn reads");
    assert!(reads > 1000, "too few reads: {reads}");
    assert!(kills > 0 && hung_kills > 0);
    assert!(
        st.reclaimed >= hung_kills,
        "every entry locked by a dead writer is reclaimed"
    );
    assert_eq!(
        cache.locked_entries(),
        0,
        "leaked locked entries after reclaim"
    );
}
