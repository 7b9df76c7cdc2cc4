//! Plain JPEG files with a virtual pyramid (docs/sources.md §5): levels halve with floor
//! until both sides fit 256; a level is decoded with libjpeg-turbo's DCT scaling
//! (1/1 … 1/8, then every 2^(k−3)-th pixel) and tiles are cut from it. JPEG has no
//! random access, so decoded levels are kept (up to 64 MiB per file, least recently used
//! dropped first) for the next tiles.

use super::{
    Codec, ColourSpace, DecodeError, EncodedTile, Format, Image, ImageError, ImageInfo, Level,
    Samples, StoredCodec, Tile, Unsupported,
};
use std::sync::{Arc, Mutex};

const KEEP_BYTES: usize = 64 << 20;
const MAX_PIXELS: u64 = 1 << 30;

/// A decoded level: its number, pixels, width and height.
type DecodedLevel = (u32, Arc<Vec<u8>>, usize, usize);

pub struct JpegImage {
    map: crate::image::guard::Map,
    info: ImageInfo,
    /// Decoded levels, least recently used first, at most `KEEP_BYTES` in all.
    kept: Mutex<Vec<DecodedLevel>>,
    /// The file's scans, counted on the first decode ([`crate::turbo::check_scans`]).
    scans: std::sync::OnceLock<u64>,
}

fn err(e: impl std::fmt::Display) -> ImageError {
    DecodeError::codec(Codec::Jpeg, e).into()
}

/// The virtual levels of a `w×h` JPEG.
pub fn levels(w: u32, h: u32) -> Vec<Level> {
    let mut out = vec![];
    let (mut lw, mut lh) = (w, h);
    loop {
        out.push(Level {
            width: lw.max(1),
            height: lh.max(1),
            tile_width: 256,
            tile_height: 256,
            codec: StoredCodec::Jpeg,
        });
        if (lw <= 256 && lh <= 256) || out.len() >= 32 {
            break;
        }
        lw /= 2;
        lh /= 2;
    }
    out
}

impl JpegImage {
    pub fn parse(map: crate::image::guard::Map) -> Result<JpegImage, ImageError> {
        let h = turbojpeg::read_header(&map[..]).map_err(err)?;
        if h.width == 0 || h.height == 0 || (h.width as u64 * h.height as u64) > MAX_PIXELS {
            return Err(Unsupported::Size {
                format: Format::Jpeg,
                width: h.width as u64,
                height: h.height as u64,
            }
            .into());
        }
        let grey = h.colorspace == turbojpeg::Colorspace::Gray;
        let channels = if grey { 1 } else { 3 };
        let colour = if grey {
            ColourSpace::Greyscale
        } else {
            ColourSpace::Srgb
        };
        let mut info =
            ImageInfo::plain(levels(h.width as u32, h.height as u32), channels, 8, colour);
        super::meta::from_jpeg(&map, &mut info);
        Ok(JpegImage {
            map,
            info,
            kept: Mutex::new(Vec::new()),
            scans: std::sync::OnceLock::new(),
        })
    }

    /// Pixels of level `k`: (data, width, height).
    fn level(&self, k: u32) -> Result<(Arc<Vec<u8>>, usize, usize), ImageError> {
        {
            let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(i) = kept.iter().position(|l| l.0 == k) {
                // Most recently used last.
                let l = kept.remove(i);
                let found = (l.1.clone(), l.2, l.3);
                kept.push(l);
                return Ok(found);
            }
        }
        let c = self.info.channels as usize;
        let format = if c == 1 {
            turbojpeg::PixelFormat::GRAY
        } else {
            turbojpeg::PixelFormat::RGB
        };
        let mut d = turbojpeg::Decompressor::new().map_err(err)?;
        let head = d.read_header(&self.map[..]).map_err(err)?;
        let scale = turbojpeg::ScalingFactor::new(1, 1 << k.min(3));
        d.set_scaling_factor(scale).map_err(err)?;
        // A progressive file may repeat scans by the thousand (see `turbo::MAX_SCANS`).
        d.set_scan_limit(crate::turbo::MAX_SCANS as u32)
            .map_err(err)?;
        let scans = *self
            .scans
            .get_or_init(|| crate::turbo::count_scans(&self.map[..]));
        crate::turbo::check_scan_count(scans, head.width as u64 * head.height as u64)
            .map_err(err)?;
        let scaled = head.scaled(scale);
        let (sw, sh) = (scaled.width, scaled.height);
        let mut px = zeroed(sw * sh * c)?;
        d.decompress(
            &self.map[..],
            turbojpeg::Image {
                pixels: &mut px[..],
                width: sw,
                pitch: sw * c,
                height: sh,
                format,
            },
        )
        .map_err(err)?;
        let lv = &self.info.levels[k as usize];
        let (lw, lh) = (lv.width as usize, lv.height as usize);
        let step = 1usize << k.saturating_sub(3);
        let mut out = Vec::new();
        out.try_reserve_exact(lw * lh * c)
            .map_err(|_| ImageError::OutOfMemory(lw * lh * c))?;
        for y in 0..lh {
            let sy = (y * step).min(sh - 1);
            for x in 0..lw {
                let sx = (x * step).min(sw - 1);
                let i = (sy * sw + sx) * c;
                out.extend_from_slice(&px[i..i + c]);
            }
        }
        let data = Arc::new(out);
        if data.len() <= KEEP_BYTES {
            let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
            while kept.iter().map(|l| l.1.len()).sum::<usize>() + data.len() > KEEP_BYTES {
                kept.remove(0);
            }
            kept.push((k, data.clone(), lw, lh));
        }
        Ok((data, lw, lh))
    }
}

/// `n` zero bytes, or `OutOfMemory` when they cannot be had.
fn zeroed(n: usize) -> Result<Vec<u8>, ImageError> {
    super::blit::zeroed(n).ok_or(ImageError::OutOfMemory(n))
}

impl Image for JpegImage {
    fn info(&self) -> &ImageInfo {
        &self.info
    }

    fn encoded_tile(&self, _k: u32, _t: u32) -> Result<Option<EncodedTile>, ImageError> {
        Ok(None)
    }

    fn decode_tile(&self, k: u32, t: u32) -> Result<Tile, ImageError> {
        let level = self
            .info
            .levels
            .get(k as usize)
            .ok_or(ImageError::NoSuchLevel(k))?;
        let (tw, th) = level.tile_size(t).ok_or(ImageError::NoSuchTile(t))?;
        let (data, lw, _) = self.level(k)?;
        let c = self.info.channels as usize;
        let (x0, y0) = (
            (t % level.columns() * 256) as usize,
            (t / level.columns() * 256) as usize,
        );
        let mut out = Vec::with_capacity(tw as usize * th as usize * c);
        for y in y0..y0 + th as usize {
            let i = (y * lw + x0) * c;
            out.extend_from_slice(&data[i..i + tw as usize * c]);
        }
        Ok(Tile {
            width: tw,
            height: th,
            channels: c as u16,
            data: Samples::U8(out),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_levels_f10() {
        let sizes: Vec<(u32, u32)> = levels(2000, 1500)
            .iter()
            .map(|l| (l.width, l.height))
            .collect();
        assert_eq!(sizes, [(2000, 1500), (1000, 750), (500, 375), (250, 187)]);
        assert_eq!(levels(200, 100).len(), 1);
    }

    #[test]
    fn decoded_levels_are_kept_for_the_next_tiles() {
        // JPEG has no random access: without the kept copy, every tile of a level
        // would decode the whole file again.
        let (w, h) = (1000usize, 700usize);
        let data: Vec<u8> = (0..w * h * 3).map(|i| (i * 7 % 253) as u8).collect();
        let r = crate::pipeline::Raster {
            width: w as u32,
            height: h as u32,
            channels: 3,
            data,
        };
        let j = crate::encode::jpeg::encode(&r, 80).unwrap();
        let path = std::env::temp_dir().join(format!("tessera-kept-{}.jpg", std::process::id()));
        std::fs::write(&path, &j).unwrap();
        let f = std::fs::File::open(&path).unwrap();
        // SAFETY: a private temporary file; the test itself rewrites it in place, and
        // a shared map seeing that is the point.
        let img = JpegImage::parse(unsafe { memmap2::Mmap::map(&f) }.unwrap().into()).unwrap();
        assert_eq!(img.info().levels.len(), 3);
        let first = img.decode_tile(0, 0).unwrap();
        let (a, ..) = img.level(0).unwrap();
        let (b, ..) = img.level(0).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "the level is decoded once");
        let middle = img.decode_tile(1, 0).unwrap();
        // Overwrite the file in place: what is kept no longer needs it.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, &vec![0u8; j.len()]))
            .unwrap();
        assert_eq!(img.decode_tile(0, 0).unwrap().data, first.data);
        assert_eq!(img.decode_tile(1, 0).unwrap().data, middle.data);
        for t in 0..img.info().levels[0].tile_count() {
            assert!(
                img.decode_tile(0, t).is_ok(),
                "tile {t} from the kept level"
            );
        }
        // Least recently used first: level 1, then level 0 (just used).
        let kept: Vec<u32> = img.kept.lock().unwrap().iter().map(|l| l.0).collect();
        assert_eq!(kept, [1, 0]);
        // A level never decoded has to read the file, which is now zeros.
        assert!(img.decode_tile(2, 0).is_err());
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn progressive_sources_are_limited_in_scans() {
        use crate::turbo::testing::{repeat_last_scan, test_jpeg};
        let path = std::env::temp_dir().join(format!("tessera-scans-{}.jpg", std::process::id()));
        let open = |bytes: &[u8]| {
            std::fs::write(&path, bytes).unwrap();
            let f = std::fs::File::open(&path).unwrap();
            // SAFETY: a private temporary file nothing else writes while it is mapped.
            JpegImage::parse(unsafe { memmap2::Mmap::map(&f) }.unwrap().into()).unwrap()
        };
        let j = test_jpeg(true);
        assert!(open(&j).decode_tile(0, 0).is_ok());
        let e = open(&repeat_last_scan(&j, 2000))
            .decode_tile(0, 0)
            .unwrap_err();
        assert!(e.to_string().contains("scans"), "{e}");
        let _ = std::fs::remove_file(&path);
    }
}
