//! Colour conversions: CIELAB to sRGB, greyscale, and bilevel output at Otsu's
//! threshold.

use super::Raster;
use crate::image::{Samples, Tile};

/// One CIELAB pixel (L 0..100, a, b) to sRGB in 0..1 (D65 white).
pub fn lab_to_srgb(l: f32, a: f32, b: f32) -> [f32; 3] {
    const XN: f32 = 95.047;
    const YN: f32 = 100.0;
    const ZN: f32 = 108.8827;
    let (y, fy) = if l < 8.0 {
        let y = l * YN / 903.3;
        (y, 7.787 * (y / YN) + 16.0 / 116.0)
    } else {
        let fy = (l + 16.0) / 116.0;
        (YN * fy * fy * fy, fy)
    };
    let f = |t: f32, n: f32| {
        if t < 0.2069 {
            n * (t - 0.13793) / 7.787
        } else {
            n * t * t * t
        }
    };
    let x = f(a / 500.0 + fy, XN) / 100.0;
    let z = f(fy - b / 200.0, ZN) / 100.0;
    let y = y / 100.0;
    let lin = [
        3.2406255 * x - 1.537208 * y - 0.4986286 * z,
        -0.9689307 * x + 1.8757561 * y + 0.0415175 * z,
        0.0557101 * x - 0.2040211 * y + 1.0569959 * z,
    ];
    lin.map(|c| {
        let c = c.max(0.0);
        let v = if c <= 0.0031308 {
            12.92 * c
        } else {
            1.055 * c.powf(1.0 / 2.4) - 0.055
        };
        v.min(1.0)
    })
}

/// A CIELAB tile (8-bit, 16-bit or float encoding) as float sRGB 0..1, 3 channels;
/// channels after the third are dropped.
pub fn cielab_tile_to_srgb(tile: &Tile) -> Tile {
    let c = tile.channels as usize;
    let n = tile.width as usize * tile.height as usize;
    let mut out = Vec::with_capacity(n * 3);
    let lab = |i: usize| -> (f32, f32, f32) {
        match &tile.data {
            Samples::U8(v) => (
                v[i] as f32 / 2.55,
                v[i + 1] as i8 as f32,
                v[i + 2] as i8 as f32,
            ),
            // Full 16-bit precision: iipsrv's `>> 8` keeps whole a*/b* units only.
            Samples::U16(v) => (
                v[i] as f32 / 655.35,
                (v[i + 1] as i16) as f32 / 256.0,
                (v[i + 2] as i16) as f32 / 256.0,
            ),
            Samples::U32(v) => (
                (v[i] >> 24) as f32 / 2.55,
                (v[i + 1] >> 24) as u8 as i8 as f32,
                (v[i + 2] >> 24) as u8 as i8 as f32,
            ),
            Samples::F32(v) => (v[i], v[i + 1], v[i + 2]),
        }
    };
    if c >= 3 {
        for p in 0..n {
            let (l, a, b) = lab(p * c);
            out.extend(lab_to_srgb(l, a, b));
        }
    }
    Tile {
        width: tile.width,
        height: tile.height,
        channels: 3,
        data: Samples::F32(out),
    }
}

/// Rec. 601 luma of the first three channels (F20: red 76, green 149, blue 29).
pub fn greyscale(r: &Raster) -> Raster {
    if r.channels < 3 {
        return super::keep_channels(r.clone(), 1);
    }
    let c = r.channels as usize;
    let data = r
        .data
        .chunks_exact(c)
        .map(|p| {
            ((p[0] as u32 * 1254097 + p[1] as u32 * 2462056 + p[2] as u32 * 478151) >> 22) as u8
        })
        .collect();
    Raster {
        width: r.width,
        height: r.height,
        channels: 1,
        data,
    }
}

/// Otsu's threshold of a 256-bin histogram: the first level `t` with the strictly
/// largest between-class variance, levels up to `t` against the rest. 0 when no level
/// splits the histogram in two (one level, or none, occupied).
pub fn otsu(hist: &[u64; 256]) -> u8 {
    let total: f64 = hist.iter().map(|&n| n as f64).sum();
    let sum_all: f64 = hist
        .iter()
        .enumerate()
        .map(|(i, &n)| i as f64 * n as f64)
        .sum();
    let (mut w_b, mut sum_b, mut best, mut threshold) = (0f64, 0f64, 0f64, 0u8);
    for (t, &n) in hist.iter().enumerate() {
        w_b += n as f64;
        if w_b == 0.0 {
            continue;
        }
        let w_f = total - w_b;
        if w_f == 0.0 {
            break;
        }
        sum_b += t as f64 * n as f64;
        let m_b = sum_b / w_b;
        let m_f = (sum_all - sum_b) / w_f;
        let between = w_b * w_f * (m_b - m_f) * (m_b - m_f);
        if between > best {
            best = between;
            threshold = t as u8;
        }
    }
    threshold
}

/// One channel, every sample 0 or 255: the luma of each pixel against `threshold`
/// (Otsu's threshold of the image histogram, so every tile and export of an image
/// splits at the same level), below it black. The threshold level itself is white,
/// as in iipsrv.
pub fn bilevel(r: &Raster, threshold: u8) -> Raster {
    let g = greyscale(r);
    let data = g
        .data
        .iter()
        .map(|&v| if v < threshold { 0 } else { 255 })
        .collect();
    Raster { data, ..g }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cielab_reference_colours() {
        let to8 = |p: [f32; 3]| p.map(|c| (c * 255.0).round() as u8);
        assert_eq!(to8(super::lab_to_srgb(100.0, 0.0, 0.0)), [255, 255, 255]);
        assert_eq!(to8(super::lab_to_srgb(0.0, 0.0, 0.0)), [0, 0, 0]);
        // sRGB red is Lab(53.24, 80.09, 67.20)
        let red = to8(super::lab_to_srgb(53.24, 80.09, 67.20));
        assert!(red[0] >= 253 && red[1] <= 3 && red[2] <= 3, "{red:?}");
        // mid grey: L 53.39 is sRGB 128
        let g = to8(super::lab_to_srgb(53.39, 0.0, 0.0));
        assert!(g.iter().all(|&v| (127..=129).contains(&v)), "{g:?}");
    }

    use super::*;

    #[test]
    fn greyscale_f20() {
        let r = Raster {
            width: 3,
            height: 1,
            channels: 3,
            data: vec![255, 0, 0, 0, 255, 0, 0, 0, 255],
        };
        assert_eq!(greyscale(&r).data, vec![76, 149, 29]);
    }

    #[test]
    fn otsu_of_known_histograms() {
        // Two populations: every level from the lower one up to just below the upper
        // one splits them equally well, and the first of them wins.
        let mut h = [0u64; 256];
        h[20] = 50;
        h[220] = 50;
        assert_eq!(otsu(&h), 20);
        // 1, 2, 3 once each, 10 once: the classes {1,2,3} and {10} are best split at 3.
        let mut h = [0u64; 256];
        for v in [1, 2, 3, 10] {
            h[v] = 1;
        }
        assert_eq!(otsu(&h), 3);
        // Worked by hand: bins 0..=3 holding 1, 3, 1, 3. wb*wf*(mb-mf)^2 at t = 0, 1, 2
        // is 1*7*(0-2)^2 = 28, 4*4*(0.75-2.75)^2 = 64 and 5*3*(1-3)^2 = 60: t = 1.
        let mut h = [0u64; 256];
        h[..4].copy_from_slice(&[1, 3, 1, 3]);
        assert_eq!(otsu(&h), 1);
        // Nothing to split.
        let mut h = [0u64; 256];
        h[77] = 10;
        assert_eq!(otsu(&h), 0);
        assert_eq!(otsu(&[0; 256]), 0);
    }

    #[test]
    fn bilevel_maps_below_the_threshold_to_black() {
        let r = Raster {
            width: 4,
            height: 1,
            channels: 3,
            // luma 19, 20, 21 and 149 (pure green)
            data: vec![19, 19, 19, 20, 20, 20, 21, 21, 21, 0, 255, 0],
        };
        let b = bilevel(&r, 20);
        assert_eq!(b.channels, 1);
        assert_eq!(b.data, vec![0, 255, 255, 255]);
        assert_eq!(bilevel(&r, 150).data, vec![0, 0, 0, 0]);
    }
}
