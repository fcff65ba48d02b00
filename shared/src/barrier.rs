//! The barrier: every value a service stores is sealed with AES-256-GCM under
//! that service's own data key before it reaches [`Storage`].
//!
//! Stored format (one value):
//!
//! ```text
//! [0x01 version][term: u32 big-endian][nonce: 12 bytes][ciphertext ‖ 16-byte tag]
//! ```
//!
//! The associated data is `namespace ‖ 0x00 ‖ path`, so a value moved to another
//! path or another service's table no longer decrypts.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use serde::de::DeserializeOwned;
use serde::Serialize;
use zeroize::Zeroizing;

use crate::keyring::{DataKey, KeyError, Keyring};
use crate::storage::{Storage, StorageError};

const VERSION: u8 = 1;
const HEADER: usize = 1 + 4 + 12;

#[derive(Debug, thiserror::Error)]
pub enum BarrierError {
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("stored value at {0:?} failed to decrypt (corrupt or tampered)")]
    Corrupt(String),
    #[error("stored value at {0:?} is not valid JSON: {1}")]
    Decode(String, String),
}

impl BarrierError {
    pub fn is_sealed(&self) -> bool {
        matches!(self, BarrierError::Key(KeyError::Sealed))
    }
}

impl From<BarrierError> for tonic::Status {
    fn from(e: BarrierError) -> Self {
        match &e {
            BarrierError::Key(KeyError::Sealed) => tonic::Status::unavailable("Vault is sealed"),
            BarrierError::Key(KeyError::Unavailable(_)) => {
                tonic::Status::unavailable(e.to_string())
            }
            _ => {
                tracing::error!(error = %e, "barrier failure");
                tonic::Status::internal("internal error")
            }
        }
    }
}

/// Encrypts `plaintext` for `aad` under `key` with the given term.
pub fn seal_value(term: u32, key: &DataKey, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let cipher = Aes256Gcm::new_from_slice(key.as_slice()).expect("32-byte key");
    let mut nonce = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let ct = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .expect("AES-GCM encryption cannot fail for in-memory buffers");
    let mut out = Vec::with_capacity(HEADER + ct.len());
    out.push(VERSION);
    out.extend_from_slice(&term.to_be_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    out
}

/// The key term a sealed value was written under, if the header is well formed.
pub fn value_term(sealed: &[u8]) -> Option<u32> {
    if sealed.len() < HEADER + 16 || sealed[0] != VERSION {
        return None;
    }
    Some(u32::from_be_bytes([
        sealed[1], sealed[2], sealed[3], sealed[4],
    ]))
}

/// Decrypts a value made by [`seal_value`]; `None` if it does not authenticate.
pub fn open_value(key: &DataKey, aad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    value_term(sealed)?;
    let cipher = Aes256Gcm::new_from_slice(key.as_slice()).ok()?;
    let nonce = Nonce::from_slice(&sealed[5..HEADER]);
    cipher
        .decrypt(
            nonce,
            Payload {
                msg: &sealed[HEADER..],
                aad,
            },
        )
        .ok()
        .map(Zeroizing::new)
}

/// A service's encrypted view of its storage namespace.
#[derive(Clone)]
pub struct Barrier {
    storage: Storage,
    keyring: Keyring,
}

impl Barrier {
    pub fn new(storage: Storage, keyring: Keyring) -> Self {
        Barrier { storage, keyring }
    }

    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    fn aad(&self, path: &str) -> Vec<u8> {
        let ns = self.storage.namespace();
        let mut aad = Vec::with_capacity(ns.len() + 1 + path.len());
        aad.extend_from_slice(ns.as_bytes());
        aad.push(0);
        aad.extend_from_slice(path.as_bytes());
        aad
    }

    async fn encrypt(&self, path: &str, plaintext: &[u8]) -> Result<Vec<u8>, BarrierError> {
        let (term, key) = self.keyring.ensure_active().await?;
        Ok(seal_value(term, &key, &self.aad(path), plaintext))
    }

    async fn decrypt(&self, path: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, BarrierError> {
        let term = value_term(sealed).ok_or_else(|| BarrierError::Corrupt(path.to_string()))?;
        let key = self.keyring.get(term).await?;
        open_value(&key, &self.aad(path), sealed)
            .ok_or_else(|| BarrierError::Corrupt(path.to_string()))
    }

    pub async fn get(&self, path: &str) -> Result<Option<Zeroizing<Vec<u8>>>, BarrierError> {
        // Refuse while sealed even for missing keys: a sealed service answers nothing.
        self.keyring.ensure_active().await?;
        match self.storage.get(path).await? {
            Some(sealed) => Ok(Some(self.decrypt(path, &sealed).await?)),
            None => Ok(None),
        }
    }

    pub async fn put(&self, path: &str, plaintext: &[u8]) -> Result<(), BarrierError> {
        let sealed = self.encrypt(path, plaintext).await?;
        Ok(self.storage.put(path, &sealed).await?)
    }

    /// Writes only if `path` is absent; returns whether it was written.
    pub async fn create(&self, path: &str, plaintext: &[u8]) -> Result<bool, BarrierError> {
        let sealed = self.encrypt(path, plaintext).await?;
        Ok(self.storage.create(path, &sealed).await?)
    }

    pub async fn delete(&self, path: &str) -> Result<(), BarrierError> {
        self.keyring.ensure_active().await?;
        Ok(self.storage.delete(path).await?)
    }

    /// How many entries start with `prefix` (any depth). Reads no values,
    /// so it works sealed too.
    pub async fn count(&self, prefix: &str) -> Result<u64, BarrierError> {
        Ok(self.storage.count(prefix).await?)
    }

    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, BarrierError> {
        self.keyring.ensure_active().await?;
        Ok(self.storage.list(prefix).await?)
    }

    /// Reads a value together with its stored bytes, for [`Barrier::replace`].
    pub async fn get_versioned(
        &self,
        path: &str,
    ) -> Result<Option<(Zeroizing<Vec<u8>>, Vec<u8>)>, BarrierError> {
        self.keyring.ensure_active().await?;
        match self.storage.get(path).await? {
            Some(sealed) => {
                let plain = self.decrypt(path, &sealed).await?;
                Ok(Some((plain, sealed)))
            }
            None => Ok(None),
        }
    }

    /// Compare-and-swap: writes `plaintext` only if the stored bytes are still
    /// `expected` (as returned by [`Barrier::get_versioned`]). Returns whether
    /// it was written; on `false`, read again and retry.
    pub async fn replace(
        &self,
        path: &str,
        expected: &[u8],
        plaintext: &[u8],
    ) -> Result<bool, BarrierError> {
        let sealed = self.encrypt(path, plaintext).await?;
        Ok(self
            .storage
            .compare_and_swap(path, expected, &sealed)
            .await?)
    }

    /// Reads and deletes a value in one step: of several racing callers,
    /// exactly one gets it.
    pub async fn take(&self, path: &str) -> Result<Option<Zeroizing<Vec<u8>>>, BarrierError> {
        loop {
            let Some((plain, sealed)) = self.get_versioned(path).await? else {
                return Ok(None);
            };
            if self.storage.compare_and_delete(path, &sealed).await? {
                return Ok(Some(plain));
            }
            // Changed (not deleted) under us: read again.
            if self.storage.get(path).await?.is_none() {
                return Ok(None);
            }
        }
    }

    pub async fn get_json<T: DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Option<T>, BarrierError> {
        match self.get(path).await? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| BarrierError::Decode(path.to_string(), e.to_string())),
            None => Ok(None),
        }
    }

    pub async fn put_json<T: Serialize>(&self, path: &str, value: &T) -> Result<(), BarrierError> {
        let bytes = Zeroizing::new(serde_json::to_vec(value).expect("serializable value"));
        self.put(path, &bytes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Database, StorageConfig};

    async fn barrier(ns: &str, db: &Database, key: u8) -> Barrier {
        let k = Keyring::new();
        k.install(1, [(1, Zeroizing::new([key; 32]))]);
        Barrier::new(db.namespace(ns).await.unwrap(), k)
    }

    #[tokio::test]
    async fn round_trip_and_no_plaintext_at_rest() {
        let db = Database::connect(&StorageConfig::SqliteMemory)
            .await
            .unwrap();
        let b = barrier("svc", &db, 7).await;
        b.put("a/b", b"very secret value").await.unwrap();
        assert_eq!(
            b.get("a/b").await.unwrap().unwrap().as_slice(),
            b"very secret value"
        );
        let raw = db
            .namespace("svc")
            .await
            .unwrap()
            .get("a/b")
            .await
            .unwrap()
            .unwrap();
        assert!(!raw.windows(6).any(|w| w == b"secret"));
        assert_eq!(value_term(&raw), Some(1));
        assert_eq!(b.list("a/").await.unwrap(), vec!["b"]);
    }

    #[tokio::test]
    async fn values_are_bound_to_path_namespace_and_key() {
        let db = Database::connect(&StorageConfig::SqliteMemory)
            .await
            .unwrap();
        let b = barrier("svc", &db, 7).await;
        b.put("one", b"x").await.unwrap();
        let raw_store = db.namespace("svc").await.unwrap();
        let raw = raw_store.get("one").await.unwrap().unwrap();
        // Moved to another path: refused.
        raw_store.put("two", &raw).await.unwrap();
        assert!(matches!(b.get("two").await, Err(BarrierError::Corrupt(_))));
        // Another service with another key cannot read it, even copied into its table.
        let other = barrier("other", &db, 8).await;
        db.namespace("other")
            .await
            .unwrap()
            .put("one", &raw)
            .await
            .unwrap();
        assert!(matches!(
            other.get("one").await,
            Err(BarrierError::Corrupt(_))
        ));
        // Flipped bit: refused.
        let mut bad = raw.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        raw_store.put("one", &bad).await.unwrap();
        assert!(matches!(b.get("one").await, Err(BarrierError::Corrupt(_))));
    }

    #[tokio::test]
    async fn compare_and_swap_detects_concurrent_writers() {
        let db = Database::connect(&StorageConfig::SqliteMemory)
            .await
            .unwrap();
        let b = barrier("svc", &db, 7).await;
        b.put("n", b"1").await.unwrap();
        let (plain, v1) = b.get_versioned("n").await.unwrap().unwrap();
        assert_eq!(plain.as_slice(), b"1");
        assert!(b.replace("n", &v1, b"2").await.unwrap());
        // The first version is stale now.
        assert!(!b.replace("n", &v1, b"3").await.unwrap());
        assert_eq!(b.get("n").await.unwrap().unwrap().as_slice(), b"2");
    }

    #[tokio::test]
    async fn sealed_refuses_everything() {
        let db = Database::connect(&StorageConfig::SqliteMemory)
            .await
            .unwrap();
        let b = barrier("svc", &db, 7).await;
        b.put("k", b"v").await.unwrap();
        b.keyring().clear();
        assert!(b.get("k").await.unwrap_err().is_sealed());
        assert!(b.put("k", b"v").await.unwrap_err().is_sealed());
        assert!(b.list("").await.unwrap_err().is_sealed());
        assert!(b.delete("k").await.unwrap_err().is_sealed());
    }

    #[tokio::test]
    async fn old_terms_stay_readable_after_rotation() {
        let db = Database::connect(&StorageConfig::SqliteMemory)
            .await
            .unwrap();
        let b = barrier("svc", &db, 7).await;
        b.put("old", b"v1").await.unwrap();
        b.keyring().install(
            2,
            [
                (1, Zeroizing::new([7u8; 32])),
                (2, Zeroizing::new([9u8; 32])),
            ],
        );
        b.put("new", b"v2").await.unwrap();
        assert_eq!(b.get("old").await.unwrap().unwrap().as_slice(), b"v1");
        let raw = db
            .namespace("svc")
            .await
            .unwrap()
            .get("new")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(value_term(&raw), Some(2));
    }
}
