//! The commands that set the view (docs/protocols.md §1.4, §1.5): output size and region,
//! rotation, quality, angles, layers, colour and the processing chain. They answer nothing;
//! each changes the one view of the request, so it acts on the output commands after it.

use super::Session;
use crate::config::{atof, atoi};
use crate::model::{Colour, View};
use crate::pipeline::float::{named_kernel, ColourMap, Contrast};
use crate::protocol::path;

/// `WID=w`: the output width; 0 or negative leaves it unset.
pub(super) fn wid(view: &mut View, value: &str) {
    view.width = atoi(value).clamp(0, u32::MAX as i64) as u32;
}

/// `HEI=h`: the output height; 0 or negative leaves it unset.
pub(super) fn hei(view: &mut View, value: &str) {
    view.height = atoi(value).clamp(0, u32::MAX as i64) as u32;
}

/// `RGN=x,y,w,h`: the region, in fractions of the full image; one that is empty or
/// malformed leaves the region as it was.
pub(super) fn rgn(view: &mut View, value: &str) {
    let v: Vec<f64> = value.split(',').map(atof).collect();
    if v.len() >= 4 && v[2] > 0.0 && v[3] > 0.0 {
        let (x, y) = (v[0].clamp(0.0, 1.0), v[1].clamp(0.0, 1.0));
        // Parts beyond the right and bottom edges are cropped away.
        let w = v[2].clamp(0.0, 1.0).min(1.0 - x);
        let h = v[3].clamp(0.0, 1.0).min(1.0 - y);
        if w > 0.0 && h > 0.0 {
            view.region = Some([x, y, w, h]);
        }
    }
}

/// `ROT=[!]angle`: a clockwise rotation, after a mirroring when `!` leads.
pub(super) fn rot(view: &mut View, value: &str) {
    let (mirror, a) = match value.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, value),
    };
    view.mirror = mirror;
    view.rotation = atof(a);
}

/// `QLT=[codec:]n`: the quality for every encoder, and the codec of TIFF output.
pub(super) fn qlt(view: &mut View, value: &str) {
    if let Some((codec, _)) = value.split_once(':') {
        view.tiff_codec = Some(match codec.to_ascii_lowercase().as_str() {
            "lzw" => 1,
            "deflate" => 2,
            "jpeg" => 3,
            "webp" => 4,
            "zstd" => 5,
            _ => 0,
        });
    }
    let n = value.rsplit(':').next().unwrap_or(value);
    view.quality = Some(atoi(n).clamp(-100, 1000) as i32);
}

/// `SDS=x[,y]`: the horizontal and vertical view angles of a sequence (a lone `x` sets
/// `y` to 0).
pub(super) fn sds(view: &mut View, value: &str) {
    let mut it = value.split(',');
    view.xangle = atoi(it.next().unwrap_or("0")) as i32;
    view.yangle = it.next().map(|y| atoi(y) as i32).unwrap_or(0);
}

/// `LYR=n`: the JPEG2000 quality layers to decode.
pub(super) fn lyr(view: &mut View, value: &str) {
    view.layers = atoi(value).clamp(0, 65535) as i32;
}

/// `ICC`: accepted as a known command, and changes nothing.
pub(super) fn icc(_: &mut View, _: &str) {}

/// `COL=grey|gray|binary`: the output colour; any other value keeps it.
pub(super) fn col(view: &mut View, value: &str) {
    match value.to_ascii_lowercase().as_str() {
        "grey" | "gray" => view.colour = Colour::Grey,
        "binary" => view.colour = Colour::Bitonal,
        _ => {}
    }
}

/// `CNT=factor|st|eq`: contrast, by a factor, a stretch or an equalisation.
pub(super) fn cnt(view: &mut View, value: &str) {
    view.processing.contrast = match value.to_ascii_lowercase().as_str() {
        "eq" | "equalization" => Contrast::Equalise,
        "st" | "stretch" => Contrast::Stretch,
        v => Contrast::Factor(atof(v) as f32),
    };
}

/// `GAM=exponent|log`: a gamma exponent, or a logarithmic scaling.
pub(super) fn gam(view: &mut View, value: &str) {
    match value.to_ascii_lowercase().as_str() {
        "log" | "logarithm" => view.processing.log = true,
        v => view.processing.gamma = atof(v) as f32,
    }
}

/// `INV`: inverts the values, whatever the argument.
pub(super) fn inv(view: &mut View, _: &str) {
    view.processing.invert = true;
}

/// `CMP=name`: a colour map; an unknown name turns it off.
pub(super) fn cmp(view: &mut View, value: &str) {
    view.processing.colour_map = match value.to_ascii_lowercase().as_str() {
        "hot" => Some(ColourMap::Hot),
        "cold" => Some(ColourMap::Cold),
        "jet" => Some(ColourMap::Jet),
        "red" => Some(ColourMap::Red),
        "green" => Some(ColourMap::Green),
        "blue" => Some(ColourMap::Blue),
        _ => None,
    };
}

/// `CTW=[a,b;c,d…]`: the channel twist matrix; a malformed one turns it off.
pub(super) fn ctw(view: &mut View, value: &str) {
    view.processing.twist = parse_matrix(&path::url_decode(value));
}

/// `CNV=name|[k,…]`: a convolution, by kernel name or 1, 9 or 25 weights.
pub(super) fn cnv(view: &mut View, value: &str) {
    let v = path::url_decode(value).to_ascii_lowercase();
    let inner = v.trim_start_matches('[').trim_end_matches(']');
    view.processing.kernel = named_kernel(inner).or_else(|| {
        let k: Vec<f32> = inner.split(',').map(|x| atof(x) as f32).collect();
        matches!(k.len(), 1 | 9 | 25).then_some(k)
    });
}

/// `SHD=h,v`: hill shading with the light at azimuth `h` and elevation `v`
/// (docs/processing.md §4.3).
pub(super) fn shd(view: &mut View, value: &str) {
    if let Some((h, v)) = value.split_once(',') {
        view.processing.shade = Some((atoi(h) as i32, atoi(v) as i32));
    }
}

/// `MINMAX=c:min,max` or `-:min,max`: the value range of channel `c` (or of every one)
/// that scaling uses instead of the image's; it needs an image to know its channels, and a
/// channel the image lacks is ignored.
pub(super) fn minmax(s: &mut Session, value: &str) {
    if s.image.is_none() {
        s.error("1 3", value);
    } else if let Some((ch, range)) = value.split_once(':') {
        if let Some((a, b)) = range.split_once(',') {
            let (a, b) = (atof(a) as f32, atof(b) as f32);
            let channels = s
                .image
                .as_ref()
                .map(|c| c.opened.image.info().channels)
                .unwrap_or(0) as i64;
            if ch == "-" {
                s.view.processing.minmax.push((None, a, b));
            } else if (0..channels).contains(&atoi(ch)) {
                s.view
                    .processing
                    .minmax
                    .push((Some(atoi(ch) as usize), a, b));
            }
        }
    }
}

/// Parses a `CTW` matrix `[a,b,c;d,e,f;…]` (brackets optional): rows by `;`, values by `,`.
fn parse_matrix(v: &str) -> Option<Vec<Vec<f32>>> {
    let inner = v.trim().trim_start_matches('[').trim_end_matches(']');
    let rows: Vec<Vec<f32>> = inner
        .split(';')
        .filter(|r| !r.trim().is_empty())
        .map(|r| r.split(',').map(|x| atof(x) as f32).collect())
        .collect();
    (!rows.is_empty() && rows.len() <= 16 && rows.iter().all(|r| !r.is_empty() && r.len() <= 16))
        .then_some(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lone_view_angle_sets_the_other_to_zero() {
        let mut view = View {
            yangle: 7,
            ..View::default()
        };
        sds(&mut view, "3");
        assert_eq!((view.xangle, view.yangle), (3, 0));
    }

    #[test]
    fn regions_are_cropped_at_the_edges() {
        let mut view = View::default();
        rgn(&mut view, "0.5,0.25,1,1");
        assert_eq!(view.region, Some([0.5, 0.25, 0.5, 0.75]));
        rgn(&mut view, "0,0,0,1");
        assert_eq!(
            view.region,
            Some([0.5, 0.25, 0.5, 0.75]),
            "an empty region is ignored"
        );
    }
}
