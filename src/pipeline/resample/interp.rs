//! Sampling that picks or blends neighbouring pixels: nearest neighbour, and iipsrv's
//! bilinear interpolation, kept to iipsrv's formula (docs/processing.md §4.10) so that
//! a server set to resample as iipsrv does gives iipsrv's pixels.

use super::{Pass, Raster, Step};

/// Source row of output row `j` in nearest-neighbour sampling.
pub(super) fn nearest_row(ih: usize, h: usize, j: usize) -> usize {
    (((j as f64) * (ih as f64 / h as f64)) as usize).min(ih - 1)
}

/// First source row, blend weight (1/128 steps) and second source row of output row
/// `j` in bilinear sampling.
pub(super) fn bilinear_row(ih: usize, h: usize, j: usize) -> (usize, u16, usize) {
    let y = j as f64 * (ih as f64 / h as f64);
    let y0 = (y.floor() as usize).min(ih - 1);
    let d = ((y - y0 as f64) * 128.0).round() as u16;
    (y0, d, (y0 + 1).min(ih - 1))
}

/// Output `(i,j)` ← input `(floor(i·sx), floor(j·sy))`.
pub fn nearest(r: &Raster, w: u32, h: u32) -> Raster {
    Pass::whole(Step::Nearest, r, w, h)
}

pub(super) fn nearest_rows(
    r: &Raster,
    first: usize,
    ih: usize,
    (w, h): (usize, usize),
    out: std::ops::Range<usize>,
) -> Vec<u8> {
    let c = r.channels as usize;
    let sx = r.width as f64 / w as f64;
    let xs: Vec<usize> = (0..w)
        .map(|i| ((i as f64 * sx) as usize).min(r.width as usize - 1) * c)
        .collect();
    let mut data = Vec::with_capacity(w * out.len() * c);
    for j in out {
        let y = nearest_row(ih, h, j) - first;
        let row = &r.data[y * r.width as usize * c..];
        for &x in &xs {
            data.extend_from_slice(&row[x..x + c]);
        }
    }
    data
}

/// iipsrv's bilinear interpolation with `x0+1` and `y0+1` clamped to the last column/row.
pub fn bilinear(r: &Raster, w: u32, h: u32) -> Raster {
    Pass::whole(Step::Bilinear, r, w, h)
}

pub(super) fn bilinear_rows(
    r: &Raster,
    first: usize,
    ih: usize,
    (w, h): (usize, usize),
    out: std::ops::Range<usize>,
    data: &mut [u8],
) {
    let c = r.channels as usize;
    let iw = r.width as usize;
    let sx = iw as f64 / w as f64;
    // Per-column source indices and weights (fixed point, 1/128 steps: at most one level
    // away from the float formula), computed once.
    let cols: Vec<(usize, usize, u32, u32)> = (0..w)
        .map(|i| {
            let x = i as f64 * sx;
            let x0 = (x.floor() as usize).min(iw - 1);
            let b = ((x - x0 as f64) * 128.0).round() as u32;
            (x0 * c, (x0 + 1).min(iw - 1) * c, 128 - b, b)
        })
        .collect();
    if data.is_empty() {
        return;
    }
    // Separable: each output row first blends its two source rows vertically (a straight
    // vector loop over u16), then takes two taps per sample from that blend. The integer
    // result is the same as the four-tap formula: nothing is rounded in between.
    let mut blend = vec![0u16; iw * c];
    for (j, out) in out.zip(data.chunks_exact_mut(w * c)) {
        let (y0, d, y1) = bilinear_row(ih, h, j);
        let (y0, y1) = (y0 - first, y1 - first);
        let cw = 128 - d;
        let top = &r.data[y0 * iw * c..(y0 + 1) * iw * c];
        let bottom = &r.data[y1 * iw * c..(y1 + 1) * iw * c];
        for ((v, &t), &b) in blend.iter_mut().zip(top).zip(bottom) {
            *v = cw * t as u16 + d * b as u16;
        }
        // Fixed-size slices for the usual channel counts let the compiler drop the
        // bounds checks and unroll.
        fn px<const N: usize>(out: &mut [u8], cols: &[(usize, usize, u32, u32)], row: &[u16]) {
            for (o, &(p0, p1, a, b)) in out.chunks_exact_mut(N).zip(cols) {
                let (s0, s1) = (&row[p0..p0 + N], &row[p1..p1 + N]);
                for k in 0..N {
                    o[k] = ((a * s0[k] as u32 + b * s1[k] as u32) >> 14) as u8;
                }
            }
        }
        match c {
            1 => px::<1>(out, &cols, &blend),
            2 => px::<2>(out, &cols, &blend),
            3 => px::<3>(out, &cols, &blend),
            4 => px::<4>(out, &cols, &blend),
            _ => {
                for (o, &(p0, p1, a, b)) in out.chunks_exact_mut(c).zip(&cols) {
                    for k in 0..c {
                        o[k] = ((a * blend[p0 + k] as u32 + b * blend[p1 + k] as u32) >> 14) as u8;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::resample::tests::ramp;

    /// iipsrv's bilinear formula written plainly (docs/processing.md §4.10).
    fn bilinear_reference(r: &Raster, w: u32, h: u32) -> Vec<u8> {
        let c = r.channels as usize;
        let (iw, ih) = (r.width as usize, r.height as usize);
        let (sx, sy) = (iw as f64 / w as f64, ih as f64 / h as f64);
        let at = |x: usize, y: usize, k: usize| r.data[(y * iw + x) * c + k] as f32;
        let mut out = Vec::new();
        for j in 0..h as usize {
            let y = j as f64 * sy;
            let y0 = (y.floor() as usize).min(ih - 1);
            let y1 = (y0 + 1).min(ih - 1);
            let d = (y - y0 as f64) as f32;
            for i in 0..w as usize {
                let x = i as f64 * sx;
                let x0 = (x.floor() as usize).min(iw - 1);
                let x1 = (x0 + 1).min(iw - 1);
                let b = (x - x0 as f64) as f32;
                let a = 1.0 - b;
                for k in 0..c {
                    let t = a * at(x0, y0, k) + b * at(x1, y0, k);
                    let u = a * at(x0, y1, k) + b * at(x1, y1, k);
                    out.push(((1.0 - d) * t + d * u) as u8);
                }
            }
        }
        out
    }

    #[test]
    fn bilinear_is_within_one_level_of_the_spec_formula() {
        let mut seed = 99u32;
        for c in 1..=5u16 {
            for (iw, ih, w, h) in [
                (37u32, 23u32, 20u32, 11u32),
                (10, 7, 33, 29),
                (64, 64, 48, 40),
            ] {
                let data = (0..iw * ih * c as u32)
                    .map(|_| {
                        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                        (seed >> 24) as u8
                    })
                    .collect();
                let r = Raster {
                    width: iw,
                    height: ih,
                    channels: c,
                    data,
                };
                let (ours, spec) = (bilinear(&r, w, h).data, bilinear_reference(&r, w, h));
                assert_eq!(ours.len(), spec.len());
                let worst = ours.iter().zip(&spec).map(|(a, b)| a.abs_diff(*b)).max();
                assert!(
                    worst <= Some(1),
                    "{c} channels {iw}x{ih}->{w}x{h}: off by {worst:?}"
                );
            }
        }
    }

    #[test]
    fn nearest_picks_floor_positions() {
        let r = ramp(4, 2);
        let n = nearest(&r, 2, 1);
        assert_eq!(n.data, vec![0, 20]);
        let up = nearest(&r, 8, 2);
        assert_eq!(&up.data[..4], &[0, 0, 10, 10]);
    }

    #[test]
    fn bilinear_matches_hand_computation() {
        let r = Raster {
            width: 2,
            height: 2,
            channels: 1,
            data: vec![0, 100, 50, 150],
        };
        let b = bilinear(&r, 4, 4);
        // (1,0): x = 0.5 → 50; (1,1): x=0.5,y=0.5 → 75; right edge clamps to the last column.
        assert_eq!(b.data[1], 50);
        assert_eq!(b.data[5], 75);
        assert_eq!(b.data[3], 100);
        assert_eq!(b.data[15], 150);
    }
}
