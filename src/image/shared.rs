//! Image headers in the shared cache: a worker that meets a file another worker has
//! already opened takes its [`ImageInfo`] from shared memory instead of parsing the
//! file, and opens (maps and parses) the file only when a tile must be decoded.
//!
//! The value is a small versioned binary record. Decoding checks every length against
//! what is left, so a record from another build or a damaged one is a miss, never a
//! panic.

use super::{
    open, ColourSpace, DecodeError, EncodedTile, Image, ImageError, ImageInfo, Level,
    ResolutionUnit, SampleFormat, StoredCodec, Tile,
};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// First byte of every record; bump it when the layout changes.
const VERSION: u8 = 1;

/// Most levels, channels, views, pages or metadata entries a record may declare.
const MAX_ITEMS: u32 = 1 << 16;

/// The record for `info`.
pub fn encode(info: &ImageInfo) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(256));
    w.u8(VERSION);
    w.u32(info.levels.len() as u32);
    for l in &info.levels {
        w.u32(l.width);
        w.u32(l.height);
        w.u32(l.tile_width);
        w.u32(l.tile_height);
        let (tag, extra) = match l.codec {
            StoredCodec::None => (0, 0),
            StoredCodec::Jpeg => (1, 0),
            StoredCodec::Deflate => (2, 0),
            StoredCodec::Lzw => (3, 0),
            StoredCodec::Zstd => (4, 0),
            StoredCodec::Webp => (5, 0),
            StoredCodec::PackBits => (6, 0),
            StoredCodec::Other(c) => (7, c),
        };
        w.u8(tag);
        w.u16(extra);
    }
    w.u16(info.channels);
    w.u16(info.bits_per_sample);
    w.u8(match info.sample_format {
        SampleFormat::Unsigned => 0,
        SampleFormat::Float => 1,
    });
    w.u8(match info.colour {
        ColourSpace::Greyscale => 0,
        ColourSpace::Srgb => 1,
        ColourSpace::CieLab => 2,
        ColourSpace::Bilevel => 3,
        ColourSpace::None => 4,
    });
    w.f64s(&info.min);
    w.f64s(&info.max);
    w.f64(info.dpi_x);
    w.f64(info.dpi_y);
    w.u8(match info.resolution_unit {
        ResolutionUnit::Unknown => 0,
        ResolutionUnit::Inch => 1,
        ResolutionUnit::Centimetre => 2,
    });
    w.u32(info.metadata.len() as u32);
    for (k, v) in &info.metadata {
        w.bytes(k.as_bytes());
        w.bytes(v.as_bytes());
    }
    w.opt(info.icc.as_deref());
    w.opt(info.xmp.as_deref().map(str::as_bytes));
    w.opt(info.exif.as_deref());
    w.i32s(&info.horizontal_views);
    w.i32s(&info.vertical_views);
    w.u32(info.quality_layers);
    w.u32(info.pages.len() as u32);
    for (name, scale) in &info.pages {
        w.bytes(name.as_bytes());
        w.f64(*scale);
    }
    w.0
}

/// The [`ImageInfo`] a record holds; `None` for a record of another layout or a damaged
/// one.
pub fn decode(bytes: &[u8]) -> Option<ImageInfo> {
    let mut r = Reader(bytes);
    if r.u8()? != VERSION {
        return None;
    }
    let mut levels = Vec::new();
    for _ in 0..r.count()? {
        let (width, height, tile_width, tile_height) = (r.u32()?, r.u32()?, r.u32()?, r.u32()?);
        let codec = match (r.u8()?, r.u16()?) {
            (0, _) => StoredCodec::None,
            (1, _) => StoredCodec::Jpeg,
            (2, _) => StoredCodec::Deflate,
            (3, _) => StoredCodec::Lzw,
            (4, _) => StoredCodec::Zstd,
            (5, _) => StoredCodec::Webp,
            (6, _) => StoredCodec::PackBits,
            (7, c) => StoredCodec::Other(c),
            _ => return None,
        };
        if width == 0 || height == 0 || tile_width == 0 || tile_height == 0 {
            return None;
        }
        levels.push(Level {
            width,
            height,
            tile_width,
            tile_height,
            codec,
        });
    }
    if levels.is_empty() {
        return None;
    }
    let (channels, bits) = (r.u16()?, r.u16()?);
    let sample_format = match r.u8()? {
        0 => SampleFormat::Unsigned,
        1 => SampleFormat::Float,
        _ => return None,
    };
    let colour = match r.u8()? {
        0 => ColourSpace::Greyscale,
        1 => ColourSpace::Srgb,
        2 => ColourSpace::CieLab,
        3 => ColourSpace::Bilevel,
        4 => ColourSpace::None,
        _ => return None,
    };
    let mut info = ImageInfo::plain(levels, channels, bits, colour);
    info.sample_format = sample_format;
    info.min = r.f64s()?;
    info.max = r.f64s()?;
    info.dpi_x = r.f64()?;
    info.dpi_y = r.f64()?;
    info.resolution_unit = match r.u8()? {
        0 => ResolutionUnit::Unknown,
        1 => ResolutionUnit::Inch,
        2 => ResolutionUnit::Centimetre,
        _ => return None,
    };
    for _ in 0..r.count()? {
        let k = r.string()?;
        let v = r.string()?;
        info.metadata.insert(k, v);
    }
    info.icc = r.opt()?.map(<[u8]>::to_vec);
    info.xmp = match r.opt()? {
        Some(b) => Some(String::from_utf8(b.to_vec()).ok()?),
        None => None,
    };
    info.exif = r.opt()?.map(<[u8]>::to_vec);
    info.horizontal_views = r.i32s()?;
    info.vertical_views = r.i32s()?;
    info.quality_layers = r.u32()?;
    info.pages = Vec::new();
    for _ in 0..r.count()? {
        let name = r.string()?;
        info.pages.push((name, r.f64()?));
    }
    r.0.is_empty().then_some(info)
}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f64(&mut self, v: f64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
    fn opt(&mut self, b: Option<&[u8]>) {
        match b {
            None => self.u8(0),
            Some(b) => {
                self.u8(1);
                self.bytes(b);
            }
        }
    }
    fn f64s(&mut self, v: &[f64]) {
        self.u32(v.len() as u32);
        v.iter().for_each(|&x| self.f64(x));
    }
    fn i32s(&mut self, v: &[i32]) {
        self.u32(v.len() as u32);
        v.iter().for_each(|&x| self.u32(x as u32));
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn f64(&mut self) -> Option<f64> {
        Some(f64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    /// An item count, bounded so that a damaged record cannot ask for huge vectors.
    fn count(&mut self) -> Option<u32> {
        self.u32().filter(|&n| n <= MAX_ITEMS)
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
    fn opt(&mut self) -> Option<Option<&'a [u8]>> {
        match self.u8()? {
            0 => Some(None),
            1 => Some(Some(self.bytes()?)),
            _ => None,
        }
    }
    fn f64s(&mut self) -> Option<Vec<f64>> {
        (0..self.count()?).map(|_| self.f64()).collect()
    }
    fn i32s(&mut self) -> Option<Vec<i32>> {
        (0..self.count()?)
            .map(|_| Some(self.u32()? as i32))
            .collect()
    }
}

/// An image known by its shared header: `info` answers at once, the file is opened
/// the first time a tile, view or layer set is asked for.
pub struct Deferred {
    info: ImageInfo,
    path: PathBuf,
    image: OnceLock<Arc<dyn Image>>,
}

impl Deferred {
    pub fn new(info: ImageInfo, path: PathBuf) -> Deferred {
        Deferred {
            info,
            path,
            image: OnceLock::new(),
        }
    }

    fn image(&self) -> Result<&Arc<dyn Image>, ImageError> {
        if let Some(image) = self.image.get() {
            return Ok(image);
        }
        let image = open(&self.path)?;
        // Replaced since its header was shared (within the mtime's resolution): serve
        // nothing from a grid that is no longer the file's.
        if image.info().levels != self.info.levels || image.info().channels != self.info.channels {
            return Err(DecodeError::Changed.into());
        }
        log::debug!("image opened for decoding: {}", self.path.display());
        Ok(self.image.get_or_init(|| image))
    }
}

impl Image for Deferred {
    fn info(&self) -> &ImageInfo {
        &self.info
    }
    fn encoded_tile(&self, k: u32, t: u32) -> Result<Option<EncodedTile>, ImageError> {
        self.image()?.encoded_tile(k, t)
    }
    fn decode_tile(&self, k: u32, t: u32) -> Result<Tile, ImageError> {
        self.image()?.decode_tile(k, t)
    }
    fn decode_tile_part(
        &self,
        k: u32,
        t: u32,
        part: (u32, u32, u32, u32),
    ) -> Result<(Tile, (u32, u32)), ImageError> {
        self.image()?.decode_tile_part(k, t, part)
    }
    fn view(&self, x: i32, y: i32) -> Option<Result<Arc<dyn Image>, ImageError>> {
        // Whether the image has views at all is in the header; which one is the file's.
        if self.info.pages.len() < 2 && self.info.horizontal_views.len() < 2 {
            return None;
        }
        match self.image() {
            Ok(image) => image.view(x, y),
            Err(e) => Some(Err(e)),
        }
    }
    fn with_layers(&self, l: i32) -> Option<Arc<dyn Image>> {
        if self.info.quality_layers == 0 {
            return None;
        }
        self.image().ok()?.with_layers(l)
    }
    fn decode_region(
        &self,
        k: u32,
        rect: (u32, u32, u32, u32),
    ) -> Option<Result<Tile, ImageError>> {
        match self.image() {
            Ok(image) => image.decode_region(k, rect),
            Err(e) => Some(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rich() -> ImageInfo {
        let levels = vec![
            Level {
                width: 60000,
                height: 40000,
                tile_width: 256,
                tile_height: 256,
                codec: StoredCodec::Jpeg,
            },
            Level {
                width: 30000,
                height: 20000,
                tile_width: 512,
                tile_height: 128,
                codec: StoredCodec::Other(34712),
            },
        ];
        let mut i = ImageInfo::plain(levels, 3, 16, ColourSpace::CieLab);
        i.sample_format = SampleFormat::Float;
        i.min = vec![-1.5, 0.0, 2.25];
        i.max = vec![1e9, 65535.0, f64::MAX];
        i.dpi_x = 300.0;
        i.dpi_y = 72.5;
        i.resolution_unit = ResolutionUnit::Centimetre;
        i.metadata.insert("title".into(), "Étude n° 3".into());
        i.metadata.insert("rights".into(), String::new());
        i.icc = Some((0..=255).collect());
        i.xmp = Some("<x:xmpmeta/>".into());
        i.exif = Some(vec![0x4d, 0x4d, 0, 42]);
        i.horizontal_views = vec![0, 10, -20];
        i.vertical_views = vec![90, 45];
        i.quality_layers = 7;
        i.pages = vec![("red".into(), 1.0), (String::new(), 0.25)];
        i
    }

    fn same(a: &ImageInfo, b: &ImageInfo) -> bool {
        // ImageInfo has no PartialEq (f64 fields); its Debug form shows every field.
        format!("{a:?}") == format!("{b:?}")
    }

    #[test]
    fn records_round_trip_every_field() {
        let info = rich();
        let back = decode(&encode(&info)).expect("decodes");
        assert!(same(&info, &back), "{info:?}\n{back:?}");
        let plain = ImageInfo::plain(
            vec![Level {
                width: 1,
                height: 1,
                tile_width: 1,
                tile_height: 1,
                codec: StoredCodec::None,
            }],
            1,
            8,
            ColourSpace::Greyscale,
        );
        assert!(same(&plain, &decode(&encode(&plain)).unwrap()));
    }

    #[test]
    fn damaged_or_foreign_records_are_misses() {
        let good = encode(&rich());
        // Every truncation, a trailing byte, another version, and flipped bytes: never
        // a panic; truncations and the other version are always refused.
        for n in 0..good.len() {
            assert!(decode(&good[..n]).is_none(), "truncated to {n}");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(decode(&longer).is_none());
        let mut other = good.clone();
        other[0] = VERSION + 1;
        assert!(decode(&other).is_none());
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0xFF;
            let _ = decode(&bad);
        }
        // A huge declared count is refused before anything is allocated for it.
        let mut huge = vec![VERSION];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge).is_none());
    }
}
