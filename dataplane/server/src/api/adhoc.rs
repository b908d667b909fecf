//! `adhocprofiles.v1.AdHocProfileService`: profiles uploaded from a file
//! and shown without being ingested (`phlox_query::adhoc`).

use std::sync::Arc;

use phlox_proto::adhocprofiles::v1 as a;
use phlox_proto::adhocprofiles::v1::AdHocProfileServiceConnect;
use phlox_proto::adhocprofiles::v1::ad_hoc_profile_service_server::{AdHocProfileService, AdHocProfileServiceServer};
use phlox_query::adhoc::{AdHocProfiles, MAX_PROFILE_BYTES};
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use super::rpc::{self, Rpc};
use crate::context::{OrgId, status};

pub(crate) const SERVICE: &str = "adhocprofiles.v1.AdHocProfileService";

/// The uploads of the request's tenant.
pub(crate) struct AdHoc(pub(crate) AdHocProfiles);

#[tonic::async_trait]
impl AdHocProfileService for AdHoc {
    async fn upload(
        &self,
        r: Request<a::AdHocProfilesUploadRequest>,
    ) -> Result<Response<a::AdHocProfilesGetResponse>, Status> {
        let tenant = OrgId::tenant_of(&r)?;
        let t = tenant.as_str();
        self.0.upload(t, r.into_inner()).await.map(Response::new).map_err(status)
    }
    async fn get(
        &self,
        r: Request<a::AdHocProfilesGetRequest>,
    ) -> Result<Response<a::AdHocProfilesGetResponse>, Status> {
        let tenant = OrgId::tenant_of(&r)?;
        let t = tenant.as_str();
        self.0.get(t, r.into_inner()).await.map(Response::new).map_err(status)
    }
    async fn list(
        &self,
        r: Request<a::AdHocProfilesListRequest>,
    ) -> Result<Response<a::AdHocProfilesListResponse>, Status> {
        let tenant = OrgId::tenant_of(&r)?;
        let t = tenant.as_str();
        self.0.list(t).await.map(Response::new).map_err(status)
    }
    async fn diff(
        &self,
        r: Request<a::AdHocProfilesDiffRequest>,
    ) -> Result<Response<a::AdHocProfilesDiffResponse>, Status> {
        let tenant = OrgId::tenant_of(&r)?;
        let t = tenant.as_str();
        self.0.diff(t, r.into_inner()).await.map(Response::new).map_err(status)
    }
}

/// The service: a body carries a file of up to [`MAX_PROFILE_BYTES`] in
/// base64 (a third larger), plus the rest of the message.
pub(crate) fn rpc(adhoc: Arc<AdHoc>) -> Rpc {
    let limit = MAX_PROFILE_BYTES / 3 * 4 + (1 << 20);
    let server = AdHocProfileServiceServer::from_arc(Arc::clone(&adhoc))
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(limit)
        .max_encoding_message_size(256 << 20);
    Rpc::new(AdHocProfileServiceConnect::from_arc(adhoc), rpc::grpc(server), limit).over_limit("resource_exhausted")
}
