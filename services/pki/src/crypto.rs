//! Key pairs, serial numbers, PEM and the few DER pieces rcgen does not
//! write (Authority Information Access).
//!
//! Private keys are PKCS#8; their PEM text is held in [`Zeroizing`] buffers
//! and never formatted into errors or logs.

use rand::RngCore;
use rcgen::{
    KeyPair, SignatureAlgorithm, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519,
    PKCS_RSA_SHA256,
};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::PkiError;

/// A key type with its size, checked against Vault's accepted values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "bits", rename_all = "lowercase")]
pub enum KeySpec {
    Rsa(u32),
    Ec(u32),
    Ed25519,
}

impl KeySpec {
    /// `key_type` / `key_bits` as Vault takes them (`""` = rsa, bits 0 =
    /// 2048 for rsa and 256 for ec). Anything else is refused.
    pub fn parse(key_type: &str, key_bits: i32) -> Result<KeySpec, PkiError> {
        match (key_type, key_bits) {
            ("rsa" | "", 0 | 2048) => Ok(KeySpec::Rsa(2048)),
            ("rsa" | "", 3072) => Ok(KeySpec::Rsa(3072)),
            ("rsa" | "", 4096) => Ok(KeySpec::Rsa(4096)),
            ("ec", 0 | 256) => Ok(KeySpec::Ec(256)),
            ("ec", 384) => Ok(KeySpec::Ec(384)),
            ("ed25519", _) => Ok(KeySpec::Ed25519),
            ("rsa" | "" | "ec", bits) => Err(PkiError::invalid(format!(
                "unsupported bit length for {} key: {bits}",
                if key_type == "ec" { "EC" } else { "RSA" }
            ))),
            (other, _) => Err(PkiError::invalid(format!(
                "unrecognized key type {other:?}: use rsa, ec or ed25519"
            ))),
        }
    }

    /// Vault's `private_key_type` / `key_type` name.
    pub fn name(self) -> &'static str {
        match self {
            KeySpec::Rsa(_) => "rsa",
            KeySpec::Ec(_) => "ec",
            KeySpec::Ed25519 => "ed25519",
        }
    }

    fn algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            KeySpec::Rsa(_) => &PKCS_RSA_SHA256,
            KeySpec::Ec(384) => &PKCS_ECDSA_P384_SHA384,
            KeySpec::Ec(_) => &PKCS_ECDSA_P256_SHA256,
            KeySpec::Ed25519 => &PKCS_ED25519,
        }
    }

    /// The spec of a parsed key pair (for imported keys).
    pub fn of(key: &KeyPair) -> Option<KeySpec> {
        let alg = key.algorithm();
        if alg == &PKCS_ED25519 {
            Some(KeySpec::Ed25519)
        } else if alg == &PKCS_ECDSA_P256_SHA256 {
            Some(KeySpec::Ec(256))
        } else if alg == &PKCS_ECDSA_P384_SHA384 {
            Some(KeySpec::Ec(384))
        } else if alg == &PKCS_RSA_SHA256 {
            Some(KeySpec::Rsa(0))
        } else {
            None
        }
    }
}

/// A private key as stored: its spec and PKCS#8 PEM, wiped on drop.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct StoredKey {
    #[zeroize(skip)]
    pub spec: KeySpec,
    pub pkcs8_pem: String,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

impl StoredKey {
    /// The key pair, ready to sign.
    pub fn key_pair(&self) -> Result<KeyPair, PkiError> {
        KeyPair::from_pkcs8_pem_and_sign_algo(&self.pkcs8_pem, self.spec.algorithm())
            .map_err(|_| PkiError::Crypto("stored key does not load".into()))
    }
}

/// A fresh key pair of `spec` (RSA through the `rsa` crate: ring only signs).
pub fn generate(spec: KeySpec) -> Result<(KeyPair, StoredKey), PkiError> {
    let crypto = |e: rcgen::Error| PkiError::Crypto(e.to_string());
    let key = match spec {
        KeySpec::Rsa(bits) => {
            use rsa::pkcs8::EncodePrivateKey;
            let bits = usize::try_from(bits).map_err(|_| PkiError::invalid("bad key_bits"))?;
            let private = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, bits)
                .map_err(|e| PkiError::Crypto(e.to_string()))?;
            let der = private
                .to_pkcs8_der()
                .map_err(|e| PkiError::Crypto(e.to_string()))?;
            let pem = Zeroizing::new(to_pem("PRIVATE KEY", der.as_bytes()));
            KeyPair::from_pkcs8_pem_and_sign_algo(&pem, spec.algorithm()).map_err(crypto)?
        }
        _ => KeyPair::generate_for(spec.algorithm()).map_err(crypto)?,
    };
    let stored = StoredKey {
        spec,
        pkcs8_pem: key.serialize_pem(),
    };
    Ok((key, stored))
}

/// Parses a PEM private key (PKCS#8) of any supported type.
pub fn parse_private_key(pem: &str) -> Result<(KeyPair, StoredKey), PkiError> {
    let key = KeyPair::from_pem(pem).map_err(|_| {
        PkiError::invalid("the private key could not be parsed (PKCS#8 PEM expected)")
    })?;
    let spec =
        KeySpec::of(&key).ok_or_else(|| PkiError::invalid("unsupported private key algorithm"))?;
    let stored = StoredKey {
        spec,
        pkcs8_pem: key.serialize_pem(),
    };
    Ok((key, stored))
}

/// A random positive 20-byte serial number.
pub fn random_serial() -> Vec<u8> {
    let mut bytes = vec![0u8; 20];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes[0] &= 0x7f;
    if bytes[0] == 0 {
        bytes[0] = 0x01;
    }
    bytes
}

/// Vault's colon hex (`17:67:16:b0`), lowercase.
pub fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A serial as the caller wrote it (colon or hyphen hex, any case) in the
/// storage form (`17-67-16-b0`).
pub fn serial_key(serial: &str) -> Result<String, PkiError> {
    let s = serial.trim().to_ascii_lowercase().replace(':', "-");
    let ok = !s.is_empty()
        && s.split('-')
            .all(|p| p.len() == 2 && p.bytes().all(|c| c.is_ascii_hexdigit()));
    if !ok {
        return Err(PkiError::invalid(format!(
            "invalid serial number {serial:?}"
        )));
    }
    Ok(s)
}

/// A stored serial key back in colon form.
pub fn key_to_colon(key: &str) -> String {
    key.replace('-', ":")
}

/// Bytes of a serial in storage form.
pub fn serial_bytes(key: &str) -> Vec<u8> {
    key.split('-')
        .filter_map(|p| u8::from_str_radix(p, 16).ok())
        .collect()
}

/// PEM text of `der` with `label`.
pub fn to_pem(label: &str, der: &[u8]) -> String {
    let mut out = format!("-----BEGIN {label}-----\n");
    let b64 = base64_encode(der);
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

/// Every PEM block of `text` with its label, decoded; `None` if any block
/// is malformed or there is none.
pub fn pem_blocks(text: &str) -> Option<Vec<(String, Zeroizing<Vec<u8>>)>> {
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start..];
        let (pem, used) =
            x509_parser::pem::Pem::read(std::io::Cursor::new(after.as_bytes())).ok()?;
        blocks.push((pem.label.clone(), Zeroizing::new(pem.contents.clone())));
        let mut pem = pem;
        pem.contents.zeroize();
        rest = after.get(used..)?;
    }
    (!blocks.is_empty()).then_some(blocks)
}

/// DER of one definite-length TLV.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// The Authority Information Access extension (RFC 5280 §4.2.2.1): caIssuers
/// for `issuing`, OCSP for `ocsp`. `None` when both are empty.
pub fn authority_info_access(
    issuing: &[String],
    ocsp: &[String],
) -> Option<rcgen::CustomExtension> {
    // id-ad-ocsp 1.3.6.1.5.5.7.48.1, id-ad-caIssuers 1.3.6.1.5.5.7.48.2
    const OCSP: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01];
    const CA_ISSUERS: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x02];
    let mut descriptions = Vec::new();
    for (oid, uris) in [(OCSP, ocsp), (CA_ISSUERS, issuing)] {
        for uri in uris {
            let mut ad = tlv(0x06, oid);
            ad.extend(tlv(0x86, uri.as_bytes()));
            descriptions.extend(tlv(0x30, &ad));
        }
    }
    if descriptions.is_empty() {
        return None;
    }
    Some(rcgen::CustomExtension::from_oid_content(
        &[1, 3, 6, 1, 5, 5, 7, 1, 1],
        tlv(0x30, &descriptions),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_specs() {
        assert_eq!(KeySpec::parse("rsa", 0).ok(), Some(KeySpec::Rsa(2048)));
        assert_eq!(KeySpec::parse("", 4096).ok(), Some(KeySpec::Rsa(4096)));
        assert_eq!(KeySpec::parse("ec", 0).ok(), Some(KeySpec::Ec(256)));
        assert_eq!(KeySpec::parse("ec", 384).ok(), Some(KeySpec::Ec(384)));
        assert_eq!(KeySpec::parse("ed25519", 0).ok(), Some(KeySpec::Ed25519));
        for (t, b) in [
            ("rsa", 1024),
            ("ec", 521),
            ("ec", 2048),
            ("dsa", 0),
            ("RSA", 0),
        ] {
            assert!(
                matches!(KeySpec::parse(t, b), Err(PkiError::Invalid(_))),
                "{t} {b}"
            );
        }
    }

    #[test]
    fn serials() {
        let s = random_serial();
        assert_eq!(s.len(), 20);
        assert!(s[0] & 0x80 == 0 && s[0] != 0);
        let colon = colon_hex(&[0x17, 0x67, 0xab]);
        assert_eq!(colon, "17:67:ab");
        assert_eq!(serial_key("17:67:AB").ok().as_deref(), Some("17-67-ab"));
        assert_eq!(serial_key("17-67-ab").ok().as_deref(), Some("17-67-ab"));
        assert_eq!(serial_bytes("17-67-ab"), vec![0x17, 0x67, 0xab]);
        for bad in ["", "xyz", "1:2", "17::67", "../x"] {
            assert!(serial_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pem_round_trip() {
        let der: Vec<u8> = (0..=200u8).collect();
        let pem = to_pem("CERTIFICATE", &der);
        let blocks = pem_blocks(&pem).expect("parses");
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].0, "CERTIFICATE");
        assert_eq!(&blocks[0].1[..], &der[..]);
        assert!(pem_blocks("garbage").is_none());
    }

    #[test]
    fn stored_key_debug_hides_the_key() {
        let (_, stored) = generate(KeySpec::Ec(256)).expect("key");
        let shown = format!("{stored:?}");
        assert!(!shown.contains("PRIVATE"));
        assert!(stored.key_pair().is_ok());
    }
}

/// How a private key is answered (Vault's `private_key_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFormat {
    /// Vault's default (`""` / `der` / `pem`): PKCS#1 `RSA PRIVATE KEY`,
    /// SEC1 `EC PRIVATE KEY`, PKCS#8 for ed25519.
    Legacy,
    /// `pkcs8`: PKCS#8 `PRIVATE KEY` for every type.
    Pkcs8,
}

impl KeyFormat {
    pub fn parse(value: &str) -> Result<KeyFormat, PkiError> {
        match value {
            "" | "der" | "pem" => Ok(KeyFormat::Legacy),
            "pkcs8" => Ok(KeyFormat::Pkcs8),
            other => Err(PkiError::invalid(format!(
                "invalid private_key_format {other:?}: use der or pkcs8"
            ))),
        }
    }
}

impl StoredKey {
    /// The key as PEM in `format`.
    pub fn export(&self, format: KeyFormat) -> Result<Zeroizing<String>, PkiError> {
        let crypto = || PkiError::Crypto("key conversion failed".into());
        match (format, self.spec) {
            (KeyFormat::Pkcs8, _) | (KeyFormat::Legacy, KeySpec::Ed25519) => {
                Ok(Zeroizing::new(self.pkcs8_pem.clone()))
            }
            (KeyFormat::Legacy, KeySpec::Rsa(_)) => {
                use rsa::pkcs1::EncodeRsaPrivateKey;
                use rsa::pkcs8::DecodePrivateKey;
                let key =
                    rsa::RsaPrivateKey::from_pkcs8_pem(&self.pkcs8_pem).map_err(|_| crypto())?;
                let der = key.to_pkcs1_der().map_err(|_| crypto())?;
                Ok(Zeroizing::new(to_pem("RSA PRIVATE KEY", der.as_bytes())))
            }
            (KeyFormat::Legacy, KeySpec::Ec(_)) => {
                let blocks = pem_blocks(&self.pkcs8_pem).ok_or_else(crypto)?;
                let (_, pkcs8) = blocks.first().ok_or_else(crypto)?;
                let sec1 = pkcs8_ec_to_sec1(pkcs8).ok_or_else(crypto)?;
                Ok(Zeroizing::new(to_pem("EC PRIVATE KEY", &sec1)))
            }
        }
    }
}

/// One DER TLV split off its input: (tag, whole TLV, content, rest).
type Tlv<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

/// The DER TLV at the start of `input`.
fn read_tlv(input: &[u8]) -> Option<Tlv<'_>> {
    let tag = *input.first()?;
    let first = *input.get(1)?;
    let (len, header) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for b in input.get(2..2 + n)? {
            len = (len << 8) | usize::from(*b);
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    let whole = input.get(..end)?;
    Some((tag, whole, whole.get(header..)?, input.get(end..)?))
}

/// The SEC1 `ECPrivateKey` inside an EC PKCS#8 key, with the curve's
/// `[0] parameters` added when missing (as OpenSSL writes it).
fn pkcs8_ec_to_sec1(pkcs8: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let (0x30, _, info, _) = read_tlv(pkcs8)? else {
        return None;
    };
    let (0x02, _, _, rest) = read_tlv(info)? else {
        return None;
    };
    let (0x30, _, algorithm, rest) = read_tlv(rest)? else {
        return None;
    };
    let (0x04, _, ec_private_key, _) = read_tlv(rest)? else {
        return None;
    };
    let (0x06, _, _, params) = read_tlv(algorithm)? else {
        return None;
    };
    let (0x06, curve_oid, _, _) = read_tlv(params)? else {
        return None;
    };
    let (0x30, _, mut fields, _) = read_tlv(ec_private_key)? else {
        return None;
    };
    let mut out = Zeroizing::new(Vec::new());
    let mut has_params = false;
    let mut index = 0;
    while !fields.is_empty() {
        let (tag, whole, _, rest) = read_tlv(fields)?;
        if tag == 0xa0 {
            has_params = true;
        }
        if tag == 0xa1 && !has_params {
            out.extend(tlv(0xa0, curve_oid));
            has_params = true;
        }
        out.extend_from_slice(whole);
        index += 1;
        if index == 2 && rest.is_empty() && !has_params {
            out.extend(tlv(0xa0, curve_oid));
            has_params = true;
        }
        fields = rest;
    }
    Some(Zeroizing::new(tlv(0x30, &out)))
}

/// A PKCS#1 (`RSA PRIVATE KEY`) or SEC1 (`EC PRIVATE KEY`) key in PKCS#8,
/// for imports.
pub fn legacy_to_pkcs8(label: &str, der: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    match label {
        "RSA PRIVATE KEY" => {
            use rsa::pkcs1::DecodeRsaPrivateKey;
            use rsa::pkcs8::EncodePrivateKey;
            let key = rsa::RsaPrivateKey::from_pkcs1_der(der).ok()?;
            let doc = key.to_pkcs8_der().ok()?;
            Some(Zeroizing::new(doc.as_bytes().to_vec()))
        }
        "EC PRIVATE KEY" => {
            // id-ecPublicKey 1.2.840.10045.2.1
            const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
            let (0x30, _, mut fields, _) = read_tlv(der)? else {
                return None;
            };
            let mut curve = None;
            let mut inner = Zeroizing::new(Vec::new());
            while !fields.is_empty() {
                let (tag, whole, content, rest) = read_tlv(fields)?;
                if tag == 0xa0 {
                    curve = Some(content.to_vec());
                } else {
                    inner.extend_from_slice(whole);
                }
                fields = rest;
            }
            let curve = curve?;
            let mut algorithm = tlv(0x06, EC_PUBLIC_KEY);
            algorithm.extend_from_slice(&curve);
            let mut info = Zeroizing::new(tlv(0x02, &[0]));
            info.extend(tlv(0x30, &algorithm));
            info.extend(tlv(0x04, &tlv(0x30, &inner)));
            Some(Zeroizing::new(tlv(0x30, &info)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod format_tests {
    use super::*;

    fn sec1_public_key(sec1: &[u8]) -> Option<Vec<u8>> {
        let (_, _, mut fields, _) = read_tlv(sec1)?;
        let mut saw_params = false;
        while !fields.is_empty() {
            let (tag, _, content, rest) = read_tlv(fields)?;
            if tag == 0xa0 {
                saw_params = true;
            }
            if tag == 0xa1 {
                let (0x03, _, bits, _) = read_tlv(content)? else {
                    return None;
                };
                return saw_params.then(|| bits[1..].to_vec());
            }
            fields = rest;
        }
        None
    }

    #[test]
    fn legacy_formats() {
        for spec in [KeySpec::Ec(256), KeySpec::Ec(384)] {
            let (pair, stored) = generate(spec).expect("key");
            let pem = stored.export(KeyFormat::Legacy).expect("sec1");
            assert!(pem.starts_with("-----BEGIN EC PRIVATE KEY-----"));
            let blocks = pem_blocks(&pem).expect("pem");
            let public = sec1_public_key(&blocks[0].1).expect("sec1 with params");
            assert_eq!(public, pair.public_key_raw());
            let pkcs8 = stored.export(KeyFormat::Pkcs8).expect("pkcs8");
            assert!(pkcs8.starts_with("-----BEGIN PRIVATE KEY-----"));
        }
        let (_, ed) = generate(KeySpec::Ed25519).expect("key");
        assert!(ed
            .export(KeyFormat::Legacy)
            .expect("pkcs8")
            .starts_with("-----BEGIN PRIVATE KEY-----"));
        let (pair, rsa_key) = generate(KeySpec::Rsa(2048)).expect("key");
        let pem = rsa_key.export(KeyFormat::Legacy).expect("pkcs1");
        use rsa::pkcs1::{DecodeRsaPrivateKey, EncodeRsaPublicKey};
        let parsed = rsa::RsaPrivateKey::from_pkcs1_pem(&pem).expect("pkcs1 parses");
        let public = parsed.to_public_key().to_pkcs1_der().expect("public");
        assert_eq!(public.as_bytes(), pair.public_key_raw());
        assert!(KeyFormat::parse("pkcs1").is_err());
        // And back, for imports.
        for (pair, stored) in [generate(KeySpec::Ec(384)).expect("key"), (pair, rsa_key)] {
            let pem = stored.export(KeyFormat::Legacy).expect("legacy");
            let blocks = pem_blocks(&pem).expect("pem");
            let der = legacy_to_pkcs8(&blocks[0].0, &blocks[0].1).expect("pkcs8");
            let (back, _) = parse_private_key(&to_pem("PRIVATE KEY", &der)).expect("loads");
            assert_eq!(back.public_key_raw(), pair.public_key_raw());
        }
        assert!(legacy_to_pkcs8("EC PRIVATE KEY", b"junk").is_none());
    }
}
