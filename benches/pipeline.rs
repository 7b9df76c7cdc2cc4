//! Encoder and resampling benchmarks: one 256² tile through the JPEG, PNG and WebP
//! encoders, and a 4096² → 512² downscale with each filter.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use tessera::encode::{self, Format, Options};
use tessera::pipeline::resample::{resize, Filter};
use tessera::pipeline::Raster;

/// A photographic-looking raster: gradients with a deterministic texture.
fn raster(w: u32, h: u32) -> Raster {
    let mut seed = 12345u32;
    let mut data = Vec::with_capacity((w * h * 3) as usize);
    for y in 0..h {
        for x in 0..w {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let n = seed >> 28;
            data.extend([
                ((x * 255 / w) + n).min(255) as u8,
                ((y * 255 / h) + n).min(255) as u8,
                (((x + y) * 127 / (w + h)) + 2 * n).min(255) as u8,
            ]);
        }
    }
    Raster {
        width: w,
        height: h,
        channels: 3,
        data,
    }
}

fn encoders(c: &mut Criterion) {
    let tile = raster(256, 256);
    let opts = Options::default();
    for (name, format, quality) in [
        ("jpeg q75", Format::Jpeg, 75),
        ("png level 1", Format::Png, 1),
        ("webp q50", Format::Webp, 50),
    ] {
        c.bench_function(&format!("encode 256x256 {name}"), |b| {
            b.iter(|| encode::encode(black_box(&tile), format, quality, opts).unwrap())
        });
    }
}

fn downscale(c: &mut Criterion) {
    let big = raster(4096, 4096);
    let mut g = c.benchmark_group("downscale 4096x4096 to 512x512");
    g.sample_size(20);
    for (name, filter) in [
        ("area", Filter::Area),
        ("bilinear", Filter::Bilinear),
        ("nearest", Filter::Nearest),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| resize(black_box(&big), 512, 512, filter))
        });
    }
    g.finish();
    // A typical IIIF region: the chosen level's area is up to twice the output.
    let region = raster(1000, 800);
    for (name, filter) in [("area", Filter::Area), ("bilinear", Filter::Bilinear)] {
        c.bench_function(&format!("resize 1000x800 to 512x410 {name}"), |b| {
            b.iter(|| resize(black_box(&region), 512, 410, filter))
        });
    }
}

criterion_group!(benches, encoders, downscale);
criterion_main!(benches);
