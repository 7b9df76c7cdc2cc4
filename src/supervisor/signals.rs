//! Signal plumbing. The supervisor turns signals into events through a self-pipe;
//! a worker turns SIGTERM/SIGINT/SIGQUIT into its stop flag, without SA_RESTART so
//! blocking calls return EINTR and the flag is seen at once.

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

static PIPE_WRITE: AtomicI32 = AtomicI32::new(-1);
static CHILD: AtomicBool = AtomicBool::new(false);
static RELOAD: AtomicBool = AtomicBool::new(false);
static STATS: AtomicBool = AtomicBool::new(false);
static STOP: AtomicI32 = AtomicI32::new(0);
static WORKER_STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_supervisor_signal(sig: libc::c_int) {
    match sig {
        libc::SIGCHLD => CHILD.store(true, Ordering::SeqCst),
        libc::SIGHUP => RELOAD.store(true, Ordering::SeqCst),
        libc::SIGUSR1 => STATS.store(true, Ordering::SeqCst),
        _ => STOP.store(sig, Ordering::SeqCst),
    }
    let fd = PIPE_WRITE.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: write(2) is async-signal-safe; a full pipe already holds a wake-up.
        unsafe { libc::write(fd, b"!".as_ptr().cast(), 1) };
    }
}

extern "C" fn on_worker_stop(_sig: libc::c_int) {
    WORKER_STOP.store(true, Ordering::SeqCst);
}

/// What happened since the last wait.
#[derive(Debug, Default)]
pub struct Fired {
    pub child: bool,
    pub reload: bool,
    pub stats: bool,
    pub stop: Option<&'static str>,
}

/// The supervisor's signal handlers and their self-pipe.
pub struct SupervisorSignals {
    read: OwnedFd,
    _write: OwnedFd,
}

fn set(sig: Signal, handler: SigHandler, flags: SaFlags) -> nix::Result<()> {
    // SAFETY: the handlers only touch atomics and call write(2).
    unsafe { sigaction(sig, &SigAction::new(handler, flags, SigSet::empty())) }.map(|_| ())
}

impl SupervisorSignals {
    pub fn install() -> nix::Result<SupervisorSignals> {
        let (read, write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC)?;
        PIPE_WRITE.store(write.as_raw_fd(), Ordering::SeqCst);
        let h = SigHandler::Handler(on_supervisor_signal);
        for sig in [
            Signal::SIGCHLD,
            Signal::SIGHUP,
            Signal::SIGUSR1,
            Signal::SIGTERM,
            Signal::SIGINT,
        ] {
            set(sig, h, SaFlags::SA_RESTART | SaFlags::SA_NOCLDSTOP)?;
        }
        set(Signal::SIGPIPE, SigHandler::SigIgn, SaFlags::empty())?;
        Ok(SupervisorSignals {
            read,
            _write: write,
        })
    }

    /// Waits up to `timeout` for a signal and returns what fired.
    pub fn wait(&self, timeout: Duration) -> Fired {
        self.wait_with(timeout, None).0
    }

    /// Like [`wait`](Self::wait), also watching `extra` (a listening socket) for input.
    pub fn wait_with(&self, timeout: Duration, extra: Option<i32>) -> (Fired, bool) {
        let mut pfds = [
            libc::pollfd {
                fd: self.read.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: extra.unwrap_or(-1),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ms = timeout.as_millis().min(60_000) as libc::c_int;
        // SAFETY: two valid pollfds (a negative fd is ignored); EINTR ends the wait early.
        unsafe { libc::poll(pfds.as_mut_ptr(), 2, ms) };
        let extra_ready = extra.is_some() && pfds[1].revents & libc::POLLIN != 0;
        let mut buf = [0u8; 64];
        // SAFETY: non-blocking read into a local buffer, draining wake-ups.
        while unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {
        }
        let fired = Fired {
            child: CHILD.swap(false, Ordering::SeqCst),
            reload: RELOAD.swap(false, Ordering::SeqCst),
            stats: STATS.swap(false, Ordering::SeqCst),
            stop: match STOP.swap(0, Ordering::SeqCst) {
                0 => None,
                libc::SIGINT => Some("SIGINT"),
                _ => Some("SIGTERM"),
            },
        };
        (fired, extra_ready)
    }
}

/// In a freshly forked worker: die with the supervisor, reset the supervisor's
/// handlers, and turn stop signals into the stop flag.
pub fn worker_setup(supervisor: i32) {
    let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGTERM);
    // The supervisor may have died between fork and prctl.
    if nix::unistd::getppid().as_raw() != supervisor {
        std::process::exit(0);
    }
    PIPE_WRITE.store(-1, Ordering::SeqCst);
    let _ = set(Signal::SIGCHLD, SigHandler::SigDfl, SaFlags::empty());
    let _ = set(Signal::SIGHUP, SigHandler::SigIgn, SaFlags::empty());
    let _ = set(Signal::SIGUSR1, SigHandler::SigIgn, SaFlags::empty());
    let _ = set(Signal::SIGPIPE, SigHandler::SigIgn, SaFlags::empty());
    for sig in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGQUIT] {
        let _ = set(sig, SigHandler::Handler(on_worker_stop), SaFlags::empty());
    }
}

/// The worker's stop flag.
pub fn worker_stop_flag() -> &'static AtomicBool {
    &WORKER_STOP
}
