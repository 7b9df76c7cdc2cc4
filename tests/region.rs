//! Region exports: IIP `CVT` and IIIF image requests (docs/processing.md §3,
//! docs/protocols.md §1.4 and §2.4).

mod common;
use common::*;

#[test]
fn cvt_sizes_and_headers() {
    let s = Server::start(&[], 1);
    for (q, w, h) in [
        ("FIF=big.tif&WID=500&CVT=jpeg", 500, 300),
        ("FIF=small.tif&CVT=jpeg", 1001, 777),
        ("FIF=small.tif&HEI=100&CVT=jpeg", 129, 100),
        ("FIF=small.tif&WID=400&HEI=400&CVT=jpeg", 400, 310),
        ("FIF=small.tif&WID=300&CVT=jpeg", 300, 233),
        (
            "FIF=small.tif&RGN=0.25,0.25,0.5,0.5&WID=300&CVT=jpeg",
            300,
            233,
        ),
        ("FIF=small.tif&RGN=0,0,0.5,1&CVT=jpeg", 501, 777),
        ("FIF=small.tif&RGN=0,0,0.5,0.5&CVT=jpeg", 501, 389),
        (
            "FIF=small.tif&WID=100&RGN=0.9,0.9,0.5,0.5&CVT=jpeg",
            100,
            78,
        ),
        ("FIF=small.tif&WID=300&ROT=90&CVT=jpeg", 233, 300),
        ("FIF=small.tif&WID=-5&CVT=jpeg", 1001, 777),
        ("FIF=big_subifd.tif&WID=640&CVT=jpeg", 640, 384),
        ("FIF=grey16.tif&WID=100&CVT=jpeg", 100, 78),
    ] {
        let r = s.get(q);
        assert_eq!(r.status, 200, "{q}: {}", r.text());
        assert_eq!(r.content_type(), "image/jpeg", "{q}");
        assert_eq!(jpeg_size(&r.body), (w, h), "{q}");
    }
    let r = s.get("FIF=big.tif&WID=500&CVT=jpeg");
    assert_eq!(
        r.header("Content-Disposition"),
        Some("inline; filename=\"big_500x300.jpg\"")
    );
    let r = s.get("FIF=small.tif&WID=6000&CVT=jpeg");
    assert_eq!(jpeg_size(&r.body), (5000, 3881));
    for (q, mime) in [
        ("CVT=png", "image/png"),
        ("CVT=gif", "image/jpeg"),
        ("CVT=JPG", "image/jpeg"),
    ] {
        let r = s.get(&format!("FIF=small.tif&WID=50&{q}"));
        assert_eq!(r.content_type(), mime, "{q}");
    }
    // POST makes it an attachment.
    let body = b"FIF=small.tif&WID=100&CVT=jpeg";
    let r = s.request(
        &[
            ("REQUEST_METHOD", "POST"),
            ("QUERY_STRING", ""),
            ("CONTENT_LENGTH", &body.len().to_string()),
        ],
        body,
    );
    assert_eq!(
        r.header("Content-Disposition"),
        Some("attachment; filename=\"small_100x78.jpg\"")
    );
    // S23: only the first output command answers.
    let r = s.get("FIF=small.tif&WID=100&CVT=jpeg&WID=50&CVT=png");
    assert_eq!(r.content_type(), "image/jpeg");
    assert_eq!(jpeg_size(&r.body), (100, 78));
}

#[test]
fn cvt_limits_and_colour() {
    let s = Server::start(&[("MAX_CVT", "800"), ("ALLOW_UPSCALING", "0")], 1);
    assert_eq!(
        jpeg_size(&s.get("FIF=small.tif&WID=1001&CVT=jpeg").body),
        (800, 621)
    );
    assert_eq!(
        jpeg_size(&s.get("FIF=small.tif&RGN=0,0,0.2,0.2&WID=700&CVT=jpeg").body),
        (200, 155)
    );
    drop(s);
    let s = Server::start(&[("ALLOW_UPSCALING", "0")], 1);
    assert_eq!(
        jpeg_size(&s.get("FIF=small.tif&WID=2000&CVT=jpeg").body),
        (1001, 777)
    );
    // C16: greyscale PNG of the whole image.
    let (w, h, ct, _) = png_decode(&s.get("FIF=small.tif&COL=grey&CVT=png").body);
    assert_eq!((w, h, ct), (1001, 777, png::ColorType::Grayscale));
    // T13/T14 on tiles.
    assert_eq!(
        jpeg_dims(&s.get("FIF=small.tif&COL=grey&JTL=2,0").body).2,
        1
    );
    let (_, _, ct, px) = png_decode(&s.get("FIF=small.tif&COL=binary&PTL=2,0").body);
    assert_eq!(ct, png::ColorType::Grayscale);
    assert!(px.iter().all(|&v| v == 0 || v == 255));
    // The threshold is the whole image's: this dark corner is black throughout, a tile
    // across the middle is split.
    assert!(px.iter().all(|&v| v == 0));
    let (_, _, _, px) = png_decode(&s.get("FIF=small.tif&COL=binary&PTL=2,6").body);
    assert!(px.contains(&0) && px.contains(&255));
}

#[test]
fn region_pixels_match_the_source() {
    let s = Server::start(&[], 1);
    // Lossless round trip: a region at native size equals the tiles it was cut from.
    let (w, h, _, region) = png_decode(&s.get("FIF=small.tif&RGN=0.2,0.3,0.25,0.25&CVT=png").body);
    assert_eq!((w, h), (250, 194));
    let (_, _, _, full) = png_decode(&s.get("FIF=small.tif&CVT=png").body);
    let (x0, y0) = (
        (0.2f64 * 1001.0).round() as usize,
        (0.3f64 * 777.0).round() as usize,
    );
    for (x, y) in [(0usize, 0usize), (249, 193), (100, 50)] {
        let a = &region[(y * 250 + x) * 3..][..3];
        let b = &full[((y0 + y) * 1001 + x0 + x) * 3..][..3];
        assert_eq!(a, b, "pixel {x},{y}");
    }
    // The fixture's red channel falls from left to right; a downscaled export keeps that.
    let (w, _, _, small) = png_decode(&s.get("FIF=small.tif&WID=100&CVT=png").body);
    assert_eq!(w, 100);
    assert!(
        small[0] > 240 && small[99 * 3] < 15,
        "{} {}",
        small[0],
        small[99 * 3]
    );
}

fn iiif(s: &Server, arg: &str) -> Reply {
    s.get_path(&format!("/iiif/{arg}"))
}

#[test]
fn iiif_image_requests() {
    let s = Server::start(&[("URI_MAP", "iiif=>IIIF")], 1);
    for (a, w, h) in [
        ("small.tif/full/max/0/default.jpg", 1001, 777),
        ("small.tif/full/500,/0/default.jpg", 500, 388),
        ("small.tif/full/,500/0/default.jpg", 644, 500),
        ("small.tif/full/500,500/0/default.jpg", 500, 500),
        ("small.tif/full/!500,500/0/default.jpg", 500, 388),
        ("small.tif/full/pct:10/0/default.jpg", 100, 78),
        ("small.tif/full/^2000,/0/default.jpg", 2000, 1552),
        ("small.tif/full/^pct:150/0/default.jpg", 1502, 1166),
        ("small.tif/full/!900,900/0/default.jpg", 900, 699),
        ("small.tif/square/200,/0/default.jpg", 200, 200),
        ("small.tif/square/max/0/default.jpg", 777, 777),
        ("small.tif/900,700,200,200/max/0/default.jpg", 101, 77),
        ("small.tif/pct:10,10,50,50/max/0/default.jpg", 501, 389),
        ("small.tif/full/max/360/default.jpg", 1001, 777),
        ("small.tif/full/max/0/default", 1001, 777),
        ("small.tif/full/max/0/default.JPG", 1001, 777),
        ("small.tif/full/max/0/default.jpg?t=123", 1001, 777),
        ("small.tif/FULL/MAX/0/DEFAULT.jpg", 1001, 777),
        ("big.tif/full/!512,512/0/default.jpg", 512, 307),
    ] {
        let r = iiif(&s, a);
        assert_eq!(r.status, 200, "{a}: {}", r.text());
        assert_eq!(jpeg_size(&r.body), (w, h), "{a}");
    }
    let r = iiif(&s, "small.tif/full/max/0/default.jpg");
    assert_eq!(
        r.header("Content-Disposition"),
        Some("inline; filename=\"small_1001x777.jpg\"")
    );
    // Profile and canonical Link headers, in one header line.
    assert_eq!(
        r.header("Link"),
        Some("<http://iiif.io/api/image/3/level2.json>;rel=\"profile\", <http://localhost/iiif/small.tif/full/max/0/default.jpg>;rel=\"canonical\"")
    );
    let r = iiif(&s, "small.tif/pct:10,10,50,50/250,/!90/color.png");
    assert!(r.raw_head.contains(", <http://localhost/iiif/small.tif/100,78,501,389/250,194/!90/default.png>;rel=\"canonical\""), "{}", r.raw_head);
    // Any angle: the bounding box, transparent corners in PNG.
    let r = iiif(&s, "small.tif/full/100,/45/default.png");
    let (w, h, ct, px) = png_decode(&r.body);
    assert_eq!((w, h, ct), (126, 126, png::ColorType::Rgba));
    assert_eq!(px[3], 0, "corner is transparent");
    assert_eq!(px[((63 * 126 + 63) * 4 + 3) as usize], 255);
    assert_eq!(
        jpeg_size(&iiif(&s, "small.tif/full/100,/30/default.jpg").body),
        (126, 118)
    );
    // Tile fast path: Content-Length, no Content-Disposition.
    for (a, w, h) in [
        ("small.tif/0,0,256,256/256,/0/default.jpg", 256, 256),
        ("small.tif/768,512,233,256/233,/0/default.jpg", 233, 256),
        ("small.tif/0,0,512,512/256,/0/default.jpg", 256, 256),
    ] {
        let r = iiif(&s, a);
        assert_eq!(jpeg_size(&r.body), (w, h), "{a}");
        assert!(r.header("Content-Disposition").is_none(), "{a}");
        assert_eq!(
            r.header("Content-Length").unwrap(),
            r.body.len().to_string()
        );
    }
    // The fast path serves the same pixels as the tile itself.
    let tile = s.get("FIF=big.tif&JTL=5,21");
    let fast = iiif(&s, "big.tif/256,256,256,256/256,/0/default.jpg");
    assert_eq!(tile.body, fast.body);
    // Rotation, mirroring, qualities, formats.
    let r = iiif(&s, "small.tif/100,100,300,200/max/90/default.png");
    let (w, h, _, _) = png_decode(&r.body);
    assert_eq!((w, h), (200, 300));
    let (_, _, _, plain) = png_decode(&iiif(&s, "small.tif/full/max/0/default.png").body);
    let (_, _, _, flipped) = png_decode(&iiif(&s, "small.tif/full/max/!180/default.png").body);
    let (_, _, _, mirrored) = png_decode(&iiif(&s, "small.tif/full/max/!0/default.png").body);
    for (x, y) in [(0usize, 0usize), (500, 300), (1000, 776)] {
        assert_eq!(
            flipped[(y * 1001 + x) * 3..][..3],
            plain[((776 - y) * 1001 + x) * 3..][..3]
        );
        assert_eq!(
            mirrored[(y * 1001 + x) * 3..][..3],
            plain[(y * 1001 + 1000 - x) * 3..][..3]
        );
    }
    assert_eq!(
        jpeg_dims(&iiif(&s, "small.tif/full/max/0/gray.jpg").body).2,
        1
    );
    assert_eq!(
        jpeg_dims(&iiif(&s, "small.tif/full/max/0/grey.jpg").body).2,
        1
    );
    let (_, _, ct, px) = png_decode(&iiif(&s, "small.tif/full/max/0/bitonal.png").body);
    assert_eq!(ct, png::ColorType::Grayscale);
    assert!(px.iter().all(|&v| v == 0 || v == 255));
    // Errors.
    for (a, status) in [
        ("small.tif/full/2000,/0/default.jpg", 400),
        ("small.tif/full/pct:150/0/default.jpg", 400),
        ("small.tif/2000,0,10,10/max/0/default.jpg", 400),
        ("small.tif/0,0,0,10/max/0/default.jpg", 400),
        ("small.tif/1,2,3/max/0/default.jpg", 400),
        ("small.tif/-10,0,100,100/max/0/default.jpg", 400),
        ("small.tif/full/max/400/default.jpg", 400),
        ("small.tif/full/max/x/default.jpg", 400),
        ("small.tif/full/max/0/negative.jpg", 400),
        ("small.tif/full/abc/0/default.jpg", 400),
        ("small.tif/full/0,/0/default.jpg", 400),
        ("small.tif/full/max/0/default.gif", 400),
        ("small.tif/full/max/0", 400),
        ("small.tif/full/max/0/default.jpg/x", 404),
        ("nope.tif/full/max/0/default.jpg", 404),
    ] {
        let r = iiif(&s, a);
        assert_eq!(r.status, status, "{a}: {}", r.text());
        assert!(!r.body.is_empty(), "{a}");
    }
    // I53: conditional request.
    let lm = iiif(&s, "small.tif/full/max/0/default.jpg")
        .header("Last-Modified")
        .unwrap()
        .to_owned();
    let r = s.request(
        &[
            ("REQUEST_METHOD", "GET"),
            ("REQUEST_URI", "/iiif/small.tif/full/max/0/default.jpg"),
            ("HTTP_IF_MODIFIED_SINCE", &lm),
        ],
        b"",
    );
    assert_eq!(r.status, 304);
}

#[test]
fn oversized_regions_are_refused_not_allocated() {
    let s = Server::start(&[("MAX_CVT", "-1"), ("URI_MAP", "iiif=>IIIF")], 1);
    let r = s.get("FIF=big.tif&WID=100000&CVT=jpeg");
    assert_eq!(r.status, 400, "{}", r.text());
    let r = iiif(&s, "big.tif/full/^100000,/0/default.jpg");
    assert_eq!(r.status, 400);
    assert_eq!(s.get("FIF=small.tif&OBJ=Max-size").status, 200);
}

/// Width, height and bands of an image file as vips reads it.
fn vips_header(bytes: &[u8], ext: &str) -> (u32, u32, u32) {
    let dir = TempDir::new("vh");
    let f = dir.0.join(format!("img.{ext}"));
    std::fs::write(&f, bytes).unwrap();
    let out = sh(&format!(
        "vipsheader -f width {0}; vipsheader -f height {0}; vipsheader -f bands {0}",
        f.display()
    ));
    let v: Vec<u32> = out.lines().map(|l| l.trim().parse().unwrap()).collect();
    (v[0], v[1], v[2])
}

#[test]
fn webp_and_tiff_outputs() {
    let s = Server::start(&[("URI_MAP", "iiif=>IIIF")], 1);
    // T9
    for (q, mime, ext) in [
        ("WTL=2,0", "image/webp", "webp"),
        ("TTL=2,0", "image/tiff", "tif"),
        ("ATL=2,0", "image/avif", "avif"),
    ] {
        let r = s.get(&format!("FIF=small.tif&{q}"));
        assert_eq!(r.content_type(), mime, "{q}");
        assert_eq!(vips_header(&r.body, ext), (256, 256, 3), "{q}");
    }
    // C11, C12
    for (cvt, mime) in [
        ("webp", "image/webp"),
        ("tiff", "image/tiff"),
        ("tif", "image/tiff"),
        ("avif", "image/avif"),
    ] {
        let r = s.get(&format!("FIF=small.tif&WID=100&CVT={cvt}"));
        assert_eq!(r.content_type(), mime, "{cvt}");
    }
    // C17: QLT=0 makes lossless WebP.
    let r = s.get("FIF=small.tif&QLT=0&WID=100&CVT=webp");
    assert!(r.body.windows(4).any(|w| w == b"VP8L"));
    // C23: the whole RIFF stream is sent.
    let r = s.get("FIF=small.tif&HEI=384&CVT=webp");
    let riff = u32::from_le_bytes(r.body[4..8].try_into().unwrap()) as usize;
    assert_eq!(r.body.len(), riff + 8);
    assert_eq!(vips_header(&r.body, "webp").1, 384);
    // C18, C19 through tiffinfo.
    let dir = TempDir::new("tif");
    let f = dir.0.join("t.tif");
    std::fs::write(&f, s.get("FIF=small.tif&QLT=deflate:6&TTL=2,0").body).unwrap();
    let info = sh(&format!("tiffinfo {}", f.display()));
    assert!(info.contains("Compression Scheme: AdobeDeflate"), "{info}");
    std::fs::write(&f, s.get("FIF=grey.tif&WID=100&CVT=tiff").body).unwrap();
    let info = sh(&format!("tiffinfo {}", f.display()));
    assert!(info.contains("Samples/Pixel: 1"), "{info}");
    assert!(info.contains("min-is-black"), "{info}");
    // I41, I42
    let iiif = |a: &str| {
        s.request(
            &[
                ("REQUEST_METHOD", "GET"),
                ("REQUEST_URI", &format!("/iiif/{a}")),
            ],
            b"",
        )
    };
    let r = iiif("small.tif/full/max/0/default.tif");
    assert_eq!(r.content_type(), "image/tiff");
    assert_eq!(vips_header(&r.body, "tif"), (1001, 777, 3));
    let r = iiif("small.tif/full/200,/0/default.webp");
    assert_eq!(r.content_type(), "image/webp");
    assert_eq!(vips_header(&r.body, "webp"), (200, 155, 3));
    // Pixels survive a lossless TIFF round trip.
    let png_body = s.get("FIF=small.tif&WID=64&CVT=png").body;
    let tif_body = s.get("FIF=small.tif&WID=64&CVT=tiff").body;
    let (a, b) = (dir.0.join("a.png"), dir.0.join("b.tif"));
    std::fs::write(&a, png_body).unwrap();
    std::fs::write(&b, tif_body).unwrap();
    let diff = sh(&format!(
        "vips subtract {} {} {}/d.v && vips abs {}/d.v {}/e.v && vips max {}/e.v",
        a.display(),
        b.display(),
        dir.0.display(),
        dir.0.display(),
        dir.0.display(),
        dir.0.display()
    ));
    assert_eq!(diff.trim().parse::<f64>().unwrap(), 0.0);
}

/// The size of the ICC profile vips finds in an encoded image, if any.
fn vips_icc(dir: &TempDir, bytes: &[u8], ext: &str) -> Option<usize> {
    let f = dir.0.join(format!("icc-probe.{ext}"));
    std::fs::write(&f, bytes).unwrap();
    let out = sh(&format!(
        "vipsheader -a {} 2>/dev/null || true",
        f.display()
    ));
    out.lines()
        .find_map(|l| l.strip_prefix("icc-profile-data: "))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[test]
fn icc_profiles_are_embedded_as_max_icc_allows() {
    let dir = TempDir::new("icc");
    let s = Server::start(&[("URI_MAP", "iiif=>IIIF")], 1);
    // Passed-through JPEG tile, re-encoded tile, and region exports in three formats.
    for (q, ext) in [
        ("FIF=icc.tif&JTL=2,0", "jpg"),
        ("FIF=icc.tif&QLT=60&JTL=2,0", "jpg"),
        ("FIF=icc.tif&WID=200&CVT=jpeg", "jpg"),
        ("FIF=icc.tif&WID=200&CVT=png", "png"),
        ("FIF=icc.tif&WID=200&CVT=webp", "webp"),
        ("FIF=icc.tif&WID=200&CVT=tiff", "tif"),
        ("FIF=icc.tif&WID=200&CVT=avif", "avif"),
    ] {
        let r = s.get(q);
        assert_eq!(r.status, 200, "{q}");
        assert_eq!(vips_icc(&dir, &r.body, ext), Some(6922), "{q}");
    }
    let r = iiif(&s, "icc.tif/full/100,/0/default.png");
    assert_eq!(vips_icc(&dir, &r.body, "png"), Some(6922));
    // Grey output does not carry a colour profile; files without one get none.
    let r = s.get("FIF=icc.tif&WID=200&COL=grey&CVT=jpeg");
    assert_eq!(vips_icc(&dir, &r.body, "jpg"), None);
    let r = s.get("FIF=small.tif&WID=200&CVT=jpeg");
    assert_eq!(vips_icc(&dir, &r.body, "jpg"), None);
    drop(s);
    for (max, want) in [
        ("0", None),
        ("6922", None),
        ("6923", Some(6922)),
        ("-1", Some(6922)),
    ] {
        let s = Server::start(&[("MAX_ICC", max)], 1);
        let r = s.get("FIF=icc.tif&WID=200&CVT=jpeg");
        assert_eq!(vips_icc(&dir, &r.body, "jpg"), want, "MAX_ICC={max}");
    }
}

#[test]
fn xmp_and_exif_reach_every_format_that_carries_them() {
    // xmp.jpg: EXIF (Make "Tess") and an 80-byte XMP packet; vips (libjpeg, libpng,
    // libwebp, libheif, libtiff) reads them back. TIFF output carries XMP, not EXIF
    // (docs/processing.md §6).
    let dir = TempDir::new("xmp");
    let s = Server::start(&[], 1);
    for (cvt, ext, exif) in [
        ("jpeg", "jpg", true),
        ("png", "png", true),
        ("webp", "webp", true),
        ("avif", "avif", true),
        ("tiff", "tif", false),
    ] {
        let r = s.get(&format!("FIF=xmp.jpg&WID=300&CVT={cvt}"));
        assert_eq!(r.status, 200, "{cvt}");
        let f = dir.0.join(format!("out.{ext}"));
        std::fs::write(&f, &r.body).unwrap();
        let head = sh(&format!("vipsheader -a {} 2>&1", f.display()));
        assert!(head.contains("xmp-data: 80 bytes"), "{cvt}: {head}");
        assert_eq!(head.contains("exif-ifd0-Make: Tess"), exif, "{cvt}: {head}");
    }
    // Tiles carry neither.
    let r = s.get("FIF=xmp.jpg&JTL=0,0");
    assert!(!r.body.windows(8).any(|w| w == b"xmpmeta "));
}

#[test]
fn exif_of_jpeg_sources_is_carried_into_region_exports() {
    let dir = TempDir::new("exif");
    let s = Server::start(&[], 1);
    let f = dir.0.join("out.jpg");
    let r = s.get("FIF=exif.jpg&WID=300&CVT=jpeg");
    assert_eq!(r.status, 200);
    std::fs::write(&f, &r.body).unwrap();
    let make = sh(&format!("vipsheader -f exif-ifd0-Make {}", f.display()));
    assert!(make.starts_with("Tess"), "{make}");
    // The chunk's payload (after a PNG length+type or a RIFF type+length) is the TIFF.
    for (cvt, chunk, payload) in [("png", b"eXIf", 4), ("webp", b"EXIF", 8)] {
        let r = s.get(&format!("FIF=exif.jpg&WID=300&CVT={cvt}"));
        let p = r
            .body
            .windows(4)
            .position(|w| w == chunk)
            .expect("EXIF chunk");
        assert_eq!(&r.body[p + payload..p + payload + 4], b"II*\0", "{cvt}");
        if cvt == "webp" {
            assert_eq!(r.body[20] & 0x08, 0x08, "VP8X EXIF flag");
        }
    }
    // Tiles carry none, and sources without EXIF give none.
    let r = s.get("FIF=exif.jpg&JTL=0,0");
    assert!(!r.body.windows(6).any(|w| w == b"Exif\0\0"));
    let r = s.get("FIF=small.tif&WID=300&CVT=jpeg");
    assert_eq!(r.status, 200);
    assert!(!r.body.windows(6).any(|w| w == b"Exif\0\0"));
}

#[test]
fn tiff_output_with_jpeg_and_webp_strips_decodes() {
    let dir = TempDir::new("tiffcodecs");
    let s = Server::start(&[], 1);
    let png = s.get("FIF=small.tif&WID=300&CVT=png");
    let (_, _, _, want) = png_decode(&png.body);
    for (qlt, code) in [("jpeg:90", 7u32), ("webp:90", 50001)] {
        let r = s.get(&format!("FIF=small.tif&WID=300&QLT={qlt}&CVT=tiff"));
        assert_eq!(r.status, 200, "{qlt}");
        let f = dir.0.join("out.tif");
        let out = dir.0.join("out.png");
        std::fs::write(&f, &r.body).unwrap();
        let info = sh(&format!("tiffinfo {} 2>&1", f.display()));
        assert!(
            info.contains(&format!(
                "Compression Scheme: {}",
                if code == 7 { "JPEG" } else { "WEBP" }
            )),
            "{info}"
        );
        sh(&format!("vips copy {} {}", f.display(), out.display()));
        let (w, h, _, got) = png_decode(&std::fs::read(&out).unwrap());
        assert_eq!((w, h), (300, 233), "{qlt}");
        let mad = got
            .iter()
            .zip(&want)
            .map(|(a, b)| a.abs_diff(*b) as f64)
            .sum::<f64>()
            / want.len() as f64;
        assert!(mad <= 3.0, "{qlt}: mean difference {mad:.2}");
    }
}

#[test]
fn iiif_2_follows_allow_upscaling() {
    // IIIF 2 has no `^`: whether a size above the region enlarges is ALLOW_UPSCALING's
    // call, as for IIP's CVT.
    let env = [("URI_MAP", "iiif=>IIIF"), ("IIIF_VERSION", "2")];
    let s = Server::start(&env, 1);
    let r = iiif(&s, "small.tif/full/2000,/0/default.jpg");
    assert_eq!((r.status, jpeg_size(&r.body)), (200, (2000, 1552)));
    drop(s);
    let s = Server::start(&[env[0], env[1], ("ALLOW_UPSCALING", "0")], 1);
    let r = iiif(&s, "small.tif/full/2000,/0/default.jpg");
    assert_eq!((r.status, jpeg_size(&r.body)), (200, (1001, 777)));
    let r = iiif(&s, "small.tif/0,0,500,500/800,/0/default.jpg");
    assert_eq!((r.status, jpeg_size(&r.body)), (200, (500, 500)));
}

/// `bytes` (an image of format `ext`) decoded by vips to 8-bit PNG.
fn vips_png(bytes: &[u8], ext: &str) -> (u32, u32, usize, Vec<u8>) {
    let dir = TempDir::new("vp");
    let f = dir.0.join(format!("img.{ext}"));
    let o = dir.0.join("out.png");
    std::fs::write(&f, bytes).unwrap();
    sh(&format!("vips copy {} {}", f.display(), o.display()));
    let (w, h, ct, px) = png_decode(&std::fs::read(o).unwrap());
    (w, h, ct.samples(), px)
}

#[test]
fn exports_are_whole_with_content_length_and_failures_get_a_status() {
    // iipsrv streams CVT answers without Content-Length, headers first, so a decode
    // failure truncates a 200. Here exports are sent whole, and a failure before the
    // first byte is an error status with a short text body.
    let dir = TempDir::new("export-fail");
    let mut data = std::fs::read(fixtures().join("small.tif")).unwrap();
    // The full-size level's tiles lie between the header and the first directory.
    let ifd0 = u32::from_le_bytes(data[4..8].try_into().unwrap()) as usize;
    assert!(ifd0 > 20_000, "tiles before IFD 0 ({ifd0})");
    data[8..ifd0].fill(0xFF);
    std::fs::write(dir.0.join("bad.tif"), &data).unwrap();
    std::fs::copy(fixtures().join("small.tif"), dir.0.join("good.tif")).unwrap();
    let prefix = format!("{}/", dir.0.display());
    let s = Server::start(
        &[
            ("FILESYSTEM_PREFIX", prefix.as_str()),
            ("URI_MAP", "iiif=>IIIF"),
        ],
        1,
    );
    for (fmt, end) in [
        ("jpeg", &b"\xFF\xD9"[..]),
        ("png", &b"IEND\xAE\x42\x60\x82"[..]),
        ("webp", &b""[..]),
        ("tiff", &b""[..]),
    ] {
        let q = format!("FIF=good.tif&WID=1001&CVT={fmt}");
        let r = s.get(&q);
        assert_eq!(r.status, 200, "{q}");
        assert_eq!(
            r.header("Content-Length"),
            Some(r.body.len().to_string().as_str()),
            "{q}"
        );
        assert!(r.body.ends_with(end), "{q}: a complete file");
        let q = format!("FIF=bad.tif&WID=1001&CVT={fmt}");
        let r = s.get(&q);
        assert_eq!(r.status, 500, "{q}: {}", r.text());
        assert_eq!(r.content_type(), "text/plain; charset=utf-8", "{q}");
        assert_eq!(r.header("Content-Disposition"), None, "{q}");
        assert!(r.body.len() < 300, "{q}: {}", r.text());
        assert!(!r.text().contains(&prefix), "{q}: {}", r.text());
    }
    // The same over IIIF; and the file opens, smaller levels still serve.
    let r = s.get_path("/iiif/bad.tif/full/max/0/default.jpg");
    assert_eq!((r.status, r.header("Content-Disposition")), (500, None));
    assert_eq!(
        s.get("FIF=bad.tif&OBJ=Max-size").text(),
        "Max-size:1001 777\r\n"
    );
    let r = s.get("FIF=bad.tif&WID=100&CVT=jpeg");
    assert_eq!(r.status, 200);
    assert_eq!(jpeg_size(&r.body), (100, 78));
    // HEAD of an export knows its length too.
    let get = s.get("FIF=good.tif&WID=300&CVT=png");
    let head = s.request(
        &[
            ("REQUEST_METHOD", "HEAD"),
            ("QUERY_STRING", "FIF=good.tif&WID=300&CVT=png"),
        ],
        b"",
    );
    assert_eq!(head.body.len(), 0);
    assert_eq!(
        head.header("Content-Length"),
        Some(get.body.len().to_string().as_str())
    );
}

#[test]
fn grey_with_alpha_becomes_rgba_in_webp_and_avif() {
    // WebP and AVIF have no grey+alpha; iipsrv hands them the two bands as RGB.
    let dir = TempDir::new("grey-alpha");
    let p = |n: &str| dir.0.join(n).display().to_string();
    let src = fixtures().join("small_none.tif").display().to_string();
    sh(&format!("vips extract_band {src} {} 1", p("g.v")));
    sh(&format!("vips extract_band {src} {} 0", p("a.v")));
    sh(&format!(
        "vips bandjoin '{} {}' {}",
        p("g.v"),
        p("a.v"),
        p("ga.v")
    ));
    sh(&format!(
        "vips copy {} {} --interpretation b-w",
        p("ga.v"),
        p("gab.v")
    ));
    sh(&format!(
        "vips tiffsave {} {} --tile --pyramid --tile-width 256 --tile-height 256",
        p("gab.v"),
        p("ga.tif")
    ));
    let prefix = format!("{}/", dir.0.display());
    let s = Server::start(&[("FILESYSTEM_PREFIX", prefix.as_str())], 1);
    // The truth: the same tile as grey+alpha PNG.
    let r = s.get("FIF=ga.tif&PTL=2,0");
    let (w, h, c, want) = {
        let (w, h, ct, px) = png_decode(&r.body);
        (w, h, ct.samples(), px)
    };
    assert_eq!((w, h, c), (256, 256, 2));
    for (q, ext) in [
        ("FIF=ga.tif&WTL=2,0", "webp"),
        ("FIF=ga.tif&ATL=2,0", "avif"),
        ("FIF=ga.tif&RGN=0,0,0.2557,0.3295&WID=256&CVT=webp", "webp"),
        ("FIF=ga.tif&RGN=0,0,0.2557,0.3295&WID=256&CVT=avif", "avif"),
    ] {
        let r = s.get(q);
        assert_eq!(r.status, 200, "{q}: {}", r.text());
        let (gw, gh, gc, got) = vips_png(&r.body, ext);
        assert_eq!((gc, gw), (4, 256), "{q}: RGBA");
        let n = (gw.min(w) * gh.min(h)) as usize;
        let (mut grey_err, mut alpha_err, mut chroma) = (0u64, 0u64, 0u32);
        for i in 0..n {
            let (x, y) = (i % 256, i / 256);
            let g = &got[(y * gw as usize + x) * 4..][..4];
            let t = &want[(y * 256 + x) * 2..][..2];
            grey_err += (g[1] as i32 - t[0] as i32).unsigned_abs() as u64;
            alpha_err += (g[3] as i32 - t[1] as i32).unsigned_abs() as u64;
            chroma = chroma.max((g[0] as i32 - g[2] as i32).unsigned_abs());
        }
        let (ge, ae) = (grey_err as f64 / n as f64, alpha_err as f64 / n as f64);
        assert!(ge < 4.0, "{q}: grey off by {ge} on average");
        assert!(ae < 4.0, "{q}: alpha off by {ae} on average");
        assert!(chroma <= 16, "{q}: not grey, R−B up to {chroma}");
    }
}
