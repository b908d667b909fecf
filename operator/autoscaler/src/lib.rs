//! The operator's autoscaler: the replicas of a component (query backends,
//! segment writers) from a load metric, computed the way the Kubernetes
//! HorizontalPodAutoscaler computes them. It is a pure function of the
//! recent history, the settings and the time, so it is tested and
//! simulated ([`simulate`]) without a cluster.
//!
//! # The algorithm
//!
//! The operator calls [`evaluate`] every sync period (15 s) per component
//! with the time, the workload's `spec.replicas` (*current*) and an
//! [`Observation`]: the pool's total load, summed over the ready pods that
//! reported it, and how many did (`None` when the metric is missing, stale
//! or failed to fetch). Times are whole seconds on a monotonic clock.
//!
//! 1. **Recommendation.** per-pod = total / reporting pods;
//!    ratio = per-pod / target.
//!    * No observation, no reporting pod, or a load that is not a finite
//!      number ≥ 0: the recommendation is *current* (`MetricsMissing`).
//!      Missing data never scales down. (A target that is not a positive
//!      number holds too: `InvalidTarget`.)
//!    * |ratio − 1| ≤ [`TOLERANCE`] (10%): *current* (`WithinTolerance`).
//!    * Otherwise ⌈reporting × ratio⌉ (= ⌈total / target⌉), computed with
//!      an epsilon of 1e-9 so that 3.0000000001 stays 3. Ready reporting
//!      pods are used, not *current*, so pods still starting do not dilute
//!      the load.
//!    * Pods in *current* that did not report (not ready yet, or their
//!      scrape failed) are handled as the HPA handles missing pods: on a
//!      scale-up they count as idle, on a scale-down as loaded exactly at
//!      target. If, counted so, the ratio falls within the tolerance or
//!      changes direction, the recommendation is *current*
//!      (`PodsNotReady`); a scale-down goes to ⌈total / target⌉ + the
//!      pods that did not report. A pod still starting therefore never
//!      provokes a scale-down of its own, and one stuck `Pending` (no node
//!      for it) does not block scale-downs forever either.
//! 2. **Stabilization** (HPA semantics). Each recommendation is kept with
//!    its time. up = min of the recommendations of the last
//!    `scaleUpStabilizationWindowSeconds` (the current one included),
//!    down = max of those of the last `scaleDownStabilizationWindowSeconds`
//!    (idem). If current < up, desired = up; else if current > down,
//!    desired = down; else desired = current. A scale-up thus needs every
//!    recommendation of the up window to ask for it; a scale-down goes to
//!    the highest recommendation of the down window. "The last *w*
//!    seconds" means an age below *w*: a window of 0 holds only the
//!    current recommendation. The first evaluation of a [`History`] seeds
//!    it with *current*, as the HPA does, so a restarted operator does not
//!    scale down before a full down window of fresh recommendations. The
//!    recommendations that hold (missing metrics, pods not ready) are
//!    recorded like the others, as *current*: after a gap in the metric a
//!    scale-down waits for the gap to leave the down window (a gap is no
//!    evidence that the load fell), where the HPA, which records nothing
//!    during a gap, could scale down on the first sample after it.
//! 3. **Step limits** per [`STEP_PERIOD_SECONDS`] (15 s, like the HPA's
//!    default policy "4 pods per 15 s"): the replicas at the start of the
//!    period are *current* minus the changes recorded with
//!    [`History::record_scale`] in the last 15 s; desired may exceed them by
//!    at most `maxScaleUpStep` and fall below them by at most
//!    `maxScaleDownStep` (and a limit never reverses a change already made:
//!    it is at least *current* on the way up, at most on the way down).
//! 4. **Bounds**: desired is clamped to [`minReplicas`, `maxReplicas`]
//!    always, whatever the metric says (current below min goes to min even
//!    with missing data, above max goes to max at once).
//!
//! The [`Decision`] carries desired, the recommendation, the per-pod value
//! and the target behind it, a [`Reason`] for a Kubernetes condition or
//! Event (the last stage that shaped desired: bounds, then step limit,
//! then stabilization, then the metric) and a message such as
//! `per-pod 12.5 vs target 8 → 4 replicas (from 2)`.
//!
//! # State
//!
//! [`History`] holds the recommendations of the longest stabilization
//! window and the scale events of the last step period, nothing older.
//! [`evaluate`] records the recommendation; the caller records a scale
//! event with [`History::record_scale`] once the new replicas are applied
//! (an apply that fails consumes no step). Both live in memory; after a
//! restart a fresh `History` is conservative (see step 2).
//!
//! When autoscaling is disabled, [`evaluate`] returns *current* with reason
//! `Disabled` and leaves the history alone (the operator need not call it).
//!
//! [`minReplicas`]: Settings::min_replicas
//! [`maxReplicas`]: Settings::max_replicas

mod error;
mod evaluate;
mod settings;
pub mod simulate;

pub use error::Error;
pub use evaluate::{Decision, History, Observation, Reason, STEP_PERIOD_SECONDS, TOLERANCE, evaluate};
pub use settings::Settings;
