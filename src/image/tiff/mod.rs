//! Pyramid TIFF and BigTIFF images read from a memory map (docs/sources.md §3).
//!
//! Levels come from a SubIFD pyramid (OME-TIFF, `vips --subifd`) or from the chain
//! of tiled top-level directories. Tiles are sliced from the map and decompressed
//! into buffers sized by the tile geometry; stored JPEG tiles can be handed out
//! as standalone files for pass-through.

mod decode;
mod ifd;

use super::{
    Codec, ColourSpace, DecodeError, EncodedTile, Fault, Format, Image, ImageError, ImageInfo,
    Level, ResolutionUnit, SampleFormat, Samples, StoredCodec, Tile, Unsupported,
};
use ifd::{Ifd, Reader, Uints};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// Largest tile side accepted.
const MAX_TILE_SIDE: u64 = 16384;
/// Largest image side accepted.
const MAX_SIDE: u64 = 1 << 31;
/// Most directories followed in one file.
const MAX_IFDS: usize = 4096;

mod tag {
    pub const NEW_SUBFILE_TYPE: u16 = 254;
    pub const IMAGE_WIDTH: u16 = 256;
    pub const IMAGE_LENGTH: u16 = 257;
    pub const BITS_PER_SAMPLE: u16 = 258;
    pub const COMPRESSION: u16 = 259;
    pub const PHOTOMETRIC: u16 = 262;
    pub const DOCUMENT_NAME: u16 = 269;
    pub const IMAGE_DESCRIPTION: u16 = 270;
    pub const MAKE: u16 = 271;
    pub const MODEL: u16 = 272;
    pub const SAMPLES_PER_PIXEL: u16 = 277;
    pub const X_RESOLUTION: u16 = 282;
    pub const Y_RESOLUTION: u16 = 283;
    pub const PLANAR_CONFIG: u16 = 284;
    pub const PAGE_NAME: u16 = 285;
    pub const COLOR_MAP: u16 = 320;
    pub const RESOLUTION_UNIT: u16 = 296;
    pub const SOFTWARE: u16 = 305;
    pub const DATE_TIME: u16 = 306;
    pub const ARTIST: u16 = 315;
    pub const PREDICTOR: u16 = 317;
    pub const TILE_WIDTH: u16 = 322;
    pub const TILE_LENGTH: u16 = 323;
    pub const TILE_OFFSETS: u16 = 324;
    pub const TILE_BYTE_COUNTS: u16 = 325;
    pub const SUB_IFDS: u16 = 330;
    pub const SAMPLE_FORMAT: u16 = 339;
    pub const S_MIN_SAMPLE_VALUE: u16 = 340;
    pub const S_MAX_SAMPLE_VALUE: u16 = 341;
    pub const JPEG_TABLES: u16 = 347;
    pub const YCBCR_SUBSAMPLING: u16 = 530;
    pub const XMP: u16 = 700;
    pub const COPYRIGHT: u16 = 33432;
    pub const STONITS: u16 = 33423;
    pub const ICC_PROFILE: u16 = 34675;
}

/// What decoding one level needs.
#[derive(Debug, Clone)]
struct LevelData {
    offsets: Uints,
    counts: Uints,
    compression: u16,
    predictor: u16,
    jpeg_tables: Option<(usize, usize)>,
    photometric: u16,
    samples: u16,
    bits: u16,
    planar: u16,
    sample_format: u16,
    ycbcr_subsampling: bool,
    /// Palette images: the 16-bit red, green and blue tables, one after the other.
    colour_map: Option<Vec<u16>>,
}

/// An opened TIFF, showing one page of its stack (page 0 unless chosen by [`Image::view`]).
pub struct TiffImage {
    map: Arc<crate::image::guard::Map>,
    info: Arc<ImageInfo>,
    /// Levels of every stack page (a plain pyramid is a stack of one page).
    pages: Arc<Vec<Vec<LevelData>>>,
    /// The page shown.
    page: usize,
}

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

/// A fault in the file, as an error.
fn bad(fault: Fault) -> ImageError {
    ImageError::malformed(Format::Tiff, fault)
}

fn opt_uint(r: &Reader, d: &Ifd, t: u16, default: u64) -> Result<u64, ImageError> {
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

/// Expands an n-bit (9–15) value to 16 bits as the tile reader does.
fn expand_to_16(v: f64, bits: u16) -> f64 {
    if (9..16).contains(&bits) && (0.0..65536.0).contains(&v) {
        let v = v as u32;
        (((v << (16 - bits)) | (v >> (2 * bits - 16))) & 0xFFFF) as f64
    } else {
        v
    }
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
            let mut info = Self::info_of(&r, &ifd0, &levels)?;
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

    fn info_of(
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

    /// A reader for slicing stored bytes (offset width does not matter there).
    fn reader(&self) -> Reader<'_> {
        Reader {
            data: &self.map[..],
            little_endian: matches!(&self.map[..2], b"II"),
            big_tiff: false,
        }
    }

    fn check(&self, k: u32, t: u32) -> Result<(&Level, &LevelData), ImageError> {
        let level = self
            .info
            .levels
            .get(k as usize)
            .ok_or(ImageError::NoSuchLevel(k))?;
        if t >= level.tile_count() {
            return Err(ImageError::NoSuchTile(t));
        }
        Ok((level, &self.pages[self.page][k as usize]))
    }

    /// The stored bytes of tile `t` of a level.
    fn stored(&self, d: &LevelData, t: u32) -> Result<&[u8], ImageError> {
        let r = self.reader();
        let missing = || ImageError::NoSuchTile(t);
        let off = r.uint_at(&d.offsets, t as u64)?.ok_or_else(missing)?;
        let len = r.uint_at(&d.counts, t as u64)?.ok_or_else(missing)?;
        if len == 0 || len > 256 << 20 {
            return Err(bad(Fault::TileLength { tile: t, len }));
        }
        r.bytes(off, len)
    }

    fn jpeg_bitstream(&self, d: &LevelData, t: u32) -> Result<Vec<u8>, ImageError> {
        let tile = self.stored(d, t)?;
        match d.jpeg_tables {
            Some((pos, len)) if len > 4 => {
                let tables = &self.map[pos..pos + len];
                if tile.len() < 2 || tile[..2] != [0xFF, 0xD8] || tables[..2] != [0xFF, 0xD8] {
                    return Err(DecodeError::NoSoi(t).into());
                }
                let mut out = Vec::with_capacity(len + tile.len());
                out.extend_from_slice(&tables[..len - 2]);
                out.extend_from_slice(&tile[2..]);
                Ok(out)
            }
            _ => Ok(tile.to_vec()),
        }
    }
}

impl Image for TiffImage {
    fn info(&self) -> &ImageInfo {
        &self.info
    }

    fn view(&self, x: i32, _y: i32) -> Option<Result<Arc<dyn Image>, ImageError>> {
        if self.pages.len() < 2 {
            return None;
        }
        let Some(page) = usize::try_from(x).ok().filter(|&p| p < self.pages.len()) else {
            return Some(Err(ImageError::NoSuchView(x)));
        };
        Some(Ok(Arc::new(TiffImage {
            map: Arc::clone(&self.map),
            info: Arc::clone(&self.info),
            pages: Arc::clone(&self.pages),
            page,
        })))
    }

    fn encoded_tile(&self, k: u32, t: u32) -> Result<Option<EncodedTile>, ImageError> {
        let (level, d) = self.check(k, t)?;
        let complete = level.tile_size(t) == Some((level.tile_width, level.tile_height));
        if d.compression == 50001 {
            let passable = complete && d.bits == 8 && d.planar == 1 && matches!(d.samples, 3 | 4);
            let bytes = self.stored(d, t)?;
            if !passable || bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WEBP" {
                return Ok(None);
            }
            return Ok(Some(EncodedTile {
                codec: StoredCodec::Webp,
                bytes: bytes.to_vec(),
            }));
        }
        let passable = d.compression == 7
            && !matches!(d.photometric, 3 | 8)
            && complete
            && d.bits == 8
            && d.planar == 1
            && matches!(d.samples, 1 | 3)
            && !(d.photometric == 2 && d.ycbcr_subsampling);
        if !passable {
            return Ok(None);
        }
        let bytes = self.jpeg_bitstream(d, t)?;
        // A frame that disagrees with the directory is decoded, and so refused, here
        // rather than handed to a client's decoder.
        if !decode::jpeg_passable(&bytes, (level.tile_width, level.tile_height), d.samples) {
            return Ok(None);
        }
        Ok(Some(EncodedTile {
            codec: StoredCodec::Jpeg,
            bytes,
        }))
    }

    fn decode_tile(&self, k: u32, t: u32) -> Result<Tile, ImageError> {
        let (level, d) = self.check(k, t)?;
        let (w, h) = level.tile_size(t).expect("checked");
        let (tw, th) = (level.tile_width as usize, level.tile_height as usize);
        let planes = if d.planar == 2 { d.samples as usize } else { 1 };
        let per_chunk = d.samples as usize / planes;
        let tiles = level.tile_count();
        let mut chunks = Vec::with_capacity(planes);
        for p in 0..planes {
            chunks.push(self.decode_chunk(d, p as u32 * tiles + t, tw, th, per_chunk)?);
        }
        let (samples, channels) = match chunks.len() {
            1 => (chunks.pop().expect("one chunk"), per_chunk),
            _ => (
                interleave(&chunks).ok_or(ImageError::Decode(DecodeError::Planes))?,
                planes,
            ),
        };
        let (samples, channels) = self.finish_samples(d, samples, channels)?;
        Ok(Tile {
            width: w,
            height: h,
            channels: channels as u16,
            data: crop_samples(samples, tw, channels, w as usize, h as usize),
        })
    }

    fn decode_tile_part(
        &self,
        k: u32,
        t: u32,
        (x, y, w, h): (u32, u32, u32, u32),
    ) -> Result<(Tile, (u32, u32)), ImageError> {
        let (level, d) = self.check(k, t)?;
        let (tw, th) = level.tile_size(t).expect("checked");
        let whole = (x, y, w, h) == (0, 0, tw, th);
        let jpeg = matches!(d.compression, 6 | 7)
            && d.bits == 8
            && (d.planar == 1 || d.samples == 1)
            && matches!(d.samples, 1 | 3)
            && d.photometric != 3;
        if whole || !jpeg || w == 0 || h == 0 || x + w > tw || y + h > th {
            return Ok((self.decode_tile(k, t)?, (0, 0)));
        }
        // Edge tiles of a region: decode only the rows and block columns it needs.
        let channels = d.samples as usize;
        let part = (x as usize, y as usize, w as usize, h as usize);
        let (x0, y0, pw, ph, px) = decode::jpeg_part(
            &self.jpeg_bitstream(d, t)?,
            d.samples,
            (level.tile_width as usize, level.tile_height as usize),
            Some(part),
        )?;
        let (samples, channels) = self.finish_samples(d, Samples::U8(px), channels)?;
        Ok((
            Tile {
                width: pw as u32,
                height: ph as u32,
                channels: channels as u16,
                data: samples,
            },
            (x0 as u32, y0 as u32),
        ))
    }
}

/// Largest decoded tile accepted, in bytes.
const MAX_TILE_BYTES: usize = 256 << 20;

impl TiffImage {
    /// Decodes one stored chunk (a tile, or one plane of it) at its full `tw×th` size.
    /// 8-bit data comes back as `U8`; 1–6 and 10–14-bit data as unexpanded `U16`
    /// values; 16 and 32-bit as stored; 64-bit float narrowed to `F32`.
    fn decode_chunk(
        &self,
        d: &LevelData,
        chunk: u32,
        tw: usize,
        th: usize,
        channels: usize,
    ) -> Result<Samples, ImageError> {
        let bits = d.bits as usize;
        let row_bytes = (tw * channels * bits).div_ceil(8);
        let expected = row_bytes
            .checked_mul(th)
            .filter(|&n| n <= MAX_TILE_BYTES)
            .ok_or_else(|| {
                bad(Fault::TileBytes {
                    width: tw,
                    height: th,
                    channels,
                })
            })?;
        match d.compression {
            6 | 7 => {
                if d.bits != 8 {
                    return Err(Unsupported::TileBits {
                        codec: Codec::Jpeg,
                        bits: d.bits,
                    }
                    .into());
                }
                let bits = self.jpeg_bitstream(d, chunk)?;
                let (jw, jh, px) = decode::jpeg(&bits, channels as u16, (tw, th))?;
                return Ok(Samples::U8(fit(px, (jw, jh), channels, (tw, th))?));
            }
            50001 => {
                let (jw, jh, px) = decode::webp(self.stored(d, chunk)?, channels as u16)?;
                return Ok(Samples::U8(fit(px, (jw, jh), channels, (tw, th))?));
            }
            _ => {}
        }
        let mut raw = decode::decompress(d.compression, self.stored(d, chunk)?, expected)?;
        let le = matches!(&self.map[..2], b"II");
        Ok(match (d.bits, d.sample_format) {
            (8, _) => {
                if d.predictor == 2 {
                    decode::unpredict_u8(&mut raw, tw, channels);
                }
                Samples::U8(raw)
            }
            (16, f) if f != 3 => {
                let mut v = decode::words16(&raw, le);
                if d.predictor == 2 {
                    decode::unpredict_u16(&mut v, tw, channels);
                }
                Samples::U16(v)
            }
            (32, 3) => {
                let words = decode::words32(&mut raw, tw, channels, d.predictor, le);
                Samples::F32(words.into_iter().map(f32::from_bits).collect())
            }
            (32, _) => Samples::U32(decode::words32(&mut raw, tw, channels, d.predictor, le)),
            (64, 3) if d.predictor == 1 => Samples::F32(
                raw.chunks_exact(8)
                    .map(|c| {
                        let b = c.try_into().expect("8 bytes");
                        let v = if le {
                            f64::from_le_bytes(b)
                        } else {
                            f64::from_be_bytes(b)
                        };
                        v as f32
                    })
                    .collect(),
            ),
            (1 | 2 | 4 | 6 | 10 | 12 | 14, f) if f != 3 => {
                Samples::U16(decode::unpack_bits(&raw, d.bits, tw * channels, th))
            }
            (b, f) => {
                return Err(Unsupported::Samples {
                    format: Format::Tiff,
                    bits: b,
                    float: f == 3,
                    predictor: d.predictor != 1,
                }
                .into())
            }
        })
    }

    /// Applies the photometric interpretation and depth expansion (docs/sources.md §3.2–3.3):
    /// palette indices through the colour map, 1–6-bit data to 8 bits, 10–14-bit to
    /// 16 bits, MinIsWhite inverted at every depth, signed integers offset to unsigned.
    fn finish_samples(
        &self,
        d: &LevelData,
        samples: Samples,
        channels: usize,
    ) -> Result<(Samples, usize), ImageError> {
        if d.photometric == 3 {
            let map = d
                .colour_map
                .as_ref()
                .ok_or_else(|| bad(Fault::NoColorMap))?;
            let n = map.len() / 3;
            let index = |i: usize| i.min(n - 1);
            let rgb = |i: usize| {
                let i = index(i);
                [
                    (map[i] >> 8) as u8,
                    (map[n + i] >> 8) as u8,
                    (map[2 * n + i] >> 8) as u8,
                ]
            };
            let out: Vec<u8> = match samples {
                Samples::U8(v) => v.iter().flat_map(|&i| rgb(i as usize)).collect(),
                Samples::U16(v) => v.iter().flat_map(|&i| rgb(i as usize)).collect(),
                _ => return Err(Unsupported::PaletteDepth.into()),
            };
            return Ok((Samples::U8(out), 3));
        }
        let invert = d.photometric == 0;
        let signed = d.sample_format == 2 && d.photometric != 8;
        let samples = match samples {
            Samples::U16(v) if d.bits < 8 => {
                let b = d.bits;
                Samples::U8(
                    v.into_iter()
                        .map(|s| {
                            let x = match b {
                                1 => s * 255,
                                2 => s * 85,
                                4 => s * 17,
                                _ => (s << 2) | (s >> 4),
                            } as u8;
                            if invert {
                                255 - x
                            } else {
                                x
                            }
                        })
                        .collect(),
                )
            }
            Samples::U16(mut v) => {
                let b = d.bits;
                if b < 16 {
                    v.iter_mut()
                        .for_each(|s| *s = (*s << (16 - b)) | (*s >> (2 * b - 16)));
                }
                if signed {
                    v.iter_mut().for_each(|s| *s ^= 0x8000);
                }
                if invert {
                    v.iter_mut().for_each(|s| *s = 65535 - *s);
                }
                Samples::U16(v)
            }
            Samples::U8(mut v) => {
                if signed {
                    v.iter_mut().for_each(|s| *s ^= 0x80);
                }
                if invert {
                    v.iter_mut().for_each(|s| *s = 255 - *s);
                }
                Samples::U8(v)
            }
            Samples::U32(mut v) => {
                if signed {
                    v.iter_mut().for_each(|s| *s ^= 0x8000_0000);
                }
                if invert {
                    v.iter_mut().for_each(|s| *s = u32::MAX - *s);
                }
                Samples::U32(v)
            }
            Samples::F32(mut v) => {
                if invert {
                    v.iter_mut().for_each(|s| *s = 1.0 - *s);
                }
                Samples::F32(v)
            }
        };
        Ok((samples, channels))
    }
}

/// A decoded `jw×jh` chunk as exactly `tw×th` pixels: codecs may store edge tiles
/// larger than the tile grid, which is cropped here; a smaller chunk is an error.
fn fit(
    px: Vec<u8>,
    (jw, jh): (usize, usize),
    channels: usize,
    (tw, th): (usize, usize),
) -> Result<Vec<u8>, ImageError> {
    if jw < tw || jh < th {
        return Err(DecodeError::TileSize {
            width: jw,
            height: jh,
            tile_width: tw,
            tile_height: th,
        }
        .into());
    }
    Ok(crop(px, jw, channels, tw, th))
}

/// Interleaves single-channel planes into one buffer of `planes.len()` channels;
/// `None` when the planes differ in type or size.
fn interleave(planes: &[Samples]) -> Option<Samples> {
    fn weave<T: Copy>(planes: &[&Vec<T>]) -> Option<Vec<T>> {
        let n = planes.first()?.len();
        if planes.iter().any(|p| p.len() != n) {
            return None;
        }
        let mut out = Vec::with_capacity(n * planes.len());
        for i in 0..n {
            out.extend(planes.iter().map(|p| p[i]));
        }
        Some(out)
    }
    macro_rules! all_of {
        ($variant:ident) => {{
            let vs: Option<Vec<_>> = planes
                .iter()
                .map(|p| match p {
                    Samples::$variant(v) => Some(v),
                    _ => None,
                })
                .collect();
            vs.and_then(|vs| weave(&vs)).map(Samples::$variant)
        }};
    }
    all_of!(U8)
        .or_else(|| all_of!(U16))
        .or_else(|| all_of!(U32))
        .or_else(|| all_of!(F32))
}

fn crop_samples(s: Samples, tw: usize, c: usize, w: usize, h: usize) -> Samples {
    match s {
        Samples::U8(v) => Samples::U8(crop(v, tw, c, w, h)),
        Samples::U16(v) => Samples::U16(crop(v, tw, c, w, h)),
        Samples::U32(v) => Samples::U32(crop(v, tw, c, w, h)),
        Samples::F32(v) => Samples::F32(crop(v, tw, c, w, h)),
    }
}

/// Decompresses one chunk (exposed for the TIFF writer's tests).
#[cfg(test)]
pub fn decompress_for_tests(compression: u16, src: &[u8], expected: usize) -> Vec<u8> {
    decode::decompress(compression, src, expected).expect("decodes")
}

/// The top-left `w×h` pixels of a buffer `stride_px` pixels wide.
fn crop<T: Copy>(mut src: Vec<T>, stride_px: usize, channels: usize, w: usize, h: usize) -> Vec<T> {
    if stride_px == w {
        src.truncate(w * h * channels);
        return src;
    }
    let mut out = Vec::with_capacity(w * h * channels);
    for row in src.chunks_exact(stride_px * channels).take(h) {
        out.extend_from_slice(&row[..w * channels]);
    }
    out
}

#[cfg(test)]
mod tests;
