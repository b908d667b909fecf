//! TLS on the internal gRPC port, both ways authenticated (mTLS): every
//! process serves with its certificate and dials with it, and accepts only
//! peers whose certificate the cluster's CA signed. The files are re-read
//! while running (a renewed certificate applies to new connections without
//! a restart); a set of files that does not load keeps the last good one.
//!
//! The server side is [`incoming`] (a TCP listener's connections after the
//! handshake, for tonic's `serve_with_incoming`); the client side is
//! [`connect_lazy`], which every dial site uses: with TLS [`install`]ed for
//! the process it dials through it, else in plain text.

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::{Channel, Endpoint, Uri};

/// Why TLS cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// Where the PEM files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// This process's certificate (chain), presented to both sides.
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The CA that signs every peer's certificate.
    pub ca: PathBuf,
    /// The name every peer's certificate is checked against; default: the
    /// host dialed. Pods are dialed by IP, so clusters use one name (the
    /// operator's certificates carry it) rather than one per address.
    pub server_name: Option<String>,
}

struct Loaded {
    /// The files' bytes, to see a change.
    contents: Vec<Vec<u8>>,
    server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
}

/// The loaded TLS configuration of a process, as its files last were.
pub struct Tls {
    files: TlsFiles,
    loaded: RwLock<Loaded>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish_non_exhaustive()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn read(path: &PathBuf) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.clone(), source })
}

fn load(files: &TlsFiles) -> Result<Loaded, TlsError> {
    let contents = vec![read(&files.cert)?, read(&files.key)?, read(&files.ca)?];
    let pem =
        |path: &PathBuf, e: rustls::pki_types::pem::Error| TlsError::Pem { path: path.clone(), message: e.to_string() };
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(&contents[0]).collect::<Result<_, _>>().map_err(|e| pem(&files.cert, e))?;
    if certs.is_empty() {
        return Err(TlsError::Pem { path: files.cert.clone(), message: "no certificate in the file".into() });
    }
    let key = PrivateKeyDer::from_pem_slice(&contents[1]).map_err(|e| pem(&files.key, e))?;
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(&contents[2]) {
        roots.add(ca.map_err(|e| pem(&files.ca, e))?).map_err(|e| TlsError::Config(format!("CA: {e}")))?;
    }
    if roots.is_empty() {
        return Err(TlsError::Pem { path: files.ca.clone(), message: "no CA certificate in the file".into() });
    }
    let roots = Arc::new(roots);
    let config = |e: rustls::Error| TlsError::Config(e.to_string());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), provider())
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs.clone(), key.clone_key())
        .map_err(config)?;
    server.alpn_protocols = vec![b"h2".to_vec()];
    let mut client = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(config)?
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .map_err(config)?;
    client.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Loaded { contents, server: Arc::new(server), client: Arc::new(client) })
}

impl Tls {
    /// Loads the files (all must be valid).
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let loaded = load(&files)?;
        Ok(Arc::new(Self { files, loaded: RwLock::new(loaded) }))
    }

    /// Re-reads the files: `Ok(true)` when they changed and now apply.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let contents = vec![read(&self.files.cert)?, read(&self.files.key)?, read(&self.files.ca)?];
        let unchanged = self.loaded.read().map(|l| l.contents == contents).unwrap_or(false);
        if unchanged {
            return Ok(false);
        }
        let next = load(&self.files)?;
        if let Ok(mut l) = self.loaded.write() {
            *l = next;
        }
        Ok(true)
    }

    /// Re-reads the files every `every`.
    pub fn spawn_reload(self: &Arc<Self>, every: Duration) {
        let tls = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let Some(tls) = tls.upgrade() else { return };
                match tls.reload() {
                    Ok(true) => tracing::info!(cert = %tls.files.cert.display(), "gRPC TLS certificates reloaded"),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "gRPC TLS files do not load; keeping the current ones"),
                }
            }
        });
    }

    fn server_config(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.loaded.read().ok().map(|l| Arc::clone(&l.server))
    }

    fn client_config(&self) -> Option<Arc<rustls::ClientConfig>> {
        self.loaded.read().ok().map(|l| Arc::clone(&l.client))
    }
}

static INSTALLED: OnceLock<Arc<Tls>> = OnceLock::new();

/// Makes every later [`connect_lazy`] of this process dial with `tls`.
pub fn install(tls: Arc<Tls>) -> Result<(), TlsError> {
    INSTALLED.set(tls).map_err(|_| TlsError::Config("TLS is already installed in this process".into()))
}

/// Whether this process dials with TLS.
pub fn installed() -> bool {
    INSTALLED.get().is_some()
}

/// A channel to `endpoint`, connected on first use: through TLS when it is
/// [`install`]ed, else in plain text.
pub fn connect_lazy(endpoint: Endpoint) -> Channel {
    match INSTALLED.get() {
        Some(tls) => endpoint.connect_with_connector_lazy(Connector { tls: Arc::clone(tls) }),
        None => endpoint.connect_lazy(),
    }
}

/// Dials TCP, then TLS with the client certificate.
#[derive(Clone)]
struct Connector {
    tls: Arc<Tls>,
}

impl tower::Service<Uri> for Connector {
    type Response = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tls = Arc::clone(&self.tls);
        Box::pin(async move {
            let host = uri.host().ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no host"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let name = tls.files.server_name.clone().unwrap_or(host);
            let name = ServerName::try_from(name).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let config = tls.client_config().ok_or_else(|| io::Error::other("TLS configuration unavailable"))?;
            let stream = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await?;
            Ok(hyper_util::rt::TokioIo::new(stream))
        })
    }
}

/// A connection accepted on the gRPC port: plain, or after a TLS handshake.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Conn::Plain(_) => "Conn::Plain",
            Conn::Tls(_) => "Conn::Tls",
        })
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        match self {
            Conn::Plain(s) => s.connect_info(),
            Conn::Tls(s) => s.get_ref().0.connect_info(),
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// Longest a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The connections of `listener`: with `tls`, each after its handshake on
/// a task of its own (a slow or failing one holds nobody up; a peer
/// without a certificate the CA signed is refused there).
pub fn incoming(
    listener: TcpListener,
    tls: Option<Arc<Tls>>,
) -> impl futures::Stream<Item = io::Result<Conn>> + Send + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<Conn>(64);
    let accept = tokio::spawn(async move {
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "gRPC accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let Some(tls) = &tls else {
                if tx.send(Conn::Plain(tcp)).await.is_err() {
                    return;
                }
                continue;
            };
            let Some(config) = tls.server_config() else { continue };
            let tx = tx.clone();
            tokio::spawn(async move {
                let handshake = tokio_rustls::TlsAcceptor::from(config).accept(tcp);
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                    Ok(Ok(stream)) => {
                        let _ = tx.send(Conn::Tls(Box::new(stream))).await;
                    }
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "gRPC TLS handshake refused"),
                    Err(_) => tracing::debug!(%peer, "gRPC TLS handshake timed out"),
                }
            });
        }
    });
    let guard = AbortOnDrop(accept);
    futures::stream::unfold((rx, guard), |(mut rx, guard)| async move { rx.recv().await.map(|c| (Ok(c), (rx, guard))) })
}

/// Stops the accept loop when the server drops its incoming stream.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
