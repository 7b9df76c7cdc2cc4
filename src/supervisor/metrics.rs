//! Server metrics shared by all workers (atomics in the supervisor's shared mapping)
//! and the supervisor's loopback-only `/health` and `/metrics` (Prometheus text) endpoint.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Protocols requests are counted by.
pub const PROTOCOLS: [&str; 5] = ["iip", "iiif", "deepzoom", "zoomify", "other"];
/// Status classes requests are counted by.
pub const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];
/// Latency histogram bucket bounds, in seconds.
pub const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// The counters, laid out in shared memory (all fields are atomics, zero is valid).
#[repr(C)]
pub struct Metrics {
    requests: [[AtomicU64; 5]; 5],
    latency: [AtomicU64; 13],
    latency_sum_us: AtomicU64,
    image_cache_hits: AtomicU64,
    image_cache_misses: AtomicU64,
    bytes_sent: AtomicU64,
    /// Client connections each worker slot holds now (a dead worker's slot is zeroed).
    connections_open: [AtomicU64; super::SLOTS],
    /// Connections closed because a request, a response or an idle spell overran its
    /// deadline: [request, idle].
    deadline_closes: [AtomicU64; 2],
    /// Connections closed because a worker held `MAX_CONNECTIONS` already.
    connections_shed: AtomicU64,
    /// Requests whose handler panicked (answered 500; the worker went on).
    panics: AtomicU64,
    /// Reads from an image map past the end of a file that shrank while served.
    file_faults: AtomicU64,
    /// Expensive requests each worker slot holds waiting for an admission slot now
    /// (a dead worker's slot is zeroed).
    admission_waiting: [AtomicU64; super::SLOTS],
    /// Reloads (SIGHUP) whose configuration or access policy could not be read; the
    /// running one stayed in force.
    reload_failures: AtomicU64,
}

/// Which deadline closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deadline {
    /// A request not received, or a response not taken, in time.
    Request,
    /// A kept-alive connection silent for too long.
    Idle,
}

fn protocol_index(p: &str) -> usize {
    PROTOCOLS.iter().position(|&x| x == p).unwrap_or(4)
}

impl Metrics {
    /// Counts one answered request.
    pub fn record(&self, protocol: &str, status: u16, micros: u64, bytes: u64) {
        let class = ((status / 100).clamp(1, 5) - 1) as usize;
        self.requests[protocol_index(protocol)][class].fetch_add(1, Ordering::Relaxed);
        let secs = micros as f64 / 1e6;
        let b = BUCKETS
            .iter()
            .position(|&le| secs <= le)
            .unwrap_or(BUCKETS.len());
        self.latency[b].fetch_add(1, Ordering::Relaxed);
        self.latency_sum_us.fetch_add(micros, Ordering::Relaxed);
        self.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Adds image (metadata) cache lookups.
    pub fn record_cache(&self, hits: u64, misses: u64) {
        self.image_cache_hits.fetch_add(hits, Ordering::Relaxed);
        self.image_cache_misses.fetch_add(misses, Ordering::Relaxed);
    }

    /// The number of client connections the worker in `slot` holds.
    pub fn set_connections(&self, slot: usize, n: usize) {
        if let Some(g) = self.connections_open.get(slot) {
            g.store(n as u64, Ordering::Relaxed);
        }
    }

    /// The number of requests the worker in `slot` holds waiting for an admission slot.
    pub fn set_admission_waiting(&self, slot: usize, n: usize) {
        if let Some(g) = self.admission_waiting.get(slot) {
            g.store(n as u64, Ordering::Relaxed);
        }
    }

    /// Requests waiting for an admission slot, in all workers.
    pub fn admission_waiting(&self) -> u64 {
        self.admission_waiting
            .iter()
            .map(|g| g.load(Ordering::Relaxed))
            .sum()
    }

    /// Client connections held by all workers, as they last published them.
    pub fn connections_total(&self) -> usize {
        self.connections_open
            .iter()
            .map(|g| g.load(Ordering::Relaxed) as usize)
            .sum()
    }

    /// Counts a connection closed by one of its deadlines.
    pub fn record_deadline(&self, which: Deadline) {
        self.deadline_closes[which as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request whose handler panicked.
    pub fn record_panic(&self) {
        self.panics.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts reads that found their image file shorter than its map.
    pub fn record_file_faults(&self, n: u64) {
        self.file_faults.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a reload that kept the running configuration because the new one failed.
    pub fn record_reload_failure(&self) {
        self.reload_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection closed to stay within `MAX_CONNECTIONS`.
    pub fn record_shed(&self) {
        self.connections_shed.fetch_add(1, Ordering::Relaxed);
    }

    /// Prometheus text exposition of the counters plus the supervisor's own figures.
    pub fn render(&self, workers: usize, restarts: u64, reloads: u64, accesses: u64) -> String {
        let mut s = String::new();
        s.push_str(
            "# HELP tessera_requests_total Requests answered, by protocol and status class.\n",
        );
        s.push_str("# TYPE tessera_requests_total counter\n");
        for (p, name) in PROTOCOLS.iter().enumerate() {
            for (c, class) in CLASSES.iter().enumerate() {
                let v = self.requests[p][c].load(Ordering::Relaxed);
                s.push_str(&format!(
                    "tessera_requests_total{{protocol=\"{name}\",status=\"{class}\"}} {v}\n"
                ));
            }
        }
        s.push_str("# HELP tessera_request_duration_seconds Time to answer a request.\n");
        s.push_str("# TYPE tessera_request_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (i, le) in BUCKETS.iter().enumerate() {
            cumulative += self.latency[i].load(Ordering::Relaxed);
            s.push_str(&format!(
                "tessera_request_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}\n"
            ));
        }
        cumulative += self.latency[BUCKETS.len()].load(Ordering::Relaxed);
        s.push_str(&format!(
            "tessera_request_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}\n"
        ));
        let sum = self.latency_sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        s.push_str(&format!("tessera_request_duration_seconds_sum {sum}\n"));
        s.push_str(&format!(
            "tessera_request_duration_seconds_count {cumulative}\n"
        ));
        let gauge = |s: &mut String, name: &str, help: &str, kind: &str, v: u64| {
            s.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
            ));
        };
        gauge(
            &mut s,
            "tessera_response_bytes_total",
            "Body bytes sent.",
            "counter",
            self.bytes_sent.load(Ordering::Relaxed),
        );
        gauge(
            &mut s,
            "tessera_image_cache_hits_total",
            "Image header lookups answered from the workers' caches.",
            "counter",
            self.image_cache_hits.load(Ordering::Relaxed),
        );
        gauge(
            &mut s,
            "tessera_image_cache_misses_total",
            "Image headers read from files.",
            "counter",
            self.image_cache_misses.load(Ordering::Relaxed),
        );
        gauge(
            &mut s,
            "tessera_connections_open",
            "Client connections held by the workers.",
            "gauge",
            self.connections_open
                .iter()
                .map(|g| g.load(Ordering::Relaxed))
                .sum(),
        );
        s.push_str(
            "# HELP tessera_connections_deadline_closed_total Connections closed at a deadline (REQUEST_TIMEOUT, IDLE_TIMEOUT).\n",
        );
        s.push_str("# TYPE tessera_connections_deadline_closed_total counter\n");
        for (i, which) in ["request", "idle"].iter().enumerate() {
            let v = self.deadline_closes[i].load(Ordering::Relaxed);
            s.push_str(&format!(
                "tessera_connections_deadline_closed_total{{deadline=\"{which}\"}} {v}\n"
            ));
        }
        gauge(
            &mut s,
            "tessera_request_panics_total",
            "Requests whose handler panicked (answered 500; the worker went on).",
            "counter",
            self.panics.load(Ordering::Relaxed),
        );
        gauge(
            &mut s,
            "tessera_image_file_faults_total",
            "Reads past the end of an image file that shrank while served (answered with an error).",
            "counter",
            self.file_faults.load(Ordering::Relaxed),
        );
        gauge(
            &mut s,
            "tessera_connections_shed_total",
            "Connections closed because a worker held MAX_CONNECTIONS.",
            "counter",
            self.connections_shed.load(Ordering::Relaxed),
        );
        gauge(
            &mut s,
            "tessera_workers",
            "Worker processes running.",
            "gauge",
            workers as u64,
        );
        gauge(
            &mut s,
            "tessera_worker_restarts_total",
            "Workers replaced after dying.",
            "counter",
            restarts,
        );
        gauge(
            &mut s,
            "tessera_reloads_total",
            "Graceful reloads (SIGHUP).",
            "counter",
            reloads,
        );
        gauge(
            &mut s,
            "tessera_reload_failures_total",
            "Reloads (SIGHUP) refused because the configuration or access policy could not be read; the running one stayed.",
            "counter",
            self.reload_failures.load(Ordering::Relaxed),
        );
        gauge(
            &mut s,
            "tessera_accesses_total",
            "Requests counted by the workers.",
            "counter",
            accesses,
        );
        s
    }
}

/// Prometheus lines for the shared cache (tiles and image headers; the metric names
/// keep "tile_cache").
pub fn render_cache(t: &shm::Stats) -> String {
    lines(&[
        (
            "tessera_tile_cache_hits_total",
            "Tiles and image headers answered from the shared cache.",
            "counter",
            t.hits,
        ),
        (
            "tessera_tile_cache_misses_total",
            "Shared-cache lookups that missed.",
            "counter",
            t.misses,
        ),
        (
            "tessera_tile_cache_inserts_total",
            "Tiles and image headers stored.",
            "counter",
            t.inserts,
        ),
        (
            "tessera_tile_cache_evictions_total",
            "Entries evicted to make room.",
            "counter",
            t.evictions,
        ),
        (
            "tessera_tile_cache_refused_total",
            "New entries not stored: the cache was full and their key had not missed recently.",
            "counter",
            t.refused,
        ),
        (
            "tessera_tile_cache_bytes",
            "Bytes held (tiles and image headers).",
            "gauge",
            t.bytes,
        ),
        (
            "tessera_tile_cache_capacity_bytes",
            "Bytes the shared cache can hold.",
            "gauge",
            t.capacity,
        ),
        (
            "tessera_tile_cache_reclaimed_total",
            "Entries freed after a worker died writing them.",
            "counter",
            t.reclaimed,
        ),
    ])
}

/// Prometheus lines in the shared format, from `(name, help, kind, value)`.
fn lines(items: &[(&str, &str, &str, u64)]) -> String {
    let mut s = String::new();
    for (name, help, kind, v) in items {
        s.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
        ));
    }
    s
}

/// Prometheus lines for admission control of expensive requests.
pub fn render_admission(t: &shm::SlotStats, waiting: u64) -> String {
    lines(&[
        (
            "tessera_expensive_slots_in_use",
            "Expensive requests (large exports) running now (MAX_EXPENSIVE_WORKERS).",
            "gauge",
            t.in_use,
        ),
        (
            "tessera_expensive_waiting",
            "Expensive requests waiting for a slot now (EXPENSIVE_WAIT).",
            "gauge",
            waiting,
        ),
        (
            "tessera_expensive_admitted_total",
            "Expensive requests given a slot.",
            "counter",
            t.admitted,
        ),
        (
            "tessera_expensive_waited_total",
            "Expensive requests that had to wait for a slot.",
            "counter",
            t.waited,
        ),
        (
            "tessera_expensive_rejected_total",
            "Expensive requests answered 503 for want of a slot.",
            "counter",
            t.rejected,
        ),
        (
            "tessera_expensive_slots_reclaimed_total",
            "Slots freed after the process holding them died.",
            "counter",
            t.reclaimed,
        ),
        (
            "tessera_expensive_in_child_total",
            "Expensive requests rendered in a child process beside their worker (EXPENSIVE_IN_CHILD).",
            "counter",
            t.handed,
        ),
    ])
}

/// Prometheus lines for single flight of tile misses.
pub fn render_flights(t: &shm::FlightStats) -> String {
    lines(&[
        (
            "tessera_tiles_decoded_total",
            "Cacheable tiles decoded after a shared-cache miss.",
            "counter",
            t.decoded,
        ),
        (
            "tessera_single_flight_waits_total",
            "Tile misses that waited for another worker decoding the same tile.",
            "counter",
            t.waits,
        ),
        (
            "tessera_single_flight_timeouts_total",
            "Such waits that reached SINGLE_FLIGHT_WAIT (the tile was then decoded again).",
            "counter",
            t.timeouts,
        ),
        (
            "tessera_single_flight_orphaned_total",
            "Tiles in flight whose decoding worker died.",
            "counter",
            t.orphaned,
        ),
    ])
}

/// Binds the metrics endpoint; only loopback addresses are accepted.
pub fn bind(addr: &str) -> Result<TcpListener, String> {
    let sa: SocketAddr = addr
        .parse()
        .map_err(|_| format!("--metrics takes an IP:PORT address, not '{addr}'"))?;
    if !sa.ip().is_loopback() {
        return Err(format!(
            "--metrics must listen on a loopback address (127.0.0.1 or [::1]), not {}",
            sa.ip()
        ));
    }
    let l =
        TcpListener::bind(sa).map_err(|e| format!("cannot listen on {addr} for metrics: {e}"))?;
    l.set_nonblocking(true).map_err(|e| e.to_string())?;
    Ok(l)
}

/// Answers one connection on the metrics endpoint (bounded in time and size).
pub fn serve_one(mut s: TcpStream, health_ok: bool, metrics: impl FnOnce() -> String) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
    let mut buf = [0u8; 4096];
    let mut n = 0;
    let deadline = Instant::now() + Duration::from_millis(500);
    while n < buf.len() && !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf[n..]) {
            // The supervisor's signals (SIGCHLD when a worker dies) interrupt the read;
            // giving up there answered a half-read request and reset the connection.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted && Instant::now() < deadline => {}
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    let head = String::from_utf8_lossy(&buf[..n]);
    let path = head.split(' ').nth(1).unwrap_or("");
    let (status, ctype, body) = match path {
        "/health" if health_ok => ("200 OK", "text/plain", "ok\n".to_owned()),
        "/health" => (
            "503 Service Unavailable",
            "text/plain",
            "no workers\n".to_owned(),
        ),
        "/metrics" => ("200 OK", "text/plain; version=0.0.4", metrics()),
        _ => (
            "404 Not Found",
            "text/plain",
            "try /health or /metrics\n".to_owned(),
        ),
    };
    let _ = write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zeroed() -> Box<Metrics> {
        // SAFETY: every field is an atomic integer, for which all-zero bytes are valid.
        unsafe { Box::new(std::mem::zeroed()) }
    }

    #[test]
    fn renders_counters_and_histogram() {
        let m = zeroed();
        m.record("iip", 200, 300, 1000);
        m.record("iiif", 404, 20_000, 10);
        m.record("nonsense", 503, 9_000_000, 0);
        m.record_cache(3, 1);
        m.record_reload_failure();
        let t = m.render(2, 1, 4, 3);
        assert!(t.contains("tessera_requests_total{protocol=\"iip\",status=\"2xx\"} 1\n"));
        assert!(t.contains("tessera_requests_total{protocol=\"iiif\",status=\"4xx\"} 1\n"));
        assert!(t.contains("tessera_requests_total{protocol=\"other\",status=\"5xx\"} 1\n"));
        assert!(t.contains("tessera_request_duration_seconds_bucket{le=\"0.0005\"} 1\n"));
        assert!(t.contains("tessera_request_duration_seconds_bucket{le=\"0.025\"} 2\n"));
        assert!(t.contains("tessera_request_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(t.contains("tessera_image_cache_hits_total 3\n"));
        assert!(t.contains("tessera_worker_restarts_total 1\n"));
        assert!(t.contains("tessera_reloads_total 4\n"));
        assert!(t.contains("tessera_reload_failures_total 1\n"));
        assert!(t.contains("tessera_response_bytes_total 1010\n"));
    }

    #[test]
    fn renders_admission_and_single_flight_figures() {
        let a = render_admission(
            &shm::SlotStats {
                in_use: 1,
                admitted: 7,
                rejected: 3,
                waited: 4,
                reclaimed: 2,
                handed: 6,
            },
            5,
        );
        for line in [
            "tessera_expensive_slots_in_use 1\n",
            "tessera_expensive_waiting 5\n",
            "tessera_expensive_admitted_total 7\n",
            "tessera_expensive_waited_total 4\n",
            "tessera_expensive_rejected_total 3\n",
            "tessera_expensive_slots_reclaimed_total 2\n",
            "tessera_expensive_in_child_total 6\n",
            "# TYPE tessera_expensive_waiting gauge\n",
        ] {
            assert!(a.contains(line), "{line} missing from\n{a}");
        }
        let f = render_flights(&shm::FlightStats {
            decoded: 9,
            waits: 6,
            timeouts: 1,
            orphaned: 2,
        });
        for line in [
            "tessera_tiles_decoded_total 9\n",
            "tessera_single_flight_waits_total 6\n",
            "tessera_single_flight_timeouts_total 1\n",
            "tessera_single_flight_orphaned_total 2\n",
        ] {
            assert!(f.contains(line), "{line} missing from\n{f}");
        }
    }

    #[test]
    fn only_loopback_addresses() {
        assert!(bind("0.0.0.0:0").is_err());
        assert!(bind("192.168.1.1:9100").is_err());
        assert!(bind("localhost:9100").is_err());
        assert!(bind("127.0.0.1:0").is_ok());
    }
}
