//! The IIP protocol (docs/protocols.md §1): commands run left to right over one view; the first
//! output command answers, OBJ lines accumulate into one text response.

use super::open::{open_image, Current};
use super::{path, Ctx, HttpInfo};
use crate::cnum::fmt_g9;
use crate::config::atoi;
use crate::encode::Format;
use crate::image::ColourSpace;
use crate::model::{cvt_size, Colour, RegionRequest, TileRequest, View};
use crate::pipeline::float::{named_kernel, ColourMap, Contrast};
use crate::render;
use crate::response::Response;
use std::fmt::Write as _;

fn error_line(code: &str, arg: &str) -> String {
    format!("Error/{}:{} {}\r\n", code.len() + 1 + arg.len(), code, arg)
}

/// Parses a `CTW` matrix `[a,b,c;d,e,f;…]` (brackets optional): rows by `;`, values by `,`.
fn parse_matrix(v: &str) -> Option<Vec<Vec<f32>>> {
    let inner = v.trim().trim_start_matches('[').trim_end_matches(']');
    let rows: Vec<Vec<f32>> = inner
        .split(';')
        .filter(|r| !r.trim().is_empty())
        .map(|r| {
            r.split(',')
                .map(|x| crate::config::atof(x) as f32)
                .collect()
        })
        .collect();
    (!rows.is_empty() && rows.len() <= 16 && rows.iter().all(|r| !r.is_empty() && r.len() <= 16))
        .then_some(rows)
}

/// Parses `r,t` (docs/protocols.md §1.2): without a comma both come from the whole string.
fn parse_tile_arg(arg: &str) -> (i64, i64) {
    match arg.split_once(',') {
        Some((r, t)) => (atoi(r), atoi(t)),
        None => (atoi(arg), atoi(arg)),
    }
}

struct Session<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
    http: &'c HttpInfo,
    image: Option<Current>,
    view: View,
    lines: String,
    mime: &'static str,
    errors: String,
}

impl Session<'_, '_> {
    fn error(&mut self, code: &str, arg: &str) {
        self.errors.push_str(&error_line(code, arg));
    }

    fn line(&mut self, s: &str) {
        self.lines.push_str(s);
        self.lines.push_str("\r\n");
    }

    fn obj(&mut self, raw: &str) {
        let arg = raw.to_ascii_lowercase();
        let no_image = ["iip-server", "iip-opt-comm", "iip-opt-obj"];
        if arg.starts_with("iip,") {
            self.line("IIP:1.0");
            return;
        }
        match arg.as_str() {
            "iip-server" => return self.line("IIP-server:3.65"),
            "iip-opt-comm" => {
                return self.line("IIP-opt-comm:CVT CNT QLT JTL JTLS WID HEI RGN MINMAX SHD CMP INV CTW")
            }
            "iip-opt-obj" => {
                return self.line(
                    "IIP-opt-obj:Horizontal-views Vertical-views Tile-size Bits-per-channel Min-Max-sample-values Resolutions",
                )
            }
            _ => {}
        }
        debug_assert!(!no_image.contains(&arg.as_str()));
        let Some(cur) = &self.image else {
            return self.error("1 3", &arg);
        };
        let info = cur.opened.image.info().clone();
        let meta = |k: &str| -> Option<String> {
            info.metadata
                .get(k)
                .filter(|v| !v.is_empty())
                .cloned()
                .or_else(|| {
                    (k == "rights")
                        .then(|| self.ctx.cfg.copyright.clone())
                        .flatten()
                })
        };
        let n = info.num_levels();
        match arg.as_str() {
            "basic-info" => {
                self.obj("iip-server");
                self.obj("max-size");
                self.obj("resolution-number");
                self.obj("colorspace");
            }
            "max-size" => {
                let (mut w, mut h) = (info.width(), info.height());
                if (self.view.rotation as i64) % 180 == 90 {
                    std::mem::swap(&mut w, &mut h);
                }
                self.line(&format!("Max-size:{w} {h}"));
            }
            "resolution-number" => self.line(&format!("Resolution-number:{n}")),
            "tile-size" => {
                let l = &info.levels[0];
                self.line(&format!("Tile-size:{} {}", l.tile_width, l.tile_height));
            }
            "bits-per-channel" => self.line(&format!("Bits-per-channel:{}", info.bits_per_sample)),
            "min-max-sample-values" => {
                let mut s = String::from("Min-Max-sample-values:");
                for c in 0..info.channels as usize {
                    let min = info.min.get(c).copied().unwrap_or(0.0);
                    let max = info.max.get(c).copied().unwrap_or(0.0);
                    let _ = write!(s, " {} ", fmt_g9(min));
                    let _ = write!(s, " {} ", fmt_g9(max));
                }
                let s = s.strip_suffix(' ').unwrap_or(&s).to_owned();
                self.line(&s);
            }
            "resolutions" => {
                let list: Vec<String> = info
                    .levels
                    .iter()
                    .rev()
                    .map(|l| format!("{} {}", l.width, l.height))
                    .collect();
                self.line(&format!("Resolutions:{}", list.join(",")));
            }
            "horizontal-views" => {
                let v: Vec<String> = info.horizontal_views.iter().map(i32::to_string).collect();
                self.line(&format!("Horizontal-views:{}", v.join(" ")));
            }
            "vertical-views" => {
                let v: Vec<String> = info.vertical_views.iter().map(i32::to_string).collect();
                self.line(&format!("Vertical-views:{}", v.join(" ")));
            }
            a if a.contains("colorspace") => {
                let (cal, cs) = match info.colour {
                    ColourSpace::CieLab => (1, 4),
                    ColourSpace::Greyscale | ColourSpace::Bilevel => (0, 1),
                    _ => (0, 3),
                };
                let planes = info.channels;
                let list: Vec<String> = (0..planes).map(|p| p.to_string()).collect();
                self.line(&format!(
                    "Colorspace,0-{},0:{cal} 0 {cs} {planes} {}",
                    n - 1,
                    list.join(" ")
                ));
            }
            "dpi" => {
                let f = match info.resolution_unit {
                    crate::image::ResolutionUnit::Centimetre => 100.0,
                    crate::image::ResolutionUnit::Inch => 1.0 / 0.0254,
                    crate::image::ResolutionUnit::Unknown => 0.0,
                };
                if info.dpi_x > 0.0 && info.dpi_y > 0.0 && f > 0.0 {
                    // Single precision, as iipsrv computes it: 28.34 px/cm prints 2834.000000.
                    let (x, y) = (info.dpi_x as f32 * f as f32, info.dpi_y as f32 * f as f32);
                    self.line(&format!("DPI:{x:.6} {y:.6}"));
                }
            }
            "stack" => {
                if !info.pages.is_empty() {
                    let items: Vec<String> = info
                        .pages
                        .iter()
                        .enumerate()
                        .map(|(i, (name, scale))| {
                            format!(
                                "\n\t{{\n\t\t\"id\": {i},\n\t\t\"name\": {},\n\t\t\"scale\": {}\n\t}}",
                                serde_json::Value::from(name.as_str()),
                                fmt_g9(*scale)
                            )
                        })
                        .collect();
                    self.mime = "application/json";
                    self.line(&format!("[ {}\n]", items.join(",")));
                }
            }
            "metadata" => {
                let mut keys: Vec<(String, String)> = info
                    .metadata
                    .iter()
                    .filter(|(k, v)| !v.is_empty() && !matches!(k.as_str(), "icc" | "xmp" | "exif"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if !keys.iter().any(|(k, _)| k == "rights") {
                    if let Some(c) = &self.ctx.cfg.copyright {
                        keys.push(("rights".into(), c.clone()));
                        keys.sort();
                    }
                }
                let body = if keys.is_empty() {
                    "{\n}".to_owned()
                } else {
                    let items: Vec<String> = keys
                        .iter()
                        .map(|(k, v)| {
                            format!(
                                "\n\t{}: {}",
                                serde_json::Value::from(k.as_str()),
                                serde_json::Value::from(v.as_str())
                            )
                        })
                        .collect();
                    format!("{{ {}\n}}", items.join(","))
                };
                self.mime = "application/json";
                self.line(&body);
            }
            "summary-info" => {
                self.mime = "text/plain";
                for k in ["rights", "description", "creator", "date", "software"] {
                    if let Some(v) = meta(k) {
                        self.line(&v);
                    }
                }
            }
            "xmp" => {
                if let Some(x) = info.xmp.clone().filter(|x| !x.is_empty()) {
                    self.mime = "application/xml";
                    self.line(&x);
                }
            }
            "rights" | "title" | "description" | "creator" | "keywords" | "comment"
            | "last-author" | "rev-number" | "edit-time" | "last-printed" | "date"
            | "last-save-dtm" | "software" | "make" | "model" | "scale" => {
                if let Some(v) = meta(&arg) {
                    self.mime = "text/plain";
                    self.line(&v);
                }
            }
            _ => self.error("3 2", &arg),
        }
    }

    fn tile(&mut self, arg: &str, format: Format) -> Option<Response> {
        let Some(cur) = &self.image else {
            self.error("1 3", "");
            return None;
        };
        let (res, tile) = parse_tile_arg(arg);
        let info = cur.opened.image.info();
        if let Err(r) = crate::access::check_resolution(self.ctx.cfg, cur.access, info, res) {
            return Some(r);
        }
        Some(render::tile(
            self.ctx.cfg,
            self.ctx.tiles,
            &cur.opened,
            &cur.client,
            TileRequest { res, tile, format },
            &self.view,
        ))
    }
}

impl Session<'_, '_> {
    fn cvt(&mut self, arg: &str) -> Option<Response> {
        let Some(cur) = &self.image else {
            self.error("1 3", "");
            return None;
        };
        let format = match arg.to_ascii_lowercase().as_str() {
            "png" => Format::Png,
            "webp" => Format::Webp,
            "avif" => Format::Avif,
            "tif" | "tiff" => Format::Tiff,
            _ => Format::Jpeg,
        };
        let info = cur.opened.image.info();
        let region = self.view.region.unwrap_or([0.0, 0.0, 1.0, 1.0]);
        let full = (info.width(), info.height());
        let (width, height) = cvt_size(
            region,
            self.view.width,
            self.view.height,
            full,
            self.ctx.cfg.max_cvt,
        );
        // A degraded image is exported no larger than its degraded size, as MAX_CVT clamps.
        let (width, height) = cur.access.clamp_output(region, full, (width, height));
        let req = RegionRequest {
            region,
            width,
            height,
            format,
            colour: self.view.colour,
            no_upscale: !self.ctx.cfg.allow_upscaling,
            attachment: self.http.is_post(),
        };
        Some(render::region(
            self.ctx.cfg,
            self.ctx.tiles,
            &cur.opened,
            &cur.client,
            &req,
            &self.view,
        ))
    }
}

/// `TIL=r,t1-t2` (docs/protocols.md §1.3): the tiles of the rectangle from t1 (top-left) to t2
/// (bottom-right), column by column, in FlashPix tile records.
fn til(
    cfg: &crate::config::Config,
    tiles: Option<&shm::Cache>,
    cur: &Current,
    arg: &str,
    view: &View,
) -> Response {
    let (r, range) = arg.split_once(',').unwrap_or((arg, "0"));
    let r = atoi(r);
    let (t1, t2) = match range.split_once('-') {
        Some((a, b)) => (atoi(a), atoi(b)),
        None => (atoi(range), atoi(range)),
    };
    let info = cur.opened.image.info();
    let n = info.num_levels() as i64;
    if r < 0 || r >= n || t1 < 0 || t2 < 0 {
        return Response::text_error(
            cfg,
            404,
            &format!("TIL :: Invalid resolution or tile: {arg}"),
        );
    }
    if let Err(resp) = crate::access::check_resolution(cfg, cur.access, info, r) {
        return resp;
    }
    let level = &info.levels[(n - 1 - r) as usize];
    let (cols, count) = (level.columns() as i64, level.tile_count() as i64);
    if t1 >= count || t2 >= count {
        return Response::text_error(
            cfg,
            404,
            &format!("TIL :: Asked for non-existent tile: {arg}"),
        );
    }
    let t2 = t2.max(t1);
    let (c1, r1, c2, r2) = (t1 % cols, t1 / cols, t2 % cols, t2 / cols);
    let (c1, c2) = (c1.min(c2), c1.max(c2));
    if (c2 - c1 + 1) * (r2 - r1 + 1) > 1024 {
        return Response::text_error(cfg, 400, "TIL :: at most 1024 tiles per request");
    }
    let mut body = Vec::new();
    for c in c1..=c2 {
        for row in r1..=r2 {
            let t = row * cols + c;
            let req = TileRequest {
                res: r,
                tile: t,
                format: Format::Jpeg,
            };
            let resp = render::tile(cfg, tiles, &cur.opened, &cur.client, req, view);
            if resp.status != 200 {
                return resp;
            }
            let kind: u8 = if info.bits_per_sample == 16 { 3 } else { 2 };
            body.extend_from_slice(format!("Tile,{r},{t},0/{}:", resp.body.len() + 8).as_bytes());
            body.extend_from_slice(&[kind, 0, 0, 0, 0, 0x11, 0, 0]);
            body.extend_from_slice(&resp.body);
            body.extend_from_slice(b"\r\n");
        }
    }
    // Headers (CACHE_CONTROL, CORS) as every other successful answer has them.
    Response::content(
        cfg,
        "application/vnd.netfpx",
        body,
        Some(cur.opened.mtime),
        None,
    )
}

/// Runs the commands of `http.request_string` and returns the response.
pub fn run(ctx: &mut Ctx, http: &HttpInfo) -> Response {
    let cfg = ctx.cfg;
    let mut s = Session {
        ctx,
        http,
        image: None,
        view: View::default(),
        lines: String::new(),
        mime: "application/vnd.netfpx",
        errors: String::new(),
    };
    for piece in http.request_string.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = match piece.split_once('=') {
            Some((n, v)) => (n, v),
            None => (piece, piece),
        };
        if name.is_empty() || value.is_empty() {
            continue;
        }
        log::debug!("Command / Argument is {name} : {value}");
        let out: Option<Response> = match name.to_ascii_uppercase().as_str() {
            "FIF" => match open_image(s.ctx, s.http, value, s.http.encoding()) {
                Ok(cur) => {
                    s.view.access = cur.access;
                    s.image = Some(cur);
                    None
                }
                Err(r) => Some(r),
            },
            "OBJ" => {
                s.obj(value);
                None
            }
            "JTL" => s.tile(value, Format::Jpeg),
            "PTL" => s.tile(value, Format::Png),
            "WTL" => s.tile(value, Format::Webp),
            "ATL" => s.tile(value, Format::Avif),
            "TTL" => s.tile(value, Format::Tiff),
            "JTLS" => {
                let v: Vec<&str> = value.split(',').collect();
                if v.len() == 4 {
                    s.view.xangle = atoi(v[0]) as i32;
                    s.view.yangle = atoi(v[3]) as i32;
                    s.tile(&format!("{},{}", v[1], v[2]), Format::Jpeg)
                } else {
                    None
                }
            }
            "ROT" => {
                let (mirror, a) = match value.strip_prefix('!') {
                    Some(rest) => (true, rest),
                    None => (false, value),
                };
                s.view.mirror = mirror;
                s.view.rotation = crate::config::atof(a);
                None
            }
            "QLT" => {
                if let Some((codec, _)) = value.split_once(':') {
                    s.view.tiff_codec = Some(match codec.to_ascii_lowercase().as_str() {
                        "lzw" => 1,
                        "deflate" => 2,
                        "jpeg" => 3,
                        "webp" => 4,
                        "zstd" => 5,
                        _ => 0,
                    });
                }
                let n = value.rsplit(':').next().unwrap_or(value);
                s.view.quality = Some(atoi(n).clamp(-100, 1000) as i32);
                None
            }
            "SDS" => {
                let mut it = value.split(',');
                s.view.xangle = atoi(it.next().unwrap_or("0")) as i32;
                s.view.yangle = it.next().map(|y| atoi(y) as i32).unwrap_or(0);
                None
            }
            "LYR" => {
                s.view.layers = atoi(value).clamp(0, 65535) as i32;
                None
            }
            "WID" => {
                s.view.width = atoi(value).clamp(0, u32::MAX as i64) as u32;
                None
            }
            "HEI" => {
                s.view.height = atoi(value).clamp(0, u32::MAX as i64) as u32;
                None
            }
            "RGN" => {
                let v: Vec<f64> = value.split(',').map(crate::config::atof).collect();
                if v.len() >= 4 && v[2] > 0.0 && v[3] > 0.0 {
                    let (x, y) = (v[0].clamp(0.0, 1.0), v[1].clamp(0.0, 1.0));
                    // Parts beyond the right and bottom edges are cropped away.
                    let w = v[2].clamp(0.0, 1.0).min(1.0 - x);
                    let h = v[3].clamp(0.0, 1.0).min(1.0 - y);
                    if w > 0.0 && h > 0.0 {
                        s.view.region = Some([x, y, w, h]);
                    }
                }
                None
            }
            "ICC" => None,
            "COL" => {
                match value.to_ascii_lowercase().as_str() {
                    "grey" | "gray" => s.view.colour = Colour::Grey,
                    "binary" => s.view.colour = Colour::Bitonal,
                    _ => {}
                }
                None
            }
            "CVT" => s.cvt(value),
            "SPECTRA" | "PFL" | "TIL" => match &s.image {
                None => {
                    s.error("1 3", "");
                    None
                }
                Some(cur) => Some(match (name.to_ascii_uppercase().as_str(), cur.access) {
                    // Sample values are read at full resolution.
                    ("SPECTRA" | "PFL", crate::model::Access::Degraded(m)) => {
                        crate::access::too_large(s.ctx.cfg, m)
                    }
                    ("SPECTRA", _) => super::science::spectra(s.ctx.cfg, cur, value),
                    ("PFL", _) => super::science::profile(s.ctx.cfg, cur, value),
                    _ => til(s.ctx.cfg, s.ctx.tiles, cur, value, &s.view),
                }),
            },
            "CNT" => {
                s.view.processing.contrast = match value.to_ascii_lowercase().as_str() {
                    "eq" | "equalization" => Contrast::Equalise,
                    "st" | "stretch" => Contrast::Stretch,
                    v => Contrast::Factor(crate::config::atof(v) as f32),
                };
                None
            }
            "GAM" => {
                match value.to_ascii_lowercase().as_str() {
                    "log" | "logarithm" => s.view.processing.log = true,
                    v => s.view.processing.gamma = crate::config::atof(v) as f32,
                }
                None
            }
            "INV" => {
                s.view.processing.invert = true;
                None
            }
            "CMP" => {
                s.view.processing.colour_map = match value.to_ascii_lowercase().as_str() {
                    "hot" => Some(ColourMap::Hot),
                    "cold" => Some(ColourMap::Cold),
                    "jet" => Some(ColourMap::Jet),
                    "red" => Some(ColourMap::Red),
                    "green" => Some(ColourMap::Green),
                    "blue" => Some(ColourMap::Blue),
                    _ => None,
                };
                None
            }
            "CTW" => {
                s.view.processing.twist = parse_matrix(&path::url_decode(value));
                None
            }
            "CNV" => {
                let v = path::url_decode(value).to_ascii_lowercase();
                let inner = v.trim_start_matches('[').trim_end_matches(']');
                s.view.processing.kernel = named_kernel(inner).or_else(|| {
                    let k: Vec<f32> = inner
                        .split(',')
                        .map(|x| crate::config::atof(x) as f32)
                        .collect();
                    matches!(k.len(), 1 | 9 | 25).then_some(k)
                });
                None
            }
            "SHD" => {
                if let Some((h, v)) = value.split_once(',') {
                    s.view.processing.shade = Some((atoi(h) as i32, atoi(v) as i32));
                }
                None
            }
            "MINMAX" => {
                if s.image.is_none() {
                    s.error("1 3", value);
                } else if let Some((ch, range)) = value.split_once(':') {
                    if let Some((a, b)) = range.split_once(',') {
                        let (a, b) = (crate::config::atof(a) as f32, crate::config::atof(b) as f32);
                        let channels = s
                            .image
                            .as_ref()
                            .map(|c| c.opened.image.info().channels)
                            .unwrap_or(0) as i64;
                        if ch == "-" {
                            s.view.processing.minmax.push((None, a, b));
                        } else if (0..channels).contains(&atoi(ch)) {
                            s.view
                                .processing
                                .minmax
                                .push((Some(atoi(ch) as usize), a, b));
                        }
                    }
                }
                None
            }
            "IIIF" => Some(super::iiif::handle(s.ctx, s.http, value)),
            "DEEPZOOM" => Some(super::deepzoom::handle(s.ctx, s.http, value)),
            "ZOOMIFY" => Some(super::zoomify::handle(s.ctx, s.http, value)),
            _ => {
                s.error("2 2", name);
                None
            }
        };
        if let Some(r) = out {
            return r;
        }
    }
    let mtime = s.image.as_ref().map(|c| c.opened.mtime);
    if !s.errors.is_empty() {
        Response::iip_error(cfg, &s.errors)
    } else if !s.lines.is_empty() {
        Response::iip_text(cfg, s.mime, mtime, s.lines.into_bytes())
    } else {
        Response::iip_error(cfg, &error_line("2 1", &http.request_string))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines() {
        assert_eq!(error_line("3 2", "foo"), "Error/7:3 2 foo\r\n");
        assert_eq!(error_line("1 3", ""), "Error/4:1 3 \r\n");
        assert_eq!(error_line("2 1", "WID=100"), "Error/11:2 1 WID=100\r\n");
        assert_eq!(
            error_line("2 1", "FIF=small.tif&WID=100"),
            "Error/25:2 1 FIF=small.tif&WID=100\r\n"
        );
    }

    #[test]
    fn tile_args() {
        assert_eq!(parse_tile_arg("3,17"), (3, 17));
        assert_eq!(parse_tile_arg("1"), (1, 1));
        assert_eq!(parse_tile_arg("-1,-1"), (-1, -1));
        assert_eq!(parse_tile_arg("x,y"), (0, 0));
    }
}
