//! Ingest formats other than pprof, each converted to pprof
//! (`google.v1.Profile`) plus series labels, so that every format goes
//! through the same validation, split and write path.
//!
//! - [`jfr`]: Java Flight Recorder recordings (`/ingest?format=jfr`).
//! - [`otlp`]: OpenTelemetry profiles (`Export`, `/v1development/profiles`).

pub mod otlp;

pub mod jfr;
