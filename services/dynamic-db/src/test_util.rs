//! Test helpers: [`PrivatePg`], a private PostgreSQL cluster with password
//! (SCRAM) authentication, public behind the `test-util` feature as
//! `bulwark_dynamic_db::testing::PrivatePg`; and, for this crate's own
//! tests, a store over in-memory SQLite and MariaDB helpers.
//!
//! The machine's PostgreSQL on 127.0.0.1:5432 trusts every local
//! connection, so it cannot tell a right password from a wrong one; the
//! private cluster can.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::{ConnectOptions, Row};
use zeroize::Zeroizing;

use crate::conn::percent_encode;
use crate::template;

/// A throwaway PostgreSQL cluster (`initdb` + `pg_ctl` from
/// `pg_config --bindir`, or `$BULWARK_PG_BINDIR`) in a temporary
/// directory, listening on 127.0.0.1 on a free port, with the superuser
/// `postgres` and a random password (`scram-sha-256` for every
/// connection). Stopped and deleted on drop.
///
/// When the tests run as root (which `initdb` refuses), the cluster runs as
/// the `postgres` system user through `runuser`.
///
/// Starting, stopping and restarting block the calling thread for a second
/// or two.
pub struct PrivatePg {
    dir: tempfile::TempDir,
    bindir: PathBuf,
    port: u16,
    password: Zeroizing<String>,
    run_as: Option<String>,
    running: AtomicBool,
}

impl std::fmt::Debug for PrivatePg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrivatePg")
            .field("dir", &self.dir.path())
            .field("port", &self.port)
            .field("running", &self.running.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl PrivatePg {
    /// Creates and starts a cluster. Panics if PostgreSQL's server binaries
    /// are missing or the cluster does not start.
    pub fn start() -> PrivatePg {
        let bindir = bindir();
        let dir = tempfile::Builder::new()
            .prefix("bulwark-pg-")
            .tempdir()
            .expect("temporary directory for PostgreSQL");
        let run_as = running_as_root().then(|| "postgres".to_string());
        if let Some(user) = &run_as {
            let (uid, gid) = ids_of(user);
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .expect("hand the cluster directory to the postgres user");
        }
        let password = Zeroizing::new(template::random_alnum(24));
        let pwfile = dir.path().join("pwfile");
        std::fs::write(&pwfile, password.as_bytes()).expect("write the password file");
        std::fs::set_permissions(&pwfile, std::fs::Permissions::from_mode(0o644))
            .expect("password file mode");
        let mut pg = PrivatePg {
            bindir,
            port: 0,
            password,
            run_as,
            running: AtomicBool::new(false),
            dir,
        };
        let data = pg.data_dir();
        let out = pg
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "-A",
                "scram-sha-256",
                "-E",
                "UTF8",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::remove_file(&pwfile);
        // A free port can be taken between the probe and the start: retry.
        let mut last = String::new();
        for _ in 0..5 {
            pg.port = free_port();
            match pg.try_start() {
                Ok(()) => return pg,
                Err(e) => last = e,
            }
        }
        panic!("PostgreSQL did not start: {last}");
    }

    /// The port the cluster listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The superuser's (`postgres`) password.
    pub fn superuser_password(&self) -> &str {
        &self.password
    }

    /// A URL for `user` with `password` (both URL-encoded) to the
    /// `postgres` database.
    pub fn url(&self, user: &str, password: &str) -> String {
        format!(
            "postgresql://{}:{}@127.0.0.1:{}/postgres?sslmode=disable",
            percent_encode(user),
            percent_encode(password),
            self.port
        )
    }

    /// The superuser's URL.
    pub fn superuser_url(&self) -> String {
        self.url("postgres", &self.password)
    }

    /// A Vault `connection_url` for this cluster, with `{{username}}` and
    /// `{{password}}` placeholders.
    pub fn template_url(&self) -> String {
        format!(
            "postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }

    /// One connection as `user` with `password` (the error tells why not:
    /// `password authentication failed …`, or refused while stopped).
    pub async fn connect_as(
        &self,
        user: &str,
        password: &str,
    ) -> Result<PgConnection, sqlx::Error> {
        PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .database("postgres")
            .username(user)
            .password(password)
            .disable_statement_logging()
            .connect()
            .await
    }

    /// Runs `sql` (one or more statements, simple query protocol) as the
    /// superuser and returns the rows of its results, every value in its
    /// text form (`None` for NULL).
    pub async fn query(&self, sql: &str) -> Result<Vec<Vec<Option<String>>>, sqlx::Error> {
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(
                PgConnectOptions::new()
                    .host("127.0.0.1")
                    .port(self.port)
                    .database("postgres")
                    .username("postgres")
                    .password(&self.password)
                    .disable_statement_logging(),
            )
            .await?;
        let rows = sqlx::raw_sql(sql).fetch_all(&pool).await;
        pool.close().await;
        Ok(rows?
            .iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| row.try_get_unchecked::<Option<String>, _>(i).ok().flatten())
                    .collect()
            })
            .collect())
    }

    /// Whether a role named `name` exists (`pg_roles`).
    pub async fn role_exists(&self, name: &str) -> bool {
        let rows = self
            .query(&format!(
                "SELECT 1 FROM pg_roles WHERE rolname = '{}'",
                name.replace('\'', "''")
            ))
            .await
            .expect("query pg_roles");
        !rows.is_empty()
    }

    /// Stops the cluster (fast shutdown: sessions are ended). Its data stay.
    pub fn stop(&self) {
        if !self.running.swap(false, Ordering::SeqCst) {
            return;
        }
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "fast", "-w", "-t", "60", "stop"])
            .output()
            .expect("run pg_ctl stop");
        assert!(
            out.status.success(),
            "pg_ctl stop failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the cluster again after [`PrivatePg::stop`], on the same port.
    pub fn start_again(&self) {
        if self.running.load(Ordering::SeqCst) {
            return;
        }
        if let Err(e) = self.try_start() {
            panic!("PostgreSQL did not start again: {e}");
        }
    }

    /// Whether the cluster is running.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn try_start(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50",
            self.port,
            self.dir.path().display()
        );
        let out = self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.dir.path().join("log"))
            .arg("-o")
            .arg(options)
            .args(["-w", "-t", "60", "start"])
            .output()
            .map_err(|e| format!("run pg_ctl: {e}"))?;
        if out.status.success() {
            self.running.store(true, Ordering::SeqCst);
            Ok(())
        } else {
            let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
            Err(format!(
                "{}{}\n{log}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// A command for one of PostgreSQL's binaries, as the cluster's user.
    fn command(&self, program: &str) -> Command {
        let path = self.bindir.join(program);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.arg("-u").arg(user).arg("--").arg(path);
                c
            }
            None => Command::new(path),
        };
        // The cluster's user must be able to enter the working directory.
        cmd.current_dir(self.dir.path());
        cmd
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        if self.running.swap(false, Ordering::SeqCst) {
            let _ = self
                .command("pg_ctl")
                .arg("-D")
                .arg(self.data_dir())
                .args(["-m", "immediate", "-w", "stop"])
                .output();
        }
    }
}

fn bindir() -> PathBuf {
    if let Ok(dir) = std::env::var("BULWARK_PG_BINDIR") {
        return PathBuf::from(dir);
    }
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .expect("tests need PostgreSQL's server binaries (pg_config --bindir)");
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        dir.join("initdb").exists(),
        "no initdb in {} (set BULWARK_PG_BINDIR)",
        dir.display()
    );
    dir
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn ids_of(user: &str) -> (u32, u32) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .arg(flag)
            .arg(user)
            .output()
            .expect("run id");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no system user {user:?} to run PostgreSQL as"))
    };
    (id("-u"), id("-g"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

// === this crate's own tests ===

#[cfg(test)]
pub(crate) use crate_tests::*;

#[cfg(test)]
mod crate_tests {
    use std::sync::Arc;

    use bulwark_shared::barrier::Barrier;
    use bulwark_shared::keyring::Keyring;
    use bulwark_shared::storage::{Database, Storage, StorageConfig};
    use sqlx::mysql::MySqlPoolOptions;
    use sqlx::MySqlPool;
    use zeroize::Zeroizing;

    use crate::store::DbStore;

    pub(crate) struct Harness {
        pub _db: Database,
        pub store: Arc<DbStore>,
        pub raw: Storage,
    }

    /// A store over a fresh in-memory database, unsealed.
    pub(crate) async fn harness() -> Harness {
        let db = Database::connect(&StorageConfig::SqliteMemory)
            .await
            .expect("in-memory database");
        let keyring = Keyring::new();
        keyring.install(1, [(1, Zeroizing::new([9u8; 32]))]);
        let raw = db
            .namespace(bulwark_shared::ServiceName::DynamicDb.namespace())
            .await
            .expect("namespace");
        let store = Arc::new(DbStore::new(Barrier::new(raw.clone(), keyring)));
        Harness {
            _db: db,
            store,
            raw,
        }
    }

    /// The machine's MariaDB: root, no password, over TCP.
    pub(crate) const MARIADB_ROOT: &str = "mysql://root@127.0.0.1:3306/";

    pub(crate) async fn mariadb() -> MySqlPool {
        MySqlPoolOptions::new()
            .max_connections(2)
            .connect(MARIADB_ROOT)
            .await
            .expect("tests need MariaDB on 127.0.0.1:3306 (root, no password)")
    }

    /// Every key stored in `raw`, sorted.
    pub(crate) async fn raw_keys(raw: &Storage) -> Vec<String> {
        let mut keys = Vec::new();
        let mut folders = vec![String::new()];
        while let Some(folder) = folders.pop() {
            for entry in raw.list(&folder).await.expect("list") {
                let key = format!("{folder}{entry}");
                if entry.ends_with('/') {
                    folders.push(key);
                } else {
                    keys.push(key);
                }
            }
        }
        keys.sort();
        keys
    }

    /// A unique, short name for things the tests create.
    pub(crate) fn unique(prefix: &str) -> String {
        format!(
            "{prefix}{}",
            crate::template::random_alnum(8).to_lowercase()
        )
    }
}
