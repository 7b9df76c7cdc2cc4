//! Why an image or a tile could not be read: [`ImageError`] and the structured
//! reasons it carries (which format, which tag, marker or codec, which values).
//!
//! The `Display` text of every error is what a client reads in the body of the error
//! response (after the path it asked for), so the wording stays stable; the variants
//! carry the values behind it for the code that matches on them. Messages never
//! contain a server path: the protocol layer adds the path the client asked for.

use std::fmt;

/// The file format a reader found a fault in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Tiff,
    Jpeg2000,
    Jpeg,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Tiff => "TIFF",
            Format::Jpeg2000 => "JPEG2000",
            Format::Jpeg => "JPEG",
        })
    }
}

/// The codec of a stored tile (TIFF compressions, JPEG files, JPEG2000 codestreams).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    Uncompressed,
    Lzw,
    Deflate,
    Zstd,
    PackBits,
    Jpeg,
    Webp,
    OpenJpeg,
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Codec::Uncompressed => "uncompressed",
            Codec::Lzw => "LZW",
            Codec::Deflate => "deflate",
            Codec::Zstd => "zstd",
            Codec::PackBits => "PackBits",
            Codec::Jpeg => "JPEG",
            Codec::Webp => "WebP",
            Codec::OpenJpeg => "OpenJPEG",
        })
    }
}

/// Why an image or a tile could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("Unable to open file")]
    Open(#[source] std::io::Error),
    #[error("Unable to read initial byte sequence from file")]
    TooShort,
    #[error("Unsupported image type")]
    UnknownFormat,
    #[error("Image is not tiled")]
    NotTiled,
    /// The file breaks its format's rules (or the limits the readers set on it).
    #[error("Malformed image file: {}{fault}", context(*format))]
    Malformed { format: Format, fault: Fault },
    /// A well-formed file using something the readers do not decode.
    #[error("Unsupported {0}")]
    Unsupported(Unsupported),
    #[error("Asked for non-existent tile: {0}")]
    NoSuchTile(u32),
    #[error("Asked for non-existent resolution: {0}")]
    NoSuchLevel(u32),
    #[error("Asked for non-existent view or stack page: {0}")]
    NoSuchView(i32),
    /// A stored tile that does not decode to what its directory describes.
    #[error("Tile decoding failed: {0}")]
    Decode(DecodeError),
    /// The request ran past `MAX_RENDER_TIME`.
    #[error("Request took longer than the server allows (MAX_RENDER_TIME)")]
    OutOfTime,
    /// A buffer of this many bytes could not be allocated.
    #[error("Not enough memory for this request ({0} bytes)")]
    OutOfMemory(usize),
}

impl ImageError {
    /// A fault in a `format` file.
    pub fn malformed(format: Format, fault: Fault) -> ImageError {
        ImageError::Malformed { format, fault }
    }
}

impl From<Unsupported> for ImageError {
    fn from(u: Unsupported) -> ImageError {
        ImageError::Unsupported(u)
    }
}

impl From<DecodeError> for ImageError {
    fn from(d: DecodeError) -> ImageError {
        ImageError::Decode(d)
    }
}

/// What precedes a fault's description: TIFF faults stand alone (the format the
/// server is built around), others name their format.
fn context(format: Format) -> String {
    match format {
        Format::Tiff => String::new(),
        other => format!("{other}: "),
    }
}

/// How a file breaks its format (the text after "Malformed image file: ").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    /// A TIFF tag a tiled level needs, by its name.
    #[error("missing {0}")]
    MissingTag(&'static str),
    /// A JPEG2000 marker segment or box the header needs.
    #[error("no {0}")]
    MissingMarker(&'static str),
    /// A header field whose value is out of range, with the field's name.
    #[error("{value} {field}")]
    BadValue { field: &'static str, value: u64 },
    /// A header field with more than the readers accept.
    #[error("{value} {field} (at most {limit})")]
    TooMany {
        field: &'static str,
        value: u64,
        limit: u64,
    },
    /// A TIFF tag with no value, or with more values than any file needs.
    #[error("tag {tag} has {}", values(*count))]
    TagCount { tag: u16, count: u64 },
    /// A TIFF tag read as integers that holds another type.
    #[error("tag {tag} is not an integer")]
    NotInteger { tag: u16 },
    /// A TIFF tag of a field type the format does not define.
    #[error("tag {tag} has unknown type {kind}")]
    UnknownType { tag: u16, kind: u16 },
    /// A TIFF directory with no entries or implausibly many.
    #[error("directory with {0} entries")]
    DirectoryEntries(u64),
    /// A BigTIFF header whose offset size is not 8 bytes.
    #[error("BigTIFF header with an unsupported offset size")]
    OffsetSize(u16),
    /// The TIFF directory chain leads back to a directory already read.
    #[error("directory chain loops")]
    ChainLoops,
    /// An offset or length (of "offset" or "tag size") that overflows.
    #[error("{0} overflow")]
    Overflow(&'static str),
    /// Data a TIFF points to that lies past the end of the file.
    #[error("data at {offset}+{len} lies beyond the end of the file ({file_len} bytes)")]
    OffsetOutOfRange {
        offset: u64,
        len: u64,
        file_len: u64,
    },
    /// An image size of zero, or larger than the readers accept.
    #[error("image of {width}x{height}")]
    ImageSize { width: u64, height: u64 },
    /// A JPEG2000 image with no area or no components.
    #[error("image of {width}x{height} with {components} components")]
    EmptyImage {
        width: u64,
        height: u64,
        components: u16,
    },
    /// A JPEG2000 image side longer than the readers accept.
    #[error("image of {width}x{height} is larger than {limit} a side")]
    ImageTooLarge { width: u64, height: u64, limit: u64 },
    /// A tile size of zero, or larger than the readers accept.
    #[error("tiles of {width}x{height}")]
    TileSize { width: u64, height: u64 },
    /// Tiles whose decoded samples would exceed the largest tile buffer.
    #[error("tiles of {width}x{height}x{channels}")]
    TileBytes {
        width: usize,
        height: usize,
        channels: usize,
    },
    /// A JPEG2000 codestream tile grid that does not cover the image.
    #[error("codestream tiles of {width}x{height} at {x},{y} do not cover the image")]
    TileGrid {
        width: u32,
        height: u32,
        x: u32,
        y: u32,
    },
    /// TIFF tile tables shorter than the tile grid.
    #[error("{offsets} tile offsets and {counts} byte counts for {tiles} tiles")]
    TileTables {
        offsets: u64,
        counts: u64,
        tiles: u64,
    },
    /// A stored TIFF tile of no bytes, or implausibly many.
    #[error("tile {tile} has {len} bytes")]
    TileLength { tile: u32, len: u64 },
    /// A TIFF ColorMap whose length does not match the index depth.
    #[error("ColorMap of {entries} entries for {bits}-bit indices")]
    ColorMapSize { entries: usize, bits: u64 },
    /// A TIFF palette image without a ColorMap it can be read through.
    #[error("palette image without a usable ColorMap")]
    NoColorMap,
    /// A JPEG2000 codestream that does not start with its SOC marker.
    #[error("codestream does not start with SOC")]
    NoSoc,
    /// A JPEG2000 structure cut short.
    #[error("{0}")]
    Truncated(Part),
}

/// "no value", "1 values", "70000 values".
fn values(count: u64) -> String {
    match count {
        0 => "no value".into(),
        n => format!("{n} values"),
    }
}

/// A JPEG2000 structure that can end early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// A box or marker header.
    Header,
    /// A box longer than the file.
    Box,
    /// A marker segment longer than the codestream.
    Segment,
    /// A SIZ segment that stops before its components.
    Siz,
    /// A COD segment that stops before its decomposition levels.
    Cod,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Part::Header => "truncated header",
            Part::Box => "box extends past the end of the file",
            Part::Segment => "marker segment extends past the codestream",
            Part::Siz => "SIZ without components",
            Part::Cod => "short COD",
        })
    }
}

/// What a readable file uses that the readers do not decode (the text after
/// "Unsupported ").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unsupported {
    /// A TIFF compression scheme, by its code.
    #[error("{format} compression {code}")]
    Compression { format: Format, code: u16 },
    /// An image too large (or empty) to decode whole.
    #[error("{format} of {width}x{height}")]
    Size {
        format: Format,
        width: u64,
        height: u64,
    },
    /// A tile codec given samples of a channel count it cannot produce.
    #[error("{codec} tiles with {channels} channels")]
    TileChannels { codec: Codec, channels: u16 },
    /// A tile codec at a depth above its 8 bits.
    #[error("{codec} tiles above 8 bits")]
    TileBits { codec: Codec, bits: u16 },
    /// A TIFF sample layout: depth, integer or float, with or without a predictor.
    #[error(
        "bit depth: {bits}-bit {} samples{}",
        if *float { "float" } else { "integer" },
        if *predictor { " with a predictor" } else { "" }
    )]
    Samples {
        format: Format,
        bits: u16,
        float: bool,
        predictor: bool,
    },
    /// A JPEG2000 component depth above 16 bits.
    #[error("number of bits")]
    Bits { format: Format, bits: u8 },
    /// Palette indices of a sample type other than 8 or 16-bit integers.
    #[error("palette of this depth")]
    PaletteDepth,
}

/// Why a stored tile did not decode (the text after "Tile decoding failed: ").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A codec library's own report.
    #[error("{}", library(*codec, message))]
    Codec { codec: Codec, message: String },
    /// A tile that decompresses to fewer bytes than its geometry needs.
    #[error("{}tile holds {got} of {expected} bytes", codec_prefix(*codec))]
    Short {
        codec: Codec,
        got: usize,
        expected: usize,
    },
    /// A run-length code (PackBits "literal" or "run") that reads past the stored tile.
    #[error("{codec} {code} runs past the tile")]
    Overrun { codec: Codec, code: &'static str },
    /// A JPEG frame header with no area.
    #[error("JPEG tile of {width}x{height}")]
    EmptyFrame { width: i32, height: i32 },
    /// A JPEG frame larger than the tile the TIFF declares.
    #[error("JPEG tile of {width}x{height} in a TIFF with {tile_width}x{tile_height} tiles")]
    FrameTooLarge {
        width: usize,
        height: usize,
        tile_width: usize,
        tile_height: usize,
    },
    /// A JPEG frame that does not hold the part asked of it.
    #[error("JPEG tile of {width}x{height} does not hold {}x{} at {},{}", part.2, part.3, part.0, part.1)]
    FramePart {
        width: usize,
        height: usize,
        part: (usize, usize, usize, usize),
    },
    /// A decoded chunk smaller than the tile grid.
    #[error("tile is {width}x{height}, expected {tile_width}x{tile_height}")]
    TileSize {
        width: usize,
        height: usize,
        tile_width: usize,
        tile_height: usize,
    },
    /// A TIFF JPEG tile (with JPEGTables) lacking the SOI marker the tables replace.
    #[error("JPEG tile {0} lacks a start-of-image marker")]
    NoSoi(u32),
    /// The planes of a planar TIFF tile decoding to different types or sizes.
    #[error("planes decode differently")]
    Planes,
    /// JPEG2000 codestream tiles decoding to different depths or channels.
    #[error("codestream tiles decoded unlike each other")]
    CodestreamTiles,
    /// A tile of a region decoding unlike the tiles before it.
    #[error("tile {0} decoded unlike its neighbours (depth, channels or extent)")]
    UnlikeNeighbours(u32),
    /// A region covering no tile.
    #[error("empty region")]
    EmptyRegion,
    /// A file replaced since its header was read.
    #[error("the file changed while being read; try again")]
    Changed,
}

impl DecodeError {
    /// A codec library's report `message`.
    pub fn codec(codec: Codec, message: impl fmt::Display) -> DecodeError {
        DecodeError::Codec {
            codec,
            message: message.to_string(),
        }
    }
}

/// A library's report as the server has always shown it.
fn library(codec: Codec, message: &str) -> String {
    match codec {
        Codec::OpenJpeg => format!("OpenJPEG error :: {message}"),
        other => format!("{other}: {message}"),
    }
}

/// "LZW " before "tile holds ...", nothing for uncompressed tiles.
fn codec_prefix(codec: Codec) -> String {
    match codec {
        Codec::Uncompressed => String::new(),
        other => format!("{other} "),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The texts clients read, as the readers have always worded them.
    #[test]
    fn messages_keep_their_wording() {
        let m = |format, fault| ImageError::malformed(format, fault).to_string();
        assert_eq!(
            m(Format::Tiff, Fault::MissingTag("TileOffsets")),
            "Malformed image file: missing TileOffsets"
        );
        assert_eq!(
            m(Format::Jpeg2000, Fault::MissingMarker("SIZ marker")),
            "Malformed image file: JPEG2000: no SIZ marker"
        );
        assert_eq!(
            m(Format::Jpeg2000, Fault::Truncated(Part::Cod)),
            "Malformed image file: JPEG2000: short COD"
        );
        assert_eq!(
            m(Format::Tiff, Fault::TagCount { tag: 324, count: 0 }),
            "Malformed image file: tag 324 has no value"
        );
        assert_eq!(
            m(Format::Tiff, Fault::TagCount { tag: 324, count: 9 }),
            "Malformed image file: tag 324 has 9 values"
        );
        assert_eq!(
            m(
                Format::Jpeg2000,
                Fault::TooMany {
                    field: "components",
                    value: 300,
                    limit: 256
                }
            ),
            "Malformed image file: JPEG2000: 300 components (at most 256)"
        );
        let u = |u: Unsupported| ImageError::from(u).to_string();
        assert_eq!(
            u(Unsupported::Samples {
                format: Format::Tiff,
                bits: 24,
                float: false,
                predictor: true
            }),
            "Unsupported bit depth: 24-bit integer samples with a predictor"
        );
        assert_eq!(
            u(Unsupported::Compression {
                format: Format::Tiff,
                code: 34712
            }),
            "Unsupported TIFF compression 34712"
        );
        let d = |d: DecodeError| ImageError::from(d).to_string();
        assert_eq!(
            d(DecodeError::Short {
                codec: Codec::Uncompressed,
                got: 10,
                expected: 100
            }),
            "Tile decoding failed: tile holds 10 of 100 bytes"
        );
        assert_eq!(
            d(DecodeError::Short {
                codec: Codec::Lzw,
                got: 10,
                expected: 100
            }),
            "Tile decoding failed: LZW tile holds 10 of 100 bytes"
        );
        assert_eq!(
            d(DecodeError::codec(Codec::OpenJpeg, "bad")),
            "Tile decoding failed: OpenJPEG error :: bad"
        );
        assert_eq!(
            d(DecodeError::FramePart {
                width: 16,
                height: 8,
                part: (1, 2, 30, 40)
            }),
            "Tile decoding failed: JPEG tile of 16x8 does not hold 30x40 at 1,2"
        );
    }
}
