//! JPEG tiles of a TIFF (compression 6 and 7): decoded whole or in part with
//! TurboJPEG, their frame checked against the tile the TIFF declares before anything
//! is allocated for it, and checked the same way before being passed through.

use super::decode::failed;
use crate::image::{Codec, DecodeError, ImageError, Unsupported};

/// Whether the JPEG `bytes` is one a client can be handed as the tile: its frame is
/// exactly `tile` with `components` components and it passes
/// [`crate::turbo::check_scans`], as a decode here would require.
pub fn jpeg_passable(bytes: &[u8], tile: (u32, u32), components: u16) -> bool {
    let mut i = 2;
    if bytes.len() < 4 || bytes[..2] != [0xFF, 0xD8] {
        return false;
    }
    let frame = loop {
        let Some(&[0xFF, m, hi, lo]) = bytes.get(i..i + 4) else {
            return false;
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        let Some(seg) = bytes.get(i + 4..i + 2 + len) else {
            return false;
        };
        // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
        if (0xC0..=0xCF).contains(&m) && !matches!(m, 0xC4 | 0xC8 | 0xCC) {
            break seg;
        }
        if m == 0xDA || len < 2 {
            return false;
        }
        i += 2 + len;
    };
    let [_, h0, h1, w0, w1, n, ..] = *frame else {
        return false;
    };
    let (w, h) = (u16::from_be_bytes([w0, w1]), u16::from_be_bytes([h0, h1]));
    (u32::from(w), u32::from(h)) == tile
        && u16::from(n) == components
        && crate::turbo::check_scans(&bytes[i..], u64::from(w) * u64::from(h)).is_ok()
}

/// Decodes a JPEG tile to interleaved 8-bit samples of `channels` (1 or 3), returning
/// its width and height. YCbCr data comes out as RGB. A frame larger than `tile` (the
/// tile size the TIFF declares) is refused before anything is allocated for it.
pub fn jpeg(
    bitstream: &[u8],
    channels: u16,
    tile: (usize, usize),
) -> Result<(usize, usize, Vec<u8>), ImageError> {
    let (_, _, w, h, px) = jpeg_part(bitstream, channels, tile, None)?;
    Ok((w, h, px))
}

/// Decodes the part `(x, y, w, h)` of a JPEG tile (`None`: all of it) to interleaved
/// 8-bit samples of `channels` (1 or 3); YCbCr data comes out as RGB. Rows above the
/// part are only entropy-decoded and rows below it not at all, columns outside it skip
/// the inverse DCT and colour conversion. The top
/// left corner moves to the JPEG's block grid, so the answer is `(x0, y0, width, height,
/// samples)` with `(x0, y0)` the first pixel decoded, at or above and left of `(x, y)`.
pub fn jpeg_part(
    bitstream: &[u8],
    channels: u16,
    tile: (usize, usize),
    part: Option<(usize, usize, usize, usize)>,
) -> Result<(usize, usize, usize, usize, Vec<u8>), ImageError> {
    use turbojpeg::raw;
    let format = match channels {
        1 => raw::TJPF_TJPF_GRAY,
        3 => raw::TJPF_TJPF_RGB,
        channels => {
            return Err(Unsupported::TileChannels {
                codec: Codec::Jpeg,
                channels,
            }
            .into())
        }
    };
    let decoded = crate::turbo::decompressor(|tj| {
        let handle = tj.raw();
        let fail = || failed(Codec::Jpeg, tj.error());
        // SAFETY: the buffer outlives the call; TurboJPEG reads at most its length.
        if unsafe {
            raw::tj3DecompressHeader(handle, bitstream.as_ptr(), bitstream.len() as raw::size_t)
        } != 0
        {
            return Err(fail());
        }
        let get = |p| tj.get(p);
        let (jw, jh) = (
            get(raw::TJPARAM_TJPARAM_JPEGWIDTH),
            get(raw::TJPARAM_TJPARAM_JPEGHEIGHT),
        );
        if jw <= 0 || jh <= 0 {
            return Err(DecodeError::EmptyFrame {
                width: jw,
                height: jh,
            }
            .into());
        }
        let (jw, jh) = (jw as usize, jh as usize);
        crate::turbo::check_scans(bitstream, (jw * jh) as u64)
            .map_err(|e| failed(Codec::Jpeg, e))?;
        // The tile's own header must not promise more than the container's tile size:
        // a tile declaring 65500x65500 would otherwise be decoded into 12 GB.
        if jw > tile.0 || jh > tile.1 {
            return Err(DecodeError::FrameTooLarge {
                width: jw,
                height: jh,
                tile_width: tile.0,
                tile_height: tile.1,
            }
            .into());
        }
        let (x, y, w, h) = part.unwrap_or((0, 0, jw, jh));
        if w == 0 || h == 0 || x + w > jw || y + h > jh {
            return Err(DecodeError::FramePart {
                width: jw,
                height: jh,
                part: (x, y, w, h),
            }
            .into());
        }
        // The block width for the stream's chroma subsampling (unknown: no cropping in x).
        let subsamp = get(raw::TJPARAM_TJPARAM_SUBSAMP);
        // TurboJPEG's tjMCUWidth and tjMCUHeight (header-only tables) for 4:4:4, 4:2:2,
        // 4:2:0, grey, 4:4:0, 4:1:1, 4:4:1; unknown subsampling: no cropping.
        let (bw, bh) = match subsamp {
            0..=6 => (
                [8, 16, 16, 8, 8, 32, 8][subsamp as usize],
                [8, 8, 16, 8, 16, 8, 32][subsamp as usize],
            ),
            _ => (jw, jh),
        };
        // The smoothing chroma upsampler reads one chroma sample (two pixels) beyond
        // each output pixel, which a crop tight to the part would lack at its edges:
        // crops start on the block grid two pixels early and end two pixels late.
        let (x0, y0) = (x.saturating_sub(2) / bw * bw, y.saturating_sub(2) / bh * bh);
        let (cw, ch) = ((x + w + 2).min(jw) - x0, (y + h + 2).min(jh) - y0);
        let region = if (x0, y0, cw, ch) == (0, 0, jw, jh) {
            raw::tjregion {
                x: 0,
                y: 0,
                w: 0,
                h: 0,
            }
        } else {
            raw::tjregion {
                x: x0 as libc::c_int,
                y: y0 as libc::c_int,
                w: cw as libc::c_int,
                h: ch as libc::c_int,
            }
        };
        // SAFETY: the header was read just above, as the call requires.
        if unsafe { raw::tj3SetCroppingRegion(handle, region) } != 0 {
            return Err(fail());
        }
        let pitch = cw * channels as usize;
        let len = pitch * ch;
        let mut out: Vec<u8> = Vec::with_capacity(len);
        // SAFETY: `out` has room for `h` rows of `pitch` bytes, exactly what a decode of
        // the cropping region writes; its length is set only after a successful decode,
        // which has written every one of those bytes.
        unsafe {
            if raw::tj3Decompress8(
                handle,
                bitstream.as_ptr(),
                bitstream.len() as raw::size_t,
                out.as_mut_ptr(),
                pitch as libc::c_int,
                format as libc::c_int,
            ) != 0
            {
                return Err(fail());
            }
            out.set_len(len);
        }
        Ok((x0, y0, cw, ch, out))
    });
    decoded.map_err(|e| failed(Codec::Jpeg, e))?
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::turbo::testing::{repeat_last_scan, test_jpeg};

    #[test]
    fn jpeg_tiles_larger_than_their_tiff_tile_are_refused() {
        let mut j = test_jpeg(false);
        assert_eq!(jpeg(&j, 3, (256, 256)).unwrap().0, 256);
        // SOF0: FF C0, length, precision, then height and width.
        let sof = j.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
        j[sof + 5..sof + 9].copy_from_slice(&[0xFF, 0xDC, 0xFF, 0xDC]); // 65500x65500
        let e = jpeg(&j, 3, (256, 256)).unwrap_err().to_string();
        assert!(e.contains("65500x65500") && e.contains("256x256"), "{e}");
        let e = jpeg_part(&j, 3, (256, 256), Some((0, 0, 16, 16))).unwrap_err();
        assert!(e.to_string().contains("65500x65500"), "{e}");
    }

    #[test]
    fn only_tiles_a_decode_would_accept_are_passed_through() {
        let j = test_jpeg(true);
        assert!(jpeg_passable(&j, (256, 256), 3));
        assert!(!jpeg_passable(&j, (256, 256), 1), "component count");
        assert!(
            !jpeg_passable(&j, (512, 256), 3),
            "frame smaller than the tile"
        );
        assert!(!jpeg_passable(&repeat_last_scan(&j, 600), (256, 256), 3));
        assert!(
            !jpeg_passable(b"\xff\xd8\xff\xe0\x00", (256, 256), 3),
            "cut header"
        );
    }

    #[test]
    fn progressive_jpegs_are_limited_in_scans() {
        let j = test_jpeg(true);
        assert_eq!(
            jpeg(&j, 3, (256, 256)).unwrap().0,
            256,
            "a normal one decodes"
        );
        // A legal file can repeat its last scan: 2 000 full passes over the image.
        let e = jpeg(&repeat_last_scan(&j, 2000), 3, (256, 256))
            .unwrap_err()
            .to_string();
        assert!(e.contains("scans"), "{e}");
    }
}
