//! Gateway throughput through the full path (token + ACL + engine over mTLS),
//! against `bulwark server -dev`:
//!
//! * an authorized sys read (`GET sys/policy/p`) with a token the gateway may
//!   cache and with one it may not (a token with a use count reaches the auth
//!   service on every request);
//! * kv v2 read and write with the root token at 1, 16 and 64 clients;
//! * kv v2 read at 16 clients with 0, 1 and 2 file audit devices (fsync'd,
//!   group-committed).
//!
//! ```sh
//! cargo build --release --bin bulwark && cargo bench -p bulwark-e2e --bench gateway_auth
//! ```
//! Knobs: `BENCH_SECS` (default 5 per run).

use bulwark_e2e::{load, Api};
use serde_json::json;

fn main() {
    let secs = bulwark_e2e::bench_secs();
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, addr) = bulwark_e2e::dev_server(dir.path(), &[]);
    let dir_path = dir.path().to_path_buf();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let root = Api::new(&addr).with_token("root");
        let r = root
            .put("sys/policies/acl/p", json!({"policy": "path \"sys/policy/*\" { capabilities = [\"read\"] }"}))
            .await;
        assert_eq!(r.status, 204, "{:?}", r.body);
        let token = |body: serde_json::Value| {
            let root = root.clone();
            async move {
                root.put("auth/token/create", body).await.body["auth"]["client_token"]
                    .as_str()
                    .expect("token")
                    .to_string()
            }
        };
        let cached = token(json!({"policies": ["p"]})).await;
        let uncached = token(json!({"policies": ["p"], "num_uses": 1_000_000_000i64})).await;
        println!("bulwark server -dev (every service in one process, mTLS gRPC on loopback), {secs}s per run");
        for (label, tok) in [("sys read, cached token", cached), ("sys read, uncached token", uncached)] {
            let api = Api::new(&addr).with_token(&tok);
            let out = load::run(secs, 16, move |_, _| {
                let api = api.clone();
                async move { api.get("sys/policy/p").await.status == 200 }
            })
            .await;
            println!("{label:<28} c=16  {out}");
        }
        for i in 0..100 {
            root.put(&format!("secret/data/bench/{i}"), json!({"data": {"password": "p", "user": "u"}})).await;
        }
        for c in [1u64, 16, 64] {
            let api = root.clone();
            let out = load::run(secs, c, move |_, i| {
                let api = api.clone();
                async move { api.get(&format!("secret/data/bench/{}", i % 100)).await.status == 200 }
            })
            .await;
            println!("{:<28} c={c:<3} {out}", "kv v2 read");
            let api = root.clone();
            let out = load::run(secs, c, move |w, i| {
                let api = api.clone();
                async move {
                    api.put(&format!("secret/data/w/{w}"), json!({"data": {"n": i.to_string()}}))
                        .await
                        .status
                        == 200
                }
            })
            .await;
            println!("{:<28} c={c:<3} {out}", "kv v2 write");
        }
        for devices in 0..=2u32 {
            if devices > 0 {
                let path = dir_path.join(format!("audit-{devices}.log"));
                let r = root
                    .put(
                        &format!("sys/audit/file{devices}"),
                        json!({"type": "file", "options": {"file_path": path.to_str().expect("utf-8 path")}}),
                    )
                    .await;
                assert_eq!(r.status, 204, "{:?}", r.body);
            }
            let api = root.clone();
            let out = load::run(secs, 16, move |_, i| {
                let api = api.clone();
                async move { api.get(&format!("secret/data/bench/{}", i % 100)).await.status == 200 }
            })
            .await;
            println!("{:<28} c=16  {out}", format!("kv v2 read, {devices} audit dev"));
        }
    });
    drop(server);
}
