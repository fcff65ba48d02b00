//! Connections to the managed databases: plugins, connection URLs (with
//! `{{username}}`/`{{password}}`, and MySQL's Go DSN form), the pool cache,
//! and turning driver errors into redacted [`DbError`]s.
//!
//! Statement logging of the driver is switched off on every connection: a
//! statement may carry a password.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions, MySqlSslMode};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};
use zeroize::Zeroizing;

use crate::error::DbError;
use crate::layout::ConfigRecord;
use crate::sql::Dialect;
use crate::template;

/// Pool size when a config sets none (Vault's default).
pub const DEFAULT_MAX_OPEN: u32 = 4;
/// How long an operation waits for a pooled connection before the database
/// counts as unreachable.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a connection check may take.
pub const VERIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// A database plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plugin {
    Postgres,
    MySql,
    /// `mysql-legacy-database-plugin`: 16-character usernames.
    MySqlLegacy,
}

impl Plugin {
    /// The plugin named `name`, or `Invalid`.
    pub fn parse(name: &str) -> Result<Plugin, DbError> {
        match name {
            "postgresql-database-plugin" => Ok(Plugin::Postgres),
            "mysql-database-plugin"
            | "mysql-aurora-database-plugin"
            | "mysql-rds-database-plugin" => Ok(Plugin::MySql),
            "mysql-legacy-database-plugin" => Ok(Plugin::MySqlLegacy),
            "" => Err(DbError::Invalid("plugin_name is required".into())),
            other => Err(DbError::Invalid(format!(
                "unsupported database plugin {other:?} (supported: postgresql-database-plugin, \
                 mysql-database-plugin, mysql-aurora-database-plugin, mysql-rds-database-plugin, \
                 mysql-legacy-database-plugin)"
            ))),
        }
    }

    pub fn dialect(self) -> Dialect {
        match self {
            Plugin::Postgres => Dialect::Postgres,
            Plugin::MySql | Plugin::MySqlLegacy => Dialect::MySql,
        }
    }

    pub fn default_username_template(self) -> &'static str {
        match self {
            Plugin::Postgres => template::POSTGRES_DEFAULT,
            Plugin::MySql => template::MYSQL_DEFAULT,
            Plugin::MySqlLegacy => template::MYSQL_LEGACY_DEFAULT,
        }
    }

    /// The longest username the database takes.
    pub fn max_username_len(self) -> usize {
        match self {
            Plugin::Postgres => 63,
            Plugin::MySql => 80,
            Plugin::MySqlLegacy => 16,
        }
    }
}

// === redaction ===

/// Scrubs the secrets of one connection (its password, raw and URL-encoded,
/// and any user information written into its URL) out of driver messages.
pub struct Redactor {
    secrets: Vec<Zeroizing<String>>,
}

impl Redactor {
    /// What to scrub for `config` (plus `extra`, e.g. a password being set).
    pub fn new(config: &ConfigRecord, extra: &[&str]) -> Redactor {
        let mut r = Redactor {
            secrets: Vec::new(),
        };
        r.add(config.password.expose());
        for e in extra {
            r.add(e);
        }
        if let Some(userinfo) = url_userinfo(&config.connection_url) {
            r.add(userinfo);
            if let Some((_, password)) = userinfo.split_once(':') {
                r.add(password);
            }
        }
        r
    }

    /// Adds one more secret.
    pub fn add(&mut self, secret: &str) {
        if secret.is_empty() {
            return;
        }
        let encoded = Zeroizing::new(percent_encode(secret));
        if encoded.as_str() != secret {
            self.secrets.push(encoded);
        }
        self.secrets.push(Zeroizing::new(secret.to_string()));
        // Longest first, so that a secret containing another goes whole.
        self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }

    /// `message` with every secret replaced by `[redacted]`.
    pub fn redact(&self, message: &str) -> String {
        let mut out = message.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "[redacted]");
            }
        }
        out
    }

    /// A driver error as a [`DbError`]: connection trouble is `Unreachable`,
    /// everything else a `Statement` error carrying the database's message.
    pub fn classify(&self, context: &str, e: sqlx::Error) -> DbError {
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => DbError::Unreachable(format!(
                "{context}: database unreachable: {}",
                self.redact(&e.to_string())
            )),
            sqlx::Error::Database(db) => {
                DbError::Statement(format!("{context}: {}", self.redact(db.message())))
            }
            other => DbError::Statement(format!("{context}: {}", self.redact(&other.to_string()))),
        }
    }
}

/// The user information (`user:password`) written literally in a URL or Go
/// DSN, if any.
fn url_userinfo(url: &str) -> Option<&str> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let at = rest.rfind('@')?;
    let info = &rest[..at];
    (!info.is_empty()).then_some(info)
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

// === connect options ===

/// How to reach one configured database.
pub enum Target {
    Pg(PgConnectOptions),
    My(MySqlConnectOptions),
}

/// The connect options of `config`: `{{username}}`/`{{password}}` filled in
/// (URL-encoded), then the config's username and password, when set, take
/// precedence over whatever the URL says.
pub fn target(plugin: Plugin, config: &ConfigRecord) -> Result<Target, DbError> {
    let url = config.connection_url.trim();
    if url.is_empty() {
        return Err(DbError::Invalid("connection_url cannot be empty".into()));
    }
    let redactor = Redactor::new(config, &[]);
    let filled = Zeroizing::new(
        url.replace("{{username}}", &percent_encode(&config.username))
            .replace("{{password}}", &percent_encode(config.password.expose())),
    );
    let bad = |e: &dyn std::fmt::Display| {
        DbError::Invalid(format!(
            "invalid connection_url: {}",
            redactor.redact(&e.to_string())
        ))
    };
    match plugin {
        Plugin::Postgres => {
            if !(filled.starts_with("postgres://") || filled.starts_with("postgresql://")) {
                return Err(DbError::Invalid(
                    "invalid connection_url: expected a postgres:// or postgresql:// URL".into(),
                ));
            }
            let mut opts = PgConnectOptions::from_str(&filled).map_err(|e| bad(&e))?;
            if !config.username.is_empty() {
                opts = opts.username(&config.username);
            }
            if !config.password.is_empty() {
                opts = opts.password(config.password.expose());
            }
            Ok(Target::Pg(
                opts.application_name("bulwark").disable_statement_logging(),
            ))
        }
        Plugin::MySql | Plugin::MySqlLegacy => {
            let mut opts = if filled.starts_with("mysql://") || filled.starts_with("mariadb://") {
                MySqlConnectOptions::from_str(&filled).map_err(|e| bad(&e))?
            } else {
                // Go DSN: values are not URL-encoded there; the config's
                // username and password are applied below.
                parse_go_dsn(url).map_err(|e| bad(&e))?
            };
            if !config.username.is_empty() {
                opts = opts.username(&config.username);
            }
            if !config.password.is_empty() {
                opts = opts.password(config.password.expose());
            }
            Ok(Target::My(opts.disable_statement_logging()))
        }
    }
}

/// Go's MySQL DSN, `[user[:password]@][net[(addr)]]/dbname[?param=value&…]`
/// (e.g. `{{username}}:{{password}}@tcp(127.0.0.1:3306)/`). Placeholders in
/// the user information are left for the config's values to replace.
pub fn parse_go_dsn(dsn: &str) -> Result<MySqlConnectOptions, String> {
    let slash = dsn
        .rfind('/')
        .ok_or_else(|| "missing \"/\" before the database name".to_string())?;
    let (head, tail) = (&dsn[..slash], &dsn[slash + 1..]);
    let (dbname, params) = tail.split_once('?').unwrap_or((tail, ""));
    let mut opts = MySqlConnectOptions::new();
    let (userinfo, netaddr) = match head.rfind('@') {
        Some(at) => (Some(&head[..at]), &head[at + 1..]),
        None => (None, head),
    };
    if let Some(info) = userinfo {
        let (user, password) = info.split_once(':').unwrap_or((info, ""));
        if !user.is_empty() && user != "{{username}}" {
            opts = opts.username(user);
        }
        if !password.is_empty() && password != "{{password}}" {
            opts = opts.password(password);
        }
    }
    if !netaddr.is_empty() {
        let (net, addr) = match netaddr.split_once('(') {
            Some((net, rest)) => (
                net,
                Some(
                    rest.strip_suffix(')')
                        .ok_or_else(|| "unclosed \"(\" in the address".to_string())?,
                ),
            ),
            None => (netaddr, None),
        };
        match (net, addr) {
            ("tcp", Some(addr)) => {
                let (host, port) = match addr.rsplit_once(':') {
                    Some((h, p)) if !h.ends_with(']') || addr.starts_with('[') => (
                        h.trim_start_matches('[').trim_end_matches(']'),
                        Some(
                            p.parse::<u16>()
                                .map_err(|_| format!("invalid port {p:?}"))?,
                        ),
                    ),
                    _ => (addr, None),
                };
                if !host.is_empty() {
                    opts = opts.host(host);
                }
                if let Some(p) = port {
                    opts = opts.port(p);
                }
            }
            ("tcp", None) => {}
            ("unix", Some(path)) => opts = opts.socket(path),
            (other, _) => return Err(format!("unsupported network {other:?}")),
        }
    }
    if !dbname.is_empty() {
        opts = opts.database(dbname);
    }
    for param in params.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        match key {
            "tls" => {
                opts = opts.ssl_mode(match value {
                    "true" => MySqlSslMode::VerifyCa,
                    "skip-verify" => MySqlSslMode::Required,
                    "preferred" => MySqlSslMode::Preferred,
                    "false" => MySqlSslMode::Disabled,
                    other => return Err(format!("unsupported tls value {other:?}")),
                })
            }
            "charset" => {
                if let Some(first) = value.split(',').next() {
                    opts = opts.charset(first);
                }
            }
            "collation" => opts = opts.collation(value),
            // Go driver tuning (parseTime, timeout, …) has no meaning here.
            _ => {}
        }
    }
    Ok(opts)
}

// === pools ===

/// A connection pool to one configured database.
#[derive(Clone)]
pub enum DbPool {
    Pg(PgPool),
    My(MySqlPool),
}

impl DbPool {
    /// A lazily connecting pool for `config`.
    pub fn new(plugin: Plugin, config: &ConfigRecord) -> Result<DbPool, DbError> {
        let max = match config.max_open_connections {
            n if n <= 0 => DEFAULT_MAX_OPEN,
            n => u32::try_from(n).unwrap_or(u32::MAX),
        };
        let lifetime = (config.max_connection_lifetime > 0)
            .then(|| Duration::from_secs(config.max_connection_lifetime.unsigned_abs()));
        Ok(match target(plugin, config)? {
            Target::Pg(opts) => DbPool::Pg(
                PgPoolOptions::new()
                    .max_connections(max)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .max_lifetime(lifetime)
                    .connect_lazy_with(opts),
            ),
            Target::My(opts) => DbPool::My(
                MySqlPoolOptions::new()
                    .max_connections(max)
                    .acquire_timeout(ACQUIRE_TIMEOUT)
                    .max_lifetime(lifetime)
                    .connect_lazy_with(opts),
            ),
        })
    }

    /// Closes the pool in the background (in-flight work finishes first).
    pub fn close_later(self) {
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                match self {
                    DbPool::Pg(p) => p.close().await,
                    DbPool::My(p) => p.close().await,
                }
            });
        }
    }
}

/// Connects once and pings: the check of a config before it is stored.
/// Failure is `Invalid`, with the driver's reason, redacted.
pub async fn verify(plugin: Plugin, config: &ConfigRecord) -> Result<(), DbError> {
    let redactor = Redactor::new(config, &[]);
    let fail = |e: sqlx::Error| {
        DbError::Invalid(format!(
            "error verifying connection: {}",
            redactor.redact(&e.to_string())
        ))
    };
    let check = async {
        match target(plugin, config)? {
            Target::Pg(opts) => {
                let mut c = opts.connect().await.map_err(fail)?;
                c.ping().await.map_err(fail)?;
                let _ = c.close().await;
            }
            Target::My(opts) => {
                let mut c = opts.connect().await.map_err(fail)?;
                c.ping().await.map_err(fail)?;
                let _ = c.close().await;
            }
        }
        Ok(())
    };
    match tokio::time::timeout(VERIFY_TIMEOUT, check).await {
        Ok(result) => result,
        Err(_) => Err(DbError::Invalid(
            "error verifying connection: timed out".into(),
        )),
    }
}

/// (mount, config name).
type PoolKey = (String, String);

/// One pool per (mount, config name), created on first use and replaced
/// when the stored config changes (another replica may have rotated the root
/// password: the fingerprint of the record tells).
#[derive(Default)]
pub struct Pools {
    pools: Mutex<HashMap<PoolKey, ([u8; 32], DbPool)>>,
}

fn fingerprint(config: &ConfigRecord) -> [u8; 32] {
    let bytes = Zeroizing::new(serde_json::to_vec(config).unwrap_or_default());
    Sha256::digest(bytes.as_slice()).into()
}

impl Pools {
    /// The pool for `mount`'s config `name`, as stored in `config`.
    pub fn get(
        &self,
        mount: &str,
        name: &str,
        plugin: Plugin,
        config: &ConfigRecord,
    ) -> Result<DbPool, DbError> {
        let print = fingerprint(config);
        let key = (mount.to_string(), name.to_string());
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((p, pool)) = pools.get(&key) {
            if *p == print {
                return Ok(pool.clone());
            }
        }
        let pool = DbPool::new(plugin, config)?;
        if let Some((_, old)) = pools.insert(key, (print, pool.clone())) {
            old.close_later();
        }
        Ok(pool)
    }

    /// Closes and forgets the pool of one config.
    pub fn remove(&self, mount: &str, name: &str) {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, old)) = pools.remove(&(mount.to_string(), name.to_string())) {
            old.close_later();
        }
    }

    /// Closes and forgets every pool of a mount.
    pub fn remove_mount(&self, mount: &str) {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        let keys: Vec<_> = pools.keys().filter(|(m, _)| m == mount).cloned().collect();
        for key in keys {
            if let Some((_, old)) = pools.remove(&key) {
                old.close_later();
            }
        }
    }

    /// Closes and forgets every pool (on seal or shutdown).
    pub fn clear(&self) {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        for (_, (_, old)) in pools.drain() {
            old.close_later();
        }
    }

    /// How many pools are open (for tests).
    pub fn len(&self) -> usize {
        self.pools.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Secret;

    fn config(url: &str, user: &str, password: &str) -> ConfigRecord {
        ConfigRecord {
            plugin_name: "mysql-database-plugin".into(),
            connection_url: url.into(),
            username: user.into(),
            password: Secret::new(password),
            ..Default::default()
        }
    }

    #[test]
    fn plugins() {
        assert_eq!(
            Plugin::parse("postgresql-database-plugin").unwrap(),
            Plugin::Postgres
        );
        for alias in [
            "mysql-database-plugin",
            "mysql-aurora-database-plugin",
            "mysql-rds-database-plugin",
        ] {
            assert_eq!(Plugin::parse(alias).unwrap(), Plugin::MySql);
        }
        assert_eq!(
            Plugin::parse("mysql-legacy-database-plugin").unwrap(),
            Plugin::MySqlLegacy
        );
        assert!(matches!(
            Plugin::parse("mongodb-database-plugin"),
            Err(DbError::Invalid(_))
        ));
        assert!(matches!(Plugin::parse(""), Err(DbError::Invalid(_))));
    }

    #[test]
    fn go_dsn() {
        let o = parse_go_dsn(
            "{{username}}:{{password}}@tcp(127.0.0.1:3307)/app?tls=false&parseTime=true",
        )
        .unwrap();
        assert_eq!(o.get_host(), "127.0.0.1");
        assert_eq!(o.get_port(), 3307);
        assert_eq!(o.get_database(), Some("app"));
        assert!(matches!(o.get_ssl_mode(), MySqlSslMode::Disabled));
        let o = parse_go_dsn("root:p@ss:w/rd@tcp(db.example:3306)/").unwrap();
        assert_eq!(o.get_username(), "root");
        assert_eq!(o.get_host(), "db.example");
        assert_eq!(o.get_database(), None);
        let o = parse_go_dsn("u@unix(/run/mysqld/mysqld.sock)/x").unwrap();
        assert_eq!(
            o.get_socket()
                .map(|p| p.to_string_lossy().to_string())
                .as_deref(),
            Some("/run/mysqld/mysqld.sock")
        );
        let o = parse_go_dsn("/").unwrap();
        assert_eq!(o.get_port(), 3306);
        for bad in [
            "nothing",
            "u@tcp(h:port)/",
            "u@udp(h:1)/",
            "u@tcp(h:1/",
            "u@tcp(h:1)/?tls=maybe",
        ] {
            assert!(parse_go_dsn(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn targets_use_the_config_credentials() {
        let c = config(
            "{{username}}:{{password}}@tcp(127.0.0.1:3306)/",
            "vault",
            "p@ss/:w",
        );
        let Target::My(o) = target(Plugin::MySql, &c).unwrap() else {
            panic!("mysql")
        };
        assert_eq!(o.get_username(), "vault");
        let c = ConfigRecord {
            plugin_name: "postgresql-database-plugin".into(),
            ..config(
                "postgresql://{{username}}:{{password}}@127.0.0.1:5433/postgres?sslmode=disable",
                "ad min",
                "p@ss/:w#?",
            )
        };
        let Target::Pg(o) = target(Plugin::Postgres, &c).unwrap() else {
            panic!("pg")
        };
        assert_eq!(o.get_username(), "ad min");
        assert_eq!(o.get_port(), 5433);
        assert!(matches!(
            target(Plugin::Postgres, &config("mysql://x@h/", "", "")),
            Err(DbError::Invalid(_))
        ));
        assert!(matches!(
            target(Plugin::Postgres, &config("", "", "")),
            Err(DbError::Invalid(_))
        ));
    }

    #[test]
    fn redaction() {
        let c = config("postgresql://admin:s3cr%3Ft@h/db", "admin", "top/secret");
        let r = Redactor::new(&c, &["newpass"]);
        let msg =
            "failed for postgresql://admin:s3cr%3Ft@h/db with top/secret top%2Fsecret newpass";
        let out = r.redact(msg);
        for secret in ["s3cr", "top/secret", "top%2Fsecret", "newpass"] {
            assert!(!out.contains(secret), "{out}");
        }
        assert_eq!(percent_encode("a b/c~"), "a%20b%2Fc~");
    }
}
