//! The broker end to end on in-memory storage and temporary files.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::AsyncBufReadExt;

use super::*;
use crate::error::NOT_RECORDED;
use crate::test_util::harness;

fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn device(path: &str, kind: &str, pairs: &[(&str, &str)]) -> DeviceConfig {
    DeviceConfig {
        path: path.into(),
        kind: kind.into(),
        description: format!("{kind} device"),
        options: opts(pairs),
        local: false,
    }
}

fn file_device(path: &str, file: &Path, extra: &[(&str, &str)]) -> DeviceConfig {
    let file = file.to_string_lossy().to_string();
    let mut pairs = vec![("file_path", file.as_str())];
    pairs.extend_from_slice(extra);
    device(path, "file", &pairs)
}

fn lines(file: &Path) -> Vec<String> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn parsed(file: &Path) -> Vec<Value> {
    lines(file)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const SECRETS: [&str; 5] = [
    "s.SECRETTOKEN",
    "ACCESSOR-ONE",
    "hunter2",
    "alpha-PRIVATE",
    "s.WRAPPED",
];

fn request_entry() -> Value {
    json!({
        "time": "2024-05-01T10:00:00.000000001Z",
        "type": "request",
        "auth": {
            "client_token": "s.SECRETTOKEN", "accessor": "ACCESSOR-ONE",
            "display_name": "userpass-bob", "policies": ["default"],
            "metadata": {"username": "bob"}, "token_ttl": 3600
        },
        "request": {
            "id": "req-1", "operation": "update", "path": "secret/data/app",
            "client_token": "s.SECRETTOKEN", "client_token_accessor": "ACCESSOR-ONE",
            "remote_address": "10.0.0.1", "namespace": {"id": "root"},
            "data": {
                "data": {"password": "hunter2", "pin": 1234, "enabled": true,
                         "tags": ["alpha-PRIVATE", ""]},
                "options": {"cas": 0},
                "note": "keep-me-visible"
            }
        }
    })
}

fn response_entry() -> Value {
    let mut entry = request_entry();
    entry["type"] = json!("response");
    entry["response"] = json!({
        "mount_type": "kv",
        "data": {"version": 3, "created_time": "2024-05-01T10:00:00Z", "shown": "plain-out"},
        "wrap_info": {"token": "s.WRAPPED", "accessor": "wrap-ACCESSOR-ONE", "ttl": 60}
    });
    entry
}

async fn log(broker: &AuditBroker, entry: &Value) -> Result<u32, AuditError> {
    broker
        .log(entry.to_string().as_bytes(), NonHmacKeys::default())
        .await
}

#[tokio::test]
async fn file_device_hashes_and_keeps_what_vault_does() {
    let h = harness().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.log");
    h.broker
        .enable(file_device("file", &file, &[]))
        .await
        .unwrap();
    let keep_req = vec!["note".to_string()];
    let keep_resp = vec!["shown".to_string()];
    let non_hmac = NonHmacKeys {
        request: &keep_req,
        response: &keep_resp,
    };
    for entry in [request_entry(), response_entry()] {
        let recorded = h
            .broker
            .log(entry.to_string().as_bytes(), non_hmac)
            .await
            .unwrap();
        assert_eq!(recorded, 1);
    }
    let raw = lines(&file);
    assert_eq!(raw.len(), 2);
    for line in &raw {
        assert!(
            line.starts_with("{\"time\":\"2024-05-01T10:00:00.000000001Z\","),
            "{line}"
        );
    }
    let text = std::fs::read_to_string(&file).unwrap();
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret} leaked");
    }
    let hash = |s: &str| {
        let broker = h.broker.clone();
        let s = s.to_string();
        async move { broker.hash("file/", &s).await.unwrap() }
    };
    let v = parsed(&file);
    let (req, resp) = (&v[0], &v[1]);
    assert_eq!(req["type"], "request");
    assert_eq!(resp["type"], "response");
    for e in [req, resp] {
        assert_eq!(e["auth"]["client_token"], hash("s.SECRETTOKEN").await);
        assert_eq!(e["auth"]["accessor"], hash("ACCESSOR-ONE").await);
        assert_eq!(e["auth"]["display_name"], "userpass-bob");
        assert_eq!(e["auth"]["metadata"]["username"], "bob");
        assert_eq!(e["auth"]["token_ttl"], 3600);
        assert_eq!(e["request"]["client_token"], hash("s.SECRETTOKEN").await);
        assert_eq!(
            e["request"]["client_token_accessor"],
            hash("ACCESSOR-ONE").await
        );
        assert_eq!(e["request"]["path"], "secret/data/app");
        assert_eq!(e["request"]["operation"], "update");
        assert_eq!(e["request"]["remote_address"], "10.0.0.1");
        let data = &e["request"]["data"];
        assert_eq!(data["data"]["password"], hash("hunter2").await);
        assert_eq!(data["data"]["pin"], 1234);
        assert_eq!(data["data"]["enabled"], true);
        assert_eq!(
            data["data"]["tags"],
            json!([hash("alpha-PRIVATE").await, ""])
        );
        assert_eq!(data["options"]["cas"], 0);
        assert_eq!(data["note"], "keep-me-visible");
    }
    assert!(req.get("response").is_none());
    assert_eq!(resp["response"]["data"]["version"], 3);
    assert_eq!(
        resp["response"]["data"]["created_time"],
        hash("2024-05-01T10:00:00Z").await
    );
    assert_eq!(resp["response"]["data"]["shown"], "plain-out");
    assert_eq!(resp["response"]["mount_type"], "kv");
    assert_eq!(
        resp["response"]["wrap_info"]["token"],
        hash("s.WRAPPED").await
    );
    assert_eq!(
        resp["response"]["wrap_info"]["accessor"],
        hash("wrap-ACCESSOR-ONE").await
    );
    assert_eq!(resp["response"]["wrap_info"]["ttl"], 60);
}

#[tokio::test]
async fn raw_accessor_prefix_jsonx_and_elision_options() {
    let h = harness().await;
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("raw.log");
    let accessors = dir.path().join("accessors.log");
    let prefixed = dir.path().join("prefixed.log");
    let xml = dir.path().join("xml.log");
    let elided = dir.path().join("elided.log");
    let b = &h.broker;
    b.enable(file_device("raw", &raw, &[("log_raw", "true")]))
        .await
        .unwrap();
    b.enable(file_device(
        "accessors",
        &accessors,
        &[("hmac_accessor", "false")],
    ))
    .await
    .unwrap();
    b.enable(file_device("prefixed", &prefixed, &[("prefix", "AUDIT: ")]))
        .await
        .unwrap();
    b.enable(file_device("xml", &xml, &[("format", "jsonx")]))
        .await
        .unwrap();
    b.enable(file_device(
        "elided",
        &elided,
        &[("elide_list_responses", "true")],
    ))
    .await
    .unwrap();
    assert_eq!(log(b, &response_entry()).await.unwrap(), 5);

    // log_raw: the entry as given.
    let v = parsed(&raw);
    assert_eq!(v, vec![response_entry()]);

    // hmac_accessor=false: accessors in the clear, tokens still hashed.
    let v = &parsed(&accessors)[0];
    assert_eq!(v["auth"]["accessor"], "ACCESSOR-ONE");
    assert_eq!(v["request"]["client_token_accessor"], "ACCESSOR-ONE");
    assert_eq!(v["response"]["wrap_info"]["accessor"], "wrap-ACCESSOR-ONE");
    assert_eq!(
        v["auth"]["client_token"],
        b.hash("accessors/", "s.SECRETTOKEN").await.unwrap()
    );

    // prefix: before every line.
    let line = &lines(&prefixed)[0];
    let json = line.strip_prefix("AUDIT: ").expect("prefixed");
    assert!(json.starts_with("{\"time\":"));
    let v: Value = serde_json::from_str(json).unwrap();
    assert_eq!(
        v["request"]["data"]["data"]["password"],
        b.hash("prefixed/", "hunter2").await.unwrap()
    );

    // jsonx: one XML document per line, time first, secrets hashed.
    let text = std::fs::read_to_string(&xml).unwrap();
    assert_eq!(text.lines().count(), 1);
    assert!(text.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?><json:object "));
    assert!(text.contains(
        "jsonx\"><json:string name=\"time\">2024-05-01T10:00:00.000000001Z</json:string>"
    ));
    let pw = b.hash("xml/", "hunter2").await.unwrap();
    assert!(text.contains(&format!(
        "<json:string name=\"password\">{pw}</json:string>"
    )));
    assert!(text.contains("<json:number name=\"pin\">1234</json:number>"));
    for secret in SECRETS {
        assert!(!text.contains(secret), "{secret} leaked");
    }

    // Elision: a list response keeps the number of keys only.
    let mut list = response_entry();
    list["request"]["operation"] = json!("list");
    list["response"]["data"] = json!({"keys": ["a", "b/", "c"]});
    log(b, &list).await.unwrap();
    let v = &parsed(&elided)[1];
    assert_eq!(v["response"]["data"]["keys"], 3);
    let v = &parsed(&raw)[1];
    assert_eq!(v["response"]["data"]["keys"], json!(["a", "b/", "c"]));
}

#[tokio::test]
async fn refusals_at_enable() {
    let h = harness().await;
    let dir = tempfile::tempdir().unwrap();
    let b = &h.broker;
    let message = |r: Result<(), AuditError>| {
        let status = tonic::Status::from(r.unwrap_err());
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        status.message().to_string()
    };
    let missing = dir.path().join("no/such/dir/audit.log");
    let m = message(b.enable(file_device("file", &missing, &[])).await);
    assert!(
        m.starts_with(&format!(
            "sanity check failed; unable to open {:?} for writing: ",
            missing.to_string_lossy()
        )),
        "{m}"
    );
    assert_eq!(
        message(b.enable(device("file", "file", &[])).await),
        "file_path is required"
    );
    assert_eq!(
        message(b.enable(device("x", "kafka", &[])).await),
        "unknown audit backend type: kafka"
    );
    let m = message(
        b.enable(device(
            "file",
            "file",
            &[("file_path", "discard"), ("bogus", "1")],
        ))
        .await,
    );
    assert!(m.contains("unknown option \"bogus\""), "{m}");
    let m = message(
        b.enable(device(
            "file",
            "file",
            &[("file_path", "discard"), ("hmac_accessor", "maybe")],
        ))
        .await,
    );
    assert!(m.contains("hmac_accessor"), "{m}");
    assert!(message(
        b.enable(device("", "file", &[("file_path", "discard")]))
            .await
    )
    .contains("invalid audit path"));

    // Nothing refused above was stored.
    assert!(b.list().await.unwrap().is_empty());

    b.enable(device("file", "file", &[("file_path", "discard")]))
        .await
        .unwrap();
    for taken in ["file", "/file/", "file/nested", "file/nested/"] {
        assert_eq!(
            message(
                b.enable(device(taken, "file", &[("file_path", "discard")]))
                    .await
            ),
            "path already in use",
            "{taken}"
        );
    }
    b.enable(device("team/a", "file", &[("file_path", "discard")]))
        .await
        .unwrap();
    assert_eq!(
        message(
            b.enable(device("team", "file", &[("file_path", "discard")]))
                .await
        ),
        "path already in use"
    );
    let paths: Vec<String> = b
        .list()
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.path)
        .collect();
    assert_eq!(paths, vec!["file/", "team/a/"]);
}

#[tokio::test]
async fn fail_closed_when_no_device_records() {
    let h = harness().await;
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let file = sub.join("audit.log");
    let b = &h.broker;
    // No device: nothing to record, nothing refused.
    assert_eq!(log(b, &request_entry()).await.unwrap(), 0);

    b.enable(file_device("file", &file, &[])).await.unwrap();
    assert_eq!(log(b, &request_entry()).await.unwrap(), 1);
    // The directory goes away: reopening fails, and so does every write.
    std::fs::remove_dir_all(&sub).unwrap();
    match b.reopen().await {
        Err(AuditError::Reopen(paths)) => assert_eq!(paths, vec!["file/"]),
        other => panic!("reopen: {other:?}"),
    }
    let status = tonic::Status::from(log(b, &request_entry()).await.unwrap_err());
    assert_eq!(
        (status.code(), status.message()),
        (tonic::Code::Internal, NOT_RECORDED)
    );

    // A second device that works: the entry is recorded once, and Ok.
    let ok_file = dir.path().join("ok.log");
    b.enable(file_device("ok", &ok_file, &[])).await.unwrap();
    assert_eq!(log(b, &request_entry()).await.unwrap(), 1);
    assert_eq!(lines(&ok_file).len(), 1);

    // The directory comes back: the failed device recovers on its next batch.
    std::fs::create_dir(&sub).unwrap();
    assert_eq!(log(b, &request_entry()).await.unwrap(), 2);
    assert_eq!(lines(&file).len(), 1);
}

#[tokio::test]
async fn a_device_that_cannot_write_fails_closed() {
    if !Path::new("/dev/full").exists() {
        return;
    }
    let h = harness().await;
    let b = &h.broker;
    b.enable(file_device(
        "full",
        Path::new("/dev/full"),
        &[("mode", "0000")],
    ))
    .await
    .unwrap();
    let err = log(b, &request_entry()).await.unwrap_err();
    assert!(matches!(err, AuditError::NotRecorded));
    b.enable(device("discard", "file", &[("file_path", "discard")]))
        .await
        .unwrap();
    assert_eq!(log(b, &request_entry()).await.unwrap(), 1);
}

#[tokio::test]
async fn a_restart_reopens_devices_and_counts_the_unopenable_as_failed() {
    let h = harness().await;
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let file = sub.join("audit.log");
    h.broker
        .enable(file_device("file", &file, &[("prefix", "P:")]))
        .await
        .unwrap();
    log(&h.broker, &request_entry()).await.unwrap();
    let before = h.broker.hash("file", "x").await.unwrap();

    // Stored through the barrier: neither the options nor the salt in the clear.
    let raw = h.raw.get("device/file%2F").await.unwrap().unwrap();
    assert!(!raw.windows(4).any(|w| w == b"file"));

    let b = h.restart().await;
    assert_eq!(b.hash("file/", "x").await.unwrap(), before);
    let listed = b.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].path, "file/");
    assert_eq!(listed[0].kind, "file");
    assert_eq!(listed[0].description, "file device");
    assert_eq!(listed[0].options["prefix"], "P:");
    assert_eq!(log(&b, &request_entry()).await.unwrap(), 1);
    assert_eq!(lines(&file).len(), 2);
    assert!(lines(&file).iter().all(|l| l.starts_with("P:{\"time\":")));

    // Restarted with a file it cannot open: failed, closed.
    b.unload().await;
    std::fs::remove_dir_all(&sub).unwrap();
    let b = h.restart().await;
    assert!(matches!(
        log(&b, &request_entry()).await,
        Err(AuditError::NotRecorded)
    ));
}

#[tokio::test]
async fn disable_and_reenable_gets_a_new_salt() {
    let h = harness().await;
    let b = &h.broker;
    b.enable(device("file", "file", &[("file_path", "discard")]))
        .await
        .unwrap();
    let first = b.hash("file/", "s.SECRETTOKEN").await.unwrap();
    assert_eq!(first, b.hash("/file", "s.SECRETTOKEN").await.unwrap());
    assert!(first.starts_with("hmac-sha256:"));
    assert!(matches!(
        b.hash("file/", "").await,
        Err(AuditError::Invalid(m)) if m == "the \"input\" parameter is empty"
    ));
    b.disable("file").await.unwrap();
    // Missing: no error.
    b.disable("file").await.unwrap();
    assert!(matches!(
        b.hash("file/", "x").await,
        Err(AuditError::UnknownDevice)
    ));
    assert_eq!(log(b, &request_entry()).await.unwrap(), 0);
    b.enable(device("file", "file", &[("file_path", "discard")]))
        .await
        .unwrap();
    let second = b.hash("file/", "s.SECRETTOKEN").await.unwrap();
    assert_ne!(first, second);
    // And it sticks across a restart.
    let b = h.restart().await;
    assert_eq!(b.hash("file/", "s.SECRETTOKEN").await.unwrap(), second);
}

#[tokio::test]
async fn socket_device_sends_lines() {
    let h = harness().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = tokio::io::BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let _ = tx.send(line);
                }
            });
        }
    });
    h.broker
        .enable(device("sock", "socket", &[("address", &addr)]))
        .await
        .unwrap();
    log(&h.broker, &request_entry()).await.unwrap();
    log(&h.broker, &response_entry()).await.unwrap();
    for want in ["request", "response"] {
        let line = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(line.starts_with("{\"time\":"), "{line}");
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["type"], want);
        assert_eq!(
            v["auth"]["client_token"],
            h.broker.hash("sock/", "s.SECRETTOKEN").await.unwrap()
        );
    }

    // Nobody listening: the sanity check refuses it.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let err = h
        .broker
        .enable(device("dead", "socket", &[("address", &closed)]))
        .await
        .unwrap_err();
    assert!(
        err.to_string().starts_with("sanity check failed; "),
        "{err}"
    );
}

#[tokio::test]
async fn syslog_device_sends_datagrams() {
    let h = harness().await;
    let server = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap().to_string();
    h.broker
        .enable(device(
            "syslog",
            "syslog",
            &[("address", &addr), ("tag", "bulwark-audit")],
        ))
        .await
        .unwrap();
    log(&h.broker, &request_entry()).await.unwrap();
    let mut buf = vec![0u8; 65536];
    let n = tokio::time::timeout(Duration::from_secs(5), server.recv(&mut buf))
        .await
        .unwrap()
        .unwrap();
    let msg = String::from_utf8(buf[..n].to_vec()).unwrap();
    // AUTH (4) × 8 + INFO (6) = 38.
    assert!(msg.starts_with("<38>"), "{msg}");
    let (header, json) = msg.split_once(": {").unwrap();
    assert!(
        header.ends_with(&format!(" bulwark-audit[{}]", std::process::id())),
        "{header}"
    );
    let v: Value = serde_json::from_str(&format!("{{{json}")).unwrap();
    assert_eq!(v["type"], "request");
    for secret in SECRETS {
        assert!(!msg.contains(secret), "{secret} leaked");
    }
}

/// Concurrent writers: `n` Log calls of numbered entries.
fn spawn_logs(
    b: &Arc<AuditBroker>,
    range: std::ops::Range<usize>,
) -> Vec<tokio::task::JoinHandle<u32>> {
    range
        .map(|i| {
            let b = b.clone();
            tokio::spawn(async move {
                let entry =
                    json!({"time": "t", "type": "request", "request": {"id": format!("req-{i}")}});
                b.log(entry.to_string().as_bytes(), NonHmacKeys::default())
                    .await
                    .unwrap()
            })
        })
        .collect()
}

fn ids(files: &[&Path]) -> Vec<usize> {
    let mut ids: Vec<usize> = files
        .iter()
        .flat_map(|f| parsed(f))
        .map(|v| {
            v["request"]["id"]
                .as_str()
                .and_then(|s| s.strip_prefix("req-"))
                .and_then(|n| n.parse().ok())
                .unwrap()
        })
        .collect();
    ids.sort_unstable();
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commit_records_every_entry_once() {
    let h = harness().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.log");
    h.broker
        .enable(file_device("file", &file, &[("log_raw", "true")]))
        .await
        .unwrap();
    for task in spawn_logs(&h.broker, 0..200) {
        assert_eq!(task.await.unwrap(), 1);
    }
    assert_eq!(ids(&[&file]), (0..200).collect::<Vec<_>>());
    let batches = h.broker.batches("file").unwrap();
    assert!(batches < 200, "{batches} batches for 200 entries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_loses_nothing() {
    let h = harness().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.log");
    let rotated = dir.path().join("audit.log.1");
    h.broker
        .enable(file_device("file", &file, &[("log_raw", "true")]))
        .await
        .unwrap();
    let first = spawn_logs(&h.broker, 0..150);
    // Rotate while those are in flight.
    tokio::task::yield_now().await;
    std::fs::rename(&file, &rotated).unwrap();
    let second = spawn_logs(&h.broker, 150..300);
    h.broker.reopen().await.unwrap();
    let third = spawn_logs(&h.broker, 300..400);
    for task in first.into_iter().chain(second).chain(third) {
        assert_eq!(task.await.unwrap(), 1);
    }
    h.broker.flush().await;
    assert_eq!(ids(&[&rotated, &file]), (0..400).collect::<Vec<_>>());
    // Everything logged after the reopen went to the new file.
    assert!(!lines(&file).is_empty());
    let after = spawn_logs(&h.broker, 400..401);
    for task in after {
        task.await.unwrap();
    }
    assert!(lines(&file).last().unwrap().contains("req-400"));
}

#[tokio::test]
async fn sealed_refuses_and_forgets_until_unsealed() {
    let h = harness().await;
    let b = &h.broker;
    b.enable(device("file", "file", &[("file_path", "discard")]))
        .await
        .unwrap();
    let before = b.hash("file/", "x").await.unwrap();
    b.keyring().clear();
    b.unload().await;
    for err in [
        log(b, &request_entry()).await.unwrap_err(),
        b.hash("file/", "x").await.unwrap_err(),
        b.reopen().await.unwrap_err(),
        b.list().await.unwrap_err(),
        b.disable("file").await.unwrap_err(),
        b.enable(device("other", "file", &[("file_path", "discard")]))
            .await
            .unwrap_err(),
    ] {
        assert!(err.is_sealed(), "{err}");
        let status = tonic::Status::from(err);
        assert_eq!(status.code(), tonic::Code::Unavailable);
    }
    h.unseal();
    assert_eq!(log(b, &request_entry()).await.unwrap(), 1);
    assert_eq!(b.hash("file/", "x").await.unwrap(), before);
}

#[tokio::test]
async fn malformed_entries_are_refused_without_echo() {
    let h = harness().await;
    h.broker
        .enable(device("file", "file", &[("file_path", "discard")]))
        .await
        .unwrap();
    for bad in [&b"not json hunter2"[..], b"[\"hunter2\"]", b"\"hunter2\""] {
        let err = h.broker.log(bad, NonHmacKeys::default()).await.unwrap_err();
        assert!(matches!(err, AuditError::Invalid(_)));
        assert!(!err.to_string().contains("hunter2"));
    }
}

#[test]
fn paths_and_keys() {
    assert_eq!(normalize("file").unwrap(), "file/");
    assert_eq!(normalize("/a/b/").unwrap(), "a/b/");
    for bad in ["", "/", "a//b", "a/../b", "./a"] {
        assert!(normalize(bad).is_err(), "{bad}");
    }
    assert_eq!(storage_key("a/b%/"), "device/a%2Fb%25%2F");
    assert_eq!(unescape("a%2Fb%25%2F"), "a/b%/");
    assert_eq!(unescape("x%252F"), "x%2F");
}

#[tokio::test]
async fn the_device_count_is_published_and_unknown_until_loaded() {
    let h = harness().await;
    let rx = h.broker.subscribe_count();
    assert_eq!(*rx.borrow(), None, "not loaded yet: unknown");
    h.broker.load().await.unwrap();
    assert_eq!(*rx.borrow(), Some(0));
    let dir = tempfile::tempdir().unwrap();
    h.broker
        .enable(file_device("a", &dir.path().join("a.log"), &[]))
        .await
        .unwrap();
    assert_eq!(*rx.borrow(), Some(1));
    h.broker.disable("a").await.unwrap();
    assert_eq!(*rx.borrow(), Some(0));
    h.broker.unload().await;
    assert_eq!(*rx.borrow(), None, "sealed: unknown again");
}

/// Two replicas over one storage: what one enables or disables the other
/// picks up on reconcile (prompted by the bus, or every 30 s).
#[tokio::test]
async fn a_replica_reconciles_with_the_devices_another_changed() {
    let h = harness().await;
    let a = &h.broker;
    let b = h.restart().await;
    b.load().await.unwrap();
    assert_eq!(log(&b, &request_entry()).await.unwrap(), 0);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("audit.log");
    a.enable(file_device("file", &file, &[])).await.unwrap();
    b.reconcile().await.unwrap();
    assert_eq!(log(&b, &request_entry()).await.unwrap(), 1);
    b.flush().await;
    assert_eq!(lines(&file).len(), 1);
    let salted = a.hash("file/", "x").await.unwrap();
    assert_eq!(b.hash("file/", "x").await.unwrap(), salted);
    // Unchanged: reconciling again keeps the same device (and writer).
    let batches = b.batches("file/");
    b.reconcile().await.unwrap();
    assert_eq!(b.batches("file/"), batches);

    // Disabled and enabled again elsewhere: a new salt here too.
    a.disable("file").await.unwrap();
    b.reconcile().await.unwrap();
    assert_eq!(log(&b, &request_entry()).await.unwrap(), 0);
    a.enable(file_device("file", &file, &[])).await.unwrap();
    b.reconcile().await.unwrap();
    let resalted = b.hash("file/", "x").await.unwrap();
    assert_ne!(resalted, salted);
    assert_eq!(resalted, a.hash("file/", "x").await.unwrap());
}
