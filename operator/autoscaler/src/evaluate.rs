//! One evaluation: recommendation, stabilization, step limits, bounds (see
//! the crate documentation).

use std::collections::VecDeque;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Settings;
use crate::settings::is_usable_target;

/// Load within ±10% of the target per replica changes nothing (the HPA's
/// default tolerance).
pub const TOLERANCE: f64 = 0.1;

/// The period of the step limits, in seconds: at most `maxScaleUpStep` pods
/// added and `maxScaleDownStep` pods removed per 15 s, like the HPA's
/// default scale-up policy "4 pods per 15 s". It is also the operator's
/// sync period: one evaluation per period may use the whole step.
pub const STEP_PERIOD_SECONDS: u64 = 15;

/// Floating-point slack of the tolerance test and of the ceiling, so that a
/// product meant to be 3 but computed as 3.0000000001 stays 3.
const EPSILON: f64 = 1e-9;

/// The load metric of one evaluation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Observation {
    /// The pool's total load in the metric's unit, summed over the pods
    /// that reported it.
    pub total: f64,
    /// How many ready pods reported it (0 counts as a missing metric).
    pub reporting_pods: i32,
}

/// Why desired is what it is: a Kubernetes condition or Event reason. The
/// last stage that shaped desired wins: bounds, then the step limit, then
/// stabilization, then the metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Reason {
    /// Autoscaling is off: desired = current.
    Disabled,
    /// No usable metric (none, stale, failed, or no pod reporting): hold.
    MetricsMissing,
    /// The target is not a positive number: hold.
    InvalidTarget,
    /// Per-pod load within ±[`TOLERANCE`] of the target: hold.
    WithinTolerance,
    /// Some pods did not report (starting, or their scrape failed); counted
    /// conservatively, the load no longer asks for a change: hold.
    PodsNotReady,
    /// The load asks for exactly the current replicas.
    Steady,
    /// Adding pods, as far as the load asks.
    ScaleUp,
    /// Removing pods, as far as the load asks.
    ScaleDown,
    /// The load asks for more, but a lower recommendation within the
    /// scale-up window holds desired below it.
    StabilizingUp,
    /// The load asks for fewer, but a higher recommendation within the
    /// scale-down window holds desired above it.
    StabilizingDown,
    /// The change is cut by `maxScaleUpStep`/`maxScaleDownStep` per period.
    LimitedByStep,
    /// Desired is clamped to `maxReplicas`.
    AtMax,
    /// Desired is clamped to `minReplicas`.
    AtMin,
}

impl Reason {
    /// The reason as written in a condition or Event (`"ScaleUp"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Disabled => "Disabled",
            Reason::MetricsMissing => "MetricsMissing",
            Reason::InvalidTarget => "InvalidTarget",
            Reason::WithinTolerance => "WithinTolerance",
            Reason::PodsNotReady => "PodsNotReady",
            Reason::Steady => "Steady",
            Reason::ScaleUp => "ScaleUp",
            Reason::ScaleDown => "ScaleDown",
            Reason::StabilizingUp => "StabilizingUp",
            Reason::StabilizingDown => "StabilizingDown",
            Reason::LimitedByStep => "LimitedByStep",
            Reason::AtMax => "AtMax",
            Reason::AtMin => "AtMin",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of one evaluation.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    /// The replicas to write to the workload.
    pub desired: i32,
    /// The replicas the evaluation started from (the workload's `spec.replicas`).
    pub current: i32,
    /// What the load alone asks for, before stabilization, step limits and
    /// bounds (current when it asks for no change or is missing).
    pub recommendation: i32,
    /// Load per reporting pod; `None` when the metric is missing.
    pub per_pod: Option<f64>,
    /// The target per pod behind the decision.
    pub target: f64,
    pub reason: Reason,
    /// One line for an Event: `per-pod 12.5 vs target 8 → 4 replicas (from 2)`.
    pub message: String,
}

impl Decision {
    /// Whether the workload's replicas must change.
    pub fn changed(&self) -> bool {
        self.desired != self.current
    }
}

/// A change of replicas the operator applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ScaleEvent {
    at: u64,
    from: i32,
    to: i32,
}

/// What one component's autoscaler remembers between evaluations: the
/// recommendations of the longest stabilization window and the scale
/// events of the last [`STEP_PERIOD_SECONDS`]. Older entries are dropped at
/// each call, so the size is bounded by window ÷ call interval (21 entries
/// for 300 s at one call per 15 s).
///
/// Times are whole seconds on a monotonic clock. A time earlier than a
/// recorded one (a clock that went backwards) resets the history, which is
/// then seeded again like a new one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// (time, recommendation), oldest first.
    recommendations: VecDeque<(u64, i32)>,
    /// Applied changes, oldest first.
    scale_events: VecDeque<ScaleEvent>,
    /// Whether an enabled evaluation happened (and seeded the window).
    started: bool,
}

impl History {
    /// An empty history: its first evaluation seeds it with the current
    /// replicas, so no scale-down happens before a full down window.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that the replicas changed from `from` to `to` at `now`. Call
    /// it once the change is applied to the workload: the step limits count
    /// the changes of the last [`STEP_PERIOD_SECONDS`] (an apply that failed
    /// must not consume the step). No-op when `from == to`.
    pub fn record_scale(&mut self, now: u64, from: i32, to: i32) {
        self.forget_future(now);
        prune(&mut self.scale_events, now, STEP_PERIOD_SECONDS, |e| e.at);
        if from != to {
            self.scale_events.push_back(ScaleEvent { at: now, from, to });
        }
    }

    /// Entries held (recommendations and scale events): bounded, see above.
    pub fn len(&self) -> usize {
        self.recommendations.len() + self.scale_events.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A clock that went backwards: start over.
    fn forget_future(&mut self, now: u64) {
        let latest_recommendation = self.recommendations.back().map(|r| r.0);
        let latest_event = self.scale_events.back().map(|e| e.at);
        if latest_recommendation.into_iter().chain(latest_event).any(|t| t > now) {
            *self = Self::default();
        }
    }

    /// The HPA's stabilization of `rec` given `current`: up = min of the
    /// up window, down = max of the down window (`rec` included in both);
    /// current raised to up, then lowered to down.
    fn stabilize(&self, now: u64, current: i32, rec: i32, up_window: u64, down_window: u64) -> i32 {
        let (mut up, mut down) = (rec, rec);
        for &(at, r) in &self.recommendations {
            let age = now.saturating_sub(at);
            if age < up_window {
                up = up.min(r);
            }
            if age < down_window {
                down = down.max(r);
            }
        }
        let mut desired = current;
        if desired < up {
            desired = up;
        }
        if desired > down {
            desired = down;
        }
        desired
    }

    /// `desired` cut by the step limits of the current period.
    fn limit_step(&self, now: u64, current: i32, desired: i32, max_up: i32, max_down: i32) -> i32 {
        let changed: i64 = self
            .scale_events
            .iter()
            .filter(|e| now.saturating_sub(e.at) < STEP_PERIOD_SECONDS)
            .map(|e| i64::from(e.to) - i64::from(e.from))
            .sum();
        let (current, desired) = (i64::from(current), i64::from(desired));
        let period_start = current - changed;
        let limited = if desired > current {
            desired.min((period_start + i64::from(max_up)).max(current))
        } else if desired < current {
            desired.max((period_start - i64::from(max_down)).min(current))
        } else {
            desired
        };
        // Between desired and current, both i32.
        i32::try_from(limited).unwrap_or(i32::MAX)
    }
}

/// Drops the entries of `queue` aged `keep` seconds or more.
fn prune<T>(queue: &mut VecDeque<T>, now: u64, keep: u64, at: impl Fn(&T) -> u64) {
    while queue.front().is_some_and(|e| now.saturating_sub(at(e)) >= keep) {
        queue.pop_front();
    }
}

/// What the metric says, before stabilization.
#[derive(Clone, Copy, Debug)]
enum Basis {
    Missing,
    InvalidTarget,
    WithinTolerance,
    PodsNotReady { not_reporting: i32 },
    Ratio,
}

#[derive(Clone, Copy, Debug)]
struct Reading {
    per_pod: Option<f64>,
    reporting: i32,
    recommendation: i32,
    basis: Basis,
}

/// ⌈x⌉, forgiving a floating-point excess below [`EPSILON`]; saturates.
pub(crate) fn ceil(x: f64) -> i32 {
    // Float-to-int casts saturate (and x is finite here).
    (x - EPSILON).ceil() as i32
}

fn read(target: f64, current: i32, observation: Option<Observation>) -> Reading {
    let hold = |basis, per_pod, reporting| Reading { per_pod, reporting, recommendation: current, basis };
    let Some(obs) = observation.filter(|o| o.reporting_pods > 0 && o.total.is_finite() && o.total >= 0.0) else {
        return hold(Basis::Missing, None, 0);
    };
    let reporting = obs.reporting_pods;
    let per_pod = obs.total / f64::from(reporting);
    if !is_usable_target(target) {
        return hold(Basis::InvalidTarget, Some(per_pod), reporting);
    }
    let ratio = per_pod / target;
    if (ratio - 1.0).abs() <= TOLERANCE + EPSILON {
        return hold(Basis::WithinTolerance, Some(per_pod), reporting);
    }
    let not_reporting = current.saturating_sub(reporting).max(0);
    if not_reporting == 0 {
        let recommendation = ceil(f64::from(reporting) * ratio);
        return Reading { per_pod: Some(per_pod), reporting, recommendation, basis: Basis::Ratio };
    }
    // Pods that did not report: idle on the way up, at target on the way
    // down. Within tolerance or reversed so counted: hold.
    let pods = f64::from(reporting) + f64::from(not_reporting);
    let adjusted = if ratio > 1.0 {
        obs.total / (target * pods)
    } else {
        (obs.total + f64::from(not_reporting) * target) / (target * pods)
    };
    let holds = if ratio > 1.0 { adjusted <= 1.0 + TOLERANCE + EPSILON } else { adjusted >= 1.0 - TOLERANCE - EPSILON };
    if holds {
        return hold(Basis::PodsNotReady { not_reporting }, Some(per_pod), reporting);
    }
    Reading { per_pod: Some(per_pod), reporting, recommendation: ceil(pods * adjusted), basis: Basis::Ratio }
}

/// One evaluation of a component's autoscaler at `now` (whole seconds,
/// monotonic): the replicas it should have given `current` (the workload's
/// `spec.replicas`), the load `observation` (`None` when missing, stale or
/// failed) and `target` (load per pod; [`Settings::target_or`] resolves the
/// component's default). Records the recommendation in `history`; record
/// the applied change with [`History::record_scale`].
///
/// When `settings.enabled` is false, returns `current` with
/// [`Reason::Disabled`] and leaves `history` alone.
pub fn evaluate(
    history: &mut History,
    settings: &Settings,
    target: f64,
    now: u64,
    current: i32,
    observation: Option<Observation>,
) -> Decision {
    if !settings.enabled {
        return Decision {
            desired: current,
            current,
            recommendation: current,
            per_pod: None,
            target,
            reason: Reason::Disabled,
            message: format!("autoscaling is disabled; {}", replicas(current)),
        };
    }
    let (lo, hi) = settings.bounds();
    let (up_window, down_window) = settings.windows();
    let (max_up, max_down) = settings.steps();

    history.forget_future(now);
    prune(&mut history.recommendations, now, up_window.max(down_window), |r| r.0);
    prune(&mut history.scale_events, now, STEP_PERIOD_SECONDS, |e| e.at);
    if !history.started {
        history.started = true;
        history.recommendations.push_back((now, current));
    }

    let reading = read(target, current, observation);
    let rec = reading.recommendation;
    let stabilized = history.stabilize(now, current, rec, up_window, down_window);
    history.recommendations.push_back((now, rec));
    let stepped = history.limit_step(now, current, stabilized, max_up, max_down);
    let desired = stepped.clamp(lo, hi);

    let reason = if desired > stepped {
        Reason::AtMin
    } else if desired < stepped {
        Reason::AtMax
    } else if stepped != stabilized {
        Reason::LimitedByStep
    } else if stabilized < rec {
        Reason::StabilizingUp
    } else if stabilized > rec {
        Reason::StabilizingDown
    } else {
        match reading.basis {
            Basis::Missing => Reason::MetricsMissing,
            Basis::InvalidTarget => Reason::InvalidTarget,
            Basis::WithinTolerance => Reason::WithinTolerance,
            Basis::PodsNotReady { .. } => Reason::PodsNotReady,
            Basis::Ratio if desired > current => Reason::ScaleUp,
            Basis::Ratio if desired < current => Reason::ScaleDown,
            Basis::Ratio => Reason::Steady,
        }
    };

    let metric = match reading.per_pod {
        None => "no load metric from the ready pods".to_string(),
        Some(per_pod) if matches!(reading.basis, Basis::InvalidTarget) => {
            format!("per-pod {} but target {} is not a positive number", num(per_pod), num(target))
        }
        Some(per_pod) => format!("per-pod {} vs target {}", num(per_pod), num(target)),
    };
    let message = match reason {
        Reason::Disabled | Reason::MetricsMissing | Reason::InvalidTarget => {
            format!("{metric}: holding {}", replicas(current))
        }
        Reason::WithinTolerance => {
            format!("{metric}: within {}%, {}", num(TOLERANCE * 100.0), replicas(current))
        }
        Reason::PodsNotReady => {
            let not_reporting = match reading.basis {
                Basis::PodsNotReady { not_reporting } => not_reporting,
                _ => 0,
            };
            format!(
                "{metric} from {} pods; {not_reporting} more not ready or not reporting yet: holding {}",
                reading.reporting,
                replicas(current)
            )
        }
        Reason::Steady => format!("{metric} → {}, no change", replicas(current)),
        Reason::ScaleUp | Reason::ScaleDown => format!("{metric} → {} (from {current})", replicas(desired)),
        Reason::StabilizingUp => format!(
            "{metric} → {}; the lowest recommendation of the last {up_window} s allows {desired} (from {current})",
            replicas(rec)
        ),
        Reason::StabilizingDown => format!(
            "{metric} → {}; the highest recommendation of the last {down_window} s keeps {desired} (from {current})",
            replicas(rec)
        ),
        Reason::LimitedByStep => {
            let (name, step) = if stabilized > current { ("Up", max_up) } else { ("Down", max_down) };
            format!(
                "{metric} → {}; maxScale{name}Step {step} per {STEP_PERIOD_SECONDS} s allows {desired} (from {current})",
                replicas(stabilized)
            )
        }
        Reason::AtMax => format!("{metric} → {}; capped at maxReplicas {hi} (from {current})", replicas(stepped)),
        Reason::AtMin => format!("{metric} → {}; raised to minReplicas {lo} (from {current})", replicas(stepped)),
    };
    Decision { desired, current, recommendation: rec, per_pod: reading.per_pod, target, reason, message }
}

/// "1 replica", "3 replicas".
fn replicas(n: i32) -> String {
    if n == 1 { "1 replica".to_string() } else { format!("{n} replicas") }
}

/// A number for a message: at most two decimals, no trailing zeros.
fn num(x: f64) -> String {
    let s = format!("{x:.2}");
    if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> Settings {
        Settings { enabled: true, ..Settings::default() }
    }

    fn obs(total: f64, reporting_pods: i32) -> Option<Observation> {
        Some(Observation { total, reporting_pods })
    }

    /// One evaluation on a fresh history with no stabilization.
    fn once(settings: &Settings, current: i32, observation: Option<Observation>) -> Decision {
        let s = Settings { scale_down_stabilization_window_seconds: 0, ..settings.clone() };
        evaluate(&mut History::new(), &s, 8.0, 1000, current, observation)
    }

    #[test]
    fn scale_up_uses_reporting_pods_and_ceil() {
        let d = once(&on(), 2, obs(25.0, 2));
        assert_eq!((d.desired, d.recommendation, d.reason), (4, 4, Reason::ScaleUp));
        assert_eq!(d.per_pod, Some(12.5));
        assert_eq!(d.target, 8.0);
        assert_eq!(d.message, "per-pod 12.5 vs target 8 → 4 replicas (from 2)");
        assert!(d.changed());
    }

    #[test]
    fn tolerance_boundary_is_inclusive() {
        // 8.8 / 8 = 1.1000000000000001 in floating point: still within.
        let d = once(&on(), 1, obs(8.8, 1));
        assert_eq!((d.desired, d.reason), (1, Reason::WithinTolerance));
        let d = once(&on(), 10, obs(72.0, 10)); // 7.2 / 8 = 0.9
        assert_eq!((d.desired, d.reason), (10, Reason::WithinTolerance));
        // Just outside: scale.
        let d = once(&on(), 1, obs(8.81, 1));
        assert_eq!((d.desired, d.reason), (2, Reason::ScaleUp));
        let d = once(&on(), 10, obs(71.9, 10));
        assert_eq!((d.desired, d.reason), (9, Reason::ScaleDown));
    }

    #[test]
    fn floating_point_excess_does_not_add_a_pod() {
        let s = Settings { max_replicas: 100, max_scale_up_step: 100, ..on() };
        // reporting × ratio, as evaluate computes it.
        let product = |pods: f64, total: f64, target: f64| pods * ((total / pods) / target);
        // 3 pods × ((3.5 / 3) / 0.7) is 5.000000000000001 in floating point.
        assert!(product(3.0, 3.5, 0.7) > 5.0);
        let d = evaluate(&mut History::new(), &s, 0.7, 0, 3, obs(3.5, 3));
        assert_eq!((d.desired, d.recommendation, d.reason), (5, 5, Reason::ScaleUp));
        // 2 pods × ((2.1 / 2) / 0.7) = 3.0000000000000004.
        assert!(product(2.0, 2.1, 0.7) > 3.0);
        assert_eq!(evaluate(&mut History::new(), &s, 0.7, 0, 2, obs(2.1, 2)).desired, 3);
        // A true excess still adds a pod: 3 pods at 1.2 against 1 → 3.6 → 4.
        assert_eq!(evaluate(&mut History::new(), &s, 1.0, 0, 3, obs(3.6, 3)).desired, 4);
        assert_eq!(ceil(5.00000001), 6);
        assert_eq!(ceil(5.0000000000001), 5);
    }

    #[test]
    fn bounds_always_apply() {
        let s = Settings { min_replicas: 3, max_replicas: 6, ..on() };
        // Below min with missing data: raised to min.
        let d = once(&s, 1, None);
        assert_eq!((d.desired, d.reason, d.per_pod), (3, Reason::AtMin, None));
        // Above max, load within tolerance: straight to max (no step limit).
        let d = once(&s, 9, obs(72.0, 9));
        assert_eq!((d.desired, d.reason), (6, Reason::AtMax));
        // Load asking for more than max.
        let d = once(&s, 4, obs(400.0, 4));
        assert_eq!((d.desired, d.recommendation, d.reason), (6, 50, Reason::AtMax));
        assert!(d.message.ends_with("capped at maxReplicas 6 (from 4)"), "{}", d.message);
        // No load: down to min, within the step.
        let d = once(&Settings { max_scale_down_step: 5, ..s.clone() }, 4, obs(0.0, 4));
        assert_eq!((d.desired, d.recommendation, d.reason), (3, 0, Reason::AtMin));
        // At min already: AtMin explains why nothing moves.
        let d = once(&s, 3, obs(0.0, 3));
        assert_eq!((d.desired, d.reason), (3, Reason::AtMin));
    }

    #[test]
    fn disabled_returns_current_and_leaves_the_history() {
        let mut h = History::new();
        let s = Settings { enabled: false, min_replicas: 3, ..Settings::default() };
        let d = evaluate(&mut h, &s, 8.0, 0, 1, obs(100.0, 1));
        assert_eq!((d.desired, d.reason), (1, Reason::Disabled));
        assert!(!d.changed());
        assert!(h.is_empty());
        assert_eq!(h, History::new());
    }

    #[test]
    fn missing_metrics_never_scale_down() {
        let s = Settings { scale_down_stabilization_window_seconds: 0, ..on() };
        let mut h = History::new();
        for (t, o) in [(0, None), (15, obs(5.0, 0)), (30, obs(f64::NAN, 5)), (45, obs(-1.0, 5)), (60, None)] {
            let d = evaluate(&mut h, &s, 8.0, t, 5, o);
            assert_eq!((d.desired, d.recommendation, d.reason), (5, 5, Reason::MetricsMissing), "t={t}");
            assert_eq!(d.message, "no load metric from the ready pods: holding 5 replicas");
        }
        // The data comes back low: now it may go down.
        let d = evaluate(&mut h, &s, 8.0, 75, 5, obs(8.0, 5));
        assert_eq!((d.desired, d.reason), (4, Reason::LimitedByStep));
    }

    #[test]
    fn invalid_target_holds() {
        for target in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let d = evaluate(&mut History::new(), &on(), target, 0, 3, obs(100.0, 3));
            assert_eq!((d.desired, d.reason), (3, Reason::InvalidTarget), "{target}");
        }
    }

    #[test]
    fn pods_not_ready_are_counted_conservatively() {
        let s = Settings { scale_down_stabilization_window_seconds: 0, max_scale_down_step: 10, ..on() };
        // 4 wanted, 2 reporting at 2 each (ratio 0.25): the 2 others count
        // at target, (4 + 16) / 32 = 0.625: ⌈4 × 0.625⌉ = 3, not 1.
        let d = once(&s, 4, obs(4.0, 2));
        assert_eq!((d.desired, d.reason), (3, Reason::ScaleDown));
        // 4 wanted, 1 reporting at 2: (2 + 24) / 32 = 0.8125 → ⌈3.25⌉ = 4.
        let d = once(&s, 4, obs(2.0, 1));
        assert_eq!((d.desired, d.reason), (4, Reason::Steady));
        // 4 wanted, 2 reporting at 7 each (ratio 0.875): down, but with the
        // 2 others at target (14 + 16) / 32 = 0.94, within: hold.
        let d = once(&s, 4, obs(14.0, 2));
        assert_eq!((d.desired, d.reason), (4, Reason::PodsNotReady));
        // 4 wanted, 2 reporting at 7.5 each (ratio 0.94): within tolerance.
        let d = once(&s, 4, obs(15.0, 2));
        assert_eq!((d.desired, d.reason), (4, Reason::WithinTolerance));
        // 10 wanted, 9 reporting at 6.8 (ratio 0.85): (61.2 + 8) / 80 =
        // 0.865, outside the tolerance → ⌈8.65⌉ = 9.
        let d = once(&s, 10, obs(61.2, 9));
        assert_eq!((d.desired, d.reason), (9, Reason::ScaleDown));
        // 10 wanted, 9 reporting at 7.15 (ratio 0.894, outside): (64.35 +
        // 8) / 80 = 0.904, within once counted so → hold.
        let d = once(&s, 10, obs(64.35, 9));
        assert_eq!((d.desired, d.reason), (10, Reason::PodsNotReady));
        assert_eq!(
            d.message,
            "per-pod 7.15 vs target 8 from 9 pods; 1 more not ready or not reporting yet: holding 10 replicas"
        );

        // Up: 4 wanted, 3 reporting at 11.33 (ratio 1.42); with the 4th
        // idle, 34 / 32 = 1.06, within tolerance: the starting pod will
        // absorb it → hold.
        let d = once(&s, 4, obs(34.0, 3));
        assert_eq!((d.desired, d.reason), (4, Reason::PodsNotReady));
        // 5 wanted, 1 ready at 50: ⌈50 / 8⌉ = 7 whatever the others do.
        let d = once(&s, 5, obs(50.0, 1));
        assert_eq!((d.desired, d.reason), (7, Reason::ScaleUp));
    }

    #[test]
    fn down_window_holds_the_highest_recommendation() {
        let s = on(); // down window 300 s
        let mut h = History::new();
        // Seeded with current = 2 at t = 0, then a spike asks for 5.
        assert_eq!(evaluate(&mut h, &s, 8.0, 0, 2, obs(40.0, 2)).desired, 5);
        h.record_scale(0, 2, 5);
        // Low load from t = 15: held at 5 until the 5 recorded at t = 0 is
        // 300 s old.
        for t in (15..300).step_by(15) {
            let d = evaluate(&mut h, &s, 8.0, t, 5, obs(8.0, 5));
            assert_eq!((d.desired, d.reason), (5, Reason::StabilizingDown), "t={t}");
            assert_eq!(d.recommendation, 1);
        }
        let d = evaluate(&mut h, &s, 8.0, 300, 5, obs(8.0, 5));
        assert_eq!((d.desired, d.reason), (4, Reason::LimitedByStep));
        assert_eq!(d.message, "per-pod 1.6 vs target 8 → 1 replica; maxScaleDownStep 1 per 15 s allows 4 (from 5)");
    }

    #[test]
    fn down_window_partially_holds() {
        let s = Settings { max_scale_down_step: 10, scale_down_stabilization_window_seconds: 60, ..on() };
        let mut h = History::new();
        evaluate(&mut h, &s, 8.0, 0, 6, obs(48.0, 6)); // rec 6 (within)
        evaluate(&mut h, &s, 8.0, 15, 6, obs(24.0, 6)); // rec 3, held at 6
        evaluate(&mut h, &s, 8.0, 30, 6, obs(30.0, 6)); // rec 4, held
        // t = 60: the two 6s (t = 0 seed and rec) are 60 s old; max(3, 4, 1) = 4.
        let d = evaluate(&mut h, &s, 8.0, 60, 6, obs(8.0, 6));
        assert_eq!((d.desired, d.recommendation, d.reason), (4, 1, Reason::StabilizingDown));
    }

    #[test]
    fn up_window_needs_every_recommendation_to_ask() {
        let s = Settings { scale_up_stabilization_window_seconds: 45, ..on() };
        let mut h = History::new();
        let mut current = 2;
        let mut series = Vec::new();
        for (t, total) in [(0, 40.0), (15, 40.0), (30, 24.0), (45, 40.0), (60, 40.0), (75, 40.0)] {
            let d = evaluate(&mut h, &s, 8.0, t, current, obs(total, current));
            if d.changed() {
                h.record_scale(t, current, d.desired);
            }
            series.push((d.recommendation, d.desired, d.reason));
            current = d.desired;
        }
        use Reason::{ScaleUp, StabilizingUp};
        assert_eq!(
            series,
            [
                (5, 2, StabilizingUp), // the seed (2 at t = 0) is in the window
                (5, 2, StabilizingUp),
                (3, 2, StabilizingUp),
                (5, 3, StabilizingUp), // seed gone: min(5, 5, 3) over (0, 45]
                (5, 3, StabilizingUp), // min(3, 5, 5) over (15, 60]
                (5, 5, ScaleUp),       // min(5, 5, 5) over (30, 75]
            ]
        );
    }

    #[test]
    fn step_limit_counts_changes_of_the_period() {
        let s = Settings { max_replicas: 100, ..on() };
        let mut h = History::new();
        let d = evaluate(&mut h, &s, 8.0, 0, 1, obs(100.0, 1)); // wants 13
        assert_eq!((d.desired, d.recommendation, d.reason), (5, 13, Reason::LimitedByStep));
        h.record_scale(0, 1, 5);
        // Another call within the same period: the step is spent (the
        // period started at 1).
        let d = evaluate(&mut h, &s, 8.0, 10, 5, obs(100.0, 5));
        assert_eq!((d.desired, d.reason), (5, Reason::LimitedByStep));
        // One period later: 4 more.
        let d = evaluate(&mut h, &s, 8.0, 15, 5, obs(100.0, 5));
        assert_eq!((d.desired, d.reason), (9, Reason::LimitedByStep));
        h.record_scale(15, 5, 9);
        // The change at t = 15 is 15 s old: a new period.
        let d = evaluate(&mut h, &s, 8.0, 30, 9, obs(100.0, 9));
        assert_eq!((d.desired, d.reason), (13, Reason::ScaleUp));
    }

    #[test]
    fn step_limit_after_a_partial_step() {
        let s =
            Settings { max_replicas: 100, max_scale_down_step: 3, scale_down_stabilization_window_seconds: 0, ..on() };
        let mut h = History::new();
        evaluate(&mut h, &s, 8.0, 0, 10, obs(60.0, 10));
        h.record_scale(0, 10, 9); // the operator chose to move by 1 only
        // Same period: 2 more may go, from the period's start of 10.
        let d = evaluate(&mut h, &s, 8.0, 5, 9, obs(8.0, 9));
        assert_eq!((d.desired, d.reason), (7, Reason::LimitedByStep));
        // A change in the other direction within the period never reverses:
        // the up limit is at least current.
        h.record_scale(6, 9, 14);
        let d = evaluate(&mut h, &s, 8.0, 7, 14, obs(200.0, 14));
        assert_eq!((d.desired, d.reason), (14, Reason::LimitedByStep));
    }

    #[test]
    fn history_is_bounded() {
        let s = on();
        let mut h = History::new();
        let mut current = 3;
        for i in 0..10_000u64 {
            let total = if i % 7 < 3 { 40.0 } else { 5.0 };
            let d = evaluate(&mut h, &s, 8.0, i * 15, current, obs(total, current));
            if d.changed() {
                h.record_scale(i * 15, current, d.desired);
                current = d.desired;
            }
        }
        // 300 s of recommendations at one per 15 s, plus at most one event.
        assert!(h.len() <= 21, "{}", h.len());
        assert_eq!(h.recommendations.len(), 20);
    }

    #[test]
    fn a_new_history_does_not_scale_down_for_a_window() {
        let s = on();
        let mut h = History::new();
        let d = evaluate(&mut h, &s, 8.0, 1_000_000, 6, obs(8.0, 6));
        assert_eq!((d.desired, d.recommendation, d.reason), (6, 1, Reason::StabilizingDown));
        // But it scales up at once (12 wanted, +4 allowed, 10 at most).
        let mut h = History::new();
        let d = evaluate(&mut h, &s, 8.0, 1_000_000, 6, obs(96.0, 6));
        assert_eq!((d.desired, d.recommendation, d.reason), (10, 12, Reason::LimitedByStep));
    }

    #[test]
    fn a_clock_going_backwards_resets_the_history() {
        let s = Settings { scale_down_stabilization_window_seconds: 60, ..on() };
        let mut h = History::new();
        evaluate(&mut h, &s, 8.0, 1000, 4, obs(32.0, 4));
        h.record_scale(1000, 3, 4);
        evaluate(&mut h, &s, 8.0, 10, 4, obs(32.0, 4));
        assert_eq!(h.recommendations, [(10, 4), (10, 4)]);
        assert!(h.scale_events.is_empty());
    }

    #[test]
    fn reasons_serialize_as_condition_reasons() {
        assert_eq!(serde_json::to_string(&Reason::StabilizingDown).unwrap(), "\"StabilizingDown\"");
        assert_eq!(Reason::AtMax.to_string(), "AtMax");
        let d = once(&on(), 2, obs(25.0, 2));
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["perPod"], 12.5);
        assert_eq!(json["reason"], "ScaleUp");
    }

    #[test]
    fn numbers_in_messages() {
        assert_eq!(num(8.0), "8");
        assert_eq!(num(12.345), "12.35");
        assert_eq!(num(0.1), "0.1");
        assert_eq!(num(1e20), "100000000000000000000");
    }
}
