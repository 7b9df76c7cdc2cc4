//! Admission control of expensive requests and single flight of tile misses, on real
//! servers: many clients missing one slow tile at once get it decoded once; a worker
//! killed while others wait on its decode does not hold them; an export flood with one
//! export slot leaves the other worker serving tiles; an admitted export renders in a
//! child process while its worker serves tiles; a killed export worker or process
//! frees its slot.

mod common;
use common::*;
use std::path::PathBuf;
use std::sync::{Barrier, OnceLock};
use std::time::{Duration, Instant};

/// Images made for these tests: `slow.tif`, 6144×6144 of noise in a single TIFF tile
/// (its only tile takes about a second to decode and encode in a debug build, so
/// requests for it overlap for real), and the corpus's `small.tif` for quick tiles and
/// `big.tif` (5000×3000) for exports that take a fraction of a second.
fn images() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("admission-images");
        let done = dir.join("slow.tif");
        if !done.exists() {
            std::fs::create_dir_all(&dir).unwrap();
            let d = dir.display();
            sh(&format!(
                "cd {d} && vips gaussnoise n.v 6144 6144 && vips bandjoin 'n.v n.v n.v' rgb.v \
                 && vips cast rgb.v rgb8.v uchar && vips tiffsave rgb8.v part.tif --tile \
                 --tile-width 6144 --tile-height 6144 --compression deflate \
                 && rm n.v rgb.v rgb8.v && mv part.tif slow.tif"
            ));
        }
        for name in ["small.tif", "big.tif"] {
            if !dir.join(name).exists() {
                std::fs::copy(fixtures().join(name), dir.join(name)).unwrap();
            }
        }
        dir
    })
}

/// These tests load both cores and time what they see: one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn prefix() -> String {
    format!("{}/", images().display())
}

/// A server on the test images, with its `/metrics` port; the cache holds the slow
/// tile (its JPEG of noise is about 20 MB).
fn server(env: &[(&str, &str)], workers: usize) -> (Server, u16) {
    let p = prefix();
    let mut all = vec![
        ("FILESYSTEM_PREFIX", p.as_str()),
        ("MAX_IMAGE_CACHE_SIZE", "200"),
        ("REQUEST_TIMEOUT", "60"),
        ("MAX_RENDER_TIME", "60"),
        // An export of the whole slow tile holds it at once.
        ("MAX_REQUEST_MEMORY", "1024"),
    ];
    all.extend_from_slice(env);
    Server::start_metered(&all, workers)
}

const SLOW_TILE: &str = "FIF=slow.tif&JTL=0,0";
/// Seconds long: read the 37-megapixel tile, resize it.
const SLOW_EXPORT: &str = "FIF=slow.tif&WID=1500&CVT=jpeg";
/// 15 megapixels, over the default `EXPENSIVE_PIXELS`, in well under a second alone.
const EXPORT: &str = "FIF=big.tif&WID=5000&CVT=jpeg";

fn value(port: u16, name: &str) -> f64 {
    metric(&metrics(port), name)
}

/// Whether metric `name` reaches `v` within 10 s.
fn metric_becomes(port: u16, name: &str, v: f64) -> bool {
    // Not every 2 ms: each look is a connection to the supervisor.
    wait_for(
        || {
            std::thread::sleep(Duration::from_millis(10));
            value(port, name) == v
        },
        Duration::from_secs(10),
    )
}

/// CPU time (user + system, clock ticks) a process has used.
fn cpu_ticks(pid: i32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0)
}

/// The one of `workers` that burns CPU over the next moments (the one rendering).
fn busy_worker(workers: &[i32]) -> i32 {
    let before: Vec<u64> = workers.iter().map(|p| cpu_ticks(*p)).collect();
    std::thread::sleep(Duration::from_millis(300));
    let (i, _) = workers
        .iter()
        .zip(before)
        .map(|(p, b)| cpu_ticks(*p) - b)
        .enumerate()
        .max_by_key(|(_, d)| *d)
        .unwrap();
    workers[i]
}

/// `n` clients asking `query` at the same moment; their replies in order.
fn at_once(s: &Server, query: &str, n: usize) -> Vec<Result<Reply, String>> {
    let gate = Barrier::new(n);
    std::thread::scope(|sc| {
        let hs: Vec<_> = (0..n)
            .map(|_| {
                sc.spawn(|| {
                    gate.wait();
                    s.try_get(query)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn sixteen_clients_missing_one_tile_get_it_decoded_once() {
    let _one = serial();
    // A bound the decode never reaches, even on a loaded machine.
    let (s, port) = server(&[("SINGLE_FLIGHT_WAIT", "30000")], 2);
    let replies = at_once(&s, SLOW_TILE, 16);
    let first = replies[0].as_ref().unwrap();
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.content_type(), "image/jpeg");
    for r in &replies {
        let r = r.as_ref().unwrap();
        assert_eq!(r.status, 200);
        assert!(r.body == first.body, "every client gets the same bytes");
    }
    let m = metrics(port);
    assert_eq!(metric(&m, "tessera_tiles_decoded_total"), 1.0, "{m}");
    assert!(
        metric(&m, "tessera_single_flight_waits_total") >= 1.0,
        "{m}"
    );
    assert_eq!(metric(&m, "tessera_single_flight_timeouts_total"), 0.0);
}

#[test]
fn without_single_flight_both_workers_decode_the_same_tile() {
    // The premise of the test above: the 16 requests overlap, and each worker decodes
    // the tile when nothing makes it wait for the other.
    let _one = serial();
    let (s, port) = server(&[("SINGLE_FLIGHT_WAIT", "0")], 2);
    let replies = at_once(&s, SLOW_TILE, 16);
    assert!(replies.iter().all(|r| r.as_ref().unwrap().status == 200));
    let m = metrics(port);
    assert!(metric(&m, "tessera_tiles_decoded_total") >= 2.0, "{m}");
    assert_eq!(metric(&m, "tessera_single_flight_waits_total"), 0.0);
}

#[test]
fn a_killed_decoder_does_not_hold_the_workers_waiting_on_it() {
    // A bound far beyond the test's limits: only noticing the owner's death frees
    // the waiters in time.
    let _one = serial();
    let (s, port) = server(&[("SINGLE_FLIGHT_WAIT", "40000")], 2);
    let workers = started_workers(&s, 2);
    std::thread::scope(|sc| {
        let doomed = sc.spawn(|| s.try_get(SLOW_TILE));
        // Wait until the decode runs, then find who runs it.
        let leader = busy_worker(&workers);
        // One waiter: more would reach the replacement worker, whose own look at the
        // mark would clear it and free the first waiter without its owner check.
        let waiters: Vec<_> = (0..1)
            .map(|_| {
                sc.spawn(|| {
                    let t = Instant::now();
                    (s.try_get(SLOW_TILE), t.elapsed())
                })
            })
            .collect();
        assert!(
            wait_for(
                || value(port, "tessera_single_flight_waits_total") >= 1.0,
                Duration::from_secs(10)
            ),
            "nobody waited on the decode"
        );
        let killed_at = Instant::now();
        unsafe { libc::kill(leader, libc::SIGKILL) };
        assert!(
            doomed.join().unwrap().is_err(),
            "the killed worker answered"
        );
        let mut bodies = Vec::new();
        for w in waiters {
            let (r, spent) = w.join().unwrap();
            let r = r.expect("a waiter got an answer");
            assert_eq!(r.status, 200);
            assert!(
                spent < Duration::from_secs(20),
                "a waiter took {spent:?}, as if held to the 40 s bound"
            );
            bodies.push(r.body);
        }
        assert!(bodies.windows(2).all(|w| w[0] == w[1]));
        assert!(killed_at.elapsed() < Duration::from_secs(20));
    });
    let m = metrics(port);
    assert_eq!(
        metric(&m, "tessera_single_flight_timeouts_total"),
        0.0,
        "{m}"
    );
    assert!(
        metric(&m, "tessera_single_flight_orphaned_total") >= 1.0,
        "{m}"
    );
}

/// Tile latencies (seconds) of a client walking `small.tif`'s tiles while `busy`
/// holds.
fn tile_latencies(s: &Server, busy: impl Fn() -> bool) -> Vec<f64> {
    let mut out = Vec::new();
    let mut i = 0;
    while busy() && out.len() < 2000 {
        // Different qualities: each one misses the cache and is decoded.
        let q = format!("FIF=small.tif&QLT={}&JTL=2,{}", 50 + i % 40, i % 12);
        let t = Instant::now();
        let r = s.get(&q);
        out.push(t.elapsed().as_secs_f64());
        assert_eq!(r.status, 200, "{}", r.text());
        i += 1;
    }
    out
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[test]
fn an_export_flood_with_one_slot_leaves_the_other_worker_to_tiles() {
    let _one = serial();
    let (s, port) = server(
        &[("MAX_EXPENSIVE_WORKERS", "1"), ("EXPENSIVE_WAIT", "0")],
        2,
    );
    let stop = std::sync::atomic::AtomicBool::new(false);
    let next = std::sync::atomic::AtomicU64::new(0);
    let flooding = || !stop.load(std::sync::atomic::Ordering::Relaxed);
    let (mut tiles, exports) = std::thread::scope(|sc| {
        let flood: Vec<_> = (0..4)
            .map(|_| {
                sc.spawn(|| {
                    let mut seen = Vec::new();
                    while flooding() {
                        // Each one different: none is answered from the cache.
                        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let q = format!(
                            "FIF=big.tif&WID={}&QLT={}&CVT=jpeg",
                            5000 - n % 1000,
                            50 + n / 1000 % 50
                        );
                        let t = Instant::now();
                        let r = s.get(&q);
                        seen.push((
                            r.status,
                            r.header("Retry-After").map(String::from),
                            t.elapsed(),
                        ));
                        if r.status == 503 {
                            // A crawler that heeds nothing but takes a breath.
                            std::thread::sleep(Duration::from_millis(20));
                        }
                    }
                    seen
                })
            })
            .collect();
        let monitor = sc.spawn(|| {
            let mut most = 0.0f64;
            while flooding() {
                most = most.max(value(port, "tessera_expensive_slots_in_use"));
                std::thread::sleep(Duration::from_millis(50));
            }
            most
        });
        // Let the flood settle on the workers first.
        std::thread::sleep(Duration::from_millis(500));
        let started = Instant::now();
        let tiles = tile_latencies(&s, || started.elapsed() < Duration::from_secs(6));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let exports: Vec<_> = flood.into_iter().flat_map(|h| h.join().unwrap()).collect();
        assert!(
            monitor.join().unwrap() <= 1.0,
            "more than one export ran at once"
        );
        (tiles, exports)
    });
    let mut done: Vec<f64> = exports
        .iter()
        .filter(|(st, _, _)| *st == 200)
        .map(|(_, _, d)| d.as_secs_f64())
        .collect();
    let refused: Vec<_> = exports.iter().filter(|(st, _, _)| *st == 503).collect();
    let worst = tiles.iter().copied().fold(0.0, f64::max);
    let tile_median = median(&mut tiles);
    let export_median = median(&mut done);
    eprintln!(
        "{} tiles: median {tile_median:.4} s, worst {worst:.3} s; {} exports: median {export_median:.2} s; {} refused",
        tiles.len(),
        done.len(),
        refused.len()
    );
    assert!(tiles.len() >= 10, "only {} tiles in 6 s", tiles.len());
    assert!(
        worst < 1.0,
        "a tile took {worst:.2} s (median {tile_median:.3} s)"
    );
    assert!(
        export_median > 4.0 * tile_median,
        "exports ({export_median:.2} s) are no slower than tiles ({tile_median:.3} s)"
    );
    assert!(!done.is_empty(), "no export went through");
    assert!(!refused.is_empty(), "no export was refused");
    assert!(refused.iter().all(|(_, ra, _)| ra.as_deref() == Some("2")));
    assert_eq!(exports.len(), done.len() + refused.len());
    let m = metrics(port);
    assert!(metric(&m, "tessera_expensive_admitted_total") >= done.len() as f64);
    assert_eq!(
        metric(&m, "tessera_expensive_rejected_total"),
        refused.len() as f64
    );
}

#[test]
fn an_excess_export_waits_for_the_slot_while_its_worker_serves_tiles() {
    let _one = serial();
    let (s, port) = server(
        &[("MAX_EXPENSIVE_WORKERS", "1"), ("EXPENSIVE_WAIT", "20000")],
        2,
    );
    std::thread::scope(|sc| {
        let first = sc.spawn(|| s.get(SLOW_EXPORT));
        assert!(metric_becomes(port, "tessera_expensive_slots_in_use", 1.0));
        let second = sc.spawn(|| s.get(EXPORT));
        assert!(
            metric_becomes(port, "tessera_expensive_waiting", 1.0),
            "the second export does not wait"
        );
        // The worker holding the waiting export answers tiles meanwhile.
        for i in 0..5 {
            let t = Instant::now();
            let r = s.get(&format!("FIF=small.tif&JTL=2,{i}"));
            assert_eq!(r.status, 200);
            assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        }
        assert_eq!(first.join().unwrap().status, 200);
        assert_eq!(
            second.join().unwrap().status,
            200,
            "the waiting export was refused"
        );
    });
    let m = metrics(port);
    assert_eq!(metric(&m, "tessera_expensive_admitted_total"), 2.0, "{m}");
    assert_eq!(metric(&m, "tessera_expensive_waited_total"), 1.0, "{m}");
    assert_eq!(metric(&m, "tessera_expensive_rejected_total"), 0.0, "{m}");
    // Published when the worker's loop comes round, just after the answer left.
    assert!(metric_becomes(port, "tessera_expensive_waiting", 0.0));
}

/// The process rendering an export beside one of `workers`, once there is one.
fn export_child(workers: &[i32]) -> Option<(i32, i32)> {
    let mut found = None;
    wait_for(
        || {
            found = workers
                .iter()
                .find_map(|&w| children(w).first().map(|&c| (w, c)));
            found.is_some()
        },
        Duration::from_secs(10),
    );
    found
}

#[test]
fn a_killed_export_worker_frees_its_slot() {
    let _one = serial();
    let (s, port) = server(
        &[("MAX_EXPENSIVE_WORKERS", "1"), ("EXPENSIVE_WAIT", "0")],
        2,
    );
    let workers = started_workers(&s, 2);
    std::thread::scope(|sc| {
        let doomed = sc.spawn(|| s.try_get(SLOW_EXPORT));
        assert!(metric_becomes(port, "tessera_expensive_slots_in_use", 1.0));
        // While it holds the slot, another export is refused.
        let r = s.get(EXPORT);
        assert_eq!(r.status, 503, "{}", r.text());
        let (holder, child) = export_child(&workers).expect("the export's process");
        unsafe { libc::kill(holder, libc::SIGKILL) };
        assert!(doomed.join().unwrap().is_err());
        // The rendering process dies with its worker.
        assert!(wait_for(
            || !std::path::Path::new(&format!("/proc/{child}")).exists()
                || std::fs::read_to_string(format!("/proc/{child}/stat")).is_ok_and(|st| st
                    .rsplit_once(')')
                    .is_some_and(|(_, r)| r.starts_with(" Z"))),
            Duration::from_secs(10)
        ));
    });
    assert!(
        metric_becomes(port, "tessera_expensive_slots_in_use", 0.0),
        "the dead worker's slot is still held"
    );
    let r = s.get(EXPORT);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(value(port, "tessera_expensive_slots_reclaimed_total") >= 1.0);
}

#[test]
fn an_export_renders_beside_its_worker_which_keeps_serving_tiles() {
    let _one = serial();
    let env = [("MAX_EXPENSIVE_WORKERS", "1"), ("EXPENSIVE_WAIT", "0")];
    // One worker: the tiles and the export share it.
    let (s, port) = server(&env, 1);
    let workers = started_workers(&s, 1);
    std::thread::scope(|sc| {
        let export = sc.spawn(|| {
            let t = Instant::now();
            (s.get(SLOW_EXPORT), t.elapsed())
        });
        let (_, child) = export_child(&workers).expect("the export's process");
        let mut worst = Duration::ZERO;
        for i in 0..5 {
            let t = Instant::now();
            assert_eq!(s.get(&format!("FIF=small.tif&JTL=2,{i}")).status, 200);
            worst = worst.max(t.elapsed());
        }
        assert!(
            children(workers[0]).contains(&child),
            "the export ended before the tiles were asked for"
        );
        let (r, took) = export.join().unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.body.starts_with(&[0xFF, 0xD8]), "a JPEG");
        assert!(
            worst * 4 < took,
            "a tile took {worst:?}, the export {took:?}"
        );
    });
    assert_eq!(value(port, "tessera_expensive_in_child_total"), 1.0);
    assert!(metric_becomes(port, "tessera_expensive_slots_in_use", 0.0));
    // Rendered in the worker itself, the same export holds the tiles behind it.
    let (s, _) = server(&[env[0], env[1], ("EXPENSIVE_IN_CHILD", "0")], 1);
    std::thread::scope(|sc| {
        let export = sc.spawn(|| s.get(SLOW_EXPORT));
        std::thread::sleep(Duration::from_millis(300));
        let t = Instant::now();
        assert_eq!(s.get("FIF=small.tif&JTL=2,0").status, 200);
        let waited = t.elapsed();
        assert_eq!(export.join().unwrap().status, 200);
        assert!(waited > Duration::from_millis(300), "{waited:?}");
    });
}

#[test]
fn a_killed_export_process_is_a_500_and_frees_its_slot() {
    let _one = serial();
    let (s, port) = server(
        &[("MAX_EXPENSIVE_WORKERS", "1"), ("EXPENSIVE_WAIT", "0")],
        1,
    );
    let workers = started_workers(&s, 1);
    std::thread::scope(|sc| {
        let doomed = sc.spawn(|| s.get(SLOW_EXPORT));
        let (_, child) = export_child(&workers).expect("the export's process");
        unsafe { libc::kill(child, libc::SIGKILL) };
        let r = doomed.join().unwrap();
        assert_eq!(r.status, 500, "{}", r.text());
    });
    assert_eq!(children(s.pid()), workers, "the worker lives on");
    assert!(metric_becomes(port, "tessera_expensive_slots_in_use", 0.0));
    let r = s.get(EXPORT);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        children(workers[0]).is_empty(),
        "the export's process is reaped"
    );
}

#[test]
fn cheap_exports_and_tiles_need_no_slot() {
    let _one = serial();
    let (s, port) = server(
        &[("MAX_EXPENSIVE_WORKERS", "1"), ("EXPENSIVE_WAIT", "0")],
        1,
    );
    assert_eq!(s.get("FIF=small.tif&WID=500&CVT=jpeg").status, 200);
    assert_eq!(s.get("FIF=small.tif&JTL=2,0").status, 200);
    let m = metrics(port);
    assert_eq!(metric(&m, "tessera_expensive_admitted_total"), 0.0, "{m}");
    // Over the threshold: counted.
    let (s2, port2) = server(
        &[("MAX_EXPENSIVE_WORKERS", "1"), ("EXPENSIVE_PIXELS", "1000")],
        1,
    );
    assert_eq!(s2.get("FIF=small.tif&WID=500&CVT=jpeg").status, 200);
    assert_eq!(value(port2, "tessera_expensive_admitted_total"), 1.0);
    assert_eq!(value(port2, "tessera_expensive_slots_in_use"), 0.0);
    drop(s);
}

/// Reads `n` HTTP responses (framed by `Content-Length`) from `c`: status and body size.
fn http_responses(c: &mut std::net::TcpStream, n: usize) -> Vec<(u16, usize)> {
    use std::io::Read;
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut chunk = [0u8; 65536];
    while out.len() < n {
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            let k = c.read(&mut chunk).expect("read");
            assert!(k > 0, "closed after {} responses", out.len());
            buf.extend_from_slice(&chunk[..k]);
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let status: u16 = head[9..12].parse().unwrap();
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(String::from)
            })
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < end + 4 + len {
            let k = c.read(&mut chunk).expect("read");
            assert!(k > 0, "closed mid-body");
            buf.extend_from_slice(&chunk[..k]);
        }
        buf.drain(..end + 4 + len);
        out.push((status, len));
    }
    out
}

#[test]
fn over_http_a_waiting_export_is_answered_before_what_follows_it() {
    let _one = serial();
    let mport = free_port();
    let m = format!("127.0.0.1:{mport}");
    let p = prefix();
    let (_s, port) = start_http(
        &["--metrics".as_ref(), m.as_ref()],
        &[
            ("FILESYSTEM_PREFIX", &p),
            ("MAX_EXPENSIVE_WORKERS", "1"),
            ("EXPENSIVE_WAIT", "20000"),
            ("REQUEST_TIMEOUT", "60"),
            ("MAX_REQUEST_MEMORY", "1024"),
        ],
    );
    let get = |q: &str| format!("GET /fcgi-bin/iipsrv.fcgi?{q} HTTP/1.1\r\nHost: x\r\n\r\n");
    std::thread::scope(|sc| {
        let first = sc.spawn(|| {
            use std::io::Write;
            let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            c.write_all(get(SLOW_EXPORT).as_bytes()).unwrap();
            http_responses(&mut c, 1)
        });
        assert!(metric_becomes(mport, "tessera_expensive_slots_in_use", 1.0));
        use std::io::Write;
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        // An export, then a tile pipelined behind it on the same connection.
        let both = get(EXPORT) + &get("FIF=small.tif&JTL=2,0");
        c.write_all(both.as_bytes()).unwrap();
        assert!(metric_becomes(mport, "tessera_expensive_waiting", 1.0));
        let got = http_responses(&mut c, 2);
        assert_eq!(got[0].0, 200, "the waiting export");
        assert!(got[0].1 > got[1].1, "answers out of order: {got:?}");
        assert_eq!(got[1].0, 200, "the tile after it");
        assert_eq!(first.join().unwrap()[0].0, 200);
    });
    assert_eq!(value(mport, "tessera_expensive_waited_total"), 1.0);
    assert_eq!(value(mport, "tessera_expensive_rejected_total"), 0.0);
}
