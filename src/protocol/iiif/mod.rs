//! IIIF Image API 2 and 3 (docs/protocols.md §2). One identifier path can ask for a base URI
//! (answered by a redirect), info.json, an image or an authorization service; this module
//! tells them apart and opens the image, and each kind of answer is built in a file of its own.

mod auth;
mod ids;
mod image;
mod info;
mod params;

pub use info::info_json;

use super::open::{open_image, Current};
use super::path::{percent_decode, Encoding};
use super::{Ctx, HttpInfo};
use crate::config::Config;
use crate::response::Response;
use ids::{encoded_identifier, service_id};
use params::split_page;

/// The answer to an `IIIF=` request; `raw` is its argument as sent, still percent-encoded.
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
            return auth::service(ctx, http, policy, ident, last);
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
        return info::respond(ctx, http, raw, ident);
    }
    image::respond(ctx, http, raw, &arg)
}

/// Opens the image `ident` names, with the page an `IIIF_DELIMITER` suffix selects. A
/// delimiter followed by anything but a number is refused before the file is looked for.
fn open_page(
    ctx: &mut Ctx,
    http: &HttpInfo,
    ident: &str,
) -> Result<(Current, Option<u32>), Response> {
    let (file_ident, page) = split_page(ctx.cfg, ident);
    if page.is_some_and(|p| p.is_none()) {
        return Err(Response::text_error(
            ctx.cfg,
            400,
            "IIIF: the page after the delimiter must be a number",
        ));
    }
    let cur = open_image(ctx, http, file_ident, Encoding::Path)?;
    Ok((cur, page.flatten()))
}

/// Whether `identifier` names an image file (or an image sequence).
fn names_image(cfg: &Config, identifier: &str) -> bool {
    let client = crate::protocol::path::client_path(identifier, Encoding::Path);
    crate::protocol::path::resolve(&client, &cfg.filesystem_prefix, &cfg.filesystem_suffix).is_ok()
        || crate::protocol::path::sequence(&client, &cfg.filesystem_prefix, &cfg.filename_pattern)
            .is_ok()
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
