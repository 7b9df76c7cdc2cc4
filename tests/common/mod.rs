//! Test harness: the generated image corpus, a real `tessera` process on a
//! loopback or Unix socket, and a FastCGI client that parses CGI responses.
#![allow(dead_code)]

pub mod nginx;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The corpus built by `tests/make-fixtures.sh`, made once per target dir.
pub fn fixtures() -> PathBuf {
    if let Ok(dir) = std::env::var("TESSERA_FIXTURES") {
        return PathBuf::from(dir);
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixtures");
    let done = dir.join(".complete");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/make-fixtures.sh");
    let mtime = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    // A corpus older than its script is rebuilt.
    if done.exists() && mtime(&done) < mtime(&script) {
        let _ = std::fs::remove_file(&done);
    }
    if done.exists() {
        return dir;
    }
    let lock = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixtures.lock");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if done.exists() {
            return dir;
        }
        if std::fs::create_dir(&lock).is_ok() {
            let st = Command::new("bash")
                .arg(script)
                .arg(&dir)
                .status()
                .expect("run make-fixtures.sh");
            let _ = std::fs::remove_dir(&lock);
            assert!(st.success(), "make-fixtures.sh failed");
            return dir;
        }
        assert!(Instant::now() < deadline, "timed out waiting for fixtures");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        // Tests run on parallel threads, and two may read the same clock value: a
        // per-process sequence number keeps their directories (and sockets) apart.
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let p = std::env::temp_dir().join(format!(
            "tessera-{tag}-{}-{}-{:?}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where a server listens.
#[derive(Clone, Debug)]
pub enum Addr {
    Unix(PathBuf),
    Tcp(u16),
}

/// A running `tessera`; stopped with SIGTERM (then SIGKILL) on drop.
pub struct Server {
    pub child: Child,
    pub addr: Addr,
    pub dir: TempDir,
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_tessera")
}

/// A free loopback port below Linux's ephemeral range (32768–60999), so no
/// outgoing client connection of a concurrently running test can take it
/// between this check and the server's `bind()`. Ports are handed out from a
/// per-process sequence so two tests in one binary never get the same one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let offset = (std::process::id() % 97) * 120;
    for _ in 0..12_000 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (20_000 + (offset + n) % 12_000) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between 20000 and 32000");
}

impl Server {
    /// Starts `tessera --bind <unix socket>` with FILESYSTEM_PREFIX = the corpus.
    pub fn start(env: &[(&str, &str)], workers: usize) -> Server {
        let dir = TempDir::new("srv");
        let sock = dir.0.join("fcgi.sock");
        Self::start_at(Addr::Unix(sock), env, workers, dir)
    }

    pub fn start_tcp(env: &[(&str, &str)], workers: usize) -> Server {
        let dir = TempDir::new("srv");
        Self::start_at(Addr::Tcp(free_port()), env, workers, dir)
    }

    pub fn start_at(addr: Addr, env: &[(&str, &str)], workers: usize, dir: TempDir) -> Server {
        Self::start_with(addr, &[], env, workers, dir)
    }

    /// [`Server::start`] with its `/metrics` endpoint on a free loopback port, returned.
    pub fn start_metered(env: &[(&str, &str)], workers: usize) -> (Server, u16) {
        let dir = TempDir::new("srv");
        let sock = dir.0.join("fcgi.sock");
        let mport = free_port();
        let m = format!("127.0.0.1:{mport}");
        let s = Self::start_with(Addr::Unix(sock), &["--metrics", &m], env, workers, dir);
        (s, mport)
    }

    /// [`Server::start`] with extra command-line arguments.
    pub fn start_args(extra: &[&str], env: &[(&str, &str)], workers: usize) -> Server {
        let dir = TempDir::new("srv");
        let sock = dir.0.join("fcgi.sock");
        Self::start_with(Addr::Unix(sock), extra, env, workers, dir)
    }

    fn start_with(
        addr: Addr,
        extra: &[&str],
        env: &[(&str, &str)],
        workers: usize,
        dir: TempDir,
    ) -> Server {
        let bind = match &addr {
            Addr::Unix(p) => p.display().to_string(),
            Addr::Tcp(port) => format!("127.0.0.1:{port}"),
        };
        let mut cmd = Command::new(bin());
        cmd.args(["--bind", &bind, "--workers", &workers.to_string()])
            .args(extra)
            .env("FILESYSTEM_PREFIX", format!("{}/", fixtures().display()))
            .env("LOGFILE", dir.0.join("server.log"))
            .env("VERBOSITY", "2")
            .env("MEMCACHED_SERVERS", "")
            .stdin(Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start tessera");
        let s = Server { child, addr, dir };
        s.wait_ready();
        s
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let ok = match &self.addr {
                Addr::Unix(p) => std::os::unix::net::UnixStream::connect(p).is_ok(),
                Addr::Tcp(port) => std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok(),
            };
            if ok {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("server did not start; log:\n{}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("server.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// GET with a query string, as nginx's `/fcgi-bin/iipsrv.fcgi?<query>` sends it.
    pub fn get(&self, query: &str) -> Reply {
        self.try_get(query).expect("FastCGI request")
    }

    /// [`Server::get`], with a failed exchange (a reset, a timeout) as an error.
    pub fn try_get(&self, query: &str) -> Result<Reply, String> {
        fcgi_request(
            &self.addr,
            &[
                ("REQUEST_METHOD", "GET"),
                ("QUERY_STRING", query),
                ("REQUEST_URI", &format!("/fcgi-bin/iipsrv.fcgi?{query}")),
                ("HTTP_HOST", "localhost"),
            ],
            b"",
        )
    }

    /// A GET of a path with no query string (IIIF and other path-mapped protocols).
    pub fn get_path(&self, uri: &str) -> Reply {
        self.request(
            &[
                ("REQUEST_METHOD", "GET"),
                ("QUERY_STRING", ""),
                ("REQUEST_URI", uri),
                ("HTTP_HOST", "localhost"),
            ],
            b"",
        )
    }

    pub fn request(&self, params: &[(&str, &str)], stdin: &[u8]) -> Reply {
        fcgi_request(&self.addr, params, stdin).expect("FastCGI request")
    }

    /// Sends a signal to the supervisor.
    pub fn signal(&self, sig: i32) {
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Stops the server with SIGTERM and returns its exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "server did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A parsed CGI response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub raw_head: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn content_type(&self) -> &str {
        self.header("Content-Type").unwrap_or("")
    }
}

/// Splits CGI output into status, headers and body.
pub fn parse_cgi(out: &[u8]) -> Reply {
    let pos = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("CGI header block ends with a blank line");
    let head = String::from_utf8_lossy(&out[..pos]).into_owned();
    let mut status = 200;
    let mut headers = Vec::new();
    for line in head.split("\r\n") {
        let (k, v) = line
            .split_once(": ")
            .unwrap_or_else(|| panic!("bad header line {line:?}"));
        if k == "Status" {
            status = v[..3].parse().unwrap();
        }
        headers.push((k.to_owned(), v.to_owned()));
    }
    Reply {
        status,
        headers,
        body: out[pos + 4..].to_vec(),
        raw_head: head,
    }
}

/// One FastCGI request over a fresh connection, with a 30 s time limit.
pub fn fcgi_request(addr: &Addr, params: &[(&str, &str)], stdin: &[u8]) -> Result<Reply, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut p = fastcgi_client::Params::default();
    for (k, v) in params {
        p = p.custom(k.to_string(), v.to_string());
    }
    p = p.content_length(stdin.len());
    let stdin = stdin.to_vec();
    let addr = addr.clone();
    rt.block_on(async move {
        let fut = async {
            let req = fastcgi_client::Request::new_tokio(p, std::io::Cursor::new(stdin));
            let out = match addr {
                Addr::Unix(path) => {
                    let s = tokio::net::UnixStream::connect(path)
                        .await
                        .map_err(|e| e.to_string())?;
                    fastcgi_client::Client::new_tokio(s).execute_once(req).await
                }
                Addr::Tcp(port) => {
                    let s = tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .map_err(|e| e.to_string())?;
                    fastcgi_client::Client::new_tokio(s).execute_once(req).await
                }
            }
            .map_err(|e| e.to_string())?;
            Ok::<_, String>(parse_cgi(&out.stdout.unwrap_or_default()))
        };
        tokio::time::timeout(Duration::from_secs(30), fut)
            .await
            .map_err(|_| "timeout".to_string())?
    })
}

/// Decodes a JPEG and returns (width, height, components).
pub fn jpeg_dims(bytes: &[u8]) -> (usize, usize, usize) {
    let h = turbojpeg::read_header(bytes).expect("valid JPEG");
    let comps = if h.colorspace == turbojpeg::Colorspace::Gray {
        1
    } else {
        3
    };
    let img = turbojpeg::decompress(
        bytes,
        if comps == 1 {
            turbojpeg::PixelFormat::GRAY
        } else {
            turbojpeg::PixelFormat::RGB
        },
    )
    .expect("JPEG decodes");
    (img.width, img.height, comps)
}

/// Runs a shell command and returns stdout, panicking on failure.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("bash").arg("-c").arg(cmd).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn read_all(mut r: impl Read) -> Vec<u8> {
    let mut v = Vec::new();
    r.read_to_end(&mut v).unwrap();
    v
}

/// Width and height of a JPEG.
pub fn jpeg_size(bytes: &[u8]) -> (usize, usize) {
    let (w, h, _) = jpeg_dims(bytes);
    (w, h)
}

/// Decodes a PNG: width, height, colour type and samples.
pub fn png_decode(bytes: &[u8]) -> (u32, u32, png::ColorType, Vec<u8>) {
    let mut r = png::Decoder::new(std::io::Cursor::new(bytes.to_vec()))
        .read_info()
        .unwrap();
    let mut buf = vec![0; r.output_buffer_size().unwrap()];
    let info = r.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info.width, info.height, info.color_type, buf)
}

/// The value of metric `name` (a full name, labels included) in `/metrics` text.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in metrics"))
}

/// The value of counter `name` (unlabelled) from the `/metrics` endpoint on `port`.
pub fn counter(port: u16, name: &str) -> u64 {
    metric(&metrics(port), &format!("{name} ")) as u64
}

/// The supervisor's `/metrics` text, from its endpoint on loopback `port`.
pub fn metrics(port: u16) -> String {
    use std::io::Write;
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut s = String::new();
    c.read_to_string(&mut s).unwrap();
    s
}

/// A server in built-in HTTP mode (`--http`) on a free loopback port, 2 workers,
/// serving the fixtures; `extra` arguments are appended.
pub fn start_http(extra: &[&std::ffi::OsStr], env: &[(&str, &str)]) -> (Server, u16) {
    let dir = TempDir::new("http");
    let port = free_port();
    let mut cmd = Command::new(bin());
    cmd.args(["--http", &format!("127.0.0.1:{port}")]);
    if !extra.iter().any(|a| *a == "--workers") {
        cmd.args(["--workers", "2"]);
    }
    cmd.args(extra)
        .env("FILESYSTEM_PREFIX", format!("{}/", fixtures().display()))
        .env("LOGFILE", dir.0.join("server.log"))
        .env("MEMCACHED_SERVERS", "")
        .stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().unwrap();
    let s = Server {
        child,
        addr: Addr::Tcp(port),
        dir,
    };
    s.wait_ready();
    (s, port)
}

/// A little-endian classic TIFF: one tiled directory with `tags` (type LONG unless
/// the tag is in `SHORTS`), tile data `blob` at offset 8.
pub fn tiff(tags: &[(u16, Vec<u32>)], blob: &[u8]) -> Vec<u8> {
    const SHORTS: [u16; 6] = [258, 259, 262, 277, 284, 317];
    let mut out = b"II*\0".to_vec();
    let ifd = 8 + blob.len() as u32;
    out.extend(ifd.to_le_bytes());
    out.extend(blob);
    let mut tags = tags.to_vec();
    tags.sort_by_key(|t| t.0);
    let mut extra = Vec::new();
    let extra_at = ifd + 2 + 12 * tags.len() as u32 + 4;
    let mut entries = Vec::new();
    for (tag, vals) in &tags {
        let short = SHORTS.contains(tag);
        let bytes: Vec<u8> = if short {
            vals.iter()
                .flat_map(|v| (*v as u16).to_le_bytes())
                .collect()
        } else {
            vals.iter().flat_map(|v| v.to_le_bytes()).collect()
        };
        entries.extend(tag.to_le_bytes());
        entries.extend((if short { 3u16 } else { 4u16 }).to_le_bytes());
        entries.extend((vals.len() as u32).to_le_bytes());
        if bytes.len() <= 4 {
            let mut b = bytes.clone();
            b.resize(4, 0);
            entries.extend(b);
        } else {
            entries.extend((extra_at + extra.len() as u32).to_le_bytes());
            extra.extend(bytes);
        }
    }
    out.extend((tags.len() as u16).to_le_bytes());
    out.extend(entries);
    out.extend(0u32.to_le_bytes());
    out.extend(extra);
    out
}

/// `vals` as `bits`-wide samples packed MSB-first, rows of `row` samples byte-aligned
/// (TIFF's layout for depths that are not whole bytes).
pub fn pack(bits: u32, row: usize, vals: &[u32]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in vals.chunks(row) {
        let (mut acc, mut have) = (0u64, 0u32);
        for &v in r {
            acc = (acc << bits) | u64::from(v);
            have += bits;
            while have >= 8 {
                have -= 8;
                out.push((acc >> have) as u8);
            }
        }
        if have > 0 {
            out.push((acc << (8 - have)) as u8);
        }
    }
    out
}

/// A 16×16 TIFF in one uncompressed tile: `samples` samples of `bits` bits per pixel,
/// photometric interpretation `photometric`, with extra tags.
pub fn one_tile_tiff(
    bits: u32,
    photometric: u32,
    samples: u32,
    vals: &[u32],
    extra: &[(u16, Vec<u32>)],
) -> Vec<u8> {
    let blob = pack(bits, 16 * samples as usize, vals);
    let mut tags = vec![
        (256, vec![16]),
        (257, vec![16]),
        (258, vec![bits; samples as usize]),
        (259, vec![1]),
        (262, vec![photometric]),
        (277, vec![samples]),
        (322, vec![16]),
        (323, vec![16]),
        (324, vec![8]),
        (325, vec![blob.len() as u32]),
    ];
    tags.extend_from_slice(extra);
    tiff(&tags, &blob)
}

/// A real memcached on a free loopback port (16 MB, no UDP), ready for connections.
pub fn start_memcached() -> (Child, u16) {
    let port = free_port();
    let mc = Command::new("memcached")
        .args([
            "-l",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "0",
            "-u",
            "root",
            "-m",
            "16",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("memcached is installed");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "memcached did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    (mc, port)
}

/// OpenSeadragon's build directory (`TESSERA_OSD_DIR`, else the npm install under
/// `target/viewer`), for browser tests.
pub fn osd_dir() -> PathBuf {
    let dir = std::env::var("TESSERA_OSD_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/viewer/node_modules/openseadragon/build/openseadragon")
        });
    assert!(
        dir.join("openseadragon.min.js").is_file(),
        "OpenSeadragon is missing in {}: run `npm install --prefix target/viewer openseadragon@6`",
        dir.display()
    );
    dir
}

/// The child processes of `pid` (a server's workers).
pub fn children(pid: i32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .map(|s| s.parse().unwrap())
        .collect()
}

/// The server's `n` worker processes, once all have started.
pub fn started_workers(s: &Server, n: usize) -> Vec<i32> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while children(s.pid()).len() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let workers = children(s.pid());
    assert_eq!(workers.len(), n);
    workers
}

/// Whether `f` comes true within `limit` (looked at every 2 ms).
pub fn wait_for(mut f: impl FnMut() -> bool, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}
