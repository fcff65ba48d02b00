//! Key management end to end: `sys/rotate` and `sys/key-status`, rekey
//! (`sys/rekey/*`) and root token generation (`sys/generate-root/*`), on
//! every layout, with data written before and after each step staying
//! readable across seal, unseal and restart; and bad input.

use std::time::Duration;

use base64::Engine as _;
use bulwark_e2e::{Api, Cluster, Layout, Reply, Store, TestPg};
use serde_json::{json, Value};

fn ok(r: Reply, code: u16) -> Value {
    assert_eq!(r.status, code, "{:?}", r.body);
    r.body
}

/// A 400 whose error mentions `msg`.
fn bad(r: Reply, msg: &str) {
    assert_eq!(r.status, 400, "{:?}", r.body);
    assert!(
        r.errors().iter().any(|e| e.contains(msg)),
        "{:?} should mention {msg:?}",
        r.errors()
    );
}

struct Keys {
    hex: Vec<String>,
    b64: Vec<String>,
}

fn keys_of(body: &Value) -> Keys {
    let list = |k: &str| -> Vec<String> { serde_json::from_value(body[k].clone()).unwrap() };
    Keys {
        hex: list("keys"),
        b64: list("keys_base64"),
    }
}

async fn unseal(api: &Api, key: &str) -> Value {
    ok(api.put("sys/unseal", json!({ "key": key })).await, 200)
}

/// The keyring term a kv v1 value is stored under, read from the raw
/// storage (header: version byte, then the term, big-endian).
async fn stored_term(c: &Cluster, store: &Store, path: &str) -> u32 {
    let pattern = format!("%/v1/{path}");
    let value: Vec<u8> = match store {
        Store::SqliteFile => {
            let url = format!("sqlite://{}", c.dir.path().join("bulwark.db").display());
            let db = sqlx::SqlitePool::connect(&url).await.unwrap();
            let v = sqlx::query_scalar("SELECT value FROM bulwark_kv WHERE key LIKE ?1")
                .bind(&pattern)
                .fetch_one(&db)
                .await
                .unwrap();
            db.close().await;
            v
        }
        Store::Postgres(url) => {
            let db = sqlx::PgPool::connect(url).await.unwrap();
            let v = sqlx::query_scalar("SELECT value FROM bulwark_kv WHERE key LIKE $1")
                .bind(&pattern)
                .fetch_one(&db)
                .await
                .unwrap();
            db.close().await;
            v
        }
    };
    assert_eq!(value[0], 1, "barrier format version");
    u32::from_be_bytes([value[1], value[2], value[3], value[4]])
}

/// Reads `kv/<path>` and checks its value.
async fn reads(root: &Api, path: &str, want: &str) {
    let r = ok(root.get(&format!("kv/{path}")).await, 200);
    assert_eq!(r["data"]["v"], want, "kv/{path}");
}

/// Writes until the stored value uses `term`: services learn a rotation
/// from the seal-state stream, within moments.
async fn write_until_term(c: &Cluster, store: &Store, root: &Api, term: u32) -> String {
    for i in 0..100 {
        let path = format!("after-{term}-{i}");
        ok(
            root.put(&format!("kv/{path}"), json!({"v": path})).await,
            204,
        );
        if stored_term(c, store, &path).await == term {
            return path;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the kv service never wrote with term {term}");
}

/// XORs the encoded token with the OTP, as `vault operator generate-root
/// -decode` does (base64 without padding).
fn decode(encoded: &str, otp: &str) -> String {
    let raw = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(encoded)
        .expect("unpadded base64");
    assert_eq!(raw.len(), otp.len(), "OTP length equals token length");
    String::from_utf8(raw.iter().zip(otp.bytes()).map(|(a, b)| a ^ b).collect()).unwrap()
}

async fn key_management(mut c: Cluster, store: Store) {
    let api = c.client();
    let init = ok(
        api.put(
            "sys/init",
            json!({"secret_shares": 5, "secret_threshold": 3}),
        )
        .await,
        200,
    );
    let old = keys_of(&init);
    let root_token = init["root_token"].as_str().unwrap().to_string();
    // Sealed: every key operation answers 503.
    assert_eq!(api.get("sys/rekey/init").await.status, 503);
    assert_eq!(api.get("sys/generate-root/attempt").await.status, 503);
    for k in &old.hex[..3] {
        unseal(&api, k).await;
    }
    let root = api.with_token(&root_token);
    ok(root.put("sys/mounts/kv", json!({"type": "kv"})).await, 204);
    ok(root.put("kv/before", json!({"v": "before"})).await, 204);
    assert_eq!(stored_term(&c, &store, "before").await, 1);

    // key-status: term 1, in the envelope and at the top level.
    let ks = ok(root.get("sys/key-status").await, 200);
    assert_eq!(ks["data"]["term"], 1);
    assert_eq!(ks["term"], 1, "top-level copy");
    assert_eq!(ks["data"]["encryptions"], 0);
    let installed = ks["data"]["install_time"].as_str().unwrap();
    assert!(
        installed.contains('T') && installed.ends_with('Z'),
        "{installed}"
    );
    assert_eq!(api.get("sys/key-status").await.status, 403, "needs a token");

    // rotate: update + sudo on sys/rotate.
    ok(
        root.put(
            "sys/policies/acl/rotate-nosudo",
            json!({"policy": "path \"sys/rotate\" { capabilities = [\"update\"] }"}),
        )
        .await,
        204,
    );
    ok(
        root.put(
            "sys/policies/acl/rotate",
            json!({"policy": "path \"sys/rotate\" { capabilities = [\"update\", \"sudo\"] }\npath \"sys/key-status\" { capabilities = [\"read\"] }"}),
        )
        .await,
        204,
    );
    let token_with = |policy: &str| {
        let root = root.clone();
        let policy = policy.to_string();
        async move {
            let r = ok(
                root.put("auth/token/create", json!({"policies": [policy]}))
                    .await,
                200,
            );
            r["auth"]["client_token"].as_str().unwrap().to_string()
        }
    };
    let nosudo = api.with_token(&token_with("rotate-nosudo").await);
    assert_eq!(nosudo.put("sys/rotate", json!({})).await.status, 403);
    assert_eq!(api.put("sys/rotate", json!({})).await.status, 403);
    let rotator = api.with_token(&token_with("rotate").await);
    let r = rotator.raw("POST", "sys/rotate", None).await;
    assert_eq!(r.status, 204, "{:?}", r.body);
    assert_eq!(
        ok(rotator.get("sys/key-status").await, 200)["data"]["term"],
        2
    );
    assert_eq!(root.get("sys/rotate").await.status, 405);

    // Old data readable, new writes use term 2 and are readable.
    reads(&root, "before", "before").await;
    let after2 = write_until_term(&c, &store, &root, 2).await;
    reads(&root, &after2, &after2).await;
    assert_eq!(stored_term(&c, &store, "before").await, 1, "not rewritten");
    // Tokens and mounts (auth and gateway namespaces) work on the new term.
    let t = token_with("default").await;
    ok(api.with_token(&t).get("auth/token/lookup-self").await, 200);
    ok(root.put("sys/mounts/kv2", json!({"type": "kv"})).await, 204);
    ok(root.put("kv2/x", json!({"v": "x"})).await, 204);

    // Seal, unseal: both terms still read.
    ok(root.put("sys/seal", json!({})).await, 204);
    for k in [&old.b64[4], &old.hex[1], &old.b64[3]] {
        unseal(&api, k).await;
    }
    reads(&root, "before", "before").await;
    reads(&root, &after2, &after2).await;
    assert_eq!(ok(root.get("sys/key-status").await, 200)["term"], 2);

    // Rekey to 3/2 with a threshold of the current keys.
    let st = ok(api.get("sys/rekey/init").await, 200);
    assert_eq!(
        st,
        json!({"nonce": "", "started": false, "t": 0, "n": 0, "progress": 0, "required": 3,
               "pgp_fingerprints": null, "backup": false, "verification_required": false})
    );
    let st = ok(
        api.put(
            "sys/rekey/init",
            json!({"secret_shares": 3, "secret_threshold": 2}),
        )
        .await,
        200,
    );
    let nonce = st["nonce"].as_str().unwrap().to_string();
    assert!(!nonce.is_empty());
    assert_eq!(
        (
            &st["started"],
            &st["n"],
            &st["t"],
            &st["required"],
            &st["progress"]
        ),
        (&json!(true), &json!(3), &json!(2), &json!(3), &json!(0))
    );
    bad(
        api.put(
            "sys/rekey/init",
            json!({"secret_shares": 3, "secret_threshold": 2}),
        )
        .await,
        "rekey already in progress",
    );
    let update = |key: &str, nonce: &str| {
        let api = api.clone();
        let body = json!({"key": key, "nonce": nonce});
        async move { api.put("sys/rekey/update", body).await }
    };
    bad(
        update(&old.hex[0], "not-the-nonce").await,
        "incorrect nonce",
    );
    let st = ok(update(&old.hex[0], &nonce).await, 200);
    assert_eq!((&st["progress"], &st["nonce"]), (&json!(1), &json!(nonce)));
    bad(update(&old.b64[0], &nonce).await, "already been provided");
    assert_eq!(ok(api.get("sys/rekey/init").await, 200)["progress"], 1);
    bad(
        update(&hex::encode([7u8; 33]), &nonce).await,
        "progress was reset",
    );
    assert_eq!(ok(api.get("sys/rekey/init").await, 200)["progress"], 0);
    for k in [&old.hex[2], &old.b64[4]] {
        assert_eq!(ok(update(k, &nonce).await, 200)["complete"], Value::Null);
    }
    let done = ok(update(&old.hex[1], &nonce).await, 200);
    assert_eq!(
        (&done["complete"], &done["nonce"]),
        (&json!(true), &json!(nonce))
    );
    let new = keys_of(&done);
    assert_eq!((new.hex.len(), new.b64.len()), (3, 3));
    assert!(new.hex.iter().all(|k| k.len() == 66));
    assert!(new.hex.iter().all(|k| !old.hex.contains(k)));
    assert_eq!(ok(api.get("sys/rekey/init").await, 200)["started"], false);
    let ss = ok(api.get("sys/seal-status").await, 200);
    assert_eq!(
        (&ss["n"], &ss["t"], &ss["sealed"]),
        (&json!(3), &json!(2), &json!(false))
    );
    reads(&root, "before", "before").await;

    // Sealed again: the old shares are refused, two new ones unseal.
    ok(root.put("sys/seal", json!({})).await, 204);
    for k in &old.hex[..3] {
        let r = api.put("sys/unseal", json!({ "key": k })).await;
        assert_eq!(r.status, 400, "old share refused: {:?}", r.body);
    }
    assert_eq!(ok(api.get("sys/seal-status").await, 200)["sealed"], true);
    assert_eq!(unseal(&api, &new.b64[2]).await["progress"], 1);
    assert_eq!(unseal(&api, &new.hex[0]).await["sealed"], false);
    reads(&root, "before", "before").await;
    reads(&root, &after2, &after2).await;

    // Generate a root token with two of the new shares.
    let st = ok(api.get("sys/generate-root/attempt").await, 200);
    assert_eq!(
        (
            &st["started"],
            &st["otp_length"],
            &st["required"],
            &st["progress"]
        ),
        (&json!(false), &json!(28), &json!(2), &json!(0))
    );
    bad(
        api.put(
            "sys/generate-root/attempt",
            json!({"pgp_key": "bWFkZSB1cA=="}),
        )
        .await,
        "not supported",
    );
    let st = ok(api.raw("PUT", "sys/generate-root/attempt", None).await, 200);
    let otp = st["otp"].as_str().unwrap().to_string();
    let gnonce = st["nonce"].as_str().unwrap().to_string();
    assert_eq!(otp.len(), 28);
    assert_eq!((&st["started"], &st["progress"]), (&json!(true), &json!(0)));
    let again = ok(api.get("sys/generate-root/attempt").await, 200);
    assert_eq!(
        (&again["otp"], &again["nonce"]),
        (&json!(""), &json!(gnonce))
    );
    bad(
        api.raw("PUT", "sys/generate-root/attempt", None).await,
        "root generation already in progress",
    );
    let gupdate = |key: &str, nonce: &str| {
        let api = api.clone();
        let body = json!({"key": key, "nonce": nonce});
        async move { api.put("sys/generate-root/update", body).await }
    };
    bad(gupdate(&new.hex[1], "wrong").await, "incorrect nonce");
    bad(gupdate(&old.hex[3], &gnonce).await, "progress was reset");
    let st = ok(gupdate(&new.hex[1], &gnonce).await, 200);
    assert_eq!(
        (&st["progress"], &st["complete"], &st["encoded_token"]),
        (&json!(1), &json!(false), &json!(""))
    );
    let st = ok(gupdate(&new.b64[2], &gnonce).await, 200);
    assert_eq!(
        (&st["complete"], &st["progress"], &st["required"]),
        (&json!(true), &json!(2), &json!(2))
    );
    let encoded = st["encoded_token"].as_str().unwrap();
    assert_eq!(st["encoded_root_token"], encoded);
    let generated = decode(encoded, &otp);
    assert!(generated.starts_with("hvs."), "{generated}");
    // Usable at once, as a root token.
    let g = api.with_token(&generated);
    let me = ok(g.get("auth/token/lookup-self").await, 200);
    assert_eq!(me["data"]["policies"], json!(["root"]));
    assert_eq!(me["data"]["ttl"], 0);
    assert_eq!(me["data"]["path"], "auth/token/root");
    ok(
        g.put("kv/by-new-root", json!({"v": "by-new-root"})).await,
        204,
    );
    // Neither the new shares nor the generated token reach storage in the clear.
    if let Store::SqliteFile = store {
        let mut needles: Vec<Vec<u8>> =
            vec![generated.as_bytes().to_vec(), otp.as_bytes().to_vec()];
        for (h, b) in new.hex.iter().zip(&new.b64) {
            needles.push(h.as_bytes().to_vec());
            needles.push(b.as_bytes().to_vec());
            needles.push(hex::decode(h).unwrap());
        }
        for entry in std::fs::read_dir(c.dir.path()).unwrap() {
            let p = entry.unwrap().path();
            if p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("bulwark.db")
            {
                let blob = std::fs::read(&p).unwrap();
                for n in &needles {
                    assert!(
                        !blob.windows(n.len()).any(|w| w == n.as_slice()),
                        "a secret is stored in the clear in {}",
                        p.display()
                    );
                }
            }
        }
    }
    assert_eq!(
        ok(api.get("sys/generate-root/attempt").await, 200)["started"],
        false
    );
    bad(
        gupdate(&new.hex[1], &gnonce).await,
        "no root generation in progress",
    );

    // Cancel.
    ok(api.raw("PUT", "sys/generate-root/attempt", None).await, 200);
    assert_eq!(api.delete("sys/generate-root/attempt").await.status, 204);
    assert_eq!(
        ok(api.get("sys/generate-root/attempt").await, 200)["started"],
        false
    );
    ok(
        api.put(
            "sys/rekey/init",
            json!({"secret_shares": 1, "secret_threshold": 1}),
        )
        .await,
        200,
    );
    assert_eq!(api.delete("sys/rekey/init").await.status, 204);
    assert_eq!(ok(api.get("sys/rekey/init").await, 200)["started"], false);

    // Restart everything: the new shares unseal, both root tokens work,
    // the keyring is still at term 2 and every value reads.
    c.restart();
    let api = c.client();
    api.wait_until("sys/seal-status", |r| r.status == 200).await;
    bad(
        api.put("sys/unseal", json!({"key": old.hex[0]})).await,
        "invalid unseal key",
    );
    unseal(&api, &new.hex[2]).await;
    assert_eq!(unseal(&api, &new.hex[1]).await["sealed"], false);
    let g = api.with_token(&generated);
    let root = api.with_token(&root_token);
    let ks = g.wait_until("sys/key-status", |r| r.status == 200).await;
    assert_eq!(ks.body["term"], 2);
    for (p, v) in [
        ("before", "before"),
        (after2.as_str(), after2.as_str()),
        ("by-new-root", "by-new-root"),
    ] {
        reads(&root, p, v).await;
        reads(&g, p, v).await;
    }
    // A second rotation after the restart.
    assert_eq!(g.put("sys/rotate", json!({})).await.status, 204);
    assert_eq!(ok(g.get("sys/key-status").await, 200)["term"], 3);
    let after3 = write_until_term(&c, &store, &g, 3).await;
    reads(&root, &after3, &after3).await;
    reads(&root, "before", "before").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn separate_processes_on_sqlite() {
    key_management(
        Cluster::start(Layout::Separate, Store::SqliteFile),
        Store::SqliteFile,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn all_in_one_on_sqlite() {
    key_management(
        Cluster::start(Layout::AllInOne, Store::SqliteFile),
        Store::SqliteFile,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn all_in_one_on_postgres() {
    let pg = TestPg::new().await;
    let store = Store::Postgres(pg.url.clone());
    key_management(Cluster::start(Layout::AllInOne, store.clone()), store).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_is_refused() {
    let c = Cluster::start(Layout::AllInOne, Store::SqliteFile);
    let api = c.client();
    // Not initialized.
    bad(api.get("sys/rekey/init").await, "not initialized");
    bad(
        api.get("sys/generate-root/attempt").await,
        "not initialized",
    );
    let init = ok(
        api.put(
            "sys/init",
            json!({"secret_shares": 3, "secret_threshold": 2}),
        )
        .await,
        200,
    );
    let keys = keys_of(&init);
    let root = api.with_token(init["root_token"].as_str().unwrap());
    for k in &keys.hex[..2] {
        unseal(&api, k).await;
    }

    // rekey/init
    for (body, msg) in [
        (b"{not json".to_vec(), "failed to parse JSON"),
        (b"[1]".to_vec(), "JSON object"),
        (
            br#"{"secret_shares":"three","secret_threshold":2}"#.to_vec(),
            "secret_shares",
        ),
        (
            br#"{"secret_shares":3,"secret_threshold":-2}"#.to_vec(),
            "secret_threshold",
        ),
        (
            br#"{"secret_shares":3,"secret_threshold":5}"#.to_vec(),
            "invalid rekey seal configuration: threshold cannot be larger than shares",
        ),
        (br#"{}"#.to_vec(), "shares must be at least one"),
        (
            br#"{"secret_shares":3,"secret_threshold":2,"pgp_keys":["a","b","c"]}"#.to_vec(),
            "PGP",
        ),
        (
            br#"{"secret_shares":3,"secret_threshold":2,"backup":true}"#.to_vec(),
            "backing up",
        ),
        (
            br#"{"secret_shares":3,"secret_threshold":2,"require_verification":true}"#.to_vec(),
            "verification is not supported",
        ),
        (
            br#"{"secret_shares":3,"secret_threshold":2,"backup":"maybe"}"#.to_vec(),
            "boolean",
        ),
    ] {
        bad(api.raw("PUT", "sys/rekey/init", Some(body)).await, msg);
    }
    assert_eq!(ok(api.get("sys/rekey/init").await, 200)["started"], false);

    // rekey/update
    bad(
        api.put(
            "sys/rekey/update",
            json!({"key": keys.hex[0], "nonce": "x"}),
        )
        .await,
        "no rekey in progress",
    );
    let nonce = ok(
        api.put(
            "sys/rekey/init",
            json!({"secret_shares": 2, "secret_threshold": 2}),
        )
        .await,
        200,
    )["nonce"]
        .as_str()
        .unwrap()
        .to_string();
    for (body, msg) in [
        (b"{nope".to_vec(), "failed to parse JSON"),
        (br#"{}"#.to_vec(), "'key' must be specified"),
        (br#"{"key":""}"#.to_vec(), "'key' must be specified"),
        (
            br#"{"key":"!!not a key!!"}"#.to_vec(),
            "valid hex or base64",
        ),
        (br#"{"key":12}"#.to_vec(), "valid hex or base64"),
        (br#"{"key":["x"]}"#.to_vec(), "must be a string"),
        (br#"{"key":"abcd","nonce":"x"}"#.to_vec(), "incorrect nonce"),
    ] {
        bad(api.raw("PUT", "sys/rekey/update", Some(body)).await, msg);
    }
    bad(
        api.put("sys/rekey/update", json!({"key": "abcd", "nonce": nonce}))
            .await,
        "wrong length",
    );
    bad(
        api.put("sys/rekey/update", json!({"key": keys.hex[0], "nonce": 7}))
            .await,
        "incorrect nonce",
    );
    assert_eq!(api.delete("sys/rekey/init").await.status, 204);
    assert_eq!(api.delete("sys/rekey/init").await.status, 204, "idempotent");

    // generate-root
    for (body, msg) in [
        (b"{nope".to_vec(), "failed to parse JSON"),
        (
            br#"{"otp":"tooshort"}"#.to_vec(),
            "OTP string is wrong length",
        ),
        (br#"{"otp":{"a":1}}"#.to_vec(), "must be a string"),
        (br#"{"pgp_key":"a2V5"}"#.to_vec(), "not supported"),
    ] {
        bad(
            api.raw("PUT", "sys/generate-root/attempt", Some(body))
                .await,
            msg,
        );
    }
    bad(
        api.put(
            "sys/generate-root/update",
            json!({"key": keys.hex[0], "nonce": "x"}),
        )
        .await,
        "no root generation in progress",
    );
    // A client-chosen OTP (base62, 28 characters) works as well.
    let otp = "0123456789abcdefghijABCDEFGH";
    let st = ok(
        api.put("sys/generate-root/attempt", json!({ "otp": otp }))
            .await,
        200,
    );
    assert_eq!(st["otp"], "", "a client OTP is not echoed");
    let gnonce = st["nonce"].as_str().unwrap().to_string();
    bad(
        api.raw("PUT", "sys/generate-root/update", Some(b"{}".to_vec()))
            .await,
        "'key' must be specified",
    );
    ok(
        api.put(
            "sys/generate-root/update",
            json!({"key": keys.b64[2], "nonce": gnonce}),
        )
        .await,
        200,
    );
    let done = ok(
        api.put(
            "sys/generate-root/update",
            json!({"key": keys.b64[0], "nonce": gnonce}),
        )
        .await,
        200,
    );
    let token = decode(done["encoded_token"].as_str().unwrap(), otp);
    let me = ok(
        api.with_token(&token).get("auth/token/lookup-self").await,
        200,
    );
    assert_eq!(me["data"]["policies"], json!(["root"]));

    // Racing final keys: exactly one completes, and its token works.
    let st = ok(api.raw("PUT", "sys/generate-root/attempt", None).await, 200);
    let keys_otp = st["otp"].as_str().unwrap().to_string();
    let gnonce = st["nonce"].as_str().unwrap().to_string();
    ok(
        api.put(
            "sys/generate-root/update",
            json!({"key": keys.hex[0], "nonce": gnonce}),
        )
        .await,
        200,
    );
    let racers: Vec<_> = [&keys.hex[1], &keys.hex[2]]
        .into_iter()
        .map(|k| {
            let (api, body) = (api.clone(), json!({"key": k, "nonce": gnonce}));
            tokio::spawn(async move { api.put("sys/generate-root/update", body).await })
        })
        .collect();
    let mut completed = 0;
    for r in racers {
        let r = r.await.unwrap();
        if r.status == 200 {
            assert_eq!(r.body["complete"], true);
            let t = decode(r.body["encoded_token"].as_str().unwrap(), &keys_otp);
            ok(api.with_token(&t).get("auth/token/lookup-self").await, 200);
            completed += 1;
        } else {
            bad(r, "no root generation in progress");
        }
    }
    assert_eq!(completed, 1);
    // Racing rekey starts: one wins.
    let racers: Vec<_> = (0..4)
        .map(|_| {
            let api = api.clone();
            tokio::spawn(async move {
                api.put(
                    "sys/rekey/init",
                    json!({"secret_shares": 3, "secret_threshold": 2}),
                )
                .await
                .status
            })
        })
        .collect();
    let mut codes = Vec::new();
    for r in racers {
        codes.push(r.await.unwrap());
    }
    codes.sort();
    assert_eq!(codes, [200, 400, 400, 400]);
    assert_eq!(api.delete("sys/rekey/init").await.status, 204);

    // Verbs.
    assert_eq!(api.raw("PATCH", "sys/rekey/init", None).await.status, 405);
    assert_eq!(api.get("sys/rekey/update").await.status, 405);
    assert_eq!(api.get("sys/generate-root/update").await.status, 405);
    assert_eq!(
        api.raw("PATCH", "sys/generate-root/attempt", None)
            .await
            .status,
        405
    );
    assert_eq!(root.delete("sys/key-status").await.status, 405);
    assert_eq!(api.delete("sys/generate-root/attempt").await.status, 204);

    // Sealed: 503 for all of them, the token-less ones included.
    ok(root.put("sys/seal", json!({})).await, 204);
    assert_eq!(api.get("sys/rekey/init").await.status, 503);
    assert_eq!(
        api.put(
            "sys/rekey/update",
            json!({"key": keys.hex[0], "nonce": "x"})
        )
        .await
        .status,
        503
    );
    assert_eq!(
        api.raw("PUT", "sys/generate-root/attempt", None)
            .await
            .status,
        503
    );
    assert_eq!(root.put("sys/rotate", json!({})).await.status, 503);
    assert_eq!(root.get("sys/key-status").await.status, 503);
}
