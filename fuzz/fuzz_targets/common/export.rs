//! Region exports of a fuzzed image through the render path, under small request
//! budgets: the band-wise reading and resizing, the memory estimate and the time
//! checks must answer every image with a response, never a panic.

use std::sync::Arc;
use tessera::encode::Format;
use tessera::model::{Colour, RegionRequest, View};

/// Exports all of `image` and a part of it, checking each answer's status.
pub fn exports(image: Arc<dyn tessera::image::Image>) {
    let cfg = tessera::config::Config::from_vars(|k| match k {
        "MAX_REQUEST_MEMORY" => Some("16".into()),
        "MAX_RENDER_TIME" => Some("2".into()),
        _ => None,
    });
    let opened = tessera::image::cache::Opened {
        image,
        mtime: std::time::UNIX_EPOCH,
        reloaded: true,
        path: "fuzz".into(),
        histograms: Default::default(),
    };
    let (w, h) = {
        let l = opened.image.info().levels.first().expect("at least one level");
        (l.width, l.height)
    };
    let asks = [
        ([0.0, 0.0, 1.0, 1.0], w.min(300), h.min(300), Format::Jpeg),
        ([0.3, 0.2, 0.5, 0.6], w.min(97), h.min(53), Format::Png),
        // Upscaled beyond the level: the estimate, not the decoder, must refuse it.
        ([0.0, 0.0, 1.0, 1.0], 5000, 5000, Format::Jpeg),
    ];
    for (region, width, height, format) in asks {
        tessera::budget::start(cfg.max_render_time);
        let req = RegionRequest {
            region,
            width: width.max(1),
            height: height.max(1),
            format,
            colour: Colour::AsIs,
            no_upscale: false,
            attachment: false,
        };
        let r = tessera::render::region(&cfg, None, &opened, "fuzz", &req, &View::default());
        assert!(
            r.status == 200 || (400..600).contains(&r.status),
            "status {}",
            r.status
        );
        assert!(r.status != 200 || !r.body.is_empty(), "an empty image");
    }
}
