//! Connection handling under hostile clients, on real loopback sockets: connections
//! that trickle a request a byte a second, connections left silent, and a client that
//! never reads its response must not delay anyone else's request, and each is closed
//! at its deadline (`REQUEST_TIMEOUT`). Run for FastCGI and for `--http`.

mod common;

use common::*;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const TIMEOUT_S: u64 = 3;
const SILENT: usize = 500;
const TRICKLING: usize = 20;
const RUN: Duration = Duration::from_secs(20);
const EVERY: Duration = Duration::from_millis(500);
const ANSWER_WITHIN: Duration = Duration::from_millis(200);

fn raise_file_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a live struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        lim.rlim_cur = lim.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
    }
    assert!(
        lim.rlim_cur >= 4096,
        "need 4096 descriptors, have {}",
        lim.rlim_cur
    );
}

fn record(out: &mut Vec<u8>, kind: u8, id: u16, content: &[u8]) {
    let len = (content.len() as u16).to_be_bytes();
    let id = id.to_be_bytes();
    out.extend_from_slice(&[1, kind, id[0], id[1], len[0], len[1], 0, 0]);
    out.extend_from_slice(content);
}

/// A complete FastCGI GET request (no FCGI_KEEP_CONN).
fn fcgi_request(query: &str) -> Vec<u8> {
    let mut out = Vec::new();
    record(&mut out, 1, 1, &[0, 1, 0, 0, 0, 0, 0, 0]);
    let mut params = Vec::new();
    for (k, v) in [("REQUEST_METHOD", "GET"), ("QUERY_STRING", query)] {
        params.push(k.len() as u8);
        params.push(v.len() as u8);
        params.extend_from_slice(k.as_bytes());
        params.extend_from_slice(v.as_bytes());
    }
    record(&mut out, 4, 1, &params);
    record(&mut out, 4, 1, &[]);
    record(&mut out, 5, 1, &[]);
    out
}

/// The STDOUT of a FastCGI response, read until END_REQUEST.
fn fcgi_stdout(c: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut stdout = Vec::new();
    loop {
        let mut h = [0u8; 8];
        c.read_exact(&mut h)?;
        let len = u16::from_be_bytes([h[4], h[5]]) as usize + h[6] as usize;
        let mut body = vec![0; len];
        c.read_exact(&mut body)?;
        match h[1] {
            6 => stdout.extend_from_slice(&body[..len - h[6] as usize]),
            3 => return Ok(stdout),
            _ => {}
        }
    }
}

fn http_request(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes()
}

/// What the attack saw: how long each connection lived until the server closed it,
/// and whether a trickling one was told why.
#[derive(Default, Debug)]
struct Seen {
    silent: Vec<Duration>,
    trickling: Vec<Duration>,
    trickling_answered: usize,
}

struct Slow {
    c: TcpStream,
    opened: Instant,
    sent: usize,
    next: Instant,
    answered: bool,
}

fn open(port: u16) -> TcpStream {
    let c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_nonblocking(true).unwrap();
    c
}

/// Whether the server has closed `c`; bytes it sent are noted in `answered`.
fn closed(c: &mut TcpStream, answered: &mut bool) -> bool {
    let mut b = [0u8; 4096];
    loop {
        match c.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => *answered = true,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

/// Keeps `SILENT` silent and `TRICKLING` trickling connections open against `port`
/// until `stop`, reopening each one the server closes.
fn attack(port: u16, payload: Vec<u8>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Seen> {
    std::thread::spawn(move || {
        let mut seen = Seen::default();
        let mut silent: Vec<(TcpStream, Instant)> =
            (0..SILENT).map(|_| (open(port), Instant::now())).collect();
        let new_slow = || Slow {
            c: open(port),
            opened: Instant::now(),
            sent: 0,
            next: Instant::now(),
            answered: false,
        };
        let mut slow: Vec<Slow> = (0..TRICKLING).map(|_| new_slow()).collect();
        while !stop.load(Ordering::Relaxed) {
            for (c, opened) in silent.iter_mut() {
                let mut ignored = false;
                if closed(c, &mut ignored) {
                    seen.silent.push(opened.elapsed());
                    *c = open(port);
                    *opened = Instant::now();
                }
            }
            for s in slow.iter_mut() {
                let now = Instant::now();
                let mut gone = closed(&mut s.c, &mut s.answered);
                if !gone && now >= s.next {
                    let byte = [payload[s.sent % payload.len()]];
                    gone = s.c.write(&byte).is_err();
                    s.sent += 1;
                    s.next = now + Duration::from_secs(1);
                }
                if gone {
                    seen.trickling.push(s.opened.elapsed());
                    seen.trickling_answered += s.answered as usize;
                    *s = new_slow();
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        seen
    })
}

/// A client that asks for a response larger than the socket buffers and never reads.
/// Returns the connection and the time it was sent.
fn stalled_reader(port: u16, request: &[u8]) -> (TcpStream, Instant) {
    // SAFETY: a socket created, configured and connected here, then owned by TcpStream.
    let c = unsafe {
        use std::os::fd::FromRawFd;
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let small: libc::c_int = 4096;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&small as *const libc::c_int).cast(),
            4,
        );
        let addr = libc::sockaddr_in {
            sin_family: libc::AF_INET as u16,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
            },
            sin_zero: [0; 8],
        };
        let r = libc::connect(
            fd,
            (&addr as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        );
        assert_eq!(r, 0);
        TcpStream::from_raw_fd(fd)
    };
    let mut c = c;
    c.write_all(request).unwrap();
    (c, Instant::now())
}

/// Reads what the server left for a stalled reader and whether it closed.
fn drain(mut c: TcpStream) -> (usize, bool) {
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut total = 0;
    let mut b = vec![0u8; 1 << 16];
    loop {
        match c.read(&mut b) {
            Ok(0) => return (total, true),
            Ok(n) => total += n,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                return (total, false)
            }
            Err(_) => return (total, true),
        }
    }
}

/// Runs the attack against a server on `port` while a normal client asks `ask` every
/// half second; checks every answer's time and every slow connection's lifetime.
fn under_attack(port: u16, mport: u16, payload: Vec<u8>, ask: impl Fn() -> Vec<u8>, http: bool) {
    raise_file_limit();
    let stop = Arc::new(AtomicBool::new(false));
    let attacker = attack(port, payload, stop.clone());
    // Silent connections reach the workers after the listening socket's accept
    // deferral (about a second); by then all are open.
    std::thread::sleep(Duration::from_millis(1800));
    let open_during = metric(&metrics(mport), "tessera_connections_open ");
    let t0 = Instant::now();
    let mut worst = Duration::ZERO;
    let mut i = 0u32;
    while t0.elapsed() < RUN {
        let due = t0 + EVERY * i;
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        i += 1;
        let t = Instant::now();
        let body = ask();
        let took = t.elapsed();
        assert!(
            String::from_utf8_lossy(&body).contains("Max-size:1001 777"),
            "request {i}: {:?}",
            String::from_utf8_lossy(&body)
        );
        assert!(took < ANSWER_WITHIN, "request {i} took {took:?}");
        worst = worst.max(took);
    }
    stop.store(true, Ordering::Relaxed);
    let seen = attacker.join().unwrap();
    let lives = seen.silent.iter().chain(&seen.trickling);
    let (shortest, longest) = (lives.clone().min(), lives.max());
    eprintln!(
        "{} requests, slowest {worst:?}; {} silent and {} trickling connections closed after {shortest:?}..{longest:?}; {open_during} open during the attack",
        i,
        seen.silent.len(),
        seen.trickling.len()
    );
    assert!(
        open_during >= (SILENT + TRICKLING) as f64 * 0.9,
        "{open_during}"
    );
    // Every slow connection lived about REQUEST_TIMEOUT from when the server saw it,
    // and was then closed: a trickling one at once, a silent one after the kernel held
    // it for the accept deferral (one SYN-ACK retransmission, about a second).
    let deadline = Duration::from_secs(TIMEOUT_S);
    let within = |d: &Duration| {
        *d >= deadline - Duration::from_millis(200) && *d < deadline + Duration::from_millis(1500)
    };
    let within_deferred = |d: &Duration| {
        *d >= deadline + Duration::from_millis(800) && *d < deadline + Duration::from_millis(3500)
    };
    assert!(seen.silent.len() >= SILENT * 4, "{}", seen.silent.len());
    assert!(
        seen.trickling.len() >= TRICKLING * 4,
        "{}",
        seen.trickling.len()
    );
    let late: Vec<_> = seen
        .silent
        .iter()
        .filter(|d| !within_deferred(d))
        .chain(seen.trickling.iter().filter(|d| !within(d)))
        .collect();
    assert!(
        late.is_empty(),
        "{} closed off their deadline: {:?}",
        late.len(),
        &late[..late.len().min(10)]
    );
    if http {
        // A half-received HTTP request is answered 408 before the close.
        assert_eq!(seen.trickling_answered, seen.trickling.len());
    }
    let text = metrics(mport);
    let closed = metric(
        &text,
        "tessera_connections_deadline_closed_total{deadline=\"request\"}",
    );
    assert!(
        closed >= (seen.silent.len() + seen.trickling.len()) as f64 * 0.95,
        "{closed}"
    );
}

#[test]
fn fastcgi_slow_and_silent_connections_do_not_delay_others() {
    let dir = TempDir::new("conns");
    let port = free_port();
    let mport = free_port();
    let child = Command::new(bin())
        .args([
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--workers",
            "2",
            "--backlog",
            "2048",
        ])
        .args(["--metrics", &format!("127.0.0.1:{mport}")])
        .env("FILESYSTEM_PREFIX", format!("{}/", fixtures().display()))
        .env("LOGFILE", dir.0.join("server.log"))
        .env("MEMCACHED_SERVERS", "")
        .env("REQUEST_TIMEOUT", TIMEOUT_S.to_string())
        .env("TIFF_COMPRESSION", "0")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let s = Server {
        child,
        addr: Addr::Tcp(port),
        dir,
    };
    s.wait_ready();
    // A response of 45 MB (an uncompressed TIFF) to a client that does not read it: written as the
    // socket drains, while everything else goes on; abandoned at the deadline.
    let (stalled, sent) = stalled_reader(port, &fcgi_request("FIF=big.tif&CVT=tif"));
    std::thread::sleep(Duration::from_millis(1500));
    under_attack(
        port,
        mport,
        fcgi_request("FIF=small.tif&OBJ=Max-size"),
        || {
            let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            c.write_all(&fcgi_request("FIF=small.tif&OBJ=Max-size"))
                .unwrap();
            fcgi_stdout(&mut c).unwrap()
        },
        false,
    );
    let (got, closed) = drain(stalled);
    assert!(closed, "the stalled reader was closed");
    assert!(sent.elapsed() > Duration::from_secs(TIMEOUT_S));
    // Far less than the whole image: the rest was given up.
    let whole = s.get("FIF=big.tif&CVT=tif").body.len();
    assert!(whole > 1 << 20 && got < whole, "got {got} of {whole}");
    assert!(s.stop().success());
}

#[test]
fn http_slow_and_silent_connections_do_not_delay_others() {
    let mport = free_port();
    let maddr = format!("127.0.0.1:{mport}");
    let margs = [
        std::ffi::OsStr::new("--metrics"),
        std::ffi::OsStr::new(&maddr),
    ];
    let timeout = TIMEOUT_S.to_string();
    let (s, port) = start_http(
        &margs,
        &[("REQUEST_TIMEOUT", &timeout), ("TIFF_COMPRESSION", "0")],
    );
    let (stalled, sent) = stalled_reader(port, &http_request("/?FIF=big.tif&CVT=tif"));
    std::thread::sleep(Duration::from_millis(1500));
    under_attack(
        port,
        mport,
        http_request("/?FIF=small.tif&OBJ=Max-size"),
        || {
            let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            c.write_all(&http_request("/?FIF=small.tif&OBJ=Max-size"))
                .unwrap();
            let mut out = Vec::new();
            c.read_to_end(&mut out).unwrap();
            out
        },
        true,
    );
    let (got, closed) = drain(stalled);
    assert!(closed, "the stalled reader was closed");
    assert!(sent.elapsed() > Duration::from_secs(TIMEOUT_S));
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(&http_request("/?FIF=big.tif&CVT=tif")).unwrap();
    let mut whole = Vec::new();
    c.read_to_end(&mut whole).unwrap();
    assert!(
        whole.len() > 1 << 20 && got < whole.len(),
        "got {got} of {}",
        whole.len()
    );
    assert!(s.stop().success());
}
