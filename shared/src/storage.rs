//! Storage: one key/value interface over sqlx with two backends, an SQLite file
//! (the embedded default, `:memory:` for `-dev`) and PostgreSQL (production,
//! shared by replicas). Each service gets its own namespace, a table of its own
//! (`bulwark_<namespace>`); no service reads another's rows.
//!
//! Values stored here are opaque bytes. Services never write plaintext through
//! this layer directly: they go through [`crate::barrier::Barrier`], which seals
//! every value with the service's own key. Keys (paths) stay plaintext, as in Vault.
//!
//! [`Database::try_lock`] is an advisory lock shared by every process on one
//! database (PostgreSQL: `pg_try_advisory_lock`), for work that exactly one
//! replica must do (e.g. the lease expiration manager).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::Row;
use sqlx::{ConnectOptions, Connection};
use tracing::Instrument;

/// Where a process keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageConfig {
    /// SQLite file at this path (created if missing).
    Sqlite { path: String },
    /// SQLite in memory: lost at exit. For tests.
    SqliteMemory,
    /// A map in this process's memory, lost at exit: `-dev`. No SQL engine
    /// and no worker thread between a request and its data.
    Memory,
    /// PostgreSQL at this URL (`postgres://user:pass@host:port/db`); every
    /// table, advisory lock and notice channel is named with `table_prefix`
    /// (default [`DEFAULT_TABLE_PREFIX`]), so several deployments can share
    /// one database.
    Postgres {
        url: String,
        max_connections: u32,
        table_prefix: String,
    },
}

/// The default prefix of every table (`bulwark_kv`, …).
pub const DEFAULT_TABLE_PREFIX: &str = "bulwark_";

/// Whether `p` can prefix SQL identifiers: lower-case ASCII letters, digits
/// and `_`, starting with a letter or `_`, at most 24 bytes.
pub fn valid_table_prefix(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 24
        && !p.starts_with(|c: char| c.is_ascii_digit())
        && p.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid storage namespace {0:?}")]
    BadNamespace(String),
    #[error("storage error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{0}")]
    Invalid(&'static str),
}

#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
    Memory(Arc<MemoryDb>),
}

/// One table of the in-memory backend.
type MemTable = Arc<std::sync::RwLock<std::collections::BTreeMap<String, Vec<u8>>>>;

/// The in-memory backend: tables by name.
#[derive(Default)]
struct MemoryDb {
    tables: Mutex<HashMap<String, MemTable>>,
}

impl Pool {
    /// OpenTelemetry's `db.system` name.
    fn system(&self) -> &'static str {
        match self {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgresql",
            Pool::Memory(_) => "inmem",
        }
    }
}

/// Runs `$body` with `$p` bound to whichever SQL pool this database uses
/// (the in-memory backend answers before reaching SQL).
macro_rules! with_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            Pool::Sqlite($p) => $body,
            Pool::Postgres($p) => $body,
            Pool::Memory(_) => return Err(StorageError::Invalid("no SQL in memory")),
        }
    };
}

/// A connection pool to the configured backend; hands out namespaces.
#[derive(Clone)]
pub struct Database {
    pool: Pool,
    /// What an SQLite in-process lock is scoped to: the file, or this
    /// in-memory database.
    lock_scope: Arc<str>,
    /// Prefix of table, lock and channel names.
    prefix: Arc<str>,
}

impl Database {
    pub async fn connect(cfg: &StorageConfig) -> Result<Self, StorageError> {
        let lock_scope: Arc<str> = match cfg {
            StorageConfig::Sqlite { path } => Arc::from(format!("file:{path}")),
            StorageConfig::SqliteMemory | StorageConfig::Memory => {
                Arc::from(format!("memory:{}", uuid::Uuid::new_v4().simple()))
            }
            StorageConfig::Postgres { .. } => Arc::from("postgres"),
        };
        let pool = match cfg {
            StorageConfig::Memory => Pool::Memory(Arc::default()),
            StorageConfig::Sqlite { path } => {
                let opts = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(Duration::from_secs(10));
                // Several processes opening one file at once can find it
                // locked while another switches it to WAL: try again.
                let mut attempt = 0;
                loop {
                    match SqlitePoolOptions::new()
                        .max_connections(8)
                        .connect_with(opts.clone())
                        .await
                    {
                        Ok(p) => break Pool::Sqlite(p),
                        Err(_) if attempt < 20 => {
                            attempt += 1;
                            tokio::time::sleep(Duration::from_millis(25 * attempt)).await;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            StorageConfig::SqliteMemory => {
                // One connection that never closes: an in-memory database lives
                // exactly as long as its connection.
                let opts = SqliteConnectOptions::from_str("sqlite::memory:")?;
                Pool::Sqlite(
                    SqlitePoolOptions::new()
                        .min_connections(1)
                        .max_connections(1)
                        .idle_timeout(None)
                        .max_lifetime(None)
                        .connect_with(opts)
                        .await?,
                )
            }
            StorageConfig::Postgres {
                url,
                max_connections,
                ..
            } => Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections((*max_connections).max(1))
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(url)
                    .await?,
            ),
        };
        let lock_scope = match cfg {
            // The same file under another name locks the same scope.
            StorageConfig::Sqlite { path } => std::fs::canonicalize(path)
                .map(|p| Arc::from(format!("file:{}", p.display())))
                .unwrap_or(lock_scope),
            _ => lock_scope,
        };
        let prefix = match cfg {
            StorageConfig::Postgres { table_prefix, .. } => {
                if !valid_table_prefix(table_prefix) {
                    return Err(StorageError::Invalid("invalid table prefix"));
                }
                Arc::from(table_prefix.as_str())
            }
            _ => Arc::from(DEFAULT_TABLE_PREFIX),
        };
        Ok(Database {
            pool,
            lock_scope,
            prefix,
        })
    }

    /// `"sqlite"` or `"postgresql"`, as `sys/seal-status` reports `storage_type`.
    /// The PostgreSQL pool, when that is the backend (for the notice bus).
    /// The prefix of this database's table, lock and channel names.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn pg_pool(&self) -> Option<&PgPool> {
        match &self.pool {
            Pool::Postgres(p) => Some(p),
            Pool::Sqlite(_) | Pool::Memory(_) => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        self.pool.system()
    }

    /// Opens (creating if needed) the namespace `name`: lower-case ASCII
    /// letters, digits and `_` only.
    pub async fn namespace(&self, name: &str) -> Result<Storage, StorageError> {
        let ok = !name.is_empty()
            && name.len() <= 48
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            return Err(StorageError::BadNamespace(name.to_string()));
        }
        let table = format!("{}{name}", self.prefix);
        let sql = Sql::new(&table, matches!(self.pool, Pool::Sqlite(_)));
        if let Pool::Memory(m) = &self.pool {
            let mem = m
                .tables
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(table)
                .or_default()
                .clone();
            return Ok(Storage {
                pool: self.pool.clone(),
                namespace: Arc::from(name),
                sql: Arc::new(sql),
                mem: Some(mem),
            });
        }
        // Concurrent processes may race on CREATE TABLE in PostgreSQL (a unique
        // violation on the catalog); the table exists afterwards either way.
        let mut attempt = 0;
        loop {
            let res =
                with_pool!(&self.pool, p => sqlx::query(&sql.create).execute(p).await.map(|_| ()));
            match res {
                Ok(_) => break,
                Err(_) if attempt < 10 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(Storage {
            pool: self.pool.clone(),
            namespace: Arc::from(name),
            sql: Arc::new(sql),
            mem: None,
        })
    }

    /// Closes the pool.
    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
            Pool::Memory(_) => {}
        }
    }

    /// Takes the advisory lock `name` if no one holds it: `Some(guard)` when
    /// taken (held until the guard drops), `None` when someone else holds it.
    /// Not reentrant: a second call while holding it answers `None`.
    ///
    /// * PostgreSQL: `pg_try_advisory_lock(k)` where `k` is the first 8 bytes
    ///   (big-endian, signed) of SHA-256(`name`), on a connection of its own
    ///   that the guard keeps (outside the pool). The lock is shared by every
    ///   process on the same database, and released when the guard drops or
    ///   when that connection dies. The guard checks its connection every
    ///   [`LOCK_KEEPALIVE`] and on [`LockGuard::check`]; once the connection
    ///   fails, [`LockGuard::is_held`] turns false for good and the holder
    ///   must stop acting (another process may take the lock as soon as the
    ///   server notices the session ended).
    /// * SQLite: an in-process lock, scoped to the database file (or to this
    ///   in-memory database). An SQLite file is used by one process at a time
    ///   in Bulwark's topologies (several processes on one file is for tests
    ///   and single-host setups, whose services each run once), so this is
    ///   enough there; it does not exclude another process on the same file.
    pub async fn try_lock(&self, name: &str) -> Result<Option<LockGuard>, StorageError> {
        match &self.pool {
            Pool::Sqlite(_) | Pool::Memory(_) => {
                let key = (self.lock_scope.to_string(), name.to_string());
                let mut held = LOCAL_LOCKS.lock().unwrap_or_else(|e| e.into_inner());
                if !held.insert(key.clone()) {
                    return Ok(None);
                }
                Ok(Some(LockGuard {
                    name: name.to_string(),
                    inner: LockInner::Local { key },
                }))
            }
            Pool::Postgres(pool) => {
                let opts = pool.connect_options();
                let key = advisory_key(&format!("{}{name}", self.prefix));
                let attempt = async {
                    let mut conn = opts.connect().await?;
                    let taken = sqlx::query("SELECT pg_try_advisory_lock($1)")
                        .bind(key)
                        .fetch_one(&mut conn)
                        .await
                        .and_then(|row| row.try_get::<bool, _>(0));
                    match taken {
                        Ok(true) => Ok(Some(conn)),
                        Ok(false) => {
                            let _ = conn.close().await;
                            Ok(None)
                        }
                        Err(e) => Err(e),
                    }
                };
                match tokio::time::timeout(LOCK_TAKE_TIMEOUT, attempt).await {
                    Ok(Ok(Some(conn))) => Ok(Some(PgLock::start(name, conn, key))),
                    Ok(Ok(None)) => Ok(None),
                    Ok(Err(e)) => Err(e.into()),
                    Err(_) => Err(StorageError::Db(sqlx::Error::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "timed out taking an advisory lock",
                    )))),
                }
            }
        }
    }
}

/// How often a PostgreSQL lock guard checks that its connection is alive.
pub const LOCK_KEEPALIVE: Duration = Duration::from_secs(2);

/// How long connecting and asking for a PostgreSQL lock may take.
const LOCK_TAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one check of a lock's connection may take before the lock
/// counts as lost.
const LOCK_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// SQLite locks held in this process: (scope, name).
static LOCAL_LOCKS: Mutex<BTreeSet<(String, String)>> = Mutex::new(BTreeSet::new());

/// The PostgreSQL advisory lock key of `name`.
fn advisory_key(name: &str) -> i64 {
    let digest = Sha256::digest(name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// A held advisory lock (see [`Database::try_lock`]); released on drop.
pub struct LockGuard {
    name: String,
    inner: LockInner,
}

enum LockInner {
    Local {
        key: (String, String),
    },
    Postgres {
        held: tokio::sync::watch::Receiver<bool>,
        checks: tokio::sync::mpsc::Sender<tokio::sync::oneshot::Sender<bool>>,
        /// Dropping it tells the keeper task to unlock and disconnect.
        _release: tokio::sync::oneshot::Sender<()>,
    },
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("name", &self.name)
            .field(
                "backend",
                &match self.inner {
                    LockInner::Local { .. } => "in-process",
                    LockInner::Postgres { .. } => "postgresql",
                },
            )
            .field("held", &self.is_held())
            .finish()
    }
}

impl LockGuard {
    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the lock is still held, as far as the last check knows. Once
    /// false, it stays false: take the lock again.
    pub fn is_held(&self) -> bool {
        match &self.inner {
            LockInner::Local { .. } => true,
            LockInner::Postgres { held, .. } => *held.borrow(),
        }
    }

    /// Checks the lock's connection now (one round trip on PostgreSQL);
    /// returns whether the lock is still held.
    pub async fn check(&self) -> bool {
        match &self.inner {
            LockInner::Local { .. } => true,
            LockInner::Postgres { held, checks, .. } => {
                if !*held.borrow() {
                    return false;
                }
                let (tx, rx) = tokio::sync::oneshot::channel();
                if checks.send(tx).await.is_err() {
                    return false;
                }
                rx.await.unwrap_or(false)
            }
        }
    }

    /// Completes once the lock is known to be lost (never, while held).
    pub async fn lost(&self) {
        match &self.inner {
            LockInner::Local { .. } => std::future::pending().await,
            LockInner::Postgres { held, .. } => {
                let mut held = held.clone();
                let _ = held.wait_for(|h| !*h).await;
            }
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let LockInner::Local { key } = &self.inner {
            LOCAL_LOCKS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(key);
        }
        // PostgreSQL: dropping `_release` ends the keeper task, which unlocks.
    }
}

/// The task that keeps a PostgreSQL lock's connection and watches it.
struct PgLock;

impl PgLock {
    fn start(name: &str, conn: PgConnection, key: i64) -> LockGuard {
        let (held_tx, held) = tokio::sync::watch::channel(true);
        let (checks, check_rx) = tokio::sync::mpsc::channel(4);
        let (release, release_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(Self::keep(
            name.to_string(),
            conn,
            key,
            held_tx,
            check_rx,
            release_rx,
        ));
        LockGuard {
            name: name.to_string(),
            inner: LockInner::Postgres {
                held,
                checks,
                _release: release,
            },
        }
    }

    async fn alive(conn: &mut PgConnection) -> bool {
        matches!(
            tokio::time::timeout(
                LOCK_CHECK_TIMEOUT,
                sqlx::query("SELECT 1").execute(&mut *conn)
            )
            .await,
            Ok(Ok(_))
        )
    }

    async fn keep(
        name: String,
        mut conn: PgConnection,
        key: i64,
        held: tokio::sync::watch::Sender<bool>,
        mut checks: tokio::sync::mpsc::Receiver<tokio::sync::oneshot::Sender<bool>>,
        mut release: tokio::sync::oneshot::Receiver<()>,
    ) {
        let mut tick = tokio::time::interval(LOCK_KEEPALIVE);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            let ok = tokio::select! {
                // The guard dropped (or sent, which it never does).
                _ = &mut release => {
                    let _ = tokio::time::timeout(LOCK_CHECK_TIMEOUT, async {
                        let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
                            .bind(key)
                            .execute(&mut conn)
                            .await;
                        let _ = conn.close().await;
                    })
                    .await;
                    held.send_replace(false);
                    return;
                }
                _ = tick.tick() => Self::alive(&mut conn).await,
                Some(reply) = checks.recv() => {
                    let ok = Self::alive(&mut conn).await;
                    let _ = reply.send(ok);
                    ok
                }
            };
            if !ok {
                tracing::warn!(lock = %name, "lost the connection holding an advisory lock");
                held.send_replace(false);
                // Dropping the connection ends the session (and the lock).
                return;
            }
        }
    }
}

/// The SQL text of one namespace, written once per backend.
struct Sql {
    create: String,
    get: String,
    put: String,
    create_only: String,
    cas: String,
    delete: String,
    delete_if: String,
    list: String,
    count: String,
}

impl Sql {
    fn new(table: &str, sqlite: bool) -> Self {
        let (blob, p) = if sqlite {
            ("BLOB", ["?1", "?2", "?3"])
        } else {
            ("BYTEA", ["$1", "$2", "$3"])
        };
        let [p1, p2, p3] = p;
        Sql {
            create: format!(
                "CREATE TABLE IF NOT EXISTS {table} (key TEXT PRIMARY KEY, value {blob} NOT NULL)"
            ),
            get: format!("SELECT value FROM {table} WHERE key = {p1}"),
            put: format!(
                "INSERT INTO {table} (key, value) VALUES ({p1}, {p2}) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value"
            ),
            create_only: format!(
                "INSERT INTO {table} (key, value) VALUES ({p1}, {p2}) ON CONFLICT (key) DO NOTHING"
            ),
            cas: format!("UPDATE {table} SET value = {p3} WHERE key = {p1} AND value = {p2}"),
            delete: format!("DELETE FROM {table} WHERE key = {p1}"),
            delete_if: format!("DELETE FROM {table} WHERE key = {p1} AND value = {p2}"),
            list: format!("SELECT key FROM {table} WHERE key LIKE {p1} ESCAPE '\\' ORDER BY key"),
            count: format!("SELECT COUNT(*) FROM {table} WHERE key LIKE {p1} ESCAPE '\\'"),
        }
    }
}

/// One service's namespace: a flat map of path → bytes.
#[derive(Clone)]
pub struct Storage {
    pool: Pool,
    namespace: Arc<str>,
    sql: Arc<Sql>,
    /// The table, on the in-memory backend.
    mem: Option<MemTable>,
}

/// The span name of a storage operation (no formatting per call).
fn span_name(op: &'static str) -> &'static str {
    match op {
        "get" => "storage.get",
        "put" => "storage.put",
        "create" => "storage.create",
        "cas" => "storage.cas",
        "delete" => "storage.delete",
        "compare_and_delete" => "storage.compare_and_delete",
        "count" => "storage.count",
        "list" => "storage.list",
        _ => "storage",
    }
}

impl Storage {
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Runs one storage operation inside a `storage.<op>` span, recording
    /// its latency (and failure) in the process metrics.
    async fn observed<T>(
        &self,
        op: &'static str,
        fut: impl std::future::Future<Output = Result<T, StorageError>>,
    ) -> Result<T, StorageError> {
        let span = tracing::info_span!(
            "storage",
            otel.name = span_name(op),
            db.system = self.pool.system(),
            db.operation = op,
            bulwark.namespace = %self.namespace,
        );
        let start = std::time::Instant::now();
        let result = fut.instrument(span).await;
        let m = crate::metrics::metrics();
        let labels = [&*self.namespace, op];
        m.storage
            .with_label_values(&labels)
            .observe(start.elapsed().as_secs_f64());
        if result.is_err() {
            m.storage_errors.with_label_values(&labels).inc();
        }
        result
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        self.observed("get", async {
            if let Some(m) = &self.mem {
                return Ok(read(m).get(key).cloned());
            }
            Ok(with_pool!(&self.pool, p => sqlx::query(&self.sql.get)
                .bind(key)
                .fetch_optional(p)
                .await?
                .map(|r| r.get::<Vec<u8>, _>(0))))
        })
        .await
    }

    /// Writes `value` at `key`, replacing what was there.
    pub async fn put(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        self.observed("put", async {
            if let Some(m) = &self.mem {
                write(m).insert(key.to_string(), value.to_vec());
                return Ok(());
            }
            with_pool!(&self.pool, p => sqlx::query(&self.sql.put).bind(key).bind(value).execute(p).await.map(|_| ())?);
            Ok(())
        })
        .await
    }

    /// Writes `value` only if `key` is absent. Returns whether it was written.
    pub async fn create(&self, key: &str, value: &[u8]) -> Result<bool, StorageError> {
        self.observed("create", async {
            if let Some(m) = &self.mem {
                let mut t = write(m);
                if t.contains_key(key) {
                    return Ok(false);
                }
                t.insert(key.to_string(), value.to_vec());
                return Ok(true);
            }
            let n = with_pool!(&self.pool, p => sqlx::query(&self.sql.create_only).bind(key).bind(value).execute(p).await?.rows_affected());
            Ok(n == 1)
        })
        .await
    }

    /// Replaces the value at `key` only if it is still `expected` (byte for
    /// byte). Returns whether it was replaced.
    pub async fn compare_and_swap(
        &self,
        key: &str,
        expected: &[u8],
        value: &[u8],
    ) -> Result<bool, StorageError> {
        self.observed("cas", async {
            if let Some(m) = &self.mem {
                let mut t = write(m);
                return Ok(match t.get_mut(key) {
                    Some(v) if v.as_slice() == expected => {
                        *v = value.to_vec();
                        true
                    }
                    _ => false,
                });
            }
            let n = with_pool!(&self.pool, p => sqlx::query(&self.sql.cas).bind(key).bind(expected).bind(value).execute(p).await?.rows_affected());
            Ok(n == 1)
        })
        .await
    }

    /// Deletes `key`; deleting a missing key is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        self.observed("delete", async {
            if let Some(m) = &self.mem {
                write(m).remove(key);
                return Ok(());
            }
            with_pool!(&self.pool, p => sqlx::query(&self.sql.delete).bind(key).execute(p).await.map(|_| ())?);
            Ok(())
        })
        .await
    }

    /// Deletes `key` only if its value is still `expected` (byte for byte).
    /// Returns whether it was deleted: of several racing callers, one wins.
    pub async fn compare_and_delete(
        &self,
        key: &str,
        expected: &[u8],
    ) -> Result<bool, StorageError> {
        self.observed("compare_and_delete", async {
            if let Some(m) = &self.mem {
                let mut t = write(m);
                if t.get(key).is_some_and(|v| v.as_slice() == expected) {
                    t.remove(key);
                    return Ok(true);
                }
                return Ok(false);
            }
            let n = with_pool!(&self.pool, p => sqlx::query(&self.sql.delete_if).bind(key).bind(expected).execute(p).await?.rows_affected());
            Ok(n == 1)
        })
        .await
    }

    /// How many keys start with `prefix` (at any depth).
    pub async fn count(&self, prefix: &str) -> Result<u64, StorageError> {
        let pattern = format!("{}%", escape_like(prefix));
        self.observed("count", async {
            if let Some(m) = &self.mem {
                return Ok(under(&read(m), prefix).count() as u64);
            }
            let n: i64 = with_pool!(&self.pool, p => sqlx::query(&self.sql.count)
                .bind(pattern)
                .fetch_one(p)
                .await?
                .get::<i64, _>(0));
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    /// The entries directly under `prefix`, Vault style: `a/b` and `a/c/d`
    /// under `a/` list as `b` and `c/`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let pattern = format!("{}%", escape_like(prefix));
        let keys: Vec<String> = self
            .observed("list", async {
                if let Some(m) = &self.mem {
                    return Ok(under(&read(m), prefix).map(|(k, _)| k.clone()).collect());
                }
                Ok(with_pool!(&self.pool, p => sqlx::query(&self.sql.list)
                    .bind(pattern)
                    .fetch_all(p)
                    .await?
                    .into_iter()
                    .map(|r| r.get::<String, _>(0))
                    .collect()))
            })
            .await?;
        let mut out: Vec<String> = Vec::new();
        for key in keys {
            let Some(rest) = key.strip_prefix(prefix) else {
                continue;
            };
            let entry = match rest.find('/') {
                Some(i) => &rest[..=i],
                None => rest,
            };
            if !entry.is_empty() && out.last().map(String::as_str) != Some(entry) {
                out.push(entry.to_string());
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }
}

fn read(
    m: &MemTable,
) -> std::sync::RwLockReadGuard<'_, std::collections::BTreeMap<String, Vec<u8>>> {
    m.read().unwrap_or_else(|e| e.into_inner())
}

fn write(
    m: &MemTable,
) -> std::sync::RwLockWriteGuard<'_, std::collections::BTreeMap<String, Vec<u8>>> {
    m.write().unwrap_or_else(|e| e.into_inner())
}

/// The entries of an in-memory table whose keys start with `prefix`, in order.
fn under<'a>(
    t: &'a std::collections::BTreeMap<String, Vec<u8>>,
    prefix: &'a str,
) -> impl Iterator<Item = (&'a String, &'a Vec<u8>)> + 'a {
    t.range::<str, _>((
        std::ops::Bound::Included(prefix),
        std::ops::Bound::Unbounded,
    ))
    .take_while(move |(k, _)| k.starts_with(prefix))
}

fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Helpers for tests that need a real PostgreSQL: a fresh database per call on
/// the machine's server, dropped when the guard goes.
#[cfg(any(test, feature = "test-util"))]
pub mod test_util {
    use super::*;

    /// The server tests use: `BULWARK_TEST_PG_URL`, else the local trust-auth one.
    pub fn pg_admin_url() -> String {
        std::env::var("BULWARK_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
    }

    /// A throwaway database; dropped (with its connections) on drop.
    pub struct TestPg {
        pub url: String,
        name: String,
    }

    impl TestPg {
        pub async fn new() -> TestPg {
            let admin = pg_admin_url();
            let name = format!("bulwark_test_{}", uuid::Uuid::new_v4().simple());
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .connect(&admin)
                .await
                .unwrap_or_else(|e| panic!("tests need PostgreSQL at {admin}: {e}"));
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(&pool)
                .await
                .expect("create test database");
            pool.close().await;
            let base = admin.rsplit_once('/').map(|(b, _)| b).unwrap_or(&admin);
            TestPg {
                url: format!("{base}/{name}"),
                name,
            }
        }

        pub fn config(&self) -> StorageConfig {
            StorageConfig::Postgres {
                url: self.url.clone(),
                max_connections: 4,
                table_prefix: DEFAULT_TABLE_PREFIX.into(),
            }
        }
    }

    impl Drop for TestPg {
        fn drop(&mut self) {
            let name = self.name.clone();
            let admin = pg_admin_url();
            // Drop may run inside a runtime: do the async work on a thread of its own.
            let _ = std::thread::spawn(move || {
                let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                rt.block_on(async move {
                    if let Ok(pool) = PgPoolOptions::new()
                        .max_connections(1)
                        .connect(&admin)
                        .await
                    {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(&pool)
                                .await;
                        pool.close().await;
                    }
                });
            })
            .join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::TestPg;
    use super::*;

    async fn suite(db: Database) {
        assert!(db.namespace("Bad-Name").await.is_err());
        let a = db.namespace("alpha").await.unwrap();
        let b = db.namespace("beta").await.unwrap();
        assert_eq!(a.get("x").await.unwrap(), None);
        a.put("x", b"one").await.unwrap();
        assert_eq!(a.get("x").await.unwrap().as_deref(), Some(&b"one"[..]));
        // Namespaces are separate.
        assert_eq!(b.get("x").await.unwrap(), None);
        a.put("x", b"two").await.unwrap();
        assert_eq!(a.get("x").await.unwrap().as_deref(), Some(&b"two"[..]));
        // create-only and compare-and-swap.
        assert!(!a.create("x", b"three").await.unwrap());
        assert!(a.create("y", b"three").await.unwrap());
        assert!(!a.compare_and_swap("x", b"nope", b"four").await.unwrap());
        assert!(a.compare_and_swap("x", b"two", b"four").await.unwrap());
        assert_eq!(a.get("x").await.unwrap().as_deref(), Some(&b"four"[..]));
        // Listing is one level deep, folders end in '/', LIKE wildcards are literal.
        for k in ["dir/a", "dir/b/c", "dir/b/d", "dir_x", "dir%/z", "other"] {
            a.put(k, b"v").await.unwrap();
        }
        assert_eq!(a.list("dir/").await.unwrap(), vec!["a", "b/"]);
        assert_eq!(a.list("dir%/").await.unwrap(), vec!["z"]);
        assert_eq!(
            a.list("").await.unwrap(),
            vec!["dir%/", "dir/", "dir_x", "other", "x", "y"]
        );
        assert!(a.list("missing/").await.unwrap().is_empty());
        a.delete("x").await.unwrap();
        a.delete("x").await.unwrap();
        assert_eq!(a.get("x").await.unwrap(), None);
        // Binary values survive untouched.
        let bin: Vec<u8> = (0..=255).collect();
        a.put("bin", &bin).await.unwrap();
        assert_eq!(a.get("bin").await.unwrap(), Some(bin));
    }

    #[tokio::test]
    async fn table_prefixes_keep_deployments_apart() {
        let pg = test_util::TestPg::new().await;
        let with = |prefix: &str| StorageConfig::Postgres {
            url: pg.url.clone(),
            max_connections: 2,
            table_prefix: prefix.into(),
        };
        let a = Database::connect(&with("one_")).await.unwrap();
        let b = Database::connect(&with("two_")).await.unwrap();
        a.namespace("kv")
            .await
            .unwrap()
            .put("k", b"a")
            .await
            .unwrap();
        b.namespace("kv")
            .await
            .unwrap()
            .put("k", b"b")
            .await
            .unwrap();
        assert_eq!(
            a.namespace("kv").await.unwrap().get("k").await.unwrap(),
            Some(b"a".to_vec())
        );
        // Each deployment has its own singleton lock.
        let _la = a.try_lock("leases").await.unwrap().expect("a's lock");
        assert!(b.try_lock("leases").await.unwrap().is_some());
        assert!(Database::connect(&with("Bad")).await.is_err());
    }

    #[tokio::test]
    async fn memory() {
        let db = Database::connect(&StorageConfig::Memory).await.unwrap();
        assert_eq!(db.kind(), "inmem");
        suite(db.clone()).await;
        // A namespace opened again is the same table.
        db.namespace("alpha")
            .await
            .unwrap()
            .put("again", b"1")
            .await
            .unwrap();
        assert_eq!(
            db.namespace("alpha")
                .await
                .unwrap()
                .get("again")
                .await
                .unwrap(),
            Some(b"1".to_vec())
        );
        // Another in-memory database shares nothing, locks included.
        let other = Database::connect(&StorageConfig::Memory).await.unwrap();
        assert_eq!(
            other
                .namespace("alpha")
                .await
                .unwrap()
                .get("again")
                .await
                .unwrap(),
            None
        );
        let _l = db.try_lock("leases").await.unwrap().expect("lock");
        assert!(db.try_lock("leases").await.unwrap().is_none());
        assert!(other.try_lock("leases").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn sqlite_memory() {
        suite(
            Database::connect(&StorageConfig::SqliteMemory)
                .await
                .unwrap(),
        )
        .await;
    }

    #[tokio::test]
    async fn sqlite_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db").to_string_lossy().to_string();
        let db = Database::connect(&StorageConfig::Sqlite { path: path.clone() })
            .await
            .unwrap();
        assert_eq!(db.kind(), "sqlite");
        suite(db.clone()).await;
        db.close().await;
        // Data survives reopening the file.
        let db = Database::connect(&StorageConfig::Sqlite { path })
            .await
            .unwrap();
        let a = db.namespace("alpha").await.unwrap();
        assert_eq!(a.get("y").await.unwrap().as_deref(), Some(&b"three"[..]));
    }

    #[tokio::test]
    async fn sqlite_locks_are_exclusive_per_database() {
        let db = Database::connect(&StorageConfig::SqliteMemory)
            .await
            .unwrap();
        let other = Database::connect(&StorageConfig::SqliteMemory)
            .await
            .unwrap();
        let g = db.try_lock("job").await.unwrap().expect("free");
        assert!(g.is_held() && g.check().await);
        assert_eq!(g.name(), "job");
        assert!(db.try_lock("job").await.unwrap().is_none());
        // A clone of the same database shares its locks.
        assert!(db.clone().try_lock("job").await.unwrap().is_none());
        // Another name, or another database, is another lock.
        let _g2 = db.try_lock("other").await.unwrap().expect("free");
        let _g3 = other.try_lock("job").await.unwrap().expect("free");
        drop(g);
        assert!(db.try_lock("job").await.unwrap().is_some());

        // One file opened twice is one scope.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.db").to_string_lossy().to_string();
        let a = Database::connect(&StorageConfig::Sqlite { path: path.clone() })
            .await
            .unwrap();
        let b = Database::connect(&StorageConfig::Sqlite {
            path: format!("{}/./l.db", dir.path().display()),
        })
        .await
        .unwrap();
        let ga = a.try_lock("job").await.unwrap().expect("free");
        assert!(b.try_lock("job").await.unwrap().is_none());
        drop(ga);
        assert!(b.try_lock("job").await.unwrap().is_some());
    }

    /// Polls `db.try_lock(name)` until it succeeds (or gives up after 10 s).
    async fn take_eventually(db: &Database, name: &str) -> LockGuard {
        for _ in 0..200 {
            if let Some(g) = db.try_lock(name).await.unwrap() {
                return g;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("lock {name} never became free");
    }

    #[tokio::test]
    async fn postgres_advisory_locks() {
        let pg = TestPg::new().await;
        // Two "replicas": separate pools on one database.
        let a = Database::connect(&pg.config()).await.unwrap();
        let b = Database::connect(&pg.config()).await.unwrap();
        let ga = a.try_lock("bulwark/test").await.unwrap().expect("free");
        assert!(ga.is_held() && ga.check().await);
        assert!(format!("{ga:?}").contains("postgresql"));
        assert!(b.try_lock("bulwark/test").await.unwrap().is_none());
        // Not reentrant, even in the same process.
        assert!(a.try_lock("bulwark/test").await.unwrap().is_none());
        let _other = b.try_lock("bulwark/other").await.unwrap().expect("free");

        // Released on drop: the other replica takes it.
        drop(ga);
        let gb = take_eventually(&b, "bulwark/test").await;
        assert!(a.try_lock("bulwark/test").await.unwrap().is_none());

        // The holder's session dies: the holder notices, the lock is free.
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(&pg.url)
            .await
            .unwrap();
        let killed: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_locks \
             WHERE locktype = 'advisory' AND objsubid = 1 \
               AND ((classid::bigint << 32) | objid::bigint) = $1 \
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .bind(advisory_key(&format!("{DEFAULT_TABLE_PREFIX}bulwark/test")))
        .fetch_all(&admin)
        .await
        .unwrap();
        assert_eq!(killed, [true]);
        assert!(!gb.check().await);
        assert!(!gb.is_held());
        tokio::time::timeout(Duration::from_secs(1), gb.lost())
            .await
            .expect("lost() completes once the lock is lost");
        let ga = take_eventually(&a, "bulwark/test").await;
        assert!(ga.is_held());
        admin.close().await;
    }

    #[tokio::test]
    async fn postgres() {
        let pg = TestPg::new().await;
        let db = Database::connect(&pg.config()).await.unwrap();
        assert_eq!(db.kind(), "postgresql");
        suite(db.clone()).await;
        db.close().await;
    }
}
