//! Idempotent pushes and hostile input over the real HTTP port.
#![allow(clippy::unwrap_used)]

use phlox_e2e::*;
use phlox_pprof::testkit::ProfileBuilder;

fn profile(value: i64) -> Vec<u8> {
    let mut b = ProfileBuilder::new("cpu", "nanoseconds");
    b.time_nanos(now_nanos()).sample(&["main", "work"], &[value], &[]);
    b.encode()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_profile_id_is_counted_once_even_across_restarts() {
    let (_tmp, dir) = data_dir();
    let server = Phlox::start(&dir, &[]);
    let client = reqwest::Client::new();
    let id = uuid::Uuid::new_v4().to_string();
    let req = push_request(&[("__name__", "process_cpu"), ("service_name", "svc")], profile(7), &id);
    for _ in 0..3 {
        assert_eq!(push(&client, &server.push_url(), &req).await.unwrap().0, 200);
    }
    server.stop();
    let server = Phlox::start(&dir, &[]);
    assert_eq!(push(&client, &server.push_url(), &req).await.unwrap().0, 200);
    // Without an id, a byte-identical retry is recognised by its content.
    let anon = push_request(&[("__name__", "process_cpu"), ("service_name", "svc")], profile(3), "");
    assert_eq!(push(&client, &server.push_url(), &anon).await.unwrap().0, 200);
    assert_eq!(push(&client, &server.push_url(), &anon).await.unwrap().0, 200);
    server.stop();
    let got = dumped(&dump(&dir, &["anonymous"]));
    let totals: Vec<i64> = got.values().flat_map(|p| p.values().map(|v| v.1)).collect();
    assert_eq!(totals.len(), 2, "{got:?}");
    assert_eq!(totals.iter().sum::<i64>(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_gets_clear_4xx_and_the_server_keeps_serving() {
    let (_tmp, dir) = data_dir();
    let server = Phlox::start(&dir, &["--multitenancy-enabled", "true"]);
    let client = reqwest::Client::new();
    let url = server.push_url();
    let labels = [("__name__", "process_cpu"), ("service_name", "svc")];
    let good = push_request(&labels, profile(1), "");
    let post = |body: Vec<u8>, encoding: &'static str, tenant: Option<&'static str>| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let mut r = client
                .post(&url)
                .header("Content-Type", "application/proto")
                .header("Content-Encoding", encoding)
                .body(body);
            if let Some(t) = tenant {
                r = r.header("X-Scope-OrgID", t);
            }
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    use prost::Message;
    // (body, content encoding, tenant, expected status, expected message)
    type Case<'a> = (Vec<u8>, &'a str, Option<&'a str>, u16, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (good.encode_to_vec(), "identity", None, 401, "no org id"),
        (b"garbage".to_vec(), "identity", Some("t1"), 400, "malformed PushRequest"),
        (b"garbage".to_vec(), "gzip", Some("t1"), 400, "gzip"),
        (gzip(&good.encode_to_vec())[..20].to_vec(), "gzip", Some("t1"), 400, "gzip"),
        (
            push_request(&labels, b"\x1f\x8b\x08\x00garbage".to_vec(), "").encode_to_vec(),
            "identity",
            Some("t1"),
            400,
            "gzip",
        ),
        (
            push_request(&labels, profile(1)[..10].to_vec(), "").encode_to_vec(),
            "identity",
            Some("t1"),
            400,
            "malformed pprof",
        ),
        (
            push_request(&labels, gzip(&vec![0u8; 32 << 20]), "").encode_to_vec(),
            "identity",
            Some("t1"),
            400,
            "exceeds limit",
        ),
        (gzip(&vec![0u8; 300 << 20]), "gzip", Some("t1"), 429, "exceeds the limit"),
        (good.encode_to_vec(), "br", Some("t1"), 501, "unknown compression"),
        (good.encode_to_vec(), "identity", Some("bad/tenant"), 401, "unsupported character"),
    ];
    for (body, enc, tenant, status, msg) in cases {
        let (got, text) = post(body, enc, tenant).await;
        assert_eq!(got, status, "{text}");
        assert!(text.contains(msg), "{text} should mention {msg}");
        assert!(text.starts_with("{\"code\":"), "Connect error body: {text}");
    }
    // Too large a body is refused before it is read.
    let (got, _) = post(vec![0u8; 257 << 20], "identity", Some("t1")).await;
    assert_eq!(got, 413);
    // Still serving, and tenants are kept apart.
    assert_eq!(post(good.encode_to_vec(), "identity", Some("t1")).await.0, 200);
    assert_eq!(post(push_request(&labels, profile(5), "").encode_to_vec(), "identity", Some("t2")).await.0, 200);
    server.stop();
    let t1 = dumped(&dump(&dir, &["t1"]));
    let t2 = dumped(&dump(&dir, &["t2"]));
    assert_eq!(t1.values().flat_map(|p| p.values().map(|v| v.1)).collect::<Vec<_>>(), vec![1]);
    assert_eq!(t2.values().flat_map(|p| p.values().map(|v| v.1)).collect::<Vec<_>>(), vec![5]);
}
