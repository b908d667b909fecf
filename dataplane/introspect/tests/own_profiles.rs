//! The profiles of this test process, with jemalloc installed as the
//! binary installs it: the work a known function does shows up under its
//! name with the amounts the test made it do.

use std::time::Duration;

use phlox_introspect::{IntrospectError, cpu_profiler};
use phlox_pprof::Profile;

phlox_introspect::install_allocator!();

/// The CPU tests share the process's sampler and the busy function: one at
/// a time.
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

#[inline(never)]
fn burn_cpu_in_a_known_function(until: std::time::Instant) -> u64 {
    let mut x = 1u64;
    while std::time::Instant::now() < until {
        for _ in 0..10_000 {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407));
        }
    }
    x
}

#[test]
fn overlapping_cpu_profiles_share_the_sampler_and_each_holds_the_busy_function() {
    let _alone = ONE_CPU_TEST.lock().unwrap_or_else(|e| e.into_inner());
    cpu_profiler().set_max_sampler_age(Duration::from_secs(60));
    let until = std::time::Instant::now() + Duration::from_millis(2000);
    let burner = std::thread::spawn(move || burn_cpu_in_a_known_function(until));
    // Two profiles overlap by half their length, as a scrape and a
    // self-profiling push may.
    let first = std::thread::spawn(|| cpu_profiler().profile_blocking(Duration::from_secs(1)));
    std::thread::sleep(Duration::from_millis(500));
    let second = std::thread::spawn(|| cpu_profiler().profile_blocking(Duration::from_secs(1)));
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
    let first = first.join().expect("profiler thread").expect("profile");
    let second = second.join().expect("profiler thread").expect("profile");
    burner.join().expect("burner");

    for profile in [first, second] {
        // Re-encoded and decoded as any reader would.
        let profile = Profile::decode(&profile.encode()).expect("decodes");
        assert_eq!(profile.strings.str(profile.period_type.as_ref().expect("period type").r#type), "cpu");
        assert_eq!(profile.period, 10_000_000);
        let (under, all) = total_under(&profile, "samples", "burn_cpu_in_a_known_function");
        // One thread on a CPU for the whole second: 100 samples at 100 Hz
        // (the machine may give it less of a core); never more than the
        // profile's second could hold, so the other profile's time is not
        // counted here.
        assert!((40..=110).contains(&under), "{under} samples under the busy function of {all}");
        let (cpu_under, _) = total_under(&profile, "cpu", "burn_cpu_in_a_known_function");
        assert_eq!(cpu_under, under * 10_000_000);
        assert!(!format!("{:?}", profile.strings).contains("perf_signal_handler"), "the sampler's frames are cut");
    }
}

#[test]
fn a_profile_keeps_its_counts_across_restarts_of_the_sampler() {
    let _alone = ONE_CPU_TEST.lock().unwrap_or_else(|e| e.into_inner());
    // Restarted every 150 ms while a 1 s profile overlaps short ones.
    cpu_profiler().set_max_sampler_age(Duration::from_millis(150));
    let until = std::time::Instant::now() + Duration::from_millis(1300);
    let burner = std::thread::spawn(move || burn_cpu_in_a_known_function(until));
    let long = std::thread::spawn(|| cpu_profiler().profile_blocking(Duration::from_secs(1)));
    for _ in 0..8 {
        cpu_profiler().profile_blocking(Duration::from_millis(100)).expect("short profile");
    }
    let long = long.join().expect("profiler thread").expect("profile");
    burner.join().expect("burner");
    let (under, all) = total_under(&long, "samples", "burn_cpu_in_a_known_function");
    assert!((40..=110).contains(&under), "{under} samples under the busy function of {all}");
}

#[inline(never)]
fn hold_memory_in_a_known_function() -> Vec<Vec<u8>> {
    (0..64).map(|i| vec![i as u8; 1 << 20]).collect()
}

#[test]
fn a_heap_profile_holds_the_live_allocations_of_a_known_function() {
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
