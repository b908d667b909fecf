//! CPU profiles: pprof-rs's process-wide `SIGPROF` timer samples whichever
//! thread is on a CPU, 100 times per CPU-second, and counts distinct stacks;
//! the stacks counted during a profile are symbolized here into a Go-shaped
//! CPU profile (`samples/count`, `cpu/nanoseconds`, period 10 ms of CPU).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use pprof::{ProfilerGuard, ProfilerGuardBuilder};

use crate::{IntrospectError, MAX_PROFILE_STRING_BYTES, symbols};

/// Samples per CPU-second, Go's default.
const FREQUENCY_HZ: i32 = 100;

/// The longest CPU profile one request may take.
pub const MAX_CPU_PROFILE: Duration = Duration::from_secs(60);

/// Libraries whose code the sampler skips: a signal that lands inside the
/// unwinder or the C library's locks would unwind under a lock it may need.
const BLOCKLIST: &[&str] = &["libc", "libgcc", "pthread", "vdso"];

/// Readers of the sampler at once (self-profiling, `/debug/pprof/profile`
/// requests): a further one gets [`IntrospectError::Busy`].
pub const MAX_CPU_READERS: usize = 4;

/// The sampler's counts are restarted this often while readers overlap
/// (each reader keeps what it had counted): its collector spills stacks to
/// a file that would otherwise grow as long as it runs.
const MAX_SAMPLER_AGE: Duration = Duration::from_secs(60);

/// Samples per stack, the stack keyed by the start address of each frame's
/// function (as the sampler tells stacks apart), with the return addresses
/// of one sample of it for the names.
type Counts = HashMap<Box<[usize]>, Counted>;

#[derive(Debug, Clone)]
struct Counted {
    count: isize,
    return_addresses: Arc<[usize]>,
}

/// The sampler of this process. There is one `SIGPROF` timer per process;
/// it runs while at least one profile is being taken, and profiles that
/// overlap share it: each gets the samples counted between its start and
/// its end.
pub struct CpuProfiler {
    sampler: Mutex<Sampler>,
    /// In milliseconds.
    max_sampler_age: AtomicU64,
}

impl std::fmt::Debug for CpuProfiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuProfiler").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Sampler {
    running: Option<(ProfilerGuard<'static>, Instant)>,
    next_reader: u64,
    readers: HashMap<u64, Reader>,
}

/// One profile being taken: the sampler's counts when it started, and what
/// it counted under sampler runs that have been restarted since.
#[derive(Default)]
struct Reader {
    baseline: Counts,
    carried: Counts,
}

/// The process's sampler: the timer is process-wide, so is this (there is
/// no other way to get one).
pub fn cpu_profiler() -> &'static CpuProfiler {
    static PROFILER: std::sync::LazyLock<CpuProfiler> = std::sync::LazyLock::new(|| CpuProfiler {
        sampler: Mutex::default(),
        max_sampler_age: AtomicU64::new(MAX_SAMPLER_AGE.as_millis() as u64),
    });
    &PROFILER
}

impl CpuProfiler {
    /// How often the sampler restarts its counts while profiles overlap
    /// (default 60 s); each profile keeps what it counted.
    pub fn set_max_sampler_age(&self, age: Duration) {
        self.max_sampler_age.store(age.as_millis() as u64, Ordering::Relaxed);
    }

    fn max_sampler_age(&self) -> Duration {
        Duration::from_millis(self.max_sampler_age.load(Ordering::Relaxed))
    }

    /// Samples for `duration` (at most [`MAX_CPU_PROFILE`]) on a blocking
    /// thread and returns the profile.
    pub async fn profile(&'static self, duration: Duration) -> Result<phlox_pprof::Profile, IntrospectError> {
        let duration = duration.min(MAX_CPU_PROFILE);
        tokio::task::spawn_blocking(move || self.profile_blocking(duration))
            .await
            .map_err(|e| IntrospectError::Sampler(e.to_string()))?
    }

    /// As [`Self::profile`], on the calling thread.
    pub fn profile_blocking(&self, duration: Duration) -> Result<phlox_pprof::Profile, IntrospectError> {
        let reader = self.begin()?;
        // The profile's window is the sampler's: from its start (a new
        // sampler allocates its table first) to the last snapshot.
        let started = SystemTime::now();
        std::thread::sleep(duration.min(MAX_CPU_PROFILE));
        let counts = self.end(reader)?;
        let elapsed = started.elapsed().unwrap_or(duration);
        to_pprof(&counts, started, elapsed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Sampler> {
        self.sampler.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn begin(&self) -> Result<u64, IntrospectError> {
        let mut s = self.lock();
        if s.readers.len() >= MAX_CPU_READERS {
            return Err(IntrospectError::Busy);
        }
        s.restart_if_old(self.max_sampler_age())?;
        let baseline = match &s.running {
            Some((guard, _)) => snapshot(guard)?,
            None => {
                s.running = Some((start()?, Instant::now()));
                Counts::new()
            }
        };
        let id = s.next_reader;
        s.next_reader += 1;
        s.readers.insert(id, Reader { baseline, carried: Counts::new() });
        Ok(id)
    }

    fn end(&self, id: u64) -> Result<Counts, IntrospectError> {
        let mut s = self.lock();
        let reader = s.readers.remove(&id).unwrap_or_default();
        let now = match &s.running {
            Some((guard, _)) => snapshot(guard),
            None => Ok(Counts::new()),
        };
        if s.readers.is_empty() {
            // Dropping the guard stops the timer.
            s.running = None;
        } else {
            s.restart_if_old(self.max_sampler_age())?;
        }
        let mut counts = reader.carried;
        add_difference(&mut counts, &now?, &reader.baseline);
        Ok(counts)
    }
}

impl Sampler {
    fn restart_if_old(&mut self, max_age: Duration) -> Result<(), IntrospectError> {
        let Some((guard, since)) = &self.running else { return Ok(()) };
        if since.elapsed() < max_age {
            return Ok(());
        }
        let now = snapshot(guard)?;
        for reader in self.readers.values_mut() {
            let baseline = std::mem::take(&mut reader.baseline);
            add_difference(&mut reader.carried, &now, &baseline);
        }
        // The old guard goes first: one timer at a time.
        self.running = None;
        self.running = Some((start()?, Instant::now()));
        Ok(())
    }
}

fn start() -> Result<ProfilerGuard<'static>, IntrospectError> {
    ProfilerGuardBuilder::default()
        .frequency(FREQUENCY_HZ)
        .blocklist(BLOCKLIST)
        .build()
        .map_err(|e| IntrospectError::Sampler(e.to_string()))
}

fn snapshot(guard: &ProfilerGuard<'static>) -> Result<Counts, IntrospectError> {
    let report = guard.report().build_unresolved().map_err(|e| IntrospectError::Sampler(e.to_string()))?;
    let mut counts = Counts::with_capacity(report.data.len());
    for (stack, count) in report.data {
        let functions: Box<[usize]> = stack.frames.iter().map(|f| f.symbol_address() as usize).collect();
        counts
            .entry(functions)
            .or_insert_with(|| Counted {
                count: 0,
                return_addresses: stack.frames.iter().map(|f| f.ip() as usize).collect(),
            })
            .count += count;
    }
    Ok(counts)
}

/// `into += now - before`, per stack.
fn add_difference(into: &mut Counts, now: &Counts, before: &Counts) {
    for (stack, counted) in now {
        let d = counted.count - before.get(stack).map_or(0, |c| c.count);
        if d > 0 {
            into.entry(stack.clone())
                .or_insert_with(|| Counted { count: 0, return_addresses: Arc::clone(&counted.return_addresses) })
                .count += d;
        }
    }
}

fn to_pprof(counts: &Counts, started: SystemTime, elapsed: Duration) -> Result<phlox_pprof::Profile, IntrospectError> {
    let period = 1_000_000_000 / i64::from(FREQUENCY_HZ);
    let mut builder = phlox_pprof::StackProfileBuilder::new(
        &[("samples", "count"), ("cpu", "nanoseconds")],
        Some((("cpu", "nanoseconds"), period)),
        MAX_PROFILE_STRING_BYTES,
    );
    let mut stack: Vec<symbols::Names> = Vec::new();
    for counted in counts.values() {
        let count = counted.count;
        if count <= 0 {
            continue;
        }
        stack.clear();
        // The unwinder ends some stacks with a null frame.
        stack.extend(counted.return_addresses.iter().filter(|&&a| a != 0).map(|&a| symbols::resolve(a)));
        let leaf = sampled_code_start(&stack);
        let names: Vec<&str> = stack[leaf..].iter().flat_map(|names| names.iter()).map(String::as_str).collect();
        if names.is_empty() {
            continue;
        }
        let count = count as i64;
        builder
            .add(names.iter().rev().copied(), &[count, count * period])
            .map_err(|e| IntrospectError::Sampler(e.to_string()))?;
    }
    builder.time_nanos(nanos_since_epoch(started)).duration_nanos(elapsed.as_nanos() as i64);
    Ok(builder.finish())
}

/// Where the interrupted code starts in a sampled stack (leaf first): after
/// the signal handler's frames and the kernel's signal trampoline.
fn sampled_code_start(stack: &[symbols::Names]) -> usize {
    let is = |names: &symbols::Names, what: &str| names.iter().any(|n| n.contains(what));
    if let Some(i) = stack.iter().position(|n| is(n, "__restore_rt")) {
        return i + 1;
    }
    stack.iter().position(|n| is(n, "perf_signal_handler")).map_or(0, |i| i + 1)
}

pub(crate) fn nanos_since_epoch(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}
