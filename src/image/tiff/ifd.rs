//! TIFF and BigTIFF directory walking over a byte slice (the file's memory map).
//!
//! Every offset, count and value size is checked against the slice before use, with
//! checked arithmetic; directories are bounded in number and in entries. Our own
//! walker rather than the `tiff` crate's: that crate copies every chunk through a
//! reader and cannot open SubIFD pyramids, while here tiles are sliced straight from
//! the map and SubIFDs are ordinary directories.

use crate::image::{Fault, Format, ImageError};

/// Most entries one directory may hold (real files have a few dozen).
const MAX_ENTRIES: u64 = 4096;
/// Most values one tag may hold: enough for the tile arrays of a 2^31-pixel level.
const MAX_VALUES: u64 = 1 << 26;

fn bad(fault: Fault) -> ImageError {
    ImageError::malformed(Format::Tiff, fault)
}

/// One directory entry; `pos` is where its value bytes start in the file.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub tag: u16,
    pub kind: u16,
    pub count: u64,
    pub pos: usize,
}

/// A parsed directory: entries sorted by tag, and the offset of the next one (0 = none).
#[derive(Debug, Clone)]
pub struct Ifd {
    pub entries: Vec<Entry>,
    pub next: u64,
}

impl Ifd {
    pub fn get(&self, tag: u16) -> Option<&Entry> {
        self.entries
            .binary_search_by_key(&tag, |e| e.tag)
            .ok()
            .map(|i| &self.entries[i])
    }
}

/// Size in bytes of one value of a TIFF field type; `None` for unknown types.
pub fn type_size(kind: u16) -> Option<u64> {
    Some(match kind {
        1 | 2 | 6 | 7 => 1,
        3 | 8 => 2,
        4 | 9 | 11 | 13 => 4,
        5 | 10 | 12 | 16 | 17 | 18 => 8,
        _ => return None,
    })
}

/// An integer array inside the file (see [`Reader::uint_array`]).
#[derive(Debug, Clone, Copy)]
pub struct Uints {
    pos: u64,
    kind: u16,
    pub len: u64,
}

/// Reads primitive values in the file's byte order, bounds-checked.
#[derive(Clone, Copy)]
pub struct Reader<'a> {
    pub data: &'a [u8],
    pub little_endian: bool,
    pub big_tiff: bool,
}

impl<'a> Reader<'a> {
    /// Parses the header; returns the reader and the first directory's offset.
    pub fn new(data: &'a [u8]) -> Result<(Reader<'a>, u64), ImageError> {
        if data.len() < 8 {
            return Err(ImageError::TooShort);
        }
        let little_endian = match &data[..2] {
            b"II" => true,
            b"MM" => false,
            _ => return Err(ImageError::UnknownFormat),
        };
        let mut r = Reader {
            data,
            little_endian,
            big_tiff: false,
        };
        match r.u16(2)? {
            42 => Ok((r, r.u32(4)? as u64)),
            43 => {
                let size = r.u16(4)?;
                if size != 8 || r.u16(6)? != 0 {
                    return Err(bad(Fault::OffsetSize(size)));
                }
                r.big_tiff = true;
                Ok((r, r.u64(8)?))
            }
            _ => Err(ImageError::UnknownFormat),
        }
    }

    pub fn bytes(&self, pos: u64, len: u64) -> Result<&'a [u8], ImageError> {
        let end = pos
            .checked_add(len)
            .ok_or_else(|| bad(Fault::Overflow("offset")))?;
        if end > self.data.len() as u64 {
            return Err(bad(Fault::OffsetOutOfRange {
                offset: pos,
                len,
                file_len: self.data.len() as u64,
            }));
        }
        Ok(&self.data[pos as usize..end as usize])
    }

    fn arr<const N: usize>(&self, pos: u64) -> Result<[u8; N], ImageError> {
        Ok(self
            .bytes(pos, N as u64)?
            .try_into()
            .expect("length checked"))
    }

    pub fn u16(&self, pos: u64) -> Result<u16, ImageError> {
        let a = self.arr::<2>(pos)?;
        Ok(if self.little_endian {
            u16::from_le_bytes(a)
        } else {
            u16::from_be_bytes(a)
        })
    }

    pub fn u32(&self, pos: u64) -> Result<u32, ImageError> {
        let a = self.arr::<4>(pos)?;
        Ok(if self.little_endian {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        })
    }

    pub fn u64(&self, pos: u64) -> Result<u64, ImageError> {
        let a = self.arr::<8>(pos)?;
        Ok(if self.little_endian {
            u64::from_le_bytes(a)
        } else {
            u64::from_be_bytes(a)
        })
    }

    /// Parses the directory at `offset`.
    pub fn ifd(&self, offset: u64) -> Result<Ifd, ImageError> {
        let (count, entry_size, head) = if self.big_tiff {
            (self.u64(offset)?, 20u64, 8u64)
        } else {
            (self.u16(offset)? as u64, 12, 2)
        };
        if count == 0 || count > MAX_ENTRIES {
            return Err(bad(Fault::DirectoryEntries(count)));
        }
        let table = offset + head;
        // The whole table and the next-offset field must lie inside the file.
        self.bytes(
            table,
            count * entry_size + if self.big_tiff { 8 } else { 4 },
        )?;
        let mut entries = Vec::with_capacity(count as usize);
        for i in 0..count {
            let e = table + i * entry_size;
            let tag = self.u16(e)?;
            let kind = self.u16(e + 2)?;
            let (n, field, field_len) = if self.big_tiff {
                (self.u64(e + 4)?, e + 12, 8)
            } else {
                (self.u32(e + 4)? as u64, e + 8, 4)
            };
            let pos = match type_size(kind) {
                // Unknown types are kept but can never be read.
                None => usize::MAX,
                Some(sz) => {
                    let len = n
                        .checked_mul(sz)
                        .ok_or_else(|| bad(Fault::Overflow("tag size")))?;
                    let at = if len <= field_len {
                        field
                    } else if self.big_tiff {
                        self.u64(field)?
                    } else {
                        self.u32(field)? as u64
                    };
                    // Values stored out of line must lie inside the file.
                    self.bytes(at, len)?;
                    at as usize
                }
            };
            entries.push(Entry {
                tag,
                kind,
                count: n,
                pos,
            });
        }
        entries.sort_by_key(|e| e.tag);
        let next_pos = table + count * entry_size;
        let next = if self.big_tiff {
            self.u64(next_pos)?
        } else {
            self.u32(next_pos)? as u64
        };
        Ok(Ifd { entries, next })
    }

    /// An integer-typed entry (BYTE, SHORT, LONG, LONG8, IFD, IFD8 and their signed
    /// forms) left in the file, its values read one at a time by [`Reader::uint_at`]:
    /// opening a pyramid does not copy its tile tables. The whole array is checked to lie
    /// inside the file here.
    pub fn uint_array(&self, e: &Entry) -> Result<Uints, ImageError> {
        if e.count > MAX_VALUES {
            return Err(bad(Fault::TagCount {
                tag: e.tag,
                count: e.count,
            }));
        }
        if !matches!(e.kind, 1 | 3 | 4 | 6 | 7 | 8 | 9 | 13 | 16 | 17 | 18) {
            return Err(bad(Fault::NotInteger { tag: e.tag }));
        }
        let size = type_size(e.kind).expect("integer types have a size");
        self.bytes(e.pos as u64, e.count * size)?;
        Ok(Uints {
            pos: e.pos as u64,
            kind: e.kind,
            len: e.count,
        })
    }

    /// Value `i` of an integer array (negative values clamped to 0); `None` past its end.
    pub fn uint_at(&self, a: &Uints, i: u64) -> Result<Option<u64>, ImageError> {
        if i >= a.len {
            return Ok(None);
        }
        let p = a.pos + i * type_size(a.kind).expect("integer types have a size");
        Ok(Some(match a.kind {
            1 | 7 => self.bytes(p, 1)?[0] as u64,
            6 => (self.bytes(p, 1)?[0] as i8).max(0) as u64,
            3 => self.u16(p)? as u64,
            8 => (self.u16(p)? as i16).max(0) as u64,
            4 | 13 => self.u32(p)? as u64,
            9 => (self.u32(p)? as i32).max(0) as u64,
            16 | 18 => self.u64(p)?,
            _ => (self.u64(p)? as i64).max(0) as u64,
        }))
    }

    /// All values of an integer-typed entry, as [`Reader::uint_array`] describes.
    pub fn uints(&self, e: &Entry) -> Result<Vec<u64>, ImageError> {
        let a = self.uint_array(e)?;
        (0..a.len)
            .map(|i| Ok(self.uint_at(&a, i)?.expect("within the array")))
            .collect()
    }

    /// The first value of an integer entry.
    pub fn uint(&self, e: &Entry) -> Result<u64, ImageError> {
        if e.count == 0 {
            return Err(bad(Fault::TagCount {
                tag: e.tag,
                count: 0,
            }));
        }
        let first = self.uint_array(&Entry { count: 1, ..*e })?;
        Ok(self.uint_at(&first, 0)?.expect("one value"))
    }

    /// Numeric values of any numeric type as f64 (for resolutions and sample ranges).
    pub fn floats(&self, e: &Entry) -> Result<Vec<f64>, ImageError> {
        if e.count > 1024 {
            return Err(bad(Fault::TagCount {
                tag: e.tag,
                count: e.count,
            }));
        }
        let mut out = Vec::with_capacity(e.count as usize);
        for i in 0..e.count {
            let sz = type_size(e.kind).unwrap_or(0);
            let p = e.pos as u64 + i * sz;
            out.push(match e.kind {
                5 => {
                    let (n, d) = (self.u32(p)?, self.u32(p + 4)?);
                    if d == 0 {
                        0.0
                    } else {
                        n as f64 / d as f64
                    }
                }
                10 => {
                    let (n, d) = (self.u32(p)? as i32, self.u32(p + 4)? as i32);
                    if d == 0 {
                        0.0
                    } else {
                        n as f64 / d as f64
                    }
                }
                11 => f32::from_bits(self.u32(p)?) as f64,
                12 => f64::from_bits(self.u64(p)?),
                _ => self.uint(&Entry {
                    pos: p as usize,
                    count: 1,
                    ..*e
                })? as f64,
            });
        }
        Ok(out)
    }

    /// The raw value bytes of an entry.
    pub fn raw(&self, e: &Entry) -> Result<&'a [u8], ImageError> {
        let sz = type_size(e.kind).ok_or_else(|| {
            bad(Fault::UnknownType {
                tag: e.tag,
                kind: e.kind,
            })
        })?;
        self.bytes(e.pos as u64, e.count * sz)
    }

    /// An ASCII (or byte) entry as text, up to its first NUL.
    pub fn text(&self, e: &Entry) -> Result<String, ImageError> {
        let b = self.raw(e)?;
        let b = b.split(|&c| c == 0).next().unwrap_or(b);
        Ok(String::from_utf8_lossy(b).trim_end().to_owned())
    }
}
