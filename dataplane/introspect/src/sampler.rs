//! The CPU sampler. Every thread of the process gets a POSIX timer on its
//! own CPU clock that sends it `SIGPROF` every 10 ms of its CPU time (as
//! Go's runtime does since 1.18: a process-wide `ITIMER_PROF` yields at most
//! one signal per kernel tick for the whole process, and measured here it
//! counted a third of a busy thread's CPU when other processes competed for
//! the cores). The handler unwinds the thread (libgcc's unwinder, no lock,
//! no allocation) into a free slot of a fixed ring and returns; a collector
//! thread drains the ring every few milliseconds. Memory is bounded by the
//! ring (1 MiB), whatever the stacks and however long the sampler runs;
//! when no slot is free the sample is dropped and counted.

use std::cell::UnsafeCell;
use std::sync::Once;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// Samples per CPU-second, Go's default.
pub(crate) const FREQUENCY_HZ: i64 = 100;

/// Frames kept per sample (the leaf side; deeper stacks lose their root).
const DEPTH: usize = 128;

/// Samples the ring holds between two drains: at 100 Hz a ring of 1024
/// lasts 10 s of one CPU, 80 ms drains leave room for 128 busy CPUs.
const SLOTS: usize = 1024;

const EMPTY: u8 = 0;
const WRITING: u8 = 1;
const READY: u8 = 2;

struct Slot {
    state: AtomicU8,
    len: AtomicUsize,
    /// Periods of CPU this sample stands for: 1 + the timer's overruns.
    weight: AtomicU32,
    return_addresses: UnsafeCell<[usize; DEPTH]>,
}

// SAFETY: `return_addresses` is written only by the handler that moved
// `state` from EMPTY to WRITING, and read only by the drainer after it
// saw READY (release/acquire), which then hands the slot back with EMPTY.
unsafe impl Sync for Slot {}

#[allow(clippy::declare_interior_mutable_const)]
const FREE_SLOT: Slot = Slot {
    state: AtomicU8::new(EMPTY),
    len: AtomicUsize::new(0),
    weight: AtomicU32::new(0),
    return_addresses: UnsafeCell::new([0; DEPTH]),
};

static RING: [Slot; SLOTS] = [FREE_SLOT; SLOTS];
static NEXT: AtomicUsize = AtomicUsize::new(0);
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Slots a sample tries before it is dropped.
const PROBES: usize = 8;

/// The periods a timer signal stands for. The kernel checks a thread's CPU
/// timers at its scheduler ticks: a thread that runs in slices between
/// other processes' may pass several periods before one is seen, and the
/// signal then carries the missed ones as the timer's overrun count.
///
/// SAFETY: `info` is the siginfo of a POSIX timer signal (`si_code`
/// SI_TIMER), whose `_timer` member starts after the three leading ints
/// (aligned to 8 on 64-bit): `si_tid`, then `si_overrun`.
unsafe fn periods(info: *const libc::siginfo_t) -> u32 {
    if info.is_null() {
        return 1;
    }
    // SAFETY: see above; si_code is the third int of every siginfo.
    unsafe {
        if (*info).si_code != libc::SI_TIMER {
            return 1;
        }
        let timer = info.cast::<u8>().add(if cfg!(target_pointer_width = "64") { 16 } else { 12 });
        let overrun = timer.add(4).cast::<libc::c_int>().read_unaligned();
        1 + overrun.clamp(0, 1000) as u32
    }
}

extern "C" fn on_sigprof(_signal: libc::c_int, info: *mut libc::siginfo_t, _context: *mut libc::c_void) {
    // SAFETY: errno is thread-local; the interrupted code must find it as it was.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: the handler is installed for SIGPROF, sent by the timers.
    let weight = unsafe { periods(info) };
    let start = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut stored = false;
    for probe in 0..PROBES {
        let slot = &RING[(start + probe) % SLOTS];
        if slot.state.compare_exchange(EMPTY, WRITING, Ordering::Acquire, Ordering::Relaxed).is_err() {
            continue;
        }
        // SAFETY: this handler owns the slot (WRITING) until it stores READY.
        let addresses = unsafe { &mut *slot.return_addresses.get() };
        let mut n = 0;
        // SAFETY: the unsynchronized walk takes no lock and allocates
        // nothing; it runs on the interrupted thread's own stack.
        unsafe {
            backtrace::trace_unsynchronized(|frame| {
                addresses[n] = frame.ip() as usize;
                n += 1;
                n < DEPTH
            });
        }
        slot.len.store(n, Ordering::Relaxed);
        slot.weight.store(weight, Ordering::Relaxed);
        slot.state.store(READY, Ordering::Release);
        stored = true;
        break;
    }
    if !stored {
        DROPPED.fetch_add(1, Ordering::Relaxed);
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Installs the handler (once per process; it stays: a `SIGPROF` with no
/// handler would end the process).
fn install() -> std::io::Result<()> {
    static INSTALLED: Once = Once::new();
    let mut result = Ok(());
    INSTALLED.call_once(|| {
        // SAFETY: a zeroed sigaction is valid; the handler has the
        // SA_SIGINFO signature and is async-signal-safe (see above).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigprof as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&raw mut action.sa_mask);
            if libc::sigaction(libc::SIGPROF, &raw const action, std::ptr::null_mut()) != 0 {
                result = Err(std::io::Error::last_os_error());
            }
        }
    });
    result
}

/// A timer of one thread's CPU clock.
struct ThreadTimer(libc::timer_t);

// SAFETY: a timer id is a process-wide handle, usable from any thread.
unsafe impl Send for ThreadTimer {}

/// The per-thread timers while the sampler runs.
#[derive(Default)]
pub(crate) struct ThreadTimers {
    timers: std::collections::HashMap<libc::pid_t, ThreadTimer>,
}

impl ThreadTimers {
    /// Arms a timer for every thread that has none (threads come and go:
    /// called on every collector round) and deletes those of threads that
    /// ended.
    pub(crate) fn sync(&mut self) -> std::io::Result<()> {
        install()?;
        let mut alive = std::collections::HashSet::new();
        for entry in std::fs::read_dir("/proc/self/task")? {
            let Some(tid) = entry?.file_name().to_str().and_then(|t| t.parse::<libc::pid_t>().ok()) else { continue };
            alive.insert(tid);
            if !self.timers.contains_key(&tid)
                && let Some(timer) = arm(tid)
            {
                self.timers.insert(tid, timer);
            }
        }
        self.timers.retain(|tid, timer| {
            let keep = alive.contains(tid);
            if !keep {
                // SAFETY: the timer was created by `arm` and is deleted once.
                unsafe { libc::timer_delete(timer.0) };
            }
            keep
        });
        Ok(())
    }

    /// Deletes every timer: no more samples.
    pub(crate) fn stop(&mut self) {
        for (_, timer) in self.timers.drain() {
            // SAFETY: as in `sync`.
            unsafe { libc::timer_delete(timer.0) };
        }
    }

    pub(crate) fn is_running(&self) -> bool {
        !self.timers.is_empty()
    }
}

/// A timer on thread `tid`'s CPU clock sending it `SIGPROF` every period;
/// none when the thread has just ended.
fn arm(tid: libc::pid_t) -> Option<ThreadTimer> {
    // The kernel's CPU clock id of a thread (glibc's pthread_getcpuclockid
    // builds the same): the inverted tid, then "per thread" and "sched".
    let clock: libc::clockid_t = ((!tid) << 3) | 6;
    // SAFETY: a zeroed sigevent is valid; the fields set are the ones
    // SIGEV_THREAD_ID reads.
    let mut event: libc::sigevent = unsafe { std::mem::zeroed() };
    event.sigev_notify = libc::SIGEV_THREAD_ID;
    event.sigev_signo = libc::SIGPROF;
    event.sigev_notify_thread_id = tid;
    let mut timer: libc::timer_t = std::ptr::null_mut();
    // SAFETY: valid pointers to an initialized sigevent and an out slot.
    if unsafe { libc::timer_create(clock, &raw mut event, &raw mut timer) } != 0 {
        return None;
    }
    let period = libc::timespec { tv_sec: 0, tv_nsec: (1_000_000_000 / FREQUENCY_HZ) as libc::c_long };
    let spec = libc::itimerspec { it_interval: period, it_value: period };
    // SAFETY: `timer` was just created; the old value is not wanted.
    if unsafe { libc::timer_settime(timer, 0, &raw const spec, std::ptr::null_mut()) } != 0 {
        // SAFETY: created above, deleted once.
        unsafe { libc::timer_delete(timer) };
        return None;
    }
    Some(ThreadTimer(timer))
}

/// Hands every complete sample (return addresses, leaf first, and the
/// periods it stands for) to `each` and frees its slot.
pub(crate) fn drain(mut each: impl FnMut(&[usize], u32)) {
    for slot in &RING {
        if slot.state.load(Ordering::Acquire) != READY {
            continue;
        }
        let n = slot.len.load(Ordering::Relaxed).min(DEPTH);
        // SAFETY: READY: the handler is done with the slot until EMPTY.
        let addresses = unsafe { &*slot.return_addresses.get() };
        each(&addresses[..n], slot.weight.load(Ordering::Relaxed));
        slot.state.store(EMPTY, Ordering::Release);
    }
}

/// Samples dropped so far because the ring was full.
pub(crate) fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}
