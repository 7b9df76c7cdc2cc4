//! Fuzzes the JPEG2000 reader (OpenJPEG behind our memory-map stream): header
//! parsing, tile and region decoding at every level must return or fail cleanly.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(img) = tessera::image::open_bytes(data) {
        let info = img.info().clone();
        for (k, level) in info.levels.iter().enumerate().rev().take(3) {
            let _ = img.decode_tile(k as u32, 0);
            let w = level.width.min(64);
            let h = level.height.min(64);
            if let Some(r) = img.decode_region(k as u32, (0, 0, w, h)) {
                let _ = r;
            }
        }
    }
});
