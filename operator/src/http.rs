//! `/metrics` and `/healthz` of the operator.

use axum::Router;
use axum::extract::State;
use axum::routing::get;

use crate::metrics::Metrics;

pub fn router(metrics: Metrics) -> Router {
    Router::new()
        .route("/metrics", get(|State(m): State<Metrics>| async move { m.render() }))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(metrics)
}
