//! PNG output (`png` crate, fast compression: the default level costs 7 ms a tile).

use super::EncodeError;
use crate::pipeline::Raster;

/// PNG of 1–4 channels; `level` is iipsrv's PNG_QUALITY (zlib level 0..=9).
pub fn encode(r: &Raster, level: i32) -> Result<Vec<u8>, EncodeError> {
    let colour = match r.channels {
        1 => png::ColorType::Grayscale,
        2 => png::ColorType::GrayscaleAlpha,
        3 => png::ColorType::Rgb,
        4 => png::ColorType::Rgba,
        n => return Err(EncodeError::Png(format!("cannot encode {n} channels"))),
    };
    let mut out = Vec::with_capacity(r.data.len() / 2 + 1024);
    {
        let mut enc = png::Encoder::new(&mut out, r.width, r.height);
        enc.set_color(colour);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(match level {
            0 => png::Compression::NoCompression,
            1..=2 => png::Compression::Fastest,
            3..=5 => png::Compression::Fast,
            6..=7 => png::Compression::Balanced,
            _ => png::Compression::High,
        });
        let mut w = enc
            .write_header()
            .map_err(|e| EncodeError::Png(e.to_string()))?;
        w.write_image_data(&r.data)
            .map_err(|e| EncodeError::Png(e.to_string()))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let r = Raster {
            width: 5,
            height: 3,
            channels: 3,
            data: (0..45).collect(),
        };
        let bytes = encode(&r, 1).unwrap();
        let dec = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = dec.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!((info.width, info.height), (5, 3));
        assert_eq!(&buf[..45], &r.data[..]);
    }
}
