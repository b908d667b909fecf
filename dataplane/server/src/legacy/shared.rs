//! What the legacy handlers share.

use std::sync::Arc;

use axum::response::{IntoResponse, Response};

use crate::context::ApiError;

/// The components the legacy APIs reach.
pub(crate) struct Legacy {
    pub(crate) distributor: Option<Arc<phlox_distributor::Distributor>>,
    pub(crate) query: Option<Arc<phlox_query::QueryFrontend>>,
    /// `server.max_request_body_mb`, in bytes.
    pub(crate) max_body: usize,
}

/// A failed query, logged when the server is at fault.
pub(super) fn query_error(e: phlox_query::QueryError) -> Response {
    let e = ApiError::from(e);
    if e.is_server_fault() {
        tracing::warn!(error = %e.message, "query failed");
    }
    e.into_response()
}
