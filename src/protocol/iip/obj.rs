//! `OBJ` (docs/protocols.md §1.1): the objects a client can ask about the server or the
//! open image. Each answer is a text line added to the one text response, so that several
//! `OBJ` commands can share a request; an unknown object adds the error line `3 2`.

use super::Session;
use crate::cnum::fmt_g9;
use crate::image::ColourSpace;
use std::fmt::Write as _;

impl Session<'_, '_> {
    pub(super) fn obj(&mut self, raw: &str) {
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
}
