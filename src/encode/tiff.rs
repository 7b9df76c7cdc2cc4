//! TIFF output: one little-endian IFD, strips of up to 64 rows, compression none, LZW,
//! Deflate, JPEG (1 or 3 channels: each strip a complete JPEG stream, YCbCr 4:2:0),
//! WebP (3 or 4 channels: each strip a WebP bitstream) or Zstd (`TIFF_COMPRESSION`).
//! JPEG or WebP asked for channels they cannot carry falls back to Deflate.

use super::{EncodeError, TiffTag};
use crate::pipeline::Raster;

/// Rows per strip.
const ROWS: u32 = 64;

/// `TIFF_COMPRESSION` codes: 0 none, 1 LZW, 2 Deflate, 3 JPEG, 4 WebP, 5 Zstd.
/// `tags` are added to the IFD (metadata: text, resolution, XMP, ICC).
pub fn encode(
    r: &Raster,
    compression: i32,
    level: i32,
    tags: &[TiffTag],
) -> Result<Vec<u8>, EncodeError> {
    let c = r.channels as usize;
    if c == 0
        || r.width == 0
        || r.height == 0
        || r.data.len() != r.width as usize * r.height as usize * c
    {
        return Err(EncodeError::Tiff("raster size mismatch".into()));
    }
    let (tag_compression, codec) = match compression {
        0 => (1u16, 0),
        1 => (5, 1),
        3 if c == 1 || c == 3 => (7, 3),
        4 if c == 3 || c == 4 => (50001, 4),
        5 => (50000, 5),
        _ => (8, 2),
    };
    let row = r.width as usize * c;
    let mut out = vec![0u8; 8];
    out[..4].copy_from_slice(b"II*\0");
    let mut offsets = Vec::new();
    let mut counts = Vec::new();
    for strip in r.data.chunks(row * ROWS as usize) {
        let bytes = match codec {
            0 => strip.to_vec(),
            1 => weezl::encode::Encoder::with_tiff_size_switch(weezl::BitOrder::Msb, 8)
                .encode(strip)
                .map_err(|e| EncodeError::Tiff(format!("LZW: {e}")))?,
            5 => zstd::bulk::compress(strip, level.clamp(1, 19))
                .map_err(|e| EncodeError::Tiff(format!("zstd: {e}")))?,
            3 | 4 => {
                let part = Raster {
                    width: r.width,
                    height: (strip.len() / row) as u32,
                    channels: r.channels,
                    data: strip.to_vec(),
                };
                if codec == 3 {
                    super::jpeg::encode(&part, level.clamp(1, 100))?
                } else {
                    super::webp::encode(&part, level.clamp(-1, 100))?
                }
            }
            _ => {
                let lvl = libdeflater::CompressionLvl::new(level.clamp(1, 9)).unwrap_or_default();
                let mut z = libdeflater::Compressor::new(lvl);
                let mut buf = vec![0u8; z.zlib_compress_bound(strip.len())];
                let n = z
                    .zlib_compress(strip, &mut buf)
                    .map_err(|e| EncodeError::Tiff(format!("deflate: {e:?}")))?;
                buf.truncate(n);
                buf
            }
        };
        if out.len() % 2 == 1 {
            out.push(0);
        }
        offsets.push(out.len() as u32);
        counts.push(bytes.len() as u32);
        out.extend_from_slice(&bytes);
    }
    // Out-of-line values: bits per sample, strip offsets and counts, software.
    let extra = |out: &mut Vec<u8>, bytes: &[u8]| -> u32 {
        if out.len() % 2 == 1 {
            out.push(0);
        }
        let at = out.len() as u32;
        out.extend_from_slice(bytes);
        at
    };
    let bits: Vec<u8> = (0..c).flat_map(|_| 8u16.to_le_bytes()).collect();
    let bits_at = if c > 2 { extra(&mut out, &bits) } else { 0 };
    let off_bytes: Vec<u8> = offsets.iter().flat_map(|v| v.to_le_bytes()).collect();
    let cnt_bytes: Vec<u8> = counts.iter().flat_map(|v| v.to_le_bytes()).collect();
    let off_at = if offsets.len() > 1 {
        extra(&mut out, &off_bytes)
    } else {
        offsets[0]
    };
    let cnt_at = if counts.len() > 1 {
        extra(&mut out, &cnt_bytes)
    } else {
        counts[0]
    };
    let software = concat!("tessera/", env!("CARGO_PKG_VERSION"), "\0");
    let sw_at = extra(&mut out, software.as_bytes());
    // JPEG strips of colour images hold YCbCr, subsampled 2×2.
    let photometric: u16 = match (c, codec) {
        (..=2, _) => 1,
        (3, 3) => 6,
        _ => 2,
    };
    let nstrips = offsets.len() as u32;
    // (tag, type, count, value-or-offset)
    let mut entries: Vec<(u16, u16, u32, u32)> = vec![
        (256, 4, 1, r.width),
        (257, 4, 1, r.height),
        (
            258,
            3,
            c as u32,
            if c > 2 {
                bits_at
            } else if c == 2 {
                8 | (8 << 16)
            } else {
                8
            },
        ),
        (259, 3, 1, tag_compression as u32),
        (262, 3, 1, photometric as u32),
        (273, 4, nstrips, off_at),
        (274, 3, 1, 1),
        (277, 3, 1, c as u32),
        (278, 4, 1, ROWS.min(r.height)),
        (279, 4, nstrips, cnt_at),
        (284, 3, 1, 1),
        (305, 2, software.len() as u32, sw_at),
    ];
    if c == 2 || c == 4 {
        entries.push((338, 3, 1, 2)); // unassociated alpha
    }
    if photometric == 6 {
        entries.push((530, 3, 2, 2 | (2 << 16))); // YCbCrSubSampling 2, 2
    }
    for (tag, ty, count, data) in tags {
        let value = if data.len() <= 4 {
            let mut v = [0u8; 4];
            v[..data.len()].copy_from_slice(data);
            u32::from_le_bytes(v)
        } else {
            extra(&mut out, data)
        };
        entries.retain(|e| e.0 != *tag);
        entries.push((*tag, *ty, *count, value));
    }
    entries.sort_by_key(|e| e.0);
    if out.len() % 2 == 1 {
        out.push(0);
    }
    let ifd = out.len() as u32;
    out[4..8].copy_from_slice(&ifd.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    for (tag, ty, count, value) in entries {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&ty.to_le_bytes());
        out.extend_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&value.to_le_bytes());
    }
    out.extend_from_slice(&0u32.to_le_bytes());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_the_reader() {
        // The reader serves tiled TIFFs only, so the strips are checked by hand.
        // JPEG for 2 channels and WebP for 1 fall back to Deflate.
        for (comp, c) in [(0, 1), (1, 3), (2, 4), (5, 2), (3, 2), (4, 1)] {
            let r = Raster {
                width: 37,
                height: 150,
                channels: c,
                data: (0..37 * 150 * c as u32)
                    .map(|i| (i * 7 % 256) as u8)
                    .collect(),
            };
            let t = encode(&r, comp, 6, &[]).unwrap();
            assert_eq!(&t[..4], b"II*\0");
            let ifd = u32::from_le_bytes(t[4..8].try_into().unwrap()) as usize;
            let n = u16::from_le_bytes([t[ifd], t[ifd + 1]]) as usize;
            let tag = |want: u16| -> (u32, u32) {
                (0..n)
                    .map(|i| ifd + 2 + i * 12)
                    .find(|&e| u16::from_le_bytes([t[e], t[e + 1]]) == want)
                    .map(|e| {
                        (
                            u32::from_le_bytes(t[e + 4..e + 8].try_into().unwrap()),
                            u32::from_le_bytes(t[e + 8..e + 12].try_into().unwrap()),
                        )
                    })
                    .expect("tag present")
            };
            let (nstrips, offs) = tag(273);
            let (_, cnts) = tag(279);
            assert_eq!(nstrips, 3);
            let code = tag(259).1 as u16;
            let mut data = Vec::new();
            for s in 0..nstrips as usize {
                let o = u32::from_le_bytes(t[offs as usize + s * 4..][..4].try_into().unwrap())
                    as usize;
                let l = u32::from_le_bytes(t[cnts as usize + s * 4..][..4].try_into().unwrap())
                    as usize;
                let rows = 64.min(150 - s * 64);
                let expected = rows * 37 * c as usize;
                data.extend(crate::image::tiff::decompress_for_tests(
                    code,
                    &t[o..o + l],
                    expected,
                ));
            }
            assert_eq!(data, r.data, "compression {comp}, {c} channels");
            assert_eq!(tag(262).1, if c <= 2 { 1 } else { 2 });
        }
    }
}
