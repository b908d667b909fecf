//! The bucket: an `Arc<dyn ObjectStore>` built from [`StorageConfig`], for the
//! local filesystem (default), S3 and S3-compatible servers, GCS and Azure.
//!
//! Phlox writes with S3 semantics only: whole-object puts, no rename, no
//! append, ranged GETs for reads. [`conformance`] checks exactly the
//! behaviours Phlox relies on, against any backend.

mod config;
pub mod conformance;

pub use config::{
    AzureConfig, Backend, FilesystemConfig, GcsConfig, S3Config, StorageConfig, StorageError, build, check_writable,
};
