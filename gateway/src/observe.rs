//! What the gateway tells operators about each request: the root span, the
//! request id, route templates, request metrics, `sys/metrics` (every
//! process of the deployment merged) and the plain-HTTP `/metrics` listener.
//!
//! Route templates name what was called without the caller's path values
//! (`secret/data/:path`, `auth/userpass/login/:rest`, `sys/policies/acl/:name`),
//! from fixed lists per engine, so a client cannot grow the label set.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bulwark_proto::telemetry::v1::telemetry_client::TelemetryClient;
use bulwark_proto::telemetry::v1::ScrapeRequest;
use bulwark_shared::grpc::Channel;
use bulwark_shared::metrics::{self, metrics};
use bulwark_shared::telemetry;
use serde_json::json;
use tracing::Instrument;

use crate::error::ApiError;
use crate::mounts::MountEntry;
use crate::request::{self, Operation};
use crate::{ApiRequest, Gateway};

tokio::task_local! {
    /// The route template of the request this task serves, once known.
    static ROUTE: Arc<Mutex<Option<String>>>;
}

/// Names the route of the request being served (for its span and metrics).
pub(crate) fn set_route(template: String) {
    let _ = ROUTE.try_with(|r| {
        *r.lock().unwrap_or_else(|e| e.into_inner()) = Some(template);
    });
}

/// The id of the request being served (a fresh one outside a request).
pub(crate) fn request_id() -> String {
    telemetry::current_request_id()
        .map(|id| id.to_string())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Middleware around every HTTP request: the root span (continuing the
/// client's `traceparent`), the request id, the request metrics, and the
/// `traceparent` response header naming the trace.
pub(crate) async fn trace_request(req: Request<Body>, next: Next) -> Response {
    let request_id: Arc<str> = Arc::from(uuid::Uuid::new_v4().to_string());
    let method = req.method().as_str().to_string();
    let span = tracing::info_span!(
        "http.request",
        otel.kind = "server",
        http.request.method = %method,
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        request_id = %request_id,
    );
    {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let _ = span.set_parent(telemetry::extract(req.headers()));
    }
    let slot = Arc::new(Mutex::new(None));
    let start = Instant::now();
    let mut resp = ROUTE
        .scope(
            slot.clone(),
            telemetry::with_request_id(request_id, next.run(req).instrument(span.clone())),
        )
        .await;
    let route = slot
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .take()
        .unwrap_or_else(|| "unmatched".into());
    let status = resp.status().as_u16();
    {
        // The span has started (its children needed its context): rename
        // the live OpenTelemetry span.
        use opentelemetry::trace::TraceContextExt;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        span.context()
            .span()
            .update_name(format!("{method} {route}"));
    }
    span.record("http.route", route.as_str());
    span.record("http.response.status_code", status);
    let m = metrics();
    m.http_requests
        .with_label_values(&[route.as_str(), method.as_str(), &status.to_string()])
        .inc();
    m.http_duration
        .with_label_values(&[route.as_str(), method.as_str()])
        .observe(start.elapsed().as_secs_f64());
    if let Some(tp) = telemetry::traceparent(&span).and_then(|v| HeaderValue::from_str(&v).ok()) {
        resp.headers_mut().insert("traceparent", tp);
    }
    resp
}

/// The template of a `sys/` or `auth/token/` path (no mount involved).
pub(crate) fn system_route(path: &str) -> String {
    let p = path.trim_end_matches('/');
    const EXACT: &[&str] = &[
        "sys/init",
        "sys/unseal",
        "sys/seal-status",
        "sys/health",
        "sys/leader",
        "sys/seal",
        "sys/step-down",
        "sys/policy",
        "sys/policies/acl",
        "sys/mounts",
        "sys/auth",
        "sys/audit",
        "sys/remount",
        "sys/capabilities",
        "sys/capabilities-self",
        "sys/capabilities-accessor",
        "sys/metrics",
        "sys/config/metrics",
        "sys/key-status",
        "sys/rotate",
        "sys/rekey/init",
        "sys/rekey/update",
        "sys/rekey-recovery-key/init",
        "sys/rekey-recovery-key/update",
        "sys/generate-root/attempt",
        "sys/generate-root/update",
        "sys/wrapping/wrap",
        "sys/wrapping/unwrap",
        "sys/wrapping/rewrap",
        "sys/wrapping/lookup",
        "sys/internal/ui/mounts",
        "sys/leases/lookup",
        "sys/leases/renew",
        "sys/leases/revoke",
        "sys/leases/tidy",
        "sys/renew",
        "sys/revoke",
    ];
    if EXACT.contains(&p) {
        return p.to_string();
    }
    for tuned in ["sys/mounts/", "sys/auth/"] {
        if p.starts_with(tuned) && p.ends_with("/tune") {
            return format!("{tuned}:path/tune");
        }
    }
    const FAMILIES: &[(&str, &str)] = &[
        ("sys/policies/acl/", ":name"),
        ("sys/policy/", ":name"),
        ("sys/mounts/", ":path"),
        ("sys/auth/", ":path"),
        ("sys/audit-hash/", ":path"),
        ("sys/audit/", ":path"),
        ("sys/leases/lookup/", ":prefix"),
        ("sys/leases/renew/", ":id"),
        ("sys/leases/revoke/", ":id"),
        ("sys/leases/revoke-prefix/", ":prefix"),
        ("sys/leases/revoke-force/", ":prefix"),
        ("sys/renew/", ":id"),
        ("sys/revoke/", ":id"),
        ("sys/revoke-prefix/", ":prefix"),
        ("sys/revoke-force/", ":prefix"),
        ("sys/remount/status/", ":id"),
        ("sys/internal/ui/mounts/", ":path"),
    ];
    for (prefix, param) in FAMILIES {
        if p.starts_with(prefix) {
            return format!("{prefix}{param}");
        }
    }
    if let Some(rest) = p.strip_prefix("auth/token/") {
        const ACTIONS: &[&str] = &[
            "create",
            "create-orphan",
            "lookup",
            "lookup-self",
            "lookup-accessor",
            "renew",
            "renew-self",
            "renew-accessor",
            "revoke",
            "revoke-self",
            "revoke-accessor",
            "revoke-orphan",
            "accessors",
            "roles",
            "tidy",
        ];
        return with_first_segment("auth/token/", rest, ACTIONS);
    }
    if p.starts_with("sys/") {
        "sys/:unknown".into()
    } else {
        "unmatched".into()
    }
}

/// The template of a path below a mount: the mount's own path, then the
/// engine's route (`data/:path`) from the engine's list of first segments.
pub(crate) fn mount_route(m: &MountEntry, rest: &str, auth_method: bool) -> String {
    let base = if auth_method {
        format!("auth/{}", m.path)
    } else {
        m.path.clone()
    };
    let first_segments: &[&str] = match m.kind.as_str() {
        "kv" if m.kv_version() == 2 => &[
            "data", "metadata", "delete", "undelete", "destroy", "subkeys", "config",
        ],
        "kv" | "cubbyhole" => {
            return if rest.is_empty() {
                base
            } else {
                format!("{base}:path")
            }
        }
        "database" => &[
            "config",
            "roles",
            "creds",
            "static-roles",
            "static-creds",
            "rotate-root",
            "rotate-role",
            "reset",
            "reload",
        ],
        "pki" => &[
            "ca",
            "ca_chain",
            "cert",
            "certs",
            "crl",
            "issue",
            "sign",
            "sign-verbatim",
            "roles",
            "root",
            "intermediate",
            "revoke",
            "config",
            "tidy",
            "issuer",
            "issuers",
            "key",
            "keys",
        ],
        "transit" => &[
            "keys",
            "encrypt",
            "decrypt",
            "rewrap",
            "datakey",
            "hmac",
            "verify",
            "sign",
            "hash",
            "random",
            "export",
            "backup",
            "restore",
            "cache-config",
        ],
        "userpass" | "approle" | "cert" => &["login", "users", "role", "certs", "config", "tidy"],
        _ => &[],
    };
    with_first_segment(&base, rest, first_segments)
}

fn with_first_segment(base: &str, rest: &str, known: &[&str]) -> String {
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() {
        return base.trim_end_matches('/').to_string();
    }
    let (first, more) = match rest.split_once('/') {
        Some((f, m)) => (f, !m.is_empty()),
        None => (rest, false),
    };
    match known.iter().find(|k| **k == first) {
        Some(k) if more => format!("{base}{k}/:rest"),
        Some(k) => format!("{base}{k}"),
        None => format!("{base}:unknown"),
    }
}

// ---------------------------------------------------------------------------
// sys/metrics

/// Channels to every service, for `Scrape`.
pub(crate) struct Scrapers(Vec<TelemetryClient<Channel>>);

impl Scrapers {
    pub(crate) fn new(channels: impl IntoIterator<Item = Channel>) -> Self {
        Scrapers(channels.into_iter().map(TelemetryClient::new).collect())
    }

    /// This process's metrics and those of every other process reachable
    /// within a second (each process counted once, whatever it runs).
    async fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        let local = metrics::instance_id();
        let own = (metrics::process_name().to_string(), metrics().gather());
        if own.0 == "all" {
            // Every service runs here: nothing to ask.
            return metrics::merge(vec![own]);
        }
        let answers = futures::future::join_all(self.0.iter().map(|c| {
            let mut c = c.clone();
            async move {
                tokio::time::timeout(Duration::from_secs(1), c.scrape(ScrapeRequest {}))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .map(tonic::Response::into_inner)
            }
        }))
        .await;
        let mut seen = vec![local.to_string()];
        let mut parts = vec![own];
        for a in answers.into_iter().flatten() {
            if seen.contains(&a.instance) {
                continue;
            }
            seen.push(a.instance.clone());
            parts.push((a.process, metrics::decode(&a.families)));
        }
        metrics::merge(parts)
    }
}

/// Storage key of the `sys/config/metrics` setting (gateway namespace).
const METRICS_CONFIG: &str = "config/metrics";

async fn metrics_enabled(gw: &Gateway) -> Result<bool, ApiError> {
    let stored = gw
        .config_store()
        .get(METRICS_CONFIG)
        .await
        .map_err(tonic::Status::from)?;
    Ok(stored
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v.get("enabled").and_then(serde_json::Value::as_bool))
        .unwrap_or(true))
}

/// `GET sys/metrics[?format=prometheus]`: Vault's JSON layout by default,
/// Prometheus' text format on request.
pub(crate) async fn sys_metrics(
    gw: &Gateway,
    req: ApiRequest,
    op: Operation,
) -> Result<Response, ApiError> {
    if op != Operation::Read {
        return Err(ApiError::unsupported_operation());
    }
    let format = req
        .query
        .iter()
        .find(|(k, _)| k == "format")
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    if !matches!(format, "" | "json" | "prometheus") {
        return Err(ApiError::bad_request(format!(
            "unknown metrics format {format:?} (expected \"prometheus\" or \"json\")"
        )));
    }
    if !metrics_enabled(gw).await? {
        return Err(ApiError::bad_request(
            "metrics are disabled; enable them with sys/config/metrics",
        ));
    }
    let families = gw.scrapers().gather().await;
    if format == "prometheus" {
        Ok((
            StatusCode::OK,
            [(
                axum::http::header::CONTENT_TYPE,
                metrics::PROMETHEUS_CONTENT_TYPE,
            )],
            metrics::to_prometheus_text(&families),
        )
            .into_response())
    } else {
        Ok((
            StatusCode::OK,
            axum::Json(metrics::to_vault_json(&families)),
        )
            .into_response())
    }
}

/// `sys/config/metrics`: `enabled` (written as `enable` or `enabled`)
/// switches `sys/metrics` on and off; on by default.
pub(crate) async fn config_metrics(
    gw: &Gateway,
    req: ApiRequest,
    op: Operation,
) -> Result<Response, ApiError> {
    match op {
        Operation::Read => {
            let enabled = metrics_enabled(gw).await?;
            Ok(
                crate::envelope::Envelope::data(json!({ "enabled": enabled }), "system")
                    .into_response(),
            )
        }
        Operation::Write => {
            let body = request::json_object(&req.body)?;
            let fields = request::Fields(&body);
            let key = if fields.present("enabled") {
                "enabled"
            } else {
                "enable"
            };
            let enabled = fields.bool(key)?.unwrap_or(true);
            let doc = json!({ "enabled": enabled }).to_string();
            gw.config_store()
                .put(METRICS_CONFIG, doc.as_bytes())
                .await
                .map_err(tonic::Status::from)?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        _ => Err(ApiError::unsupported_operation()),
    }
}

/// Serves this process's metrics as `GET /metrics` (Prometheus text, plain
/// HTTP) until `shutdown`: the scrape target of one process in compose.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(|| async {
            let families = metrics::merge(vec![(
                metrics::process_name().to_string(),
                metrics().gather(),
            )]);
            (
                [(
                    axum::http::header::CONTENT_TYPE,
                    metrics::PROMETHEUS_CONTENT_TYPE,
                )],
                metrics::to_prometheus_text(&families),
            )
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(path: &str, kind: &str, version: Option<&str>) -> MountEntry {
        MountEntry {
            path: path.into(),
            kind: kind.into(),
            description: String::new(),
            accessor: String::new(),
            uuid: String::new(),
            config: Default::default(),
            options: version.map(|v| [("version".to_string(), v.to_string())].into()),
            local: false,
            seal_wrap: false,
        }
    }

    #[test]
    fn templates_hide_path_values() {
        let kv2 = mount("secret/", "kv", Some("2"));
        assert_eq!(
            mount_route(&kv2, "data/team/db-password", false),
            "secret/data/:rest"
        );
        assert_eq!(mount_route(&kv2, "metadata/", false), "secret/metadata");
        assert_eq!(mount_route(&kv2, "whatever/x", false), "secret/:unknown");
        let kv1 = mount("kv/", "kv", Some("1"));
        assert_eq!(mount_route(&kv1, "app/password", false), "kv/:path");
        let up = mount("userpass/", "userpass", None);
        assert_eq!(
            mount_route(&up, "login/alice", true),
            "auth/userpass/login/:rest"
        );
        let db = mount("database/", "database", None);
        assert_eq!(
            mount_route(&db, "creds/readonly", false),
            "database/creds/:rest"
        );
        assert_eq!(
            system_route("sys/policies/acl/secret-team"),
            "sys/policies/acl/:name"
        );
        assert_eq!(
            system_route("sys/mounts/secret/tune"),
            "sys/mounts/:path/tune"
        );
        assert_eq!(system_route("sys/health"), "sys/health");
        assert_eq!(system_route("sys/made-up/thing"), "sys/:unknown");
        assert_eq!(
            system_route("auth/token/lookup-self"),
            "auth/token/lookup-self"
        );
        assert_eq!(
            system_route("auth/token/create/myrole"),
            "auth/token/create/:rest"
        );
        assert_eq!(system_route("auth/token/s.secret"), "auth/token/:unknown");
        assert_eq!(
            system_route("sys/leases/lookup/database/creds/ro/abc"),
            "sys/leases/lookup/:prefix"
        );
    }
}
