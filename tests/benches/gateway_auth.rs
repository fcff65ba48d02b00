//! Gateway throughput for an authorized sys read (`GET sys/policy/p`), with a
//! token the gateway may cache and with one it may not (a token with a use
//! count must reach the auth service on every request).
//!
//! ```sh
//! cargo build --release --bin bulwark && cargo bench -p bulwark-e2e --bench gateway_auth
//! ```
//! Knobs: `BENCH_SECS` (default 5), `BENCH_CONCURRENCY` (default 16).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bulwark_e2e::{Api, Proc};
use serde_json::json;

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn run(api: &Api, label: &str, secs: u64, concurrency: u64) {
    let ok = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (api, ok, errors) = (api.clone(), ok.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let r = api.get("sys/policy/p").await;
                lat.push(t.elapsed());
                if r.status == 200 {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("bench task"));
    }
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "{label:<16} {:>9.0} req/s   p50 {:>6.2} ms   p99 {:>6.2} ms   errors {}",
        ok.load(Ordering::Relaxed) as f64 / secs as f64,
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        errors.load(Ordering::Relaxed)
    );
}

fn main() {
    let secs = env_num("BENCH_SECS", 5);
    let concurrency = env_num("BENCH_CONCURRENCY", 16);
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Proc::start(
        dir.path(),
        "dev",
        &[
            "server",
            "-dev",
            "-dev-root-token-id=root",
            "-dev-listen-address=127.0.0.1:0",
        ],
    );
    let addr = server.field("Api Address:").expect("api address");
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
        let cached = root.put("auth/token/create", json!({"policies": ["p"]})).await.body["auth"]["client_token"]
            .as_str()
            .expect("token")
            .to_string();
        let uncached = root
            .put("auth/token/create", json!({"policies": ["p"], "num_uses": 1_000_000_000i64}))
            .await
            .body["auth"]["client_token"]
            .as_str()
            .expect("token")
            .to_string();
        println!("GET sys/policy/p, {concurrency} clients, {secs}s each, server: bulwark server -dev (all services, one process)");
        run(&Api::new(&addr).with_token(&cached), "cached token", secs, concurrency).await;
        run(&Api::new(&addr).with_token(&uncached), "uncached token", secs, concurrency).await;
    });
    drop(server);
}
