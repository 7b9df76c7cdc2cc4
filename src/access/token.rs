//! Access tokens: JWTs an institution's login system issues (HS256 or EdDSA/Ed25519),
//! with an expiry (`exp`), the audience tessera is configured with (`aud`) and the
//! image paths they open (`paths`, patterns as policy rules write them).

use crate::policy::pattern::Pattern;
use crate::policy::TokenKeys;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// Why a presented token grants nothing (logged, never shown in detail to the client).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("no key is configured for tokens signed with {0:?}")]
    NoKey(Algorithm),
    #[error("token rejected: {0}")]
    Invalid(String),
    #[error("token grants a path pattern that cannot be read: {0}")]
    Pattern(String),
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    exp: u64,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    aud: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sub: Option<String>,
}

/// What a verified token grants.
#[derive(Debug, Clone)]
pub struct Grant {
    pub patterns: Vec<Pattern>,
    /// The raw pattern texts, to key cached answers by what the client may see.
    pub texts: Vec<String>,
    pub exp: u64,
    pub sub: Option<String>,
}

/// Verifies `token` against the policy's keys.
pub fn verify(keys: &TokenKeys, token: &str) -> Result<Grant, TokenError> {
    let header =
        jsonwebtoken::decode_header(token).map_err(|e| TokenError::Invalid(e.to_string()))?;
    let key = match header.alg {
        Algorithm::HS256 => keys.hs256.as_deref().map(DecodingKey::from_secret),
        Algorithm::EdDSA => keys
            .ed25519_pem
            .as_deref()
            .and_then(|pem| DecodingKey::from_ed_pem(pem).ok()),
        other => return Err(TokenError::NoKey(other)),
    }
    .ok_or(TokenError::NoKey(header.alg))?;
    let mut v = Validation::new(header.alg);
    v.leeway = 0;
    v.set_required_spec_claims(&["exp"]);
    match &keys.audience {
        Some(a) => {
            v.set_audience(&[a]);
            v.set_required_spec_claims(&["exp", "aud"]);
        }
        None => v.validate_aud = false,
    }
    let data = jsonwebtoken::decode::<Claims>(token, &key, &v)
        .map_err(|e| TokenError::Invalid(e.to_string()))?;
    let c = data.claims;
    let patterns = c
        .paths
        .iter()
        .map(|p| Pattern::new(p).map_err(|e| TokenError::Pattern(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Grant {
        patterns,
        texts: c.paths,
        exp: c.exp,
        sub: c.sub,
    })
}

/// A new HS256 token for `grant` (the access-token service re-issues a cookie's grant
/// as a bearer token); `None` without an HS256 secret.
pub fn issue(keys: &TokenKeys, grant: &Grant, exp: u64) -> Option<String> {
    let secret = keys.hs256.as_deref()?;
    let claims = Claims {
        exp,
        paths: grant.texts.clone(),
        aud: keys.audience.clone().map(serde_json::Value::from),
        sub: grant.sub.clone(),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .ok()
}

/// The bearer token of `Authorization: Bearer …`, else the token in the policy's cookie.
pub fn presented<'a>(
    authorization: Option<&'a str>,
    cookies: Option<&'a str>,
    cookie_name: &str,
) -> Option<&'a str> {
    let bearer = authorization.and_then(|a| {
        let (scheme, rest) = a.trim().split_once(' ')?;
        scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| rest.trim())
            .filter(|t| !t.is_empty())
    });
    bearer.or_else(|| {
        cookies?.split(';').find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k.trim() == cookie_name)
                .then(|| v.trim().trim_matches('"'))
                .filter(|t| !t.is_empty())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys {
            hs256: Some(b"0123456789abcdef0123456789abcdef".to_vec()),
            ed25519_pem: None,
            audience: Some("https://images.example.org".into()),
            cookie: "t".into(),
        }
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn sign(secret: &[u8], claims: serde_json::Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .unwrap()
    }

    #[test]
    fn valid_forged_expired_and_foreign_tokens() {
        let k = keys();
        let secret = k.hs256.clone().unwrap();
        let aud = "https://images.example.org";
        let good = sign(
            &secret,
            serde_json::json!({"exp": now() + 60, "aud": aud, "paths": ["secret/**"]}),
        );
        let g = verify(&k, &good).unwrap();
        assert!(g.patterns[0].matches("secret/a.tif"));
        assert!(!g.patterns[0].matches("other.tif"));
        let forged = sign(
            b"another secret of thirty-two bytes!!",
            serde_json::json!({"exp": now() + 60, "aud": aud, "paths": ["**"]}),
        );
        assert!(verify(&k, &forged).is_err());
        let expired = sign(
            &secret,
            serde_json::json!({"exp": now() - 5, "aud": aud, "paths": ["**"]}),
        );
        assert!(verify(&k, &expired).is_err());
        let foreign = sign(
            &secret,
            serde_json::json!({"exp": now() + 60, "aud": "https://elsewhere", "paths": ["**"]}),
        );
        assert!(verify(&k, &foreign).is_err());
        let no_exp = sign(&secret, serde_json::json!({"aud": aud, "paths": ["**"]}));
        assert!(verify(&k, &no_exp).is_err());
        assert!(verify(&k, "not.a.token").is_err());
        let reissued = issue(&k, &g, now() + 30).unwrap();
        assert_eq!(verify(&k, &reissued).unwrap().texts, vec!["secret/**"]);
    }

    // RFC 8410's example key pair.
    const ED_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n-----END PRIVATE KEY-----\n";
    const ED_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n";

    #[test]
    fn ed25519_tokens_and_algorithm_confusion() {
        let k = TokenKeys {
            ed25519_pem: Some(ED_PUBLIC.as_bytes().to_vec()),
            ..keys()
        };
        let claims = serde_json::json!({"exp": now() + 60, "aud": "https://images.example.org", "paths": ["a"]});
        let ed = jsonwebtoken::encode(
            &Header::new(Algorithm::EdDSA),
            &claims,
            &EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap(),
        )
        .unwrap();
        assert_eq!(verify(&k, &ed).unwrap().texts, vec!["a"]);
        // The public key used as an HMAC secret opens nothing.
        let confused = sign(ED_PUBLIC.as_bytes(), claims.clone());
        assert!(verify(&k, &confused).is_err());
        // Nor does an EdDSA token where no Ed25519 key is configured.
        assert_eq!(
            verify(&keys(), &ed).unwrap_err(),
            TokenError::NoKey(Algorithm::EdDSA)
        );
        // An unsigned token (`alg: none`) is not even a token.
        // {"alg":"none"} . {"exp":9999999999,"aud":"https://images.example.org","paths":["a"]} .
        let none = "eyJhbGciOiJub25lIn0.eyJleHAiOjk5OTk5OTk5OTksImF1ZCI6Imh0dHBzOi8vaW1hZ2VzLmV4YW1wbGUub3JnIiwicGF0aHMiOlsiYSJdfQ.";
        assert!(verify(&k, none).is_err());
    }

    #[test]
    fn bearer_before_cookie() {
        assert_eq!(
            presented(Some("Bearer abc"), Some("t=def"), "t"),
            Some("abc")
        );
        assert_eq!(presented(None, Some("x=1; t=def"), "t"), Some("def"));
        assert_eq!(presented(Some("Basic abc"), Some("tt=1"), "t"), None);
    }
}
