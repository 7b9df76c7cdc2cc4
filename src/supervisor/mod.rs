//! The supervisor: owns the listening socket, the signals and the worker processes.
//!
//! It binds once (or adopts an inherited socket), forks N single-threaded workers
//! that all `accept()` on it, replaces workers that die, reloads gracefully on
//! SIGHUP and stops gracefully on SIGTERM/SIGINT. Workers own requests; nothing
//! here looks inside one.

// INTERFACE (implementation pending).

use std::os::unix::net::UnixListener;
use std::net::TcpListener;
use std::sync::atomic::AtomicBool;

/// The socket every worker accepts on.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

/// What a worker process gets from the supervisor.
pub struct WorkerCtx {
    /// Set by SIGTERM/SIGINT/SIGQUIT in the worker: finish the current request, then exit.
    pub stop: &'static AtomicBool,
    /// Index of this worker's slot (0..N), stable across restarts of that slot.
    pub slot: usize,
}
