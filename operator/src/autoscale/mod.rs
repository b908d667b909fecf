//! The operator's autoscaler: every sync (15 s while a cluster autoscales)
//! it reads each autoscaled component's load, asks the pure algorithm of
//! `phlox-autoscaler` for the replicas, and hands them to the renderer, so
//! they are written to the workloads the operator owns (never to the CR:
//! Argo CD sees no drift). Segment writers are removed by draining: the
//! highest ordinal is asked to drain, and only once it reports `drained`
//! are the StatefulSet's replicas lowered, so exactly that pod goes. A
//! writer that never drains blocks its removal and is reported
//! (`DrainTimeout`). Query backends scale in freely: their pods finish their
//! in-flight leaves during the termination grace period.

pub mod drain;
pub mod scrape;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams};
use kube::runtime::events::EventType;
use kube::{Client, ResourceExt};
use phlox_autoscaler::{Decision, History, Reason, Settings, evaluate};
use phlox_crds::v1alpha1::{AutoscalingSpec, AutoscalingStatus, PyroscopeCluster, ScalableComponentSpec};
use tracing::{info, warn};

use crate::Result;
use crate::metrics::Metrics;
use crate::names::{ADMIN_PORT, Component, HTTP_PORT, Names};
pub use scrape::{LoadReader, PodTarget, Reading, Signal};

/// How often an autoscaled cluster is evaluated (the HPA's sync period).
pub const SYNC_PERIOD: Duration = Duration::from_secs(15);
/// How long a writer may take to drain before it is reported.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(300);

/// The components the operator scales from load.
pub const AUTOSCALED: [Component; 2] = [Component::SegmentWriter, Component::QueryBackend];

/// A monotonic clock (injectable so tests can move time).
pub type Clock = Arc<dyn Fn() -> Duration + Send + Sync>;

/// Replicas decided by the autoscaler, per component.
pub type Replicas = BTreeMap<Component, i32>;

/// A writer being drained before the StatefulSet loses it.
#[derive(Debug, Clone)]
struct DrainJob {
    pod: String,
    /// The writer's admin listener.
    admin_url: String,
    /// Replicas when the drain started; the scale-in goes to `from - 1`.
    from: i32,
    started: Duration,
    reported_timeout: bool,
}

/// What one component's autoscaler remembers.
#[derive(Default)]
struct ComponentState {
    history: History,
    reader: LoadReader,
    drain: Option<DrainJob>,
    last_scale: Option<(Time, String)>,
    last_reason: Option<String>,
    /// The last evaluation: when, the replicas decided, the status entry.
    /// Reconciles closer than [`SYNC_PERIOD`] to it reuse it (no scrape), so
    /// counter rates span at least that long and a burst of reconciles
    /// (owned objects changing) cannot scale on a millisecond's spike.
    last_eval: Option<(Duration, i32, AutoscalingStatus)>,
    /// The status was read for a drain in progress (after an operator restart).
    recovered: bool,
}

/// The autoscaler's decisions for one cluster.
#[derive(Debug, Default)]
pub struct Plan {
    /// Replicas to render, for the autoscaled components.
    pub replicas: Replicas,
    /// Status entries, one per autoscaled component.
    pub status: Vec<AutoscalingStatus>,
    /// Events to publish: (type, reason, note).
    pub events: Vec<(EventType, String, String)>,
}

/// State of every autoscaled component of every cluster.
pub struct Autoscaler {
    clock: Clock,
    http: reqwest::Client,
    drain_timeout: Duration,
    state: Mutex<HashMap<(String, Component), ComponentState>>,
}

impl std::fmt::Debug for Autoscaler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Autoscaler").finish_non_exhaustive()
    }
}

impl Default for Autoscaler {
    fn default() -> Self {
        let start = std::time::Instant::now();
        Self::with_clock(Arc::new(move || start.elapsed()))
    }
}

/// The CR's autoscaling block as the algorithm's settings (same fields).
pub fn settings(spec: &AutoscalingSpec) -> Settings {
    Settings {
        enabled: spec.enabled,
        min_replicas: spec.min_replicas,
        max_replicas: spec.max_replicas,
        target_value: spec.target_value,
        scale_up_stabilization_window_seconds: spec.scale_up_stabilization_window_seconds,
        scale_down_stabilization_window_seconds: spec.scale_down_stabilization_window_seconds,
        max_scale_up_step: spec.max_scale_up_step,
        max_scale_down_step: spec.max_scale_down_step,
    }
}

fn scalable(cr: &PyroscopeCluster, c: Component) -> Option<&ScalableComponentSpec> {
    match c {
        Component::SegmentWriter => Some(&cr.spec.segment_writer),
        Component::QueryBackend => Some(&cr.spec.query_backend),
        _ => None,
    }
}

/// Whether any component of `cr` autoscales.
pub fn enabled(cr: &PyroscopeCluster) -> bool {
    AUTOSCALED.iter().any(|&c| scalable(cr, c).is_some_and(|s| s.autoscaling.enabled))
}

fn now_time() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// A pod's readiness and address, from its status.
pub(crate) fn pod_target(pod: &Pod) -> Option<PodTarget> {
    let status = pod.status.as_ref()?;
    let ip = status.pod_ip.as_ref().filter(|ip| !ip.is_empty())?;
    let ready = status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True");
    let port_named = |name: &str, default: i32| {
        pod.spec
            .as_ref()
            .and_then(|s| {
                s.containers.iter().flat_map(|c| c.ports.iter().flatten()).find(|p| p.name.as_deref() == Some(name))
            })
            .map_or(default, |p| p.container_port)
    };
    let (port, admin) = (port_named("http", HTTP_PORT), port_named("admin", ADMIN_PORT));
    let deleting = pod.metadata.deletion_timestamp.is_some();
    // An IPv6 address is bracketed in a URL.
    let host = if ip.contains(':') { format!("[{ip}]") } else { ip.clone() };
    Some(PodTarget {
        name: pod.name_any(),
        base_url: format!("http://{host}:{port}"),
        admin_url: format!("http://{host}:{admin}"),
        ready: ready && !deleting,
    })
}

impl Autoscaler {
    /// An autoscaler reading time from `clock`.
    pub fn with_clock(clock: Clock) -> Self {
        Self { clock, http: reqwest::Client::new(), drain_timeout: DRAIN_TIMEOUT, state: Mutex::new(HashMap::new()) }
    }

    /// Reports a writer that has not drained after `timeout` (default 5 min).
    pub fn with_drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    fn take(&self, key: &(String, Component)) -> ComponentState {
        self.state.lock().map(|mut s| s.remove(key).unwrap_or_default()).unwrap_or_default()
    }

    fn put(&self, key: (String, Component), state: ComponentState) {
        if let Ok(mut s) = self.state.lock() {
            s.insert(key, state);
        }
    }

    /// Forgets components that no longer autoscale (and deleted clusters).
    pub fn forget(&self, cluster: &str, keep: &[Component]) {
        if let Ok(mut s) = self.state.lock() {
            s.retain(|(c, comp), _| c != cluster || keep.contains(comp));
        }
    }

    /// Decides the replicas of every autoscaled component of `cr`.
    /// `admin_token`: the cluster's, for the writers' drain calls.
    pub async fn plan(
        &self,
        client: &Client,
        cr: &PyroscopeCluster,
        metrics: &Metrics,
        admin_token: &str,
    ) -> Result<Plan> {
        let names = Names::of(cr)?;
        let cluster = format!("{}/{}", names.namespace, names.cluster);
        let mut plan = Plan::default();
        let enabled: Vec<Component> =
            AUTOSCALED.into_iter().filter(|&c| scalable(cr, c).is_some_and(|s| s.autoscaling.enabled)).collect();
        self.forget(&cluster, &enabled);
        for c in enabled {
            let key = (cluster.clone(), c);
            let mut state = self.take(&key);
            let now = (self.clock)();
            if let Some((at, replicas, entry)) = &state.last_eval
                && now.saturating_sub(*at) < SYNC_PERIOD
            {
                plan.replicas.insert(c, *replicas);
                plan.status.push(entry.clone());
                self.put(key, state);
                continue;
            }
            let result = self.plan_component(client, cr, &names, c, &mut state, metrics, &mut plan, admin_token).await;
            if result.is_ok()
                && let (Some(&replicas), Some(entry)) = (plan.replicas.get(&c), plan.status.last())
            {
                state.last_eval = Some((now, replicas, entry.clone()));
            }
            self.put(key, state);
            result?;
        }
        Ok(plan)
    }

    #[allow(clippy::too_many_arguments)]
    async fn plan_component(
        &self,
        client: &Client,
        cr: &PyroscopeCluster,
        names: &Names,
        c: Component,
        state: &mut ComponentState,
        metrics: &Metrics,
        plan: &mut Plan,
        admin_token: &str,
    ) -> Result<()> {
        let Some(spec) = scalable(cr, c) else { return Ok(()) };
        let Some(signal) = Signal::of(c) else { return Ok(()) };
        let settings = settings(&spec.autoscaling);
        let target = settings.target_or(signal.default_target());
        let workload = names.component(c);
        let now = (self.clock)();
        let now_s = now.as_secs();
        let ns = names.namespace.as_str();
        // The workload's replicas as they are; the spec's (bounded) before it exists.
        let live = match c {
            Component::SegmentWriter => Api::<StatefulSet>::namespaced(client.clone(), ns)
                .get_opt(&workload)
                .await?
                .and_then(|s| s.spec.and_then(|s| s.replicas)),
            _ => Api::<Deployment>::namespaced(client.clone(), ns)
                .get_opt(&workload)
                .await?
                .and_then(|d| d.spec.and_then(|s| s.replicas)),
        };
        let current = live.unwrap_or_else(|| {
            spec.replicas.clamp(settings.min_replicas.max(1), settings.max_replicas.max(settings.min_replicas.max(1)))
        });
        let pod_api: Api<Pod> = Api::namespaced(client.clone(), ns);
        let selector = names.selector(c).iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
        let pods: Vec<Pod> = pod_api.list(&ListParams::default().labels(&selector)).await?.items;
        let targets: Vec<PodTarget> = pods.iter().filter_map(pod_target).collect();
        let component = c.as_str();

        // An operator that restarted mid-drain finds the drain in the status
        // (the pod being drained) and finishes it: the writer is already out
        // of the placement and must not be left running drained.
        if !state.recovered {
            state.recovered = true;
            let draining = cr
                .status
                .as_ref()
                .and_then(|s| s.autoscaling.iter().find(|a| a.component == component))
                .and_then(|a| a.draining_pod.clone());
            if state.drain.is_none()
                && let Some(pod) = draining
                && let Some(t) = targets.iter().find(|t| t.name == pod)
            {
                if pod == format!("{workload}-{}", current - 1) {
                    info!(component, %pod, "resuming the drain recorded in the status");
                    state.drain = Some(DrainJob {
                        pod,
                        admin_url: t.admin_url.clone(),
                        from: current,
                        started: now,
                        reported_timeout: false,
                    });
                } else {
                    // The replicas changed since: the drained writer is no
                    // longer the one to remove. Undo the drain by restarting it.
                    warn!(component, %pod, "a drained writer is no longer the highest ordinal; restarting it");
                    if let Err(e) = pod_api.delete(&pod, &DeleteParams::default()).await {
                        warn!(%pod, error = %e, "cannot restart the drained writer");
                    }
                }
            }
        }

        // A writer being drained: wait for it, then remove exactly it.
        if let Some(job) = state.drain.clone() {
            let mut entry = AutoscalingStatus {
                component: component.to_owned(),
                current_replicas: current,
                desired_replicas: job.from - 1,
                metric: signal.description().to_owned(),
                value: None,
                target,
                reporting_pods: 0,
                reason: "Draining".to_owned(),
                message: format!("waiting for {} to drain before removing it", job.pod),
                last_scale_time: state.last_scale.as_ref().map(|l| l.0.clone()),
                last_scale_reason: state.last_scale.as_ref().map(|l| l.1.clone()),
                draining_pod: Some(job.pod.clone()),
            };
            if current != job.from {
                // Someone else changed the replicas: the drained pod would stay
                // useless, so it is restarted (the StatefulSet recreates it).
                warn!(pod = %job.pod, "replicas changed during a drain; restarting the drained writer");
                if let Err(e) = pod_api.delete(&job.pod, &DeleteParams::default()).await {
                    warn!(pod = %job.pod, error = %e, "cannot restart the drained writer");
                }
                state.drain = None;
                metrics.drains.with_label_values(&[component, "aborted"]).inc();
                plan.replicas.insert(c, current);
                entry.desired_replicas = current;
                entry.reason = "DrainAborted".to_owned();
                entry.message = format!("replicas changed to {current} during the drain of {}", job.pod);
                entry.draining_pod = None;
                plan.status.push(entry);
                return Ok(());
            }
            match drain::state(&self.http, &job.admin_url, admin_token).await {
                Ok(s) if s.drained => {
                    let to = job.from - 1;
                    let message = format!("{} drained: {} → {to} replicas", job.pod, job.from);
                    state.history.record_scale(now_s, job.from, to);
                    state.last_scale = Some((now_time(), message.clone()));
                    state.drain = None;
                    metrics.drains.with_label_values(&[component, "drained"]).inc();
                    metrics.scale_events.with_label_values(&[component, "down"]).inc();
                    plan.events.push((EventType::Normal, "ScaledDown".into(), format!("{component}: {message}")));
                    info!(component, pod = %job.pod, to, "writer drained; scaling in");
                    plan.replicas.insert(c, to);
                    entry.desired_replicas = to;
                    entry.reason = "ScaleDown".to_owned();
                    entry.message = message;
                    entry.last_scale_time = state.last_scale.as_ref().map(|l| l.0.clone());
                    entry.last_scale_reason = state.last_scale.as_ref().map(|l| l.1.clone());
                    entry.draining_pod = None;
                }
                other => {
                    if let Err(e) = &other {
                        metrics.fetch_errors.with_label_values(&[component]).inc();
                        warn!(pod = %job.pod, error = %e, "cannot read the drain state");
                    }
                    plan.replicas.insert(c, current);
                    if now.saturating_sub(job.started) >= self.drain_timeout {
                        entry.reason = "DrainTimeout".to_owned();
                        entry.message = format!(
                            "{} has not drained after {} s; it is kept until it does",
                            job.pod,
                            now.saturating_sub(job.started).as_secs()
                        );
                        if !job.reported_timeout {
                            metrics.drains.with_label_values(&[component, "timed_out"]).inc();
                            plan.events.push((
                                EventType::Warning,
                                "DrainTimeout".into(),
                                format!("{component}: {}", entry.message),
                            ));
                            if let Some(j) = state.drain.as_mut() {
                                j.reported_timeout = true;
                            }
                        }
                    }
                }
            }
            plan.status.push(entry);
            return Ok(());
        }

        // Read the load: Prometheus when the CR names one (pods as fallback).
        let mut reading = None;
        if let Some(p) = &spec.autoscaling.prometheus {
            let query = p.query.clone().unwrap_or_else(|| signal.prometheus_query(ns, &workload));
            match scrape::query_prometheus(&self.http, &p.url, &query).await {
                Ok(total) => {
                    let ready = targets.iter().filter(|t| t.ready).count() as i32;
                    reading = Some(Reading {
                        observation: (ready > 0)
                            .then_some(phlox_autoscaler::Observation { total, reporting_pods: ready }),
                        errors: Vec::new(),
                    });
                }
                Err(e) => {
                    metrics.fetch_errors.with_label_values(&[component]).inc();
                    warn!(component, error = %e, "cannot query Prometheus; reading the pods");
                }
            }
        }
        let reading = match reading {
            Some(r) => r,
            None => state.reader.scrape(&self.http, signal, &targets, now).await,
        };
        for e in &reading.errors {
            metrics.fetch_errors.with_label_values(&[component]).inc();
            warn!(component, error = %e, "cannot read a pod's load");
        }
        let decision: Decision = evaluate(&mut state.history, &settings, target, now_s, current, reading.observation);
        metrics.decisions.with_label_values(&[component, decision.reason.as_str()]).inc();
        let mut replicas = decision.desired;
        let mut reason = decision.reason.as_str().to_owned();
        let mut message = decision.message.clone();
        let mut draining_pod = None;
        if decision.desired > current {
            let m = decision.message.clone();
            state.history.record_scale(now_s, current, decision.desired);
            state.last_scale = Some((now_time(), m.clone()));
            metrics.scale_events.with_label_values(&[component, "up"]).inc();
            plan.events.push((EventType::Normal, "ScaledUp".into(), format!("{component}: {m}")));
        } else if decision.desired < current {
            if c == Component::SegmentWriter {
                // One writer at a time, the highest ordinal, drained first.
                replicas = current;
                let pod = format!("{workload}-{}", current - 1);
                match targets.iter().find(|t| t.name == pod) {
                    Some(t) => match drain::start(&self.http, &t.admin_url, admin_token).await {
                        Ok(_) => {
                            metrics.drains.with_label_values(&[component, "started"]).inc();
                            state.drain = Some(DrainJob {
                                pod: pod.clone(),
                                admin_url: t.admin_url.clone(),
                                from: current,
                                started: now,
                                reported_timeout: false,
                            });
                            reason = "Draining".to_owned();
                            message = format!("{}; draining {pod} before removing it", decision.message);
                            draining_pod = Some(pod.clone());
                            plan.events.push((
                                EventType::Normal,
                                "Draining".into(),
                                format!("{component}: draining {pod} before scaling in from {current}"),
                            ));
                        }
                        Err(e) => {
                            metrics.fetch_errors.with_label_values(&[component]).inc();
                            metrics.drains.with_label_values(&[component, "failed"]).inc();
                            reason = "DrainFailed".to_owned();
                            message = format!("cannot ask {pod} to drain: {e}");
                        }
                    },
                    None => {
                        reason = "DrainFailed".to_owned();
                        message = format!("{pod} has no address to drain it through");
                    }
                }
            } else {
                let m = decision.message.clone();
                state.history.record_scale(now_s, current, decision.desired);
                state.last_scale = Some((now_time(), m.clone()));
                metrics.scale_events.with_label_values(&[component, "down"]).inc();
                plan.events.push((EventType::Normal, "ScaledDown".into(), format!("{component}: {m}")));
            }
        }
        // Missing metrics are announced once, when they go missing.
        if decision.reason == Reason::MetricsMissing && state.last_reason.as_deref() != Some("MetricsMissing") {
            plan.events.push((EventType::Warning, "MetricsMissing".into(), format!("{component}: {message}")));
        }
        state.last_reason = Some(reason.clone());
        plan.replicas.insert(c, replicas);
        plan.status.push(AutoscalingStatus {
            component: component.to_owned(),
            current_replicas: current,
            desired_replicas: if draining_pod.is_some() { current - 1 } else { replicas },
            metric: signal.description().to_owned(),
            value: decision.per_pod.map(|v| (v * 1000.0).round() / 1000.0),
            target,
            reporting_pods: reading.observation.map_or(0, |o| o.reporting_pods),
            reason,
            message,
            last_scale_time: state.last_scale.as_ref().map(|l| l.0.clone()),
            last_scale_reason: state.last_scale.as_ref().map(|l| l.1.clone()),
            draining_pod,
        });
        Ok(())
    }
}
