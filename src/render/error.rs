//! Why a tile or a region export failed, and the one place such a failure becomes
//! the error response the client reads ([`RenderError::response`]).

use crate::config::Config;
use crate::encode::EncodeError;
use crate::image::ImageError;
use crate::response::Response;

/// A failed tile or region export.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The source could not be read or decoded.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// A region export that would hold more than `MAX_REQUEST_MEMORY`.
    #[error(
        "Region export too large: {}x{} from {}x{} source pixels needs about {} MB, \
         more than the {} MB a request may use (MAX_REQUEST_MEMORY); ask for a smaller size",
        output.0, output.1, from.0, from.1, need.div_ceil(1 << 20), limit >> 20
    )]
    OverBudget {
        output: (u32, u32),
        from: (u32, u32),
        /// Bytes the export would hold, and bytes a request may.
        need: u64,
        limit: u64,
    },
    /// A resolution or tile number outside the image's pyramid.
    #[error("Asked for non-existent resolution or tile: {res},{tile}")]
    NoSuchResolution { res: i64, tile: i64 },
    /// A tile number outside its resolution.
    #[error("Asked for non-existent tile: {0}")]
    NoSuchTile(i64),
    /// A region export past `MAX_REGION_PIXELS` at its source level or output.
    #[error(
        "Region too large: {}x{} source pixels for a {}x{} output (limit {limit} pixels)",
        from.0, from.1, output.0, output.1
    )]
    RegionTooLarge {
        from: (u32, u32),
        output: (u32, u32),
        limit: u64,
    },
    /// The encoder refused or failed.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// Every export slot is busy: the 503 admission answers (see `admission::enter`).
    #[error("Server busy with other large exports")]
    Busy(Response),
}

impl RenderError {
    /// The error response for the request for `client` (the path the client asked for,
    /// which prefixes the messages about reading it).
    pub fn response(self, cfg: &Config, client: &str) -> Response {
        let status = match self {
            RenderError::Busy(r) => return r,
            RenderError::NoSuchResolution { .. } | RenderError::NoSuchTile(_) => {
                return Response::text_error(cfg, 404, &self.to_string());
            }
            RenderError::RegionTooLarge { .. } => {
                return Response::text_error(cfg, 400, &self.to_string());
            }
            RenderError::Encode(ref e) => {
                log::error!("{client}: {e}");
                return Response::text_error(cfg, 500, &e.to_string());
            }
            RenderError::OverBudget { .. } => 400,
            RenderError::Image(ImageError::Decode(_)) => 500,
            RenderError::Image(ImageError::OutOfTime | ImageError::OutOfMemory(_)) => 503,
            RenderError::Image(_) => 404,
        };
        log::error!("{client}: {self}");
        let mut r = Response::text_error(cfg, status, &format!("{client}: {self}"));
        if status == 503 {
            // Another try may well succeed once the server is less busy.
            r.headers.push(("Retry-After".into(), "5".into()));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{DecodeError, Fault, Format};

    fn answer(e: impl Into<RenderError>) -> (u16, String, bool) {
        let cfg = Config::from_vars(|_| None);
        let r = e.into().response(&cfg, "a.tif");
        let retry = r.headers.iter().any(|(k, _)| k == "Retry-After");
        (r.status, String::from_utf8(r.body).unwrap(), retry)
    }

    #[test]
    fn statuses_and_bodies_follow_the_kind_of_failure() {
        assert_eq!(
            answer(ImageError::Decode(DecodeError::EmptyRegion)),
            (
                500,
                "a.tif: Tile decoding failed: empty region".into(),
                false
            )
        );
        assert_eq!(
            answer(ImageError::malformed(
                Format::Tiff,
                Fault::MissingTag("TileWidth")
            )),
            (
                404,
                "a.tif: Malformed image file: missing TileWidth".into(),
                false
            )
        );
        let (status, body, retry) = answer(ImageError::OutOfTime);
        assert_eq!((status, retry), (503, true), "{body}");
        let (status, _, retry) = answer(ImageError::OutOfMemory(1 << 30));
        assert_eq!((status, retry), (503, true));
        let over = RenderError::OverBudget {
            output: (4000, 3000),
            from: (8000, 6000),
            need: 300 << 20,
            limit: 256 << 20,
        };
        let (status, body, _) = answer(over);
        assert_eq!(status, 400);
        assert!(
            body.starts_with("a.tif: Region export too large: 4000x3000 from 8000x6000")
                && body.contains("about 300 MB, more than the 256 MB"),
            "{body}"
        );
        assert_eq!(
            answer(RenderError::NoSuchTile(7)),
            (404, "Asked for non-existent tile: 7".into(), false)
        );
    }
}
