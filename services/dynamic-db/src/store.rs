//! The database secrets engine itself: connections, roles, credentials,
//! static roles and root rotation, over the barrier and the managed
//! databases. The gRPC layer ([`crate::service`]) only translates.
//!
//! Passwords (of connections, static roles and issued credentials) are held
//! in zeroizing buffers, never logged, and never put in an error: driver
//! messages are redacted first ([`Redactor`]).

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use bulwark_proto::dynamicdb::v1 as pb;
use bulwark_shared::barrier::Barrier;
use bulwark_shared::keyring::Keyring;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::conn::{self, DbPool, Plugin, Pools, Redactor};
use crate::error::DbError;
use crate::layout::{self, ConfigRecord, RoleRecord, Secret, StaticRoleRecord};
use crate::ops;
use crate::sql::{self, my_literal, pg_ident, Dialect, Placeholders};
use crate::template::{self, TemplateData};

/// Vault's system TTL default and maximum (768h), in seconds.
pub const SYSTEM_TTL: i64 = 768 * 3600;
/// The shortest static-role rotation period, in seconds.
pub const MIN_ROTATION_PERIOD: i64 = 5;
/// Length of generated credential passwords (Vault's default policy).
pub const PASSWORD_LEN: usize = 20;
/// Length of generated root and static-role passwords.
pub const ROTATED_PASSWORD_LEN: usize = 32;
/// A rotation claim older than this (seconds) is taken to have died with its
/// process.
const PENDING_STALE: i64 = 60;
/// How many times a compare-and-swap update is tried.
const MAX_ATTEMPTS: usize = 50;

/// Unix seconds, with an offset that tests can move forward.
#[derive(Clone, Default)]
pub(crate) struct Clock {
    offset: Arc<AtomicI64>,
}

impl Clock {
    pub fn now(&self) -> i64 {
        chrono::Utc::now().timestamp() + self.offset.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    pub fn advance(&self, seconds: i64) {
        self.offset.fetch_add(seconds, Ordering::Relaxed);
    }
}

/// What a lease carries back to [`DbStore::revoke_credentials`] and
/// [`DbStore::renew_credentials`] (JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevokeData {
    /// Format version (1).
    pub v: u32,
    /// The connection (config name).
    pub db_name: String,
    pub role: String,
    pub username: String,
    pub plugin: String,
}

/// Whether `role` matches one of `allowed` (names or `*` globs; `*` alone
/// allows every role; an empty list allows none).
pub fn role_allowed(allowed: &[String], role: &str) -> bool {
    allowed.iter().any(|pattern| glob(pattern, role))
}

/// `*`-only glob matching (as Vault's `StrListContainsGlob`).
fn glob(pattern: &str, value: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == value;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if value.len() < first.len() + last.len() {
        return false;
    }
    let Some(mut rest) = value.strip_prefix(first).and_then(|v| v.strip_suffix(last)) else {
        return false;
    };
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    true
}

/// Trimmed, non-empty entries.
fn clean(list: &[String]) -> Vec<String> {
    list.iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The storage and the logic of every `database` mount.
pub struct DbStore {
    barrier: Barrier,
    pools: Pools,
    /// Static roles being rotated by this process.
    rotating: Mutex<HashSet<(String, String)>>,
    pub(crate) clock: Clock,
}

/// Releases a static role's in-process rotation guard.
struct RotationGuard<'a> {
    set: &'a Mutex<HashSet<(String, String)>>,
    key: (String, String),
}

impl Drop for RotationGuard<'_> {
    fn drop(&mut self) {
        self.set
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

impl DbStore {
    /// A store over `barrier` (the `dynamic_db` namespace).
    pub fn new(barrier: Barrier) -> Self {
        DbStore {
            barrier,
            pools: Pools::default(),
            rotating: Mutex::new(HashSet::new()),
            clock: Clock::default(),
        }
    }

    pub fn keyring(&self) -> &Keyring {
        self.barrier.keyring()
    }

    /// Refuses with "Vault is sealed" while this service holds no data key.
    pub async fn ensure_unsealed(&self) -> Result<(), DbError> {
        self.barrier.keyring().ensure_active().await?;
        Ok(())
    }

    /// Closes every connection pool (on seal: no database password stays
    /// in memory longer than needed).
    pub fn close_pools(&self) {
        self.pools.clear();
    }

    /// How many pools are open.
    pub fn open_pools(&self) -> usize {
        self.pools.len()
    }

    // === records ===

    async fn load<T: DeserializeOwned>(
        &self,
        what: &'static str,
        key: &str,
    ) -> Result<Option<(T, Vec<u8>)>, DbError> {
        match self.barrier.get_versioned(key).await? {
            Some((plain, stored)) => {
                let value = serde_json::from_slice(&plain).map_err(|e| DbError::Corrupt {
                    what,
                    path: key.to_string(),
                    reason: e.to_string(),
                })?;
                Ok(Some((value, stored)))
            }
            None => Ok(None),
        }
    }

    async fn get<T: DeserializeOwned>(
        &self,
        what: &'static str,
        key: &str,
    ) -> Result<Option<T>, DbError> {
        Ok(self.load(what, key).await?.map(|(v, _)| v))
    }

    fn encode<T: Serialize>(key: &str, value: &T) -> Result<Zeroizing<Vec<u8>>, DbError> {
        serde_json::to_vec(value)
            .map(Zeroizing::new)
            .map_err(|e| DbError::Corrupt {
                what: "record",
                path: key.to_string(),
                reason: e.to_string(),
            })
    }

    async fn put<T: Serialize>(&self, key: &str, value: &T) -> Result<(), DbError> {
        Ok(self.barrier.put(key, &Self::encode(key, value)?).await?)
    }

    /// Compare-and-swap (`None`: only if absent). Returns whether written.
    async fn swap<T: Serialize>(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        value: &T,
    ) -> Result<bool, DbError> {
        let bytes = Self::encode(key, value)?;
        Ok(match expected {
            Some(e) => self.barrier.replace(key, e, &bytes).await?,
            None => self.barrier.create(key, &bytes).await?,
        })
    }

    /// Read-modify-write of a static role by compare-and-swap. `f` returns
    /// `false` to leave the record alone. `Ok(false)`: no such role.
    async fn update_static(
        &self,
        key: &str,
        mut f: impl FnMut(&mut StaticRoleRecord) -> bool,
    ) -> Result<bool, DbError> {
        for _ in 0..MAX_ATTEMPTS {
            let Some((mut record, stored)) =
                self.load::<StaticRoleRecord>("static role", key).await?
            else {
                return Ok(false);
            };
            if !f(&mut record) {
                return Ok(true);
            }
            if self.swap(key, Some(&stored), &record).await? {
                return Ok(true);
            }
        }
        Err(DbError::Busy(
            "too many concurrent changes to this static role; try again".into(),
        ))
    }

    /// The names stored directly in `folder`, sorted.
    async fn names(&self, folder: &str) -> Result<Vec<String>, DbError> {
        let mut names: Vec<String> = self
            .barrier
            .list(folder)
            .await?
            .into_iter()
            .filter(|n| !n.ends_with('/'))
            .collect();
        names.sort();
        Ok(names)
    }

    async fn delete_tree(&self, prefix: &str) -> Result<(), DbError> {
        let mut folders = vec![prefix.to_string()];
        while let Some(folder) = folders.pop() {
            self.barrier.delete(&folder).await?;
            for entry in self.barrier.list(&folder).await? {
                let key = format!("{folder}{entry}");
                if entry.ends_with('/') {
                    folders.push(key);
                } else {
                    self.barrier.delete(&key).await?;
                }
            }
        }
        Ok(())
    }

    async fn config_record(
        &self,
        mount: &str,
        name: &str,
    ) -> Result<Option<ConfigRecord>, DbError> {
        self.get("connection", &layout::config_key(mount, name))
            .await
    }

    /// The pool of a stored connection.
    fn pool(
        &self,
        mount: &str,
        name: &str,
        config: &ConfigRecord,
    ) -> Result<(Plugin, DbPool), DbError> {
        let plugin = Plugin::parse(&config.plugin_name)?;
        Ok((plugin, self.pools.get(mount, name, plugin, config)?))
    }

    // === config/<name>, reset/<name>, rotate-root/<name> ===

    /// Stores a connection, after checking it connects when
    /// `verify_connection`. An empty password keeps the stored one.
    pub async fn write_config(
        &self,
        mount: &str,
        name: &str,
        c: pb::ConnectionConfig,
    ) -> Result<(), DbError> {
        self.ensure_unsealed().await?;
        layout::check_mount(mount)?;
        layout::check_name("connection", name)?;
        let plugin = Plugin::parse(&c.plugin_name)?;
        for (field, value) in [
            ("max_open_connections", c.max_open_connections),
            ("max_idle_connections", c.max_idle_connections),
            ("max_connection_lifetime", c.max_connection_lifetime),
        ] {
            if value < 0 {
                return Err(DbError::Invalid(format!("{field} must not be negative")));
            }
        }
        if !c.username_template.is_empty() {
            template::render(
                &c.username_template,
                &TemplateData {
                    role_name: "role",
                    display_name: "token",
                },
            )
            .map_err(|e| DbError::Invalid(format!("invalid username_template: {e}")))?;
        }
        let password = if c.password.is_empty() {
            self.config_record(mount, name)
                .await?
                .map(|old| old.password)
                .unwrap_or_default()
        } else {
            Secret::new(c.password.as_str())
        };
        let record = ConfigRecord {
            plugin_name: c.plugin_name,
            connection_url: c.connection_url.trim().to_string(),
            username: c.username,
            password,
            allowed_roles: clean(&c.allowed_roles),
            max_open_connections: c.max_open_connections,
            max_idle_connections: c.max_idle_connections,
            max_connection_lifetime: c.max_connection_lifetime,
            username_template: c.username_template,
            password_policy: c.password_policy,
            root_rotation_statements: clean(&c.root_rotation_statements),
            verify_connection: c.verify_connection,
        };
        // Refuses a URL that does not parse, also without a check.
        conn::target(plugin, &record)?;
        if record.verify_connection {
            conn::verify(plugin, &record).await?;
        }
        self.put(&layout::config_key(mount, name), &record).await?;
        self.pools.remove(mount, name);
        Ok(())
    }

    /// A connection, without its password.
    pub async fn read_config(
        &self,
        mount: &str,
        name: &str,
    ) -> Result<pb::ConnectionConfig, DbError> {
        self.ensure_unsealed().await?;
        layout::check_mount(mount)?;
        layout::check_name("connection", name)?;
        let c = self
            .config_record(mount, name)
            .await?
            .ok_or_else(|| DbError::NotFound(format!("no connection named {name:?}")))?;
        Ok(pb::ConnectionConfig {
            plugin_name: c.plugin_name.clone(),
            connection_url: c.connection_url.clone(),
            username: c.username.clone(),
            password: String::new(),
            allowed_roles: c.allowed_roles.clone(),
            max_open_connections: c.max_open_connections,
            max_idle_connections: c.max_idle_connections,
            max_connection_lifetime: c.max_connection_lifetime,
            username_template: c.username_template.clone(),
            password_policy: c.password_policy.clone(),
            root_rotation_statements: c.root_rotation_statements.clone(),
            verify_connection: c.verify_connection,
        })
    }

    /// Deletes a connection (a missing one is fine) and closes its pool.
    pub async fn delete_config(&self, mount: &str, name: &str) -> Result<(), DbError> {
        self.ensure_unsealed().await?;
        layout::check_mount(mount)?;
        layout::check_name("connection", name)?;
        self.barrier
            .delete(&layout::config_key(mount, name))
            .await?;
        self.pools.remove(mount, name);
        Ok(())
    }

    pub async fn list_configs(&self, mount: &str) -> Result<Vec<String>, DbError> {
        self.ensure_unsealed().await?;
        layout::check_mount(mount)?;
        self.names(&layout::config_folder(mount)).await
    }

    /// Closes a connection's pool; the next use opens a new one.
    pub async fn reset_connection(&self, mount: &str, name: &str) -> Result<(), DbError> {
        self.ensure_unsealed().await?;
        layout::check_mount(mount)?;
        layout::check_name("connection", name)?;
        if self.config_record(mount, name).await?.is_none() {
            return Err(DbError::NotFound(format!("no connection named {name:?}")));
        }
        self.pools.remove(mount, name);
        Ok(())
    }

    /// Sets a new random password for the connection's user, in the
    /// database and in storage; the old one stops working.
    #[tracing::instrument(name = "db.rotate_root", skip_all)]
    pub async fn rotate_root(&self, mount: &str, name: &str) -> Result<(), DbError> {
        self.ensure_unsealed().await?;
        layout::check_mount(mount)?;
        layout::check_name("connection", name)?;
        let key = layout::config_key(mount, name);
        let (config, stored) = self
            .load::<ConfigRecord>("connection", &key)
            .await?
            .ok_or_else(|| DbError::NotFound(format!("no connection named {name:?}")))?;
        if config.username.is_empty() || config.password.is_empty() {
            return Err(DbError::Invalid(
                "unable to rotate root credentials: no username and password in the configuration"
                    .into(),
            ));
        }
        let (plugin, pool) = self.pool(mount, name, &config)?;
        let new = template::password(ROTATED_PASSWORD_LEN);
        let mut redactor = Redactor::new(&config, &[new.expose()]);
        redactor.add(config.password.expose());
        let statements = self
            .root_statements(plugin, &pool, &config, new.expose())
            .await
            .map_err(|e| redactor.classify("error rotating root credentials", e))?;
        ops::exec_tx(&pool, &statements)
            .await
            .map_err(|e| redactor.classify("error rotating root credentials", e))?;
        let updated = ConfigRecord {
            password: new,
            ..config.clone()
        };
        let stored_ok = self.swap(&key, Some(&stored), &updated).await;
        if !matches!(stored_ok, Ok(true)) {
            // Put the old password back (our pooled sessions still work),
            // so that what is stored keeps matching the database.
            let back = self
                .root_statements(plugin, &pool, &config, config.password.expose())
                .await;
            if let Ok(back) = back {
                if let Err(e) = ops::exec_tx(&pool, &back).await {
                    tracing::error!(
                        error = %redactor.redact(&e.to_string()),
                        "could not restore the root password after a failed rotation"
                    );
                }
            }
            self.pools.remove(mount, name);
            stored_ok?;
            return Err(DbError::Busy(
                "the connection changed during the rotation; try again".into(),
            ));
        }
        self.pools.remove(mount, name);
        tracing::info!(mount, connection = name, "rotated root credentials");
        Ok(())
    }

    /// The statements that set the connection user's password to `password`.
    async fn root_statements(
        &self,
        plugin: Plugin,
        pool: &DbPool,
        config: &ConfigRecord,
        password: &str,
    ) -> Result<Vec<Zeroizing<String>>, sqlx::Error> {
        if !config.root_rotation_statements.is_empty() {
            return Ok(
                sql::split(&config.root_rotation_statements, plugin.dialect())
                    .iter()
                    .map(|s| {
                        sql::fill(
                            s,
                            &Placeholders {
                                name: &config.username,
                                password: Some(password),
                                expiration: None,
                            },
                        )
                    })
                    .collect(),
            );
        }
        set_password_statements(plugin, pool, &config.username, password).await
    }

    // === roles/<name> ===

    pub async fn write_role(&self, mount: &str, role: pb::Role) -> Result<(), DbError> {
        self.ensure_unsealed().await?;
        layout::check_mount(mount)?;
        layout::check_name("role", &role.name)?;
        if role.db_name.is_empty() {
            return Err(DbError::Invalid("empty database name attribute".into()));
        }
        let config = self
            .config_record(mount, &role.db_name)
            .await?
            .ok_or_else(|| {
                DbError::Invalid(format!("unknown database connection {:?}", role.db_name))
            })?;
        if !role_allowed(&config.allowed_roles, &role.name) {
            return Err(DbError::Invalid(format!(
                "{:?} is not an allowed role",
                role.name
            )));
        }
        let creation = clean(&role.creation_statements);
        if creation.is_empty() {
            return Err(DbError::Invalid("empty creation statements".into()));
        }
        check_ttls(role.default_ttl, role.max_ttl)?;
        let record = RoleRecord {
            db_name: role.db_name,
            creation_statements: creation,
            revocation_statements: clean(&role.revocation_statements),
            rollback_statements: clean(&role.rollback_statements),
            renew_statements: clean(&role.renew_statements),
            default_ttl: role.default_ttl,
            max_ttl: role.max_ttl,
        };
        self.put(&layout::role_key(mount, &role.name), &record)
            .await
    }

    pub async fn read_role(&self, mount: &str, name: &str) -> Result<pb::Role, DbError> {
        self.ensure_unsealed().await?;
        layout::check_mount(mount)?;
        layout::check_name("role", name)?;
        let r: RoleRecord = self
            .get("role", &layout::role_key(mount, name))
            .await?
            .ok_or_else(|| DbError::NotFound(format!("unknown role: {name}")))?;
        Ok(pb::Role {
            name: name.to_string(),
            db_name: r.db_name,
            creation_statements: r.creation_statements,
            revocation_statements: r.revocation_statements,
            rollback_statements: r.rollback_statements,
            renew_statements: r.renew_statements,
            default_ttl: r.default_ttl,
            max_ttl: r.max_ttl,
        })
    }

    pub async fn delete_role(&self, mount: &str, name: &str) -> Result<(), DbError> {
        self.ensure_unsealed().await?;
        layout::check_mount(mount)?;
        layout::check_name("role", name)?;
        Ok(self.barrier.delete(&layout::role_key(mount, name)).await?)
    }

    pub async fn list_roles(&self, mount: &str) -> Result<Vec<String>, DbError> {
        self.ensure_unsealed().await?;
        layout::check_mount(mount)?;
        self.names(&layout::role_folder(mount)).await
    }

    // === creds/<role>, and the lease registry's revoke and renew ===

    /// Creates a database user for `role`, in one transaction; on failure
    /// the role's rollback statements run and nothing is left behind.
    #[tracing::instrument(name = "db.create_credentials", skip_all)]
    pub async fn create_credentials(
        &self,
        req: pb::CreateCredentialsRequest,
    ) -> Result<pb::Credentials, DbError> {
        self.ensure_unsealed().await?;
        let mount = req.mount.as_str();
        layout::check_mount(mount)?;
        layout::check_name("role", &req.role)?;
        let role: RoleRecord = self
            .get("role", &layout::role_key(mount, &req.role))
            .await?
            .ok_or_else(|| DbError::Invalid(format!("unknown role: {}", req.role)))?;
        let config = self
            .config_record(mount, &role.db_name)
            .await?
            .ok_or_else(|| {
                DbError::Refused(format!(
                    "could not find database connection {:?}",
                    role.db_name
                ))
            })?;
        if !role_allowed(&config.allowed_roles, &req.role) {
            return Err(DbError::Refused(format!(
                "{:?} is not an allowed role",
                req.role
            )));
        }
        let (plugin, pool) = self.pool(mount, &role.db_name, &config)?;

        let (ttl, max_ttl) = lease_ttls(&role, req.mount_default_ttl, req.mount_max_ttl);
        let expiration = sql::expiration(self.clock.now() + ttl);
        let template = if config.username_template.is_empty() {
            plugin.default_username_template()
        } else {
            config.username_template.as_str()
        };
        let rendered = template::render(
            template,
            &TemplateData {
                role_name: &req.role,
                display_name: &req.display_name,
            },
        )
        .map_err(|e| DbError::Invalid(format!("unable to generate username: {e}")))?;
        let username: String = template::sanitize_username(&rendered)
            .chars()
            .take(plugin.max_username_len())
            .collect();
        if username.is_empty() {
            return Err(DbError::Invalid(
                "unable to generate username: the template produced an empty name".into(),
            ));
        }
        let password = template::password(PASSWORD_LEN);
        let values = Placeholders {
            name: &username,
            password: Some(password.expose()),
            expiration: Some(&expiration),
        };
        let statements = fill_all(&role.creation_statements, plugin.dialect(), &values);
        let redactor = Redactor::new(&config, &[password.expose()]);
        if let Err(e) = ops::exec_tx(&pool, &statements).await {
            let error = redactor.classify("error creating database user", e);
            self.roll_back(&pool, &role, &values).await;
            return Err(error);
        }
        let revoke_data = serde_json::to_vec(&RevokeData {
            v: 1,
            db_name: role.db_name.clone(),
            role: req.role.clone(),
            username: username.clone(),
            plugin: config.plugin_name.clone(),
        })
        .map_err(|e| DbError::Corrupt {
            what: "revoke data",
            path: String::new(),
            reason: e.to_string(),
        })?;
        tracing::info!(mount, role = %req.role, username = %username, ttl, "issued database credentials");
        Ok(pb::Credentials {
            username,
            password: password.expose().to_string(),
            ttl,
            max_ttl,
            revoke_data,
        })
    }

    /// After a failed creation: the role's rollback statements, then, if
    /// the user exists all the same (MySQL commits `CREATE USER` at once),
    /// the default revocation. Best effort; failures are logged, redacted.
    async fn roll_back(&self, pool: &DbPool, role: &RoleRecord, values: &Placeholders<'_>) {
        let dialect = match pool {
            DbPool::Pg(_) => Dialect::Postgres,
            DbPool::My(_) => Dialect::MySql,
        };
        let rollback = fill_all(&role.rollback_statements, dialect, values);
        let _ = ops::exec_each(pool, &rollback).await;
        if matches!(ops::user_exists(pool, values.name).await, Ok(true)) {
            if let Err(e) = ops::default_revoke(pool, values.name).await {
                let msg = e
                    .to_string()
                    .replace(values.password.unwrap_or(""), "[redacted]");
                tracing::warn!(error = %msg, "rollback of a failed creation left the user behind");
            }
        }
    }

    fn revoke_data(data: &[u8]) -> Result<RevokeData, DbError> {
        serde_json::from_slice::<RevokeData>(data)
            .map_err(|_| DbError::Invalid("malformed revoke data".into()))
    }

    /// Drops a user issued by [`DbStore::create_credentials`]: the role's
    /// revocation statements if it still has some, else the plugin's
    /// default. A user already gone is success; an unreachable database is
    /// `Unreachable` (the lease registry retries).
    #[tracing::instrument(name = "db.revoke_credentials", skip_all)]
    pub async fn revoke_credentials(&self, mount: &str, data: &[u8]) -> Result<(), DbError> {
        self.ensure_unsealed().await?;
        layout::check_mount(mount)?;
        let data = Self::revoke_data(data)?;
        let config = self
            .config_record(mount, &data.db_name)
            .await?
            .ok_or_else(|| {
                DbError::Gone(format!(
                    "database connection {:?} no longer exists",
                    data.db_name
                ))
            })?;
        let role: Option<RoleRecord> = self
            .get("role", &layout::role_key(mount, &data.role))
            .await?;
        let (plugin, pool) = self.pool(mount, &data.db_name, &config)?;
        let redactor = Redactor::new(&config, &[]);
        // Vault answers a failed revocation with a 500 (the lease stays and
        // is retried); an unreachable database stays `Unreachable`.
        let fail = |e| match redactor.classify("error revoking database user", e) {
            DbError::Statement(m) => DbError::Refused(m),
            other => other,
        };
        if !ops::user_exists(&pool, &data.username)
            .await
            .map_err(fail)?
        {
            return Ok(());
        }
        match role.filter(|r| !r.revocation_statements.is_empty()) {
            Some(role) => {
                let statements = fill_all(
                    &role.revocation_statements,
                    plugin.dialect(),
                    &Placeholders {
                        name: &data.username,
                        ..Default::default()
                    },
                );
                ops::exec_tx(&pool, &statements).await.map_err(fail)?;
            }
            None => ops::default_revoke(&pool, &data.username)
                .await
                .map_err(fail)?,
        }
        tracing::info!(mount, role = %data.role, username = %data.username, "revoked database user");
        Ok(())
    }

    /// Extends a user's life to `expire_time`: the role's renew statements,
    /// else PostgreSQL's `VALID UNTIL` (nothing for MySQL).
    #[tracing::instrument(name = "db.renew_credentials", skip_all)]
    pub async fn renew_credentials(
        &self,
        mount: &str,
        data: &[u8],
        expire_time: i64,
    ) -> Result<(), DbError> {
        self.ensure_unsealed().await?;
        layout::check_mount(mount)?;
        let data = Self::revoke_data(data)?;
        let role: RoleRecord = self
            .get("role", &layout::role_key(mount, &data.role))
            .await?
            .ok_or_else(|| {
                DbError::Gone(format!(
                    "error during renew: could not find role with name {:?}",
                    data.role
                ))
            })?;
        let config = self
            .config_record(mount, &data.db_name)
            .await?
            .ok_or_else(|| {
                DbError::Gone(format!(
                    "database connection {:?} no longer exists",
                    data.db_name
                ))
            })?;
        let (plugin, pool) = self.pool(mount, &data.db_name, &config)?;
        let expiration = sql::expiration(expire_time);
        let statements = if !role.renew_statements.is_empty() {
            fill_all(
                &role.renew_statements,
                plugin.dialect(),
                &Placeholders {
                    name: &data.username,
                    password: None,
                    expiration: Some(&expiration),
                },
            )
        } else if plugin == Plugin::Postgres {
            vec![Zeroizing::new(format!(
                "ALTER ROLE {} VALID UNTIL '{expiration}'",
                pg_ident(&data.username)
            ))]
        } else {
            return Ok(());
        };
        let redactor = Redactor::new(&config, &[]);
        ops::exec_tx(&pool, &statements).await.map_err(|e| {
            match redactor.classify("error renewing database user", e) {
                DbError::Statement(m) => DbError::Refused(m),
                other => other,
            }
        })
    }

    // === static-roles/<name>, static-creds/<name>, rotate-role/<name> ===

    /// Creates or updates a static role; a new one is rotated at once (and
    /// not kept if that fails).
    pub async fn write_static_role(&self, mount: &str, r: pb::StaticRole) -> Result<(), DbError> {
        self.ensure_unsealed().await?;
        layout::check_mount(mount)?;
        layout::check_name("static role", &r.name)?;
        if r.db_name.is_empty() {
            return Err(DbError::Invalid("empty database name attribute".into()));
        }
        if r.username.is_empty() {
            return Err(DbError::Invalid("username is a required field".into()));
        }
        if r.rotation_period < MIN_ROTATION_PERIOD {
            return Err(DbError::Invalid(format!(
                "rotation_period must be {MIN_ROTATION_PERIOD} seconds or more"
            )));
        }
        let config = self
            .config_record(mount, &r.db_name)
            .await?
            .ok_or_else(|| {
                DbError::Invalid(format!("unknown database connection {:?}", r.db_name))
            })?;
        if !role_allowed(&config.allowed_roles, &r.name) {
            return Err(DbError::Invalid(format!(
                "{:?} is not an allowed role",
                r.name
            )));
        }
        let key = layout::static_key(mount, &r.name);
        let statements = clean(&r.rotation_statements);
        if let Some(existing) = self.get::<StaticRoleRecord>("static role", &key).await? {
            if existing.username != r.username {
                return Err(DbError::Invalid(
                    "cannot update static account username".into(),
                ));
            }
            if existing.db_name != r.db_name {
                return Err(DbError::Invalid("cannot update static role db_name".into()));
            }
            self.update_static(&key, |rec| {
                rec.rotation_period = r.rotation_period;
                rec.rotation_statements = statements.clone();
                true
            })
            .await?;
            return Ok(());
        }
        let (_, pool) = self.pool(mount, &r.db_name, &config)?;
        let redactor = Redactor::new(&config, &[]);
        let exists = ops::user_exists(&pool, &r.username)
            .await
            .map_err(|e| redactor.classify("error checking the static account", e))?;
        if !exists {
            return Err(DbError::Invalid(format!(
                "database user {:?} does not exist",
                r.username
            )));
        }
        let record = StaticRoleRecord {
            db_name: r.db_name,
            username: r.username,
            rotation_period: r.rotation_period,
            rotation_statements: statements,
            ..Default::default()
        };
        if !self.swap(&key, None, &record).await? {
            return Err(DbError::Busy(
                "the static role was created concurrently; try again".into(),
            ));
        }
        if let Err(e) = self.rotate_static(mount, &r.name, false).await {
            let _ = self.barrier.delete(&key).await;
            return Err(e);
        }
        Ok(())
    }

    pub async fn read_static_role(
        &self,
        mount: &str,
        name: &str,
    ) -> Result<pb::StaticRole, DbError> {
        self.ensure_unsealed().await?;
        layout::check_mount(mount)?;
        layout::check_name("static role", name)?;
        let r = self.static_record(mount, name).await?;
        Ok(pb::StaticRole {
            name: name.to_string(),
            db_name: r.db_name.clone(),
            username: r.username.clone(),
            rotation_period: r.rotation_period,
            rotation_statements: r.rotation_statements.clone(),
            last_vault_rotation: r.last_vault_rotation,
        })
    }

    async fn static_record(&self, mount: &str, name: &str) -> Result<StaticRoleRecord, DbError> {
        self.get("static role", &layout::static_key(mount, name))
            .await?
            .ok_or_else(|| DbError::NotFound(format!("unknown static role: {name}")))
    }

    pub async fn delete_static_role(&self, mount: &str, name: &str) -> Result<(), DbError> {
        self.ensure_unsealed().await?;
        layout::check_mount(mount)?;
        layout::check_name("static role", name)?;
        Ok(self
            .barrier
            .delete(&layout::static_key(mount, name))
            .await?)
    }

    pub async fn list_static_roles(&self, mount: &str) -> Result<Vec<String>, DbError> {
        self.ensure_unsealed().await?;
        layout::check_mount(mount)?;
        self.names(&layout::static_folder(mount)).await
    }

    /// The current password of a static role and when it next changes.
    pub async fn get_static_credentials(
        &self,
        mount: &str,
        name: &str,
    ) -> Result<pb::StaticCredentials, DbError> {
        self.ensure_unsealed().await?;
        layout::check_mount(mount)?;
        layout::check_name("static role", name)?;
        let r = self.static_record(mount, name).await?;
        let next = r.last_vault_rotation + r.rotation_period;
        Ok(pb::StaticCredentials {
            username: r.username.clone(),
            password: r.password.expose().to_string(),
            last_vault_rotation: r.last_vault_rotation,
            rotation_period: r.rotation_period,
            ttl: (next - self.clock.now()).max(0),
        })
    }

    /// Rotates a static role now.
    pub async fn rotate_static_role(&self, mount: &str, name: &str) -> Result<(), DbError> {
        self.ensure_unsealed().await?;
        layout::check_mount(mount)?;
        layout::check_name("static role", name)?;
        self.static_record(mount, name).await?;
        self.rotate_static(mount, name, false).await.map(drop)
    }

    /// Rotates one static role (only if its period has elapsed when
    /// `only_if_due`). Returns whether it rotated.
    ///
    /// Between replicas, a rotation is claimed first (`pending_since`, by
    /// compare-and-swap) so that two never race; the new password is
    /// recorded only once the database has it.
    #[tracing::instrument(name = "db.rotate_static", skip_all)]
    pub(crate) async fn rotate_static(
        &self,
        mount: &str,
        name: &str,
        only_if_due: bool,
    ) -> Result<bool, DbError> {
        let guard_key = (mount.to_string(), name.to_string());
        if !self
            .rotating
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(guard_key.clone())
        {
            return if only_if_due {
                Ok(false)
            } else {
                Err(DbError::Busy("this static role is being rotated".into()))
            };
        }
        let _guard = RotationGuard {
            set: &self.rotating,
            key: guard_key,
        };
        let key = layout::static_key(mount, name);

        // Claim.
        let now = self.clock.now();
        let mut claimed = None;
        for _ in 0..MAX_ATTEMPTS {
            let Some((mut record, stored)) =
                self.load::<StaticRoleRecord>("static role", &key).await?
            else {
                return Err(DbError::NotFound(format!("unknown static role: {name}")));
            };
            if only_if_due && now < record.last_vault_rotation + record.rotation_period {
                return Ok(false);
            }
            if record.pending_since != 0 && now - record.pending_since < PENDING_STALE {
                return if only_if_due {
                    Ok(false)
                } else {
                    Err(DbError::Busy("this static role is being rotated".into()))
                };
            }
            record.pending_since = now;
            if self.swap(&key, Some(&stored), &record).await? {
                claimed = Some(record);
                break;
            }
        }
        let record = claimed.ok_or_else(|| {
            DbError::Busy("too many concurrent changes to this static role; try again".into())
        })?;

        let result = self.set_static_password(mount, &record).await;
        let stamp = record.pending_since;
        match result {
            Ok(password) => {
                let done = self.clock.now();
                self.update_static(&key, |rec| {
                    rec.password = password.clone();
                    rec.last_vault_rotation = done;
                    rec.pending_since = 0;
                    true
                })
                .await?;
                tracing::info!(mount, static_role = name, "rotated static role");
                Ok(true)
            }
            Err(e) => {
                let _ = self
                    .update_static(&key, |rec| {
                        if rec.pending_since != stamp {
                            return false;
                        }
                        rec.pending_since = 0;
                        true
                    })
                    .await;
                Err(e)
            }
        }
    }

    /// Sets a new password for a static role's user; returns it.
    async fn set_static_password(
        &self,
        mount: &str,
        record: &StaticRoleRecord,
    ) -> Result<Secret, DbError> {
        let config = self
            .config_record(mount, &record.db_name)
            .await?
            .ok_or_else(|| {
                DbError::Gone(format!(
                    "database connection {:?} no longer exists",
                    record.db_name
                ))
            })?;
        let (plugin, pool) = self.pool(mount, &record.db_name, &config)?;
        let password = template::password(ROTATED_PASSWORD_LEN);
        let redactor = Redactor::new(&config, &[password.expose()]);
        let fail = |e| redactor.classify("error rotating static role", e);
        let statements = if record.rotation_statements.is_empty() {
            set_password_statements(plugin, &pool, &record.username, password.expose())
                .await
                .map_err(fail)?
        } else {
            fill_all(
                &record.rotation_statements,
                plugin.dialect(),
                &Placeholders {
                    name: &record.username,
                    password: Some(password.expose()),
                    expiration: None,
                },
            )
        };
        ops::exec_tx(&pool, &statements).await.map_err(fail)?;
        Ok(password)
    }

    /// Rotates every static role whose period has elapsed, in every mount.
    /// Returns how many rotated; failures are logged and retried next time.
    pub async fn rotate_due(&self) -> Result<usize, DbError> {
        self.ensure_unsealed().await?;
        let mut rotated = 0;
        for mount in self.barrier.list("m/").await? {
            let Some(mount) = mount.strip_suffix('/') else {
                continue;
            };
            for name in self.names(&layout::static_folder(mount)).await? {
                match self.rotate_static(mount, &name, true).await {
                    Ok(true) => rotated += 1,
                    Ok(false) => {}
                    Err(e) if e.is_sealed() => return Err(e),
                    Err(e) => {
                        tracing::warn!(mount, static_role = %name, error = %e, "static role rotation failed")
                    }
                }
            }
        }
        Ok(rotated)
    }

    // === the whole mount ===

    /// Deletes everything of a mount (it was disabled) and closes its pools.
    pub async fn drop_mount(&self, mount: &str) -> Result<(), DbError> {
        self.ensure_unsealed().await?;
        layout::check_mount(mount)?;
        self.pools.remove_mount(mount);
        self.delete_tree(&layout::mount_prefix(mount)).await
    }
}

/// `default_ttl ≤ max_ttl` when both are set; neither negative.
fn check_ttls(default_ttl: i64, max_ttl: i64) -> Result<(), DbError> {
    if default_ttl < 0 || max_ttl < 0 {
        return Err(DbError::Invalid("ttl values must not be negative".into()));
    }
    if default_ttl > 0 && max_ttl > 0 && default_ttl > max_ttl {
        return Err(DbError::Invalid(
            "ttl cannot be greater than max_ttl".into(),
        ));
    }
    Ok(())
}

/// The lease's TTL and maximum: the role's, else the mount's, else 768h;
/// the maximum never beyond the mount's, the TTL never beyond the maximum.
pub(crate) fn lease_ttls(role: &RoleRecord, mount_default: i64, mount_max: i64) -> (i64, i64) {
    let system_max = if mount_max > 0 { mount_max } else { SYSTEM_TTL };
    let max = if role.max_ttl > 0 {
        role.max_ttl.min(system_max)
    } else {
        system_max
    };
    let ttl = if role.default_ttl > 0 {
        role.default_ttl
    } else if mount_default > 0 {
        mount_default
    } else {
        SYSTEM_TTL
    };
    (ttl.min(max), max)
}

/// Splits and fills a list of statements.
fn fill_all(
    statements: &[String],
    dialect: Dialect,
    values: &Placeholders<'_>,
) -> Vec<Zeroizing<String>> {
    sql::split(statements, dialect)
        .iter()
        .map(|s| sql::fill(s, values))
        .collect()
}

/// The default statements that set `user`'s password: PostgreSQL
/// `ALTER ROLE … WITH PASSWORD`, MySQL `ALTER USER … IDENTIFIED BY` for
/// every host the user exists with (`'%'` if none can be read).
async fn set_password_statements(
    plugin: Plugin,
    pool: &DbPool,
    user: &str,
    password: &str,
) -> Result<Vec<Zeroizing<String>>, sqlx::Error> {
    match (plugin, pool) {
        (Plugin::Postgres, _) | (_, DbPool::Pg(_)) => Ok(vec![Zeroizing::new(format!(
            "ALTER ROLE {} WITH PASSWORD {}",
            pg_ident(user),
            pg_literal(password)
        ))]),
        (_, DbPool::My(p)) => {
            let mut hosts = ops::my_hosts(p, user).await.unwrap_or_default();
            if hosts.is_empty() {
                hosts.push("%".into());
            }
            Ok(hosts
                .iter()
                .map(|h| {
                    Zeroizing::new(format!(
                        "ALTER USER {}@{} IDENTIFIED BY {}",
                        my_literal(user),
                        my_literal(h),
                        my_literal(password)
                    ))
                })
                .collect())
        }
    }
}

/// A PostgreSQL string literal (standard-conforming strings).
fn pg_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_roles() {
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(!role_allowed(&[], "a"));
        assert!(role_allowed(&list(&["*"]), "anything"));
        assert!(role_allowed(&list(&["a", "b"]), "b"));
        assert!(!role_allowed(&list(&["a", "b"]), "c"));
        assert!(role_allowed(&list(&["read-*"]), "read-only"));
        assert!(!role_allowed(&list(&["read-*"]), "write"));
        assert!(role_allowed(&list(&["*-ro"]), "app-ro"));
        assert!(role_allowed(&list(&["a*b*c"]), "axxbyyc"));
        assert!(!role_allowed(&list(&["a*b*c"]), "axxc"));
        assert!(!role_allowed(&list(&["ab*ba"]), "aba"));
    }

    #[test]
    fn ttls() {
        let role = |d, m| RoleRecord {
            default_ttl: d,
            max_ttl: m,
            ..Default::default()
        };
        assert_eq!(lease_ttls(&role(0, 0), 0, 0), (SYSTEM_TTL, SYSTEM_TTL));
        assert_eq!(lease_ttls(&role(60, 0), 0, 0), (60, SYSTEM_TTL));
        assert_eq!(lease_ttls(&role(0, 0), 300, 600), (300, 600));
        assert_eq!(lease_ttls(&role(0, 100), 300, 600), (100, 100));
        assert_eq!(lease_ttls(&role(60, 7200), 0, 600), (60, 600));
        assert_eq!(lease_ttls(&role(0, 0), 0, 600), (600, 600));
        assert!(check_ttls(10, 5).is_err());
        assert!(check_ttls(-1, 0).is_err());
        assert!(check_ttls(10, 0).is_ok());
        assert!(check_ttls(0, 5).is_ok());
    }
}
