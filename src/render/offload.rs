//! Expensive requests rendered in a child process. A worker that admits a large export
//! forks: the child renders it at idle CPU priority and leaves the answer in a memory
//! file, ready to send as it is, while the worker goes straight back to its other
//! connections; the worker then sends the file's pages without copying them itself. Tiles are
//! therefore never queued behind an export, and on a busy machine the scheduler runs
//! the export only in the time that tiles leave over.
//!
//! The child shares nothing it could corrupt: the worker's sockets are only
//! inherited, never used (the child's memcached client opens its own connection),
//! and the shared cache and admission slots are built for processes that die at any
//! moment. The child dies with its worker.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Write as _};
use std::os::fd::FromRawFd;
use std::time::Instant;

thread_local! {
    /// In a child: where its answer goes.
    static CHILD: Cell<Option<i32>> = const { Cell::new(None) };
}

/// A request rendering in a child process.
pub struct Job {
    pid: libc::pid_t,
    /// The memory file of the answer, until the child is reaped.
    out: Option<File>,
    pub started: Instant,
}

/// What a fork made of the caller.
pub enum Forked {
    /// The caller goes on; the child's answer comes through the job.
    Parent(Job),
    /// The caller is the child: it renders and then calls [`finish`].
    Child,
}

/// How a job ended.
pub enum Ended {
    /// The memory file holding the bytes the child passed to [`finish`].
    Answer(File),
    /// The child died without an answer (a crash, or killed).
    Died(String),
}

/// Forks a child to go on with the current request.
pub fn fork() -> io::Result<Forked> {
    // SAFETY: the name is a valid C string; the flags are valid.
    let fd = unsafe { libc::memfd_create(c"tessera-answer".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor this function owns.
    let out = unsafe { File::from_raw_fd(fd) };
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: workers are single-threaded, so the child has every lock the parent's
    // thread could hold in the state that thread left it in.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            // SAFETY: plain syscalls on this process.
            unsafe {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::getppid() != parent {
                    libc::_exit(1);
                }
                let param = libc::sched_param { sched_priority: 0 };
                libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
            }
            CHILD.with(|c| c.set(Some(fd)));
            std::mem::forget(out);
            Ok(Forked::Child)
        }
        pid => Ok(Forked::Parent(Job {
            pid,
            out: Some(out),
            started: Instant::now(),
        })),
    }
}

/// Whether this process is a child rendering one request.
pub fn in_child() -> bool {
    CHILD.with(Cell::get).is_some()
}

/// Ends the child: hands `answer` to the worker and exits, without running any
/// destructor (they belong to the worker's copies of everything).
pub fn finish(answer: &[u8]) -> ! {
    let code = match CHILD.with(Cell::get) {
        Some(fd) => {
            // SAFETY: the memory file's descriptor, kept open since the fork; not closed
            // here (the process exits).
            let mut f = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(fd) });
            i32::from(f.write_all(answer).is_err())
        }
        None => 1,
    };
    // SAFETY: exiting the child process.
    unsafe { libc::_exit(code) }
}

impl Job {
    pub fn pid(&self) -> u32 {
        self.pid as u32
    }

    /// The child's outcome once it has exited (given once); `None` while it runs.
    pub fn poll(&mut self) -> Option<Ended> {
        self.out.as_ref()?;
        let mut status = 0;
        // SAFETY: waits for this job's own child without blocking.
        let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
        if r == 0 {
            return None;
        }
        let out = self.out.take()?;
        if r < 0 {
            return Some(Ended::Died(io::Error::last_os_error().to_string()));
        }
        if libc::WIFSIGNALED(status) {
            return Some(Ended::Died(format!(
                "killed by signal {}",
                libc::WTERMSIG(status)
            )));
        }
        if libc::WEXITSTATUS(status) != 0 {
            return Some(Ended::Died(format!(
                "exited with status {}",
                libc::WEXITSTATUS(status)
            )));
        }
        Some(Ended::Answer(out))
    }
}

impl Drop for Job {
    /// A job given up (its client left, the worker stops) ends with its child.
    fn drop(&mut self) {
        if self.out.is_some() {
            // SAFETY: signals and reaps this job's own child.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// How `job` ended (within 10 s).
    fn ended(job: &mut Job) -> Ended {
        let t = Instant::now();
        loop {
            if let Some(e) = job.poll() {
                return e;
            }
            assert!(t.elapsed().as_secs() < 10, "the child never ended");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    #[test]
    fn the_childs_answer_reaches_the_parent_and_a_dead_child_is_reported() {
        match fork().unwrap() {
            Forked::Child => finish(b"Status: 200\r\n\r\nbody"),
            Forked::Parent(mut job) => {
                let ended = ended(&mut job);
                let Ended::Answer(f) = ended else {
                    panic!("no answer")
                };
                let mut all = vec![0; f.metadata().unwrap().len() as usize];
                std::os::unix::fs::FileExt::read_exact_at(&f, &mut all, 0).unwrap();
                assert_eq!(all, b"Status: 200\r\n\r\nbody");
            }
        }
        match fork().unwrap() {
            // SAFETY: the child kills itself before answering.
            Forked::Child => unsafe {
                libc::raise(libc::SIGKILL);
                libc::_exit(0)
            },
            Forked::Parent(mut job) => {
                let ended = ended(&mut job);
                assert!(matches!(ended, Ended::Died(why) if why.contains("signal 9")));
            }
        }
    }
}
