//! The ids IIIF responses give themselves (docs/protocols.md §2.2): a service id must be a URL
//! that names the same image again, so it is rebuilt from what the client sent (or from
//! `X-IIIF-ID` / `BASE_URL`), percent-encoded as it was sent, never from its decoding.

use crate::config::Config;
use crate::protocol::path::{percent_decode, uri_escape, Encoding};
use crate::protocol::HttpInfo;
use crate::response::Response;

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
pub(super) fn service_id(
    cfg: &Config,
    http: &HttpInfo,
    identifier: &str,
) -> Result<String, Response> {
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

/// The identifier as the client wrote it in `raw` (the undecoded argument), without the
/// last `segments` path segments, made fit for a URL path. `decoded` is that identifier
/// decoded once; it is encoded instead when an escaped `/` in the cut segments keeps the
/// raw text from lining up (every `%` escaped, so one decoding gives it back).
pub(super) fn encoded_identifier(
    raw: &str,
    segments: usize,
    decoded: &str,
    encoding: Encoding,
) -> String {
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

/// The id of the service an image request belongs to: the request URI without its
/// four parameter segments (or `X-IIIF-ID` / `BASE_URL`), percent-encoded as sent.
pub(super) fn image_service_id(cfg: &Config, http: &HttpInfo, identifier: &str) -> Option<String> {
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
