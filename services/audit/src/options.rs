//! Device types and their options, validated once at enable (and again when
//! a stored device is reopened).
//!
//! | type | options |
//! |---|---|
//! | `file` | `file_path` (required; `stdout`, `discard`), `mode` (octal, `"0600"`) |
//! | `socket` | `address` (required), `socket_type` (`tcp`, `udp`, `unix`), `write_timeout` (`"2s"`) |
//! | `syslog` | `facility` (`AUTH`), `tag` (`vault`), `address` (UDP `host:port`; default `/dev/log`) |
//!
//! Every type also takes `format` (`json`, `jsonx`), `prefix`,
//! `hmac_accessor` (`true`), `log_raw` (`false`) and `elide_list_responses`
//! (`false`). Anything else is refused.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::AuditError;

/// How entries are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line.
    Json,
    /// The JSON converted to IBM JSONx (XML), one document per line.
    JsonX,
}

/// The options every device type takes: how an entry becomes a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatOptions {
    pub format: Format,
    /// Written before every line.
    pub prefix: String,
    /// Whether accessors are hashed like tokens.
    pub hmac_accessor: bool,
    /// When true nothing is hashed.
    pub log_raw: bool,
    /// When true, a response to a list operation keeps only the number of
    /// its `keys` (and `key_info`).
    pub elide_list_responses: bool,
}

impl Default for FormatOptions {
    fn default() -> Self {
        FormatOptions {
            format: Format::Json,
            prefix: String::new(),
            hmac_accessor: true,
            log_raw: false,
            elide_list_responses: false,
        }
    }
}

/// The transport of a socket device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketType {
    Tcp,
    Udp,
    Unix,
}

/// Where a device writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkSpec {
    /// `file_path = "discard"`: accepts everything, writes nothing.
    Discard,
    /// `file_path = "stdout"`.
    Stdout,
    /// A file opened for append; `mode` is applied when it is created (and,
    /// unless 0, to an existing file when it is opened).
    File { path: PathBuf, mode: u32 },
    Socket {
        address: String,
        socket_type: SocketType,
        /// Zero: no timeout.
        write_timeout: Duration,
    },
    Syslog {
        /// The syslog facility code (`AUTH` = 4).
        facility: u8,
        tag: String,
        /// A UDP `host:port`; `None` is the local `/dev/log` socket.
        address: Option<String>,
    },
}

/// A validated device: where it writes and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec {
    pub sink: SinkSpec,
    pub format: FormatOptions,
}

const COMMON: &[&str] = &[
    "format",
    "prefix",
    "hmac_accessor",
    "log_raw",
    "elide_list_responses",
];
const FILE: &[&str] = &["file_path", "path", "mode"];
const SOCKET: &[&str] = &["address", "socket_type", "write_timeout"];
const SYSLOG: &[&str] = &["facility", "tag", "address"];

/// The syslog severity of every audit line (informational).
pub const SYSLOG_SEVERITY: u8 = 6;

/// Validates a device's type and options.
pub fn parse(kind: &str, options: &BTreeMap<String, String>) -> Result<DeviceSpec, AuditError> {
    let own = match kind {
        "file" => FILE,
        "socket" => SOCKET,
        "syslog" => SYSLOG,
        other => return Err(AuditError::UnknownType(other.to_string())),
    };
    if let Some(name) = options
        .keys()
        .find(|k| !COMMON.contains(&k.as_str()) && !own.contains(&k.as_str()))
    {
        return Err(AuditError::Invalid(format!(
            "unknown option {name:?} for a {kind} audit device"
        )));
    }
    let get = |name: &str| options.get(name).map(String::as_str);
    let sink = match kind {
        "file" => file(get("file_path").or_else(|| get("path")), get("mode"))?,
        "socket" => socket(get("address"), get("socket_type"), get("write_timeout"))?,
        _ => syslog(get("facility"), get("tag"), get("address"))?,
    };
    let format = FormatOptions {
        format: match get("format") {
            None | Some("json") => Format::Json,
            Some("jsonx") => Format::JsonX,
            Some(other) => {
                return Err(AuditError::Invalid(format!(
                    "invalid format {other:?}: must be \"json\" or \"jsonx\""
                )))
            }
        },
        prefix: get("prefix").unwrap_or_default().to_string(),
        hmac_accessor: boolean(options, "hmac_accessor", true)?,
        log_raw: boolean(options, "log_raw", false)?,
        elide_list_responses: boolean(options, "elide_list_responses", false)?,
    };
    Ok(DeviceSpec { sink, format })
}

fn file(path: Option<&str>, mode: Option<&str>) -> Result<SinkSpec, AuditError> {
    let path = match path {
        None | Some("") => return Err(AuditError::FilePathRequired),
        Some(p) => p,
    };
    let mode = match mode {
        None => 0o600,
        Some(m) => parse_mode(m)?,
    };
    Ok(match path {
        "stdout" => SinkSpec::Stdout,
        "discard" => SinkSpec::Discard,
        p => SinkSpec::File {
            path: PathBuf::from(p),
            mode,
        },
    })
}

/// An octal file mode such as `"0600"` (at most `0o7777`).
fn parse_mode(m: &str) -> Result<u32, AuditError> {
    let ok = !m.is_empty() && m.len() <= 5 && m.bytes().all(|b| (b'0'..=b'7').contains(&b));
    match u32::from_str_radix(m, 8) {
        Ok(v) if ok && v <= 0o7777 => Ok(v),
        _ => Err(AuditError::Invalid(format!(
            "invalid mode {m:?}: must be an octal string such as \"0600\""
        ))),
    }
}

fn socket(
    address: Option<&str>,
    socket_type: Option<&str>,
    write_timeout: Option<&str>,
) -> Result<SinkSpec, AuditError> {
    let address = match address {
        None | Some("") => return Err(AuditError::Invalid("address is required".into())),
        Some(a) => a.to_string(),
    };
    let socket_type = match socket_type {
        None | Some("tcp") => SocketType::Tcp,
        Some("udp") => SocketType::Udp,
        Some("unix") => SocketType::Unix,
        Some(other) => {
            return Err(AuditError::Invalid(format!(
                "invalid socket_type {other:?}: must be \"tcp\", \"udp\" or \"unix\""
            )))
        }
    };
    let write_timeout = match write_timeout {
        None => Duration::from_secs(2),
        Some(t) => bulwark_shared::ttl::parse_duration(t)
            .map_err(|e| AuditError::Invalid(format!("invalid write_timeout: {e}")))?,
    };
    Ok(SinkSpec::Socket {
        address,
        socket_type,
        write_timeout,
    })
}

fn syslog(
    facility: Option<&str>,
    tag: Option<&str>,
    address: Option<&str>,
) -> Result<SinkSpec, AuditError> {
    let facility = match facility {
        None => 4,
        Some(f) => facility_code(f).ok_or_else(|| {
            AuditError::Invalid(format!("invalid facility {f:?}: not a syslog facility"))
        })?,
    };
    let tag = match tag {
        None => "vault".to_string(),
        Some(t) if t.is_empty() || t.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            return Err(AuditError::Invalid(format!(
                "invalid tag {t:?}: must be non-empty, without spaces"
            )))
        }
        Some(t) => t.to_string(),
    };
    let address = match address {
        None | Some("") => None,
        Some(a)
            if a.rsplit_once(':').is_some_and(|(h, p)| {
                !h.is_empty() && p.parse::<u16>().is_ok_and(|port| port != 0)
            }) =>
        {
            Some(a.to_string())
        }
        Some(a) => {
            return Err(AuditError::Invalid(format!(
                "invalid address {a:?}: must be a UDP host:port"
            )))
        }
    };
    Ok(SinkSpec::Syslog {
        facility,
        tag,
        address,
    })
}

/// The code of a syslog facility name (case-insensitive).
fn facility_code(name: &str) -> Option<u8> {
    const NAMES: [&str; 12] = [
        "KERN", "USER", "MAIL", "DAEMON", "AUTH", "SYSLOG", "LPR", "NEWS", "UUCP", "CRON",
        "AUTHPRIV", "FTP",
    ];
    let upper = name.to_ascii_uppercase();
    if let Some(i) = NAMES.iter().position(|n| *n == upper) {
        return u8::try_from(i).ok();
    }
    let local = upper.strip_prefix("LOCAL")?;
    match local.parse::<u8>() {
        Ok(n) if n <= 7 && local.len() == 1 => Some(16 + n),
        _ => None,
    }
}

/// A boolean option the way Go's `strconv.ParseBool` reads it.
fn boolean(
    options: &BTreeMap<String, String>,
    name: &str,
    default: bool,
) -> Result<bool, AuditError> {
    match options.get(name).map(String::as_str) {
        None => Ok(default),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True") => Ok(true),
        Some("0" | "f" | "F" | "false" | "FALSE" | "False") => Ok(false),
        Some(other) => Err(AuditError::Invalid(format!(
            "invalid {name} {other:?}: must be a boolean"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn message(kind: &str, pairs: &[(&str, &str)]) -> String {
        match parse(kind, &opts(pairs)) {
            Ok(spec) => panic!("accepted: {spec:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn file_defaults_and_specials() {
        let spec = parse("file", &opts(&[("file_path", "/var/log/a.log")])).unwrap();
        assert_eq!(
            spec.sink,
            SinkSpec::File {
                path: "/var/log/a.log".into(),
                mode: 0o600
            }
        );
        assert_eq!(spec.format, FormatOptions::default());
        let spec = parse("file", &opts(&[("file_path", "stdout")])).unwrap();
        assert_eq!(spec.sink, SinkSpec::Stdout);
        let spec = parse("file", &opts(&[("path", "discard"), ("mode", "0640")])).unwrap();
        assert_eq!(spec.sink, SinkSpec::Discard);
        let spec = parse("file", &opts(&[("file_path", "/a"), ("mode", "644")])).unwrap();
        assert_eq!(
            spec.sink,
            SinkSpec::File {
                path: "/a".into(),
                mode: 0o644
            }
        );
    }

    #[test]
    fn common_options() {
        let spec = parse(
            "file",
            &opts(&[
                ("file_path", "discard"),
                ("format", "jsonx"),
                ("prefix", "AUDIT:"),
                ("hmac_accessor", "false"),
                ("log_raw", "1"),
                ("elide_list_responses", "True"),
            ]),
        )
        .unwrap();
        assert_eq!(
            spec.format,
            FormatOptions {
                format: Format::JsonX,
                prefix: "AUDIT:".into(),
                hmac_accessor: false,
                log_raw: true,
                elide_list_responses: true,
            }
        );
    }

    #[test]
    fn socket_and_syslog() {
        let spec = parse("socket", &opts(&[("address", "127.0.0.1:9090")])).unwrap();
        assert_eq!(
            spec.sink,
            SinkSpec::Socket {
                address: "127.0.0.1:9090".into(),
                socket_type: SocketType::Tcp,
                write_timeout: Duration::from_secs(2),
            }
        );
        let spec = parse(
            "socket",
            &opts(&[
                ("address", "/run/a.sock"),
                ("socket_type", "unix"),
                ("write_timeout", "500ms"),
            ]),
        )
        .unwrap();
        assert_eq!(
            spec.sink,
            SinkSpec::Socket {
                address: "/run/a.sock".into(),
                socket_type: SocketType::Unix,
                write_timeout: Duration::from_millis(500),
            }
        );
        let spec = parse("syslog", &BTreeMap::new()).unwrap();
        assert_eq!(
            spec.sink,
            SinkSpec::Syslog {
                facility: 4,
                tag: "vault".into(),
                address: None
            }
        );
        let spec = parse(
            "syslog",
            &opts(&[
                ("facility", "local7"),
                ("tag", "bulwark"),
                ("address", "127.0.0.1:514"),
            ]),
        )
        .unwrap();
        assert_eq!(
            spec.sink,
            SinkSpec::Syslog {
                facility: 23,
                tag: "bulwark".into(),
                address: Some("127.0.0.1:514".into())
            }
        );
        assert_eq!(facility_code("authpriv"), Some(10));
        assert_eq!(facility_code("LOCAL8"), None);
        assert_eq!(facility_code("LOCAL01"), None);
    }

    #[test]
    fn refusals() {
        assert_eq!(message("nope", &[]), "unknown audit backend type: nope");
        assert_eq!(message("file", &[]), "file_path is required");
        assert_eq!(
            message("file", &[("file_path", "")]),
            "file_path is required"
        );
        assert_eq!(
            message("file", &[("file_path", "/a"), ("colour", "red")]),
            "unknown option \"colour\" for a file audit device"
        );
        // An option of another type is unknown too.
        assert!(message("file", &[("file_path", "/a"), ("address", "x:1")]).contains("address"));
        assert!(message("file", &[("file_path", "/a"), ("mode", "0800")]).contains("mode"));
        assert!(message("file", &[("file_path", "/a"), ("mode", "")]).contains("mode"));
        assert!(message("file", &[("file_path", "/a"), ("mode", "17777")]).contains("mode"));
        assert!(message("file", &[("file_path", "/a"), ("format", "xml")]).contains("format"));
        assert!(message("file", &[("file_path", "/a"), ("log_raw", "yes")]).contains("log_raw"));
        assert_eq!(message("socket", &[]), "address is required");
        assert!(
            message("socket", &[("address", "a:1"), ("socket_type", "sctp")])
                .contains("socket_type")
        );
        assert!(
            message("socket", &[("address", "a:1"), ("write_timeout", "soon")])
                .contains("write_timeout")
        );
        assert!(message("syslog", &[("facility", "BOGUS")]).contains("facility"));
        assert!(message("syslog", &[("tag", "a b")]).contains("tag"));
        assert!(message("syslog", &[("address", "nohost")]).contains("address"));
    }
}
