//! The autoscaler in the controller, against an in-memory Kubernetes API
//! (kube-fake-client) whose pods point at test HTTP servers serving
//! `/metrics` and the segment writers' drain call: load drives the
//! workloads' replicas, the CR's spec is never written, status and Events
//! say why, and a writer that never drains blocks its removal and is
//! reported.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, PostParams};
use kube_fake_client::{ClientBuilder, interceptor};
use phlox_crds::v1alpha1::{AutoscalingStatus, PyroscopeCluster};
use phlox_operator::autoscale::Autoscaler;
use phlox_operator::{Context, Metrics, reconcile};
use serde_json::{Value, json};

const NS: &str = "phlox";

/// What a fake pod serves.
#[derive(Default)]
struct PodState {
    /// Query backends: leaves in flight (a gauge).
    inflight: Mutex<f64>,
    /// Segment writers: ingested bytes (a counter).
    ingested: Mutex<f64>,
    /// `/metrics` answers 500.
    broken: AtomicBool,
    draining: AtomicBool,
    /// Whether a drain completes.
    drains: AtomicBool,
    /// The `Authorization` of each drain call.
    drain_auth: Mutex<Vec<String>>,
}

impl PodState {
    fn record_auth(&self, headers: &axum::http::HeaderMap) {
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        self.drain_auth.lock().unwrap().push(auth);
    }
}

/// Serves `/metrics` and `/segment-writer/drain` for one pod (its http and
/// admin ports are the same); returns its port.
async fn serve(state: Arc<PodState>) -> u16 {
    let s1 = Arc::clone(&state);
    let s2 = Arc::clone(&state);
    let s3 = Arc::clone(&state);
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let s = Arc::clone(&s1);
                async move {
                    if s.broken.load(Ordering::SeqCst) {
                        return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, String::new());
                    }
                    let text = format!(
                        "# TYPE phlox_query_backend_inflight_leaves gauge\nphlox_query_backend_inflight_leaves {}\n\
                         phlox_query_backend_queued_leaves 0\n\
                         # TYPE phlox_segment_writer_ingested_bytes_total counter\n\
                         phlox_segment_writer_ingested_bytes_total {}\n",
                        *s.inflight.lock().unwrap(),
                        *s.ingested.lock().unwrap()
                    );
                    (axum::http::StatusCode::OK, text)
                }
            }),
        )
        .route(
            "/segment-writer/drain",
            get(move |headers: axum::http::HeaderMap| {
                let s = Arc::clone(&s2);
                async move {
                    s.record_auth(&headers);
                    let draining = s.draining.load(Ordering::SeqCst);
                    let drained = draining && s.drains.load(Ordering::SeqCst);
                    axum::Json(json!({"id": "w", "draining": draining, "drained": drained}))
                }
            })
            .post(move |headers: axum::http::HeaderMap| {
                let s = Arc::clone(&s3);
                async move {
                    s.record_auth(&headers);
                    s.draining.store(true, Ordering::SeqCst);
                    axum::Json(json!({"id": "w", "draining": true, "drained": false}))
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

fn cluster(autoscaling: Value) -> PyroscopeCluster {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/samples/pyroscopecluster-minimal.yaml"
    ))
    .unwrap();
    let mut v: Value = serde_yaml::from_str(&text).unwrap();
    v["metadata"]["uid"] = json!("6a1c1a3e-0d7a-4a59-9d1e-2f0c6f5b7c11");
    for (k, val) in autoscaling.as_object().unwrap() {
        v["spec"][k] = val.clone();
    }
    serde_json::from_value(v).unwrap()
}

type Writes = Arc<Mutex<Vec<String>>>;

struct Harness {
    client: Client,
    ctx: Arc<Context>,
    writes: Writes,
    clock: Arc<AtomicU64>,
}

impl Harness {
    async fn new(cr: PyroscopeCluster) -> Self {
        let writes: Writes = Arc::default();
        let (w1, w2, w3) = (writes.clone(), writes.clone(), writes.clone());
        let funcs = interceptor::Funcs::new()
            .create(move |ctx| {
                let kind = ctx.object["kind"].as_str().unwrap_or("?").to_owned();
                let note = ctx.object["note"].as_str().unwrap_or("").to_owned();
                let reason = ctx.object["reason"].as_str().unwrap_or("").to_owned();
                w1.lock().unwrap().push(format!("create {kind} {reason} {note}"));
                Ok(None)
            })
            .patch(move |ctx| {
                let name = ctx.patch["metadata"]["name"].as_str().unwrap_or("?");
                w2.lock().unwrap().push(format!("patch {}/{name}", ctx.patch["kind"].as_str().unwrap_or("?")));
                Ok(None)
            })
            .patch_status(move |ctx| {
                w3.lock().unwrap().push(format!("patch-status {}", ctx.name));
                Ok(None)
            });
        let client = ClientBuilder::new()
            .with_resource::<PyroscopeCluster>()
            .with_status_subresource::<PyroscopeCluster>()
            .with_status_subresource::<Deployment>()
            .with_status_subresource::<StatefulSet>()
            .with_object(cr)
            .with_interceptor_funcs(funcs)
            .build()
            .await
            .unwrap();
        let clock = Arc::new(AtomicU64::new(1000));
        let c = Arc::clone(&clock);
        let autoscaler = Autoscaler::with_clock(Arc::new(move || Duration::from_secs(c.load(Ordering::SeqCst))))
            .with_drain_timeout(Duration::from_secs(120));
        let ctx = Arc::new(
            Context::new(client.clone(), Metrics::new().unwrap(), Some("operator-0".into()))
                .with_autoscaler(autoscaler),
        );
        Self { client, ctx, writes, clock }
    }

    fn advance(&self, secs: u64) {
        self.clock.fetch_add(secs, Ordering::SeqCst);
    }

    async fn cr(&self) -> PyroscopeCluster {
        Api::<PyroscopeCluster>::namespaced(self.client.clone(), NS).get("phlox").await.unwrap()
    }

    async fn reconcile(&self) {
        let cr = self.cr().await;
        reconcile(Arc::new(cr), self.ctx.clone()).await.unwrap();
    }

    /// A ready pod of `component` whose address is a test server.
    async fn pod(&self, component: &str, name: &str) -> Arc<PodState> {
        let state = Arc::new(PodState::default());
        state.drains.store(true, Ordering::SeqCst);
        let port = serve(Arc::clone(&state)).await;
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": NS, "labels": {
                "app.kubernetes.io/name": "phlox", "app.kubernetes.io/instance": "phlox",
                "app.kubernetes.io/component": component}},
            "spec": {"containers": [{"name": "phlox", "image": "x",
                "ports": [{"name": "http", "containerPort": port}, {"name": "admin", "containerPort": port}]}]},
            "status": {"podIP": "127.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap();
        Api::<Pod>::namespaced(self.client.clone(), NS).create(&PostParams::default(), &pod).await.unwrap();
        state
    }

    async fn deployment_replicas(&self, name: &str) -> i32 {
        let d = Api::<Deployment>::namespaced(self.client.clone(), NS).get(name).await.unwrap();
        d.spec.unwrap().replicas.unwrap()
    }

    async fn statefulset_replicas(&self, name: &str) -> i32 {
        let s = Api::<StatefulSet>::namespaced(self.client.clone(), NS).get(name).await.unwrap();
        s.spec.unwrap().replicas.unwrap()
    }

    async fn scaling(&self, component: &str) -> AutoscalingStatus {
        let cr = self.cr().await;
        cr.status.unwrap().autoscaling.into_iter().find(|a| a.component == component).unwrap()
    }

    async fn condition(&self, type_: &str) -> (String, String) {
        let cr = self.cr().await;
        let c = cr.status.unwrap().conditions.into_iter().find(|c| c.type_ == type_).unwrap();
        (c.status, c.reason)
    }

    fn take_writes(&self) -> Vec<String> {
        std::mem::take(&mut *self.writes.lock().unwrap())
    }
}

fn spec_writes(writes: &[String]) -> Vec<&String> {
    writes.iter().filter(|w| w.starts_with("patch PyroscopeCluster") || w.contains("replace")).collect()
}

#[tokio::test]
async fn query_backends_follow_their_load_and_the_spec_is_never_written() {
    let cr = cluster(json!({"queryBackend": {"replicas": 1, "autoscaling": {
        "enabled": true, "minReplicas": 1, "maxReplicas": 6, "targetValue": 4,
        "scaleDownStabilizationWindowSeconds": 60, "maxScaleUpStep": 4, "maxScaleDownStep": 1}}}));
    let spec_before = cr.spec.clone();
    let h = Harness::new(cr).await;
    let pod = h.pod("query-backend", "phlox-query-backend-a").await;
    *pod.inflight.lock().unwrap() = 4.0;
    h.reconcile().await;
    assert_eq!(h.deployment_replicas("phlox-query-backend").await, 1);
    let s = h.scaling("query-backend").await;
    assert_eq!((s.current_replicas, s.desired_replicas, s.value, s.target), (1, 1, Some(4.0), 4.0));
    assert_eq!(h.condition("ScalingActive").await, ("True".into(), "ValidMetrics".into()));

    // Reconciles closer together than the 15 s sync period (owned objects
    // changing) reuse the last evaluation: a spike between them is not seen.
    *pod.inflight.lock().unwrap() = 40.0;
    for _ in 0..3 {
        h.advance(4);
        h.reconcile().await;
        assert_eq!(h.deployment_replicas("phlox-query-backend").await, 1);
    }
    assert_eq!(h.scaling("query-backend").await.value, Some(4.0), "the last evaluation, not a new scrape");
    h.advance(3); // 15 s after the first evaluation

    // 22 leaves on one pod: 5.5× the target → 6 replicas, at most 4 more per step.
    *pod.inflight.lock().unwrap() = 22.0;
    h.take_writes();
    h.reconcile().await;
    assert_eq!(h.deployment_replicas("phlox-query-backend").await, 5);
    let s = h.scaling("query-backend").await;
    assert_eq!((s.current_replicas, s.desired_replicas, s.reason.as_str()), (1, 5, "LimitedByStep"));
    assert!(s.last_scale_time.is_some());
    let writes = h.take_writes();
    assert!(writes.contains(&"patch Deployment/phlox-query-backend".to_owned()), "{writes:?}");
    assert!(writes.iter().any(|w| w.contains("ScaledUp") && w.contains("allows 5 (from 1)")), "{writes:?}");

    // The new pods come up and the load falls to one leaf per pod (a
    // quarter of the target): down one replica per 15 s, only once the 60 s
    // window no longer holds the high recommendation, to 2 (5 × 0.25).
    *pod.inflight.lock().unwrap() = 1.0;
    let mut others = Vec::new();
    for name in ["b", "c", "d", "e"] {
        let p = h.pod("query-backend", &format!("phlox-query-backend-{name}")).await;
        *p.inflight.lock().unwrap() = 1.0;
        others.push(p);
    }
    let mut series = Vec::new();
    for _ in 0..8 {
        h.advance(15);
        h.reconcile().await;
        series.push(h.deployment_replicas("phlox-query-backend").await);
    }
    assert_eq!(series, vec![5, 5, 5, 4, 3, 2, 2, 2], "stabilized, then one per period");
    // Two pods left, one leaf each: down to the minimum, and no further.
    for name in ["c", "d", "e"] {
        Api::<Pod>::namespaced(h.client.clone(), NS)
            .delete(&format!("phlox-query-backend-{name}"), &Default::default())
            .await
            .unwrap();
    }
    let mut series = Vec::new();
    for _ in 0..6 {
        h.advance(15);
        h.reconcile().await;
        series.push(h.deployment_replicas("phlox-query-backend").await);
    }
    assert_eq!(series, vec![2, 2, 2, 1, 1, 1], "{:?}", h.scaling("query-backend").await);
    assert_eq!(h.scaling("query-backend").await.reason, "Steady");
    // Every write went to the workloads and the status; never to the spec.
    let writes = h.take_writes();
    assert!(spec_writes(&writes).is_empty(), "{writes:?}");
    assert_eq!(h.cr().await.spec, spec_before);
    let metrics = h.ctx.metrics.render();
    assert!(metrics.contains("phlox_operator_scale_events_total{component=\"query-backend\",direction=\"down\"} 4"));
    assert!(metrics.contains("phlox_operator_scale_events_total{component=\"query-backend\",direction=\"up\"} 1"));
}

#[tokio::test]
async fn missing_metrics_hold_the_replicas_and_say_so() {
    let cr = cluster(json!({"queryBackend": {"replicas": 3, "autoscaling": {
        "enabled": true, "minReplicas": 1, "maxReplicas": 6, "targetValue": 4,
        "scaleDownStabilizationWindowSeconds": 0}}}));
    let h = Harness::new(cr).await;
    let pod = h.pod("query-backend", "phlox-query-backend-a").await;
    pod.broken.store(true, Ordering::SeqCst);
    for _ in 0..4 {
        h.reconcile().await;
        h.advance(15);
    }
    assert_eq!(h.deployment_replicas("phlox-query-backend").await, 3, "never down on missing data");
    let s = h.scaling("query-backend").await;
    assert_eq!((s.reason.as_str(), s.value, s.reporting_pods), ("MetricsMissing", None, 0));
    assert_eq!(h.condition("ScalingActive").await, ("False".into(), "MetricsMissing".into()));
    let writes = h.take_writes();
    assert_eq!(
        writes.iter().filter(|w| w.contains("Warning") || w.contains("MetricsMissing")).count(),
        1,
        "{writes:?}"
    );
    assert!(h.ctx.metrics.render().contains("phlox_operator_metric_fetch_errors_total{component=\"query-backend\"} 4"));
    // The metric comes back at zero load: down it goes.
    pod.broken.store(false, Ordering::SeqCst);
    h.reconcile().await;
    assert_eq!(h.deployment_replicas("phlox-query-backend").await, 2);
    assert_eq!(h.condition("ScalingActive").await, ("True".into(), "ValidMetrics".into()));
}

fn writers(min: i32) -> PyroscopeCluster {
    cluster(json!({"segmentWriter": {"replicas": 2, "autoscaling": {
        "enabled": true, "minReplicas": min, "maxReplicas": 4, "targetValue": 8,
        "scaleDownStabilizationWindowSeconds": 0}}}))
}

#[tokio::test]
async fn a_writer_is_drained_before_the_statefulset_loses_it() {
    let h = Harness::new(writers(1)).await;
    let w0 = h.pod("segment-writer", "phlox-segment-writer-0").await;
    let w1 = h.pod("segment-writer", "phlox-segment-writer-1").await;
    w1.drains.store(false, Ordering::SeqCst);
    // First scrape: counters only (no rate yet), so nothing moves.
    h.reconcile().await;
    assert_eq!(h.statefulset_replicas("phlox-segment-writer").await, 2);
    assert_eq!(h.scaling("segment-writer").await.reason, "MetricsMissing");
    // 1 MB/s per writer against a target of 8: one fewer. Writer 1 (the
    // highest ordinal) is asked to drain; replicas stay until it has.
    h.advance(15);
    *w0.ingested.lock().unwrap() += 15e6;
    *w1.ingested.lock().unwrap() += 15e6;
    h.take_writes();
    h.reconcile().await;
    assert!(w1.draining.load(Ordering::SeqCst));
    assert!(!w0.draining.load(Ordering::SeqCst));
    // The drain call carried the cluster's admin token, from the Secret the
    // operator made and the pods mount.
    let secret = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(h.client.clone(), NS)
        .get("phlox-admin-token")
        .await
        .unwrap();
    let token = String::from_utf8(secret.data.unwrap()["token"].0.clone()).unwrap();
    assert_eq!(token.len(), 64);
    assert_eq!(*w1.drain_auth.lock().unwrap(), vec![format!("Bearer {token}")]);
    assert_eq!(h.statefulset_replicas("phlox-segment-writer").await, 2);
    let s = h.scaling("segment-writer").await;
    assert_eq!(
        (s.reason.as_str(), s.draining_pod.as_deref(), s.current_replicas, s.desired_replicas),
        ("Draining", Some("phlox-segment-writer-1"), 2, 1)
    );
    assert_eq!(s.value, Some(1.0));
    let writes = h.take_writes();
    assert!(writes.iter().any(|w| w.contains("Draining") && w.contains("phlox-segment-writer-1")), "{writes:?}");
    // Not drained yet: still two.
    h.advance(15);
    h.reconcile().await;
    assert_eq!(h.statefulset_replicas("phlox-segment-writer").await, 2);
    // Drained: exactly it goes (StatefulSet ordinal order).
    w1.drains.store(true, Ordering::SeqCst);
    h.advance(15);
    h.take_writes();
    h.reconcile().await;
    assert_eq!(h.statefulset_replicas("phlox-segment-writer").await, 1);
    let s = h.scaling("segment-writer").await;
    assert_eq!((s.reason.as_str(), s.draining_pod), ("ScaleDown", None));
    assert!(s.last_scale_reason.unwrap().contains("phlox-segment-writer-1 drained: 2 → 1"));
    let writes = h.take_writes();
    assert!(writes.contains(&"patch StatefulSet/phlox-segment-writer".to_owned()), "{writes:?}");
    assert!(writes.iter().any(|w| w.contains("ScaledDown")), "{writes:?}");
    assert!(spec_writes(&writes).is_empty(), "{writes:?}");
}

#[tokio::test]
async fn a_writer_that_never_drains_blocks_its_removal_and_is_reported() {
    let h = Harness::new(writers(1)).await;
    let w0 = h.pod("segment-writer", "phlox-segment-writer-0").await;
    let w1 = h.pod("segment-writer", "phlox-segment-writer-1").await;
    w1.drains.store(false, Ordering::SeqCst);
    h.reconcile().await;
    h.advance(15);
    *w0.ingested.lock().unwrap() += 1e6;
    h.reconcile().await;
    assert!(w1.draining.load(Ordering::SeqCst));
    h.take_writes();
    // Past the 120 s drain timeout: still two replicas, reported.
    for _ in 0..10 {
        h.advance(15);
        h.reconcile().await;
    }
    assert_eq!(h.statefulset_replicas("phlox-segment-writer").await, 2);
    let s = h.scaling("segment-writer").await;
    assert_eq!(s.reason, "DrainTimeout");
    assert!(s.message.contains("phlox-segment-writer-1 has not drained"), "{}", s.message);
    assert_eq!(h.condition("ScalingActive").await, ("False".into(), "DrainTimeout".into()));
    let writes = h.take_writes();
    assert_eq!(writes.iter().filter(|w| w.contains("DrainTimeout")).count(), 1, "one Warning event: {writes:?}");
    assert!(!writes.iter().any(|w| w.starts_with("patch StatefulSet")), "{writes:?}");
}

/// A fake Prometheus answering every instant query with `value`; records the queries.
async fn prometheus(value: &'static str, queries: Arc<Mutex<Vec<String>>>) -> u16 {
    let app = Router::new().route(
        "/api/v1/query",
        get(move |q: axum::extract::Query<std::collections::HashMap<String, String>>| {
            let queries = Arc::clone(&queries);
            async move {
                queries.lock().unwrap().push(q.get("query").cloned().unwrap_or_default());
                axum::Json(json!({"status": "success", "data": {"resultType": "vector",
                    "result": [{"metric": {}, "value": [1_700_000_000.0, value]}]}}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

#[tokio::test]
async fn the_load_can_come_from_prometheus() {
    let queries = Arc::new(Mutex::new(Vec::new()));
    let port = prometheus("30", Arc::clone(&queries)).await;
    let cr = cluster(json!({"queryBackend": {"replicas": 1, "autoscaling": {
        "enabled": true, "minReplicas": 1, "maxReplicas": 6, "targetValue": 4,
        "prometheus": {"url": format!("http://127.0.0.1:{port}")}}}}));
    let h = Harness::new(cr).await;
    // The pod itself reports no load: only Prometheus's 30 leaves can scale up.
    h.pod("query-backend", "phlox-query-backend-a").await;
    h.reconcile().await;
    assert_eq!(h.deployment_replicas("phlox-query-backend").await, 5);
    let s = h.scaling("query-backend").await;
    assert_eq!((s.value, s.reporting_pods, s.reason.as_str()), (Some(30.0), 1, "LimitedByStep"));
    let q = queries.lock().unwrap().clone();
    assert_eq!(q.len(), 1);
    assert!(
        q[0].contains("phlox_query_backend_inflight_leaves{namespace=\"phlox\",pod=~\"phlox-query-backend-"),
        "{q:?}"
    );
}

/// Turning autoscaling off removes what the status said about it, and the
/// status then settles: later reconciles write nothing.
#[tokio::test]
async fn status_fields_that_no_longer_apply_are_removed() {
    let cr = cluster(json!({"queryBackend": {"replicas": 1, "autoscaling": {
        "enabled": true, "minReplicas": 1, "maxReplicas": 4, "targetValue": 4}}}));
    let h = Harness::new(cr).await;
    let pod = h.pod("query-backend", "phlox-query-backend-a").await;
    *pod.inflight.lock().unwrap() = 4.0;
    h.reconcile().await;
    let status = h.cr().await.status.unwrap();
    assert_eq!(status.scaling.and_then(|s| s.query_backend).as_deref(), Some("1/1"));
    assert_eq!(status.autoscaling.len(), 1);

    Api::<PyroscopeCluster>::namespaced(h.client.clone(), NS)
        .patch(
            "phlox",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(json!({"spec": {"queryBackend": {"autoscaling": {"enabled": false}}}})),
        )
        .await
        .unwrap();
    h.advance(15);
    h.reconcile().await;
    let status = h.cr().await.status.unwrap();
    assert_eq!(status.scaling, None, "the WRITERS/BACKENDS columns go away");
    assert!(status.autoscaling.is_empty());
    assert!(!status.conditions.iter().any(|c| c.type_ == "ScalingActive"));
    h.take_writes();
    h.advance(300);
    h.reconcile().await;
    let writes: Vec<String> = h.take_writes().into_iter().filter(|w| !w.contains(" Event/")).collect();
    assert!(writes.is_empty(), "a settled status is not written again: {writes:?}");
}

/// An operator restarted in the middle of a drain (its memory gone) reads
/// the drain from the status and finishes it: the drained writer goes.
#[tokio::test]
async fn a_drain_survives_an_operator_restart() {
    let h = Harness::new(writers(1)).await;
    let w0 = h.pod("segment-writer", "phlox-segment-writer-0").await;
    let w1 = h.pod("segment-writer", "phlox-segment-writer-1").await;
    w1.drains.store(false, Ordering::SeqCst);
    h.reconcile().await;
    h.advance(15);
    *w0.ingested.lock().unwrap() += 15e6;
    *w1.ingested.lock().unwrap() += 15e6;
    h.reconcile().await;
    assert!(w1.draining.load(Ordering::SeqCst));
    assert_eq!(h.scaling("segment-writer").await.draining_pod.as_deref(), Some("phlox-segment-writer-1"));

    // The operator restarts: a new context and autoscaler, no memory.
    let clock = Arc::clone(&h.clock);
    let autoscaler = Autoscaler::with_clock(Arc::new(move || Duration::from_secs(clock.load(Ordering::SeqCst))));
    let restarted = Arc::new(
        Context::new(h.client.clone(), Metrics::new().unwrap(), Some("operator-1".into())).with_autoscaler(autoscaler),
    );
    w1.drains.store(true, Ordering::SeqCst);
    h.advance(15);
    reconcile(Arc::new(h.cr().await), restarted).await.unwrap();
    assert_eq!(h.statefulset_replicas("phlox-segment-writer").await, 1, "the drained writer was removed");
    let s = h.scaling("segment-writer").await;
    assert_eq!((s.reason.as_str(), s.draining_pod), ("ScaleDown", None));
    assert!(!w0.draining.load(Ordering::SeqCst));
}
