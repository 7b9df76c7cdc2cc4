//! The IIIF Authorization Flow 2 services of an image: `probe`, `token` and `logout`,
//! reached as path segments after the identifier when an `ACCESS_POLICY` is set. The
//! policy and the answers live in `access::auth2`; this file only turns the request into
//! their arguments, so the IIIF path handling stays out of the access code.

use super::ids::service_id;
use super::params::split_page;
use crate::protocol::open::open_image;
use crate::protocol::path::Encoding;
use crate::protocol::{Ctx, HttpInfo};
use crate::response::Response;

/// The IIIF Authorization Flow services of image `ident`: `probe`, `token`, `logout`.
pub(super) fn service(
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
