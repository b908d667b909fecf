//! The admin surface is off the data path. A process started with the
//! configuration the operator renders (its server section as is) serves
//! deletes and the metastore's membership only on the admin listener,
//! behind the admin token: on the public port, where SDKs write, those
//! paths do not exist, whatever the credentials, and the data stays.
#![allow(clippy::unwrap_used)]

use phlox_e2e::*;
use phlox_pprof::testkit::ProfileBuilder;
use prost::Message;

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_and_membership_need_the_admin_listener_and_its_token() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../config/samples/pyroscopecluster-minimal.yaml");
    let mut cr: phlox_crds::v1alpha1::PyroscopeCluster =
        serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    cr.metadata.uid = Some("5b0b3c9e-7d53-4c1f-9a57-0d2b8d4c1e11".into());
    cr.spec.multitenancy_enabled = true;
    let names = phlox_operator::Names::of(&cr).unwrap();
    let rendered = serde_yaml::to_value(phlox_operator::phlox_config(&cr, &names).unwrap()).unwrap();
    assert_eq!(rendered["server"]["admin_token_file"], "/etc/phlox-admin/token");

    // One process instead of a cluster: the Kubernetes addresses and paths
    // become local ones; the server section stays as rendered but for
    // where the token file is mounted.
    let (tmp, dir) = data_dir();
    let token_file = tmp.path().join("admin-token");
    std::fs::write(&token_file, "s3cr3t-admin-token\n").unwrap();
    let mut config = rendered.clone();
    config["server"]["admin_token_file"] = token_file.to_str().unwrap().into();
    config["metastore"]["peers"] = serde_yaml::Value::Sequence(vec![]);
    config["metastore"]["address"] = serde_yaml::Value::Null;
    config["query_frontend"]["backends"] = serde_yaml::Value::Sequence(vec![]);
    config["storage"]["backend"] = "filesystem".into();
    config["storage"]["filesystem"]["dir"] = tmp.path().join("bucket").to_str().unwrap().into();
    let cfg = tmp.path().join("phlox.yaml");
    std::fs::write(&cfg, serde_yaml::to_string(&config).unwrap()).unwrap();
    let server = Phlox::start(&dir, &["--config", cfg.to_str().unwrap(), "--target", "all"]);

    let client = reqwest::Client::new();
    let mut b = ProfileBuilder::new("cpu", "nanoseconds");
    b.period("cpu", "nanoseconds", 10_000_000).time_nanos(now_nanos()).sample(&["main"], &[42], &[]);
    let body = push_request(&[("__name__", "process_cpu"), ("service_name", "app")], b.encode(), "").encode_to_vec();
    push_until_acked(&client, &server.push_url(), "acme", body).await;
    let (start, end) = (now_nanos() / 1_000_000 - 3_600_000, now_nanos() / 1_000_000 + 60_000);
    assert_eq!(flame_total(&server.http, "acme", CPU, "{}", start, end).await, 42);

    // The public port: no such paths, with or without the token.
    for path in ["/admin/v1/delete?from=now-1h&until=now%2B1h", "/segment-writer/drain", "/metastore/membership"] {
        for auth in [None, Some("Bearer s3cr3t-admin-token")] {
            let mut r = client.post(format!("{}{path}", server.http)).header("X-Scope-OrgID", "acme");
            if let Some(a) = auth {
                r = r.header("authorization", a);
            }
            assert_eq!(r.send().await.unwrap().status().as_u16(), 404, "{path} on the public port");
        }
    }
    assert_eq!(flame_total(&server.http, "acme", CPU, "{}", start, end).await, 42, "the data is still there");

    // The admin listener: nothing without the token, or with another.
    let delete = format!("{}/admin/v1/delete?from=now-1h&until=now%2B1h", server.admin);
    for auth in [None, Some("Bearer wrong"), Some("Basic YWRtaW46czNjcjN0")] {
        let mut r = client.post(&delete).header("X-Scope-OrgID", "acme");
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        let r = r.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{auth:?}");
    }
    let r = client
        .get(format!("{}/metastore/membership", server.admin))
        .header("authorization", "Bearer s3cr3t-admin-token")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(flame_total(&server.http, "acme", CPU, "{}", start, end).await, 42, "refused deletes changed nothing");
    // Probes stay open on both.
    assert_eq!(client.get(format!("{}/ready", server.admin)).send().await.unwrap().status().as_u16(), 200);

    // With the token: the delete goes through.
    let r = client
        .post(&delete)
        .header("X-Scope-OrgID", "acme")
        .header("authorization", "Bearer s3cr3t-admin-token")
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    assert!(status == 200 || status == 202, "{status}: {}", r.text().await.unwrap());
    eventually(
        "the deleted range to be gone",
        std::time::Duration::from_secs(60),
        std::time::Duration::from_millis(250),
        || {
            let base = server.http.clone();
            async move { (flame_total(&base, "acme", CPU, "{}", start, end).await == 0).then_some(()) }
        },
    )
    .await;

    // A rotated token file applies at once; the old token stops working.
    std::fs::write(&token_file, "rotated-token").unwrap();
    let old = client.get(format!("{}/admin/v1/deletions", server.admin)).header("X-Scope-OrgID", "acme");
    assert_eq!(old.header("authorization", "Bearer s3cr3t-admin-token").send().await.unwrap().status().as_u16(), 401);
    let new = client.get(format!("{}/admin/v1/deletions", server.admin)).header("X-Scope-OrgID", "acme");
    assert_eq!(new.header("authorization", "Bearer rotated-token").send().await.unwrap().status().as_u16(), 200);
}
