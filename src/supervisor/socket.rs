//! The listening socket: bound from `--bind`, or inherited from systemd socket
//! activation (fd 3) or from spawn-fcgi / mod_fcgid / lighttpd (fd 0).

use nix::sys::socket::{
    self, sockopt, AddressFamily, Backlog, SockFlag, SockType, SockaddrLike, SockaddrStorage,
};
use std::io;
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// Why no listening socket could be had. Messages tell the operator what to change.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    #[error("Unable to open socket '{addr}': {source}")]
    Open { addr: String, source: io::Error },
    #[error("empty --bind address")]
    Empty,
    #[error("'{0}' exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    #[error(
        "no listening socket: pass --bind HOST:PORT (or a Unix socket path), set PORT (and \
         HOST), or start under spawn-fcgi, mod_fcgid, lighttpd or systemd socket activation"
    )]
    NoSocket,
}

/// The socket every worker accepts on.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, Option<PathBuf>),
}

impl Listener {
    pub fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        match self {
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Unix(l, _) => l.as_raw_fd(),
        }
    }
}

/// An accepted connection.
pub enum Accepted {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// The kernel's upper bound for listen backlogs.
pub fn somaxconn() -> i32 {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(4096)
}

/// Clamps a requested backlog to `0..=somaxconn`, logging when it changes.
pub fn clamp_backlog(requested: i32, max: i32) -> i32 {
    let b = requested.clamp(0, max);
    if b != requested {
        log::info!("Listen backlog {requested} clamped to {b} (net.core.somaxconn is {max})");
    }
    b
}

fn open_err<E: Into<io::Error>>(addr: &str) -> impl Fn(E) -> SocketError + '_ {
    move |e| SocketError::Open {
        addr: addr.to_owned(),
        source: e.into(),
    }
}

/// Creates, binds and listens: TCP for `host:port` and `:port`, Unix otherwise
/// (libfcgi's rule: an address with a colon is TCP).
pub fn bind(addr: &str, backlog: i32, unix_mode: u32) -> Result<Listener, SocketError> {
    if addr.is_empty() {
        return Err(SocketError::Empty);
    }
    let backlog = Backlog::new(clamp_backlog(backlog, somaxconn())).map_err(open_err(addr))?;
    if let Some((host, port)) = addr.rsplit_once(':').filter(|_| !addr.starts_with('/')) {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let host = if host.is_empty() { "0.0.0.0" } else { host };
        let sa = (
            host,
            port.parse::<u16>().map_err(|_| SocketError::Open {
                addr: addr.to_owned(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "bad port"),
            })?,
        )
            .to_socket_addrs()
            .map_err(|source| SocketError::Open {
                addr: addr.to_owned(),
                source,
            })?
            .next()
            .ok_or(SocketError::NoSocket)?;
        let family = if sa.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        let fd = socket::socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)
            .map_err(open_err(addr))?;
        socket::setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(open_err(addr))?;
        socket::bind(fd.as_raw_fd(), &SockaddrStorage::from(sa)).map_err(open_err(addr))?;
        socket::listen(&fd, backlog).map_err(open_err(addr))?;
        set_nonblocking(&fd).map_err(open_err(addr))?;
        Ok(Listener::Tcp(TcpListener::from(fd)))
    } else {
        let path = Path::new(addr);
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            use std::os::unix::fs::FileTypeExt;
            if !meta.file_type().is_socket() {
                return Err(SocketError::NotASocket(path.to_owned()));
            }
            // A socket file left by a previous run: nothing can be listening on it if
            // connecting fails.
            if UnixStream::connect(path).is_ok() {
                return Err(SocketError::Open {
                    addr: addr.to_owned(),
                    source: io::Error::new(
                        io::ErrorKind::AddrInUse,
                        "another server is listening on it",
                    ),
                });
            }
            let _ = std::fs::remove_file(path);
        }
        let fd = socket::socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .map_err(open_err(addr))?;
        let ua = socket::UnixAddr::new(path).map_err(open_err(addr))?;
        socket::bind(fd.as_raw_fd(), &ua).map_err(open_err(addr))?;
        socket::listen(&fd, backlog).map_err(open_err(addr))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(unix_mode)).map_err(
            |source| SocketError::Open {
                addr: addr.to_owned(),
                source,
            },
        )?;
        set_nonblocking(&fd).map_err(open_err(addr))?;
        Ok(Listener::Unix(
            UnixListener::from(fd),
            Some(path.to_owned()),
        ))
    }
}

/// Workers wait for connections with epoll and then `accept`; several may wake for one
/// connection, and those that lose must find nothing to accept rather than block.
fn set_nonblocking(fd: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor this process holds.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0
        || unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } != 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Wraps an inherited descriptor if it is a listening stream socket.
fn adopt(fd: RawFd) -> Option<Listener> {
    // SAFETY: fd is a descriptor this process inherited; we only query it here.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    if !socket::getsockopt(&borrowed, sockopt::AcceptConn).unwrap_or(false) {
        return None;
    }
    let family = socket::getsockname::<SockaddrStorage>(fd).ok()?.family()?;
    // SAFETY: the descriptor is a listening socket we now own for the process lifetime.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    if let Err(e) = set_nonblocking(&owned) {
        log::error!("cannot make the inherited listening socket non-blocking: {e}");
        return None;
    }
    Some(match family {
        AddressFamily::Unix => Listener::Unix(UnixListener::from(owned), None),
        _ => Listener::Tcp(TcpListener::from(owned)),
    })
}

/// The listening socket: systemd's when socket-activated (so one unit's `--bind` works
/// with and without `tessera.socket`), else `--bind`, else fd 0.
pub fn acquire_listener(
    bind_addr: Option<&str>,
    backlog: i32,
    unix_mode: u32,
) -> Result<Listener, SocketError> {
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    let fds = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse::<i32>().ok())
        .unwrap_or(0);
    if for_us && fds >= 1 {
        for k in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
            std::env::remove_var(k);
        }
        if let Some(l) = adopt(3) {
            log::info!("Using the socket passed by systemd");
            return Ok(l);
        }
    }
    if let Some(a) = bind_addr {
        return bind(a, backlog, unix_mode);
    }
    if let Some(l) = adopt(0) {
        return Ok(l);
    }
    match env_bind() {
        Some(a) => {
            log::info!("No --bind and no inherited socket: binding HOST:PORT from the environment");
            bind(&a, backlog, unix_mode)
        }
        None => Err(SocketError::NoSocket),
    }
}

/// `HOST` and `PORT`, which iipsrv's own service files pass as `--bind ${HOST}:${PORT}`:
/// used when neither `--bind` nor an inherited socket says where to listen. `HOST`
/// defaults to the loopback address.
fn env_bind() -> Option<String> {
    let port = std::env::var("PORT").ok()?;
    let port = port.trim();
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let host = std::env::var("HOST")
        .ok()
        .filter(|h| !h.trim().is_empty())
        .unwrap_or_else(|| "127.0.0.1".into());
    let host = host.trim();
    Some(if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    })
}

impl Listener {
    fn raw(&self) -> RawFd {
        match self {
            Listener::Tcp(l) => l.as_raw_fd(),
            Listener::Unix(l, _) => l.as_raw_fd(),
        }
    }

    /// One `accept`, reporting EINTR and timeouts to the caller (unlike std's accept,
    /// which retries on EINTR and so would never see a stop signal).
    pub fn accept(&self) -> io::Result<Accepted> {
        let fd = socket::accept4(self.raw(), SockFlag::SOCK_CLOEXEC).map_err(io::Error::from)?;
        // SAFETY: accept4 returned a fresh descriptor that nothing else owns.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(match self {
            Listener::Tcp(_) => Accepted::Tcp(TcpStream::from(owned)),
            Listener::Unix(..) => Accepted::Unix(UnixStream::from(owned)),
        })
    }

    /// For log lines: the address listened on.
    pub fn local_description(&self) -> String {
        match self {
            Listener::Tcp(l) => l
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|_| "inherited TCP socket".into()),
            Listener::Unix(_, Some(p)) => p.display().to_string(),
            Listener::Unix(_, None) => "inherited Unix socket".into(),
        }
    }

    /// The socket file this process created, to remove at exit.
    pub fn created_path(&self) -> Option<&Path> {
        match self {
            Listener::Unix(_, p) => p.as_deref(),
            Listener::Tcp(_) => None,
        }
    }

    /// Hands the descriptor over (tests move it onto fd 0).
    pub fn into_raw_fd(self) -> RawFd {
        match self {
            Listener::Tcp(l) => l.into_raw_fd(),
            Listener::Unix(l, _) => l.into_raw_fd(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn backlog_clamping() {
        assert_eq!(clamp_backlog(2048, 4096), 2048);
        assert_eq!(clamp_backlog(999_999, 4096), 4096);
        assert_eq!(clamp_backlog(-5, 4096), 0);
        assert!(somaxconn() > 0);
    }

    #[test]
    fn tcp_addresses() {
        let l = bind("127.0.0.1:0", 16, 0o666).unwrap();
        assert!(matches!(l, Listener::Tcp(_)));
        assert!(l.local_description().starts_with("127.0.0.1:"));
        assert!(matches!(bind("", 16, 0o666), Err(SocketError::Empty)));
        assert!(matches!(
            bind("127.0.0.1:notaport", 16, 0o666),
            Err(SocketError::Open { .. })
        ));
        let l = bind(":0", 16, 0o666).unwrap();
        assert!(l.local_description().starts_with("0.0.0.0:"));
    }

    #[test]
    fn unix_sockets_replace_stale_files_only() {
        let dir = std::env::temp_dir().join(format!("tessera-sock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("s.sock");
        let l = bind(p.to_str().unwrap(), 16, 0o660).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o660
        );
        // Live socket: refused.
        assert!(bind(p.to_str().unwrap(), 16, 0o660).is_err());
        drop(l);
        // Stale socket: replaced.
        let l = bind(p.to_str().unwrap(), 16, 0o666).unwrap();
        assert_eq!(l.created_path(), Some(p.as_path()));
        drop(l);
        // A regular file is never removed.
        let f = dir.join("file");
        std::fs::write(&f, b"keep").unwrap();
        assert!(matches!(
            bind(f.to_str().unwrap(), 16, 0o666),
            Err(SocketError::NotASocket(_))
        ));
        assert_eq!(std::fs::read(&f).unwrap(), b"keep");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn accept_times_out_instead_of_blocking_forever() {
        let l = bind("127.0.0.1:0", 16, 0o666).unwrap();
        let t = std::time::Instant::now();
        let e = l.accept().err().expect("no client");
        assert!(
            matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "{e:?}"
        );
        assert!(t.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn adopts_only_listening_sockets() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let fd = l.into_raw_fd();
        let adopted = adopt(fd).expect("a listening TCP socket is adopted");
        assert!(matches!(adopted, Listener::Tcp(_)));
        let (a, _b) = UnixStream::pair().unwrap();
        assert!(
            adopt(a.as_raw_fd()).is_none(),
            "a connected socket is not a listener"
        );
        let f = std::fs::File::open("/proc/self/stat").unwrap();
        assert!(adopt(f.as_raw_fd()).is_none());
    }
}
