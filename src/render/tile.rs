//! One tile through the tile pipeline: the shared cache first, then the stored
//! tile (passed through untouched when nothing about it changes), else decoded,
//! processed and encoded.

use super::*;

/// One tile through the tile pipeline.
pub fn tile(
    cfg: &Config,
    cache: Option<&shm::Cache>,
    opened: &Opened,
    client: &str,
    req: TileRequest,
    view: &View,
) -> Response {
    tile_response(cfg, cache, opened, client, req, view).unwrap_or_else(|e| e.response(cfg, client))
}

/// [`tile`], its failures not yet turned into a response.
fn tile_response(
    cfg: &Config,
    cache: Option<&shm::Cache>,
    opened: &Opened,
    client: &str,
    req: TileRequest,
    view: &View,
) -> Result<Response, RenderError> {
    let opened = viewed(cfg, opened, view)?;
    let opened = &*opened;
    let info = opened.image.info();
    let n = info.num_levels() as i64;
    if req.res < 0 || req.res >= n || req.tile < 0 {
        return Err(RenderError::NoSuchResolution {
            res: req.res,
            tile: req.tile,
        });
    }
    let k = (n - 1 - req.res) as u32;
    let level = &info.levels[k as usize];
    let count = level.tile_count() as i64;
    if req.tile >= count {
        return Err(RenderError::NoSuchTile(req.tile));
    }
    // A client rotating a whole image by 180 keeps its tile grid.
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
            &view.access.key_bytes(),
        ])
    };
    let answer =
        |bytes: Vec<u8>| Response::content(cfg, req.format.mime(), bytes, Some(opened.mtime), None);
    let mut key = cacheable(cfg, cache, view).then(|| key_of(t));
    // Held until the tile is stored: other workers missing it meanwhile wait for it.
    let mut mark = None;
    if let (Some(c), Some(own)) = (cache, key) {
        if let Some(bytes) = c.get(own) {
            log::debug!("tile cache hit: {client} {k},{t}");
            return Ok(answer(bytes));
        }
        match flight::on_miss(c, own) {
            flight::Miss::Cached(bytes) => {
                log::debug!("tile decoded by another worker: {client} {k},{t}");
                return Ok(answer(bytes));
            }
            flight::Miss::Decode(m) => mark = m,
        }
        // Tiles that decode more cheaply together are decoded, encoded and stored
        // together, when the cache will keep them: a viewer asks for its neighbours next.
        if let Some(block) = opened.image.tile_block(k, t) {
            if c.admit_new(own) {
                let bytes = block_bytes(
                    cfg,
                    c,
                    opened,
                    client,
                    (k, t),
                    block,
                    req.format,
                    view,
                    key_of,
                )?;
                return Ok(answer(bytes));
            }
            // Refused now: `put` must not decide again (the refusal made the key one
            // that missed recently, which it would admit).
            key = None;
        }
    }
    let bytes = tile_bytes(cfg, opened, (k, t), req.format, view)?;
    if let (Some(c), Some(key)) = (cache, key) {
        if flight::store(c, key, &bytes, mark.as_ref()) {
            log::debug!("tile cache insert: {client} {k},{t}");
        }
    }
    Ok(answer(bytes))
}

/// The encoded bytes of one tile: the stored bitstream when it can pass through,
/// else decoded, processed and encoded.
fn tile_bytes(
    cfg: &Config,
    opened: &Opened,
    (k, t): (u32, u32),
    format: Format,
    view: &View,
) -> Result<Vec<u8>, RenderError> {
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
        if let Some(enc) = opened.image.encoded_tile(k, t)? {
            let meta = Embed {
                icc: icc_for(cfg, info, info.channels),
                ..Embed::default()
            };
            return Ok(embed(enc.bytes, format, &meta));
        }
    }
    let decoded = opened.image.decode_tile(k, t)?;
    encode_tile(cfg, opened, k, decoded, format, view)
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
) -> Result<Vec<u8>, RenderError> {
    let level = &opened.image.info().levels[k as usize];
    let (tw, th) = (level.tile_width, level.tile_height);
    let (x0, y0) = (c0 * tw, r0 * th);
    let w = ((c0 + nc) * tw).min(level.width).saturating_sub(x0);
    let h = ((r0 + nr) * th).min(level.height).saturating_sub(y0);
    let alone = || {
        let bytes = tile_bytes(cfg, opened, (k, t), format, view)?;
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
            let Some(mut part) = pipeline::blank_like(&decoded, uw, uh) else {
                return Err(ImageError::OutOfMemory(uw as usize * uh as usize).into());
            };
            pipeline::blit_tile(
                &mut part,
                (0, 0),
                &decoded,
                ((col - c0) * tw, (row - r0) * th, uw, uh),
            );
            match encode_tile(cfg, opened, k, part, format, view) {
                Ok(bytes) => {
                    cache.put_admitted(key_of(u), &bytes);
                    if u == t {
                        mine = Some(bytes);
                    }
                }
                Err(e) if u == t => return Err(e),
                // A neighbour is only left uncached; its own request reports the error.
                Err(e) => log::error!("{client}: {e}"),
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
    k: u32,
    decoded: Tile,
    format: Format,
    view: &View,
) -> Result<Vec<u8>, RenderError> {
    let info = opened.image.info();
    let level = &info.levels[k as usize];
    let hist = histogram_if_needed(cfg, opened, view)?;
    let mut raster = finish(
        to_raster(decoded, opened, view, hist.as_ref()),
        format,
        (opened, view),
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
    encode_bytes(cfg, &raster, format, (view.quality, view.tiff_codec), &meta)
}
