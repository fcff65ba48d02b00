//! Leases and the database secrets engine end to end: a private PostgreSQL
//! cluster with password auth (initdb + pg_ctl), the machine's MariaDB, the
//! real services over mTLS, HTTP to the gateway.

use std::time::{Duration, Instant};

use bulwark_dynamic_db::testing::PrivatePg;
use bulwark_e2e::{Api, Cluster, Layout, Store};
use serde_json::{json, Value};

fn s(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_string()
}

async fn ok(api: &Api, path: &str, body: Value) -> Value {
    let r = api.put(path, body.clone()).await;
    assert!(
        r.status == 200 || r.status == 204,
        "PUT {path} {body}: {} {:?}",
        r.status,
        r.body
    );
    r.body
}

/// Init with one share and unseal; returns (root token, unseal key).
async fn init(api: &Api) -> (String, String) {
    let r = api
        .put(
            "sys/init",
            json!({"secret_shares": 1, "secret_threshold": 1}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let key = s(&r.body["keys"][0]);
    unseal(api, &key).await;
    (s(&r.body["root_token"]), key)
}

async fn unseal(api: &Api, key: &str) {
    let r = api.put("sys/unseal", json!({ "key": key })).await;
    assert_eq!(r.body["sealed"], false, "{:?}", r.body);
}

async fn pg_role_exists(pg: &PrivatePg, name: &str) -> bool {
    pg.role_exists(name).await
}

async fn can_login(pg: &PrivatePg, user: &str, password: &str) -> bool {
    pg.connect_as(user, password).await.is_ok()
}

async fn run_as(pg: &PrivatePg, user: &str, password: &str, sql: &str) -> Result<(), String> {
    let mut conn = pg
        .connect_as(user, password)
        .await
        .map_err(|e| e.to_string())?;
    sqlx::query(sql)
        .execute(&mut conn)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

async fn count_generated_roles(pg: &PrivatePg) -> i64 {
    let rows = pg
        .query("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'v-%'")
        .await
        .expect("count roles");
    rows[0][0]
        .as_deref()
        .unwrap_or("0")
        .parse()
        .expect("a count")
}

async fn wait_gone(pg: &PrivatePg, name: &str, within: Duration) {
    let deadline = Instant::now() + within;
    while pg_role_exists(pg, name).await {
        assert!(
            Instant::now() < deadline,
            "{name} still exists after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

const READONLY: &str = r#"CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{{name}}";"#;

#[tokio::test(flavor = "multi_thread")]
async fn postgres_credentials_and_leases() {
    let pg = PrivatePg::start();
    pg.query("CREATE TABLE items (id int)")
        .await
        .expect("table");
    // Bulwark gets a superuser of its own (its password is rotated away);
    // the test keeps `postgres` to look at the database.
    let super_pw = "bulwark-initial-Pw1";
    pg.query(&format!(
        "CREATE ROLE bulwark_root WITH LOGIN SUPERUSER PASSWORD '{super_pw}'"
    ))
    .await
    .expect("root role");
    let mut c = Cluster::start(Layout::Separate, Store::SqliteFile);
    let api = c.client();
    let (root_token, key) = init(&api).await;
    let root = api.with_token(&root_token);

    // Walkthrough 002: a db-admin token sets the engine up, an app token reads creds.
    ok(
        &root,
        "sys/policies/acl/db-admin",
        json!({"policy": "path \"sys/mounts/database\" {\n  capabilities = [ \"create\", \"update\" ]\n}\npath \"database/*\" {\n  capabilities = [ \"create\", \"update\" ]\n}\n"}),
    )
    .await;
    ok(
        &root,
        "sys/policies/acl/app",
        json!({"policy": "path \"database/creds/db-app\" {\n  capabilities = [ \"read\" ]\n}\n"}),
    )
    .await;
    let token = |policy: &'static str| {
        let root = root.clone();
        async move {
            let r = root
                .put("auth/token/create", json!({ "policies": [policy] }))
                .await;
            s(&r.body["auth"]["client_token"])
        }
    };
    let admin = api.with_token(&token("db-admin").await);
    let app = api.with_token(&token("app").await);
    ok(&admin, "sys/mounts/database", json!({"type": "database"})).await;

    // Bad connection: a clear 400, the password not echoed.
    let r = admin
        .put(
            "database/config/broken",
            json!({
                "plugin_name": "postgresql-database-plugin",
                "connection_url": "postgresql://{{username}}:{{password}}@127.0.0.1:1/postgres?sslmode=disable",
                "username": "postgres",
                "password": "hunter2-secret",
                "allowed_roles": "*",
            }),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(
        !r.body.to_string().contains("hunter2-secret"),
        "{:?}",
        r.body
    );
    assert_eq!(root.get("database/config/broken").await.status, 404);

    ok(
        &admin,
        "database/config/my-postgres-database",
        json!({
            "plugin_name": "postgresql-database-plugin",
            "connection_url": format!("postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{}/postgres?sslmode=disable", pg.port()),
            "allowed_roles": "db-app,short,restart,fault",
            "username": "bulwark_root",
            "password": super_pw,
        }),
    )
    .await;
    let r = root.get("database/config/my-postgres-database").await;
    assert_eq!(r.status, 200);
    assert!(
        !r.body.to_string().contains(super_pw),
        "password never read back"
    );

    // rotate-root: the original password stops working.
    ok(
        &admin,
        "database/rotate-root/my-postgres-database",
        json!({}),
    )
    .await;
    assert!(
        !can_login(&pg, "bulwark_root", super_pw).await,
        "old root password still logs in"
    );

    // Roles: bad input first.
    for (name, body) in [
        (
            "db-app",
            json!({"db_name": "nope", "creation_statements": READONLY}),
        ),
        (
            "not-allowed",
            json!({"db_name": "my-postgres-database", "creation_statements": READONLY}),
        ),
        (
            "db-app",
            json!({"db_name": "my-postgres-database", "creation_statements": READONLY, "default_ttl": "2h", "max_ttl": "1h"}),
        ),
        (
            "db-app",
            json!({"db_name": "my-postgres-database", "default_ttl": "soon", "creation_statements": READONLY}),
        ),
    ] {
        let r = admin
            .put(&format!("database/roles/{name}"), body.clone())
            .await;
        assert_eq!(r.status, 400, "{name} {body}: {:?}", r.body);
    }
    ok(
        &admin,
        "database/roles/db-app",
        json!({"db_name": "my-postgres-database", "creation_statements": READONLY, "default_ttl": "1h", "max_ttl": "24h"}),
    )
    .await;

    // The app reads creds; they log in for real; SELECT yes, INSERT no.
    let r = app.get("database/creds/db-app").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let lease = s(&r.body["lease_id"]);
    assert!(lease.starts_with("database/creds/db-app/"), "{lease}");
    assert_eq!(r.body["lease_duration"], 3600);
    assert_eq!(r.body["renewable"], true);
    let (user, pass) = (
        s(&r.body["data"]["username"]),
        s(&r.body["data"]["password"]),
    );
    assert!(user.starts_with("v-token-db-app-"), "{user}");
    assert!(can_login(&pg, &user, &pass).await);
    assert!(run_as(&pg, &user, &pass, "SELECT count(*) FROM items")
        .await
        .is_ok());
    assert!(run_as(&pg, &user, &pass, "INSERT INTO items VALUES (1)")
        .await
        .is_err());
    assert_eq!(app.get("database/creds/other").await.status, 403);
    assert_eq!(app.delete("database/roles/db-app").await.status, 403);

    // Lease lookup, renew, revoke.
    let r = root
        .put("sys/leases/lookup", json!({ "lease_id": lease }))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let ttl = r.body["data"]["ttl"].as_i64().unwrap();
    assert!((3590..=3600).contains(&ttl), "{ttl}");
    let r = root
        .put(
            "sys/leases/renew",
            json!({"lease_id": lease, "increment": "2h"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["lease_duration"], 7200);
    let r = root
        .raw("LIST", "sys/leases/lookup/database/creds/db-app", None)
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["data"]["keys"].as_array().unwrap().len(), 1);
    let r = root
        .put("sys/leases/revoke", json!({ "lease_id": lease }))
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    wait_gone(&pg, &user, Duration::from_secs(5)).await;
    let r = root
        .put("sys/leases/lookup", json!({ "lease_id": lease }))
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.errors(), ["invalid lease"]);

    // A 3s role disappears by itself.
    ok(
        &admin,
        "database/roles/short",
        json!({"db_name": "my-postgres-database", "creation_statements": READONLY, "default_ttl": "3s", "max_ttl": "1m"}),
    )
    .await;
    let r = root.get("database/creds/short").await;
    let short_user = s(&r.body["data"]["username"]);
    assert!(pg_role_exists(&pg, &short_user).await);
    wait_gone(&pg, &short_user, Duration::from_secs(20)).await;

    // Revoking the token that asked revokes its leases.
    let app2 = api.with_token(&token("app").await);
    let r = app2.get("database/creds/db-app").await;
    let user2 = s(&r.body["data"]["username"]);
    let r = app2.put("auth/token/revoke-self", json!({})).await;
    assert_eq!(r.status, 204);
    wait_gone(&pg, &user2, Duration::from_secs(20)).await;

    // SQL errors in creation statements leave nothing behind.
    let before = count_generated_roles(&pg).await;
    ok(
        &admin,
        "database/roles/db-app",
        json!({"creation_statements": "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}'; GRANT SELECT ON no_such_table TO \"{{name}}\";"}),
    )
    .await;
    let r = app.get("database/creds/db-app").await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert_eq!(count_generated_roles(&pg).await, before);
    ok(
        &admin,
        "database/roles/db-app",
        json!({"creation_statements": READONLY}),
    )
    .await;

    // Leases survive a restart of every service and still expire.
    ok(
        &admin,
        "database/roles/restart",
        json!({"db_name": "my-postgres-database", "creation_statements": READONLY, "default_ttl": "8s"}),
    )
    .await;
    let r = root.get("database/creds/restart").await;
    let (restart_user, restart_lease) = (s(&r.body["data"]["username"]), s(&r.body["lease_id"]));
    c.restart();
    let api = c.client();
    unseal(&api, &key).await;
    let r = root
        .put("sys/leases/lookup", json!({ "lease_id": restart_lease }))
        .await;
    assert_eq!(r.status, 200, "lease kept across restart: {:?}", r.body);
    wait_gone(&pg, &restart_user, Duration::from_secs(30)).await;

    // Fault: the database is down while a lease expires; the user is
    // dropped once it is back.
    ok(
        &admin,
        "database/roles/fault",
        json!({"db_name": "my-postgres-database", "creation_statements": READONLY, "default_ttl": "2s"}),
    )
    .await;
    let r = root.get("database/creds/fault").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let fault_user = s(&r.body["data"]["username"]);
    pg.stop();
    tokio::time::sleep(Duration::from_secs(5)).await;
    pg.start_again();
    wait_gone(&pg, &fault_user, Duration::from_secs(60)).await;

    // Still serving; disabling the mount revokes what is left.
    let r = app.get("database/creds/db-app").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let last = s(&r.body["data"]["username"]);
    assert_eq!(root.delete("sys/mounts/database").await.status, 204);
    wait_gone(&pg, &last, Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn mariadb_credentials() {
    let c = Cluster::start(Layout::AllInOne, Store::SqliteFile);
    let api = c.client();
    let (root_token, _) = init(&api).await;
    let root = api.with_token(&root_token);
    ok(&root, "sys/mounts/database", json!({"type": "database"})).await;
    ok(
        &root,
        "database/config/maria",
        json!({
            "plugin_name": "mysql-database-plugin",
            "connection_url": "{{username}}:{{password}}@tcp(127.0.0.1:3306)/",
            "allowed_roles": "ro",
            "username": "root",
            "password": "",
        }),
    )
    .await;
    ok(
        &root,
        "database/roles/ro",
        json!({
            "db_name": "maria",
            "creation_statements": "CREATE USER '{{name}}'@'%' IDENTIFIED BY '{{password}}'; GRANT SELECT ON test.* TO '{{name}}'@'%';",
            "default_ttl": "1h",
        }),
    )
    .await;
    let r = root.get("database/creds/ro").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let (user, pass, lease) = (
        s(&r.body["data"]["username"]),
        s(&r.body["data"]["password"]),
        s(&r.body["lease_id"]),
    );
    assert!(user.len() <= 32, "{user}");
    let url = format!(
        "mysql://{}:{}@127.0.0.1:3306/test",
        user,
        pass.replace('%', "%25")
    );
    let mut conn = <sqlx::MySqlConnection as sqlx::Connection>::connect(&url)
        .await
        .expect("generated MariaDB user logs in");
    sqlx::query("SELECT 1")
        .execute(&mut conn)
        .await
        .expect("select");
    drop(conn);
    let r = root
        .put("sys/leases/revoke", json!({ "lease_id": lease }))
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let mut admin =
        <sqlx::MySqlConnection as sqlx::Connection>::connect("mysql://root@127.0.0.1:3306/")
            .await
            .expect("root");
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM mysql.user WHERE User = ?")
        .bind(&user)
        .fetch_one(&mut admin)
        .await
        .expect("count");
    assert_eq!(n, 0, "user dropped on revoke");
}
