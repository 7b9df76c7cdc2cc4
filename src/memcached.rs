//! The optional memcached second level (`MEMCACHED_SERVERS`, `MEMCACHED_TIMEOUT`): whole
//! responses by request, as iipsrv keeps them. A small ASCII-protocol client with
//! connect/read/write limits (`MEMCACHED_IO_TIMEOUT`, 100 ms by default), one connection
//! per server per worker: a memcached that is down or slow costs at most that, and a
//! failing server is left alone for 10 s. (The `memcache` crate's connection pool waits
//! its own connect timeout when the server is down, which would stall workers.)

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

const RETRY_AFTER: Duration = Duration::from_secs(10);
/// Largest value memcached accepts by default.
const MAX_VALUE: usize = 1 << 20;

struct Server {
    addr: Option<SocketAddr>,
    conn: Option<BufReader<TcpStream>>,
    /// Whether `conn` was opened in a child forked to render one request: a child opens
    /// its own rather than interleave its messages with its worker's.
    opened_in_child: bool,
    down_until: Option<Instant>,
}

/// A client for the configured servers; keys are spread over them by hash.
pub struct Client {
    servers: Vec<Server>,
    expiry: u32,
    io_timeout: Duration,
}

impl Client {
    /// `servers` as `host[:port]` (port 11211 by default). Names are resolved once.
    pub fn new(servers: &[String], expiry: u32, io_timeout: Duration) -> Option<Client> {
        if servers.is_empty() {
            return None;
        }
        let servers = servers
            .iter()
            .map(|s| {
                let with_port = if s.contains(':') {
                    s.clone()
                } else {
                    format!("{s}:11211")
                };
                Server {
                    addr: with_port.to_socket_addrs().ok().and_then(|mut a| a.next()),
                    conn: None,
                    opened_in_child: false,
                    down_until: None,
                }
            })
            .collect();
        Some(Client {
            servers,
            expiry,
            io_timeout,
        })
    }

    /// The memcached key of a request string.
    pub fn key(request: &str) -> String {
        let (a, b) = shm::key(&[request.as_bytes()]);
        format!("tessera:{a:016x}{b:016x}")
    }

    fn server(&mut self, key: &str) -> Option<&mut Server> {
        let n = self.servers.len();
        let io_timeout = self.io_timeout;
        let i = (shm::key(&[key.as_bytes()]).0 % n as u64) as usize;
        let s = &mut self.servers[i];
        if s.down_until.is_some_and(|t| Instant::now() < t) {
            return None;
        }
        let in_child = crate::render::offload::in_child();
        if s.opened_in_child != in_child {
            // Closes this process's copy only; the socket stays the other's.
            s.conn = None;
        }
        if s.conn.is_none() {
            let addr = s.addr?;
            match TcpStream::connect_timeout(&addr, io_timeout) {
                Ok(c) => {
                    let _ = c.set_read_timeout(Some(io_timeout));
                    let _ = c.set_write_timeout(Some(io_timeout));
                    let _ = c.set_nodelay(true);
                    s.conn = Some(BufReader::new(c));
                    s.opened_in_child = in_child;
                    s.down_until = None;
                }
                Err(e) => {
                    log::info!("memcached {addr} unavailable: {e}; retrying in 10 s");
                    s.down_until = Some(Instant::now() + RETRY_AFTER);
                    return None;
                }
            }
        }
        Some(s)
    }

    fn fail(s: &mut Server, e: std::io::Error) {
        log::info!("memcached error: {e}; dropping the connection");
        s.conn = None;
        s.down_until = Some(Instant::now() + RETRY_AFTER);
    }

    /// The stored value, or `None` on a miss or any error.
    pub fn get(&mut self, key: &str) -> Option<Vec<u8>> {
        let s = self.server(key)?;
        let conn = s.conn.as_mut()?;
        let r = (|| -> std::io::Result<Option<Vec<u8>>> {
            conn.get_mut()
                .write_all(format!("get {key}\r\n").as_bytes())?;
            let mut line = String::new();
            conn.read_line(&mut line)?;
            if line.starts_with("END") {
                return Ok(None);
            }
            let len: usize = line
                .strip_prefix("VALUE ")
                .and_then(|l| l.split_whitespace().nth(2))
                .and_then(|n| n.parse().ok())
                .filter(|&n| n <= MAX_VALUE)
                .ok_or_else(|| std::io::Error::other(format!("unexpected reply {line:?}")))?;
            let mut data = vec![0u8; len + 2];
            conn.read_exact(&mut data)?;
            data.truncate(len);
            let mut end = String::new();
            conn.read_line(&mut end)?;
            if !end.starts_with("END") {
                return Err(std::io::Error::other("unterminated value"));
            }
            Ok(Some(data))
        })();
        match r {
            Ok(v) => v,
            Err(e) => {
                Self::fail(s, e);
                None
            }
        }
    }

    /// Stores a value (without waiting for the reply).
    pub fn set(&mut self, key: &str, value: &[u8]) {
        if value.len() > MAX_VALUE {
            return;
        }
        let expiry = self.expiry;
        let Some(s) = self.server(key) else { return };
        let Some(conn) = s.conn.as_mut() else { return };
        let mut msg = format!("set {key} 0 {expiry} {} noreply\r\n", value.len()).into_bytes();
        msg.extend_from_slice(value);
        msg.extend_from_slice(b"\r\n");
        if let Err(e) = conn.get_mut().write_all(&msg) {
            Self::fail(s, e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_short_and_safe() {
        let k = Client::key(&"FIF=a b.tif&JTL=1,2".repeat(100));
        assert_eq!(k.len(), 8 + 32);
        assert!(k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b':'));
        assert_ne!(Client::key("a"), Client::key("b"));
    }

    #[test]
    fn a_server_that_is_down_costs_little() {
        // A port nothing listens on: refused at once, then skipped for a while.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut c = Client::new(
            &[format!("127.0.0.1:{port}")],
            60,
            Duration::from_millis(100),
        )
        .unwrap();
        let t = Instant::now();
        assert_eq!(c.get("k"), None);
        c.set("k", b"v");
        assert_eq!(c.get("k"), None);
        assert!(t.elapsed() < Duration::from_millis(500));
        assert!(Client::new(&[], 60, Duration::from_millis(100)).is_none());
    }

    #[test]
    fn talks_ascii_protocol() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let srv = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut r = BufReader::new(s);
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            assert!(line.starts_with("set tessera:"), "{line}");
            assert!(line.trim_end().ends_with(" 0 60 5 noreply"), "{line}");
            let mut v = [0u8; 7];
            r.read_exact(&mut v).unwrap();
            assert_eq!(&v, b"hello\r\n");
            line.clear();
            r.read_line(&mut line).unwrap();
            let key = line.trim_end().strip_prefix("get ").unwrap().to_owned();
            r.get_mut()
                .write_all(format!("VALUE {key} 0 5\r\nhello\r\nEND\r\n").as_bytes())
                .unwrap();
        });
        let mut c = Client::new(&[addr.to_string()], 60, Duration::from_millis(100)).unwrap();
        let k = Client::key("FIF=x");
        c.set(&k, b"hello");
        assert_eq!(c.get(&k).as_deref(), Some(&b"hello"[..]));
        srv.join().unwrap();
    }
}
