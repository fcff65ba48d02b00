//! The gateway: Vault's REST API under `/v1`, answered by fanning each request
//! out to the services over mTLS gRPC.
//!
//! Invariants: the gateway is stateless apart from caches invalidated by their
//! owners' watch streams (today: the seal state); only the gateway knows
//! Vault's JSON shapes; every failure becomes Vault's `{"errors":[...]}` in one
//! place ([`error::ApiError`]).

#![forbid(unsafe_code)]

pub mod acl;
mod audit;
mod engines;
pub mod envelope;
pub mod error;
pub mod listener;
mod methods;
pub mod mounts;
pub mod observe;
mod quotas;
mod reply;
pub mod request;
mod sys;
mod token;
mod ui;
mod wrapping;

use std::future::Future;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use bulwark_proto::audit::v1::audit_client::AuditClient;
use bulwark_proto::auth::v1::auth_client::AuthClient;
use bulwark_proto::auth::v1::leases_client::LeasesClient;
use bulwark_proto::auth::v1::methods_client::MethodsClient;
use bulwark_proto::dynamicdb::v1::dynamic_db_client::DynamicDbClient;
use bulwark_proto::kv::v1::kv_client::KvClient;
use bulwark_proto::pki::v1::pki_client::PkiClient;
use bulwark_proto::policy::v1::policy_client::PolicyClient;
use bulwark_proto::seal::v1::seal_client::SealClient;
use bulwark_proto::transit::v1::transit_client::TransitClient;
use bulwark_shared::barrier::Barrier;
use bulwark_shared::grpc::{Channel, KeyedRuntime, SealWatcher};
use bulwark_shared::storage::Database;

use crate::acl::{needs_sudo, policy_op, AclCache, Caller};
use crate::error::ApiError;
use crate::request::Operation;
use bulwark_proto::policy::v1::Operation as PolicyOp;

/// Unseal keys are decoded here, before they reach the seal service.
/// Public for the fuzz targets.
pub use sys::lifecycle::decode_unseal_key;

/// The version reported to clients: the Vault API level served, plus ours.
pub const VERSION: &str = concat!("1.16.0+bulwark.", env!("CARGO_PKG_VERSION"));
pub const BUILD_DATE: &str = "2026-11-24T00:00:00Z";

/// Channels to the services the gateway fans out to.
pub struct Upstreams {
    pub seal: Channel,
    pub auth: Channel,
    pub policy: Channel,
    pub kv: Channel,
    pub audit: Channel,
    pub dynamic_db: Channel,
    pub pki: Channel,
    pub transit: Channel,
}

struct Inner {
    seal: SealClient<Channel>,
    seal_watch: SealWatcher,
    auth: AuthClient<Channel>,
    policy: PolicyClient<Channel>,
    kv: KvClient<Channel>,
    audit: AuditClient<Channel>,
    audit_need: Arc<audit::AuditNeed>,
    audit_stream: audit::AuditStream,
    acl: Arc<AclCache>,
    mounts: mounts::MountTable,
    auth_mounts: mounts::MountTable,
    /// Rate-limit and lease-count quotas (`sys/quotas/*`).
    quotas: quotas::Quotas,
    /// The bound on `/v1` requests handled at once.
    in_flight: quotas::InFlight,
    methods: MethodsClient<Channel>,
    leases: LeasesClient<Channel>,
    dynamic_db: DynamicDbClient<Channel>,
    pki: PkiClient<Channel>,
    transit: TransitClient<Channel>,
    migrations: std::sync::Mutex<std::collections::VecDeque<(String, String, String)>>,
    /// The gateway's own settings (`sys/config/metrics`).
    config: Barrier,
    scrapers: observe::Scrapers,
    /// `sys/metrics` without a token (the listener's telemetry setting).
    unauthenticated_metrics: std::sync::atomic::AtomicBool,
    /// Whether `/ui` is served (see [`ui`]).
    ui: std::sync::atomic::AtomicBool,
}

/// Shared gateway state. Cheap to clone.
#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

impl Gateway {
    /// A gateway over these services, keeping its mount table in `db`
    /// (namespace `gateway`, sealed with the gateway's own key).
    pub async fn new(
        up: Upstreams,
        db: &Database,
    ) -> Result<Self, bulwark_shared::storage::StorageError> {
        let seal = SealClient::new(up.seal.clone());
        let rt = KeyedRuntime::start(seal.clone());
        let barrier = Barrier::new(db.namespace("gateway").await?, rt.keyring.clone());
        let bus = bulwark_shared::bus::Bus::new(db.clone());
        let scrapers = observe::Scrapers::new([
            up.seal.clone(),
            up.auth.clone(),
            up.policy.clone(),
            up.kv.clone(),
            up.audit.clone(),
            up.dynamic_db.clone(),
            up.pki.clone(),
            up.transit.clone(),
        ]);
        let auth_replicas: Vec<AuthClient<Channel>> = bulwark_shared::grpc::each_replica(&up.auth)
            .into_iter()
            .map(AuthClient::new)
            .collect();
        let policy_replicas: Vec<PolicyClient<Channel>> =
            bulwark_shared::grpc::each_replica(&up.policy)
                .into_iter()
                .map(PolicyClient::new)
                .collect();
        let methods = MethodsClient::new(up.auth.clone());
        let leases = LeasesClient::new(up.auth.clone());
        let dynamic_db = DynamicDbClient::new(up.dynamic_db);
        let pki = PkiClient::new(up.pki);
        let transit = TransitClient::new(up.transit)
            .max_decoding_message_size(bulwark_shared::grpc::MAX_BODY_MESSAGE)
            .max_encoding_message_size(bulwark_shared::grpc::MAX_BODY_MESSAGE);
        let auth = AuthClient::new(up.auth);
        let policy = PolicyClient::new(up.policy);
        let acl = AclCache::new();
        acl.spawn_watchers(auth_replicas, policy_replicas);
        let audit_deadline = bulwark_shared::grpc::deadline(&up.audit);
        let audit = AuditClient::new(up.audit)
            .max_encoding_message_size(bulwark_shared::grpc::MAX_BODY_MESSAGE);
        let audit_need = audit::AuditNeed::spawn(audit.clone());
        let gw = Gateway {
            inner: Arc::new(Inner {
                seal,
                seal_watch: rt.seal,
                auth,
                policy,
                kv: KvClient::new(up.kv)
                    .max_decoding_message_size(bulwark_shared::grpc::MAX_BODY_MESSAGE)
                    .max_encoding_message_size(bulwark_shared::grpc::MAX_BODY_MESSAGE),
                audit_stream: audit::AuditStream::new(audit.clone(), audit_deadline),
                audit,
                audit_need,
                acl,
                mounts: mounts::MountTable::new(mounts::Table::Secrets, barrier.clone())
                    .with_bus(bus.clone()),
                auth_mounts: mounts::MountTable::new(mounts::Table::Auth, barrier.clone())
                    .with_bus(bus.clone()),
                quotas: quotas::Quotas::new(barrier.clone(), Some(bus.clone())),
                in_flight: quotas::InFlight::new(
                    bulwark_shared::config::DEFAULT_MAX_REQUEST_IN_FLIGHT,
                ),
                config: barrier,
                scrapers,
                unauthenticated_metrics: Default::default(),
                ui: Default::default(),
                methods,
                leases,
                dynamic_db,
                pki,
                transit,
                migrations: Default::default(),
            }),
        };
        // Mount changes made through other gateway replicas.
        let weak = Arc::downgrade(&gw.inner);
        let mut notices = bus.subscribe(mounts::MOUNTS_TOPIC);
        tokio::spawn(async move {
            while notices.recv().await.is_some() {
                let Some(inner) = weak.upgrade() else { return };
                inner.mounts.forget();
                inner.auth_mounts.forget();
                inner.quotas.forget();
            }
        });
        Ok(gw)
    }

    /// Bounds the `/v1` requests handled at once (`max_request_in_flight`):
    /// one more is refused with 503 at once rather than queued.
    pub fn set_max_request_in_flight(&self, max: usize) {
        self.inner.in_flight.set_max(max);
    }

    /// Lets `sys/metrics` answer without a token (`telemetry {
    /// unauthenticated_metrics_access = true }`).
    pub fn allow_unauthenticated_metrics(&self, on: bool) {
        self.inner
            .unauthenticated_metrics
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Serves the web UI at `/ui` (the config's `ui = true`; always in dev
    /// mode). Off by default: an API-only deployment exposes no HTML.
    pub fn enable_ui(&self, on: bool) {
        self.inner
            .ui
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn ui_enabled(&self) -> bool {
        self.inner.ui.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn config_store(&self) -> &Barrier {
        &self.inner.config
    }

    pub(crate) fn scrapers(&self) -> &observe::Scrapers {
        &self.inner.scrapers
    }

    pub(crate) fn audit(&self) -> AuditClient<Channel> {
        self.inner.audit.clone()
    }

    pub(crate) fn audit_stream(&self) -> &audit::AuditStream {
        &self.inner.audit_stream
    }

    pub(crate) fn audit_need(&self) -> &audit::AuditNeed {
        &self.inner.audit_need
    }

    pub(crate) fn kv(&self) -> KvClient<Channel> {
        self.inner.kv.clone()
    }

    pub(crate) fn mounts(&self) -> &mounts::MountTable {
        &self.inner.mounts
    }

    /// The auth method table (`sys/auth`).
    pub(crate) fn auth_mounts(&self) -> &mounts::MountTable {
        &self.inner.auth_mounts
    }

    pub(crate) fn methods(&self) -> MethodsClient<Channel> {
        self.inner.methods.clone()
    }

    pub(crate) fn leases(&self) -> LeasesClient<Channel> {
        self.inner.leases.clone()
    }

    pub(crate) fn dynamic_db(&self) -> DynamicDbClient<Channel> {
        self.inner.dynamic_db.clone()
    }

    pub(crate) fn pki(&self) -> PkiClient<Channel> {
        self.inner.pki.clone()
    }

    pub(crate) fn transit(&self) -> TransitClient<Channel> {
        self.inner.transit.clone()
    }

    pub(crate) fn record_migration(&self, id: &str, from: &str, to: &str) {
        let mut m = self
            .inner
            .migrations
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if m.len() >= 64 {
            m.pop_front();
        }
        m.push_back((id.to_string(), from.to_string(), to.to_string()));
    }

    pub(crate) fn migration(&self, id: &str) -> Option<(String, String)> {
        let m = self
            .inner
            .migrations
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        m.iter()
            .find(|(i, _, _)| i == id)
            .map(|(_, f, t)| (f.clone(), t.clone()))
    }

    /// Mounts a kv engine (dev mode's `secret/`, version 2).
    pub async fn mount_kv(&self, path: &str, version: u8) -> Result<(), ApiError> {
        let entry = mounts::MountEntry {
            path: path.to_string(),
            kind: "kv".into(),
            description: "key/value secret storage".into(),
            accessor: String::new(),
            uuid: String::new(),
            config: mounts::MountConfig::default(),
            options: Some([("version".to_string(), version.to_string())].into()),
            local: false,
            seal_wrap: false,
        };
        self.mounts().enable(entry).await.map(|_| ())
    }

    pub(crate) fn seal(&self) -> SealClient<Channel> {
        self.inner.seal.clone()
    }

    pub(crate) fn auth(&self) -> AuthClient<Channel> {
        self.inner.auth.clone()
    }

    pub(crate) fn policy(&self) -> PolicyClient<Channel> {
        self.inner.policy.clone()
    }

    pub(crate) fn acl(&self) -> &AclCache {
        &self.inner.acl
    }

    /// Resolves the request's token, refusing a token bound to CIDR blocks
    /// that the client's address is not in.
    async fn authenticate(
        &self,
        headers: &HeaderMap,
        remote: Option<std::net::SocketAddr>,
    ) -> Result<Caller, ApiError> {
        let token = request::client_token(headers).ok_or_else(ApiError::permission_denied)?;
        let remote_ip = remote.map(|a| a.ip());
        let entry = self
            .acl()
            .authenticate(&mut self.auth(), &token, remote_ip)
            .await
            .inspect_err(|e| {
                tracing::debug!(status = e.status.as_u16(), "authentication failed");
            })?;
        if !acl::address_allowed(&entry.bound_cidrs, remote_ip) {
            tracing::debug!("token used outside its bound CIDRs");
            return Err(ApiError::permission_denied());
        }
        Ok(Caller { token, entry })
    }

    /// Checks the caller's policies for `pop` on `path`. Returns the
    /// decision (the winning rule's capabilities, the granting policies).
    async fn authorize(
        &self,
        caller: &Caller,
        path: &str,
        op: Operation,
        pop: PolicyOp,
    ) -> Result<bulwark_proto::policy::v1::AuthorizeResponse, ApiError> {
        // LIST requests are checked against the path with its trailing slash.
        let acl_path = if op == Operation::List && !path.ends_with('/') {
            format!("{path}/")
        } else {
            path.to_string()
        };
        let decision = self
            .acl()
            .authorize(
                &mut self.policy(),
                &caller.entry.policies,
                &acl_path,
                pop,
                needs_sudo(path, op),
            )
            .await
            .inspect_err(|e| tracing::debug!(status = e.status.as_u16(), "authorization failed"))?;
        if !decision.allowed {
            return Err(ApiError::permission_denied());
        }
        Ok(decision)
    }

    /// Whether data paths must answer 503 (sealed, or the seal service is
    /// unreachable). The watched state can trail an unseal by a moment, so a
    /// "sealed" view is confirmed with the seal service before it is believed.
    pub(crate) async fn sealed(&self) -> bool {
        if !self.inner.seal_watch.current().sealed {
            return false;
        }
        match self
            .seal()
            .status(bulwark_proto::seal::v1::StatusRequest {})
            .await
        {
            Ok(st) => st.into_inner().sealed,
            Err(_) => true,
        }
    }

    /// Waits until the gateway has seen the seal service's state at least once.
    pub async fn wait_connected(&self) {
        self.inner.seal_watch.wait_for(|v| v.connected).await
    }
}

/// The certificate chain a client presented to the HTTPS listener (DER, leaf
/// first; empty when none). The listener has checked that the client holds
/// the leaf's private key; whether the chain is trusted is for the cert auth
/// method to decide. Carried as a request extension.
#[derive(Debug, Clone, Default)]
pub struct ClientCertChain(pub Vec<Vec<u8>>);

/// One decoded API request: the path below `/v1/`, without its leading slash.
pub struct ApiRequest {
    /// The client's address, when the listener knows it.
    pub remote: Option<std::net::SocketAddr>,
    /// The client's TLS certificate chain (HTTPS listener only).
    pub client_chain: ClientCertChain,
    pub method: Method,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

/// The HTTP router: everything under `/v1/` goes through [`dispatch`]; the
/// web UI's few files (with their own headers) are beside it.
pub fn router(gw: Gateway) -> Router {
    Router::new()
        .route("/v1/{*path}", any(handle_v1))
        .fallback(|| async { ApiError::not_found() })
        .layer(middleware::map_response(common_headers))
        .merge(ui::routes())
        .layer(middleware::from_fn(observe::trace_request))
        .with_state(gw)
}

/// Serves the API on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    gw: Gateway,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    // Without TCP_NODELAY a response written in two segments waits for the
    // client's delayed ACK: ~40 ms tails.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(
        listener,
        router(gw).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Every response carries `Cache-Control: no-store` and a JSON content type
/// (even 204s), as Vault's do.
async fn common_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.entry(header::CONTENT_TYPE)
        .or_insert(HeaderValue::from_static("application/json"));
    resp
}

async fn handle_v1(State(gw): State<Gateway>, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let Some(path) = decode_path(parts.uri.path().strip_prefix("/v1/").unwrap_or_default()) else {
        return ApiError::bad_request("invalid path: escapes that are not UTF-8").into_response();
    };
    // Admitted before the body is read: overload costs no memory.
    let _permit = match quotas::overload_exempt(&path) {
        true => None,
        false => match gw.inner.in_flight.try_admit() {
            Some(p) => Some(p),
            None => return quotas::overloaded(),
        },
    };
    let query: Vec<(String, String)> = parts.uri.query().map(url_decode_pairs).unwrap_or_default();
    let remote = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0);
    let rate = match quotas::rate_limit(&gw, &parts.method, &query, &path, remote).await {
        Ok(h) => h,
        Err(refused) => return refused,
    };
    let body = match request::read_body(&parts.headers, body).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    let client_chain = parts
        .extensions
        .get::<ClientCertChain>()
        .cloned()
        .unwrap_or_default();
    let req = ApiRequest {
        remote,
        client_chain,
        method: parts.method,
        path,
        query,
        headers: parts.headers,
        body,
    };
    let mut resp = match dispatch(&gw, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    rate.decorate(resp.headers_mut());
    resp
}

/// Decodes a query string into its `key=value` pairs (`+` and `%XX`
/// decoded; invalid UTF-8 replaced). Public for the fuzz targets.
pub fn url_decode_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    String::from_utf8_lossy(&percent_decode_bytes(s, true)).into_owned()
}

/// A request path with its `%XX` escapes decoded, as Vault (Go's
/// `URL.Path`) sees it: `a%20b` is the key `a b`. `+` stays `+`. `None`
/// when the result is not UTF-8. `.`/`..` segments are refused afterwards,
/// on the decoded path, so `%2e%2e` cannot climb.
pub fn decode_path(raw: &str) -> Option<String> {
    String::from_utf8(percent_decode_bytes(raw, false)).ok()
}

fn percent_decode_bytes(s: &str, plus_is_space: bool) -> Vec<u8> {
    fn hex_val(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' if plus_is_space => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex_val(bytes[i + 1]), hex_val(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// Routes one request: the unauthenticated lifecycle endpoints first; then,
/// once unsealed, the token is resolved and the policies checked before any
/// handler runs.
pub async fn dispatch(gw: &Gateway, req: ApiRequest) -> Result<Response, ApiError> {
    if req.path.is_empty() || req.path.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(ApiError::not_found());
    }
    let op = request::operation(&req.method, &req.query)?;
    if req.path.starts_with("sys/") || req.path.starts_with("auth/token/") {
        observe::set_route(observe::system_route(&req.path));
    }
    match req.path.as_str() {
        "sys/init" => return sys::lifecycle::init(gw, req).await,
        "sys/unseal" => return sys::lifecycle::unseal(gw, req).await,
        "sys/seal-status" => return sys::lifecycle::seal_status(gw, req).await,
        "sys/health" => return sys::lifecycle::health(gw, req).await,
        "sys/leader" => return sys::lifecycle::leader(gw, req).await,
        "sys/rekey/init" => return sys::keys::rekey_init(gw, req).await,
        "sys/rekey/update" => return sys::keys::rekey_update(gw, req).await,
        "sys/rekey-recovery-key/init" => return sys::keys::rekey_recovery_init(gw, req).await,
        "sys/rekey-recovery-key/update" => return sys::keys::rekey_recovery_update(gw, req).await,
        "sys/generate-root/attempt" => return sys::keys::generate_root_attempt(gw, req).await,
        "sys/generate-root/update" => return sys::keys::generate_root_update(gw, req).await,
        _ => {}
    }
    if gw.sealed().await {
        return Err(ApiError::sealed());
    }
    let wrap_ttl = wrapping::requested_ttl(&req.headers)?;
    let path = req.path.clone();
    let mount = if path.starts_with("sys/") {
        None
    } else if let Some(below) = path.strip_prefix("auth/") {
        match gw.auth_mounts().route(below).await? {
            Some((m, rest)) if m.kind != "token" => Some((m, rest)),
            Some(_) => None,
            None => return Err(ApiError::no_route(path.trim_end_matches('/'))),
        }
    } else {
        gw.mounts().route(&path).await?
    };
    let auth_method = path.starts_with("auth/") && mount.is_some();
    if let Some((m, rest)) = &mount {
        observe::set_route(observe::mount_route(m, rest, auth_method));
    }
    // Logins and wrapping-token requests carry no token to check.
    let anonymous = match &mount {
        Some((m, rest)) if auth_method => methods::is_login(&m.kind, rest),
        Some((m, rest)) if m.kind == "pki" => engines::pki::is_public(rest, op),
        _ if path == "sys/metrics" => gw
            .inner
            .unauthenticated_metrics
            .load(std::sync::atomic::Ordering::Relaxed),
        _ => wrapping::unauthenticated(&req, &path),
    };
    // Audit entries name an auth mount by its full path (`auth/userpass/`).
    let audit_mount = mount.as_ref().map(|(m, _)| {
        let mut m = m.clone();
        if auth_method {
            m.path = format!("auth/{}", m.path);
        }
        m
    });
    // Skipped only while the audit service says no device is configured.
    let audited = audit::audited(&path) && gw.audit_need().needed();
    let mut ctx = audit::Context::new(
        observe::request_id(),
        &path,
        audit_data(&req),
        req.remote,
        audit_mount.as_ref(),
    );
    let authorized = if anonymous {
        ctx.operation = audit::operation_name(op, false);
        Ok((
            Caller::anonymous(),
            bulwark_proto::policy::v1::AuthorizeResponse {
                allowed: true,
                ..Default::default()
            },
        ))
    } else {
        authorize_request(gw, &req, op, &path, mount.as_ref(), auth_method, &mut ctx).await
    };
    let (caller, decision) = match authorized {
        Ok(v) => v,
        Err(e) => {
            if audited {
                // Refused, so nothing was acted on: both entries at once.
                ctx.log_refused(gw, &e.errors).await?;
            }
            return Err(e);
        }
    };
    // Reads of kv and cubbyhole change nothing (no lease, no wrapping
    // token): they are served first and both audit entries are recorded
    // together, one audit round trip instead of two. Anything else is
    // recorded before it is acted on.
    let side_effect_free = wrap_ttl.is_none()
        && matches!(op, Operation::Read | Operation::List)
        && matches!(&mount, Some((m, _)) if !auth_method && (m.kind == "kv" || m.kind == "cubbyhole"));
    let target = Target {
        path: &path,
        mount,
        auth_method,
    };
    if !audited {
        return route_wrapped(
            gw,
            req,
            op,
            target,
            &caller,
            &decision.capabilities,
            wrap_ttl,
        )
        .await;
    }
    // Fail-closed: nothing is acted on unless the request was recorded.
    let request_entry = if side_effect_free {
        Some(ctx.request_entry(""))
    } else {
        ctx.log_request(gw, "").await?;
        None
    };
    let resp = route_wrapped(
        gw,
        req,
        op,
        target,
        &caller,
        &decision.capabilities,
        wrap_ttl,
    )
    .await
    .unwrap_or_else(IntoResponse::into_response);
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let body = audit::ResponseBody::new(&bytes);
    let error = body.error_text();
    match request_entry {
        Some(request) => {
            ctx.log_request_and_response(gw, request, &body, &error)
                .await?
        }
        None => ctx.log_response(gw, &body, &error).await?,
    }
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

/// The request's data as an audit entry records it: the JSON body, or the
/// query parameters of a read.
fn audit_data(req: &ApiRequest) -> serde_json::Value {
    if let Ok(m) = request::json_object(&req.body) {
        if !m.is_empty() {
            return serde_json::Value::Object(m);
        }
    }
    let q: serde_json::Map<String, serde_json::Value> = req
        .query
        .iter()
        .filter(|(k, _)| k != "list" && k != "help")
        .map(|(k, v)| (k.clone(), serde_json::Value::from(v.as_str())))
        .collect();
    serde_json::Value::Object(q)
}

/// Authenticates the caller and checks the policies (the CLI's preflight
/// needs a valid token only: it checks access under the mount itself).
async fn authorize_request(
    gw: &Gateway,
    req: &ApiRequest,
    op: Operation,
    path: &str,
    mount: Option<&(mounts::MountEntry, String)>,
    auth_method: bool,
    ctx: &mut audit::Context,
) -> Result<(Caller, bulwark_proto::policy::v1::AuthorizeResponse), ApiError> {
    ctx.client_token = request::client_token(&req.headers).unwrap_or_default();
    ctx.operation = audit::operation_name(op, false);
    let caller = gw.authenticate(&req.headers, req.remote).await?;
    ctx.client_token_accessor = caller.entry.accessor.clone();
    ctx.set_auth(&caller, None);
    if path.starts_with("sys/internal/ui/mounts") {
        let allowed = bulwark_proto::policy::v1::AuthorizeResponse {
            allowed: true,
            ..Default::default()
        };
        return Ok((caller, allowed));
    }
    // Writes are `create` or `update` depending on what is stored (Vault's
    // existence check), for the engines that have one.
    let mut pop = policy_op(op).ok_or_else(ApiError::unsupported_operation)?;
    if let (Some((m, rest)), Operation::Write) = (mount, op) {
        if auth_method {
            pop = methods::write_op(gw, m, rest).await?;
        } else if m.kind == "kv" || m.kind == "cubbyhole" {
            pop = engines::kv::write_op(gw, m, rest, &caller).await?;
        }
    }
    ctx.operation = audit::operation_name(op, pop == PolicyOp::Create);
    let decision = gw.authorize(&caller, path, op, pop).await?;
    ctx.set_auth(&caller, Some(&decision));
    Ok((caller, decision))
}

/// Where a request goes: its path and, below a mount, the mount (a secrets
/// engine, or an auth method when `auth_method`) and the rest of the path.
struct Target<'a> {
    path: &'a str,
    mount: Option<(mounts::MountEntry, String)>,
    auth_method: bool,
}

/// Routes an authorized request, wrapping the answer when the client asked
/// for it (`X-Vault-Wrap-TTL`).
async fn route_wrapped(
    gw: &Gateway,
    req: ApiRequest,
    op: Operation,
    target: Target<'_>,
    caller: &Caller,
    caps: &[String],
    wrap_ttl: Option<u64>,
) -> Result<Response, ApiError> {
    let path = target.path;
    // Held until the lease is registered (lease-count quotas).
    let _lease_slot =
        quotas::lease_gate(gw, path, op, target.mount.as_ref(), target.auth_method).await?;
    let resp = route(gw, req, op, target, caller, caps).await?;
    match wrap_ttl {
        Some(ttl) => wrapping::wrap_response(gw, resp, ttl, path.trim_end_matches('/')).await,
        None => Ok(resp),
    }
}

/// Routes an authorized request to its handler.
async fn route(
    gw: &Gateway,
    req: ApiRequest,
    op: Operation,
    target: Target<'_>,
    caller: &Caller,
    caps: &[String],
) -> Result<Response, ApiError> {
    let path = target.path;
    if let Some(rest) = path.strip_prefix("sys/internal/ui/mounts") {
        if op != Operation::Read {
            return Err(ApiError::unsupported_operation());
        }
        return sys::mounts::ui_mounts(gw, caller, Some(rest)).await;
    }
    if let (Some((m, rest)), true) = (&target.mount, target.auth_method) {
        return methods::handle(gw, req, op, m, rest).await;
    }
    if let Some((m, rest)) = target.mount {
        return match m.kind.as_str() {
            "kv" | "cubbyhole" => engines::kv::handle(gw, req, op, &m, &rest, caller).await,
            "database" => engines::database::handle(gw, req, op, &m, &rest, caller).await,
            "pki" => engines::pki::handle(gw, req, op, &m, &rest).await,
            "transit" => engines::transit::handle(gw, req, op, &m, &rest, caps).await,
            _ => Err(ApiError::no_route(path.trim_end_matches('/'))),
        };
    }
    let route = path.trim_end_matches('/');
    use sys::capabilities::Whose;
    use sys::policy::Family;
    match route {
        "sys/seal" => sys::lifecycle::seal(gw, req).await,
        "sys/rotate" => sys::keys::rotate(gw, op).await,
        "sys/key-status" => sys::keys::key_status(gw, op).await,
        "sys/metrics" => observe::sys_metrics(gw, req, op).await,
        "sys/config/metrics" => observe::config_metrics(gw, req, op).await,
        "sys/policy" => sys::policy::list(gw, Family::Legacy, op).await,
        "sys/policies/acl" => sys::policy::list(gw, Family::Acl, op).await,
        "sys/mounts" => sys::mounts::list(gw, op).await,
        "sys/auth" => sys::auth::list(gw, op).await,
        "sys/audit" => sys::audit::list(gw, op).await,
        "sys/remount" if op == Operation::Write => sys::mounts::remount(gw, req).await,
        "sys/capabilities-self" if op == Operation::Write => {
            sys::capabilities::handle(gw, req, caller, Whose::Own).await
        }
        "sys/capabilities" if op == Operation::Write => {
            sys::capabilities::handle(gw, req, caller, Whose::Token).await
        }
        "sys/capabilities-accessor" if op == Operation::Write => {
            sys::capabilities::handle(gw, req, caller, Whose::Accessor).await
        }
        r => {
            if let Some(rest) = r.strip_prefix("sys/mounts/") {
                sys::mounts::one(gw, req, op, rest).await
            } else if let Some(rest) = r.strip_prefix("sys/auth/") {
                sys::auth::one(gw, req, op, rest).await
            } else if let Some(action) = r.strip_prefix("sys/wrapping/") {
                wrapping::handle(gw, req, op, action).await
            } else if let Some(rest) = r.strip_prefix("sys/quotas/") {
                sys::quotas::handle(gw, req, op, rest).await
            } else if let Some(rest) = r.strip_prefix("sys/leases/") {
                sys::leases::handle(gw, req, op, rest).await
            } else if let Some(rest) = legacy_lease_route(r) {
                sys::leases::handle(gw, req, op, &rest).await
            } else if let Some(id) = r.strip_prefix("sys/remount/status/") {
                sys::mounts::remount_status(gw, id).await
            } else if let Some(name) = r.strip_prefix("sys/policy/") {
                sys::policy::one(gw, req, Family::Legacy, op, name).await
            } else if let Some(name) = r.strip_prefix("sys/policies/acl/") {
                sys::policy::one(gw, req, Family::Acl, op, name).await
            } else if let Some(dev) = r.strip_prefix("sys/audit/") {
                sys::audit::one(gw, req, op, dev).await
            } else if let Some(dev) = r.strip_prefix("sys/audit-hash/") {
                sys::audit::hash(gw, req, op, dev).await
            } else if let Some(rest) = r.strip_prefix("auth/token/") {
                token::handle(gw, req, op, rest, caller, caps).await
            } else {
                Err(ApiError::no_route(r))
            }
        }
    }
}

/// Vault's pre-1.0 lease routes: `sys/renew[/id]`, `sys/revoke[/id]`,
/// `sys/revoke-prefix/p`, `sys/revoke-force/p`, as `sys/leases/…` names them.
fn legacy_lease_route(path: &str) -> Option<String> {
    let rest = path.strip_prefix("sys/")?;
    let (action, arg) = rest.split_once('/').unwrap_or((rest, ""));
    matches!(
        action,
        "renew" | "revoke" | "revoke-prefix" | "revoke-force"
    )
    .then(|| format!("{action}/{arg}").trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_paths_are_percent_decoded_as_vault_does() {
        assert_eq!(
            decode_path("secret/data/a%20b").as_deref(),
            Some("secret/data/a b")
        );
        assert_eq!(
            decode_path("pki/cert/17%3A2a").as_deref(),
            Some("pki/cert/17:2a")
        );
        assert_eq!(decode_path("kv/a+b").as_deref(), Some("kv/a+b"));
        assert_eq!(decode_path("kv/%2e%2e/x").as_deref(), Some("kv/../x"));
        assert_eq!(decode_path("kv/100%").as_deref(), Some("kv/100%"));
        assert_eq!(decode_path("kv/%zz").as_deref(), Some("kv/%zz"));
        assert_eq!(decode_path("kv/%ff%fe"), None);
        assert_eq!(
            url_decode_pairs("a=b+c&d=%41"),
            vec![
                ("a".to_string(), "b c".to_string()),
                ("d".to_string(), "A".to_string()),
            ]
        );
    }

    #[test]
    fn legacy_lease_routes() {
        assert_eq!(legacy_lease_route("sys/renew").as_deref(), Some("renew"));
        assert_eq!(
            legacy_lease_route("sys/revoke/database/creds/r/x").as_deref(),
            Some("revoke/database/creds/r/x")
        );
        assert_eq!(
            legacy_lease_route("sys/revoke-prefix/database").as_deref(),
            Some("revoke-prefix/database")
        );
        assert!(legacy_lease_route("sys/mounts").is_none());
    }

    #[test]
    fn query_decoding() {
        assert_eq!(
            url_decode_pairs("list=true&a=b%20c&x"),
            vec![
                ("list".into(), "true".into()),
                ("a".into(), "b c".into()),
                ("x".into(), "".into())
            ]
        );
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%C3%A9"), "é");
        assert_eq!(percent_decode("é%"), "é%");
    }
}
