//! `GET /pyroscope/render`: the legacy flamebearer JSON (flame graph +
//! timeline), as Pyroscope's own UI and older Grafana plugins read it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use phlox_distributor::ingest::parse_time;
use phlox_model::{ProfileType, parse_selector};
use phlox_proto::querier::v1 as q;
use serde_json::{Value, json};

use super::shared::{Legacy, query_error};
use crate::context::{ApiError, OrgId};
use phlox_query::flamebearer::{flamebearer_double, flamebearer_single};

/// A read: the query frontend of this process and the request's tenants.
pub(crate) struct Read {
    frontend: Arc<phlox_query::QueryFrontend>,
    tenants: Vec<String>,
}

impl FromRequestParts<Arc<Legacy>> for Read {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &Arc<Legacy>) -> Result<Self, Response> {
        let frontend = s.query.clone().ok_or_else(|| {
            ApiError::new("unimplemented", "this process does not run the query frontend").into_response()
        })?;
        let org = OrgId::from_request_parts(parts, s).await.map_err(IntoResponse::into_response)?;
        Ok(Read { frontend, tenants: org.tenants().map_err(IntoResponse::into_response)? })
    }
}

/// `from`/`until`-style parameters as a range in Unix ms (default: the last hour).
/// The `[from, until]` range of a query string, in ms; a parameter that is
/// not a time is a 400 naming it. Missing: the last hour.
#[allow(clippy::result_large_err)]
fn time_range(p: &HashMap<String, String>, from_key: &str, until_key: &str) -> Result<(i64, i64), Response> {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0);
    let param = |key: &str, default: i64| -> Result<i64, Response> {
        match p.get(key).filter(|t| !t.is_empty()) {
            None => Ok(default),
            Some(t) => parse_time(t, now).ok_or_else(|| {
                ApiError::invalid_argument(format!(
                    "{key}={:?} is not a time: use unix seconds (or ms, µs, ns), `now`, `now-1h` (s, m, h, d, w, M, y) or YYYYMMDD",
                    t.chars().take(64).collect::<String>()
                ))
                .into_response()
            }),
        }
    };
    let from = param(from_key, now.saturating_sub(3_600_000_000_000))? / 1_000_000;
    let until = param(until_key, now)? / 1_000_000;
    Ok((from, until))
}

/// The label selector the query RPCs take: the render query's matchers
/// without the profile type, whether it was written before the braces or
/// as `{__name__="<profile type id>"}` (as Grafana's older data source does).
fn label_selector_without(selector: &phlox_model::Selector, profile_type: &str) -> String {
    let matchers: Vec<String> = selector
        .matchers
        .iter()
        .filter(|m| !(m.name == "__name__" && m.op == phlox_model::MatchOp::Equal && m.value == profile_type))
        .map(|m| format!("{}{}{:?}", m.name, m.op, m.value))
        .collect();
    format!("{{{}}}", matchers.join(","))
}

/// Steps of the timeline, in seconds.
const NICE_STEPS: &[i64] = &[
    15, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 604800, 2_592_000,
    31_536_000,
];

/// interval/1500 rounded up to a nice step, at least 15 s.
pub(crate) fn timeline_step(interval_s: i64) -> i64 {
    let raw = interval_s / 1500;
    NICE_STEPS.iter().copied().find(|&s| s >= raw).unwrap_or(31_536_000)
}

fn timeline(start_s: i64, end_s: i64, step: i64, points: &[phlox_proto::types::v1::Point]) -> Value {
    let start = start_s - start_s.rem_euclid(step);
    let n = (end_s.saturating_sub(start) / step).saturating_add(1).clamp(1, 1 << 20) as usize;
    let mut samples = vec![0u64; n];
    for p in points {
        // A point at ts covers (ts - step, ts]: it is the sample of the step that ends at ts.
        let idx = ((p.timestamp / 1000).saturating_sub(start) / step - 1).max(0) as usize;
        if let Some(s) = samples.get_mut(idx) {
            *s += p.value.max(0.0) as u64;
        }
    }
    json!({ "startTime": start, "samples": samples, "durationDelta": step, "watermarks": null })
}

pub(crate) async fn render(Read { frontend, tenants }: Read, Query(p): Query<HashMap<String, String>>) -> Response {
    let Some(query) = p.get("query").filter(|q| !q.is_empty()) else {
        return ApiError::invalid_argument(
            "query is required, e.g. process_cpu:cpu:nanoseconds:cpu:nanoseconds{service_name=\"app\"}",
        )
        .into_response();
    };
    let selector = match parse_selector(query) {
        Ok(s) => s,
        Err(e) => return ApiError::invalid_argument(e.to_string()).into_response(),
    };
    let Some(profile_type) = selector
        .metric
        .clone()
        .or_else(|| selector.matchers.iter().find(|m| m.name == "__name__").map(|m| m.value.clone()))
    else {
        return ApiError::invalid_argument("query must start with a profile type id").into_response();
    };
    let pt = match ProfileType::parse(&profile_type) {
        Ok(pt) => pt,
        Err(e) => return ApiError::invalid_argument(e.to_string()).into_response(),
    };
    let dot = p.get("format").is_some_and(|f| f == "dot");
    let (from, until) = match time_range(&p, "from", "until") {
        Ok(r) => r,
        Err(r) => return r,
    };
    let max_nodes = p.get("maxNodes").or_else(|| p.get("max-nodes")).and_then(|v| v.parse::<i64>().ok());
    let label_selector = label_selector_without(&selector, &profile_type);
    let req = q::SelectMergeStacktracesRequest {
        profile_type_id: profile_type.clone(),
        label_selector: label_selector.clone(),
        start: from,
        end: until,
        max_nodes,
        ..Default::default()
    };
    if dot {
        let req = q::SelectMergeStacktracesRequest { format: q::ProfileFormat::Dot as i32, ..req };
        return match frontend.select_merge_stacktraces(&tenants, req).await {
            Ok(r) => ([(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8")], r.dot).into_response(),
            Err(e) => query_error(e),
        };
    }
    let flame = match frontend.select_merge_stacktraces(&tenants, req).await {
        Ok(r) => r.flamegraph.unwrap_or_default(),
        Err(e) => return query_error(e),
    };
    let step = timeline_step(until.saturating_sub(from) / 1000);
    let group_by: Vec<String> = p.get("groupBy").map(|g| vec![g.clone()]).unwrap_or_default();
    let series_req = q::SelectSeriesRequest {
        profile_type_id: profile_type,
        label_selector,
        start: from,
        end: until,
        group_by: group_by.clone(),
        step: step as f64,
        aggregation: p.get("aggregation").filter(|a| *a == "avg").map(|_| 1),
        ..Default::default()
    };
    let series = match frontend.select_series(&tenants, series_req).await {
        Ok(r) => r.series,
        Err(e) => return query_error(e),
    };
    let empty: Vec<phlox_proto::types::v1::Point> = Vec::new();
    let top = if series.len() == 1 { &series[0].points } else { &empty };
    let groups = if group_by.is_empty() {
        Value::Null
    } else {
        let mut g = serde_json::Map::new();
        for s in &series {
            let key = s.labels.first().map(|l| l.value.clone()).unwrap_or_else(|| "*".into());
            g.insert(key, timeline(from / 1000, until / 1000, step, &s.points));
        }
        Value::Object(g)
    };
    let timeline = timeline(from / 1000, until / 1000, step, top);
    axum::Json(flamebearer_single(&flame, &pt.sample_type, &pt.sample_unit, timeline, groups)).into_response()
}

/// `GET /pyroscope/label-values?label=NAME[&query=SELECTOR][&from=&until=]`:
/// profile type ids for `__name__`, else the label's values (last hour by default).
pub(crate) async fn label_values(
    Read { frontend, tenants }: Read,
    Query(p): Query<HashMap<String, String>>,
) -> Response {
    let Some(label) = p.get("label").filter(|l| !l.is_empty()) else {
        return ApiError::invalid_argument("label is required").into_response();
    };
    let (from, until) = match time_range(&p, "from", "until") {
        Ok(r) => r,
        Err(r) => return r,
    };
    let values: Vec<String> = if label == "__name__" {
        match frontend.profile_types(&tenants, q::ProfileTypesRequest { start: from, end: until }).await {
            Ok(r) => r.profile_types.into_iter().map(|t| t.id).collect(),
            Err(e) => return query_error(e),
        }
    } else {
        let matchers = p.get("query").map(|q| vec![q.clone()]).unwrap_or_default();
        let req = phlox_proto::types::v1::LabelValuesRequest { name: label.clone(), matchers, start: from, end: until };
        match frontend.label_values(&tenants, req).await {
            Ok(r) => r.names,
            Err(e) => return query_error(e),
        }
    };
    axum::Json(values).into_response()
}

/// `GET /pyroscope/render-diff`: two render queries as one "double" flamebearer.
pub(crate) async fn render_diff(
    Read { frontend, tenants }: Read,
    Query(p): Query<HashMap<String, String>>,
) -> Response {
    let side = |prefix: &str| -> Result<(String, q::SelectMergeStacktracesRequest), Response> {
        let query = p
            .get(&format!("{prefix}Query"))
            .filter(|q| !q.is_empty())
            .ok_or_else(|| ApiError::invalid_argument(format!("{prefix}Query is required")).into_response())?;
        let selector = parse_selector(query).map_err(|e| ApiError::invalid_argument(e.to_string()).into_response())?;
        let profile_type = selector
            .metric
            .clone()
            .or_else(|| selector.matchers.iter().find(|m| m.name == "__name__").map(|m| m.value.clone()))
            .ok_or_else(|| {
                ApiError::invalid_argument(format!("{prefix}Query must start with a profile type id")).into_response()
            })?;
        let (from, until) = time_range(&p, &format!("{prefix}From"), &format!("{prefix}Until"))?;
        let label_selector = label_selector_without(&selector, &profile_type);
        let max_nodes = p.get("maxNodes").or_else(|| p.get("max-nodes")).and_then(|v| v.parse::<i64>().ok());
        Ok((
            profile_type.clone(),
            q::SelectMergeStacktracesRequest {
                profile_type_id: profile_type,
                label_selector,
                start: from,
                end: until,
                max_nodes,
                ..Default::default()
            },
        ))
    };
    let (left, right) = match (side("left"), side("right")) {
        (Ok(l), Ok(r)) => (l, r),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    if left.0 != right.0 {
        return ApiError::invalid_argument("leftQuery and rightQuery must have the same profile type").into_response();
    }
    let pt = match ProfileType::parse(&left.0) {
        Ok(pt) => pt,
        Err(e) => return ApiError::invalid_argument(e.to_string()).into_response(),
    };
    let d = match frontend.diff(&tenants, q::DiffRequest { left: Some(left.1), right: Some(right.1) }).await {
        Ok(r) => r.flamegraph.unwrap_or_default(),
        Err(e) => return query_error(e),
    };
    axum::Json(flamebearer_double(&d, &pt.sample_type, &pt.sample_unit)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_steps_are_nice_and_at_least_15s() {
        assert_eq!(timeline_step(3600), 15);
        assert_eq!(timeline_step(86_400), 60);
        assert_eq!(timeline_step(7 * 86_400), 600);
    }
}
