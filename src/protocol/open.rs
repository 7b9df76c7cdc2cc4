//! Opening the image a request names, shared by every protocol: the client path
//! decoded and contained, an image sequence when no single file matches, the image
//! cache, the access policy's decision, and `If-Modified-Since` answered before any
//! work.

use super::{path, Ctx, HttpInfo};
use crate::image::cache::Opened;
use crate::response::Response;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The image a request opened with `FIF` (or a protocol's identifier).
pub struct Current {
    /// The decoded, filtered path the client asked for (quoted in messages).
    pub client: String,
    pub opened: Opened,
    /// What the access policy lets this client see of it.
    pub access: crate::model::Access,
}

/// Opens a client's image path, percent-encoded as `encoding` says, if the access policy
/// lets this client see it. Errors are complete responses (401 from the policy, 404/403,
/// or 304).
pub fn open_image(
    ctx: &mut Ctx,
    http: &HttpInfo,
    raw: &str,
    encoding: path::Encoding,
) -> Result<Current, Response> {
    let cfg = ctx.cfg;
    let client = path::client_path(raw, encoding);
    // Decided before the file is looked for, so a 401 tells nothing of what exists.
    let policy = cfg.access.as_deref();
    let (decision, rule) = crate::access::judge(policy, &http.credentials, &client);
    if rule.is_some() {
        http.protected.set(true);
    }
    let access = match decision {
        crate::access::Decision::Open(a) => a,
        crate::access::Decision::Denied => return Err(crate::access::denied(cfg)),
    };
    let refuse = |e: path::PathError| Response::text_error(cfg, e.status(), &e.to_string());
    let (full, mtime, sequence) =
        match path::resolve(&client, &cfg.filesystem_prefix, &cfg.filesystem_suffix) {
            Ok((full, mtime)) => (full, Some(mtime), None),
            Err(path::PathError::NotFound(_)) => {
                let seq = path::sequence(&client, &cfg.filesystem_prefix, &cfg.filename_pattern)
                    .map_err(refuse)?;
                (seq.file(0, 90), None, Some(seq))
            }
            Err(e) => return Err(refuse(e)),
        };
    let opened = match mtime {
        Some(mtime) => ctx.images.get_at(&full, mtime),
        None => ctx.images.get(&full),
    };
    let mut opened = opened.map_err(|e| {
        log::info!("{client}: {e}");
        Response::text_error(cfg, 404, &format!("{e}: {client}"))
    })?;
    if let Some(seq) = sequence {
        opened.image = std::sync::Arc::new(crate::image::sequence::SequenceImage::new(
            opened.image,
            (seq.dir, seq.stem, seq.ext),
            seq.horizontal,
            seq.vertical,
        ));
    }
    if !opened.reloaded {
        if let Some(ims) = http.if_modified_since.as_deref() {
            if not_modified(opened.mtime, ims) {
                return Err(Response::status_only(cfg, 304));
            }
        }
    }
    Ok(Current {
        client,
        opened,
        access,
    })
}

/// `If-Modified-Since` semantics: not modified when mtime (whole seconds) ≤ the date.
pub fn not_modified(mtime: SystemTime, header: &str) -> bool {
    let Ok(since) = httpdate::parse_http_date(header.trim()) else {
        return false;
    };
    let secs = mtime
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    UNIX_EPOCH + Duration::from_secs(secs) <= since
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditional_dates() {
        let m = UNIX_EPOCH + Duration::from_millis(1_795_530_093_500);
        assert!(not_modified(m, "Tue, 24 Nov 2026 14:21:33 GMT"));
        assert!(not_modified(m, "Wed, 25 Nov 2026 14:21:33 GMT"));
        assert!(!not_modified(m, "Mon, 23 Nov 2026 14:21:33 GMT"));
        assert!(!not_modified(m, "garbage"));
    }
}
