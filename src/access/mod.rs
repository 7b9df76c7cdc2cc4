//! Access control: the policy (`ACCESS_POLICY`), the credentials a request carries
//! (a token, a signed URL), and the one decision every protocol takes from them when
//! it opens an image. Without a policy every image is public.

pub mod auth2;
pub mod signed;
pub mod token;

use crate::config::Config;
use crate::model::Access;
pub use crate::policy::{pattern, Policy, PolicyError, PolicyRule, Rule};
use crate::response::Response;
use signed::Signature;
use token::Grant;

/// What a request presents, checked once before anything is looked up.
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub grant: Option<Grant>,
    pub signature: Signature,
    /// Identifies what these credentials can open under this policy, for cache keys of
    /// whole answers (0 without a policy).
    pub fingerprint: u64,
}

/// The request headers and target credentials are read from.
pub struct Presented<'a> {
    pub authorization: Option<&'a str>,
    pub cookies: Option<&'a str>,
    /// The request target as sent (path and query), for signed URLs.
    pub uri: Option<&'a str>,
}

/// The seconds since the epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Checks the token and signature a request presents.
pub fn credentials(policy: &Policy, p: &Presented) -> Credentials {
    let grant = token::presented(p.authorization, p.cookies, &policy.tokens.cookie).and_then(|t| {
        match token::verify(&policy.tokens, t) {
            Ok(g) => Some(g),
            Err(e) => {
                log::info!("access: {e}");
                None
            }
        }
    });
    let signature = match p.uri {
        Some(uri) => signed::check(policy.url_key.as_deref(), uri, now()),
        None => Signature::Absent,
    };
    let mut parts: Vec<&[u8]> = vec![b"grant"];
    let digest = policy.digest.to_le_bytes();
    parts.push(&digest);
    if let Some(g) = &grant {
        for t in &g.texts {
            parts.push(t.as_bytes());
            parts.push(b"\0");
        }
    }
    parts.push(if signature == Signature::Valid {
        b"signed"
    } else {
        b"unsigned"
    });
    Credentials {
        fingerprint: shm::key(&parts).0,
        grant,
        signature,
    }
}

/// The outcome of the access check for one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Open(Access),
    /// A restricted image and no grant for it: 401.
    Denied,
}

/// What `creds` may see of the image at `client_path` (relative to `FILESYSTEM_PREFIX`).
/// The first rule whose pattern covers the path decides; no rule, or no policy, is public.
pub fn decide(policy: Option<&Policy>, creds: &Credentials, client_path: &str) -> Decision {
    judge(policy, creds, client_path).0
}

/// The rule that protects `client_path` (degraded or restricted), if one does.
pub fn protecting_rule<'p>(
    policy: Option<&'p Policy>,
    client_path: &str,
) -> Option<&'p PolicyRule> {
    policy?
        .rule_for(&pattern::normalise(client_path))
        .filter(|r| r.rule != Rule::Public)
}

/// [`decide`] and [`protecting_rule`] from one match of the path against the rules.
pub fn judge<'p>(
    policy: Option<&'p Policy>,
    creds: &Credentials,
    client_path: &str,
) -> (Decision, Option<&'p PolicyRule>) {
    let Some(policy) = policy else {
        return (Decision::Open(Access::Full), None);
    };
    let path = pattern::normalise(client_path);
    let Some(rule) = policy.rule_for(&path).filter(|r| r.rule != Rule::Public) else {
        return (Decision::Open(Access::Full), None);
    };
    let granted = creds
        .grant
        .as_ref()
        .is_some_and(|g| g.patterns.iter().any(|p| p.matches(&path)));
    let signed = rule.signed_urls && creds.signature == Signature::Valid;
    let decision = match rule.rule {
        _ if granted || signed => Decision::Open(Access::Full),
        Rule::Degraded(m) => Decision::Open(Access::Degraded(m)),
        _ => Decision::Denied,
    };
    (decision, Some(rule))
}

/// Refuses IIP resolution `res` (0 = smallest level) when `access` may not see a level
/// that large. Resolutions that do not exist pass: the tile code answers those.
pub fn check_resolution(
    cfg: &Config,
    access: Access,
    info: &crate::image::ImageInfo,
    res: i64,
) -> Result<(), Response> {
    let n = info.num_levels() as i64;
    match access {
        Access::Degraded(m) if (0..n).contains(&res) => {
            let l = &info.levels[(n - 1 - res) as usize];
            if access.allows_level(l.width, l.height) {
                Ok(())
            } else {
                Err(too_large(cfg, m))
            }
        }
        _ => Ok(()),
    }
}

/// The 401 for a restricted image: a short body, and the challenge HTTP asks for.
pub fn denied(cfg: &Config) -> Response {
    let mut r = Response::text_error(cfg, 401, "Authorisation required for this image");
    r.headers
        .push(("WWW-Authenticate".into(), "Bearer realm=\"images\"".into()));
    r
}

/// The 401 for more of a degraded image than clients without a grant may see.
pub fn too_large(cfg: &Config, max: u32) -> Response {
    let mut r = Response::text_error(
        cfg,
        401,
        &format!("Without authorisation this image is available up to {max} pixels"),
    );
    r.headers
        .push(("WWW-Authenticate".into(), "Bearer realm=\"images\"".into()));
    r
}

/// The 403 for a signed URL that is forged, expired or made for another URL.
pub fn bad_signature(cfg: &Config, why: &str) -> Response {
    Response::text_error(cfg, 403, &format!("Signed URL refused: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        let p = Policy::parse(
            r#"
            [[rule]]
            path = "open.tif"
            access = "public"
            [[rule]]
            path = "deg"
            access = "degraded"
            max_size = 800
            [[rule]]
            path = "**"
            access = "restricted"
            "#,
            std::path::Path::new("."),
        )
        .unwrap();
        let anon = Credentials::default();
        assert_eq!(decide(None, &anon, "x.tif"), Decision::Open(Access::Full));
        assert_eq!(
            decide(Some(&p), &anon, "/open.tif"),
            Decision::Open(Access::Full)
        );
        assert_eq!(
            decide(Some(&p), &anon, "deg/a.tif"),
            Decision::Open(Access::Degraded(800))
        );
        assert_eq!(decide(Some(&p), &anon, "x.tif"), Decision::Denied);
        let granted = Credentials {
            grant: Some(Grant {
                patterns: vec![pattern::Pattern::new("deg").unwrap()],
                texts: vec!["deg".into()],
                exp: 0,
                sub: None,
            }),
            ..Credentials::default()
        };
        assert_eq!(
            decide(Some(&p), &granted, "deg/a.tif"),
            Decision::Open(Access::Full)
        );
        assert_eq!(decide(Some(&p), &granted, "x.tif"), Decision::Denied);
        // A signature only counts where the rule accepts signed URLs.
        let signed = Credentials {
            signature: Signature::Valid,
            ..Credentials::default()
        };
        assert_eq!(decide(Some(&p), &signed, "x.tif"), Decision::Denied);
    }
}
