//! The conformance suite against every backend available in this run:
//! memory and local filesystem always; S3 when `PHLOX_TEST_S3_ENDPOINT` is
//! set (`make test` starts a moto server and sets it; with
//! `PHLOX_TEST_REQUIRE_S3=1` a missing endpoint fails the test); GCS and
//! Azure when their `PHLOX_TEST_GCS_BUCKET` / `PHLOX_TEST_AZURE_CONTAINER`
//! are set.
#![allow(clippy::unwrap_used)]

use phlox_storage::{Backend, S3Config, StorageConfig, build, conformance};

#[tokio::test]
async fn memory_backend_conforms() {
    let cfg = StorageConfig { backend: Backend::Memory, ..Default::default() };
    conformance::run(build(&cfg, std::path::Path::new(".")).unwrap(), "suite").await;
}

#[tokio::test]
async fn filesystem_backend_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let store = build(&StorageConfig::default(), dir.path()).unwrap();
    conformance::run(store, "suite").await;
    assert!(dir.path().join("bucket").is_dir(), "the default bucket lives under <data-dir>/bucket");
}

#[tokio::test]
async fn prefixed_bucket_conforms_and_stays_under_its_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StorageConfig { prefix: "cluster-a".into(), ..Default::default() };
    let store = build(&cfg, dir.path()).unwrap();
    conformance::run(store, "suite").await;
    assert!(
        dir.path().join("bucket/cluster-a").exists()
            || std::fs::read_dir(dir.path().join("bucket")).unwrap().count() == 0
    );
}

#[tokio::test]
async fn s3_backend_conforms() {
    let Ok(endpoint) = std::env::var("PHLOX_TEST_S3_ENDPOINT") else {
        assert!(std::env::var("PHLOX_TEST_REQUIRE_S3").is_err(), "PHLOX_TEST_REQUIRE_S3 is set but no S3 endpoint");
        eprintln!("skipping: PHLOX_TEST_S3_ENDPOINT is not set");
        return;
    };
    let cfg = StorageConfig {
        backend: Backend::S3,
        s3: S3Config {
            bucket: std::env::var("PHLOX_TEST_S3_BUCKET").unwrap_or_else(|_| "phlox-test".into()),
            endpoint: Some(endpoint),
            region: Some("us-east-1".into()),
            access_key_id: Some("test".into()),
            secret_access_key: Some("test".into()),
            insecure: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let store = build(&cfg, std::path::Path::new(".")).unwrap();
    conformance::run(store, &format!("suite-{}", std::process::id())).await;
}

#[tokio::test]
async fn gcs_backend_conforms_when_configured() {
    let Ok(bucket) = std::env::var("PHLOX_TEST_GCS_BUCKET") else { return };
    let cfg = StorageConfig {
        backend: Backend::Gcs,
        gcs: phlox_storage::GcsConfig { bucket, ..Default::default() },
        ..Default::default()
    };
    conformance::run(build(&cfg, std::path::Path::new(".")).unwrap(), "suite").await;
}

#[tokio::test]
async fn azure_backend_conforms_when_configured() {
    let Ok(container) = std::env::var("PHLOX_TEST_AZURE_CONTAINER") else { return };
    let cfg = StorageConfig {
        backend: Backend::Azure,
        azure: phlox_storage::AzureConfig {
            container,
            account: std::env::var("AZURE_STORAGE_ACCOUNT_NAME").unwrap_or_default(),
            ..Default::default()
        },
        ..Default::default()
    };
    conformance::run(build(&cfg, std::path::Path::new(".")).unwrap(), "suite").await;
}
