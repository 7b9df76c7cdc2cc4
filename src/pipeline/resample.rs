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
    // Per-column source indices and weights, computed once.
    let cols: Vec<(usize, usize, f32, f32)> = (0..w)
        .map(|i| {
            let x = i as f64 * sx;
            let x0 = (x.floor() as usize).min(iw - 1);
            let b = (x - x0 as f64) as f32;
            (x0 * c, (x0 + 1).min(iw - 1) * c, 1.0 - b, b)
        })
        .collect();
    let mut data = Vec::with_capacity(w as usize * h as usize * c);
    for j in 0..h {
        let y = j as f64 * sy;
        let y0 = (y.floor() as usize).min(ih - 1);
        let y1 = (y0 + 1).min(ih - 1);
        let d = (y - y0 as f64) as f32;
        let cw = 1.0 - d;
        let top = &r.data[y0 * iw * c..(y0 + 1) * iw * c];
        let bottom = &r.data[y1 * iw * c..(y1 + 1) * iw * c];
        for &(p0, p1, a, b) in &cols {
            for k in 0..c {
                let t = a * top[p0 + k] as f32 + b * top[p1 + k] as f32;
                let u = a * bottom[p0 + k] as f32 + b * bottom[p1 + k] as f32;
                data.push((cw * t + d * u) as u8);
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
