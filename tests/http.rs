//! The built-in HTTP mode (`--http`): the same protocols without a web server.

mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn start(extra: &[&str]) -> (Server, u16) {
    let extra: Vec<&std::ffi::OsStr> = extra.iter().map(std::ffi::OsStr::new).collect();
    start_http(&extra, &[])
}

/// Reads one HTTP response (Content-Length framed) from a kept-alive connection.
fn read_response(c: &mut TcpStream, head_only: bool) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(c.read(&mut byte).unwrap(), 1, "connection closed early");
        buf.push(byte[0]);
    }
    let head = String::from_utf8(buf).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .unwrap()
        .1
        .parse()
        .unwrap();
    let mut body = vec![0; if head_only { 0 } else { len }];
    c.read_exact(&mut body).unwrap();
    (status, headers, body)
}

fn h<'a>(hs: &'a [(String, String)], k: &str) -> Option<&'a str> {
    hs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

#[test]
fn serves_every_protocol_over_keep_alive() {
    let (_s, port) = start(&[]);
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut get = |path: &str, method: &str| {
        write!(c, "{method} {path} HTTP/1.1\r\nHost: example.org\r\n\r\n").unwrap();
        read_response(&mut c, method == "HEAD")
    };
    let (st, hs, body) = get("/", "GET");
    assert_eq!(st, 200);
    assert!(h(&hs, "content-type").unwrap().starts_with("text/html"));
    assert!(String::from_utf8_lossy(&body).contains("sample.tif"));
    let (st, _, body) = get("/?FIF=big.tif&OBJ=Max-size", "GET");
    assert_eq!((st, body.as_slice()), (200, &b"Max-size:5000 3000\r\n"[..]));
    let (st, _, body) = get("/fcgi-bin/iipsrv.fcgi?FIF=big.tif&JTL=5,239", "GET");
    assert_eq!(st, 200);
    assert_eq!(jpeg_size(&body), (136, 184));
    let (st, hs, body) = get("/iiif/big.tif/info.json", "GET");
    assert_eq!(st, 200);
    assert_eq!(h(&hs, "connection"), Some("keep-alive"));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["id"], "http://example.org/iiif/big.tif");
    let (st, _, body) = get("/iiif/small.tif/full/300,/0/default.jpg", "GET");
    assert_eq!(st, 200);
    assert_eq!(jpeg_size(&body), (300, 233));
    let (st, hs, body) = get("/iiif/small.tif/full/300,/0/default.jpg", "HEAD");
    assert_eq!(st, 200);
    assert!(body.is_empty() && h(&hs, "content-length").unwrap().parse::<usize>().unwrap() > 0);
    let (st, _, _) = get("/?DeepZoom=big.tif_files/13/19_11.jpg", "GET");
    assert_eq!(st, 200);
    let (st, _, _) = get("/?FIF=missing.tif&OBJ=Max-size", "GET");
    assert_eq!(st, 404);
    let (st, _, _) = get("/viewer/../../etc/passwd", "GET");
    assert_eq!(st, 404);
}

#[test]
fn bad_requests_are_refused_cleanly() {
    let (s, port) = start(&[]);
    let send = |raw: &[u8]| -> u16 {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        c.write_all(raw).unwrap();
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        String::from_utf8_lossy(&out[..12.min(out.len())])
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(send(b"garbage\r\n\r\n"), 400);
    assert_eq!(send(b"GET / HTTP/2.0\r\n\r\n"), 505);
    let big = format!("GET /?{} HTTP/1.1\r\nHost: x\r\n\r\n", "A".repeat(20_000));
    assert_eq!(send(big.as_bytes()), 414);
    let big = format!(
        "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "A".repeat(20_000)
    );
    assert_eq!(send(big.as_bytes()), 431);
    assert_eq!(
        send(b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n"),
        413
    );
    // HTTP/1.0 without keep-alive closes after one answer.
    assert_eq!(
        send(b"GET /?FIF=small.tif&OBJ=Max-size HTTP/1.0\r\n\r\n"),
        200
    );
    // Still serving.
    assert_eq!(
        send(b"GET /?FIF=small.tif&OBJ=Max-size HTTP/1.0\r\n\r\n"),
        200
    );
    assert!(s.stop().success());
}

#[test]
fn unknown_paths_are_404_and_dzi_low_levels_render() {
    let (_s, port) = start(&[]);
    let get = |path: &str| {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(
            c,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        read_response(&mut c, false)
    };
    assert_eq!(get("/favicon.ico").0, 404);
    assert_eq!(get("/fcgi-bin/iipsrv.fcgi").0, 200);
    // D3: DeepZoom levels below the stored pyramid are synthesised at their size.
    let (st, hs, body) = get("/?DeepZoom=big.tif_files/7/0_0.jpg");
    assert_eq!(st, 200);
    assert!(h(&hs, "content-disposition").is_none());
    assert_eq!(jpeg_size(&body), (79, 47));
    let (st, _, body) = get("/?DeepZoom=big.tif_files/0/0_0.jpg");
    assert_eq!(st, 200);
    assert_eq!(jpeg_size(&body), (1, 1));
    assert_eq!(get("/?DeepZoom=big.tif_files/7/1_0.jpg").0, 404);
    assert_eq!(get("/?DeepZoom=big.tif_files/13/20_0.jpg").0, 404);
    assert_eq!(get("/?DeepZoom=big.tif_files/14/0_0.jpg").0, 404);
    assert_eq!(get("/?DeepZoom=big.tif_files/x/0_0.jpg").0, 400);
    // A single-level file (1001×777): levels below it larger than one tile are cut
    // into the 256-px grid the .dzi advertises.
    for (tile, dims) in [
        ("9/0_0", (256, 256)),
        ("9/1_1", (245, 133)),
        ("9/1_0", (245, 256)),
        ("8/0_0", (251, 195)),
    ] {
        let (st, _, body) = get(&format!("/?DeepZoom=palette.tif_files/{tile}.jpg"));
        assert_eq!(st, 200, "{tile}");
        assert_eq!(jpeg_size(&body), dims, "{tile}");
    }
    assert_eq!(get("/?DeepZoom=palette.tif_files/9/2_0.jpg").0, 404);
    assert_eq!(get("/?DeepZoom=palette.tif_files/9/0_2.jpg").0, 404);
}

#[test]
fn silent_connections_hold_no_worker_and_close_at_their_deadline() {
    // Two workers, more silent connections than workers (as a browser's preconnects):
    // a real request is answered at once, and the silent ones are closed after
    // REQUEST_TIMEOUT.
    let (_s, port) = start_http(&[], &[("REQUEST_TIMEOUT", "2")]);
    let opened = std::time::Instant::now();
    let idle: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let t0 = std::time::Instant::now();
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    c.write_all(
        b"GET /fcgi-bin/iipsrv.fcgi?FIF=small.tif&OBJ=Max-size HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .unwrap();
    let (status, _, body) = read_response(&mut c, false);
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&body).contains("Max-size:1001 777"));
    assert!(t0.elapsed() < Duration::from_secs(1), "{:?}", t0.elapsed());
    for mut s in idle {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut b = [0u8; 1];
        assert_eq!(s.read(&mut b).unwrap(), 0, "closed without a word");
        let lived = opened.elapsed();
        assert!(lived >= Duration::from_millis(1800), "{lived:?}");
    }
    assert!(
        opened.elapsed() < Duration::from_secs(4),
        "{:?}",
        opened.elapsed()
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let (_s, port) = start(&[]);
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut all = Vec::new();
    let objs = ["Max-size", "Resolution-number", "Tile-size", "Max-size"];
    for (i, obj) in objs.iter().enumerate() {
        let img = if i % 2 == 0 { "small.tif" } else { "big.tif" };
        all.extend_from_slice(
            format!("GET /?FIF={img}&OBJ={obj} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
        );
    }
    // All four in one segment, a HEAD among them.
    all.extend_from_slice(b"HEAD /?FIF=small.tif&OBJ=Max-size HTTP/1.1\r\nHost: x\r\n\r\n");
    c.write_all(&all).unwrap();
    let expect = [
        "Max-size:1001 777",
        "Resolution-number:6",
        "Tile-size:256 256",
        "Max-size:5000 3000",
    ];
    for e in expect {
        let (st, _, body) = read_response(&mut c, false);
        assert_eq!(st, 200);
        assert!(
            String::from_utf8_lossy(&body).starts_with(e),
            "{e} vs {:?}",
            String::from_utf8_lossy(&body)
        );
    }
    let (st, hs, _) = read_response(&mut c, true);
    assert_eq!((st, h(&hs, "content-length")), (200, Some("19")));
    // The connection is still open for more.
    c.write_all(
        b"GET /?FIF=small.tif&OBJ=Max-size HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let (st, hs, _) = read_response(&mut c, false);
    assert_eq!((st, h(&hs, "connection")), (200, Some("close")));
}

/// The `id` of `/iiif/small.tif/info.json` asked with `headers`.
fn info_id(port: u16, headers: &str) -> String {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        c,
        "GET /iiif/small.tif/info.json HTTP/1.1\r\nHost: backend:8080\r\n{headers}\r\n"
    )
    .unwrap();
    let (st, _, body) = read_response(&mut c, false);
    assert_eq!(st, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v["id"].as_str().unwrap().to_owned()
}

#[test]
fn forwarded_headers_count_only_from_trusted_proxies() {
    let fwd = "X-Forwarded-Proto: https\r\nX-Forwarded-Host: images.example.org\r\n";
    let rfc = "Forwarded: for=192.0.2.1;proto=https;host=pub.example.org\r\n";
    let env = [("URI_MAP", "iiif=>IIIF")];
    let (_s, port) = start_http(&[], &env);
    assert_eq!(info_id(port, fwd), "http://backend:8080/iiif/small.tif");
    assert_eq!(info_id(port, rfc), "http://backend:8080/iiif/small.tif");
    let (_t, port) = start_http(&[], &[env[0], ("TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1")]);
    assert_eq!(
        info_id(port, fwd),
        "https://images.example.org/iiif/small.tif"
    );
    assert_eq!(info_id(port, rfc), "https://pub.example.org/iiif/small.tif");
    assert_eq!(info_id(port, ""), "http://backend:8080/iiif/small.tif");
}

#[test]
fn connections_beyond_the_limit_close_the_oldest_idle_one() {
    let (_s, port) = start_http(
        &[std::ffi::OsStr::new("--workers"), std::ffi::OsStr::new("1")],
        &[("MAX_CONNECTIONS", "4")],
    );
    let ask = |c: &mut TcpStream| {
        c.write_all(b"GET /?FIF=small.tif&OBJ=Max-size HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        read_response(c, false).0
    };
    let mut conns: Vec<TcpStream> = Vec::new();
    for _ in 0..6 {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert_eq!(ask(&mut c), 200);
        conns.push(c);
        std::thread::sleep(Duration::from_millis(50));
    }
    // The two oldest were closed to admit the newest; the four others still serve.
    for c in &mut conns[..2] {
        let mut b = [0u8; 1];
        assert_eq!(c.read(&mut b).unwrap(), 0);
    }
    for c in &mut conns[2..] {
        assert_eq!(ask(c), 200);
    }
}

/// Everything the server sends on `c` until it closes (bounded by the read timeout).
fn read_until_close(c: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match c.read(&mut buf) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) => panic!("no close: {e} after {:?}", String::from_utf8_lossy(&all)),
        }
    }
}

#[test]
fn ambiguous_framing_gets_one_400_and_a_close() {
    let (_s, port) = start(&[]);
    // A body hidden behind a second Content-Length must not be read as a second request.
    let smuggled = "GET /?FIF=small.tif&OBJ=Max-size HTTP/1.1\r\nHost: a\r\n\r\n";
    let attack = format!(
        "GET /?FIF=small.tif&OBJ=Max-size HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{smuggled}",
        smuggled.len()
    );
    for (what, bytes) in [
        ("two Content-Length", attack.as_bytes()),
        (
            "Transfer-Encoding with Content-Length",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
        ),
        (
            "obs-fold",
            b"GET /?FIF=small.tif&OBJ=Max-size HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n",
        ),
    ] {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        c.write_all(bytes).unwrap();
        let got = String::from_utf8_lossy(&read_until_close(&mut c)).into_owned();
        assert!(got.starts_with("HTTP/1.1 400 "), "{what}: {got}");
        assert_eq!(got.matches("HTTP/1.1 ").count(), 1, "{what}: {got}");
        assert!(got.contains("Connection: close"), "{what}: {got}");
    }
}

#[test]
fn bare_lf_and_http_0_9_are_refused_at_once() {
    let (_s, port) = start(&[]);
    for (what, bytes) in [
        ("HTTP/0.9", &b"GET /\r\n"[..]),
        (
            "bare LF",
            b"GET /?FIF=small.tif&OBJ=Max-size HTTP/1.1\nHost: a\n",
        ),
    ] {
        let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let t = std::time::Instant::now();
        c.write_all(bytes).unwrap();
        // The client keeps the connection open: the answer must not wait for more.
        let got = String::from_utf8_lossy(&read_until_close(&mut c)).into_owned();
        assert!(got.starts_with("HTTP/1.1 400 "), "{what}: {got}");
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "{what}: {:?}",
            t.elapsed()
        );
    }
}

/// Sockets each worker process of the server `pid` holds, smallest count first.
fn sockets_per_worker(pid: i32) -> Vec<usize> {
    let mut counts: Vec<usize> = sh(&format!("pgrep -P {pid}"))
        .split_whitespace()
        .map(|w| {
            std::fs::read_dir(format!("/proc/{w}/fd"))
                .unwrap()
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|l| l.to_string_lossy().starts_with("socket:"))
                .count()
        })
        .collect();
    counts.sort();
    counts
}

#[test]
fn a_burst_of_kept_alive_connections_is_spread_over_the_workers() {
    // All connected at once and kept: without balancing, the first worker to wake would
    // take them all and keep them, leaving the other idle for as long as they last.
    let (s, port) = start(&[]);
    let idle = sockets_per_worker(s.pid());
    let mut conns: Vec<TcpStream> = (0..16)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    for c in &mut conns {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(b"GET /?FIF=small.tif&OBJ=Max-size HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
    }
    for c in &mut conns {
        assert_eq!(read_response(c, false).0, 200);
    }
    let held: Vec<usize> = sockets_per_worker(s.pid())
        .iter()
        .zip(&idle)
        .map(|(n, base)| n - base)
        .collect();
    assert_eq!(held.iter().sum::<usize>(), 16, "{held:?}");
    assert!(held[0] >= 6, "connections per worker: {held:?}");
}
