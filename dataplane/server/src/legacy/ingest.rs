//! `POST /ingest` and `/pyroscope/ingest`: query parameters, raw and
//! multipart bodies, Pyroscope's statuses and Connect error bodies.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use phlox_distributor::ingest::{IngestBody, IngestError, IngestFormat, IngestParams};

use super::shared::Legacy;
use crate::context::{ApiError, OrgId, body::read};

/// Parts of a multipart form, by field name (file parts only, as Pyroscope).
async fn form_parts(content_type: &str, body: Bytes, limit: usize) -> Result<HashMap<String, Bytes>, ApiError> {
    let boundary =
        multer::parse_boundary(content_type).map_err(|e| ApiError::invalid_argument(format!("multipart form: {e}")))?;
    let stream = futures::stream::once(async move { Ok::<Bytes, std::convert::Infallible>(body) });
    let constraints = multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(limit as u64));
    let mut form = multer::Multipart::with_constraints(stream, boundary, constraints);
    let mut parts = HashMap::new();
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(ApiError::new("unknown", format!("multipart form: {e}"))),
        };
        let name = field.name().unwrap_or_default().to_owned();
        let is_file = field.file_name().is_some();
        let data =
            field.bytes().await.map_err(|e| ApiError::new("unknown", format!("multipart part {name:?}: {e}")))?;
        if is_file && !data.is_empty() {
            parts.insert(name, data);
        }
    }
    Ok(parts)
}

pub(crate) async fn ingest(
    State(s): State<Arc<Legacy>>,
    org: OrgId,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(distributor) = s.distributor.clone() else {
        return ApiError::new("unimplemented", "this process does not run the distributor").into_response();
    };
    let tenant = match org.tenant() {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let body = match read(body, s.max_body, "invalid_argument").await {
        Ok(b) => b,
        Err(r) => return r,
    };
    // A tenant over its rate costs no form parsing, decompression or decoding.
    if let Err(e) = distributor.admit_request(tenant.as_str(), body.len()) {
        return error(ApiError::new(e.connect_code(), e.to_string()), 429);
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let format = match IngestFormat::select(query.get("format").map(String::as_str), &content_type) {
        Ok(f) => f,
        Err(e) => return ApiError::invalid_argument(e).into_response(),
    };
    let multipart = content_type.to_ascii_lowercase().contains("multipart/form-data");
    let body = match (format, multipart) {
        (IngestFormat::Pprof, true) => match form_parts(&content_type, body, s.max_body).await {
            Ok(mut parts) => IngestBody::PprofForm {
                profile: parts.remove("profile"),
                prev_profile: parts.remove("prev_profile"),
                sample_type_config: parts.remove("sample_type_config"),
            },
            Err(e) => return error(e, 422),
        },
        (IngestFormat::Jfr, true) => match form_parts(&content_type, body, s.max_body).await {
            Ok(mut parts) => IngestBody::JfrForm { jfr: parts.remove("jfr"), labels: parts.remove("labels") },
            Err(e) => return error(e, 422),
        },
        _ => IngestBody::Raw(body),
    };
    let params = IngestParams {
        name: query.get("name").cloned().unwrap_or_default(),
        from: query.get("from").cloned(),
        until: query.get("until").cloned(),
        sample_rate: query.get("sampleRate").cloned(),
        spy_name: query.get("spyName").cloned(),
    };
    // Decompression and parsing run on the decode pool.
    let (d, t) = (Arc::clone(&distributor), tenant.clone());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
    let result = match distributor.cpu().run(move || d.prepare_ingest(t.as_str(), format, &params, body, now)).await {
        Ok(Ok(profiles)) => distributor.ingest_prepared(tenant.as_str(), profiles).await,
        Ok(Err(e)) => Err(e),
        Err(e) => Err(IngestError::Push(e)),
    };
    match result {
        Ok(_) => axum::http::StatusCode::OK.into_response(),
        Err(e) => {
            let (status, code) = e.status(format);
            error(ApiError::new(code, e.to_string()), status)
        }
    }
}

/// A Connect JSON error body with an explicit status (`/ingest` uses 422
/// with code `unknown`, which Connect itself maps to 500).
fn error(e: ApiError, status: u16) -> Response {
    let mut r = e.into_response();
    if let Ok(s) = axum::http::StatusCode::from_u16(status) {
        *r.status_mut() = s;
    }
    r
}
