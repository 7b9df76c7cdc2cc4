//! JPEG output through libjpeg-turbo (1.8× faster than mozjpeg at equal size on tiles
//! here), on its raw API for the fast integer DCT. One compressor per worker, reused.

use super::EncodeError;
use crate::pipeline::Raster;
use turbojpeg::raw;

/// Baseline JPEG, 4:2:0 for colour, at `quality` 1..=100, with libjpeg's fast integer
/// DCT as iipsrv encodes (docs/processing.md §6). Takes 1 or 3 channels.
pub fn encode(r: &Raster, quality: i32) -> Result<Vec<u8>, EncodeError> {
    let (format, subsamp) = match r.channels {
        1 => (raw::TJPF_TJPF_GRAY, raw::TJSAMP_TJSAMP_GRAY),
        3 => (raw::TJPF_TJPF_RGB, raw::TJSAMP_TJSAMP_420),
        n => return Err(EncodeError::Jpeg(format!("cannot encode {n} channels"))),
    };
    let expected = r.width as usize * r.height as usize * r.channels as usize;
    if r.width == 0
        || r.height == 0
        || r.width > 65535
        || r.height > 65535
        || r.data.len() != expected
    {
        return Err(EncodeError::Jpeg("raster size mismatch".into()));
    }
    let (w, h) = (r.width as libc::c_int, r.height as libc::c_int);
    let compressed = crate::turbo::compressor(|tj| {
        let set = tj.set(raw::TJPARAM_TJPARAM_QUALITY, quality.clamp(1, 100))
            && tj.set(raw::TJPARAM_TJPARAM_SUBSAMP, subsamp)
            && tj.set(raw::TJPARAM_TJPARAM_FASTDCT, 1)
            && tj.set(raw::TJPARAM_TJPARAM_NOREALLOC, 1);
        if !set {
            return Err(tj.error());
        }
        // SAFETY: a pure size computation.
        let room = unsafe { raw::tj3JPEGBufSize(w, h, subsamp) };
        if room == 0 {
            return Err(tj.error());
        }
        let mut out: Vec<u8> = Vec::with_capacity(room as usize);
        let mut ptr = out.as_mut_ptr();
        let mut size = room;
        // SAFETY: the pixels hold `h` rows of `pitch` bytes (checked above); with
        // NOREALLOC TurboJPEG writes at most `room` bytes (the worst case for this size)
        // at `ptr`, `out`'s capacity, and reports how many; the length is set to that.
        unsafe {
            let pitch = (r.width * r.channels as u32) as libc::c_int;
            if raw::tj3Compress8(
                tj.raw(),
                r.data.as_ptr(),
                w,
                pitch,
                h,
                format,
                &mut ptr,
                &mut size,
            ) != 0
            {
                return Err(tj.error());
            }
            if ptr != out.as_mut_ptr() || size > room {
                return Err("the encoder wrote outside its buffer".into());
            }
            out.set_len(size as usize);
        }
        Ok(out)
    });
    compressed.and_then(|r| r).map_err(EncodeError::Jpeg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use turbojpeg::PixelFormat;

    #[test]
    fn encodes_and_decodes_back() {
        let (w, h) = (37u32, 19u32);
        let data: Vec<u8> = (0..w * h * 3).map(|i| (i % 251) as u8).collect();
        let r = Raster {
            width: w,
            height: h,
            channels: 3,
            data,
        };
        let jpg = encode(&r, 90).unwrap();
        assert_eq!(&jpg[..3], &[0xFF, 0xD8, 0xFF]);
        let img = turbojpeg::decompress(&jpg, PixelFormat::RGB).unwrap();
        assert_eq!((img.width, img.height), (37, 19));
        let grey = Raster {
            width: 8,
            height: 8,
            channels: 1,
            data: vec![200; 64],
        };
        let g = turbojpeg::decompress(&encode(&grey, 75).unwrap(), PixelFormat::GRAY).unwrap();
        assert!(g.pixels.iter().all(|&v| v.abs_diff(200) <= 2));
    }

    #[test]
    fn refuses_bad_rasters() {
        let r = Raster {
            width: 4,
            height: 4,
            channels: 2,
            data: vec![0; 32],
        };
        assert!(encode(&r, 75).is_err());
        let r = Raster {
            width: 4,
            height: 4,
            channels: 3,
            data: vec![0; 5],
        };
        assert!(encode(&r, 75).is_err());
    }
}
