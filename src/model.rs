//! The one request model every protocol parses into, so that rendering never
//! knows which protocol asked.

use crate::encode::Format;

/// View state: what modifiers have set for the output commands that follow.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    /// Rotation in degrees (clockwise); only multiples of 90 are applied.
    pub rotation: f64,
    /// Horizontal mirror before rotation.
    pub mirror: bool,
    /// Encoder quality from `QLT`; `None` = the format's configured default.
    pub quality: Option<i32>,
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
}

impl Default for View {
    fn default() -> Self {
        View {
            rotation: 0.0,
            mirror: false,
            quality: None,
            xangle: 0,
            yangle: 90,
            layers: 0,
            width: 0,
            height: 0,
            region: None,
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
        self.mirror || self.right_angle() != 0 || self.rotation != 0.0
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
