//! The one request model every protocol parses into, so that rendering never
//! knows which protocol asked.

use crate::encode::Format;
use crate::pipeline::float::Processing;

/// View state: what modifiers have set for the output commands that follow.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    /// Rotation in degrees (clockwise); only multiples of 90 are applied.
    pub rotation: f64,
    /// Horizontal mirror before rotation.
    pub mirror: bool,
    /// Any-angle rotation (IIIF), applied when not a multiple of 90.
    pub free_rotation: Option<f64>,
    /// Encoder quality from `QLT`; `None` = the format's configured default.
    pub quality: Option<i32>,
    /// TIFF compression chosen by `QLT=codec:n` (`TIFF_COMPRESSION` codes).
    pub tiff_codec: Option<i32>,
    /// Horizontal angle (sequence file / stack page).
    pub xangle: i32,
    /// Vertical angle.
    pub yangle: i32,
    /// JPEG2000 quality layers (`LYR`), 0 = default.
    pub layers: i32,
    /// Requested output width/height (`WID`/`HEI`), 0 = unset.
    pub width: u32,
    pub height: u32,
    /// Region in fractions of the full image (`RGN`).
    pub region: Option<[f64; 4]>,
    /// Colour treatment (`COL`, IIIF quality).
    pub colour: Colour,
    /// Float processing (`CNT`, `GAM`, `INV`, `CMP`, `CTW`, `CNV`, `SHD`, `MINMAX`).
    pub processing: Processing,
    /// What the access policy lets this client see of the image.
    pub access: Access,
}

impl Default for View {
    fn default() -> Self {
        View {
            rotation: 0.0,
            mirror: false,
            free_rotation: None,
            quality: None,
            tiff_codec: None,
            xangle: 0,
            yangle: 90,
            layers: 0,
            width: 0,
            height: 0,
            region: None,
            colour: Colour::AsIs,
            processing: Processing::default(),
            access: Access::Full,
        }
    }
}

impl View {
    /// The rotation actually applied: `(int)angle` when a multiple of 90 and not of 360.
    pub fn right_angle(&self) -> u32 {
        let a = self.rotation as i64;
        if a % 90 == 0 && a % 360 != 0 {
            a.rem_euclid(360) as u32
        } else {
            0
        }
    }

    /// True when tile pixels must be decoded rather than passed through.
    pub fn needs_pixels(&self) -> bool {
        self.mirror
            || self.right_angle() != 0
            || self.rotation != 0.0
            || self.free_rotation.is_some()
            || self.colour != Colour::AsIs
            || self.processing.needs_float()
            || self.processing.needs_histogram()
    }
}

/// What a client may see of an image (decided by the access policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Access {
    #[default]
    Full,
    /// The image as if it were no larger than this many pixels on its longer side.
    Degraded(u32),
}

impl Access {
    /// Bytes that set answers for different access apart in cache keys.
    pub fn key_bytes(self) -> [u8; 5] {
        match self {
            Access::Full => [0; 5],
            Access::Degraded(m) => {
                let b = m.to_le_bytes();
                [1, b[0], b[1], b[2], b[3]]
            }
        }
    }

    /// Whether a pyramid level (or any rendition) of `w×h` pixels may be seen.
    pub fn allows_level(self, w: u32, h: u32) -> bool {
        match self {
            Access::Full => true,
            Access::Degraded(m) => w <= m && h <= m,
        }
    }

    /// The largest output of `region` (fractions of the full `W×H` image) this access
    /// allows: the region's share of the image scaled down to the degraded size.
    pub fn output_limit(self, region: [f64; 4], (fw, fh): (u32, u32)) -> Option<(u32, u32)> {
        let Access::Degraded(m) = self else {
            return None;
        };
        let long = fw.max(fh).max(1) as f64;
        let s = (m as f64 / long).min(1.0);
        let lim = |frac: f64, full: u32| ((frac * full as f64 * s).ceil() as u32).max(1);
        Some((lim(region[2], fw), lim(region[3], fh)))
    }

    /// Whether an output of `w×h` from `region` stays within [`Self::output_limit`].
    pub fn allows_output(self, region: [f64; 4], full: (u32, u32), (w, h): (u32, u32)) -> bool {
        self.output_limit(region, full)
            .is_none_or(|(lw, lh)| w <= lw && h <= lh)
    }

    /// `w×h` shrunk, keeping its shape, to fit [`Self::output_limit`].
    pub fn clamp_output(
        self,
        region: [f64; 4],
        full: (u32, u32),
        (w, h): (u32, u32),
    ) -> (u32, u32) {
        match self.output_limit(region, full) {
            Some((lw, lh)) if w > lw || h > lh => {
                let f = (lw as f64 / w as f64).min(lh as f64 / h as f64);
                (
                    ((w as f64 * f).round() as u32).clamp(1, lw),
                    ((h as f64 * f).round() as u32).clamp(1, lh),
                )
            }
            _ => (w, h),
        }
    }
}

/// One tile of one resolution, in IIP numbering (`res` 0 = smallest level).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TileRequest {
    pub res: i64,
    pub tile: i64,
    pub format: Format,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degraded_limits_scale_with_the_region() {
        let d = Access::Degraded(800);
        let full = [0.0, 0.0, 1.0, 1.0];
        assert_eq!(d.output_limit(full, (1001, 777)), Some((800, 621)));
        assert_eq!(
            d.output_limit([0.0, 0.0, 0.5, 0.5], (1001, 777)),
            Some((400, 311))
        );
        assert!(d.allows_output(full, (1001, 777), (800, 600)));
        assert!(!d.allows_output([0.0, 0.0, 0.1, 0.1], (1001, 777), (200, 200)));
        assert_eq!(d.clamp_output(full, (1001, 777), (1001, 777)), (800, 621));
        assert!(d.allows_level(500, 388) && !d.allows_level(1001, 777));
        assert!(Access::Full.allows_output(full, (10, 10), (5000, 5000)));
        assert_ne!(Access::Full.key_bytes(), d.key_bytes());
    }

    #[test]
    fn processing_forces_pixels() {
        let mut v = View::default();
        assert!(!v.needs_pixels());
        v.processing.invert = true;
        assert!(v.needs_pixels());
        let mut v = View::default();
        v.processing.contrast = crate::pipeline::float::Contrast::Equalise;
        assert!(v.needs_pixels());
        let v = View {
            free_rotation: Some(10.0),
            ..View::default()
        };
        assert!(v.needs_pixels());
    }

    #[test]
    fn right_angles() {
        let mut v = View::default();
        for (a, r) in [
            (90.0, 90),
            (180.0, 180),
            (270.0, 270),
            (360.0, 0),
            (45.0, 0),
            (-90.0, 270),
            (90.7, 90),
        ] {
            v.rotation = a;
            assert_eq!(v.right_angle(), r, "{a}");
        }
    }
}

/// Colour treatment requested for the output (IIP `COL`, IIIF quality).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Colour {
    #[default]
    AsIs,
    Grey,
    Bitonal,
}

/// A region export: a part of the full image at a given output size.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionRequest {
    /// `(x, y, w, h)` as fractions of the full image, already cropped to it.
    pub region: [f64; 4],
    /// Output size before rotation.
    pub width: u32,
    pub height: u32,
    pub format: Format,
    pub colour: Colour,
    /// Clamp the output to the chosen level's region size (no upscaling).
    pub no_upscale: bool,
    /// `attachment` rather than `inline` in Content-Disposition (IIP POST).
    pub attachment: bool,
}

/// Output size of an IIP `CVT` (docs/protocols.md §1.4): `region` fractions,
/// `WID`/`HEI` (0 = unset), full size `W×H`, `MAX_CVT`.
pub fn cvt_size(
    region: [f64; 4],
    wid: u32,
    hei: u32,
    full: (u32, u32),
    max_cvt: Option<u32>,
) -> (u32, u32) {
    let (fw, fh) = (full.0 as f64, full.1 as f64);
    let (rw, rh) = (region[2] * fw, region[3] * fh);
    let ratio = rw / rh;
    let (mut w, mut h) = match (wid, hei) {
        (0, 0) => (rw.round(), rh.round()),
        (w, 0) => (w as f64, (w as f64 / ratio).round()),
        (0, h) => ((h as f64 * ratio).round(), h as f64),
        (w, h) => {
            if w as f64 / rw > h as f64 / rh {
                ((h as f64 * ratio).round(), h as f64)
            } else {
                (w as f64, (w as f64 / ratio).round())
            }
        }
    };
    if let Some(m) = max_cvt.map(f64::from) {
        if w > m || h > m {
            if w > h {
                (w, h) = (m, (m / ratio).round());
            } else if h > w {
                (w, h) = ((m * ratio).round(), m);
            } else {
                (w, h) = (m, m);
            }
        }
    }
    (
        w.clamp(1.0, u32::MAX as f64) as u32,
        h.clamp(1.0, u32::MAX as f64) as u32,
    )
}

#[cfg(test)]
mod cvt_tests {
    use super::*;

    const FULL: [f64; 4] = [0.0, 0.0, 1.0, 1.0];

    #[test]
    fn cvt_sizes_f18_f19_c1_c14() {
        let s = (1001, 777);
        assert_eq!(cvt_size(FULL, 400, 400, s, Some(5000)), (400, 310));
        assert_eq!(cvt_size(FULL, 0, 100, s, Some(5000)), (129, 100));
        assert_eq!(cvt_size(FULL, 500, 0, (5000, 3000), Some(5000)), (500, 300));
        assert_eq!(cvt_size(FULL, 0, 0, s, Some(5000)), (1001, 777));
        assert_eq!(cvt_size(FULL, 300, 0, s, Some(5000)), (300, 233));
        assert_eq!(cvt_size(FULL, 6000, 0, s, Some(5000)), (5000, 3881));
        assert_eq!(
            cvt_size([0.25, 0.25, 0.5, 0.5], 300, 0, s, Some(5000)),
            (300, 233)
        );
        assert_eq!(
            cvt_size([0.0, 0.0, 0.5, 1.0], 0, 0, s, Some(5000)),
            (501, 777)
        );
        assert_eq!(
            cvt_size([0.0, 0.0, 0.5, 0.5], 0, 0, s, Some(5000)),
            (501, 389)
        );
        assert_eq!(cvt_size(FULL, 1001, 0, s, Some(800)), (800, 621));
        assert_eq!(cvt_size(FULL, 6000, 0, s, None), (6000, 4657));
    }
}
