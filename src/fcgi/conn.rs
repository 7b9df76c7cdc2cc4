//! One FastCGI connection: reads records into complete requests, answers
//! management records itself, writes responses, half-closes into a lingering set.

use super::record::{self, Header, RecordError};
use super::{Limits, Lingering, Params, Request, Stream};
use std::io::{self, ErrorKind};
use std::sync::atomic::{AtomicBool, Ordering};

/// Why a connection cannot go on. The worker closes it.
#[derive(Debug, thiserror::Error)]
pub enum FcgiError {
    #[error("connection error: {0}")]
    Io(#[from] io::Error),
    #[error("peer stalled: no data within the read timeout")]
    Timeout,
    #[error("connection closed in the middle of a record or request")]
    Truncated,
    #[error("malformed FastCGI: {0}")]
    Malformed(#[from] RecordError),
    #[error("request too large: {0}")]
    TooLarge(&'static str),
    #[error("worker is stopping")]
    Stopping,
}

const READ_BUF: usize = 16 * 1024;

/// A served connection. Requests are read one at a time; a second request id on the
/// connection is refused with CANT_MPX_CONN.
pub struct Conn<S: Stream> {
    stream: S,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    limits: Limits,
    stop: Option<&'static AtomicBool>,
    out: Vec<u8>,
    /// Whether a request was answered: only then is an idle connection a kept-alive one
    /// that a stopping worker may close.
    served: bool,
}

struct Pending {
    id: u16,
    keep_conn: bool,
    params: Vec<u8>,
    params_done: bool,
    stdin: Vec<u8>,
    stdin_done: bool,
}

impl<S: Stream> Conn<S> {
    /// Wraps `stream` and applies the read and write timeouts.
    pub fn new(stream: S, limits: Limits) -> io::Result<Self> {
        stream.set_timeouts(Some(limits.read_timeout), Some(limits.write_timeout))?;
        Ok(Self::wrap(stream, limits))
    }

    /// Wraps a stream accepted from a listening socket that already carries the read
    /// and write timeouts of `limits` (Linux copies them into accepted TCP sockets): no
    /// system call per connection.
    pub fn with_inherited_timeouts(stream: S, limits: Limits) -> Self {
        Self::wrap(stream, limits)
    }

    fn wrap(stream: S, limits: Limits) -> Self {
        Conn {
            stream,
            buf: vec![0u8; READ_BUF].into_boxed_slice(),
            start: 0,
            end: 0,
            limits,
            stop: None,
            out: Vec::with_capacity(64 * 1024),
            served: false,
        }
    }

    /// A flag that, once set, ends the wait for a next request on a kept connection
    /// when a signal interrupts the read.
    pub fn with_stop_flag(mut self, flag: &'static AtomicBool) -> Self {
        self.stop = Some(flag);
        self
    }

    /// Fills the buffer with at least `n` bytes. `Ok(false)`: clean EOF with nothing buffered.
    fn fill(&mut self, n: usize, at_boundary: bool) -> Result<bool, FcgiError> {
        debug_assert!(n <= self.buf.len());
        if self.end - self.start >= n {
            return Ok(true);
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        while self.end < n {
            match self.stream.read(&mut self.buf[self.end..]) {
                Ok(0) if at_boundary && self.end == 0 => return Ok(false),
                Ok(0) => return Err(FcgiError::Truncated),
                Ok(k) => self.end += k,
                Err(e) if e.kind() == ErrorKind::Interrupted => {
                    // A new connection is always answered; only a kept-alive one that
                    // sits idle between requests is given up when the worker stops.
                    if at_boundary
                        && self.served
                        && self.end == 0
                        && self.stop.is_some_and(|f| f.load(Ordering::Relaxed))
                    {
                        return Err(FcgiError::Stopping);
                    }
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(FcgiError::Timeout)
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(true)
    }

    /// Reads one record. `Ok(None)` on a clean EOF between records when `at_boundary`.
    fn read_record(
        &mut self,
        at_boundary: bool,
        content: &mut Vec<u8>,
    ) -> Result<Option<Header>, FcgiError> {
        if !self.fill(8, at_boundary)? {
            return Ok(None);
        }
        let hb: [u8; 8] = self.buf[self.start..self.start + 8]
            .try_into()
            .expect("8 bytes");
        let h = Header::parse(&hb)?;
        self.start += 8;
        content.clear();
        let mut need = h.content_length as usize;
        while need > 0 {
            self.fill(1, false)?;
            let take = need.min(self.end - self.start);
            content.extend_from_slice(&self.buf[self.start..self.start + take]);
            self.start += take;
            need -= take;
        }
        let mut pad = h.padding_length as usize;
        while pad > 0 {
            self.fill(1, false)?;
            let take = pad.min(self.end - self.start);
            self.start += take;
            pad -= take;
        }
        Ok(Some(h))
    }

    /// Writes `out`. When the connection closes right after (`last`), the tail is held
    /// back with MSG_MORE so that the close sends it with the FIN in one segment: the
    /// web server takes the response and the end of stream in one wake-up.
    fn send(&mut self, last: bool) -> Result<(), FcgiError> {
        let r = match self.stream.raw_fd() {
            Some(fd) if last => send_more(fd, &self.out),
            _ => io::Write::write_all(&mut self.stream, &self.out),
        };
        self.out.clear();
        match r {
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err(FcgiError::Timeout)
            }
            Err(e) => Err(e.into()),
            Ok(()) => Ok(()),
        }
    }

    /// Next complete request (PARAMS and STDIN both ended). `Ok(None)` when the peer
    /// closed cleanly between requests. Management records are answered here.
    pub fn next_request(&mut self) -> Result<Option<Request>, FcgiError> {
        let mut pending: Option<Pending> = None;
        let mut records = 0usize;
        let mut content = Vec::new();
        loop {
            let Some(h) = self.read_record(pending.is_none(), &mut content)? else {
                return Ok(None);
            };
            records += 1;
            if records > self.limits.max_records {
                return Err(FcgiError::TooLarge("too many records"));
            }
            if h.request_id == 0 {
                if h.kind == record::GET_VALUES {
                    let asked = record::parse_name_values(&content)?;
                    let result = record::get_values_result(&asked);
                    record::write_record(&mut self.out, record::GET_VALUES_RESULT, 0, &result);
                } else {
                    let mut body = [0u8; 8];
                    body[0] = h.kind;
                    record::write_record(&mut self.out, record::UNKNOWN_TYPE, 0, &body);
                }
                self.send(false)?;
                continue;
            }
            match h.kind {
                record::BEGIN_REQUEST => {
                    if content.len() < 8 {
                        return Err(RecordError::Body("BEGIN_REQUEST").into());
                    }
                    let role = u16::from_be_bytes([content[0], content[1]]);
                    let flags = content[2];
                    if let Some(p) = &pending {
                        if p.id != h.request_id {
                            record::write_end_request(
                                &mut self.out,
                                h.request_id,
                                record::CANT_MPX_CONN,
                            );
                            self.send(false)?;
                            continue;
                        }
                    }
                    if role != record::RESPONDER {
                        record::write_end_request(
                            &mut self.out,
                            h.request_id,
                            record::UNKNOWN_ROLE,
                        );
                        self.send(false)?;
                        continue;
                    }
                    pending = Some(Pending {
                        id: h.request_id,
                        keep_conn: flags & record::KEEP_CONN != 0,
                        params: Vec::new(),
                        params_done: false,
                        stdin: Vec::new(),
                        stdin_done: false,
                    });
                }
                record::ABORT_REQUEST if pending.as_ref().is_some_and(|p| p.id == h.request_id) => {
                    pending = None;
                    record::write_end_request(
                        &mut self.out,
                        h.request_id,
                        record::REQUEST_COMPLETE,
                    );
                    self.send(false)?;
                }
                record::PARAMS => {
                    let Some(p) = pending.as_mut().filter(|p| p.id == h.request_id) else {
                        continue;
                    };
                    if content.is_empty() {
                        p.params_done = true;
                    } else if p.params.len() + content.len() > self.limits.max_params_bytes {
                        return Err(FcgiError::TooLarge("parameters"));
                    } else {
                        p.params.extend_from_slice(&content);
                    }
                }
                record::STDIN => {
                    let Some(p) = pending.as_mut().filter(|p| p.id == h.request_id) else {
                        continue;
                    };
                    if content.is_empty() {
                        p.stdin_done = true;
                    } else if p.stdin.len() + content.len() > self.limits.max_stdin_bytes {
                        return Err(FcgiError::TooLarge("request body"));
                    } else {
                        p.stdin.extend_from_slice(&content);
                    }
                }
                // DATA belongs to the Filter role; other types are not ours to answer.
                _ => {}
            }
            if let Some(p) = pending.as_ref().filter(|p| p.params_done && p.stdin_done) {
                let params = record::parse_name_values(&p.params)?;
                let p = pending.take().expect("checked above");
                return Ok(Some(Request {
                    id: p.id,
                    params: Params(params),
                    stdin: p.stdin,
                    keep_conn: p.keep_conn,
                }));
            }
        }
    }

    /// Sends `body` (CGI header block and body) as STDOUT records, the closing empty
    /// STDOUT and END_REQUEST, in one write.
    pub fn respond(&mut self, req: &Request, body: &[u8]) -> Result<(), FcgiError> {
        self.out
            .reserve(body.len() + body.len() / record::MAX_CONTENT * 16 + 64);
        record::write_response(&mut self.out, req.id, body);
        self.served = true;
        self.send(!req.keep_conn)
    }

    /// The connection's descriptor, to wait on it between requests.
    pub fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        self.stream.raw_fd()
    }

    /// Whether bytes of a next request were already read (waiting on the descriptor
    /// would not see them).
    pub fn has_buffered(&self) -> bool {
        self.end > self.start
    }

    /// Half-closes (the response leaves with the FIN) and hands the connection to
    /// `lingering`, which closes it once the peer has closed its side: closing at once
    /// would reset the connection under bytes the peer may still send.
    pub fn close(self, lingering: &mut Lingering) {
        let _ = self.stream.shutdown_write();
        if let Some(fd) = self.stream.into_fd() {
            lingering.push(fd);
        }
    }
}

/// `write_all` through `send(2)` with MSG_MORE (ignored by Unix-domain sockets).
fn send_more(fd: std::os::fd::RawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: `buf` is a live slice for the duration of the call.
        let n = unsafe {
            libc::send(
                fd,
                buf.as_ptr().cast(),
                buf.len(),
                libc::MSG_NOSIGNAL | libc::MSG_MORE,
            )
        };
        match n {
            0 => return Err(ErrorKind::WriteZero.into()),
            n if n > 0 => buf = &buf[n as usize..],
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fcgi::record::*;
    use std::cell::RefCell;
    use std::io::Read as _;
    use std::rc::Rc;
    use std::time::{Duration, Instant};

    /// An in-memory peer: reads come from `input` in chunks of `chunk` bytes,
    /// writes are collected in `output`.
    #[derive(Clone)]
    struct Mem {
        input: Rc<RefCell<(Vec<u8>, usize)>>,
        output: Rc<RefCell<Vec<u8>>>,
        chunk: usize,
    }

    impl Mem {
        fn new(input: Vec<u8>, chunk: usize) -> Mem {
            Mem {
                input: Rc::new(RefCell::new((input, 0))),
                output: Rc::default(),
                chunk,
            }
        }
    }

    impl io::Read for Mem {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            let mut i = self.input.borrow_mut();
            let n = b.len().min(self.chunk).min(i.0.len() - i.1);
            let s = i.1;
            b[..n].copy_from_slice(&i.0[s..s + n]);
            i.1 += n;
            Ok(n)
        }
    }

    impl io::Write for Mem {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.output.borrow_mut().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Stream for Mem {
        fn set_timeouts(&self, _: Option<Duration>, _: Option<Duration>) -> io::Result<()> {
            Ok(())
        }
        fn shutdown_write(&self) -> io::Result<()> {
            Ok(())
        }
    }

    fn begin(out: &mut Vec<u8>, id: u16, role: u16, flags: u8) {
        let r = role.to_be_bytes();
        write_record(out, BEGIN_REQUEST, id, &[r[0], r[1], flags, 0, 0, 0, 0, 0]);
    }

    fn params(out: &mut Vec<u8>, id: u16, pairs: &[(&str, &str)]) {
        let mut nv = Vec::new();
        for (k, v) in pairs {
            write_name_value(&mut nv, k.as_bytes(), v.as_bytes());
        }
        // Split the stream across records at an awkward place.
        let mid = nv.len() / 3;
        write_record(out, PARAMS, id, &nv[..mid]);
        write_record(out, PARAMS, id, &nv[mid..]);
        write_record(out, PARAMS, id, &[]);
    }

    fn request(id: u16, flags: u8, query: &str, body: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        begin(&mut v, id, RESPONDER, flags);
        params(
            &mut v,
            id,
            &[("QUERY_STRING", query), ("REQUEST_METHOD", "GET")],
        );
        if !body.is_empty() {
            write_record(&mut v, STDIN, id, body);
        }
        write_record(&mut v, STDIN, id, &[]);
        v
    }

    /// Splits written bytes into (type, id, content) records.
    fn records(b: &[u8]) -> Vec<(u8, u16, Vec<u8>)> {
        let mut i = 0;
        let mut out = Vec::new();
        while i < b.len() {
            let h = Header::parse(b[i..i + 8].try_into().unwrap()).unwrap();
            let n = h.content_length as usize;
            out.push((h.kind, h.request_id, b[i + 8..i + 8 + n].to_vec()));
            i += 8 + n + h.padding_length as usize;
        }
        out
    }

    fn conn(input: Vec<u8>, chunk: usize) -> (Conn<Mem>, Rc<RefCell<Vec<u8>>>) {
        let m = Mem::new(input, chunk);
        let out = m.output.clone();
        (Conn::new(m, Limits::default()).unwrap(), out)
    }

    #[test]
    fn one_request_then_clean_eof() {
        for chunk in [1, 7, 4096] {
            let (mut c, out) = conn(request(1, 0, "FIF=a.tif&OBJ=IIP,1.0", b"body"), chunk);
            let r = c.next_request().unwrap().unwrap();
            assert_eq!(r.id, 1);
            assert!(!r.keep_conn);
            assert_eq!(r.params.get("QUERY_STRING"), Some("FIF=a.tif&OBJ=IIP,1.0"));
            assert_eq!(r.params.get("REQUEST_METHOD"), Some("GET"));
            assert_eq!(r.stdin, b"body");
            c.respond(&r, b"Content-Type: text/plain\r\n\r\nhi")
                .unwrap();
            let recs = records(&out.borrow());
            assert_eq!(
                recs[0],
                (STDOUT, 1, b"Content-Type: text/plain\r\n\r\nhi".to_vec())
            );
            assert_eq!(recs[1], (STDOUT, 1, vec![]));
            assert_eq!(
                recs[2],
                (END_REQUEST, 1, vec![0, 0, 0, 0, REQUEST_COMPLETE, 0, 0, 0])
            );
            assert!(c.next_request().unwrap().is_none());
        }
    }

    #[test]
    fn keep_conn_serves_two_requests() {
        let mut input = request(1, KEEP_CONN, "A=1", b"");
        input.extend(request(2, KEEP_CONN, "B=2", b""));
        let (mut c, _) = conn(input, 4096);
        let a = c.next_request().unwrap().unwrap();
        assert!(a.keep_conn);
        assert_eq!(a.params.get("QUERY_STRING"), Some("A=1"));
        c.respond(&a, b"\r\n").unwrap();
        let b = c.next_request().unwrap().unwrap();
        assert_eq!((b.id, b.params.get("QUERY_STRING")), (2, Some("B=2")));
        assert!(c.next_request().unwrap().is_none());
    }

    #[test]
    fn management_records() {
        let mut input = Vec::new();
        let mut nv = Vec::new();
        write_name_value(&mut nv, b"FCGI_MPXS_CONNS", b"");
        write_name_value(&mut nv, b"FCGI_MAX_CONNS", b"");
        write_record(&mut input, GET_VALUES, 0, &nv);
        write_record(&mut input, 99, 0, &[]);
        input.extend(request(1, 0, "X=1", b""));
        let (mut c, out) = conn(input, 4096);
        assert!(c.next_request().unwrap().is_some());
        let recs = records(&out.borrow());
        assert_eq!(recs[0].0, GET_VALUES_RESULT);
        assert_eq!(
            parse_name_values(&recs[0].2).unwrap(),
            vec![
                ("FCGI_MPXS_CONNS".into(), "0".into()),
                ("FCGI_MAX_CONNS".into(), "1".into())
            ]
        );
        assert_eq!(recs[1], (UNKNOWN_TYPE, 0, vec![99, 0, 0, 0, 0, 0, 0, 0]));
    }

    #[test]
    fn unknown_role_and_second_request_id() {
        let mut input = Vec::new();
        begin(&mut input, 5, 2, 0); // AUTHORIZER
        begin(&mut input, 1, RESPONDER, 0);
        begin(&mut input, 2, RESPONDER, 0); // multiplexing attempt
        params(&mut input, 1, &[("QUERY_STRING", "ok")]);
        write_record(&mut input, STDIN, 1, &[]);
        let (mut c, out) = conn(input, 4096);
        let r = c.next_request().unwrap().unwrap();
        assert_eq!((r.id, r.params.get("QUERY_STRING")), (1, Some("ok")));
        let recs = records(&out.borrow());
        assert_eq!(
            recs[0],
            (END_REQUEST, 5, vec![0, 0, 0, 0, UNKNOWN_ROLE, 0, 0, 0])
        );
        assert_eq!(
            recs[1],
            (END_REQUEST, 2, vec![0, 0, 0, 0, CANT_MPX_CONN, 0, 0, 0])
        );
    }

    #[test]
    fn abort_drops_the_request() {
        let mut input = Vec::new();
        begin(&mut input, 1, RESPONDER, KEEP_CONN);
        params(&mut input, 1, &[("QUERY_STRING", "first")]);
        write_record(&mut input, ABORT_REQUEST, 1, &[]);
        input.extend(request(3, 0, "second", b""));
        let (mut c, out) = conn(input, 4096);
        let r = c.next_request().unwrap().unwrap();
        assert_eq!(r.params.get("QUERY_STRING"), Some("second"));
        assert_eq!(
            records(&out.borrow())[0],
            (END_REQUEST, 1, vec![0, 0, 0, 0, REQUEST_COMPLETE, 0, 0, 0])
        );
    }

    #[test]
    fn large_response_is_split() {
        let (mut c, out) = conn(request(1, 0, "Q=1", b""), 4096);
        let r = c.next_request().unwrap().unwrap();
        let body = vec![7u8; 200_000];
        c.respond(&r, &body).unwrap();
        let recs = records(&out.borrow());
        let stdout: Vec<u8> = recs
            .iter()
            .filter(|r| r.0 == STDOUT)
            .flat_map(|r| r.2.clone())
            .collect();
        assert_eq!(stdout, body);
        assert!(recs.iter().all(|r| r.2.len() <= MAX_CONTENT));
        assert_eq!(recs.last().unwrap().0, END_REQUEST);
    }

    #[test]
    fn malformed_and_truncated_input() {
        // Wrong version.
        let mut v = request(1, 0, "Q=1", b"");
        v[0] = 9;
        assert!(matches!(
            conn(v, 4096).0.next_request(),
            Err(FcgiError::Malformed(RecordError::Version(9)))
        ));
        // Truncated header, truncated content, truncated request.
        let full = request(1, 0, "Q=1", b"");
        for cut in [3, 8 + 4, 20, full.len() - 8] {
            let r = conn(full[..cut].to_vec(), 4096).0.next_request();
            assert!(matches!(r, Err(FcgiError::Truncated)), "cut {cut}: {r:?}");
        }
        // BEGIN_REQUEST with a short body.
        let mut v = Vec::new();
        write_record(&mut v, BEGIN_REQUEST, 1, &[0, 1]);
        assert!(matches!(
            conn(v, 4096).0.next_request(),
            Err(FcgiError::Malformed(_))
        ));
        // Params whose lengths run past the data.
        let mut v = Vec::new();
        begin(&mut v, 1, RESPONDER, 0);
        write_record(&mut v, PARAMS, 1, &[0x80, 0, 1, 0, 5, b'a']);
        write_record(&mut v, PARAMS, 1, &[]);
        write_record(&mut v, STDIN, 1, &[]);
        assert!(matches!(
            conn(v, 4096).0.next_request(),
            Err(FcgiError::Malformed(RecordError::NameValue))
        ));
    }

    #[test]
    fn limits_are_enforced() {
        let big = "x".repeat(70_000);
        let mut v = Vec::new();
        begin(&mut v, 1, RESPONDER, 0);
        for _ in 0..40 {
            write_record(&mut v, PARAMS, 1, &big.as_bytes()[..60_000]);
        }
        let (mut c, _) = conn(v, 1 << 20);
        assert!(matches!(
            c.next_request(),
            Err(FcgiError::TooLarge("parameters"))
        ));
        let mut v = Vec::new();
        begin(&mut v, 1, RESPONDER, 0);
        for _ in 0..5000 {
            write_record(&mut v, DATA, 1, &[]);
        }
        assert!(matches!(
            conn(v, 1 << 20).0.next_request(),
            Err(FcgiError::TooLarge("too many records"))
        ));
        let mut v = Vec::new();
        begin(&mut v, 1, RESPONDER, 0);
        params(&mut v, 1, &[("A", "b")]);
        for _ in 0..20 {
            write_record(&mut v, STDIN, 1, &big.as_bytes()[..60_000]);
        }
        assert!(matches!(
            conn(v, 1 << 20).0.next_request(),
            Err(FcgiError::TooLarge("request body"))
        ));
    }

    #[test]
    fn tcp_round_trip_and_stall_timeout() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let client = std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            io::Write::write_all(&mut s, &request(1, 0, "T=1", b"")).unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).unwrap();
            // A stalled second client: sends half a header and waits.
            let mut s2 = std::net::TcpStream::connect(addr).unwrap();
            io::Write::write_all(&mut s2, &[1, 1, 0]).unwrap();
            std::thread::sleep(Duration::from_millis(600));
            got
        });
        let (s, _) = l.accept().unwrap();
        let mut c = Conn::new(s, Limits::default()).unwrap();
        let r = c.next_request().unwrap().unwrap();
        c.respond(&r, b"Status: 204 No Content\r\n\r\n").unwrap();
        c.close(&mut Lingering::default());
        let (s2, _) = l.accept().unwrap();
        let limits = Limits {
            read_timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        let started = Instant::now();
        let mut c2 = Conn::new(s2, limits).unwrap();
        assert!(matches!(c2.next_request(), Err(FcgiError::Timeout)));
        assert!(started.elapsed() < Duration::from_secs(2));
        let got = client.join().unwrap();
        let recs = records(&got);
        assert_eq!(recs[0].2, b"Status: 204 No Content\r\n\r\n");
        assert_eq!(recs.last().unwrap().0, END_REQUEST);
    }

    #[test]
    fn bytes_sent_after_the_response_do_not_reset_it() {
        // Some clients send a second empty STDIN record after the request is complete.
        for late in [&b""[..], &[5, 0, 1, 0, 0, 0, 0, 0][..]] {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap();
            let client = std::thread::spawn(move || {
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                io::Write::write_all(&mut s, &request(1, 0, "T=1", b"")).unwrap();
                // By now the response is sent and the server's side is closed for writing.
                std::thread::sleep(Duration::from_millis(200));
                for half in late.chunks(4) {
                    io::Write::write_all(&mut s, half)?;
                    std::thread::sleep(Duration::from_millis(20));
                }
                let mut got = Vec::new();
                s.read_to_end(&mut got).map(|_| got)
            });
            let (s, _) = l.accept().unwrap();
            let mut c = Conn::new(s, Limits::default()).unwrap();
            let r = c.next_request().unwrap().unwrap();
            let body = vec![b'a'; 100_000];
            c.respond(&r, &body).unwrap();
            let mut lingering = Lingering::default();
            c.close(&mut lingering);
            let t = Instant::now();
            while !lingering.is_empty() && t.elapsed() < Duration::from_secs(5) {
                lingering.sweep();
                std::thread::sleep(Duration::from_millis(5));
            }
            let got = client
                .join()
                .unwrap()
                .expect("the response arrives whole, no reset");
            let recs = records(&got);
            let out: Vec<u8> = recs
                .iter()
                .filter(|r| r.0 == STDOUT)
                .flat_map(|r| r.2.clone())
                .collect();
            assert_eq!(out, body, "{} late bytes", late.len());
            assert_eq!(recs.last().unwrap().0, END_REQUEST);
            assert!(lingering.is_empty(), "closed after the client closed");
        }
    }
}
