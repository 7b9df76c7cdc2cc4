//! Turns a request model into a response: tile cache lookup, source read,
//! pipeline and encoder, in that order: tiles in [`tile`], region exports in
//! [`region`], and here what both share (qualities, watermarks, embedded metadata,
//! the last steps before encoding).

pub mod admission;
mod error;
pub mod flight;
pub mod offload;
mod region;
mod tile;
pub use error::RenderError;
pub use region::{assemble, region, region_at_level, stem, MAX_REGION_PIXELS};
pub use tile::tile;

use crate::config::Config;
use crate::encode::embed::{embed, Density, DensityUnit, Embed};
use crate::encode::{self, Format};
use crate::image::cache::Opened;
use crate::image::{ColourSpace, DecodeError, ImageError, ImageInfo, ResolutionUnit, StoredCodec};
use crate::image::{Samples, Tile};
use crate::model::{Colour, RegionRequest, TileRequest, View};
use crate::pipeline;
use crate::pipeline::float::{self, Contrast};
use crate::pipeline::resample::Filter;
use crate::pipeline::watermark::{self, Rng, Watermark};
use crate::pipeline::{colour, Raster};
use crate::response::Response;
use std::cell::RefCell;
use std::sync::OnceLock;

/// The configured default quality of a format (clamped as iipsrv clamps `QLT`).
pub fn quality_for(cfg: &Config, format: Format, requested: Option<i32>) -> i32 {
    match (format, requested) {
        (Format::Jpeg, Some(q)) => q.clamp(1, 100),
        (Format::Jpeg, None) => cfg.jpeg_quality,
        (Format::Png, Some(q)) => q.clamp(0, 9),
        (Format::Png, None) => cfg.png_quality,
        // QLT below 1 asks for lossless WebP.
        (Format::Webp, Some(q)) if q < 1 => -1,
        (Format::Webp, Some(q)) => q.clamp(-1, 100),
        (Format::Webp, None) => cfg.webp_quality,
        (Format::Avif, Some(q)) => q.clamp(-1, 100),
        (Format::Avif, None) => cfg.avif_quality,
        (Format::Tiff, Some(q)) => q.clamp(0, 100),
        (Format::Tiff, None) => cfg.tiff_quality,
    }
}

/// This worker's watermark, loaded from `WATERMARK` on first use (a worker process
/// lives with one configuration; a reload starts new workers).
fn watermark(cfg: &Config) -> Option<&'static Watermark> {
    static WATERMARK: OnceLock<Option<Watermark>> = OnceLock::new();
    WATERMARK
        .get_or_init(|| {
            let path = cfg.watermark.as_ref()?;
            match crate::image::watermark::load(path, cfg.watermark_opacity) {
                Ok(w) => Some(w),
                Err(e) => {
                    log::error!("WATERMARK {}: {e}", path.display());
                    None
                }
            }
        })
        .as_ref()
}

/// Whether a response may go through the shared cache: unprocessed, and not
/// watermarked (watermarks differ per request).
fn cacheable(cfg: &Config, cache: Option<&shm::Cache>, view: &View) -> bool {
    cache.is_some() && !view.needs_pixels() && watermark(cfg).is_none()
}

/// The file's modification time for cache keys, so a changed file is never served stale.
fn mtime_nanos(opened: &Opened) -> u128 {
    opened
        .mtime
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

fn apply_watermark(cfg: &Config, raster: &mut Raster, block: u32) {
    thread_local! {
        static RNG: RefCell<Rng> = RefCell::new(Rng::new(
            std::process::id() as u64
                ^ std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64),
        ));
    }
    if let Some(wm) = watermark(cfg) {
        RNG.with(|rng| {
            let mut rng = rng.borrow_mut();
            watermark::apply(raster, wm, block, cfg.watermark_probability, &mut || {
                rng.next_f64()
            });
        });
    }
}

/// `opened` as `view` sees it (stack page, sequence file, quality layers).
fn viewed<'a>(
    cfg: &Config,
    opened: &'a Opened,
    view: &View,
) -> Result<std::borrow::Cow<'a, Opened>, ImageError> {
    opened.for_view((view.xangle, view.yangle), layer_view(cfg, view))
}

/// The quality-layer view value from `LYR` and `MAX_LAYERS`.
fn layer_view(cfg: &Config, view: &View) -> i32 {
    let (lyr, m) = (view.layers, cfg.max_layers);
    if m > 0 {
        if lyr > 0 && lyr < m {
            lyr
        } else {
            m
        }
    } else if m < 0 && lyr == 0 {
        -1
    } else {
        lyr
    }
}

/// The source's pixel density scaled by output pixels per full-resolution pixel
/// when the source states one.
fn density(info: &ImageInfo, sx: f64, sy: f64) -> Option<Density> {
    (info.dpi_x > 0.0 && info.dpi_y > 0.0 && sx > 0.0 && sy > 0.0).then_some(Density {
        x: info.dpi_x * sx,
        y: info.dpi_y * sy,
        unit: match info.resolution_unit {
            ResolutionUnit::Inch => DensityUnit::Inch,
            ResolutionUnit::Centimetre => DensityUnit::Centimetre,
            ResolutionUnit::Unknown => DensityUnit::Unknown,
        },
    })
}

/// The source's ICC profile when `MAX_ICC` allows it and it describes the output's
/// colours (not after CIELAB conversion, not a colour profile on grey output).
fn icc_for<'a>(cfg: &Config, info: &'a ImageInfo, out_channels: u16) -> Option<&'a [u8]> {
    let icc = info.icc.as_deref().filter(|i| !i.is_empty())?;
    let allowed = match cfg.max_icc {
        m if m < 0 => true,
        0 => false,
        m => (icc.len() as i64) < m,
    };
    let same_kind =
        (info.channels >= 3) == (out_channels >= 3) && info.colour != ColourSpace::CieLab;
    (allowed && same_kind).then_some(icc)
}

/// The image histogram when stretch, equalisation or a bilevel output of an image that
/// is not bilevel already asks for it; computed once per image and view (see
/// [`image_histogram`]).
fn histogram_if_needed(
    cfg: &Config,
    opened: &Opened,
    view: &View,
) -> Result<Option<[u64; 256]>, ImageError> {
    if !view.processing.needs_histogram() && !bilevel_output(opened, view) {
        return Ok(None);
    }
    let key = (view.xangle, view.yangle, layer_view(cfg, view));
    opened
        .histograms
        .get_or_compute(key, || image_histogram(opened))
        .map(Some)
}

/// Whether `view` turns an image that is not bilevel into a bilevel output.
fn bilevel_output(opened: &Opened, view: &View) -> bool {
    view.colour == Colour::Bitonal && opened.image.info().colour != ColourSpace::Bilevel
}

/// The histogram of a whole image, from its smallest level's first tile: samples deeper
/// than 8 bits scaled from the image's range to 8 bits, then 256 bins of each pixel's
/// mean over its channels.
fn image_histogram(opened: &Opened) -> Result<[u64; 256], ImageError> {
    let info = opened.image.info();
    let tile = opened.image.decode_tile(info.num_levels() - 1, 0)?;
    let small = if info.bits_per_sample > 8 {
        let plain = float::Processing::default();
        float::process(&tile, &info.min, &info.max, &plain, None)
    } else {
        pipeline::to_8bit(tile)
    };
    Ok(float::histogram(&small))
}

/// Native samples to 8 bits: through the float branch when processing asks for it, and
/// always for float samples, whose range is the image's (often not 0..1).
fn to_raster(tile: Tile, opened: &Opened, view: &View, hist: Option<&[u64; 256]>) -> Raster {
    let info = opened.image.info();
    if info.colour == ColourSpace::CieLab && tile.channels >= 3 {
        let srgb = colour::cielab_tile_to_srgb(&tile);
        return if view.processing.needs_float() {
            float::process(&srgb, &[0.0; 3], &[1.0; 3], &view.processing, hist)
        } else {
            pipeline::to_8bit_rounded(srgb)
        };
    }
    if view.processing.needs_float() || matches!(tile.data, Samples::F32(_)) {
        float::process(&tile, &info.min, &info.max, &view.processing, hist)
    } else {
        pipeline::to_8bit(tile)
    }
}

/// Channel flattening, colour treatment, equalisation, mirror and rotation: the steps
/// after the pixels are at their output size. `hist` is the image histogram when
/// [`histogram_if_needed`] asked for it.
fn finish(
    raster: Raster,
    format: Format,
    (opened, view): (&Opened, &View),
    hist: Option<&[u64; 256]>,
) -> Raster {
    let keep = encode::channels_for(format, raster.channels);
    let mut raster = pipeline::keep_channels(raster, keep);
    raster = match (view.colour, hist) {
        (Colour::Grey, _) if raster.channels >= 3 => colour::greyscale(&raster),
        (Colour::Bitonal, Some(h)) if bilevel_output(opened, view) => {
            colour::bilevel(&raster, colour::otsu(h))
        }
        // Bilevel sources are bilevel already.
        _ => raster,
    };
    if let (Contrast::Equalise, Some(h)) = (view.processing.contrast, hist) {
        float::equalise(&mut raster, h);
    }
    if view.mirror {
        raster = pipeline::mirror_horizontal(raster);
    }
    match view.free_rotation {
        Some(a) => {
            let alpha = matches!(
                format,
                Format::Png | Format::Webp | Format::Tiff | Format::Avif
            );
            pipeline::rotate_free(&raster, a, alpha)
        }
        None => pipeline::rotate(raster, view.right_angle()),
    }
}

/// Encodes `raster` with the metadata `meta` (as TIFF tags, or embedded afterwards).
fn encode_bytes(
    cfg: &Config,
    raster: &Raster,
    format: Format,
    (quality, tiff_compression): (Option<i32>, Option<i32>),
    meta: &Embed,
) -> Result<Vec<u8>, RenderError> {
    let quality = quality_for(cfg, format, quality);
    let tiff_tags = if format == Format::Tiff {
        encode::embed::tiff_tags(meta)
    } else {
        Vec::new()
    };
    let opts = encode::Options {
        tiff_compression: tiff_compression.unwrap_or(cfg.tiff_compression),
        tiff_tags: &tiff_tags,
    };
    let bytes = encode::encode(raster, format, quality, opts)?;
    Ok(embed(bytes, format, meta))
}
