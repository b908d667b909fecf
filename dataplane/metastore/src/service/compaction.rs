//! Compaction jobs: a worker polls (the leader plans and leases a job) and
//! completes (the leader swaps the sources for the result). Both are writes.

use phlox_proto::metastore::v1::metastore_service_client::MetastoreServiceClient;
use phlox_proto::metastore::v1::{
    CompleteCompactionJobRequest, CompleteCompactionJobResponse, PollCompactionJobRequest, PollCompactionJobResponse,
};
use tonic::transport::Channel;

use super::forward::forwarded;
use super::route::{Core, Local, Routed, now_ms};
use crate::error::{MetastoreError, Result};
use crate::fsm::{Command, CompactionPolicy, InvalidRequest, Response};

/// Default lease of a job.
const LEASE_MS: i64 = 5 * 60 * 1000;

impl Routed for PollCompactionJobRequest {
    type Reply = PollCompactionJobResponse;

    fn write_name(&self) -> Option<&'static str> {
        Some("poll_compaction_job")
    }

    fn validate(&self) -> Result<()> {
        if self.worker.is_empty() {
            return Err(InvalidRequest::MissingWorker.into());
        }
        Ok(())
    }

    async fn run_local(&self, core: &Core) -> Result<Local<PollCompactionJobResponse>> {
        let mut policy = CompactionPolicy::default();
        if !self.min_blocks.is_empty() {
            policy.min_blocks = self.min_blocks.clone();
        }
        if !self.max_age_ms.is_empty() {
            policy.max_age_ms = self.max_age_ms.clone();
        }
        let lease_ms = if self.lease_ms > 0 { self.lease_ms } else { LEASE_MS };
        let command = Command::PollCompactionJob { worker: self.worker.clone(), now_ms: now_ms(), lease_ms, policy };
        match core.write_local(command).await? {
            Local::Done(Response::CompactionJob(r)) => Ok(Local::Done(r)),
            Local::Done(Response::Rejected(e)) => Err(e.into()),
            Local::Done(other) => Err(MetastoreError::UnexpectedResponse(other)),
            Local::NotLeader(id, node) => Ok(Local::NotLeader(id, node)),
        }
    }

    async fn forward(
        &self,
        mut client: MetastoreServiceClient<Channel>,
    ) -> Result<PollCompactionJobResponse, tonic::Status> {
        Ok(client.poll_compaction_job(forwarded(self.clone())).await?.into_inner())
    }
}

impl Routed for CompleteCompactionJobRequest {
    type Reply = CompleteCompactionJobResponse;

    fn write_name(&self) -> Option<&'static str> {
        Some("complete_compaction_job")
    }

    fn validate(&self) -> Result<()> {
        // An absent block (the job's exclusions removed every row) is
        // checked against the job at apply time.
        Ok(())
    }

    async fn run_local(&self, core: &Core) -> Result<Local<CompleteCompactionJobResponse>> {
        let command = Command::CompleteCompactionJob {
            id: self.id.clone(),
            token: self.token,
            block: self.block.clone().unwrap_or_default(),
            now_ms: now_ms(),
            no_output: self.block.is_none(),
        };
        match core.write_local(command).await? {
            Local::Done(Response::JobCompleted) => Ok(Local::Done(CompleteCompactionJobResponse {})),
            Local::Done(Response::Rejected(e)) => Err(e.into()),
            Local::Done(other) => Err(MetastoreError::UnexpectedResponse(other)),
            Local::NotLeader(id, node) => Ok(Local::NotLeader(id, node)),
        }
    }

    async fn forward(
        &self,
        mut client: MetastoreServiceClient<Channel>,
    ) -> Result<CompleteCompactionJobResponse, tonic::Status> {
        Ok(client.complete_compaction_job(forwarded(self.clone())).await?.into_inner())
    }
}
