//! Operational endpoints. On the public port: probes, metrics and the
//! process's own profiles (`/ready`, `/metrics`, `/debug/pprof/*`) and the
//! status pages (`/api/v1/status/*`). On
//! the admin listener only, behind the admin token: deleting a tenant's
//! data (`/admin/v1/*`), and where this process runs them, a segment
//! writer's drain (`/segment-writer/drain`) and the metastore's voters
//! (`/metastore/membership`); probes, metrics and profiles there too.

pub(crate) mod delete;
pub(crate) mod drain;
mod membership;
mod pprof;
mod status;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use prometheus::{Encoder, Registry, TextEncoder};

use crate::context::OrgId;
use crate::context::auth::{AdminToken, Scope};

/// What the operational endpoints look at.
pub(crate) struct Operations {
    pub(crate) registry: Registry,
    pub(crate) ready: Arc<AtomicBool>,
    /// The metastore voter this process runs: `/ready` also requires its
    /// Raft group to be healthy, and it serves the membership.
    pub(crate) metastore_node: Option<Arc<phlox_metastore::MetastoreNode>>,
    /// Deletions, where this process reaches the metastore for them.
    pub(crate) delete: Option<Arc<delete::Admin>>,
    /// The segment writer's drain, on a writer of a distributed deployment.
    pub(crate) drain: Option<Arc<drain::Drain>>,
    /// The configuration this process runs with (the status pages).
    pub(crate) config: Arc<phlox_config::PhloxConfig>,
    /// The admin listener's token.
    pub(crate) token: AdminToken,
}

/// The public port's routes and the admin listener's.
pub(crate) fn routers(ops: Operations) -> (Router, Router) {
    let probes = Router::new()
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/debug/pprof/", get(pprof::index))
        .route("/debug/pprof/profile", get(pprof::profile))
        .route("/debug/pprof/heap", get(pprof::heap))
        .with_state(Arc::new(Probes { registry: ops.registry, ready: ops.ready, node: ops.metastore_node.clone() }));
    let public = probes
        .clone()
        .route("/api/v1/status/buildinfo", get(status::build_info))
        .route("/api/v1/status/config/default", get(status::status_config_default))
        .merge(
            Router::new()
                .route("/api/v1/status/config", get(status::status_config))
                .route("/api/v1/status/config/diff", get(status::status_config_diff))
                .with_state(Arc::clone(&ops.config)),
        );
    let guard = Arc::new(Guard { token: ops.token, multitenancy: ops.config.multitenancy_enabled });
    let mut router = Router::new()
        .route("/admin/v1/delete", post(delete::delete))
        .route("/admin/v1/deletions", get(delete::deletions))
        .with_state(ops.delete);
    if let Some(d) = ops.drain {
        router = router
            .merge(Router::new().route("/segment-writer/drain", get(drain::status).post(drain::start)).with_state(d));
    }
    if let Some(n) = ops.metastore_node {
        router = router.merge(
            Router::new().route("/metastore/membership", get(membership::get).post(membership::change)).with_state(n),
        );
    }
    let admin = router.layer(axum::middleware::from_fn_with_state(guard, guarded)).merge(probes);
    (public, admin)
}

/// What the admin listener checks.
struct Guard {
    token: AdminToken,
    multitenancy: bool,
}

/// The admin token, then the request's tenants (`X-Scope-OrgID`; the token
/// reaches every tenant).
async fn guarded(State(g): State<Arc<Guard>>, mut request: Request, next: Next) -> Response {
    let authorization = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if let Err(e) = g.token.check(authorization) {
        return e.into_response();
    }
    let org = OrgId::resolve(request.headers(), g.multitenancy, &Scope::Any);
    request.extensions_mut().insert(org);
    next.run(request).await
}

struct Probes {
    registry: Registry,
    ready: Arc<AtomicBool>,
    node: Option<Arc<phlox_metastore::MetastoreNode>>,
}

async fn ready(State(p): State<Arc<Probes>>) -> Response {
    if p.ready.load(Ordering::Acquire) {
        match p.node.as_ref().map(|n| n.health()) {
            Some(Err(why)) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {why}\n")).into_response(),
            _ => (StatusCode::OK, "ready\n").into_response(),
        }
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready: starting or shutting down\n").into_response()
    }
}

async fn metrics(State(p): State<Arc<Probes>>) -> Response {
    let mut buf = Vec::new();
    let encoder = TextEncoder::new();
    if let Err(e) = encoder.encode(&p.registry.gather(), &mut buf) {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    ([(header::CONTENT_TYPE, encoder.format_type().to_owned())], buf).into_response()
}
