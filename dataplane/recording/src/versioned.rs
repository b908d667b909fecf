//! Read-modify-write of a small per-tenant object (rules, settings) that
//! stays correct with several query-frontends: the write is conditional on
//! the version read (`If-Match` on S3, generations on GCS, ETags on Azure;
//! create-if-absent everywhere), and a lost race is retried on a fresh read.
//! A store without conditional updates (the local filesystem, which only
//! one process uses) is written plainly.

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};

/// Attempts before a write gives up on a busy object.
pub(crate) const MAX_ATTEMPTS: usize = 16;

/// An object's bytes and the version to write it back against (`None`:
/// the object does not exist).
#[derive(Debug)]
pub(crate) struct Read {
    pub(crate) bytes: Option<Bytes>,
    version: Option<UpdateVersion>,
}

/// What a conditional write came to.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Written {
    Yes,
    /// Someone else wrote the object since it was read.
    Conflict,
}

pub(crate) async fn read(store: &dyn ObjectStore, path: &Path) -> Result<Read, object_store::Error> {
    match store.get(path).await {
        Ok(r) => {
            let version = UpdateVersion { e_tag: r.meta.e_tag.clone(), version: r.meta.version.clone() };
            Ok(Read { bytes: Some(r.bytes().await?), version: Some(version) })
        }
        Err(object_store::Error::NotFound { .. }) => Ok(Read { bytes: None, version: None }),
        Err(e) => Err(e),
    }
}

/// Writes `bytes` if the object is still as `read` saw it.
pub(crate) async fn write(
    store: &dyn ObjectStore,
    path: &Path,
    read: Read,
    bytes: Vec<u8>,
) -> Result<Written, object_store::Error> {
    let payload = PutPayload::from(bytes);
    let mode = match read.version {
        // An object without an ETag or version cannot be matched.
        Some(v) if v.e_tag.is_none() && v.version.is_none() => PutMode::Overwrite,
        Some(v) => PutMode::Update(v),
        None => PutMode::Create,
    };
    match store.put_opts(path, payload.clone(), PutOptions { mode, ..Default::default() }).await {
        Ok(_) => Ok(Written::Yes),
        Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => {
            Ok(Written::Conflict)
        }
        Err(object_store::Error::NotImplemented { .. }) => {
            store.put(path, payload).await?;
            Ok(Written::Yes)
        }
        Err(e) => Err(e),
    }
}

/// Reads the object, lets `change` edit its decoded form and writes it
/// back conditionally, again on a fresh read after a lost race. `Ok(None)`:
/// every attempt lost ([`MAX_ATTEMPTS`]); errors of `decode`, `change` and
/// the store end it at once.
pub(crate) async fn modify<S: prost::Message, T, E: From<object_store::Error>>(
    store: &dyn ObjectStore,
    path: &Path,
    decode: impl Fn(Option<Bytes>) -> Result<S, E>,
    mut change: impl FnMut(&mut S) -> Result<T, E>,
) -> Result<Option<T>, E> {
    for _ in 0..MAX_ATTEMPTS {
        let read = read(store, path).await?;
        let mut value = decode(read.bytes.clone())?;
        let out = change(&mut value)?;
        if write(store, path, read, value.encode_to_vec()).await? == Written::Yes {
            return Ok(Some(out));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;

    #[tokio::test]
    async fn a_write_based_on_a_stale_read_conflicts() {
        let store = InMemory::new();
        let path = Path::from("t/obj");
        let first = read(&store, &path).await.unwrap();
        let second = read(&store, &path).await.unwrap();
        assert_eq!(write(&store, &path, first, b"a".to_vec()).await.unwrap(), Written::Yes);
        // Both saw "absent": the second create loses.
        assert_eq!(write(&store, &path, second, b"b".to_vec()).await.unwrap(), Written::Conflict);
        let (x, y) = (read(&store, &path).await.unwrap(), read(&store, &path).await.unwrap());
        assert_eq!(x.bytes.as_deref(), Some(&b"a"[..]));
        assert_eq!(write(&store, &path, x, b"c".to_vec()).await.unwrap(), Written::Yes);
        assert_eq!(write(&store, &path, y, b"d".to_vec()).await.unwrap(), Written::Conflict);
        assert_eq!(read(&store, &path).await.unwrap().bytes.as_deref(), Some(&b"c"[..]));
    }

    #[tokio::test]
    async fn the_local_filesystem_is_written_plainly_after_creation() {
        let dir = tempfile::tempdir().unwrap();
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap();
        let path = Path::from("t/obj");
        let r = read(&store, &path).await.unwrap();
        assert_eq!(write(&store, &path, r, b"a".to_vec()).await.unwrap(), Written::Yes);
        let r = read(&store, &path).await.unwrap();
        assert_eq!(write(&store, &path, r, b"b".to_vec()).await.unwrap(), Written::Yes);
        assert_eq!(read(&store, &path).await.unwrap().bytes.as_deref(), Some(&b"b"[..]));
    }
}
