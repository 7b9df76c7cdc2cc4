//! Image requests (docs/protocols.md §2.4): the four parameters become one view of the image,
//! answered from a single stored tile when they name one exactly (the fast path) and by a
//! region export otherwise, with the `Link` headers IIIF asks image responses to carry.

use super::ids::{encoded_identifier, image_service_id};
use super::params::{parse_quality_format, parse_region, parse_rotation, parse_size, ParseError};
use super::{open_page, version};
use crate::config::Config;
use crate::model::{RegionRequest, TileRequest, View};
use crate::protocol::{Ctx, HttpInfo};
use crate::render;
use crate::response::Response;

/// The answer to the image request `arg` (decoded once; `raw` as the client sent it):
/// `identifier/region/size/rotation/quality.format`.
pub(super) fn respond(ctx: &mut Ctx, http: &HttpInfo, raw: &str, arg: &str) -> Response {
    let cfg = ctx.cfg;
    if arg.matches('/').count() < 4 {
        return Response::text_error(cfg, 400, "IIIF: Not enough parameters");
    }
    let parts: Vec<&str> = arg.rsplitn(5, '/').collect();
    let (qf, rot, size, reg, ident) = (parts[0], parts[1], parts[2], parts[3], parts[4]);
    let (cur, page) = match open_page(ctx, http, ident) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let raw_ident = encoded_identifier(raw, 4, ident, http.encoding());
    let info = cur.opened.image.info();
    let full = (info.width(), info.height());
    let v = version(cfg, http);
    let parsed = parse_region(reg, full).and_then(|region| {
        let (w, h, upscale) = parse_size(size, v, region, full, cfg.max_cvt, cfg.iiif_accept_full)?;
        // Version 2 has no `^`: ALLOW_UPSCALING decides there, as for IIP's CVT.
        let upscale = upscale && (v >= 3 || cfg.allow_upscaling);
        let (mirror, angle) = parse_rotation(rot)?;
        let (colour, format, processing) = parse_quality_format(qf, cfg)?;
        Ok((
            region, w, h, upscale, mirror, angle, colour, format, processing,
        ))
    });
    let (region, w, h, upscale, mirror, angle, colour, format, processing) = match parsed {
        Ok(p) => p,
        Err(ParseError::Bad(msg)) => return Response::text_error(cfg, 400, &msg),
    };
    // A degraded image: `max` is shrunk to what may be seen, larger sizes are refused.
    let (w, h) = match cur.access {
        crate::model::Access::Degraded(m) if !cur.access.allows_output(region, full, (w, h)) => {
            let named = size.trim_start_matches('^').to_ascii_lowercase();
            if named != "max" && named != "full" {
                return crate::access::too_large(cfg, m);
            }
            cur.access.clamp_output(region, full, (w, h))
        }
        _ => (w, h),
    };
    let right = angle % 90.0 == 0.0;
    let view = View {
        rotation: if right { angle } else { 0.0 },
        free_rotation: (!right).then_some(angle),
        mirror,
        colour,
        processing,
        xangle: page.map_or(0, |p| p.min(i32::MAX as u32) as i32),
        access: cur.access,
        ..View::default()
    };
    // The tile fast path: the request is exactly one stored tile (docs/protocols.md §2.5).
    let (k, left, top, rw, rh) = render::region_at_level(info, region, w, h);
    let (tw, th) = (info.levels[0].tile_width, info.levels[0].tile_height);
    let level = &info.levels[k as usize];
    let want_w = tw.min(level.width - left);
    let want_h = th.min(level.height - top);
    let r = if right
        && left % tw == 0
        && top % th == 0
        && (w, h) == (want_w, want_h)
        && (rw, rh) == (want_w, want_h)
    {
        let tile = (top / th) as i64 * level.columns() as i64 + (left / tw) as i64;
        let res = info.num_levels() as i64 - 1 - k as i64;
        // IIP remaps tile indices under a 180° rotation; IIIF names the region itself,
        // so ask for the mirror index to land on this tile.
        let tile = if angle == 180.0 {
            level.tile_count() as i64 - 1 - tile
        } else {
            tile
        };
        render::tile(
            cfg,
            ctx.tiles,
            &cur.opened,
            &cur.client,
            TileRequest { res, tile, format },
            &view,
        )
    } else {
        let req = RegionRequest {
            region,
            width: w,
            height: h,
            format,
            colour,
            no_upscale: !upscale,
            attachment: false,
        };
        render::region(cfg, ctx.tiles, &cur.opened, &cur.client, &req, &view)
    };
    with_links(
        r,
        cfg,
        http,
        &raw_ident,
        v,
        (region, full),
        (w, h),
        (mirror, angle),
        qf,
    )
}

/// Adds the `Link` headers of IIIF image responses: the compliance profile and the
/// canonical URI of the image (Image API 3 §4.7, 2.1 §4.7).
#[allow(clippy::too_many_arguments)]
fn with_links(
    mut r: Response,
    cfg: &Config,
    http: &HttpInfo,
    ident: &str,
    v: u32,
    (region, (fw, fh)): ([f64; 4], (u32, u32)),
    (w, h): (u32, u32),
    (mirror, angle): (bool, f64),
    quality_format: &str,
) -> Response {
    if r.status != 200 {
        return r;
    }
    let profile = if v >= 3 {
        "http://iiif.io/api/image/3/level2.json".to_owned()
    } else {
        format!("http://iiif.io/api/image/{v}/level2.json")
    };
    // One header line with both links: some clients read only the first `Link` line.
    let mut link = format!("<{profile}>;rel=\"profile\"");
    if let Some(id) = image_service_id(cfg, http, ident) {
        let px = |f: f64, full: u32| (f * full as f64).round() as u64;
        let reg = if region == [0.0, 0.0, 1.0, 1.0] {
            "full".to_owned()
        } else {
            format!(
                "{},{},{},{}",
                px(region[0], fw),
                px(region[1], fh),
                px(region[2], fw),
                px(region[3], fh)
            )
        };
        let (bw, bh) = (px(region[2], fw) as u32, px(region[3], fh) as u32);
        let size = match v {
            3.. if (w, h) == (bw, bh) => "max".to_owned(),
            3.. => format!("{w},{h}"),
            _ if (w, h) == (bw, bh) => "full".to_owned(),
            _ => format!("{w},"),
        };
        let rot = format!("{}{angle}", if mirror { "!" } else { "" });
        let qf = quality_format
            .split('?')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        let (q, f) = qf.rsplit_once('.').unwrap_or((&qf, "jpg"));
        let q = if matches!(q, "color" | "native") {
            "default"
        } else {
            q
        };
        link.push_str(&format!(
            ", <{id}/{reg}/{size}/{rot}/{q}.{f}>;rel=\"canonical\""
        ));
    }
    r.headers.push(("Link".into(), link));
    r
}
