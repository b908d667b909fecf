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
    server.stop();
    let got = dumped(&dump(&dir, &["anonymous"]));
    let totals: Vec<i64> = got.values().flat_map(|p| p.values().map(|v| v.1)).collect();
    assert_eq!(totals, vec![7], "{got:?}");
}

/// Without a client id, two identical profiles are two profiles (two pods'
/// idle profiles for the same labels and second look exactly alike):
/// Pyroscope stores both and so does Phlox, by Push and by /ingest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_profiles_without_an_id_count_twice() {
    let (_tmp, dir) = data_dir();
    let server = Phlox::start(&dir, &[]);
    let client = reqwest::Client::new();
    let anon = push_request(&[("__name__", "process_cpu"), ("service_name", "push")], profile(3), "");
    for _ in 0..2 {
        assert_eq!(push(&client, &server.push_url(), &anon).await.unwrap().0, 200);
    }
    let now = now_nanos() / 1_000_000_000;
    let url = format!("{}/ingest?name=folded.cpu&from={now}&until={now}&sampleRate=100", server.http);
    for _ in 0..2 {
        let r = client.post(&url).body("main;idle 5").send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    server.stop();
    let got = dumped(&dump(&dir, &["anonymous"]));
    let totals = |service: &str| -> Vec<i64> {
        got.iter()
            .filter(|(k, _)| k.contains(&format!("service_name={service:?}")))
            .flat_map(|(_, p)| p.values().map(|v| v.1))
            .collect()
    };
    assert_eq!(totals("push"), vec![3, 3]);
    assert_eq!(totals("folded"), vec![5 * 10_000_000, 5 * 10_000_000]);
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
        // A decompression bomb: small (highly compressed, under the rate
        // limit's burst), 300 MiB once inflated.
        (gzip_best(&vec![0u8; 300 << 20]), "gzip", Some("t1"), 429, "exceeds the limit"),
        (good.encode_to_vec(), "br", Some("t1"), 501, "unknown compression"),
        (good.encode_to_vec(), "identity", Some("bad/tenant"), 401, "unsupported character"),
    ];
    for (body, enc, tenant, status, msg) in cases {
        let (got, text) = post(body, enc, tenant).await;
        assert_eq!(got, status, "{text}");
        assert!(text.contains(msg), "{text} should mention {msg}");
        assert!(text.starts_with("{\"code\":"), "Connect error body: {text}");
    }
    // Too large a body gets a 413 (read up to the limit, so the client sees the answer).
    let (got, _) = post(vec![0u8; 257 << 20], "identity", Some("t1")).await;
    assert_eq!(got, 413);
    // Refusals are counted by reason.
    let metrics = client.get(format!("{}/metrics", server.http)).send().await.unwrap().text().await.unwrap();
    for reason in ["malformed_profile", "profile_too_large"] {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&format!("phlox_distributor_discarded_profiles_total{{reason=\"{reason}\"}}")))
            .unwrap_or_else(|| panic!("no discard metric for {reason}"));
        assert!(!line.ends_with(" 0"), "{line}");
    }
    // Still serving, and tenants are kept apart.
    assert_eq!(post(good.encode_to_vec(), "identity", Some("t1")).await.0, 200);
    assert_eq!(post(push_request(&labels, profile(5), "").encode_to_vec(), "identity", Some("t2")).await.0, 200);
    server.stop();
    let t1 = dumped(&dump(&dir, &["t1"]));
    let t2 = dumped(&dump(&dir, &["t2"]));
    assert_eq!(t1.values().flat_map(|p| p.values().map(|v| v.1)).collect::<Vec<_>>(), vec![1]);
    assert_eq!(t2.values().flat_map(|p| p.values().map(|v| v.1)).collect::<Vec<_>>(), vec![5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_ingest_and_otlp_bodies_are_refused_and_earlier_data_stays() {
    let (_tmp, dir) = data_dir();
    let server = Phlox::start(&dir, &["--ingestion-rate-mb", "0"]);
    let client = reqwest::Client::new();
    let ingest = |query: &'static str, ct: &'static str, body: Vec<u8>| {
        let (client, base) = (client.clone(), server.http.clone());
        async move {
            let r = client
                .post(format!("{base}/ingest?{query}"))
                .header("Content-Type", ct)
                .body(body)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // Earlier data.
    assert_eq!(ingest("name=keep.cpu&from=now", "text/plain", b"main;keep 5\n".to_vec()).await.0, 200);
    let good = profile(1);
    let bomb = gzip(&vec![0u8; 64 << 20]);
    let overflowing = {
        let mut b = phlox_pprof::testkit::ProfileBuilder::new("cpu", "nanoseconds");
        b.sample(&["a"], &[i64::MAX], &[]).sample(&["b"], &[1], &[]);
        b.encode()
    };
    type Case = (&'static str, &'static str, Vec<u8>, u16, &'static str);
    let cases: Vec<Case> = vec![
        ("name=app.cpu&format=pprof", "application/octet-stream", b"garbage".to_vec(), 422, "malformed pprof"),
        (
            "name=app.cpu&format=pprof",
            "application/octet-stream",
            good[..good.len() / 2].to_vec(),
            422,
            "malformed pprof",
        ),
        ("name=app.cpu&format=pprof", "application/octet-stream", bomb.clone(), 422, "exceeds limit"),
        ("name=app.cpu&format=pprof", "application/octet-stream", gzip(&good)[..10].to_vec(), 422, "gzip"),
        ("name=app.cpu", "multipart/form-data; boundary=xyz", b"--xyz\r\ngarbage".to_vec(), 422, "multipart"),
        ("name=app.cpu", "multipart/form-data", b"x".to_vec(), 422, "boundary"),
        ("name=app.cpu", "text/plain", b"main;a notanumber\n".to_vec(), 422, "line 1"),
        ("name=app.cpu", "text/plain", vec![0xff, 0xfe, b' ', b'1'], 422, "UTF-8"),
        ("name=app.cpu&format=tree", "binary/octet-stream+tree", vec![0x00, 0x00, 0x05, 0x01], 422, "truncated"),
        ("name=app.cpu&format=trie", "binary/octet-stream", vec![0xff; 12], 422, "varint"),
        (
            "name=app.cpu",
            "text/plain",
            b"main;a 9223372036854775807\nmain;b 9223372036854775807\n".to_vec(),
            400,
            "overflow a 64-bit total",
        ),
        ("name=app.cpu&format=pprof", "application/octet-stream", overflowing.clone(), 422, "overflow a 64-bit total"),
        ("name={a=b}", "text/plain", b"main 1\n".to_vec(), 400, "empty"),
        ("name=app.unknownsuffix", "text/plain", b"main 1\n".to_vec(), 400, "suffix"),
    ];
    for (query, ct, body, status, msg) in cases {
        let (got, text) = ingest(query, ct, body).await;
        assert_eq!(got, status, "{query}: {text}");
        assert!(text.contains(msg), "{query}: {text} should mention {msg}");
        assert!(text.starts_with("{\"code\":"), "Connect error body: {text}");
    }
    let (got, _) = ingest("name=app.cpu", "text/plain", vec![b'a'; 257 << 20]).await;
    assert_eq!(got, 413);
    // OTLP/HTTP.
    let otlp = format!("{}/v1development/profiles", server.http);
    for (ct, enc, body, status) in [
        ("application/x-protobuf", "identity", vec![0xff; 8], 400u16),
        ("application/json", "identity", b"{".to_vec(), 400),
        ("application/x-protobuf", "gzip", gzip(&vec![0u8; 300 << 20]), 413),
        ("application/x-protobuf", "gzip", b"notgzip".to_vec(), 400),
        ("text/csv", "identity", b"a,b".to_vec(), 415),
    ] {
        let r = client
            .post(&otlp)
            .header("Content-Type", ct)
            .header("Content-Encoding", enc)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{ct} {enc}");
    }
    // Still serving; the earlier upload is intact.
    assert_eq!(ingest("name=later.cpu&from=now", "text/plain", b"main;later 2\n".to_vec()).await.0, 200);
    server.stop();
    let got = dumped(&dump(&dir, &["anonymous"]));
    let mut totals: Vec<(String, i64)> = got
        .iter()
        .map(|(k, p)| (if k.contains("keep") { "keep" } else { "later" }.to_owned(), p.values().map(|v| v.1).sum()))
        .collect();
    totals.sort();
    assert_eq!(totals, vec![("keep".into(), 5 * 10_000_000), ("later".into(), 2 * 10_000_000)]);
}

fn gzip_best(b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}
