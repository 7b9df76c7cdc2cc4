//! Resampling of 8-bit rasters (processing.md §4.12): nearest neighbour, iipsrv's
//! bilinear (with the edge clamp done per axis), and an area average for large
//! reductions, where bilinear sampling would alias.

use super::Raster;

/// How region exports are resized (`INTERPOLATION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Nearest,
    Bilinear,
}

/// Resizes `r` to `w×h`. Reductions by 2× or more in both directions average the
/// covered source area first, then finish with the chosen filter.
pub fn resize(r: &Raster, w: u32, h: u32, filter: Filter) -> Raster {
    if (r.width, r.height) == (w, h) {
        return r.clone();
    }
    if filter == Filter::Bilinear && r.width >= 2 * w && r.height >= 2 * h {
        let fx = r.width / w;
        let fy = r.height / h;
        let boxed = box_reduce(r, fx, fy);
        return resize(&boxed, w, h, filter);
    }
    match filter {
        Filter::Nearest => nearest(r, w, h),
        Filter::Bilinear => bilinear(r, w, h),
    }
}

/// Output `(i,j)` ← input `(floor(i·sx), floor(j·sy))`.
pub fn nearest(r: &Raster, w: u32, h: u32) -> Raster {
    let c = r.channels as usize;
    let sx = r.width as f64 / w as f64;
    let sy = r.height as f64 / h as f64;
    let xs: Vec<usize> = (0..w)
        .map(|i| ((i as f64 * sx) as usize).min(r.width as usize - 1) * c)
        .collect();
    let mut data = Vec::with_capacity(w as usize * h as usize * c);
    for j in 0..h {
        let y = ((j as f64 * sy) as usize).min(r.height as usize - 1);
        let row = &r.data[y * r.width as usize * c..];
        for &x in &xs {
            data.extend_from_slice(&row[x..x + c]);
        }
    }
    Raster {
        width: w,
        height: h,
        channels: r.channels,
        data,
    }
}

/// iipsrv's bilinear interpolation with `x0+1` and `y0+1` clamped to the last column/row.
pub fn bilinear(r: &Raster, w: u32, h: u32) -> Raster {
    let c = r.channels as usize;
    let (iw, ih) = (r.width as usize, r.height as usize);
    let sx = iw as f64 / w as f64;
    let sy = ih as f64 / h as f64;
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
    let mut data = vec![0u8; w as usize * h as usize * c];
    if data.is_empty() {
        return Raster {
            width: w,
            height: h,
            channels: r.channels,
            data,
        };
    }
    for (j, out) in data.chunks_exact_mut(w as usize * c).enumerate() {
        let y = j as f64 * sy;
        let y0 = (y.floor() as usize).min(ih - 1);
        let y1 = (y0 + 1).min(ih - 1);
        let d = ((y - y0 as f64) * 128.0).round() as u32;
        let cw = 128 - d;
        let top = &r.data[y0 * iw * c..(y0 + 1) * iw * c];
        let bottom = &r.data[y1 * iw * c..(y1 + 1) * iw * c];
        // The same arithmetic for every channel count; fixed-size slices for the usual
        // ones let the compiler drop the bounds checks and unroll.
        fn px<const N: usize>(
            out: &mut [u8],
            cols: &[(usize, usize, u32, u32)],
            (top, bottom): (&[u8], &[u8]),
            (cw, d): (u32, u32),
        ) {
            for (o, &(p0, p1, a, b)) in out.chunks_exact_mut(N).zip(cols) {
                let (t0, t1) = (&top[p0..p0 + N], &top[p1..p1 + N]);
                let (b0, b1) = (&bottom[p0..p0 + N], &bottom[p1..p1 + N]);
                for k in 0..N {
                    let t = a * t0[k] as u32 + b * t1[k] as u32;
                    let u = a * b0[k] as u32 + b * b1[k] as u32;
                    o[k] = ((cw * t + d * u) >> 14) as u8;
                }
            }
        }
        match c {
            1 => px::<1>(out, &cols, (top, bottom), (cw, d)),
            2 => px::<2>(out, &cols, (top, bottom), (cw, d)),
            3 => px::<3>(out, &cols, (top, bottom), (cw, d)),
            4 => px::<4>(out, &cols, (top, bottom), (cw, d)),
            _ => {
                for (o, &(p0, p1, a, b)) in out.chunks_exact_mut(c).zip(&cols) {
                    for k in 0..c {
                        let t = a * top[p0 + k] as u32 + b * top[p1 + k] as u32;
                        let u = a * bottom[p0 + k] as u32 + b * bottom[p1 + k] as u32;
                        o[k] = ((cw * t + d * u) >> 14) as u8;
                    }
                }
            }
        }
    }
    Raster {
        width: w,
        height: h,
        channels: r.channels,
        data,
    }
}

/// Averages `fx×fy` blocks (edge blocks average what they cover).
pub fn box_reduce(r: &Raster, fx: u32, fy: u32) -> Raster {
    let c = r.channels as usize;
    let (iw, ih) = (r.width as usize, r.height as usize);
    let (fx, fy) = (fx.max(1) as usize, fy.max(1) as usize);
    let (ow, oh) = (iw.div_ceil(fx), ih.div_ceil(fy));
    let mut sums = vec![0u32; ow * c];
    let mut data = Vec::with_capacity(ow * oh * c);
    for oy in 0..oh {
        sums.iter_mut().for_each(|s| *s = 0);
        let (y0, y1) = (oy * fy, ((oy + 1) * fy).min(ih));
        for y in y0..y1 {
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
    Raster {
        width: ow as u32,
        height: oh as u32,
        channels: r.channels,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// iipsrv's bilinear formula written plainly (processing.md §4.12).
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

    fn ramp(w: u32, h: u32) -> Raster {
        let data = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x * 10 + y) as u8))
            .collect();
        Raster {
            width: w,
            height: h,
            channels: 1,
            data,
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

    #[test]
    fn resize_reaches_the_requested_size() {
        let r = ramp(25, 17);
        for (w, h) in [(5, 3), (25, 17), (50, 40), (1, 1), (12, 9)] {
            for f in [Filter::Nearest, Filter::Bilinear] {
                let o = resize(&r, w, h, f);
                assert_eq!((o.width, o.height, o.data.len()), (w, h, (w * h) as usize));
            }
        }
    }
}
