//! The service runtime: how every Bulwark service serves gRPC and calls its peers.
//!
//! * [`serve`] runs a tonic server with mTLS (client certificates required,
//!   signed by the internal CA), one span per RPC continuing the caller's trace
//!   ([`GrpcTraceLayer`]) and the per-RPC peer allow-list ([`PeerAuthzLayer`]).
//!   Every server also answers `bulwark.telemetry.v1.Telemetry/Scrape` (the
//!   process's metrics) for the gateway.
//! * [`connect`] makes a lazily connected, multiplexed mTLS channel to a peer
//!   with a client span per call (trace context and request id propagated)
//!   and a deadline per call ([`DEFAULT_RPC_DEADLINE`], or the config's
//!   `default_max_request_duration` through [`connect_replicas_with_deadline`]).
//! * [`SealWatcher`] follows the seal service's state stream and keeps a
//!   service's [`Keyring`] in step: keys fetched on unseal, zeroized on seal or
//!   when the stream breaks (fail closed).

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bulwark_proto::seal::v1::seal_client::SealClient;
use bulwark_proto::seal::v1::{ServiceKeyRequest, WatchSealStateRequest};
use bulwark_proto::telemetry::v1::telemetry_server::{Telemetry, TelemetryServer};
use bulwark_proto::telemetry::v1::{ScrapeRequest, ScrapeResponse};
use futures::future::BoxFuture;
use futures::StreamExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::Routes;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;
use zeroize::{Zeroize, Zeroizing};

use crate::keyring::{DataKey, KeyError, KeyLoader, Keyring};
use crate::names::ServiceName;
use crate::peer::{AllowList, PeerAuthzLayer};
use crate::telemetry::{GrpcClientTrace, GrpcTraceLayer};
use crate::tls::ServiceIdentity;

/// Largest gRPC message on the paths that carry request bodies (kv values,
/// audit entries): Vault accepts 32 MiB requests, and an audit entry carries
/// the request body plus its envelope.
pub const MAX_BODY_MESSAGE: usize = 96 * 1024 * 1024;

/// A channel to a peer service (one address, or several replicas): mTLS,
/// HTTP/2 multiplexed, one client span per call with the trace context and
/// request id propagated.
pub type Channel = GrpcClientTrace<Replicas>;

/// Every server's telemetry service (the process's metrics), called by the
/// gateway's `sys/metrics`.
const TELEMETRY_SERVICE: &str = "/bulwark.telemetry.v1.Telemetry/";

#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    #[error("gRPC transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("invalid address {0:?}")]
    BadAddress(String),
}

/// Serves `routes` on `listener` until `shutdown` completes.
pub async fn serve(
    identity: &ServiceIdentity,
    allow: AllowList,
    routes: Routes,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), GrpcError> {
    // TCP_NODELAY on every accepted connection (set here: a custom incoming
    // stream bypasses the builder's setting), or small gRPC answers wait for
    // the peer's delayed ACK.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    // Graceful shutdown waits for every open call, and watch streams held
    // by peers (seal state, revocations, policies) only end when the peer
    // goes: after `DRAIN` the remaining calls are dropped.
    let (fired_tx, fired_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown.await;
        let _ = fired_tx.send(());
    };
    let allow = allow.allow(TELEMETRY_SERVICE, &[ServiceName::Gateway]);
    let routes = routes.add_service(TelemetryServer::new(TelemetryService));
    let server = tonic::transport::Server::builder()
        .tls_config(identity.server_tls())?
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_max_pending_accept_reset_streams(Some(MAX_PENDING_ACCEPT_RESETS))
        .layer(GrpcTraceLayer)
        .layer(PeerAuthzLayer::new(allow))
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown);
    tokio::pin!(server);
    tokio::select! {
        r = &mut server => r?,
        _ = async {
            if fired_rx.await.is_ok() {
                tokio::time::sleep(DRAIN).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => tracing::debug!("shutdown: open calls dropped after the drain period"),
    }
    Ok(())
}

/// Answers `Scrape` with this process's metrics.
struct TelemetryService;

#[tonic::async_trait]
impl Telemetry for TelemetryService {
    async fn scrape(
        &self,
        _req: tonic::Request<ScrapeRequest>,
    ) -> Result<tonic::Response<ScrapeResponse>, tonic::Status> {
        Ok(tonic::Response::new(ScrapeResponse {
            instance: crate::metrics::instance_id().to_string(),
            process: crate::metrics::process_name().to_string(),
            families: crate::metrics::metrics().gather_encoded(),
        }))
    }
}

/// How many calls a peer may cancel before this server has taken them up,
/// before the server drops the connection. h2's default (20) guards a
/// public server against the "rapid reset" attack; here every peer is an
/// authenticated service, and a server that stalls for a while (a pause,
/// a stuck disk) legitimately finds every call its callers gave up on at
/// their deadline reset in its queue: with the default it then answered
/// with GOAWAY (ENHANCE_YOUR_CALM), failing every other call on the
/// connection. Bounded still: the gateway handles at most
/// `max_request_in_flight` requests (4096 by default) at once.
const MAX_PENDING_ACCEPT_RESETS: usize = 16 * 1024;

/// How long a stopping server waits for open calls to finish.
pub const DRAIN: Duration = Duration::from_secs(2);

/// The deadline of each call on a channel made by [`connect`] or
/// [`connect_replicas`]: Vault's default maximum request duration.
pub const DEFAULT_RPC_DEADLINE: Duration = crate::config::DEFAULT_MAX_REQUEST_DURATION;

/// A lazily connected channel from `identity` to the service `target` at `addr`
/// (`host:port`). The server must present a certificate naming `target`.
pub fn connect(
    identity: &ServiceIdentity,
    target: ServiceName,
    addr: &str,
) -> Result<Channel, GrpcError> {
    connect_replicas(identity, target, &[addr.to_string()])
}

/// A channel to the replicas of `target` at `addrs`, in order of
/// preference: each call goes to the first replica whose health check says
/// SERVING (followed with `grpc.health.v1.Health/Watch`, so a replica that
/// dies is left at once and one that comes back is used again). With one
/// address there is nothing to choose and nothing is watched.
pub fn connect_replicas(
    identity: &ServiceIdentity,
    target: ServiceName,
    addrs: &[String],
) -> Result<Channel, GrpcError> {
    connect_replicas_with_deadline(identity, target, addrs, DEFAULT_RPC_DEADLINE)
}

/// [`connect_replicas`] with a deadline per call: a call whose answer has
/// not begun within `deadline` fails with `DEADLINE_EXCEEDED` (and is
/// cancelled at the peer), so a stopped or stuck peer costs each caller a
/// bounded wait instead of piling calls up. Streams are bounded only until
/// their first answer (their headers), not for their whole life.
pub fn connect_replicas_with_deadline(
    identity: &ServiceIdentity,
    target: ServiceName,
    addrs: &[String],
    deadline: Duration,
) -> Result<Channel, GrpcError> {
    if addrs.is_empty() {
        return Err(GrpcError::BadAddress(String::new()));
    }
    let mut channels = Vec::with_capacity(addrs.len());
    for addr in addrs {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("https://{addr}"))
            .map_err(|_| GrpcError::BadAddress(addr.to_string()))?
            .tls_config(identity.client_tls(target))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        channels.push(endpoint.connect_lazy());
    }
    let healthy: Arc<[AtomicBool]> = channels.iter().map(|_| AtomicBool::new(true)).collect();
    if channels.len() > 1 {
        for (i, ch) in channels.iter().enumerate() {
            tokio::spawn(watch_health(ch.clone(), healthy.clone(), i));
        }
    }
    Ok(GrpcClientTrace::new(Replicas {
        channels: channels.into(),
        healthy,
        deadline,
    }))
}

/// The replicas of one service (see [`connect_replicas`]).
#[derive(Clone)]
pub struct Replicas {
    channels: Arc<[tonic::transport::Channel]>,
    healthy: Arc<[AtomicBool]>,
    /// The longest a call may wait for its answer to begin.
    deadline: Duration,
}

/// The deadline of each call on `ch` (for streams that carry many calls'
/// worth of messages, which must wait no longer for each answer).
pub fn deadline(ch: &Channel) -> Duration {
    ch.get_ref().deadline
}

/// One channel per replica of `ch`'s service, for what must reach every
/// replica (a watch stream from each).
pub fn each_replica(ch: &Channel) -> Vec<Channel> {
    let r = ch.get_ref();
    r.channels
        .iter()
        .map(|c| {
            GrpcClientTrace::new(Replicas {
                channels: Arc::new([c.clone()]),
                healthy: Arc::new([AtomicBool::new(true)]),
                deadline: r.deadline,
            })
        })
        .collect()
}

impl Replicas {
    /// The replica a call goes to now: the first healthy one (the first of
    /// all when none is).
    fn pick(&self) -> tonic::transport::Channel {
        let i = self
            .healthy
            .iter()
            .position(|h| h.load(Ordering::Relaxed))
            .unwrap_or(0);
        self.channels[i].clone()
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for Replicas {
    type Response = http::Response<tonic::body::Body>;
    /// A transport error, or a `tonic::Status` (`DEADLINE_EXCEEDED`) that
    /// tonic hands to the caller as it is.
    type Error = tonic::codegen::StdError;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        // Readiness is the chosen replica's, awaited in the call.
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
        use tower::ServiceExt;
        let ch = self.pick();
        let deadline = self.deadline;
        Box::pin(async move {
            match tokio::time::timeout(deadline, ch.oneshot(req)).await {
                Ok(answer) => answer.map_err(Into::into),
                // Dropping the call resets its HTTP/2 stream: the peer's
                // handler is cancelled too.
                Err(_) => Err(Box::new(tonic::Status::deadline_exceeded(format!(
                    "upstream service did not answer within {deadline:?}"
                ))) as tonic::codegen::StdError),
            }
        })
    }
}

/// Keeps `healthy[i]` in step with replica `i`'s health (SERVING or not;
/// unreachable counts as not), for as long as the channel is used.
async fn watch_health(ch: tonic::transport::Channel, healthy: Arc<[AtomicBool]>, i: usize) {
    use tonic_health::pb::health_check_response::ServingStatus as S;
    use tonic_health::pb::health_client::HealthClient;
    let weak = Arc::downgrade(&healthy);
    drop(healthy);
    loop {
        let mut client = HealthClient::new(ch.clone());
        let req = tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        };
        if let Ok(resp) = client.watch(req).await {
            let mut stream = resp.into_inner();
            while let Some(Ok(st)) = stream.next().await {
                let Some(h) = weak.upgrade() else { return };
                h[i].store(st.status == S::Serving as i32, Ordering::Relaxed);
            }
        }
        let Some(h) = weak.upgrade() else { return };
        h[i].store(false, Ordering::Relaxed);
        drop(h);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What a service knows of the seal state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SealView {
    pub initialized: bool,
    pub sealed: bool,
    /// False while the seal service cannot be reached (then `sealed` is true).
    pub connected: bool,
}

impl SealView {
    const UNKNOWN: SealView = SealView {
        initialized: false,
        sealed: true,
        connected: false,
    };
}

/// Fetches this service's keys from the seal service.
struct RemoteKeyLoader {
    seal: SealClient<Channel>,
}

impl KeyLoader for RemoteKeyLoader {
    fn load(&self, term: u32) -> BoxFuture<'_, Result<(u32, DataKey), KeyError>> {
        let mut seal = self.seal.clone();
        Box::pin(async move {
            let resp = seal
                .service_key(ServiceKeyRequest { term })
                .await
                .map_err(|s| match s.code() {
                    tonic::Code::Unavailable if s.message().contains("sealed") => KeyError::Sealed,
                    tonic::Code::NotFound => KeyError::UnknownTerm(term),
                    _ => KeyError::Unavailable(s.message().to_string()),
                })?
                .into_inner();
            let mut raw = resp.key;
            let key = if raw.len() == 32 {
                let mut k = Zeroizing::new([0u8; 32]);
                k.copy_from_slice(&raw);
                Ok((resp.term, k))
            } else {
                Err(KeyError::Unavailable(
                    "malformed key from seal service".into(),
                ))
            };
            raw.zeroize();
            key
        })
    }
}

/// Follows the seal state and keeps a keyring in step with it.
#[derive(Clone)]
pub struct SealWatcher {
    rx: watch::Receiver<SealView>,
}

impl SealWatcher {
    /// Starts following `seal`. With `keyring`, fetches the service's active key
    /// on every unseal and clears the keyring on every seal.
    pub fn spawn(seal: SealClient<Channel>, keyring: Option<Keyring>) -> Self {
        let (tx, rx) = watch::channel(SealView::UNKNOWN);
        tokio::spawn(watch_loop(seal, keyring, tx));
        SealWatcher { rx }
    }

    pub fn current(&self) -> SealView {
        *self.rx.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<SealView> {
        self.rx.clone()
    }

    /// Waits until the state satisfies `f` (or the watcher stops).
    pub async fn wait_for(&self, f: impl Fn(&SealView) -> bool) {
        let mut rx = self.rx.clone();
        let _ = rx.wait_for(|v| f(v)).await;
    }
}

async fn watch_loop(
    seal: SealClient<Channel>,
    keyring: Option<Keyring>,
    tx: watch::Sender<SealView>,
) {
    let loader = RemoteKeyLoader { seal: seal.clone() };
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut client = seal.clone();
        if let Ok(resp) = client.watch_seal_state(WatchSealStateRequest {}).await {
            backoff = Duration::from_millis(100);
            let mut stream = resp.into_inner();
            while let Some(Ok(state)) = stream.next().await {
                let mut sealed = state.sealed;
                if let Some(k) = &keyring {
                    if sealed {
                        k.clear();
                    } else {
                        // On unseal, and on every rotation (a new
                        // `active_term`): new writes use the active term;
                        // keys already held stay for reads of older data.
                        match loader.load(0).await {
                            Ok((term, key)) => k.set_active(term, key),
                            Err(e) => {
                                tracing::warn!(error = %e, "could not fetch service key");
                                k.clear();
                                sealed = true;
                            }
                        }
                    }
                }
                let _ = tx.send(SealView {
                    initialized: state.initialized,
                    sealed,
                    connected: true,
                });
            }
        }
        // Lost the seal service: forget every key until it answers again.
        if let Some(k) = &keyring {
            k.clear();
        }
        let initialized = tx.borrow().initialized;
        let _ = tx.send(SealView {
            initialized,
            ..SealView::UNKNOWN
        });
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// What every keyed service (all but seal and the gateway) starts with: its
/// keyring, fed from the seal service, and a health reporter that says
/// SERVING only while the service holds its key.
pub struct KeyedRuntime {
    pub keyring: Keyring,
    pub seal: SealWatcher,
    pub health: HealthReporter,
    pub health_service:
        tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>,
}

impl KeyedRuntime {
    pub fn start(seal: SealClient<Channel>) -> KeyedRuntime {
        let keyring = Keyring::with_loader(Arc::new(RemoteKeyLoader { seal: seal.clone() }));
        let watcher = SealWatcher::spawn(seal, Some(keyring.clone()));
        let health = HealthReporter::new();
        let health_service = tonic_health::pb::health_server::HealthServer::new(
            tonic_health::server::HealthService::from_health_reporter(health.clone()),
        );
        let reporter = health.clone();
        let mut rx = watcher.subscribe();
        let ring = keyring.clone();
        tokio::spawn(async move {
            loop {
                let status = if !rx.borrow_and_update().sealed && ring.is_loaded() {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                reporter.set_service_status("", status).await;
                if rx.changed().await.is_err() {
                    return;
                }
            }
        });
        KeyedRuntime {
            keyring,
            seal: watcher,
            health,
            health_service,
        }
    }
}
