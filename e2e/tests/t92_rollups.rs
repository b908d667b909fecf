//! Rollups in a running `phlox`: five and a half hours of backdated
//! profiles (across a UTC midnight) are compacted and rolled up per hour
//! and per day; flame graphs, pprof merges, SelectSeries and totals over
//! ranges that cut buckets anywhere are the same with rollups and without
//! (the same data dir served with `query_frontend.rollups: false`), and
//! equal to sums worked out from the input; a deletion inside an hour is
//! honoured by both at once, and by the rollups made again after it.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use phlox_e2e::*;
use phlox_pprof::testkit::ProfileBuilder;
use phlox_proto::google::v1 as pb;
use phlox_proto::push::v1::PushRequest;
use phlox_proto::querier::v1 as q;
use prost::Message;

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
const TENANT: &str = "acme";
const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
const PODS: i64 = 3;
/// Profiles every 5 minutes from 20:00 − 30 min to 01:00 the next day.
const STEPS: i64 = 66;

/// The day the data starts in (two days ago, so its day and the next are over).
fn day_start() -> i64 {
    let now = now_nanos() / 1_000_000;
    (now - 2 * DAY).div_euclid(DAY) * DAY
}

fn step_time(d: i64, i: i64) -> i64 {
    d + 20 * HOUR - 30 * MIN + i * 5 * MIN
}

/// Pod `p`'s profile of step `i` (stacks root first): `main;f{i % 4}` =
/// 10 + i + 100 p and `main;gc` = 3 + p.
fn work(p: i64, i: i64) -> i64 {
    10 + i + 100 * p
}
fn gc(p: i64) -> i64 {
    3 + p
}

fn step_request(d: i64, i: i64) -> PushRequest {
    let mut req = PushRequest::default();
    for p in 0..PODS {
        let mut b = ProfileBuilder::new("cpu", "nanoseconds");
        b.period("cpu", "nanoseconds", 10_000_000).time_nanos(step_time(d, i) * 1_000_000);
        let leaf = format!("f{}", i % 4);
        b.sample(&["main", leaf.as_str()], &[work(p, i)], &[]);
        b.sample(&["main", "gc"], &[gc(p)], &[]);
        let pod = format!("p{p}");
        let one = push_request(
            &[("__name__", "process_cpu"), ("service_name", "api"), ("pod", &pod)],
            b.encode(),
            &format!("00000000-0000-4000-8000-{:06}{:06}", p, i),
        );
        req.series.extend(one.series);
    }
    req
}

/// What the input holds in `[s, e]` (ms, inclusive), `pod` = one pod or all,
/// without the steps `deleted` holds: (total, per stack "leaf;..;root").
fn expected(d: i64, s: i64, e: i64, pod: Option<i64>, deleted: &[i64]) -> (i64, BTreeMap<String, i64>) {
    let mut stacks = BTreeMap::new();
    let mut total = 0;
    for i in (0..STEPS).filter(|i| !deleted.contains(i)) {
        let t = step_time(d, i);
        if t < s || t > e {
            continue;
        }
        for p in (0..PODS).filter(|p| pod.is_none_or(|x| x == *p)) {
            *stacks.entry(format!("f{};main", i % 4)).or_insert(0) += work(p, i);
            *stacks.entry("gc;main".to_string()).or_insert(0) += gc(p);
            total += work(p, i) + gc(p);
        }
    }
    (total, stacks)
}

/// Everything the test compares for one range.
#[derive(Debug, PartialEq)]
struct Answer {
    flamegraph: q::FlameGraph,
    /// Merged pprof, "leaf;..;root" function names → value.
    pprof: BTreeMap<String, i64>,
    /// SelectSeries by pod, step 5 min: (pod, [(t, value)]).
    series: Vec<(String, Vec<(i64, f64)>)>,
}

async fn answer(base: &str, selector: &str, s: i64, e: i64) -> Answer {
    let fg: q::SelectMergeStacktracesResponse = query(
        base,
        TENANT,
        "SelectMergeStacktraces",
        &q::SelectMergeStacktracesRequest {
            profile_type_id: CPU.into(),
            label_selector: selector.into(),
            start: s,
            end: e,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let profile: pb::Profile = query(
        base,
        TENANT,
        "SelectMergeProfile",
        &q::SelectMergeProfileRequest {
            profile_type_id: CPU.into(),
            label_selector: selector.into(),
            start: s,
            end: e,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let mut pprof = BTreeMap::new();
    let fname = |loc_id: u64| -> String {
        let loc = profile.location.iter().find(|l| l.id == loc_id).unwrap();
        let f = profile.function.iter().find(|f| f.id == loc.line[0].function_id).unwrap();
        profile.string_table[f.name as usize].clone()
    };
    for sample in &profile.sample {
        let names: Vec<String> = sample.location_id.iter().map(|&l| fname(l)).collect();
        *pprof.entry(names.join(";")).or_insert(0) += sample.value[0];
    }
    let series: q::SelectSeriesResponse = query(
        base,
        TENANT,
        "SelectSeries",
        &q::SelectSeriesRequest {
            profile_type_id: CPU.into(),
            label_selector: selector.into(),
            start: s,
            end: e,
            step: 300.0,
            group_by: vec!["pod".into()],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let series = series
        .series
        .iter()
        .map(|sr| (sr.labels[0].value.clone(), sr.points.iter().map(|p| (p.timestamp, p.value)).collect()))
        .collect();
    Answer { flamegraph: fg.flamegraph.unwrap_or_default(), pprof, series }
}

/// The ranges: (label selector, pod of the selector, start, end), cutting
/// hours and days at odd points (hours mostly inside and mostly outside),
/// whole hours, whole days, inside one hour.
fn ranges(d: i64) -> Vec<(&'static str, Option<i64>, i64, i64)> {
    let h0 = d + 20 * HOUR;
    vec![
        ("{}", None, h0 - 25 * MIN + 7_001, h0 + 4 * HOUR + 13 * MIN + 3_003),
        ("{}", None, d, d + DAY + 2 * HOUR),
        ("{}", None, d - 7 * DAY, d + 3 * DAY - 1),
        (r#"{pod="p1"}"#, Some(1), d, d + DAY + 2 * HOUR),
        ("{}", None, d + DAY + 17 * MIN + 1, d + DAY + 50 * MIN),
        ("{}", None, h0 + HOUR, h0 + 3 * HOUR - 1),
        (r#"{pod=~"p0|p2"}"#, None, h0 - HOUR, h0 + 2 * HOUR + 1),
        // Both edge hours mostly inside: each read whole from its rollup,
        // less the rows outside the range.
        ("{}", None, h0 + 10 * MIN + 1, h0 + 3 * HOUR + 45 * MIN + 500),
        (r#"{pod="p1"}"#, Some(1), h0 + 2 * HOUR + 20 * MIN, d + DAY + 55 * MIN),
    ]
}

/// Every range's answer, each checked against the input's sums.
async fn answers(base: &str, d: i64, deleted: &[i64]) -> Vec<Answer> {
    let mut out = Vec::new();
    for (selector, pod, s, e) in ranges(d) {
        let a = answer(base, selector, s, e).await;
        let pod = if selector.contains("p0|p2") { None } else { pod };
        let (mut total, mut stacks) = expected(d, s, e, pod, deleted);
        if selector.contains("p0|p2") {
            let (t1, s1) = expected(d, s, e, Some(1), deleted);
            total -= t1;
            for (k, v) in s1 {
                *stacks.get_mut(&k).unwrap() -= v;
            }
            stacks.retain(|_, v| *v != 0);
        }
        assert_eq!(a.flamegraph.total, total, "{selector} {s}..{e}: flame graph total");
        assert_eq!(a.pprof, stacks, "{selector} {s}..{e}: merged pprof by stack");
        let series_total: f64 = a.series.iter().flat_map(|(_, p)| p.iter().map(|(_, v)| v)).sum();
        assert_eq!(series_total as i64, total, "{selector} {s}..{e}: SelectSeries");
        out.push(a);
    }
    out
}

async fn metrics(base: &str) -> String {
    reqwest::get(format!("{base}/metrics")).await.unwrap().text().await.unwrap()
}

fn rollup_reads(text: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with("phlox_query_backend_datasets_total{outcome=\"rollup\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Waits until day `d` is rolled up: a flame graph of the whole day reads
/// exactly one rollup dataset (the day's) and no raw block.
async fn day_rolled_up(base: &str, d: i64) {
    eventually("the day's rollup", Duration::from_secs(180), Duration::from_millis(500), || async {
        let before = rollup_reads(&metrics(base).await);
        let total = flame_total(base, TENANT, CPU, "{}", d, d + DAY - 1).await;
        let reads = rollup_reads(&metrics(base).await) - before;
        (reads == 1.0 && total > 0).then_some(())
    })
    .await;
}

fn config(dir: &Path, rollups: bool) -> String {
    let cfg = dir.join(format!("phlox-{rollups}.yaml"));
    std::fs::write(
        &cfg,
        format!(
            "multitenancy_enabled: true\nsegment_writer:\n  segment_duration: 100ms\n  shards: 1\n\
             limits:\n  ingestion_rate_mb: 0\n  reject_older_than: 4d\n\
             compaction:\n  min_blocks: [4, 2, 2]\n  max_age_seconds: [1, 1, 1]\n  poll_interval: 100ms\n\
             \x20 tombstone_grace: 1s\nquery_frontend:\n  rollups: {rollups}\n"
        ),
    )
    .unwrap();
    cfg.to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_range_answers_are_the_same_with_rollups_and_without() {
    let (tmp, dir) = data_dir();
    let (with, without) = (config(tmp.path(), true), config(tmp.path(), false));
    let d = day_start();
    let server = Phlox::start(&dir, &["--config", &with]);
    let client = reqwest::Client::new();
    for i in 0..STEPS {
        push_until_acked(&client, &server.push_url(), TENANT, step_request(d, i).encode_to_vec()).await;
    }
    day_rolled_up(&server.http, d).await;
    let before = rollup_reads(&metrics(&server.http).await);
    let on = answers(&server.http, d, &[]).await;
    let used = rollup_reads(&metrics(&server.http).await) - before;
    assert!(used >= 5.0, "the long ranges read rollups: {used} rollup datasets read");
    // A whole day alone reads its day rollup: one dataset, no raw block.
    let before = rollup_reads(&metrics(&server.http).await);
    let day = flame_total(&server.http, TENANT, CPU, "{}", d, d + DAY - 1).await;
    assert_eq!(day, expected(d, d, d + DAY - 1, None, &[]).0);
    assert_eq!(rollup_reads(&metrics(&server.http).await) - before, 1.0, "one day rollup for the whole day");
    server.stop();

    // The same data without rollups: the same answers.
    let server = Phlox::start(&dir, &["--config", &without]);
    let off = answers(&server.http, d, &[]).await;
    assert_eq!(off, on, "raw rows only answer as rollups do");
    assert_eq!(rollup_reads(&metrics(&server.http).await), 0.0);

    // Delete 10 minutes inside hour 21 (steps 20, 21, 22).
    let h0 = d + 20 * HOUR;
    let (from, until) = ((h0 + 70 * MIN) / 1000, (h0 + 80 * MIN) / 1000);
    let r = client
        .post(format!("{}/admin/v1/delete?from={from}&until={until}&wait=0s", server.admin))
        .header("X-Scope-OrgID", TENANT)
        .header("authorization", server.admin_auth())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let deleted = [20, 21, 22];
    let off = answers(&server.http, d, &deleted).await;
    server.stop();

    // With rollups, at once (the touched rollups are gone) and after the
    // blocks are rewritten and rolled up again.
    let server = Phlox::start(&dir, &["--config", &with]);
    let on = answers(&server.http, d, &deleted).await;
    assert_eq!(on, off, "a deletion is honoured with rollups as without");
    eventually("the deletion is done", Duration::from_secs(60), Duration::from_millis(500), || async {
        let r = client
            .get(format!("{}/admin/v1/deletions", server.admin))
            .header("X-Scope-OrgID", TENANT)
            .header("authorization", server.admin_auth())
            .send()
            .await
            .ok()?;
        let body = r.text().await.ok()?;
        (body.contains("\"done\"") && !body.contains("\"pending\"")).then_some(())
    })
    .await;
    day_rolled_up(&server.http, d).await;
    let before = rollup_reads(&metrics(&server.http).await);
    let again = answers(&server.http, d, &deleted).await;
    assert_eq!(again, off, "rollups made after the deletion hold none of its rows");
    assert!(rollup_reads(&metrics(&server.http).await) - before >= 5.0, "rollups are read again");
    server.stop();
}
