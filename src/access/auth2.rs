//! IIIF Authorization Flow API 2.0 on tessera's side: the service block info.json
//! carries for protected images, the probe service (what this client may see), the
//! access-token service (a login cookie turned into a bearer token for viewers) and a
//! logout page that clears the cookie. tessera runs no login: the access service is
//! the institution's page, named by the policy.

use crate::config::Config;
use crate::model::Access;
use crate::policy::{AuthText, Policy, PolicyRule, Profile, Rule};
use crate::response::Response;
use serde_json::{json, Value};

pub const CONTEXT: &str = "http://iiif.io/api/auth/2/context.json";
const JSON_LD: &str = "application/ld+json;profile=\"http://iiif.io/api/auth/2/context.json\"";

/// A IIIF language map of one English string.
fn lang(s: &str) -> Value {
    json!({ "en": [s] })
}

fn text<'a>(v: &'a Option<String>, default: &'a str) -> &'a str {
    v.as_deref().unwrap_or(default)
}

/// The `AuthProbeService2` description (with its access, token and logout services) of
/// the image service `id`, or `None` when the rule names no access service (an
/// `external` one needs none: the client already has whatever gives access).
pub fn services(auth: &AuthText, id: &str) -> Option<Value> {
    let login = auth.access_service.as_deref();
    if login.is_none() && auth.profile != Profile::External {
        return None;
    }
    let logout = auth
        .logout_service
        .clone()
        .unwrap_or_else(|| format!("{id}/logout"));
    let mut access = json!({ "type": "AuthAccessService2", "profile": auth.profile.name() });
    let m = access.as_object_mut().expect("an object");
    if let Some(login) = login {
        m.insert("id".into(), login.into());
    }
    m.insert(
        "label".into(),
        lang(text(&auth.label, "Log in to see this image")),
    );
    if let Some(h) = &auth.heading {
        m.insert("heading".into(), lang(h));
    }
    if let Some(n) = &auth.note {
        m.insert("note".into(), lang(n));
    }
    if let Some(c) = &auth.confirm_label {
        m.insert("confirmLabel".into(), lang(c));
    }
    m.insert(
        "service".into(),
        json!([
            {
                "id": format!("{id}/token"),
                "type": "AuthAccessTokenService2",
            },
            {
                "id": logout,
                "type": "AuthLogoutService2",
                "label": lang("Log out"),
            }
        ]),
    );
    Some(json!({
        "id": format!("{id}/probe"),
        "type": "AuthProbeService2",
        "service": [access],
    }))
}

/// info.json as a client with `access` may use it: for a degraded image only the sizes
/// and tile scale factors it may fetch, and its largest size as `maxWidth`/`maxHeight`;
/// plus the authorisation services of `rule`.
pub fn decorate_info(body: &str, access: Access, rule: &PolicyRule, id: &str, v: u32) -> String {
    let Ok(mut info) = serde_json::from_str::<Value>(body) else {
        return body.to_owned();
    };
    let full = (
        info["width"].as_u64().unwrap_or(0) as u32,
        info["height"].as_u64().unwrap_or(0) as u32,
    );
    if let Some((mw, mh)) = access.output_limit([0.0, 0.0, 1.0, 1.0], full) {
        if let Some(sizes) = info["sizes"].as_array_mut() {
            sizes.retain(|s| {
                s["width"].as_u64().is_some_and(|w| w <= mw as u64)
                    && s["height"].as_u64().is_some_and(|h| h <= mh as u64)
            });
        }
        if let Some(tiles) = info["tiles"].as_array_mut() {
            for t in tiles {
                if let Some(f) = t["scaleFactors"].as_array_mut() {
                    f.retain(|f| {
                        f.as_u64().is_some_and(|f| {
                            let f = f.max(1) as u32;
                            access.allows_level(full.0.div_ceil(f), full.1.div_ceil(f))
                        })
                    });
                }
            }
        }
        let limits = |o: &mut serde_json::Map<String, Value>| {
            o.insert("maxWidth".into(), mw.into());
            o.insert("maxHeight".into(), mh.into());
        };
        if v >= 3 {
            if let Some(o) = info.as_object_mut() {
                limits(o);
            }
        } else if let Some(o) = info["profile"].get_mut(1).and_then(Value::as_object_mut) {
            limits(o);
        }
    }
    if let Some(probe) = services(&rule.auth, id) {
        match info.get_mut("service") {
            Some(Value::Array(list)) => list.push(probe),
            _ => {
                if let Some(o) = info.as_object_mut() {
                    o.insert("service".into(), json!([probe]));
                }
            }
        }
    }
    serde_json::to_string_pretty(&info).unwrap_or_else(|_| body.to_owned())
}

fn json_response(cfg: &Config, v: &Value) -> Response {
    let mut r = Response::content(cfg, JSON_LD, v.to_string().into_bytes(), None, None);
    no_store(&mut r);
    r
}

/// Answers that depend on the client's credentials are kept by no cache.
fn no_store(r: &mut Response) {
    for (k, v) in r.headers.iter_mut() {
        if k == "Cache-Control" {
            *v = "no-store".into();
        }
    }
}

/// What the probe service answers (always HTTP 200, the verdict in `status`).
pub struct Probe<'a> {
    pub rule: Option<&'a PolicyRule>,
    /// The decision for this client; `None` when the image does not exist.
    pub access: Option<Access>,
    pub id: &'a str,
    /// The full size of the image, when it could be opened.
    pub full: Option<(u32, u32)>,
}

/// The `AuthProbeResult2` for `p`.
pub fn probe(cfg: &Config, p: &Probe) -> Response {
    let mut v = json!({ "@context": CONTEXT, "type": "AuthProbeResult2" });
    let m = v.as_object_mut().expect("an object");
    let auth = p.rule.map(|r| r.auth.clone()).unwrap_or_default();
    let refused = |m: &mut serde_json::Map<String, Value>| {
        m.insert("status".into(), 401.into());
        m.insert(
            "heading".into(),
            lang(text(&auth.probe_heading, "Authorisation required")),
        );
        m.insert(
            "note".into(),
            lang(text(
                &auth.probe_note,
                "This image is available to authorised users only.",
            )),
        );
    };
    match (p.access, p.full) {
        (Some(Access::Full), Some(_)) => {
            m.insert("status".into(), 200.into());
        }
        (Some(a @ Access::Degraded(_)), Some(full)) => {
            refused(m);
            let (w, h) = a.output_limit([0.0, 0.0, 1.0, 1.0], full).unwrap_or(full);
            m.insert(
                "substitute".into(),
                json!([{
                    "id": format!("{}/full/max/0/default.jpg", p.id),
                    "type": "Image",
                    "format": "image/jpeg",
                    "width": w,
                    "height": h,
                }]),
            );
        }
        (None, _) if p.rule.is_some_and(|r| r.rule == Rule::Restricted) => refused(m),
        _ => {
            m.insert("status".into(), 404.into());
            m.insert("heading".into(), lang("No such image"));
        }
    }
    json_response(cfg, &v)
}

/// Parameters of an access-token request.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TokenRequest {
    pub message_id: Option<String>,
    pub origin: Option<String>,
}

/// The access-token service: the login cookie, if valid, re-issued as a bearer token
/// (an `AuthAccessToken2`), else an `AuthAccessTokenError2`. With `messageId` and
/// `origin` the answer is a page that posts it to the opening window, as browser
/// clients ask for it; without them, JSON.
pub fn token_service(
    cfg: &Config,
    policy: &Policy,
    cookie_token: Option<&str>,
    req: &TokenRequest,
) -> Response {
    let now = super::now();
    let verified = cookie_token.map(|t| (t, super::token::verify(&policy.tokens, t)));
    let mut v = match verified {
        Some((raw, Ok(grant))) => {
            let exp = grant.exp.min(now + policy.token_lifetime);
            let token =
                super::token::issue(&policy.tokens, &grant, exp).unwrap_or_else(|| raw.to_owned());
            json!({
                "@context": CONTEXT,
                "type": "AuthAccessToken2",
                "accessToken": token,
                "expiresIn": exp.saturating_sub(now),
            })
        }
        Some((_, Err(e))) => {
            log::info!("access token service: {e}");
            let profile = if e.to_string().contains("xpired") {
                "expiredAspect"
            } else {
                "invalidAspect"
            };
            error_value(
                profile,
                "The login is not valid (any more): please log in again.",
            )
        }
        None => error_value("missingAspect", "Please log in first."),
    };
    let m = v.as_object_mut().expect("an object");
    if let Some(id) = &req.message_id {
        m.insert("messageId".into(), id.clone().into());
    }
    match (&req.message_id, &req.origin) {
        (Some(_), Some(origin)) => {
            // `<` escaped so that nothing in the message can end the script element.
            let msg = v.to_string().replace('<', "\\u003c");
            let origin = Value::from(origin.as_str())
                .to_string()
                .replace('<', "\\u003c");
            let page = format!(
                "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Access token</title></head>\n<body><script>window.parent.postMessage({msg}, {origin});</script></body></html>\n"
            );
            let mut r = Response::content(
                cfg,
                "text/html; charset=utf-8",
                page.into_bytes(),
                None,
                None,
            );
            no_store(&mut r);
            r
        }
        _ => json_response(cfg, &v),
    }
}

fn error_value(profile: &str, note: &str) -> Value {
    json!({
        "@context": CONTEXT,
        "type": "AuthAccessTokenError2",
        "profile": profile,
        "heading": lang("No access"),
        "note": lang(note),
    })
}

/// The logout page: expires the policy's cookie (`Secure` only over HTTPS, where
/// browsers accept it).
pub fn logout(cfg: &Config, policy: &Policy, https: bool) -> Response {
    let mut r = Response::content(
        cfg,
        "text/html; charset=utf-8",
        b"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Logged out</title></head><body><p>You are logged out.</p></body></html>\n".to_vec(),
        None,
        None,
    );
    no_store(&mut r);
    r.headers.push((
        "Set-Cookie".into(),
        format!(
            "{}=; Path=/; Max-Age=0; HttpOnly{}",
            policy.tokens.cookie,
            if https { "; Secure; SameSite=None" } else { "" }
        ),
    ));
    r
}

/// The cookie token of a request (the token service reads the cookie, never a bearer).
pub fn cookie_token<'a>(creds_cookies: Option<&'a str>, policy: &Policy) -> Option<&'a str> {
    super::token::presented(None, creds_cookies, &policy.tokens.cookie)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::pattern::Pattern;

    fn rule(auth: AuthText) -> PolicyRule {
        PolicyRule {
            pattern: Pattern::new("**").unwrap(),
            rule: Rule::Degraded(800),
            signed_urls: false,
            auth,
        }
    }

    const INFO3: &str = r#"{"@context":"http://iiif.io/api/image/3/context.json","id":"http://h/iiif/a.tif","type":"ImageService3","width":1001,"height":777,"sizes":[{"width":250,"height":194},{"width":500,"height":388}],"tiles":[{"width":256,"height":256,"scaleFactors":[1,2,4]}],"profile":"level2","maxWidth":5000,"maxHeight":5000}"#;

    #[test]
    fn degraded_info_lists_only_what_may_be_fetched() {
        let r = rule(AuthText {
            access_service: Some("https://login.test/".into()),
            ..AuthText::default()
        });
        let v: Value = serde_json::from_str(&decorate_info(
            INFO3,
            Access::Degraded(300),
            &r,
            "http://h/iiif/a.tif",
            3,
        ))
        .unwrap();
        assert_eq!(v["sizes"], json!([{"width": 250, "height": 194}]));
        assert_eq!(v["tiles"][0]["scaleFactors"], json!([4]));
        assert_eq!(
            (v["maxWidth"].clone(), v["maxHeight"].clone()),
            (json!(300), json!(233))
        );
        // Keys keep their order: @context first, as the Image API has it.
        assert!(v.as_object().unwrap().keys().next() == Some(&"@context".to_owned()));
        let probe = &v["service"][0];
        assert_eq!(probe["id"], "http://h/iiif/a.tif/probe");
        assert_eq!(
            probe["service"][0]["service"][0]["id"],
            "http://h/iiif/a.tif/token"
        );
        assert_eq!(
            probe["service"][0]["service"][1]["id"],
            "http://h/iiif/a.tif/logout"
        );
        // Version 2 keeps its limits in the profile's second entry.
        let info2 = r#"{"@id":"x","width":1001,"height":777,"sizes":[],"tiles":[],"profile":["http://iiif.io/api/image/2/level2.json",{"formats":["jpg"]}]}"#;
        let v: Value =
            serde_json::from_str(&decorate_info(info2, Access::Degraded(800), &r, "x", 2)).unwrap();
        assert_eq!(v["profile"][1]["maxWidth"], 800);
        assert!(v.get("maxWidth").is_none());
    }

    #[test]
    fn services_need_an_access_service_except_external() {
        assert!(services(&AuthText::default(), "x").is_none());
        let ext = AuthText {
            profile: Profile::External,
            ..AuthText::default()
        };
        let s = services(&ext, "x").unwrap();
        assert_eq!(s["service"][0]["profile"], "external");
        assert!(s["service"][0].get("id").is_none());
    }
}
