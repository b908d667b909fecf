//! `debuginfo.v1alpha1.DebuginfoService`: debug files of stripped binaries
//! by GNU build id (`phlox_query::debuginfo`), and the raw upload
//! `POST /debuginfo.v1alpha1.DebuginfoService/Upload/{gnu_build_id}`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use phlox_proto::debuginfo::v1alpha1 as d;
use phlox_proto::debuginfo::v1alpha1::DebuginfoServiceConnect;
use phlox_proto::debuginfo::v1alpha1::debuginfo_service_server::{DebuginfoService, DebuginfoServiceServer};
use phlox_query::debuginfo::{DebugInfoLimits, DebugInfoStore, Symbolizer};
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response as TonicResponse, Status};

use super::rpc::{self, Rpc};
use crate::context::{ApiError, OrgId, status};

pub(crate) const SERVICE: &str = "debuginfo.v1alpha1.DebuginfoService";

/// Largest RPC message (uploads are streamed, not messages).
const MAX_MESSAGE_BYTES: usize = 5 << 20;

/// The service and each tenant's limits.
pub(crate) struct DebugInfo {
    pub(crate) store: DebugInfoStore,
    /// This process's symbolizer: told of uploads and deletions, so its
    /// queries use a new file at once (other processes within
    /// `symbolizer.retry_missing`).
    pub(crate) symbolizer: Arc<Symbolizer>,
    pub(crate) default_limits: DebugInfoLimits,
    pub(crate) limits_by_tenant: BTreeMap<String, DebugInfoLimits>,
}

impl DebugInfo {
    fn limits(&self, tenant: &str) -> DebugInfoLimits {
        self.limits_by_tenant.get(tenant).copied().unwrap_or(self.default_limits)
    }
}

#[tonic::async_trait]
impl DebuginfoService for DebugInfo {
    async fn should_initiate_upload(
        &self,
        r: Request<d::ShouldInitiateUploadRequest>,
    ) -> Result<TonicResponse<d::ShouldInitiateUploadResponse>, Status> {
        let tenant = OrgId::tenant_of(&r)?;
        let t = tenant.as_str();
        let file = r.into_inner().file.ok_or_else(|| status(ApiError::new("invalid_argument", "file is required")))?;
        self.store.should_initiate_upload(t, file, self.limits(t)).await.map(TonicResponse::new).map_err(status)
    }
    async fn upload_finished(
        &self,
        r: Request<d::UploadFinishedRequest>,
    ) -> Result<TonicResponse<d::UploadFinishedResponse>, Status> {
        let tenant = OrgId::tenant_of(&r)?;
        let id = r.into_inner().gnu_build_id;
        self.store.upload_finished(tenant.as_str(), &id).await.map_err(status)?;
        self.symbolizer.forget(tenant.as_str(), &id);
        Ok(TonicResponse::new(d::UploadFinishedResponse {}))
    }
    async fn list_debuginfo(
        &self,
        r: Request<d::ListDebuginfoRequest>,
    ) -> Result<TonicResponse<d::ListDebuginfoResponse>, Status> {
        let tenant = OrgId::tenant_of(&r)?;
        self.store.list(tenant.as_str()).await.map(TonicResponse::new).map_err(status)
    }
    async fn delete_debuginfo(
        &self,
        r: Request<d::DeleteDebuginfoRequest>,
    ) -> Result<TonicResponse<d::DeleteDebuginfoResponse>, Status> {
        let tenant = OrgId::tenant_of(&r)?;
        let id = r.into_inner().gnu_build_id;
        self.store.delete(tenant.as_str(), &id).await.map_err(status)?;
        self.symbolizer.forget(tenant.as_str(), &id);
        Ok(TonicResponse::new(d::DeleteDebuginfoResponse {}))
    }
}

/// The RPCs: messages of at most 5 MiB.
pub(crate) fn rpc(service: Arc<DebugInfo>) -> Rpc {
    let server = DebuginfoServiceServer::from_arc(Arc::clone(&service))
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(64 << 20);
    Rpc::new(DebuginfoServiceConnect::from_arc(service), rpc::grpc(server), MAX_MESSAGE_BYTES)
        .over_limit("resource_exhausted")
}

/// The upload: the body, streamed to the bucket within the tenant's limit.
async fn upload(
    State(service): State<Arc<DebugInfo>>,
    org: OrgId,
    Path(build_id): Path<String>,
    body: axum::body::Body,
) -> Response {
    let tenant = match org.tenant() {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let t = tenant.as_str();
    match service.store.upload(t, &build_id, body.into_data_stream(), service.limits(t)).await {
        Ok(_) => axum::http::StatusCode::OK.into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The service's routes: the RPCs and the raw upload.
pub(crate) fn router(service: Arc<DebugInfo>) -> Router {
    Router::new()
        .route(&format!("/{SERVICE}/Upload/{{gnu_build_id}}"), post(upload).with_state(Arc::clone(&service)))
        .merge(rpc(service).route())
}
