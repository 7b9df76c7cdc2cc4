//! Socket settings of a worker: TCP_NODELAY inherited from the listening socket, the
//! accept queue's length (for sharing connections among workers), and the descriptor
//! limit a worker holding many connections needs.

use std::os::fd::RawFd;

/// Connections waiting in a TCP listening socket's accept queue (Linux reports it as
/// `tcpi_unacked` of a socket in the LISTEN state).
pub fn queued_connections(fd: RawFd) -> usize {
    // SAFETY: an all-zero tcp_info is valid; getsockopt writes at most `len` bytes.
    unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        let r = libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        );
        if r == 0 {
            info.tcpi_unacked as usize
        } else {
            0
        }
    }
}

/// Sets TCP_NODELAY on a listening TCP socket for its accepted sockets to inherit
/// (Linux), saving a system call per connection; false if it failed.
pub fn preset_nodelay(l: &std::net::TcpListener) -> bool {
    use nix::sys::socket::{setsockopt, sockopt};
    setsockopt(l, sockopt::TcpNoDelay, &true).is_ok()
}

/// Connections are descriptors: a worker holding `MAX_CONNECTIONS` plus its image
/// files needs more than the usual soft limit of 1024. The hard limit is the ceiling.
pub fn raise_file_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a live struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_tcp_sockets_inherit_nodelay() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(preset_nodelay(&l));
        let _client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        assert!(s.nodelay().unwrap());
    }
}
