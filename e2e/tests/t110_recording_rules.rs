//! Recording rules through the real binary: the CRUD API as Grafana calls
//! it (Connect JSON) and in binary proto, validation errors as 400s naming
//! the problem, optimistic concurrency, the per-tenant limit, and rules
//! provisioned from the configuration listed read-only.
#![allow(clippy::unwrap_used)]

use phlox_e2e::*;
use phlox_proto::settings::v1 as s;
use prost::Message;
use serde_json::{Value, json};

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

async fn call(base: &str, tenant: &str, method: &str, body: Value) -> (u16, Value) {
    connect_json(base, tenant, &format!("settings.v1.RecordingRulesService/{method}"), body).await
}

/// A unary Connect JSON call as Grafana makes it: status and parsed body.
async fn connect_json(base: &str, tenant: &str, path: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}/{path}"))
        .header("Content-Type", "application/json")
        .header("X-Scope-OrgID", tenant)
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_are_managed_through_connect_json_and_proto() {
    let (tmp, dir) = data_dir();
    let cfg = tmp.path().join("phlox.yaml");
    std::fs::write(
        &cfg,
        format!(
            "multitenancy_enabled: true\nlimits:\n  max_recording_rules: 2\n\
             recording_rules:\n  rules:\n    acme:\n      - id: from-git\n        metric_name: profiles_recorded_git\n\
             \x20       matchers: ['{{__profile_type__=\"{CPU}\"}}']\n        external_labels: {{team: core}}\n"
        ),
    )
    .unwrap();
    let server = Phlox::start(&dir, &["--config", cfg.to_str().unwrap()]);
    let base = server.http.clone();

    // Create, as Grafana does (protobuf-JSON, camelCase).
    let rule = json!({
        "metricName": "profiles_recorded_checkout_cpu",
        "matchers": [format!("{{__profile_type__=\"{CPU}\", service_name=\"checkout\"}}")],
        "groupBy": ["region"],
        "externalLabels": [{"name": "team", "value": "payments"}],
        "stacktraceFilter": {"functionName": {"functionName": "crypto/tls.(*Conn).Handshake", "metricType": "TOTAL"}}
    });
    let (code, created) = call(&base, "acme", "UpsertRecordingRule", rule.clone()).await;
    assert_eq!(code, 200, "{created}");
    let created = &created["rule"];
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["profileType"], CPU);
    assert_eq!(created["generation"], "1", "int64 as a string in protobuf-JSON");
    assert_eq!(created["groupBy"], json!(["region"]));
    assert_eq!(created["stacktraceFilter"]["functionName"]["functionName"], "crypto/tls.(*Conn).Handshake");

    // List: the provisioned rule first, read-only.
    let (code, list) = call(&base, "acme", "ListRecordingRules", json!({})).await;
    assert_eq!(code, 200);
    let rules = list["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 2, "{list}");
    assert_eq!((rules[0]["id"].as_str(), rules[0]["provisioned"].as_bool()), (Some("from-git"), Some(true)));
    assert_eq!(rules[1]["id"], id.as_str());
    let (code, body) = call(&base, "acme", "DeleteRecordingRule", json!({"id": "from-git"})).await;
    assert_eq!(code, 403, "{body}");
    assert!(body["message"].as_str().unwrap().contains("provisioned"), "{body}");
    // Another tenant sees none of them.
    let (_, other) = call(&base, "globex", "ListRecordingRules", json!({})).await;
    assert_eq!(other, json!({}), "no rules: the empty message");

    // Update with the generation read; a stale generation is refused.
    let mut update = rule.clone();
    update["id"] = json!(id);
    update["generation"] = json!("1");
    update["groupBy"] = json!(["region", "pod"]);
    let (code, updated) = call(&base, "acme", "UpsertRecordingRule", update.clone()).await;
    assert_eq!(code, 200, "{updated}");
    assert_eq!(updated["rule"]["generation"], "2");
    let (code, body) = call(&base, "acme", "UpsertRecordingRule", update).await;
    assert_eq!(code, 409, "{body}");
    assert_eq!(body["code"], "aborted");

    // Invalid rules: 400 naming the problem.
    for (field, value, message) in [
        ("metricName", json!("cpu_seconds"), "must start with \"profiles_recorded_\""),
        ("matchers", json!(["{service_name=\"x\"}"]), "exactly one __profile_type__"),
        ("groupBy", json!(["service.name"]), "group_by \"service.name\""),
    ] {
        let mut bad = rule.clone();
        bad[field] = value;
        let (code, body) = call(&base, "acme", "UpsertRecordingRule", bad).await;
        assert_eq!(code, 400, "{body}");
        assert_eq!(body["code"], "invalid_argument");
        assert!(body["message"].as_str().unwrap().contains(message), "{body}");
    }
    let (code, body) = call(&base, "acme", "UpsertRecordingRule", json!("not an object")).await;
    assert_eq!(code, 400, "{body}");

    // The limit (2 here) counts the API's rules only.
    let (code, _) = call(&base, "acme", "UpsertRecordingRule", rule.clone()).await;
    assert_eq!(code, 200);
    let (code, body) = call(&base, "acme", "UpsertRecordingRule", rule.clone()).await;
    assert_eq!(code, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("already has 2 recording rules"), "{body}");

    // Binary proto works the same; Get and Delete.
    let r = reqwest::Client::new()
        .post(format!("{base}/settings.v1.RecordingRulesService/GetRecordingRule"))
        .header("Content-Type", "application/proto")
        .header("X-Scope-OrgID", "acme")
        .body(s::GetRecordingRuleRequest { id: id.clone() }.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let got = s::GetRecordingRuleResponse::decode(r.bytes().await.unwrap()).unwrap().rule.unwrap();
    assert_eq!((got.id.as_str(), got.generation, got.group_by.len()), (id.as_str(), 2, 2));
    let (code, _) = call(&base, "acme", "DeleteRecordingRule", json!({"id": id})).await;
    assert_eq!(code, 200);
    let (code, body) = call(&base, "acme", "GetRecordingRule", json!({"id": id})).await;
    assert_eq!(code, 404, "{body}");
    // Rules survive a restart (they live in the bucket).
    server.stop();
    let server = Phlox::start(&dir, &["--config", cfg.to_str().unwrap()]);
    let (_, list) = call(&server.http, "acme", "ListRecordingRules", json!({})).await;
    assert_eq!(list["rules"].as_array().unwrap().len(), 2);
    server.stop();
}

/// Where the recorded metrics land: a real Prometheus (Debian's package,
/// installed by `scripts/ensure-test-tools.sh`) with its remote-write
/// receiver on.
struct Prometheus {
    child: std::process::Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus on a free port; `None` (and a line saying why) when
    /// it is not installed, a failure under `PHLOX_TEST_REQUIRE_PROMETHEUS`
    /// (set by `make test`).
    async fn start() -> Option<Self> {
        if std::process::Command::new("prometheus").arg("--version").output().is_err() {
            assert!(
                std::env::var_os("PHLOX_TEST_REQUIRE_PROMETHEUS").is_none(),
                "PHLOX_TEST_REQUIRE_PROMETHEUS is set but `prometheus` is not on PATH \
                 (scripts/ensure-test-tools.sh installs Debian's package)"
            );
            println!(
                "SKIPPED: `prometheus` is not on PATH (apt-get install prometheus, or run `make test`, \
                 which installs it); the recorded metrics need a real receiver"
            );
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, "global:\n  scrape_interval: 15s\n").unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
        let mut child = std::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..300 {
            if reqwest::get(format!("{base}/-/ready")).await.is_ok_and(|r| r.status().is_success()) {
                println!("receiver: Prometheus (Debian package) on {base}");
                return Some(Self { child, base, _dir: dir });
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("prometheus did not become ready");
    }

    fn write_url(&self) -> String {
        format!("{}/api/v1/write", self.base)
    }

    /// Per series of `metric` (labels without `__name__`, "k=v,..." sorted):
    /// the sum of its samples of the last 10 minutes.
    async fn sums(&self, metric: &str) -> std::collections::BTreeMap<String, f64> {
        let q = format!("sum_over_time({metric}[10m])");
        let r = reqwest::Client::new()
            .post(format!("{}/api/v1/query", self.base))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(format!("query={}", q.replace('[', "%5B").replace(']', "%5D")))
            .send()
            .await
            .unwrap();
        let v: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(v["status"], "success", "{v}");
        let mut out = std::collections::BTreeMap::new();
        for s in v["data"]["result"].as_array().unwrap() {
            let mut labels: Vec<(String, String)> = s["metric"]
                .as_object()
                .unwrap()
                .iter()
                .filter(|(k, _)| *k != "__name__")
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            labels.sort();
            let value: f64 = s["value"][1].as_str().unwrap().parse().unwrap();
            out.insert(labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","), value);
        }
        out
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Rules created through the API are evaluated as segments are compacted,
/// and Prometheus holds exactly the expected values and labels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_metrics_reach_prometheus_with_exact_values_and_labels() {
    use phlox_pprof::testkit::ProfileBuilder;
    let Some(receiver) = Prometheus::start().await else { return };
    let (tmp, dir) = data_dir();
    let cfg = tmp.path().join("phlox.yaml");
    std::fs::write(
        &cfg,
        format!(
            "multitenancy_enabled: true\nsegment_writer:\n  segment_duration: 100ms\n  shards: 1\n\
             limits:\n  ingestion_rate_mb: 0\n\
             compaction:\n  min_blocks: [20, 10, 10]\n  max_age_seconds: [1, 600, 3600]\n  poll_interval: 200ms\n\
             recording_rules:\n  remote_write_url: {}\n",
            receiver.write_url()
        ),
    )
    .unwrap();
    let server = Phlox::start(&dir, &["--config", cfg.to_str().unwrap()]);
    let base = server.http.clone();
    let api = format!("{{__profile_type__=\"{CPU}\", service_name=\"api\"}}");
    let (code, total) = call(
        &base,
        "acme",
        "UpsertRecordingRule",
        json!({"metricName": "profiles_recorded_api_cpu_nanoseconds", "matchers": [api.clone()],
               "groupBy": ["region"], "externalLabels": [{"name": "team", "value": "core"}]}),
    )
    .await;
    assert_eq!(code, 200, "{total}");
    let total_id = total["rule"]["id"].as_str().unwrap().to_owned();
    let (code, parse) = call(
        &base,
        "acme",
        "UpsertRecordingRule",
        json!({"metricName": "profiles_recorded_api_parse_nanoseconds", "matchers": [api],
               "groupBy": ["region"],
               "stacktraceFilter": {"functionName": {"functionName": "parse", "metricType": "TOTAL"}}}),
    )
    .await;
    assert_eq!(code, 200, "{parse}");
    let parse_id = parse["rule"]["id"].as_str().unwrap().to_owned();

    // Known profiles: api/eu twice, api/us once, web (matched by no rule), and another tenant.
    let client = reqwest::Client::new();
    let now = now_nanos();
    let push = |tenant: &'static str, service: &'static str, region: &'static str, parse: i64, render: i64, n: i64| {
        let mut b = ProfileBuilder::new("cpu", "nanoseconds");
        b.period("cpu", "nanoseconds", 10_000_000)
            .time_nanos(now - n * 1_000_000_000)
            .sample(&["main", "handle", "parse"], &[parse], &[])
            .sample(&["main", "handle", "render"], &[render], &[]);
        let id = format!("00000000-0000-4000-8000-{n:012x}");
        let req = push_request(
            &[("__name__", "process_cpu"), ("service_name", service), ("region", region)],
            b.encode(),
            &id,
        );
        let (client, url) = (client.clone(), server.push_url());
        async move { push_until_acked(&client, &url, tenant, req.encode_to_vec()).await }
    };
    push("acme", "api", "eu", 10, 20, 1).await;
    push("acme", "api", "eu", 5, 0, 2).await;
    push("acme", "api", "us", 1, 2, 3).await;
    push("acme", "web", "eu", 100, 100, 4).await;
    push("globex", "api", "eu", 1000, 1000, 5).await;
    let acked = std::time::Instant::now();

    let want_total: std::collections::BTreeMap<String, f64> = [
        (format!("profiles_rule_id={total_id},profiles_shard=0,region=eu,team=core"), 35.0),
        (format!("profiles_rule_id={total_id},profiles_shard=0,region=us,team=core"), 3.0),
    ]
    .into_iter()
    .collect();
    let want_parse: std::collections::BTreeMap<String, f64> = [
        (format!("profiles_rule_id={parse_id},profiles_shard=0,region=eu"), 15.0),
        (format!("profiles_rule_id={parse_id},profiles_shard=0,region=us"), 1.0),
    ]
    .into_iter()
    .collect();
    let mut lag = None;
    for _ in 0..150 {
        let t = receiver.sums("profiles_recorded_api_cpu_nanoseconds").await;
        let p = receiver.sums("profiles_recorded_api_parse_nanoseconds").await;
        if t == want_total && p == want_parse {
            lag = Some(acked.elapsed());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    if lag.is_none() {
        let metrics = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
        let ours: Vec<&str> =
            metrics.lines().filter(|l| l.starts_with("phlox_recording") || l.starts_with("phlox_compaction")).collect();
        panic!(
            "recorded metrics differ:\n{:?}\n{:?}\n{}",
            receiver.sums("profiles_recorded_api_cpu_nanoseconds").await,
            receiver.sums("profiles_recorded_api_parse_nanoseconds").await,
            ours.join("\n")
        );
    }
    println!("recording lag (last push acked → metric queryable): {:.1} s", lag.unwrap().as_secs_f64());
    let metrics = reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap();
    assert_eq!(metric(&metrics, "phlox_recording_evaluated_profiles_total"), 3.0, "3 api profiles of acme");
    // One sample per rule and series per segment: eu (2 segments) and us, for 2 rules.
    assert_eq!(metric(&metrics, "phlox_recording_exported_samples_total"), 6.0, "{metrics}");
    assert_eq!(metric(&metrics, "phlox_recording_failed_samples_total"), 0.0);
    server.stop();
}

/// What Grafana asks before showing the recording-rules UI: the feature
/// flags (every known name listed), the query API version and the build info.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_learn_the_servers_capabilities() {
    let (_tmp, dir) = data_dir();
    let server = Phlox::start(&dir, &[]);
    let client = reqwest::Client::new();
    let post = |path: &str| {
        client.post(format!("{}{path}", server.http)).header("Content-Type", "application/json").body("{}").send()
    };
    let flags: Value = serde_json::from_str(
        &post("/capabilities.v1.FeatureFlagsService/GetFeatureFlags").await.unwrap().text().await.unwrap(),
    )
    .unwrap();
    let by_name: std::collections::BTreeMap<&str, bool> = flags["featureFlags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["name"].as_str().unwrap(), f["enabled"].as_bool().unwrap_or(false)))
        .collect();
    assert_eq!(
        by_name,
        [
            ("pyroscopeRuler", true),
            ("pyroscopeRulerFunctions", true),
            ("utf8LabelNames", true),
            ("v2StorageLayer", true)
        ]
        .into_iter()
        .collect()
    );
    let version: Value =
        serde_json::from_str(&post("/version.v1.Version/Version").await.unwrap().text().await.unwrap()).unwrap();
    assert_eq!(version, json!({"QuerierAPI": "1"}));
    let info: Value = serde_json::from_str(
        &reqwest::get(format!("{}/api/v1/status/buildinfo", server.http)).await.unwrap().text().await.unwrap(),
    )
    .unwrap();
    assert_eq!(info["status"], "success");
    assert!(info["data"]["version"].as_str().unwrap().starts_with("2.0.0+phlox-"), "{info}");
    server.stop();
}

/// `settings.v1.SettingsService` as Grafana's profiles app calls it: per
/// tenant, the newest value wins, deletes, clear errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_settings_are_kept_per_tenant() {
    let (tmp, dir) = data_dir();
    let cfg = tmp.path().join("phlox.yaml");
    std::fs::write(&cfg, "multitenancy_enabled: true\n").unwrap();
    let server = Phlox::start(&dir, &["--config", cfg.to_str().unwrap()]);
    let settings = |tenant: &'static str, method: &'static str, body: Value| {
        let base = server.http.clone();
        async move { connect_json(&base, tenant, &format!("settings.v1.SettingsService/{method}"), body).await }
    };
    let (code, set) =
        settings("acme", "Set", json!({"setting": {"name": "pyroscope.maxNodes", "value": "4096"}})).await;
    assert_eq!(code, 200, "{set}");
    let at: i64 = set["setting"]["modifiedAt"].as_str().unwrap().parse().unwrap();
    assert!(at > 1_700_000_000_000, "the server stamped it: {set}");
    let (code, stale) = settings(
        "acme",
        "Set",
        json!({"setting": {"name": "pyroscope.maxNodes", "value": "1", "modifiedAt": (at - 1).to_string()}}),
    )
    .await;
    assert_eq!((code, stale["code"].as_str()), (409, Some("already_exists")), "{stale}");
    let (_, got) = settings("acme", "Get", json!({})).await;
    assert_eq!(got["settings"][0]["value"], "4096");
    assert_eq!(settings("globex", "Get", json!({})).await.1, json!({}));
    assert_eq!(settings("acme", "Delete", json!({"name": "pyroscope.maxNodes"})).await.0, 200);
    assert_eq!(settings("acme", "Delete", json!({"name": "pyroscope.maxNodes"})).await.0, 404);
    assert_eq!(settings("acme", "Set", json!({"setting": {"name": ""}})).await.0, 400);
    server.stop();
}
