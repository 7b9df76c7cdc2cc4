//! DeepZoom (docs/protocols.md §3): the `.dzi` descriptor and `_files/L/x_y.jpg` tiles.

use super::open::{open_image, Current};
use super::{Ctx, HttpInfo};
use crate::encode::Format;
use crate::model::{Colour, RegionRequest, TileRequest, View};
use crate::render;
use crate::response::Response;

/// `D = ceil(log2(max(W, H)))`: the DeepZoom level of the full image.
pub fn max_level(w: u32, h: u32) -> u32 {
    let m = w.max(h).max(1);
    32 - (m - 1).leading_zeros()
}

/// DeepZoom level `l` of a `w×h` image: `ceil(W/2^(D-L)) × ceil(H/2^(D-L))`.
pub fn level_size(w: u32, h: u32, l: u32) -> (u32, u32) {
    let shift = max_level(w, h).saturating_sub(l).min(31);
    (w.div_ceil(1 << shift), h.div_ceil(1 << shift))
}

fn number(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || s.len() > 9 {
        None
    } else {
        s.parse().ok()
    }
}

pub fn handle(ctx: &mut Ctx, http: &HttpInfo, arg: &str) -> Response {
    let cfg = ctx.cfg;
    if let Some(path) = arg.strip_suffix(".dzi") {
        let cur = match open_image(ctx, http, path, http.encoding()) {
            Ok(c) => c,
            Err(r) => return r,
        };
        let info = cur.opened.image.info();
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Image xmlns=\"http://schemas.microsoft.com/deepzoom/2008\" TileSize=\"{}\" Overlap=\"0\" Format=\"jpg\"><Size Width=\"{}\" Height=\"{}\"/></Image>",
            info.levels[0].tile_width,
            info.width(),
            info.height()
        );
        return Response::content(
            cfg,
            "application/xml",
            body.into_bytes(),
            Some(cur.opened.mtime),
            None,
        );
    }
    let Some(p) = arg.rfind("_files/") else {
        return Response::text_error(
            cfg,
            400,
            "DeepZoom: expected <image>.dzi or <image>_files/<level>/<x>_<y>.jpg",
        );
    };
    let (path, rest) = (&arg[..p], &arg[p + 7..]);
    let Some((level, file)) = rest.rsplit_once('/') else {
        return Response::text_error(cfg, 400, "DeepZoom: missing tile level");
    };
    let stem = file.split('.').next().unwrap_or("");
    let (x, y) = stem.split_once('_').unwrap_or((stem, ""));
    let (Some(l), Some(x), Some(y)) = (number(level), number(x), number(y)) else {
        return Response::text_error(cfg, 400, "DeepZoom: level, column and row must be numbers");
    };
    let cur = match open_image(ctx, http, path, http.encoding()) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let info = cur.opened.image.info();
    let d = max_level(info.width(), info.height());
    let n = info.num_levels() as i64;
    if l > d {
        return Response::text_error(
            cfg,
            404,
            &format!("DeepZoom: level {l} is above the full image ({d})"),
        );
    }
    let (lw, lh) = level_size(info.width(), info.height(), l);
    if !cur.access.allows_level(lw, lh) {
        if let crate::model::Access::Degraded(m) = cur.access {
            return crate::access::too_large(cfg, m);
        }
    }
    let r = l as i64 - d as i64 + n - 1;
    if r < 0 {
        // Below the stored pyramid (a shallow or single-level file): the level is
        // rendered from the image at its size, cut into the advertised tile grid.
        let (w, h) = level_size(info.width(), info.height(), l);
        let ts = info.levels[0].tile_width.max(1);
        if x >= w.div_ceil(ts) || y >= h.div_ceil(ts) {
            return Response::text_error(
                cfg,
                404,
                &format!("DeepZoom: no tile {x}_{y} at level {l}"),
            );
        }
        return virtual_tile(ctx, &cur, (w, h), ts, (x, y));
    }
    let level = &info.levels[(n - 1 - r) as usize];
    if x >= level.columns() || y >= level.rows() {
        return Response::text_error(cfg, 404, &format!("DeepZoom: no tile {x}_{y} at level {l}"));
    }
    let t = y as i64 * level.columns() as i64 + x as i64;
    render::tile(
        cfg,
        ctx.tiles,
        &cur.opened,
        &cur.client,
        TileRequest {
            res: r,
            tile: t,
            format: Format::Jpeg,
        },
        &View {
            access: cur.access,
            ..View::default()
        },
    )
}

/// Tile `(x, y)` of a level of `size` that is not stored (below the pyramid), in a grid
/// of `ts`-pixel tiles, rendered from the image. The caller has checked the tile is in
/// the grid.
pub fn virtual_tile(
    ctx: &mut Ctx,
    cur: &Current,
    (w, h): (u32, u32),
    ts: u32,
    (x, y): (u32, u32),
) -> Response {
    let (x0, y0) = (x * ts, y * ts);
    let (cw, ch) = (ts.min(w - x0), ts.min(h - y0));
    let (wf, hf) = (w as f64, h as f64);
    let req = RegionRequest {
        region: [
            x0 as f64 / wf,
            y0 as f64 / hf,
            cw as f64 / wf,
            ch as f64 / hf,
        ],
        width: cw,
        height: ch,
        format: Format::Jpeg,
        colour: Colour::AsIs,
        no_upscale: false,
        attachment: false,
    };
    let mut resp = render::region(
        ctx.cfg,
        ctx.tiles,
        &cur.opened,
        &cur.client,
        &req,
        &View {
            access: cur.access,
            ..View::default()
        },
    );
    // A tile, not a download.
    resp.headers.retain(|(k, _)| k != "Content-Disposition");
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_levels_f4() {
        assert_eq!(max_level(5000, 3000), 13);
        assert_eq!(max_level(1001, 777), 10);
        assert_eq!(max_level(1024, 1024), 10);
        assert_eq!(max_level(256, 256), 8);
        assert_eq!(max_level(257, 10), 9);
        assert_eq!(max_level(1, 1), 0);
    }

    #[test]
    fn level_sizes_f6() {
        assert_eq!(level_size(5000, 3000, 7), (79, 47));
        assert_eq!(level_size(5000, 3000, 13), (5000, 3000));
        assert_eq!(level_size(5000, 3000, 0), (1, 1));
    }
}
