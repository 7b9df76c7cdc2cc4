//! The official IIIF Image API validator, levels 2 of versions 3.0 and 2.0, against
//! `tessera --http`: no check may fail.
//!
//! Needs the validator's venv under `target/iiif-validator/venv` (or
//! `IIIF_VALIDATOR_VENV`), installed by `tests/run-all.sh` through
//! `bash tests/iiif-validate.sh install`, and vips for its test image.

mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/iiif-validate.sh")
}

/// Runs `tests/iiif-validate.sh ARGS`, killed after `limit`; its exit success and output.
fn validate(args: &[&str], limit: Duration) -> (bool, String) {
    let dir = TempDir::new("iiifv");
    let log = dir.0.join("out");
    let mut child = Command::new("bash")
        .arg(script())
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("bash");
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("iiif-validate.sh {args:?} took more than {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status.success(), std::fs::read_to_string(&log).unwrap())
}

/// Runs the validator at `version`, level 2, against a server with `env`, and asserts
/// that every check passed.
fn passes(version: &str, env: &[(&str, &str)]) {
    let images = TempDir::new("iiifv-images");
    let dir = images.0.display().to_string();
    let (ok, out) = validate(&["image", &dir], Duration::from_secs(120));
    assert!(
        ok,
        "the validator's test image was not made (is the validator installed? \
         `bash tests/iiif-validate.sh install`):\n{out}"
    );
    let prefix = format!("{dir}/");
    let mut env = env.to_vec();
    env.extend([("FILESYSTEM_PREFIX", prefix.as_str()), ("CORS", "*")]);
    let (_s, port) = start_http(&[], &env);
    let server = format!("127.0.0.1:{port}");
    let (ok, out) = validate(
        &["run", &server, "iiif", version, "2"],
        Duration::from_secs(300),
    );
    let summary = out.lines().last().unwrap_or("");
    eprintln!("{summary}");
    assert!(ok, "{out}");
    assert!(
        summary.starts_with(&format!("validator {version} level 2: "))
            && summary.ends_with(" passed, 0 failed"),
        "{out}"
    );
}

#[test]
fn validator_3_0_level_2() {
    // Version 3 replaced the size `full` with `max`; tessera accepts `full` unless told not to.
    passes("3.0", &[("IIIF_ACCEPT_FULL", "0")]);
}

#[test]
fn validator_2_0_level_2() {
    // The validator asks for info.json without an Accept header: the default must be 2.
    passes("2.0", &[("IIIF_VERSION", "2")]);
}
