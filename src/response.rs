//! The CGI response envelope every protocol answers with.
//!
//! A [`Response`] is a status, an ordered header list and a body; [`Response::to_cgi`]
//! writes the header block the web server turns into HTTP (`Status:` line omitted
//! for 200, CRLF line ends, blank line, body). Header order follows iipsrv's
//! observed output, which some clients and tests compare.

use crate::config::Config;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Product token sent in every `Server` header.
pub const SERVER: &str = concat!("tessera/", env!("CARGO_PKG_VERSION"));

/// One response, ready to be serialised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// The reason phrase of the statuses the server emits.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        303 => "See Other",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// `Last-Modified` value for a file time (whole seconds, RFC 7231 IMF-fixdate).
pub fn http_date(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(secs))
}

fn cors_block(cfg: &Config, h: &mut Vec<(String, String)>) {
    if let Some(origin) = &cfg.cors {
        h.push(("Access-Control-Allow-Origin".into(), origin.clone()));
        h.push((
            "Access-Control-Allow-Methods".into(),
            "GET, HEAD, POST, OPTIONS".into(),
        ));
        // Authorization: viewers send access tokens as bearer tokens (ACCESS_POLICY).
        h.push((
            "Access-Control-Allow-Headers".into(),
            "Accept, Content-Type, X-Requested-With, If-Modified-Since, Authorization".into(),
        ));
        h.push(("Access-Control-Max-Age".into(), "86400".into()));
    }
}

fn h(name: &str, value: impl Into<String>) -> (String, String) {
    (name.to_owned(), value.into())
}

impl Response {
    /// An image, JSON or XML body (docs/server.md §4). `disposition` is set for region
    /// exports; `Content-Length` is always sent since bodies are complete in memory.
    pub fn content(
        cfg: &Config,
        mime: &str,
        body: Vec<u8>,
        mtime: Option<SystemTime>,
        disposition: Option<String>,
    ) -> Response {
        let mime = if mime.contains('/') {
            mime.to_owned()
        } else {
            format!("application/{mime}")
        };
        let mut headers = vec![
            h("Server", SERVER),
            h("X-Powered-By", "IIPImage"),
            h("Content-Type", mime),
        ];
        if let Some(t) = mtime {
            headers.push(h("Last-Modified", http_date(t)));
        }
        headers.push(h("Cache-Control", cfg.cache_control.clone()));
        headers.push(h("Content-Length", body.len().to_string()));
        cors_block(cfg, &mut headers);
        if let Some(d) = disposition {
            headers.push(h("Content-Disposition", d));
        }
        Response {
            status: 200,
            headers,
            body,
        }
    }

    /// A plain-text error: a status and a one-line message (docs/server.md §4). The
    /// message must not contain server paths.
    pub fn text_error(cfg: &Config, status: u16, message: &str) -> Response {
        let mut headers = vec![
            h("Server", SERVER),
            h("Content-Type", "text/plain; charset=utf-8"),
            h("Cache-Control", "no-cache"),
        ];
        cors_block(cfg, &mut headers);
        Response {
            status,
            headers,
            body: message.as_bytes().to_vec(),
        }
    }

    /// A header-only response: 204 (with CORS), 304 or 405.
    pub fn status_only(cfg: &Config, status: u16) -> Response {
        let mut headers = vec![
            h("Server", SERVER),
            h("X-Powered-By", "IIPImage"),
            h("Allow", "GET HEAD POST OPTIONS"),
            h("Cache-Control", cfg.cache_control.clone()),
            h("Content-Length", "0"),
        ];
        if status == 204 || status == 304 {
            cors_block(cfg, &mut headers);
        }
        Response {
            status,
            headers,
            body: Vec::new(),
        }
    }

    /// A redirect (IIIF `{id}` → `{id}/info.json`).
    pub fn redirect(cfg: &Config, location: &str) -> Response {
        let mut headers = vec![
            h("Server", SERVER),
            h("X-Powered-By", "IIPImage"),
            h("Location", location),
            h("Content-Length", "0"),
        ];
        cors_block(cfg, &mut headers);
        Response {
            status: 303,
            headers,
            body: Vec::new(),
        }
    }

    /// IIP text (OBJ) success response.
    pub fn iip_text(
        cfg: &Config,
        mime: &str,
        mtime: Option<SystemTime>,
        body: Vec<u8>,
    ) -> Response {
        let mut headers = vec![
            h("Server", SERVER),
            h("X-Powered-By", "IIPImage"),
            h("Cache-Control", cfg.cache_control.clone()),
        ];
        if let Some(t) = mtime {
            headers.push(h("Last-Modified", http_date(t)));
        }
        headers.push(h("Content-Type", mime));
        headers.push(h("Content-Length", body.len().to_string()));
        cors_block(cfg, &mut headers);
        Response {
            status: 200,
            headers,
            body,
        }
    }

    /// IIP error lines (docs/protocols.md §1.1: the 1.1 layout, with a proper status).
    pub fn iip_error(cfg: &Config, lines: &str) -> Response {
        let mut headers = vec![
            h("Server", SERVER),
            h("Cache-Control", "no-cache"),
            h("Content-Type", "application/vnd.netfpx"),
        ];
        cors_block(cfg, &mut headers);
        headers.push(h(
            "Content-Disposition",
            "inline;filename=\"IIPisAMadGameClosedToOurUnderstanding.netfpx\"",
        ));
        Response {
            status: 400,
            headers,
            body: lines.as_bytes().to_vec(),
        }
    }

    /// The HTML page for an empty request.
    pub fn banner(cfg: &Config) -> Response {
        let body = format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>IIPImage Server</title></head>\
             <body><h1>IIPImage Server</h1><p>tessera {}: an iipsrv-compatible image tile server \
             (IIP, IIIF, DeepZoom, Zoomify).</p></body></html>\n",
            env!("CARGO_PKG_VERSION")
        );
        let mut headers = vec![
            h("Server", SERVER),
            h("Content-Type", "text/html"),
            h("Content-Disposition", "inline;filename=\"iipsrv.html\""),
            h("Content-Length", body.len().to_string()),
        ];
        cors_block(cfg, &mut headers);
        Response {
            status: 200,
            headers,
            body: body.into_bytes(),
        }
    }

    /// Value of the first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Parses what [`to_cgi`](Self::to_cgi) wrote (for responses kept in memcached).
    pub fn from_cgi(bytes: &[u8]) -> Option<Response> {
        let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = std::str::from_utf8(&bytes[..end]).ok()?;
        let mut status = 200;
        let mut headers = Vec::new();
        for line in head.split("\r\n") {
            let (k, v) = line.split_once(": ")?;
            if k == "Status" {
                status = v.get(..3)?.parse().ok()?;
            } else {
                headers.push((k.to_owned(), v.to_owned()));
            }
        }
        Some(Response {
            status,
            headers,
            body: bytes[end + 4..].to_vec(),
        })
    }

    /// Serialises the CGI header block and, unless `head_only`, the body.
    pub fn to_cgi(&self, head_only: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + if head_only { 0 } else { self.body.len() });
        if self.status != 200 {
            out.extend_from_slice(
                format!("Status: {} {}\r\n", self.status, reason(self.status)).as_bytes(),
            );
        }
        for (k, v) in &self.headers {
            out.extend_from_slice(k.as_bytes());
            out.extend_from_slice(b": ");
            // A header value never carries a line break (it would split the block).
            out.extend(v.bytes().filter(|&b| b != b'\r' && b != b'\n'));
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        if !head_only {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(cors: Option<&str>) -> Config {
        let cors = cors.map(str::to_owned);
        Config::from_vars(move |k| if k == "CORS" { cors.clone() } else { None })
    }

    #[test]
    fn tile_headers_in_order() {
        let t = UNIX_EPOCH + Duration::from_secs(1_795_530_093);
        let r = Response::content(&cfg(None), "image/jpeg", vec![1, 2, 3], Some(t), None);
        let s = String::from_utf8_lossy(&r.to_cgi(false)).into_owned();
        let names: Vec<&str> = s
            .split("\r\n")
            .take_while(|l| !l.is_empty())
            .map(|l| l.split(':').next().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "Server",
                "X-Powered-By",
                "Content-Type",
                "Last-Modified",
                "Cache-Control",
                "Content-Length"
            ]
        );
        assert!(s.contains("Last-Modified: Tue, 24 Nov 2026 14:21:33 GMT\r\n"));
        assert!(s.contains("Content-Length: 3\r\n\r\n\x01\x02\x03"));
        assert!(!s.starts_with("Status"));
    }

    #[test]
    fn head_keeps_length_drops_body() {
        let r = Response::content(&cfg(None), "image/jpeg", vec![9; 10], None, None);
        let b = r.to_cgi(true);
        assert!(b.ends_with(b"Content-Length: 10\r\n\r\n"));
    }

    #[test]
    fn errors_carry_status_and_cors() {
        let r = Response::text_error(&cfg(Some("*")), 404, "missing");
        let s = String::from_utf8(r.to_cgi(false)).unwrap();
        assert!(s.starts_with("Status: 404 Not Found\r\n"));
        assert!(s.contains("Access-Control-Allow-Origin: *\r\n"));
        assert!(s.ends_with("\r\n\r\nmissing"));
        let e = Response::iip_error(&cfg(None), "Error/7:3 2 foo\r\n");
        let s = String::from_utf8(e.to_cgi(false)).unwrap();
        assert!(s.starts_with("Status: 400 Bad Request\r\n"));
        assert!(s.ends_with(
            "IIPisAMadGameClosedToOurUnderstanding.netfpx\"\r\n\r\nError/7:3 2 foo\r\n"
        ));
    }

    #[test]
    fn status_only_bodies_are_empty() {
        for (st, cors) in [(204, true), (304, true), (405, false)] {
            let r = Response::status_only(&cfg(Some("*")), st);
            let s = String::from_utf8(r.to_cgi(false)).unwrap();
            assert!(s.starts_with(&format!("Status: {st} ")));
            // The CORS block may follow Content-Length; either way the body is empty.
            assert!(s.contains("Content-Length: 0\r\n"), "{s}");
            assert!(s.ends_with("\r\n\r\n"), "{s}");
            assert!(r.body.is_empty());
            assert_eq!(s.contains("Access-Control-Allow-Origin"), cors);
        }
    }

    #[test]
    fn cgi_round_trip() {
        let r = Response::content(
            &cfg(Some("*")),
            "image/png",
            vec![0, 13, 10, 13, 10, 1],
            None,
            None,
        );
        assert_eq!(Response::from_cgi(&r.to_cgi(false)), Some(r));
        let e = Response::text_error(&cfg(None), 404, "gone");
        assert_eq!(Response::from_cgi(&e.to_cgi(false)), Some(e));
        assert_eq!(Response::from_cgi(b"no header end"), None);
    }

    #[test]
    fn header_injection_is_stripped() {
        let mut r = Response::text_error(&cfg(None), 400, "x");
        r.headers.push(("X-Test".into(), "a\r\nInjected: 1".into()));
        let s = String::from_utf8(r.to_cgi(false)).unwrap();
        assert!(s.contains("X-Test: aInjected: 1\r\n"));
    }
}
