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

/// A TLS front on 127.0.0.1 for the plain-HTTP S3 test server, with the
/// certificate of `tests/tls` (signed by the test CA). Returns its port and
/// the TLS handshake errors it saw.
async fn tls_front(backend: String) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tls");
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(format!("{dir}/server.pem")).unwrap().map(|c| c.unwrap()).collect();
    let key = PrivateKeyDer::from_pem_file(format!("{dir}/server.key")).unwrap();
    // An explicit provider: a workspace build may enable more than one.
    let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let errors = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = errors.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (acceptor, backend, seen) = (acceptor.clone(), backend.clone(), seen.clone());
            tokio::spawn(async move {
                match acceptor.accept(tcp).await {
                    Ok(mut tls) => {
                        if let Ok(mut plain) = tokio::net::TcpStream::connect(&backend).await {
                            let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                        }
                    }
                    Err(e) => seen.lock().unwrap().push(e.to_string()),
                }
            });
        }
    });
    (port, errors)
}

/// `storage.ca_file` makes an HTTPS endpoint signed by a private CA
/// trusted: the conformance suite passes over TLS; without it the client
/// refuses the server's certificate; a file without a certificate is a
/// clear configuration error.
#[tokio::test]
async fn s3_over_tls_trusts_the_ca_file() {
    let Ok(endpoint) = std::env::var("PHLOX_TEST_S3_ENDPOINT") else {
        assert!(std::env::var("PHLOX_TEST_REQUIRE_S3").is_err(), "PHLOX_TEST_REQUIRE_S3 is set but no S3 endpoint");
        eprintln!("SKIPPED: PHLOX_TEST_S3_ENDPOINT is not set");
        return;
    };
    let backend = endpoint.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let (port, handshake_errors) = tls_front(backend).await;
    let ca = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tls/ca.pem"));
    let cfg = |ca_file: Option<std::path::PathBuf>| StorageConfig {
        backend: Backend::S3,
        s3: S3Config {
            bucket: std::env::var("PHLOX_TEST_S3_BUCKET").unwrap_or_else(|_| "phlox-test".into()),
            endpoint: Some(format!("https://127.0.0.1:{port}")),
            region: Some("us-east-1".into()),
            access_key_id: Some("test".into()),
            secret_access_key: Some("test".into()),
            ..Default::default()
        },
        ca_file,
        ..Default::default()
    };
    let store = build(&cfg(Some(ca.clone())), std::path::Path::new(".")).unwrap();
    conformance::run(store, &format!("tls-suite-{}", std::process::id())).await;
    assert!(handshake_errors.lock().unwrap().is_empty(), "{:?}", handshake_errors.lock().unwrap());

    // Without the CA the client refuses the certificate (it would retry for
    // minutes: the refusal the front sees is the answer).
    use object_store::ObjectStoreExt;
    let untrusting = build(&cfg(None), std::path::Path::new(".")).unwrap();
    let refused = object_store::path::Path::from("tls-refused");
    let put = untrusting.put(&refused, object_store::PutPayload::from_static(b"x"));
    let wait = async {
        while handshake_errors.lock().unwrap().is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        r = put => panic!("a put without the CA must not succeed: {r:?}"),
        _ = tokio::time::timeout(std::time::Duration::from_secs(30), wait) => {}
    }
    let errors = handshake_errors.lock().unwrap().clone();
    assert!(
        errors.first().is_some_and(|e| e.to_lowercase().contains("alert") || e.to_lowercase().contains("certificate")),
        "the client refused the handshake: {errors:?}"
    );

    // A file that holds no certificate.
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("ca.pem");
    std::fs::write(&bogus, "not a certificate\n").unwrap();
    let err = build(&cfg(Some(bogus.clone())), std::path::Path::new(".")).err().unwrap().to_string();
    assert_eq!(err, format!("storage.ca_file {}: no PEM certificate in the file", bogus.display()));
    let missing = dir.path().join("absent.pem");
    let err = build(&cfg(Some(missing.clone())), std::path::Path::new(".")).err().unwrap().to_string();
    assert!(err.starts_with(&format!("storage.ca_file {}: ", missing.display())), "{err}");
}
