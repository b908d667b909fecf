//! Tenant isolation with credentials mapped to tenants: every read API
//! (querier RPCs, render, render-diff, label values, exemplars by profile
//! id, ad hoc profiles, recording rules, settings) answers a credential
//! with exactly its tenants' data, refuses another tenant's
//! `X-Scope-OrgID` (403) and a missing credential (401); `a|b` reads work
//! only for a credential that has both. Deletes are not on the public
//! port at all.
#![allow(clippy::unwrap_used)]

use phlox_e2e::*;
use phlox_pprof::testkit::ProfileBuilder;
use prost::Message;
use serde_json::{Value, json};

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
const A_PROFILE: &str = "0f8e7d4c-0000-4000-8000-00000000000a";

fn config() -> String {
    "multitenancy_enabled: true\nlimits:\n  ingestion_rate_mb: 0\nserver:\n  auth:\n    tenants:\n\
     \x20     - {bearer_token: token-a, tenants: [a]}\n\
     \x20     - {bearer_token: token-b, tenants: [b]}\n\
     \x20     - {basic_auth: \"ops:pw\", tenants: [a, b]}\n"
        .to_owned()
}

/// Who calls: a credential and the `X-Scope-OrgID` it sends.
#[derive(Debug, Clone, Copy)]
struct Caller {
    auth: Option<&'static str>,
    org: Option<&'static str>,
}

const A: Caller = Caller { auth: Some("Bearer token-a"), org: None };
const B: Caller = Caller { auth: Some("Bearer token-b"), org: Some("b") };
/// `ops:pw`, which has both tenants.
const AB: Caller = Caller { auth: Some("Basic b3BzOnB3"), org: Some("a|b") };
const A_AS_B: Caller = Caller { auth: Some("Bearer token-a"), org: Some("b") };
const A_AS_AB: Caller = Caller { auth: Some("Bearer token-a"), org: Some("a|b") };
const NOBODY: Caller = Caller { auth: None, org: Some("a") };

struct Server {
    http: reqwest::Client,
    base: String,
}

impl Server {
    async fn send(&self, who: Caller, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let mut r = if method == "GET" { self.http.get(url) } else { self.http.post(url) };
        if let Some(a) = who.auth {
            r = r.header("Authorization", a);
        }
        if let Some(o) = who.org {
            r = r.header("X-Scope-OrgID", o);
        }
        if let Some(b) = body {
            r = r.header("Content-Type", "application/json").body(b.to_string());
        }
        let r = r.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }
}

/// A read API: how to call it and what to read from its answer.
struct Read {
    name: &'static str,
    method: &'static str,
    path: String,
    body: Option<Value>,
    /// What a caller sees (a total, names...), compared exactly.
    seen: fn(&Value) -> Value,
}

/// A protobuf-JSON int64 (a string) as a number; absent stays null.
fn int(v: &Value) -> Value {
    match v {
        Value::String(s) => json!(s.parse::<i64>().unwrap()),
        other => other.clone(),
    }
}

fn services(v: &Value, key: &str) -> Value {
    let mut names: Vec<String> =
        v[key].as_array().unwrap_or(&vec![]).iter().map(|n| n.as_str().unwrap_or_default().to_owned()).collect();
    names.retain(|n| n.starts_with("svc-"));
    names.sort();
    json!(names)
}

fn reads(start: i64, end: i64) -> Vec<Read> {
    let q = |m: &str| format!("/querier.v1.QuerierService/{m}");
    let select =
        json!({"profileTypeID": CPU, "labelSelector": "{}", "start": start.to_string(), "end": end.to_string()});
    let with = |extra: Value| {
        let mut b = select.clone();
        b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        b
    };
    let range = format!("from={}&until={}", start / 1000, end / 1000);
    vec![
        Read {
            name: "ProfileTypes",
            method: "POST",
            path: q("ProfileTypes"),
            body: Some(json!({"start": start.to_string(), "end": end.to_string()})),
            seen: |v| json!(v["profileTypes"].as_array().map_or(0, Vec::len)),
        },
        Read {
            name: "LabelValues",
            method: "POST",
            path: q("LabelValues"),
            body: Some(json!({"name": "service_name", "start": start.to_string(), "end": end.to_string()})),
            seen: |v| services(v, "names"),
        },
        Read {
            name: "LabelNames",
            method: "POST",
            path: q("LabelNames"),
            body: Some(json!({"start": start.to_string(), "end": end.to_string()})),
            seen: |v| json!(v["names"].as_array().unwrap().iter().any(|n| n == "only_in_b")),
        },
        Read {
            name: "Series",
            method: "POST",
            path: q("Series"),
            body: Some(json!({"labelNames": ["service_name"], "start": start.to_string(), "end": end.to_string()})),
            seen: |v| {
                let mut s: Vec<String> = v["labelsSet"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|l| l["labels"][0]["value"].as_str().unwrap().to_owned())
                    .collect();
                s.sort();
                json!(s)
            },
        },
        Read {
            name: "SelectMergeStacktraces",
            method: "POST",
            path: q("SelectMergeStacktraces"),
            body: Some(select.clone()),
            seen: |v| int(&v["flamegraph"]["total"]),
        },
        Read {
            name: "exemplar by profile id",
            method: "POST",
            path: q("SelectMergeStacktraces"),
            body: Some(with(json!({"profileIdSelector": [A_PROFILE]}))),
            seen: |v| int(&v["flamegraph"]["total"]),
        },
        Read {
            name: "SelectSeries",
            method: "POST",
            path: q("SelectSeries"),
            body: Some(with(json!({"step": 3600.0}))),
            seen: |v| {
                let sum: f64 = v["series"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .flat_map(|s| s["points"].as_array().unwrap().iter().map(|p| p["value"].as_f64().unwrap()))
                    .sum();
                json!(sum)
            },
        },
        Read {
            name: "SelectMergeProfile",
            method: "POST",
            path: q("SelectMergeProfile"),
            body: Some(select.clone()),
            seen: |v| {
                let sum: i64 = v["sample"]
                    .as_array()
                    .map(|s| s.iter().map(|s| s["value"][0].as_str().unwrap().parse::<i64>().unwrap()).sum())
                    .unwrap_or(0);
                json!(sum)
            },
        },
        Read {
            name: "Diff",
            method: "POST",
            path: q("Diff"),
            body: Some(json!({"left": select.clone(), "right": select.clone()})),
            seen: |v| int(&v["flamegraph"]["leftTicks"]),
        },
        Read {
            name: "SelectHeatmap",
            method: "POST",
            path: q("SelectHeatmap"),
            body: Some(with(json!({"step": 3600.0}))),
            seen: |v| json!(v["series"].as_array().map_or(0, Vec::len)),
        },
        Read {
            name: "SelectMergeSpanProfile",
            method: "POST",
            path: q("SelectMergeSpanProfile"),
            body: Some(with(json!({"spanSelector": ["00000000000000aa"]}))),
            seen: |v| int(&v["flamegraph"]["total"]),
        },
        Read {
            name: "AnalyzeQuery",
            method: "POST",
            path: q("AnalyzeQuery"),
            body: Some(json!({"start": start.to_string(), "end": end.to_string(), "query": "{}"})),
            seen: |v| int(&v["queryImpact"]["totalQueriedSeries"]),
        },
        Read {
            name: "GetProfileStats",
            method: "POST",
            path: q("GetProfileStats"),
            body: Some(json!({})),
            seen: |v| v["dataIngested"].clone(),
        },
        Read {
            name: "render",
            method: "GET",
            path: format!("/pyroscope/render?query={CPU}{{}}&{range}"),
            body: None,
            seen: |v| v["flamebearer"]["numTicks"].clone(),
        },
        Read {
            name: "render-diff",
            method: "GET",
            path: format!(
                "/pyroscope/render-diff?leftQuery={CPU}{{}}&rightQuery={CPU}{{}}&leftFrom={s}&leftUntil={e}&rightFrom={s}&rightUntil={e}",
                s = start / 1000,
                e = end / 1000
            ),
            body: None,
            seen: |v| v["leftTicks"].clone(),
        },
        Read {
            name: "label-values",
            method: "GET",
            path: format!("/pyroscope/label-values?label=service_name&{range}"),
            body: None,
            seen: |v| {
                let mut names: Vec<String> =
                    v.as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_owned()).collect();
                names.retain(|n| n.starts_with("svc-"));
                names.sort();
                json!(names)
            },
        },
    ]
}

fn push_body(service: &str, value: i64, id: &str, extra_label: Option<(&str, &str)>) -> Vec<u8> {
    let mut b = ProfileBuilder::new("cpu", "nanoseconds");
    b.period("cpu", "nanoseconds", 10_000_000).time_nanos(now_nanos());
    b.sample(&["main", "work"], &[value], &[("span_id", "00000000000000aa")]);
    let mut labels = vec![("__name__", "process_cpu"), ("service_name", service)];
    labels.extend(extra_label);
    push_request(&labels, b.encode(), id).encode_to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_reads_exactly_its_tenants() {
    let (tmp, dir) = data_dir();
    let cfg = tmp.path().join("phlox.yaml");
    std::fs::write(&cfg, config()).unwrap();
    let phlox = Phlox::start(&dir, &["--config", cfg.to_str().unwrap()]);
    let s = Server { http: reqwest::Client::new(), base: phlox.http.clone() };

    // Writes: each credential to its tenant; a's without X-Scope-OrgID.
    let push = |who: Caller, body: Vec<u8>| {
        let (http, url) = (s.http.clone(), phlox.push_url());
        async move {
            let mut r = http.post(url).header("Content-Type", "application/proto").body(body);
            if let Some(a) = who.auth {
                r = r.header("Authorization", a);
            }
            if let Some(o) = who.org {
                r = r.header("X-Scope-OrgID", o);
            }
            r.send().await.unwrap().status().as_u16()
        }
    };
    assert_eq!(push(A, push_body("svc-a", 10, A_PROFILE, None)).await, 200);
    assert_eq!(push(B, push_body("svc-b", 100, "", Some(("only_in_b", "1")))).await, 200);
    assert_eq!(push(A_AS_B, push_body("svc-x", 1000, "", None)).await, 403, "a's token cannot write to b");
    assert_eq!(push(NOBODY, push_body("svc-x", 1000, "", None)).await, 401);
    // A browser opening the UI is asked for credentials.
    let ui = s.http.get(format!("{}/", s.base)).send().await.unwrap();
    assert_eq!(ui.status().as_u16(), 401);
    assert_eq!(ui.headers()["www-authenticate"], "Basic realm=\"phlox\", charset=\"UTF-8\"");
    assert_eq!(push(A_AS_AB, push_body("svc-x", 1000, "", None)).await, 403);

    let (start, end) = (now_nanos() / 1_000_000 - 3_600_000, now_nanos() / 1_000_000 + 60_000);
    // What each caller must see, per read: (a, b, a|b).
    let expected: Vec<(&str, Value, Value, Value)> = vec![
        ("ProfileTypes", json!(1), json!(1), json!(1)),
        ("LabelValues", json!(["svc-a"]), json!(["svc-b"]), json!(["svc-a", "svc-b"])),
        ("LabelNames", json!(false), json!(true), json!(true)),
        ("Series", json!(["svc-a"]), json!(["svc-b"]), json!(["svc-a", "svc-b"])),
        ("SelectMergeStacktraces", json!(10), json!(100), json!(110)),
        ("exemplar by profile id", json!(10), Value::Null, json!(10)),
        ("SelectSeries", json!(10.0), json!(100.0), json!(110.0)),
        ("SelectMergeProfile", json!(10), json!(100), json!(110)),
        ("Diff", json!(10), json!(100), json!(110)),
        ("SelectHeatmap", json!(1), json!(1), json!(1)),
        ("SelectMergeSpanProfile", json!(10), json!(100), json!(110)),
        ("AnalyzeQuery", json!(1), json!(1), json!(2)),
        ("GetProfileStats", json!(true), json!(true), json!(true)),
        ("render", json!(10), json!(100), json!(110)),
        ("render-diff", json!(10), json!(100), json!(110)),
        ("label-values", json!(["svc-a"]), json!(["svc-b"]), json!(["svc-a", "svc-b"])),
    ];
    let table = reads(start, end);
    assert_eq!(table.len(), expected.len());
    for (read, (name, a, b, ab)) in table.iter().zip(expected) {
        assert_eq!(read.name, name);
        for (who, want) in [(A, a), (B, b), (AB, ab)] {
            let (status, body) = s.send(who, read.method, &read.path, read.body.clone()).await;
            assert_eq!(status, 200, "{name} as {who:?}: {body}");
            assert_eq!((read.seen)(&body), want, "{name} as {who:?}: {body}");
        }
        for (who, refused, code) in
            [(A_AS_B, 403, "permission_denied"), (A_AS_AB, 403, "permission_denied"), (NOBODY, 401, "unauthenticated")]
        {
            let (status, body) = s.send(who, read.method, &read.path, read.body.clone()).await;
            assert_eq!(status, refused, "{name} as {who:?}: {body}");
            assert_eq!(body["code"], code, "{name} as {who:?}: {body}");
        }
    }

    // Per-tenant state: ad hoc profiles, recording rules, settings.
    let adhoc = |m: &str| format!("/adhocprofiles.v1.AdHocProfileService/{m}");
    let (status, up) = s
        .send(A, "POST", &adhoc("Upload"), Some(json!({"name": "a.txt", "profile": encode_base64(b"main 5\n")})))
        .await;
    assert_eq!(status, 200, "{up}");
    let id = up["id"].as_str().unwrap();
    assert_eq!(s.send(A, "POST", &adhoc("Get"), Some(json!({"id": id}))).await.0, 200);
    let (status, got) = s.send(B, "POST", &adhoc("Get"), Some(json!({"id": id}))).await;
    assert_eq!((status, got["code"].as_str()), (404, Some("not_found")), "b cannot read a's upload: {got}");
    assert_eq!(s.send(B, "POST", &adhoc("List"), Some(json!({}))).await.1["profiles"], Value::Null);
    assert_eq!(s.send(A, "POST", &adhoc("List"), Some(json!({}))).await.1["profiles"].as_array().unwrap().len(), 1);
    assert_eq!(s.send(A_AS_B, "POST", &adhoc("List"), Some(json!({}))).await.0, 403);

    let rules = |m: &str| format!("/settings.v1.RecordingRulesService/{m}");
    let rule = json!({"metricName": "profiles_recorded_a", "matchers": [format!("{{__profile_type__=\"{CPU}\"}}")]});
    let (status, r) = s.send(A, "POST", &rules("UpsertRecordingRule"), Some(rule)).await;
    assert_eq!(status, 200, "{r}");
    let rule_id = r["rule"]["id"].as_str().unwrap();
    let (status, got) = s.send(B, "POST", &rules("GetRecordingRule"), Some(json!({"id": rule_id}))).await;
    assert_eq!((status, got["code"].as_str()), (404, Some("not_found")), "{got}");
    assert_eq!(s.send(B, "POST", &rules("ListRecordingRules"), Some(json!({}))).await.1["rules"], Value::Null);
    let listed = s.send(A, "POST", &rules("ListRecordingRules"), Some(json!({}))).await.1;
    assert_eq!(listed["rules"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(s.send(A_AS_B, "POST", &rules("ListRecordingRules"), Some(json!({}))).await.0, 403);

    let settings = |m: &str| format!("/settings.v1.SettingsService/{m}");
    let set = json!({"setting": {"name": "theme", "value": "dark"}});
    assert_eq!(s.send(A, "POST", &settings("Set"), Some(set)).await.0, 200);
    assert_eq!(s.send(B, "POST", &settings("Get"), Some(json!({}))).await.1["settings"], Value::Null);
    assert_eq!(s.send(A, "POST", &settings("Get"), Some(json!({}))).await.1["settings"][0]["value"], "dark");
    assert_eq!(s.send(A_AS_B, "POST", &settings("Get"), Some(json!({}))).await.0, 403);
    // Per-tenant APIs take one tenant: a|b is refused even for ops.
    assert_eq!(s.send(AB, "POST", &settings("Get"), Some(json!({}))).await.0, 401);

    // Deletes are not on the public port, for any credential.
    for who in [A, B, AB] {
        let (status, _) = s.send(who, "POST", "/admin/v1/delete?from=now-1h&until=now", None).await;
        assert_eq!(status, 404);
    }
}
