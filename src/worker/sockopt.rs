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

/// Seconds the kernel holds a new TCP connection that has sent nothing before a
/// worker sees it anyway.
const DEFER_ACCEPT_SECS: libc::c_int = 1;

/// Sets TCP_DEFER_ACCEPT on a listening TCP socket: a connection reaches a worker
/// once its first bytes have arrived, so a worker wakes once per connection instead
/// of once for the accept and again for the request (web servers send the request
/// right after connecting). A connection that stays silent is handed over after
/// about a second and then has its request deadline like any other.
pub fn defer_accept(l: &std::net::TcpListener) -> bool {
    use std::os::fd::AsRawFd;
    let secs = DEFER_ACCEPT_SECS;
    // SAFETY: a listening socket this process holds; the option value is a live int
    // of the length passed.
    unsafe {
        libc::setsockopt(
            l.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            (&secs as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
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
    fn a_silent_connection_is_not_accepted_at_once_one_that_sends_is() {
        use std::io::Write;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(defer_accept(&l));
        l.set_nonblocking(true).unwrap();
        let _silent = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(l.accept().is_err(), "accepted before it sent anything");
        let mut talker = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        talker.write_all(b"x").unwrap();
        let t = std::time::Instant::now();
        let got = loop {
            match l.accept() {
                Ok((s, _)) => break Some(s),
                Err(_) if t.elapsed() < std::time::Duration::from_secs(5) => {
                    std::thread::sleep(std::time::Duration::from_millis(5))
                }
                Err(_) => break None,
            }
        };
        let got = got.expect("the connection that sent is accepted");
        assert_eq!(got.peer_addr().unwrap(), talker.local_addr().unwrap());
    }

    #[test]
    fn accepted_tcp_sockets_inherit_nodelay() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(preset_nodelay(&l));
        let _client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        assert!(s.nodelay().unwrap());
    }
}
