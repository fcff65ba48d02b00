//! The mount table: which engine serves which path. Owned by the gateway,
//! stored through the gateway's own barrier namespace as one record
//! (`core/mounts`, updated with compare-and-swap), cached in memory.
//!
//! Two tables share this code: secrets engines (`sys/mounts`, record
//! `core/mounts`) and auth methods (`sys/auth`, record `core/auth`, paths
//! relative to `auth/`). `sys/`, `cubbyhole/` and `identity/` (secrets) and
//! `token/` (auth) are built in and never stored.
//! Routing is by longest prefix; nested mounts are refused as Vault refuses
//! them. A change made through one gateway replica is announced on the
//! notice bus ([`MOUNTS_TOPIC`]) and the other replicas drop their cache at
//! once; the cache is also refreshed every [`REFRESH`] (the bus delivers at
//! most once).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use bulwark_shared::barrier::Barrier;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::ApiError;

/// Which of the two mount tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// Secrets engines, `sys/mounts`.
    Secrets,
    /// Auth methods, `sys/auth` (served under `auth/`).
    Auth,
}

impl Table {
    fn record(self) -> &'static str {
        match self {
            Table::Secrets => "core/mounts",
            Table::Auth => "core/auth",
        }
    }

    fn builtins(self) -> Vec<MountEntry> {
        match self {
            Table::Secrets => vec![
                builtin(
                    "cubbyhole/",
                    "cubbyhole",
                    "per-token private secret storage",
                ),
                builtin("identity/", "identity", "identity store"),
                builtin(
                    "sys/",
                    "system",
                    "system endpoints used for control, policy and debugging",
                ),
            ],
            Table::Auth => {
                let mut token = builtin("token/", "token", "token based credentials");
                token.accessor = format!("auth_{}", token.accessor);
                token.config.token_type = "default-service".into();
                vec![token]
            }
        }
    }

    /// Paths no mount of this table may take or nest with.
    fn reserved(self) -> &'static [&'static str] {
        match self {
            Table::Secrets => &["sys/", "auth/", "cubbyhole/", "identity/"],
            Table::Auth => &["token/"],
        }
    }
}
/// How long a replica trusts its cached table.
pub const REFRESH: Duration = Duration::from_secs(2);

/// How long a refresh of a cached table may wait for storage before the
/// cached copy serves another [`REFRESH`]: storage that is down makes a
/// read wait its pool's acquire timeout (10 s), which no request should pay
/// for a table that changes only through this gateway or the bus.
pub const STALE_READ_WAIT: Duration = Duration::from_secs(1);
/// Vault's system default and maximum lease TTL (768h).
pub const SYSTEM_MAX_TTL: u64 = 2_764_800;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MountConfig {
    /// Seconds; 0 = system default.
    #[serde(default)]
    pub default_lease_ttl: u64,
    #[serde(default)]
    pub max_lease_ttl: u64,
    #[serde(default)]
    pub force_no_cache: bool,
    #[serde(default)]
    pub audit_non_hmac_request_keys: Vec<String>,
    #[serde(default)]
    pub audit_non_hmac_response_keys: Vec<String>,
    #[serde(default)]
    pub listing_visibility: String,
    #[serde(default)]
    pub passthrough_request_headers: Vec<String>,
    #[serde(default)]
    pub allowed_response_headers: Vec<String>,
    /// Auth mounts only: `default-service` (default), `default-batch`,
    /// `service` or `batch`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub token_type: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MountEntry {
    /// With its trailing slash: `secret/`.
    pub path: String,
    /// `kv`, `system`, `cubbyhole`, `identity`, …
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub description: String,
    pub accessor: String,
    pub uuid: String,
    #[serde(default)]
    pub config: MountConfig,
    #[serde(default)]
    pub options: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub local: bool,
    #[serde(default)]
    pub seal_wrap: bool,
}

impl MountEntry {
    /// KV version of a `kv` mount (1 unless `options.version` says 2).
    pub fn kv_version(&self) -> u8 {
        match self
            .options
            .as_ref()
            .and_then(|o| o.get("version"))
            .map(String::as_str)
        {
            Some("2") => 2,
            _ => 1,
        }
    }

    pub fn builtin(&self) -> bool {
        matches!(
            (self.kind.as_str(), self.path.as_str()),
            (_, "sys/" | "cubbyhole/" | "identity/") | ("token", "token/")
        )
    }

    /// The JSON Vault lists for a mount.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "accessor": self.accessor,
            "config": {
                "default_lease_ttl": self.config.default_lease_ttl,
                "max_lease_ttl": self.config.max_lease_ttl,
                "force_no_cache": self.config.force_no_cache,
            },
            "description": self.description,
            "external_entropy_access": false,
            "local": self.local,
            "options": self.options,
            "plugin_version": "",
            "running_plugin_version": "",
            "running_sha256": "",
            "seal_wrap": self.seal_wrap,
            "type": self.kind,
            "uuid": self.uuid,
        });
        if !self.config.token_type.is_empty() {
            v["config"]["token_type"] = json!(self.config.token_type);
        }
        v
    }

    /// Effective default lease TTL (seconds).
    pub fn default_lease_ttl(&self) -> u64 {
        match self.config.default_lease_ttl {
            0 => self.max_lease_ttl().min(SYSTEM_MAX_TTL),
            t => t,
        }
    }

    /// Effective max lease TTL (seconds).
    pub fn max_lease_ttl(&self) -> u64 {
        match self.config.max_lease_ttl {
            0 => SYSTEM_MAX_TTL,
            t => t,
        }
    }
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn builtin(path: &str, kind: &str, description: &str) -> MountEntry {
    MountEntry {
        path: path.into(),
        kind: kind.into(),
        description: description.into(),
        accessor: format!(
            "{kind}_{}",
            &uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, path.as_bytes())
                .simple()
                .to_string()[..8]
        ),
        uuid: uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, path.as_bytes()).to_string(),
        config: MountConfig::default(),
        options: None,
        local: kind == "cubbyhole",
        seal_wrap: false,
    }
}

/// Normalizes a mount path: trimmed of slashes, with one trailing slash.
pub fn normalize(path: &str) -> Result<String, ApiError> {
    let p = path.trim().trim_matches('/');
    if p.is_empty() {
        return Err(ApiError::bad_request("missing mount path"));
    }
    if p.split('/').any(|s| s.is_empty() || s == "." || s == "..") || p.len() > 512 {
        return Err(ApiError::bad_request(format!(
            "invalid mount path {path:?}"
        )));
    }
    Ok(format!("{p}/"))
}

struct Cached {
    /// Shared with the requests routed by it: a hit copies no entry.
    entries: Arc<Vec<MountEntry>>,
    at: Instant,
    /// Changed (here or by another replica) or maybe missed (bus resync):
    /// read again, keeping this copy only as a fallback.
    expired: bool,
}

/// One mount table of one gateway.
pub struct MountTable {
    table: Table,
    barrier: Barrier,
    cache: RwLock<Option<Cached>>,
    bus: Option<bulwark_shared::bus::Bus>,
}

/// The bus topic on which gateway replicas announce mount table changes.
pub const MOUNTS_TOPIC: &str = "gateway_mounts";

impl MountTable {
    pub fn new(table: Table, barrier: Barrier) -> Self {
        MountTable {
            table,
            barrier,
            cache: RwLock::new(None),
            bus: None,
        }
    }

    /// Announces this table's changes to the other gateway replicas.
    pub fn with_bus(mut self, bus: bulwark_shared::bus::Bus) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Expires the cache (a change announced by another replica, or
    /// notices maybe missed): the next use reads the table again, and the
    /// copy serves only when storage cannot be read.
    pub fn forget(&self) {
        if let Some(c) = self
            .cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            c.expired = true;
        }
    }

    async fn stored(&self) -> Result<(Vec<MountEntry>, Option<Vec<u8>>), ApiError> {
        match self
            .barrier
            .get_versioned(self.table.record())
            .await
            .map_err(tonic::Status::from)?
        {
            None => Ok((vec![], None)),
            Some((plain, version)) => {
                let entries: Vec<MountEntry> = serde_json::from_slice(&plain).map_err(|_| {
                    ApiError::new(
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        "mount table is corrupt",
                    )
                })?;
                Ok((entries, Some(version)))
            }
        }
    }

    /// Every mount, built-ins included, sorted by path.
    pub async fn all(&self) -> Result<Arc<Vec<MountEntry>>, ApiError> {
        let cached = self
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|c| (c.entries.clone(), c.expired, c.at.elapsed() < REFRESH));
        let read = match cached {
            None => return self.load().await,
            Some((entries, false, true)) => return Ok(entries),
            // Changed elsewhere: wait for the table as it is now.
            Some((entries, true, _)) => (entries, self.load().await),
            // The periodic refresh (it only catches a lost bus notice):
            // storage slow or down costs a short wait, not the pool's
            // acquire timeout on every request.
            Some((entries, false, false)) => (
                entries,
                tokio::time::timeout(STALE_READ_WAIT, self.load())
                    .await
                    .unwrap_or_else(|_| {
                        Err(ApiError::new(
                            axum::http::StatusCode::SERVICE_UNAVAILABLE,
                            "storage did not answer",
                        ))
                    }),
            ),
        };
        match read {
            (_, Ok(entries)) => Ok(entries),
            // Storage unavailable: the table known so far keeps routing for
            // another REFRESH (it changes only through storage).
            (entries, Err(e)) => {
                tracing::warn!(
                    status = e.status.as_u16(),
                    "mount table not refreshed (storage unavailable): cached copy kept"
                );
                if let Some(c) = self
                    .cache
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_mut()
                {
                    c.at = Instant::now();
                    c.expired = false;
                }
                Ok(entries)
            }
        }
    }

    /// Reads the table from storage into the cache.
    async fn load(&self) -> Result<Arc<Vec<MountEntry>>, ApiError> {
        let (mut entries, _) = self.stored().await?;
        entries.extend(self.table.builtins());
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        let entries = Arc::new(entries);
        *self.cache.write().unwrap_or_else(|e| e.into_inner()) = Some(Cached {
            entries: entries.clone(),
            at: Instant::now(),
            expired: false,
        });
        Ok(entries)
    }

    /// The mount serving `path` (longest prefix) and the rest of the path.
    pub async fn route(&self, path: &str) -> Result<Option<(MountEntry, String)>, ApiError> {
        let entries = self.all().await?;
        // `secret/…` below `secret/`, and `secret` itself.
        let serves = |m: &MountEntry| {
            path.starts_with(&m.path) || m.path.strip_suffix('/').is_some_and(|bare| bare == path)
        };
        let best = entries
            .iter()
            .filter(|m| serves(m))
            .max_by_key(|m| m.path.len());
        Ok(best.map(|m| {
            let rest = path.get(m.path.len()..).unwrap_or("").to_string();
            (m.clone(), rest)
        }))
    }

    pub async fn get(&self, path: &str) -> Result<Option<MountEntry>, ApiError> {
        let path = normalize(path)?;
        Ok(self.all().await?.iter().find(|m| m.path == path).cloned())
    }

    /// Applies `f` to the stored (non-built-in) entries with compare-and-swap.
    async fn update<T>(
        &self,
        mut f: impl FnMut(&mut Vec<MountEntry>) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        loop {
            let (mut entries, version) = self.stored().await?;
            let out = f(&mut entries)?;
            let bytes = serde_json::to_vec(&entries).expect("mount entries serialize");
            let written = match &version {
                Some(v) => self.barrier.replace(self.table.record(), v, &bytes).await,
                None => self.barrier.create(self.table.record(), &bytes).await,
            }
            .map_err(tonic::Status::from)?;
            if written {
                // Changed here: never route by the old table again.
                *self.cache.write().unwrap_or_else(|e| e.into_inner()) = None;
                if let Some(bus) = &self.bus {
                    if let Err(e) = bus.publish(MOUNTS_TOPIC, self.table.record()).await {
                        tracing::warn!(error = %e, "could not tell other gateways of a mount change");
                    }
                }
                return Ok(out);
            }
        }
    }

    /// Adds a mount. Refuses a path in use, or nested in or over another mount.
    pub async fn enable(&self, mut entry: MountEntry) -> Result<MountEntry, ApiError> {
        entry.path = normalize(&entry.path)?;
        for reserved in self.table.reserved() {
            if entry.path.starts_with(reserved) || reserved.starts_with(&entry.path) {
                return Err(ApiError::bad_request(format!(
                    "cannot mount at {:?}: {reserved} is reserved",
                    entry.path
                )));
            }
        }
        entry.uuid = uuid::Uuid::new_v4().to_string();
        entry.accessor = match self.table {
            Table::Secrets => format!("{}_{}", entry.kind, random_hex(4)),
            Table::Auth => format!("auth_{}_{}", entry.kind, random_hex(4)),
        };
        let e = entry.clone();
        self.update(move |entries| {
            if let Some(existing) = entries
                .iter()
                .find(|m| m.path.starts_with(&e.path) || e.path.starts_with(&m.path))
            {
                return Err(ApiError::bad_request(format!(
                    "path is already in use at {}",
                    existing.path
                )));
            }
            entries.push(e.clone());
            Ok(())
        })
        .await?;
        Ok(entry)
    }

    /// Removes a mount; returns it if it existed.
    pub async fn disable(&self, path: &str) -> Result<Option<MountEntry>, ApiError> {
        let path = normalize(path)?;
        if self.table.builtins().iter().any(|b| b.path == path) {
            return Err(ApiError::bad_request(format!("cannot unmount {path:?}")));
        }
        self.update(|entries| {
            let i = entries.iter().position(|m| m.path == path);
            Ok(i.map(|i| entries.remove(i)))
        })
        .await
    }

    /// Changes a stored mount in place.
    pub async fn modify(
        &self,
        path: &str,
        mut f: impl FnMut(&mut MountEntry) -> Result<(), ApiError>,
    ) -> Result<MountEntry, ApiError> {
        let path = normalize(path)?;
        if self.table.builtins().iter().any(|b| b.path == path) {
            return Err(ApiError::bad_request(format!("cannot tune {path:?}")));
        }
        self.update(|entries| {
            let m = entries
                .iter_mut()
                .find(|m| m.path == path)
                .ok_or_else(|| ApiError::bad_request(format!("no mount at {path}")))?;
            f(m)?;
            Ok(m.clone())
        })
        .await
    }

    /// Moves a mount to a new path (its data stays: it is keyed by UUID).
    pub async fn remount(&self, from: &str, to: &str) -> Result<(), ApiError> {
        let (from, to) = (normalize(from)?, normalize(to)?);
        for reserved in self.table.reserved() {
            if from.starts_with(reserved) || to.starts_with(reserved) || reserved.starts_with(&to) {
                return Err(ApiError::bad_request(format!(
                    "cannot remount {from:?} to {to:?}"
                )));
            }
        }
        self.update(|entries| {
            if !entries.iter().any(|m| m.path == from) {
                return Err(ApiError::bad_request(format!("no mount at {from}")));
            }
            if let Some(existing) = entries
                .iter()
                .find(|m| m.path != from && (m.path.starts_with(&to) || to.starts_with(&m.path)))
            {
                return Err(ApiError::bad_request(format!(
                    "path is already in use at {}",
                    existing.path
                )));
            }
            if let Some(m) = entries.iter_mut().find(|m| m.path == from) {
                m.path = to.clone();
            }
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_shared::keyring::Keyring;
    use bulwark_shared::storage::{Database, StorageConfig};

    async fn table() -> MountTable {
        let db = Database::connect(&StorageConfig::SqliteMemory)
            .await
            .unwrap();
        let k = Keyring::new();
        k.install(1, [(1, zeroize::Zeroizing::new([3u8; 32]))]);
        MountTable::new(
            Table::Secrets,
            Barrier::new(db.namespace("gateway").await.unwrap(), k),
        )
    }

    fn kv(path: &str, version: &str) -> MountEntry {
        MountEntry {
            path: path.into(),
            kind: "kv".into(),
            description: String::new(),
            accessor: String::new(),
            uuid: String::new(),
            config: MountConfig::default(),
            options: Some([("version".to_string(), version.to_string())].into()),
            local: false,
            seal_wrap: false,
        }
    }

    #[tokio::test]
    async fn enable_route_nest_disable() {
        let t = table().await;
        let m = t.enable(kv("team-alpha", "2")).await.unwrap();
        assert_eq!(m.path, "team-alpha/");
        assert!(m.accessor.starts_with("kv_"));
        t.enable(kv("a/b", "1")).await.unwrap();
        // In use, nested under, nesting over.
        for p in ["team-alpha", "team-alpha/x", "a", "a/b/c"] {
            let e = t.enable(kv(p, "1")).await.unwrap_err();
            assert!(
                e.errors[0].contains("already in use"),
                "{p}: {:?}",
                e.errors
            );
        }
        for p in ["sys", "sys/x", "auth/x", "cubbyhole", "identity/y"] {
            assert_eq!(t.enable(kv(p, "1")).await.unwrap_err().status, 400, "{p}");
        }
        let (m, rest) = t.route("team-alpha/data/x/y").await.unwrap().unwrap();
        assert_eq!(
            (m.path.as_str(), rest.as_str()),
            ("team-alpha/", "data/x/y")
        );
        let (m, rest) = t.route("team-alpha").await.unwrap().unwrap();
        assert_eq!((m.path.as_str(), rest.as_str()), ("team-alpha/", ""));
        assert_eq!(t.route("a/b/c").await.unwrap().unwrap().0.path, "a/b/");
        assert!(t.route("a/c").await.unwrap().is_none());
        assert!(t.route("team-alphabet/x").await.unwrap().is_none());
        assert_eq!(
            t.route("sys/mounts").await.unwrap().unwrap().0.kind,
            "system"
        );
        assert!(t.disable("team-alpha").await.unwrap().is_some());
        assert!(t.disable("team-alpha").await.unwrap().is_none());
        assert!(t.disable("sys").await.is_err());
        assert!(t.route("team-alpha/data/x").await.unwrap().is_none());
        t.remount("a/b", "moved").await.unwrap();
        assert_eq!(t.route("moved/k").await.unwrap().unwrap().0.kind, "kv");
        assert!(t.route("a/b/k").await.unwrap().is_none());
    }

    #[test]
    fn paths() {
        assert_eq!(normalize("/secret/").unwrap(), "secret/");
        assert!(normalize("").is_err());
        assert!(normalize("a//b").is_err());
        assert!(normalize("a/../b").is_err());
    }
}
