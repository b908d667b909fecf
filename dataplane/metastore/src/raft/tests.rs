//! openraft's storage conformance suite, run against the redb stores.

use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};
use tempfile::TempDir;

use std::sync::Arc;

use super::{DedupKeys, LogStore, StateMachineStore, TypeConfig, open_database};
use crate::metrics::StorageMetrics;

struct RedbBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for RedbBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<u64>> {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = open_database(dir.path()).unwrap();
        let metrics = StorageMetrics::new().unwrap();
        let keys = Arc::new(DedupKeys::open(&db, crate::fsm::DEDUP_WINDOW_MS).unwrap());
        let state_machine = StateMachineStore::open(db.clone(), metrics.clone(), Arc::clone(&keys)).unwrap();
        Ok((dir, LogStore::new(db, metrics, keys), state_machine))
    }
}

#[test]
fn redb_stores_pass_the_openraft_storage_suite() {
    Suite::test_all(RedbBuilder).unwrap();
}

mod upgrade {
    use bytes::Bytes;
    use openraft::storage::RaftStateMachine as _;
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader as _, RaftSnapshotBuilder as _};
    use phlox_proto::metastore::v1::{AddBlockRequest, BlockMeta, Dataset, QueryBlocksRequest};
    use prost::Message as _;
    use redb::ReadableDatabase as _;

    use super::super::state_machine::snapshot_path;
    use super::super::store::{LOGS, SNAPSHOT, SNAPSHOT_DATA_KEY, SNAPSHOT_META_KEY};
    use super::*;
    use crate::fsm::{Command, MetastoreState};

    fn add_block(n: u64, keys: &[u8]) -> AddBlockRequest {
        let time = 1_700_000_000_000 + n as i64 * 1000;
        AddBlockRequest {
            block: Some(BlockMeta {
                format_version: 1,
                id: ulid::Ulid::from_parts(time as u64, u128::from(n)).to_string(),
                shard: 1,
                min_time: time,
                max_time: time + 10,
                datasets: vec![Dataset {
                    tenant: "t".into(),
                    name: "api".into(),
                    min_time: time,
                    max_time: time + 10,
                    ..Default::default()
                }],
                ..Default::default()
            }),
            dataset_keys: vec![Bytes::from(keys.iter().flat_map(|k| [*k; 16]).collect::<Vec<u8>>())],
        }
    }

    fn all_blocks(state: &MetastoreState) -> Vec<String> {
        let request =
            QueryBlocksRequest { tenants: vec!["t".into()], start: 0, end: i64::MAX, matchers: vec![], rollups: false };
        state.query(&request).unwrap().into_iter().map(|b| b.id).collect()
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A data directory as Phlox wrote it before the binary format: the
    /// snapshot as JSON in redb with the dedup index in the state, log
    /// entries as JSON (the entry after the snapshot spelled out as the old
    /// version wrote it), opened by this version: same state, the dedup keys
    /// move beside the log, and the next snapshot is a binary file without
    /// them.
    #[tokio::test]
    async fn a_store_of_the_json_format_opens_and_moves_to_the_binary_one() {
        let dir = tempfile::tempdir().unwrap();
        // Blocks 1 and 2 are in the old snapshot (keys 1, 2, 3 in its dedup
        // index); block 3 is in the log after it and repeats key 2: applied
        // as the old version did, with the snapshot's dedup index.
        let mut old = MetastoreState::with_legacy_dedup(crate::fsm::DEDUP_WINDOW_MS);
        old.apply(Command::AddBlock { request: add_block(1, &[1, 2]), decided: false });
        old.apply(Command::AddBlock { request: add_block(2, &[3]), decided: false });
        let snapshot_json = serde_json::to_vec(&old).unwrap();
        assert!(snapshot_json.starts_with(b"{\"version\":1,\"blocks\":[\""), "the old JSON layout");
        let log_id = |index: u64| LogId::new(CommittedLeaderId::new(1, 1), index);
        let meta = openraft::SnapshotMeta::<u64, openraft::BasicNode> {
            last_log_id: Some(log_id(2)),
            last_membership: Default::default(),
            snapshot_id: "1-2-0".into(),
        };
        let entry3 = format!(
            r#"{{"log_id":{{"leader_id":{{"term":1,"node_id":1}},"index":3}},"payload":{{"Normal":{{"AddBlock":{{"request":"{}"}}}}}}}}"#,
            hex(&add_block(3, &[2, 4]).encode_to_vec())
        );
        {
            let (db, _) = open_database(dir.path()).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut table = txn.open_table(SNAPSHOT).unwrap();
                table.insert(SNAPSHOT_META_KEY, serde_json::to_vec(&meta).unwrap().as_slice()).unwrap();
                table.insert(SNAPSHOT_DATA_KEY, snapshot_json.as_slice()).unwrap();
                txn.open_table(LOGS).unwrap().insert(3, entry3.as_bytes()).unwrap();
            }
            txn.commit().unwrap();
        }

        let (db, _) = open_database(dir.path()).unwrap();
        let metrics = StorageMetrics::new().unwrap();
        let keys = Arc::new(DedupKeys::open(&db, crate::fsm::DEDUP_WINDOW_MS).unwrap());
        let mut sm = StateMachineStore::open(db.clone(), metrics.clone(), Arc::clone(&keys)).unwrap();
        sm.migrate_dedup_keys().unwrap();
        // The old snapshot's keys (1, 2, 3) and the old log entry's (2, 4)
        // are this node's dedup keys now.
        assert_eq!(keys.len(), 5);
        let wanted: Vec<[u8; 16]> = [1u8, 2, 3, 4, 9].iter().map(|k| [*k; 16]).collect();
        assert_eq!(keys.held(&db, &wanted).unwrap().len(), 4, "all but key 9");
        let mut log = LogStore::new(db.clone(), metrics, Arc::clone(&keys));
        let entries: Vec<Entry<TypeConfig>> = log.try_get_log_entries(3..4).await.unwrap();
        assert_eq!(entries.len(), 1);
        let responses = sm.apply(entries).await.unwrap();
        assert_eq!(responses, vec![crate::fsm::Response::AddBlock { added: true, shadowed_profiles: 1 }]);
        let expected: Vec<String> = (1..=3).map(|n| add_block(n, &[]).block.unwrap().id).collect();
        let state = sm.shared().read().unwrap().state.clone();
        assert_eq!(all_blocks(&state), expected);
        assert_eq!(state.block(&expected[2]).unwrap().datasets[0].shadowed_keys, Bytes::from(vec![2u8; 16]));
        {
            let txn = db.begin_read().unwrap();
            assert!(txn.open_table(SNAPSHOT).unwrap().get(SNAPSHOT_DATA_KEY).unwrap().is_none(), "moved to a file");
        }

        // New entries are binary; a new snapshot is a binary file.
        let entry4 = Entry::<TypeConfig> {
            log_id: log_id(4),
            payload: EntryPayload::Normal(Command::AddBlock { request: add_block(4, &[5]), decided: true }),
        };
        let encoded = crate::fsm::encode_stored_vec(&entry4).unwrap();
        assert_eq!(encoded[0], crate::fsm::BINARY_V1);
        let back: Entry<TypeConfig> = crate::fsm::decode_stored(&encoded).unwrap();
        assert_eq!(back.log_id, entry4.log_id);
        sm.apply([entry4]).await.unwrap();
        let snapshot = sm.get_snapshot_builder().await.build_snapshot().await.unwrap();
        let file = snapshot_path(&db, &snapshot.meta.snapshot_id);
        let bytes = std::fs::read(&file).unwrap();
        assert_eq!(bytes[0], crate::fsm::BINARY_V1);
        let files = std::fs::read_dir(db.snapshot_dir()).unwrap().count();
        assert_eq!(files, 1, "the old snapshot file is removed");
        drop((sm, log));
        drop(db);

        drop(keys);
        let (db, _) = open_database(dir.path()).unwrap();
        let keys = Arc::new(DedupKeys::open(&db, crate::fsm::DEDUP_WINDOW_MS).unwrap());
        let sm = StateMachineStore::open(db.clone(), StorageMetrics::new().unwrap(), Arc::clone(&keys)).unwrap();
        let reopened = sm.shared().read().unwrap().state.clone();
        let mut expected = expected;
        expected.push(add_block(4, &[]).block.unwrap().id);
        assert_eq!(all_blocks(&reopened), expected);
        // The binary snapshot holds no keys; the node's keys are where they were.
        assert!(reopened.legacy_dedup_entries().is_empty());
        sm.migrate_dedup_keys().unwrap();
        assert_eq!(keys.len(), 5);
    }
}
