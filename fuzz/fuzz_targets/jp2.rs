//! Fuzzes the JPEG2000 reader (OpenJPEG behind our memory-map stream): header
//! parsing, tile and region decoding at every level must return or fail cleanly, and
//! blocks of tiles decoded together must hold their tile inside the tile grid, and
//! exports of it (see `common/export.rs`) answer with a status.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common/export.rs"]
mod export;

fuzz_target!(|data: &[u8]| {
    if let Ok(img) = tessera::image::open_bytes(data) {
        let info = img.info().clone();
        for (k, level) in info.levels.iter().enumerate().rev().take(3) {
            let _ = img.decode_tile(k as u32, 0);
            // Blocks of tiles decoded together: within the grid, holding the tile, ≤ 4×4.
            let (cols, rows) = (level.columns(), level.rows());
            for t in [0, level.tile_count().saturating_sub(1)] {
                if let Some((c0, r0, nc, nr)) = img.tile_block(k as u32, t) {
                    let (c, r) = (t % cols, t / cols);
                    assert!(c0 <= c && c < c0 + nc && c0 + nc <= cols && nc <= 4);
                    assert!(r0 <= r && r < r0 + nr && r0 + nr <= rows && nr <= 4);
                }
            }
            let w = level.width.min(64);
            let h = level.height.min(64);
            if let Some(r) = img.decode_region(k as u32, (0, 0, w, h)) {
                let _ = r;
            }
        }
        export::exports(img);
    }
});
