//! Storage: one key/value interface over sqlx with two backends, an SQLite file
//! (the embedded default, `:memory:` for `-dev`) and PostgreSQL (production,
//! shared by replicas). Each service gets its own namespace, a table of its own
//! (`bulwark_<namespace>`); no service reads another's rows.
//!
//! Values stored here are opaque bytes. Services never write plaintext through
//! this layer directly: they go through [`crate::barrier::Barrier`], which seals
//! every value with the service's own key. Keys (paths) stay plaintext, as in Vault.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::Row;

/// Where a process keeps its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageConfig {
    /// SQLite file at this path (created if missing).
    Sqlite { path: String },
    /// SQLite in memory: lost at exit. For `-dev` and tests.
    SqliteMemory,
    /// PostgreSQL at this URL (`postgres://user:pass@host:port/db`).
    Postgres { url: String, max_connections: u32 },
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid storage namespace {0:?}")]
    BadNamespace(String),
    #[error("storage error: {0}")]
    Db(#[from] sqlx::Error),
}

#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs `$body` with `$p` bound to whichever pool this database uses.
macro_rules! with_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            Pool::Sqlite($p) => $body,
            Pool::Postgres($p) => $body,
        }
    };
}

/// A connection pool to the configured backend; hands out namespaces.
#[derive(Clone)]
pub struct Database {
    pool: Pool,
}

impl Database {
    pub async fn connect(cfg: &StorageConfig) -> Result<Self, StorageError> {
        let pool = match cfg {
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
            } => Pool::Postgres(
                PgPoolOptions::new()
                    .max_connections((*max_connections).max(1))
                    .acquire_timeout(Duration::from_secs(10))
                    .connect(url)
                    .await?,
            ),
        };
        Ok(Database { pool })
    }

    /// `"sqlite"` or `"postgresql"`, as `sys/seal-status` reports `storage_type`.
    pub fn kind(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgresql",
        }
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
        let table = format!("bulwark_{name}");
        let sql = Sql::new(&table, matches!(self.pool, Pool::Sqlite(_)));
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
        })
    }

    /// Closes the pool.
    pub async fn close(&self) {
        with_pool!(&self.pool, p => p.close().await)
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
        }
    }
}

/// One service's namespace: a flat map of path → bytes.
#[derive(Clone)]
pub struct Storage {
    pool: Pool,
    namespace: Arc<str>,
    sql: Arc<Sql>,
}

impl Storage {
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let value = with_pool!(&self.pool, p => sqlx::query(&self.sql.get)
            .bind(key)
            .fetch_optional(p)
            .await?
            .map(|r| r.get::<Vec<u8>, _>(0)));
        Ok(value)
    }

    /// Writes `value` at `key`, replacing what was there.
    pub async fn put(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        with_pool!(&self.pool, p => sqlx::query(&self.sql.put).bind(key).bind(value).execute(p).await.map(|_| ())?);
        Ok(())
    }

    /// Writes `value` only if `key` is absent. Returns whether it was written.
    pub async fn create(&self, key: &str, value: &[u8]) -> Result<bool, StorageError> {
        let n = with_pool!(&self.pool, p => sqlx::query(&self.sql.create_only).bind(key).bind(value).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    /// Replaces the value at `key` only if it is still `expected` (byte for
    /// byte). Returns whether it was replaced.
    pub async fn compare_and_swap(
        &self,
        key: &str,
        expected: &[u8],
        value: &[u8],
    ) -> Result<bool, StorageError> {
        let n = with_pool!(&self.pool, p => sqlx::query(&self.sql.cas).bind(key).bind(expected).bind(value).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    /// Deletes `key`; deleting a missing key is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), StorageError> {
        with_pool!(&self.pool, p => sqlx::query(&self.sql.delete).bind(key).execute(p).await.map(|_| ())?);
        Ok(())
    }

    /// Deletes `key` only if its value is still `expected` (byte for byte).
    /// Returns whether it was deleted: of several racing callers, one wins.
    pub async fn compare_and_delete(
        &self,
        key: &str,
        expected: &[u8],
    ) -> Result<bool, StorageError> {
        let n = with_pool!(&self.pool, p => sqlx::query(&self.sql.delete_if).bind(key).bind(expected).execute(p).await?.rows_affected());
        Ok(n == 1)
    }

    /// The entries directly under `prefix`, Vault style: `a/b` and `a/c/d`
    /// under `a/` list as `b` and `c/`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let pattern = format!("{}%", escape_like(prefix));
        let keys: Vec<String> = with_pool!(&self.pool, p => sqlx::query(&self.sql.list)
            .bind(pattern)
            .fetch_all(p)
            .await?
            .into_iter()
            .map(|r| r.get::<String, _>(0))
            .collect());
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
    async fn postgres() {
        let pg = TestPg::new().await;
        let db = Database::connect(&pg.config()).await.unwrap();
        assert_eq!(db.kind(), "postgresql");
        suite(db.clone()).await;
        db.close().await;
    }
}
