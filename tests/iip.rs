//! IIP protocol and HTTP envelope facts (docs/protocols.md §1, docs/server.md §2–5)
//! against a real server.

mod common;
use common::*;

fn body_lines(r: &Reply) -> Vec<String> {
    r.text()
        .split("\r\n")
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn obj_metadata_lines() {
    let s = Server::start(&[], 1);
    let r = s.get("FIF=big.tif&OBJ=IIP,1.0&OBJ=Max-size&OBJ=Tile-size&OBJ=Resolution-number");
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type(), "application/vnd.netfpx");
    assert_eq!(
        body_lines(&r),
        [
            "IIP:1.0",
            "Max-size:5000 3000",
            "Tile-size:256 256",
            "Resolution-number:6"
        ]
    );
    assert!(r.header("Last-Modified").is_some());
    assert_eq!(r.header("X-Powered-By"), Some("IIPImage"));

    // S6: names are case-insensitive.
    let r = s.get("fif=big.tif&obj=max-size&Obj=tile-size");
    assert_eq!(r.body, b"Max-size:5000 3000\r\nTile-size:256 256\r\n");

    let r = s.get("FIF=big.tif&OBJ=Resolutions&OBJ=Bits-per-channel&OBJ=Min-Max-sample-values&OBJ=Horizontal-views&OBJ=Vertical-views&OBJ=Colorspace&OBJ=DPI");
    assert_eq!(
        body_lines(&r),
        [
            "Resolutions:156 93,312 187,625 375,1250 750,2500 1500,5000 3000",
            "Bits-per-channel:8",
            "Min-Max-sample-values: 0  255  0  255  0  255",
            "Horizontal-views:0",
            "Vertical-views:90",
            "Colorspace,0-5,0:0 0 3 3 0 1 2",
            "DPI:2834.000000 2834.000000",
        ]
    );
    let r = s.get("FIF=grey.tif&OBJ=Basic-info");
    assert_eq!(
        body_lines(&r),
        [
            "IIP-server:3.65",
            "Max-size:1001 777",
            "Resolution-number:3",
            "Colorspace,0-2,0:0 0 1 1 0"
        ]
    );
    let r = s.get("FIF=small.tif&ROT=90&OBJ=Max-size");
    assert_eq!(body_lines(&r), ["Max-size:777 1001"]);
    let r = s.get("FIF=grey16.tif&OBJ=Bits-per-channel&OBJ=Min-Max-sample-values");
    assert_eq!(
        body_lines(&r),
        ["Bits-per-channel:16", "Min-Max-sample-values: 0  65535"]
    );
    for f in ["big_subifd.tif", "big_bigtiff.tif"] {
        let r = s.get(&format!("FIF={f}&OBJ=Max-size&OBJ=Resolution-number"));
        assert_eq!(
            body_lines(&r),
            ["Max-size:5000 3000", "Resolution-number:6"],
            "{f}"
        );
    }
    let r = s.get("OBJ=IIP-opt-comm");
    assert_eq!(
        body_lines(&r),
        ["IIP-opt-comm:CVT CNT QLT JTL JTLS WID HEI RGN MINMAX SHD CMP INV CTW"]
    );
}

#[test]
fn obj_text_metadata() {
    let s = Server::start(&[], 1);
    let r = s.get("FIF=meta.tif&OBJ=metadata");
    assert_eq!(r.content_type(), "application/json");
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["creator"], "Jane Doe");
    assert_eq!(v["description"], "A \"quoted\" description");
    assert_eq!(v["rights"], "CC0");
    assert_eq!(v["title"], "Doc title");
    assert_eq!(v["date"], "2024:01:02 03:04:05");
    let r = s.get("FIF=small.tif&OBJ=metadata");
    assert_eq!(r.body, b"{\n}\r\n");
    let r = s.get("FIF=meta.tif&OBJ=title");
    assert_eq!(r.content_type(), "text/plain");
    assert_eq!(r.body, b"Doc title\r\n");
    let r = s.get("FIF=meta.tif&OBJ=summary-info");
    assert_eq!(
        r.text(),
        "CC0\r\nA \"quoted\" description\r\nJane Doe\r\n2024:01:02 03:04:05\r\n"
    );
    let r = s.get("FIF=meta.tif&OBJ=keywords");
    assert_eq!(r.status, 400);
    assert!(r.text().starts_with("Error/"), "{}", r.text());
    assert!(r.text().contains(":2 1 FIF=meta.tif&OBJ=keywords"));
}

#[test]
fn iip_errors() {
    let s = Server::start(&[], 1);
    let cases = [
        ("FOO=bar", "Error/7:2 2 FOO\r\n"),
        ("WID=100", "Error/11:2 1 WID=100\r\n"),
        (
            "FIF=small.tif&WID=100",
            "Error/25:2 1 FIF=small.tif&WID=100\r\n",
        ),
        ("FIF=big.tif&OBJ=foo", "Error/7:3 2 foo\r\n"),
        (
            "FIF=big.tif&OBJ=colourspace",
            "Error/15:3 2 colourspace\r\n",
        ),
        ("OBJ=Max-size", "Error/12:1 3 max-size\r\n"),
        ("JTL=0,0", "Error/4:1 3 \r\n"),
        ("OBJ=metadata", "Error/12:1 3 metadata\r\n"),
    ];
    for (q, body) in cases {
        let r = s.get(q);
        assert_eq!(r.status, 400, "{q}");
        assert_eq!(r.text(), body, "{q}");
        assert_eq!(r.content_type(), "application/vnd.netfpx");
        assert!(r
            .header("Content-Disposition")
            .unwrap()
            .contains("IIPisAMadGame"));
    }
    // S24: no image, no Last-Modified, Content-Type stays a header.
    let r = s.get("OBJ=IIP-server");
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type(), "application/vnd.netfpx");
    assert!(r.header("Last-Modified").is_none());
    assert_eq!(r.body, b"IIP-server:3.65\r\n");
}

#[test]
fn envelope_and_conditional_requests() {
    let s = Server::start(&[], 1);
    // S1
    let r = s.get("");
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type(), "text/html");
    assert!(r.text().contains("IIPImage"));
    // S7 header order
    let r = s.get("FIF=small.tif&JTL=2,0");
    let names: Vec<&str> = r.headers.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "Server",
            "X-Powered-By",
            "Content-Type",
            "Last-Modified",
            "Cache-Control",
            "Content-Length"
        ]
    );
    assert_eq!(r.header("Cache-Control"), Some("max-age=86400"));
    assert_eq!(
        r.header("Content-Length")
            .unwrap()
            .parse::<usize>()
            .unwrap(),
        r.body.len()
    );
    let lm = r.header("Last-Modified").unwrap().to_owned();
    let mtime = std::fs::metadata(fixtures().join("small.tif"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(lm, httpdate::fmt_http_date(mtime));
    // S9/S10/S11
    let cond = |date: &str| {
        s.request(
            &[
                ("REQUEST_METHOD", "GET"),
                ("QUERY_STRING", "FIF=small.tif&JTL=2,0"),
                ("HTTP_IF_MODIFIED_SINCE", date),
            ],
            b"",
        )
    };
    let r = cond(&lm);
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    assert_eq!(r.header("Content-Length"), Some("0"));
    let later = httpdate::fmt_http_date(mtime + std::time::Duration::from_secs(86400));
    assert_eq!(cond(&later).status, 304);
    let earlier = httpdate::fmt_http_date(mtime - std::time::Duration::from_secs(86400));
    assert_eq!(cond(&earlier).status, 200);
    assert_eq!(cond("not a date").status, 200);
    // S2/S3/S4 methods
    let m = |method: &str| {
        s.request(
            &[
                ("REQUEST_METHOD", method),
                ("QUERY_STRING", "FIF=small.tif&JTL=2,0"),
            ],
            b"",
        )
    };
    let r = m("OPTIONS");
    assert_eq!(r.status, 204);
    assert!(r.body.is_empty());
    assert_eq!(m("DELETE").status, 405);
    let head = m("HEAD");
    let get = m("GET");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(
        head.header("Content-Length").unwrap(),
        get.body.len().to_string()
    );
    // POST body as request string.
    let body = b"FIF=small.tif&OBJ=Max-size";
    let r = s.request(
        &[
            ("REQUEST_METHOD", "POST"),
            ("QUERY_STRING", ""),
            ("CONTENT_LENGTH", &body.len().to_string()),
        ],
        body,
    );
    assert_eq!(r.body, b"Max-size:1001 777\r\n");
}

#[test]
fn cors_and_cache_control() {
    let s = Server::start(&[("CORS", "*"), ("CACHE_CONTROL", "no-store")], 1);
    let r = s.get("FIF=small.tif&JTL=2,0");
    assert_eq!(r.header("Cache-Control"), Some("no-store"));
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some("*"));
    let r = s.get("FIF=nope.tif&OBJ=Max-size");
    assert_eq!(r.status, 404);
    assert_eq!(r.content_type(), "text/plain; charset=utf-8");
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some("*"));
    let r = s.request(
        &[
            ("REQUEST_METHOD", "OPTIONS"),
            ("QUERY_STRING", "FIF=small.tif"),
        ],
        b"",
    );
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some("*"));
    assert!(r.header("Access-Control-Max-Age").is_some());
}

#[test]
fn tiles_have_the_right_sizes() {
    let s = Server::start(&[], 1);
    for (q, w, h) in [
        ("FIF=big.tif&JTL=0,0", 156, 93),
        ("FIF=big.tif&JTL=5,0", 256, 256),
        ("FIF=big.tif&JTL=5,19", 136, 256),
        ("FIF=big.tif&JTL=5,239", 136, 184),
        ("FIF=big.tif&JTL=1,1", 56, 187),
        ("FIF=big.tif&JTL=4,59", 196, 220),
        ("FIF=big.tif&JTL=1", 56, 187),
        ("FIF=small.tif&JTL=2,3", 233, 256),
        ("FIF=small.tif&JTL=2,15", 233, 9),
        ("FIF=small.tif&ROT=90&JTL=2,3", 256, 233),
        ("FIF=small.tif&ROT=180&JTL=2,0", 233, 9),
        ("FIF=small_lzw.tif&JTL=2,5", 256, 256),
        ("FIF=small_zstd.tif&JTL=1,1", 244, 256),
        ("FIF=small_none.tif&JTL=0,0", 250, 194),
        ("FIF=small_jpeg.tif&JTL=2,15", 233, 9),
        ("FIF=big_subifd.tif&JTL=3,5", 256, 256),
        ("FIF=big_bigtiff.tif&JTL=5,239", 136, 184),
        ("FIF=grey16.tif&JTL=0,0", 250, 194),
    ] {
        let r = s.get(q);
        assert_eq!(r.status, 200, "{q}: {}", r.text());
        assert_eq!(r.content_type(), "image/jpeg", "{q}");
        let (iw, ih, _) = jpeg_dims(&r.body);
        assert_eq!((iw, ih), (w, h), "{q}");
    }
    let (_, _, c) = jpeg_dims(&s.get("FIF=grey.tif&JTL=2,0").body);
    assert_eq!(c, 1);
    // T27 JTLS, T28 LYR irrelevant for TIFF, T29 deterministic repeat.
    let base = s.get("FIF=small.tif&JTL=2,0").body;
    assert_eq!(s.get("FIF=small.tif&JTLS=0,2,0,90").body, base);
    assert_eq!(s.get("FIF=small.tif&LYR=3&JTL=2,0").body, base);
    assert_eq!(s.get("FIF=small.tif&JTL=2,0").body, base);
    // PNG tile, lossless: equals the deflate source's pixels.
    let r = s.get("FIF=small.tif&PTL=2,0");
    assert_eq!(r.content_type(), "image/png");
    let mut reader = png::Decoder::new(std::io::Cursor::new(r.body))
        .read_info()
        .unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (256, 256));
    // The fixture's red channel falls left to right: pixel (0,0) is near 255.
    assert!(buf[0] >= 250, "red at the left edge: {}", buf[0]);
}

#[test]
fn jpeg_passthrough_is_byte_identical() {
    let s = Server::start(&[], 1);
    let r = s.get("FIF=big.tif&JTL=5,0");
    assert_eq!(&r.body[..4], &[0xFF, 0xD8, 0xFF, 0xDB]);
    assert!(!r.text().contains("JFIF"));
    // Rebuild the expected bytes from the file with tiffinfo's offsets.
    let f = fixtures().join("big.tif");
    let data = std::fs::read(&f).unwrap();
    let tables = tiff_tag_bytes(&data, 347);
    let (off, len) = first_tile(&data);
    let mut expected = tables[..tables.len() - 2].to_vec();
    expected.extend_from_slice(&data[off + 2..off + len]);
    assert_eq!(r.body, expected);
    // T3/T4: QLT or CODEC_PASSTHROUGH=0 re-encode.
    let r = s.get("FIF=big.tif&QLT=90&JTL=5,0");
    assert_eq!(&r.body[..4], &[0xFF, 0xD8, 0xFF, 0xE0]);
    drop(s);
    let s = Server::start(&[("CODEC_PASSTHROUGH", "0")], 1);
    let r = s.get("FIF=big.tif&JTL=5,0");
    assert_eq!(&r.body[..4], &[0xFF, 0xD8, 0xFF, 0xE0]);
    assert_eq!(jpeg_dims(&r.body).0, 256);
}

/// Reads a tag's bytes from IFD0 of a little-endian classic TIFF (test-only helper).
fn tiff_tag_bytes(d: &[u8], tag: u16) -> Vec<u8> {
    let (ty, count, val) = tiff_tag(d, tag);
    let size = match ty {
        1 | 2 | 6 | 7 => 1,
        3 => 2,
        4 => 4,
        _ => panic!("type {ty}"),
    } * count;
    let off = if size <= 4 {
        val
    } else {
        u32le(d, val) as usize
    };
    d[off..off + size].to_vec()
}

fn u32le(d: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(d[o..o + 4].try_into().unwrap())
}

fn tiff_tag(d: &[u8], tag: u16) -> (u16, usize, usize) {
    assert_eq!(&d[..4], b"II*\0");
    let ifd = u32le(d, 4) as usize;
    let n = u16::from_le_bytes([d[ifd], d[ifd + 1]]) as usize;
    for i in 0..n {
        let e = ifd + 2 + i * 12;
        if u16::from_le_bytes([d[e], d[e + 1]]) == tag {
            let ty = u16::from_le_bytes([d[e + 2], d[e + 3]]);
            return (ty, u32le(d, e + 4) as usize, e + 8);
        }
    }
    panic!("tag {tag} not found");
}

fn first_tile(d: &[u8]) -> (usize, usize) {
    let read = |tag| {
        let (ty, count, val) = tiff_tag(d, tag);
        assert_eq!(ty, 4);
        let at = if count == 1 {
            val
        } else {
            u32le(d, val) as usize
        };
        u32le(d, at) as usize
    };
    (read(324), read(325))
}

#[test]
fn tile_range_errors_are_404() {
    let s = Server::start(&[], 1);
    for q in [
        "FIF=big.tif&JTL=5,240",
        "FIF=big.tif&JTL=6,0",
        "FIF=big.tif&JTL=-1,0",
        "FIF=big.tif&JTL=-1,-1",
        "FIF=big.tif&JTL=99,0",
        "FIF=big.tif&JTL=0,999999",
        "FIF=small.tif&JTL=2,16",
    ] {
        let r = s.get(q);
        assert_eq!(r.status, 404, "{q}");
        assert_eq!(r.content_type(), "text/plain; charset=utf-8", "{q}");
    }
}

#[test]
fn path_handling() {
    let s = Server::start(&[], 1);
    for (q, status) in [
        ("FIF=small%2Etif&OBJ=Max-size", 200),
        ("FIF=small.tif%00&OBJ=Max-size", 200),
        ("FIF=nope.tif&OBJ=Max-size", 404),
        ("FIF=..%2F..%2F..%2Fetc%2Fpasswd&OBJ=Max-size", 404),
        ("FIF=../../etc/passwd&OBJ=Max-size", 404),
        ("FIF=%2e%2e/x&OBJ=Max-size", 404),
        ("FIF=notimage.tif&OBJ=Max-size", 404),
        ("FIF=short.tif&OBJ=Max-size", 404),
        ("FIF=badifd.tif&OBJ=Max-size", 404),
        ("FIF=truncated.tif&OBJ=Max-size", 404),
        ("FIF=stripped.tif&OBJ=Max-size", 404),
        ("FIF=/etc/passwd&OBJ=Max-size", 404),
    ] {
        let r = s.get(q);
        assert_eq!(r.status, status, "{q}: {}", r.text());
        let prefix = fixtures().display().to_string();
        assert!(
            !r.text().contains(&prefix),
            "{q} leaks the image root: {}",
            r.text()
        );
        assert!(!r.text().contains("root:"), "{q}");
    }
    // A trailing `..` that survives filtering cannot climb out of the root.
    let r = s.get("FIF=..&OBJ=Max-size");
    assert!(r.status == 403 || r.status == 404, "{}", r.status);
    assert!(s
        .get("FIF=stripped.tif&OBJ=Max-size")
        .text()
        .contains("not tiled"));
}

#[test]
fn plain_jpeg_sources_have_virtual_levels() {
    let s = Server::start(&[("URI_MAP", "iiif=>IIIF")], 1);
    let r = s.get("FIF=photo.jpg&OBJ=Resolution-number&OBJ=Resolutions&OBJ=Tile-size");
    assert_eq!(
        body_lines(&r),
        [
            "Resolution-number:4",
            "Resolutions:250 187,500 375,1000 750,2000 1500",
            "Tile-size:256 256"
        ]
    );
    assert_eq!(jpeg_size(&s.get("FIF=photo.jpg&JTL=3,5").body), (256, 256));
    assert_eq!(jpeg_size(&s.get("FIF=photo.jpg&JTL=0,0").body), (250, 187));
    assert_eq!(jpeg_size(&s.get("FIF=photo.jpg&JTL=3,47").body), (208, 220));
    assert_eq!(
        jpeg_size(&s.get("FIF=photo.jpg&WID=300&CVT=jpeg").body),
        (300, 225)
    );
    let r = s.request(
        &[
            ("REQUEST_METHOD", "GET"),
            ("REQUEST_URI", "/iiif/photo.jpg/full/max/0/default.jpg"),
        ],
        b"",
    );
    assert_eq!(jpeg_size(&r.body), (2000, 1500));
    // Pixels follow the source: red falls from left to right.
    let r = s.get("FIF=photo.jpg&PTL=0,0");
    let mut rd = png::Decoder::new(std::io::Cursor::new(r.body))
        .read_info()
        .unwrap();
    let mut buf = vec![0; rd.output_buffer_size().unwrap()];
    rd.next_frame(&mut buf).unwrap();
    assert!(
        buf[0] > 230 && buf[(249) * 3] < 25,
        "{} {}",
        buf[0],
        buf[249 * 3]
    );
}

#[test]
fn jpeg2000_sources() {
    let s = Server::start(&[], 1);
    let r = s.get("FIF=small.jp2&OBJ=Resolution-number&OBJ=Resolutions&OBJ=Max-size");
    assert_eq!(
        body_lines(&r),
        [
            "Resolution-number:3",
            "Resolutions:251 195,501 389,1001 777",
            "Max-size:1001 777"
        ]
    );
    // T20: right-hand edge tiles decode.
    assert_eq!(jpeg_size(&s.get("FIF=small.jp2&JTL=2,3").body), (233, 256));
    assert_eq!(jpeg_size(&s.get("FIF=small.jp2&JTL=2,15").body), (233, 9));
    assert_eq!(jpeg_size(&s.get("FIF=small.jp2&JTL=0,0").body), (251, 195));
    // T19: lossless JPEG2000 and deflate TIFF of the same pixels give the same PNG tile
    // (pixels: only the TIFF states a density, so the files differ by a pHYs chunk).
    for t in [1, 14] {
        assert_eq!(
            png_decode(&s.get(&format!("FIF=small.jp2&PTL=2,{t}")).body),
            png_decode(&s.get(&format!("FIF=small.tif&PTL=2,{t}")).body)
        );
    }
    // Virtual levels below a single stored resolution.
    let r = s.get("FIF=flat.jp2&OBJ=Resolution-number");
    assert_eq!(body_lines(&r), ["Resolution-number:3"]);
    assert_eq!(jpeg_size(&s.get("FIF=flat.jp2&JTL=0,0").body), (251, 195));
    assert_eq!(jpeg_size(&s.get("FIF=flat.jp2&JTL=1,3").body), (245, 133));
    // Region export from JPEG2000.
    assert_eq!(
        jpeg_size(&s.get("FIF=small.jp2&WID=300&CVT=jpeg").body),
        (300, 233)
    );
    assert_eq!(s.get("FIF=small.jp2&JTL=2,16").status, 404);
}

#[test]
fn til_spectra_and_profiles() {
    let s = Server::start(&[("CACHE_CONTROL", "max-age=60, public"), ("CORS", "*")], 1);
    // T26: column-major FlashPix tile records.
    let r = s.get("FIF=small.tif&TIL=1,0-3");
    assert_eq!(r.content_type(), "application/vnd.netfpx");
    // Headers as on every other successful answer.
    assert_eq!(r.header("Cache-Control"), Some("max-age=60, public"));
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some("*"));
    let mut rest = &r.body[..];
    let mut order = Vec::new();
    while !rest.is_empty() {
        let colon = rest.iter().position(|&b| b == b':').unwrap();
        let head = std::str::from_utf8(&rest[..colon]).unwrap().to_owned();
        let len: usize = head.rsplit('/').next().unwrap().parse().unwrap();
        let parts: Vec<&str> = head.split(',').collect();
        order.push(parts[2].parse::<u32>().unwrap());
        let rec = &rest[colon + 1..colon + 1 + len];
        assert_eq!(&rec[..8], &[2, 0, 0, 0, 0, 0x11, 0, 0]);
        assert_eq!(&rec[8..10], &[0xFF, 0xD8]);
        assert_eq!(&rest[colon + 1 + len..colon + 3 + len], b"\r\n");
        rest = &rest[colon + 3 + len..];
    }
    assert_eq!(order, [0, 2, 1, 3]);
    // X1, X2
    let r = s.get("FIF=small.tif&SPECTRA=2,0,5,5");
    assert_eq!(r.content_type(), "application/xml");
    let t = r.text();
    assert_eq!(t.matches("<point>").count(), 1);
    assert!(t.contains("<wavelength>0</wavelength>"));
    let (_, _, png_px) = {
        let mut rd = png::Decoder::new(std::io::Cursor::new(s.get("FIF=small.tif&PTL=2,0").body))
            .read_info()
            .unwrap();
        let mut buf = vec![0; rd.output_buffer_size().unwrap()];
        rd.next_frame(&mut buf).unwrap();
        ((), (), buf)
    };
    let expected = format!(
        "<reflectance>{:.6}</reflectance>",
        png_px[(5 * 256 + 5) * 3] as f64 / 255.0
    );
    assert!(t.contains(&expected), "{t} vs {expected}");
    assert_eq!(s.get("FIF=small.tif&SPECTRA=2,0,300,5").status, 400);
    // X4, X6
    let r = s.get("FIF=small.tif&PFL=2:10,10-15,10");
    assert_eq!(r.content_type(), "application/json");
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["profile"].as_array().unwrap().len(), 15);
    assert_eq!(
        v["profile"][0].as_u64().unwrap(),
        png_px[(10 * 256 + 10) * 3] as u64
    );
    let v: serde_json::Value =
        serde_json::from_slice(&s.get("FIF=small.tif&PFL=2:10,10-10,14").body).unwrap();
    assert_eq!(v["profile"].as_array().unwrap().len(), 12);
    assert_eq!(s.get("FIF=small.tif&PFL=9:0,0").status, 400);
    assert_eq!(s.get("FIF=small.tif&PFL=2:1001,0").status, 400);
    assert_eq!(s.get("PFL=2:0,0").status, 400);
}

/// A FastCGI request with method `method` for path `uri` and no query string (a
/// URI_MAP-mapped request), with extra params.
fn mapped(s: &Server, method: &str, uri: &str, extra: &[(&str, &str)]) -> Reply {
    let mut p = vec![
        ("REQUEST_METHOD", method),
        ("QUERY_STRING", ""),
        ("REQUEST_URI", uri),
        ("HTTP_HOST", "localhost"),
    ];
    p.extend_from_slice(extra);
    s.request(&p, b"")
}

#[test]
fn mapped_requests_follow_the_method_rules() {
    // iipsrv skips its method checks for URI_MAP-mapped requests and refuses HEAD;
    // here OPTIONS and 405 apply to them too, and HEAD is GET without the body.
    let s = Server::start(&[("URI_MAP", "iiif=>IIIF,zoomify=>Zoomify")], 1);
    for uri in [
        "/iiif/small.tif/info.json",
        "/iiif/small.tif/full/100,/0/default.jpg",
        "/zoomify/small.tif/ImageProperties.xml",
    ] {
        let r = mapped(&s, "OPTIONS", uri, &[]);
        assert_eq!((r.status, r.body.len()), (204, 0), "OPTIONS {uri}");
        assert_eq!(r.header("Content-Length"), Some("0"), "OPTIONS {uri}");
        let allow = r.header("Allow").unwrap_or("");
        for m in ["GET", "HEAD", "POST", "OPTIONS"] {
            assert!(allow.contains(m), "OPTIONS {uri}: Allow {allow:?}");
        }
        for method in ["DELETE", "PUT", "PATCH"] {
            let r = mapped(&s, method, uri, &[]);
            assert_eq!((r.status, r.body.len()), (405, 0), "{method} {uri}");
        }
        let get = mapped(&s, "GET", uri, &[]);
        let head = mapped(&s, "HEAD", uri, &[]);
        assert_eq!(get.status, 200, "GET {uri}: {}", get.text());
        assert!(!get.body.is_empty(), "GET {uri}");
        assert_eq!((head.status, head.body.len()), (200, 0), "HEAD {uri}");
        assert_eq!(head.headers, get.headers, "HEAD {uri} has GET's headers");
        if let Some(len) = head.header("Content-Length") {
            assert_eq!(len, get.body.len().to_string(), "HEAD {uri}");
        }
    }
}

#[test]
fn not_modified_unless_the_file_just_changed() {
    let dir = TempDir::new("ims");
    let file = dir.0.join("x.tif");
    std::fs::copy(fixtures().join("small.tif"), &file).unwrap();
    let prefix = format!("{}/", dir.0.display());
    let mtime = || std::fs::metadata(&file).unwrap().modified().unwrap();
    let cond = |s: &Server, date: &str| {
        s.request(
            &[
                ("REQUEST_METHOD", "GET"),
                ("QUERY_STRING", "FIF=x.tif&JTL=2,0"),
                ("HTTP_IF_MODIFIED_SINCE", date),
            ],
            b"",
        )
    };
    // The first request a worker gets for an image is not a reload: a client that
    // has the current file gets 304, with and without the metadata cache.
    for cache in ["1000", "0"] {
        let s = Server::start(
            &[
                ("FILESYSTEM_PREFIX", prefix.as_str()),
                ("MAX_METADATA_CACHE_SIZE", cache),
            ],
            1,
        );
        let now = httpdate::fmt_http_date(mtime());
        for n in 0..2 {
            let r = cond(&s, &now);
            assert_eq!(r.status, 304, "request {n}, metadata cache {cache}");
            assert_eq!((r.header("Content-Length"), r.body.len()), (Some("0"), 0));
        }
    }
    // The request that finds the file changed answers in full, even to a date after the
    // new mtime; the next one is a 304 again.
    let s = Server::start(&[("FILESYSTEM_PREFIX", prefix.as_str())], 1);
    assert_eq!(s.get("FIF=x.tif&JTL=2,0").status, 200);
    let old = mtime()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    sh(&format!("touch -d @{} {}", old + 100, file.display()));
    let later = httpdate::fmt_http_date(mtime() + std::time::Duration::from_secs(86400));
    let r = cond(&s, &later);
    assert_eq!(r.status, 200, "the request that reloads the image");
    assert_eq!(jpeg_size(&r.body), (256, 256));
    assert_eq!(cond(&s, &later).status, 304);
}

#[test]
fn metadata_json_has_no_binary_exif() {
    // iipsrv puts the raw EXIF block into OBJ=metadata; it is left out here, as are
    // the ICC profile and XMP packet, so the answer stays valid JSON.
    let s = Server::start(&[], 1);
    for file in ["exif.jpg", "xmp.jpg"] {
        let r = s.get(&format!("FIF={file}&OBJ=metadata"));
        assert_eq!(r.status, 200, "{file}");
        assert_eq!(r.content_type(), "application/json");
        let v: serde_json::Value = serde_json::from_slice(&r.body)
            .unwrap_or_else(|e| panic!("{file}: {e}: {:?}", r.text()));
        let keys: Vec<&String> = v.as_object().expect("an object").keys().collect();
        for k in ["exif", "xmp", "icc"] {
            assert!(!keys.iter().any(|x| *x == k), "{file}: {keys:?}");
        }
        assert!(!r.text().contains("Tess"), "{file}: EXIF Make leaked");
    }
    // The EXIF is there to leave out: region exports carry it.
    let r = s.get("FIF=exif.jpg&WID=100&CVT=jpeg");
    assert!(r.body.windows(6).any(|w| w == b"Exif\0\0"));
}

#[test]
fn unknown_file_types_are_404_unsupported_image_type() {
    // iipsrv answers a file it cannot read with its HTML banner and 200.
    let s = Server::start(&[], 1);
    for q in [
        "FIF=notimage.tif&OBJ=Max-size",
        "FIF=notimage.tif&JTL=0,0",
        "FIF=notimage.tif&WID=100&CVT=jpeg",
    ] {
        let r = s.get(q);
        assert_eq!(r.status, 404, "{q}");
        assert_eq!(r.content_type(), "text/plain; charset=utf-8", "{q}");
        assert_eq!(r.text(), "Unsupported image type: notimage.tif", "{q}");
    }
    let r = s.get("IIIF=notimage.tif/info.json");
    assert_eq!(r.status, 404, "{}", r.text());
}

#[test]
fn jtl_is_always_jpeg() {
    // iipsrv's JTL encodes in the output format left by an earlier command.
    let s = Server::start(&[], 1);
    let is_jpeg = |r: &Reply| {
        r.status == 200 && r.content_type() == "image/jpeg" && r.body.starts_with(&[0xFF, 0xD8])
    };
    let plain = s.get("FIF=small.tif&JTL=2,0");
    assert!(is_jpeg(&plain));
    assert_eq!(jpeg_size(&plain.body), (256, 256));
    for q in [
        "FIF=small.tif&PTL=2,1&JTL=2,0",
        "FIF=small.tif&WTL=2,1&JTL=2,0",
        "FIF=small.tif&CVT=png&JTL=2,0",
    ] {
        // The first output ends the request: no PNG or WebP carries on into JTL.
        let r = s.get(q);
        assert_ne!(
            r.content_type(),
            "image/jpeg",
            "{q} answered by its first command"
        );
    }
    for q in [
        "FIF=small.tif&QLT=80&JTL=2,0",
        "FIF=small.tif&CNT=1.0&JTL=2,0",
        // WebP-compressed tiles are not passed through as a JTL answer.
        "FIF=small_webp.tif&JTL=2,0",
        "FIF=small_webp.tif&JTL=0,0",
    ] {
        let r = s.get(q);
        assert!(is_jpeg(&r), "{q}: {} {}", r.status, r.content_type());
        let (w, h, c) = jpeg_dims(&r.body);
        assert!(w > 0 && h > 0 && c == 3, "{q}");
    }
    // A PNG tile before, on the same worker, leaves nothing behind.
    assert_eq!(s.get("FIF=small.tif&PTL=2,0").content_type(), "image/png");
    assert_eq!(s.get("FIF=small.tif&JTL=2,0").body, plain.body);
}

#[test]
fn cors_on_redirects_and_not_modified() {
    // iipsrv leaves the CORS block off 303 and 304; a browser following a redirect to
    // info.json, or revalidating a tile, needs it.
    let s = Server::start(&[("CORS", "*"), ("URI_MAP", "iiif=>IIIF")], 1);
    let r = mapped(&s, "GET", "/iiif/small.tif", &[]);
    assert_eq!(r.status, 303);
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some("*"));
    assert!(r.header("Access-Control-Allow-Headers").is_some());
    let lm = s
        .get("FIF=small.tif&JTL=2,0")
        .header("Last-Modified")
        .unwrap()
        .to_owned();
    let r = s.request(
        &[
            ("REQUEST_METHOD", "GET"),
            ("QUERY_STRING", "FIF=small.tif&JTL=2,0"),
            ("HTTP_IF_MODIFIED_SINCE", &lm),
        ],
        b"",
    );
    assert_eq!(r.status, 304);
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some("*"));
    let r = mapped(
        &s,
        "GET",
        "/iiif/small.tif/info.json",
        &[("HTTP_IF_MODIFIED_SINCE", &lm)],
    );
    assert_eq!(r.status, 304);
    assert_eq!(r.header("Access-Control-Allow-Origin"), Some("*"));
}
