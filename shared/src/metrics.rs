//! Process metrics, in Prometheus' data model.
//!
//! Every process has one registry ([`metrics`]) holding the metrics below and
//! the standard `process_*` collector. Each gRPC server also serves the
//! `bulwark.telemetry.v1.Telemetry/Scrape` RPC (see [`crate::grpc::serve`]),
//! so the gateway's `sys/metrics` can merge every process of a deployment
//! ([`render`]): each series gains a `process` label naming the services its
//! process runs (`all` for a single-process deployment).
//!
//! Names follow Vault's where Vault has the same measurement
//! (`vault_core_unsealed`, `vault_token_count`, `vault_expire_num_leases`,
//! `vault_audit_log_request_failure`); the rest are `bulwark_*`. No label
//! carries a request's path values: HTTP routes are templates
//! (`secret/data/:path`), gRPC methods are full method names.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use prometheus::proto::{LabelPair, MetricFamily, MetricType};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use protobuf::Message;

/// Latency buckets (seconds): 100 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Every metric a Bulwark process records.
pub struct Metrics {
    registry: Registry,
    /// `bulwark_http_requests_total{route,method,code}` (gateway).
    pub http_requests: IntCounterVec,
    /// `bulwark_http_request_duration_seconds{route,method}` (gateway).
    pub http_duration: HistogramVec,
    /// `bulwark_grpc_server_handling_seconds{method,code}`.
    pub grpc_server: HistogramVec,
    /// `bulwark_grpc_client_handling_seconds{method,code}`.
    pub grpc_client: HistogramVec,
    /// `bulwark_storage_operation_seconds{namespace,op}`.
    pub storage: HistogramVec,
    /// `bulwark_storage_errors_total{namespace,op}`.
    pub storage_errors: IntCounterVec,
    /// `vault_core_unsealed`: 1 while unsealed (seal service).
    pub unsealed: IntGauge,
    /// `vault_token_count`: live tokens in the store (auth service).
    pub token_count: IntGauge,
    /// `vault_expire_num_leases`: live leases (auth service).
    pub lease_count: IntGauge,
    /// `vault_audit_log_request` (seconds; its `_count` is Vault's
    /// `vault.audit.log_request_count`): recording requests (gateway).
    pub audit_log_request: prometheus::Histogram,
    /// `vault_audit_log_response` (seconds): recording responses (gateway).
    pub audit_log_response: prometheus::Histogram,
    /// `bulwark_auth_password_check_seconds`: one password check (argon2id
    /// or bcrypt) on the blocking pool, without waiting for a hashing slot
    /// (auth service). Against a login's latency, it is the split between
    /// the password hash and the rest of the login.
    pub password_check: prometheus::Histogram,
    /// `vault_audit_log_request_failure` (gateway).
    pub audit_request_failure: IntCounter,
    /// `vault_audit_log_response_failure` (gateway).
    pub audit_response_failure: IntCounter,
    /// `bulwark_http_overload_rejections_total`: requests refused with 503
    /// because `max_request_in_flight` were already being handled (gateway).
    pub overload_rejections: IntCounter,
    /// `vault_quota_rate_limit_violation`: requests refused by a rate-limit
    /// quota (gateway).
    pub rate_limit_violations: IntCounter,
    /// `vault_quota_lease_count_violation`: leases refused by a lease-count
    /// quota (gateway).
    pub lease_count_violations: IntCounter,
}

fn histogram(name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
        labels,
    )
    .unwrap_or_else(|e| unreachable!("static metric {name}: {e}"))
}

fn plain_histogram(name: &str, help: &str) -> prometheus::Histogram {
    prometheus::Histogram::with_opts(
        HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
    )
    .unwrap_or_else(|e| unreachable!("static metric {name}: {e}"))
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable!("static metric {name}: {e}"))
}

fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).unwrap_or_else(|e| unreachable!("static metric {name}: {e}"))
}

fn gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::new(name, help).unwrap_or_else(|e| unreachable!("static metric {name}: {e}"))
}

impl Metrics {
    fn new() -> Metrics {
        let m = Metrics {
            registry: Registry::new(),
            http_requests: counter_vec(
                "bulwark_http_requests_total",
                "HTTP API requests answered, by route template, method and status code.",
                &["route", "method", "code"],
            ),
            http_duration: histogram(
                "bulwark_http_request_duration_seconds",
                "Time to answer an HTTP API request, by route template and method.",
                &["route", "method"],
            ),
            grpc_server: histogram(
                "bulwark_grpc_server_handling_seconds",
                "Time to answer a gRPC call, by method and status code.",
                &["method", "code"],
            ),
            grpc_client: histogram(
                "bulwark_grpc_client_handling_seconds",
                "Time until a peer answered a gRPC call, by method and status code.",
                &["method", "code"],
            ),
            storage: histogram(
                "bulwark_storage_operation_seconds",
                "Storage operation latency, by namespace (service) and operation.",
                &["namespace", "op"],
            ),
            storage_errors: counter_vec(
                "bulwark_storage_errors_total",
                "Failed storage operations, by namespace (service) and operation.",
                &["namespace", "op"],
            ),
            unsealed: gauge("vault_core_unsealed", "1 while the barrier is unsealed."),
            token_count: gauge("vault_token_count", "Tokens in the token store."),
            lease_count: gauge(
                "vault_expire_num_leases",
                "Leases not yet expired or revoked.",
            ),
            audit_log_request: plain_histogram(
                "vault_audit_log_request",
                "Time to record a request in the audit devices (seconds).",
            ),
            audit_log_response: plain_histogram(
                "vault_audit_log_response",
                "Time to record a response in the audit devices (seconds).",
            ),
            password_check: plain_histogram(
                "bulwark_auth_password_check_seconds",
                "Time to check one password against its stored hash (seconds).",
            ),
            audit_request_failure: counter(
                "vault_audit_log_request_failure",
                "Requests refused because no audit device recorded them.",
            ),
            audit_response_failure: counter(
                "vault_audit_log_response_failure",
                "Responses withheld because no audit device recorded them.",
            ),
            overload_rejections: counter(
                "bulwark_http_overload_rejections_total",
                "API requests refused with 503 because max_request_in_flight were in flight.",
            ),
            rate_limit_violations: counter(
                "vault_quota_rate_limit_violation",
                "API requests refused with 429 by a rate-limit quota.",
            ),
            lease_count_violations: counter(
                "vault_quota_lease_count_violation",
                "Leases refused with 429 by a lease-count quota.",
            ),
        };
        let collectors: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.http_requests.clone()),
            Box::new(m.http_duration.clone()),
            Box::new(m.grpc_server.clone()),
            Box::new(m.grpc_client.clone()),
            Box::new(m.storage.clone()),
            Box::new(m.storage_errors.clone()),
            Box::new(m.unsealed.clone()),
            Box::new(m.token_count.clone()),
            Box::new(m.lease_count.clone()),
            Box::new(m.audit_log_request.clone()),
            Box::new(m.audit_log_response.clone()),
            Box::new(m.password_check.clone()),
            Box::new(m.audit_request_failure.clone()),
            Box::new(m.audit_response_failure.clone()),
            Box::new(m.overload_rejections.clone()),
            Box::new(m.rate_limit_violations.clone()),
            Box::new(m.lease_count_violations.clone()),
        ];
        for c in collectors {
            let _ = m.registry.register(c);
        }
        #[cfg(target_os = "linux")]
        {
            let _ = m.registry.register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ));
        }
        m
    }

    /// The current value of every metric of this process.
    pub fn gather(&self) -> Vec<MetricFamily> {
        self.registry.gather()
    }

    /// [`Metrics::gather`], each family protobuf-encoded (for `Scrape`).
    pub fn gather_encoded(&self) -> Vec<Vec<u8>> {
        self.gather()
            .iter()
            .filter_map(|f| f.write_to_bytes().ok())
            .collect()
    }
}

/// This process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// A random id for this process (changes at every start).
pub fn instance_id() -> &'static str {
    static ID: LazyLock<String> = LazyLock::new(|| uuid::Uuid::new_v4().to_string());
    &ID
}

static PROCESS: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Names the services this process runs (`kv`, `auth+policy`, or `all`).
/// Set once at start; later calls are ignored.
pub fn set_process_name(name: &str) {
    let _ = PROCESS.set(name.to_string());
}

/// See [`set_process_name`]; `all` when never set.
pub fn process_name() -> &'static str {
    PROCESS.get().map_or("all", String::as_str)
}

/// Decodes families received from `Scrape`; undecodable entries are skipped.
pub fn decode(encoded: &[Vec<u8>]) -> Vec<MetricFamily> {
    encoded
        .iter()
        .filter_map(|b| MetricFamily::parse_from_bytes(b).ok())
        .collect()
}

/// Merges the families of several processes, labelling each series with the
/// `process` it came from. Families of one name are joined; a family whose
/// type disagrees with the first one seen is dropped rather than emitted
/// inconsistently.
pub fn merge(parts: Vec<(String, Vec<MetricFamily>)>) -> Vec<MetricFamily> {
    let mut out: BTreeMap<String, MetricFamily> = BTreeMap::new();
    for (process, families) in parts {
        for mut fam in families {
            let mut metrics = fam.take_metric();
            for m in &mut metrics {
                let mut labels = m.take_label();
                let mut lp = LabelPair::new();
                lp.set_name("process".into());
                lp.set_value(process.clone());
                labels.push(lp);
                labels.sort_by(|a, b| a.name().cmp(b.name()));
                m.set_label(labels);
            }
            match out.get_mut(fam.name()) {
                Some(existing) if existing.get_field_type() == fam.get_field_type() => {
                    existing.mut_metric().extend(metrics);
                }
                Some(_) => {}
                None => {
                    fam.set_metric(metrics);
                    out.insert(fam.name().to_string(), fam);
                }
            }
        }
    }
    out.into_values().collect()
}

/// Prometheus' text exposition format (`text/plain; version=0.0.4`).
pub fn to_prometheus_text(families: &[MetricFamily]) -> String {
    let mut buf = Vec::new();
    // Encoding fails only on malformed families, which `merge` never makes.
    let _ = TextEncoder::new().encode(families, &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

/// The content type of [`to_prometheus_text`].
pub const PROMETHEUS_CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// The JSON layout of Vault's `sys/metrics` (go-metrics' in-memory sink):
/// `Gauges`, `Counters` and `Samples` (histograms: count, sum, mean and the
/// cumulative buckets), each entry with its `Name` and `Labels`.
pub fn to_vault_json(families: &[MetricFamily]) -> serde_json::Value {
    use serde_json::{json, Map, Value};
    let (mut gauges, mut counters, mut samples) = (vec![], vec![], vec![]);
    for fam in families {
        for m in fam.get_metric() {
            let labels: Map<String, Value> = m
                .get_label()
                .iter()
                .map(|l| (l.name().to_string(), Value::from(l.value())))
                .collect();
            let name = fam.name();
            match fam.get_field_type() {
                MetricType::GAUGE => gauges.push(json!({
                    "Name": name, "Value": m.get_gauge().value(), "Labels": labels,
                })),
                MetricType::COUNTER => {
                    let v = m.get_counter().value();
                    counters.push(json!({
                        "Name": name, "Count": v, "Sum": v, "Labels": labels,
                    }))
                }
                MetricType::HISTOGRAM => {
                    let h = m.get_histogram();
                    let (count, sum) = (h.get_sample_count(), h.get_sample_sum());
                    let buckets: Map<String, Value> = h
                        .get_bucket()
                        .iter()
                        .map(|b| {
                            (
                                b.upper_bound().to_string(),
                                Value::from(b.cumulative_count()),
                            )
                        })
                        .collect();
                    samples.push(json!({
                        "Name": name,
                        "Count": count,
                        "Sum": sum,
                        "Mean": if count > 0 { sum / count as f64 } else { 0.0 },
                        "Buckets": buckets,
                        "Labels": labels,
                    }))
                }
                _ => {}
            }
        }
    }
    json!({
        "Timestamp": chrono_like_now(),
        "Gauges": gauges,
        "Counters": counters,
        "Samples": samples,
    })
}

/// `YYYY-MM-DD HH:MM:SS +0000 UTC`, the timestamp layout of Vault's JSON.
fn chrono_like_now() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02} +0000 UTC",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_series_are_labelled_by_process() {
        let m = Metrics::new();
        m.http_requests
            .with_label_values(&["sys/health", "GET", "200"])
            .inc();
        let remote = Metrics::new();
        remote.token_count.set(7);
        remote
            .http_requests
            .with_label_values(&["sys/health", "GET", "200"])
            .inc_by(2);
        let merged = merge(vec![
            ("gateway".into(), m.gather()),
            (
                "auth".into(),
                decode(&remote.gather_encoded()), // through the wire format
            ),
        ]);
        let text = to_prometheus_text(&merged);
        assert!(
            text.contains(
                r#"bulwark_http_requests_total{code="200",method="GET",process="gateway",route="sys/health"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"bulwark_http_requests_total{code="200",method="GET",process="auth",route="sys/health"} 2"#
        ));
        assert!(text.contains(r#"vault_token_count{process="auth"} 7"#));
        // One HELP/TYPE header per family even when several processes have it.
        assert_eq!(
            text.matches("# TYPE bulwark_http_requests_total counter")
                .count(),
            1
        );
        let json = to_vault_json(&merged);
        let counters = json["Counters"].as_array().expect("counters");
        assert!(counters
            .iter()
            .any(|c| c["Name"] == "bulwark_http_requests_total" && c["Count"] == 2.0));
        assert!(json["Gauges"]
            .as_array()
            .expect("gauges")
            .iter()
            .any(|g| g["Name"] == "vault_token_count" && g["Value"] == 7.0));
    }

    #[test]
    fn histograms_render_as_samples() {
        let m = Metrics::new();
        m.grpc_server
            .with_label_values(&["/bulwark.kv.v1.Kv/Get", "OK"])
            .observe(0.002);
        let json = to_vault_json(&merge(vec![("kv".into(), m.gather())]));
        let s = json["Samples"]
            .as_array()
            .expect("samples")
            .iter()
            .find(|s| s["Name"] == "bulwark_grpc_server_handling_seconds")
            .expect("sample")
            .clone();
        assert_eq!(s["Count"], 1);
        assert_eq!(s["Labels"]["code"], "OK");
        assert_eq!(s["Buckets"]["0.0025"], 1);
        assert_eq!(s["Buckets"]["0.001"], 0);
    }
}
