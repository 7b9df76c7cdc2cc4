//! Pixel operations between a decoded tile and an encoder. Pure functions over
//! typed buffers: no I/O, no protocol knowledge.

pub mod bands;
pub mod colour;
pub mod float;
pub mod resample;
pub mod watermark;

// Tile allocation and copying live with the tile type; re-exported for callers here.
pub use crate::image::blit::{blank_like, blit_tile, zeroed, Zeroable};
use crate::image::blit::{blit_slice, clip};
use crate::image::{Samples, Tile};

/// 8-bit interleaved pixels, what every encoder takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raster {
    pub width: u32,
    pub height: u32,
    pub channels: u16,
    pub data: Vec<u8>,
}

/// Reduces any sample depth to 8 bits without float processing (docs/processing.md §4.9):
/// 16-bit keeps the high byte, 32-bit integer the top byte, float `0..1` scales by 255.
pub fn to_8bit(tile: Tile) -> Raster {
    let data = match tile.data {
        Samples::U8(v) => v,
        Samples::U16(v) => v.iter().map(|&s| (s >> 8) as u8).collect(),
        Samples::U32(v) => v.iter().map(|&s| (s >> 24) as u8).collect(),
        Samples::F32(v) => v
            .iter()
            .map(|&s| (s.clamp(0.0, 1.0) * 255.0) as u8)
            .collect(),
    };
    Raster {
        width: tile.width,
        height: tile.height,
        channels: tile.channels,
        data,
    }
}

/// As [`to_8bit`], with float samples rounded to the nearest level: for data converted
/// here (CIELAB) rather than stored as float.
pub fn to_8bit_rounded(tile: Tile) -> Raster {
    match tile.data {
        Samples::F32(v) => Raster {
            width: tile.width,
            height: tile.height,
            channels: tile.channels,
            data: v
                .iter()
                .map(|&s| (s.clamp(0.0, 1.0) * 255.0 + 0.5) as u8)
                .collect(),
        },
        _ => to_8bit(tile),
    }
}

/// Keeps the first `n` channels of every pixel.
pub fn keep_channels(r: Raster, n: u16) -> Raster {
    if n >= r.channels {
        return r;
    }
    let c = r.channels as usize;
    let data = r
        .data
        .chunks_exact(c)
        .flat_map(|px| px[..n as usize].iter().copied())
        .collect();
    Raster {
        channels: n,
        data,
        ..r
    }
}

/// Copies the rectangle `(sx, sy, w, h)` of `src` into `dst` at `(x, y)`, clipped to
/// both rasters (same channel count).
pub fn blit(
    dst: &mut Raster,
    (x, y): (u32, u32),
    src: &Raster,
    (sx, sy, w, h): (u32, u32, u32, u32),
) {
    let c = dst.channels as usize;
    debug_assert_eq!(c, src.channels as usize);
    let rect = clip(
        (dst.width, dst.height),
        (x, y),
        (src.width, src.height),
        (sx, sy, w, h),
    );
    let (dw, sw) = (dst.width as usize, src.width as usize);
    blit_slice(
        &mut dst.data,
        dw,
        (x as usize, y as usize),
        &src.data,
        sw,
        rect,
        c,
    );
}

/// Horizontal mirror (left ↔ right).
pub fn mirror_horizontal(mut r: Raster) -> Raster {
    let c = r.channels as usize;
    let w = r.width as usize;
    for row in r.data.chunks_exact_mut(w * c) {
        for x in 0..w / 2 {
            for k in 0..c {
                row.swap(x * c + k, (w - 1 - x) * c + k);
            }
        }
    }
    r
}

/// Clockwise rotation by 90, 180 or 270 degrees; other values return the input.
pub fn rotate(r: Raster, degrees: u32) -> Raster {
    let (w, h, c) = (r.width as usize, r.height as usize, r.channels as usize);
    match degrees % 360 {
        90 | 270 => {
            let cw = degrees % 360 == 90;
            let mut out = vec![0u8; r.data.len()];
            // Output is h wide and w high.
            for y in 0..h {
                for x in 0..w {
                    let (nx, ny) = if cw { (h - 1 - y, x) } else { (y, w - 1 - x) };
                    let src = (y * w + x) * c;
                    let dst = (ny * h + nx) * c;
                    out[dst..dst + c].copy_from_slice(&r.data[src..src + c]);
                }
            }
            Raster {
                width: r.height,
                height: r.width,
                channels: r.channels,
                data: out,
            }
        }
        180 => {
            let mut data = r.data;
            let n = w * h;
            for i in 0..n / 2 {
                for k in 0..c {
                    data.swap(i * c + k, (n - 1 - i) * c + k);
                }
            }
            Raster { data, ..r }
        }
        _ => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raster(w: u32, h: u32, c: u16) -> Raster {
        let data = (0..w * h * c as u32).map(|v| v as u8).collect();
        Raster {
            width: w,
            height: h,
            channels: c,
            data,
        }
    }

    fn px(r: &Raster, x: u32, y: u32) -> &[u8] {
        let c = r.channels as usize;
        let i = (y * r.width + x) as usize * c;
        &r.data[i..i + c]
    }

    #[test]
    fn depth_reduction_f23() {
        let t = Tile {
            width: 1,
            height: 1,
            channels: 1,
            data: Samples::U16(vec![0xABCD]),
        };
        assert_eq!(to_8bit(t).data, vec![0xAB]);
        let t = Tile {
            width: 2,
            height: 1,
            channels: 1,
            data: Samples::U32(vec![0xAB00_0000, 0x00FF_FFFF]),
        };
        assert_eq!(to_8bit(t).data, vec![0xAB, 0]);
        let t = Tile {
            width: 3,
            height: 1,
            channels: 1,
            data: Samples::F32(vec![1.0, 0.5, -2.0]),
        };
        assert_eq!(to_8bit(t).data, vec![255, 127, 0]);
    }

    #[test]
    fn channel_flattening() {
        let r = keep_channels(raster(2, 1, 4), 3);
        assert_eq!(r.data, vec![0, 1, 2, 4, 5, 6]);
        assert_eq!(r.channels, 3);
    }

    #[test]
    fn rotations_move_pixels() {
        let r = raster(3, 2, 2);
        let r90 = rotate(r.clone(), 90);
        assert_eq!((r90.width, r90.height), (2, 3));
        // Top-left goes to the top-right corner when turning clockwise.
        assert_eq!(px(&r90, 1, 0), px(&r, 0, 0));
        assert_eq!(px(&r90, 0, 2), px(&r, 2, 1));
        let r270 = rotate(r.clone(), 270);
        assert_eq!(px(&r270, 0, 2), px(&r, 0, 0));
        let r180 = rotate(r.clone(), 180);
        assert_eq!(px(&r180, 0, 0), px(&r, 2, 1));
        assert_eq!(rotate(rotate(r.clone(), 90), 270), r);
        assert_eq!(rotate(r.clone(), 45), r);
    }

    #[test]
    fn blit_clips_to_both_rasters() {
        let src = raster(4, 4, 1);
        let mut dst = Raster {
            width: 3,
            height: 3,
            channels: 1,
            data: vec![0; 9],
        };
        blit(&mut dst, (1, 1), &src, (2, 2, 5, 5));
        assert_eq!(dst.data, vec![0, 0, 0, 0, 10, 11, 0, 14, 15]);
    }

    #[test]
    fn a_part_of_a_tile_through_blank_like_and_blit_tile() {
        let t = Tile {
            width: 3,
            height: 2,
            channels: 2,
            data: Samples::U16((0..12).collect()),
        };
        let part = |(x, y, w, h): (u32, u32, u32, u32), (pw, ph): (u32, u32)| {
            let mut p = blank_like(&t, pw, ph).unwrap();
            assert!(blit_tile(&mut p, (0, 0), &t, (x, y, w, h)));
            p
        };
        let c = part((1, 0, 2, 2), (2, 2));
        assert_eq!((c.width, c.height, c.channels), (2, 2, 2));
        assert_eq!(c.data, Samples::U16(vec![2, 3, 4, 5, 8, 9, 10, 11]));
        let c = part((2, 1, 5, 5), (1, 1));
        assert_eq!(c.data, Samples::U16(vec![10, 11]));
        assert_eq!(part((0, 0, 3, 2), (3, 2)), t);
        assert_eq!(part((4, 0, 1, 1), (1, 1)).data, Samples::U16(vec![0, 0]));
    }

    #[test]
    fn mirror_swaps_columns() {
        let r = raster(3, 2, 1);
        let m = mirror_horizontal(r.clone());
        assert_eq!(px(&m, 0, 1), px(&r, 2, 1));
        assert_eq!(px(&m, 1, 0), px(&r, 1, 0));
        assert_eq!(mirror_horizontal(m), r);
    }
}

/// Clockwise rotation by any angle (IIIF): the output is the bounding box of the
/// rotated image, sampled bilinearly; uncovered pixels are transparent when `alpha`
/// (an alpha channel is added) and black otherwise.
pub fn rotate_free(r: &Raster, degrees: f64, alpha: bool) -> Raster {
    let t = degrees.to_radians();
    let (s, c) = (t.sin(), t.cos());
    let (w, h) = (r.width as f64, r.height as f64);
    // The exact bounding box; its size rounded, as vips sizes its rotations.
    let (bw, bh) = (w * c.abs() + h * s.abs(), w * s.abs() + h * c.abs());
    let (ow, oh) = (bw.round().max(1.0) as u32, bh.round().max(1.0) as u32);
    let ch = r.channels as usize;
    let add_alpha = alpha && matches!(ch, 1 | 3);
    let oc = ch + usize::from(add_alpha);
    let mut data = vec![0u8; ow as usize * oh as usize * oc];
    let (cx, cy) = (w / 2.0, h / 2.0);
    let (ocx, ocy) = (bw / 2.0, bh / 2.0);
    let at = |x: usize, y: usize, k: usize| r.data[(y * r.width as usize + x) * ch + k] as f64;
    for y in 0..oh as usize {
        for x in 0..ow as usize {
            let (dx, dy) = (x as f64 - ocx, y as f64 - ocy);
            let sx = c * dx + s * dy + cx;
            let sy = -s * dx + c * dy + cy;
            if sx < -0.5 || sy < -0.5 || sx > w - 0.5 || sy > h - 0.5 {
                continue;
            }
            let (x0, y0) = (sx.floor().max(0.0), sy.floor().max(0.0));
            let (fx, fy) = ((sx - x0).clamp(0.0, 1.0), (sy - y0).clamp(0.0, 1.0));
            let (x0, y0) = (x0 as usize, y0 as usize);
            let x1 = (x0 + 1).min(r.width as usize - 1);
            let y1 = (y0 + 1).min(r.height as usize - 1);
            let o = (y * ow as usize + x) * oc;
            for k in 0..ch {
                let top = at(x0, y0, k) * (1.0 - fx) + at(x1, y0, k) * fx;
                let bottom = at(x0, y1, k) * (1.0 - fx) + at(x1, y1, k) * fx;
                data[o + k] = (top * (1.0 - fy) + bottom * fy).round() as u8;
            }
            if add_alpha {
                data[o + ch] = 255;
            }
        }
    }
    Raster {
        width: ow,
        height: oh,
        channels: oc as u16,
        data,
    }
}

#[cfg(test)]
mod free_rotation_tests {
    use super::*;

    #[test]
    fn bounding_box_and_background() {
        let r = Raster {
            width: 100,
            height: 50,
            channels: 3,
            data: vec![200; 100 * 50 * 3],
        };
        let o = rotate_free(&r, 45.0, true);
        // 100·cos45 + 50·sin45 = 106.07 → 106 in both directions.
        assert_eq!((o.width, o.height, o.channels), (106, 106, 4));
        assert_eq!(&o.data[..4], &[0, 0, 0, 0], "corner is transparent");
        let mid = ((53 * 106 + 53) * 4) as usize;
        assert_eq!(&o.data[mid..mid + 4], &[200, 200, 200, 255]);
        let o = rotate_free(&r, 30.0, false);
        assert_eq!(o.channels, 3);
        let same = rotate_free(&r, 0.0, false);
        assert_eq!((same.width, same.height), (100, 50));
        assert_eq!(same.data, r.data);
    }
}
