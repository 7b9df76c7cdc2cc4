//! The `WATERMARK` image: loaded from any 8-bit TIFF (striped or tiled; grey,
//! grey+alpha, RGB or RGBA) read whole with the `tiff` crate, since a watermark is
//! small, and kept premultiplied, ready for the pipeline to add.

use std::path::Path;

/// A watermark ready to add: RGB premultiplied by alpha and opacity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watermark {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

impl Watermark {
    /// From 8-bit RGBA pixels: `wm = trunc(c · opacity · alpha / 255)`.
    pub fn from_rgba(width: u32, height: u32, rgba: &[u8], opacity: f64) -> Watermark {
        let rgb = rgba
            .chunks_exact(4)
            .flat_map(|p| {
                let f = opacity * p[3] as f64 / 255.0;
                [0, 1, 2].map(|c| (p[c] as f64 * f) as u8)
            })
            .collect();
        Watermark { width, height, rgb }
    }
}

/// Largest watermark accepted, in pixels.
const MAX_PIXELS: u64 = 16 << 20;

/// Why the `WATERMARK` file cannot be used (reported in the log: no client sees it).
#[derive(Debug, thiserror::Error)]
pub enum WatermarkError {
    #[error("watermark: unable to open file: {0}")]
    Open(#[source] std::io::Error),
    #[error("watermark: {0}")]
    Read(#[source] tiff::TiffError),
    #[error("watermark of {width}x{height}: empty, or more than {MAX_PIXELS} pixels")]
    Size { width: u32, height: u32 },
    #[error("watermark deeper than 8 bits")]
    Depth,
    #[error("watermark of {0:?}: grey or RGB, with or without alpha, are supported")]
    Colour(tiff::ColorType),
    #[error("watermark: short image data")]
    Short,
}

pub fn load(path: &Path, opacity: f64) -> Result<Watermark, WatermarkError> {
    use tiff::decoder::{Decoder, DecodingResult, Limits};
    use tiff::ColorType;
    let file = std::fs::File::open(path).map_err(WatermarkError::Open)?;
    let bad = WatermarkError::Read;
    let mut d = Decoder::new(std::io::BufReader::new(file))
        .map_err(bad)?
        .with_limits(Limits::default());
    let (w, h) = d.dimensions().map_err(bad)?;
    if w == 0 || h == 0 || w as u64 * h as u64 > MAX_PIXELS {
        return Err(WatermarkError::Size {
            width: w,
            height: h,
        });
    }
    let colour = d.colortype().map_err(bad)?;
    let DecodingResult::U8(px) = d.read_image().map_err(bad)? else {
        return Err(WatermarkError::Depth);
    };
    let n = w as usize * h as usize;
    let rgba: Vec<u8> = match colour {
        ColorType::Gray(8) => px.iter().take(n).flat_map(|&g| [g, g, g, 255]).collect(),
        ColorType::GrayA(8) => px
            .chunks_exact(2)
            .take(n)
            .flat_map(|p| [p[0], p[0], p[0], p[1]])
            .collect(),
        ColorType::RGB(8) => px
            .chunks_exact(3)
            .take(n)
            .flat_map(|p| [p[0], p[1], p[2], 255])
            .collect(),
        ColorType::RGBA(8) => px.into_iter().take(n * 4).collect(),
        other => {
            return Err(WatermarkError::Colour(other));
        }
    };
    if rgba.len() != n * 4 {
        return Err(WatermarkError::Short);
    }
    Ok(Watermark::from_rgba(w, h, &rgba, opacity))
}
