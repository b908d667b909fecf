//! The query API over Connect (binary proto), as Grafana's data source calls
//! it, on known profiles: exact names, totals, self values, label values,
//! series points; the same answers whether the data is in one segment or many.
#![allow(clippy::unwrap_used)]

use phlox_e2e::*;
use phlox_pprof::testkit::ProfileBuilder;
use phlox_proto::push::v1::PushRequest;
use phlox_proto::querier::v1 as q;
use phlox_proto::types::v1 as t;

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";

fn profile(time: i64, stacks: &[(&[&str], i64)]) -> Vec<u8> {
    let mut b = ProfileBuilder::new("cpu", "nanoseconds");
    b.period("cpu", "nanoseconds", 10_000_000).time_nanos(time);
    for (s, v) in stacks {
        b.sample(s, &[*v], &[]);
    }
    b.encode()
}

fn requests(t0: i64) -> Vec<PushRequest> {
    vec![
        push_request(
            &[("__name__", "process_cpu"), ("service_name", "shop"), ("pod", "p1")],
            profile(t0, &[(&["main", "a", "b"], 30), (&["main", "c"], 10)]),
            &uuid::Uuid::new_v4().to_string(),
        ),
        push_request(
            &[("__name__", "process_cpu"), ("service_name", "shop"), ("pod", "p2")],
            profile(t0 + 10_000_000_000, &[(&["main", "a", "b"], 5), (&["main", "d"], 5)]),
            &uuid::Uuid::new_v4().to_string(),
        ),
        push_request(
            &[("__name__", "process_cpu"), ("service_name", "cart"), ("pod", "p3")],
            profile(t0, &[(&["main", "x"], 7)]),
            &uuid::Uuid::new_v4().to_string(),
        ),
    ]
}

/// Decodes flame graph levels into (depth, name, total, self) in layout order.
fn nodes(fg: &q::FlameGraph) -> Vec<(usize, String, i64, i64)> {
    fg.levels
        .iter()
        .enumerate()
        .flat_map(|(d, l)| l.values.chunks(4).map(move |n| (d, fg.names[n[3] as usize].clone(), n[1], n[2])))
        .collect()
}

struct Answers {
    shop: q::FlameGraph,
    p1_total: i64,
    pods: Vec<String>,
    series: Vec<t::Series>,
    types: Vec<String>,
    /// The label sets of Series (names and values), each sorted by name.
    sets: Vec<Vec<(String, String)>>,
    render_ticks: i64,
    /// No service_name matcher: the tenant index picks the datasets.
    p3_total: i64,
    all_pods: Vec<String>,
}

async fn ask(base: &str, t0_ms: i64) -> Answers {
    let (start, end) = (t0_ms - 60_000, t0_ms + 60_000);
    let flame = |sel: &str| q::SelectMergeStacktracesRequest {
        profile_type_id: CPU.into(),
        label_selector: sel.into(),
        start,
        end,
        ..Default::default()
    };
    let shop: q::SelectMergeStacktracesResponse =
        query(base, "anonymous", "SelectMergeStacktraces", &flame(r#"{service_name="shop"}"#)).await.unwrap();
    let p1: q::SelectMergeStacktracesResponse =
        query(base, "anonymous", "SelectMergeStacktraces", &flame(r#"{service_name="shop",pod=~"p1|nope"}"#))
            .await
            .unwrap();
    let p3: q::SelectMergeStacktracesResponse =
        query(base, "anonymous", "SelectMergeStacktraces", &flame(r#"{pod="p3"}"#)).await.unwrap();
    let all_pods: t::LabelValuesResponse = query(
        base,
        "anonymous",
        "LabelValues",
        &t::LabelValuesRequest { name: "pod".into(), matchers: vec![], start, end },
    )
    .await
    .unwrap();
    let pods: t::LabelValuesResponse = query(
        base,
        "anonymous",
        "LabelValues",
        &t::LabelValuesRequest { name: "pod".into(), matchers: vec![r#"{service_name="shop"}"#.into()], start, end },
    )
    .await
    .unwrap();
    let series: q::SelectSeriesResponse = query(
        base,
        "anonymous",
        "SelectSeries",
        &q::SelectSeriesRequest {
            profile_type_id: CPU.into(),
            label_selector: "{}".into(),
            start,
            end,
            group_by: vec!["service_name".into()],
            step: 10.0,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let types: q::ProfileTypesResponse =
        query(base, "anonymous", "ProfileTypes", &q::ProfileTypesRequest { start, end }).await.unwrap();
    let sets: q::SeriesResponse = query(
        base,
        "anonymous",
        "Series",
        &q::SeriesRequest {
            matchers: vec![],
            label_names: vec!["service_name".into(), "__profile_type__".into()],
            start,
            end,
        },
    )
    .await
    .unwrap();
    let render =
        reqwest::get(format!("{base}/pyroscope/render?query={CPU}{{service_name=\"shop\"}}&from={start}&until={end}"))
            .await
            .unwrap();
    assert_eq!(render.status().as_u16(), 200);
    let render: serde_json::Value = serde_json::from_slice(&render.bytes().await.unwrap()).unwrap();
    // The profile type as a `__name__` matcher (Grafana's older data source)
    // is the same query, not an extra label matcher.
    let by_name = reqwest::get(format!(
        "{base}/pyroscope/render?query=%7B__name__%3D%22{CPU}%22%2Cservice_name%3D%22shop%22%7D&from={start}&until={end}"
    ))
    .await
    .unwrap();
    assert_eq!(by_name.status().as_u16(), 200);
    let by_name: serde_json::Value = serde_json::from_slice(&by_name.bytes().await.unwrap()).unwrap();
    assert_eq!(by_name["flamebearer"]["numTicks"], render["flamebearer"]["numTicks"]);
    assert_eq!(by_name["flamebearer"]["names"], render["flamebearer"]["names"]);
    Answers {
        shop: shop.flamegraph.unwrap(),
        p1_total: p1.flamegraph.unwrap().total,
        pods: pods.names,
        series: series.series,
        types: types.profile_types.into_iter().map(|p| p.id).collect(),
        sets: {
            let mut sets: Vec<Vec<(String, String)>> = sets
                .labels_set
                .iter()
                .map(|l| {
                    let mut v: Vec<(String, String)> =
                        l.labels.iter().map(|p| (p.name.clone(), p.value.clone())).collect();
                    v.sort();
                    v
                })
                .collect();
            sets.sort();
            sets
        },
        render_ticks: render["flamebearer"]["numTicks"].as_i64().unwrap(),
        p3_total: p3.flamegraph.unwrap().total,
        all_pods: all_pods.names,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_return_exact_values_from_one_segment_or_many() {
    let client = reqwest::Client::new();
    let t0 = (now_nanos() / 1_000_000_000 - 120) * 1_000_000_000;
    let t0_ms = t0 / 1_000_000;

    // Many segments: one push at a time, each acked (its own segment).
    let (_a, dir_a) = data_dir();
    let many = Phlox::start(&dir_a, &["--ingestion-rate-mb", "0"]);
    for r in requests(t0) {
        assert_eq!(push(&client, &many.push_url(), &r).await.unwrap().0, 200);
    }
    // One segment: everything in one push.
    let (_b, dir_b) = data_dir();
    // One shard, so both services share the object (and its tenant index).
    let config = _b.path().join("phlox.yaml");
    std::fs::write(&config, "segment_writer:\n  shards: 1\n").unwrap();
    let one = Phlox::start(
        &dir_b,
        &["--ingestion-rate-mb", "0", "--segment-duration", "2s", "--config", config.to_str().unwrap()],
    );
    let all = PushRequest { series: requests(t0).into_iter().flat_map(|r| r.series).collect() };
    assert_eq!(push(&client, &one.push_url(), &all).await.unwrap().0, 200);

    let a = ask(&many.http, t0_ms).await;
    let b = ask(&one.http, t0_ms).await;
    for x in [&a, &b] {
        assert_eq!(
            nodes(&x.shop),
            vec![
                (0, "total".into(), 50, 0),
                (1, "main".into(), 50, 0),
                (2, "a".into(), 35, 0),
                (2, "c".into(), 10, 10),
                (2, "d".into(), 5, 5),
                (3, "b".into(), 35, 35),
            ]
        );
        assert_eq!((x.shop.total, x.shop.max_self), (50, 35));
        assert_eq!(x.p1_total, 40);
        assert_eq!(x.pods, vec!["p1", "p2"]);
        assert_eq!(x.types, vec![CPU]);
        let set = |service: &str| {
            vec![("__profile_type__".to_string(), CPU.to_string()), ("service_name".into(), service.into())]
        };
        assert_eq!(x.sets, vec![set("cart"), set("shop")]);
        assert_eq!(x.render_ticks, 50);
        assert_eq!(x.p3_total, 7);
        assert_eq!(x.all_pods, vec!["p1", "p2", "p3"]);
        // Series per service; a point at ts covers (ts - 10 s, ts].
        let got: Vec<(String, Vec<(i64, f64)>)> = x
            .series
            .iter()
            .map(|s| (s.labels[0].value.clone(), s.points.iter().map(|p| (p.timestamp, p.value)).collect()))
            .collect();
        let start = t0_ms - 60_000;
        let edge = |t: i64| start + (t - start + 9_999) / 10_000 * 10_000;
        assert_eq!(
            got,
            vec![
                ("cart".into(), vec![(edge(t0_ms), 7.0)]),
                ("shop".into(), vec![(edge(t0_ms), 40.0), (edge(t0_ms + 10_000), 10.0)])
            ]
        );
    }
    assert_eq!(a.shop, b.shop, "identical flame graphs from one segment or many");
    // In the single segment, queries without a service_name matcher went
    // through the tenant index: the {pod="p3"} query skipped "shop" and the
    // label query read no dataset at all.
    let metrics = reqwest::get(format!("{}/metrics", one.http)).await.unwrap().text().await.unwrap();
    let count = |outcome: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("phlox_query_backend_datasets_total{{outcome=\"{outcome}\"}}")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    };
    assert!(count("index") >= 2.0, "{metrics}");
    assert!(count("skipped") >= 3.0, "{metrics}");

    // AnalyzeQuery: what a query would read, from block metadata.
    let analyze =
        |query: &str| q::AnalyzeQueryRequest { start: t0_ms - 60_000, end: t0_ms + 60_000, query: query.into() };
    let shop: q::AnalyzeQueryResponse =
        query(&one.http, "anonymous", "AnalyzeQuery", &analyze(&format!("{CPU}{{service_name=\"shop\"}}")))
            .await
            .unwrap();
    let scope = &shop.query_scopes[0];
    assert_eq!((scope.block_count, scope.series_count, scope.profile_count), (1, 2, 2));
    assert!(scope.index_bytes > 0 && scope.profile_bytes > 0 && scope.symbol_bytes > 0);
    let impact = shop.query_impact.unwrap();
    assert_eq!(impact.total_queried_series, 2);
    assert_eq!(impact.total_bytes_in_time_range, scope.index_bytes + scope.profile_bytes + scope.symbol_bytes);
    assert!(impact.deduplication_needed, "level-0 segments need dedup");
    let all: q::AnalyzeQueryResponse = query(&one.http, "anonymous", "AnalyzeQuery", &analyze("{}")).await.unwrap();
    assert_eq!((all.query_scopes[0].series_count, all.query_scopes[0].profile_count), (3, 3));
    let (status, _) = query::<_, q::AnalyzeQueryResponse>(&one.http, "anonymous", "AnalyzeQuery", &analyze("{pod="))
        .await
        .unwrap_err();
    assert_eq!(status, 400);

    // Bad queries get a clear 400 and the server keeps serving.
    let base = &many.http;
    let (s, e) = (t0_ms - 60_000, t0_ms + 60_000);
    let bad = |sel: &str, pt: &str, start: i64, end: i64, max_nodes: Option<i64>| q::SelectMergeStacktracesRequest {
        profile_type_id: pt.into(),
        label_selector: sel.into(),
        start,
        end,
        max_nodes,
        ..Default::default()
    };
    for (req, msg) in [
        (bad("{service_name=", CPU, s, e, None), "invalid label selector"),
        (bad("{}", "cpu", s, e, None), "invalid profile_typeID"),
        (bad("{}", CPU, e, s, None), "invalid time range"),
        (bad("{}", CPU, 0, e, None), "missing time range"),
        (bad("{}", CPU, e - 31 * 86_400_000, e, None), "max_query_length"),
        (bad("{}", CPU, s, e, Some(-1)), "max_nodes"),
        (bad("{}", CPU, s, e, Some(1 << 40)), "max_nodes"),
    ] {
        let (status, text) =
            query::<_, q::SelectMergeStacktracesResponse>(base, "anonymous", "SelectMergeStacktraces", &req)
                .await
                .unwrap_err();
        assert_eq!(status, 400, "{text}");
        assert!(text.contains(msg), "{text} should mention {msg}");
    }
    let (status, _) = query::<_, t::LabelValuesResponse>(
        base,
        "anonymous",
        "LabelValues",
        &t::LabelValuesRequest { name: String::new(), matchers: vec![], start: s, end: e },
    )
    .await
    .unwrap_err();
    assert_eq!(status, 400);
    let ok: q::ProfileTypesResponse =
        query(base, "anonymous", "ProfileTypes", &q::ProfileTypesRequest { start: s, end: e }).await.unwrap();
    assert_eq!(ok.profile_types.len(), 1);
    many.stop();
    one.stop();
}

/// Hostile queries get a 4xx naming the problem, or an exact answer; the
/// server keeps serving and its answers stay right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_queries_are_refused_or_answered_and_the_server_keeps_serving() {
    let (_tmp, dir) = data_dir();
    let server = Phlox::start(&dir, &[]);
    let client = reqwest::Client::new();
    let t0 = now_nanos();
    for r in requests(t0) {
        push_until_acked(&client, &server.push_url(), "anonymous", prost::Message::encode_to_vec(&r)).await;
    }
    let merge = |selector: String, start: i64, end: i64| {
        let base = server.http.clone();
        async move {
            let req = q::SelectMergeStacktracesRequest {
                profile_type_id: CPU.into(),
                label_selector: selector,
                start,
                end,
                max_nodes: None,
                ..Default::default()
            };
            query::<_, q::SelectMergeStacktracesResponse>(&base, "anonymous", "SelectMergeStacktraces", &req)
                .await
                .map(|r| r.flamegraph.map(|f| f.total).unwrap_or(0))
        }
    };
    let now_ms = t0 / 1_000_000;
    // Times at the ends of i64: longer than max_query_length, a 400 naming it.
    for (start, end) in [(i64::MIN, now_ms), (i64::MIN, i64::MAX), (-1, i64::MAX), (now_ms - 3_600_000, i64::MAX)] {
        let (status, body) = merge("{}".into(), start, end).await.unwrap_err();
        assert_eq!(status, 400, "{start}..{end}: {body}");
        assert!(body.contains("max_query_length"), "{start}..{end}: {body}");
    }
    let series = |start: i64, end: i64, step: f64| {
        let base = server.http.clone();
        async move {
            let req = q::SelectSeriesRequest {
                profile_type_id: CPU.into(),
                label_selector: "{service_name=\"shop\"}".into(),
                start,
                end,
                step,
                ..Default::default()
            };
            query::<_, q::SelectSeriesResponse>(&base, "anonymous", "SelectSeries", &req)
                .await
                .map(|r| r.series.iter().flat_map(|s| &s.points).map(|p| p.value).sum::<f64>())
        }
    };
    for (start, end, step) in [(i64::MIN, now_ms, 15.0), (i64::MIN + 1, i64::MAX, 1e-3), (now_ms - 1, now_ms, f64::NAN)]
    {
        let (status, body) = series(start, end, step).await.unwrap_err();
        assert_eq!(status, 400, "{start}..{end} step {step}: {body}");
    }
    // A step far longer than the range still sums every profile once.
    let sum = series(now_ms - 3_600_000, now_ms + 60_000, 1e300).await.unwrap();
    assert_eq!(sum, ask_total(&requests(t0)) as f64);
    // Too many matchers, a huge selector: 400s that name the problem briefly.
    let many = format!("{{{}}}", (0..100_000).map(|i| format!("l{i}=~\"v{i}.*\"")).collect::<Vec<_>>().join(","));
    let (status, body) = merge(many.clone(), now_ms - 3_600_000, now_ms + 60_000).await.unwrap_err();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("more than 128 matchers") && body.len() < 1_000, "{}", &body[..body.len().min(400)]);
    let (status, body) =
        merge(format!("{{a=\"{}", "x".repeat(10 << 20)), now_ms - 3_600_000, now_ms).await.unwrap_err();
    assert_eq!(status, 400);
    assert!(body.len() < 1_000, "the error quotes a bounded part of the selector");
    // Still serving, with exact answers.
    assert_eq!(
        merge("{service_name=\"shop\"}".into(), now_ms - 3_600_000, now_ms + 60_000).await.unwrap(),
        ask_total(&requests(t0))
    );
    server.stop();
}

/// The total of the CPU profiles of `shop` in `requests`.
fn ask_total(requests: &[PushRequest]) -> i64 {
    requests
        .iter()
        .filter(|r| r.series[0].labels.iter().any(|l| l.name == "service_name" && l.value == "shop"))
        .flat_map(|r| &r.series[0].samples)
        .map(|s| {
            let p = phlox_pprof::Profile::decode(&s.raw_profile).unwrap();
            (0..p.sample_count()).map(|i| p.sample_value(i, 0)).sum::<i64>()
        })
        .sum()
}
