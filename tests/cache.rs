//! The shared tile cache through the server: one worker's tile is another's hit,
//! reloads empty it, changed files are never served stale, size 0 disables it, a full
//! cache keeps part of a walk over more tiles than fit.

mod common;
use common::*;
use std::time::Duration;

/// Repeats `query` (always answered with the first answer's bytes) until both workers
/// have answered it: each misses the image header in its own cache once.
fn answered_by_both_workers(s: &Server, mport: u16, query: &str) -> Vec<u8> {
    let first = s.get(query).body;
    for _ in 0..200 {
        if counter(mport, "tessera_image_cache_misses_total") >= 2 {
            return first;
        }
        assert_eq!(s.get(query).body, first, "shared answers equal fresh ones");
    }
    panic!("one worker answered all 200 requests");
}

#[test]
fn a_tile_cached_by_one_worker_is_a_hit_in_another() {
    let (s, mport) = Server::start_metered(&[], 2);
    let first = answered_by_both_workers(&s, mport, "FIF=small.tif&JTL=2,5");
    // Both workers answered, the tile was decoded once: the other took it from the cache.
    assert_eq!(counter(mport, "tessera_tiles_decoded_total"), 1);
    assert_eq!(
        counter(mport, "tessera_tile_cache_inserts_total"),
        2,
        "the image header and the tile, stored once each"
    );
    // A reload empties it: the next request decodes the tile again.
    s.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(s.get("FIF=small.tif&JTL=2,5").body, first);
    assert_eq!(counter(mport, "tessera_tiles_decoded_total"), 2);
}

#[test]
fn an_image_header_read_by_one_worker_serves_another() {
    let (s, mport) = Server::start_metered(&[("URI_MAP", "iiif=>IIIF")], 2);
    let obj = "FIF=small.tif&OBJ=Max-size&OBJ=Resolution-number&OBJ=Tile-size";
    let first = answered_by_both_workers(&s, mport, obj);
    // One worker read the header from the file and stored it; the other, missing it in
    // its own cache, found it in the shared one.
    assert_eq!(counter(mport, "tessera_tile_cache_inserts_total"), 1);
    assert_eq!(counter(mport, "tessera_tile_cache_hits_total"), 1);
    assert!(String::from_utf8_lossy(&first).contains("Max-size:"));
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
    let (s, mport) = Server::start_metered(&[("MAX_IMAGE_CACHE_SIZE", "0")], 1);
    for _ in 0..3 {
        assert_eq!(s.get("FIF=small.tif&JTL=2,5").status, 200);
    }
    // No shared cache, so none of its counters.
    let text = metrics(mport);
    assert!(!text.contains("tessera_tile_cache_"), "{text}");
}

#[test]
fn unprocessed_region_exports_are_cached_processed_ones_are_not() {
    let (s, mport) = Server::start_metered(&[("URI_MAP", "iiif=>IIIF")], 2);
    let inserts = || counter(mport, "tessera_tile_cache_inserts_total");
    let hits = || counter(mport, "tessera_tile_cache_hits_total");
    let first = s.get("FIF=small.tif&WID=300&CVT=jpeg");
    assert_eq!(first.status, 200);
    let (stored, hit) = (inserts(), hits());
    for _ in 0..20 {
        let again = s.get("FIF=small.tif&WID=300&CVT=jpeg");
        assert_eq!(again.body, first.body, "cached bytes equal fresh ones");
        assert_eq!(
            again.header("Content-Disposition"),
            first.header("Content-Disposition")
        );
    }
    // Stored by the first request only, then answered from the cache (the other
    // worker's first look at the image header may be one more hit).
    assert_eq!(inserts(), stored, "stored once");
    let served = hits() - hit;
    assert!(served >= 19, "{served} of 20 from the cache");
    // Another size is another entry; a greyscale export is never cached.
    assert_eq!(s.get("FIF=small.tif&WID=200&CVT=jpeg").status, 200);
    assert_eq!(inserts(), stored + 1);
    for _ in 0..3 {
        assert_eq!(s.get("FIF=small.tif&WID=250&COL=grey&CVT=jpeg").status, 200);
    }
    assert_eq!(inserts(), stored + 1, "processed exports bypass the cache");
}

/// The 150 tiles of big.tif's level 5 (about 4.7 KB each), with their first answers.
fn big_tiles(s: &Server) -> (Vec<String>, Vec<Vec<u8>>) {
    let tiles: Vec<String> = (0..150).map(|t| format!("FIF=big.tif&JTL=5,{t}")).collect();
    let first = tiles.iter().map(|q| s.get(q).body).collect();
    (tiles, first)
}

/// Asks for every tile again: each answer must equal the first one.
fn ask_again(s: &Server, tiles: &[String], first: &[Vec<u8>]) {
    for (q, body) in tiles.iter().zip(first) {
        assert_eq!(
            &s.get(q).body,
            body,
            "{q}: a cached tile differs from the fresh one"
        );
    }
}

/// Shared-cache hits so far: tiles only once a single worker holds the image header.
fn hits(mport: u16) -> u64 {
    counter(mport, "tessera_tile_cache_hits_total")
}

#[test]
fn a_small_budget_holds_as_many_tiles_as_fit() {
    // One iipsrv megabyte and tiles of about 4.7 KB: the cache stores them byte for byte,
    // so far more than a few dozen fit (fixed 32 KB slots would have held 18).
    let (s, mport) = Server::start_metered(&[("MAX_IMAGE_CACHE_SIZE", "1")], 1);
    let (tiles, first) = big_tiles(&s);
    let total: usize = first.iter().map(Vec::len).sum();
    assert!(
        total < 900_000,
        "the test's tiles must fit the budget: {total} bytes"
    );
    let before = hits(mport);
    ask_again(&s, &tiles, &first);
    let hits = hits(mport) - before;
    assert!(
        hits >= 145,
        "{hits} of 150 tiles ({total} bytes) served from the cache"
    );
}

#[test]
fn a_walk_over_more_tiles_than_fit_is_partly_served_from_the_cache() {
    // 150 tiles of ~4.7 KB into a 0.3 MB cache (room for about 60): storing every tile
    // would overwrite each one before the walk came back to it. The full cache stores
    // only some, which then stay for the following rounds.
    let (s, mport) = Server::start_metered(&[("MAX_IMAGE_CACHE_SIZE", "0.3")], 1);
    let (tiles, first) = big_tiles(&s);
    for _ in 0..2 {
        ask_again(&s, &tiles, &first);
    }
    let before = hits(mport);
    for _ in 0..2 {
        ask_again(&s, &tiles, &first);
    }
    let hits = hits(mport) - before;
    assert!(hits >= 20, "{hits} of 300 requests in rounds 4 and 5 hit");
    // Many tiles the full cache did not store; SIGUSR1's statistics report as many.
    let counted = counter(mport, "tessera_tile_cache_refused_total");
    assert!(counted > 100, "{counted} refused");
    s.signal(libc::SIGUSR1);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let refused = loop {
        let log = s.log();
        let n = log
            .split(" refused, ")
            .next()
            .filter(|head| head.len() < log.len())
            .and_then(|head| head.rsplit(' ').next()?.parse::<u64>().ok());
        if n.is_some() || std::time::Instant::now() > deadline {
            break n;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(refused, Some(counted));
}

#[test]
fn jpeg2000_tiles_sharing_coded_data_are_decoded_and_stored_together() {
    // tiled.jp2: 2000x1500 in codestream tiles of 1024x1024, so 4x4 of the server's
    // tiles at full size (res 3) and 2x2 at half size (res 2) share one codestream tile.
    let (s, mport) = Server::start_metered(&[], 1);
    let plain = Server::start(&[("MAX_IMAGE_CACHE_SIZE", "0")], 1);
    let inserts = || counter(mport, "tessera_tile_cache_inserts_total");
    let decoded = || counter(mport, "tessera_tiles_decoded_total");
    // The image header first, so that the tiles' figures below count tiles only.
    assert_eq!(s.get("FIF=tiled.jp2&OBJ=Max-size").status, 200);
    let (stored, hit) = (inserts(), hits(mport));
    // Full size: 8 columns; tile 9 is column 1, row 1 of the block of columns and rows
    // 0-3. Tile 12 (column 4) lies in the next codestream tile, outside the block.
    let block: Vec<u32> = (0..4)
        .flat_map(|r| (0..4).map(move |c| r * 8 + c))
        .collect();
    assert_eq!(s.get("FIF=tiled.jp2&JTL=3,9").status, 200);
    assert_eq!(decoded(), 1);
    assert_eq!(
        inserts(),
        stored + 16,
        "one decode stores the block's 4x4 tiles"
    );
    for t in &block {
        let q = format!("FIF=tiled.jp2&JTL=3,{t}");
        let (got, want) = (s.get(&q), plain.get(&q));
        assert_eq!(got.status, 200);
        assert_eq!(jpeg_dims(&got.body), (256, 256, 3));
        assert_eq!(
            got.body, want.body,
            "{q}: a tile decoded with its block differs"
        );
    }
    assert_eq!(
        hits(mport) - hit,
        16,
        "every tile of the block is served from the cache"
    );
    let q = "FIF=tiled.jp2&JTL=3,12";
    assert_eq!(s.get(q).body, plain.get(q).body);
    assert_eq!(hits(mport) - hit, 16);
    assert_eq!(decoded(), 2);
    // Half size: 4 columns, codestream tiles of 512 there; tile 7 (column 3, row 1)
    // is in the block of columns 2-3, rows 0-1, which ends at the image's right edge.
    let stored = inserts();
    assert_eq!(
        s.get("FIF=tiled.jp2&JTL=2,7").body,
        plain.get("FIF=tiled.jp2&JTL=2,7").body
    );
    assert_eq!(decoded(), 3);
    assert_eq!(
        inserts(),
        stored + 4,
        "one decode stores the block's 2x2 tiles"
    );
    for t in [2, 3, 6] {
        let q = format!("FIF=tiled.jp2&JTL=2,{t}");
        assert_eq!(s.get(&q).body, plain.get(&q).body, "{q}");
    }
    assert_eq!(hits(mport) - hit, 19);
    // Processed tiles are not cached, so not decoded in blocks.
    let stored = inserts();
    assert_eq!(s.get("FIF=tiled.jp2&CNT=1.5&JTL=2,10").status, 200);
    assert_eq!((inserts(), decoded()), (stored, 3));
}
