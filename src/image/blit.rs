//! Allocating and copying tiles at their native sample depth: zeroed buffers that
//! may fail instead of aborting, a blank tile shaped like another, and rectangle
//! copies. Image readers assemble tiles with these; the pipeline uses them too.

use super::{Samples, Tile};

/// The rectangle `(sx, sy, w, h)` of a `src`-sized image clipped to fit both it and,
/// at `(x, y)`, a `dst`-sized one.
pub fn clip(
    (dw, dh): (u32, u32),
    (x, y): (u32, u32),
    (sw, sh): (u32, u32),
    (sx, sy, w, h): (u32, u32, u32, u32),
) -> (usize, usize, usize, usize) {
    let w = w.min(dw.saturating_sub(x)).min(sw.saturating_sub(sx));
    let h = h.min(dh.saturating_sub(y)).min(sh.saturating_sub(sy));
    (sx as usize, sy as usize, w as usize, h as usize)
}

/// Copies an already clipped rectangle between interleaved buffers of `c` channels.
pub fn blit_slice<T: Copy>(
    dst: &mut [T],
    dw: usize,
    (x, y): (usize, usize),
    src: &[T],
    sw: usize,
    (sx, sy, w, h): (usize, usize, usize, usize),
    c: usize,
) {
    for row in 0..h {
        let d = ((y + row) * dw + x) * c;
        let s = ((sy + row) * sw + sx) * c;
        dst[d..d + w * c].copy_from_slice(&src[s..s + w * c]);
    }
}

/// Sample types whose all-zero bytes are the value zero.
pub trait Zeroable: Copy {}
impl Zeroable for u8 {}
impl Zeroable for u16 {}
impl Zeroable for u32 {}
impl Zeroable for f32 {}

/// `n` zeros, or `None` when the memory cannot be had. Allocated zeroed, so a large
/// buffer comes from the kernel already zero instead of being written twice (once with
/// zeros, once with pixels).
pub fn zeroed<T: Zeroable>(n: usize) -> Option<Vec<T>> {
    let layout = std::alloc::Layout::array::<T>(n).ok()?;
    if layout.size() == 0 {
        return Some(Vec::new());
    }
    // SAFETY: the layout is not empty; a null answer is checked.
    let p = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<T>();
    if p.is_null() {
        return None;
    }
    // SAFETY: `p` was allocated by the global allocator with the layout of `n` values
    // of `T` (as `Vec` allocates them), and all `n` are initialised: zero bytes are a
    // valid `T` (`Zeroable`).
    Some(unsafe { Vec::from_raw_parts(p, n, n) })
}

/// A blank tile of `w×h` with the sample type and channels of `like`; `None` when the
/// memory for it cannot be had.
pub fn blank_like(like: &Tile, w: u32, h: u32) -> Option<Tile> {
    let n = (w as usize)
        .checked_mul(h as usize)?
        .checked_mul(like.channels as usize)?;
    let data = match like.data {
        Samples::U8(_) => Samples::U8(zeroed(n)?),
        Samples::U16(_) => Samples::U16(zeroed(n)?),
        Samples::U32(_) => Samples::U32(zeroed(n)?),
        Samples::F32(_) => Samples::F32(zeroed(n)?),
    };
    Some(Tile {
        width: w,
        height: h,
        channels: like.channels,
        data,
    })
}

/// Copies the rectangle `(sx, sy, w, h)` of `src` into `dst` at `(x, y)` at native depth,
/// clipped to both. Returns false when the two differ in sample type or channels.
pub fn blit_tile(
    dst: &mut Tile,
    (x, y): (u32, u32),
    src: &Tile,
    (sx, sy, w, h): (u32, u32, u32, u32),
) -> bool {
    if dst.channels != src.channels {
        return false;
    }
    let c = dst.channels as usize;
    let (dw, sw) = (dst.width as usize, src.width as usize);
    let at = (x as usize, y as usize);
    let rect = clip(
        (dst.width, dst.height),
        (x, y),
        (src.width, src.height),
        (sx, sy, w, h),
    );
    match (&mut dst.data, &src.data) {
        (Samples::U8(d), Samples::U8(s)) => blit_slice(d, dw, at, s, sw, rect, c),
        (Samples::U16(d), Samples::U16(s)) => blit_slice(d, dw, at, s, sw, rect, c),
        (Samples::U32(d), Samples::U32(s)) => blit_slice(d, dw, at, s, sw, rect, c),
        (Samples::F32(d), Samples::F32(s)) => blit_slice(d, dw, at, s, sw, rect, c),
        _ => return false,
    }
    true
}
