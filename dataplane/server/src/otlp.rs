//! OpenTelemetry profiles on the public port: gRPC `ProfilesService/Export`
//! and OTLP/HTTP `POST /v1development/profiles` (protobuf or JSON, gzip).
//! Each OTLP profile becomes a pprof with series labels and takes the Push
//! path (validation, limits, split, shards).

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use phlox_distributor::{Distributor, PushError};
use phlox_formats::otlp::{self, ExportProfilesServiceRequest, ExportProfilesServiceResponse, OtlpError};
use phlox_model::TenantId;
use phlox_proto::opentelemetry::proto::collector::profiles::v1development::profiles_service_server::{
    ProfilesService, ProfilesServiceServer,
};
use phlox_proto::push::v1::{PushRequest, RawProfileSeries, RawSample};
use phlox_proto::types::v1::LabelPair;
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Status};
use tonic_web::{GrpcWebLayer, GrpcWebService};
use tower::Layer;

fn now_nanos() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

/// Converts an export request into a push of pprof profiles, within the
/// tenant's budget.
fn to_push(request: &ExportProfilesServiceRequest, budget: &phlox_formats::Budget) -> Result<PushRequest, OtlpError> {
    let profiles = otlp::convert(request, now_nanos(), budget)?;
    Ok(PushRequest {
        series: profiles
            .into_iter()
            .map(|p| RawProfileSeries {
                labels: p.labels.into_iter().map(|(name, value)| LabelPair { name, value }).collect(),
                samples: vec![RawSample { raw_profile: p.profile.encode_to_vec().into(), id: p.id }],
                annotations: vec![],
            })
            .collect(),
    })
}

/// An export with no profiles at all is accepted (and stores nothing). The
/// body (OTLP/HTTP: not yet decoded) is decoded, converted, decoded again as
/// pprof and split on the decode pool.
async fn export(distributor: &Arc<Distributor>, tenant: &str, body: ExportBody) -> Result<(), ExportError> {
    let (d, t) = (Arc::clone(distributor), tenant.to_owned());
    let prepared = distributor
        .cpu()
        .run(move || -> Result<_, ExportError> {
            let request = match body {
                ExportBody::Decoded(r) => r,
                ExportBody::Encoded { bytes, json } => otlp::decode_request(&bytes, json).map_err(ExportError::Otlp)?,
            };
            let push = to_push(&request, &d.limits(&t).budget()).map_err(ExportError::Otlp)?;
            if push.series.is_empty() {
                return Ok(None);
            }
            d.prepare_push(&t, push).map(Some).map_err(ExportError::Push)
        })
        .await
        .map_err(ExportError::Push)??;
    match prepared {
        None => Ok(()),
        Some(profiles) => distributor.push_prepared(tenant, profiles).await.map(|_| ()).map_err(ExportError::Push),
    }
}

/// An export request as received.
enum ExportBody {
    Decoded(ExportProfilesServiceRequest),
    Encoded { bytes: bytes::Bytes, json: bool },
}

enum ExportError {
    Otlp(OtlpError),
    Push(PushError),
}

pub(crate) struct GrpcProfiles {
    pub(crate) distributor: Arc<Distributor>,
}

#[tonic::async_trait]
impl ProfilesService for GrpcProfiles {
    async fn export(
        &self,
        request: Request<ExportProfilesServiceRequest>,
    ) -> Result<tonic::Response<ExportProfilesServiceResponse>, Status> {
        let tenant =
            request.extensions().get::<TenantId>().cloned().ok_or_else(|| Status::unauthenticated("no org id"))?;
        match export(&self.distributor, tenant.as_str(), ExportBody::Decoded(request.into_inner())).await {
            Ok(()) => Ok(tonic::Response::new(ExportProfilesServiceResponse::default())),
            Err(ExportError::Otlp(e)) => Err(Status::invalid_argument(e.to_string())),
            Err(ExportError::Push(PushError::InvalidArgument(m))) => Err(Status::invalid_argument(m)),
            Err(ExportError::Push(PushError::ResourceExhausted(m))) => Err(Status::resource_exhausted(m)),
            Err(ExportError::Push(PushError::Unavailable(m))) => Err(Status::unavailable(m)),
        }
    }
}

pub(crate) type GrpcProfilesService = GrpcWebService<ProfilesServiceServer<GrpcProfiles>>;

pub(crate) fn service(distributor: Arc<Distributor>) -> GrpcProfilesService {
    // OTLP gRPC receivers accept up to 100 MiB (Pyroscope's grpc max receive).
    let server = ProfilesServiceServer::new(GrpcProfiles { distributor })
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(100 << 20);
    GrpcWebLayer::new().layer(server)
}

fn text(status: StatusCode, message: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], message).into_response()
}

/// OTLP/HTTP: the body is already read and decompressed.
pub(crate) async fn http_export(
    distributor: &Arc<Distributor>,
    tenant: &str,
    headers: &HeaderMap,
    body: bytes::Bytes,
) -> Response {
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let json = match ct.split(';').next().unwrap_or("").trim() {
        "application/x-protobuf" | "application/protobuf" => false,
        "application/json" => true,
        other => {
            return text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported content type {other:?}: use application/x-protobuf or application/json"),
            );
        }
    };
    match export(distributor, tenant, ExportBody::Encoded { bytes: body, json }).await {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            ExportProfilesServiceResponse::default().encode_to_vec(),
        )
            .into_response(),
        Err(ExportError::Otlp(e)) => text(StatusCode::BAD_REQUEST, e.to_string()),
        Err(ExportError::Push(PushError::InvalidArgument(m))) => text(StatusCode::BAD_REQUEST, m),
        Err(ExportError::Push(PushError::ResourceExhausted(m))) => text(StatusCode::TOO_MANY_REQUESTS, m),
        Err(ExportError::Push(PushError::Unavailable(m))) => text(StatusCode::SERVICE_UNAVAILABLE, m),
    }
}
