//! Small endpoints clients use to learn what the server can do: Grafana's
//! profiles app asks for feature flags (the recording-rules UI needs
//! `pyroscopeRuler`), the query API version and the build info.
//!
//! - `POST /capabilities.v1.FeatureFlagsService/GetFeatureFlags` (Connect)
//! - `POST /version.v1.Version/Version` (Connect)
//! - `GET /api/v1/status/buildinfo` (REST JSON, as Pyroscope's grpc-gateway)
//! - `GET /api/v1/status/config`, `/config/default`, `/config/diff`: the
//!   effective configuration, the defaults and what differs, as YAML text
//!   with secrets masked
//! - `POST /grpc.health.v1.Health/Check` (Connect, and gRPC on the same
//!   path): SERVING once every component of the process runs, as `/ready`

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use phlox_proto::capabilities::v1 as caps;
use phlox_proto::grpc::health::v1 as health;
use phlox_proto::version::v1 as version;
use tower::Layer;

use crate::connect::{self, Codec, decode, respond};

/// The codec and body of a small Connect request (at most 64 KiB).
async fn small_request(request: axum::extract::Request) -> Result<(Codec, bytes::Bytes), Response> {
    let (parts, body) = request.into_parts();
    connect::unary_request(&parts.headers, body, 64 << 10, "invalid_argument").await
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

/// `POST /grpc.health.v1.Health/Check`: the whole process's health (any
/// service name gets the same answer, as Pyroscope's single health server).
pub(crate) async fn health_check(
    State(st): State<Arc<crate::http::HttpState>>,
    request: axum::extract::Request,
) -> Response {
    let grpc = request
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"));
    if grpc {
        let service = tonic_web::GrpcWebLayer::new().layer(grpc_health(Arc::clone(&st.ready)));
        return crate::http::call_grpc(service, request, ()).await;
    }
    let (codec, body) = match small_request(request).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    if let Err(r) = decode::<health::HealthCheckRequest>(codec, &body) {
        return r;
    }
    respond(codec, &health::HealthCheckResponse { status: serving_status(&st.ready) as i32 })
}

/// SERVING once every component of the process runs (`/ready`).
fn serving_status(ready: &std::sync::atomic::AtomicBool) -> health::health_check_response::ServingStatus {
    if ready.load(Ordering::Acquire) {
        health::health_check_response::ServingStatus::Serving
    } else {
        health::health_check_response::ServingStatus::NotServing
    }
}

/// The gRPC form of the health check, on the same path.
#[derive(Debug, Clone)]
pub(crate) struct GrpcHealth {
    ready: Arc<std::sync::atomic::AtomicBool>,
}

#[tonic::async_trait]
impl health::health_server::Health for GrpcHealth {
    async fn check(
        &self,
        _: tonic::Request<health::HealthCheckRequest>,
    ) -> Result<tonic::Response<health::HealthCheckResponse>, tonic::Status> {
        Ok(tonic::Response::new(health::HealthCheckResponse { status: serving_status(&self.ready) as i32 }))
    }
}

pub(crate) fn grpc_health(
    ready: Arc<std::sync::atomic::AtomicBool>,
) -> health::health_server::HealthServer<GrpcHealth> {
    health::health_server::HealthServer::new(GrpcHealth { ready })
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

/// Keys whose values are secrets: masked in the status pages.
const SECRET_KEYS: &[&str] = &["secret_access_key", "session_token", "access_key", "bearer_tokens", "basic_auth"];
const MASK: &str = "********";

fn mask_secrets(v: &mut serde_yaml::Value) {
    let serde_yaml::Value::Mapping(map) = v else { return };
    for (k, value) in map.iter_mut() {
        let key = k.as_str().unwrap_or("");
        let masked = |x: &serde_yaml::Value| !matches!(x, serde_yaml::Value::Null);
        if SECRET_KEYS.contains(&key) {
            match value {
                serde_yaml::Value::Sequence(items) => {
                    items.iter_mut().for_each(|i| *i = serde_yaml::Value::String(MASK.into()));
                }
                other if masked(other) => *other = serde_yaml::Value::String(MASK.into()),
                _ => {}
            }
        } else if key == "remote_write_headers" {
            // Header values carry credentials (Authorization).
            if let serde_yaml::Value::Mapping(headers) = value {
                headers.iter_mut().for_each(|(_, h)| *h = serde_yaml::Value::String(MASK.into()));
            }
        } else {
            mask_secrets(value);
        }
    }
}

/// The parts of `v` that differ from `default` (mappings recursively).
fn diff_values(v: &serde_yaml::Value, default: &serde_yaml::Value) -> Option<serde_yaml::Value> {
    match (v, default) {
        (serde_yaml::Value::Mapping(m), serde_yaml::Value::Mapping(d)) => {
            let mut out = serde_yaml::Mapping::new();
            for (k, value) in m {
                let changed = match d.get(k) {
                    Some(dv) => diff_values(value, dv),
                    None => Some(value.clone()),
                };
                if let Some(c) = changed {
                    out.insert(k.clone(), c);
                }
            }
            (!out.is_empty()).then_some(serde_yaml::Value::Mapping(out))
        }
        _ => (v != default).then(|| v.clone()),
    }
}

fn yaml_text(v: &serde_yaml::Value) -> Response {
    match serde_yaml::to_string(v) {
        Ok(text) => ([(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response(),
        Err(e) => crate::connect::ConnectError::new("internal", format!("cannot render the configuration: {e}"))
            .into_response(),
    }
}

fn config_value(c: &phlox_config::PhloxConfig) -> serde_yaml::Value {
    let mut v = serde_yaml::to_value(c).unwrap_or(serde_yaml::Value::Null);
    mask_secrets(&mut v);
    v
}

/// `GET /api/v1/status/config`: the effective configuration.
pub(crate) async fn status_config(State(st): State<Arc<crate::http::HttpState>>) -> Response {
    yaml_text(&config_value(&st.config))
}

/// `GET /api/v1/status/config/default`: the defaults.
pub(crate) async fn status_config_default() -> Response {
    yaml_text(&config_value(&phlox_config::PhloxConfig::default()))
}

/// `GET /api/v1/status/config/diff`: what differs from the defaults.
pub(crate) async fn status_config_diff(State(st): State<Arc<crate::http::HttpState>>) -> Response {
    let default = config_value(&phlox_config::PhloxConfig::default());
    let diff = diff_values(&config_value(&st.config), &default)
        .unwrap_or_else(|| serde_yaml::Value::Mapping(serde_yaml::Mapping::new()));
    yaml_text(&diff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_and_the_diff_keeps_only_changes() {
        let yaml = "multitenancy_enabled: true\nstorage:\n  backend: s3\n  s3:\n    bucket: b\n    access_key_id: AKIA\n    secret_access_key: hush\n\
                    server:\n  auth:\n    bearer_tokens: [t1, t2]\n";
        let c = phlox_config::PhloxConfig::from_yaml(yaml).unwrap();
        let text = serde_yaml::to_string(&config_value(&c)).unwrap();
        assert!(!text.contains("hush") && !text.contains("t1"), "{text}");
        assert!(text.contains("AKIA"), "{text}");
        let default = config_value(&phlox_config::PhloxConfig::default());
        let diff = serde_yaml::to_string(&diff_values(&config_value(&c), &default).unwrap()).unwrap();
        assert!(diff.contains("multitenancy_enabled: true"), "{diff}");
        assert!(diff.contains("bucket: b"), "{diff}");
        assert!(!diff.contains("segment_writer"), "unchanged sections are left out: {diff}");
    }
}
