//! Mutual TLS on the internal gRPC port: a metastore, a segment writer, a
//! distributor, a query backend and a query frontend, each its own process,
//! talk only over mTLS (pushes are acked and queried back); a client
//! without a certificate the cluster's CA signed is refused at the
//! handshake, and so is plain text; a renewed certificate file is served
//! to new connections without a restart.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use phlox_e2e::*;
use phlox_pprof::testkit::ProfileBuilder;
use prost::Message;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CPU: &str = "process_cpu:cpu:nanoseconds:cpu:nanoseconds";
/// The name every component's certificate carries (they are dialed by IP).
const NAME: &str = "phlox-grpc";

struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

fn ca(name: &str) -> Ca {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    let key = rcgen::KeyPair::generate().unwrap();
    Ca { cert: params.self_signed(&key).unwrap(), key }
}

/// A certificate for `NAME` signed by `ca`, usable to serve and to dial.
fn leaf(ca: &Ca) -> (String, String) {
    let mut params = rcgen::CertificateParams::new(vec![NAME.to_owned()]).unwrap();
    params.extended_key_usages =
        vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn der(pem: &str) -> CertificateDer<'static> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A raw TLS client of `addr` trusting `ca_pem`, with `identity` (or
/// none): the server's certificate when an HTTP/2 exchange gets an answer,
/// else the error.
async fn dial(addr: &str, ca_pem: &str, identity: Option<(&str, &str)>) -> Result<CertificateDer<'static>, String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der(ca_pem)).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match identity {
        Some((cert, key)) => builder
            .with_client_auth_cert(vec![der(cert)], PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut tls = connector.connect(ServerName::try_from(NAME).unwrap(), tcp).await.map_err(|e| e.to_string())?;
    let server_cert = tls.get_ref().1.peer_certificates().unwrap()[0].clone().into_owned();
    // HTTP/2: the preface and an empty SETTINGS frame; a server that
    // accepted us answers with its SETTINGS.
    tls.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 9];
    match tokio::time::timeout(Duration::from_secs(5), tls.read_exact(&mut buf)).await {
        Ok(Ok(_)) if buf[3] == 0x04 => Ok(server_cert),
        Ok(Ok(_)) => Err(format!("unexpected frame {buf:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer".into()),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn components_talk_mtls_refuse_strangers_and_pick_up_renewed_certificates() {
    let cluster_ca = ca("phlox test CA");
    let (cert, key) = leaf(&cluster_ca);
    let certs = tempfile::tempdir().unwrap();
    let ca_file = write(certs.path(), "ca.crt", &cluster_ca.cert.pem());
    let cert_file = write(certs.path(), "tls.crt", &cert);
    let key_file = write(certs.path(), "tls.key", &key);
    let procs = Processes::new(&format!(
        "limits:\n  ingestion_rate_mb: 0\nserver:\n  grpc_tls:\n    cert_file: {cert_file}\n    key_file: {key_file}\n\
         \x20   ca_file: {ca_file}\n    server_name: {NAME}\n    reload_interval: 1s\n"
    ));
    let metastore = procs.start("metastore", &["--target", "metastore"]);
    let ms = metastore.grpc.clone();
    let writer = procs.start("writer", &["--target", "segment-writer", "--metastore-address", &ms]);
    let distributor = procs.start("distributor", &["--target", "distributor", "--metastore-address", &ms]);
    let backend = procs.start("backend", &["--target", "query-backend"]);
    let frontend = procs.start(
        "frontend",
        &["--target", "query-frontend", "--metastore-address", &ms, "--query-backends", &backend.grpc],
    );

    // Data flows: distributor → writer → bucket + metastore; frontend →
    // metastore + backend. Every hop is gRPC over mTLS.
    let client = reqwest::Client::new();
    let mut b = ProfileBuilder::new("cpu", "nanoseconds");
    b.period("cpu", "nanoseconds", 10_000_000).time_nanos(now_nanos()).sample(&["main", "tls"], &[77], &[]);
    let body = push_request(&[("__name__", "process_cpu"), ("service_name", "mtls")], b.encode(), "").encode_to_vec();
    push_until_acked(&client, &distributor.push_url(), "anonymous", body).await;
    let (start, end) = (now_nanos() / 1_000_000 - 3_600_000, now_nanos() / 1_000_000 + 60_000);
    assert_eq!(flame_total(&frontend.http, "anonymous", CPU, "{}", start, end).await, 77);

    // Strangers are refused: no certificate, another CA's, plain text.
    let ca_pem = cluster_ca.cert.pem();
    for (who, identity) in [("no certificate", None), ("another CA's certificate", Some(leaf(&ca("stranger CA"))))] {
        let r = dial(&ms, &ca_pem, identity.as_ref().map(|(c, k)| (c.as_str(), k.as_str()))).await;
        assert!(r.is_err(), "{who} was let in");
    }
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{ms}")).unwrap().connect().await;
    let refused = match plain {
        Err(_) => true,
        Ok(channel) => {
            let mut c = phlox_proto::metastore::v1::metastore_service_client::MetastoreServiceClient::new(channel);
            c.query_blocks(phlox_proto::metastore::v1::QueryBlocksRequest::default()).await.is_err()
        }
    };
    assert!(refused, "plain text was answered");
    // A member is let in and sees the current certificate.
    let served = dial(&ms, &ca_pem, Some((&cert, &key))).await.unwrap();
    assert_eq!(served, der(&cert));

    // A renewed certificate (new key, same name, same CA) replaces the
    // files: new connections get it, with no restart, and data still flows.
    let (renewed, renewed_key) = leaf(&cluster_ca);
    write(certs.path(), "tls.key.new", &renewed_key);
    write(certs.path(), "tls.crt.new", &renewed);
    std::fs::rename(certs.path().join("tls.key.new"), &key_file).unwrap();
    std::fs::rename(certs.path().join("tls.crt.new"), &cert_file).unwrap();
    eventually("the metastore to serve the renewed certificate", Duration::from_secs(20), Duration::from_millis(250), || {
        let (ms, ca_pem, renewed, renewed_key) = (ms.clone(), ca_pem.clone(), renewed.clone(), renewed_key.clone());
        async move { (dial(&ms, &ca_pem, Some((&renewed, &renewed_key))).await.ok()? == der(&renewed)).then_some(()) }
    })
    .await;
    let mut b = ProfileBuilder::new("cpu", "nanoseconds");
    b.period("cpu", "nanoseconds", 10_000_000).time_nanos(now_nanos()).sample(&["main", "tls"], &[23], &[]);
    let body = push_request(&[("__name__", "process_cpu"), ("service_name", "mtls")], b.encode(), "").encode_to_vec();
    push_until_acked(&client, &distributor.push_url(), "anonymous", body).await;
    assert_eq!(flame_total(&frontend.http, "anonymous", CPU, "{}", start, end).await, 100);
    for p in [frontend, backend, distributor, writer, metastore] {
        p.stop();
    }
}
