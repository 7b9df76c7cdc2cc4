//! The image outputs of IIP (docs/protocols.md §1.2–§1.4): single tiles in each format
//! (`JTL`, `PTL`, `WTL`, `ATL`, `TTL`, `JTLS`), FlashPix tile streams (`TIL`) and region
//! exports (`CVT`). Each answers the request with the view the commands before it set.

use super::Session;
use crate::config::atoi;
use crate::encode::Format;
use crate::model::{cvt_size, RegionRequest, TileRequest, View};
use crate::protocol::open::Current;
use crate::render;
use crate::response::Response;

/// Parses `r,t` (docs/protocols.md §1.2): without a comma both come from the whole string.
fn parse_tile_arg(arg: &str) -> (i64, i64) {
    match arg.split_once(',') {
        Some((r, t)) => (atoi(r), atoi(t)),
        None => (atoi(arg), atoi(arg)),
    }
}

/// `JTL=r,t` and its siblings: tile `t` of resolution `r`, encoded as `format`.
pub(super) fn tile(s: &mut Session, arg: &str, format: Format) -> Option<Response> {
    let Some(cur) = &s.image else {
        s.error("1 3", "");
        return None;
    };
    let (res, tile) = parse_tile_arg(arg);
    let info = cur.opened.image.info();
    if let Err(r) = crate::access::check_resolution(s.ctx.cfg, cur.access, info, res) {
        return Some(r);
    }
    Some(render::tile(
        s.ctx.cfg,
        s.ctx.tiles,
        &cur.opened,
        &cur.client,
        TileRequest { res, tile, format },
        &s.view,
    ))
}

/// `JTLS=x,r,t,y`: a tile of the sequence image at view angles `x` and `y`; anything but
/// four values answers nothing.
pub(super) fn jtls(s: &mut Session, value: &str) -> Option<Response> {
    let v: Vec<&str> = value.split(',').collect();
    if v.len() == 4 {
        s.view.xangle = atoi(v[0]) as i32;
        s.view.yangle = atoi(v[3]) as i32;
        tile(s, &format!("{},{}", v[1], v[2]), Format::Jpeg)
    } else {
        None
    }
}

/// `CVT=format`: the view's region exported at the size `WID` and `HEI` ask for.
pub(super) fn cvt(s: &mut Session, arg: &str) -> Option<Response> {
    let Some(cur) = &s.image else {
        s.error("1 3", "");
        return None;
    };
    let format = match arg.to_ascii_lowercase().as_str() {
        "png" => Format::Png,
        "webp" => Format::Webp,
        "avif" => Format::Avif,
        "tif" | "tiff" => Format::Tiff,
        _ => Format::Jpeg,
    };
    let info = cur.opened.image.info();
    let region = s.view.region.unwrap_or([0.0, 0.0, 1.0, 1.0]);
    let full = (info.width(), info.height());
    let (width, height) = cvt_size(region, s.view.width, s.view.height, full, s.ctx.cfg.max_cvt);
    // A degraded image is exported no larger than its degraded size, as MAX_CVT clamps.
    let (width, height) = cur.access.clamp_output(region, full, (width, height));
    let req = RegionRequest {
        region,
        width,
        height,
        format,
        colour: s.view.colour,
        no_upscale: !s.ctx.cfg.allow_upscaling,
        attachment: s.http.is_post(),
    };
    Some(render::region(
        s.ctx.cfg,
        s.ctx.tiles,
        &cur.opened,
        &cur.client,
        &req,
        &s.view,
    ))
}

/// `TIL=r,t1-t2` on the open image.
pub(super) fn til(s: &mut Session, value: &str) -> Option<Response> {
    let Some(cur) = &s.image else {
        s.error("1 3", "");
        return None;
    };
    Some(tile_stream(s.ctx.cfg, s.ctx.tiles, cur, value, &s.view))
}

/// `TIL=r,t1-t2` (docs/protocols.md §1.3): the tiles of the rectangle from t1 (top-left) to t2
/// (bottom-right), column by column, in FlashPix tile records.
fn tile_stream(
    cfg: &crate::config::Config,
    tiles: Option<&shm::Cache>,
    cur: &Current,
    arg: &str,
    view: &View,
) -> Response {
    let (r, range) = arg.split_once(',').unwrap_or((arg, "0"));
    let r = atoi(r);
    let (t1, t2) = match range.split_once('-') {
        Some((a, b)) => (atoi(a), atoi(b)),
        None => (atoi(range), atoi(range)),
    };
    let info = cur.opened.image.info();
    let n = info.num_levels() as i64;
    if r < 0 || r >= n || t1 < 0 || t2 < 0 {
        return Response::text_error(
            cfg,
            404,
            &format!("TIL :: Invalid resolution or tile: {arg}"),
        );
    }
    if let Err(resp) = crate::access::check_resolution(cfg, cur.access, info, r) {
        return resp;
    }
    let level = &info.levels[(n - 1 - r) as usize];
    let (cols, count) = (level.columns() as i64, level.tile_count() as i64);
    if t1 >= count || t2 >= count {
        return Response::text_error(
            cfg,
            404,
            &format!("TIL :: Asked for non-existent tile: {arg}"),
        );
    }
    let t2 = t2.max(t1);
    let (c1, r1, c2, r2) = (t1 % cols, t1 / cols, t2 % cols, t2 / cols);
    let (c1, c2) = (c1.min(c2), c1.max(c2));
    if (c2 - c1 + 1) * (r2 - r1 + 1) > 1024 {
        return Response::text_error(cfg, 400, "TIL :: at most 1024 tiles per request");
    }
    let mut body = Vec::new();
    for c in c1..=c2 {
        for row in r1..=r2 {
            let t = row * cols + c;
            let req = TileRequest {
                res: r,
                tile: t,
                format: Format::Jpeg,
            };
            let resp = render::tile(cfg, tiles, &cur.opened, &cur.client, req, view);
            if resp.status != 200 {
                return resp;
            }
            let kind: u8 = if info.bits_per_sample == 16 { 3 } else { 2 };
            body.extend_from_slice(format!("Tile,{r},{t},0/{}:", resp.body.len() + 8).as_bytes());
            body.extend_from_slice(&[kind, 0, 0, 0, 0, 0x11, 0, 0]);
            body.extend_from_slice(&resp.body);
            body.extend_from_slice(b"\r\n");
        }
    }
    // Headers (CACHE_CONTROL, CORS) as every other successful answer has them.
    Response::content(
        cfg,
        "application/vnd.netfpx",
        body,
        Some(cur.opened.mtime),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_args() {
        assert_eq!(parse_tile_arg("3,17"), (3, 17));
        assert_eq!(parse_tile_arg("1"), (1, 1));
        assert_eq!(parse_tile_arg("-1,-1"), (-1, -1));
        assert_eq!(parse_tile_arg("x,y"), (0, 0));
    }
}
