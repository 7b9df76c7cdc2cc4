//! Tests over TIFFs written here: classic and BigTIFF, both byte orders, chained
//! and SubIFD pyramids, every codec, and hostile files.

use super::*;
use crate::image::{ColourSpace, ResolutionUnit, Unsupported};

#[derive(Clone)]
enum Val {
    Short(Vec<u16>),
    Long(Vec<u32>),
    Long8(Vec<u64>),
    Ascii(&'static str),
    Undef(Vec<u8>),
    Rational(u32, u32),
}

struct Builder {
    le: bool,
    big: bool,
    buf: Vec<u8>,
}

impl Builder {
    fn new(le: bool, big: bool) -> Builder {
        let mut buf = Vec::new();
        buf.extend_from_slice(if le { b"II" } else { b"MM" });
        let mut b = Builder {
            le,
            big,
            buf: Vec::new(),
        };
        if big {
            buf.extend(b.u16b(43));
            buf.extend(b.u16b(8));
            buf.extend(b.u16b(0));
            buf.extend([0; 8]);
        } else {
            buf.extend(b.u16b(42));
            buf.extend([0; 4]);
        }
        b.buf = buf;
        b
    }
    fn u16b(&self, v: u16) -> Vec<u8> {
        if self.le {
            v.to_le_bytes().to_vec()
        } else {
            v.to_be_bytes().to_vec()
        }
    }
    fn u32b(&self, v: u32) -> Vec<u8> {
        if self.le {
            v.to_le_bytes().to_vec()
        } else {
            v.to_be_bytes().to_vec()
        }
    }
    fn u64b(&self, v: u64) -> Vec<u8> {
        if self.le {
            v.to_le_bytes().to_vec()
        } else {
            v.to_be_bytes().to_vec()
        }
    }
    fn blob(&mut self, bytes: &[u8]) -> u64 {
        if self.buf.len() % 2 == 1 {
            self.buf.push(0);
        }
        let at = self.buf.len() as u64;
        self.buf.extend_from_slice(bytes);
        at
    }
    fn encode(&self, v: &Val) -> (u16, u64, Vec<u8>) {
        match v {
            Val::Short(x) => (
                3,
                x.len() as u64,
                x.iter().flat_map(|&v| self.u16b(v)).collect(),
            ),
            Val::Long(x) => (
                4,
                x.len() as u64,
                x.iter().flat_map(|&v| self.u32b(v)).collect(),
            ),
            Val::Long8(x) => (
                16,
                x.len() as u64,
                x.iter().flat_map(|&v| self.u64b(v)).collect(),
            ),
            Val::Ascii(s) => {
                let mut b = s.as_bytes().to_vec();
                b.push(0);
                (2, b.len() as u64, b)
            }
            Val::Undef(b) => (7, b.len() as u64, b.clone()),
            Val::Rational(n, d) => (5, 1, [self.u32b(*n), self.u32b(*d)].concat()),
        }
    }
    fn ifd(&mut self, tags: &[(u16, Val)], next: u64) -> u64 {
        let mut tags = tags.to_vec();
        tags.sort_by_key(|t| t.0);
        let inline = if self.big { 8 } else { 4 };
        let mut entries = Vec::new();
        for (tag, v) in &tags {
            let (kind, count, bytes) = self.encode(v);
            let field = if bytes.len() <= inline {
                let mut f = bytes.clone();
                f.resize(inline, 0);
                f
            } else {
                let at = self.blob(&bytes);
                if self.big {
                    self.u64b(at)
                } else {
                    self.u32b(at as u32)
                }
            };
            entries.push((*tag, kind, count, field));
        }
        if self.buf.len() % 2 == 1 {
            self.buf.push(0);
        }
        let at = self.buf.len() as u64;
        let mut out = Vec::new();
        if self.big {
            out.extend(self.u64b(entries.len() as u64));
        } else {
            out.extend(self.u16b(entries.len() as u16));
        }
        for (tag, kind, count, field) in entries {
            out.extend(self.u16b(tag));
            out.extend(self.u16b(kind));
            if self.big {
                out.extend(self.u64b(count));
            } else {
                out.extend(self.u32b(count as u32));
            }
            out.extend(field);
        }
        if self.big {
            out.extend(self.u64b(next));
        } else {
            out.extend(self.u32b(next as u32));
        }
        self.buf.extend(out);
        at
    }
    fn finish(mut self, first: u64) -> Vec<u8> {
        if self.big {
            let b = self.u64b(first);
            self.buf[8..16].copy_from_slice(&b);
        } else {
            let b = self.u32b(first as u32);
            self.buf[4..8].copy_from_slice(&b);
        }
        self.buf
    }
}

/// Sample value of pixel (x, y), channel c at a level: a pattern every test can recompute.
fn sample(x: u32, y: u32, c: u32, level: u32) -> u32 {
    (x * 3 + y * 5 + c * 70 + level * 11) % 251
}

struct Spec {
    width: u32,
    height: u32,
    tile: u32,
    channels: u32,
    bits: u32,
    compression: u16,
    predictor: u16,
}

/// Writes the tiles of one level and returns its tags.
fn level(b: &mut Builder, s: &Spec, lvl: u32, extra: &[(u16, Val)]) -> Vec<(u16, Val)> {
    let (cols, rows) = (s.width.div_ceil(s.tile), s.height.div_ceil(s.tile));
    let mut offsets = Vec::new();
    let mut counts = Vec::new();
    for t in 0..cols * rows {
        let (cx, cy) = (t % cols * s.tile, t / cols * s.tile);
        let mut vals: Vec<u32> = Vec::new();
        for y in 0..s.tile {
            for x in 0..s.tile {
                for c in 0..s.channels {
                    let v = sample(cx + x, cy + y, c, lvl);
                    vals.push(if s.bits == 16 { v * 257 } else { v });
                }
            }
        }
        if s.predictor == 2 {
            let row = (s.tile * s.channels) as usize;
            let m = if s.bits == 16 { 65536 } else { 256 };
            for line in vals.chunks_mut(row) {
                for i in (s.channels as usize..row).rev() {
                    line[i] = (line[i] + m - line[i - s.channels as usize]) % m;
                }
            }
        }
        let raw: Vec<u8> = if s.bits == 16 {
            vals.iter().flat_map(|&v| b.u16b(v as u16)).collect()
        } else {
            vals.iter().map(|&v| v as u8).collect()
        };
        let stored = match s.compression {
            1 => raw,
            8 => {
                let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::default());
                let mut z = vec![0u8; c.zlib_compress_bound(raw.len())];
                let n = c.zlib_compress(&raw, &mut z).unwrap();
                z.truncate(n);
                z
            }
            5 => weezl::encode::Encoder::with_tiff_size_switch(weezl::BitOrder::Msb, 8)
                .encode(&raw)
                .unwrap(),
            50000 => zstd::bulk::compress(&raw, 3).unwrap(),
            _ => unreachable!(),
        };
        let off = b.blob(&stored);
        offsets.push(off);
        counts.push(stored.len() as u64);
    }
    let mut tags = vec![
        (256, Val::Long(vec![s.width])),
        (257, Val::Long(vec![s.height])),
        (258, Val::Short(vec![s.bits as u16; s.channels as usize])),
        (259, Val::Short(vec![s.compression])),
        (262, Val::Short(vec![if s.channels == 3 { 2 } else { 1 }])),
        (277, Val::Short(vec![s.channels as u16])),
        (317, Val::Short(vec![s.predictor])),
        (322, Val::Short(vec![s.tile as u16])),
        (323, Val::Short(vec![s.tile as u16])),
    ];
    if b.big {
        tags.push((324, Val::Long8(offsets)));
        tags.push((325, Val::Long8(counts)));
    } else {
        tags.push((324, Val::Long(offsets.iter().map(|&v| v as u32).collect())));
        tags.push((325, Val::Long(counts.iter().map(|&v| v as u32).collect())));
    }
    tags.extend(extra.iter().cloned());
    tags
}

fn open(bytes: &[u8]) -> Result<TiffImage, ImageError> {
    let mut f = tempfile();
    std::io::Write::write_all(&mut f.1, bytes).unwrap();
    let file = std::fs::File::open(&f.0).unwrap();
    let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
    let _ = std::fs::remove_file(&f.0);
    TiffImage::parse(map.into())
}

fn tempfile() -> (std::path::PathBuf, std::fs::File) {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let p = std::env::temp_dir().join(format!(
        "tessera-tiff-{}-{}.tif",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let f = std::fs::File::create(&p).unwrap();
    (p, f)
}

fn check_tile(img: &TiffImage, k: u32, t: u32, s: &Spec) {
    let l = &img.info().levels[k as usize];
    let tile = img.decode_tile(k, t).unwrap();
    let (w, h) = l.tile_size(t).unwrap();
    assert_eq!((tile.width, tile.height), (w, h));
    let (cx, cy) = (
        t % l.columns() * l.tile_width,
        t / l.columns() * l.tile_height,
    );
    for (y, x, c) in [(0, 0, 0), (h - 1, w - 1, s.channels - 1), (h / 2, w / 3, 0)] {
        let i = ((y * w + x) * s.channels + c) as usize;
        let want = sample(cx + x, cy + y, c, k);
        match &tile.data {
            Samples::U8(v) => assert_eq!(v[i] as u32, want, "k{k} t{t} ({x},{y},{c})"),
            Samples::U16(v) => assert_eq!(v[i] as u32, want * 257, "k{k} t{t} ({x},{y},{c})"),
            _ => panic!("unexpected depth"),
        }
    }
}

#[test]
fn chained_pyramids_in_every_layout_and_codec() {
    for (le, big) in [(true, false), (false, false), (true, true), (false, true)] {
        for (compression, predictor, bits, channels) in [
            (1, 1, 8, 3),
            (8, 2, 8, 3),
            (5, 2, 8, 1),
            (50000, 1, 16, 1),
            (8, 2, 16, 3),
            (5, 1, 16, 3),
        ] {
            let mut b = Builder::new(le, big);
            let s0 = Spec {
                width: 40,
                height: 20,
                tile: 16,
                channels,
                bits,
                compression,
                predictor,
            };
            let s1 = Spec {
                width: 20,
                height: 10,
                ..s0
            };
            let t1 = level(&mut b, &s1, 1, &[]);
            let i1 = b.ifd(&t1, 0);
            // An untiled thumbnail between levels is skipped.
            let thumb = b.ifd(&[(256, Val::Long(vec![4])), (257, Val::Long(vec![4]))], i1);
            let t0 = level(
                &mut b,
                &s0,
                0,
                &[(315, Val::Ascii("Jane")), (33432, Val::Ascii("CC0"))],
            );
            let i0 = b.ifd(&t0, thumb);
            let img = open(&b.finish(i0)).unwrap_or_else(|e| panic!("le {le} big {big}: {e}"));
            let info = img.info();
            assert_eq!(info.levels.len(), 2);
            assert_eq!((info.width(), info.height()), (40, 20));
            assert_eq!((info.levels[1].width, info.levels[1].height), (20, 10));
            assert_eq!(info.channels as u32, channels);
            assert_eq!(info.bits_per_sample as u32, bits);
            assert_eq!(info.metadata["creator"], "Jane");
            assert_eq!(info.metadata["rights"], "CC0");
            assert_eq!(info.max[0], if bits == 16 { 65535.0 } else { 255.0 });
            for t in 0..6 {
                check_tile(&img, 0, t, &s0);
            }
            check_tile(&img, 1, 1, &s1);
            assert!(matches!(
                img.decode_tile(0, 6),
                Err(ImageError::NoSuchTile(6))
            ));
            assert!(matches!(
                img.decode_tile(2, 0),
                Err(ImageError::NoSuchLevel(2))
            ));
            assert!(img.encoded_tile(0, 0).unwrap().is_none());
        }
    }
}

#[test]
fn subifd_pyramid() {
    let mut b = Builder::new(true, false);
    let s0 = Spec {
        width: 64,
        height: 48,
        tile: 16,
        channels: 3,
        bits: 8,
        compression: 8,
        predictor: 2,
    };
    let s1 = Spec {
        width: 32,
        height: 24,
        ..s0
    };
    let s2 = Spec {
        width: 16,
        height: 12,
        ..s0
    };
    let t1 = level(&mut b, &s1, 1, &[(254, Val::Long(vec![1]))]);
    let i1 = b.ifd(&t1, 0);
    let t2 = level(&mut b, &s2, 2, &[(254, Val::Long(vec![1]))]);
    let i2 = b.ifd(&t2, 0);
    let t0 = level(
        &mut b,
        &s0,
        0,
        &[(330, Val::Long(vec![i1 as u32, i2 as u32]))],
    );
    let i0 = b.ifd(&t0, 0);
    let img = open(&b.finish(i0)).unwrap();
    let sizes: Vec<(u32, u32)> = img
        .info()
        .levels
        .iter()
        .map(|l| (l.width, l.height))
        .collect();
    assert_eq!(sizes, [(64, 48), (32, 24), (16, 12)]);
    check_tile(&img, 2, 0, &s2);
    check_tile(&img, 1, 3, &s1);
}

/// Splits a complete JPEG into JPEGTables (SOI, DQT, DHT, EOI) and an abbreviated tile.
fn split_jpeg(j: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let mut tables = vec![0xFF, 0xD8];
    let mut tile = vec![0xFF, 0xD8];
    let mut i = 2;
    loop {
        let marker = j[i + 1];
        let len = u16::from_be_bytes([j[i + 2], j[i + 3]]) as usize;
        let seg = &j[i..i + 2 + len];
        if marker == 0xDA {
            tile.extend_from_slice(&j[i..]);
            break;
        }
        if marker == 0xDB || marker == 0xC4 {
            tables.extend_from_slice(seg);
        } else if marker != 0xE0 {
            tile.extend_from_slice(seg);
        }
        i += 2 + len;
    }
    tables.extend_from_slice(&[0xFF, 0xD9]);
    (tables, tile)
}

#[test]
fn jpeg_tiles_with_tables_decode_and_pass_through() {
    let px: Vec<u8> = (0..32 * 32)
        .flat_map(|i| [(i % 32 * 4) as u8, (i / 32 * 4) as u8, 128])
        .collect();
    let img = turbojpeg::Image {
        pixels: &px[..],
        width: 32,
        pitch: 96,
        height: 32,
        format: turbojpeg::PixelFormat::RGB,
    };
    let full = turbojpeg::compress(img, 90, turbojpeg::Subsamp::Sub2x2)
        .unwrap()
        .to_vec();
    let (tables, tile) = split_jpeg(&full);
    let mut b = Builder::new(true, false);
    let mut offsets = Vec::new();
    let mut counts = Vec::new();
    for _ in 0..4 {
        offsets.push(b.blob(&tile) as u32);
        counts.push(tile.len() as u32);
    }
    let tags = vec![
        (256, Val::Long(vec![40])),
        (257, Val::Long(vec![40])),
        (258, Val::Short(vec![8, 8, 8])),
        (259, Val::Short(vec![7])),
        (262, Val::Short(vec![6])),
        (277, Val::Short(vec![3])),
        (322, Val::Short(vec![32])),
        (323, Val::Short(vec![32])),
        (324, Val::Long(offsets)),
        (325, Val::Long(counts)),
        (347, Val::Undef(tables.clone())),
        (282, Val::Rational(2834, 100)),
        (296, Val::Short(vec![3])),
    ];
    let i0 = b.ifd(&tags, 0);
    let img = open(&b.finish(i0)).unwrap();
    assert_eq!(img.info().resolution_unit, ResolutionUnit::Centimetre);
    assert!((img.info().dpi_x - 28.34).abs() < 1e-9);
    let enc = img
        .encoded_tile(0, 0)
        .unwrap()
        .expect("complete JPEG tile passes through");
    let mut expected = tables[..tables.len() - 2].to_vec();
    expected.extend_from_slice(&tile[2..]);
    assert_eq!(enc.bytes, expected);
    let back = turbojpeg::decompress(&enc.bytes, turbojpeg::PixelFormat::RGB).unwrap();
    assert_eq!((back.width, back.height), (32, 32));
    // Edge tiles are cropped and not passed through.
    assert!(img.encoded_tile(0, 1).unwrap().is_none());
    let t = img.decode_tile(0, 3).unwrap();
    assert_eq!((t.width, t.height), (8, 8));
    let Samples::U8(v) = img.decode_tile(0, 0).unwrap().data else {
        panic!()
    };
    assert!(
        v.iter().zip(&px).all(|(a, b)| a.abs_diff(*b) <= 12),
        "JPEG pixels close to the source"
    );
    // Parts of tiles decode to exactly the same pixels as the whole tile, cropped.
    let edges = [0u32, 1, 2, 3, 8, 15, 16, 17, 18, 24, 31];
    let grid = edges
        .iter()
        .flat_map(|&x| edges.iter().map(move |&y| (x, y)))
        .flat_map(|(x, y)| {
            let ends = [1u32, 2, 8, 14, 15, 16, 17, 30, 32];
            ends.into_iter()
                .filter(move |&e| e > x.max(y))
                .map(move |e| (0, (x, y, e - x, e - y)))
        });
    for (t, part) in grid.chain([
        (0, (0, 0, 32, 32)),
        (0, (5, 3, 20, 9)),
        (0, (17, 17, 15, 15)),
        (0, (16, 0, 16, 16)),
        (0, (0, 16, 16, 16)),
        (0, (16, 16, 16, 16)),
        (0, (2, 16, 3, 4)),
        (0, (0, 31, 32, 1)),
        (1, (0, 0, 8, 32)),
        (1, (3, 10, 5, 7)),
        (3, (7, 7, 1, 1)),
    ]) {
        let whole = img.decode_tile(0, t).unwrap();
        let (got, (ox, oy)) = img.decode_tile_part(0, t, part).unwrap();
        let (x, y, w, h) = part;
        assert!(ox <= x && oy <= y, "part {part:?} starts at {ox},{oy}");
        assert!(
            ox + got.width >= x + w && oy + got.height >= y + h,
            "part {part:?} covered"
        );
        let (Samples::U8(a), Samples::U8(b)) = (&whole.data, &got.data) else {
            panic!()
        };
        for r in 0..h {
            for c in 0..w {
                for k in 0..3 {
                    let wi = (((y + r) * whole.width + x + c) * 3 + k) as usize;
                    let gi = (((y + r - oy) * got.width + x + c - ox) * 3 + k) as usize;
                    assert_eq!(a[wi], b[gi], "tile {t} part {part:?} pixel {c},{r}");
                }
            }
        }
    }
}

#[test]
fn hostile_files_are_errors_not_panics() {
    let mut b = Builder::new(true, false);
    let s = Spec {
        width: 40,
        height: 20,
        tile: 16,
        channels: 1,
        bits: 8,
        compression: 1,
        predictor: 1,
    };
    let t = level(&mut b, &s, 0, &[]);
    let i0 = b.ifd(&t, 0);
    let good = b.finish(i0);
    assert!(open(&good).is_ok());

    // Every truncation fails cleanly.
    for cut in (0..good.len()).step_by(7) {
        if let Ok(img) = open(&good[..cut]) {
            for tile in 0..6 {
                let _ = img.decode_tile(0, tile);
            }
        }
    }
    // First IFD offset past the end.
    let mut v = good.clone();
    v[4..8].copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
    assert!(open(&v).is_err());
    // An IFD that points to itself.
    let mut v = good.clone();
    let i0 = u32::from_le_bytes(v[4..8].try_into().unwrap()) as usize;
    let n = u16::from_le_bytes([v[i0], v[i0 + 1]]) as usize;
    let next = i0 + 2 + n * 12;
    v[next..next + 4].copy_from_slice(&(i0 as u32).to_le_bytes());
    assert!(matches!(open(&v), Err(ImageError::Malformed { .. })));
    // Tile offsets beyond the file, huge byte counts.
    for (offs, counts) in [
        (vec![1u32 << 30; 6], vec![10u32; 6]),
        (vec![8u32; 6], vec![u32::MAX; 6]),
    ] {
        let mut b = Builder::new(true, false);
        let mut t = level(&mut b, &s, 0, &[]);
        t.retain(|x| x.0 != 324 && x.0 != 325);
        t.push((324, Val::Long(offs)));
        t.push((325, Val::Long(counts)));
        let i0 = b.ifd(&t, 0);
        let img = open(&b.finish(i0)).unwrap();
        assert!(img.decode_tile(0, 0).is_err());
    }
    // Too few offsets, zero tile size, absurd sizes, missing tags, untiled.
    for edit in [
        (324u16, Some(Val::Long(vec![8]))),
        (322, Some(Val::Short(vec![0]))),
        (256, Some(Val::Long(vec![u32::MAX]))),
        (325, None),
        (257, None),
    ] {
        let mut b = Builder::new(true, false);
        let mut t = level(&mut b, &s, 0, &[]);
        t.retain(|x| x.0 != edit.0);
        if let Some(v) = edit.1 {
            t.push((edit.0, v));
        }
        let i0 = b.ifd(&t, 0);
        assert!(open(&b.finish(i0)).is_err(), "tag {} edited", edit.0);
    }
    let mut b = Builder::new(true, false);
    let i0 = b.ifd(&[(256, Val::Long(vec![4])), (257, Val::Long(vec![4]))], 0);
    assert!(matches!(open(&b.finish(i0)), Err(ImageError::NotTiled)));
    // Tag values whose out-of-line data lies past the end.
    let mut v = good.clone();
    let n = v.len();
    v.truncate(n - 4);
    assert!(matches!(
        open(&v),
        Err(ImageError::Malformed {
            format: Format::Tiff,
            fault: Fault::OffsetOutOfRange { .. }
        })
    ));
    assert!(matches!(open(b"II*\0"), Err(ImageError::TooShort)));
    assert!(matches!(
        open(b"XX*\0\0\0\0\0\0\0"),
        Err(ImageError::UnknownFormat)
    ));
}

/// One 8×2 tile of `bits`-wide samples packed MSB-first (rows byte-aligned), stored
/// uncompressed, with the given photometric and extra tags.
fn packed_tiff(
    bits: u16,
    channels: u16,
    photometric: u16,
    vals: &[u32],
    extra: &[(u16, Val)],
) -> Vec<u8> {
    let (w, h) = (8u32, 2u32);
    let per_row = (w * channels as u32) as usize;
    let mut raw = Vec::new();
    for row in vals.chunks(per_row) {
        let mut acc: u64 = 0;
        let mut have = 0u32;
        for &v in row {
            acc = (acc << bits) | u64::from(v);
            have += u32::from(bits);
            while have >= 8 {
                have -= 8;
                raw.push((acc >> have) as u8);
            }
        }
        if have > 0 {
            raw.push((acc << (8 - have)) as u8);
        }
    }
    let mut b = Builder::new(false, false);
    let off = b.blob(&raw);
    let mut tags = vec![
        (256, Val::Long(vec![w])),
        (257, Val::Long(vec![h])),
        (258, Val::Short(vec![bits; channels as usize])),
        (259, Val::Short(vec![1])),
        (262, Val::Short(vec![photometric])),
        (277, Val::Short(vec![channels])),
        (322, Val::Short(vec![w as u16])),
        (323, Val::Short(vec![h as u16])),
        (324, Val::Long(vec![off as u32])),
        (325, Val::Long(vec![raw.len() as u32])),
    ];
    tags.extend(extra.iter().cloned());
    let i0 = b.ifd(&tags, 0);
    b.finish(i0)
}

#[test]
fn every_integer_depth_expands_as_specified() {
    let vals = |max: u32| -> Vec<u32> { (0..16).map(|i| (i * 37) % (max + 1)).collect() };
    for bits in [1u16, 2, 4, 6, 10, 12, 14] {
        let max = (1u32 << bits) - 1;
        let v = vals(max);
        for photometric in [1u16, 0] {
            let img = open(&packed_tiff(bits, 1, photometric, &v, &[])).unwrap();
            assert_eq!(img.info().bits_per_sample, bits);
            let tile = img.decode_tile(0, 0).unwrap();
            let want: Vec<u32> = v
                .iter()
                .map(|&s| {
                    let (e, full) = match bits {
                        1 => (s * 255, 255),
                        2 => (s * 85, 255),
                        4 => (s * 17, 255),
                        6 => ((s << 2) | (s >> 4), 255),
                        b => ((s << (16 - b)) | (s >> (2 * b - 16)), 65535),
                    };
                    if photometric == 0 {
                        full - e
                    } else {
                        e
                    }
                })
                .collect();
            let got: Vec<u32> = match tile.data {
                Samples::U8(d) if bits < 8 => d.into_iter().map(u32::from).collect(),
                Samples::U16(d) if bits > 8 => d.into_iter().map(u32::from).collect(),
                other => panic!("{bits}-bit decoded as {other:?}"),
            };
            assert_eq!(got, want, "{bits}-bit photometric {photometric}");
        }
    }
    // Depths the reader does not know are refused, not misread.
    let img = open(&packed_tiff(3, 1, 1, &vals(7), &[])).unwrap();
    assert!(matches!(
        img.decode_tile(0, 0),
        Err(ImageError::Unsupported(Unsupported::Samples { .. }))
    ));
}

#[test]
fn palette_signed_float64_and_minwhite_at_full_depths() {
    // 4-bit palette: index i is red i*4096, green 65535-i*4096, blue 0x8000.
    let map: Vec<u16> = (0..16u16)
        .map(|i| i * 4096)
        .chain((0..16u16).map(|i| 65535 - i * 4096))
        .chain(std::iter::repeat_n(0x8000, 16))
        .collect();
    let idx: Vec<u32> = (0..16).map(|i| i % 16).collect();
    let img = open(&packed_tiff(
        4,
        1,
        3,
        &idx,
        &[(320, Val::Short(map.clone()))],
    ))
    .unwrap();
    assert_eq!(
        (img.info().channels, img.info().colour),
        (3, ColourSpace::Srgb)
    );
    let t = img.decode_tile(0, 0).unwrap();
    assert_eq!(t.channels, 3);
    let Samples::U8(px) = t.data else { panic!() };
    assert_eq!(&px[..6], &[0, 255, 128, 16, 239, 128]);
    // A colour map of the wrong length is a malformed file.
    assert!(open(&packed_tiff(
        4,
        1,
        3,
        &idx,
        &[(320, Val::Short(map[..30].to_vec()))]
    ))
    .is_err());
    assert!(open(&packed_tiff(4, 1, 3, &idx, &[])).is_err());

    // Signed 16-bit: -32768..32767 maps monotonically onto 0..65535.
    let s16: Vec<u32> = [-32768i16, -1, 0, 32767]
        .iter()
        .cycle()
        .take(16)
        .map(|&v| v as u16 as u32)
        .collect();
    let img = open(&packed_tiff(16, 1, 1, &s16, &[(339, Val::Short(vec![2]))])).unwrap();
    let Samples::U16(d) = img.decode_tile(0, 0).unwrap().data else {
        panic!()
    };
    assert_eq!(&d[..4], &[0, 32767, 32768, 65535]);

    // 8 and 16-bit MinIsWhite are inverted too.
    let g: Vec<u32> = (0..16).map(|i| i * 1000).collect();
    let img = open(&packed_tiff(16, 1, 0, &g, &[])).unwrap();
    let Samples::U16(d) = img.decode_tile(0, 0).unwrap().data else {
        panic!()
    };
    assert_eq!(&d[..3], &[65535, 64535, 63535]);

    // 64-bit float narrows to f32.
    let f: Vec<f64> = (0..16).map(|i| i as f64 / 16.0).collect();
    let mut b = Builder::new(false, false);
    let raw: Vec<u8> = f.iter().flat_map(|v| v.to_be_bytes()).collect();
    let off = b.blob(&raw);
    let tags = vec![
        (256, Val::Long(vec![8])),
        (257, Val::Long(vec![2])),
        (258, Val::Short(vec![64])),
        (262, Val::Short(vec![1])),
        (322, Val::Short(vec![8])),
        (323, Val::Short(vec![2])),
        (324, Val::Long(vec![off as u32])),
        (325, Val::Long(vec![raw.len() as u32])),
        (339, Val::Short(vec![3])),
    ];
    let i0 = b.ifd(&tags, 0);
    let img = open(&b.finish(i0)).unwrap();
    let Samples::F32(d) = img.decode_tile(0, 0).unwrap().data else {
        panic!()
    };
    assert_eq!(d[4], 0.25);
}

#[test]
fn separate_planes_are_interleaved() {
    let mut b = Builder::new(true, false);
    let planes: Vec<Vec<u8>> = (0..3u8)
        .map(|c| (0..16u8).map(|i| i + 100 * c).collect())
        .collect();
    let offs: Vec<u32> = planes.iter().map(|p| b.blob(p) as u32).collect();
    let tags = vec![
        (256, Val::Long(vec![4])),
        (257, Val::Long(vec![4])),
        (258, Val::Short(vec![8, 8, 8])),
        (262, Val::Short(vec![2])),
        (277, Val::Short(vec![3])),
        (284, Val::Short(vec![2])),
        (322, Val::Short(vec![4])),
        (323, Val::Short(vec![4])),
        (324, Val::Long(offs)),
        (325, Val::Long(vec![16, 16, 16])),
    ];
    let i0 = b.ifd(&tags, 0);
    let img = open(&b.finish(i0)).unwrap();
    let t = img.decode_tile(0, 0).unwrap();
    assert_eq!(t.channels, 3);
    let Samples::U8(px) = t.data else { panic!() };
    assert_eq!(&px[..6], &[0, 100, 200, 1, 101, 201]);
}
