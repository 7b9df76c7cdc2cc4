//! The memcached second level against a real memcached on loopback.

mod common;
use common::*;
use std::time::{Duration, Instant};

#[test]
fn responses_come_from_memcached_and_a_dead_one_costs_little() {
    let (mut mc, port) = start_memcached();
    let dir = TempDir::new("mc");
    std::fs::copy(fixtures().join("small.tif"), dir.0.join("x.tif")).unwrap();
    let prefix = format!("{}/", dir.0.display());
    let servers = format!("127.0.0.1:{port}");
    let s = Server::start(
        &[
            ("FILESYSTEM_PREFIX", prefix.as_str()),
            ("MEMCACHED_SERVERS", servers.as_str()),
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
    mc.kill().unwrap();
    mc.wait().unwrap();
    let t = Instant::now();
    for i in 0..20 {
        assert_eq!(s.get(&format!("FIF=x.tif&JTL=2,{}", i % 16)).status, 200);
    }
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}
