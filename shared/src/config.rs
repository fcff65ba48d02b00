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

use serde::Deserialize;

use crate::names::ServiceName;
use crate::storage::StorageConfig;
use crate::telemetry::LogFormat;

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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    path: Option<String>,
    connection_url: Option<String>,
    max_connections: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    address: Option<String>,
    tls_disable: Option<RawBool>,
    tls_cert_file: Option<String>,
    tls_key_file: Option<String>,
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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    cert_dir: Option<String>,
    seal: Option<String>,
    auth: Option<String>,
    policy: Option<String>,
    kv: Option<String>,
    #[serde(rename = "dynamic-db")]
    dynamic_db: Option<String>,
    pki: Option<String>,
    audit: Option<String>,
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
    /// gRPC address of each service (`host:port`). A service run by this
    /// process without an address listens on an ephemeral loopback port.
    pub addresses: BTreeMap<ServiceName, String>,
    pub log_level: String,
    pub log_format: LogFormat,
}

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
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        Self::parse(&file, &text)
    }

    pub fn parse(file: &str, text: &str) -> Result<Self, ConfigError> {
        let raw: RawConfig = hcl::from_str(text).map_err(|e| ConfigError::Parse {
            file: file.to_string(),
            message: e.to_string(),
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
                    if s.connection_url.is_some() || s.max_connections.is_some() {
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
                    StorageConfig::Postgres {
                        url,
                        max_connections: s.max_connections.unwrap_or(10),
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
                        http_tls = Some(ListenerTls {
                            cert_file: cert.into(),
                            key_file: key.into(),
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
        ] {
            if let Some(a) = addr {
                validate_addr(&a).map_err(|e| invalid(format!("cluster {name}: {e}")))?;
                addresses.insert(name, a);
            }
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
        let log_format = match raw.log_format.as_deref() {
            None | Some("text") | Some("standard") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(invalid(format!(
                    "log_format {other:?} (expected \"text\" or \"json\")"
                )))
            }
        };
        Ok(ServerConfig {
            targets,
            storage,
            http_address,
            http_tls,
            cert_dir: PathBuf::from(cluster.cert_dir.unwrap_or_else(|| "certs".into())),
            addresses,
            log_level: raw.log_level.unwrap_or_else(|| "info".into()),
            log_format,
        })
    }
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
              auth = "10.0.0.2:8302"
              policy = "p:1"
              kv = "k:1"
              dynamic-db = "d:1"
              pki = "pk:1"
              audit = "a:1"
            }
            log_format = "json"
            "#,
        )
        .unwrap();
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
        assert_eq!(c.addresses[&ServiceName::DynamicDb], "d:1");
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
            })
        );
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
        assert!(
            err(r#"listener "tcp" { tls_client_ca_file = "x" }"#).contains("tls_client_ca_file")
        );
    }

    fn err(text: &str) -> String {
        ServerConfig::parse("bad.hcl", text)
            .unwrap_err()
            .to_string()
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
    }
}
