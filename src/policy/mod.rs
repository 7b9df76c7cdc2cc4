//! The access policy file (`ACCESS_POLICY`, TOML): which images are public, degraded
//! or restricted, the keys tokens and signed URLs are checked with, and the texts the
//! IIIF authorisation services show. Read at start-up and on every reload.

pub mod pattern;

use pattern::Pattern;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// What a policy file could not be used for, naming the file and what to fix.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("cannot read access policy {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("access policy {path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("access policy {path}, rule {rule}: {message}")]
    Rule {
        path: PathBuf,
        rule: usize,
        message: String,
    },
    #[error("access policy {path}: cannot read key file {key}: {source}")]
    Key {
        path: PathBuf,
        key: PathBuf,
        source: std::io::Error,
    },
    #[error("access policy {path}: {message}")]
    Keys { path: PathBuf, message: String },
}

/// What a rule lets a client without a grant see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Public,
    /// The image as if it were no larger than this many pixels on its longer side.
    Degraded(u32),
    Restricted,
}

/// The IIIF Authorization Flow profile of a rule's access service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    #[default]
    Active,
    Kiosk,
    External,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Active => "active",
            Profile::Kiosk => "kiosk",
            Profile::External => "external",
        }
    }
}

/// The texts and links of the IIIF authorisation services of a rule.
#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthText {
    #[serde(default)]
    pub profile: Profile,
    /// Where the institution's login page is (the access service's `id`).
    pub access_service: Option<String>,
    /// Where the institution's logout page is; tessera's own cookie-clearing page if unset.
    pub logout_service: Option<String>,
    pub label: Option<String>,
    pub heading: Option<String>,
    pub note: Option<String>,
    pub confirm_label: Option<String>,
    /// What the probe tells a client that may not see the image.
    pub probe_heading: Option<String>,
    pub probe_note: Option<String>,
}

/// One rule: the images it covers and what it allows.
#[derive(Debug, Clone)]
pub struct PolicyRule {
    pub pattern: Pattern,
    pub rule: Rule,
    /// Whether a valid `sig`/`exp` pair in the URL grants full access.
    pub signed_urls: bool,
    pub auth: AuthText,
}

/// The keys tokens may be signed with.
#[derive(Clone, Default)]
pub struct TokenKeys {
    pub hs256: Option<Vec<u8>>,
    pub ed25519_pem: Option<Vec<u8>>,
    pub audience: Option<String>,
    pub cookie: String,
}

impl std::fmt::Debug for TokenKeys {
    // Secrets are never printed, not even in debug logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys")
            .field("hs256", &self.hs256.as_ref().map(|_| "<secret>"))
            .field("ed25519", &self.ed25519_pem.is_some())
            .field("audience", &self.audience)
            .field("cookie", &self.cookie)
            .finish()
    }
}

/// A loaded policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub rules: Vec<PolicyRule>,
    pub tokens: TokenKeys,
    /// The key signed URLs are checked with.
    pub url_key: Option<Vec<u8>>,
    /// Seconds an access token handed out by the token service lives.
    pub token_lifetime: u64,
    /// Changes whenever the file or a key changes: cached answers made under another
    /// policy must not be served under this one.
    pub digest: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    tokens: RawTokens,
    #[serde(default)]
    signed_urls: RawSigned,
    #[serde(default)]
    rule: Vec<RawRule>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTokens {
    audience: Option<String>,
    cookie: Option<String>,
    hs256_secret_file: Option<PathBuf>,
    ed25519_public_key_file: Option<PathBuf>,
    lifetime: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSigned {
    key_file: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    path: String,
    access: String,
    max_size: Option<u32>,
    #[serde(default)]
    signed_urls: bool,
    #[serde(default)]
    auth: AuthText,
}

/// The cookie tokens are read from when the policy names none.
pub const DEFAULT_COOKIE: &str = "tessera_token";

impl Policy {
    /// Reads and checks a policy file; key files are relative to its directory.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.to_owned(),
            source,
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Policy::parse(&text, dir).map_err(|e| e.at(path))
    }

    /// Parses policy text; `dir` is where relative key files are found.
    pub fn parse(text: &str, dir: &Path) -> Result<Policy, PolicyError> {
        let none = PathBuf::new();
        let raw: RawPolicy = toml::from_str(text).map_err(|e| PolicyError::Syntax {
            path: none.clone(),
            message: e.message().to_owned(),
        })?;
        let mut rules = Vec::with_capacity(raw.rule.len());
        for (i, r) in raw.rule.into_iter().enumerate() {
            let bad = |message: String| PolicyError::Rule {
                path: none.clone(),
                rule: i + 1,
                message,
            };
            let pattern = Pattern::new(&r.path).map_err(|e| bad(e.to_string()))?;
            let rule = match (r.access.as_str(), r.max_size) {
                ("public", None) => Rule::Public,
                ("restricted", None) => Rule::Restricted,
                ("degraded", Some(m)) if m > 0 => Rule::Degraded(m),
                ("degraded", _) => {
                    return Err(bad(
                        "`degraded` needs `max_size`, a number of pixels above 0".into(),
                    ))
                }
                ("public" | "restricted", Some(_)) => {
                    return Err(bad(
                        "`max_size` only goes with `access = \"degraded\"`".into()
                    ))
                }
                (other, _) => {
                    return Err(bad(format!(
                        "access {other:?} is none of \"public\", \"degraded\", \"restricted\""
                    )))
                }
            };
            rules.push(PolicyRule {
                pattern,
                rule,
                signed_urls: r.signed_urls,
                auth: r.auth,
            });
        }
        let read_key = |p: &Path| {
            std::fs::read(dir.join(p)).map_err(|source| PolicyError::Key {
                path: none.clone(),
                key: p.to_owned(),
                source,
            })
        };
        let trim = |mut v: Vec<u8>| {
            // Secret files usually end in a newline that is no part of the secret.
            while v.last().is_some_and(|b| b.is_ascii_whitespace()) {
                v.pop();
            }
            v
        };
        let hs256 = raw
            .tokens
            .hs256_secret_file
            .as_deref()
            .map(read_key)
            .transpose()?
            .map(trim);
        let ed25519_pem = raw
            .tokens
            .ed25519_public_key_file
            .as_deref()
            .map(read_key)
            .transpose()?;
        let keys_err = |message: &str| PolicyError::Keys {
            path: none.clone(),
            message: message.to_owned(),
        };
        if hs256.as_ref().is_some_and(|k| k.len() < 32) {
            return Err(keys_err("the HS256 secret must be at least 32 bytes"));
        }
        if let Some(pem) = &ed25519_pem {
            if jsonwebtoken::DecodingKey::from_ed_pem(pem).is_err() {
                return Err(keys_err(
                    "the Ed25519 public key file is not a PEM public key",
                ));
            }
        }
        let url_key = raw
            .signed_urls
            .key_file
            .as_deref()
            .map(read_key)
            .transpose()?
            .map(trim);
        if url_key.as_ref().is_some_and(|k| k.len() < 32) {
            return Err(keys_err("the signed-URL key must be at least 32 bytes"));
        }
        if rules.iter().any(|r| r.signed_urls) && url_key.is_none() {
            return Err(keys_err(
                "a rule accepts signed URLs but [signed_urls] names no key_file",
            ));
        }
        let mut digest_parts: Vec<&[u8]> = vec![text.as_bytes()];
        for k in [&hs256, &ed25519_pem, &url_key].into_iter().flatten() {
            digest_parts.push(k);
        }
        let digest = shm::key(&digest_parts).0;
        Ok(Policy {
            rules,
            tokens: TokenKeys {
                hs256,
                ed25519_pem,
                audience: raw.tokens.audience,
                cookie: raw
                    .tokens
                    .cookie
                    .unwrap_or_else(|| DEFAULT_COOKIE.to_owned()),
            },
            url_key,
            token_lifetime: raw.tokens.lifetime.unwrap_or(3600).clamp(60, 86400 * 7),
            digest,
        })
    }

    /// The first rule covering `path` (relative to `FILESYSTEM_PREFIX`), if any: images
    /// no rule covers are public.
    pub fn rule_for(&self, path: &str) -> Option<&PolicyRule> {
        self.rules.iter().find(|r| r.pattern.matches(path))
    }
}

impl PolicyError {
    fn at(self, p: &Path) -> PolicyError {
        let path = p.to_owned();
        match self {
            PolicyError::Syntax { message, .. } => PolicyError::Syntax { path, message },
            PolicyError::Rule { rule, message, .. } => PolicyError::Rule {
                path,
                rule,
                message,
            },
            PolicyError::Key { key, source, .. } => PolicyError::Key { path, key, source },
            PolicyError::Keys { message, .. } => PolicyError::Keys { path, message },
            e @ PolicyError::Read { .. } => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Policy, PolicyError> {
        Policy::parse(text, Path::new("/nonexistent"))
    }

    #[test]
    fn first_matching_rule_wins() {
        let p = parse(
            r#"
            [[rule]]
            path = "open/special.tif"
            access = "restricted"
            [[rule]]
            path = "open"
            access = "public"
            [[rule]]
            path = "**/*.tif"
            access = "degraded"
            max_size = 800
            "#,
        )
        .unwrap();
        let rule = |path: &str| p.rule_for(path).map(|r| r.rule);
        assert_eq!(rule("open/special.tif"), Some(Rule::Restricted));
        assert_eq!(rule("open/other.tif"), Some(Rule::Public));
        assert_eq!(rule("closed/x.tif"), Some(Rule::Degraded(800)));
        assert_eq!(rule("x.tif"), Some(Rule::Degraded(800)));
        assert_eq!(rule("closed/x.jp2"), None);
    }

    /// The example policy in the README is one tessera accepts, and means what it says.
    #[test]
    fn the_readme_example_loads() {
        let readme = include_str!("../../README.md");
        let start = readme
            .find("# /etc/tessera/access.toml")
            .expect("the README has an example policy");
        let text = &readme[start..start + readme[start..].find("```").unwrap()];
        let dir = std::env::temp_dir().join(format!("tessera-policy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("hs256.key"), [b'k'; 32]).unwrap();
        std::fs::write(dir.join("url.key"), [b'u'; 40]).unwrap();
        // The public key of RFC 8410's example.
        std::fs::write(
            dir.join("login.pub.pem"),
            "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n",
        )
        .unwrap();
        let p = Policy::parse(text, &dir);
        let _ = std::fs::remove_dir_all(&dir);
        let p = p.unwrap();
        assert_eq!(p.tokens.cookie, "archive_session");
        assert_eq!(
            p.rule_for("public/a.tif").map(|r| r.rule),
            Some(Rule::Public)
        );
        let m = p.rule_for("manuscripts/1901/a.tif").unwrap();
        assert_eq!((m.rule, m.signed_urls), (Rule::Degraded(800), true));
        assert_eq!(m.auth.profile, Profile::Active);
        assert_eq!(
            p.rule_for("other.tif").map(|r| r.rule),
            Some(Rule::Restricted)
        );
    }

    #[test]
    fn mistakes_are_named() {
        let e = parse("[[rule]]\npath = \"a\"\naccess = \"degraded\"\n").unwrap_err();
        assert!(e.to_string().contains("max_size"), "{e}");
        let e = parse("[[rule]]\npath = \"a\"\naccess = \"secret\"\n").unwrap_err();
        assert!(e.to_string().contains("rule 1"), "{e}");
        let e =
            parse("[[rule]]\npath = \"a\"\naccess = \"public\"\nsigned_urls = true\n").unwrap_err();
        assert!(e.to_string().contains("key_file"), "{e}");
        let e = parse("[tokens]\nhs256_secret_file = \"missing\"\n").unwrap_err();
        assert!(e.to_string().contains("missing"), "{e}");
        let e = parse("[[rule]]\npath = \"a\"\naccess = \"public\"\ncolour = 1\n").unwrap_err();
        assert!(matches!(e, PolicyError::Syntax { .. }), "{e}");
    }
}
