//! Key types and key rings: one [`KeyRecord`] per named key, holding its
//! policy (derivation, export, versions allowed) and every live version's
//! material ([`KeyVersion`]), stored as one JSON record through the barrier.
//!
//! Material is held in plain `Vec<u8>` fields of types that zeroize on drop;
//! their serde form is base64, written from and read into zeroized buffers.
//! Nothing here implements `Debug` over key bytes.

use std::collections::BTreeMap;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bulwark_proto::transit::v1 as pb;
use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::TransitError;

/// The shortest automatic rotation period Vault accepts (one hour).
pub const MIN_AUTO_ROTATE: i64 = 3600;
/// The size of every version's own HMAC key, and the default size of
/// `hmac` keys, in bytes.
pub const HMAC_KEY_LEN: usize = 32;
/// The largest `hmac` key, in bytes.
pub const MAX_HMAC_KEY_LEN: u32 = 512;

/// A transit key type, as Vault names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyType {
    #[serde(rename = "aes128-gcm96")]
    Aes128Gcm96,
    #[serde(rename = "aes256-gcm96")]
    Aes256Gcm96,
    #[serde(rename = "chacha20-poly1305")]
    ChaCha20Poly1305,
    #[serde(rename = "ed25519")]
    Ed25519,
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    #[serde(rename = "ecdsa-p384")]
    EcdsaP384,
    #[serde(rename = "rsa-2048")]
    Rsa2048,
    #[serde(rename = "rsa-3072")]
    Rsa3072,
    #[serde(rename = "rsa-4096")]
    Rsa4096,
    #[serde(rename = "hmac")]
    Hmac,
}

impl KeyType {
    /// Every type, in Vault's documentation order.
    pub const ALL: [KeyType; 10] = [
        KeyType::Aes128Gcm96,
        KeyType::Aes256Gcm96,
        KeyType::ChaCha20Poly1305,
        KeyType::Ed25519,
        KeyType::EcdsaP256,
        KeyType::EcdsaP384,
        KeyType::Rsa2048,
        KeyType::Rsa3072,
        KeyType::Rsa4096,
        KeyType::Hmac,
    ];

    /// Vault's `type` parameter (`""` = aes256-gcm96).
    pub fn parse(s: &str) -> Result<KeyType, TransitError> {
        if s.is_empty() {
            return Ok(KeyType::Aes256Gcm96);
        }
        KeyType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| TransitError::invalid(format!("unknown key type: {s:?}")))
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Aes128Gcm96 => "aes128-gcm96",
            KeyType::Aes256Gcm96 => "aes256-gcm96",
            KeyType::ChaCha20Poly1305 => "chacha20-poly1305",
            KeyType::Ed25519 => "ed25519",
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::EcdsaP384 => "ecdsa-p384",
            KeyType::Rsa2048 => "rsa-2048",
            KeyType::Rsa3072 => "rsa-3072",
            KeyType::Rsa4096 => "rsa-4096",
            KeyType::Hmac => "hmac",
        }
    }

    /// The AEAD types (nonce ‖ ciphertext ‖ tag).
    pub fn is_aead(self) -> bool {
        matches!(
            self,
            KeyType::Aes128Gcm96 | KeyType::Aes256Gcm96 | KeyType::ChaCha20Poly1305
        )
    }

    pub fn rsa_bits(self) -> Option<usize> {
        match self {
            KeyType::Rsa2048 => Some(2048),
            KeyType::Rsa3072 => Some(3072),
            KeyType::Rsa4096 => Some(4096),
            _ => None,
        }
    }

    pub fn is_ecdsa(self) -> bool {
        matches!(self, KeyType::EcdsaP256 | KeyType::EcdsaP384)
    }

    /// Types with a public key (`keys` shows objects, `public-key` exports).
    pub fn is_asymmetric(self) -> bool {
        self == KeyType::Ed25519 || self.is_ecdsa() || self.rsa_bits().is_some()
    }

    /// Encrypt, decrypt, rewrap and datakey (AEAD types and RSA-OAEP).
    pub fn supports_encryption(self) -> bool {
        self.is_aead() || self.rsa_bits().is_some()
    }

    pub fn supports_signing(self) -> bool {
        self.is_asymmetric()
    }

    /// Per-context keys (HKDF); convergent encryption needs an AEAD type too.
    pub fn supports_derivation(self) -> bool {
        self.is_aead() || self == KeyType::Ed25519
    }

    /// The length of an AEAD type's key, in bytes.
    pub fn aead_key_len(self) -> usize {
        match self {
            KeyType::Aes128Gcm96 => 16,
            _ => 32,
        }
    }

    /// The `name` of a public key in a key read (Vault's spelling).
    pub fn public_name(self) -> &'static str {
        match self {
            KeyType::EcdsaP256 => "P-256",
            KeyType::EcdsaP384 => "P-384",
            other => other.as_str(),
        }
    }
}

/// base64 in serde, through zeroized buffers.
mod secret {
    use super::*;
    use serde::de::{Error, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let text = Zeroizing::new(STANDARD.encode(bytes));
        s.serialize_str(&text)
    }

    struct B64;

    impl Visitor<'_> for B64 {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("base64 text")
        }

        fn visit_str<E: Error>(self, v: &str) -> Result<Vec<u8>, E> {
            STANDARD
                .decode(v)
                .map_err(|_| E::custom("invalid base64 key material"))
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_str(B64)
    }
}

/// One version of a key.
#[derive(Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct KeyVersion {
    /// The key: AEAD key, `hmac` key, ed25519 seed, ECDSA scalar, or RSA
    /// private key (PKCS#8 DER).
    #[serde(with = "secret")]
    pub key: Vec<u8>,
    /// This version's own HMAC key (every type has one, as in Vault).
    #[serde(with = "secret")]
    pub hmac_key: Vec<u8>,
    /// Asymmetric types: ed25519 (32 bytes), ECDSA (SEC1 uncompressed
    /// point), RSA (SubjectPublicKeyInfo DER).
    #[serde(with = "secret", default)]
    pub public_key: Vec<u8>,
    /// Unix seconds.
    pub creation_time: i64,
}

/// When a key was backed up or restored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stamp {
    /// RFC 3339.
    pub time: String,
    pub version: u32,
}

/// A named key: its policy and every live version.
#[derive(Serialize, Deserialize)]
pub struct KeyRecord {
    pub name: String,
    #[serde(rename = "type")]
    pub key_type: KeyType,
    #[serde(default)]
    pub derived: bool,
    #[serde(default)]
    pub convergent_encryption: bool,
    #[serde(default)]
    pub exportable: bool,
    #[serde(default)]
    pub allow_plaintext_backup: bool,
    #[serde(default)]
    pub deletion_allowed: bool,
    pub latest_version: u32,
    /// Versions below it were trimmed (0 = none ever).
    #[serde(default)]
    pub min_available_version: u32,
    /// Ciphertexts, signatures and HMACs older than this are refused (≥ 1).
    pub min_decryption_version: u32,
    /// 0 = any live version may encrypt or sign.
    #[serde(default)]
    pub min_encryption_version: u32,
    /// Seconds; 0 = never.
    #[serde(default)]
    pub auto_rotate_period: i64,
    /// `hmac` keys: bytes.
    #[serde(default)]
    pub key_size: u32,
    pub versions: BTreeMap<u32, KeyVersion>,
    #[serde(default)]
    pub backup_info: Option<Stamp>,
    #[serde(default)]
    pub restore_info: Option<Stamp>,
}

/// What a new key is made with (Vault's create parameters).
#[derive(Debug, Clone, Default)]
pub struct KeyOptions {
    pub derived: bool,
    pub convergent_encryption: bool,
    pub exportable: bool,
    pub allow_plaintext_backup: bool,
    pub auto_rotate_period: i64,
    pub key_size: u32,
}

impl KeyOptions {
    /// Vault's rules for a new key of `kt`.
    pub fn check(&self, kt: KeyType) -> Result<(), TransitError> {
        if self.convergent_encryption && !self.derived {
            return Err(TransitError::invalid(
                "convergent encryption requires derivation to be enabled",
            ));
        }
        if self.derived && !kt.supports_derivation() {
            return Err(TransitError::invalid(format!(
                "key derivation is not supported for keys of type {}",
                kt.as_str()
            )));
        }
        if self.convergent_encryption && !kt.is_aead() {
            return Err(TransitError::invalid(format!(
                "convergent encryption is not supported for keys of type {}",
                kt.as_str()
            )));
        }
        check_rotate_period(self.auto_rotate_period)?;
        if kt == KeyType::Hmac {
            if self.key_size != 0
                && !(HMAC_KEY_LEN as u32..=MAX_HMAC_KEY_LEN).contains(&self.key_size)
            {
                return Err(TransitError::invalid(format!(
                    "invalid key_size {}: must be between {HMAC_KEY_LEN} and {MAX_HMAC_KEY_LEN} bytes",
                    self.key_size
                )));
            }
        } else if self.key_size != 0 {
            return Err(TransitError::invalid(
                "key_size is only valid for hmac keys",
            ));
        }
        Ok(())
    }
}

/// 0 or at least an hour.
pub fn check_rotate_period(secs: i64) -> Result<(), TransitError> {
    if secs != 0 && secs < MIN_AUTO_ROTATE {
        return Err(TransitError::invalid(
            "auto rotate period must be 0 to disable or at least an hour",
        ));
    }
    Ok(())
}

/// Vault's key name rule (`\w(([\w-.]+)?\w)?`), so a name is one path
/// segment and one storage key segment.
pub fn check_name(name: &str) -> Result<(), TransitError> {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let ok = !name.is_empty()
        && name.len() <= 256
        && name.chars().all(|c| word(c) || c == '-' || c == '.')
        && name.starts_with(word)
        && name.ends_with(word);
    if ok {
        Ok(())
    } else {
        Err(TransitError::invalid(format!("invalid key name {name:?}")))
    }
}

fn random(len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    OsRng.fill_bytes(&mut out);
    out
}

/// New material for one version of a `kt` key (RSA takes a while: call it
/// off the async threads).
pub fn generate(kt: KeyType, key_size: u32, now: i64) -> Result<KeyVersion, TransitError> {
    let crypto =
        |what: &str| TransitError::Crypto(format!("{} key generation: {what}", kt.as_str()));
    let (key, public_key) = match kt {
        KeyType::Aes128Gcm96 | KeyType::Aes256Gcm96 | KeyType::ChaCha20Poly1305 => {
            (random(kt.aead_key_len()), Vec::new())
        }
        KeyType::Hmac => {
            let len = if key_size == 0 {
                HMAC_KEY_LEN
            } else {
                key_size as usize
            };
            (random(len), Vec::new())
        }
        KeyType::Ed25519 => {
            let sk = ed25519_dalek::SigningKey::generate(&mut OsRng);
            let public = sk.verifying_key().to_bytes().to_vec();
            (sk.to_bytes().to_vec(), public)
        }
        KeyType::EcdsaP256 => {
            let sk = p256::ecdsa::SigningKey::random(&mut OsRng);
            let public = p256::ecdsa::VerifyingKey::from(&sk)
                .to_encoded_point(false)
                .as_bytes()
                .to_vec();
            (sk.to_bytes().to_vec(), public)
        }
        KeyType::EcdsaP384 => {
            let sk = p384::ecdsa::SigningKey::random(&mut OsRng);
            let public = p384::ecdsa::VerifyingKey::from(&sk)
                .to_encoded_point(false)
                .as_bytes()
                .to_vec();
            (sk.to_bytes().to_vec(), public)
        }
        KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096 => {
            use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey};
            let bits = kt.rsa_bits().unwrap_or(2048);
            let sk = rsa::RsaPrivateKey::new(&mut OsRng, bits).map_err(|_| crypto("rsa"))?;
            let der = sk.to_pkcs8_der().map_err(|_| crypto("pkcs8"))?;
            let public = sk
                .to_public_key()
                .to_public_key_der()
                .map_err(|_| crypto("spki"))?;
            (der.as_bytes().to_vec(), public.as_bytes().to_vec())
        }
    };
    Ok(KeyVersion {
        key,
        hmac_key: random(HMAC_KEY_LEN),
        public_key,
        creation_time: now,
    })
}

/// RFC 3339 text of a Unix time.
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl KeyRecord {
    /// A new key with one version.
    pub fn new(name: &str, kt: KeyType, opts: &KeyOptions, first: KeyVersion) -> KeyRecord {
        KeyRecord {
            name: name.to_string(),
            key_type: kt,
            derived: opts.derived,
            convergent_encryption: opts.convergent_encryption,
            exportable: opts.exportable,
            allow_plaintext_backup: opts.allow_plaintext_backup,
            deletion_allowed: false,
            latest_version: 1,
            min_available_version: 0,
            min_decryption_version: 1,
            min_encryption_version: 0,
            auto_rotate_period: opts.auto_rotate_period,
            key_size: if kt == KeyType::Hmac {
                first.key.len() as u32
            } else {
                0
            },
            versions: BTreeMap::from([(1, first)]),
            backup_info: None,
            restore_info: None,
        }
    }

    /// A live version (trimmed or future versions are `None`).
    pub fn version(&self, v: u32) -> Option<&KeyVersion> {
        self.versions.get(&v)
    }

    /// The version to encrypt, sign or HMAC with: `requested` (0 = latest),
    /// refused below `min_encryption_version` or above the latest.
    pub fn encryption_version(&self, requested: u32) -> Result<(u32, &KeyVersion), TransitError> {
        let v = if requested == 0 {
            self.latest_version
        } else {
            requested
        };
        if v > self.latest_version {
            return Err(TransitError::invalid(format!(
                "requested version {v} is higher than the latest key version {}",
                self.latest_version
            )));
        }
        if self.min_encryption_version > 0 && v < self.min_encryption_version {
            return Err(TransitError::invalid(
                "requested version for encryption is less than the minimum encryption key version",
            ));
        }
        let key = self.version(v).ok_or_else(|| {
            TransitError::invalid(format!("key version {v} is no longer available"))
        })?;
        Ok((v, key))
    }

    /// The version a ciphertext, signature or HMAC names, if it may still
    /// be used to decrypt or verify.
    pub fn decryption_version(&self, v: u32, what: &str) -> Result<&KeyVersion, TransitError> {
        if v > self.latest_version {
            return Err(TransitError::invalid(format!(
                "invalid {what}: version is too new"
            )));
        }
        if v < self.min_decryption_version {
            return Err(TransitError::invalid(
                "ciphertext or signature version is disallowed by policy (too old)",
            ));
        }
        self.version(v).ok_or_else(|| {
            TransitError::invalid(
                "ciphertext or signature version is disallowed by policy (too old)",
            )
        })
    }

    /// Adds a new latest version.
    pub fn rotate(&mut self, next: KeyVersion) {
        self.latest_version += 1;
        self.versions.insert(self.latest_version, next);
    }

    /// Whether an automatic rotation is due at `now`.
    pub fn rotation_due(&self, now: i64) -> bool {
        self.auto_rotate_period > 0
            && self
                .version(self.latest_version)
                .is_some_and(|v| now.saturating_sub(v.creation_time) >= self.auto_rotate_period)
    }

    /// Checks a record that came from outside (a restored backup).
    pub fn validate(&self) -> Result<(), TransitError> {
        let bad = |why: &str| TransitError::invalid(format!("invalid backup: {why}"));
        check_name(&self.name).map_err(|_| bad("invalid key name"))?;
        if self.latest_version == 0 || self.version(self.latest_version).is_none() {
            return Err(bad("the latest version is missing"));
        }
        let first = self.min_available_version.max(1);
        if self
            .versions
            .keys()
            .any(|v| *v < first || *v > self.latest_version)
        {
            return Err(bad("versions out of range"));
        }
        if self.min_decryption_version == 0
            || self.min_decryption_version > self.latest_version
            || self.min_decryption_version < self.min_available_version
            || (self.min_encryption_version != 0
                && (self.min_encryption_version > self.latest_version
                    || self.min_encryption_version < self.min_decryption_version))
        {
            return Err(bad("inconsistent minimum versions"));
        }
        if (self.convergent_encryption && !self.derived)
            || (self.derived && !self.key_type.supports_derivation())
        {
            return Err(bad("derivation settings do not fit the key type"));
        }
        for v in self.versions.values() {
            if !crate::crypto::material_fits(self.key_type, v) {
                return Err(bad("key material does not fit the key type"));
            }
        }
        Ok(())
    }

    /// The proto view of the key (public keys derived for `context` when
    /// the key is a derived ed25519 key and a context is given).
    pub fn info(&self, context: &[u8]) -> Result<pb::KeyInfo, TransitError> {
        let kt = self.key_type;
        let mut versions = Vec::with_capacity(self.versions.len());
        for (n, v) in &self.versions {
            let (name, public_key) = if kt.is_asymmetric() {
                (
                    kt.public_name().to_string(),
                    crate::crypto::public_key_text(self, v, context)?,
                )
            } else {
                (String::new(), String::new())
            };
            versions.push(pb::KeyVersionInfo {
                version: *n,
                creation_time: v.creation_time,
                name,
                public_key,
            });
        }
        let stamp = |s: &Option<Stamp>| {
            s.as_ref().map(|s| pb::Stamp {
                time: s.time.clone(),
                version: s.version,
            })
        };
        Ok(pb::KeyInfo {
            name: self.name.clone(),
            r#type: kt.as_str().to_string(),
            derived: self.derived,
            convergent_encryption: self.convergent_encryption,
            exportable: self.exportable,
            allow_plaintext_backup: self.allow_plaintext_backup,
            deletion_allowed: self.deletion_allowed,
            latest_version: self.latest_version,
            min_available_version: self.min_available_version,
            min_decryption_version: self.min_decryption_version,
            min_encryption_version: self.min_encryption_version,
            auto_rotate_period: self.auto_rotate_period,
            supports_encryption: kt.supports_encryption(),
            supports_decryption: kt.supports_encryption(),
            supports_derivation: kt.supports_derivation(),
            supports_signing: kt.supports_signing(),
            versions,
            key_size: self.key_size,
            backup_info: stamp(&self.backup_info),
            restore_info: stamp(&self.restore_info),
            asymmetric: kt.is_asymmetric(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_round_trip() {
        for kt in KeyType::ALL {
            assert_eq!(KeyType::parse(kt.as_str()).ok(), Some(kt));
            let json = serde_json::to_string(&kt).unwrap();
            assert_eq!(json, format!("\"{}\"", kt.as_str()));
        }
        assert_eq!(KeyType::parse("").ok(), Some(KeyType::Aes256Gcm96));
        assert!(KeyType::parse("ecdsa-p521").is_err());
        assert!(KeyType::parse("AES256-GCM96").is_err());
    }

    #[test]
    fn capabilities_follow_vault() {
        use KeyType::*;
        for (kt, enc, sign, derive) in [
            (Aes128Gcm96, true, false, true),
            (Aes256Gcm96, true, false, true),
            (ChaCha20Poly1305, true, false, true),
            (Ed25519, false, true, true),
            (EcdsaP256, false, true, false),
            (EcdsaP384, false, true, false),
            (Rsa2048, true, true, false),
            (Hmac, false, false, false),
        ] {
            assert_eq!(kt.supports_encryption(), enc, "{kt:?}");
            assert_eq!(kt.supports_signing(), sign, "{kt:?}");
            assert_eq!(kt.supports_derivation(), derive, "{kt:?}");
        }
    }

    #[test]
    fn option_rules() {
        let o = |derived, convergent| KeyOptions {
            derived,
            convergent_encryption: convergent,
            ..Default::default()
        };
        assert!(o(false, true).check(KeyType::Aes256Gcm96).is_err());
        assert!(o(true, true).check(KeyType::Aes256Gcm96).is_ok());
        assert!(o(true, false).check(KeyType::Ed25519).is_ok());
        assert!(o(true, true).check(KeyType::Ed25519).is_err());
        assert!(o(true, false).check(KeyType::EcdsaP256).is_err());
        assert!(o(true, false).check(KeyType::Rsa2048).is_err());
        let period = |p| KeyOptions {
            auto_rotate_period: p,
            ..Default::default()
        };
        assert!(period(60).check(KeyType::Aes256Gcm96).is_err());
        assert!(period(3600).check(KeyType::Aes256Gcm96).is_ok());
        let size = |s| KeyOptions {
            key_size: s,
            ..Default::default()
        };
        assert!(size(16).check(KeyType::Hmac).is_err());
        assert!(size(64).check(KeyType::Hmac).is_ok());
        assert!(size(64).check(KeyType::Aes256Gcm96).is_err());
    }

    #[test]
    fn names() {
        for ok in ["a", "my-key", "k.v_2", "A9"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "a/b", "a b", "..", ".a", "é"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn versions_and_rotation_due() {
        let v = |t| generate(KeyType::Aes256Gcm96, 0, t).unwrap();
        let mut k = KeyRecord::new("k", KeyType::Aes256Gcm96, &KeyOptions::default(), v(100));
        assert!(!k.rotation_due(1_000_000));
        k.auto_rotate_period = 3600;
        assert!(!k.rotation_due(100 + 3599));
        assert!(k.rotation_due(100 + 3600));
        k.rotate(v(5000));
        assert_eq!(k.latest_version, 2);
        assert!(!k.rotation_due(5000 + 10));
        assert_eq!(k.encryption_version(0).unwrap().0, 2);
        assert_eq!(k.encryption_version(1).unwrap().0, 1);
        assert!(k.encryption_version(3).is_err());
        k.min_encryption_version = 2;
        assert!(k.encryption_version(1).is_err());
        assert!(k.decryption_version(1, "ciphertext").is_ok());
        k.min_decryption_version = 2;
        assert!(k.decryption_version(1, "ciphertext").is_err());
        assert!(k.decryption_version(3, "ciphertext").is_err());
        assert!(k.validate().is_ok());
    }

    #[test]
    fn stored_form_hides_nothing_it_should_not_and_round_trips() {
        let v = generate(KeyType::Hmac, 48, 7).unwrap();
        let key = v.key.clone();
        let k = KeyRecord::new("h", KeyType::Hmac, &KeyOptions::default(), v);
        assert_eq!(k.key_size, 48);
        let json = serde_json::to_vec(&k).unwrap();
        let back: KeyRecord = serde_json::from_slice(&json).unwrap();
        assert_eq!(back.version(1).unwrap().key, key);
        assert_eq!(back.key_type, KeyType::Hmac);
        assert!(back.validate().is_ok());
    }
}
