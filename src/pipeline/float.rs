//! The float branch of both pipelines (docs/processing.md §4.2–4.8): normalise to 0..1,
//! hill-shade, colour twist, gamma or log, invert, colour map, convolution, then
//! contrast and conversion to 8 bits.

use super::Raster;
use crate::image::{Samples, Tile};

/// Colour maps of `CMP`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColourMap {
    Hot,
    Cold,
    Jet,
    Red,
    Green,
    Blue,
}

/// Contrast treatment of `CNT`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Contrast {
    Factor(f32),
    Stretch,
    Equalise,
}

/// Every float-processing setting of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Processing {
    pub contrast: Contrast,
    /// `GAM`: `Some(g)` exponent, `None` with `log` for the logarithm.
    pub gamma: f32,
    pub log: bool,
    pub invert: bool,
    pub colour_map: Option<ColourMap>,
    /// `CTW` rows.
    pub twist: Option<Vec<Vec<f32>>>,
    /// `CNV` square kernel (side 1, 3 or 5), row-major.
    pub kernel: Option<Vec<f32>>,
    /// `SHD` azimuth and elevation in degrees.
    pub shade: Option<(i32, i32)>,
    /// `MINMAX` overrides per channel (`None` for all channels).
    pub minmax: Vec<(Option<usize>, f32, f32)>,
}

impl Default for Processing {
    fn default() -> Self {
        Processing {
            contrast: Contrast::Factor(1.0),
            gamma: 1.0,
            log: false,
            invert: false,
            colour_map: None,
            twist: None,
            kernel: None,
            shade: None,
            minmax: Vec::new(),
        }
    }
}

impl Processing {
    /// iipsrv's "float processing needed".
    pub fn needs_float(&self) -> bool {
        self.contrast != Contrast::Factor(1.0) && self.contrast != Contrast::Equalise
            || self.gamma != 1.0
            || self.log
            || self.invert
            || self.colour_map.is_some()
            || self.twist.is_some()
            || self.kernel.is_some()
            || self.shade.is_some()
            || !self.minmax.is_empty()
    }

    /// Whether the image histogram is needed (stretch, equalisation).
    pub fn needs_histogram(&self) -> bool {
        matches!(self.contrast, Contrast::Stretch | Contrast::Equalise)
    }
}

/// Named kernels of `CNV` (docs/processing.md §4.7).
pub fn named_kernel(name: &str) -> Option<Vec<f32>> {
    let k: &[f32] = match name {
        "sobel" => &[-1., 0., 1., -2., 0., 2., -1., 0., 1.],
        "prewitt" => &[1., 0., -1., 1., 0., -1., 1., 0., -1.],
        "scharr" => &[-3., 0., 3., -10., 0., 10., -3., 0., 3.],
        "laplace" => &[-1., -1., -1., -1., 8., -1., -1., -1., -1.],
        "gaussian" => &[1., 2., 1., 2., 4., 2., 1., 2., 1.],
        "sharpen" => &[0., -1., 0., -1., 5., -1., 0., -1., 0.],
        "emboss" => &[-2., -1., 0., -1., 1., 1., 0., 1., 2.],
        _ => return None,
    };
    Some(k.to_vec())
}

/// First and last non-empty bins of a histogram.
pub fn occupied_range(hist: &[u64; 256]) -> (usize, usize) {
    let n0 = hist.iter().position(|&n| n > 0).unwrap_or(0);
    let n1 = hist.iter().rposition(|&n| n > 0).unwrap_or(255);
    (n0, n1)
}

/// Runs the float branch over `tile` and returns 8-bit samples.
pub fn process(
    tile: &Tile,
    min: &[f64],
    max: &[f64],
    p: &Processing,
    hist: Option<&[u64; 256]>,
) -> Raster {
    let c = tile.channels as usize;
    let n = tile.width as usize * tile.height as usize;
    let (mut lo, mut hi): (Vec<f32>, Vec<f32>) = (0..c)
        .map(|k| {
            (
                min.get(k).copied().unwrap_or(0.0) as f32,
                max.get(k).copied().unwrap_or(255.0) as f32,
            )
        })
        .unzip();
    let mut factor = match p.contrast {
        Contrast::Factor(f) => f,
        _ => 1.0,
    };
    if p.contrast == Contrast::Stretch {
        if let Some(h) = hist {
            let (n0, n1) = occupied_range(h);
            let shift = match tile.data {
                Samples::U16(_) => 8,
                _ => 0,
            };
            lo.iter_mut().for_each(|v| *v = (n0 << shift) as f32);
            hi.iter_mut().for_each(|v| *v = (n1 << shift) as f32);
            factor = 1.0;
        }
    }
    for &(ch, a, b) in &p.minmax {
        for k in 0..c {
            if ch.is_none() || ch == Some(k) {
                lo[k] = a;
                hi[k] = b;
            }
        }
    }
    // 4.2 normalise
    let scale: Vec<f32> = lo
        .iter()
        .zip(&hi)
        .map(|(a, b)| {
            if (b - a).abs() <= 1e-30 {
                1e30
            } else {
                1.0 / (b - a)
            }
        })
        .collect();
    let mut v: Vec<f32> = Vec::with_capacity(n * c);
    let norm = |i: usize, x: f32| (x - lo[i % c]) * scale[i % c];
    match &tile.data {
        Samples::U8(d) => v.extend(d.iter().enumerate().map(|(i, &x)| norm(i, x as f32))),
        Samples::U16(d) => v.extend(d.iter().enumerate().map(|(i, &x)| norm(i, x as f32))),
        Samples::U32(d) => v.extend(d.iter().enumerate().map(|(i, &x)| norm(i, x as f32))),
        Samples::F32(d) => {
            v.extend(
                d.iter()
                    .enumerate()
                    .map(|(i, &x)| if x.is_finite() { norm(i, x) } else { 0.0 }),
            )
        }
    }
    let mut ch = c;
    // 4.4 hill-shading: one output channel from a 3-channel normal map
    if let (Some((h, e)), true) = (p.shade, ch >= 3) {
        let (hr, er) = ((h as f32).to_radians(), (e as f32).to_radians());
        let sy = hr.cos();
        let mut sx = (1.0 - sy * sy).max(0.0).sqrt();
        if h > 180 {
            sx = -sx;
        }
        let sz = -er.sin();
        let len = (sx * sx + sy * sy + sz * sz).sqrt().max(1e-12);
        let (sx, sy, sz) = (sx / len, sy / len, sz / len);
        v = v
            .chunks_exact(ch)
            .map(|px| {
                if px[0] == 0.0 && px[1] == 0.0 && px[2] == 0.0 {
                    return 0.0;
                }
                let o = [
                    -2.0 * (px[0] - 0.5),
                    -2.0 * (px[1] - 0.5),
                    -2.0 * (px[2] - 0.5),
                ];
                (0.5 * (sx * o[0] + sy * o[1] + sz * o[2])).clamp(0.0, 1.0)
            })
            .collect();
        ch = 1;
    }
    // 4.5 colour twist
    if let Some(rows) = &p.twist {
        let out_c = rows.len().max(1);
        v = v
            .chunks_exact(ch)
            .flat_map(|px| {
                rows.iter()
                    .map(|row| row.iter().zip(px).map(|(m, x)| m * x).sum::<f32>())
                    .collect::<Vec<f32>>()
            })
            .collect();
        ch = out_c;
    }
    // 4.6 gamma or log, 4.7 invert
    if p.log {
        let d = 256f32.ln();
        v.iter_mut()
            .for_each(|x| *x = (1.0 + 255.0 * *x).max(1e-30).ln() / d);
    } else if p.gamma != 1.0 {
        v.iter_mut().for_each(|x| *x = x.max(0.0).powf(p.gamma));
    }
    if p.invert {
        v.iter_mut().for_each(|x| *x = 1.0 - *x);
    }
    // 4.8 colour map of channel 0
    if let Some(m) = p.colour_map {
        v = v
            .chunks_exact(ch)
            .flat_map(|px| map_colour(m, px[0]))
            .collect();
        ch = 3;
    }
    // 4.9 convolution
    if let Some(k) = &p.kernel {
        v = convolve(&v, tile.width as usize, tile.height as usize, ch, k);
    }
    // 4.10 contrast and 8 bits
    let data = v
        .iter()
        .map(|x| (x * 255.0 * factor).clamp(0.0, 255.0) as u8)
        .collect();
    Raster {
        width: tile.width,
        height: tile.height,
        channels: ch as u16,
        data,
    }
}

fn map_colour(m: ColourMap, v: f32) -> [f32; 3] {
    match m {
        ColourMap::Hot => match v {
            v if v > 1.0 => [1.0, 1.0, 1.0],
            v if v <= 0.0 => [0.0; 3],
            v if v < 1.0 / 3.0 => [3.0 * v, 0.0, 0.0],
            v if v < 2.0 / 3.0 => [1.0, 3.0 * v - 1.0, 0.0],
            v => [1.0, 1.0, 3.0 * v - 2.0],
        },
        ColourMap::Cold => match v {
            v if v > 1.0 => [1.0, 1.0, 1.0],
            v if v <= 0.0 => [0.0; 3],
            v if v < 1.0 / 3.0 => [0.0, 0.0, 3.0 * v],
            v if v < 2.0 / 3.0 => [0.0, 3.0 * v - 1.0, 1.0],
            v => [3.0 * v - 2.0, 1.0, 1.0],
        },
        ColourMap::Jet => match v {
            v if v < 0.0 => [0.0; 3],
            v if v < 0.125 => [0.0, 0.0, 4.0 * v + 0.5],
            v if v < 0.375 => [0.0, 4.0 * v - 0.5, 1.0],
            v if v < 0.625 => [4.0 * v - 1.5, 1.0, 2.5 - 4.0 * v],
            v if v < 0.875 => [1.0, 3.5 - 4.0 * v, 0.0],
            v if v < 1.0 => [4.5 - 4.0 * v, 0.0, 0.0],
            _ => [0.5, 0.0, 0.0],
        },
        ColourMap::Red => [v, 0.0, 0.0],
        ColourMap::Green => [0.0, v, 0.0],
        ColourMap::Blue => [0.0, 0.0, v],
    }
}

/// Correlation with clamped edges, normalised by a positive kernel sum.
fn convolve(v: &[f32], w: usize, h: usize, c: usize, k: &[f32]) -> Vec<f32> {
    let side = (k.len() as f64).sqrt() as usize;
    let r = (side / 2) as isize;
    let sum: f32 = k.iter().sum();
    let norm = if sum > 0.0 { 1.0 / sum } else { 1.0 };
    let mut out = vec![0f32; v.len()];
    for y in 0..h as isize {
        for x in 0..w as isize {
            for ch in 0..c {
                let mut acc = 0.0;
                for ky in -r..=r {
                    let yy = (y + ky).clamp(0, h as isize - 1) as usize;
                    for kx in -r..=r {
                        let xx = (x + kx).clamp(0, w as isize - 1) as usize;
                        acc += k[((ky + r) as usize) * side + (kx + r) as usize]
                            * v[(yy * w + xx) * c + ch];
                    }
                }
                out[(y as usize * w + x as usize) * c + ch] = acc * norm;
            }
        }
    }
    out
}

/// Histogram equalisation of 8-bit samples (docs/processing.md §4.14).
pub fn equalise(r: &mut Raster, hist: &[u64; 256]) {
    let (n0, _) = occupied_range(hist);
    let mut cdf = [0f64; 256];
    let mut acc = 0f64;
    for (i, &n) in hist.iter().enumerate() {
        acc += n as f64;
        cdf[i] = acc;
    }
    if cdf[255] <= 0.0 {
        return;
    }
    let scale = 255.0 / cdf[255];
    let cdfmin = cdf[n0] / (r.width as f64 * r.height as f64);
    let lut: Vec<u8> = (0..256)
        .map(|i| (scale * (cdf[i] - cdfmin)).round().clamp(0.0, 255.0) as u8)
        .collect();
    r.data.iter_mut().for_each(|v| *v = lut[*v as usize]);
}

/// 256-bin histogram of the mean of each pixel's channels (docs/processing.md §2).
pub fn histogram(r: &Raster) -> [u64; 256] {
    let mut h = [0u64; 256];
    let c = r.channels.max(1) as usize;
    for px in r.data.chunks_exact(c) {
        let mean = px.iter().map(|&v| v as f64).sum::<f64>() / c as f64;
        h[mean.round().clamp(0.0, 255.0) as usize] += 1;
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tile(c: u16, data: Vec<u8>) -> Tile {
        Tile {
            width: (data.len() / c as usize) as u32,
            height: 1,
            channels: c,
            data: Samples::U8(data),
        }
    }

    fn run(t: &Tile, p: &Processing) -> Raster {
        process(t, &[0.0; 3], &[255.0; 3], p, None)
    }

    #[test]
    fn log_and_contrast_f21_f22() {
        let t = tile(1, vec![255, 0, 128]);
        let r = run(
            &t,
            &Processing {
                log: true,
                ..Default::default()
            },
        );
        // ln(1+255·v)/ln(256): 1 → 1, 0 → 0, 128/255 → 0.8760 → 223.
        assert_eq!(r.data, vec![255, 0, 223]);
        let t = tile(1, vec![153]);
        let r = run(
            &t,
            &Processing {
                contrast: Contrast::Factor(2.0),
                ..Default::default()
            },
        );
        assert_eq!(r.data, vec![255]);
    }

    #[test]
    fn invert_gamma_twist_and_maps() {
        let t = tile(3, vec![255, 0, 51, 0, 255, 102]);
        // 1 − 0.2 in single precision is 0.79999995, truncated to 203 as iipsrv does.
        assert_eq!(
            run(
                &t,
                &Processing {
                    invert: true,
                    ..Default::default()
                }
            )
            .data,
            vec![0, 255, 203, 255, 0, 152]
        );
        let g = run(
            &t,
            &Processing {
                gamma: 2.0,
                ..Default::default()
            },
        );
        assert_eq!(g.data[2], 10); // (0.2)^2 = 0.04 → 10
        let swap = Processing {
            twist: Some(vec![
                vec![1.0, 0.0, 0.0],
                vec![0.0, 0.0, 1.0],
                vec![0.0, 1.0, 0.0],
            ]),
            ..Default::default()
        };
        assert_eq!(run(&t, &swap).data, vec![255, 51, 0, 0, 102, 255]);
        let grey = Processing {
            twist: Some(vec![vec![0.33, 0.33, 0.33]]),
            ..Default::default()
        };
        assert_eq!(run(&t, &grey).channels, 1);
        let hot = run(
            &tile(1, vec![0, 85, 170, 255]),
            &Processing {
                colour_map: Some(ColourMap::Hot),
                ..Default::default()
            },
        );
        assert_eq!(hot.channels, 3);
        assert_eq!(&hot.data[..3], &[0, 0, 0]);
        assert_eq!(&hot.data[3..6], &[255, 0, 0]);
        let jet = run(
            &tile(1, vec![128]),
            &Processing {
                colour_map: Some(ColourMap::Jet),
                ..Default::default()
            },
        );
        assert_eq!(jet.data, vec![129, 255, 125]); // (4v−1.5, 1, 2.5−4v) at v = 128/255
    }

    #[test]
    fn minmax_and_stretch() {
        let t = tile(3, vec![64, 64, 64]);
        let p = Processing {
            minmax: vec![(Some(0), 0.0, 128.0)],
            ..Default::default()
        };
        assert_eq!(run(&t, &p).data, vec![127, 64, 64]);
        let mut h = [0u64; 256];
        h[50] = 1;
        h[150] = 1;
        let t = tile(1, vec![50, 100, 150]);
        let r = process(
            &t,
            &[0.0],
            &[255.0],
            &Processing {
                contrast: Contrast::Stretch,
                ..Default::default()
            },
            Some(&h),
        );
        assert_eq!(r.data, vec![0, 127, 255]);
    }

    #[test]
    fn convolution_and_shading() {
        let t = Tile {
            width: 3,
            height: 3,
            channels: 1,
            data: Samples::U8(vec![0, 0, 0, 0, 255, 0, 0, 0, 0]),
        };
        let r = run(
            &t,
            &Processing {
                kernel: named_kernel("gaussian"),
                ..Default::default()
            },
        );
        assert_eq!(r.data[4], 63); // 4/16 of 255
        assert_eq!(r.data[0], 15);
        let flat = tile(3, vec![128, 128, 255]);
        let s = run(
            &flat,
            &Processing {
                shade: Some((0, 90)),
                ..Default::default()
            },
        );
        assert_eq!(s.channels, 1);
        assert_eq!(s.data.len(), 1);
    }

    #[test]
    fn equalisation_spreads_values() {
        let mut r = Raster {
            width: 4,
            height: 1,
            channels: 1,
            data: vec![10, 10, 20, 30],
        };
        let h = histogram(&r);
        equalise(&mut r, &h);
        // scale = 255/4, cdfmin = cdf[10]/4 = 0.5: lut = round(63.75·(cdf − 0.5)).
        assert_eq!(r.data, vec![96, 96, 159, 223]);
    }
}
