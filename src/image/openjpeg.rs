//! JPEG2000 window decoding through OpenJPEG (`openjpeg-sys`, bundled OpenJPEG 2.5) with
//! our own memory-map stream: the `jpeg2k` crate's in-memory stream returns a wrong
//! skip count and breaks region decoding of tiled files. Every call owns its codec and
//! stream; errors come back as values, OpenJPEG's messages go to the debug log.

use openjpeg_sys as opj;
use std::ffi::{c_char, c_void, CStr};

/// The stream's view of the file.
struct Source<'a> {
    data: &'a [u8],
    pos: usize,
}

unsafe extern "C" fn read(buf: *mut c_void, n: usize, user: *mut c_void) -> usize {
    // SAFETY: `user` is the Source given to the stream, alive for the decode call.
    let s = unsafe { &mut *(user as *mut Source) };
    let left = s.data.len().saturating_sub(s.pos);
    if left == 0 {
        return usize::MAX; // (OPJ_SIZE_T)-1: end of stream
    }
    let k = n.min(left);
    // SAFETY: OpenJPEG hands a buffer of at least n bytes.
    unsafe { std::ptr::copy_nonoverlapping(s.data.as_ptr().add(s.pos), buf as *mut u8, k) };
    s.pos += k;
    k
}

unsafe extern "C" fn skip(n: i64, user: *mut c_void) -> i64 {
    // SAFETY: as in `read`.
    let s = unsafe { &mut *(user as *mut Source) };
    let target = (s.pos as i64)
        .saturating_add(n)
        .clamp(0, s.data.len() as i64);
    let moved = target - s.pos as i64;
    s.pos = target as usize;
    moved
}

unsafe extern "C" fn seek(pos: i64, user: *mut c_void) -> i32 {
    // SAFETY: as in `read`.
    let s = unsafe { &mut *(user as *mut Source) };
    if pos < 0 || pos as u64 > s.data.len() as u64 {
        return 0;
    }
    s.pos = pos as usize;
    1
}

unsafe extern "C" fn message(msg: *const c_char, _user: *mut c_void) {
    if !msg.is_null() {
        // SAFETY: OpenJPEG passes a NUL-terminated message.
        let text = unsafe { CStr::from_ptr(msg) }.to_string_lossy();
        log::debug!("OpenJPEG: {}", text.trim_end());
    }
}

/// Decoded components of a window, as OpenJPEG holds them: one plane per component,
/// each with the offset that makes a signed component's samples unsigned.
pub struct Planes<'a> {
    pub width: usize,
    pub height: usize,
    pub precision: u32,
    pub planes: Vec<(&'a [i32], i32)>,
}

/// Decodes `[x0, x1) × [y0, y1)` of the full-resolution grid at `reduce`, with `layers`
/// quality layers (0 = all), and hands the planes to `visit` before they are freed (the
/// caller converts them once, into its own layout).
pub fn decode<R>(
    data: &[u8],
    reduce: u32,
    layers: u32,
    (x0, y0, x1, y1): (u32, u32, u32, u32),
    visit: impl FnOnce(&Planes) -> R,
) -> Result<R, String> {
    let mut src = Source { data, pos: 0 };
    // SAFETY: the stream, codec and image are created and destroyed in this function;
    // the Source outlives them; every pointer from OpenJPEG is checked before use.
    unsafe {
        let stream = opj::opj_stream_create(1 << 16, 1);
        if stream.is_null() {
            return Err("cannot create a stream".into());
        }
        opj::opj_stream_set_user_data(stream, &mut src as *mut Source as *mut c_void, None);
        opj::opj_stream_set_user_data_length(stream, data.len() as u64);
        opj::opj_stream_set_read_function(stream, Some(read));
        opj::opj_stream_set_skip_function(stream, Some(skip));
        opj::opj_stream_set_seek_function(stream, Some(seek));
        let codec = opj::opj_create_decompress(opj::CODEC_FORMAT::OPJ_CODEC_JP2);
        if codec.is_null() {
            opj::opj_stream_destroy(stream);
            return Err("cannot create a decoder".into());
        }
        opj::opj_set_error_handler(codec, Some(message), std::ptr::null_mut());
        opj::opj_set_warning_handler(codec, Some(message), std::ptr::null_mut());
        opj::opj_set_info_handler(codec, None, std::ptr::null_mut());
        let mut params: opj::opj_dparameters_t = std::mem::zeroed();
        opj::opj_set_default_decoder_parameters(&mut params);
        params.cp_reduce = reduce;
        params.cp_layer = layers;
        let mut image: *mut opj::opj_image_t = std::ptr::null_mut();
        let result = (|| -> Result<R, String> {
            if opj::opj_setup_decoder(codec, &mut params) == 0 {
                return Err("decoder setup failed".into());
            }
            if opj::opj_read_header(stream, codec, &mut image) == 0 || image.is_null() {
                return Err("cannot read the header".into());
            }
            let img = &*image;
            let (ix0, iy0) = (img.x0, img.y0);
            let ax0 = (ix0 + x0).min(img.x1);
            let ay0 = (iy0 + y0).min(img.y1);
            let ax1 = (ix0 + x1).min(img.x1);
            let ay1 = (iy0 + y1).min(img.y1);
            if ax1 <= ax0 || ay1 <= ay0 {
                return Err("empty decode window".into());
            }
            if opj::opj_set_decode_area(
                codec, image, ax0 as i32, ay0 as i32, ax1 as i32, ay1 as i32,
            ) == 0
            {
                return Err("cannot set the decode window".into());
            }
            if opj::opj_decode(codec, stream, image) == 0 {
                return Err("decoding failed".into());
            }
            opj::opj_end_decompress(codec, stream);
            let img = &*image;
            if img.numcomps == 0 || img.comps.is_null() {
                return Err("no components".into());
            }
            let comps = std::slice::from_raw_parts(img.comps, img.numcomps as usize);
            let (w, h) = (comps[0].w as usize, comps[0].h as usize);
            // Components of another size (subsampled chroma, extra planes) are left out.
            let used: Vec<&opj::opj_image_comp_t> = comps
                .iter()
                .take(4)
                .take_while(|c| c.w as usize == w && c.h as usize == h && !c.data.is_null())
                .collect();
            if w == 0 || h == 0 || used.is_empty() {
                return Err("empty decoded window".into());
            }
            let planes = used
                .iter()
                .map(|c| {
                    let offset = if c.sgnd != 0 {
                        1i32 << (c.prec.clamp(1, 31) - 1)
                    } else {
                        0
                    };
                    (std::slice::from_raw_parts(c.data, w * h), offset)
                })
                .collect();
            Ok(visit(&Planes {
                width: w,
                height: h,
                precision: used[0].prec,
                planes,
            }))
        })();
        if !image.is_null() {
            opj::opj_image_destroy(image);
        }
        opj::opj_destroy_codec(codec);
        opj::opj_stream_destroy(stream);
        result
    }
}
