//! FastCGI 1.0 record framing: headers, name-value pairs and the records a
//! responder writes. Pure functions over byte slices, so they can be fuzzed.

/// Record types (FastCGI 1.0 §8).
pub const BEGIN_REQUEST: u8 = 1;
pub const ABORT_REQUEST: u8 = 2;
pub const END_REQUEST: u8 = 3;
pub const PARAMS: u8 = 4;
pub const STDIN: u8 = 5;
pub const STDOUT: u8 = 6;
pub const STDERR: u8 = 7;
pub const DATA: u8 = 8;
pub const GET_VALUES: u8 = 9;
pub const GET_VALUES_RESULT: u8 = 10;
pub const UNKNOWN_TYPE: u8 = 11;

/// Roles and flags.
pub const RESPONDER: u16 = 1;
pub const KEEP_CONN: u8 = 1;

/// END_REQUEST protocol statuses.
pub const REQUEST_COMPLETE: u8 = 0;
pub const CANT_MPX_CONN: u8 = 1;
pub const UNKNOWN_ROLE: u8 = 3;

/// Largest content of one record.
pub const MAX_CONTENT: usize = 65535;

/// A parsed 8-byte record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: u8,
    pub request_id: u16,
    pub content_length: u16,
    pub padding_length: u8,
}

/// Why bytes are not valid FastCGI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("unsupported FastCGI version {0}")]
    Version(u8),
    #[error("malformed name-value pair")]
    NameValue,
    #[error("malformed {0} record body")]
    Body(&'static str),
}

impl Header {
    pub fn parse(b: &[u8; 8]) -> Result<Header, RecordError> {
        if b[0] != 1 {
            return Err(RecordError::Version(b[0]));
        }
        Ok(Header {
            kind: b[1],
            request_id: u16::from_be_bytes([b[2], b[3]]),
            content_length: u16::from_be_bytes([b[4], b[5]]),
            padding_length: b[6],
        })
    }
}

/// Appends one record (header, content, padding to a multiple of 8) to `out`.
pub fn write_record(out: &mut Vec<u8>, kind: u8, request_id: u16, content: &[u8]) {
    debug_assert!(content.len() <= MAX_CONTENT);
    let pad = (8 - content.len() % 8) % 8;
    let id = request_id.to_be_bytes();
    let len = (content.len() as u16).to_be_bytes();
    out.extend_from_slice(&[1, kind, id[0], id[1], len[0], len[1], pad as u8, 0]);
    out.extend_from_slice(content);
    out.extend(std::iter::repeat_n(0u8, pad));
}

/// Appends `body` as STDOUT records of at most [`MAX_CONTENT`] bytes, the empty STDOUT
/// that ends the stream, and END_REQUEST(REQUEST_COMPLETE).
pub fn write_response(out: &mut Vec<u8>, request_id: u16, body: &[u8]) {
    for chunk in body.chunks(MAX_CONTENT) {
        write_record(out, STDOUT, request_id, chunk);
    }
    write_record(out, STDOUT, request_id, &[]);
    write_end_request(out, request_id, REQUEST_COMPLETE);
}

/// Appends END_REQUEST with application status 0.
pub fn write_end_request(out: &mut Vec<u8>, request_id: u16, protocol_status: u8) {
    write_record(
        out,
        END_REQUEST,
        request_id,
        &[0, 0, 0, 0, protocol_status, 0, 0, 0],
    );
}

fn read_len(b: &[u8], i: &mut usize) -> Result<usize, RecordError> {
    let first = *b.get(*i).ok_or(RecordError::NameValue)?;
    if first & 0x80 == 0 {
        *i += 1;
        Ok(first as usize)
    } else {
        let s = b.get(*i..*i + 4).ok_or(RecordError::NameValue)?;
        *i += 4;
        Ok((u32::from_be_bytes([s[0] & 0x7f, s[1], s[2], s[3]])) as usize)
    }
}

/// Parses a complete name-value pair stream (PARAMS, GET_VALUES).
pub fn parse_name_values(b: &[u8]) -> Result<Vec<(String, String)>, RecordError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let nl = read_len(b, &mut i)?;
        let vl = read_len(b, &mut i)?;
        let end_name = i.checked_add(nl).ok_or(RecordError::NameValue)?;
        let end_value = end_name.checked_add(vl).ok_or(RecordError::NameValue)?;
        if end_value > b.len() {
            return Err(RecordError::NameValue);
        }
        out.push((
            String::from_utf8_lossy(&b[i..end_name]).into_owned(),
            String::from_utf8_lossy(&b[end_name..end_value]).into_owned(),
        ));
        i = end_value;
    }
    Ok(out)
}

/// Appends one name-value pair with 1- or 4-byte lengths as needed.
pub fn write_name_value(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    for len in [name.len(), value.len()] {
        if len < 128 {
            out.push(len as u8);
        } else {
            out.extend_from_slice(&((len as u32) | 0x8000_0000).to_be_bytes());
        }
    }
    out.extend_from_slice(name);
    out.extend_from_slice(value);
}

/// The GET_VALUES_RESULT content for the names asked: one connection, one request,
/// no multiplexing. Unknown names are left out, as the specification asks.
pub fn get_values_result(asked: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, _) in asked {
        let v: &[u8] = match name.as_str() {
            "FCGI_MAX_CONNS" => b"1",
            "FCGI_MAX_REQS" => b"1",
            "FCGI_MPXS_CONNS" => b"0",
            _ => continue,
        };
        write_name_value(&mut out, name.as_bytes(), v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let mut out = Vec::new();
        write_record(&mut out, STDOUT, 258, b"hello");
        assert_eq!(out.len(), 16);
        let h = Header::parse(out[..8].try_into().unwrap()).unwrap();
        assert_eq!(
            h,
            Header {
                kind: STDOUT,
                request_id: 258,
                content_length: 5,
                padding_length: 3
            }
        );
        assert_eq!(&out[8..13], b"hello");
        let mut bad = out.clone();
        bad[0] = 2;
        assert_eq!(
            Header::parse(bad[..8].try_into().unwrap()),
            Err(RecordError::Version(2))
        );
    }

    #[test]
    fn name_values_short_and_long() {
        let long = "v".repeat(300);
        let mut b = Vec::new();
        write_name_value(&mut b, b"QUERY_STRING", long.as_bytes());
        write_name_value(&mut b, b"A", b"");
        assert_eq!(b[0], 12);
        assert_eq!(&b[1..5], &(300u32 | 0x8000_0000).to_be_bytes());
        let p = parse_name_values(&b).unwrap();
        assert_eq!(
            p,
            vec![("QUERY_STRING".into(), long), ("A".into(), "".into())]
        );
    }

    #[test]
    fn truncated_name_values_fail() {
        let mut b = Vec::new();
        write_name_value(&mut b, b"NAME", b"VALUE");
        for cut in 1..b.len() {
            assert!(parse_name_values(&b[..cut]).is_err(), "cut at {cut}");
        }
        // A 4-byte length claiming 2 GiB.
        assert!(parse_name_values(&[0xff, 0xff, 0xff, 0xff, 0]).is_err());
    }

    #[test]
    fn get_values_answer() {
        let asked = vec![
            ("FCGI_MAX_CONNS".to_string(), String::new()),
            ("FCGI_MPXS_CONNS".to_string(), String::new()),
            ("OTHER".to_string(), String::new()),
            ("FCGI_MAX_REQS".to_string(), String::new()),
        ];
        let r = parse_name_values(&get_values_result(&asked)).unwrap();
        assert_eq!(
            r,
            vec![
                ("FCGI_MAX_CONNS".into(), "1".into()),
                ("FCGI_MPXS_CONNS".into(), "0".into()),
                ("FCGI_MAX_REQS".into(), "1".into())
            ]
        );
    }

    #[test]
    fn response_split_into_records() {
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut out = Vec::new();
        write_response(&mut out, 1, &body);
        let mut i = 0;
        let mut got = Vec::new();
        let mut kinds = Vec::new();
        while i < out.len() {
            let h = Header::parse(out[i..i + 8].try_into().unwrap()).unwrap();
            let n = h.content_length as usize;
            assert!(n <= MAX_CONTENT);
            assert_eq!((8 + n + h.padding_length as usize) % 8, 0);
            if h.kind == STDOUT {
                got.extend_from_slice(&out[i + 8..i + 8 + n]);
            }
            kinds.push((h.kind, n));
            i += 8 + n + h.padding_length as usize;
        }
        assert_eq!(got, body);
        assert_eq!(
            kinds,
            vec![
                (STDOUT, 65535),
                (STDOUT, 65535),
                (STDOUT, 65535),
                (STDOUT, 200_000 - 3 * 65535),
                (STDOUT, 0),
                (END_REQUEST, 8)
            ]
        );
    }
}
