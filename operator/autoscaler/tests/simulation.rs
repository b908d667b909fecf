//! The named traces of `traces/`, replayed: each test asserts the replica
//! series step by step, not only where it ends.

#![allow(clippy::unwrap_used)]

use phlox_autoscaler::simulate::{self, Reaction, Step, Summary, Trace};
use phlox_autoscaler::{Reason, STEP_PERIOD_SECONDS, Settings};

const TRACES: [(&str, &str); 10] = [
    ("step-up", include_str!("../traces/step-up.json")),
    ("step-up-slow-pods", include_str!("../traces/step-up-slow-pods.json")),
    ("ramp", include_str!("../traces/ramp.json")),
    ("sawtooth", include_str!("../traces/sawtooth.json")),
    ("spike", include_str!("../traces/spike.json")),
    ("noisy-plateau", include_str!("../traces/noisy-plateau.json")),
    ("metrics-gap", include_str!("../traces/metrics-gap.json")),
    ("scale-down-after-load-drops", include_str!("../traces/scale-down-after-load-drops.json")),
    ("overload-at-max", include_str!("../traces/overload-at-max.json")),
    ("query-backends-default-target", include_str!("../traces/query-backends-default-target.json")),
];

fn trace(name: &str) -> Trace {
    let (_, json) = TRACES.iter().find(|(n, _)| *n == name).unwrap();
    let trace = simulate::parse_trace(json).unwrap();
    assert_eq!(trace.name.as_deref(), Some(name));
    trace
}

fn simulate(trace: &Trace) -> (Vec<Step>, Summary) {
    let steps = simulate::run(trace).unwrap();
    assert_eq!(steps.len(), trace.load.len());
    let summary = simulate::summarize(trace, &steps).unwrap();
    (steps, summary)
}

/// [(replicas, steps)] expanded: `runs(&[(1, 2), (5, 1)])` = [1, 1, 5].
fn runs(runs: &[(i32, usize)]) -> Vec<i32> {
    runs.iter().flat_map(|&(r, n)| std::iter::repeat_n(r, n)).collect()
}

fn currents(steps: &[Step]) -> Vec<i32> {
    steps.iter().map(|s| s.current).collect()
}

fn readies(steps: &[Step]) -> Vec<i32> {
    steps.iter().map(|s| s.ready).collect()
}

fn at(steps: &[Step], t: u64) -> &Step {
    steps.iter().find(|s| s.t == t).unwrap()
}

/// Seconds from `from` until the ready pods carry `load` within the
/// tolerance above `target` (per pod ≤ target × 1.1).
fn seconds_until_enough(steps: &[Step], from: u64, load: f64, target: f64) -> u64 {
    let s = steps.iter().find(|s| s.t >= from && f64::from(s.ready) * target * 1.1 >= load).unwrap();
    s.t - from
}

#[test]
fn step_up_reaches_the_needed_replicas_within_30_s() {
    let trace = trace("step-up");
    let (steps, summary) = simulate(&trace);
    // Load 4 → 50 at t = 60 (7 pods at target 8): +4 (the step limit),
    // then +2 one period later.
    assert_eq!(currents(&steps), runs(&[(1, 5), (5, 1), (7, 18)]));
    assert_eq!(readies(&steps), currents(&steps)); // pods ready at once
    assert_eq!(at(&steps, 60).reason, Reason::LimitedByStep);
    assert_eq!(at(&steps, 75).reason, Reason::ScaleUp);
    // 7.14 per pod is 10.7% below target, but ⌈50 / 8⌉ = 7: steady.
    assert_eq!(at(&steps, 90).reason, Reason::Steady);
    assert_eq!(seconds_until_enough(&steps, 60, 50.0, 8.0), 30);
    assert_eq!(summary.worst_reaction, Reaction::Within(30));
    assert_eq!((summary.scale_ups, summary.scale_downs, summary.flaps), (2, 0, 0));
}

#[test]
fn step_up_with_pods_ready_after_10_s() {
    let trace = trace("step-up-slow-pods");
    assert_eq!(trace.pod_ready_seconds, 10);
    let (steps, summary) = simulate(&trace);
    assert_eq!(currents(&steps), runs(&[(1, 5), (5, 1), (7, 18)]));
    // Pods started at t = 60 and 75 are ready 10 s later, before the next
    // evaluation.
    assert_eq!(readies(&steps), runs(&[(1, 5), (5, 1), (7, 18)]));
    assert_eq!(seconds_until_enough(&steps, 60, 50.0, 8.0), 30);
    assert_eq!(summary.worst_reaction, Reaction::Within(30));
}

#[test]
fn step_up_with_pods_slower_than_a_period_does_not_overshoot() {
    let mut trace = trace("step-up");
    trace.pod_ready_seconds = 20;
    let (steps, summary) = simulate(&trace);
    assert_eq!(currents(&steps), runs(&[(1, 5), (5, 1), (7, 18)]));
    assert_eq!(readies(&steps), runs(&[(1, 6), (5, 1), (7, 17)]));
    let reasons: Vec<_> = steps[4..8].iter().map(|s| s.reason).collect();
    assert_eq!(
        reasons,
        [
            Reason::LimitedByStep, // t = 60: 7 wanted, +4
            Reason::ScaleUp,       // t = 75: 1 ready at 50, the 4 starting ones idle: still 7 wanted
            Reason::PodsNotReady,  // t = 90: 5 ready at 10, 2 starting: counted idle, within tolerance
            Reason::Steady,        // t = 105: 7 ready at 7.14
        ]
    );
    assert_eq!(summary.worst_reaction, Reaction::Within(45));
}

#[test]
fn ramp_follows_the_load_without_lagging_a_step() {
    let trace = trace("ramp");
    let (steps, summary) = simulate(&trace);
    // +4 MB/s per step against 8 per pod: a pod every other step.
    assert_eq!(
        currents(&steps),
        runs(&[(1, 3), (2, 2), (3, 2), (4, 2), (5, 3), (6, 2), (7, 2), (8, 2), (9, 2), (10, 8)])
    );
    assert!(steps.windows(2).all(|w| w[1].current >= w[0].current), "never down on a ramp");
    assert!(summary.overloads.iter().all(|o| o.reaction_seconds == Some(15)), "{:?}", summary.overloads);
    assert_eq!(summary.worst_reaction, Reaction::Within(15));
    assert_eq!((summary.scale_ups, summary.scale_downs, summary.final_replicas), (9, 0, 10));
    // 44 MB/s on 5 pods is 8.8 each, exactly at the tolerance: no change.
    assert_eq!(at(&steps, 150).per_pod, Some(8.8));
    assert_eq!(at(&steps, 150).reason, Reason::WithinTolerance);
}

#[test]
fn sawtooth_does_not_flap() {
    let trace = trace("sawtooth");
    let (steps, summary) = simulate(&trace);
    // Up to 5 at the first tooth, held by the down window across every
    // trough (a tooth every 120 s < 300 s), down 300 s after the last
    // recommendation for 5 (t = 705), one pod per period.
    assert_eq!(currents(&steps), runs(&[(3, 5), (5, 63), (4, 1), (3, 5)]));
    assert_eq!(summary.flaps, 0);
    assert_eq!((summary.scale_ups, summary.scale_downs), (1, 2));
    let first_down = steps.iter().find(|s| s.desired < s.current).unwrap();
    assert_eq!(first_down.t, 705 + 300);
    assert!(steps.iter().filter(|s| s.t > 60 && s.t < 1005).all(|s| s.desired == 5));
    assert!(steps.iter().any(|s| s.reason == Reason::StabilizingDown));
}

#[test]
fn spike_shorter_than_the_down_window_is_one_up_and_one_delayed_down() {
    let trace = trace("spike");
    let (steps, summary) = simulate(&trace);
    // Spike at t = 120 and 135; its last recommendation for 5 is at 135.
    assert_eq!(currents(&steps), runs(&[(2, 9), (5, 21), (2, 10)]));
    assert_eq!((summary.scale_ups, summary.scale_downs, summary.flaps), (1, 1, 0));
    let down = steps.iter().find(|s| s.desired < s.current).unwrap();
    assert_eq!((down.t, down.current, down.desired), (135 + 300, 5, 2));
    // Between the spike and the down, the low load asks for 2 every step
    // and the window holds 5.
    assert!(steps.iter().filter(|s| s.t > 135 && s.t < 435).all(|s| s.reason == Reason::StabilizingDown));
    // 2 ready at the spike, 5 ready one step later.
    assert_eq!(summary.worst_reaction, Reaction::Within(15));
}

#[test]
fn noisy_plateau_within_tolerance_never_scales() {
    let trace = trace("noisy-plateau");
    let (steps, summary) = simulate(&trace);
    assert!(trace.load.iter().flatten().any(|&l| l > 34.0) && trace.load.iter().flatten().any(|&l| l < 30.0));
    assert_eq!(currents(&steps), runs(&[(4, 60)]));
    assert!(steps.iter().all(|s| s.reason == Reason::WithinTolerance));
    assert_eq!((summary.scale_events, summary.flaps), (0, 0));
    assert_eq!(summary.worst_reaction, Reaction::NoOverload);
}

#[test]
fn metrics_gap_holds_the_replicas() {
    let trace = trace("metrics-gap");
    let (steps, summary) = simulate(&trace);
    // Up at t = 0; the load drops at 30; without the gap the window would
    // let it down at 15 + 300 = 315, inside the gap (180 to 465). The
    // recommendations of the gap are "hold 5", so the scale-down waits until
    // the last of them (t = 465) is 300 s old.
    assert_eq!(currents(&steps), runs(&[(1, 1), (5, 51), (4, 1), (3, 1), (2, 1), (1, 7)]));
    for s in steps.iter().filter(|s| s.load.is_none()) {
        assert_eq!((s.current, s.desired, s.reason), (5, 5, Reason::MetricsMissing), "t = {}", s.t);
        assert_eq!(s.per_pod, None);
    }
    let first_down = steps.iter().find(|s| s.desired < s.current).unwrap();
    assert_eq!(first_down.t, 465 + 300);
    assert_eq!(summary.flaps, 0);

    // The same load without the gap goes down at 315.
    let mut no_gap = trace.clone();
    no_gap.load.iter_mut().for_each(|l| *l = Some(l.unwrap_or(8.0)));
    let (steps, _) = simulate(&no_gap);
    assert_eq!(steps.iter().find(|s| s.desired < s.current).unwrap().t, 315);
}

#[test]
fn scale_down_only_after_300_s_of_lower_load() {
    let trace = trace("scale-down-after-load-drops");
    let (steps, summary) = simulate(&trace);
    // The load drops at t = 60; the last recommendation for 5 was at 45.
    assert_eq!(currents(&steps), runs(&[(1, 1), (5, 23), (4, 1), (3, 1), (2, 1), (1, 7)]));
    let downs: Vec<_> = steps.iter().filter(|s| s.desired < s.current).map(|s| (s.t, s.current, s.desired)).collect();
    // One pod per period (maxScaleDownStep 1).
    assert_eq!(downs, [(345, 5, 4), (360, 4, 3), (375, 3, 2), (390, 2, 1)]);
    assert!(downs.windows(2).all(|w| w[1].0 - w[0].0 >= STEP_PERIOD_SECONDS));
    assert_eq!(at(&steps, 345).reason, Reason::LimitedByStep);
    assert_eq!(at(&steps, 390).reason, Reason::ScaleDown);
    assert_eq!(summary.final_replicas, 1);
}

#[test]
fn overload_is_capped_at_max_replicas() {
    let trace = trace("overload-at-max");
    let (steps, summary) = simulate(&trace);
    assert_eq!(currents(&steps), runs(&[(2, 1), (6, 9)]));
    assert_eq!(steps[0].reason, Reason::LimitedByStep); // 25 wanted, +4 → 6 = max
    assert!(steps[1..].iter().all(|s| s.reason == Reason::AtMax));
    assert_eq!(summary.peak_replicas, 6);
    // Needed is capped at max: 6 ready is as good as it gets.
    assert_eq!(summary.worst_reaction, Reaction::Within(15));
}

#[test]
fn default_target_and_min_replicas() {
    let trace = trace("query-backends-default-target");
    assert_eq!(trace.autoscaling.target_value, None);
    assert_eq!(trace.target().unwrap(), 4.0);
    let (steps, summary) = simulate(&trace);
    assert_eq!(
        currents(&steps),
        runs(&[(2, 5), (5, 1), (7, 6), (8, 21), (7, 1), (6, 1), (5, 1), (4, 1), (3, 1), (2, 6)])
    );
    assert!(steps.iter().all(|s| s.desired >= 2));
    assert_eq!(summary.worst_reaction, Reaction::Within(30));
    assert_eq!(summary.flaps, 0);
}

#[test]
fn every_trace_keeps_the_invariants() {
    for (name, _) in TRACES {
        let trace = trace(name);
        let (lo, hi) = (trace.autoscaling.min_replicas, trace.autoscaling.max_replicas);
        let (steps, summary) = simulate(&trace);
        let mut changes: Vec<(u64, i32)> = Vec::new();
        for s in &steps {
            assert!((lo..=hi).contains(&s.desired), "{name} t={}: {} outside [{lo}, {hi}]", s.t, s.desired);
            if s.load.is_none() && s.current <= hi {
                assert!(s.desired >= s.current, "{name} t={}: down on missing data", s.t);
            }
            // Step limits: the changes of any period stay within the steps.
            changes.retain(|&(t, _)| s.t - t < STEP_PERIOD_SECONDS);
            changes.push((s.t, s.desired - s.current));
            let net: i32 = changes.iter().map(|c| c.1).sum();
            assert!(
                (-trace.autoscaling.max_scale_down_step..=trace.autoscaling.max_scale_up_step).contains(&net),
                "{name} t={}: {net} in one period",
                s.t
            );
        }
        assert!(steps.windows(2).all(|w| w[1].current == w[0].desired), "{name}: current follows desired");
        assert_eq!(summary.flaps, 0, "{name}");
        assert!(summary.worst_reaction.within(30), "{name}: {:?}", summary.worst_reaction);
    }
}

#[test]
fn settings_parse_from_a_cr_block() {
    // A segmentWriter block as written in a PyroscopeCluster, with a field
    // this crate does not know.
    let component: serde_json::Value = serde_json::from_str(
        r#"{
          "replicas": 3,
          "resources": { "requests": { "cpu": "500m" } },
          "autoscaling": {
            "enabled": true,
            "maxReplicas": 20,
            "targetValue": 12.5,
            "scaleDownStabilizationWindowSeconds": 600,
            "futureKnob": { "nested": [1, 2] },
            "behavior": "ignored"
          }
        }"#,
    )
    .unwrap();
    let s: Settings = serde_json::from_value(component["autoscaling"].clone()).unwrap();
    assert_eq!(
        s,
        Settings {
            enabled: true,
            min_replicas: 1,
            max_replicas: 20,
            target_value: Some(12.5),
            scale_up_stabilization_window_seconds: 0,
            scale_down_stabilization_window_seconds: 600,
            max_scale_up_step: 4,
            max_scale_down_step: 1,
        }
    );
    assert_eq!(s.target_or(8.0), 12.5);
    s.validate().unwrap();

    // Every field, camelCase, round-trips.
    let json = r#"{"enabled":false,"minReplicas":2,"maxReplicas":9,"targetValue":4.0,
        "scaleUpStabilizationWindowSeconds":30,"scaleDownStabilizationWindowSeconds":120,
        "maxScaleUpStep":2,"maxScaleDownStep":3}"#;
    let s: Settings = serde_json::from_str(json).unwrap();
    assert_eq!(
        (s.min_replicas, s.max_replicas, s.scale_up_stabilization_window_seconds, s.max_scale_down_step),
        (2, 9, 30, 3)
    );
    let back: Settings = serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
    assert_eq!(back, s);

    // Defaults: the CRD's.
    let s: Settings = serde_json::from_str("{}").unwrap();
    assert_eq!(s, Settings::default());
    assert_eq!(s.target_value, None);
    assert_eq!(s.target_or(4.0), 4.0);
}

#[test]
fn trace_defaults() {
    let t = simulate::parse_trace(
        r#"{"autoscaling": {"enabled": true, "minReplicas": 2}, "defaultTarget": 8, "load": [16]}"#,
    )
    .unwrap();
    assert_eq!((t.step_seconds, t.pod_ready_seconds, t.initial_replicas()), (15, 0, 2));
    assert_eq!(t.name, None);
    let steps = simulate::run(&t).unwrap();
    assert_eq!((steps[0].current, steps[0].ready, steps[0].desired), (2, 2, 2));
}

#[test]
fn trace_errors_are_clear() {
    let cases = [
        (
            r#"{"autoscaling": {"enabled": true}, "load": [1]}"#,
            "no target: set autoscaling.targetValue or defaultTarget",
        ),
        (r#"{"autoscaling": {"targetValue": 8}, "load": []}"#, "load is empty"),
        (r#"{"autoscaling": {"targetValue": 8}, "load": [1, -2]}"#, "load[1] is -2"),
        (r#"{"autoscaling": {"targetValue": 8}, "stepSeconds": 0, "load": [1]}"#, "stepSeconds must be at least 1"),
        (r#"{"autoscaling": {"targetValue": 8}, "initialReplicas": -1, "load": [1]}"#, "initialReplicas is -1"),
        (r#"{"autoscaling": {}, "defaultTarget": 0, "load": [1]}"#, "the target is 0"),
        (r#"{"autoscaling": {"minReplicas": 3, "maxReplicas": 2, "targetValue": 8}, "load": [1]}"#, "maxReplicas (2)"),
        (r#"{"autoscaling": {"targetValue": 8}, "podReadySecond": 10, "load": [1]}"#, "unknown field `podReadySecond`"),
        (r#"{"autoscaling": {"targetValue": 8}}"#, "missing field `load`"),
        (r#"{"autoscaling": {"targetValue": 8}, "load": [1, "x"]}"#, "line 1 column"),
        ("{\n  \"autoscaling\": {\"targetValue\": 8},\n  \"load\": [1,]\n}", "line 3"),
    ];
    for (json, expected) in cases {
        let err = simulate::parse_trace(json).unwrap_err().to_string();
        assert!(err.contains(expected), "{json}\n→ {err}\n(expected {expected:?})");
        assert!(err.starts_with("invalid "), "{err}");
    }
}

#[test]
fn steps_serialize_camel_case() {
    let t =
        simulate::parse_trace(r#"{"autoscaling": {"enabled": true, "targetValue": 8}, "load": [16, null]}"#).unwrap();
    let steps = simulate::run(&t).unwrap();
    let json = serde_json::to_value(&steps).unwrap();
    assert_eq!(
        json,
        serde_json::json!([
            {"t": 0, "load": 16.0, "perPod": 16.0, "current": 1, "ready": 1, "desired": 2, "reason": "ScaleUp"},
            {"t": 15, "load": null, "perPod": null, "current": 2, "ready": 2, "desired": 2, "reason": "MetricsMissing"},
        ])
    );
}

#[test]
fn disabled_trace_keeps_the_replicas() {
    let t = simulate::parse_trace(
        r#"{"autoscaling": {"minReplicas": 3, "targetValue": 8}, "initialReplicas": 1, "load": [100, null, 0]}"#,
    )
    .unwrap();
    assert!(!t.autoscaling.enabled);
    let steps = simulate::run(&t).unwrap();
    assert!(steps.iter().all(|s| s.current == 1 && s.desired == 1 && s.reason == Reason::Disabled));
    assert_eq!(simulate::summarize(&t, &steps).unwrap().scale_events, 0);
}

#[test]
fn every_trace_file_is_tested() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("traces");
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut tested: Vec<String> = TRACES.iter().map(|(n, _)| n.to_string()).collect();
    tested.sort();
    assert_eq!(on_disk, tested);
}
