//! The public HTTP port: Connect `Push`, `/ready`, `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use phlox_distributor::{Distributor, PushError};
use phlox_model::TenantId;
use phlox_proto::push::v1::PushRequest;
use prometheus::{Encoder, Registry, TextEncoder};
use prost::Message;

use crate::connect::{self, Codec, ConnectError};

/// What the HTTP handlers share.
pub(crate) struct HttpState {
    pub(crate) distributor: Option<Arc<Distributor>>,
    pub(crate) grpc_push: Option<crate::grpc_push::GrpcPushService>,
    pub(crate) grpc_otlp: Option<crate::otlp::GrpcProfilesService>,
    pub(crate) query: Option<Arc<phlox_query::QueryFrontend>>,
    pub(crate) grpc_query: Option<crate::grpc_query::GrpcQueryService>,
    pub(crate) query_metrics: phlox_query::QueryMetrics,
    pub(crate) registry: Registry,
    pub(crate) ready: Arc<AtomicBool>,
    /// The metastore voter this process runs: `/ready` also requires its
    /// Raft group to be healthy.
    pub(crate) metastore_node: Option<Arc<phlox_metastore::MetastoreNode>>,
    pub(crate) multitenancy: bool,
    pub(crate) max_body: usize,
    /// The admin API, where this process reaches the metastore for it.
    pub(crate) admin: Option<crate::admin::Admin>,
    /// `settings.v1.RecordingRulesService` (Connect and gRPC).
    pub(crate) rules: Option<Arc<crate::rules_api::RulesApi>>,
    pub(crate) grpc_rules: Option<crate::rules_api::GrpcRulesService>,
    /// `settings.v1.SettingsService` (Connect).
    pub(crate) settings: Option<Arc<phlox_recording::SettingsStoreClient>>,
    /// `adhocprofiles.v1.AdHocProfileService` (Connect).
    pub(crate) adhoc: Option<Arc<crate::adhoc::AdHoc>>,
    /// The configuration this process runs with (`/api/v1/status/config`).
    pub(crate) config: Arc<phlox_config::PhloxConfig>,
}

pub(crate) fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/", get(crate::ui::index))
        .route("/ui/{file}", get(crate::ui::asset))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/push.v1.PusherService/Push", post(push))
        .route("/ingest", post(crate::ingest::ingest))
        .route("/querier.v1.QuerierService/{method}", post(crate::query_api::querier))
        .route("/pyroscope/render", get(crate::render::render))
        .route("/pyroscope/render-diff", get(crate::render::render_diff))
        .route("/pyroscope/label-values", get(crate::render::label_values))
        .route("/v1development/profiles", post(otlp_export))
        .route("/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export", post(otlp_export))
        .route("/pyroscope/ingest", post(crate::ingest::ingest))
        .route("/settings.v1.RecordingRulesService/{method}", post(crate::rules_api::rules))
        .route("/settings.v1.SettingsService/{method}", post(crate::rules_api::settings))
        .route("/adhocprofiles.v1.AdHocProfileService/{method}", post(crate::adhoc::adhoc))
        .route("/grpc.health.v1.Health/Check", post(crate::compat::health_check))
        .route("/capabilities.v1.FeatureFlagsService/GetFeatureFlags", post(crate::compat::feature_flags))
        .route("/version.v1.Version/Version", post(crate::compat::querier_version))
        .route("/api/v1/status/buildinfo", get(crate::compat::build_info))
        .route("/api/v1/status/config", get(crate::compat::status_config))
        .route("/api/v1/status/config/default", get(crate::compat::status_config_default))
        .route("/api/v1/status/config/diff", get(crate::compat::status_config_diff))
        .route("/admin/v1/delete", post(crate::admin::delete))
        .route("/admin/v1/deletions", get(crate::admin::deletions))
        // Bodies are read by `read_body` with the limit and a Connect error.
        .layer(DefaultBodyLimit::disable())
        // Responses (flame graphs are MBs of JSON) are gzipped for clients that
        // accept it; gRPC, images and tiny bodies are left alone.
        .layer(tower_http::compression::CompressionLayer::new())
        .with_state(state)
}

async fn ready(State(s): State<Arc<HttpState>>) -> Response {
    if s.ready.load(Ordering::Acquire) {
        match s.metastore_node.as_ref().map(|n| n.health()) {
            Some(Err(why)) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")).into_response(),
            _ => (StatusCode::OK, "ready\n").into_response(),
        }
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: starting or shutting down\n").into_response()
    }
}

async fn metrics(State(s): State<Arc<HttpState>>) -> Response {
    let mut buf = Vec::new();
    let encoder = TextEncoder::new();
    if let Err(e) = encoder.encode(&s.registry.gather(), &mut buf) {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    ([(header::CONTENT_TYPE, encoder.format_type().to_owned())], buf).into_response()
}

/// The tenant of a request: `X-Scope-OrgID` with multi-tenancy, else `anonymous`.
pub(crate) fn tenant(headers: &HeaderMap, multitenancy: bool) -> Result<TenantId, ConnectError> {
    if !multitenancy {
        return Ok(TenantId::anonymous());
    }
    let Some(v) = headers.get("x-scope-orgid") else {
        return Err(ConnectError::new("unauthenticated", "no org id"));
    };
    let v = v.to_str().map_err(|_| ConnectError::new("unauthenticated", "X-Scope-OrgID is not valid text"))?;
    TenantId::new(v.trim()).map_err(|e| ConnectError::new("unauthenticated", e.to_string()))
}

/// Unix milliseconds now.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Longest a request body may take to arrive.
const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);
/// Longest a request body may pause between chunks.
const BODY_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads a request body of at most `limit` bytes; over it: 413 with a
/// Connect error of `code`; one that does not arrive in time: 408.
pub(crate) async fn read_body(body: Body, limit: usize, code: &'static str) -> Result<Bytes, Response> {
    use http_body_util::BodyExt;
    let too_large = || {
        let mut r = ConnectError::new(code, format!("request body exceeds the limit of {limit} bytes")).into_response();
        *r.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
        r
    };
    // Read up to the limit even when the Content-Length is over it: a 413
    // sent while the client is still writing would reach it as a broken
    // pipe instead of an answer.
    let hint = axum::body::HttpBody::size_hint(&body);
    // One contiguous buffer, chunks copied in as they come: a body sent in
    // millions of tiny chunks costs its bytes, not a frame per byte.
    let exact = hint.exact().map(|n| n as usize);
    // A claimed length reserves at most 16 MiB up front; more grows as
    // bytes actually arrive.
    let mut buf = bytes::BytesMut::with_capacity(exact.unwrap_or(0).min(limit).min(16 << 20));
    let mut body = body;
    let failed = |e: String| {
        let mut r = ConnectError::new("unknown", format!("cannot read the request body: {e}")).into_response();
        *r.status_mut() = StatusCode::REQUEST_TIMEOUT;
        r
    };
    let deadline = tokio::time::Instant::now() + BODY_READ_TIMEOUT;
    loop {
        // A client that stops sending (or trickles) does not hold a task
        // and its buffer forever.
        let next = tokio::time::timeout(BODY_IDLE_TIMEOUT, body.frame());
        let frame = match tokio::time::timeout_at(deadline, next).await {
            Err(_) => return Err(failed(format!("not received within {}s", BODY_READ_TIMEOUT.as_secs()))),
            Ok(Err(_)) => return Err(failed(format!("nothing received for {}s", BODY_IDLE_TIMEOUT.as_secs()))),
            Ok(Ok(None)) => break,
            Ok(Ok(Some(Err(e)))) => return Err(failed(e.to_string())),
            Ok(Ok(Some(Ok(f)))) => f,
        };
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(too_large());
            }
            // A single-chunk body is kept as it came, without a copy.
            if buf.is_empty() && exact == Some(data.len()) {
                return Ok(data);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

async fn push(State(s): State<Arc<HttpState>>, request: axum::extract::Request) -> Response {
    let Some(distributor) = s.distributor.clone() else {
        return ConnectError::new("unimplemented", "this process does not run the distributor").into_response();
    };
    let headers = request.headers().clone();
    let tenant = match tenant(&headers, s.multitenancy) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    // gRPC and gRPC-Web share the path with Connect: dispatch on the content type.
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if ct.starts_with("application/grpc")
        && let Some(grpc) = s.grpc_push.clone()
    {
        return call_grpc(grpc, request, tenant).await;
    }
    let codec = match connect::codec(&headers) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let body = match read_body(request.into_body(), s.max_body, "resource_exhausted").await {
        Ok(b) => b,
        Err(r) => return r,
    };
    // A tenant over its rate costs no decompression or decoding.
    if let Err(e) = distributor.admit_request(tenant.as_str(), body.len()) {
        return ConnectError::new(e.connect_code(), e.to_string()).into_response();
    }
    // Decompression, decoding and the split run on the decode pool.
    let (d, t, max_body) = (Arc::clone(&distributor), tenant.clone(), s.max_body);
    let prepared = distributor
        .cpu()
        .run(move || -> Result<_, Response> {
            let body = connect::decompress(&headers, body, max_body).map_err(IntoResponse::into_response)?;
            let request = match codec {
                Codec::Proto => PushRequest::decode(body).map_err(|e| format!("malformed PushRequest: {e}")),
                Codec::Json => crate::push_json::decode(&body),
            }
            .map_err(|e| ConnectError::invalid_argument(e).into_response())?;
            d.prepare_push(t.as_str(), request)
                .map_err(|e| ConnectError::new(e.connect_code(), e.to_string()).into_response())
        })
        .await;
    let profiles = match prepared {
        Ok(Ok(p)) => p,
        Ok(Err(response)) => return response,
        Err(e) => return ConnectError::new(e.connect_code(), e.to_string()).into_response(),
    };
    match distributor.push_prepared(tenant.as_str(), profiles).await {
        Ok(_) if codec == Codec::Json => ([(header::CONTENT_TYPE, "application/json")], "{}").into_response(),
        Ok(_) => connect::empty_proto_response(),
        Err(e) => {
            let code = e.connect_code();
            if matches!(e, PushError::Unavailable(_)) {
                tracing::warn!(tenant = %tenant, error = %e, "push failed");
            }
            ConnectError::new(code, e.to_string()).into_response()
        }
    }
}

/// OTLP profiles: gRPC on the service path, OTLP/HTTP on both paths.
async fn otlp_export(State(s): State<Arc<HttpState>>, request: axum::extract::Request) -> Response {
    let Some(distributor) = s.distributor.clone() else {
        return ConnectError::new("unimplemented", "this process does not run the distributor").into_response();
    };
    let headers = request.headers().clone();
    let tenant = match tenant(&headers, s.multitenancy) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if ct.starts_with("application/grpc")
        && let Some(grpc) = s.grpc_otlp.clone()
    {
        return call_grpc(grpc, request, tenant).await;
    }
    let body = match read_body(request.into_body(), s.max_body, "invalid_argument").await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Err(e) = distributor.admit_request(tenant.as_str(), body.len()) {
        return (StatusCode::TOO_MANY_REQUESTS, e.to_string()).into_response();
    }
    let body = match connect::decompress(&headers, body, s.max_body) {
        Ok(b) => b,
        Err(e) if e.code == "resource_exhausted" => return (StatusCode::PAYLOAD_TOO_LARGE, e.message).into_response(),
        Err(e) => return (StatusCode::BAD_REQUEST, e.message).into_response(),
    };
    crate::otlp::http_export(&distributor, tenant.as_str(), &headers, body).await
}

/// Hands a request to a tonic (gRPC / gRPC-Web) service, with `extension`
/// (the tenant) in its extensions: gRPC shares its paths with Connect.
pub(crate) async fn call_grpc<S, B, T>(service: S, mut request: axum::extract::Request, extension: T) -> Response
where
    S: tower::Service<axum::extract::Request, Response = axum::http::Response<B>, Error = std::convert::Infallible>,
    B: axum::body::HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
    T: Clone + Send + Sync + 'static,
{
    use tower::ServiceExt;
    request.extensions_mut().insert(extension);
    match service.oneshot(request).await {
        Ok(r) => r.map(Body::new),
        Err(never) => match never {},
    }
}
