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
        match self.answer_within(params, stdin, false, false) {
            Answer::Done(out) => out,
            _ => unreachable!("a request is put back or handed on only when it may be"),
        }
    }

    /// [`answer`](Self::answer), except that when `may_wait` an expensive request that
    /// finds every admission slot busy is not answered ([`Answer::Wait`], to be tried
    /// again), and when `may_fork` an admitted one is rendered in a child process
    /// ([`Answer::Running`]; see [`collected`](Self::collected)).
    pub fn answer_within(
        &mut self,
        params: &Params,
        stdin: &[u8],
        may_wait: bool,
        may_fork: bool,
    ) -> Answer {
        let start = Instant::now();
        let faults = crate::image::guard::faults();
        let cfg = self.cfg.clone();
        let images = &mut self.images;
        let tiles = self.tiles;
        let memcached = &mut self.memcached;
        let (caught, how) = admission::attempt(may_wait, may_fork, || {
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
        if offload::in_child() {
            offload::finish(&encode_outcome(&outcome, faulted));
        }
        self.account(params, &outcome, start, panicked, faulted);
        Answer::Done(outcome)
    }

    /// The answer of a request rendered in a child process that `ended` (a 500 if it
    /// died without one); the request began at `started`.
    pub fn collected(&mut self, ended: Ended, started: Instant, params: &Params) -> Outcome {
        let (outcome, faulted) = match ended {
            Ended::Answer(bytes) => match decode_outcome(&bytes) {
                Some((o, f)) => (Some(o), f),
                None => (None, 0),
            },
            Ended::Died(why) => {
                log::error!(
                    "the process rendering '{}' ended without an answer: {why}",
                    params.get("QUERY_STRING").unwrap_or("")
                );
                (None, 0)
            }
        };
        if faulted > 0 {
            // The child found a file changed under its map: so would this worker's maps.
            self.images.clear();
        }
        let died = outcome.is_none();
        let outcome = outcome.unwrap_or_else(|| internal_error(&self.cfg));
        self.account(params, &outcome, started, died, faulted);
        outcome
    }

    /// Adds an answered request to the metrics and the access log.
    fn account(
        &mut self,
        params: &Params,
        outcome: &Outcome,
        start: Instant,
        failed: bool,
        faulted: usize,
    ) {
        let micros = start.elapsed().as_micros() as u64;
        let bytes = if outcome.head_only {
            0
        } else {
            outcome.response.body.len() as u64
        };
        if let Some(m) = self.metrics {
            m.record(outcome.protocol, outcome.response.status, micros, bytes);
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
            outcome.protocol,
            outcome.response.status,
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

/// The protocol names an [`Outcome`] may carry, by their index in a child's answer.
const PROTOCOLS: [&str; 5] = ["iip", "iiif", "deepzoom", "zoomify", "other"];

/// A child's answer: whether only the head is sent, the protocol, the faults of a file
/// that shrank while it was read (for the metrics), the CGI response.
fn encode_outcome(o: &Outcome, faulted: usize) -> Vec<u8> {
    let p = PROTOCOLS.iter().position(|&p| p == o.protocol).unwrap_or(4);
    let mut out = vec![u8::from(o.head_only), p as u8];
    out.extend_from_slice(&(faulted.min(u32::MAX as usize) as u32).to_le_bytes());
    out.extend_from_slice(&o.response.to_cgi(false));
    out
}

fn decode_outcome(b: &[u8]) -> Option<(Outcome, usize)> {
    let (&[head_only, p], rest) = b.split_first_chunk::<2>()?;
    let (faulted, cgi) = rest.split_first_chunk::<4>()?;
    let outcome = Outcome {
        response: Response::from_cgi(cgi)?,
        head_only: head_only != 0,
        protocol: PROTOCOLS.get(p as usize).copied().unwrap_or("other"),
    };
    Some((outcome, u32::from_le_bytes(*faulted) as usize))
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
    fn a_childs_answer_comes_back_whole() {
        let cfg = Config::from_vars(|_| None);
        let mut response = Response::content(&cfg, "image/jpeg", vec![0, 13, 10, 255], None, None);
        response.status = 206;
        let o = Outcome {
            response,
            head_only: true,
            protocol: "iiif",
        };
        let (back, faulted) = decode_outcome(&encode_outcome(&o, 3)).unwrap();
        assert_eq!(faulted, 3);
        assert!(back.head_only);
        assert_eq!(back.protocol, "iiif");
        assert_eq!(back.response.status, 206);
        assert_eq!(back.response.headers, o.response.headers);
        assert_eq!(back.response.body, o.response.body);
        assert!(decode_outcome(&[1]).is_none());
    }
}
