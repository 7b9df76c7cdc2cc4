//! Metadata carried outside the pixel data of JPEG and JPEG2000 files: the ICC
//! profile, XMP packet and resolution (docs/sources.md §4–6). Every segment and box length is
//! checked against the data before use; damaged metadata is skipped, never fatal.

use super::{ImageInfo, ResolutionUnit};

const XMP_JPEG: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";
const XMP_UUID: [u8; 16] = [
    0xBE, 0x7A, 0xCF, 0xCB, 0x97, 0xA9, 0x42, 0xE8, 0x9C, 0x71, 0x99, 0x94, 0x91, 0xE3, 0xAF, 0xAC,
];
/// Largest ICC profile assembled from JPEG APP2 chunks.
const MAX_ICC: usize = 16 << 20;

fn xmp_text(b: &[u8]) -> Option<String> {
    let s = String::from_utf8_lossy(b)
        .trim_end_matches('\0')
        .trim()
        .to_owned();
    (!s.is_empty()).then_some(s)
}

/// Reads APP0 (JFIF density), APP1 (XMP) and APP2 (ICC chunks) up to the first scan.
pub fn from_jpeg(data: &[u8], info: &mut ImageInfo) {
    let mut at = 2usize;
    let mut icc: Vec<(u8, &[u8])> = Vec::new();
    // Bounded: each segment advances by at least 2 bytes.
    while at + 4 <= data.len() {
        if data[at] != 0xFF {
            break;
        }
        let marker = data[at + 1];
        if marker == 0xFF {
            at += 1;
            continue;
        }
        if marker == 0xDA || marker == 0xD9 {
            break;
        }
        let len = u16::from_be_bytes([data[at + 2], data[at + 3]]) as usize;
        let Some(body) = data.get(at + 4..at + 2 + len).filter(|_| len >= 2) else {
            break;
        };
        match marker {
            0xE0 if body.starts_with(b"JFIF\0") && body.len() >= 12 => {
                let unit = body[7];
                let x = u16::from_be_bytes([body[8], body[9]]) as f64;
                let y = u16::from_be_bytes([body[10], body[11]]) as f64;
                if unit == 1 || unit == 2 {
                    info.dpi_x = x;
                    info.dpi_y = y;
                    info.resolution_unit = if unit == 1 {
                        ResolutionUnit::Inch
                    } else {
                        ResolutionUnit::Centimetre
                    };
                }
            }
            0xE1 if body.starts_with(XMP_JPEG) => {
                info.xmp = xmp_text(&body[XMP_JPEG.len()..]);
            }
            0xE1 if body.starts_with(b"Exif\0\0") && body.len() > 14 && info.exif.is_none() => {
                info.exif = Some(body[6..].to_vec());
            }
            0xE2 if body.starts_with(b"ICC_PROFILE\0") && body.len() > 14 => {
                icc.push((body[12], &body[14..]));
            }
            _ => {}
        }
        at += 2 + len;
    }
    if !icc.is_empty() {
        icc.sort_by_key(|c| c.0);
        let total: usize = icc.iter().map(|c| c.1.len()).sum();
        if total <= MAX_ICC {
            info.icc = Some(icc.iter().flat_map(|c| c.1.iter().copied()).collect());
        }
    }
}

/// The well-formed boxes of `data`, up to the first malformed one.
fn boxes(data: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    super::jp2box::boxes(data).map_while(Result::ok)
}

/// Reads the ICC profile (`colr` method 2 or 3), capture resolution (`resc`) and XMP
/// (`uuid` or `xml ` box) of a JP2 file.
pub fn from_jp2(data: &[u8], info: &mut ImageInfo) {
    for (kind, body) in boxes(data) {
        match kind {
            b"jp2h" => {
                for (k, b) in boxes(body) {
                    match k {
                        b"colr" if b.len() > 3 && matches!(b[0], 2 | 3) => {
                            info.icc = Some(b[3..].to_vec());
                        }
                        b"res " => {
                            for (r, v) in boxes(b) {
                                if r == b"resc" && v.len() >= 10 {
                                    let part = |o: usize| -> f64 {
                                        let n = u16::from_be_bytes([v[o], v[o + 1]]) as f64;
                                        let d = u16::from_be_bytes([v[o + 2], v[o + 3]]) as f64;
                                        let e = v[8 + o / 4] as i8 as i32;
                                        if d == 0.0 {
                                            0.0
                                        } else {
                                            n / d * 10f64.powi(e) / 100.0
                                        }
                                    };
                                    // Pixels per metre to pixels per centimetre.
                                    let (y, x) = (part(0), part(4));
                                    if x > 0.0 && y > 0.0 {
                                        info.dpi_x = x;
                                        info.dpi_y = y;
                                        info.resolution_unit = ResolutionUnit::Centimetre;
                                    }
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
            b"uuid" if body.len() > 16 && body[..16] == XMP_UUID => {
                info.xmp = xmp_text(&body[16..]);
            }
            b"xml " if info.xmp.is_none() && body.windows(8).any(|w| w == b"x:xmpmet") => {
                info.xmp = xmp_text(body);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::ColourSpace;

    fn info() -> ImageInfo {
        ImageInfo::plain(vec![], 3, 8, ColourSpace::Srgb)
    }

    fn segment(marker: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![0xFF, marker];
        v.extend(((body.len() + 2) as u16).to_be_bytes());
        v.extend(body);
        v
    }

    #[test]
    fn jpeg_density_xmp_and_chunked_icc() {
        let mut f = vec![0xFF, 0xD8];
        f.extend(segment(0xE0, b"JFIF\0\x01\x02\x01\x01\x2c\x01\x2c\0\0"));
        f.extend(segment(0xE1, &[XMP_JPEG, b"<x:xmpmeta/>\0"].concat()));
        f.extend(segment(0xE1, b"Exif\0\0II*\0\x08\0\0\0\0\0"));
        // ICC in two chunks, stored out of order.
        f.extend(segment(0xE2, b"ICC_PROFILE\0\x02\x02world"));
        f.extend(segment(0xE2, b"ICC_PROFILE\0\x01\x02hello "));
        f.extend([0xFF, 0xDA, 0, 2]);
        f.extend(segment(0xE1, &[XMP_JPEG, b"<after scan/>"].concat()));
        let mut i = info();
        from_jpeg(&f, &mut i);
        assert_eq!(
            (i.dpi_x, i.dpi_y, i.resolution_unit),
            (300.0, 300.0, ResolutionUnit::Inch)
        );
        assert_eq!(i.xmp.as_deref(), Some("<x:xmpmeta/>"));
        assert_eq!(i.exif.as_deref(), Some(&b"II*\0\x08\0\0\0\0\0"[..]));
        assert_eq!(i.icc.as_deref(), Some(&b"hello world"[..]));
        // Truncated segments are skipped without panicking.
        for cut in 0..f.len() {
            from_jpeg(&f[..cut], &mut info());
        }
    }

    fn jp2_box(kind: &[u8], body: &[u8]) -> Vec<u8> {
        let mut v = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        v.extend(kind);
        v.extend(body);
        v
    }

    #[test]
    fn jp2_icc_resolution_and_xmp() {
        // 11811 px/m = 118.11 px/cm vertically, 5905.5 px/m horizontally.
        let resc = [0x2E, 0x23, 0x00, 0x01, 0x2E, 0x23, 0x00, 0x02, 0, 0];
        let jp2h = [
            jp2_box(b"colr", &[2, 0, 0, b'I', b'C', b'C']),
            jp2_box(b"res ", &jp2_box(b"resc", &resc)),
        ]
        .concat();
        let f = [
            jp2_box(b"jp2h", &jp2h),
            jp2_box(b"uuid", &[&XMP_UUID[..], b"<x:xmpmeta/>"].concat()),
            jp2_box(b"jp2c", &[0xFF, 0x4F]),
        ]
        .concat();
        let mut i = info();
        from_jp2(&f, &mut i);
        assert_eq!(i.icc.as_deref(), Some(&b"ICC"[..]));
        assert_eq!(i.xmp.as_deref(), Some("<x:xmpmeta/>"));
        assert_eq!(i.resolution_unit, ResolutionUnit::Centimetre);
        assert!((i.dpi_y - 118.11).abs() < 1e-9 && (i.dpi_x - 59.055).abs() < 1e-9);
        for cut in 0..f.len() {
            from_jp2(&f[..cut], &mut info());
        }
        // A 64-bit box length that overflows the offset (found by fuzzing).
        let mut huge = vec![0, 0, 0, 1];
        huge.extend(b"jp2h");
        huge.extend((u64::MAX - 8).to_be_bytes());
        huge.extend([0; 32]);
        let mut i = info();
        from_jp2(&huge, &mut i);
        assert!(i.icc.is_none());
        assert!(crate::image::open_bytes(&[&f[..], &huge[..]].concat()).is_err());
    }
}
