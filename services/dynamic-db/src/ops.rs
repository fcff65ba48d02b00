//! What runs in the managed databases: statements in one transaction, the
//! user-exists checks, and the default revocation of each plugin.
//!
//! Statements run over the simple query protocol (`raw_sql`): never
//! prepared, so a statement holding a password is never cached by the
//! driver. Errors are the driver's; callers redact them
//! ([`crate::conn::Redactor`]).

use sqlx::mysql::MySqlPool;
use sqlx::postgres::PgPool;
use std::future::Future;
use std::pin::Pin;

use sqlx::{Acquire, Executor};
use zeroize::Zeroizing;

use crate::conn::DbPool;
use crate::sql::{my_literal, pg_ident};

/// A boxed `Send` future. Boxing pins down the lifetimes of the driver's
/// executors, which the compiler otherwise cannot prove `Send` for in
/// spawned tasks.
pub type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Runs `statements` in one transaction: all or nothing (as far as the
/// database allows: MySQL commits DDL such as `CREATE USER` at once).
pub fn exec_tx<'a>(
    pool: &'a DbPool,
    statements: &'a [Zeroizing<String>],
) -> Boxed<'a, Result<(), sqlx::Error>> {
    Box::pin(async move {
        // One body per driver: a generic one over `sqlx::Database` trips the
        // compiler's `Send` inference for spawned tasks.
        macro_rules! in_tx {
            ($pool:expr) => {{
                let mut conn = $pool.acquire().await?;
                let mut tx = conn.begin().await?;
                for statement in statements {
                    (&mut *tx)
                        .execute(sqlx::raw_sql(statement.as_str()))
                        .await?;
                }
                tx.commit().await
            }};
        }
        match pool {
            DbPool::Pg(p) => in_tx!(p),
            DbPool::My(p) => in_tx!(p),
        }
    })
}

/// Runs each statement on its own, carrying on after a failure; returns the
/// last failure, if any (a rollback must remove as much as it can).
pub fn exec_each<'a>(
    pool: &'a DbPool,
    statements: &'a [Zeroizing<String>],
) -> Boxed<'a, Option<sqlx::Error>> {
    Box::pin(async move {
        let mut last = None;
        for statement in statements {
            let result = match pool {
                DbPool::Pg(p) => p.execute(sqlx::raw_sql(statement.as_str())).await.map(drop),
                DbPool::My(p) => p.execute(sqlx::raw_sql(statement.as_str())).await.map(drop),
            };
            if let Err(e) = result {
                last = Some(e);
            }
        }
        last
    })
}

/// Whether a database user named `name` exists (MySQL: with any host). A
/// MySQL root without access to `mysql.user` cannot tell: that counts as
/// existing.
pub fn user_exists<'a>(pool: &'a DbPool, name: &'a str) -> Boxed<'a, Result<bool, sqlx::Error>> {
    Box::pin(async move {
        match pool {
            DbPool::Pg(p) => {
                sqlx::query_scalar::<_, bool>(
                    "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
                )
                .bind(name)
                .fetch_one(p)
                .await
            }
            DbPool::My(p) => match my_hosts(p, name).await {
                Ok(hosts) => Ok(!hosts.is_empty()),
                Err(sqlx::Error::Database(_)) => Ok(true),
                Err(e) => Err(e),
            },
        }
    })
}

pub fn my_hosts<'a>(
    pool: &'a MySqlPool,
    name: &'a str,
) -> Boxed<'a, Result<Vec<String>, sqlx::Error>> {
    Box::pin(async move {
        sqlx::query_scalar::<_, String>("SELECT CAST(Host AS CHAR) FROM mysql.user WHERE User = ?")
            .bind(name)
            .fetch_all(pool)
            .await
    })
}

/// The default revocation of the plugin behind `pool`. A user already gone
/// is success.
pub fn default_revoke<'a>(pool: &'a DbPool, name: &'a str) -> Boxed<'a, Result<(), sqlx::Error>> {
    Box::pin(async move {
        match pool {
            DbPool::Pg(p) => pg_default_revoke(p, name).await,
            DbPool::My(p) => my_default_revoke(p, name).await,
        }
    })
}

/// Vault's PostgreSQL revocation, made thorough: in every user schema,
/// revoke everything on tables, sequences and functions and the schema
/// itself; revoke on the database; end the user's sessions; hand what it
/// owns to the connection's user and drop the rest of its privileges; then
/// `DROP ROLE IF EXISTS`. Only the last step's failure is an error: the
/// others remove what they can (and need privileges the connection may not
/// have).
fn pg_default_revoke<'a>(pool: &'a PgPool, name: &'a str) -> Boxed<'a, Result<(), sqlx::Error>> {
    Box::pin(async move {
        let mut conn = pool.acquire().await?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
                .bind(name)
                .fetch_one(&mut *conn)
                .await?;
        if !exists {
            return Ok(());
        }
        let user = pg_ident(name);
        let schemas: Vec<String> = sqlx::query_scalar(
            "SELECT nspname::text FROM pg_namespace \
         WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'",
        )
        .fetch_all(&mut *conn)
        .await?;
        let mut statements = Vec::new();
        for schema in &schemas {
            let s = pg_ident(schema);
            statements.push(format!(
                "REVOKE ALL PRIVILEGES ON ALL TABLES IN SCHEMA {s} FROM {user}"
            ));
            statements.push(format!(
                "REVOKE ALL PRIVILEGES ON ALL SEQUENCES IN SCHEMA {s} FROM {user}"
            ));
            statements.push(format!(
                "REVOKE ALL PRIVILEGES ON ALL FUNCTIONS IN SCHEMA {s} FROM {user}"
            ));
            statements.push(format!("REVOKE ALL PRIVILEGES ON SCHEMA {s} FROM {user}"));
        }
        let database: String = sqlx::query_scalar("SELECT current_database()::text")
            .fetch_one(&mut *conn)
            .await?;
        statements.push(format!(
            "REVOKE ALL PRIVILEGES ON DATABASE {} FROM {user}",
            pg_ident(&database)
        ));
        statements.push(format!("REASSIGN OWNED BY {user} TO CURRENT_USER"));
        statements.push(format!("DROP OWNED BY {user}"));
        for statement in &statements {
            // Best effort, as Vault: remove as much access as possible.
            let _ = (&mut *conn).execute(sqlx::raw_sql(statement)).await;
        }
        let _ = sqlx::query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
        )
        .bind(name)
        .execute(&mut *conn)
        .await;
        let drop_role = format!("DROP ROLE IF EXISTS {user}");
        (&mut *conn).execute(sqlx::raw_sql(&drop_role)).await?;
        Ok(())
    })
}

/// MySQL: revoke everything and drop the user at every host it exists
/// with (`'%'` when `mysql.user` cannot be read).
fn my_default_revoke<'a>(pool: &'a MySqlPool, name: &'a str) -> Boxed<'a, Result<(), sqlx::Error>> {
    Box::pin(async move {
        let hosts = match my_hosts(pool, name).await {
            Ok(hosts) => hosts,
            Err(sqlx::Error::Database(_)) => vec!["%".to_string()],
            Err(e) => return Err(e),
        };
        for host in hosts {
            let account = format!("{}@{}", my_literal(name), my_literal(&host));
            let revoke = format!("REVOKE ALL PRIVILEGES, GRANT OPTION FROM {account}");
            let _ = pool.execute(sqlx::raw_sql(&revoke)).await;
            let drop_user = format!("DROP USER IF EXISTS {account}");
            pool.execute(sqlx::raw_sql(&drop_user)).await?;
        }
        Ok(())
    })
}
