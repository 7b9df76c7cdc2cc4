//! IIP's scientific read-outs (docs/protocols.md §1.6): `SPECTRA` (per-band value at a point) and
//! `PFL` (raw values along a line), over the bands of an image (one for a single file).

use super::open::Current;
use crate::config::{atoi, Config};
use crate::image::Samples;
use crate::render;
use crate::response::Response;

fn sample_text(data: &Samples, i: usize) -> String {
    match data {
        Samples::U8(v) => v[i].to_string(),
        Samples::U16(v) => v[i].to_string(),
        Samples::U32(v) => v[i].to_string(),
        Samples::F32(v) => format!("{:.9}", v[i]),
    }
}

fn sample_value(data: &Samples, i: usize) -> f64 {
    match data {
        Samples::U8(v) => v[i] as f64,
        Samples::U16(v) => v[i] as f64,
        Samples::U32(v) => v[i] as f64,
        Samples::F32(v) => v[i] as f64,
    }
}

/// `SPECTRA=r,t,x,y`: the first channel at pixel (x, y) of tile t, normalised for
/// integer depths.
pub fn spectra(cfg: &Config, cur: &Current, arg: &str) -> Response {
    let v: Vec<i64> = arg.split(',').map(atoi).collect();
    let [r, t, x, y] = v[..] else {
        return Response::text_error(cfg, 400, "SPECTRA :: expected r,t,x,y");
    };
    let info = cur.opened.image.info();
    let n = info.num_levels() as i64;
    if r < 0 || r >= n || t < 0 {
        return Response::text_error(
            cfg,
            400,
            &format!("SPECTRA :: Invalid resolution or tile: {r},{t}"),
        );
    }
    let k = (n - 1 - r) as u32;
    // One point per view: stack pages and sequence angles are wavelengths.
    let mut points = String::new();
    for &view in &info.horizontal_views {
        let tile = match cur
            .opened
            .for_view(
                (view, info.vertical_views.first().copied().unwrap_or(90)),
                0,
            )
            .and_then(|o| o.image.decode_tile(k, t as u32))
        {
            Ok(tile) => tile,
            Err(e) => return Response::text_error(cfg, 404, &format!("{}: {e}", cur.client)),
        };
        if x < 0 || y < 0 || x >= tile.width as i64 || y >= tile.height as i64 {
            return Response::text_error(
                cfg,
                400,
                "SPECTRA :: Error: x,y coordinates outside of tile boundaries",
            );
        }
        let i = (y as usize * tile.width as usize + x as usize) * tile.channels as usize;
        let value = match &tile.data {
            Samples::U8(d) => d[i] as f64 / 255.0,
            Samples::U16(d) => d[i] as f64 / 65535.0,
            Samples::U32(d) => d[i] as f64,
            Samples::F32(d) => d[i] as f64,
        };
        // A stack page's DocumentName names its band; else the angle.
        let name = usize::try_from(view)
            .ok()
            .and_then(|i| info.pages.get(i))
            .map(|p| p.0.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| view.to_string());
        points.push_str(&format!(
            "\t<point>\n\t\t<wavelength>{name}</wavelength>\n\t\t<reflectance>{value:.6}</reflectance>\n\t</point>\n"
        ));
    }
    let body = format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<spectra>\n{points}</spectra>");
    Response::content(
        cfg,
        "application/xml",
        body.into_bytes(),
        Some(cur.opened.mtime),
        None,
    )
}

/// `PFL=r:x1,y1-x2,y2` or `r:x,y`: raw values along a horizontal or vertical line.
pub fn profile(cfg: &Config, cur: &Current, arg: &str) -> Response {
    let Some((r, coords)) = arg.split_once(':') else {
        return Response::text_error(cfg, 400, "PFL :: expected r:x1,y1-x2,y2");
    };
    let info = cur.opened.image.info();
    let n = info.num_levels() as i64;
    let r = atoi(r);
    if r < 0 || r >= n {
        return Response::text_error(cfg, 400, &format!("PFL :: Invalid resolution number: {r}"));
    }
    let k = (n - 1 - r) as u32;
    let level = &info.levels[k as usize];
    let point = |s: &str| -> Option<(i64, i64)> {
        let (x, y) = s.split_once(',')?;
        Some((atoi(x), atoi(y)))
    };
    let (p1, p2) = match coords.split_once('-') {
        Some((a, b)) => (point(a), point(b)),
        None => (point(coords), point(coords)),
    };
    let (Some((x1, y1)), Some((x2, y2))) = (p1, p2) else {
        return Response::text_error(cfg, 400, "PFL :: expected r:x1,y1-x2,y2");
    };
    let inside =
        |x: i64, y: i64| x >= 0 && y >= 0 && x < level.width as i64 && y < level.height as i64;
    if !inside(x1, y1) || !inside(x2.max(x1), y2.max(y1)) || (x2 > x1 && x2 > level.width as i64) {
        return Response::text_error(cfg, 400, &format!("PFL :: Invalid coordinates: {coords}"));
    }
    let rect = if x2 > x1 {
        (x1 as u32, y1 as u32, (x2 - x1) as u32, 1)
    } else if y2 > y1 {
        (x1 as u32, y1 as u32, 1, (y2 - y1) as u32)
    } else {
        (x1 as u32, y1 as u32, 1, 1)
    };
    // One band per view (stack page or sequence angle), named as SPECTRA names them.
    let y = info.vertical_views.first().copied().unwrap_or(90);
    let mut bands = Vec::new();
    for (i, &view) in info.horizontal_views.iter().enumerate() {
        let page = info.pages.get(i);
        let tile = match cur
            .opened
            .for_view((view, y), 0)
            .and_then(|o| render::assemble(&o, k, rect))
        {
            Ok(t) => t,
            Err(e) => return Response::text_error(cfg, 404, &format!("{}: {e}", cur.client)),
        };
        let scale = page.map_or(1.0, |p| p.1);
        let count = tile.width as usize * tile.height as usize * tile.channels as usize;
        let values: Vec<String> = (0..count)
            .map(|i| {
                if scale == 1.0 {
                    sample_text(&tile.data, i)
                } else {
                    format!("{:.9}", sample_value(&tile.data, i) * scale)
                }
            })
            .collect();
        let name = page
            .map(|p| p.0.clone())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| view.to_string());
        bands.push((name, values.join(",")));
    }
    let body = match &bands[..] {
        [(_, values)] => format!("{{\n\t\"profile\": [{values}]\n}}"),
        _ => {
            let items: Vec<String> = bands
                .iter()
                .map(|(n, v)| format!("\t\t{}: [{v}]", serde_json::Value::from(n.as_str())))
                .collect();
            format!("{{\n\t\"profile\": {{\n{}\n\t}}\n}}", items.join(",\n"))
        }
    };
    Response::content(
        cfg,
        "application/json",
        body.into_bytes(),
        Some(cur.opened.mtime),
        None,
    )
}
