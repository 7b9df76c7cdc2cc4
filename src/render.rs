//! Turns a request model into a response: tile cache lookup, source read,
//! pipeline and encoder, in that order.

use crate::config::Config;
use crate::encode::embed::{embed, Density, DensityUnit, Embed};
use crate::encode::{self, Format};
use crate::image::cache::Opened;
use crate::image::Tile;
use crate::image::{ColourSpace, ImageError, ImageInfo, ResolutionUnit, StoredCodec};
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

fn image_error(cfg: &Config, client: &str, e: &ImageError) -> Response {
    let status = match e {
        ImageError::Decode(_) => 500,
        _ => 404,
    };
    log::error!("{client}: {e}");
    Response::text_error(cfg, status, &format!("{client}: {e}"))
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

/// The quality-layer view value from `LYR` and `MAX_LAYERS` (images.md §4).
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

/// One tile through the tile pipeline (processing.md §2).
pub fn tile(
    cfg: &Config,
    cache: Option<&shm::Cache>,
    opened: &Opened,
    client: &str,
    req: TileRequest,
    view: &View,
) -> Response {
    let opened = match opened.for_view((view.xangle, view.yangle), layer_view(cfg, view)) {
        Ok(o) => o,
        Err(e) => return image_error(cfg, client, &e),
    };
    let opened = &*opened;
    let info = opened.image.info();
    let n = info.num_levels() as i64;
    if req.res < 0 || req.res >= n || req.tile < 0 {
        return Response::text_error(
            cfg,
            404,
            &format!(
                "Asked for non-existent resolution or tile: {},{}",
                req.res, req.tile
            ),
        );
    }
    let k = (n - 1 - req.res) as u32;
    let level = &info.levels[k as usize];
    let count = level.tile_count() as i64;
    if req.tile >= count {
        return Response::text_error(
            cfg,
            404,
            &format!("Asked for non-existent tile: {}", req.tile),
        );
    }
    // A client rotating a whole image by 180 keeps its tile grid (iip.md §5).
    let t = if view.right_angle() == 180 {
        (count - 1 - req.tile) as u32
    } else {
        req.tile as u32
    };

    // Unprocessed tiles go through the shared cache, keyed by everything that shapes them.
    let quality = quality_for(cfg, req.format, view.quality);
    let codec = view.tiff_codec.unwrap_or(cfg.tiff_compression);
    let mtime = mtime_nanos(opened);
    let key_of = |u: u32| {
        shm::key(&[
            opened.path.as_os_str().as_encoded_bytes(),
            &mtime.to_le_bytes(),
            &[k as u8, req.format as u8],
            &u.to_le_bytes(),
            &quality.to_le_bytes(),
            &codec.to_le_bytes(),
            &view.layers.to_le_bytes(),
            &view.xangle.to_le_bytes(),
            &view.yangle.to_le_bytes(),
        ])
    };
    let mut key = cacheable(cfg, cache, view).then(|| key_of(t));
    if let (Some(c), Some(own)) = (cache, key) {
        if let Some(bytes) = c.get(own) {
            log::debug!("tile cache hit: {client} {k},{t}");
            return Response::content(cfg, req.format.mime(), bytes, Some(opened.mtime), None);
        }
        // Tiles that decode more cheaply together are decoded, encoded and stored
        // together, when the cache will keep them: a viewer asks for its neighbours next.
        if let Some(block) = opened.image.tile_block(k, t) {
            if c.admit_new(own) {
                let done = block_bytes(
                    cfg,
                    c,
                    opened,
                    client,
                    (k, t),
                    block,
                    req.format,
                    view,
                    key_of,
                );
                return match done {
                    Ok(bytes) => {
                        Response::content(cfg, req.format.mime(), bytes, Some(opened.mtime), None)
                    }
                    Err(r) => r,
                };
            }
            // Refused now: `put` must not decide again (the refusal made the key one
            // that missed recently, which it would admit).
            key = None;
        }
    }
    let bytes = match tile_bytes(cfg, opened, client, (k, t), req.format, view) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let (Some(c), Some(key)) = (cache, key) {
        if c.put(key, &bytes) {
            log::debug!("tile cache insert: {client} {k},{t}");
        }
    }
    Response::content(cfg, req.format.mime(), bytes, Some(opened.mtime), None)
}

/// The encoded bytes of one tile: the stored bitstream when it can pass through,
/// else decoded, processed and encoded.
fn tile_bytes(
    cfg: &Config,
    opened: &Opened,
    client: &str,
    (k, t): (u32, u32),
    format: Format,
    view: &View,
) -> Result<Vec<u8>, Response> {
    let info = opened.image.info();
    let level = &info.levels[k as usize];
    let same_codec = match (format, level.codec) {
        (Format::Jpeg, StoredCodec::Jpeg) => matches!(info.channels, 1 | 3),
        (Format::Webp, StoredCodec::Webp) => matches!(info.channels, 3 | 4),
        _ => false,
    };
    let passthrough = cfg.codec_passthrough
        && same_codec
        && watermark(cfg).is_none()
        && view.quality.is_none()
        && !view.needs_pixels()
        && info.bits_per_sample == 8
        && info.colour != ColourSpace::CieLab;
    if passthrough {
        match opened.image.encoded_tile(k, t) {
            Ok(Some(enc)) => {
                let meta = Embed {
                    icc: icc_for(cfg, info, info.channels),
                    ..Embed::default()
                };
                return Ok(embed(enc.bytes, format, &meta));
            }
            Ok(None) => {}
            Err(e) => return Err(image_error(cfg, client, &e)),
        }
    }
    let decoded = opened
        .image
        .decode_tile(k, t)
        .map_err(|e| image_error(cfg, client, &e))?;
    encode_tile(cfg, opened, client, k, decoded, format, view)
}

/// Tile `t` of level `k`, decoded in one pass with the other tiles of `block` (columns
/// and rows, see [`Image::tile_block`]); each of them not cached yet is encoded and
/// stored under `key_of` its number, `t` as [`shm::Cache::admit_new`] admitted it.
#[allow(clippy::too_many_arguments)]
fn block_bytes(
    cfg: &Config,
    cache: &shm::Cache,
    opened: &Opened,
    client: &str,
    (k, t): (u32, u32),
    (c0, r0, nc, nr): (u32, u32, u32, u32),
    format: Format,
    view: &View,
    key_of: impl Fn(u32) -> (u64, u64),
) -> Result<Vec<u8>, Response> {
    let level = &opened.image.info().levels[k as usize];
    let (tw, th) = (level.tile_width, level.tile_height);
    let (x0, y0) = (c0 * tw, r0 * th);
    let w = ((c0 + nc) * tw).min(level.width).saturating_sub(x0);
    let h = ((r0 + nr) * th).min(level.height).saturating_sub(y0);
    let alone = || {
        let bytes = tile_bytes(cfg, opened, client, (k, t), format, view)?;
        cache.put_admitted(key_of(t), &bytes);
        Ok(bytes)
    };
    // On an error, decode the tile alone: a damaged part elsewhere in the block must
    // not fail it, and its own damage gets the error a single tile gets.
    let Some(Ok(decoded)) = opened.image.decode_region(k, (x0, y0, w, h)) else {
        return alone();
    };
    let mut mine = None;
    for row in r0..r0 + nr {
        for col in c0..c0 + nc {
            let u = row * level.columns() + col;
            let Some((uw, uh)) = level.tile_size(u) else {
                continue;
            };
            if u != t && cache.contains(key_of(u)) {
                continue;
            }
            let mut part = pipeline::blank_like(&decoded, uw, uh);
            pipeline::blit_tile(
                &mut part,
                (0, 0),
                &decoded,
                ((col - c0) * tw, (row - r0) * th, uw, uh),
            );
            match encode_tile(cfg, opened, client, k, part, format, view) {
                Ok(bytes) => {
                    cache.put_admitted(key_of(u), &bytes);
                    if u == t {
                        mine = Some(bytes);
                    }
                }
                Err(r) if u == t => return Err(r),
                Err(_) => {}
            }
        }
    }
    log::debug!("tile block decoded: {client} {k},{t}: {nc}x{nr} tiles from {c0},{r0}");
    mine.map_or_else(alone, Ok)
}

/// A decoded tile of level `k` processed and encoded for `view`.
fn encode_tile(
    cfg: &Config,
    opened: &Opened,
    client: &str,
    k: u32,
    decoded: Tile,
    format: Format,
    view: &View,
) -> Result<Vec<u8>, Response> {
    let info = opened.image.info();
    let level = &info.levels[k as usize];
    let hist = histogram_if_needed(opened, view).map_err(|e| image_error(cfg, client, &e))?;
    let mut raster = finish(
        to_raster(decoded, opened, view, hist.as_ref()),
        format,
        view,
        hist.as_ref(),
    );
    // One block: the whole tile.
    apply_watermark(cfg, &mut raster, u32::MAX);
    let full = &info.levels[0];
    let meta = Embed {
        icc: icc_for(cfg, info, raster.channels),
        density: density(
            info,
            level.width as f64 / full.width as f64,
            level.height as f64 / full.height as f64,
        ),
        ..Embed::default()
    };
    encode_bytes(
        cfg,
        client,
        &raster,
        format,
        (view.quality, view.tiff_codec),
        &meta,
    )
}

/// The source's pixel density scaled by output pixels per full-resolution pixel
/// (processing.md §6), when the source states one.
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

/// The image histogram (processing.md §1) when stretch or equalisation asks for it:
/// tile 0 of the smallest level, at 8 bits.
fn histogram_if_needed(opened: &Opened, view: &View) -> Result<Option<[u64; 256]>, ImageError> {
    if !view.processing.needs_histogram() {
        return Ok(None);
    }
    let k = opened.image.info().num_levels() - 1;
    let small = pipeline::to_8bit(opened.image.decode_tile(k, 0)?);
    Ok(Some(float::histogram(&small)))
}

/// Native samples to 8 bits: through the float branch when processing asks for it.
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
    if view.processing.needs_float() {
        float::process(&tile, &info.min, &info.max, &view.processing, hist)
    } else {
        pipeline::to_8bit(tile)
    }
}

/// Channel flattening, colour treatment, equalisation, mirror and rotation: the steps
/// after the pixels are at their output size (processing.md §2 steps 8–13).
fn finish(raster: Raster, format: Format, view: &View, hist: Option<&[u64; 256]>) -> Raster {
    let keep = encode::channels_for(format, raster.channels);
    let mut raster = pipeline::keep_channels(raster, keep);
    raster = match view.colour {
        Colour::AsIs => raster,
        Colour::Grey if raster.channels >= 3 => colour::greyscale(&raster),
        Colour::Grey => raster,
        Colour::Bitonal => colour::bilevel(&raster),
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
    client: &str,
    raster: &Raster,
    format: Format,
    (quality, tiff_compression): (Option<i32>, Option<i32>),
    meta: &Embed,
) -> Result<Vec<u8>, Response> {
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
    encode::encode(raster, format, quality, opts)
        .map(|b| embed(b, format, meta))
        .map_err(|e| {
            log::error!("{client}: {e}");
            Response::text_error(cfg, 500, &e.to_string())
        })
}

/// Most pixels one region export may assemble at its source level.
pub const MAX_REGION_PIXELS: u64 = 64 << 20;

/// Picks the smallest level whose part of the region covers the output
/// (processing.md §3.1) and returns `(k, left, top, width, height)` at that level.
pub fn region_at_level(
    info: &crate::image::ImageInfo,
    region: [f64; 4],
    ow: u32,
    oh: u32,
) -> (u32, u32, u32, u32, u32) {
    let (fw, fh) = (info.width() as f64, info.height() as f64);
    let n = info.num_levels();
    let eps = f32::EPSILON as f64;
    let mut chosen = 0;
    for k in (0..n).rev() {
        let l = &info.levels[k as usize];
        let s = (1u64 << k.min(62)) as f64;
        let sw = if region[2] >= 1.0 {
            l.width as f64
        } else {
            (fw * region[2] / s + eps).floor()
        };
        let sh = if region[3] >= 1.0 {
            l.height as f64
        } else {
            (fh * region[3] / s + eps).floor()
        };
        if sw >= ow as f64 && sh >= oh as f64 {
            chosen = k;
            break;
        }
    }
    let l = &info.levels[chosen as usize];
    let s = (1u64 << chosen.min(62)) as f64;
    let place = |frac_pos: f64, frac_len: f64, full: f64, size: u32| -> (u32, u32) {
        let start = ((full * frac_pos / s).round() as u32).min(size.saturating_sub(1));
        let mut len = (full * frac_len / s).round() as u32;
        if start + len > size {
            len = size - start;
        }
        (start, len.max(1))
    };
    let (left, width) = place(region[0], region[2], fw, l.width);
    let (top, height) = place(region[1], region[3], fh, l.height);
    (chosen, left, top, width, height)
}

/// Reads a rectangle of level `k`, at native depth: one window decode where the format
/// has it, else from the tiles that intersect it.
pub fn assemble(
    opened: &Opened,
    k: u32,
    (left, top, width, height): (u32, u32, u32, u32),
) -> Result<Tile, ImageError> {
    if let Some(r) = opened.image.decode_region(k, (left, top, width, height)) {
        return r;
    }
    let level = &opened.image.info().levels[k as usize];
    let (tw, th) = (level.tile_width, level.tile_height);
    let mut out: Option<Tile> = None;
    for ty in top / th..=(top + height - 1) / th {
        for tx in left / tw..=(left + width - 1) / tw {
            let t = ty * level.columns() + tx;
            let (x0, y0) = (tx * tw, ty * th);
            // The part of this tile inside the rectangle, in tile coordinates.
            let (sx, sy) = (left.max(x0) - x0, top.max(y0) - y0);
            let ex = (left + width).min(x0 + tw).min(level.width) - x0;
            let ey = (top + height).min(y0 + th).min(level.height) - y0;
            let (tile, (ox, oy)) = opened.image.decode_tile_part(
                k,
                t,
                (sx, sy, ex.saturating_sub(sx), ey.saturating_sub(sy)),
            )?;
            let dst = out.get_or_insert_with(|| pipeline::blank_like(&tile, width, height));
            let (dx, dy) = (x0 + sx - left, y0 + sy - top);
            if ox > sx
                || oy > sy
                || !pipeline::blit_tile(dst, (dx, dy), &tile, (sx - ox, sy - oy, ex - sx, ey - sy))
            {
                return Err(ImageError::Decode(format!(
                    "tile {t} decoded unlike its neighbours (depth, channels or extent)"
                )));
            }
        }
    }
    out.ok_or_else(|| ImageError::Decode("empty region".into()))
}

/// `<stem>` of a client path: after the last `/`, before the last `.`.
pub fn stem(client: &str) -> &str {
    let name = client.rsplit('/').next().unwrap_or(client);
    match name.rfind('.') {
        Some(p) if p > 0 => &name[..p],
        _ => name,
    }
}

/// A region export through the region pipeline (processing.md §3).
pub fn region(
    cfg: &Config,
    cache: Option<&shm::Cache>,
    opened: &Opened,
    client: &str,
    req: &RegionRequest,
    view: &View,
) -> Response {
    let opened = match opened.for_view((view.xangle, view.yangle), layer_view(cfg, view)) {
        Ok(o) => o,
        Err(e) => return image_error(cfg, client, &e),
    };
    let opened = &*opened;
    let info = opened.image.info();
    let (mut ow, mut oh) = (req.width.max(1), req.height.max(1));
    let (k, left, top, width, height) = region_at_level(info, req.region, ow, oh);
    if req.no_upscale && (ow > width || oh > height) {
        let f = (width as f64 / ow as f64).min(height as f64 / oh as f64);
        ow = ((ow as f64 * f).round() as u32).clamp(1, width);
        oh = ((oh as f64 * f).round() as u32).clamp(1, height);
    }
    let pixels = width as u64 * height as u64;
    let out_pixels = ow as u64 * oh as u64;
    if pixels > MAX_REGION_PIXELS || out_pixels > MAX_REGION_PIXELS {
        return Response::text_error(
            cfg,
            400,
            &format!("Region too large: {width}x{height} source pixels for a {ow}x{oh} output (limit {MAX_REGION_PIXELS} pixels)"),
        );
    }
    let disposition = format!(
        "{}; filename=\"{}_{ow}x{oh}.{}\"",
        if req.attachment {
            "attachment"
        } else {
            "inline"
        },
        stem(client),
        req.format.extension()
    );
    // Unprocessed exports (thumbnails above all) go through the shared cache too, keyed
    // by everything that shapes their bytes.
    let key = (cacheable(cfg, cache, view) && req.colour == Colour::AsIs).then(|| {
        let mtime = mtime_nanos(opened);
        let quality = quality_for(cfg, req.format, view.quality);
        let codec = view.tiff_codec.unwrap_or(cfg.tiff_compression);
        let region: Vec<u8> = req.region.iter().flat_map(|f| f.to_le_bytes()).collect();
        shm::key(&[
            b"region",
            opened.path.as_os_str().as_encoded_bytes(),
            &mtime.to_le_bytes(),
            &region,
            &ow.to_le_bytes(),
            &oh.to_le_bytes(),
            &[req.format as u8],
            &quality.to_le_bytes(),
            &codec.to_le_bytes(),
            &layer_view(cfg, view).to_le_bytes(),
            &view.xangle.to_le_bytes(),
            &view.yangle.to_le_bytes(),
        ])
    });
    if let (Some(c), Some(key)) = (cache, key) {
        if let Some(bytes) = c.get(key) {
            log::debug!("region cache hit: {client} {ow}x{oh}");
            return Response::content(
                cfg,
                req.format.mime(),
                bytes,
                Some(opened.mtime),
                Some(disposition),
            );
        }
    }
    let (tile, hist) = match assemble(opened, k, (left, top, width, height))
        .and_then(|t| Ok((t, histogram_if_needed(opened, view)?)))
    {
        Ok(r) => r,
        Err(e) => return image_error(cfg, client, &e),
    };
    let raster = to_raster(tile, opened, view, hist.as_ref());
    let filter = match cfg.interpolation {
        0 => Filter::Nearest,
        1 => Filter::Bilinear,
        _ => Filter::Area,
    };
    let raster = pipeline::resample::resize(&raster, ow, oh, filter);
    let view = View {
        colour: req.colour,
        ..view.clone()
    };
    let mut raster = finish(raster, req.format, &view, hist.as_ref());
    let l0 = &info.levels[0];
    apply_watermark(cfg, &mut raster, 2 * l0.tile_width.max(l0.tile_height));
    let full = &info.levels[0];
    let meta = Embed {
        icc: icc_for(cfg, info, raster.channels),
        xmp: info.xmp.as_deref(),
        exif: info.exif.as_deref(),
        density: density(
            info,
            ow as f64 / (req.region[2] * full.width as f64),
            oh as f64 / (req.region[3] * full.height as f64),
        ),
        text: Some(&info.metadata),
    };
    match encode_bytes(
        cfg,
        client,
        &raster,
        req.format,
        (view.quality, view.tiff_codec),
        &meta,
    ) {
        Ok(bytes) => {
            if let (Some(c), Some(key)) = (cache, key) {
                if c.put(key, &bytes) {
                    log::debug!("region cache insert: {client} {ow}x{oh}");
                }
            }
            Response::content(
                cfg,
                req.format.mime(),
                bytes,
                Some(opened.mtime),
                Some(disposition),
            )
        }
        Err(r) => r,
    }
}
