//! The JP2 box structure (ISO/IEC 15444-1 annex I): a walk over the top-level boxes
//! of a file, shared by the JPEG2000 reader (for the codestream) and the metadata
//! reader (for ICC, resolution and XMP boxes).

use super::{Fault, Format, ImageError, Part};

pub(super) fn bad(fault: Fault) -> ImageError {
    ImageError::malformed(Format::Jpeg2000, fault)
}

pub(super) fn be32(b: &[u8], at: usize) -> Result<u32, ImageError> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| bad(Fault::Truncated(Part::Header)))
}

/// The boxes of `data` as `(type, body)`, in order; a box that does not fit ends the
/// walk with an error. Bounded: each box advances by at least 8 bytes.
pub(super) fn boxes(data: &[u8]) -> impl Iterator<Item = Result<(&[u8], &[u8]), ImageError>> {
    let mut at = 0usize;
    std::iter::from_fn(move || {
        if at + 8 > data.len() {
            return None;
        }
        let item = (|| {
            let len32 = be32(data, at)? as u64;
            let kind = &data[at + 4..at + 8];
            let (header, len) = match len32 {
                0 => (8u64, (data.len() - at) as u64),
                1 => {
                    let hi = be32(data, at + 8)? as u64;
                    let lo = be32(data, at + 12)? as u64;
                    (16, (hi << 32) | lo)
                }
                n => (8, n),
            };
            if len < header
                || (at as u64)
                    .checked_add(len)
                    .is_none_or(|end| end > data.len() as u64)
            {
                return Err(bad(Fault::Truncated(Part::Box)));
            }
            let body = &data[at + header as usize..at + len as usize];
            at += len as usize;
            Ok((kind, body))
        })();
        if item.is_err() {
            at = data.len();
        }
        Some(item)
    })
}
