//! The Connect protocol's unary rules, as Pyroscope's connect-go handlers
//! apply them: request decompression, content types and the JSON error body.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

/// A Connect error: code name and message; rendered as
/// `{"code": ..., "message": ...}` with the code's HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConnectError {
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl ConnectError {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    pub(crate) fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new("invalid_argument", message)
    }

    pub(crate) fn status(&self) -> StatusCode {
        let code = match self.code {
            "canceled" => 499,
            "invalid_argument" | "failed_precondition" | "out_of_range" => 400,
            "deadline_exceeded" => 504,
            "not_found" => 404,
            "already_exists" | "aborted" => 409,
            "permission_denied" => 403,
            "resource_exhausted" => 429,
            "unimplemented" => 501,
            "unavailable" => 503,
            "unauthenticated" => 401,
            _ => 500,
        };
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// Connect's codes are gRPC's, named in snake_case: the one table both
/// protocols' errors go through.
const CODES: [(&str, tonic::Code); 16] = [
    ("canceled", tonic::Code::Cancelled),
    ("unknown", tonic::Code::Unknown),
    ("invalid_argument", tonic::Code::InvalidArgument),
    ("deadline_exceeded", tonic::Code::DeadlineExceeded),
    ("not_found", tonic::Code::NotFound),
    ("already_exists", tonic::Code::AlreadyExists),
    ("permission_denied", tonic::Code::PermissionDenied),
    ("resource_exhausted", tonic::Code::ResourceExhausted),
    ("failed_precondition", tonic::Code::FailedPrecondition),
    ("aborted", tonic::Code::Aborted),
    ("out_of_range", tonic::Code::OutOfRange),
    ("unimplemented", tonic::Code::Unimplemented),
    ("internal", tonic::Code::Internal),
    ("unavailable", tonic::Code::Unavailable),
    ("data_loss", tonic::Code::DataLoss),
    ("unauthenticated", tonic::Code::Unauthenticated),
];

impl ConnectError {
    /// The same error for a gRPC client (an unknown code name is `internal`).
    pub(crate) fn into_status(self) -> tonic::Status {
        let code = CODES.iter().find(|(name, _)| *name == self.code).map_or(tonic::Code::Internal, |(_, c)| *c);
        tonic::Status::new(code, self.message)
    }
}

/// A gRPC status (a metastore's answer, a tonic service's error) for a
/// Connect client.
impl From<&tonic::Status> for ConnectError {
    fn from(s: &tonic::Status) -> Self {
        let code = CODES.iter().find(|(_, c)| *c == s.code()).map_or("internal", |(name, _)| *name);
        Self::new(code, s.message().to_owned())
    }
}

impl IntoResponse for ConnectError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "code": self.code, "message": self.message }).to_string();
        (self.status(), [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
    }
}

/// The codec of a unary request, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Codec {
    Proto,
    Json,
}

pub(crate) fn codec(headers: &HeaderMap) -> Result<Codec, Response> {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let base = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    match base.as_str() {
        "application/proto" | "application/x-protobuf" | "application/protobuf" => Ok(Codec::Proto),
        "application/json" => Ok(Codec::Json),
        _ => Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            [(
                header::HeaderName::from_static("accept-post"),
                HeaderValue::from_static("application/proto, application/json"),
            )],
            format!("unsupported content type {ct:?}"),
        )
            .into_response()),
    }
}

/// The request body with `Content-Encoding` undone, at most `limit` bytes.
pub(crate) fn decompress(headers: &HeaderMap, body: Bytes, limit: usize) -> Result<Bytes, ConnectError> {
    let encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("identity");
    match encoding.trim().to_ascii_lowercase().as_str() {
        "" | "identity" => Ok(body),
        "gzip" => phlox_pprof::gunzip_capped(&body, limit).map(Bytes::from).map_err(|e| match e {
            phlox_pprof::DecodeError::PayloadTooLarge { limit } => ConnectError::new(
                "resource_exhausted",
                format!("request body exceeds the limit of {limit} bytes once decompressed"),
            ),
            other => ConnectError::invalid_argument(format!("request body: {other}")),
        }),
        other => Err(ConnectError::new(
            "unimplemented",
            format!("unknown compression {other:?}: supported are gzip, identity"),
        )),
    }
}

/// The codec and body of a unary Connect call: read with `limit` (413
/// over it), `Content-Encoding` undone within the same limit.
pub(crate) async fn unary_request(
    headers: &HeaderMap,
    body: axum::body::Body,
    limit: usize,
    code: &'static str,
) -> Result<(Codec, Bytes), Response> {
    let codec = codec(headers)?;
    let body = crate::http::read_body(body, limit, code).await?;
    let body = decompress(headers, body, limit).map_err(IntoResponse::into_response)?;
    Ok((codec, body))
}

/// An empty protobuf message response.
pub(crate) fn empty_proto_response() -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, HeaderValue::from_static("application/proto"))], Bytes::new())
        .into_response()
}

/// Encodes a response with the request's codec.
pub(crate) fn respond<M: prost::Message + serde::Serialize>(codec: Codec, m: &M) -> Response {
    match codec {
        Codec::Proto => {
            (StatusCode::OK, [(header::CONTENT_TYPE, "application/proto")], m.encode_to_vec()).into_response()
        }
        Codec::Json => match serde_json::to_vec(m) {
            Ok(body) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
            Err(e) => ConnectError::new("internal", format!("cannot encode the response: {e}")).into_response(),
        },
    }
}

/// Decodes a request with its codec (protobuf, or protobuf-JSON).
pub(crate) fn decode<M: prost::Message + Default + serde::de::DeserializeOwned>(
    codec: Codec,
    body: &[u8],
) -> Result<M, Response> {
    let r = match codec {
        Codec::Proto => M::decode(body).map_err(|e| e.to_string()),
        Codec::Json if body.is_empty() => Ok(M::default()),
        Codec::Json => serde_json::from_slice(body).map_err(|e| e.to_string()),
    };
    r.map_err(|e| ConnectError::invalid_argument(format!("malformed request: {e}")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_connect_http_statuses() {
        assert_eq!(ConnectError::invalid_argument("x").status(), StatusCode::BAD_REQUEST);
        assert_eq!(ConnectError::new("resource_exhausted", "x").status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(ConnectError::new("unavailable", "x").status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(ConnectError::new("unauthenticated", "x").status(), StatusCode::UNAUTHORIZED);
        assert_eq!(ConnectError::new("internal", "x").status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn connect_and_grpc_codes_are_one_table() {
        // Every gRPC code but OK has its Connect name, both ways.
        for (name, code) in CODES {
            let status = ConnectError::new(name, "m").into_status();
            assert_eq!((status.code(), status.message()), (code, "m"));
            assert_eq!(ConnectError::from(&status), ConnectError::new(name, "m"));
        }
        assert_eq!(ConnectError::new("not_found", "x").into_status().code(), tonic::Code::NotFound);
        assert_eq!(ConnectError::from(&tonic::Status::resource_exhausted("x")).status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(ConnectError::from(&tonic::Status::ok("x")).code, "internal");
        assert_eq!(ConnectError::new("no_such_code", "x").into_status().code(), tonic::Code::Internal);
    }

    #[test]
    fn content_types_and_encodings() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/proto"));
        assert_eq!(codec(&h).unwrap(), Codec::Proto);
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json; charset=utf-8"));
        assert_eq!(codec(&h).unwrap(), Codec::Json);
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert_eq!(codec(&h).unwrap_err().status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
        assert_eq!(decompress(&h, Bytes::new(), 10).unwrap_err().code, "unimplemented");
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert_eq!(decompress(&h, Bytes::from_static(b"nope"), 10).unwrap_err().code, "invalid_argument");
    }
}
