//! WebP output through libwebp (`libwebp-sys`, vendored libwebp 1.6; the `webp` crate
//! pins an old libwebp). Fastest method, lossy or lossless.

use super::EncodeError;
use crate::pipeline::Raster;
use libwebp_sys as w;

/// WebP of 1–4 channels (grey is expanded to RGB, grey+alpha to RGBA). `quality`
/// below 0 means lossless.
pub fn encode(r: &Raster, quality: i32) -> Result<Vec<u8>, EncodeError> {
    let err = |m: &str| EncodeError::Webp(m.to_owned());
    if r.width == 0 || r.height == 0 || r.width > 16383 || r.height > 16383 {
        return Err(err("WebP images are limited to 16383 pixels a side"));
    }
    let (rgba, has_alpha) = match r.channels {
        1 => (
            r.data.iter().flat_map(|&v| [v, v, v]).collect::<Vec<u8>>(),
            false,
        ),
        2 => (
            r.data
                .chunks_exact(2)
                .flat_map(|p| [p[0], p[0], p[0], p[1]])
                .collect(),
            true,
        ),
        3 => (r.data.clone(), false),
        4 => (r.data.clone(), true),
        n => return Err(EncodeError::Webp(format!("cannot encode {n} channels"))),
    };
    // SAFETY: config and picture are initialised by libwebp; the picture imports from a
    // buffer that outlives the call; the writer's memory is copied out, then freed.
    unsafe {
        let mut config = w::WebPConfig::new().map_err(|_| err("libwebp version mismatch"))?;
        if quality < 0 {
            config.lossless = 1;
            config.quality = 0.0;
        } else {
            config.quality = quality.clamp(0, 100) as f32;
        }
        config.method = 0;
        let mut pic = w::WebPPicture::new().map_err(|_| err("libwebp version mismatch"))?;
        pic.width = r.width as i32;
        pic.height = r.height as i32;
        pic.use_argb = config.lossless;
        let stride = (r.width * if has_alpha { 4 } else { 3 }) as i32;
        let ok = if has_alpha {
            w::WebPPictureImportRGBA(&mut pic, rgba.as_ptr(), stride)
        } else {
            w::WebPPictureImportRGB(&mut pic, rgba.as_ptr(), stride)
        };
        if ok == 0 {
            w::WebPPictureFree(&mut pic);
            return Err(err("cannot import pixels"));
        }
        let mut writer: w::WebPMemoryWriter = std::mem::zeroed();
        w::WebPMemoryWriterInit(&mut writer);
        pic.writer = Some(w::WebPMemoryWrite);
        pic.custom_ptr = (&mut writer as *mut w::WebPMemoryWriter).cast();
        let ok = w::WebPEncode(&config, &mut pic);
        w::WebPPictureFree(&mut pic);
        let out = if ok != 0 && !writer.mem.is_null() {
            Ok(std::slice::from_raw_parts(writer.mem, writer.size).to_vec())
        } else {
            Err(EncodeError::Webp(format!(
                "encoder error {}",
                pic.error_code as i32
            )))
        };
        w::WebPMemoryWriterClear(&mut writer);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raster(c: u16) -> Raster {
        Raster {
            width: 40,
            height: 30,
            channels: c,
            data: (0..40 * 30 * c as u32).map(|i| (i % 251) as u8).collect(),
        }
    }

    #[test]
    fn lossy_and_lossless_streams() {
        for c in 1..=4 {
            let b = encode(&raster(c), 50).unwrap();
            assert_eq!(&b[..4], b"RIFF");
            assert_eq!(&b[8..12], b"WEBP");
            let riff = u32::from_le_bytes(b[4..8].try_into().unwrap()) as usize;
            assert_eq!(riff + 8, b.len(), "the whole bitstream is returned");
        }
        let lossless = encode(&raster(3), -1).unwrap();
        assert!(lossless.windows(4).any(|w| w == b"VP8L"));
        let lossy = encode(&raster(3), 50).unwrap();
        assert!(lossy.windows(4).any(|w| w == b"VP8 "));
        assert!(encode(&raster(5), 50).is_err());
    }
}
