//! A worker process: accepts connections, reads FastCGI requests, answers them.
//! Single-threaded; one connection and one request at a time.

use crate::config::Config;
use crate::fcgi::{Conn, Limits, Lingering, Params, Stream};
use crate::image::cache::ImageCache;
use crate::protocol::{self, Ctx, Outcome};
use crate::response::Response;
use crate::supervisor::metrics::Metrics;
use crate::supervisor::{self, Accepted, Listener, Waiting, Wake, WorkerCtx};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

/// Per-process request state kept across connections.
pub struct Worker {
    pub cfg: Arc<Config>,
    pub images: ImageCache,
    metrics: Option<&'static Metrics>,
    tiles: Option<&'static shm::Cache>,
    memcached: Option<crate::memcached::Client>,
}

impl Worker {
    pub fn new(cfg: Arc<Config>) -> Self {
        let images = ImageCache::new(cfg.metadata_cache_entries);
        let memcached =
            crate::memcached::Client::new(&cfg.memcached_servers, cfg.memcached_timeout);
        Worker {
            cfg,
            images,
            metrics: None,
            tiles: None,
            memcached,
        }
    }

    /// Serve tiles, and share image headers, through the shared cache.
    pub fn with_tile_cache(mut self, tiles: Option<&'static shm::Cache>) -> Self {
        self.tiles = tiles;
        self.images.share_through(tiles);
        self
    }

    /// A worker that adds every request to the server's shared metrics.
    pub fn with_metrics(cfg: Arc<Config>, metrics: &'static Metrics) -> Self {
        Worker {
            metrics: Some(metrics),
            ..Worker::new(cfg)
        }
    }

    /// Whether `URI_MAP` routes this request target to a protocol.
    pub fn is_mapped(&self, target: &str) -> bool {
        crate::protocol::is_mapped(&self.cfg, target)
    }

    /// Answers one request. A panic anywhere below becomes a 500 for this request
    /// only; the worker keeps serving.
    pub fn answer(&mut self, params: &Params, stdin: &[u8]) -> Outcome {
        let start = Instant::now();
        let cfg = self.cfg.clone();
        let images = &mut self.images;
        let tiles = self.tiles;
        let memcached = &mut self.memcached;
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let mut ctx = Ctx {
                cfg: &cfg,
                images,
                tiles,
                memcached: memcached.as_mut(),
            };
            protocol::handle(&mut ctx, params, stdin)
        }))
        .unwrap_or_else(|_| {
            log::error!(
                "internal error while answering '{}'",
                params.get("QUERY_STRING").unwrap_or("")
            );
            Outcome {
                response: Response::text_error(&cfg, 500, "Internal server error"),
                head_only: false,
                protocol: "other",
            }
        });
        let micros = start.elapsed().as_micros() as u64;
        let bytes = if outcome.head_only {
            0
        } else {
            outcome.response.body.len() as u64
        };
        if let Some(m) = self.metrics {
            m.record(outcome.protocol, outcome.response.status, micros, bytes);
            let (hits, misses) = self.images.take_counts();
            m.record_cache(hits, misses);
        }
        // Per-request lines belong to VERBOSITY 2 (server.md), like iipsrv's request trace.
        log::debug!(
            "access method={} protocol={} status={} bytes={} us={} uri={:?}",
            params.get("REQUEST_METHOD").unwrap_or("GET"),
            outcome.protocol,
            outcome.response.status,
            bytes,
            micros,
            params
                .get("REQUEST_URI")
                .or_else(|| params.get("QUERY_STRING"))
                .unwrap_or("")
        );
        outcome
    }
}

/// Limits for connections from the web server.
fn limits() -> Limits {
    Limits {
        // A 1 MB query string must still get an answer (an IIP error), not a reset.
        max_params_bytes: 4 << 20,
        ..Limits::default()
    }
}

/// Answers the requests a connection has ready. Returns it when the web server keeps
/// it open for more (FCGI_KEEP_CONN) and nothing more has arrived yet; else closes it.
fn serve_requests<S: Stream>(
    mut conn: Conn<S>,
    worker: &mut Worker,
    ctx: &WorkerCtx,
    lingering: &mut Lingering,
) -> Option<Conn<S>> {
    loop {
        match conn.next_request() {
            Ok(Some(req)) => {
                let out = worker.answer(&req.params, &req.stdin);
                let bytes = out.response.to_cgi(out.head_only);
                ctx.record_request();
                if let Err(e) = conn.respond(&req, &bytes) {
                    log::info!("response not delivered: {e}");
                    break;
                }
                if !req.keep_conn || ctx.stop.load(Ordering::Relaxed) {
                    break;
                }
                if !conn.has_buffered() {
                    return Some(conn);
                }
            }
            Ok(None) => break,
            Err(e) => {
                log::info!("closing FastCGI connection: {e}");
                break;
            }
        }
    }
    conn.close(lingering);
    None
}

/// A new connection: set up, then served as [`serve_requests`].
fn serve_conn<S: Stream>(
    stream: S,
    worker: &mut Worker,
    ctx: &WorkerCtx,
    preset: bool,
    lingering: &mut Lingering,
) -> Option<Conn<S>> {
    let conn = if preset {
        Ok(Conn::with_inherited_timeouts(stream, limits()))
    } else {
        Conn::new(stream, limits())
    };
    match conn {
        Ok(c) => serve_requests(c.with_stop_flag(ctx.stop), worker, ctx, lingering),
        Err(e) => {
            log::warn!("cannot set up connection: {e}");
            None
        }
    }
}

/// A connection kept open by the web server, of the listening socket's kind.
enum KeptConn {
    Tcp(Conn<std::net::TcpStream>),
    Unix(Conn<std::os::unix::net::UnixStream>),
}

/// Connections the web server keeps open between requests (nginx's `fastcgi_keep_conn`
/// with an upstream `keepalive` pool), waited on together with the listening socket. A
/// single-threaded worker that blocked reading the next request of one of them would
/// leave every other connection unserved until that one spoke again — new ones queued
/// at the listening socket, and the web server's other kept connections — which stalled
/// requests for up to the read timeout. At most [`MAX_KEPT`] per worker; one idle for
/// [`KEPT_IDLE`] is closed.
#[derive(Default)]
struct Kept {
    conns: std::collections::HashMap<std::os::fd::RawFd, (KeptConn, std::time::Instant)>,
}

const MAX_KEPT: usize = 256;
const KEPT_IDLE: std::time::Duration = std::time::Duration::from_secs(300);

impl Kept {
    fn keep(&mut self, conn: KeptConn, waiting: &Waiting, lingering: &mut Lingering) {
        let fd = match &conn {
            KeptConn::Tcp(c) => c.raw_fd(),
            KeptConn::Unix(c) => c.raw_fd(),
        };
        match fd {
            Some(fd) if self.conns.len() < MAX_KEPT && waiting.add(fd).is_ok() => {
                self.conns.insert(fd, (conn, std::time::Instant::now()));
            }
            _ => close_kept(conn, lingering),
        }
    }

    /// The connection on `fd`, no longer waited on.
    fn take(&mut self, fd: std::os::fd::RawFd, waiting: &Waiting) -> Option<KeptConn> {
        let (conn, _) = self.conns.remove(&fd)?;
        waiting.remove(fd);
        Some(conn)
    }

    /// Closes connections idle too long, or all of them when the worker stops.
    fn expire(&mut self, waiting: &Waiting, lingering: &mut Lingering, all: bool) {
        let old: Vec<_> = self
            .conns
            .iter()
            .filter(|(_, (_, since))| all || since.elapsed() > KEPT_IDLE)
            .map(|(fd, _)| *fd)
            .collect();
        for fd in old {
            if let Some(conn) = self.take(fd, waiting) {
                close_kept(conn, lingering);
            }
        }
    }
}

fn close_kept(conn: KeptConn, lingering: &mut Lingering) {
    match conn {
        KeptConn::Tcp(c) => c.close(lingering),
        KeptConn::Unix(c) => c.close(lingering),
    }
}

/// The worker's main function, run in each forked process.
pub fn main(
    listener: &Listener,
    cfg: Arc<Config>,
    ctx: &WorkerCtx,
    tiles: Option<&'static shm::Cache>,
) -> i32 {
    crate::logging::init(&cfg);
    tune_malloc();
    let mut worker = Worker::with_metrics(cfg, ctx.metrics()).with_tile_cache(tiles);
    // TCP_NODELAY and the timeouts set once on the listening socket are copied into
    // every accepted TCP socket (Linux); the listening socket itself is non-blocking, so
    // they do not affect `accept`.
    let preset = match listener {
        Listener::Tcp(l) => preset_tcp(l, &limits()),
        Listener::Unix(..) => false,
    };
    let mut lingering = Lingering::default();
    let mut kept = Kept::default();
    let code = supervisor::accept_loop(listener, ctx, |wake, waiting| {
        let conn = match wake {
            Wake::Accepted(Accepted::Tcp(s)) => {
                if !preset {
                    let _ = s.set_nodelay(true);
                }
                serve_conn(s, &mut worker, ctx, preset, &mut lingering).map(KeptConn::Tcp)
            }
            Wake::Accepted(Accepted::Unix(s)) => {
                serve_conn(s, &mut worker, ctx, false, &mut lingering).map(KeptConn::Unix)
            }
            Wake::Ready(fd) => match kept.take(fd, waiting) {
                Some(KeptConn::Tcp(c)) => {
                    serve_requests(c, &mut worker, ctx, &mut lingering).map(KeptConn::Tcp)
                }
                Some(KeptConn::Unix(c)) => {
                    serve_requests(c, &mut worker, ctx, &mut lingering).map(KeptConn::Unix)
                }
                None => None,
            },
            Wake::Idle => {
                kept.expire(waiting, &mut lingering, ctx.stopping());
                lingering.sweep();
                None
            }
        };
        if let Some(conn) = conn {
            kept.keep(conn, waiting, &mut lingering);
        }
    });
    for (_, (conn, _)) in kept.conns.drain() {
        close_kept(conn, &mut lingering);
    }
    code
}

/// Keeps tile-sized buffers (200 KB – a few MB) in the heap between requests. With
/// glibc's defaults each one is a fresh `mmap`, zeroed by the kernel page by page and
/// unmapped again on free: page faults were 5–10 % of a worker's time on 16-bit and
/// JPEG2000 tiles. Up to 64 MiB of freed memory may stay with the worker.
fn tune_malloc() {
    // SAFETY: mallopt only adjusts allocator parameters; called before serving.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}

/// Sets TCP_NODELAY, SO_RCVTIMEO and SO_SNDTIMEO (from `limits`) on a listening TCP
/// socket, for its accepted sockets to inherit; false if any failed.
fn preset_tcp(l: &std::net::TcpListener, limits: &Limits) -> bool {
    use nix::sys::socket::{setsockopt, sockopt};
    let tv = |d: std::time::Duration| {
        nix::sys::time::TimeVal::new(d.as_secs() as i64, d.subsec_micros() as i64)
    };
    setsockopt(l, sockopt::TcpNoDelay, &true).is_ok()
        && setsockopt(l, sockopt::ReceiveTimeout, &tv(limits.read_timeout)).is_ok()
        && setsockopt(l, sockopt::SendTimeout, &tv(limits.write_timeout)).is_ok()
}

/// Options of the built-in HTTP mode.
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    /// OpenSeadragon's build directory, served under `/viewer/`.
    pub viewer_dir: Option<std::path::PathBuf>,
    /// The image the page at `/` shows.
    pub default_image: String,
}

fn serve_http<S: Stream>(
    stream: S,
    listener: std::os::fd::RawFd,
    worker: &mut Worker,
    ctx: &WorkerCtx,
    opts: &HttpOptions,
) {
    use crate::http::{self, HttpError};
    let mut conn = match http::Conn::new(stream, std::time::Duration::from_secs(30)) {
        Ok(c) => c.with_stop_flag(ctx.stop).with_listener(listener),
        Err(e) => {
            log::warn!("cannot set up connection: {e}");
            return;
        }
    };
    for _ in 0..http::MAX_REQUESTS_PER_CONN {
        let req = match conn.next_request() {
            Ok(r) => r,
            Err(HttpError::Bad(status, msg)) => {
                let _ = conn.respond(&http::error_response(status, msg), false, false);
                break;
            }
            Err(_) => break,
        };
        let keep = req.keep_alive() && !ctx.stopping();
        let path = req.path();
        let (response, head_only) = if path == "/"
            && (req.query().is_empty() || req.query().starts_with("image="))
        {
            (
                http::viewer::index(req.query(), &opts.default_image, opts.viewer_dir.as_deref()),
                false,
            )
        } else if let Some(rel) = path.strip_prefix("/viewer/") {
            let r = http::viewer::asset(opts.viewer_dir.as_deref(), rel)
                .unwrap_or_else(|| http::error_response(404, "no such viewer file"));
            (r, req.method == "HEAD")
        } else if req.query().is_empty()
            && path != "/fcgi-bin/iipsrv.fcgi"
            && !worker.is_mapped(&req.target)
        {
            (http::error_response(404, "Not found"), req.method == "HEAD")
        } else {
            let out = worker.answer(&req.to_params(), &req.body);
            (out.response, out.head_only)
        };
        ctx.record_request();
        if conn.respond(&response, head_only, keep).is_err() || !keep {
            break;
        }
    }
    conn.shutdown();
}

/// The worker's main function in the built-in HTTP mode.
pub fn main_http(
    listener: &Listener,
    cfg: Arc<Config>,
    ctx: &WorkerCtx,
    opts: &HttpOptions,
    tiles: Option<&'static shm::Cache>,
) -> i32 {
    crate::logging::init(&cfg);
    tune_malloc();
    let mut worker = Worker::with_metrics(cfg, ctx.metrics()).with_tile_cache(tiles);
    let fd = listener.raw_fd();
    supervisor::accept_loop(listener, ctx, |wake, _| match wake {
        Wake::Accepted(Accepted::Tcp(s)) => {
            let _ = s.set_nodelay(true);
            serve_http(s, fd, &mut worker, ctx, opts)
        }
        Wake::Accepted(Accepted::Unix(s)) => serve_http(s, fd, &mut worker, ctx, opts),
        Wake::Ready(_) | Wake::Idle => {}
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn accepted_tcp_sockets_inherit_the_preset_options() {
        // Connections are served with no per-connection setsockopt: the timeouts and
        // TCP_NODELAY must come from the listening socket.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let limits = Limits {
            read_timeout: Duration::from_millis(1500),
            write_timeout: Duration::from_millis(2500),
            ..limits()
        };
        assert!(preset_tcp(&l, &limits));
        let _client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        assert_eq!(s.read_timeout().unwrap(), Some(limits.read_timeout));
        assert_eq!(s.write_timeout().unwrap(), Some(limits.write_timeout));
        assert!(s.nodelay().unwrap());
    }
}
