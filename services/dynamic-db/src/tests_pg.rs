//! The engine against a real PostgreSQL with password authentication
//! ([`PrivatePg`]): connections, roles, credentials, revocation, renewal,
//! root rotation, static roles and dropping a mount.

use std::sync::{Arc, Mutex};

use bulwark_proto::dynamicdb::v1 as pb;
use bulwark_proto::dynamicdb::v1::dynamic_db_server::DynamicDb;
use tonic::{Code, Request};

use crate::error::DbError;
use crate::service::DynamicDbService;
use crate::store::DbStore;
use crate::test_util::{harness, unique, PrivatePg};

const PG: &str = "postgresql-database-plugin";
const MOUNT: &str = "0b7e3e5a-mount";

fn config(pg: &PrivatePg, user: &str, password: &str, allowed: &[&str]) -> pb::ConnectionConfig {
    pb::ConnectionConfig {
        plugin_name: PG.into(),
        connection_url: pg.template_url(),
        username: user.into(),
        password: password.into(),
        allowed_roles: allowed.iter().map(|s| s.to_string()).collect(),
        verify_connection: true,
        ..Default::default()
    }
}

fn role(name: &str, db: &str, creation: &[&str]) -> pb::Role {
    pb::Role {
        name: name.into(),
        db_name: db.into(),
        creation_statements: creation.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

const CREATE_RO: &str =
    "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; \
                         GRANT SELECT ON items TO \"{{name}}\";";

fn creds_req(role: &str) -> pb::CreateCredentialsRequest {
    pb::CreateCredentialsRequest {
        mount: MOUNT.into(),
        role: role.into(),
        display_name: "token".into(),
        mount_default_ttl: 0,
        mount_max_ttl: 0,
    }
}

/// A login role the connection can act as (a superuser, so rotating its
/// password leaves the helper's own `postgres` alone).
async fn admin(pg: &PrivatePg) -> (String, String) {
    let name = unique("bwroot_");
    let password = "Init-Pass-1234567890".to_string();
    pg.query(&format!(
        "CREATE ROLE {name} WITH LOGIN SUPERUSER PASSWORD '{password}'"
    ))
    .await
    .expect("create admin role");
    (name, password)
}

#[tokio::test]
async fn private_pg_checks_passwords_and_restarts() {
    let pg = PrivatePg::start();
    let pw = pg.superuser_password().to_string();
    assert!(pg.connect_as("postgres", &pw).await.is_ok());
    let wrong = pg.connect_as("postgres", "wrong").await.unwrap_err();
    assert!(
        wrong.to_string().contains("password authentication failed"),
        "{wrong}"
    );
    let rows = pg.query("SELECT 1, NULL::text, 'x'").await.unwrap();
    assert_eq!(
        rows,
        vec![vec![Some("1".to_string()), None, Some("x".to_string())]]
    );
    assert!(pg.role_exists("postgres").await);
    pg.stop();
    assert!(!pg.is_running());
    assert!(pg.connect_as("postgres", &pw).await.is_err());
    pg.start_again();
    assert!(pg.connect_as("postgres", &pw).await.is_ok());
    assert!(pg.url("a b", "p@ss").contains("a%20b:p%40ss@127.0.0.1"));
}

#[tokio::test]
async fn config_is_verified_and_errors_are_redacted() {
    let pg = PrivatePg::start();
    let h = harness().await;
    let s = &h.store;
    let secret = "Wr0ng-Secret-Password";

    // A wrong password: refused with the driver's reason, never the password.
    let e = s
        .write_config(MOUNT, "db", config(&pg, "postgres", secret, &["*"]))
        .await
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, DbError::Invalid(_)), "{e:?}");
    assert!(msg.contains("password authentication failed"), "{msg}");
    assert!(!msg.contains(secret), "{msg}");
    assert!(matches!(
        s.read_config(MOUNT, "db").await,
        Err(DbError::NotFound(_))
    ));

    // The password written into the URL itself is redacted too.
    let literal = pb::ConnectionConfig {
        connection_url: pg.url("postgres", "Literal-P@ss"),
        username: String::new(),
        password: String::new(),
        ..config(&pg, "", "", &["*"])
    };
    let msg = s
        .write_config(MOUNT, "db", literal)
        .await
        .unwrap_err()
        .to_string();
    assert!(!msg.contains("Literal-P"), "{msg}");
    assert!(msg.contains("password authentication failed"), "{msg}");

    // Nothing listens there: refused (not stored) unless unverified.
    let mut down = config(&pg, "postgres", secret, &["*"]);
    down.connection_url = "postgresql://{{username}}:{{password}}@127.0.0.1:1/postgres".into();
    let msg = s
        .write_config(MOUNT, "down", down.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(msg.starts_with("error verifying connection"), "{msg}");
    assert!(!msg.contains(secret), "{msg}");
    down.verify_connection = false;
    s.write_config(MOUNT, "down", down).await.unwrap();

    // Unknown plugin, bad URL.
    let mut bad = config(&pg, "postgres", "x", &[]);
    bad.plugin_name = "oracle-database-plugin".into();
    assert!(matches!(
        s.write_config(MOUNT, "x", bad).await,
        Err(DbError::Invalid(_))
    ));
    let mut bad = config(&pg, "postgres", "x", &[]);
    bad.connection_url = "host=127.0.0.1 user=x".into();
    assert!(matches!(
        s.write_config(MOUNT, "x", bad).await,
        Err(DbError::Invalid(_))
    ));

    // The right password: stored, read back without it.
    s.write_config(
        MOUNT,
        "db",
        config(&pg, "postgres", pg.superuser_password(), &["a", "b*"]),
    )
    .await
    .unwrap();
    let read = s.read_config(MOUNT, "db").await.unwrap();
    assert_eq!(read.password, "");
    assert_eq!(read.username, "postgres");
    assert_eq!(read.allowed_roles, ["a", "b*"]);
    assert!(read.verify_connection);
    assert_eq!(s.list_configs(MOUNT).await.unwrap(), ["db", "down"]);

    // An update with an empty password keeps the stored one (verified).
    let mut update = config(&pg, "postgres", "", &["*"]);
    update.max_open_connections = 2;
    s.write_config(MOUNT, "db", update).await.unwrap();
    assert_eq!(
        s.read_config(MOUNT, "db")
            .await
            .unwrap()
            .max_open_connections,
        2
    );

    // The stored password is encrypted at rest.
    let raw = h
        .raw
        .get(&crate::layout::config_key(MOUNT, "db"))
        .await
        .unwrap()
        .unwrap();
    let su = pg.superuser_password().as_bytes();
    assert!(!raw.windows(su.len()).any(|w| w == su));

    s.reset_connection(MOUNT, "db").await.unwrap();
    assert!(matches!(
        s.reset_connection(MOUNT, "nope").await,
        Err(DbError::NotFound(_))
    ));
    s.delete_config(MOUNT, "down").await.unwrap();
    s.delete_config(MOUNT, "down").await.unwrap();
    assert_eq!(s.list_configs(MOUNT).await.unwrap(), ["db"]);
}

#[tokio::test]
async fn roles_credentials_revoke_and_renew() {
    let pg = PrivatePg::start();
    pg.query("CREATE TABLE items (id int); INSERT INTO items VALUES (1), (2)")
        .await
        .unwrap();
    let h = harness().await;
    let s = &h.store;
    s.write_config(
        MOUNT,
        "db",
        config(
            &pg,
            "postgres",
            pg.superuser_password(),
            &["ro", "bad-*", "later"],
        ),
    )
    .await
    .unwrap();

    // Role validation.
    let invalid = |r: pb::Role| async move {
        match s.write_role(MOUNT, r).await {
            Err(DbError::Invalid(m)) => m,
            other => panic!("expected Invalid, got {other:?}"),
        }
    };
    assert_eq!(
        invalid(role("rw", "db", &[CREATE_RO])).await,
        "\"rw\" is not an allowed role"
    );
    assert!(invalid(role("ro", "nodb", &[CREATE_RO]))
        .await
        .contains("nodb"));
    assert_eq!(
        invalid(role("ro", "", &[CREATE_RO])).await,
        "empty database name attribute"
    );
    assert_eq!(
        invalid(role("ro", "db", &[" "])).await,
        "empty creation statements"
    );
    let mut ttl = role("ro", "db", &[CREATE_RO]);
    ttl.default_ttl = 7200;
    ttl.max_ttl = 3600;
    assert_eq!(invalid(ttl).await, "ttl cannot be greater than max_ttl");
    assert!(matches!(
        s.read_role(MOUNT, "ro").await,
        Err(DbError::NotFound(_))
    ));

    let mut ro = role("ro", "db", &[CREATE_RO]);
    ro.default_ttl = 600;
    ro.max_ttl = 3600;
    s.write_role(MOUNT, ro).await.unwrap();
    let read = s.read_role(MOUNT, "ro").await.unwrap();
    assert_eq!((read.default_ttl, read.max_ttl), (600, 3600));
    assert_eq!(read.creation_statements, [CREATE_RO]);
    assert_eq!(s.list_roles(MOUNT).await.unwrap(), ["ro"]);

    // Credentials that log in for real: SELECT allowed, INSERT refused.
    let c = s.create_credentials(creds_req("ro")).await.unwrap();
    assert!(c.username.starts_with("v-token-ro-"), "{}", c.username);
    assert!(c.username.len() <= 63);
    assert!(c.password.len() >= 20);
    assert_eq!((c.ttl, c.max_ttl), (600, 3600));
    let mut conn = pg.connect_as(&c.username, &c.password).await.unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM items")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, 2);
    let denied = sqlx::query("INSERT INTO items VALUES (3)")
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(denied.to_string().contains("permission denied"), "{denied}");
    drop(conn);
    let valid_until = pg
        .query(&format!(
            "SELECT extract(epoch FROM rolvaliduntil)::bigint FROM pg_roles WHERE rolname = '{}'",
            c.username
        ))
        .await
        .unwrap();
    let until: i64 = valid_until[0][0].as_deref().unwrap().parse().unwrap();
    let now = chrono::Utc::now().timestamp();
    assert!((until - (now + 600)).abs() < 10, "{until} vs {now}");

    // Renewal moves VALID UNTIL.
    let new_expiry = now + 5000;
    s.renew_credentials(MOUNT, &c.revoke_data, new_expiry)
        .await
        .unwrap();
    let until = pg
        .query(&format!(
            "SELECT extract(epoch FROM rolvaliduntil)::bigint FROM pg_roles WHERE rolname = '{}'",
            c.username
        ))
        .await
        .unwrap();
    assert_eq!(
        until[0][0].as_deref(),
        Some(new_expiry.to_string().as_str())
    );

    // Revocation drops the role, even while it has a session; twice is fine.
    let session = pg.connect_as(&c.username, &c.password).await.unwrap();
    s.revoke_credentials(MOUNT, &c.revoke_data).await.unwrap();
    assert!(!pg.role_exists(&c.username).await);
    drop(session);
    s.revoke_credentials(MOUNT, &c.revoke_data).await.unwrap();
    assert!(pg.connect_as(&c.username, &c.password).await.is_err());
    assert!(matches!(
        s.revoke_credentials(MOUNT, b"not json").await,
        Err(DbError::Invalid(_))
    ));

    // A role whose creation fails half-way leaves nothing behind, and its
    // rollback statements run.
    pg.query("CREATE TABLE rollback_log (n text)")
        .await
        .unwrap();
    let mut bad = role(
        "bad-grant",
        "db",
        &[
            "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}'",
            "GRANT SELECT ON no_such_table TO \"{{name}}\"",
        ],
    );
    bad.rollback_statements = vec!["INSERT INTO rollback_log VALUES ('{{name}}')".into()];
    s.write_role(MOUNT, bad).await.unwrap();
    let e = s
        .create_credentials(creds_req("bad-grant"))
        .await
        .unwrap_err();
    assert!(matches!(e, DbError::Statement(_)), "{e:?}");
    assert!(e.to_string().contains("no_such_table"), "{e}");
    let left = pg
        .query("SELECT rolname FROM pg_roles WHERE rolname LIKE 'v-token-bad-gran%'")
        .await
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
    let logged = pg.query("SELECT n FROM rollback_log").await.unwrap();
    assert_eq!(logged.len(), 1);
    assert!(logged[0][0]
        .as_deref()
        .unwrap()
        .starts_with("v-token-bad-gran"));

    // Custom revocation statements; a role deleted later still revokes by
    // the default.
    let mut custom = role("later", "db", &[CREATE_RO]);
    custom.revocation_statements =
        vec!["REVOKE ALL ON items FROM \"{{name}}\"; DROP ROLE \"{{name}}\"".into()];
    s.write_role(MOUNT, custom).await.unwrap();
    let c1 = s.create_credentials(creds_req("later")).await.unwrap();
    let c2 = s.create_credentials(creds_req("later")).await.unwrap();
    assert_ne!(c1.username, c2.username);
    s.revoke_credentials(MOUNT, &c1.revoke_data).await.unwrap();
    assert!(!pg.role_exists(&c1.username).await);
    s.delete_role(MOUNT, "later").await.unwrap();
    s.revoke_credentials(MOUNT, &c2.revoke_data).await.unwrap();
    assert!(!pg.role_exists(&c2.username).await);
    // Renewing for a deleted role: gone.
    assert!(matches!(
        s.renew_credentials(MOUNT, &c2.revoke_data, now).await,
        Err(DbError::Gone(_))
    ));

    // Unknown role; a role its connection no longer allows (Vault's 500).
    assert_eq!(
        s.create_credentials(creds_req("nope"))
            .await
            .unwrap_err()
            .to_string(),
        "unknown role: nope"
    );
    s.write_config(MOUNT, "db", config(&pg, "postgres", "", &["bad-*"]))
        .await
        .unwrap();
    let e = s.create_credentials(creds_req("ro")).await.unwrap_err();
    assert!(matches!(e, DbError::Refused(_)), "{e:?}");
    assert_eq!(e.to_string(), "\"ro\" is not an allowed role");
}

#[tokio::test]
async fn mount_ttls_and_username_templates() {
    let pg = PrivatePg::start();
    pg.query("CREATE TABLE items (id int)").await.unwrap();
    let h = harness().await;
    let s = &h.store;
    let mut c = config(&pg, "postgres", pg.superuser_password(), &["*"]);
    c.username_template = "{{ printf \"app-%s-%s\" .RoleName (random 6) | lowercase }}".into();
    s.write_config(MOUNT, "db", c).await.unwrap();
    s.write_role(MOUNT, role("ro", "db", &[CREATE_RO]))
        .await
        .unwrap();
    let mut req = creds_req("ro");
    req.mount_default_ttl = 120;
    req.mount_max_ttl = 60;
    let c = s.create_credentials(req).await.unwrap();
    assert_eq!((c.ttl, c.max_ttl), (60, 60));
    assert!(c.username.starts_with("app-ro-"), "{}", c.username);
    assert_eq!(c.username.len(), "app-ro-".len() + 6);
    assert!(pg.connect_as(&c.username, &c.password).await.is_ok());
    let c = s.create_credentials(creds_req("ro")).await.unwrap();
    assert_eq!((c.ttl, c.max_ttl), (768 * 3600, 768 * 3600));
    // A bad template is refused when the connection is written.
    let mut bad = config(&pg, "postgres", "", &["*"]);
    bad.username_template = "{{ .Nope }}".into();
    assert!(matches!(
        s.write_config(MOUNT, "db", bad).await,
        Err(DbError::Invalid(_))
    ));
}

#[tokio::test]
async fn rotate_root_retires_the_old_password() {
    let pg = PrivatePg::start();
    pg.query("CREATE TABLE items (id int)").await.unwrap();
    let (user, old) = admin(&pg).await;
    let h = harness().await;
    let s = &h.store;
    s.write_config(MOUNT, "db", config(&pg, &user, &old, &["ro"]))
        .await
        .unwrap();
    s.write_role(MOUNT, role("ro", "db", &[CREATE_RO]))
        .await
        .unwrap();
    // Use the pool first, so that rotation has to replace it.
    let before = s.create_credentials(creds_req("ro")).await.unwrap();

    s.rotate_root(MOUNT, "db").await.unwrap();
    let e = pg.connect_as(&user, &old).await.unwrap_err();
    assert!(
        e.to_string().contains("password authentication failed"),
        "{e}"
    );
    // The engine knows the new one: credentials still issue and revoke.
    let after = s.create_credentials(creds_req("ro")).await.unwrap();
    assert!(pg
        .connect_as(&after.username, &after.password)
        .await
        .is_ok());
    s.revoke_credentials(MOUNT, &before.revoke_data)
        .await
        .unwrap();
    s.revoke_credentials(MOUNT, &after.revoke_data)
        .await
        .unwrap();
    assert!(!pg.role_exists(&after.username).await);
    // Twice in a row works (the stored password follows).
    s.rotate_root(MOUNT, "db").await.unwrap();
    s.create_credentials(creds_req("ro")).await.unwrap();
    assert_eq!(s.read_config(MOUNT, "db").await.unwrap().password, "");

    // Custom rotation statements.
    let (user2, old2) = admin(&pg).await;
    let mut c = config(&pg, &user2, &old2, &["*"]);
    c.root_rotation_statements =
        vec!["ALTER USER \"{{username}}\" WITH PASSWORD '{{password}}'".into()];
    s.write_config(MOUNT, "db2", c).await.unwrap();
    s.rotate_root(MOUNT, "db2").await.unwrap();
    assert!(pg.connect_as(&user2, &old2).await.is_err());

    // No username/password in the config: refused.
    let mut literal = config(&pg, "", "", &["*"]);
    literal.connection_url = pg.superuser_url();
    s.write_config(MOUNT, "lit", literal).await.unwrap();
    let e = s.rotate_root(MOUNT, "lit").await.unwrap_err();
    assert!(matches!(e, DbError::Invalid(_)), "{e:?}");
    assert!(matches!(
        s.rotate_root(MOUNT, "none").await,
        Err(DbError::NotFound(_))
    ));
}

#[tokio::test]
async fn static_roles_rotate() {
    let pg = PrivatePg::start();
    let h = harness().await;
    let s = &h.store;
    let app = unique("bwapp_");
    pg.query(&format!(
        "CREATE ROLE {app} WITH LOGIN PASSWORD 'Original-Pass-123'"
    ))
    .await
    .unwrap();
    s.write_config(
        MOUNT,
        "db",
        config(&pg, "postgres", pg.superuser_password(), &["app*", "ghost"]),
    )
    .await
    .unwrap();
    let sr = |name: &str, user: &str, period: i64| pb::StaticRole {
        name: name.into(),
        db_name: "db".into(),
        username: user.into(),
        rotation_period: period,
        ..Default::default()
    };
    for (r, what) in [
        (sr("app", &app, 4), "rotation_period"),
        (sr("ghost", "no_such_user", 60), "does not exist"),
        (sr("other", &app, 60), "not an allowed role"),
        (sr("app", "", 60), "username"),
    ] {
        let e = s.write_static_role(MOUNT, r).await.unwrap_err();
        assert!(
            matches!(e, DbError::Invalid(_)) && e.to_string().contains(what),
            "{e:?}"
        );
    }
    assert!(s.list_static_roles(MOUNT).await.unwrap().is_empty());

    s.write_static_role(MOUNT, sr("app", &app, 3600))
        .await
        .unwrap();
    assert!(pg.connect_as(&app, "Original-Pass-123").await.is_err());
    let c1 = s.get_static_credentials(MOUNT, "app").await.unwrap();
    assert_eq!(c1.username, app);
    assert_eq!(c1.rotation_period, 3600);
    assert!(c1.ttl > 3590 && c1.ttl <= 3600, "{}", c1.ttl);
    assert!((c1.last_vault_rotation - chrono::Utc::now().timestamp()).abs() < 10);
    assert!(pg.connect_as(&app, &c1.password).await.is_ok());
    let read = s.read_static_role(MOUNT, "app").await.unwrap();
    assert_eq!(read.last_vault_rotation, c1.last_vault_rotation);

    // Rotate now.
    s.rotate_static_role(MOUNT, "app").await.unwrap();
    let c2 = s.get_static_credentials(MOUNT, "app").await.unwrap();
    assert_ne!(c1.password, c2.password);
    assert!(pg.connect_as(&app, &c1.password).await.is_err());
    assert!(pg.connect_as(&app, &c2.password).await.is_ok());

    // Not due: nothing; once the period has passed: rotated.
    assert_eq!(s.rotate_due().await.unwrap(), 0);
    s.clock.advance(3600);
    assert_eq!(s.rotate_due().await.unwrap(), 1);
    let c3 = s.get_static_credentials(MOUNT, "app").await.unwrap();
    assert_ne!(c3.password, c2.password);
    assert!(pg.connect_as(&app, &c3.password).await.is_ok());
    assert_eq!(s.rotate_due().await.unwrap(), 0);

    // Updates keep the password; the username cannot change.
    let mut update = sr("app", &app, 7200);
    update.rotation_statements =
        vec!["ALTER ROLE \"{{name}}\" WITH PASSWORD '{{password}}'".into()];
    s.write_static_role(MOUNT, update).await.unwrap();
    let c4 = s.get_static_credentials(MOUNT, "app").await.unwrap();
    assert_eq!(c4.password, c3.password);
    assert_eq!(c4.rotation_period, 7200);
    let e = s
        .write_static_role(MOUNT, sr("app", "postgres", 60))
        .await
        .unwrap_err();
    assert!(e.to_string().contains("username"), "{e}");
    s.rotate_static_role(MOUNT, "app").await.unwrap();
    let c5 = s.get_static_credentials(MOUNT, "app").await.unwrap();
    assert!(pg.connect_as(&app, &c5.password).await.is_ok());

    assert_eq!(s.list_static_roles(MOUNT).await.unwrap(), ["app"]);
    s.delete_static_role(MOUNT, "app").await.unwrap();
    assert!(matches!(
        s.get_static_credentials(MOUNT, "app").await,
        Err(DbError::NotFound(_))
    ));
    assert!(matches!(
        s.rotate_static_role(MOUNT, "app").await,
        Err(DbError::NotFound(_))
    ));
}

#[tokio::test]
async fn revoke_waits_for_an_unreachable_database() {
    let pg = PrivatePg::start();
    pg.query("CREATE TABLE items (id int)").await.unwrap();
    let h = harness().await;
    let s = &h.store;
    s.write_config(
        MOUNT,
        "db",
        config(&pg, "postgres", pg.superuser_password(), &["ro"]),
    )
    .await
    .unwrap();
    s.write_role(MOUNT, role("ro", "db", &[CREATE_RO]))
        .await
        .unwrap();
    let c = s.create_credentials(creds_req("ro")).await.unwrap();
    pg.stop();
    let e = s
        .revoke_credentials(MOUNT, &c.revoke_data)
        .await
        .unwrap_err();
    assert!(matches!(e, DbError::Unreachable(_)), "{e:?}");
    assert_eq!(tonic::Status::from(e).code(), Code::Unavailable);
    pg.start_again();
    s.revoke_credentials(MOUNT, &c.revoke_data).await.unwrap();
    assert!(!pg.role_exists(&c.username).await);
}

#[tokio::test]
async fn drop_mount_deletes_records_and_closes_pools() {
    let pg = PrivatePg::start();
    pg.query("CREATE TABLE items (id int)").await.unwrap();
    let h = harness().await;
    let s = &h.store;
    for mount in ["gone", "kept"] {
        s.write_config(
            mount,
            "db",
            config(&pg, "postgres", pg.superuser_password(), &["*"]),
        )
        .await
        .unwrap();
        s.write_role(mount, role("ro", "db", &[CREATE_RO]))
            .await
            .unwrap();
        let mut req = creds_req("ro");
        req.mount = mount.into();
        s.create_credentials(req).await.unwrap();
    }
    assert_eq!(s.open_pools(), 2);
    s.drop_mount("gone").await.unwrap();
    assert_eq!(s.open_pools(), 1);
    assert!(s.list_configs("gone").await.unwrap().is_empty());
    assert!(s.list_roles("gone").await.unwrap().is_empty());
    let keys = crate::test_util::raw_keys(&h.raw).await;
    assert!(keys.iter().all(|k| !k.starts_with("m/gone/")), "{keys:?}");
    assert_eq!(s.list_roles("kept").await.unwrap(), ["ro"]);
    let mut req = creds_req("ro");
    req.mount = "kept".into();
    s.create_credentials(req).await.unwrap();
}

#[tokio::test]
async fn service_maps_errors_and_refuses_while_sealed() {
    let pg = PrivatePg::start();
    let h = harness().await;
    let svc = DynamicDbService::new(h.store.clone());
    let write = |c: pb::ConnectionConfig| {
        Request::new(pb::WriteConfigRequest {
            mount: MOUNT.into(),
            name: "db".into(),
            config: Some(c),
        })
    };
    let e = svc
        .write_config(write(config(&pg, "postgres", "bad-password-x", &["*"])))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(!e.message().contains("bad-password-x"));
    svc.write_config(write(config(&pg, "postgres", pg.superuser_password(), &[])))
        .await
        .unwrap();
    let e = svc
        .read_config(Request::new(pb::ItemRequest {
            mount: MOUNT.into(),
            name: "nope".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let names = svc
        .list_configs(Request::new(pb::MountRequest {
            mount: MOUNT.into(),
        }))
        .await
        .unwrap()
        .into_inner()
        .names;
    assert_eq!(names, ["db"]);

    h.store.keyring().clear();
    let e = svc
        .list_configs(Request::new(pb::MountRequest {
            mount: MOUNT.into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::Unavailable, "Vault is sealed")
    );
}

/// Captures everything traced (at every level) while a full cycle runs, and
/// checks that no password shows up in it. (The only test that installs a
/// subscriber.)
#[tokio::test]
async fn passwords_never_reach_logs_or_errors() {
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let writer = buf.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    // Global, not scoped: callsites already seen by other tests' threads
    // are rebuilt for it (a scoped one can miss them).
    tracing::subscriber::set_global_default(subscriber).expect("only this test installs one");

    let pg = PrivatePg::start();
    pg.query("CREATE TABLE items (id int)").await.unwrap();
    let (user, old) = admin(&pg).await;
    let h = harness().await;
    let s: &DbStore = &h.store;
    let mut errors = Vec::new();
    errors.push(
        s.write_config(
            MOUNT,
            "db",
            config(&pg, &user, "Bad-Pass-0987654321", &["*"]),
        )
        .await
        .unwrap_err()
        .to_string(),
    );
    s.write_config(MOUNT, "db", config(&pg, &user, &old, &["*"]))
        .await
        .unwrap();
    s.write_role(MOUNT, role("ro", "db", &[CREATE_RO]))
        .await
        .unwrap();
    let c = s.create_credentials(creds_req("ro")).await.unwrap();
    s.write_role(
        MOUNT,
        role(
            "bad",
            "db",
            &["CREATE ROLE \"{{name}}\" PASSWORD '{{password}}' SYNTAX ERROR"],
        ),
    )
    .await
    .unwrap();
    errors.push(
        s.create_credentials(creds_req("bad"))
            .await
            .unwrap_err()
            .to_string(),
    );
    s.rotate_root(MOUNT, "db").await.unwrap();
    s.revoke_credentials(MOUNT, &c.revoke_data).await.unwrap();
    let logs = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("issued database credentials"), "{logs}");
    for secret in [old.as_str(), "Bad-Pass-0987654321", c.password.as_str()] {
        assert!(!logs.contains(secret), "{secret} in logs");
        for e in &errors {
            assert!(!e.contains(secret), "{secret} in {e}");
        }
    }
}

#[tokio::test]
async fn the_rotator_runs_only_while_unsealed_and_stops() {
    use bulwark_shared::grpc::SealView;
    use std::time::Duration;
    use tokio::sync::watch;

    let pg = PrivatePg::start();
    let app = unique("bwapp_");
    pg.query(&format!(
        "CREATE ROLE {app} WITH LOGIN PASSWORD 'Original-Pass-123'"
    ))
    .await
    .unwrap();
    let h = harness().await;
    let s = h.store.clone();
    s.write_config(
        MOUNT,
        "db",
        config(&pg, "postgres", pg.superuser_password(), &["*"]),
    )
    .await
    .unwrap();
    s.write_static_role(
        MOUNT,
        pb::StaticRole {
            name: "app".into(),
            db_name: "db".into(),
            username: app.clone(),
            rotation_period: 60,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let first = s.get_static_credentials(MOUNT, "app").await.unwrap();
    let view = |sealed| SealView {
        initialized: true,
        sealed,
        connected: true,
    };
    let (seal_tx, seal_rx) = watch::channel(view(true));
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = crate::background::spawn(s.clone(), seal_rx, Duration::from_millis(50), stop_rx);
    s.clock.advance(120);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Sealed: no rotation, no pool kept open.
    assert_eq!(
        s.get_static_credentials(MOUNT, "app")
            .await
            .unwrap()
            .password,
        first.password
    );
    assert_eq!(s.open_pools(), 0);

    seal_tx.send(view(false)).unwrap();
    let mut rotated = None;
    for _ in 0..100 {
        let now = s.get_static_credentials(MOUNT, "app").await.unwrap();
        if now.password != first.password {
            rotated = Some(now);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let rotated = rotated.expect("the rotator rotated the due role");
    assert!(pg.connect_as(&app, &rotated.password).await.is_ok());

    stop_tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the rotator stops")
        .unwrap();
}
