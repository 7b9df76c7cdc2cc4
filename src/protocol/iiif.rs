//! IIIF Image API 2 and 3 (iiif.md): argument parsing, the redirect and info.json.
//! Image requests (region/size/rotation/quality) are answered 501 until the region
//! pipeline exists.

use super::iip::{fmt_g9, open_image};
use super::path::url_decode;
use super::{Ctx, HttpInfo};
use crate::config::Config;
use crate::image::{ImageInfo, ResolutionUnit};
use crate::response::Response;
use std::fmt::Write as _;

fn json_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

fn scheme(http: &HttpInfo) -> &'static str {
    if http.https {
        "https"
    } else {
        "http"
    }
}

/// The service id (iiif.md §4.3) for `identifier` (as sent, with any page delimiter).
fn service_id(cfg: &Config, http: &HttpInfo, identifier: &str) -> Result<String, Response> {
    if let Some(id) = &http.x_iiif_id {
        return Ok(id.clone());
    }
    if let Some(base) = &cfg.base_url {
        return Ok(format!("{base}{identifier}"));
    }
    let Some(uri) = &http.request_uri else {
        return Err(Response::text_error(
            cfg,
            400,
            "IIIF: REQUEST_URI was not set in FastCGI request, so the ID parameter cannot be set",
        ));
    };
    let path = url_decode(uri.split('?').next().unwrap_or(""));
    let trimmed = path
        .strip_suffix("/info.json")
        .or_else(|| path.strip_suffix('/'))
        .unwrap_or(&path);
    let host = http.host.as_deref().unwrap_or("localhost");
    Ok(format!("{}://{host}{trimmed}", scheme(http)))
}

/// The `Accept`-negotiated API version for this request.
fn version(cfg: &Config, http: &HttpInfo) -> u32 {
    if let Some(a) = &http.accept {
        if let Some(p) = a.find("http://iiif.io/api/image/") {
            let rest = &a[p + 25..];
            let mut chars = rest.chars();
            if let (Some(d), Some('/')) = (chars.next(), chars.next()) {
                if let Some(v) = d.to_digit(10).filter(|v| (1..=3).contains(v)) {
                    if rest[2..].starts_with("context.json") {
                        return v;
                    }
                }
            }
        }
    }
    cfg.iiif_version
}

fn qualities(cfg: &Config, info: &ImageInfo) -> Vec<&'static str> {
    let mut q = Vec::new();
    if info.channels >= 3 {
        q.push("color");
    }
    q.extend(["gray", "bitonal"]);
    if cfg.iiif_extensions {
        q.extend(["negative", "stretch", "equalization", "log"]);
    }
    q
}

fn quoted_list(v: &[&str]) -> String {
    v.iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(",")
}

/// The info.json body (iiif.md §4.1/4.2 layout).
pub fn info_json(cfg: &Config, info: &ImageInfo, id: &str, v: u32, rights: Option<&str>) -> String {
    let (w, h) = (info.width(), info.height());
    let mut s = String::with_capacity(2048);
    let _ = write!(
        s,
        "{{\n  \"@context\" : \"http://iiif.io/api/image/{v}/context.json\",\n  \"protocol\" : \"http://iiif.io/api/image\",\n  \"width\" : {w},\n  \"height\" : {h},\n  \"sizes\" : [\n"
    );
    let sizes: Vec<String> = if info.levels.len() > 1 {
        info.levels[1..]
            .iter()
            .rev()
            .map(|l| {
                format!(
                    "     {{ \"width\" : {}, \"height\" : {} }}",
                    l.width, l.height
                )
            })
            .collect()
    } else {
        vec![format!("     {{ \"width\" : {w}, \"height\" : {h} }}")]
    };
    s.push_str(&sizes.join(",\n"));
    let factors: Vec<String> = (0..info.levels.len())
        .map(|k| (1u64 << k.min(62)).to_string())
        .collect();
    let _ = write!(
        s,
        "\n  ],\n  \"tiles\" : [\n     {{ \"width\" : {}, \"height\" : {}, \"scaleFactors\" : [ {} ] }}\n  ],\n",
        info.levels[0].tile_width,
        info.levels[0].tile_height,
        factors.join(", ")
    );
    let q = qualities(cfg, info);
    if v >= 3 {
        let _ = write!(
            s,
            "  \"id\" : {},\n  \"type\": \"ImageService3\",\n  \"profile\" : \"level2\"",
            json_str(id)
        );
        if let Some(m) = cfg.max_cvt {
            let _ = write!(s, ",\n  \"maxWidth\" : {m},\n  \"maxHeight\" : {m}");
        }
        let _ = write!(
            s,
            ",\n  \"extraQualities\": [{}],\n  \"extraFormats\": [\"tif\",\"webp\",\"avif\"],\n  \"extraFeatures\": [\"regionByPct\",\"sizeByPct\",\"sizeByConfinedWh\",\"sizeUpscaling\",\"rotationBy90s\",\"mirroring\"]",
            quoted_list(&q)
        );
        if let Some(r) = rights {
            let _ = write!(s, ",\n  \"rights\": {}", json_str(r));
        }
    } else {
        let _ = write!(
            s,
            "  \"@id\" : {},\n  \"profile\" : [\n     \"http://iiif.io/api/image/{v}/level2.json\",\n     {{ \"formats\" : [\"jpg\",\"png\",\"tif\",\"webp\",\"avif\"],\n       \"qualities\" : [\"native\",{}],\n       \"supports\" : [\"regionByPct\",\"regionSquare\",\"max\",\"sizeByConfinedWh\",\"sizeByForcedWh\",\"sizeByWh\",\"sizeAboveFull\",\"rotationBy90s\",\"mirroring\"]",
            json_str(id),
            quoted_list(&q)
        );
        if let Some(m) = cfg.max_cvt {
            let _ = write!(
                s,
                ",\n       \"maxWidth\" : {m},\n       \"maxHeight\" : {m}"
            );
        }
        s.push_str("\n     }\n  ]");
        if let Some(r) = rights {
            let _ = write!(s, ",\n  \"license\": {}", json_str(r));
        }
    }
    if let Some(extra) = &cfg.iiif_extra_info {
        let _ = write!(s, ",\n  {extra}");
    }
    let unit = match info.resolution_unit {
        ResolutionUnit::Inch => Some("in"),
        ResolutionUnit::Centimetre => Some("cm"),
        ResolutionUnit::Unknown => None,
    };
    match unit {
        Some(u) if info.dpi_x > 0.0 => {
            let scale = 1.0 / info.dpi_x;
            let _ = write!(
                s,
                ",\n  \"service\": [\n    {{\n      \"@context\": \"http://iiif.io/api/annex/services/physdim/1/context.json\",\n      \"profile\": \"http://iiif.io/api/annex/services/physdim\",\n      \"physicalScale\": {},\n      \"physicalUnits\": \"{u}\"\n    }}\n  ]\n\n}}",
                fmt_g6(scale)
            );
        }
        _ => s.push_str("\n}"),
    }
    s
}

/// C `%g` (6 significant digits).
fn fmt_g6(v: f64) -> String {
    let g9 = fmt_g9(v);
    if v == 0.0 || !v.is_finite() {
        return g9;
    }
    let exp = v.abs().log10().floor() as i32;
    let decimals = (5 - exp).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

pub fn handle(ctx: &mut Ctx, http: &HttpInfo, raw: &str) -> Response {
    let cfg = ctx.cfg;
    let arg = url_decode(raw);
    if !arg.contains('/') {
        let id = match service_id(cfg, http, &arg) {
            Ok(id) => id,
            Err(r) => return r,
        };
        let id = if cfg.base_url.is_some() || http.x_iiif_id.is_some() {
            id
        } else {
            id.trim_end_matches('/').to_owned()
        };
        return Response::redirect(cfg, &format!("{id}/info.json"));
    }
    let (ident, last) = arg.rsplit_once('/').unwrap_or(("", &arg));
    if last == "info.json" {
        let (file_ident, page) = split_page(cfg, ident);
        if page.is_some_and(|p| p.is_none()) {
            return Response::text_error(
                cfg,
                400,
                "IIIF: the page after the delimiter must be a number",
            );
        }
        let cur = match open_image(ctx, http, file_ident) {
            Ok(c) => c,
            Err(r) => return r,
        };
        let id = match service_id(cfg, http, ident) {
            Ok(id) => id,
            Err(r) => return r,
        };
        let info = cur.opened.image.info();
        let v = version(cfg, http);
        let rights = info
            .metadata
            .get("rights")
            .filter(|r| !r.is_empty())
            .cloned()
            .or_else(|| cfg.copyright.clone());
        let body = info_json(cfg, info, &id, v, rights.as_deref());
        let mime =
            format!("application/ld+json;profile=\"http://iiif.io/api/image/{v}/context.json\"");
        let mut r = Response::content(cfg, &mime, body.into_bytes(), Some(cur.opened.mtime), None);
        if v != cfg.iiif_version {
            for (k, val) in r.headers.iter_mut() {
                if k == "Cache-Control" {
                    *val = "private".into();
                }
            }
        }
        return r;
    }
    if arg.matches('/').count() < 4 {
        return Response::text_error(cfg, 400, "IIIF: Not enough parameters");
    }
    Response::text_error(
        cfg,
        501,
        "IIIF image requests need region export, which is not available in this build",
    )
}

/// Splits `IIIF_DELIMITER` page selection off an identifier: `Some(None)` means a
/// delimiter with a non-numeric page.
fn split_page<'a>(cfg: &Config, ident: &'a str) -> (&'a str, Option<Option<u32>>) {
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
    use crate::image::{ColourSpace, Level, SampleFormat, StoredCodec};

    fn info(levels: &[(u32, u32)], dpi: f64) -> ImageInfo {
        ImageInfo {
            levels: levels
                .iter()
                .map(|&(width, height)| Level {
                    width,
                    height,
                    tile_width: 256,
                    tile_height: 256,
                    codec: StoredCodec::Jpeg,
                })
                .collect(),
            channels: 3,
            bits_per_sample: 8,
            sample_format: SampleFormat::Unsigned,
            colour: ColourSpace::Srgb,
            min: vec![0.0; 3],
            max: vec![255.0; 3],
            dpi_x: dpi,
            dpi_y: dpi,
            resolution_unit: ResolutionUnit::Centimetre,
            metadata: Default::default(),
            icc: None,
            xmp: None,
            horizontal_views: vec![0],
            vertical_views: vec![90],
            quality_layers: 0,
        }
    }

    #[test]
    fn v3_info_matches_spec_layout() {
        let cfg = Config::from_vars(|_| None);
        let i = info(
            &[
                (5000, 3000),
                (2500, 1500),
                (1250, 750),
                (625, 375),
                (312, 187),
                (156, 93),
            ],
            28.34,
        );
        let s = info_json(&cfg, &i, "http://localhost/iiif/pyr5000x3000.tif", 3, None);
        let expected = r#"{
  "@context" : "http://iiif.io/api/image/3/context.json",
  "protocol" : "http://iiif.io/api/image",
  "width" : 5000,
  "height" : 3000,
  "sizes" : [
     { "width" : 156, "height" : 93 },
     { "width" : 312, "height" : 187 },
     { "width" : 625, "height" : 375 },
     { "width" : 1250, "height" : 750 },
     { "width" : 2500, "height" : 1500 }
  ],
  "tiles" : [
     { "width" : 256, "height" : 256, "scaleFactors" : [ 1, 2, 4, 8, 16, 32 ] }
  ],
  "id" : "http://localhost/iiif/pyr5000x3000.tif",
  "type": "ImageService3",
  "profile" : "level2",
  "maxWidth" : 5000,
  "maxHeight" : 5000,
  "extraQualities": ["color","gray","bitonal"],
  "extraFormats": ["tif","webp","avif"],
  "extraFeatures": ["regionByPct","sizeByPct","sizeByConfinedWh","sizeUpscaling","rotationBy90s","mirroring"],
  "service": [
    {
      "@context": "http://iiif.io/api/annex/services/physdim/1/context.json",
      "profile": "http://iiif.io/api/annex/services/physdim",
      "physicalScale": 0.0352858,
      "physicalUnits": "cm"
    }
  ]

}"#;
        assert_eq!(s, expected);
        serde_json::from_str::<serde_json::Value>(&s).unwrap();
    }

    #[test]
    fn v2_info_is_valid_json_with_escaped_rights() {
        let cfg = Config::from_vars(|k| (k == "MAX_CVT").then(|| "-1".to_string()));
        let i = info(&[(1001, 777), (500, 388), (250, 194)], 0.0);
        let s = info_json(&cfg, &i, "http://h/a \"b\"", 2, Some("CC-BY \"x\""));
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["@id"], "http://h/a \"b\"");
        assert_eq!(v["license"], "CC-BY \"x\"");
        assert_eq!(v["profile"][0], "http://iiif.io/api/image/2/level2.json");
        assert!(v["profile"][1].get("maxWidth").is_none());
        assert_eq!(v["tiles"][0]["scaleFactors"], serde_json::json!([1, 2, 4]));
        assert!(v.get("service").is_none());
    }

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

    #[test]
    fn g6() {
        assert_eq!(fmt_g6(1.0 / 28.34), "0.0352858");
        assert_eq!(fmt_g6(0.5), "0.5");
    }
}
