//! The PKI engine end to end: walkthrough 003's PKI step over HTTP, the
//! issued certificate parsed and checked against the CA, revocation into
//! the CRL, bad input.

use bulwark_e2e::{init_unsealed, Api, Cluster, Layout, Store};
use serde_json::{json, Value};
use x509_parser::prelude::*;

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

fn der(pem_text: &str) -> Vec<u8> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(pem_text.as_bytes()).expect("PEM");
    pem.contents
}

#[tokio::test(flavor = "multi_thread")]
async fn walkthrough_pki_issue_revoke_crl() {
    let c = Cluster::start(Layout::Separate, Store::SqliteFile);
    let api = c.client();
    let root = api.with_token(&init_unsealed(&api).await);

    ok(&root, "sys/mounts/pki", json!({"type": "pki"})).await;
    ok(
        &root,
        "sys/mounts/pki/tune",
        json!({"max_lease_ttl": "87600h"}),
    )
    .await;
    let r = ok(
        &root,
        "pki/root/generate/internal",
        json!({"common_name": "mycompany.internal", "ttl": "87600h"}),
    )
    .await;
    assert!(
        r["data"].get("private_key").is_none(),
        "internal keeps the key"
    );
    let ca_pem = s(&r["data"]["certificate"]);
    ok(
        &root,
        "pki/config/urls",
        json!({
            "issuing_certificates": "http://localhost:8200/v1/pki/ca",
            "crl_distribution_points": "http://localhost:8200/v1/pki/crl",
        }),
    )
    .await;
    ok(
        &root,
        "pki/roles/my-server",
        json!({"allowed_domains": "mycompany.internal", "allow_subdomains": true, "max_ttl": "72h"}),
    )
    .await;
    let r = ok(
        &root,
        "pki/issue/my-server",
        json!({"common_name": "api.mycompany.internal", "ttl": "24h"}),
    )
    .await;
    let d = &r["data"];
    assert_eq!(d["private_key_type"], "rsa");
    assert!(s(&d["private_key"]).contains("PRIVATE KEY"));
    assert_eq!(s(&d["issuing_ca"]), ca_pem);
    let serial = s(&d["serial_number"]);

    // The certificate: signed by the CA, names, ~24h, usages, CRL DP.
    let ca_der = der(&ca_pem);
    let (_, ca) = X509Certificate::from_der(&ca_der).expect("CA parses");
    let leaf_der = der(&s(&d["certificate"]));
    let (_, leaf) = X509Certificate::from_der(&leaf_der).expect("leaf parses");
    leaf.verify_signature(Some(ca.public_key()))
        .expect("leaf signed by the CA");
    let cn = leaf
        .subject()
        .iter_common_name()
        .next()
        .and_then(|c| c.as_str().ok())
        .unwrap_or_default()
        .to_string();
    assert_eq!(cn, "api.mycompany.internal");
    let san = leaf
        .subject_alternative_name()
        .expect("SAN ext")
        .expect("SAN present");
    assert!(san
        .value
        .general_names
        .iter()
        .any(|n| matches!(n, GeneralName::DNSName(d) if *d == "api.mycompany.internal")));
    let life = leaf.validity().not_after.timestamp() - leaf.validity().not_before.timestamp();
    assert!((86_000..=86_460).contains(&life), "{life}s");
    let eku = leaf
        .extended_key_usage()
        .expect("eku")
        .expect("eku present");
    assert!(eku.value.server_auth && eku.value.client_auth);
    let crl_dp = leaf
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::CRLDistributionPoints(p) => Some(format!("{p:?}")),
            _ => None,
        })
        .expect("CRL distribution point");
    assert!(
        crl_dp.contains("http://localhost:8200/v1/pki/crl"),
        "{crl_dp}"
    );

    // The CA over its raw endpoints.
    let r = root.get("pki/ca/pem").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.headers.get("content-type").and_then(|v| v.to_str().ok()),
        Some("application/pem-certificate-chain")
    );

    // Refusals: a name outside the role, a TTL over max_ttl is capped (as
    // Vault does), an unknown role, bad key params, garbage.
    let r = root
        .put("pki/issue/my-server", json!({"common_name": "evil.com"}))
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    let r = root
        .put(
            "pki/issue/my-server",
            json!({"common_name": "x.mycompany.internal", "ttl": "100h"}),
        )
        .await;
    if r.status == 200 {
        let cert_der = der(&s(&r.body["data"]["certificate"]));
        let (_, cert) = X509Certificate::from_der(&cert_der).expect("parses");
        let life = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
        assert!(life <= 72 * 3600 + 60, "capped at max_ttl: {life}s");
    } else {
        assert_eq!(r.status, 400, "{:?}", r.body);
    }
    for (path, body) in [
        (
            "pki/issue/nope",
            json!({"common_name": "a.mycompany.internal"}),
        ),
        ("pki/roles/bad", json!({"key_type": "dsa"})),
        (
            "pki/roles/bad",
            json!({"key_type": "rsa", "key_bits": 1000}),
        ),
        (
            "pki/sign/my-server",
            json!({"csr": "-----BEGIN CERTIFICATE REQUEST-----\nnope\n-----END CERTIFICATE REQUEST-----"}),
        ),
        ("pki/config/ca", json!({"pem_bundle": "garbage"})),
        (
            "pki/root/generate/internal",
            json!({"common_name": "x", "key_type": "rsa", "key_bits": 12}),
        ),
    ] {
        let r = root.put(path, body.clone()).await;
        assert!(
            r.status == 400 || r.status == 404,
            "{path} {body}: {} {:?}",
            r.status,
            r.body
        );
        assert!(!r.errors().is_empty(), "{path}: {:?}", r.body);
    }

    // Revoke: the serial shows up in the CRL, which the CA signed.
    let r = ok(&root, "pki/revoke", json!({ "serial_number": serial })).await;
    assert!(r["data"]["revocation_time"].as_i64().unwrap() > 0);
    // CA and CRL are fetched without a token, as from a relying party.
    assert_eq!(api.get("pki/crl").await.status, 200);
    assert_eq!(api.get("pki/ca").await.status, 200);
    assert_eq!(api.get("pki/roles/my-server").await.status, 403);
    let crl_pem = reqwest::get(format!("{}/v1/pki/crl/pem", c.http))
        .await
        .expect("crl")
        .text()
        .await
        .expect("crl text");
    let crl_der = {
        let (_, pem) = x509_parser::pem::parse_x509_pem(crl_pem.as_bytes()).expect("CRL PEM");
        pem.contents
    };
    let (_, crl) = CertificateRevocationList::from_der(&crl_der).expect("CRL parses");
    crl.verify_signature(ca.public_key())
        .expect("CRL signed by the CA");
    let want = leaf.raw_serial().to_vec();
    assert!(
        crl.iter_revoked_certificates()
            .any(|rc| rc.raw_serial() == want.as_slice()),
        "revoked serial in the CRL"
    );
    let r = root.raw("LIST", "pki/certs", None).await;
    assert!(r.body["data"]["keys"]
        .as_array()
        .unwrap()
        .contains(&json!(serial)));
}

/// Intermediate flow: a second mount's CSR signed by the root, set-signed,
/// and a leaf from the intermediate that a standard verifier (OpenSSL)
/// chains to the root. CSRs with names outside the role are refused.
#[tokio::test(flavor = "multi_thread")]
async fn intermediate_chain_and_csrs() {
    let c = Cluster::start(Layout::AllInOne, Store::SqliteFile);
    let api = c.client();
    let root = api.with_token(&init_unsealed(&api).await);
    ok(
        &root,
        "sys/mounts/pki",
        json!({"type": "pki", "config": {"max_lease_ttl": "87600h"}}),
    )
    .await;
    ok(
        &root,
        "sys/mounts/pki_int",
        json!({"type": "pki", "config": {"max_lease_ttl": "43800h"}}),
    )
    .await;
    let r = ok(
        &root,
        "pki/root/generate/internal",
        json!({"common_name": "example.com Root", "ttl": "87600h", "key_type": "ec", "key_bits": 256}),
    )
    .await;
    let root_pem = s(&r["data"]["certificate"]);
    let r = ok(
        &root,
        "pki_int/intermediate/generate/internal",
        json!({"common_name": "example.com Intermediate"}),
    )
    .await;
    let csr = s(&r["data"]["csr"]);
    assert!(csr.contains("CERTIFICATE REQUEST"));
    let r = ok(
        &root,
        "pki/root/sign-intermediate",
        json!({"csr": csr, "ttl": "43800h"}),
    )
    .await;
    let int_pem = s(&r["data"]["certificate"]);
    ok(
        &root,
        "pki_int/intermediate/set-signed",
        json!({ "certificate": int_pem }),
    )
    .await;
    ok(
        &root,
        "pki_int/roles/web",
        json!({"allowed_domains": "example.com", "allow_subdomains": true, "max_ttl": "72h", "key_type": "ec", "key_bits": 256}),
    )
    .await;
    let r = ok(
        &root,
        "pki_int/issue/web",
        json!({"common_name": "www.example.com", "ttl": "1h"}),
    )
    .await;
    assert_eq!(r["data"]["private_key_type"], "ec");
    let leaf_pem = s(&r["data"]["certificate"]);

    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p
    };
    let (rp, ip, lp) = (
        write("root.pem", &root_pem),
        write("int.pem", &int_pem),
        write("leaf.pem", &leaf_pem),
    );
    let out = std::process::Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&rp)
        .arg("-untrusted")
        .arg(&ip)
        .arg(&lp)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl verify: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the intermediate the leaf does not verify.
    let out = std::process::Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(&rp)
        .arg(&lp)
        .output()
        .expect("run openssl");
    assert!(!out.status.success());

    // sign/<role> with a CSR: allowed names are signed, others refused.
    let csr_for = |name: &str| {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params
            .serialize_request(&key)
            .expect("csr")
            .pem()
            .expect("pem")
    };
    let r = root
        .put(
            "pki_int/sign/web",
            json!({"csr": csr_for("api.example.com"), "common_name": "api.example.com"}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert!(r.body["data"].get("private_key").is_none());
    let r = root
        .put(
            "pki_int/sign/web",
            json!({"csr": csr_for("evil.com"), "common_name": "evil.com"}),
        )
        .await;
    assert_eq!(r.status, 400, "{:?}", r.body);
}
