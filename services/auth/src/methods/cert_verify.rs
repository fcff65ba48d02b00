//! Certificate chain verification for the `cert` auth method, with the
//! semantics of Vault's cert auth. Pure functions: no I/O, no clock (the
//! caller passes `now`).
//!
//! The gateway's HTTPS listener requests a client certificate but accepts any
//! chain; it only checks that the client holds the leaf's private key. Trust is
//! decided here, against the PEM configured on a cert role:
//!
//! - `chain[0]` is the client's leaf (DER); the rest are intermediates the
//!   client sent, in any order.
//! - The leaf must be within its validity period; if it carries an Extended Key
//!   Usage extension, that must include `clientAuth` (or `anyExtendedKeyUsage`).
//! - A leaf whose DER equals a trusted certificate is accepted as is (pinning a
//!   leaf, as Vault allows non-CA certificates in `certificate`).
//! - Otherwise a path is built leaf → zero or more presented intermediates →
//!   a trusted certificate. Every issuer on the path must be a CA
//!   (basicConstraints `cA`, within its `pathLenConstraint`), valid at `now`,
//!   have the child's issuer name as its subject, and verify the child's
//!   signature. At most [`MAX_DEPTH`] certificates precede the trust anchor.
//!
//! Nothing here panics on hostile input: unparsable DER or PEM is an error,
//! the number of presented certificates and of signature checks is bounded.

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::time::ASN1Time;

/// The most certificates a path may hold below its trust anchor (the leaf
/// plus up to four intermediates).
pub(crate) const MAX_DEPTH: usize = 5;
/// More presented certificates than this are refused outright.
const MAX_PRESENTED: usize = 16;
/// Signature verifications one call may spend looking for a path.
const MAX_SIGNATURE_CHECKS: u32 = 100;

/// What the cert auth method needs to know about an accepted leaf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LeafInfo {
    pub common_name: String,
    pub dns_sans: Vec<String>,
    pub email_sans: Vec<String>,
    pub uri_sans: Vec<String>,
    pub organizational_units: Vec<String>,
    /// Lowercase, colon-separated hex without leading zero bytes (Vault's
    /// format), e.g. `3a:1f:…`.
    pub serial_number: String,
    /// Same format; empty when the extension is absent.
    pub subject_key_id: String,
    /// Same format; empty when the extension (or its key id) is absent.
    pub authority_key_id: String,
}

/// Why a certificate or chain was refused. The text is safe to show to
/// clients: it never echoes certificate contents or parser internals.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CertError {
    #[error("no client certificate presented")]
    NoClientCertificate,
    #[error("the client certificate chain has too many certificates (at most {MAX_PRESENTED})")]
    TooManyCertificates,
    #[error("client certificate {index} could not be parsed")]
    InvalidClientCertificate { index: usize },
    #[error("invalid certificate PEM: {0}")]
    InvalidPem(String),
    #[error("no certificates found in PEM")]
    NoTrustedCertificates,
    #[error("the client certificate is not valid at this time (expired or not yet valid)")]
    OutsideValidity,
    #[error("the client certificate's extended key usage does not allow client authentication")]
    NotForClientAuth,
    #[error("the client certificate is not signed by a trusted certificate")]
    Untrusted,
    #[error("invalid time")]
    InvalidTime,
}

/// Parses the trusted PEM of a role: the number of certificates in it (at
/// least one), or an error if the PEM holds none, holds anything but
/// certificates, or a certificate does not parse.
pub(crate) fn parse_trusted(pem: &str) -> Result<usize, CertError> {
    Ok(trusted_ders(pem)?.len())
}

fn trusted_ders(pem: &str) -> Result<Vec<Vec<u8>>, CertError> {
    let mut out = Vec::new();
    for (n, item) in rustls_pemfile::read_all(&mut pem.as_bytes()).enumerate() {
        let block = n + 1;
        match item {
            Ok(rustls_pemfile::Item::X509Certificate(der)) => {
                if parse_der(&der).is_none() {
                    return Err(CertError::InvalidPem(format!(
                        "PEM block {block} is not a valid X.509 certificate"
                    )));
                }
                out.push(der.to_vec());
            }
            Ok(_) => {
                return Err(CertError::InvalidPem(format!(
                    "PEM block {block} is not a CERTIFICATE"
                )))
            }
            Err(_) => {
                return Err(CertError::InvalidPem(format!(
                    "PEM block {block} is malformed"
                )))
            }
        }
    }
    if out.is_empty() {
        return Err(CertError::NoTrustedCertificates);
    }
    Ok(out)
}

/// A whole DER certificate, nothing after it.
fn parse_der(der: &[u8]) -> Option<X509Certificate<'_>> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Some(cert),
        _ => None,
    }
}

/// Verifies a client's chain (`chain[0]` the leaf) against `trusted_pem` at
/// `now_unix` (seconds since the epoch), as described in the module docs.
pub(crate) fn verify_chain(
    trusted_pem: &str,
    chain: &[Vec<u8>],
    now_unix: i64,
) -> Result<LeafInfo, CertError> {
    if chain.is_empty() {
        return Err(CertError::NoClientCertificate);
    }
    if chain.len() > MAX_PRESENTED {
        return Err(CertError::TooManyCertificates);
    }
    let now = ASN1Time::from_timestamp(now_unix).map_err(|_| CertError::InvalidTime)?;
    let trusted_der = trusted_ders(trusted_pem)?;
    let anchors: Vec<X509Certificate<'_>> =
        trusted_der.iter().filter_map(|d| parse_der(d)).collect();
    let mut presented = Vec::with_capacity(chain.len());
    for (index, der) in chain.iter().enumerate() {
        presented.push(parse_der(der).ok_or(CertError::InvalidClientCertificate { index })?);
    }
    let (leaf, intermediates) = presented
        .split_first()
        .ok_or(CertError::NoClientCertificate)?;

    if !leaf.validity().is_valid_at(now) {
        return Err(CertError::OutsideValidity);
    }
    match leaf.extended_key_usage() {
        Ok(None) => {}
        Ok(Some(eku)) if eku.value.client_auth || eku.value.any => {}
        _ => return Err(CertError::NotForClientAuth),
    }
    let pinned = trusted_der
        .iter()
        .any(|t| t.as_slice() == chain[0].as_slice());
    if !pinned {
        let mut search = PathSearch {
            anchors: &anchors,
            intermediates,
            now,
            used: Vec::new(),
            budget: MAX_SIGNATURE_CHECKS,
        };
        if !search.from(leaf) {
            return Err(CertError::Untrusted);
        }
    }
    Ok(leaf_info(leaf))
}

/// Depth-first search for a path from a certificate to a trust anchor.
struct PathSearch<'c, 'a> {
    anchors: &'c [X509Certificate<'a>],
    intermediates: &'c [X509Certificate<'a>],
    now: ASN1Time,
    /// Indexes of the intermediates on the current path, leaf side first.
    used: Vec<usize>,
    /// Signature checks left.
    budget: u32,
}

impl PathSearch<'_, '_> {
    /// Whether `cert` chains to an anchor. `self.used.len()` intermediates
    /// already sit between `cert` and the leaf (`cert` being the last one).
    fn from(&mut self, cert: &X509Certificate<'_>) -> bool {
        // Intermediates below the issuer being considered (pathLenConstraint).
        let below = self.used.len();
        for anchor in self.anchors {
            if self.may_issue(anchor, cert, below) && self.signed_by(cert, anchor) {
                return true;
            }
        }
        // The leaf plus the intermediates so far already fill the path.
        if below + 1 >= MAX_DEPTH {
            return false;
        }
        for (i, inter) in self.intermediates.iter().enumerate() {
            if self.used.contains(&i)
                || !self.may_issue(inter, cert, below)
                || !self.signed_by(cert, inter)
            {
                continue;
            }
            self.used.push(i);
            if self.from(inter) {
                return true;
            }
            self.used.pop();
        }
        false
    }

    /// Name chaining, CA flag and path length, validity: everything but the
    /// signature, which costs more.
    fn may_issue(
        &self,
        issuer: &X509Certificate<'_>,
        child: &X509Certificate<'_>,
        below: usize,
    ) -> bool {
        if issuer.subject().as_raw() != child.issuer().as_raw() {
            return false;
        }
        let Ok(Some(bc)) = issuer.basic_constraints() else {
            return false;
        };
        if !bc.value.ca {
            return false;
        }
        if let Some(max) = bc.value.path_len_constraint {
            if below > max as usize {
                return false;
            }
        }
        issuer.validity().is_valid_at(self.now)
    }

    fn signed_by(&mut self, child: &X509Certificate<'_>, issuer: &X509Certificate<'_>) -> bool {
        if self.budget == 0 {
            return false;
        }
        self.budget -= 1;
        child.verify_signature(Some(issuer.public_key())).is_ok()
    }
}

/// Vault's hex format: lowercase, colon-separated.
fn hex_colon(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn leaf_info(leaf: &X509Certificate<'_>) -> LeafInfo {
    let mut info = LeafInfo {
        // As Go's pkix.Name, the last CN wins when there are several.
        common_name: leaf
            .subject()
            .iter_common_name()
            .filter_map(|a| a.as_str().ok())
            .last()
            .unwrap_or_default()
            .to_string(),
        organizational_units: leaf
            .subject()
            .iter_organizational_unit()
            .filter_map(|a| a.as_str().ok())
            .map(str::to_string)
            .collect(),
        ..LeafInfo::default()
    };
    // As Go's big.Int.Bytes(): no leading zero bytes (the DER sign byte).
    let serial = leaf.raw_serial();
    let first = serial.iter().position(|b| *b != 0).unwrap_or(serial.len());
    info.serial_number = hex_colon(&serial[first..]);
    if let Ok(Some(san)) = leaf.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(s) => info.dns_sans.push(s.to_string()),
                GeneralName::RFC822Name(s) => info.email_sans.push(s.to_string()),
                GeneralName::URI(s) => info.uri_sans.push(s.to_string()),
                _ => {}
            }
        }
    }
    for ext in leaf.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => info.subject_key_id = hex_colon(id.0),
            ParsedExtension::AuthorityKeyIdentifier(aki) => {
                if let Some(id) = &aki.key_identifier {
                    info.authority_key_id = hex_colon(id.0);
                }
            }
            _ => {}
        }
    }
    info
}

/// Whether an accepted leaf satisfies a role's constraints. An empty list
/// constrains nothing; a non-empty one must be satisfied: the common name
/// matches one of `allowed_common_names`; at least one SAN of the kind (or
/// one OU) matches one of its patterns. Patterns are globs where `*` matches
/// any run of characters (none included), anywhere; matching is
/// case-sensitive, as Vault's.
pub(crate) fn constraints_allow(
    leaf: &LeafInfo,
    allowed_common_names: &[String],
    allowed_dns_sans: &[String],
    allowed_email_sans: &[String],
    allowed_uri_sans: &[String],
    allowed_organizational_units: &[String],
) -> bool {
    fn any_matches(patterns: &[String], values: &[String]) -> bool {
        patterns.is_empty()
            || patterns
                .iter()
                .any(|p| values.iter().any(|v| glob_match(p, v)))
    }
    any_matches(
        allowed_common_names,
        std::slice::from_ref(&leaf.common_name),
    ) && any_matches(allowed_dns_sans, &leaf.dns_sans)
        && any_matches(allowed_email_sans, &leaf.email_sans)
        && any_matches(allowed_uri_sans, &leaf.uri_sans)
        && any_matches(allowed_organizational_units, &leaf.organizational_units)
}

/// `*` matches any sequence of characters; everything else matches itself.
/// Linear backtracking (the last `*` only), so no pattern is exponential.
fn glob_match(pattern: &str, value: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let v: Vec<char> = value.chars().collect();
    let (mut pi, mut vi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while vi < v.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, vi));
            pi += 1;
        } else if pi < p.len() && p[pi] == v[vi] {
            pi += 1;
            vi += 1;
        } else if let Some((sp, sv)) = star {
            pi = sp + 1;
            vi = sv + 1;
            star = Some((sp, sv + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyIdMethod, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
    };

    /// 2030-01-01T00:00:00Z, inside every test certificate's validity.
    const NOW: i64 = 1_893_456_000;

    struct Ca {
        pem: String,
        der: Vec<u8>,
        issuer: Issuer<'static, KeyPair>,
    }

    fn ca_params(name: &str, path_len: Option<u8>) -> CertificateParams {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(match path_len {
            Some(n) => BasicConstraints::Constrained(n),
            None => BasicConstraints::Unconstrained,
        });
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2040, 1, 1);
        p
    }

    fn root(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let params = ca_params(name, None);
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        }
    }

    fn intermediate(name: &str, parent: &Ca, path_len: Option<u8>) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = ca_params(name, path_len);
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &parent.issuer).unwrap();
        Ca {
            pem: cert.pem(),
            der: cert.der().to_vec(),
            issuer: Issuer::new(params, key),
        }
    }

    fn leaf_params() -> CertificateParams {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, "web-01");
        p.distinguished_name
            .push(DnType::OrganizationalUnitName, "platform");
        p.subject_alt_names = vec![
            SanType::DnsName("web-01.example.com".try_into().unwrap()),
            SanType::Rfc822Name("ops@example.com".try_into().unwrap()),
            SanType::URI("spiffe://example/web".try_into().unwrap()),
        ];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        // basicConstraints cA=false, and (with it, in rcgen) a subject key id.
        p.is_ca = IsCa::ExplicitNoCa;
        p.not_before = rcgen::date_time_ymd(2025, 1, 1);
        p.not_after = rcgen::date_time_ymd(2035, 1, 1);
        p.serial_number = Some(SerialNumber::from_slice(&[0x00, 0x3a, 0x1f, 0x07]));
        p.use_authority_key_identifier_extension = true;
        p
    }

    fn leaf_with(params: CertificateParams, ca: &Ca) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        params.signed_by(&key, &ca.issuer).unwrap().der().to_vec()
    }

    fn leaf(ca: &Ca) -> Vec<u8> {
        leaf_with(leaf_params(), ca)
    }

    #[test]
    fn direct_ca_signed_leaf_is_accepted() {
        let ca = root("Root A");
        let info = verify_chain(&ca.pem, &[leaf(&ca)], NOW).unwrap();
        assert_eq!(info.common_name, "web-01");
        assert_eq!(info.dns_sans, vec!["web-01.example.com"]);
        assert_eq!(info.email_sans, vec!["ops@example.com"]);
        assert_eq!(info.uri_sans, vec!["spiffe://example/web"]);
        assert_eq!(info.organizational_units, vec!["platform"]);
        assert_eq!(info.serial_number, "3a:1f:07");
        // rcgen's key ids: 20 bytes of a SHA-256 digest.
        assert_eq!(info.subject_key_id.len(), 20 * 3 - 1);
        assert!(info
            .subject_key_id
            .chars()
            .all(|c| c == ':' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(info.subject_key_id, info.authority_key_id);
        // The leaf's authority key id is the CA's subject key id (a CA given
        // as the client certificate is accepted as pinned).
        let ca_info = verify_chain(&ca.pem, std::slice::from_ref(&ca.der), NOW).unwrap();
        assert_eq!(ca_info.common_name, "Root A");
        assert_eq!(info.authority_key_id, ca_info.subject_key_id);
        assert_eq!(ca_info.authority_key_id, "");
        assert!(ca_info.dns_sans.is_empty());
    }

    #[test]
    fn leaf_via_presented_intermediate_is_accepted() {
        let ca = root("Root A");
        let inter = intermediate("Issuing A1", &ca, Some(0));
        let l = leaf(&inter);
        let info = verify_chain(&ca.pem, &[l.clone(), inter.der.clone()], NOW).unwrap();
        assert_eq!(info.common_name, "web-01");
        // Without the intermediate there is no path.
        assert_eq!(
            verify_chain(&ca.pem, std::slice::from_ref(&l), NOW),
            Err(CertError::Untrusted)
        );
        // Trusting the intermediate itself is enough.
        assert!(verify_chain(&inter.pem, &[l], NOW).is_ok());
    }

    #[test]
    fn two_intermediates_in_any_order_with_noise() {
        let ca = root("Root A");
        let i1 = intermediate("Policy A1", &ca, None);
        let i2 = intermediate("Issuing A2", &i1, None);
        let stranger = intermediate("Elsewhere", &root("Root X"), None);
        let l = leaf(&i2);
        let chain = vec![l, stranger.der, i1.der, i2.der];
        assert!(verify_chain(&ca.pem, &chain, NOW).is_ok());
    }

    #[test]
    fn path_length_constraint_is_enforced() {
        let ca = root("Root A");
        let i1 = intermediate("Policy A1", &ca, Some(0));
        let i2 = intermediate("Issuing A2", &i1, None);
        let l = leaf(&i2);
        assert_eq!(
            verify_chain(&ca.pem, &[l, i2.der, i1.der], NOW),
            Err(CertError::Untrusted)
        );
    }

    #[test]
    fn depth_is_bounded() {
        let ca = root("Root A");
        let mut chain_cas = vec![intermediate("I1", &ca, None)];
        for n in 2..=5 {
            let next = intermediate(&format!("I{n}"), chain_cas.last().unwrap(), None);
            chain_cas.push(next);
        }
        // Leaf + 4 intermediates: accepted. Leaf + 5: refused.
        let l4 = leaf(&chain_cas[3]);
        let mut chain = vec![l4];
        chain.extend(chain_cas[..4].iter().map(|c| c.der.clone()));
        assert!(verify_chain(&ca.pem, &chain, NOW).is_ok());
        let l5 = leaf(&chain_cas[4]);
        let mut chain = vec![l5];
        chain.extend(chain_cas.iter().map(|c| c.der.clone()));
        assert_eq!(
            verify_chain(&ca.pem, &chain, NOW),
            Err(CertError::Untrusted)
        );
    }

    #[test]
    fn other_ca_is_refused() {
        let ca = root("Root A");
        let other = root("Root B");
        assert_eq!(
            verify_chain(&other.pem, &[leaf(&ca)], NOW),
            Err(CertError::Untrusted)
        );
        // Same subject name, different key: the signature decides.
        let impostor = root("Root A");
        assert_eq!(
            verify_chain(&impostor.pem, &[leaf(&ca)], NOW),
            Err(CertError::Untrusted)
        );
        // Presenting the root as an "intermediate" does not make it trusted.
        assert_eq!(
            verify_chain(&other.pem, &[leaf(&ca), ca.der.clone()], NOW),
            Err(CertError::Untrusted)
        );
        // Several trusted CAs: any one will do.
        let both = format!("{}{}", other.pem, ca.pem);
        assert_eq!(parse_trusted(&both), Ok(2));
        assert!(verify_chain(&both, &[leaf(&ca)], NOW).is_ok());
    }

    #[test]
    fn a_non_ca_cannot_issue() {
        let ca = root("Root A");
        let key = KeyPair::generate().unwrap();
        let mut p = leaf_params();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, "not a CA");
        p.extended_key_usages = vec![];
        let cert = p.clone().signed_by(&key, &ca.issuer).unwrap();
        let fake = Issuer::new(p, key);
        let l = leaf_with(
            leaf_params(),
            &Ca {
                pem: cert.pem(),
                der: cert.der().to_vec(),
                issuer: fake,
            },
        );
        assert_eq!(
            verify_chain(&ca.pem, &[l.clone(), cert.der().to_vec()], NOW),
            Err(CertError::Untrusted)
        );
        assert_eq!(
            verify_chain(&cert.pem(), &[l], NOW),
            Err(CertError::Untrusted)
        );
    }

    #[test]
    fn expired_and_future_leaves_are_refused() {
        let ca = root("Root A");
        let mut p = leaf_params();
        p.not_after = rcgen::date_time_ymd(2029, 12, 31);
        assert_eq!(
            verify_chain(&ca.pem, &[leaf_with(p, &ca)], NOW),
            Err(CertError::OutsideValidity)
        );
        let mut p = leaf_params();
        p.not_before = rcgen::date_time_ymd(2031, 1, 1);
        assert_eq!(
            verify_chain(&ca.pem, &[leaf_with(p, &ca)], NOW),
            Err(CertError::OutsideValidity)
        );
        // An expired CA cannot vouch for a valid leaf.
        assert_eq!(
            verify_chain(&ca.pem, &[leaf(&ca)], 2_240_611_200 /* 2041 */),
            Err(CertError::OutsideValidity)
        );
        let mut p = leaf_params();
        p.not_after = rcgen::date_time_ymd(2045, 1, 1);
        assert_eq!(
            verify_chain(&ca.pem, &[leaf_with(p, &ca)], 2_240_611_200),
            Err(CertError::Untrusted)
        );
    }

    #[test]
    fn extended_key_usage_must_allow_client_auth() {
        let ca = root("Root A");
        let mut p = leaf_params();
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        assert_eq!(
            verify_chain(&ca.pem, &[leaf_with(p, &ca)], NOW),
            Err(CertError::NotForClientAuth)
        );
        let mut p = leaf_params();
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        assert!(verify_chain(&ca.pem, &[leaf_with(p, &ca)], NOW).is_ok());
        let mut p = leaf_params();
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::Any];
        assert!(verify_chain(&ca.pem, &[leaf_with(p, &ca)], NOW).is_ok());
        let mut p = leaf_params();
        p.extended_key_usages = vec![];
        assert!(verify_chain(&ca.pem, &[leaf_with(p, &ca)], NOW).is_ok());
    }

    #[test]
    fn a_pinned_leaf_is_accepted_but_not_a_lookalike() {
        let key = KeyPair::generate().unwrap();
        let mut p = leaf_params();
        p.key_identifier_method = KeyIdMethod::Sha256;
        let cert = p.self_signed(&key).unwrap();
        let info = verify_chain(&cert.pem(), &[cert.der().to_vec()], NOW).unwrap();
        assert_eq!(info.common_name, "web-01");
        let other = p.self_signed(&KeyPair::generate().unwrap()).unwrap();
        assert_eq!(
            verify_chain(&cert.pem(), &[other.der().to_vec()], NOW),
            Err(CertError::Untrusted)
        );
        // Pinning does not bypass the validity period.
        assert_eq!(
            verify_chain(&cert.pem(), &[cert.der().to_vec()], 2_240_611_200),
            Err(CertError::OutsideValidity)
        );
    }

    #[test]
    fn parse_trusted_counts_and_refuses() {
        let a = root("A");
        let b = root("B");
        assert_eq!(parse_trusted(&a.pem), Ok(1));
        assert_eq!(parse_trusted(&format!("{}\n{}", a.pem, b.pem)), Ok(2));
        assert_eq!(parse_trusted(""), Err(CertError::NoTrustedCertificates));
        assert_eq!(
            parse_trusted("hello"),
            Err(CertError::NoTrustedCertificates)
        );
        let key = KeyPair::generate().unwrap().serialize_pem();
        assert!(matches!(
            parse_trusted(&format!("{}{key}", a.pem)),
            Err(CertError::InvalidPem(_))
        ));
        let bogus = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            parse_trusted(&format!("{}{bogus}", a.pem)),
            Err(CertError::InvalidPem(_))
        ));
        let broken = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        assert!(matches!(
            parse_trusted(broken),
            Err(CertError::InvalidPem(_))
        ));
        // The error text never echoes the input.
        let e = parse_trusted(&format!("{}{key}", a.pem))
            .unwrap_err()
            .to_string();
        assert!(!e.contains("PRIVATE"), "{e}");
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        use rand::{Rng, SeedableRng};
        let ca = root("Root A");
        let good = leaf(&ca);
        assert_eq!(
            verify_chain(&ca.pem, &[], NOW),
            Err(CertError::NoClientCertificate)
        );
        assert_eq!(
            verify_chain(&ca.pem, &vec![good.clone(); MAX_PRESENTED + 1], NOW),
            Err(CertError::TooManyCertificates)
        );
        assert_eq!(
            verify_chain(&ca.pem, std::slice::from_ref(&good), i64::MAX),
            Err(CertError::InvalidTime)
        );
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for round in 0..2000 {
            let len = rng.gen_range(0..600);
            let mut bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
            if round % 2 == 0 && !good.is_empty() {
                // Mutations of a real certificate reach deeper into the parser.
                bytes = good.clone();
                for _ in 0..rng.gen_range(1..8) {
                    let i = rng.gen_range(0..bytes.len());
                    bytes[i] = rng.gen();
                }
                bytes.truncate(rng.gen_range(1..=bytes.len()));
            }
            let r = verify_chain(&ca.pem, &[bytes.clone()], NOW);
            assert!(r.is_err() || bytes == good, "round {round}");
            let _ = verify_chain(&ca.pem, &[good.clone(), bytes.clone()], NOW);
            let text = String::from_utf8_lossy(&bytes);
            assert!(parse_trusted(&text).is_err());
            let _ = verify_chain(&text, std::slice::from_ref(&good), NOW);
        }
        assert_eq!(
            verify_chain(&ca.pem, &[b"garbage".to_vec()], NOW),
            Err(CertError::InvalidClientCertificate { index: 0 })
        );
        assert_eq!(
            verify_chain(&ca.pem, &[good, b"x".to_vec()], NOW),
            Err(CertError::InvalidClientCertificate { index: 1 })
        );
    }

    #[test]
    fn glob_patterns() {
        assert!(glob_match("*", ""));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("web-*", "web-01"));
        assert!(glob_match("*.example.com", "a.b.example.com"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(glob_match("a*b*c", "abc"));
        assert!(!glob_match("a*b*c", "acb"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
        assert!(!glob_match("exact", "Exact"));
        assert!(!glob_match("*.example.com", "example.com"));
        assert!(glob_match("**a", "bba"));
        assert!(glob_match("é*", "été"));
        // Pathological patterns stay fast.
        let long = "a".repeat(5000);
        assert!(!glob_match(&format!("{}b", "*a".repeat(200)), &long));
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn constraints_with_globs() {
        let ca = root("Root A");
        let info = verify_chain(&ca.pem, &[leaf(&ca)], NOW).unwrap();
        let none: Vec<String> = vec![];
        assert!(constraints_allow(&info, &none, &none, &none, &none, &none));
        assert!(constraints_allow(
            &info,
            &s(&["web-*"]),
            &none,
            &none,
            &none,
            &none
        ));
        assert!(!constraints_allow(
            &info,
            &s(&["db-*"]),
            &none,
            &none,
            &none,
            &none
        ));
        assert!(constraints_allow(
            &info,
            &s(&["db-*", "web-01"]),
            &none,
            &none,
            &none,
            &none
        ));
        assert!(constraints_allow(
            &info,
            &none,
            &s(&["*.example.com"]),
            &none,
            &none,
            &none
        ));
        assert!(!constraints_allow(
            &info,
            &none,
            &s(&["*.example.org"]),
            &none,
            &none,
            &none
        ));
        assert!(constraints_allow(
            &info,
            &none,
            &none,
            &s(&["*@example.com"]),
            &none,
            &none
        ));
        assert!(!constraints_allow(
            &info,
            &none,
            &none,
            &s(&["root@*"]),
            &none,
            &none
        ));
        assert!(constraints_allow(
            &info,
            &none,
            &none,
            &none,
            &s(&["spiffe://example/*"]),
            &none
        ));
        assert!(!constraints_allow(
            &info,
            &none,
            &none,
            &none,
            &s(&["spiffe://other/*"]),
            &none
        ));
        assert!(constraints_allow(
            &info,
            &none,
            &none,
            &none,
            &none,
            &s(&["plat*"])
        ));
        assert!(!constraints_allow(
            &info,
            &none,
            &none,
            &none,
            &none,
            &s(&["finance"])
        ));
        // Every non-empty list must be satisfied.
        assert!(!constraints_allow(
            &info,
            &s(&["web-*"]),
            &s(&["*.example.org"]),
            &none,
            &none,
            &none
        ));
        // A SAN constraint on a leaf without SANs of that kind fails.
        let bare = LeafInfo {
            common_name: "x".into(),
            ..LeafInfo::default()
        };
        assert!(!constraints_allow(
            &bare,
            &none,
            &s(&["*"]),
            &none,
            &none,
            &none
        ));
        assert!(constraints_allow(
            &bare,
            &s(&["*"]),
            &none,
            &none,
            &none,
            &none
        ));
    }
}
