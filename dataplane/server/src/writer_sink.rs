//! The in-process segment writer as the distributor's [`ShardWriter`].

use std::sync::Arc;

use phlox_distributor::{ShardWriter, SinkError};
use phlox_pprof::SeriesProfile;
use phlox_segment_writer::{SegmentWriter, WriteError};

pub(crate) struct LocalWriter(pub(crate) Arc<SegmentWriter>);

#[async_trait::async_trait]
impl ShardWriter for LocalWriter {
    fn shards(&self) -> u32 {
        self.0.shards()
    }

    /// One process holds every shard.
    fn writers(&self) -> u32 {
        1
    }

    async fn push(&self, tenant: &str, shard: u32, profiles: Vec<SeriesProfile>) -> Result<(), SinkError> {
        self.0.push(tenant, shard, &profiles).await.map_err(|e| match e {
            WriteError::Overloaded { .. } => SinkError::Overloaded(e.to_string()),
            other => SinkError::Unavailable(other.to_string()),
        })
    }
}

/// Segment writers in other processes, found through the metastore's
/// membership. Shard `s` goes to the writer at
/// [`writer_for_shard`](phlox_distributor::placement::writer_for_shard)`(s, n)`
/// of the live members sorted by id; when that writer does not answer, the
/// next ones are tried with the same shard id.
pub(crate) struct RemoteWriters {
    metastore: Arc<dyn phlox_proto::metastore_client::Metastore>,
    shards: u32,
    members: std::sync::RwLock<Vec<(String, String)>>,
    clients: std::sync::Mutex<
        std::collections::HashMap<
            String,
            phlox_proto::segmentwriter::v1::segment_writer_service_client::SegmentWriterServiceClient<
                tonic::transport::Channel,
            >,
        >,
    >,
}

/// A writer whose last heartbeat is older than this is not routed to.
const STALE_AFTER_MS: i64 = 15_000;

impl RemoteWriters {
    pub(crate) fn new(metastore: Arc<dyn phlox_proto::metastore_client::Metastore>, shards: u32) -> Arc<Self> {
        Arc::new(Self {
            metastore,
            shards: shards.max(1),
            members: std::sync::RwLock::new(Vec::new()),
            clients: std::sync::Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// Re-reads the membership; live members sorted by id.
    pub(crate) async fn refresh(&self) -> Result<usize, tonic::Status> {
        let r = self.metastore.list_segment_writers(Default::default()).await?;
        let newest = r.members.iter().map(|m| m.last_heartbeat).max().unwrap_or(0);
        let mut live: Vec<(String, String)> = r
            .members
            .into_iter()
            .filter(|m| m.last_heartbeat >= newest - STALE_AFTER_MS && !m.address.is_empty() && !m.draining)
            .map(|m| (m.id, m.address))
            .collect();
        live.sort();
        let n = live.len();
        if let Ok(mut m) = self.members.write() {
            *m = live;
        }
        Ok(n)
    }

    /// Refreshes the membership every `every` until the process ends.
    pub(crate) fn spawn_refresh(self: &Arc<Self>, every: std::time::Duration) {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(w) = me.upgrade() else { return };
                if let Err(e) = w.refresh().await {
                    tracing::warn!(error = %e, "cannot read the segment-writer membership");
                }
                drop(w);
                tokio::time::sleep(every).await;
            }
        });
    }

    fn client(
        &self,
        address: &str,
    ) -> Result<
        phlox_proto::segmentwriter::v1::segment_writer_service_client::SegmentWriterServiceClient<
            tonic::transport::Channel,
        >,
        SinkError,
    > {
        let mut clients = self.clients.lock().map_err(|_| SinkError::Unavailable("client cache poisoned".into()))?;
        if let Some(c) = clients.get(address) {
            return Ok(c.clone());
        }
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| SinkError::Unavailable(format!("segment writer address {address:?}: {e}")))?
            .connect_timeout(std::time::Duration::from_secs(2));
        let channel = phlox_proto::tls::connect_lazy(endpoint);
        let c = phlox_proto::segmentwriter::v1::segment_writer_service_client::SegmentWriterServiceClient::new(channel)
            .max_decoding_message_size(crate::grpc_writer::MAX_MESSAGE)
            .max_encoding_message_size(crate::grpc_writer::MAX_MESSAGE);
        clients.insert(address.to_owned(), c.clone());
        Ok(c)
    }
}

#[async_trait::async_trait]
impl ShardWriter for RemoteWriters {
    fn shards(&self) -> u32 {
        self.shards
    }

    fn writers(&self) -> u32 {
        self.members.read().map_or(1, |m| m.len() as u32).max(1)
    }

    async fn push(&self, tenant: &str, shard: u32, profiles: Vec<SeriesProfile>) -> Result<(), SinkError> {
        let mut members = self.members.read().map(|m| m.clone()).unwrap_or_default();
        if members.is_empty() {
            let _ = self.refresh().await;
            members = self.members.read().map(|m| m.clone()).unwrap_or_default();
        }
        if members.is_empty() {
            return Err(SinkError::Unavailable("no segment writer is registered".into()));
        }
        let request = crate::grpc_writer::encode_push(tenant, shard, &profiles);
        let n = members.len() as u32;
        let first = phlox_distributor::placement::writer_for_shard(shard, n);
        let mut last = String::new();
        for k in 0..n {
            let (id, address) = &members[((first + k) % n) as usize];
            let mut client = self.client(address)?;
            match client.push(request.clone()).await {
                Ok(_) => return Ok(()),
                Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                    return Err(SinkError::Overloaded(s.message().to_owned()));
                }
                Err(s) if s.code() == tonic::Code::InvalidArgument => {
                    return Err(SinkError::Unavailable(format!(
                        "segment writer {id} refused the push: {}",
                        s.message()
                    )));
                }
                Err(s) => {
                    tracing::warn!(writer = %id, %address, error = %s, "segment writer did not ack; trying the next");
                    last = format!("segment writer {id}: {}", s.message());
                }
            }
        }
        Err(SinkError::Unavailable(last))
    }
}
