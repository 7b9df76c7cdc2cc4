//! The supervisor: owns the listening socket, the signals and the worker processes.
//!
//! It binds once (or adopts an inherited socket), forks N single-threaded workers
//! that all `accept()` on it, replaces workers that die, reloads gracefully on
//! SIGHUP and stops gracefully on SIGTERM/SIGINT. Workers own requests; nothing
//! here looks inside one. SIGUSR1 logs statistics (iipsrv exits on it; a service
//! manager's status probe should not stop the server).

pub mod metrics;
mod signals;
mod socket;
mod stats;

/// Worker slots in the shared counters; both the request counters and the metrics
/// block size their per-worker arrays by it.
pub const SLOTS: usize = 1024;

pub use socket::{acquire_listener, clamp_backlog, somaxconn, Accepted, Listener, SocketError};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What a worker process gets from the supervisor.
pub struct WorkerCtx {
    /// Set by SIGTERM/SIGINT/SIGQUIT in the worker: finish the current request, then exit.
    pub stop: &'static AtomicBool,
    /// Index of this worker's statistics slot.
    pub slot: usize,
    /// How many workers the supervisor runs (for a worker's fair share of connections).
    pub workers: usize,
    counter: &'static AtomicU64,
    metrics: &'static metrics::Metrics,
}

impl WorkerCtx {
    /// Counts one answered request (read by the supervisor for SIGUSR1 statistics).
    pub fn record_request(&self) {
        self.counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Server-wide metrics this worker adds to.
    pub fn metrics(&self) -> &'static metrics::Metrics {
        self.metrics
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Supervisor settings.
#[derive(Debug)]
pub struct Options {
    pub workers: usize,
    /// How long in-flight requests may take to finish on stop.
    pub shutdown_timeout: Duration,
    /// Loopback-only `/health` and `/metrics` endpoint served by the supervisor.
    pub metrics: Option<std::net::TcpListener>,
    /// The shared tile cache: emptied on reload, repaired when a worker dies,
    /// reported on SIGUSR1 and in the metrics.
    pub cache: Option<&'static shm::Cache>,
    /// Admission slots and single-flight marks: freed when their holder dies,
    /// reported in the metrics.
    pub slots: Option<&'static shm::Slots>,
    pub flights: Option<&'static shm::Flights>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            workers: 1,
            shutdown_timeout: Duration::from_secs(10),
            metrics: None,
            cache: None,
            slots: None,
            flights: None,
        }
    }
}

struct Worker {
    slot: usize,
    generation: u64,
    started: Instant,
}

/// Restart pacing: more than `BURST` deaths within `WINDOW` delays restarts,
/// doubling from 100 ms up to 5 s.
struct Backoff {
    deaths: VecDeque<Instant>,
}

const BURST: usize = 10;
const WINDOW: Duration = Duration::from_secs(10);

impl Backoff {
    fn delay_after_death(&mut self, now: Instant) -> Duration {
        self.deaths.push_back(now);
        while self
            .deaths
            .front()
            .is_some_and(|t| now.duration_since(*t) > WINDOW)
        {
            self.deaths.pop_front();
        }
        if self.deaths.len() <= BURST {
            return Duration::ZERO;
        }
        let excess = (self.deaths.len() - BURST).min(6) as u32;
        (Duration::from_millis(100) * 2u32.pow(excess)).min(Duration::from_secs(5))
    }
}

struct Supervisor<'a, C> {
    listener: &'a Listener,
    cfg: Arc<C>,
    generation: u64,
    workers: BTreeMap<i32, Worker>,
    /// Slots of the current generation waiting to be (re)started, with their due time.
    pending: Vec<(usize, Instant)>,
    stats: stats::Stats,
    backoff: Backoff,
    restarts: u64,
    reloads: u64,
    cache: Option<&'static shm::Cache>,
    slots: Option<&'static shm::Slots>,
    flights: Option<&'static shm::Flights>,
    /// Workers to run.
    size: usize,
}

fn describe(status: WaitStatus) -> String {
    match status {
        WaitStatus::Exited(_, code) => format!("exited with status {code}"),
        WaitStatus::Signaled(_, sig, core) => {
            format!(
                "killed by signal {sig}{}",
                if core { " (core dumped)" } else { "" }
            )
        }
        other => format!("{other:?}"),
    }
}

impl<C: Send + Sync + 'static> Supervisor<'_, C> {
    fn spawn(&mut self, slot: usize, worker_main: &impl Fn(&Listener, Arc<C>, &WorkerCtx) -> i32) {
        let stat_slot = self.stats.claim();
        let parent = std::process::id() as i32;
        // SAFETY: the supervisor is single-threaded, so the child is a consistent copy.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => {
                signals::worker_setup(parent);
                let ctx = WorkerCtx {
                    stop: signals::worker_stop_flag(),
                    slot: stat_slot,
                    workers: self.size,
                    counter: self.stats.counter(stat_slot),
                    metrics: self.stats.metrics(),
                };
                let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    worker_main(self.listener, self.cfg.clone(), &ctx)
                }))
                .unwrap_or(70);
                std::process::exit(code);
            }
            Ok(ForkResult::Parent { child }) => {
                self.workers.insert(
                    child.as_raw(),
                    Worker {
                        slot,
                        generation: self.generation,
                        started: Instant::now(),
                    },
                );
                self.stats.assign(stat_slot, child.as_raw());
            }
            Err(e) => {
                self.stats.release(stat_slot);
                log::error!("cannot fork a worker: {e}; retrying in 1 s");
                self.pending
                    .push((slot, Instant::now() + Duration::from_secs(1)));
            }
        }
    }

    fn reap(&mut self, stopping: bool) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(status) => {
                    let Some(pid) = status.pid() else { return };
                    let Some(w) = self.workers.remove(&pid.as_raw()) else {
                        continue;
                    };
                    self.stats.retire(pid.as_raw());
                    if let Some(c) = self.cache {
                        // A worker killed mid-write leaves an entry locked; free it before
                        // its pid can be reused.
                        let n = c.reclaim_dead();
                        if n > 0 {
                            log::warn!("Reclaimed {n} shared-cache entries left by worker {pid}");
                        }
                    }
                    // Likewise an export slot or a tile marked in flight: freed now, not
                    // when another worker next happens to look.
                    if let Some(n) = self.slots.map(|s| s.reclaim_dead()).filter(|n| *n > 0) {
                        log::warn!("Freed {n} export slots held by worker {pid}");
                    }
                    if let Some(f) = self.flights {
                        f.reclaim_dead();
                    }
                    if stopping || w.generation != self.generation {
                        log::info!("Worker {pid} {}", describe(status));
                        continue;
                    }
                    let delay = self.backoff.delay_after_death(Instant::now());
                    log::warn!(
                        "Worker {pid} {} after {:.1} s; {}",
                        describe(status),
                        w.started.elapsed().as_secs_f64(),
                        if delay.is_zero() {
                            "replacing it".to_string()
                        } else {
                            format!(
                                "workers are dying repeatedly, replacing it in {} ms",
                                delay.as_millis()
                            )
                        }
                    );
                    self.restarts += 1;
                    self.pending.push((w.slot, Instant::now() + delay));
                }
            }
        }
    }

    fn signal_generation(&self, sig: Signal, pred: impl Fn(&Worker) -> bool) {
        for (pid, w) in &self.workers {
            if pred(w) {
                let _ = kill(Pid::from_raw(*pid), sig);
            }
        }
    }

    fn log_statistics(&self) {
        if let Some(c) = self.cache {
            let t = c.stats();
            log::info!(
                "Shared cache (tiles and image headers): {} hits, {} misses, {} inserts, {} refused, {} evictions, {} of {} bytes, {} reclaimed entries",
                t.hits, t.misses, t.inserts, t.refused, t.evictions, t.bytes, t.capacity, t.reclaimed
            );
        }
        log::info!(
            "Statistics: {} workers, generation {}, {} restarts, {} reloads, {} accesses in total",
            self.workers.len(),
            self.generation,
            self.restarts,
            self.reloads,
            self.stats.total()
        );
        for (pid, w) in &self.workers {
            log::info!(
                "  worker {pid}: slot {}, generation {}, up {:.0} s, {} requests",
                w.slot,
                w.generation,
                w.started.elapsed().as_secs_f64(),
                self.stats.of(*pid)
            );
        }
    }
}

/// Runs the supervisor until SIGTERM/SIGINT; returns the process exit code.
pub fn run<C: Send + Sync + 'static>(
    listener: Listener,
    opts: Options,
    load_config: impl Fn() -> Result<C, String>,
    worker_main: impl Fn(&Listener, Arc<C>, &WorkerCtx) -> i32,
    on_reload: impl Fn(&C),
) -> i32 {
    let cfg = match load_config() {
        Ok(c) => Arc::new(c),
        Err(e) => {
            log::error!("{e}");
            return 1;
        }
    };
    let events = match signals::SupervisorSignals::install() {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot install signal handlers: {e}");
            return 1;
        }
    };
    let stats = match stats::Stats::new() {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot map the statistics area: {e}");
            return 1;
        }
    };
    let mut s = Supervisor {
        listener: &listener,
        cfg,
        generation: 0,
        workers: BTreeMap::new(),
        pending: Vec::new(),
        stats,
        backoff: Backoff {
            deaths: VecDeque::new(),
        },
        restarts: 0,
        reloads: 0,
        cache: opts.cache,
        slots: opts.slots,
        flights: opts.flights,
        size: opts.workers,
    };
    for slot in 0..opts.workers {
        s.spawn(slot, &worker_main);
    }
    log::info!("Started {} workers; Initialisation Complete.", opts.workers);

    let stop_sig = loop {
        let now = Instant::now();
        let due: Vec<usize> = s
            .pending
            .iter()
            .filter(|(_, t)| *t <= now)
            .map(|(slot, _)| *slot)
            .collect();
        s.pending.retain(|(_, t)| *t > now);
        for slot in due {
            s.spawn(slot, &worker_main);
        }
        let timeout = s
            .pending
            .iter()
            .map(|(_, t)| t.saturating_duration_since(now))
            .min()
            .unwrap_or(Duration::from_secs(1));
        let metrics_fd = opts.metrics.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
        let (fired, metrics_ready) = events.wait_with(timeout, metrics_fd);
        if metrics_ready {
            if let Some(l) = &opts.metrics {
                // Bounded: at most a few queued connections per wake-up.
                for _ in 0..8 {
                    let Ok((conn, _)) = l.accept() else { break };
                    let live = s
                        .workers
                        .values()
                        .filter(|w| w.generation == s.generation)
                        .count();
                    metrics::serve_one(conn, live > 0, || {
                        let mut text = s.stats.metrics().render(
                            s.workers.len(),
                            s.restarts,
                            s.reloads,
                            s.stats.total(),
                        );
                        if let Some(c) = s.cache {
                            text.push_str(&metrics::render_cache(&c.stats()));
                        }
                        if let Some(slots) = s.slots {
                            let waiting = s.stats.metrics().admission_waiting();
                            text.push_str(&metrics::render_admission(&slots.stats(), waiting));
                        }
                        if let Some(f) = s.flights {
                            text.push_str(&metrics::render_flights(&f.stats()));
                        }
                        text
                    });
                }
            }
        }
        if fired.child {
            s.reap(false);
        }
        if let Some(sig) = fired.stop {
            break sig;
        }
        if fired.reload {
            log::info!(
                "Caught SIGHUP signal. Reloading configuration and emptying internal caches"
            );
            match load_config() {
                Ok(c) => {
                    s.cfg = Arc::new(c);
                    s.generation += 1;
                    s.reloads += 1;
                    s.pending.clear();
                    let old = s.generation - 1;
                    for slot in 0..opts.workers {
                        s.spawn(slot, &worker_main);
                    }
                    s.signal_generation(Signal::SIGTERM, |w| w.generation <= old);
                    if let Some(c) = s.cache {
                        c.clear();
                    }
                    on_reload(&s.cfg);
                }
                Err(e) => {
                    log::error!("Reload failed, keeping the running configuration: {e}");
                    s.stats.metrics().record_reload_failure();
                }
            }
        }
        if fired.stats {
            s.log_statistics();
        }
    };

    log::info!(
        "Caught {stop_sig} signal. Terminating after {} accesses",
        s.stats.total()
    );
    s.signal_generation(Signal::SIGTERM, |_| true);
    let deadline = Instant::now() + opts.shutdown_timeout;
    while !s.workers.is_empty() && Instant::now() < deadline {
        events.wait(Duration::from_millis(50));
        s.reap(true);
    }
    if !s.workers.is_empty() {
        log::warn!(
            "{} workers did not finish in time; killing them",
            s.workers.len()
        );
        s.signal_generation(Signal::SIGKILL, |_| true);
        let hard = Instant::now() + Duration::from_secs(2);
        while !s.workers.is_empty() && Instant::now() < hard {
            events.wait(Duration::from_millis(20));
            s.reap(true);
        }
    }
    if let Some(p) = listener.created_path() {
        let _ = std::fs::remove_file(p);
    }
    log::info!("<----------------------------------->");
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_starts_after_a_burst() {
        let mut b = Backoff {
            deaths: VecDeque::new(),
        };
        let t = Instant::now();
        for _ in 0..BURST {
            assert_eq!(b.delay_after_death(t), Duration::ZERO);
        }
        assert_eq!(b.delay_after_death(t), Duration::from_millis(200));
        assert_eq!(b.delay_after_death(t), Duration::from_millis(400));
        for _ in 0..10 {
            b.delay_after_death(t);
        }
        assert_eq!(b.delay_after_death(t), Duration::from_secs(5));
        // Deaths older than the window are forgotten.
        assert_eq!(b.delay_after_death(t + WINDOW * 2), Duration::ZERO);
    }
}
