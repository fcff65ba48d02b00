//! Transit throughput through the gateway against `bulwark server -dev`:
//! aes256-gcm96 encrypt and decrypt of a 64-byte plaintext, one item per
//! request and batches of 100 items per request. Each line gives requests
//! per second and, for batches, items (operations) per second.
//!
//! ```sh
//! cargo build --release --bin bulwark && cargo bench -p bulwark-e2e --bench transit
//! ```
//! Knobs: `BENCH_SECS` (default 5 per run).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bulwark_e2e::{load, Api};
use serde_json::{json, Value};

const BATCH: usize = 100;

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
        for (path, body) in [
            ("sys/mounts/transit", json!({"type": "transit"})),
            ("transit/keys/bench", json!({"type": "aes256-gcm96"})),
        ] {
            let r = root.put(path, body).await;
            assert!(r.status == 200 || r.status == 204, "{path}: {:?}", r.body);
        }
        let plaintext = STANDARD.encode([7u8; 64]);
        let one = root
            .put("transit/encrypt/bench", json!({ "plaintext": plaintext }))
            .await;
        let ciphertext = one.body["data"]["ciphertext"].clone();
        assert!(ciphertext.is_string(), "{:?}", one.body);
        let encrypt_batch = json!({
            "batch_input": vec![json!({ "plaintext": plaintext }); BATCH],
        });
        let r = root.put("transit/encrypt/bench", encrypt_batch.clone()).await;
        let decrypt_batch = json!({
            "batch_input": r.body["data"]["batch_results"]
                .as_array()
                .expect("batch results")
                .iter()
                .map(|x| json!({ "ciphertext": x["ciphertext"] }))
                .collect::<Vec<Value>>(),
        });
        println!(
            "bulwark server -dev (every service in one process, mTLS gRPC on loopback), {secs}s per run, 64-byte plaintexts"
        );
        let runs: [(&str, &str, Value, usize); 4] = [
            ("encrypt", "transit/encrypt/bench", json!({ "plaintext": plaintext }), 1),
            ("decrypt", "transit/decrypt/bench", json!({ "ciphertext": ciphertext }), 1),
            ("encrypt batch of 100", "transit/encrypt/bench", encrypt_batch, BATCH),
            ("decrypt batch of 100", "transit/decrypt/bench", decrypt_batch, BATCH),
        ];
        for (label, path, body, items) in runs {
            for c in [1u64, 4] {
                let api = root.clone();
                let body = body.clone();
                let out = load::run(secs, c, move |_, _| {
                    let api = api.clone();
                    let body = body.clone();
                    async move { api.put(path, body).await.status == 200 }
                })
                .await;
                let ops = out.per_sec * items as f64;
                println!("{label:<22} c={c:<3} {out}   {ops:>9.0} ops/s");
            }
        }
    });
    drop(server);
}
