//! The FastCGI request parser: turns the bytes a web server sent on one connection
//! into complete requests, and answers management records itself. It does no I/O: the
//! worker's event loop feeds it whatever arrived and writes what it produced, so a
//! peer that sends one byte a second costs a few bytes of buffer, not a worker.

use super::record::{self, Header, RecordError};
use super::{Limits, Params, Request};

/// Why a connection cannot go on. The worker closes it.
#[derive(Debug, thiserror::Error)]
pub enum FcgiError {
    #[error("connection closed in the middle of a record or request")]
    Truncated,
    #[error("malformed FastCGI: {0}")]
    Malformed(#[from] RecordError),
    #[error("request too large: {0}")]
    TooLarge(&'static str),
}

/// The request being received. Requests are read one at a time; a second request id
/// on the connection is refused with CANT_MPX_CONN.
struct Pending {
    id: u16,
    keep_conn: bool,
    params: Vec<u8>,
    params_done: bool,
    stdin: Vec<u8>,
    stdin_done: bool,
}

/// Parser state of one connection.
pub struct Parser {
    limits: Limits,
    pending: Option<Pending>,
    /// Records seen since the last complete request.
    records: usize,
}

impl Parser {
    pub fn new(limits: Limits) -> Parser {
        Parser {
            limits,
            pending: None,
            records: 0,
        }
    }

    /// The id of a request begun but not yet complete, to end it when the connection
    /// is given up.
    pub fn pending_id(&self) -> Option<u16> {
        self.pending.as_ref().map(|p| p.id)
    }

    /// Parses complete records from `input[*used..]`, advancing `*used` past each, and
    /// returns the next complete request (PARAMS and STDIN both ended), or `Ok(None)`
    /// when more bytes are needed. Answers to management records and refusals are
    /// appended to `out`.
    pub fn next_request(
        &mut self,
        input: &[u8],
        used: &mut usize,
        out: &mut Vec<u8>,
    ) -> Result<Option<Request>, FcgiError> {
        loop {
            let rest = &input[*used..];
            if rest.len() < 8 {
                return Ok(None);
            }
            let h = Header::parse(rest[..8].try_into().expect("8 bytes"))?;
            let len = h.content_length as usize;
            let total = 8 + len + h.padding_length as usize;
            if rest.len() < total {
                return Ok(None);
            }
            let content = &rest[8..8 + len];
            *used += total;
            if let Some(req) = self.record(&h, content, out)? {
                return Ok(Some(req));
            }
        }
    }

    /// Whether the connection is between requests with nothing of a next one seen.
    pub fn at_boundary(&self) -> bool {
        self.pending.is_none()
    }

    fn record(
        &mut self,
        h: &Header,
        content: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Option<Request>, FcgiError> {
        self.records += 1;
        if self.records > self.limits.max_records {
            return Err(FcgiError::TooLarge("too many records"));
        }
        if h.request_id == 0 {
            if h.kind == record::GET_VALUES {
                let asked = record::parse_name_values(content)?;
                let result = record::get_values_result(&asked);
                record::write_record(out, record::GET_VALUES_RESULT, 0, &result);
            } else {
                let mut body = [0u8; 8];
                body[0] = h.kind;
                record::write_record(out, record::UNKNOWN_TYPE, 0, &body);
            }
            return Ok(None);
        }
        let ours = |p: &Option<Pending>| p.as_ref().is_some_and(|p| p.id == h.request_id);
        match h.kind {
            record::BEGIN_REQUEST => {
                if content.len() < 8 {
                    return Err(RecordError::Body("BEGIN_REQUEST").into());
                }
                let role = u16::from_be_bytes([content[0], content[1]]);
                let flags = content[2];
                if self.pending.as_ref().is_some_and(|p| p.id != h.request_id) {
                    record::write_end_request(out, h.request_id, record::CANT_MPX_CONN);
                    return Ok(None);
                }
                if role != record::RESPONDER {
                    record::write_end_request(out, h.request_id, record::UNKNOWN_ROLE);
                    return Ok(None);
                }
                self.pending = Some(Pending {
                    id: h.request_id,
                    keep_conn: flags & record::KEEP_CONN != 0,
                    params: Vec::new(),
                    params_done: false,
                    stdin: Vec::new(),
                    stdin_done: false,
                });
            }
            record::ABORT_REQUEST if ours(&self.pending) => {
                self.pending = None;
                record::write_end_request(out, h.request_id, record::REQUEST_COMPLETE);
            }
            record::PARAMS if ours(&self.pending) => {
                let p = self.pending.as_mut().expect("checked above");
                if content.is_empty() {
                    p.params_done = true;
                } else if p.params.len() + content.len() > self.limits.max_params_bytes {
                    return Err(FcgiError::TooLarge("parameters"));
                } else {
                    p.params.extend_from_slice(content);
                }
            }
            record::STDIN if ours(&self.pending) => {
                let p = self.pending.as_mut().expect("checked above");
                if content.is_empty() {
                    p.stdin_done = true;
                } else if p.stdin.len() + content.len() > self.limits.max_stdin_bytes {
                    return Err(FcgiError::TooLarge("request body"));
                } else {
                    p.stdin.extend_from_slice(content);
                }
            }
            // DATA belongs to the Filter role; other types are not ours to answer.
            _ => {}
        }
        if !self
            .pending
            .as_ref()
            .is_some_and(|p| p.params_done && p.stdin_done)
        {
            return Ok(None);
        }
        let p = self.pending.take().expect("checked above");
        self.records = 0;
        Ok(Some(Request {
            id: p.id,
            params: Params(record::parse_name_values(&p.params)?),
            stdin: p.stdin,
            keep_conn: p.keep_conn,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fcgi::record::*;
    use std::cell::RefCell;
    use std::rc::Rc;

    /// Feeds `input` to a parser `chunk` bytes at a time, as the event loop would,
    /// collecting what the parser writes; all input fed and more wanted is the peer
    /// closing.
    struct Feed {
        parser: Parser,
        input: Vec<u8>,
        fed: usize,
        used: usize,
        chunk: usize,
        out: Rc<RefCell<Vec<u8>>>,
    }

    impl Feed {
        fn next_request(&mut self) -> Result<Option<Request>, FcgiError> {
            loop {
                let mut out = self.out.borrow_mut();
                let r =
                    self.parser
                        .next_request(&self.input[..self.fed], &mut self.used, &mut out)?;
                if r.is_some() {
                    return Ok(r);
                }
                if self.fed == self.input.len() {
                    if self.used < self.fed || !self.parser.at_boundary() {
                        return Err(FcgiError::Truncated);
                    }
                    return Ok(None);
                }
                self.fed = (self.fed + self.chunk).min(self.input.len());
            }
        }

        fn respond(&mut self, req: &Request, body: &[u8]) -> Result<(), FcgiError> {
            write_response(&mut self.out.borrow_mut(), req.id, body);
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

    fn conn(input: Vec<u8>, chunk: usize) -> (Feed, Rc<RefCell<Vec<u8>>>) {
        let out = Rc::<RefCell<Vec<u8>>>::default();
        let feed = Feed {
            parser: Parser::new(Limits::default()),
            input,
            fed: 0,
            used: 0,
            chunk,
            out: out.clone(),
        };
        (feed, out)
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
}
