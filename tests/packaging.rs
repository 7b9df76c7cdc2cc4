//! Packaging: builds the .deb and .rpm, installs the .deb, runs the service as its
//! unit says behind nginx with the shipped snippet, drives the OpenRC script, purges.
//! Needs root (as CI runs), dpkg, rpm, nginx and openrc (tests/run-all.sh installs them).

use std::process::Command;

#[test]
fn deb_and_rpm_install_serve_and_purge() {
    let root = env!("CARGO_MANIFEST_DIR");
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the packaging test installs a .deb and must run as root"
    );
    let build = Command::new("bash")
        .arg(format!("{root}/packaging/build-packages.sh"))
        .status()
        .unwrap();
    assert!(build.success(), "building the packages failed");
    let out = Command::new("bash")
        .arg(format!("{root}/packaging/test-install.sh"))
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
        .find(|l| l.starts_with("packaging:"))
        .expect("summary line");
    assert!(summary.ends_with(" 0 failed"), "{summary}");
    let passed: u32 = summary.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(passed >= 20, "{summary}");
}
