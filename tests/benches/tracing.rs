//! The cost of tracing on the full kv path (issue 10): `bulwark server -dev`
//! (token + ACL + kv over mTLS, one file audit device) measured three ways
//! in one run, each on a fresh server:
//!
//! * off: no OTLP endpoint (spans exist for context propagation only);
//! * on, sampling 0: exporter configured, no trace sampled;
//! * on, sampling 1.0: every trace exported over OTLP/gRPC to a collector
//!   in this process (which keeps nothing).
//!
//! ```sh
//! cargo build --release --bin bulwark && cargo bench -p bulwark-e2e --bench tracing
//! ```
//! Knobs: `BENCH_SECS` (default 5 per run), `BENCH_CLIENTS` (default 16).

use bulwark_e2e::otlp::{grpc_collector, Collector};
use bulwark_e2e::{load, Api};
use serde_json::json;

fn main() {
    let var = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (secs, clients) = (var("BENCH_SECS", 5), var("BENCH_CLIENTS", 16));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let collector = Collector::default();
    let endpoint = rt.block_on(grpc_collector(collector.clone()));
    println!(
        "bulwark server -dev, kv v2 with one file audit device, {clients} clients, {secs}s per run"
    );
    let modes: [(&str, Option<&str>); 3] = [
        ("tracing off", None),
        ("OTLP on, sampling 0", Some("0")),
        ("OTLP on, sampling 1.0", Some("1.0")),
    ];
    for (label, ratio) in modes {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut env = vec![];
        if let Some(r) = ratio {
            env.push(("OTEL_EXPORTER_OTLP_ENDPOINT".to_string(), endpoint.clone()));
            env.push(("OTEL_TRACES_SAMPLER_ARG".to_string(), r.to_string()));
        }
        let (server, addr) = bulwark_e2e::dev_server(dir.path(), &env);
        let audit = dir.path().join("audit.log");
        collector.clear();
        rt.block_on(async {
            let root = Api::new(&addr).with_token("root");
            let r = root
                .put(
                    "sys/audit/file",
                    json!({"type": "file", "options": {"file_path": audit.to_str().expect("utf-8")}}),
                )
                .await;
            assert_eq!(r.status, 204, "{:?}", r.body);
            for i in 0..100 {
                root.put(
                    &format!("secret/data/bench/{i}"),
                    json!({"data": {"password": "p", "user": "u"}}),
                )
                .await;
            }
            let api = root.clone();
            let read = load::run(secs, clients, move |_, i| {
                let api = api.clone();
                async move {
                    api.get(&format!("secret/data/bench/{}", i % 100))
                        .await
                        .status
                        == 200
                }
            })
            .await;
            let api = root.clone();
            let write = load::run(secs, clients, move |w, i| {
                let api = api.clone();
                async move {
                    api.put(
                        &format!("secret/data/w/{w}"),
                        json!({"data": {"n": i.to_string()}}),
                    )
                    .await
                    .status
                        == 200
                }
            })
            .await;
            println!("{label:<24} kv v2 read   {read}");
            println!("{label:<24} kv v2 write  {write}");
        });
        // Let the last batch arrive before counting.
        std::thread::sleep(std::time::Duration::from_millis(1500));
        println!("{label:<24} spans exported: {}", collector.len());
        drop(server);
    }
}
