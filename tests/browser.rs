//! OpenSeadragon 6 in headless Chromium loads tiles from tessera through all four of
//! its tile sources for this server (IIP, IIIF, DeepZoom, Zoomify): a screenshot at
//! two zoom levels must show image content in every viewer.
//!
//! Needs Debian's `chromium` and OpenSeadragon from npm under
//! `target/viewer/node_modules/openseadragon` (both installed by `tests/run-all.sh`).

mod common;
use common::*;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A screenshot of `url` by headless Chromium, as RGB pixels 800×800.
fn screenshot(dir: &TempDir, url: &str, name: &str) -> Vec<u8> {
    let out = dir.0.join(name);
    let profile = dir.0.join(format!("profile-{name}"));
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-extensions",
            "--window-size=800,800",
            "--virtual-time-budget=5000",
            &format!("--user-data-dir={}", profile.display()),
            &format!("--screenshot={}", out.display()),
            url,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium (apt-get install chromium)");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success(), "chromium exited with {st}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (w, h, ct, px) = png_decode(&std::fs::read(&out).unwrap());
    assert_eq!((w, h), (800, 800));
    let c = ct.samples();
    px.chunks_exact(c)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect()
}

/// Share of non-black pixels in one 400×400 quadrant, and the number of distinct
/// red levels there (a gradient, not a flat error colour).
fn quadrant(px: &[u8], qx: usize, qy: usize) -> (f64, usize) {
    let mut lit = 0;
    let mut reds = std::collections::BTreeSet::new();
    for y in qy * 400 + 20..qy * 400 + 380 {
        for x in qx * 400 + 20..qx * 400 + 380 {
            let p = &px[(y * 800 + x) * 3..][..3];
            if p.iter().any(|&v| v > 16) {
                lit += 1;
                reds.insert(p[0]);
            }
        }
    }
    (lit as f64 / (360.0 * 360.0), reds.len())
}

#[test]
fn openseadragon_tile_sources_show_the_image() {
    let viewer = TempDir::new("osd");
    std::fs::copy(
        osd_dir().join("openseadragon.min.js"),
        viewer.0.join("openseadragon.min.js"),
    )
    .unwrap();
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/osd.html"),
        viewer.0.join("osd.html"),
    )
    .unwrap();
    // Browsers open several connections at once; a worker serves one at a time.
    let (s, port) = start_http(
        &[
            "--viewer".as_ref(),
            viewer.0.as_os_str(),
            "--workers".as_ref(),
            "6".as_ref(),
        ],
        &[("VERBOSITY", "2")],
    );
    let shots = TempDir::new("shots");
    let base = format!("http://127.0.0.1:{port}/viewer/osd.html");
    for (zoom, name) in [("1", "whole.png"), ("4", "zoomed.png")] {
        let px = screenshot(&shots, &format!("{base}?zoom={zoom}"), name);
        for (qx, qy, source) in [
            (0, 0, "IIP"),
            (1, 0, "IIIF"),
            (0, 1, "DeepZoom"),
            (1, 1, "Zoomify"),
        ] {
            let (lit, reds) = quadrant(&px, qx, qy);
            // The whole 1001×777 image fills about 60 % of a square viewer; zoomed in, all of it.
            let want = if zoom == "1" { 0.45 } else { 0.95 };
            assert!(
                lit >= want && reds >= 40,
                "{source} at zoom {zoom}: {:.0} % lit, {reds} red levels (screenshot {})",
                lit * 100.0,
                shots.0.join(name).display()
            );
        }
    }
    // The built-in viewer page at `/` (OpenSeadragon over IIIF, below a 2.5em header).
    let px = screenshot(
        &shots,
        &format!("http://127.0.0.1:{port}/?image=small.tif"),
        "page.png",
    );
    let (mut lit, mut reds) = (0, std::collections::BTreeSet::new());
    for y in 100..700 {
        for x in 100..700 {
            let p = &px[(y * 800 + x) * 3..][..3];
            if p.iter().any(|&v| v > 40) && p != [255, 255, 255] {
                lit += 1;
                reds.insert(p[0]);
            }
        }
    }
    assert!(
        lit as f64 / 360_000.0 > 0.4 && reds.len() >= 40,
        "viewer page: {lit} lit pixels, {} red levels",
        reds.len()
    );
    // The protocols were really used: tile requests of each kind reached the server.
    let log = s.log();
    for needle in [
        "JTL=",
        "/iiif/small.tif/",
        "DeepZoom=small.tif_files/",
        "Zoomify=small.tif/TileGroup",
    ] {
        assert!(log.contains(needle), "no {needle} request in the log");
    }
}
