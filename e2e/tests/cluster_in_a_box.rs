//! Cluster in a box (`make e2e-cluster`): the operator's controller loop
//! against the in-memory API, and every pod it asks for run as a real
//! `phlox` process in a network namespace of its own
//! (`phlox_e2e::cluster`). Needs root and iproute2; it fails (never skips)
//! without them.
//!
//! The scenario so far: a PyroscopeCluster becomes Ready with every
//! component running as the operator rendered it (args, env, config file,
//! Services, DNS names, probes); profiles pushed through the distributor
//! Service are read back through the query-frontend Service with exact
//! totals; a SIGKILLed metastore is restarted and loses nothing; deleting
//! the cluster stops every pod.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams};
use phlox_crds::v1alpha1::PyroscopeCluster;
use phlox_e2e::cluster::{api, kubelet::Kubelet, net::Network};
use phlox_e2e::*;
use phlox_pprof::testkit::ProfileBuilder;
use phlox_proto::querier::v1 as q;
use prost::Message;
use serde_json::json;

const NS: &str = "phlox";
const CPU: &str = "process_cpu:cpu:nanoseconds::";

async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn ready(cr: &PyroscopeCluster) -> bool {
    cr.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn total(frontend: &str, start_ms: i64, end_ms: i64) -> i64 {
    let r: q::SelectMergeStacktracesResponse = query(
        frontend,
        "anonymous",
        "SelectMergeStacktraces",
        &q::SelectMergeStacktracesRequest {
            profile_type_id: CPU.into(),
            label_selector: "{}".into(),
            start: start_ms,
            end: end_ms,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    r.flamegraph.map_or(0, |f| f.total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_runs_in_a_box() {
    assert!(
        std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0")),
        "the cluster in a box needs root (network namespaces, bind mounts)"
    );
    let (tmp, _) = data_dir();
    let fake = kube_fake_client::ClientBuilder::new()
        .with_resource::<PyroscopeCluster>()
        .with_status_subresource::<PyroscopeCluster>()
        .with_status_subresource::<Deployment>()
        .with_status_subresource::<StatefulSet>()
        .with_status_subresource::<Pod>()
        .build()
        .await
        .unwrap();
    let client = api::Api::new(fake).client();
    let net = Arc::new(Network::create(200 + (std::process::id() % 50) as u8).expect("a bridge (root, iproute2)"));
    let kubelet = Kubelet::new(client.clone(), NS, Arc::clone(&net), tmp.path(), &phlox_bin());
    let kubelet_task = tokio::spawn(Arc::clone(&kubelet).run());
    let ctx = Arc::new(phlox_operator::Context::new(client.clone(), phlox_operator::Metrics::new().unwrap(), None));
    let operator = tokio::spawn(phlox_operator::run(ctx, Some(NS.to_owned())));

    // 1. A cluster: every component ready.
    let clusters: Api<PyroscopeCluster> = Api::namespaced(client.clone(), NS);
    let cr: PyroscopeCluster = serde_json::from_value(json!({
        "apiVersion": "phlox.dev/v1alpha1", "kind": "PyroscopeCluster",
        "metadata": {"name": "phlox", "namespace": NS},
        "spec": {"image": "phlox:box", "size": "none",
            "storage": {"backend": "filesystem", "filesystemClaimName": "bucket"},
            "limits": {"ingestionRateMb": 0}}
    }))
    .unwrap();
    clusters.create(&PostParams::default(), &cr).await.unwrap();
    let status = eventually("Ready=True", Duration::from_secs(240), || async {
        let cr = clusters.get("phlox").await.ok()?;
        if std::env::var_os("PHLOX_BOX_VERBOSE").is_some() {
            let conditions: Vec<String> = cr
                .status
                .iter()
                .flat_map(|s| s.conditions.iter())
                .map(|c| format!("{}={} {}", c.type_, c.status, c.message))
                .collect();
            eprintln!("cluster: {conditions:?}");
        }
        ready(&cr).then_some(cr.status?)
    })
    .await;
    assert_eq!(status.components_ready.as_deref(), Some("6/6"));
    assert_eq!(kubelet.pods().len(), 6, "{:?}", kubelet.pods());

    // 2. Push through the distributor Service, read through the frontend's.
    let distributor = format!("http://{}:4040", kubelet.service_address("phlox-distributor").unwrap());
    let frontend = format!("http://{}:4040", kubelet.service_address("phlox-query-frontend").unwrap());
    let http = reqwest::Client::new();
    let now = now_nanos();
    let values: Vec<i64> = (1..=20).collect();
    let push = |v: i64, i: usize| {
        let mut b = ProfileBuilder::new("cpu", "nanoseconds");
        b.time_nanos(now - i as i64 * 1_000_000).sample(&["main", "work"], &[v], &[]);
        push_request(
            &[("__name__", "process_cpu"), ("service_name", "box")],
            b.encode(),
            &format!("00000000-0000-4000-8000-{:012x}", i + 1),
        )
        .encode_to_vec()
    };
    for (i, v) in values.iter().enumerate().take(10) {
        push_until_acked(&http, &format!("{distributor}/push.v1.PusherService/Push"), "anonymous", push(*v, i)).await;
    }
    let (s, e) = (now / 1_000_000 - 60_000, now / 1_000_000 + 60_000);
    assert_eq!(total(&frontend, s, e).await, values[..10].iter().sum::<i64>());

    // 3. The metastore SIGKILLed: restarted in place, nothing acked lost.
    assert!(kubelet.kill_process("phlox-metastore-0"));
    for (i, v) in values.iter().enumerate().skip(10) {
        push_until_acked(&http, &format!("{distributor}/push.v1.PusherService/Push"), "anonymous", push(*v, i)).await;
    }
    let expected = values.iter().sum::<i64>();
    eventually("every acked profile once", Duration::from_secs(60), || async {
        (total(&frontend, s, e).await == expected).then_some(())
    })
    .await;

    // 4. The cluster deleted: every pod stops.
    clusters.delete("phlox", &DeleteParams::default()).await.unwrap();
    eventually("no pod left", Duration::from_secs(120), || async { kubelet.pods().is_empty().then_some(()) }).await;
    operator.abort();
    kubelet_task.abort();
    kubelet.shutdown();
    drop(net);
}
