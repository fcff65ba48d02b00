//! Key management while unsealed: rotation of the barrier keyring, rekey (a
//! new root key split into new shares) and root token generation. Rekey and
//! generate-root collect a threshold of the *current* unseal keys, with a
//! nonce and progress as unseal does; a share that is not a current unseal
//! key is refused at once and clears the attempt's progress.
//!
//! Every change to what is stored is one compare-and-swap of the seal row
//! ([`SealCore::update_row`]): a rotation re-seals the keyring with one more
//! term, a rekey re-seals it under the new root key together with the new
//! share digests and configuration, a generated root token is added to the
//! claimable tokens. Nothing changes in memory unless the write succeeded.
//!
//! With an auto seal the authority is the recovery keys (Vault's behaviour):
//! generate-root and rekey collect recovery keys; a rekey of the root key
//! (`sys/rekey/*`) is forced to one share, re-wraps a new root key with the
//! seal key and returns no shares; the recovery keys themselves are rekeyed
//! by [`RekeyTarget::Recovery`] (`sys/rekey-recovery-key/*`).

use base64::Engine as _;
use bulwark_proto::seal::v1::{GenerateRootStatus, KeyStatusResponse, RekeyStatus};
use bulwark_shared::barrier::seal_value;
use bulwark_shared::keyring::DataKey;
use rand::RngCore;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::autoseal;
use crate::core::{
    generated_root_aad, now_rfc3339, open_doc, pending_root_key, random_base62, read_config,
    seal_doc, unsealed_from, validate_config, GenerateRootAttempt, PendingRoot, RekeyAttempt,
    SealCore, ShareCollection, State, StoredSeal, Unsealed, GENERATED_ROOT_CLAIM_SECS,
};
use crate::error::SealError;
use crate::shamir;

/// Length of the random part of a root token (`hvs.` + 24 base62 characters).
pub const TOKEN_BODY_LEN: usize = 24;
/// Length of a root token, and so of the one-time password it is XORed with.
pub const OTP_LEN: usize = TOKEN_BODY_LEN + 4;

const REKEY: &str = "rekey";
const GENERATE_ROOT: &str = "root generation";

/// What a rekey replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RekeyTarget {
    /// The root key and its unseal keys (`sys/rekey/*`).
    Barrier,
    /// The recovery keys of an auto seal (`sys/rekey-recovery-key/*`).
    Recovery,
}

/// Vault's message for recovery key operations without an auto seal.
const NO_RECOVERY_KEYS: &str = "recovery keys not supported";

/// What a rekey update leads to.
pub enum RekeyOutcome {
    /// More shares are needed.
    Pending(RekeyStatus),
    /// Done: the new shares (raw), and the attempt's nonce.
    Complete {
        keys: Vec<Zeroizing<Vec<u8>>>,
        nonce: String,
    },
}

/// The new root token XORed with the one-time password, base64 without
/// padding (Vault's `roottoken.EncodeToken`). Both must have the same length.
pub fn encode_token(token: &str, otp: &str) -> Option<String> {
    if token.is_empty() || token.len() != otp.len() {
        return None;
    }
    let mixed = Zeroizing::new(
        token
            .bytes()
            .zip(otp.bytes())
            .map(|(a, b)| a ^ b)
            .collect::<Vec<u8>>(),
    );
    Some(base64::engine::general_purpose::STANDARD_NO_PAD.encode(mixed.as_slice()))
}

/// The inverse of [`encode_token`] (what `vault operator generate-root
/// -decode` does); padded base64 is accepted too.
pub fn decode_token(encoded: &str, otp: &str) -> Option<Zeroizing<String>> {
    let raw = Zeroizing::new(
        base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(encoded.trim_end_matches('='))
            .ok()?,
    );
    if raw.len() != otp.len() {
        return None;
    }
    let plain: Vec<u8> = raw.iter().zip(otp.bytes()).map(|(a, b)| a ^ b).collect();
    String::from_utf8(plain).ok().map(Zeroizing::new)
}

fn status_of_key(u: &Unsealed) -> KeyStatusResponse {
    KeyStatusResponse {
        term: u.active_term,
        install_time: u
            .install_times
            .get(&u.active_term)
            .cloned()
            .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_string()),
        encryptions: 0,
    }
}

fn rekey_status_of(cfg: &StoredSeal, r: Option<&RekeyAttempt>) -> RekeyStatus {
    RekeyStatus {
        started: r.is_some(),
        nonce: r.map(|r| r.collect.nonce.clone()).unwrap_or_default(),
        new_threshold: r.map_or(0, |r| r.threshold),
        new_shares: r.map_or(0, |r| r.shares),
        progress: r.map_or(0, |r| r.collect.progress.len() as u32),
        required: cfg.quorum().threshold,
    }
}

fn generate_root_status_of(
    cfg: &StoredSeal,
    g: Option<&GenerateRootAttempt>,
) -> GenerateRootStatus {
    GenerateRootStatus {
        started: g.is_some(),
        nonce: g.map(|g| g.collect.nonce.clone()).unwrap_or_default(),
        progress: g.map_or(0, |g| g.collect.progress.len() as u32),
        required: cfg.quorum().threshold,
        otp_length: OTP_LEN as u32,
        ..Default::default()
    }
}

fn new_collection() -> ShareCollection {
    ShareCollection {
        nonce: uuid::Uuid::new_v4().to_string(),
        progress: Vec::new(),
    }
}

/// Adds one share to an attempt. Refuses a wrong nonce and a share given
/// twice (progress kept), and a share that is not a current unseal key (or
/// recovery key, with an auto seal; progress cleared). Returns whether the
/// threshold is reached.
fn add_share(
    cfg: &StoredSeal,
    c: &mut ShareCollection,
    key: &[u8],
    nonce: &str,
    op: &'static str,
) -> Result<bool, SealError> {
    if nonce != c.nonce {
        return Err(SealError::WrongNonce {
            op,
            nonce: c.nonce.clone(),
        });
    }
    let quorum = cfg.quorum();
    if key.len() != quorum.share_len() {
        c.progress.clear();
        return Err(SealError::BadShare {
            op,
            why: "wrong length for a key share",
        });
    }
    if !quorum.knows(key) {
        c.progress.clear();
        return Err(SealError::BadShare {
            op,
            why: if quorum.recovery.is_some() {
                "it matches none of the recovery keys"
            } else {
                "it matches none of the unseal keys"
            },
        });
    }
    if c.progress
        .iter()
        .any(|p| bool::from(p.as_slice().ct_eq(key)))
    {
        return Err(SealError::DuplicateKey);
    }
    c.progress.push(Zeroizing::new(key.to_vec()));
    Ok(c.progress.len() as u32 >= quorum.threshold)
}

/// Combines a threshold of shares and checks them: unseal keys must give
/// the root key (it opens the stored keyring), which is returned; recovery
/// keys must give the recovery key, and only authorize (`None`).
fn check_quorum(
    cfg: &StoredSeal,
    parts: &[Zeroizing<Vec<u8>>],
    op: &'static str,
) -> Result<Option<DataKey>, SealError> {
    let bad = |why| SealError::BadShare { op, why };
    let quorum = cfg.quorum();
    if let Some(rc) = quorum.recovery {
        return if autoseal::recovery_key_matches(rc, parts) {
            Ok(None)
        } else {
            Err(bad("recovery key verification failed"))
        };
    }
    let root = shamir::combine(parts, quorum.threshold as u8)
        .ok_or_else(|| bad("the shares do not combine"))?;
    open_doc(cfg, &root).map_err(|e| match e {
        SealError::BadKey(_) => bad("root key verification failed"),
        other => other,
    })?;
    Ok(Some(root))
}

/// The attempt of a rekey of `target`.
fn slot(state: &mut State, target: RekeyTarget) -> &mut Option<RekeyAttempt> {
    match target {
        RekeyTarget::Barrier => &mut state.rekey,
        RekeyTarget::Recovery => &mut state.recovery_rekey,
    }
}

fn random_key() -> DataKey {
    let mut k = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(k.as_mut_slice());
    k
}

impl SealCore {
    /// The stored configuration, read afresh, while unsealed.
    async fn unsealed_config(&self, state: &mut State) -> Result<StoredSeal, SealError> {
        let cfg = read_config(&self.storage)
            .await?
            .ok_or(SealError::NotInitialized)?;
        state.config = Some(cfg.clone());
        if state.unsealed.is_none() {
            return Err(SealError::Sealed);
        }
        Ok(cfg)
    }

    /// The active keyring term and when it was installed.
    pub async fn key_status(&self) -> Result<KeyStatusResponse, SealError> {
        let state = self.state.lock().await;
        let u = state.unsealed.as_ref().ok_or(SealError::Sealed)?;
        Ok(status_of_key(u))
    }

    /// Adds a keyring term and makes it the active one. The seal-state
    /// stream announces the new term, so every service switches its writes.
    pub async fn rotate(&self) -> Result<KeyStatusResponse, SealError> {
        let mut state = self.state.lock().await;
        self.unsealed_config(&mut state).await?;
        let root = Zeroizing::new(*state.unsealed.as_ref().ok_or(SealError::Sealed)?.root_key);
        let new_key = random_key();
        let mut rotated: Option<Unsealed> = None;
        self.update_row(&mut state, |cfg| {
            let mut doc = open_doc(cfg, &root).map_err(|e| match e {
                SealError::BadKey(_) => {
                    SealError::Corrupt("keyring does not open with the root key")
                }
                other => other,
            })?;
            let last = doc.keys.keys().next_back().copied().unwrap_or(0);
            let term = last
                .max(doc.active_term)
                .checked_add(1)
                .ok_or(SealError::InvalidRequest("no keyring term left"))?;
            doc.keys.insert(
                term,
                base64::engine::general_purpose::STANDARD.encode(new_key.as_slice()),
            );
            doc.active_term = term;
            doc.install_times.insert(term, now_rfc3339());
            cfg.keyring = seal_doc(&doc, &root);
            rotated = Some(unsealed_from(&doc, &root)?);
            Ok(true)
        })
        .await?;
        let u = rotated.ok_or(SealError::Corrupt("rotation"))?;
        tracing::info!(term = u.active_term, "rotated the barrier keyring");
        let out = status_of_key(&u);
        state.unsealed = Some(u);
        self.publish(&state);
        Ok(out)
    }

    /// The configuration while unsealed, for a rekey of `target`.
    async fn rekey_config(
        &self,
        state: &mut State,
        target: RekeyTarget,
    ) -> Result<StoredSeal, SealError> {
        let cfg = self.unsealed_config(state).await?;
        if target == RekeyTarget::Recovery && cfg.recovery.is_none() {
            return Err(SealError::InvalidRequest(NO_RECOVERY_KEYS));
        }
        Ok(cfg)
    }

    pub async fn rekey_status(&self) -> Result<RekeyStatus, SealError> {
        self.rekey_status_for(RekeyTarget::Barrier).await
    }

    pub async fn rekey_status_for(&self, target: RekeyTarget) -> Result<RekeyStatus, SealError> {
        let mut state = self.state.lock().await;
        let cfg = self.rekey_config(&mut state, target).await?;
        Ok(rekey_status_of(&cfg, slot(&mut state, target).as_ref()))
    }

    /// Starts a rekey to `shares` shares with `threshold`.
    pub async fn rekey_init(&self, shares: u32, threshold: u32) -> Result<RekeyStatus, SealError> {
        self.rekey_init_for(RekeyTarget::Barrier, shares, threshold)
            .await
    }

    /// Starts a rekey of `target`. A rekey of the root key under an auto
    /// seal is forced to one (stored) share, as Vault does with stored keys.
    pub async fn rekey_init_for(
        &self,
        target: RekeyTarget,
        mut shares: u32,
        mut threshold: u32,
    ) -> Result<RekeyStatus, SealError> {
        let mut state = self.state.lock().await;
        let cfg = self.rekey_config(&mut state, target).await?;
        if target == RekeyTarget::Barrier && cfg.recovery.is_some() {
            if (shares, threshold) != (1, 1) {
                tracing::warn!(
                    "auto seal: the root key is stored, forcing rekey shares/threshold to 1"
                );
            }
            (shares, threshold) = (1, 1);
        }
        validate_config(shares, threshold).map_err(|e| match e {
            SealError::InvalidConfig(why) => SealError::InvalidRekeyConfig(why),
            other => other,
        })?;
        let attempt = slot(&mut state, target);
        if attempt.is_some() {
            return Err(SealError::InProgress(REKEY));
        }
        *attempt = Some(RekeyAttempt {
            shares,
            threshold,
            collect: new_collection(),
        });
        tracing::info!(shares, threshold, ?target, "rekey started");
        Ok(rekey_status_of(&cfg, slot(&mut state, target).as_ref()))
    }

    /// Drops the rekey attempt, if any (its shares are zeroized).
    pub async fn rekey_cancel(&self) -> Result<(), SealError> {
        self.rekey_cancel_for(RekeyTarget::Barrier).await
    }

    pub async fn rekey_cancel_for(&self, target: RekeyTarget) -> Result<(), SealError> {
        let mut state = self.state.lock().await;
        self.rekey_config(&mut state, target).await?;
        *slot(&mut state, target) = None;
        Ok(())
    }

    /// Adds a current unseal key to the rekey. At the threshold, a new root
    /// key is generated and split; the keyring is re-sealed under it and the
    /// new configuration stored in one write, after which only the new
    /// shares unseal.
    pub async fn rekey_update(&self, key: &[u8], nonce: &str) -> Result<RekeyOutcome, SealError> {
        self.rekey_update_for(RekeyTarget::Barrier, key, nonce)
            .await
    }

    /// Adds a current unseal key (recovery key, with an auto seal) to the
    /// rekey of `target`. At the threshold: Shamir, a new root key split
    /// into new unseal keys; auto seal, a new root key wrapped by the seal
    /// key (no shares), or a new recovery key split into new recovery keys.
    /// Each is one write of the seal row.
    pub async fn rekey_update_for(
        &self,
        target: RekeyTarget,
        key: &[u8],
        nonce: &str,
    ) -> Result<RekeyOutcome, SealError> {
        let mut state = self.state.lock().await;
        let cfg = self.rekey_config(&mut state, target).await?;
        let attempt = slot(&mut state, target)
            .as_mut()
            .ok_or(SealError::NotInProgress(REKEY))?;
        if !add_share(&cfg, &mut attempt.collect, key, nonce, REKEY)? {
            return Ok(RekeyOutcome::Pending(rekey_status_of(&cfg, Some(attempt))));
        }
        let parts = std::mem::take(&mut attempt.collect.progress);
        let (shares, threshold) = (attempt.shares, attempt.threshold);
        let nonce = attempt.collect.nonce.clone();
        let old_root = check_quorum(&cfg, &parts, REKEY)?;
        drop(parts);
        let keys = match (target, old_root) {
            (RekeyTarget::Recovery, _) => {
                let verified = cfg.recovery.clone();
                let (recovery, keys) = autoseal::new_recovery(shares, threshold);
                self.update_row(&mut state, |cfg| {
                    // The recovery keys given must still be the stored ones.
                    if cfg.recovery != verified {
                        return Err(SealError::Contended);
                    }
                    cfg.recovery = Some(recovery.clone());
                    Ok(true)
                })
                .await?;
                // Recovery keys given to other attempts are keys no more.
                if let Some(g) = state.generate_root.as_mut() {
                    g.collect.progress.clear();
                }
                if let Some(r) = state.rekey.as_mut() {
                    r.collect.progress.clear();
                }
                tracing::info!(shares, threshold, "rekeyed: new recovery keys in force");
                keys
            }
            (RekeyTarget::Barrier, Some(old_root)) => {
                let new_root = random_key();
                let keys = shamir::split(&new_root, shares as u8, threshold as u8);
                let hashes: Vec<String> = keys.iter().map(|k| crate::core::hash_share(k)).collect();
                self.update_row(&mut state, |cfg| {
                    // The keyring as stored now (a rotation may have happened).
                    let doc = open_doc(cfg, &old_root).map_err(|e| match e {
                        SealError::BadKey(_) => SealError::Contended,
                        other => other,
                    })?;
                    cfg.keyring = seal_doc(&doc, &new_root);
                    cfg.secret_shares = shares;
                    cfg.secret_threshold = threshold;
                    cfg.share_hashes = hashes.clone();
                    Ok(true)
                })
                .await?;
                if let Some(u) = state.unsealed.as_mut() {
                    u.root_key = new_root;
                }
                // Shares given to a root generation were keys of the old root key.
                if let Some(g) = state.generate_root.as_mut() {
                    g.collect.progress.clear();
                }
                tracing::info!(shares, threshold, "rekeyed: new unseal keys in force");
                keys
            }
            (RekeyTarget::Barrier, None) => {
                // Auto seal: a new root key, stored wrapped; no shares.
                let seal = self.seal.as_ref().ok_or(SealError::Sealed)?;
                // The root key in force: the one held while unsealed (a
                // rekey by another seal process shows as a keyring it no
                // longer opens).
                let old_root = match state.unsealed.as_ref() {
                    Some(u) => Zeroizing::new(*u.root_key),
                    None => return Err(SealError::Sealed),
                };
                let new_root = random_key();
                let wrapped = seal.wrap(&new_root).await?;
                self.update_row(&mut state, |cfg| {
                    if cfg.stored_key.is_none() {
                        return Err(SealError::Corrupt("auto seal without a stored root key"));
                    }
                    let doc = open_doc(cfg, &old_root).map_err(|e| match e {
                        SealError::BadKey(_) => SealError::Contended,
                        other => other,
                    })?;
                    cfg.keyring = seal_doc(&doc, &new_root);
                    cfg.stored_key = Some(wrapped.clone());
                    Ok(true)
                })
                .await?;
                if let Some(u) = state.unsealed.as_mut() {
                    u.root_key = new_root;
                }
                tracing::info!(
                    seal = seal.seal_type(),
                    "rekeyed: a new root key, wrapped by the auto seal"
                );
                Vec::new()
            }
        };
        *slot(&mut state, target) = None;
        Ok(RekeyOutcome::Complete { keys, nonce })
    }

    pub async fn generate_root_status(&self) -> Result<GenerateRootStatus, SealError> {
        let mut state = self.state.lock().await;
        let cfg = self.unsealed_config(&mut state).await?;
        Ok(generate_root_status_of(&cfg, state.generate_root.as_ref()))
    }

    /// Starts a root token generation with the client's one-time password,
    /// or (`otp` empty) with a generated one, returned in this answer only.
    pub async fn generate_root_init(&self, otp: &str) -> Result<GenerateRootStatus, SealError> {
        let generated = otp.is_empty();
        let otp = Zeroizing::new(if generated {
            random_base62(OTP_LEN)
        } else {
            otp.to_string()
        });
        if otp.len() != OTP_LEN {
            return Err(SealError::InvalidRequest("OTP string is wrong length"));
        }
        let mut state = self.state.lock().await;
        let cfg = self.unsealed_config(&mut state).await?;
        if state.generate_root.is_some() {
            return Err(SealError::InProgress(GENERATE_ROOT));
        }
        state.generate_root = Some(GenerateRootAttempt {
            otp: otp.clone(),
            collect: new_collection(),
        });
        tracing::info!("root token generation started");
        let mut st = generate_root_status_of(&cfg, state.generate_root.as_ref());
        if generated {
            st.otp = otp.to_string();
        }
        Ok(st)
    }

    pub async fn generate_root_cancel(&self) -> Result<(), SealError> {
        let mut state = self.state.lock().await;
        self.unsealed_config(&mut state).await?;
        state.generate_root = None;
        Ok(())
    }

    /// Adds an unseal key to the root generation. At the threshold, mints a
    /// root token, stores it (sealed) among the tokens the auth service
    /// claims, and answers it XORed with the one-time password — and, for
    /// the gateway only, in the clear in `root_token`.
    pub async fn generate_root_update(
        &self,
        key: &[u8],
        nonce: &str,
    ) -> Result<GenerateRootStatus, SealError> {
        let mut state = self.state.lock().await;
        let cfg = self.unsealed_config(&mut state).await?;
        let attempt = state
            .generate_root
            .as_mut()
            .ok_or(SealError::NotInProgress(GENERATE_ROOT))?;
        if !add_share(&cfg, &mut attempt.collect, key, nonce, GENERATE_ROOT)? {
            return Ok(generate_root_status_of(&cfg, Some(attempt)));
        }
        let parts = std::mem::take(&mut attempt.collect.progress);
        let progress = parts.len() as u32;
        let nonce = attempt.collect.nonce.clone();
        let otp = attempt.otp.clone();
        check_quorum(&cfg, &parts, GENERATE_ROOT)?;
        drop(parts);
        let token = Zeroizing::new(format!("hvs.{}", random_base62(TOKEN_BODY_LEN)));
        let encoded = encode_token(&token, &otp)
            .ok_or(SealError::InvalidRequest("OTP string is wrong length"))?;
        let id = uuid::Uuid::new_v4().to_string();
        let sealed = {
            let u = state.unsealed.as_ref().ok_or(SealError::Sealed)?;
            let (pterm, pkey) = pending_root_key(&u.keys);
            seal_value(pterm, &pkey, &generated_root_aad(&id), token.as_bytes())
        };
        let now = chrono::Utc::now().timestamp();
        let entry = PendingRoot {
            id,
            token: base64::engine::general_purpose::STANDARD.encode(sealed),
            created: now,
        };
        self.update_row(&mut state, |cfg| {
            cfg.pending_root_tokens
                .retain(|p| now - p.created <= GENERATED_ROOT_CLAIM_SECS);
            cfg.pending_root_tokens.push(entry.clone());
            Ok(true)
        })
        .await?;
        state.generate_root = None;
        tracing::info!("root token generated; waiting for the auth service to claim it");
        Ok(GenerateRootStatus {
            started: true,
            nonce,
            progress,
            required: cfg.quorum().threshold,
            complete: true,
            encoded_token: encoded,
            otp: String::new(),
            otp_length: OTP_LEN as u32,
            root_token: token.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{InitOutput, INIT_ROOT_ID};
    use bulwark_shared::storage::{test_util::TestPg, Database, StorageConfig};
    use bulwark_shared::ServiceName;

    async fn unsealed_core(
        cfg: &StorageConfig,
        n: u32,
        t: u32,
    ) -> (Database, SealCore, InitOutput) {
        let db = Database::connect(cfg).await.unwrap();
        let core = SealCore::load(db.namespace("seal").await.unwrap(), db.kind())
            .await
            .unwrap();
        let out = core.init(n, t, "").await.unwrap();
        for k in &out.keys[..t as usize] {
            core.unseal(k, false).await.unwrap();
        }
        assert!(!core.status().await.unwrap().sealed);
        (db, core, out)
    }

    async fn unseal_with(core: &SealCore, keys: &[&Zeroizing<Vec<u8>>]) -> bool {
        for k in keys {
            if core.unseal(k, false).await.is_err() {
                return false;
            }
        }
        !core.status().await.unwrap().sealed
    }

    #[test]
    fn otp_encoding_round_trips_like_vault() {
        let token = "hvs.ABCDEFGHIJKLMNOPQRSTUVWX";
        let otp = "0123456789abcdefghijklmnopqr";
        assert_eq!((token.len(), otp.len()), (OTP_LEN, OTP_LEN));
        let enc = encode_token(token, otp).unwrap();
        assert!(!enc.ends_with('='), "unpadded, as Vault's RawStdEncoding");
        assert_eq!(decode_token(&enc, otp).unwrap().as_str(), token);
        assert_eq!(
            decode_token(&format!("{enc}=="), otp).unwrap().as_str(),
            token
        );
        assert!(encode_token(token, "short").is_none());
        assert!(decode_token(&enc, "short").is_none());
        assert!(decode_token("!!", otp).is_none());
    }

    async fn rotation(cfg: StorageConfig) {
        let (db, core, out) = unsealed_core(&cfg, 3, 2).await;
        let mut watch = core.subscribe();
        assert_eq!(watch.borrow_and_update().active_term, 1);
        let st = core.key_status().await.unwrap();
        assert_eq!(st.term, 1);
        assert!(chrono::DateTime::parse_from_rfc3339(&st.install_time).is_ok());
        let (_, kv1) = core.service_key(ServiceName::Kv, 0).await.unwrap();

        let st = core.rotate().await.unwrap();
        assert_eq!(st.term, 2);
        // The stream announces the new term at once.
        assert!(watch.has_changed().unwrap());
        assert_eq!(watch.borrow_and_update().active_term, 2);
        let (t, kv2) = core.service_key(ServiceName::Kv, 0).await.unwrap();
        assert_eq!(t, 2);
        assert_ne!(*kv1, *kv2);
        let (_, old) = core.service_key(ServiceName::Kv, 1).await.unwrap();
        assert_eq!(*old, *kv1, "older terms stay available");
        assert_eq!(core.rotate().await.unwrap().term, 3);

        // Survives seal, restart and unseal.
        core.seal().await.unwrap();
        assert!(matches!(core.rotate().await, Err(SealError::Sealed)));
        assert!(matches!(core.key_status().await, Err(SealError::Sealed)));
        drop(core);
        let core = SealCore::load(db.namespace("seal").await.unwrap(), db.kind())
            .await
            .unwrap();
        assert!(unseal_with(&core, &[&out.keys[2], &out.keys[0]]).await);
        assert_eq!(core.key_status().await.unwrap().term, 3);
        let (_, again) = core.service_key(ServiceName::Kv, 2).await.unwrap();
        assert_eq!(*again, *kv2);
        let (_, again) = core.service_key(ServiceName::Kv, 1).await.unwrap();
        assert_eq!(*again, *kv1);
    }

    #[tokio::test]
    async fn rotation_sqlite() {
        rotation(StorageConfig::SqliteMemory).await;
    }

    #[tokio::test]
    async fn rotation_postgres() {
        let pg = TestPg::new().await;
        rotation(pg.config()).await;
    }

    /// A second seal process sharing the storage learns a rotation when a
    /// service asks it for the new term.
    #[tokio::test]
    async fn another_process_picks_up_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StorageConfig::Sqlite {
            path: dir.path().join("s.db").to_string_lossy().into(),
        };
        let (db, a, out) = unsealed_core(&cfg, 3, 2).await;
        let b = SealCore::load(db.namespace("seal").await.unwrap(), db.kind())
            .await
            .unwrap();
        assert!(unseal_with(&b, &[&out.keys[0], &out.keys[1]]).await);
        a.rotate().await.unwrap();
        let (_, from_a) = a.service_key(ServiceName::Kv, 2).await.unwrap();
        let (t, from_b) = b.service_key(ServiceName::Kv, 2).await.unwrap();
        assert_eq!((t, *from_b), (2, *from_a));
        assert_eq!(b.key_status().await.unwrap().term, 2);
    }

    async fn rekey(cfg: StorageConfig) {
        let (db, core, out) = unsealed_core(&cfg, 5, 3).await;
        core.rotate().await.unwrap();
        let (_, kv_before) = core.service_key(ServiceName::Kv, 1).await.unwrap();
        let st = core.rekey_status().await.unwrap();
        assert!(!st.started && st.nonce.is_empty() && st.required == 3);
        assert!(matches!(
            core.rekey_update(&out.keys[0], "x").await,
            Err(SealError::NotInProgress(_))
        ));
        assert!(matches!(
            core.rekey_init(3, 4).await,
            Err(SealError::InvalidRekeyConfig(_))
        ));
        let st = core.rekey_init(3, 2).await.unwrap();
        assert!(st.started && st.new_shares == 3 && st.new_threshold == 2 && st.progress == 0);
        let nonce = st.nonce.clone();
        assert!(matches!(
            core.rekey_init(3, 2).await,
            Err(SealError::InProgress(_))
        ));
        // Progress, a wrong nonce, a duplicate, a bad key (clears progress).
        let RekeyOutcome::Pending(st) = core.rekey_update(&out.keys[0], &nonce).await.unwrap()
        else {
            panic!("complete too early");
        };
        assert_eq!((st.progress, st.required), (1, 3));
        assert!(matches!(
            core.rekey_update(&out.keys[1], "wrong").await,
            Err(SealError::WrongNonce { .. })
        ));
        assert!(matches!(
            core.rekey_update(&out.keys[0], &nonce).await,
            Err(SealError::DuplicateKey)
        ));
        assert_eq!(core.rekey_status().await.unwrap().progress, 1);
        assert!(matches!(
            core.rekey_update(&[9u8; 33], &nonce).await,
            Err(SealError::BadShare { .. })
        ));
        assert_eq!(core.rekey_status().await.unwrap().progress, 0);
        // Cancel, start again, complete.
        core.rekey_cancel().await.unwrap();
        assert!(!core.rekey_status().await.unwrap().started);
        let nonce = core.rekey_init(3, 2).await.unwrap().nonce;
        for k in &out.keys[1..3] {
            assert!(matches!(
                core.rekey_update(k, &nonce).await.unwrap(),
                RekeyOutcome::Pending(_)
            ));
        }
        let RekeyOutcome::Complete { keys, nonce: done } =
            core.rekey_update(&out.keys[4], &nonce).await.unwrap()
        else {
            panic!("not complete");
        };
        assert_eq!((keys.len(), done), (3, nonce));
        assert!(keys.iter().all(|k| k.len() == 33));
        let st = core.status().await.unwrap();
        assert_eq!((st.shares, st.threshold, st.sealed), (3, 2, false));
        assert!(!core.rekey_status().await.unwrap().started);
        // The old shares no longer unseal; two new ones do; data keys are unchanged.
        core.seal().await.unwrap();
        assert!(!unseal_with(&core, &[&out.keys[0], &out.keys[1], &out.keys[2]]).await);
        drop(core);
        let core = SealCore::load(db.namespace("seal").await.unwrap(), db.kind())
            .await
            .unwrap();
        assert!(!unseal_with(&core, &[&out.keys[3]]).await);
        assert!(unseal_with(&core, &[&keys[2], &keys[0]]).await);
        assert_eq!(core.key_status().await.unwrap().term, 2);
        let (_, kv_after) = core.service_key(ServiceName::Kv, 1).await.unwrap();
        assert_eq!(*kv_before, *kv_after);
        // The init root token is still claimable after a rekey.
        assert_eq!(
            core.claim_init_root_token()
                .await
                .unwrap()
                .unwrap()
                .token
                .as_str(),
            out.root_token.as_str()
        );
        // Nothing stored holds a new share.
        let raw = db
            .namespace("seal")
            .await
            .unwrap()
            .get("core/seal")
            .await
            .unwrap()
            .unwrap();
        for k in &keys {
            assert!(!raw.windows(k.len()).any(|w| w == k.as_slice()));
            assert!(!String::from_utf8_lossy(&raw).contains(&hex::encode(k.as_slice())));
        }
    }

    #[tokio::test]
    async fn rekey_sqlite() {
        rekey(StorageConfig::SqliteMemory).await;
    }

    #[tokio::test]
    async fn rekey_postgres() {
        let pg = TestPg::new().await;
        rekey(pg.config()).await;
    }

    #[tokio::test]
    async fn rekey_to_and_from_a_single_share() {
        let (_db, core, out) = unsealed_core(&StorageConfig::SqliteMemory, 1, 1).await;
        let nonce = core.rekey_init(2, 2).await.unwrap().nonce;
        let RekeyOutcome::Complete { keys, .. } =
            core.rekey_update(&out.keys[0], &nonce).await.unwrap()
        else {
            panic!("one share is the threshold");
        };
        let nonce = core.rekey_init(1, 1).await.unwrap().nonce;
        core.rekey_update(&keys[1], &nonce).await.unwrap();
        let RekeyOutcome::Complete { keys: one, .. } =
            core.rekey_update(&keys[0], &nonce).await.unwrap()
        else {
            panic!("two shares are the threshold");
        };
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].len(), 32);
        core.seal().await.unwrap();
        assert!(unseal_with(&core, &[&one[0]]).await);
    }

    #[tokio::test]
    async fn generate_root() {
        let (_db, core, out) = unsealed_core(&StorageConfig::SqliteMemory, 5, 3).await;
        // The init token is pending; ack it so only the generated one remains.
        core.ack_init_root_token("").await.unwrap();
        assert!(core.claim_init_root_token().await.unwrap().is_none());
        let st = core.generate_root_status().await.unwrap();
        assert!(!st.started && st.otp_length as usize == OTP_LEN && st.required == 3);
        assert!(matches!(
            core.generate_root_init("short").await,
            Err(SealError::InvalidRequest(_))
        ));
        let st = core.generate_root_init("").await.unwrap();
        assert!(st.started && st.otp.len() == OTP_LEN && !st.nonce.is_empty());
        let otp = st.otp.clone();
        assert!(
            core.generate_root_status().await.unwrap().otp.is_empty(),
            "OTP shown once"
        );
        assert!(matches!(
            core.generate_root_init("").await,
            Err(SealError::InProgress(_))
        ));
        let nonce = st.nonce;
        assert!(matches!(
            core.generate_root_update(&out.keys[0], "nope").await,
            Err(SealError::WrongNonce { .. })
        ));
        let st = core
            .generate_root_update(&out.keys[0], &nonce)
            .await
            .unwrap();
        assert_eq!((st.progress, st.complete), (1, false));
        assert!(st.encoded_token.is_empty() && st.root_token.is_empty());
        assert!(matches!(
            core.generate_root_update(&[1u8; 33], &nonce).await,
            Err(SealError::BadShare { .. })
        ));
        assert_eq!(core.generate_root_status().await.unwrap().progress, 0);
        core.generate_root_update(&out.keys[3], &nonce)
            .await
            .unwrap();
        core.generate_root_update(&out.keys[1], &nonce)
            .await
            .unwrap();
        let st = core
            .generate_root_update(&out.keys[2], &nonce)
            .await
            .unwrap();
        assert!(st.complete && st.progress == 3 && st.nonce == nonce);
        let token = decode_token(&st.encoded_token, &otp).unwrap();
        assert!(token.starts_with("hvs.") && token.len() == OTP_LEN);
        assert_eq!(token.as_str(), st.root_token);
        assert!(!core.generate_root_status().await.unwrap().started);
        // Claimable by the auth service until acknowledged by its id.
        let c = core.claim_init_root_token().await.unwrap().unwrap();
        assert_eq!(c.token.as_str(), token.as_str());
        assert_ne!(c.id, INIT_ROOT_ID);
        assert!(!c.more);
        core.ack_init_root_token("some-other-id").await.unwrap();
        assert!(core.claim_init_root_token().await.unwrap().is_some());
        core.ack_init_root_token(&c.id).await.unwrap();
        assert!(core.claim_init_root_token().await.unwrap().is_none());
        // A client-chosen OTP of the right length works too; cancel drops it.
        core.generate_root_init(&"x".repeat(OTP_LEN)).await.unwrap();
        core.generate_root_cancel().await.unwrap();
        assert!(!core.generate_root_status().await.unwrap().started);
        assert!(matches!(
            core.generate_root_update(&out.keys[0], &nonce).await,
            Err(SealError::NotInProgress(_))
        ));
        // Sealing drops an attempt.
        core.generate_root_init("").await.unwrap();
        core.seal().await.unwrap();
        assert!(matches!(
            core.generate_root_status().await,
            Err(SealError::Sealed)
        ));
        assert!(unseal_with(&core, &[&out.keys[0], &out.keys[1], &out.keys[2]]).await);
        assert!(!core.generate_root_status().await.unwrap().started);
    }

    #[tokio::test]
    async fn pending_tokens_come_in_order_and_stale_ones_are_dropped() {
        let (_db, core, out) = unsealed_core(&StorageConfig::SqliteMemory, 1, 1).await;
        let mut made = Vec::new();
        for _ in 0..2 {
            let st = core.generate_root_init("").await.unwrap();
            let done = core
                .generate_root_update(&out.keys[0], &st.nonce)
                .await
                .unwrap();
            made.push(done.root_token);
        }
        let first = core.claim_init_root_token().await.unwrap().unwrap();
        assert_eq!((first.id.as_str(), first.more), (INIT_ROOT_ID, true));
        core.ack_init_root_token(&first.id).await.unwrap();
        let second = core.claim_init_root_token().await.unwrap().unwrap();
        assert_eq!(
            (second.token.as_str(), second.more),
            (made[0].as_str(), true)
        );
        core.ack_init_root_token(&second.id).await.unwrap();
        // Age the last one past the claim window: it is never handed out.
        {
            let mut state = core.state.lock().await;
            core.update_row(&mut state, |cfg| {
                for p in &mut cfg.pending_root_tokens {
                    p.created -= GENERATED_ROOT_CLAIM_SECS + 1;
                }
                Ok(true)
            })
            .await
            .unwrap();
        }
        assert!(core.claim_init_root_token().await.unwrap().is_none());
        core.ack_init_root_token("").await.unwrap();
        let state = core.state.lock().await;
        assert!(state
            .config
            .as_ref()
            .unwrap()
            .pending_root_tokens
            .is_empty());
    }

    /// Racing final shares: exactly one completes.
    #[tokio::test]
    async fn racing_updates_complete_once() {
        let (_db, core, out) = unsealed_core(&StorageConfig::SqliteMemory, 5, 2).await;
        let core = std::sync::Arc::new(core);
        let nonce = core.generate_root_init("").await.unwrap().nonce;
        core.generate_root_update(&out.keys[0], &nonce)
            .await
            .unwrap();
        let tasks: Vec<_> = out.keys[1..5]
            .iter()
            .map(|k| {
                let (core, k, nonce) = (core.clone(), k.clone(), nonce.clone());
                tokio::spawn(async move { core.generate_root_update(&k, &nonce).await })
            })
            .collect();
        let mut complete = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(st) if st.complete => complete += 1,
                Ok(_) => panic!("no partial progress after the threshold"),
                Err(e) => assert!(matches!(e, SealError::NotInProgress(_)), "{e}"),
            }
        }
        assert_eq!(complete, 1);
        let nonce = core.rekey_init(2, 2).await.unwrap().nonce;
        core.rekey_update(&out.keys[0], &nonce).await.unwrap();
        let tasks: Vec<_> = out.keys[1..5]
            .iter()
            .map(|k| {
                let (core, k, nonce) = (core.clone(), k.clone(), nonce.clone());
                tokio::spawn(async move { core.rekey_update(&k, &nonce).await })
            })
            .collect();
        let mut complete = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(RekeyOutcome::Complete { .. }) => complete += 1,
                Ok(RekeyOutcome::Pending(_)) => panic!("no partial progress after the threshold"),
                Err(e) => assert!(matches!(e, SealError::NotInProgress(_)), "{e}"),
            }
        }
        assert_eq!(complete, 1);
        assert_eq!(core.status().await.unwrap().shares, 2);
    }
}
