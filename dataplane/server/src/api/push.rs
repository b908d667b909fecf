//! `push.v1.PusherService`: what SDKs and Grafana Alloy push.

use std::sync::Arc;

use phlox_distributor::{Distributor, PushError};
use phlox_proto::push::v1::pusher_service_server::{PusherService, PusherServiceServer};
use phlox_proto::push::v1::{PushRequest, PushResponse, PusherServiceConnect};
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use super::rpc::{self, Rpc};
use crate::context::{ApiError, OrgId, status};

pub(crate) const SERVICE: &str = "push.v1.PusherService";

pub(crate) struct Pusher {
    distributor: Arc<Distributor>,
}

#[tonic::async_trait]
impl PusherService for Pusher {
    /// Decoding, validation and the split run on the decode pool; the
    /// answer comes once every profile is durable and indexed.
    async fn push(&self, request: Request<PushRequest>) -> Result<Response<PushResponse>, Status> {
        let tenant = OrgId::tenant_of(&request)?;
        let d = Arc::clone(&self.distributor);
        let t = tenant.clone();
        let request = request.into_inner();
        let profiles = self
            .distributor
            .cpu()
            .run(move || d.prepare_push(t.as_str(), request))
            .await
            .map_err(status)?
            .map_err(status)?;
        match self.distributor.push_prepared(tenant.as_str(), profiles).await {
            Ok(_) => Ok(Response::new(PushResponse {})),
            Err(e) => {
                if matches!(e, PushError::Unavailable(_)) {
                    tracing::warn!(tenant = %tenant, error = %e, "push failed");
                }
                Err(status(e))
            }
        }
    }
}

/// The service: bodies up to `max_body` (compressed and not), a tenant
/// over its rate refused before any decoding, decompression on the decode
/// pool.
pub(crate) fn rpc(distributor: Arc<Distributor>, max_body: usize) -> Rpc {
    let pusher = Arc::new(Pusher { distributor: Arc::clone(&distributor) });
    let server = PusherServiceServer::from_arc(Arc::clone(&pusher))
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(max_body);
    let admitting = Arc::clone(&distributor);
    Rpc::new(PusherServiceConnect::from_arc(pusher), rpc::grpc(server), max_body)
        .over_limit("resource_exhausted")
        .admit(Box::new(move |org, bytes| {
            let tenant = org.tenant()?;
            admitting.admit_request(tenant.as_str(), bytes).map_err(ApiError::from)
        }))
        .offload(Box::new(move |job| {
            let d = Arc::clone(&distributor);
            Box::pin(async move { d.cpu().run(job).await.map_err(ApiError::from)? })
        }))
}
