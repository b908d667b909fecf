//! SIGKILL while pushes are in flight: every acked profile survives exactly
//! once; unacked ones are present whole or absent, never partial; retrying
//! them after the restart stores each once.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use phlox_e2e::*;
use phlox_pprof::testkit::realistic_cpu_profile;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loses_no_acked_profile_and_counts_none_twice() {
    let (_tmp, dir) = data_dir();
    let server = Phlox::start(&dir, &["--segment-duration", "100ms", "--ingestion-rate-mb", "0"]);
    let url = server.push_url();
    let client = reqwest::Client::new();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let sent: Arc<Mutex<BTreeMap<String, phlox_proto::push::v1::PushRequest>>> = Arc::default();
    let mut pushers = Vec::new();
    for w in 0..6u64 {
        let (client, url, acked, sent) = (client.clone(), url.clone(), Arc::clone(&acked), Arc::clone(&sent));
        pushers.push(tokio::spawn(async move {
            for i in 0.. {
                let mut b = realistic_cpu_profile(1, w * 1000 + i, 50);
                b.time_nanos(now_nanos());
                let id = uuid::Uuid::new_v4().to_string();
                let pod = format!("pod-{w}");
                let req = push_request(
                    &[("__name__", "process_cpu"), ("service_name", "crashy"), ("pod", &pod)],
                    b.encode(),
                    &id,
                );
                sent.lock().unwrap().insert(id.clone(), req.clone());
                match push(&client, &url, &req).await {
                    Ok((200, _)) => acked.lock().unwrap().push(id),
                    Ok((status, body)) => panic!("unexpected {status}: {body}"),
                    Err(_) => return, // the server is gone
                }
            }
        }));
    }
    // Kill once a fair number of pushes were acked, with others in flight.
    while acked.lock().unwrap().len() < 40 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    server.kill();
    for p in pushers {
        p.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    let sent = sent.lock().unwrap().clone();

    // Restart on the same data: reads go through a fresh metastore and bucket.
    let got = dumped(&dump(&dir, &["anonymous"]));
    let mut stored: BTreeMap<String, i64> = BTreeMap::new();
    for profiles in got.values() {
        for (id, (_, total, _)) in profiles {
            assert!(stored.insert(id.clone(), *total).is_none(), "{id} stored in two series");
        }
    }
    for id in &acked {
        assert!(stored.contains_key(id), "acked profile {id} was lost");
    }
    // Present profiles are whole: their exact expected content.
    for (id, req) in &sent {
        if stored.contains_key(id) {
            let want = expected("anonymous", req, 0);
            for (series, profiles) in want {
                assert_eq!(got.get(&series).and_then(|p| p.get(id)), profiles.get(id), "profile {id} is partial");
            }
        }
    }

    // Clients retry what was not acked: after that, each profile is stored once.
    let server = Phlox::start(&dir, &["--ingestion-rate-mb", "0"]);
    for (id, req) in &sent {
        if !acked.contains(id) {
            let (status, body) = push(&client, &server.push_url(), req).await.unwrap();
            assert_eq!(status, 200, "{body}");
        }
        // A retry of an acked push is harmless too.
    }
    for id in acked.iter().take(5) {
        let (status, _) = push(&client, &server.push_url(), &sent[id]).await.unwrap();
        assert_eq!(status, 200);
    }
    server.stop();
    let got = dumped(&dump(&dir, &["anonymous"]));
    let ids: usize = got.values().map(|p| p.len()).sum();
    assert_eq!(ids, sent.len(), "every sent profile exactly once");
}

/// SIGTERM with `--shutdown-delay`: for the delay the process is not ready
/// but still answers, each HTTP/1.1 response closing its connection (a
/// keep-alive client moves to another replica instead of racing the
/// listener's close), new connections are still served; then it exits
/// cleanly and what it acknowledged is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_process_drains_its_keep_alive_clients_first() {
    use std::io::{Read, Write};
    let (_tmp, dir) = data_dir();
    let server = Phlox::start(&dir, &["--shutdown-delay", "3s"]);
    let addr = server.http.trim_start_matches("http://").to_owned();
    let request = b"GET /ready HTTP/1.1\r\nHost: phlox\r\n\r\n";
    // One response's head and body (/ready answers a short text body).
    let read_response = |conn: &mut std::net::TcpStream| {
        let mut buf = [0u8; 4096];
        let n = conn.read(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase()
    };
    let mut keep_alive = std::net::TcpStream::connect(&addr).unwrap();
    keep_alive.write_all(request).unwrap();
    let first = read_response(&mut keep_alive);
    assert!(first.starts_with("http/1.1 200"), "{first}");
    assert!(!first.contains("connection: close"), "{first}");

    server.signal("TERM");
    // The same connection is still answered: as before until the signal is
    // handled, then with `Connection: close` (and not ready), and closed.
    let mut draining = String::new();
    for _ in 0..200 {
        keep_alive.write_all(request).unwrap();
        draining = read_response(&mut keep_alive);
        if draining.contains("connection: close") {
            break;
        }
        assert!(draining.starts_with("http/1.1 200"), "{draining}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(draining.contains("connection: close"), "{draining}");
    let mut rest = Vec::new();
    keep_alive.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty(), "the connection is closed after the response");

    // Not ready for new connections either.
    let mut fresh = std::net::TcpStream::connect(&addr).unwrap();
    fresh.write_all(request).unwrap();
    let answer = read_response(&mut fresh);
    assert!(answer.starts_with("http/1.1 503"), "{answer}");

    // A new connection during the delay: a push is acknowledged.
    let mut b = realistic_cpu_profile(1, 7, 10);
    b.time_nanos(now_nanos());
    let req = push_request(
        &[("__name__", "process_cpu"), ("service_name", "leaving")],
        b.encode(),
        &uuid::Uuid::new_v4().to_string(),
    );
    let (status, body) = push(&reqwest::Client::new(), &server.push_url(), &req).await.unwrap();
    assert_eq!(status, 200, "{body}");

    let exit = server.wait_exit();
    assert!(exit.success(), "phlox exited with {exit}");
    let stored = dump(&dir, &["anonymous"]);
    assert_eq!(dumped(&stored), expected("anonymous", &req, 0), "the push acked while draining is stored whole");
}
