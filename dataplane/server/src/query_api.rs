//! `querier.v1.QuerierService` over Connect (binary proto and protobuf-JSON) on the public port.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use phlox_model::TenantId;
use phlox_proto::querier::v1 as q;
use phlox_proto::types::v1 as t;
use phlox_query::{QueryError, QueryFrontend};

use crate::connect::{self, Codec, ConnectError, decode, respond};
use crate::http::{HttpState, read_body};

/// Tenants of a read: `X-Scope-OrgID` may name several, joined by `|`.
pub(crate) fn read_tenants(headers: &HeaderMap, multitenancy: bool) -> Result<Vec<String>, ConnectError> {
    if !multitenancy {
        return Ok(vec![TenantId::anonymous().to_string()]);
    }
    let raw = headers
        .get("x-scope-orgid")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ConnectError::new("unauthenticated", "no org id"))?;
    let mut tenants: Vec<String> = raw
        .split('|')
        .map(|t| {
            TenantId::new(t.trim())
                .map(|t| t.to_string())
                .map_err(|e| ConnectError::new("unauthenticated", e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    tenants.sort();
    tenants.dedup();
    Ok(tenants)
}

pub(crate) fn query_error(e: QueryError) -> Response {
    if matches!(e, QueryError::Unavailable(_) | QueryError::Internal(_)) {
        tracing::warn!(error = %e, "query failed");
    }
    ConnectError::new(e.connect_code(), e.to_string()).into_response()
}

/// Whether the client accepts label names outside the legacy Prometheus
/// syntax: a media-type parameter `allow-utf8-labelnames=true` in `Accept`
/// (profilecli sends `*/*;allow-utf8-labelnames=true`). An `Accept` value
/// that is not a list of media types is a 400, as in Pyroscope.
pub(crate) fn allows_utf8_label_names(headers: &HeaderMap) -> Result<bool, ConnectError> {
    let mut allowed = false;
    for value in headers.get_all(header::ACCEPT) {
        let bad = || ConnectError::new("invalid_argument", "the Accept header is not a list of media types");
        let value = value.to_str().map_err(|_| bad())?;
        for media in value.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            let mut parts = media.split(';').map(str::trim);
            let essence = parts.next().unwrap_or("");
            let Some((kind, sub)) = essence.split_once('/') else { return Err(bad()) };
            if kind.is_empty() || sub.is_empty() {
                return Err(bad());
            }
            for param in parts.filter(|p| !p.is_empty()) {
                let Some((k, v)) = param.split_once('=') else { return Err(bad()) };
                if k.trim().eq_ignore_ascii_case("allow-utf8-labelnames") && v.trim().trim_matches('"') == "true" {
                    allowed = true;
                }
            }
        }
    }
    Ok(allowed)
}

/// The legacy label name syntax, `[a-zA-Z_][a-zA-Z0-9_]*`.
fn is_legacy_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

async fn call(
    frontend: &QueryFrontend,
    tenants: &[String],
    method: &str,
    c: Codec,
    body: &[u8],
    utf8_names: bool,
) -> Result<Response, Response> {
    let r = match method {
        "ProfileTypes" => {
            frontend.profile_types(tenants, decode::<q::ProfileTypesRequest>(c, body)?).await.map(|r| respond(c, &r))
        }
        "LabelNames" => frontend.label_names(tenants, decode::<t::LabelNamesRequest>(c, body)?).await.map(|mut r| {
            if !utf8_names {
                r.names.retain(|n| is_legacy_label_name(n));
            }
            respond(c, &r)
        }),
        "LabelValues" => {
            frontend.label_values(tenants, decode::<t::LabelValuesRequest>(c, body)?).await.map(|r| respond(c, &r))
        }
        "Series" => frontend.series(tenants, decode::<q::SeriesRequest>(c, body)?).await.map(|mut r| {
            if !utf8_names {
                for set in &mut r.labels_set {
                    set.labels.retain(|l| is_legacy_label_name(&l.name));
                }
            }
            respond(c, &r)
        }),
        "SelectMergeStacktraces" => frontend
            .select_merge_stacktraces(tenants, decode::<q::SelectMergeStacktracesRequest>(c, body)?)
            .await
            .map(|r| respond(c, &r)),
        "SelectSeries" => {
            frontend.select_series(tenants, decode::<q::SelectSeriesRequest>(c, body)?).await.map(|r| respond(c, &r))
        }
        "Diff" => frontend.diff(tenants, decode::<q::DiffRequest>(c, body)?).await.map(|r| respond(c, &r)),
        "SelectHeatmap" => {
            frontend.select_heatmap(tenants, decode::<q::SelectHeatmapRequest>(c, body)?).await.map(|r| respond(c, &r))
        }
        "SelectMergeSpanProfile" => frontend
            .select_merge_span_profile(tenants, decode::<q::SelectMergeSpanProfileRequest>(c, body)?)
            .await
            .map(|r| respond(c, &r)),
        "SelectMergeProfile" => frontend
            .select_merge_profile(tenants, decode::<q::SelectMergeProfileRequest>(c, body)?)
            .await
            .map(|r| respond(c, &r)),
        "AnalyzeQuery" => {
            frontend.analyze_query(tenants, decode::<q::AnalyzeQueryRequest>(c, body)?).await.map(|r| respond(c, &r))
        }
        "GetProfileStats" => {
            let _: t::GetProfileStatsRequest = decode(c, body)?;
            frontend.get_profile_stats(tenants).await.map(|r| respond(c, &r))
        }
        other => {
            return Err(ConnectError::new(
                "unimplemented",
                format!("querier.v1.QuerierService/{other} is not available yet"),
            )
            .into_response());
        }
    };
    r.map_err(query_error)
}

/// The methods of the querier service; the metric label of any other path
/// is `other`, so a client cannot mint label values.
const METHODS: [&str; 12] = [
    "ProfileTypes",
    "LabelNames",
    "LabelValues",
    "Series",
    "SelectMergeStacktraces",
    "SelectSeries",
    "Diff",
    "SelectHeatmap",
    "SelectMergeSpanProfile",
    "SelectMergeProfile",
    "AnalyzeQuery",
    "GetProfileStats",
];

fn metric_method(method: &str) -> &'static str {
    METHODS.iter().find(|m| **m == method).copied().unwrap_or("other")
}

pub(crate) async fn querier(
    State(s): State<Arc<HttpState>>,
    Path(method): Path<String>,
    request: axum::extract::Request,
) -> Response {
    let headers = request.headers().clone();
    let Some(frontend) = s.query.clone() else {
        return ConnectError::new("unimplemented", "this process does not run the query frontend").into_response();
    };
    let tenants = match read_tenants(&headers, s.multitenancy) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if ct.starts_with("application/grpc")
        && let Some(grpc) = s.grpc_query.clone()
    {
        return crate::http::call_grpc(grpc, request, crate::grpc_query::ReadTenants(tenants)).await;
    }
    let codec = match connect::codec(&headers) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let utf8_names = match allows_utf8_label_names(&headers) {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    let body = match read_body(request.into_body(), 16 << 20, "invalid_argument").await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let body = match connect::decompress(&headers, body, 16 << 20) {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let start = std::time::Instant::now();
    let response = match call(&frontend, &tenants, &method, codec, &body, utf8_names).await {
        Ok(r) | Err(r) => r,
    };
    let code = response.status().as_str().to_owned();
    s.query_metrics
        .query_duration
        .with_label_values(&[metric_method(&method), code.as_str()])
        .observe(start.elapsed().as_secs_f64());
    response
}
