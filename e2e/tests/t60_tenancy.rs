//! Tenancy, authentication and per-tenant limits reloaded without a restart.
#![allow(clippy::unwrap_used)]

use phlox_e2e::*;
use phlox_pprof::testkit::ProfileBuilder;
use prost::Message;

fn config(small_tenant_label_limit: usize) -> String {
    format!(
        "multitenancy_enabled: true\nserver:\n  auth:\n    bearer_tokens: [\"s3cret\"]\n    basic_auth: [\"alloy:pw\"]\n\
         limits:\n  ingestion_rate_mb: 0\noverrides:\n  small:\n    max_label_names_per_series: {small_tenant_label_limit}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth_tenants_and_reloaded_overrides() {
    let (tmp, dir) = data_dir();
    let cfg = tmp.path().join("phlox.yaml");
    std::fs::write(&cfg, config(3)).unwrap();
    let server = Phlox::start(&dir, &["--config", cfg.to_str().unwrap()]);
    let client = reqwest::Client::new();
    let mut b = ProfileBuilder::new("cpu", "nanoseconds");
    b.time_nanos(now_nanos()).sample(&["main"], &[9], &[]);
    let body =
        push_request(&[("__name__", "process_cpu"), ("service_name", "svc"), ("a", "1"), ("b", "2")], b.encode(), "")
            .encode_to_vec();
    let send = |tenant: &'static str, auth: Option<&'static str>| {
        let (client, url, body) = (client.clone(), server.push_url(), body.clone());
        async move {
            let mut r =
                client.post(url).header("Content-Type", "application/proto").header("X-Scope-OrgID", tenant).body(body);
            if let Some(a) = auth {
                r = r.header("Authorization", a);
            }
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // Probes need no credentials; everything else does.
    assert_eq!(client.get(format!("{}/ready", server.http)).send().await.unwrap().status().as_u16(), 200);
    assert_eq!(send("big", None).await.0, 401);
    assert_eq!(send("big", Some("Bearer wrong")).await.0, 401);
    assert_eq!(send("big", Some("Bearer s3cret")).await.0, 200);
    assert_eq!(send("big", Some("Basic YWxsb3k6cHc=")).await.0, 200);
    // The override for tenant "small" allows 3 label names; the series has 4.
    let (status, text) = send("small", Some("Bearer s3cret")).await;
    assert_eq!(status, 400);
    assert!(text.contains("max_label_names_per_series"), "{text}");

    // Raise it in the file, signal a reload, and the same push goes through.
    std::fs::write(&cfg, config(10)).unwrap();
    server.signal("HUP");
    let mut accepted = false;
    for _ in 0..100 {
        if send("small", Some("Bearer s3cret")).await.0 == 200 {
            accepted = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(accepted, "the reloaded override was not applied");
    server.stop();
    let big = dumped(&dump(&dir, &["big"]));
    let small = dumped(&dump(&dir, &["small"]));
    assert_eq!(big.values().map(|p| p.len()).sum::<usize>(), 2, "two identical pushes without an id: both count");
    assert_eq!(small.values().map(|p| p.len()).sum::<usize>(), 1);
}
