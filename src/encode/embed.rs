//! Puts the source's ICC profile, XMP packet, EXIF, text metadata and pixel density into
//! an encoded image: JPEG APP2/APP1 segments and the JFIF density, PNG
//! iCCP/iTXt/tEXt/eXIf/pHYs chunks, WebP ICCP/EXIF/XMP chunks (extended format), an AVIF
//! `colr` property and `Exif`/`mime` items. Works on finished bitstreams, so it serves re-encoded and
//! passed-through tiles alike. TIFF output, which is never passed through, gets the same
//! metadata as tags from its encoder ([`tiff_tags`]).

use super::{Format, TiffTag};
use std::collections::BTreeMap;

mod avif;
use avif::{avif_icc, avif_item};

/// What to embed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Embed<'a> {
    pub icc: Option<&'a [u8]>,
    pub xmp: Option<&'a str>,
    /// EXIF as a TIFF structure (no `Exif\0\0` prefix): JPEG, PNG, WebP and AVIF carry it.
    pub exif: Option<&'a [u8]>,
    /// Pixel density of the output (JPEG, PNG, TIFF; WebP and AVIF carry none).
    pub density: Option<Density>,
    /// The source's text metadata (`title`, `creator`, `description`, `rights`, `date`),
    /// written by PNG and TIFF with their `Software` entry.
    pub text: Option<&'a BTreeMap<String, String>>,
}

/// Pixels per unit along x and y.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Density {
    pub x: f64,
    pub y: f64,
    pub unit: DensityUnit,
}

/// The unit of a [`Density`]; `Unknown` keeps only the aspect ratio meaningful.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DensityUnit {
    Unknown,
    Inch,
    Centimetre,
}

impl Embed<'_> {
    pub fn is_empty(&self) -> bool {
        self.icc.is_none()
            && self.xmp.is_none()
            && self.exif.is_none()
            && self.density.is_none()
            && self.text.is_none()
    }
}

const SOFTWARE: &str = concat!("tessera/", env!("CARGO_PKG_VERSION"));

/// (PNG keyword, TIFF tag, metadata key) of the text entries, in PNG chunk order.
const TEXT: [(&str, u16, &str); 5] = [
    ("Title", 269, "title"),
    ("Author", 315, "creator"),
    ("Description", 270, "description"),
    ("Copyright", 33432, "rights"),
    ("Creation Time", 306, "date"),
];

const ICC_CHUNK: usize = 65519;
const XMP_JPEG: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";

/// `bytes` with the metadata added; unchanged for TIFF (see [`tiff_tags`]), when the
/// format carries none of it, or when the stream is not what its encoder writes.
pub fn embed(bytes: Vec<u8>, format: Format, m: &Embed) -> Vec<u8> {
    if m.is_empty() {
        return bytes;
    }
    match format {
        Format::Jpeg => jpeg(bytes, m),
        Format::Png => png(bytes, m),
        Format::Webp if m.icc.is_some() || m.xmp.is_some() || m.exif.is_some() => webp(bytes, m),
        // TIFF output carries its metadata as tags the encoder writes (`tiff_tags`).
        Format::Tiff => bytes,
        Format::Avif => {
            let mut bytes = bytes;
            // HEIF metadata items: EXIF behind a 4-byte offset to its TIFF header (0 here),
            // XMP as a MIME item.
            if let Some(exif) = m.exif.filter(|e| !e.is_empty()) {
                let mut item = vec![0u8; 4];
                item.extend_from_slice(exif);
                bytes = avif_item(&bytes, b"Exif", None, &item).unwrap_or(bytes);
            }
            if let Some(xmp) = m.xmp.filter(|x| !x.is_empty()) {
                let mime = Some("application/rdf+xml");
                bytes = avif_item(&bytes, b"mime", mime, xmp.as_bytes()).unwrap_or(bytes);
            }
            match m.icc.filter(|i| !i.is_empty()) {
                Some(icc) => avif_icc(&bytes, icc).unwrap_or(bytes),
                None => bytes,
            }
        }
        Format::Webp => bytes,
    }
}

/// A density as whole units for JFIF (1..=65535).
fn jfif_density(v: f64) -> u16 {
    v.round().clamp(1.0, 65535.0) as u16
}

fn jpeg(mut bytes: Vec<u8>, m: &Embed) -> Vec<u8> {
    if bytes.len() < 4 || bytes[..2] != [0xFF, 0xD8] {
        return bytes;
    }
    // The JFIF APP0 our encoder writes: units at 13, densities at 14 and 16.
    if let Some(d) = m.density {
        if bytes.len() > 18 && bytes[2..4] == [0xFF, 0xE0] && &bytes[6..11] == b"JFIF\0" {
            bytes[13] = match d.unit {
                DensityUnit::Unknown => 0,
                DensityUnit::Inch => 1,
                DensityUnit::Centimetre => 2,
            };
            bytes[14..16].copy_from_slice(&jfif_density(d.x).to_be_bytes());
            bytes[16..18].copy_from_slice(&jfif_density(d.y).to_be_bytes());
        }
    }
    if m.icc.is_none() && m.xmp.is_none() && m.exif.is_none() {
        return bytes;
    }
    // After SOI and a JFIF APP0, if any.
    let mut at = 2;
    if bytes[2..4] == [0xFF, 0xE0] && bytes.len() >= 6 {
        at = 4 + u16::from_be_bytes([bytes[4], bytes[5]]) as usize;
        if at > bytes.len() {
            return bytes;
        }
    }
    let mut segs = Vec::new();
    if let Some(icc) = m.icc.filter(|i| !i.is_empty()) {
        let n = icc.len().div_ceil(ICC_CHUNK);
        if n <= 255 {
            for (i, chunk) in icc.chunks(ICC_CHUNK).enumerate() {
                segs.extend([0xFF, 0xE2]);
                segs.extend(((chunk.len() + 16) as u16).to_be_bytes());
                segs.extend(b"ICC_PROFILE\0");
                segs.extend([(i + 1) as u8, n as u8]);
                segs.extend(chunk);
            }
        }
    }
    if let Some(xmp) = m.xmp {
        let len = XMP_JPEG.len() + xmp.len() + 2;
        if len <= 65535 {
            segs.extend([0xFF, 0xE1]);
            segs.extend((len as u16).to_be_bytes());
            segs.extend(XMP_JPEG);
            segs.extend(xmp.as_bytes());
        }
    }
    if let Some(exif) = m.exif {
        let len = 6 + exif.len() + 2;
        if len <= 65535 {
            segs.extend([0xFF, 0xE1]);
            segs.extend((len as u16).to_be_bytes());
            segs.extend(b"Exif\0\0");
            segs.extend(exif);
        }
    }
    let mut out = Vec::with_capacity(bytes.len() + segs.len());
    out.extend(&bytes[..at]);
    out.extend(segs);
    out.extend(&bytes[at..]);
    out
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend((data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend(kind);
    out.extend(data);
    let crc = crc32fast::hash(&out[start..]);
    out.extend(crc.to_be_bytes());
}

fn png(bytes: Vec<u8>, m: &Embed) -> Vec<u8> {
    // Signature (8) and IHDR (4 + 4 + 13 + 4).
    const AFTER_IHDR: usize = 33;
    if bytes.len() < AFTER_IHDR || &bytes[12..16] != b"IHDR" {
        return bytes;
    }
    let mut chunks = Vec::new();
    if let Some(icc) = m.icc.filter(|i| !i.is_empty()) {
        let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::default());
        let mut z = vec![0u8; c.zlib_compress_bound(icc.len())];
        if let Ok(n) = c.zlib_compress(icc, &mut z) {
            let mut data = b"ICC\0\0".to_vec();
            data.extend(&z[..n]);
            png_chunk(&mut chunks, b"iCCP", &data);
        }
    }
    if let Some(text) = m.text {
        png_chunk(
            &mut chunks,
            b"tEXt",
            format!("Software\0{SOFTWARE}").as_bytes(),
        );
        for (keyword, _, key) in TEXT {
            let Some(v) = text.get(key).filter(|v| !v.is_empty()) else {
                continue;
            };
            if key == "date" {
                // tEXt is Latin-1; a date is ASCII.
                if v.is_ascii() {
                    png_chunk(&mut chunks, b"tEXt", format!("{keyword}\0{v}").as_bytes());
                }
            } else {
                // iTXt, uncompressed, no language: keyword, 0, flag, method, "", "", text.
                let data = format!("{keyword}\0\0\0\0\0{v}");
                png_chunk(&mut chunks, b"iTXt", data.as_bytes());
            }
        }
    }
    if let Some(xmp) = m.xmp {
        let mut data = b"XML:com.adobe.xmp\0\0\0\0\0".to_vec();
        data.extend(xmp.as_bytes());
        png_chunk(&mut chunks, b"iTXt", &data);
    }
    if let Some(exif) = m.exif {
        png_chunk(&mut chunks, b"eXIf", exif);
    }
    if let Some(d) = m.density {
        // pHYs: pixels per metre (unit 1), or the bare aspect ratio (unit 0).
        let (x, y, unit) = match d.unit {
            DensityUnit::Centimetre => (d.x * 100.0, d.y * 100.0, 1u8),
            DensityUnit::Inch => (d.x / 0.0254, d.y / 0.0254, 1),
            DensityUnit::Unknown => (d.x, d.y, 0),
        };
        let px = |v: f64| (v.round().clamp(1.0, u32::MAX as f64) as u32).to_be_bytes();
        let mut data = Vec::with_capacity(9);
        data.extend(px(x));
        data.extend(px(y));
        data.push(unit);
        png_chunk(&mut chunks, b"pHYs", &data);
    }
    let mut out = Vec::with_capacity(bytes.len() + chunks.len());
    out.extend(&bytes[..AFTER_IHDR]);
    out.extend(chunks);
    out.extend(&bytes[AFTER_IHDR..]);
    out
}

fn riff_chunk(out: &mut Vec<u8>, kind: &[u8], data: &[u8]) {
    out.extend(kind);
    out.extend((data.len() as u32).to_le_bytes());
    out.extend(data);
    if data.len() % 2 == 1 {
        out.push(0);
    }
}

fn webp(bytes: Vec<u8>, m: &Embed) -> Vec<u8> {
    if bytes.len() < 20 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WEBP" {
        return bytes;
    }
    // The stream's chunks: (fourcc, data).
    let mut chunks: Vec<([u8; 4], &[u8])> = Vec::new();
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let kind: [u8; 4] = bytes[at..at + 4].try_into().expect("4 bytes");
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes")) as usize;
        let Some(data) = bytes.get(at + 8..at + 8 + len) else {
            return bytes;
        };
        chunks.push((kind, data));
        at += 8 + len + len % 2;
    }
    let (w, h, mut flags) = match chunks.first() {
        Some((k, d)) if k == b"VP8X" && d.len() >= 10 => {
            let w = u32::from_le_bytes([d[4], d[5], d[6], 0]) + 1;
            let h = u32::from_le_bytes([d[7], d[8], d[9], 0]) + 1;
            (w, h, d[0])
        }
        Some((k, d)) if k == b"VP8 " && d.len() >= 10 => (
            (u16::from_le_bytes([d[6], d[7]]) & 0x3FFF) as u32,
            (u16::from_le_bytes([d[8], d[9]]) & 0x3FFF) as u32,
            0,
        ),
        Some((k, d)) if k == b"VP8L" && d.len() >= 5 => {
            let b = u32::from_le_bytes([d[1], d[2], d[3], d[4]]);
            (
                (b & 0x3FFF) + 1,
                ((b >> 14) & 0x3FFF) + 1,
                (((b >> 28) & 1) as u8) << 4,
            )
        }
        _ => return bytes,
    };
    let icc = m.icc.filter(|i| !i.is_empty());
    if icc.is_some() {
        flags |= 0x20;
    }
    if m.xmp.is_some() {
        flags |= 0x04;
    }
    if m.exif.is_some() {
        flags |= 0x08;
    }
    let mut vp8x = vec![flags, 0, 0, 0];
    vp8x.extend(&(w - 1).to_le_bytes()[..3]);
    vp8x.extend(&(h - 1).to_le_bytes()[..3]);
    let mut body = b"WEBP".to_vec();
    riff_chunk(&mut body, b"VP8X", &vp8x);
    if let Some(icc) = icc {
        riff_chunk(&mut body, b"ICCP", icc);
    }
    for (k, d) in &chunks {
        if !matches!(k, b"VP8X" | b"ICCP" | b"XMP " | b"EXIF") {
            riff_chunk(&mut body, k, d);
        }
    }
    if let Some(exif) = m.exif {
        riff_chunk(&mut body, b"EXIF", exif);
    }
    if let Some(xmp) = m.xmp {
        riff_chunk(&mut body, b"XMP ", xmp.as_bytes());
    }
    let mut out = b"RIFF".to_vec();
    out.extend((body.len() as u32).to_le_bytes());
    out.extend(body);
    out
}

/// The metadata as TIFF tags for the TIFF encoder (text, resolution, XMP, ICC).
pub fn tiff_tags(m: &Embed) -> Vec<TiffTag> {
    let mut tags = Vec::new();
    if let Some(text) = m.text {
        for (_, tag, key) in TEXT {
            let Some(v) = text.get(key).filter(|v| !v.is_empty() && v.is_ascii()) else {
                continue;
            };
            // DateTime is exactly "YYYY:MM:DD HH:MM:SS".
            if tag == 306 && v.len() != 19 {
                continue;
            }
            let data = format!("{v}\0").into_bytes();
            tags.push((tag, 2, data.len() as u32, data));
        }
    }
    if let Some(d) = m.density {
        for (tag, v) in [(282u16, d.x), (283, d.y)] {
            // RATIONAL with a fixed denominator of 10 000.
            let num = (v * 10000.0).round().clamp(1.0, u32::MAX as f64) as u32;
            let mut data = num.to_le_bytes().to_vec();
            data.extend(10000u32.to_le_bytes());
            tags.push((tag, 5, 1, data));
        }
        let unit: u16 = match d.unit {
            DensityUnit::Unknown => 1,
            DensityUnit::Inch => 2,
            DensityUnit::Centimetre => 3,
        };
        tags.push((296, 3, 1, unit.to_le_bytes().to_vec()));
    }
    if let Some(xmp) = m.xmp {
        tags.push((700, 1, xmp.len() as u32, xmp.as_bytes().to_vec()));
    }
    if let Some(icc) = m.icc.filter(|i| !i.is_empty()) {
        tags.push((34675, 7, icc.len() as u32, icc.to_vec()));
    }
    tags
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Raster;

    fn raster(c: u16) -> Raster {
        Raster {
            width: 33,
            height: 17,
            channels: c,
            data: (0..33 * 17 * c as usize)
                .map(|i| (i * 7 % 256) as u8)
                .collect(),
        }
    }

    const META: Embed = Embed {
        icc: Some(b"not really a profile, but bytes"),
        xmp: Some("<x:xmpmeta/>"),
        exif: Some(b"II*\0\x08\0\0\0\0\0\0\0"),
        density: Some(Density {
            x: 2.83,
            y: 3.4,
            unit: DensityUnit::Centimetre,
        }),
        text: None,
    };

    fn text() -> BTreeMap<String, String> {
        [
            ("title", "Doc title"),
            ("creator", "Jane Doe"),
            ("date", "2024:01:02 03:04:05"),
            ("rights", "CC0"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    #[test]
    fn jpeg_density_is_in_the_jfif_header() {
        let j = super::super::jpeg::encode(&raster(3), 80).unwrap();
        let out = embed(j, Format::Jpeg, &META);
        assert_eq!(&out[6..11], b"JFIF\0");
        assert_eq!(&out[13..18], &[2, 0, 3, 0, 3]);
    }

    #[test]
    fn png_text_and_density_decode() {
        let t = text();
        let m = Embed {
            text: Some(&t),
            ..META
        };
        let p = super::super::png::encode(&raster(3), 6).unwrap();
        let r = png::Decoder::new(std::io::Cursor::new(embed(p, Format::Png, &m)))
            .read_info()
            .unwrap();
        let info = r.info();
        let d = info.pixel_dims.unwrap();
        assert_eq!((d.xppu, d.yppu, d.unit), (283, 340, png::Unit::Meter));
        let itxt: Vec<(String, String)> = info
            .utf8_text
            .iter()
            .map(|t| (t.keyword.clone(), t.get_text().unwrap()))
            .collect();
        assert!(itxt.contains(&("Title".into(), "Doc title".into())));
        assert!(itxt.contains(&("Author".into(), "Jane Doe".into())));
        assert!(itxt.contains(&("Copyright".into(), "CC0".into())));
        let text: Vec<(&str, &str)> = info
            .uncompressed_latin1_text
            .iter()
            .map(|t| (t.keyword.as_str(), t.text.as_str()))
            .collect();
        assert!(text.contains(&("Software", SOFTWARE)));
        assert!(text.contains(&("Creation Time", "2024:01:02 03:04:05")));
    }

    #[test]
    fn avif_gets_a_colr_prof_box() {
        let a = super::super::avif::encode(&raster(3), 60).unwrap();
        let icc_only = Embed {
            icc: META.icc,
            ..Default::default()
        };
        let out = embed(a.clone(), Format::Avif, &icc_only);
        let colr = out.windows(8).position(|w| w == b"colrprof").unwrap();
        assert_eq!(
            &out[colr + 8..colr + 8 + META.icc.unwrap().len()],
            META.icc.unwrap()
        );
        // The coded image moved back by exactly the added bytes and is still there.
        let find = |b: &[u8]| b.windows(4).position(|w| w == b"mdat").unwrap();
        let added = out.len() - a.len();
        assert_eq!(find(&out), find(&a) + added);
        assert_eq!(&out[find(&out)..], &a[find(&a)..]);
        // Anything else comes back unchanged.
        assert_eq!(
            embed(b"not avif".to_vec(), Format::Avif, &META),
            b"not avif"
        );
    }

    #[test]
    fn avif_gets_exif_and_xmp_items() {
        // (vips reads both back from a server's AVIF in tests/region.rs.)
        let a = super::super::avif::encode(&raster(4), 60).unwrap();
        let out = embed(a.clone(), Format::Avif, &META);
        let (exif, xmp) = (META.exif.unwrap(), META.xmp.unwrap().as_bytes());
        // The data ends the file: EXIF behind its 4-byte header offset, then XMP.
        let tail = [&[0u8; 4][..], exif, xmp].concat();
        assert!(out.ends_with(&tail));
        let has = |w: &[u8]| out.windows(w.len()).any(|x| x == w);
        assert!(has(b"infe\x02\0\0\0\0\x03\0\0Exif\0"), "EXIF item 3");
        assert!(has(b"infe\x02\0\0\0\0\x04\0\0mime\0application/rdf+xml\0"));
        assert!(has(b"cdsc\0\x03\0\x01\0\x01") && has(b"cdsc\0\x04\0\x01\0\x01"));
        assert!(has(b"auxl"), "the alpha item's reference is kept");
        // The coded image (and alpha) sits where iloc says, with its bytes unchanged.
        let mdat = |b: &[u8]| b.windows(4).position(|w| w == b"mdat").unwrap() + 4;
        let coded = &a[mdat(&a)..];
        assert_eq!(&out[mdat(&out)..mdat(&out) + coded.len()], coded);
        let iloc = out.windows(4).position(|w| w == b"iloc").unwrap() + 4;
        let first = u32::from_be_bytes(out[iloc + 14..iloc + 18].try_into().unwrap()) as usize;
        assert_eq!(first, mdat(&out), "item 1 starts the mdat payload");
    }

    #[test]
    fn tiff_tags_are_written_by_the_encoder() {
        let t = text();
        let m = Embed {
            text: Some(&t),
            ..META
        };
        let out = super::super::tiff::encode(&raster(3), 2, 6, &tiff_tags(&m)).unwrap();
        let dir = std::env::temp_dir().join(format!("embed-{}.tif", std::process::id()));
        std::fs::write(&dir, &out).unwrap();
        let mut d = tiff::decoder::Decoder::new(std::fs::File::open(&dir).unwrap()).unwrap();
        let _ = std::fs::remove_file(&dir);
        use tiff::tags::Tag;
        assert_eq!(d.dimensions().unwrap(), (33, 17));
        assert_eq!(d.get_tag_ascii_string(Tag::Artist).unwrap(), "Jane Doe");
        assert_eq!(
            d.get_tag_ascii_string(Tag::DateTime).unwrap(),
            "2024:01:02 03:04:05"
        );
        assert_eq!(d.get_tag_u32(Tag::ResolutionUnit).unwrap(), 3);
        assert_eq!(
            d.get_tag_u8_vec(Tag::Unknown(34675)).unwrap(),
            META.icc.unwrap()
        );
        match d.read_image().unwrap() {
            tiff::decoder::DecodingResult::U8(px) => assert_eq!(px, raster(3).data),
            _ => panic!("8-bit"),
        }
    }

    #[test]
    fn jpeg_segments_follow_jfif_and_decode() {
        let j = super::super::jpeg::encode(&raster(3), 80).unwrap();
        let out = embed(j, Format::Jpeg, &META);
        let icc_at = out.windows(12).position(|w| w == b"ICC_PROFILE\0").unwrap();
        let xmp_at = out
            .windows(XMP_JPEG.len())
            .position(|w| w == XMP_JPEG)
            .unwrap();
        assert!(icc_at < xmp_at);
        assert_eq!(&out[icc_at + 12..icc_at + 14], &[1, 1]);
        // The profile reads back through the reader's own parser.
        let mut info =
            crate::image::ImageInfo::plain(vec![], 3, 8, crate::image::ColourSpace::Srgb);
        crate::image::meta_from_jpeg(&out, &mut info);
        assert_eq!(info.icc.as_deref(), META.icc);
        assert_eq!(info.xmp.as_deref(), META.xmp);
        let mut d = turbojpeg::Decompressor::new().unwrap();
        assert_eq!(d.read_header(&out).unwrap().width, 33);
    }

    #[test]
    fn png_chunks_decode() {
        let p = super::super::png::encode(&raster(3), 6).unwrap();
        let out = embed(p, Format::Png, &META);
        let r = png::Decoder::new(std::io::Cursor::new(out))
            .read_info()
            .unwrap();
        let info = r.info();
        assert_eq!(info.icc_profile.as_deref(), META.icc);
        assert!(info
            .utf8_text
            .iter()
            .any(|t| t.keyword == "XML:com.adobe.xmp"));
    }

    #[test]
    fn webp_becomes_extended_and_decodes() {
        for c in [3, 4] {
            for q in [80, -1] {
                let w = super::super::webp::encode(&raster(c), q).unwrap();
                let out = embed(w, Format::Webp, &META);
                assert_eq!(&out[12..16], b"VP8X");
                assert!(out.windows(4).any(|w| w == b"ICCP"));
                let riff = u32::from_le_bytes(out[4..8].try_into().unwrap()) as usize;
                assert_eq!(riff + 8, out.len());
                let (mut w, mut h) = (0, 0);
                let ok =
                    unsafe { libwebp_sys::WebPGetInfo(out.as_ptr(), out.len(), &mut w, &mut h) };
                assert_eq!((ok, w, h), (1, 33, 17), "{c} channels, quality {q}");
                let px =
                    unsafe { libwebp_sys::WebPDecodeRGBA(out.as_ptr(), out.len(), &mut w, &mut h) };
                assert!(!px.is_null());
                unsafe { libwebp_sys::WebPFree(px.cast()) };
            }
        }
    }

    #[test]
    fn nothing_to_embed_or_foreign_streams_are_unchanged() {
        let j = super::super::jpeg::encode(&raster(1), 80).unwrap();
        assert_eq!(embed(j.clone(), Format::Jpeg, &Embed::default()), j);
        assert_eq!(embed(b"garbage".to_vec(), Format::Png, &META), b"garbage");
        assert_eq!(
            embed(b"RIFFxxxxWEBPjunk".to_vec(), Format::Webp, &META).len(),
            16
        );
    }
}
