//! What `OBJ` and `info.json` report about a TIFF: the [`ImageInfo`] of its first
//! directory (channels, depth, colour space, sample range, resolution, metadata
//! tags, XMP and ICC profile).

use super::ifd::{Ifd, Reader};
use super::{tag, LevelData};
use crate::image::{ColourSpace, ImageError, ImageInfo, Level, ResolutionUnit, SampleFormat};
use std::collections::BTreeMap;

/// Expands an n-bit (9–15) value to 16 bits as the tile reader does.
fn expand_to_16(v: f64, bits: u16) -> f64 {
    if (9..16).contains(&bits) && (0.0..65536.0).contains(&v) {
        let v = v as u32;
        (((v << (16 - bits)) | (v >> (2 * bits - 16))) & 0xFFFF) as f64
    } else {
        v
    }
}

/// The description of an image whose first directory is `d` and levels `levels`.
pub(super) fn info_of(
    r: &Reader,
    d: &Ifd,
    levels: &[(Level, LevelData)],
) -> Result<ImageInfo, ImageError> {
    let l0 = &levels[0].1;
    // Palette indices are expanded to 8-bit RGB on decode.
    let (channels, bits) = match l0.photometric {
        3 => (3, 8),
        _ => (l0.samples, l0.bits),
    };
    let sample_format = if l0.sample_format == 3 {
        SampleFormat::Float
    } else {
        SampleFormat::Unsigned
    };
    let colour = match l0.photometric {
        0 | 1 if bits == 1 => ColourSpace::Bilevel,
        0 | 1 => ColourSpace::Greyscale,
        2 | 3 | 5 | 6 => ColourSpace::Srgb,
        8..=10 => ColourSpace::CieLab,
        _ => ColourSpace::None,
    };
    let default_max = match (sample_format, bits) {
        (SampleFormat::Float, _) => 1.0,
        (_, 0..=8) => 255.0,
        (_, 9..=16) => 65535.0,
        _ => 4294967295.0,
    };
    let per_channel = |t: u16, default: f64| -> Result<Vec<f64>, ImageError> {
        let vals = match d.get(t) {
            Some(e) => r.floats(e)?,
            None => vec![],
        };
        Ok((0..channels as usize)
            .map(|c| {
                let v = vals.get(c).or(vals.first()).copied().unwrap_or(default);
                expand_to_16(v, bits)
            })
            .collect())
    };
    let min = per_channel(tag::S_MIN_SAMPLE_VALUE, 0.0)?;
    let max: Vec<f64> = per_channel(tag::S_MAX_SAMPLE_VALUE, default_max)?
        .into_iter()
        .map(|m| if m == 0.0 { default_max } else { m })
        .collect();

    let float_tag = |t: u16| -> f64 {
        d.get(t)
            .and_then(|e| r.floats(e).ok())
            .and_then(|v| v.first().copied())
            .filter(|v| v.is_finite() && *v > 0.0)
            .unwrap_or(0.0)
    };
    let resolution_unit = match d.get(tag::RESOLUTION_UNIT).map(|e| r.uint(e)).transpose()? {
        Some(2) => ResolutionUnit::Inch,
        Some(3) => ResolutionUnit::Centimetre,
        _ => ResolutionUnit::Unknown,
    };

    let mut metadata = BTreeMap::new();
    for (t, key) in [
        (tag::ARTIST, "creator"),
        (tag::COPYRIGHT, "rights"),
        (tag::DATE_TIME, "date"),
        (tag::IMAGE_DESCRIPTION, "description"),
        (tag::DOCUMENT_NAME, "title"),
        (tag::PAGE_NAME, "pagename"),
        (tag::SOFTWARE, "software"),
        (tag::MAKE, "make"),
        (tag::MODEL, "model"),
    ] {
        if let Some(e) = d.get(t) {
            if let Ok(s) = r.text(e) {
                if !s.is_empty() {
                    metadata.insert(key.to_owned(), s);
                }
            }
        }
    }
    if let Some(s) = d
        .get(tag::STONITS)
        .and_then(|e| r.floats(e).ok())
        .and_then(|v| v.first().copied())
    {
        metadata.insert("scale".into(), crate::cnum::fmt_g9(s));
    }
    let xmp = d
        .get(tag::XMP)
        .and_then(|e| r.raw(e).ok())
        .map(|b| String::from_utf8_lossy(b).trim_end_matches('\0').to_owned())
        .filter(|s| !s.is_empty());
    let icc = d
        .get(tag::ICC_PROFILE)
        .and_then(|e| r.raw(e).ok())
        .filter(|b| !b.is_empty())
        .map(<[u8]>::to_vec);

    Ok(ImageInfo {
        levels: vec![],
        channels,
        bits_per_sample: bits,
        sample_format,
        colour,
        min,
        max,
        dpi_x: float_tag(tag::X_RESOLUTION),
        dpi_y: float_tag(tag::Y_RESOLUTION),
        resolution_unit,
        metadata,
        icc,
        xmp,
        exif: None,
        horizontal_views: vec![0],
        vertical_views: vec![90],
        quality_layers: 0,
        pages: Vec::new(),
    })
}
