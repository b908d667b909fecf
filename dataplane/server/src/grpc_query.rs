//! `querier.v1.QuerierService` over gRPC and gRPC-Web (profilecli and other
//! gRPC clients); Connect is served by `query_api` on the same paths.

use std::sync::Arc;

use phlox_proto::google::v1::Profile;
use phlox_proto::querier::v1 as q;
use phlox_proto::querier::v1::querier_service_server::{QuerierService, QuerierServiceServer};
use phlox_proto::types::v1 as t;
use phlox_query::{QueryError, QueryFrontend};
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};
use tonic_web::{GrpcWebLayer, GrpcWebService};
use tower::Layer;

/// The tenants of a read, put into the request extensions by the HTTP layer.
#[derive(Debug, Clone)]
pub(crate) struct ReadTenants(pub(crate) Vec<String>);

pub(crate) struct GrpcQuerier {
    pub(crate) frontend: Arc<QueryFrontend>,
}

fn status(e: QueryError) -> Status {
    crate::connect::ConnectError::new(e.connect_code(), e.to_string()).into_status()
}

fn tenants<T>(r: &Request<T>) -> Result<Vec<String>, Status> {
    r.extensions().get::<ReadTenants>().map(|t| t.0.clone()).ok_or_else(|| Status::unauthenticated("no org id"))
}

#[tonic::async_trait]
impl QuerierService for GrpcQuerier {
    async fn profile_types(
        &self,
        r: Request<q::ProfileTypesRequest>,
    ) -> Result<Response<q::ProfileTypesResponse>, Status> {
        let t = tenants(&r)?;
        self.frontend.profile_types(&t, r.into_inner()).await.map(Response::new).map_err(status)
    }
    async fn label_values(
        &self,
        r: Request<t::LabelValuesRequest>,
    ) -> Result<Response<t::LabelValuesResponse>, Status> {
        let t = tenants(&r)?;
        self.frontend.label_values(&t, r.into_inner()).await.map(Response::new).map_err(status)
    }
    async fn label_names(&self, r: Request<t::LabelNamesRequest>) -> Result<Response<t::LabelNamesResponse>, Status> {
        let t = tenants(&r)?;
        self.frontend.label_names(&t, r.into_inner()).await.map(Response::new).map_err(status)
    }
    async fn series(&self, r: Request<q::SeriesRequest>) -> Result<Response<q::SeriesResponse>, Status> {
        let t = tenants(&r)?;
        self.frontend.series(&t, r.into_inner()).await.map(Response::new).map_err(status)
    }
    async fn select_merge_stacktraces(
        &self,
        r: Request<q::SelectMergeStacktracesRequest>,
    ) -> Result<Response<q::SelectMergeStacktracesResponse>, Status> {
        let t = tenants(&r)?;
        self.frontend.select_merge_stacktraces(&t, r.into_inner()).await.map(Response::new).map_err(status)
    }
    async fn select_merge_span_profile(
        &self,
        r: Request<q::SelectMergeSpanProfileRequest>,
    ) -> Result<Response<q::SelectMergeSpanProfileResponse>, Status> {
        let t = tenants(&r)?;
        self.frontend.select_merge_span_profile(&t, r.into_inner()).await.map(Response::new).map_err(status)
    }
    async fn select_merge_profile(
        &self,
        r: Request<q::SelectMergeProfileRequest>,
    ) -> Result<Response<Profile>, Status> {
        let t = tenants(&r)?;
        self.frontend.select_merge_profile(&t, r.into_inner()).await.map(Response::new).map_err(status)
    }
    async fn select_series(
        &self,
        r: Request<q::SelectSeriesRequest>,
    ) -> Result<Response<q::SelectSeriesResponse>, Status> {
        let t = tenants(&r)?;
        self.frontend.select_series(&t, r.into_inner()).await.map(Response::new).map_err(status)
    }
    async fn select_heatmap(
        &self,
        r: Request<q::SelectHeatmapRequest>,
    ) -> Result<Response<q::SelectHeatmapResponse>, Status> {
        let t = tenants(&r)?;
        self.frontend.select_heatmap(&t, r.into_inner()).await.map(Response::new).map_err(status)
    }
    async fn diff(&self, r: Request<q::DiffRequest>) -> Result<Response<q::DiffResponse>, Status> {
        let t = tenants(&r)?;
        self.frontend.diff(&t, r.into_inner()).await.map(Response::new).map_err(status)
    }
    async fn get_profile_stats(
        &self,
        r: Request<t::GetProfileStatsRequest>,
    ) -> Result<Response<t::GetProfileStatsResponse>, Status> {
        let t = tenants(&r)?;
        self.frontend.get_profile_stats(&t).await.map(Response::new).map_err(status)
    }
    async fn analyze_query(
        &self,
        r: Request<q::AnalyzeQueryRequest>,
    ) -> Result<Response<q::AnalyzeQueryResponse>, Status> {
        let t = tenants(&r)?;
        self.frontend.analyze_query(&t, r.into_inner()).await.map(Response::new).map_err(status)
    }
}

pub(crate) type GrpcQueryService = GrpcWebService<QuerierServiceServer<GrpcQuerier>>;

pub(crate) fn service(frontend: Arc<QueryFrontend>) -> GrpcQueryService {
    let server = QuerierServiceServer::new(GrpcQuerier { frontend })
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(16 << 20)
        .max_encoding_message_size(256 << 20);
    GrpcWebLayer::new().layer(server)
}
