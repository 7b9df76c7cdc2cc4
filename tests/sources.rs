//! Image sources against vips: for every stored variant (depths, photometrics,
//! layouts, codecs, containers) tiles at the largest, a middle and the smallest
//! resolution match vips's decode of the same area (docs/sources.md §3–5). Lossless 8-bit
//! sources must be identical; lossy or normalised ones within a mean absolute
//! difference of 2 per sample.

mod common;
use common::*;

/// How vips reads level `k` of a fixture, and what turns its decode into our 8-bit output.
struct Case {
    file: &'static str,
    /// vips load options for level k (`{k}` and `{k1}` = k-1 are substituted).
    level: &'static str,
    /// The file vips decodes, when it cannot read `file` itself.
    reference: Option<&'static str>,
    /// vips operation bringing its decode to 8-bit bands as we encode them.
    post: Post,
    max_mad: f64,
}

#[derive(Clone, Copy)]
enum Post {
    None,
    Msb,
    Float,
    Lab,
    FirstThree,
}

fn png_pixels(bytes: &[u8]) -> (u32, u32, usize, Vec<u8>) {
    let (w, h, ct, px) = png_decode(bytes);
    assert_eq!(px.len(), (w * h) as usize * ct.samples(), "8-bit PNG");
    (w, h, ct.samples(), px)
}

fn level_spec(case: &Case, k: u32) -> String {
    if k == 0 && case.level.contains("{k1}") {
        return String::new();
    }
    let s = case
        .level
        .replace("{k1}", &k.saturating_sub(1).to_string())
        .replace("{k}", &k.to_string())
        .replace("{s}", &(1u32 << k).to_string());
    if s.is_empty() {
        s
    } else {
        format!("[{s}]")
    }
}

/// vips's decode of `(x, y, w, h)` of level `k`, as 8-bit samples.
fn vips_area(
    dir: &TempDir,
    case: &Case,
    k: u32,
    (x, y, w, h): (u32, u32, u32, u32),
) -> (usize, Vec<u8>) {
    let src = fixtures().join(case.reference.unwrap_or(case.file));
    let d = dir.0.display();
    let input = format!("{}{}", src.display(), level_spec(case, k));
    let post = match case.post {
        Post::None => format!("cp {d}/c.v {d}/p.v"),
        Post::Msb => format!("vips msb {d}/c.v {d}/p.v"),
        Post::Float => format!("vips linear {d}/c.v {d}/p.v 255 0 --uchar"),
        Post::Lab => format!("vips colourspace {d}/c.v {d}/p.v srgb"),
        Post::FirstThree => format!("vips extract_band {d}/c.v {d}/p.v 0 --n 3"),
    };
    sh(&format!(
        "set -e; vips crop '{input}' {d}/c.v {x} {y} {w} {h}; {post}; vips cast {d}/p.v {d}/q.v uchar; vips pngsave {d}/q.v {d}/ref.png"
    ));
    let (rw, rh, c, px) = png_pixels(&std::fs::read(dir.0.join("ref.png")).unwrap());
    assert_eq!((rw, rh), (w, h), "{} k{k}", case.file);
    (c, px)
}

fn check(s: &Server, dir: &TempDir, case: &Case) {
    let obj = s
        .get(&format!(
            "FIF={}&OBJ=Max-size&OBJ=Resolution-number&OBJ=Tile-size",
            case.file
        ))
        .text();
    let n: u32 = obj
        .lines()
        .find_map(|l| l.strip_prefix("Resolution-number:"))
        .unwrap_or_else(|| panic!("{}: {obj}", case.file))
        .trim()
        .parse()
        .unwrap();
    let size: Vec<u32> = obj
        .lines()
        .find_map(|l| l.strip_prefix("Max-size:"))
        .unwrap()
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    let ts: u32 = obj
        .lines()
        .find_map(|l| l.strip_prefix("Tile-size:"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let vw: u32 = sh(&format!(
        "vipsheader -f width '{}{}'",
        fixtures()
            .join(case.reference.unwrap_or(case.file))
            .display(),
        level_spec(case, 0)
    ))
    .trim()
    .parse()
    .unwrap();
    assert_eq!(size[0], vw, "{}: OBJ width", case.file);
    let mut levels = vec![n - 1, (n - 1) / 2, 0];
    levels.dedup();
    for r in levels {
        let k = n - 1 - r;
        // The level's size as vips reads it: our tiles must tile exactly that.
        let dims: Vec<u32> = sh(&format!(
            "vipsheader -f width '{0}{1}'; vipsheader -f height '{0}{1}'",
            fixtures()
                .join(case.reference.unwrap_or(case.file))
                .display(),
            level_spec(case, k)
        ))
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
        let (lw, lh) = (dims[0], dims[1]);
        let (cols, rows) = (lw.div_ceil(ts), lh.div_ceil(ts));
        for t in [0, cols * rows - 1] {
            let (cx, cy) = (t % cols * ts, t / cols * ts);
            let area = (cx, cy, ts.min(lw - cx), ts.min(lh - cy));
            let reply = s.get(&format!("FIF={}&PTL={r},{t}", case.file));
            assert_eq!(
                reply.status,
                200,
                "{} r{r} t{t}: {}",
                case.file,
                reply.text()
            );
            let (w, h, c, ours) = png_pixels(&reply.body);
            assert_eq!((w, h), (area.2, area.3), "{} r{r} t{t} size", case.file);
            let (rc, theirs) = vips_area(dir, case, k, area);
            assert_eq!(c, rc, "{} r{r} t{t} channels", case.file);
            let mad = ours
                .iter()
                .zip(&theirs)
                .map(|(a, b)| (*a as i32 - *b as i32).unsigned_abs() as f64)
                .sum::<f64>()
                / ours.len() as f64;
            assert!(
                mad <= case.max_mad,
                "{} r{r} t{t}: mean absolute difference {mad:.3} > {}",
                case.file,
                case.max_mad
            );
        }
    }
}

fn case(file: &'static str, level: &'static str, post: Post, max_mad: f64) -> Case {
    Case {
        file,
        level,
        reference: None,
        post,
        max_mad,
    }
}

#[test]
fn every_variant_matches_vips() {
    let s = Server::start(&[], 1);
    let dir = TempDir::new("sources");
    let page = "page={k}";
    for c in [
        case("small.tif", page, Post::None, 0.0),
        case("small_lzw.tif", page, Post::None, 0.0),
        case("small_zstd.tif", page, Post::None, 0.0),
        case("small_packbits.tif", page, Post::None, 0.0),
        case("small_jpeg.tif", page, Post::None, 2.0),
        case("small_webp.tif", page, Post::None, 2.0),
        case("grey.tif", page, Post::None, 0.0),
        case("bits1.tif", page, Post::None, 0.0),
        case("bits2.tif", page, Post::None, 0.0),
        case("bits4.tif", page, Post::None, 0.0),
        case("miniswhite.tif", page, Post::None, 0.0),
        case("palette.tif", "", Post::None, 0.0),
        case("grey16.tif", page, Post::Msb, 0.0),
        case("rgb16.tif", page, Post::Msb, 0.0),
        case("float.tif", "", Post::Float, 1.0),
        // 8-bit CIELAB stores a* and b* in whole units: that step alone moves the dark
        // channel of a saturated colour by up to 15 levels (sRGB 33,253,221 stores as
        // L 89.5 a -56 b 1, which is 18 or 43 red depending on rounding). vips reads L
        // of these files differently from the TIFF formula (mean difference 7), so the
        // reference is the sRGB image the file was made from, with a wider bound.
        Case {
            reference: Some("small.tif"),
            ..case("lab8.tif", page, Post::None, 4.0)
        },
        case("lab16.tif", page, Post::Lab, 2.0),
        // vips writes this file's reduced levels without SampleFormat and then reads
        // them as integers; the reference is the sRGB pyramid it was made from.
        Case {
            reference: Some("small.tif"),
            ..case("labf.tif", page, Post::None, 2.0)
        },
        case("fiveband.tif", page, Post::FirstThree, 0.0),
        case("big_bigtiff.tif", page, Post::None, 2.0),
        case("big_subifd.tif", "subifd={k1}", Post::None, 2.0),
        case("small.jp2", page, Post::None, 2.0),
        case("photo.jpg", "shrink={s}", Post::None, 2.0),
        Case {
            reference: Some("small_none.tif"),
            ..case("planar.tif", page, Post::None, 0.0)
        },
    ] {
        check(&s, &dir, &c);
    }
}

#[test]
fn stack_pages_are_views() {
    let s = Server::start(&[("IIIF_DELIMITER", "::"), ("URI_MAP", "iiif=>IIIF")], 1);
    let obj = s
        .get("FIF=stack.tif&OBJ=Horizontal-views&OBJ=Resolution-number")
        .text();
    assert!(obj.contains("Horizontal-views:0 1 2"), "{obj}");
    assert!(obj.contains("Resolution-number:3"), "{obj}");
    for (page, rgb) in [(0, [255, 0, 0]), (1, [0, 255, 0]), (2, [0, 0, 255])] {
        for r in 0..3 {
            let reply = s.get(&format!("FIF=stack.tif&SDS={page},90&PTL={r},0"));
            assert_eq!(reply.status, 200, "{}", reply.text());
            let (_, _, c, px) = png_pixels(&reply.body);
            assert_eq!(&px[..c], &rgb, "page {page} r{r}");
        }
        let reply = s.get_path(&format!(
            "/iiif/stack.tif::{page}/0,0,64,64/64,/0/default.png"
        ));
        assert_eq!(reply.status, 200, "{}", reply.text());
        let (_, _, c, px) = png_pixels(&reply.body);
        assert_eq!(&px[..c], &rgb, "IIIF page {page}");
    }
    let r = s.get("FIF=stack.tif&OBJ=stack");
    assert_eq!(r.content_type(), "application/json");
    let pages: serde_json::Value = serde_json::from_str(r.text().trim()).unwrap();
    let pages = pages.as_array().unwrap();
    assert_eq!(pages.len(), 3);
    assert_eq!(pages[2]["id"], 2);
    assert_eq!(pages[1]["scale"], 1);
    let r = s.get("FIF=small.tif&OBJ=stack");
    assert!(!r.text().contains("\"id\""), "not a stack: {}", r.text());
    let reply = s.get("FIF=stack.tif&SDS=7,90&JTL=0,0");
    assert_eq!(reply.status, 404);
    assert!(
        reply.text().contains("non-existent view"),
        "{}",
        reply.text()
    );
    // Every page answers SPECTRA: one wavelength per view.
    let t = s.get("FIF=stack.tif&SPECTRA=2,0,5,5").text();
    assert_eq!(t.matches("<point>").count(), 3, "{t}");
    assert!(t.contains("<wavelength>2</wavelength>"), "{t}");
    // PFL reads every page: the first channel of page 1 is 0 (green), of page 0 255.
    let p: serde_json::Value =
        serde_json::from_str(s.get("FIF=stack.tif&PFL=2:10,10-13,10").text().trim()).unwrap();
    let profile = p["profile"].as_object().expect("one band per page");
    assert_eq!(profile.len(), 3);
    assert_eq!(
        profile["0"],
        serde_json::json!([255, 0, 0, 255, 0, 0, 255, 0, 0])
    );
    assert_eq!(
        profile["1"],
        serde_json::json!([0, 255, 0, 0, 255, 0, 0, 255, 0])
    );
}

/// Mean absolute difference between two PNG tiles of the same size.
fn mad(a: &[u8], b: &[u8]) -> f64 {
    let (_, _, _, pa) = png_pixels(a);
    let (_, _, _, pb) = png_pixels(b);
    assert_eq!(pa.len(), pb.len());
    pa.iter()
        .zip(&pb)
        .map(|(x, y)| (*x as i32 - *y as i32).unsigned_abs() as f64)
        .sum::<f64>()
        / pa.len() as f64
}

#[test]
fn jpeg2000_quality_layers_follow_lyr_and_max_layers() {
    let tile = |s: &Server, q: &str| {
        let r = s.get(&format!("FIF=layers.jp2&{q}PTL=2,0"));
        assert_eq!(r.status, 200, "{q}: {}", r.text());
        r.body
    };
    let s = Server::start(&[], 1);
    let source = {
        let r = s.get("FIF=small.tif&PTL=2,0");
        assert_eq!(r.status, 200);
        r.body
    };
    let all = tile(&s, "LYR=3&");
    let default = tile(&s, "");
    let one = tile(&s, "LYR=1&");
    // Three layers rebuild the lossless source; the default is half of them, rounded up.
    assert_eq!(mad(&all, &source), 0.0);
    assert_eq!(default, tile(&s, "LYR=2&"));
    let (d1, d2) = (mad(&one, &source), mad(&default, &source));
    assert!(d1 > d2 && d2 > 0.0, "1 layer {d1}, 2 layers {d2}");
    assert_eq!(
        tile(&s, "LYR=9&"),
        all,
        "more layers than stored decode all"
    );
    drop(s);
    // MAX_LAYERS=-1: all layers unless LYR asks for fewer.
    let s = Server::start(&[("MAX_LAYERS", "-1")], 1);
    assert_eq!(tile(&s, ""), all);
    assert_eq!(tile(&s, "LYR=1&"), one);
    drop(s);
    // MAX_LAYERS=1 caps every request.
    let s = Server::start(&[("MAX_LAYERS", "1")], 1);
    assert_eq!(tile(&s, "LYR=3&"), one);
    assert_eq!(tile(&s, ""), one);
}

#[test]
fn image_sequences_by_filename_pattern() {
    let dir = TempDir::new("sequence");
    let fx = fixtures();
    for (src, name) in [
        ("small.tif", "FZ1_pyr_000_090.tif"),
        ("grey.tif", "FZ1_pyr_010_090.tif"),
        ("small_jpeg.tif", "FZ1_pyr_000_100.tif"),
        ("small.tif", "FZ2_pyr_000_090.tif"),
        ("small.jp2", "FZ2_pyr_000_090.jp2"),
    ] {
        std::fs::copy(fx.join(src), dir.0.join(name)).unwrap();
    }
    let prefix = format!("{}/", dir.0.display());
    let s = Server::start(&[("FILESYSTEM_PREFIX", prefix.as_str())], 1);
    let obj = s
        .get("FIF=FZ1&OBJ=Horizontal-views&OBJ=Vertical-views&OBJ=Max-size")
        .text();
    assert!(obj.contains("Horizontal-views:0 10"), "{obj}");
    assert!(obj.contains("Vertical-views:90 100"), "{obj}");
    assert!(obj.contains("Max-size:1001 777"), "{obj}");
    let tile = |q: &str| {
        let r = s.get(q);
        assert_eq!(r.status, 200, "{q}: {}", r.text());
        r.body
    };
    let plain = Server::start(&[], 1);
    let want = |q: &str| {
        let r = plain.get(q);
        assert_eq!(r.status, 200);
        r.body
    };
    assert_eq!(tile("FIF=FZ1&PTL=2,0"), want("FIF=small.tif&PTL=2,0"));
    assert_eq!(
        tile("FIF=FZ1&SDS=10,90&PTL=2,0"),
        want("FIF=grey.tif&PTL=2,0")
    );
    assert_eq!(
        tile("FIF=FZ1&SDS=0,100&PTL=1,0"),
        want("FIF=small_jpeg.tif&PTL=1,0")
    );
    let t = s.get("FIF=FZ1&SPECTRA=2,0,3,3").text();
    assert_eq!(t.matches("<point>").count(), 2, "{t}");
    let r = s.get("FIF=FZ1&SDS=20,90&JTL=0,0");
    assert_eq!(r.status, 404, "{}", r.text());
    let r = s.get("FIF=FZ9&OBJ=Max-size");
    assert_eq!(r.status, 404);
    assert!(
        r.text()
            .contains("FZ9 is neither a file nor part of an image sequence"),
        "{}",
        r.text()
    );
    assert!(!r.text().contains(&prefix), "no server path in bodies");
    let r = s.get("FIF=FZ2&OBJ=Max-size");
    assert_eq!(r.status, 404);
    assert!(
        r.text()
            .contains("multiple file extensions matching FZ2_pyr_000_090.*"),
        "{}",
        r.text()
    );
}

/// A server over scratch directory `dir`.
fn server_in(dir: &TempDir) -> Server {
    let prefix = format!("{}/", dir.0.display());
    Server::start(&[("FILESYSTEM_PREFIX", prefix.as_str())], 1)
}

/// A 16×16 greyscale TIFF of `bits`-bit samples in one tile, with extra tags.
fn grey_tiff(bits: u32, vals: &[u32], extra: &[(u16, Vec<u32>)]) -> Vec<u8> {
    one_tile_tiff(bits, 1, 1, vals, extra)
}

#[test]
fn tile_height_comes_from_tile_length() {
    // iipsrv reads level 0's tile height from TileWidth: wrong for 256×128 tiles.
    let dir = TempDir::new("tilelength");
    sh(&format!(
        "vips tiffsave {} {} --tile --pyramid --tile-width 256 --tile-height 128 --compression deflate",
        fixtures().join("small_none.tif").display(),
        dir.0.join("wide.tif").display()
    ));
    let s = server_in(&dir);
    let r = s.get("FIF=wide.tif&OBJ=Tile-size&OBJ=Max-size");
    assert_eq!(r.text(), "Tile-size:256 128\r\nMax-size:1001 777\r\n");
    let n = s
        .get("FIF=wide.tif&OBJ=Resolution-number")
        .text()
        .trim()
        .strip_prefix("Resolution-number:")
        .unwrap()
        .parse::<u32>()
        .unwrap();
    let full = n - 1;
    // 4 columns × 7 rows at full size; the last row is 777 − 6·128 = 9 high.
    let png = |q: &str| {
        let r = s.get(q);
        assert_eq!(r.status, 200, "{q}: {}", r.text());
        png_decode(&r.body)
    };
    let (w, h, _, _) = png(&format!("FIF=wide.tif&PTL={full},27"));
    assert_eq!((w, h), (233, 9));
    let (w, h, _, _) = png(&format!("FIF=wide.tif&PTL={full},4"));
    assert_eq!((w, h), (256, 128));
    assert_eq!(s.get(&format!("FIF=wide.tif&PTL={full},28")).status, 404);
    // Tile 4 (row 1, column 0) is the lower half of the square-tiled file's first tile.
    let (_, _, _, px) = png(&format!("FIF=wide.tif&PTL={full},4"));
    let plain = Server::start(&[], 1);
    let (_, _, _, square) = png_decode(&plain.get("FIF=small_none.tif&PTL=2,0").body);
    assert_eq!(px, square[128 * 256 * 3..]);
}

#[test]
fn unknown_bit_depths_are_404() {
    let dir = TempDir::new("depth");
    let vals: Vec<u32> = (0..256).map(|i| i % 8).collect();
    std::fs::write(dir.0.join("three.tif"), grey_tiff(3, &vals, &[])).unwrap();
    let vals: Vec<u32> = (0..256).map(|i| i * 1000).collect();
    std::fs::write(dir.0.join("twentyfour.tif"), grey_tiff(24, &vals, &[])).unwrap();
    let s = server_in(&dir);
    for file in ["three.tif", "twentyfour.tif"] {
        for q in [
            format!("FIF={file}&JTL=0,0"),
            format!("FIF={file}&PTL=0,0"),
            format!("FIF={file}&WID=8&CVT=png"),
        ] {
            let r = s.get(&q);
            assert_eq!(r.status, 404, "{q}: {}", r.text());
            assert_eq!(r.content_type(), "text/plain; charset=utf-8");
            assert!(
                r.text().contains("Unsupported bit depth"),
                "{q}: {}",
                r.text()
            );
            assert!(!r.text().contains(&dir.0.display().to_string()), "{q}");
        }
    }
}

#[test]
fn nine_to_sixteen_bit_ranges_are_sixteen_bit() {
    // iipsrv leaves the maximum at 0 for 10 and 14 bits and at 4095 for 12 bits
    // although the samples are widened to 16 bits.
    let dir = TempDir::new("range");
    for bits in [10u32, 12, 14] {
        let top = (1 << bits) - 1;
        let vals: Vec<u32> = (0..256).map(|i| i * top / 255).collect();
        std::fs::write(
            dir.0.join(format!("b{bits}.tif")),
            grey_tiff(bits, &vals, &[]),
        )
        .unwrap();
    }
    // SMinSampleValue 100 and SMaxSampleValue 4000 of 12-bit data widen as the samples do.
    let vals: Vec<u32> = (0..256).map(|i| 100 + i * 15).collect();
    let tags = [(340, vec![100]), (341, vec![4000])];
    std::fs::write(dir.0.join("tags.tif"), grey_tiff(12, &vals, &tags)).unwrap();
    let s = server_in(&dir);
    let obj = |file: &str| {
        s.get(&format!(
            "FIF={file}&OBJ=Bits-per-channel&OBJ=Min-Max-sample-values"
        ))
        .text()
    };
    for bits in [10, 12, 14] {
        assert_eq!(
            obj(&format!("b{bits}.tif")),
            format!("Bits-per-channel:{bits}\r\nMin-Max-sample-values: 0  65535\r\n")
        );
        // The brightest stored sample is the top of the 16-bit range.
        let (_, _, _, px) = png_decode(&s.get(&format!("FIF=b{bits}.tif&PTL=0,0")).body);
        assert_eq!((px[0], px[255]), (0, 255), "{bits}-bit");
    }
    // (100 << 4) | (100 >> 8) and (4000 << 4) | (4000 >> 8).
    assert_eq!(
        obj("tags.tif"),
        "Bits-per-channel:12\r\nMin-Max-sample-values: 1600  64015\r\n"
    );
}

#[test]
fn classic_stack_page_i_is_directory_i() {
    // Three same-sized tiled pages in one chain of directories (no SubIFDs): iipsrv
    // serves page 0 whatever page is asked for.
    let dir = TempDir::new("classic-stack");
    let v = |n: &str| dir.0.join(n).display().to_string();
    sh(&format!("vips black {} 300 200 --bands 3", v("k.v")));
    for (name, rgb) in [("r.v", "255 0 0"), ("g.v", "0 255 0"), ("b.v", "0 0 255")] {
        sh(&format!(
            "vips linear {} {} '1 1 1' '{rgb}' --uchar",
            v("k.v"),
            v(name)
        ));
    }
    sh(&format!(
        "vips join {} {} {} vertical",
        v("r.v"),
        v("g.v"),
        v("rg.v")
    ));
    sh(&format!(
        "vips join {} {} {} vertical",
        v("rg.v"),
        v("b.v"),
        v("rgb.v")
    ));
    sh(&format!(
        "vips tiffsave {} {} --page-height 200 --tile --tile-width 256 --tile-height 256",
        v("rgb.v"),
        v("pages.tif")
    ));
    let s = server_in(&dir);
    let r = s.get("FIF=pages.tif&OBJ=Horizontal-views&OBJ=Max-size&OBJ=Resolution-number");
    assert_eq!(
        r.text(),
        "Horizontal-views:0 1 2\r\nMax-size:300 200\r\nResolution-number:1\r\n"
    );
    for (page, rgb) in [(0, [255, 0, 0]), (1, [0, 255, 0]), (2, [0, 0, 255])] {
        for tile in [0, 1] {
            let r = s.get(&format!("FIF=pages.tif&SDS={page},90&PTL=0,{tile}"));
            assert_eq!(r.status, 200, "{}", r.text());
            let (_, _, _, px) = png_decode(&r.body);
            assert_eq!(&px[..3], &rgb, "page {page} tile {tile}");
            assert!(px.chunks(3).all(|p| p == rgb), "page {page} tile {tile}");
        }
    }
    assert_eq!(s.get("FIF=pages.tif&SDS=3,90&PTL=0,0").status, 404);
}

#[test]
fn twelve_bit_jpeg2000_range_is_sixteen_bit() {
    // iipsrv's OpenJPEG reader gives 9–15-bit files a maximum of 2^bpc (+255).
    let dir = TempDir::new("jp2-12");
    let (w, h) = (300usize, 200usize);
    let mut pgm = format!("P5\n{w} {h}\n4095\n").into_bytes();
    for _y in 0..h {
        for x in 0..w {
            pgm.extend(((x * 4095 / (w - 1)) as u16).to_be_bytes());
        }
    }
    let src = dir.0.join("a.pgm");
    std::fs::write(&src, pgm).unwrap();
    sh(&format!(
        "opj_compress -i {} -o {} -n 2 >/dev/null",
        src.display(),
        dir.0.join("deep.jp2").display()
    ));
    let s = server_in(&dir);
    let r = s.get("FIF=deep.jp2&OBJ=Bits-per-channel&OBJ=Min-Max-sample-values");
    assert_eq!(
        r.text(),
        "Bits-per-channel:12\r\nMin-Max-sample-values: 0  65535\r\n"
    );
    let (tw, _, _, px) = png_decode(&s.get("FIF=deep.jp2&PTL=1,1").body);
    // Column 299 is tile 1's column 43, at the 16-bit top; column 256 is near 3/4.
    assert_eq!(px[43], 255);
    assert_eq!(tw, 44);
    assert!((px[0] as i32 - 218).abs() <= 1, "{}", px[0]);
}
