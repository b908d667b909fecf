//! One service's faces, told apart by `Content-Type` on the same path:
//! Connect unary through the generated adapter (codec, body limit,
//! admission, decompression, the error body), gRPC and gRPC-Web through
//! tonic's server behind tonic-web.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use futures::future::BoxFuture;
use phlox_proto::connect::{self as connect, Codec};
use tower::util::BoxCloneSyncService;
use tower::{Layer, ServiceExt};

use crate::context::{ApiError, OrgId, body};

/// A tonic server (behind tonic-web) as one boxed HTTP service.
pub(crate) type Grpc = BoxCloneSyncService<Request, Response, Infallible>;

/// A tonic server, answering gRPC and gRPC-Web.
pub(crate) fn grpc<S>(server: S) -> Grpc
where
    S: tower::Service<
            axum::http::Request<tonic::body::Body>,
            Response = axum::http::Response<tonic::body::Body>,
            Error = Infallible,
        > + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let web = tonic_web::GrpcWebLayer::new().layer(server);
    BoxCloneSyncService::new(ServiceExt::<Request>::map_response(web, |r| r.map(Body::new)))
}

/// Checks a request before its body is decoded (a push's rate limit on
/// the compressed size): the request's tenants and the body's length.
pub(crate) type Admit = Box<dyn Fn(&OrgId, usize) -> Result<(), ApiError> + Send + Sync>;
/// Runs a decompression elsewhere (the ingest decode pool).
pub(crate) type Offload = Box<
    dyn Fn(Box<dyn FnOnce() -> Result<Bytes, ApiError> + Send>) -> BoxFuture<'static, Result<Bytes, ApiError>>
        + Send
        + Sync,
>;

/// One public service: its Connect and gRPC faces over the same trait
/// implementation, and how its requests are read.
pub(crate) struct Rpc {
    connect: Arc<dyn connect::Service>,
    grpc: Grpc,
    /// Largest Connect body, compressed and not.
    limit: usize,
    /// The error code of a body over the limit (413).
    over_limit: &'static str,
    admit: Option<Admit>,
    offload: Option<Offload>,
    /// `{method, code}` latency histogram (code: the HTTP status, or the
    /// one Connect gives the gRPC status).
    durations: Option<prometheus::HistogramVec>,
}

impl Rpc {
    pub(crate) fn new(connect: impl connect::Service, grpc: Grpc, limit: usize) -> Self {
        Self {
            connect: Arc::new(connect),
            grpc,
            limit,
            over_limit: "invalid_argument",
            admit: None,
            offload: None,
            durations: None,
        }
    }

    pub(crate) fn over_limit(mut self, code: &'static str) -> Self {
        self.over_limit = code;
        self
    }

    pub(crate) fn admit(mut self, admit: Admit) -> Self {
        self.admit = Some(admit);
        self
    }

    pub(crate) fn offload(mut self, offload: Offload) -> Self {
        self.offload = Some(offload);
        self
    }

    pub(crate) fn durations(mut self, histogram: prometheus::HistogramVec) -> Self {
        self.durations = Some(histogram);
        self
    }

    /// `/<package>.<Service>/{method}` for every protocol.
    pub(super) fn route(self) -> Router {
        let path = format!("/{}/{{method}}", self.connect.name());
        Router::new().route(&path, post(call).with_state(Arc::new(self)))
    }

    /// A Connect unary call.
    async fn connect(&self, method: &str, request: Request) -> Response {
        let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let Some(codec) = Codec::from_content_type(content_type) else {
            return unsupported_media_type(content_type);
        };
        let (parts, raw) = request.into_parts();
        let raw = match body::read(raw, self.limit, self.over_limit).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        let answer = async {
            if let (Some(admit), Some(org)) = (&self.admit, parts.extensions.get::<OrgId>()) {
                admit(org, raw.len())?;
            }
            let body = match &self.offload {
                Some(offload) if is_compressed(&parts.headers) => {
                    let (headers, limit) = (parts.headers.clone(), self.limit);
                    offload(Box::new(move || body::decompress(&headers, raw, limit))).await?
                }
                _ => body::decompress(&parts.headers, raw, self.limit)?,
            };
            // The headers and extensions as tonic hands them to a gRPC call.
            let (metadata, extensions, ()) =
                tonic::Request::from_http(axum::http::Request::from_parts(parts, ())).into_parts();
            let request = connect::Request { codec, body, metadata, extensions };
            self.connect.call(method, request).await.map_err(|s| ApiError::from(&s))
        };
        match answer.await {
            Ok(r) => (StatusCode::OK, [(header::CONTENT_TYPE, r.codec.content_type())], r.body).into_response(),
            Err(e) => {
                if e.is_server_fault() {
                    tracing::warn!(service = self.connect.name(), method, error = %e.message, "call failed");
                }
                e.into_response()
            }
        }
    }

    /// The label of a method in metrics: a known one, else `other` (a
    /// client cannot mint label values).
    fn metric_method(&self, method: &str) -> &'static str {
        self.connect.methods().iter().find(|m| **m == method).copied().unwrap_or("other")
    }
}

fn is_compressed(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|e| !e.trim().is_empty() && !e.trim().eq_ignore_ascii_case("identity"))
}

fn unsupported_media_type(content_type: &str) -> Response {
    (
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        [(
            header::HeaderName::from_static("accept-post"),
            HeaderValue::from_static("application/proto, application/json"),
        )],
        format!("unsupported content type {content_type:?}"),
    )
        .into_response()
}

/// Whether a request is gRPC or gRPC-Web (they share paths with Connect).
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|ct| ct.starts_with("application/grpc"))
}

/// Hands a request to a tonic service.
pub(crate) async fn call_grpc(grpc: &Grpc, request: Request) -> Response {
    match grpc.clone().oneshot(request).await {
        Ok(r) => r,
        Err(never) => match never {},
    }
}

async fn call(State(rpc): State<Arc<Rpc>>, Path(method): Path<String>, request: Request) -> Response {
    let start = Instant::now();
    let response = if is_grpc(request.headers()) {
        call_grpc(&rpc.grpc, request).await
    } else {
        rpc.connect(&method, request).await
    };
    if let Some(histogram) = &rpc.durations {
        // A failed gRPC call answers 200 with its status in the headers
        // (trailers-only): count it under the status Connect would give it.
        let status = response
            .headers()
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i32>().ok())
            .filter(|c| *c != 0)
            .map_or(response.status(), |c| ApiError::from(&tonic::Status::new(c.into(), "")).status());
        histogram
            .with_label_values(&[rpc.metric_method(&method), status.as_str()])
            .observe(start.elapsed().as_secs_f64());
    }
    response
}

/// Where a service's component does not run in this process: every
/// method answers `unimplemented`, naming the component.
pub(super) fn absent(service: &'static str, component: &'static str) -> Router {
    let path = format!("/{service}/{{method}}");
    let message = format!("this process does not run the {component}");
    Router::new().route(&path, post(move || async move { ApiError::new("unimplemented", message).into_response() }))
}
