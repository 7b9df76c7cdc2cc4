//! One client connection of a worker's event loop: its socket, what it sent that is
//! not parsed yet, what is still to be written to it, and its deadline. All socket
//! calls here are non-blocking (`MSG_DONTWAIT`): the worker never waits on a client.

use crate::fcgi::{self, FcgiError};
use crate::http::{self, HttpError};
use crate::render::offload::Job;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// Bytes read ahead of the parser before the connection is left unread: a client
/// pipelining requests faster than they are answered waits in its own socket buffer.
const MAX_UNPARSED: usize = 256 * 1024;
/// Bytes written to one connection per turn of the event loop: a large export leaves
/// the socket in slices, with the other connections served between them, rather than
/// in one system call that copies megabytes while they wait.
const MAX_FLUSH: usize = 256 * 1024;

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

/// Bytes waiting to be written.
enum Chunk {
    Owned(Vec<u8>),
    /// A mapped file, from an offset on.
    Mapped(memmap2::Mmap, usize),
}

impl std::ops::Deref for Chunk {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Chunk::Owned(v) => v,
            Chunk::Mapped(m, start) => &m[*start..],
        }
    }
}

/// A request put back to wait for an admission slot (see `render::admission`).
pub enum Held {
    Fcgi(fcgi::Request),
    Http(http::Request),
}

/// A request waiting for an admission slot, and since when it waits.
pub struct Parked {
    pub request: Held,
    pub since: Instant,
    /// The child process rendering it, once admitted (see `render::offload`).
    pub job: Option<crate::render::offload::Job>,
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
    /// Bytes appended in place (FastCGI records); queued as one buffer when flushed.
    pub output: Vec<u8>,
    /// Buffers waiting to be written, in order (an HTTP head, then its body as the
    /// handler made it: no copy).
    queue: std::collections::VecDeque<Chunk>,
    /// How much of the front buffer is written.
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
    /// Whether the connection is in the event loop's epoll set yet.
    pub registered: bool,
    /// A request waiting for an admission slot: answered before anything after it.
    pub parked: Option<Parked>,
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
            queue: std::collections::VecDeque::new(),
            sent: 0,
            close_when_sent: false,
            eof: false,
            phase: Phase::Fresh,
            deadline,
            since: Instant::now(),
            waiting_to_write: false,
            registered: false,
            parked: None,
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
        self.queue_output();
        if !bytes.is_empty() {
            self.queue.push_back(Chunk::Owned(bytes));
        }
    }

    /// Queues the bytes of `map` from `start` on (an answer a child process wrote, sent
    /// from its pages without a copy).
    pub fn push_mapped(&mut self, map: memmap2::Mmap, start: usize) {
        self.queue_output();
        if map.len() > start {
            self.queue.push_back(Chunk::Mapped(map, start));
        }
    }

    fn queue_output(&mut self) {
        if !self.output.is_empty() {
            self.queue
                .push_back(Chunk::Owned(std::mem::take(&mut self.output)));
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
        !self.output.is_empty() || !self.queue.is_empty()
    }

    /// Writes as much of the output as the socket takes now (several buffers per call).
    /// `Ok(true)` once all of it is written. When the connection closes right after,
    /// the tail goes with MSG_MORE so that the close sends it with the FIN in one segment.
    pub fn flush(&mut self) -> io::Result<bool> {
        self.queue_output();
        let more = if self.close_when_sent {
            libc::MSG_MORE
        } else {
            0
        };
        let mut budget = MAX_FLUSH;
        while !self.queue.is_empty() {
            if budget == 0 {
                // More next turn: the socket still takes it, so the loop comes back at once.
                return Ok(false);
            }
            let mut iov = [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; 8];
            let mut n_iov = 0;
            let mut room = budget;
            for (i, b) in self.queue.iter().take(iov.len()).enumerate() {
                if room == 0 {
                    break;
                }
                let part = if i == 0 { &b[self.sent..] } else { &b[..] };
                let part = &part[..part.len().min(room)];
                room -= part.len();
                iov[i] = libc::iovec {
                    iov_base: part.as_ptr() as *mut libc::c_void,
                    iov_len: part.len(),
                };
                n_iov += 1;
            }
            // SAFETY: an all-zero msghdr is valid; it points at `iov`, whose slices
            // borrow buffers that live until the call returns.
            let n = unsafe {
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_iov = iov.as_mut_ptr();
                msg.msg_iovlen = n_iov;
                libc::sendmsg(
                    self.raw_fd(),
                    &msg,
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL | more,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::Interrupted => continue,
                    io::ErrorKind::WouldBlock => return Ok(false),
                    _ => return Err(e),
                }
            }
            let mut n = n as usize;
            budget = budget.saturating_sub(n);
            while let Some(front) = self.queue.front() {
                let left = front.len() - self.sent;
                if n < left {
                    self.sent += n;
                    break;
                }
                n -= left;
                self.sent = 0;
                self.queue.pop_front();
            }
        }
        Ok(true)
    }

    /// Whether the client has begun a request that is not answered yet (incomplete,
    /// or waiting for an admission slot).
    pub fn mid_request(&self) -> bool {
        self.used < self.input.len()
            || self.parked.is_some()
            || matches!(&self.kind, Kind::Fcgi(p) if !p.at_boundary())
    }

    /// Whether a child process is rendering this connection's request: its time is
    /// bounded by `MAX_RENDER_TIME`, not by the connection's deadline.
    pub fn rendering_elsewhere(&self) -> bool {
        self.parked.as_ref().is_some_and(|p| p.job.is_some())
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

/// What one parsing step produced.
pub enum Step {
    Answered,
    NeedMore,
    /// An expensive request waits for an admission slot; nothing after it is read.
    Parked,
    /// The connection cannot go on; whatever answer there is, is queued.
    Refused,
}

/// Whether a request put back at `since` (or not yet) may still wait for a slot.
pub fn may_wait(since: Option<Instant>, wait: Duration) -> bool {
    !wait.is_zero() && since.is_none_or(|t| t.elapsed() < wait)
}

/// Keeps `request` on `c` to be tried again shortly, or collected from `job`.
pub fn park(c: &mut Conn, request: Held, since: Option<Instant>, job: Option<Job>) -> Step {
    if since.is_none() && job.is_none() {
        crate::render::admission::record_waited();
    }
    c.parked = Some(Parked {
        request,
        since: since.unwrap_or_else(Instant::now),
        job,
    });
    Step::Parked
}
