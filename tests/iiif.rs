//! IIIF behaviours where this server deliberately differs from iipsrv: redirects,
//! the physical-dimensions service, percent signs in identifiers, and which requests
//! take the tile fast path. Real requests to a real server; images the tests need
//! beyond the corpus are made with vips and libtiff's tools in a scratch directory.

mod common;
use common::*;

/// A GET of `/iiif/<arg>` as a web server with `URI_MAP=iiif=>IIIF` passes it, with
/// the query string (if any) split off and extra params.
fn iiif(s: &Server, arg: &str, extra: &[(&str, &str)]) -> Reply {
    let query = arg.split_once('?').map_or("", |(_, q)| q);
    let uri = format!("/iiif/{arg}");
    let mut p = vec![
        ("REQUEST_METHOD", "GET"),
        ("QUERY_STRING", query),
        ("REQUEST_URI", uri.as_str()),
        ("HTTP_HOST", "localhost"),
    ];
    p.extend_from_slice(extra);
    s.request(&p, b"")
}

fn json(r: &Reply) -> serde_json::Value {
    serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("{e}: status {}, {:?}", r.status, r.text()))
}

/// A server over scratch directory `dir`, IIIF mapped.
fn server_in(dir: &TempDir, env: &[(&str, &str)]) -> Server {
    let prefix = format!("{}/", dir.0.display());
    let mut all = vec![("URI_MAP", "iiif=>IIIF"), ("FILESYSTEM_PREFIX", &prefix)];
    all.extend_from_slice(env);
    Server::start(&all, 1)
}

#[test]
fn redirects_are_absolute_without_query_and_with_cors() {
    // iipsrv sends a protocol-relative `//host/…` Location that keeps the query string,
    // and no CORS block.
    let s = Server::start(&[("URI_MAP", "iiif=>IIIF"), ("CORS", "*")], 1);
    for (arg, extra, want) in [
        (
            "small.tif",
            &[][..],
            "http://localhost/iiif/small.tif/info.json",
        ),
        (
            "small.tif?x=1&y=2",
            &[][..],
            "http://localhost/iiif/small.tif/info.json",
        ),
        (
            "small.tif",
            &[("HTTPS", "on")][..],
            "https://localhost/iiif/small.tif/info.json",
        ),
        (
            "small.tif?x=1",
            &[("HTTPS", "on")][..],
            "https://localhost/iiif/small.tif/info.json",
        ),
    ] {
        let r = iiif(&s, arg, extra);
        assert_eq!(r.status, 303, "{arg} {extra:?}");
        assert_eq!(r.header("Location"), Some(want), "{arg} {extra:?}");
        assert_eq!(r.header("Access-Control-Allow-Origin"), Some("*"));
        // The target answers.
        let path = want.split_once("localhost").unwrap().1;
        let target = s.get_path(path);
        assert_eq!(json(&target)["width"], 1001, "{want}");
    }
    // An empty HTTPS param is plain http.
    let r = iiif(&s, "small.tif", &[("HTTPS", "")]);
    assert_eq!(
        r.header("Location"),
        Some("http://localhost/iiif/small.tif/info.json")
    );
}

#[test]
fn physical_dimensions_only_with_a_known_unit() {
    // iipsrv writes the service with "cm" when the resolution unit is unknown.
    let dir = TempDir::new("physdim");
    for (name, unit) in [("none.tif", "1"), ("inch.tif", "2"), ("cm.tif", "3")] {
        let f = dir.0.join(name);
        std::fs::copy(fixtures().join("small.tif"), &f).unwrap();
        sh(&format!("tiffset -s 296 {unit} {}", f.display()));
    }
    let s = server_in(&dir, &[]);
    let service = |file: &str| {
        let v = json(&iiif(&s, &format!("{file}/info.json"), &[]));
        assert_eq!(v["width"], 1001, "{file}");
        v["service"].as_array().and_then(|a| {
            a.iter()
                .find(|x| x["profile"].as_str().is_some_and(|p| p.contains("physdim")))
                .cloned()
        })
    };
    assert_eq!(service("none.tif"), None, "no unit, no physical dimensions");
    let inch = service("inch.tif").expect("physdim service for inches");
    assert_eq!(inch["physicalUnits"], "in");
    let cm = service("cm.tif").expect("physdim service for centimetres");
    assert_eq!(cm["physicalUnits"], "cm");
    // The corpus stores 28.34 px/cm: one pixel is 1/28.34 cm.
    let scale = cm["physicalScale"].as_f64().unwrap();
    assert!((scale - 1.0 / 28.34).abs() < 1e-5, "{scale}");
}

#[test]
fn percent_signs_in_identifiers_are_not_doubled() {
    // iipsrv turns `%` into `%%` in the id (a printf leftover), naming another image.
    let dir = TempDir::new("percent");
    std::fs::copy(fixtures().join("small.tif"), dir.0.join("50%.tif")).unwrap();
    let s = server_in(&dir, &[]);
    let r = iiif(&s, "50%25.tif/info.json", &[]);
    let v = json(&r);
    let id = v["id"].as_str().unwrap().to_owned();
    assert!(!id.contains("%%"), "{id}");
    assert!(id.starts_with("http://localhost/iiif/50%"), "{id}");
    // A viewer builds image requests from the id, and they reach the same file.
    let path = id.strip_prefix("http://localhost").unwrap();
    let r = s.get_path(&format!("{path}/full/100,/0/default.jpg"));
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    assert_eq!(jpeg_size(&r.body), (100, 78));
}

#[test]
fn edge_tiles_of_every_level_take_the_fast_path() {
    // 1536×1280 is a whole number of 256-px tiles, its levels 384×320 and 768×640 are
    // not: iipsrv tests the last column and row against the full size, so their edge
    // tiles go through a region export; here they are the stored tiles.
    let dir = TempDir::new("fastpath");
    let v = dir.0.join("a.v");
    sh(&format!("vips xyz {} 1536 1280", v.display()));
    let u = dir.0.join("a8.v");
    sh(&format!(
        "vips linear {} {} '0.1 0.2' 0 --uchar",
        v.display(),
        u.display()
    ));
    let rgb = dir.0.join("rgb.v");
    sh(&format!(
        "vips bandjoin '{} {}' {}",
        u.display(),
        dir.0.join("a8.v").display(),
        rgb.display()
    ));
    let three = dir.0.join("three.v");
    sh(&format!(
        "vips extract_band {} {} 0 --n 3",
        rgb.display(),
        three.display()
    ));
    sh(&format!(
        "vips tiffsave {} {} --tile --pyramid --tile-width 256 --tile-height 256 --compression jpeg --Q 90",
        three.display(),
        dir.0.join("grid.tif").display()
    ));
    let s = server_in(&dir, &[]);
    let levels = s.get("FIF=grid.tif&OBJ=Resolutions").text();
    assert_eq!(
        levels.trim(),
        "Resolutions:192 160,384 320,768 640,1536 1280"
    );
    // (IIIF region at full size, output size, IIP resolution, tile index)
    for (region, size, res, tile) in [
        ("1024,1024,512,256", "128,64", 1, 3),
        ("1024,0,512,1024", "128,", 1, 1),
        ("1024,1024,512,256", "256,128", 2, 8),
        ("0,1024,512,256", "256,", 2, 6),
        ("1280,1024,256,256", "256,", 3, 29),
    ] {
        let uri = format!("grid.tif/{region}/{size}/0/default.jpg");
        let r = iiif(&s, &uri, &[]);
        assert_eq!(r.status, 200, "{uri}: {}", r.text());
        assert_eq!(
            r.header("Content-Disposition"),
            None,
            "{uri} took the region path"
        );
        let t = s.get(&format!("FIF=grid.tif&JTL={res},{tile}"));
        assert!(r.body == t.body, "{uri} is not stored tile {res},{tile}");
    }
    // Not a tile: the region export, with its file name.
    let r = iiif(&s, "grid.tif/1000,1024,512,256/128,/0/default.jpg", &[]);
    assert!(r.header("Content-Disposition").is_some());
}
