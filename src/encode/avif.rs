//! AVIF output through `ravif` (rav1e, pure Rust plus assembly): fastest speed for
//! tiles, one thread per worker. Quality 100 (or −1, "lossless") gives the least
//! loss AV1 offers through ravif; there is no bit-exact lossless mode.

use super::EncodeError;
use crate::pipeline::Raster;
use ravif::{Encoder, Img, RGB8, RGBA8};

/// AVIF of 1–4 channels (grey is expanded to RGB, grey+alpha to RGBA).
pub fn encode(r: &Raster, quality: i32) -> Result<Vec<u8>, EncodeError> {
    let (w, h) = (r.width as usize, r.height as usize);
    let q = if quality < 0 {
        100.0
    } else {
        quality.clamp(1, 100) as f32
    };
    let enc = Encoder::new()
        .with_quality(q)
        .with_alpha_quality(q)
        .with_speed(10)
        // 8-bit AV1, as iipsrv writes (ravif's default would pick 10-bit for 8-bit input:
        // slower to encode, and twice the memory in decoders).
        .with_bit_depth(ravif::BitDepth::Eight)
        .with_num_threads(Some(1));
    let err = |e: ravif::Error| EncodeError::Avif(e.to_string());
    let out = match r.channels {
        1 => {
            let px: Vec<RGB8> = r.data.iter().map(|&v| RGB8::new(v, v, v)).collect();
            enc.encode_rgb(Img::new(&px[..], w, h)).map_err(err)?
        }
        3 => {
            let px: Vec<RGB8> = r
                .data
                .chunks_exact(3)
                .map(|p| RGB8::new(p[0], p[1], p[2]))
                .collect();
            enc.encode_rgb(Img::new(&px[..], w, h)).map_err(err)?
        }
        2 | 4 => {
            let c = r.channels as usize;
            let px: Vec<RGBA8> = r
                .data
                .chunks_exact(c)
                .map(|p| {
                    if c == 2 {
                        RGBA8::new(p[0], p[0], p[0], p[1])
                    } else {
                        RGBA8::new(p[0], p[1], p[2], p[3])
                    }
                })
                .collect();
            enc.encode_rgba(Img::new(&px[..], w, h)).map_err(err)?
        }
        n => return Err(EncodeError::Avif(format!("cannot encode {n} channels"))),
    };
    Ok(out.avif_file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_avif_files() {
        for c in [1u16, 3, 4] {
            let r = Raster {
                width: 64,
                height: 48,
                channels: c,
                data: (0..64 * 48 * c as u32).map(|i| (i % 200) as u8).collect(),
            };
            let b = encode(&r, 50).unwrap();
            assert_eq!(&b[4..12], b"ftypavif", "{c} channels");
            // av1C: version/marker byte, then profile and level, then the depth flags
            // (high_bitdepth is bit 6): 8-bit samples.
            let at = b.windows(4).position(|w| w == b"av1C").unwrap() + 4;
            assert_eq!(b[at] & 0x7F, 1, "av1C version");
            assert_eq!(b[at + 2] & 0x40, 0, "8-bit AV1 ({c} channels)");
        }
    }
}
