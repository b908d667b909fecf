//! Admin API: deleting a tenant's data in a time range.
//!
//! - `POST /admin/v1/delete?from=T&until=T[&wait=30s]`: deletes the
//!   request's tenant's profiles with a time in `[from, until]` (both
//!   required; the time formats of `/pyroscope/render`). Datasets inside the
//!   range leave at once; blocks also holding data outside it are rewritten
//!   by the compaction worker. The call waits up to `wait` (default 30 s,
//!   at most 10 min) for the rewrite: 200 when done, 202 while pending.
//! - `GET /admin/v1/deletions`: the tenant's deletions and their progress.
//!
//! Pyroscope has no such API; the paths are Phlox's own.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, Query};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use phlox_distributor::ingest::parse_time;
use phlox_model::TenantId;
use phlox_proto::metastore::v1::{DeleteRangeRequest, Deletion, ListDeletionsRequest};
use phlox_proto::metastore_client::Metastore;
use prometheus::{IntCounterVec, Opts, Registry};
use serde_json::json;

use crate::context::{ApiError, OrgId};

/// Longest `wait` a caller can ask for.
const MAX_WAIT: Duration = Duration::from_secs(600);
const DEFAULT_WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(250);

/// The admin endpoints' dependencies.
pub(crate) struct Admin {
    pub(crate) metastore: Arc<dyn Metastore>,
    /// `phlox_deletions_total{state}`: requests answered done, pending or failed.
    requests: IntCounterVec,
    /// `phlox_deleted_total{kind}`: datasets removed and blocks tombstoned by deletions.
    deleted: IntCounterVec,
}

impl Admin {
    pub(crate) fn new(metastore: Arc<dyn Metastore>, registry: &Registry) -> anyhow::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new("phlox_deletions_total", "Delete requests by the state they were answered in."),
            &["state"],
        )?;
        let deleted = IntCounterVec::new(
            Opts::new("phlox_deleted_total", "Datasets removed and blocks tombstoned by delete requests."),
            &["kind"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(deleted.clone()))?;
        Ok(Self { metastore, requests, deleted })
    }
}

fn status_error(status: &tonic::Status) -> Response {
    ApiError::from(status).into_response()
}

fn deletion_json(d: &Deletion) -> serde_json::Value {
    json!({
        "id": d.id,
        "tenant": d.tenant,
        "start": d.start,
        "end": d.end,
        "state": if d.done_at > 0 { "done" } else { "pending" },
        "requestedAt": d.requested_at,
        "doneAt": d.done_at,
        "datasetsRemoved": d.datasets_removed,
        "blocksTombstoned": d.blocks_tombstoned,
        "blocksPending": d.blocks_pending,
    })
}

/// A deletion call: the admin API and the request's tenant.
pub(crate) struct Call {
    admin: Arc<Admin>,
    tenant: TenantId,
}

impl FromRequestParts<Option<Arc<Admin>>> for Call {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &Option<Arc<Admin>>) -> Result<Self, Response> {
        let admin = Arc::clone(admin_of(s)?);
        let org = OrgId::from_request_parts(parts, s).await.map_err(IntoResponse::into_response)?;
        Ok(Call { admin, tenant: org.tenant().map_err(IntoResponse::into_response)? })
    }
}

fn admin_of(s: &Option<Arc<Admin>>) -> Result<&Arc<Admin>, Response> {
    s.as_ref().ok_or_else(|| {
        ApiError::new("unimplemented", "this process runs neither the metastore nor the query frontend").into_response()
    })
}

/// `POST /admin/v1/delete`.
pub(crate) async fn delete(Call { admin, tenant }: Call, Query(p): Query<HashMap<String, String>>) -> Response {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let time = |key: &str| -> Result<i64, Response> {
        let text = p.get(key).ok_or_else(|| {
            ApiError::invalid_argument(format!("`{key}` is required (a time such as now-1h or Unix seconds)"))
                .into_response()
        })?;
        parse_time(text, now)
            .map(|n| n.div_euclid(1_000_000))
            .ok_or_else(|| ApiError::invalid_argument(format!("`{key}`: {text:?} is not a time")).into_response())
    };
    let (start, end) = match (time("from"), time("until")) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(r), _) | (_, Err(r)) => return r,
    };
    if start > end {
        return ApiError::invalid_argument(format!("`from` ({start} ms) is after `until` ({end} ms)")).into_response();
    }
    let wait = match p.get("wait") {
        None => DEFAULT_WAIT,
        Some(w) => match humantime::parse_duration(w) {
            Ok(d) => d.min(MAX_WAIT),
            Err(e) => {
                return ApiError::invalid_argument(format!("`wait`: {w:?} is not a duration: {e}")).into_response();
            }
        },
    };
    // A repeated request is the same deletion with cumulative counts: the
    // metrics count only what this request removed.
    let before = admin
        .metastore
        .list_deletions(ListDeletionsRequest { tenant: tenant.as_str().to_owned() })
        .await
        .ok()
        .and_then(|l| l.deletions.into_iter().find(|d| d.start == start && d.end == end))
        .map_or((0, 0), |d| (d.datasets_removed, d.blocks_tombstoned));
    let request = DeleteRangeRequest { tenant: tenant.as_str().to_owned(), start, end };
    let mut deletion = match admin.metastore.delete_range(request).await {
        Ok(r) => r.deletion.unwrap_or_default(),
        Err(e) => {
            admin.requests.with_label_values(&["failed"]).inc();
            tracing::warn!(tenant = %tenant, error = %e, "delete request failed");
            return status_error(&e);
        }
    };
    admin.deleted.with_label_values(&["datasets"]).inc_by(deletion.datasets_removed.saturating_sub(before.0));
    admin.deleted.with_label_values(&["blocks"]).inc_by(deletion.blocks_tombstoned.saturating_sub(before.1));
    let deadline = tokio::time::Instant::now() + wait;
    while deletion.done_at == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
        let listed = admin.metastore.list_deletions(ListDeletionsRequest { tenant: tenant.as_str().to_owned() }).await;
        if let Some(d) = listed.ok().and_then(|l| l.deletions.into_iter().find(|d| d.id == deletion.id)) {
            deletion = d;
        }
    }
    let (status, state) =
        if deletion.done_at > 0 { (StatusCode::OK, "done") } else { (StatusCode::ACCEPTED, "pending") };
    admin.requests.with_label_values(&[state]).inc();
    tracing::info!(tenant = %tenant, start, end, id = %deletion.id, state, "delete request");
    (status, axum::Json(deletion_json(&deletion))).into_response()
}

/// `GET /admin/v1/deletions`.
pub(crate) async fn deletions(Call { admin, tenant }: Call) -> Response {
    match admin.metastore.list_deletions(ListDeletionsRequest { tenant: tenant.as_str().to_owned() }).await {
        Ok(l) => axum::Json(json!({ "deletions": l.deletions.iter().map(deletion_json).collect::<Vec<_>>() }))
            .into_response(),
        Err(e) => status_error(&e),
    }
}
