//! After an ack, a fresh process on the same data directory reads back
//! exactly what was pushed: series, totals, stacks.
#![allow(clippy::unwrap_used)]

use phlox_e2e::*;
use phlox_pprof::testkit::realistic_cpu_profile;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acked_profiles_read_back_exactly_after_a_restart() {
    let (_tmp, dir) = data_dir();
    let server = Phlox::start(&dir, &["--reject-older-than", "100000h", "--ingestion-rate-mb", "0"]);
    let client = reqwest::Client::new();
    let mut want = Expected::new();

    // Real SDK payloads: the Python SDK's Connect pushes...
    for req in python_captures() {
        let (status, body) = push(&client, &server.push_url(), &req).await.unwrap();
        assert_eq!(status, 200, "{body}");
        merge(&mut want, expected("anonymous", &req, 0));
    }
    // ...and the Node.js SDK's pprofs (wall and heap), pushed as Alloy would.
    for (file, name) in [
        ("node-pyroscope-nodejs-0.6.4-ingest-wall.pprof.gz", "wall"),
        ("node-pyroscope-nodejs-0.6.4-ingest-heap.pprof.gz", "memory"),
    ] {
        let raw = std::fs::read(captures_dir().join(file)).unwrap();
        let id = uuid::Uuid::new_v4().to_string();
        let req = push_request(&[("__name__", name), ("service_name", "demo.node"), ("region", "eu-west")], raw, &id);
        let (status, body) = push(&client, &server.push_url(), &req).await.unwrap();
        assert_eq!(status, 200, "{body}");
        // The heap profile has no timestamp: it gets the receive time, which
        // the expectation takes from what was stored (checked to be recent).
        merge(&mut want, expected("anonymous", &req, 0));
    }
    // Generated: 100 series of one service with deep stacks sharing frames.
    let now = now_nanos();
    let mut tasks = Vec::new();
    for i in 0..100u64 {
        let mut b = realistic_cpu_profile(7, i, 200);
        b.time_nanos(now + i as i64);
        let pod = format!("pod-{i}");
        let id = uuid::Uuid::new_v4().to_string();
        let req =
            push_request(&[("__name__", "process_cpu"), ("service_name", "shop"), ("pod", &pod)], b.encode(), &id);
        merge(&mut want, expected("anonymous", &req, 0));
        let (client, url) = (client.clone(), server.push_url());
        // 100 at once may find the decode pool's queue full (429, "retry
        // later"): retried as SDKs do; the same id makes a retry idempotent.
        tasks.push(tokio::spawn(async move {
            loop {
                let (status, body) = push(&client, &url, &req).await.unwrap();
                if status != 429 {
                    return (status, body);
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }));
    }
    for t in tasks {
        let (status, body) = t.await.unwrap();
        assert_eq!(status, 200, "{body}");
    }
    // Everything is acked: kill without any chance to flush.
    server.kill();

    let mut got = dumped(&dump(&dir, &["anonymous"]));
    // Profiles without their own time got the receive time: recent, and equal otherwise.
    for (series, profiles) in want.iter_mut() {
        for (id, (t, _, _)) in profiles.iter_mut() {
            if *t == 0 {
                let stored = got[series][id].0;
                assert!((now_nanos() - stored).abs() < 600 * 1_000_000_000, "receive time {stored} is not recent");
                *t = stored;
            }
        }
    }
    assert_eq!(got.len(), want.len(), "series count");
    assert_eq!(got, want);
    let profiles: usize = got.values().map(|p| p.len()).sum();
    assert!(profiles >= 104, "{profiles}");
    let shop = got.iter_mut().filter(|(k, _)| k.contains("service_name=\"shop\"")).count();
    assert_eq!(shop, 100);
}
