//! How long each route takes to answer: `phlox_request_duration_seconds`
//! by `method`, `route` and `status_code`, on every route of the public
//! port. The Push API's and `/ingest`'s durations are the ingest ack
//! latency: a 2xx is sent once the data is durable and indexed.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{HistogramOpts, HistogramVec, Registry};

/// The histogram the [`layer`] records into.
#[derive(Debug, Clone)]
pub(crate) struct RequestDurations(HistogramVec);

impl RequestDurations {
    pub(crate) fn new(registry: &Registry) -> prometheus::Result<Self> {
        let h = HistogramVec::new(
            HistogramOpts::new(
                "phlox_request_duration_seconds",
                "Time to answer a request on the public port, by HTTP method, route and status code.",
            )
            .buckets(prometheus::exponential_buckets(0.001, 2.0, 16)?),
            &["method", "route", "status_code"],
        )?;
        registry.register(Box::new(h.clone()))?;
        Ok(Self(h))
    }
}

/// Records the time to the response's head. The route is the path pattern
/// that matched; an RPC's is its full path (`/push.v1.PusherService/Push`)
/// unless the method does not exist, so the label stays bounded.
pub(crate) async fn layer(State(d): State<Arc<RequestDurations>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let pattern = request.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned());
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    let route = match pattern {
        Some(p) if p.ends_with("/{method}") && status != axum::http::StatusCode::NOT_FOUND => path,
        Some(p) => p,
        None => "other".to_owned(),
    };
    d.0.with_label_values(&[method.as_str(), route.as_str(), status.as_str()]).observe(started.elapsed().as_secs_f64());
    response
}
