//! Graceful shutdown (issue 11): SIGTERM under a steady load of kv writes
//! lets in-flight requests finish, flushes the audit log and exits 0; after
//! a restart (auto-unsealed) every acknowledged write is there.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bulwark_e2e::{Api, Cluster, Layout, Options, Store};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_drains_flushes_and_loses_nothing() {
    let key_dir = tempfile::tempdir().unwrap();
    let key = key_dir.path().join("seal.key");
    std::fs::write(&key, "5a".repeat(32)).unwrap();
    let mut c = Cluster::start_with(
        Layout::AllInOne,
        Store::SqliteFile,
        Options {
            extra_config: format!(
                "seal \"static\" {{\n  current_key_id = \"k1\"\n  current_key = \"file://{}\"\n}}\n",
                key.display()
            ),
            ..Default::default()
        },
    );
    let api = c.client();
    let r = api
        .put(
            "sys/init",
            json!({"recovery_shares": 1, "recovery_threshold": 1}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let root = api.with_token(r.body["root_token"].as_str().unwrap());
    let r = root
        .put(
            "sys/mounts/secret",
            json!({"type": "kv", "options": {"version": "2"}}),
        )
        .await;
    assert_eq!(r.status, 204);
    let audit = c.dir.path().join("audit.log");
    let r = root
        .put(
            "sys/audit/file",
            json!({"type": "file", "options": {"file_path": audit.display().to_string()}}),
        )
        .await;
    assert_eq!(r.status, 204);

    // Writers: each its own key, counting up; remember the last acknowledged.
    let acked: Arc<Mutex<BTreeMap<u32, u64>>> = Arc::default();
    let mut writers = vec![];
    for w in 0..8u32 {
        let (root, acked) = (root.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for n in 1u64.. {
                let sent = tokio::spawn({
                    let root = root.clone();
                    async move {
                        root.put(&format!("secret/data/w{w}"), json!({"data": {"n": n}}))
                            .await
                            .status
                    }
                })
                .await;
                match sent {
                    Ok(200) => {
                        acked.lock().unwrap().insert(w, n);
                    }
                    // Refused while stopping, or the connection is gone.
                    _ => return,
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    c.procs[0].signal("TERM");
    let status = tokio::task::block_in_place(|| c.procs[0].wait_exit(Duration::from_secs(20)));
    let status = status.expect("the server exits after SIGTERM");
    assert!(status.success(), "exit status {status}");
    for w in writers {
        let _ = w.await;
    }
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), 8, "every writer had writes acknowledged");

    // The audit log ends with complete lines.
    let log = std::fs::read_to_string(&audit).unwrap();
    assert!(log.ends_with('\n'));
    for line in log.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("a complete audit entry");
    }

    // Restarted (and unsealed by itself): every acknowledged write is there.
    c.restart();
    let root = Api::new(&c.http).with_token(root.token.as_deref().unwrap());
    root.wait_until("sys/health", |r| r.status == 200).await;
    let mut total = 0;
    for (w, n) in &acked {
        let r = root.get(&format!("secret/data/w{w}")).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let stored = r.body["data"]["data"]["n"].as_u64().unwrap();
        assert!(
            stored >= *n,
            "writer {w}: acknowledged {n}, stored {stored}"
        );
        total += n;
    }
    println!("acked {total} writes across 8 writers; all readable after restart");
}
