//! Signed URLs: links a CMS hands out, `…&exp=<unix time>&sig=<hex HMAC-SHA-256>`,
//! the HMAC taken over the request path and query as sent, without the `sig`
//! parameter. A valid signature opens the one image its URL names, until `exp`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What the signature of a request says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Signature {
    /// The URL carries no `sig`.
    #[default]
    Absent,
    Valid,
    /// Forged, expired, or made for another URL: answered with 403.
    Invalid(&'static str),
}

/// The message a signature covers: `path?query` with every `sig=` parameter left out
/// (the other parameters keep their order and spelling).
fn message(uri: &str) -> (String, Option<&str>, Option<&str>) {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let mut sig = None;
    let mut exp = None;
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| match p.split_once('=') {
            Some(("sig", v)) => {
                sig = Some(v);
                false
            }
            Some(("exp", v)) => {
                exp = Some(v);
                true
            }
            _ => true,
        })
        .collect();
    let msg = if kept.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", kept.join("&"))
    };
    (msg, sig, exp)
}

/// Checks the signature of request target `uri` with `key`, at unix time `now`.
pub fn check(key: Option<&[u8]>, uri: &str, now: u64) -> Signature {
    let (msg, sig, exp) = message(uri);
    let Some(sig) = sig else {
        return Signature::Absent;
    };
    let Some(key) = key else {
        return Signature::Invalid("this server accepts no signed URLs");
    };
    let Some(exp) = exp.and_then(|e| e.parse::<u64>().ok()) else {
        return Signature::Invalid("a signed URL needs exp, a unix time");
    };
    let Ok(sig) = hex::decode(sig) else {
        return Signature::Invalid("the signature is not hexadecimal");
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(msg.as_bytes());
    // Compared in constant time, so timing tells nothing about the right signature.
    if mac.verify_slice(&sig).is_err() {
        return Signature::Invalid("the signature does not match this URL");
    }
    if exp < now {
        return Signature::Invalid("the signed URL has expired");
    }
    Signature::Valid
}

/// The signature of `path_and_query` (which must carry `exp`), as a CMS computes it.
pub fn sign(key: &[u8], path_and_query: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(message(path_and_query).0.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// `request` without the `sig` and `exp` parameters, which are no protocol's commands.
pub fn strip_params(request: &str) -> String {
    request
        .split('&')
        .filter(|p| !matches!(p.split_once('='), Some(("sig" | "exp", _))))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"a signing key of at least 32 bytes..";

    #[test]
    fn signatures_cover_path_query_and_expiry() {
        let url = "/iiif/a.tif/full/max/0/default.jpg?exp=2000";
        let sig = sign(KEY, url);
        let signed = format!("{url}&sig={sig}");
        assert_eq!(check(Some(KEY), &signed, 1999), Signature::Valid);
        assert!(matches!(
            check(Some(KEY), &signed, 2001),
            Signature::Invalid(_)
        ));
        let other = format!("/iiif/b.tif/full/max/0/default.jpg?exp=2000&sig={sig}");
        assert!(matches!(
            check(Some(KEY), &other, 1999),
            Signature::Invalid(_)
        ));
        let later = format!("/iiif/a.tif/full/max/0/default.jpg?exp=3000&sig={sig}");
        assert!(matches!(
            check(Some(KEY), &later, 1999),
            Signature::Invalid(_)
        ));
        assert!(matches!(check(None, &signed, 1999), Signature::Invalid(_)));
        assert_eq!(check(Some(KEY), url, 1999), Signature::Absent);
        // The signature may sit anywhere in the query.
        let q = "/fcgi?FIF=a.tif&exp=2000&JTL=1,0";
        let s = sign(KEY, q);
        let moved = format!("/fcgi?FIF=a.tif&sig={s}&exp=2000&JTL=1,0");
        assert_eq!(check(Some(KEY), &moved, 5), Signature::Valid);
    }

    #[test]
    fn params_are_stripped() {
        assert_eq!(
            strip_params("FIF=a.tif&exp=1&JTL=1,0&sig=ab"),
            "FIF=a.tif&JTL=1,0"
        );
    }
}
