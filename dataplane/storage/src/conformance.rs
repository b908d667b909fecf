//! The behaviours Phlox needs from a bucket, as one async suite that every
//! backend's tests call: whole-object put/get, overwrite, suffix and bounded
//! ranged GETs, listing by prefix, head, delete, NotFound, and conditional
//! writes (create-if-absent; update-if-unchanged where the backend has it)
//! for the per-tenant settings objects.
//!
//! Each check panics with a message naming the behaviour (it is test code).

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};

/// Runs every check under `root/` (cleaned up at the end).
pub async fn run(store: Arc<dyn ObjectStore>, root: &str) {
    let p = |k: &str| Path::from(format!("{root}/{k}"));
    let body: Bytes = (0..100_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>().into();

    // Whole-object put and get.
    store.put(&p("segments/0001/a.block"), PutPayload::from(body.clone())).await.expect("put");
    let got = store.get(&p("segments/0001/a.block")).await.expect("get").bytes().await.expect("get body");
    assert_eq!(got, body, "get returns the whole object");
    let head = store.head(&p("segments/0001/a.block")).await.expect("head");
    assert_eq!(head.size, body.len() as u64, "head reports the size");

    // Ranged reads, as the block reader does them.
    let r = store.get_range(&p("segments/0001/a.block"), 1000..1016).await.expect("bounded range");
    assert_eq!(r, body.slice(1000..1016), "bounded range");
    let opts = GetOptions { range: Some(GetRange::Suffix(16)), ..Default::default() };
    let res = store.get_opts(&p("segments/0001/a.block"), opts).await.expect("suffix range");
    assert_eq!(res.meta.size, body.len() as u64, "suffix range reports the object size");
    assert_eq!(res.range, (body.len() as u64 - 16)..body.len() as u64, "suffix range reports its range");
    assert_eq!(res.bytes().await.expect("suffix body"), body.slice(body.len() - 16..), "suffix range bytes");
    let opts = GetOptions { range: Some(GetRange::Suffix(1 << 30)), ..Default::default() };
    let res = store.get_opts(&p("segments/0001/a.block"), opts).await.expect("suffix longer than object");
    assert_eq!(
        res.bytes().await.expect("suffix body").len(),
        body.len(),
        "a suffix longer than the object returns it all"
    );
    let ranges = store.get_ranges(&p("segments/0001/a.block"), &[0..4, 50_000..50_010]).await.expect("get_ranges");
    assert_eq!(ranges, vec![body.slice(0..4), body.slice(50_000..50_010)], "several ranges");

    // Overwrite replaces the whole object (used by settings, never by blocks).
    store.put(&p("segments/0001/a.block"), PutPayload::from_static(b"short")).await.expect("overwrite");
    let got = store.get(&p("segments/0001/a.block")).await.expect("get").bytes().await.expect("body");
    assert_eq!(got.as_ref(), b"short", "overwrite replaces the object");

    // Listing by prefix.
    store.put(&p("segments/0002/b.block"), PutPayload::from_static(b"b")).await.expect("put b");
    store.put(&p("dlq/0001/c.meta"), PutPayload::from_static(b"c")).await.expect("put c");
    let mut listed: Vec<String> =
        store.list(Some(&p("segments"))).map_ok(|m| m.location.to_string()).try_collect().await.expect("list");
    listed.sort();
    assert_eq!(
        listed,
        vec![p("segments/0001/a.block").to_string(), p("segments/0002/b.block").to_string()],
        "list by prefix"
    );

    // Missing objects are NotFound, for get and head.
    let missing = store.get(&p("segments/9999/none.block")).await;
    assert!(matches!(missing, Err(object_store::Error::NotFound { .. })), "get of a missing object is NotFound");
    let missing = store.head(&p("segments/9999/none.block")).await;
    assert!(matches!(missing, Err(object_store::Error::NotFound { .. })), "head of a missing object is NotFound");

    // Conditional writes (settings and recording rules): a create of an
    // existing object fails; an update against a stale version fails where
    // the backend has conditional updates (the local filesystem has not).
    let put = |mode: PutMode, bytes: &'static [u8]| {
        let (store, path) = (Arc::clone(&store), p("settings/t/s.binpb"));
        async move { store.put_opts(&path, PutPayload::from_static(bytes), PutOptions { mode, ..Default::default() }).await }
    };
    put(PutMode::Create, b"1").await.expect("create of an absent object");
    let created = put(PutMode::Create, b"2").await;
    assert!(
        matches!(created, Err(object_store::Error::AlreadyExists { .. })),
        "create of an existing object: {created:?}"
    );
    let read = store.get(&p("settings/t/s.binpb")).await.expect("get");
    let version = UpdateVersion { e_tag: read.meta.e_tag.clone(), version: read.meta.version.clone() };
    match put(PutMode::Update(version.clone()), b"3").await {
        Err(object_store::Error::NotImplemented { .. }) => {}
        other => {
            other.expect("update against the current version");
            let stale = put(PutMode::Update(version), b"4").await;
            assert!(
                matches!(stale, Err(object_store::Error::Precondition { .. })),
                "update against a stale version: {stale:?}"
            );
            let got = store.get(&p("settings/t/s.binpb")).await.expect("get").bytes().await.expect("body");
            assert_eq!(got.as_ref(), b"3", "the stale update changed nothing");
        }
    }
    store.delete(&p("settings/t/s.binpb")).await.expect("delete settings");

    // Delete.
    for k in ["segments/0001/a.block", "segments/0002/b.block", "dlq/0001/c.meta"] {
        store.delete(&p(k)).await.expect("delete");
    }
    let left: Vec<_> = store.list(Some(&Path::from(root))).try_collect().await.expect("list after delete");
    assert!(left.is_empty(), "delete removes objects: {left:?}");
}
