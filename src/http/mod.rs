//! Built-in HTTP/1.1 mode (`--http`): workers parse requests themselves and hand
//! them to the same protocol handlers as FastCGI, so tessera can serve IIP, IIIF,
//! DeepZoom and Zoomify with no web server in front. Bounded headers and bodies,
//! read/write timeouts, keep-alive.

pub mod viewer;

use crate::fcgi::{Params, Stream};
use crate::response::{reason, Response};
use std::io;
use std::time::Duration;

/// Largest request head (request line and headers) accepted.
pub const MAX_HEAD: usize = 16 * 1024;
/// Largest request body accepted (form-encoded IIP POSTs).
pub const MAX_BODY: usize = 1 << 20;
/// Most requests served on one kept-alive connection.
pub const MAX_REQUESTS_PER_CONN: usize = 10_000;

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

/// Why a request could not be read; `status` is what to answer, if anything.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("connection closed")]
    Closed,
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
    #[error("{1}")]
    Bad(u16, &'static str),
}

/// Reads HTTP requests from one connection.
pub struct Conn<S: Stream> {
    stream: S,
    buf: Vec<u8>,
    /// Whether a response was written (an idle connection is then a kept-alive one).
    served: bool,
    stop: Option<&'static std::sync::atomic::AtomicBool>,
    /// Read and write timeout once a request is arriving.
    timeout: Duration,
    /// The listening socket: an idle connection gives way when others are waiting.
    listener: Option<std::os::fd::RawFd>,
}

/// How long a fresh connection may stay silent before its first request.
const IDLE_FIRST: Duration = Duration::from_secs(5);
/// How long a kept-alive connection may stay silent between requests.
const IDLE_KEEP_ALIVE: Duration = Duration::from_secs(2);

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn find_head_end(b: &[u8]) -> Option<usize> {
    b.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Parses a request head (without the body).
pub fn parse_head(head: &[u8]) -> Result<Request, HttpError> {
    let text =
        std::str::from_utf8(head).map_err(|_| HttpError::Bad(400, "request head is not text"))?;
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::Bad(400, "malformed request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::Bad(505, "only HTTP/1.x is served"));
    }
    if !target.starts_with('/')
        || method.is_empty()
        || !method.bytes().all(|b| b.is_ascii_uppercase())
    {
        return Err(HttpError::Bad(400, "malformed request line"));
    }
    let mut headers = Vec::new();
    for l in lines.take_while(|l| !l.is_empty()) {
        let (k, v) = l
            .split_once(':')
            .ok_or(HttpError::Bad(400, "malformed header line"))?;
        if k.is_empty() || k.contains(' ') {
            return Err(HttpError::Bad(400, "malformed header line"));
        }
        headers.push((k.to_owned(), v.trim().to_owned()));
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

impl<S: Stream> Conn<S> {
    pub fn new(stream: S, timeout: Duration) -> io::Result<Self> {
        stream.set_timeouts(Some(timeout), Some(timeout))?;
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(4096),
            served: false,
            stop: None,
            timeout,
            listener: None,
        })
    }

    /// Lets an idle connection close as soon as another connection waits on `fd`.
    pub fn with_listener(mut self, fd: std::os::fd::RawFd) -> Self {
        self.listener = Some(fd);
        self
    }

    /// Waits up to `wait` for this connection to send something. `false` when it stayed
    /// silent, or when it is a kept-alive connection and a new connection is waiting.
    /// (Clients resend a request that meets a closing kept-alive connection; a fresh
    /// connection is never closed early, since its first request would be lost.)
    fn wait_for_data(&self, wait: Duration) -> io::Result<bool> {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::BorrowedFd;
        let (Some(conn), Some(listener), true) = (self.stream.raw_fd(), self.listener, self.served)
        else {
            return Ok(true);
        };
        // SAFETY: both descriptors stay open for the duration of this call: the
        // connection is owned by `self`, the listener by the worker.
        let (c, l) = unsafe {
            (
                BorrowedFd::borrow_raw(conn),
                BorrowedFd::borrow_raw(listener),
            )
        };
        let mut fds = [
            PollFd::new(c, PollFlags::POLLIN),
            PollFd::new(l, PollFlags::POLLIN),
        ];
        let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
        loop {
            match poll(&mut fds, PollTimeout::from(ms)) {
                Ok(0) => return Ok(false),
                Ok(_) => {
                    let ready = |f: &PollFd| !f.revents().unwrap_or(PollFlags::empty()).is_empty();
                    return Ok(ready(&fds[0]));
                }
                Err(nix::errno::Errno::EINTR) => {
                    let stopping = self
                        .stop
                        .is_some_and(|f| f.load(std::sync::atomic::Ordering::Relaxed));
                    if stopping && self.served {
                        return Ok(false);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A flag that, once set, lets an idle kept-alive connection close on a signal.
    pub fn with_stop_flag(mut self, flag: &'static std::sync::atomic::AtomicBool) -> Self {
        self.stop = Some(flag);
        self
    }

    /// One read; EINTR is retried unless the worker is stopping on an idle kept-alive
    /// connection.
    fn read_some(&mut self, chunk: &mut [u8]) -> Result<usize, HttpError> {
        loop {
            match self.stream.read(chunk) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    let stopping = self
                        .stop
                        .is_some_and(|f| f.load(std::sync::atomic::Ordering::Relaxed));
                    if stopping && self.served && self.buf.is_empty() {
                        return Err(HttpError::Closed);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The next request; `Err(Closed)` when the client closed between requests.
    pub fn next_request(&mut self) -> Result<Request, HttpError> {
        let mut chunk = [0u8; 4096];
        let end = loop {
            if let Some(e) = find_head_end(&self.buf) {
                break e;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(HttpError::Bad(431, "request head too large"));
            }
            // A worker serves one connection at a time: a connection that sends nothing
            // (a browser's preconnect, an idle keep-alive) must not hold it for long.
            let idle = self.buf.is_empty();
            if idle {
                let wait = if self.served {
                    IDLE_KEEP_ALIVE
                } else {
                    IDLE_FIRST
                };
                if !self.wait_for_data(wait.min(self.timeout))? {
                    return Err(HttpError::Closed);
                }
                self.stream
                    .set_timeouts(Some(wait.min(self.timeout)), Some(self.timeout))?;
            }
            let n = match self.read_some(&mut chunk) {
                Err(HttpError::Io(e)) if idle && is_timeout(&e) => return Err(HttpError::Closed),
                other => other?,
            };
            if idle {
                self.stream
                    .set_timeouts(Some(self.timeout), Some(self.timeout))?;
            }
            if n == 0 {
                return Err(if self.buf.is_empty() {
                    HttpError::Closed
                } else {
                    HttpError::Bad(400, "truncated request")
                });
            }
            self.buf.extend_from_slice(&chunk[..n]);
        };
        if end > MAX_HEAD {
            return Err(HttpError::Bad(431, "request head too large"));
        }
        let mut req = parse_head(&self.buf[..end - 4])?;
        self.buf.drain(..end);
        if req.header("Transfer-Encoding").is_some() {
            return Err(HttpError::Bad(
                411,
                "chunked request bodies are not accepted",
            ));
        }
        let len: usize = match req.header("Content-Length") {
            None => 0,
            Some(v) => v
                .parse()
                .map_err(|_| HttpError::Bad(400, "bad Content-Length"))?,
        };
        if len > MAX_BODY {
            return Err(HttpError::Bad(413, "request body too large"));
        }
        while self.buf.len() < len {
            let n = self.read_some(&mut chunk)?;
            if n == 0 {
                return Err(HttpError::Bad(400, "truncated request body"));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        req.body = self.buf.drain(..len).collect();
        Ok(req)
    }

    /// Writes a response; `head_only` omits the body (HEAD).
    pub fn respond(&mut self, r: &Response, head_only: bool, keep_alive: bool) -> io::Result<()> {
        let bytes = serialize(r, head_only, keep_alive);
        self.served = true;
        self.stream.write_all(&bytes)
    }

    pub fn shutdown(self) {
        let _ = self.stream.shutdown_write();
    }
}

/// An HTTP/1.1 response from the CGI-style response model.
pub fn serialize(r: &Response, head_only: bool, keep_alive: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + r.body.len());
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
    if !head_only {
        out.extend_from_slice(&r.body);
    }
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
