//! The operator's own controller loop (`phlox_operator::run`, what
//! `phlox-operator run` runs: watches, predicates, owned-object and Secret
//! triggers) against the in-memory API of the cluster-in-a-box harness
//! (`phlox_e2e::cluster::api`), which answers watches. Every step waits
//! for the controller to react to a change it can only learn by watching:
//! no `reconcile()` is called by hand, and the controller's periodic
//! resync (5 minutes) is far beyond the waits.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use phlox_crds::v1alpha1::PyroscopeCluster;
use serde_json::json;

const NS: &str = "phlox";
/// Longest any step may take (the controller reacts within milliseconds).
const WAIT: Duration = Duration::from_secs(30);

async fn in_memory_api() -> Client {
    let fake = kube_fake_client::ClientBuilder::new()
        .with_resource::<PyroscopeCluster>()
        .with_status_subresource::<PyroscopeCluster>()
        .with_status_subresource::<Deployment>()
        .with_status_subresource::<StatefulSet>()
        .build()
        .await
        .unwrap();
    phlox_e2e::cluster::api::Api::new(fake).client()
}

/// Polls `check` until it gives a value, or fails naming `what`.
async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    phlox_e2e::eventually(what, WAIT, Duration::from_millis(50), check).await
}

fn cluster() -> PyroscopeCluster {
    serde_json::from_value(json!({
        "apiVersion": "phlox.dev/v1alpha1",
        "kind": "PyroscopeCluster",
        "metadata": {"name": "phlox", "namespace": NS, "uid": "3f1d2b9c-1111-4a59-9d1e-2f0c6f5b7c11"},
        "spec": {"storage": {"backend": "s3", "bucket": "profiles", "credentialsSecret": "s3"}}
    }))
    .unwrap()
}

async fn names<K>(client: &Client) -> Vec<String>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + for<'de> k8s_openapi::serde::Deserialize<'de>,
{
    let mut n: Vec<String> = Api::<K>::namespaced(client.clone(), NS)
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .iter()
        .map(|o| o.name_any())
        .collect();
    n.sort();
    n
}

fn secret(key: &str) -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta { name: Some("s3".into()), namespace: Some(NS.into()), ..Default::default() },
        data: Some([("AWS_SECRET_ACCESS_KEY".to_owned(), ByteString(key.as_bytes().to_vec()))].into()),
        ..Default::default()
    }
}

async fn secret_hash(client: &Client, deployment: &str) -> Option<String> {
    let d = Api::<Deployment>::namespaced(client.clone(), NS).get_opt(deployment).await.ok()??;
    d.spec?.template.metadata?.annotations?.get(phlox_operator::STORAGE_SECRET_HASH_ANNOTATION).cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_loop_runs_on_watches() {
    let client = in_memory_api().await;
    let metrics = phlox_operator::Metrics::new().unwrap();
    let ctx = Arc::new(phlox_operator::Context::new(client.clone(), metrics.clone(), None));
    // Reconciles so far; unchanged for half a second = nothing in flight.
    let reconciles =
        || metrics.reconciles.with_label_values(&["ok"]).get() + metrics.reconciles.with_label_values(&["error"]).get();
    let settled = || async {
        let mut last = reconciles();
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = reconciles();
            if now == last {
                return now;
            }
            last = now;
        }
    };
    let controller = tokio::spawn(phlox_operator::run(ctx, Some(NS.to_owned())));
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NS);
    secrets.create(&PostParams::default(), &secret("first")).await.unwrap();
    let clusters: Api<PyroscopeCluster> = Api::namespaced(client.clone(), NS);
    clusters.create(&PostParams::default(), &cluster()).await.unwrap();

    // A new cluster: every child, and a status.
    let deployments = eventually("the four Deployments", || async {
        let n = names::<Deployment>(&client).await;
        (n.len() == 4).then_some(n)
    })
    .await;
    assert_eq!(
        deployments,
        ["phlox-compaction-worker", "phlox-distributor", "phlox-query-backend", "phlox-query-frontend"]
    );
    eventually("the StatefulSets", || async { (names::<StatefulSet>(&client).await.len() == 2).then_some(()) }).await;
    assert_eq!(names::<Service>(&client).await.len(), 6);
    assert_eq!(names::<ConfigMap>(&client).await, ["phlox-config"]);
    assert_eq!(names::<ServiceAccount>(&client).await, ["phlox"]);
    eventually("a status", || async {
        let s = clusters.get("phlox").await.ok()?.status?;
        (s.components.len() == 6).then_some(())
    })
    .await;
    let first = secret_hash(&client, "phlox-distributor").await.unwrap();

    // An owned child deleted: the owned-object watch brings it back.
    Api::<Service>::namespaced(client.clone(), NS)
        .delete("phlox-query-backend", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the Service recreated", || async {
        Api::<Service>::namespaced(client.clone(), NS).get_opt("phlox-query-backend").await.unwrap()
    })
    .await;

    // The workloads report ready: the status follows (owned-object watch).
    for d in names::<Deployment>(&client).await {
        let status = json!({"status": {"observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1, "availableReplicas": 1}});
        Api::<Deployment>::namespaced(client.clone(), NS)
            .patch_status(&d, &PatchParams::default(), &Patch::Merge(status))
            .await
            .unwrap();
    }
    for s in names::<StatefulSet>(&client).await {
        let status = json!({"status": {"observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1, "currentReplicas": 1}});
        Api::<StatefulSet>::namespaced(client.clone(), NS)
            .patch_status(&s, &PatchParams::default(), &Patch::Merge(status))
            .await
            .unwrap();
    }
    eventually("Ready=True", || async {
        let s = clusters.get("phlox").await.ok()?.status?;
        s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True").then_some(())
    })
    .await;

    // A spec change (a new generation): the Deployment follows, and a PDB appears.
    clusters
        .patch("phlox", &PatchParams::default(), &Patch::Merge(json!({"spec": {"distributor": {"replicas": 2}}})))
        .await
        .unwrap();
    eventually("two distributors", || async {
        let d = Api::<Deployment>::namespaced(client.clone(), NS).get("phlox-distributor").await.ok()?;
        (d.spec?.replicas == Some(2)).then_some(())
    })
    .await;
    // The PDB is applied after the workloads, in the same reconcile.
    eventually("the distributors' PDB", || async {
        (names::<PodDisruptionBudget>(&client).await == ["phlox-distributor"]).then_some(())
    })
    .await;

    // Rotated credentials: the Secret watch (metadata only) triggers the
    // reconcile that rolls the pods, readers first. Nothing else is in
    // flight when the Secret changes.
    let before = settled().await;
    secrets.replace("s3", &PostParams::default(), &secret("rotated")).await.unwrap();
    let rotated = eventually("the query backends rolled", || async {
        let h = secret_hash(&client, "phlox-query-backend").await?;
        (h != first).then_some(h)
    })
    .await;
    assert_ne!(rotated, first);
    // (The controller counts a reconcile when it has finished.)
    eventually("the reconcile the Secret triggered", || async { (reconciles() > before).then_some(()) }).await;

    // The cluster deleted: garbage collection removes every owned object.
    clusters.delete("phlox", &DeleteParams::default()).await.unwrap();
    eventually("every child gone", || async {
        let left = names::<Deployment>(&client).await.len()
            + names::<StatefulSet>(&client).await.len()
            + names::<Service>(&client).await.len()
            + names::<ConfigMap>(&client).await.len()
            + names::<PodDisruptionBudget>(&client).await.len()
            + names::<ServiceAccount>(&client).await.len();
        (left == 0).then_some(())
    })
    .await;
    assert_eq!(names::<Secret>(&client).await, ["s3"], "what the cluster does not own stays");
    controller.abort();
}
