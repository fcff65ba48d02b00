//! Fuzz targets (issue 13) for CSR and PEM parsing in the pki service,
//! through the crate's public API (`PkiStore` on in-memory storage, with a
//! root CA and a role).
//!
//! * `csr_*`: random text, PEM armour around random bytes, and valid CSRs
//!   (made with rcgen) truncated or with their DER mutated, through
//!   `sign`, `sign-verbatim` and `root/sign-intermediate`: never a panic,
//!   refusals are `Invalid` (a 400), and valid CSRs are signed.
//! * `pem_*`: `pem_blocks`, `parse_private_key`, `config/ca` bundles,
//!   `intermediate/set-signed` and revocation by certificate on hostile PEM.
//!
//! Cases per target: `BULWARK_FUZZ_CASES` (small by default; see FUZZING.md).

use std::sync::{Arc, OnceLock};

use bulwark_pki::crypto;
use bulwark_pki::{PkiError, PkiStore};
use bulwark_proto::pki::v1 as pb;
use bulwark_shared::barrier::Barrier;
use bulwark_shared::keyring::Keyring;
use bulwark_shared::storage::{Database, StorageConfig};
use proptest::prelude::*;
use proptest::test_runner::Config;
use zeroize::Zeroizing;

/// `BULWARK_FUZZ_CASES` cases, else `default`; no failure files (failures
/// become explicit regression tests).
fn cfg(default: u32) -> Config {
    let cases = std::env::var("BULWARK_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

const M: &str = "0b6c1d9e-0000-4000-8000-0000000000ff";

struct Harness {
    rt: tokio::runtime::Runtime,
    store: Arc<PkiStore>,
    _db: Database,
    /// Valid CSRs (PEM) of several key types, for mutation.
    csrs: Vec<String>,
    /// A valid CA certificate and its PKCS#8 key (PEM), for bundles.
    ca_cert: String,
    ca_key: String,
}

fn csr(alg: &'static rcgen::SignatureAlgorithm, names: &[&str]) -> String {
    let key = rcgen::KeyPair::generate_for(alg).expect("key");
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("params");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, names[0]);
    params
        .serialize_request(&key)
        .expect("csr")
        .pem()
        .expect("pem")
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let (db, store) = rt.block_on(async {
            let db = Database::connect(&StorageConfig::SqliteMemory)
                .await
                .expect("db");
            let keyring = Keyring::new();
            keyring.install(1, [(1, Zeroizing::new([7u8; 32]))]);
            let raw = db.namespace("pki").await.expect("namespace");
            let store = Arc::new(PkiStore::new(Barrier::new(raw, keyring)));
            store
                .generate_root(&pb::GenerateRootRequest {
                    mount: M.into(),
                    common_name: "Fuzz Root".into(),
                    ttl: 365 * 86400,
                    mount_ttl: Some(pb::MountTtl {
                        default_ttl: 0,
                        max_ttl: 2 * 365 * 86400,
                    }),
                    key_type: "ec".into(),
                    key_bits: 256,
                    max_path_length: -1,
                    ..Default::default()
                })
                .await
                .expect("root");
            store
                .write_role(
                    M,
                    "web",
                    pb::Role {
                        allowed_domains: vec!["fuzz.internal".into()],
                        allow_subdomains: true,
                        allow_ip_sans: true,
                        server_flag: true,
                        client_flag: true,
                        key_type: "any".into(),
                        ttl: 3600,
                        max_ttl: 7200,
                        ..Default::default()
                    },
                )
                .await
                .expect("role");
            (db, store)
        });
        let csrs = vec![
            csr(&rcgen::PKCS_ECDSA_P256_SHA256, &["a.fuzz.internal"]),
            csr(
                &rcgen::PKCS_ECDSA_P384_SHA384,
                &["b.fuzz.internal", "c.fuzz.internal"],
            ),
            csr(&rcgen::PKCS_ED25519, &["d.fuzz.internal"]),
        ];
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = params.self_signed(&ca_key).expect("ca").pem();
        Harness {
            rt,
            store,
            _db: db,
            csrs,
            ca_cert,
            ca_key: ca_key.serialize_pem(),
        }
    })
}

/// The DER inside the first PEM block of `pem`.
fn der_of(pem: &str) -> Vec<u8> {
    crypto::pem_blocks(pem).expect("pem")[0].1.to_vec()
}

#[derive(Debug, Clone)]
enum Edit {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, u8),
    Delete(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(i, b)| Edit::Flip(i, b)),
        any::<usize>().prop_map(Edit::Truncate),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Delete),
    ]
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        if bytes.is_empty() {
            break;
        }
        let n = bytes.len();
        match *e {
            Edit::Flip(i, b) => bytes[i % n] ^= b,
            Edit::Truncate(i) => bytes.truncate(i % n),
            Edit::Insert(i, b) => bytes.insert(i % (n + 1), b),
            Edit::Delete(i) => {
                bytes.remove(i % n);
            }
        }
    }
    bytes
}

/// CSR text: valid, damaged or made up.
fn hostile_csr() -> impl Strategy<Value = String> {
    let h = harness();
    let n = h.csrs.len();
    prop_oneof![
        any::<String>(),
        prop::collection::vec(any::<u8>(), 0..600)
            .prop_map(|b| crypto::to_pem("CERTIFICATE REQUEST", &b)),
        (0..n, prop::collection::vec(edit(), 1..4)).prop_map(|(i, edits)| {
            let der = apply(der_of(&harness().csrs[i]), &edits);
            crypto::to_pem("CERTIFICATE REQUEST", &der)
        }),
        (0..n, any::<usize>()).prop_map(|(i, cut)| {
            let pem = &harness().csrs[i];
            let cut = cut % (pem.len() + 1);
            String::from_utf8_lossy(&pem.as_bytes()[..cut]).into_owned()
        }),
        (0..n, prop::collection::vec(edit(), 1..4)).prop_map(|(i, edits)| {
            // Edits of the PEM text itself (armour, base64, line breaks).
            let text = apply(harness().csrs[i].clone().into_bytes(), &edits);
            String::from_utf8_lossy(&text).into_owned()
        }),
        (
            0..n,
            prop::sample::select(
                &[
                    "NEW CERTIFICATE REQUEST",
                    "CERTIFICATE",
                    "PRIVATE KEY",
                    "",
                    "X"
                ][..]
            )
        )
            .prop_map(|(i, label)| crypto::to_pem(label, &der_of(&harness().csrs[i]))),
    ]
}

/// A refusal of client input is `Invalid` (400), nothing else.
fn check_refusal<T: std::fmt::Debug>(r: Result<T, PkiError>) -> Result<bool, TestCaseError> {
    match r {
        Ok(_) => Ok(true),
        Err(PkiError::Invalid(m)) => {
            prop_assert!(!m.is_empty());
            Ok(false)
        }
        Err(e) => Err(TestCaseError::fail(format!("not a 400: {e:?}"))),
    }
}

proptest! {
    #![proptest_config(cfg(512))]

    #[test]
    fn csr_hostile_input_is_refused_cleanly(csr in hostile_csr()) {
        let h = harness();
        h.rt.block_on(async {
            let req = pb::SignRequest {
                mount: M.into(),
                role: "web".into(),
                csr: csr.clone(),
                ..Default::default()
            };
            check_refusal(h.store.sign(&req, false).await)?;
            check_refusal(h.store.sign(&pb::SignRequest { role: String::new(), ..req }, true).await)?;
            check_refusal(
                h.store
                    .sign_intermediate(&pb::SignIntermediateRequest {
                        mount: M.into(),
                        csr,
                        common_name: "Fuzz Intermediate".into(),
                        ttl: 3600,
                        max_path_length: -1,
                        ..Default::default()
                    })
                    .await,
            )?;
            Ok::<(), TestCaseError>(())
        })?;
    }

    #[test]
    fn csr_valid_ones_are_signed(i in 0..3usize, verbatim in any::<bool>()) {
        let h = harness();
        let req = pb::SignRequest {
            mount: M.into(),
            role: if verbatim { String::new() } else { "web".into() },
            csr: h.csrs[i].clone(),
            ..Default::default()
        };
        let leaf = h.rt.block_on(h.store.sign(&req, verbatim)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let der = der_of(&leaf.certificate);
        prop_assert!(x509_parser::parse_x509_certificate(&der).is_ok());
    }

    #[test]
    fn pem_blocks_survive_anything(text in prop_oneof![
        any::<String>(),
        "(-----BEGIN [A-Z ]{0,12}-----\n[A-Za-z0-9+/=\n]{0,80}(-----END [A-Z ]{0,12}-----\n)?){1,3}",
        "-{0,6}BEGIN.{0,20}",
    ]) {
        if let Some(blocks) = crypto::pem_blocks(&text) {
            prop_assert!(!blocks.is_empty());
        }
        prop_assert!(crypto::parse_private_key(&text).is_err() || text.contains("PRIVATE KEY"));
        for label in ["RSA PRIVATE KEY", "EC PRIVATE KEY", "PRIVATE KEY", "X"] {
            let _ = crypto::legacy_to_pkcs8(label, text.as_bytes());
        }
    }

    #[test]
    fn pem_round_trips(label in "[A-Z]{1,8}( [A-Z]{1,8}){0,2}", der in prop::collection::vec(any::<u8>(), 0..300)) {
        let pem = crypto::to_pem(&label, &der);
        let blocks = crypto::pem_blocks(&pem).ok_or_else(|| TestCaseError::fail("not parsed back"))?;
        prop_assert_eq!(blocks.len(), 1);
        prop_assert_eq!(&blocks[0].0, &label);
        prop_assert_eq!(blocks[0].1.to_vec(), der);
    }

    #[test]
    fn pem_hostile_bundles_are_refused_cleanly(
        parts in prop::collection::vec(
            prop_oneof![
                (prop::sample::select(&["CERTIFICATE", "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "X509 CRL", "JUNK"][..]),
                 prop::collection::vec(any::<u8>(), 0..200))
                    .prop_map(|(l, b)| crypto::to_pem(l, &b)),
                (any::<bool>(), prop::collection::vec(edit(), 0..3)).prop_map(|(cert, edits)| {
                    let h = harness();
                    let (label, pem) = if cert { ("CERTIFICATE", &h.ca_cert) } else { ("PRIVATE KEY", &h.ca_key) };
                    crypto::to_pem(label, &apply(der_of(pem), &edits))
                }),
                any::<String>(),
            ],
            1..4,
        ),
    ) {
        let bundle = parts.concat();
        let h = harness();
        h.rt.block_on(async {
            // A separate mount per case: a bundle that happens to be valid
            // imports an issuer and must not change the signing mount.
            let mount = format!("{M}-b");
            check_refusal(h.store.config_ca(&mount, &bundle).await)?;
            check_refusal(h.store.set_signed(&mount, &bundle).await)?;
            match h.store.revoke(&pb::RevokeRequest {
                mount: mount.clone(),
                serial_number: String::new(),
                certificate: bundle.clone(),
            }).await {
                Ok(_) | Err(PkiError::Invalid(_)) | Err(PkiError::NotFound(_)) => {}
                Err(e) => return Err(TestCaseError::fail(format!("revoke: not a 4xx: {e:?}"))),
            }
            Ok::<(), TestCaseError>(())
        })?;
    }
}

/// The shapes above that are valid are accepted (the targets would
/// otherwise only ever see refusals).
#[test]
fn valid_bundle_imports() {
    let h = harness();
    let bundle = format!("{}{}", h.ca_cert, h.ca_key);
    let out =
        h.rt.block_on(h.store.config_ca(&format!("{M}-v"), &bundle))
            .expect("imports");
    assert_eq!(out.imported_issuers.len(), 1);
}
