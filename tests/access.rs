//! Access policies end to end: one public, one degraded (800 px) and one restricted
//! image (and one opened by signed URLs), through nginx and through `--http`, in every
//! protocol; tokens good and bad, signatures good and bad, the IIIF Authorization
//! Flow services, and caches that never hand one client's answer to another.

mod common;
use common::nginx::{hdr, http10_get, Nginx};
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const AUD: &str = "https://images.test";
const COOKIE: &str = "session_token";

/// Images, keys and a policy in a scratch directory.
struct Fixture {
    dir: TempDir,
    secret: Vec<u8>,
    ed_private: Vec<u8>,
    url_key: Vec<u8>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = TempDir::new("access");
        let img = dir.0.join("images");
        for d in ["deg", "res", "signed"] {
            std::fs::create_dir_all(img.join(d)).unwrap();
        }
        for f in ["pub.tif", "deg/d.tif", "res/r.tif", "signed/s.tif"] {
            std::fs::copy(fixtures().join("small.tif"), img.join(f)).unwrap();
        }
        let keys = dir.0.join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        let secret = b"an HS256 secret of more than thirty-two bytes".to_vec();
        let url_key = b"the key signed URLs are made with, 32+ bytes".to_vec();
        std::fs::write(keys.join("hs256.key"), [&secret[..], b"\n"].concat()).unwrap();
        std::fs::write(keys.join("url.key"), &url_key).unwrap();
        let k = keys.display();
        sh(&format!(
            "openssl genpkey -algorithm ed25519 -out {k}/ed.pem && openssl pkey -in {k}/ed.pem -pubout -out {k}/ed.pub.pem"
        ));
        let ed_private = std::fs::read(keys.join("ed.pem")).unwrap();
        std::fs::write(
            keys.join("access.toml"),
            format!(
                r#"
[tokens]
audience = "{AUD}"
cookie = "{COOKIE}"
hs256_secret_file = "hs256.key"
ed25519_public_key_file = "ed.pub.pem"

[signed_urls]
key_file = "url.key"

[[rule]]
path = "pub.tif"
access = "public"

[[rule]]
path = "deg"
access = "degraded"
max_size = 800
[rule.auth]
profile = "active"
access_service = "https://login.test/login"
label = "Log in to the archive"
heading = "Staff only"
note = "Log in to see this image at full size."
confirm_label = "Log in"
probe_heading = "A smaller version"
probe_note = "Log in for the full image."

[[rule]]
path = "signed/*.tif"
access = "restricted"
signed_urls = true

[[rule]]
path = "**"
access = "restricted"
[rule.auth]
profile = "kiosk"
access_service = "https://login.test/kiosk"
"#
            ),
        )
        .unwrap();
        Fixture {
            dir,
            secret,
            ed_private,
            url_key,
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "FILESYSTEM_PREFIX".into(),
                format!("{}/", self.dir.0.join("images").display()),
            ),
            (
                "ACCESS_POLICY".into(),
                self.dir.0.join("keys/access.toml").display().to_string(),
            ),
        ]
    }

    fn hs256(&self, claims: Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&self.secret),
        )
        .unwrap()
    }

    fn ed25519(&self, claims: Value) -> String {
        jsonwebtoken::encode(
            &Header::new(Algorithm::EdDSA),
            &claims,
            &EncodingKey::from_ed_pem(&self.ed_private).unwrap(),
        )
        .unwrap()
    }

    /// `path_and_query` (which ends in a query) with `exp` and its signature appended.
    fn signed(&self, path_and_query: &str, exp: u64) -> String {
        let sep = if path_and_query.contains('?') {
            '&'
        } else {
            '?'
        };
        let unsigned = format!("{path_and_query}{sep}exp={exp}");
        let sig = tessera::access::signed::sign(&self.url_key, &unsigned);
        format!("{unsigned}&sig={sig}")
    }
}

fn now() -> u64 {
    tessera::access::now()
}

fn env_refs(v: &[(String, String)]) -> Vec<(&str, &str)> {
    v.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

type Reply3 = (u16, Vec<(String, String)>, Vec<u8>);

/// A client of one front end (nginx or `--http`) with fixed extra headers.
struct Client<'a> {
    port: u16,
    headers: Vec<(&'a str, String)>,
}

impl Client<'_> {
    fn get(&self, path: &str) -> Reply3 {
        let h: Vec<(&str, &str)> = self.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        http10_get(self.port, path, &h)
    }

    fn status(&self, path: &str) -> u16 {
        self.get(path).0
    }

    fn jpeg(&self, path: &str) -> (usize, usize) {
        let (st, _, body) = self.get(path);
        assert_eq!(st, 200, "{path}: {}", String::from_utf8_lossy(&body));
        jpeg_size(&body)
    }

    fn json(&self, path: &str) -> Value {
        let (st, _, body) = self.get(path);
        assert_eq!(st, 200, "{path}: {}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }
}

const IIP: &str = "/fcgi-bin/iipsrv.fcgi?";

/// Every way to reach `file`'s pixels or metadata, each with whether a degraded client
/// may have it.
fn every_request(file: &str) -> Vec<(String, bool)> {
    let q = |s: &str| format!("{IIP}{s}");
    vec![
        (q(&format!("FIF={file}&OBJ=Max-size")), true),
        (
            q(&format!("FIF={file}&OBJ=IIP,1.0&OBJ=Resolution-number")),
            true,
        ),
        (q(&format!("FIF={file}&JTL=1,0")), true),
        (q(&format!("FIF={file}&JTL=2,0")), false),
        (q(&format!("FIF={file}&TIL=2,0-1")), false),
        (q(&format!("FIF={file}&TIL=1,0-1")), true),
        (q(&format!("FIF={file}&WID=300&CVT=jpeg")), true),
        (q(&format!("FIF={file}&SPECTRA=2,0,5,5")), false),
        (q(&format!("FIF={file}&PFL=2:10,10-15,10")), false),
        (format!("/iiif/{file}/info.json"), true),
        (format!("/iiif/{file}/full/max/0/default.jpg"), true),
        (format!("/iiif/{file}/full/1001,/0/default.jpg"), false),
        (
            format!("/iiif/{file}/0,0,256,256/256,/0/default.jpg"),
            false,
        ),
        (format!("/iiif/{file}/0,0,512,512/256,/0/default.jpg"), true),
        (
            format!("/iiif/{file}/0,0,100,100/100,/0/default.png"),
            false,
        ),
        (q(&format!("DeepZoom={file}.dzi")), true),
        (q(&format!("DeepZoom={file}_files/10/0_0.jpg")), false),
        (q(&format!("DeepZoom={file}_files/9/0_0.jpg")), true),
        (q(&format!("Zoomify={file}/ImageProperties.xml")), true),
        (q(&format!("Zoomify={file}/TileGroup0/2-0-0.jpg")), false),
        (q(&format!("Zoomify={file}/TileGroup0/1-0-0.jpg")), true),
    ]
}

/// What anonymous, authorised and wrongly authorised clients get from one front end.
fn check_front_end(port: u16, fx: &Fixture) {
    let anon = Client {
        port,
        headers: vec![],
    };
    let bearer = |t: String| Client {
        port,
        headers: vec![("Authorization", format!("Bearer {t}"))],
    };
    let cookie = |t: String| Client {
        port,
        headers: vec![("Cookie", format!("other=1; {COOKIE}={t}"))],
    };
    let claims = |paths: &[&str], exp: u64, aud: &str| json!({"exp": exp, "aud": aud, "paths": paths, "sub": "reader"});
    let later = now() + 600;
    let good_hs = bearer(fx.hs256(claims(&["deg", "res/*.tif"], later, AUD)));
    let good_ed = cookie(fx.ed25519(claims(&["**"], later, AUD)));
    let forged = bearer(
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims(&["**"], later, AUD),
            &EncodingKey::from_secret(b"not the server's secret, but long enough"),
        )
        .unwrap(),
    );
    let expired = bearer(fx.hs256(claims(&["**"], now() - 10, AUD)));
    let wrong_aud = cookie(fx.hs256(claims(&["**"], later, "https://elsewhere.test")));
    let wrong_path = bearer(fx.hs256(claims(&["other/**"], later, AUD)));

    // The public image: everything, for everyone.
    for (path, _) in every_request("pub.tif") {
        assert_eq!(anon.status(&path), 200, "{path}");
    }
    assert_eq!(
        anon.jpeg("/iiif/pub.tif/full/max/0/default.jpg"),
        (1001, 777)
    );
    let (_, h, _) = anon.get(&format!("{IIP}FIF=pub.tif&JTL=2,0"));
    assert_ne!(hdr(&h, "cache-control"), Some("private"));

    // The degraded image: no more than 800 pixels' worth, to anyone without a grant.
    for c in [&anon, &forged, &expired, &wrong_aud, &wrong_path] {
        for (path, allowed) in every_request("deg/d.tif") {
            let (st, h, body) = c.get(&path);
            let expect = if allowed { 200 } else { 401 };
            assert_eq!(st, expect, "{path}: {}", String::from_utf8_lossy(&body));
            if st == 401 {
                assert!(body.len() < 200 && !String::from_utf8_lossy(&body).contains("/tmp"));
                assert!(hdr(&h, "www-authenticate").is_some_and(|v| v.starts_with("Bearer")));
            } else {
                assert_eq!(hdr(&h, "cache-control"), Some("private"), "{path}");
            }
        }
        assert_eq!(c.jpeg("/iiif/deg/d.tif/full/max/0/default.jpg"), (800, 621));
        assert_eq!(
            c.jpeg("/iiif/deg/d.tif/full/^max/0/default.jpg"),
            (800, 621)
        );
        assert_eq!(c.jpeg(&format!("{IIP}FIF=deg/d.tif&CVT=jpeg")), (800, 621));
        assert_eq!(
            c.jpeg(&format!("{IIP}FIF=deg/d.tif&WID=1001&CVT=jpeg")),
            (800, 621)
        );
        assert_eq!(
            c.jpeg("/iiif/deg/d.tif/0,0,500,500/max/0/default.jpg"),
            (400, 400)
        );
        let info = c.json("/iiif/deg/d.tif/info.json");
        assert_eq!(
            (info["maxWidth"].as_u64(), info["maxHeight"].as_u64()),
            (Some(800), Some(621))
        );
        assert_eq!(info["tiles"][0]["scaleFactors"], json!([2, 4]));
        assert!(info["sizes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["width"].as_u64().unwrap() <= 800));
    }
    // ... and everything to a client whose token grants it.
    for c in [&good_hs, &good_ed] {
        for (path, _) in every_request("deg/d.tif") {
            assert_eq!(c.status(&path), 200, "{path}");
        }
        assert_eq!(
            c.jpeg("/iiif/deg/d.tif/full/max/0/default.jpg"),
            (1001, 777)
        );
        let info = c.json("/iiif/deg/d.tif/info.json");
        assert_eq!(info["tiles"][0]["scaleFactors"], json!([1, 2, 4]));
        assert!(info.get("maxHeight").is_none_or(|m| m.as_u64() > Some(777)));
    }

    // The restricted image: nothing at all, not even its size, without a grant.
    for c in [&anon, &forged, &expired, &wrong_aud, &wrong_path] {
        for (path, _) in every_request("res/r.tif") {
            let (st, _, body) = c.get(&path);
            assert_eq!(st, 401, "{path}");
            assert!(!String::from_utf8_lossy(&body).contains("1001"), "{path}");
        }
        // Not even whether a file exists.
        assert_eq!(
            c.status(&format!("{IIP}FIF=res/missing.tif&OBJ=Max-size")),
            401
        );
    }
    for c in [&good_hs, &good_ed] {
        for (path, _) in every_request("res/r.tif") {
            assert_eq!(c.status(&path), 200, "{path}");
        }
        assert_eq!(
            c.jpeg("/iiif/res/r.tif/full/max/0/default.jpg"),
            (1001, 777)
        );
    }
    // A grant for deg and res/*.tif is none for signed/.
    assert_eq!(good_hs.status("/iiif/signed/s.tif/info.json"), 401);

    // Signed URLs open the one URL they were made for, until they expire.
    let url = "/iiif/signed/s.tif/full/max/0/default.jpg";
    assert_eq!(anon.jpeg(&fx.signed(url, later)), (1001, 777));
    let tile = fx.signed(&format!("{IIP}FIF=signed/s.tif&JTL=2,0"), later);
    assert_eq!(anon.status(&tile), 200);
    assert_eq!(anon.status(url), 401);
    assert_eq!(anon.status(&fx.signed(url, now() - 1)), 403, "expired");
    let other = fx.signed(url, later).replace("full/max", "full/500,");
    assert_eq!(anon.status(&other), 403, "replayed for another path");
    let forged_sig = format!("{url}?exp={later}&sig={}", "ab".repeat(32));
    assert_eq!(anon.status(&forged_sig), 403, "forged");
    let moved_exp = fx
        .signed(url, later)
        .replace(&format!("exp={later}"), &format!("exp={}", later + 1000));
    assert_eq!(anon.status(&moved_exp), 403, "exp changed");
    // A signature only opens what its rule allows signed URLs for.
    let sig_res = fx.signed("/iiif/res/r.tif/full/max/0/default.jpg", later);
    assert_eq!(anon.status(&sig_res), 401);
}

fn start_nginx_front(fx: &Fixture, extra_env: &[(&str, &str)]) -> (Server, Nginx) {
    let mut env = fx.env();
    env.push(("URI_MAP".into(), "iiif=>IIIF".into()));
    let mut refs = env_refs(&env);
    refs.extend_from_slice(extra_env);
    let s = Server::start(&refs, 2);
    let n = Nginx::start(&s.addr);
    (s, n)
}

#[test]
fn every_protocol_through_nginx() {
    let fx = Fixture::new();
    let (_s, n) = start_nginx_front(&fx, &[]);
    check_front_end(n.port, &fx);
}

#[test]
fn every_protocol_through_http() {
    let fx = Fixture::new();
    let env = fx.env();
    let (_s, port) = start_http(&[], &env_refs(&env));
    check_front_end(port, &fx);
}

/// Probe, access-token and logout services and the info.json service block, checked
/// against the shapes of the IIIF Authorization Flow API 2.0.
#[test]
fn iiif_auth_services_follow_the_spec() {
    let fx = Fixture::new();
    let env = fx.env();
    let (_s, port) = start_http(&[], &env_refs(&env));
    let anon = Client {
        port,
        headers: vec![],
    };
    let token = fx.hs256(json!({"exp": now() + 600, "aud": AUD, "paths": ["deg"]}));
    let with_cookie = Client {
        port,
        headers: vec![("Cookie", format!("{COOKIE}={token}"))],
    };
    let lang_map = |v: &Value| {
        let m = v.as_object().expect("a language map is an object");
        assert!(!m.is_empty());
        for (_, list) in m {
            assert!(list.as_array().unwrap().iter().all(Value::is_string));
        }
    };

    // info.json: service → AuthProbeService2 → AuthAccessService2 → token + logout.
    let info = anon.json("/iiif/deg/d.tif/info.json");
    let id = info["id"].as_str().unwrap().to_owned();
    let probe = info["service"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["type"] == "AuthProbeService2")
        .expect("a probe service");
    assert_eq!(probe["id"], format!("{id}/probe"));
    let access = &probe["service"][0];
    assert_eq!(access["type"], "AuthAccessService2");
    assert_eq!(access["profile"], "active");
    assert_eq!(access["id"], "https://login.test/login");
    for k in ["label", "heading", "note", "confirmLabel"] {
        lang_map(&access[k]);
    }
    assert_eq!(access["heading"]["en"][0], "Staff only");
    let services = access["service"].as_array().unwrap();
    let token_svc = services
        .iter()
        .find(|s| s["type"] == "AuthAccessTokenService2")
        .expect("a token service");
    let logout = services
        .iter()
        .find(|s| s["type"] == "AuthLogoutService2")
        .expect("a logout service");
    lang_map(&logout["label"]);
    for s in [token_svc, logout] {
        assert!(s["id"].as_str().unwrap().starts_with("http"));
    }
    // A public image has no auth services.
    let info = anon.json("/iiif/pub.tif/info.json");
    assert!(info
        .get("service")
        .is_none_or(|s| !s.to_string().contains("AuthProbeService2")));
    // The restricted image's profile is the policy's.
    let info = Client {
        port,
        headers: vec![(
            "Authorization",
            format!(
                "Bearer {}",
                fx.hs256(json!({"exp": now() + 60, "aud": AUD, "paths": ["**"]}))
            ),
        )],
    }
    .json("/iiif/res/r.tif/info.json");
    let probe_of = |info: &Value| {
        info["service"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["type"] == "AuthProbeService2")
            .cloned()
            .unwrap()
    };
    assert_eq!(probe_of(&info)["service"][0]["profile"], "kiosk");

    let path_of = |url: &str| url.splitn(4, '/').nth(3).map(|p| format!("/{p}")).unwrap();
    // Probe: HTTP 200 always, the verdict in `status`.
    let check_probe = |c: &Client, image: &str| -> Value {
        let (st, h, body) = c.get(&format!("/iiif/{image}/probe"));
        assert_eq!(st, 200);
        assert!(hdr(&h, "content-type")
            .unwrap()
            .starts_with("application/ld+json"));
        assert_eq!(hdr(&h, "cache-control"), Some("no-store"));
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["@context"], "http://iiif.io/api/auth/2/context.json");
        assert_eq!(v["type"], "AuthProbeResult2");
        assert!(v["status"].is_u64());
        v
    };
    let v = check_probe(&anon, "deg/d.tif");
    assert_eq!(v["status"], 401);
    lang_map(&v["heading"]);
    lang_map(&v["note"]);
    assert_eq!(v["heading"]["en"][0], "A smaller version");
    let sub = &v["substitute"][0];
    assert_eq!(sub["type"], "Image");
    assert_eq!(
        (sub["width"].as_u64(), sub["height"].as_u64()),
        (Some(800), Some(621))
    );
    // The substitute is what it says.
    assert_eq!(anon.jpeg(&path_of(sub["id"].as_str().unwrap())), (800, 621));
    let v = check_probe(&anon, "res/r.tif");
    assert_eq!(v["status"], 401);
    lang_map(&v["heading"]);
    assert!(v.get("substitute").is_none());
    assert_eq!(check_probe(&anon, "pub.tif")["status"], 200);
    // An image that does not exist, under the restricted rule, looks like one that does.
    assert_eq!(check_probe(&anon, "missing.tif")["status"], 401);

    // Access-token service: JSON without messageId/origin.
    let token_path = path_of(token_svc["id"].as_str().unwrap());
    let (st, h, body) = with_cookie.get(&token_path);
    assert_eq!(st, 200);
    assert_eq!(hdr(&h, "cache-control"), Some("no-store"));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["@context"], "http://iiif.io/api/auth/2/context.json");
    assert_eq!(v["type"], "AuthAccessToken2");
    let expires = v["expiresIn"].as_u64().unwrap();
    assert!(expires > 0 && expires <= 600);
    let bearer = v["accessToken"].as_str().unwrap().to_owned();
    // The token opens the image when presented as a bearer token, as the probe says.
    let with_bearer = Client {
        port,
        headers: vec![("Authorization", format!("Bearer {bearer}"))],
    };
    assert_eq!(check_probe(&with_bearer, "deg/d.tif")["status"], 200);
    assert_eq!(
        with_bearer.jpeg("/iiif/deg/d.tif/full/max/0/default.jpg"),
        (1001, 777)
    );
    // Without a cookie, or with a bad one: an AuthAccessTokenError2 with a known profile.
    for (c, profile) in [
        (&anon, "missingAspect"),
        (
            &Client {
                port,
                headers: vec![("Cookie", format!("{COOKIE}=garbage"))],
            },
            "invalidAspect",
        ),
    ] {
        let v: Value = serde_json::from_slice(&c.get(&token_path).2).unwrap();
        assert_eq!(v["type"], "AuthAccessTokenError2");
        assert_eq!(v["profile"], profile);
        lang_map(&v["heading"]);
    }
    // With messageId and origin: a page that posts the message to the opener's origin.
    let (st, h, body) = with_cookie.get(&format!(
        "{token_path}?messageId=m%201&origin=https%3A%2F%2Fviewer.test"
    ));
    assert_eq!(st, 200);
    assert!(hdr(&h, "content-type").unwrap().starts_with("text/html"));
    let page = String::from_utf8(body).unwrap();
    let start = page.find("postMessage(").unwrap() + "postMessage(".len();
    let end = page
        .rfind(", \"https://viewer.test\");")
        .expect("posted to the origin");
    let msg: Value = serde_json::from_str(&page[start..end]).unwrap();
    assert_eq!(msg["type"], "AuthAccessToken2");
    assert_eq!(msg["messageId"], "m 1");
    // Nothing a client sends can end the script.
    let (_, _, body) = anon.get(&format!(
        "{token_path}?messageId=%3C%2Fscript%3E&origin=https%3A%2F%2Fv.test"
    ));
    assert!(
        !String::from_utf8_lossy(&body).contains("</script>x")
            && String::from_utf8_lossy(&body).matches("</script>").count() == 1
    );
    // Logout expires the cookie.
    let (st, h, _) = with_cookie.get(&path_of(logout["id"].as_str().unwrap()));
    assert_eq!(st, 200);
    let set = hdr(&h, "set-cookie").unwrap();
    assert!(
        set.starts_with(&format!("{COOKIE}=;")) && set.contains("Max-Age=0"),
        "{set}"
    );
}

/// The shared cache: an answer made for one client is never served to one who may see
/// more, or less.
#[test]
fn shared_cache_keeps_access_apart() {
    let fx = Fixture::new();
    let (s, n) = start_nginx_front(&fx, &[("MAX_IMAGE_CACHE_SIZE", "64")]);
    let anon = Client {
        port: n.port,
        headers: vec![],
    };
    let authorised = Client {
        port: n.port,
        headers: vec![(
            "Authorization",
            format!(
                "Bearer {}",
                fx.hs256(json!({"exp": now() + 600, "aud": AUD, "paths": ["**"]}))
            ),
        )],
    };
    for _ in 0..2 {
        assert_eq!(
            anon.jpeg("/iiif/deg/d.tif/full/max/0/default.jpg"),
            (800, 621)
        );
        assert_eq!(
            authorised.jpeg("/iiif/deg/d.tif/full/max/0/default.jpg"),
            (1001, 777)
        );
    }
    // Cached for an authorised client first, then asked for without a grant.
    for path in [
        "/iiif/res/r.tif/full/max/0/default.jpg",
        &format!("{IIP}FIF=res/r.tif&JTL=2,0"),
    ] {
        assert_eq!(authorised.status(path), 200);
        assert_eq!(anon.status(path), 401, "{path}");
    }
    assert_eq!(
        authorised.status(&format!("{IIP}FIF=deg/d.tif&JTL=2,3")),
        200
    );
    assert_eq!(anon.status(&format!("{IIP}FIF=deg/d.tif&JTL=2,3")), 401);
    drop(n);
    s.stop();
}

/// memcached keeps whole answers by request: under a policy its keys carry what the
/// client may see.
#[test]
fn memcached_keeps_access_apart() {
    let (mut mc, port) = start_memcached();
    let fx = Fixture::new();
    let servers = format!("127.0.0.1:{port}");
    let (s, n) = start_nginx_front(
        &fx,
        &[
            ("MEMCACHED_SERVERS", servers.as_str()),
            ("MEMCACHED_IO_TIMEOUT", "5000"),
            ("MAX_IMAGE_CACHE_SIZE", "0"),
        ],
    );
    let anon = Client {
        port: n.port,
        headers: vec![],
    };
    let token = fx.hs256(json!({"exp": now() + 600, "aud": AUD, "paths": ["**"]}));
    let authorised = Client {
        port: n.port,
        headers: vec![("Authorization", format!("Bearer {token}"))],
    };
    // Degraded first, then authorised, then both again (now from memcached).
    let deg = "/iiif/deg/d.tif/full/max/0/default.jpg";
    let cvt = format!("{IIP}FIF=deg/d.tif&CVT=jpeg");
    for _ in 0..2 {
        assert_eq!(anon.jpeg(deg), (800, 621));
        assert_eq!(authorised.jpeg(deg), (1001, 777));
    }
    // Authorised first, then degraded.
    assert_eq!(authorised.jpeg(&cvt), (1001, 777));
    assert_eq!(anon.jpeg(&cvt), (800, 621));
    // A restricted answer kept for an authorised client stays theirs.
    let res = format!("{IIP}FIF=res/r.tif&JTL=2,0");
    assert_eq!(authorised.status(&res), 200);
    assert_eq!(anon.status(&res), 401);
    // The second round came from memcached (the degraded and the full answer).
    let hits = memcached_stat(port, "get_hits");
    assert!(hits >= 2, "{hits} answers served from memcached");
    drop(n);
    s.stop();
    mc.kill().unwrap();
    mc.wait().unwrap();
}

/// One counter of memcached's `stats`.
fn memcached_stat(port: u16, name: &str) -> u64 {
    use std::io::{BufRead, BufReader, Write};
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    c.write_all(b"stats\r\n").unwrap();
    let mut r = BufReader::new(c);
    let mut line = String::new();
    for _ in 0..200 {
        line.clear();
        if r.read_line(&mut line).unwrap() == 0 || line.starts_with("END") {
            break;
        }
        if let Some(v) = line.strip_prefix(&format!("STAT {name} ")) {
            return v.trim().parse().unwrap();
        }
    }
    panic!("memcached reported no {name}");
}

/// A policy that cannot be read stops the start, naming the file and the mistake.
#[test]
fn a_broken_policy_stops_the_start() {
    let dir = TempDir::new("badpolicy");
    let p = dir.0.join("access.toml");
    std::fs::write(&p, "[[rule]]\npath = \"a\"\naccess = \"degraded\"\n").unwrap();
    let out = Command::new(bin())
        .args(["--bind", &dir.0.join("s.sock").display().to_string()])
        .env("ACCESS_POLICY", &p)
        .env("LOGFILE", dir.0.join("log"))
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("access.toml") && err.contains("max_size"),
        "{err}"
    );
}

/// The policy is read again on SIGHUP; a broken one leaves the running policy in force.
#[test]
fn the_policy_is_reread_on_reload() {
    let fx = Fixture::new();
    let env = fx.env();
    let (s, mport) = Server::start_metered(&env_refs(&env), 1);
    let policy = fx.dir.0.join("keys/access.toml");
    let max_size = |s: &Server| s.get("FIF=pub.tif&OBJ=Max-size").status;
    let reload_until = |s: &Server, want: u16| {
        s.signal(libc::SIGHUP);
        let deadline = Instant::now() + Duration::from_secs(20);
        while max_size(s) != want {
            assert!(Instant::now() < deadline, "reload did not take effect");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    assert_eq!(max_size(&s), 200);
    let text = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(
        &policy,
        text.replace(
            "path = \"pub.tif\"\naccess = \"public\"",
            "path = \"pub.tif\"\naccess = \"restricted\"",
        ),
    )
    .unwrap();
    reload_until(&s, 401);
    // A broken policy: the reload fails and pub.tif stays restricted.
    std::fs::write(&policy, "[[rule]]\naccess = \"public\"\n").unwrap();
    s.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(20);
    while counter(mport, "tessera_reload_failures_total") == 0 {
        assert!(Instant::now() < deadline, "reload failure not counted");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        counter(mport, "tessera_reloads_total"),
        1,
        "only the first reload took"
    );
    assert_eq!(max_size(&s), 401);
    assert!(s.log().contains("access.toml"), "the log names the file");
    std::fs::write(&policy, text).unwrap();
    reload_until(&s, 200);
}

/// A login page on loopback, as an institution's would be: every request gets a page
/// that sets `cookie` (for the token service's path only, so that the image itself can
/// only be had with the bearer token). Serves until the test process ends.
fn login_server(cookie: String) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for mut c in l.incoming().take(50).flatten() {
            let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let body = "<!DOCTYPE html><p>Logged in.</p>";
            let _ = write!(
                c,
                "HTTP/1.1 200 OK\r\nSet-Cookie: {cookie}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// Headless Chromium runs the IIIF Authorization Flow 2.0 against a restricted image
/// (probe, login page, token service, probe again) and OpenSeadragon then loads its
/// tiles with the bearer token, while a viewer without it gets none.
#[test]
fn a_browser_runs_the_auth_flow_and_opens_the_image() {
    let fx = Fixture::new();
    let viewer = TempDir::new("auth-osd");
    std::fs::copy(
        osd_dir().join("openseadragon.min.js"),
        viewer.0.join("openseadragon.min.js"),
    )
    .unwrap();
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/auth.html"),
        viewer.0.join("auth.html"),
    )
    .unwrap();
    let mut env = fx.env();
    env.push(("VERBOSITY".into(), "2".into()));
    let (s, port) = start_http(
        &[
            "--viewer".as_ref(),
            viewer.0.as_os_str(),
            "--workers".as_ref(),
            "4".as_ref(),
        ],
        &env_refs(&env),
    );
    let token = fx.hs256(json!({"exp": now() + 600, "aud": AUD, "paths": ["res"]}));
    let login = login_server(format!(
        "{COOKIE}={token}; Path=/iiif/res/r.tif/token; SameSite=Lax"
    ));
    let url = format!(
        "http://127.0.0.1:{port}/viewer/auth.html?image=res/r.tif&login=http://127.0.0.1:{login}/login"
    );
    let profile = TempDir::new("auth-chromium");
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-extensions",
            "--window-size=800,600",
            "--virtual-time-budget=10000",
            &format!("--user-data-dir={}", profile.0.display()),
            "--dump-dom",
            &url,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium (apt-get install chromium)");
    let mut out = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || read_all(&mut out));
    let deadline = Instant::now() + Duration::from_secs(90);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let dom = String::from_utf8_lossy(&reader.join().unwrap()).into_owned();
    let log = dom
        .split("<pre id=\"log\"")
        .nth(1)
        .and_then(|l| l.split_once('>'))
        .map(|(_, l)| l.split("</pre>").next().unwrap_or(""))
        .unwrap_or_else(|| panic!("no log in the page: {dom}"));
    let steps: Vec<&str> = log.lines().collect();
    for want in [
        "probe AuthProbeResult2 401",
        "login done",
        "token AuthAccessToken2 present",
        "probe AuthProbeResult2 200",
        "with tile-loaded",
        "without open-failed",
    ] {
        assert!(steps.contains(&want), "no {want:?} in {steps:?}");
    }
    assert!(
        !steps.iter().any(|s| s.starts_with("without tile-loaded")),
        "{steps:?}"
    );
    let server_log = s.log();
    assert!(
        server_log.contains("/iiif/res/r.tif/token"),
        "the token service was asked"
    );
}
