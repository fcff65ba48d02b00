//! The seal state machine: init, unseal with progress, seal, and service keys
//! (rotation, rekey and root token generation are in [`crate::keys`]).
//!
//! Stored (namespace `seal`, one row, created atomically at init and from then
//! on only replaced by compare-and-swap):
//!
//! ```text
//! core/seal  →  JSON {type, secret_shares, secret_threshold, share_hashes, keyring,
//!                     pending_root_token?, pending_root_tokens?}
//! ```
//!
//! `keyring` is sealed with AES-256-GCM under the root key (term 0 header) and
//! holds the barrier keyring terms (with their install times) and the cluster
//! name and id.
//! `pending_root_token` is the root token minted at init, sealed under the seal
//! service's own key, until the auth service has put it in the token store
//! (claim, then acknowledge); `pending_root_tokens` are those made by
//! generate-root, the same way. `share_hashes` are SHA-256 digests of the
//! unseal shares (uniformly random 256-bit values, so the digests reveal
//! nothing useful); they let a wrong share be refused at once rather than at
//! the threshold. The root key itself is never stored; while unsealed it is
//! held in memory (zeroized on seal) so that a rotation can re-seal the keyring.
//!
//! With an auto seal (`type: "static"` or `"transit"`, see
//! [`crate::autoseal`]) the row also holds `recovery` (recovery key
//! configuration and digests) and `stored_key` (the root key wrapped by the
//! static seal key, with its key id, or the transit engine's `vault:v1:…`
//! ciphertext, with the transit key's name); `secret_shares`/`secret_threshold` are 1 and `share_hashes` is empty
//! (there are no unseal keys). The service unseals itself at start and after
//! init; a quorum of recovery keys authorizes unsealing after a `sys/seal`,
//! rekey and generate-root. A transit seal whose server cannot be reached at
//! start (or is sealed) is retried with backoff in the background, sealed
//! meanwhile ([`retry_auto_unseal`]).

use std::collections::BTreeMap;

use base64::Engine as _;
use bulwark_proto::seal::v1::{SealState, SealStatus};
use bulwark_shared::barrier::{open_value, seal_value};
use bulwark_shared::config::SealSettings;
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

use crate::autoseal::{self, AutoSeal, RecoveryConfig, StoredRootKey};
use crate::error::SealError;
use crate::shamir;

const SEAL_ROW: &str = "core/seal";
const KEYRING_AAD: &[u8] = b"bulwark/seal/keyring";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredSeal {
    #[serde(rename = "type")]
    pub(crate) seal_type: String,
    pub(crate) secret_shares: u32,
    pub(crate) secret_threshold: u32,
    pub(crate) share_hashes: Vec<String>,
    pub(crate) keyring: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) pending_root_token: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) pending_root_tokens: Vec<PendingRoot>,
    /// Auto seal: the recovery keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) recovery: Option<RecoveryConfig>,
    /// Auto seal: the root key, wrapped by the seal key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) stored_key: Option<StoredRootKey>,
}

/// The keys that authorize unsealing, rekey and generate-root: the unseal
/// key shares (Shamir), or the recovery key shares (auto seal).
pub(crate) struct Quorum<'a> {
    pub(crate) shares: u32,
    pub(crate) threshold: u32,
    /// `Some` for recovery keys.
    pub(crate) recovery: Option<&'a RecoveryConfig>,
    hashes: &'a [String],
}

impl Quorum<'_> {
    /// The length a share must have.
    pub(crate) fn share_len(&self) -> usize {
        shamir::share_len(self.shares)
    }

    /// Whether `share` is one of the keys (compared by digest, in constant
    /// time over all of them).
    pub(crate) fn knows(&self, share: &[u8]) -> bool {
        let digest = match self.recovery {
            Some(_) => autoseal::hash_recovery_share(share),
            None => hash_share(share),
        };
        autoseal::among(self.hashes, &digest)
    }
}

impl StoredSeal {
    pub(crate) fn quorum(&self) -> Quorum<'_> {
        match &self.recovery {
            Some(rc) => Quorum {
                shares: rc.shares,
                threshold: rc.threshold,
                recovery: Some(rc),
                hashes: &rc.share_hashes,
            },
            None => Quorum {
                shares: self.secret_shares,
                threshold: self.secret_threshold,
                recovery: None,
                hashes: &self.share_hashes,
            },
        }
    }
}

/// A root token made by generate-root, waiting for the auth service.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PendingRoot {
    pub(crate) id: String,
    /// Sealed under the pending-root key, AAD bound to the id; base64.
    pub(crate) token: String,
    /// Unix seconds.
    pub(crate) created: i64,
}

/// A pending root token handed to the auth service.
pub struct PendingClaim {
    pub token: Zeroizing<String>,
    /// For the acknowledgement; [`INIT_ROOT_ID`] for the token minted at init.
    pub id: String,
    /// Whether another token is pending after this one.
    pub more: bool,
}

/// The id of the root token minted at init.
pub const INIT_ROOT_ID: &str = "init";

/// How long a root token made by generate-root stays claimable: the gateway
/// has the auth service claim it at once, so an older one was never shown to
/// anyone (its request failed) and is dropped instead of being stored.
pub(crate) const GENERATED_ROOT_CLAIM_SECS: i64 = 15 * 60;

/// The decrypted keyring: only ever in memory while unsealed.
#[derive(Serialize, Deserialize)]
pub(crate) struct KeyringDoc {
    pub(crate) active_term: u32,
    /// term → base64 key.
    pub(crate) keys: BTreeMap<u32, String>,
    pub(crate) cluster_name: String,
    pub(crate) cluster_id: String,
    /// term → RFC 3339 time the term was installed (absent in keyrings
    /// written before rotation existed).
    #[serde(default)]
    pub(crate) install_times: BTreeMap<u32, String>,
}

impl Drop for KeyringDoc {
    fn drop(&mut self) {
        self.keys.values_mut().for_each(Zeroize::zeroize);
    }
}

pub(crate) struct Unsealed {
    pub(crate) active_term: u32,
    pub(crate) keys: BTreeMap<u32, DataKey>,
    pub(crate) install_times: BTreeMap<u32, String>,
    pub(crate) cluster_name: String,
    pub(crate) cluster_id: String,
    /// The root key, to re-seal the keyring (rotation, rekey).
    pub(crate) root_key: DataKey,
}

/// An operation that collects unseal key shares (rekey, generate-root).
pub(crate) struct ShareCollection {
    pub(crate) nonce: String,
    pub(crate) progress: Vec<Zeroizing<Vec<u8>>>,
}

/// A rekey in progress: the new configuration and the current shares given.
pub(crate) struct RekeyAttempt {
    pub(crate) shares: u32,
    pub(crate) threshold: u32,
    pub(crate) collect: ShareCollection,
}

/// A root token generation in progress.
pub(crate) struct GenerateRootAttempt {
    pub(crate) otp: Zeroizing<String>,
    pub(crate) collect: ShareCollection,
}

#[derive(Default)]
pub(crate) struct State {
    pub(crate) config: Option<StoredSeal>,
    pub(crate) unsealed: Option<Unsealed>,
    progress: Vec<Zeroizing<Vec<u8>>>,
    nonce: String,
    pub(crate) rekey: Option<RekeyAttempt>,
    /// Auto seal: a rekey of the recovery keys.
    pub(crate) recovery_rekey: Option<RekeyAttempt>,
    pub(crate) generate_root: Option<GenerateRootAttempt>,
    /// A `sys/seal` was asked for: the background auto-unseal stops.
    pub(crate) auto_unseal_stopped: bool,
}

/// What init hands back once: the shares (unseal keys, or recovery keys
/// with an auto seal) and the root token.
pub struct InitOutput {
    pub keys: Vec<Zeroizing<Vec<u8>>>,
    pub recovery_keys: Vec<Zeroizing<Vec<u8>>>,
    pub root_token: Zeroizing<String>,
}

/// What `sys/init` asks for (0 = not given, as Vault reads it).
#[derive(Debug, Default, Clone, Copy)]
pub struct InitParams<'a> {
    pub secret_shares: u32,
    pub secret_threshold: u32,
    pub recovery_shares: u32,
    pub recovery_threshold: u32,
    /// A fixed root token (dev mode); "" = random.
    pub root_token_id: &'a str,
}

pub struct SealCore {
    pub(crate) storage: Storage,
    storage_type: &'static str,
    pub(crate) state: Mutex<State>,
    tx: watch::Sender<SealState>,
    /// The configured auto seal; `None` = Shamir.
    pub(crate) seal: Option<AutoSeal>,
}

pub(crate) fn hash_share(share: &[u8]) -> String {
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

/// The associated data of a root token made by generate-root.
pub(crate) fn generated_root_aad(id: &str) -> Vec<u8> {
    [PENDING_ROOT_AAD, b"/", id.as_bytes()].concat()
}

/// Vault's SealConfig.Validate, in its order.
pub(crate) fn validate_config(shares: u32, threshold: u32) -> Result<(), SealError> {
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
    Ok(())
}

/// Vault's checks of the init parameters: those of the other kind of seal
/// are refused by name (`validateInitParameters`), then the configuration
/// in force is validated.
fn check_init_params(p: &InitParams<'_>, auto: Option<&'static str>) -> Result<(), SealError> {
    let given = |pairs: [(&'static str, u32); 2]| -> Vec<&'static str> {
        pairs
            .into_iter()
            .filter(|(_, v)| *v != 0)
            .map(|(n, _)| n)
            .collect()
    };
    if let Some(seal_type) = auto {
        let wrong = given([
            ("secret_shares", p.secret_shares),
            ("secret_threshold", p.secret_threshold),
        ]);
        if !wrong.is_empty() {
            return Err(SealError::NotApplicable {
                params: wrong.join(","),
                seal_type,
            });
        }
        if p.recovery_shares < 1 {
            return Err(SealError::NoRecoveryShares);
        }
        validate_config(p.recovery_shares, p.recovery_threshold).map_err(|e| match e {
            SealError::InvalidConfig(why) => SealError::InvalidRecoveryConfig(why),
            other => other,
        })
    } else {
        let wrong = given([
            ("recovery_shares", p.recovery_shares),
            ("recovery_threshold", p.recovery_threshold),
        ]);
        if !wrong.is_empty() {
            return Err(SealError::NotApplicable {
                params: wrong.join(","),
                seal_type: autoseal::SHAMIR,
            });
        }
        validate_config(p.secret_shares, p.secret_threshold).map_err(|e| match e {
            SealError::InvalidConfig(why) => SealError::InvalidSealConfig(why),
            other => other,
        })
    }
}

/// The current time as the keyring records install times.
pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// The key sealing the pending root token: the seal service's own key of the
/// first keyring term.
pub(crate) fn pending_root_key(keys: &BTreeMap<u32, DataKey>) -> (u32, DataKey) {
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

/// Refuses a configured seal other than the one the storage was
/// initialized with (`configured`: the type of the `seal` block, `None`
/// without one).
pub(crate) fn check_seal_type(
    cfg: &StoredSeal,
    configured: Option<&'static str>,
) -> Result<(), SealError> {
    if cfg.seal_type == configured.unwrap_or(autoseal::SHAMIR) {
        return Ok(());
    }
    Err(SealError::SealMigration {
        stored: cfg.seal_type.clone(),
        configured: match configured {
            Some(autoseal::STATIC) => "has seal \"static\"",
            Some(_) => "has seal \"transit\"",
            None => "has no seal block (Shamir unseal keys)",
        },
    })
}

/// A transit seal at start: unseals once the transit server answers,
/// retrying with backoff (sealed meanwhile, seal-status answering). Ends
/// when unsealed, on `sys/seal`, when not initialized (init unseals), or
/// with the service.
pub(crate) async fn retry_auto_unseal(core: std::sync::Weak<SealCore>) {
    let mut delay = std::time::Duration::from_millis(250);
    let mut first = true;
    loop {
        if !first {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(std::time::Duration::from_secs(10));
        }
        first = false;
        let Some(core) = core.upgrade() else {
            return;
        };
        // Read under the lock, call the transit server without it.
        let cfg = {
            let state = core.state.lock().await;
            match (&state.config, &state.unsealed) {
                (Some(cfg), None) if !state.auto_unseal_stopped => cfg.clone(),
                _ => return,
            }
        };
        match core.open_with_stored_key(&cfg).await {
            Ok(u) => {
                let mut state = core.state.lock().await;
                let unchanged = state
                    .config
                    .as_ref()
                    .is_some_and(|c| c.keyring == cfg.keyring);
                if state.unsealed.is_none() && !state.auto_unseal_stopped && unchanged {
                    tracing::info!(term = u.active_term, "unsealed with the transit seal");
                    state.unsealed = Some(u);
                    state.progress.clear();
                    state.nonce.clear();
                    core.publish(&state);
                    return;
                }
                if state.unsealed.is_some() || state.auto_unseal_stopped {
                    return;
                }
                // Rekeyed meanwhile: try again with what is stored now.
            }
            Err(e) => tracing::warn!(
                error = %e,
                retry_in_ms = delay.as_millis() as u64,
                "auto-unseal failed: the seal service stays sealed and tries again"
            ),
        }
    }
}

impl SealCore {
    /// A Shamir seal (no `seal` block).
    pub async fn load(storage: Storage, storage_type: &'static str) -> Result<Self, SealError> {
        Self::load_with(storage, storage_type, None).await
    }

    /// With `seal`, an auto seal: once initialized, the service unseals
    /// itself here (a key that does not open the stored root key is logged
    /// and leaves it sealed, still answering status). Fails if the storage
    /// was initialized with the other kind of seal.
    pub async fn load_with(
        storage: Storage,
        storage_type: &'static str,
        seal: Option<SealSettings>,
    ) -> Result<Self, SealError> {
        let config = read_config(&storage).await?;
        if let Some(cfg) = &config {
            check_seal_type(cfg, seal.as_ref().map(SealSettings::seal_type))?;
        }
        let initial = SealState {
            initialized: config.is_some(),
            sealed: true,
            active_term: 0,
        };
        let (tx, _) = watch::channel(initial);
        let core = SealCore {
            storage,
            storage_type,
            state: Mutex::new(State {
                config,
                ..State::default()
            }),
            tx,
            seal: seal.map(AutoSeal::from),
        };
        // A transit seal is unsealed in the background (its server may not
        // answer yet): see `needs_retrying_unseal`.
        if !core.seal.as_ref().is_some_and(AutoSeal::retries) {
            let mut state = core.state.lock().await;
            core.auto_unseal(&mut state).await;
        }
        Ok(core)
    }

    /// Whether [`retry_auto_unseal`] has work: a transit seal, initialized
    /// and still sealed.
    pub(crate) async fn needs_retrying_unseal(&self) -> bool {
        let state = self.state.lock().await;
        self.seal.as_ref().is_some_and(AutoSeal::retries)
            && state.config.is_some()
            && state.unsealed.is_none()
    }

    /// Auto seal, initialized and sealed: unseals with the stored root key.
    /// A failure is logged (key ids only) and leaves the service sealed.
    async fn auto_unseal(&self, state: &mut State) {
        let (Some(seal), Some(cfg), None) = (&self.seal, &state.config, &state.unsealed) else {
            return;
        };
        let opened = match check_seal_type(cfg, Some(seal.seal_type())) {
            Ok(()) => self.open_with_stored_key(cfg).await,
            Err(e) => Err(e),
        };
        match opened {
            Ok(u) => {
                tracing::info!(
                    term = u.active_term,
                    seal = seal.seal_type(),
                    "unsealed with the auto seal"
                );
                state.unsealed = Some(u);
                state.progress.clear();
                state.nonce.clear();
                self.publish(state);
            }
            Err(e) => tracing::error!(
                error = %e,
                "auto-unseal failed: the seal service stays sealed (seal-status still answers)"
            ),
        }
    }

    /// Auto seal: the keyring, opened with the root key unwrapped by the
    /// configured seal (static key, or transit server).
    pub(crate) async fn open_with_stored_key(
        &self,
        cfg: &StoredSeal,
    ) -> Result<Unsealed, SealError> {
        let seal = self.seal.as_ref().ok_or(SealError::SealMigration {
            stored: cfg.seal_type.clone(),
            configured: "has no seal block (Shamir unseal keys)",
        })?;
        let stored = cfg
            .stored_key
            .as_ref()
            .ok_or(SealError::Corrupt("auto seal without a stored root key"))?;
        let root = seal.unwrap(stored).await?;
        open_keyring(cfg, &root).map_err(|e| match e {
            SealError::BadKey(_) => {
                SealError::Corrupt("the stored root key does not open the keyring")
            }
            other => other,
        })
    }

    pub fn subscribe(&self) -> watch::Receiver<SealState> {
        self.tx.subscribe()
    }

    /// Refreshes the cached config from storage if this process has not seen
    /// an init yet (another replica may have done it).
    pub(crate) async fn config(&self, state: &mut State) -> Result<Option<StoredSeal>, SealError> {
        if state.config.is_none() {
            state.config = read_config(&self.storage).await?;
            if state.config.is_some() {
                self.publish(state);
                // Initialized by another seal process: unseal as at start.
                self.auto_unseal(state).await;
            }
        }
        Ok(state.config.clone())
    }

    pub(crate) fn publish(&self, state: &State) {
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

    pub(crate) fn status_of(&self, state: &State) -> SealStatus {
        let cfg = state.config.as_ref();
        let unsealed = state.unsealed.as_ref();
        // Before init, the configured seal; after, the stored one.
        let (seal_type, recovery_seal) = match cfg {
            Some(c) => (c.seal_type.clone(), c.recovery.is_some()),
            None => match &self.seal {
                Some(s) => (s.seal_type().to_string(), true),
                None => (autoseal::SHAMIR.to_string(), false),
            },
        };
        SealStatus {
            r#type: seal_type,
            recovery_seal,
            initialized: cfg.is_some(),
            sealed: unsealed.is_none(),
            threshold: cfg.map_or(0, |c| c.quorum().threshold),
            shares: cfg.map_or(0, |c| c.quorum().shares),
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

    /// A Shamir init: `shares` unseal keys, `threshold` of them unseal.
    pub async fn init(
        &self,
        shares: u32,
        threshold: u32,
        root_token_id: &str,
    ) -> Result<InitOutput, SealError> {
        self.initialize(InitParams {
            secret_shares: shares,
            secret_threshold: threshold,
            root_token_id,
            ..InitParams::default()
        })
        .await
    }

    /// `sys/init`. A Shamir seal splits the root key into unseal keys and
    /// stays sealed; an auto seal stores the root key wrapped by the seal
    /// key, splits a separate recovery key into recovery keys, and is
    /// unsealed at once (Vault unseals with the stored keys after init).
    pub async fn initialize(&self, p: InitParams<'_>) -> Result<InitOutput, SealError> {
        check_init_params(&p, self.seal.as_ref().map(AutoSeal::seal_type))?;
        let root_token_id = p.root_token_id;
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
            install_times: [(1u32, now_rfc3339())].into_iter().collect(),
        };
        let (pterm, pkey) = pending_root_key(&keys);
        let pending = seal_value(pterm, &pkey, PENDING_ROOT_AAD, root_token.as_bytes());
        let sealed_keyring = seal_doc(&doc, &root_key);
        let mut stored = StoredSeal {
            seal_type: autoseal::SHAMIR.into(),
            secret_shares: p.secret_shares,
            secret_threshold: p.secret_threshold,
            share_hashes: Vec::new(),
            keyring: sealed_keyring,
            pending_root_token: Some(base64::engine::general_purpose::STANDARD.encode(pending)),
            pending_root_tokens: Vec::new(),
            recovery: None,
            stored_key: None,
        };
        let (parts, recovery_parts) = match &self.seal {
            None => {
                let parts =
                    shamir::split(&root_key, p.secret_shares as u8, p.secret_threshold as u8);
                stored.share_hashes = parts.iter().map(|p| hash_share(p)).collect();
                (parts, Vec::new())
            }
            Some(seal) => {
                // As Vault under an auto seal: one stored "share", the root key.
                let (recovery, parts) =
                    autoseal::new_recovery(p.recovery_shares, p.recovery_threshold);
                stored.seal_type = seal.seal_type().into();
                stored.secret_shares = 1;
                stored.secret_threshold = 1;
                stored.recovery = Some(recovery);
                stored.stored_key = Some(seal.wrap(&root_key).await?);
                (Vec::new(), parts)
            }
        };
        // Opened before the commit, so nothing can fail after it.
        let unsealed = match &self.seal {
            Some(_) => Some(unsealed_from(&doc, &root_key)?),
            None => None,
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
        if let Some(u) = unsealed {
            tracing::info!(
                recovery_shares = p.recovery_shares,
                recovery_threshold = p.recovery_threshold,
                seal = self.seal.as_ref().map_or("", AutoSeal::seal_type),
                "initialized with the auto seal; unsealed"
            );
            state.unsealed = Some(u);
        } else {
            tracing::info!(
                shares = p.secret_shares,
                threshold = p.secret_threshold,
                "initialized; sealed until unsealed"
            );
        }
        self.publish(&state);
        Ok(InitOutput {
            keys: parts,
            recovery_keys: recovery_parts,
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
        // Unseal keys, or (auto seal, after a `sys/seal`) recovery keys.
        let quorum = cfg.quorum();
        if key.len() != quorum.share_len() {
            return reset_with(&mut state, "wrong length for a key share");
        }
        if !quorum.knows(key) {
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
        if (state.progress.len() as u32) < quorum.threshold {
            return Ok(self.status_of(&state));
        }
        let parts = std::mem::take(&mut state.progress);
        state.nonce.clear();
        let unsealed = match quorum.recovery {
            None => {
                let root_key = shamir::combine(&parts, quorum.threshold as u8)
                    .ok_or(SealError::BadKey("the shares do not combine"))?;
                open_keyring(&cfg, &root_key)?
            }
            // The recovery keys authorize; the seal key opens.
            Some(rc) => {
                if !autoseal::recovery_key_matches(rc, &parts) {
                    return Err(SealError::BadKey("recovery key verification failed"));
                }
                self.open_with_stored_key(&cfg).await?
            }
        };
        drop(parts);
        tracing::info!(term = unsealed.active_term, "unsealed");
        state.unsealed = Some(unsealed);
        self.publish(&state);
        Ok(self.status_of(&state))
    }

    pub async fn seal(&self) -> Result<SealStatus, SealError> {
        let mut state = self.state.lock().await;
        // Dropping `Unsealed` zeroizes every key it held (and the root key);
        // attempts that collected shares are dropped with their shares.
        state.unsealed = None;
        state.progress.clear();
        state.nonce.clear();
        state.rekey = None;
        state.recovery_rekey = None;
        state.generate_root = None;
        state.auto_unseal_stopped = true;
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
        let mut state = self.state.lock().await;
        let u = state.unsealed.as_ref().ok_or(SealError::Sealed)?;
        let term = if term == 0 { u.active_term } else { term };
        if !u.keys.contains_key(&term) {
            // Another seal process may have rotated: reload the keyring.
            self.reload_keyring(&mut state).await?;
        }
        let u = state.unsealed.as_ref().ok_or(SealError::Sealed)?;
        let base = u.keys.get(&term).ok_or(SealError::UnknownTerm(term))?;
        let info = format!("service:{}:term:{term}", caller.as_str());
        Ok((term, derive(base.as_slice(), info.as_bytes())))
    }

    /// The next root token waiting for the auth service: the one minted at
    /// init first, then those made by generate-root (oldest first, only
    /// while young enough to have been shown to a client).
    pub async fn claim_init_root_token(&self) -> Result<Option<PendingClaim>, SealError> {
        let mut state = self.state.lock().await;
        if state.unsealed.is_none() {
            return Err(SealError::Sealed);
        }
        // Read afresh: another replica may have had it acknowledged.
        state.config = read_config(&self.storage).await?;
        let u = state.unsealed.as_ref().ok_or(SealError::Sealed)?;
        let Some(cfg) = state.config.as_ref() else {
            return Ok(None);
        };
        let now = chrono::Utc::now().timestamp();
        let generated: Vec<&PendingRoot> = cfg
            .pending_root_tokens
            .iter()
            .filter(|p| now - p.created <= GENERATED_ROOT_CLAIM_SECS)
            .collect();
        let (id, sealed_b64, aad, rest) = match (&cfg.pending_root_token, generated.first()) {
            (Some(t), _) => (
                INIT_ROOT_ID.to_string(),
                t.clone(),
                PENDING_ROOT_AAD.to_vec(),
                generated.len(),
            ),
            (None, Some(p)) => (
                p.id.clone(),
                p.token.clone(),
                generated_root_aad(&p.id),
                generated.len() - 1,
            ),
            (None, None) => return Ok(None),
        };
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(sealed_b64)
            .map_err(|_| SealError::Corrupt("pending root token encoding"))?;
        let (_, key) = pending_root_key(&u.keys);
        let plain =
            open_value(&key, &aad, &sealed).ok_or(SealError::Corrupt("pending root token"))?;
        let token = String::from_utf8(plain.to_vec())
            .map_err(|_| SealError::Corrupt("pending root token"))?;
        Ok(Some(PendingClaim {
            token: Zeroizing::new(token),
            id,
            more: rest > 0,
        }))
    }

    /// Forgets the pending root token `id` ("" = the one minted at init),
    /// and any generated one too old to be claimed (compare-and-swap on the
    /// seal row).
    pub async fn ack_init_root_token(&self, id: &str) -> Result<(), SealError> {
        let mut state = self.state.lock().await;
        if state.unsealed.is_none() {
            return Err(SealError::Sealed);
        }
        let now = chrono::Utc::now().timestamp();
        self.update_row(&mut state, |cfg| {
            let before = (
                cfg.pending_root_token.is_some(),
                cfg.pending_root_tokens.len(),
            );
            if id.is_empty() || id == INIT_ROOT_ID {
                cfg.pending_root_token = None;
            }
            cfg.pending_root_tokens
                .retain(|p| p.id != id && now - p.created <= GENERATED_ROOT_CLAIM_SECS);
            Ok(before
                != (
                    cfg.pending_root_token.is_some(),
                    cfg.pending_root_tokens.len(),
                ))
        })
        .await
    }

    /// Read-modify-write of the seal row by compare-and-swap: `change`
    /// edits a fresh copy and says whether anything changed (nothing is
    /// written otherwise). Retried when another writer got there first;
    /// the cached configuration follows what is stored.
    pub(crate) async fn update_row(
        &self,
        state: &mut State,
        mut change: impl FnMut(&mut StoredSeal) -> Result<bool, SealError>,
    ) -> Result<(), SealError> {
        for _ in 0..CAS_ATTEMPTS {
            let Some(raw) = self.storage.get(SEAL_ROW).await? else {
                return Err(SealError::NotInitialized);
            };
            let mut cfg: StoredSeal = serde_json::from_slice(&raw)
                .map_err(|_| SealError::Corrupt("seal configuration"))?;
            if !change(&mut cfg)? {
                state.config = Some(cfg);
                return Ok(());
            }
            let next = serde_json::to_vec(&cfg).expect("serializable seal config");
            if self.storage.compare_and_swap(SEAL_ROW, &raw, &next).await? {
                state.config = Some(cfg);
                return Ok(());
            }
        }
        Err(SealError::Contended)
    }

    /// Re-reads the stored keyring with the root key held in memory (after
    /// a rotation by another seal process). A keyring the key no longer
    /// opens (rekeyed elsewhere) is left as it is.
    async fn reload_keyring(&self, state: &mut State) -> Result<(), SealError> {
        let Some(cfg) = read_config(&self.storage).await? else {
            return Ok(());
        };
        let Some(u) = state.unsealed.as_ref() else {
            return Err(SealError::Sealed);
        };
        if let Ok(fresh) = open_keyring(&cfg, &u.root_key) {
            state.unsealed = Some(fresh);
            state.config = Some(cfg);
            self.publish(state);
        }
        Ok(())
    }
}

/// How many times a read-modify-write of the seal row is retried.
const CAS_ATTEMPTS: usize = 16;

pub(crate) async fn read_config(storage: &Storage) -> Result<Option<StoredSeal>, SealError> {
    match storage.get(SEAL_ROW).await? {
        None => Ok(None),
        Some(raw) => serde_json::from_slice(&raw)
            .map(Some)
            .map_err(|_| SealError::Corrupt("seal configuration")),
    }
}

/// Decrypts the stored keyring with `root_key`.
pub(crate) fn open_doc(cfg: &StoredSeal, root_key: &DataKey) -> Result<KeyringDoc, SealError> {
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(&cfg.keyring)
        .map_err(|_| SealError::Corrupt("keyring encoding"))?;
    let plain = open_value(root_key, KEYRING_AAD, &sealed)
        .ok_or(SealError::BadKey("the shares do not open the keyring"))?;
    serde_json::from_slice(&plain).map_err(|_| SealError::Corrupt("keyring"))
}

/// Encrypts a keyring under `root_key`, as stored (base64).
pub(crate) fn seal_doc(doc: &KeyringDoc, root_key: &DataKey) -> String {
    let plain = Zeroizing::new(serde_json::to_vec(doc).expect("serializable keyring"));
    base64::engine::general_purpose::STANDARD.encode(seal_value(0, root_key, KEYRING_AAD, &plain))
}

pub(crate) fn open_keyring(cfg: &StoredSeal, root_key: &DataKey) -> Result<Unsealed, SealError> {
    let doc = open_doc(cfg, root_key)?;
    unsealed_from(&doc, root_key)
}

/// The in-memory keyring of a decrypted keyring document.
pub(crate) fn unsealed_from(doc: &KeyringDoc, root_key: &DataKey) -> Result<Unsealed, SealError> {
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
    if !keys.contains_key(&doc.active_term) {
        return Err(SealError::Corrupt("keyring has no active key"));
    }
    Ok(Unsealed {
        active_term: doc.active_term,
        keys,
        install_times: doc.install_times.clone(),
        cluster_name: doc.cluster_name.clone(),
        cluster_id: doc.cluster_id.clone(),
        root_key: Zeroizing::new(**root_key),
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
        assert_eq!(claimed.token.as_str(), out.root_token.as_str());
        assert_eq!((claimed.id.as_str(), claimed.more), (INIT_ROOT_ID, false));
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
        core.ack_init_root_token("").await.unwrap();
        assert!(core.claim_init_root_token().await.unwrap().is_none());
        core.ack_init_root_token("").await.unwrap();
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
                matches!(
                    core.init(n, t, "").await,
                    Err(SealError::InvalidSealConfig(_))
                ),
                "{n}/{t}"
            );
        }
        // Recovery keys are for an auto seal (Vault's message).
        let e = core
            .initialize(InitParams {
                secret_shares: 5,
                secret_threshold: 3,
                recovery_shares: 5,
                ..InitParams::default()
            })
            .await
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "parameters recovery_shares not applicable to seal type shamir"
        );
        let st = core.status().await.unwrap();
        assert!(!st.initialized && st.r#type == "shamir" && !st.recovery_seal);
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
                .token
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
