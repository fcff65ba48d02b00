//! The gateway's HTTPS listener: rustls over TCP, HTTP/1.1 and HTTP/2 (ALPN),
//! graceful shutdown.
//!
//! Client certificates are *requested* but not required, and any chain is
//! accepted at the TLS layer, as Vault's listener does (`tls.RequestClientCert`):
//! a client without a certificate, or with one from a CA this listener knows
//! nothing about, still gets an HTTPS connection. What the TLS layer does check
//! is the handshake signature (`CertificateVerify`), so a client that presents
//! a chain has proved it holds the private key of its leaf. Whether that chain
//! is *trusted* is decided later, per request, by the `cert` auth method
//! against the CAs configured in its roles; the chain reaches it as the request
//! extension [`ClientCertChain`] (DER, leaf first, empty when none).
//!
//! A slow or silent client never holds up the accept loop: every handshake runs
//! in its own task with a deadline, and an HTTP/1 connection that does not send
//! its request headers in time is closed.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::ClientCertChain;

/// How long a client has to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight connections may take to finish after shutdown begins.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an HTTP/1 client has to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// A listener TLS configuration that cannot be built. The text names the file
/// and the problem, never key material.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    #[error("{what} {path}: {message}")]
    File {
        /// `tls_cert_file` or `tls_key_file`.
        what: &'static str,
        path: String,
        message: String,
    },
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
}

fn file_error(what: &'static str, path: &Path, message: impl Into<String>) -> ListenerError {
    ListenerError::File {
        what,
        path: path.display().to_string(),
        message: message.into(),
    }
}

fn read_pem(what: &'static str, path: &Path) -> Result<Vec<u8>, ListenerError> {
    std::fs::read(path).map_err(|e| file_error(what, path, format!("cannot read: {e}")))
}

/// Reads the certificate chain (leaf first) of `tls_cert_file`.
fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ListenerError> {
    const WHAT: &str = "tls_cert_file";
    let pem = read_pem(WHAT, path)?;
    let certs = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(WHAT, path, format!("invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(WHAT, path, "no CERTIFICATE block found in PEM"));
    }
    Ok(certs)
}

/// Reads the private key (PKCS#8, PKCS#1 or SEC1) of `tls_key_file`.
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, ListenerError> {
    const WHAT: &str = "tls_key_file";
    let pem = read_pem(WHAT, path)?;
    // Never echo the parser's view of the file: it holds a private key.
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|_| file_error(WHAT, path, "invalid PEM"))?
        .ok_or_else(|| file_error(WHAT, path, "no PRIVATE KEY block found in PEM"))
}

/// The server TLS configuration of the HTTP listener: the ring provider,
/// TLS 1.2 and 1.3, ALPN `h2` and `http/1.1`, client certificates requested
/// but not required (see the module documentation for who decides trust).
pub fn tls_config(
    cert_pem_file: &Path,
    key_pem_file: &Path,
) -> Result<Arc<rustls::ServerConfig>, ListenerError> {
    reloadable_tls_config(cert_pem_file, key_pem_file, &ClientAuth::Request).map(|(c, _)| c)
}

/// What the listener asks of clients' certificates.
#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// Requested, any chain accepted (the cert auth method judges trust).
    Request,
    /// Verified against the CAs in `ca_file` when presented; with
    /// `required`, a client without one is refused
    /// (`tls_client_ca_file`, `tls_require_and_verify_client_cert`).
    Verify {
        ca_file: std::path::PathBuf,
        required: bool,
    },
}

fn client_verifier(
    auth: &ClientAuth,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, ListenerError> {
    match auth {
        ClientAuth::Request => Ok(Arc::new(RequestClientCert::new(provider))),
        ClientAuth::Verify { ca_file, required } => {
            const WHAT: &str = "tls_client_ca_file";
            let pem = read_pem(WHAT, ca_file)?;
            let mut roots = rustls::RootCertStore::empty();
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert =
                    cert.map_err(|e| file_error(WHAT, ca_file, format!("invalid PEM: {e}")))?;
                roots
                    .add(cert)
                    .map_err(|e| file_error(WHAT, ca_file, format!("unusable CA: {e}")))?;
            }
            if roots.is_empty() {
                return Err(file_error(
                    WHAT,
                    ca_file,
                    "no CERTIFICATE block found in PEM",
                ));
            }
            let builder = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            );
            let builder = if *required {
                builder
            } else {
                builder.allow_unauthenticated()
            };
            builder
                .build()
                .map_err(|e| file_error(WHAT, ca_file, format!("unusable: {e}")))
        }
    }
}

/// [`tls_config`] and the handle that swaps its certificate and key
/// (SIGHUP): new handshakes use the new pair, open connections go on.
pub fn reloadable_tls_config(
    cert_pem_file: &Path,
    key_pem_file: &Path,
    client_auth: &ClientAuth,
) -> Result<(Arc<rustls::ServerConfig>, CertReloader), ListenerError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let current = certified_key(cert_pem_file, key_pem_file, &provider)?;
    let resolver = Arc::new(SwappableCert(std::sync::RwLock::new(current)));
    let verifier = client_verifier(client_auth, &provider)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(resolver.clone());
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((
        Arc::new(config),
        CertReloader {
            resolver,
            provider,
            cert_file: cert_pem_file.to_path_buf(),
            key_file: key_pem_file.to_path_buf(),
        },
    ))
}

/// Reads a certificate chain and its key, checking that they match.
fn certified_key(
    cert_pem_file: &Path,
    key_pem_file: &Path,
    provider: &CryptoProvider,
) -> Result<Arc<rustls::sign::CertifiedKey>, ListenerError> {
    let certs = load_certs(cert_pem_file)?;
    let key = load_key(key_pem_file)?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|_| file_error("tls_key_file", key_pem_file, "unsupported private key"))?;
    let ck = rustls::sign::CertifiedKey::new(certs, signing);
    match ck.keys_match() {
        Ok(()) => Ok(Arc::new(ck)),
        Err(rustls::Error::InconsistentKeys(_)) => Err(file_error(
            "tls_key_file",
            key_pem_file,
            format!(
                "the key does not match the certificate in {}",
                cert_pem_file.display()
            ),
        )),
        Err(other) => Err(ListenerError::Tls(other)),
    }
}

/// The listener's certificate, replaceable while serving.
#[derive(Debug)]
struct SwappableCert(std::sync::RwLock<Arc<rustls::sign::CertifiedKey>>);

impl rustls::server::ResolvesServerCert for SwappableCert {
    fn resolve(
        &self,
        _hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// Re-reads the listener's certificate and key files (see
/// [`reloadable_tls_config`]).
#[derive(Clone)]
pub struct CertReloader {
    resolver: Arc<SwappableCert>,
    provider: Arc<CryptoProvider>,
    cert_file: std::path::PathBuf,
    key_file: std::path::PathBuf,
}

impl CertReloader {
    /// Loads the files again; on any error the old pair stays in use.
    pub fn reload(&self) -> Result<(), ListenerError> {
        let fresh = certified_key(&self.cert_file, &self.key_file, &self.provider)?;
        *self.resolver.0.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }
}

/// Requests a client certificate, accepts any chain (trust is the cert auth
/// method's decision, against its configured CAs), and verifies the
/// handshake signature so the client proves it holds the leaf's key.
#[derive(Debug)]
struct RequestClientCert {
    algorithms: WebPkiSupportedAlgorithms,
}

impl RequestClientCert {
    fn new(provider: &CryptoProvider) -> Self {
        RequestClientCert {
            algorithms: provider.signature_verification_algorithms,
        }
    }
}

impl ClientCertVerifier for RequestClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No hints: a client should send whatever certificate it has.
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // Deliberately no chain validation here (Vault's RequestClientCert):
        // the cert auth method validates the chain against its own CAs.
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Serves the API over HTTPS on `listener` until `shutdown`; then stops
/// accepting and lets in-flight connections finish (for up to 10 s).
pub async fn serve_tls(
    listener: TcpListener,
    gw: crate::Gateway,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_tls_router(listener, crate::router(gw), tls, shutdown).await
}

/// Timings of the listener (shortened in tests).
#[derive(Clone, Copy)]
struct Limits {
    handshake: Duration,
    drain: Duration,
}

/// [`serve_tls`] for any router: every request carries the extensions
/// `ConnectInfo<SocketAddr>` and [`ClientCertChain`].
pub(crate) async fn serve_tls_router(
    listener: TcpListener,
    router: Router,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = Limits {
        handshake: HANDSHAKE_TIMEOUT,
        drain: DRAIN_TIMEOUT,
    };
    serve_with(listener, router, tls, shutdown, limits).await
}

async fn serve_with(
    listener: TcpListener,
    router: Router,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: Limits,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    let graceful = GracefulShutdown::new();
    // Tells connections still in their handshake to give up.
    let (stopping_tx, stopping_rx) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    if !is_connection_error(&e) {
                        // e.g. out of file descriptors: back off instead of spinning.
                        tracing::error!(error = %e, "HTTPS listener: accept failed");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    continue;
                }
            },
        };
        // Without TCP_NODELAY a response written in two segments waits for
        // the client's delayed ACK: ~40 ms tails.
        let _ = tcp.set_nodelay(true);
        connections.spawn(serve_connection(
            tcp,
            peer,
            acceptor.clone(),
            router.clone(),
            graceful.watcher(),
            stopping_rx.clone(),
            limits,
        ));
    }
    drop(listener);
    let _ = stopping_tx.send(true);
    if tokio::time::timeout(limits.drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            remaining = connections.len(),
            "HTTPS listener: connections still open after the shutdown grace period; closing them"
        );
    }
    connections.shutdown().await;
    Ok(())
}

fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// One connection: the handshake (bounded), then HTTP until the client is
/// done or the listener shuts down.
async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    router: Router,
    watcher: Watcher,
    mut stopping: watch::Receiver<bool>,
    limits: Limits,
) {
    let stream = tokio::select! {
        r = tokio::time::timeout(limits.handshake, acceptor.accept(tcp)) => match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        },
        _ = stopping.wait_for(|s| *s) => return,
    };
    let (_, session) = stream.get_ref();
    let chain = ClientCertChain(
        session
            .peer_certificates()
            .map(|certs| certs.iter().map(|c| c.to_vec()).collect())
            .unwrap_or_default(),
    );
    let h2 = session.alpn_protocol() == Some(b"h2".as_slice());

    let service = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        req.extensions_mut().insert(chain.clone());
        router.clone().oneshot(req)
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    // HTTP/2 over TLS is negotiated with ALPN (RFC 9113 §3.2); pinning the
    // version also spares hyper sniffing a preface a silent client never sends.
    let builder = if h2 {
        builder.http2_only()
    } else {
        builder.http1_only()
    };
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    if let Err(e) = watcher.watch(conn.into_owned()).await {
        tracing::debug!(%peer, error = %e, "HTTPS connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use axum::Extension;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    use std::path::PathBuf;
    use tokio::io::AsyncWriteExt;

    struct Pki {
        _dir: tempfile::TempDir,
        ca_pem: String,
        cert_file: PathBuf,
        key_file: PathBuf,
        client_pem: String,
        client_key_pem: String,
        client_der: Vec<u8>,
    }

    fn pki() -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().unwrap();
        let mut sp = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = sp.signed_by(&server_key, &issuer).unwrap();

        let client_key = KeyPair::generate().unwrap();
        let mut cp = CertificateParams::new(Vec::<String>::new()).unwrap();
        cp.distinguished_name.push(DnType::CommonName, "client");
        cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client = cp.signed_by(&client_key, &issuer).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let cert_file = dir.path().join("server.pem");
        let key_file = dir.path().join("server-key.pem");
        std::fs::write(&cert_file, server.pem()).unwrap();
        std::fs::write(&key_file, server_key.serialize_pem()).unwrap();
        Pki {
            _dir: dir,
            ca_pem: ca_cert.pem(),
            cert_file,
            key_file,
            client_pem: client.pem(),
            client_key_pem: client_key.serialize_pem(),
            client_der: client.der().to_vec(),
        }
    }

    async fn echo(
        ConnectInfo(peer): ConnectInfo<SocketAddr>,
        Extension(chain): Extension<ClientCertChain>,
    ) -> String {
        let first = chain.0.first().map(hex::encode).unwrap_or_default();
        format!("{} {peer} {first}", chain.0.len())
    }

    struct Server {
        port: u16,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<std::io::Result<()>>,
    }

    async fn start(p: &Pki, limits: Limits) -> Server {
        let tls = tls_config(&p.cert_file, &p.key_file).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let router = Router::new().route("/echo", get(echo));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve_with(
            listener,
            router,
            tls,
            async {
                let _ = rx.await;
            },
            limits,
        ));
        Server {
            port,
            stop: Some(tx),
            task,
        }
    }

    fn client(p: &Pki, identity: bool) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(p.ca_pem.as_bytes()).unwrap())
            .timeout(Duration::from_secs(10));
        if identity {
            let pem = format!("{}{}", p.client_pem, p.client_key_pem);
            b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
        }
        b.build().unwrap()
    }

    async fn get_echo(c: &reqwest::Client, port: u16) -> (u16, String) {
        let r = c
            .get(format!("https://localhost:{port}/echo"))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    const FAST: Limits = Limits {
        handshake: Duration::from_secs(10),
        drain: Duration::from_secs(5),
    };

    #[tokio::test]
    async fn listener_without_client_cert() {
        let p = pki();
        let s = start(&p, FAST).await;
        let (status, body) = get_echo(&client(&p, false), s.port).await;
        assert_eq!(status, 200);
        let mut parts = body.split(' ');
        assert_eq!(parts.next(), Some("0"));
        let peer: SocketAddr = parts.next().unwrap().parse().unwrap();
        assert!(peer.ip().is_loopback());
        assert_ne!(peer.port(), s.port);
    }

    #[tokio::test]
    async fn listener_with_client_cert() {
        let p = pki();
        let s = start(&p, FAST).await;
        let (status, body) = get_echo(&client(&p, true), s.port).await;
        assert_eq!(status, 200);
        let parts: Vec<&str> = body.split(' ').collect();
        assert_eq!(parts[0], "1");
        assert_eq!(parts[2], hex::encode(&p.client_der));
        // TLS 1.2 (its own CertificateVerify path) too.
        let pem = format!("{}{}", p.client_pem, p.client_key_pem);
        let tls12 = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(p.ca_pem.as_bytes()).unwrap())
            .identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap())
            .max_tls_version(reqwest::tls::Version::TLS_1_2)
            .build()
            .unwrap();
        let (status, body) = get_echo(&tls12, s.port).await;
        assert_eq!(status, 200);
        assert!(body.starts_with("1 "), "{body}");
    }

    /// Presents `p`'s client certificate but signs with another key.
    #[derive(Debug)]
    struct WrongKey(Arc<rustls::sign::CertifiedKey>);

    impl rustls::client::ResolvesClientCert for WrongKey {
        fn resolve(
            &self,
            _hints: &[&[u8]],
            _schemes: &[SignatureScheme],
        ) -> Option<Arc<rustls::sign::CertifiedKey>> {
            Some(self.0.clone())
        }

        fn has_certs(&self) -> bool {
            true
        }
    }

    #[tokio::test]
    async fn listener_refuses_a_client_without_the_leaf_key() {
        use tokio::io::AsyncReadExt;
        let p = pki();
        let s = start(&p, FAST).await;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in rustls_pemfile::certs(&mut p.ca_pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        let wrong = KeyPair::generate().unwrap();
        let wrong_key = provider
            .key_provider
            .load_private_key(PrivateKeyDer::try_from(wrong.serialize_der()).unwrap())
            .unwrap();
        let certified = Arc::new(rustls::sign::CertifiedKey::new(
            vec![CertificateDer::from(p.client_der.clone())],
            wrong_key,
        ));
        for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
            let config = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(&[version])
                .unwrap()
                .with_root_certificates(roots.clone())
                .with_client_cert_resolver(Arc::new(WrongKey(certified.clone())));
            let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
            let tcp = TcpStream::connect(("127.0.0.1", s.port)).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
            // TLS 1.2 fails in the handshake; with TLS 1.3 the client finishes
            // first and the server's alert ends the connection.
            let Ok(mut tls) = connector.connect(name, tcp).await else {
                continue;
            };
            let _ = tls
                .write_all(b"GET /echo HTTP/1.1\r\nhost: localhost\r\n\r\n")
                .await;
            let mut out = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut out)).await;
            assert!(
                !String::from_utf8_lossy(&out).contains("200 OK"),
                "{version:?}: served a client that does not hold the leaf's key"
            );
        }
        // The listener is still serving.
        assert_eq!(get_echo(&client(&p, true), s.port).await.0, 200);
    }

    #[tokio::test]
    async fn listener_accepts_a_client_cert_from_an_unknown_ca() {
        let p = pki();
        let other = pki();
        let s = start(&p, FAST).await;
        let pem = format!("{}{}", other.client_pem, other.client_key_pem);
        let c = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(p.ca_pem.as_bytes()).unwrap())
            .identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap())
            .build()
            .unwrap();
        let (status, body) = get_echo(&c, s.port).await;
        assert_eq!(status, 200);
        assert!(body.starts_with("1 "));
        assert!(body.ends_with(&hex::encode(&other.client_der)));
    }

    #[tokio::test]
    async fn listener_survives_plain_http() {
        let p = pki();
        let s = start(&p, FAST).await;
        let plain = reqwest::Client::new()
            .get(format!("http://127.0.0.1:{}/echo", s.port))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        assert!(plain.is_err(), "plain HTTP must not be served: {plain:?}");
        let (status, _) = get_echo(&client(&p, false), s.port).await;
        assert_eq!(status, 200);
    }

    #[tokio::test]
    async fn listener_silent_client_does_not_block_others() {
        let p = pki();
        let s = start(&p, FAST).await;
        let mut silent = TcpStream::connect(("127.0.0.1", s.port)).await.unwrap();
        // Half a ClientHello record header, then nothing.
        silent.write_all(&[0x16, 0x03]).await.unwrap();
        let _idle = TcpStream::connect(("127.0.0.1", s.port)).await.unwrap();
        let (status, _) =
            tokio::time::timeout(Duration::from_secs(5), get_echo(&client(&p, true), s.port))
                .await
                .expect("a silent client blocked another one");
        assert_eq!(status, 200);
        drop(silent);
    }

    #[tokio::test]
    async fn listener_handshake_times_out() {
        let p = pki();
        let limits = Limits {
            handshake: Duration::from_millis(200),
            drain: Duration::from_secs(5),
        };
        let s = start(&p, limits).await;
        let mut silent = TcpStream::connect(("127.0.0.1", s.port)).await.unwrap();
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::io::AsyncReadExt::read(&mut silent, &mut buf),
        )
        .await
        .expect("the server should close a silent connection");
        assert!(matches!(n, Ok(0) | Err(_)));
    }

    #[tokio::test]
    async fn listener_shuts_down_gracefully() {
        let p = pki();
        let mut s = start(&p, FAST).await;
        let c = client(&p, false);
        // A kept-alive idle connection must not hold shutdown up.
        assert_eq!(get_echo(&c, s.port).await.0, 200);
        let _silent = TcpStream::connect(("127.0.0.1", s.port)).await.unwrap();
        let started = std::time::Instant::now();
        s.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(8), &mut s.task)
            .await
            .expect("shutdown took too long")
            .unwrap()
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(TcpStream::connect(("127.0.0.1", s.port)).await.is_err());
    }

    #[test]
    fn listener_config_errors_name_the_file() {
        let p = pki();
        let missing = p.cert_file.with_file_name("nope.pem");
        let e = tls_config(&missing, &p.key_file).unwrap_err().to_string();
        assert!(e.contains("tls_cert_file") && e.contains("nope.pem"), "{e}");
        let e = tls_config(&p.cert_file, &missing).unwrap_err().to_string();
        assert!(
            e.contains("tls_key_file") && e.contains("cannot read"),
            "{e}"
        );
        // A key file given as the certificate, and the other way round.
        let e = tls_config(&p.key_file, &p.key_file)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tls_cert_file") && e.contains("no CERTIFICATE"),
            "{e}"
        );
        let e = tls_config(&p.cert_file, &p.cert_file)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tls_key_file") && e.contains("no PRIVATE KEY"),
            "{e}"
        );
        // A key that belongs to another certificate.
        let other = KeyPair::generate().unwrap();
        let other_file = p.key_file.with_file_name("other-key.pem");
        std::fs::write(&other_file, other.serialize_pem()).unwrap();
        let e = tls_config(&p.cert_file, &other_file)
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not match"), "{e}");
        assert!(!e.contains("PRIVATE KEY-----"), "{e}");
        let config = tls_config(&p.cert_file, &p.key_file).unwrap();
        assert_eq!(
            config.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
    }
}
