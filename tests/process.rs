//! Process model: supervisor and workers, restarts, reload, stop, inherited sockets.

mod common;
use common::*;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn supervisor_forks_workers_and_replaces_a_killed_one() {
    let (s, mport) = Server::start_metered(&[], 3);
    assert!(wait_for(
        || children(s.pid()).len() == 3,
        Duration::from_secs(5)
    ));
    let before = children(s.pid());
    let victim = before[1];
    unsafe { libc::kill(victim, libc::SIGKILL) };
    let t0 = Instant::now();
    assert!(
        wait_for(
            || {
                let c = children(s.pid());
                c.len() == 3 && !c.contains(&victim)
            },
            Duration::from_secs(2)
        ),
        "no replacement worker"
    );
    let took = t0.elapsed();
    assert!(
        took < Duration::from_millis(100),
        "replacement took {took:?}"
    );
    assert_eq!(s.get("FIF=small.tif&OBJ=Max-size").status, 200);
    assert_eq!(counter(mport, "tessera_worker_restarts_total"), 1);
    assert!(
        s.log().contains("signal"),
        "the death is logged: {}",
        s.log()
    );
    assert!(s.stop().success());
}

#[test]
fn sigterm_stops_everything_with_status_0() {
    let s = Server::start(&[], 2);
    assert!(wait_for(
        || children(s.pid()).len() == 2,
        Duration::from_secs(5)
    ));
    let kids = children(s.pid());
    let st = s.stop();
    assert!(st.success(), "{st:?}");
    for k in kids {
        assert!(
            wait_for(|| unsafe { libc::kill(k, 0) } != 0, Duration::from_secs(5)),
            "worker {k} survived"
        );
    }
}

#[test]
fn sighup_reloads_without_failing_requests() {
    let dir = TempDir::new("reload");
    let env_file = dir.0.join("env");
    std::fs::write(&env_file, "CACHE_CONTROL=max-age=1\n").unwrap();
    let sock = dir.0.join("s.sock");
    let mut cmd = Command::new(bin());
    cmd.args([
        "--bind",
        sock.to_str().unwrap(),
        "--workers",
        "2",
        "--config",
        env_file.to_str().unwrap(),
    ])
    .env("FILESYSTEM_PREFIX", format!("{}/", fixtures().display()))
    .env("LOGFILE", dir.0.join("log"))
    .env("MEMCACHED_SERVERS", "");
    let child = cmd.spawn().unwrap();
    let s = Server {
        child,
        addr: Addr::Unix(sock),
        dir: TempDir::new("reload-srv"),
    };
    s.wait_ready();
    assert_eq!(
        s.get("FIF=small.tif&JTL=2,0").header("Cache-Control"),
        Some("max-age=1")
    );
    let old = children(s.pid());
    std::fs::write(&env_file, "CACHE_CONTROL=max-age=2\n").unwrap();

    let addr = s.addr.clone();
    let load = std::thread::spawn(move || {
        let mut fails = 0;
        let mut first = None;
        let mut n = 0;
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            match fcgi_request(
                &addr,
                &[
                    ("REQUEST_METHOD", "GET"),
                    ("QUERY_STRING", "FIF=small.tif&JTL=2,0"),
                ],
                b"",
            ) {
                Ok(r) if r.status == 200 => {}
                other => {
                    fails += 1;
                    first.get_or_insert(match other {
                        Ok(r) => format!("status {}", r.status),
                        Err(e) => e,
                    });
                }
            }
            n += 1;
        }
        (n, fails, first)
    });
    // Several reloads in a row while requests keep coming.
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(400));
        s.signal(libc::SIGHUP);
    }
    let (n, fails, first) = load.join().unwrap();
    assert!(n > 50, "only {n} requests");
    assert_eq!(
        fails, 0,
        "{fails} of {n} requests failed during reload, the first with: {first:?}"
    );
    assert!(wait_for(
        || {
            let c = children(s.pid());
            c.len() == 2 && c.iter().all(|p| !old.contains(p))
        },
        Duration::from_secs(10)
    ));
    assert_eq!(
        s.get("FIF=small.tif&JTL=2,0").header("Cache-Control"),
        Some("max-age=2")
    );
}

#[test]
fn spawn_fcgi_hands_over_fd_0() {
    let port = free_port();
    let dir = TempDir::new("spawn");
    let out = Command::new("spawn-fcgi")
        .args([
            "-a",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-n",
            "--",
            bin(),
            "--workers",
            "2",
        ])
        .env("FILESYSTEM_PREFIX", format!("{}/", fixtures().display()))
        .env("LOGFILE", dir.0.join("log"))
        .env("MEMCACHED_SERVERS", "")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn-fcgi is installed");
    let s = Server {
        child: out,
        addr: Addr::Tcp(port),
        dir,
    };
    s.wait_ready();
    let r = s.get("FIF=big.tif&OBJ=Max-size&OBJ=Resolution-number");
    assert_eq!(r.body, b"Max-size:5000 3000\r\nResolution-number:6\r\n");
    let direct = Server::start(&[], 1);
    assert_eq!(
        s.get("FIF=small.tif&JTL=2,3").body,
        direct.get("FIF=small.tif&JTL=2,3").body
    );
}

#[test]
fn no_socket_is_a_clear_error() {
    let out = Command::new(bin())
        .stdin(Stdio::null())
        .env("LOGFILE", "-")
        .env_remove("PORT")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--bind"), "{err}");
}

#[test]
fn host_and_port_from_the_environment_when_nothing_else_says() {
    // iipsrv's service files run `--bind ${HOST}:${PORT}`; with no --bind and no
    // inherited socket, the same variables are where tessera listens.
    let start = |args: &[&str], env: &[(&str, String)], serves_on: u16| {
        let dir = TempDir::new("hostport");
        let mut cmd = Command::new(bin());
        cmd.args(["--workers", "1"])
            .args(args)
            .env("FILESYSTEM_PREFIX", format!("{}/", fixtures().display()))
            .env("LOGFILE", dir.0.join("server.log"))
            .env("MEMCACHED_SERVERS", "")
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let s = Server {
            child: cmd.spawn().unwrap(),
            addr: Addr::Tcp(serves_on),
            dir,
        };
        s.wait_ready();
        s
    };
    let port = free_port();
    let env = [("HOST", "127.0.0.1".to_owned()), ("PORT", port.to_string())];
    let s = start(&[], &env, port);
    assert_eq!(
        s.get("FIF=small.tif&OBJ=Max-size").body,
        b"Max-size:1001 777\r\n"
    );
    // --bind wins over them.
    let other = free_port();
    let bind = format!("127.0.0.1:{other}");
    let t = start(&["--bind", &bind], &env[1..], other);
    assert_eq!(t.get("FIF=small.tif&OBJ=Max-size").status, 200);
    assert!(t.stop().success());
    assert!(s.stop().success());
}

#[test]
fn startup_logs_iipimage_and_clamps_backlog() {
    let dir = TempDir::new("banner");
    let port = free_port();
    let log = dir.0.join("log");
    let child = Command::new(bin())
        .args([
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--backlog",
            "999999",
            "--workers",
            "1",
        ])
        .env("LOGFILE", &log)
        .env("MEMCACHED_SERVERS", "")
        .spawn()
        .unwrap();
    let s = Server {
        child,
        addr: Addr::Tcp(port),
        dir,
    };
    s.wait_ready();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("IIPImage"), "{text}");
    assert!(text.to_lowercase().contains("backlog"), "{text}");
}

#[test]
fn truncated_and_garbage_fastcgi_do_not_kill_workers() {
    let s = Server::start_tcp(&[], 1);
    let Addr::Tcp(port) = s.addr else {
        unreachable!()
    };
    // The socket listens before the worker is forked: wait for it.
    assert!(wait_for(
        || children(s.pid()).len() == 1,
        Duration::from_secs(10)
    ));
    let before = children(s.pid());
    // A header that promises more content than is sent, then EOF.
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(&[1, 1, 0, 1, 0, 8, 0, 0, 0, 1, 0]).unwrap();
    drop(c);
    // Not FastCGI at all.
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = Vec::new();
    let _ = c.read_to_end(&mut buf);
    assert_eq!(s.get("FIF=small.tif&OBJ=Max-size").status, 200);
    assert_eq!(children(s.pid()), before, "a worker died");
}

#[test]
fn huge_query_string_is_a_client_error() {
    let s = Server::start(&[], 1);
    let q = format!("FIF=small.tif&{}", "X".repeat(1 << 20));
    let r = s.get(&q);
    assert_eq!(r.status, 400);
    let r = s.get("FIF=small.tif&OBJ=Max-size");
    assert_eq!(r.status, 200);
}

#[test]
fn stdin_debug_mode() {
    let dir = TempDir::new("stdin");
    let mut child = Command::new(bin())
        .args([
            "--stdin",
            "--debug-output",
            dir.0.join("out").to_str().unwrap(),
        ])
        .env("FILESYSTEM_PREFIX", format!("{}/", fixtures().display()))
        .env("VERBOSITY", "0")
        .env("MEMCACHED_SERVERS", "")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"FIF=small.tif&OBJ=Max-size\nFIF=small.tif&JTL=2,0\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("200 application/vnd.netfpx"));
    assert!(lines[1].starts_with("200 image/jpeg"));
    let last = std::fs::read(dir.0.join("out")).unwrap();
    let r = parse_cgi(&last);
    assert_eq!(jpeg_dims(&r.body).0, 256);
}

#[test]
fn workers_die_with_the_supervisor() {
    let mut s = Server::start(&[], 2);
    assert!(wait_for(
        || children(s.pid()).len() == 2,
        Duration::from_secs(5)
    ));
    let kids = children(s.pid());
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    for k in kids {
        assert!(
            wait_for(
                || unsafe { libc::kill(k, 0) } != 0 || is_zombie(k),
                Duration::from_secs(5)
            ),
            "worker {k} outlived its supervisor"
        );
    }
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(true)
}

#[test]
fn sigusr1_logs_statistics_and_keeps_serving() {
    let s = Server::start(&[], 2);
    for _ in 0..5 {
        assert_eq!(s.get("FIF=small.tif&OBJ=Max-size").status, 200);
    }
    s.signal(libc::SIGUSR1);
    assert!(
        wait_for(
            || s.log().contains("accesses in total"),
            Duration::from_secs(5)
        ),
        "{}",
        s.log()
    );
    let line = s
        .log()
        .lines()
        .find(|l| l.contains("accesses in total"))
        .unwrap()
        .to_owned();
    assert!(line.contains("5 accesses"), "{line}");
    assert_eq!(s.get("FIF=small.tif&OBJ=Max-size").status, 200);
}

#[test]
fn systemd_socket_activation_uses_fd_3() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let fd = l.as_raw_fd();
    let dir = TempDir::new("systemd");
    // LISTEN_PID must name the process that runs tessera: the shell's pid, kept by exec.
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "LISTEN_PID=$$ exec \"$0\" --workers 1", bin()])
        .env("FILESYSTEM_PREFIX", format!("{}/", fixtures().display()))
        .env("LOGFILE", dir.0.join("log"))
        .env("MEMCACHED_SERVERS", "")
        .env("LISTEN_FDS", "1")
        .stdin(Stdio::null());
    // SAFETY: dup2 and fcntl are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself keeps close-on-exec, so clear it explicitly.
            let r = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd.spawn().unwrap();
    drop(l);
    let s = Server {
        child,
        addr: Addr::Tcp(port),
        dir,
    };
    s.wait_ready();
    let r = s.get("FIF=small.tif&OBJ=Max-size");
    assert_eq!(r.body, b"Max-size:1001 777\r\n");
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    (
        status,
        out.split("\r\n\r\n").nth(1).unwrap_or("").to_owned(),
    )
}

#[test]
fn metrics_and_health_on_loopback() {
    let mport = free_port();
    let addr = format!("127.0.0.1:{mport}");
    let dir = TempDir::new("metrics");
    let sock = dir.0.join("s.sock");
    let child = Command::new(bin())
        .args([
            "--bind",
            sock.to_str().unwrap(),
            "--workers",
            "2",
            "--metrics",
            &addr,
        ])
        .env("FILESYSTEM_PREFIX", format!("{}/", fixtures().display()))
        .env("LOGFILE", dir.0.join("server.log"))
        .env("VERBOSITY", "2")
        .env("MEMCACHED_SERVERS", "")
        .env("URI_MAP", "iiif=>IIIF")
        .spawn()
        .unwrap();
    let s = Server {
        child,
        addr: Addr::Unix(sock),
        dir,
    };
    s.wait_ready();
    assert_eq!(http_get(mport, "/health"), (200, "ok\n".to_string()));
    for _ in 0..3 {
        assert_eq!(s.get("FIF=small.tif&JTL=2,0").status, 200);
    }
    assert_eq!(s.get("FIF=nope.tif&JTL=2,0").status, 404);
    let r = s.request(
        &[
            ("REQUEST_METHOD", "GET"),
            ("REQUEST_URI", "/iiif/small.tif/info.json"),
        ],
        b"",
    );
    assert_eq!(r.status, 200);
    let (st, text) = http_get(mport, "/metrics");
    assert_eq!(st, 200);
    assert!(
        text.contains("tessera_requests_total{protocol=\"iip\",status=\"2xx\"} 3\n"),
        "{text}"
    );
    assert!(
        text.contains("tessera_requests_total{protocol=\"iip\",status=\"4xx\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("tessera_requests_total{protocol=\"iiif\",status=\"2xx\"} 1\n"),
        "{text}"
    );
    assert!(
        text.contains("tessera_request_duration_seconds_count 5\n"),
        "{text}"
    );
    assert!(text.contains("tessera_image_cache_hits_total "), "{text}");
    assert!(text.contains("tessera_workers 2\n"), "{text}");
    // Stored: the tile and small.tif's header. Hits: the tile twice, and the header once
    // if the other worker answered one of the requests.
    assert!(
        text.contains("tessera_tile_cache_inserts_total 2\n"),
        "{text}"
    );
    // Nothing is refused while the cache has room.
    assert!(
        text.contains("tessera_tile_cache_refused_total 0\n"),
        "{text}"
    );
    let hits: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("tessera_tile_cache_hits_total "))
        .and_then(|v| v.parse().ok())
        .expect("a hit counter");
    assert!((2..=3).contains(&hits), "{text}");
    let victim = children(s.pid())[0];
    unsafe { libc::kill(victim, libc::SIGKILL) };
    assert!(wait_for(
        || http_get(mport, "/metrics")
            .1
            .contains("tessera_worker_restarts_total 1\n"),
        Duration::from_secs(5)
    ));
    s.signal(libc::SIGHUP);
    assert!(wait_for(
        || http_get(mport, "/metrics")
            .1
            .contains("tessera_reloads_total 1\n"),
        Duration::from_secs(5)
    ));
    assert_eq!(http_get(mport, "/nope").0, 404);
    // One structured access line per request at VERBOSITY 2.
    let log = s.log();
    assert!(
        log.contains("access method=GET protocol=iip status=200 bytes="),
        "{log}"
    );
    assert!(
        log.contains("access method=GET protocol=iiif status=200"),
        "{log}"
    );
}

#[test]
fn metrics_refuse_public_addresses() {
    let out = Command::new(bin())
        .args(["--bind", "127.0.0.1:0", "--metrics", "0.0.0.0:9100"])
        .env("LOGFILE", "-")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
}

#[test]
fn default_verbosity_logs_no_line_per_request() {
    let s = Server::start(&[("VERBOSITY", "1")], 1);
    for _ in 0..3 {
        assert_eq!(s.get("FIF=small.tif&JTL=1,0").status, 200);
    }
    assert_eq!(s.get("FIF=nope.tif&JTL=1,0").status, 404);
    let log = s.log();
    assert!(log.contains("IIPImage"), "{log}");
    assert!(!log.contains("access method="), "{log}");
}

#[test]
fn interpolation_is_read_once_at_start() {
    // iipsrv reads INTERPOLATION again on every region request; here, like every
    // setting, it is read at start and again only on a reload.
    let dir = TempDir::new("interpolation");
    let env_file = dir.0.join("env");
    std::fs::write(&env_file, "INTERPOLATION=0\n").unwrap();
    let no_cache = [("MAX_IMAGE_CACHE_SIZE", "0")];
    let s = Server::start_args(&["--config", env_file.to_str().unwrap()], &no_cache, 1);
    let q = "FIF=small.tif&WID=333&CVT=png";
    let nearest = s.get(q).body;
    let area = Server::start(&[("INTERPOLATION", "2"), no_cache[0]], 1)
        .get(q)
        .body;
    assert!(!nearest.is_empty() && !area.is_empty());
    assert_ne!(nearest, area, "the two resamplings differ");
    std::fs::write(&env_file, "INTERPOLATION=2\n").unwrap();
    for n in 0..3 {
        assert!(s.get(q).body == nearest, "request {n} after the change");
    }
    s.signal(libc::SIGHUP);
    assert!(
        wait_for(|| s.get(q).body == area, Duration::from_secs(10)),
        "the reload reads it again"
    );
}
