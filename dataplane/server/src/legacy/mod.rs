//! Pyroscope's HTTP APIs from before Connect, which SDKs, Alloy's
//! `pyroscope.receive_http` and older Grafana plugins still use:
//! `/ingest` (and `/pyroscope/ingest`), `/pyroscope/render`,
//! `/pyroscope/render-diff` and `/pyroscope/label-values`.

mod ingest;
mod render;
mod shared;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

pub(crate) use shared::Legacy;

pub(crate) fn router(legacy: Legacy) -> Router {
    Router::new()
        .route("/ingest", post(ingest::ingest))
        .route("/pyroscope/ingest", post(ingest::ingest))
        .route("/pyroscope/render", get(render::render))
        .route("/pyroscope/render-diff", get(render::render_diff))
        .route("/pyroscope/label-values", get(render::label_values))
        .with_state(Arc::new(legacy))
}
