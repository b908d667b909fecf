//! Cluster in a box (`make e2e-cluster`): the operator's controller loop
//! against the in-memory API, and every pod it asks for run as a real
//! `phlox` process in a network namespace of its own
//! (`phlox_e2e::cluster`). Needs root and iproute2; it fails (never skips)
//! without them.
//!
//! The scenario: a PyroscopeCluster on a moto S3 bucket, its components
//! talking mutual TLS (a Secret of the test's CA), becomes Ready with
//! every component running as the operator rendered it (args, env and
//! Secret, config file, Services, DNS names, probes); profiles pushed
//! through the distributor Service are read back through the query-frontend
//! Service with exact totals; under push and query load both autoscaled
//! pools grow and their new pods get work; a random pod is SIGKILLed and
//! restarted; a new image rolls out in order with no failed query and no
//! answer outside what was acked; when the load stops the writer is drained
//! and both pools shrink; a SIGKILLed metastore loses nothing; every acked
//! profile is counted exactly once; deleting the cluster removes every
//! owned object and pod. The timeline (replicas, the autoscaler's load and
//! decisions, the rollout, push and query p99, what the kubelet did) is
//! printed and written to `target/cluster-in-a-box/timeline.json`.
//! `PHLOX_BOX_SEED` picks the SIGKILLed pod, `PHLOX_BOX_KEEP` keeps pod
//! logs, `PHLOX_BOX_POD_LOG` sets the pods' log filter, `PHLOX_BOX_VERBOSE`
//! prints what the kubelet does as it happens.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use std::sync::Mutex;
use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicI64};

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use phlox_crds::v1alpha1::PyroscopeCluster;
use phlox_e2e::cluster::{api, kubelet::Kubelet, net::Network, s3::Moto};
use phlox_e2e::*;
use phlox_pprof::testkit::ProfileBuilder;
use phlox_proto::querier::v1 as q;
use prost::Message;
use serde_json::json;

const NS: &str = "phlox";
const CPU: &str = "process_cpu:cpu:nanoseconds::";

/// Polls `check` (every 200 ms) until it gives a value.
async fn eventually<T, F, Fut>(what: &str, limit: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    phlox_e2e::eventually(what, limit, Duration::from_millis(200), check).await
}

fn ready(cr: &PyroscopeCluster) -> bool {
    cr.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

async fn total(frontend: &str, start_ms: i64, end_ms: i64) -> i64 {
    flame_total(frontend, "anonymous", CPU, "{}", start_ms, end_ms).await
}

/// One querier's call: the merged total, or why there is none.
async fn try_total(http: &reqwest::Client, frontend: &str, start_ms: i64, end_ms: i64) -> Result<i64, String> {
    let req = q::SelectMergeStacktracesRequest {
        profile_type_id: CPU.into(),
        label_selector: "{}".into(),
        start: start_ms,
        end: end_ms,
        ..Default::default()
    };
    let r = http
        .post(format!("{frontend}/querier.v1.QuerierService/SelectMergeStacktraces"))
        .header("Content-Type", "application/proto")
        .header("Connect-Protocol-Version", "1")
        .header("X-Scope-OrgID", "anonymous")
        .timeout(Duration::from_secs(30))
        .body(req.encode_to_vec())
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status();
    let body = r.bytes().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("{status}: {}", String::from_utf8_lossy(&body)));
    }
    let r = q::SelectMergeStacktracesResponse::decode(body).map_err(|e| e.to_string())?;
    Ok(r.flamegraph.map_or(0, |f| f.total))
}

/// Samples of one pushed load profile.
const LOAD_SAMPLES: i64 = 200;

/// Pushes and queries running together: one pusher (its profiles spread
/// over sixteen series) and eight queriers that check every answer
/// against what was acked around it.
struct Load {
    acked: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
    /// Answers outside [acked before the query, acked after it + the one push in flight].
    wrong: Arc<Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(distributor: &str, frontend: &str, now: i64, range: (i64, i64), acked: i64, timeline: &Timeline) -> Self {
        let acked = Arc::new(AtomicI64::new(acked));
        let stop = Arc::new(AtomicBool::new(false));
        let wrong = Arc::new(Mutex::new(Vec::new()));
        let http = reqwest::Client::new();
        let mut tasks = Vec::new();
        let (url, a, st, tl) = (
            format!("{distributor}/push.v1.PusherService/Push"),
            Arc::clone(&acked),
            Arc::clone(&stop),
            timeline.clone(),
        );
        let h = http.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = 1_000usize;
            while !st.load(SeqCst) {
                // ~20 KB profiles, ten a second: far above the writers' target.
                let mut b = ProfileBuilder::new("cpu", "nanoseconds");
                b.time_nanos(now - (i % 50_000) as i64 * 1_000);
                for k in 0..LOAD_SAMPLES as usize {
                    b.sample(&["main", &format!("work_{}", (i * 7 + k) % 997), &format!("leaf_{k}")], &[1], &[]);
                }
                // Sixteen series (pods): a series stays on one shard, so one
                // series alone would only ever reach one writer.
                let pod = format!("pod-{}", i % 16);
                let labels = [("__name__", "process_cpu"), ("service_name", "box"), ("pod", pod.as_str())];
                let body = push_request(&labels, b.encode(), &format!("00000000-0000-4000-8000-{:012x}", i + 1))
                    .encode_to_vec();
                let started = std::time::Instant::now();
                push_until_acked(&h, &url, "anonymous", body).await;
                tl.pushed(started.elapsed());
                a.fetch_add(LOAD_SAMPLES, SeqCst);
                i += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }));
        for _ in 0..8 {
            let (h, frontend, a, st, w, tl) = (
                http.clone(),
                frontend.to_owned(),
                Arc::clone(&acked),
                Arc::clone(&stop),
                Arc::clone(&wrong),
                timeline.clone(),
            );
            tasks.push(tokio::spawn(async move {
                while !st.load(SeqCst) {
                    let before = a.load(SeqCst);
                    let started = std::time::Instant::now();
                    let answer = try_total(&h, &frontend, range.0, range.1).await;
                    tl.query_latency(started.elapsed());
                    match answer {
                        Ok(t) => {
                            let after = a.load(SeqCst);
                            if t < before || t > after + LOAD_SAMPLES {
                                w.lock().unwrap().push(format!("total {t}: acked {before} before, {after} after"));
                            }
                            tl.queried(Ok(()));
                        }
                        Err(e) => {
                            tl.queried(Err(e));
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                    }
                }
            }));
        }
        Self { acked, stop, wrong, tasks }
    }

    /// Stops the load; returns the samples acked in all.
    async fn stop(self) -> i64 {
        self.stop.store(true, SeqCst);
        for t in self.tasks {
            t.await.unwrap();
        }
        let wrong = self.wrong.lock().unwrap().clone();
        assert!(wrong.is_empty(), "wrong answers under load: {wrong:?}");
        self.acked.load(SeqCst)
    }
}

async fn cluster_status(clusters: &Api<PyroscopeCluster>) -> Option<phlox_crds::v1alpha1::PyroscopeClusterStatus> {
    clusters.get("phlox").await.ok()?.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_runs_in_a_box() {
    assert!(
        std::process::Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.starts_with(b"0")),
        "the cluster in a box needs root (network namespaces, bind mounts)"
    );
    let (tmp, _) = data_dir();
    // PHLOX_BOX_KEEP: pod logs and volumes stay for a look (<root>/pods/<pod>/log).
    let root = if std::env::var_os("PHLOX_BOX_KEEP").is_some() { tmp.keep() } else { tmp.path().to_owned() };
    println!("box root: {}", root.display());
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
    let moto = Moto::start(net.host(), "phlox-box").await.unwrap();
    let kubelet = Kubelet::new(client.clone(), NS, Arc::clone(&net), &root, &phlox_bin());
    let kubelet_task = tokio::spawn(Arc::clone(&kubelet).run());
    let metrics = phlox_operator::Metrics::new().unwrap();
    let ctx = Arc::new(phlox_operator::Context::new(client.clone(), metrics.clone(), None));
    let operator = tokio::spawn(phlox_operator::run(ctx, Some(NS.to_owned())));

    // 1. A cluster on the S3 bucket: every component ready.
    let secret: Secret = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-credentials", "namespace": NS},
        "data": {"AWS_ACCESS_KEY_ID": "Ym94", "AWS_SECRET_ACCESS_KEY": "Ym94LXNlY3JldA=="}
    }))
    .unwrap();
    Api::<Secret>::namespaced(client.clone(), NS).create(&PostParams::default(), &secret).await.unwrap();
    // Mutual TLS between the components, from a Secret of ours: a CA and a
    // certificate for the name every component checks its peers against.
    let grpc_tls = grpc_tls_secret(&format!("phlox-grpc.{NS}.svc"));
    Api::<Secret>::namespaced(client.clone(), NS).create(&PostParams::default(), &grpc_tls).await.unwrap();
    let clusters: Api<PyroscopeCluster> = Api::namespaced(client.clone(), NS);
    let cr: PyroscopeCluster = serde_json::from_value(json!({
        "apiVersion": "phlox.dev/v1alpha1", "kind": "PyroscopeCluster",
        "metadata": {"name": "phlox", "namespace": NS},
        "spec": {"image": "phlox:box", "size": "none",
            "storage": {"backend": "s3", "bucket": moto.bucket, "endpoint": moto.endpoint,
                "region": "us-east-1", "insecure": true, "credentialsSecret": "s3-credentials"},
            "limits": {"ingestionRateMb": 0},
            "grpcTls": {"secretName": "phlox-grpc-tls-box"},
            // Low targets: the test's load is enough to need two of each.
            "segmentWriter": {"autoscaling": {"enabled": true, "minReplicas": 1, "maxReplicas": 2,
                "targetValue": 0.01, "scaleDownStabilizationWindowSeconds": 15}},
            "queryBackend": {"autoscaling": {"enabled": true, "minReplicas": 1, "maxReplicas": 2,
                "targetValue": 0.2, "scaleDownStabilizationWindowSeconds": 30}}}
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
    assert_eq!(status.version.as_deref(), Some("phlox:box"));
    let mut components: Vec<(String, i32, i32, i32)> = status
        .components
        .iter()
        .map(|c| (c.name.clone(), c.desired_replicas, c.ready_replicas, c.updated_replicas))
        .collect();
    components.sort();
    let one = |n: &str| (n.to_owned(), 1, 1, 1);
    assert_eq!(
        components,
        ["compaction-worker", "distributor", "metastore", "query-backend", "query-frontend", "segment-writer"].map(one)
    );
    assert_eq!(kubelet.pods().len(), 6, "{:?}", kubelet.pods());

    // 2. Push through the distributor Service, read through the frontend's.
    // The gRPC port answers members only: plain text gets nothing.
    let metastore = kubelet.service_address("phlox-metastore").unwrap();
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{metastore}:9095")).unwrap().connect().await;
    if let Ok(channel) = plain {
        let mut c = phlox_proto::metastore::v1::metastore_service_client::MetastoreServiceClient::new(channel);
        let r = c.query_blocks(phlox_proto::metastore::v1::QueryBlocksRequest::default()).await;
        assert!(r.is_err(), "the metastore answered plain text: {r:?}");
    }
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
    // The blocks are in the S3 bucket.
    let listing = http.get(format!("{}/{}?list-type=2", moto.endpoint, moto.bucket)).send().await.unwrap();
    assert!(listing.text().await.unwrap().contains("<Key>"), "no object in the S3 bucket");

    // 3. Load: the pools grow, and the new pods get work.
    let timeline = Timeline::start(client.clone(), Arc::clone(&kubelet), metrics.clone());
    let _report_on_failure = ReportOnPanic(timeline.clone());
    let load = Load::start(&distributor, &frontend, now, (s, e), values[..10].iter().sum::<i64>(), &timeline);
    let scaled = |name: &'static str, want: i32| {
        let client = client.clone();
        async move {
            let replicas = match Api::<StatefulSet>::namespaced(client.clone(), NS).get_opt(name).await.ok()? {
                Some(s) => s.spec?.replicas?,
                None => Api::<Deployment>::namespaced(client, NS).get(name).await.ok()?.spec?.replicas?,
            };
            (replicas == want).then_some(())
        }
    };
    eventually("two segment writers", Duration::from_secs(180), || scaled("phlox-segment-writer", 2)).await;
    eventually("two query backends", Duration::from_secs(180), || scaled("phlox-query-backend", 2)).await;
    // The new writer receives shards, the new backend receives leaves.
    eventually("profiles on the new writer", Duration::from_secs(120), || async {
        let ip = kubelet.pods().into_iter().find(|p| p.0 == "phlox-segment-writer-1" && p.2)?.3;
        let text = reqwest::get(format!("http://{ip}:4040/metrics")).await.ok()?.text().await.ok()?;
        (metric(&text, "phlox_segment_writer_profiles_total") > 0.0).then_some(())
    })
    .await;
    let first_backend = timeline.first_pod("phlox-query-backend").unwrap();
    eventually("leaves on the new backend", Duration::from_secs(120), || async {
        let ip = kubelet.pods().into_iter().find(|p| p.1 == "phlox-query-backend" && p.0 != first_backend && p.2)?.3;
        let text = reqwest::get(format!("http://{ip}:4040/metrics")).await.ok()?.text().await.ok()?;
        (metric(&text, "phlox_query_backend_leaf_duration_seconds_count") > 0.0).then_some(())
    })
    .await;

    // 4. A random pod SIGKILLed under load: restarted in place.
    let seed = std::env::var("PHLOX_BOX_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(now as u64);
    let mut pods: Vec<String> = kubelet.pods().into_iter().map(|p| p.0).collect();
    pods.sort();
    let victim = pods[(seed % pods.len() as u64) as usize].clone();
    println!("SIGKILL {victim} (PHLOX_BOX_SEED={seed})");
    timeline.mark(format!("SIGKILL {victim}"));
    assert!(kubelet.kill_process(&victim));
    eventually("the killed pod restarted and ready", Duration::from_secs(120), || async {
        let ready = kubelet.pods().iter().any(|p| p.0 == victim && p.2);
        (kubelet.restarts(&victim)? >= 1 && ready).then_some(())
    })
    .await;

    // 5. A new image under load: the ordered rollout replaces every pod.
    timeline.mark("image phlox:box-2".into());
    let failed_before = timeline.failed_queries();
    clusters
        .patch("phlox", &PatchParams::default(), &Patch::Merge(json!({"spec": {"image": "phlox:box-2"}})))
        .await
        .unwrap();
    eventually("the rollout to phlox:box-2", Duration::from_secs(420), || async {
        let st = cluster_status(&clusters).await?;
        let done = st.version.as_deref() == Some("phlox:box-2")
            && st.rollout.is_none()
            && st
                .components
                .iter()
                .all(|c| c.updated_replicas == c.desired_replicas && c.ready_replicas == c.desired_replicas);
        done.then_some(())
    })
    .await;
    let images: Vec<String> = kubelet.pods().into_iter().filter_map(|p| kubelet.image(&p.0)).collect();
    assert!(!images.is_empty() && images.iter().all(|i| i == "phlox:box-2"), "{images:?}");
    timeline.mark("rolled out".into());
    // Pushes retried until acked (checked at the end); queries never failed.
    assert_eq!(timeline.failed_queries(), failed_before, "queries failed during the rollout");

    // 6. The load stops: the writer is drained then removed, the backend removed.
    let pushed = load.stop().await;
    eventually("one segment writer", Duration::from_secs(240), || scaled("phlox-segment-writer", 1)).await;
    eventually("one query backend", Duration::from_secs(240), || scaled("phlox-query-backend", 1)).await;
    eventually("every acked profile once after the scale-down", Duration::from_secs(60), || async {
        (total(&frontend, s, e).await == pushed).then_some(())
    })
    .await;

    // 7. The metastore SIGKILLed: restarted in place, nothing acked lost.
    timeline.mark("SIGKILL phlox-metastore-0".into());
    assert!(kubelet.kill_process("phlox-metastore-0"));
    for (i, v) in values.iter().enumerate().skip(10) {
        push_until_acked(&http, &format!("{distributor}/push.v1.PusherService/Push"), "anonymous", push(*v, i)).await;
    }
    let expected = pushed + values[10..].iter().sum::<i64>();
    eventually("every acked profile once", Duration::from_secs(60), || async {
        (total(&frontend, s, e).await == expected).then_some(())
    })
    .await;
    let report = timeline.finish();
    println!("{report}");
    // Each pool scaled up and down; the writer was drained first.
    let count = |c: &prometheus::IntCounterVec, labels: &[&str]| c.with_label_values(labels).get();
    for component in ["segment-writer", "query-backend"] {
        assert!(count(&metrics.scale_events, &[component, "up"]) >= 1, "{component} never scaled up");
        assert!(count(&metrics.scale_events, &[component, "down"]) >= 1, "{component} never scaled down");
    }
    assert!(timeline.drained_scale_down(), "the timeline shows no writer drained before the pool shrank");

    // 7b. Every metric the dashboards and alerts name is exposed by the
    // running cluster: the components' /metrics (one refused push first,
    // so that refusals have a reason) and the operator's.
    let refused = reqwest::Client::new()
        .post(format!("{distributor}/ingest?name=box.cpu&format=pprof"))
        .body(b"not a profile".to_vec())
        .send()
        .await
        .unwrap();
    assert!(refused.status().is_client_error(), "{}", refused.status());
    let mut exposed = std::collections::BTreeSet::new();
    let mut scraped = Vec::new();
    for (pod, _, ready, ip) in kubelet.pods() {
        if !ready {
            continue;
        }
        let text = reqwest::get(format!("http://{ip}:4040/metrics")).await.unwrap().text().await.unwrap();
        exposed.extend(
            text.lines().filter(|l| !l.starts_with('#')).filter_map(|l| l.split(['{', ' ']).next().map(str::to_owned)),
        );
        scraped.push(pod);
    }
    exposed.extend(
        metrics
            .render()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split(['{', ' ']).next().map(str::to_owned)),
    );
    let mut mixin: String = phlox_operator::mixin::dashboard_files().into_iter().map(|(_, t)| t).collect();
    mixin.push_str(phlox_operator::mixin::ALERTS);
    let named = phlox_operator::mixin::metric_names(&mixin);
    let missing: Vec<&String> = named.iter().filter(|n| !exposed.contains(*n)).collect();
    assert!(missing.is_empty(), "named by the mixin, exposed by none of {scraped:?} nor the operator: {missing:?}");

    // 8. The cluster deleted: every owned object and every pod gone.
    clusters.delete("phlox", &DeleteParams::default()).await.unwrap();
    eventually("no pod left", Duration::from_secs(120), || async { kubelet.pods().is_empty().then_some(()) }).await;
    let owned = ListParams::default().labels("app.kubernetes.io/instance=phlox");
    eventually("no owned object left", Duration::from_secs(60), || async {
        let left = Api::<StatefulSet>::namespaced(client.clone(), NS).list(&owned).await.ok()?.items.len()
            + Api::<Deployment>::namespaced(client.clone(), NS).list(&owned).await.ok()?.items.len()
            + Api::<Service>::namespaced(client.clone(), NS).list(&owned).await.ok()?.items.len()
            + Api::<ConfigMap>::namespaced(client.clone(), NS).list(&owned).await.ok()?.items.len()
            + Api::<ServiceAccount>::namespaced(client.clone(), NS).list(&owned).await.ok()?.items.len()
            + Api::<PodDisruptionBudget>::namespaced(client.clone(), NS).list(&owned).await.ok()?.items.len()
            + Api::<Pod>::namespaced(client.clone(), NS).list(&ListParams::default()).await.ok()?.items.len();
        (left == 0).then_some(())
    })
    .await;
    operator.abort();
    kubelet_task.abort();
    kubelet.shutdown();
    drop(moto);
    drop(net);
}

/// Prints the timeline when the scenario fails, to show where it stood.
struct ReportOnPanic(Timeline);

impl Drop for ReportOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            println!("{}", self.0.finish());
        }
    }
}

/// What the run looked like, one sample a second: replicas per pool, the
/// autoscaler's load signal and decision for each, the rollout, pushes and
/// queries (and failed queries), push latency, and what the test did.
/// Printed and written to `target/cluster-in-a-box/timeline.json`.
#[derive(Clone)]
struct Timeline {
    inner: Arc<Mutex<TimelineState>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

#[derive(Default)]
struct TimelineState {
    samples: Vec<serde_json::Value>,
    push_latencies: Vec<Duration>,
    query_latencies: Vec<Duration>,
    pushes: u64,
    queries: u64,
    failed_queries: u64,
    marks: Vec<String>,
    first_pods: std::collections::BTreeMap<String, String>,
}

impl Timeline {
    fn start(client: kube::Client, kubelet: Arc<Kubelet>, metrics: phlox_operator::Metrics) -> Self {
        let inner = Arc::new(Mutex::new(TimelineState::default()));
        let state = Arc::clone(&inner);
        let started = std::time::Instant::now();
        let task = tokio::spawn(async move {
            let clusters: Api<PyroscopeCluster> = Api::namespaced(client.clone(), NS);
            let mut seen_events = kubelet.events.lock().map(|e| e.len()).unwrap_or(0);
            loop {
                let replicas = |name: &'static str| {
                    let client = client.clone();
                    async move {
                        match Api::<StatefulSet>::namespaced(client.clone(), NS).get_opt(name).await.ok().flatten() {
                            Some(s) => s.spec.and_then(|s| s.replicas).unwrap_or(0),
                            None => Api::<Deployment>::namespaced(client, NS)
                                .get_opt(name)
                                .await
                                .ok()
                                .flatten()
                                .and_then(|d| d.spec?.replicas)
                                .unwrap_or(0),
                        }
                    }
                };
                let writers = replicas("phlox-segment-writer").await;
                let backends = replicas("phlox-query-backend").await;
                let status = cluster_status(&clusters).await.unwrap_or_default();
                let autoscaler = |component: &str| {
                    let a = status.autoscaling.iter().find(|a| a.component == component);
                    json!({"load": a.and_then(|a| a.value), "target": a.map(|a| a.target),
                        "decision": a.map(|a| a.reason.clone()), "draining": a.and_then(|a| a.draining_pod.clone())})
                };
                let scale_events: u64 = ["segment-writer", "query-backend"]
                    .iter()
                    .flat_map(|c| ["up", "down"].map(|d| metrics.scale_events.with_label_values(&[c, d]).get()))
                    .sum();
                let pods = kubelet.pods();
                if let Ok(mut s) = state.lock() {
                    for (pod, owner, _, _) in &pods {
                        s.first_pods.entry(owner.clone()).or_insert_with(|| pod.clone());
                    }
                    let p99 = |mut latencies: Vec<Duration>| {
                        latencies.sort();
                        latencies
                            .get(latencies.len().saturating_sub(1).min(latencies.len() * 99 / 100))
                            .map(|d| (d.as_secs_f64() * 1e4).round() / 10.0)
                    };
                    let push_p99 = p99(std::mem::take(&mut s.push_latencies));
                    let query_p99 = p99(std::mem::take(&mut s.query_latencies));
                    let mut marks = std::mem::take(&mut s.marks);
                    // What the kubelet did: pods started, stopped, restarted.
                    if let Ok(events) = kubelet.events.lock() {
                        marks.extend(events.iter().skip(seen_events).map(|e| e.1.clone()));
                        seen_events = events.len();
                    }
                    let sample = json!({
                        "t": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
                        "segment_writers": writers, "query_backends": backends,
                        "pods_ready": pods.iter().filter(|p| p.2).count(),
                        "segment_writer_autoscaler": autoscaler("segment-writer"),
                        "query_backend_autoscaler": autoscaler("query-backend"),
                        "scale_events": scale_events,
                        "rollout": status.rollout, "version": status.version,
                        "pushes": s.pushes, "queries": s.queries, "failed_queries": s.failed_queries,
                        "push_p99_ms": push_p99, "query_p99_ms": query_p99, "marks": marks,
                    });
                    s.samples.push(sample);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        Self { inner, task: Arc::new(task) }
    }

    fn pushed(&self, latency: Duration) {
        if let Ok(mut s) = self.inner.lock() {
            s.pushes += 1;
            s.push_latencies.push(latency);
        }
    }

    /// A query's outcome; a failure's reason goes into the timeline.
    fn queried(&self, outcome: Result<(), String>) {
        if let Ok(mut s) = self.inner.lock() {
            s.queries += 1;
            if let Err(e) = outcome {
                s.failed_queries += 1;
                s.marks.push(format!("query failed: {e}"));
            }
        }
    }

    fn query_latency(&self, latency: Duration) {
        if let Ok(mut s) = self.inner.lock() {
            s.query_latencies.push(latency);
        }
    }

    fn failed_queries(&self) -> u64 {
        self.inner.lock().map(|s| s.failed_queries).unwrap_or(0)
    }

    /// Something the test did, shown in the next sample.
    fn mark(&self, what: String) {
        if let Ok(mut s) = self.inner.lock() {
            s.marks.push(what);
        }
    }

    /// Whether a sample shows a writer draining, and a later one the pool
    /// smaller than while it drained.
    fn drained_scale_down(&self) -> bool {
        let Ok(s) = self.inner.lock() else { return false };
        let draining = s.samples.iter().position(|x| {
            x["segment_writer_autoscaler"]["decision"].as_str() == Some("Draining")
                && x["segment_writer_autoscaler"]["draining"].is_string()
        });
        draining.is_some_and(|i| {
            let during = s.samples[i]["segment_writers"].as_i64().unwrap_or(0);
            s.samples[i..].iter().any(|x| x["segment_writers"].as_i64().unwrap_or(0) < during)
        })
    }

    /// The first pod seen of a workload.
    fn first_pod(&self, owner: &str) -> Option<String> {
        self.inner.lock().ok()?.first_pods.get(owner).cloned()
    }

    /// Stops sampling; writes the timeline and returns it as text.
    fn finish(&self) -> String {
        self.task.abort();
        let samples = self.inner.lock().map(|s| s.samples.clone()).unwrap_or_default();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/cluster-in-a-box");
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join("timeline.json"), serde_json::to_vec_pretty(&samples).unwrap_or_default());
        let mut text = String::from(
            "     t  writers  load/target  decision          backends  load/target  decision          ready  pushes push p99 ms  queries  failed query p99 ms  what\n",
        );
        for x in &samples {
            let int = |k: &str| x[k].as_i64().unwrap_or(0);
            let ms = |k: &str| x[k].as_f64().map_or("-".to_owned(), |v| format!("{v:.0}"));
            let pool = |k: &str| {
                let a = &x[k];
                let load = match (a["load"].as_f64(), a["target"].as_f64()) {
                    (Some(l), Some(t)) => format!("{l:.2}/{t:.2}"),
                    _ => "-".to_owned(),
                };
                let mut decision = a["decision"].as_str().unwrap_or("-").to_owned();
                if let Some(pod) = a["draining"].as_str() {
                    decision = format!("{decision} {}", pod.rsplit('-').next().unwrap_or(pod));
                }
                (load, decision)
            };
            let (wl, wd) = pool("segment_writer_autoscaler");
            let (bl, bd) = pool("query_backend_autoscaler");
            let mut what: Vec<String> =
                x["marks"].as_array().into_iter().flatten().filter_map(|m| m.as_str().map(str::to_owned)).collect();
            if let Some(r) = x["rollout"].as_str() {
                what.push(format!("rollout: {r}"));
            }
            text.push_str(&format!(
                "{:>6.1} {:>8} {:>12}  {:<16} {:>9} {:>12}  {:<16} {:>6} {:>7} {:>12} {:>8} {:>7} {:>13}  {}\n",
                x["t"].as_f64().unwrap_or(0.0),
                int("segment_writers"),
                wl,
                wd,
                int("query_backends"),
                bl,
                bd,
                int("pods_ready"),
                int("pushes"),
                ms("push_p99_ms"),
                int("queries"),
                int("failed_queries"),
                ms("query_p99_ms"),
                what.join("; ")
            ));
        }
        text
    }
}

/// A `kubernetes.io/tls`-shaped Secret (`tls.crt`, `tls.key`, `ca.crt`):
/// a fresh CA and a certificate for `name`, to serve and to dial.
fn grpc_tls_secret(name: &str) -> Secret {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "box CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca.self_signed(&ca_key).unwrap();
    let mut leaf = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
    leaf.extended_key_usages =
        vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &ca, &ca_key).unwrap();
    let data = |text: String| k8s_openapi::ByteString(text.into_bytes());
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some("phlox-grpc-tls-box".into()),
            namespace: Some(NS.into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(
            [("tls.crt", cert.pem()), ("tls.key", key.serialize_pem()), ("ca.crt", ca.pem())]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), data(v)))
                .collect(),
        ),
        ..Default::default()
    }
}
