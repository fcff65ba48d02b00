//! Audit end to end: every request and response recorded with secrets
//! HMAC'd, fail-closed when no device can record, log rotation on SIGHUP.

use std::time::Duration;

use bulwark_e2e::{init_unsealed, Cluster, Layout, Store};
use serde_json::{json, Value};

fn lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_records_hashes_and_fails_closed() {
    let c = Cluster::start(Layout::Separate, Store::SqliteFile);
    let api = c.client();
    let root_token = init_unsealed(&api).await;
    let root = api.with_token(&root_token);
    let log = c.dir.path().join("audit").join("audit.log");
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();

    // Bad input first: nothing enabled by any of these.
    let r = root.put("sys/audit/bad", json!({"type": "tape"})).await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    let r = root
        .put("sys/audit/bad", json!({"type": "file", "options": {}}))
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.errors()[0].contains("file_path is required"),
        "{:?}",
        r.errors()
    );
    let r = root
        .put(
            "sys/audit/bad",
            json!({"type": "file", "options": {"file_path": "/nonexistent/dir/x.log"}}),
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.errors()[0].contains("sanity check failed"),
        "{:?}",
        r.errors()
    );
    assert_eq!(
        root.put("sys/audit/bad", json!({"type": "file", "options": "x"}))
            .await
            .status,
        400
    );

    let r = root
        .put(
            "sys/audit/file",
            json!({"type": "file", "options": {"file_path": log.to_str().unwrap()}}),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(
        root.put(
            "sys/audit/file",
            json!({"type": "file", "options": {"file_path": log.to_str().unwrap()}})
        )
        .await
        .status,
        400,
        "duplicate path"
    );
    let listed = root.get("sys/audit").await;
    assert_eq!(listed.body["data"]["file/"]["type"], "file");
    assert_eq!(
        listed.body["file/"]["options"]["file_path"],
        log.to_str().unwrap()
    );

    // A kv write and read, a bad token, a permission-denied request.
    let secret = "correct-horse-battery-staple";
    assert_eq!(root.put("secret-kv/x", json!({})).await.status, 404);
    assert_eq!(
        root.put("sys/mounts/secret-kv", json!({"type": "kv-v2"}))
            .await
            .status,
        204
    );
    let w = root
        .put(
            "secret-kv/data/app",
            json!({"data": {"password": secret, "port": 5432}}),
        )
        .await;
    assert_eq!(w.status, 200, "{:?}", w.body);
    let r = root.get("secret-kv/data/app").await;
    assert_eq!(r.body["data"]["data"]["password"], secret);
    assert_eq!(
        api.with_token("hvs.not-a-token")
            .get("secret-kv/data/app")
            .await
            .status,
        403
    );
    root.put(
        "sys/policies/acl/nothing",
        json!({"policy": "path \"x\" { capabilities = [\"read\"] }"}),
    )
    .await;
    let t = root
        .put("auth/token/create", json!({"policies": ["nothing"]}))
        .await
        .body["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        api.with_token(&t).get("secret-kv/data/app").await.status,
        403
    );

    let entries = lines(&log);
    let raw = std::fs::read_to_string(&log).unwrap();
    assert!(!raw.contains(secret), "the secret appears in the clear");
    assert!(
        !raw.contains(&root_token),
        "the root token appears in the clear"
    );
    assert!(!raw.contains(&t), "a token appears in the clear");
    assert!(
        raw.lines().all(|l| l.starts_with("{\"time\":")),
        "time is the first key"
    );
    let find = |kind: &str, op: &str, path: &str| -> Vec<&Value> {
        entries
            .iter()
            .filter(|e| {
                e["type"] == kind
                    && e["request"]["operation"] == op
                    && e["request"]["path"] == path
                    && e["error"].is_null()
            })
            .collect()
    };
    let wreq = find("request", "create", "secret-kv/data/app");
    let wresp = find("response", "create", "secret-kv/data/app");
    assert_eq!(
        (wreq.len(), wresp.len()),
        (1, 1),
        "one request and one response entry for the write"
    );
    let hashed = wreq[0]["request"]["data"]["data"]["password"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(hashed.starts_with("hmac-sha256:"), "{hashed}");
    assert_eq!(
        wreq[0]["request"]["data"]["data"]["port"], 5432,
        "numbers are kept"
    );
    assert!(wreq[0]["auth"]["client_token"]
        .as_str()
        .unwrap()
        .starts_with("hmac-sha256:"));
    assert_eq!(wreq[0]["request"]["mount_type"], "kv");
    assert_eq!(wreq[0]["request"]["remote_address"], "127.0.0.1");
    assert!(wreq[0]["request"]["remote_port"].as_u64().unwrap_or(0) > 0);
    assert_eq!(wreq[0]["request"]["mount_point"], "secret-kv/");
    let read = find("response", "read", "secret-kv/data/app");
    assert_eq!(read.len(), 1);
    assert_eq!(
        read[0]["response"]["data"]["data"]["password"],
        hashed.as_str()
    );
    // sys/audit-hash gives the same hash.
    let h = root
        .put("sys/audit-hash/file", json!({"input": secret}))
        .await;
    assert_eq!(h.body["data"]["hash"], hashed.as_str());
    assert_eq!(h.body["hash"], hashed.as_str());
    // The bad token and the denied request are recorded with their error.
    let denied: Vec<&Value> = entries
        .iter()
        .filter(|e| {
            e["request"]["path"] == "secret-kv/data/app" && e["error"] == "permission denied"
        })
        .collect();
    assert_eq!(
        denied.len(),
        4,
        "request + response for each of the two refusals"
    );

    // A socket device: entries reach a listener of the test.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    // Accepts every connection (a SIGHUP makes the device reconnect).
    std::thread::spawn(move || {
        use std::io::BufRead;
        for s in listener.incoming().map_while(Result::ok) {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in std::io::BufReader::new(s).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let r = root
        .put("sys/audit/sock", json!({"type": "socket", "options": {"address": addr.to_string(), "socket_type": "tcp"}}))
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(root.delete("sys/audit/file").await.status, 204);
    assert_eq!(root.get("secret-kv/data/app").await.status, 200);
    let got: Vec<String> = (0..2)
        .map(|_| {
            rx.recv_timeout(Duration::from_secs(5))
                .expect("socket entry")
        })
        .collect();
    assert!(
        got.iter().any(|l| l.contains("\"type\":\"request\"")),
        "{got:?}"
    );
    assert!(
        !got.iter().any(|l| l.contains(secret)),
        "hashed on the socket too"
    );
    // A socket that cannot connect fails the sanity check.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let r = root
        .put(
            "sys/audit/dead",
            json!({"type": "socket", "options": {"address": closed_addr.to_string()}}),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);

    // Two devices, one failing: still served. Then only the failing one: 500.
    let log2 = c.dir.path().join("audit2").join("a.log");
    std::fs::create_dir_all(log2.parent().unwrap()).unwrap();
    let r = root
        .put(
            "sys/audit/file2",
            json!({"type": "file", "options": {"file_path": log2.to_str().unwrap()}}),
        )
        .await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    // Break file2: remove its directory and make the audit service reopen.
    let audit_proc = c
        .procs
        .iter()
        .find(|p| p.name == "audit")
        .expect("audit process");
    std::fs::remove_dir_all(log2.parent().unwrap()).unwrap();
    audit_proc.signal("HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        root.get("secret-kv/data/app").await.status,
        200,
        "sock still records"
    );
    // Mend file2, drop sock, break file2 again: now nothing can record.
    std::fs::create_dir_all(log2.parent().unwrap()).unwrap();
    audit_proc.signal("HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(root.delete("sys/audit/sock").await.status, 204);
    std::fs::remove_dir_all(log2.parent().unwrap()).unwrap();
    audit_proc.signal("HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = root
        .put(
            "secret-kv/data/app",
            json!({"data": {"password": "must-not-land"}}),
        )
        .await;
    assert_eq!(r.status, 500, "{:?}", r.body);
    // Restore: the device writes again, and the refused write never happened.
    std::fs::create_dir_all(log2.parent().unwrap()).unwrap();
    audit_proc.signal("HUP");
    let mut status = 0;
    for _ in 0..50 {
        status = root.get("secret-kv/data/app").await.status;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "service resumes once the device can write");
    let r = root.get("secret-kv/data/app").await;
    assert_eq!(
        r.body["data"]["data"]["password"], secret,
        "the refused write was not applied"
    );
    assert_eq!(r.body["data"]["metadata"]["version"], 1);

    // Rotation: rename, SIGHUP, keep writing; no entry is lost.
    let before = lines(&log2).len();
    let rotated = log2.with_extension("log.1");
    std::fs::rename(&log2, &rotated).unwrap();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let r = root.clone();
        tasks.push(tokio::spawn(async move {
            r.get(&format!("secret-kv/data/n{i}")).await.status
        }));
        if i == 10 {
            audit_proc.signal("HUP");
        }
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 404);
    }
    let after = lines(&rotated).len() + lines(&log2).len();
    assert_eq!(
        after,
        before + 40,
        "20 requests → 40 entries across both files"
    );
}
