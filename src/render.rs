//! Turns a request model into a response: tile cache lookup, source read,
//! pipeline and encoder, in that order.

use crate::config::Config;
use crate::encode::{self, Format};
use crate::image::cache::Opened;
use crate::image::{ImageError, StoredCodec};
use crate::model::{TileRequest, View};
use crate::pipeline;
use crate::response::Response;

/// The configured default quality of a format (clamped as iipsrv clamps `QLT`).
pub fn quality_for(cfg: &Config, format: Format, requested: Option<i32>) -> i32 {
    match (format, requested) {
        (Format::Jpeg, Some(q)) => q.clamp(1, 100),
        (Format::Jpeg, None) => cfg.jpeg_quality,
        (Format::Png, Some(q)) => q.clamp(0, 9),
        (Format::Png, None) => cfg.png_quality,
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

/// One tile through the tile pipeline (processing.md §2).
pub fn tile(
    cfg: &Config,
    opened: &Opened,
    client: &str,
    req: TileRequest,
    view: &View,
) -> Response {
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

    let passthrough = cfg.codec_passthrough
        && req.format == Format::Jpeg
        && level.codec == StoredCodec::Jpeg
        && view.quality.is_none()
        && !view.needs_pixels()
        && info.bits_per_sample == 8
        && matches!(info.channels, 1 | 3);
    if passthrough {
        match opened.image.encoded_tile(k, t) {
            Ok(Some(enc)) => {
                return Response::content(
                    cfg,
                    req.format.mime(),
                    enc.bytes,
                    Some(opened.mtime),
                    None,
                )
            }
            Ok(None) => {}
            Err(e) => return image_error(cfg, client, &e),
        }
    }

    let decoded = match opened.image.decode_tile(k, t) {
        Ok(d) => d,
        Err(e) => return image_error(cfg, client, &e),
    };
    let mut raster = pipeline::to_8bit(decoded);
    let keep = encode::channels_for(req.format, raster.channels);
    raster = pipeline::keep_channels(raster, keep);
    if view.mirror {
        raster = pipeline::mirror_horizontal(raster);
    }
    raster = pipeline::rotate(raster, view.right_angle());
    let quality = quality_for(cfg, req.format, view.quality);
    match encode::encode(&raster, req.format, quality) {
        Ok(bytes) => Response::content(cfg, req.format.mime(), bytes, Some(opened.mtime), None),
        Err(e @ encode::EncodeError::Unavailable(_)) => {
            Response::text_error(cfg, 501, &e.to_string())
        }
        Err(e) => {
            log::error!("{client}: {e}");
            Response::text_error(cfg, 500, &e.to_string())
        }
    }
}
