//! FastCGI responder: the record layer between the web server and a worker.
//!
//! One request at a time per connection (`FCGI_MPXS_CONNS=0`). The worker's event
//! loop feeds each connection's bytes to its [`Parser`], which yields complete
//! requests; responses are framed with [`record::write_response`]. No maintained
//! FastCGI server crate exists, so this layer is our own; it is small, bounded in
//! memory, and does no I/O.

mod parser;
pub mod record;

pub use parser::{FcgiError, Parser};

/// Hard limits that keep a hostile peer from growing a worker.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Total bytes of PARAMS content for one request.
    pub max_params_bytes: usize,
    /// Total bytes of STDIN content for one request.
    pub max_stdin_bytes: usize,
    /// Records accepted for one request before it is refused.
    pub max_records: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_params_bytes: 1 << 20,
            max_stdin_bytes: 1 << 20,
            max_records: 4096,
        }
    }
}

/// The CGI parameters of one request, in arrival order.
#[derive(Debug, Default, Clone)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    /// The last value sent for `name` (exact, case-sensitive match).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One complete FastCGI request.
#[derive(Debug, Default, Clone)]
pub struct Request {
    pub id: u16,
    pub params: Params,
    pub stdin: Vec<u8>,
    /// FCGI_KEEP_CONN: the web server wants the connection kept after this request.
    pub keep_conn: bool,
}
