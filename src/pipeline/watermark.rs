//! Watermarking (docs/processing.md §4.16): a premultiplied RGB image added onto blocks
//! of the output, each block with a given probability at a random offset. The
//! randomness is passed in, so the function stays pure and testable.

use super::Raster;
// Built by the loader next to the image readers; applied here.
pub use crate::image::watermark::Watermark;

/// Adds `wm` to `r`, dividing it into square blocks of side `block` (the whole raster
/// when it is not larger). `rand` yields uniform numbers in `[0, 1)`.
pub fn apply(
    r: &mut Raster,
    wm: &Watermark,
    block: u32,
    probability: f64,
    rand: &mut dyn FnMut() -> f64,
) {
    let block = block.max(1);
    let (bw, bh) = if r.width > block || r.height > block {
        (block, block)
    } else {
        (r.width, r.height)
    };
    let mut by = 0;
    while by < r.height {
        let mut bx = 0;
        while bx < r.width {
            let (w, h) = ((r.width - bx).min(bw), (r.height - by).min(bh));
            if rand() < probability {
                let off = |size: u32, wm: u32, rand: &mut dyn FnMut() -> f64| {
                    if size > wm {
                        (rand() * (size - wm) as f64) as u32
                    } else {
                        0
                    }
                };
                let ox = off(w, wm.width, rand);
                let oy = off(h, wm.height, rand);
                add(r, wm, (bx + ox, by + oy), (bx + w, by + h));
            }
            bx += bw;
        }
        by += bh;
    }
}

/// Adds the watermark with its top left at `at`, clipped to `end` (exclusive).
fn add(r: &mut Raster, wm: &Watermark, at: (u32, u32), end: (u32, u32)) {
    let c = r.channels as usize;
    let colour = c.min(3);
    for y in 0..wm.height {
        let ry = at.1 + y;
        if ry >= end.1 {
            break;
        }
        for x in 0..wm.width {
            let rx = at.0 + x;
            if rx >= end.0 {
                break;
            }
            let p = (ry as usize * r.width as usize + rx as usize) * c;
            let w = (y as usize * wm.width as usize + x as usize) * 3;
            // Channels past the third (alpha, extra bands) are left untouched.
            for k in 0..colour {
                r.data[p + k] = r.data[p + k].saturating_add(wm.rgb[w + k]);
            }
        }
    }
}

/// A small xorshift generator for placement, seeded per process.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn black(w: u32, h: u32, c: u16) -> Raster {
        Raster {
            width: w,
            height: h,
            channels: c,
            data: vec![0; (w * h) as usize * c as usize],
        }
    }

    #[test]
    fn premultiplied_and_additive() {
        // One opaque white pixel, one half-transparent red pixel, at opacity 0.5.
        let wm = Watermark::from_rgba(2, 1, &[255, 255, 255, 255, 255, 0, 0, 128], 0.5);
        assert_eq!(wm.rgb, vec![127, 127, 127, 64, 0, 0]);
        let mut r = black(4, 4, 4);
        r.data.iter_mut().for_each(|v| *v = 200);
        apply(&mut r, &wm, 256, 1.0, &mut || 0.0);
        assert_eq!(&r.data[..8], &[255, 255, 255, 200, 255, 200, 200, 200]);
        assert_eq!(&r.data[8..12], &[200; 4], "outside the watermark");
    }

    #[test]
    fn blocks_probability_and_offsets() {
        let wm = Watermark::from_rgba(2, 2, &[10, 10, 10, 255].repeat(4), 1.0);
        // 8x4 raster in blocks of 4: two blocks; the second is skipped (rand 0.9 >= 0.5).
        let mut r = black(8, 4, 1);
        let mut seq = [0.0, 0.5, 0.5, 0.9].into_iter();
        apply(&mut r, &wm, 4, 0.5, &mut || seq.next().unwrap_or(0.99));
        let marked: Vec<(usize, usize)> = (0..32)
            .filter(|i| r.data[*i] == 10)
            .map(|i| (i % 8, i / 8))
            .collect();
        // Offset trunc(0.5 * (4 - 2)) = 1 in both directions, within block 0 only.
        assert_eq!(marked, vec![(1, 1), (2, 1), (1, 2), (2, 2)]);
        // A watermark larger than the raster is clipped to it.
        let big = Watermark::from_rgba(3, 3, &[1, 1, 1, 255].repeat(9), 1.0);
        let mut small = black(2, 2, 3);
        apply(&mut small, &big, 256, 1.0, &mut || 0.3);
        assert!(small.data.iter().all(|&v| v == 1));
    }

    #[test]
    fn rng_is_uniform_enough() {
        let mut g = Rng::new(42);
        let v: Vec<f64> = (0..10000).map(|_| g.next_f64()).collect();
        assert!(v.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "{mean}");
    }
}
