//! Several replicas on one PostgreSQL act as one system (issue 11): every
//! service in its own process, the gateway and the auth service twice each,
//! certificates from `bulwark certs`, static auto-unseal. The policy
//! service runs twice too.
//!
//! Gateway A prefers auth A and policy A, gateway B auth B and policy B
//! (each process's config lists its preferred replica first), so what one
//! replica does must reach
//! the other through the database: a write through A is read through B; a
//! token revoked through A is refused by B on the very next request; a
//! policy edit through either applies to the other's very next decision; a lease expires once although two auth
//! replicas run; when the auth replica holding the expiration lock dies,
//! the other takes over, and gateway A moves to auth B.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bulwark_e2e::{bulwark_bin, free_port, Api, Proc};
use bulwark_shared::storage::test_util::TestPg;
use bulwark_shared::ServiceName;
use serde_json::json;
use sqlx::Connection;

struct Topology {
    _dir: tempfile::TempDir,
    procs: Vec<Proc>,
    gw_a: String,
    gw_b: String,
}

impl Topology {
    fn proc(&mut self, name: &str) -> &mut Proc {
        self.procs
            .iter_mut()
            .find(|p| p.name == name)
            .expect("process")
    }
}

fn write_config(
    dir: &Path,
    name: &str,
    pg_url: &str,
    http_port: u16,
    ports: &[(ServiceName, String)],
) -> PathBuf {
    let mut cluster = format!("  cert_dir = \"{}\"\n", dir.join("certs").display());
    for (svc, addrs) in ports {
        cluster.push_str(&format!("  {} = {addrs}\n", svc.as_str()));
    }
    let seal_key = dir.join("seal.key");
    let path = dir.join(format!("{name}.hcl"));
    let text = format!(
        "storage \"postgresql\" {{\n  connection_url = \"{pg_url}\"\n}}\n\
         seal \"static\" {{\n  current_key_id = \"replicas-1\"\n  current_key = \"file://{key}\"\n}}\n\
         listener \"tcp\" {{\n  address = \"127.0.0.1:{http_port}\"\n  tls_disable = true\n}}\n\
         cluster {{\n{cluster}}}\n",
        key = seal_key.display()
    );
    std::fs::write(&path, text).expect("config");
    path
}

async fn start(pg_url: &str) -> Topology {
    let dir = tempfile::tempdir().expect("temp dir");
    let status = Command::new(bulwark_bin())
        .args(["certs", "-dir"])
        .arg(dir.path().join("certs"))
        .stdout(Stdio::null())
        .status()
        .expect("bulwark certs");
    assert!(status.success());
    // The static seal key (hex), read by the seal process only.
    std::fs::write(dir.path().join("seal.key"), "7f".repeat(32)).expect("seal key");
    let auth = [free_port(), free_port()].map(|p| format!("127.0.0.1:{p}"));
    let policy = [free_port(), free_port()].map(|p| format!("127.0.0.1:{p}"));
    let others: Vec<(ServiceName, String)> = ServiceName::ALL
        .iter()
        .filter(|s| {
            !matches!(
                s,
                ServiceName::Gateway | ServiceName::Auth | ServiceName::Policy
            )
        })
        .map(|s| (*s, format!("\"127.0.0.1:{}\"", free_port())))
        .collect();
    // Each replica's config names itself (or its preferred peers) first.
    let prefer = |first: usize| {
        let second = 1 - first;
        let mut v = others.clone();
        for (svc, addrs) in [(ServiceName::Auth, &auth), (ServiceName::Policy, &policy)] {
            let list = format!("[\"{}\", \"{}\"]", addrs[first], addrs[second]);
            v.push((svc, list));
        }
        v
    };
    let (http_a, http_b) = (free_port(), free_port());
    let cfg_a = write_config(dir.path(), "a", pg_url, http_a, &prefer(0));
    let cfg_b = write_config(dir.path(), "b", pg_url, http_b, &prefer(1));
    let env = vec![("RUST_LOG".to_string(), "info,sqlx=warn".to_string())];
    let mut procs = vec![];
    let mut run = |name: &str, cfg: &Path, target: &str| {
        procs.push(Proc::start_env(
            dir.path(),
            name,
            &[
                "server",
                "-config",
                cfg.to_str().expect("utf-8"),
                &format!("--target={target}"),
            ],
            &env,
        ));
    };
    for (svc, _) in &others {
        run(svc.as_str(), &cfg_a, svc.as_str());
    }
    run("auth-a", &cfg_a, "auth");
    run("auth-b", &cfg_b, "auth");
    run("policy-a", &cfg_a, "policy");
    run("policy-b", &cfg_b, "policy");
    run("gateway-a", &cfg_a, "gateway");
    run("gateway-b", &cfg_b, "gateway");
    Topology {
        _dir: dir,
        procs,
        gw_a: format!("http://127.0.0.1:{http_a}"),
        gw_b: format!("http://127.0.0.1:{http_b}"),
    }
}

async fn token(api: &Api, policies: &[&str]) -> String {
    let r = api
        .put("auth/token/create", json!({ "policies": policies }))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    r.body["auth"]["client_token"]
        .as_str()
        .expect("token")
        .to_string()
}

/// Waits until `who`'s log says it took the lease expiration lock.
fn holds_lock(t: &Topology, who: &str) -> bool {
    t.procs
        .iter()
        .find(|p| p.name == who)
        .map(|p| std::fs::read_to_string(&p.stderr).unwrap_or_default())
        .is_some_and(|log| log.contains("this replica now expires leases"))
}

async fn revocations(url: &str, name: &str) -> i64 {
    let mut c = sqlx::PgConnection::connect(url).await.expect("pg");
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM revocations WHERE name = $1")
        .bind(name)
        .fetch_one(&mut c)
        .await
        .expect("count")
}

/// Reads credentials with a 2 s lease through `api`; returns (lease id, username).
async fn short_creds(api: &Api) -> (String, String) {
    let r = api.get("database/creds/short").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    (
        r.body["lease_id"].as_str().expect("lease").to_string(),
        r.body["data"]["username"]
            .as_str()
            .expect("user")
            .to_string(),
    )
}

/// Waits until the lease is gone (revoked by whichever replica expires).
async fn wait_expired(api: &Api, lease: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = api
            .put("sys/leases/lookup", json!({ "lease_id": lease }))
            .await;
        if r.status == 400 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "lease {lease} never expired: {:?}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_on_one_postgres_act_as_one_system() {
    let pg = TestPg::new().await;
    {
        let mut c = sqlx::PgConnection::connect(&pg.url).await.expect("pg");
        sqlx::query("CREATE TABLE revocations (name TEXT NOT NULL)")
            .execute(&mut c)
            .await
            .expect("table");
    }
    let mut t = start(&pg.url).await;
    let a = Api::new(&t.gw_a);
    let b = Api::new(&t.gw_b);
    // Auto-unseal: init returns recovery keys and every process is unsealed.
    let r = a
        .put(
            "sys/init",
            json!({"recovery_shares": 1, "recovery_threshold": 1}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["keys"].as_array().map(Vec::len), Some(0));
    let root = r.body["root_token"].as_str().expect("root").to_string();
    let st = a.get("sys/seal-status").await;
    assert_eq!(st.body["type"], "static");
    assert_eq!(st.body["sealed"], false);
    let (ra, rb) = (a.with_token(&root), b.with_token(&root));
    rb.wait_until("sys/health", |r| r.status == 200).await;

    // A mount made through A routes at once through B; data written
    // through A is read through B.
    let r = ra
        .put(
            "sys/mounts/secret",
            json!({"type": "kv", "options": {"version": "2"}}),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = ra
        .put("secret/data/app", json!({"data": {"password": "p1"}}))
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let r = rb.get("secret/data/app").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["data"]["data"]["password"], "p1");
    let r = rb
        .put("secret/data/app", json!({"data": {"password": "p2"}}))
        .await;
    assert_eq!(r.body["data"]["version"], 2);
    assert_eq!(
        ra.get("secret/data/app").await.body["data"]["data"]["password"],
        "p2"
    );

    // Revoked through A: refused by B on the very next request, every time
    // (B had the token cached).
    let r = ra
        .put(
            "sys/policies/acl/reader",
            json!({"policy": "path \"secret/data/*\" { capabilities = [\"read\"] }"}),
        )
        .await;
    assert_eq!(r.status, 204);
    for round in 0..10 {
        let tok = token(&ra, &["reader"]).await;
        let via_b = b.with_token(&tok);
        assert_eq!(
            via_b.get("secret/data/app").await.status,
            200,
            "round {round}"
        );
        assert_eq!(
            via_b.get("secret/data/app").await.status,
            200,
            "round {round}"
        );
        let r = a
            .with_token(&tok)
            .put("auth/token/revoke-self", json!({}))
            .await;
        assert_eq!(r.status, 204, "{:?}", r.body);
        assert_eq!(
            via_b.get("secret/data/app").await.status,
            403,
            "round {round}: B still accepts a token revoked through A"
        );
    }

    // A policy edit through one gateway and policy replica applies to the
    // other's very next decision, both ways, though both had it cached.
    let tok = token(&ra, &["reader"]).await;
    let policy =
        |path: &str| json!({"policy": format!("path \"{path}\" {{ capabilities = [\"read\"] }}")});
    for round in 0..6 {
        let (writer, other) = if round % 2 == 0 { (&ra, &b) } else { (&rb, &a) };
        let via_other = other.with_token(&tok);
        let r = writer
            .put("sys/policies/acl/reader", policy("secret/data/*"))
            .await;
        assert_eq!(r.status, 204, "{:?}", r.body);
        for _ in 0..2 {
            assert_eq!(
                via_other.get("secret/data/app").await.status,
                200,
                "round {round}"
            );
        }
        let r = writer
            .put("sys/policies/acl/reader", policy("secret/data/other"))
            .await;
        assert_eq!(r.status, 204, "{:?}", r.body);
        assert_eq!(
            via_other.get("secret/data/app").await.status,
            403,
            "round {round}: a stale policy decided on the other side"
        );
        let r = other.with_token(&root).get("sys/policies/acl/reader").await;
        assert!(
            r.body["data"]["policy"]
                .as_str()
                .is_some_and(|p| p.contains("secret/data/other")),
            "round {round}: {:?}",
            r.body
        );
    }

    // Leases expire once, whichever replica runs the expiration manager.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(holds_lock(&t, "auth-a") || holds_lock(&t, "auth-b")) {
        assert!(
            Instant::now() < deadline,
            "no auth replica took the expiration lock"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let holder = if holds_lock(&t, "auth-a") {
        "auth-a"
    } else {
        "auth-b"
    };
    let other = if holder == "auth-a" {
        "auth-b"
    } else {
        "auth-a"
    };
    assert!(!holds_lock(&t, other), "both auth replicas expire leases");
    let r = ra
        .put("sys/mounts/database", json!({"type": "database"}))
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let db_name = pg.url.rsplit('/').next().expect("database name");
    let r = ra
        .put(
            "database/config/pg",
            json!({
                "plugin_name": "postgresql-database-plugin",
                "connection_url": format!("postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:5432/{db_name}?sslmode=disable"),
                "username": "postgres",
                "password": "unused-with-trust-auth",
                "allowed_roles": ["short"],
            }),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let r = ra
        .put(
            "database/roles/short",
            json!({
                "db_name": "pg",
                "creation_statements": "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}';",
                "revocation_statements": "INSERT INTO revocations (name) VALUES ('{{name}}'); DROP ROLE IF EXISTS \"{{name}}\";",
                "default_ttl": "2s",
                "max_ttl": "10s",
            }),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    let (lease, user) = short_creds(&ra).await;
    wait_expired(&rb, &lease).await;
    // Both replicas have had time for another pass: still one revocation.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(revocations(&pg.url, &user).await, 1);

    // The lock holder dies: the other replica takes over, and the gateway
    // that preferred the dead replica moves to the live one.
    t.proc(holder).kill();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !holds_lock(&t, other) {
        assert!(
            Instant::now() < deadline,
            "{other} never took over the expiration lock"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for api in [&ra, &rb] {
        let r = api
            .wait_until("auth/token/lookup-self", |r| r.status == 200)
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
    }
    let (lease, user) = short_creds(&ra).await;
    wait_expired(&ra, &lease).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(revocations(&pg.url, &user).await, 1);
}
