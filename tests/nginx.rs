//! End to end through a real nginx on loopback, configured as iipsrv's users do
//! (`/fcgi-bin/iipsrv.fcgi` and `/iiif/` locations, `fastcgi_pass` to tessera).

mod common;
use common::nginx::{hdr, Nginx};
use common::*;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

#[test]
fn viewer_traffic_through_nginx() {
    let s = Server::start(&[("URI_MAP", "iiif=>IIIF")], 2);
    let n = Nginx::start(&s.addr);
    let iip = "/fcgi-bin/iipsrv.fcgi?";

    // What OpenSeadragon's IIPTileSource asks first.
    let (st, h, body) = n.get(&format!(
        "{iip}FIF=big.tif&OBJ=IIP,1.0&OBJ=Max-size&OBJ=Tile-size&OBJ=Resolution-number"
    ));
    assert_eq!(st, 200);
    assert_eq!(hdr(&h, "content-type"), Some("application/vnd.netfpx"));
    assert_eq!(
        body,
        b"IIP:1.0\r\nMax-size:5000 3000\r\nTile-size:256 256\r\nResolution-number:6\r\n"
    );

    // Every tile of the four smallest levels, and a sample of the two largest.
    let levels = [
        (156u32, 93u32),
        (312, 187),
        (625, 375),
        (1250, 750),
        (2500, 1500),
        (5000, 3000),
    ];
    for (r, &(w, h)) in levels.iter().enumerate() {
        let (cols, rows) = (w.div_ceil(256), h.div_ceil(256));
        let step = if r >= 4 { 7 } else { 1 };
        for t in (0..cols * rows).step_by(step) {
            let (st, hd, body) = n.get(&format!("{iip}FIF=big.tif&JTL={r},{t}"));
            assert_eq!(st, 200, "JTL={r},{t}");
            assert_eq!(hdr(&hd, "content-type"), Some("image/jpeg"));
            let (c, row) = (t % cols, t / cols);
            let ew = (w - c * 256).min(256) as usize;
            let eh = (h - row * 256).min(256) as usize;
            assert_eq!(jpeg_size(&body), (ew, eh), "JTL={r},{t}");
        }
    }

    // The other entry points.
    let (st, h, body) = n.get("/iiif/big.tif/info.json");
    assert_eq!(st, 200, "{}", String::from_utf8_lossy(&body));
    assert!(hdr(&h, "content-type")
        .unwrap()
        .starts_with("application/ld+json"));
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["id"], "http://localhost/iiif/big.tif");
    assert_eq!(v["width"], 5000);
    let (st, _, body) = n.get(&format!("{iip}DeepZoom=big.tif.dzi"));
    assert_eq!(st, 200);
    assert!(String::from_utf8_lossy(&body).contains("<Size Width=\"5000\" Height=\"3000\"/>"));
    let (st, _, body) = n.get(&format!("{iip}DeepZoom=big.tif_files/13/19_11.jpg"));
    assert_eq!(st, 200);
    assert_eq!(jpeg_size(&body), (136, 184));
    let (st, _, body) = n.get(&format!("{iip}Zoomify=big.tif/ImageProperties.xml"));
    assert_eq!(st, 200);
    assert!(String::from_utf8_lossy(&body).contains("NUMTILES=\"324\""));
    let (st, _, body) = n.get(&format!("{iip}Zoomify=big.tif/TileGroup1/5-19-11.jpg"));
    assert_eq!(st, 200);
    assert_eq!(jpeg_size(&body), (136, 184));
}

#[test]
fn hostile_requests_through_nginx_are_4xx() {
    let s = Server::start(&[], 2);
    let n = Nginx::start(&s.addr);
    let iip = "/fcgi-bin/iipsrv.fcgi?";
    let long = format!("{iip}FIF=big.tif&{}", "A".repeat(1 << 20));
    for q in [
        format!("{iip}FIF=../../etc/passwd&OBJ=Max-size"),
        format!("{iip}FIF=%2e%2e/x&OBJ=Max-size"),
        format!("{iip}FIF=big.tif&JTL=99,0"),
        format!("{iip}FIF=big.tif&JTL=0,999999"),
        format!("{iip}FIF=big.tif&JTL=-1,-1"),
        format!("{iip}FIF=big.tif&NOPE=1"),
        long,
    ] {
        let (st, _, body) = n.get(&q);
        assert!(
            (400..500).contains(&st),
            "{} -> {st}",
            &q[..q.len().min(80)]
        );
        assert!(!String::from_utf8_lossy(&body).contains(&fixtures().display().to_string()));
    }
    let (st, _, _) = n.get(&format!("{iip}FIF=big.tif&OBJ=Max-size"));
    assert_eq!(st, 200);
}

#[test]
fn kept_connections_do_not_hold_up_other_requests() {
    // nginx keeps 8 FastCGI connections open, tessera has one worker: each request must
    // be answered at once, whichever kept connection nginx picks (a worker blocked
    // reading the next request of one of them left the others waiting for seconds).
    let s = Server::start_tcp(&[], 1);
    let n = Nginx::start_with(&s.addr, Some(8));
    let tiles: Vec<Vec<u8>> = (0..4)
        .map(|t| {
            let (status, _, body) =
                n.get(&format!("/fcgi-bin/iipsrv.fcgi?FIF=small.tif&JTL=2,{t}"));
            assert_eq!(status, 200);
            body
        })
        .collect();
    let started = Instant::now();
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let port = n.port;
            let want = tiles.clone();
            std::thread::spawn(move || {
                for k in 0..25 {
                    let t = (i + k) % 4;
                    let asked = Instant::now();
                    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                    write!(
                        c,
                        "GET /fcgi-bin/iipsrv.fcgi?FIF=small.tif&JTL=2,{t} HTTP/1.0\r\nHost: localhost\r\n\r\n"
                    )
                    .unwrap();
                    let mut buf = Vec::new();
                    c.read_to_end(&mut buf).unwrap();
                    assert!(buf.starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&buf[..40.min(buf.len())]));
                    assert!(buf.ends_with(&want[t]), "tile {t} differs");
                    assert!(
                        asked.elapsed() < Duration::from_secs(2),
                        "a request waited {:?}",
                        asked.elapsed()
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert!(started.elapsed() < Duration::from_secs(20));
}
