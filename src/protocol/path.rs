//! Image path decoding and containment (server.md §4).
//!
//! Client paths are URL-decoded and stripped of `../` exactly as iipsrv does, then
//! joined with `FILESYSTEM_PREFIX`/`FILESYSTEM_SUFFIX`. On top of iipsrv, when a prefix
//! is configured the canonical path must stay below the prefix's directory, so neither
//! a trailing `..` nor a symlink can lead out of the image root.

use std::path::{Path, PathBuf};

/// Why a client path was refused. Messages quote only what the client sent.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("{0} is neither a file nor part of an image sequence")]
    NotFound(String),
    #[error("{0} is outside the image root")]
    Outside(String),
}

impl PathError {
    pub fn status(&self) -> u16 {
        match self {
            PathError::NotFound(_) => 404,
            PathError::Outside(_) => 403,
        }
    }
}

/// iipsrv's URL decoding: `+` → space, `%XY` → byte, `%00` dropped, a `%` without two
/// hex digits kept literally. Invalid UTF-8 is replaced.
pub fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = |c: u8| (c as char).to_digit(16);
                match (
                    b.get(i + 1).copied().and_then(hex),
                    b.get(i + 2).copied().and_then(hex),
                ) {
                    (Some(h), Some(l)) => {
                        let v = (h * 16 + l) as u8;
                        if v != 0 {
                            out.push(v);
                        }
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
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
pub fn client_path(raw: &str) -> String {
    filter_dotdot(&url_decode(raw))
}

/// Resolves a client path (already decoded and filtered) to a regular file on disk.
pub fn resolve(client: &str, prefix: &str, suffix: &str) -> Result<PathBuf, PathError> {
    let full = PathBuf::from(format!("{prefix}{client}{suffix}"));
    let canonical = full
        .canonicalize()
        .map_err(|_| PathError::NotFound(client.to_owned()))?;
    if !prefix.is_empty() {
        let root = image_root(prefix).ok_or_else(|| PathError::NotFound(client.to_owned()))?;
        if !canonical.starts_with(&root) {
            return Err(PathError::Outside(client.to_owned()));
        }
    }
    match canonical.metadata() {
        Ok(m) if m.is_file() => Ok(canonical),
        _ => Err(PathError::NotFound(client.to_owned())),
    }
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
    fn dotdot_f31() {
        assert_eq!(filter_dotdot("....//x/../y"), "x/y");
        assert_eq!(filter_dotdot("../../etc/passwd"), "etc/passwd");
        assert_eq!(filter_dotdot("a/.."), "a/..");
        assert_eq!(client_path("..%2F..%2Fetc%2Fpasswd"), "etc/passwd");
        assert_eq!(client_path("%2e%2e/x"), "x");
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
