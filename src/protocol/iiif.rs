//! IIIF Image API 2 and 3 (docs/protocols.md §2): argument parsing, the redirect, info.json and
//! image requests, which become a tile request (the fast path) or a region export.

use super::open::open_image;
use super::path::{percent_decode, uri_escape, Encoding};
use super::{Ctx, HttpInfo};
use crate::cnum::fmt_g6;
use crate::config::Config;
use crate::encode::Format;
use crate::image::{ImageInfo, ResolutionUnit};
use crate::model::{Colour, RegionRequest, TileRequest, View};
use crate::pipeline::float::{Contrast, Processing};
use crate::render;
use crate::response::Response;
use std::fmt::Write as _;

fn json_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

fn scheme(http: &HttpInfo) -> &'static str {
    if http.https {
        "https"
    } else {
        "http"
    }
}

/// The service id (docs/protocols.md §2.2) for `identifier` (with any page delimiter, encoded for
/// a URL path by [`encoded_identifier`]). Built from what the client sent, not from its
/// decoding, so that the id is a URL that names this image again (`dir%2Fa.tif`,
/// `%C3%85sa%20%C3%B8.tif`).
fn service_id(cfg: &Config, http: &HttpInfo, identifier: &str) -> Result<String, Response> {
    if let Some(id) = &http.x_iiif_id {
        return Ok(id.clone());
    }
    if let Some(base) = &cfg.base_url {
        return Ok(format!("{base}{identifier}"));
    }
    let Some(uri) = &http.request_uri else {
        return Err(Response::text_error(
            cfg,
            400,
            "IIIF: REQUEST_URI was not set in FastCGI request, so the ID parameter cannot be set",
        ));
    };
    let path = uri_escape(uri.split('?').next().unwrap_or(""), Encoding::Path);
    let trimmed = path
        .strip_suffix("/info.json")
        .or_else(|| path.strip_suffix('/'))
        .unwrap_or(&path);
    let host = http.host.as_deref().unwrap_or("localhost");
    Ok(format!("{}://{host}{trimmed}", scheme(http)))
}

/// Whether `identifier` names an image file (or an image sequence).
fn names_image(cfg: &Config, identifier: &str) -> bool {
    let client = crate::protocol::path::client_path(identifier, Encoding::Path);
    crate::protocol::path::resolve(&client, &cfg.filesystem_prefix, &cfg.filesystem_suffix).is_ok()
        || crate::protocol::path::sequence(&client, &cfg.filesystem_prefix, &cfg.filename_pattern)
            .is_ok()
}

/// The identifier as the client wrote it in `raw` (the undecoded argument), without the
/// last `segments` path segments, made fit for a URL path. `decoded` is that identifier
/// decoded once; it is encoded instead when an escaped `/` in the cut segments keeps the
/// raw text from lining up (every `%` escaped, so one decoding gives it back).
fn encoded_identifier(raw: &str, segments: usize, decoded: &str, encoding: Encoding) -> String {
    let mut cut = raw;
    for _ in 0..segments {
        cut = cut.rfind('/').map_or("", |i| &cut[..i]);
    }
    if percent_decode(cut, encoding) == decoded {
        uri_escape(cut, encoding)
    } else {
        uri_escape(&decoded.replace('%', "%25"), Encoding::Path)
    }
}

/// The `Accept`-negotiated API version for this request.
fn version(cfg: &Config, http: &HttpInfo) -> u32 {
    if let Some(a) = &http.accept {
        if let Some(p) = a.find("http://iiif.io/api/image/") {
            let rest = &a[p + 25..];
            let mut chars = rest.chars();
            if let (Some(d), Some('/')) = (chars.next(), chars.next()) {
                if let Some(v) = d.to_digit(10).filter(|v| (1..=3).contains(v)) {
                    if rest[2..].starts_with("context.json") {
                        return v;
                    }
                }
            }
        }
    }
    cfg.iiif_version
}

fn qualities(cfg: &Config, info: &ImageInfo) -> Vec<&'static str> {
    let mut q = Vec::new();
    if info.channels >= 3 {
        q.push("color");
    }
    q.extend(["gray", "bitonal"]);
    if cfg.iiif_extensions {
        q.extend(["negative", "stretch", "equalization", "log"]);
    }
    q
}

fn quoted_list(v: &[&str]) -> String {
    v.iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(",")
}

/// The info.json body (docs/protocols.md §2.3).
pub fn info_json(cfg: &Config, info: &ImageInfo, id: &str, v: u32, rights: Option<&str>) -> String {
    let (w, h) = (info.width(), info.height());
    let mut s = String::with_capacity(2048);
    let _ = write!(
        s,
        "{{\n  \"@context\" : \"http://iiif.io/api/image/{v}/context.json\",\n  \"protocol\" : \"http://iiif.io/api/image\",\n  \"width\" : {w},\n  \"height\" : {h},\n  \"sizes\" : [\n"
    );
    let sizes: Vec<String> = if info.levels.len() > 1 {
        info.levels[1..]
            .iter()
            .rev()
            .map(|l| {
                format!(
                    "     {{ \"width\" : {}, \"height\" : {} }}",
                    l.width, l.height
                )
            })
            .collect()
    } else {
        vec![format!("     {{ \"width\" : {w}, \"height\" : {h} }}")]
    };
    s.push_str(&sizes.join(",\n"));
    let factors: Vec<String> = (0..info.levels.len())
        .map(|k| (1u64 << k.min(62)).to_string())
        .collect();
    let _ = write!(
        s,
        "\n  ],\n  \"tiles\" : [\n     {{ \"width\" : {}, \"height\" : {}, \"scaleFactors\" : [ {} ] }}\n  ],\n",
        info.levels[0].tile_width,
        info.levels[0].tile_height,
        factors.join(", ")
    );
    let q = qualities(cfg, info);
    if v >= 3 {
        let _ = write!(
            s,
            "  \"id\" : {},\n  \"type\": \"ImageService3\",\n  \"profile\" : \"level2\"",
            json_str(id)
        );
        if let Some(m) = cfg.max_cvt {
            let _ = write!(s, ",\n  \"maxWidth\" : {m},\n  \"maxHeight\" : {m}");
        }
        let _ = write!(
            s,
            ",\n  \"extraQualities\": [{}],\n  \"extraFormats\": [\"tif\",\"webp\",\"avif\"],\n  \"extraFeatures\": [\"regionByPct\",\"sizeByPct\",\"sizeByConfinedWh\",\"sizeUpscaling\",\"rotationBy90s\",\"rotationArbitrary\",\"mirroring\"]",
            quoted_list(&q)
        );
        if let Some(r) = rights {
            let _ = write!(s, ",\n  \"rights\": {}", json_str(r));
        }
    } else {
        let _ = write!(
            s,
            "  \"@id\" : {},\n  \"profile\" : [\n     \"http://iiif.io/api/image/{v}/level2.json\",\n     {{ \"formats\" : [\"jpg\",\"png\",\"tif\",\"webp\",\"avif\"],\n       \"qualities\" : [\"native\",{}],\n       \"supports\" : [\"regionByPct\",\"regionSquare\",\"max\",\"sizeByConfinedWh\",\"sizeByForcedWh\",\"sizeByWh\",\"sizeAboveFull\",\"rotationBy90s\",\"rotationArbitrary\",\"mirroring\"]",
            json_str(id),
            quoted_list(&q)
        );
        if let Some(m) = cfg.max_cvt {
            let _ = write!(
                s,
                ",\n       \"maxWidth\" : {m},\n       \"maxHeight\" : {m}"
            );
        }
        s.push_str("\n     }\n  ]");
        if let Some(r) = rights {
            let _ = write!(s, ",\n  \"license\": {}", json_str(r));
        }
    }
    if let Some(extra) = &cfg.iiif_extra_info {
        let _ = write!(s, ",\n  {extra}");
    }
    let unit = match info.resolution_unit {
        ResolutionUnit::Inch => Some("in"),
        ResolutionUnit::Centimetre => Some("cm"),
        ResolutionUnit::Unknown => None,
    };
    match unit {
        Some(u) if info.dpi_x > 0.0 => {
            let scale = 1.0 / info.dpi_x;
            // Version 3 requires an id and a type on every service.
            let ident = if v >= 3 {
                format!(
                    "\n      \"id\": {},\n      \"type\": \"PhysicalDimensions\",",
                    json_str(&format!("{id}/physdim"))
                )
            } else {
                String::new()
            };
            let _ = write!(
                s,
                ",\n  \"service\": [\n    {{\n      \"@context\": \"http://iiif.io/api/annex/services/physdim/1/context.json\",{ident}\n      \"profile\": \"http://iiif.io/api/annex/services/physdim\",\n      \"physicalScale\": {},\n      \"physicalUnits\": \"{u}\"\n    }}\n  ]\n\n}}",
                fmt_g6(scale)
            );
        }
        _ => s.push_str("\n}"),
    }
    s
}

pub fn handle(ctx: &mut Ctx, http: &HttpInfo, raw: &str) -> Response {
    let cfg = ctx.cfg;
    // Decoded once here and once more when the image is opened, as iipsrv does, so an
    // identifier behind a front end that decodes or re-encodes (`%252F`) still arrives.
    let arg = percent_decode(raw, http.encoding());
    if !arg.contains('/') {
        let id = match service_id(
            cfg,
            http,
            &encoded_identifier(raw, 0, &arg, http.encoding()),
        ) {
            Ok(id) => id,
            Err(r) => return r,
        };
        let id = if cfg.base_url.is_some() || http.x_iiif_id.is_some() {
            id
        } else {
            id.trim_end_matches('/').to_owned()
        };
        return Response::redirect(cfg, &format!("{id}/info.json"));
    }
    let (ident, last) = arg.rsplit_once('/').unwrap_or(("", &arg));
    if let Some(policy) = cfg.access.as_deref() {
        if matches!(last, "probe" | "token" | "logout") && !ident.is_empty() {
            return auth_service(ctx, http, policy, ident, last);
        }
    }
    // An identifier with slashes (`dir/a.tif`), or one with a trailing slash, is a base
    // URI too when it names an image; an image request has at least four slashes.
    if last != "info.json" && arg.matches('/').count() < 4 {
        let cand = arg.strip_suffix('/').unwrap_or(&arg);
        // Whether a restricted image exists is not told by a redirect either.
        let client = crate::protocol::path::client_path(split_page(cfg, cand).0, Encoding::Path);
        if crate::access::decide(cfg.access.as_deref(), &http.credentials, &client)
            == crate::access::Decision::Denied
        {
            return crate::access::denied(cfg);
        }
        if !cand.is_empty() && names_image(cfg, split_page(cfg, cand).0) {
            let raw_cand = raw.strip_suffix('/').unwrap_or(raw);
            let id = match service_id(
                cfg,
                http,
                &encoded_identifier(raw_cand, 0, cand, http.encoding()),
            ) {
                Ok(id) => id,
                Err(r) => return r,
            };
            return Response::redirect(cfg, &format!("{}/info.json", id.trim_end_matches('/')));
        }
    }
    if last == "info.json" {
        let (file_ident, page) = split_page(cfg, ident);
        if page.is_some_and(|p| p.is_none()) {
            return Response::text_error(
                cfg,
                400,
                "IIIF: the page after the delimiter must be a number",
            );
        }
        let cur = match open_image(ctx, http, file_ident, Encoding::Path) {
            Ok(c) => c,
            Err(r) => return r,
        };
        let id = match service_id(
            cfg,
            http,
            &encoded_identifier(raw, 1, ident, http.encoding()),
        ) {
            Ok(id) => id,
            Err(r) => return r,
        };
        let info = cur.opened.image.info();
        let v = version(cfg, http);
        let rights = info
            .metadata
            .get("rights")
            .filter(|r| !r.is_empty())
            .cloned()
            .or_else(|| cfg.copyright.clone());
        let mut body = info_json(cfg, info, &id, v, rights.as_deref());
        if let Some(rule) = crate::access::protecting_rule(cfg.access.as_deref(), &cur.client) {
            body = crate::access::auth2::decorate_info(&body, cur.access, rule, &id, v);
        }
        let mime =
            format!("application/ld+json;profile=\"http://iiif.io/api/image/{v}/context.json\"");
        let mut r = Response::content(cfg, &mime, body.into_bytes(), Some(cur.opened.mtime), None);
        if v != cfg.iiif_version {
            for (k, val) in r.headers.iter_mut() {
                if k == "Cache-Control" {
                    *val = "private".into();
                }
            }
        }
        return r;
    }
    if arg.matches('/').count() < 4 {
        return Response::text_error(cfg, 400, "IIIF: Not enough parameters");
    }
    let parts: Vec<&str> = arg.rsplitn(5, '/').collect();
    let (qf, rot, size, reg, ident) = (parts[0], parts[1], parts[2], parts[3], parts[4]);
    let (file_ident, page) = split_page(cfg, ident);
    if page.is_some_and(|p| p.is_none()) {
        return Response::text_error(
            cfg,
            400,
            "IIIF: the page after the delimiter must be a number",
        );
    }
    let cur = match open_image(ctx, http, file_ident, Encoding::Path) {
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
        xangle: page.flatten().map_or(0, |p| p.min(i32::MAX as u32) as i32),
        access: cur.access,
        ..View::default()
    };
    // The tile fast path: the request is exactly one stored tile (docs/protocols.md §2.5).
    let (k, left, top, rw, rh) = render::region_at_level(info, region, w, h);
    let (tw, th) = (info.levels[0].tile_width, info.levels[0].tile_height);
    let level = &info.levels[k as usize];
    let want_w = tw.min(level.width - left);
    let want_h = th.min(level.height - top);
    if right
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
        let r = render::tile(
            cfg,
            ctx.tiles,
            &cur.opened,
            &cur.client,
            TileRequest { res, tile, format },
            &view,
        );
        return with_links(
            r,
            cfg,
            http,
            &raw_ident,
            v,
            (region, full),
            (w, h),
            (mirror, angle),
            qf,
        );
    }
    let req = RegionRequest {
        region,
        width: w,
        height: h,
        format,
        colour,
        no_upscale: !upscale,
        attachment: false,
    };
    let r = render::region(cfg, ctx.tiles, &cur.opened, &cur.client, &req, &view);
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

/// The IIIF Authorization Flow services of image `ident`: `probe`, `token`, `logout`.
fn auth_service(
    ctx: &mut Ctx,
    http: &HttpInfo,
    policy: &crate::access::Policy,
    ident: &str,
    service: &str,
) -> Response {
    use crate::access::auth2;
    let cfg = ctx.cfg;
    let id = match service_id(cfg, http, ident) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let id = id
        .strip_suffix(&format!("/{service}"))
        .unwrap_or(&id)
        .to_owned();
    match service {
        "token" => {
            let cookie = auth2::cookie_token(http.cookies.as_deref(), policy);
            let req = token_request(http.request_uri.as_deref());
            auth2::token_service(cfg, policy, cookie, &req)
        }
        "logout" => auth2::logout(cfg, policy, http.https),
        _ => {
            let (file_ident, _) = split_page(cfg, ident);
            let client = crate::protocol::path::client_path(file_ident, Encoding::Path);
            let (decision, rule) = crate::access::judge(Some(policy), &http.credentials, &client);
            let denied = decision == crate::access::Decision::Denied;
            let opened = (!denied)
                .then(|| open_image(ctx, http, file_ident, Encoding::Path).ok())
                .flatten();
            let probe = auth2::Probe {
                rule,
                access: opened.as_ref().map(|c| c.access),
                id: &id,
                full: opened.as_ref().map(|c| {
                    (
                        c.opened.image.info().width(),
                        c.opened.image.info().height(),
                    )
                }),
            };
            auth2::probe(cfg, &probe)
        }
    }
}

/// The id of the service an image request belongs to: the request URI without its
/// four parameter segments (or `X-IIIF-ID` / `BASE_URL`), percent-encoded as sent.
fn image_service_id(cfg: &Config, http: &HttpInfo, identifier: &str) -> Option<String> {
    if let Some(id) = &http.x_iiif_id {
        return Some(id.clone());
    }
    if let Some(base) = &cfg.base_url {
        return Some(format!("{base}{identifier}"));
    }
    let path = uri_escape(
        http.request_uri.as_deref()?.split('?').next().unwrap_or(""),
        Encoding::Path,
    );
    let mut cut = path.as_str();
    for _ in 0..4 {
        cut = &cut[..cut.rfind('/')?];
    }
    let host = http.host.as_deref().unwrap_or("localhost");
    Some(format!("{}://{host}{cut}", scheme(http)))
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

/// A request the parser refuses (400).
#[derive(Debug, PartialEq)]
enum ParseError {
    Bad(String),
}

fn bad(msg: impl Into<String>) -> ParseError {
    ParseError::Bad(msg.into())
}

/// Region → fractions `(x, y, w, h)` of the full image, cropped at its edges (§5.1).
fn parse_region(text: &str, (fw, fh): (u32, u32)) -> Result<[f64; 4], ParseError> {
    let lower = text.to_ascii_lowercase();
    let (fw, fh) = (fw as f64, fh as f64);
    let mut r = match lower.as_str() {
        "full" => return Ok([0.0, 0.0, 1.0, 1.0]),
        "square" => {
            if fw > fh {
                let w = fh / fw;
                [(1.0 - w) / 2.0, 0.0, w, 1.0]
            } else {
                let h = fw / fh;
                [0.0, (1.0 - h) / 2.0, 1.0, h]
            }
        }
        _ => {
            let (pct, nums) = match lower.strip_prefix("pct:") {
                Some(rest) => (true, rest),
                None => (false, lower.as_str()),
            };
            let err = || bad(format!("IIIF: incorrect region format: {nums}"));
            let v: Vec<f64> = nums
                .split(',')
                .map(|x| {
                    x.trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|v| v.is_finite() && *v >= 0.0)
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(err)?;
            if v.len() != 4 {
                return Err(err());
            }
            if pct {
                [v[0] / 100.0, v[1] / 100.0, v[2] / 100.0, v[3] / 100.0]
            } else {
                [v[0] / fw, v[1] / fh, v[2] / fw, v[3] / fh]
            }
        }
    };
    if r[0] + r[2] > 1.0 {
        r[2] = 1.0 - r[0];
    }
    if r[1] + r[3] > 1.0 {
        r[3] = 1.0 - r[1];
    }
    if r[2] <= 0.0 || r[3] <= 0.0 {
        return Err(bad(format!(
            "IIIF: incorrect region format: {}",
            lower.strip_prefix("pct:").unwrap_or(&lower)
        )));
    }
    Ok(r)
}

fn dim(s: &str, what: &str) -> Result<u32, ParseError> {
    s.parse::<u32>().map_err(|_| bad(format!("invalid {what}")))
}

/// Size → output `(w, h, upscaling allowed)` (§5.2, with the deliberate fixes).
fn parse_size(
    text: &str,
    v: u32,
    region: [f64; 4],
    (fw, fh): (u32, u32),
    max_cvt: Option<u32>,
    accept_full: bool,
) -> Result<(u32, u32, bool), ParseError> {
    let lower = text.to_ascii_lowercase();
    let (caret, body) = match lower.strip_prefix('^') {
        Some(_) if v < 3 => return Err(bad("invalid width")),
        Some(rest) => (true, rest),
        None => (false, lower.as_str()),
    };
    let (rwf, rhf) = (region[2] * fw as f64, region[3] * fh as f64);
    let (bw, bh) = (rwf.round().max(1.0), rhf.round().max(1.0));
    let ratio = rwf / rhf;
    let mut keeps_ratio = true;
    // IIIF 3 replaced the size `full` with `max`; manifests written for iipsrv still
    // ask for `full/full`, so it is accepted unless IIIF_ACCEPT_FULL=0.
    if v >= 3 && body == "full" && !accept_full {
        return Err(bad("IIIF: the size full is not part of version 3; use max"));
    }
    let (w, h): (f64, f64) = if body == "max" || body == "full" {
        (bw, bh)
    } else if let Some(p) = body.strip_prefix("pct:") {
        let n: f64 = p
            .parse()
            .ok()
            .filter(|n: &f64| n.is_finite() && *n >= 0.0)
            .ok_or_else(|| bad("invalid size"))?;
        ((bw * n / 100.0).round(), (bh * n / 100.0).round())
    } else {
        let (confined, wh) = match body.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, body),
        };
        let Some((ws, hs)) = wh.split_once(',') else {
            return Err(bad("invalid size: no comma found"));
        };
        match (ws.is_empty(), hs.is_empty()) {
            (true, true) => return Err(bad("invalid size")),
            (false, true) if !confined => {
                let w = dim(ws, "width")? as f64;
                (w, (w * bh / bw).round())
            }
            (true, false) if !confined => {
                let h = dim(hs, "height")? as f64;
                ((h * bw / bh).round(), h)
            }
            (false, false) => {
                let (w, h) = (dim(ws, "width")? as f64, dim(hs, "height")? as f64);
                if confined {
                    let s = (w / bw).min(h / bh);
                    if w / bw <= h / bh {
                        (w, (bh * s).round())
                    } else {
                        ((bw * s).round(), h)
                    }
                } else {
                    keeps_ratio = false;
                    (w, h)
                }
            }
            _ => return Err(bad("invalid size")),
        }
    };
    if w < 1.0 || h < 1.0 {
        return Err(bad("IIIF: invalid size: requested width or height < 0"));
    }
    if v >= 3 && !caret && (w > bw || h > bh) {
        return Err(bad("IIIF: upscaling should be prefixed with ^"));
    }
    let (mut w, mut h) = (w, h);
    if let Some(m) = max_cvt.map(f64::from) {
        if w > m || h > m {
            if keeps_ratio {
                if ratio >= 1.0 {
                    (w, h) = (m, (m / ratio).round());
                } else {
                    (w, h) = ((m * ratio).round(), m);
                }
            } else {
                let f = m / w.max(h);
                (w, h) = ((w * f).round(), (h * f).round());
            }
        }
    }
    let upscale = if v >= 3 { caret } else { true };
    Ok((
        w.clamp(1.0, u32::MAX as f64) as u32,
        h.clamp(1.0, u32::MAX as f64) as u32,
        upscale,
    ))
}

/// Rotation → (mirror, clockwise degrees in 0..360) (§5.3; any angle, as IIIF allows).
fn parse_rotation(text: &str) -> Result<(bool, f64), ParseError> {
    let (mirror, n) = match text.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let a: f64 = n
        .parse()
        .ok()
        .filter(|a: &f64| a.is_finite())
        .ok_or_else(|| bad("IIIF: invalid rotation"))?;
    if !(0.0..=360.0).contains(&a) {
        return Err(bad("IIIF: rotation angles are between 0 and 360 degrees"));
    }
    Ok((mirror, if a == 360.0 { 0.0 } else { a }))
}

/// `quality[.format]` (§5.4); anything from `?` on is ignored.
fn parse_quality_format(
    text: &str,
    cfg: &Config,
) -> Result<(Colour, Format, Processing), ParseError> {
    let text = text.split('?').next().unwrap_or("").to_ascii_lowercase();
    let (quality, ext) = match text.rsplit_once('.') {
        Some((q, e)) => (q.to_owned(), e.to_owned()),
        None => (text.clone(), "jpg".to_owned()),
    };
    let format = match ext.as_str() {
        "jpg" => Format::Jpeg,
        "png" => Format::Png,
        "webp" => Format::Webp,
        "avif" => Format::Avif,
        "tif" => Format::Tiff,
        _ => return Err(bad("IIIF :: unsupported output format")),
    };
    let mut processing = Processing::default();
    let colour = match quality.as_str() {
        "default" | "color" | "native" => Colour::AsIs,
        "gray" | "grey" => Colour::Grey,
        "bitonal" => Colour::Bitonal,
        "negative" if cfg.iiif_extensions => {
            processing.invert = true;
            Colour::AsIs
        }
        "stretch" if cfg.iiif_extensions => {
            processing.contrast = Contrast::Stretch;
            Colour::AsIs
        }
        "equalization" if cfg.iiif_extensions => {
            processing.contrast = Contrast::Equalise;
            Colour::AsIs
        }
        "log" if cfg.iiif_extensions => {
            processing.log = true;
            Colour::AsIs
        }
        _ => return Err(bad(format!("unsupported quality parameter: {quality}"))),
    };
    Ok((colour, format, processing))
}

/// Splits `IIIF_DELIMITER` page selection off an identifier: `Some(None)` means a
/// delimiter with a non-numeric page.
fn split_page<'a>(cfg: &Config, ident: &'a str) -> (&'a str, Option<Option<u32>>) {
    match cfg.iiif_delimiter.as_deref() {
        Some(d) if ident.contains(d) => {
            let p = ident.rfind(d).unwrap_or(0);
            let page = &ident[p + d.len()..];
            let n =
                (!page.is_empty() && page.bytes().all(|b| b.is_ascii_digit()) && page.len() < 9)
                    .then(|| page.parse().ok())
                    .flatten();
            (&ident[..p], Some(n))
        }
        _ => (ident, None),
    }
}

/// The access-token service's parameters, from the query string of the request target.
fn token_request(uri: Option<&str>) -> crate::access::auth2::TokenRequest {
    let mut t = crate::access::auth2::TokenRequest::default();
    let q = uri.and_then(|u| u.split_once('?')).map_or("", |(_, q)| q);
    for p in q.split('&') {
        match p.split_once('=') {
            Some(("messageId", v)) => t.message_id = Some(crate::protocol::path::url_decode(v)),
            Some(("origin", v)) => t.origin = Some(crate::protocol::path::url_decode(v)),
            _ => {}
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{ColourSpace, Level, StoredCodec};

    fn info(levels: &[(u32, u32)], dpi: f64) -> ImageInfo {
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
        let mut i = ImageInfo::plain(levels, 3, 8, ColourSpace::Srgb);
        (i.dpi_x, i.dpi_y, i.resolution_unit) = (dpi, dpi, ResolutionUnit::Centimetre);
        i
    }

    #[test]
    fn v3_info_matches_spec_layout() {
        let cfg = Config::from_vars(|_| None);
        let i = info(
            &[
                (5000, 3000),
                (2500, 1500),
                (1250, 750),
                (625, 375),
                (312, 187),
                (156, 93),
            ],
            28.34,
        );
        let s = info_json(&cfg, &i, "http://localhost/iiif/pyr5000x3000.tif", 3, None);
        let expected = r#"{
  "@context" : "http://iiif.io/api/image/3/context.json",
  "protocol" : "http://iiif.io/api/image",
  "width" : 5000,
  "height" : 3000,
  "sizes" : [
     { "width" : 156, "height" : 93 },
     { "width" : 312, "height" : 187 },
     { "width" : 625, "height" : 375 },
     { "width" : 1250, "height" : 750 },
     { "width" : 2500, "height" : 1500 }
  ],
  "tiles" : [
     { "width" : 256, "height" : 256, "scaleFactors" : [ 1, 2, 4, 8, 16, 32 ] }
  ],
  "id" : "http://localhost/iiif/pyr5000x3000.tif",
  "type": "ImageService3",
  "profile" : "level2",
  "maxWidth" : 5000,
  "maxHeight" : 5000,
  "extraQualities": ["color","gray","bitonal"],
  "extraFormats": ["tif","webp","avif"],
  "extraFeatures": ["regionByPct","sizeByPct","sizeByConfinedWh","sizeUpscaling","rotationBy90s","rotationArbitrary","mirroring"],
  "service": [
    {
      "@context": "http://iiif.io/api/annex/services/physdim/1/context.json",
      "id": "http://localhost/iiif/pyr5000x3000.tif/physdim",
      "type": "PhysicalDimensions",
      "profile": "http://iiif.io/api/annex/services/physdim",
      "physicalScale": 0.0352858,
      "physicalUnits": "cm"
    }
  ]

}"#;
        assert_eq!(s, expected);
        serde_json::from_str::<serde_json::Value>(&s).unwrap();
    }

    #[test]
    fn v2_info_is_valid_json_with_escaped_rights() {
        let cfg = Config::from_vars(|k| (k == "MAX_CVT").then(|| "-1".to_string()));
        let i = info(&[(1001, 777), (500, 388), (250, 194)], 0.0);
        let s = info_json(&cfg, &i, "http://h/a \"b\"", 2, Some("CC-BY \"x\""));
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["@id"], "http://h/a \"b\"");
        assert_eq!(v["license"], "CC-BY \"x\"");
        assert_eq!(v["profile"][0], "http://iiif.io/api/image/2/level2.json");
        assert!(v["profile"][1].get("maxWidth").is_none());
        assert_eq!(v["tiles"][0]["scaleFactors"], serde_json::json!([1, 2, 4]));
        assert!(v.get("service").is_none());
    }

    #[test]
    fn page_delimiters() {
        let cfg = Config::from_vars(|k| (k == "IIIF_DELIMITER").then(|| "::".to_string()));
        assert_eq!(
            split_page(&cfg, "stack.tif::2"),
            ("stack.tif", Some(Some(2)))
        );
        assert_eq!(split_page(&cfg, "stack.tif::x"), ("stack.tif", Some(None)));
        assert_eq!(split_page(&cfg, "plain.tif"), ("plain.tif", None));
    }

    const SMALL: (u32, u32) = (1001, 777);

    fn size(text: &str, v: u32, region: &str, max: Option<u32>) -> Result<(u32, u32), ParseError> {
        let r = parse_region(region, SMALL)?;
        parse_size(text, v, r, SMALL, max, false).map(|(w, h, _)| (w, h))
    }

    #[test]
    fn sizes_f13_to_f17_and_i17_to_i49() {
        let ok = |t: &str| size(t, 3, "full", Some(5000)).unwrap();
        assert_eq!(ok("500,"), (500, 388));
        assert_eq!(ok(",500"), (644, 500));
        assert_eq!(ok("pct:10"), (100, 78));
        assert_eq!(ok("^pct:150"), (1502, 1166));
        assert_eq!(ok("!500,500"), (500, 388));
        assert_eq!(ok("500,500"), (500, 500));
        assert_eq!(ok("max"), (1001, 777));
        assert_eq!(size("FULL", 2, "full", Some(5000)).unwrap(), (1001, 777));
        assert!(size("full", 3, "full", Some(5000)).is_err());
        let full = parse_size("full", 3, [0.0, 0.0, 1.0, 1.0], SMALL, Some(5000), true);
        assert_eq!(full.map(|(w, h, _)| (w, h)).unwrap(), (1001, 777));
        assert_eq!(ok("^2000,"), (2000, 1552));
        assert_eq!(ok("!900,900"), (900, 699));
        let err = |t: &str, v: u32| match size(t, v, "full", Some(5000)) {
            Err(ParseError::Bad(m)) => m,
            other => panic!("{t}: {other:?}"),
        };
        assert_eq!(err("2000,", 3), "IIIF: upscaling should be prefixed with ^");
        assert_eq!(
            err("pct:150", 3),
            "IIIF: upscaling should be prefixed with ^"
        );
        assert_eq!(err("abc", 3), "invalid size: no comma found");
        assert_eq!(
            err("0,", 3),
            "IIIF: invalid size: requested width or height < 0"
        );
        assert_eq!(err("^500,", 2), "invalid width");
        assert_eq!(err("x,", 3), "invalid width");
        assert_eq!(err(",y", 3), "invalid height");
        assert_eq!(size("2000,", 2, "full", Some(5000)).unwrap(), (2000, 1552));
        for t in ["max", "900,", ",700"] {
            assert_eq!(size(t, 3, "full", Some(800)).unwrap(), (800, 621), "{t}");
        }
        assert_eq!(size("^1000,700", 3, "full", Some(800)).unwrap(), (800, 560));
        assert_eq!(size("200,", 3, "square", Some(5000)).unwrap(), (200, 200));
        assert_eq!(size("max", 3, "square", Some(5000)).unwrap(), (777, 777));
    }

    #[test]
    fn regions_i30_to_i33() {
        assert_eq!(
            size("max", 3, "900,700,200,200", Some(5000)).unwrap(),
            (101, 77)
        );
        assert_eq!(
            size("max", 3, "pct:10,10,50,50", Some(5000)).unwrap(),
            (501, 389)
        );
        for r in [
            "2000,0,10,10",
            "0,0,0,10",
            "1,2,3",
            "-10,0,100,100",
            "a,b,c,d",
        ] {
            assert!(
                matches!(parse_region(r, SMALL), Err(ParseError::Bad(_))),
                "{r}"
            );
        }
    }

    #[test]
    fn rotations_and_qualities() {
        assert_eq!(parse_rotation("90").unwrap(), (false, 90.0));
        assert_eq!(parse_rotation("!180").unwrap(), (true, 180.0));
        assert_eq!(parse_rotation("360").unwrap(), (false, 0.0));
        assert_eq!(parse_rotation("22.5").unwrap(), (false, 22.5));
        assert!(parse_rotation("361").is_err());
        assert!(parse_rotation("-5").is_err());
        assert!(
            matches!(parse_rotation("x"), Err(ParseError::Bad(m)) if m == "IIIF: invalid rotation")
        );
        let cfg = Config::from_vars(|_| None);
        let qf = |t: &str| {
            parse_quality_format(t, &cfg)
                .map(|(c, f, _)| (c, f))
                .unwrap()
        };
        assert_eq!(qf("default.jpg"), (Colour::AsIs, Format::Jpeg));
        assert_eq!(qf("default"), (Colour::AsIs, Format::Jpeg));
        assert_eq!(qf("DEFAULT.JPG?t=1"), (Colour::AsIs, Format::Jpeg));
        assert_eq!(qf("gray.png"), (Colour::Grey, Format::Png));
        assert_eq!(qf("bitonal.tif"), (Colour::Bitonal, Format::Tiff));
        let ext = Config::from_vars(|k| (k == "IIIF_EXTENSIONS").then(|| "1".to_string()));
        assert!(parse_quality_format("negative.jpg", &ext).unwrap().2.invert);
        assert!(parse_quality_format("log.jpg", &ext).unwrap().2.log);
        assert!(matches!(
            parse_quality_format("default.gif", &cfg),
            Err(ParseError::Bad(_))
        ));
        assert!(matches!(
            parse_quality_format("negative.jpg", &cfg),
            Err(ParseError::Bad(m)) if m == "unsupported quality parameter: negative"
        ));
    }
}
