//! The S3-compatible server stops answering for 10 s during ingest (the
//! moto server is paused with SIGSTOP, then resumed): pushes wait or fail
//! and are retried, and afterwards every acked profile is present exactly
//! once. Needs the moto server `make test` installs (skipped without it,
//! failed without it under `PHLOX_TEST_REQUIRE_PYTHON`).
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::Duration;

use phlox_e2e::*;
use phlox_pprof::testkit::ProfileBuilder;
use phlox_proto::querier::v1 as q;
use prost::Message;

const CPU: &str = "process_cpu:cpu:nanoseconds::";

struct Moto(std::process::Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.0.id().to_string()]).status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(pid: u32, sig: &str) {
    assert!(Command::new("kill").args([sig, &pid.to_string()]).status().unwrap().success());
}

async fn push_one(client: &reqwest::Client, url: &str, value: i64, time: i64, id: &str) {
    let mut b = ProfileBuilder::new("cpu", "nanoseconds");
    b.time_nanos(time).sample(&["main", "work"], &[value], &[]);
    let body = push_request(&[("__name__", "process_cpu"), ("service_name", "svc")], b.encode(), id).encode_to_vec();
    phlox_e2e::push_until_acked(client, url, "anonymous", body).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_s3_outage_loses_and_duplicates_nothing() {
    let Ok(python) = std::env::var("PHLOX_TEST_PYTHON") else {
        assert!(std::env::var("PHLOX_TEST_REQUIRE_PYTHON").is_err(), "PHLOX_TEST_PYTHON is required");
        eprintln!("skipping: PHLOX_TEST_PYTHON (the venv with moto) is not set");
        return;
    };
    let moto_server = std::path::Path::new(&python).with_file_name("moto_server");
    let port = free_port();
    let moto = Moto(
        Command::new(&moto_server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let endpoint = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut created = false;
    for _ in 0..100 {
        if let Ok(r) = client.put(format!("{endpoint}/outage")).send().await
            && r.status().is_success()
        {
            created = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(created, "moto did not start");

    let (tmp, dir) = data_dir();
    let cfg = tmp.path().join("phlox.yaml");
    std::fs::write(
        &cfg,
        format!(
            "storage:\n  backend: s3\n  s3:\n    bucket: outage\n    endpoint: {endpoint}\n    region: us-east-1\n\
             \x20   access_key_id: test\n    secret_access_key: test\n    insecure: true\n\
             segment_writer:\n  segment_duration: 100ms\nlimits:\n  ingestion_rate_mb: 0\n"
        ),
    )
    .unwrap();
    let server = Phlox::start(&dir, &["--config", cfg.to_str().unwrap()]);
    let now = now_nanos();
    let values: Vec<i64> = (0..24).map(|i| 300 + i).collect();
    let ingest = {
        let (client, url, values) = (client.clone(), server.push_url(), values.clone());
        tokio::spawn(async move {
            for (i, v) in values.iter().enumerate() {
                let id = format!("00000000-0000-4000-a000-{:012x}", i + 1);
                push_one(&client, &url, *v, now - i as i64 * 1_000_000, &id).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(800)).await;
    signal(moto.0.id(), "-STOP");
    tokio::time::sleep(Duration::from_secs(10)).await;
    signal(moto.0.id(), "-CONT");
    ingest.await.unwrap();

    let r: q::SelectMergeStacktracesResponse = query(
        &server.http,
        "anonymous",
        "SelectMergeStacktraces",
        &q::SelectMergeStacktracesRequest {
            profile_type_id: CPU.into(),
            label_selector: "{}".into(),
            start: now / 1_000_000 - 60_000,
            end: now / 1_000_000 + 60_000,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let total = r.flamegraph.unwrap().total;
    assert_eq!(total, values.iter().sum::<i64>(), "every acked profile exactly once");
    server.stop();
}
