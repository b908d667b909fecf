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
//! totals; under load both autoscaled pools grow and their new pods get
//! work, and when it stops the writer is drained and both shrink, with
//! every acked profile counted once; a SIGKILLed metastore is restarted and
//! loses nothing; deleting the cluster stops every pod. The timeline is
//! printed and written to `target/cluster-in-a-box/timeline.json`.
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
    if std::env::var_os("PHLOX_BOX_VERBOSE").is_some() {
        // Pod logs and volumes stay for a look: <root>/pods/<pod>/log.
        eprintln!("box root: {}", tmp.path().display());
    }
    let tmp = if std::env::var_os("PHLOX_BOX_KEEP").is_some() {
        tempfile::TempDir::with_prefix("box-keep-")
            .map(|t| {
                let p = t.keep();
                tempfile::Builder::new().tempdir_in(p).unwrap()
            })
            .unwrap()
    } else {
        tmp
    };
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
            "limits": {"ingestionRateMb": 0},
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

    // 3. Load: the pools grow, and the new pods get work.
    let timeline = Timeline::start(client.clone(), Arc::clone(&kubelet));
    let acked = Arc::new(std::sync::atomic::AtomicI64::new(values[..10].iter().sum::<i64>()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pusher = {
        let (http, url, acked, stop, timeline) = (
            http.clone(),
            format!("{distributor}/push.v1.PusherService/Push"),
            Arc::clone(&acked),
            Arc::clone(&stop),
            timeline.clone(),
        );
        tokio::spawn(async move {
            let mut i = 1_000usize;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                // ~20 KB profiles, ten a second: far above the writers' target.
                let mut b = ProfileBuilder::new("cpu", "nanoseconds");
                b.time_nanos(now - (i % 50_000) as i64 * 1_000);
                for k in 0..200 {
                    b.sample(&["main", &format!("work_{}", (i * 7 + k) % 997), &format!("leaf_{k}")], &[1], &[]);
                }
                // Sixteen series (pods): a series stays on one shard, so one
                // series alone would only ever reach one writer.
                let pod = format!("pod-{}", i % 16);
                let labels = [("__name__", "process_cpu"), ("service_name", "box"), ("pod", pod.as_str())];
                let body = push_request(&labels, b.encode(), &format!("00000000-0000-4000-8000-{:012x}", i + 1))
                    .encode_to_vec();
                let started = std::time::Instant::now();
                push_until_acked(&http, &url, "anonymous", body).await;
                timeline.pushed(started.elapsed());
                acked.fetch_add(200, std::sync::atomic::Ordering::SeqCst);
                i += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let queriers: Vec<_> = (0..8)
        .map(|_| {
            let (frontend, stop, timeline) = (frontend.clone(), Arc::clone(&stop), timeline.clone());
            tokio::spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    total(&frontend, s, e).await;
                    timeline.queried();
                }
            })
        })
        .collect();
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

    // 4. The load stops: the writer is drained then removed, the backend removed.
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    pusher.await.unwrap();
    for q in queriers {
        q.await.unwrap();
    }
    eventually("one segment writer", Duration::from_secs(240), || scaled("phlox-segment-writer", 1)).await;
    eventually("one query backend", Duration::from_secs(240), || scaled("phlox-query-backend", 1)).await;
    let pushed = acked.load(std::sync::atomic::Ordering::SeqCst);
    eventually("every acked profile once after the scale-down", Duration::from_secs(60), || async {
        (total(&frontend, s, e).await == pushed).then_some(())
    })
    .await;

    // 5. The metastore SIGKILLed: restarted in place, nothing acked lost.
    assert!(kubelet.kill_process("phlox-metastore-0"));
    for (i, v) in values.iter().enumerate().skip(10) {
        push_until_acked(&http, &format!("{distributor}/push.v1.PusherService/Push"), "anonymous", push(*v, i)).await;
    }
    let expected = pushed + values[10..].iter().sum::<i64>();
    let report = timeline.finish();
    println!("{report}");
    eventually("every acked profile once", Duration::from_secs(60), || async {
        (total(&frontend, s, e).await == expected).then_some(())
    })
    .await;

    // 6. The cluster deleted: every pod stops.
    clusters.delete("phlox", &DeleteParams::default()).await.unwrap();
    eventually("no pod left", Duration::from_secs(120), || async { kubelet.pods().is_empty().then_some(()) }).await;
    operator.abort();
    kubelet_task.abort();
    kubelet.shutdown();
    drop(net);
}

/// What the run looked like, one sample a second: replicas per pool, load,
/// push latency; printed and written to `target/cluster-in-a-box/timeline.json`.
#[derive(Clone)]
struct Timeline {
    inner: Arc<std::sync::Mutex<TimelineState>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

#[derive(Default)]
struct TimelineState {
    samples: Vec<serde_json::Value>,
    push_latencies: Vec<Duration>,
    pushes: u64,
    queries: u64,
    first_pods: std::collections::BTreeMap<String, String>,
}

impl Timeline {
    fn start(client: kube::Client, kubelet: Arc<Kubelet>) -> Self {
        let inner = Arc::new(std::sync::Mutex::new(TimelineState::default()));
        let state = Arc::clone(&inner);
        let started = std::time::Instant::now();
        let task = tokio::spawn(async move {
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
                let pods = kubelet.pods();
                if let Ok(mut s) = state.lock() {
                    for (pod, owner, _, _) in &pods {
                        s.first_pods.entry(owner.clone()).or_insert_with(|| pod.clone());
                    }
                    let mut latencies = std::mem::take(&mut s.push_latencies);
                    latencies.sort();
                    let p99 = latencies
                        .get(latencies.len().saturating_sub(1).min(latencies.len() * 99 / 100))
                        .map(|d| d.as_secs_f64() * 1e3);
                    let sample = serde_json::json!({
                        "t": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
                        "segment_writers": writers, "query_backends": backends,
                        "pods_ready": pods.iter().filter(|p| p.2).count(),
                        "pushes": s.pushes, "queries": s.queries, "push_p99_ms": p99,
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

    fn queried(&self) {
        if let Ok(mut s) = self.inner.lock() {
            s.queries += 1;
        }
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
        let mut text = String::from("     t  writers  backends  ready  pushes  queries  push p99 ms\n");
        for x in &samples {
            let int = |k: &str| x[k].as_i64().unwrap_or(0);
            text.push_str(&format!(
                "{:>6.1} {:>8} {:>9} {:>6} {:>7} {:>8} {:>12}\n",
                x["t"].as_f64().unwrap_or(0.0),
                int("segment_writers"),
                int("query_backends"),
                int("pods_ready"),
                int("pushes"),
                int("queries"),
                x["push_p99_ms"].as_f64().map_or("-".to_owned(), |v| format!("{v:.1}"))
            ));
        }
        text
    }
}
