//! Puts the source's ICC profile and XMP packet into an encoded image: JPEG APP2/APP1
//! segments, PNG iCCP/iTXt chunks, WebP ICCP/XMP chunks (extended format). Works on
//! finished bitstreams, so it serves re-encoded and passed-through tiles alike.

use super::Format;

/// What to embed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Embed<'a> {
    pub icc: Option<&'a [u8]>,
    pub xmp: Option<&'a str>,
}

impl Embed<'_> {
    pub fn is_empty(&self) -> bool {
        self.icc.is_none() && self.xmp.is_none()
    }
}

const ICC_CHUNK: usize = 65519;
const XMP_JPEG: &[u8] = b"http://ns.adobe.com/xap/1.0/\0";

/// `bytes` with the metadata added; unchanged when the format carries none (AVIF, TIFF)
/// or the stream is not what its encoder writes.
pub fn embed(bytes: Vec<u8>, format: Format, m: &Embed) -> Vec<u8> {
    if m.is_empty() {
        return bytes;
    }
    match format {
        Format::Jpeg => jpeg(bytes, m),
        Format::Png => png(bytes, m),
        Format::Webp => webp(bytes, m),
        Format::Avif | Format::Tiff => bytes,
    }
}

fn jpeg(bytes: Vec<u8>, m: &Embed) -> Vec<u8> {
    if bytes.len() < 4 || bytes[..2] != [0xFF, 0xD8] {
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
    if let Some(xmp) = m.xmp {
        let mut data = b"XML:com.adobe.xmp\0\0\0\0\0".to_vec();
        data.extend(xmp.as_bytes());
        png_chunk(&mut chunks, b"iTXt", &data);
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
    let mut vp8x = vec![flags, 0, 0, 0];
    vp8x.extend(&(w - 1).to_le_bytes()[..3]);
    vp8x.extend(&(h - 1).to_le_bytes()[..3]);
    let mut body = b"WEBP".to_vec();
    riff_chunk(&mut body, b"VP8X", &vp8x);
    if let Some(icc) = icc {
        riff_chunk(&mut body, b"ICCP", icc);
    }
    for (k, d) in &chunks {
        if !matches!(k, b"VP8X" | b"ICCP" | b"XMP ") {
            riff_chunk(&mut body, k, d);
        }
    }
    if let Some(xmp) = m.xmp {
        riff_chunk(&mut body, b"XMP ", xmp.as_bytes());
    }
    let mut out = b"RIFF".to_vec();
    out.extend((body.len() as u32).to_le_bytes());
    out.extend(body);
    out
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
    };

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
