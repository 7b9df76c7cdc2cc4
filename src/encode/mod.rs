//! Encoders from 8-bit rasters to output bitstreams.

pub mod avif;
pub mod embed;
pub mod jpeg;
pub mod png;
pub mod tiff;
pub mod webp;

use crate::pipeline::Raster;

/// An output format a client can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    Jpeg,
    Png,
    Webp,
    Avif,
    Tiff,
}

impl Format {
    pub fn mime(self) -> &'static str {
        match self {
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
            Format::Webp => "image/webp",
            Format::Avif => "image/avif",
            Format::Tiff => "image/tiff",
        }
    }
    pub fn extension(self) -> &'static str {
        match self {
            Format::Jpeg => "jpg",
            Format::Png => "png",
            Format::Webp => "webp",
            Format::Avif => "avif",
            Format::Tiff => "tif",
        }
    }
}

/// Why an encoder refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("JPEG encoding failed: {0}")]
    Jpeg(String),
    #[error("PNG encoding failed: {0}")]
    Png(String),
    #[error("WebP encoding failed: {0}")]
    Webp(String),
    #[error("TIFF encoding failed: {0}")]
    Tiff(String),
    #[error("AVIF encoding failed: {0}")]
    Avif(String),
}

/// A TIFF tag to write: (tag, field type, count, value bytes in little-endian order).
pub type TiffTag = (u16, u16, u32, Vec<u8>);

/// Encoder settings beyond the quality number.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options<'a> {
    /// TIFF compression (`TIFF_COMPRESSION` codes).
    pub tiff_compression: i32,
    /// Metadata tags for TIFF output (see [`embed::tiff_tags`]).
    pub tiff_tags: &'a [TiffTag],
}

/// Encodes `raster` as `format` at `quality` (already clamped to the format's range).
pub fn encode(
    raster: &Raster,
    format: Format,
    quality: i32,
    opts: Options<'_>,
) -> Result<Vec<u8>, EncodeError> {
    match format {
        Format::Jpeg => jpeg::encode(raster, quality),
        Format::Png => png::encode(raster, quality),
        Format::Webp => webp::encode(raster, quality),
        Format::Avif => avif::encode(raster, quality),
        Format::Tiff => tiff::encode(raster, opts.tiff_compression, quality, opts.tiff_tags),
    }
}

/// The channels an encoder can carry (docs/processing.md §4.11).
pub fn channels_for(format: Format, channels: u16) -> u16 {
    match format {
        Format::Jpeg => match channels {
            1 | 2 => 1,
            _ => 3,
        },
        Format::Png | Format::Webp | Format::Avif => {
            if channels > 4 {
                3
            } else {
                channels
            }
        }
        Format::Tiff => channels,
    }
}
