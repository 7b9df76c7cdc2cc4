//! Region, resize and rotation outputs compared with `vips` doing the same operation on
//! the same source: a photograph-like test image (blurred noise over a ramp, 1201×901,
//! a lossless tiled pyramid), exported as PNG so that only the operation differs.

mod common;
use common::*;

/// A decoded PNG as (width, height, channels, samples).
fn png_of(bytes: &[u8]) -> (u32, u32, usize, Vec<u8>) {
    let (w, h, ct, px) = png_decode(bytes);
    let c = ct.samples();
    (w, h, c, px)
}

/// Pixels of the centred `cw×ch` window of an image, first three channels only.
fn centre(img: &(u32, u32, usize, Vec<u8>), cw: u32, ch: u32) -> Vec<u8> {
    let (w, h, c, px) = img;
    let (x0, y0) = ((w - cw) / 2, (h - ch) / 2);
    let mut out = Vec::new();
    for y in y0..y0 + ch {
        for x in x0..x0 + cw {
            let i = ((y * w + x) as usize) * c;
            out.extend_from_slice(&px[i..i + 3]);
        }
    }
    out
}

/// (mean, max) absolute difference of two equally long sample lists.
fn diff(a: &[u8], b: &[u8]) -> (f64, u8) {
    assert_eq!(a.len(), b.len());
    let mut sum = 0u64;
    let mut max = 0u8;
    for (x, y) in a.iter().zip(b) {
        let d = x.abs_diff(*y);
        sum += d as u64;
        max = max.max(d);
    }
    (sum as f64 / a.len() as f64, max)
}

struct Setup {
    dir: TempDir,
    server: Server,
}

impl Setup {
    fn new() -> Setup {
        let dir = TempDir::new("vips");
        let d = dir.0.display();
        sh(&format!(
            "set -e; cd {d}; vips gaussnoise n.v 1201 901 --sigma 40 --mean 128 --seed 7; \
             vips gaussblur n.v nb.v 1.2; vips xyz xy.v 1201 901; vips extract_band xy.v x.v 0; \
             vips linear x.v xr.v 0.2 0; vips add nb.v xr.v s.v; vips bandjoin 's.v nb.v s.v' c.v; \
             vips cast c.v c8.v uchar; vips linear c8.v c9.v '0.8 0.7 0.5' '10 20 40' --uchar; \
             vips tiffsave c9.v photo.tif --tile --pyramid --tile-width 256 --tile-height 256 \
             --compression deflate; vips tiffsave c9.v photo_jpeg.tif --tile --pyramid \
             --tile-width 256 --tile-height 256 --compression jpeg --Q 95"
        ));
        let prefix = format!("{d}/");
        let server = Server::start(
            &[("FILESYSTEM_PREFIX", &prefix), ("URI_MAP", "iiif=>IIIF")],
            1,
        );
        Setup { dir, server }
    }

    /// What vips makes of `photo.tif` with `ops` (a command with `IN` and `OUT`).
    fn vips(&self, ops: &str) -> (u32, u32, usize, Vec<u8>) {
        let d = self.dir.0.display();
        let out = self.dir.0.join("vips-out.png");
        let _ = std::fs::remove_file(&out);
        sh(&format!(
            "cd {d} && {}",
            ops.replace("IN", "photo.tif")
                .replace("OUT", "vips-out.png")
        ));
        png_of(&std::fs::read(out).unwrap())
    }

    fn ours(&self, query: &str) -> (u32, u32, usize, Vec<u8>) {
        let r = if query.starts_with('/') {
            self.server.get_path(query)
        } else {
            self.server.get(query)
        };
        assert_eq!(r.status, 200, "{query}: {}", r.text());
        assert_eq!(r.content_type(), "image/png", "{query}");
        png_of(&r.body)
    }
}

#[test]
fn regions_resizes_and_rotations_match_vips() {
    let s = Setup::new();

    // A region at native size is exactly vips's crop (RGN fractions rounded to pixels).
    let ours = s.ours("FIF=photo.tif&RGN=0.25,0.3,0.4,0.35&CVT=png");
    let theirs = s.vips("vips crop IN OUT 300 270 480 315");
    assert_eq!((ours.0, ours.1), (480, 315));
    assert_eq!(
        ours.3, theirs.3,
        "native-size region differs from vips crop"
    );

    // Reductions from the pyramid: within 1.5 levels on average of vips's resize from
    // full resolution (its Lanczos and our area average differ a little on noise).
    for wid in [250u32, 400, 700, 1000] {
        let ours = s.ours(&format!("FIF=photo.tif&WID={wid}&CVT=png"));
        let (w, h) = (ours.0, ours.1);
        assert_eq!(w, wid);
        let theirs = s.vips(&format!(
            "vips resize IN OUT {} --vscale {}",
            w as f64 / 1201.0,
            h as f64 / 901.0
        ));
        assert_eq!((theirs.0, theirs.1), (w, h));
        let (mad, max) = diff(&ours.3, &theirs.3);
        assert!(
            mad <= 1.5 && max <= 40,
            "WID={wid}: mean {mad:.2}, max {max}"
        );
    }
    // The same for a pyramid of JPEG tiles.
    for wid in [300u32, 450, 800] {
        let ours = s.ours(&format!("FIF=photo_jpeg.tif&WID={wid}&CVT=png"));
        let (w, h) = (ours.0, ours.1);
        let theirs = s.vips(&format!(
            "vips resize photo_jpeg.tif OUT {} --vscale {}",
            w as f64 / 1201.0,
            h as f64 / 901.0
        ));
        let (mad, max) = diff(&ours.3, &theirs.3);
        assert!(
            mad <= 1.5 && max <= 40,
            "JPEG WID={wid}: mean {mad:.2}, max {max}"
        );
    }
    // Region and resize together (IIIF).
    let ours = s.ours("/iiif/photo.tif/300,270,480,316/240,/0/default.png");
    let theirs = s.vips("vips crop IN c.v 300 270 480 316 && vips resize c.v OUT 0.5");
    assert_eq!((ours.0, ours.1), (theirs.0, theirs.1));
    let (mad, _) = diff(&ours.3, &theirs.3);
    assert!(mad <= 1.5, "region + resize: mean {mad:.2}");

    // Quarter turns and mirroring are exact.
    for (rot, op) in [
        ("90", "vips rot IN OUT d90"),
        ("180", "vips rot IN OUT d180"),
        ("270", "vips rot IN OUT d270"),
        ("!0", "vips flip IN OUT horizontal"),
        ("!90", "vips flip IN f.v horizontal && vips rot f.v OUT d90"),
    ] {
        let ours = s.ours(&format!("/iiif/photo.tif/full/max/{rot}/default.png"));
        let theirs = s.vips(op);
        assert_eq!((ours.0, ours.1), (theirs.0, theirs.1), "rotation {rot}");
        assert!(ours.3 == theirs.3, "rotation {rot} differs from vips");
    }

    // Any other angle: the same bounding box as vips's rotate (clockwise, like IIIF),
    // and the same pixels inside it within interpolation differences.
    for angle in [30u32, 135] {
        let ours = s.ours(&format!("/iiif/photo.tif/full/max/{angle}/default.png"));
        let theirs = s.vips(&format!("vips rotate IN OUT {angle}"));
        assert_eq!((ours.0, ours.1), (theirs.0, theirs.1), "{angle}°");
        let (mad, _) = diff(&centre(&ours, 300, 300), &centre(&theirs, 300, 300));
        assert!(mad <= 2.0, "{angle}°: mean {mad:.2}");
    }
}
