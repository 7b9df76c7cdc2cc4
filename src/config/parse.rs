//! The syntaxes of the settings that are more than one number or word: the environment
//! file, `TRUSTED_PROXIES` and `URI_MAP`, and iipsrv's booleans. Kept apart from the
//! list of settings so that reading each variable stays one line there, and so that
//! what iipsrv's configurations may contain is parsed, and tested, in one place.

use super::{ConfigError, MappedProtocol, TrustedProxy, UriMap};
use crate::cnum::atoi;
use std::collections::HashMap;
use std::path::Path;

/// An iipsrv boolean: `atoi(v) != 0` (so `true` is false, as in iipsrv).
pub(super) fn atob(s: &str) -> bool {
    atoi(s) != 0
}

/// Reads `KEY=VALUE` lines: blank lines and `#` comments skipped, optional `export `,
/// values optionally in single or double quotes.
pub fn parse_env_file(path: &Path) -> Result<HashMap<String, String>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::File {
        path: path.to_owned(),
        source,
    })?;
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((k, v)) = line.split_once('=') else {
            return Err(ConfigError::Syntax {
                path: path.to_owned(),
                line: i + 1,
            });
        };
        let v = v.trim();
        let v = if v.len() >= 2
            && ((v.starts_with('"') && v.ends_with('"'))
                || (v.starts_with('\'') && v.ends_with('\'')))
        {
            &v[1..v.len() - 1]
        } else {
            v
        };
        out.insert(k.trim().to_owned(), v.to_owned());
    }
    Ok(out)
}

/// One entry of `TRUSTED_PROXIES`: `unix`, an address, or `addr/prefix`.
fn trusted_proxy(s: &str) -> Option<TrustedProxy> {
    if s.eq_ignore_ascii_case("unix") {
        return Some(TrustedProxy::Unix);
    }
    let (addr, bits) = match s.split_once('/') {
        Some((a, b)) => (a, Some(b.parse::<u8>().ok()?)),
        None => (s, None),
    };
    let addr: std::net::IpAddr = addr.trim_matches(|c| c == '[' || c == ']').parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let bits = bits.unwrap_or(max);
    (bits <= max).then_some(TrustedProxy::Net(addr, bits))
}

/// Parses `TRUSTED_PROXIES`: entries separated by commas or whitespace; entries that
/// are not an address, a network or `unix` are skipped (and listed in the start-up log).
pub fn parse_trusted_proxies(v: &str) -> (Vec<TrustedProxy>, Vec<String>) {
    let mut ok = Vec::new();
    let mut bad = Vec::new();
    for e in v
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|e| !e.is_empty())
    {
        match trusted_proxy(e) {
            Some(t) => ok.push(t),
            None => bad.push(e.to_owned()),
        }
    }
    (ok, bad)
}

/// Parses `URI_MAP`: entries `prefix=>protocol`, separated by whitespace or commas.
/// Unknown protocols are skipped (and logged by the caller through `summary`).
pub fn parse_uri_map(v: &str) -> Vec<UriMap> {
    v.split(|c: char| c.is_whitespace() || c == ',')
        .filter_map(|entry| {
            let (prefix, proto) = entry.split_once("=>")?;
            let protocol = match proto.trim().to_ascii_lowercase().as_str() {
                "iip" => MappedProtocol::Iip,
                "iiif" => MappedProtocol::Iiif,
                "deepzoom" => MappedProtocol::DeepZoom,
                "zoomify" => MappedProtocol::Zoomify,
                _ => {
                    log::warn!("URI_MAP: unknown protocol '{proto}' ignored");
                    return None;
                }
            };
            Some(UriMap {
                prefix: prefix.trim().trim_matches('/').to_owned(),
                protocol,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_map_entries() {
        let m = parse_uri_map("iiif=>IIIF dz=>DeepZoom,zoomify=>zoomify bad=>nope");
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].prefix, "iiif");
        assert_eq!(m[0].protocol, MappedProtocol::Iiif);
        assert_eq!(m[1].protocol, MappedProtocol::DeepZoom);
        assert_eq!(m[2].protocol, MappedProtocol::Zoomify);
        assert_eq!(parse_uri_map("=>IIP")[0].prefix, "");
    }

    #[test]
    fn env_file_overrides() {
        let dir = std::env::temp_dir().join(format!("tessera-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("env");
        std::fs::write(
            &f,
            "# comment\n\nexport JPEG_QUALITY=90\nCORS=\"*\"\nLOGFILE='/tmp/x.log'\n",
        )
        .unwrap();
        let vars = parse_env_file(&f).unwrap();
        assert_eq!(vars["JPEG_QUALITY"], "90");
        assert_eq!(vars["CORS"], "*");
        assert_eq!(vars["LOGFILE"], "/tmp/x.log");
        std::fs::write(&f, "NOEQUALS\n").unwrap();
        assert!(matches!(
            parse_env_file(&f),
            Err(ConfigError::Syntax { line: 1, .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
