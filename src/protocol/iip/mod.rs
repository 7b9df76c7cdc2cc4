//! The IIP protocol (docs/protocols.md §1): commands run left to right over one view; the first
//! output command answers, OBJ lines accumulate into one text response. This file keeps the
//! session the commands share and the table from each command name to the function that
//! carries it out, so that every command is found in its family's file: view.rs sets the
//! view, obj.rs answers `OBJ`, tiles.rs makes the image outputs, and `SPECTRA` and `PFL` read
//! samples in `protocol::science`.

mod obj;
mod tiles;
mod view;

use super::open::{open_image, Current};
use super::{deepzoom, iiif, science, zoomify, Ctx, HttpInfo};
use crate::encode::Format;
use crate::model::View;
use crate::response::Response;
use Command::{Add, Answer, Set};

fn error_line(code: &str, arg: &str) -> String {
    format!("Error/{}:{} {}\r\n", code.len() + 1 + arg.len(), code, arg)
}

struct Session<'c, 'a> {
    ctx: &'c mut Ctx<'a>,
    http: &'c HttpInfo,
    image: Option<Current>,
    view: View,
    lines: String,
    mime: &'static str,
    errors: String,
}

impl Session<'_, '_> {
    fn error(&mut self, code: &str, arg: &str) {
        self.errors.push_str(&error_line(code, arg));
    }

    fn line(&mut self, s: &str) {
        self.lines.push_str(s);
        self.lines.push_str("\r\n");
    }
}

/// What a command does, and so how `run` calls it.
#[derive(Clone, Copy)]
enum Command {
    /// Sets part of the view for the output commands after it.
    Set(fn(&mut View, &str)),
    /// Adds to the session (text lines, error lines, per-channel ranges); answers nothing.
    Add(fn(&mut Session, &str)),
    /// May answer the request, which ends it.
    Answer(fn(&mut Session, &str) -> Option<Response>),
}

/// Every IIP command by name, matched without regard to case; any other name is the error
/// `2 2`.
const COMMANDS: &[(&str, Command)] = &[
    ("FIF", Answer(fif)),
    ("OBJ", Add(|s, v| s.obj(v))),
    ("JTL", Answer(|s, v| tiles::tile(s, v, Format::Jpeg))),
    ("PTL", Answer(|s, v| tiles::tile(s, v, Format::Png))),
    ("WTL", Answer(|s, v| tiles::tile(s, v, Format::Webp))),
    ("ATL", Answer(|s, v| tiles::tile(s, v, Format::Avif))),
    ("TTL", Answer(|s, v| tiles::tile(s, v, Format::Tiff))),
    ("JTLS", Answer(tiles::jtls)),
    ("TIL", Answer(tiles::til)),
    ("CVT", Answer(tiles::cvt)),
    ("SPECTRA", Answer(|s, v| samples(s, v, science::spectra))),
    ("PFL", Answer(|s, v| samples(s, v, science::profile))),
    ("ROT", Set(view::rot)),
    ("QLT", Set(view::qlt)),
    ("SDS", Set(view::sds)),
    ("LYR", Set(view::lyr)),
    ("WID", Set(view::wid)),
    ("HEI", Set(view::hei)),
    ("RGN", Set(view::rgn)),
    ("ICC", Set(view::icc)),
    ("COL", Set(view::col)),
    ("CNT", Set(view::cnt)),
    ("GAM", Set(view::gam)),
    ("INV", Set(view::inv)),
    ("CMP", Set(view::cmp)),
    ("CTW", Set(view::ctw)),
    ("CNV", Set(view::cnv)),
    ("SHD", Set(view::shd)),
    ("MINMAX", Add(view::minmax)),
    ("IIIF", Answer(|s, v| hand_over(s, v, iiif::handle))),
    ("DEEPZOOM", Answer(|s, v| hand_over(s, v, deepzoom::handle))),
    ("ZOOMIFY", Answer(|s, v| hand_over(s, v, zoomify::handle))),
];

/// `IIIF`, `DeepZoom` and `Zoomify`: the request belongs to that protocol, which answers.
fn hand_over(
    s: &mut Session,
    value: &str,
    handle: fn(&mut Ctx, &HttpInfo, &str) -> Response,
) -> Option<Response> {
    Some(handle(s.ctx, s.http, value))
}

/// `FIF=path`: opens the image the later commands work on; its access level goes into the
/// view, so that every output respects it.
fn fif(s: &mut Session, value: &str) -> Option<Response> {
    match open_image(s.ctx, s.http, value, s.http.encoding()) {
        Ok(cur) => {
            s.view.access = cur.access;
            s.image = Some(cur);
            None
        }
        Err(r) => Some(r),
    }
}

/// `SPECTRA` and `PFL` on the open image. Sample values are read at full resolution, which
/// a degraded image does not give.
fn samples(
    s: &mut Session,
    value: &str,
    read: fn(&crate::config::Config, &Current, &str) -> Response,
) -> Option<Response> {
    let Some(cur) = &s.image else {
        s.error("1 3", "");
        return None;
    };
    Some(match cur.access {
        crate::model::Access::Degraded(m) => crate::access::too_large(s.ctx.cfg, m),
        _ => read(s.ctx.cfg, cur, value),
    })
}

/// Runs the commands of `http.request_string` and returns the response.
pub fn run(ctx: &mut Ctx, http: &HttpInfo) -> Response {
    let cfg = ctx.cfg;
    let mut s = Session {
        ctx,
        http,
        image: None,
        view: View::default(),
        lines: String::new(),
        mime: "application/vnd.netfpx",
        errors: String::new(),
    };
    for piece in http.request_string.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = match piece.split_once('=') {
            Some((n, v)) => (n, v),
            None => (piece, piece),
        };
        if name.is_empty() || value.is_empty() {
            continue;
        }
        log::debug!("Command / Argument is {name} : {value}");
        let command = COMMANDS.iter().find(|(n, _)| n.eq_ignore_ascii_case(name));
        let out = match command.map(|&(_, c)| c) {
            Some(Set(set)) => {
                set(&mut s.view, value);
                None
            }
            Some(Add(add)) => {
                add(&mut s, value);
                None
            }
            Some(Answer(answer)) => answer(&mut s, value),
            None => {
                s.error("2 2", name);
                None
            }
        };
        if let Some(r) = out {
            return r;
        }
    }
    let mtime = s.image.as_ref().map(|c| c.opened.mtime);
    if !s.errors.is_empty() {
        Response::iip_error(cfg, &s.errors)
    } else if !s.lines.is_empty() {
        Response::iip_text(cfg, s.mime, mtime, s.lines.into_bytes())
    } else {
        Response::iip_error(cfg, &error_line("2 1", &http.request_string))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines() {
        assert_eq!(error_line("3 2", "foo"), "Error/7:3 2 foo\r\n");
        assert_eq!(error_line("1 3", ""), "Error/4:1 3 \r\n");
        assert_eq!(error_line("2 1", "WID=100"), "Error/11:2 1 WID=100\r\n");
        assert_eq!(
            error_line("2 1", "FIF=small.tif&WID=100"),
            "Error/25:2 1 FIF=small.tif&WID=100\r\n"
        );
    }

    #[test]
    fn each_command_has_one_entry() {
        let mut names: Vec<&str> = COMMANDS.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), COMMANDS.len());
        assert!(names.iter().all(|n| *n == n.to_ascii_uppercase()));
    }
}
