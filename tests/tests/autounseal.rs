//! Auto-unseal with a static key (`seal "static"`) end to end: init with
//! recovery keys (already unsealed), a secret written, every process killed
//! (-9) and started again → unsealed without any key and the secret
//! readable; seal-status and health; `sys/seal` then a quorum of recovery
//! keys unseals; generate-root and both rekeys (the root key, forced to one
//! stored share, and the recovery keys) with recovery keys; a wrong key at
//! start leaves the service sealed (still answering seal-status); bad seal
//! blocks stop the start with a one-line error and write nothing; a seal
//! block on storage initialized with Shamir keys is refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bulwark_e2e::{
    bulwark_bin, init_unsealed, Api, Cluster, Layout, Options, Reply, Store, TestPg,
};
use serde_json::{json, Value};

const KEY_ID: &str = "test-key-1";

fn ok(r: Reply, code: u16) -> Value {
    assert_eq!(r.status, code, "{:?}", r.body);
    r.body
}

/// A 4xx/5xx whose error mentions `msg`.
fn fails(r: Reply, code: u16, msg: &str) {
    assert_eq!(r.status, code, "{:?}", r.body);
    assert!(
        r.errors().iter().any(|e| e.contains(msg)),
        "{:?} should mention {msg:?}",
        r.errors()
    );
}

fn strings(v: &Value) -> Vec<String> {
    serde_json::from_value(v.clone()).expect("a list of strings")
}

/// A key file (32 raw bytes) in `dir`.
fn write_key(dir: &Path, byte: u8) -> PathBuf {
    let path = dir.join("seal.key");
    std::fs::write(&path, [byte; 32].map(|b| b ^ 0x80)).expect("write key");
    path
}

fn seal_block(key: &Path) -> String {
    format!(
        "seal \"static\" {{\n  current_key_id = \"{KEY_ID}\"\n  current_key = \"file://{}\"\n}}\n",
        key.display()
    )
}

fn start(layout: Layout, store: Store, key: &Path) -> Cluster {
    Cluster::start_with(
        layout,
        store,
        Options {
            extra_config: seal_block(key),
            ..Options::default()
        },
    )
}

/// Retries `f` until it answers `code` (services catch up with the seal
/// state after an unseal or a restart).
async fn eventually<F, Fut>(code: u16, f: F) -> Value
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = f().await;
        if r.status == code || Instant::now() > deadline {
            return ok(r, code);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Recovery {
    hex: Vec<String>,
    b64: Vec<String>,
    root: String,
}

/// `sys/init` with recovery keys 5/3: no unseal keys, unsealed at once.
async fn init_recovery(api: &Api) -> Recovery {
    // Unseal key parameters are refused under an auto seal (Vault's message).
    fails(
        api.put(
            "sys/init",
            json!({"secret_shares": 5, "secret_threshold": 3}),
        )
        .await,
        400,
        "parameters secret_shares,secret_threshold not applicable to seal type static",
    );
    fails(
        api.put("sys/init", json!({})).await,
        400,
        "recovery configuration must specify a positive number of shares",
    );
    let r = ok(
        api.put(
            "sys/init",
            json!({"recovery_shares": 5, "recovery_threshold": 3}),
        )
        .await,
        200,
    );
    assert_eq!(r["keys"], json!([]), "no unseal keys");
    assert_eq!(r["keys_base64"], json!([]));
    let hex_keys = strings(&r["recovery_keys"]);
    let b64 = strings(&r["recovery_keys_base64"]);
    assert_eq!((hex_keys.len(), b64.len()), (5, 5));
    assert!(hex_keys.iter().all(|k| k.len() == 66), "33-byte shares");
    let root = r["root_token"].as_str().expect("root token").to_string();
    assert!(root.starts_with("hvs."));
    Recovery {
        hex: hex_keys,
        b64,
        root,
    }
}

async fn status(api: &Api) -> Value {
    ok(api.get("sys/seal-status").await, 200)
}

/// The fields of an auto seal's status.
fn assert_static_status(st: &Value, sealed: bool) {
    assert_eq!(st["type"], "static", "{st}");
    assert_eq!(st["recovery_seal"], true, "{st}");
    assert_eq!(st["recovery_seal_type"], "shamir", "{st}");
    assert_eq!(st["initialized"], true, "{st}");
    assert_eq!(st["sealed"], sealed, "{st}");
    assert_eq!(
        (st["t"].clone(), st["n"].clone()),
        (json!(3), json!(5)),
        "{st}"
    );
    assert_eq!(st["cluster_id"].is_string(), !sealed, "{st}");
}

/// XORs the encoded token with the OTP (`vault operator generate-root -decode`).
fn decode(encoded: &str, otp: &str) -> String {
    let raw = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(encoded.trim_end_matches('='))
        .unwrap();
    assert_eq!(raw.len(), otp.len());
    String::from_utf8(raw.iter().zip(otp.bytes()).map(|(a, b)| a ^ b).collect()).unwrap()
}

async fn read_secret(root: &Api) {
    let r = eventually(200, || root.get("secret/data/app")).await;
    assert_eq!(r["data"]["data"]["password"], "s3cr3t");
}

async fn autounseal(mut c: Cluster) {
    let api = c.client();
    let st = status(&api).await;
    assert_eq!(
        (
            &st["type"],
            &st["recovery_seal"],
            &st["initialized"],
            &st["sealed"]
        ),
        (&json!("static"), &json!(true), &json!(false), &json!(true))
    );
    assert_eq!(api.get("sys/health").await.status, 501);

    let keys = init_recovery(&api).await;
    // Already unsealed: no unseal call.
    assert_static_status(&status(&api).await, false);
    assert_eq!(status(&api).await["progress"], 0);
    assert_eq!(api.get("sys/health").await.status, 200);
    let root = api.with_token(&keys.root);
    eventually(204, || {
        root.put(
            "sys/mounts/secret",
            json!({"type": "kv", "options": {"version": "2"}}),
        )
    })
    .await;
    eventually(200, || {
        root.put("secret/data/app", json!({"data": {"password": "s3cr3t"}}))
    })
    .await;

    // kill -9 and start: unsealed without any key, the secret readable.
    c.restart();
    let api = c.client();
    let root = api.with_token(&keys.root);
    let st = api
        .wait_until("sys/seal-status", |r| {
            r.status == 200 && r.body["sealed"] == false
        })
        .await
        .body;
    assert_static_status(&st, false);
    let h = ok(api.get("sys/health").await, 200);
    assert_eq!(
        (&h["initialized"], &h["sealed"]),
        (&json!(true), &json!(false))
    );
    read_secret(&root).await;

    // sys/seal: sealed until a quorum of recovery keys (hex or base64) unseals.
    ok(root.put("sys/seal", json!({})).await, 204);
    assert_static_status(&status(&api).await, true);
    assert_eq!(api.get("sys/health").await.status, 503);
    assert_eq!(root.get("secret/data/app").await.status, 503);
    let s1 = ok(
        api.put("sys/unseal", json!({"key": keys.hex[0]})).await,
        200,
    );
    assert_eq!((&s1["progress"], &s1["sealed"]), (&json!(1), &json!(true)));
    fails(
        api.put("sys/unseal", json!({"key": hex::encode([7u8; 33])}))
            .await,
        400,
        "invalid unseal key",
    );
    assert_eq!(
        status(&api).await["progress"],
        0,
        "a wrong key clears progress"
    );
    for k in [&keys.b64[1], &keys.hex[4], &keys.b64[2]] {
        ok(api.put("sys/unseal", json!({ "key": k })).await, 200);
    }
    assert_static_status(&status(&api).await, false);
    read_secret(&root).await;

    // generate-root with recovery keys.
    let st = ok(api.raw("PUT", "sys/generate-root/attempt", None).await, 200);
    assert_eq!(st["required"], 3);
    let (otp, nonce) = (
        st["otp"].as_str().unwrap().to_string(),
        st["nonce"].as_str().unwrap().to_string(),
    );
    fails(
        api.put(
            "sys/generate-root/update",
            json!({"key": hex::encode([9u8; 33]), "nonce": nonce}),
        )
        .await,
        400,
        "recovery keys",
    );
    let mut last = Value::Null;
    for k in &keys.hex[..3] {
        last = ok(
            api.put(
                "sys/generate-root/update",
                json!({"key": k, "nonce": nonce}),
            )
            .await,
            200,
        );
    }
    assert_eq!(last["complete"], true, "{last}");
    let token = decode(last["encoded_token"].as_str().unwrap(), &otp);
    let me = ok(
        api.with_token(&token).get("auth/token/lookup-self").await,
        200,
    );
    assert_eq!(me["data"]["policies"], json!(["root"]));
    read_secret(&api.with_token(&token)).await;

    // sys/rekey under an auto seal (Vault): a new root key authorized by
    // recovery keys, forced to one stored share, no keys answered.
    let st = ok(
        api.put(
            "sys/rekey/init",
            json!({"secret_shares": 5, "secret_threshold": 3}),
        )
        .await,
        200,
    );
    assert_eq!(
        (&st["n"], &st["t"], &st["required"]),
        (&json!(1), &json!(1), &json!(3))
    );
    let nonce = st["nonce"].as_str().unwrap().to_string();
    let mut last = Value::Null;
    for k in &keys.b64[2..5] {
        last = ok(
            api.put("sys/rekey/update", json!({"key": k, "nonce": nonce}))
                .await,
            200,
        );
    }
    assert_eq!(
        (&last["complete"], &last["keys"], &last["keys_base64"]),
        (&json!(true), &json!([]), &json!([]))
    );

    // sys/rekey-recovery-key: 3 new recovery keys, 2 of which authorize.
    let st = ok(
        api.put(
            "sys/rekey-recovery-key/init",
            json!({"secret_shares": 3, "secret_threshold": 2}),
        )
        .await,
        200,
    );
    assert_eq!(
        (&st["n"], &st["t"], &st["required"]),
        (&json!(3), &json!(2), &json!(3))
    );
    let nonce = st["nonce"].as_str().unwrap().to_string();
    let mut last = Value::Null;
    for k in &keys.hex[..3] {
        last = ok(
            api.put(
                "sys/rekey-recovery-key/update",
                json!({"key": k, "nonce": nonce}),
            )
            .await,
            200,
        );
    }
    assert_eq!(last["complete"], true, "{last}");
    let new = strings(&last["keys"]);
    assert_eq!(new.len(), 3);
    let st = status(&api).await;
    assert_eq!((&st["t"], &st["n"]), (&json!(2), &json!(3)));

    // Restart after both rekeys: unsealed by itself, the data intact; the
    // new recovery keys unseal after sys/seal, the old ones do not.
    c.restart();
    let api = c.client();
    let root = api.with_token(&keys.root);
    api.wait_until("sys/seal-status", |r| {
        r.status == 200 && r.body["sealed"] == false
    })
    .await;
    read_secret(&root).await;
    ok(root.put("sys/seal", json!({})).await, 204);
    fails(
        api.put("sys/unseal", json!({"key": keys.hex[0]})).await,
        400,
        "invalid unseal key",
    );
    for k in &new[..2] {
        ok(api.put("sys/unseal", json!({ "key": k })).await, 200);
    }
    assert_eq!(status(&api).await["sealed"], false);
    read_secret(&root).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn all_in_one_on_sqlite() {
    let keys = tempfile::tempdir().unwrap();
    let key = write_key(keys.path(), 1);
    autounseal(start(Layout::AllInOne, Store::SqliteFile, &key)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn separate_processes_on_sqlite() {
    let keys = tempfile::tempdir().unwrap();
    let key = write_key(keys.path(), 2);
    let c = start(Layout::Separate, Store::SqliteFile, &key);
    assert!(c.procs.len() > 2);
    autounseal(c).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn all_in_one_on_postgres() {
    let pg = TestPg::new().await;
    let keys = tempfile::tempdir().unwrap();
    let key = write_key(keys.path(), 3);
    autounseal(start(
        Layout::AllInOne,
        Store::Postgres(pg.url.clone()),
        &key,
    ))
    .await;
}

/// The processes' log output (stdout and stderr).
fn logs(c: &Cluster) -> String {
    c.procs
        .iter()
        .map(|p| {
            format!(
                "{}{}",
                p.output(),
                std::fs::read_to_string(&p.stderr).unwrap_or_default()
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_key_at_start_leaves_it_sealed() {
    let keys = tempfile::tempdir().unwrap();
    let key = write_key(keys.path(), 4);
    let mut c = start(Layout::AllInOne, Store::SqliteFile, &key);
    let api = c.client();
    let r = ok(
        api.put(
            "sys/init",
            json!({"recovery_shares": 1, "recovery_threshold": 1}),
        )
        .await,
        200,
    );
    let recovery = strings(&r["recovery_keys"]).remove(0);
    let root = api.with_token(r["root_token"].as_str().unwrap());
    eventually(204, || {
        root.put(
            "sys/mounts/secret",
            json!({"type": "kv", "options": {"version": "2"}}),
        )
    })
    .await;
    eventually(200, || {
        root.put("secret/data/app", json!({"data": {"password": "s3cr3t"}}))
    })
    .await;

    // Another key in the file: the process starts and serves seal-status,
    // sealed; the log says why, naming key ids only.
    std::fs::write(&key, [0xd5u8; 32]).unwrap();
    c.restart();
    let api = c.client();
    let st = status(&api).await;
    assert_eq!(
        (&st["type"], &st["initialized"], &st["sealed"]),
        (&json!("static"), &json!(true), &json!(true))
    );
    assert_eq!(api.get("sys/health").await.status, 503);
    assert_eq!(
        api.with_token(r["root_token"].as_str().unwrap())
            .get("secret/data/app")
            .await
            .status,
        503
    );
    let log = logs(&c);
    assert!(
        log.contains("does not decrypt the stored root key") && log.contains(KEY_ID),
        "{log}"
    );
    for secret in [hex::encode([0xd5u8; 32]), hex::encode([4u8 ^ 0x80; 32])] {
        assert!(!log.contains(&secret), "no key material in the log");
    }
    // Recovery keys authorize, but cannot open what the seal key cannot.
    fails(
        api.put("sys/unseal", json!({ "key": recovery })).await,
        500,
        "current_key",
    );
    assert_eq!(status(&api).await["sealed"], true);

    // The right key again: unsealed by itself, nothing lost.
    write_key(keys.path(), 4);
    c.restart();
    let api = c.client();
    api.wait_until("sys/seal-status", |r| {
        r.status == 200 && r.body["sealed"] == false
    })
    .await;
    read_secret(&api.with_token(r["root_token"].as_str().unwrap())).await;
}

/// Runs `bulwark server -config <config>`, which must stop by itself;
/// returns its exit code and stderr.
fn run_to_exit(config: &Path, env: &[(&str, &str)]) -> (i32, String) {
    let mut child = Command::new(bulwark_bin())
        .args(["server", "-config", config.to_str().unwrap()])
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn bulwark");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.code().unwrap_or(-1), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("bulwark server -config {} did not stop", config.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn bad_seal_blocks_stop_the_start_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("short.key");
    std::fs::write(&short, hex::encode([1u8; 16])).unwrap();
    let missing = dir.path().join("missing.key");
    let unset = "BULWARK_E2E_UNSET_SEAL_KEY";
    let short_hex = hex::encode([2u8; 16]);
    let cases: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "short-file",
            format!(
                "current_key_id = \"k\"\n  current_key = \"file://{}\"",
                short.display()
            ),
            vec!["current_key", "short.key", "16 bytes"],
        ),
        (
            "missing-file",
            format!(
                "current_key_id = \"k\"\n  current_key = \"file://{}\"",
                missing.display()
            ),
            vec!["current_key", "missing.key"],
        ),
        (
            "unset-env",
            format!("current_key_id = \"k\"\n  current_key = \"env://{unset}\""),
            vec!["current_key", unset, "not set"],
        ),
        (
            "short-literal",
            format!("current_key_id = \"k\"\n  current_key = \"{short_hex}\""),
            vec!["current_key", "16 bytes"],
        ),
    ];
    let config = |name: &str, seal: &str| -> PathBuf {
        let path = dir.path().join(format!("{name}.hcl"));
        std::fs::write(
            &path,
            format!(
                "storage \"sqlite\" {{ path = \"{db}\" }}\n\
                 listener \"tcp\" {{\n  address = \"127.0.0.1:0\"\n  tls_disable = true\n}}\n\
                 cluster {{\n  cert_dir = \"{certs}\"\n}}\n{seal}",
                db = dir.path().join(format!("{name}.db")).display(),
                certs = dir.path().join(format!("{name}-certs")).display(),
            ),
        )
        .unwrap();
        path
    };
    let mut all = cases
        .into_iter()
        .map(|(name, body, needles)| {
            (
                name,
                config(name, &format!("seal \"static\" {{\n  {body}\n}}\n")),
                needles,
            )
        })
        .collect::<Vec<_>>();
    all.push((
        "awskms",
        config(
            "awskms",
            "seal \"awskms\" {\n  region = \"eu-west-1\"\n  kms_key_id = \"abc\"\n}\n",
        ),
        vec!["seal \"awskms\"", "supported: \"static\"", "transit"],
    ));
    for (name, path, needles) in all {
        let (code, err) = run_to_exit(&path, &[]);
        assert_ne!(code, 0, "{name}: {err}");
        let line = err.trim();
        assert_eq!(line.lines().count(), 1, "{name}: one line: {err}");
        assert!(
            line.starts_with(&format!("Error: {}:", path.display())),
            "{name}: names the file: {line}"
        );
        for n in needles {
            assert!(line.contains(n), "{name}: {line} should mention {n:?}");
        }
        assert!(!line.contains(&short_hex) && !line.contains(&hex::encode([1u8; 16])));
        // Nothing written: no database, no certificates.
        assert!(!dir.path().join(format!("{name}.db")).exists(), "{name}");
        assert!(!dir.path().join(format!("{name}-certs")).exists(), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_seal_block_on_shamir_storage_is_refused() {
    let mut c = Cluster::start(Layout::AllInOne, Store::SqliteFile);
    init_unsealed(&c.client()).await;
    for p in &mut c.procs {
        p.kill();
    }
    let keys = tempfile::tempdir().unwrap();
    let key = write_key(keys.path(), 5);
    let original = std::fs::read_to_string(c.dir.path().join("bulwark.hcl")).unwrap();
    let changed = c.dir.path().join("with-seal.hcl");
    std::fs::write(&changed, format!("{original}\n{}", seal_block(&key))).unwrap();
    let (code, err) = run_to_exit(&changed, &[]);
    assert_ne!(code, 0, "{err}");
    assert!(
        err.contains("\"shamir\"") && err.contains("seal \"static\"") && err.contains("-migrate"),
        "{err}"
    );
    // The storage is untouched: started as before, it is a sealed Shamir vault.
    c.restart();
    let st = status(&c.client()).await;
    assert_eq!(
        (&st["type"], &st["initialized"], &st["sealed"]),
        (&json!("shamir"), &json!(true), &json!(true))
    );
}
