//! Request bodies: read within a limit and a time, `Content-Encoding`
//! undone within the same limit.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use super::error::ApiError;

/// Longest a request body may take to arrive.
const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);
/// Longest a request body may pause between chunks.
const BODY_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads a request body of at most `limit` bytes; over it: 413 with an
/// error of `code`; one that does not arrive in time: 408.
pub(crate) async fn read(body: Body, limit: usize, code: &'static str) -> Result<Bytes, Response> {
    use http_body_util::BodyExt;
    let too_large = || {
        let mut r = ApiError::new(code, format!("request body exceeds the limit of {limit} bytes")).into_response();
        *r.status_mut() = StatusCode::PAYLOAD_TOO_LARGE;
        r
    };
    // Read up to the limit even when the Content-Length is over it: a 413
    // sent while the client is still writing would reach it as a broken
    // pipe instead of an answer.
    let hint = axum::body::HttpBody::size_hint(&body);
    // One contiguous buffer, chunks copied in as they come: a body sent in
    // millions of tiny chunks costs its bytes, not a frame per byte.
    let exact = hint.exact().map(|n| n as usize);
    // A claimed length reserves at most 16 MiB up front; more grows as
    // bytes actually arrive.
    let mut buf = bytes::BytesMut::with_capacity(exact.unwrap_or(0).min(limit).min(16 << 20));
    let mut body = body;
    let failed = |e: String| {
        let mut r = ApiError::new("unknown", format!("cannot read the request body: {e}")).into_response();
        *r.status_mut() = StatusCode::REQUEST_TIMEOUT;
        r
    };
    let deadline = tokio::time::Instant::now() + BODY_READ_TIMEOUT;
    loop {
        // A client that stops sending (or trickles) does not hold a task
        // and its buffer forever.
        let next = tokio::time::timeout(BODY_IDLE_TIMEOUT, body.frame());
        let frame = match tokio::time::timeout_at(deadline, next).await {
            Err(_) => return Err(failed(format!("not received within {}s", BODY_READ_TIMEOUT.as_secs()))),
            Ok(Err(_)) => return Err(failed(format!("nothing received for {}s", BODY_IDLE_TIMEOUT.as_secs()))),
            Ok(Ok(None)) => break,
            Ok(Ok(Some(Err(e)))) => return Err(failed(e.to_string())),
            Ok(Ok(Some(Ok(f)))) => f,
        };
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(too_large());
            }
            // A single-chunk body is kept as it came, without a copy.
            if buf.is_empty() && exact == Some(data.len()) {
                return Ok(data);
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// The body with `Content-Encoding` undone, at most `limit` bytes.
pub(crate) fn decompress(headers: &HeaderMap, body: Bytes, limit: usize) -> Result<Bytes, ApiError> {
    let encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("identity");
    match encoding.trim().to_ascii_lowercase().as_str() {
        "" | "identity" => Ok(body),
        "gzip" => phlox_pprof::gunzip_capped(&body, limit).map(Bytes::from).map_err(|e| match e {
            phlox_pprof::DecodeError::PayloadTooLarge { limit } => ApiError::new(
                "resource_exhausted",
                format!("request body exceeds the limit of {limit} bytes once decompressed"),
            ),
            other => ApiError::invalid_argument(format!("request body: {other}")),
        }),
        other => {
            Err(ApiError::new("unimplemented", format!("unknown compression {other:?}: supported are gzip, identity")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn encodings() {
        let mut h = HeaderMap::new();
        assert_eq!(decompress(&h, Bytes::from_static(b"x"), 10).unwrap(), Bytes::from_static(b"x"));
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
        assert_eq!(decompress(&h, Bytes::new(), 10).unwrap_err().code, "unimplemented");
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert_eq!(decompress(&h, Bytes::from_static(b"nope"), 10).unwrap_err().code, "invalid_argument");
    }
}
