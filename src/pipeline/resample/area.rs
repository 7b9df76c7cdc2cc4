//! Reductions that average what each output pixel covers: the exact area average (the
//! default filter when reducing) and the whole-block average that every reduction by 2×
//! or more starts with. Kept together because they share their purpose, nothing
//! aliases, and the block pass exists only to make the area pass cheaper.

use super::row_pass::{row_pass_any, row_pass_for};
use super::{Pass, Raster, Step};

/// Fixed-point unit of the area weights: 8 bits keep every product and sum of the
/// vertical pass in 16 bits (255 · 256 < 65 536), which vectorises twice as wide.
const ONE: u32 = 1 << 8;

/// The input span and weights (summing to [`ONE`]) of every output index when `inp`
/// samples shrink to `out`: `(first input index, range into the weight list)`.
pub(super) fn area_weights(
    inp: usize,
    out: usize,
) -> (Vec<(usize, std::ops::Range<usize>)>, Vec<u32>) {
    let scale = inp as f64 / out as f64;
    let mut spans = Vec::with_capacity(out);
    let mut weights = Vec::with_capacity(out * (scale.ceil() as usize + 1));
    for i in 0..out {
        let (a, b) = (i as f64 * scale, ((i + 1) as f64 * scale).min(inp as f64));
        let first = (a.floor() as usize).min(inp - 1);
        let last = ((b.ceil() as usize).max(first + 1)).min(inp);
        let start = weights.len();
        // Weights from rounded cumulative coverage: they sum to ONE exactly, however many.
        let mut done = 0.0;
        let mut given = 0;
        for j in first..last {
            done += (b.min(j as f64 + 1.0) - a.max(j as f64)).max(0.0);
            let upto = ((done / (b - a)).min(1.0) * ONE as f64).round() as u32;
            weights.push(upto - given);
            given = upto;
        }
        let tail = weights.len() - 1;
        weights[tail] += ONE - given;
        spans.push((first, start..weights.len()));
    }
    (spans, weights)
}

/// Area-average reduction to `w×h` (`w ≤ width`, `h ≤ height`), separable: columns
/// first (whole rows at a time, a 16-bit loop the compiler vectorises) into
/// intermediates with 8 fraction bits, then rows, on the already reduced height.
pub fn area(r: &Raster, w: u32, h: u32) -> Raster {
    Pass::whole(Step::Area, r, w, h)
}

/// Output rows `out` of an area reduction of an `ih`-row image to `(w, h)`, from the
/// input rows `first..` held in `band`.
pub(super) fn area_rows(
    band: &Raster,
    first: usize,
    ih: usize,
    (w, h): (usize, usize),
    out: std::ops::Range<usize>,
    dst: &mut [u8],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { area_avx2(band, first, ih, (w, h), out, dst) };
    }
    area_impl(band, first, ih, (w, h), out, dst)
}

/// [`area_rows`] compiled for AVX2: the 16-bit vertical pass runs twice as wide.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn area_avx2(
    band: &Raster,
    first: usize,
    ih: usize,
    size: (usize, usize),
    out: std::ops::Range<usize>,
    dst: &mut [u8],
) {
    area_impl(band, first, ih, size, out, dst)
}

#[inline(always)]
fn area_impl(
    r: &Raster,
    origin: usize,
    ih: usize,
    (ow, oh): (usize, usize),
    out: std::ops::Range<usize>,
    data: &mut [u8],
) {
    let c = r.channels as usize;
    let iw = r.width as usize;
    let (xs, xw) = area_weights(iw, ow);
    let (ys, yw) = area_weights(ih, oh);
    let row_len = iw * c;
    // One output row at a time: its source rows are blended vertically into `mid`, which
    // the horizontal pass then reduces (memory: one intermediate row, not an image).
    // `mid` carries PAD zero pixels on the right, so that a fixed number of taps can be
    // read at every output column (zero weights past a span's end), and the vector
    // passes' 8-lane loads at the last column stay inside it.
    const PAD: usize = 8;
    let mut mid = vec![0u16; (iw + PAD) * c];
    let taps = xs.iter().map(|(_, s)| s.len()).max().unwrap_or(1);
    let horizontal = match c {
        1 => row_pass_for::<1>(taps, &xs, &xw),
        3 => row_pass_for::<3>(taps, &xs, &xw),
        4 => row_pass_for::<4>(taps, &xs, &xw),
        _ => None,
    }
    .unwrap_or_else(|| row_pass_any(c, xs, xw));
    for ((first, span), out) in ys[out].iter().zip(data.chunks_exact_mut(ow * c)) {
        for (t, &wt) in yw[span.clone()].iter().enumerate() {
            let y = first + t - origin;
            let src = &r.data[y * row_len..(y + 1) * row_len];
            let wt = wt as u16;
            // The first row sets the sums (the padding past `row_len` stays zero);
            // weights of a span sum to 256, so the sums stay below 65 536.
            if t == 0 {
                for (a, &v) in mid.iter_mut().zip(src) {
                    *a = wt * v as u16;
                }
            } else {
                for (a, &v) in mid.iter_mut().zip(src) {
                    *a = a.wrapping_add(wt * v as u16);
                }
            }
        }
        horizontal(&mid, out);
    }
}

/// Averages `fx×fy` blocks (edge blocks average what they cover).
pub fn box_reduce(r: &Raster, fx: u32, fy: u32) -> Raster {
    let (iw, ih) = (r.width as usize, r.height as usize);
    let (fx, fy) = (fx.max(1) as usize, fy.max(1) as usize);
    Pass {
        step: Step::Box { fx, fy },
        input: (iw, ih),
        output: (iw.div_ceil(fx), ih.div_ceil(fy)),
    }
    .run(r, 0, 0..ih.div_ceil(fy))
}

pub(super) fn box_rows(
    r: &Raster,
    first: usize,
    ih: usize,
    (fx, fy): (usize, usize),
    out: std::ops::Range<usize>,
) -> Vec<u8> {
    let c = r.channels as usize;
    let iw = r.width as usize;
    let ow = iw.div_ceil(fx);
    let mut sums = vec![0u32; ow * c];
    let mut data = Vec::with_capacity(ow * out.len() * c);
    for oy in out {
        sums.iter_mut().for_each(|s| *s = 0);
        let (y0, y1) = (oy * fy, ((oy + 1) * fy).min(ih));
        for y in y0 - first..y1 - first {
            let row = &r.data[y * iw * c..(y + 1) * iw * c];
            // One block of fx pixels per output column; no per-pixel division.
            for (block, s) in row.chunks(fx * c).zip(sums.chunks_exact_mut(c)) {
                match c {
                    1 => s[0] += block.iter().map(|&v| v as u32).sum::<u32>(),
                    3 => {
                        let (mut a, mut b, mut d) = (0u32, 0u32, 0u32);
                        for p in block.chunks_exact(3) {
                            a += p[0] as u32;
                            b += p[1] as u32;
                            d += p[2] as u32;
                        }
                        s[0] += a;
                        s[1] += b;
                        s[2] += d;
                    }
                    _ => {
                        for p in block.chunks_exact(c) {
                            for (acc, &v) in s.iter_mut().zip(p) {
                                *acc += v as u32;
                            }
                        }
                    }
                }
            }
        }
        let rows = (y1 - y0) as u32;
        for (o, s) in sums.chunks_exact(c).enumerate() {
            let cols = (((o + 1) * fx).min(iw) - o * fx) as u32;
            let n = (cols * rows).max(1);
            data.extend(s.iter().map(|&v| ((v + n / 2) / n) as u8));
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::resample::{resize, Filter};

    #[test]
    fn area_averages_what_each_output_pixel_covers() {
        // 4 → 2: pairs; 3 → 2: the middle pixel is split in halves.
        let r = Raster {
            width: 4,
            height: 1,
            channels: 1,
            data: vec![10, 20, 100, 200],
        };
        assert_eq!(area(&r, 2, 1).data, vec![15, 150]);
        let r = Raster {
            width: 3,
            height: 3,
            channels: 2,
            data: (0..18).map(|i| [0u8, 90, 180][(i / 2) % 3]).collect(),
        };
        // Output column 0 covers pixel 0 and half of pixel 1: (0 + 45) / 1.5 = 30.
        let out = area(&r, 2, 2);
        assert_eq!(out.data, vec![30, 30, 150, 150, 30, 30, 150, 150]);
        // A flat image stays flat at any ratio; the weights sum to one exactly.
        let flat = Raster {
            width: 97,
            height: 31,
            channels: 3,
            data: vec![201; 97 * 31 * 3],
        };
        for (w, h) in [(1, 1), (13, 7), (96, 30), (97, 31)] {
            let out = resize(&flat, w, h, Filter::Area);
            assert!(out.data.iter().all(|&v| v == 201), "{w}x{h}");
        }
        // Enlarging falls back to bilinear.
        let up = resize(&flat, 120, 40, Filter::Area);
        assert_eq!((up.width, up.height), (120, 40));
    }

    #[test]
    fn box_reduce_matches_a_plain_average_at_every_shape() {
        let mut seed = 7u32;
        for (w, h, c, fx, fy) in [
            (13usize, 9usize, 3usize, 4usize, 2usize),
            (8, 8, 1, 3, 3),
            (17, 5, 4, 2, 5),
            (6, 7, 2, 6, 1),
            (31, 3, 5, 7, 2),
        ] {
            let data: Vec<u8> = (0..w * h * c)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (seed >> 24) as u8
                })
                .collect();
            let r = Raster {
                width: w as u32,
                height: h as u32,
                channels: c as u16,
                data,
            };
            let out = box_reduce(&r, fx as u32, fy as u32);
            let (ow, oh) = (w.div_ceil(fx), h.div_ceil(fy));
            assert_eq!((out.width as usize, out.height as usize), (ow, oh));
            for oy in 0..oh {
                for ox in 0..ow {
                    for k in 0..c {
                        let (mut sum, mut n) = (0u32, 0u32);
                        for y in oy * fy..((oy + 1) * fy).min(h) {
                            for x in ox * fx..((ox + 1) * fx).min(w) {
                                sum += r.data[(y * w + x) * c + k] as u32;
                                n += 1;
                            }
                        }
                        assert_eq!(out.data[(oy * ow + ox) * c + k] as u32, (sum + n / 2) / n);
                    }
                }
            }
        }
    }

    #[test]
    fn box_reduce_averages() {
        let r = Raster {
            width: 4,
            height: 2,
            channels: 1,
            data: vec![0, 10, 20, 30, 40, 50, 60, 70],
        };
        let b = box_reduce(&r, 2, 2);
        assert_eq!((b.width, b.height), (2, 1));
        assert_eq!(b.data, vec![25, 45]);
    }
}
