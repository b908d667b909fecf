//! The PyroscopeCluster's status from what the workloads report:
//! per-component replicas and the `Ready`, `Progressing` and `Degraded`
//! conditions (each with a reason), keeping transition times stable.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use phlox_crds::v1alpha1::{AutoscalingStatus, ComponentStatus, PyroscopeClusterStatus, ScalingSummary, condition};

/// One workload as observed.
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    pub component: &'static str,
    pub status: ComponentStatus,
    /// The workload controller has seen its latest spec.
    pub current: bool,
    /// The rollout stalled (Deployment `ProgressDeadlineExceeded`).
    pub stalled: Option<String>,
}

impl Observed {
    pub fn deployment(component: &'static str, d: &Deployment) -> Self {
        let desired = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let st = d.status.clone().unwrap_or_default();
        let stalled = st.conditions.unwrap_or_default().into_iter().find_map(|c| {
            (c.type_ == "Progressing" && c.status == "False" && c.reason.as_deref() == Some("ProgressDeadlineExceeded"))
                .then(|| c.message.unwrap_or_default())
        });
        Self {
            component,
            status: ComponentStatus {
                name: component.to_owned(),
                kind: "Deployment".into(),
                workload: d.metadata.name.clone().unwrap_or_default(),
                desired_replicas: desired,
                ready_replicas: st.ready_replicas.unwrap_or(0),
                updated_replicas: st.updated_replicas.unwrap_or(0),
            },
            current: st.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0),
            stalled,
        }
    }

    pub fn stateful_set(component: &'static str, s: &StatefulSet) -> Self {
        let desired = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let st = s.status.clone().unwrap_or_default();
        Self {
            component,
            status: ComponentStatus {
                name: component.to_owned(),
                kind: "StatefulSet".into(),
                workload: s.metadata.name.clone().unwrap_or_default(),
                desired_replicas: desired,
                ready_replicas: st.ready_replicas.unwrap_or(0),
                updated_replicas: st.updated_replicas.unwrap_or(0),
            },
            current: st.observed_generation.unwrap_or(0) >= s.metadata.generation.unwrap_or(0),
            stalled: None,
        }
    }

    pub(crate) fn ready(&self) -> bool {
        self.current
            && self.status.ready_replicas >= self.status.desired_replicas
            && self.status.updated_replicas >= self.status.desired_replicas
    }
}

#[allow(clippy::too_many_arguments)]
fn set(
    conditions: &mut Vec<Condition>,
    previous: &[Condition],
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) {
    let status = if ok { "True" } else { "False" };
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    conditions.push(Condition {
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: reason.to_owned(),
        message,
        observed_generation: generation,
        last_transition_time,
    });
}

/// The status for `generation` given the observed workloads and the
/// reconcile error, if any. `previous` keeps transition times stable.
pub fn compute(
    generation: Option<i64>,
    observed: &[Observed],
    error: Option<(&str, String)>,
    previous: Option<&PyroscopeClusterStatus>,
    now: Time,
) -> PyroscopeClusterStatus {
    let prev = previous.map(|p| p.conditions.as_slice()).unwrap_or(&[]);
    let total = observed.len();
    let ready = observed.iter().filter(|o| o.ready()).count();
    let waiting: Vec<String> = observed
        .iter()
        .filter(|o| !o.ready())
        .map(|o| format!("{} {}/{}", o.component, o.status.ready_replicas, o.status.desired_replicas))
        .collect();
    let mut conditions = Vec::with_capacity(3);
    let all_ready = total > 0 && ready == total && error.is_none();
    set(
        &mut conditions,
        prev,
        condition::READY,
        all_ready,
        if all_ready {
            "AllComponentsReady"
        } else if error.is_some() {
            "ReconcileFailed"
        } else {
            "ComponentsNotReady"
        },
        if all_ready {
            format!("{ready}/{total} components ready")
        } else if waiting.is_empty() {
            "the desired state could not be applied".to_owned()
        } else {
            format!("waiting for {}", waiting.join(", "))
        },
        generation,
        &now,
    );
    let progressing = !waiting.is_empty();
    set(
        &mut conditions,
        prev,
        condition::PROGRESSING,
        progressing,
        if progressing { "RollingOut" } else { "Stable" },
        if progressing {
            format!("rolling out {}", waiting.join(", "))
        } else {
            "every component is at its desired state".to_owned()
        },
        generation,
        &now,
    );
    let stalled: Vec<String> =
        observed.iter().filter_map(|o| o.stalled.as_ref().map(|m| format!("{}: {m}", o.component))).collect();
    let (degraded, reason, message) = match (&error, stalled.is_empty()) {
        (Some((reason, message)), _) => (true, (*reason).to_owned(), message.clone()),
        (None, false) => (true, "ProgressDeadlineExceeded".to_owned(), stalled.join("; ")),
        (None, true) => (false, "AsExpected".to_owned(), "the desired state is applied".to_owned()),
    };
    set(&mut conditions, prev, condition::DEGRADED, degraded, &reason, message, generation, &now);
    PyroscopeClusterStatus {
        observed_generation: generation,
        conditions,
        components: observed.iter().map(|o| o.status.clone()).collect(),
        components_ready: Some(format!("{ready}/{total}")),
        autoscaling: Vec::new(),
        scaling: None,
        version: previous.and_then(|p| p.version.clone()),
        metastore_voters: previous.and_then(|p| p.metastore_voters),
        rollout: None,
    }
}

/// Adds the autoscaler's decisions to `status`: per component, the
/// `current/desired` summary and the `ScalingActive` condition (absent when
/// no component is autoscaled; False when one lacks its metric or cannot
/// drain a writer).
pub fn with_autoscaling(
    mut status: PyroscopeClusterStatus,
    autoscaling: Vec<AutoscalingStatus>,
    previous: Option<&PyroscopeClusterStatus>,
    generation: Option<i64>,
    now: Time,
) -> PyroscopeClusterStatus {
    if autoscaling.is_empty() {
        return status;
    }
    let prev = previous.map(|p| p.conditions.as_slice()).unwrap_or(&[]);
    let inactive: Vec<&AutoscalingStatus> =
        autoscaling.iter().filter(|a| matches!(a.reason.as_str(), "MetricsMissing" | "DrainTimeout")).collect();
    let (active, reason, message) = match inactive.first() {
        Some(first) => (
            false,
            first.reason.clone(),
            inactive.iter().map(|a| format!("{}: {}", a.component, a.message)).collect::<Vec<_>>().join("; "),
        ),
        None => (
            true,
            "ValidMetrics".to_owned(),
            autoscaling.iter().map(|a| format!("{}: {}", a.component, a.message)).collect::<Vec<_>>().join("; "),
        ),
    };
    let mut conditions = std::mem::take(&mut status.conditions);
    set(&mut conditions, prev, condition::SCALING_ACTIVE, active, &reason, message, generation, &now);
    status.conditions = conditions;
    let summary = |c: &str| {
        autoscaling.iter().find(|a| a.component == c).map(|a| format!("{}/{}", a.current_replicas, a.desired_replicas))
    };
    status.scaling =
        Some(ScalingSummary { segment_writer: summary("segment-writer"), query_backend: summary("query-backend") });
    status.autoscaling = autoscaling;
    status
}
