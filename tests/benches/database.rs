//! Database engine throughput through the gateway against `bulwark server
//! -dev` and the machine's PostgreSQL (trust auth, `BULWARK_TEST_PG_URL`):
//! credentials issued per second (a `CREATE ROLE` in PostgreSQL plus a lease
//! registered with the auth service per request) and revocations per second
//! (`sys/leases/revoke` with sync: the engine drops the role, then the lease
//! is deleted).
//!
//! ```sh
//! cargo build --release --bin bulwark && cargo bench -p bulwark-e2e --bench database
//! ```
//! Knobs: `BENCH_SECS` (default 5 per run).

use std::sync::{Arc, Mutex};

use bulwark_e2e::{load, Api};
use serde_json::json;

fn main() {
    let secs = bulwark_e2e::bench_secs();
    let pg = std::env::var("BULWARK_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, addr) = bulwark_e2e::dev_server(dir.path(), &[]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let root = Api::new(&addr).with_token("root");
        for (path, body) in [
            ("sys/mounts/database", json!({"type": "database"})),
            (
                "database/config/pg",
                json!({
                    "plugin_name": "postgresql-database-plugin",
                    "connection_url": pg.replacen("postgres@", "{{username}}@", 1),
                    "username": "postgres",
                    "allowed_roles": "bench",
                    "max_open_connections": 8,
                }),
            ),
            (
                "database/roles/bench",
                json!({
                    "db_name": "pg",
                    "creation_statements": "CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';",
                    "default_ttl": "1h",
                }),
            ),
        ] {
            let r = root.put(path, body).await;
            assert_eq!(r.status, 204, "{path}: {:?}", r.body);
        }
        println!("bulwark server -dev (every service in one process, mTLS gRPC on loopback), PostgreSQL on loopback, {secs}s per run");
        let leases = Arc::new(Mutex::new(Vec::new()));
        for c in [1u64, 8] {
            let (api, leases) = (root.clone(), leases.clone());
            let out = load::run(secs, c, move |_, _| {
                let (api, leases) = (api.clone(), leases.clone());
                async move {
                    let r = api.get("database/creds/bench").await;
                    match r.body["lease_id"].as_str() {
                        Some(l) if r.status == 200 => {
                            leases.lock().expect("leases").push(l.to_string());
                            true
                        }
                        _ => false,
                    }
                }
            })
            .await;
            println!("{:<24} c={c:<3} {out}", "creds issued");
        }
        let issued = leases.lock().expect("leases").len();
        for c in [1u64, 8] {
            let (api, leases) = (root.clone(), leases.clone());
            let out = load::run(secs, c, move |_, _| {
                let (api, leases) = (api.clone(), leases.clone());
                async move {
                    let Some(l) = leases.lock().expect("leases").pop() else {
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        return false;
                    };
                    api.put("sys/leases/revoke", json!({"lease_id": l, "sync": true}))
                        .await
                        .status
                        == 204
                }
            })
            .await;
            println!("{:<24} c={c:<3} {out}", "leases revoked");
        }
        println!("({issued} credentials issued in all; errors in the revoke runs are idle polls once none are left)");
        let r = root
            .put("sys/leases/revoke-prefix/database/creds/bench", json!({}))
            .await;
        assert_eq!(r.status, 204, "{:?}", r.body);
    });
    drop(server);
}
