//! A worker process: owns client connections and requests. One thread waits on all
//! its connections at once (`event`), and answers each complete request in turn
//! through the protocol handlers ([`Worker::answer`]; FastCGI requests in `fcgi`,
//! HTTP ones in `http`); rendering is synchronous, client I/O never blocks, and a
//! large export renders in a child process (`render::offload`).

mod conn;
mod event;
mod fcgi;
mod http;
mod linger;
mod poll;
mod sockopt;

use crate::config::Config;
use crate::fcgi::Params;
use crate::image::cache::ImageCache;
use crate::protocol::{self, Ctx, Outcome};
use crate::render::admission::{self, Attempt};
use crate::render::offload::{self, Ended, Job};
use crate::response::Response;
use crate::supervisor::metrics::Metrics;
use crate::supervisor::{Listener, WorkerCtx};
use std::panic::{catch_unwind, AssertUnwindSafe};
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
        let memcached = crate::memcached::Client::new(
            &cfg.memcached_servers,
            cfg.memcached_timeout,
            cfg.memcached_io_timeout,
        );
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
        match self.answer_within(params, stdin, false, None) {
            Answer::Done(out) => out,
            _ => unreachable!("a request is put back or handed on only when it may be"),
        }
    }

    /// [`answer`](Self::answer), except that when `may_wait` an expensive request that
    /// finds every admission slot busy is not answered ([`Answer::Wait`], to be tried
    /// again), and when `fork` says how its answer goes on the wire, an admitted one is
    /// rendered in a child process ([`Answer::Running`]; see
    /// [`collected`](Self::collected)).
    pub fn answer_within(
        &mut self,
        params: &Params,
        stdin: &[u8],
        may_wait: bool,
        fork: Option<Wire>,
    ) -> Answer {
        let start = Instant::now();
        let faults = crate::image::guard::faults();
        let cfg = self.cfg.clone();
        let images = &mut self.images;
        let tiles = self.tiles;
        let memcached = &mut self.memcached;
        let (caught, how) = admission::attempt(may_wait, fork.is_some(), || {
            catch_unwind(AssertUnwindSafe(|| {
                let mut ctx = Ctx {
                    cfg: &cfg,
                    images,
                    tiles,
                    memcached: memcached.as_mut(),
                };
                protocol::handle(&mut ctx, params, stdin)
            }))
        });
        let panicked = caught.is_err();
        match how {
            Attempt::PutBack if !panicked => return Answer::Wait,
            Attempt::Forked(job) if !panicked => return Answer::Running(job),
            _ => {}
        }
        let outcome = caught.unwrap_or_else(|_| {
            log::error!(
                "internal error while answering '{}'",
                params.get("QUERY_STRING").unwrap_or("")
            );
            internal_error(&cfg)
        });
        let faulted = crate::image::guard::faults().saturating_sub(faults);
        if let (true, Some(wire)) = (offload::in_child(), fork) {
            offload::finish(&child_answer(&outcome, faulted, wire));
        }
        let bytes = body_bytes(&outcome);
        self.account(
            params,
            (outcome.protocol, outcome.response.status, bytes),
            start,
            panicked,
            faulted,
        );
        Answer::Done(outcome)
    }

    /// The answer of a request rendered in a child process that `ended`: its bytes as
    /// they go on the wire, mapped from the child's memory file, or a 500 to send if
    /// the child died without one. The request began at `started`.
    pub fn collected(&mut self, ended: Ended, started: Instant, params: &Params) -> Collected {
        let answer = match ended {
            Ended::Answer(file) => read_child_answer(&file),
            Ended::Died(why) => Err(why),
        };
        match answer {
            Ok(a) => {
                if a.faulted > 0 {
                    // The child found a file changed under its map: so would this
                    // worker's maps.
                    self.images.clear();
                }
                let protocol = PROTOCOLS
                    .get(a.protocol as usize)
                    .copied()
                    .unwrap_or("other");
                self.account(
                    params,
                    (protocol, a.status, a.body),
                    started,
                    false,
                    a.faulted,
                );
                Collected::Wire(a.map, CHILD_PREFIX)
            }
            Err(why) => {
                log::error!(
                    "the process rendering '{}' ended without an answer: {why}",
                    params.get("QUERY_STRING").unwrap_or("")
                );
                let outcome = internal_error(&self.cfg);
                let bytes = body_bytes(&outcome);
                self.account(params, ("other", 500, bytes), started, true, 0);
                Collected::Outcome(outcome)
            }
        }
    }

    /// Adds an answered request to the metrics and the access log.
    fn account(
        &mut self,
        params: &Params,
        (protocol, status, bytes): (&'static str, u16, u64),
        start: Instant,
        failed: bool,
        faulted: usize,
    ) {
        let micros = start.elapsed().as_micros() as u64;
        if let Some(m) = self.metrics {
            m.record(protocol, status, micros, bytes);
            if failed {
                m.record_panic();
            }
            if faulted > 0 {
                m.record_file_faults(faulted as u64);
            }
            let (hits, misses) = self.images.take_counts();
            m.record_cache(hits, misses);
        }
        // Per-request lines belong to VERBOSITY 2 (docs/server.md §7), like iipsrv's
        // request trace.
        log::debug!(
            "access method={} protocol={} status={} bytes={} us={} uri={:?}",
            params.get("REQUEST_METHOD").unwrap_or("GET"),
            protocol,
            status,
            bytes,
            micros,
            params
                .get("REQUEST_URI")
                .or_else(|| params.get("QUERY_STRING"))
                .unwrap_or("")
        );
    }
}

/// What [`Worker::answer_within`] made of a request.
pub enum Answer {
    Done(Outcome),
    /// Put back to wait for an admission slot.
    Wait,
    /// Rendering in a child process.
    Running(Job),
}

fn internal_error(cfg: &Config) -> Outcome {
    Outcome {
        response: Response::text_error(cfg, 500, "Internal server error"),
        head_only: false,
        protocol: "other",
    }
}

/// Body bytes sent for an answer (none for HEAD), for the metrics.
fn body_bytes(o: &Outcome) -> u64 {
    if o.head_only {
        0
    } else {
        o.response.body.len() as u64
    }
}

/// How an answer rendered in a child process is framed for its connection, which the
/// child writes it for.
#[derive(Clone, Copy)]
pub enum Wire {
    /// FastCGI records of this request id.
    Fcgi(u16),
    /// An HTTP response, keeping the connection open or not.
    Http { keep: bool },
}

/// What [`Worker::collected`] has for the connection.
pub enum Collected {
    /// Wire bytes, from this offset of the map.
    Wire(memmap2::Mmap, usize),
    /// An answer to frame as usual.
    Outcome(Outcome),
}

/// The protocol names an [`Outcome`] may carry, by their index in a child's answer.
const PROTOCOLS: [&str; 5] = ["iip", "iiif", "deepzoom", "zoomify", "other"];

/// Bytes before the wire bytes in a child's answer: status (u16), protocol index
/// (u8), reserved (u8), file faults met (u32), body bytes sent (u64), little-endian.
const CHILD_PREFIX: usize = 16;

/// A child's answer: the figures the worker's metrics need, then the response framed
/// as `wire` says.
fn child_answer(o: &Outcome, faulted: usize, wire: Wire) -> Vec<u8> {
    let p = PROTOCOLS.iter().position(|&p| p == o.protocol).unwrap_or(4);
    let mut out = Vec::with_capacity(CHILD_PREFIX + 1024 + o.response.body.len());
    out.extend_from_slice(&o.response.status.to_le_bytes());
    out.extend_from_slice(&[p as u8, 0]);
    out.extend_from_slice(&(faulted.min(u32::MAX as usize) as u32).to_le_bytes());
    out.extend_from_slice(&body_bytes(o).to_le_bytes());
    match wire {
        Wire::Fcgi(id) => {
            let cgi = o.response.to_cgi(o.head_only);
            crate::fcgi::record::write_response(&mut out, id, &cgi);
        }
        Wire::Http { keep } => {
            out.extend_from_slice(&crate::http::serialize_head(&o.response, keep));
            if !o.head_only {
                out.extend_from_slice(&o.response.body);
            }
        }
    }
    out
}

/// A child's answer as [`child_answer`] wrote it into `file`.
struct ChildAnswer {
    map: memmap2::Mmap,
    status: u16,
    protocol: u8,
    faulted: usize,
    body: u64,
}

fn read_child_answer(file: &std::fs::File) -> Result<ChildAnswer, String> {
    // SAFETY: the memory file is this worker's alone now that the child has exited;
    // nothing resizes or writes it while it is mapped.
    let map =
        unsafe { memmap2::Mmap::map(file) }.map_err(|e| format!("cannot map its answer: {e}"))?;
    let Some(head) = map.get(..CHILD_PREFIX) else {
        return Err(format!("its answer is {} bytes long", map.len()));
    };
    let u = |r: std::ops::Range<usize>| {
        let mut b = [0u8; 8];
        b[..r.len()].copy_from_slice(&head[r]);
        u64::from_le_bytes(b)
    };
    Ok(ChildAnswer {
        status: u(0..2) as u16,
        protocol: head[2],
        faulted: u(4..8) as usize,
        body: u(8..16),
        map,
    })
}

/// What the supervisor made in shared memory before forking, for every worker.
#[derive(Clone, Copy, Default)]
pub struct Shared {
    /// The tile cache (tiles, region exports and image headers).
    pub tiles: Option<&'static shm::Cache>,
    /// Admission slots for expensive requests.
    pub slots: Option<&'static shm::Slots>,
    /// Tiles being decoded, for single flight.
    pub flights: Option<&'static shm::Flights>,
}

/// The worker's main function, run in each forked process.
pub fn main(listener: &Listener, cfg: Arc<Config>, ctx: &WorkerCtx, shared: Shared) -> i32 {
    serve(listener, cfg, ctx, shared, event::Mode::Fcgi)
}

/// The worker's main function in the built-in HTTP mode.
pub fn main_http(
    listener: &Listener,
    cfg: Arc<Config>,
    ctx: &WorkerCtx,
    opts: &HttpOptions,
    shared: Shared,
) -> i32 {
    serve(listener, cfg, ctx, shared, event::Mode::Http(opts))
}

fn serve(
    listener: &Listener,
    cfg: Arc<Config>,
    ctx: &WorkerCtx,
    shared: Shared,
    mode: event::Mode,
) -> i32 {
    crate::logging::init(&cfg);
    tune_malloc();
    if let Some(slots) = shared.slots {
        admission::install(slots, cfg.expensive_limit(ctx.workers));
    }
    if let Some(flights) = shared.flights {
        crate::render::flight::install(flights, cfg.single_flight_wait);
    }
    let mut worker = Worker::with_metrics(cfg, ctx.metrics()).with_tile_cache(shared.tiles);
    event::run(listener, ctx, &mut worker, mode)
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

/// Options of the built-in HTTP mode.
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    /// OpenSeadragon's build directory, served under `/viewer/`.
    pub viewer_dir: Option<std::path::PathBuf>,
    /// The image the page at `/` shows.
    pub default_image: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_childs_answer_is_framed_for_its_connection() {
        let cfg = Config::from_vars(|_| None);
        let mut response = Response::content(&cfg, "image/jpeg", vec![0, 13, 10, 255], None, None);
        response.status = 206;
        let o = Outcome {
            response,
            head_only: false,
            protocol: "iiif",
        };
        let mut file = tempfile_in_memory();
        std::io::Write::write_all(&mut file, &child_answer(&o, 3, Wire::Http { keep: true }))
            .unwrap();
        let a = read_child_answer(&file).unwrap();
        assert_eq!((a.status, a.protocol, a.faulted, a.body), (206, 1, 3, 4));
        let mut want = crate::http::serialize_head(&o.response, true);
        want.extend_from_slice(&[0, 13, 10, 255]);
        assert_eq!(&a.map[CHILD_PREFIX..], &want[..]);
        // FastCGI: the CGI response in records of the request's id.
        let mut file = tempfile_in_memory();
        std::io::Write::write_all(&mut file, &child_answer(&o, 0, Wire::Fcgi(7))).unwrap();
        let a = read_child_answer(&file).unwrap();
        let mut want = Vec::new();
        crate::fcgi::record::write_response(&mut want, 7, &o.response.to_cgi(false));
        assert_eq!(&a.map[CHILD_PREFIX..], &want[..]);
        assert!(read_child_answer(&tempfile_in_memory()).is_err(), "empty");
    }

    fn tempfile_in_memory() -> std::fs::File {
        // SAFETY: a valid name and flags.
        let fd = unsafe { libc::memfd_create(c"test".as_ptr(), libc::MFD_CLOEXEC) };
        assert!(fd >= 0);
        // SAFETY: a fresh descriptor owned by the file.
        unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) }
    }
}
