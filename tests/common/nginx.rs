//! A real nginx on loopback in front of a tessera under test, configured as iipsrv's
//! users do (`/fcgi-bin/iipsrv.fcgi` and `/iiif/` locations, Debian's `fastcgi_params`,
//! `fastcgi_pass` to tessera), and a plain HTTP/1.0 client for it and for `--http`.

use super::{free_port, Addr, TempDir};
use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

/// A running nginx, stopped on drop.
pub struct Nginx {
    pub dir: TempDir,
    pub port: u16,
}

impl Nginx {
    pub fn start(upstream: &Addr) -> Nginx {
        Nginx::start_with(upstream, None)
    }

    /// With `keepalive`, nginx keeps up to that many FastCGI connections open between
    /// requests (`fastcgi_keep_conn on` and an upstream `keepalive` pool).
    pub fn start_with(upstream: &Addr, keepalive: Option<u32>) -> Nginx {
        Nginx::start_conf(upstream, keepalive, "")
    }

    /// [`Nginx::start_with`] plus `locations`, more `location` blocks for the server, in
    /// which `FASTCGI` stands for the lines that pass a request on to tessera.
    pub fn start_conf(upstream: &Addr, keepalive: Option<u32>, locations: &str) -> Nginx {
        let dir = TempDir::new("nginx");
        let port = free_port();
        let server = match upstream {
            Addr::Unix(p) => format!("unix:{}", p.display()),
            Addr::Tcp(p) => format!("127.0.0.1:{p}"),
        };
        let (pool, pass) = match keepalive {
            Some(n) => (
                format!("upstream tessera {{ server {server}; keepalive {n}; }}\n"),
                "tessera;\n      fastcgi_keep_conn on;".to_string(),
            ),
            None => (String::new(), format!("{server};")),
        };
        let d = dir.0.display();
        let params = format!("include /etc/nginx/fastcgi_params;\n      fastcgi_pass {pass}");
        let locations = locations.replace("FASTCGI", &params);
        let conf = format!(
            "worker_processes 1;\ndaemon on;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {d}/tmp-client;\n  proxy_temp_path {d}/tmp-proxy;\n\
               fastcgi_temp_path {d}/tmp-fcgi;\n  uwsgi_temp_path {d}/tmp-uwsgi;\n  scgi_temp_path {d}/tmp-scgi;\n\
               fastcgi_buffers 64 64k;\n  {pool}\
               server {{\n    listen 127.0.0.1:{port};\n    server_name localhost;\n\
                 location = /fcgi-bin/iipsrv.fcgi {{\n      {params}\n    }}\n\
                 location /iiif/ {{\n      {params}\n    }}\n{locations}\n  }}\n}}\n"
        );
        std::fs::write(dir.0.join("nginx.conf"), conf).unwrap();
        let st = Command::new("nginx")
            .args([
                "-p",
                &d.to_string(),
                "-c",
                &format!("{d}/nginx.conf"),
                "-e",
                &format!("{d}/error.log"),
            ])
            .status()
            .expect("nginx is installed");
        assert!(st.success(), "nginx failed to start");
        let n = Nginx { dir, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        n
    }

    /// HTTP/1.0 GET; returns status, headers (lower-case names) and body.
    pub fn get(&self, path: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
        http_get(self.port, path)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.0.join("nginx.pid")) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                unsafe { libc::kill(pid, libc::SIGTERM) };
                let deadline = Instant::now() + Duration::from_secs(5);
                while unsafe { libc::kill(pid, 0) } == 0 && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
    }
}

/// HTTP/1.0 `GET target` with `Host: localhost` to a loopback port, sent byte for byte
/// as given; returns status, headers (lower-case names) and body.
pub fn http_get(port: u16, target: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    http10_get(port, target, &[])
}

/// [`http_get`] with extra request headers.
pub fn http10_get(
    port: u16,
    target: &str,
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    write!(c, "GET {target} HTTP/1.0\r\nHost: localhost\r\n{extra}\r\n").unwrap();
    let mut buf = Vec::new();
    c.read_to_end(&mut buf).unwrap();
    let pos = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP head");
    let head = String::from_utf8_lossy(&buf[..pos]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    (status, headers, buf[pos + 4..].to_vec())
}

/// A header of a reply from [`http_get`] (names in lower case).
pub fn hdr<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}
