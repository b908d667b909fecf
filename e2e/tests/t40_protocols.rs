//! Every way a Pyroscope client pushes, through the real HTTP port: Connect
//! (proto and JSON), gRPC (h2c, with and without gzip), gRPC-Web, and
//! `/ingest` with the payloads captured from the Node.js SDK.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use phlox_e2e::*;
use phlox_pprof::{Profile, maybe_gunzip};
use phlox_proto::push::v1::pusher_service_client::PusherServiceClient;
use prost::Message;

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

/// Grafana's ad hoc view: a pprof file captured from the Node.js SDK is
/// uploaded (Connect JSON, base64), listed, read back per sample type and
/// diffed with a collapsed-stacks file; garbage gets a 400 naming the
/// problem. The standard health check answers over Connect and gRPC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adhoc_profiles_and_the_health_check_answer_as_grafana_calls_them() {
    let (_tmp, dir) = data_dir();
    let server = Phlox::start(&dir, &[]);
    let client = reqwest::Client::new();
    let call = |method: &str, body: serde_json::Value| {
        let (client, url) = (client.clone(), format!("{}/adhocprofiles.v1.AdHocProfileService/{method}", server.http));
        async move {
            let r = client
                .post(url)
                .header("Content-Type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, serde_json::from_str::<serde_json::Value>(&r.text().await.unwrap()).unwrap())
        }
    };
    let fb_ticks = |v: &serde_json::Value| -> serde_json::Value {
        let fb: serde_json::Value = serde_json::from_str(v["flamebearerProfile"].as_str().unwrap()).unwrap();
        fb["flamebearer"]["numTicks"].clone()
    };
    let raw = std::fs::read(captures_dir().join("node-pyroscope-nodejs-0.6.4-ingest-heap.pprof.gz")).unwrap();
    let totals = totals_by_type(&raw);
    let p = Profile::decode(&maybe_gunzip(&raw, 1 << 24).unwrap()).unwrap();
    let types: Vec<String> = p.sample_types.iter().map(|t| p.strings.str(t.r#type).to_owned()).collect();

    let (code, up) = call("Upload", serde_json::json!({"name": "heap.pprof.gz", "profile": encode_base64(&raw)})).await;
    assert_eq!(code, 200, "{up}");
    assert_eq!(up["profileTypes"], serde_json::json!(types));
    assert_eq!(up["profileType"], types[0].as_str());
    assert_eq!(fb_ticks(&up), totals[&types[0]], "the first sample type's total");
    let id = up["id"].as_str().unwrap().to_owned();

    let (code, got) = call("Get", serde_json::json!({"id": id, "profileType": types[1]})).await;
    assert_eq!((code, got["name"].as_str()), (200, Some("heap.pprof.gz")), "{got}");
    assert_eq!(fb_ticks(&got), totals[&types[1]]);
    let (code, missing) = call("Get", serde_json::json!({"id": "01ARZ3NDEKTSV4RRFFQ69G5FAV"})).await;
    assert_eq!((code, missing["code"].as_str()), (404, Some("not_found")), "{missing}");

    let folded = format!("main;work {}\n", totals[&types[0]] / 2);
    let (_, other) =
        call("Upload", serde_json::json!({"name": "half.txt", "profile": encode_base64(folded.as_bytes())})).await;
    let (code, listed) = call("List", serde_json::json!({})).await;
    assert_eq!(code, 200);
    let names: Vec<&str> = listed["profiles"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["heap.pprof.gz", "half.txt"]);
    // No sample type in common ("samples" vs the heap's types): refused.
    let (code, d) = call("Diff", serde_json::json!({"leftId": id, "rightId": other["id"]})).await;
    assert_eq!(code, 400, "{d}");
    let (code, d) = call("Diff", serde_json::json!({"leftId": id, "rightId": id, "profileType": types[1]})).await;
    assert_eq!(code, 200, "{d}");
    let fb: serde_json::Value = serde_json::from_str(d["flamebearerProfile"].as_str().unwrap()).unwrap();
    assert_eq!(
        (fb["leftTicks"].clone(), fb["rightTicks"].clone()),
        (totals[&types[1]].into(), totals[&types[1]].into())
    );

    let (code, bad) =
        call("Upload", serde_json::json!({"name": "x", "profile": encode_base64(b"\x00\x01garbage")})).await;
    assert_eq!(code, 400, "{bad}");
    assert!(bad["message"].as_str().unwrap().contains("neither pprof"), "{bad}");

    // Health: Connect JSON, then gRPC (h2c) through a generated client.
    let r = client
        .post(format!("{}/grpc.health.v1.Health/Check", server.http))
        .header("Content-Type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), r#"{"status":"SERVING"}"#);
    let mut health =
        phlox_proto::grpc::health::v1::health_client::HealthClient::connect(server.http.clone()).await.unwrap();
    let status = health.check(phlox_proto::grpc::health::v1::HealthCheckRequest::default()).await.unwrap();
    assert_eq!(status.into_inner().status, 1, "SERVING");
    // The status pages Grafana and operators read: YAML text.
    let status = |path: &'static str| {
        let (client, base) = (client.clone(), server.http.clone());
        async move {
            let r = client.get(format!("{base}/api/v1/status/{path}")).send().await.unwrap();
            assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8", "{path}");
            r.text().await.unwrap()
        }
    };
    let config = status("config").await;
    assert!(config.contains("multitenancy_enabled: false"), "{config}");
    assert!(config.contains("\nsegment_writer:\n"), "{config}");
    let defaults = status("config/default").await;
    assert!(defaults.contains("\nsegment_writer:\n"), "{defaults}");
    assert!(defaults.contains("data_dir: ./data\n"), "{defaults}");
    // The diff holds exactly what the command line changed (Phlox::start's
    // flags): the data dir and the two listen addresses, nothing else.
    let diff = status("config/diff").await;
    assert_eq!(
        diff,
        format!(
            "data_dir: {}\nserver:\n  http_listen_address: 127.0.0.1:0\n  grpc_listen_address: 127.0.0.1:0\n  admin_listen_address: 127.0.0.1:0\n",
            server.data_dir.display()
        )
    );
    server.stop();
}
