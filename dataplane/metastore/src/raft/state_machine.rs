//! The Raft state machine: [`MetastoreState`] in memory, snapshots in redb.
//!
//! Apply does not persist anything; the last snapshot plus the committed log
//! after it rebuild the state at restart (openraft replays entries up to the
//! saved committed pointer).

use std::io::Cursor;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftSnapshotBuilder,
    Snapshot, SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use prometheus::IntGauge;
use redb::{Database, Durability, ReadableDatabase as _};

use super::TypeConfig;
use super::store::{Db, SNAPSHOT, SNAPSHOT_DATA_KEY, SNAPSHOT_META_KEY, StoreError, blocking};
use crate::fsm::{MetastoreState, Response};

type StorageResult<T> = Result<T, StorageError<u64>>;
type Meta = SnapshotMeta<u64, BasicNode>;

/// What the state machine has applied; shared with the read path.
#[derive(Debug, Default)]
pub(crate) struct AppliedState {
    pub(crate) last_applied: Option<LogId<u64>>,
    pub(crate) membership: StoredMembership<u64, BasicNode>,
    pub(crate) state: MetastoreState,
}

/// Shared, lock-protected applied state. The lock is never held across an
/// await.
pub(crate) type SharedState = Arc<RwLock<AppliedState>>;

fn read_lock(shared: &SharedState) -> std::sync::RwLockReadGuard<'_, AppliedState> {
    // A panic while holding the lock leaves a state we still want to read.
    shared.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write_lock(shared: &SharedState) -> std::sync::RwLockWriteGuard<'_, AppliedState> {
    shared.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn read_state<T>(shared: &SharedState, f: impl FnOnce(&AppliedState) -> T) -> T {
    f(&read_lock(shared))
}

fn snapshot_err(meta: Option<&Meta>, verb: ErrorVerb, e: StoreError) -> StorageError<u64> {
    let subject = match meta {
        Some(m) => ErrorSubject::Snapshot(Some(m.signature())),
        None => ErrorSubject::Snapshot(None),
    };
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

/// Loads the persisted snapshot, if any.
fn load_snapshot(db: &Database) -> Result<Option<(Meta, Vec<u8>)>, StoreError> {
    let txn = db.begin_read()?;
    let table = txn.open_table(SNAPSHOT)?;
    let (Some(meta), Some(data)) = (table.get(SNAPSHOT_META_KEY)?, table.get(SNAPSHOT_DATA_KEY)?) else {
        return Ok(None);
    };
    Ok(Some((serde_json::from_slice(meta.value())?, data.value().to_vec())))
}

/// Persists a snapshot durably, replacing the previous one.
async fn save_snapshot(db: &Arc<Db>, meta: &Meta, data: Vec<u8>) -> Result<(), StoreError> {
    let meta = serde_json::to_vec(meta)?;
    blocking(db, move |db| {
        let mut txn = db.begin_write()?;
        txn.set_durability(Durability::Immediate)?;
        {
            let mut table = txn.open_table(SNAPSHOT)?;
            table.insert(SNAPSHOT_META_KEY, meta.as_slice())?;
            table.insert(SNAPSHOT_DATA_KEY, data.as_slice())?;
        }
        txn.commit()?;
        Ok(())
    })
    .await
}

/// The openraft state machine.
#[derive(Debug)]
pub(crate) struct StateMachineStore {
    db: Arc<Db>,
    shared: SharedState,
    blocks: IntGauge,
    snapshot_seq: Arc<AtomicU64>,
}

impl StateMachineStore {
    /// Opens the state machine, restoring the last snapshot from `db`.
    pub(crate) fn open(db: Arc<Db>, blocks: IntGauge) -> Result<Self, StoreError> {
        let mut applied = AppliedState::default();
        if let Some((meta, data)) = load_snapshot(&db)? {
            applied.state = serde_json::from_slice(&data)?;
            applied.last_applied = meta.last_log_id;
            applied.membership = meta.last_membership;
            tracing::info!(
                snapshot_id = %meta.snapshot_id,
                blocks = applied.state.block_count(),
                "restored metastore snapshot"
            );
        }
        blocks.set(gauge_value(applied.state.block_count()));
        Ok(Self { db, shared: Arc::new(RwLock::new(applied)), blocks, snapshot_seq: Arc::new(AtomicU64::new(0)) })
    }

    /// The state as applied, for the read path.
    pub(crate) fn shared(&self) -> SharedState {
        Arc::clone(&self.shared)
    }
}

fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Builds snapshots from the shared state.
#[derive(Debug)]
pub(crate) struct SnapshotBuilder {
    db: Arc<Db>,
    shared: SharedState,
    snapshot_seq: Arc<AtomicU64>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        // Serialize under the read lock so that data and last_applied agree.
        let (last_applied, membership, data) = {
            let applied = read_lock(&self.shared);
            let data =
                serde_json::to_vec(&applied.state).map_err(|e| snapshot_err(None, ErrorVerb::Write, e.into()))?;
            (applied.last_applied, applied.membership.clone(), data)
        };
        let seq = self.snapshot_seq.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match last_applied {
            Some(id) => format!("{}-{}-{seq}", id.leader_id, id.index),
            None => format!("none-{seq}"),
        };
        let meta = Meta { last_log_id: last_applied, last_membership: membership, snapshot_id };
        save_snapshot(&self.db, &meta, data.clone())
            .await
            .map_err(|e| snapshot_err(Some(&meta), ErrorVerb::Write, e))?;
        tracing::info!(snapshot_id = %meta.snapshot_id, bytes = data.len(), "built metastore snapshot");
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> StorageResult<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>)> {
        let applied = read_lock(&self.shared);
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Response>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut applied = write_lock(&self.shared);
        let responses = entries
            .into_iter()
            .map(|entry| {
                applied.last_applied = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Blank => Response::Empty,
                    EntryPayload::Normal(command) => applied.state.apply(command),
                    EntryPayload::Membership(membership) => {
                        applied.membership = StoredMembership::new(Some(entry.log_id), membership);
                        Response::Empty
                    }
                }
            })
            .collect();
        self.blocks.set(gauge_value(applied.state.block_count()));
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            db: Arc::clone(&self.db),
            shared: Arc::clone(&self.shared),
            snapshot_seq: Arc::clone(&self.snapshot_seq),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(&mut self, meta: &Meta, snapshot: Box<Cursor<Vec<u8>>>) -> StorageResult<()> {
        let data = snapshot.into_inner();
        let state: MetastoreState =
            serde_json::from_slice(&data).map_err(|e| snapshot_err(Some(meta), ErrorVerb::Read, e.into()))?;
        save_snapshot(&self.db, meta, data).await.map_err(|e| snapshot_err(Some(meta), ErrorVerb::Write, e))?;
        let mut applied = write_lock(&self.shared);
        applied.last_applied = meta.last_log_id;
        applied.membership = meta.last_membership.clone();
        applied.state = state;
        self.blocks.set(gauge_value(applied.state.block_count()));
        tracing::info!(snapshot_id = %meta.snapshot_id, "installed metastore snapshot");
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let loaded = load_snapshot(&self.db).map_err(|e| snapshot_err(None, ErrorVerb::Read, e))?;
        Ok(loaded.map(|(meta, data)| Snapshot { meta, snapshot: Box::new(Cursor::new(data)) }))
    }
}
