//! Every way a Pyroscope client pushes, through the real HTTP port: Connect
//! (proto and JSON), gRPC (h2c, with and without gzip), gRPC-Web, and
//! `/ingest` with the payloads captured from the Node.js SDK.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use base64_free::encode_base64;
use phlox_e2e::*;
use phlox_pprof::{Profile, maybe_gunzip};
use phlox_proto::push::v1::pusher_service_client::PusherServiceClient;
use prost::Message;

mod base64_free {
    /// Standard base64 (the e2e crate keeps its dependencies minimal).
    pub(crate) fn encode_base64(b: &[u8]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for c in b.chunks(3) {
            let n = (u32::from(c[0]) << 16)
                | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
                | u32::from(*c.get(2).unwrap_or(&0));
            for i in 0..4 {
                if i <= c.len() {
                    out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

fn totals_by_type(raw: &[u8]) -> BTreeMap<String, i64> {
    let p = Profile::decode(&maybe_gunzip(raw, 1 << 24).unwrap()).unwrap();
    p.sample_types
        .iter()
        .enumerate()
        .map(|(t, vt)| (p.strings.str(vt.r#type).to_owned(), (0..p.sample_count()).map(|i| p.sample_value(i, t)).sum()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_push_protocol_and_the_ingest_api_store_what_clients_send() {
    let (_tmp, dir) = data_dir();
    let server = Phlox::start(&dir, &["--reject-older-than", "100000h", "--ingestion-rate-mb", "0"]);
    let http = reqwest::Client::new();
    let captures = python_captures();

    // gRPC over h2c, gzip-compressed, as profilecli/Alloy can.
    let mut grpc = PusherServiceClient::connect(server.http.clone())
        .await
        .unwrap()
        .send_compressed(tonic::codec::CompressionEncoding::Gzip);
    grpc.push(captures[0].clone()).await.unwrap();
    // gRPC errors carry gRPC status codes.
    let bad = push_request(&[("service_name", "x")], vec![1, 2, 3], "");
    let err = grpc.push(bad).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");

    // gRPC-Web: 5-byte frame, trailers in the body.
    let msg = captures[1].encode_to_vec();
    let mut frame = vec![0u8];
    frame.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    frame.extend_from_slice(&msg);
    let r = http
        .post(server.push_url())
        .header("Content-Type", "application/grpc-web+proto")
        .body(frame)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body = r.bytes().await.unwrap();
    assert!(String::from_utf8_lossy(&body).contains("grpc-status:0"), "{body:?}");

    // Connect + JSON, as the Grafana apps send.
    let mut b = phlox_pprof::testkit::ProfileBuilder::new("cpu", "nanoseconds");
    b.time_nanos(now_nanos()).sample(&["main", "json"], &[42], &[]);
    let json = format!(
        r#"{{"series":[{{"labels":[{{"name":"__name__","value":"process_cpu"}},{{"name":"service_name","value":"json-app"}}],"samples":[{{"rawProfile":"{}","ID":"5f8e7d4c-0000-4000-8000-000000000001"}}]}}]}}"#,
        encode_base64(&b.encode())
    );
    let r = http.post(server.push_url()).header("Content-Type", "application/json").body(json).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().await.unwrap(), "{}");
    let r = http
        .post(server.push_url())
        .header("Content-Type", "application/json")
        .body("{\"series\": 3}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);

    // /ingest exactly as the Node.js SDK sent it.
    let mut node_totals = BTreeMap::new();
    for kind in ["wall", "heap"] {
        let meta: serde_json::Value = serde_json::from_slice(
            &std::fs::read(captures_dir().join(format!("node-pyroscope-nodejs-0.6.4-ingest-{kind}.request.json")))
                .unwrap(),
        )
        .unwrap();
        let body =
            std::fs::read(captures_dir().join(format!("node-pyroscope-nodejs-0.6.4-ingest-{kind}.pprof.gz"))).unwrap();
        node_totals.extend(totals_by_type(&body));
        let r = http
            .post(format!("{}{}", server.http, meta["path"].as_str().unwrap()))
            .header("Content-Type", meta["headers"]["content-type"].as_str().unwrap())
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{}", r.text().await.unwrap());
    }
    // A folded upload with sampleRate scaling.
    let r = http
        .post(format!("{}/pyroscope/ingest?name=folded.app.cpu{{env=dev}}&sampleRate=100&spyName=gospy", server.http))
        .body("main;work 3\nmain;idle 1\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    server.stop();

    let got = dump(&dir, &["anonymous"]);
    let series = got["series"].as_array().unwrap();
    let find = |service: &str, profile_type: &str| -> (serde_json::Value, i64) {
        let s = series
            .iter()
            .find(|s| s["labels"]["service_name"] == service && s["labels"]["__profile_type__"] == profile_type)
            .unwrap_or_else(|| panic!("no series {service} {profile_type}"));
        (s["labels"].clone(), s["profiles"].as_array().unwrap().iter().map(|p| p["total"].as_i64().unwrap()).sum())
    };
    // Python captures through gRPC and gRPC-Web.
    let python: i64 = series
        .iter()
        .filter(|s| s["labels"]["service_name"] == "demo.python")
        .flat_map(|s| s["profiles"].as_array().unwrap().iter().map(|p| p["total"].as_i64().unwrap()))
        .sum();
    let want: i64 = captures
        .iter()
        .flat_map(|r| r.series.iter().flat_map(|s| s.samples.iter().map(|x| totals_by_type(&x.raw_profile)["cpu"])))
        .sum();
    assert_eq!(python, want);
    // JSON.
    assert_eq!(find("json-app", "process_cpu:cpu:nanoseconds::").1, 42);
    // Node.js: __name__ from the sample types, labels from `name`, pyroscope_spy.
    let (labels, total) = find("demo.node", "wall:wall:nanoseconds:wall:nanoseconds");
    assert_eq!(total, node_totals["wall"]);
    assert_eq!(labels["pyroscope_spy"], "nodespy");
    assert_eq!(labels["region"], "eu-west");
    assert_eq!(labels["otel.scope.name"], "com.grafana.pyroscope/nodejs");
    assert_eq!(find("demo.node", "wall:samples:count:wall:nanoseconds").1, node_totals["samples"]);
    assert_eq!(find("demo.node", "memory:inuse_space:bytes:inuse_space:bytes").1, node_totals["inuse_space"]);
    assert_eq!(find("demo.node", "memory:inuse_objects:count:inuse_space:bytes").1, node_totals["inuse_objects"]);
    // Folded: 4 samples at 100 Hz = 40 ms of CPU, the app suffix stripped.
    let (labels, total) = find("folded.app", "process_cpu:cpu:nanoseconds:cpu:nanoseconds");
    assert_eq!(total, 40_000_000);
    assert_eq!(labels["env"], "dev");
}
