//! Image processing commands on tiles and regions (facts T15–T18, S22, C26–C28, X7, X8 of
//! tests/facts.rs; the operations in docs/processing.md §4).

mod common;
use common::*;

fn png(bytes: &[u8]) -> (u32, u32, usize, Vec<u8>) {
    let (w, h, ct, px) = png_decode(bytes);
    (w, h, ct.samples(), px)
}

#[test]
fn tile_processing() {
    let s = Server::start(&[], 1);
    let (_, _, c, plain) = png(&s.get("FIF=small.tif&PTL=2,0").body);
    assert_eq!(c, 3);
    // S22 invert.
    let (_, _, _, inv) = png(&s.get("FIF=small.tif&INV&PTL=2,0").body);
    assert!(plain
        .iter()
        .zip(&inv)
        .all(|(a, b)| (255 - *a as i32 - *b as i32).abs() <= 1));
    // T16 channel swap by colour twist.
    let (_, _, _, tw) = png(&s
        .get("FIF=small.tif&CTW=%5B1,0,0;0,0,1;0,1,0%5D&PTL=2,0")
        .body);
    for (p, q) in plain.chunks(3).zip(tw.chunks(3)) {
        assert!(
            (p[0] as i32 - q[0] as i32).abs() <= 1
                && (p[1] as i32 - q[2] as i32).abs() <= 1
                && (p[2] as i32 - q[1] as i32).abs() <= 1
        );
    }
    // T15, T17, T18 channel counts.
    assert_eq!(
        jpeg_dims(&s.get("FIF=small.tif&CTW=[0.33,0.33,0.33]&JTL=2,0").body).2,
        1
    );
    assert_eq!(jpeg_dims(&s.get("FIF=grey.tif&CMP=JET&JTL=2,0").body).2, 3);
    assert_eq!(
        jpeg_dims(&s.get("FIF=small.tif&SHD=45,30&JTL=2,0").body).2,
        1
    );
    // X7: MINMAX on channel 0 only.
    let (_, _, _, mm) = png(&s.get("FIF=small.tif&MINMAX=0:0,128&PTL=2,0").body);
    for (p, q) in plain.chunks(3).zip(mm.chunks(3)) {
        let want = ((p[0] as f32) * 255.0 / 128.0).min(255.0) as i32;
        assert!((q[0] as i32 - want).abs() <= 2, "{} vs {want}", q[0]);
        assert!((q[1] as i32 - p[1] as i32).abs() <= 1);
    }
    // X8: MINMAX needs an image.
    let r = s.get("MINMAX=0:0,1");
    assert_eq!(r.status, 400);
    assert!(r.text().starts_with("Error/"), "{}", r.text());
    assert!(r.text().contains("1 3"));
    // Gamma 1 and contrast 1 change nothing; contrast 0 is black.
    assert_eq!(
        png(&s.get("FIF=small.tif&GAM=1&CNT=1&PTL=2,0").body).3,
        plain
    );
    let (_, _, _, black) = png(&s.get("FIF=small.tif&CNT=0&PTL=2,0").body);
    assert!(black.iter().all(|&v| v == 0));
}

#[test]
fn region_processing() {
    let s = Server::start(&[("URI_MAP", "iiif=>IIIF"), ("IIIF_EXTENSIONS", "1")], 1);
    let (w, h, _, plain) = png(&s.get("FIF=small.tif&WID=100&CVT=png").body);
    assert_eq!((w, h), (100, 78));
    // C26
    for q in ["CNT=st", "CNT=eq"] {
        let (w, h, _, _) = png(&s.get(&format!("FIF=small.tif&{q}&WID=100&CVT=png")).body);
        assert_eq!((w, h), (100, 78), "{q}");
    }
    // C27: a named kernel works, a malformed one is ignored.
    assert_eq!(
        png(&s.get("FIF=small.tif&CNV=sobel&WID=100&CVT=png").body).0,
        100
    );
    assert_eq!(
        png(&s.get("FIF=small.tif&CNV=[1,2,3]&WID=100&CVT=png").body).3,
        plain
    );
    // C28: the logarithm brightens.
    let (_, _, _, log) = png(&s.get("FIF=small.tif&GAM=log&WID=100&CVT=png").body);
    assert!(log.iter().zip(&plain).all(|(l, p)| l >= p));
    // I43 with IIIF_EXTENSIONS=1.
    let r = s.request(
        &[
            ("REQUEST_METHOD", "GET"),
            ("REQUEST_URI", "/iiif/small.tif/full/100,/0/negative.png"),
        ],
        b"",
    );
    assert_eq!(r.status, 200);
    let (_, _, _, neg) = png(&r.body);
    // Inverted before resampling, so rounding may differ by 2.
    assert!(neg
        .iter()
        .zip(&plain)
        .all(|(n, p)| (255 - *p as i32 - *n as i32).abs() <= 2));
    // 16-bit data with an explicit range.
    let r = s.get("FIF=grey16.tif&MINMAX=-:0,32768&WID=100&CVT=png");
    assert_eq!(r.status, 200);
}

#[test]
fn float_tiles_map_zero_to_one_onto_8_bits() {
    let s = Server::start(&[], 1);
    let r = s.get("FIF=float.tif&OBJ=Bits-per-channel&OBJ=Min-Max-sample-values");
    assert_eq!(
        r.text(),
        "Bits-per-channel:32\r\nMin-Max-sample-values: 0  1\r\n"
    );
    let (w, h, c, f) = png(&s.get("FIF=float.tif&PTL=0,5").body);
    let (_, _, _, g) = png(&s.get("FIF=grey.tif&PTL=2,5").body);
    assert_eq!((w, h, c), (256, 256, 1));
    assert!(f
        .iter()
        .zip(&g)
        .all(|(a, b)| (*a as i32 - *b as i32).abs() <= 1));
}

#[test]
fn processing_is_applied_to_passed_through_jpeg_tiles() {
    let s = Server::start(&[], 1);
    let plain = s.get("FIF=big.tif&JTL=5,0").body;
    let inv = s.get("FIF=big.tif&INV&JTL=5,0").body;
    assert_ne!(plain, inv);
    let a = turbojpeg::decompress(&plain, turbojpeg::PixelFormat::RGB).unwrap();
    let b = turbojpeg::decompress(&inv, turbojpeg::PixelFormat::RGB).unwrap();
    let mean_sum: f64 = a
        .pixels
        .iter()
        .zip(&b.pixels)
        .map(|(x, y)| *x as f64 + *y as f64)
        .sum::<f64>()
        / a.pixels.len() as f64;
    assert!(
        (mean_sum - 255.0).abs() < 6.0,
        "x + inverted x ≈ 255, got {mean_sum}"
    );
}

#[test]
fn watermark_is_added_to_tiles_and_regions() {
    let dir = TempDir::new("watermark");
    let wm = dir.0.join("wm.tif");
    // A 48x40 opaque white watermark in a striped RGBA TIFF.
    sh(&format!(
        "set -e; vips black {0}/b.v 48 40 --bands 4; vips linear {0}/b.v {0}/w.v 1 255 --uchar; vips tiffsave {0}/w.v {1}",
        dir.0.display(),
        wm.display()
    ));
    let plain = Server::start(&[], 1);
    let wm_env = wm.display().to_string();
    let marked = Server::start(&[("WATERMARK", wm_env.as_str())], 1);
    let never = Server::start(
        &[
            ("WATERMARK", wm_env.as_str()),
            ("WATERMARK_PROBABILITY", "0"),
        ],
        1,
    );
    for q in ["FIF=small.tif&PTL=2,0", "FIF=small.tif&WID=300&CVT=png"] {
        let (w, h, c, base) = png(&plain.get(q).body);
        let (_, _, _, with) = png(&marked.get(q).body);
        let (_, _, _, without) = png(&never.get(q).body);
        assert_eq!(without, base, "{q}: probability 0 leaves the image alone");
        assert!(with.iter().zip(&base).all(|(a, b)| a >= b), "{q}: additive");
        let white = (0..(w * h) as usize)
            .filter(|&i| with[i * c..i * c + c].iter().all(|&v| v == 255))
            .count();
        assert!(white >= 48 * 40, "{q}: {white} white pixels");
        // A 300-px region is one block (smaller than 2 tiles): exactly one watermark.
        assert!(white < 2 * 48 * 40 + 100, "{q}: {white} white pixels");
    }
}

/// Samples of a one-channel 8-bit raster `w` wide at `(x, y)`.
fn at(px: &[u8], w: usize, x: usize, y: usize) -> f64 {
    px[y * w + x] as f64
}

#[test]
fn whole_float_exports_resample_the_whole_level() {
    // float_pyr.tif's smallest level is 251×195, one more each way than 1001/4 × 777/4:
    // the output is made from all of it, as a tile of it shows it.
    let near = Server::start(&[("INTERPOLATION", "0")], 1);
    let (lw, lh, c, level) = png(&near.get("FIF=float_pyr.tif&PTL=0,0").body);
    assert_eq!((lw, lh, c), (251, 195, 1));
    let (lw, lh) = (lw as usize, lh as usize);
    let (w, h, _, out) = png(&near.get("FIF=float_pyr.tif&WID=200&CVT=png").body);
    assert_eq!((w, h), (200, 155));
    let (w, h) = (w as usize, h as usize);
    let (sx, sy) = (lw as f64 / w as f64, lh as f64 / h as f64);
    let mut wrong = 0;
    for y in 0..h {
        for x in 0..w {
            let want = at(
                &level,
                lw,
                (x as f64 * sx) as usize,
                (y as f64 * sy) as usize,
            );
            wrong += usize::from(out[y * w + x] as f64 != want);
        }
    }
    assert_eq!(wrong, 0, "nearest-neighbour samples unlike the level's");

    let bilinear = Server::start(&[("INTERPOLATION", "1")], 1);
    let (_, _, _, out) = png(&bilinear.get("FIF=float_pyr.tif&WID=200&CVT=png").body);
    let mut worst = 0f64;
    for y in 0..h {
        let fy = y as f64 * sy;
        let (y0, d) = (fy.floor() as usize, fy - fy.floor());
        let y1 = (y0 + 1).min(lh - 1);
        for x in 0..w {
            let fx = x as f64 * sx;
            let (x0, b) = (fx.floor() as usize, fx - fx.floor());
            let x1 = (x0 + 1).min(lw - 1);
            let top = (1.0 - b) * at(&level, lw, x0, y0) + b * at(&level, lw, x1, y0);
            let bottom = (1.0 - b) * at(&level, lw, x0, y1) + b * at(&level, lw, x1, y1);
            let want = ((1.0 - d) * top + d * bottom).trunc();
            worst = worst.max((out[y * w + x] as f64 - want).abs());
        }
    }
    assert!(worst <= 1.0, "bilinear samples off by up to {worst}");
}

/// Otsu's threshold as iipsrv takes it: the first level with the strictly largest
/// between-class variance, levels up to it against the rest.
fn otsu_threshold(hist: &[u64; 256]) -> u8 {
    let total: u64 = hist.iter().sum();
    let sum: u64 = hist.iter().enumerate().map(|(i, &n)| i as u64 * n).sum();
    let (mut wb, mut sb, mut best, mut t_best) = (0u64, 0u64, 0f64, 0u8);
    for (t, &n) in hist.iter().enumerate() {
        wb += n;
        sb += t as u64 * n;
        if wb == 0 {
            continue;
        }
        if wb == total {
            break;
        }
        let wf = total - wb;
        let d = sb as f64 / wb as f64 - (sum - sb) as f64 / wf as f64;
        let between = wb as f64 * wf as f64 * d * d;
        if between > best {
            (best, t_best) = (between, t as u8);
        }
    }
    t_best
}

/// Rec. 601 luma of 8-bit RGB pixels, in 22-bit fixed point.
fn luma(rgb: &[u8]) -> Vec<u8> {
    rgb.chunks(3)
        .map(|p| {
            ((p[0] as u32 * 1254097 + p[1] as u32 * 2462056 + p[2] as u32 * 478151) >> 22) as u8
        })
        .collect()
}

#[test]
fn bitonal_outputs_split_at_the_image_histograms_threshold() {
    let s = Server::start(&[("URI_MAP", "iiif=>IIIF")], 1);
    // The image histogram: the smallest level's first tile (all of small.tif's 250×194
    // level), 256 bins of each pixel's rounded channel mean.
    let (_, _, c, first) = png(&s.get("FIF=small.tif&PTL=0,0").body);
    assert_eq!(c, 3);
    let mut hist = [0u64; 256];
    for p in first.chunks(3) {
        let mean = (p[0] as f64 + p[1] as f64 + p[2] as f64) / 3.0;
        hist[mean.round() as usize] += 1;
    }
    let t = otsu_threshold(&hist);
    let split = |plain: &[u8]| -> Vec<u8> {
        luma(plain)
            .into_iter()
            .map(|v| if v < t { 0 } else { 255 })
            .collect()
    };
    let iiif = |path: &str| s.request(&[("REQUEST_METHOD", "GET"), ("REQUEST_URI", path)], b"");
    let cases = [
        // a full-resolution tile, a smaller level's tile, a region export, IIIF
        ("FIF=small.tif&PTL=2,6", "FIF=small.tif&COL=binary&PTL=2,6"),
        ("FIF=small.tif&PTL=1,0", "FIF=small.tif&COL=binary&PTL=1,0"),
        (
            "FIF=small.tif&RGN=0.1,0.2,0.6,0.5&WID=300&CVT=png",
            "FIF=small.tif&RGN=0.1,0.2,0.6,0.5&WID=300&COL=binary&CVT=png",
        ),
    ];
    let mut outputs: Vec<(Vec<u8>, Vec<u8>)> = cases
        .iter()
        .map(|(plain, bitonal)| (png(&s.get(plain).body).3, png(&s.get(bitonal).body).3))
        .collect();
    let plain = iiif("/iiif/small.tif/full/400,/0/default.png");
    let bitonal = iiif("/iiif/small.tif/full/400,/0/bitonal.png");
    assert_eq!((plain.status, bitonal.status), (200, 200));
    outputs.push((png(&plain.body).3, png(&bitonal.body).3));
    for (i, (plain, bitonal)) in outputs.iter().enumerate() {
        let want = split(plain);
        assert_eq!(bitonal.len(), want.len(), "case {i}: one channel");
        let wrong = bitonal.iter().zip(&want).filter(|(a, b)| a != b).count();
        assert_eq!(wrong, 0, "case {i}: samples unlike a split at {t}");
        // Both sides occupied: the threshold is inside the image's range.
        assert!(want.contains(&0) && want.contains(&255), "case {i}");
    }
    // A bilevel source is left as it is (its own threshold would be its black level,
    // and everything at or above it would turn white).
    let (_, _, _, plain) = png(&s.get("FIF=bits1.tif&PTL=2,5").body);
    let (_, _, _, bitonal) = png(&s.get("FIF=bits1.tif&COL=binary&PTL=2,5").body);
    assert!(plain.contains(&0) && plain.contains(&255));
    assert_eq!(bitonal, plain);
}

#[test]
fn float_samples_scale_from_the_images_range() {
    let s = Server::start(&[], 1);
    let r = s.get("FIF=float_range.tif&OBJ=Min-Max-sample-values");
    assert_eq!(r.text(), "Min-Max-sample-values: 0  1000\r\n");
    // float_range.tif is grey.tif's full level times 1000/255: scaled back from
    // 0..1000, tiles and exports are grey.tif's within rounding.
    for (float, grey) in [
        ("FIF=float_range.tif&PTL=0,5", "FIF=grey.tif&PTL=2,5"),
        (
            "FIF=float_range.tif&RGN=0.2,0.3,0.25,0.25&CVT=png",
            "FIF=grey.tif&RGN=0.2,0.3,0.25,0.25&CVT=png",
        ),
    ] {
        let (w, h, c, f) = png(&s.get(float).body);
        let (gw, gh, _, g) = png(&s.get(grey).body);
        assert_eq!((w, h, c), (gw, gh, 1), "{float}");
        let worst = f
            .iter()
            .zip(&g)
            .map(|(a, b)| (*a as i32 - *b as i32).abs())
            .max();
        assert!(worst <= Some(1), "{float}: off by {worst:?}");
        assert!(g.iter().any(|&v| v > 100), "{grey}: bright enough to tell");
    }
}
