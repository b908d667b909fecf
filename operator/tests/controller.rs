//! The reconciler against an in-memory Kubernetes API (kube-fake-client):
//! every child is created, changes touch exactly the affected children, a
//! deleted child comes back, a second reconcile writes nothing, and the
//! status tells the truth.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use kube_fake_client::{ClientBuilder, interceptor};
use phlox_crds::v1alpha1::PyroscopeCluster;
use phlox_operator::{Context, Metrics, reconcile};
use serde_json::{Value, json};

const NS: &str = "phlox";

/// Every write the operator makes: "verb kind/name".
type Writes = Arc<Mutex<Vec<String>>>;

fn sample() -> PyroscopeCluster {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../config/samples/pyroscopecluster-minimal.yaml"
    ))
    .unwrap();
    let mut cr: PyroscopeCluster = serde_yaml::from_str(&text).unwrap();
    cr.metadata.uid = Some("6a1c1a3e-0d7a-4a59-9d1e-2f0c6f5b7c11".into());
    cr
}

fn name_of(v: &Value) -> String {
    format!("{}/{}", v["kind"].as_str().unwrap_or("?"), v["metadata"]["name"].as_str().unwrap_or("?"))
}

async fn fake(cr: PyroscopeCluster, writes: Writes, fail_patches_of: Option<&'static str>) -> Client {
    let (w1, w2, w3, w4, w5, w6) =
        (writes.clone(), writes.clone(), writes.clone(), writes.clone(), writes.clone(), writes.clone());
    let funcs = interceptor::Funcs::new()
        .create(move |ctx| {
            w1.lock().unwrap().push(format!("create {}", name_of(ctx.object)));
            Ok(None)
        })
        .patch(move |ctx| {
            if let Some(kind) = fail_patches_of
                && ctx.patch["kind"] == kind
            {
                return Err(kube_fake_client::Error::Internal("injected failure".into()));
            }
            w2.lock().unwrap().push(format!("patch {}", name_of(ctx.patch)));
            Ok(None)
        })
        .patch_status(move |ctx| {
            w3.lock().unwrap().push(format!("patch-status {}", ctx.name));
            Ok(None)
        })
        .update(move |ctx| {
            w4.lock().unwrap().push(format!("update {}", name_of(ctx.object)));
            Ok(None)
        })
        .replace(move |ctx| {
            w5.lock().unwrap().push(format!("replace {}", ctx.name));
            Ok(None)
        })
        .delete(move |ctx| {
            w6.lock().unwrap().push(format!("delete {}", ctx.name));
            Ok(None)
        });
    ClientBuilder::new()
        .with_resource::<PyroscopeCluster>()
        .with_status_subresource::<PyroscopeCluster>()
        .with_status_subresource::<Deployment>()
        .with_status_subresource::<StatefulSet>()
        .with_object(cr)
        .with_interceptor_funcs(funcs)
        .build()
        .await
        .unwrap()
}

struct Harness {
    client: Client,
    ctx: Arc<Context>,
    writes: Writes,
}

impl Harness {
    async fn new(cr: PyroscopeCluster) -> Self {
        Self::with_failure(cr, None).await
    }

    async fn with_failure(cr: PyroscopeCluster, fail: Option<&'static str>) -> Self {
        let writes: Writes = Arc::default();
        let client = fake(cr, writes.clone(), fail).await;
        let ctx = Arc::new(Context::new(client.clone(), Metrics::new().unwrap(), Some("operator-0".into())));
        Self { client, ctx, writes }
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), NS)
    }

    async fn cr(&self) -> PyroscopeCluster {
        self.api::<PyroscopeCluster>().get("phlox").await.unwrap()
    }

    /// Reconciles once; returns the writes it made (events excluded), sorted.
    async fn reconcile(&self) -> Result<Vec<String>, phlox_operator::Error> {
        self.writes.lock().unwrap().clear();
        let r = reconcile(Arc::new(self.cr().await), self.ctx.clone()).await;
        let mut w: Vec<String> =
            self.writes.lock().unwrap().iter().filter(|w| !w.contains(" Event/")).cloned().collect();
        w.sort();
        r.map(|_| w)
    }

    fn events(&self) -> Vec<String> {
        self.writes.lock().unwrap().iter().filter(|w| w.contains(" Event/")).cloned().collect()
    }

    async fn names<K>(&self) -> Vec<String>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + std::fmt::Debug
            + serde::de::DeserializeOwned,
    {
        let mut n: Vec<String> =
            self.api::<K>().list(&ListParams::default()).await.unwrap().items.iter().map(|o| o.name_any()).collect();
        n.sort();
        n
    }

    async fn change_spec(&self, patch: Value) {
        self.api::<PyroscopeCluster>()
            .patch("phlox", &PatchParams::default(), &Patch::Merge(json!({ "spec": patch })))
            .await
            .unwrap();
    }

    /// Plays the workload controllers: every workload reports all replicas ready.
    async fn workloads_become_ready(&self) {
        for d in self.api::<Deployment>().list(&ListParams::default()).await.unwrap().items {
            let n = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let status = json!({"status": {"observedGeneration": d.metadata.generation, "replicas": n,
                "readyReplicas": n, "updatedReplicas": n, "availableReplicas": n}});
            self.api::<Deployment>()
                .patch_status(&d.name_any(), &PatchParams::default(), &Patch::Merge(status))
                .await
                .unwrap();
        }
        for s in self.api::<StatefulSet>().list(&ListParams::default()).await.unwrap().items {
            let n = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let status = json!({"status": {"observedGeneration": s.metadata.generation, "replicas": n,
                "readyReplicas": n, "updatedReplicas": n, "currentReplicas": n}});
            self.api::<StatefulSet>()
                .patch_status(&s.name_any(), &PatchParams::default(), &Patch::Merge(status))
                .await
                .unwrap();
        }
    }
}

impl Harness {
    /// Plays the workload controllers for one workload: all its replicas
    /// updated and ready at its current generation.
    async fn ready(&self, name: &str) {
        if let Some(d) = self.api::<Deployment>().get_opt(name).await.unwrap() {
            let n = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let status = json!({"status": {"observedGeneration": d.metadata.generation, "replicas": n,
                "readyReplicas": n, "updatedReplicas": n, "availableReplicas": n}});
            self.api::<Deployment>().patch_status(name, &PatchParams::default(), &Patch::Merge(status)).await.unwrap();
        } else {
            let s = self.api::<StatefulSet>().get(name).await.unwrap();
            let n = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let status = json!({"status": {"observedGeneration": s.metadata.generation, "replicas": n,
                "readyReplicas": n, "updatedReplicas": n, "currentReplicas": n}});
            self.api::<StatefulSet>().patch_status(name, &PatchParams::default(), &Patch::Merge(status)).await.unwrap();
        }
    }

    /// Workloads become ready and the operator reconciles until it has
    /// nothing left to write.
    async fn settle(&self) {
        for _ in 0..10 {
            self.workloads_become_ready().await;
            if self.reconcile().await.unwrap().iter().all(|w| w.starts_with("patch-status")) {
                return;
            }
        }
        panic!("the cluster did not settle within 10 reconciles");
    }

    async fn image_of(&self, name: &str) -> String {
        let template = match self.api::<Deployment>().get_opt(name).await.unwrap() {
            Some(d) => d.spec.unwrap().template,
            None => self.api::<StatefulSet>().get(name).await.unwrap().spec.unwrap().template,
        };
        template.spec.unwrap().containers[0].image.clone().unwrap()
    }
}

fn condition(cr: &PyroscopeCluster, type_: &str) -> (String, String) {
    let c = cr.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == type_).unwrap();
    (c.status.clone(), c.reason.clone())
}

#[tokio::test]
async fn creating_a_cluster_creates_every_child_with_an_owner() {
    let h = Harness::new(sample()).await;
    let writes = h.reconcile().await.unwrap();
    assert_eq!(
        writes,
        vec![
            "create Secret/phlox-admin-token",
            "patch ConfigMap/phlox-config",
            "patch Deployment/phlox-compaction-worker",
            "patch Deployment/phlox-distributor",
            "patch Deployment/phlox-query-backend",
            "patch Deployment/phlox-query-frontend",
            "patch NetworkPolicy/phlox",
            "patch Service/phlox-distributor",
            "patch Service/phlox-metastore",
            "patch Service/phlox-metastore-headless",
            "patch Service/phlox-query-backend",
            "patch Service/phlox-query-frontend",
            "patch Service/phlox-segment-writer-headless",
            "patch ServiceAccount/phlox",
            "patch StatefulSet/phlox-metastore",
            "patch StatefulSet/phlox-segment-writer",
            "patch-status phlox",
        ]
    );
    assert_eq!(h.names::<ServiceAccount>().await, vec!["phlox"]);
    assert_eq!(h.names::<ConfigMap>().await, vec!["phlox-config"]);
    assert_eq!(h.names::<Service>().await.len(), 6);
    assert_eq!(h.names::<StatefulSet>().await, vec!["phlox-metastore", "phlox-segment-writer"]);
    assert_eq!(
        h.names::<Deployment>().await,
        vec!["phlox-compaction-worker", "phlox-distributor", "phlox-query-backend", "phlox-query-frontend"]
    );
    assert!(h.names::<PodDisruptionBudget>().await.is_empty(), "no PDB for single-pod components");
    let uid = sample().metadata.uid.unwrap();
    for d in h.api::<Deployment>().list(&ListParams::default()).await.unwrap().items {
        let owner = &d.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
            ("PyroscopeCluster", uid.as_str(), Some(true))
        );
    }
    // Status: generation observed, not ready yet, rolling out, not degraded.
    let cr = h.cr().await;
    let status = cr.status.as_ref().unwrap();
    assert_eq!(status.observed_generation, cr.metadata.generation);
    assert_eq!(status.components.len(), 6);
    assert_eq!(status.components_ready.as_deref(), Some("0/6"));
    assert_eq!(condition(&cr, "Ready"), ("False".into(), "ComponentsNotReady".into()));
    assert_eq!(condition(&cr, "Progressing"), ("True".into(), "RollingOut".into()));
    assert_eq!(condition(&cr, "Degraded"), ("False".into(), "AsExpected".into()));
    // An event per created child.
    assert_eq!(h.events().len(), 15, "{:?}", h.events());
    // The admin token: made once, owned by the cluster, kept on later reconciles.
    let secret = h.api::<k8s_openapi::api::core::v1::Secret>().get("phlox-admin-token").await.unwrap();
    assert_eq!(secret.metadata.owner_references.as_ref().map(Vec::len), Some(1));
    let token = secret.data.as_ref().unwrap()["token"].clone();
    assert_eq!(token.0.len(), 64);
    let again = h.reconcile().await.unwrap();
    assert!(!again.iter().any(|w| w.contains("Secret")), "{again:?}");
    let same = h.api::<k8s_openapi::api::core::v1::Secret>().get("phlox-admin-token").await.unwrap();
    assert_eq!(same.data.unwrap()["token"], token);
}

#[tokio::test]
async fn a_second_reconcile_issues_no_writes() {
    let h = Harness::new(sample()).await;
    h.reconcile().await.unwrap();
    assert_eq!(h.reconcile().await.unwrap(), Vec::<String>::new());
    assert!(h.events().is_empty());
    // Also once everything is ready and the status settled.
    h.workloads_become_ready().await;
    assert_eq!(h.reconcile().await.unwrap(), vec!["patch-status phlox"]);
    assert_eq!(h.reconcile().await.unwrap(), Vec::<String>::new());
}

#[tokio::test]
async fn changes_update_exactly_the_affected_children() {
    let h = Harness::new(sample()).await;
    h.reconcile().await.unwrap();

    // Replicas: one workload, and its PDB appears (two pods or more).
    h.change_spec(json!({"queryBackend": {"replicas": 3}})).await;
    assert_eq!(
        h.reconcile().await.unwrap(),
        vec![
            "patch Deployment/phlox-query-backend",
            "patch PodDisruptionBudget/phlox-query-backend",
            "patch-status phlox"
        ]
    );
    let d = h.api::<Deployment>().get("phlox-query-backend").await.unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(3));
    let pdb = h.api::<PodDisruptionBudget>().get("phlox-query-backend").await.unwrap();
    assert_eq!(
        pdb.spec.unwrap().max_unavailable,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1))
    );

    // Back to one pod: the PDB goes away.
    h.change_spec(json!({"queryBackend": {"replicas": 1}})).await;
    assert_eq!(
        h.reconcile().await.unwrap(),
        vec!["delete phlox-query-backend", "patch Deployment/phlox-query-backend", "patch-status phlox"]
    );
    assert!(h.names::<PodDisruptionBudget>().await.is_empty());

    // Image: the first step of the ordered rollout (the workloads are not
    // ready, so the later steps wait); then, step by step, every workload.
    h.change_spec(json!({"image": "ghcr.io/phlox-dev/phlox:0.2.0"})).await;
    assert_eq!(
        h.reconcile().await.unwrap(),
        vec!["patch Deployment/phlox-compaction-worker", "patch Deployment/phlox-query-backend", "patch-status phlox",]
    );
    h.settle().await;
    let sts = h.api::<StatefulSet>().get("phlox-metastore").await.unwrap();
    let image = sts.spec.unwrap().template.spec.unwrap().containers[0].image.clone();
    assert_eq!(image.as_deref(), Some("ghcr.io/phlox-dev/phlox:0.2.0"));

    // Config: the ConfigMap, and every workload rolls (config hash), in order.
    let hash_before = pod_annotation(&h, "phlox-distributor").await;
    h.change_spec(json!({"limits": {"ingestionRateMb": 32}})).await;
    let w = h.reconcile().await.unwrap();
    assert_eq!(
        w,
        vec![
            "patch ConfigMap/phlox-config",
            "patch Deployment/phlox-compaction-worker",
            "patch Deployment/phlox-query-backend",
            "patch-status phlox",
        ]
    );
    assert_eq!(pod_annotation(&h, "phlox-distributor").await, hash_before, "held until the backends are ready");
    h.settle().await;
    assert_ne!(pod_annotation(&h, "phlox-distributor").await, hash_before);
    let cm = h.api::<ConfigMap>().get("phlox-config").await.unwrap();
    assert!(cm.data.unwrap()["phlox.yaml"].contains("ingestion_rate_mb: 32.0"));

    // Per-tenant overrides are reloaded live: the ConfigMap only, no roll.
    h.change_spec(json!({"overrides": {"team-a": {"ingestionRateMb": 64}}})).await;
    assert_eq!(h.reconcile().await.unwrap(), vec!["patch ConfigMap/phlox-config", "patch-status phlox"]);
}

async fn pod_annotation(h: &Harness, deployment: &str) -> String {
    let d = h.api::<Deployment>().get(deployment).await.unwrap();
    d.spec.unwrap().template.metadata.unwrap().annotations.unwrap()[phlox_operator::CONFIG_HASH_ANNOTATION].clone()
}

#[tokio::test]
async fn a_deleted_child_is_restored() {
    let h = Harness::new(sample()).await;
    h.reconcile().await.unwrap();
    h.api::<Deployment>().delete("phlox-distributor", &DeleteParams::default()).await.unwrap();
    h.api::<Service>().delete("phlox-metastore-headless", &DeleteParams::default()).await.unwrap();
    let w = h.reconcile().await.unwrap();
    assert!(w.contains(&"patch Deployment/phlox-distributor".to_owned()), "{w:?}");
    assert!(w.contains(&"patch Service/phlox-metastore-headless".to_owned()), "{w:?}");
    assert_eq!(w.iter().filter(|w| w.starts_with("patch ")).count(), 2, "{w:?}");
    assert!(h.api::<Deployment>().get_opt("phlox-distributor").await.unwrap().is_some());
    assert!(h.events().iter().any(|e| e.contains("Event/")), "a Created event");
}

#[tokio::test]
async fn status_reports_ready_when_every_workload_is() {
    let h = Harness::new(sample()).await;
    h.reconcile().await.unwrap();
    h.workloads_become_ready().await;
    h.reconcile().await.unwrap();
    let cr = h.cr().await;
    assert_eq!(condition(&cr, "Ready"), ("True".into(), "AllComponentsReady".into()));
    assert_eq!(condition(&cr, "Progressing"), ("False".into(), "Stable".into()));
    assert_eq!(condition(&cr, "Degraded"), ("False".into(), "AsExpected".into()));
    let status = cr.status.unwrap();
    assert_eq!(status.components_ready.as_deref(), Some("6/6"));
    let metastore = status.components.iter().find(|c| c.name == "metastore").unwrap();
    assert_eq!((metastore.kind.as_str(), metastore.desired_replicas, metastore.ready_replicas), ("StatefulSet", 1, 1));
    // The status is server-side applied under its own field manager.
    let managers: Vec<(String, String, String)> = cr
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .map(|m| {
            (
                m.manager.clone().unwrap_or_default(),
                m.operation.clone().unwrap_or_default(),
                m.subresource.clone().unwrap_or_default(),
            )
        })
        .collect();
    assert!(managers.contains(&("phlox-operator-status".into(), "Apply".into(), "status".into())), "{managers:?}");

    // A spec change: observedGeneration follows, the changed workload is rolling out.
    h.change_spec(json!({"distributor": {"replicas": 2}})).await;
    h.reconcile().await.unwrap();
    let cr = h.cr().await;
    assert_eq!(cr.status.as_ref().unwrap().observed_generation, cr.metadata.generation);
    assert_eq!(condition(&cr, "Ready").0, "False");
    assert_eq!(condition(&cr, "Progressing"), ("True".into(), "RollingOut".into()));
}

#[tokio::test]
async fn a_failing_apply_degrades_the_cluster_and_backs_off() {
    let h = Harness::with_failure(sample(), Some("Deployment")).await;
    let err = h.reconcile().await.unwrap_err();
    assert_eq!(err.reason(), "ChildRefused");
    // Every other child was still applied.
    let written: Vec<String> = h.writes.lock().unwrap().iter().filter(|w| w.starts_with("patch ")).cloned().collect();
    for child in [
        "patch ConfigMap/phlox-config",
        "patch ServiceAccount/phlox",
        "patch Service/phlox-distributor",
        "patch StatefulSet/phlox-metastore",
        "patch StatefulSet/phlox-segment-writer",
    ] {
        assert!(written.contains(&child.to_owned()), "{child} not applied: {written:?}");
    }
    assert!(!written.iter().any(|w| w.contains("Deployment/")));
    assert_eq!(h.names::<StatefulSet>().await, vec!["phlox-metastore", "phlox-segment-writer"]);
    let cr = h.cr().await;
    assert_eq!(condition(&cr, "Degraded"), ("True".into(), "ChildRefused".into()));
    let degraded = cr.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == "Degraded").unwrap();
    assert!(
        degraded.message.contains("Deployment phlox-distributor") && degraded.message.contains("injected failure"),
        "{}",
        degraded.message
    );
    assert!(h.events().iter().any(|e| e.contains("Event/")), "a warning event per refused child");
    assert_eq!(condition(&cr, "Ready").0, "False");
    let cr = Arc::new(cr);
    let delays: Vec<u64> = (0..3)
        .map(|_| {
            let a = phlox_operator::error_policy(cr.clone(), &err, h.ctx.clone());
            format!("{a:?}").chars().filter(char::is_ascii_digit).collect::<String>().parse().unwrap_or(0)
        })
        .collect();
    assert!(delays[0] < delays[1] && delays[1] < delays[2], "{delays:?}");
    assert_eq!(phlox_operator::backoff(1).as_secs(), 5);
    assert_eq!(phlox_operator::backoff(2).as_secs(), 10);
    assert_eq!(phlox_operator::backoff(30).as_secs(), 300);
    let metrics = h.ctx.metrics.render();
    assert!(metrics.contains("phlox_operator_reconcile_errors_total{reason=\"ChildRefused\"} 1"), "{metrics}");
}

#[tokio::test]
async fn metrics_and_health_are_served() {
    use tower::ServiceExt;
    let metrics = Metrics::new().unwrap();
    metrics.reconciles.with_label_values(&["ok"]).inc();
    let app = phlox_operator::router(metrics);
    let get = |path: &str| axum::http::Request::builder().uri(path).body(axum::body::Body::empty()).unwrap();
    let r = app.clone().oneshot(get("/healthz")).await.unwrap();
    assert_eq!(r.status(), 200);
    let r = app.oneshot(get("/metrics")).await.unwrap();
    let body = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    let text = String::from_utf8(body.to_vec()).unwrap();
    assert!(text.contains("phlox_operator_reconciles_total{result=\"ok\"} 1"), "{text}");
    assert!(text.contains("phlox_operator_reconcile_duration_seconds"), "{text}");
}

/// `kubectl scale` and `kubectl edit` on an owned object are reverted by the
/// next reconcile; nothing else is written.
#[tokio::test]
async fn drift_on_an_owned_object_is_reverted() {
    let h = Harness::new(sample()).await;
    h.reconcile().await.unwrap();
    h.api::<Deployment>()
        .patch("phlox-distributor", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 5}})))
        .await
        .unwrap();
    h.api::<Service>()
        .patch(
            "phlox-query-backend",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"clusterIP": "10.0.0.9"}})),
        )
        .await
        .unwrap();
    let w = h.reconcile().await.unwrap();
    assert_eq!(w, vec!["patch Deployment/phlox-distributor", "patch Service/phlox-query-backend"], "{w:?}");
    let d = h.api::<Deployment>().get("phlox-distributor").await.unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(1));
    let s = h.api::<Service>().get("phlox-query-backend").await.unwrap();
    assert_eq!(s.spec.unwrap().cluster_ip.as_deref(), Some("None"));
    // Fields the operator does not set may be added by others without a write.
    h.api::<Deployment>()
        .patch(
            "phlox-distributor",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"example.com/note": "hi"}}})),
        )
        .await
        .unwrap();
    assert_eq!(h.reconcile().await.unwrap(), Vec::<String>::new());
}

/// An existing object with a child's name that this cluster does not own is
/// reported and left alone; every other child is reconciled.
#[tokio::test]
async fn a_foreign_object_is_not_adopted() {
    let h = Harness::new(sample()).await;
    let foreign = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some("phlox-config".into()),
            namespace: Some(NS.into()),
            ..Default::default()
        },
        data: Some([("phlox.yaml".to_owned(), "someone else's".to_owned())].into_iter().collect()),
        ..Default::default()
    };
    h.api::<ConfigMap>().create(&Default::default(), &foreign).await.unwrap();
    let err = h.reconcile().await.unwrap_err();
    assert_eq!(err.reason(), "ChildRefused");
    assert!(err.to_string().contains("ConfigMap phlox-config") && err.to_string().contains("not owned"), "{err}");
    let cm = h.api::<ConfigMap>().get("phlox-config").await.unwrap();
    assert_eq!(cm.data.as_ref().unwrap()["phlox.yaml"], "someone else's");
    assert!(cm.owner_references().is_empty());
    assert_eq!(h.names::<StatefulSet>().await, vec!["phlox-metastore", "phlox-segment-writer"]);
    let cr = h.cr().await;
    assert_eq!(condition(&cr, "Degraded"), ("True".into(), "ChildRefused".into()));
}

/// A metastore group as its voters' `/metastore/membership` answer it:
/// node 1 leads; a POST to it sets the voters (unless told to refuse), a
/// POST to another voter is refused naming the leader.
#[derive(Default)]
struct FakeGroup {
    voters: Mutex<std::collections::BTreeMap<u64, String>>,
    changes: Mutex<Vec<Vec<u64>>>,
    refuse: std::sync::atomic::AtomicBool,
}

/// Whether a call carries an admin token as the operator makes them
/// (`Bearer` and 64 hex digits); the real check is the data plane's.
fn has_admin_token(headers: &axum::http::HeaderMap) -> bool {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("");
    auth.strip_prefix("Bearer ").is_some_and(|t| t.len() == 64 && t.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Serves voter `node` of `group` (its http and admin ports are the same;
/// membership calls without the admin token are refused); returns its port.
async fn serve_voter(group: Arc<FakeGroup>, node: u64) -> u16 {
    use axum::routing::get;
    let get_group = Arc::clone(&group);
    let app = axum::Router::new().route(
        "/metastore/membership",
        get(move |headers: axum::http::HeaderMap| {
            let g = Arc::clone(&get_group);
            async move {
                if !has_admin_token(&headers) {
                    return (axum::http::StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "no admin token"})));
                }
                let voters = g.voters.lock().unwrap().clone();
                let joined = voters.contains_key(&node);
                let body = json!({"node_id": node, "leader": joined.then_some(1), "voters": voters, "learners": {}});
                (axum::http::StatusCode::OK, axum::Json(body))
            }
        })
        .post(move |headers: axum::http::HeaderMap, axum::Json(body): axum::Json<Value>| {
            let g = Arc::clone(&group);
            async move {
                use axum::http::StatusCode;
                if !has_admin_token(&headers) {
                    return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": "no admin token"})));
                }
                if node != 1 {
                    return (StatusCode::CONFLICT, axum::Json(json!({"error": "not the leader", "leader": 1})));
                }
                if g.refuse.load(std::sync::atomic::Ordering::SeqCst) {
                    let e = json!({"error": "timed out waiting for a new voter to catch up with the leader"});
                    return (StatusCode::GATEWAY_TIMEOUT, axum::Json(e));
                }
                let voters: std::collections::BTreeMap<u64, String> =
                    serde_json::from_value(body["voters"].clone()).unwrap();
                g.changes.lock().unwrap().push(voters.keys().copied().collect());
                *g.voters.lock().unwrap() = voters.clone();
                (StatusCode::OK, axum::Json(json!({"node_id": 1, "leader": 1, "voters": voters, "learners": {}})))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    port
}

impl Harness {
    /// A running metastore pod (ordinal `node - 1`) answering for `group`.
    async fn voter_pod(&self, group: &Arc<FakeGroup>, node: u64) {
        use k8s_openapi::api::core::v1::Pod;
        let port = serve_voter(Arc::clone(group), node).await;
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("phlox-metastore-{}", node - 1), "namespace": NS, "labels": {
                "app.kubernetes.io/name": "phlox", "app.kubernetes.io/instance": "phlox",
                "app.kubernetes.io/component": "metastore"}},
            "spec": {"containers": [{"name": "phlox", "image": "x",
                "ports": [{"name": "http", "containerPort": port}, {"name": "admin", "containerPort": port}]}]},
            "status": {"podIP": "127.0.0.1", "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap();
        self.api::<Pod>().create(&Default::default(), &pod).await.unwrap();
    }

    async fn metastore_replicas(&self) -> i32 {
        self.api::<StatefulSet>().get("phlox-metastore").await.unwrap().spec.unwrap().replicas.unwrap()
    }

    async fn peers(&self) -> String {
        let cm = self.api::<ConfigMap>().get("phlox-config").await.unwrap();
        let doc: serde_yaml::Value = serde_yaml::from_str(&cm.data.unwrap()["phlox.yaml"]).unwrap();
        doc["metastore"]["peers"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The advertised address of voter `ordinal`.
fn voter_address(ordinal: u32) -> String {
    format!("phlox-metastore-{ordinal}.phlox-metastore-headless.phlox.svc:9095")
}

/// Its entry in the config's peer list.
fn peer(ordinal: u32) -> String {
    format!("{}={}", ordinal + 1, voter_address(ordinal))
}

/// 1 → 3 voters: a stale claim of an earlier third voter is deleted, the
/// StatefulSet and the peer list grow (no pod rolls), and once the new pods
/// run, the leader is asked to make them voters; the status follows.
#[tokio::test]
async fn growing_the_voters_adds_them_through_the_leader() {
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;
    let h = Harness::new(sample()).await;
    h.reconcile().await.unwrap();
    h.settle().await;
    assert_eq!(h.cr().await.status.unwrap().metastore_voters, Some(1));
    let group = Arc::new(FakeGroup::default());
    group.voters.lock().unwrap().insert(1, voter_address(0));
    h.voter_pod(&group, 1).await;
    h.api::<PersistentVolumeClaim>().create(&Default::default(), &metastore_claim(2, "10Gi")).await.unwrap();
    let config_hash = pod_annotation(&h, "phlox-distributor").await;

    h.change_spec(json!({"metastore": {"voters": 3}})).await;
    let w = h.reconcile().await.unwrap();
    assert!(w.contains(&"delete data-phlox-metastore-2".to_owned()), "a removed voter's old log goes: {w:?}");
    assert_eq!(h.metastore_replicas().await, 3);
    assert_eq!(h.peers().await, [peer(0), peer(1), peer(2)].join(","));
    assert_eq!(pod_annotation(&h, "phlox-distributor").await, config_hash, "no pod rolls for the peer list");
    assert!(group.changes.lock().unwrap().is_empty(), "not before the new pods run");
    let status = h.cr().await.status.unwrap();
    assert_eq!(status.metastore_voters, Some(1));
    assert!(status.rollout.unwrap().contains("metastore voters 1 → 3: starting the new voters"));

    // The new pods run (and know no leader yet): the leader adds them.
    h.voter_pod(&group, 2).await;
    h.voter_pod(&group, 3).await;
    h.reconcile().await.unwrap();
    assert_eq!(*group.changes.lock().unwrap(), vec![vec![1, 2, 3]]);
    assert_eq!(group.voters.lock().unwrap().get(&3), Some(&voter_address(2)));
    let status = h.cr().await.status.unwrap();
    assert_eq!(status.metastore_voters, Some(3));
    assert_eq!(status.rollout, None);
    assert!(h.events().iter().any(|e| e.contains("Event/")));
    // Done: no more calls, no more writes once settled.
    h.settle().await;
    assert_eq!(h.reconcile().await.unwrap(), Vec::<String>::new());
    assert_eq!(group.changes.lock().unwrap().len(), 1);
}

/// 3 → 1 voters: the pods stay while the leader has not removed the other
/// two from the membership (here it refuses at first); then the
/// StatefulSet goes down to one pod.
#[tokio::test]
async fn shrinking_the_voters_removes_them_from_the_membership_before_the_pods() {
    let mut cr = sample();
    cr.spec.metastore.voters = 3;
    let h = Harness::new(cr).await;
    h.reconcile().await.unwrap();
    h.settle().await;
    let group = Arc::new(FakeGroup::default());
    group.voters.lock().unwrap().extend([(1, voter_address(0)), (2, voter_address(1)), (3, voter_address(2))]);
    for node in [3, 2, 1] {
        h.voter_pod(&group, node).await;
    }
    group.refuse.store(true, std::sync::atomic::Ordering::SeqCst);
    h.change_spec(json!({"metastore": {"voters": 1}})).await;
    h.reconcile().await.unwrap();
    assert_eq!(h.metastore_replicas().await, 3, "every voter stays while the membership has them");
    let rollout = h.cr().await.status.unwrap().rollout.unwrap();
    assert!(rollout.contains("metastore voters 3 → 1") && rollout.contains("HTTP 504"), "{rollout}");

    group.refuse.store(false, std::sync::atomic::Ordering::SeqCst);
    h.reconcile().await.unwrap();
    assert_eq!(*group.changes.lock().unwrap(), vec![vec![1]]);
    assert_eq!(h.metastore_replicas().await, 1);
    assert_eq!(h.peers().await, peer(0));
    assert_eq!(h.cr().await.status.unwrap().metastore_voters, Some(1));
}

/// `spec.paused` stops every change to children (spec changes, drift and
/// deletions wait); the status keeps reporting. Unpausing applies what waited.
#[tokio::test]
async fn a_paused_cluster_changes_no_child() {
    let h = Harness::new(sample()).await;
    h.reconcile().await.unwrap();
    h.change_spec(json!({"paused": true, "queryBackend": {"replicas": 3}, "image": "ghcr.io/phlox-dev/phlox:0.2.0"}))
        .await;
    h.api::<Deployment>().delete("phlox-distributor", &DeleteParams::default()).await.unwrap();
    let writes = h.reconcile().await.unwrap();
    assert_eq!(writes, vec!["patch-status phlox"], "only the status: {writes:?}");
    let d = h.api::<Deployment>().get("phlox-query-backend").await.unwrap();
    assert_eq!(d.spec.unwrap().replicas, Some(1));
    assert!(h.api::<Deployment>().get_opt("phlox-distributor").await.unwrap().is_none());
    let cr = h.cr().await;
    assert_eq!(condition(&cr, "Paused"), ("True".into(), "PausedBySpec".into()));
    assert_eq!(cr.status.as_ref().unwrap().components.len(), 5, "the five workloads still there");
    // Still paused: nothing at all.
    assert_eq!(h.reconcile().await.unwrap(), Vec::<String>::new());

    h.change_spec(json!({"paused": false})).await;
    let writes = h.reconcile().await.unwrap();
    assert!(writes.contains(&"patch Deployment/phlox-distributor".to_owned()), "{writes:?}");
    assert!(writes.contains(&"patch Deployment/phlox-query-backend".to_owned()), "{writes:?}");
    assert_eq!(h.api::<Deployment>().get("phlox-query-backend").await.unwrap().spec.unwrap().replicas, Some(3));
    let cr = h.cr().await;
    assert!(!cr.status.unwrap().conditions.iter().any(|c| c.type_ == "Paused"));
}

/// An image change rolls out step by step: query backends and compaction
/// workers, then the metastore, then the segment writers, then distributors
/// and frontends; each step waits until the previous one runs the new
/// template on every replica, ready. The status records the version.
#[tokio::test]
async fn an_upgrade_rolls_out_in_order_each_step_waiting_for_the_previous() {
    const OLD: &str = "ghcr.io/phlox-dev/phlox:0.1.0";
    const NEW: &str = "ghcr.io/phlox-dev/phlox:0.2.0";
    let mut cr = sample();
    cr.spec.image = OLD.into();
    let h = Harness::new(cr).await;
    h.reconcile().await.unwrap();
    h.settle().await;
    assert_eq!(h.cr().await.status.unwrap().version.as_deref(), Some(OLD));

    let all = [
        "phlox-query-backend",
        "phlox-compaction-worker",
        "phlox-metastore",
        "phlox-segment-writer",
        "phlox-distributor",
        "phlox-query-frontend",
    ];
    let images = || async {
        let mut out = Vec::new();
        for w in all {
            out.push(if h.image_of(w).await == NEW { "new" } else { "old" });
        }
        out
    };

    h.change_spec(json!({"image": NEW})).await;
    // Step 1: the readers.
    assert_eq!(
        h.reconcile().await.unwrap(),
        vec!["patch Deployment/phlox-compaction-worker", "patch Deployment/phlox-query-backend", "patch-status phlox"]
    );
    assert_eq!(images().await, ["new", "new", "old", "old", "old", "old"]);
    let status = h.cr().await.status.unwrap();
    assert_eq!(status.version.as_deref(), Some(OLD), "still the running version");
    let rollout = status.rollout.unwrap();
    assert_eq!(
        rollout,
        "metastore waiting for query-backend to roll out, compaction-worker to roll out; \
         segment-writer waiting for metastore to roll out; \
         distributor waiting for segment-writer to roll out; \
         query-frontend waiting for segment-writer to roll out"
    );
    // Nothing ready yet: nothing more.
    assert_eq!(h.reconcile().await.unwrap(), Vec::<String>::new());
    // One of the two ready: still waiting.
    h.ready("phlox-query-backend").await;
    let w = h.reconcile().await.unwrap();
    assert!(w.iter().all(|w| w == "patch-status phlox"), "{w:?}");
    let rollout = h.cr().await.status.unwrap().rollout.unwrap();
    assert!(rollout.starts_with("metastore waiting for compaction-worker to roll out;"), "{rollout}");
    assert_eq!(images().await, ["new", "new", "old", "old", "old", "old"]);

    // Step 2: the metastore, once both readers are ready.
    h.ready("phlox-compaction-worker").await;
    let w = h.reconcile().await.unwrap();
    assert!(w.contains(&"patch StatefulSet/phlox-metastore".to_owned()), "{w:?}");
    assert_eq!(w.iter().filter(|w| w.starts_with("patch ")).count(), 1, "{w:?}");
    assert_eq!(images().await, ["new", "new", "new", "old", "old", "old"]);
    // The metastore StatefulSet rolls its voters one at a time (a voter is
    // ready when its Raft group is healthy): its update strategy says so.
    let sts = h.api::<StatefulSet>().get("phlox-metastore").await.unwrap();
    let strategy = sts.spec.unwrap().update_strategy.unwrap();
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    let max_unavailable = strategy.rolling_update.and_then(|r| r.max_unavailable);
    assert_eq!(max_unavailable, Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(1)));
    h.reconcile().await.unwrap();
    assert_eq!(images().await, ["new", "new", "new", "old", "old", "old"], "waits for the metastore");

    // Step 3: the segment writers.
    h.ready("phlox-metastore").await;
    let w = h.reconcile().await.unwrap();
    assert!(w.contains(&"patch StatefulSet/phlox-segment-writer".to_owned()), "{w:?}");
    assert_eq!(w.iter().filter(|w| w.starts_with("patch ")).count(), 1, "{w:?}");
    assert_eq!(images().await, ["new", "new", "new", "new", "old", "old"]);

    // Step 4: distributors and frontends.
    h.ready("phlox-segment-writer").await;
    let w = h.reconcile().await.unwrap();
    assert!(w.contains(&"patch Deployment/phlox-distributor".to_owned()), "{w:?}");
    assert!(w.contains(&"patch Deployment/phlox-query-frontend".to_owned()), "{w:?}");
    assert_eq!(w.iter().filter(|w| w.starts_with("patch ")).count(), 2, "{w:?}");
    assert_eq!(images().await, ["new"; 6]);
    assert_eq!(h.cr().await.status.unwrap().version.as_deref(), Some(OLD), "not finished yet");

    // Done: the status records the new version, no rollout left.
    h.ready("phlox-distributor").await;
    h.ready("phlox-query-frontend").await;
    h.reconcile().await.unwrap();
    let status = h.cr().await.status.unwrap();
    assert_eq!(status.version.as_deref(), Some(NEW));
    assert_eq!(status.rollout, None);
}

/// The pods carry the hash of the storage credentials Secret: new
/// credentials roll them (in the rollout's order), the same data does not.
#[tokio::test]
async fn new_storage_credentials_roll_the_pods_in_order() {
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::Secret;
    let h = Harness::new(sample()).await;
    let secret = |key: &str| Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("phlox-s3".into()),
            namespace: Some(NS.into()),
            ..Default::default()
        },
        data: Some([("AWS_SECRET_ACCESS_KEY".to_owned(), ByteString(key.as_bytes().to_vec()))].into()),
        ..Default::default()
    };
    h.api::<Secret>().create(&Default::default(), &secret("first")).await.unwrap();
    h.reconcile().await.unwrap();
    h.settle().await;
    let annotation = |h: &Harness, name: &'static str| {
        let api = h.api::<Deployment>();
        async move {
            let d = api.get(name).await.unwrap();
            d.spec.unwrap().template.metadata.unwrap().annotations.unwrap()
                [phlox_operator::STORAGE_SECRET_HASH_ANNOTATION]
                .clone()
        }
    };
    let first = annotation(&h, "phlox-query-backend").await;
    assert_eq!(first, annotation(&h, "phlox-distributor").await);

    // The same data again: nothing to do.
    h.api::<Secret>().replace("phlox-s3", &Default::default(), &secret("first")).await.unwrap();
    assert_eq!(h.reconcile().await.unwrap(), Vec::<String>::new());

    // Rotated credentials: the readers first, the others once they are ready.
    h.api::<Secret>().replace("phlox-s3", &Default::default(), &secret("rotated")).await.unwrap();
    assert_eq!(
        h.reconcile().await.unwrap(),
        vec!["patch Deployment/phlox-compaction-worker", "patch Deployment/phlox-query-backend", "patch-status phlox"]
    );
    assert_ne!(annotation(&h, "phlox-query-backend").await, first);
    assert_eq!(annotation(&h, "phlox-distributor").await, first);
    h.settle().await;
    let rotated = annotation(&h, "phlox-distributor").await;
    assert_eq!(rotated, annotation(&h, "phlox-query-backend").await);
    assert_ne!(rotated, first);

    // A CA bundle for the object store: its content rolls the pods too.
    let ca = |pem: &str| ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some("corp-ca".into()),
            namespace: Some(NS.into()),
            ..Default::default()
        },
        data: Some([("ca.crt".to_owned(), pem.to_owned())].into()),
        ..Default::default()
    };
    h.api::<ConfigMap>().create(&Default::default(), &ca("first CA")).await.unwrap();
    h.change_spec(json!({"storage": {"caBundle": {"configMap": "corp-ca"}}})).await;
    h.reconcile().await.unwrap();
    h.settle().await;
    let with_ca = annotation(&h, "phlox-distributor").await;
    assert_ne!(with_ca, rotated);
    h.api::<ConfigMap>().replace("corp-ca", &Default::default(), &ca("renewed CA")).await.unwrap();
    let w = h.reconcile().await.unwrap();
    assert!(w.contains(&"patch Deployment/phlox-query-backend".to_owned()), "{w:?}");
    h.settle().await;
    assert_ne!(annotation(&h, "phlox-distributor").await, with_ca);
}

/// A claim of the metastore StatefulSet, as its controller would have made it.
fn metastore_claim(ordinal: u32, size: &str) -> k8s_openapi::api::core::v1::PersistentVolumeClaim {
    use k8s_openapi::api::core::v1::{PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements};
    let labels = [
        ("app.kubernetes.io/name", "phlox"),
        ("app.kubernetes.io/instance", "phlox"),
        ("app.kubernetes.io/component", "metastore"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    PersistentVolumeClaim {
        metadata: kube::api::ObjectMeta {
            name: Some(format!("data-phlox-metastore-{ordinal}")),
            namespace: Some(NS.into()),
            labels: Some(labels),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            resources: Some(VolumeResourceRequirements {
                requests: Some(
                    [("storage".to_owned(), k8s_openapi::apimachinery::pkg::api::resource::Quantity(size.into()))]
                        .into(),
                ),
                limits: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn claim_size(sts: &StatefulSet) -> String {
    sts.spec.as_ref().unwrap().volume_claim_templates.as_ref().unwrap()[0]
        .spec
        .as_ref()
        .unwrap()
        .resources
        .as_ref()
        .unwrap()
        .requests
        .as_ref()
        .unwrap()["storage"]
        .0
        .clone()
}

/// A larger metastore volume: every existing claim is expanded, the
/// StatefulSet (whose claim templates are immutable) is deleted orphaning
/// its pods and recreated with the new size; no pod is deleted. Smaller
/// volumes are refused while everything else is still reconciled.
#[tokio::test]
async fn a_larger_volume_expands_the_claims_and_recreates_the_statefulset() {
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;
    let h = Harness::new(sample()).await;
    h.reconcile().await.unwrap();
    h.settle().await;
    assert_eq!(claim_size(&h.api::<StatefulSet>().get("phlox-metastore").await.unwrap()), "10Gi");
    h.api::<PersistentVolumeClaim>().create(&Default::default(), &metastore_claim(0, "10Gi")).await.unwrap();
    // A claim of another StatefulSet with a similar name is not touched.
    let mut other = metastore_claim(0, "10Gi");
    other.metadata.name = Some("data-phlox-metastore-old-0".into());
    h.api::<PersistentVolumeClaim>().create(&Default::default(), &other).await.unwrap();

    h.change_spec(json!({"metastore": {"storage": {"size": "20Gi"}}})).await;
    let w = h.reconcile().await.unwrap();
    assert!(w.contains(&"delete phlox-metastore".to_owned()), "{w:?}");
    assert!(!w.iter().any(|w| w.starts_with("delete phlox-metastore-")), "no pod or claim deleted: {w:?}");
    let size = |name: &'static str| {
        let api = h.api::<PersistentVolumeClaim>();
        async move { api.get(name).await.unwrap().spec.unwrap().resources.unwrap().requests.unwrap()["storage"].0.clone() }
    };
    assert_eq!(size("data-phlox-metastore-0").await, "20Gi");
    assert_eq!(size("data-phlox-metastore-old-0").await, "10Gi");
    assert!(h.api::<StatefulSet>().get_opt("phlox-metastore").await.unwrap().is_none());
    assert!(h.events().iter().any(|e| e.contains("Event/")), "a Recreating event");

    // The next reconcile (the deletion triggers it) creates it anew.
    let w = h.reconcile().await.unwrap();
    assert!(w.contains(&"patch StatefulSet/phlox-metastore".to_owned()), "{w:?}");
    assert_eq!(claim_size(&h.api::<StatefulSet>().get("phlox-metastore").await.unwrap()), "20Gi");
    h.settle().await;
    assert_eq!(h.reconcile().await.unwrap(), Vec::<String>::new(), "settled");

    // Smaller: refused and reported, the rest still reconciled.
    h.change_spec(json!({"metastore": {"storage": {"size": "5Gi"}}, "distributor": {"replicas": 2}})).await;
    let err = h.reconcile().await.unwrap_err();
    assert!(err.to_string().contains("cannot shrink from 20Gi to 5Gi"), "{err}");
    assert_eq!(claim_size(&h.api::<StatefulSet>().get("phlox-metastore").await.unwrap()), "20Gi");
    assert_eq!(h.api::<Deployment>().get("phlox-distributor").await.unwrap().spec.unwrap().replicas, Some(2));
    assert_eq!(size("data-phlox-metastore-0").await, "20Gi");
}

/// Another immutable change (the storage class of new claims): the
/// StatefulSet is recreated, existing claims are left as they are.
#[tokio::test]
async fn a_new_storage_class_recreates_the_statefulset_and_keeps_the_claims() {
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;
    let h = Harness::new(sample()).await;
    h.reconcile().await.unwrap();
    h.settle().await;
    h.api::<PersistentVolumeClaim>().create(&Default::default(), &metastore_claim(0, "10Gi")).await.unwrap();
    h.change_spec(json!({"metastore": {"storage": {"storageClassName": "fast"}}})).await;
    let w = h.reconcile().await.unwrap();
    assert!(w.contains(&"delete phlox-metastore".to_owned()), "{w:?}");
    assert!(!w.iter().any(|w| w.contains("PersistentVolumeClaim")), "{w:?}");
    h.reconcile().await.unwrap();
    let sts = h.api::<StatefulSet>().get("phlox-metastore").await.unwrap();
    let class = sts.spec.unwrap().volume_claim_templates.unwrap()[0].spec.clone().unwrap().storage_class_name;
    assert_eq!(class.as_deref(), Some("fast"));
    let pvc = h.api::<PersistentVolumeClaim>().get("data-phlox-metastore-0").await.unwrap();
    assert_eq!(pvc.spec.unwrap().storage_class_name, None);
}

/// Owned children that are no longer desired are deleted (here a Service
/// an older operator rendered); objects with the same labels that the
/// cluster does not own are left alone.
#[tokio::test]
async fn owned_children_no_longer_desired_are_pruned() {
    let h = Harness::new(sample()).await;
    h.reconcile().await.unwrap();
    let owner = h.api::<Service>().get("phlox-distributor").await.unwrap().metadata.owner_references;
    let labels = h.api::<Service>().get("phlox-distributor").await.unwrap().metadata.labels;
    let service = |name: &str, owned: bool| Service {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            labels: labels.clone(),
            owner_references: if owned { owner.clone() } else { None },
            ..Default::default()
        },
        ..Default::default()
    };
    h.api::<Service>().create(&Default::default(), &service("phlox-legacy", true)).await.unwrap();
    h.api::<Service>().create(&Default::default(), &service("someone-elses", false)).await.unwrap();
    let w = h.reconcile().await.unwrap();
    assert_eq!(w, vec!["delete phlox-legacy"], "{w:?}");
    let names = h.names::<Service>().await;
    assert!(!names.contains(&"phlox-legacy".to_owned()) && names.contains(&"someone-elses".to_owned()), "{names:?}");
    assert_eq!(names.len(), 7, "the six of the cluster and the foreign one: {names:?}");
}
