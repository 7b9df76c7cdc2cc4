//! Built-in HTTP/1.1 mode (`--http`): workers parse requests themselves and hand
//! them to the same protocol handlers as FastCGI, so tessera can serve IIP, IIIF,
//! DeepZoom and Zoomify with no web server in front. This module is the protocol
//! only (strict RFC 9112 framing, bounded heads and bodies, serialisation); the
//! worker's event loop owns the sockets, keep-alive, pipelining and deadlines.

pub mod viewer;

use crate::fcgi::Params;
use crate::response::{reason, Response};

/// Largest request head (request line and headers) accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest request body accepted (form-encoded IIP POSTs).
pub const MAX_BODY: usize = 1 << 20;

/// A parsed HTTP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// HTTP/1.1 keeps the connection unless told to close; HTTP/1.0 only when asked.
    pub fn keep_alive(&self) -> bool {
        let conn = self.header("Connection").map(str::to_ascii_lowercase);
        if self.version == "HTTP/1.0" {
            conn.as_deref() == Some("keep-alive")
        } else {
            conn.as_deref() != Some("close")
        }
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    pub fn query(&self) -> &str {
        self.target.split_once('?').map(|(_, q)| q).unwrap_or("")
    }

    /// The CGI parameters a web server would send for this request.
    pub fn to_params(&self) -> Params {
        let mut p = vec![
            ("REQUEST_METHOD".to_owned(), self.method.clone()),
            ("REQUEST_URI".to_owned(), self.target.clone()),
            ("QUERY_STRING".to_owned(), self.query().to_owned()),
            ("SERVER_PROTOCOL".to_owned(), self.version.clone()),
            ("CONTENT_LENGTH".to_owned(), self.body.len().to_string()),
        ];
        for (k, v) in &self.headers {
            let name = format!("HTTP_{}", k.to_ascii_uppercase().replace('-', "_"));
            p.push((name, v.clone()));
        }
        Params(p)
    }
}

/// Why a request is refused: the status to answer with and a short reason. The
/// connection is closed after the answer.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("{1}")]
    Bad(u16, &'static str),
}

fn find_head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Longest request line accepted (method, target and version).
pub const MAX_REQUEST_LINE: usize = 8 * 1024;

/// A header name is an RFC 9110 token.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Checks the framing of what has arrived of a request head so far, before its end:
/// every line ends in CRLF (a bare LF is how requests are smuggled past proxies that
/// read lines differently), and the request line, once complete, is an HTTP/1.x one
/// (an HTTP/0.9 `GET /` line would otherwise wait for a blank line that never comes).
pub fn check_partial_head(buf: &[u8]) -> Result<(), HttpError> {
    let head = find_head_end(buf).map_or(buf, |e| &buf[..e]);
    if let Some(p) = head.iter().position(|&b| b == b'\n') {
        if p == 0 || head[p - 1] != b'\r' {
            return Err(HttpError::Bad(400, "line ends must be CRLF"));
        }
        check_request_line(&head[..p - 1])?;
    } else if head.len() > MAX_REQUEST_LINE {
        return Err(HttpError::Bad(414, "request line too long"));
    }
    if head.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r') {
        return Err(HttpError::Bad(400, "line ends must be CRLF"));
    }
    if head.windows(2).any(|w| w[0] == b'\r' && w[1] != b'\n') {
        return Err(HttpError::Bad(400, "bare CR in request head"));
    }
    Ok(())
}

/// The request line: `METHOD SP /target SP HTTP/1.x`, nothing else.
fn check_request_line(line: &[u8]) -> Result<(&str, &str, &str), HttpError> {
    if line.len() > MAX_REQUEST_LINE {
        return Err(HttpError::Bad(414, "request line too long"));
    }
    let line =
        std::str::from_utf8(line).map_err(|_| HttpError::Bad(400, "request line is not text"))?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::Bad(400, "malformed request line"));
    };
    if !target.starts_with('/')
        || target.bytes().any(|b| b <= b' ' || b == 0x7f)
        || method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_uppercase())
    {
        return Err(HttpError::Bad(400, "malformed request line"));
    }
    if !version.starts_with("HTTP/") {
        return Err(HttpError::Bad(400, "malformed request line"));
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(HttpError::Bad(505, "only HTTP/1.x is served"));
    }
    Ok((method, target, version))
}

/// Parses a request head (without the body), strictly as RFC 9112 asks of a server
/// that may sit behind other HTTP intermediaries: one framing for every reader.
pub fn parse_head(head: &[u8]) -> Result<Request, HttpError> {
    check_partial_head(head)?;
    let text =
        std::str::from_utf8(head).map_err(|_| HttpError::Bad(400, "request head is not text"))?;
    let mut lines = text.split("\r\n");
    let (method, target, version) = check_request_line(lines.next().unwrap_or("").as_bytes())?;
    let mut headers: Vec<(String, String)> = Vec::new();
    for l in lines.take_while(|l| !l.is_empty()) {
        if l.starts_with([' ', '\t']) {
            return Err(HttpError::Bad(400, "obsolete line folding in headers"));
        }
        let (k, v) = l
            .split_once(':')
            .ok_or(HttpError::Bad(400, "malformed header line"))?;
        if !is_token(k) {
            return Err(HttpError::Bad(400, "malformed header line"));
        }
        let v = v.trim_matches([' ', '\t']);
        if v.bytes().any(|b| (b < b' ' && b != b'\t') || b == 0x7f) {
            return Err(HttpError::Bad(400, "control character in a header value"));
        }
        if k.eq_ignore_ascii_case("Content-Length") {
            if headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case("Content-Length"))
            {
                return Err(HttpError::Bad(400, "more than one Content-Length"));
            }
            if v.is_empty() || v.len() > 18 || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(HttpError::Bad(400, "bad Content-Length"));
            }
        }
        if k.eq_ignore_ascii_case("Transfer-Encoding") {
            return Err(HttpError::Bad(
                400,
                "Transfer-Encoding is not accepted in requests",
            ));
        }
        headers.push((k.to_owned(), v.to_owned()));
        if headers.len() > 100 {
            return Err(HttpError::Bad(431, "too many header lines"));
        }
    }
    Ok(Request {
        method: method.to_owned(),
        target: target.to_owned(),
        version: version.to_owned(),
        headers,
        body: Vec::new(),
    })
}

/// The next complete request at the start of `buf` and the number of bytes it takes
/// (head and body); `Ok(None)` while it is incomplete. A head that cannot become a
/// valid request is refused as soon as it is seen, not when it ends.
pub fn parse_request(buf: &[u8]) -> Result<Option<(Request, usize)>, HttpError> {
    let Some(end) = find_head_end(buf) else {
        // A request line over its limit is 414 whatever the rest of the head is.
        check_partial_head(&buf[..buf.len().min(MAX_HEAD + 1)])?;
        if buf.len() > MAX_HEAD {
            return Err(HttpError::Bad(431, "request head too large"));
        }
        return Ok(None);
    };
    if end > MAX_HEAD {
        check_partial_head(&buf[..end - 2])?;
        return Err(HttpError::Bad(431, "request head too large"));
    }
    let mut req = parse_head(&buf[..end - 4])?;
    let len: usize = match req.header("Content-Length") {
        None => 0,
        Some(v) => v
            .parse()
            .map_err(|_| HttpError::Bad(400, "bad Content-Length"))?,
    };
    if len > MAX_BODY {
        return Err(HttpError::Bad(413, "request body too large"));
    }
    if buf.len() < end + len {
        return Ok(None);
    }
    req.body = buf[end..end + len].to_vec();
    Ok(Some((req, end + len)))
}

/// An HTTP/1.1 response from the CGI-style response model.
pub fn serialize(r: &Response, head_only: bool, keep_alive: bool) -> Vec<u8> {
    let mut out = serialize_head(r, keep_alive);
    if !head_only {
        out.extend_from_slice(&r.body);
    }
    out
}

/// The status line and headers of `r` (with `Content-Length` and `Connection`), to be
/// followed by its body unless the request was HEAD.
pub fn serialize_head(r: &Response, keep_alive: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(format!("HTTP/1.1 {} {}\r\n", r.status, reason(r.status)).as_bytes());
    let mut has_length = false;
    for (k, v) in &r.headers {
        has_length |= k.eq_ignore_ascii_case("Content-Length");
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend(v.bytes().filter(|&b| b != b'\r' && b != b'\n'));
        out.extend_from_slice(b"\r\n");
    }
    if !has_length {
        out.extend_from_slice(format!("Content-Length: {}\r\n", r.body.len()).as_bytes());
    }
    out.extend_from_slice(if keep_alive {
        b"Connection: keep-alive\r\n\r\n".as_slice()
    } else {
        b"Connection: close\r\n\r\n".as_slice()
    });
    out
}

/// A plain-text error for requests that never reached a handler.
pub fn error_response(status: u16, msg: &str) -> Response {
    Response {
        status,
        headers: vec![
            ("Server".into(), crate::response::SERVER.into()),
            ("Content-Type".into(), "text/plain; charset=utf-8".into()),
        ],
        body: msg.as_bytes().to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_heads() {
        let r =
            parse_head(b"GET /iiif/a.tif/info.json?x=1 HTTP/1.1\r\nHost: example\r\nAccept: */*")
                .unwrap();
        assert_eq!(
            (r.method.as_str(), r.path(), r.query()),
            ("GET", "/iiif/a.tif/info.json", "x=1")
        );
        assert_eq!(r.header("host"), Some("example"));
        assert!(r.keep_alive());
        let p = r.to_params();
        assert_eq!(p.get("HTTP_HOST"), Some("example"));
        assert_eq!(p.get("QUERY_STRING"), Some("x=1"));
        assert_eq!(p.get("REQUEST_URI"), Some("/iiif/a.tif/info.json?x=1"));
        let r = parse_head(b"GET / HTTP/1.0").unwrap();
        assert!(!r.keep_alive());
        for bad in [
            &b"GET /"[..],
            b"GET / HTTP/2",
            b"get / HTTP/1.1",
            b"GET x HTTP/1.1",
            b"GET / HTTP/1.1\r\nNoColon",
        ] {
            assert!(parse_head(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn framing_is_strict() {
        let status = |head: &[u8]| match parse_head(head) {
            Err(HttpError::Bad(st, _)) => st,
            other => panic!("{other:?} for {}", String::from_utf8_lossy(head)),
        };
        for bad in [
            &b"GET / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 48"[..],
            b"GET / HTTP/1.1\r\nContent-Length: 5\r\ncontent-length: 5",
            b"GET / HTTP/1.1\r\nContent-Length: +5",
            b"GET / HTTP/1.1\r\nContent-Length: 5, 5",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked",
            b"GET / HTTP/1.1\r\nX-A: b\r\n\tfolded",
            b"GET / HTTP/1.1\r\nX-A: b\r\n folded: x",
            b"GET / HTTP/1.1\nHost: x",
            b"GET / HTTP/1.1\r\nHost: x\nX-B: y",
            b"GET / HTTP/1.1\r\nHost: x\ry",
            b"GET /",
            b"GET / HTTP/1.1\r\nX A: b",
            b"GET / HTTP/1.1\r\nX-A: b\x01c",
        ] {
            assert_eq!(status(bad), 400, "{}", String::from_utf8_lossy(bad));
        }
        let long = format!("GET /{} HTTP/1.1", "a".repeat(MAX_REQUEST_LINE));
        assert_eq!(status(long.as_bytes()), 414);
        assert_eq!(status(b"GET / HTTP/2.0"), 505);
        let ok = parse_head(b"GET / HTTP/1.1\r\nContent-Length: 12\r\nX-Tab:\tv\t").unwrap();
        assert_eq!(
            (ok.header("content-length"), ok.header("x-tab")),
            (Some("12"), Some("v"))
        );
    }

    #[test]
    fn broken_heads_are_refused_before_they_end() {
        // Neither of these would ever reach a blank line.
        for partial in [
            &b"GET /\r\n"[..],
            b"GET / HTTP/1.1\nHost: a\n",
            b"GET / HTTP/1.1\r\nA: b\nC",
        ] {
            assert!(
                matches!(check_partial_head(partial), Err(HttpError::Bad(400, _))),
                "{}",
                String::from_utf8_lossy(partial)
            );
        }
        for fine in [
            &b"GET / HT"[..],
            b"GET / HTTP/1.1\r",
            b"GET / HTTP/1.1\r\nHost: a\r\n",
        ] {
            assert!(
                check_partial_head(fine).is_ok(),
                "{}",
                String::from_utf8_lossy(fine)
            );
        }
        let long = vec![b'a'; MAX_REQUEST_LINE + 1];
        assert!(matches!(
            check_partial_head(&long),
            Err(HttpError::Bad(414, _))
        ));
    }

    #[test]
    fn serializes_with_length_and_connection() {
        let r = error_response(404, "nope");
        let s = String::from_utf8(serialize(&r, false, true)).unwrap();
        assert!(s.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(s.contains("Content-Length: 4\r\n"));
        assert!(s.ends_with("Connection: keep-alive\r\n\r\nnope"));
        let s = String::from_utf8(serialize(&r, true, false)).unwrap();
        assert!(s.ends_with("Connection: close\r\n\r\n"));
    }
}
