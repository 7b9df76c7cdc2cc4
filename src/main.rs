//! The `tessera` binary: parse the command line, read the configuration, then
//! either run the supervisor on a listening socket or the stdin debug mode.

use clap::Parser;
use std::io::BufRead;
use std::sync::Arc;
use tessera::cli::Cli;
use tessera::config::{atoi, Config};
use tessera::fcgi::Params;
use tessera::supervisor::{self, Options};
use tessera::worker::Worker;

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
    let listener = match supervisor::acquire_listener(cli.bind.as_deref(), backlog, mode) {
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
    let code = supervisor::run(
        listener,
        Options {
            workers: workers.max(1),
            ..Options::default()
        },
        move || {
            let cfg = Config::load(config_file.as_deref()).map_err(|e| e.to_string())?;
            tessera::logging::init(&cfg);
            Ok(cfg)
        },
        tessera::worker::main,
        |_cfg: &Config| {},
    );
    std::process::exit(code);
}
