//! The small viewer page of the built-in HTTP mode: OpenSeadragon (installed from
//! npm next to the server, never bundled in the source tree) showing an image over
//! IIIF, and the static files it needs.

use crate::response::{Response, SERVER};
use std::path::{Path, PathBuf};

fn page(image: &str, have_viewer: bool) -> String {
    let image_json = serde_json::Value::from(image).to_string();
    let body = if have_viewer {
        format!(
            "<div id=\"osd\" style=\"position:absolute;top:2.5em;bottom:0;left:0;right:0;background:#222\"></div>\n\
             <script src=\"/viewer/openseadragon.min.js\"></script>\n\
             <script>\nconst image = {image_json};\n\
             OpenSeadragon({{ id: \"osd\", prefixUrl: \"/viewer/images/\", showNavigator: true,\n\
               tileSources: \"/iiif/\" + encodeURIComponent(image) + \"/info.json\" }});\n</script>"
        )
    } else {
        "<p>The OpenSeadragon files are not installed. Install them with\n\
         <code>npm install --prefix target/viewer openseadragon</code> and start tessera with\n\
         <code>--viewer target/viewer/node_modules/openseadragon/build/openseadragon</code>.</p>"
            .to_owned()
    };
    let esc = image.replace('&', "&amp;").replace('<', "&lt;");
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>tessera: {esc}</title></head>\n\
         <body style=\"margin:0;font-family:sans-serif\">\n\
         <div style=\"height:2.5em;line-height:2.5em;padding:0 1em\">tessera: <b>{esc}</b> \
         (<a href=\"/iiif/{esc}/info.json\">info.json</a>, \
         <a href=\"/?FIF={esc}&amp;OBJ=IIP,1.0&amp;OBJ=Max-size&amp;OBJ=Tile-size&amp;OBJ=Resolution-number\">IIP</a>, \
         <a href=\"/?DeepZoom={esc}.dzi\">DeepZoom</a>)</div>\n{body}\n</body></html>\n"
    )
}

/// The viewer page for `image` (from `/?image=NAME`, default `default_image`).
pub fn index(query: &str, default_image: &str, viewer_dir: Option<&Path>) -> Response {
    let image = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("image="))
        .map(crate::protocol::path::url_decode)
        .unwrap_or_else(|| default_image.to_owned());
    let have = viewer_dir.is_some_and(|d| d.join("openseadragon.min.js").is_file());
    let body = page(&image, have).into_bytes();
    Response {
        status: 200,
        headers: vec![
            ("Server".into(), SERVER.into()),
            ("Content-Type".into(), "text/html; charset=utf-8".into()),
            ("Content-Length".into(), body.len().to_string()),
        ],
        body,
    }
}

/// A file below the viewer directory, for `/viewer/<rel>`; `None` if absent or unsafe.
pub fn asset(viewer_dir: Option<&Path>, rel: &str) -> Option<Response> {
    let dir = viewer_dir?;
    let safe = !rel.is_empty()
        && rel
            .split('/')
            .all(|seg| !seg.is_empty() && seg != ".." && seg != ".")
        && rel
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b));
    if !safe {
        return None;
    }
    let path: PathBuf = dir.join(rel);
    let body = std::fs::read(&path).ok()?;
    let mime = match path.extension().and_then(|e| e.to_str()) {
        Some("js") => "text/javascript",
        Some("png") => "image/png",
        Some("css") => "text/css",
        Some("html") => "text/html; charset=utf-8",
        Some("map") | Some("json") => "application/json",
        _ => "application/octet-stream",
    };
    Some(Response {
        status: 200,
        headers: vec![
            ("Server".into(), SERVER.into()),
            ("Content-Type".into(), mime.into()),
            ("Cache-Control".into(), "max-age=3600".into()),
            ("Content-Length".into(), body.len().to_string()),
        ],
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_names_the_image_safely() {
        let r = index("image=a%3Cb.tif", "sample.tif", None);
        let s = String::from_utf8(r.body).unwrap();
        assert!(s.contains("a&lt;b.tif") && !s.contains("a<b.tif"));
        assert!(s.contains("npm install"));
        let s = String::from_utf8(index("", "sample.tif", None).body).unwrap();
        assert!(s.contains("<b>sample.tif</b>"));
    }

    #[test]
    fn assets_stay_inside_the_directory() {
        let dir = std::env::temp_dir().join(format!("tessera-viewer-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("images")).unwrap();
        std::fs::write(dir.join("openseadragon.min.js"), b"var x;").unwrap();
        std::fs::write(dir.join("images/home.png"), b"png").unwrap();
        let d = Some(dir.as_path());
        assert_eq!(asset(d, "openseadragon.min.js").unwrap().body, b"var x;");
        assert_eq!(
            asset(d, "images/home.png").unwrap().header("Content-Type"),
            Some("image/png")
        );
        for bad in [
            "../etc/passwd",
            "images/../../x",
            "/etc/passwd",
            "",
            "a//b",
            "x%2e",
        ] {
            assert!(asset(d, bad).is_none(), "{bad}");
        }
        let s = String::from_utf8(index("", "s.tif", d).body).unwrap();
        assert!(s.contains("OpenSeadragon("));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
