use std::path::PathBuf;
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::prefix::PrefixStore;
use object_store::{Certificate, ClientOptions, ObjectStore};
use serde::{Deserialize, Serialize};

/// Errors of building a bucket from configuration.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("storage backend {backend}: {source}")]
    Backend { backend: &'static str, source: object_store::Error },
    #[error("cannot create the data directory {dir}: {source}")]
    DataDir { dir: PathBuf, source: std::io::Error },
    #[error("storage backend {0} needs a bucket name")]
    MissingBucket(&'static str),
    #[error("storage.ca_file {path}: {reason}")]
    CaFile { path: PathBuf, reason: String },
    #[error("the {bucket} is not writable (a test object could not be written and deleted): {source}")]
    NotWritable { bucket: String, source: object_store::Error },
}

/// Which object store holds the data.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    #[default]
    Filesystem,
    S3,
    Gcs,
    Azure,
    /// In memory, for tests: nothing survives the process.
    Memory,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilesystemConfig {
    /// Directory of the bucket; default `<data-dir>/bucket`.
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct S3Config {
    pub bucket: String,
    /// For S3-compatible servers (MinIO, Ceph, moto...), e.g. `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Taken from the environment (`AWS_ACCESS_KEY_ID`...) when unset.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// Allow `http://` endpoints.
    pub insecure: bool,
    /// Use virtual-hosted-style requests (`bucket.host`) instead of path style.
    pub virtual_hosted_style: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcsConfig {
    pub bucket: String,
    /// Path of a service account JSON key; from the environment when unset.
    pub service_account_path: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AzureConfig {
    pub account: String,
    pub container: String,
    pub access_key: Option<String>,
    /// For Azurite or sovereign clouds.
    pub endpoint: Option<String>,
}

/// The `storage:` section of the configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    pub backend: Backend,
    /// Key prefix inside the bucket (several clusters can share a bucket).
    pub prefix: String,
    pub filesystem: FilesystemConfig,
    pub s3: S3Config,
    pub gcs: GcsConfig,
    pub azure: AzureConfig,
    /// PEM file of root certificates to trust for the object store's HTTPS
    /// endpoint (an internal CA in front of MinIO or Ceph), in addition to
    /// the system's.
    pub ca_file: Option<PathBuf>,
}

impl StorageConfig {
    /// The bucket in words, for messages: `filesystem bucket ./data/bucket`,
    /// `s3 bucket profiles at http://127.0.0.1:9000`...
    pub fn describe(&self, data_dir: &std::path::Path) -> String {
        let at = |e: &Option<String>| e.as_ref().map(|e| format!(" at {e}")).unwrap_or_default();
        let place = match self.backend {
            Backend::Filesystem => format!(
                "filesystem bucket {}",
                self.filesystem.dir.clone().unwrap_or_else(|| data_dir.join("bucket")).display()
            ),
            Backend::Memory => "in-memory bucket".to_owned(),
            Backend::S3 => format!("s3 bucket {}{}", self.s3.bucket, at(&self.s3.endpoint)),
            Backend::Gcs => format!("gcs bucket {}", self.gcs.bucket),
            Backend::Azure => format!("azure container {}{}", self.azure.container, at(&self.azure.endpoint)),
        };
        if self.prefix.is_empty() { place } else { format!("{place} (prefix {})", self.prefix) }
    }
}

/// Writes and deletes a small object under `.phlox-write-check/`: a process
/// that stores data checks this before it says it is ready, so a read-only
/// or misconfigured bucket fails at start, not on every push.
pub async fn check_writable(store: &dyn ObjectStore, bucket: &str) -> Result<(), StorageError> {
    use object_store::ObjectStoreExt;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let path = object_store::path::Path::from(format!(".phlox-write-check/{}-{nanos}", std::process::id()));
    let not_writable = |source| StorageError::NotWritable { bucket: bucket.to_owned(), source };
    store.put(&path, object_store::PutPayload::from_static(b"phlox")).await.map_err(not_writable)?;
    store.delete(&path).await.map_err(not_writable)?;
    Ok(())
}

/// HTTP client options trusting the certificates of `ca_file` (when set).
fn client_options(ca_file: Option<&std::path::Path>) -> Result<Option<ClientOptions>, StorageError> {
    let Some(path) = ca_file else { return Ok(None) };
    let err = |reason: String| StorageError::CaFile { path: path.to_owned(), reason };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let certs = Certificate::from_pem_bundle(&pem).map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate in the file".to_owned()));
    }
    Ok(Some(certs.into_iter().fold(ClientOptions::new(), |o, c| o.with_root_certificate(c))))
}

/// Builds the bucket. `data_dir` is the default home of a filesystem bucket.
pub fn build(config: &StorageConfig, data_dir: &std::path::Path) -> Result<Arc<dyn ObjectStore>, StorageError> {
    let tls = client_options(config.ca_file.as_deref())?;
    let store: Arc<dyn ObjectStore> = match config.backend {
        Backend::Filesystem => {
            let dir = config.filesystem.dir.clone().unwrap_or_else(|| data_dir.join("bucket"));
            std::fs::create_dir_all(&dir).map_err(|source| StorageError::DataDir { dir: dir.clone(), source })?;
            let fs = LocalFileSystem::new_with_prefix(&dir)
                .map_err(|source| StorageError::Backend { backend: "filesystem", source })?
                // Empty parent directories are removed with their last object.
                .with_automatic_cleanup(true);
            Arc::new(fs)
        }
        Backend::Memory => Arc::new(InMemory::new()),
        Backend::S3 => {
            let c = &config.s3;
            if c.bucket.is_empty() {
                return Err(StorageError::MissingBucket("s3"));
            }
            let mut b = AmazonS3Builder::from_env();
            if let Some(o) = tls {
                b = b.with_client_options(o);
            }
            let mut b = b
                .with_bucket_name(&c.bucket)
                .with_allow_http(c.insecure)
                .with_virtual_hosted_style_request(c.virtual_hosted_style);
            if let Some(v) = &c.endpoint {
                b = b.with_endpoint(v);
            }
            if let Some(v) = &c.region {
                b = b.with_region(v);
            }
            if let Some(v) = &c.access_key_id {
                b = b.with_access_key_id(v);
            }
            if let Some(v) = &c.secret_access_key {
                b = b.with_secret_access_key(v);
            }
            if let Some(v) = &c.session_token {
                b = b.with_token(v);
            }
            Arc::new(b.build().map_err(|source| StorageError::Backend { backend: "s3", source })?)
        }
        Backend::Gcs => {
            let c = &config.gcs;
            if c.bucket.is_empty() {
                return Err(StorageError::MissingBucket("gcs"));
            }
            let mut b = GoogleCloudStorageBuilder::from_env().with_bucket_name(&c.bucket);
            if let Some(o) = tls {
                b = b.with_client_options(o);
            }
            if let Some(v) = &c.service_account_path {
                b = b.with_service_account_path(v);
            }
            Arc::new(b.build().map_err(|source| StorageError::Backend { backend: "gcs", source })?)
        }
        Backend::Azure => {
            let c = &config.azure;
            if c.container.is_empty() {
                return Err(StorageError::MissingBucket("azure"));
            }
            let mut b = MicrosoftAzureBuilder::from_env().with_account(&c.account).with_container_name(&c.container);
            if let Some(o) = tls {
                b = b.with_client_options(o);
            }
            if let Some(v) = &c.access_key {
                b = b.with_access_key(v);
            }
            if let Some(v) = &c.endpoint {
                b = b.with_endpoint(v.clone()).with_allow_http(v.starts_with("http://"));
            }
            Arc::new(b.build().map_err(|source| StorageError::Backend { backend: "azure", source })?)
        }
    };
    if config.prefix.is_empty() { Ok(store) } else { Ok(Arc::new(PrefixStore::new(store, config.prefix.as_str()))) }
}
