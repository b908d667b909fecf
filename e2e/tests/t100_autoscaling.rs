//! The operator's autoscaling logic against real segment writers: a load
//! generator pushes known profiles through a distributor while the loop
//! below plays the operator — it reads the writers' `/metrics` with the
//! operator's `LoadReader`, decides with `phlox_autoscaler::evaluate`,
//! starts writers to scale up and drains the newest one (the operator's
//! drain call) before stopping it to scale in. The pool goes 1 → 3 → 1 and
//! every acked profile is counted exactly once afterwards.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use phlox_autoscaler::{History, Settings, evaluate};
use phlox_e2e::*;
use phlox_operator::autoscale::{LoadReader, PodTarget, Signal, drain};
use phlox_pprof::testkit::ProfileBuilder;
use prost::Message;

const CPU: &str = "process_cpu:cpu:nanoseconds::";

/// A profile of ~`stacks` distinct stacks whose total is `value`.
fn profile(time: i64, stacks: usize, value: i64) -> Vec<u8> {
    let mut b = ProfileBuilder::new("cpu", "nanoseconds");
    b.time_nanos(time);
    let names: Vec<String> = (0..stacks).map(|i| format!("pkg/module{}.Function{}", i % 97, i)).collect();
    for (i, n) in names.iter().enumerate() {
        let v = if i == 0 { value - (stacks as i64 - 1) } else { 1 };
        b.sample(&["main", "serve", n.as_str()], &[v], &[]);
    }
    b.encode()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_scale_1_3_1_under_load_and_lose_nothing() {
    let procs = Processes::new("segment_writer:\n  shards: 16\nlimits:\n  ingestion_rate_mb: 0\n");
    let start = |name: &str, args: &[&str]| procs.start(name, args);
    let metastore = start("metastore", &["--target", "metastore,query-frontend,query-backend"]);
    let ms = metastore.grpc.clone();
    let distributor = start("distributor", &["--target", "distributor", "--metastore-address", &ms]);
    let mut writers = vec![start("writer-0", &["--target", "segment-writer", "--metastore-address", &ms])];
    let mut next_writer = 1;

    // The load generator: `concurrency` closed-loop pushers, each profile with
    // its own id and value; the expected total is what was acked.
    let concurrency = Arc::new(AtomicUsize::new(1));
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(AtomicI64::new(0));
    let pushes = Arc::new(AtomicI64::new(0));
    let now = now_nanos();
    let mut generators = Vec::new();
    for worker in 0..12usize {
        let (concurrency, stop, acked, pushes) =
            (Arc::clone(&concurrency), Arc::clone(&stop), Arc::clone(&acked), Arc::clone(&pushes));
        let url = distributor.push_url();
        generators.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut i = 0i64;
            while !stop.load(Ordering::Relaxed) {
                if worker >= concurrency.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                i += 1;
                let n = (worker as i64) * 1_000_000 + i;
                let value = 1000 + n % 1000;
                let id = format!("00000000-0000-4000-8000-{n:012x}");
                let service = ["cart", "shop", "search"][(n % 3) as usize];
                let body = push_request(
                    &[("__name__", "process_cpu"), ("service_name", service)],
                    profile(now - n * 1000, 400, value),
                    &id,
                )
                .encode_to_vec();
                push_until_acked(&client, &url, "anonymous", body).await;
                acked.fetch_add(value, Ordering::SeqCst);
                pushes.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }

    // The operator's loop, every second on real time.
    let settings = Settings {
        enabled: true,
        min_replicas: 1,
        max_replicas: 3,
        target_value: Some(0.15),
        scale_up_stabilization_window_seconds: 0,
        scale_down_stabilization_window_seconds: 3,
        max_scale_up_step: 4,
        max_scale_down_step: 1,
    };
    let http = reqwest::Client::new();
    let mut history = History::new();
    let mut reader = LoadReader::default();
    let clock = Instant::now();
    let mut replicas_seen = vec![1];
    let mut phase_high_until = None;
    concurrency.store(12, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(150);
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let pods: Vec<PodTarget> = writers
            .iter()
            .enumerate()
            .map(|(i, w)| PodTarget {
                name: format!("writer-{i}"),
                base_url: w.http.clone(),
                admin_url: w.admin.clone(),
                ready: true,
            })
            .collect();
        let now = clock.elapsed();
        let reading = reader.scrape(&http, Signal::IngestMegabytes, &pods, now).await;
        assert!(reading.errors.is_empty(), "{:?}", reading.errors);
        let current = writers.len() as i32;
        let d = evaluate(&mut history, &settings, 0.15, now.as_secs(), current, reading.observation);
        if d.desired > current {
            for _ in current..d.desired {
                let name = format!("writer-{next_writer}");
                next_writer += 1;
                writers.push(start(&name, &["--target", "segment-writer", "--metastore-address", &ms]));
            }
            history.record_scale(now.as_secs(), current, d.desired);
        } else if d.desired < current {
            // Drain the newest writer, wait until it says drained, then remove it.
            let victim = writers.pop().unwrap();
            let token = victim.admin_token();
            drain::start(&http, &victim.admin, &token).await.unwrap();
            let mut drained = false;
            for _ in 0..300 {
                if drain::state(&http, &victim.admin, &token).await.unwrap().drained {
                    drained = true;
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            assert!(drained, "a writer never drained");
            victim.stop();
            history.record_scale(clock.elapsed().as_secs(), current, current - 1);
        }
        let n = writers.len() as i32;
        if replicas_seen.last() != Some(&n) {
            replicas_seen.push(n);
        }
        // Once at 3, keep the load a few seconds, then drop it to one pusher.
        if n == 3 && phase_high_until.is_none() {
            phase_high_until = Some(Instant::now() + Duration::from_secs(3));
        }
        if phase_high_until.is_some_and(|t| Instant::now() >= t) {
            concurrency.store(1, Ordering::Relaxed);
        }
        if phase_high_until.is_some() && n == 1 {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for g in generators {
        g.await.unwrap();
    }
    assert_eq!(replicas_seen, vec![1, 3, 2, 1], "the pool went up to 3 and back, one writer at a time");

    // Every acked profile exactly once.
    let expected = acked.load(Ordering::SeqCst);
    let (s, e) = (now / 1_000_000 - 3_600_000, now / 1_000_000 + 60_000);
    let total = flame_total(&metastore.http, "anonymous", CPU, "{}", s, e).await;
    println!("{} pushes acked, total {expected}; replicas {replicas_seen:?}", pushes.load(Ordering::SeqCst));
    assert_eq!(total, expected);
    for w in writers {
        w.stop();
    }
    distributor.stop();
    metastore.stop();
}
