//! Shared-memory cache for tessera's forked workers.
//!
//! The supervisor creates one region before forking; every worker inherits the
//! mapping. Until the seqlock cache lands this crate only exposes the budget
//! arithmetic that the server's configuration already needs.

/// iipsrv's megabyte: `MAX_IMAGE_CACHE_SIZE` is given in units of 1 024 000 bytes.
pub const IIPSRV_MB: u64 = 1_024_000;

/// Cache budget in bytes for a `MAX_IMAGE_CACHE_SIZE` value in iipsrv megabytes.
/// Negative, zero and non-finite values disable the cache.
pub fn budget_bytes(megabytes: f64) -> u64 {
    if megabytes.is_finite() && megabytes > 0.0 {
        (megabytes * IIPSRV_MB as f64) as u64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_uses_iipsrv_megabytes() {
        assert_eq!(budget_bytes(10.0), 10_240_000);
        assert_eq!(budget_bytes(0.5), 512_000);
        assert_eq!(budget_bytes(0.0), 0);
        assert_eq!(budget_bytes(-3.0), 0);
        assert_eq!(budget_bytes(f64::NAN), 0);
    }
}
