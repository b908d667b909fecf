//! The official Pyroscope Python SDK (`pyroscope-io`, pinned; installed by
//! `make test` into .venv) profiles a CPU-burning program against a real
//! `phlox`; the stored data shows the burning function and the SDK's tags.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use phlox_e2e::*;

/// The venv's Python with the SDK (`make test` sets it); without it the
/// test says it is skipped, and fails when `make test` required it.
fn python() -> Option<String> {
    let python = std::env::var("PHLOX_TEST_PYTHON").ok();
    if python.is_none() {
        assert!(
            std::env::var("PHLOX_TEST_REQUIRE_PYTHON").is_err(),
            "PHLOX_TEST_REQUIRE_PYTHON is set but PHLOX_TEST_PYTHON is not"
        );
        eprintln!("skipping: PHLOX_TEST_PYTHON is not set (make test sets it)");
    }
    python
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_profiles_land_with_their_tags_and_hot_function() {
    let Some(python) = python() else { return };
    let (_tmp, dir) = data_dir();
    let server = Phlox::start(&dir, &[]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/burn.py");
    let out = tokio::task::spawn_blocking({
        let http = server.http.clone();
        move || Command::new(python).args([script, &http, "4"]).output().unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));

    // The flame graph (render API) shows the burning function as the widest frame.
    let query = "process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name=\"e2e.python\"}";
    let r =
        reqwest::get(format!("{}/pyroscope/render?query={query}&from=now-15m&until=now", server.http)).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let names: Vec<&str> = v["flamebearer"]["names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap()).collect();
    let ticks = v["flamebearer"]["numTicks"].as_i64().unwrap();
    let burn = v["flamebearer"]["levels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| {
            l.as_array()
                .unwrap()
                .chunks(4)
                .map(|n| (names[n[3].as_i64().unwrap() as usize], n[1].as_i64().unwrap()))
                .collect::<Vec<_>>()
        })
        .filter(|(n, _)| n.contains("burn_cycles"))
        .map(|(_, t)| t)
        .max()
        .unwrap_or(0);
    assert!(ticks > 0 && burn * 2 > ticks, "burn_cycles is {burn} of {ticks} in the flame graph");
    server.stop();

    let got = dump(&dir, &["anonymous"]);
    let series: Vec<&serde_json::Value> =
        got["series"].as_array().unwrap().iter().filter(|s| s["labels"]["service_name"] == "e2e.python").collect();
    assert!(!series.is_empty(), "no series from the SDK: {got}");
    let mut total = 0i64;
    let mut burning = 0i64;
    for s in &series {
        assert_eq!(s["labels"]["region"], "eu-west");
        assert_eq!(s["labels"]["version"], "1.2");
        assert_eq!(s["labels"]["__profile_type__"], "process_cpu:cpu:nanoseconds:cpu:nanoseconds");
        for p in s["profiles"].as_array().unwrap() {
            for (stack, v) in p["stacks"].as_object().unwrap() {
                let v = v.as_i64().unwrap();
                total += v;
                if stack.split(';').any(|f| f.contains("burn_cycles")) {
                    burning += v;
                }
            }
        }
    }
    assert!(total > 0);
    assert!(burning * 2 > total, "burn_cycles holds {burning} of {total} ns of CPU");
}

/// The SDK's authentication options against credentials mapped to
/// tenants: basic auth without a tenant id lands in the credential's
/// tenant; a bearer token (as an HTTP header) with its tenant id lands
/// there; a tenant id the credential does not have lands nowhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_authenticates_into_its_tenant() {
    let Some(python) = python() else { return };
    let (tmp, dir) = data_dir();
    let cfg = tmp.path().join("phlox.yaml");
    std::fs::write(
        &cfg,
        "multitenancy_enabled: true\nserver:\n  auth:\n    tenants:\n\
         \x20     - {basic_auth: \"team-a:pw-a\", tenants: [team-a]}\n\
         \x20     - {bearer_token: tok-b, tenants: [team-b, shared]}\n",
    )
    .unwrap();
    let server = Phlox::start(&dir, &["--config", cfg.to_str().unwrap()]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/burn.py");
    let run = |env: Vec<(&'static str, &'static str)>| {
        let (python, http) = (python.clone(), server.http.clone());
        tokio::task::spawn_blocking(move || Command::new(python).args([script, &http, "3"]).envs(env).output().unwrap())
    };
    let runs = [
        run(vec![("BURN_APP", "sdk.basic"), ("BURN_BASIC_USER", "team-a"), ("BURN_BASIC_PASSWORD", "pw-a")]),
        run(vec![("BURN_APP", "sdk.bearer"), ("BURN_BEARER", "tok-b"), ("BURN_TENANT", "shared")]),
        run(vec![
            ("BURN_APP", "sdk.trespass"),
            ("BURN_BASIC_USER", "team-a"),
            ("BURN_BASIC_PASSWORD", "pw-a"),
            ("BURN_TENANT", "team-b"),
        ]),
        run(vec![("BURN_APP", "sdk.wrong"), ("BURN_BASIC_USER", "team-a"), ("BURN_BASIC_PASSWORD", "nope")]),
    ];
    for r in runs {
        let out = r.await.unwrap();
        assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    server.stop();
    let services = |tenant: &str| -> Vec<String> {
        let got = dump(&dir, &[tenant]);
        let mut s: Vec<String> = got["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["labels"]["service_name"].as_str().unwrap().to_owned())
            .collect();
        s.sort();
        s.dedup();
        s
    };
    assert_eq!(services("team-a"), vec!["sdk.basic"]);
    assert_eq!(services("shared"), vec!["sdk.bearer"]);
    assert!(services("team-b").is_empty(), "team-a's credential cannot write to team-b");
}
