//! A worker process: owns client connections and requests. One thread waits on all
//! its connections at once (`event`), and answers each complete request in turn
//! through the protocol handlers ([`Worker::answer`]); rendering is synchronous, client
//! I/O never blocks.

mod conn;
mod event;
mod linger;
mod poll;

use crate::config::Config;
use crate::fcgi::Params;
use crate::image::cache::ImageCache;
use crate::protocol::{self, Ctx, Outcome};
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
        self.answer_within(params, stdin, false)
            .unwrap_or_else(|| unreachable!("a request is put back only when it may wait"))
    }

    /// [`answer`](Self::answer), except that when `may_wait` an expensive request that
    /// finds every admission slot busy is not answered: `None`, to be tried again.
    pub fn answer_within(
        &mut self,
        params: &Params,
        stdin: &[u8],
        may_wait: bool,
    ) -> Option<Outcome> {
        let start = Instant::now();
        let faults = crate::image::guard::faults();
        let mut panicked = false;
        let cfg = self.cfg.clone();
        let images = &mut self.images;
        let tiles = self.tiles;
        let memcached = &mut self.memcached;
        let (caught, put_back) = crate::render::admission::attempt(may_wait, || {
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
        if put_back && caught.is_ok() {
            return None;
        }
        let outcome = caught.unwrap_or_else(|_| {
            panicked = true;
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
            if panicked {
                m.record_panic();
            }
            let faulted = crate::image::guard::faults() - faults;
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
        Some(outcome)
    }
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
        crate::render::admission::install(slots, cfg.expensive_limit(ctx.workers));
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
