//! The worker's event loop: one thread waits on the listening socket and on every
//! client connection it holds, reads and writes only what the sockets take without
//! blocking, and renders each complete request synchronously. A client that trickles
//! its request, stays silent or reads its response slowly costs a small buffer until
//! its deadline, never the worker's time.
//!
//! Deadlines: a new connection has `REQUEST_TIMEOUT` to deliver its first request
//! whole; a kept-alive one has `IDLE_TIMEOUT` of silence between requests, then
//! `REQUEST_TIMEOUT` from the first byte of the next; a response not taken by the
//! client within `REQUEST_TIMEOUT` is abandoned. Time spent rendering is not charged
//! to the other connections (nothing could be read from them meanwhile).

use super::conn::{may_wait, Conn, Held, Kind, Parked, Phase, Step};
use super::fcgi::{deliver_collected as fcgi_collected, fcgi_limits, serve_fcgi, step_fcgi};
use super::http::{answer_http, deliver_collected as http_collected, http_params, step_http};
use super::linger::Lingering;
use super::poll::{Interest, Poll, LISTENER};
use super::sockopt::{defer_accept, preset_nodelay, queued_connections, raise_file_limit};
use super::{HttpOptions, Worker};
use crate::fcgi::{self, record};
use crate::http;
use crate::supervisor::metrics::Deadline;
use crate::supervisor::{Accepted, Listener, WorkerCtx};
use std::collections::{HashMap, HashSet};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

/// The protocol the listening socket speaks.
pub enum Mode<'a> {
    Fcgi,
    Http(&'a HttpOptions),
}

/// How often deadlines are looked at, and the longest wait for an event.
const TICK: Duration = Duration::from_millis(100);
/// At most this many queued connections are taken by a stopping worker.
const DRAIN_AT_STOP: usize = 64;
/// A stopping worker closes a connection that has sent nothing for this long.
const STOP_SILENCE: Duration = Duration::from_secs(1);
/// Connections a worker may hold before it looks at how many the others hold.
const MIN_TO_BALANCE: usize = 4;
/// Rendering shorter than this is not worth moving every deadline for.
const RENDER_SLACK: Duration = Duration::from_millis(1);
/// How often a request waiting for an admission slot tries again.
const PARKED_RETRY: Duration = Duration::from_millis(5);

/// What becomes of a connection after it was served.
enum Next {
    Keep,
    /// Half-close after the output and wait briefly for the client's close.
    Linger,
    /// Close now.
    Drop,
}

struct Loop<'a> {
    worker: &'a mut Worker,
    ctx: &'a WorkerCtx,
    mode: Mode<'a>,
    poll: Poll,
    conns: HashMap<RawFd, Conn>,
    lingering: Lingering,
    scratch: Vec<u8>,
    request_timeout: Duration,
    idle_timeout: Duration,
    max_connections: usize,
    /// TCP_NODELAY comes from the listening socket; else it is set per connection.
    nodelay_inherited: bool,
    published: usize,
    /// The listening socket, when it is TCP (its accept queue length is known).
    tcp_listener: Option<RawFd>,
    /// How long an expensive request may wait for an admission slot.
    expensive_wait: Duration,
    /// Connections whose request waits for an admission slot.
    waiting: HashSet<RawFd>,
    published_waiting: usize,
}

/// Serves connections from `listener` until the worker is told to stop and has
/// finished what it holds. Returns the worker's exit code.
pub fn run(listener: &Listener, ctx: &WorkerCtx, worker: &mut Worker, mode: Mode) -> i32 {
    raise_file_limit();
    let lfd = listener.raw_fd();
    let poll = match Poll::new(lfd) {
        Ok(p) => p,
        Err(e) => {
            log::error!("cannot wait on the listening socket (epoll): {e}");
            return 1;
        }
    };
    let nodelay_inherited = match listener {
        Listener::Tcp(l) => {
            if !defer_accept(l) {
                log::debug!("TCP_DEFER_ACCEPT not set on the listening socket");
            }
            preset_nodelay(l)
        }
        Listener::Unix(..) => true,
    };
    let cfg = worker.cfg.clone();
    let mut lp = Loop {
        worker,
        ctx,
        mode,
        poll,
        conns: HashMap::new(),
        lingering: Lingering::default(),
        scratch: vec![0; 64 * 1024],
        request_timeout: cfg.request_timeout,
        idle_timeout: cfg.idle_timeout,
        max_connections: cfg.max_connections,
        nodelay_inherited,
        published: 0,
        tcp_listener: matches!(listener, Listener::Tcp(_)).then_some(lfd),
        // Within the request's deadline, which keeps running while it waits.
        expensive_wait: cfg.expensive_wait.min(cfg.request_timeout / 2),
        waiting: HashSet::new(),
        published_waiting: 0,
    };
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut listening = true;
    // The listening socket left for a while: this worker holds more than its share.
    let mut paused = false;
    let mut last_sweep = Instant::now();
    loop {
        if listening && ctx.stopping() {
            // This worker may hold the only wake-up for connections already queued.
            // Leave the listening socket's waiters first, so that later arrivals wake
            // the others, then take what is queued (bounded: the others take the rest).
            lp.poll.forget_listener(lfd);
            listening = false;
            for _ in 0..DRAIN_AT_STOP {
                match listener.accept() {
                    Ok(a) => lp.admit(a),
                    Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
                    Err(_) => break,
                }
            }
        }
        if !listening && lp.conns.is_empty() {
            break;
        }
        let tick = if lp.waiting.is_empty() {
            TICK
        } else {
            PARKED_RETRY
        };
        let n = lp.poll.wait(&mut events, tick);
        for ev in &events[..n] {
            if ev.u64 != LISTENER {
                lp.ready(ev.u64 as RawFd);
                continue;
            }
            if !listening || paused {
                continue;
            }
            match listener.accept() {
                Ok(a) => {
                    // To the back of the queue before serving: arrivals meanwhile wake
                    // the others rather than waiting for this worker.
                    lp.poll.requeue_listener(lfd);
                    lp.admit(a);
                    if lp.over_share() {
                        lp.poll.forget_listener(lfd);
                        paused = true;
                    }
                }
                Err(e) => accept_failed(e),
            }
        }
        if listening && paused && !lp.over_share() {
            lp.poll.requeue_listener(lfd);
            paused = false;
        }
        let now = Instant::now();
        if now.duration_since(last_sweep) >= TICK {
            last_sweep = now;
            lp.sweep(now, !listening);
            if listening && !paused {
                // Take connections queued without a wake-up for this worker: one whose
                // wake-up went to a worker that exited before accepting it
                // (EPOLLEXCLUSIVE wakes one waiter per arrival), or a burst that another
                // worker left because it already holds its share.
                for _ in 0..lp.max_connections {
                    if lp.over_share() {
                        break;
                    }
                    match listener.accept() {
                        Ok(a) => lp.admit(a),
                        Err(_) => break,
                    }
                }
            }
        }
        lp.retry_parked();
        // The round is over: an export that this worker puts back while it serves what
        // else came in may run on the next one.
        crate::render::admission::turn_over();
        if !lp.lingering.is_empty() {
            // Often the web server has closed by now; each one found closed frees a
            // descriptor and its socket at once.
            lp.lingering.sweep();
        }
        lp.publish();
    }
    // Half-closed connections get a moment for their peers' close, so that exiting
    // does not reset a response still in flight.
    let t = Instant::now();
    while !lp.lingering.is_empty() && t.elapsed() < STOP_SILENCE {
        std::thread::sleep(Duration::from_millis(10));
        lp.lingering.sweep();
    }
    lp.publish();
    0
}

fn accept_failed(e: std::io::Error) {
    match e.raw_os_error() {
        Some(libc::EINTR)
        | Some(libc::EAGAIN)
        | Some(libc::ETIMEDOUT)
        | Some(libc::ECONNABORTED)
        | Some(libc::EPROTO) => {}
        _ => {
            // EMFILE and friends: pausing keeps a level-triggered wake-up from spinning.
            log::error!("accept: {e}; pausing");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Loop<'_> {
    fn is_http(&self) -> bool {
        matches!(self.mode, Mode::Http(_))
    }

    /// Takes a new connection into the loop (and reads what it already sent).
    fn admit(&mut self, a: Accepted) {
        let (fd, peer): (OwnedFd, _) = match a {
            Accepted::Tcp(s) => {
                if !self.nodelay_inherited {
                    let _ = s.set_nodelay(true);
                }
                let peer = if self.is_http() {
                    s.peer_addr()
                        .ok()
                        .map(|p| p.ip().to_canonical().to_string())
                } else {
                    None
                };
                (s.into(), peer)
            }
            Accepted::Unix(s) => (s.into(), None),
        };
        if self.conns.len() >= self.max_connections && !self.shed_one() {
            // Every connection held is busy with a request: the newcomer goes.
            self.ctx.metrics().record_shed();
            return;
        }
        let kind = match self.mode {
            Mode::Fcgi => Kind::Fcgi(fcgi::Parser::new(fcgi_limits())),
            Mode::Http(_) => Kind::Http,
        };
        let raw = fd.as_raw_fd();
        let mut c = Conn::new(fd, peer, kind, Instant::now() + self.request_timeout);
        // A web server sends its request right after connecting: it is usually here
        // already, and a one-request connection is then served and closed without ever
        // entering the epoll set.
        match self.drive(&mut c) {
            Next::Keep => {
                let interest = if c.waiting_to_write {
                    Interest::Write
                } else {
                    Interest::Read
                };
                if let Err(e) = self.poll.add(raw, interest) {
                    log::error!("cannot wait on a connection (epoll): {e}");
                    return;
                }
                c.registered = true;
                if c.parked.is_some() {
                    self.waiting.insert(raw);
                }
                self.conns.insert(raw, c);
            }
            next => self.close(c, next),
        }
    }

    /// Closes the connection that has waited longest without a request in progress.
    fn shed_one(&mut self) -> bool {
        let oldest = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c.phase, Phase::Idle | Phase::Fresh) && !c.mid_request())
            .min_by_key(|(_, c)| c.since)
            .map(|(fd, _)| *fd);
        let Some(fd) = oldest else { return false };
        if let Some(c) = self.conns.remove(&fd) {
            self.ctx.metrics().record_shed();
            self.close(c, Next::Linger);
        }
        true
    }

    /// Serves a connection whose socket is ready.
    fn ready(&mut self, fd: RawFd) {
        let Some(mut c) = self.conns.remove(&fd) else {
            return;
        };
        match self.drive(&mut c) {
            Next::Keep => {
                if c.parked.is_some() {
                    self.waiting.insert(fd);
                } else {
                    self.waiting.remove(&fd);
                }
                self.conns.insert(fd, c);
            }
            next => {
                self.waiting.remove(&fd);
                self.close(c, next);
            }
        }
    }

    /// Tries again the requests waiting for an admission slot.
    fn retry_parked(&mut self) {
        if self.waiting.is_empty() {
            return;
        }
        // Trying a waiting request again costs as much as parsing and opening it: not
        // worth it while every slot is taken, unless its wait is over (it is refused).
        let free = crate::render::admission::slot_free();
        let fds: Vec<RawFd> = self.waiting.iter().copied().collect();
        for fd in fds {
            let Some(c) = self.conns.get(&fd) else {
                self.waiting.remove(&fd);
                continue;
            };
            let due = match &c.parked {
                Some(p) => p.job.is_some() || free || !may_wait(Some(p.since), self.expensive_wait),
                None => true,
            };
            if due {
                self.ready(fd);
            }
        }
    }

    fn close(&mut self, c: Conn, how: Next) {
        if c.registered {
            self.poll.remove(c.raw_fd());
        }
        if let Next::Linger = how {
            // SAFETY: shutdown on a descriptor `c` owns.
            unsafe { libc::shutdown(c.raw_fd(), libc::SHUT_WR) };
            self.lingering.push(c.fd);
        }
    }

    /// Reads what arrived, answers every complete request in order and writes as much
    /// as the socket takes.
    fn drive(&mut self, c: &mut Conn) -> Next {
        if let Err(e) = c.read_available(&mut self.scratch) {
            log::debug!("connection failed: {e}");
            return Next::Drop;
        }
        let mut answered = false;
        loop {
            if c.has_output() {
                match c.flush() {
                    Ok(true) => {}
                    Ok(false) => {
                        self.want(c, Interest::Write);
                        c.enter(Phase::Writing, Instant::now(), self.request_timeout);
                        return Next::Keep;
                    }
                    Err(e) => {
                        log::info!("response not delivered: {e}");
                        return Next::Drop;
                    }
                }
            }
            if c.close_when_sent {
                return Next::Linger;
            }
            match self.step(c) {
                Step::Answered => answered = true,
                Step::NeedMore | Step::Parked => break,
                Step::Refused => c.close_when_sent = true,
            }
        }
        self.want(c, Interest::Read);
        if c.eof {
            return Next::Drop;
        }
        let now = Instant::now();
        if c.mid_request() {
            if c.phase == Phase::Fresh {
                // The first request's deadline runs from the accept.
                c.phase = Phase::Reading;
            } else {
                c.enter(Phase::Reading, now, self.request_timeout);
            }
        } else if c.phase != Phase::Fresh || answered {
            c.enter(Phase::Idle, now, self.idle_timeout);
        }
        Next::Keep
    }

    fn want(&mut self, c: &mut Conn, interest: Interest) {
        let write = interest == Interest::Write;
        if c.waiting_to_write != write {
            if !c.registered {
                // Added with this interest when the connection enters the set.
            } else if let Err(e) = self.poll.modify(c.raw_fd(), interest) {
                log::error!("epoll: {e}");
            }
            c.waiting_to_write = write;
        }
    }

    /// Parses and answers the next request of `c`, if it has arrived whole.
    fn step(&mut self, c: &mut Conn) -> Step {
        let start = Instant::now();
        let wait = self.expensive_wait;
        let step = match (c.parked.take(), &self.mode) {
            (
                Some(Parked {
                    request,
                    since,
                    job: Some(mut job),
                }),
                mode,
            ) => match job.poll() {
                None => {
                    c.parked = Some(Parked {
                        request,
                        since,
                        job: Some(job),
                    });
                    Step::Parked
                }
                Some(ended) => match (request, mode) {
                    (Held::Fcgi(req), _) => {
                        let out = self.worker.collected(ended, job.started, &req.params);
                        fcgi_collected(self.ctx, c, &req, out)
                    }
                    (Held::Http(req), Mode::Http(_)) => {
                        let params = http_params(&req, c.peer.as_deref());
                        let out = self.worker.collected(ended, job.started, &params);
                        http_collected(self.ctx, c, &req, out)
                    }
                    (Held::Http(_), Mode::Fcgi) => Step::Refused,
                },
            },
            (
                Some(Parked {
                    request,
                    since,
                    job: None,
                }),
                mode,
            ) => match (request, mode) {
                (Held::Fcgi(req), _) => {
                    serve_fcgi(self.worker, self.ctx, c, req, (Some(since), wait))
                }
                (Held::Http(req), Mode::Http(opts)) => {
                    answer_http(self.worker, self.ctx, opts, c, req, (Some(since), wait))
                }
                (Held::Http(_), Mode::Fcgi) => Step::Refused,
            },
            (None, Mode::Fcgi) => step_fcgi(self.worker, self.ctx, c, wait),
            (None, Mode::Http(opts)) => step_http(self.worker, self.ctx, opts, c, wait),
        };
        if let Step::Answered = step {
            self.ctx.record_request();
            let spent = start.elapsed();
            if spent > RENDER_SLACK {
                for other in self.conns.values_mut() {
                    other.deadline += spent;
                }
            }
        }
        step
    }

    /// Closes connections past their deadline, and when stopping, those with nothing
    /// in progress.
    fn sweep(&mut self, now: Instant, stopping: bool) {
        let due: Vec<RawFd> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                (now >= c.deadline && !c.rendering_elsewhere())
                    || (stopping
                        && !c.has_output()
                        && !c.mid_request()
                        && (c.phase == Phase::Idle
                            || (c.phase == Phase::Fresh
                                && now.duration_since(c.since) >= STOP_SILENCE)))
            })
            .map(|(fd, _)| *fd)
            .collect();
        for fd in due {
            self.waiting.remove(&fd);
            let Some(mut c) = self.conns.remove(&fd) else {
                continue;
            };
            if now < c.deadline {
                self.close(c, Next::Linger);
                continue;
            }
            let which = if c.phase == Phase::Idle {
                Deadline::Idle
            } else {
                Deadline::Request
            };
            self.ctx.metrics().record_deadline(which);
            if c.has_output() {
                // A response the client does not take: give it up.
                log::info!("closing a connection that did not read its response in time");
                self.close(c, Next::Drop);
                continue;
            }
            self.goodbye(&mut c);
            c.close_when_sent = true;
            let _ = c.flush();
            self.close(c, Next::Linger);
        }
    }

    /// The last word to a connection given up at its deadline: FastCGI ends the request
    /// it began, HTTP answers a half-sent request with 408.
    fn goodbye(&self, c: &mut Conn) {
        match &c.kind {
            Kind::Fcgi(p) => {
                if let Some(id) = p.pending_id() {
                    log::info!("FastCGI request {id} not received in time; ending it");
                    record::write_end_request(&mut c.output, id, record::REQUEST_COMPLETE);
                }
            }
            Kind::Http => {
                if c.mid_request() {
                    let r = http::error_response(408, "request not received in time");
                    c.push_output(http::serialize(&r, false, false));
                }
            }
        }
    }

    /// Whether this worker holds clearly more connections than an even split among
    /// the workers would give it. Long-lived connections (HTTP keep-alive, a web
    /// server's kept FastCGI connections) that all land on one worker in a burst
    /// would otherwise stay there, leaving the other workers idle.
    fn over_share(&self) -> bool {
        let workers = self.ctx.workers.max(1);
        if workers == 1 {
            return false;
        }
        let mine = self.conns.len();
        // Most of the time a worker holds a handful: no need to look at the others or
        // ask for the accept queue (this runs on every accept).
        if mine < MIN_TO_BALANCE {
            return false;
        }
        let others = self
            .ctx
            .metrics()
            .connections_total()
            .saturating_sub(self.published);
        // Connections still queued count towards the split: in a burst each worker
        // takes its part of the queue, not a small lead over the others.
        let queued = self.tcp_listener.map_or(0, queued_connections);
        // A few connections either way are noise (one-request connections come and
        // go); leaving the listening socket for them would only delay arrivals.
        mine > (others + mine + queued).div_ceil(workers) + 1
    }

    /// Publishes the number of connections held (not counting half-closed ones on their
    /// way out), when it changed.
    fn publish(&mut self) {
        let n = self.conns.len();
        if n != self.published {
            self.published = n;
            self.ctx.metrics().set_connections(self.ctx.slot, n);
        }
        // Requests rendering in a child process are running, not waiting.
        let w = self
            .waiting
            .iter()
            .filter(|fd| self.conns.get(fd).is_some_and(|c| !c.rendering_elsewhere()))
            .count();
        if w != self.published_waiting {
            self.published_waiting = w;
            self.ctx.metrics().set_admission_waiting(self.ctx.slot, w);
        }
    }
}
