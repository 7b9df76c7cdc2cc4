//! Pyramid TIFF and BigTIFF images read from a memory map (docs/sources.md §3).
//!
//! Levels come from a SubIFD pyramid (OME-TIFF, `vips --subifd`) or from the chain
//! of tiled top-level directories. Tiles are sliced from the map and decompressed
//! into buffers sized by the tile geometry; stored JPEG tiles can be handed out
//! as standalone files for pass-through.
//!
//! Here the [`TiffImage`] type and its [`Image`] side: stored tiles sliced from the
//! map and handed out or decoded. The pyramid is read in `pyramid.rs`, the image's
//! description in `meta.rs`, decoded chunks made into tile samples in `samples.rs`
//! (decompressed in `decode.rs`, JPEG tiles in `jpeg.rs`).

mod decode;
mod ifd;
mod jpeg;
mod meta;
mod pyramid;
mod samples;

use super::{
    DecodeError, EncodedTile, Fault, Format, Image, ImageError, ImageInfo, Level, Samples,
    StoredCodec, Tile,
};
use ifd::{Reader, Uints};
use std::sync::Arc;

mod tag {
    pub const NEW_SUBFILE_TYPE: u16 = 254;
    pub const IMAGE_WIDTH: u16 = 256;
    pub const IMAGE_LENGTH: u16 = 257;
    pub const BITS_PER_SAMPLE: u16 = 258;
    pub const COMPRESSION: u16 = 259;
    pub const PHOTOMETRIC: u16 = 262;
    pub const DOCUMENT_NAME: u16 = 269;
    pub const IMAGE_DESCRIPTION: u16 = 270;
    pub const MAKE: u16 = 271;
    pub const MODEL: u16 = 272;
    pub const SAMPLES_PER_PIXEL: u16 = 277;
    pub const X_RESOLUTION: u16 = 282;
    pub const Y_RESOLUTION: u16 = 283;
    pub const PLANAR_CONFIG: u16 = 284;
    pub const PAGE_NAME: u16 = 285;
    pub const COLOR_MAP: u16 = 320;
    pub const RESOLUTION_UNIT: u16 = 296;
    pub const SOFTWARE: u16 = 305;
    pub const DATE_TIME: u16 = 306;
    pub const ARTIST: u16 = 315;
    pub const PREDICTOR: u16 = 317;
    pub const TILE_WIDTH: u16 = 322;
    pub const TILE_LENGTH: u16 = 323;
    pub const TILE_OFFSETS: u16 = 324;
    pub const TILE_BYTE_COUNTS: u16 = 325;
    pub const SUB_IFDS: u16 = 330;
    pub const SAMPLE_FORMAT: u16 = 339;
    pub const S_MIN_SAMPLE_VALUE: u16 = 340;
    pub const S_MAX_SAMPLE_VALUE: u16 = 341;
    pub const JPEG_TABLES: u16 = 347;
    pub const YCBCR_SUBSAMPLING: u16 = 530;
    pub const XMP: u16 = 700;
    pub const COPYRIGHT: u16 = 33432;
    pub const STONITS: u16 = 33423;
    pub const ICC_PROFILE: u16 = 34675;
}

/// What decoding one level needs.
#[derive(Debug, Clone)]
struct LevelData {
    offsets: Uints,
    counts: Uints,
    compression: u16,
    predictor: u16,
    jpeg_tables: Option<(usize, usize)>,
    photometric: u16,
    samples: u16,
    bits: u16,
    planar: u16,
    sample_format: u16,
    ycbcr_subsampling: bool,
    /// Palette images: the 16-bit red, green and blue tables, one after the other.
    colour_map: Option<Vec<u16>>,
}

/// An opened TIFF, showing one page of its stack (page 0 unless chosen by [`Image::view`]).
pub struct TiffImage {
    map: Arc<crate::image::guard::Map>,
    info: Arc<ImageInfo>,
    /// Levels of every stack page (a plain pyramid is a stack of one page).
    pages: Arc<Vec<Vec<LevelData>>>,
    /// The page shown.
    page: usize,
}

/// A fault in the file, as an error.
fn bad(fault: Fault) -> ImageError {
    ImageError::malformed(Format::Tiff, fault)
}

impl TiffImage {
    /// A reader for slicing stored bytes (offset width does not matter there).
    fn reader(&self) -> Reader<'_> {
        Reader {
            data: &self.map[..],
            little_endian: matches!(&self.map[..2], b"II"),
            big_tiff: false,
        }
    }

    fn check(&self, k: u32, t: u32) -> Result<(&Level, &LevelData), ImageError> {
        let level = self
            .info
            .levels
            .get(k as usize)
            .ok_or(ImageError::NoSuchLevel(k))?;
        if t >= level.tile_count() {
            return Err(ImageError::NoSuchTile(t));
        }
        Ok((level, &self.pages[self.page][k as usize]))
    }

    /// The stored bytes of tile `t` of a level.
    fn stored(&self, d: &LevelData, t: u32) -> Result<&[u8], ImageError> {
        let r = self.reader();
        let missing = || ImageError::NoSuchTile(t);
        let off = r.uint_at(&d.offsets, t as u64)?.ok_or_else(missing)?;
        let len = r.uint_at(&d.counts, t as u64)?.ok_or_else(missing)?;
        if len == 0 || len > 256 << 20 {
            return Err(bad(Fault::TileLength { tile: t, len }));
        }
        r.bytes(off, len)
    }

    fn jpeg_bitstream(&self, d: &LevelData, t: u32) -> Result<Vec<u8>, ImageError> {
        let tile = self.stored(d, t)?;
        match d.jpeg_tables {
            Some((pos, len)) if len > 4 => {
                let tables = &self.map[pos..pos + len];
                if tile.len() < 2 || tile[..2] != [0xFF, 0xD8] || tables[..2] != [0xFF, 0xD8] {
                    return Err(DecodeError::NoSoi(t).into());
                }
                let mut out = Vec::with_capacity(len + tile.len());
                out.extend_from_slice(&tables[..len - 2]);
                out.extend_from_slice(&tile[2..]);
                Ok(out)
            }
            _ => Ok(tile.to_vec()),
        }
    }
}

impl Image for TiffImage {
    fn info(&self) -> &ImageInfo {
        &self.info
    }

    fn view(&self, x: i32, _y: i32) -> Option<Result<Arc<dyn Image>, ImageError>> {
        if self.pages.len() < 2 {
            return None;
        }
        let Some(page) = usize::try_from(x).ok().filter(|&p| p < self.pages.len()) else {
            return Some(Err(ImageError::NoSuchView(x)));
        };
        Some(Ok(Arc::new(TiffImage {
            map: Arc::clone(&self.map),
            info: Arc::clone(&self.info),
            pages: Arc::clone(&self.pages),
            page,
        })))
    }

    fn encoded_tile(&self, k: u32, t: u32) -> Result<Option<EncodedTile>, ImageError> {
        let (level, d) = self.check(k, t)?;
        let complete = level.tile_size(t) == Some((level.tile_width, level.tile_height));
        if d.compression == 50001 {
            let passable = complete && d.bits == 8 && d.planar == 1 && matches!(d.samples, 3 | 4);
            let bytes = self.stored(d, t)?;
            if !passable || bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WEBP" {
                return Ok(None);
            }
            return Ok(Some(EncodedTile {
                codec: StoredCodec::Webp,
                bytes: bytes.to_vec(),
            }));
        }
        let passable = d.compression == 7
            && !matches!(d.photometric, 3 | 8)
            && complete
            && d.bits == 8
            && d.planar == 1
            && matches!(d.samples, 1 | 3)
            && !(d.photometric == 2 && d.ycbcr_subsampling);
        if !passable {
            return Ok(None);
        }
        let bytes = self.jpeg_bitstream(d, t)?;
        // A frame that disagrees with the directory is decoded, and so refused, here
        // rather than handed to a client's decoder.
        if !jpeg::jpeg_passable(&bytes, (level.tile_width, level.tile_height), d.samples) {
            return Ok(None);
        }
        Ok(Some(EncodedTile {
            codec: StoredCodec::Jpeg,
            bytes,
        }))
    }

    fn decode_tile(&self, k: u32, t: u32) -> Result<Tile, ImageError> {
        let (level, d) = self.check(k, t)?;
        self.tile(level, d, t)
    }

    fn decode_tile_part(
        &self,
        k: u32,
        t: u32,
        (x, y, w, h): (u32, u32, u32, u32),
    ) -> Result<(Tile, (u32, u32)), ImageError> {
        let (level, d) = self.check(k, t)?;
        let (tw, th) = level.tile_size(t).expect("checked");
        let whole = (x, y, w, h) == (0, 0, tw, th);
        let jpeg = matches!(d.compression, 6 | 7)
            && d.bits == 8
            && (d.planar == 1 || d.samples == 1)
            && matches!(d.samples, 1 | 3)
            && d.photometric != 3;
        if whole || !jpeg || w == 0 || h == 0 || x + w > tw || y + h > th {
            return Ok((self.decode_tile(k, t)?, (0, 0)));
        }
        // Edge tiles of a region: decode only the rows and block columns it needs.
        let channels = d.samples as usize;
        let part = (x as usize, y as usize, w as usize, h as usize);
        let (x0, y0, pw, ph, px) = jpeg::jpeg_part(
            &self.jpeg_bitstream(d, t)?,
            d.samples,
            (level.tile_width as usize, level.tile_height as usize),
            Some(part),
        )?;
        let (samples, channels) = self.finish_samples(d, Samples::U8(px), channels)?;
        Ok((
            Tile {
                width: pw as u32,
                height: ph as u32,
                channels: channels as u16,
                data: samples,
            },
            (x0 as u32, y0 as u32),
        ))
    }
}

/// Decompresses one chunk (exposed for the TIFF writer's tests).
#[cfg(test)]
pub fn decompress_for_tests(compression: u16, src: &[u8], expected: usize) -> Vec<u8> {
    decode::decompress(compression, src, expected).expect("decodes")
}

#[cfg(test)]
mod tests;
