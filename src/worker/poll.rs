//! The worker's epoll instance: the listening socket and every client connection the
//! worker holds, so that one thread can wait on all of them at once.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// epoll's user data for the listening socket (descriptors are never negative).
pub const LISTENER: u64 = u64::MAX;

/// What a connection is waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interest {
    /// Bytes from the client, or its close.
    Read,
    /// Room in the socket buffer for the rest of a response.
    Write,
}

impl Interest {
    fn events(self) -> u32 {
        match self {
            Interest::Read => (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
            Interest::Write => libc::EPOLLOUT as u32,
        }
    }
}

pub struct Poll {
    epfd: OwnedFd,
}

impl Poll {
    /// An epoll instance that wakes for new connections on `listener`.
    pub fn new(listener: RawFd) -> std::io::Result<Poll> {
        // SAFETY: plain syscall; the descriptor is checked and then owned.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nothing else owns.
        let p = Poll {
            epfd: unsafe { OwnedFd::from_raw_fd(fd) },
        };
        p.watch_listener(listener)?;
        Ok(p)
    }

    fn ctl(&self, op: libc::c_int, fd: RawFd, events: u32, token: u64) -> std::io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: valid descriptors and a live event struct.
        if unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), op, fd, &mut ev) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// EPOLLEXCLUSIVE: a new connection wakes one of the workers waiting, not all.
    fn watch_listener(&self, listener: RawFd) -> std::io::Result<()> {
        let events = (libc::EPOLLIN | libc::EPOLLEXCLUSIVE) as u32;
        self.ctl(libc::EPOLL_CTL_ADD, listener, events, LISTENER)
    }

    /// Moves this worker to the back of the listening socket's queue of exclusive
    /// waiters. The kernel wakes the first idle one, which would otherwise always be
    /// the same worker; re-adding after each connection hands them out in turn, as a
    /// blocking `accept` does. (EPOLLEXCLUSIVE cannot be modified in place.)
    pub fn requeue_listener(&self, listener: RawFd) {
        self.forget_listener(listener);
        if let Err(e) = self.watch_listener(listener) {
            log::error!("cannot wait on the listening socket again (epoll): {e}");
        }
    }

    /// Stops waking for new connections (a stopping worker).
    pub fn forget_listener(&self, listener: RawFd) {
        let _ = self.ctl(libc::EPOLL_CTL_DEL, listener, 0, 0);
    }

    pub fn add(&self, fd: RawFd, interest: Interest) -> std::io::Result<()> {
        self.ctl(libc::EPOLL_CTL_ADD, fd, interest.events(), fd as u64)
    }

    pub fn modify(&self, fd: RawFd, interest: Interest) -> std::io::Result<()> {
        self.ctl(libc::EPOLL_CTL_MOD, fd, interest.events(), fd as u64)
    }

    pub fn remove(&self, fd: RawFd) {
        let _ = self.ctl(libc::EPOLL_CTL_DEL, fd, 0, 0);
    }

    /// Ready events, waiting at most `timeout`; EINTR is an empty wake-up.
    pub fn wait(&self, out: &mut [libc::epoll_event], timeout: Duration) -> usize {
        // SAFETY: `out` is a live buffer of `out.len()` events.
        let n = unsafe {
            libc::epoll_wait(
                self.epfd.as_raw_fd(),
                out.as_mut_ptr(),
                out.len() as libc::c_int,
                timeout.as_millis().min(i32::MAX as u128) as libc::c_int,
            )
        };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                log::error!("epoll_wait: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            return 0;
        }
        n as usize
    }
}
