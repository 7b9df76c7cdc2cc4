//! Tile samples from stored chunks: each chunk decompressed at the tile grid's size,
//! planes interleaved, palette, depth and photometric interpretation applied
//! (docs/sources.md §3.2–3.3), then edge tiles cropped to their real size.

use super::{bad, decode, jpeg, LevelData, TiffImage};
use crate::image::{
    Codec, DecodeError, Fault, Format, ImageError, Level, Samples, Tile, Unsupported,
};

/// Largest decoded tile accepted, in bytes.
const MAX_TILE_BYTES: usize = 256 << 20;

impl TiffImage {
    /// Tile `t` of `level`, its planes (planar configuration 2) decoded one by one and
    /// interleaved, then cropped to its real size at the edges.
    pub(super) fn tile(&self, level: &Level, d: &LevelData, t: u32) -> Result<Tile, ImageError> {
        let (w, h) = level.tile_size(t).expect("checked");
        let (tw, th) = (level.tile_width as usize, level.tile_height as usize);
        let planes = if d.planar == 2 { d.samples as usize } else { 1 };
        let per_chunk = d.samples as usize / planes;
        let tiles = level.tile_count();
        let mut chunks = Vec::with_capacity(planes);
        for p in 0..planes {
            chunks.push(self.decode_chunk(d, p as u32 * tiles + t, tw, th, per_chunk)?);
        }
        let (samples, channels) = match chunks.len() {
            1 => (chunks.pop().expect("one chunk"), per_chunk),
            _ => (
                interleave(&chunks).ok_or(ImageError::Decode(DecodeError::Planes))?,
                planes,
            ),
        };
        let (samples, channels) = self.finish_samples(d, samples, channels)?;
        Ok(Tile {
            width: w,
            height: h,
            channels: channels as u16,
            data: crop_samples(samples, tw, channels, w as usize, h as usize),
        })
    }

    /// Decodes one stored chunk (a tile, or one plane of it) at its full `tw×th` size.
    /// 8-bit data comes back as `U8`; 1–6 and 10–14-bit data as unexpanded `U16`
    /// values; 16 and 32-bit as stored; 64-bit float narrowed to `F32`.
    pub(super) fn decode_chunk(
        &self,
        d: &LevelData,
        chunk: u32,
        tw: usize,
        th: usize,
        channels: usize,
    ) -> Result<Samples, ImageError> {
        let bits = d.bits as usize;
        let row_bytes = (tw * channels * bits).div_ceil(8);
        let expected = row_bytes
            .checked_mul(th)
            .filter(|&n| n <= MAX_TILE_BYTES)
            .ok_or_else(|| {
                bad(Fault::TileBytes {
                    width: tw,
                    height: th,
                    channels,
                })
            })?;
        match d.compression {
            6 | 7 => {
                if d.bits != 8 {
                    return Err(Unsupported::TileBits {
                        codec: Codec::Jpeg,
                        bits: d.bits,
                    }
                    .into());
                }
                let bits = self.jpeg_bitstream(d, chunk)?;
                let (jw, jh, px) = jpeg::jpeg(&bits, channels as u16, (tw, th))?;
                return Ok(Samples::U8(fit(px, (jw, jh), channels, (tw, th))?));
            }
            50001 => {
                let (jw, jh, px) = decode::webp(self.stored(d, chunk)?, channels as u16)?;
                return Ok(Samples::U8(fit(px, (jw, jh), channels, (tw, th))?));
            }
            _ => {}
        }
        let mut raw = decode::decompress(d.compression, self.stored(d, chunk)?, expected)?;
        let le = matches!(&self.map[..2], b"II");
        Ok(match (d.bits, d.sample_format) {
            (8, _) => {
                if d.predictor == 2 {
                    decode::unpredict_u8(&mut raw, tw, channels);
                }
                Samples::U8(raw)
            }
            (16, f) if f != 3 => {
                let mut v = decode::words16(&raw, le);
                if d.predictor == 2 {
                    decode::unpredict_u16(&mut v, tw, channels);
                }
                Samples::U16(v)
            }
            (32, 3) => {
                let words = decode::words32(&mut raw, tw, channels, d.predictor, le);
                Samples::F32(words.into_iter().map(f32::from_bits).collect())
            }
            (32, _) => Samples::U32(decode::words32(&mut raw, tw, channels, d.predictor, le)),
            (64, 3) if d.predictor == 1 => Samples::F32(
                raw.chunks_exact(8)
                    .map(|c| {
                        let b = c.try_into().expect("8 bytes");
                        let v = if le {
                            f64::from_le_bytes(b)
                        } else {
                            f64::from_be_bytes(b)
                        };
                        v as f32
                    })
                    .collect(),
            ),
            (1 | 2 | 4 | 6 | 10 | 12 | 14, f) if f != 3 => {
                Samples::U16(decode::unpack_bits(&raw, d.bits, tw * channels, th))
            }
            (b, f) => {
                return Err(Unsupported::Samples {
                    format: Format::Tiff,
                    bits: b,
                    float: f == 3,
                    predictor: d.predictor != 1,
                }
                .into())
            }
        })
    }

    /// Applies the photometric interpretation and depth expansion (docs/sources.md §3.2–3.3):
    /// palette indices through the colour map, 1–6-bit data to 8 bits, 10–14-bit to
    /// 16 bits, MinIsWhite inverted at every depth, signed integers offset to unsigned.
    pub(super) fn finish_samples(
        &self,
        d: &LevelData,
        samples: Samples,
        channels: usize,
    ) -> Result<(Samples, usize), ImageError> {
        if d.photometric == 3 {
            let map = d
                .colour_map
                .as_ref()
                .ok_or_else(|| bad(Fault::NoColorMap))?;
            let n = map.len() / 3;
            let index = |i: usize| i.min(n - 1);
            let rgb = |i: usize| {
                let i = index(i);
                [
                    (map[i] >> 8) as u8,
                    (map[n + i] >> 8) as u8,
                    (map[2 * n + i] >> 8) as u8,
                ]
            };
            let out: Vec<u8> = match samples {
                Samples::U8(v) => v.iter().flat_map(|&i| rgb(i as usize)).collect(),
                Samples::U16(v) => v.iter().flat_map(|&i| rgb(i as usize)).collect(),
                _ => return Err(Unsupported::PaletteDepth.into()),
            };
            return Ok((Samples::U8(out), 3));
        }
        let invert = d.photometric == 0;
        let signed = d.sample_format == 2 && d.photometric != 8;
        let samples = match samples {
            Samples::U16(v) if d.bits < 8 => {
                let b = d.bits;
                Samples::U8(
                    v.into_iter()
                        .map(|s| {
                            let x = match b {
                                1 => s * 255,
                                2 => s * 85,
                                4 => s * 17,
                                _ => (s << 2) | (s >> 4),
                            } as u8;
                            if invert {
                                255 - x
                            } else {
                                x
                            }
                        })
                        .collect(),
                )
            }
            Samples::U16(mut v) => {
                let b = d.bits;
                if b < 16 {
                    v.iter_mut()
                        .for_each(|s| *s = (*s << (16 - b)) | (*s >> (2 * b - 16)));
                }
                if signed {
                    v.iter_mut().for_each(|s| *s ^= 0x8000);
                }
                if invert {
                    v.iter_mut().for_each(|s| *s = 65535 - *s);
                }
                Samples::U16(v)
            }
            Samples::U8(mut v) => {
                if signed {
                    v.iter_mut().for_each(|s| *s ^= 0x80);
                }
                if invert {
                    v.iter_mut().for_each(|s| *s = 255 - *s);
                }
                Samples::U8(v)
            }
            Samples::U32(mut v) => {
                if signed {
                    v.iter_mut().for_each(|s| *s ^= 0x8000_0000);
                }
                if invert {
                    v.iter_mut().for_each(|s| *s = u32::MAX - *s);
                }
                Samples::U32(v)
            }
            Samples::F32(mut v) => {
                if invert {
                    v.iter_mut().for_each(|s| *s = 1.0 - *s);
                }
                Samples::F32(v)
            }
        };
        Ok((samples, channels))
    }
}

/// A decoded `jw×jh` chunk as exactly `tw×th` pixels: codecs may store edge tiles
/// larger than the tile grid, which is cropped here; a smaller chunk is an error.
fn fit(
    px: Vec<u8>,
    (jw, jh): (usize, usize),
    channels: usize,
    (tw, th): (usize, usize),
) -> Result<Vec<u8>, ImageError> {
    if jw < tw || jh < th {
        return Err(DecodeError::TileSize {
            width: jw,
            height: jh,
            tile_width: tw,
            tile_height: th,
        }
        .into());
    }
    Ok(crop(px, jw, channels, tw, th))
}

/// Interleaves single-channel planes into one buffer of `planes.len()` channels;
/// `None` when the planes differ in type or size.
fn interleave(planes: &[Samples]) -> Option<Samples> {
    fn weave<T: Copy>(planes: &[&Vec<T>]) -> Option<Vec<T>> {
        let n = planes.first()?.len();
        if planes.iter().any(|p| p.len() != n) {
            return None;
        }
        let mut out = Vec::with_capacity(n * planes.len());
        for i in 0..n {
            out.extend(planes.iter().map(|p| p[i]));
        }
        Some(out)
    }
    macro_rules! all_of {
        ($variant:ident) => {{
            let vs: Option<Vec<_>> = planes
                .iter()
                .map(|p| match p {
                    Samples::$variant(v) => Some(v),
                    _ => None,
                })
                .collect();
            vs.and_then(|vs| weave(&vs)).map(Samples::$variant)
        }};
    }
    all_of!(U8)
        .or_else(|| all_of!(U16))
        .or_else(|| all_of!(U32))
        .or_else(|| all_of!(F32))
}

/// The top-left `w×h` pixels of samples `tw` pixels wide.
fn crop_samples(s: Samples, tw: usize, c: usize, w: usize, h: usize) -> Samples {
    match s {
        Samples::U8(v) => Samples::U8(crop(v, tw, c, w, h)),
        Samples::U16(v) => Samples::U16(crop(v, tw, c, w, h)),
        Samples::U32(v) => Samples::U32(crop(v, tw, c, w, h)),
        Samples::F32(v) => Samples::F32(crop(v, tw, c, w, h)),
    }
}

/// The top-left `w×h` pixels of a buffer `stride_px` pixels wide.
fn crop<T: Copy>(mut src: Vec<T>, stride_px: usize, channels: usize, w: usize, h: usize) -> Vec<T> {
    if stride_px == w {
        src.truncate(w * h * channels);
        return src;
    }
    let mut out = Vec::with_capacity(w * h * channels);
    for row in src.chunks_exact(stride_px * channels).take(h) {
        out.extend_from_slice(&row[..w * channels]);
    }
    out
}
