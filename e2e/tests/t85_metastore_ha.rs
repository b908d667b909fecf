//! Three metastore voters in three processes: the leader is SIGKILLed
//! during ingest, a new one is elected, followers forward, and every acked
//! profile is present exactly once afterwards.
#![allow(clippy::unwrap_used)]

use phlox_e2e::*;
use phlox_pprof::testkit::ProfileBuilder;
use phlox_proto::querier::v1 as q;
use prost::Message;

const CPU: &str = "process_cpu:cpu:nanoseconds::";

async fn raft_state(p: &Phlox) -> Option<i64> {
    let text = reqwest::get(format!("{}/metrics", p.http)).await.ok()?.text().await.ok()?;
    text.lines().find(|l| l.starts_with("phlox_metastore_raft_state "))?.rsplit(' ').next()?.parse().ok()
}

async fn push_one(client: &reqwest::Client, url: &str, value: i64, time: i64, id: &str) {
    let mut b = ProfileBuilder::new("cpu", "nanoseconds");
    b.time_nanos(time).sample(&["main", "work"], &[value], &[]);
    let body = push_request(&[("__name__", "process_cpu"), ("service_name", "svc")], b.encode(), id).encode_to_vec();
    phlox_e2e::push_until_acked(client, url, "anonymous", body).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metastore_survives_losing_its_leader_during_ingest() {
    let (tmp, _) = data_dir();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let peers: Vec<String> = ports.iter().enumerate().map(|(i, p)| format!("\"{}=127.0.0.1:{p}\"", i + 1)).collect();
    let cfg = tmp.path().join("phlox.yaml");
    std::fs::write(
        &cfg,
        format!(
            "storage:\n  backend: filesystem\n  filesystem:\n    dir: {}\nsegment_writer:\n  shards: 4\n\
             limits:\n  ingestion_rate_mb: 0\nmetastore:\n  peers: [{}]\n",
            tmp.path().join("bucket").display(),
            peers.join(", ")
        ),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap().to_owned();
    let starting: Vec<Starting> = ports
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (id, listen) = ((i + 1).to_string(), format!("127.0.0.1:{p}"));
            Phlox::spawn(
                &tmp.path().join(format!("metastore-{}", i + 1)),
                &[
                    "--config",
                    &cfg,
                    "--target",
                    "metastore",
                    "--metastore-node-id",
                    &id,
                    "--grpc-listen-address",
                    &listen,
                ],
            )
        })
        .collect();
    let mut metastores: Vec<Phlox> = starting.into_iter().map(Starting::wait).collect();
    let addresses = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect::<Vec<_>>().join(",");
    let other = |name: &str, target: &str| {
        Phlox::start(&tmp.path().join(name), &["--config", &cfg, "--target", target, "--metastore-address", &addresses])
    };
    let writer = other("writer", "segment-writer");
    let distributor = other("distributor", "distributor");
    let frontend = other("frontend", "query-frontend");

    let client = reqwest::Client::new();
    let now = now_nanos();
    let url = distributor.push_url();
    let values: Vec<i64> = (0..30).map(|i| 1000 + i).collect();
    for (i, v) in values.iter().enumerate().take(10) {
        push_one(&client, &url, *v, now - i as i64 * 1_000_000, &format!("00000000-0000-4000-8000-{:012x}", i + 1))
            .await;
    }
    // SIGKILL the leader; the other two elect a new one.
    let mut leader = None;
    for (i, m) in metastores.iter().enumerate() {
        if raft_state(m).await == Some(2) {
            leader = Some(i);
        }
    }
    let leader = leader.expect("one voter leads");
    metastores.remove(leader).kill();
    for (i, v) in values.iter().enumerate().skip(10) {
        push_one(&client, &url, *v, now - i as i64 * 1_000_000, &format!("00000000-0000-4000-8000-{:012x}", i + 1))
            .await;
    }
    let mut states = Vec::new();
    for m in &metastores {
        states.push(raft_state(m).await.unwrap_or(-1));
    }
    assert_eq!(states.iter().filter(|&&s| s == 2).count(), 1, "a new leader: {states:?}");

    let (s, e) = (now / 1_000_000 - 60_000, now / 1_000_000 + 60_000);
    let r: q::SelectMergeStacktracesResponse = query(
        &frontend.http,
        "anonymous",
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
    let total = r.flamegraph.unwrap().total;
    assert_eq!(total, values.iter().sum::<i64>(), "every acked profile exactly once");
    frontend.stop();
    distributor.stop();
    writer.stop();
    for m in metastores {
        m.stop();
    }
}
