//! The profiles of this test process, with jemalloc installed as the
//! binary installs it: the work a known function does shows up under its
//! name with the amounts the test made it do.

use std::time::{Duration, Instant, SystemTime};

use phlox_introspect::{IntrospectError, cpu_profiler};
use phlox_pprof::Profile;

phlox_introspect::install_allocator!();

/// The tests share the process's sampler, the busy function and its memory
/// (one measures it): one at a time.
static ONE_CPU_TEST: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The value of sample type `type_name` summed over the samples whose stack
/// holds a function named `function`, and over all samples.
fn total_under(profile: &Profile, type_name: &str, function: &str) -> (i64, i64) {
    let t = (0..profile.sample_types.len())
        .find(|&i| profile.strings.str(profile.sample_types[i].r#type) == type_name)
        .unwrap_or_else(|| panic!("no sample type {type_name}"));
    let (mut under, mut all) = (0, 0);
    for s in 0..profile.sample_count() {
        let v = profile.sample_value(s, t);
        all += v;
        let holds = profile.sample_location_ids(s).iter().any(|&id| {
            let loc = profile.location(id).expect("location");
            profile.lines[loc.lines.start as usize..loc.lines.end as usize].iter().any(|line| {
                let f = profile.function(line.function_id).expect("function");
                profile.strings.str(f.name).ends_with(function)
            })
        });
        if holds {
            under += v;
        }
    }
    (under, all)
}

/// The CPU time the calling thread has used.
fn thread_cpu_time() -> Duration {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is valid for writes; the clock exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut t) };
    assert_eq!(rc, 0);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Burns CPU until `until`, recording (wall time, own CPU time) every few
/// milliseconds: how much CPU it got in any window is then known without
/// the profiler (the machine may give it any share of a core).
#[inline(never)]
fn burn_cpu_in_a_known_function(until: Instant) -> Vec<(SystemTime, Duration)> {
    let mut x = 1u64;
    let mut record = vec![(SystemTime::now(), thread_cpu_time())];
    while Instant::now() < until {
        for _ in 0..10_000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407));
        }
        record.push((SystemTime::now(), thread_cpu_time()));
    }
    std::hint::black_box(x);
    record
}

/// The burner's CPU time in the window a profile says it covers.
fn cpu_in_window(record: &[(SystemTime, Duration)], profile: &Profile) -> Duration {
    let from = SystemTime::UNIX_EPOCH + Duration::from_nanos(profile.time_nanos as u64);
    let to = from + Duration::from_nanos(profile.duration_nanos as u64);
    let at = |t: SystemTime| record.iter().rev().find(|(w, _)| *w <= t).map_or(Duration::ZERO, |r| r.1);
    at(to).saturating_sub(at(from))
}

/// The samples under the busy function match the CPU time it had in the
/// profile's window, one per 10 ms, within sampling noise (no sample lost,
/// none counted twice by overlapping readers), or short by at most the
/// share `lost`.
fn assert_samples_match(samples: i64, cpu: Duration, lost: f64) {
    let expected = cpu.as_secs_f64() * 100.0;
    let tolerance = (expected * 0.2).max(6.0);
    let low = (expected * (1.0 - lost) - tolerance).max(0.0);
    assert!(
        samples as f64 >= low && samples as f64 <= expected + tolerance,
        "{samples} samples under the busy function, {expected:.0} expected from its {cpu:?} of CPU"
    );
    assert!(samples > 0, "no sample under the busy function");
}

#[test]
fn overlapping_cpu_profiles_share_the_sampler_and_each_holds_the_busy_function() {
    let _alone = ONE_CPU_TEST.lock().unwrap_or_else(|e| e.into_inner());
    let until = Instant::now() + Duration::from_millis(2000);
    let burner = std::thread::spawn(move || burn_cpu_in_a_known_function(until));
    // Two profiles overlap by half their length, as a scrape and a
    // self-profiling push may.
    let window = || cpu_profiler().profile_blocking(Duration::from_secs(1));
    let first = std::thread::spawn(window);
    std::thread::sleep(Duration::from_millis(500));
    let second = std::thread::spawn(window);
    std::thread::sleep(Duration::from_millis(100));
    // The sampler serves a bounded number of readers at once.
    let more: Vec<_> = (0..phlox_introspect::MAX_CPU_READERS - 2)
        .map(|_| std::thread::spawn(|| cpu_profiler().profile_blocking(Duration::from_millis(400))))
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let refused = cpu_profiler().profile_blocking(Duration::from_millis(10));
    assert!(matches!(refused, Err(IntrospectError::Busy)), "{refused:?}");
    for m in more {
        m.join().expect("reader thread").expect("profile");
    }
    let first = first.join().expect("profiler thread");
    let second = second.join().expect("profiler thread");
    let record = burner.join().expect("burner");

    for profile in [first, second] {
        // Re-encoded and decoded as any reader would.
        let profile = Profile::decode(&profile.expect("profile").encode()).expect("decodes");
        assert_eq!(profile.strings.str(profile.period_type.as_ref().expect("period type").r#type), "cpu");
        assert_eq!(profile.period, 10_000_000);
        let (under, _) = total_under(&profile, "samples", "burn_cpu_in_a_known_function");
        assert_samples_match(under, cpu_in_window(&record, &profile), 0.0);
        let (cpu_under, _) = total_under(&profile, "cpu", "burn_cpu_in_a_known_function");
        assert_eq!(cpu_under, under * 10_000_000);
        assert!(!format!("{:?}", profile.strings).contains("perf_signal_handler"), "the sampler's frames are cut");
    }
}

/// The process's resident memory.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kb * 1024
}

#[test]
fn a_cpu_profile_takes_little_memory() {
    let _alone = ONE_CPU_TEST.lock().unwrap_or_else(|e| e.into_inner());
    let until = Instant::now() + Duration::from_millis(1200);
    let burner = std::thread::spawn(move || burn_cpu_in_a_known_function(until));
    let before = rss_bytes();
    let profiling = std::thread::spawn(|| cpu_profiler().profile_blocking(Duration::from_secs(1)));
    std::thread::sleep(Duration::from_millis(700));
    let during = rss_bytes();
    let profile = profiling.join().expect("profiler thread").expect("profile");
    let record = burner.join().expect("burner");
    let (under, _) = total_under(&profile, "samples", "burn_cpu_in_a_known_function");
    assert_samples_match(under, cpu_in_window(&record, &profile), 0.0);
    // The sampler's ring is a static MiB; the counts are a few KB here.
    let grown = during.saturating_sub(before);
    assert!(grown < 8 << 20, "RSS grew by {} KB while profiling", grown >> 10);
}

#[inline(never)]
fn hold_memory_in_a_known_function() -> Vec<Vec<u8>> {
    (0..64).map(|i| vec![i as u8; 1 << 20]).collect()
}

#[test]
fn a_heap_profile_holds_the_live_allocations_of_a_known_function() {
    let _alone = ONE_CPU_TEST.lock().unwrap_or_else(|e| e.into_inner());
    let held = hold_memory_in_a_known_function();
    let profile = phlox_introspect::heap_profile().expect("heap profile");
    let profile = Profile::decode(&profile.to_pprof(None).expect("pprof").encode()).expect("decodes");
    let (inuse, _) = total_under(&profile, "inuse_space", "hold_memory_in_a_known_function");
    let (allocated, _) = total_under(&profile, "alloc_space", "hold_memory_in_a_known_function");
    drop(held);
    // 64 MiB live; each 1 MiB allocation is sampled with probability 0.865,
    // so the estimate is within a few MiB (three standard deviations).
    let mib = |b: i64| b as f64 / (1 << 20) as f64;
    assert!((52.0..=76.0).contains(&mib(inuse)), "in use under the function: {:.1} MiB", mib(inuse));
    assert!(allocated >= inuse, "allocated {allocated} < in use {inuse}");
    assert_eq!(profile.strings.str(profile.period_type.as_ref().expect("period").r#type), "space");
}
