//! The shared tile cache through the server: one worker's tile is another's hit,
//! reloads empty it, changed files are never served stale, size 0 disables it.

mod common;
use common::*;
use std::time::Duration;

fn log_pids(log: &str, what: &str) -> Vec<i32> {
    log.lines()
        .filter(|l| l.contains(what))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next()?.parse().ok())
        .collect()
}

#[test]
fn a_tile_cached_by_one_worker_is_a_hit_in_another() {
    let s = Server::start(&[("VERBOSITY", "3")], 2);
    let first = s.get("FIF=small.tif&JTL=2,5").body;
    let mut inserted = Vec::new();
    let mut hit_elsewhere = false;
    for _ in 0..200 {
        assert_eq!(
            s.get("FIF=small.tif&JTL=2,5").body,
            first,
            "cached bytes equal fresh ones"
        );
        let log = s.log();
        inserted = log_pids(&log, "tile cache insert: small.tif");
        let hits = log_pids(&log, "tile cache hit: small.tif");
        if inserted.len() == 1 && hits.iter().any(|p| *p != inserted[0]) {
            hit_elsewhere = true;
            break;
        }
    }
    assert_eq!(inserted.len(), 1, "inserted once: {}", s.log());
    assert!(hit_elsewhere, "no hit in the other worker: {}", s.log());
    // A reload empties it: the next request inserts again.
    s.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(s.get("FIF=small.tif&JTL=2,5").body, first);
    assert_eq!(
        log_pids(&s.log(), "tile cache insert: small.tif").len(),
        2,
        "{}",
        s.log()
    );
}

#[test]
fn an_image_header_read_by_one_worker_serves_another() {
    let s = Server::start(&[("VERBOSITY", "3"), ("URI_MAP", "iiif=>IIIF")], 2);
    let obj = "FIF=small.tif&OBJ=Max-size&OBJ=Resolution-number&OBJ=Tile-size";
    let first = s.get(obj).text();
    assert!(first.contains("Max-size:"), "{first}");
    let mut shared = Vec::new();
    let mut used_elsewhere = false;
    for _ in 0..200 {
        assert_eq!(
            s.get(obj).text(),
            first,
            "same answer from the shared header"
        );
        let log = s.log();
        shared = log_pids(&log, "image header shared: ");
        let used = log_pids(&log, "image header from the shared cache: ");
        if shared.len() == 1 && used.iter().any(|p| *p != shared[0]) {
            used_elsewhere = true;
            break;
        }
    }
    assert_eq!(shared.len(), 1, "parsed and shared once: {}", s.log());
    assert!(
        used_elsewhere,
        "the other worker parsed it again: {}",
        s.log()
    );
    // The worker that only knows the header opens the file when a tile is needed,
    // and serves the same tile as the worker that parsed it.
    let tile = s.get("FIF=small.tif&JTL=2,3").body;
    assert_eq!(jpeg_dims(&tile).2, 3);
    for _ in 0..20 {
        assert_eq!(s.get("FIF=small.tif&JTL=2,3").body, tile);
        assert_eq!(s.get("FIF=small.tif&CVT=png&WID=100").status, 200);
    }
    let info = s.get_path("/iiif/small.tif/info.json");
    assert_eq!(info.status, 200);
}

#[test]
fn changed_files_are_not_served_stale() {
    let dir = TempDir::new("stale");
    std::fs::copy(fixtures().join("small.tif"), dir.0.join("x.tif")).unwrap();
    let prefix = format!("{}/", dir.0.display());
    let s = Server::start(&[("FILESYSTEM_PREFIX", prefix.as_str())], 2);
    let a = s.get("FIF=x.tif&JTL=2,0").body;
    assert_eq!(jpeg_dims(&a).2, 3);
    let old_colour = s.get("FIF=x.tif&OBJ=Colorspace,0,0").text();
    assert!(old_colour.contains("Colorspace"), "{old_colour}");
    assert_eq!(s.get("FIF=x.tif&JTL=2,0").body, a);
    std::thread::sleep(Duration::from_millis(20));
    std::fs::copy(fixtures().join("grey.tif"), dir.0.join("x.tif")).unwrap();
    let b = s.get("FIF=x.tif&JTL=2,0").body;
    assert_eq!(
        jpeg_dims(&b).2,
        1,
        "the new file's tile, not the cached one"
    );
    // Nor its header (one channel now), from either worker.
    std::fs::copy(fixtures().join("grey.tif"), dir.0.join("g.tif")).unwrap();
    let grey = s.get("FIF=g.tif&OBJ=Colorspace,0,0").text();
    assert_ne!(grey, old_colour);
    for _ in 0..10 {
        assert_eq!(s.get("FIF=x.tif&OBJ=Colorspace,0,0").text(), grey);
    }
}

#[test]
fn size_zero_disables_the_cache() {
    let s = Server::start(&[("VERBOSITY", "3"), ("MAX_IMAGE_CACHE_SIZE", "0")], 1);
    for _ in 0..3 {
        assert_eq!(s.get("FIF=small.tif&JTL=2,5").status, 200);
    }
    assert!(!s.log().contains("tile cache"), "{}", s.log());
}

#[test]
fn unprocessed_region_exports_are_cached_processed_ones_are_not() {
    let s = Server::start(&[("VERBOSITY", "3"), ("URI_MAP", "iiif=>IIIF")], 2);
    let first = s.get("FIF=small.tif&WID=300&CVT=jpeg");
    assert_eq!(first.status, 200);
    for _ in 0..20 {
        let again = s.get("FIF=small.tif&WID=300&CVT=jpeg");
        assert_eq!(again.body, first.body, "cached bytes equal fresh ones");
        assert_eq!(
            again.header("Content-Disposition"),
            first.header("Content-Disposition")
        );
    }
    let log = s.log();
    assert_eq!(
        log_pids(&log, "region cache insert: small.tif 300x233").len(),
        1,
        "{log}"
    );
    assert!(
        log_pids(&log, "region cache hit: small.tif 300x233").len() >= 19,
        "{log}"
    );
    // Another size is another entry; a greyscale export is never cached.
    assert_eq!(s.get("FIF=small.tif&WID=200&CVT=jpeg").status, 200);
    for _ in 0..3 {
        assert_eq!(s.get("FIF=small.tif&WID=250&COL=grey&CVT=jpeg").status, 200);
    }
    let log = s.log();
    assert_eq!(
        log_pids(&log, "region cache insert: small.tif 200x155").len(),
        1
    );
    assert!(
        !log.contains("small.tif 250x194"),
        "processed exports bypass the cache"
    );
}
