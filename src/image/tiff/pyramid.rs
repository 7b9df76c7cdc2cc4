//! The pyramid of a TIFF: its directories read into levels and stack pages
//! (docs/sources.md §3), from a SubIFD pyramid (OME-TIFF, `vips --subifd`) or from
//! the chain of tiled top-level directories, each level checked as it is read.

use super::ifd::{Ifd, Reader};
use super::{bad, meta, tag, LevelData, TiffImage};
use crate::image::{Fault, ImageError, Level, StoredCodec};
use std::collections::HashSet;
use std::sync::Arc;

/// Largest tile side accepted.
const MAX_TILE_SIDE: u64 = 16384;
/// Largest image side accepted.
const MAX_SIDE: u64 = 1 << 31;
/// Most directories followed in one file.
const MAX_IFDS: usize = 4096;

fn codec_of(compression: u16) -> StoredCodec {
    match compression {
        1 => StoredCodec::None,
        5 => StoredCodec::Lzw,
        6 | 7 => StoredCodec::Jpeg,
        8 | 32946 => StoredCodec::Deflate,
        32773 => StoredCodec::PackBits,
        50000 => StoredCodec::Zstd,
        50001 => StoredCodec::Webp,
        c => StoredCodec::Other(c),
    }
}

pub(super) fn opt_uint(r: &Reader, d: &Ifd, t: u16, default: u64) -> Result<u64, ImageError> {
    match d.get(t) {
        Some(e) => r.uint(e),
        None => Ok(default),
    }
}

fn is_tiled(d: &Ifd) -> bool {
    d.get(tag::TILE_WIDTH).is_some() && d.get(tag::TILE_LENGTH).is_some()
}

/// Reads one tiled directory as a level.
fn level_of(r: &Reader, d: &Ifd) -> Result<(Level, LevelData), ImageError> {
    let entry = |t: u16, name: &'static str| d.get(t).ok_or_else(|| bad(Fault::MissingTag(name)));
    let req = |t: u16, name: &'static str| entry(t, name).and_then(|e| r.uint(e));
    let width = req(tag::IMAGE_WIDTH, "ImageWidth")?;
    let height = req(tag::IMAGE_LENGTH, "ImageLength")?;
    let tw = req(tag::TILE_WIDTH, "TileWidth")?;
    let th = req(tag::TILE_LENGTH, "TileLength")?;
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return Err(bad(Fault::ImageSize { width, height }));
    }
    if tw == 0 || th == 0 || tw > MAX_TILE_SIDE || th > MAX_TILE_SIDE {
        return Err(bad(Fault::TileSize {
            width: tw,
            height: th,
        }));
    }
    let samples = opt_uint(r, d, tag::SAMPLES_PER_PIXEL, 1)?;
    if samples == 0 || samples > 1024 {
        return Err(bad(Fault::BadValue {
            field: "samples per pixel",
            value: samples,
        }));
    }
    let bits = opt_uint(r, d, tag::BITS_PER_SAMPLE, 1)?;
    if bits == 0 || bits > 64 {
        return Err(bad(Fault::BadValue {
            field: "bits per sample",
            value: bits,
        }));
    }
    let planar = opt_uint(r, d, tag::PLANAR_CONFIG, 1)?;
    let tiles = width.div_ceil(tw) * height.div_ceil(th);
    let needed = if planar == 2 { tiles * samples } else { tiles };
    let offsets = r.uint_array(entry(tag::TILE_OFFSETS, "TileOffsets")?)?;
    let counts = r.uint_array(entry(tag::TILE_BYTE_COUNTS, "TileByteCounts")?)?;
    if offsets.len < needed || counts.len < needed {
        return Err(bad(Fault::TileTables {
            offsets: offsets.len,
            counts: counts.len,
            tiles: needed,
        }));
    }
    let compression = opt_uint(r, d, tag::COMPRESSION, 1)? as u16;
    let photometric = opt_uint(r, d, tag::PHOTOMETRIC, 1)? as u16;
    let colour_map = match (photometric, d.get(tag::COLOR_MAP)) {
        (3, Some(e)) if bits <= 16 => {
            let map: Vec<u16> = r.uints(e)?.into_iter().map(|v| v as u16).collect();
            if map.len() as u64 != 3 << bits {
                return Err(bad(Fault::ColorMapSize {
                    entries: map.len(),
                    bits,
                }));
            }
            Some(map)
        }
        (3, _) => return Err(bad(Fault::NoColorMap)),
        _ => None,
    };
    let jpeg_tables = match d.get(tag::JPEG_TABLES) {
        Some(e) => {
            let b = r.raw(e)?;
            Some((e.pos, b.len()))
        }
        None => None,
    };
    let level = Level {
        width: width as u32,
        height: height as u32,
        tile_width: tw as u32,
        tile_height: th as u32,
        codec: codec_of(compression),
    };
    let data = LevelData {
        offsets,
        counts,
        compression,
        predictor: opt_uint(r, d, tag::PREDICTOR, 1)? as u16,
        jpeg_tables,
        photometric,
        samples: samples as u16,
        bits: bits as u16,
        planar: planar as u16,
        sample_format: opt_uint(r, d, tag::SAMPLE_FORMAT, 1)? as u16,
        ycbcr_subsampling: d.get(tag::YCBCR_SUBSAMPLING).is_some(),
        colour_map,
    };
    Ok((level, data))
}

/// Whether a stack page has the level sizes of page 0 (pages are served on page 0's grid).
fn same_geometry(page: &[(Level, LevelData)], first: &[(Level, LevelData)]) -> bool {
    page.len() == first.len()
        && page
            .iter()
            .zip(first)
            .all(|((a, da), (b, db))| a == b && da.samples == db.samples && da.bits == db.bits)
}

impl TiffImage {
    /// Parses the header and the directories that make the pyramid.
    pub fn parse(map: crate::image::guard::Map) -> Result<TiffImage, ImageError> {
        let (levels, data, info) = {
            let (r, first) = Reader::new(&map[..])?;
            let ifd0 = r.ifd(first)?;
            if !is_tiled(&ifd0) {
                return Err(ImageError::NotTiled);
            }
            let mut levels = vec![level_of(&r, &ifd0)?];
            let mut visited = HashSet::from([first]);
            let subifd_levels = |d: &Ifd,
                                 visited: &mut HashSet<u64>|
             -> Result<Vec<(Level, LevelData)>, ImageError> {
                let mut out = Vec::new();
                if let Some(e) = d.get(tag::SUB_IFDS) {
                    for off in r.uints(e)?.into_iter().take(MAX_IFDS) {
                        if !visited.insert(off) {
                            continue;
                        }
                        let Ok(sub) = r.ifd(off) else { continue };
                        if opt_uint(&r, &sub, tag::NEW_SUBFILE_TYPE, 0)? & 1 == 1 && is_tiled(&sub)
                        {
                            out.push(level_of(&r, &sub)?);
                        }
                    }
                }
                Ok(out)
            };
            levels.extend(subifd_levels(&ifd0, &mut visited)?);
            let is_page = |d: &Ifd| -> bool {
                matches!(opt_uint(&r, d, tag::NEW_SUBFILE_TYPE, 0), Ok(t) if t & 2 == 2)
            };
            // Further stack pages (docs/sources.md §3.7), each with the geometry of page 0.
            let mut pages: Vec<Vec<(Level, LevelData)>> = Vec::new();
            let page_meta = |d: &Ifd| -> (String, f64) {
                let name = d
                    .get(tag::DOCUMENT_NAME)
                    .and_then(|e| r.text(e).ok())
                    .unwrap_or_default();
                let scale = d
                    .get(tag::STONITS)
                    .and_then(|e| r.floats(e).ok())
                    .and_then(|v| v.first().copied())
                    .filter(|v| v.is_finite() && *v != 0.0)
                    .unwrap_or(1.0);
                (name, scale)
            };
            let mut meta = vec![page_meta(&ifd0)];
            let mut next = ifd0.next;
            if levels.len() > 1 {
                while next != 0 && visited.len() < MAX_IFDS {
                    if !visited.insert(next) {
                        return Err(bad(Fault::ChainLoops));
                    }
                    let d = r.ifd(next)?;
                    next = d.next;
                    if !(is_page(&d) && is_tiled(&d)) {
                        continue;
                    }
                    let mut page = vec![level_of(&r, &d)?];
                    page.extend(subifd_levels(&d, &mut visited)?);
                    if same_geometry(&page, &levels) {
                        pages.push(page);
                        meta.push(page_meta(&d));
                    }
                }
            } else {
                let mut chain = Vec::new();
                while next != 0 && visited.len() < MAX_IFDS {
                    if !visited.insert(next) {
                        return Err(bad(Fault::ChainLoops));
                    }
                    let d = r.ifd(next)?;
                    next = d.next;
                    if is_tiled(&d) {
                        chain.push((is_page(&d), level_of(&r, &d)?, page_meta(&d)));
                    }
                }
                // Classic stack: IFD 1 the size of IFD 0, pages of type 2.
                let stack = is_page(&ifd0)
                    && chain.first().is_some_and(|(p, (l, _), _)| {
                        *p && (l.width, l.height) == (levels[0].0.width, levels[0].0.height)
                    });
                for (p, l, m) in chain {
                    if !stack {
                        levels.push(l);
                    } else if p && same_geometry(std::slice::from_ref(&l), &levels) {
                        pages.push(vec![l]);
                        meta.push(m);
                    }
                }
            }
            // Some writers (vips) drop SampleFormat from reduced levels: they share the
            // sample type of the full image.
            let f0 = (levels[0].1.sample_format, levels[0].1.bits);
            for (_, d) in levels.iter_mut().chain(pages.iter_mut().flatten()) {
                if d.sample_format == 1 && d.bits == f0.1 {
                    d.sample_format = f0.0;
                }
            }
            let mut info = meta::info_of(&r, &ifd0, &levels)?;
            if !pages.is_empty() {
                info.horizontal_views = (0..=pages.len() as i32).collect();
                info.pages = meta;
            }
            let (levels, data): (Vec<Level>, Vec<LevelData>) = levels.into_iter().unzip();
            let mut all = vec![data];
            all.extend(
                pages
                    .into_iter()
                    .map(|p| p.into_iter().map(|(_, d)| d).collect()),
            );
            (levels, all, info)
        };
        let mut info = info;
        info.levels = levels;
        Ok(TiffImage {
            map: Arc::new(map),
            info: Arc::new(info),
            pages: Arc::new(data),
            page: 0,
        })
    }
}
