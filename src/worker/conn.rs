//! One client connection of a worker's event loop: its socket, what it sent that is
//! not parsed yet, what is still to be written to it, and its deadline. All socket
//! calls here are non-blocking (`MSG_DONTWAIT`): the worker never waits on a client.

use crate::fcgi::{self, FcgiError};
use crate::http::{self, HttpError};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::Instant;

/// Bytes read ahead of the parser before the connection is left unread: a client
/// pipelining requests faster than they are answered waits in its own socket buffer.
const MAX_UNPARSED: usize = 256 * 1024;

/// The protocol a connection speaks.
pub enum Kind {
    Fcgi(fcgi::Parser),
    Http,
}

/// Where a connection is in its life; each has its own deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Accepted, nothing received yet.
    Fresh,
    /// Between requests on a kept-alive connection.
    Idle,
    /// Part of a request has arrived.
    Reading,
    /// A response is being written.
    Writing,
}

pub struct Conn {
    pub fd: OwnedFd,
    /// The client's address, for `REMOTE_ADDR` (HTTP mode; FastCGI gets it from the
    /// web server).
    pub peer: Option<String>,
    pub kind: Kind,
    input: Vec<u8>,
    /// How much of `input` the parser has consumed.
    pub used: usize,
    pub output: Vec<u8>,
    sent: usize,
    /// Close (gracefully) once `output` is written.
    pub close_when_sent: bool,
    /// The client closed its side.
    pub eof: bool,
    pub phase: Phase,
    /// When the connection is given up if it has not moved on to another phase.
    pub deadline: Instant,
    /// When the current phase began (the oldest idle connection goes first).
    pub since: Instant,
    /// Whether the event loop waits for writability rather than readability.
    pub waiting_to_write: bool,
}

impl Conn {
    pub fn new(fd: OwnedFd, peer: Option<String>, kind: Kind, deadline: Instant) -> Conn {
        Conn {
            fd,
            peer,
            kind,
            input: Vec::new(),
            used: 0,
            output: Vec::new(),
            sent: 0,
            close_when_sent: false,
            eof: false,
            phase: Phase::Fresh,
            deadline,
            since: Instant::now(),
            waiting_to_write: false,
        }
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Reads whatever has arrived, without blocking, up to [`MAX_UNPARSED`] ahead of
    /// the parser. Sets `eof` when the client has closed.
    pub fn read_available(&mut self, scratch: &mut [u8]) -> io::Result<()> {
        self.compact();
        while !self.eof && self.input.len() - self.used < MAX_UNPARSED {
            // SAFETY: `scratch` is a live buffer of the length passed; the descriptor
            // is owned by `self`.
            let n = unsafe {
                libc::recv(
                    self.raw_fd(),
                    scratch.as_mut_ptr().cast(),
                    scratch.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            match n {
                0 => self.eof = true,
                n if n > 0 => {
                    let n = n as usize;
                    self.input.extend_from_slice(&scratch[..n]);
                    if n < scratch.len() {
                        // Short read: the socket is empty (saves the EAGAIN round).
                        break;
                    }
                }
                _ => {
                    let e = io::Error::last_os_error();
                    match e.kind() {
                        io::ErrorKind::Interrupted => {}
                        io::ErrorKind::WouldBlock => break,
                        _ => return Err(e),
                    }
                }
            }
        }
        Ok(())
    }

    /// The next complete FastCGI request, parsing what has arrived; management answers
    /// and refusals go to the output.
    pub fn next_fcgi(&mut self) -> Result<Option<fcgi::Request>, FcgiError> {
        match &mut self.kind {
            Kind::Fcgi(p) => p.next_request(&self.input, &mut self.used, &mut self.output),
            Kind::Http => Ok(None),
        }
    }

    /// The next complete HTTP request that has arrived.
    pub fn next_http(&mut self) -> Result<Option<http::Request>, HttpError> {
        match http::parse_request(&self.input[self.used..])? {
            Some((req, n)) => {
                self.used += n;
                Ok(Some(req))
            }
            None => Ok(None),
        }
    }

    /// Forgets whatever else the client sent (the connection closes after its answer).
    pub fn discard_input(&mut self) {
        self.used = self.input.len();
    }

    /// Queues `bytes` after whatever is still to be written.
    pub fn push_output(&mut self, bytes: Vec<u8>) {
        if self.output.is_empty() {
            self.output = bytes;
            self.sent = 0;
        } else {
            self.output.extend_from_slice(&bytes);
        }
    }

    /// Drops consumed input so the buffer holds only what the parser still needs.
    pub fn compact(&mut self) {
        if self.used == self.input.len() {
            self.input.clear();
            self.used = 0;
            if self.input.capacity() > 64 * 1024 {
                // A large request body has gone; an idle connection holds no big buffer.
                self.input = Vec::new();
            }
        } else if self.used > 0 {
            self.input.drain(..self.used);
            self.used = 0;
        }
    }

    pub fn has_output(&self) -> bool {
        self.sent < self.output.len()
    }

    /// Writes as much of `output` as the socket takes now. `Ok(true)` once all of it
    /// is written. When the connection closes right after, the tail goes with
    /// MSG_MORE so that the close sends it with the FIN in one segment.
    pub fn flush(&mut self) -> io::Result<bool> {
        let more = if self.close_when_sent {
            libc::MSG_MORE
        } else {
            0
        };
        while self.has_output() {
            let rest = &self.output[self.sent..];
            // SAFETY: `rest` is a live slice for the duration of the call.
            let n = unsafe {
                libc::send(
                    self.raw_fd(),
                    rest.as_ptr().cast(),
                    rest.len(),
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL | more,
                )
            };
            if n >= 0 {
                self.sent += n as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => {}
                io::ErrorKind::WouldBlock => return Ok(false),
                _ => return Err(e),
            }
        }
        self.output.clear();
        self.sent = 0;
        if self.output.capacity() > 1 << 20 {
            self.output = Vec::new();
        }
        Ok(true)
    }

    /// Whether the client has begun a request that is not complete yet.
    pub fn mid_request(&self) -> bool {
        self.used < self.input.len() || matches!(&self.kind, Kind::Fcgi(p) if !p.at_boundary())
    }

    /// Moves to `phase`, starting its deadline unless it is the phase already running.
    pub fn enter(&mut self, phase: Phase, now: Instant, limit: std::time::Duration) {
        if self.phase != phase {
            self.phase = phase;
            self.since = now;
            self.deadline = now + limit;
        }
    }
}
