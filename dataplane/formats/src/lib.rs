//! Ingest formats other than pprof, each converted to pprof
//! (`google.v1.Profile`) plus series labels, so that every format goes
//! through the same validation, split and write path.
//!
//! - [`jfr`]: Java Flight Recorder recordings (`/ingest?format=jfr`).
//! - [`otlp`]: OpenTelemetry profiles (`Export`, `/v1development/profiles`).

pub mod otlp;

pub mod jfr;

/// What one request may expand to while it is converted, checked from the
/// compact form before the expansion is allocated: formats that share stacks
/// (OTLP's stack table, JFR's stack-trace pool) could otherwise turn a small
/// body into gigabytes of per-sample copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Largest encoded pprof one converted profile may become
    /// (`max_profile_size_bytes`): every location id of a sample takes at
    /// least one byte.
    pub max_profile_bytes: usize,
    /// Memory all the profiles of one request may take once converted
    /// (`max_request_memory`), counted as 8 bytes per location id plus 64 per
    /// sample.
    pub max_request_bytes: usize,
}

impl Budget {
    /// In-memory bytes of a converted sample with `locations` location ids.
    pub fn sample_bytes(locations: usize) -> usize {
        locations.saturating_mul(8).saturating_add(64)
    }
}
