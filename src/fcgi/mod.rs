//! FastCGI responder: the record layer between the web server and a worker.
//!
//! One connection is served at a time, one request at a time (`FCGI_MPXS_CONNS=0`).
//! A worker wraps each accepted stream in a [`Conn`], pulls complete requests
//! with [`Conn::next_request`] and answers each with [`Conn::respond`].
//! No maintained blocking FastCGI server crate exists, so this layer is our own;
//! it is small, bounded in memory and time, and its parsers are pure functions.

mod conn;
mod linger;
pub mod record;

pub use conn::{Conn, FcgiError};
pub use linger::Lingering;

use std::io;
use std::time::Duration;

/// A stream the responder can serve: a TCP or Unix-domain connection.
pub trait Stream: io::Read + io::Write {
    fn set_timeouts(&self, read: Option<Duration>, write: Option<Duration>) -> io::Result<()>;
    fn shutdown_write(&self) -> io::Result<()>;
    /// The descriptor, for waiting on it together with the listening socket.
    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }
    /// The descriptor, to be kept open past the stream (see [`Lingering`]).
    fn into_fd(self) -> Option<std::os::fd::OwnedFd>
    where
        Self: Sized,
    {
        None
    }
}

impl Stream for std::net::TcpStream {
    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        Some(std::os::fd::AsRawFd::as_raw_fd(self))
    }
    fn into_fd(self) -> Option<std::os::fd::OwnedFd> {
        Some(self.into())
    }
    fn set_timeouts(&self, read: Option<Duration>, write: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(read)?;
        self.set_write_timeout(write)
    }
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
}

impl Stream for std::os::unix::net::UnixStream {
    fn raw_fd(&self) -> Option<std::os::fd::RawFd> {
        Some(std::os::fd::AsRawFd::as_raw_fd(self))
    }
    fn into_fd(self) -> Option<std::os::fd::OwnedFd> {
        Some(self.into())
    }
    fn set_timeouts(&self, read: Option<Duration>, write: Option<Duration>) -> io::Result<()> {
        self.set_read_timeout(read)?;
        self.set_write_timeout(write)
    }
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
}

/// Hard limits that keep a hostile or stalled peer from pinning a worker.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Total bytes of PARAMS content for one request.
    pub max_params_bytes: usize,
    /// Total bytes of STDIN content for one request.
    pub max_stdin_bytes: usize,
    /// Records accepted for one request before it is refused.
    pub max_records: usize,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_params_bytes: 1 << 20,
            max_stdin_bytes: 1 << 20,
            max_records: 4096,
            read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
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
