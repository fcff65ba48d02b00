//! Login throughput through the gateway against `bulwark server -dev`:
//! userpass (argon2id password check, see `services/auth` for the
//! parameters) and AppRole (HMAC'd SecretID lookup, no password hashing),
//! each minting a real token per login.
//!
//! ```sh
//! cargo build --release --bin bulwark && cargo bench -p bulwark-e2e --bench logins
//! ```
//! Knobs: `BENCH_SECS` (default 5 per run).

use bulwark_e2e::{load, Api};
use serde_json::json;

fn main() {
    let secs = bulwark_e2e::bench_secs();
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, addr) = bulwark_e2e::dev_server(dir.path(), &[]);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let root = Api::new(&addr).with_token("root");
        for (path, ty) in [("sys/auth/userpass", "userpass"), ("sys/auth/approle", "approle")] {
            let r = root.put(path, json!({ "type": ty })).await;
            assert_eq!(r.status, 204, "{:?}", r.body);
        }
        let r = root
            .put(
                "auth/userpass/users/bench",
                json!({"password": "correct horse battery staple", "token_policies": "default"}),
            )
            .await;
        assert_eq!(r.status, 204, "{:?}", r.body);
        let r = root
            .put("auth/approle/role/bench", json!({"token_policies": "default"}))
            .await;
        assert_eq!(r.status, 204, "{:?}", r.body);
        let role_id = root.get("auth/approle/role/bench/role-id").await.body["data"]["role_id"]
            .as_str()
            .expect("role_id")
            .to_string();
        let secret_id = root.put("auth/approle/role/bench/secret-id", json!({})).await.body
            ["data"]["secret_id"]
            .as_str()
            .expect("secret_id")
            .to_string();
        println!("bulwark server -dev (every service in one process, mTLS gRPC on loopback), {secs}s per run");
        for c in [1u64, 4, 16] {
            let before = password_checks(&root).await;
            let api = Api::new(&addr);
            let out = load::run(secs, c, move |_, _| {
                let api = api.clone();
                async move {
                    api.put(
                        "auth/userpass/login/bench",
                        json!({"password": "correct horse battery staple"}),
                    )
                    .await
                    .status
                        == 200
                }
            })
            .await;
            println!("{:<24} c={c:<3} {out}", "userpass login");
            // The split: the auth service times each password check
            // (`bulwark_auth_password_check_seconds`); the rest of a login's
            // latency is everything else (HTTP, audit, token, storage).
            let (n, secs_hashing) = password_checks(&root).await;
            let checks = n - before.0;
            if checks > 0.0 && c == 1 {
                let hash_ms = (secs_hashing - before.1) / checks * 1e3;
                let login_ms = out.p50.as_secs_f64() * 1e3;
                println!(
                    "{:<24} c={c:<3} password check {hash_ms:.2} ms of a {login_ms:.2} ms login (p50): {:.1}% argon2id, {:.2} ms the rest",
                    "  split",
                    hash_ms / login_ms * 100.0,
                    login_ms - hash_ms
                );
            }
        }
        for c in [1u64, 16, 64] {
            let api = Api::new(&addr);
            let (role_id, secret_id) = (role_id.clone(), secret_id.clone());
            let out = load::run(secs, c, move |_, _| {
                let api = api.clone();
                let body = json!({"role_id": role_id, "secret_id": secret_id});
                async move { api.put("auth/approle/login", body).await.status == 200 }
            })
            .await;
            println!("{:<24} c={c:<3} {out}", "approle login");
        }
    });
    drop(server);
}

/// How many password checks the auth service made, and their total seconds.
async fn password_checks(root: &Api) -> (f64, f64) {
    let r = root.get("sys/metrics").await;
    let samples = r.body["Samples"].as_array().cloned().unwrap_or_default();
    samples
        .iter()
        .filter(|s| s["Name"] == "bulwark_auth_password_check_seconds")
        .fold((0.0, 0.0), |(n, sum), s| {
            (
                n + s["Count"].as_f64().unwrap_or(0.0),
                sum + s["Sum"].as_f64().unwrap_or(0.0),
            )
        })
}
