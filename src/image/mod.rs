//! Image sources: format detection and the common model every reader exposes.
//!
//! Readers map their file with `memmap2` and never read it whole. They know
//! nothing about protocols: they answer "what is this image" ([`ImageInfo`]),
//! "give me the stored bytes of tile t at level k" ([`Image::encoded_tile`]) and
//! "decode tile t at level k" ([`Image::decode_tile`]).
//!
//! Levels are numbered natively here: `k = 0` is the full image. Protocols
//! convert from IIP resolution numbers (`r = N-1-k`).

pub mod blit;
pub mod cache;
mod error;
pub use error::{Codec, DecodeError, Fault, Format, ImageError, Part, Unsupported};
pub mod guard;
pub mod jp2;
mod jp2box;
pub mod jpeg;
mod meta;
pub use meta::from_jpeg as meta_from_jpeg;
mod openjpeg;
pub mod sequence;
pub mod shared;
pub mod tiff;
pub mod watermark;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// The colour space the samples are in (iipsrv's `ColorSpace`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColourSpace {
    Greyscale,
    Srgb,
    CieLab,
    Bilevel,
    None,
}

/// How the stored samples are interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleFormat {
    Unsigned,
    Float,
}

/// Codec of the stored tiles of one level, as far as pass-through cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoredCodec {
    None,
    Jpeg,
    Deflate,
    Lzw,
    Zstd,
    Webp,
    PackBits,
    Other(u16),
}

/// One stored resolution. `k = 0` is the full image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Level {
    pub width: u32,
    pub height: u32,
    pub tile_width: u32,
    pub tile_height: u32,
    pub codec: StoredCodec,
}

impl Level {
    pub fn columns(&self) -> u32 {
        self.width.div_ceil(self.tile_width)
    }
    pub fn rows(&self) -> u32 {
        self.height.div_ceil(self.tile_height)
    }
    pub fn tile_count(&self) -> u32 {
        self.columns() * self.rows()
    }
    /// Real (edge-cropped) size of tile `t`, or `None` if `t` is out of range.
    pub fn tile_size(&self, t: u32) -> Option<(u32, u32)> {
        if t >= self.tile_count() {
            return None;
        }
        let (col, row) = (t % self.columns(), t / self.columns());
        let w = (self.width - col * self.tile_width).min(self.tile_width);
        let h = (self.height - row * self.tile_height).min(self.tile_height);
        Some((w, h))
    }
}

/// Resolution unit of `dpi_x`/`dpi_y`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResolutionUnit {
    #[default]
    Unknown,
    Inch,
    Centimetre,
}

/// Everything read from the file header: what `OBJ`, `info.json` and the
/// pipelines need. Cached per path + mtime.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    /// Levels, largest first (`levels[0]` is the full image).
    pub levels: Vec<Level>,
    pub channels: u16,
    /// Stored bits per sample (1..32), what `OBJ=Bits-per-channel` reports.
    pub bits_per_sample: u16,
    pub sample_format: SampleFormat,
    pub colour: ColourSpace,
    /// Per-channel sample range (after the expansion of 9–15-bit data to 16 bits).
    pub min: Vec<f64>,
    pub max: Vec<f64>,
    pub dpi_x: f64,
    pub dpi_y: f64,
    pub resolution_unit: ResolutionUnit,
    /// Text metadata by iipsrv key (`creator`, `rights`, `date`, `description`, `title`, ...).
    pub metadata: BTreeMap<String, String>,
    pub icc: Option<Vec<u8>>,
    pub xmp: Option<String>,
    /// EXIF of a plain JPEG source (its APP1 payload after `Exif\0\0`); not read from TIFF.
    pub exif: Option<Vec<u8>>,
    pub horizontal_views: Vec<i32>,
    pub vertical_views: Vec<i32>,
    /// Quality layers (JPEG2000); 0 for formats without layers.
    pub quality_layers: u32,
    /// Stack pages (TIFF stacks): name (`DocumentName`, may be empty) and scale
    /// (`STONITS`, 1 when absent). Empty for images that are not stacks.
    pub pages: Vec<(String, f64)>,
}

impl ImageInfo {
    /// Unsigned integer samples with the full range of their depth, no resolution,
    /// no metadata, a single view: the starting point of every reader.
    pub fn plain(levels: Vec<Level>, channels: u16, bits: u16, colour: ColourSpace) -> ImageInfo {
        let max = if bits <= 8 { 255.0 } else { 65535.0 };
        ImageInfo {
            levels,
            channels,
            bits_per_sample: bits,
            sample_format: SampleFormat::Unsigned,
            colour,
            min: vec![0.0; channels as usize],
            max: vec![max; channels as usize],
            dpi_x: 0.0,
            dpi_y: 0.0,
            resolution_unit: ResolutionUnit::Unknown,
            metadata: BTreeMap::new(),
            icc: None,
            xmp: None,
            exif: None,
            horizontal_views: vec![0],
            vertical_views: vec![90],
            quality_layers: 0,
            pages: Vec::new(),
        }
    }

    pub fn width(&self) -> u32 {
        self.levels[0].width
    }
    pub fn height(&self) -> u32 {
        self.levels[0].height
    }
    pub fn num_levels(&self) -> u32 {
        self.levels.len() as u32
    }
}

/// Decoded samples of one tile, interleaved, cropped to the real edge size.
#[derive(Debug, Clone, PartialEq)]
pub struct Tile {
    pub width: u32,
    pub height: u32,
    pub channels: u16,
    pub data: Samples,
}

/// Sample storage by depth. Lower depths are expanded on decode.
#[derive(Debug, Clone, PartialEq)]
pub enum Samples {
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    F32(Vec<f32>),
}

/// A stored tile's bitstream, ready to be sent without decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedTile {
    pub codec: StoredCodec,
    /// A complete, standalone bitstream (for JPEG: tables merged).
    pub bytes: Vec<u8>,
}

/// An opened image file.
pub trait Image: Send + Sync {
    fn info(&self) -> &ImageInfo;
    /// The stored bitstream of tile `t` at level `k` as a standalone file, when the
    /// level's codec can be passed through (JPEG, WebP) and the tile is complete.
    /// `Ok(None)` when it cannot be passed through.
    fn encoded_tile(&self, k: u32, t: u32) -> Result<Option<EncodedTile>, ImageError>;
    /// Decode tile `t` of level `k`.
    fn decode_tile(&self, k: u32, t: u32) -> Result<Tile, ImageError>;

    /// Decode the part `(x, y, w, h)` of tile `t` of level `k` (tile coordinates, inside
    /// the tile). The answer may cover more than the part; the second value is where its
    /// first pixel sits in the tile. By default the whole tile, at `(0, 0)`.
    fn decode_tile_part(
        &self,
        k: u32,
        t: u32,
        _part: (u32, u32, u32, u32),
    ) -> Result<(Tile, (u32, u32)), ImageError> {
        Ok((self.decode_tile(k, t)?, (0, 0)))
    }

    /// The image seen from view `(x, y)` (a stack page, a sequence's file). `None` for
    /// images with a single view, which ignore the angles.
    fn view(&self, _x: i32, _y: i32) -> Option<Result<Arc<dyn Image>, ImageError>> {
        None
    }

    /// The image decoding a different number of quality layers (`l` as the view gives
    /// it, docs/sources.md §4). `None` when layers do not apply or are already those.
    fn with_layers(&self, _l: i32) -> Option<Arc<dyn Image>> {
        None
    }

    /// Tiles of level `k` that decode more cheaply together than one by one, because
    /// decoding one also decodes coded data the others need (a JPEG2000 tile holds the
    /// code-blocks of several 256-pixel tiles, and a window also decodes the code-blocks
    /// around it): `(column, row, columns, rows)` of a block containing `t`, decoded
    /// with [`decode_region`](Self::decode_region). `None`: `t` alone.
    fn tile_block(&self, _k: u32, _t: u32) -> Option<(u32, u32, u32, u32)> {
        None
    }

    /// Rows of level `k` that a region read is best cut at: a band that starts and ends
    /// on these decodes no stored tile twice.
    fn band_rows(&self, k: u32) -> u32 {
        self.info()
            .levels
            .get(k as usize)
            .map_or(256, |l| l.tile_height.max(1))
    }

    /// Decode the rectangle `(left, top, width, height)` of level `k` in one pass, for
    /// formats that decode windows directly (JPEG2000). `None`: assemble from tiles.
    fn decode_region(
        &self,
        _k: u32,
        _rect: (u32, u32, u32, u32),
    ) -> Option<Result<Tile, ImageError>> {
        None
    }
}

/// Open `path` and detect its format from its first bytes.
pub fn open(path: &Path) -> Result<Arc<dyn Image>, ImageError> {
    let file = std::fs::File::open(path).map_err(ImageError::Open)?;
    // SAFETY: the map is read-only; a file truncated underneath it raises SIGBUS on the
    // pages past its end, which the guard turns into zeros and a failed request.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(ImageError::Open)?;
    from_map(map.into())
}

/// Opens an image held in memory (a copy in an anonymous map), as `open` would the
/// same bytes in a file: for tools and fuzzing.
pub fn open_bytes(bytes: &[u8]) -> Result<Arc<dyn Image>, ImageError> {
    let mut anon = memmap2::MmapMut::map_anon(bytes.len().max(1)).map_err(ImageError::Open)?;
    anon[..bytes.len()].copy_from_slice(bytes);
    let map = anon.make_read_only().map_err(ImageError::Open)?;
    from_map(map.into())
}

fn from_map(map: guard::Map) -> Result<Arc<dyn Image>, ImageError> {
    if map.len() < 10 {
        return Err(ImageError::TooShort);
    }
    match &map[..4] {
        b"II*\0" | b"MM\0*" | b"II+\0" | b"MM\0+" => Ok(Arc::new(tiff::TiffImage::parse(map)?)),
        _ if map[..3] == *b"I I" => Ok(Arc::new(tiff::TiffImage::parse(map)?)),
        [0xFF, 0xD8, 0xFF, _] => Ok(Arc::new(jpeg::JpegImage::parse(map)?)),
        _ if map.len() >= 12 && map[..12] == jp2::SIGNATURE => {
            Ok(Arc::new(jp2::Jp2Image::parse(map)?))
        }
        _ => Err(ImageError::UnknownFormat),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn level(width: u32, height: u32) -> Level {
        Level {
            width,
            height,
            tile_width: 256,
            tile_height: 256,
            codec: StoredCodec::None,
        }
    }

    #[test]
    fn tile_grid_f1_f3() {
        let l = level(5000, 3000);
        assert_eq!((l.columns(), l.rows(), l.tile_count()), (20, 12, 240));
        assert_eq!(l.tile_size(239), Some((136, 184)));
        assert_eq!(l.tile_size(240), None);
        let counts: Vec<u32> = [
            (5000, 3000),
            (2500, 1500),
            (1250, 750),
            (625, 375),
            (312, 187),
            (156, 93),
        ]
        .iter()
        .map(|&(w, h)| level(w, h).tile_count())
        .collect();
        assert_eq!(counts, [240, 60, 15, 6, 2, 1]);
        assert_eq!(level(2500, 1500).tile_size(59), Some((196, 220)));
    }
}
