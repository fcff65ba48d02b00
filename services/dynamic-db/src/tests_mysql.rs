//! The engine against the machine's MariaDB (127.0.0.1:3306, root without a
//! password). Every test makes its own users and database, with unique
//! names, and drops them when it ends (also when it fails).

use bulwark_proto::dynamicdb::v1 as pb;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection};
use sqlx::{ConnectOptions, MySqlPool};

use crate::error::DbError;
use crate::test_util::{harness, mariadb, unique, MARIADB_ROOT};

const MOUNT: &str = "5d1c-mysql-mount";
const DSN: &str = "{{username}}:{{password}}@tcp(127.0.0.1:3306)/";

/// Drops what a test made, when it ends.
struct Cleanup {
    users: Vec<String>,
    databases: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let users = std::mem::take(&mut self.users);
        let databases = std::mem::take(&mut self.databases);
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(pool) = MySqlPool::connect(MARIADB_ROOT).await else {
                    return;
                };
                for u in users {
                    let _ = sqlx::raw_sql(&format!("DROP USER IF EXISTS '{u}'@'%'"))
                        .execute(&pool)
                        .await;
                }
                for d in databases {
                    let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS `{d}`"))
                        .execute(&pool)
                        .await;
                }
                pool.close().await;
            });
        })
        .join();
    }
}

async fn exec(pool: &MySqlPool, sql: &str) {
    sqlx::raw_sql(sql)
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn connect_as(user: &str, password: &str) -> Result<MySqlConnection, sqlx::Error> {
    MySqlConnectOptions::new()
        .host("127.0.0.1")
        .port(3306)
        .username(user)
        .password(password)
        .disable_statement_logging()
        .connect()
        .await
}

async fn users_like(pool: &MySqlPool, pattern: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT CAST(User AS CHAR) FROM mysql.user WHERE User LIKE ?")
        .bind(pattern)
        .fetch_all(pool)
        .await
        .unwrap()
}

/// An admin user (all privileges, with grant option) and a database with a
/// table `items` holding two rows.
async fn setup(pool: &MySqlPool, cleanup: &mut Cleanup) -> (String, String, String) {
    let admin = unique("bwroot_");
    let db = unique("bwdb_");
    cleanup.users.push(admin.clone());
    cleanup.databases.push(db.clone());
    let password = "Init-Pass-1234567890".to_string();
    exec(
        pool,
        &format!("CREATE USER '{admin}'@'%' IDENTIFIED BY '{password}'"),
    )
    .await;
    exec(
        pool,
        &format!("GRANT ALL PRIVILEGES ON *.* TO '{admin}'@'%' WITH GRANT OPTION"),
    )
    .await;
    exec(pool, &format!("CREATE DATABASE `{db}`")).await;
    exec(pool, &format!("CREATE TABLE `{db}`.items (id int)")).await;
    exec(pool, &format!("INSERT INTO `{db}`.items VALUES (1), (2)")).await;
    (admin, password, db)
}

fn config(user: &str, password: &str, allowed: &[&str]) -> pb::ConnectionConfig {
    pb::ConnectionConfig {
        plugin_name: "mysql-database-plugin".into(),
        connection_url: DSN.into(),
        username: user.into(),
        password: password.into(),
        allowed_roles: allowed.iter().map(|s| s.to_string()).collect(),
        verify_connection: true,
        ..Default::default()
    }
}

fn role(name: &str, creation: &str) -> pb::Role {
    pb::Role {
        name: name.into(),
        db_name: "my".into(),
        creation_statements: vec![creation.into()],
        ..Default::default()
    }
}

fn creds_req(role: &str) -> pb::CreateCredentialsRequest {
    pb::CreateCredentialsRequest {
        mount: MOUNT.into(),
        role: role.into(),
        display_name: "token".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn mysql_credentials_lifecycle() {
    let pool = mariadb().await;
    let mut cleanup = Cleanup {
        users: Vec::new(),
        databases: Vec::new(),
    };
    let (admin, password, db) = setup(&pool, &mut cleanup).await;
    let h = harness().await;
    let s = &h.store;

    // A wrong password: refused with the server's reason, redacted.
    let e = s
        .write_config(MOUNT, "my", config(&admin, "Wrong-Pass-55555", &["*"]))
        .await
        .unwrap_err();
    assert!(matches!(e, DbError::Invalid(_)), "{e:?}");
    assert!(e.to_string().contains("Access denied"), "{e}");
    assert!(!e.to_string().contains("Wrong-Pass-55555"), "{e}");

    // The mysql:// URL form works as well as Go's DSN; aliases are accepted.
    let mut url = config("", "", &["*"]);
    url.connection_url = MARIADB_ROOT.into();
    url.plugin_name = "mysql-rds-database-plugin".into();
    s.write_config(MOUNT, "url", url).await.unwrap();

    let mut c = config(&admin, &password, &["ro", "fail-*", "dflt"]);
    c.username_template = "{{.RoleName}}-{{random 10}}".into();
    s.write_config(MOUNT, "my", c).await.unwrap();
    let ro = format!(
        "CREATE USER '{{{{name}}}}'@'%' IDENTIFIED BY '{{{{password}}}}'; \
         GRANT SELECT ON `{db}`.* TO '{{{{name}}}}'@'%';"
    );
    s.write_role(MOUNT, role("ro", &ro)).await.unwrap();
    assert_eq!(
        s.write_role(MOUNT, role("rw", &ro))
            .await
            .unwrap_err()
            .to_string(),
        "\"rw\" is not an allowed role"
    );

    let creds = s.create_credentials(creds_req("ro")).await.unwrap();
    cleanup.users.push(creds.username.clone());
    assert!(creds.username.starts_with("ro-"), "{}", creds.username);
    let mut conn = connect_as(&creds.username, &creds.password).await.unwrap();
    let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM `{db}`.items"))
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 2);
    let denied = sqlx::query(&format!("INSERT INTO `{db}`.items VALUES (3)"))
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(denied.to_string().contains("denied"), "{denied}");
    drop(conn);

    // Renewal has nothing to do for MySQL; revocation drops the user.
    s.renew_credentials(
        MOUNT,
        &creds.revoke_data,
        chrono::Utc::now().timestamp() + 60,
    )
    .await
    .unwrap();
    s.revoke_credentials(MOUNT, &creds.revoke_data)
        .await
        .unwrap();
    assert!(users_like(&pool, &creds.username).await.is_empty());
    s.revoke_credentials(MOUNT, &creds.revoke_data)
        .await
        .unwrap();
    assert!(connect_as(&creds.username, &creds.password).await.is_err());

    // MySQL commits CREATE USER at once: a later failure still leaves
    // nothing behind.
    let fail = format!(
        "CREATE USER '{{{{name}}}}'@'%' IDENTIFIED BY '{{{{password}}}}'; \
         GRANT SELECT ON `{db}`.no_such_table TO '{{{{name}}}}'@'%';"
    );
    s.write_role(MOUNT, role("fail-grant", &fail))
        .await
        .unwrap();
    let e = s
        .create_credentials(creds_req("fail-grant"))
        .await
        .unwrap_err();
    assert!(matches!(e, DbError::Statement(_)), "{e:?}");
    assert!(e.to_string().contains("no_such_table"), "{e}");
    assert!(users_like(&pool, "fail-grant-%").await.is_empty());

    // Vault's default MySQL username: at most 32 characters.
    s.write_config(MOUNT, "plain", config(&admin, &password, &["dflt"]))
        .await
        .unwrap();
    let mut dflt = role("dflt", &ro);
    dflt.db_name = "plain".into();
    s.write_role(MOUNT, dflt).await.unwrap();
    let creds = s.create_credentials(creds_req("dflt")).await.unwrap();
    cleanup.users.push(creds.username.clone());
    assert!(
        creds.username.starts_with("v-toke-dflt-"),
        "{}",
        creds.username
    );
    assert_eq!(creds.username.len(), 32);
    assert!(connect_as(&creds.username, &creds.password).await.is_ok());
    s.revoke_credentials(MOUNT, &creds.revoke_data)
        .await
        .unwrap();
    assert!(users_like(&pool, &creds.username).await.is_empty());
}

#[tokio::test]
async fn mysql_rotate_root_and_static_roles() {
    let pool = mariadb().await;
    let mut cleanup = Cleanup {
        users: Vec::new(),
        databases: Vec::new(),
    };
    let (admin, password, db) = setup(&pool, &mut cleanup).await;
    let app = unique("bwapp_");
    cleanup.users.push(app.clone());
    exec(
        &pool,
        &format!("CREATE USER '{app}'@'%' IDENTIFIED BY 'App-Original-1'"),
    )
    .await;
    let h = harness().await;
    let s = &h.store;
    s.write_config(MOUNT, "my", config(&admin, &password, &["*"]))
        .await
        .unwrap();
    let ro = format!(
        "CREATE USER '{{{{name}}}}'@'%' IDENTIFIED BY '{{{{password}}}}'; \
         GRANT SELECT ON `{db}`.* TO '{{{{name}}}}'@'%';"
    );
    s.write_role(MOUNT, role("ro", &ro)).await.unwrap();

    s.rotate_root(MOUNT, "my").await.unwrap();
    let e = connect_as(&admin, &password).await.unwrap_err();
    assert!(e.to_string().contains("Access denied"), "{e}");
    let creds = s.create_credentials(creds_req("ro")).await.unwrap();
    cleanup.users.push(creds.username.clone());
    assert!(connect_as(&creds.username, &creds.password).await.is_ok());
    s.revoke_credentials(MOUNT, &creds.revoke_data)
        .await
        .unwrap();

    // A static role: rotated at once, and on demand.
    let sr = pb::StaticRole {
        name: "app".into(),
        db_name: "my".into(),
        username: app.clone(),
        rotation_period: 60,
        ..Default::default()
    };
    s.write_static_role(MOUNT, sr).await.unwrap();
    assert!(connect_as(&app, "App-Original-1").await.is_err());
    let c1 = s.get_static_credentials(MOUNT, "app").await.unwrap();
    assert!(connect_as(&app, &c1.password).await.is_ok());
    s.rotate_static_role(MOUNT, "app").await.unwrap();
    let c2 = s.get_static_credentials(MOUNT, "app").await.unwrap();
    assert_ne!(c1.password, c2.password);
    assert!(connect_as(&app, &c1.password).await.is_err());
    assert!(connect_as(&app, &c2.password).await.is_ok());

    // Dropping the mount closes its pool and forgets everything.
    assert_eq!(s.open_pools(), 1);
    s.drop_mount(MOUNT).await.unwrap();
    assert_eq!(s.open_pools(), 0);
    assert!(s.list_static_roles(MOUNT).await.unwrap().is_empty());
    assert!(s.list_configs(MOUNT).await.unwrap().is_empty());
}
