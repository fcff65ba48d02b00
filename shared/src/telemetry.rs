//! Logs, traces and request ids.
//!
//! `tracing` is the API everywhere. [`init`] installs one subscriber with two
//! independently filtered layers:
//!
//! * log lines (text or JSON) on stderr, filtered by `RUST_LOG` or the
//!   configured level;
//! * OpenTelemetry spans at `info` and above, whatever the log level, so a
//!   quiet log does not break traces. With an OTLP endpoint they are
//!   exported (gRPC or HTTP/protobuf) with a parent-based ratio sampler;
//!   without one nothing is exported and the sampler records only what a
//!   caller's sampled `traceparent` asks for.
//!
//! The W3C trace context crosses every gRPC hop in `traceparent`/`tracestate`
//! metadata: [`GrpcClientTrace`] opens a client span per call and injects it,
//! [`GrpcTraceLayer`] opens the server span as its child. The request id (the
//! `request_id` of Vault's responses and audit entries) rides along in
//! `x-bulwark-request-id` and is a field of the outermost span in every
//! process, so every log line written while serving a request names it.
//!
//! Span attributes never carry request paths or bodies: HTTP spans are named
//! by route template, gRPC spans by method.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tower::{Layer, Service};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::metrics::metrics;

mod gate;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OtlpProtocol {
    /// OTLP/gRPC (port 4317 by convention).
    #[default]
    Grpc,
    /// OTLP/HTTP with protobuf bodies (port 4318, path `/v1/traces`).
    HttpProtobuf,
}

impl OtlpProtocol {
    /// `grpc` or `http/protobuf`, as `OTEL_EXPORTER_OTLP_PROTOCOL` spells them.
    pub fn parse(s: &str) -> Option<OtlpProtocol> {
        match s {
            "grpc" => Some(OtlpProtocol::Grpc),
            "http/protobuf" | "http" => Some(OtlpProtocol::HttpProtobuf),
            _ => None,
        }
    }
}

/// Where and how much to export.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceExport {
    pub endpoint: String,
    pub protocol: OtlpProtocol,
    /// Share of new traces sampled (0.0 to 1.0); a caller's sampling
    /// decision in `traceparent` is always followed.
    pub sampling_ratio: f64,
}

impl TraceExport {
    /// From the standard environment: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_PROTOCOL`,
    /// `OTEL_TRACES_SAMPLER_ARG`; `None` without an endpoint or with
    /// `OTEL_SDK_DISABLED=true`.
    pub fn from_env() -> Option<TraceExport> {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return None;
        }
        let endpoint = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"))?;
        let protocol = var("OTEL_EXPORTER_OTLP_PROTOCOL")
            .and_then(|p| OtlpProtocol::parse(&p))
            .unwrap_or_default();
        let sampling_ratio = var("OTEL_TRACES_SAMPLER_ARG")
            .and_then(|r| r.parse::<f64>().ok())
            .filter(|r| (0.0..=1.0).contains(r))
            .unwrap_or(1.0);
        Some(TraceExport {
            endpoint,
            protocol,
            sampling_ratio,
        })
    }
}

/// Everything [`init`] needs.
#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    /// Default log filter when `RUST_LOG` is unset (`info`, `debug`, …).
    pub log_level: String,
    pub log_format: LogFormat,
    /// The OpenTelemetry `service.name` of this process (`bulwark-kv`,
    /// `bulwark` for a process running every service).
    pub service_name: String,
    pub export: Option<TraceExport>,
}

/// Flushes and stops the exporter when dropped. Drop it outside the async
/// runtime but before the runtime itself is dropped.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
    log_filter: Option<LogFilterHandle>,
}

type LogFilterHandle = Arc<dyn Fn(EnvFilter) -> Result<(), String> + Send + Sync>;

impl TelemetryGuard {
    /// A handle that changes the log level while running (SIGHUP).
    pub fn log_level_handle(&self) -> Option<LogLevelHandle> {
        self.log_filter.clone().map(LogLevelHandle)
    }
}

/// Changes the log filter of a running process.
#[derive(Clone)]
pub struct LogLevelHandle(LogFilterHandle);

impl LogLevelHandle {
    /// Applies `level` (`info`, `debug`, `warn,bulwark_kv=debug`, …) unless
    /// `RUST_LOG` is set, which always wins.
    pub fn set(&self, level: &str) -> Result<(), String> {
        if rust_log().is_some() {
            return Ok(());
        }
        let filter = EnvFilter::try_new(level).map_err(|e| format!("log_level {level:?}: {e}"))?;
        (self.0)(filter)
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("OTLP exporter: {0}")]
pub struct TelemetryError(String);

/// Installs the global subscriber and tracer provider. The OTLP/gRPC exporter
/// needs the tokio runtime that will run the process: pass its handle.
/// Safe to call more than once (later calls install nothing).
pub fn init(
    settings: &TelemetrySettings,
    runtime: &tokio::runtime::Handle,
) -> Result<TelemetryGuard, TelemetryError> {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(settings.service_name.clone())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.instance.id",
            crate::metrics::instance_id().to_string(),
        ))
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    builder = match &settings.export {
        Some(export) => {
            let exporter = build_exporter(export, runtime)?;
            builder
                .with_batch_exporter(exporter)
                .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                    export.sampling_ratio,
                ))))
        }
        // Nothing to export: only a caller's sampled trace is recorded (and
        // then dropped); every span still has a context to propagate.
        None => builder.with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOff))),
    };
    let provider = builder.build();
    let tracer = provider.tracer("bulwark");
    opentelemetry::global::set_tracer_provider(provider.clone());

    let log_filter = rust_log()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .unwrap_or_else(|| EnvFilter::new(settings.log_level.as_str()));
    let (log_filter, log_handle) = tracing_subscriber::reload::Layer::new(log_filter);
    // Per span, only what a trace shows: no thread or source-location
    // attributes, no busy/idle timing on every poll, and no OpenTelemetry
    // context attached on every enter (nothing here reads the ambient
    // context; propagation takes it from the span itself).
    // Spans of traces that are not sampled skip the layer (see `gate`).
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_context_activation(false)
        .with_filter(gate::OtelFilter);
    let registry = tracing_subscriber::registry().with(otel);
    let installed = match settings.log_format {
        LogFormat::Text => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_filter(log_filter),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(true)
                    .with_writer(std::io::stderr)
                    .with_filter(log_filter),
            )
            .try_init(),
    };
    Ok(TelemetryGuard {
        provider: installed.is_ok().then_some(provider),
        log_filter: Some(Arc::new(move |f: EnvFilter| {
            log_handle.reload(f).map_err(|e| e.to_string())
        })),
    })
}

/// `RUST_LOG` when set to something.
fn rust_log() -> Option<String> {
    std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty())
}

fn build_exporter(
    export: &TraceExport,
    runtime: &tokio::runtime::Handle,
) -> Result<opentelemetry_otlp::SpanExporter, TelemetryError> {
    use opentelemetry_otlp::{SpanExporter, WithExportConfig};
    let built = match export.protocol {
        OtlpProtocol::Grpc => {
            // The tonic channel spawns its workers on the current runtime.
            let _rt = runtime.enter();
            SpanExporter::builder()
                .with_tonic()
                .with_endpoint(export.endpoint.clone())
                .build()
        }
        OtlpProtocol::HttpProtobuf => {
            // A blocking client on the exporter's own thread: built here,
            // outside the async runtime.
            let base = export.endpoint.trim_end_matches('/');
            let url = if base.ends_with("/v1/traces") {
                base.to_string()
            } else {
                format!("{base}/v1/traces")
            };
            SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(url)
                .build()
        }
    };
    built.map_err(|e| TelemetryError(e.to_string()))
}

// ---------------------------------------------------------------------------
// Request ids.

/// gRPC metadata carrying the request id between services.
pub const REQUEST_ID_HEADER: &str = "x-bulwark-request-id";

tokio::task_local! {
    static REQUEST_ID: Arc<str>;
}

/// The id of the request being served by this task, if any.
pub fn current_request_id() -> Option<Arc<str>> {
    REQUEST_ID.try_with(Arc::clone).ok()
}

/// Runs `fut` as part of the request `id`: outgoing gRPC calls carry it.
pub fn with_request_id<F: Future>(
    id: Arc<str>,
    fut: F,
) -> tokio::task::futures::TaskLocalFuture<Arc<str>, F> {
    REQUEST_ID.scope(id, fut)
}

/// A request id as received from a peer: printable ASCII of sane length.
fn valid_request_id(v: &str) -> bool {
    !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_graphic())
}

// ---------------------------------------------------------------------------
// Context propagation.

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (
            http::header::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(k, v);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// The trace context `span` continues: its OpenTelemetry context, or for an
/// untraced span (a trace that is not sampled, see `gate`) its caller's.
pub fn span_context(span: &tracing::Span) -> opentelemetry::Context {
    let cx = span.context();
    if cx.span().span_context().is_valid() {
        return cx;
    }
    untraced_context(span).unwrap_or(cx)
}

/// `f` applied to `span`'s entry in the registry (`None` when the span is
/// disabled or another subscriber is installed).
fn in_registry<T>(
    span: &tracing::Span,
    f: impl FnOnce(tracing_subscriber::registry::SpanRef<'_, tracing_subscriber::Registry>) -> Option<T>,
) -> Option<T> {
    use tracing_subscriber::registry::LookupSpan;
    span.with_subscriber(|(id, dispatch)| {
        f(dispatch
            .downcast_ref::<tracing_subscriber::Registry>()?
            .span(id)?)
    })
    .flatten()
}

/// The context kept by the untraced span `span` is in, if any.
fn untraced_context(span: &tracing::Span) -> Option<opentelemetry::Context> {
    in_registry(span, |s| {
        s.scope()
            .find_map(|s| s.extensions().get::<gate::Untraced>().map(|u| u.0.clone()))
    })
}

/// Makes the untraced `span` continue `parent` (see `gate`).
fn continue_untraced(span: &tracing::Span, parent: opentelemetry::Context) {
    in_registry(span, |s| {
        s.extensions_mut().replace(gate::Untraced(parent));
        Some(())
    });
}

/// Writes `span`'s trace context into headers (`traceparent`, `tracestate`).
pub fn inject(span: &tracing::Span, headers: &mut http::HeaderMap) {
    inject_context(&span_context(span), headers);
}

fn inject_context(cx: &opentelemetry::Context, headers: &mut http::HeaderMap) {
    TraceContextPropagator::new().inject_context(cx, &mut HeaderInjector(headers));
}

/// Reads a W3C trace context from HTTP headers (`traceparent`, `tracestate`).
pub fn extract(headers: &http::HeaderMap) -> opentelemetry::Context {
    TraceContextPropagator::new().extract(&HeaderExtractor(headers))
}

/// `span`'s context as a `traceparent` value (for response headers), when
/// it has a valid one.
pub fn traceparent(span: &tracing::Span) -> Option<String> {
    let cx = span_context(span);
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags().to_u8()
        )
    })
}

/// The gRPC status of a response that ended in its headers (errors); a
/// response that goes on to a body reports its status in trailers, which
/// for Bulwark's unary calls means OK.
fn grpc_code<B>(resp: &http::Response<B>) -> &'static str {
    let code = resp
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0);
    code_name(tonic::Code::from_i32(code))
}

/// Records a finished call's gRPC status on the current span and its
/// latency in `histogram` (`on_error`: the status of a transport failure).
fn finish_call<B, E>(
    result: &Result<http::Response<B>, E>,
    on_error: &'static str,
    histogram: &prometheus::HistogramVec,
    method: &str,
    start: Instant,
) {
    let code = match result {
        Ok(resp) => grpc_code(resp),
        Err(_) => on_error,
    };
    tracing::Span::current().record("rpc.grpc.status_code", code);
    histogram
        .with_label_values(&[method, code])
        .observe(start.elapsed().as_secs_f64());
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Cancelled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

// ---------------------------------------------------------------------------
// Client side.

/// Client middleware on every channel to a peer: one `grpc.client` span per
/// call (its context and the request id injected into the metadata), and
/// the per-method client latency metric.
#[derive(Clone)]
pub struct GrpcClientTrace<S> {
    inner: S,
}

impl<S> GrpcClientTrace<S> {
    pub fn new(inner: S) -> Self {
        GrpcClientTrace { inner }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, B, RB> Service<http::Request<B>> for GrpcClientTrace<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    RB: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let method = req.uri().path().to_string();
        // A trace that is not sampled gets no client span (nothing would
        // record it): the call carries the current context as it is.
        let current = span_context(&tracing::Span::current());
        let span = if current.span().span_context().is_sampled() {
            let span = client_span(&method);
            inject(&span, req.headers_mut());
            Some(span)
        } else {
            inject_context(&current, req.headers_mut());
            None
        };
        if let Some(id) = current_request_id() {
            if let Ok(v) = http::HeaderValue::from_str(&id) {
                req.headers_mut().insert(REQUEST_ID_HEADER, v);
            }
        }
        let start = Instant::now();
        let fut = self.inner.call(req);
        Box::pin(
            async move {
                let result = fut.await;
                finish_call(
                    &result,
                    "Unavailable",
                    &metrics().grpc_client,
                    &method,
                    start,
                );
                result
            }
            .instrument(span.unwrap_or_else(tracing::Span::none)),
        )
    }
}

/// The client span of one call (or streamed message) to `method`.
fn client_span(method: &str) -> tracing::Span {
    tracing::info_span!(
        "grpc.client",
        otel.name = %method,
        otel.kind = "client",
        rpc.system = "grpc",
        rpc.method = %method,
        rpc.grpc.status_code = tracing::field::Empty,
    )
}

/// The server span of one call (or streamed message) to `method`.
fn server_span(method: &str, request_id: &str) -> tracing::Span {
    tracing::info_span!(
        "grpc.server",
        otel.name = %method,
        otel.kind = "server",
        rpc.system = "grpc",
        rpc.method = %method,
        rpc.grpc.status_code = tracing::field::Empty,
        request_id = request_id,
    )
}

/// [`server_span`] for a trace that is not sampled: seen by the logs only
/// (see `gate`).
fn untraced_server_span(method: &str, request_id: &str) -> tracing::Span {
    tracing::info_span!(
        "grpc.server",
        rpc.method = %method,
        request_id = request_id,
        untraced = tracing::field::Empty,
    )
}

// ---------------------------------------------------------------------------
// Messages on a long-lived stream: each is traced like a call of its own.

/// Whether the trace of the current span is sampled (recorded, exported).
fn current_is_sampled() -> bool {
    span_context(&tracing::Span::current())
        .span()
        .span_context()
        .is_sampled()
}

/// The client span of one message sent on a stream standing in for the
/// unary call `method`, and the message's trace context (`traceparent`) and
/// request id to send with it. A message of a trace that is not sampled
/// gets none of them: nothing downstream would be recorded.
pub fn stream_message_client(method: &str) -> (Option<tracing::Span>, String, String) {
    if !current_is_sampled() {
        return (None, String::new(), String::new());
    }
    let request_id = current_request_id()
        .map(|id| id.to_string())
        .unwrap_or_default();
    let span = client_span(method);
    let traceparent = traceparent(&span).unwrap_or_default();
    (Some(span), traceparent, request_id)
}

/// The server span of one streamed message (see [`stream_message_client`]),
/// continuing its trace; none unless that trace is sampled. The caller keeps
/// it open while the message is handled.
pub fn stream_message_server(
    method: &str,
    traceparent: &str,
    request_id: &str,
) -> Option<tracing::Span> {
    let v = http::HeaderValue::from_str(traceparent).ok()?;
    let mut h = http::HeaderMap::new();
    h.insert("traceparent", v);
    let parent = extract(&h);
    if !parent.span().span_context().is_sampled() {
        return None;
    }
    let request_id = if valid_request_id(request_id) {
        request_id
    } else {
        ""
    };
    let span = server_span(method, request_id);
    let _ = span.set_parent(parent);
    Some(span)
}

/// Records the outcome of a call on its span.
pub fn record_status(span: &tracing::Span, code: tonic::Code) {
    span.record("rpc.grpc.status_code", code_name(code));
}

// ---------------------------------------------------------------------------
// Server side.

/// Server layer: one `grpc.server` span per RPC, continuing the caller's
/// trace and request id, and the per-method server latency metric.
#[derive(Clone, Copy, Default)]
pub struct GrpcTraceLayer;

impl<S> Layer<S> for GrpcTraceLayer {
    type Service = GrpcTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcTrace { inner }
    }
}

#[derive(Clone)]
pub struct GrpcTrace<S> {
    inner: S,
}

impl<S, B, RB> Service<http::Request<B>> for GrpcTrace<S>
where
    S: Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    RB: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let method = req.uri().path().to_string();
        let request_id: Option<Arc<str>> = req
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| valid_request_id(v))
            .map(Arc::from);
        let parent = extract(req.headers());
        let (valid, sampled) = {
            let sc = parent.span();
            let sc = sc.span_context();
            (sc.is_valid(), sc.is_sampled())
        };
        let span = if valid && !sampled {
            // Continued but not recorded: a span for the logs only.
            let span = untraced_server_span(&method, request_id.as_deref().unwrap_or(""));
            continue_untraced(&span, parent);
            span
        } else {
            let span = server_span(&method, request_id.as_deref().unwrap_or(""));
            let _ = span.set_parent(parent);
            span
        };
        let start = Instant::now();
        let fut = {
            let _enter = span.enter();
            self.inner.call(req)
        };
        let fut = async move {
            let result = fut.await;
            finish_call(&result, "Internal", &metrics().grpc_server, &method, start);
            result
        }
        .instrument(span);
        match request_id {
            Some(id) => Box::pin(with_request_id(id, fut)),
            None => Box::pin(fut),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_survives_a_hop() {
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("client");
            let sent = span.context().span().span_context().trace_id();
            let mut headers = http::HeaderMap::new();
            inject(&span, &mut headers);
            assert!(headers.get("traceparent").is_some());
            let got = extract(&headers).span().span_context().trace_id();
            assert_eq!(sent, got);
            assert_ne!(got, opentelemetry::trace::TraceId::INVALID);
            let tp = traceparent(&span).expect("traceparent");
            assert!(tp.starts_with(&format!("00-{sent}-")), "{tp}");
        });
    }

    /// Span names an exporter was handed.
    #[derive(Debug, Clone, Default)]
    struct Names(Arc<std::sync::Mutex<Vec<String>>>);

    impl opentelemetry_sdk::trace::SpanExporter for Names {
        async fn export(
            &self,
            batch: Vec<opentelemetry_sdk::trace::SpanData>,
        ) -> opentelemetry_sdk::error::OTelSdkResult {
            let mut names = self.0.lock().unwrap();
            names.extend(batch.into_iter().map(|s| s.name.into_owned()));
            Ok(())
        }
    }

    fn headers(traceparent: &'static str) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        h.insert("traceparent", http::HeaderValue::from_static(traceparent));
        h
    }

    #[test]
    fn spans_of_unsampled_traces_skip_opentelemetry_but_keep_the_context() {
        let names = Names::default();
        // Records everything it is shown, whatever the parent says: only
        // the filter keeps untraced spans from it.
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::AlwaysOn)
            .with_simple_exporter(names.clone())
            .build();
        let otel = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("test"))
            .with_context_activation(false)
            .with_filter(gate::OtelFilter);
        let (log_filter, _handle) = tracing_subscriber::reload::Layer::new(EnvFilter::new("info"));
        let subscriber = tracing_subscriber::registry().with(otel).with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::sink)
                .with_filter(log_filter),
        );
        tracing::subscriber::with_default(subscriber, || {
            let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
            let server = untraced_server_span("/svc/Unsampled", "req-1");
            continue_untraced(&server, extract(&headers(unsampled)));
            server.in_scope(|| {
                let child = tracing::info_span!("storage.get");
                child.in_scope(|| {
                    tracing::info!("an event under an untraced span");
                    let mut out = http::HeaderMap::new();
                    inject(&tracing::Span::current(), &mut out);
                    assert_eq!(
                        out["traceparent"], unsampled,
                        "the caller's context, unsampled"
                    );
                    assert!(!current_is_sampled());
                });
            });
            drop(server);

            let sampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
            let server = server_span("/svc/Sampled", "req-2");
            let _ = server.set_parent(extract(&headers(sampled)));
            server.in_scope(|| {
                tracing::info_span!("storage.get").in_scope(|| {
                    assert!(current_is_sampled());
                    let mut out = http::HeaderMap::new();
                    inject(&tracing::Span::current(), &mut out);
                    let tp = out["traceparent"].to_str().unwrap().to_string();
                    assert!(
                        tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
                        "{tp}"
                    );
                    assert!(tp.ends_with("-01"), "{tp}");
                    assert!(!tp.contains("00f067aa0ba902b7"), "a span of its own: {tp}");
                });
            });
        });
        let mut got = names.0.lock().unwrap().clone();
        got.sort();
        assert_eq!(got, ["/svc/Sampled", "storage.get"]);
    }

    #[test]
    fn a_client_traceparent_is_honoured() {
        let mut h = http::HeaderMap::new();
        h.insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        );
        let cx = extract(&h);
        assert_eq!(
            cx.span().span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }

    #[test]
    fn request_ids_from_peers_are_checked() {
        assert!(valid_request_id("6b1f2c3a-2f5e-4f55-9a53-5f1f3f6f0c11"));
        assert!(!valid_request_id(""));
        assert!(!valid_request_id("has space"));
        assert!(!valid_request_id(&"x".repeat(65)));
    }

    #[test]
    fn otlp_protocols_parse() {
        assert_eq!(OtlpProtocol::parse("grpc"), Some(OtlpProtocol::Grpc));
        assert_eq!(
            OtlpProtocol::parse("http/protobuf"),
            Some(OtlpProtocol::HttpProtobuf)
        );
        assert_eq!(OtlpProtocol::parse("http/json"), None);
    }
}
