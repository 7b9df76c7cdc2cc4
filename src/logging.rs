//! The log backend: iipsrv's `LOGFILE` (a file, or `syslog`) at `VERBOSITY` levels.
//!
//! Each process (supervisor and every worker) calls [`init`] after fork, so file
//! handles and syslog identities carry the right pid. VERBOSITY 0 is silent,
//! 1 start-up and errors, 2 one line per request, 3+ detail.

use crate::config::{Config, LogTarget};
use std::ffi::CString;
use std::io::Write;
use std::sync::Mutex;

enum Sink {
    File(std::fs::File),
    Syslog,
    Stderr,
    Off,
}

struct Logger {
    sink: Mutex<Sink>,
}

static LOGGER: Logger = Logger {
    sink: Mutex::new(Sink::Off),
};

/// Maps iipsrv's VERBOSITY to a `log` level filter.
pub fn level_for(verbosity: u32) -> log::LevelFilter {
    match verbosity {
        0 => log::LevelFilter::Off,
        1 => log::LevelFilter::Info,
        2 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    }
}

/// (Re)opens the log destination for this process. A file that cannot be opened
/// disables logging, as in iipsrv, after one line on standard error.
pub fn init(cfg: &Config) {
    let sink = if cfg.verbosity == 0 {
        Sink::Off
    } else {
        match &cfg.log_target {
            LogTarget::Stderr => Sink::Stderr,
            LogTarget::Syslog => {
                // The ident must outlive every syslog call: leak it once per init.
                let ident: &'static CString = Box::leak(Box::new(CString::new("tessera").unwrap()));
                // SAFETY: ident is a valid NUL-terminated string with 'static lifetime.
                unsafe { libc::openlog(ident.as_ptr(), libc::LOG_PID, libc::LOG_USER) };
                Sink::Syslog
            }
            LogTarget::File(p) => match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
            {
                Ok(f) => Sink::File(f),
                Err(e) => {
                    eprintln!(
                        "tessera: cannot open log file {}: {e}; logging disabled",
                        p.display()
                    );
                    Sink::Off
                }
            },
        }
    };
    *LOGGER.sink.lock().unwrap_or_else(|e| e.into_inner()) = sink;
    // set_logger fails only if already set, which is fine after a fork.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level_for(cfg.verbosity));
}

/// UTC `YYYY-MM-DD HH:MM:SS` for a Unix time.
pub fn utc_timestamp(secs: i64) -> String {
    let days = secs.div_euclid(86400);
    let rem = secs.rem_euclid(86400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        match &mut *sink {
            Sink::Off => {}
            Sink::Syslog => {
                let prio = match record.level() {
                    log::Level::Error => libc::LOG_ERR,
                    log::Level::Warn => libc::LOG_WARNING,
                    log::Level::Info => libc::LOG_INFO,
                    _ => libc::LOG_DEBUG,
                };
                if let Ok(msg) = CString::new(record.args().to_string().replace('\0', " ")) {
                    // SAFETY: format string and argument are valid NUL-terminated strings.
                    unsafe { libc::syslog(prio, c"%s".as_ptr(), msg.as_ptr()) };
                }
            }
            Sink::File(f) => {
                let _ = f.write_all(line(record).as_bytes());
            }
            Sink::Stderr => {
                let _ = std::io::stderr().write_all(line(record).as_bytes());
            }
        }
    }

    fn flush(&self) {}
}

fn line(record: &log::Record) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    format!(
        "{} [{}] {:5} {}\n",
        utc_timestamp(now),
        std::process::id(),
        record.level(),
        record.args()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(utc_timestamp(0), "1970-01-01 00:00:00");
        assert_eq!(utc_timestamp(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc_timestamp(1_795_530_093), "2026-11-24 14:21:33");
    }

    #[test]
    fn verbosity_levels() {
        assert_eq!(level_for(0), log::LevelFilter::Off);
        assert_eq!(level_for(1), log::LevelFilter::Info);
        assert_eq!(level_for(2), log::LevelFilter::Debug);
        assert_eq!(level_for(6), log::LevelFilter::Trace);
    }
}
