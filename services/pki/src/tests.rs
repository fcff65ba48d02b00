//! End-to-end tests of the store: every certificate is parsed with
//! x509-parser and its signature checked against the CA.

use std::sync::Arc;

use bulwark_proto::pki::v1 as pb;
use bulwark_shared::barrier::Barrier;
use bulwark_shared::keyring::Keyring;
use bulwark_shared::storage::{Database, StorageConfig};
use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
use x509_parser::prelude::*;
use zeroize::Zeroizing;

use crate::crypto;
use crate::error::PkiError;
use crate::store::PkiStore;

const M: &str = "0b6c1d9e-0000-4000-8000-000000000001";

struct Harness {
    _db: Database,
    store: Arc<PkiStore>,
}

async fn harness() -> Harness {
    let db = Database::connect(&StorageConfig::SqliteMemory)
        .await
        .expect("in-memory database");
    let keyring = Keyring::new();
    keyring.install(1, [(1, Zeroizing::new([9u8; 32]))]);
    let raw = db.namespace("pki").await.expect("pki namespace");
    Harness {
        _db: db,
        store: Arc::new(PkiStore::new(Barrier::new(raw, keyring))),
    }
}

fn der_of(pem: &str) -> Vec<u8> {
    let blocks = crypto::pem_blocks(pem).expect("pem");
    blocks[0].1.to_vec()
}

fn root_req(key_type: &str, key_bits: i32) -> pb::GenerateRootRequest {
    pb::GenerateRootRequest {
        mount: M.into(),
        common_name: "Bulwark Root".into(),
        ttl: 10 * 365 * 86400,
        mount_ttl: Some(pb::MountTtl {
            default_ttl: 0,
            max_ttl: 20 * 365 * 86400,
        }),
        key_type: key_type.into(),
        key_bits,
        organization: vec!["Bulwark".into()],
        ou: vec!["Security".into()],
        max_path_length: -1,
        issuer_name: "root-1".into(),
        ..Default::default()
    }
}

fn role(domains: &[&str]) -> pb::Role {
    pb::Role {
        allowed_domains: domains.iter().map(|d| d.to_string()).collect(),
        allow_localhost: true,
        enforce_hostnames: true,
        allow_ip_sans: true,
        server_flag: true,
        client_flag: true,
        key_type: "ec".into(),
        key_bits: 256,
        ttl: 3600,
        max_ttl: 7200,
        ..Default::default()
    }
}

fn issue_req(role: &str, cn: &str) -> pb::IssueRequest {
    pb::IssueRequest {
        mount: M.into(),
        role: role.into(),
        common_name: cn.into(),
        ..Default::default()
    }
}

fn now() -> i64 {
    ::time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A root (ec) and a role `web` for mycompany.internal with subdomains.
async fn with_root_and_role(h: &Harness) -> pb::GenerateRootResponse {
    let root = h
        .store
        .generate_root(&root_req("ec", 256))
        .await
        .expect("root");
    let mut r = role(&["mycompany.internal"]);
    r.allow_subdomains = true;
    h.store.write_role(M, "web", r).await.expect("role");
    root
}

fn verify_chain(leaf_pem: &str, ca_pem: &str) {
    let leaf_der = der_of(leaf_pem);
    let ca_der = der_of(ca_pem);
    let (_, leaf) = parse_x509_certificate(&leaf_der).expect("leaf parses");
    let (_, ca) = parse_x509_certificate(&ca_der).expect("ca parses");
    leaf.verify_signature(Some(ca.public_key()))
        .expect("signed by the CA");
    assert_eq!(leaf.issuer(), ca.subject());
}

#[tokio::test]
async fn root_ca_is_self_signed_with_requested_fields() {
    let h = harness().await;
    let mut req = root_req("ec", 384);
    req.alt_names = vec!["ca.example.com".into()];
    req.ip_sans = vec!["10.0.0.1".into()];
    req.max_path_length = 2;
    let root = h.store.generate_root(&req).await.expect("root");
    assert!(root.private_key.is_empty() && root.private_key_type.is_empty());
    let der = der_of(&root.certificate);
    let (_, cert) = parse_x509_certificate(&der).expect("parses");
    cert.verify_signature(None).expect("self-signed");
    assert!(cert.is_ca());
    let bc = cert.basic_constraints().expect("bc").expect("present");
    assert_eq!(bc.value.path_len_constraint, Some(2));
    let cn: Vec<_> = cert.subject().iter_common_name().collect();
    assert_eq!(cn[0].as_str().ok(), Some("Bulwark Root"));
    assert_eq!(
        cert.subject()
            .iter_organization()
            .next()
            .and_then(|o| o.as_str().ok()),
        Some("Bulwark")
    );
    let ku = cert.key_usage().expect("ku").expect("present");
    assert!(ku.value.key_cert_sign() && ku.value.crl_sign());
    let validity = cert.validity().not_after.timestamp() - now();
    assert!((validity - req.ttl).abs() < 60, "{validity}");
    assert_eq!(root.expiration, cert.validity().not_after.timestamp());
    assert_eq!(root.serial_number, cert.raw_serial_as_string());
    assert!(root.serial_number.contains(':'));

    let listed = h.store.list_issuers(M).await.expect("list");
    assert_eq!(listed, vec![root.issuer_id.clone()]);
    for reference in ["default", "root-1", root.issuer_id.as_str()] {
        let found = h.store.find_issuer(M, reference).await.expect("find");
        assert_eq!(found.map(|i| i.id), Some(root.issuer_id.clone()));
    }
    // The issuer's certificate is listed like Vault's.
    let certs = h.store.list_certs(M).await.expect("certs");
    assert_eq!(certs, vec![root.serial_number.clone()]);
}

#[tokio::test]
async fn exported_root_returns_its_key_once() {
    let h = harness().await;
    let mut req = root_req("ed25519", 0);
    req.exported = true;
    let root = h.store.generate_root(&req).await.expect("root");
    assert_eq!(root.private_key_type, "ed25519");
    assert!(root.private_key.contains("PRIVATE KEY"));
    let (key, _) = crypto::parse_private_key(&root.private_key).expect("parses");
    let der = der_of(&root.certificate);
    let (_, cert) = parse_x509_certificate(&der).expect("parses");
    assert_eq!(
        cert.public_key().subject_public_key.data.as_ref(),
        key.public_key_raw()
    );
    // Reading the issuer never shows the key.
    let issuer = h.store.find_issuer(M, "default").await.expect("read");
    let shown = format!("{issuer:?}");
    assert!(!shown.contains("PRIVATE KEY"));
}

#[tokio::test]
async fn rsa_root() {
    let h = harness().await;
    let root = h
        .store
        .generate_root(&root_req("rsa", 2048))
        .await
        .expect("root");
    let der = der_of(&root.certificate);
    let (_, cert) = parse_x509_certificate(&der).expect("parses");
    cert.verify_signature(None).expect("self-signed");
    h.store
        .write_role(
            M,
            "r",
            pb::Role {
                allow_any_name: true,
                server_flag: true,
                key_type: "ec".into(),
                ..Default::default()
            },
        )
        .await
        .expect("role");
    let leaf = h
        .store
        .issue(&issue_req("r", "x.example"))
        .await
        .expect("issue");
    verify_chain(&leaf.certificate, &root.certificate);
}

#[tokio::test]
async fn bad_key_types_and_bits_are_refused() {
    let h = harness().await;
    for (t, b) in [("rsa", 1024), ("ec", 521), ("dsa", 0)] {
        let e = h.store.generate_root(&root_req(t, b)).await.err();
        assert!(matches!(e, Some(PkiError::Invalid(_))), "{t} {b}");
    }
    let mut r = role(&["a.b"]);
    r.key_type = "ec".into();
    r.key_bits = 1;
    assert!(matches!(
        h.store.write_role(M, "x", r).await,
        Err(PkiError::Invalid(_))
    ));
    let mut req = root_req("ec", 256);
    req.common_name = String::new();
    assert!(h.store.generate_root(&req).await.is_err());
}

#[tokio::test]
async fn root_ttl_is_capped_by_the_mount_max() {
    let h = harness().await;
    let mut req = root_req("ec", 256);
    req.ttl = 1000 * 86400;
    req.mount_ttl = Some(pb::MountTtl {
        default_ttl: 0,
        max_ttl: 86400,
    });
    let root = h.store.generate_root(&req).await.expect("root");
    assert!((root.expiration - now() - 86400).abs() < 60);
    assert!(!root.warnings.is_empty());
}

#[tokio::test]
async fn issue_checks_chain_names_ttl_and_usages() {
    let h = harness().await;
    let root = with_root_and_role(&h).await;
    let mut req = issue_req("web", "app.mycompany.internal");
    req.alt_names = vec!["api.mycompany.internal".into()];
    req.ip_sans = vec!["192.0.2.7".into()];
    req.ttl = 1800;
    let leaf = h.store.issue(&req).await.expect("issue");
    verify_chain(&leaf.certificate, &root.certificate);
    assert_eq!(leaf.issuing_ca, root.certificate);
    assert_eq!(leaf.ca_chain, vec![root.certificate.clone()]);
    assert_eq!(leaf.private_key_type, "ec");
    // Vault's default private_key_format: SEC1 for ec.
    assert!(leaf
        .private_key
        .starts_with("-----BEGIN EC PRIVATE KEY-----"));
    let pkcs8 = h
        .store
        .issue(&pb::IssueRequest {
            private_key_format: "pkcs8".into(),
            ..issue_req("web", "p.mycompany.internal")
        })
        .await
        .expect("pkcs8");
    let (key, _) = crypto::parse_private_key(&pkcs8.private_key).expect("pkcs8 key");
    let pkcs8_der = der_of(&pkcs8.certificate);
    let (_, pkcs8_cert) = parse_x509_certificate(&pkcs8_der).expect("parses");
    assert_eq!(
        pkcs8_cert.public_key().subject_public_key.data.as_ref(),
        key.public_key_raw()
    );
    assert!(h
        .store
        .issue(&pb::IssueRequest {
            private_key_format: "pkcs1".into(),
            ..issue_req("web", "p.mycompany.internal")
        })
        .await
        .is_err());
    let der = der_of(&leaf.certificate);
    let (_, cert) = parse_x509_certificate(&der).expect("parses");
    assert_eq!(leaf.serial_number, cert.raw_serial_as_string());
    assert!((cert.validity().not_after.timestamp() - now() - 1800).abs() < 60);
    assert_eq!(leaf.expiration, cert.validity().not_after.timestamp());
    let san = cert
        .subject_alternative_name()
        .expect("san")
        .expect("present");
    let dns: Vec<String> = san
        .value
        .general_names
        .iter()
        .filter_map(|g| match g {
            GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(
        dns,
        vec!["app.mycompany.internal", "api.mycompany.internal"]
    );
    assert!(san
        .value
        .general_names
        .iter()
        .any(|g| matches!(g, GeneralName::IPAddress(ip) if *ip == [192, 0, 2, 7])));
    assert!(!cert.is_ca());
    let ku = cert.key_usage().expect("ku").expect("present");
    assert!(ku.value.digital_signature() && ku.value.key_encipherment());
    let eku = cert.extended_key_usage().expect("eku").expect("present");
    assert!(eku.value.server_auth && eku.value.client_auth);
    // Stored by serial, listed.
    let (stored, revoked) = h
        .store
        .read_cert(M, &leaf.serial_number)
        .await
        .expect("read")
        .expect("found");
    assert_eq!(stored.certificate, leaf.certificate);
    assert!(revoked.is_none());
    assert!(h
        .store
        .list_certs(M)
        .await
        .expect("list")
        .contains(&leaf.serial_number));
}

#[tokio::test]
async fn server_only_and_client_only_roles() {
    let h = harness().await;
    with_root_and_role(&h).await;
    for (server, client) in [(true, false), (false, true)] {
        let mut r = role(&["mycompany.internal"]);
        r.allow_bare_domains = true;
        r.server_flag = server;
        r.client_flag = client;
        h.store.write_role(M, "flags", r).await.expect("role");
        let leaf = h
            .store
            .issue(&issue_req("flags", "mycompany.internal"))
            .await
            .expect("issue");
        let der = der_of(&leaf.certificate);
        let (_, cert) = parse_x509_certificate(&der).expect("parses");
        let eku = cert.extended_key_usage().expect("eku").expect("present");
        assert_eq!(
            (eku.value.server_auth, eku.value.client_auth),
            (server, client)
        );
    }
}

#[tokio::test]
async fn names_outside_the_role_are_refused() {
    let h = harness().await;
    with_root_and_role(&h).await;
    let cases = [
        issue_req("web", "evil.com"),
        issue_req("web", "mycompany.internal"), // bare not allowed
        issue_req("web", "evilmycompany.internal"),
        pb::IssueRequest {
            alt_names: vec!["evil.com".into()],
            ..issue_req("web", "a.mycompany.internal")
        },
        pb::IssueRequest {
            ip_sans: vec!["not-an-ip".into()],
            ..issue_req("web", "a.mycompany.internal")
        },
        issue_req("web", ""),
        issue_req("nosuchrole", "a.mycompany.internal"),
    ];
    for req in cases {
        let e = h.store.issue(&req).await.err();
        assert!(matches!(e, Some(PkiError::Invalid(_))), "{req:?} {e:?}");
    }
    let mut r = role(&["mycompany.internal"]);
    r.allow_subdomains = false;
    h.store
        .write_role(M, "nosub", r.clone())
        .await
        .expect("role");
    let e = h
        .store
        .issue(&issue_req("nosub", "a.mycompany.internal"))
        .await
        .err();
    assert!(matches!(e, Some(PkiError::Invalid(_))));
    r.allow_subdomains = true;
    r.allow_ip_sans = false;
    h.store.write_role(M, "noip", r).await.expect("role");
    let e = h
        .store
        .issue(&pb::IssueRequest {
            ip_sans: vec!["10.1.1.1".into()],
            ..issue_req("noip", "a.mycompany.internal")
        })
        .await
        .err();
    assert!(matches!(e, Some(PkiError::Invalid(_))));
}

#[tokio::test]
async fn ttl_is_capped_by_role_mount_and_ca() {
    let h = harness().await;
    let mut req = root_req("ec", 256);
    req.ttl = 4 * 3600;
    h.store.generate_root(&req).await.expect("root");
    let mut r = role(&["example.com"]);
    r.allow_subdomains = true;
    h.store.write_role(M, "r", r).await.expect("role");
    let not_after = |leaf: &pb::IssueResponse| {
        let der = der_of(&leaf.certificate);
        let (_, c) = parse_x509_certificate(&der).expect("parses");
        c.validity().not_after.timestamp() - now()
    };
    // Role ttl (1h) by default.
    let leaf = h
        .store
        .issue(&issue_req("r", "a.example.com"))
        .await
        .expect("issue");
    assert!((not_after(&leaf) - 3600).abs() < 60);
    // Above the role max (2h): capped, with a warning.
    let leaf = h
        .store
        .issue(&pb::IssueRequest {
            ttl: 3 * 3600,
            ..issue_req("r", "a.example.com")
        })
        .await
        .expect("issue");
    assert!((not_after(&leaf) - 7200).abs() < 60);
    assert!(!leaf.warnings.is_empty());
    // The mount max (30 min) wins when lower.
    let leaf = h
        .store
        .issue(&pb::IssueRequest {
            ttl: 3 * 3600,
            mount_ttl: Some(pb::MountTtl {
                default_ttl: 0,
                max_ttl: 1800,
            }),
            ..issue_req("r", "a.example.com")
        })
        .await
        .expect("issue");
    assert!((not_after(&leaf) - 1800).abs() < 60);
    // Beyond the CA (4h): capped to its notAfter.
    let mut r = role(&["example.com"]);
    r.allow_subdomains = true;
    r.max_ttl = 0;
    r.ttl = 0;
    h.store.write_role(M, "long", r).await.expect("role");
    let leaf = h
        .store
        .issue(&pb::IssueRequest {
            ttl: 100 * 3600,
            ..issue_req("long", "a.example.com")
        })
        .await
        .expect("issue");
    assert!((not_after(&leaf) - 4 * 3600).abs() < 60);
    assert!(leaf.warnings.iter().any(|w| w.contains("CA")));
}

#[tokio::test]
async fn config_urls_are_written_into_certificates() {
    let h = harness().await;
    with_root_and_role(&h).await;
    let urls = pb::UrlsConfig {
        issuing_certificates: vec!["http://pki.example/v1/pki/ca".into()],
        crl_distribution_points: vec!["http://pki.example/v1/pki/crl".into()],
        ocsp_servers: vec!["http://ocsp.example".into()],
    };
    h.store.write_urls(M, urls.clone()).await.expect("urls");
    let read = h.store.read_urls(M).await.expect("read");
    assert_eq!(read.crl_distribution_points, urls.crl_distribution_points);
    let leaf = h
        .store
        .issue(&issue_req("web", "a.mycompany.internal"))
        .await
        .expect("issue");
    let der = der_of(&leaf.certificate);
    let (_, cert) = parse_x509_certificate(&der).expect("parses");
    let mut crl_dp = Vec::new();
    let mut aia = Vec::new();
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::CRLDistributionPoints(points) => {
                for p in points.iter() {
                    if let Some(DistributionPointName::FullName(names)) = &p.distribution_point {
                        for n in names {
                            if let GeneralName::URI(u) = n {
                                crl_dp.push(u.to_string());
                            }
                        }
                    }
                }
            }
            ParsedExtension::AuthorityInfoAccess(a) => {
                for d in a.iter() {
                    if let GeneralName::URI(u) = &d.access_location {
                        aia.push(u.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    assert_eq!(crl_dp, vec!["http://pki.example/v1/pki/crl"]);
    assert_eq!(
        aia,
        vec!["http://ocsp.example", "http://pki.example/v1/pki/ca"]
    );
    assert!(h
        .store
        .write_urls(
            M,
            pb::UrlsConfig {
                ocsp_servers: vec!["not a url".into()],
                ..Default::default()
            }
        )
        .await
        .is_err());
}

#[tokio::test]
async fn revocation_and_crl() {
    let h = harness().await;
    let root = with_root_and_role(&h).await;
    let a = h
        .store
        .issue(&issue_req("web", "a.mycompany.internal"))
        .await
        .expect("a");
    let b = h
        .store
        .issue(&issue_req("web", "b.mycompany.internal"))
        .await
        .expect("b");
    let t = h
        .store
        .revoke(&pb::RevokeRequest {
            mount: M.into(),
            serial_number: a.serial_number.to_uppercase().replace(':', "-"),
            certificate: String::new(),
        })
        .await
        .expect("revoke");
    assert!((t - now()).abs() < 60);
    // Again: the first time stays; by certificate works too.
    let again = h
        .store
        .revoke(&pb::RevokeRequest {
            mount: M.into(),
            serial_number: String::new(),
            certificate: a.certificate.clone(),
        })
        .await
        .expect("again");
    assert_eq!(again, t);
    let (_, revoked) = h
        .store
        .read_cert(M, &a.serial_number)
        .await
        .expect("read")
        .expect("found");
    assert_eq!(revoked.map(|r| r.revocation_time), Some(t));
    assert_eq!(
        h.store.list_revoked(M).await.expect("list"),
        vec![a.serial_number.clone()]
    );

    let crl_der = h.store.crl(M).await.expect("crl").expect("present");
    let (_, crl) = parse_x509_crl(&crl_der).expect("crl parses");
    let ca_der = der_of(&root.certificate);
    let (_, ca) = parse_x509_certificate(&ca_der).expect("ca");
    crl.verify_signature(ca.public_key())
        .expect("signed by the CA");
    let serials: Vec<String> = crl
        .iter_revoked_certificates()
        .map(|r| r.raw_serial_as_string())
        .collect();
    assert_eq!(serials, vec![a.serial_number.clone()]);
    assert!(!serials.contains(&b.serial_number));
    let rotated = h.store.rotate_crl(M).await.expect("rotate").expect("crl");
    let (_, crl2) = parse_x509_crl(&rotated).expect("parses");
    assert!(crl2.crl_number() > crl.crl_number());

    // The CA itself, unknown and malformed serials are refused.
    for serial in [root.serial_number.as_str(), "01:02:03", "zz"] {
        let e = h
            .store
            .revoke(&pb::RevokeRequest {
                mount: M.into(),
                serial_number: serial.into(),
                certificate: String::new(),
            })
            .await
            .err();
        assert!(matches!(e, Some(PkiError::Invalid(_))), "{serial}");
    }
    let e = h
        .store
        .revoke(&pb::RevokeRequest {
            mount: M.into(),
            serial_number: String::new(),
            certificate: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into(),
        })
        .await
        .err();
    assert!(matches!(e, Some(PkiError::Invalid(_))));
}

fn csr(names: &[&str], cn: &str) -> (String, rcgen::KeyPair) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("params");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    let csr = params.serialize_request(&key).expect("csr");
    (csr.pem().expect("pem"), key)
}

fn sign_req(role: &str, csr: String) -> pb::SignRequest {
    pb::SignRequest {
        mount: M.into(),
        role: role.into(),
        csr,
        ..Default::default()
    }
}

#[tokio::test]
async fn sign_applies_role_rules_to_the_csr() {
    let h = harness().await;
    let root = with_root_and_role(&h).await;
    let (pem, key) = csr(&["x.mycompany.internal"], "x.mycompany.internal");
    let leaf = h
        .store
        .sign(&sign_req("web", pem), false)
        .await
        .expect("sign");
    assert!(leaf.private_key.is_empty());
    verify_chain(&leaf.certificate, &root.certificate);
    let der = der_of(&leaf.certificate);
    let (_, cert) = parse_x509_certificate(&der).expect("parses");
    assert_eq!(
        cert.public_key().subject_public_key.data.as_ref(),
        key.public_key_raw()
    );

    let (evil, _) = csr(&["evil.com"], "x.mycompany.internal");
    let (evil_cn, _) = csr(&[], "evil.com");
    for bad in [evil, evil_cn, "garbage".to_string(), String::new()] {
        let e = h.store.sign(&sign_req("web", bad), false).await.err();
        assert!(matches!(e, Some(PkiError::Invalid(_))), "{e:?}");
    }
    // A role for rsa keys refuses an ec CSR.
    let mut r = role(&["mycompany.internal"]);
    r.allow_subdomains = true;
    r.key_type = "rsa".into();
    r.key_bits = 2048;
    h.store.write_role(M, "rsa-only", r).await.expect("role");
    let (pem, _) = csr(&["x.mycompany.internal"], "x.mycompany.internal");
    assert!(h.store.sign(&sign_req("rsa-only", pem), true).await.is_ok());
    let (pem, _) = csr(&["x.mycompany.internal"], "x.mycompany.internal");
    assert!(matches!(
        h.store.sign(&sign_req("rsa-only", pem), false).await,
        Err(PkiError::Invalid(_))
    ));
}

#[tokio::test]
async fn sign_verbatim_keeps_the_csr_names() {
    let h = harness().await;
    let root = with_root_and_role(&h).await;
    let (pem, _) = csr(&["anything.example.org"], "anything.example.org");
    let leaf = h.store.sign(&sign_req("", pem), true).await.expect("sign");
    verify_chain(&leaf.certificate, &root.certificate);
    let der = der_of(&leaf.certificate);
    let (_, cert) = parse_x509_certificate(&der).expect("parses");
    let cn: Vec<_> = cert.subject().iter_common_name().collect();
    assert_eq!(cn[0].as_str().ok(), Some("anything.example.org"));
    assert!(h
        .store
        .sign(&sign_req("", "nope".into()), true)
        .await
        .is_err());
}

#[tokio::test]
async fn no_store_roles_leave_no_record() {
    let h = harness().await;
    with_root_and_role(&h).await;
    let mut r = role(&["mycompany.internal"]);
    r.allow_subdomains = true;
    r.no_store = true;
    r.generate_lease = true;
    h.store.write_role(M, "ephemeral", r).await.expect("role");
    let leaf = h
        .store
        .issue(&issue_req("ephemeral", "a.mycompany.internal"))
        .await
        .expect("issue");
    assert!(leaf.generate_lease);
    assert!(h
        .store
        .read_cert(M, &leaf.serial_number)
        .await
        .expect("read")
        .is_none());
    // Not stored, yet revocable by presenting it; listed on the CRL.
    let revoke = |pem: String| pb::RevokeRequest {
        mount: M.into(),
        serial_number: String::new(),
        certificate: pem,
    };
    let t = h
        .store
        .revoke(&revoke(leaf.certificate.clone()))
        .await
        .expect("revoke");
    let again = h
        .store
        .revoke(&revoke(leaf.certificate.clone()))
        .await
        .expect("again");
    assert_eq!(t, again);
    let crl = h.store.crl(M).await.expect("crl").expect("present");
    let (_, crl) = parse_x509_crl(&crl).expect("parses");
    assert!(crl
        .iter_revoked_certificates()
        .any(|r| r.raw_serial_as_string() == leaf.serial_number));
    // A certificate of another CA is not ours to revoke.
    let mut other = root_req("ec", 256);
    other.mount = "other".into();
    h.store.generate_root(&other).await.expect("other root");
    let mut r = role(&["mycompany.internal"]);
    r.allow_subdomains = true;
    r.no_store = true;
    h.store.write_role("other", "r", r).await.expect("role");
    let foreign = h
        .store
        .issue(&pb::IssueRequest {
            mount: "other".into(),
            ..issue_req("r", "a.mycompany.internal")
        })
        .await
        .expect("foreign");
    assert!(matches!(
        h.store.revoke(&revoke(foreign.certificate)).await,
        Err(PkiError::Invalid(_))
    ));
}

#[tokio::test]
async fn roles_crud() {
    let h = harness().await;
    let r = role(&["a.b"]);
    h.store
        .write_role(M, "one", r.clone())
        .await
        .expect("write");
    let read = h
        .store
        .read_role(M, "one")
        .await
        .expect("read")
        .expect("found");
    assert_eq!(pb::Role::from(read), r);
    assert_eq!(h.store.list_roles(M).await.expect("list"), vec!["one"]);
    h.store.delete_role(M, "one").await.expect("delete");
    assert!(h.store.read_role(M, "one").await.expect("read").is_none());
    assert!(h.store.write_role(M, "a/b", role(&[])).await.is_err());
    let mut bad = role(&[]);
    bad.ttl = 10;
    bad.max_ttl = 5;
    assert!(h.store.write_role(M, "x", bad).await.is_err());
}

#[tokio::test]
async fn delete_root_and_drop_mount() {
    let h = harness().await;
    with_root_and_role(&h).await;
    h.store.delete_root(M).await.expect("delete");
    assert!(h.store.list_issuers(M).await.expect("list").is_empty());
    assert!(h.store.crl(M).await.expect("crl").is_none());
    let e = h
        .store
        .issue(&issue_req("web", "a.mycompany.internal"))
        .await
        .err();
    assert!(matches!(e, Some(PkiError::Invalid(_))));
    with_root_and_role(&h).await;
    h.store.drop_mount(M).await.expect("drop");
    assert!(h.store.list_roles(M).await.expect("roles").is_empty());
    assert!(h.store.list_issuers(M).await.expect("issuers").is_empty());
    assert!(h.store.list_certs(M).await.expect("certs").is_empty());
}

#[tokio::test]
async fn sealed_refuses() {
    let h = harness().await;
    h.store.barrier.keyring().clear();
    assert!(matches!(
        h.store.ensure_unsealed().await,
        Err(PkiError::Sealed)
    ));
}

const INT: &str = "0b6c1d9e-0000-4000-8000-000000000002";

#[tokio::test]
async fn intermediate_chain_verifies_to_the_root() {
    let h = harness().await;
    let root = with_root_and_role(&h).await;
    let gen = h
        .store
        .generate_intermediate(&pb::GenerateIntermediateRequest {
            mount: INT.into(),
            common_name: "Bulwark Intermediate".into(),
            key_type: "ec".into(),
            ..Default::default()
        })
        .await
        .expect("csr");
    assert!(gen.private_key.is_empty());
    assert!(gen.csr.contains("CERTIFICATE REQUEST"));
    let signed = h
        .store
        .sign_intermediate(&pb::SignIntermediateRequest {
            mount: M.into(),
            csr: gen.csr.clone(),
            ttl: 86400,
            max_path_length: -1,
            use_csr_values: true,
            ..Default::default()
        })
        .await
        .expect("signed");
    verify_chain(&signed.certificate, &root.certificate);
    let der = der_of(&signed.certificate);
    let (_, cert) = parse_x509_certificate(&der).expect("parses");
    assert!(cert.is_ca());
    assert!((cert.validity().not_after.timestamp() - now() - 86400).abs() < 60);

    // Not a CA of this mount's keys: refused; then the real one.
    let other = h.store.set_signed(INT, &root.certificate).await.err();
    assert!(matches!(other, Some(PkiError::Invalid(_))));
    assert!(matches!(
        h.store.set_signed(INT, "garbage").await,
        Err(PkiError::Invalid(_))
    ));
    let bundle = format!("{}{}", signed.certificate, root.certificate);
    let imported = h.store.set_signed(INT, &bundle).await.expect("set-signed");
    assert_eq!(imported.imported_issuers.len(), 1);
    assert_eq!(imported.existing_keys, vec![gen.key_id.clone()]);
    let again = h.store.set_signed(INT, &bundle).await.expect("again");
    assert_eq!(again.existing_issuers, imported.imported_issuers);

    let mut r = role(&["mycompany.internal"]);
    r.allow_subdomains = true;
    h.store.write_role(INT, "web", r).await.expect("role");
    let leaf = h
        .store
        .issue(&pb::IssueRequest {
            mount: INT.into(),
            ..issue_req("web", "a.mycompany.internal")
        })
        .await
        .expect("issue");
    verify_chain(&leaf.certificate, &signed.certificate);
    assert_eq!(leaf.ca_chain.len(), 2);
    verify_chain(&leaf.ca_chain[0], &leaf.ca_chain[1]);

    // A CA with path length 0 cannot sign further CAs.
    let mut zero = root_req("ec", 256);
    zero.mount = "zero".into();
    zero.max_path_length = 0;
    h.store.generate_root(&zero).await.expect("root");
    let e = h
        .store
        .sign_intermediate(&pb::SignIntermediateRequest {
            mount: "zero".into(),
            csr: gen.csr,
            common_name: "x".into(),
            ..Default::default()
        })
        .await
        .err();
    assert!(matches!(e, Some(PkiError::Invalid(_))));
    assert!(h
        .store
        .sign_intermediate(&pb::SignIntermediateRequest {
            mount: M.into(),
            csr: "not a csr".into(),
            ..Default::default()
        })
        .await
        .is_err());
}

#[tokio::test]
async fn config_ca_imports_a_bundle() {
    let h = harness().await;
    let mut req = root_req("ec", 256);
    req.mount = "source".into();
    req.exported = true;
    let root = h.store.generate_root(&req).await.expect("root");
    assert!(root
        .private_key
        .starts_with("-----BEGIN EC PRIVATE KEY-----"));
    let bundle = format!("{}{}", root.certificate, root.private_key);
    let imported = h.store.config_ca(M, &bundle).await.expect("import");
    // A PKCS#8 bundle (key first) imports too.
    let mut req8 = root_req("rsa", 2048);
    req8.mount = "source8".into();
    req8.exported = true;
    req8.private_key_format = "pkcs8".into();
    let root8 = h.store.generate_root(&req8).await.expect("root");
    assert!(root8.private_key.starts_with("-----BEGIN PRIVATE KEY-----"));
    let bundle8 = format!("{}{}", root8.private_key, root8.certificate);
    h.store
        .config_ca("dest8", &bundle8)
        .await
        .expect("import pkcs8");
    assert_eq!(imported.imported_issuers.len(), 1);
    assert_eq!(imported.imported_keys.len(), 1);
    // Imported CA certificates are not listed under certs/ (as in Vault).
    assert!(h.store.list_certs(M).await.expect("certs").is_empty());
    let mut r = role(&["x.test"]);
    r.allow_subdomains = true;
    h.store.write_role(M, "r", r).await.expect("role");
    let leaf = h
        .store
        .issue(&issue_req("r", "a.x.test"))
        .await
        .expect("issue");
    verify_chain(&leaf.certificate, &root.certificate);

    let (other, _) = crypto::generate(KeySpecEc).expect("key");
    let mismatched = format!("{}{}", root.certificate, other.serialize_pem());
    let junk_ec = format!(
        "{}-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
        root.certificate
    );
    let two_keys = format!("{bundle}{}", root.private_key);
    for bad in [
        "garbage".to_string(),
        root.certificate.clone(),
        root.private_key.clone(),
        mismatched,
        junk_ec,
        two_keys,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".to_string()
            + &root.private_key,
    ] {
        let e = h.store.config_ca("other", &bad).await.err();
        assert!(matches!(e, Some(PkiError::Invalid(_))), "{e:?}");
    }
}

#[allow(non_upper_case_globals)]
const KeySpecEc: crypto::KeySpec = crypto::KeySpec::Ec(256);

#[tokio::test]
async fn tidy_removes_expired_certs_and_revocations() {
    let h = harness().await;
    let root = with_root_and_role(&h).await;
    let short = h
        .store
        .issue(&pb::IssueRequest {
            ttl: 60,
            ..issue_req("web", "a.mycompany.internal")
        })
        .await
        .expect("short");
    let long = h
        .store
        .issue(&issue_req("web", "b.mycompany.internal"))
        .await
        .expect("long");
    h.store
        .revoke(&pb::RevokeRequest {
            mount: M.into(),
            serial_number: short.serial_number.clone(),
            certificate: String::new(),
        })
        .await
        .expect("revoke");
    let tidy = pb::TidyRequest {
        mount: M.into(),
        tidy_cert_store: true,
        tidy_revoked_certs: true,
        safety_buffer: 600,
    };
    // Within the safety buffer: nothing goes.
    let out = h.store.tidy_at(&tidy, now() + 300).await.expect("tidy");
    assert_eq!((out.certs_deleted, out.revoked_deleted), (0, 0));
    let out = h.store.tidy_at(&tidy, now() + 3000).await.expect("tidy");
    assert_eq!((out.certs_deleted, out.revoked_deleted), (0, 1));
    let certs = h.store.list_certs(M).await.expect("list");
    assert!(!certs.contains(&short.serial_number));
    assert!(certs.contains(&long.serial_number));
    assert!(certs.contains(&root.serial_number));
    assert!(h.store.list_revoked(M).await.expect("revoked").is_empty());
    let crl = h.store.crl(M).await.expect("crl").expect("present");
    let (_, crl) = parse_x509_crl(&crl).expect("parses");
    assert_eq!(crl.iter_revoked_certificates().count(), 0);
}

#[tokio::test]
async fn the_service_answers_found_flags_and_sealed() {
    use crate::service::PkiService;
    use bulwark_proto::pki::v1::pki_server::Pki;
    let h = harness().await;
    let svc = PkiService::new(h.store.clone());
    let mount = || tonic::Request::new(pb::MountRequest { mount: M.into() });
    let crl_req = || {
        tonic::Request::new(pb::CrlRequest {
            mount: M.into(),
            issuer_ref: String::new(),
        })
    };
    let ca = svc.get_ca(mount()).await.expect("get_ca").into_inner();
    assert!(!ca.found);
    let crl = svc.crl(crl_req()).await.expect("crl").into_inner();
    assert!(!crl.found);
    with_root_and_role(&h).await;
    let ca = svc.get_ca(mount()).await.expect("get_ca").into_inner();
    assert!(ca.found && ca.certificate_pem.contains("CERTIFICATE"));
    let (_, parsed) = parse_x509_certificate(&ca.certificate_der).expect("der");
    assert!(parsed.is_ca());
    let crl = svc.crl(crl_req()).await.expect("crl").into_inner();
    assert!(crl.found && crl.pem.contains("BEGIN X509 CRL"));
    let bad = svc
        .generate_root(tonic::Request::new(root_req("rsa", 1000)))
        .await
        .err();
    assert_eq!(bad.map(|s| s.code()), Some(tonic::Code::InvalidArgument));
    h.store.barrier.keyring().clear();
    let sealed = svc.get_ca(mount()).await.err();
    assert_eq!(sealed.map(|s| s.code()), Some(tonic::Code::Unavailable));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_revocations_all_reach_the_crl() {
    let h = harness().await;
    with_root_and_role(&h).await;
    let mut serials = Vec::new();
    for i in 0..8 {
        let leaf = h
            .store
            .issue(&issue_req("web", &format!("h{i}.mycompany.internal")))
            .await
            .expect("issue");
        serials.push(leaf.serial_number);
    }
    let mut tasks = Vec::new();
    for serial in serials.clone() {
        let store = h.store.clone();
        tasks.push(tokio::spawn(async move {
            store
                .revoke(&pb::RevokeRequest {
                    mount: M.into(),
                    serial_number: serial,
                    certificate: String::new(),
                })
                .await
        }));
    }
    for t in tasks {
        t.await.expect("task").expect("revoke");
    }
    let der = h.store.crl(M).await.expect("crl").expect("present");
    let (_, crl) = parse_x509_crl(&der).expect("parses");
    let mut listed: Vec<String> = crl
        .iter_revoked_certificates()
        .map(|r| r.raw_serial_as_string())
        .collect();
    listed.sort();
    serials.sort();
    assert_eq!(listed, serials);
}

#[tokio::test]
async fn a_non_hostname_common_name_stays_out_of_the_sans() {
    let h = harness().await;
    with_root_and_role(&h).await;
    let mut r = role(&[]);
    r.allow_any_name = true;
    r.enforce_hostnames = false;
    h.store.write_role(M, "any", r).await.expect("role");
    let leaf = h
        .store
        .issue(&pb::IssueRequest {
            alt_names: vec!["svc.example".into()],
            ..issue_req("any", "My Service")
        })
        .await
        .expect("issue");
    let der = der_of(&leaf.certificate);
    let (_, cert) = parse_x509_certificate(&der).expect("parses");
    let cn: Vec<_> = cert.subject().iter_common_name().collect();
    assert_eq!(cn[0].as_str().ok(), Some("My Service"));
    let san = cert
        .subject_alternative_name()
        .expect("san")
        .expect("present");
    assert_eq!(san.value.general_names.len(), 1);
}

#[tokio::test]
async fn issuer_ref_selects_the_signer_and_its_crl() {
    let h = harness().await;
    let first = with_root_and_role(&h).await;
    let mut req = root_req("ec", 256);
    req.issuer_name = "root-2".into();
    req.common_name = "Second Root".into();
    let second = h.store.generate_root(&req).await.expect("second root");
    // The first root stays the default.
    let default = h.store.find_issuer(M, "default").await.expect("find");
    assert_eq!(default.map(|i| i.id), Some(first.issuer_id.clone()));

    let mut r = role(&["mycompany.internal"]);
    r.allow_subdomains = true;
    r.issuer_ref = "root-2".into();
    h.store.write_role(M, "second", r).await.expect("role");
    let leaf = h
        .store
        .issue(&issue_req("second", "a.mycompany.internal"))
        .await
        .expect("issue");
    verify_chain(&leaf.certificate, &second.certificate);
    let over = h
        .store
        .issue(&pb::IssueRequest {
            issuer_ref: first.issuer_id.clone(),
            ..issue_req("second", "b.mycompany.internal")
        })
        .await
        .expect("issue");
    verify_chain(&over.certificate, &first.certificate);
    let e = h
        .store
        .issue(&pb::IssueRequest {
            issuer_ref: "nope".into(),
            ..issue_req("second", "b.mycompany.internal")
        })
        .await
        .err();
    assert!(matches!(e, Some(PkiError::Invalid(_))));

    h.store
        .revoke(&pb::RevokeRequest {
            mount: M.into(),
            serial_number: leaf.serial_number.clone(),
            certificate: String::new(),
        })
        .await
        .expect("revoke");
    let crl2 = h
        .store
        .crl_of(M, "root-2")
        .await
        .expect("crl")
        .expect("some");
    let (_, parsed2) = parse_x509_crl(&crl2).expect("parses");
    let ca2_der = der_of(&second.certificate);
    let (_, ca2) = parse_x509_certificate(&ca2_der).expect("ca");
    parsed2
        .verify_signature(ca2.public_key())
        .expect("signed by root-2");
    assert_eq!(parsed2.iter_revoked_certificates().count(), 1);
    let crl1 = h.store.crl(M).await.expect("crl").expect("some");
    let (_, parsed1) = parse_x509_crl(&crl1).expect("parses");
    assert_eq!(parsed1.iter_revoked_certificates().count(), 0);
    assert!(h.store.crl_of(M, "nope").await.expect("crl").is_none());
}
