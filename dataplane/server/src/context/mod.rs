//! What every request on the public port goes through, whichever protocol
//! carries it: authentication and the tenants of `X-Scope-OrgID` (one
//! middleware, [`layer`]), body reading within a limit ([`body`]), and the
//! one error type every API answers with ([`ApiError`]: a Connect code and
//! a message, with the code's HTTP and gRPC statuses from one table, in
//! `error`).
//!
//! This module knows nothing of the APIs that use it.

pub(crate) mod auth;
pub(crate) mod body;
pub(crate) mod duration;
mod error;
mod tenant;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub(crate) use error::{ApiError, status};
pub(crate) use tenant::OrgId;

/// The request context's settings.
#[derive(Debug)]
pub(crate) struct Settings {
    pub(crate) multitenancy: bool,
    pub(crate) credentials: Arc<auth::Credentials>,
}

/// The middleware every public route runs behind: the credentials are
/// checked (when `server.auth` sets any; `/ready` and `/metrics` stay
/// open for probes and scrapers), then `X-Scope-OrgID` is resolved,
/// within what the credential may reach, into an [`OrgId`] in the
/// request's extensions, where axum handlers
/// (extractor) and tonic services (`Request::extensions`) find it.
pub(crate) async fn layer(State(settings): State<Arc<Settings>>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path();
    let scope = if path != "/ready" && path != "/metrics" && settings.credentials.enabled() {
        let credentials = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        match settings.credentials.scope(credentials) {
            Ok(scope) => scope,
            Err(e) => {
                // A browser (the UI) asks its user for basic credentials.
                let mut r = e.into_response();
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    axum::http::HeaderValue::from_static("Basic realm=\"phlox\", charset=\"UTF-8\""),
                );
                return r;
            }
        }
    } else {
        auth::Scope::Any
    };
    let org = OrgId::resolve(request.headers(), settings.multitenancy, &scope);
    request.extensions_mut().insert(org);
    next.run(request).await
}

/// Unix milliseconds now.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
