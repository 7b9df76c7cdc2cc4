//! Resampling of 8-bit rasters (docs/processing.md §4.10): nearest neighbour, iipsrv's
//! bilinear (with the edge clamp done per axis), and an exact area average for
//! reductions (the default: every source pixel weighs by how much of it an output pixel
//! covers, so nothing aliases and the result tracks vips's reductions).
//!
//! Here a resize is planned as a line of passes, each knowing which input rows every
//! output row needs, so that a large export can be resampled band by band (`bands`)
//! with the same result as in one go; the filters the passes run are in `area`,
//! `interp` and `row_pass`.

mod area;
mod interp;
mod row_pass;

use super::Raster;
use area::{area_rows, area_weights, box_rows};
use interp::{bilinear_row, bilinear_rows, nearest_row, nearest_rows};

pub use area::{area, box_reduce};
pub use interp::{bilinear, nearest};

/// How region exports are resized (`INTERPOLATION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    Nearest,
    Bilinear,
    /// Area average when reducing in both directions, bilinear otherwise.
    Area,
}

/// Resizes `r` to `w×h`. Reductions by 2× or more in both directions average whole
/// blocks first (cheap and exact), then finish with the chosen filter. The area filter
/// reduces only; an enlargement in either direction takes bilinear sampling.
pub fn resize(r: &Raster, w: u32, h: u32, filter: Filter) -> Raster {
    let mut passes = plan(r.width, r.height, w, h, filter).into_iter();
    let first = passes.next().expect("a plan has at least one pass");
    let mut out = first.run(r, 0, 0..first.output.1);
    for p in passes {
        out = p.run(&out, 0, 0..p.output.1);
    }
    out
}

/// What one pass of a resize does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Copy,
    /// Averages of `fx×fy` blocks.
    Box {
        fx: usize,
        fy: usize,
    },
    Nearest,
    Bilinear,
    Area,
}

/// One pass of a resize, from `input` to `output` (width, height). Every output row
/// depends on a known range of input rows ([`Pass::input_rows`]), so a pass can run on
/// a band of its input ([`Pass::run`]) and give exactly the rows the whole would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub step: Step,
    pub input: (usize, usize),
    pub output: (usize, usize),
}

/// The passes that take a `iw×ih` raster to `w×h` with `filter` (see [`resize`]).
pub fn plan(iw: u32, ih: u32, w: u32, h: u32, filter: Filter) -> Vec<Pass> {
    let mut passes = Vec::new();
    let (iw, ih, w, h) = (iw as usize, ih as usize, w as usize, h as usize);
    if (iw, ih) == (w, h) {
        passes.push(Pass {
            step: Step::Copy,
            input: (iw, ih),
            output: (w, h),
        });
    } else {
        plan_into(&mut passes, (iw, ih), (w, h), filter);
    }
    passes
}

fn plan_into(
    passes: &mut Vec<Pass>,
    (iw, ih): (usize, usize),
    (w, h): (usize, usize),
    filter: Filter,
) {
    let reducing = w > 0 && h > 0 && w <= iw && h <= ih;
    if filter == Filter::Area && !reducing {
        return plan_into(passes, (iw, ih), (w, h), Filter::Bilinear);
    }
    if filter != Filter::Nearest && iw >= 2 * w && ih >= 2 * h {
        let (fx, fy) = (iw / w, ih / h);
        let boxed = (iw.div_ceil(fx), ih.div_ceil(fy));
        passes.push(Pass {
            step: Step::Box { fx, fy },
            input: (iw, ih),
            output: boxed,
        });
        if boxed != (w, h) {
            plan_into(passes, boxed, (w, h), filter);
        }
        return;
    }
    let step = match filter {
        Filter::Nearest => Step::Nearest,
        Filter::Bilinear => Step::Bilinear,
        Filter::Area => Step::Area,
    };
    passes.push(Pass {
        step,
        input: (iw, ih),
        output: (w, h),
    });
}

impl Pass {
    /// The input rows that output rows `out` are made from.
    pub fn input_rows(&self, out: std::ops::Range<usize>) -> std::ops::Range<usize> {
        let ((_, ih), (_, h)) = (self.input, self.output);
        if out.is_empty() {
            return 0..0;
        }
        let last = out.end - 1;
        match self.step {
            Step::Copy => out,
            Step::Box { fy, .. } => out.start * fy..(out.end * fy).min(ih),
            Step::Nearest => nearest_row(ih, h, out.start)..nearest_row(ih, h, last) + 1,
            Step::Bilinear => bilinear_row(ih, h, out.start).0..bilinear_row(ih, h, last).2 + 1,
            Step::Area => {
                let (ys, _) = area_weights(ih, h);
                ys[out.start].0..ys[last].0 + ys[last].1.len()
            }
        }
    }

    /// `r` resized by `step` to `w×h` in one go.
    fn whole(step: Step, r: &Raster, w: u32, h: u32) -> Raster {
        Pass {
            step,
            input: (r.width as usize, r.height as usize),
            output: (w as usize, h as usize),
        }
        .run(r, 0, 0..h as usize)
    }

    /// Output rows `out`, from `band`: the input rows `first..first + band.height`,
    /// which must cover [`Pass::input_rows`] of `out`.
    pub fn run(&self, band: &Raster, first: usize, out: std::ops::Range<usize>) -> Raster {
        let (w, h) = (self.output.0 as u32, out.len() as u32);
        let len = w as usize * h as usize * band.channels as usize;
        let mut data = vec![0u8; len];
        self.run_into(band, first, out, &mut data);
        Raster {
            width: w,
            height: h,
            channels: band.channels,
            data,
        }
    }

    /// [`Pass::run`] into `dst`, which holds exactly the output rows `out`: a banded
    /// resize writes each band's rows straight into the finished image.
    pub fn run_into(
        &self,
        band: &Raster,
        first: usize,
        out: std::ops::Range<usize>,
        dst: &mut [u8],
    ) {
        let copy = |dst: &mut [u8], rows: Vec<u8>| dst.copy_from_slice(&rows);
        match self.step {
            Step::Copy => {
                let row = band.width as usize * band.channels as usize;
                dst.copy_from_slice(&band.data[(out.start - first) * row..(out.end - first) * row]);
            }
            Step::Box { fx, fy } => copy(dst, box_rows(band, first, self.input.1, (fx, fy), out)),
            Step::Nearest => copy(
                dst,
                nearest_rows(band, first, self.input.1, self.output, out),
            ),
            Step::Bilinear => bilinear_rows(band, first, self.input.1, self.output, out, dst),
            Step::Area => area_rows(band, first, self.input.1, self.output, out, dst),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn ramp(w: u32, h: u32) -> Raster {
        let data = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x * 10 + y) as u8))
            .collect();
        Raster {
            width: w,
            height: h,
            channels: 1,
            data,
        }
    }

    #[test]
    fn resize_reaches_the_requested_size() {
        let r = ramp(25, 17);
        for (w, h) in [(5, 3), (25, 17), (50, 40), (1, 1), (12, 9)] {
            for f in [Filter::Nearest, Filter::Bilinear] {
                let o = resize(&r, w, h, f);
                assert_eq!((o.width, o.height, o.data.len()), (w, h, (w * h) as usize));
            }
        }
    }
}
