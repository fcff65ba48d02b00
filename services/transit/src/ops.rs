//! The operations over one loaded key, one item at a time: Vault's text
//! form of ciphertexts, signatures and HMACs (`vault:v<N>:<base64>`), the
//! version rules, and the per-item errors Vault reports.
//!
//! AEAD ciphertexts are `base64(nonce ‖ ciphertext ‖ tag)` with a 96-bit
//! nonce, as Vault formats them; RSA ciphertexts are RSA-OAEP (SHA-256).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::RngCore;
use zeroize::Zeroizing;

use crate::crypto::{self, HashAlg, SigOptions, NONCE_LEN, TAG_LEN};
use crate::error::TransitError;
use crate::keys::{KeyRecord, KeyType};

/// `vault:v<N>:<body>`.
pub fn format(version: u32, body: &str) -> String {
    format!("vault:v{version}:{body}")
}

/// The version and body of `vault:v<N>:<body>` (`what` names it in
/// errors). Version 0 is Vault's legacy numbering of version 1.
pub fn parse<'a>(text: &'a str, what: &str) -> Result<(u32, &'a str), TransitError> {
    let rest = text
        .strip_prefix("vault:v")
        .ok_or_else(|| TransitError::invalid(format!("invalid {what}: no prefix")))?;
    let (version, body) = rest
        .split_once(':')
        .ok_or_else(|| TransitError::invalid(format!("invalid {what}: wrong number of fields")))?;
    let version: u32 = version.parse().map_err(|_| {
        TransitError::invalid(format!(
            "invalid {what}: version number could not be decoded"
        ))
    })?;
    Ok((version.max(1), body))
}

/// Refuses an operation the key's type cannot do (the whole request).
pub fn require(record: &KeyRecord, ok: bool, what: &str) -> Result<(), TransitError> {
    if ok {
        Ok(())
    } else {
        Err(TransitError::invalid(format!(
            "key type {} does not support {what}",
            record.key_type.as_str()
        )))
    }
}

fn no_associated_data(kt: KeyType, aad: &[u8]) -> Result<(), TransitError> {
    if aad.is_empty() {
        Ok(())
    } else {
        Err(TransitError::invalid(format!(
            "associated_data is not supported for keys of type {}: only AEAD types take it",
            kt.as_str()
        )))
    }
}

/// Encrypts one plaintext with version `requested` (0 = latest).
pub fn encrypt(
    record: &KeyRecord,
    requested: u32,
    plaintext: &[u8],
    context: &[u8],
    nonce: &[u8],
    aad: &[u8],
) -> Result<(String, u32), TransitError> {
    let kt = record.key_type;
    require(record, kt.supports_encryption(), "encryption")?;
    if !nonce.is_empty() {
        return Err(TransitError::invalid(
            "provided nonce not allowed for this key",
        ));
    }
    let (version, v) = record.encryption_version(requested)?;
    let body = if kt.is_aead() {
        let key = crypto::key_for(record, v, context, kt.aead_key_len())?;
        let nonce = if record.convergent_encryption {
            crypto::convergent_nonce(v, context, aad, plaintext)?
        } else {
            let mut n = [0u8; NONCE_LEN];
            OsRng.fill_bytes(&mut n);
            n
        };
        let sealed = crypto::aead_seal(kt, &key, &nonce, plaintext, aad)?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    } else {
        no_associated_data(kt, aad)?;
        crypto::rsa_encrypt(v, plaintext)?
    };
    Ok((format(version, &STANDARD.encode(body)), version))
}

/// Decrypts one ciphertext: its plaintext and the version that made it.
pub fn decrypt(
    record: &KeyRecord,
    ciphertext: &str,
    context: &[u8],
    aad: &[u8],
) -> Result<(Zeroizing<Vec<u8>>, u32), TransitError> {
    let kt = record.key_type;
    require(record, kt.supports_encryption(), "decryption")?;
    let (version, body) = parse(ciphertext, "ciphertext")?;
    let v = record.decryption_version(version, "ciphertext")?;
    let raw = STANDARD
        .decode(body)
        .map_err(|_| TransitError::invalid("invalid ciphertext: could not decode base64"))?;
    let failed = || TransitError::invalid("cipher: message authentication failed");
    let plain = if kt.is_aead() {
        let key = crypto::key_for(record, v, context, kt.aead_key_len())?;
        if raw.len() < NONCE_LEN + TAG_LEN {
            return Err(TransitError::invalid("invalid ciphertext: too short"));
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        crypto::aead_open(kt, &key, nonce, sealed, aad).ok_or_else(failed)?
    } else {
        no_associated_data(kt, aad)?;
        crypto::rsa_decrypt(v, &raw)?.ok_or_else(failed)?
    };
    Ok((plain, version))
}

/// Data key sizes Vault accepts (bits → bytes; 0 = 256).
pub fn data_key_len(bits: u32) -> Result<usize, TransitError> {
    match bits {
        0 | 256 => Ok(32),
        128 => Ok(16),
        512 => Ok(64),
        _ => Err(TransitError::invalid(
            "invalid bits: only 128, 256 or 512 are supported",
        )),
    }
}

/// A fresh data key and its ciphertext under the latest version.
pub fn data_key(
    record: &KeyRecord,
    bits: u32,
    context: &[u8],
    nonce: &[u8],
    aad: &[u8],
) -> Result<(Zeroizing<Vec<u8>>, String, u32), TransitError> {
    let mut key = Zeroizing::new(vec![0u8; data_key_len(bits)?]);
    OsRng.fill_bytes(&mut key);
    let (ciphertext, version) = encrypt(record, 0, &key, context, nonce, aad)?;
    Ok((key, ciphertext, version))
}

fn hmac_key(record: &KeyRecord, v: &crate::keys::KeyVersion) -> Zeroizing<Vec<u8>> {
    // `hmac` keys are their own HMAC key; every other type has one per
    // version beside its key.
    if record.key_type == KeyType::Hmac {
        Zeroizing::new(v.key.clone())
    } else {
        Zeroizing::new(v.hmac_key.clone())
    }
}

/// The HMAC of `input` with version `requested` (0 = latest).
pub fn hmac(
    record: &KeyRecord,
    requested: u32,
    alg: HashAlg,
    input: &[u8],
) -> Result<(String, u32), TransitError> {
    let (version, v) = record.encryption_version(requested)?;
    let mac = alg.hmac(&hmac_key(record, v), input)?;
    Ok((format(version, &STANDARD.encode(mac)), version))
}

/// Whether `text` is the HMAC of `input` (compared in constant time).
pub fn verify_hmac(
    record: &KeyRecord,
    alg: HashAlg,
    input: &[u8],
    text: &str,
) -> Result<bool, TransitError> {
    let (version, body) = parse(text, "HMAC")?;
    let v = record.decryption_version(version, "HMAC")?;
    let given = STANDARD
        .decode(body)
        .map_err(|_| TransitError::invalid("invalid HMAC: could not decode base64"))?;
    let mac = alg.hmac(&hmac_key(record, v), input)?;
    Ok(crypto::macs_equal(&mac, &given))
}

/// Signs `input` with version `requested` (0 = latest): the signature
/// text, the version, and the public key of a derived ed25519 key.
pub fn sign(
    record: &KeyRecord,
    requested: u32,
    o: &SigOptions,
    input: &[u8],
    context: &[u8],
) -> Result<(String, u32, String), TransitError> {
    require(record, record.key_type.supports_signing(), "signing")?;
    let (version, v) = record.encryption_version(requested)?;
    let (sig, public) = crypto::sign(record, v, o, input, context)?;
    Ok((format(version, &o.encode(&sig)), version, public))
}

/// Whether `text` is a valid signature of `input`.
pub fn verify_signature(
    record: &KeyRecord,
    o: &SigOptions,
    input: &[u8],
    context: &[u8],
    text: &str,
) -> Result<bool, TransitError> {
    require(record, record.key_type.supports_signing(), "verification")?;
    let (version, body) = parse(text, "signature")?;
    let v = record.decryption_version(version, "signature")?;
    let raw = o
        .decode(body)
        .ok_or_else(|| TransitError::invalid("invalid signature: could not decode base64"))?;
    crypto::verify(record, v, o, input, context, &raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_form() {
        assert_eq!(format(3, "QUJD"), "vault:v3:QUJD");
        assert_eq!(parse("vault:v3:QUJD", "x").unwrap(), (3, "QUJD"));
        assert_eq!(parse("vault:v0:QUJD", "x").unwrap(), (1, "QUJD"));
        assert_eq!(parse("vault:v12:a:b", "x").unwrap(), (12, "a:b"));
        for (bad, why) in [
            ("QUJD", "no prefix"),
            ("vault:3:QUJD", "no prefix"),
            ("vault:v3", "wrong number of fields"),
            ("vault:vX:QUJD", "version number could not be decoded"),
            ("vault:v-1:QUJD", "version number could not be decoded"),
        ] {
            let e = parse(bad, "ciphertext").unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn data_key_sizes() {
        assert_eq!(data_key_len(0).unwrap(), 32);
        assert_eq!(data_key_len(128).unwrap(), 16);
        assert_eq!(data_key_len(512).unwrap(), 64);
        assert!(data_key_len(64).is_err());
    }
}
