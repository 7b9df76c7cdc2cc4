//! Command line: iipsrv's `--bind`/`--backlog` plus tessera's own options.

use clap::Parser;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "tessera",
    version,
    about = "An iipsrv-compatible image tile server (IIP, IIIF, DeepZoom, Zoomify over FastCGI)",
    long_about = "An iipsrv-compatible image tile server (IIP, IIIF, DeepZoom, Zoomify over FastCGI).\n\n\
        Configuration comes from iipsrv's environment variables (FILESYSTEM_PREFIX, VERBOSITY, LOGFILE, \
        JPEG_QUALITY, MAX_CVT, CORS, URI_MAP, ...), optionally overridden by --config. Without --bind the \
        listening socket is inherited: systemd socket activation (LISTEN_FDS) or fd 0 as spawn-fcgi, \
        mod_fcgid and lighttpd hand it over."
)]
pub struct Cli {
    /// Listen on HOST:PORT, :PORT or a Unix socket path.
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<String>,

    /// Serve HTTP/1.1 directly on HOST:PORT instead of FastCGI: IIP, IIIF (/iiif/),
    /// DeepZoom and Zoomify with no web server in front, and a viewer page at /.
    #[arg(long, value_name = "ADDR", conflicts_with = "bind")]
    pub http: Option<String>,

    /// OpenSeadragon's build directory (from npm), served under /viewer/ in --http mode.
    #[arg(long, value_name = "DIR")]
    pub viewer: Option<PathBuf>,

    /// The image the --http viewer page shows by default.
    #[arg(long, value_name = "NAME", default_value = "sample.tif")]
    pub viewer_image: String,

    /// Serve /health and /metrics (Prometheus text) on this loopback IP:PORT.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,

    /// Listen backlog (clamped to the kernel's somaxconn).
    #[arg(long, value_name = "N", default_value = "2048")]
    pub backlog: String,

    /// Number of worker processes [default: number of CPUs].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,

    /// Environment file (KEY=VALUE lines) read at start and on every SIGHUP; its values
    /// override the process environment.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Permissions of a Unix socket created by --bind, in octal.
    #[arg(long, value_name = "MODE", default_value = "666")]
    pub socket_mode: String,

    /// Debug mode: read one request string per line from standard input (e.g.
    /// `FIF=a.tif&JTL=0,0` or `IIIF=a.tif/info.json`), write each complete response to
    /// --debug-output and print a summary line to standard output.
    #[arg(long)]
    pub stdin: bool,

    /// Where --stdin writes each response (overwritten per request).
    #[arg(long, value_name = "FILE", default_value = "tessera.debug")]
    pub debug_output: PathBuf,
}
