//! The info.json document (docs/protocols.md §2.3): what a viewer learns of an image before it
//! asks for any pixels — sizes, tiles, the qualities and features on offer, rights and the
//! physical scale — in the layout of the negotiated API version.

use super::ids::{encoded_identifier, service_id};
use super::{open_page, version};
use crate::cnum::fmt_g6;
use crate::config::Config;
use crate::image::{ImageInfo, ResolutionUnit};
use crate::protocol::{Ctx, HttpInfo};
use crate::response::Response;
use std::fmt::Write as _;

/// The info.json response for the image `ident` (decoded once; `raw` as the client sent the
/// whole path), its id built from the request.
pub(super) fn respond(ctx: &mut Ctx, http: &HttpInfo, raw: &str, ident: &str) -> Response {
    let cfg = ctx.cfg;
    let (cur, _) = match open_page(ctx, http, ident) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let id = match service_id(
        cfg,
        http,
        &encoded_identifier(raw, 1, ident, http.encoding()),
    ) {
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
    let mut body = info_json(cfg, info, &id, v, rights.as_deref());
    if let Some(rule) = crate::access::protecting_rule(cfg.access.as_deref(), &cur.client) {
        body = crate::access::auth2::decorate_info(&body, cur.access, rule, &id, v);
    }
    let mime = format!("application/ld+json;profile=\"http://iiif.io/api/image/{v}/context.json\"");
    let mut r = Response::content(cfg, &mime, body.into_bytes(), Some(cur.opened.mtime), None);
    if v != cfg.iiif_version {
        for (k, val) in r.headers.iter_mut() {
            if k == "Cache-Control" {
                *val = "private".into();
            }
        }
    }
    r
}

fn json_str(s: &str) -> String {
    serde_json::Value::from(s).to_string()
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

/// The info.json body (docs/protocols.md §2.3).
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
            ",\n  \"extraQualities\": [{}],\n  \"extraFormats\": [\"tif\",\"webp\",\"avif\"],\n  \"extraFeatures\": [\"regionByPct\",\"sizeByPct\",\"sizeByConfinedWh\",\"sizeUpscaling\",\"rotationBy90s\",\"rotationArbitrary\",\"mirroring\"]",
            quoted_list(&q)
        );
        if let Some(r) = rights {
            let _ = write!(s, ",\n  \"rights\": {}", json_str(r));
        }
    } else {
        let _ = write!(
            s,
            "  \"@id\" : {},\n  \"profile\" : [\n     \"http://iiif.io/api/image/{v}/level2.json\",\n     {{ \"formats\" : [\"jpg\",\"png\",\"tif\",\"webp\",\"avif\"],\n       \"qualities\" : [\"native\",{}],\n       \"supports\" : [\"regionByPct\",\"regionSquare\",\"max\",\"sizeByConfinedWh\",\"sizeByForcedWh\",\"sizeByWh\",\"sizeAboveFull\",\"rotationBy90s\",\"rotationArbitrary\",\"mirroring\"]",
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
            // Version 3 requires an id and a type on every service.
            let ident = if v >= 3 {
                format!(
                    "\n      \"id\": {},\n      \"type\": \"PhysicalDimensions\",",
                    json_str(&format!("{id}/physdim"))
                )
            } else {
                String::new()
            };
            let _ = write!(
                s,
                ",\n  \"service\": [\n    {{\n      \"@context\": \"http://iiif.io/api/annex/services/physdim/1/context.json\",{ident}\n      \"profile\": \"http://iiif.io/api/annex/services/physdim\",\n      \"physicalScale\": {},\n      \"physicalUnits\": \"{u}\"\n    }}\n  ]\n\n}}",
                fmt_g6(scale)
            );
        }
        _ => s.push_str("\n}"),
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{ColourSpace, Level, StoredCodec};

    fn info(levels: &[(u32, u32)], dpi: f64) -> ImageInfo {
        let levels = levels
            .iter()
            .map(|&(width, height)| Level {
                width,
                height,
                tile_width: 256,
                tile_height: 256,
                codec: StoredCodec::Jpeg,
            })
            .collect();
        let mut i = ImageInfo::plain(levels, 3, 8, ColourSpace::Srgb);
        (i.dpi_x, i.dpi_y, i.resolution_unit) = (dpi, dpi, ResolutionUnit::Centimetre);
        i
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
  "extraFeatures": ["regionByPct","sizeByPct","sizeByConfinedWh","sizeUpscaling","rotationBy90s","rotationArbitrary","mirroring"],
  "service": [
    {
      "@context": "http://iiif.io/api/annex/services/physdim/1/context.json",
      "id": "http://localhost/iiif/pyr5000x3000.tif/physdim",
      "type": "PhysicalDimensions",
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
}
