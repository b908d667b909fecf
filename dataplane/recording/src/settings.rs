//! Per-tenant key/value settings (`settings.v1.SettingsService`, used by
//! Grafana's profiles app), one object per tenant in the bucket
//! (`settings/<tenant>/settings.binpb`).
//!
//! Writes are conditional on the version read (see `versioned`), so
//! several query-frontends never lose each other's changes.
//!
//! A Set carries `modifiedAt` (Unix ms): 0 or less means "now"; a Set older
//! than the stored value is refused (`already_exists`), so concurrent
//! writers keep the newest value.

use std::sync::Arc;

use object_store::ObjectStore;
use phlox_block::paths::settings_path;
use phlox_proto::settings::v1::{Setting, SettingsStore};
use prost::Message;

use crate::versioned;

/// Most settings a tenant keeps.
pub const MAX_SETTINGS: usize = 256;
/// Longest setting name, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Longest setting value, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// Why a settings call failed.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("setting name is empty")]
    EmptyName,
    #[error("setting {what} is {len} bytes, more than the limit of {limit}")]
    TooLong { what: &'static str, len: usize, limit: usize },
    #[error("a tenant keeps at most {0} settings; delete one first")]
    TooMany(usize),
    #[error("setting {name:?} was modified at {stored}, after this update's {sent}")]
    Stale { name: String, stored: i64, sent: i64 },
    #[error("setting {0:?} not found")]
    NotFound(String),
    #[error("settings storage: {0}")]
    Storage(#[from] object_store::Error),
    #[error("settings object of tenant {tenant:?} is corrupt: {reason}")]
    Corrupt { tenant: String, reason: String },
    #[error("settings of tenant {0:?} are being changed by others; try again")]
    Busy(String),
}

impl SettingsError {
    /// The Connect/gRPC code name of the error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::EmptyName | Self::TooLong { .. } => "invalid_argument",
            Self::TooMany(_) => "resource_exhausted",
            Self::Stale { .. } => "already_exists",
            Self::NotFound(_) => "not_found",
            Self::Busy(_) => "aborted",
            Self::Storage(_) | Self::Corrupt { .. } => "internal",
        }
    }
}

/// Settings of every tenant.
#[derive(Debug)]
pub struct SettingsStoreClient {
    store: Arc<dyn ObjectStore>,
    write: tokio::sync::Mutex<()>,
}

impl SettingsStoreClient {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        Self { store, write: tokio::sync::Mutex::new(()) }
    }

    async fn load(&self, tenant: &str) -> Result<SettingsStore, SettingsError> {
        let read = versioned::read(&*self.store, &settings_path(tenant)).await?;
        decode(tenant, read.bytes)
    }

    /// Applies `change` to the tenant's settings and writes them back
    /// (conditionally, again on a fresh read after a lost race).
    async fn modify<T>(
        &self,
        tenant: &str,
        mut change: impl FnMut(&mut SettingsStore) -> Result<T, SettingsError>,
    ) -> Result<T, SettingsError> {
        let _guard = self.write.lock().await;
        versioned::modify(&*self.store, &settings_path(tenant), |b| decode(tenant, b), &mut change)
            .await?
            .ok_or_else(|| SettingsError::Busy(tenant.to_owned()))
    }

    /// Every setting of `tenant`, by name.
    pub async fn get(&self, tenant: &str) -> Result<Vec<Setting>, SettingsError> {
        let mut s = self.load(tenant).await?.settings;
        s.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(s)
    }

    /// Stores a setting at `now_ms` unless it carries its own time.
    pub async fn set(&self, tenant: &str, mut setting: Setting, now_ms: i64) -> Result<Setting, SettingsError> {
        if setting.name.is_empty() {
            return Err(SettingsError::EmptyName);
        }
        for (what, len, limit) in
            [("name", setting.name.len(), MAX_NAME_BYTES), ("value", setting.value.len(), MAX_VALUE_BYTES)]
        {
            if len > limit {
                return Err(SettingsError::TooLong { what, len, limit });
            }
        }
        if setting.modified_at <= 0 {
            setting.modified_at = now_ms;
        }
        self.modify(tenant, |all| {
            let count = all.settings.len();
            match all.settings.iter_mut().find(|s| s.name == setting.name) {
                Some(stored) if stored.modified_at > setting.modified_at => Err(SettingsError::Stale {
                    name: setting.name.clone(),
                    stored: stored.modified_at,
                    sent: setting.modified_at,
                }),
                Some(stored) => {
                    *stored = setting.clone();
                    Ok(setting.clone())
                }
                None if count >= MAX_SETTINGS => Err(SettingsError::TooMany(MAX_SETTINGS)),
                None => {
                    all.settings.push(setting.clone());
                    Ok(setting.clone())
                }
            }
        })
        .await
    }

    /// Deletes a setting.
    pub async fn delete(&self, tenant: &str, name: &str) -> Result<(), SettingsError> {
        self.modify(tenant, |all| {
            let before = all.settings.len();
            all.settings.retain(|s| s.name != name);
            if all.settings.len() == before {
                return Err(SettingsError::NotFound(name.to_owned()));
            }
            Ok(())
        })
        .await
    }
}

fn decode(tenant: &str, bytes: Option<bytes::Bytes>) -> Result<SettingsStore, SettingsError> {
    match bytes {
        Some(b) => SettingsStore::decode(b)
            .map_err(|e| SettingsError::Corrupt { tenant: tenant.to_owned(), reason: e.to_string() }),
        None => Ok(SettingsStore::default()),
    }
}

#[cfg(test)]
mod tests {
    use object_store::memory::InMemory;

    use super::*;

    fn setting(name: &str, value: &str, modified_at: i64) -> Setting {
        Setting { name: name.into(), value: value.into(), modified_at }
    }

    #[tokio::test]
    async fn settings_keep_the_newest_value_per_tenant() {
        let s = SettingsStoreClient::new(Arc::new(InMemory::new()));
        assert_eq!(s.set("t", setting("a", "1", 0), 1000).await.unwrap().modified_at, 1000);
        assert_eq!(s.set("t", setting("a", "2", 2000), 1500).await.unwrap().value, "2");
        let e = s.set("t", setting("a", "old", 1999), 3000).await.unwrap_err();
        assert_eq!(e.code(), "already_exists");
        s.set("t", setting("b", "x", 0), 5).await.unwrap();
        assert_eq!(s.get("t").await.unwrap(), vec![setting("a", "2", 2000), setting("b", "x", 5)]);
        assert!(s.get("other").await.unwrap().is_empty());
        let e = s.set("t", setting("v", &"x".repeat(MAX_VALUE_BYTES + 1), 0), 5).await.unwrap_err();
        assert_eq!((e.code(), e.to_string().contains("value is 65537 bytes")), ("invalid_argument", true), "{e}");
        for i in 0..MAX_SETTINGS - 2 {
            s.set("full", setting(&format!("k{i}"), "v", 0), 5).await.unwrap();
        }
        s.set("full", setting("last", "v", 0), 5).await.unwrap();
        s.set("full", setting("last2", "v", 0), 5).await.unwrap();
        assert_eq!(s.set("full", setting("one-more", "v", 0), 5).await.unwrap_err().code(), "resource_exhausted");
        s.set("full", setting("last", "updated", 0), 6).await.unwrap();
        s.delete("t", "a").await.unwrap();
        assert_eq!(s.delete("t", "a").await.unwrap_err().code(), "not_found");
        assert_eq!(s.set("t", setting("", "x", 0), 5).await.unwrap_err().code(), "invalid_argument");
        assert_eq!(s.get("t").await.unwrap(), vec![setting("b", "x", 5)]);
    }
}
