//! Heap profiles: jemalloc samples one allocation per 512 KiB on average
//! and keeps the stack of each sampled allocation; `prof.dump` writes the
//! stacks with their live and cumulative counts ("heap_v2" text). They
//! become a Go-shaped heap profile: `alloc_objects`, `alloc_space`,
//! `inuse_objects`, `inuse_space`, each scaled from the samples to an
//! estimate of the total as jeprof and Go's runtime do.

use std::collections::HashMap;
use std::ffi::{CString, c_char, c_void};
use std::io::BufRead;
use std::sync::Mutex;
use std::time::SystemTime;

use crate::{IntrospectError, MAX_PROFILE_STRING_BYTES, symbols};

/// One dump at a time: each writes a file and walks every sampled stack.
static DUMPING: Mutex<()> = Mutex::new(());

/// The sampled allocations of one moment, as jemalloc counted them.
#[derive(Debug, Clone)]
pub struct HeapProfile {
    /// Average bytes between two samples.
    pub sample_period: u64,
    pub taken_at: SystemTime,
    stacks: HashMap<Vec<usize>, Counts>,
}

/// Sampled counts of one stack: live now, and allocated since the start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    inuse_objects: i64,
    inuse_bytes: i64,
    alloc_objects: i64,
    alloc_bytes: i64,
}

/// Dumps jemalloc's heap samples of this process.
pub fn heap_profile() -> Result<HeapProfile, IntrospectError> {
    let _one = DUMPING.lock().unwrap_or_else(|e| e.into_inner());
    if !read_bool(c"opt.prof")? {
        return Err(IntrospectError::HeapProfilingOff);
    }
    let file = tempfile::Builder::new().prefix("phlox-heap-").suffix(".prof").tempfile()?;
    let path = CString::new(file.path().as_os_str().as_encoded_bytes())
        .map_err(|_| IntrospectError::Dump("temporary path with a NUL byte".into()))?;
    let mut name: *const c_char = path.as_ptr();
    // SAFETY: "prof.dump" takes a `const char *` file name as its new value;
    // `path` outlives the call.
    let code = unsafe {
        tikv_jemalloc_sys::mallctl(
            c"prof.dump".as_ptr(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            (&raw mut name).cast::<c_void>(),
            size_of::<*const c_char>(),
        )
    };
    if code != 0 {
        return Err(IntrospectError::Jemalloc { name: "prof.dump", code });
    }
    let taken_at = SystemTime::now();
    parse_dump(std::io::BufReader::new(std::fs::File::open(file.path())?), taken_at)
}

fn read_bool(name: &std::ffi::CStr) -> Result<bool, IntrospectError> {
    let mut value = false;
    let mut len = size_of::<bool>();
    // SAFETY: the option is a bool; `value` and `len` are valid for writes.
    let code = unsafe {
        tikv_jemalloc_sys::mallctl(
            name.as_ptr(),
            (&raw mut value).cast::<c_void>(),
            &raw mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    match code {
        0 => Ok(value),
        // ENOENT: a jemalloc built without profiling has no such option.
        2 => Ok(false),
        code => Err(IntrospectError::Jemalloc { name: "opt.prof", code }),
    }
}

/// Reads jemalloc's "heap_v2" dump: a header with the sample period, then
/// per stack an `@ <return addresses, leaf first>` line followed by the
/// `t*: <live objects>: <live bytes> [<allocated objects>: <allocated bytes>]`
/// line of all threads (per-thread lines are skipped), then the mapped
/// libraries, which in-process symbolization does not need.
fn parse_dump(dump: impl BufRead, taken_at: SystemTime) -> Result<HeapProfile, IntrospectError> {
    let mut lines = dump.lines();
    let header = lines.next().transpose()?.unwrap_or_default();
    let sample_period =
        header
            .strip_prefix("heap_v2/")
            .and_then(|p| p.trim().parse::<u64>().ok())
            .filter(|&p| p > 0)
            .ok_or_else(|| IntrospectError::Dump(format!("header {header:?}, expected heap_v2/<sample period>")))?;
    let mut stacks: HashMap<Vec<usize>, Counts> = HashMap::new();
    let mut current: Option<Vec<usize>> = None;
    for line in lines {
        let line = line?;
        if line.starts_with("MAPPED_LIBRARIES:") {
            break;
        }
        if let Some(addresses) = line.strip_prefix('@') {
            let stack = addresses
                .split_whitespace()
                .map(|a| usize::from_str_radix(a.trim_start_matches("0x"), 16))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| IntrospectError::Dump(format!("stack line {line:?}")))?;
            current = Some(stack);
        } else if let Some(counts) = line.trim_start().strip_prefix("t*:") {
            // The first `t*` line, before any stack, is the whole heap's.
            let Some(stack) = current.take() else { continue };
            let counts = parse_counts(counts).ok_or_else(|| IntrospectError::Dump(format!("counts line {line:?}")))?;
            let entry = stacks.entry(stack).or_default();
            entry.inuse_objects += counts.inuse_objects;
            entry.inuse_bytes += counts.inuse_bytes;
            entry.alloc_objects += counts.alloc_objects;
            entry.alloc_bytes += counts.alloc_bytes;
        }
    }
    Ok(HeapProfile { sample_period, taken_at, stacks })
}

/// ` 3: 1536 [7: 3584]`
fn parse_counts(s: &str) -> Option<Counts> {
    let (live, cumulative) = s.split_once('[')?;
    let (inuse_objects, inuse_bytes) = live.trim().split_once(':')?;
    let (alloc_objects, alloc_bytes) = cumulative.trim().trim_end_matches(']').split_once(':')?;
    Some(Counts {
        inuse_objects: inuse_objects.trim().parse().ok()?,
        inuse_bytes: inuse_bytes.trim().parse().ok()?,
        alloc_objects: alloc_objects.trim().parse().ok()?,
        alloc_bytes: alloc_bytes.trim().parse().ok()?,
    })
}

impl HeapProfile {
    /// The number of distinct sampled stacks.
    pub fn stack_count(&self) -> usize {
        self.stacks.len()
    }

    /// The profile in pprof. With `since`, the allocation counts are those
    /// made after that earlier profile of the same process (what a push
    /// every N seconds should carry); without, those since the start, as
    /// Go's `/debug/pprof/heap` serves them. The in-use counts are always
    /// this moment's.
    pub fn to_pprof(&self, since: Option<&HeapProfile>) -> Result<phlox_pprof::Profile, IntrospectError> {
        let period = self.sample_period as f64;
        let mut builder = phlox_pprof::StackProfileBuilder::new(
            &[
                ("alloc_objects", "count"),
                ("alloc_space", "bytes"),
                ("inuse_objects", "count"),
                ("inuse_space", "bytes"),
            ],
            Some((("space", "bytes"), self.sample_period as i64)),
            MAX_PROFILE_STRING_BYTES,
        );
        let mut names: Vec<symbols::Names> = Vec::new();
        for (stack, counts) in &self.stacks {
            let before = since.and_then(|s| s.stacks.get(stack)).copied().unwrap_or_default();
            let (alloc_objects, alloc_bytes) =
                scale(counts.alloc_objects - before.alloc_objects, counts.alloc_bytes - before.alloc_bytes, period);
            let (inuse_objects, inuse_bytes) = scale(counts.inuse_objects, counts.inuse_bytes, period);
            if alloc_objects == 0 && inuse_objects == 0 {
                continue;
            }
            names.clear();
            names.extend(stack.iter().filter(|&&a| a != 0).map(|&a| symbols::resolve(a)));
            let caller = allocation_site(&names);
            let frames: Vec<&str> = names[caller..].iter().flat_map(|n| n.iter()).map(String::as_str).collect();
            if frames.is_empty() {
                continue;
            }
            builder
                .add(frames.iter().rev().copied(), &[alloc_objects, alloc_bytes, inuse_objects, inuse_bytes])
                .map_err(|e| IntrospectError::Dump(e.to_string()))?;
        }
        let start = since.map_or(self.taken_at, |s| s.taken_at);
        let duration = self.taken_at.duration_since(start).unwrap_or_default();
        builder.time_nanos(crate::cpu::nanos_since_epoch(self.taken_at)).duration_nanos(duration.as_nanos() as i64);
        Ok(builder.finish())
    }
}

/// An estimate of the allocations behind `objects` sampled ones of `bytes`
/// in all: an allocation of `s` bytes is sampled with probability
/// `1 - exp(-s / period)`.
fn scale(objects: i64, bytes: i64, period: f64) -> (i64, i64) {
    if objects <= 0 || bytes <= 0 {
        return (0, 0);
    }
    let average = bytes as f64 / objects as f64;
    let factor = 1.0 / (1.0 - (-average / period).exp());
    ((objects as f64 * factor).round() as i64, (bytes as f64 * factor).round() as i64)
}

/// Where the program's own frames start in a sampled stack (leaf first):
/// after jemalloc's frames and the global allocator's entry points.
fn allocation_site(stack: &[symbols::Names]) -> usize {
    let allocator = |name: &String| {
        name.starts_with("_rjem_")
            || name.contains("__rust_alloc")
            || name.contains("__rust_realloc")
            || name.contains("__rg_alloc")
            || name.contains("__rg_realloc")
            || name.contains("__rdl_alloc")
            || name.contains("tikv_jemallocator::")
    };
    stack.iter().rposition(|names| names.iter().any(allocator)).map_or(0, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUMP: &str = "heap_v2/524288\n  t*: 3: 3145728 [9: 9437184]\n  t0: 3: 3145728 [9: 9437184]\n\
@ 0x10 0x20 0x30\n  t*: 2: 2097152 [6: 6291456]\n  t0: 2: 2097152 [6: 6291456]\n\
@ 0x40 0x30\n  t*: 1: 64 [3: 192]\n  t3: 1: 64 [3: 192]\n\nMAPPED_LIBRARIES:\n55d4-55d5 r-xp 00000000 08:01 1 /bin/x\n";

    #[test]
    fn reads_the_stacks_of_a_heap_v2_dump() {
        let p = parse_dump(DUMP.as_bytes(), SystemTime::UNIX_EPOCH).expect("parses");
        assert_eq!(p.sample_period, 524_288);
        assert_eq!(p.stack_count(), 2);
        let c = p.stacks[&vec![0x10, 0x20, 0x30]];
        assert_eq!(c, Counts { inuse_objects: 2, inuse_bytes: 2_097_152, alloc_objects: 6, alloc_bytes: 6_291_456 });
        assert_eq!(p.stacks[&vec![0x40, 0x30]].alloc_bytes, 192);
    }

    #[test]
    fn refuses_another_format() {
        let e = parse_dump("heap/1\n".as_bytes(), SystemTime::UNIX_EPOCH).expect_err("not heap_v2");
        assert!(e.to_string().contains("heap_v2"), "{e}");
    }

    #[test]
    fn scaling_follows_the_sampling_probability() {
        // 1 MiB allocations at a 512 KiB period are sampled with probability
        // 1 - e^-2 = 0.8647: two sampled stand for 2.313 allocations, 2,425,393 bytes.
        assert_eq!(scale(2, 2 << 20, 524_288.0), (2, 2_425_393));
        // 64-byte allocations: one sample stands for 8,192.5 of them.
        let (objects, bytes) = scale(1, 64, 524_288.0);
        assert_eq!(objects, 8193);
        assert_eq!(bytes, 524_320);
        assert_eq!(scale(0, 0, 524_288.0), (0, 0));
    }
}
