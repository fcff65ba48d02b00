//! The transit engine end to end, through the gateway of a real cluster:
//! every key type, encrypt/decrypt/rewrap (single and batch, per-item
//! errors), rotation and version floors, data keys, hash, random, HMAC,
//! sign/verify, export, backup/restore, the bad-input list; signatures
//! checked with an independent library (ring); a token limited by policy
//! to `transit/encrypt/<key>` and `transit/decrypt/<key>`; the CLI.

use std::process::Command;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use bulwark_e2e::{bulwark_bin, init_unsealed, Api, Cluster, Layout, Store};
use serde_json::{json, Value};
use x509_parser::prelude::FromDer;

fn b64(s: &str) -> String {
    STANDARD.encode(s)
}

fn s(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_string()
}

async fn ok(api: &Api, path: &str, body: Value) -> Value {
    let r = api.put(path, body.clone()).await;
    assert!(
        r.status == 200 || r.status == 204,
        "PUT {path} {body}: {} {:?}",
        r.status,
        r.body
    );
    r.body
}

/// A 400 whose error mentions `needle`.
async fn bad(api: &Api, path: &str, body: Value, needle: &str) {
    let r = api.put(path, body.clone()).await;
    assert_eq!(r.status, 400, "PUT {path} {body}: {:?}", r.body);
    let errors = r.body["errors"].to_string();
    assert!(errors.contains(needle), "PUT {path} {body}: {errors}");
}

async fn encrypt(api: &Api, key: &str, plaintext: &str) -> String {
    let r = ok(
        api,
        &format!("transit/encrypt/{key}"),
        json!({"plaintext": b64(plaintext)}),
    )
    .await;
    s(&r["data"]["ciphertext"])
}

async fn decrypt(api: &Api, key: &str, ciphertext: &str) -> String {
    let r = ok(
        api,
        &format!("transit/decrypt/{key}"),
        json!({"ciphertext": ciphertext}),
    )
    .await;
    let plain = STANDARD
        .decode(s(&r["data"]["plaintext"]))
        .expect("base64 plaintext");
    String::from_utf8(plain).expect("utf-8")
}

/// The base64 body of `vault:v<N>:<body>`.
fn body_of(text: &str) -> &str {
    text.splitn(3, ':').nth(2).expect("vault:v<N>:<body>")
}

/// The subject public key bits of a PKIX PEM public key.
fn spki_key(pem: &str) -> Vec<u8> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("PEM");
    let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&pem.contents).expect("SPKI");
    spki.subject_public_key.data.to_vec()
}

async fn cluster() -> (Cluster, Api) {
    let c = Cluster::start(Layout::AllInOne, Store::SqliteFile);
    let api = c.client();
    let root = api.with_token(&init_unsealed(&api).await);
    let r = root
        .put("sys/mounts/transit", json!({"type": "transit"}))
        .await;
    assert_eq!(r.status, 204, "enable transit: {:?}", r.body);
    (c, root)
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_encryption_and_bad_input() {
    let (_c, root) = cluster().await;
    let r = root.get("sys/mounts").await;
    assert_eq!(r.body["data"]["transit/"]["type"], "transit");

    // Every key type: created, read back in Vault's shape.
    for kt in [
        "aes128-gcm96",
        "aes256-gcm96",
        "chacha20-poly1305",
        "ed25519",
        "ecdsa-p256",
        "ecdsa-p384",
        "rsa-2048",
        "rsa-3072",
        "rsa-4096",
        "hmac",
    ] {
        let r = ok(&root, &format!("transit/keys/{kt}"), json!({"type": kt})).await;
        assert_eq!(r["data"]["type"], kt);
        let d = root.get(&format!("transit/keys/{kt}")).await.body["data"].clone();
        assert_eq!(d["name"], kt);
        assert_eq!(d["latest_version"], 1);
        assert_eq!(d["min_decryption_version"], 1);
        assert_eq!(d["min_encryption_version"], 0);
        assert_eq!(d["deletion_allowed"], false);
        let asymmetric = kt.starts_with("ed") || kt.starts_with("ecdsa") || kt.starts_with("rsa");
        if asymmetric {
            assert!(d["keys"]["1"]["public_key"].is_string(), "{kt}: {d}");
            assert!(d["keys"]["1"]["creation_time"].is_string(), "{kt}: {d}");
        } else {
            assert!(d["keys"]["1"].is_i64(), "{kt}: {d}");
        }
        assert_eq!(d["supports_signing"], asymmetric, "{kt}");
        let encrypts = kt.starts_with("aes") || kt.starts_with("chacha") || kt.starts_with("rsa");
        assert_eq!(d["supports_encryption"], encrypts, "{kt}");
        if encrypts {
            let ct = encrypt(&root, kt, "hello transit").await;
            assert!(ct.starts_with("vault:v1:"), "{ct}");
            assert_eq!(decrypt(&root, kt, &ct).await, "hello transit");
        }
    }
    let r = root.raw("LIST", "transit/keys", None).await;
    assert_eq!(r.body["data"]["keys"].as_array().map(Vec::len), Some(10));

    // The ciphertext format: base64(12-byte nonce ‖ ciphertext ‖ 16-byte tag).
    let ct = encrypt(&root, "aes256-gcm96", "abc").await;
    assert_eq!(STANDARD.decode(body_of(&ct)).unwrap().len(), 12 + 3 + 16);

    // Batch: per-item results in order, references echoed, failures 400.
    let r = root
        .put(
            "transit/encrypt/aes256-gcm96",
            json!({"batch_input": [
                {"plaintext": b64("one"), "reference": "r1"},
                {"plaintext": "not base64!"},
                {"plaintext": b64("three")},
                {},
            ]}),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    let results = r.body["data"]["batch_results"].as_array().unwrap().clone();
    assert_eq!(results.len(), 4);
    assert_eq!(results[0]["reference"], "r1");
    assert!(s(&results[0]["ciphertext"]).starts_with("vault:v1:"));
    assert!(s(&results[1]["error"]).contains("base64"));
    assert!(results[2]["ciphertext"].is_string());
    assert!(s(&results[3]["error"]).contains("missing plaintext"));
    // partial_failure_response_code.
    let r = root
        .put(
            "transit/encrypt/aes256-gcm96",
            json!({"partial_failure_response_code": 207, "batch_input": [
                {"plaintext": b64("ok")}, {"plaintext": "!"}]}),
        )
        .await;
    assert_eq!(r.status, 207);
    // A clean batch of 100 round-trips.
    let batch: Vec<Value> = (0..100)
        .map(|i| json!({"plaintext": b64(&format!("item {i}"))}))
        .collect();
    let r = ok(
        &root,
        "transit/encrypt/chacha20-poly1305",
        json!({"batch_input": batch}),
    )
    .await;
    let cts: Vec<Value> = r["data"]["batch_results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| json!({"ciphertext": x["ciphertext"]}))
        .collect();
    let r = ok(
        &root,
        "transit/decrypt/chacha20-poly1305",
        json!({"batch_input": cts}),
    )
    .await;
    for (i, item) in r["data"]["batch_results"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        assert_eq!(s(&item["plaintext"]), b64(&format!("item {i}")));
    }

    // Rotation: old ciphertexts decrypt, rewrap moves them, floors apply.
    let v1 = encrypt(&root, "aes256-gcm96", "version one").await;
    let r = ok(&root, "transit/keys/aes256-gcm96/rotate", json!({})).await;
    assert_eq!(r["data"]["latest_version"], 2);
    assert!(encrypt(&root, "aes256-gcm96", "x")
        .await
        .starts_with("vault:v2:"));
    assert_eq!(decrypt(&root, "aes256-gcm96", &v1).await, "version one");
    let r = ok(
        &root,
        "transit/rewrap/aes256-gcm96",
        json!({"ciphertext": v1}),
    )
    .await;
    let v2 = s(&r["data"]["ciphertext"]);
    assert!(v2.starts_with("vault:v2:"));
    assert_eq!(r["data"]["key_version"], 2);
    let r = ok(
        &root,
        "transit/rewrap/aes256-gcm96",
        json!({"batch_input": [{"ciphertext": v1}, {"ciphertext": v2}]}),
    )
    .await;
    assert_eq!(r["data"]["batch_results"].as_array().unwrap().len(), 2);
    ok(
        &root,
        "transit/keys/aes256-gcm96/config",
        json!({"min_decryption_version": 2}),
    )
    .await;
    bad(
        &root,
        "transit/decrypt/aes256-gcm96",
        json!({"ciphertext": v1}),
        "disallowed by policy",
    )
    .await;
    assert_eq!(decrypt(&root, "aes256-gcm96", &v2).await, "version one");
    bad(
        &root,
        "transit/keys/aes256-gcm96/config",
        json!({"min_decryption_version": 5}),
        "latest key version is 2",
    )
    .await;
    // Trim needs min_encryption_version.
    bad(
        &root,
        "transit/keys/aes256-gcm96/trim",
        json!({"min_available_version": 2}),
        "min_encryption_version",
    )
    .await;
    ok(
        &root,
        "transit/keys/aes256-gcm96/config",
        json!({"min_encryption_version": 2}),
    )
    .await;
    let r = ok(
        &root,
        "transit/keys/aes256-gcm96/trim",
        json!({"min_available_version": 2}),
    )
    .await;
    assert_eq!(r["data"]["min_available_version"], 2);
    assert!(r["data"]["keys"].get("1").is_none());

    // The bad-input list: all clear 400s.
    let key = "aes128-gcm96";
    let good = encrypt(&root, key, "tamper me").await;
    let mut raw = STANDARD.decode(body_of(&good)).unwrap();
    let last = raw.len() - 1;
    raw[last] ^= 1;
    let tampered = format!("vault:v1:{}", STANDARD.encode(&raw));
    let foreign = encrypt(&root, "chacha20-poly1305", "not yours").await;
    for (path, body, needle) in [
        (
            "transit/encrypt/aes128-gcm96",
            json!({"plaintext": "%%%"}),
            "base64",
        ),
        (
            "transit/encrypt/aes128-gcm96",
            json!({}),
            "missing plaintext",
        ),
        (
            "transit/encrypt/aes128-gcm96",
            json!({"plaintext": b64("x"), "key_version": 7}),
            "version",
        ),
        (
            "transit/decrypt/aes128-gcm96",
            json!({"ciphertext": tampered}),
            "message authentication failed",
        ),
        (
            "transit/decrypt/aes128-gcm96",
            json!({"ciphertext": foreign}),
            "message authentication failed",
        ),
        (
            "transit/decrypt/aes128-gcm96",
            json!({"ciphertext": "vault:v9:AAAA"}),
            "version is too new",
        ),
        (
            "transit/decrypt/aes128-gcm96",
            json!({"ciphertext": "plain"}),
            "no prefix",
        ),
        (
            "transit/decrypt/aes128-gcm96",
            json!({"ciphertext": "vault:v1:@@@"}),
            "base64",
        ),
        (
            "transit/decrypt/aes128-gcm96",
            json!({"ciphertext": good, "context": "!!"}),
            "base64",
        ),
        (
            "transit/decrypt/missing-key",
            json!({"ciphertext": good}),
            "encryption key not found",
        ),
        (
            "transit/encrypt/ed25519",
            json!({"plaintext": b64("x")}),
            "does not support encryption",
        ),
        (
            "transit/encrypt/hmac",
            json!({"plaintext": b64("x")}),
            "does not support encryption",
        ),
        (
            "transit/sign/aes128-gcm96",
            json!({"input": b64("x")}),
            "does not support signing",
        ),
        ("transit/sign/ed25519", json!({"input": "??"}), "base64"),
        (
            "transit/sign/ecdsa-p256/md5",
            json!({"input": b64("x")}),
            "unsupported hash algorithm",
        ),
        (
            "transit/hmac/hmac/sha1",
            json!({"input": b64("x")}),
            "unsupported hash algorithm",
        ),
        (
            "transit/verify/ecdsa-p256",
            json!({"input": b64("x"), "signature": "vault:v1:%%"}),
            "base64",
        ),
        (
            "transit/datakey/plaintext/aes128-gcm96",
            json!({"bits": 100}),
            "bits",
        ),
        (
            "transit/datakey/wrapped/ed25519",
            json!({}),
            "does not support encryption",
        ),
        (
            "transit/keys/bad-type",
            json!({"type": "des"}),
            "unknown key type",
        ),
        (
            "transit/keys/conv",
            json!({"convergent_encryption": true}),
            "derivation",
        ),
        (
            "transit/keys/rot",
            json!({"auto_rotate_period": "10m"}),
            "at least an hour",
        ),
        (
            "transit/hash/md5",
            json!({"input": b64("x")}),
            "unsupported hash algorithm",
        ),
        (
            "transit/hash",
            json!({"input": b64("x"), "format": "binary"}),
            "format",
        ),
        ("transit/random/nope/12", json!({}), "entropy source"),
        ("transit/random", json!({"bytes": 1_000_000}), "maximum"),
        ("transit/export/encryption-key/aes128-gcm96", json!({}), ""),
    ] {
        if path.starts_with("transit/export") {
            let r = root.get(path).await;
            assert_eq!(r.status, 400, "{path}: {:?}", r.body);
            assert!(r.body["errors"].to_string().contains("not exportable"));
            continue;
        }
        bad(&root, path, body, needle).await;
    }
    // Unknown paths and verbs.
    assert_eq!(
        root.put("transit/nothing-here", json!({})).await.status,
        404
    );
    assert_eq!(root.get("transit/encrypt/aes128-gcm96").await.status, 405);

    // Derived and convergent keys.
    ok(
        &root,
        "transit/keys/conv",
        json!({"derived": true, "convergent_encryption": true}),
    )
    .await;
    let a = ok(
        &root,
        "transit/encrypt/conv",
        json!({"plaintext": b64("same"), "context": b64("ctx")}),
    )
    .await;
    let b = ok(
        &root,
        "transit/encrypt/conv",
        json!({"plaintext": b64("same"), "context": b64("ctx")}),
    )
    .await;
    assert_eq!(a["data"]["ciphertext"], b["data"]["ciphertext"]);
    bad(
        &root,
        "transit/encrypt/conv",
        json!({"plaintext": b64("same")}),
        "missing 'context'",
    )
    .await;
    let d = root.get("transit/keys/conv").await.body["data"].clone();
    assert_eq!(
        (d["derived"].clone(), d["convergent_encryption"].clone()),
        (json!(true), json!(true))
    );
    // Associated data.
    let r = ok(
        &root,
        "transit/encrypt/chacha20-poly1305",
        json!({"plaintext": b64("p"), "associated_data": b64("ad")}),
    )
    .await;
    let ct = s(&r["data"]["ciphertext"]);
    ok(
        &root,
        "transit/decrypt/chacha20-poly1305",
        json!({"ciphertext": ct, "associated_data": b64("ad")}),
    )
    .await;
    bad(
        &root,
        "transit/decrypt/chacha20-poly1305",
        json!({"ciphertext": ct}),
        "message authentication failed",
    )
    .await;

    // Upsert by a token whose policy grants create (root).
    let ct = encrypt(&root, "upserted", "auto-created").await;
    assert_eq!(
        root.get("transit/keys/upserted").await.body["data"]["type"],
        "aes256-gcm96"
    );
    assert_eq!(decrypt(&root, "upserted", &ct).await, "auto-created");

    // Data keys.
    let r = ok(
        &root,
        "transit/datakey/plaintext/aes128-gcm96",
        json!({"bits": 512}),
    )
    .await;
    let key = s(&r["data"]["plaintext"]);
    assert_eq!(STANDARD.decode(&key).unwrap().len(), 64);
    let back = ok(
        &root,
        "transit/decrypt/aes128-gcm96",
        json!({"ciphertext": r["data"]["ciphertext"]}),
    )
    .await;
    assert_eq!(s(&back["data"]["plaintext"]), key);
    let r = ok(&root, "transit/datakey/wrapped/aes128-gcm96", json!({})).await;
    assert!(r["data"].get("plaintext").is_none());
    assert!(s(&r["data"]["ciphertext"]).starts_with("vault:v1:"));

    // Hash and random.
    let r = ok(&root, "transit/hash/sha2-256", json!({"input": b64("abc")})).await;
    assert_eq!(
        r["data"]["sum"],
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let r = ok(
        &root,
        "transit/hash",
        json!({"input": b64("abc"), "algorithm": "sha3-256", "format": "base64"}),
    )
    .await;
    assert_eq!(STANDARD.decode(s(&r["data"]["sum"])).unwrap().len(), 32);
    let r = ok(&root, "transit/random/24", json!({"format": "hex"})).await;
    assert_eq!(s(&r["data"]["random_bytes"]).len(), 48);
    let r = ok(&root, "transit/random", json!({})).await;
    assert_eq!(
        STANDARD
            .decode(s(&r["data"]["random_bytes"]))
            .unwrap()
            .len(),
        32
    );
    let r = ok(&root, "transit/random/platform/8", json!({})).await;
    assert_eq!(
        STANDARD
            .decode(s(&r["data"]["random_bytes"]))
            .unwrap()
            .len(),
        8
    );

    // Export only when exportable; backup/restore only when allowed.
    ok(
        &root,
        "transit/keys/exp",
        json!({"exportable": true, "allow_plaintext_backup": true}),
    )
    .await;
    let ct = encrypt(&root, "exp", "portable").await;
    let r = root.get("transit/export/encryption-key/exp/1").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(
        STANDARD
            .decode(s(&r.body["data"]["keys"]["1"]))
            .unwrap()
            .len(),
        32
    );
    let r = root.get("transit/export/public-key/ecdsa-p256").await;
    assert!(s(&r.body["data"]["keys"]["1"]).contains("BEGIN PUBLIC KEY"));
    assert_eq!(root.get("transit/backup/aes128-gcm96").await.status, 400);
    let r = root.get("transit/backup/exp").await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    let backup = s(&r.body["data"]["backup"]);
    ok(&root, "transit/restore/exp-copy", json!({"backup": backup})).await;
    assert_eq!(decrypt(&root, "exp-copy", &ct).await, "portable");
    bad(
        &root,
        "transit/restore",
        json!({"backup": backup}),
        "already exists",
    )
    .await;
    ok(
        &root,
        "transit/restore",
        json!({"backup": backup, "force": true}),
    )
    .await;
    bad(
        &root,
        "transit/restore/x",
        json!({"backup": "bm90IGEgYmFja3Vw"}),
        "invalid backup",
    )
    .await;
    bad(
        &root,
        "transit/restore/x",
        json!({}),
        "'backup' must be supplied",
    )
    .await;

    // Cache config.
    let r = ok(&root, "transit/cache-config", json!({"size": 50})).await;
    assert_eq!(r["data"]["size"], 50);
    assert_eq!(
        root.get("transit/cache-config").await.body["data"]["size"],
        50
    );
    bad(&root, "transit/cache-config", json!({"size": 5}), "size").await;

    // Delete only with deletion_allowed.
    let r = root.delete("transit/keys/exp").await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    ok(
        &root,
        "transit/keys/exp/config",
        json!({"deletion_allowed": true}),
    )
    .await;
    assert_eq!(root.delete("transit/keys/exp").await.status, 204);
    assert_eq!(root.get("transit/keys/exp").await.status, 404);

    // Disabling the mount drops its keys.
    assert_eq!(root.delete("sys/mounts/transit").await.status, 204);
    ok(&root, "sys/mounts/transit", json!({"type": "transit"})).await;
    assert_eq!(root.raw("LIST", "transit/keys", None).await.status, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn signatures_and_hmacs_verify_independently() {
    use ring::signature::{self, UnparsedPublicKey};
    let (_c, root) = cluster().await;
    let msg = b"signed by transit, checked by ring";
    let input = STANDARD.encode(msg);
    for kt in ["ed25519", "ecdsa-p256", "rsa-2048"] {
        ok(&root, &format!("transit/keys/{kt}"), json!({"type": kt})).await;
    }
    let public = |d: &Value| s(&d["keys"]["1"]["public_key"]);

    // Ed25519: the public key is base64 of the raw 32 bytes.
    let d = root.get("transit/keys/ed25519").await.body["data"].clone();
    let pk = STANDARD.decode(public(&d)).unwrap();
    let r = ok(&root, "transit/sign/ed25519", json!({"input": input})).await;
    let sig_text = s(&r["data"]["signature"]);
    assert_eq!(r["data"]["key_version"], 1);
    let sig = STANDARD.decode(body_of(&sig_text)).unwrap();
    UnparsedPublicKey::new(&signature::ED25519, &pk)
        .verify(msg, &sig)
        .expect("ring verifies the ed25519 signature");
    assert!(UnparsedPublicKey::new(&signature::ED25519, &pk)
        .verify(b"other", &sig)
        .is_err());

    // ECDSA P-256: PKIX PEM; ASN.1 and JWS marshaling.
    let d = root.get("transit/keys/ecdsa-p256").await.body["data"].clone();
    assert_eq!(d["keys"]["1"]["name"], "P-256");
    let point = spki_key(&public(&d));
    let r = ok(
        &root,
        "transit/sign/ecdsa-p256/sha2-256",
        json!({"input": input}),
    )
    .await;
    let der = STANDARD
        .decode(body_of(&s(&r["data"]["signature"])))
        .unwrap();
    UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, &point)
        .verify(msg, &der)
        .expect("ring verifies the ASN.1 ECDSA signature");
    let r = ok(
        &root,
        "transit/sign/ecdsa-p256",
        json!({"input": input, "marshaling_algorithm": "jws"}),
    )
    .await;
    let jws_text = s(&r["data"]["signature"]);
    let fixed = URL_SAFE_NO_PAD.decode(body_of(&jws_text)).unwrap();
    assert_eq!(fixed.len(), 64);
    UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &point)
        .verify(msg, &fixed)
        .expect("ring verifies the JWS ECDSA signature");
    let r = ok(
        &root,
        "transit/verify/ecdsa-p256",
        json!({"input": input, "signature": jws_text, "marshaling_algorithm": "jws"}),
    )
    .await;
    assert_eq!(r["data"]["valid"], true);

    // RSA: PKCS#1 v1.5 and PSS (salt = hash length, which ring requires).
    let d = root.get("transit/keys/rsa-2048").await.body["data"].clone();
    let rsa_pk = spki_key(&public(&d));
    let r = ok(
        &root,
        "transit/sign/rsa-2048/sha2-256",
        json!({"input": input, "signature_algorithm": "pkcs1v15"}),
    )
    .await;
    let sig = STANDARD
        .decode(body_of(&s(&r["data"]["signature"])))
        .unwrap();
    UnparsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, &rsa_pk)
        .verify(msg, &sig)
        .expect("ring verifies the RSA PKCS#1 v1.5 signature");
    let r = ok(
        &root,
        "transit/sign/rsa-2048/sha2-256",
        json!({"input": input, "salt_length": "hash"}),
    )
    .await;
    let sig = STANDARD
        .decode(body_of(&s(&r["data"]["signature"])))
        .unwrap();
    UnparsedPublicKey::new(&signature::RSA_PSS_2048_8192_SHA256, &rsa_pk)
        .verify(msg, &sig)
        .expect("ring verifies the RSA-PSS signature");
    // The default (auto) salt verifies through transit.
    let r = ok(&root, "transit/sign/rsa-2048", json!({"input": input})).await;
    let r = ok(
        &root,
        "transit/verify/rsa-2048",
        json!({"input": input, "signature": r["data"]["signature"]}),
    )
    .await;
    assert_eq!(r["data"]["valid"], true);

    // Batch sign and verify, with a wrong item.
    let r = ok(
        &root,
        "transit/sign/ed25519",
        json!({"batch_input": [{"input": b64("a"), "reference": "x"}, {"input": b64("b")}]}),
    )
    .await;
    let sigs = r["data"]["batch_results"].as_array().unwrap().clone();
    assert_eq!(sigs[0]["reference"], "x");
    let r = ok(
        &root,
        "transit/verify/ed25519",
        json!({"batch_input": [
            {"input": b64("a"), "signature": sigs[0]["signature"]},
            {"input": b64("b"), "signature": sigs[1]["signature"]},
            {"input": b64("b"), "signature": sigs[0]["signature"]},
        ]}),
    )
    .await;
    let valid: Vec<Value> = r["data"]["batch_results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["valid"].clone())
        .collect();
    assert_eq!(valid, vec![json!(true), json!(true), json!(false)]);
    // Rotated keys: old signatures verify until min_decryption_version.
    ok(&root, "transit/keys/ed25519/rotate", json!({})).await;
    let r = ok(&root, "transit/sign/ed25519", json!({"input": input})).await;
    assert!(s(&r["data"]["signature"]).starts_with("vault:v2:"));
    let r = ok(
        &root,
        "transit/verify/ed25519",
        json!({"input": input, "signature": sig_text}),
    )
    .await;
    assert_eq!(r["data"]["valid"], true);
    ok(
        &root,
        "transit/keys/ed25519/config",
        json!({"min_decryption_version": 2}),
    )
    .await;
    bad(
        &root,
        "transit/verify/ed25519",
        json!({"input": input, "signature": sig_text}),
        "too old",
    )
    .await;

    // HMAC and verify (also with a key of another type).
    ok(&root, "transit/keys/mac", json!({"type": "hmac"})).await;
    for key in ["mac", "ecdsa-p256"] {
        let r = ok(
            &root,
            &format!("transit/hmac/{key}/sha2-512"),
            json!({"input": input}),
        )
        .await;
        let mac = s(&r["data"]["hmac"]);
        assert!(mac.starts_with("vault:v1:"));
        assert_eq!(STANDARD.decode(body_of(&mac)).unwrap().len(), 64);
        let r = ok(
            &root,
            &format!("transit/verify/{key}/sha2-512"),
            json!({"input": input, "hmac": mac}),
        )
        .await;
        assert_eq!(r["data"]["valid"], true);
        let r = ok(
            &root,
            &format!("transit/verify/{key}/sha2-512"),
            json!({"input": b64("other"), "hmac": mac}),
        )
        .await;
        assert_eq!(r["data"]["valid"], false);
    }
    let r = ok(
        &root,
        "transit/hmac/mac",
        json!({"batch_input": [{"input": b64("1")}, {"input": b64("2")}]}),
    )
    .await;
    let macs = r["data"]["batch_results"].as_array().unwrap().clone();
    assert_eq!(macs.len(), 2);
    // A batch mixing hmac and signature is refused.
    bad(
        &root,
        "transit/verify/mac",
        json!({"batch_input": [
            {"input": b64("1"), "hmac": macs[0]["hmac"]},
            {"input": b64("1"), "signature": "vault:v1:AAAA"},
        ]}),
        "not a mix",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn policy_limited_token_and_cli() {
    let (c, root) = cluster().await;
    ok(&root, "transit/keys/app", json!({})).await;
    ok(
        &root,
        "sys/policies/acl/app-crypto",
        json!({"policy": r#"
            path "transit/encrypt/app" { capabilities = ["update"] }
            path "transit/decrypt/app" { capabilities = ["update"] }
            path "transit/encrypt/other" { capabilities = ["update"] }
            path "transit/encrypt/fresh" { capabilities = ["create", "update"] }
        "#}),
    )
    .await;
    let r = ok(
        &root,
        "auth/token/create",
        json!({"policies": ["app-crypto"], "no_default_policy": true}),
    )
    .await;
    let app = c.client().with_token(&s(&r["auth"]["client_token"]));
    let ct = encrypt(&app, "app", "limited").await;
    assert_eq!(decrypt(&app, "app", &ct).await, "limited");
    // Nothing else.
    assert_eq!(app.get("transit/keys/app").await.status, 403);
    assert_eq!(
        app.put("transit/rewrap/app", json!({"ciphertext": ct}))
            .await
            .status,
        403
    );
    assert_eq!(
        app.put("transit/decrypt/other", json!({"ciphertext": ct}))
            .await
            .status,
        403
    );
    // A missing key is created only with `create`.
    let r = app
        .put("transit/encrypt/other", json!({"plaintext": b64("x")}))
        .await;
    assert_eq!(r.status, 403, "{:?}", r.body);
    assert_eq!(root.get("transit/keys/other").await.status, 404);
    encrypt(&app, "fresh", "upserted by policy").await;
    assert_eq!(root.get("transit/keys/fresh").await.status, 200);

    // The generic CLI commands.
    let home = tempfile::tempdir().expect("home");
    let token = root.token.clone().expect("root token");
    let cli = |args: &[&str]| {
        let out = Command::new(bulwark_bin())
            .args(args)
            .env_remove("VAULT_FORMAT")
            .env("VAULT_ADDR", &c.http)
            .env("VAULT_TOKEN", &token)
            .env("HOME", home.path())
            .output()
            .expect("run bulwark");
        assert!(
            out.status.success(),
            "bulwark {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    cli(&["secrets", "enable", "-path=transit2", "transit"]);
    cli(&["write", "-f", "transit2/keys/cli"]);
    let plaintext = b64("from the cli");
    let ct = cli(&[
        "write",
        "-field=ciphertext",
        "transit2/encrypt/cli",
        &format!("plaintext={plaintext}"),
    ]);
    assert!(ct.starts_with("vault:v1:"), "{ct}");
    let back = cli(&[
        "write",
        "-field=plaintext",
        "transit2/decrypt/cli",
        &format!("ciphertext={ct}"),
    ]);
    assert_eq!(back, plaintext);
}
