//! Small endpoints clients use to learn what the server can do: Grafana's
//! profiles app asks for feature flags (the recording-rules UI needs
//! `pyroscopeRuler`), the query API version and the build info.
//!
//! - `POST /capabilities.v1.FeatureFlagsService/GetFeatureFlags` (Connect)
//! - `POST /version.v1.Version/Version` (Connect)
//! - `GET /api/v1/status/buildinfo` (REST JSON, as Pyroscope's grpc-gateway)

use axum::response::{IntoResponse, Response};
use phlox_proto::capabilities::v1 as caps;
use phlox_proto::version::v1 as version;

use crate::connect::{self, Codec, decode, respond};

/// The codec and body of a small Connect request (at most 64 KiB).
async fn small_request(request: axum::extract::Request) -> Result<(Codec, bytes::Bytes), Response> {
    let codec = connect::codec(request.headers())?;
    let body = crate::http::read_body(request.into_body(), 64 << 10, "invalid_argument").await?;
    Ok((codec, body))
}

/// The version Phlox reports: the Pyroscope release whose API it speaks,
/// with Phlox's own version as build metadata (ignored by semver
/// comparisons, so clients that gate features on 2.x see 2.0.0).
pub(crate) fn reported_version() -> String {
    format!("2.0.0+phlox-{}", env!("CARGO_PKG_VERSION"))
}

/// The flags, every known name listed (enabled or not), as Pyroscope does.
fn flags() -> Vec<caps::FeatureFlag> {
    let flag = |name: &str, enabled: bool, description: &str| caps::FeatureFlag {
        name: name.to_owned(),
        enabled,
        description: Some(description.to_owned()),
        documentation_url: None,
    };
    vec![
        flag("v2StorageLayer", true, "segments, compaction and stateless query backends (always on)"),
        flag("pyroscopeRuler", true, "recording rules: settings.v1.RecordingRulesService"),
        flag("pyroscopeRulerFunctions", true, "recording rules with a function-name stack trace filter"),
        flag("utf8LabelNames", true, "label names beyond [a-zA-Z_][a-zA-Z0-9_]*, quoted in selectors"),
    ]
}

/// `POST /capabilities.v1.FeatureFlagsService/GetFeatureFlags`.
pub(crate) async fn feature_flags(request: axum::extract::Request) -> Response {
    let (codec, body) = match small_request(request).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if let Err(r) = decode::<caps::GetFeatureFlagsRequest>(codec, &body) {
        return r;
    }
    respond(codec, &caps::GetFeatureFlagsResponse { feature_flags: flags() })
}

/// `POST /version.v1.Version/Version`.
pub(crate) async fn querier_version(request: axum::extract::Request) -> Response {
    let (codec, body) = match small_request(request).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if let Err(r) = decode::<version::VersionRequest>(codec, &body) {
        return r;
    }
    respond(codec, &version::VersionResponse { querier_api: 1 })
}

/// `GET /api/v1/status/buildinfo`.
pub(crate) async fn build_info() -> Response {
    axum::Json(serde_json::json!({
        "status": "success",
        "data": {
            "version": reported_version(),
            "revision": "",
            "branch": "",
            "buildUser": "",
            "buildDate": "",
            "goVersion": "",
        }
    }))
    .into_response()
}
