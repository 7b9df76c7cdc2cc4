//! The parameters of an image request path (docs/protocols.md §2.4): region, size, rotation,
//! quality and format, and the page suffix of an identifier. Kept apart from the responses
//! so that the refusals (every 400 and its message) can be read, and tested, in one place.

use crate::config::Config;
use crate::encode::Format;
use crate::model::Colour;
use crate::pipeline::float::{Contrast, Processing};

/// A request the parser refuses (400).
#[derive(Debug, PartialEq)]
pub(super) enum ParseError {
    Bad(String),
}

fn bad(msg: impl Into<String>) -> ParseError {
    ParseError::Bad(msg.into())
}

/// Region → fractions `(x, y, w, h)` of the full image, cropped at its edges (§5.1).
pub(super) fn parse_region(text: &str, (fw, fh): (u32, u32)) -> Result<[f64; 4], ParseError> {
    let lower = text.to_ascii_lowercase();
    let (fw, fh) = (fw as f64, fh as f64);
    let mut r = match lower.as_str() {
        "full" => return Ok([0.0, 0.0, 1.0, 1.0]),
        "square" => {
            if fw > fh {
                let w = fh / fw;
                [(1.0 - w) / 2.0, 0.0, w, 1.0]
            } else {
                let h = fw / fh;
                [0.0, (1.0 - h) / 2.0, 1.0, h]
            }
        }
        _ => {
            let (pct, nums) = match lower.strip_prefix("pct:") {
                Some(rest) => (true, rest),
                None => (false, lower.as_str()),
            };
            let err = || bad(format!("IIIF: incorrect region format: {nums}"));
            let v: Vec<f64> = nums
                .split(',')
                .map(|x| {
                    x.trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|v| v.is_finite() && *v >= 0.0)
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(err)?;
            if v.len() != 4 {
                return Err(err());
            }
            if pct {
                [v[0] / 100.0, v[1] / 100.0, v[2] / 100.0, v[3] / 100.0]
            } else {
                [v[0] / fw, v[1] / fh, v[2] / fw, v[3] / fh]
            }
        }
    };
    if r[0] + r[2] > 1.0 {
        r[2] = 1.0 - r[0];
    }
    if r[1] + r[3] > 1.0 {
        r[3] = 1.0 - r[1];
    }
    if r[2] <= 0.0 || r[3] <= 0.0 {
        return Err(bad(format!(
            "IIIF: incorrect region format: {}",
            lower.strip_prefix("pct:").unwrap_or(&lower)
        )));
    }
    Ok(r)
}

fn dim(s: &str, what: &str) -> Result<u32, ParseError> {
    s.parse::<u32>().map_err(|_| bad(format!("invalid {what}")))
}

/// Size → output `(w, h, upscaling allowed)` (§5.2, with the deliberate fixes).
pub(super) fn parse_size(
    text: &str,
    v: u32,
    region: [f64; 4],
    (fw, fh): (u32, u32),
    max_cvt: Option<u32>,
    accept_full: bool,
) -> Result<(u32, u32, bool), ParseError> {
    let lower = text.to_ascii_lowercase();
    let (caret, body) = match lower.strip_prefix('^') {
        Some(_) if v < 3 => return Err(bad("invalid width")),
        Some(rest) => (true, rest),
        None => (false, lower.as_str()),
    };
    let (rwf, rhf) = (region[2] * fw as f64, region[3] * fh as f64);
    let (bw, bh) = (rwf.round().max(1.0), rhf.round().max(1.0));
    let ratio = rwf / rhf;
    let mut keeps_ratio = true;
    // IIIF 3 replaced the size `full` with `max`; manifests written for iipsrv still
    // ask for `full/full`, so it is accepted unless IIIF_ACCEPT_FULL=0.
    if v >= 3 && body == "full" && !accept_full {
        return Err(bad("IIIF: the size full is not part of version 3; use max"));
    }
    let (w, h): (f64, f64) = if body == "max" || body == "full" {
        (bw, bh)
    } else if let Some(p) = body.strip_prefix("pct:") {
        let n: f64 = p
            .parse()
            .ok()
            .filter(|n: &f64| n.is_finite() && *n >= 0.0)
            .ok_or_else(|| bad("invalid size"))?;
        ((bw * n / 100.0).round(), (bh * n / 100.0).round())
    } else {
        let (confined, wh) = match body.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, body),
        };
        let Some((ws, hs)) = wh.split_once(',') else {
            return Err(bad("invalid size: no comma found"));
        };
        match (ws.is_empty(), hs.is_empty()) {
            (true, true) => return Err(bad("invalid size")),
            (false, true) if !confined => {
                let w = dim(ws, "width")? as f64;
                (w, (w * bh / bw).round())
            }
            (true, false) if !confined => {
                let h = dim(hs, "height")? as f64;
                ((h * bw / bh).round(), h)
            }
            (false, false) => {
                let (w, h) = (dim(ws, "width")? as f64, dim(hs, "height")? as f64);
                if confined {
                    let s = (w / bw).min(h / bh);
                    if w / bw <= h / bh {
                        (w, (bh * s).round())
                    } else {
                        ((bw * s).round(), h)
                    }
                } else {
                    keeps_ratio = false;
                    (w, h)
                }
            }
            _ => return Err(bad("invalid size")),
        }
    };
    if w < 1.0 || h < 1.0 {
        return Err(bad("IIIF: invalid size: requested width or height < 0"));
    }
    if v >= 3 && !caret && (w > bw || h > bh) {
        return Err(bad("IIIF: upscaling should be prefixed with ^"));
    }
    let (mut w, mut h) = (w, h);
    if let Some(m) = max_cvt.map(f64::from) {
        if w > m || h > m {
            if keeps_ratio {
                if ratio >= 1.0 {
                    (w, h) = (m, (m / ratio).round());
                } else {
                    (w, h) = ((m * ratio).round(), m);
                }
            } else {
                let f = m / w.max(h);
                (w, h) = ((w * f).round(), (h * f).round());
            }
        }
    }
    let upscale = if v >= 3 { caret } else { true };
    Ok((
        w.clamp(1.0, u32::MAX as f64) as u32,
        h.clamp(1.0, u32::MAX as f64) as u32,
        upscale,
    ))
}

/// Rotation → (mirror, clockwise degrees in 0..360) (§5.3; any angle, as IIIF allows).
pub(super) fn parse_rotation(text: &str) -> Result<(bool, f64), ParseError> {
    let (mirror, n) = match text.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let a: f64 = n
        .parse()
        .ok()
        .filter(|a: &f64| a.is_finite())
        .ok_or_else(|| bad("IIIF: invalid rotation"))?;
    if !(0.0..=360.0).contains(&a) {
        return Err(bad("IIIF: rotation angles are between 0 and 360 degrees"));
    }
    Ok((mirror, if a == 360.0 { 0.0 } else { a }))
}

/// `quality[.format]` (§5.4); anything from `?` on is ignored.
pub(super) fn parse_quality_format(
    text: &str,
    cfg: &Config,
) -> Result<(Colour, Format, Processing), ParseError> {
    let text = text.split('?').next().unwrap_or("").to_ascii_lowercase();
    let (quality, ext) = match text.rsplit_once('.') {
        Some((q, e)) => (q.to_owned(), e.to_owned()),
        None => (text.clone(), "jpg".to_owned()),
    };
    let format = match ext.as_str() {
        "jpg" => Format::Jpeg,
        "png" => Format::Png,
        "webp" => Format::Webp,
        "avif" => Format::Avif,
        "tif" => Format::Tiff,
        _ => return Err(bad("IIIF :: unsupported output format")),
    };
    let mut processing = Processing::default();
    let colour = match quality.as_str() {
        "default" | "color" | "native" => Colour::AsIs,
        "gray" | "grey" => Colour::Grey,
        "bitonal" => Colour::Bitonal,
        "negative" if cfg.iiif_extensions => {
            processing.invert = true;
            Colour::AsIs
        }
        "stretch" if cfg.iiif_extensions => {
            processing.contrast = Contrast::Stretch;
            Colour::AsIs
        }
        "equalization" if cfg.iiif_extensions => {
            processing.contrast = Contrast::Equalise;
            Colour::AsIs
        }
        "log" if cfg.iiif_extensions => {
            processing.log = true;
            Colour::AsIs
        }
        _ => return Err(bad(format!("unsupported quality parameter: {quality}"))),
    };
    Ok((colour, format, processing))
}

/// Splits `IIIF_DELIMITER` page selection off an identifier: `Some(None)` means a
/// delimiter with a non-numeric page.
pub(super) fn split_page<'a>(cfg: &Config, ident: &'a str) -> (&'a str, Option<Option<u32>>) {
    match cfg.iiif_delimiter.as_deref() {
        Some(d) if ident.contains(d) => {
            let p = ident.rfind(d).unwrap_or(0);
            let page = &ident[p + d.len()..];
            let n =
                (!page.is_empty() && page.bytes().all(|b| b.is_ascii_digit()) && page.len() < 9)
                    .then(|| page.parse().ok())
                    .flatten();
            (&ident[..p], Some(n))
        }
        _ => (ident, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_delimiters() {
        let cfg = Config::from_vars(|k| (k == "IIIF_DELIMITER").then(|| "::".to_string()));
        assert_eq!(
            split_page(&cfg, "stack.tif::2"),
            ("stack.tif", Some(Some(2)))
        );
        assert_eq!(split_page(&cfg, "stack.tif::x"), ("stack.tif", Some(None)));
        assert_eq!(split_page(&cfg, "plain.tif"), ("plain.tif", None));
    }

    const SMALL: (u32, u32) = (1001, 777);

    fn size(text: &str, v: u32, region: &str, max: Option<u32>) -> Result<(u32, u32), ParseError> {
        let r = parse_region(region, SMALL)?;
        parse_size(text, v, r, SMALL, max, false).map(|(w, h, _)| (w, h))
    }

    #[test]
    fn sizes_f13_to_f17_and_i17_to_i49() {
        let ok = |t: &str| size(t, 3, "full", Some(5000)).unwrap();
        assert_eq!(ok("500,"), (500, 388));
        assert_eq!(ok(",500"), (644, 500));
        assert_eq!(ok("pct:10"), (100, 78));
        assert_eq!(ok("^pct:150"), (1502, 1166));
        assert_eq!(ok("!500,500"), (500, 388));
        assert_eq!(ok("500,500"), (500, 500));
        assert_eq!(ok("max"), (1001, 777));
        assert_eq!(size("FULL", 2, "full", Some(5000)).unwrap(), (1001, 777));
        assert!(size("full", 3, "full", Some(5000)).is_err());
        let full = parse_size("full", 3, [0.0, 0.0, 1.0, 1.0], SMALL, Some(5000), true);
        assert_eq!(full.map(|(w, h, _)| (w, h)).unwrap(), (1001, 777));
        assert_eq!(ok("^2000,"), (2000, 1552));
        assert_eq!(ok("!900,900"), (900, 699));
        let err = |t: &str, v: u32| match size(t, v, "full", Some(5000)) {
            Err(ParseError::Bad(m)) => m,
            other => panic!("{t}: {other:?}"),
        };
        assert_eq!(err("2000,", 3), "IIIF: upscaling should be prefixed with ^");
        assert_eq!(
            err("pct:150", 3),
            "IIIF: upscaling should be prefixed with ^"
        );
        assert_eq!(err("abc", 3), "invalid size: no comma found");
        assert_eq!(
            err("0,", 3),
            "IIIF: invalid size: requested width or height < 0"
        );
        assert_eq!(err("^500,", 2), "invalid width");
        assert_eq!(err("x,", 3), "invalid width");
        assert_eq!(err(",y", 3), "invalid height");
        assert_eq!(size("2000,", 2, "full", Some(5000)).unwrap(), (2000, 1552));
        for t in ["max", "900,", ",700"] {
            assert_eq!(size(t, 3, "full", Some(800)).unwrap(), (800, 621), "{t}");
        }
        assert_eq!(size("^1000,700", 3, "full", Some(800)).unwrap(), (800, 560));
        assert_eq!(size("200,", 3, "square", Some(5000)).unwrap(), (200, 200));
        assert_eq!(size("max", 3, "square", Some(5000)).unwrap(), (777, 777));
    }

    #[test]
    fn regions_i30_to_i33() {
        assert_eq!(
            size("max", 3, "900,700,200,200", Some(5000)).unwrap(),
            (101, 77)
        );
        assert_eq!(
            size("max", 3, "pct:10,10,50,50", Some(5000)).unwrap(),
            (501, 389)
        );
        for r in [
            "2000,0,10,10",
            "0,0,0,10",
            "1,2,3",
            "-10,0,100,100",
            "a,b,c,d",
        ] {
            assert!(
                matches!(parse_region(r, SMALL), Err(ParseError::Bad(_))),
                "{r}"
            );
        }
    }

    #[test]
    fn rotations_and_qualities() {
        assert_eq!(parse_rotation("90").unwrap(), (false, 90.0));
        assert_eq!(parse_rotation("!180").unwrap(), (true, 180.0));
        assert_eq!(parse_rotation("360").unwrap(), (false, 0.0));
        assert_eq!(parse_rotation("22.5").unwrap(), (false, 22.5));
        assert!(parse_rotation("361").is_err());
        assert!(parse_rotation("-5").is_err());
        assert!(
            matches!(parse_rotation("x"), Err(ParseError::Bad(m)) if m == "IIIF: invalid rotation")
        );
        let cfg = Config::from_vars(|_| None);
        let qf = |t: &str| {
            parse_quality_format(t, &cfg)
                .map(|(c, f, _)| (c, f))
                .unwrap()
        };
        assert_eq!(qf("default.jpg"), (Colour::AsIs, Format::Jpeg));
        assert_eq!(qf("default"), (Colour::AsIs, Format::Jpeg));
        assert_eq!(qf("DEFAULT.JPG?t=1"), (Colour::AsIs, Format::Jpeg));
        assert_eq!(qf("gray.png"), (Colour::Grey, Format::Png));
        assert_eq!(qf("bitonal.tif"), (Colour::Bitonal, Format::Tiff));
        let ext = Config::from_vars(|k| (k == "IIIF_EXTENSIONS").then(|| "1".to_string()));
        assert!(parse_quality_format("negative.jpg", &ext).unwrap().2.invert);
        assert!(parse_quality_format("log.jpg", &ext).unwrap().2.log);
        assert!(matches!(
            parse_quality_format("default.gif", &cfg),
            Err(ParseError::Bad(_))
        ));
        assert!(matches!(
            parse_quality_format("negative.jpg", &cfg),
            Err(ParseError::Bad(m)) if m == "unsupported quality parameter: negative"
        ));
    }
}
