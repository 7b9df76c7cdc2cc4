//! HTTP requests on a connection of the built-in HTTP mode: the next request parsed
//! strictly (a framing error is answered and the connection closed), routed to the
//! viewer's page, its files or the protocol handlers, and answered in order or parked
//! on its connection while it waits for an admission slot or renders elsewhere.

use super::conn::{may_wait, park, Conn, Held, Step};
use super::{Answer, Collected, HttpOptions, Wire, Worker};
use crate::http::{self, HttpError};
use crate::protocol::Outcome;
use crate::response::Response;
use crate::supervisor::WorkerCtx;
use std::time::{Duration, Instant};

pub fn step_http(
    worker: &mut Worker,
    ctx: &WorkerCtx,
    opts: &HttpOptions,
    c: &mut Conn,
    wait: Duration,
) -> Step {
    match c.next_http() {
        Ok(Some(req)) => answer_http(worker, ctx, opts, c, req, (None, wait)),
        Ok(None) => Step::NeedMore,
        Err(HttpError::Bad(status, msg)) => {
            let r = http::error_response(status, msg);
            c.push_output(http::serialize(&r, false, false));
            c.discard_input();
            Step::Refused
        }
    }
}

/// Answers an HTTP request, or puts it back to wait for an admission slot (it has
/// waited since `since`, if it was put back before, and may wait `wait` in all).
pub fn answer_http(
    worker: &mut Worker,
    ctx: &WorkerCtx,
    opts: &HttpOptions,
    c: &mut Conn,
    req: http::Request,
    (since, wait): (Option<Instant>, Duration),
) -> Step {
    let may_wait = may_wait(since, wait) && !c.eof;
    let keep = req.keep_alive() && !ctx.stopping();
    let fork = (!c.eof).then_some(Wire::Http { keep });
    match route(worker, opts, &req, c.peer.as_deref(), may_wait, fork) {
        Answer::Done(out) => deliver_http(ctx, c, &req, out.response, out.head_only),
        Answer::Wait => park(c, Held::Http(req), since, None),
        Answer::Running(job) => park(c, Held::Http(req), since, Some(job)),
    }
}

pub fn deliver_http(
    ctx: &WorkerCtx,
    c: &mut Conn,
    req: &http::Request,
    response: Response,
    head_only: bool,
) -> Step {
    let keep = req.keep_alive() && !ctx.stopping();
    c.push_output(http::serialize_head(&response, keep));
    if !head_only {
        c.push_output(response.body);
    }
    if !keep {
        c.close_when_sent = true;
    }
    Step::Answered
}

/// Queues an answer collected from a child process: the response as the child framed
/// it for this connection, or an outcome to frame here.
pub fn deliver_collected(
    ctx: &WorkerCtx,
    c: &mut Conn,
    req: &http::Request,
    out: Collected,
) -> Step {
    match out {
        Collected::Wire(map, start) => {
            c.push_mapped(map, start);
            // The head says whether the connection stays; stopping since closes it too.
            if !req.keep_alive() || ctx.stopping() {
                c.close_when_sent = true;
            }
            Step::Answered
        }
        Collected::Outcome(out) => deliver_http(ctx, c, req, out.response, out.head_only),
    }
}

/// The answer to one HTTP request: the viewer's page and files, 404 for paths no
/// protocol serves, else the same handlers as FastCGI (which may put it back to wait
/// for an admission slot, when `may_wait`, or hand it to a child, framed as `fork` says).
fn route(
    worker: &mut Worker,
    opts: &HttpOptions,
    req: &http::Request,
    peer: Option<&str>,
    may_wait: bool,
    fork: Option<Wire>,
) -> Answer {
    let path = req.path();
    let head = req.method == "HEAD";
    let local = |response| {
        Answer::Done(Outcome {
            response,
            head_only: head,
            protocol: "other",
        })
    };
    if path == "/" && (req.query().is_empty() || req.query().starts_with("image=")) {
        let page =
            http::viewer::index(req.query(), &opts.default_image, opts.viewer_dir.as_deref());
        return local(page);
    }
    if let Some(rel) = path.strip_prefix("/viewer/") {
        let r = http::viewer::asset(opts.viewer_dir.as_deref(), rel)
            .unwrap_or_else(|| http::error_response(404, "no such viewer file"));
        return local(r);
    }
    if req.query().is_empty() && path != "/fcgi-bin/iipsrv.fcgi" && !worker.is_mapped(&req.target) {
        return local(http::error_response(404, "Not found"));
    }
    worker.answer_within(&http_params(req, peer), &req.body, may_wait, fork)
}

/// The CGI parameters of an HTTP request from `peer`.
pub fn http_params(req: &http::Request, peer: Option<&str>) -> crate::fcgi::Params {
    let mut params = req.to_params();
    if let Some(p) = peer {
        params.0.push(("REMOTE_ADDR".into(), p.to_owned()));
    }
    params
}
