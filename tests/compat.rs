//! Side by side with Debian's iipsrv 1.1 (`iipimage-server`): the metadata lines a
//! viewer reads first must be identical.

mod common;
use common::*;
use std::process::{Command, Stdio};

const IIPSRV: &str = "/usr/lib/iipimage-server/iipsrv.fcgi";

#[test]
fn obj_lines_equal_iipsrv_1_1() {
    assert!(
        std::path::Path::new(IIPSRV).exists(),
        "install iipimage-server (tests/run-all.sh does)"
    );
    let port = free_port();
    let dir = TempDir::new("iipsrv");
    let child = Command::new("spawn-fcgi")
        .args([
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-n",
            "--",
            IIPSRV,
        ])
        .env("FILESYSTEM_PREFIX", format!("{}/", fixtures().display()))
        .env("LOGFILE", dir.0.join("log"))
        .env("VERBOSITY", "0")
        .env("MEMCACHED_SERVERS", "")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let reference = Server {
        child,
        addr: Addr::Tcp(port),
        dir,
    };
    reference.wait_ready();
    let ours = Server::start(&[], 1);
    // iipsrv 1.1 starts its body with a stray CRLF; compare the lines themselves.
    let lines = |r: Reply| -> Vec<String> {
        r.text()
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    };
    // iipsrv 1.1 reads no SubIFD pyramids, so big_subifd.tif is compared with our own big.tif below.
    for f in [
        "big.tif",
        "big_bigtiff.tif",
        "small.tif",
        "grey.tif",
        "small_jpeg.tif",
    ] {
        let q = format!("FIF={f}&OBJ=Max-size&OBJ=Tile-size&OBJ=Resolution-number&OBJ=Resolutions");
        let (a, b) = (lines(reference.get(&q)), lines(ours.get(&q)));
        assert_eq!(a, b, "{f}");
        assert_eq!(b.len(), 4, "{f}: {b:?}");
    }
    let q = "OBJ=Max-size&OBJ=Tile-size&OBJ=Resolution-number&OBJ=Resolutions";
    assert_eq!(
        lines(ours.get(&format!("FIF=big_subifd.tif&{q}"))),
        lines(reference.get(&format!("FIF=big.tif&{q}")))
    );
}
