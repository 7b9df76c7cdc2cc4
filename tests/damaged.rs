//! A corpus of damaged images (truncated, looping or out-of-range directories,
//! absurd sizes, wrong byte counts, corrupt JPEG/deflate/LZW/zstd/JPEG2000 streams)
//! served by real workers: every request is answered, damaged data with a 4xx/5xx,
//! no worker dies and no worker's peak RSS reaches 256 MB.

mod common;
use common::*;
use std::path::Path;

/// Tags of a 512×512 RGB image in four 256×256 deflate tiles stored at `offsets`.
fn base_tags(offsets: Vec<u32>, counts: Vec<u32>) -> Vec<(u16, Vec<u32>)> {
    vec![
        (256, vec![512]),
        (257, vec![512]),
        (258, vec![8, 8, 8]),
        (259, vec![8]),
        (262, vec![2]),
        (277, vec![3]),
        (322, vec![256]),
        (323, vec![256]),
        (324, offsets),
        (325, counts),
    ]
}

fn set(tags: &mut Vec<(u16, Vec<u32>)>, tag: u16, vals: Vec<u32>) {
    tags.retain(|t| t.0 != tag);
    tags.push((tag, vals));
}

fn deflate_tile() -> Vec<u8> {
    let raw = vec![128u8; 256 * 256 * 3];
    let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::default());
    let mut z = vec![0u8; c.zlib_compress_bound(raw.len())];
    let n = c.zlib_compress(&raw, &mut z).unwrap();
    z.truncate(n);
    z
}

fn patch_after(data: &mut [u8], marker: &[u8], skip: usize, bytes: &[u8]) {
    let at = data
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("marker present")
        + marker.len()
        + skip;
    data[at..at + bytes.len()].copy_from_slice(bytes);
}

/// Writes the damaged corpus; returns `(name, every request must fail)`.
fn make_corpus(dir: &Path) -> Vec<(String, bool)> {
    let fx = fixtures();
    let mut files: Vec<(String, Vec<u8>, bool)> = Vec::new();
    for src in [
        "small.tif",
        "small_jpeg.tif",
        "big_bigtiff.tif",
        "small.jp2",
        "photo.jpg",
    ] {
        let data = std::fs::read(fx.join(src)).unwrap();
        for (i, cut) in [12usize, 300, 4000, data.len() / 2, data.len() - 100]
            .into_iter()
            .enumerate()
        {
            // A cut past the header may leave some tiles readable.
            files.push((format!("trunc{i}-{src}"), data[..cut].to_vec(), cut < 300));
        }
    }
    let tile = deflate_tile();
    let n = tile.len() as u32;
    let good = || base_tags(vec![8; 4], vec![n; 4]);
    files.push(("good.tif".into(), tiff(&good(), &tile), false));
    let mut edits: Vec<(&str, u16, Vec<u32>)> = vec![
        ("offsets-past-eof", 324, vec![1 << 30; 4]),
        ("counts-huge", 325, vec![u32::MAX; 4]),
        ("counts-zero", 325, vec![0; 4]),
        ("counts-short", 325, vec![n / 3; 4]),
        ("tile-width-0", 322, vec![0]),
        ("tile-width-2^31", 322, vec![1 << 31]),
        ("tile-height-65536", 323, vec![65536]),
        ("width-2^31", 256, vec![1 << 31]),
        ("pixels-2^40", 256, vec![1 << 20]),
        ("bits-3", 258, vec![3, 3, 3]),
        ("bits-0", 258, vec![0, 0, 0]),
        ("samples-0", 277, vec![0]),
        ("samples-65535", 277, vec![65535]),
        ("palette-without-map", 262, vec![3]),
        ("compression-jpeg", 259, vec![7]),
        ("compression-lzw", 259, vec![5]),
        ("compression-zstd", 259, vec![50000]),
        ("compression-webp", 259, vec![50001]),
        ("compression-unknown", 259, vec![34712]),
        ("too-few-offsets", 324, vec![8]),
    ];
    edits.push(("pixels-2^40-tall", 257, vec![1 << 20]));
    for (name, tag, vals) in edits {
        let mut t = good();
        set(&mut t, tag, vals);
        if name == "pixels-2^40" {
            set(&mut t, 257, vec![1 << 20]);
        }
        files.push((format!("{name}.tif"), tiff(&t, &tile), true));
    }
    // Corrupt deflate stream.
    let mut bad = tile.clone();
    for b in bad.iter_mut().skip(2).step_by(3) {
        *b ^= 0x5A;
    }
    files.push(("corrupt-deflate.tif".into(), tiff(&good(), &bad), true));
    // IFD loop: the next-IFD pointer of IFD 0 points to itself.
    let mut looped = tiff(&good(), &tile);
    let ifd = u32::from_le_bytes(looped[4..8].try_into().unwrap()) as usize;
    let count = u16::from_le_bytes([looped[ifd], looped[ifd + 1]]) as usize;
    let next = ifd + 2 + 12 * count;
    looped[next..next + 4].copy_from_slice(&(ifd as u32).to_le_bytes());
    files.push(("ifd-loop.tif".into(), looped, false));
    // IFD entry count far past the end of the file.
    let mut entries = tiff(&good(), &tile);
    entries[ifd..ifd + 2].copy_from_slice(&0xFFFFu16.to_le_bytes());
    files.push(("ifd-entries-huge.tif".into(), entries, true));
    // First IFD beyond the file.
    let mut first = tiff(&good(), &tile);
    first[4..8].copy_from_slice(&0x7FFF_FFF0u32.to_le_bytes());
    files.push(("ifd-past-eof.tif".into(), first, true));
    // JPEG2000: absurd image size in SIZ, garbage codestream after the header.
    let jp2 = std::fs::read(fx.join("small.jp2")).unwrap();
    let mut huge = jp2.clone();
    patch_after(
        &mut huge,
        &[0xFF, 0x51],
        4,
        &[0xFF, 0xFF, 0xFF, 0xF0, 0xFF, 0xFF, 0xFF, 0xF0],
    );
    files.push(("siz-huge.jp2".into(), huge, true));
    let mut garbage = jp2.clone();
    let sod = garbage.windows(2).position(|w| w == [0xFF, 0x93]).unwrap() + 2;
    for b in garbage[sod..].iter_mut().step_by(2) {
        *b = 0xFF;
    }
    files.push(("corrupt-codestream.jp2".into(), garbage, true));
    // JPEG: a 65535×65535 frame header, then garbage scan data.
    let jpg = std::fs::read(fx.join("photo.jpg")).unwrap();
    let mut big = jpg.clone();
    patch_after(&mut big, &[0xFF, 0xC0], 3, &[0xFF, 0xFF, 0xFF, 0xFF]);
    files.push(("sof-huge.jpg".into(), big, true));
    let mut scan = jpg.clone();
    let sos = scan.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap() + 20;
    let end = scan.len() - 2;
    for b in scan[sos..end].iter_mut().step_by(7) {
        *b = 0xFF;
    }
    files.push(("corrupt-scan.jpg".into(), scan, true));
    files.push(("empty.tif".into(), Vec::new(), true));
    files.push((
        "random.tif".into(),
        (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect(),
        true,
    ));

    let mut out = Vec::new();
    for (name, data, all_fail) in files {
        std::fs::write(dir.join(&name), data).unwrap();
        out.push((name, all_fail));
    }
    out
}

/// Peak resident set of a process, in kB.
fn peak_rss_kb(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

/// The workers that started are all still there, none peaked at 256 MB, and no request
/// panicked (a 500 from a caught panic would pass any status check).
fn assert_unharmed(s: &Server, mport: u16, workers: &[i32]) {
    assert_eq!(children(s.pid()), workers, "a worker died");
    for w in workers {
        let kb = peak_rss_kb(*w);
        eprintln!("worker {w}: peak RSS {} MB", kb / 1024);
        assert!(kb < 256 * 1024, "worker {w} peaked at {kb} kB");
    }
    let text = metrics(mport);
    assert_eq!(
        metric(&text, "tessera_request_panics_total "),
        0.0,
        "a request panicked:\n{}",
        s.log()
    );
    assert_eq!(metric(&text, "tessera_worker_restarts_total "), 0.0);
}

#[test]
fn damaged_files_fail_cleanly_within_bounded_memory() {
    let dir = TempDir::new("damaged");
    let corpus = make_corpus(&dir.0);
    assert!(corpus.len() >= 30, "{} damaged files", corpus.len());
    let prefix = format!("{}/", dir.0.display());
    let (s, mport) = Server::start_metered(&[("FILESYSTEM_PREFIX", prefix.as_str())], 2);
    let workers = started_workers(&s, 2);

    let good = s.get("FIF=good.tif&JTL=0,3");
    assert_eq!(good.status, 200, "the undamaged control file serves");
    let mut failures = 0;
    for (name, all_fail) in &corpus {
        let mut errors = 0;
        let queries = [
            format!("FIF={name}&OBJ=IIP,1.0&OBJ=Max-size&OBJ=Resolution-number"),
            format!("FIF={name}&JTL=0,0"),
            format!("FIF={name}&JTL=9,0"),
            format!("FIF={name}&JTL=1,3"),
            format!("FIF={name}&WID=300&CVT=jpeg"),
            format!("FIF={name}&RGN=0.5,0.5,0.5,0.5&CVT=png"),
        ];
        for q in &queries {
            let r = s.get(q);
            assert!(
                r.status == 200 || (400..600).contains(&r.status),
                "{q}: status {}",
                r.status
            );
            if r.status != 200 {
                errors += 1;
                assert!(!r.text().contains(&prefix), "{q}: body shows a server path");
            }
        }
        // OBJ=IIP answers for any file it can open; everything needing pixels must fail.
        if *all_fail {
            assert!(errors >= queries.len() - 1, "{name}: {errors} errors");
        } else {
            assert!(errors >= 1, "{name}: no request failed");
        }
        failures += errors;
    }
    eprintln!("{} damaged files, {failures} error responses", corpus.len());
    assert_unharmed(&s, mport, &workers);
}

#[test]
fn a_file_truncated_while_served_fails_requests_not_workers() {
    let dir = TempDir::new("truncated");
    let served = dir.0.join("served.tif");
    std::fs::copy(fixtures().join("big.tif"), &served).unwrap();
    let prefix = format!("{}/", dir.0.display());
    let (s, mport) = Server::start_metered(&[("FILESYSTEM_PREFIX", prefix.as_str())], 2);
    let workers = started_workers(&s, 2);
    assert_eq!(s.get("FIF=served.tif&JTL=0,0").status, 200);
    let start = std::time::Instant::now();
    let run = std::time::Duration::from_secs(5);
    let counts = std::thread::scope(|sc| {
        let clients: Vec<_> = (0..3u32)
            .map(|c| {
                let s = &s;
                sc.spawn(move || {
                    let (mut ok, mut failed) = (0, 0);
                    let mut i = c;
                    while start.elapsed() < run {
                        i += 1;
                        let q = match i % 4 {
                            0 => format!("FIF=served.tif&JTL=5,{}", (i * 7) % 240),
                            1 => format!("FIF=served.tif&JTL=4,{}", (i * 3) % 60),
                            // Exports of a size not asked before: read from the file,
                            // not from a cache.
                            2 => format!("FIF=served.tif&WID={}&CVT=jpeg", 600 + i),
                            _ => format!(
                                "FIF=served.tif&RGN=0.{},0.2,0.3,0.3&WID={}&CVT=png",
                                i % 7,
                                300 + i
                            ),
                        };
                        let r = s.get(&q);
                        if r.status == 200 {
                            // A valid image, read before the truncation.
                            let ct = r.content_type().to_owned();
                            let img = if ct == "image/png" {
                                png_decode(&r.body).0 as usize
                            } else {
                                jpeg_dims(&r.body).0
                            };
                            assert!(img > 0, "{q}: {ct}");
                            ok += 1;
                        } else {
                            assert!((400..600).contains(&r.status), "{q}: {}", r.status);
                            failed += 1;
                        }
                    }
                    (ok, failed)
                })
            })
            .collect();
        // Replaced in place as `cp -p` or `rsync --inplace -t` do it: truncated first,
        // and with its modification time kept, so the workers' opened maps stay in use.
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&served)
            .unwrap();
        let mtime = f.metadata().unwrap().modified().unwrap();
        f.set_len(4096).unwrap();
        f.set_modified(mtime).unwrap();
        clients
            .into_iter()
            .map(|c| c.join().unwrap())
            .collect::<Vec<_>>()
    });
    assert_eq!(children(s.pid()), workers, "a worker died");
    assert_eq!(
        metric(&metrics(mport), "tessera_worker_restarts_total "),
        0.0,
        "{}",
        s.log()
    );
    let failed: u32 = counts.iter().map(|c| c.1).sum();
    assert!(
        failed > 0,
        "the truncated file failed no request: {counts:?}"
    );
    let absorbed = s.log().matches("changed while it was read").count();
    let faults = metric(&metrics(mport), "tessera_image_file_faults_total ");
    assert_eq!(faults as usize, absorbed, "faults counted and logged");
    assert_eq!(
        metric(&metrics(mport), "tessera_request_panics_total "),
        0.0
    );
    eprintln!(
        "answers (ok, failed) per client: {counts:?}; {absorbed} reads past the new end absorbed"
    );
    // A good file in its place is served again.
    std::fs::copy(fixtures().join("big.tif"), &served).unwrap();
    let r = s.get("FIF=served.tif&JTL=5,17");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(jpeg_dims(&r.body).0 > 0);
    assert_eq!(s.get("FIF=served.tif&WID=400&CVT=jpeg").status, 200);
    assert_eq!(children(s.pid()), workers);
    assert_eq!(
        metric(&metrics(mport), "tessera_request_panics_total "),
        0.0
    );
}

/// A `w`×`h` RGB JPEG of a busy pattern (costly to decode, as photographs are), or of
/// a smooth one (whose scans are small, so thousands of them fit in a few megabytes).
fn busy_jpeg(w: usize, h: usize, progressive: bool) -> Vec<u8> {
    let px: Vec<u8> = (0..w * h * 3).map(|i| (i * 31 % 251) as u8).collect();
    jpeg_of(&px, w, h, progressive)
}

fn smooth_jpeg(w: usize, h: usize) -> Vec<u8> {
    let px: Vec<u8> = (0..w * h * 3)
        .map(|i| ((i / 3 % w + i / 3 / w) / 32) as u8)
        .collect();
    jpeg_of(&px, w, h, true)
}

fn jpeg_of(px: &[u8], w: usize, h: usize, progressive: bool) -> Vec<u8> {
    let mut c = turbojpeg::Compressor::new().unwrap();
    c.set_quality(90).unwrap();
    c.set_progressive(progressive).unwrap();
    let img = turbojpeg::Image {
        pixels: px,
        width: w,
        pitch: w * 3,
        height: h,
        format: turbojpeg::PixelFormat::RGB,
    };
    c.compress_to_vec(img).unwrap()
}

/// `j` (a progressive JPEG) with its last scan repeated `n` more times: still a legal
/// file, and each repeat is one more pass over the whole image.
fn repeat_last_scan(j: &[u8], n: usize) -> Vec<u8> {
    let last_sos = j.windows(2).rposition(|w| w == [0xFF, 0xDA]).unwrap();
    let eoi = j.len() - 2;
    let mut out = j[..eoi].to_vec();
    for _ in 0..n {
        out.extend_from_slice(&j[last_sos..eoi]);
    }
    out.extend_from_slice(&j[eoi..]);
    out
}

/// A 512×512 tiled TIFF whose four 256×256 tiles are all `tile`, compressed with
/// `compression`.
fn tiff_of_tiles(tile: &[u8], compression: u32) -> Vec<u8> {
    let n = tile.len() as u32;
    let mut t = base_tags(vec![8; 4], vec![n; 4]);
    set(&mut t, 259, vec![compression]);
    tiff(&t, tile)
}

/// Files that are legal or nearly so but ask a decoder for far more than the
/// container promised: `(name, bytes)`.
fn hostile_corpus() -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    // JPEG tiles whose frame header disagrees with the TIFF's 256×256 tiles.
    let tile = busy_jpeg(256, 256, false);
    let sof = tile.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    for (name, dims) in [
        ("sof-65500", [0xFF, 0xDC, 0xFF, 0xDC]),
        ("sof-16", [0, 16, 0, 16]),
    ] {
        let mut t = tile.clone();
        t[sof + 5..sof + 9].copy_from_slice(&dims);
        files.push((format!("{name}-in-tiff.tif"), tiff_of_tiles(&t, 7)));
    }
    // Progressive JPEGs with hundreds and thousands of scans: as a tile and as a file.
    let prog = smooth_jpeg(256, 256);
    let tile = repeat_last_scan(&prog, 3000);
    files.push(("scans-tile.tif".into(), tiff_of_tiles(&tile, 7)));
    // Fewer scans than libjpeg-turbo's limit, but each a pass over 4 megapixels.
    let big = smooth_jpeg(2048, 2048);
    for n in [100, 400] {
        files.push((format!("scans-{n}.jpg"), repeat_last_scan(&big, n)));
    }
    let small = smooth_jpeg(512, 512);
    files.push(("scans-5000.jpg".into(), repeat_last_scan(&small, 5000)));
    // Tiles that inflate far past the 192 kB a 256×256 RGB tile holds.
    let zeros = vec![0u8; 256 << 20];
    let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::best());
    let mut z = vec![0u8; c.zlib_compress_bound(zeros.len())];
    let n = c.zlib_compress(&zeros, &mut z).unwrap();
    z.truncate(n);
    files.push(("deflate-bomb.tif".into(), tiff_of_tiles(&z, 8)));
    let lzw = weezl::encode::Encoder::with_tiff_size_switch(weezl::BitOrder::Msb, 8)
        .encode(&zeros[..64 << 20])
        .unwrap();
    files.push(("lzw-bomb.tif".into(), tiff_of_tiles(&lzw, 5)));
    let zs = zstd::bulk::compress(&zeros, 19).unwrap();
    files.push(("zstd-bomb.tif".into(), tiff_of_tiles(&zs, 50000)));
    // A JPEG2000 codestream whose SIZ declares 2^31×2^31.
    let mut jp2 = std::fs::read(fixtures().join("small.jp2")).unwrap();
    patch_after(&mut jp2, &[0xFF, 0x51], 4, &[0x80, 0, 0, 0, 0x80, 0, 0, 0]);
    files.push(("siz-2^31.jp2".into(), jp2));
    files
}

#[test]
fn hostile_files_are_refused_quickly_within_bounded_memory() {
    let dir = TempDir::new("hostile");
    let corpus = hostile_corpus();
    for (name, data) in &corpus {
        eprintln!("{name}: {} kB", data.len() / 1024);
        std::fs::write(dir.0.join(name), data).unwrap();
    }
    let prefix = format!("{}/", dir.0.display());
    let (s, mport) = Server::start_metered(&[("FILESYSTEM_PREFIX", prefix.as_str())], 2);
    let workers = started_workers(&s, 2);
    for (name, _) in &corpus {
        for q in [
            format!("FIF={name}&JTL=0,0"),
            format!("FIF={name}&JTL=0,3"),
            format!("FIF={name}&WID=400&CVT=jpeg"),
        ] {
            let t = std::time::Instant::now();
            let r = s.get(&q);
            let took = t.elapsed();
            // A compression bomb may be cut at the tile's size, as libtiff does; a
            // JPEG that asks for more than its container promised may not.
            if name.contains("bomb") && r.status == 200 {
                let want = if q.contains("WID=400") { 400 } else { 256 };
                assert_eq!(jpeg_dims(&r.body).0, want, "{q}");
            } else {
                assert!((400..600).contains(&r.status), "{q}: status {}", r.status);
            }
            assert!(
                took < std::time::Duration::from_secs(2),
                "{q}: answered in {took:?}"
            );
            eprintln!(
                "{q}: {} in {} ms: {}",
                r.status,
                took.as_millis(),
                r.text().trim()
            );
        }
    }
    assert_unharmed(&s, mport, &workers);
}

#[test]
fn a_request_past_its_render_time_gets_503_and_the_worker_goes_on() {
    let slow = "FIF=big.tif&WID=5000&CVT=jpeg";
    let (s, mport) = Server::start_metered(
        &[("MAX_RENDER_TIME", "0.02"), ("MAX_IMAGE_CACHE_SIZE", "0")],
        1,
    );
    let workers = started_workers(&s, 1);
    let t = std::time::Instant::now();
    let r = s.get(slow);
    let took = t.elapsed();
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("Retry-After"), Some("5"));
    assert!(r.text().contains("MAX_RENDER_TIME"), "{}", r.text());
    assert!(
        took < std::time::Duration::from_secs(3),
        "stopped after {took:?}"
    );
    // The worker that gave up answers the next request.
    assert_eq!(children(s.pid()), workers, "the worker was replaced");
    let r = s.get("FIF=big.tif&JTL=3,0");
    assert_eq!(r.status, 200, "{}", r.text());
    let text = metrics(mport);
    assert_eq!(metric(&text, "tessera_request_panics_total "), 0.0);
    assert_eq!(metric(&text, "tessera_worker_restarts_total "), 0.0);
    // Without the budget, the same export is answered in full.
    let unlimited = Server::start(&[("MAX_RENDER_TIME", "0")], 1);
    let t = std::time::Instant::now();
    let r = unlimited.get(slow);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(jpeg_dims(&r.body).0, 5000);
    eprintln!("cut after {took:?}; in full {:?}", t.elapsed());
}

#[test]
fn a_request_over_its_memory_budget_gets_400_before_any_decoding() {
    let s = Server::start(&[("MAX_REQUEST_MEMORY", "16")], 1);
    let workers = started_workers(&s, 1);
    // 5000×3000 RGB output, held twice: about 90 MB.
    let r = s.get("FIF=big.tif&WID=5000&CVT=jpeg");
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("MAX_REQUEST_MEMORY"), "{}", r.text());
    assert!(r.text().len() < 300, "{}", r.text());
    assert!(!r.text().contains(&fixtures().display().to_string()));
    // Smaller exports of the same image fit, streamed in smaller bands.
    let r = s.get("FIF=big.tif&WID=1000&CVT=jpeg");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(jpeg_dims(&r.body).0, 1000);
    let r = s.get("FIF=big.tif&RGN=0.5,0.5,0.2,0.2&WID=800&CVT=png");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(children(s.pid()), workers);
    let kb = peak_rss_kb(workers[0]);
    eprintln!("worker peak RSS {} MB", kb / 1024);
    assert!(kb < 128 * 1024, "{kb} kB");
}
