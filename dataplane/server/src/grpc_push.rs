//! `push.v1.PusherService` over gRPC and gRPC-Web on the public port (the
//! Connect protocol is served by `http::push` on the same path).

use std::sync::Arc;

use phlox_distributor::{Distributor, PushError};
use phlox_model::TenantId;
use phlox_proto::push::v1::pusher_service_server::{PusherService, PusherServiceServer};
use phlox_proto::push::v1::{PushRequest, PushResponse};
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};
use tonic_web::{GrpcWebLayer, GrpcWebService};
use tower::Layer;

/// The gRPC handler; the HTTP layer puts the request's [`TenantId`] into
/// its extensions.
pub(crate) struct GrpcPusher {
    pub(crate) distributor: Arc<Distributor>,
}

#[tonic::async_trait]
impl PusherService for GrpcPusher {
    async fn push(&self, request: Request<PushRequest>) -> Result<Response<PushResponse>, Status> {
        let tenant =
            request.extensions().get::<TenantId>().cloned().ok_or_else(|| Status::unauthenticated("no org id"))?;
        match self.distributor.push(tenant.as_str(), request.into_inner()).await {
            Ok(_) => Ok(Response::new(PushResponse {})),
            Err(PushError::InvalidArgument(m)) => Err(Status::invalid_argument(m)),
            Err(PushError::ResourceExhausted(m)) => Err(Status::resource_exhausted(m)),
            Err(PushError::Unavailable(m)) => Err(Status::unavailable(m)),
        }
    }
}

/// The gRPC + gRPC-Web service.
pub(crate) type GrpcPushService = GrpcWebService<PusherServiceServer<GrpcPusher>>;

pub(crate) fn service(distributor: Arc<Distributor>, max_message: usize) -> GrpcPushService {
    let server = PusherServiceServer::new(GrpcPusher { distributor })
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(max_message);
    GrpcWebLayer::new().layer(server)
}
