//! Zoomify (docs/protocols.md §4): `ImageProperties.xml` and `TileGroupN/z-x-y.jpg` tiles.

use super::open::open_image;
use super::{Ctx, HttpInfo};
use crate::encode::Format;
use crate::image::ImageInfo;
use crate::model::{TileRequest, View};
use crate::render;
use crate::response::Response;

/// Levels hidden below Zoomify's level 0 and the `NUMTILES` value (docs/protocols.md §4).
pub fn layout(info: &ImageInfo) -> (u32, u32) {
    let t = info.levels[0].tile_width.max(1);
    let numtiles = tiers(info)
        .iter()
        .map(|tier| tier.width.div_ceil(t) * tier.height.div_ceil(t))
        .sum();
    (tiny_levels(info).saturating_sub(1), numtiles)
}

/// Stored levels smaller than a tile in both directions (strictly).
fn tiny_levels(info: &ImageInfo) -> u32 {
    let t = info.levels[0].tile_width.max(1);
    info.levels
        .iter()
        .filter(|l| l.width < t && l.height < t)
        .count() as u32
}

/// One Zoomify level ("tier").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tier {
    pub width: u32,
    pub height: u32,
    /// The stored resolution (IIP numbering, 0 smallest) it is served from; `None` for a
    /// level below the stored pyramid, rendered from the image.
    pub resolution: Option<u32>,
}

/// Zoomify's levels, smallest (one tile) first. Of several stored levels smaller than a
/// tile only the largest is shown; a pyramid that never shrinks to one tile is extended
/// by halving its smallest level until it does, as Zoomify clients count levels.
pub fn tiers(info: &ImageInfo) -> Vec<Tier> {
    let t = info.levels[0].tile_width.max(1);
    let n = info.num_levels();
    let small = tiny_levels(info);
    let mut out = Vec::new();
    let smallest = &info.levels[n as usize - 1];
    if small == 0 {
        let (mut w, mut h) = (smallest.width, smallest.height);
        while w > t || h > t {
            w = w.div_ceil(2);
            h = h.div_ceil(2);
            out.push(Tier {
                width: w,
                height: h,
                resolution: None,
            });
        }
        out.reverse();
    }
    for r in small.saturating_sub(1)..n {
        let l = &info.levels[(n - 1 - r) as usize];
        out.push(Tier {
            width: l.width,
            height: l.height,
            resolution: Some(r),
        });
    }
    out
}

pub fn handle(ctx: &mut Ctx, http: &HttpInfo, arg: &str) -> Response {
    let cfg = ctx.cfg;
    if let Some(path) = arg.strip_suffix("/ImageProperties.xml") {
        let cur = match open_image(ctx, http, path, http.encoding()) {
            Ok(c) => c,
            Err(r) => return r,
        };
        let info = cur.opened.image.info();
        let (_, numtiles) = layout(info);
        let body = format!(
            "<IMAGE_PROPERTIES WIDTH=\"{}\" HEIGHT=\"{}\" NUMTILES=\"{numtiles}\" NUMIMAGES=\"1\" VERSION=\"1.8\" TILESIZE=\"{}\"/>",
            info.width(),
            info.height(),
            info.levels[0].tile_width
        );
        return Response::content(
            cfg,
            "application/xml",
            body.into_bytes(),
            Some(cur.opened.mtime),
            None,
        );
    }
    let Some(p) = arg.find("TileGroup") else {
        return Response::text_error(
            cfg,
            400,
            "Zoomify: expected <image>/ImageProperties.xml or <image>/TileGroupN/z-x-y.jpg",
        );
    };
    let path = arg[..p].strip_suffix('/').unwrap_or(&arg[..p]);
    let last = arg.rsplit('/').next().unwrap_or("");
    let stem = last.split('.').next().unwrap_or("");
    let nums: Vec<Option<u32>> = stem
        .split('-')
        .map(|s| {
            (!s.is_empty() && s.len() <= 9 && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        })
        .collect();
    let [Some(z), Some(x), Some(y)] = nums[..] else {
        return Response::text_error(
            cfg,
            400,
            "Zoomify: tile names are <level>-<column>-<row>.jpg",
        );
    };
    let cur = match open_image(ctx, http, path, http.encoding()) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let info = cur.opened.image.info();
    let tiers = tiers(info);
    let Some(&tier) = tiers.get(z as usize) else {
        return Response::text_error(cfg, 404, &format!("Zoomify: no level {z}"));
    };
    if let crate::model::Access::Degraded(m) = cur.access {
        if !cur.access.allows_level(tier.width, tier.height) {
            return crate::access::too_large(cfg, m);
        }
    }
    let ts = info.levels[0].tile_width.max(1);
    let (columns, rows) = (tier.width.div_ceil(ts), tier.height.div_ceil(ts));
    if x >= columns || y >= rows {
        return Response::text_error(cfg, 404, &format!("Zoomify: no tile {z}-{x}-{y}"));
    }
    let Some(r) = tier.resolution else {
        return super::deepzoom::virtual_tile(ctx, &cur, (tier.width, tier.height), ts, (x, y));
    };
    let level = &info.levels[(info.num_levels() - 1 - r) as usize];
    let t = y as i64 * level.columns() as i64 + x as i64;
    render::tile(
        cfg,
        ctx.tiles,
        &cur.opened,
        &cur.client,
        TileRequest {
            res: r as i64,
            tile: t,
            format: Format::Jpeg,
        },
        &View {
            access: cur.access,
            ..View::default()
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{ColourSpace, Level, StoredCodec};

    fn info(levels: &[(u32, u32)]) -> ImageInfo {
        let levels = levels
            .iter()
            .map(|&(width, height)| Level {
                width,
                height,
                tile_width: 256,
                tile_height: 256,
                codec: StoredCodec::Jpeg,
            })
            .collect();
        ImageInfo::plain(levels, 3, 8, ColourSpace::Srgb)
    }

    #[test]
    fn numtiles_f7() {
        let big = info(&[
            (5000, 3000),
            (2500, 1500),
            (1250, 750),
            (625, 375),
            (312, 187),
            (156, 93),
        ]);
        assert_eq!(layout(&big), (0, 324));
        let small = info(&[(1001, 777), (500, 388), (250, 194)]);
        assert_eq!(layout(&small), (0, 21));
        // Two tiny levels: the smaller one is hidden.
        let deep = info(&[(600, 400), (300, 200), (150, 100), (75, 50)]);
        assert_eq!(layout(&deep), (1, 1 + 6 + 2));
        assert_eq!(tiers(&deep)[0].resolution, Some(1));
        // Never one tile: two levels rendered below the stored one, counted exactly.
        let flat = info(&[(1001, 777)]);
        assert_eq!(layout(&flat), (0, 1 + 4 + 16));
        let t = tiers(&flat);
        assert_eq!(
            t.iter()
                .map(|t| (t.width, t.height, t.resolution))
                .collect::<Vec<_>>(),
            [(251, 195, None), (501, 389, None), (1001, 777, Some(0))]
        );
    }
}
