//! Java Flight Recorder (JFR) recordings → pprof, one profile per event
//! kind (`POST /ingest?format=jfr`).
//!
//! # Parser choice
//!
//! A focused parser of the JFR chunk format written here, rather than the
//! `jfrs` crate (0.2.5). `jfrs` was evaluated and rejected because it is
//! not safe on hostile input: it allocates `Vec::with_capacity` from sizes
//! read from the file (the chunk size, and every string length, an `i32`
//! cast to `usize`, so a negative length is a capacity-overflow panic and
//! a large one an allocation of gigabytes), subtracts the header size from
//! the chunk size unchecked, indexes field arrays with file-derived
//! indices, and decodes every event into a tree of `Rc`s (one heap
//! allocation per value). The string-length allocation sits deep inside
//! its value decoder, so it cannot be guarded from outside. We also need
//! only a small part of the format: the metadata event, the constant pools
//! along StackTrace → StackFrame → Method → Class → Symbol, and a few
//! fields of a few event types.
//!
//! The parser (modules `reader`, `metadata`, `chunk`) bounds-checks every
//! read, caps every count by the bytes left (each counted item takes at
//! least a byte, or is an empty struct skipped in O(1)), limits nesting,
//! never panics, and allocates nothing per event: constant pool entries
//! are indexed as (key, offset) and decoded lazily, stacks are resolved
//! once per chunk and pool key and interned, samples are aggregated per
//! (stack, label set). Memory is linear in the input; the function names
//! built (work and memory) and the sample labels of the output are capped
//! by `max_bytes` too.
//!
//! # Mapping
//!
//! Pyroscope's reading of a recording (grafana/jfr-parser), so a Java team
//! sees the same profiles, totals and function names:
//!
//! | JFR event | metric | sample types | period type |
//! |---|---|---|---|
//! | `jdk.ExecutionSample` and `profiler.WallClockSample` whose thread state is known and not `STATE_SLEEPING` (one event each) | `process_cpu` | cpu/nanoseconds | cpu/nanoseconds |
//! | `jdk.ExecutionSample` when the `event` setting is `wall`; `profiler.WallClockSample` (× `samples`) | `wall` | wall/nanoseconds | wall/nanoseconds |
//! | `jdk.ObjectAllocationInNewTLAB` | `memory` | alloc_in_new_tlab_objects/count, alloc_in_new_tlab_bytes/bytes (`tlabSize`) | space/bytes |
//! | `jdk.ObjectAllocationOutsideTLAB` | `memory` | alloc_outside_tlab_objects/count, alloc_outside_tlab_bytes/bytes (`allocationSize`) | space/bytes |
//! | `jdk.JavaMonitorEnter` | `mutex` | contentions/count, delay/nanoseconds (`duration`) | mutex/count |
//! | `jdk.ThreadPark` | `block` | contentions/count, delay/nanoseconds (`duration`) | block/count |
//! | `profiler.LiveObject` | `memory` | live/count | objects/count |
//! | `jdk.ObjectAllocationSample` | `memory` | alloc_sample_objects/count, alloc_sample_bytes/bytes (`weight`) | space/bytes |
//! | `profiler.Malloc` (async-profiler `nativemem`) | `memory` | malloc_objects/count, malloc_bytes/bytes (`size`) | none |
//!
//! Other events (`jdk.NativeMethodSample`, …) are not stored, as in Pyroscope.
//!
//! CPU and wall values: each event is worth `1e9 / sampleRate` nanoseconds
//! (the upload's `sampleRate`, integer division; 0 when it is 0), whatever
//! interval the recording's settings name; the pprof `period` is that
//! value, so the event count of a stack is `value / period`. The `event`
//! setting (`jdk.ActiveSetting` named `event`) applies from where it appears
//! in the recording on, and is returned for the `jfr_event` series label.
//!
//! Lock and park `delay` is in nanoseconds (the event's duration in ticks
//! converted with the chunk's `ticksPerSecond`). Pyroscope stores the
//! ticks under the nanoseconds unit; Phlox stores real nanoseconds.
//!
//! Frames are named `<class>.<method>` with the class's internal name
//! (`java/lang/Thread.run`; native frames of async-profiler are
//! `libc.so.6.__GI___pthread_create`; a class without a name gives
//! `.no_Java_frame`), each part rewritten as Pyroscope does for generated
//! and randomly named symbols (module `symbols`). Frames whose method or
//! class is missing from the constant pools are left out; hidden frames are
//! kept. Each (method, line) is one location, the line read as an unsigned
//! 32-bit number; pprof locations are leaf first, as JFR frames are.
//! Events without a stack trace, or whose stack is empty, are dropped.
//!
//! When a labels snapshot is given, an event's `contextId` field
//! (Pyroscope's Java agent) selects the context whose labels become the
//! sample's pprof labels (pairs whose strings are missing are dropped), a
//! `spanId` becomes a `profile_id` label (16 hex digits) and a `spanName`
//! a `span_name` label.

mod builder;
mod chunk;
mod metadata;
mod reader;
mod symbols;
#[cfg(feature = "testkit")]
pub mod testkit;

use std::collections::HashMap;

use phlox_proto::google::v1::Profile;

use builder::Builder;

/// One profile of a recording: all its events of one kind.
#[derive(Debug, Clone, PartialEq)]
pub struct JfrProfile {
    /// The series `__name__` (`process_cpu`, `wall`, `memory`, `mutex`, `block`).
    pub metric: &'static str,
    /// The event kind (`cpu`, `wall`, `alloc_in_new_tlab`,
    /// `alloc_outside_tlab`, `lock`, `thread_park`, `live_object`,
    /// `alloc_sample`, `malloc`).
    pub kind: &'static str,
    /// A valid pprof: `string_table[0] == ""`, ids from 1.
    pub profile: Profile,
}

/// A recording read as Pyroscope reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct JfrRecording {
    /// One profile per event kind present, in the order of the table above.
    pub profiles: Vec<JfrProfile>,
    /// The recording's `event` setting (async-profiler's mode: `cpu`,
    /// `itimer`, `wall`, …), Pyroscope's `jfr_event` label; None when the
    /// recording has none (the JDK's own recorder).
    pub event: Option<String>,
}

/// Why a JFR upload was rejected. Every variant is a client error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JfrError {
    #[error("not a JFR file: no FLR magic at offset {offset}")]
    NotJfr { offset: usize },
    #[error("unsupported JFR version {major}.{minor} (2.x is supported)")]
    UnsupportedVersion { major: u16, minor: u16 },
    #[error("truncated JFR chunk at offset {offset}")]
    Truncated { offset: usize },
    #[error("malformed JFR: {what} at offset {offset}")]
    Malformed { what: &'static str, offset: usize },
    #[error("bad labels snapshot: {0}")]
    BadLabels(String),
    #[error("invalid gzip stream: {0}")]
    Gzip(String),
    #[error("JFR payload exceeds limit of {limit} bytes")]
    TooLarge { limit: usize },
    /// One kind's profile would be larger than the per-profile limit.
    #[error("the recording's {kind} profile would be larger than {limit} bytes (max_profile_size_bytes)")]
    ProfileTooLarge { kind: &'static str, limit: usize },
    /// All the recording's profiles would take more than the request budget.
    #[error("the recording's profiles would take more than {limit} bytes of memory (max_request_memory)")]
    RequestTooLarge { limit: usize },
}

/// `Context { map<int64, int64> labels = 1; }`: label key string id →
/// value string id.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Context {
    #[prost(map = "int64, int64", tag = "1")]
    pub labels: HashMap<i64, i64>,
}

/// `LabelsSnapshot { map<int64, Context> contexts = 1; map<int64, string> strings = 2; }`,
/// the `labels` part of a JFR upload of Pyroscope's Java agent.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelsSnapshot {
    #[prost(map = "int64, message", tag = "1")]
    pub contexts: HashMap<i64, Context>,
    #[prost(map = "int64, string", tag = "2")]
    pub strings: HashMap<i64, String>,
}

/// Converts a JFR recording (plain or gzip, any number of chunks) into one
/// pprof per event kind present, in the order of the table above. `labels`
/// is an optional `LabelsSnapshot` (plain or gzip). `max_bytes` caps the
/// decompressed recording and snapshot, and the names and labels built.
/// `sample_rate` is the upload's samples per second (CPU and wall values).
/// Every distinct stack of a kind is copied into its pprof: `budget` is
/// checked before each copy. A recording without supported events gives no
/// profiles.
pub fn parse_jfr(
    jfr: &[u8],
    labels: Option<&[u8]>,
    max_bytes: usize,
    sample_rate: u32,
    budget: crate::Budget,
) -> Result<JfrRecording, JfrError> {
    let data = plain(jfr, max_bytes)?;
    let snapshot = match labels {
        Some(l) => {
            let l = plain(l, max_bytes)?;
            let s = <LabelsSnapshot as prost::Message>::decode(l.as_ref())
                .map_err(|e| JfrError::BadLabels(e.to_string()))?;
            Some(s)
        }
        None => None,
    };
    if !data.starts_with(chunk::MAGIC) {
        return Err(JfrError::NotJfr { offset: 0 });
    }
    let mut b = Builder::new(snapshot, max_bytes, sample_rate, budget);
    let mut pos = 0;
    while pos < data.len() {
        pos = chunk::parse_chunk(&data, pos, &mut b)?;
    }
    Ok(JfrRecording { profiles: b.finish(), event: b.event_setting.take() })
}

/// The payload gunzipped (capped) if it is gzip.
fn plain(buf: &[u8], max_bytes: usize) -> Result<std::borrow::Cow<'_, [u8]>, JfrError> {
    phlox_pprof::maybe_gunzip(buf, max_bytes).map_err(|e| match e {
        phlox_pprof::DecodeError::PayloadTooLarge { limit } => JfrError::TooLarge { limit },
        other => JfrError::Gzip(other.to_string()),
    })
}
