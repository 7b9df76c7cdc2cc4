//! Image names that need percent-encoding (a space, `+`, UTF-8, a subdirectory as
//! `%2F`, a double-encoded `%252F`) reach the right file through every protocol, behind
//! a real nginx (query strings, `URI_MAP` paths, a `rewrite` into a query) and through
//! `--http`; IIIF hands back ids that name the image again in the encoding the client
//! used. Each name is a different size, so every answer shows which file it came from.

mod common;
use common::nginx::{hdr, http_get, Nginx};
use common::*;
use std::process::Command;

/// The height every test image shares.
const H: usize = 200;

/// Image names below the prefix and their widths.
const FILES: [(&str, usize); 7] = [
    ("a b.tif", 300),
    ("a+b.tif", 310),
    ("Åsa ø.tif", 320),
    ("dir/a.tif", 330),
    // A name with a literal `%2F`: what a once-decoded `%252F` names.
    ("dir%2Fa.tif", 340),
    // Characters that end a query value or the query's path.
    ("a&b.tif", 350),
    ("a?b.tif", 360),
];

/// A scratch image root holding [`FILES`], cut from the corpus as small tiled pyramids.
fn image_root() -> TempDir {
    let root = TempDir::new("ids");
    std::fs::create_dir_all(root.0.join("dir")).unwrap();
    for (name, w) in FILES {
        let tmp = root.0.join(format!("w{w}.tif"));
        let st = Command::new("vips")
            .arg("crop")
            .arg(fixtures().join("small.tif"))
            .arg(format!(
                "{}[tile,pyramid,tile-width=256,tile-height=256]",
                tmp.display()
            ))
            .args(["0", "0", &w.to_string(), &H.to_string()])
            .status()
            .expect("vips (apt-get install libvips-tools)");
        assert!(st.success(), "vips crop failed");
        std::fs::rename(&tmp, root.0.join(name)).unwrap();
    }
    root
}

/// How a front end hands tessera the identifier: decides what a raw `+` means.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Carrier {
    /// A query-string value: `+` is a space.
    Query,
    /// A URL path: `+` is a plus.
    Path,
}

/// (what is tested, the identifier as sent, the width of the image it must reach).
/// IIIF decodes its identifier twice, so `%252F` is a subdirectory there and a literal
/// `%2F` in a file name everywhere else.
fn cases(carrier: Carrier, twice: bool) -> Vec<(&'static str, &'static str, usize)> {
    vec![
        ("space as %20", "a%20b.tif", 300),
        ("plus as %2B", "a%2Bb.tif", 310),
        (
            "raw plus",
            "a+b.tif",
            if carrier == Carrier::Query { 300 } else { 310 },
        ),
        ("UTF-8", "%C3%85sa%20%C3%B8.tif", 320),
        ("slash as %2F", "dir%2Fa.tif", 330),
        ("raw slash", "dir/a.tif", 330),
        (
            "double-encoded slash",
            "dir%252Fa.tif",
            if twice { 330 } else { 340 },
        ),
        ("ampersand as %26", "a%26b.tif", 350),
        ("question mark as %3F", "a%3Fb.tif", 360),
    ]
}

type Get<'a> = &'a dyn Fn(&str) -> (u16, Vec<(String, String)>, Vec<u8>);

/// Collects what went wrong instead of stopping at the first, so one run shows every
/// encoding a front end gets wrong.
#[derive(Default)]
struct Faults(Vec<String>);

impl Faults {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.0.push(what());
        }
    }

    fn assert_none(self, front: &str) {
        assert!(self.0.is_empty(), "{front}:\n  {}", self.0.join("\n  "));
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned()
}

fn is_jpeg(h: &[(String, String)], b: &[u8]) -> bool {
    hdr(h, "content-type") == Some("image/jpeg") && b.starts_with(&[0xFF, 0xD8])
}

/// IIP: `FIF=<id>` in a query string after `base` (`/fcgi-bin/iipsrv.fcgi?`).
fn fif(f: &mut Faults, get: Get, base: &str, carrier: Carrier) {
    for (label, id, w) in cases(carrier, false) {
        let (st, _, b) = get(&format!("{base}FIF={id}&OBJ=Max-size"));
        f.check(
            st == 200 && text(&b).contains(&format!("Max-size:{w} {H}")),
            || format!("FIF {label} ({id}): {st} {}", text(&b)),
        );
        let (st, h, b) = get(&format!("{base}FIF={id}&JTL=1,0"));
        f.check(st == 200 && is_jpeg(&h, &b), || {
            format!("FIF {label} ({id}) tile: {st} {}", text(&b))
        });
    }
}

/// IIIF under `prefix` (`/iiif/`, or `/fcgi-bin/iipsrv.fcgi?IIIF=`). With `id_base`, the
/// info.json `id` must be `id_base` + the identifier as sent, the redirect from the bare
/// identifier must point at it, and an image under that id must serve.
fn iiif(f: &mut Faults, get: Get, prefix: &str, carrier: Carrier, id_base: Option<&str>) {
    for (label, id, w) in cases(carrier, true) {
        let (st, _, b) = get(&format!("{prefix}{id}/info.json"));
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
        f.check(st == 200 && v["width"] == w, || {
            format!("IIIF {label} ({id}) info.json: {st} {}", text(&b))
        });
        let image = match id_base {
            Some(base) => {
                let want = format!("{base}{id}");
                f.check(v["id"] == want.as_str(), || {
                    format!("IIIF {label}: id {} instead of {want}", v["id"])
                });
                let (st, h, _) = get(&format!("{prefix}{id}"));
                let to = hdr(&h, "location").unwrap_or("");
                f.check(st == 303 && to == format!("{want}/info.json"), || {
                    format!("IIIF {label} ({id}) redirect: {st} to {to}")
                });
                // The id is a URL: its path, with image parameters, is the same image.
                let path = want.strip_prefix("http://localhost").unwrap_or(&want);
                format!("{path}/full/max/0/default.jpg")
            }
            None => format!("{prefix}{id}/full/max/0/default.jpg"),
        };
        let (st, h, b) = get(&image);
        f.check(
            st == 200 && is_jpeg(&h, &b) && jpeg_size(&b) == (w, H),
            || format!("IIIF {label} ({id}) image {image}: {st} {}", text(&b)),
        );
    }
}

/// A tiled protocol's two URLs for an identifier after a prefix, and how its
/// descriptor states the size.
struct Tiled {
    name: &'static str,
    descriptor: fn(&str) -> String,
    /// A tile of the level that halves the image (its width tells the files apart).
    half_tile: fn(&str) -> String,
    size: fn(usize) -> String,
}

const DEEPZOOM: Tiled = Tiled {
    name: "DeepZoom",
    descriptor: |id| format!("{id}.dzi"),
    // 300–360 px wide: level 9 is the full image, level 8 half of it.
    half_tile: |id| format!("{id}_files/8/0_0.jpg"),
    size: |w| format!("<Size Width=\"{w}\" Height=\"{H}\"/>"),
};

const ZOOMIFY: Tiled = Tiled {
    name: "Zoomify",
    descriptor: |id| format!("{id}/ImageProperties.xml"),
    // Level 0 is the image halved, in one tile.
    half_tile: |id| format!("{id}/TileGroup0/0-0-0.jpg"),
    size: |w| format!("WIDTH=\"{w}\" HEIGHT=\"{H}\""),
};

/// DeepZoom or Zoomify under `prefix`: the descriptor and a tile.
fn tiled(f: &mut Faults, get: Get, p: &Tiled, prefix: &str, carrier: Carrier) {
    for (label, id, w) in cases(carrier, false) {
        let (st, _, b) = get(&format!("{prefix}{}", (p.descriptor)(id)));
        f.check(st == 200 && text(&b).contains(&(p.size)(w)), || {
            format!("{} {label} ({id}): {st} {}", p.name, text(&b))
        });
        let (st, h, b) = get(&format!("{prefix}{}", (p.half_tile)(id)));
        f.check(
            st == 200 && is_jpeg(&h, &b) && jpeg_size(&b) == (w.div_ceil(2), H / 2),
            || format!("{} {label} ({id}) tile: {st} {}", p.name, text(&b)),
        );
    }
}

/// Every protocol in iipsrv's query string, and IIIF, DeepZoom and Zoomify as the
/// `URI_MAP` paths below.
fn every_protocol(f: &mut Faults, get: Get) {
    let q = "/fcgi-bin/iipsrv.fcgi?";
    fif(f, get, q, Carrier::Query);
    iiif(f, get, &format!("{q}IIIF="), Carrier::Query, None);
    tiled(f, get, &DEEPZOOM, &format!("{q}DeepZoom="), Carrier::Query);
    tiled(f, get, &ZOOMIFY, &format!("{q}Zoomify="), Carrier::Query);
    let ids = Some("http://localhost/iiif/");
    iiif(f, get, "/iiif/", Carrier::Path, ids);
    tiled(f, get, &DEEPZOOM, "/dz/", Carrier::Path);
    tiled(f, get, &ZOOMIFY, "/zoomify/", Carrier::Path);
    // Raw UTF-8 in the request line: the id comes back percent-encoded.
    let (st, _, b) = get("/iiif/Åsa%20ø.tif/info.json");
    let v: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
    f.check(
        st == 200 && v["id"] == "http://localhost/iiif/%C3%85sa%20%C3%B8.tif",
        || format!("raw UTF-8 info.json: {st} {}", text(&b)),
    );
}

const URI_MAP: &str = "iiif=>IIIF dz=>DeepZoom zoomify=>Zoomify";

#[test]
fn encoded_names_through_nginx() {
    let root = image_root();
    let prefix = format!("{}/", root.0.display());
    let s = Server::start(&[("FILESYSTEM_PREFIX", &prefix), ("URI_MAP", URI_MAP)], 2);
    // `/rw/` is the other common set-up: a rewrite of the path into iipsrv's query.
    let n = Nginx::start_conf(
        &s.addr,
        None,
        "    location /dz/ {\n      FASTCGI\n    }\n\
             location /zoomify/ {\n      FASTCGI\n    }\n\
             location /rw/ {\n      rewrite ^/rw/(.*)$ /fcgi-bin/iipsrv.fcgi?IIIF=$1 last;\n    }\n",
    );
    let get = |t: &str| n.get(t);
    let mut f = Faults::default();
    every_protocol(&mut f, &get);
    // nginx decodes the path before the rewrite and escapes what it captured again:
    // the path's meaning (a `+` is a plus) survives, and the id is still the URL sent.
    iiif(
        &mut f,
        &get,
        "/rw/",
        Carrier::Path,
        Some("http://localhost/rw/"),
    );
    f.assert_none("through nginx");
}

#[test]
fn encoded_names_through_http() {
    let root = image_root();
    let prefix = format!("{}/", root.0.display());
    let (_s, port) = start_http(&[], &[("FILESYSTEM_PREFIX", &prefix), ("URI_MAP", URI_MAP)]);
    let get = |t: &str| http_get(port, t);
    let mut f = Faults::default();
    every_protocol(&mut f, &get);
    f.assert_none("through --http");
}

#[test]
fn escaped_line_breaks_stay_escaped_in_the_location() {
    let root = image_root();
    let prefix = format!("{}/", root.0.display());
    let (_s, port) = start_http(&[], &[("FILESYSTEM_PREFIX", &prefix)]);
    // A bare identifier is redirected to its info.json, the Location built from it: a
    // decoded line break would be no header of its own, but a different URL.
    let (st, h, _) = http_get(port, "/iiif/x%0D%0ASet-Cookie:%20a=b");
    assert_eq!(st, 303);
    assert_eq!(hdr(&h, "set-cookie"), None);
    assert_eq!(
        hdr(&h, "location"),
        Some("http://localhost/iiif/x%0D%0ASet-Cookie:%20a=b/info.json")
    );
}

#[test]
fn base_url_ids_keep_the_encoding() {
    let root = image_root();
    let prefix = format!("{}/", root.0.display());
    let base = "https://images.example.org/iiif/";
    let s = Server::start(
        &[
            ("FILESYSTEM_PREFIX", &prefix),
            ("URI_MAP", "iiif=>IIIF"),
            ("BASE_URL", base),
        ],
        1,
    );
    let id = |r: Reply| -> String {
        assert_eq!(r.status, 200, "{}", r.text());
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        v["id"].as_str().unwrap_or_default().to_owned()
    };
    // In a query a `+` is a space: in the id, a path, it is written `%20`.
    for (query, want) in [
        ("IIIF=a+b.tif/info.json", "a%20b.tif"),
        ("IIIF=a%2Bb.tif/info.json", "a%2Bb.tif"),
        (
            "IIIF=%C3%85sa+%C3%B8.tif/info.json",
            "%C3%85sa%20%C3%B8.tif",
        ),
        ("IIIF=dir%252Fa.tif/info.json", "dir%252Fa.tif"),
    ] {
        assert_eq!(id(s.get(query)), format!("{base}{want}"), "{query}");
    }
    for (path, want) in [
        ("/iiif/a+b.tif/info.json", "a+b.tif"),
        ("/iiif/dir%2Fa.tif/info.json", "dir%2Fa.tif"),
    ] {
        assert_eq!(id(s.get_path(path)), format!("{base}{want}"), "{path}");
    }
    let r = s.get_path("/iiif/dir%2Fa.tif/full/max/0/default.jpg");
    assert_eq!(r.status, 200);
    let link = r.header("Link").unwrap_or_default();
    assert!(
        link.contains(&format!("<{base}dir%2Fa.tif/full/max/0/default.jpg>")),
        "{link}"
    );
}
