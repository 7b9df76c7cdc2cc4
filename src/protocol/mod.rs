//! Request intake: from CGI parameters to a protocol handler (docs/server.md §2).
//!
//! `URI_MAP` prefixes, the method rules (OPTIONS → 204, HEAD = GET without body,
//! others 405), the request string (query, or a POSTed form body), then IIP's
//! left-to-right command processing, which also carries the IIIF, DeepZoom and
//! Zoomify entry commands.

pub mod deepzoom;
pub mod iiif;
pub mod iip;
pub mod open;
pub mod path;
pub mod science;
pub mod zoomify;

use crate::config::{Config, MappedProtocol};
use crate::fcgi::Params;
use crate::image::cache::ImageCache;
use crate::response::Response;

/// Per-worker state the handlers share across requests.
pub struct Ctx<'a> {
    pub cfg: &'a Config,
    pub images: &'a mut ImageCache,
    /// The shared tile cache, when `MAX_IMAGE_CACHE_SIZE` is not 0.
    pub tiles: Option<&'a shm::Cache>,
    /// The memcached second level, when `MEMCACHED_SERVERS` names servers.
    pub memcached: Option<&'a mut crate::memcached::Client>,
}

/// The HTTP facts of one request that handlers consult.
#[derive(Debug, Default, Clone)]
pub struct HttpInfo {
    pub method: String,
    pub request_uri: Option<String>,
    pub host: Option<String>,
    pub https: bool,
    pub accept: Option<String>,
    pub if_modified_since: Option<String>,
    pub x_iiif_id: Option<String>,
    /// `Cookie` (the access-token service reads the login cookie from it).
    pub cookies: Option<String>,
    /// The request string (query, mapped path, or form body).
    pub request_string: String,
    /// Whether the request string is a `URI_MAP`-mapped path rather than a query.
    pub mapped: bool,
    /// The token and signature the request presents (checked against `ACCESS_POLICY`).
    pub credentials: crate::access::Credentials,
    /// Set when the request opened an image a policy rule protects: its answers must
    /// not be kept by shared HTTP caches.
    pub protected: std::cell::Cell<bool>,
}

impl HttpInfo {
    pub fn is_post(&self) -> bool {
        self.method == "POST"
    }

    /// How the request string carries image paths: what `+` means in it.
    pub fn encoding(&self) -> path::Encoding {
        if self.mapped {
            path::Encoding::Path
        } else {
            path::Encoding::Form
        }
    }
}

/// The outcome of one request: the response and whether to omit its body (HEAD).
pub struct Outcome {
    pub response: Response,
    pub head_only: bool,
    /// `iip`, `iiif`, `deepzoom`, `zoomify` or `other`, for metrics and the access log.
    pub protocol: &'static str,
}

/// Which protocol a request string speaks, from its first command.
fn protocol_of(request: &str) -> &'static str {
    let first = request.split('=').next().unwrap_or("");
    match first.to_ascii_lowercase().as_str() {
        "iiif" => "iiif",
        "deepzoom" => "deepzoom",
        "zoomify" => "zoomify",
        _ => "iip",
    }
}

/// Applies `URI_MAP` (iipsrv's rule, but the prefix must be followed by `/` or the end).
fn map_uri(cfg: &Config, uri: &str) -> Option<String> {
    let path = uri.split('?').next().unwrap_or("");
    for m in &cfg.uri_map {
        let rest = if m.prefix.is_empty() {
            path.strip_prefix('/')
        } else {
            path.strip_prefix('/')
                .and_then(|p| p.strip_prefix(m.prefix.as_str()))
                .and_then(|r| {
                    if r.is_empty() {
                        Some(r)
                    } else {
                        r.strip_prefix('/')
                    }
                })
        };
        if let Some(rest) = rest {
            let cmd = match m.protocol {
                MappedProtocol::Iip => "FIF",
                MappedProtocol::Iiif => "IIIF",
                MappedProtocol::DeepZoom => "DeepZoom",
                MappedProtocol::Zoomify => "Zoomify",
            };
            return Some(format!("{cmd}={rest}"));
        }
    }
    None
}

/// Whether `URI_MAP` routes `uri` to a protocol.
pub fn is_mapped(cfg: &Config, uri: &str) -> bool {
    map_uri(cfg, uri).is_some()
}

/// The public host and scheme a trusted proxy reports for a request.
#[derive(Debug, Default, PartialEq, Eq)]
struct Forwarded<'a> {
    host: Option<&'a str>,
    proto: Option<&'a str>,
}

/// `Forwarded` (RFC 7239; its first element, the proxy nearest the client) or else
/// `X-Forwarded-Host` / `X-Forwarded-Proto`, only when the request comes from an
/// address in `TRUSTED_PROXIES`: from anyone else these headers would let a client
/// choose the `id` URLs other clients are given.
fn forwarded<'a>(cfg: &Config, params: &'a Params) -> Forwarded<'a> {
    let remote = params.get("REMOTE_ADDR");
    if !cfg.trusted_proxies.iter().any(|t| t.matches(remote)) {
        return Forwarded::default();
    }
    let first = |v: &'a str| v.split(',').next().map(str::trim).filter(|s| !s.is_empty());
    let mut f = Forwarded::default();
    if let Some(v) = params.get("HTTP_FORWARDED").and_then(first) {
        for pair in v.split(';') {
            let Some((k, val)) = pair.split_once('=') else {
                continue;
            };
            let val = val.trim().trim_matches('"');
            match k.trim().to_ascii_lowercase().as_str() {
                "host" if !val.is_empty() => f.host = Some(val),
                "proto" if !val.is_empty() => f.proto = Some(val),
                _ => {}
            }
        }
    }
    if f.host.is_none() {
        f.host = params.get("HTTP_X_FORWARDED_HOST").and_then(first);
    }
    if f.proto.is_none() {
        f.proto = params.get("HTTP_X_FORWARDED_PROTO").and_then(first);
    }
    // A host with characters no host has is not used in URLs handed to others.
    if f.host.is_some_and(|h| {
        !h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
    }) {
        f.host = None;
    }
    f
}

/// Handles one FastCGI request end to end.
pub fn handle(ctx: &mut Ctx, params: &Params, stdin: &[u8]) -> Outcome {
    let cfg = ctx.cfg;
    let method = params
        .get("REQUEST_METHOD")
        .unwrap_or("GET")
        .to_ascii_uppercase();
    let head_only = method == "HEAD";
    log::debug!(
        "request: {method} {} ?{}",
        params.get("REQUEST_URI").unwrap_or(""),
        params.get("QUERY_STRING").unwrap_or("")
    );
    let forwarded = forwarded(cfg, params);
    let mut http = HttpInfo {
        method: method.clone(),
        request_uri: params.get("REQUEST_URI").map(str::to_owned),
        host: forwarded
            .host
            .or_else(|| params.get("HTTP_HOST"))
            .or_else(|| params.get("SERVER_NAME"))
            .map(str::to_owned),
        https: match forwarded.proto {
            Some(p) => p.eq_ignore_ascii_case("https"),
            None => params
                .get("HTTPS")
                .is_some_and(|v| !v.is_empty() && !v.eq_ignore_ascii_case("off")),
        },
        accept: params.get("HTTP_ACCEPT").map(str::to_owned),
        if_modified_since: params.get("HTTP_IF_MODIFIED_SINCE").map(str::to_owned),
        x_iiif_id: params.get("HTTP_X_IIIF_ID").map(str::to_owned),
        cookies: params.get("HTTP_COOKIE").map(str::to_owned),
        request_string: String::new(),
        mapped: false,
        credentials: Default::default(),
        protected: Default::default(),
    };

    match method.as_str() {
        "OPTIONS" => {
            return Outcome {
                response: Response::status_only(cfg, 204),
                head_only: false,
                protocol: "other",
            }
        }
        "GET" | "HEAD" | "POST" => {}
        _ => {
            return Outcome {
                response: Response::status_only(cfg, 405),
                head_only: false,
                protocol: "other",
            }
        }
    }

    let mapped = http.request_uri.as_deref().and_then(|u| map_uri(cfg, u));
    http.mapped = mapped.is_some();
    http.request_string = match mapped {
        Some(s) => s,
        None => {
            let q = params.get("QUERY_STRING").unwrap_or("");
            if q.is_empty() && http.is_post() {
                String::from_utf8_lossy(stdin).trim_end().to_owned()
            } else {
                q.to_owned()
            }
        }
    };

    if http.request_string.is_empty() {
        return Outcome {
            response: Response::banner(cfg),
            head_only,
            protocol: "other",
        };
    }
    let protocol = protocol_of(&http.request_string);
    if let Some(policy) = cfg.access.as_deref() {
        let presented = crate::access::Presented {
            authorization: params.get("HTTP_AUTHORIZATION"),
            cookies: http.cookies.as_deref(),
            uri: params.get("REQUEST_URI"),
        };
        http.credentials = crate::access::credentials(policy, &presented);
        if let crate::access::signed::Signature::Invalid(why) = http.credentials.signature {
            return Outcome {
                response: crate::access::bad_signature(cfg, why),
                head_only,
                protocol,
            };
        }
        http.request_string = crate::access::signed::strip_params(&http.request_string);
    }
    // memcached holds whole responses by request; conditional requests bypass it. The
    // lookup comes before the image is opened, so under a policy the key also carries
    // what the client's credentials open: an answer made for one client is only served
    // to clients who may see exactly as much.
    let mc_key = (ctx.memcached.is_some() && http.if_modified_since.is_none()).then(|| {
        let mut k = http.request_string.clone();
        if cfg.access.is_some() {
            k.push_str(&format!("\0access:{:016x}", http.credentials.fingerprint));
        }
        crate::memcached::Client::key(&k)
    });
    if let (Some(mc), Some(key)) = (ctx.memcached.as_deref_mut(), mc_key.as_deref()) {
        if let Some(response) = mc.get(key).and_then(|b| Response::from_cgi(&b)) {
            return Outcome {
                response,
                head_only,
                protocol,
            };
        }
    }
    // A fault left over from an earlier request was answered there.
    crate::image::guard::take_fault();
    crate::budget::start(cfg.max_render_time);
    let mut response = iip::run(ctx, &http);
    if crate::image::guard::take_fault() {
        // The file shrank under its map while it was read (replaced in place): what was
        // read past its new end was zeros. Nothing of this answer is kept, and the
        // worker's opened images go, so the next request reads the file as it is now.
        log::warn!(
            "{}: the image file changed while it was read (truncated or replaced in place)",
            http.request_string
        );
        ctx.images.clear();
        response = Response::text_error(cfg, 404, "Image file changed while it was read");
    }
    if http.protected.get() && matches!(response.status, 200 | 304) {
        for (k, v) in response.headers.iter_mut() {
            if k == "Cache-Control" && v != "no-store" {
                *v = "private".into();
            }
        }
        response
            .headers
            .push(("Vary".into(), "Authorization, Cookie".into()));
    }
    // Never kept: errors, 304s, and info.json (it depends on Host and Accept).
    let keep = response.status == 200
        && !response
            .header("Content-Type")
            .is_some_and(|t| t.starts_with("application/ld+json"));
    if let (Some(mc), Some(key), true) = (ctx.memcached.as_deref_mut(), mc_key.as_deref(), keep) {
        mc.set(key, &response.to_cgi(false));
    }
    Outcome {
        response,
        head_only,
        protocol,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg_with_map(map: &str) -> Config {
        let map = map.to_owned();
        Config::from_vars(move |k| (k == "URI_MAP").then(|| map.clone()))
    }

    #[test]
    fn uri_map_prefixes() {
        let cfg = cfg_with_map("iiif=>IIIF");
        assert_eq!(
            map_uri(&cfg, "/iiif/a/b.tif/full/max/0/default.jpg?x=1").as_deref(),
            Some("IIIF=a/b.tif/full/max/0/default.jpg")
        );
        assert_eq!(map_uri(&cfg, "/iiifx/a.tif"), None);
        assert_eq!(map_uri(&cfg, "/other/a.tif"), None);
        let cfg = cfg_with_map("=>IIP");
        assert_eq!(map_uri(&cfg, "/a.tif").as_deref(), Some("FIF=a.tif"));
        let cfg = cfg_with_map("dz=>DeepZoom zoom=>Zoomify");
        assert_eq!(
            map_uri(&cfg, "/zoom/x.tif/ImageProperties.xml").as_deref(),
            Some("Zoomify=x.tif/ImageProperties.xml")
        );
    }

    #[test]
    fn forwarded_headers_only_from_trusted_proxies() {
        let cfg = Config::from_vars(|k| (k == "TRUSTED_PROXIES").then(|| "10.0.0.0/8".into()));
        let params = |remote: &str, extra: &[(&str, &str)]| {
            let mut p = vec![("REMOTE_ADDR".to_owned(), remote.to_owned())];
            p.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
            Params(p)
        };
        let x = [
            ("HTTP_X_FORWARDED_HOST", "images.example.org, inner"),
            ("HTTP_X_FORWARDED_PROTO", "https"),
        ];
        let p = params("10.1.2.3", &x);
        assert_eq!(
            forwarded(&cfg, &p),
            Forwarded {
                host: Some("images.example.org"),
                proto: Some("https")
            }
        );
        let p = params("192.0.2.1", &x);
        assert_eq!(forwarded(&cfg, &p), Forwarded::default());
        let p = params(
            "10.0.0.1",
            &[
                (
                    "HTTP_FORWARDED",
                    "for=1.2.3.4;proto=https;host=\"a.example:8443\", for=x",
                ),
                ("HTTP_X_FORWARDED_HOST", "ignored.example"),
            ],
        );
        assert_eq!(
            forwarded(&cfg, &p),
            Forwarded {
                host: Some("a.example:8443"),
                proto: Some("https")
            }
        );
        let p = params("10.0.0.1", &[("HTTP_X_FORWARDED_HOST", "evil\"><script>")]);
        assert_eq!(forwarded(&cfg, &p).host, None);
    }
}
