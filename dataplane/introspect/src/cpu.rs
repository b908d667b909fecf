//! CPU profiles: the [`sampler`](crate::sampler) counts, 100 times per
//! CPU-second, the stack of whichever thread is on a CPU; each profile
//! being taken gets the samples of its window, symbolized here into a
//! Go-shaped CPU profile (`samples/count`, `cpu/nanoseconds`, period 10 ms
//! of CPU).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::sampler::{self, FREQUENCY_HZ};
use crate::{IntrospectError, MAX_PROFILE_STRING_BYTES, symbols};

/// The longest CPU profile one request may take.
pub const MAX_CPU_PROFILE: Duration = Duration::from_secs(60);

/// Profiles taken at once (self-profiling, `/debug/pprof/profile`
/// requests): a further one gets [`IntrospectError::Busy`].
pub const MAX_CPU_READERS: usize = 4;

/// How often the collector drains the sampler's ring.
const DRAIN_EVERY: Duration = Duration::from_millis(20);

/// Samples per stack (return addresses, leaf first).
type Counts = HashMap<Box<[usize]>, i64>;

/// The process's profiler. The sampler (a timer per thread, one handler
/// and ring per process) runs while at least one profile is being taken;
/// profiles that overlap share it, each counting the samples of its own
/// window.
pub struct CpuProfiler {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for CpuProfiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuProfiler").finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    /// Each profile being taken, with what it counted so far.
    readers: HashMap<u64, Counts>,
    next_reader: u64,
    /// Which run of the sampler the collector thread serves (a collector
    /// of an earlier run exits).
    run: u64,
    timers: sampler::ThreadTimers,
}

impl State {
    /// Moves the sampler's complete samples into every reader's counts.
    fn collect(&mut self) {
        let readers = &mut self.readers;
        sampler::drain(|stack, periods| {
            for counts in readers.values_mut() {
                // A stack seen before (the usual case) is not copied again.
                match counts.get_mut(stack) {
                    Some(n) => *n += i64::from(periods),
                    None => {
                        counts.insert(stack.into(), i64::from(periods));
                    }
                }
            }
        });
    }
}

/// The process's profiler: the timer is process-wide, so is this (there
/// is no other way to get one).
pub fn cpu_profiler() -> &'static CpuProfiler {
    static PROFILER: std::sync::LazyLock<CpuProfiler> =
        std::sync::LazyLock::new(|| CpuProfiler { state: Arc::new(Mutex::new(State::default())) });
    &PROFILER
}

impl CpuProfiler {
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
        let started = SystemTime::now();
        std::thread::sleep(duration.min(MAX_CPU_PROFILE));
        let counts = self.end(reader);
        let elapsed = started.elapsed().unwrap_or(duration);
        to_pprof(&counts, started, elapsed)
    }

    /// Samples dropped because the sampler's ring was full (the collector
    /// could not keep up).
    pub fn dropped_samples(&self) -> u64 {
        sampler::dropped()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn begin(&self) -> Result<u64, IntrospectError> {
        let mut s = self.lock();
        if s.readers.len() >= MAX_CPU_READERS {
            return Err(IntrospectError::Busy);
        }
        // Samples taken before this reader are not its own.
        s.collect();
        let id = s.next_reader;
        s.next_reader += 1;
        s.readers.insert(id, Counts::new());
        if !s.timers.is_running() {
            if let Err(e) = s.timers.sync() {
                s.timers.stop();
                s.readers.remove(&id);
                return Err(IntrospectError::Sampler(e.to_string()));
            }
            s.run += 1;
            let (state, run) = (Arc::clone(&self.state), s.run);
            let spawned = std::thread::Builder::new().name("cpu-profile".into()).spawn(move || {
                loop {
                    std::thread::sleep(DRAIN_EVERY);
                    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                    if s.run != run || !s.timers.is_running() {
                        return;
                    }
                    s.collect();
                    // Threads started since get their timer.
                    if let Err(e) = s.timers.sync() {
                        tracing::warn!(error = %e, "cannot list this process's threads");
                    }
                }
            });
            if let Err(e) = spawned {
                s.timers.stop();
                s.readers.remove(&id);
                return Err(IntrospectError::Sampler(format!("cannot start the collector: {e}")));
            }
        }
        Ok(id)
    }

    fn end(&self, id: u64) -> Counts {
        let mut s = self.lock();
        s.collect();
        let counts = s.readers.remove(&id).unwrap_or_default();
        if s.readers.is_empty() {
            s.timers.stop();
            // Whatever arrived after the last reader left belongs to no one.
            sampler::drain(|_, _| {});
        }
        counts
    }
}

fn to_pprof(counts: &Counts, started: SystemTime, elapsed: Duration) -> Result<phlox_pprof::Profile, IntrospectError> {
    let period = 1_000_000_000 / FREQUENCY_HZ;
    let mut builder = phlox_pprof::StackProfileBuilder::new(
        &[("samples", "count"), ("cpu", "nanoseconds")],
        Some((("cpu", "nanoseconds"), period)),
        MAX_PROFILE_STRING_BYTES,
    );
    let mut stack: Vec<symbols::Names> = Vec::new();
    for (addresses, &count) in counts {
        stack.clear();
        // The unwinder ends some stacks with a null frame.
        stack.extend(addresses.iter().filter(|&&a| a != 0).map(|&a| symbols::resolve(a)));
        let leaf = sampled_code_start(&stack);
        let names: Vec<&str> = stack[leaf..].iter().flat_map(|names| names.iter()).map(String::as_str).collect();
        if names.is_empty() {
            continue;
        }
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
    stack.iter().position(|n| is(n, "on_sigprof")).map_or(0, |i| i + 1)
}

pub(crate) fn nanos_since_epoch(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64)
}
