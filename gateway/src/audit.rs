//! Audit entries in Vault's format, built here (the gateway knows the
//! shapes) with every value in the clear; the audit service HMACs the
//! sensitive ones per device and writes them. Fail-closed: an entry no device
//! could record fails the request with 500, before it is acted on.

use bulwark_proto::audit::v1::audit_client::AuditClient;
use bulwark_proto::audit::v1::{
    LogRequest, LogStreamAnswers, LogStreamBatch, LogStreamRequest, LogStreamResponse,
};
use bulwark_proto::policy::v1::AuthorizeResponse;
use bulwark_shared::grpc::Channel;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;
use tracing::Instrument;

use crate::acl::Caller;
use crate::error::ApiError;
use crate::mounts::MountEntry;
use crate::request::Operation;
use crate::Gateway;

/// The unary method a streamed entry stands for (span and metric names).
const LOG_METHOD: &str = "/bulwark.audit.v1.Audit/Log";

/// Paths Vault does not audit.
pub fn audited(path: &str) -> bool {
    !matches!(
        path.trim_end_matches('/'),
        "sys/init"
            | "sys/seal-status"
            | "sys/seal"
            | "sys/step-down"
            | "sys/unseal"
            | "sys/leader"
            | "sys/health"
    )
}

/// Everything known about one request, for its two entries.
pub struct Context {
    pub id: String,
    pub operation: &'static str,
    pub path: String,
    pub data: Value,
    pub remote: Option<std::net::SocketAddr>,
    pub mount_point: String,
    pub mount_type: String,
    pub mount_accessor: String,
    pub non_hmac_request_keys: Vec<String>,
    pub non_hmac_response_keys: Vec<String>,
    /// The entry's `auth` object, serialized (see [`Context::set_auth`]).
    auth: Box<RawValue>,
    pub client_token: String,
    pub client_token_accessor: String,
}

/// The operation name Vault records.
pub fn operation_name(op: Operation, create: bool) -> &'static str {
    match op {
        Operation::Read => "read",
        Operation::List => "list",
        Operation::Write if create => "create",
        Operation::Write => "update",
        Operation::Delete => "delete",
        Operation::Patch => "patch",
        Operation::Head => "read",
        Operation::Options => "options",
    }
}

// The entries are serialized straight from borrowed views of the request
// and of the response body as sent: no JSON tree is built for them (the
// audit service orders the keys when it renders a line).

/// The `auth` object of an entry: the caller (none before authentication)
/// and the policy results.
#[derive(Serialize)]
struct AuthJson<'a> {
    #[serde(flatten)]
    caller: Option<CallerJson<'a>>,
    policy_results: PolicyResults<'a>,
}

/// What an entry records of the caller's token.
#[derive(Serialize)]
struct CallerJson<'a> {
    client_token: &'a str,
    accessor: &'a str,
    display_name: &'a str,
    policies: &'a [String],
    token_policies: &'a [String],
    metadata: Option<&'a std::collections::HashMap<String, String>>,
    entity_id: &'static str,
    token_type: &'a str,
    token_ttl: i64,
    token_issue_time: String,
    remaining_uses: i64,
}

#[derive(Serialize)]
struct PolicyResults<'a> {
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    granting_policies: Option<Vec<GrantingPolicy<'a>>>,
}

#[derive(Serialize)]
struct GrantingPolicy<'a> {
    name: &'a str,
    namespace_id: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
}

/// The `auth` object of an entry, serialized.
fn auth_json(caller: Option<&Caller>, decision: Option<&AuthorizeResponse>) -> Box<RawValue> {
    let caller = caller.map(|c| {
        let e = &c.entry;
        CallerJson {
            client_token: &c.token,
            accessor: &e.accessor,
            display_name: &e.display_name,
            policies: &e.policies,
            token_policies: &e.policies,
            metadata: (!e.meta.is_empty()).then_some(&e.meta),
            entity_id: "",
            token_type: if e.r#type.is_empty() {
                "service"
            } else {
                e.r#type.as_str()
            },
            token_ttl: e.creation_ttl,
            token_issue_time: chrono::DateTime::from_timestamp(e.issue_time, 0)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default(),
            remaining_uses: e.num_uses,
        }
    });
    // With a caller, the granting policies are listed (empty before the
    // decision); without one, only `allowed`.
    let granting_policies = caller.as_ref().map(|_| {
        decision
            .map(|d| {
                d.granting_policies
                    .iter()
                    .map(|p| GrantingPolicy {
                        name: p,
                        namespace_id: "root",
                        kind: "acl",
                    })
                    .collect()
            })
            .unwrap_or_default()
    });
    let auth = AuthJson {
        caller,
        policy_results: PolicyResults {
            allowed: decision.is_some_and(|d| d.allowed),
            granting_policies,
        },
    };
    // Borrowed strings and numbers always serialize; `null` otherwise.
    serde_json::value::to_raw_value(&auth).unwrap_or_default()
}

/// The `request` object of an entry.
#[derive(Serialize)]
struct RequestJson<'a> {
    id: &'a str,
    client_id: &'static str,
    operation: &'a str,
    mount_point: &'a str,
    mount_type: &'a str,
    mount_accessor: &'a str,
    client_token: &'a str,
    client_token_accessor: &'a str,
    namespace: Namespace,
    path: &'a str,
    data: Option<&'a Value>,
    remote_address: String,
    remote_port: u16,
}

#[derive(Serialize)]
struct Namespace {
    id: &'static str,
}

/// The `response` object of an entry.
#[derive(Serialize)]
struct ResponseJson<'a> {
    mount_point: &'a str,
    mount_type: &'a str,
    mount_accessor: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    wrap_info: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    warnings: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<Secret<'a>>,
}

#[derive(Serialize)]
struct Secret<'a> {
    lease_id: &'a str,
}

/// One entry.
#[derive(Serialize)]
struct EntryJson<'a> {
    time: String,
    #[serde(rename = "type")]
    kind: &'static str,
    auth: &'a RawValue,
    request: RequestJson<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<ResponseJson<'a>>,
    #[serde(skip_serializing_if = "str::is_empty")]
    error: &'a str,
}

/// The top-level members of a response body that an entry records, borrowed
/// from the body as sent. `null` members read as absent.
#[derive(Deserialize, Default)]
struct Members<'a> {
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    auth: Option<&'a RawValue>,
    #[serde(borrow, default)]
    wrap_info: Option<&'a RawValue>,
    #[serde(borrow, default)]
    warnings: Option<&'a RawValue>,
    #[serde(borrow, default)]
    lease_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    request_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    errors: Option<&'a RawValue>,
}

/// A response body as sent to the client, read once for its audit entry and
/// its error text.
pub struct ResponseBody<'a> {
    bytes: &'a [u8],
    /// The members, when the body is a JSON object.
    members: Option<Members<'a>>,
}

/// The body of an error answer, `{"errors": [...]}`.
fn error_body(errors: &[String]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "errors": errors })).unwrap_or_default()
}

impl<'a> ResponseBody<'a> {
    /// The body as sent (any bytes; only a JSON object is recorded).
    pub fn new(bytes: &'a [u8]) -> Self {
        let is_object = bytes
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'{');
        let members = if is_object {
            serde_json::from_slice(bytes).ok()
        } else {
            None
        };
        ResponseBody { bytes, members }
    }

    /// The whole body as one raw JSON value.
    fn whole(&self) -> Option<&'a RawValue> {
        serde_json::from_slice(self.bytes).ok()
    }

    /// The error text: the `errors` strings, joined with `; `.
    pub fn error_text(&self) -> String {
        let Some(errors) = self.members.as_ref().and_then(|m| m.errors) else {
            return String::new();
        };
        let items: Vec<Value> = serde_json::from_str(errors.get()).unwrap_or_default();
        items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl Context {
    pub fn new(
        id: String,
        path: &str,
        data: Value,
        remote: Option<std::net::SocketAddr>,
        mount: Option<&MountEntry>,
    ) -> Self {
        let (mount_point, mount_type, mount_accessor, req_keys, resp_keys) = match mount {
            Some(m) => (
                m.path.clone(),
                m.kind.clone(),
                m.accessor.clone(),
                m.config.audit_non_hmac_request_keys.clone(),
                m.config.audit_non_hmac_response_keys.clone(),
            ),
            None if path.starts_with("auth/token/") => (
                "auth/token/".into(),
                "token".into(),
                String::new(),
                vec![],
                vec![],
            ),
            None if path.starts_with("sys/") => (
                "sys/".into(),
                "system".into(),
                String::new(),
                vec![],
                vec![],
            ),
            None => (String::new(), String::new(), String::new(), vec![], vec![]),
        };
        Context {
            id,
            operation: "read",
            path: path.to_string(),
            data,
            remote,
            mount_point,
            mount_type,
            mount_accessor,
            non_hmac_request_keys: req_keys,
            non_hmac_response_keys: resp_keys,
            auth: auth_json(None, None),
            client_token: String::new(),
            client_token_accessor: String::new(),
        }
    }

    /// The entries' `auth` object: the caller, and the policy decision once
    /// made.
    pub fn set_auth(&mut self, caller: &Caller, decision: Option<&AuthorizeResponse>) {
        self.auth = auth_json(Some(caller), decision);
    }

    fn request_json(&self) -> RequestJson<'_> {
        RequestJson {
            id: &self.id,
            client_id: "",
            operation: self.operation,
            mount_point: &self.mount_point,
            mount_type: &self.mount_type,
            mount_accessor: &self.mount_accessor,
            client_token: &self.client_token,
            client_token_accessor: &self.client_token_accessor,
            namespace: Namespace { id: "root" },
            path: &self.path,
            data: Some(&self.data).filter(|d| d.as_object().is_some_and(|m| !m.is_empty())),
            remote_address: self.remote.map(|a| a.ip().to_string()).unwrap_or_default(),
            remote_port: self.remote.map(|a| a.port()).unwrap_or_default(),
        }
    }

    fn entry(
        &self,
        kind: &'static str,
        response: Option<ResponseJson<'_>>,
        error: &str,
    ) -> Vec<u8> {
        let entry = EntryJson {
            time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            kind,
            auth: &self.auth,
            request: self.request_json(),
            response,
            error,
        };
        // Borrowed strings, numbers and raw JSON: this cannot fail. An empty
        // entry would be refused by the audit service (failing closed).
        serde_json::to_vec(&entry).unwrap_or_default()
    }

    /// The `response` object from the body sent to the client.
    fn response_json<'b>(&'b self, body: &ResponseBody<'b>) -> ResponseJson<'b> {
        let mut r = ResponseJson {
            mount_point: &self.mount_point,
            mount_type: &self.mount_type,
            mount_accessor: &self.mount_accessor,
            data: None,
            auth: None,
            wrap_info: None,
            warnings: None,
            secret: None,
        };
        let Some(m) = &body.members else {
            return r;
        };
        r.data = m.data;
        r.auth = m.auth;
        r.wrap_info = m.wrap_info;
        r.warnings = m.warnings;
        r.secret = m
            .lease_id
            .and_then(|l| serde_json::from_str::<&str>(l.get()).ok())
            .filter(|l| !l.is_empty())
            .map(|lease_id| Secret { lease_id });
        // Bare objects (no envelope) are recorded as data.
        if m.request_id.is_none() && m.errors.is_none() {
            r.data = body.whole();
        }
        r
    }

    /// Sends one entry, timing it in `timing` and counting a failure in
    /// `failures` (Vault's `vault.audit.log_request[_failure]` and
    /// `…log_response[_failure]`).
    async fn send(
        &self,
        gw: &Gateway,
        entry: Vec<u8>,
        following: Vec<Vec<u8>>,
        timings: &[&prometheus::Histogram],
        failures: &prometheus::IntCounter,
    ) -> Result<(), ApiError> {
        let start = std::time::Instant::now();
        let sent = gw
            .audit_stream()
            .log(
                LogRequest {
                    entry,
                    non_hmac_request_keys: self.non_hmac_request_keys.clone(),
                    non_hmac_response_keys: self.non_hmac_response_keys.clone(),
                },
                following,
            )
            .await;
        for timing in timings {
            timing.observe(start.elapsed().as_secs_f64());
        }
        sent.map(|_| ()).map_err(|s| {
            failures.inc();
            tracing::error!(code = ?s.code(), "audit failed; refusing the request");
            // Sealed under a request in flight (the audit service heard of
            // the seal first) or past the deadline: what the gateway answers
            // for any service in that state (503, 504). Any other failure
            // to record is Vault's opaque 500.
            let sealed = s.code() == tonic::Code::Unavailable && s.message() == "Vault is sealed";
            if sealed || s.code() == tonic::Code::DeadlineExceeded {
                return ApiError::from(s);
            }
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
            )
        })
    }

    /// The request entry, serialized (built when the request arrives).
    pub fn request_entry(&self, error: &str) -> Vec<u8> {
        self.entry("request", None, error)
    }

    /// The response entry for `body` (as the client will get it), serialized.
    fn response_entry(&self, body: &ResponseBody<'_>, error: &str) -> Vec<u8> {
        self.entry("response", Some(self.response_json(body)), error)
    }

    /// Records the request (before it is acted on).
    pub async fn log_request(&self, gw: &Gateway, error: &str) -> Result<(), ApiError> {
        let m = bulwark_shared::metrics::metrics();
        let entry = self.request_entry(error);
        self.send(
            gw,
            entry,
            Vec::new(),
            &[&m.audit_log_request],
            &m.audit_request_failure,
        )
        .await
    }

    /// Records the response (`body` as the client will get it).
    pub async fn log_response(
        &self,
        gw: &Gateway,
        body: &ResponseBody<'_>,
        error: &str,
    ) -> Result<(), ApiError> {
        let m = bulwark_shared::metrics::metrics();
        let entry = self.response_entry(body, error);
        self.send(
            gw,
            entry,
            Vec::new(),
            &[&m.audit_log_response],
            &m.audit_response_failure,
        )
        .await
    }

    /// Records a refused request and its error answer together: nothing
    /// was acted on.
    pub async fn log_refused(&self, gw: &Gateway, errors: &[String]) -> Result<(), ApiError> {
        let msg = errors.join("; ");
        let request = self.request_entry(&msg);
        let body = error_body(errors);
        self.log_request_and_response(gw, request, &ResponseBody::new(&body), &msg)
            .await
    }

    /// Records `request` (from [`Context::request_entry`]) and the response
    /// together, in one batch: for requests without side effects, served
    /// before either was recorded. Fail-closed still: nothing reaches the
    /// client unless both were recorded, and there is nothing to undo.
    pub async fn log_request_and_response(
        &self,
        gw: &Gateway,
        request: Vec<u8>,
        body: &ResponseBody<'_>,
        error: &str,
    ) -> Result<(), ApiError> {
        let m = bulwark_shared::metrics::metrics();
        let response = self.response_entry(body, error);
        self.send(
            gw,
            request,
            vec![response],
            &[&m.audit_log_request, &m.audit_log_response],
            &m.audit_request_failure,
        )
        .await
    }
}

const UNKNOWN: u8 = 0;
const NONE: u8 = 1;
const SOME: u8 = 2;

/// Whether entries must be sent at all, pushed by the audit service: only a
/// *known* zero lets the gateway skip the two audit round trips. Unknown
/// (stream down, audit sealed, table not loaded) means "send", which fails
/// closed if the audit service cannot record.
pub struct AuditNeed {
    state: std::sync::atomic::AtomicU8,
}

impl AuditNeed {
    pub fn spawn(
        client: bulwark_proto::audit::v1::audit_client::AuditClient<bulwark_shared::grpc::Channel>,
    ) -> std::sync::Arc<Self> {
        use futures::StreamExt;
        use std::sync::atomic::Ordering;
        let me = std::sync::Arc::new(AuditNeed {
            state: std::sync::atomic::AtomicU8::new(UNKNOWN),
        });
        let w = me.clone();
        tokio::spawn(async move {
            loop {
                let mut c = client.clone();
                if let Ok(resp) = c.watch_devices(bulwark_proto::audit::v1::Empty {}).await {
                    let mut stream = resp.into_inner();
                    while let Some(Ok(count)) = stream.next().await {
                        let s = match (count.known, count.enabled) {
                            (true, 0) => NONE,
                            (true, _) => SOME,
                            (false, _) => UNKNOWN,
                        };
                        w.state.store(s, Ordering::SeqCst);
                    }
                }
                w.state.store(UNKNOWN, Ordering::SeqCst);
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
        });
        me
    }

    /// False only when the audit service has said no device is configured.
    pub fn needed(&self) -> bool {
        self.state.load(std::sync::atomic::Ordering::SeqCst) != NONE
    }

    /// A device was enabled through this gateway: audit from the next request
    /// on, whatever the stream's timing.
    pub fn device_enabled(&self) {
        self.state.store(SOME, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Audit entries over one long-lived `LogStream` to the audit service,
/// instead of a unary `Log` call each: no per-entry call setup on the hot
/// path. Entries are matched to answers by id. When the stream breaks, every
/// entry waiting on it fails (closed: the request is refused) and the next
/// entry opens a new stream, on whichever audit replica is healthy.
pub struct AuditStream {
    client: AuditClient<Channel>,
    /// How long an entry may wait for its answer: the channel's per-call
    /// deadline (`default_max_request_duration`).
    deadline: std::time::Duration,
    conn: tokio::sync::Mutex<Option<StreamConn>>,
    next_id: std::sync::atomic::AtomicU64,
}

type Pending = std::sync::Arc<
    std::sync::Mutex<
        std::collections::HashMap<u64, tokio::sync::oneshot::Sender<LogStreamResponse>>,
    >,
>;

#[derive(Clone)]
struct StreamConn {
    tx: tokio::sync::mpsc::Sender<LogStreamRequest>,
    pending: Pending,
    alive: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl AuditStream {
    pub fn new(client: AuditClient<Channel>, deadline: std::time::Duration) -> Self {
        AuditStream {
            client,
            deadline,
            conn: tokio::sync::Mutex::new(None),
            next_id: std::sync::atomic::AtomicU64::new(1),
        }
    }

    /// Records `entry`, then `following` in the same batch; `Err` when they
    /// were not recorded (the request must be refused).
    pub async fn log(
        &self,
        entry: LogRequest,
        following: Vec<Vec<u8>>,
    ) -> Result<u32, tonic::Status> {
        use std::sync::atomic::Ordering;
        let conn = self.connection().await?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (span, traceparent, request_id) =
            bulwark_shared::telemetry::stream_message_client(LOG_METHOD);
        let (done, answer) = tokio::sync::oneshot::channel();
        conn.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, done);
        // Checked after registering: a stream that died before misses
        // nothing, one that dies after drains `pending`, this entry included.
        if !conn.alive.load(Ordering::SeqCst) {
            conn.forget(id);
            return Err(tonic::Status::unavailable("audit stream closed"));
        }
        let msg = LogStreamRequest {
            id,
            entry: Some(entry),
            traceparent,
            request_id,
            following,
        };
        let waited = async {
            if conn.tx.send(msg).await.is_err() {
                return Err(tonic::Status::unavailable("audit stream closed"));
            }
            match tokio::time::timeout(self.deadline, answer).await {
                Ok(Ok(a)) if a.code == 0 => Ok(a.recorded),
                Ok(Ok(a)) => Err(tonic::Status::new(tonic::Code::from(a.code), a.message)),
                Ok(Err(_)) => Err(tonic::Status::unavailable("audit stream closed")),
                Err(_) => Err(tonic::Status::deadline_exceeded("audit did not answer")),
            }
        }
        .instrument(span.unwrap_or_else(tracing::Span::none))
        .await;
        if waited.is_err() {
            conn.forget(id);
        }
        waited
    }

    /// The open stream, or a new one.
    async fn connection(&self) -> Result<StreamConn, tonic::Status> {
        use std::sync::atomic::Ordering;
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| c.alive.load(Ordering::SeqCst)) {
            return Ok(c.clone());
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel(STREAM_QUEUE);
        // Whatever queued while the stream was busy goes as one message.
        let batches = futures::stream::poll_fn(move |cx| {
            let mut entries = Vec::new();
            match rx.poll_recv_many(cx, &mut entries, STREAM_BATCH) {
                std::task::Poll::Ready(0) => std::task::Poll::Ready(None),
                std::task::Poll::Ready(_) => {
                    std::task::Poll::Ready(Some(LogStreamBatch { entries }))
                }
                std::task::Poll::Pending => std::task::Poll::Pending,
            }
        });
        let mut client = self.client.clone();
        let answers = client.log_stream(batches).await?.into_inner();
        let conn = StreamConn {
            tx,
            pending: Default::default(),
            alive: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
        };
        tokio::spawn(conn.clone().read_answers(answers));
        *slot = Some(conn.clone());
        Ok(conn)
    }
}

/// Entries queued to the stream before the sender waits.
pub const STREAM_QUEUE: usize = 1024;
/// The most entries sent in one message.
const STREAM_BATCH: usize = 256;

impl StreamConn {
    fn forget(&self, id: u64) {
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// Hands each answer to its waiting entry; when the stream ends, marks
    /// it dead and fails every entry still waiting.
    async fn read_answers(self, mut answers: tonic::Streaming<LogStreamAnswers>) {
        while let Ok(Some(batch)) = answers.message().await {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            for a in batch.answers {
                if let Some(w) = pending.remove(&a.id) {
                    let _ = w.send(a);
                }
            }
        }
        self.alive.store(false, std::sync::atomic::Ordering::SeqCst);
        // Dropping the senders fails their entries.
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}
