use bytes::Bytes;
use phlox_proto::metastore::v1::{AddBlockRequest, BlockMeta, Dataset, LabelMatcher, MatchType, QueryBlocksRequest};
use ulid::Ulid;

use super::*;

const HOUR: i64 = PARTITION_MS;

fn id(n: u64) -> String {
    Ulid::from_parts(1_700_000_000_000 + n, u128::from(n)).to_string()
}

fn dataset(tenant: &str, service: &str, min: i64, max: i64, types: &[&str]) -> Dataset {
    Dataset {
        tenant: tenant.into(),
        name: service.into(),
        min_time: min,
        max_time: max,
        profile_types: types.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    }
}

fn segment(n: u64, datasets: Vec<Dataset>) -> BlockMeta {
    BlockMeta {
        id: id(n),
        shard: 1,
        min_time: datasets.iter().map(|d| d.min_time).min().unwrap_or(0),
        max_time: datasets.iter().map(|d| d.max_time).max().unwrap_or(0),
        datasets,
        ..Default::default()
    }
}

/// An AddBlock as an earlier version proposed it (dedup decided at apply).
fn add(state: &mut MetastoreState, block: BlockMeta, keys: Vec<Vec<u8>>) -> Response {
    state.apply(Command::AddBlock {
        request: AddBlockRequest { block: Some(block), dataset_keys: keys.into_iter().map(Bytes::from).collect() },
        decided: false,
    })
}

/// An AddBlock whose proposer set `shadowed` as each dataset's shadowed keys.
fn add_decided(state: &mut MetastoreState, mut block: BlockMeta, keys: Vec<Vec<u8>>, shadowed: &[&[u8]]) -> Response {
    for (ds, s) in block.datasets.iter_mut().zip(shadowed) {
        ds.shadowed_keys = Bytes::from(keys_of(s));
    }
    state.apply(Command::AddBlock {
        request: AddBlockRequest { block: Some(block), dataset_keys: keys.into_iter().map(Bytes::from).collect() },
        decided: true,
    })
}

fn keys_of(ns: &[u8]) -> Vec<u8> {
    keys(ns)
}

fn keys(ns: &[u8]) -> Vec<u8> {
    ns.iter().flat_map(|n| [*n; 16]).collect()
}

fn matcher(kind: MatchType, name: &str, value: &str) -> LabelMatcher {
    LabelMatcher { r#type: kind as i32, name: name.into(), value: value.into() }
}

fn query(
    state: &MetastoreState,
    tenants: &[&str],
    start: i64,
    end: i64,
    matchers: Vec<LabelMatcher>,
) -> Vec<(String, Vec<String>)> {
    let request = QueryBlocksRequest {
        tenants: tenants.iter().map(|t| t.to_string()).collect(),
        start,
        end,
        matchers,
        rollups: false,
    };
    state
        .query(&request)
        .unwrap()
        .into_iter()
        .map(|b| (b.id, b.datasets.into_iter().map(|d| format!("{}/{}", d.tenant, d.name)).collect()))
        .collect()
}

/// Three blocks: a two-tenant segment in hour 0, a segment spanning hours
/// 1..3, and a segment of tenant b only in hour 5.
fn fixture() -> MetastoreState {
    let mut state = MetastoreState::new();
    add(
        &mut state,
        segment(
            1,
            vec![
                dataset("a", "api", 10, 20, &["cpu", "alloc"]),
                dataset("a", "db", 15, 30, &["cpu"]),
                dataset("b", "api", 10, 40, &["wall"]),
            ],
        ),
        vec![],
    );
    add(&mut state, segment(2, vec![dataset("a", "api", HOUR + 5, 3 * HOUR + 5, &["cpu"])]), vec![]);
    add(&mut state, segment(3, vec![dataset("b", "web", 5 * HOUR, 5 * HOUR + 9, &["cpu"])]), vec![]);
    state
}

#[test]
fn add_block_is_idempotent_by_id() {
    let mut state = MetastoreState::new();
    let block = segment(1, vec![dataset("a", "api", 1, 2, &[])]);
    let first = add(&mut state, block.clone(), vec![keys(&[1])]);
    assert_eq!(first, Response::AddBlock { added: true, shadowed_profiles: 0 });
    let mut changed = block.clone();
    changed.datasets[0].name = "other".into();
    let again = add(&mut state, changed, vec![keys(&[1])]);
    assert_eq!(again, Response::AddBlock { added: false, shadowed_profiles: 0 });
    assert_eq!(state.block_count(), 1);
    assert_eq!(state.block(&block.id).unwrap(), block);
}

#[test]
fn invalid_add_block_requests_are_rejected_without_change() {
    let mut state = MetastoreState::new();
    let mut bad_id = segment(1, vec![dataset("a", "api", 1, 2, &[])]);
    bad_id.id = "nope".into();
    assert_eq!(
        add(&mut state, bad_id, vec![]),
        Response::Rejected(InvalidRequest::InvalidBlockId { id: "nope".into() })
    );
    let block = segment(2, vec![dataset("a", "api", 1, 2, &[])]);
    assert_eq!(
        add(&mut state, block.clone(), vec![vec![1; 15]]),
        Response::Rejected(InvalidRequest::DatasetKeyLength { index: 0, len: 15 })
    );
    assert_eq!(
        add(&mut state, block, vec![keys(&[1]), keys(&[2])]),
        Response::Rejected(InvalidRequest::DatasetKeyCount { datasets: 1, keys: 2 })
    );
    assert_eq!(
        add(&mut state, segment(3, vec![dataset("", "api", 1, 2, &[])]), vec![]),
        Response::Rejected(InvalidRequest::DatasetWithoutTenant { index: 0 })
    );
    assert_eq!(
        state.apply(Command::AddBlock { request: AddBlockRequest::default(), decided: true }),
        Response::Rejected(InvalidRequest::MissingBlock)
    );
    assert_eq!(state, MetastoreState::new());
}

#[test]
fn query_returns_overlapping_blocks_of_the_tenants_with_their_datasets_only() {
    let state = fixture();
    assert_eq!(query(&state, &["a"], 0, 12, vec![]), vec![(id(1), vec!["a/api".into()])]);
    assert_eq!(
        query(&state, &["a"], 0, 4 * HOUR, vec![]),
        vec![(id(1), vec!["a/api".into(), "a/db".into()]), (id(2), vec!["a/api".into()])]
    );
    // Hour 2 lies inside block 2's range though block 2 starts in hour 1.
    assert_eq!(query(&state, &["a"], 2 * HOUR, 2 * HOUR + 1, vec![]), vec![(id(2), vec!["a/api".into()])]);
    assert_eq!(
        query(&state, &["b", "a"], 35, 5 * HOUR, vec![]),
        vec![(id(1), vec!["b/api".into()]), (id(2), vec!["a/api".into()]), (id(3), vec!["b/web".into()])]
    );
    assert!(query(&state, &["c"], 0, 9 * HOUR, vec![]).is_empty());
    assert!(query(&state, &["a"], 31, HOUR, vec![]).is_empty());
}

#[test]
fn query_applies_service_name_matchers_of_every_type() {
    let state = fixture();
    let all = |m| query(&state, &["a", "b"], 0, 9 * HOUR, vec![m]);
    assert_eq!(
        all(matcher(MatchType::Equal, SERVICE_NAME_LABEL, "api")),
        vec![(id(1), vec!["a/api".into(), "b/api".into()]), (id(2), vec!["a/api".into()])]
    );
    assert_eq!(
        all(matcher(MatchType::NotEqual, SERVICE_NAME_LABEL, "api")),
        vec![(id(1), vec!["a/db".into()]), (id(3), vec!["b/web".into()])]
    );
    // Anchored: "ap" alone matches nothing, "ap.*|we.*" matches api and web.
    assert!(all(matcher(MatchType::Regex, SERVICE_NAME_LABEL, "ap")).is_empty());
    assert_eq!(
        all(matcher(MatchType::Regex, SERVICE_NAME_LABEL, "ap.*|we.")),
        vec![
            (id(1), vec!["a/api".into(), "b/api".into()]),
            (id(2), vec!["a/api".into()]),
            (id(3), vec!["b/web".into()])
        ]
    );
    assert_eq!(all(matcher(MatchType::NotRegex, SERVICE_NAME_LABEL, "a.*|w.*")), vec![(id(1), vec!["a/db".into()])]);
    // Matchers on other labels are ignored.
    assert_eq!(all(matcher(MatchType::Equal, "pod", "x")).len(), 3);
}

#[test]
fn query_matches_any_profile_type_of_a_dataset() {
    let state = fixture();
    let q = |ms| query(&state, &["a", "b"], 0, 9 * HOUR, ms);
    assert_eq!(q(vec![matcher(MatchType::Equal, PROFILE_TYPE_LABEL, "alloc")]), vec![(id(1), vec!["a/api".into()])]);
    assert_eq!(
        q(vec![
            matcher(MatchType::Regex, PROFILE_TYPE_LABEL, "cpu|wall"),
            matcher(MatchType::Equal, SERVICE_NAME_LABEL, "api"),
        ]),
        vec![(id(1), vec!["a/api".into(), "b/api".into()]), (id(2), vec!["a/api".into()])]
    );
    assert_eq!(
        q(vec![matcher(MatchType::NotEqual, PROFILE_TYPE_LABEL, "cpu")]),
        vec![(id(1), vec!["a/api".into(), "b/api".into()])]
    );
}

#[test]
fn invalid_queries_are_rejected() {
    let state = fixture();
    let mut request = QueryBlocksRequest {
        tenants: vec!["a".into()],
        start: 0,
        end: 10,
        matchers: vec![matcher(MatchType::Regex, SERVICE_NAME_LABEL, "(")],
        rollups: false,
    };
    assert!(matches!(state.query(&request), Err(InvalidRequest::InvalidRegex { .. })));
    request.matchers = vec![LabelMatcher { r#type: 42, name: SERVICE_NAME_LABEL.into(), value: String::new() }];
    assert_eq!(state.query(&request), Err(InvalidRequest::UnknownMatchType(42)));
    request.matchers.clear();
    request.start = 11;
    assert_eq!(state.query(&request), Err(InvalidRequest::InvalidQueryRange { start: 11, end: 10 }));
}

#[test]
fn the_proposers_shadowed_keys_are_kept_and_their_rows_counted() {
    let mut state = MetastoreState::new();
    let first = segment(1, vec![dataset("a", "api", 0, 10, &[]), dataset("b", "api", 0, 10, &[])]);
    assert_eq!(
        add_decided(&mut state, first, vec![keys(&[1, 2]), keys(&[3, 3])], &[&[], &[]]),
        Response::AddBlock { added: true, shadowed_profiles: 0 }
    );
    // Dataset b's key 3 twice: both rows are the shadowed key's.
    let retry = segment(2, vec![dataset("a", "api", 5, 20, &[]), dataset("b", "api", 5, 20, &[])]);
    assert_eq!(
        add_decided(&mut state, retry.clone(), vec![keys(&[2, 4]), keys(&[3, 3, 1])], &[&[2], &[1, 3]]),
        Response::AddBlock { added: true, shadowed_profiles: 4 }
    );
    let stored = state.block(&retry.id).unwrap();
    assert_eq!(stored.datasets[0].shadowed_keys, Bytes::from(keys(&[2])));
    assert_eq!(stored.datasets[1].shadowed_keys, Bytes::from(keys(&[1, 3])));
    // A decided entry with a partial key is refused; a compacted block's
    // metadata is kept as written.
    let mut bad = segment(3, vec![dataset("a", "api", 5, 20, &[])]);
    bad.datasets[0].shadowed_keys = Bytes::from_static(&[1, 2, 3]);
    assert_eq!(
        state.apply(Command::AddBlock {
            request: AddBlockRequest { block: Some(bad), dataset_keys: vec![] },
            decided: true
        }),
        Response::Rejected(InvalidRequest::DatasetKeyLength { index: 0, len: 3 })
    );
    let mut compacted = segment(4, vec![dataset("a", "api", 0, 0, &[])]);
    (compacted.compaction_level, compacted.tenant) = (1, "a".into());
    assert_eq!(
        add_decided(&mut state, compacted, vec![keys(&[1])], &[&[1]]),
        Response::AddBlock { added: true, shadowed_profiles: 0 }
    );
    assert_eq!(state.block(&id(4)).unwrap().datasets[0].shadowed_keys, Bytes::from(keys(&[1])));
    // Without a legacy index, an undecided entry shadows nothing.
    assert_eq!(
        add(&mut state, segment(5, vec![dataset("a", "api", 0, 0, &[])]), vec![keys(&[1])]),
        Response::AddBlock { added: true, shadowed_profiles: 0 }
    );
}

#[test]
fn entries_of_the_earlier_version_are_decided_with_the_legacy_index() {
    let mut state = MetastoreState::with_legacy_dedup(HOUR);
    let first = segment(1, vec![dataset("a", "api", 0, 10, &[]), dataset("b", "api", 0, 10, &[])]);
    // Key 3 twice within one block: the writer's business, never shadowed by itself.
    assert_eq!(
        add(&mut state, first, vec![keys(&[1, 2]), keys(&[3, 3])]),
        Response::AddBlock { added: true, shadowed_profiles: 0 }
    );
    let retry = segment(2, vec![dataset("a", "api", 5, 20, &[]), dataset("b", "api", 5, 20, &[])]);
    assert_eq!(
        add(&mut state, retry.clone(), vec![keys(&[2, 4]), keys(&[3, 1])]),
        Response::AddBlock { added: true, shadowed_profiles: 3 }
    );
    let stored = state.block(&retry.id).unwrap();
    assert_eq!(stored.datasets[0].shadowed_keys, Bytes::from(keys(&[2])));
    assert_eq!(stored.datasets[1].shadowed_keys, Bytes::from(keys(&[1, 3])));
    assert!(state.block(&id(1)).unwrap().datasets.iter().all(|d| d.shadowed_keys.is_empty()));
    // Query results carry the shadowed keys too.
    let found = state
        .query(&QueryBlocksRequest { tenants: vec!["a".into()], start: 15, end: 15, matchers: vec![], rollups: false })
        .unwrap();
    assert_eq!(found[0].datasets[0].shadowed_keys, Bytes::from(keys(&[2])));
}

#[test]
fn legacy_dedup_keys_expire_after_the_window_of_block_time() {
    let mut state = MetastoreState::with_legacy_dedup(HOUR);
    add(&mut state, segment(1, vec![dataset("a", "api", 0, 0, &[])]), vec![keys(&[1])]);
    add(&mut state, segment(2, vec![dataset("a", "api", HOUR, HOUR, &[])]), vec![keys(&[2])]);
    assert_eq!(state.legacy_dedup_entries().len(), 2);
    add(&mut state, segment(3, vec![dataset("a", "api", HOUR + 1, HOUR + 1, &[])]), vec![keys(&[3])]);
    assert_eq!(state.legacy_dedup_entries().len(), 2);
    assert_eq!(
        add(&mut state, segment(4, vec![dataset("a", "api", HOUR + 2, HOUR + 2, &[])]), vec![keys(&[1, 2])]),
        Response::AddBlock { added: true, shadowed_profiles: 1 }
    );
}

#[test]
fn compacted_blocks_do_not_take_part_in_dedup() {
    let mut state = MetastoreState::new();
    add(&mut state, segment(1, vec![dataset("a", "api", 0, 0, &[])]), vec![keys(&[1])]);
    let mut compacted = segment(2, vec![dataset("a", "api", 0, 0, &[])]);
    compacted.compaction_level = 1;
    compacted.tenant = "a".into();
    assert_eq!(add(&mut state, compacted, vec![keys(&[1])]), Response::AddBlock { added: true, shadowed_profiles: 0 });
}

#[test]
fn deleted_blocks_become_tombstones_and_cannot_come_back() {
    let mut state = fixture();
    let response = state.apply(Command::DeleteBlocks { ids: vec![id(1), id(9)], now_ms: 77 });
    assert_eq!(response, Response::BlocksDeleted { deleted: 1 });
    assert_eq!(state.block_count(), 2);
    assert!(query(&state, &["a", "b"], 0, 50, vec![]).is_empty());
    let key = format!("segments/0001/{}.block", id(1));
    assert_eq!(
        state.tombstones(),
        vec![Tombstone { key: key.clone(), block_id: id(1), tenant: String::new(), deleted_at_ms: 77 }]
    );
    let again = add(&mut state, segment(1, vec![dataset("a", "api", 10, 20, &[])]), vec![]);
    assert_eq!(again, Response::AddBlock { added: false, shadowed_profiles: 0 });
    assert_eq!(
        state.apply(Command::RemoveTombstones { keys: vec![key, "x".into()] }),
        Response::TombstonesRemoved { removed: 1 }
    );
    assert!(state.tombstones().is_empty());
    assert_eq!(
        state.apply(Command::DeleteBlocks { ids: vec!["bad".into()], now_ms: 1 }),
        Response::Rejected(InvalidRequest::InvalidBlockId { id: "bad".into() })
    );
}

#[test]
fn snapshot_round_trip_restores_an_equal_state() {
    let mut state = fixture();
    add_decided(&mut state, segment(4, vec![dataset("a", "api", 0, 5, &[])]), vec![keys(&[7, 8])], &[&[]]);
    add_decided(&mut state, segment(5, vec![dataset("a", "api", 1, 6, &[])]), vec![keys(&[8])], &[&[8]]);
    state.apply(Command::Heartbeat { id: "w1".into(), address: "h:1".into(), now_ms: 5, draining: false });
    state.apply(Command::DeleteBlocks { ids: vec![id(3)], now_ms: 6 });
    let json = serde_json::to_vec(&state).unwrap();
    let restored: MetastoreState = serde_json::from_slice(&json).unwrap();
    assert_eq!(restored, state);
    assert_eq!(restored.block(&id(5)).unwrap().datasets[0].shadowed_keys, Bytes::from(keys(&[8])));
    assert_eq!(query(&restored, &["a", "b"], 0, 9 * HOUR, vec![]), query(&state, &["a", "b"], 0, 9 * HOUR, vec![]));
    // The stored (binary) form too; it holds no dedup key (keys 7 and 8 are
    // in the log entries, not in the state): the one shadowed key, once.
    let binary = super::encode_stored_vec(&state).unwrap();
    let restored: MetastoreState = super::decode_stored(&binary).unwrap();
    assert_eq!(restored, state);
    assert_eq!(binary.windows(16).filter(|w| *w == [7u8; 16]).count(), 0);
    assert_eq!(binary.windows(16).filter(|w| *w == [8u8; 16]).count(), 1);
}

#[test]
fn commands_round_trip_through_json() {
    let command = Command::AddBlock {
        request: AddBlockRequest {
            block: Some(segment(1, vec![dataset("a", "api", 1, 2, &["cpu"])])),
            dataset_keys: vec![Bytes::from(keys(&[1]))],
        },
        decided: true,
    };
    let binary = super::encode_stored_vec(&command).unwrap();
    assert_eq!(super::decode_stored::<Command>(&binary).unwrap(), command);
    let json = serde_json::to_string(&command).unwrap();
    assert_eq!(serde_json::from_str::<Command>(&json).unwrap(), command);
}

mod compaction_jobs {
    use super::*;
    use phlox_proto::metastore::v1::PollCompactionJobResponse;

    fn poll(state: &mut MetastoreState, worker: &str, now_ms: i64, min: u32) -> PollCompactionJobResponse {
        let policy = CompactionPolicy { min_blocks: vec![min, 2, 2], max_age_ms: vec![i64::MAX, i64::MAX, i64::MAX] };
        match state.apply(Command::PollCompactionJob { worker: worker.into(), now_ms, lease_ms: 1000, policy }) {
            Response::CompactionJob(r) => r,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn compacted(n: u64, tenant: &str, level: u32) -> BlockMeta {
        BlockMeta {
            id: id(n),
            tenant: tenant.into(),
            compaction_level: level,
            min_time: 10,
            max_time: 40,
            datasets: vec![dataset("", "api", 10, 40, &["cpu"])],
            ..Default::default()
        }
    }

    fn complete(state: &mut MetastoreState, job: &str, token: u64, block: BlockMeta) -> Response {
        state.apply(Command::CompleteCompactionJob { id: job.into(), token, block, now_ms: 99, no_output: false })
    }

    #[test]
    fn jobs_are_planned_per_tenant_leased_fenced_and_swapped() {
        let mut state = MetastoreState::new();
        // Two segments shared by tenants a and b, one of a only.
        add(
            &mut state,
            segment(1, vec![dataset("a", "api", 10, 20, &["cpu"]), dataset("b", "api", 10, 20, &["cpu"])]),
            vec![],
        );
        add(
            &mut state,
            segment(2, vec![dataset("a", "db", 15, 30, &["cpu"]), dataset("b", "api", 20, 30, &["cpu"])]),
            vec![],
        );
        add(&mut state, segment(3, vec![dataset("a", "api", 30, 40, &["cpu"])]), vec![]);
        // Fewer blocks than the policy wants: nothing.
        assert!(poll(&mut state, "w1", 50, 4).job.is_none());
        // Tenant a has 3 level-0 blocks, b has 2: with min 2, a job each.
        let first = poll(&mut state, "w1", 50, 2).job.unwrap();
        let second = poll(&mut state, "w2", 50, 2).job.unwrap();
        assert_eq!((first.token, second.token), (1, 2));
        let (a, b) = if first.tenant == "a" { (first, second) } else { (second, first) };
        assert_eq!((a.tenant.as_str(), a.level, b.tenant.as_str()), ("a", 0, "b"));
        assert_eq!(a.sources.iter().map(|s| s.id.clone()).collect::<Vec<_>>(), vec![id(1), id(2), id(3)]);
        assert!(a.sources.iter().all(|s| s.datasets.iter().all(|d| d.tenant == "a")), "only the tenant's datasets");
        assert_eq!(b.sources.len(), 2);
        assert!(poll(&mut state, "w3", 50, 2).job.is_none(), "both jobs are leased");
        // The leases expire; w3 takes a job with a new token; its old holder is fenced off.
        let again = poll(&mut state, "w3", 50 + 1000, 2).job.unwrap();
        assert_eq!(again.token, 3);
        let again_b = poll(&mut state, "w4", 50 + 1000, 2).job.unwrap();
        assert_eq!(again_b.token, 4);
        let (a_token, b_token) =
            if again.id == a.id { (again.token, again_b.token) } else { (again_b.token, again.token) };
        let a = phlox_proto::metastore::v1::CompactionJob { token: a_token, ..a };
        let b = phlox_proto::metastore::v1::CompactionJob { token: b_token, ..b };
        assert!(matches!(
            complete(&mut state, &a.id, 1, compacted(10, "a", 1)),
            Response::Rejected(InvalidRequest::StaleLease { .. })
        ));
        assert!(matches!(
            complete(&mut state, &a.id, 2, compacted(10, "a", 1)),
            Response::Rejected(InvalidRequest::StaleLease { .. })
        ));
        assert!(matches!(
            complete(&mut state, &a.id, a.token, compacted(10, "b", 1)),
            Response::Rejected(InvalidRequest::JobResultMismatch { .. })
        ));
        assert_eq!(complete(&mut state, &a.id, a.token, compacted(10, "a", 1)), Response::JobCompleted);
        // Tenant a now reads the compacted block only; b still reads its segments.
        assert_eq!(query(&state, &["a"], 0, HOUR, vec![]), vec![(id(10), vec!["/api".to_string()])]);
        assert_eq!(
            query(&state, &["b"], 0, HOUR, vec![]),
            vec![(id(1), vec!["b/api".to_string()]), (id(2), vec!["b/api".to_string()])]
        );
        // Segment 3 held only tenant a: tombstoned. 1 and 2 wait for b.
        let tombstoned: Vec<String> = state.tombstones().into_iter().map(|t| t.block_id).collect();
        assert_eq!(tombstoned, vec![id(3)]);
        assert_eq!(complete(&mut state, &b.id, b.token, compacted(11, "b", 1)), Response::JobCompleted);
        let mut tombstoned: Vec<String> = state.tombstones().into_iter().map(|t| t.block_id).collect();
        tombstoned.sort();
        assert_eq!(tombstoned, vec![id(1), id(2), id(3)]);
        assert!(matches!(
            complete(&mut state, &b.id, b.token, compacted(11, "b", 1)),
            Response::Rejected(InvalidRequest::UnknownJob { .. })
        ));
        // Jobs survive a snapshot.
        let mut state2 = MetastoreState::new();
        add(&mut state2, segment(4, vec![dataset("c", "x", 1, 2, &["cpu"])]), vec![]);
        add(&mut state2, segment(5, vec![dataset("c", "x", 1, 2, &["cpu"])]), vec![]);
        let job = poll(&mut state2, "w", 5, 2).job.unwrap();
        let restored: MetastoreState = serde_json::from_str(&serde_json::to_string(&state2).unwrap()).unwrap();
        assert_eq!(restored, state2);
        let mut restored = restored;
        assert!(poll(&mut restored, "w2", 6, 2).job.is_none(), "the lease survived");
        assert_eq!(job.sources.len(), 2);
    }

    #[test]
    fn an_old_lone_segment_is_split_out_by_age() {
        let mut state = MetastoreState::new();
        add(&mut state, segment(1, vec![dataset("a", "api", 10, 20, &["cpu"])]), vec![]);
        let policy = CompactionPolicy { min_blocks: vec![20, 10, 10], max_age_ms: vec![60_000, 600_000, 3_600_000] };
        let created = Ulid::from_string(&id(1)).unwrap().timestamp_ms() as i64;
        let early = state.apply(Command::PollCompactionJob {
            worker: "w".into(),
            now_ms: created + 1_000,
            lease_ms: 1000,
            policy: policy.clone(),
        });
        assert!(matches!(early, Response::CompactionJob(ref r) if r.job.is_none()));
        let late = state.apply(Command::PollCompactionJob {
            worker: "w".into(),
            now_ms: created + 61_000,
            lease_ms: 1000,
            policy,
        });
        assert!(matches!(late, Response::CompactionJob(ref r) if r.job.as_ref().is_some_and(|j| j.sources.len() == 1)));
    }
}

#[test]
fn retention_drops_expired_datasets_per_tenant_and_tombstones_empty_blocks() {
    let mut state = MetastoreState::new();
    // Tenant a: old and new datasets; tenant b: old only, longer retention.
    add(
        &mut state,
        segment(1, vec![dataset("a", "api", 10, 20, &["cpu"]), dataset("b", "api", 10, 20, &["cpu"])]),
        vec![],
    );
    add(&mut state, segment(2, vec![dataset("a", "db", 100, 200, &["cpu"])]), vec![]);
    add(&mut state, segment(3, vec![dataset("a", "api", 10, 20, &["cpu"])]), vec![]);
    let overrides = [("b".to_string(), 10_000i64)].into();
    let r = state.apply(Command::ApplyRetention { now_ms: 150, default_ms: 100, overrides });
    // cutoff a = 50: a/api of 1 and 3 go; b keeps (cutoff < 0).
    assert_eq!(r, Response::RetentionApplied { datasets: 2, blocks: 1 });
    assert_eq!(query(&state, &["a"], 0, HOUR, vec![]), vec![(id(2), vec!["a/db".to_string()])]);
    assert_eq!(query(&state, &["b"], 0, HOUR, vec![]), vec![(id(1), vec!["b/api".to_string()])]);
    assert_eq!(state.tombstones().into_iter().map(|t| t.block_id).collect::<Vec<_>>(), vec![id(3)]);
    // 0 keeps everything.
    let r = state.apply(Command::ApplyRetention { now_ms: 1_000_000, default_ms: 0, overrides: Default::default() });
    assert_eq!(r, Response::RetentionApplied { datasets: 0, blocks: 0 });
}

mod deletions {
    use super::*;
    use phlox_proto::metastore::v1::{CompactionJob, Deletion as DeletionProto};

    fn delete(state: &mut MetastoreState, tenant: &str, start: i64, end: i64, now_ms: i64) -> DeletionProto {
        match state.apply(Command::DeleteRange { tenant: tenant.into(), start_ms: start, end_ms: end, now_ms }) {
            Response::Deleted(d) => d,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn poll(state: &mut MetastoreState, worker: &str, now_ms: i64) -> Option<CompactionJob> {
        // Thresholds that never plan on their own: only deletions do.
        let policy = CompactionPolicy { min_blocks: vec![1000; 3], max_age_ms: vec![i64::MAX; 3] };
        match state.apply(Command::PollCompactionJob { worker: worker.into(), now_ms, lease_ms: 1000, policy }) {
            Response::CompactionJob(r) => r.job,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn rewritten(n: u64, tenant: &str, level: u32, min: i64, max: i64) -> BlockMeta {
        BlockMeta {
            id: id(n),
            tenant: tenant.into(),
            compaction_level: level,
            min_time: min,
            max_time: max,
            datasets: vec![dataset("", "api", min, max, &["cpu"])],
            ..Default::default()
        }
    }

    #[test]
    fn covered_datasets_leave_at_once_and_straddling_blocks_are_rewritten() {
        let mut state = MetastoreState::new();
        // Segment 1: a/api inside the range, b/api too (another tenant).
        add(
            &mut state,
            segment(1, vec![dataset("a", "api", 100, 200, &["cpu"]), dataset("b", "api", 100, 200, &["cpu"])]),
            vec![],
        );
        // Segment 2: a/api straddles the range's end.
        add(&mut state, segment(2, vec![dataset("a", "api", 250, 400, &["cpu"])]), vec![]);
        // Segment 3: a only, inside: tombstoned.
        add(&mut state, segment(3, vec![dataset("a", "db", 120, 130, &["cpu"])]), vec![]);
        // Segment 4: a, outside the range: untouched.
        add(&mut state, segment(4, vec![dataset("a", "api", 500, 600, &["cpu"])]), vec![]);

        let d = delete(&mut state, "a", 50, 300, 1_000);
        assert_eq!((d.datasets_removed, d.blocks_tombstoned, d.blocks_pending, d.done_at), (2, 1, 1, 0));
        assert_eq!(state.tombstones().into_iter().map(|t| t.block_id).collect::<Vec<_>>(), vec![id(3)]);
        assert_eq!(query(&state, &["b"], 0, HOUR, vec![]), vec![(id(1), vec!["b/api".to_string()])]);
        assert_eq!(
            query(&state, &["a"], 0, HOUR, vec![]),
            vec![(id(2), vec!["a/api".to_string()]), (id(4), vec!["a/api".to_string()])]
        );
        // Until the rewrite, query answers carry the range on the datasets
        // of a that it overlaps, so readers skip its rows.
        assert_eq!(deleted_ranges(&state, "a"), vec![(id(2), vec![(50, 300)]), (id(4), vec![])]);
        assert_eq!(deleted_ranges(&state, "b"), vec![(id(1), vec![])]);
        // Repeating the request is the same deletion.
        let again = delete(&mut state, "a", 50, 300, 1_001);
        assert_eq!((again.id.as_str(), again.blocks_pending), (d.id.as_str(), 1));

        // The pending block's group (a's level-0 blocks) gets a job at
        // once, excluding the range.
        let job = poll(&mut state, "w", 2_000).expect("a rewrite job");
        assert_eq!(job.sources.iter().map(|s| s.id.clone()).collect::<Vec<_>>(), vec![id(2), id(4)]);
        assert_eq!((job.tenant.as_str(), job.output_level), ("a", 1));
        assert_eq!(job.exclude.iter().map(|r| (r.start, r.end)).collect::<Vec<_>>(), vec![(50, 300)]);
        assert!(poll(&mut state, "w2", 2_000).is_none(), "nothing else to rewrite");
        assert_eq!(
            state.apply(Command::CompleteCompactionJob {
                id: job.id.clone(),
                token: job.token,
                block: rewritten(20, "a", 1, 301, 600),
                now_ms: 3_000,
                no_output: false,
            }),
            Response::JobCompleted
        );
        let listed = state.deletions("a");
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].done_ms, listed[0].pending.len()), (Some(3_000), 0));
        assert!(state.deletions("b").is_empty());
        assert_eq!(query(&state, &["a"], 0, HOUR, vec![]), vec![(id(20), vec!["/api".to_string()])]);
        assert_eq!(deleted_ranges(&state, "a"), vec![(id(20), vec![])], "done: nothing left to skip");
    }

    /// Per block of a query answer, the deleted ranges its datasets carry.
    fn deleted_ranges(state: &MetastoreState, tenant: &str) -> Vec<(String, Vec<(i64, i64)>)> {
        let request =
            QueryBlocksRequest { tenants: vec![tenant.into()], start: 0, end: HOUR, matchers: vec![], rollups: false };
        state
            .query(&request)
            .unwrap()
            .into_iter()
            .map(|b| (b.id, b.datasets.iter().flat_map(|d| d.deleted.iter().map(|r| (r.start, r.end))).collect()))
            .collect()
    }

    #[test]
    fn a_rewrite_that_leaves_nothing_swaps_the_sources_for_nothing() {
        let mut state = MetastoreState::new();
        add(&mut state, segment(1, vec![dataset("a", "api", 100, 400, &["cpu"])]), vec![]);
        // Without exclusions an empty result is refused.
        let d = delete(&mut state, "a", 150, 200, 1_000);
        assert_eq!(d.blocks_pending, 1);
        let job = poll(&mut state, "w", 2_000).unwrap();
        assert_eq!(
            state.apply(Command::CompleteCompactionJob {
                id: job.id.clone(),
                token: job.token,
                block: BlockMeta::default(),
                now_ms: 3_000,
                no_output: true,
            }),
            Response::JobCompleted
        );
        assert!(query(&state, &["a"], 0, HOUR, vec![]).is_empty());
        assert_eq!(state.tombstones().len(), 1);
        assert!(state.deletions("a")[0].done_ms.is_some());
    }

    #[test]
    fn a_job_leased_before_the_deletion_leaves_its_output_pending() {
        let mut state = MetastoreState::new();
        for n in 1..=2 {
            add(&mut state, segment(n, vec![dataset("a", "api", 100, 400, &["cpu"])]), vec![]);
        }
        let policy = CompactionPolicy { min_blocks: vec![2, 2, 2], max_age_ms: vec![i64::MAX; 3] };
        let Response::CompactionJob(r) =
            state.apply(Command::PollCompactionJob { worker: "w".into(), now_ms: 500, lease_ms: 10_000, policy })
        else {
            panic!("no job")
        };
        let old = r.job.unwrap();
        assert!(old.exclude.is_empty());
        let d = delete(&mut state, "a", 150, 200, 1_000);
        assert_eq!(d.blocks_pending, 2);
        // The old job completes with the range's rows still in its output.
        assert_eq!(
            state.apply(Command::CompleteCompactionJob {
                id: old.id.clone(),
                token: old.token,
                block: rewritten(30, "a", 1, 100, 400),
                now_ms: 2_000,
                no_output: false,
            }),
            Response::JobCompleted
        );
        let listed = state.deletions("a");
        assert_eq!(listed[0].pending.iter().cloned().collect::<Vec<_>>(), vec![id(30)]);
        // So the output is rewritten in turn; it stays at level 1 + 1.
        let job = poll(&mut state, "w", 3_000).unwrap();
        assert_eq!((job.sources[0].id.clone(), job.output_level), (id(30), 2));
        // Late data for the range, indexed while pending, is pending too.
        add(&mut state, segment(40, vec![dataset("a", "api", 160, 170, &["cpu"])]), vec![]);
        assert!(state.deletions("a")[0].pending.contains(&id(40)));
    }

    #[test]
    fn top_level_blocks_are_rewritten_in_place_and_state_survives_a_snapshot() {
        let mut state = MetastoreState::new();
        add(
            &mut state,
            BlockMeta {
                id: id(1),
                tenant: "a".into(),
                compaction_level: MAX_LEVEL,
                min_time: 100,
                max_time: 400,
                datasets: vec![dataset("", "api", 100, 400, &["cpu"])],
                ..Default::default()
            },
            vec![],
        );
        delete(&mut state, "a", 150, 200, 1_000);
        let json = serde_json::to_vec(&state).unwrap();
        let mut restored: MetastoreState = serde_json::from_slice(&json).unwrap();
        assert_eq!(restored, state);
        let job = poll(&mut restored, "w", 2_000).unwrap();
        assert_eq!((job.level, job.output_level, job.sources.len()), (MAX_LEVEL, MAX_LEVEL, 1));
        assert!(matches!(
            state.apply(Command::DeleteRange { tenant: "a".into(), start_ms: 1, end_ms: 2, now_ms: 3 }),
            Response::Deleted(d) if d.done_at == 3 && d.blocks_pending == 0
        ));
    }
}

mod rollups {
    use super::*;
    use phlox_proto::metastore::v1::CompactionJob;

    const DAY: i64 = 24 * HOUR;

    /// Every job a poll at `now_ms` hands out (thresholds that never plan
    /// a compaction: only rollups are planned).
    fn poll_all(state: &mut MetastoreState, now_ms: i64) -> Vec<CompactionJob> {
        let policy = CompactionPolicy { min_blocks: vec![1000; 3], max_age_ms: vec![i64::MAX; 3] };
        let mut jobs = Vec::new();
        loop {
            let command =
                Command::PollCompactionJob { worker: "w".into(), now_ms, lease_ms: 60_000, policy: policy.clone() };
            match state.apply(command) {
                Response::CompactionJob(r) => match r.job {
                    Some(j) => jobs.push(j),
                    None => return jobs,
                },
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    fn block(n: u64, level: u32, min: i64, max: i64) -> BlockMeta {
        BlockMeta {
            id: id(n),
            tenant: "a".into(),
            compaction_level: level,
            min_time: min,
            max_time: max,
            datasets: vec![dataset("", "api", min, max, &["cpu"])],
            ..Default::default()
        }
    }

    /// What a worker writes for a rollup job: the covers the job names.
    fn rollup_result(n: u64, job: &CompactionJob) -> BlockMeta {
        let all = job.rollup_covers.clone();
        let mut ds = dataset("", "api", job.rollup_start, job.rollup_end - 1, &["cpu"]);
        ds.rollup_covers = all.clone();
        BlockMeta {
            id: id(n),
            tenant: job.tenant.clone(),
            compaction_level: job.output_level,
            min_time: job.rollup_start,
            max_time: job.rollup_end - 1,
            rollup_start: job.rollup_start,
            rollup_end: job.rollup_end,
            rollup_step: job.rollup_step,
            rollup_covers: all,
            datasets: vec![ds],
            ..Default::default()
        }
    }

    fn complete(state: &mut MetastoreState, job: &CompactionJob, block: BlockMeta, now_ms: i64) {
        let r = state.apply(Command::CompleteCompactionJob {
            id: job.id.clone(),
            token: job.token,
            block,
            now_ms,
            no_output: false,
        });
        assert_eq!(r, Response::JobCompleted);
    }

    fn buckets(jobs: &[CompactionJob]) -> Vec<(i64, i64, Vec<String>)> {
        // (A settled day has two jobs, per hour and whole: listed once, as
        // `steps` checks.)
        let mut b: Vec<_> = jobs
            .iter()
            .map(|j| {
                let mut s: Vec<String> = j.sources.iter().map(|s| s.id.clone()).collect();
                s.sort();
                (j.rollup_start, j.rollup_end, s)
            })
            .collect();
        b.sort();
        b.dedup();
        b
    }

    fn steps(jobs: &[CompactionJob]) -> Vec<i64> {
        let mut s: Vec<i64> = jobs.iter().map(|j| j.rollup_step).collect();
        s.sort();
        s
    }

    fn rollups_of(state: &MetastoreState, start: i64, end: i64) -> Vec<(i64, i64)> {
        let req = QueryBlocksRequest { tenants: vec!["a".into()], start, end, matchers: vec![], rollups: true };
        state.query(&req).unwrap().iter().filter(|b| b.rollup_end > 0).map(|b| (b.rollup_start, b.rollup_end)).collect()
    }

    /// Two settled blocks in hour 0 and one spanning hours 0 and 1, rolled
    /// up per hour, then the day from the hours.
    fn rolled_up() -> MetastoreState {
        let mut state = MetastoreState::new();
        add(&mut state, block(1, 2, 0, HOUR / 2), vec![]);
        add(&mut state, block(2, 2, HOUR / 2 + 1, HOUR - 10), vec![]);
        add(&mut state, block(3, 3, HOUR - 5, HOUR + 100), vec![]);
        // Before the delay after the hour's end: nothing.
        assert!(poll_all(&mut state, HOUR + 60_000).is_empty());
        let jobs = poll_all(&mut state, 3 * HOUR);
        assert_eq!(
            buckets(&jobs),
            vec![(0, HOUR, vec![id(1), id(2), id(3)]), (HOUR, 2 * HOUR, vec![id(3)])],
            "one job per hour over the blocks holding its data"
        );
        for (k, j) in jobs.iter().enumerate() {
            complete(&mut state, j, rollup_result(10 + k as u64, j), 3 * HOUR);
        }
        // The day is not over: no day rollup yet; the hours are done.
        assert!(poll_all(&mut state, 3 * HOUR).is_empty());
        let jobs = poll_all(&mut state, DAY + HOUR);
        assert_eq!(buckets(&jobs), vec![(0, DAY, vec![id(1), id(2), id(3)])], "the day sums its raw rows");
        assert_eq!(steps(&jobs), vec![HOUR, DAY], "per hour and over the whole day");
        let mut jobs = jobs;
        jobs.sort_by_key(|j| j.rollup_step);
        for (k, j) in jobs.iter().enumerate() {
            complete(&mut state, j, rollup_result(20 + k as u64, j), DAY + HOUR);
        }
        assert!(poll_all(&mut state, DAY + HOUR).is_empty(), "nothing changed: nothing planned");
        state
    }

    #[test]
    fn settled_hours_then_days_are_rolled_up_once() {
        let state = rolled_up();
        assert_eq!(rollups_of(&state, 0, DAY), vec![(0, DAY), (0, DAY)], "the day replaced its hours");
        let mut gone: Vec<String> = state.tombstones().into_iter().map(|t| t.block_id).collect();
        gone.sort();
        assert_eq!(gone, vec![id(10), id(11)]);
        // Readers that did not ask see raw blocks only.
        let raw: Vec<String> = query(&state, &["a"], 0, DAY, vec![]).into_iter().map(|(id, _)| id).collect();
        assert_eq!(raw, vec![id(1), id(2), id(3)]);
    }

    #[test]
    fn late_data_replans_its_day_and_replaces_the_rollup() {
        let mut state = rolled_up();
        add(&mut state, block(4, 2, 100, 200), vec![]);
        let jobs = poll_all(&mut state, DAY + 2 * HOUR);
        assert_eq!(buckets(&jobs), vec![(0, DAY, vec![id(1), id(2), id(3), id(4)])]);
        assert_eq!(steps(&jobs), vec![HOUR, DAY]);
        // Until they complete, the old rollups stay (their covers are all there).
        assert_eq!(rollups_of(&state, 0, HOUR - 1), vec![(0, DAY), (0, DAY)]);
        for (k, j) in jobs.iter().enumerate() {
            complete(&mut state, j, rollup_result(30 + k as u64, j), DAY + 2 * HOUR);
        }
        let gone: Vec<String> = state.tombstones().into_iter().map(|t| t.block_id).collect();
        assert!(gone.contains(&id(20)) && gone.contains(&id(21)), "the replaced rollups are tombstoned: {gone:?}");
        assert_eq!(rollups_of(&state, 0, DAY), vec![(0, DAY), (0, DAY)]);
        assert!(poll_all(&mut state, DAY + 2 * HOUR).is_empty());
    }

    #[test]
    fn a_rollup_goes_with_any_of_its_covers() {
        let mut state = rolled_up();
        // Block 3 is compacted away (or expired): the day's rollups go at
        // the next poll, which plans the day again over what is left.
        state.apply(Command::DeleteBlocks { ids: vec![id(3)], now_ms: DAY + 2 * HOUR });
        let jobs = poll_all(&mut state, DAY + 2 * HOUR);
        assert!(rollups_of(&state, 0, DAY).is_empty());
        let mut gone: Vec<String> = state.tombstones().into_iter().map(|t| t.block_id).collect();
        gone.sort();
        let mut want = vec![id(10), id(11), id(20), id(21), id(3)];
        want.sort();
        assert_eq!(gone, want);
        assert_eq!(buckets(&jobs), vec![(0, DAY, vec![id(1), id(2)])]);
    }

    #[test]
    fn a_deletion_drops_the_rollups_it_touches_and_none_is_made_while_pending() {
        let mut state = rolled_up();
        let r = state.apply(Command::DeleteRange { tenant: "a".into(), start_ms: 10, end_ms: 20, now_ms: DAY + HOUR });
        assert!(matches!(r, Response::Deleted(_)));
        assert!(rollups_of(&state, 0, DAY).is_empty(), "the day's rollup overlapped the deletion");
        // Block 1 is pending a rewrite: no rollup over the deleted range
        // (hour 0, the day) until it is done; hour 1 may be rolled up.
        let jobs = poll_all(&mut state, DAY + 2 * HOUR);
        let rollups: Vec<(i64, i64)> =
            jobs.iter().filter(|j| j.rollup_end > 0).map(|j| (j.rollup_start, j.rollup_end)).collect();
        assert_eq!(rollups, vec![(HOUR, 2 * HOUR)], "{:?}", buckets(&jobs));
    }

    #[test]
    fn a_rollup_finished_after_its_data_changed_is_not_indexed() {
        let mut state = MetastoreState::new();
        add(&mut state, block(1, 2, 0, HOUR / 2), vec![]);
        let jobs = poll_all(&mut state, 2 * HOUR);
        assert_eq!(jobs.len(), 1);
        state.apply(Command::DeleteBlocks { ids: vec![id(1)], now_ms: 2 * HOUR });
        complete(&mut state, &jobs[0], rollup_result(9, &jobs[0]), 2 * HOUR);
        assert!(rollups_of(&state, 0, DAY).is_empty());
        let gone: Vec<String> = state.tombstones().into_iter().map(|t| t.block_id).collect();
        assert!(gone.contains(&id(9)), "its object is deleted: {gone:?}");
    }

    #[test]
    fn an_hour_without_rows_is_remembered_and_its_day_rolled_up_from_raw_rows() {
        let mut state = MetastoreState::new();
        // One block with rows in hours 0 and 2 only: its span covers hour 1.
        add(&mut state, block(1, 2, 10, 2 * HOUR + 10), vec![]);
        let jobs = poll_all(&mut state, 4 * HOUR);
        assert_eq!(buckets(&jobs).len(), 3);
        for (k, j) in jobs.iter().enumerate() {
            if j.rollup_start == HOUR {
                let r = state.apply(Command::CompleteCompactionJob {
                    id: j.id.clone(),
                    token: j.token,
                    block: BlockMeta::default(),
                    now_ms: 3 * HOUR,
                    no_output: true,
                });
                assert_eq!(r, Response::JobCompleted);
            } else {
                complete(&mut state, j, rollup_result(10 + k as u64, j), 3 * HOUR);
            }
        }
        assert!(poll_all(&mut state, 5 * HOUR).is_empty(), "the empty hour is not planned again");
        assert_eq!(
            state.compaction_jobs_by_level().iter().map(|(f, l)| f + l).sum::<usize>(),
            0,
            "nor counted as work"
        );
        let jobs = poll_all(&mut state, DAY + HOUR);
        assert_eq!(buckets(&jobs), vec![(0, DAY, vec![id(1)])]);
        assert_eq!(jobs[0].rollup_covers, vec![id(1)]);
    }

    #[test]
    fn rollup_jobs_survive_a_snapshot_and_a_version_2_state_is_still_read() {
        let mut state = MetastoreState::new();
        add(&mut state, block(1, 2, 10, 2 * HOUR + 10), vec![]);
        let jobs = poll_all(&mut state, 4 * HOUR);
        let empty = jobs.iter().find(|j| j.rollup_start == HOUR).unwrap();
        state.apply(Command::CompleteCompactionJob {
            id: empty.id.clone(),
            token: empty.token,
            block: BlockMeta::default(),
            now_ms: 4 * HOUR,
            no_output: true,
        });
        for restored in [
            super::decode_stored::<MetastoreState>(&super::encode_stored_vec(&state).unwrap()).unwrap(),
            serde_json::from_slice(&serde_json::to_vec(&state).unwrap()).unwrap(),
        ] {
            assert_eq!(restored, state);
            let mut restored = restored;
            // The restored jobs are still rollups: the two unfinished hours
            // are leased again, the empty one is not, nothing new is planned.
            let again = poll_all(&mut restored, 5 * HOUR);
            let mut hours: Vec<i64> = again.iter().map(|j| j.rollup_start).collect();
            hours.sort();
            assert_eq!(hours, vec![0, 2 * HOUR]);
        }
        // Version 2 (before rollups): the same layout without the trailing
        // rollup map (empty here: one zero byte).
        let mut plain = MetastoreState::new();
        add(&mut plain, block(1, 2, 10, 20), vec![]);
        let v3 = super::encode_stored_vec(&plain).unwrap();
        assert_eq!((v3[1], *v3.last().unwrap()), (3, 0), "version 3, an empty rollup map last");
        let mut v2 = v3[..v3.len() - 1].to_vec();
        v2[1] = 2;
        assert_eq!(super::decode_stored::<MetastoreState>(&v2).unwrap(), plain);
    }
}
