//! Small services clients use to learn what the server can do: Grafana's
//! profiles app asks for feature flags (the recording-rules UI needs
//! `pyroscopeRuler`) and the query API version; probes ask for health.
//!
//! - `capabilities.v1.FeatureFlagsService/GetFeatureFlags`
//! - `version.v1.Version/Version`
//! - `grpc.health.v1.Health/Check`: SERVING once every component of the
//!   process runs, as `/ready` (any service name gets the same answer, as
//!   Pyroscope's single health server)

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use phlox_proto::capabilities::v1 as caps;
use phlox_proto::capabilities::v1::FeatureFlagsServiceConnect;
use phlox_proto::capabilities::v1::feature_flags_service_server::{FeatureFlagsService, FeatureFlagsServiceServer};
use phlox_proto::grpc::health::v1 as health;
use phlox_proto::grpc::health::v1::HealthConnect;
use phlox_proto::grpc::health::v1::health_server::{Health, HealthServer};
use phlox_proto::version::v1 as version;
use phlox_proto::version::v1::VersionConnect;
use phlox_proto::version::v1::version_server::{Version, VersionServer};
use tonic::{Request, Response, Status};

use super::rpc::{self, Rpc};

/// Largest request of these services.
const MAX_REQUEST: usize = 64 << 10;

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

pub(crate) struct FeatureFlags;

#[tonic::async_trait]
impl FeatureFlagsService for FeatureFlags {
    async fn get_feature_flags(
        &self,
        _: Request<caps::GetFeatureFlagsRequest>,
    ) -> Result<Response<caps::GetFeatureFlagsResponse>, Status> {
        Ok(Response::new(caps::GetFeatureFlagsResponse { feature_flags: flags() }))
    }
}

pub(crate) fn feature_flags_rpc() -> Rpc {
    let flags = Arc::new(FeatureFlags);
    let server = FeatureFlagsServiceServer::from_arc(Arc::clone(&flags)).max_decoding_message_size(MAX_REQUEST);
    Rpc::new(FeatureFlagsServiceConnect::from_arc(flags), rpc::grpc(server), MAX_REQUEST)
}

pub(crate) struct QuerierVersion;

#[tonic::async_trait]
impl Version for QuerierVersion {
    async fn version(&self, _: Request<version::VersionRequest>) -> Result<Response<version::VersionResponse>, Status> {
        Ok(Response::new(version::VersionResponse { querier_api: 1 }))
    }
}

pub(crate) fn version_rpc() -> Rpc {
    let v = Arc::new(QuerierVersion);
    let server = VersionServer::from_arc(Arc::clone(&v)).max_decoding_message_size(MAX_REQUEST);
    Rpc::new(VersionConnect::from_arc(v), rpc::grpc(server), MAX_REQUEST)
}

/// The health of the whole process.
pub(crate) struct ProcessHealth {
    ready: Arc<AtomicBool>,
}

#[tonic::async_trait]
impl Health for ProcessHealth {
    async fn check(
        &self,
        _: Request<health::HealthCheckRequest>,
    ) -> Result<Response<health::HealthCheckResponse>, Status> {
        let status = if self.ready.load(Ordering::Acquire) {
            health::health_check_response::ServingStatus::Serving
        } else {
            health::health_check_response::ServingStatus::NotServing
        };
        Ok(Response::new(health::HealthCheckResponse { status: status as i32 }))
    }
}

pub(crate) fn health_rpc(ready: Arc<AtomicBool>) -> Rpc {
    let health = Arc::new(ProcessHealth { ready });
    let server = HealthServer::from_arc(Arc::clone(&health)).max_decoding_message_size(MAX_REQUEST);
    Rpc::new(HealthConnect::from_arc(health), rpc::grpc(server), MAX_REQUEST)
}
