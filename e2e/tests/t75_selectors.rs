//! Span, trace, profile id and call-site selectors: exact totals.
#![allow(clippy::unwrap_used)]

use phlox_e2e::*;
use phlox_pprof::testkit::ProfileBuilder;
use phlox_proto::google::v1::Profile;
use phlox_proto::querier::v1 as q;
use phlox_proto::types::v1 as t;
use prost::Message;

const CPU: &str = "process_cpu:cpu:nanoseconds::";
const SPAN_A: &str = "00000000000000aa";
const SPAN_B: &str = "00000000000000bb";
const TRACE: &str = "0123456789abcdef0123456789abcdef";

async fn flame(base: &str, req: &q::SelectMergeStacktracesRequest) -> (u16, i64) {
    let r = reqwest::Client::new()
        .post(format!("{base}/querier.v1.QuerierService/SelectMergeStacktraces"))
        .header("Content-Type", "application/proto")
        .body(req.encode_to_vec())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body = r.bytes().await.unwrap();
    if status != 200 {
        return (status, 0);
    }
    (status, q::SelectMergeStacktracesResponse::decode(body).unwrap().flamegraph.unwrap().total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_and_call_site_selectors_pick_exact_samples() {
    let (_tmp, dir) = data_dir();
    let server = Phlox::start(&dir, &["--ingestion-rate-mb", "0"]);
    let client = reqwest::Client::new();
    let now = now_nanos();
    let mut b = ProfileBuilder::new("cpu", "nanoseconds");
    b.time_nanos(now);
    b.sample(&["main", "handler", "db"], &[10], &[("span_id", SPAN_A), ("trace_id", TRACE)]);
    b.sample(&["main", "handler", "json"], &[20], &[("span_id", SPAN_B)]);
    b.sample(&["main", "gc"], &[5], &[]);
    let id1 = "11111111-1111-4111-8111-111111111111";
    let req = push_request(&[("__name__", "process_cpu"), ("service_name", "svc")], b.encode(), id1);
    assert_eq!(push(&client, &server.push_url(), &req).await.unwrap().0, 200);
    let mut b2 = ProfileBuilder::new("cpu", "nanoseconds");
    b2.time_nanos(now).sample(&["main", "handler", "db"], &[100], &[]);
    let req = push_request(
        &[("__name__", "process_cpu"), ("service_name", "svc")],
        b2.encode(),
        "22222222-2222-4222-8222-222222222222",
    );
    assert_eq!(push(&client, &server.push_url(), &req).await.unwrap().0, 200);

    let (s, e) = (now / 1_000_000 - 60_000, now / 1_000_000 + 60_000);
    let base = |f: &dyn Fn(&mut q::SelectMergeStacktracesRequest)| {
        let mut r = q::SelectMergeStacktracesRequest {
            profile_type_id: CPU.into(),
            label_selector: "{}".into(),
            start: s,
            end: e,
            ..Default::default()
        };
        f(&mut r);
        r
    };
    let url = &server.http;
    assert_eq!(flame(url, &base(&|_| {})).await, (200, 135));
    assert_eq!(flame(url, &base(&|r| r.span_selector = vec![SPAN_A.into()])).await, (200, 10));
    assert_eq!(flame(url, &base(&|r| r.span_selector = vec![SPAN_A.into(), SPAN_B.into()])).await, (200, 30));
    assert_eq!(flame(url, &base(&|r| r.trace_id_selector = vec![TRACE.into()])).await, (200, 10));
    assert_eq!(flame(url, &base(&|r| r.profile_id_selector = vec![id1.into()])).await, (200, 35));
    let call_site = |names: &[&str]| t::StackTraceSelector {
        call_site: names.iter().map(|n| t::Location { name: n.to_string() }).collect(),
        go_pgo: None,
    };
    assert_eq!(
        flame(url, &base(&|r| r.stack_trace_selector = Some(call_site(&["main", "handler"])))).await,
        (200, 130)
    );
    assert_eq!(
        flame(url, &base(&|r| r.stack_trace_selector = Some(call_site(&["main", "handler", "db"])))).await,
        (200, 110)
    );
    // Bad selectors.
    assert_eq!(flame(url, &base(&|r| r.span_selector = vec!["xyz".into()])).await.0, 400);
    assert_eq!(flame(url, &base(&|r| r.profile_id_selector = vec!["nope".into()])).await.0, 400);
    assert_eq!(
        flame(
            url,
            &base(&|r| {
                r.span_selector = vec![SPAN_A.into()];
                r.trace_id_selector = vec![TRACE.into()];
            })
        )
        .await
        .0,
        400
    );
    // SelectMergeSpanProfile, as Grafana's traces-to-profiles calls it.
    let span = q::SelectMergeSpanProfileRequest {
        profile_type_id: CPU.into(),
        label_selector: "{}".into(),
        span_selector: vec![SPAN_B.into()],
        start: s,
        end: e,
        ..Default::default()
    };
    let r = client
        .post(format!("{url}/querier.v1.QuerierService/SelectMergeSpanProfile"))
        .header("Content-Type", "application/proto")
        .body(span.encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = q::SelectMergeSpanProfileResponse::decode(r.bytes().await.unwrap()).unwrap();
    assert_eq!(r.flamegraph.unwrap().total, 20);

    // SelectSeries under a call site: per profile, only samples below it.
    let series = |call: Option<&[&str]>, exemplar: t::ExemplarType| q::SelectSeriesRequest {
        profile_type_id: CPU.into(),
        label_selector: "{}".into(),
        start: s,
        end: e,
        step: 120.0,
        stack_trace_selector: call.map(call_site),
        exemplar_type: exemplar as i32,
        ..Default::default()
    };
    let total = |r: &q::SelectSeriesResponse| r.series.iter().flat_map(|s| &s.points).map(|p| p.value).sum::<f64>();
    let all: q::SelectSeriesResponse =
        query(url, "anonymous", "SelectSeries", &series(None, t::ExemplarType::None)).await.unwrap();
    assert_eq!(total(&all), 135.0);
    let db: q::SelectSeriesResponse =
        query(url, "anonymous", "SelectSeries", &series(Some(&["main", "handler", "db"]), t::ExemplarType::None))
            .await
            .unwrap();
    assert_eq!(total(&db), 110.0);
    let gc: q::SelectSeriesResponse =
        query(url, "anonymous", "SelectSeries", &series(Some(&["main", "gc"]), t::ExemplarType::None)).await.unwrap();
    assert_eq!(total(&gc), 5.0);

    // SPAN exemplars: the span with the highest value, with its trace.
    let spans: q::SelectSeriesResponse =
        query(url, "anonymous", "SelectSeries", &series(None, t::ExemplarType::Span)).await.unwrap();
    let ex: Vec<&t::Exemplar> = spans.series.iter().flat_map(|s| &s.points).flat_map(|p| &p.exemplars).collect();
    assert_eq!(ex.len(), 1);
    assert_eq!((ex[0].span_id.as_str(), ex[0].value, ex[0].trace_id.as_str()), (SPAN_B, 20, ""));
    assert_eq!(ex[0].profile_id, id1);
    let handler_spans: q::SelectSeriesResponse =
        query(url, "anonymous", "SelectSeries", &series(Some(&["main", "handler", "db"]), t::ExemplarType::Span))
            .await
            .unwrap();
    let ex: Vec<&t::Exemplar> =
        handler_spans.series.iter().flat_map(|s| &s.points).flat_map(|p| &p.exemplars).collect();
    assert_eq!(ex.len(), 1);
    assert_eq!((ex[0].span_id.as_str(), ex[0].value, ex[0].trace_id.as_str()), (SPAN_A, 10, TRACE));

    // Span heatmap: each span is a point (10 and 20), an exemplar per cell.
    let heat = |query_type: q::HeatmapQueryType| q::SelectHeatmapRequest {
        profile_type_id: CPU.into(),
        label_selector: "{}".into(),
        start: s,
        end: e,
        step: 120.0,
        query_type: query_type as i32,
        exemplar_type: t::ExemplarType::Span as i32,
        ..Default::default()
    };
    let h: q::SelectHeatmapResponse =
        query(url, "anonymous", "SelectHeatmap", &heat(q::HeatmapQueryType::Span)).await.unwrap();
    assert_eq!(h.series.len(), 1);
    let slots = &h.series[0].slots;
    assert_eq!(slots.len(), 1);
    assert_eq!(slots[0].counts.iter().sum::<i32>(), 2);
    assert_eq!((slots[0].counts[0], slots[0].counts[19]), (1, 1));
    assert_eq!(slots[0].y_min[0], 10.0);
    let mut cells: Vec<(String, i64, String)> =
        slots[0].exemplars.iter().map(|e| (e.span_id.clone(), e.value, e.trace_id.clone())).collect();
    cells.sort();
    assert_eq!(cells, vec![(SPAN_A.into(), 10, TRACE.into()), (SPAN_B.into(), 20, String::new())]);
    // Individual heatmap of the same data: two profiles, 35 and 100.
    let h: q::SelectHeatmapResponse =
        query(url, "anonymous", "SelectHeatmap", &heat(q::HeatmapQueryType::Individual)).await.unwrap();
    let slot = &h.series[0].slots[0];
    assert_eq!((slot.counts[0], slot.counts[19], slot.y_min[0]), (1, 1, 35.0));

    // SelectMergeProfile: full locations (file and line), and Go PGO.
    let merge = |selector: Option<t::StackTraceSelector>| q::SelectMergeProfileRequest {
        profile_type_id: CPU.into(),
        label_selector: "{}".into(),
        start: s,
        end: e,
        stack_trace_selector: selector,
        ..Default::default()
    };
    let p: Profile = query(url, "anonymous", "SelectMergeProfile", &merge(None)).await.unwrap();
    assert_eq!(
        stacks_of(&p),
        vec![("main;gc".into(), 5), ("main;handler;db".into(), 110), ("main;handler;json".into(), 20)]
    );
    let db_fn = p.function.iter().find(|f| p.string_table[f.name as usize] == "db").unwrap();
    assert_eq!(p.string_table[db_fn.filename as usize], "src/db.rs");
    assert!(p.location.iter().all(|l| l.line.len() == 1 && l.line[0].line > 0));
    let p: Profile =
        query(url, "anonymous", "SelectMergeProfile", &merge(Some(call_site(&["main", "handler"])))).await.unwrap();
    assert_eq!(stacks_of(&p), vec![("main;handler;db".into(), 110), ("main;handler;json".into(), 20)]);
    let pgo = |keep: u32, aggregate_callees: bool| t::StackTraceSelector {
        call_site: vec![t::Location { name: "gc".into() }],
        go_pgo: Some(t::GoPgo { keep_locations: keep, aggregate_callees }),
    };
    let p: Profile = query(url, "anonymous", "SelectMergeProfile", &merge(Some(pgo(2, false)))).await.unwrap();
    assert_eq!(stacks_of(&p), vec![("handler;db".into(), 110), ("handler;json".into(), 20), ("main;gc".into(), 5)]);
    assert!(p.location.iter().all(|l| l.line[0].line > 0));
    let p: Profile = query(url, "anonymous", "SelectMergeProfile", &merge(Some(pgo(1, true)))).await.unwrap();
    assert_eq!(stacks_of(&p), vec![("db".into(), 110), ("gc".into(), 5), ("json".into(), 20)]);
    assert!(p.location.iter().all(|l| l.line[0].line == 0));
    // The same over gRPC.
    let mut grpc =
        phlox_proto::querier::v1::querier_service_client::QuerierServiceClient::connect(url.clone()).await.unwrap();
    let p = grpc.select_merge_profile(merge(Some(pgo(1, true)))).await.unwrap().into_inner();
    assert_eq!(stacks_of(&p), vec![("db".into(), 110), ("gc".into(), 5), ("json".into(), 20)]);
    server.stop();
}

/// The samples of a pprof as "root;…;leaf" → value, sorted.
fn stacks_of(p: &Profile) -> Vec<(String, i64)> {
    let name = |loc: u64| {
        let l = p.location.iter().find(|l| l.id == loc).unwrap();
        let f = p.function.iter().find(|f| f.id == l.line[0].function_id).unwrap();
        p.string_table[f.name as usize].clone()
    };
    let mut out: Vec<(String, i64)> = p
        .sample
        .iter()
        .map(|s| (s.location_id.iter().rev().map(|&l| name(l)).collect::<Vec<_>>().join(";"), s.value[0]))
        .collect();
    out.sort();
    out
}

/// Label names outside the Prometheus syntax (`thread.name`, as OpenTelemetry
/// writes them) are listed only for clients that say they accept them, as
/// Pyroscope does: `Accept: …;allow-utf8-labelnames=true`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dotted_label_names_need_the_utf8_capability() {
    let (_tmp, dir) = data_dir();
    let server = Phlox::start(&dir, &["--ingestion-rate-mb", "0"]);
    let client = reqwest::Client::new();
    let now = now_nanos();
    let mut b = ProfileBuilder::new("cpu", "nanoseconds");
    b.time_nanos(now).sample(&["main"], &[10], &[]);
    let req = push_request(
        &[("__name__", "process_cpu"), ("service_name", "svc"), ("thread.name", "worker-1")],
        b.encode(),
        "",
    );
    assert_eq!(push(&client, &server.push_url(), &req).await.unwrap().0, 200);
    let (start, end) = (now / 1_000_000 - 60_000, now / 1_000_000 + 60_000);
    let call = |method: &'static str, body: serde_json::Value, accept: Option<&'static str>| {
        let mut r = client
            .post(format!("{}/querier.v1.QuerierService/{method}", server.http))
            .header("Content-Type", "application/json")
            .body(body.to_string());
        if let Some(a) = accept {
            r = r.header("Accept", a);
        }
        async move {
            let r = r.send().await.unwrap();
            let status = r.status().as_u16();
            (status, serde_json::from_slice::<serde_json::Value>(&r.bytes().await.unwrap()).unwrap_or_default())
        }
    };
    let names = serde_json::json!({"start": start.to_string(), "end": end.to_string()});
    let listed = |v: &serde_json::Value| -> Vec<String> {
        v["names"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_owned()).collect()
    };
    let (status, plain) = call("LabelNames", names.clone(), None).await;
    assert_eq!(status, 200);
    assert!(listed(&plain).contains(&"service_name".to_owned()), "{plain}");
    assert!(!listed(&plain).contains(&"thread.name".to_owned()), "{plain}");
    let (_, utf8) = call("LabelNames", names.clone(), Some("*/*;allow-utf8-labelnames=true")).await;
    assert!(listed(&utf8).contains(&"thread.name".to_owned()), "{utf8}");
    assert_eq!(listed(&utf8).len(), listed(&plain).len() + 1, "only the dotted name differs");

    let series =
        serde_json::json!({"start": start.to_string(), "end": end.to_string(), "matchers": ["{service_name=\"svc\"}"]});
    let label_names = |v: &serde_json::Value| -> Vec<String> {
        v["labelsSet"][0]["labels"].as_array().unwrap().iter().map(|l| l["name"].as_str().unwrap().to_owned()).collect()
    };
    let (_, plain) = call("Series", series.clone(), Some("application/json")).await;
    assert!(!label_names(&plain).contains(&"thread.name".to_owned()), "{plain}");
    let (_, utf8) = call("Series", series, Some("application/json; allow-utf8-labelnames=true")).await;
    assert!(label_names(&utf8).contains(&"thread.name".to_owned()), "{utf8}");

    let (status, body) = call("LabelNames", names, Some("not a media type")).await;
    assert_eq!(status, 400, "{body}");
    server.stop();
}
