//! The service end to end over an in-memory store: every key type and
//! operation through the gRPC handlers (batches included), rotation,
//! rewrap, version floors, convergent encryption, tampering, export,
//! backup/restore, and what is stored at rest.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bulwark_proto::transit::v1 as pb;
use bulwark_proto::transit::v1::transit_server::Transit;
use bulwark_shared::barrier::Barrier;
use bulwark_shared::keyring::Keyring;
use bulwark_shared::storage::{Database, StorageConfig};
use tonic::{Code, Request};
use zeroize::Zeroizing;

use crate::keys::{self, KeyType};
use crate::service::TransitService;
use crate::store::TransitStore;

const M: &str = "7d1c0f2a-0000-4000-8000-000000000001";

struct Harness {
    db: Database,
    store: Arc<TransitStore>,
    svc: TransitService,
}

async fn harness() -> Harness {
    let db = Database::connect(&StorageConfig::SqliteMemory)
        .await
        .expect("in-memory database");
    let keyring = Keyring::new();
    keyring.install(1, [(1, Zeroizing::new([5u8; 32]))]);
    let raw = db.namespace("transit").await.expect("transit namespace");
    let store = Arc::new(TransitStore::new(Barrier::new(raw, keyring)));
    Harness {
        db,
        svc: TransitService::new(store.clone()),
        store,
    }
}

impl Harness {
    async fn create(&self, name: &str, kt: &str) -> pb::KeyInfo {
        self.create_with(pb::CreateKeyRequest {
            name: name.into(),
            r#type: kt.into(),
            ..Default::default()
        })
        .await
    }

    async fn create_with(&self, mut req: pb::CreateKeyRequest) -> pb::KeyInfo {
        req.mount = M.into();
        let r = self
            .svc
            .create_key(Request::new(req))
            .await
            .expect("create")
            .into_inner();
        assert!(r.found);
        r.key.expect("key info")
    }

    async fn read(&self, name: &str) -> pb::KeyInfoResponse {
        self.svc
            .read_key(Request::new(pb::ReadKeyRequest {
                mount: M.into(),
                name: name.into(),
                context: vec![],
            }))
            .await
            .expect("read")
            .into_inner()
    }

    async fn encrypt_items(
        &self,
        name: &str,
        items: Vec<pb::EncryptItem>,
        key_version: u32,
    ) -> Result<Vec<pb::CipherResult>, tonic::Status> {
        self.svc
            .encrypt(Request::new(pb::EncryptRequest {
                mount: M.into(),
                name: name.into(),
                key_version,
                items,
                upsert: None,
            }))
            .await
            .map(|r| r.into_inner().results)
    }

    async fn encrypt(&self, name: &str, plaintext: &[u8], context: &[u8]) -> String {
        let r = self
            .encrypt_items(name, vec![item(plaintext, context)], 0)
            .await
            .expect("encrypt");
        assert_eq!(r[0].error, "", "encrypt error");
        r[0].ciphertext.clone()
    }

    async fn decrypt_items(
        &self,
        name: &str,
        items: Vec<pb::DecryptItem>,
    ) -> Result<Vec<pb::PlainResult>, tonic::Status> {
        self.svc
            .decrypt(Request::new(pb::DecryptRequest {
                mount: M.into(),
                name: name.into(),
                items,
            }))
            .await
            .map(|r| r.into_inner().results)
    }

    /// The plaintext, or the item's error.
    async fn decrypt(
        &self,
        name: &str,
        ciphertext: &str,
        context: &[u8],
    ) -> Result<Vec<u8>, String> {
        let r = self
            .decrypt_items(name, vec![ditem(ciphertext, context)])
            .await
            .map_err(|s| s.message().to_string())?;
        if r[0].error.is_empty() {
            Ok(r[0].plaintext.clone())
        } else {
            Err(r[0].error.clone())
        }
    }

    async fn configure(&self, req: pb::ConfigureKeyRequest) -> Result<pb::KeyInfo, tonic::Status> {
        self.svc
            .configure_key(Request::new(pb::ConfigureKeyRequest {
                mount: M.into(),
                ..req
            }))
            .await
            .map(|r| r.into_inner().key.expect("key"))
    }

    async fn rotate(&self, name: &str) -> pb::KeyInfo {
        self.svc
            .rotate_key(Request::new(pb::KeyRequest {
                mount: M.into(),
                name: name.into(),
            }))
            .await
            .expect("rotate")
            .into_inner()
            .key
            .expect("key")
    }

    async fn sign(
        &self,
        name: &str,
        options: pb::SignatureOptions,
        items: Vec<pb::SignItem>,
    ) -> Result<Vec<pb::SignResult>, tonic::Status> {
        self.svc
            .sign(Request::new(pb::SignRequest {
                mount: M.into(),
                name: name.into(),
                key_version: 0,
                options: Some(options),
                items,
            }))
            .await
            .map(|r| r.into_inner().results)
    }

    async fn verify(
        &self,
        name: &str,
        options: pb::SignatureOptions,
        items: Vec<pb::VerifyItem>,
    ) -> Result<Vec<pb::VerifyResult>, tonic::Status> {
        self.svc
            .verify(Request::new(pb::VerifyRequest {
                mount: M.into(),
                name: name.into(),
                options: Some(options),
                items,
            }))
            .await
            .map(|r| r.into_inner().results)
    }

    async fn hmac(&self, name: &str, alg: &str, inputs: Vec<Vec<u8>>) -> Vec<pb::HmacResult> {
        self.svc
            .hmac(Request::new(pb::HmacRequest {
                mount: M.into(),
                name: name.into(),
                algorithm: alg.into(),
                key_version: 0,
                inputs,
            }))
            .await
            .expect("hmac")
            .into_inner()
            .results
    }

    async fn export(
        &self,
        name: &str,
        kind: &str,
        version: &str,
    ) -> Result<pb::ExportKeyResponse, tonic::Status> {
        self.svc
            .export_key(Request::new(pb::ExportKeyRequest {
                mount: M.into(),
                name: name.into(),
                key_type: kind.into(),
                version: version.into(),
            }))
            .await
            .map(|r| r.into_inner())
    }
}

fn item(plaintext: &[u8], context: &[u8]) -> pb::EncryptItem {
    pb::EncryptItem {
        plaintext: plaintext.to_vec(),
        context: context.to_vec(),
        ..Default::default()
    }
}

fn ditem(ciphertext: &str, context: &[u8]) -> pb::DecryptItem {
    pb::DecryptItem {
        ciphertext: ciphertext.into(),
        context: context.to_vec(),
        ..Default::default()
    }
}

fn sig_opts(hash: &str, sig: &str, marshaling: &str) -> pb::SignatureOptions {
    pb::SignatureOptions {
        hash_algorithm: hash.into(),
        signature_algorithm: sig.into(),
        marshaling_algorithm: marshaling.into(),
        ..Default::default()
    }
}

/// The body of `vault:v<N>:<base64>`, decoded.
fn body(text: &str) -> Vec<u8> {
    let (_, b) = crate::ops::parse(text, "x").expect("vault text");
    STANDARD.decode(b).expect("base64")
}

#[tokio::test]
async fn every_encryption_type_round_trips_singly_and_in_batches() {
    let h = harness().await;
    for kt in [
        "aes128-gcm96",
        "aes256-gcm96",
        "chacha20-poly1305",
        "rsa-2048",
    ] {
        let info = h.create(kt, kt).await;
        assert_eq!(info.r#type, kt);
        assert!(info.supports_encryption && info.supports_decryption);
        let ct = h.encrypt(kt, b"the quick brown fox", b"").await;
        assert!(ct.starts_with("vault:v1:"), "{ct}");
        if kt != "rsa-2048" {
            // nonce (12) ‖ ciphertext (19) ‖ tag (16)
            assert_eq!(body(&ct).len(), 12 + 19 + 16, "{kt}");
        }
        assert_eq!(
            h.decrypt(kt, &ct, b"").await.unwrap(),
            b"the quick brown fox"
        );
        // Empty plaintext is a valid plaintext.
        let empty = h.encrypt(kt, b"", b"").await;
        assert_eq!(h.decrypt(kt, &empty, b"").await.unwrap(), b"");

        let batch: Vec<_> = (0..5u8).map(|i| item(&[i; 40], b"")).collect();
        let out = h.encrypt_items(kt, batch, 0).await.unwrap();
        assert_eq!(out.len(), 5);
        let back = h
            .decrypt_items(kt, out.iter().map(|r| ditem(&r.ciphertext, b"")).collect())
            .await
            .unwrap();
        for (i, r) in back.iter().enumerate() {
            assert_eq!(r.plaintext, vec![i as u8; 40], "{kt} item {i}");
        }
    }
}

#[tokio::test]
async fn associated_data_binds_aead_ciphertexts() {
    let h = harness().await;
    h.create("k", "").await;
    let r = h
        .encrypt_items(
            "k",
            vec![pb::EncryptItem {
                plaintext: b"secret".to_vec(),
                associated_data: b"row 7".to_vec(),
                ..Default::default()
            }],
            0,
        )
        .await
        .unwrap();
    let ct = r[0].ciphertext.clone();
    let dec = |aad: &[u8]| pb::DecryptItem {
        ciphertext: ct.clone(),
        associated_data: aad.to_vec(),
        ..Default::default()
    };
    let out = h
        .decrypt_items("k", vec![dec(b"row 7"), dec(b"row 8"), dec(b"")])
        .await
        .unwrap();
    assert_eq!(out[0].plaintext, b"secret");
    assert_eq!(out[1].error, "cipher: message authentication failed");
    assert_eq!(out[2].error, "cipher: message authentication failed");

    // RSA takes no associated data.
    h.create("r", "rsa-2048").await;
    let r = h
        .encrypt_items(
            "r",
            vec![pb::EncryptItem {
                plaintext: b"x".to_vec(),
                associated_data: b"ad".to_vec(),
                ..Default::default()
            }],
            0,
        )
        .await
        .unwrap();
    assert!(r[0].error.contains("associated_data"), "{}", r[0].error);
}

#[tokio::test]
async fn tampering_and_foreign_ciphertexts_fail_cleanly() {
    let h = harness().await;
    h.create("a", "").await;
    h.create("b", "").await;
    let ct = h.encrypt("a", b"payload", b"").await;
    // From another key.
    assert_eq!(
        h.decrypt("b", &ct, b"").await.unwrap_err(),
        "cipher: message authentication failed"
    );
    // Each byte flipped, tag included.
    let raw = body(&ct);
    for i in [0, 5, 12, raw.len() - 1] {
        let mut bad = raw.clone();
        bad[i] ^= 0x01;
        let text = format!("vault:v1:{}", STANDARD.encode(&bad));
        assert_eq!(
            h.decrypt("a", &text, b"").await.unwrap_err(),
            "cipher: message authentication failed",
            "byte {i}"
        );
    }
    // Malformed text.
    for (text, why) in [
        ("nope", "no prefix"),
        ("vault:v1", "wrong number of fields"),
        ("vault:vx:AAAA", "version number could not be decoded"),
        ("vault:v9:AAAA", "version is too new"),
        ("vault:v1:!!!!", "could not decode base64"),
        ("vault:v1:AAAA", "too short"),
    ] {
        let e = h.decrypt("a", text, b"").await.unwrap_err();
        assert!(e.contains(why), "{text}: {e}");
    }
    // A missing key is a request error, not an item error.
    let s = h
        .decrypt_items("missing", vec![ditem(&ct, b"")])
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    assert_eq!(s.message(), "encryption key not found");
}

#[tokio::test]
async fn rotation_rewrap_and_version_floors() {
    let h = harness().await;
    h.create("k", "aes256-gcm96").await;
    let v1 = h.encrypt("k", b"old data", b"").await;
    let info = h.rotate("k").await;
    assert_eq!(info.latest_version, 2);
    assert_eq!(info.versions.len(), 2);
    let v2 = h.encrypt("k", b"new data", b"").await;
    assert!(v2.starts_with("vault:v2:"));
    // The old ciphertext still decrypts.
    assert_eq!(h.decrypt("k", &v1, b"").await.unwrap(), b"old data");
    // Rewrap moves it to the latest version without exposing it.
    let r = h
        .svc
        .rewrap(Request::new(pb::RewrapRequest {
            mount: M.into(),
            name: "k".into(),
            key_version: 0,
            items: vec![ditem(&v1, b""), ditem("garbage", b"")],
        }))
        .await
        .unwrap()
        .into_inner()
        .results;
    assert!(
        r[0].ciphertext.starts_with("vault:v2:"),
        "{:?}",
        r[0].ciphertext
    );
    assert_eq!(r[0].key_version, 2);
    assert!(r[1].error.contains("no prefix"));
    let rewrapped = r[0].ciphertext.clone();
    // Encrypting with an explicit older version.
    let r = h
        .encrypt_items("k", vec![item(b"x", b"")], 1)
        .await
        .unwrap();
    assert!(r[0].ciphertext.starts_with("vault:v1:"));
    // min_decryption_version makes v1 unreadable.
    let info = h
        .configure(pb::ConfigureKeyRequest {
            name: "k".into(),
            min_decryption_version: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(info.min_decryption_version, 2);
    assert_eq!(
        h.decrypt("k", &v1, b"").await.unwrap_err(),
        "ciphertext or signature version is disallowed by policy (too old)"
    );
    assert_eq!(h.decrypt("k", &rewrapped, b"").await.unwrap(), b"old data");
    assert_eq!(h.decrypt("k", &v2, b"").await.unwrap(), b"new data");
    // min_encryption_version refuses older versions for encryption.
    h.rotate("k").await;
    h.configure(pb::ConfigureKeyRequest {
        name: "k".into(),
        min_encryption_version: Some(3),
        ..Default::default()
    })
    .await
    .unwrap();
    let r = h
        .encrypt_items("k", vec![item(b"x", b"")], 2)
        .await
        .unwrap();
    assert!(
        r[0].error.contains("minimum encryption key version"),
        "{}",
        r[0].error
    );
    // Bad configurations.
    for bad in [
        pb::ConfigureKeyRequest {
            min_decryption_version: Some(9),
            ..Default::default()
        },
        pb::ConfigureKeyRequest {
            min_encryption_version: Some(1),
            ..Default::default()
        },
        pb::ConfigureKeyRequest {
            auto_rotate_period: Some(30),
            ..Default::default()
        },
    ] {
        let e = h
            .configure(pb::ConfigureKeyRequest {
                name: "k".into(),
                ..bad
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
    }
    // Trim deletes versions below the floor for good.
    let trimmed = h
        .svc
        .trim_key(Request::new(pb::TrimKeyRequest {
            mount: M.into(),
            name: "k".into(),
            min_available_version: 2,
        }))
        .await
        .unwrap()
        .into_inner()
        .key
        .unwrap();
    assert_eq!(trimmed.min_available_version, 2);
    assert_eq!(
        trimmed
            .versions
            .iter()
            .map(|v| v.version)
            .collect::<Vec<_>>(),
        vec![2, 3]
    );
    assert!(h
        .svc
        .trim_key(Request::new(pb::TrimKeyRequest {
            mount: M.into(),
            name: "k".into(),
            min_available_version: 3,
        }))
        .await
        .is_err());
}

#[tokio::test]
async fn derived_and_convergent_keys() {
    let h = harness().await;
    h.create_with(pb::CreateKeyRequest {
        name: "d".into(),
        derived: true,
        ..Default::default()
    })
    .await;
    let a = h.encrypt("d", b"same", b"ctx-a").await;
    assert_eq!(h.decrypt("d", &a, b"ctx-a").await.unwrap(), b"same");
    assert_eq!(
        h.decrypt("d", &a, b"ctx-b").await.unwrap_err(),
        "cipher: message authentication failed"
    );
    assert!(h
        .decrypt("d", &a, b"")
        .await
        .unwrap_err()
        .contains("missing 'context'"));
    let r = h
        .encrypt_items("d", vec![item(b"x", b"")], 0)
        .await
        .unwrap();
    assert!(r[0].error.contains("missing 'context'"));
    // Not convergent: equal input, different ciphertexts.
    assert_ne!(a, h.encrypt("d", b"same", b"ctx-a").await);

    let info = h
        .create_with(pb::CreateKeyRequest {
            name: "c".into(),
            r#type: "chacha20-poly1305".into(),
            derived: true,
            convergent_encryption: true,
            ..Default::default()
        })
        .await;
    assert!(info.derived && info.convergent_encryption);
    let c1 = h.encrypt("c", b"same", b"ctx").await;
    let c2 = h.encrypt("c", b"same", b"ctx").await;
    assert_eq!(c1, c2, "convergent: equal plaintext and context");
    assert_ne!(c1, h.encrypt("c", b"same", b"other").await);
    assert_ne!(c1, h.encrypt("c", b"different", b"ctx").await);
    assert_eq!(h.decrypt("c", &c1, b"ctx").await.unwrap(), b"same");
    // Associated data changes the nonce too (no nonce reuse across it).
    let with_ad = |ad: &[u8]| pb::EncryptItem {
        plaintext: b"same".to_vec(),
        context: b"ctx".to_vec(),
        associated_data: ad.to_vec(),
        ..Default::default()
    };
    let r = h
        .encrypt_items("c", vec![with_ad(b"1"), with_ad(b"2"), with_ad(b"1")], 0)
        .await
        .unwrap();
    assert_ne!(body(&r[0].ciphertext)[..12], body(&r[1].ciphertext)[..12]);
    assert_eq!(r[0].ciphertext, r[2].ciphertext);
    // Convergent after rotation: equal again within a version.
    h.rotate("c").await;
    let c3 = h.encrypt("c", b"same", b"ctx").await;
    assert!(c3.starts_with("vault:v2:"));
    assert_eq!(c3, h.encrypt("c", b"same", b"ctx").await);
    // A caller-chosen nonce is refused.
    let r = h
        .encrypt_items(
            "c",
            vec![pb::EncryptItem {
                plaintext: b"x".to_vec(),
                context: b"ctx".to_vec(),
                nonce: vec![0; 12],
                ..Default::default()
            }],
            0,
        )
        .await
        .unwrap();
    assert_eq!(r[0].error, "provided nonce not allowed for this key");
    // Creation rules.
    for bad in [
        pb::CreateKeyRequest {
            name: "x".into(),
            convergent_encryption: true,
            ..Default::default()
        },
        pb::CreateKeyRequest {
            name: "x".into(),
            r#type: "ecdsa-p256".into(),
            derived: true,
            ..Default::default()
        },
        pb::CreateKeyRequest {
            name: "x".into(),
            r#type: "des".into(),
            ..Default::default()
        },
        pb::CreateKeyRequest {
            name: "bad/name".into(),
            ..Default::default()
        },
    ] {
        let e = h
            .svc
            .create_key(Request::new(pb::CreateKeyRequest {
                mount: M.into(),
                ..bad
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
    }
}

#[tokio::test]
async fn signatures_for_every_signing_type() {
    let h = harness().await;
    // (key type, [(hash_algorithm, signature_algorithm, marshaling_algorithm)])
    type Variants<'a> = &'a [(&'a str, &'a str, &'a str)];
    let cases: &[(&str, Variants)] = &[
        ("ed25519", &[("", "", ""), ("", "", "jws")]),
        (
            "ecdsa-p256",
            &[
                ("", "", ""),
                ("sha2-384", "", "jws"),
                ("sha3-256", "", "asn1"),
                ("sha1", "", ""),
            ],
        ),
        ("ecdsa-p384", &[("sha2-384", "", ""), ("", "", "jws")]),
        (
            "rsa-2048",
            &[
                ("", "", ""),
                ("sha2-512", "pss", ""),
                ("sha2-256", "pkcs1v15", ""),
                ("sha3-384", "pkcs1v15", ""),
            ],
        ),
    ];
    for (kt, variants) in cases {
        let info = h.create(kt, kt).await;
        assert!(info.supports_signing && info.asymmetric);
        assert!(!info.versions[0].public_key.is_empty());
        for (hash, sig, marshaling) in *variants {
            let o = sig_opts(hash, sig, marshaling);
            let items = vec![
                pb::SignItem {
                    input: b"message one".to_vec(),
                    ..Default::default()
                },
                pb::SignItem {
                    input: b"message two".to_vec(),
                    ..Default::default()
                },
            ];
            let signed = h.sign(kt, o.clone(), items).await.unwrap();
            assert!(
                signed.iter().all(|s| s.error.is_empty()),
                "{kt} {hash}: {signed:?}"
            );
            assert!(signed[0].signature.starts_with("vault:v1:"));
            let check = |input: &[u8], sig: &str| pb::VerifyItem {
                input: input.to_vec(),
                signature: sig.into(),
                ..Default::default()
            };
            let v = h
                .verify(
                    kt,
                    o.clone(),
                    vec![
                        check(b"message one", &signed[0].signature),
                        check(b"message two", &signed[1].signature),
                        check(b"message two", &signed[0].signature),
                    ],
                )
                .await
                .unwrap();
            assert!(
                v[0].valid && v[1].valid,
                "{kt} {hash} {sig} {marshaling}: {v:?}"
            );
            assert!(!v[2].valid && v[2].error.is_empty(), "{kt}: {v:?}");
        }
    }
    // Prehashed ECDSA and RSA inputs verify against the unhashed message.
    let digest = crate::crypto::HashAlg::Sha2_256.digest(b"big file");
    for kt in ["ecdsa-p256", "rsa-2048"] {
        let mut pre = sig_opts("sha2-256", "", "");
        pre.prehashed = true;
        let s = h
            .sign(
                kt,
                pre.clone(),
                vec![pb::SignItem {
                    input: digest.clone(),
                    ..Default::default()
                }],
            )
            .await
            .unwrap();
        let v = h
            .verify(
                kt,
                sig_opts("sha2-256", "", ""),
                vec![pb::VerifyItem {
                    input: b"big file".to_vec(),
                    signature: s[0].signature.clone(),
                    ..Default::default()
                }],
            )
            .await
            .unwrap();
        assert!(v[0].valid, "{kt} prehashed");
    }
    // RSA PKCS#1 v1.5 without DigestInfo (hash none, prehashed).
    let mut none = sig_opts("none", "pkcs1v15", "");
    none.prehashed = true;
    let s = h
        .sign(
            "rsa-2048",
            none.clone(),
            vec![pb::SignItem {
                input: digest.clone(),
                ..Default::default()
            }],
        )
        .await
        .unwrap();
    assert!(s[0].error.is_empty(), "{:?}", s[0].error);
    let v = h
        .verify(
            "rsa-2048",
            none,
            vec![pb::VerifyItem {
                input: digest.clone(),
                signature: s[0].signature.clone(),
                ..Default::default()
            }],
        )
        .await
        .unwrap();
    assert!(v[0].valid);
    // Wrong key types and options are refused.
    h.create("aes", "").await;
    let e = h
        .sign("aes", sig_opts("", "", ""), vec![])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("does not support signing"),
        "{}",
        e.message()
    );
    let e = h
        .sign("ed25519", sig_opts("md5", "", ""), vec![])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let r = h
        .sign(
            "ecdsa-p256",
            sig_opts("none", "", ""),
            vec![pb::SignItem {
                input: b"x".to_vec(),
                ..Default::default()
            }],
        )
        .await
        .unwrap();
    assert!(r[0].error.contains("none"), "{}", r[0].error);
}

#[tokio::test]
async fn derived_ed25519_signs_per_context() {
    let h = harness().await;
    h.create_with(pb::CreateKeyRequest {
        name: "e".into(),
        r#type: "ed25519".into(),
        derived: true,
        ..Default::default()
    })
    .await;
    let item = |ctx: &[u8]| pb::SignItem {
        input: b"hello".to_vec(),
        context: ctx.to_vec(),
    };
    let s = h
        .sign(
            "e",
            sig_opts("", "", ""),
            vec![item(b"a"), item(b"b"), item(b"")],
        )
        .await
        .unwrap();
    assert!(!s[0].public_key.is_empty());
    assert_ne!(s[0].public_key, s[1].public_key);
    assert!(s[2].error.contains("missing 'context'"));
    let v = h
        .verify(
            "e",
            sig_opts("", "", ""),
            vec![
                pb::VerifyItem {
                    input: b"hello".to_vec(),
                    context: b"a".to_vec(),
                    signature: s[0].signature.clone(),
                    ..Default::default()
                },
                pb::VerifyItem {
                    input: b"hello".to_vec(),
                    context: b"b".to_vec(),
                    signature: s[0].signature.clone(),
                    ..Default::default()
                },
            ],
        )
        .await
        .unwrap();
    assert!(v[0].valid && !v[1].valid);
}

#[tokio::test]
async fn hmacs_for_every_key_type_and_algorithm() {
    let h = harness().await;
    h.create_with(pb::CreateKeyRequest {
        name: "h".into(),
        r#type: "hmac".into(),
        key_size: 64,
        ..Default::default()
    })
    .await;
    h.create("aes", "").await;
    for name in ["h", "aes"] {
        for alg in [
            "", "sha2-224", "sha2-256", "sha2-384", "sha2-512", "sha3-224", "sha3-256", "sha3-384",
            "sha3-512",
        ] {
            let r = h
                .hmac(name, alg, vec![b"data".to_vec(), b"".to_vec()])
                .await;
            assert!(r[0].hmac.starts_with("vault:v1:"), "{name} {alg}");
            let ok = |input: &[u8], mac: &str| pb::VerifyItem {
                input: input.to_vec(),
                hmac: mac.into(),
                ..Default::default()
            };
            let v = h
                .verify(
                    name,
                    sig_opts(alg, "", ""),
                    vec![
                        ok(b"data", &r[0].hmac),
                        ok(b"", &r[1].hmac),
                        ok(b"datA", &r[0].hmac),
                    ],
                )
                .await
                .unwrap();
            assert!(
                v[0].valid && v[1].valid && !v[2].valid,
                "{name} {alg}: {v:?}"
            );
        }
    }
    // The hmac key is the key of an hmac key (exported, it verifies).
    let mut cfg = pb::ConfigureKeyRequest {
        name: "h".into(),
        exportable: Some(true),
        ..Default::default()
    };
    h.configure(cfg.clone()).await.unwrap();
    let exported = h.export("h", "hmac-key", "1").await.unwrap();
    let key = STANDARD.decode(&exported.keys[0].key).unwrap();
    assert_eq!(key.len(), 64);
    let mac = crate::crypto::HashAlg::Sha2_256
        .hmac(&key, b"data")
        .unwrap();
    let r = h.hmac("h", "", vec![b"data".to_vec()]).await;
    assert_eq!(body(&r[0].hmac), mac);
    // Old HMACs stop verifying below min_decryption_version.
    h.rotate("h").await;
    cfg.exportable = None;
    cfg.min_decryption_version = Some(2);
    h.configure(cfg).await.unwrap();
    let v = h
        .verify(
            "h",
            sig_opts("", "", ""),
            vec![pb::VerifyItem {
                input: b"data".to_vec(),
                hmac: r[0].hmac.clone(),
                ..Default::default()
            }],
        )
        .await
        .unwrap();
    assert!(v[0].error.contains("too old"), "{v:?}");
    // hmac keys cannot encrypt.
    let e = h
        .encrypt_items("h", vec![item(b"x", b"")], 0)
        .await
        .unwrap_err();
    assert!(e.message().contains("does not support encryption"));
}

#[tokio::test]
async fn data_keys_hash_and_random() {
    let h = harness().await;
    h.create("k", "").await;
    for (bits, len) in [(0, 32), (128, 16), (256, 32), (512, 64)] {
        let r = h
            .svc
            .generate_data_key(Request::new(pb::DataKeyRequest {
                mount: M.into(),
                name: "k".into(),
                bits,
                with_plaintext: true,
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.plaintext.len(), len);
        assert_eq!(
            h.decrypt("k", &r.ciphertext, b"").await.unwrap(),
            r.plaintext
        );
    }
    let wrapped = h
        .svc
        .generate_data_key(Request::new(pb::DataKeyRequest {
            mount: M.into(),
            name: "k".into(),
            with_plaintext: false,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(wrapped.plaintext.is_empty());
    assert_eq!(
        h.decrypt("k", &wrapped.ciphertext, b"")
            .await
            .unwrap()
            .len(),
        32
    );
    let e = h
        .svc
        .generate_data_key(Request::new(pb::DataKeyRequest {
            mount: M.into(),
            name: "k".into(),
            bits: 64,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    let sum = h
        .svc
        .hash(Request::new(pb::HashRequest {
            algorithm: "sha3-256".into(),
            input: b"abc".to_vec(),
        }))
        .await
        .unwrap()
        .into_inner()
        .sum;
    assert_eq!(sum, crate::crypto::HashAlg::Sha3_256.digest(b"abc"));
    assert!(h
        .svc
        .hash(Request::new(pb::HashRequest {
            algorithm: "md5".into(),
            input: vec![],
        }))
        .await
        .is_err());
    for (n, len) in [(0, 32), (1, 1), (200, 200)] {
        let r = h
            .svc
            .random(Request::new(pb::RandomRequest { bytes: n }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.random.len(), len);
    }
    assert!(h
        .svc
        .random(Request::new(pb::RandomRequest { bytes: 1 << 20 }))
        .await
        .is_err());
}

#[tokio::test]
async fn export_rules_and_formats() {
    let h = harness().await;
    h.create("locked", "").await;
    let e = h.export("locked", "encryption-key", "").await.unwrap_err();
    assert_eq!(e.message(), "private key material is not exportable");
    for (kt, kind, looks_like) in [
        ("aes256-gcm96", "encryption-key", "b64:32"),
        ("chacha20-poly1305", "encryption-key", "b64:32"),
        ("aes128-gcm96", "encryption-key", "b64:16"),
        ("ed25519", "signing-key", "b64:64"),
        ("ed25519", "public-key", "b64:32"),
        (
            "ecdsa-p256",
            "signing-key",
            "-----BEGIN EC PRIVATE KEY-----",
        ),
        ("ecdsa-p384", "public-key", "-----BEGIN PUBLIC KEY-----"),
        (
            "rsa-2048",
            "encryption-key",
            "-----BEGIN RSA PRIVATE KEY-----",
        ),
        ("rsa-2048", "signing-key", "-----BEGIN RSA PRIVATE KEY-----"),
        ("rsa-2048", "public-key", "-----BEGIN PUBLIC KEY-----"),
        ("hmac", "hmac-key", "b64:32"),
        ("aes256-gcm96", "hmac-key", "b64:32"),
    ] {
        let name = format!("x-{kt}");
        if h.read(&name).await.found {
        } else {
            h.create_with(pb::CreateKeyRequest {
                name: name.clone(),
                r#type: kt.into(),
                exportable: true,
                ..Default::default()
            })
            .await;
        }
        let r = h.export(&name, kind, "latest").await.unwrap();
        assert_eq!(r.r#type, kt);
        assert_eq!(r.keys.len(), 1);
        let text = &r.keys[0].key;
        match looks_like.strip_prefix("b64:") {
            Some(len) => assert_eq!(
                STANDARD.decode(text).unwrap().len(),
                len.parse::<usize>().unwrap(),
                "{kt} {kind}"
            ),
            None => assert!(text.starts_with(looks_like), "{kt} {kind}: {text}"),
        }
    }
    // The ed25519 export matches the public key a read shows.
    let info = h.read("x-ed25519").await.key.unwrap();
    let private = h.export("x-ed25519", "signing-key", "1").await.unwrap();
    let pair = STANDARD.decode(&private.keys[0].key).unwrap();
    assert_eq!(STANDARD.encode(&pair[32..]), info.versions[0].public_key);
    // Public keys need no exportable flag; wrong kinds are refused.
    h.create("pub", "ecdsa-p256").await;
    assert!(h.export("pub", "public-key", "").await.is_ok());
    assert!(h.export("pub", "signing-key", "").await.is_err());
    assert!(h.export("x-hmac", "signing-key", "").await.is_err());
    assert!(h.export("x-aes256-gcm96", "public-key", "").await.is_err());
    assert!(h.export("x-aes256-gcm96", "nonsense", "").await.is_err());
    assert!(h
        .export("x-aes256-gcm96", "encryption-key", "7")
        .await
        .is_err());
    // Every usable version, or one.
    h.rotate("x-aes256-gcm96").await;
    let all = h
        .export("x-aes256-gcm96", "encryption-key", "")
        .await
        .unwrap();
    assert_eq!(
        all.keys.iter().map(|k| k.version).collect::<Vec<_>>(),
        vec![1, 2]
    );
}

#[tokio::test]
async fn backup_and_restore() {
    let h = harness().await;
    h.create("plain", "").await;
    let e = h
        .svc
        .backup_key(Request::new(pb::KeyRequest {
            mount: M.into(),
            name: "plain".into(),
        }))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    for kt in ["aes256-gcm96", "ecdsa-p256", "ed25519"] {
        let name = format!("b-{kt}");
        h.create_with(pb::CreateKeyRequest {
            name: name.clone(),
            r#type: kt.into(),
            exportable: true,
            allow_plaintext_backup: true,
            ..Default::default()
        })
        .await;
        h.rotate(&name).await;
        let backup = h
            .svc
            .backup_key(Request::new(pb::KeyRequest {
                mount: M.into(),
                name: name.clone(),
            }))
            .await
            .unwrap()
            .into_inner()
            .backup;
        let restore = |to: &str, force| pb::RestoreKeyRequest {
            mount: M.into(),
            name: to.into(),
            backup: backup.clone(),
            force,
        };
        // Existing name: refused unless forced.
        assert!(h
            .svc
            .restore_key(Request::new(restore("", false)))
            .await
            .is_err());
        h.svc
            .restore_key(Request::new(restore("", true)))
            .await
            .unwrap();
        let copy = format!("copy-{kt}");
        let restored = h
            .svc
            .restore_key(Request::new(restore(&copy, false)))
            .await
            .unwrap()
            .into_inner()
            .key
            .unwrap();
        assert_eq!(restored.latest_version, 2);
        assert_eq!(restored.name, copy);
        assert!(restored.restore_info.is_some() && restored.backup_info.is_some());
        if kt == "aes256-gcm96" {
            let ct = h.encrypt(&name, b"across keys", b"").await;
            assert_eq!(h.decrypt(&copy, &ct, b"").await.unwrap(), b"across keys");
        } else {
            let s = h
                .sign(
                    &name,
                    sig_opts("", "", ""),
                    vec![pb::SignItem {
                        input: b"m".to_vec(),
                        ..Default::default()
                    }],
                )
                .await
                .unwrap();
            let v = h
                .verify(
                    &copy,
                    sig_opts("", "", ""),
                    vec![pb::VerifyItem {
                        input: b"m".to_vec(),
                        signature: s[0].signature.clone(),
                        ..Default::default()
                    }],
                )
                .await
                .unwrap();
            assert!(v[0].valid, "{kt}");
        }
    }
    // Garbage and tampered backups are refused with a 400.
    for bad in ["not base64!", "e30=", "eyJuYW1lIjoxfQ=="] {
        let e = h
            .svc
            .restore_key(Request::new(pb::RestoreKeyRequest {
                mount: M.into(),
                name: "z".into(),
                backup: bad.into(),
                force: false,
            }))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{bad}: {}", e.message());
    }
}

#[tokio::test]
async fn key_lifecycle_list_delete_and_upsert() {
    let h = harness().await;
    let first = h.create("k", "").await;
    // Creating again answers the existing key.
    let again = h
        .svc
        .create_key(Request::new(pb::CreateKeyRequest {
            mount: M.into(),
            name: "k".into(),
            r#type: "ed25519".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.created);
    assert_eq!(again.key.unwrap().r#type, first.r#type);
    assert!(!again.warnings.is_empty());
    assert!(!h.read("nope").await.found);
    let list = h
        .svc
        .list_keys(Request::new(pb::MountRequest { mount: M.into() }))
        .await
        .unwrap()
        .into_inner()
        .keys;
    assert_eq!(list, vec!["k"]);
    // Deletion needs deletion_allowed.
    let del = || {
        h.svc.delete_key(Request::new(pb::KeyRequest {
            mount: M.into(),
            name: "k".into(),
        }))
    };
    assert_eq!(
        del().await.unwrap_err().message(),
        "deletion is not allowed for this key"
    );
    h.configure(pb::ConfigureKeyRequest {
        name: "k".into(),
        deletion_allowed: Some(true),
        ..Default::default()
    })
    .await
    .unwrap();
    del().await.unwrap();
    assert!(!h.read("k").await.found);
    assert!(del().await.is_err());

    // Encrypt against a missing key: NotFound unless upsert is allowed.
    let enc = |allowed: bool| {
        h.svc.encrypt(Request::new(pb::EncryptRequest {
            mount: M.into(),
            name: "up".into(),
            key_version: 0,
            items: vec![item(b"x", b"ctx")],
            upsert: Some(pb::Upsert {
                allowed,
                r#type: "aes128-gcm96".into(),
                derived: true,
                convergent_encryption: false,
            }),
        }))
    };
    assert_eq!(enc(false).await.unwrap_err().code(), Code::NotFound);
    let r = enc(true).await.unwrap().into_inner();
    assert!(r.upserted);
    let info = h.read("up").await.key.unwrap();
    assert_eq!(info.r#type, "aes128-gcm96");
    assert!(info.derived);
    assert_eq!(
        h.decrypt("up", &r.results[0].ciphertext, b"ctx")
            .await
            .unwrap(),
        b"x"
    );
    assert!(!enc(true).await.unwrap().into_inner().upserted);

    // Dropping the mount removes every key.
    h.svc
        .drop_mount(Request::new(pb::MountRequest { mount: M.into() }))
        .await
        .unwrap();
    assert!(!h.read("up").await.found);
}

#[tokio::test]
async fn automatic_rotation_is_due_based() {
    let h = harness().await;
    h.create_with(pb::CreateKeyRequest {
        name: "auto".into(),
        auto_rotate_period: 3600,
        ..Default::default()
    })
    .await;
    h.create("manual", "").await;
    let now = keys::now();
    assert_eq!(h.store.rotate_due(now).await.unwrap(), 0);
    assert_eq!(h.store.rotate_due(now + 3600).await.unwrap(), 1);
    assert_eq!(h.read("auto").await.key.unwrap().latest_version, 2);
    assert_eq!(h.read("manual").await.key.unwrap().latest_version, 1);
    // The new version resets the clock.
    assert_eq!(h.store.rotate_due(now + 3600).await.unwrap(), 0);
}

#[tokio::test]
async fn key_info_shape_and_nothing_in_the_clear_at_rest() {
    let h = harness().await;
    h.create_with(pb::CreateKeyRequest {
        name: "k".into(),
        exportable: true,
        ..Default::default()
    })
    .await;
    let info = h.create("ec", "ecdsa-p256").await;
    assert_eq!(info.versions[0].name, "P-256");
    assert!(info.versions[0]
        .public_key
        .starts_with("-----BEGIN PUBLIC KEY-----"));
    let info = h.read("k").await.key.unwrap();
    assert_eq!(
        (
            info.latest_version,
            info.min_decryption_version,
            info.min_encryption_version
        ),
        (1, 1, 0)
    );
    assert!(info.supports_derivation && !info.supports_signing && !info.asymmetric);
    let exported = h.export("k", "encryption-key", "1").await.unwrap();
    let key = STANDARD.decode(&exported.keys[0].key).unwrap();
    // Neither the raw key nor its base64 is in storage.
    let raw =
        h.db.namespace("transit")
            .await
            .unwrap()
            .get(&format!("m/{M}/key/k"))
            .await
            .unwrap()
            .unwrap();
    assert!(!raw.windows(key.len()).any(|w| w == key.as_slice()));
    let b64 = exported.keys[0].key.as_bytes();
    assert!(!raw.windows(b64.len()).any(|w| w == b64));
    assert!(
        !raw.windows(6).any(|w| w == b"\"name\""),
        "record is sealed"
    );
}

#[tokio::test]
async fn sealed_service_answers_unavailable() {
    let db = Database::connect(&StorageConfig::SqliteMemory)
        .await
        .unwrap();
    let store = Arc::new(TransitStore::new(Barrier::new(
        db.namespace("transit").await.unwrap(),
        Keyring::new(),
    )));
    let svc = TransitService::new(store);
    let e = svc
        .hash(Request::new(pb::HashRequest::default()))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (Code::Unavailable, "Vault is sealed")
    );
}

#[tokio::test]
async fn larger_rsa_keys_round_trip() {
    // rsa-3072 and rsa-4096 (slow to generate: one each).
    let h = harness().await;
    for kt in [KeyType::Rsa3072, KeyType::Rsa4096] {
        let name = kt.as_str();
        h.create(name, name).await;
        let ct = h.encrypt(name, b"big key", b"").await;
        assert_eq!(h.decrypt(name, &ct, b"").await.unwrap(), b"big key");
        let s = h
            .sign(
                name,
                sig_opts("", "", ""),
                vec![pb::SignItem {
                    input: b"m".to_vec(),
                    ..Default::default()
                }],
            )
            .await
            .unwrap();
        let v = h
            .verify(
                name,
                sig_opts("", "", ""),
                vec![pb::VerifyItem {
                    input: b"m".to_vec(),
                    signature: s[0].signature.clone(),
                    ..Default::default()
                }],
            )
            .await
            .unwrap();
        assert!(v[0].valid, "{name}");
    }
}
