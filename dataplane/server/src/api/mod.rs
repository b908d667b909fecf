//! The public RPC services, each implemented once as its tonic-generated
//! trait and served on `/<package>.<Service>/<Method>` over:
//!
//! - Connect (unary, `application/proto` and `application/json`, gzip),
//!   through the adapter `phlox-proto`'s build script generates from the
//!   same descriptor (`<Service>Connect`);
//! - gRPC and gRPC-Web (tonic, tonic-web), told apart by `Content-Type`.
//!
//! [`rpc::Rpc`] holds one service's two faces and its transport settings (body
//! limit, admission before decoding, where decompression runs, a latency
//! histogram); [`router`] builds every route from them. Tenants come from
//! the request context ([`crate::context::OrgId`], in the extensions).

pub(crate) mod adhoc;
pub(crate) mod debuginfo;
pub(crate) mod info;
pub(crate) mod otlp;
pub(crate) mod push;
pub(crate) mod querier;
mod rpc;
pub(crate) mod rules;

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use axum::Router;

use rpc::absent;

/// The components whose services this process serves.
pub(crate) struct Components {
    pub(crate) distributor: Option<Arc<phlox_distributor::Distributor>>,
    pub(crate) query: Option<Arc<phlox_query::QueryFrontend>>,
    pub(crate) query_metrics: phlox_query::QueryMetrics,
    pub(crate) rules: Option<Arc<rules::RulesApi>>,
    pub(crate) settings: Option<Arc<phlox_recording::SettingsStoreClient>>,
    pub(crate) adhoc: Option<Arc<adhoc::AdHoc>>,
    pub(crate) debuginfo: Option<Arc<debuginfo::DebugInfo>>,
    /// Whether every component of the process runs (health checks).
    pub(crate) ready: Arc<AtomicBool>,
    /// `server.max_request_body_mb`, in bytes.
    pub(crate) max_body: usize,
}

/// Every public service's routes, and OTLP's.
pub(crate) fn router(c: Components) -> Router {
    let services = [
        c.distributor
            .clone()
            .map_or_else(|| absent(push::SERVICE, "distributor"), |d| push::rpc(d, c.max_body).route()),
        c.query.clone().map_or_else(
            || absent(querier::SERVICE, "query frontend"),
            |q| querier::rpc(q, c.query_metrics.query_duration.clone()).route(),
        ),
        c.rules.clone().map_or_else(|| absent(rules::RULES_SERVICE, "query frontend"), |r| rules::rules_rpc(r).route()),
        c.settings
            .clone()
            .map_or_else(|| absent(rules::SETTINGS_SERVICE, "query frontend"), |s| rules::settings_rpc(s).route()),
        c.adhoc.clone().map_or_else(|| absent(adhoc::SERVICE, "query frontend"), |a| adhoc::rpc(a).route()),
        c.debuginfo.clone().map_or_else(|| absent(debuginfo::SERVICE, "query frontend"), debuginfo::router),
        info::health_rpc(Arc::clone(&c.ready)).route(),
        info::version_rpc().route(),
        info::feature_flags_rpc().route(),
    ];
    services.into_iter().fold(otlp::router(c.distributor, c.max_body), Router::merge)
}
