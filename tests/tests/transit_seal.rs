//! Auto-unseal through another Bulwark's transit engine (`seal "transit"`)
//! end to end: Bulwark A (Shamir) serves a transit key `autounseal` and a
//! token whose policy allows only `transit/encrypt/autounseal` and
//! `transit/decrypt/autounseal`; Bulwark B has a `seal "transit"` block
//! naming A. B is initialized with recovery keys (unsealed at once), a
//! secret written; B killed (-9) and started → unsealed by itself, the
//! secret readable, seal-status type "transit"; `sys/seal` then a recovery
//! key unseals; B started while A is down stays sealed (seal-status still
//! answering), still while A is up but sealed, and unseals by itself once A
//! is unsealed.

use std::time::{Duration, Instant};

use bulwark_e2e::{Api, Cluster, Layout, Options, Reply, Store};
use serde_json::{json, Value};

fn ok(r: Reply, code: u16) -> Value {
    assert_eq!(r.status, code, "{:?}", r.body);
    r.body
}

/// Retries `f` until it answers `code` (services catch up with the seal
/// state after an unseal or a restart).
async fn eventually<F, Fut>(code: u16, secs: u64, f: F) -> Value
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let r = f().await;
        if r.status == code || Instant::now() > deadline {
            return ok(r, code);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn status(api: &Api) -> Value {
    ok(api.get("sys/seal-status").await, 200)
}

async fn wait_sealed(api: &Api, sealed: bool, secs: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let r = api.get("sys/seal-status").await;
        if (r.status == 200 && r.body["sealed"] == sealed) || Instant::now() > deadline {
            let st = ok(r, 200);
            assert_eq!(st["sealed"], sealed, "{st}");
            return st;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn assert_transit_status(st: &Value, sealed: bool) {
    assert_eq!(st["type"], "transit", "{st}");
    assert_eq!(st["recovery_seal"], true, "{st}");
    assert_eq!(st["initialized"], true, "{st}");
    assert_eq!(st["sealed"], sealed, "{st}");
    assert_eq!(
        (st["t"].clone(), st["n"].clone()),
        (json!(1), json!(1)),
        "{st}"
    );
}

/// A: initialized with one unseal key, unsealed; transit enabled with the
/// key `autounseal`; a token limited to encrypt/decrypt with it.
/// Returns (unseal key, root token, seal token).
async fn transit_server(a: &Api) -> (String, String, String) {
    let r = ok(
        a.put(
            "sys/init",
            json!({"secret_shares": 1, "secret_threshold": 1}),
        )
        .await,
        200,
    );
    let key = r["keys"][0].as_str().expect("unseal key").to_string();
    let root = r["root_token"].as_str().expect("root token").to_string();
    let st = ok(a.put("sys/unseal", json!({"key": key})).await, 200);
    assert_eq!(st["sealed"], false, "{st}");
    let root_api = a.with_token(&root);
    eventually(204, 30, || {
        root_api.put("sys/mounts/transit", json!({"type": "transit"}))
    })
    .await;
    let r = root_api.put("transit/keys/autounseal", json!({})).await;
    assert!(r.status == 200 || r.status == 204, "{:?}", r.body);
    let r = root_api
        .put(
            "sys/policies/acl/autounseal",
            json!({"policy": r#"
                path "transit/encrypt/autounseal" { capabilities = ["update"] }
                path "transit/decrypt/autounseal" { capabilities = ["update"] }
            "#}),
        )
        .await;
    assert!(r.status == 200 || r.status == 204, "{:?}", r.body);
    let r = ok(
        root_api
            .put(
                "auth/token/create",
                json!({"policies": ["autounseal"], "no_default_policy": true}),
            )
            .await,
        200,
    );
    let token = r["auth"]["client_token"]
        .as_str()
        .expect("token")
        .to_string();
    (key, root, token)
}

fn seal_block(address: &str, token: &str) -> String {
    format!(
        "seal \"transit\" {{\n  address = \"{address}\"\n  token = \"{token}\"\n  \
         key_name = \"autounseal\"\n  mount_path = \"transit/\"\n  disable_renewal = \"false\"\n}}\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn auto_unseals_through_another_bulwarks_transit_key() {
    let mut a = Cluster::start(Layout::AllInOne, Store::SqliteFile);
    let a_api = a.client();
    let (a_key, _, token) = transit_server(&a_api).await;
    // The seal token can do nothing else.
    assert_eq!(
        a_api
            .with_token(&token)
            .get("transit/keys/autounseal")
            .await
            .status,
        403
    );

    let mut b = Cluster::start_with(
        Layout::AllInOne,
        Store::SqliteFile,
        Options {
            extra_config: seal_block(&a.http, &token),
            ..Options::default()
        },
    );
    let api = b.client();
    let st = status(&api).await;
    assert_eq!(
        (
            &st["type"],
            &st["recovery_seal"],
            &st["initialized"],
            &st["sealed"]
        ),
        (&json!("transit"), &json!(true), &json!(false), &json!(true))
    );

    // Init: unseal key parameters refused (Vault's message), recovery keys
    // given, unsealed at once.
    let r = api
        .put(
            "sys/init",
            json!({"secret_shares": 1, "secret_threshold": 1}),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(
        r.errors()
            .iter()
            .any(|e| e.contains("not applicable to seal type transit")),
        "{:?}",
        r.errors()
    );
    let r = ok(
        api.put(
            "sys/init",
            json!({"recovery_shares": 1, "recovery_threshold": 1}),
        )
        .await,
        200,
    );
    assert_eq!(r["keys"], json!([]), "no unseal keys");
    let recovery = r["recovery_keys"][0]
        .as_str()
        .expect("a recovery key")
        .to_string();
    let root = r["root_token"].as_str().expect("root token").to_string();
    assert_transit_status(&status(&api).await, false);
    let root_api = api.with_token(&root);
    eventually(204, 30, || {
        root_api.put(
            "sys/mounts/secret",
            json!({"type": "kv", "options": {"version": "2"}}),
        )
    })
    .await;
    eventually(200, 30, || {
        root_api.put("secret/data/app", json!({"data": {"password": "s3cr3t"}}))
    })
    .await;

    // The stored root key is A's ciphertext, not anything B could open alone.
    // (The database file, or its write-ahead log.)
    let mut db = std::fs::read(b.dir.path().join("bulwark.db")).expect("B's database");
    db.extend(std::fs::read(b.dir.path().join("bulwark.db-wal")).unwrap_or_default());
    assert!(
        db.windows(9).any(|w| w == b"vault:v1:"),
        "the wrapped root key is a transit ciphertext"
    );

    // kill -9 and start: unsealed through A, the secret readable.
    b.restart();
    let api = b.client();
    let root_api = api.with_token(&root);
    assert_transit_status(&wait_sealed(&api, false, 60).await, false);
    let r = eventually(200, 30, || root_api.get("secret/data/app")).await;
    assert_eq!(r["data"]["data"]["password"], "s3cr3t");

    // sys/seal: stays sealed; the recovery key unseals (through A again).
    ok(root_api.put("sys/seal", json!({})).await, 204);
    assert_transit_status(&status(&api).await, true);
    let st = ok(api.put("sys/unseal", json!({"key": recovery})).await, 200);
    assert_eq!(st["sealed"], false, "{st}");
    eventually(200, 30, || root_api.get("secret/data/app")).await;

    // A down: B starts sealed, answering seal-status, and keeps trying.
    for p in &mut a.procs {
        p.kill();
    }
    b.restart();
    let api = b.client();
    let root_api = api.with_token(&root);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_transit_status(&status(&api).await, true);
    assert_eq!(root_api.get("secret/data/app").await.status, 503);

    // A up again but sealed: B still sealed.
    a.restart();
    let a_api = a.client();
    assert_eq!(status(&a_api).await["sealed"], true);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_transit_status(&status(&api).await, true);

    // A unsealed: B unseals by itself.
    let st = ok(a_api.put("sys/unseal", json!({"key": a_key})).await, 200);
    assert_eq!(st["sealed"], false, "{st}");
    assert_transit_status(&wait_sealed(&api, false, 60).await, false);
    let r = eventually(200, 30, || root_api.get("secret/data/app")).await;
    assert_eq!(r["data"]["data"]["password"], "s3cr3t");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transit_seal_on_shamir_storage_is_refused() {
    // B initialized with Shamir keys, then given a transit seal block: the
    // start stops with a one-line error naming both seal types.
    let mut b = Cluster::start(Layout::AllInOne, Store::SqliteFile);
    let api = b.client();
    ok(
        api.put(
            "sys/init",
            json!({"secret_shares": 1, "secret_threshold": 1}),
        )
        .await,
        200,
    );
    for p in &mut b.procs {
        p.kill();
    }
    b.procs.clear();
    let cfg = b.config_path().to_path_buf();
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&seal_block("http://127.0.0.1:1", "hvs.unused"));
    std::fs::write(&cfg, text).unwrap();
    let out = std::process::Command::new(bulwark_e2e::bulwark_bin())
        .args(["server", "-config", cfg.to_str().unwrap()])
        .output()
        .expect("run bulwark");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"shamir\"") && err.contains("seal \"transit\""),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn over_https_with_a_ca_and_a_server_name() {
    // A serves HTTPS (a test CA's certificate for localhost and 127.0.0.1).
    let a = Cluster::start_with(
        Layout::AllInOne,
        Store::SqliteFile,
        Options {
            https: true,
            ..Options::default()
        },
    );
    let (_, _, token) = transit_server(&a.client()).await;
    let ca = a.dir.path().join("transit-ca.pem");
    std::fs::write(&ca, a.http_ca.as_deref().expect("A's CA")).unwrap();
    let port = a.http.rsplit(':').next().unwrap().to_string();

    // Without the CA, the certificate is not trusted: init fails, naming
    // the transit seal, and nothing is stored.
    let untrusted = Cluster::start_with(
        Layout::AllInOne,
        Store::SqliteFile,
        Options {
            extra_config: seal_block(&a.http, &token),
            ..Options::default()
        },
    );
    let api = untrusted.client();
    let r = api
        .put(
            "sys/init",
            json!({"recovery_shares": 1, "recovery_threshold": 1}),
        )
        .await;
    assert!(r.status >= 500, "{:?}", r.body);
    assert!(
        r.errors().iter().any(|e| e.contains("transit seal")),
        "{:?}",
        r.errors()
    );
    assert!(!r.body.to_string().contains(&token), "{:?}", r.body);
    assert_eq!(status(&api).await["initialized"], false);

    // With tls_ca_cert, and the address by IP but the certificate checked
    // for tls_server_name.
    let block = format!(
        "seal \"transit\" {{\n  address = \"https://127.0.0.1:{port}\"\n  token = \"{token}\"\n  \
         key_name = \"autounseal\"\n  tls_ca_cert = \"{}\"\n  tls_server_name = \"localhost\"\n  \
         tls_skip_verify = \"false\"\n}}\n",
        ca.display()
    );
    let mut b = Cluster::start_with(
        Layout::AllInOne,
        Store::SqliteFile,
        Options {
            extra_config: block,
            ..Options::default()
        },
    );
    let api = b.client();
    ok(
        api.put(
            "sys/init",
            json!({"recovery_shares": 1, "recovery_threshold": 1}),
        )
        .await,
        200,
    );
    assert_transit_status(&status(&api).await, false);
    b.restart();
    assert_transit_status(&wait_sealed(&b.client(), false, 60).await, false);
}
