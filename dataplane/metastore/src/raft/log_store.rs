//! Raft log, vote and committed pointer in redb. Entries are stored in the
//! binary format of [`crate::fsm::encode_stored`] (JSON entries written by
//! earlier versions still read).
//!
//! Writes that Raft relies on for safety (entries, vote, truncate, purge)
//! commit with `Durability::Immediate`: once openraft is told they are done,
//! they survive a crash. The committed pointer is written with
//! `Durability::None`; the next durable commit persists it, and losing it
//! only means replaying fewer entries at restart.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, LogState, OptionalSend, RaftLogReader, StorageError,
    StorageIOError, Vote,
};
use redb::{Durability, ReadableDatabase as _, ReadableTable as _};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::TypeConfig;
use super::dedup_keys::{DedupKeys, Recorded, entry_keys};
use super::store::{COMMITTED_KEY, Db, LAST_PURGED_KEY, LOGS, META, StoreError, VOTE_KEY, blocking};
use crate::fsm::{KEY_LEN, decode_stored, encode_stored_vec};
use crate::metrics::StorageMetrics;

type StorageResult<T> = Result<T, StorageError<u64>>;

fn sto_err(subject: ErrorSubject<u64>, verb: ErrorVerb, e: StoreError) -> StorageError<u64> {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

/// The Raft log store; cheap to clone (clones share the database).
#[derive(Debug, Clone)]
pub(crate) struct LogStore {
    db: Arc<Db>,
    metrics: StorageMetrics,
    dedup: Arc<DedupKeys>,
}

/// The dedup keys of one log entry: (index, block time, keys).
type EntryKeys = (u64, i64, Vec<[u8; KEY_LEN]>);

fn keys_of(entry: &Entry<TypeConfig>) -> Option<EntryKeys> {
    let EntryPayload::Normal(command) = &entry.payload else { return None };
    let (time, keys) = entry_keys(command)?;
    Some((entry.log_id.index, time, keys.collect()))
}

impl LogStore {
    pub(crate) fn new(db: Arc<Db>, metrics: StorageMetrics, dedup: Arc<DedupKeys>) -> Self {
        Self { db, metrics, dedup }
    }

    fn read_meta<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(META)?;
        match table.get(key)? {
            Some(v) => Ok(Some(serde_json::from_slice(v.value())?)),
            None => Ok(None),
        }
    }

    async fn write_meta<T: Serialize>(
        &self,
        key: &'static str,
        value: &T,
        durability: Durability,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(value)?;
        blocking(&self.db, move |db| {
            let mut txn = db.begin_write()?;
            txn.set_durability(durability)?;
            txn.open_table(META)?.insert(key, bytes.as_slice())?;
            txn.commit()?;
            Ok(())
        })
        .await
    }

    fn read_entries(&self, range: (Bound<u64>, Bound<u64>)) -> Result<Vec<Entry<TypeConfig>>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LOGS)?;
        let mut entries = Vec::new();
        for item in table.range(range)? {
            let (_, value) = item?;
            entries.push(decode_stored(value.value())?);
        }
        Ok(entries)
    }

    fn last_entry(&self) -> Result<Option<Entry<TypeConfig>>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LOGS)?;
        match table.last()? {
            Some((_, value)) => Ok(Some(decode_stored(value.value())?)),
            None => Ok(None),
        }
    }

    /// Deletes entries in `range` and optionally records the last purged id,
    /// in one durable transaction. A truncation (`forget_keys`) also forgets
    /// the dedup keys of the entries it removes; a purge keeps them (they
    /// leave with the window).
    async fn delete_entries(
        &self,
        range: (Bound<u64>, Bound<u64>),
        last_purged: Option<LogId<u64>>,
        forget_keys: bool,
    ) -> Result<(), StoreError> {
        let purged = last_purged.map(|id| serde_json::to_vec(&id)).transpose()?;
        // (index, block time) of the truncated entries that recorded keys.
        let forgotten: Vec<(u64, i64)> = if forget_keys {
            let entries = self.read_entries(range)?;
            entries
                .iter()
                .filter_map(|e| match &e.payload {
                    EntryPayload::Normal(command) => entry_keys(command).map(|(time, _)| (e.log_id.index, time)),
                    _ => None,
                })
                .collect()
        } else {
            Vec::new()
        };
        let dedup = Arc::clone(&self.dedup);
        let recorded = blocking(&self.db, move |db| {
            let mut txn = db.begin_write()?;
            txn.set_durability(Durability::Immediate)?;
            if let Some(purged) = purged {
                txn.open_table(META)?.insert(LAST_PURGED_KEY, purged.as_slice())?;
            }
            txn.open_table(LOGS)?.retain_in(range, |_, _| false)?;
            let mut recorded = Recorded::default();
            for (index, time) in forgotten {
                dedup.forget(&txn, &mut recorded, index, time)?;
            }
            txn.commit()?;
            Ok(recorded)
        })
        .await?;
        self.dedup.committed(recorded);
        self.metrics.dedup_keys.set(i64::try_from(self.dedup.len()).unwrap_or(i64::MAX));
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let bounds = (range.start_bound().cloned(), range.end_bound().cloned());
        self.read_entries(bounds).map_err(|e| sto_err(ErrorSubject::Logs, ErrorVerb::Read, e))
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let read = || -> Result<_, StoreError> {
            let last_purged: Option<LogId<u64>> = self.read_meta(LAST_PURGED_KEY)?;
            let last = self.last_entry()?.map(|e| e.log_id);
            Ok(LogState { last_purged_log_id: last_purged, last_log_id: last.or(last_purged) })
        };
        read().map_err(|e| sto_err(ErrorSubject::Logs, ErrorVerb::Read, e))
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> StorageResult<()> {
        self.write_meta(VOTE_KEY, vote, Durability::Immediate)
            .await
            .map_err(|e| sto_err(ErrorSubject::Vote, ErrorVerb::Write, e))
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<u64>>> {
        self.read_meta(VOTE_KEY).map_err(|e| sto_err(ErrorSubject::Vote, ErrorVerb::Read, e))
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> StorageResult<()> {
        self.write_meta(COMMITTED_KEY, &committed, Durability::None)
            .await
            .map_err(|e| sto_err(ErrorSubject::Store, ErrorVerb::Write, e))
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<u64>>> {
        let committed: Option<Option<LogId<u64>>> =
            self.read_meta(COMMITTED_KEY).map_err(|e| sto_err(ErrorSubject::Store, ErrorVerb::Read, e))?;
        Ok(committed.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut keys = Vec::new();
        let encoded = entries
            .into_iter()
            .map(|e| {
                keys.extend(keys_of(&e));
                Ok((e.log_id.index, encode_stored_vec(&e)?))
            })
            .collect::<Result<Vec<_>, StoreError>>();
        let result = match encoded {
            Ok(encoded) => {
                self.metrics.log_entries.inc_by(encoded.len() as u64);
                self.metrics.log_bytes.inc_by(encoded.iter().map(|(_, b)| b.len() as u64).sum());
                let dedup = Arc::clone(&self.dedup);
                let written = blocking(&self.db, move |db| {
                    let mut txn = db.begin_write()?;
                    txn.set_durability(Durability::Immediate)?;
                    {
                        let mut table = txn.open_table(LOGS)?;
                        for (index, bytes) in &encoded {
                            table.insert(*index, bytes.as_slice())?;
                        }
                    }
                    let mut recorded = Recorded::default();
                    for (index, time, keys) in keys {
                        dedup.record(&txn, &mut recorded, index, time, keys.into_iter())?;
                    }
                    dedup.prune(&txn, &recorded)?;
                    txn.commit()?;
                    Ok(recorded)
                })
                .await;
                written.map(|recorded| {
                    self.dedup.committed(recorded);
                    self.metrics.dedup_keys.set(i64::try_from(self.dedup.len()).unwrap_or(i64::MAX));
                })
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(sto_err(ErrorSubject::Logs, ErrorVerb::Write, e))
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> StorageResult<()> {
        tracing::debug!(%log_id, "truncating raft log");
        self.delete_entries((Bound::Included(log_id.index), Bound::Unbounded), None, true)
            .await
            .map_err(|e| sto_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> StorageResult<()> {
        tracing::debug!(%log_id, "purging raft log");
        self.delete_entries((Bound::Unbounded, Bound::Included(log_id.index)), Some(log_id), false)
            .await
            .map_err(|e| sto_err(ErrorSubject::Logs, ErrorVerb::Delete, e))
    }
}
