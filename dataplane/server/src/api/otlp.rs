//! OpenTelemetry profiles on the public port: gRPC `ProfilesService/Export`
//! and OTLP/HTTP `POST /v1development/profiles` (protobuf or JSON, gzip).
//! Each OTLP profile becomes a columnar profile with series labels and
//! takes the Push path from there (validation, limits, split, shards).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use phlox_distributor::{BuiltProfile, Distributor, PushError};
use phlox_formats::otlp::{self, ExportProfilesServiceRequest, ExportProfilesServiceResponse, OtlpError};
use phlox_proto::opentelemetry::proto::collector::profiles::v1development::profiles_service_server::{
    ProfilesService, ProfilesServiceServer,
};
use phlox_proto::types::v1::LabelPair;
use prost::Message;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Status};

use super::rpc;
use crate::context::{ApiError, OrgId, body, status};

fn now_nanos() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

/// Converts an export request into profiles with their series labels,
/// within the tenant's budget.
fn to_profiles(
    request: &ExportProfilesServiceRequest,
    budget: &phlox_formats::Budget,
) -> Result<Vec<BuiltProfile>, OtlpError> {
    let profiles = otlp::convert(request, now_nanos(), budget)?;
    Ok(profiles
        .into_iter()
        .map(|p| BuiltProfile {
            labels: p.labels.into_iter().map(|(name, value)| LabelPair { name, value }).collect(),
            profile: p.profile,
            id: p.id,
        })
        .collect())
}

/// An export with no profiles at all is accepted (and stores nothing). The
/// body (OTLP/HTTP: not yet decoded) is decoded, converted straight into
/// columnar profiles and split on the decode pool.
async fn export(distributor: &Arc<Distributor>, tenant: &str, body: ExportBody) -> Result<(), ExportError> {
    let (d, t) = (Arc::clone(distributor), tenant.to_owned());
    let prepared = distributor
        .cpu()
        .run(move || -> Result<_, ExportError> {
            let request = match body {
                ExportBody::Decoded(r) => r,
                ExportBody::Encoded { bytes, json } => otlp::decode_request(&bytes, json).map_err(ExportError::Otlp)?,
            };
            let profiles = to_profiles(&request, &d.limits(&t).budget()).map_err(ExportError::Otlp)?;
            if profiles.is_empty() {
                return Ok(None);
            }
            d.prepare_built(&t, profiles).map(Some).map_err(ExportError::Push)
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

impl From<ExportError> for ApiError {
    fn from(e: ExportError) -> Self {
        match e {
            ExportError::Otlp(e) => ApiError::invalid_argument(e.to_string()),
            ExportError::Push(e) => e.into(),
        }
    }
}

struct GrpcProfiles {
    distributor: Arc<Distributor>,
}

#[tonic::async_trait]
impl ProfilesService for GrpcProfiles {
    async fn export(
        &self,
        request: Request<ExportProfilesServiceRequest>,
    ) -> Result<tonic::Response<ExportProfilesServiceResponse>, Status> {
        let tenant = OrgId::tenant_of(&request)?;
        export(&self.distributor, tenant.as_str(), ExportBody::Decoded(request.into_inner()))
            .await
            .map(|()| tonic::Response::new(ExportProfilesServiceResponse::default()))
            .map_err(status)
    }
}

/// OTLP gRPC receivers accept up to 100 MiB (Pyroscope's grpc max receive).
const MAX_GRPC_MESSAGE: usize = 100 << 20;

/// The OTLP routes: gRPC (and gRPC-Web) `ProfilesService/Export` and
/// OTLP/HTTP on both its path and the service path.
pub(crate) fn router(distributor: Option<Arc<Distributor>>, max_body: usize) -> Router {
    let otlp = distributor.map(|distributor| {
        let server = ProfilesServiceServer::new(GrpcProfiles { distributor: Arc::clone(&distributor) })
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(MAX_GRPC_MESSAGE);
        Arc::new(Otlp { distributor, grpc: rpc::grpc(server), max_body })
    });
    Router::new()
        .route("/v1development/profiles", post(export_route))
        .route("/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export", post(export_route))
        .with_state(otlp)
}

struct Otlp {
    distributor: Arc<Distributor>,
    grpc: rpc::Grpc,
    max_body: usize,
}

async fn export_route(State(otlp): State<Option<Arc<Otlp>>>, org: OrgId, request: axum::extract::Request) -> Response {
    let Some(otlp) = otlp else {
        return ApiError::new("unimplemented", "this process does not run the distributor").into_response();
    };
    if rpc::is_grpc(request.headers()) {
        return rpc::call_grpc(&otlp.grpc, request).await;
    }
    let tenant = match org.tenant() {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let (parts, body) = request.into_parts();
    let body = match body::read(body, otlp.max_body, "invalid_argument").await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if let Err(e) = otlp.distributor.admit_request(tenant.as_str(), body.len()) {
        return text(ApiError::from(e));
    }
    let body = match body::decompress(&parts.headers, body, otlp.max_body) {
        Ok(b) => b,
        Err(e) if e.code == "resource_exhausted" => {
            return (StatusCode::PAYLOAD_TOO_LARGE, e.message).into_response();
        }
        Err(e) => return (StatusCode::BAD_REQUEST, e.message).into_response(),
    };
    http_export(&otlp.distributor, tenant.as_str(), &parts.headers, body).await
}

/// OTLP/HTTP answers errors as text, with the code's HTTP status.
fn text(e: ApiError) -> Response {
    (e.status(), [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], e.message).into_response()
}

/// OTLP/HTTP: the body is already read and decompressed.
async fn http_export(
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
            let message = format!("unsupported content type {other:?}: use application/x-protobuf or application/json");
            return (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                message,
            )
                .into_response();
        }
    };
    match export(distributor, tenant, ExportBody::Encoded { bytes: body, json }).await {
        Ok(()) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            ExportProfilesServiceResponse::default().encode_to_vec(),
        )
            .into_response(),
        Err(e) => text(e.into()),
    }
}
