//! The process's own profiles, in the pprof format Go's `net/http/pprof`
//! serves, so that `pyroscope.scrape` and self-profiling see Phlox as they
//! see any Go service:
//!
//! - [`CpuProfiler`]: CPU samples at 100 Hz from one process-wide `SIGPROF`
//!   timer and a bounded ring, shared by the profiles taken at once;
//! - [`heap_profile`]: the live (and cumulative) allocations jemalloc samples
//!   every 512 KiB on average, scaled to estimates of the totals as jeprof
//!   and Go do. The binary installs jemalloc with [`install_allocator!`].
//!
//! Stacks are symbolized in process ([`symbols`]); a profile carries function
//! names, not addresses, because nothing outside the process has its binary.

mod cpu;
mod heap;
mod sampler;
mod symbols;

pub use cpu::{CpuProfiler, MAX_CPU_PROFILE, MAX_CPU_READERS, cpu_profiler};
pub use heap::{HeapProfile, heap_profile};
#[doc(hidden)]
pub use tikv_jemallocator::Jemalloc;

use std::io::Write;

/// Why a profile could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum IntrospectError {
    /// As many CPU profiles as the sampler serves at once are being taken.
    #[error("{} CPU profiles are being taken already; try again when one ends", cpu::MAX_CPU_READERS)]
    Busy,
    /// The sampler could not start or report.
    #[error("the CPU sampler failed: {0}")]
    Sampler(String),
    /// The process does not run jemalloc with profiling on.
    #[error("heap profiling is off: this process does not run jemalloc with prof:true")]
    HeapProfilingOff,
    /// jemalloc refused a control call.
    #[error("jemalloc's {name} failed with error {code}")]
    Jemalloc { name: &'static str, code: i32 },
    /// Reading jemalloc's dump failed.
    #[error("reading the heap dump: {0}")]
    Io(#[from] std::io::Error),
    /// jemalloc's dump is not in the format this version reads.
    #[error("unexpected heap dump: {0}")]
    Dump(String),
}

/// jemalloc's options, read by jemalloc before the first allocation: heap
/// profiling on and active, with cumulative counts, sampling one allocation
/// per 512 KiB (2^19 bytes, Go's `MemProfileRate`) on average; background
/// threads return dirty pages to the system while the process is idle.
pub const MALLOC_CONF: MallocConf =
    MallocConf(c"prof:true,prof_active:true,prof_accum:true,lg_prof_sample:19,background_thread:true".as_ptr().cast());

/// A C string in a static, as jemalloc reads `malloc_conf`.
#[repr(transparent)]
#[derive(Debug)]
pub struct MallocConf(*const u8);

// SAFETY: the pointer is to a byte-string literal, immutable for the whole
// program.
unsafe impl Sync for MallocConf {}

/// Makes jemalloc the global allocator with [`MALLOC_CONF`]; once, in the
/// binary's root module.
#[macro_export]
macro_rules! install_allocator {
    () => {
        #[global_allocator]
        static GLOBAL_ALLOCATOR: $crate::Jemalloc = $crate::Jemalloc;

        // jemalloc's symbols carry the `_rjem_` prefix in tikv-jemalloc-sys.
        #[used]
        #[unsafe(export_name = "_rjem_malloc_conf")]
        static JEMALLOC_CONF: $crate::MallocConf = $crate::MALLOC_CONF;
    };
}

/// A profile as `net/http/pprof` sends it: protobuf, gzip-compressed.
pub fn gzip(profile: &phlox_pprof::Profile) -> Vec<u8> {
    let raw = profile.encode();
    let mut gz = flate2::write::GzEncoder::new(Vec::with_capacity(raw.len() / 4), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let _ = gz.write_all(&raw);
    gz.finish().unwrap_or_default()
}

/// The string table's budget of a profile built here: far above what a
/// process's symbols take.
const MAX_PROFILE_STRING_BYTES: usize = 64 << 20;
