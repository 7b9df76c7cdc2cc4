//! FastCGI requests on a connection from a web server: the next request taken from
//! the record parser, answered through the protocol handlers and written back as
//! records, or parked on its connection while it waits for an admission slot or
//! renders elsewhere.

use super::conn::{may_wait, park, Conn, Held, Step};
use super::{Answer, Collected, Wire, Worker};
use crate::fcgi::{self, record};
use crate::protocol::Outcome;
use crate::supervisor::WorkerCtx;
use std::time::{Duration, Instant};

/// Limits for connections from a web server.
pub fn fcgi_limits() -> fcgi::Limits {
    fcgi::Limits {
        // A 1 MB query string must still get an answer (an IIP error), not a reset.
        max_params_bytes: 4 << 20,
        ..fcgi::Limits::default()
    }
}

/// Answers the next request of `c`, if it has arrived whole.
pub fn step_fcgi(worker: &mut Worker, ctx: &WorkerCtx, c: &mut Conn, wait: Duration) -> Step {
    match c.next_fcgi() {
        Ok(Some(req)) => serve_fcgi(worker, ctx, c, req, (None, wait)),
        Ok(None) => Step::NeedMore,
        Err(e) => {
            log::info!("closing FastCGI connection: {e}");
            c.discard_input();
            Step::Refused
        }
    }
}

/// Answers a FastCGI request, or puts it back to wait for an admission slot (it has
/// waited since `since`, if it was put back before, and may wait `wait` in all).
pub fn serve_fcgi(
    worker: &mut Worker,
    ctx: &WorkerCtx,
    c: &mut Conn,
    req: fcgi::Request,
    (since, wait): (Option<Instant>, Duration),
) -> Step {
    // A client that has closed its side is answered now: its socket would wake the
    // loop on every turn while the request waited.
    let may_wait = may_wait(since, wait) && !c.eof;
    let fork = (!c.eof).then_some(Wire::Fcgi(req.id));
    match worker.answer_within(&req.params, &req.stdin, may_wait, fork) {
        Answer::Done(out) => deliver_fcgi(ctx, c, &req, out),
        Answer::Wait => park(c, Held::Fcgi(req), since, None),
        Answer::Running(job) => park(c, Held::Fcgi(req), since, Some(job)),
    }
}

/// Queues the answer to `req` as FastCGI records.
pub fn deliver_fcgi(ctx: &WorkerCtx, c: &mut Conn, req: &fcgi::Request, out: Outcome) -> Step {
    deliver_collected(ctx, c, req, Collected::Outcome(out))
}

/// Queues the answer to `req`: records a child process wrote, or an outcome to frame.
pub fn deliver_collected(
    ctx: &WorkerCtx,
    c: &mut Conn,
    req: &fcgi::Request,
    out: Collected,
) -> Step {
    match out {
        Collected::Wire(map, start) => c.push_mapped(map, start),
        Collected::Outcome(out) => {
            let body = out.response.to_cgi(out.head_only);
            record::write_response(&mut c.output, req.id, &body);
        }
    }
    if !req.keep_conn || ctx.stopping() {
        c.close_when_sent = true;
    }
    Step::Answered
}
