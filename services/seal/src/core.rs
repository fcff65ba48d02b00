//! The seal state machine: init, unseal with progress, seal, and service keys.
//!
//! Stored (namespace `seal`, one row, written once and atomically at init):
//!
//! ```text
//! core/seal  →  JSON {type, secret_shares, secret_threshold, share_hashes, keyring}
//! ```
//!
//! `keyring` is sealed with AES-256-GCM under the root key (term 0 header) and
//! holds the barrier keyring terms and the cluster name and id.
//! `pending_root_token` is the root token minted at init, sealed under the seal
//! service's own key, until the auth service has put it in the token store
//! (claim, then acknowledge). `share_hashes` are SHA-256 digests of the
//! unseal shares (uniformly random 256-bit values, so the digests reveal
//! nothing useful); they let a wrong share be refused at once rather than at
//! the threshold. The root key itself is never stored.

use std::collections::BTreeMap;

use base64::Engine as _;
use bulwark_proto::seal::v1::{SealState, SealStatus};
use bulwark_shared::barrier::{open_value, seal_value};
use bulwark_shared::keyring::DataKey;
use bulwark_shared::storage::Storage;
use bulwark_shared::ServiceName;
use hkdf::Hkdf;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::{watch, Mutex};
use zeroize::{Zeroize, Zeroizing};

use crate::error::SealError;
use crate::shamir;

const SEAL_ROW: &str = "core/seal";
const KEYRING_AAD: &[u8] = b"bulwark/seal/keyring";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSeal {
    #[serde(rename = "type")]
    seal_type: String,
    secret_shares: u32,
    secret_threshold: u32,
    share_hashes: Vec<String>,
    keyring: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending_root_token: Option<String>,
}

/// The decrypted keyring: only ever in memory while unsealed.
#[derive(Serialize, Deserialize)]
struct KeyringDoc {
    active_term: u32,
    /// term → base64 key.
    keys: BTreeMap<u32, String>,
    cluster_name: String,
    cluster_id: String,
}

impl Drop for KeyringDoc {
    fn drop(&mut self) {
        self.keys.values_mut().for_each(Zeroize::zeroize);
    }
}

struct Unsealed {
    active_term: u32,
    keys: BTreeMap<u32, DataKey>,
    cluster_name: String,
    cluster_id: String,
}

#[derive(Default)]
struct State {
    config: Option<StoredSeal>,
    unsealed: Option<Unsealed>,
    progress: Vec<Zeroizing<Vec<u8>>>,
    nonce: String,
}

/// What init hands back once: the shares and the root token.
pub struct InitOutput {
    pub keys: Vec<Zeroizing<Vec<u8>>>,
    pub root_token: Zeroizing<String>,
}

pub struct SealCore {
    storage: Storage,
    storage_type: &'static str,
    state: Mutex<State>,
    tx: watch::Sender<SealState>,
}

fn hash_share(share: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"bulwark-unseal-share-v1\0");
    h.update(share);
    hex::encode(h.finalize())
}

fn derive(ikm: &[u8], info: &[u8]) -> DataKey {
    let hk = Hkdf::<Sha256>::new(Some(b"bulwark-keyring-v1"), ikm);
    let mut out = Zeroizing::new([0u8; 32]);
    hk.expand(info, out.as_mut_slice())
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    out
}

const PENDING_ROOT_AAD: &[u8] = b"bulwark/seal/pending-root-token";

/// The key sealing the pending root token: the seal service's own key of the
/// first keyring term.
fn pending_root_key(keys: &BTreeMap<u32, DataKey>) -> (u32, DataKey) {
    let (term, first) = keys.iter().next().expect("keyring has a term");
    (
        *term,
        derive(first.as_slice(), b"service:seal:pending-root-token"),
    )
}

/// A random token body in base62, as Vault's `hvs.` tokens.
pub fn random_base62(len: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rngs::OsRng;
    let mut out = String::with_capacity(len);
    while out.len() < len {
        let b = (rng.next_u32() & 0xff) as u8;
        // Rejection sampling keeps the alphabet uniform.
        if b < 248 {
            out.push(ALPHABET[usize::from(b % 62)] as char);
        }
    }
    out
}

impl SealCore {
    pub async fn load(storage: Storage, storage_type: &'static str) -> Result<Self, SealError> {
        let config = read_config(&storage).await?;
        let initial = SealState {
            initialized: config.is_some(),
            sealed: true,
            active_term: 0,
        };
        let (tx, _) = watch::channel(initial);
        Ok(SealCore {
            storage,
            storage_type,
            state: Mutex::new(State {
                config,
                ..State::default()
            }),
            tx,
        })
    }

    pub fn subscribe(&self) -> watch::Receiver<SealState> {
        self.tx.subscribe()
    }

    /// Refreshes the cached config from storage if this process has not seen
    /// an init yet (another replica may have done it).
    async fn config(&self, state: &mut State) -> Result<Option<StoredSeal>, SealError> {
        if state.config.is_none() {
            state.config = read_config(&self.storage).await?;
            if state.config.is_some() {
                self.publish(state);
            }
        }
        Ok(state.config.clone())
    }

    fn publish(&self, state: &State) {
        let next = SealState {
            initialized: state.config.is_some(),
            sealed: state.unsealed.is_none(),
            active_term: state.unsealed.as_ref().map_or(0, |u| u.active_term),
        };
        self.tx.send_if_modified(|cur| {
            if *cur != next {
                *cur = next;
                true
            } else {
                false
            }
        });
    }

    fn status_of(&self, state: &State) -> SealStatus {
        let cfg = state.config.as_ref();
        let unsealed = state.unsealed.as_ref();
        SealStatus {
            r#type: "shamir".into(),
            initialized: cfg.is_some(),
            sealed: unsealed.is_none(),
            threshold: cfg.map_or(0, |c| c.secret_threshold),
            shares: cfg.map_or(0, |c| c.secret_shares),
            progress: state.progress.len() as u32,
            nonce: state.nonce.clone(),
            storage_type: self.storage_type.into(),
            cluster_name: unsealed.map(|u| u.cluster_name.clone()).unwrap_or_default(),
            cluster_id: unsealed.map(|u| u.cluster_id.clone()).unwrap_or_default(),
        }
    }

    pub async fn status(&self) -> Result<SealStatus, SealError> {
        let mut state = self.state.lock().await;
        self.config(&mut state).await?;
        Ok(self.status_of(&state))
    }

    pub async fn init(
        &self,
        shares: u32,
        threshold: u32,
        root_token_id: &str,
    ) -> Result<InitOutput, SealError> {
        // Vault's SealConfig.Validate, in its order.
        if shares < 1 {
            return Err(SealError::InvalidConfig("shares must be at least one"));
        }
        if threshold < 1 {
            return Err(SealError::InvalidConfig("threshold must be at least one"));
        }
        if shares > 1 && threshold == 1 {
            return Err(SealError::InvalidConfig(
                "threshold must be greater than one for multiple shares",
            ));
        }
        if shares > 255 {
            return Err(SealError::InvalidConfig("shares must be less than 256"));
        }
        if threshold > shares {
            return Err(SealError::InvalidConfig(
                "threshold cannot be larger than shares",
            ));
        }
        if root_token_id.len() > 256
            || root_token_id
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(SealError::InvalidRootTokenId(
                "root token id must be at most 256 characters, without spaces",
            ));
        }
        let mut state = self.state.lock().await;
        if self.config(&mut state).await?.is_some() {
            return Err(SealError::AlreadyInitialized);
        }
        let mut rng = rand::rngs::OsRng;
        let mut root_key = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(root_key.as_mut_slice());
        let mut first_term = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(first_term.as_mut_slice());
        let keys: BTreeMap<u32, DataKey> = [(1u32, first_term)].into_iter().collect();
        let root_token = Zeroizing::new(if root_token_id.is_empty() {
            format!("hvs.{}", random_base62(24))
        } else {
            root_token_id.to_string()
        });
        let doc = KeyringDoc {
            active_term: 1,
            keys: keys
                .iter()
                .map(|(t, k)| {
                    (
                        *t,
                        base64::engine::general_purpose::STANDARD.encode(k.as_slice()),
                    )
                })
                .collect(),
            cluster_name: format!(
                "vault-cluster-{}",
                hex::encode(&uuid::Uuid::new_v4().as_bytes()[..4])
            ),
            cluster_id: uuid::Uuid::new_v4().to_string(),
        };
        let (pterm, pkey) = pending_root_key(&keys);
        let pending = seal_value(pterm, &pkey, PENDING_ROOT_AAD, root_token.as_bytes());
        let plain = Zeroizing::new(serde_json::to_vec(&doc).expect("serializable keyring"));
        let sealed_keyring = seal_value(0, &root_key, KEYRING_AAD, &plain);
        let parts = shamir::split(&root_key, shares as u8, threshold as u8);
        let stored = StoredSeal {
            seal_type: "shamir".into(),
            secret_shares: shares,
            secret_threshold: threshold,
            share_hashes: parts.iter().map(|p| hash_share(p)).collect(),
            keyring: base64::engine::general_purpose::STANDARD.encode(sealed_keyring),
            pending_root_token: Some(base64::engine::general_purpose::STANDARD.encode(pending)),
        };
        let row = serde_json::to_vec(&stored).expect("serializable seal config");
        // The single atomic commit point: a concurrent init loses here.
        if !self.storage.create(SEAL_ROW, &row).await? {
            state.config = read_config(&self.storage).await?;
            return Err(SealError::AlreadyInitialized);
        }
        state.config = Some(stored);
        state.progress.clear();
        state.nonce.clear();
        self.publish(&state);
        tracing::info!(shares, threshold, "initialized; sealed until unsealed");
        Ok(InitOutput {
            keys: parts,
            root_token,
        })
    }

    pub async fn unseal(&self, key: &[u8], reset: bool) -> Result<SealStatus, SealError> {
        let mut state = self.state.lock().await;
        let cfg = self
            .config(&mut state)
            .await?
            .ok_or(SealError::NotInitialized)?;
        if reset {
            state.progress.clear();
            state.nonce.clear();
            return Ok(self.status_of(&state));
        }
        if key.is_empty() {
            return Err(SealError::MissingKey);
        }
        if state.unsealed.is_some() {
            return Ok(self.status_of(&state));
        }
        let reset_with = |state: &mut State, why| {
            state.progress.clear();
            state.nonce.clear();
            Err(SealError::BadKey(why))
        };
        if key.len() != shamir::share_len(cfg.secret_shares) {
            return reset_with(&mut state, "wrong length for a key share");
        }
        let digest = hash_share(key);
        let known = cfg.share_hashes.iter().fold(0u8, |acc, h| {
            acc | h.as_bytes().ct_eq(digest.as_bytes()).unwrap_u8()
        });
        if known == 0 {
            return reset_with(&mut state, "it matches none of the key shares");
        }
        if state
            .progress
            .iter()
            .any(|p| bool::from(p.as_slice().ct_eq(key)))
        {
            // The same share twice counts once, as in Vault.
            return Ok(self.status_of(&state));
        }
        if state.progress.is_empty() {
            state.nonce = uuid::Uuid::new_v4().to_string();
        }
        state.progress.push(Zeroizing::new(key.to_vec()));
        if (state.progress.len() as u32) < cfg.secret_threshold {
            return Ok(self.status_of(&state));
        }
        let parts = std::mem::take(&mut state.progress);
        state.nonce.clear();
        let root_key = shamir::combine(&parts, cfg.secret_threshold as u8)
            .ok_or(SealError::BadKey("the shares do not combine"))?;
        let unsealed = open_keyring(&cfg, &root_key)?;
        tracing::info!(term = unsealed.active_term, "unsealed");
        state.unsealed = Some(unsealed);
        self.publish(&state);
        Ok(self.status_of(&state))
    }

    pub async fn seal(&self) -> Result<SealStatus, SealError> {
        let mut state = self.state.lock().await;
        // Dropping `Unsealed` zeroizes every key it held.
        state.unsealed = None;
        state.progress.clear();
        state.nonce.clear();
        self.publish(&state);
        tracing::info!("sealed");
        Ok(self.status_of(&state))
    }

    /// The data key of `caller` for `term` (0 = active): HKDF over the
    /// keyring term with the caller's name and the term as info.
    pub async fn service_key(
        &self,
        caller: ServiceName,
        term: u32,
    ) -> Result<(u32, DataKey), SealError> {
        let state = self.state.lock().await;
        let u = state.unsealed.as_ref().ok_or(SealError::Sealed)?;
        let term = if term == 0 { u.active_term } else { term };
        let base = u.keys.get(&term).ok_or(SealError::UnknownTerm(term))?;
        let info = format!("service:{}:term:{term}", caller.as_str());
        Ok((term, derive(base.as_slice(), info.as_bytes())))
    }

    /// The root token minted at init, if the auth service has not
    /// acknowledged storing it yet.
    pub async fn claim_init_root_token(&self) -> Result<Option<Zeroizing<String>>, SealError> {
        let mut state = self.state.lock().await;
        if state.unsealed.is_none() {
            return Err(SealError::Sealed);
        }
        // Read afresh: another replica may have had it acknowledged.
        state.config = read_config(&self.storage).await?;
        let u = state.unsealed.as_ref().ok_or(SealError::Sealed)?;
        let Some(pending) = state
            .config
            .as_ref()
            .and_then(|c| c.pending_root_token.clone())
        else {
            return Ok(None);
        };
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(pending)
            .map_err(|_| SealError::Corrupt("pending root token encoding"))?;
        let (_, key) = pending_root_key(&u.keys);
        let plain = open_value(&key, PENDING_ROOT_AAD, &sealed)
            .ok_or(SealError::Corrupt("pending root token"))?;
        let token = String::from_utf8(plain.to_vec())
            .map_err(|_| SealError::Corrupt("pending root token"))?;
        Ok(Some(Zeroizing::new(token)))
    }

    /// Forgets the pending root token (compare-and-swap on the seal row).
    pub async fn ack_init_root_token(&self) -> Result<(), SealError> {
        let mut state = self.state.lock().await;
        if state.unsealed.is_none() {
            return Err(SealError::Sealed);
        }
        loop {
            let Some(raw) = self.storage.get(SEAL_ROW).await? else {
                return Err(SealError::NotInitialized);
            };
            let mut cfg: StoredSeal = serde_json::from_slice(&raw)
                .map_err(|_| SealError::Corrupt("seal configuration"))?;
            if cfg.pending_root_token.take().is_none() {
                state.config = Some(cfg);
                return Ok(());
            }
            let next = serde_json::to_vec(&cfg).expect("serializable seal config");
            if self.storage.compare_and_swap(SEAL_ROW, &raw, &next).await? {
                state.config = Some(cfg);
                return Ok(());
            }
        }
    }
}

async fn read_config(storage: &Storage) -> Result<Option<StoredSeal>, SealError> {
    match storage.get(SEAL_ROW).await? {
        None => Ok(None),
        Some(raw) => serde_json::from_slice(&raw)
            .map(Some)
            .map_err(|_| SealError::Corrupt("seal configuration")),
    }
}

fn open_keyring(cfg: &StoredSeal, root_key: &DataKey) -> Result<Unsealed, SealError> {
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(&cfg.keyring)
        .map_err(|_| SealError::Corrupt("keyring encoding"))?;
    let plain = open_value(root_key, KEYRING_AAD, &sealed)
        .ok_or(SealError::BadKey("the shares do not open the keyring"))?;
    let doc: KeyringDoc =
        serde_json::from_slice(&plain).map_err(|_| SealError::Corrupt("keyring"))?;
    let mut keys = BTreeMap::new();
    for (term, b64) in &doc.keys {
        let mut raw = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| SealError::Corrupt("keyring key"))?,
        );
        if raw.len() != 32 {
            return Err(SealError::Corrupt("keyring key length"));
        }
        let mut k = Zeroizing::new([0u8; 32]);
        k.copy_from_slice(&raw);
        raw.zeroize();
        keys.insert(*term, k);
    }
    Ok(Unsealed {
        active_term: doc.active_term,
        keys,
        cluster_name: doc.cluster_name.clone(),
        cluster_id: doc.cluster_id.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_shared::storage::{test_util::TestPg, Database, StorageConfig};

    async fn core_on(cfg: &StorageConfig) -> (Database, SealCore) {
        let db = Database::connect(cfg).await.unwrap();
        let core = SealCore::load(db.namespace("seal").await.unwrap(), db.kind())
            .await
            .unwrap();
        (db, core)
    }

    async fn lifecycle(cfg: StorageConfig) {
        let (db, core) = core_on(&cfg).await;
        assert!(!core.status().await.unwrap().initialized);
        assert!(matches!(
            core.unseal(&[1; 33], false).await,
            Err(SealError::NotInitialized)
        ));
        let out = core.init(5, 3, "").await.unwrap();
        assert_eq!(out.keys.len(), 5);
        assert!(out.root_token.starts_with("hvs."));
        assert!(matches!(
            core.init(5, 3, "").await,
            Err(SealError::AlreadyInitialized)
        ));
        let st = core.status().await.unwrap();
        assert!(st.initialized && st.sealed && st.threshold == 3 && st.shares == 5);
        assert!(matches!(
            core.service_key(ServiceName::Kv, 0).await,
            Err(SealError::Sealed)
        ));

        // Progress with a stable nonce; a duplicate share does not count.
        let s1 = core.unseal(&out.keys[0], false).await.unwrap();
        assert_eq!(s1.progress, 1);
        let s1b = core.unseal(&out.keys[0], false).await.unwrap();
        assert_eq!((s1b.progress, &s1b.nonce), (1, &s1.nonce));
        // A wrong share resets progress.
        assert!(matches!(
            core.unseal(&[9; 33], false).await,
            Err(SealError::BadKey(_))
        ));
        assert_eq!(core.status().await.unwrap().progress, 0);
        // Reset clears progress.
        core.unseal(&out.keys[1], false).await.unwrap();
        let st = core.unseal(&[], true).await.unwrap();
        assert_eq!((st.progress, st.nonce.as_str()), (0, ""));
        // Three shares unseal.
        for k in &out.keys[2..5] {
            core.unseal(k, false).await.unwrap();
        }
        let st = core.status().await.unwrap();
        assert!(!st.sealed && st.progress == 0 && !st.cluster_id.is_empty());
        let claimed = core.claim_init_root_token().await.unwrap().unwrap();
        assert_eq!(claimed.as_str(), out.root_token.as_str());
        // Claimable again until acknowledged (the claimer may crash before storing it).
        assert!(core.claim_init_root_token().await.unwrap().is_some());

        // Service keys: stable per service, different between services.
        let (t, kv1) = core.service_key(ServiceName::Kv, 0).await.unwrap();
        assert_eq!(t, 1);
        let (_, kv2) = core.service_key(ServiceName::Kv, 1).await.unwrap();
        let (_, pki) = core.service_key(ServiceName::Pki, 1).await.unwrap();
        assert_eq!(*kv1, *kv2);
        assert_ne!(*kv1, *pki);
        assert!(matches!(
            core.service_key(ServiceName::Kv, 7).await,
            Err(SealError::UnknownTerm(7))
        ));

        core.seal().await.unwrap();
        assert!(core.status().await.unwrap().sealed);
        assert!(matches!(
            core.claim_init_root_token().await,
            Err(SealError::Sealed)
        ));

        // A restart keeps it initialized and sealed; another 3 of the 5 unseal it.
        drop(core);
        let core = SealCore::load(db.namespace("seal").await.unwrap(), db.kind())
            .await
            .unwrap();
        let st = core.status().await.unwrap();
        assert!(st.initialized && st.sealed);
        for k in [&out.keys[4], &out.keys[0], &out.keys[2]] {
            core.unseal(k, false).await.unwrap();
        }
        assert!(!core.status().await.unwrap().sealed);
        let (_, again) = core.service_key(ServiceName::Kv, 0).await.unwrap();
        assert_eq!(*again, *kv1, "keys survive a restart");
        assert!(core.claim_init_root_token().await.unwrap().is_some());
        core.ack_init_root_token().await.unwrap();
        assert!(core.claim_init_root_token().await.unwrap().is_none());
        core.ack_init_root_token().await.unwrap();
        // Nothing stored contains the root token or a share in the clear.
        let raw = db
            .namespace("seal")
            .await
            .unwrap()
            .get(SEAL_ROW)
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&raw);
        assert!(!text.contains(out.root_token.as_str()));
        for k in &out.keys {
            assert!(!text.contains(&hex::encode(k.as_slice())));
        }
    }

    #[tokio::test]
    async fn lifecycle_sqlite() {
        lifecycle(StorageConfig::SqliteMemory).await;
    }

    #[tokio::test]
    async fn lifecycle_postgres() {
        let pg = TestPg::new().await;
        lifecycle(pg.config()).await;
    }

    #[tokio::test]
    async fn bad_configs_store_nothing() {
        let (_db, core) = core_on(&StorageConfig::SqliteMemory).await;
        for (n, t) in [(0, 0), (3, 0), (3, 4), (256, 3), (5, 1)] {
            assert!(
                matches!(core.init(n, t, "").await, Err(SealError::InvalidConfig(_))),
                "{n}/{t}"
            );
        }
        assert!(!core.status().await.unwrap().initialized);
    }

    #[tokio::test]
    async fn single_share_and_fixed_root_token() {
        let (_db, core) = core_on(&StorageConfig::SqliteMemory).await;
        let out = core.init(1, 1, "root").await.unwrap();
        assert_eq!(out.keys[0].len(), 32);
        assert_eq!(out.root_token.as_str(), "root");
        let st = core.unseal(&out.keys[0], false).await.unwrap();
        assert!(!st.sealed);
        assert_eq!(
            core.claim_init_root_token()
                .await
                .unwrap()
                .unwrap()
                .as_str(),
            "root"
        );
    }

    #[tokio::test]
    async fn concurrent_inits_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StorageConfig::Sqlite {
            path: dir.path().join("s.db").to_string_lossy().into(),
        };
        let (_d1, a) = core_on(&cfg).await;
        let (_d2, b) = core_on(&cfg).await;
        let (ra, rb) = tokio::join!(a.init(3, 2, ""), b.init(3, 2, ""));
        assert_eq!(ra.is_ok() as u8 + rb.is_ok() as u8, 1);
    }
}
