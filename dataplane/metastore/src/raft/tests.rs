//! openraft's storage conformance suite, run against the redb stores.

use openraft::StorageError;
use openraft::testing::{StoreBuilder, Suite};
use prometheus::IntGauge;
use tempfile::TempDir;

use super::{LogStore, StateMachineStore, TypeConfig, open_database};

struct RedbBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for RedbBuilder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<u64>> {
        let dir = tempfile::tempdir().unwrap();
        let (db, _) = open_database(dir.path()).unwrap();
        let blocks = IntGauge::new("blocks", "blocks").unwrap();
        let state_machine = StateMachineStore::open(db.clone(), blocks).unwrap();
        Ok((dir, LogStore::new(db), state_machine))
    }
}

#[test]
fn redb_stores_pass_the_openraft_storage_suite() {
    Suite::test_all(RedbBuilder).unwrap();
}
