//! Pyroscope's status pages (REST, as its grpc-gateway serves them):
//!
//! - `GET /api/v1/status/buildinfo`: the version and build
//! - `GET /api/v1/status/config`, `/config/default`, `/config/diff`: the
//!   effective configuration, the defaults and what differs, as YAML text
//!   with secrets masked

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use crate::api::info::reported_version;

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
const SECRET_KEYS: &[&str] =
    &["secret_access_key", "session_token", "access_key", "bearer_tokens", "bearer_token", "basic_auth"];
const MASK: &str = "********";

fn mask_secrets(v: &mut serde_yaml::Value) {
    if let serde_yaml::Value::Sequence(items) = v {
        items.iter_mut().for_each(mask_secrets);
    }
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
        Err(e) => {
            crate::context::ApiError::new("internal", format!("cannot render the configuration: {e}")).into_response()
        }
    }
}

fn config_value(c: &phlox_config::PhloxConfig) -> serde_yaml::Value {
    let mut v = serde_yaml::to_value(c).unwrap_or(serde_yaml::Value::Null);
    mask_secrets(&mut v);
    v
}

/// `GET /api/v1/status/config`: the effective configuration.
pub(crate) async fn status_config(State(config): State<Arc<phlox_config::PhloxConfig>>) -> Response {
    yaml_text(&config_value(&config))
}

/// `GET /api/v1/status/config/default`: the defaults.
pub(crate) async fn status_config_default() -> Response {
    yaml_text(&config_value(&phlox_config::PhloxConfig::default()))
}

/// `GET /api/v1/status/config/diff`: what differs from the defaults.
pub(crate) async fn status_config_diff(State(config): State<Arc<phlox_config::PhloxConfig>>) -> Response {
    let default = config_value(&phlox_config::PhloxConfig::default());
    let diff = diff_values(&config_value(&config), &default)
        .unwrap_or_else(|| serde_yaml::Value::Mapping(serde_yaml::Mapping::new()));
    yaml_text(&diff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_and_the_diff_keeps_only_changes() {
        let yaml = "multitenancy_enabled: true\nstorage:\n  backend: s3\n  s3:\n    bucket: b\n    access_key_id: AKIA\n    secret_access_key: hush\n\
                    server:\n  auth:\n    bearer_tokens: [t1, t2]\n    tenants: [{bearer_token: t3, tenants: [a]}]\n";
        let c = phlox_config::PhloxConfig::from_yaml(yaml).unwrap();
        let text = serde_yaml::to_string(&config_value(&c)).unwrap();
        assert!(!text.contains("hush") && !text.contains("t1") && !text.contains("t3"), "{text}");
        assert!(text.contains("AKIA"), "{text}");
        let default = config_value(&phlox_config::PhloxConfig::default());
        let diff = serde_yaml::to_string(&diff_values(&config_value(&c), &default).unwrap()).unwrap();
        assert!(diff.contains("multitenancy_enabled: true"), "{diff}");
        assert!(diff.contains("bucket: b"), "{diff}");
        assert!(!diff.contains("segment_writer"), "unchanged sections are left out: {diff}");
    }
}
