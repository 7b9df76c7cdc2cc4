//! Resampling of 8-bit rasters (docs/processing.md §4.10): nearest neighbour, iipsrv's
//! bilinear (with the edge clamp done per axis), and an exact area average for
//! reductions (the default: every source pixel weighs by how much of it an output pixel
//! covers, so nothing aliases and the result tracks vips's reductions).

use super::Raster;

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

/// Source row of output row `j` in nearest-neighbour sampling.
fn nearest_row(ih: usize, h: usize, j: usize) -> usize {
    (((j as f64) * (ih as f64 / h as f64)) as usize).min(ih - 1)
}

/// First source row, blend weight (1/128 steps) and second source row of output row
/// `j` in bilinear sampling.
fn bilinear_row(ih: usize, h: usize, j: usize) -> (usize, u16, usize) {
    let y = j as f64 * (ih as f64 / h as f64);
    let y0 = (y.floor() as usize).min(ih - 1);
    let d = ((y - y0 as f64) * 128.0).round() as u16;
    (y0, d, (y0 + 1).min(ih - 1))
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

/// Fixed-point unit of the area weights: 8 bits keep every product and sum of the
/// vertical pass in 16 bits (255 · 256 < 65 536), which vectorises twice as wide.
const ONE: u32 = 1 << 8;

/// The input span and weights (summing to [`ONE`]) of every output index when `inp`
/// samples shrink to `out`: `(first input index, range into the weight list)`.
fn area_weights(inp: usize, out: usize) -> (Vec<(usize, std::ops::Range<usize>)>, Vec<u32>) {
    let scale = inp as f64 / out as f64;
    let mut spans = Vec::with_capacity(out);
    let mut weights = Vec::with_capacity(out * (scale.ceil() as usize + 1));
    for i in 0..out {
        let (a, b) = (i as f64 * scale, ((i + 1) as f64 * scale).min(inp as f64));
        let first = (a.floor() as usize).min(inp - 1);
        let last = ((b.ceil() as usize).max(first + 1)).min(inp);
        let start = weights.len();
        // Weights from rounded cumulative coverage: they sum to ONE exactly, however many.
        let mut done = 0.0;
        let mut given = 0;
        for j in first..last {
            done += (b.min(j as f64 + 1.0) - a.max(j as f64)).max(0.0);
            let upto = ((done / (b - a)).min(1.0) * ONE as f64).round() as u32;
            weights.push(upto - given);
            given = upto;
        }
        let tail = weights.len() - 1;
        weights[tail] += ONE - given;
        spans.push((first, start..weights.len()));
    }
    (spans, weights)
}

/// Area-average reduction to `w×h` (`w ≤ width`, `h ≤ height`), separable: columns
/// first (whole rows at a time, a 16-bit loop the compiler vectorises) into
/// intermediates with 8 fraction bits, then rows, on the already reduced height.
pub fn area(r: &Raster, w: u32, h: u32) -> Raster {
    Pass::whole(Step::Area, r, w, h)
}

/// Output rows `out` of an area reduction of an `ih`-row image to `(w, h)`, from the
/// input rows `first..` held in `band`.
fn area_rows(
    band: &Raster,
    first: usize,
    ih: usize,
    (w, h): (usize, usize),
    out: std::ops::Range<usize>,
    dst: &mut [u8],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { area_avx2(band, first, ih, (w, h), out, dst) };
    }
    area_impl(band, first, ih, (w, h), out, dst)
}

/// [`area_rows`] compiled for AVX2: the 16-bit vertical pass runs twice as wide.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn area_avx2(
    band: &Raster,
    first: usize,
    ih: usize,
    size: (usize, usize),
    out: std::ops::Range<usize>,
    dst: &mut [u8],
) {
    area_impl(band, first, ih, size, out, dst)
}

/// Reduces one intermediate row (8 fraction bits) to one output row.
type RowPass = Box<dyn Fn(&[u16], &mut [u8])>;

/// The horizontal pass for N channels and at most T taps per output pixel: T is a
/// constant, so the loops unroll.
fn row_pass<const N: usize, const T: usize>(
    xs: &[(usize, std::ops::Range<usize>)],
    xw: &[u32],
) -> RowPass {
    let taps: Vec<(usize, [u32; T])> = xs
        .iter()
        .map(|(first, span)| {
            let mut w = [0u32; T];
            w[..span.len()].copy_from_slice(&xw[span.clone()]);
            (*first, w)
        })
        .collect();
    Box::new(move |src: &[u16], dst: &mut [u8]| {
        for (&(first, w), o) in taps.iter().zip(dst.chunks_exact_mut(N)) {
            let px = &src[first * N..(first + T) * N];
            let mut acc = [1u32 << 15; N];
            for t in 0..T {
                for k in 0..N {
                    acc[k] += w[t] * px[t * N + k] as u32;
                }
            }
            for k in 0..N {
                o[k] = (acc[k] >> 16).min(255) as u8;
            }
        }
    })
}

/// The weights of one output pixel's span as the vector passes take them: 16-bit, up to
/// four taps, zero past the span's end.
fn tap_weights(xw: &[u32], span: &std::ops::Range<usize>) -> [i16; 4] {
    let mut w = [0i16; 4];
    for (d, &v) in w.iter_mut().zip(&xw[span.clone()]) {
        *d = v as i16;
    }
    w
}

/// [`row_pass`] for 3 or 4 channels on SSE2 (part of every x86-64 CPU): one output
/// pixel per step, two taps per multiply-add. A tap's pixel is loaded as four 16-bit
/// lanes (for 3 channels the fourth is the next pixel's first sample, weighed into a
/// lane that is dropped), halved to fit signed 16 bits (7 fraction bits are plenty for
/// an 8-bit result), and paired with the next tap's pixel so that `pmaddwd` forms
/// `w0·p0 + w1·p1` per channel.
#[cfg(target_arch = "x86_64")]
fn row_pass_sse2<const N: usize, const T: usize>(
    xs: &[(usize, std::ops::Range<usize>)],
    xw: &[u32],
) -> RowPass {
    use std::arch::x86_64::*;
    // Four lanes per load hold a whole pixel of 3 or 4 channels (callers check N).
    assert!(N == 3 || N == 4);
    const { assert!(T >= 1 && T <= 4) };
    // Per output pixel: its first source sample and, per pair of taps, the weights as
    // [w0, w1] repeated over four channel lanes.
    let pairs = T.div_ceil(2);
    let mut firsts = Vec::with_capacity(xs.len());
    let mut weights: Vec<[i16; 8]> = Vec::with_capacity(xs.len() * pairs);
    for (first, span) in xs {
        let w = tap_weights(xw, span);
        firsts.push(first * N);
        for p in 0..pairs {
            let (a, b) = (w[2 * p], w[2 * p + 1]);
            weights.push([a, b, a, b, a, b, a, b]);
        }
    }
    Box::new(move |src: &[u16], dst: &mut [u8]| {
        // Every load reads four lanes from a tap's first sample: the row must hold them.
        let need = firsts.last().map_or(0, |&f| f + (T - 1) * N + 4);
        assert!(src.len() >= need && dst.len() >= firsts.len() * N);
        for (i, (&f, o)) in firsts.iter().zip(dst.chunks_exact_mut(N)).enumerate() {
            // SAFETY: SSE2 is part of x86-64; every load reads 4 lanes at `f + t·N` for
            // t < T, inside `src` by the assertion above; the weight index is in bounds
            // (`pairs` entries per output pixel).
            unsafe {
                let at = |t: usize| {
                    let v = _mm_loadl_epi64(src.as_ptr().add(f + t * N) as *const __m128i);
                    _mm_srli_epi16::<1>(v)
                };
                let wp = weights.as_ptr().add(i * pairs) as *const __m128i;
                let mut acc = _mm_set1_epi32(1 << 14);
                let mut t = 0;
                while t < T {
                    let hi = if t + 1 < T {
                        at(t + 1)
                    } else {
                        _mm_setzero_si128()
                    };
                    let pair = _mm_unpacklo_epi16(at(t), hi);
                    acc = _mm_add_epi32(acc, _mm_madd_epi16(pair, _mm_loadu_si128(wp.add(t / 2))));
                    t += 2;
                }
                let v = _mm_srai_epi32::<15>(acc);
                let v = _mm_packus_epi16(_mm_packs_epi32(v, v), v);
                let px = (_mm_cvtsi128_si32(v) as u32).to_le_bytes();
                o.copy_from_slice(&px[..N]);
            }
        }
    })
}

/// [`row_pass_sse2`] two output pixels at a time, one per 128-bit half of an AVX2
/// register, with the same arithmetic (so the same results). Two adjacent taps come
/// from one 16-byte load shuffled into `pmaddwd` pairs, instead of two loads and an
/// unpack. An odd last output pixel goes through the SSE2 pass.
#[cfg(target_arch = "x86_64")]
fn row_pass_avx2<const N: usize, const T: usize>(
    xs: &[(usize, std::ops::Range<usize>)],
    xw: &[u32],
) -> RowPass {
    assert!(N == 3 || N == 4);
    const { assert!(T >= 2 && T <= 4) };
    // The closure below runs AVX2 code: refuse to build it on a CPU without AVX2.
    assert!(std::arch::is_x86_feature_detected!("avx2"));
    let pairs = T.div_ceil(2);
    let n = xs.len();
    let even = n / 2 * 2;
    let tail = (n > even).then(|| row_pass_sse2::<N, T>(&xs[even..], xw));
    let mut firsts = Vec::with_capacity(even / 2);
    let mut weights: Vec<[i16; 16]> = Vec::with_capacity(even / 2 * pairs);
    for two in xs[..even].chunks_exact(2) {
        firsts.push([two[0].0 * N, two[1].0 * N]);
        let (w0, w1) = (tap_weights(xw, &two[0].1), tap_weights(xw, &two[1].1));
        for p in 0..pairs {
            let (a0, b0, a1, b1) = (w0[2 * p], w0[2 * p + 1], w1[2 * p], w1[2 * p + 1]);
            weights.push([
                a0, b0, a0, b0, a0, b0, a0, b0, a1, b1, a1, b1, a1, b1, a1, b1,
            ]);
        }
    }
    // Byte shuffles of a 16-byte load at tap t: `two` makes [t·c, (t+1)·c] 16-bit pairs
    // per channel c (tap t+1 starts N lanes on); `one` makes [t·c, 0] pairs. Lanes of
    // channels past N are zeroed.
    let mut two = [-1i8; 32];
    let mut one = [-1i8; 32];
    for half in 0..2 {
        for c in 0..N {
            for b in 0..2 {
                let at = half * 16 + 4 * c + b;
                two[at] = (2 * c + b) as i8;
                two[at + 2] = (2 * (N + c) + b) as i8;
                one[at] = (2 * c + b) as i8;
            }
        }
    }
    Box::new(move |src: &[u16], dst: &mut [u8]| {
        // Every load reads eight lanes from a tap's first sample: the row must hold them.
        let need = firsts.last().map_or(0, |f| f[1] + (T - 1) * N + 8);
        assert!(src.len() >= need && dst.len() >= n * N);
        // SAFETY: the CPU has AVX2 (asserted when the pass was built); loads stay inside
        // `src` by the assertion above, stores inside `dst`.
        unsafe { row_pairs_avx2::<N, T>(&firsts, &weights, &two, &one, src, dst) };
        if let Some(tail) = &tail {
            tail(src, &mut dst[even * N..]);
        }
    })
}

/// The loop of [`row_pass_avx2`] over pairs of output pixels.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn row_pairs_avx2<const N: usize, const T: usize>(
    firsts: &[[usize; 2]],
    weights: &[[i16; 16]],
    two: &[i8; 32],
    one: &[i8; 32],
    src: &[u16],
    dst: &mut [u8],
) {
    use std::arch::x86_64::*;
    let pairs = T.div_ceil(2);
    let two = _mm256_loadu_si256(two.as_ptr() as *const __m256i);
    let one = _mm256_loadu_si256(one.as_ptr() as *const __m256i);
    let s = src.as_ptr();
    for (i, (&[f0, f1], o)) in firsts.iter().zip(dst.chunks_exact_mut(2 * N)).enumerate() {
        let wp = weights.as_ptr().add(i * pairs) as *const __m256i;
        let mut acc = _mm256_set1_epi32(1 << 14);
        let mut t = 0;
        while t < T {
            let mask = if t + 1 < T { two } else { one };
            // (Written out, not a closure: a closure would not inherit AVX2.)
            let lo = _mm_loadu_si128(s.add(f0 + t * N) as *const __m128i);
            let hi = _mm_loadu_si128(s.add(f1 + t * N) as *const __m128i);
            let taps = _mm256_inserti128_si256::<1>(_mm256_castsi128_si256(lo), hi);
            let v = _mm256_srli_epi16::<1>(_mm256_shuffle_epi8(taps, mask));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(v, _mm256_loadu_si256(wp.add(t / 2))));
            t += 2;
        }
        let v = _mm256_srai_epi32::<15>(acc);
        let v = _mm256_packus_epi16(_mm256_packs_epi32(v, v), v);
        let a = (_mm_cvtsi128_si32(_mm256_castsi256_si128(v)) as u32).to_le_bytes();
        let b = (_mm_cvtsi128_si32(_mm256_extracti128_si256::<1>(v)) as u32).to_le_bytes();
        o[..N].copy_from_slice(&a[..N]);
        o[N..].copy_from_slice(&b[..N]);
    }
}

/// The fastest horizontal pass for N channels and spans of at most `taps` samples
/// (SSE2 for 3 and 4 channels on x86-64); `None` above 4 taps.
fn row_pass_for<const N: usize>(
    taps: usize,
    xs: &[(usize, std::ops::Range<usize>)],
    xw: &[u32],
) -> Option<RowPass> {
    fn pick<const N: usize, const T: usize>(
        xs: &[(usize, std::ops::Range<usize>)],
        xw: &[u32],
    ) -> RowPass {
        #[cfg(target_arch = "x86_64")]
        if N == 3 || N == 4 {
            if std::arch::is_x86_feature_detected!("avx2") {
                return row_pass_avx2::<N, T>(xs, xw);
            }
            return row_pass_sse2::<N, T>(xs, xw);
        }
        row_pass::<N, T>(xs, xw)
    }
    Some(match taps {
        0..=2 => pick::<N, 2>(xs, xw),
        3 => pick::<N, 3>(xs, xw),
        4 => pick::<N, 4>(xs, xw),
        _ => return None,
    })
}

/// The horizontal pass for any channel count and span length.
fn row_pass_any(c: usize, xs: Vec<(usize, std::ops::Range<usize>)>, xw: Vec<u32>) -> RowPass {
    Box::new(move |src: &[u16], dst: &mut [u8]| {
        for ((first, span), o) in xs.iter().zip(dst.chunks_exact_mut(c)) {
            for (k, ok) in o.iter_mut().enumerate() {
                let mut a = 1u32 << 15;
                for (t, &wt) in xw[span.clone()].iter().enumerate() {
                    a += wt * src[(first + t) * c + k] as u32;
                }
                *ok = (a >> 16).min(255) as u8;
            }
        }
    })
}

#[inline(always)]
fn area_impl(
    r: &Raster,
    origin: usize,
    ih: usize,
    (ow, oh): (usize, usize),
    out: std::ops::Range<usize>,
    data: &mut [u8],
) {
    let c = r.channels as usize;
    let iw = r.width as usize;
    let (xs, xw) = area_weights(iw, ow);
    let (ys, yw) = area_weights(ih, oh);
    let row_len = iw * c;
    // One output row at a time: its source rows are blended vertically into `mid`, which
    // the horizontal pass then reduces (memory: one intermediate row, not an image).
    // `mid` carries PAD zero pixels on the right, so that a fixed number of taps can be
    // read at every output column (zero weights past a span's end), and the vector
    // passes' 8-lane loads at the last column stay inside it.
    const PAD: usize = 8;
    let mut mid = vec![0u16; (iw + PAD) * c];
    let taps = xs.iter().map(|(_, s)| s.len()).max().unwrap_or(1);
    let horizontal = match c {
        1 => row_pass_for::<1>(taps, &xs, &xw),
        3 => row_pass_for::<3>(taps, &xs, &xw),
        4 => row_pass_for::<4>(taps, &xs, &xw),
        _ => None,
    }
    .unwrap_or_else(|| row_pass_any(c, xs, xw));
    for ((first, span), out) in ys[out].iter().zip(data.chunks_exact_mut(ow * c)) {
        for (t, &wt) in yw[span.clone()].iter().enumerate() {
            let y = first + t - origin;
            let src = &r.data[y * row_len..(y + 1) * row_len];
            let wt = wt as u16;
            // The first row sets the sums (the padding past `row_len` stays zero);
            // weights of a span sum to 256, so the sums stay below 65 536.
            if t == 0 {
                for (a, &v) in mid.iter_mut().zip(src) {
                    *a = wt * v as u16;
                }
            } else {
                for (a, &v) in mid.iter_mut().zip(src) {
                    *a = a.wrapping_add(wt * v as u16);
                }
            }
        }
        horizontal(&mid, out);
    }
}

/// Output `(i,j)` ← input `(floor(i·sx), floor(j·sy))`.
pub fn nearest(r: &Raster, w: u32, h: u32) -> Raster {
    Pass::whole(Step::Nearest, r, w, h)
}

fn nearest_rows(
    r: &Raster,
    first: usize,
    ih: usize,
    (w, h): (usize, usize),
    out: std::ops::Range<usize>,
) -> Vec<u8> {
    let c = r.channels as usize;
    let sx = r.width as f64 / w as f64;
    let xs: Vec<usize> = (0..w)
        .map(|i| ((i as f64 * sx) as usize).min(r.width as usize - 1) * c)
        .collect();
    let mut data = Vec::with_capacity(w * out.len() * c);
    for j in out {
        let y = nearest_row(ih, h, j) - first;
        let row = &r.data[y * r.width as usize * c..];
        for &x in &xs {
            data.extend_from_slice(&row[x..x + c]);
        }
    }
    data
}

/// iipsrv's bilinear interpolation with `x0+1` and `y0+1` clamped to the last column/row.
pub fn bilinear(r: &Raster, w: u32, h: u32) -> Raster {
    Pass::whole(Step::Bilinear, r, w, h)
}

fn bilinear_rows(
    r: &Raster,
    first: usize,
    ih: usize,
    (w, h): (usize, usize),
    out: std::ops::Range<usize>,
    data: &mut [u8],
) {
    let c = r.channels as usize;
    let iw = r.width as usize;
    let sx = iw as f64 / w as f64;
    // Per-column source indices and weights (fixed point, 1/128 steps: at most one level
    // away from the float formula), computed once.
    let cols: Vec<(usize, usize, u32, u32)> = (0..w)
        .map(|i| {
            let x = i as f64 * sx;
            let x0 = (x.floor() as usize).min(iw - 1);
            let b = ((x - x0 as f64) * 128.0).round() as u32;
            (x0 * c, (x0 + 1).min(iw - 1) * c, 128 - b, b)
        })
        .collect();
    if data.is_empty() {
        return;
    }
    // Separable: each output row first blends its two source rows vertically (a straight
    // vector loop over u16), then takes two taps per sample from that blend. The integer
    // result is the same as the four-tap formula: nothing is rounded in between.
    let mut blend = vec![0u16; iw * c];
    for (j, out) in out.zip(data.chunks_exact_mut(w * c)) {
        let (y0, d, y1) = bilinear_row(ih, h, j);
        let (y0, y1) = (y0 - first, y1 - first);
        let cw = 128 - d;
        let top = &r.data[y0 * iw * c..(y0 + 1) * iw * c];
        let bottom = &r.data[y1 * iw * c..(y1 + 1) * iw * c];
        for ((v, &t), &b) in blend.iter_mut().zip(top).zip(bottom) {
            *v = cw * t as u16 + d * b as u16;
        }
        // Fixed-size slices for the usual channel counts let the compiler drop the
        // bounds checks and unroll.
        fn px<const N: usize>(out: &mut [u8], cols: &[(usize, usize, u32, u32)], row: &[u16]) {
            for (o, &(p0, p1, a, b)) in out.chunks_exact_mut(N).zip(cols) {
                let (s0, s1) = (&row[p0..p0 + N], &row[p1..p1 + N]);
                for k in 0..N {
                    o[k] = ((a * s0[k] as u32 + b * s1[k] as u32) >> 14) as u8;
                }
            }
        }
        match c {
            1 => px::<1>(out, &cols, &blend),
            2 => px::<2>(out, &cols, &blend),
            3 => px::<3>(out, &cols, &blend),
            4 => px::<4>(out, &cols, &blend),
            _ => {
                for (o, &(p0, p1, a, b)) in out.chunks_exact_mut(c).zip(&cols) {
                    for k in 0..c {
                        o[k] = ((a * blend[p0 + k] as u32 + b * blend[p1 + k] as u32) >> 14) as u8;
                    }
                }
            }
        }
    }
}

/// Averages `fx×fy` blocks (edge blocks average what they cover).
pub fn box_reduce(r: &Raster, fx: u32, fy: u32) -> Raster {
    let (iw, ih) = (r.width as usize, r.height as usize);
    let (fx, fy) = (fx.max(1) as usize, fy.max(1) as usize);
    Pass {
        step: Step::Box { fx, fy },
        input: (iw, ih),
        output: (iw.div_ceil(fx), ih.div_ceil(fy)),
    }
    .run(r, 0, 0..ih.div_ceil(fy))
}

fn box_rows(
    r: &Raster,
    first: usize,
    ih: usize,
    (fx, fy): (usize, usize),
    out: std::ops::Range<usize>,
) -> Vec<u8> {
    let c = r.channels as usize;
    let iw = r.width as usize;
    let ow = iw.div_ceil(fx);
    let mut sums = vec![0u32; ow * c];
    let mut data = Vec::with_capacity(ow * out.len() * c);
    for oy in out {
        sums.iter_mut().for_each(|s| *s = 0);
        let (y0, y1) = (oy * fy, ((oy + 1) * fy).min(ih));
        for y in y0 - first..y1 - first {
            let row = &r.data[y * iw * c..(y + 1) * iw * c];
            // One block of fx pixels per output column; no per-pixel division.
            for (block, s) in row.chunks(fx * c).zip(sums.chunks_exact_mut(c)) {
                match c {
                    1 => s[0] += block.iter().map(|&v| v as u32).sum::<u32>(),
                    3 => {
                        let (mut a, mut b, mut d) = (0u32, 0u32, 0u32);
                        for p in block.chunks_exact(3) {
                            a += p[0] as u32;
                            b += p[1] as u32;
                            d += p[2] as u32;
                        }
                        s[0] += a;
                        s[1] += b;
                        s[2] += d;
                    }
                    _ => {
                        for p in block.chunks_exact(c) {
                            for (acc, &v) in s.iter_mut().zip(p) {
                                *acc += v as u32;
                            }
                        }
                    }
                }
            }
        }
        let rows = (y1 - y0) as u32;
        for (o, s) in sums.chunks_exact(c).enumerate() {
            let cols = (((o + 1) * fx).min(iw) - o * fx) as u32;
            let n = (cols * rows).max(1);
            data.extend(s.iter().map(|&v| ((v + n / 2) / n) as u8));
        }
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn vector_row_passes_match_the_scalar_one() {
        // Pseudo-random intermediate rows (8 fraction bits, as the vertical pass leaves
        // them) reduced at ratios giving 2, 3 and 4 taps: within one level of the scalar
        // pass (the SIMD pass drops one fraction bit), and exact on flat rows.
        let mut seed = 12345u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (seed >> 8) as u16 % (255 * 256 + 1)
        };
        for (iw, ow) in [
            (600, 512),
            (1000, 512),
            (700, 300),
            (31, 16),
            (2000, 667),
            (30, 17),
        ] {
            let (xs, xw) = area_weights(iw, ow);
            let taps = xs.iter().map(|(_, s)| s.len()).max().unwrap();
            for c in [3usize, 4] {
                let (scalar, simd): (RowPass, RowPass) = match (c, taps) {
                    (3, 2) => (row_pass::<3, 2>(&xs, &xw), row_pass_sse2::<3, 2>(&xs, &xw)),
                    (3, 3) => (row_pass::<3, 3>(&xs, &xw), row_pass_sse2::<3, 3>(&xs, &xw)),
                    (3, 4) => (row_pass::<3, 4>(&xs, &xw), row_pass_sse2::<3, 4>(&xs, &xw)),
                    (4, 2) => (row_pass::<4, 2>(&xs, &xw), row_pass_sse2::<4, 2>(&xs, &xw)),
                    (4, 3) => (row_pass::<4, 3>(&xs, &xw), row_pass_sse2::<4, 3>(&xs, &xw)),
                    (4, 4) => (row_pass::<4, 4>(&xs, &xw), row_pass_sse2::<4, 4>(&xs, &xw)),
                    other => panic!("{other:?} taps for {iw} -> {ow}"),
                };
                let mut mid: Vec<u16> = (0..iw * c).map(|_| next()).collect();
                mid.resize((iw + 8) * c, 0);
                let (mut a, mut b) = (vec![0u8; ow * c], vec![0u8; ow * c]);
                scalar(&mid, &mut a);
                simd(&mid, &mut b);
                for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                    assert!(x.abs_diff(*y) <= 1, "{iw}->{ow} c{c} at {i}: {x} vs {y}");
                }
                // The AVX2 pass does the SSE2 pass's arithmetic: equal results.
                if std::arch::is_x86_feature_detected!("avx2") {
                    let wide = match (c, taps) {
                        (3, 2) => row_pass_avx2::<3, 2>(&xs, &xw),
                        (3, 3) => row_pass_avx2::<3, 3>(&xs, &xw),
                        (3, 4) => row_pass_avx2::<3, 4>(&xs, &xw),
                        (4, 2) => row_pass_avx2::<4, 2>(&xs, &xw),
                        (4, 3) => row_pass_avx2::<4, 3>(&xs, &xw),
                        _ => row_pass_avx2::<4, 4>(&xs, &xw),
                    };
                    let mut v = vec![0u8; ow * c];
                    wide(&mid, &mut v);
                    assert_eq!(v, b, "{iw}->{ow} c{c}: AVX2 and SSE2 passes differ");
                }
                let flat: Vec<u16> = (0..(iw + 4) * c)
                    .map(|i| if i < iw * c { 77 * 256 } else { 0 })
                    .collect();
                simd(&flat, &mut b);
                assert!(b.iter().all(|&v| v == 77), "{iw}->{ow} c{c} flat");
            }
        }
    }

    #[test]
    fn area_averages_what_each_output_pixel_covers() {
        // 4 → 2: pairs; 3 → 2: the middle pixel is split in halves.
        let r = Raster {
            width: 4,
            height: 1,
            channels: 1,
            data: vec![10, 20, 100, 200],
        };
        assert_eq!(area(&r, 2, 1).data, vec![15, 150]);
        let r = Raster {
            width: 3,
            height: 3,
            channels: 2,
            data: (0..18).map(|i| [0u8, 90, 180][(i / 2) % 3]).collect(),
        };
        // Output column 0 covers pixel 0 and half of pixel 1: (0 + 45) / 1.5 = 30.
        let out = area(&r, 2, 2);
        assert_eq!(out.data, vec![30, 30, 150, 150, 30, 30, 150, 150]);
        // A flat image stays flat at any ratio; the weights sum to one exactly.
        let flat = Raster {
            width: 97,
            height: 31,
            channels: 3,
            data: vec![201; 97 * 31 * 3],
        };
        for (w, h) in [(1, 1), (13, 7), (96, 30), (97, 31)] {
            let out = resize(&flat, w, h, Filter::Area);
            assert!(out.data.iter().all(|&v| v == 201), "{w}x{h}");
        }
        // Enlarging falls back to bilinear.
        let up = resize(&flat, 120, 40, Filter::Area);
        assert_eq!((up.width, up.height), (120, 40));
    }

    /// iipsrv's bilinear formula written plainly (docs/processing.md §4.10).
    fn bilinear_reference(r: &Raster, w: u32, h: u32) -> Vec<u8> {
        let c = r.channels as usize;
        let (iw, ih) = (r.width as usize, r.height as usize);
        let (sx, sy) = (iw as f64 / w as f64, ih as f64 / h as f64);
        let at = |x: usize, y: usize, k: usize| r.data[(y * iw + x) * c + k] as f32;
        let mut out = Vec::new();
        for j in 0..h as usize {
            let y = j as f64 * sy;
            let y0 = (y.floor() as usize).min(ih - 1);
            let y1 = (y0 + 1).min(ih - 1);
            let d = (y - y0 as f64) as f32;
            for i in 0..w as usize {
                let x = i as f64 * sx;
                let x0 = (x.floor() as usize).min(iw - 1);
                let x1 = (x0 + 1).min(iw - 1);
                let b = (x - x0 as f64) as f32;
                let a = 1.0 - b;
                for k in 0..c {
                    let t = a * at(x0, y0, k) + b * at(x1, y0, k);
                    let u = a * at(x0, y1, k) + b * at(x1, y1, k);
                    out.push(((1.0 - d) * t + d * u) as u8);
                }
            }
        }
        out
    }

    #[test]
    fn bilinear_is_within_one_level_of_the_spec_formula() {
        let mut seed = 99u32;
        for c in 1..=5u16 {
            for (iw, ih, w, h) in [
                (37u32, 23u32, 20u32, 11u32),
                (10, 7, 33, 29),
                (64, 64, 48, 40),
            ] {
                let data = (0..iw * ih * c as u32)
                    .map(|_| {
                        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                        (seed >> 24) as u8
                    })
                    .collect();
                let r = Raster {
                    width: iw,
                    height: ih,
                    channels: c,
                    data,
                };
                let (ours, spec) = (bilinear(&r, w, h).data, bilinear_reference(&r, w, h));
                assert_eq!(ours.len(), spec.len());
                let worst = ours.iter().zip(&spec).map(|(a, b)| a.abs_diff(*b)).max();
                assert!(
                    worst <= Some(1),
                    "{c} channels {iw}x{ih}->{w}x{h}: off by {worst:?}"
                );
            }
        }
    }

    #[test]
    fn box_reduce_matches_a_plain_average_at_every_shape() {
        let mut seed = 7u32;
        for (w, h, c, fx, fy) in [
            (13usize, 9usize, 3usize, 4usize, 2usize),
            (8, 8, 1, 3, 3),
            (17, 5, 4, 2, 5),
            (6, 7, 2, 6, 1),
            (31, 3, 5, 7, 2),
        ] {
            let data: Vec<u8> = (0..w * h * c)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
                    (seed >> 24) as u8
                })
                .collect();
            let r = Raster {
                width: w as u32,
                height: h as u32,
                channels: c as u16,
                data,
            };
            let out = box_reduce(&r, fx as u32, fy as u32);
            let (ow, oh) = (w.div_ceil(fx), h.div_ceil(fy));
            assert_eq!((out.width as usize, out.height as usize), (ow, oh));
            for oy in 0..oh {
                for ox in 0..ow {
                    for k in 0..c {
                        let (mut sum, mut n) = (0u32, 0u32);
                        for y in oy * fy..((oy + 1) * fy).min(h) {
                            for x in ox * fx..((ox + 1) * fx).min(w) {
                                sum += r.data[(y * w + x) * c + k] as u32;
                                n += 1;
                            }
                        }
                        assert_eq!(out.data[(oy * ow + ox) * c + k] as u32, (sum + n / 2) / n);
                    }
                }
            }
        }
    }

    fn ramp(w: u32, h: u32) -> Raster {
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
    fn nearest_picks_floor_positions() {
        let r = ramp(4, 2);
        let n = nearest(&r, 2, 1);
        assert_eq!(n.data, vec![0, 20]);
        let up = nearest(&r, 8, 2);
        assert_eq!(&up.data[..4], &[0, 0, 10, 10]);
    }

    #[test]
    fn bilinear_matches_hand_computation() {
        let r = Raster {
            width: 2,
            height: 2,
            channels: 1,
            data: vec![0, 100, 50, 150],
        };
        let b = bilinear(&r, 4, 4);
        // (1,0): x = 0.5 → 50; (1,1): x=0.5,y=0.5 → 75; right edge clamps to the last column.
        assert_eq!(b.data[1], 50);
        assert_eq!(b.data[5], 75);
        assert_eq!(b.data[3], 100);
        assert_eq!(b.data[15], 150);
    }

    #[test]
    fn box_reduce_averages() {
        let r = Raster {
            width: 4,
            height: 2,
            channels: 1,
            data: vec![0, 10, 20, 30, 40, 50, 60, 70],
        };
        let b = box_reduce(&r, 2, 2);
        assert_eq!((b.width, b.height), (2, 1));
        assert_eq!(b.data, vec![25, 45]);
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
