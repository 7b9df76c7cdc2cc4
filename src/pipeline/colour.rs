//! Colour conversions: CIELAB to sRGB (processing.md §4.1), greyscale and bilevel
//! (§4.14–4.16).

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

/// Otsu's threshold of a 256-bin histogram.
pub fn otsu(hist: &[u64; 256]) -> u8 {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return 128;
    }
    let sum_all: f64 = hist
        .iter()
        .enumerate()
        .map(|(i, &n)| i as f64 * n as f64)
        .sum();
    let (mut w_b, mut sum_b, mut best, mut threshold) = (0f64, 0f64, -1f64, 0u8);
    for (t, &n) in hist.iter().enumerate() {
        w_b += n as f64;
        if w_b == 0.0 {
            continue;
        }
        let w_f = total as f64 - w_b;
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

/// One channel, every sample 0 or 255, split at Otsu's threshold of the grey levels.
pub fn bilevel(r: &Raster) -> Raster {
    let g = greyscale(r);
    let mut hist = [0u64; 256];
    for &v in &g.data {
        hist[v as usize] += 1;
    }
    let t = otsu(&hist);
    let data = g
        .data
        .iter()
        .map(|&v| if v > t { 255 } else { 0 })
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
    fn bilevel_splits_two_populations() {
        let data: Vec<u8> = (0..100)
            .map(|i| if i % 2 == 0 { 20 } else { 220 })
            .collect();
        let r = Raster {
            width: 10,
            height: 10,
            channels: 1,
            data,
        };
        let b = bilevel(&r);
        assert!(b.data.iter().all(|&v| v == 0 || v == 255));
        assert_eq!(b.data.iter().filter(|&&v| v == 255).count(), 50);
    }
}
