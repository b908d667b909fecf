//! Compaction in a running `phlox`: level-0 segments of two tenants are
//! merged into per-tenant blocks, compacted-away objects are deleted after
//! the grace period, and every query answers exactly as before.
#![allow(clippy::unwrap_used)]

use std::path::Path;

use phlox_e2e::*;
use phlox_pprof::testkit::ProfileBuilder;
use phlox_proto::querier::v1 as q;
use phlox_proto::types::v1 as t;
use prost::Message;

const CPU: &str = "process_cpu:cpu:nanoseconds::";

/// (objects, bytes) under a directory, recursively.
fn objects(dir: &Path) -> (usize, u64) {
    let Ok(entries) = std::fs::read_dir(dir) else { return (0, 0) };
    let (mut n, mut bytes) = (0, 0);
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            let (a, b) = objects(&p);
            n += a;
            bytes += b;
        } else if p.extension().is_some_and(|x| x == "block") {
            n += 1;
            bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
        }
    }
    (n, bytes)
}

/// Everything a user would look at, per tenant.
async fn answers(base: &str, s: i64, e: i64) -> Vec<String> {
    let mut out = Vec::new();
    for tenant in ["acme", "globex"] {
        let fg: q::SelectMergeStacktracesResponse = query(
            base,
            tenant,
            "SelectMergeStacktraces",
            &q::SelectMergeStacktracesRequest {
                profile_type_id: CPU.into(),
                label_selector: "{}".into(),
                start: s,
                end: e,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let fg = fg.flamegraph.unwrap();
        let mut names = fg.names.clone();
        names.sort();
        out.push(format!(
            "{tenant} total={} max_self={} names={names:?} levels={}",
            fg.total,
            fg.max_self,
            fg.levels.len()
        ));
        let series: q::SelectSeriesResponse = query(
            base,
            tenant,
            "SelectSeries",
            &q::SelectSeriesRequest {
                profile_type_id: CPU.into(),
                label_selector: "{}".into(),
                start: s,
                end: e,
                step: 1.0,
                group_by: vec!["service_name".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
        for sr in series.series {
            let pts: Vec<(i64, f64)> = sr.points.iter().map(|p| (p.timestamp, p.value)).collect();
            out.push(format!("{tenant} {:?} {pts:?}", sr.labels.iter().map(|l| &l.value).collect::<Vec<_>>()));
        }
        let values: t::LabelValuesResponse = query(
            base,
            tenant,
            "LabelValues",
            &t::LabelValuesRequest { name: "pod".into(), matchers: vec![], start: s, end: e },
        )
        .await
        .unwrap();
        out.push(format!("{tenant} pods={:?}", values.names));
    }
    out
}

/// The answers [`compaction_keeps_every_answer_and_shrinks_the_bucket`]'s
/// input must give, worked out by hand from what it pushes: twelve pushes
/// per tenant, push `i` holding `main;handle;parse` (even `i`) or
/// `main;handle;render` (odd `i`) = 10 + i and `main;gc` = 3, service `api`
/// when `i % 3 == 0` else `web`, pod `p{i % 4}`, one second apart.
async fn assert_answers_match_the_input(base: &str, s: i64, e: i64) {
    for tenant in ["acme", "globex"] {
        let fg: q::SelectMergeStacktracesResponse = query(
            base,
            tenant,
            "SelectMergeStacktraces",
            &q::SelectMergeStacktracesRequest {
                profile_type_id: CPU.into(),
                label_selector: "{}".into(),
                start: s,
                end: e,
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let fg = fg.flamegraph.unwrap();
        // parse: 10+12+14+16+18+20 = 90, render: 11+13+15+17+19+21 = 96, gc: 12 × 3 = 36.
        assert_eq!(fg.total, 90 + 96 + 36, "{tenant}");
        assert_eq!(fg.max_self, 96, "{tenant}: render is the largest self");
        let mut names = fg.names.clone();
        names.sort();
        assert_eq!(names, ["gc", "handle", "main", "parse", "render", "total"], "{tenant}");
        assert_eq!(fg.levels.len(), 4, "{tenant}: total, main, handle, parse/render");
        let series: q::SelectSeriesResponse = query(
            base,
            tenant,
            "SelectSeries",
            &q::SelectSeriesRequest {
                profile_type_id: CPU.into(),
                label_selector: "{}".into(),
                start: s,
                end: e,
                step: 1.0,
                group_by: vec!["service_name".into()],
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let got: Vec<(String, usize, f64)> = series
            .series
            .iter()
            .map(|sr| (sr.labels[0].value.clone(), sr.points.len(), sr.points.iter().map(|p| p.value).sum()))
            .collect();
        // api: i = 0, 3, 6, 9 → 13 + 16 + 19 + 22; web: the other eight.
        assert_eq!(got, [("api".to_string(), 4, 70.0), ("web".to_string(), 8, 152.0)], "{tenant}");
        let values: t::LabelValuesResponse = query(
            base,
            tenant,
            "LabelValues",
            &t::LabelValuesRequest { name: "pod".into(), matchers: vec![], start: s, end: e },
        )
        .await
        .unwrap();
        assert_eq!(values.names, ["p0", "p1", "p2", "p3"], "{tenant}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_every_answer_and_shrinks_the_bucket() {
    let (tmp, dir) = data_dir();
    let cfg = tmp.path().join("phlox.yaml");
    std::fs::write(
        &cfg,
        "multitenancy_enabled: true\nsegment_writer:\n  segment_duration: 100ms\n  shards: 1\n\
         limits:\n  ingestion_rate_mb: 0\ncompaction:\n  min_blocks: [6, 3, 3]\n  max_age_seconds: [3600, 3600, 3600]\n\
         \x20 poll_interval: 200ms\n  tombstone_grace: 1s\n",
    )
    .unwrap();
    let server = Phlox::start(&dir, &["--config", cfg.to_str().unwrap()]);
    let client = reqwest::Client::new();
    let now = now_nanos();
    // Twelve segments: each push is acked once its own segment is stored.
    for i in 0..12i64 {
        for tenant in ["acme", "globex"] {
            let mut b = ProfileBuilder::new("cpu", "nanoseconds");
            b.time_nanos(now - i * 1_000_000_000)
                .sample(&["main", "handle", if i % 2 == 0 { "parse" } else { "render" }], &[10 + i], &[])
                .sample(&["main", "gc"], &[3], &[("span_id", "00000000000000aa")]);
            let service = if i % 3 == 0 { "api" } else { "web" };
            let pod = format!("p{}", i % 4);
            let req =
                push_request(&[("__name__", "process_cpu"), ("service_name", service), ("pod", &pod)], b.encode(), "");
            let r = client
                .post(server.push_url())
                .header("Content-Type", "application/proto")
                .header("X-Scope-OrgID", tenant)
                .body(req.encode_to_vec())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200);
        }
    }
    let (s, e) = (now / 1_000_000 - 60_000, now / 1_000_000 + 60_000);
    assert_answers_match_the_input(&server.http, s, e).await;
    let before = answers(&server.http, s, e).await;
    let bucket = dir.join("bucket");
    let (segments_before, segment_bytes) = objects(&bucket.join("segments"));
    assert!(segments_before >= 6, "{segments_before} segments");

    // Wait until level-0 segments are merged and deleted.
    let mut settled = false;
    for _ in 0..300 {
        let (segments, _) = objects(&bucket.join("segments"));
        let (blocks, _) = objects(&bucket.join("blocks"));
        if segments == 0 && blocks > 0 {
            settled = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        settled,
        "segments were not compacted away: {:?} / {:?}",
        objects(&bucket.join("segments")),
        objects(&bucket.join("blocks"))
    );
    let (blocks, block_bytes) = objects(&bucket.join("blocks"));
    let after = answers(&server.http, s, e).await;
    assert_eq!(after, before, "every answer is the same after compaction");
    assert_answers_match_the_input(&server.http, s, e).await;
    assert!(blocks < segments_before, "{blocks} blocks from {segments_before} segments");
    assert!(block_bytes < segment_bytes, "{block_bytes} bytes from {segment_bytes}");
    println!(
        "compaction: {segments_before} segments, {segment_bytes} B -> {blocks} blocks, {block_bytes} B ({:.2}x bytes)",
        block_bytes as f64 / segment_bytes as f64
    );
    let metrics = reqwest::get(format!("{}/metrics", server.http)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("phlox_compaction_worker_jobs_total{result=\"done\"}"), "{metrics}");
    server.stop();
}

/// Retention per tenant: data older than the tenant's retention leaves the
/// index and its objects are deleted; a tenant whose override keeps
/// everything keeps it; fresh data stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_deletes_old_data_per_tenant() {
    let (tmp, dir) = data_dir();
    let cfg = tmp.path().join("phlox.yaml");
    std::fs::write(
        &cfg,
        "multitenancy_enabled: true\nsegment_writer:\n  segment_duration: 100ms\n  shards: 1\n\
         limits:\n  ingestion_rate_mb: 0\n  retention_period: 30s\noverrides:\n  keep:\n    retention_period: 0s\n\
         compaction:\n  min_blocks: [1000, 1000, 1000]\n  max_age_seconds: [3600, 3600, 3600]\n\
         \x20 tombstone_grace: 1s\n  retention_interval: 300ms\n",
    )
    .unwrap();
    let server = Phlox::start(&dir, &["--config", cfg.to_str().unwrap()]);
    let client = reqwest::Client::new();
    let now = now_nanos();
    let push = |tenant: &'static str, age_s: i64, value: i64| {
        let (client, url) = (client.clone(), server.push_url());
        async move {
            let mut b = ProfileBuilder::new("cpu", "nanoseconds");
            b.time_nanos(now - age_s * 1_000_000_000).sample(&["main", "work"], &[value], &[]);
            let req = push_request(&[("__name__", "process_cpu"), ("service_name", "svc")], b.encode(), "");
            let r = client
                .post(url)
                .header("Content-Type", "application/proto")
                .header("X-Scope-OrgID", tenant)
                .body(req.encode_to_vec())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 200);
        }
    };
    push("acme", 600, 7).await; // 10 min old: past acme's 30 s
    push("acme", 0, 5).await;
    push("keep", 600, 11).await; // kept: retention 0s
    let total = |tenant: &'static str| {
        let base = server.http.clone();
        async move { flame_total(&base, tenant, CPU, "{}", now / 1_000_000 - 3_600_000, now / 1_000_000 + 60_000).await }
    };
    let segments = |d: &Path| objects(&d.join("bucket").join("segments")).0;
    let before = segments(&dir);
    let mut done = false;
    for _ in 0..200 {
        if total("acme").await == 5 && segments(&dir) < before {
            done = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        done,
        "old data of acme was not deleted (total {}, segments {before} -> {})",
        total("acme").await,
        segments(&dir)
    );
    assert_eq!(total("keep").await, 11, "retention 0s keeps everything");
    let metrics = reqwest::get(format!("{}/metrics", server.http)).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("phlox_metastore_retention_deleted_total{kind=\"dataset\"} 1"), "{metrics}");
    server.stop();
}

/// A compaction worker SIGKILLed while it works: its lease expires, a
/// second worker redoes the job, and every profile is there exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_compaction_worker_loses_nothing() {
    let procs = Processes::new(
        "segment_writer:\n  segment_duration: 100ms\n  shards: 1\n\
         limits:\n  ingestion_rate_mb: 0\ncompaction:\n  min_blocks: [4, 1000, 1000]\n  max_age_seconds: [3600, 3600, 3600]\n\
         \x20 poll_interval: 100ms\n  tombstone_grace: 1s\n  lease: 2s\n",
    );
    let start = |name: &str, args: &[&str]| procs.start(name, args);
    let metastore = start("metastore", &["--target", "metastore"]);
    let ms = metastore.grpc.clone();
    let writer = start("writer", &["--target", "segment-writer", "--metastore-address", &ms]);
    let distributor = start("distributor", &["--target", "distributor", "--metastore-address", &ms]);
    let frontend = start("frontend", &["--target", "query-frontend", "--metastore-address", &ms]);
    let mut first = Some(start("worker-1", &["--target", "compaction-worker", "--metastore-address", &ms]));

    let client = reqwest::Client::new();
    let now = now_nanos();
    let mut expected = 0;
    for i in 0..16i64 {
        let mut b = ProfileBuilder::new("cpu", "nanoseconds");
        b.time_nanos(now - i * 1_000_000_000).sample(&["main", "work", &format!("f{}", i % 3)], &[100 + i], &[]);
        let req = push_request(&[("__name__", "process_cpu"), ("service_name", "svc")], b.encode(), "");
        let r = client
            .post(distributor.push_url())
            .header("Content-Type", "application/proto")
            .body(req.encode_to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        expected += 100 + i;
        if i == 9 {
            // Jobs are running by now (4 segments start one): kill the worker.
            if let Some(w) = first.take() {
                w.kill();
            }
        }
    }
    let second = start("worker-2", &["--target", "compaction-worker", "--metastore-address", &ms]);
    let bucket = procs.bucket();
    let mut settled = false;
    for _ in 0..300 {
        if objects(&bucket.join("segments")).0 == 0 && objects(&bucket.join("blocks")).0 > 0 {
            settled = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(settled, "segments left: {:?}", objects(&bucket.join("segments")));
    let r: q::SelectMergeStacktracesResponse = query(
        &frontend.http,
        "anonymous",
        "SelectMergeStacktraces",
        &q::SelectMergeStacktracesRequest {
            profile_type_id: CPU.into(),
            label_selector: "{}".into(),
            start: now / 1_000_000 - 60_000,
            end: now / 1_000_000 + 60_000,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(r.flamegraph.unwrap().total, expected, "every profile exactly once after compaction");
    second.stop();
    frontend.stop();
    distributor.stop();
    writer.stop();
    metastore.stop();
}

/// `POST /admin/v1/delete`: a tenant's data in a time range goes (datasets
/// inside it at once, blocks straddling it through a rewrite job), data
/// outside it and other tenants' data stay, and bad requests get a 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_api_removes_a_tenants_time_range() {
    let (tmp, dir) = data_dir();
    let cfg = tmp.path().join("phlox.yaml");
    // Thresholds so high that only the deletion plans a job.
    std::fs::write(
        &cfg,
        "multitenancy_enabled: true\nsegment_writer:\n  segment_duration: 100ms\n  shards: 1\n\
         limits:\n  ingestion_rate_mb: 0\ncompaction:\n  min_blocks: [1000, 1000, 1000]\n  max_age_seconds: [3600, 3600, 3600]\n\
         \x20 poll_interval: 200ms\n  tombstone_grace: 1s\n",
    )
    .unwrap();
    let server = Phlox::start(&dir, &["--config", cfg.to_str().unwrap()]);
    let client = reqwest::Client::new();
    let now = now_nanos();
    let s = 1_000_000_000i64;
    let profile = |age_s: i64, value: i64| {
        let mut b = ProfileBuilder::new("cpu", "nanoseconds");
        b.time_nanos(now - age_s * s).sample(&["main", "work"], &[value], &[]);
        b.encode()
    };
    let labels = |service: &'static str| [("__name__", "process_cpu"), ("service_name", service)];
    // acme/api 300 s ago: outside the range.
    let old = push_request(&labels("api"), profile(300, 7), "");
    // acme/api 120 s ago and now, in one push: one dataset straddling the range's end.
    let mut straddling = push_request(&labels("api"), profile(120, 5), "");
    straddling.series[0].samples.push(push_request(&labels("api"), profile(0, 3), "").series[0].samples[0].clone());
    // A second series of that dataset, only inside the range.
    let old_phase = [("__name__", "process_cpu"), ("service_name", "api"), ("phase", "old")];
    straddling.series.push(push_request(&old_phase, profile(120, 13), "").series[0].clone());
    // acme/web 100 s ago: inside the range.
    let inside = push_request(&labels("web"), profile(100, 11), "");
    // globex 120 s ago: another tenant.
    let other = push_request(&labels("api"), profile(120, 100), "");
    for (tenant, req) in [("acme", &old), ("acme", &straddling), ("acme", &inside), ("globex", &other)] {
        push_until_acked(&client, &server.push_url(), tenant, req.encode_to_vec()).await;
    }
    let total = |tenant: &'static str| {
        let base = server.http.clone();
        async move { flame_total(&base, tenant, CPU, "{}", now / 1_000_000 - 3_600_000, now / 1_000_000 + 60_000).await }
    };
    assert_eq!((total("acme").await, total("globex").await), (7 + 5 + 13 + 3 + 11, 100));

    // Not on the public port, whatever the credentials.
    let public = client
        .post(format!("{}/admin/v1/delete?from=now-1h&until=now", server.http))
        .header("X-Scope-OrgID", "acme")
        .header("authorization", server.admin_auth())
        .send()
        .await
        .unwrap();
    assert_eq!(public.status().as_u16(), 404);
    let delete = |params: String| {
        let (client, base, auth) = (client.clone(), server.admin.clone(), server.admin_auth());
        async move {
            let r = client
                .post(format!("{base}/admin/v1/delete?{params}"))
                .header("X-Scope-OrgID", "acme")
                .header("authorization", auth)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // Bad requests name the problem.
    let (code, body) = delete(format!("from={}", now / s - 200)).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("`until` is required"), "{body}");
    let (code, body) = delete(format!("from={}&until={}", now / s, now / s - 200)).await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("is after"), "{body}");
    let (code, body) = delete("from=yesterday-ish&until=now".into()).await;
    assert_eq!(code, 400, "{body}");

    let (start, end) = (now / 1_000_000 - 3_600_000, now / 1_000_000 + 60_000);
    let phases = || {
        let base = server.http.clone();
        async move {
            let r: phlox_proto::types::v1::LabelValuesResponse = query(
                &base,
                "acme",
                "LabelValues",
                &phlox_proto::types::v1::LabelValuesRequest { name: "phase".into(), matchers: vec![], start, end },
            )
            .await
            .unwrap();
            r.names
        }
    };
    assert_eq!(phases().await, vec!["old".to_string()]);

    // Delete acme's [now-200 s, now-60 s] without waiting: queries leave
    // the range out at once, also while the straddling block is pending.
    let range = format!("from={}&until={}", now / s - 200, now / s - 60);
    let (code, body) = delete(format!("{range}&wait=0s")).await;
    assert!(code == 202 || code == 200, "{code} {body}");
    assert_eq!(total("acme").await, 7 + 3, "pending or not, the range's 5, 13 and 11 are not answered: {body}");
    // Nor are the labels of a series whose every row is in the range.
    assert!(phases().await.is_empty());
    // The same request again is the same deletion; wait for the rewrite.
    let (code, body) = delete(format!("{range}&wait=60s")).await;
    assert_eq!(code, 200, "{body}");
    let d: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(d["state"], "done", "{body}");
    assert_eq!(d["datasetsRemoved"], 1, "{body}");
    assert_eq!(d["blocksTombstoned"], 1, "{body}");
    assert_eq!(d["blocksPending"], 0, "{body}");
    assert_eq!(total("acme").await, 7 + 3, "the range's 5 and 11 are gone, 7 and 3 stay");
    assert_eq!(total("globex").await, 100, "other tenants keep their data");
    // Listed, and counted in the metrics.
    let listed = client
        .get(format!("{}/admin/v1/deletions", server.admin))
        .header("X-Scope-OrgID", "acme")
        .header("authorization", server.admin_auth())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["deletions"].as_array().map(Vec::len), Some(1), "{listed}");
    assert_eq!(listed["deletions"][0]["id"], d["id"]);
    let metrics = reqwest::get(format!("{}/metrics", server.http)).await.unwrap().text().await.unwrap();
    assert_eq!(metric(&metrics, "phlox_deletions_total"), 2.0, "two requests: {metrics}");
    assert_eq!(metric(&metrics, "phlox_deleted_total"), 2.0, "one dataset and one block, once: {metrics}");
    // The data stays deleted across a restart.
    server.stop();
    let server = Phlox::start(&dir, &["--config", cfg.to_str().unwrap()]);
    let (s, e) = (now / 1_000_000 - 3_600_000, now / 1_000_000 + 60_000);
    assert_eq!(flame_total(&server.http, "acme", CPU, "{}", s, e).await, 10);
    server.stop();
}
