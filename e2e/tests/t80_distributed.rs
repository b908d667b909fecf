//! Distributed mode: every component in its own process over gRPC — one
//! metastore, two segment writers, a distributor, two query backends and a
//! query frontend — on one shared bucket. Exact totals per tenant and
//! service through the query API; both writers and both backends work.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use phlox_e2e::*;
use phlox_pprof::testkit::ProfileBuilder;
use phlox_proto::querier::v1 as q;
use phlox_proto::types::v1 as t;
use prost::Message;

const CPU: &str = "process_cpu:cpu:nanoseconds::";

async fn metrics(p: &Phlox) -> String {
    reqwest::get(format!("{}/metrics", p.http)).await.unwrap().text().await.unwrap()
}

/// Six processes on one shared filesystem bucket.
struct Cluster {
    _procs: Processes,
    metastore: Phlox,
    writers: Vec<Phlox>,
    distributor: Phlox,
    backends: Vec<Phlox>,
    frontend: Phlox,
}

impl Cluster {
    fn start() -> Self {
        let procs = Processes::new(
            "multitenancy_enabled: true\nsegment_writer:\n  shards: 16\nlimits:\n  ingestion_rate_mb: 0\n",
        );
        let start = |name: &str, args: &[&str]| procs.start(name, args);
        let metastore = start("metastore", &["--target", "metastore"]);
        let ms = metastore.grpc.clone();
        let writers = vec![
            start("writer-a", &["--target", "segment-writer", "--metastore-address", &ms]),
            start("writer-b", &["--target", "segment-writer", "--metastore-address", &ms]),
        ];
        let distributor = start("distributor", &["--target", "distributor", "--metastore-address", &ms]);
        let backends = vec![
            start("backend-a", &["--target", "query-backend"]),
            start("backend-b", &["--target", "query-backend"]),
        ];
        let list = format!("{},{}", backends[0].grpc, backends[1].grpc);
        let frontend =
            start("frontend", &["--target", "query-frontend", "--metastore-address", &ms, "--query-backends", &list]);
        Self { _procs: procs, metastore, writers, distributor, backends, frontend }
    }

    fn stop(self) {
        self.frontend.stop();
        self.distributor.stop();
        for w in self.writers {
            w.stop();
        }
        for b in self.backends {
            b.stop();
        }
        self.metastore.stop();
    }
}

/// Pushes one profile (one stack, `value`) until it is acked; the fixed
/// profile id makes retries idempotent, as SDK retries are.
async fn push_one(client: &reqwest::Client, url: &str, tenant: &str, service: &str, value: i64, time: i64, id: &str) {
    let mut b = ProfileBuilder::new("cpu", "nanoseconds");
    b.time_nanos(time).sample(&["main", service, "work"], &[value], &[]);
    let body = push_request(&[("__name__", "process_cpu"), ("service_name", service)], b.encode(), id).encode_to_vec();
    phlox_e2e::push_until_acked(client, url, tenant, body).await;
}

async fn flame_total(frontend: &Phlox, tenant: &str, selector: &str, s: i64, e: i64) -> i64 {
    phlox_e2e::flame_total(&frontend.http, tenant, CPU, selector, s, e).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_component_in_its_own_process_gives_exact_totals() {
    let c = Cluster::start();
    let (writers, distributor, backends, frontend) = (&c.writers, &c.distributor, &c.backends, &c.frontend);

    // Known profiles: 2 tenants × 3 services × 4 pushes, one stack each.
    let client = reqwest::Client::new();
    let now = now_nanos();
    let mut expected: BTreeMap<(String, String), i64> = BTreeMap::new();
    for round in 0..4i64 {
        for tenant in ["acme", "globex"] {
            for (k, service) in ["cart", "shop", "search"].into_iter().enumerate() {
                let value = 10 * (k as i64 + 1) + round + if tenant == "acme" { 0 } else { 1000 };
                let mut b = ProfileBuilder::new("cpu", "nanoseconds");
                b.time_nanos(now - round * 1_000_000_000).sample(&["main", service, "work"], &[value], &[]);
                let req = push_request(&[("__name__", "process_cpu"), ("service_name", service)], b.encode(), "");
                let r = client
                    .post(distributor.push_url())
                    .header("Content-Type", "application/proto")
                    .header("X-Scope-OrgID", tenant)
                    .body(req.encode_to_vec())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
                *expected.entry((tenant.to_owned(), service.to_owned())).or_default() += value;
            }
        }
    }

    // Every acked profile is there, exactly once, through the frontend.
    let (s, e) = (now / 1_000_000 - 60_000, now / 1_000_000 + 60_000);
    for ((tenant, service), total) in &expected {
        let r: q::SelectMergeStacktracesResponse = query(
            &frontend.http,
            tenant,
            "SelectMergeStacktraces",
            &q::SelectMergeStacktracesRequest {
                profile_type_id: CPU.into(),
                label_selector: format!("{{service_name=\"{service}\"}}"),
                start: s,
                end: e,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let fg = r.flamegraph.unwrap();
        assert_eq!(fg.total, *total, "{tenant}/{service}");
        assert!(fg.names.contains(service), "{tenant}/{service}: {:?}", fg.names);
    }
    let services: t::LabelValuesResponse = query(
        &frontend.http,
        "globex",
        "LabelValues",
        &t::LabelValuesRequest { name: "service_name".into(), matchers: vec![], start: s, end: e },
    )
    .await
    .unwrap();
    assert_eq!(services.names, vec!["cart", "search", "shop"]);
    let all: q::SelectMergeStacktracesResponse = query(
        &frontend.http,
        "acme|globex",
        "SelectMergeStacktraces",
        &q::SelectMergeStacktracesRequest {
            profile_type_id: CPU.into(),
            label_selector: "{}".into(),
            start: s,
            end: e,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(all.flamegraph.unwrap().total, expected.values().sum::<i64>());

    // Both writers took shards; both backends executed leaves.
    for w in writers {
        let m = metrics(w).await;
        assert!(metric(&m, "phlox_segment_writer_profiles_total") > 0.0, "a writer got nothing:\n{m}");
    }
    for b in backends {
        let m = metrics(b).await;
        assert!(metric(&m, "phlox_query_backend_leaf_duration_seconds_count") > 0.0, "a backend got nothing:\n{m}");
    }
    let written: f64 = {
        let mut sum = 0.0;
        for w in writers {
            sum += metric(&metrics(w).await, "phlox_segment_writer_profiles_total");
        }
        sum
    };
    assert_eq!(written as usize, expected.len() * 4, "every profile written once");
    c.stop();
}

/// A segment writer SIGKILLed during ingest and a query backend killed
/// during queries: every acked profile is present exactly once, and
/// queries fail over to the remaining backend, never answering partially.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_writer_and_a_backend_loses_and_duplicates_nothing() {
    let mut c = Cluster::start();
    let client = reqwest::Client::new();
    let now = now_nanos();
    let url = c.distributor.push_url();
    let pushes: Vec<(String, i64, String)> = (0..60i64)
        .map(|i| {
            let service = ["cart", "shop", "search", "auth"][(i % 4) as usize].to_owned();
            (service, 100 + i, format!("00000000-0000-4000-8000-{:012x}", i + 1))
        })
        .collect();
    let expected: i64 = pushes.iter().map(|p| p.1).sum();
    let ingest = {
        let (client, url, pushes) = (client.clone(), url.clone(), pushes.clone());
        tokio::spawn(async move {
            for (i, (service, value, id)) in pushes.iter().enumerate() {
                push_one(&client, &url, "acme", service, *value, now - i as i64 * 1_000_000, id).await;
            }
        })
    };
    // Kill writer b while pushes are in flight.
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    c.writers.remove(1).kill();
    ingest.await.unwrap();
    // Kill a query backend while queries run: each answer is complete
    // (the frontend retried its leaves on the other backend) or a clean
    // error, never a partial total.
    let (s, e) = (now / 1_000_000 - 60_000, now / 1_000_000 + 60_000);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (base, stop) = (c.frontend.http.clone(), std::sync::Arc::clone(&stop));
            tokio::spawn(async move {
                let mut answers = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r: Result<q::SelectMergeStacktracesResponse, _> = query(
                        &base,
                        "acme",
                        "SelectMergeStacktraces",
                        &q::SelectMergeStacktracesRequest {
                            profile_type_id: CPU.into(),
                            label_selector: "{}".into(),
                            start: s,
                            end: e,
                            ..Default::default()
                        },
                    )
                    .await;
                    answers.push(r.map(|r| r.flamegraph.map_or(0, |f| f.total)));
                }
                answers
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    c.backends.remove(1).kill();
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut complete, mut failed) = (0, 0);
    for task in load {
        for answer in task.await.unwrap() {
            match answer {
                Ok(total) => {
                    assert_eq!(total, expected, "a query answered a partial total");
                    complete += 1;
                }
                Err((status, body)) => {
                    assert!(status >= 500 && body.contains("\"message\""), "not a clean error: {status} {body}");
                    failed += 1;
                }
            }
        }
    }
    assert!(complete > 4, "queries kept being answered ({complete} complete, {failed} failed)");
    // Afterwards the remaining backend answers everything.
    assert_eq!(flame_total(&c.frontend, "acme", "{}", s, e).await, expected);
    for service in ["cart", "shop", "search", "auth"] {
        let want: i64 = pushes.iter().filter(|p| p.0 == service).map(|p| p.1).sum();
        assert_eq!(flame_total(&c.frontend, "acme", &format!("{{service_name=\"{service}\"}}"), s, e).await, want);
    }
    c.stop();
}

/// A segment writer told to drain under steady ingest: it leaves the
/// placement, flushes, reports itself drained, takes nothing afterwards,
/// and no acked profile is lost or counted twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_a_writer_under_steady_ingest_loses_and_duplicates_nothing() {
    let c = Cluster::start();
    let client = reqwest::Client::new();
    let now = now_nanos();
    let pushes: Vec<(String, i64, String)> = (0..40i64)
        .map(|i| {
            let service = ["cart", "shop", "search", "auth"][(i % 4) as usize].to_owned();
            (service, 500 + i, format!("00000000-0000-4000-9000-{:012x}", i + 1))
        })
        .collect();
    let ingest = {
        let (client, url, pushes) = (client.clone(), c.distributor.push_url(), pushes.clone());
        tokio::spawn(async move {
            for (i, (service, value, id)) in pushes.iter().enumerate() {
                push_one(&client, &url, "acme", service, *value, now - i as i64 * 1_000_000, id).await;
            }
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    // Never on the public port; on the admin listener, with its token.
    let public = client.post(format!("{}/segment-writer/drain", c.writers[1].http)).send().await.unwrap();
    assert_eq!(public.status().as_u16(), 404);
    let drain = format!("{}/segment-writer/drain", c.writers[1].admin);
    let auth = c.writers[1].admin_auth();
    let r = client.post(&drain).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401, "no token");
    let r = client.post(&drain).header("authorization", &auth).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let mut drained = false;
    for _ in 0..300 {
        let state: serde_json::Value = serde_json::from_slice(
            &client.get(&drain).header("authorization", &auth).send().await.unwrap().bytes().await.unwrap(),
        )
        .unwrap();
        assert_eq!(state["draining"], true);
        if state["drained"] == true {
            drained = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(drained, "the writer never reported itself drained");
    let m = metrics(&c.writers[1]).await;
    assert_eq!(metric(&m, "phlox_segment_writer_drained"), 1.0);
    let taken = metric(&m, "phlox_segment_writer_profiles_total");
    ingest.await.unwrap();
    assert_eq!(
        metric(&metrics(&c.writers[1]).await, "phlox_segment_writer_profiles_total"),
        taken,
        "a drained writer takes nothing"
    );
    let (s, e) = (now / 1_000_000 - 60_000, now / 1_000_000 + 60_000);
    assert_eq!(flame_total(&c.frontend, "acme", "{}", s, e).await, pushes.iter().map(|p| p.1).sum::<i64>());
    c.stop();
}

/// Two segment writers with the default configuration (4 shards, each
/// dataset on 2 of them) share the work: 20 services × 5 pods of profiles
/// give each writer between 35 % and 65 % of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_with_the_default_config_each_take_a_fair_share() {
    let procs = Processes::new("limits:\n  ingestion_rate_mb: 0\n");
    let metastore = procs.start("metastore", &["--target", "metastore"]);
    let ms = metastore.grpc.clone();
    let writers = [
        procs.start("writer-a", &["--target", "segment-writer", "--metastore-address", &ms]),
        procs.start("writer-b", &["--target", "segment-writer", "--metastore-address", &ms]),
    ];
    let distributor = procs.start("distributor", &["--target", "distributor", "--metastore-address", &ms]);
    let client = reqwest::Client::new();
    let now = now_nanos();
    let written = |m: &str| metric(m, "phlox_segment_writer_profiles_total");
    // Until the distributor knows both writers: warm-up pushes (each dataset
    // has a shard on each writer, so its pods reach both).
    for i in 0.. {
        assert!(i < 600, "the distributor never reached both writers");
        let pod = format!("warm-{i}");
        let mut b = ProfileBuilder::new("cpu", "nanoseconds");
        b.time_nanos(now).sample(&["main", "warm"], &[1], &[]);
        let body =
            push_request(&[("__name__", "process_cpu"), ("service_name", "warm"), ("pod", &pod)], b.encode(), "")
                .encode_to_vec();
        push_until_acked(&client, &distributor.push_url(), "anonymous", body).await;
        if written(&metrics(&writers[0]).await) > 0.0 && written(&metrics(&writers[1]).await) > 0.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let before = [written(&metrics(&writers[0]).await), written(&metrics(&writers[1]).await)];
    // All at once, as 100 pods push independently.
    let url = distributor.push_url();
    let pushes = (0..100).map(|i| {
        let (service, pod) = (format!("svc-{}", i / 5), format!("pod-{}", i % 5));
        let mut b = ProfileBuilder::new("cpu", "nanoseconds");
        b.time_nanos(now).sample(&["main", &service], &[1], &[]);
        let body =
            push_request(&[("__name__", "process_cpu"), ("service_name", &service), ("pod", &pod)], b.encode(), "")
                .encode_to_vec();
        let (client, url) = (client.clone(), url.clone());
        async move { push_until_acked(&client, &url, "anonymous", body).await }
    });
    futures::future::join_all(pushes).await;
    let got = [written(&metrics(&writers[0]).await) - before[0], written(&metrics(&writers[1]).await) - before[1]];
    assert_eq!(got[0] + got[1], 100.0, "every profile written once: {got:?}");
    for g in got {
        assert!((35.0..=65.0).contains(&g), "each writer takes 35–65 % of 100 profiles: {got:?}");
    }
    distributor.stop();
    for w in writers {
        w.stop();
    }
    metastore.stop();
}
