//! Tile decompression: none, LZW, deflate, zstd, PackBits and WebP (JPEG tiles in
//! `jpeg.rs`), the horizontal predictors and sub-byte unpacking. Output sizes
//! are fixed by the tile geometry, never by the file.

use crate::image::{Codec, DecodeError, Format, ImageError, Unsupported};
use std::cell::RefCell;

/// A codec library's report `message` as an error.
pub(super) fn failed(codec: Codec, message: impl std::fmt::Display) -> ImageError {
    DecodeError::codec(codec, message).into()
}

/// A tile of `codec` that decompressed to `got` of its `expected` bytes.
fn short(codec: Codec, got: usize, expected: usize) -> ImageError {
    DecodeError::Short {
        codec,
        got,
        expected,
    }
    .into()
}

/// Decompresses `src` into exactly `expected` bytes (missing bytes are an error,
/// surplus bytes are ignored).
pub fn decompress(compression: u16, src: &[u8], expected: usize) -> Result<Vec<u8>, ImageError> {
    match compression {
        1 => {
            if src.len() < expected {
                return Err(short(Codec::Uncompressed, src.len(), expected));
            }
            Ok(src[..expected].to_vec())
        }
        8 | 32946 => inflate(src, expected),
        5 => {
            let mut out = vec![0u8; expected];
            let mut dec = weezl::decode::Decoder::with_tiff_size_switch(weezl::BitOrder::Msb, 8);
            let mut filled = 0;
            let mut input = src;
            // Each round consumes input or fills output; bounded by both lengths.
            for _ in 0..=(src.len() + expected + 1) {
                if filled == expected || input.is_empty() {
                    break;
                }
                let r = dec.decode_bytes(input, &mut out[filled..]);
                input = &input[r.consumed_in..];
                filled += r.consumed_out;
                match r.status {
                    Ok(weezl::LzwStatus::Done) => break,
                    Ok(weezl::LzwStatus::Ok) => {}
                    Ok(weezl::LzwStatus::NoProgress) => break,
                    Err(e) => return Err(failed(Codec::Lzw, e)),
                }
            }
            if filled < expected {
                return Err(short(Codec::Lzw, filled, expected));
            }
            Ok(out)
        }
        50000 => {
            let out = zstd::bulk::decompress(src, expected).map_err(|e| failed(Codec::Zstd, e))?;
            if out.len() < expected {
                return Err(short(Codec::Zstd, out.len(), expected));
            }
            Ok(out)
        }
        32773 => packbits(src, expected),
        code => Err(Unsupported::Compression {
            format: Format::Tiff,
            code,
        }
        .into()),
    }
}

/// A thread's libdeflate decompressor.
struct Inflater(*mut libdeflate_sys::libdeflate_decompressor);

impl Drop for Inflater {
    fn drop(&mut self) {
        // SAFETY: allocated by libdeflate_alloc_decompressor, freed once.
        unsafe { libdeflate_sys::libdeflate_free_decompressor(self.0) }
    }
}

thread_local! {
    static INFLATER: RefCell<Option<Inflater>> = const { RefCell::new(None) };
}

/// zlib-wrapped (or raw) deflate data into exactly `expected` bytes.
fn inflate(src: &[u8], expected: usize) -> Result<Vec<u8>, ImageError> {
    use libdeflate_sys::*;
    INFLATER.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            // SAFETY: plain constructor; a null answer is checked.
            let d = unsafe { libdeflate_alloc_decompressor() };
            if d.is_null() {
                return Err(failed(Codec::Deflate, "cannot allocate a decompressor"));
            }
            *slot = Some(Inflater(d));
        }
        let d = slot.as_ref().expect("initialised above").0;
        let mut out: Vec<u8> = Vec::with_capacity(expected);
        let mut n = 0usize;
        // SAFETY: libdeflate reads `src` within its length and writes at most `expected`
        // bytes into `out`'s capacity, reporting how many; the length is set only to
        // bytes it wrote.
        unsafe {
            let (src_ptr, out_ptr) = (src.as_ptr().cast(), out.as_mut_ptr().cast());
            let mut r =
                libdeflate_zlib_decompress(d, src_ptr, src.len(), out_ptr, expected, &mut n);
            // Not a zlib stream: perhaps a raw one (a zlib stream that only outgrows
            // the tile keeps that error).
            if r == libdeflate_result_LIBDEFLATE_BAD_DATA {
                r = libdeflate_deflate_decompress(d, src_ptr, src.len(), out_ptr, expected, &mut n);
            }
            // Only a complete stream counts: after an error (or a stream longer than the
            // tile) libdeflate does not say which bytes it wrote.
            if r != libdeflate_result_LIBDEFLATE_SUCCESS {
                let why = if r == libdeflate_result_LIBDEFLATE_INSUFFICIENT_SPACE {
                    "more data than the tile holds"
                } else {
                    "corrupt stream"
                };
                return Err(failed(Codec::Deflate, why));
            }
            out.set_len(n.min(expected));
        }
        if out.len() < expected {
            return Err(short(Codec::Deflate, out.len(), expected));
        }
        Ok(out)
    })
}

/// PackBits run-length decoding into exactly `expected` bytes.
fn packbits(src: &[u8], expected: usize) -> Result<Vec<u8>, ImageError> {
    let mut out = Vec::with_capacity(expected);
    let mut i = 0;
    while out.len() < expected && i < src.len() {
        let n = src[i] as i8;
        i += 1;
        if n >= 0 {
            let len = n as usize + 1;
            let lit = src.get(i..i + len).ok_or(DecodeError::Overrun {
                codec: Codec::PackBits,
                code: "literal",
            })?;
            out.extend_from_slice(lit);
            i += len;
        } else if n != -128 {
            let b = *src.get(i).ok_or(DecodeError::Overrun {
                codec: Codec::PackBits,
                code: "run",
            })?;
            out.resize(out.len() + (1 - n as isize) as usize, b);
            i += 1;
        }
    }
    if out.len() < expected {
        return Err(short(Codec::PackBits, out.len(), expected));
    }
    out.truncate(expected);
    Ok(out)
}

/// Unpacks MSB-first `bits`-wide samples (rows start on byte boundaries) into one
/// `u16` per sample, `per_row` samples per row, `rows` rows.
pub fn unpack_bits(raw: &[u8], bits: u16, per_row: usize, rows: usize) -> Vec<u16> {
    let row_bytes = (per_row * bits as usize).div_ceil(8);
    let mut out = Vec::with_capacity(per_row * rows);
    let mask = (1u32 << bits) - 1;
    for row in raw.chunks(row_bytes).take(rows) {
        let mut acc = 0u32;
        let mut have = 0u16;
        let mut bytes = row.iter();
        for _ in 0..per_row {
            while have < bits {
                acc = (acc << 8) | u32::from(*bytes.next().unwrap_or(&0));
                have += 8;
            }
            have -= bits;
            out.push(((acc >> have) & mask) as u16);
            acc &= (1 << have) - 1;
        }
    }
    out
}

/// Decodes a WebP tile to interleaved 8-bit RGB or RGBA (`channels` 3 or 4).
pub fn webp(bitstream: &[u8], channels: u16) -> Result<(usize, usize, Vec<u8>), ImageError> {
    let (mut w, mut h) = (0i32, 0i32);
    // SAFETY: the pointers and length describe `bitstream`; libwebp only reads them.
    let ok =
        unsafe { libwebp_sys::WebPGetInfo(bitstream.as_ptr(), bitstream.len(), &mut w, &mut h) };
    if ok == 0 || w <= 0 || h <= 0 || w > 16384 || h > 16384 {
        return Err(failed(Codec::Webp, "invalid bitstream"));
    }
    let (w, h) = (w as usize, h as usize);
    let c = channels as usize;
    let mut out = vec![0u8; w * h * c];
    let decode = match channels {
        3 => libwebp_sys::WebPDecodeRGBInto,
        4 => libwebp_sys::WebPDecodeRGBAInto,
        channels => {
            return Err(Unsupported::TileChannels {
                codec: Codec::Webp,
                channels,
            }
            .into())
        }
    };
    // SAFETY: `out` holds exactly `h` rows of `w * c` bytes, the size passed in.
    let p = unsafe {
        decode(
            bitstream.as_ptr(),
            bitstream.len(),
            out.as_mut_ptr(),
            out.len(),
            (w * c) as i32,
        )
    };
    if p.is_null() {
        return Err(failed(Codec::Webp, "corrupt bitstream"));
    }
    Ok((w, h, out))
}

/// Undoes horizontal differencing (predictor 2) row by row. The running sums live in
/// registers: reading back the sample just written (`x[i] += x[i - n]`) stalls on
/// store-to-load forwarding at every sample.
macro_rules! unpredict {
    ($name:ident, $t:ty) => {
        pub fn $name(data: &mut [$t], width: usize, channels: usize) {
            fn rows<const N: usize>(data: &mut [$t], row: usize) {
                for line in data.chunks_exact_mut(row) {
                    let mut acc = [0 as $t; N];
                    for px in line.chunks_exact_mut(N) {
                        for k in 0..N {
                            acc[k] = acc[k].wrapping_add(px[k]);
                            px[k] = acc[k];
                        }
                    }
                }
            }
            let row = width * channels;
            if row == 0 {
                return;
            }
            match channels {
                1 => rows::<1>(data, row),
                2 => rows::<2>(data, row),
                3 => rows::<3>(data, row),
                4 => rows::<4>(data, row),
                _ => {
                    for line in data.chunks_exact_mut(row) {
                        for i in channels..row {
                            line[i] = line[i].wrapping_add(line[i - channels]);
                        }
                    }
                }
            }
        }
    };
}

unpredict!(unpredict_scalar_u8, u8);

/// Undoes horizontal differencing of 8-bit samples (predictor 2).
pub fn unpredict_u8(data: &mut [u8], width: usize, channels: usize) {
    #[cfg(target_arch = "x86_64")]
    if matches!(channels, 3 | 4) && std::arch::is_x86_feature_detected!("ssse3") {
        // SAFETY: the CPU has SSSE3, checked just above.
        unsafe { unpredict_u8_ssse3(data, width, channels) };
        return;
    }
    unpredict_scalar_u8(data, width, channels)
}

/// [`unpredict_u8`] for 3 or 4 channels, whole pixels per 16-byte vector (5 or 4): a
/// prefix sum by pixel in log steps (shifts of 1, 2, 4 pixels), plus the previous
/// vector's last pixel broadcast. For 3 channels the vector's 16th byte belongs to the
/// next pixel and is stored back unchanged.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "ssse3")]
unsafe fn unpredict_u8_ssse3(data: &mut [u8], width: usize, channels: usize) {
    use std::arch::x86_64::*;
    let row = width * channels;
    if row == 0 {
        return;
    }
    let step = 16 / channels * channels;
    // Broadcast the last whole pixel of a vector over all of its pixel positions.
    let last = (step - channels) as i8; // first byte of the vector's last pixel
    let mut pattern = [0i8; 16];
    for (i, p) in pattern.iter_mut().enumerate() {
        *p = last + (i % channels) as i8;
    }
    let broadcast = _mm_loadu_si128(pattern.as_ptr() as *const __m128i);
    let keep: [i8; 16] = std::array::from_fn(|i| if i < step { -1 } else { 0 });
    let keep = _mm_loadu_si128(keep.as_ptr() as *const __m128i);
    let len = data.len();
    for start in (0..len / row * row).step_by(row) {
        let end = start + row;
        let mut at = start;
        let mut carry = _mm_setzero_si128();
        // Each vector is loaded before the previous one is stored: for 3 channels they
        // overlap by a byte, and a load of a just-stored byte would wait for the store.
        let fits = |at: usize| at + step <= end && at + 16 <= len;
        // SAFETY: every load and store covers 16 bytes at an `at` that `fits`.
        let mut next = if fits(at) {
            _mm_loadu_si128(data.as_ptr().add(at) as *const __m128i)
        } else {
            _mm_setzero_si128()
        };
        while fits(at) {
            let p = data.as_mut_ptr().add(at) as *mut __m128i;
            let raw = next;
            if fits(at + step) {
                next = _mm_loadu_si128(data.as_ptr().add(at + step) as *const __m128i);
            }
            let mut v = raw;
            if channels == 3 {
                v = _mm_add_epi8(v, _mm_slli_si128::<3>(v));
                v = _mm_add_epi8(v, _mm_slli_si128::<6>(v));
                v = _mm_add_epi8(v, _mm_slli_si128::<12>(v));
            } else {
                v = _mm_add_epi8(v, _mm_slli_si128::<4>(v));
                v = _mm_add_epi8(v, _mm_slli_si128::<8>(v));
            }
            v = _mm_add_epi8(v, carry);
            carry = _mm_shuffle_epi8(v, broadcast);
            let out = _mm_or_si128(_mm_and_si128(keep, v), _mm_andnot_si128(keep, raw));
            _mm_storeu_si128(p, out);
            at += step;
        }
        // The rest of the row, from the last pixel done.
        let mut acc = [0u8; 4];
        if at > start {
            acc[..channels].copy_from_slice(&data[at - channels..at]);
        }
        for (i, v) in data[at..end].iter_mut().enumerate() {
            let k = (at - start + i) % channels;
            acc[k] = acc[k].wrapping_add(*v);
            *v = acc[k];
        }
    }
}
unpredict!(unpredict_u16, u16);
unpredict!(unpredict_u32, u32);

/// 16-bit samples from their bytes in the file's order.
pub fn words16(raw: &[u8], little_endian: bool) -> Vec<u16> {
    let mut v = vec![0u16; raw.len() / 2];
    // One loop per byte order, so that each compiles to a straight vector loop.
    if little_endian {
        for (o, c) in v.iter_mut().zip(raw.chunks_exact(2)) {
            *o = u16::from_le_bytes([c[0], c[1]]);
        }
    } else {
        for (o, c) in v.iter_mut().zip(raw.chunks_exact(2)) {
            *o = u16::from_be_bytes([c[0], c[1]]);
        }
    }
    v
}

/// 32-bit samples of a tile: undoes predictor 2 (integer differencing) or 3 (the
/// floating-point predictor: per row, bytes regrouped by significance, then
/// byte-wise differencing) and returns the words in native order.
pub fn words32(
    raw: &mut [u8],
    width: usize,
    channels: usize,
    predictor: u16,
    little_endian: bool,
) -> Vec<u32> {
    let row_words = width * channels;
    let row_bytes = row_words * 4;
    if predictor == 3 && row_bytes > 0 {
        let mut out = vec![0u32; raw.len() / 4];
        for (row, words) in raw
            .chunks_exact_mut(row_bytes)
            .zip(out.chunks_exact_mut(row_words))
        {
            let mut acc = 0u8;
            for b in row.iter_mut() {
                acc = acc.wrapping_add(*b);
                *b = acc;
            }
            // Byte plane b (most significant first) holds byte b of every word.
            let (p0, rest) = row.split_at(row_words);
            let (p1, rest) = rest.split_at(row_words);
            let (p2, p3) = rest.split_at(row_words);
            for ((((w, &a), &b), &c), &d) in words.iter_mut().zip(p0).zip(p1).zip(p2).zip(p3) {
                *w = u32::from_be_bytes([a, b, c, d]);
            }
        }
        return out;
    }
    let mut v = vec![0u32; raw.len() / 4];
    if little_endian {
        for (o, c) in v.iter_mut().zip(raw.chunks_exact(4)) {
            *o = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
    } else {
        for (o, c) in v.iter_mut().zip(raw.chunks_exact(4)) {
            *o = u32::from_be_bytes([c[0], c[1], c[2], c[3]]);
        }
    }
    if predictor == 2 {
        unpredict_u32(&mut v, width, channels);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_tiles_never_inflate_past_their_size() {
        let raw = vec![0u8; 1 << 20];
        let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::default());
        let mut z = vec![0u8; c.zlib_compress_bound(raw.len())];
        let n = c.zlib_compress(&raw, &mut z).unwrap();
        let lzw = weezl::encode::Encoder::with_tiff_size_switch(weezl::BitOrder::Msb, 8)
            .encode(&raw)
            .unwrap();
        let zs = zstd::bulk::compress(&raw, 3).unwrap();
        // 1 MB of output from each, for a tile that holds 4 KB.
        for (codec, data) in [(8u16, &z[..n]), (5, &lzw[..]), (50000, &zs[..])] {
            match decompress(codec, data, 4096) {
                Err(_) => {}
                Ok(v) => assert!(v.len() <= 4096, "codec {codec}: {} bytes", v.len()),
            }
        }
    }

    #[test]
    fn vector_predictor_matches_the_scalar_one() {
        let mut seed = 7u32;
        for channels in [1usize, 2, 3, 4, 5] {
            for width in [1usize, 2, 4, 5, 6, 7, 11, 31, 256, 257] {
                let rows = 3;
                let raw: Vec<u8> = (0..width * channels * rows + 5)
                    .map(|_| {
                        seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                        (seed >> 24) as u8
                    })
                    .collect();
                let (mut a, mut b) = (raw.clone(), raw.clone());
                unpredict_u8(&mut a, width, channels);
                unpredict_scalar_u8(&mut b, width, channels);
                assert_eq!(a, b, "{channels} channels, width {width}");
            }
        }
    }

    #[test]
    fn predictor_restores_ramps() {
        let mut d = vec![10u8, 20, 1, 1, 1, 1, 5, 5, 1, 2, 1, 2];
        unpredict_u8(&mut d, 3, 2);
        assert_eq!(d, vec![10, 20, 11, 21, 12, 22, 5, 5, 6, 7, 7, 9]);
        let mut w = vec![65535u16, 1, 1];
        unpredict_u16(&mut w, 3, 1);
        assert_eq!(w, vec![65535, 0, 1]);
    }

    #[test]
    fn float_predictor_regroups_bytes() {
        let vals = [1.5f32, -2.25, 0.015625];
        // Encode as the float predictor does: planes by significance, then differencing.
        let bytes: Vec<[u8; 4]> = vals.iter().map(|v| v.to_be_bytes()).collect();
        let mut row: Vec<u8> = (0..4)
            .flat_map(|b| bytes.iter().map(move |w| w[b]))
            .collect();
        for i in (1..row.len()).rev() {
            row[i] = row[i].wrapping_sub(row[i - 1]);
        }
        let words = words32(&mut row, 3, 1, 3, true);
        let back: Vec<f32> = words.into_iter().map(f32::from_bits).collect();
        assert_eq!(back, vals);
        let mut ints: Vec<u8> = [5u32, 1, 2].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(words32(&mut ints, 3, 1, 2, true), vec![5, 6, 8]);
    }

    #[test]
    fn codecs_round_trip_and_bound_output() {
        let raw: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 256) as u8).collect();
        let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::default());
        let mut z = vec![0u8; c.zlib_compress_bound(raw.len())];
        let n = c.zlib_compress(&raw, &mut z).unwrap();
        assert_eq!(decompress(8, &z[..n], 4096).unwrap(), raw);
        assert!(
            decompress(8, &z[..n], 8192).is_err(),
            "short deflate output"
        );
        assert!(decompress(8, &z[..n / 2], 4096).is_err());
        let lzw = weezl::encode::Encoder::with_tiff_size_switch(weezl::BitOrder::Msb, 8)
            .encode(&raw)
            .unwrap();
        assert_eq!(decompress(5, &lzw, 4096).unwrap(), raw);
        assert!(decompress(5, &lzw[..lzw.len() / 2], 4096).is_err());
        let zs = zstd::bulk::compress(&raw, 3).unwrap();
        assert_eq!(decompress(50000, &zs, 4096).unwrap(), raw);
        assert!(
            decompress(50000, &zs, 100).is_err(),
            "zstd larger than the tile"
        );
        assert_eq!(decompress(1, &raw, 100).unwrap(), raw[..100].to_vec());
        assert!(decompress(1, &raw[..10], 100).is_err());
        assert!(matches!(
            decompress(34712, &raw, 10),
            Err(ImageError::Unsupported(_))
        ));
        assert!(decompress(8, b"garbage!", 64).is_err());
        assert!(super::super::jpeg::jpeg(b"\xff\xd8garbage", 3, (256, 256)).is_err());
    }

    #[test]
    fn packbits_runs_and_literals() {
        // literal of 3, run of 4 x 0xAA, no-op, literal of 1
        let src = [2u8, 1, 2, 3, 0xFD, 0xAA, 0x80, 0, 9];
        assert_eq!(
            decompress(32773, &src, 8).unwrap(),
            vec![1, 2, 3, 0xAA, 0xAA, 0xAA, 0xAA, 9]
        );
        assert!(decompress(32773, &src, 9).is_err(), "short output");
        assert!(
            decompress(32773, &[5u8, 1, 2], 6).is_err(),
            "literal past end"
        );
    }

    #[test]
    fn sub_byte_and_odd_depths_unpack() {
        // 1-bit, 10 samples per row: rows padded to 2 bytes
        let v = unpack_bits(&[0b1010_0000, 0b1100_0000, 0xFF, 0xFF], 1, 10, 2);
        assert_eq!(&v[..10], &[1, 0, 1, 0, 0, 0, 0, 0, 1, 1]);
        assert_eq!(&v[10..], &[1; 10]);
        // 12-bit: 0xABC, 0x123
        assert_eq!(
            unpack_bits(&[0xAB, 0xC1, 0x23], 12, 2, 1),
            vec![0xABC, 0x123]
        );
        // 4-bit with a short row: missing bytes read as zero, never past the buffer
        assert_eq!(unpack_bits(&[0x12], 4, 4, 1), vec![1, 2, 0, 0]);
    }
}
