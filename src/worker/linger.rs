//! Lingering closes that do not hold up the worker.
//!
//! Closing a socket while the peer's bytes sit unread in it sends a reset, and a reset
//! can discard the response the peer has not read yet. Some FastCGI clients do send
//! after the request is complete (a second empty STDIN record, an ABORT that crossed the
//! response). So a served connection is half-closed (the response leaves with the FIN)
//! and kept here, drained without blocking, until the web server closes its side, a
//! deadline passes or a byte budget is spent. The worker sweeps the set after every
//! connection and on every accept wake-up, so it never waits on a web server's close.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

/// How long a half-closed connection is kept for the peer's close.
const LINGER: Duration = Duration::from_secs(1);
/// Bytes drained from one connection before it is closed anyway.
const MAX_DRAIN: usize = 1 << 20;
/// Connections held at once; the oldest is closed when a new one would exceed it.
pub const MAX_HELD: usize = 256;

struct Held {
    fd: OwnedFd,
    deadline: Instant,
    drained: usize,
}

/// Half-closed connections waiting for their peer's end of stream.
#[derive(Default)]
pub struct Lingering {
    held: VecDeque<Held>,
}

impl Lingering {
    /// Keeps `fd` (already shut for writing) until its peer closes.
    pub fn push(&mut self, fd: OwnedFd) {
        if self.held.len() >= MAX_HELD {
            self.held.pop_front();
        }
        self.held.push_back(Held {
            fd,
            deadline: Instant::now() + LINGER,
            drained: 0,
        });
    }

    /// Connections still held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.held.len()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Reads what each held connection has without blocking and closes those whose peer
    /// has closed, that failed, or that are past their deadline or drain budget.
    pub fn sweep(&mut self) {
        let now = Instant::now();
        let mut buf = [0u8; 4096];
        self.held.retain_mut(|h| loop {
            // SAFETY: `buf` is a live local buffer of the length passed.
            let n = unsafe {
                libc::recv(
                    h.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n == 0 {
                return false;
            }
            if n > 0 {
                h.drained += n as usize;
                if h.drained > MAX_DRAIN {
                    return false;
                }
                continue;
            }
            match io::Error::last_os_error().kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return now < h.deadline,
                _ => return false,
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    #[test]
    fn held_until_the_peer_closes_and_drained_meanwhile() {
        let mut set = Lingering::default();
        let (ours, mut peer) = UnixStream::pair().unwrap();
        ours.shutdown(std::net::Shutdown::Write).unwrap();
        set.push(ours.into());
        set.sweep();
        assert_eq!(set.len(), 1, "an open, quiet peer is waited for");
        peer.write_all(&[7u8; 10_000]).unwrap();
        set.sweep();
        assert_eq!(
            set.len(),
            1,
            "late bytes are drained, not answered with a close"
        );
        let mut rest = Vec::new();
        peer.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "our side is shut for writing");
        drop(peer);
        set.sweep();
        assert!(set.is_empty(), "closed once the peer closed");
    }

    #[test]
    fn bounded_in_count_and_in_bytes() {
        let mut set = Lingering::default();
        let mut peers = Vec::new();
        for _ in 0..MAX_HELD + 3 {
            let (ours, peer) = UnixStream::pair().unwrap();
            set.push(ours.into());
            peers.push(peer);
        }
        assert_eq!(set.len(), MAX_HELD);
        // The oldest three were closed: their peers see the end of stream.
        for p in &mut peers[..3] {
            assert_eq!(p.read(&mut [0u8; 1]).unwrap(), 0);
        }
        let mut set = Lingering::default();
        let (ours, peer) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        set.push(ours.into());
        let writer = std::thread::spawn(move || {
            let mut peer = peer;
            let chunk = [1u8; 65536];
            // Stops when the held side is closed (broken pipe).
            for _ in 0..64 {
                if peer.write_all(&chunk).is_err() {
                    return true;
                }
            }
            false
        });
        let t = Instant::now();
        while !set.is_empty() && t.elapsed() < Duration::from_secs(10) {
            set.sweep();
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(set.is_empty(), "closed after {MAX_DRAIN} bytes");
        assert!(
            writer.join().unwrap(),
            "a peer that keeps sending is cut off"
        );
    }
}
