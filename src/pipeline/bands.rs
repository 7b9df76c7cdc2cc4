//! Resizing band by band: a region export reads its source a band of rows at a time
//! and turns each band into finished output rows, so what it holds is the output plus a
//! few bands, never the whole source region. The rows are exactly those a whole-image
//! [`resize`](super::resample::resize) gives (every pass knows which input rows each
//! output row needs). Pure: the rows come from a caller's closure.

use super::resample::{plan, Filter, Pass};
use super::Raster;
use std::ops::Range;

/// Input rows of one pass kept from one band to the next: rows `first..` of its input.
struct Carry {
    first: usize,
    rows: Raster,
}

impl Carry {
    fn end(&self) -> usize {
        self.first + self.rows.height as usize
    }

    /// Drops the rows before `row` (rows are asked for in increasing order).
    fn drop_before(&mut self, row: usize) {
        if row <= self.first {
            return;
        }
        let n = (row - self.first).min(self.rows.height as usize);
        let len = self.rows.width as usize * self.rows.channels as usize;
        self.rows.data.drain(..n * len);
        self.rows.height -= n as u32;
        self.first += n;
        if self.rows.height == 0 {
            self.first = row;
        }
    }

    /// Appends rows that start at [`Carry::end`].
    fn append(&mut self, mut more: Raster) {
        if self.rows.height == 0 {
            self.rows = more;
        } else if self.rows.data.len() < more.data.len() {
            // Usually a few rows kept and a new band: the few go in front of the band
            // rather than the band after them, so a band is never copied whole.
            more.data.splice(0..0, self.rows.data.drain(..));
            more.height += self.rows.height;
            self.rows = more;
        } else {
            self.rows.data.extend_from_slice(&more.data);
            self.rows.height += more.height;
        }
    }
}

/// Why a banded resize stopped: the source failed, or the output did not fit in memory.
#[derive(Debug)]
pub enum BandError<E> {
    Source(E),
    OutOfMemory(usize),
}

/// Resizes an `iw×ih` source to `w×h` with `filter`, `band` output rows at a time.
/// `read(first, end)` returns source rows from `first`, at least up to `end` (more is
/// fine: a reader may round up to whole tiles), `iw` columns wide, every band with the
/// same channels.
pub fn resize<E>(
    (iw, ih): (u32, u32),
    (w, h): (u32, u32),
    filter: Filter,
    band: u32,
    mut read: impl FnMut(usize, usize) -> Result<Raster, E>,
) -> Result<Raster, BandError<E>> {
    let passes = plan(iw, ih, w, h, filter);
    let mut carries: Vec<Carry> = passes
        .iter()
        .map(|p| Carry {
            first: 0,
            rows: Raster {
                width: p.input.0 as u32,
                height: 0,
                channels: 0,
                data: Vec::new(),
            },
        })
        .collect();
    let last = passes.last().expect("a plan has passes");
    let mut data = Vec::new();
    let mut channels = 0;
    let band = band.max(1) as usize;
    let mut j = 0;
    while j < h as usize {
        let rows = j..(j + band).min(h as usize);
        feed(&passes, &mut carries, rows.clone(), &mut read)?;
        let carry = carries.last().expect("one carry per pass");
        if j == 0 {
            // The channels are known once the first band is read. Zeroed memory this
            // large comes straight from the kernel, so it is not written twice.
            channels = carry.rows.channels;
            let len = (w as usize)
                .saturating_mul(h as usize)
                .saturating_mul(channels as usize);
            data = super::zeroed(len).ok_or(BandError::OutOfMemory(len))?;
        }
        let row = w as usize * channels as usize;
        let dst = &mut data[rows.start * row..rows.end * row];
        last.run_into(&carry.rows, carry.first, rows.clone(), dst);
        j = rows.end;
    }
    Ok(Raster {
        width: w,
        height: h,
        channels,
        data,
    })
}

/// Output rows `rows` of the last of `passes`, pulling input rows through the earlier
/// passes (or from `read`, for the first).
fn pull<E>(
    passes: &[Pass],
    carries: &mut [Carry],
    rows: Range<usize>,
    read: &mut impl FnMut(usize, usize) -> Result<Raster, E>,
) -> Result<Raster, BandError<E>> {
    feed(passes, carries, rows.clone(), read)?;
    let carry = carries.last().expect("one carry per pass");
    let pass = passes.last().expect("a plan has passes");
    Ok(pass.run(&carry.rows, carry.first, rows))
}

/// Makes the last of `passes` hold (in its carry) the input rows that its output rows
/// `rows` need, pulling them through the earlier passes (or from `read`, for the first).
fn feed<E>(
    passes: &[Pass],
    carries: &mut [Carry],
    rows: Range<usize>,
    read: &mut impl FnMut(usize, usize) -> Result<Raster, E>,
) -> Result<(), BandError<E>> {
    let (pass, earlier) = passes.split_last().expect("a plan has passes");
    let (carry, below) = carries.split_last_mut().expect("one carry per pass");
    let need = pass.input_rows(rows);
    carry.drop_before(need.start);
    if carry.end() < need.end {
        let from = carry.end().max(need.start);
        let more = if earlier.is_empty() {
            read(from, need.end).map_err(BandError::Source)?
        } else {
            pull(earlier, below, from..need.end, read)?
        };
        carry.append(more);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::resample;

    fn noise(w: u32, h: u32, c: u16) -> Raster {
        let mut seed = 99u32;
        let data = (0..w as usize * h as usize * c as usize)
            .map(|_| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (seed >> 16) as u8
            })
            .collect();
        Raster {
            width: w,
            height: h,
            channels: c,
            data,
        }
    }

    #[test]
    fn bands_give_the_rows_of_the_whole_image() {
        // Reductions with and without the block pre-pass, an enlargement, a copy, for
        // every filter, read in odd band sizes and with readers that round up.
        for (iw, ih, w, h) in [
            (300, 211, 187, 140),
            (1000, 777, 123, 97),
            (64, 50, 150, 120),
            (90, 70, 90, 70),
            (257, 513, 256, 255),
        ] {
            let src = noise(iw, ih, 3);
            for filter in [Filter::Nearest, Filter::Bilinear, Filter::Area] {
                let whole = resample::resize(&src, w, h, filter);
                for (band, round) in [(1, 1), (7, 1), (16, 64), (1000, 256)] {
                    let mut reads = Vec::new();
                    let out = resize(
                        (iw, ih),
                        (w, h),
                        filter,
                        band,
                        |first: usize, end: usize| -> Result<Raster, ()> {
                            let end = end.next_multiple_of(round).min(ih as usize);
                            reads.push(first..end);
                            let row = iw as usize * 3;
                            Ok(Raster {
                                width: iw,
                                height: (end - first) as u32,
                                channels: 3,
                                data: src.data[first * row..end * row].to_vec(),
                            })
                        },
                    )
                    .unwrap();
                    assert_eq!(
                        out, whole,
                        "{iw}x{ih} → {w}x{h} {filter:?}, bands of {band}"
                    );
                    // No source row is read twice.
                    let mut next = 0;
                    for r in &reads {
                        assert!(r.start >= next, "{reads:?}");
                        next = r.end;
                    }
                }
            }
        }
    }

    #[test]
    fn a_failing_source_stops_the_resize() {
        let r = resize((100, 100), (50, 50), Filter::Area, 10, |first, _| {
            if first > 30 {
                Err("gone")
            } else {
                Ok(noise(100, 20, 1))
            }
        });
        assert!(matches!(r, Err(BandError::Source("gone"))));
        let r = resize(
            (100, 100),
            (1 << 20, 1 << 20),
            Filter::Nearest,
            1,
            |_, _| Ok::<_, ()>(noise(100, 100, 1)),
        );
        assert!(matches!(r, Err(BandError::OutOfMemory(_))));
    }
}
