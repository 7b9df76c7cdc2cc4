//! A request's time budget (`MAX_RENDER_TIME`): the protocol layer starts a clock when
//! it begins to answer, and the long loops of rendering (tiles of a region, bands of an
//! export) check it between steps, so that a request past its budget ends with an error
//! while the worker goes on. The check is cooperative: a single step (one tile, one band
//! of a JPEG2000 window) always runs to its end, and those are bounded by the decoder
//! limits and the band size.

use std::cell::Cell;
use std::time::{Duration, Instant};

thread_local! {
    static DEADLINE: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Starts the budget of the request this thread answers now (`None`: unlimited).
pub fn start(limit: Option<Duration>) {
    DEADLINE.with(|d| d.set(limit.map(|l| Instant::now() + l)));
}

/// Whether the running request is still within its budget.
pub fn within() -> bool {
    DEADLINE.with(|d| d.get().is_none_or(|t| Instant::now() < t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_runs_out() {
        start(None);
        assert!(within());
        start(Some(Duration::from_millis(30)));
        assert!(within());
        std::thread::sleep(Duration::from_millis(40));
        assert!(!within());
        start(Some(Duration::from_secs(60)));
        assert!(within());
    }
}
