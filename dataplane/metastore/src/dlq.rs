//! Dead-letter recovery: a segment writer that could not register a block
//! leaves its `AddBlockRequest` under `dlq/`; the leader re-adds it (AddBlock
//! is idempotent) and deletes the entry.

use futures::TryStreamExt as _;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt as _};
use phlox_block::paths::{DLQ_PREFIX, parse_id};
use phlox_proto::metastore::v1::AddBlockRequest;
use prost::Message as _;

use crate::error::{MetastoreError, Result};
use crate::service::{Core, Origin};

/// Outcome of one pass over the dead-letter prefix.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DlqReport {
    /// Entries re-added (or found already indexed) and deleted.
    pub recovered: usize,
    /// Entries left in place after an error; retried on the next pass.
    pub failed: usize,
}

/// Lists `dlq/`, re-adds each entry and deletes it. Listing errors fail the
/// pass; an entry's error is logged and leaves the entry for the next pass.
pub(crate) async fn recover_once(core: &Core, store: &dyn ObjectStore) -> Result<DlqReport> {
    let prefix = Path::from(DLQ_PREFIX);
    let entries: Vec<_> = store.list(Some(&prefix)).try_collect().await?;
    let mut report = DlqReport::default();
    for entry in entries {
        let key = entry.location;
        if let Err(error) = parse_id(&key) {
            tracing::warn!(%key, %error, "skipping foreign object under the dead-letter prefix");
            continue;
        }
        match recover_entry(core, store, &key).await {
            Ok(added) => {
                tracing::info!(%key, added, "recovered dead-letter block");
                core.metrics.dlq_recovered.inc();
                report.recovered += 1;
            }
            Err(error) => {
                tracing::warn!(%key, %error, "dead-letter block not recovered");
                report.failed += 1;
            }
        }
    }
    core.metrics.dlq_entries.set(i64::try_from(report.failed).unwrap_or(i64::MAX));
    Ok(report)
}

async fn recover_entry(core: &Core, store: &dyn ObjectStore, key: &Path) -> Result<bool> {
    let body = store.get(key).await?.bytes().await?;
    let request =
        AddBlockRequest::decode(body).map_err(|source| MetastoreError::DlqDecode { key: key.to_string(), source })?;
    let response = core.call(&request, Origin::Client).await?;
    store.delete(key).await?;
    Ok(response.added)
}
