//! Span, trace, profile id and call-site selectors: exact totals.
#![allow(clippy::unwrap_used)]

use phlox_e2e::*;
use phlox_pprof::testkit::ProfileBuilder;
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
    server.stop();
}
