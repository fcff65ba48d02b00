//! The server configuration file (HCL, in the spirit of Vault's):
//!
//! ```hcl
//! target = ["seal", "gateway"]        # or "all" (the default)
//!
//! storage "sqlite" { path = "/var/lib/bulwark/bulwark.db" }
//! # storage "postgresql" { connection_url = "postgres://…", max_connections = 10 }
//!
//! listener "tcp" {
//!   address       = "127.0.0.1:8200"   # the gateway's HTTP listener
//!   tls_cert_file = "/etc/bulwark/tls/api.pem"      # leaf first, then intermediates
//!   tls_key_file  = "/etc/bulwark/tls/api-key.pem"
//!   # tls_disable = true               # plain HTTP instead (then no files needed)
//! }
//!
//! cluster {
//!   cert_dir = "/etc/bulwark/certs"   # ca.pem + <service>.pem/-key.pem
//!   # gRPC address of each service; required for services in other processes.
//!   seal = "127.0.0.1:8301"
//!   auth = "127.0.0.1:8302"
//! }
//!
//! log_level  = "info"
//! log_format = "text"                 # or "json"
//!
//! # Requests the gateway handles at once; beyond it, 503 at once (not queued).
//! max_request_in_flight = 4096
//!
//! # The longest any one call to another service may take (Vault's key): a
//! # stuck service costs its callers this much, then a 5xx, never a hang.
//! default_max_request_duration = "90s"
//!
//! telemetry {
//!   otlp_endpoint        = "http://127.0.0.1:4317"  # traces over OTLP (else OTEL_EXPORTER_OTLP_ENDPOINT)
//!   otlp_protocol        = "grpc"                   # or "http/protobuf"
//!   trace_sampling_ratio = 0.1                      # share of new traces sampled
//!   metrics_address      = "127.0.0.1:9102"         # plain-HTTP GET /metrics of this process
//!   unauthenticated_metrics_access = false          # sys/metrics without a token
//!   # Vault's prometheus_retention_time and disable_hostname are accepted and ignored.
//! }
//!
//! # Auto-unseal (optional; without it the root key is split with Shamir).
//! seal "static" {
//!   current_key_id = "20250606-1"             # recorded with the wrapped root key
//!   current_key    = "file:///etc/bulwark/seal.key"   # or env://VAR, or hex / base64
//! }
//! # or through another Bulwark's (or Vault's) transit engine:
//! # seal "transit" {
//! #   address     = "https://bulwark-a:8200"  # else VAULT_ADDR
//! #   token       = "hvs.…"                   # else VAULT_TOKEN
//! #   key_name    = "autounseal"              # else VAULT_TRANSIT_SEAL_KEY_NAME
//! #   mount_path  = "transit/"                # the default; else VAULT_TRANSIT_SEAL_MOUNT_PATH
//! #   tls_ca_cert = "/etc/bulwark/transit-ca.pem"
//! # }
//! ```
//!
//! Unknown keys are refused, with the file name and the parser's position.
//!
//! As in Vault, a `listener "tcp"` block serves HTTPS unless `tls_disable` is
//! true (`true`, `1` and `"true"` are all accepted), and then `tls_cert_file`
//! and `tls_key_file` are required. Without any listener block the gateway
//! serves plain HTTP on `127.0.0.1:8200`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::names::ServiceName;
use crate::storage::StorageConfig;
use crate::telemetry::{LogFormat, OtlpProtocol, TraceExport};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: {source}")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
}

/// Which services one process runs.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawTarget {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    target: Option<RawTarget>,
    #[serde(default)]
    storage: BTreeMap<String, RawStorage>,
    #[serde(default)]
    listener: BTreeMap<String, RawListener>,
    cluster: Option<RawCluster>,
    log_level: Option<String>,
    log_format: Option<String>,
    telemetry: Option<RawTelemetry>,
    /// The web UI at `/ui` (Vault's `ui = true`).
    ui: Option<RawBool>,
    /// Vault's; Bulwark does not lock memory (keys are zeroized instead), so
    /// `true` and `false` are both accepted and change nothing.
    #[allow(dead_code)]
    disable_mlock: Option<RawBool>,
    /// `seal "<type>" { … }`: attributes kept as values, so that an
    /// unsupported type is named as such rather than by its first attribute.
    #[serde(default)]
    seal: BTreeMap<String, BTreeMap<String, hcl::Value>>,
    /// The gateway's bound on requests in flight (a value, so that a
    /// wrong type is reported by name, at its line).
    max_request_in_flight: Option<hcl::Value>,
    /// Vault's `default_max_request_duration`: here the deadline of every
    /// call to another service (a value: `"90s"` or a number of seconds).
    default_max_request_duration: Option<hcl::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTelemetry {
    otlp_endpoint: Option<String>,
    otlp_protocol: Option<String>,
    trace_sampling_ratio: Option<f64>,
    metrics_address: Option<String>,
    unauthenticated_metrics_access: Option<RawBool>,
    // Vault's, accepted so its configs load; no effect here.
    #[allow(dead_code)]
    prometheus_retention_time: Option<String>,
    #[allow(dead_code)]
    disable_hostname: Option<RawBool>,
}

/// The `telemetry` block.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TelemetryConfig {
    /// Trace export from the file; `None` leaves it to the `OTEL_*`
    /// environment ([`TraceExport::from_env`]).
    pub export: Option<TraceExport>,
    /// Address of this process's plain-HTTP `/metrics` endpoint.
    pub metrics_address: Option<String>,
    /// `sys/metrics` answers without a token.
    pub unauthenticated_metrics_access: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    path: Option<String>,
    connection_url: Option<String>,
    max_connections: Option<u32>,
    table_prefix: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    address: Option<String>,
    tls_disable: Option<RawBool>,
    tls_cert_file: Option<String>,
    tls_key_file: Option<String>,
    tls_client_ca_file: Option<String>,
    tls_require_and_verify_client_cert: Option<RawBool>,
}

/// A boolean as Vault's configs write it: `true`, `1` or `"true"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawBool {
    Bool(bool),
    Int(i64),
    Str(String),
}

impl RawBool {
    /// Go's `strconv.ParseBool`, which Vault uses for these values.
    fn value(&self) -> Result<bool, String> {
        match self {
            RawBool::Bool(b) => Ok(*b),
            RawBool::Int(0) => Ok(false),
            RawBool::Int(1) => Ok(true),
            RawBool::Str(s) => match s.as_str() {
                "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
                "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
                _ => Err(format!("{s:?} is not a boolean")),
            },
            RawBool::Int(i) => Err(format!("{i} is not a boolean")),
        }
    }
}

/// The certificate and key of an HTTPS listener (PEM files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// The server's certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// The leaf's private key.
    pub key_file: PathBuf,
    /// CA(s) that client certificates must chain to (`tls_client_ca_file`);
    /// without it any presented chain is accepted and left to the cert
    /// auth method to judge.
    pub client_ca_file: Option<PathBuf>,
    /// Refuse clients without a certificate
    /// (`tls_require_and_verify_client_cert`; needs `client_ca_file`).
    pub require_client_cert: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    cert_dir: Option<String>,
    seal: Option<RawAddrs>,
    auth: Option<RawAddrs>,
    policy: Option<RawAddrs>,
    kv: Option<RawAddrs>,
    #[serde(rename = "dynamic-db")]
    dynamic_db: Option<RawAddrs>,
    pki: Option<RawAddrs>,
    audit: Option<RawAddrs>,
    transit: Option<RawAddrs>,
}

/// A service's gRPC address, or the addresses of its replicas.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum RawAddrs {
    One(String),
    Many(Vec<String>),
}

/// A validated server configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Services this process runs, in start-up order.
    pub targets: Vec<ServiceName>,
    pub storage: StorageConfig,
    /// The gateway's HTTP listen address.
    pub http_address: String,
    /// HTTPS on that address; `None` when `tls_disable` is true (or there is
    /// no listener block).
    pub http_tls: Option<ListenerTls>,
    /// Directory of the internal CA and service certificates.
    pub cert_dir: PathBuf,
    /// gRPC addresses of each service (`host:port`): one, or its replicas
    /// in order of preference. A service run by this process listens on the
    /// first (list its own address first), or on an ephemeral loopback port
    /// when it has none.
    pub addresses: BTreeMap<ServiceName, Vec<String>>,
    pub log_level: String,
    pub log_format: LogFormat,
    pub telemetry: TelemetryConfig,
    /// `ui = true`: serve the web UI at `/ui` (the gateway's embedded files,
    /// a client of `/v1` like any other). Off unless asked for, so that an
    /// API-only deployment serves no HTML; `server -dev` always has it.
    pub ui: bool,
    /// `seal "static"` or `seal "transit"`: auto-unseal; `None` = Shamir
    /// unseal keys.
    pub seal: Option<SealConfig>,
    /// `disable_mlock = true`: do not lock the process's memory. Off by
    /// default, as in Vault: keys and secrets must not be swapped to disk.
    pub disable_mlock: bool,
    /// `max_request_in_flight`: how many `/v1` requests the gateway handles
    /// at once (default [`DEFAULT_MAX_REQUEST_IN_FLIGHT`]). One more is
    /// answered 503 at once instead of queueing, so that overload costs
    /// fast refusals rather than memory.
    pub max_request_in_flight: usize,
    /// `default_max_request_duration` (default
    /// [`DEFAULT_MAX_REQUEST_DURATION`]): the deadline of each gRPC call
    /// this process makes to another service, so that a stuck or stopped
    /// service costs its callers a bounded wait and a 5xx rather than a
    /// pile-up of requests waiting forever. Vault bounds a whole request
    /// with it; here a request waits at most this long for any one service.
    pub default_max_request_duration: std::time::Duration,
}

/// Vault's default `default_max_request_duration`.
pub const DEFAULT_MAX_REQUEST_DURATION: std::time::Duration = std::time::Duration::from_secs(90);

/// The gateway's default bound on requests in flight.
pub const DEFAULT_MAX_REQUEST_IN_FLIGHT: usize = 4096;

/// The largest `max_request_in_flight` accepted (each request may hold a
/// 32 MiB body: a bound beyond this bounds nothing).
pub const MAX_MAX_REQUEST_IN_FLIGHT: usize = 1_000_000;

/// Parses a target list: `all`, or service names separated by commas.
pub fn parse_targets(items: &[String]) -> Result<Vec<ServiceName>, String> {
    let mut out = Vec::new();
    for item in items.iter().flat_map(|s| s.split(',')).map(str::trim) {
        if item == "all" {
            out.extend(ServiceName::ALL);
        } else {
            out.push(item.parse::<ServiceName>().map_err(|e| e.to_string())?);
        }
    }
    if out.is_empty() {
        return Err("target names no service".into());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

impl ServerConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        // The file may hold a static seal key in the clear.
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    file: file.clone(),
                    source,
                })?,
            );
        Self::parse(&file, &text)
    }

    /// Parses and validates a config file's text. A value the parser took
    /// but validation refuses is reported at the line of its key
    /// (`file:LINE: message`).
    pub fn parse(file: &str, text: &str) -> Result<Self, ConfigError> {
        Self::parse_unlocated(file, text).map_err(|e| match e {
            ConfigError::Invalid { file, message } => match locate(text, &message) {
                Some(line) => ConfigError::Invalid {
                    file: format!("{file}:{line}"),
                    message,
                },
                None => ConfigError::Invalid { file, message },
            },
            // Unknown keys and wrong types: the parser names the key but
            // not always where it is.
            ConfigError::Parse { file, message } if !message.contains("line") => {
                match locate(text, &message) {
                    Some(line) => ConfigError::Parse {
                        file: format!("{file}:{line}"),
                        message,
                    },
                    None => ConfigError::Parse { file, message },
                }
            }
            other => other,
        })
    }

    fn parse_unlocated(file: &str, text: &str) -> Result<Self, ConfigError> {
        // hcl's parser recurses per nesting level: refuse deep text before
        // it can overflow the stack (found by the fuzz targets, issue 13).
        crate::hcl_depth::check(text).map_err(|e| ConfigError::Parse {
            file: format!("{file}:{}", e.line),
            message: format!(
                "HCL syntax: nesting deeper than {} levels",
                crate::hcl_depth::MAX_DEPTH
            ),
        })?;
        let raw: RawConfig = hcl::from_str(text).map_err(|e| match e {
            // One line: `file:LINE:COLUMN: what`.
            hcl::Error::Parse(p) => ConfigError::Parse {
                file: format!("{file}:{}:{}", p.location().line(), p.location().column()),
                message: format!("HCL syntax: {}", p.message()),
            },
            other => ConfigError::Parse {
                file: file.to_string(),
                message: other.to_string(),
            },
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            file: file.to_string(),
            message,
        };
        let targets = match raw.target {
            None => ServiceName::ALL.to_vec(),
            Some(RawTarget::One(s)) => {
                parse_targets(&[s]).map_err(|e| invalid(format!("target: {e}")))?
            }
            Some(RawTarget::Many(v)) => {
                parse_targets(&v).map_err(|e| invalid(format!("target: {e}")))?
            }
        };
        if raw.storage.len() > 1 {
            return Err(invalid("only one storage block is allowed".into()));
        }
        let storage = match raw.storage.into_iter().next() {
            None => StorageConfig::Sqlite {
                path: "bulwark.db".into(),
            },
            Some((kind, s)) => match kind.as_str() {
                "sqlite" => {
                    if s.connection_url.is_some()
                        || s.max_connections.is_some()
                        || s.table_prefix.is_some()
                    {
                        return Err(invalid("storage \"sqlite\" takes only path".into()));
                    }
                    match s.path.as_deref() {
                        Some(":memory:") => StorageConfig::SqliteMemory,
                        Some(p) if !p.is_empty() => StorageConfig::Sqlite { path: p.into() },
                        _ => return Err(invalid("storage \"sqlite\": path is required".into())),
                    }
                }
                "postgresql" => {
                    if s.path.is_some() {
                        return Err(invalid(
                            "storage \"postgresql\" takes connection_url, not path".into(),
                        ));
                    }
                    let url = s.connection_url.filter(|u| !u.is_empty()).ok_or_else(|| {
                        invalid("storage \"postgresql\": connection_url is required".into())
                    })?;
                    let table_prefix = s
                        .table_prefix
                        .unwrap_or_else(|| crate::storage::DEFAULT_TABLE_PREFIX.into());
                    if !crate::storage::valid_table_prefix(&table_prefix) {
                        return Err(invalid(format!(
                            "storage \"postgresql\": table_prefix {table_prefix:?} (lower-case letters, digits and _, not starting with a digit, at most 24)"
                        )));
                    }
                    StorageConfig::Postgres {
                        url,
                        max_connections: s.max_connections.unwrap_or(10),
                        table_prefix,
                    }
                }
                other => {
                    return Err(invalid(format!(
                        "unknown storage type {other:?} (expected \"sqlite\" or \"postgresql\")"
                    )))
                }
            },
        };
        if raw.listener.len() > 1 {
            return Err(invalid("only one listener block is allowed".into()));
        }
        let mut http_address = "127.0.0.1:8200".to_string();
        let mut http_tls = None;
        if let Some((kind, l)) = raw.listener.into_iter().next() {
            if kind != "tcp" {
                return Err(invalid(format!(
                    "unknown listener type {kind:?} (expected \"tcp\")"
                )));
            }
            if let Some(a) = l.address {
                http_address = a;
            }
            validate_addr(&http_address)
                .map_err(|e| invalid(format!("listener \"tcp\" address: {e}")))?;
            let tls_disable = match &l.tls_disable {
                None => false,
                Some(v) => v
                    .value()
                    .map_err(|e| invalid(format!("listener \"tcp\" tls_disable: {e}")))?,
            };
            if !tls_disable {
                let cert = l.tls_cert_file.filter(|f| !f.is_empty());
                let key = l.tls_key_file.filter(|f| !f.is_empty());
                match (cert, key) {
                    (Some(cert), Some(key)) => {
                        let require_client_cert = match &l.tls_require_and_verify_client_cert {
                            None => false,
                            Some(v) => v.value().map_err(|e| {
                                invalid(format!(
                                    "listener \"tcp\" tls_require_and_verify_client_cert: {e}"
                                ))
                            })?,
                        };
                        let client_ca_file = l
                            .tls_client_ca_file
                            .filter(|f| !f.is_empty())
                            .map(PathBuf::from);
                        if require_client_cert && client_ca_file.is_none() {
                            return Err(invalid(
                                "listener \"tcp\": tls_require_and_verify_client_cert needs tls_client_ca_file".into(),
                            ));
                        }
                        http_tls = Some(ListenerTls {
                            cert_file: cert.into(),
                            key_file: key.into(),
                            client_ca_file,
                            require_client_cert,
                        })
                    }
                    (cert, key) => {
                        let missing = match (cert, key) {
                            (None, None) => "'tls_cert_file' and 'tls_key_file' must be set",
                            (None, _) => "'tls_cert_file' must be set",
                            _ => "'tls_key_file' must be set",
                        };
                        return Err(invalid(format!(
                            "listener \"tcp\": {missing} (or set tls_disable = true for plain HTTP)"
                        )));
                    }
                }
            }
        }
        let cluster = raw.cluster.unwrap_or(RawCluster {
            cert_dir: None,
            seal: None,
            auth: None,
            policy: None,
            kv: None,
            dynamic_db: None,
            pki: None,
            audit: None,
            transit: None,
        });
        let mut addresses = BTreeMap::new();
        for (name, addr) in [
            (ServiceName::Seal, cluster.seal),
            (ServiceName::Auth, cluster.auth),
            (ServiceName::Policy, cluster.policy),
            (ServiceName::Kv, cluster.kv),
            (ServiceName::DynamicDb, cluster.dynamic_db),
            (ServiceName::Pki, cluster.pki),
            (ServiceName::Audit, cluster.audit),
            (ServiceName::Transit, cluster.transit),
        ] {
            let list = match addr {
                None => continue,
                Some(RawAddrs::One(a)) => vec![a],
                Some(RawAddrs::Many(v)) => v,
            };
            if list.is_empty() {
                return Err(invalid(format!("cluster {name}: an empty address list")));
            }
            for a in &list {
                validate_addr(a).map_err(|e| invalid(format!("cluster {name}: {e}")))?;
            }
            addresses.insert(name, list);
        }
        for name in ServiceName::ALL {
            if name != ServiceName::Gateway
                && !targets.contains(&name)
                && !addresses.contains_key(&name)
            {
                return Err(invalid(format!(
                    "cluster: service {name} is not run by this process, so its address is required"
                )));
            }
        }
        let ui = match &raw.ui {
            None => false,
            Some(v) => v.value().map_err(|e| invalid(format!("ui: {e}")))?,
        };
        let disable_mlock = match &raw.disable_mlock {
            None => false,
            Some(v) => v
                .value()
                .map_err(|e| invalid(format!("disable_mlock: {e}")))?,
        };
        let log_format = match raw.log_format.as_deref() {
            None | Some("text") | Some("standard") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(invalid(format!(
                    "log_format {other:?} (expected \"text\" or \"json\")"
                )))
            }
        };
        let telemetry = match raw.telemetry {
            None => TelemetryConfig::default(),
            Some(t) => parse_telemetry(t).map_err(|e| invalid(format!("telemetry: {e}")))?,
        };
        let seal = parse_seal(raw.seal, file).map_err(invalid)?;
        let max_request_in_flight = match &raw.max_request_in_flight {
            None => DEFAULT_MAX_REQUEST_IN_FLIGHT,
            Some(v) => parse_in_flight(v).map_err(invalid)?,
        };
        let default_max_request_duration = match &raw.default_max_request_duration {
            None => DEFAULT_MAX_REQUEST_DURATION,
            Some(v) => parse_request_duration(v).map_err(invalid)?,
        };
        Ok(ServerConfig {
            max_request_in_flight,
            default_max_request_duration,
            ui,
            disable_mlock,
            telemetry,
            targets,
            storage,
            http_address,
            http_tls,
            cert_dir: PathBuf::from(cluster.cert_dir.unwrap_or_else(|| "certs".into())),
            addresses,
            log_level: raw.log_level.unwrap_or_else(|| "info".into()),
            log_format,
            seal,
        })
    }
}

/// `max_request_in_flight`: a whole number from 1 to
/// [`MAX_MAX_REQUEST_IN_FLIGHT`] (a quoted number is taken too).
fn parse_in_flight(v: &hcl::Value) -> Result<usize, String> {
    let n = match v {
        hcl::Value::Number(n) => n.as_u64(),
        hcl::Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    n.and_then(|n| usize::try_from(n).ok())
        .filter(|n| (1..=MAX_MAX_REQUEST_IN_FLIGHT).contains(n))
        .ok_or_else(|| {
            format!(
                "max_request_in_flight = {v}: expected a whole number from 1 to {MAX_MAX_REQUEST_IN_FLIGHT}"
            )
        })
}

/// `default_max_request_duration`: a positive duration (`"90s"`, `"2m"`) or
/// a whole number of seconds.
fn parse_request_duration(v: &hcl::Value) -> Result<std::time::Duration, String> {
    let d = match v {
        hcl::Value::Number(n) => n.as_u64().map(std::time::Duration::from_secs),
        hcl::Value::String(s) => crate::ttl::parse_duration(s.trim()).ok(),
        _ => None,
    };
    d.filter(|d| !d.is_zero()).ok_or_else(|| {
        format!("default_max_request_duration = {v}: expected a positive duration such as \"90s\"")
    })
}

fn parse_telemetry(t: RawTelemetry) -> Result<TelemetryConfig, String> {
    let protocol = match t.otlp_protocol.as_deref() {
        None => OtlpProtocol::Grpc,
        Some(p) => OtlpProtocol::parse(p).ok_or_else(|| {
            format!("otlp_protocol {p:?} (expected \"grpc\" or \"http/protobuf\")")
        })?,
    };
    let sampling_ratio = t.trace_sampling_ratio.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&sampling_ratio) {
        return Err(format!(
            "trace_sampling_ratio {sampling_ratio} (expected a number from 0 to 1)"
        ));
    }
    let export = match t.otlp_endpoint.filter(|e| !e.is_empty()) {
        Some(endpoint) => {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                return Err(format!(
                    "otlp_endpoint {endpoint:?} (expected an http:// or https:// URL)"
                ));
            }
            Some(TraceExport {
                endpoint,
                protocol,
                sampling_ratio,
            })
        }
        None if t.otlp_protocol.is_some() || t.trace_sampling_ratio.is_some() => {
            return Err("otlp_protocol and trace_sampling_ratio need otlp_endpoint".into())
        }
        None => None,
    };
    if let Some(a) = &t.metrics_address {
        validate_addr(a).map_err(|e| format!("metrics_address: {e}"))?;
    }
    let unauthenticated_metrics_access = match &t.unauthenticated_metrics_access {
        None => false,
        Some(v) => v
            .value()
            .map_err(|e| format!("unauthenticated_metrics_access: {e}"))?,
    };
    Ok(TelemetryConfig {
        export,
        metrics_address: t.metrics_address,
        unauthenticated_metrics_access,
    })
}

/// Length of a static seal key (AES-256-GCM).
pub const STATIC_SEAL_KEY_LEN: usize = 32;

/// `seal "static"` (OpenBao's static seal): auto-unseal with a 32-byte key
/// that wraps the root key in storage. The key is given in the file (hex or
/// base64), in a file (`file://<path>`: hex, base64, or exactly 32 raw
/// bytes, not all printable) or in an environment variable
/// (`env://<NAME>`: hex or base64).
///
/// Only the key's *source* is kept here (a key written in the file is
/// already checked and held in a `Zeroizing` buffer); [`Self::load_key`]
/// reads a file or variable, in the process that runs the seal service
/// only, before anything starts. Never printed: `Debug` shows the source
/// kind, not the key.
#[derive(Clone)]
pub struct StaticSealConfig {
    /// `current_key_id`: recorded with the wrapped root key.
    pub key_id: String,
    source: SealKeySource,
    /// The configuration file, for error messages.
    file: String,
}

#[derive(Clone)]
enum SealKeySource {
    Literal(Zeroizing<[u8; STATIC_SEAL_KEY_LEN]>),
    File(PathBuf),
    Env(String),
}

impl std::fmt::Debug for StaticSealConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match &self.source {
            SealKeySource::Literal(_) => "literal (redacted)".to_string(),
            SealKeySource::File(p) => format!("file://{}", p.display()),
            SealKeySource::Env(v) => format!("env://{v}"),
        };
        f.debug_struct("StaticSealConfig")
            .field("key_id", &self.key_id)
            .field("current_key", &source)
            .finish()
    }
}

/// The static seal's key, read: what the seal service is given.
#[derive(Clone)]
pub struct StaticSealKey {
    pub key_id: String,
    pub key: Zeroizing<[u8; STATIC_SEAL_KEY_LEN]>,
}

impl std::fmt::Debug for StaticSealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticSealKey")
            .field("key_id", &self.key_id)
            .field("key", &"(redacted)")
            .finish()
    }
}

impl StaticSealConfig {
    /// Reads the key from its source and checks that it is 32 bytes. Errors
    /// name the configuration file and the source (path or variable), never
    /// the key.
    pub fn load_key(&self) -> Result<StaticSealKey, ConfigError> {
        let invalid = |what: String, why: String| ConfigError::Invalid {
            file: self.file.clone(),
            message: format!("seal \"static\": current_key {what}: {why}"),
        };
        let key = match &self.source {
            SealKeySource::Literal(k) => k.clone(),
            SealKeySource::File(path) => {
                let what = format!("\"file://{}\"", path.display());
                let raw = Zeroizing::new(std::fs::read(path).map_err(|e| {
                    invalid(what.clone(), format!("cannot read {}: {e}", path.display()))
                })?);
                // 32 bytes that are not all printable: the raw key (a
                // random key is printable with a chance of about 1e-14; a
                // 128-bit key in hex is 32 printable bytes, and refused).
                if raw.len() == STATIC_SEAL_KEY_LEN && !raw.iter().all(u8::is_ascii_graphic) {
                    let mut k = Zeroizing::new([0u8; STATIC_SEAL_KEY_LEN]);
                    k.copy_from_slice(&raw);
                    k
                } else {
                    decode_seal_key(&raw).map_err(|why| {
                        invalid(
                            what,
                            format!("{why} (or the file holds exactly 32 raw bytes)"),
                        )
                    })?
                }
            }
            SealKeySource::Env(name) => {
                let what = format!("\"env://{name}\"");
                let value = match std::env::var_os(name) {
                    Some(v) => Zeroizing::new(v.into_encoded_bytes()),
                    None => {
                        return Err(invalid(
                            what,
                            format!("the environment variable {name} is not set"),
                        ))
                    }
                };
                decode_seal_key(&value).map_err(|why| invalid(what, why))?
            }
        };
        Ok(StaticSealKey {
            key_id: self.key_id.clone(),
            key,
        })
    }
}

/// A 32-byte key written as hex (64 characters) or standard base64
/// (surrounding white space ignored). The error never quotes the input.
fn decode_seal_key(text: &[u8]) -> Result<Zeroizing<[u8; STATIC_SEAL_KEY_LEN]>, String> {
    let text = text.trim_ascii();
    // Hex when it is only hex digits (base64 of 32 bytes always ends in '=').
    let decoded = if !text.is_empty() && text.iter().all(u8::is_ascii_hexdigit) {
        hex::decode(text).ok().map(Zeroizing::new)
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .ok()
            .map(Zeroizing::new)
    };
    let Some(raw) = decoded else {
        return Err("is neither hex nor base64; it must be a 32-byte key".into());
    };
    if raw.len() != STATIC_SEAL_KEY_LEN {
        return Err(format!(
            "the key is {} bytes; it must be 32 bytes (64 hex characters or 44 base64 characters)",
            raw.len()
        ));
    }
    let mut k = Zeroizing::new([0u8; STATIC_SEAL_KEY_LEN]);
    k.copy_from_slice(&raw);
    Ok(k)
}

/// The `seal` blocks: none (Shamir), `seal "shamir" {}`, or one
/// `seal "static"` or `seal "transit"`. Other types are refused by name.
fn parse_seal(
    blocks: BTreeMap<String, BTreeMap<String, hcl::Value>>,
    file: &str,
) -> Result<Option<SealConfig>, String> {
    if blocks.len() > 1 {
        return Err(
            "only one seal block is allowed (migrating between seals is not supported)".into(),
        );
    }
    let Some((kind, body)) = blocks.into_iter().next() else {
        return Ok(None);
    };
    match kind.as_str() {
        "static" => parse_static_seal(body, file).map(|s| Some(SealConfig::Static(s))),
        "transit" => parse_transit_seal(body, file).map(|s| Some(SealConfig::Transit(s))),
        "shamir" if body.is_empty() => Ok(None),
        "shamir" => Err("seal \"shamir\" takes no parameters".into()),
        other => Err(format!(
            "seal {other:?}: unsupported seal type (supported: \"static\", \"transit\")"
        )),
    }
}

fn parse_static_seal(
    mut body: BTreeMap<String, hcl::Value>,
    file: &str,
) -> Result<StaticSealConfig, String> {
    if let Some(unknown) = body
        .keys()
        .find(|k| !matches!(k.as_str(), "current_key_id" | "current_key"))
    {
        return Err(format!(
            "seal \"static\": unknown key {unknown:?} (expected current_key_id and current_key)"
        ));
    }
    let key_id = match body.remove("current_key_id") {
        Some(hcl::Value::String(s)) if !s.trim().is_empty() => s,
        Some(hcl::Value::String(_)) | None => {
            return Err("seal \"static\": current_key_id is required".into())
        }
        Some(_) => return Err("seal \"static\": current_key_id must be a string".into()),
    };
    if key_id.len() > 128 || key_id.chars().any(char::is_control) {
        return Err(
            "seal \"static\": current_key_id must be at most 128 characters, without control characters"
                .into(),
        );
    }
    let value = match body.remove("current_key") {
        Some(hcl::Value::String(s)) => Zeroizing::new(s),
        None => return Err("seal \"static\": current_key is required".into()),
        Some(_) => return Err("seal \"static\": current_key must be a string".into()),
    };
    let source =
        if let Some(path) = value.strip_prefix("file://") {
            if path.is_empty() {
                return Err("seal \"static\": current_key \"file://\" names no file".into());
            }
            SealKeySource::File(PathBuf::from(path))
        } else if let Some(name) = value.strip_prefix("env://") {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return Err(format!(
                "seal \"static\": current_key \"env://{name}\" is not an environment variable name"
            ));
            }
            SealKeySource::Env(name.to_string())
        } else {
            SealKeySource::Literal(decode_seal_key(value.as_bytes()).map_err(|why| {
                format!("seal \"static\": current_key (written in the file) {why}")
            })?)
        };
    Ok(StaticSealConfig {
        key_id,
        source,
        file: file.to_string(),
    })
}

/// A `seal` block, as configured: what [`SealConfig::load`] reads into
/// the [`SealSettings`] the seal service is given.
#[derive(Debug, Clone)]
pub enum SealConfig {
    Static(StaticSealConfig),
    Transit(TransitSealConfig),
}

/// A `seal` block, read (key files, environment variables): what the seal
/// service is given. Never printed with its secrets.
#[derive(Debug, Clone)]
pub enum SealSettings {
    Static(StaticSealKey),
    Transit(TransitSealSettings),
}

impl SealConfig {
    /// The seal type as stored and reported (`"static"`, `"transit"`).
    pub fn seal_type(&self) -> &'static str {
        match self {
            SealConfig::Static(_) => "static",
            SealConfig::Transit(_) => "transit",
        }
    }

    /// Reads what the block refers to (key file, environment, CA file), in
    /// the process that runs the seal service only, before anything starts.
    pub fn load(&self) -> Result<SealSettings, ConfigError> {
        Ok(match self {
            SealConfig::Static(s) => SealSettings::Static(s.load_key()?),
            SealConfig::Transit(t) => SealSettings::Transit(t.load()?),
        })
    }
}

impl SealSettings {
    /// The seal type as stored and reported (`"static"`, `"transit"`).
    pub fn seal_type(&self) -> &'static str {
        match self {
            SealSettings::Static(_) => "static",
            SealSettings::Transit(_) => "transit",
        }
    }
}

/// `seal "transit"` (Vault's): the root key is wrapped by a transit key of
/// another Bulwark (or Vault), through its HTTP API. Values not in the
/// block are taken, as Vault does, from `VAULT_ADDR`, `VAULT_TOKEN`,
/// `VAULT_TRANSIT_SEAL_KEY_NAME` and `VAULT_TRANSIT_SEAL_MOUNT_PATH` when
/// [`Self::load`] runs. `Debug` never shows the token.
#[derive(Clone)]
pub struct TransitSealConfig {
    address: Option<String>,
    token: Option<Zeroizing<String>>,
    key_name: Option<String>,
    mount_path: Option<String>,
    namespace: Option<String>,
    tls_ca_cert: Option<PathBuf>,
    tls_client_cert: Option<PathBuf>,
    tls_client_key: Option<PathBuf>,
    tls_server_name: Option<String>,
    /// The configuration file, for error messages.
    file: String,
}

impl std::fmt::Debug for TransitSealConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransitSealConfig")
            .field("address", &self.address)
            .field("token", &self.token.as_ref().map(|_| "(redacted)"))
            .field("key_name", &self.key_name)
            .field("mount_path", &self.mount_path)
            .field("namespace", &self.namespace)
            .field("tls_ca_cert", &self.tls_ca_cert)
            .field("tls_client_cert", &self.tls_client_cert)
            .field("tls_client_key", &self.tls_client_key)
            .field("tls_server_name", &self.tls_server_name)
            .finish()
    }
}

/// The transit seal, read: where and how to call the transit engine.
#[derive(Clone)]
pub struct TransitSealSettings {
    /// `http(s)://host[:port]`, without a trailing slash.
    pub address: String,
    pub token: Zeroizing<String>,
    pub key_name: String,
    /// With one trailing slash, none leading: `transit/`.
    pub mount_path: String,
    /// Sent as `X-Vault-Namespace` when given.
    pub namespace: Option<String>,
    /// PEM of the CA(s) to trust for the transit server (besides the
    /// usual roots).
    pub ca_pem: Option<Vec<u8>>,
    /// PEM of a client certificate followed by its key.
    pub client_identity_pem: Option<Zeroizing<Vec<u8>>>,
    /// The name to verify the server's certificate against (and send as
    /// SNI) instead of the address's host.
    pub server_name: Option<String>,
}

impl std::fmt::Debug for TransitSealSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransitSealSettings")
            .field("address", &self.address)
            .field("token", &"(redacted)")
            .field("key_name", &self.key_name)
            .field("mount_path", &self.mount_path)
            .field("namespace", &self.namespace)
            .field("ca_pem", &self.ca_pem.is_some())
            .field("client_identity", &self.client_identity_pem.is_some())
            .field("server_name", &self.server_name)
            .finish()
    }
}

/// The default transit mount.
pub const TRANSIT_SEAL_DEFAULT_MOUNT: &str = "transit/";

fn check_transit_address(a: &str) -> Result<String, String> {
    let a = a.trim().trim_end_matches('/');
    let rest = a
        .strip_prefix("https://")
        .or_else(|| a.strip_prefix("http://"))
        .ok_or_else(|| format!("{a:?} is not an http:// or https:// URL"))?;
    if rest.is_empty() || rest.contains(['/', '?', '#', ' ']) {
        return Err(format!(
            "{a:?} must be scheme://host[:port], without a path"
        ));
    }
    Ok(a.to_string())
}

fn check_key_name(k: &str) -> Result<String, String> {
    if k.is_empty()
        || k.len() > 256
        || k.chars()
            .any(|c| c == '/' || c.is_whitespace() || c.is_control())
    {
        return Err(format!("{k:?} is not a transit key name"));
    }
    Ok(k.to_string())
}

fn check_mount_path(m: &str) -> Result<String, String> {
    let trimmed = m.trim_matches('/');
    if trimmed.is_empty()
        || trimmed
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#')
    {
        return Err(format!("{m:?} is not a mount path"));
    }
    Ok(format!("{trimmed}/"))
}

/// An HCL value Vault reads with Go's `strconv.ParseBool`.
fn hcl_bool(v: &hcl::Value) -> Result<bool, String> {
    match v {
        hcl::Value::Bool(b) => Ok(*b),
        hcl::Value::Number(n) => RawBool::Int(n.as_i64().unwrap_or(2)).value(),
        hcl::Value::String(s) => RawBool::Str(s.clone()).value(),
        _ => Err("is not a boolean".into()),
    }
}

fn parse_transit_seal(
    mut body: BTreeMap<String, hcl::Value>,
    file: &str,
) -> Result<TransitSealConfig, String> {
    const KEYS: [&str; 12] = [
        "address",
        "token",
        "key_name",
        "mount_path",
        "namespace",
        "disable_renewal",
        "tls_ca_cert",
        "tls_client_cert",
        "tls_client_key",
        "tls_server_name",
        "tls_skip_verify",
        "key_id_prefix",
    ];
    if let Some(unknown) = body.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!(
            "seal \"transit\": unknown key {unknown:?} (expected one of {})",
            KEYS.join(", ")
        ));
    }
    let mut string = |key: &str| -> Result<Option<String>, String> {
        match body.remove(key) {
            None => Ok(None),
            Some(hcl::Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(hcl::Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(format!("seal \"transit\": {key} must be a string")),
        }
    };
    let address = string("address")?
        .map(|a| check_transit_address(&a).map_err(|e| format!("seal \"transit\": address {e}")))
        .transpose()?;
    let token = string("token")?.map(Zeroizing::new);
    let key_name = string("key_name")?
        .map(|k| check_key_name(&k).map_err(|e| format!("seal \"transit\": key_name {e}")))
        .transpose()?;
    let mount_path = string("mount_path")?
        .map(|m| check_mount_path(&m).map_err(|e| format!("seal \"transit\": mount_path {e}")))
        .transpose()?;
    let namespace = string("namespace")?;
    let tls_ca_cert = string("tls_ca_cert")?.map(PathBuf::from);
    let tls_client_cert = string("tls_client_cert")?.map(PathBuf::from);
    let tls_client_key = string("tls_client_key")?.map(PathBuf::from);
    let tls_server_name = string("tls_server_name")?;
    if string("key_id_prefix")?.is_some() {
        return Err("seal \"transit\": key_id_prefix is not supported".into());
    }
    for key in ["disable_renewal", "tls_skip_verify"] {
        let on = match body.remove(key) {
            None => false,
            Some(v) => hcl_bool(&v).map_err(|e| format!("seal \"transit\": {key} {e}"))?,
        };
        if key == "tls_skip_verify" && on {
            return Err(
                "seal \"transit\": tls_skip_verify = true is not supported: the transit server's \
                 certificate is always verified (give its CA in tls_ca_cert)"
                    .into(),
            );
        }
        // disable_renewal: the token is never renewed by Bulwark (its
        // lifetime is managed where it was made), so either value is fine.
    }
    if tls_client_cert.is_some() != tls_client_key.is_some() {
        return Err(
            "seal \"transit\": tls_client_cert and tls_client_key go together (give both or neither)"
                .into(),
        );
    }
    if let Some(n) = &tls_server_name {
        if n.contains(['/', ':', ' ']) {
            return Err(format!(
                "seal \"transit\": tls_server_name {n:?} is not a host name"
            ));
        }
    }
    Ok(TransitSealConfig {
        address,
        token,
        key_name,
        mount_path,
        namespace,
        tls_ca_cert,
        tls_client_cert,
        tls_client_key,
        tls_server_name,
        file: file.to_string(),
    })
}

impl TransitSealConfig {
    /// Completes the block from the environment (as Vault: `VAULT_ADDR`,
    /// `VAULT_TOKEN`, `VAULT_TRANSIT_SEAL_KEY_NAME`,
    /// `VAULT_TRANSIT_SEAL_MOUNT_PATH`) and reads the TLS files. Errors name
    /// the key and the file or variable, never the token.
    pub fn load(&self) -> Result<TransitSealSettings, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            file: self.file.clone(),
            message: format!("seal \"transit\": {message}"),
        };
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let address = match (&self.address, env("VAULT_ADDR")) {
            (Some(a), _) => a.clone(),
            (None, Some(a)) => check_transit_address(&a)
                .map_err(|e| invalid(format!("address (from VAULT_ADDR) {e}")))?,
            (None, None) => {
                return Err(invalid(
                    "address is required (in the block, or VAULT_ADDR)".into(),
                ))
            }
        };
        let token = match (&self.token, env("VAULT_TOKEN")) {
            (Some(t), _) => t.clone(),
            (None, Some(t)) => Zeroizing::new(t),
            (None, None) => {
                return Err(invalid(
                    "token is required (in the block, or VAULT_TOKEN)".into(),
                ))
            }
        };
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid("token must not contain white space".into()));
        }
        let key_name = match (&self.key_name, env("VAULT_TRANSIT_SEAL_KEY_NAME")) {
            (Some(k), _) => k.clone(),
            (None, Some(k)) => check_key_name(&k)
                .map_err(|e| invalid(format!("key_name (from VAULT_TRANSIT_SEAL_KEY_NAME) {e}")))?,
            (None, None) => {
                return Err(invalid(
                    "key_name is required (in the block, or VAULT_TRANSIT_SEAL_KEY_NAME)".into(),
                ))
            }
        };
        let mount_path = match (&self.mount_path, env("VAULT_TRANSIT_SEAL_MOUNT_PATH")) {
            (Some(m), _) => m.clone(),
            (None, Some(m)) => check_mount_path(&m).map_err(|e| {
                invalid(format!(
                    "mount_path (from VAULT_TRANSIT_SEAL_MOUNT_PATH) {e}"
                ))
            })?,
            (None, None) => TRANSIT_SEAL_DEFAULT_MOUNT.to_string(),
        };
        let read = |key: &str, path: &Path| {
            std::fs::read(path)
                .map_err(|e| invalid(format!("{key} cannot read {}: {e}", path.display())))
        };
        let ca_pem = match &self.tls_ca_cert {
            None => None,
            Some(path) => {
                let pem = read("tls_ca_cert", path)?;
                if !String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----") {
                    return Err(invalid(format!(
                        "tls_ca_cert {} holds no PEM certificate",
                        path.display()
                    )));
                }
                Some(pem)
            }
        };
        let client_identity_pem = match (&self.tls_client_cert, &self.tls_client_key) {
            (Some(cert), Some(key)) => {
                let mut pem = Zeroizing::new(read("tls_client_cert", cert)?);
                pem.push(b'\n');
                pem.extend_from_slice(&Zeroizing::new(read("tls_client_key", key)?));
                Some(pem)
            }
            _ => None,
        };
        Ok(TransitSealSettings {
            address,
            token,
            key_name,
            mount_path,
            namespace: self.namespace.clone(),
            ca_pem,
            client_identity_pem,
            server_name: self.tls_server_name.clone(),
        })
    }
}

/// The line (1-based) of the key a validation message is about: of the
/// words of `message` that start a line of `text` as an attribute or block
/// (`key =`, `key {`, `key "…"`), the last one named (messages name the
/// block, then the key: `storage "postgresql": table_prefix …`).
fn locate(text: &str, message: &str) -> Option<usize> {
    let line_of = |word: &str| {
        text.lines().position(|line| {
            line.trim_start()
                .strip_prefix(word)
                .is_some_and(|rest| rest.trim_start().starts_with(['=', '{', '"']))
        })
    };
    // The parser's "unknown field `x`, expected one of …" names the key first.
    if let Some(rest) = message.split_once("unknown field `").map(|(_, r)| r) {
        if let Some((key, _)) = rest.split_once('`') {
            return line_of(key).map(|i| i + 1);
        }
    }
    let words = message
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .filter(|w| w.len() > 1 && w.starts_with(|c: char| c.is_ascii_lowercase()));
    let mut found = None;
    for word in words {
        if let Some(i) = line_of(word) {
            found = Some(i + 1);
        }
    }
    found
}

fn validate_addr(a: &str) -> Result<(), String> {
    let (host, port) = a
        .rsplit_once(':')
        .ok_or_else(|| format!("{a:?} is not host:port"))?;
    if host.is_empty() || port.parse::<u16>().is_err() {
        return Err(format!("{a:?} is not host:port"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_file() {
        let c = ServerConfig::parse(
            "b.hcl",
            r#"
            target = ["seal", "gateway"]
            storage "postgresql" { connection_url = "postgres://x@h/db" }
            listener "tcp" {
              address = "0.0.0.0:8200"
              tls_disable = true
            }
            cluster {
              cert_dir = "/c"
              auth = ["10.0.0.2:8302", "10.0.0.3:8302"]
              policy = "p:1"
              kv = "k:1"
              dynamic-db = "d:1"
              pki = "pk:1"
              audit = "a:1"
              transit = "t:1"
            }
            log_format = "json"
            ui = true
            disable_mlock = true
            telemetry {
              otlp_endpoint = "http://collector:4318"
              otlp_protocol = "http/protobuf"
              trace_sampling_ratio = 0.25
              metrics_address = "0.0.0.0:9102"
              unauthenticated_metrics_access = "true"
              prometheus_retention_time = "24h"
              disable_hostname = true
            }
            "#,
        )
        .unwrap();
        assert_eq!(
            c.telemetry,
            TelemetryConfig {
                export: Some(TraceExport {
                    endpoint: "http://collector:4318".into(),
                    protocol: OtlpProtocol::HttpProtobuf,
                    sampling_ratio: 0.25,
                }),
                metrics_address: Some("0.0.0.0:9102".into()),
                unauthenticated_metrics_access: true,
            }
        );
        assert!(c.ui);
        assert!(c.disable_mlock);
        assert_eq!(c.targets, vec![ServiceName::Seal, ServiceName::Gateway]);
        assert!(matches!(
            c.storage,
            StorageConfig::Postgres {
                max_connections: 10,
                ..
            }
        ));
        assert_eq!(c.http_address, "0.0.0.0:8200");
        assert_eq!(c.http_tls, None);
        assert_eq!(c.addresses[&ServiceName::DynamicDb], vec!["d:1"]);
        assert_eq!(
            c.addresses[&ServiceName::Auth],
            vec!["10.0.0.2:8302", "10.0.0.3:8302"]
        );
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn defaults_to_all_in_one() {
        let c = ServerConfig::parse("b.hcl", r#"storage "sqlite" { path = "x.db" }"#).unwrap();
        assert_eq!(c.targets.len(), ServiceName::ALL.len());
        assert_eq!(c.http_address, "127.0.0.1:8200");
        assert_eq!(c.http_tls, None);
    }

    fn listener(body: &str) -> Result<ServerConfig, ConfigError> {
        ServerConfig::parse("l.hcl", &format!("listener \"tcp\" {{\n{body}\n}}"))
    }

    #[test]
    fn https_listener() {
        let c = listener(
            r#"address = "0.0.0.0:8443"
               tls_cert_file = "/tls/api.pem"
               tls_key_file = "/tls/api-key.pem""#,
        )
        .unwrap();
        assert_eq!(c.http_address, "0.0.0.0:8443");
        assert_eq!(
            c.http_tls,
            Some(ListenerTls {
                cert_file: "/tls/api.pem".into(),
                key_file: "/tls/api-key.pem".into(),
                client_ca_file: None,
                require_client_cert: false,
            })
        );
        let c = listener(
            r#"tls_cert_file = "a.pem"
               tls_key_file = "k.pem"
               tls_client_ca_file = "ca.pem"
               tls_require_and_verify_client_cert = "true""#,
        )
        .unwrap();
        let tls = c.http_tls.unwrap();
        assert_eq!(tls.client_ca_file, Some("ca.pem".into()));
        assert!(tls.require_client_cert);
        let e = listener(
            r#"tls_cert_file = "a.pem"
               tls_key_file = "k.pem"
               tls_require_and_verify_client_cert = true"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("needs tls_client_ca_file"), "{e}");
        // tls_disable = false says the same.
        let c = listener(
            r#"tls_disable = false
               tls_cert_file = "a.pem"
               tls_key_file = "k.pem""#,
        )
        .unwrap();
        assert_eq!(c.http_address, "127.0.0.1:8200");
        assert!(c.http_tls.is_some());
    }

    #[test]
    fn tls_disable_in_vaults_spellings() {
        for v in ["true", "1", "\"true\"", "\"1\""] {
            let c = listener(&format!("tls_disable = {v}")).unwrap();
            assert_eq!(c.http_tls, None, "{v}");
        }
        // Files given with tls_disable = true are ignored, as by Vault.
        let c = listener(
            r#"tls_disable = true
               tls_cert_file = "a.pem""#,
        )
        .unwrap();
        assert_eq!(c.http_tls, None);
        for v in ["false", "0", "\"false\""] {
            let e = listener(&format!("tls_disable = {v}"))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("'tls_cert_file' and 'tls_key_file' must be set"),
                "{e}"
            );
        }
        let e = listener("tls_disable = \"maybe\"").unwrap_err().to_string();
        assert!(
            e.contains("tls_disable") && e.contains("not a boolean"),
            "{e}"
        );
        let e = listener("tls_disable = 2").unwrap_err().to_string();
        assert!(e.contains("not a boolean"), "{e}");
    }

    #[test]
    fn tls_listener_needs_both_files() {
        let e = listener(r#"address = "127.0.0.1:8200""#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("l.hcl"), "{e}");
        assert!(
            e.contains("'tls_cert_file' and 'tls_key_file' must be set"),
            "{e}"
        );
        assert!(e.contains("tls_disable = true"), "{e}");
        let e = listener(r#"tls_cert_file = "a.pem""#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("'tls_key_file' must be set"), "{e}");
        assert!(!e.contains("'tls_cert_file'"), "{e}");
        let e = listener(r#"tls_key_file = "k.pem""#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("'tls_cert_file' must be set"), "{e}");
        let e = listener(
            r#"tls_cert_file = ""
               tls_key_file = "k.pem""#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("'tls_cert_file' must be set"), "{e}");
        assert!(err(r#"listener "tcp" { tls_bogus_option = "x" }"#).contains("tls_bogus_option"));
    }

    fn err(text: &str) -> String {
        ServerConfig::parse("bad.hcl", text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn mistakes_name_their_line() {
        let text = "log_level = \"info\"\nstorage \"postgresql\" {\n  connection_url = \"postgres://h/db\"\n  table_prefix = \"Bad-\"\n}\n";
        let e = ServerConfig::parse("bad.hcl", text)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("bad.hcl:4: "), "{e}");
        let e = ServerConfig::parse("bad.hcl", "\n\nlog_format = \"xml\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("bad.hcl:3: "), "{e}");
        let e = ServerConfig::parse("bad.hcl", "\nstorage \"s3\" {}\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("bad.hcl:2: "), "{e}");
    }

    #[test]
    fn max_request_in_flight_default_value_and_mistakes() {
        let c = ServerConfig::parse("m.hcl", "").unwrap();
        assert_eq!(c.max_request_in_flight, DEFAULT_MAX_REQUEST_IN_FLIGHT);
        let c = ServerConfig::parse("m.hcl", "max_request_in_flight = 2\n").unwrap();
        assert_eq!(c.max_request_in_flight, 2);
        for bad in ["0", "-5", "1000001"] {
            let e = ServerConfig::parse(
                "m.hcl",
                &format!("log_level = \"info\"\n\nmax_request_in_flight = {bad}\n"),
            )
            .unwrap_err()
            .to_string();
            assert!(e.starts_with("m.hcl:3: "), "{bad}: {e}");
            assert!(e.contains("max_request_in_flight"), "{bad}: {e}");
        }
        for bad in ["\"many\"", "2.5", "true", "[1]"] {
            let e = ServerConfig::parse("m.hcl", &format!("\nmax_request_in_flight = {bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("m.hcl:2: max_request_in_flight"),
                "{bad}: {e}"
            );
        }
        let c = ServerConfig::parse("m.hcl", "max_request_in_flight = \"64\"\n").unwrap();
        assert_eq!(c.max_request_in_flight, 64);
    }

    #[test]
    fn default_max_request_duration_default_value_and_mistakes() {
        use std::time::Duration;
        let c = ServerConfig::parse("m.hcl", "").unwrap();
        assert_eq!(c.default_max_request_duration, DEFAULT_MAX_REQUEST_DURATION);
        assert_eq!(c.default_max_request_duration, Duration::from_secs(90));
        for (text, want) in [("\"2s\"", 2), ("\"1m30s\"", 90), ("45", 45)] {
            let c =
                ServerConfig::parse("m.hcl", &format!("default_max_request_duration = {text}\n"))
                    .unwrap();
            assert_eq!(
                c.default_max_request_duration,
                Duration::from_secs(want),
                "{text}"
            );
        }
        for bad in ["0", "\"0s\"", "\"soon\"", "-1", "true"] {
            let e = ServerConfig::parse(
                "m.hcl",
                &format!("log_level = \"info\"\ndefault_max_request_duration = {bad}\n"),
            )
            .unwrap_err()
            .to_string();
            assert!(
                e.starts_with("m.hcl:2: default_max_request_duration"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn mistakes_name_the_file_and_the_problem() {
        assert!(err("bogus = 1").contains("bad.hcl"));
        assert!(err("bogus = 1").contains("bogus"));
        assert!(err(r#"storage "s3" {}"#).contains("unknown storage type"));
        assert!(err(r#"storage "sqlite" {}"#).contains("path is required"));
        assert!(err(r#"target = "nope""#).contains("unknown service"));
        assert!(err(r#"target = "kv""#).contains("address is required"));
        assert!(err(r#"listener "tcp" { address = "nonsense" }"#).contains("host:port"));
        assert!(err("storage {").contains("bad.hcl"));
        assert!(err(r#"log_format = "xml""#).contains("log_format"));
        assert!(err(r#"telemetry { otlp_endpoint = "collector:4317" }"#).contains("otlp_endpoint"));
        assert!(err(
            "telemetry {\n otlp_endpoint = \"http://c:4317\"\n otlp_protocol = \"http/json\"\n}"
        )
        .contains("otlp_protocol"));
        assert!(err(
            "telemetry {\n otlp_endpoint = \"http://c:4317\"\n trace_sampling_ratio = 2\n}"
        )
        .contains("trace_sampling_ratio"));
        assert!(err(r#"telemetry { trace_sampling_ratio = 0.5 }"#).contains("otlp_endpoint"));
        assert!(err(r#"telemetry { metrics_address = "nowhere" }"#).contains("metrics_address"));
        assert!(err(r#"telemetry { statsd_address = "x:1" }"#).contains("statsd_address"));
        assert!(err("storage \"postgresql\" {\n connection_url = \"postgres://h/db\"\n table_prefix = \"Bad-\"\n}")
            .contains("table_prefix"));
        assert!(
            err("storage \"sqlite\" {\n path = \"x.db\"\n table_prefix = \"p_\"\n}")
                .contains("only path")
        );
        assert!(err("cluster {\n auth = []\n}").contains("empty address list"));
    }

    fn seal(body: &str) -> Result<ServerConfig, ConfigError> {
        ServerConfig::parse("s.hcl", &format!("seal \"static\" {{\n{body}\n}}"))
    }

    fn static_of(c: ServerConfig) -> StaticSealConfig {
        match c.seal {
            Some(SealConfig::Static(s)) => s,
            other => panic!("not a static seal: {other:?}"),
        }
    }

    #[test]
    fn static_seal_key_in_the_file_as_hex_or_base64() {
        let key = [7u8; 32];
        for text in [
            hex::encode(key),
            base64::engine::general_purpose::STANDARD.encode(key),
        ] {
            let c = seal(&format!(
                "current_key_id = \"k1\"\ncurrent_key = \"{text}\""
            ))
            .unwrap();
            let s = static_of(c);
            assert_eq!(s.key_id, "k1");
            let loaded = s.load_key().unwrap();
            assert_eq!((loaded.key_id.as_str(), *loaded.key), ("k1", key));
            // Debug output never shows the key.
            let shown = format!("{s:?} {loaded:?}");
            assert!(
                !shown.contains(&text) && !shown.contains(&hex::encode(key)),
                "{shown}"
            );
        }
        // No seal block, or seal "shamir" {}: Shamir.
        assert!(ServerConfig::parse("s.hcl", "").unwrap().seal.is_none());
        assert!(ServerConfig::parse("s.hcl", "seal \"shamir\" {}")
            .unwrap()
            .seal
            .is_none());
    }

    #[test]
    fn static_seal_key_from_a_file_or_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let key = [9u8; 32];
        let raw = dir.path().join("raw.key");
        std::fs::write(&raw, key).unwrap();
        let text = dir.path().join("hex.key");
        std::fs::write(&text, format!("{}\n", hex::encode(key))).unwrap();
        let b64 = dir.path().join("b64.key");
        std::fs::write(
            &b64,
            base64::engine::general_purpose::STANDARD.encode(key) + "\n",
        )
        .unwrap();
        for f in [&raw, &text, &b64] {
            let c = seal(&format!(
                "current_key_id = \"k\"\ncurrent_key = \"file://{}\"",
                f.display()
            ))
            .unwrap();
            assert_eq!(*static_of(c).load_key().unwrap().key, key, "{f:?}");
        }
        // The variable is only read by load_key.
        let var = "BULWARK_CONFIG_TEST_SEAL_KEY";
        let c = seal(&format!(
            "current_key_id = \"k\"\ncurrent_key = \"env://{var}\""
        ))
        .unwrap();
        let s = static_of(c);
        let e = s.load_key().unwrap_err().to_string();
        assert!(
            e.starts_with("s.hcl:") && e.contains(var) && e.contains("not set"),
            "{e}"
        );
        std::env::set_var(var, hex::encode(key));
        assert_eq!(*s.load_key().unwrap().key, key);
        std::env::set_var(var, hex::encode([1u8; 16]));
        let e = s.load_key().unwrap_err().to_string();
        assert!(e.contains("16 bytes") && e.contains(var), "{e}");
        std::env::remove_var(var);

        // A missing file, a short one: the error names the file, not the key.
        let missing = dir.path().join("nope.key");
        let e = seal(&format!(
            "current_key_id = \"k\"\ncurrent_key = \"file://{}\"",
            missing.display()
        ))
        .map(static_of)
        .unwrap()
        .load_key()
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("s.hcl:") && e.contains("current_key") && e.contains("nope.key"),
            "{e}"
        );
        assert_eq!(e.lines().count(), 1);
        let short = dir.path().join("short.key");
        std::fs::write(&short, hex::encode([5u8; 16])).unwrap();
        let e = seal(&format!(
            "current_key_id = \"k\"\ncurrent_key = \"file://{}\"",
            short.display()
        ))
        .map(static_of)
        .unwrap()
        .load_key()
        .unwrap_err()
        .to_string();
        assert!(e.contains("short.key") && e.contains("16 bytes"), "{e}");
        assert!(!e.contains(&hex::encode([5u8; 16])), "{e}");
    }

    #[test]
    fn static_seal_mistakes_are_named() {
        let short = hex::encode([3u8; 16]);
        let e = err(&format!(
            "seal \"static\" {{\n current_key_id = \"k\"\n current_key = \"{short}\"\n}}"
        ));
        assert!(
            e.starts_with("bad.hcl:") && e.contains("current_key"),
            "{e}"
        );
        assert!(e.contains("16 bytes") && !e.contains(&short), "{e}");
        assert!(err(
            "seal \"static\" {\n current_key_id = \"k\"\n current_key = \"not a key!\"\n}"
        )
        .contains("neither hex nor base64"));
        assert!(err(&format!(
            "seal \"static\" {{\n current_key = \"{}\"\n}}",
            hex::encode([1u8; 32])
        ))
        .contains("current_key_id is required"));
        assert!(err("seal \"static\" {\n current_key_id = \"k\"\n}")
            .contains("current_key is required"));
        assert!(
            err("seal \"static\" {\n current_key_id = \"k\"\n current_key = \"env://\"\n}")
                .contains("env://")
        );
        let e = err("seal \"static\" {\n current_key_id = \"k\"\n previous_key = \"x\"\n}");
        assert!(e.contains("unknown key \"previous_key\""), "{e}");
        let e = err("seal \"awskms\" {\n region = \"eu-west-1\"\n kms_key_id = \"x\"\n}");
        assert!(
            e.starts_with("bad.hcl:")
                && e.contains("\"awskms\"")
                && e.contains("supported: \"static\", \"transit\""),
            "{e}"
        );
        assert!(err("seal \"static\" {}\nseal \"shamir\" {}").contains("only one seal block"));
    }

    fn transit(body: &str) -> Result<TransitSealConfig, ConfigError> {
        let c = ServerConfig::parse("s.hcl", &format!("seal \"transit\" {{\n{body}\n}}"))?;
        match c.seal {
            Some(SealConfig::Transit(t)) => Ok(t),
            other => panic!("not a transit seal: {other:?}"),
        }
    }

    #[test]
    fn transit_seal_block() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let t = transit(&format!(
            "address = \"https://bulwark-a:8200/\"\n token = \"hvs.secret-token\"\n \
             key_name = \"autounseal\"\n mount_path = \"/seal-transit\"\n \
             disable_renewal = \"false\"\n tls_skip_verify = \"false\"\n \
             tls_ca_cert = \"{}\"\n tls_server_name = \"bulwark-a.internal\"",
            ca.display()
        ))
        .unwrap();
        assert!(!format!("{t:?}").contains("secret-token"));
        let s = t.load().unwrap();
        assert_eq!(s.address, "https://bulwark-a:8200");
        assert_eq!(s.token.as_str(), "hvs.secret-token");
        assert_eq!(
            (s.key_name.as_str(), s.mount_path.as_str()),
            ("autounseal", "seal-transit/")
        );
        assert_eq!(s.server_name.as_deref(), Some("bulwark-a.internal"));
        assert!(s
            .ca_pem
            .unwrap()
            .starts_with(b"-----BEGIN CERTIFICATE-----"));
        assert!(s.client_identity_pem.is_none());
        // The same through SealConfig; the default mount path.
        let c = ServerConfig::parse(
            "s.hcl",
            "seal \"transit\" {\n address = \"http://127.0.0.1:8200\"\n token = \"t\"\n key_name = \"k\"\n}",
        )
        .unwrap();
        let seal = c.seal.unwrap();
        assert_eq!(seal.seal_type(), "transit");
        let SealSettings::Transit(s) = seal.load().unwrap() else {
            panic!("transit")
        };
        assert_eq!(s.mount_path, "transit/");
        assert!(!format!("{s:?}").contains("\"t\""));
    }

    #[test]
    fn transit_seal_values_from_the_environment() {
        // Only read by load (the names are Vault's). Unique to this test.
        let t = transit("address = \"http://127.0.0.1:1\"\n key_name = \"k\"").unwrap();
        std::env::remove_var("VAULT_TOKEN");
        let e = t.load().unwrap_err().to_string();
        assert!(
            e.starts_with("s.hcl:") && e.contains("token is required") && e.contains("VAULT_TOKEN"),
            "{e}"
        );
        assert_eq!(e.lines().count(), 1);
        std::env::set_var("VAULT_TOKEN", "hvs.from-env");
        assert_eq!(t.load().unwrap().token.as_str(), "hvs.from-env");
        std::env::remove_var("VAULT_TOKEN");
        let e = transit("address = \"http://127.0.0.1:1\"\n token = \"t\"")
            .unwrap()
            .load()
            .unwrap_err()
            .to_string();
        assert!(e.contains("key_name is required"), "{e}");
        // A missing CA file is named.
        let e = transit(
            "address = \"http://h:1\"\n token = \"t\"\n key_name = \"k\"\n tls_ca_cert = \"/nonexistent/ca.pem\"",
        )
        .unwrap()
        .load()
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("tls_ca_cert") && e.contains("/nonexistent/ca.pem"),
            "{e}"
        );
    }

    #[test]
    fn transit_seal_mistakes_are_named() {
        let base = "address = \"http://h:8200\"\n token = \"t\"\n key_name = \"k\"\n";
        let e = err(&format!(
            "seal \"transit\" {{\n{base} tls_skip_verify = true\n}}"
        ));
        assert!(
            e.starts_with("bad.hcl:")
                && e.contains("tls_skip_verify")
                && e.contains("not supported"),
            "{e}"
        );
        assert_eq!(e.lines().count(), 1);
        // "false" (Vault's example) is fine.
        assert!(transit(&format!("{base} tls_skip_verify = \"false\"")).is_ok());
        assert!(err(&format!(
            "seal \"transit\" {{\n{base} tls_skip_verify = \"maybe\"\n}}"
        ))
        .contains("tls_skip_verify"));
        let e = err("seal \"transit\" {\n address = \"h:8200\"\n}");
        assert!(e.contains("address") && e.contains("http://"), "{e}");
        assert!(err("seal \"transit\" {\n address = \"http://h/v1\"\n}").contains("without a path"));
        assert!(err("seal \"transit\" {\n key_name = \"a/b\"\n}").contains("key_name"));
        assert!(err("seal \"transit\" {\n mount_path = \"/\"\n}").contains("mount_path"));
        assert!(err("seal \"transit\" {\n token = 5\n}").contains("token must be a string"));
        let e = err("seal \"transit\" {\n tls_client_cert = \"c.pem\"\n}");
        assert!(e.contains("tls_client_cert and tls_client_key"), "{e}");
        let e = err("seal \"transit\" {\n adress = \"http://h\"\n}");
        assert!(e.contains("unknown key \"adress\""), "{e}");
        assert!(err("seal \"transit\" {\n key_id_prefix = \"x\"\n}").contains("key_id_prefix"));
    }
}
