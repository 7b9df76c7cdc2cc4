//! Greyscale and bilevel conversions (processing.md §4.14–4.16).

use super::Raster;

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
