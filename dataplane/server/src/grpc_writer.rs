//! `segmentwriter.v1.SegmentWriterService`: a segment writer receiving
//! per-series profiles from distributors in other processes. The call
//! returns once the profiles are durable and indexed, as in-process pushes.

use std::sync::Arc;

use phlox_model::{Labels, ProfileId};
use phlox_pprof::{Profile, SeriesProfile};
use phlox_proto::segmentwriter::v1 as sw;
use phlox_proto::segmentwriter::v1::segment_writer_service_server::{SegmentWriterService, SegmentWriterServiceServer};
use phlox_segment_writer::{SegmentWriter, WriteError};
use tonic::{Request, Response, Status};

/// Largest push accepted from a distributor.
pub(crate) const MAX_MESSAGE: usize = 256 << 20;

pub(crate) struct GrpcWriter {
    writer: Arc<SegmentWriter>,
    /// Global shard count: shard ids are checked against it.
    shards: u32,
}

/// The series profiles of a request, rebuilt and checked.
pub(crate) fn decode_push(r: &sw::PushRequest) -> Result<Vec<SeriesProfile>, Status> {
    let bad = |m: String| Status::invalid_argument(m);
    let mut out = Vec::new();
    for source in &r.sources {
        let profile = Profile::decode(&source.pprof).map_err(|e| bad(e.to_string()))?;
        profile.validate().map_err(|e| bad(e.to_string()))?;
        let profile = Arc::new(profile);
        for part in &source.series {
            let id: [u8; 16] = part
                .id
                .as_ref()
                .try_into()
                .map_err(|_| bad(format!("profile id has {} bytes, not 16", part.id.len())))?;
            let labels = Labels::from_pairs(part.labels.iter().map(|l| (l.name.as_str(), l.value.clone())));
            let p = SeriesProfile::from_parts(
                Arc::clone(&profile),
                labels,
                ProfileId(id),
                part.time_nanos,
                part.value_index as usize,
                part.samples.clone(),
            )
            .map_err(|e| bad(e.to_string()))?;
            out.push(p);
        }
    }
    Ok(out)
}

/// The request for series profiles of one tenant and shard: each source
/// profile is encoded once, however many series come from it.
pub(crate) fn encode_push(tenant: &str, shard: u32, profiles: &[SeriesProfile]) -> sw::PushRequest {
    let mut sources: Vec<(*const Profile, sw::SourceProfile)> = Vec::new();
    for p in profiles {
        let key = Arc::as_ptr(&p.source);
        let at = match sources.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                sources.push((key, sw::SourceProfile { pprof: p.source.encoded(), series: Vec::new() }));
                sources.len() - 1
            }
        };
        sources[at].1.series.push(sw::SeriesPart {
            labels: p
                .labels
                .iter()
                .map(|l| phlox_proto::types::v1::LabelPair { name: l.name.clone(), value: l.value.clone() })
                .collect(),
            id: p.id.0.to_vec().into(),
            time_nanos: p.time_nanos,
            value_index: p.value_index as u32,
            samples: p.samples.clone(),
        });
    }
    sw::PushRequest { tenant: tenant.to_owned(), shard, sources: sources.into_iter().map(|(_, s)| s).collect() }
}

#[tonic::async_trait]
impl SegmentWriterService for GrpcWriter {
    async fn push(&self, request: Request<sw::PushRequest>) -> Result<Response<sw::PushResponse>, Status> {
        let r = request.into_inner();
        if r.tenant.is_empty() {
            return Err(Status::invalid_argument("tenant is empty"));
        }
        if r.shard >= self.shards {
            return Err(Status::invalid_argument(format!("shard {} out of range ({} shards)", r.shard, self.shards)));
        }
        let profiles = decode_push(&r)?;
        // Global shards map onto this writer's flush loops.
        let local = r.shard % self.writer.shards().max(1);
        match self.writer.push(&r.tenant, local, &profiles).await {
            Ok(()) => Ok(Response::new(sw::PushResponse {})),
            Err(e @ WriteError::Overloaded { .. }) => Err(Status::resource_exhausted(e.to_string())),
            Err(e) => Err(Status::unavailable(e.to_string())),
        }
    }
}

pub(crate) fn service(writer: Arc<SegmentWriter>, shards: u32) -> SegmentWriterServiceServer<GrpcWriter> {
    SegmentWriterServiceServer::new(GrpcWriter { writer, shards })
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}
