//! The horizontal half of the area average: one intermediate row reduced to one output
//! row. It is where a reduction spends its time, so it has vector versions (SSE2 on
//! every x86-64 CPU, AVX2 where present) beside the scalar one they must agree with.

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
pub(super) fn row_pass_for<const N: usize>(
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
pub(super) fn row_pass_any(
    c: usize,
    xs: Vec<(usize, std::ops::Range<usize>)>,
    xw: Vec<u32>,
) -> RowPass {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::resample::area::area_weights;

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
}
