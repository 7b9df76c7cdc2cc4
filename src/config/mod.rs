//! Typed server configuration, read once from iipsrv's environment variables.
//!
//! Numbers are parsed like C `atoi`/`atof` (leading blanks, optional sign, digits,
//! trailing junk ignored, no digits → 0) and booleans are `atoi(v) != 0`, because
//! existing deployments rely on exactly that (`ALLOW_UPSCALING=true` is *false*).
//! An optional environment file (`--config`, `KEY=VALUE` lines as systemd's
//! `EnvironmentFile=` reads them) overrides the process environment and is read
//! again on every reload.
//!
//! Here are the settings and how each is read and bounded; the syntaxes of the
//! compound values and of the environment file are in `parse`.

mod parse;

pub use crate::cnum::{atof, atoi};
use parse::atob;
pub use parse::{parse_env_file, parse_trusted_proxies, parse_uri_map};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Where log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    File(PathBuf),
    Syslog,
    Stderr,
}

/// A protocol that `URI_MAP` can route a path prefix to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MappedProtocol {
    Iip,
    Iiif,
    DeepZoom,
    Zoomify,
}

/// One `prefix=>protocol` entry of `URI_MAP`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriMap {
    pub prefix: String,
    pub protocol: MappedProtocol,
}

/// Every setting of the server. Field docs name the environment variable.
#[derive(Debug, Clone)]
pub struct Config {
    /// `LOGFILE` (a path, or `syslog`; `-` or `stderr` for standard error).
    pub log_target: LogTarget,
    /// `VERBOSITY`, 0..=6.
    pub verbosity: u32,
    /// `MAX_IMAGE_CACHE_SIZE` in bytes (iipsrv MB of 1 024 000 bytes).
    pub tile_cache_bytes: u64,
    /// `MAX_IMAGE_METADATA_CACHE_SIZE` / `MAX_METADATA_CACHE_SIZE`: entries; `None` = unlimited.
    pub metadata_cache_entries: Option<usize>,
    /// `FILESYSTEM_PREFIX`.
    pub filesystem_prefix: String,
    /// `FILESYSTEM_SUFFIX`.
    pub filesystem_suffix: String,
    /// `FILENAME_PATTERN`.
    pub filename_pattern: String,
    /// `JPEG_QUALITY`, 1..=100.
    pub jpeg_quality: i32,
    /// `PNG_QUALITY`, 0..=9.
    pub png_quality: i32,
    /// `WEBP_QUALITY`, -1..=100.
    pub webp_quality: i32,
    /// `AVIF_QUALITY`, -1..=100.
    pub avif_quality: i32,
    /// `AVIF_CODEC`, 0..=3.
    pub avif_codec: i32,
    /// `TIFF_COMPRESSION`, 0..=5.
    pub tiff_compression: i32,
    /// `TIFF_QUALITY`, clamped per codec.
    pub tiff_quality: i32,
    /// `MAX_CVT`: `None` = unlimited.
    pub max_cvt: Option<u32>,
    /// `ALLOW_UPSCALING`.
    pub allow_upscaling: bool,
    /// `MAX_LAYERS`.
    pub max_layers: i32,
    /// `INTERPOLATION`: 0 nearest, 1 bilinear, 2 (default) area average for reductions.
    pub interpolation: i32,
    /// `WATERMARK`.
    pub watermark: Option<PathBuf>,
    /// `WATERMARK_PROBABILITY`, 0..=1.
    pub watermark_probability: f64,
    /// `WATERMARK_OPACITY`, 0..=1.
    pub watermark_opacity: f64,
    /// `MEMCACHED_SERVERS`: empty = no memcached.
    pub memcached_servers: Vec<String>,
    /// `MEMCACHED_TIMEOUT`, seconds.
    pub memcached_timeout: u32,
    /// `MEMCACHED_IO_TIMEOUT`: the longest a connect, read or write to memcached may take.
    pub memcached_io_timeout: std::time::Duration,
    /// `CORS`: origin for the CORS header block.
    pub cors: Option<String>,
    /// `BASE_URL`.
    pub base_url: Option<String>,
    /// `CACHE_CONTROL`.
    pub cache_control: String,
    /// `URI_MAP`: several `prefix=>protocol` entries, separated by whitespace or `,`.
    pub uri_map: Vec<UriMap>,
    /// `MAX_ICC` (bytes; -1 always; 0 never), with `EMBED_ICC` as legacy alias.
    pub max_icc: i64,
    /// `CODEC_PASSTHROUGH`.
    pub codec_passthrough: bool,
    /// `KAKADU_READMODE`, accepted for compatibility.
    pub kakadu_readmode: u32,
    /// `IIIF_VERSION`: 2 or 3.
    pub iiif_version: u32,
    /// `IIIF_DELIMITER`.
    pub iiif_delimiter: Option<String>,
    /// `IIIF_EXTRA_INFO`.
    pub iiif_extra_info: Option<String>,
    /// `IIIF_EXTENSIONS`.
    pub iiif_extensions: bool,
    /// `IIIF_ACCEPT_FULL`: answer the size `full` in version 3 too (as iipsrv does).
    pub iiif_accept_full: bool,
    /// `COPYRIGHT`.
    pub copyright: Option<String>,
    /// `OMP_NUM_THREADS`, accepted for compatibility: workers run each request on one
    /// thread.
    pub threads: usize,
    /// `REQUEST_TIMEOUT`, seconds: a client has this long from its first byte to send a
    /// whole request, and a response this long to drain.
    pub request_timeout: std::time::Duration,
    /// `MAX_RENDER_TIME`, seconds: a request still rendering after this long ends with
    /// 503 (`None`: unlimited).
    pub max_render_time: Option<std::time::Duration>,
    /// `MAX_REQUEST_MEMORY`, bytes one request's pixel buffers may hold.
    pub max_request_memory: u64,
    /// `IDLE_TIMEOUT`, seconds: a kept-alive connection silent this long is closed.
    pub idle_timeout: std::time::Duration,
    /// `MAX_CONNECTIONS`: client connections one worker holds at once.
    pub max_connections: usize,
    /// `TRUSTED_PROXIES`: peers whose `X-Forwarded-*` / `Forwarded` headers are believed.
    pub trusted_proxies: Vec<TrustedProxy>,
    /// `TRUSTED_PROXIES` entries that could not be read (reported at start-up).
    pub trusted_proxies_ignored: Vec<String>,
    /// `ACCESS_POLICY`: the access policy file; unset = every image public.
    pub access_policy: Option<PathBuf>,
    /// The policy read from `access_policy` by [`Config::load`].
    pub access: Option<std::sync::Arc<crate::policy::Policy>>,
    /// `EXPENSIVE_PIXELS`: a region export reading or writing more pixels than this is
    /// expensive and needs an admission slot.
    pub expensive_pixels: u64,
    /// `MAX_EXPENSIVE_WORKERS`: workers that may run expensive requests at once; `None`
    /// (the default, -1) is half the workers, at least one; 0 turns admission off.
    pub max_expensive_workers: Option<usize>,
    /// `EXPENSIVE_WAIT`, milliseconds an expensive request waits for a slot before it
    /// is answered 503 (0: at once).
    pub expensive_wait: std::time::Duration,
    /// `EXPENSIVE_IN_CHILD`: an admitted expensive request renders in a child process
    /// at idle CPU priority while its worker goes on serving (default on).
    pub expensive_in_child: bool,
    /// `SINGLE_FLIGHT_WAIT`, milliseconds a tile miss waits for another worker decoding
    /// the same tile (0: single flight off).
    pub single_flight_wait: std::time::Duration,
}

/// Default `EXPENSIVE_PIXELS`: 2048×2048, sixty-four 256-pixel tiles' worth.
pub const EXPENSIVE_PIXELS: u64 = 2048 * 2048;

/// One entry of `TRUSTED_PROXIES`: an address, a network, or local-socket peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustedProxy {
    /// `addr/prefix` (a single address is a full-length prefix).
    Net(std::net::IpAddr, u8),
    /// `unix`: requests that carry no `REMOTE_ADDR` (a web server on a local socket
    /// that does not pass one).
    Unix,
}

impl TrustedProxy {
    /// Whether a request with this `REMOTE_ADDR` (none: a local socket) comes from here.
    pub fn matches(&self, remote: Option<&str>) -> bool {
        use std::net::IpAddr;
        let (net, bits) = match self {
            TrustedProxy::Unix => return remote.is_none_or(str::is_empty),
            TrustedProxy::Net(n, b) => (n, *b as u32),
        };
        let Some(ip) = remote.and_then(|r| r.parse::<IpAddr>().ok()) else {
            return false;
        };
        // An IPv4 peer on a dual-stack socket arrives as ::ffff:a.b.c.d.
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
                u32::from(*n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                u128::from(*n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// A configuration problem the operator must fix before the server can start.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration file {path}, line {line}: expected KEY=VALUE")]
    Syntax { path: PathBuf, line: usize },
    #[error(transparent)]
    Access(#[from] crate::policy::PolicyError),
}

impl Config {
    /// Reads the process environment, overlaid with `env_file` when given.
    pub fn load(env_file: Option<&Path>) -> Result<Config, ConfigError> {
        let mut vars: HashMap<String, String> = std::env::vars().collect();
        if let Some(p) = env_file {
            vars.extend(parse_env_file(p)?);
        }
        let mut cfg = Config::from_vars(|k| vars.get(k).cloned());
        // A policy that cannot be read stops the start (or the reload): serving its
        // images as public instead would open what it protects.
        if let Some(p) = &cfg.access_policy {
            cfg.access = Some(std::sync::Arc::new(crate::policy::Policy::load(p)?));
        }
        Ok(cfg)
    }

    /// Builds the configuration from a variable lookup (tests pass a map).
    pub fn from_vars(get: impl Fn(&str) -> Option<String>) -> Config {
        let int = |k: &str, d: i64| get(k).map(|v| atoi(&v)).unwrap_or(d);
        let float = |k: &str, d: f64| get(k).map(|v| atof(&v)).unwrap_or(d);
        let string = |k: &str| get(k).filter(|v| !v.is_empty());

        let log_target = match get("LOGFILE").as_deref() {
            None | Some("") => LogTarget::File(PathBuf::from("/tmp/iipsrv.log")),
            Some("syslog") => LogTarget::Syslog,
            Some("-") | Some("stderr") => LogTarget::Stderr,
            Some(p) => LogTarget::File(PathBuf::from(p)),
        };
        let metadata_raw = get("MAX_IMAGE_METADATA_CACHE_SIZE")
            .or_else(|| get("MAX_METADATA_CACHE_SIZE"))
            .map(|v| atoi(&v))
            .unwrap_or(1000);
        let max_cvt = match int("MAX_CVT", 5000) {
            0 => Some(5000),
            -1 => None,
            v if v < -1 => Some(1),
            v => Some(v.min(u32::MAX as i64) as u32),
        };
        let tiff_compression = match int("TIFF_COMPRESSION", 2) {
            v @ 0..=5 => v as i32,
            _ => 0,
        };
        let mut tiff_quality = int("TIFF_QUALITY", 1).clamp(0, 100) as i32;
        match tiff_compression {
            2 => tiff_quality = tiff_quality.min(9),
            5 => tiff_quality = tiff_quality.min(19),
            _ => {}
        }
        let max_icc = match (get("MAX_ICC"), get("EMBED_ICC")) {
            (Some(v), _) => atoi(&v),
            (None, Some(e)) if atoi(&e) == 0 => 0,
            _ => 65536,
        };
        let iiif_version = match int("IIIF_VERSION", 3) {
            v if v < 1 => 3,
            2 => 2,
            _ => 3,
        };
        let avif_codec = match int("AVIF_CODEC", 0) {
            v @ 0..=3 => v as i32,
            _ => 0,
        };
        let memcached_servers = get("MEMCACHED_SERVERS")
            .unwrap_or_else(|| "localhost".into())
            .split(',')
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        let threads = get("OMP_NUM_THREADS")
            .map(|v| atoi(&v).max(1) as usize)
            .unwrap_or(1);

        let (trusted_proxies, trusted_proxies_ignored) =
            parse_trusted_proxies(&get("TRUSTED_PROXIES").unwrap_or_default());

        Config {
            log_target,
            verbosity: int("VERBOSITY", 1).clamp(0, 6) as u32,
            tile_cache_bytes: shm::budget_bytes(float("MAX_IMAGE_CACHE_SIZE", 10.0)),
            metadata_cache_entries: if metadata_raw < 0 {
                None
            } else {
                Some(metadata_raw as usize)
            },
            filesystem_prefix: get("FILESYSTEM_PREFIX").unwrap_or_default(),
            filesystem_suffix: get("FILESYSTEM_SUFFIX").unwrap_or_default(),
            filename_pattern: get("FILENAME_PATTERN").unwrap_or_else(|| "_pyr_".into()),
            jpeg_quality: int("JPEG_QUALITY", 75).clamp(1, 100) as i32,
            png_quality: int("PNG_QUALITY", 1).clamp(0, 9) as i32,
            webp_quality: int("WEBP_QUALITY", 50).clamp(-1, 100) as i32,
            avif_quality: int("AVIF_QUALITY", 50).clamp(-1, 100) as i32,
            avif_codec,
            tiff_compression,
            tiff_quality,
            max_cvt,
            allow_upscaling: get("ALLOW_UPSCALING").map(|v| atob(&v)).unwrap_or(true),
            max_layers: int("MAX_LAYERS", 0).clamp(i32::MIN as i64, i32::MAX as i64) as i32,
            interpolation: int("INTERPOLATION", 2).clamp(0, 2) as i32,
            watermark: string("WATERMARK").map(PathBuf::from),
            watermark_probability: float("WATERMARK_PROBABILITY", 1.0).clamp(0.0, 1.0),
            watermark_opacity: float("WATERMARK_OPACITY", 1.0).clamp(0.0, 1.0),
            memcached_servers,
            memcached_timeout: int("MEMCACHED_TIMEOUT", 86400).clamp(0, u32::MAX as i64) as u32,
            memcached_io_timeout: std::time::Duration::from_millis(
                match int("MEMCACHED_IO_TIMEOUT", 100) {
                    v if v < 1 => 100,
                    v => v.min(60_000) as u64,
                },
            ),
            cors: string("CORS"),
            base_url: string("BASE_URL"),
            cache_control: get("CACHE_CONTROL")
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| "max-age=86400".into()),
            uri_map: get("URI_MAP")
                .map(|v| parse_uri_map(&v))
                .unwrap_or_default(),
            max_icc,
            codec_passthrough: get("CODEC_PASSTHROUGH").map(|v| atob(&v)).unwrap_or(true),
            kakadu_readmode: int("KAKADU_READMODE", 0).clamp(0, 2) as u32,
            iiif_version,
            iiif_delimiter: string("IIIF_DELIMITER"),
            iiif_extra_info: string("IIIF_EXTRA_INFO"),
            iiif_extensions: get("IIIF_EXTENSIONS").map(|v| atob(&v)).unwrap_or(false),
            iiif_accept_full: get("IIIF_ACCEPT_FULL").map(|v| atob(&v)).unwrap_or(true),
            copyright: string("COPYRIGHT"),
            threads,
            request_timeout: std::time::Duration::from_secs(
                int("REQUEST_TIMEOUT", 10).clamp(1, 3600) as u64,
            ),
            max_render_time: Some(float("MAX_RENDER_TIME", 30.0))
                .filter(|s| *s > 0.0)
                .map(|s| std::time::Duration::from_secs_f64(s.min(86400.0))),
            max_request_memory: (float("MAX_REQUEST_MEMORY", 256.0).clamp(16.0, 1048576.0)
                * 1048576.0) as u64,
            idle_timeout: std::time::Duration::from_secs(
                int("IDLE_TIMEOUT", 60).clamp(1, 86400) as u64
            ),
            max_connections: int("MAX_CONNECTIONS", 1024).clamp(1, 1 << 20) as usize,
            trusted_proxies,
            trusted_proxies_ignored,
            access_policy: string("ACCESS_POLICY").map(PathBuf::from),
            access: None,
            expensive_pixels: int("EXPENSIVE_PIXELS", EXPENSIVE_PIXELS as i64).max(1) as u64,
            max_expensive_workers: match int("MAX_EXPENSIVE_WORKERS", -1) {
                v if v < 0 => None,
                v => Some(v.min(shm::MAX_SLOTS as i64) as usize),
            },
            expensive_wait: std::time::Duration::from_millis(
                int("EXPENSIVE_WAIT", 1000).clamp(0, 60_000) as u64,
            ),
            expensive_in_child: int("EXPENSIVE_IN_CHILD", 1) != 0,
            single_flight_wait: std::time::Duration::from_millis(
                int("SINGLE_FLIGHT_WAIT", 2000).clamp(0, 60_000) as u64,
            ),
        }
    }

    /// Workers that may run expensive requests at once, out of `workers`: 0 when
    /// admission is off.
    pub fn expensive_limit(&self, workers: usize) -> usize {
        self.max_expensive_workers
            .unwrap_or((workers / 2).max(1))
            .min(shm::MAX_SLOTS)
    }

    /// One line per setting, for the start-up log.
    pub fn summary(&self) -> Vec<String> {
        let mut v = vec![
            format!("Verbosity level set to {}", self.verbosity),
            format!(
                "Setting maximum image tile data cache size to {}MB",
                self.tile_cache_bytes as f64 / shm::IIPSRV_MB as f64
            ),
            format!(
                "Setting maximum image metadata cache size to {}",
                self.metadata_cache_entries
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "unlimited".into())
            ),
            format!("Setting filesystem prefix to '{}'", self.filesystem_prefix),
            format!("Setting filesystem suffix to '{}'", self.filesystem_suffix),
            format!("Setting default JPEG quality to {}", self.jpeg_quality),
            format!(
                "Setting default PNG compression level to {}",
                self.png_quality
            ),
            format!(
                "Setting maximum CVT size to {}",
                self.max_cvt
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "unlimited".into())
            ),
            format!(
                "Setting HTTP Cache-Control header to '{}'",
                self.cache_control
            ),
            format!("Setting codec pass-through to {}", self.codec_passthrough),
            format!(
                "Setting default IIIF Image API version to {}",
                self.iiif_version
            ),
        ];
        if let Some(p) = &self.access_policy {
            let rules = self.access.as_ref().map_or(0, |a| a.rules.len());
            v.push(format!(
                "Setting access policy to '{}' ({rules} rules)",
                p.display()
            ));
        }
        v.push(format!(
            "Setting request budgets: {} of rendering, {} MB of pixel buffers",
            self.max_render_time
                .map(|d| format!("{} s", d.as_secs_f64()))
                .unwrap_or_else(|| "unlimited time".into()),
            self.max_request_memory >> 20
        ));
        v.push(format!(
            "Setting connection limits: request timeout {} s, idle timeout {} s, {} connections per worker",
            self.request_timeout.as_secs(),
            self.idle_timeout.as_secs(),
            self.max_connections
        ));
        v.push(format!(
            "Setting admission of expensive requests (over {} pixels): {}, waiting up to {} ms, rendered {}; single flight for tile misses: {}",
            self.expensive_pixels,
            match self.max_expensive_workers {
                None => "half the workers at once".to_owned(),
                Some(0) => "off".to_owned(),
                Some(n) => format!("{n} workers at once"),
            },
            self.expensive_wait.as_millis(),
            if self.expensive_in_child {
                "in a child process"
            } else {
                "in the worker"
            },
            if self.single_flight_wait.is_zero() {
                "off".to_owned()
            } else {
                format!("waiting up to {} ms", self.single_flight_wait.as_millis())
            }
        ));
        if !self.trusted_proxies.is_empty() {
            let list: Vec<String> = self
                .trusted_proxies
                .iter()
                .map(|t| match t {
                    TrustedProxy::Unix => "unix".to_owned(),
                    TrustedProxy::Net(a, b) => format!("{a}/{b}"),
                })
                .collect();
            v.push(format!(
                "Trusting forwarded headers from {}",
                list.join(",")
            ));
        }
        for e in &self.trusted_proxies_ignored {
            v.push(format!(
                "Ignoring TRUSTED_PROXIES entry '{e}': not an address, a network or 'unix'"
            ));
        }
        if let Some(c) = &self.cors {
            v.push(format!("Setting Cross Origin Resource Sharing to '{c}'"));
        }
        for m in &self.uri_map {
            v.push(format!(
                "Setting URI mapping '{}' => {:?}",
                m.prefix, m.protocol
            ));
        }
        if !self.memcached_servers.is_empty() {
            v.push(format!(
                "Memcached servers configured: {} (responses kept for {} s)",
                self.memcached_servers.join(","),
                self.memcached_timeout
            ));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Config {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_vars(|k| m.get(k).cloned())
    }

    #[test]
    fn admission_and_single_flight_settings() {
        let d = cfg(&[]);
        assert_eq!(d.expensive_pixels, EXPENSIVE_PIXELS);
        assert_eq!(
            (
                d.expensive_limit(1),
                d.expensive_limit(2),
                d.expensive_limit(5)
            ),
            (1, 1, 2)
        );
        assert_eq!(d.expensive_wait.as_millis(), 1000);
        assert_eq!(d.single_flight_wait.as_millis(), 2000);
        let c = cfg(&[
            ("EXPENSIVE_PIXELS", "0"),
            ("MAX_EXPENSIVE_WORKERS", "0"),
            ("EXPENSIVE_WAIT", "-5"),
            ("SINGLE_FLIGHT_WAIT", "999999"),
        ]);
        assert_eq!(c.expensive_pixels, 1);
        assert_eq!(c.expensive_limit(8), 0, "0 turns admission off");
        assert!(c.expensive_wait.is_zero());
        assert_eq!(c.single_flight_wait.as_millis(), 60_000);
        let three = cfg(&[("MAX_EXPENSIVE_WORKERS", "3")]);
        assert_eq!(three.expensive_limit(2), 3);
        let huge = cfg(&[("MAX_EXPENSIVE_WORKERS", "100000")]);
        assert_eq!(huge.expensive_limit(2), shm::MAX_SLOTS);
    }

    #[test]
    fn connection_settings() {
        let d = cfg(&[]);
        assert_eq!(
            (
                d.request_timeout.as_secs(),
                d.idle_timeout.as_secs(),
                d.max_connections
            ),
            (10, 60, 1024)
        );
        assert!(d.trusted_proxies.is_empty());
        let c = cfg(&[
            ("REQUEST_TIMEOUT", "3"),
            ("IDLE_TIMEOUT", "0"),
            ("MAX_CONNECTIONS", "16"),
            (
                "TRUSTED_PROXIES",
                "10.0.0.0/8, 192.168.1.7 ::1 unix bogus 1.2.3.4/40",
            ),
        ]);
        assert_eq!(
            (
                c.request_timeout.as_secs(),
                c.idle_timeout.as_secs(),
                c.max_connections
            ),
            (3, 1, 16)
        );
        assert_eq!(c.trusted_proxies.len(), 4);
        assert_eq!(c.trusted_proxies_ignored, ["bogus", "1.2.3.4/40"]);
        let trusted = |r: Option<&str>| c.trusted_proxies.iter().any(|t| t.matches(r));
        assert!(trusted(Some("10.200.3.4")));
        assert!(trusted(Some("::ffff:10.1.1.1")));
        assert!(trusted(Some("192.168.1.7")));
        assert!(!trusted(Some("192.168.1.8")));
        assert!(trusted(Some("::1")));
        assert!(!trusted(Some("::2")));
        assert!(!trusted(Some("11.0.0.1")));
        assert!(trusted(None), "unix: no REMOTE_ADDR");
        assert!(!cfg(&[("TRUSTED_PROXIES", "127.0.0.1")]).trusted_proxies[0].matches(None));
    }

    #[test]
    fn max_cvt_parsing_f27() {
        assert_eq!(cfg(&[]).max_cvt, Some(5000));
        assert_eq!(cfg(&[("MAX_CVT", "0")]).max_cvt, Some(5000));
        assert_eq!(cfg(&[("MAX_CVT", "-1")]).max_cvt, None);
        assert_eq!(cfg(&[("MAX_CVT", "-5")]).max_cvt, Some(1));
        assert_eq!(cfg(&[("MAX_CVT", "abc")]).max_cvt, Some(5000));
        assert_eq!(cfg(&[("MAX_CVT", "800")]).max_cvt, Some(800));
    }

    #[test]
    fn booleans_are_atoi_f28() {
        assert!(!cfg(&[("ALLOW_UPSCALING", "true")]).allow_upscaling);
        assert!(cfg(&[("ALLOW_UPSCALING", "1")]).allow_upscaling);
        assert!(cfg(&[]).allow_upscaling);
    }

    #[test]
    fn cache_budget_f29() {
        assert_eq!(cfg(&[]).tile_cache_bytes, 10_240_000);
        assert_eq!(cfg(&[("MAX_IMAGE_CACHE_SIZE", "0")]).tile_cache_bytes, 0);
    }

    #[test]
    fn defaults_and_clamps() {
        let c = cfg(&[]);
        assert_eq!(c.jpeg_quality, 75);
        assert_eq!(c.png_quality, 1);
        assert_eq!(c.cache_control, "max-age=86400");
        assert_eq!(c.iiif_version, 3);
        assert_eq!(c.max_icc, 65536);
        assert_eq!(c.memcached_servers, vec!["localhost".to_string()]);
        // Memcached is part of every build: the start-up lines must not say otherwise.
        let line = c
            .summary()
            .into_iter()
            .find(|l| l.starts_with("Memcached servers configured: localhost"))
            .expect("a memcached line");
        assert!(!line.contains("not enabled"), "{line}");
        assert_eq!(c.log_target, LogTarget::File("/tmp/iipsrv.log".into()));
        let c = cfg(&[
            ("JPEG_QUALITY", "500"),
            ("PNG_QUALITY", "-3"),
            ("TIFF_COMPRESSION", "5"),
            ("TIFF_QUALITY", "50"),
            ("IIIF_VERSION", "0"),
            ("VERBOSITY", "-2"),
            ("MEMCACHED_SERVERS", ""),
        ]);
        assert_eq!(c.jpeg_quality, 100);
        assert_eq!(c.png_quality, 0);
        assert_eq!(c.tiff_compression, 5);
        assert_eq!(c.tiff_quality, 19);
        assert_eq!(c.iiif_version, 3);
        assert_eq!(c.verbosity, 0);
        assert!(c.memcached_servers.is_empty());
        assert_eq!(cfg(&[("TIFF_COMPRESSION", "9")]).tiff_compression, 0);
        let ms = |v: &str| {
            cfg(&[("MEMCACHED_IO_TIMEOUT", v)])
                .memcached_io_timeout
                .as_millis()
        };
        assert_eq!(
            (ms("abc"), ms("0"), ms("2500"), ms("99999")),
            (100, 100, 2500, 60_000)
        );
    }

    #[test]
    fn metadata_cache_names() {
        assert_eq!(cfg(&[]).metadata_cache_entries, Some(1000));
        assert_eq!(
            cfg(&[("MAX_METADATA_CACHE_SIZE", "5")]).metadata_cache_entries,
            Some(5)
        );
        assert_eq!(
            cfg(&[
                ("MAX_METADATA_CACHE_SIZE", "5"),
                ("MAX_IMAGE_METADATA_CACHE_SIZE", "7")
            ])
            .metadata_cache_entries,
            Some(7)
        );
        assert_eq!(
            cfg(&[("MAX_METADATA_CACHE_SIZE", "-1")]).metadata_cache_entries,
            None
        );
    }

    #[test]
    fn embed_icc_alias() {
        assert_eq!(cfg(&[("EMBED_ICC", "0")]).max_icc, 0);
        assert_eq!(cfg(&[("EMBED_ICC", "1")]).max_icc, 65536);
        assert_eq!(cfg(&[("EMBED_ICC", "0"), ("MAX_ICC", "-1")]).max_icc, -1);
    }
}
