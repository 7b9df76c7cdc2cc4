//! Fuzzes the TIFF directory walker and tile decoders: any byte string must open
//! or fail with an error, and every tile of every level it claims must decode or
//! fail with an error, within bounded memory; exports of it (see `common/export.rs`)
//! answer with a status.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common/export.rs"]
mod export;

fuzz_target!(|data: &[u8]| {
    // Keep inputs TIFF-shaped so the walker, not format detection, gets the coverage.
    if data.len() < 8 || !(data.starts_with(b"II") || data.starts_with(b"MM")) {
        return;
    }
    if let Ok(img) = tessera::image::open_bytes(data) {
        let info = img.info().clone();
        for (k, level) in info.levels.iter().enumerate().take(8) {
            for t in 0..level.tile_count().min(4) {
                let _ = img.decode_tile(k as u32, t);
                let _ = img.encoded_tile(k as u32, t);
                // A part of the tile, as region edges ask (JPEG tiles decode it cropped).
                if let Some((w, h)) = level.tile_size(t) {
                    let part = (w / 3, h / 5, (w - w / 3).max(1), (h - h / 5).div_ceil(2));
                    let _ = img.decode_tile_part(k as u32, t, part);
                }
            }
        }
        export::exports(img);
    }
});
