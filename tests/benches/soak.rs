//! Soak (issue 13; not in CI): `bulwark server -dev` with a file audit
//! device under mixed traffic for a bounded time. Every interval prints the
//! server's RSS, open file descriptors, threads, live tokens and leases, so
//! that growth shows; at the end the short-lived tokens and leases made
//! during the run must have expired on time and RSS must be flat.
//!
//! ```sh
//! cargo build --release --bin bulwark && SOAK_SECS=600 cargo bench -p bulwark-e2e --bench soak
//! ```
//! Knobs: `SOAK_SECS` (default 60), `SOAK_CLIENTS` (default 8),
//! `SOAK_SAMPLE_SECS` (default `SOAK_SECS / 10`).

use std::time::{Duration, Instant};

use bulwark_e2e::{load, Api};
use serde_json::json;

/// One reading of the server process.
#[derive(Debug, Clone, Copy)]
struct Sample {
    rss_kb: u64,
    fds: usize,
    threads: u64,
}

fn sample(pid: u32) -> Sample {
    let field = |name: &str| bulwark_e2e::proc_status(pid, name).unwrap_or(0);
    Sample {
        rss_kb: field("VmRSS:"),
        threads: field("Threads:"),
        fds: std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| d.count())
            .unwrap_or(0),
    }
}

/// A gauge from `sys/metrics` (Prometheus text), summed over processes.
async fn gauge(root: &Api, name: &str) -> f64 {
    let (_, text) = root.get_text("sys/metrics?format=prometheus").await;
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with(&format!("{name}_")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn main() {
    let var = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let secs = var("SOAK_SECS", 60);
    let clients = var("SOAK_CLIENTS", 8);
    let every = var("SOAK_SAMPLE_SECS", (secs / 10).max(1));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, addr) = bulwark_e2e::dev_server(dir.path(), &[]);
    let pid = server.pid();
    let audit = dir.path().join("audit.log");
    rt.block_on(async {
        let root = Api::new(&addr).with_token("root");
        let r = root
            .put(
                "sys/audit/file",
                json!({"type": "file", "options": {"file_path": audit.to_str().expect("utf-8")}}),
            )
            .await;
        assert_eq!(r.status, 204, "{:?}", r.body);
        for (path, body) in [
            ("sys/auth/userpass", json!({"type": "userpass"})),
            (
                "auth/userpass/users/soak",
                json!({"password": "soak-password", "token_ttl": "20s"}),
            ),
            ("sys/mounts/transit", json!({"type": "transit"})),
            ("transit/keys/soak", json!({})),
        ] {
            let r = root.put(path, body).await;
            assert!(r.status < 300, "{path}: {:?}", r.body);
        }
        // The gauge is filled by the auth service's periodic count: wait for
        // it to count the root token before taking it as the baseline.
        let counted_by = Instant::now() + Duration::from_secs(30);
        let mut tokens_before = gauge(&root, "vault_token_count").await;
        while tokens_before < 1.0 && Instant::now() < counted_by {
            tokio::time::sleep(Duration::from_millis(500)).await;
            tokens_before = gauge(&root, "vault_token_count").await;
        }
        assert!(
            tokens_before >= 1.0,
            "the token gauge never counted the root token"
        );
        println!(
            "soak: {secs}s, {clients} clients, kv v2 read/write, short-lived tokens, \
             userpass logins (20 s tokens), transit encrypt; one file audit device"
        );
        println!("   t(s)    RSS(MB)   fds  threads   tokens   requests   errors");
        let start = Instant::now();
        let first = sample(pid);
        let mut samples = vec![(0u64, first)];
        let mut total = (0u64, 0u64);
        let deadline = start + Duration::from_secs(secs);
        while Instant::now() < deadline {
            let api = root.clone();
            let span = every.min(
                deadline
                    .saturating_duration_since(Instant::now())
                    .as_secs()
                    .max(1),
            );
            let out = load::run(span, clients, move |c, i| {
                let api = api.clone();
                async move {
                    match i % 10 {
                        0 => {
                            api.put(
                                "auth/token/create",
                                json!({"ttl": "15s", "policies": ["default"]}),
                            )
                            .await
                            .status
                                == 200
                        }
                        1 => {
                            api.put(
                                "auth/userpass/login/soak",
                                json!({"password": "soak-password"}),
                            )
                            .await
                            .status
                                == 200
                        }
                        2 => {
                            api.put("transit/encrypt/soak", json!({"plaintext": "c29haw=="}))
                                .await
                                .status
                                == 200
                        }
                        3..=5 => {
                            api.put(
                                &format!("secret/data/soak/{c}/{}", i % 50),
                                json!({"data": {"n": i.to_string()}}),
                            )
                            .await
                            .status
                                == 200
                        }
                        _ => {
                            let s = api
                                .get(&format!("secret/data/soak/{c}/{}", i % 50))
                                .await
                                .status;
                            s == 200 || s == 404
                        }
                    }
                }
            })
            .await;
            total.0 += out.ok + out.errors;
            total.1 += out.errors;
            let s = sample(pid);
            let t = start.elapsed().as_secs();
            samples.push((t, s));
            println!(
                "{t:>7} {:>10.1} {:>5} {:>8} {:>8.0} {:>10} {:>8}",
                s.rss_kb as f64 / 1024.0,
                s.fds,
                s.threads,
                gauge(&root, "vault_token_count").await,
                total.0,
                total.1
            );
        }
        // Every token made during the run lived 15–20 s: wait them out,
        // then the token count must be back where it started.
        let expired_by = Instant::now() + Duration::from_secs(45);
        let mut tokens = gauge(&root, "vault_token_count").await;
        while tokens > tokens_before && Instant::now() < expired_by {
            tokio::time::sleep(Duration::from_secs(2)).await;
            tokens = gauge(&root, "vault_token_count").await;
        }
        let last = sample(pid);
        // RSS after the first interval (warm caches) against the end.
        let warm = samples.get(1).map(|(_, s)| *s).unwrap_or(first);
        println!(
            "requests {}, errors {}; tokens before {tokens_before}, 45 s after the load {tokens}; \
             RSS warm {:.1} MB, end {:.1} MB; fds {} → {}; threads {} → {}",
            total.0,
            total.1,
            warm.rss_kb as f64 / 1024.0,
            last.rss_kb as f64 / 1024.0,
            warm.fds,
            last.fds,
            warm.threads,
            last.threads
        );
        assert_eq!(total.1, 0, "errors under soak");
        assert!(tokens <= tokens_before, "tokens did not expire on time");
    });
    drop(server);
}
