//! Replays a load trace through [`evaluate`] with a toy
//! pool of pods, to see the replicas the autoscaler would pick over time.
//!
//! # Trace format
//!
//! A trace is one JSON object (camelCase; unknown top-level fields are
//! errors, so a typo does not silently fall back to a default):
//!
//! ```json
//! {
//!   "name": "step-up",
//!   "description": "load jumps from 4 to 50 MB/s at t = 60 s",
//!   "autoscaling": { "enabled": true, "minReplicas": 1, "maxReplicas": 10, "targetValue": 8 },
//!   "defaultTarget": 8,
//!   "stepSeconds": 15,
//!   "load": [4, 4, 4, 4, 50, 50, null, 50],
//!   "podReadySeconds": 10,
//!   "initialReplicas": 1
//! }
//! ```
//!
//! | field | default | meaning |
//! |---|---|---|
//! | `name` | none | the trace's name in reports (the bench falls back to the file name) |
//! | `description` | none | free text |
//! | `autoscaling` | required | the CR's `autoscaling` block exactly as written ([`Settings`]: its defaults apply, unknown fields are ignored, `enabled` defaults to false as in the CR, which makes every step `Disabled`) |
//! | `defaultTarget` | none | the component's default target, used when `autoscaling.targetValue` is absent; one of the two is required |
//! | `stepSeconds` | 15 | seconds between two load points, and between two evaluations |
//! | `load` | required | the pool's total load at each step, in the metric's unit (≥ 0); `null` = the metric is missing at that step |
//! | `podReadySeconds` | 0 | how long a new pod takes to become ready |
//! | `initialReplicas` | `minReplicas` | pods at t = 0, all ready |
//!
//! # The simulated pool
//!
//! Step *i* happens at t = *i* × `stepSeconds`. At each step the pods
//! whose start time + `podReadySeconds` ≤ t are ready; the load is spread
//! over them, so the observation is (load, ready pods), or none when the
//! load is `null` or no pod is ready. [`evaluate`] decides; a change is
//! applied at once and recorded with [`History::record_scale`] (the
//! simulated apply never fails): new pods start at t, and a scale-down
//! removes the newest pods first (those not ready yet first, as a
//! Deployment does; the highest ordinals, as a StatefulSet does), which go
//! away immediately. The history starts empty at t = 0, so no scale-down
//! happens before one down window has passed, as after an operator restart.
//!
//! # Summary
//!
//! [`summarize`] measures a run:
//!
//! * **scale events**: steps whose desired differs from current.
//! * **flap**: a scale event in the direction opposite to the previous scale
//!   event (an up after a down, or a down after an up) less than
//!   [`FLAP_WINDOW_SECONDS`] (300 s) after it. With the default 300 s
//!   scale-down window, a spike yields an up and, at least 300 s later, a
//!   down: no flap.
//! * **overload**: a step whose load is known and whose ready pods are
//!   fewer than *needed* = ⌈load / (target × (1 + [`TOLERANCE`]))⌉ capped
//!   at `maxReplicas` (the fewest pods that keep the per-pod load within the
//!   tolerance above target). An overload episode starts at an overloaded
//!   step that follows a step that was not (or at the first step), and ends
//!   at the next step with a known load and enough ready pods; steps with a
//!   `null` load neither start nor end one.
//! * **reaction time** of an episode: end − start, in seconds, or `None`
//!   when it is still open at the end of the trace. An episode that ends
//!   because the load fell back (the pods ready at its start would have
//!   been enough for the load at its end) is a transient, not a sustained
//!   increase, and is not counted. Ready pods are those observed at each
//!   step, so the shortest measurable reaction is one step. The summary's
//!   [`Reaction`] is the worst of them.

use serde::{Deserialize, Serialize};

use crate::evaluate::ceil;
use crate::{Error, History, Observation, Reason, Settings, TOLERANCE, evaluate};

/// A direction reversal of scaling less than this many seconds after the
/// previous scale event is a flap.
pub const FLAP_WINDOW_SECONDS: u64 = 300;

/// Most pods a trace may start with (the CRD's limit on replicas).
const MAX_PODS: i32 = 1000;

/// A load trace (see the [module documentation](self) for the format).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Trace {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The CR's `autoscaling` block as written.
    pub autoscaling: Settings,
    /// The target when `autoscaling.targetValue` is absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_target: Option<f64>,
    /// Seconds between load points and evaluations (default 15).
    #[serde(default = "default_step_seconds")]
    pub step_seconds: u64,
    /// Total load of the pool per step; `None` (`null`) = metric missing.
    pub load: Vec<Option<f64>>,
    /// Seconds a new pod takes to become ready (default 0).
    #[serde(default)]
    pub pod_ready_seconds: u64,
    /// Pods at t = 0, all ready (default `minReplicas`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_replicas: Option<i32>,
}

fn default_step_seconds() -> u64 {
    15
}

impl Trace {
    /// `autoscaling.targetValue`, else `defaultTarget`.
    pub fn target(&self) -> Result<f64, Error> {
        let target = self
            .autoscaling
            .target_value
            .or(self.default_target)
            .ok_or_else(|| Error::Trace("no target: set autoscaling.targetValue or defaultTarget".to_string()))?;
        if !(target.is_finite() && target > 0.0) {
            return Err(Error::Trace(format!("the target is {target}, must be a positive number")));
        }
        Ok(target)
    }

    /// `initialReplicas`, else `minReplicas`.
    pub fn initial_replicas(&self) -> i32 {
        self.initial_replicas.unwrap_or(self.autoscaling.min_replicas)
    }

    /// Checks every field's range (and the settings, as the CRD would).
    pub fn validate(&self) -> Result<(), Error> {
        self.autoscaling.validate()?;
        self.target()?;
        if self.step_seconds == 0 {
            return Err(Error::Trace("stepSeconds must be at least 1".to_string()));
        }
        if self.load.is_empty() {
            return Err(Error::Trace("load is empty".to_string()));
        }
        if let Some((i, value)) =
            self.load.iter().enumerate().find_map(|(i, l)| l.filter(|v| !(v.is_finite() && *v >= 0.0)).map(|v| (i, v)))
        {
            return Err(Error::Trace(format!("load[{i}] is {value}, must be a number ≥ 0 or null")));
        }
        let initial = self.initial_replicas();
        if !(0..=MAX_PODS).contains(&initial) {
            return Err(Error::Trace(format!("initialReplicas is {initial}, must be within 0..={MAX_PODS}")));
        }
        Ok(())
    }
}

/// Parses and validates a trace, with the JSON error's line and column.
pub fn parse_trace(json: &str) -> Result<Trace, Error> {
    let trace: Trace = serde_json::from_str(json)?;
    trace.validate()?;
    Ok(trace)
}

/// One evaluation of a simulated run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    /// Seconds since the start of the trace.
    pub t: u64,
    /// The trace's load at this step (`None`: missing).
    pub load: Option<f64>,
    /// load / ready pods (`None`: missing load or no ready pod).
    pub per_pod: Option<f64>,
    /// Replicas before the decision.
    pub current: i32,
    /// Ready pods before the decision (those the load is spread over).
    pub ready: i32,
    /// Replicas after the decision (the next step's `current`).
    pub desired: i32,
    pub reason: Reason,
}

/// Runs a trace: one [`Step`] per load point.
pub fn run(trace: &Trace) -> Result<Vec<Step>, Error> {
    trace.validate()?;
    let target = trace.target()?;
    let mut history = History::new();
    let mut current = trace.initial_replicas();
    // When each pod is ready, oldest pod first.
    let mut pods: Vec<u64> = vec![0; usize::try_from(current).unwrap_or(0)];
    let mut steps = Vec::with_capacity(trace.load.len());
    let mut t = 0u64;
    for &load in &trace.load {
        let ready = i32::try_from(pods.iter().filter(|&&at| at <= t).count()).unwrap_or(i32::MAX);
        let observation = load.map(|total| Observation { total, reporting_pods: ready });
        let decision = evaluate(&mut history, &trace.autoscaling, target, t, current, observation);
        let desired = decision.desired;
        if desired != current {
            history.record_scale(t, current, desired);
            pods.resize(usize::try_from(desired).unwrap_or(0), t.saturating_add(trace.pod_ready_seconds));
        }
        let per_pod = load.filter(|_| ready > 0).map(|l| l / f64::from(ready));
        steps.push(Step { t, load, per_pod, current, ready, desired, reason: decision.reason });
        current = desired;
        t = t.saturating_add(trace.step_seconds);
    }
    Ok(steps)
}

/// A sustained overload: from its start until enough pods were ready.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Overload {
    /// When the ready pods became too few.
    pub start: u64,
    /// The load then.
    pub load: f64,
    /// The pods it needed then (capped at `maxReplicas`).
    pub needed: i32,
    /// Seconds until enough pods were ready; `None`: not within the trace.
    pub reaction_seconds: Option<u64>,
}

/// The worst reaction time of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Reaction {
    /// No sustained overload happened.
    NoOverload,
    /// Every sustained overload was resolved, the slowest in this many seconds.
    Within(u64),
    /// An overload was still unresolved at the end of the trace.
    Never,
}

impl Reaction {
    /// Whether every sustained overload was resolved within `seconds`.
    pub fn within(self, seconds: u64) -> bool {
        match self {
            Reaction::NoOverload => true,
            Reaction::Within(s) => s <= seconds,
            Reaction::Never => false,
        }
    }
}

/// Measures of a run (definitions in the [module documentation](self)).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub steps: usize,
    /// Steps whose desired differs from current.
    pub scale_events: usize,
    pub scale_ups: usize,
    pub scale_downs: usize,
    /// Direction reversals within [`FLAP_WINDOW_SECONDS`].
    pub flaps: usize,
    /// Most replicas at any time.
    pub peak_replicas: i32,
    /// Replicas after the last step.
    pub final_replicas: i32,
    /// Every sustained overload, in order.
    pub overloads: Vec<Overload>,
    /// The slowest of them.
    pub worst_reaction: Reaction,
}

/// The fewest pods that keep `load` within the tolerance above `target`, at most `max`.
fn needed(load: f64, target: f64, max: i32) -> i32 {
    ceil(load / (target * (1.0 + TOLERANCE))).min(max)
}

/// Measures `steps`, a run of `trace`.
pub fn summarize(trace: &Trace, steps: &[Step]) -> Result<Summary, Error> {
    let target = trace.target()?;
    let (_, max) = trace.autoscaling.bounds();

    let (mut scale_ups, mut scale_downs, mut flaps) = (0, 0, 0);
    let mut last: Option<(u64, bool)> = None; // (time, up)
    for s in steps.iter().filter(|s| s.desired != s.current) {
        let up = s.desired > s.current;
        if up {
            scale_ups += 1;
        } else {
            scale_downs += 1;
        }
        if let Some((at, was_up)) = last
            && was_up != up
            && s.t.saturating_sub(at) < FLAP_WINDOW_SECONDS
        {
            flaps += 1;
        }
        last = Some((s.t, up));
    }

    let mut overloads = Vec::new();
    let mut open: Option<&Step> = None;
    for s in steps {
        let Some(load) = s.load else { continue };
        let need = needed(load, target, max);
        match open {
            None if s.ready < need => open = Some(s),
            Some(start) if s.ready >= need => {
                open = None;
                // Transient: the pods of the start were enough again.
                if start.ready < need {
                    let load = start.load.unwrap_or(0.0);
                    let needed = needed(load, target, max);
                    overloads.push(Overload {
                        start: start.t,
                        load,
                        needed,
                        reaction_seconds: Some(s.t.saturating_sub(start.t)),
                    });
                }
            }
            _ => {}
        }
    }
    if let Some(start) = open {
        let load = start.load.unwrap_or(0.0);
        overloads.push(Overload { start: start.t, load, needed: needed(load, target, max), reaction_seconds: None });
    }
    let worst_reaction = overloads.iter().try_fold(Reaction::NoOverload, |worst, o| {
        let seconds = o.reaction_seconds?;
        Some(match worst {
            Reaction::Within(w) if w >= seconds => worst,
            _ => Reaction::Within(seconds),
        })
    });

    Ok(Summary {
        steps: steps.len(),
        scale_events: scale_ups + scale_downs,
        scale_ups,
        scale_downs,
        flaps,
        peak_replicas: steps.iter().flat_map(|s| [s.current, s.desired]).max().unwrap_or(0),
        final_replicas: steps.last().map_or_else(|| trace.initial_replicas(), |s| s.desired),
        overloads,
        worst_reaction: worst_reaction.unwrap_or(Reaction::Never),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace(load: &[Option<f64>]) -> Trace {
        Trace {
            name: None,
            description: None,
            autoscaling: Settings { enabled: true, target_value: Some(8.0), ..Settings::default() },
            default_target: None,
            step_seconds: 15,
            load: load.to_vec(),
            pod_ready_seconds: 0,
            initial_replicas: None,
        }
    }

    fn step(t: u64, load: Option<f64>, current: i32, ready: i32, desired: i32) -> Step {
        let per_pod = load.map(|l| l / f64::from(ready));
        Step { t, load, per_pod, current, ready, desired, reason: Reason::Steady }
    }

    #[test]
    fn flaps_are_reversals_within_the_window() {
        let t = trace(&[Some(8.0)]);
        let steps = [
            step(0, Some(8.0), 1, 1, 2),    // up
            step(15, Some(8.0), 2, 2, 3),   // up, same direction
            step(300, Some(8.0), 3, 3, 2),  // down 285 s after the up: flap
            step(600, Some(8.0), 2, 2, 3),  // up 300 s after the down: no flap
            step(615, Some(8.0), 3, 3, 3),  // no event
            step(885, Some(8.0), 3, 3, 2),  // down 285 s after: flap
            step(1200, Some(8.0), 2, 2, 1), // same direction
        ];
        let s = summarize(&t, &steps).unwrap();
        assert_eq!((s.scale_events, s.scale_ups, s.scale_downs, s.flaps), (6, 3, 3, 2));
        assert_eq!((s.peak_replicas, s.final_replicas), (3, 1));
    }

    #[test]
    fn reaction_counts_sustained_overloads_only() {
        let t = trace(&[Some(8.0)]);
        // needed(30) = ⌈30 / 8.8⌉ = 4; needed(8.8) = 1.
        let steps = [
            step(0, Some(8.8), 1, 1, 1),
            step(15, Some(30.0), 1, 1, 4),  // overload starts
            step(30, None, 4, 1, 4),        // unknown: neither ends nor starts
            step(45, Some(30.0), 4, 2, 4),  // still too few ready
            step(60, Some(30.0), 4, 4, 4),  // resolved: 45 s
            step(75, Some(60.0), 4, 4, 7),  // overload starts (needs 7)
            step(90, Some(8.0), 7, 4, 7),   // the load fell back: transient
            step(105, Some(30.0), 7, 3, 7), // 3 ready of 7: overload
        ];
        let s = summarize(&t, &steps).unwrap();
        assert_eq!(
            s.overloads,
            [
                Overload { start: 15, load: 30.0, needed: 4, reaction_seconds: Some(45) },
                Overload { start: 105, load: 30.0, needed: 4, reaction_seconds: None },
            ]
        );
        assert_eq!(s.worst_reaction, Reaction::Never);
        assert!(!s.worst_reaction.within(1000));

        let s = summarize(&t, &steps[..6]).unwrap();
        assert_eq!(s.overloads.len(), 2);
        assert_eq!(s.worst_reaction, Reaction::Never);
        let s = summarize(&t, &steps[..5]).unwrap();
        assert_eq!(s.worst_reaction, Reaction::Within(45));
        assert!(s.worst_reaction.within(45) && !s.worst_reaction.within(30));
        let s = summarize(&t, &steps[..1]).unwrap();
        assert_eq!(s.worst_reaction, Reaction::NoOverload);
        assert!(s.worst_reaction.within(0));
    }

    #[test]
    fn needed_is_capped_at_max() {
        assert_eq!(needed(8.8, 8.0, 10), 1);
        assert_eq!(needed(8.81, 8.0, 10), 2);
        assert_eq!(needed(1000.0, 8.0, 10), 10);
        assert_eq!(needed(0.0, 8.0, 10), 0);
    }

    #[test]
    fn pods_become_ready_after_pod_ready_seconds_and_go_newest_first() {
        let mut t = trace(&[Some(50.0), Some(50.0), Some(50.0), Some(50.0)]);
        t.pod_ready_seconds = 20;
        let steps = run(&t).unwrap();
        // t=0: 1 ready, 50 → ⌈6.25⌉ = 7, limited to 5. t=15: the 4 new pods
        // are not ready (ready at 20): 1 reporting at 50, the 4 others idle:
        // 50 / 40 = 1.25 → ⌈6.25⌉ = 7 → +2 (the period since t=0 is over).
        // t=30: 5 ready (2 more at 35): 10 each, the 2 others idle: 50 / 56
        // → within: hold. t=45: 7 ready at 7.14 (ratio 0.89, just outside the
        // tolerance) → ⌈6.25⌉ = 7: steady.
        let got: Vec<_> = steps.iter().map(|s| (s.t, s.current, s.ready, s.desired, s.reason)).collect();
        assert_eq!(
            got,
            [
                (0, 1, 1, 5, Reason::LimitedByStep),
                (15, 5, 1, 7, Reason::ScaleUp),
                (30, 7, 5, 7, Reason::PodsNotReady),
                (45, 7, 7, 7, Reason::Steady),
            ]
        );
        assert_eq!(steps[1].per_pod, Some(50.0));
    }

    #[test]
    fn zero_ready_pods_is_missing_data() {
        let mut t = trace(&[Some(50.0), Some(50.0)]);
        t.initial_replicas = Some(0);
        let steps = run(&t).unwrap();
        assert_eq!((steps[0].ready, steps[0].desired, steps[0].reason), (0, 1, Reason::AtMin));
        assert_eq!(steps[0].per_pod, None);
        assert_eq!((steps[1].ready, steps[1].desired, steps[1].reason), (1, 5, Reason::LimitedByStep));
    }
}
