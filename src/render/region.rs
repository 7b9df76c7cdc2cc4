//! Region exports (`CVT`, IIIF regions, DeepZoom levels cut from a larger one): the
//! source level read band by band, each band resized into the output, then the output
//! finished and encoded, within the request's memory and time budgets.

use super::*;

/// Most pixels one region export may assemble at its source level.
pub const MAX_REGION_PIXELS: u64 = 64 << 20;

/// Picks the smallest level whose part of the region covers the output
/// and returns `(k, left, top, width, height)` at that level.
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
    // The whole image is the whole level: a level `2^k` times smaller than the full
    // image need not be `W/2^k` pixels (writers that round sizes up make it one more),
    // and rows or columns cut from it would stretch the rest of the output.
    if region[0] <= 0.0 && region[1] <= 0.0 && region[2] >= 1.0 && region[3] >= 1.0 {
        return (chosen, 0, 0, l.width, l.height);
    }
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
            if !crate::budget::within() {
                return Err(ImageError::OutOfTime);
            }
            if out.is_none() {
                let blank = pipeline::blank_like(&tile, width, height)
                    .ok_or(ImageError::OutOfMemory(width as usize * height as usize))?;
                out = Some(blank);
            }
            let dst = out.as_mut().expect("set just above");
            let (dx, dy) = (x0 + sx - left, y0 + sy - top);
            if ox > sx
                || oy > sy
                || !pipeline::blit_tile(dst, (dx, dy), &tile, (sx - ox, sy - oy, ex - sx, ey - sy))
            {
                return Err(DecodeError::UnlikeNeighbours(t).into());
            }
        }
    }
    out.ok_or(ImageError::Decode(DecodeError::EmptyRegion))
}

/// `<stem>` of a client path: after the last `/`, before the last `.`.
pub fn stem(client: &str) -> &str {
    let name = client.rsplit('/').next().unwrap_or(client);
    match name.rfind('.') {
        Some(p) if p > 0 => &name[..p],
        _ => name,
    }
}

/// A region export through the region pipeline.
pub fn region(
    cfg: &Config,
    cache: Option<&shm::Cache>,
    opened: &Opened,
    client: &str,
    req: &RegionRequest,
    view: &View,
) -> Response {
    region_response(cfg, cache, opened, client, req, view)
        .unwrap_or_else(|e| e.response(cfg, client))
}

/// [`region`], its failures not yet turned into a response.
fn region_response(
    cfg: &Config,
    cache: Option<&shm::Cache>,
    opened: &Opened,
    client: &str,
    req: &RegionRequest,
    view: &View,
) -> Result<Response, RenderError> {
    let opened = viewed(cfg, opened, view)?;
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
        return Err(RenderError::RegionTooLarge {
            from: (width, height),
            output: (ow, oh),
            limit: MAX_REGION_PIXELS,
        });
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
            &view.access.key_bytes(),
        ])
    });
    if let (Some(c), Some(key)) = (cache, key) {
        if let Some(bytes) = c.get(key) {
            log::debug!("region cache hit: {client} {ow}x{oh}");
            return Ok(Response::content(
                cfg,
                req.format.mime(),
                bytes,
                Some(opened.mtime),
                Some(disposition),
            ));
        }
    }
    // Held while the export runs: large ones take turns across the workers.
    let _slot = admission::enter(cfg, pixels, out_pixels).map_err(RenderError::Busy)?;
    let view = View {
        colour: req.colour,
        ..view.clone()
    };
    let hist = histogram_if_needed(cfg, opened, &view)?;
    let filter = match cfg.interpolation {
        0 => Filter::Nearest,
        1 => Filter::Bilinear,
        _ => Filter::Area,
    };
    let raster = read_resized(
        cfg,
        opened,
        &view,
        hist.as_ref(),
        filter,
        (k, left, top, width, height),
        (ow, oh),
    )?;
    let mut raster = finish(raster, req.format, (opened, &view), hist.as_ref());
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
    let bytes = encode_bytes(
        cfg,
        &raster,
        req.format,
        (view.quality, view.tiff_codec),
        &meta,
    )?;
    if let (Some(c), Some(key)) = (cache, key) {
        if c.put(key, &bytes) {
            log::debug!("region cache insert: {client} {ow}x{oh}");
        }
    }
    Ok(Response::content(
        cfg,
        req.format.mime(),
        bytes,
        Some(opened.mtime),
        Some(disposition),
    ))
}

/// Bytes of source samples (at their stored depth) one band aims at:
/// a few bands of this stay well inside any sensible memory budget.
const BAND_BYTES: u64 = 16 << 20;

/// The rectangle `(left, top, width, height)` of level `k`, at 8 bits and resized to
/// `ow×oh`: read and converted a band of rows at a time (whole tiles, so no tile is
/// decoded twice), each band resized into the output as soon as it is read. A
/// convolution needs its neighbours across band edges: that one reads the rectangle
/// whole, if the memory budget allows it.
fn read_resized(
    cfg: &Config,
    opened: &Opened,
    view: &View,
    hist: Option<&[u64; 256]>,
    filter: Filter,
    (k, left, top, width, height): (u32, u32, u32, u32, u32),
    (ow, oh): (u32, u32),
) -> Result<Raster, RenderError> {
    let info = opened.image.info();
    let th = opened.image.band_rows(k).max(1);
    let channels = info.channels.max(1) as u64;
    let sample_bytes = match info.bits_per_sample {
        0..=8 => 1,
        9..=16 => 2,
        _ => 4,
    };
    let row_bytes = width as u64 * channels * sample_bytes;
    let whole = view.processing.kernel.is_some();
    let band_rows = if whole {
        height
    } else {
        // Smaller bands under a small budget: a band is held three times over.
        ((BAND_BYTES.min(cfg.max_request_memory / 8) / row_bytes.max(1)) as u32)
            .max(1)
            .next_multiple_of(th)
            .min(height)
    };
    // The output, a copy of it in the finishing steps, and a band three times over
    // (samples as decoded, at 8 bits, the rows kept for the next band); a float
    // convolution holds its source in f32 three times over.
    let out_bytes = ow as u64 * oh as u64 * channels.clamp(3, 4);
    let band_bytes = if whole {
        width as u64 * height as u64 * channels * 4 * 3
    } else {
        band_rows as u64 * row_bytes * 3
    };
    let need = 2 * out_bytes + band_bytes;
    if need > cfg.max_request_memory {
        return Err(RenderError::OverBudget {
            output: (ow, oh),
            from: (width, height),
            need,
            limit: cfg.max_request_memory,
        });
    }
    let out_band = ((band_rows as u64 * oh as u64 / height as u64) as u32).max(1);
    let read = |first: usize, end: usize| -> Result<Raster, ImageError> {
        if !crate::budget::within() {
            return Err(ImageError::OutOfTime);
        }
        let first = first as u32;
        let end = if whole {
            height
        } else {
            // Up to a tile boundary of the level, so the next band starts on a tile row.
            ((top + end as u32).next_multiple_of(th) - top).min(height)
        };
        let tile = assemble(opened, k, (left, top + first, width, end - first))?;
        Ok(to_raster(tile, opened, view, hist))
    };
    pipeline::bands::resize((width, height), (ow, oh), filter, out_band, read)
        .map_err(|e| match e {
            pipeline::bands::BandError::Source(e) => e,
            pipeline::bands::BandError::OutOfMemory(n) => ImageError::OutOfMemory(n),
        })
        .map_err(RenderError::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{ColourSpace, ImageInfo, Level, StoredCodec};

    /// 1001×777 with levels rounded up on halving: 501×389, 251×195.
    fn rounded_up() -> ImageInfo {
        let level = |width, height| Level {
            width,
            height,
            tile_width: 256,
            tile_height: 256,
            codec: StoredCodec::Deflate,
        };
        let levels = vec![level(1001, 777), level(501, 389), level(251, 195)];
        ImageInfo::plain(levels, 1, 8, ColourSpace::Greyscale)
    }

    #[test]
    fn whole_image_reads_the_whole_level() {
        let info = rounded_up();
        assert_eq!(
            region_at_level(&info, [0.0, 0.0, 1.0, 1.0], 200, 155),
            (2, 0, 0, 251, 195)
        );
        assert_eq!(
            region_at_level(&info, [0.0, 0.0, 1.0, 1.0], 400, 310),
            (1, 0, 0, 501, 389)
        );
    }

    #[test]
    fn part_of_the_image_is_measured_from_the_full_size() {
        let info = rounded_up();
        // 1001/4 = 250.25 and 777/8 = 194.25 at level 2: the last column and row stay out.
        assert_eq!(
            region_at_level(&info, [0.0, 0.5, 1.0, 0.5], 200, 80),
            (2, 0, 97, 250, 97)
        );
        assert_eq!(
            region_at_level(&info, [0.5, 0.0, 0.5, 1.0], 100, 155),
            (2, 125, 0, 125, 194)
        );
    }
}
