//! JPEG2000 (JP2 container) images from a memory map: the header (size, resolutions,
//! components, quality layers) is read here; tiles are 256×256 windows decoded by
//! OpenJPEG at a reduced resolution, with virtual levels below the smallest stored one.

use super::jp2box::{bad, be32, boxes};
use super::{
    Codec, ColourSpace, DecodeError, EncodedTile, Fault, Format, Image, ImageError, ImageInfo,
    Level, Part, Samples, StoredCodec, Tile, Unsupported,
};
use std::sync::Arc;

/// The JP2 signature box that starts every JP2/JPX file.
pub const SIGNATURE: [u8; 12] = [
    0, 0, 0, 0x0C, 0x6A, 0x50, 0x20, 0x20, 0x0D, 0x0A, 0x87, 0x0A,
];

fn be16(b: &[u8], at: usize) -> Result<u16, ImageError> {
    b.get(at..at + 2)
        .map(|s| u16::from_be_bytes([s[0], s[1]]))
        .ok_or_else(|| bad(Fault::Truncated(Part::Header)))
}

/// Finds the contiguous codestream box (`jp2c`) among the top-level boxes.
fn codestream(data: &[u8]) -> Result<&[u8], ImageError> {
    for item in boxes(data) {
        let (kind, body) = item?;
        if kind == b"jp2c" {
            return Ok(body);
        }
    }
    Err(bad(Fault::MissingMarker("codestream box")))
}

/// What the codestream's SIZ and COD markers say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub width: u32,
    pub height: u32,
    pub components: u16,
    pub bits: u8,
    pub signed: bool,
    pub resolutions: u32,
    pub layers: u32,
    /// Codestream tiles, each dimension as (image origin XOsiz, tile size XTsiz, tile
    /// origin XTOsiz) on the reference grid.
    pub tiles_x: (u32, u32, u32),
    pub tiles_y: (u32, u32, u32),
}

/// Largest image side accepted (as for TIFF): 2^31 − 1 pixels.
const MAX_SIDE: u32 = (1 << 31) - 1;
/// Most components accepted in one image (the standard allows 16 384).
const MAX_COMPONENTS: u16 = 256;

/// Parses the main header of a codestream (from SOC up to the first tile).
pub fn parse_codestream(cs: &[u8]) -> Result<Header, ImageError> {
    if cs.get(..2) != Some(&[0xFF, 0x4F][..]) {
        return Err(bad(Fault::NoSoc));
    }
    let mut at = 2usize;
    let mut size: Option<(u32, u32, u16, u8, bool)> = None;
    let mut grid = ((0, 0, 0), (0, 0, 0));
    let mut cod: Option<(u32, u32)> = None;
    // Bounded: every marker segment advances by its length (at least 2 + 2 bytes).
    while at + 4 <= cs.len() && (size.is_none() || cod.is_none()) {
        let marker = be16(cs, at)?;
        if marker == 0xFF90 || marker == 0xFF93 {
            break; // SOT/SOD: the main header is over
        }
        let len = be16(cs, at + 2)? as usize;
        if len < 2 || at + 2 + len > cs.len() {
            return Err(bad(Fault::Truncated(Part::Segment)));
        }
        let seg = &cs[at + 4..at + 2 + len];
        match marker {
            0xFF51 => {
                // Rsiz, Xsiz, Ysiz, XOsiz, YOsiz, XTsiz, YTsiz, XTOsiz, YTOsiz, Csiz, then Ssiz per component.
                let (x, y, xo, yo) = (be32(seg, 2)?, be32(seg, 6)?, be32(seg, 10)?, be32(seg, 14)?);
                let comps = be16(seg, 34)?;
                let ssiz = *seg
                    .get(36)
                    .ok_or_else(|| bad(Fault::Truncated(Part::Siz)))?;
                if x <= xo || y <= yo || comps == 0 {
                    return Err(bad(Fault::EmptyImage {
                        width: x.saturating_sub(xo) as u64,
                        height: y.saturating_sub(yo) as u64,
                        components: comps,
                    }));
                }
                let (w, h, bits) = (x - xo, y - yo, (ssiz & 0x7F) + 1);
                // Checked before any decoder sees the codestream: OpenJPEG allocates
                // from these numbers.
                if w > MAX_SIDE || h > MAX_SIDE {
                    return Err(bad(Fault::ImageTooLarge {
                        width: w as u64,
                        height: h as u64,
                        limit: MAX_SIDE as u64,
                    }));
                }
                if comps > MAX_COMPONENTS {
                    return Err(bad(Fault::TooMany {
                        field: "components",
                        value: comps as u64,
                        limit: MAX_COMPONENTS as u64,
                    }));
                }
                if bits > 32 {
                    return Err(bad(Fault::BadValue {
                        field: "bits per sample",
                        value: bits as u64,
                    }));
                }
                size = Some((w, h, comps, bits, ssiz & 0x80 != 0));
                let (xt, yt, xto, yto) = (
                    be32(seg, 18)?,
                    be32(seg, 22)?,
                    be32(seg, 26)?,
                    be32(seg, 30)?,
                );
                if xt == 0 || yt == 0 || xto > xo || yto > yo {
                    return Err(bad(Fault::TileGrid {
                        width: xt,
                        height: yt,
                        x: xto,
                        y: yto,
                    }));
                }
                grid = ((xo, xt, xto), (yo, yt, yto));
            }
            0xFF52 => {
                let layers = be16(seg, 2)? as u32;
                let levels = *seg.get(5).ok_or_else(|| bad(Fault::Truncated(Part::Cod)))? as u32;
                if levels > 32 {
                    return Err(bad(Fault::BadValue {
                        field: "decomposition levels",
                        value: levels as u64,
                    }));
                }
                cod = Some((levels + 1, layers));
            }
            _ => {}
        }
        at += 2 + len;
    }
    let (width, height, components, bits, signed) =
        size.ok_or_else(|| bad(Fault::MissingMarker("SIZ marker")))?;
    let (resolutions, layers) = cod.ok_or_else(|| bad(Fault::MissingMarker("COD marker")))?;
    Ok(Header {
        width,
        height,
        components,
        bits,
        signed,
        resolutions,
        layers,
        tiles_x: grid.0,
        tiles_y: grid.1,
    })
}

/// Tiles per side of a block (see [`Image::tile_block`]): at most 1 024 × 1 024 pixels
/// are decoded for one tile.
const BLOCK: u32 = 4;

/// The columns (or rows) of a level's 256-pixel tiles that lie wholly in the codestream
/// tile holding column `c`, within `c`'s aligned group of [`BLOCK`]: `(first, count)`.
/// `n` columns, `s` reference-grid samples per level pixel, `extent` the image's width,
/// `(origin, size, offset)` the codestream tiles' layout. `None` when `c` itself spans
/// two codestream tiles.
fn block_span(
    c: u32,
    n: u32,
    s: u64,
    extent: u32,
    (origin, size, offset): (u32, u32, u32),
) -> Option<(u32, u32)> {
    if size == 0 || offset > origin || c >= n {
        return None;
    }
    // Reference-grid position of column i's first sample (the image end for i = n).
    let start = |i: u32| origin as u64 + (i as u64 * 256 * s).min(extent as u64);
    let tile_of = |x: u64| (x - offset as u64) / size as u64;
    let p = tile_of(start(c));
    let inside = |i: u32| tile_of(start(i)) == p && tile_of(start(i + 1) - 1) == p;
    if !inside(c) {
        return None;
    }
    let g0 = c / BLOCK * BLOCK;
    let g1 = (g0 + BLOCK).min(n);
    let first = (g0..=c).find(|&i| inside(i)).unwrap_or(c);
    let last = (c..g1).take_while(|&i| inside(i)).last().unwrap_or(c);
    Some((first, last - first + 1))
}

/// Levels as iipsrv exposes them: codestream resolutions `ceil(W/2^k)` down to the first
/// that fits one 256×256 tile, then virtual halvings while the smallest is larger.
pub fn levels(h: &Header) -> Vec<Level> {
    let mut out = Vec::new();
    let mut k = 0u32;
    loop {
        let (w, ht) = (
            h.width.div_ceil(1 << k.min(31)),
            h.height.div_ceil(1 << k.min(31)),
        );
        out.push(Level {
            width: w,
            height: ht,
            tile_width: 256,
            tile_height: 256,
            codec: StoredCodec::Other(34712),
        });
        if (w <= 256 && ht <= 256) || k >= 31 {
            break;
        }
        k += 1;
    }
    out
}

/// An opened JP2 file.
pub struct Jp2Image {
    map: Arc<crate::image::guard::Map>,
    info: Arc<ImageInfo>,
    resolutions: u32,
    /// Quality layers decoded (0: all).
    layers: u32,
    /// Codestream tile layout, as [`Header`] has it.
    tiles_x: (u32, u32, u32),
    tiles_y: (u32, u32, u32),
}

/// Layers to decode for a view value `l` (docs/sources.md §4): `l < 0` all, `0` half of the
/// codestream's `total` rounded up, otherwise `l`; at least 1, at most `total`.
pub fn layers_to_decode(l: i32, total: u32) -> u32 {
    let total = total.max(1);
    match l {
        l if l < 0 => total,
        0 => total.div_ceil(2),
        l => (l as u32).min(total),
    }
    .max(1)
}

impl Jp2Image {
    pub fn parse(map: crate::image::guard::Map) -> Result<Jp2Image, ImageError> {
        let h = parse_codestream(codestream(&map)?)?;
        if h.bits > 16 {
            return Err(Unsupported::Bits {
                format: Format::Jpeg2000,
                bits: h.bits,
            }
            .into());
        }
        let channels = h.components;
        let colour = match (channels, h.bits) {
            (1, 1) => ColourSpace::Bilevel,
            (1, _) => ColourSpace::Greyscale,
            (3, _) => ColourSpace::Srgb,
            _ => ColourSpace::None,
        };
        let mut info = ImageInfo::plain(levels(&h), channels, h.bits as u16, colour);
        info.quality_layers = h.layers;
        super::meta::from_jp2(&map, &mut info);
        Ok(Jp2Image {
            map: Arc::new(map),
            layers: layers_to_decode(0, h.layers),
            info: Arc::new(info),
            resolutions: h.resolutions,
            tiles_x: h.tiles_x,
            tiles_y: h.tiles_y,
        })
    }
}

impl Image for Jp2Image {
    fn info(&self) -> &ImageInfo {
        &self.info
    }
    fn encoded_tile(&self, _k: u32, _t: u32) -> Result<Option<EncodedTile>, ImageError> {
        Ok(None)
    }

    fn with_layers(&self, l: i32) -> Option<Arc<dyn Image>> {
        let layers = layers_to_decode(l, self.info.quality_layers);
        (layers != self.layers).then(|| {
            Arc::new(Jp2Image {
                map: Arc::clone(&self.map),
                info: Arc::clone(&self.info),
                resolutions: self.resolutions,
                tiles_x: self.tiles_x,
                tiles_y: self.tiles_y,
                layers,
            }) as Arc<dyn Image>
        })
    }
    fn tile_block(&self, k: u32, t: u32) -> Option<(u32, u32, u32, u32)> {
        // Virtual levels decode the smallest stored one whole: nothing to share.
        if k >= self.resolutions {
            return None;
        }
        let level = self.info.levels.get(k as usize)?;
        let (cols, rows) = (level.columns(), level.rows());
        let s = 1u64 << k;
        let (c0, nc) = block_span(t % cols, cols, s, self.info.width(), self.tiles_x)?;
        let (r0, nr) = block_span(t / cols, rows, s, self.info.height(), self.tiles_y)?;
        (nc * nr > 1).then_some((c0, r0, nc, nr))
    }

    fn decode_tile(&self, k: u32, t: u32) -> Result<Tile, ImageError> {
        let level = self
            .info
            .levels
            .get(k as usize)
            .ok_or(ImageError::NoSuchLevel(k))?;
        let (tw, th) = level.tile_size(t).ok_or(ImageError::NoSuchTile(t))?;
        let (col, row) = (t % level.columns(), t / level.columns());
        self.window(k, (col * 256, row * 256, tw, th))
    }

    fn band_rows(&self, k: u32) -> u32 {
        // A band as tall as a codestream tile decodes every tile once, whole; partial
        // windows would decode the low resolutions of a tile once per band.
        let (_, size, _) = self.tiles_y;
        if k >= self.resolutions || size == 0 {
            return 256;
        }
        let rows = size.div_ceil(1 << k);
        let level = &self.info.levels[k as usize];
        let bytes = rows as u64 * level.width as u64 * self.info.channels as u64 * 2;
        if rows >= level.height || bytes > 64 << 20 {
            256
        } else {
            rows
        }
    }

    fn decode_region(
        &self,
        k: u32,
        rect: (u32, u32, u32, u32),
    ) -> Option<Result<Tile, ImageError>> {
        Some(self.region(k, rect))
    }
}

impl Jp2Image {
    /// Decodes the rectangle `(left, top, w, h)` of level `k` one codestream tile
    /// column at a time: the decoder then holds one column of tiles in its 32-bit
    /// planes, not the whole width of the rectangle.
    fn region(&self, k: u32, (left, top, w, h): (u32, u32, u32, u32)) -> Result<Tile, ImageError> {
        let (origin, size, offset) = self.tiles_x;
        if k >= self.resolutions || size == 0 || w == 0 || offset > origin {
            return self.window(k, (left, top, w, h));
        }
        let s = 1u64 << k;
        // Level column where codestream tile column `i` starts.
        let start = |i: u64| {
            ((offset as u64 + i * size as u64).max(origin as u64) - origin as u64).div_ceil(s)
        };
        let tile_of = |x: u32| (x as u64 * s + origin as u64 - offset as u64) / size as u64;
        let (first, last) = (tile_of(left), tile_of(left + w - 1));
        if first == last {
            return self.window(k, (left, top, w, h));
        }
        let mut out: Option<Tile> = None;
        for i in first..=last {
            let x0 = (start(i) as u32).max(left);
            let x1 = (start(i + 1) as u32).min(left + w);
            if x1 <= x0 {
                continue;
            }
            let part = self.window(k, (x0, top, x1 - x0, h))?;
            if out.is_none() {
                out = Some(
                    super::blit::blank_like(&part, w, h)
                        .ok_or(ImageError::OutOfMemory(w as usize * h as usize))?,
                );
            }
            let dst = out.as_mut().expect("set just above");
            if !super::blit::blit_tile(dst, (x0 - left, 0), &part, (0, 0, x1 - x0, h)) {
                return Err(DecodeError::CodestreamTiles.into());
            }
        }
        out.ok_or(ImageError::Decode(DecodeError::EmptyRegion))
    }

    /// Decodes the rectangle `(left, top, w, h)` of level `k`.
    fn window(
        &self,
        k: u32,
        (left, top, tw, th): (u32, u32, u32, u32),
    ) -> Result<Tile, ImageError> {
        if k as usize >= self.info.levels.len() || tw == 0 || th == 0 {
            return Err(ImageError::NoSuchLevel(k));
        }
        // Stored levels decode at `reduce = k`; virtual ones decode the smallest stored
        // level and keep every step-th pixel (powers of two, docs/sources.md §4).
        let reduce = k.min(self.resolutions.saturating_sub(1));
        let step = 1usize << (k - reduce).min(30);
        let scale = 1u64 << k.min(40);
        let clip = |v: u64, full: u32| v.min(full as u64) as u32;
        let window = (
            clip(left as u64 * scale, self.info.width()),
            clip(top as u64 * scale, self.info.height()),
            clip((left as u64 + tw as u64) * scale, self.info.width()),
            clip((top as u64 + th as u64) * scale, self.info.height()),
        );
        let (c, data) = super::openjpeg::decode(&self.map, reduce, self.layers, window, |d| {
            (
                d.planes.len(),
                interleave(d, tw as usize, th as usize, step),
            )
        })
        .map_err(|e| DecodeError::codec(Codec::OpenJpeg, e))?;
        Ok(Tile {
            width: tw,
            height: th,
            channels: c as u16,
            data,
        })
    }
}

/// Samples of a `w`×`h` tile taken from the decoded planes at every `step`-th pixel
/// (clamped to what the decoder returned), interleaved, scaled to 8 or 16 bits.
fn interleave(d: &super::openjpeg::Planes, w: usize, h: usize, step: usize) -> Samples {
    let bits = d.precision.clamp(1, 16);
    let mask = (1i32 << bits) - 1;
    match bits {
        // The common case, kept free of the per-sample depth match.
        8 => Samples::U8(gather(d, w, h, step, |v| v.clamp(0, 255) as u8)),
        1..=7 => Samples::U8(gather(d, w, h, step, |v| {
            let v = v.clamp(0, mask);
            match bits {
                1 => (v * 255) as u8,
                2 => (v * 85) as u8,
                4 => (v * 17) as u8,
                6 => ((v << 2) | (v >> 4)) as u8,
                _ => ((v * 255) / mask.max(1)).min(255) as u8,
            }
        })),
        _ => Samples::U16(gather(d, w, h, step, |v| {
            let v = v.clamp(0, mask) as u32;
            let v = if bits < 16 {
                (v << (16 - bits)) | (v >> (2 * bits - 16))
            } else {
                v
            };
            v as u16
        })),
    }
}

/// The interleaving loop of [`interleave`], with each sample passed through `conv`.
fn gather<T: Copy + Default>(
    d: &super::openjpeg::Planes,
    w: usize,
    h: usize,
    step: usize,
    conv: impl Fn(i32) -> T,
) -> Vec<T> {
    let c = d.planes.len();
    // Source column of each output column, computed once per tile.
    let cols: Vec<usize> = (0..w).map(|x| (x * step).min(d.width - 1)).collect();
    let direct = step == 1 && w <= d.width;
    let mut out = vec![T::default(); w * h * c];
    for (y, row) in out.chunks_exact_mut(w * c).enumerate() {
        let sy = (y * step).min(d.height - 1);
        for (ch, &(plane, offset)) in d.planes.iter().enumerate() {
            let src = &plane[sy * d.width..(sy + 1) * d.width];
            if direct {
                for (px, &v) in row.chunks_exact_mut(c).zip(&src[..w]) {
                    px[ch] = conv(v + offset);
                }
            } else {
                for (px, &sx) in row.chunks_exact_mut(c).zip(&cols) {
                    px[ch] = conv(src[sx] + offset);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_the_tiles_within_one_codestream_tile() {
        // 2000 wide, codestream tiles of 1024 from 0: at full size (s = 1) columns 0-3
        // and 4-7 (the last ends at the image's edge); at half size (s = 2) the
        // codestream tiles are 512 level pixels wide: columns 0-1, then 2-3.
        let grid = (0, 1024, 0);
        assert_eq!(block_span(1, 8, 1, 2000, grid), Some((0, 4)));
        assert_eq!(block_span(6, 8, 1, 2000, grid), Some((4, 4)));
        assert_eq!(block_span(3, 4, 2, 2000, grid), Some((2, 2)));
        assert_eq!(block_span(0, 4, 2, 2000, grid), Some((0, 2)));
        // Codestream tiles of 256 level pixels hold one tile: a block of one.
        assert_eq!(block_span(1, 4, 2, 2000, (0, 512, 0)), Some((1, 1)));
        // Codestream tiles larger than a block: the aligned group of four.
        assert_eq!(block_span(5, 8, 1, 2000, (0, 4096, 0)), Some((4, 4)));
        assert_eq!(block_span(9, 12, 1, 3000, (0, 4096, 0)), Some((8, 4)));
        // Offsets: the image starts at 100 on the reference grid, tiles at 0 every
        // 612: column 0 covers 100-355 (tile 0), column 1 356-611 (tile 0), column 2
        // 612-867 (tile 1).
        assert_eq!(block_span(0, 8, 1, 2000, (100, 612, 0)), Some((0, 2)));
        assert_eq!(block_span(2, 8, 1, 2000, (100, 612, 0)), Some((2, 2)));
        // A column across two codestream tiles, and layouts the standard forbids.
        assert_eq!(block_span(1, 8, 1, 2000, (0, 300, 0)), None);
        assert_eq!(block_span(0, 8, 1, 2000, (0, 0, 0)), None);
        assert_eq!(block_span(0, 8, 1, 2000, (0, 1024, 10)), None);
        assert_eq!(block_span(8, 8, 1, 2000, grid), None);
    }

    fn planes<'a>(
        w: usize,
        h: usize,
        prec: u32,
        p: &[(&'a [i32], i32)],
    ) -> super::super::openjpeg::Planes<'a> {
        super::super::openjpeg::Planes {
            width: w,
            height: h,
            precision: prec,
            planes: p.to_vec(),
        }
    }

    #[test]
    fn planes_are_interleaved_clamped_and_scaled() {
        // 3×2 planes, two components; the second is signed (offset 128).
        let a = [0, 10, 300, -5, 255, 7];
        let b = [-128, 0, 127, -200, 1, 2];
        let d = planes(3, 2, 8, &[(&a, 0), (&b, 128)]);
        assert_eq!(
            interleave(&d, 3, 2, 1),
            Samples::U8(vec![0, 0, 10, 128, 255, 255, 0, 0, 255, 129, 7, 130])
        );
        // Every second pixel, and a tile larger than what was decoded repeats the edge.
        assert_eq!(
            interleave(&d, 3, 2, 2),
            Samples::U8(vec![0, 0, 255, 255, 255, 255, 0, 0, 7, 130, 7, 130])
        );
        // 4-bit samples expand by 17; 12-bit ones widen to 16 bits by bit replication.
        let g = [0, 1, 15, 16];
        assert_eq!(
            interleave(&planes(4, 1, 4, &[(&g, 0)]), 4, 1, 1),
            Samples::U8(vec![0, 17, 255, 255])
        );
        let t = [0, 0x800, 0xFFF, 0x1000];
        assert_eq!(
            interleave(&planes(4, 1, 12, &[(&t, 0)]), 4, 1, 1),
            Samples::U16(vec![0, 0x8008, 0xFFFF, 0xFFFF])
        );
    }

    fn codestream_bytes(w: u32, h: u32, comps: u16, levels: u8, layers: u16) -> Vec<u8> {
        let mut v = vec![0xFF, 0x4F, 0xFF, 0x51];
        let mut siz = Vec::new();
        siz.extend(0u16.to_be_bytes());
        for x in [w, h, 0, 0, 1024, 1024, 0, 0] {
            siz.extend(x.to_be_bytes());
        }
        siz.extend(comps.to_be_bytes());
        for _ in 0..comps {
            siz.extend([7, 1, 1]);
        }
        v.extend(((siz.len() + 2) as u16).to_be_bytes());
        v.extend(siz);
        v.extend([0xFF, 0x52, 0, 12, 0, 0]);
        v.extend(layers.to_be_bytes());
        v.extend([0, levels, 4, 4, 0, 0]);
        v.extend([0xFF, 0x90, 0, 10]);
        v
    }

    #[test]
    fn header_and_levels() {
        let h = parse_codestream(&codestream_bytes(8000, 6000, 3, 6, 3)).unwrap();
        assert_eq!(
            (
                h.width,
                h.height,
                h.components,
                h.bits,
                h.resolutions,
                h.layers
            ),
            (8000, 6000, 3, 8, 7, 3)
        );
        let sizes: Vec<(u32, u32)> = levels(&h).iter().map(|l| (l.width, l.height)).collect();
        assert_eq!(
            sizes,
            [
                (8000, 6000),
                (4000, 3000),
                (2000, 1500),
                (1000, 750),
                (500, 375),
                (250, 188)
            ]
        );
        let h = parse_codestream(&codestream_bytes(1001, 777, 3, 2, 1)).unwrap();
        let sizes: Vec<(u32, u32)> = levels(&h).iter().map(|l| (l.width, l.height)).collect();
        assert_eq!(sizes, [(1001, 777), (501, 389), (251, 195)]);
    }

    #[test]
    fn boxes_and_truncation() {
        let cs = codestream_bytes(600, 400, 1, 3, 1);
        let mut file = SIGNATURE.to_vec();
        file.extend(20u32.to_be_bytes());
        file.extend(b"ftypjp2 \0\0\0\0jp2 ");
        file.extend(((cs.len() + 8) as u32).to_be_bytes());
        file.extend(b"jp2c");
        file.extend(&cs);
        assert_eq!(codestream(&file).unwrap(), &cs[..]);
        for cut in 0..file.len() {
            let _ = codestream(&file[..cut]).and_then(parse_codestream);
        }
        assert!(parse_codestream(&cs[..20]).is_err());
        let mut huge = file.clone();
        huge[12..16].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(codestream(&huge).is_err());
    }

    #[test]
    fn siz_beyond_the_limits_is_refused() {
        let refused = |cs: Vec<u8>| match parse_codestream(&cs) {
            Err(e) => e.to_string(),
            Ok(h) => panic!("accepted {}x{}", h.width, h.height),
        };
        assert!(refused(codestream_bytes(1 << 31, 1 << 31, 3, 5, 1)).contains("larger than"));
        assert!(refused(codestream_bytes(1000, 1000, 300, 5, 1)).contains("components"));
        let mut cs = codestream_bytes(1000, 1000, 1, 5, 1);
        cs[6 + 36] = 0x7F; // Ssiz of the first component: 128 bits
        assert!(refused(cs).contains("bits"));
        let mut cs = codestream_bytes(1000, 1000, 1, 5, 1);
        cs[6 + 18..6 + 22].copy_from_slice(&0u32.to_be_bytes()); // XTsiz = 0
        assert!(refused(cs).contains("tiles"));
        assert!(parse_codestream(&codestream_bytes((1 << 31) - 1, 1000, 3, 5, 1)).is_ok());
    }
}
