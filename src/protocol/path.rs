//! Image path decoding and containment (docs/server.md §3).
//!
//! Client paths are URL-decoded and stripped of `../` exactly as iipsrv does, then
//! joined with `FILESYSTEM_PREFIX`/`FILESYSTEM_SUFFIX`. On top of iipsrv, when a prefix
//! is configured the canonical path must stay below the prefix's directory, so neither
//! a trailing `..` nor a symlink can lead out of the image root.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// Why a client path was refused. Messages quote only what the client sent.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("{0} is neither a file nor part of an image sequence")]
    NotFound(String),
    #[error("{0} is outside the image root")]
    Outside(String),
    #[error("There are multiple file extensions matching {0}")]
    Ambiguous(String),
}

impl PathError {
    pub fn status(&self) -> u16 {
        match self {
            PathError::NotFound(_) | PathError::Ambiguous(_) => 404,
            PathError::Outside(_) => 403,
        }
    }
}

/// How a piece of a request carries an image path, which decides what `+` means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// A query-string value (form encoding): `+` is a space, as iipsrv reads every path.
    Form,
    /// A URL path (RFC 3986): `+` is itself. Clients encode a space there as `%20`, and a
    /// `+` in a file name must survive `encodeURIComponent`'s `%2B` and a second decoding.
    Path,
}

/// iipsrv's URL decoding: `+` → space, `%XY` → byte, `%00` dropped, a `%` without two
/// hex digits kept literally. Invalid UTF-8 is replaced.
pub fn url_decode(s: &str) -> String {
    percent_decode(s, Encoding::Form)
}

/// [`url_decode`], with `+` read as `encoding` says.
pub fn percent_decode(s: &str, encoding: Encoding) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' if encoding == Encoding::Form => out.push(b' '),
            b'%' => {
                if let Some(v) = hex_pair(b, i + 1) {
                    if v != 0 {
                        out.push(v);
                    }
                    i += 3;
                    continue;
                }
                out.push(b'%')
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The byte written as two hex digits at `b[i..i + 2]`, if they are there.
fn hex_pair(b: &[u8], i: usize) -> Option<u8> {
    let hex = |c: u8| (c as char).to_digit(16);
    let h = hex(*b.get(i)?)?;
    let l = hex(*b.get(i + 1)?)?;
    Some((h * 16 + l) as u8)
}

/// Text from a request made fit to hand back inside a URL (an IIIF `id`, a `Location`):
/// valid escapes and every character a URI allows are kept as the client wrote them, so
/// the client gets back the identifier it used; spaces, controls, non-ASCII and the few
/// ASCII characters a URI never holds raw are percent-encoded, as is a `%` that starts
/// no escape. A `+` of a form becomes `%20`, the space it stood for. Decoding the result
/// as a path gives what decoding the input as `encoding` gave.
pub fn uri_escape(s: &str, encoding: Encoding) -> String {
    let b = s.as_bytes();
    let mut out = String::with_capacity(b.len());
    for (i, &c) in b.iter().enumerate() {
        let keep = match c {
            b'%' => hex_pair(b, i + 1).is_some(),
            b'+' => encoding == Encoding::Path,
            b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}' | b'#' => false,
            _ => c.is_ascii_graphic(),
        };
        if keep {
            out.push(c as char);
        } else if c == b'+' {
            out.push_str("%20");
        } else {
            let _ = write!(out, "%{c:02X}");
        }
    }
    out
}

/// Removes every `../` until none is left (`....//` → empty), as iipsrv does.
pub fn filter_dotdot(s: &str) -> String {
    let mut s = s.to_owned();
    // Each pass removes at least one occurrence, so this ends within len/3 passes.
    while let Some(p) = s.find("../") {
        s.replace_range(p..p + 3, "");
    }
    s
}

/// The decoded, filtered request path: the cache key and what messages quote.
pub fn client_path(raw: &str, encoding: Encoding) -> String {
    filter_dotdot(&percent_decode(raw, encoding))
}

/// A path checked by [`resolve`]: the file it named (device, inode) and when.
struct Checked {
    canonical: PathBuf,
    file: (u64, u64),
    at: Instant,
}

/// How long a containment check is trusted for the same file.
const CHECK_TTL: Duration = Duration::from_secs(2);
/// Most remembered checks per worker.
const MAX_CHECKED: usize = 4096;

thread_local! {
    /// Recent containment checks by full path: canonicalising costs a `readlink` per path
    /// component, and a viewer asks for the same image hundreds of times a second.
    static CHECKED: RefCell<HashMap<PathBuf, Checked>> = RefCell::new(HashMap::new());
    /// The canonical image root, per prefix.
    static ROOTS: RefCell<HashMap<String, Option<PathBuf>>> = RefCell::new(HashMap::new());
}

/// Resolves a client path (already decoded and filtered) to a regular file on disk:
/// its canonical path and modification time.
///
/// One `stat` per request: a full check (canonical path below the image root) is reused
/// for [`CHECK_TTL`] as long as the path still names the same file, so a symlink that is
/// re-pointed elsewhere is checked again at once.
pub fn resolve(
    client: &str,
    prefix: &str,
    suffix: &str,
) -> Result<(PathBuf, SystemTime), PathError> {
    let not_found = || PathError::NotFound(client.to_owned());
    let full = PathBuf::from(format!("{prefix}{client}{suffix}"));
    let meta = full.metadata().map_err(|_| not_found())?;
    if !meta.is_file() {
        return Err(not_found());
    }
    let mtime = meta.modified().map_err(|_| not_found())?;
    let file = (meta.dev(), meta.ino());
    let now = Instant::now();
    let known = CHECKED.with_borrow(|c| {
        c.get(&full)
            .filter(|k| k.file == file && now.duration_since(k.at) < CHECK_TTL)
            .map(|k| k.canonical.clone())
    });
    if let Some(canonical) = known {
        return Ok((canonical, mtime));
    }
    let canonical = full.canonicalize().map_err(|_| not_found())?;
    if !prefix.is_empty() {
        let root = ROOTS
            .with_borrow_mut(|r| {
                r.entry(prefix.to_owned())
                    .or_insert_with(|| image_root(prefix))
                    .clone()
            })
            .ok_or_else(not_found)?;
        if !canonical.starts_with(&root) {
            return Err(PathError::Outside(client.to_owned()));
        }
    }
    CHECKED.with_borrow_mut(|c| {
        if c.len() >= MAX_CHECKED {
            c.retain(|_, k| now.duration_since(k.at) < CHECK_TTL);
            if c.len() >= MAX_CHECKED {
                c.clear();
            }
        }
        c.insert(
            full,
            Checked {
                canonical: canonical.clone(),
                file,
                at: now,
            },
        );
    });
    Ok((canonical, mtime))
}

/// An image sequence (docs/sources.md §7): files `<stem><X>_<Y>.<ext>` in one directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequence {
    pub dir: PathBuf,
    /// File-name stem: the client path's last component followed by the pattern.
    pub stem: String,
    pub ext: String,
    pub horizontal: Vec<i32>,
    pub vertical: Vec<i32>,
}

/// Most directory entries examined when looking for a sequence.
const MAX_SEQUENCE_ENTRIES: usize = 1 << 20;

impl Sequence {
    /// The file of view `(x, y)`: angles zero-padded to at least three digits.
    pub fn file(&self, x: i32, y: i32) -> PathBuf {
        self.dir
            .join(format!("{}{x:03}_{y:03}.{}", self.stem, self.ext))
    }
}

/// Looks for the sequence `<prefix><client><pattern>X_Y.ext` when `<prefix><client>` is not
/// a file. The directory is listed and names are matched literally: nothing the client
/// sent is used as a glob.
pub fn sequence(client: &str, prefix: &str, pattern: &str) -> Result<Sequence, PathError> {
    let not_found = || PathError::NotFound(client.to_owned());
    let full = format!("{prefix}{client}");
    let (dir, name) = match full.rfind('/') {
        Some(i) => (&full[..=i], &full[i + 1..]),
        None => ("./", full.as_str()),
    };
    if name.is_empty() || pattern.is_empty() {
        return Err(not_found());
    }
    let dir = Path::new(dir).canonicalize().map_err(|_| not_found())?;
    if !prefix.is_empty() {
        let root = image_root(prefix).ok_or_else(not_found)?;
        if !dir.starts_with(&root) {
            return Err(PathError::Outside(client.to_owned()));
        }
    }
    let stem = format!("{name}{pattern}");
    // (X, Y, extension) of every matching file name.
    let mut views: Vec<(i32, i32, String)> = Vec::new();
    for entry in std::fs::read_dir(&dir)
        .map_err(|_| not_found())?
        .take(MAX_SEQUENCE_ENTRIES)
        .flatten()
    {
        let file = entry.file_name();
        let Some(rest) = file.to_str().and_then(|f| f.strip_prefix(stem.as_str())) else {
            continue;
        };
        let Some((angles, ext)) = rest.split_once('.') else {
            continue;
        };
        let Some((x, y)) = angles.split_once('_') else {
            continue;
        };
        let number = |s: &str| -> Option<i32> {
            (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .then(|| s.parse().ok())
                .flatten()
        };
        if let (Some(x), Some(y)) = (number(x), number(y)) {
            views.push((x, y, ext.to_owned()));
        }
    }
    let firsts: Vec<&String> = views
        .iter()
        .filter(|(x, y, _)| (*x, *y) == (0, 90))
        .map(|v| &v.2)
        .collect();
    let ext = match firsts[..] {
        [] => return Err(not_found()),
        [e] => e.clone(),
        _ => return Err(PathError::Ambiguous(format!("{client}{pattern}000_090.*"))),
    };
    let mut horizontal: Vec<i32> = views
        .iter()
        .filter(|(_, y, e)| *y == 90 && *e == ext)
        .map(|v| v.0)
        .collect();
    let mut vertical: Vec<i32> = views
        .iter()
        .filter(|(x, _, e)| *x == 0 && *e == ext)
        .map(|v| v.1)
        .collect();
    // The first file must be a file of this directory, not a link out of it.
    let first = dir.join(format!("{stem}000_090.{ext}"));
    if !first
        .canonicalize()
        .is_ok_and(|p| p.parent() == Some(dir.as_path()) && p.is_file())
    {
        return Err(PathError::Outside(client.to_owned()));
    }
    horizontal.sort_unstable();
    horizontal.dedup();
    vertical.sort_unstable();
    vertical.dedup();
    Ok(Sequence {
        dir,
        stem,
        ext,
        horizontal,
        vertical,
    })
}

/// The directory a prefix confines paths to: the prefix itself when it ends in `/`,
/// else its parent (a prefix may end in a file-name stem, e.g. `/images/scan_`).
fn image_root(prefix: &str) -> Option<PathBuf> {
    let p = Path::new(prefix);
    let dir = if prefix.ends_with('/') {
        p
    } else {
        p.parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
    };
    dir.canonicalize().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_f30() {
        assert_eq!(url_decode("a%2Bb+c%00d%zz"), "a+b cd%zz");
        assert_eq!(url_decode("small%2Etif"), "small.tif");
        assert_eq!(url_decode("x%4"), "x%4");
        assert_eq!(url_decode("%"), "%");
        assert_eq!(url_decode("%2541"), "%41");
    }

    #[test]
    fn plus_is_a_space_only_in_forms() {
        assert_eq!(percent_decode("a+b%2Bc%20d", Encoding::Form), "a b+c d");
        assert_eq!(percent_decode("a+b%2Bc%20d", Encoding::Path), "a+b+c d");
        // A second decoding (IIIF identifiers) keeps the `+` the first one made.
        let once = percent_decode("a%252Fb%2Bc", Encoding::Form);
        assert_eq!(percent_decode(&once, Encoding::Path), "a/b+c");
    }

    #[test]
    fn escaped_for_urls() {
        let path = |s| uri_escape(s, Encoding::Path);
        assert_eq!(path("/iiif/dir%2Fa.tif"), "/iiif/dir%2Fa.tif");
        assert_eq!(path("/iiif/a+b.tif"), "/iiif/a+b.tif");
        assert_eq!(uri_escape("a+b%2Bc", Encoding::Form), "a%20b%2Bc");
        assert_eq!(path("/Åsa ø.tif"), "/%C3%85sa%20%C3%B8.tif");
        assert_eq!(path("a\r\n\"<%zz%4"), "a%0D%0A%22%3C%25zz%254");
        for s in ["/a b+c%2F%zz\"x", "/Åsa%20ø#1+"] {
            for e in [Encoding::Path, Encoding::Form] {
                assert_eq!(
                    percent_decode(&uri_escape(s, e), Encoding::Path),
                    percent_decode(s, e)
                );
            }
        }
    }

    #[test]
    fn dotdot_f31() {
        assert_eq!(filter_dotdot("....//x/../y"), "x/y");
        assert_eq!(filter_dotdot("../../etc/passwd"), "etc/passwd");
        assert_eq!(filter_dotdot("a/.."), "a/..");
        assert_eq!(
            client_path("..%2F..%2Fetc%2Fpasswd", Encoding::Form),
            "etc/passwd"
        );
        assert_eq!(client_path("%2e%2e/x", Encoding::Path), "x");
    }

    #[test]
    fn sequences_are_listed_not_globbed() {
        let base = std::env::temp_dir().join(format!("tessera-seq-{}", std::process::id()));
        std::fs::create_dir_all(&base).unwrap();
        for f in [
            "FZ1_pyr_000_090.tif",
            "FZ1_pyr_010_090.tif",
            "FZ1_pyr_000_100.tif",
            "FZ1_pyr_x_090.tif",
            "FZ1_pyr_020_090.jpg",
            "FZ2_pyr_000_090.tif",
            "FZ2_pyr_000_090.jp2",
            "F*_pyr_000_090.tif",
        ] {
            std::fs::write(base.join(f), b"x").unwrap();
        }
        let prefix = format!("{}/", base.display());
        let s = sequence("FZ1", &prefix, "_pyr_").unwrap();
        assert_eq!(
            (s.horizontal.clone(), s.vertical.clone()),
            (vec![0, 10], vec![90, 100])
        );
        assert_eq!(s.ext, "tif");
        assert!(s.file(10, 90).ends_with("FZ1_pyr_010_090.tif"));
        assert!(
            matches!(sequence("FZ2", &prefix, "_pyr_"), Err(PathError::Ambiguous(m)) if m == "FZ2_pyr_000_090.*")
        );
        assert_eq!(
            sequence("FZ3", &prefix, "_pyr_"),
            Err(PathError::NotFound("FZ3".into()))
        );
        // A client's `*` is a literal character, not a wildcard.
        assert_eq!(
            sequence("F*", &prefix, "_pyr_").unwrap().horizontal,
            vec![0]
        );
        assert_eq!(
            sequence("Q*", &prefix, "_pyr_"),
            Err(PathError::NotFound("Q*".into()))
        );
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn containment() {
        let base = std::env::temp_dir().join(format!("tessera-path-{}", std::process::id()));
        let root = base.join("root");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a.tif"), b"x").unwrap();
        std::fs::write(base.join("secret.tif"), b"x").unwrap();
        std::os::unix::fs::symlink(base.join("secret.tif"), root.join("link.tif")).unwrap();
        let prefix = format!("{}/", root.display());

        assert!(resolve("sub/a.tif", &prefix, "").is_ok());
        assert_eq!(
            resolve("nope.tif", &prefix, ""),
            Err(PathError::NotFound("nope.tif".into()))
        );
        assert_eq!(
            resolve("link.tif", &prefix, ""),
            Err(PathError::Outside("link.tif".into()))
        );
        assert_eq!(
            resolve("sub/../../secret.tif", &prefix, ""),
            Err(PathError::Outside("sub/../../secret.tif".into()))
        );
        // A remembered check does not survive re-pointing a link out of the root.
        let moving = root.join("moving.tif");
        std::os::unix::fs::symlink(root.join("sub/a.tif"), &moving).unwrap();
        assert!(resolve("moving.tif", &prefix, "").is_ok());
        std::fs::remove_file(&moving).unwrap();
        std::os::unix::fs::symlink(base.join("secret.tif"), &moving).unwrap();
        assert_eq!(
            resolve("moving.tif", &prefix, ""),
            Err(PathError::Outside("moving.tif".into()))
        );
        // A directory is not an image.
        assert!(matches!(
            resolve("sub", &prefix, ""),
            Err(PathError::NotFound(_))
        ));
        // Suffix and stem prefixes.
        let stem = format!("{}/sub/", root.display());
        assert!(resolve("a", &stem, ".tif").is_ok());
        // Messages never carry the prefix.
        let msg = resolve("nope.tif", &prefix, "").unwrap_err().to_string();
        assert!(!msg.contains(&prefix));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
