//! The `tessera` binary: parse the command line, read the configuration, then
//! either run the supervisor on a listening socket or the stdin debug mode.

use clap::Parser;
use std::io::BufRead;
use std::sync::Arc;
use tessera::cli::Cli;
use tessera::config::{atoi, Config};
use tessera::fcgi::Params;
use tessera::supervisor::{self, Options};
use tessera::worker::{HttpOptions, Worker};

fn banner(cfg: &Config) {
    log::info!("<----------------------------------->");
    log::info!(
        "IIPImage-compatible server: tessera {} (pid {})",
        env!("CARGO_PKG_VERSION"),
        std::process::id()
    );
    for line in cfg.summary() {
        log::info!("{line}");
    }
}

fn debug_mode(cli: &Cli, cfg: Config) -> i32 {
    let mut worker = Worker::new(Arc::new(cfg));
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let params = Params(vec![
            ("REQUEST_METHOD".into(), "GET".into()),
            ("QUERY_STRING".into(), line.into()),
            (
                "REQUEST_URI".into(),
                format!("/fcgi-bin/iipsrv.fcgi?{line}"),
            ),
            ("HTTP_HOST".into(), "localhost".into()),
        ]);
        let out = worker.answer(&params, &[]);
        let r = &out.response;
        if let Err(e) = std::fs::write(&cli.debug_output, r.to_cgi(false)) {
            eprintln!("tessera: cannot write {}: {e}", cli.debug_output.display());
            return 1;
        }
        println!(
            "{} {} {} bytes: {line}",
            r.status,
            r.header("Content-Type").unwrap_or("-"),
            r.body.len()
        );
    }
    0
}

/// A shared table for the whole life of the server, or none (logged) if it could not be made.
fn leak_table<T>(made: Result<T, shm::TableError>) -> Option<&'static T> {
    match made {
        Ok(t) => Some(&*Box::leak(Box::new(t))),
        Err(e) => {
            log::error!("{e}; continuing without them");
            None
        }
    }
}

fn main() {
    let cli = Cli::parse();
    let cfg = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tessera: {e}");
            std::process::exit(2);
        }
    };
    tessera::logging::init(&cfg);
    if cli.stdin {
        std::process::exit(debug_mode(&cli, cfg));
    }
    banner(&cfg);

    let mode = u32::from_str_radix(cli.socket_mode.trim(), 8).unwrap_or(0o666);
    let backlog = atoi(&cli.backlog).clamp(0, i32::MAX as i64) as i32;
    let bind = cli.http.as_deref().or(cli.bind.as_deref());
    let listener = match supervisor::acquire_listener(bind, backlog, mode) {
        Ok(l) => l,
        Err(e) => {
            log::error!("{e}");
            eprintln!("tessera: {e}");
            std::process::exit(1);
        }
    };
    log::info!("Listening on {}", listener.local_description());
    let workers = cli.workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let config_file = cli.config.clone();
    let http_mode = cli.http.is_some();
    let load = move || {
        let mut cfg = Config::load(config_file.as_deref()).map_err(|e| e.to_string())?;
        if http_mode && cfg.uri_map.is_empty() {
            // Clean IIIF URLs are what viewers ask for; with no web server to map them, map them here.
            cfg.uri_map = tessera::config::parse_uri_map("iiif=>IIIF");
        }
        tessera::logging::init(&cfg);
        Ok(cfg)
    };
    let metrics = match cli
        .metrics
        .as_deref()
        .map(supervisor::metrics::bind)
        .transpose()
    {
        Ok(m) => m,
        Err(e) => {
            log::error!("{e}");
            eprintln!("tessera: {e}");
            std::process::exit(1);
        }
    };
    // The shared tile cache is made before any worker exists so all inherit it.
    let tiles: Option<&'static shm::Cache> = match shm::Cache::create(cfg.tile_cache_bytes) {
        Ok(c) => c.map(|c| &*Box::leak(Box::new(c))),
        Err(e) => {
            log::error!("{e}; continuing without the shared tile cache");
            None
        }
    };
    if let Some(c) = tiles {
        let st = c.stats();
        log::info!(
            "Shared cache of tiles and image headers: {} entries, {} bytes",
            st.entries,
            st.capacity
        );
    }
    // Admission slots and single-flight marks: also shared before any worker exists.
    let shared = tessera::worker::Shared {
        tiles,
        slots: leak_table(shm::Slots::create(shm::MAX_SLOTS)),
        flights: tiles.and_then(|_| leak_table(shm::Flights::create())),
    };
    let opts = Options {
        workers: workers.max(1),
        metrics,
        cache: tiles,
        slots: shared.slots,
        flights: shared.flights,
        ..Options::default()
    };
    let code = if http_mode {
        let http = HttpOptions {
            viewer_dir: cli.viewer.clone(),
            default_image: cli.viewer_image.clone(),
        };
        supervisor::run(
            listener,
            opts,
            load,
            move |l: &supervisor::Listener, c: Arc<Config>, ctx: &supervisor::WorkerCtx| {
                tessera::worker::main_http(l, c, ctx, &http, shared)
            },
            |_cfg: &Config| {},
        )
    } else {
        supervisor::run(
            listener,
            opts,
            load,
            move |l: &supervisor::Listener, c: Arc<Config>, ctx: &supervisor::WorkerCtx| {
                tessera::worker::main(l, c, ctx, shared)
            },
            |_cfg: &Config| {},
        )
    };
    std::process::exit(code);
}
