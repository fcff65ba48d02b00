//! The primitives behind the transit operations, each from a maintained
//! RustCrypto crate: AES-GCM and ChaCha20-Poly1305 (AEAD), HKDF-SHA256
//! (per-context keys), HMAC and the SHA-1/SHA-2/SHA-3 digests, Ed25519,
//! ECDSA over P-256/P-384 (RFC 6979), RSA (OAEP-SHA256, PSS, PKCS#1 v1.5).
//!
//! Derived and temporary secrets live in [`Zeroizing`] buffers; the cipher
//! and signing-key types zeroize themselves on drop. Secret comparisons
//! (HMAC verification) are constant-time.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::TransitError;
use crate::keys::{KeyRecord, KeyType, KeyVersion};

/// The nonce of every AEAD type (96 bits).
pub const NONCE_LEN: usize = 12;
/// The tag of every AEAD type.
pub const TAG_LEN: usize = 16;

fn crypto(what: &str) -> TransitError {
    TransitError::Crypto(what.to_string())
}

// === digests ===

/// A hash algorithm as Vault names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlg {
    Sha1,
    Sha2_224,
    Sha2_256,
    Sha2_384,
    Sha2_512,
    Sha3_224,
    Sha3_256,
    Sha3_384,
    Sha3_512,
    /// Signing only: RSA PKCS#1 v1.5 over a prehashed input, no DigestInfo.
    None,
}

/// Runs `$body` with `$d` bound to the digest type of `$alg` (not `None`).
macro_rules! with_digest {
    ($alg:expr, $d:ident => $body:expr, none => $none:expr) => {
        match $alg {
            HashAlg::Sha1 => {
                type $d = sha1::Sha1;
                $body
            }
            HashAlg::Sha2_224 => {
                type $d = sha2::Sha224;
                $body
            }
            HashAlg::Sha2_256 => {
                type $d = sha2::Sha256;
                $body
            }
            HashAlg::Sha2_384 => {
                type $d = sha2::Sha384;
                $body
            }
            HashAlg::Sha2_512 => {
                type $d = sha2::Sha512;
                $body
            }
            HashAlg::Sha3_224 => {
                type $d = sha3::Sha3_224;
                $body
            }
            HashAlg::Sha3_256 => {
                type $d = sha3::Sha3_256;
                $body
            }
            HashAlg::Sha3_384 => {
                type $d = sha3::Sha3_384;
                $body
            }
            HashAlg::Sha3_512 => {
                type $d = sha3::Sha3_512;
                $body
            }
            HashAlg::None => $none,
        }
    };
}

impl HashAlg {
    const NAMES: [(&'static str, HashAlg); 10] = [
        ("sha1", HashAlg::Sha1),
        ("sha2-224", HashAlg::Sha2_224),
        ("sha2-256", HashAlg::Sha2_256),
        ("sha2-384", HashAlg::Sha2_384),
        ("sha2-512", HashAlg::Sha2_512),
        ("sha3-224", HashAlg::Sha3_224),
        ("sha3-256", HashAlg::Sha3_256),
        ("sha3-384", HashAlg::Sha3_384),
        ("sha3-512", HashAlg::Sha3_512),
        ("none", HashAlg::None),
    ];

    /// Any name (`""` = sha2-256).
    fn parse_any(s: &str) -> Option<HashAlg> {
        if s.is_empty() {
            return Some(HashAlg::Sha2_256);
        }
        HashAlg::NAMES
            .iter()
            .find(|(n, _)| *n == s)
            .map(|(_, a)| *a)
    }

    /// The algorithms of `hash` and `hmac`: SHA-2 and SHA-3.
    pub fn parse_digest(s: &str) -> Result<HashAlg, TransitError> {
        match HashAlg::parse_any(s) {
            Some(HashAlg::Sha1 | HashAlg::None) | None => Err(TransitError::invalid(format!(
                "unsupported hash algorithm {s:?}"
            ))),
            Some(a) => Ok(a),
        }
    }

    /// The algorithms of `sign` and `verify`: also sha1 and none.
    pub fn parse_signing(s: &str) -> Result<HashAlg, TransitError> {
        HashAlg::parse_any(s)
            .ok_or_else(|| TransitError::invalid(format!("unsupported hash algorithm {s:?}")))
    }

    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        with_digest!(self, D => D::digest(data).to_vec(), none => data.to_vec())
    }

    pub fn output_len(self) -> usize {
        with_digest!(self, D => <D as Digest>::output_size(), none => 0)
    }

    /// HMAC of `data` under `key`.
    pub fn hmac(self, key: &[u8], data: &[u8]) -> Result<Vec<u8>, TransitError> {
        with_digest!(self, D => {
            let mut m = <Hmac<D> as Mac>::new_from_slice(key).map_err(|_| crypto("hmac key"))?;
            m.update(data);
            Ok(m.finalize().into_bytes().to_vec())
        }, none => Err(TransitError::invalid("an HMAC needs a hash algorithm")))
    }
}

// === derivation ===

/// HKDF-SHA256 of `ikm` with `context` as info (Vault's `hkdf_sha256` KDF).
pub fn derive(ikm: &[u8], context: &[u8], len: usize) -> Result<Zeroizing<Vec<u8>>, TransitError> {
    let mut out = Zeroizing::new(vec![0u8; len]);
    Hkdf::<Sha256>::new(None, ikm)
        .expand(context, &mut out)
        .map_err(|_| crypto("hkdf length"))?;
    Ok(out)
}

pub(crate) fn missing_context() -> TransitError {
    TransitError::invalid(
        "missing 'context' for key derivation; the key was created using a derived key, which means additional, per-request information must be included in order to perform operations with the key",
    )
}

/// The key of `v` for `context` (derived keys need one; others ignore it).
pub fn key_for(
    record: &KeyRecord,
    v: &KeyVersion,
    context: &[u8],
    len: usize,
) -> Result<Zeroizing<Vec<u8>>, TransitError> {
    if record.derived {
        if context.is_empty() {
            return Err(missing_context());
        }
        derive(&v.key, context, len)
    } else {
        Ok(Zeroizing::new(v.key.clone()))
    }
}

/// Convergent encryption's nonce: an HMAC of the associated data and the
/// plaintext under a key derived for the context from the version's HMAC
/// key, so equal (plaintext, context, associated data) give equal nonces
/// and a different associated data never reuses a nonce.
pub fn convergent_nonce(
    v: &KeyVersion,
    context: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<[u8; NONCE_LEN], TransitError> {
    let key = derive(&v.hmac_key, context, 32)?;
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&key).map_err(|_| crypto("hmac key"))?;
    m.update(&(aad.len() as u64).to_be_bytes());
    m.update(aad);
    m.update(plaintext);
    let sum = m.finalize().into_bytes();
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&sum[..NONCE_LEN]);
    Ok(nonce)
}

// === AEAD ===

/// `ciphertext ‖ tag` of `plaintext` under `key` (an AEAD type's key).
pub fn aead_seal(
    kt: KeyType,
    key: &[u8],
    nonce: &[u8; NONCE_LEN],
    plaintext: &[u8],
    aad: &[u8],
) -> Result<Vec<u8>, TransitError> {
    let payload = Payload {
        msg: plaintext,
        aad,
    };
    let bad_key = || crypto("aead key length");
    let sealed = match kt {
        KeyType::Aes128Gcm96 => aes_gcm::Aes128Gcm::new_from_slice(key)
            .map_err(|_| bad_key())?
            .encrypt(nonce.into(), payload),
        KeyType::Aes256Gcm96 => aes_gcm::Aes256Gcm::new_from_slice(key)
            .map_err(|_| bad_key())?
            .encrypt(nonce.into(), payload),
        KeyType::ChaCha20Poly1305 => chacha20poly1305::ChaCha20Poly1305::new_from_slice(key)
            .map_err(|_| bad_key())?
            .encrypt(nonce.into(), payload),
        _ => return Err(crypto("not an AEAD key type")),
    };
    sealed.map_err(|_| crypto("aead encryption"))
}

/// The plaintext of `ciphertext ‖ tag`; `None` when it does not
/// authenticate (wrong key, context, associated data, or tampered).
pub fn aead_open(
    kt: KeyType,
    key: &[u8],
    nonce: &[u8],
    sealed: &[u8],
    aad: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    if nonce.len() != NONCE_LEN {
        return None;
    }
    let payload = Payload { msg: sealed, aad };
    let nonce = aes_gcm::Nonce::from_slice(nonce);
    let opened = match kt {
        KeyType::Aes128Gcm96 => aes_gcm::Aes128Gcm::new_from_slice(key)
            .ok()?
            .decrypt(nonce, payload),
        KeyType::Aes256Gcm96 => aes_gcm::Aes256Gcm::new_from_slice(key)
            .ok()?
            .decrypt(nonce, payload),
        KeyType::ChaCha20Poly1305 => chacha20poly1305::ChaCha20Poly1305::new_from_slice(key)
            .ok()?
            .decrypt(nonce, payload),
        _ => return None,
    };
    opened.ok().map(Zeroizing::new)
}

// === RSA ===

fn rsa_private(v: &KeyVersion) -> Result<rsa::RsaPrivateKey, TransitError> {
    use rsa::pkcs8::DecodePrivateKey;
    rsa::RsaPrivateKey::from_pkcs8_der(&v.key).map_err(|_| crypto("stored rsa key"))
}

fn rsa_public(v: &KeyVersion) -> Result<rsa::RsaPublicKey, TransitError> {
    use rsa::pkcs8::DecodePublicKey;
    rsa::RsaPublicKey::from_public_key_der(&v.public_key).map_err(|_| crypto("stored rsa key"))
}

/// RSA-OAEP (SHA-256, as Vault) encryption.
pub fn rsa_encrypt(v: &KeyVersion, plaintext: &[u8]) -> Result<Vec<u8>, TransitError> {
    rsa_public(v)?
        .encrypt(&mut OsRng, rsa::Oaep::new::<Sha256>(), plaintext)
        .map_err(|e| match e {
            rsa::Error::MessageTooLong => {
                TransitError::invalid("plaintext is too long for this RSA key")
            }
            _ => crypto("rsa encryption"),
        })
}

/// RSA-OAEP decryption (blinded); `None` when the ciphertext is not ours.
pub fn rsa_decrypt(
    v: &KeyVersion,
    ciphertext: &[u8],
) -> Result<Option<Zeroizing<Vec<u8>>>, TransitError> {
    let key = rsa_private(v)?;
    Ok(key
        .decrypt_blinded(&mut OsRng, rsa::Oaep::new::<Sha256>(), ciphertext)
        .ok()
        .map(Zeroizing::new))
}

// === signatures ===

/// How to sign or verify (Vault's parameters, parsed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SigOptions {
    pub hash: HashAlg,
    pub prehashed: bool,
    /// RSA: PSS (else PKCS#1 v1.5).
    pub pss: bool,
    /// ECDSA: JWS (r ‖ s, URL-safe base64) instead of ASN.1 DER.
    pub jws: bool,
    pub salt: SaltLength,
}

/// RSA-PSS salt length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaltLength {
    /// Signing: the largest the key allows (Go's `PSSSaltLengthAuto`);
    /// verifying: that, or the digest's length.
    Auto,
    /// The digest's length.
    Hash,
    Bytes(usize),
}

impl SigOptions {
    pub fn parse(
        o: &bulwark_proto::transit::v1::SignatureOptions,
    ) -> Result<SigOptions, TransitError> {
        let hash = HashAlg::parse_signing(&o.hash_algorithm)?;
        let pss = match o.signature_algorithm.as_str() {
            "" | "pss" => true,
            "pkcs1v15" => false,
            other => {
                return Err(TransitError::invalid(format!(
                    "unsupported signature algorithm {other:?}: use pss or pkcs1v15"
                )))
            }
        };
        let jws = match o.marshaling_algorithm.as_str() {
            "" | "asn1" => false,
            "jws" => true,
            other => {
                return Err(TransitError::invalid(format!(
                    "unsupported marshaling algorithm {other:?}: use asn1 or jws"
                )))
            }
        };
        let salt = match o.salt_length.as_str() {
            "" | "auto" => SaltLength::Auto,
            "hash" => SaltLength::Hash,
            n => SaltLength::Bytes(n.parse().map_err(|_| {
                TransitError::invalid(format!(
                    "invalid salt_length {n:?}: use auto, hash or a number of bytes"
                ))
            })?),
        };
        Ok(SigOptions {
            hash,
            prehashed: o.prehashed,
            pss,
            jws,
            salt,
        })
    }

    /// The text encoding of the signature bytes.
    pub fn encode(&self, sig: &[u8]) -> String {
        if self.jws {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig)
        } else {
            STANDARD.encode(sig)
        }
    }

    pub fn decode(&self, text: &str) -> Option<Vec<u8>> {
        if self.jws {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(text)
                .ok()
        } else {
            STANDARD.decode(text).ok()
        }
    }

    /// What is signed for ECDSA and RSA: the digest of `input`, or `input`
    /// itself when prehashed.
    fn message_digest(&self, input: &[u8]) -> Vec<u8> {
        if self.prehashed {
            input.to_vec()
        } else {
            self.hash.digest(input)
        }
    }
}

/// The ed25519 signing key of `v` (derived for `context` on derived keys).
fn ed25519_key(
    record: &KeyRecord,
    v: &KeyVersion,
    context: &[u8],
) -> Result<ed25519_dalek::SigningKey, TransitError> {
    let seed = key_for(record, v, context, 32)?;
    let seed: &[u8; 32] = seed
        .as_slice()
        .try_into()
        .map_err(|_| crypto("stored ed25519 key"))?;
    Ok(ed25519_dalek::SigningKey::from_bytes(seed))
}

macro_rules! ecdsa_curve {
    ($curve:ident, $sign:ident, $verify:ident) => {
        fn $sign(scalar: &[u8], digest: &[u8], jws: bool) -> Result<Vec<u8>, TransitError> {
            use $curve::ecdsa::signature::hazmat::PrehashSigner;
            let sk = $curve::ecdsa::SigningKey::from_slice(scalar)
                .map_err(|_| crypto("stored ecdsa key"))?;
            let sig: $curve::ecdsa::Signature = sk
                .sign_prehash(digest)
                .map_err(|_| TransitError::invalid("invalid input for ECDSA signing"))?;
            Ok(if jws {
                sig.to_bytes().to_vec()
            } else {
                sig.to_der().as_bytes().to_vec()
            })
        }

        fn $verify(
            public: &[u8],
            digest: &[u8],
            sig: &[u8],
            jws: bool,
        ) -> Result<bool, TransitError> {
            use $curve::ecdsa::signature::hazmat::PrehashVerifier;
            let vk = $curve::ecdsa::VerifyingKey::from_sec1_bytes(public)
                .map_err(|_| crypto("stored ecdsa key"))?;
            let sig = if jws {
                $curve::ecdsa::Signature::from_slice(sig)
            } else {
                $curve::ecdsa::Signature::from_der(sig)
            }
            .map_err(|_| TransitError::invalid("invalid signature"))?;
            Ok(vk.verify_prehash(digest, &sig).is_ok())
        }
    };
}

ecdsa_curve!(p256, p256_sign, p256_verify);
ecdsa_curve!(p384, p384_sign, p384_verify);

/// The RSA-PSS salt lengths to try (signing uses the first).
fn pss_salts(salt: SaltLength, key_bits: usize, hash_len: usize) -> Vec<usize> {
    let em_len = (key_bits - 1).div_ceil(8);
    let max = em_len.saturating_sub(hash_len + 2);
    match salt {
        SaltLength::Auto => vec![max, hash_len],
        SaltLength::Hash => vec![hash_len],
        SaltLength::Bytes(n) => vec![n],
    }
}

fn rsa_padding_checks(o: &SigOptions) -> Result<(), TransitError> {
    if o.hash == HashAlg::None && (o.pss || !o.prehashed) {
        return Err(TransitError::invalid(
            "hash_algorithm=none requires prehashed=true and signature_algorithm=pkcs1v15",
        ));
    }
    Ok(())
}

fn rsa_sign(v: &KeyVersion, o: &SigOptions, input: &[u8]) -> Result<Vec<u8>, TransitError> {
    rsa_padding_checks(o)?;
    let digest = o.message_digest(input);
    if o.hash != HashAlg::None && digest.len() != o.hash.output_len() {
        return Err(TransitError::invalid(
            "prehashed input does not match the length of the hash algorithm",
        ));
    }
    let key = rsa_private(v)?;
    let bits = rsa::traits::PublicKeyParts::n(&key).bits();
    let signed = if o.pss {
        let salt = pss_salts(o.salt, bits, o.hash.output_len())[0];
        with_digest!(o.hash, D => key.sign_with_rng(
            &mut OsRng,
            rsa::Pss::new_blinded_with_salt::<D>(salt),
            &digest,
        ), none => return Err(TransitError::invalid("pss needs a hash algorithm")))
    } else {
        let padding = with_digest!(o.hash, D => rsa::Pkcs1v15Sign::new::<D>(),
            none => rsa::Pkcs1v15Sign::new_unprefixed());
        key.sign_with_rng(&mut OsRng, padding, &digest)
    };
    signed.map_err(|e| match e {
        rsa::Error::InputNotHashed | rsa::Error::MessageTooLong | rsa::Error::Internal => {
            TransitError::invalid("invalid input or salt length for RSA signing")
        }
        _ => crypto("rsa signing"),
    })
}

fn rsa_verify(
    v: &KeyVersion,
    o: &SigOptions,
    input: &[u8],
    sig: &[u8],
) -> Result<bool, TransitError> {
    use rsa::traits::PublicKeyParts;
    rsa_padding_checks(o)?;
    let digest = o.message_digest(input);
    let key = rsa_public(v)?;
    if o.pss {
        let bits = key.n().bits();
        for salt in pss_salts(o.salt, bits, o.hash.output_len()) {
            let ok = with_digest!(o.hash, D => key
                .verify(rsa::Pss::new_with_salt::<D>(salt), &digest, sig)
                .is_ok(), none => false);
            if ok {
                return Ok(true);
            }
        }
        Ok(false)
    } else {
        let padding = with_digest!(o.hash, D => rsa::Pkcs1v15Sign::new::<D>(),
            none => rsa::Pkcs1v15Sign::new_unprefixed());
        Ok(key.verify(padding, &digest, sig).is_ok())
    }
}

/// A signature of `input` by version `v` (raw bytes), and for derived
/// ed25519 keys the public key used (base64).
pub fn sign(
    record: &KeyRecord,
    v: &KeyVersion,
    o: &SigOptions,
    input: &[u8],
    context: &[u8],
) -> Result<(Vec<u8>, String), TransitError> {
    let kt = record.key_type;
    match kt {
        KeyType::Ed25519 => {
            if o.prehashed {
                return Err(TransitError::invalid(
                    "prehashed input is not supported for ed25519 keys",
                ));
            }
            use ed25519_dalek::Signer;
            let sk = ed25519_key(record, v, context)?;
            let public = if record.derived {
                STANDARD.encode(sk.verifying_key().to_bytes())
            } else {
                String::new()
            };
            Ok((sk.sign(input).to_bytes().to_vec(), public))
        }
        KeyType::EcdsaP256 | KeyType::EcdsaP384 => {
            if o.hash == HashAlg::None {
                return Err(TransitError::invalid(
                    "hash_algorithm=none is only supported for RSA keys",
                ));
            }
            let digest = o.message_digest(input);
            let sig = if kt == KeyType::EcdsaP256 {
                p256_sign(&v.key, &digest, o.jws)?
            } else {
                p384_sign(&v.key, &digest, o.jws)?
            };
            Ok((sig, String::new()))
        }
        KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096 => {
            Ok((rsa_sign(v, o, input)?, String::new()))
        }
        _ => Err(TransitError::invalid(format!(
            "key type {} does not support signing",
            kt.as_str()
        ))),
    }
}

/// Whether `sig` (raw bytes) is version `v`'s signature of `input`.
pub fn verify(
    record: &KeyRecord,
    v: &KeyVersion,
    o: &SigOptions,
    input: &[u8],
    context: &[u8],
    sig: &[u8],
) -> Result<bool, TransitError> {
    let kt = record.key_type;
    match kt {
        KeyType::Ed25519 => {
            if o.prehashed {
                return Err(TransitError::invalid(
                    "prehashed input is not supported for ed25519 keys",
                ));
            }
            let vk = if record.derived {
                ed25519_key(record, v, context)?.verifying_key()
            } else {
                let bytes: &[u8; 32] = v
                    .public_key
                    .as_slice()
                    .try_into()
                    .map_err(|_| crypto("stored ed25519 key"))?;
                ed25519_dalek::VerifyingKey::from_bytes(bytes)
                    .map_err(|_| crypto("stored ed25519 key"))?
            };
            let Ok(sig) = ed25519_dalek::Signature::from_slice(sig) else {
                return Err(TransitError::invalid("invalid signature"));
            };
            Ok(vk.verify_strict(input, &sig).is_ok())
        }
        KeyType::EcdsaP256 | KeyType::EcdsaP384 => {
            if o.hash == HashAlg::None {
                return Err(TransitError::invalid(
                    "hash_algorithm=none is only supported for RSA keys",
                ));
            }
            let digest = o.message_digest(input);
            if kt == KeyType::EcdsaP256 {
                p256_verify(&v.public_key, &digest, sig, o.jws)
            } else {
                p384_verify(&v.public_key, &digest, sig, o.jws)
            }
        }
        KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096 => rsa_verify(v, o, input, sig),
        _ => Err(TransitError::invalid(format!(
            "key type {} does not support verification",
            kt.as_str()
        ))),
    }
}

/// Constant-time equality of two MACs.
pub fn macs_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

// === key text (reads and exports) ===

/// PEM text of ECDSA keys, per curve.
mod ec_pem {
    use super::*;

    pub trait Curve {
        fn public_pem(public: &[u8]) -> Result<String, TransitError>;
        fn private_pem(scalar: &[u8]) -> Result<Zeroizing<String>, TransitError>;
    }

    macro_rules! curve {
        ($name:ident, $curve:ident) => {
            pub struct $name;
            impl Curve for $name {
                fn public_pem(public: &[u8]) -> Result<String, TransitError> {
                    use $curve::pkcs8::EncodePublicKey;
                    $curve::PublicKey::from_sec1_bytes(public)
                        .map_err(|_| crypto("stored ecdsa key"))?
                        .to_public_key_pem($curve::pkcs8::LineEnding::LF)
                        .map_err(|_| crypto("ecdsa public key pem"))
                }
                fn private_pem(scalar: &[u8]) -> Result<Zeroizing<String>, TransitError> {
                    $curve::SecretKey::from_slice(scalar)
                        .map_err(|_| crypto("stored ecdsa key"))?
                        .to_sec1_pem($curve::pkcs8::LineEnding::LF)
                        .map_err(|_| crypto("ecdsa private key pem"))
                }
            }
        };
    }

    curve!(P256, p256);
    curve!(P384, p384);
}

use ec_pem::{Curve, P256, P384};

/// The public key of a version as a key read shows it: base64 of the raw
/// key for ed25519 (derived for `context` on derived keys, `""` without
/// one), PKIX PEM for ECDSA and RSA.
pub fn public_key_text(
    record: &KeyRecord,
    v: &KeyVersion,
    context: &[u8],
) -> Result<String, TransitError> {
    match record.key_type {
        KeyType::Ed25519 if record.derived => {
            if context.is_empty() {
                Ok(String::new())
            } else {
                Ok(STANDARD.encode(ed25519_key(record, v, context)?.verifying_key().to_bytes()))
            }
        }
        KeyType::Ed25519 => Ok(STANDARD.encode(&v.public_key)),
        KeyType::EcdsaP256 => P256::public_pem(&v.public_key),
        KeyType::EcdsaP384 => P384::public_pem(&v.public_key),
        KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096 => {
            use rsa::pkcs8::EncodePublicKey;
            rsa_public(v)?
                .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
                .map_err(|_| crypto("rsa public key pem"))
        }
        _ => Ok(String::new()),
    }
}

/// A version's private key as Vault exports it: base64 of the raw key for
/// AEAD and ed25519 keys (ed25519: seed ‖ public key, Go's private key
/// form), SEC 1 PEM for ECDSA, PKCS#1 PEM for RSA.
pub fn private_key_text(kt: KeyType, v: &KeyVersion) -> Result<Zeroizing<String>, TransitError> {
    match kt {
        KeyType::Ed25519 => {
            let seed: &[u8; 32] = v
                .key
                .as_slice()
                .try_into()
                .map_err(|_| crypto("stored ed25519 key"))?;
            let sk = ed25519_dalek::SigningKey::from_bytes(seed);
            let pair = Zeroizing::new(sk.to_keypair_bytes());
            Ok(Zeroizing::new(STANDARD.encode(pair.as_slice())))
        }
        KeyType::EcdsaP256 => P256::private_pem(&v.key),
        KeyType::EcdsaP384 => P384::private_pem(&v.key),
        KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096 => {
            use rsa::pkcs1::EncodeRsaPrivateKey;
            rsa_private(v)?
                .to_pkcs1_pem(rsa::pkcs8::LineEnding::LF)
                .map_err(|_| crypto("rsa private key pem"))
        }
        _ => Ok(Zeroizing::new(STANDARD.encode(&v.key))),
    }
}

/// Whether stored (or restored) material has the shape of `kt`'s keys.
pub fn material_fits(kt: KeyType, v: &KeyVersion) -> bool {
    if v.hmac_key.len() < 16 {
        return false;
    }
    match kt {
        KeyType::Aes128Gcm96 | KeyType::Aes256Gcm96 | KeyType::ChaCha20Poly1305 => {
            v.key.len() == kt.aead_key_len()
        }
        KeyType::Hmac => (16..=512).contains(&v.key.len()),
        KeyType::Ed25519 => {
            let (Ok(seed), Ok(public)) = (
                <&[u8; 32]>::try_from(v.key.as_slice()),
                <&[u8; 32]>::try_from(v.public_key.as_slice()),
            ) else {
                return false;
            };
            ed25519_dalek::SigningKey::from_bytes(seed)
                .verifying_key()
                .to_bytes()
                == *public
        }
        KeyType::EcdsaP256 => p256::ecdsa::SigningKey::from_slice(&v.key).is_ok_and(|sk| {
            p256::ecdsa::VerifyingKey::from(&sk)
                .to_encoded_point(false)
                .as_bytes()
                == v.public_key.as_slice()
        }),
        KeyType::EcdsaP384 => p384::ecdsa::SigningKey::from_slice(&v.key).is_ok_and(|sk| {
            p384::ecdsa::VerifyingKey::from(&sk)
                .to_encoded_point(false)
                .as_bytes()
                == v.public_key.as_slice()
        }),
        KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096 => {
            use rsa::traits::PublicKeyParts;
            match (rsa_private(v), rsa_public(v)) {
                (Ok(sk), Ok(pk)) => {
                    sk.to_public_key() == pk && Some(pk.n().bits()) == kt.rsa_bits()
                }
                _ => false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_match_known_answers() {
        // NIST / FIPS 180-4 and 202 test vectors for "abc".
        let hex = |b: Vec<u8>| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(
            hex(HashAlg::Sha2_256.digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex(HashAlg::Sha3_256.digest(b"abc")),
            "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532"
        );
        assert_eq!(
            hex(HashAlg::Sha2_224.digest(b"abc")),
            "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7"
        );
        for (name, len) in [
            ("sha2-224", 28),
            ("sha2-256", 32),
            ("sha2-384", 48),
            ("sha2-512", 64),
            ("sha3-224", 28),
            ("sha3-256", 32),
            ("sha3-384", 48),
            ("sha3-512", 64),
        ] {
            let a = HashAlg::parse_digest(name).unwrap();
            assert_eq!(a.digest(b"x").len(), len, "{name}");
            assert_eq!(a.output_len(), len, "{name}");
            assert_eq!(a.hmac(b"k", b"x").unwrap().len(), len, "{name}");
        }
        assert!(HashAlg::parse_digest("sha1").is_err());
        assert!(HashAlg::parse_digest("md5").is_err());
        assert_eq!(HashAlg::parse_signing("sha1").ok(), Some(HashAlg::Sha1));
        assert_eq!(HashAlg::parse_signing("").ok(), Some(HashAlg::Sha2_256));
    }

    #[test]
    fn hmac_known_answer() {
        // RFC 4231 test case 2.
        let mac = HashAlg::Sha2_256
            .hmac(b"Jefe", b"what do ya want for nothing?")
            .unwrap();
        let hex: String = mac.iter().map(|x| format!("{x:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(macs_equal(&mac, &mac));
        let mut other = mac.clone();
        other[0] ^= 1;
        assert!(!macs_equal(&mac, &other));
        assert!(!macs_equal(&mac, &mac[..31]));
    }

    #[test]
    fn hkdf_is_per_context() {
        let a = derive(b"ikm", b"ctx-a", 32).unwrap();
        let b = derive(b"ikm", b"ctx-b", 32).unwrap();
        assert_ne!(a.as_slice(), b.as_slice());
        assert_eq!(
            a.as_slice(),
            derive(b"ikm", b"ctx-a", 32).unwrap().as_slice()
        );
    }

    #[test]
    fn aead_rejects_tampering() {
        for kt in [
            KeyType::Aes128Gcm96,
            KeyType::Aes256Gcm96,
            KeyType::ChaCha20Poly1305,
        ] {
            let key = vec![7u8; kt.aead_key_len()];
            let nonce = [1u8; NONCE_LEN];
            let ct = aead_seal(kt, &key, &nonce, b"hello", b"ad").unwrap();
            assert_eq!(ct.len(), 5 + TAG_LEN);
            assert_eq!(
                aead_open(kt, &key, &nonce, &ct, b"ad").unwrap().as_slice(),
                b"hello"
            );
            assert!(aead_open(kt, &key, &nonce, &ct, b"other").is_none());
            let mut bad = ct.clone();
            let last = bad.len() - 1;
            bad[last] ^= 0x80;
            assert!(aead_open(kt, &key, &nonce, &bad, b"ad").is_none());
        }
    }

    #[test]
    fn signature_options() {
        let o =
            |h: &str, s: &str, m: &str, salt: &str| bulwark_proto::transit::v1::SignatureOptions {
                hash_algorithm: h.into(),
                signature_algorithm: s.into(),
                marshaling_algorithm: m.into(),
                salt_length: salt.into(),
                prehashed: false,
            };
        let d = SigOptions::parse(&o("", "", "", "")).unwrap();
        assert_eq!(d.hash, HashAlg::Sha2_256);
        assert!(d.pss && !d.jws);
        assert_eq!(d.salt, SaltLength::Auto);
        assert!(SigOptions::parse(&o("md5", "", "", "")).is_err());
        assert!(SigOptions::parse(&o("", "raw", "", "")).is_err());
        assert!(SigOptions::parse(&o("", "", "der", "")).is_err());
        assert!(SigOptions::parse(&o("", "", "", "x")).is_err());
        assert_eq!(
            SigOptions::parse(&o("", "", "", "20")).unwrap().salt,
            SaltLength::Bytes(20)
        );
        assert_eq!(pss_salts(SaltLength::Auto, 2048, 32), vec![222, 32]);
    }
}
