//! `querier.v1.QuerierService`: what Grafana, profilecli and the UI query.

use std::sync::Arc;

use axum::http::{HeaderMap, header};
use phlox_proto::google::v1::Profile;
use phlox_proto::querier::v1 as q;
use phlox_proto::querier::v1::QuerierServiceConnect;
use phlox_proto::querier::v1::querier_service_server::{QuerierService, QuerierServiceServer};
use phlox_proto::types::v1 as t;
use phlox_query::QueryFrontend;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use super::rpc::{self, Rpc};
use crate::context::{ApiError, OrgId, status};

pub(crate) const SERVICE: &str = "querier.v1.QuerierService";

/// Whether the client accepts label names outside the legacy Prometheus
/// syntax: a media-type parameter `allow-utf8-labelnames=true` in `Accept`
/// (profilecli sends `*/*;allow-utf8-labelnames=true`). An `Accept` value
/// that is not a list of media types is a 400, as in Pyroscope.
fn allows_utf8_label_names(headers: &HeaderMap) -> Result<bool, ApiError> {
    let mut allowed = false;
    for value in headers.get_all(header::ACCEPT) {
        let bad = || ApiError::new("invalid_argument", "the Accept header is not a list of media types");
        let value = value.to_str().map_err(|_| bad())?;
        for media in value.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            let mut parts = media.split(';').map(str::trim);
            let essence = parts.next().unwrap_or("");
            let Some((kind, sub)) = essence.split_once('/') else { return Err(bad()) };
            if kind.is_empty() || sub.is_empty() {
                return Err(bad());
            }
            for param in parts.filter(|p| !p.is_empty()) {
                let Some((k, v)) = param.split_once('=') else { return Err(bad()) };
                if k.trim().eq_ignore_ascii_case("allow-utf8-labelnames") && v.trim().trim_matches('"') == "true" {
                    allowed = true;
                }
            }
        }
    }
    Ok(allowed)
}

/// The legacy label name syntax, `[a-zA-Z_][a-zA-Z0-9_]*`.
fn is_legacy_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether the call's `Accept` allows UTF-8 label names.
fn utf8_names<T>(r: &Request<T>) -> Result<bool, Status> {
    let mut headers = HeaderMap::new();
    for v in r.metadata().get_all(header::ACCEPT.as_str()) {
        if let Ok(v) = header::HeaderValue::from_bytes(v.as_encoded_bytes()) {
            headers.append(header::ACCEPT, v);
        }
    }
    allows_utf8_label_names(&headers).map_err(status)
}

pub(crate) struct Querier {
    frontend: Arc<QueryFrontend>,
}

/// The trait: methods that hand the request to the frontend as it came,
/// then the ones that do more.
macro_rules! querier_service {
    ($($method:ident($request:ty) -> $response:ty;)*) => {
        #[tonic::async_trait]
        impl QuerierService for Querier {
            $(async fn $method(&self, r: Request<$request>) -> Result<Response<$response>, Status> {
                let t = OrgId::tenants_of(&r)?;
                self.frontend.$method(&t, r.into_inner()).await.map(Response::new).map_err(status)
            })*

            async fn label_names(
                &self,
                r: Request<t::LabelNamesRequest>,
            ) -> Result<Response<t::LabelNamesResponse>, Status> {
                let (t, utf8) = (OrgId::tenants_of(&r)?, utf8_names(&r)?);
                let mut names = self.frontend.label_names(&t, r.into_inner()).await.map_err(status)?;
                if !utf8 {
                    names.names.retain(|n| is_legacy_label_name(n));
                }
                Ok(Response::new(names))
            }

            async fn series(&self, r: Request<q::SeriesRequest>) -> Result<Response<q::SeriesResponse>, Status> {
                let (t, utf8) = (OrgId::tenants_of(&r)?, utf8_names(&r)?);
                let mut series = self.frontend.series(&t, r.into_inner()).await.map_err(status)?;
                if !utf8 {
                    for set in &mut series.labels_set {
                        set.labels.retain(|l| is_legacy_label_name(&l.name));
                    }
                }
                Ok(Response::new(series))
            }

            async fn get_profile_stats(
                &self,
                r: Request<t::GetProfileStatsRequest>,
            ) -> Result<Response<t::GetProfileStatsResponse>, Status> {
                let t = OrgId::tenants_of(&r)?;
                self.frontend.get_profile_stats(&t).await.map(Response::new).map_err(status)
            }
        }
    };
}

querier_service! {
    profile_types(q::ProfileTypesRequest) -> q::ProfileTypesResponse;
    label_values(t::LabelValuesRequest) -> t::LabelValuesResponse;
    select_merge_stacktraces(q::SelectMergeStacktracesRequest) -> q::SelectMergeStacktracesResponse;
    select_merge_span_profile(q::SelectMergeSpanProfileRequest) -> q::SelectMergeSpanProfileResponse;
    select_merge_profile(q::SelectMergeProfileRequest) -> Profile;
    select_series(q::SelectSeriesRequest) -> q::SelectSeriesResponse;
    select_heatmap(q::SelectHeatmapRequest) -> q::SelectHeatmapResponse;
    diff(q::DiffRequest) -> q::DiffResponse;
    analyze_query(q::AnalyzeQueryRequest) -> q::AnalyzeQueryResponse;
}

/// The service: requests up to 16 MiB, latencies in `durations`.
pub(crate) fn rpc(frontend: Arc<QueryFrontend>, durations: prometheus::HistogramVec) -> Rpc {
    let querier = Arc::new(Querier { frontend });
    let server = QuerierServiceServer::from_arc(Arc::clone(&querier))
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(MAX_REQUEST)
        .max_encoding_message_size(256 << 20);
    Rpc::new(QuerierServiceConnect::from_arc(querier), rpc::grpc(server), MAX_REQUEST).durations(durations)
}

/// Largest query request.
const MAX_REQUEST: usize = 16 << 20;
