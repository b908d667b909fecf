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

/// `POST /metastore/membership` with real processes: a single voter grows
/// to three (the new ones, started with the three-voter peer list, wait
/// unready until the leader adds them) and shrinks back to one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn voters_are_added_and_removed_through_the_leader() {
    let (tmp, _) = data_dir();
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let addr = |i: usize| format!("127.0.0.1:{}", ports[i]);
    let config = |name: &str, voters: usize| {
        let peers: Vec<String> = (0..voters).map(|i| format!("\"{}={}\"", i + 1, addr(i))).collect();
        let path = tmp.path().join(name);
        std::fs::write(
            &path,
            format!(
                "storage:\n  backend: filesystem\n  filesystem:\n    dir: {}\nmetastore:\n  peers: [{}]\n",
                tmp.path().join("bucket").display(),
                peers.join(", ")
            ),
        )
        .unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (one, three) = (config("one.yaml", 1), config("three.yaml", 3));
    let voter = |i: usize, cfg: &str| {
        let (id, listen) = ((i + 1).to_string(), addr(i));
        Phlox::spawn(
            &tmp.path().join(format!("metastore-{}", i + 1)),
            &["--config", cfg, "--target", "metastore", "--metastore-node-id", &id, "--grpc-listen-address", &listen],
        )
    };
    let first = voter(0, &one).wait();
    let joining: Vec<Starting> = (1..3).map(|i| voter(i, &three)).collect();

    let client = reqwest::Client::new();
    let membership = |p: &Phlox| {
        let (client, url, auth) = (client.clone(), format!("{}/metastore/membership", p.admin), p.admin_auth());
        async move {
            serde_json::from_str::<serde_json::Value>(
                &client.get(url).header("authorization", auth).send().await.unwrap().text().await.unwrap(),
            )
            .unwrap()
        }
    };
    let change = |p: &Phlox, voters: usize| {
        let body: serde_json::Map<String, serde_json::Value> =
            (0..voters).map(|i| ((i + 1).to_string(), serde_json::Value::from(addr(i)))).collect();
        let (client, url, auth) = (client.clone(), format!("{}/metastore/membership", p.admin), p.admin_auth());
        async move {
            let r = client
                .post(url)
                .header("authorization", auth)
                .header("content-type", "application/json")
                .body(serde_json::json!({ "voters": body }).to_string())
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), serde_json::from_str::<serde_json::Value>(&r.text().await.unwrap()).unwrap())
        }
    };
    // Longer than two election timeouts: the new nodes formed no group.
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let m = membership(&first).await;
    assert_eq!((m["leader"].as_u64(), m["voters"].as_object().unwrap().len()), (Some(1), 1), "{m}");

    let (status, m) = change(&first, 3).await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["voters"].as_object().unwrap().keys().collect::<Vec<_>>(), ["1", "2", "3"]);
    let joined: Vec<Phlox> = joining.into_iter().map(Starting::wait).collect();
    let m = membership(&joined[1]).await;
    assert_eq!((m["node_id"].as_u64(), m["leader"].as_u64()), (Some(3), Some(1)), "{m}");
    assert_eq!(m["voters"][&"3".to_owned()], addr(2));
    // A follower does not change the membership; it names the leader.
    let (status, m) = change(&joined[0], 1).await;
    assert_eq!((status, m["leader"].as_u64()), (409, Some(1)), "{m}");

    // Back to one voter, then the other two stop.
    let (status, m) = change(&first, 1).await;
    assert_eq!(status, 200, "{m}");
    assert_eq!(m["voters"].as_object().unwrap().len(), 1);
    for p in joined {
        p.stop();
    }
    let ready = client.get(format!("{}/ready", first.http)).send().await.unwrap().status().as_u16();
    assert_eq!(ready, 200, "one voter is a healthy group");
    first.stop();
}
