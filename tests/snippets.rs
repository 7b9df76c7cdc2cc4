//! Every shipped web-server snippet (nginx, Apache mod_proxy_fcgi and mod_fcgid,
//! lighttpd with a running server and spawning it) serves a tile and an info.json.

mod common;
use common::*;
use std::process::Command;

#[test]
fn web_server_snippets_serve_tiles() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/test-snippets.sh");
    let out = Command::new("bash")
        .arg(script)
        .arg(bin())
        .arg(fixtures())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = text
        .lines()
        .find(|l| l.starts_with("snippets:"))
        .expect("summary line");
    assert_eq!(summary, "snippets: 10 passed, 0 failed");
}
