//! The memcached second level against a real memcached on loopback.

mod common;
use common::*;
use std::time::{Duration, Instant};

/// A memcached on a free loopback port, killed on drop.
struct Memcached {
    child: std::process::Child,
    port: u16,
}

impl Memcached {
    fn start() -> Memcached {
        let (child, port) = start_memcached();
        Memcached { child, port }
    }

    /// The value memcached holds under `key`, if any.
    fn get(&self, key: &str) -> Option<Vec<u8>> {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(format!("get {key}\r\n").as_bytes()).unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 65536];
        while !out.ends_with(b"END\r\n") {
            let n = c.read(&mut buf).expect("memcached answers");
            assert!(n > 0, "memcached closed the connection");
            out.extend_from_slice(&buf[..n]);
        }
        let head_end = out.windows(2).position(|w| w == b"\r\n")?;
        out.starts_with(b"VALUE ")
            .then(|| out[head_end + 2..out.len() - 7].to_vec())
    }
}

impl Drop for Memcached {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn responses_come_from_memcached_and_a_dead_one_costs_little() {
    let mut mc = Memcached::start();
    let port = mc.port;
    let dir = TempDir::new("mc");
    std::fs::copy(fixtures().join("small.tif"), dir.0.join("x.tif")).unwrap();
    let prefix = format!("{}/", dir.0.display());
    let servers = format!("127.0.0.1:{port}");
    let s = Server::start(
        &[
            ("FILESYSTEM_PREFIX", prefix.as_str()),
            ("MEMCACHED_SERVERS", servers.as_str()),
            // A busy machine can hold memcached's answer past the 100 ms default, which
            // would count it as down; a refused connection is still answered at once.
            ("MEMCACHED_IO_TIMEOUT", "5000"),
            ("MAX_IMAGE_CACHE_SIZE", "0"),
        ],
        1,
    );
    let first = s.get("FIF=x.tif&JTL=2,0");
    assert_eq!(jpeg_dims(&first.body).2, 3);
    // Replace the image: the stored response is still served (iipsrv's memcached behaviour).
    std::fs::copy(fixtures().join("grey.tif"), dir.0.join("x.tif")).unwrap();
    let again = s.get("FIF=x.tif&JTL=2,0");
    assert_eq!(again.body, first.body, "answered from memcached");
    assert_eq!(again.header("Content-Type"), Some("image/jpeg"));
    // Errors are never stored.
    assert_eq!(s.get("FIF=nope.tif&JTL=2,0").status, 404);
    std::fs::copy(fixtures().join("small.tif"), dir.0.join("nope.tif")).unwrap();
    assert_eq!(s.get("FIF=nope.tif&JTL=2,0").status, 200);
    // A request with If-Modified-Since bypasses memcached and sees the new file.
    let r = s.request(
        &[
            ("REQUEST_METHOD", "GET"),
            ("QUERY_STRING", "FIF=x.tif&JTL=2,0"),
            ("HTTP_IF_MODIFIED_SINCE", "Mon, 01 Jan 2001 00:00:00 GMT"),
        ],
        b"",
    );
    assert_eq!(jpeg_dims(&r.body).2, 1);
    // memcached goes away: requests still succeed, quickly.
    mc.child.kill().unwrap();
    mc.child.wait().unwrap();
    let t = Instant::now();
    for i in 0..20 {
        assert_eq!(s.get(&format!("FIF=x.tif&JTL=2,{}", i % 16)).status, 200);
    }
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[test]
fn iip_error_answers_are_never_stored() {
    // iipsrv keeps in-band `Error/` answers in memcached like any other output.
    let mc = Memcached::start();
    let servers = format!("127.0.0.1:{}", mc.port);
    let s = Server::start(
        &[
            ("MEMCACHED_SERVERS", servers.as_str()),
            ("MEMCACHED_IO_TIMEOUT", "5000"),
            ("MAX_IMAGE_CACHE_SIZE", "0"),
        ],
        1,
    );
    let key = tessera::memcached::Client::key;
    let errors = [
        "FOO=bar",
        "WID=100",
        "FIF=small.tif&WID=100",
        "FIF=meta.tif&OBJ=keywords",
    ];
    for q in errors {
        for _ in 0..2 {
            let r = s.get(q);
            assert_eq!(r.status, 400, "{q}");
            assert!(r.text().starts_with("Error/"), "{q}: {}", r.text());
        }
    }
    // What succeeds is stored, whole: the answer read back from memcached.
    let q = "FIF=small.tif&OBJ=Max-size";
    assert_eq!(s.get(q).text(), "Max-size:1001 777\r\n");
    // The worker stores without waiting for memcached's reply, so the value may land a
    // moment after the answer.
    let deadline = Instant::now() + Duration::from_secs(5);
    let stored = loop {
        if let Some(v) = mc.get(&key(q)) {
            break v;
        }
        assert!(Instant::now() < deadline, "a good answer is stored");
        std::thread::sleep(Duration::from_millis(10));
    };
    // The one worker stores in order on one connection: what it would have stored for
    // the errors is in memcached by now.
    for q in errors {
        assert_eq!(mc.get(&key(q)), None, "{q} was stored");
    }
    assert!(
        stored.ends_with(b"\r\n\r\nMax-size:1001 777\r\n"),
        "{}",
        String::from_utf8_lossy(&stored)
    );
}
