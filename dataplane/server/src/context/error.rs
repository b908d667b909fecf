//! [`ApiError`]: the one error type of every API, and the one table of
//! codes it maps through.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// An API error: a Connect code name and a message; rendered as
/// `{"code": ..., "message": ...}` with the code's HTTP status, or as the
/// gRPC status of the same code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

/// Connect's codes are gRPC's, named in snake_case, each with the HTTP
/// status Connect gives it: the one table every protocol's errors go
/// through.
const CODES: [(&str, tonic::Code, u16); 16] = [
    ("canceled", tonic::Code::Cancelled, 499),
    ("unknown", tonic::Code::Unknown, 500),
    ("invalid_argument", tonic::Code::InvalidArgument, 400),
    ("deadline_exceeded", tonic::Code::DeadlineExceeded, 504),
    ("not_found", tonic::Code::NotFound, 404),
    ("already_exists", tonic::Code::AlreadyExists, 409),
    ("permission_denied", tonic::Code::PermissionDenied, 403),
    ("resource_exhausted", tonic::Code::ResourceExhausted, 429),
    ("failed_precondition", tonic::Code::FailedPrecondition, 400),
    ("aborted", tonic::Code::Aborted, 409),
    ("out_of_range", tonic::Code::OutOfRange, 400),
    ("unimplemented", tonic::Code::Unimplemented, 501),
    ("internal", tonic::Code::Internal, 500),
    ("unavailable", tonic::Code::Unavailable, 503),
    ("data_loss", tonic::Code::DataLoss, 500),
    ("unauthenticated", tonic::Code::Unauthenticated, 401),
];

impl ApiError {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    pub(crate) fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new("invalid_argument", message)
    }

    fn row(&self) -> Option<&'static (&'static str, tonic::Code, u16)> {
        CODES.iter().find(|(name, _, _)| *name == self.code)
    }

    /// The HTTP status of the code (an unknown code name is a 500).
    pub(crate) fn status(&self) -> StatusCode {
        let code = self.row().map_or(500, |(_, _, http)| *http);
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// Whether the server, not the request, is at fault (logged).
    pub(crate) fn is_server_fault(&self) -> bool {
        matches!(self.code, "internal" | "unavailable" | "unknown" | "data_loss")
    }

    /// The same error for a gRPC client (an unknown code name is `internal`).
    pub(crate) fn into_status(self) -> tonic::Status {
        let code = self.row().map_or(tonic::Code::Internal, |(_, c, _)| *c);
        tonic::Status::new(code, self.message)
    }
}

/// A gRPC status (a trait method's answer, a metastore's) for a Connect
/// or HTTP client.
impl From<&tonic::Status> for ApiError {
    fn from(s: &tonic::Status) -> Self {
        let code = CODES.iter().find(|(_, c, _)| *c == s.code()).map_or("internal", |(name, _, _)| *name);
        Self::new(code, s.message().to_owned())
    }
}

impl From<phlox_query::QueryError> for ApiError {
    fn from(e: phlox_query::QueryError) -> Self {
        Self::new(e.connect_code(), e.to_string())
    }
}

impl From<phlox_query::adhoc::AdHocError> for ApiError {
    fn from(e: phlox_query::adhoc::AdHocError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

impl From<phlox_query::debuginfo::DebugInfoError> for ApiError {
    fn from(e: phlox_query::debuginfo::DebugInfoError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

impl From<phlox_distributor::PushError> for ApiError {
    fn from(e: phlox_distributor::PushError) -> Self {
        Self::new(e.connect_code(), e.to_string())
    }
}

impl From<phlox_recording::StoreError> for ApiError {
    fn from(e: phlox_recording::StoreError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

impl From<phlox_recording::SettingsError> for ApiError {
    fn from(e: phlox_recording::SettingsError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

/// Any domain error as the gRPC status a trait method returns.
pub(crate) fn status(e: impl Into<ApiError>) -> tonic::Status {
    e.into().into_status()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = serde_json::json!({ "code": self.code, "message": self.message }).to_string();
        (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_connect_http_statuses() {
        assert_eq!(ApiError::invalid_argument("x").status(), StatusCode::BAD_REQUEST);
        assert_eq!(ApiError::new("resource_exhausted", "x").status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(ApiError::new("unavailable", "x").status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(ApiError::new("unauthenticated", "x").status(), StatusCode::UNAUTHORIZED);
        assert_eq!(ApiError::new("internal", "x").status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(ApiError::new("no_such_code", "x").status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn connect_and_grpc_codes_are_one_table() {
        // Every gRPC code but OK has its Connect name, both ways.
        for (name, code, _) in CODES {
            let status = ApiError::new(name, "m").into_status();
            assert_eq!((status.code(), status.message()), (code, "m"));
            assert_eq!(ApiError::from(&status), ApiError::new(name, "m"));
        }
        assert_eq!(ApiError::new("not_found", "x").into_status().code(), tonic::Code::NotFound);
        assert_eq!(ApiError::from(&tonic::Status::resource_exhausted("x")).status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(ApiError::from(&tonic::Status::ok("x")).code, "internal");
        assert_eq!(ApiError::new("no_such_code", "x").into_status().code(), tonic::Code::Internal);
    }
}
