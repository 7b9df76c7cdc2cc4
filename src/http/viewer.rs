//! The small viewer page of the built-in HTTP mode: OpenSeadragon (installed from
//! npm next to the server, never bundled in the source tree) showing an image over
//! IIIF, and the static files it needs.

use crate::response::{Response, SERVER};
use std::path::{Path, PathBuf};

/// `s` escaped for HTML text and for attribute values in either kind of quotes.
fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `s` as a JavaScript string literal that is safe inside an inline `<script>`: JSON
/// escaping, plus `<`, `>` and `&` as `\u` escapes so that no `</script>` or `<!--` can
/// appear, and U+2028/U+2029, which end a line in older JavaScript engines.
fn js_string(s: &str) -> String {
    let json = serde_json::Value::from(s).to_string();
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// Component-encodes `s` for a query value or path segment of a link.
fn url_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The page only loads its own scripts, images and IIIF data: a value reflected into
/// it that escaped its context still could not run injected script.
const CSP: &str =
    "default-src 'self'; script-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; \
                   style-src 'self' 'unsafe-inline'; connect-src 'self'; object-src 'none'; \
                   base-uri 'none'; frame-ancestors 'self'; form-action 'none'";

fn page(image: &str, have_viewer: bool) -> String {
    let image_json = js_string(image);
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
    let esc = html_escape(image);
    let link = html_escape(&url_component(image));
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>tessera: {esc}</title></head>\n\
         <body style=\"margin:0;font-family:sans-serif\">\n\
         <div style=\"height:2.5em;line-height:2.5em;padding:0 1em\">tessera: <b>{esc}</b> \
         (<a href=\"/iiif/{link}/info.json\">info.json</a>, \
         <a href=\"/?FIF={link}&amp;OBJ=IIP,1.0&amp;OBJ=Max-size&amp;OBJ=Tile-size&amp;OBJ=Resolution-number\">IIP</a>, \
         <a href=\"/?DeepZoom={link}.dzi\">DeepZoom</a>)</div>\n{body}\n</body></html>\n"
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
            ("Content-Security-Policy".into(), CSP.into()),
            ("X-Content-Type-Options".into(), "nosniff".into()),
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
            ("X-Content-Type-Options".into(), "nosniff".into()),
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
    fn reflected_names_cannot_leave_their_context() {
        let dir = std::env::temp_dir().join(format!("tessera-viewer-xss-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("openseadragon.min.js"), b"var x;").unwrap();
        // As a browser sends them: `" onmouseover="alert(1)` and a script breakout.
        for (query, raw) in [
            (
                "image=%22%20onmouseover=%22alert(1)",
                "\" onmouseover=\"alert(1)",
            ),
            (
                "image=%3C/script%3E%3Cscript%3Ealert(1)%3C/script%3E",
                "</script><script>alert(1)</script>",
            ),
        ] {
            let r = index(query, "s.tif", Some(dir.as_path()));
            assert_eq!(r.header("X-Content-Type-Options"), Some("nosniff"));
            assert!(r
                .header("Content-Security-Policy")
                .is_some_and(|c| c.contains("default-src 'self'")));
            let s = String::from_utf8(r.body).unwrap();
            assert!(!s.contains(raw), "{raw} reflected verbatim:\n{s}");
            assert!(!s.contains("onmouseover=\""), "{s}");
            assert_eq!(s.matches("<script").count(), 2, "{s}");
            assert_eq!(s.matches("</script>").count(), 2, "{s}");
            // The script still gets the name itself.
            let lit = js_string(raw);
            assert!(s.contains(&format!("const image = {lit};")), "{s}");
            let back: String = serde_json::from_str(&lit).unwrap();
            assert_eq!(back, raw);
        }
        std::fs::remove_dir_all(&dir).unwrap();
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
