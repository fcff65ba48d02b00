//! The token store: where tokens live, and the operations that only read or
//! count a use of them (authenticate, lookup, list). Creation, renewal,
//! revocation and the root token hand-off are in their own modules.
//!
//! Layout (namespace `auth`, every value sealed by the barrier):
//!
//! ```text
//! core/token-hmac-key          → 32 random bytes, written create-only on first use
//! token/<hmac>                 → JSON TokenRecord
//! accessor/<accessor>          → <hmac>
//! children/<parent>/<child>    → marker (both HMACs)
//! ```
//!
//! `<hmac>` is `hex(HMAC-SHA256(k, token))`. Token values are never stored,
//! logged or put in a span; neither are their HMACs.

use std::future::Future;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bulwark_proto::auth::v1::{RevocationEvent, TokenEntry};
use bulwark_shared::acks::{AckGuard, AckSet};
use bulwark_shared::barrier::Barrier;
use bulwark_shared::bus::{Bus, Notice};
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tokio::sync::{broadcast, watch};
use zeroize::Zeroizing;

use crate::error::AuthError;
use crate::record::{plausible_accessor, TokenRecord, TokenRef, MAX_TOKEN_LEN};
use crate::root::Handoff;

/// Where the token HMAC key lives.
pub(crate) const HMAC_KEY_PATH: &str = "core/token-hmac-key";

/// Vault's default token TTL (768h).
pub const SYSTEM_DEFAULT_TTL: i64 = 768 * 3600;
/// The longest a non-periodic token can live, from creation (768h).
pub const SYSTEM_MAX_TTL: i64 = 768 * 3600;

/// Revocation events a slow watcher may fall behind by before its stream ends.
const EVENT_BUFFER: usize = 1024;

pub(crate) fn token_path(hash: &str) -> String {
    format!("token/{hash}")
}

pub(crate) fn accessor_path(accessor: &str) -> String {
    format!("accessor/{accessor}")
}

pub(crate) fn children_prefix(parent: &str) -> String {
    format!("children/{parent}/")
}

pub(crate) fn child_path(parent: &str, child: &str) -> String {
    format!("children/{parent}/{child}")
}

/// Unix seconds, with an offset that tests can move forward (and a time
/// they can stop, so that no second ticks between two readings).
#[derive(Clone, Default)]
pub(crate) struct Clock {
    offset: Arc<AtomicI64>,
    /// Non-zero: the stopped time (tests only).
    stopped: Arc<AtomicI64>,
}

impl Clock {
    pub fn now(&self) -> i64 {
        let stopped = self.stopped.load(Ordering::Relaxed);
        let base = if stopped != 0 {
            stopped
        } else {
            chrono::Utc::now().timestamp()
        };
        base + self.offset.load(Ordering::Relaxed)
    }

    #[cfg(test)]
    pub fn advance(&self, secs: i64) {
        self.offset.fetch_add(secs, Ordering::Relaxed);
    }

    /// Time moves only by [`Clock::advance`] from now on.
    #[cfg(test)]
    pub fn stop(&self) {
        self.stopped
            .store(chrono::Utc::now().timestamp(), Ordering::Relaxed);
    }
}

/// The revocation broadcast: numbered batches of revoked accessors.
struct Events {
    tx: broadcast::Sender<RevocationEvent>,
    generation: AtomicU64,
    /// Orders numbering with sending, and subscribing with both.
    lock: Mutex<()>,
    /// The open revocation streams that acknowledge.
    acks: AckSet,
}

/// The token store. Cheap to share behind an `Arc`; every method is safe to
/// call concurrently, and from several replicas over one database (records are
/// updated with compare-and-swap).
pub struct TokenStore {
    pub(crate) barrier: Barrier,
    hmac_key: RwLock<Option<Arc<Zeroizing<[u8; 32]>>>>,
    pub(crate) clock: Clock,
    events: Events,
    pub(crate) root: Option<Handoff>,
    closed: watch::Sender<bool>,
    /// Revocations shared with the other replicas on the same database.
    bus: Option<Bus>,
    /// The expiry index's process-local state (see [`crate::expiry`]).
    pub(crate) expiry: crate::expiry::ExpiryState,
}

/// The bus topic of revoked accessors.
const REVOCATION_TOPIC: &str = "auth_revocations";

/// A record found by [`TokenRef`], with what identifies it.
pub(crate) struct Found {
    pub hash: String,
    pub record: TokenRecord,
    /// The token when found by token, `""` when found by accessor.
    pub id: String,
}

impl TokenStore {
    /// A store over `barrier` (the `auth` namespace), without a root token
    /// source: add one with [`TokenStore::with_root_source`].
    pub fn new(barrier: Barrier) -> Self {
        let (tx, _) = broadcast::channel(EVENT_BUFFER);
        // Generations start at the start time in microseconds, so a watcher
        // that reconnects to a restarted service sees a different number.
        let start = u64::try_from(chrono::Utc::now().timestamp_micros()).unwrap_or_default();
        TokenStore {
            barrier,
            hmac_key: RwLock::new(None),
            clock: Clock::default(),
            events: Events {
                tx,
                generation: AtomicU64::new(start),
                lock: Mutex::new(()),
                acks: AckSet::default(),
            },
            root: None,
            closed: watch::Sender::new(false),
            bus: None,
            expiry: Default::default(),
        }
    }

    /// Shares revocations with the other replicas of the auth service on
    /// `bus` (start relaying theirs with [`TokenStore::follow_replicas`]).
    pub fn with_bus(mut self, bus: Bus) -> Self {
        self.bus = Some(bus);
        self
    }

    /// The current time in unix seconds.
    pub(crate) fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Whether this service holds its data key (is unsealed).
    pub fn is_unsealed(&self) -> bool {
        self.barrier.keyring().is_loaded()
    }

    /// Refuses with "Vault is sealed" while this service holds no data key.
    pub async fn ensure_unsealed(&self) -> Result<(), AuthError> {
        self.barrier.keyring().ensure_active().await?;
        Ok(())
    }

    // === the HMAC key ===

    /// The token HMAC key: read once, or made on first use. Concurrent first
    /// uses (here or on another replica) agree through a create-only write.
    async fn hmac_key(&self) -> Result<Arc<Zeroizing<[u8; 32]>>, AuthError> {
        // Sealed: answer so even if a key is cached.
        self.barrier.keyring().ensure_active().await?;
        if let Some(k) = self.read_cache().as_ref() {
            return Ok(k.clone());
        }
        let key = match self.barrier.get(HMAC_KEY_PATH).await? {
            Some(raw) => parse_key(&raw)?,
            None => {
                let mut fresh = Zeroizing::new([0u8; 32]);
                rand::rngs::OsRng.fill_bytes(fresh.as_mut_slice());
                if self.barrier.create(HMAC_KEY_PATH, fresh.as_slice()).await? {
                    fresh
                } else {
                    // Lost the race: use the winner's key.
                    let raw = self
                        .barrier
                        .get(HMAC_KEY_PATH)
                        .await?
                        .ok_or(AuthError::Corrupt("core"))?;
                    parse_key(&raw)?
                }
            }
        };
        let key = Arc::new(key);
        *self.hmac_key.write().unwrap_or_else(|e| e.into_inner()) = Some(key.clone());
        Ok(key)
    }

    fn read_cache(&self) -> std::sync::RwLockReadGuard<'_, Option<Arc<Zeroizing<[u8; 32]>>>> {
        self.hmac_key.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops the cached HMAC key (on seal).
    pub(crate) fn forget_hmac_key(&self) {
        *self.hmac_key.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// `hex(HMAC-SHA256(k, token))`: the only form in which a token is stored.
    pub(crate) async fn hash(&self, token: &str) -> Result<String, AuthError> {
        let key = self.hmac_key().await?;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_slice())
            .expect("HMAC takes keys of any length");
        mac.update(token.as_bytes());
        Ok(hex::encode(mac.finalize().into_bytes()))
    }

    /// `hex(HMAC-SHA256(k, domain ‖ 0 ‖ value))`: how secrets other than
    /// tokens (AppRole SecretIDs and RoleIDs) are stored. `domain` (without
    /// NUL) keeps them apart from each other and from token hashes.
    pub(crate) async fn keyed_hash(&self, domain: &str, value: &[u8]) -> Result<String, AuthError> {
        debug_assert!(!domain.contains('\0'));
        let key = self.hmac_key().await?;
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_slice())
            .expect("HMAC takes keys of any length");
        mac.update(domain.as_bytes());
        mac.update(&[0]);
        mac.update(value);
        Ok(hex::encode(mac.finalize().into_bytes()))
    }

    // === records ===

    pub(crate) async fn read(&self, hash: &str) -> Result<Option<TokenRecord>, AuthError> {
        match self.barrier.get(&token_path(hash)).await? {
            Some(raw) => Ok(Some(decode(&raw)?)),
            None => Ok(None),
        }
    }

    /// The record and its stored bytes, for [`TokenStore::replace`].
    pub(crate) async fn read_versioned(
        &self,
        hash: &str,
    ) -> Result<Option<(TokenRecord, Vec<u8>)>, AuthError> {
        match self.barrier.get_versioned(&token_path(hash)).await? {
            Some((raw, version)) => Ok(Some((decode(&raw)?, version))),
            None => Ok(None),
        }
    }

    /// Compare-and-swap of a record; `false` means it changed (or went) meanwhile.
    pub(crate) async fn replace(
        &self,
        hash: &str,
        version: &[u8],
        record: &TokenRecord,
    ) -> Result<bool, AuthError> {
        Ok(self
            .barrier
            .replace(&token_path(hash), version, &encode(record))
            .await?)
    }

    /// Writes a new record only if none is stored at `hash` (its expiry
    /// marker first: a record is never stored unfindable by the sweeper).
    pub(crate) async fn create_record(
        &self,
        hash: &str,
        record: &TokenRecord,
    ) -> Result<bool, AuthError> {
        self.note_expiry(hash, record.expire_time).await?;
        Ok(self
            .barrier
            .create(&token_path(hash), &encode(record))
            .await?)
    }

    /// The HMAC an accessor points at, if the accessor is known.
    pub(crate) async fn accessor_hash(&self, accessor: &str) -> Result<Option<String>, AuthError> {
        if !plausible_accessor(accessor) {
            // Still refuse while sealed, as for any other request.
            self.barrier.keyring().ensure_active().await?;
            return Ok(None);
        }
        match self.barrier.get(&accessor_path(accessor)).await? {
            Some(raw) => String::from_utf8(raw.to_vec())
                .map(Some)
                .map_err(|_| AuthError::Corrupt("accessor")),
            None => Ok(None),
        }
    }

    /// Finds a live token (unknown, used up and expired tokens are `None`; an
    /// expired token found here is revoked with its descendants).
    pub(crate) async fn find(&self, r: TokenRef<'_>) -> Result<Option<Found>, AuthError> {
        let (hash, id) = match r {
            TokenRef::Token(token) => {
                if token.is_empty() || token.len() > MAX_TOKEN_LEN {
                    self.barrier.keyring().ensure_active().await?;
                    return Ok(None);
                }
                (self.hash(token).await?, token.to_string())
            }
            TokenRef::Accessor(accessor) => match self.accessor_hash(accessor).await? {
                Some(hash) => (hash, String::new()),
                None => return Ok(None),
            },
        };
        let Some(record) = self.read(&hash).await? else {
            return Ok(None);
        };
        if let TokenRef::Accessor(accessor) = r {
            // The index must agree with the record it points at.
            if !bool::from(record.accessor.as_bytes().ct_eq(accessor.as_bytes())) {
                return Ok(None);
            }
            // Batch tokens have no accessor as far as clients know.
            if record.is_batch() {
                return Ok(None);
            }
        }
        if !self.check_live(&hash, &record).await? {
            return Ok(None);
        }
        Ok(Some(Found { hash, record, id }))
    }

    /// Whether `record` is usable now; an expired one is revoked on the spot.
    pub(crate) async fn check_live(
        &self,
        hash: &str,
        record: &TokenRecord,
    ) -> Result<bool, AuthError> {
        if record.used_up {
            return Ok(false);
        }
        if record.is_expired(self.now()) {
            self.revoke_tree(hash).await?;
            return Ok(false);
        }
        Ok(true)
    }

    // === Authenticate, LookupToken, ListAccessors ===

    /// Resolves a client token for one request from `remote_ip` (the
    /// client's address, "" if unknown), counting one use of tokens with
    /// `num_uses` (atomically; the token is revoked after its last use). A
    /// token with bound CIDRs is refused, without counting a use, unless
    /// `remote_ip` lies in one of them.
    ///
    /// The entry's `num_uses` counts the uses left *including this one*, so it
    /// is never 0 (unlimited) for a limited token: a caller must not cache an
    /// entry whose `num_uses` is not 0.
    pub async fn authenticate(
        &self,
        token: &str,
        remote_ip: &str,
    ) -> Result<TokenEntry, AuthError> {
        let mark = self.handoff_mark();
        if let Some(entry) = self.try_authenticate(token, remote_ip).await? {
            return Ok(entry);
        }
        if self.hand_off_on_miss(mark).await {
            if let Some(entry) = self.try_authenticate(token, remote_ip).await? {
                return Ok(entry);
            }
        }
        Err(AuthError::PermissionDenied)
    }

    async fn try_authenticate(
        &self,
        token: &str,
        remote_ip: &str,
    ) -> Result<Option<TokenEntry>, AuthError> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            self.barrier.keyring().ensure_active().await?;
            return Ok(None);
        }
        let hash = self.hash(token).await?;
        loop {
            let Some((record, version)) = self.read_versioned(&hash).await? else {
                return Ok(None);
            };
            if !self.check_live(&hash, &record).await? {
                return Ok(None);
            }
            if !record.bound_cidrs.is_empty()
                && !crate::cidr::allows(&record.bound_cidrs, remote_ip)
            {
                return Ok(None);
            }
            let now = self.now();
            if record.num_uses == 0 {
                return Ok(Some(record.entry(token, now)));
            }
            let mut spent = record.clone();
            spent.num_uses -= 1;
            spent.used_up = spent.num_uses == 0;
            if self.replace(&hash, &version, &spent).await? {
                if spent.used_up {
                    // The use is granted; the token goes right after it. If
                    // revoking fails now, `used_up` refuses it and the sweeper
                    // finishes the job.
                    if let Err(e) = self.revoke_tree(&hash).await {
                        tracing::warn!(error = %e, "could not revoke a used-up token");
                    }
                }
                return Ok(Some(record.entry(token, now)));
            }
            // Another request counted a use meanwhile: count again.
        }
    }

    /// Looks a token up by value or accessor without counting a use.
    pub async fn lookup(&self, r: TokenRef<'_>) -> Result<TokenEntry, AuthError> {
        let mark = self.handoff_mark();
        let found = match self.find(r).await? {
            Some(f) => Some(f),
            None if matches!(r, TokenRef::Token(_)) && self.hand_off_on_miss(mark).await => {
                self.find(r).await?
            }
            None => None,
        };
        let found = found.ok_or_else(|| not_found(r))?;
        Ok(found.record.entry(&found.id, self.now()))
    }

    /// The accessor of every live service token, sorted (batch tokens have
    /// none to show).
    pub async fn list_accessors(&self) -> Result<Vec<String>, AuthError> {
        let now = self.now();
        let mut out = Vec::new();
        for hash in self.list_hashes().await? {
            match self.read(&hash).await {
                Ok(Some(r)) if r.is_live(now) && !r.is_batch() => out.push(r.accessor),
                Ok(_) => {}
                Err(AuthError::Corrupt(_)) => {
                    tracing::warn!("skipping a token record that does not decrypt");
                }
                Err(e) => return Err(e),
            }
        }
        out.sort();
        Ok(out)
    }

    /// Every stored token's HMAC.
    pub(crate) async fn list_hashes(&self) -> Result<Vec<String>, AuthError> {
        Ok(self
            .barrier
            .list("token/")
            .await?
            .into_iter()
            .filter(|k| !k.ends_with('/'))
            .collect())
    }

    // === revocation events ===

    /// Announces revoked accessors to every watcher (one numbered batch),
    /// and to the other replicas of this service (see [`TokenStore::with_bus`]).
    pub(crate) async fn publish(&self, accessors: Vec<String>) {
        if accessors.is_empty() {
            return;
        }
        if let Some(bus) = &self.bus {
            // Accessors are identifiers, not credentials; several notices
            // when a revoked tree is large.
            let mut notice = String::new();
            for acc in &accessors {
                if !notice.is_empty()
                    && notice.len() + acc.len() + 1 > bulwark_shared::bus::MAX_PAYLOAD
                {
                    self.notify(bus, &notice).await;
                    notice.clear();
                }
                if !notice.is_empty() {
                    notice.push(',');
                }
                notice.push_str(acc);
            }
            self.notify(bus, &notice).await;
        }
        let generation = self.publish_local(accessors);
        self.wait_acked(generation, bulwark_shared::acks::ACK_WAIT)
            .await;
    }

    async fn notify(&self, bus: &Bus, notice: &str) {
        if let Err(e) = bus.publish(REVOCATION_TOPIC, notice).await {
            tracing::warn!(error = %e, "could not tell other auth replicas of a revocation");
        }
    }

    /// Relays the revocations other replicas announce to this replica's
    /// watchers (`*`, after notices may have been lost: drop every cached
    /// token). Runs until the store closes.
    pub fn follow_replicas(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        let bus = self.bus.clone()?;
        let me = self.clone();
        Some(tokio::spawn(async move {
            let mut notices = bus.subscribe(REVOCATION_TOPIC);
            let closed = me.closed();
            tokio::pin!(closed);
            loop {
                let notice = tokio::select! {
                    () = &mut closed => return,
                    n = notices.recv() => n,
                };
                match notice {
                    Some(Notice::Message(list)) => {
                        me.publish_local(
                            list.split(',')
                                .filter(|a| !a.is_empty())
                                .map(String::from)
                                .collect(),
                        );
                    }
                    Some(Notice::Resync) => {
                        me.publish_local(vec!["*".into()]);
                    }
                    None => return,
                }
            }
        }))
    }

    /// Waits (at most `limit`) until every watcher has acknowledged
    /// `generation`.
    pub(crate) async fn wait_acked(&self, generation: u64, limit: std::time::Duration) {
        if !self.events.acks.wait(generation, limit).await {
            tracing::warn!(
                generation,
                "a revocation watcher did not acknowledge in time"
            );
        }
    }

    /// Registers a revocation watcher, acknowledged up to `generation`.
    pub fn register_watcher(&self, generation: u64) -> AckGuard {
        self.events.acks.register(generation)
    }

    /// A watcher applied every revocation up to `generation`.
    pub fn ack_revocations(&self, watcher: &str, generation: u64) {
        self.events.acks.ack(watcher, generation);
    }

    /// Sends one batch to this replica's watchers; returns its generation.
    fn publish_local(&self, accessors: Vec<String>) -> u64 {
        let _order = self.events.lock.lock().unwrap_or_else(|e| e.into_inner());
        if accessors.is_empty() {
            return self.events.generation.load(Ordering::SeqCst);
        }
        let generation = self.events.generation.fetch_add(1, Ordering::SeqCst) + 1;
        // No watcher is not an error.
        let _ = self.events.tx.send(RevocationEvent {
            generation,
            accessors,
            watcher_id: String::new(),
        });
        generation
    }

    /// The current generation and a receiver of every later batch (whose
    /// generations follow on from it one by one).
    pub fn subscribe_revocations(&self) -> (u64, broadcast::Receiver<RevocationEvent>) {
        let _order = self.events.lock.lock().unwrap_or_else(|e| e.into_inner());
        let rx = self.events.tx.subscribe();
        (self.events.generation.load(Ordering::SeqCst), rx)
    }

    // === lifecycle ===

    /// Stops the background tasks and ends every revocation stream.
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// Completes once [`TokenStore::close`] has been called (or the store dropped).
    pub fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.closed.subscribe();
        async move {
            let _ = rx.wait_for(|closed| *closed).await;
        }
    }
}

/// The "not found" answer for a lookup or renewal.
pub(crate) fn not_found(r: TokenRef<'_>) -> AuthError {
    match r {
        TokenRef::Token(_) => AuthError::BadToken,
        TokenRef::Accessor(_) => AuthError::InvalidAccessor,
    }
}

fn parse_key(raw: &[u8]) -> Result<Zeroizing<[u8; 32]>, AuthError> {
    let mut key = Zeroizing::new([0u8; 32]);
    if raw.len() != key.len() {
        return Err(AuthError::Corrupt("core"));
    }
    key.copy_from_slice(raw);
    Ok(key)
}

fn decode(raw: &[u8]) -> Result<TokenRecord, AuthError> {
    serde_json::from_slice(raw).map_err(|_| AuthError::Corrupt("token"))
}

pub(crate) fn encode(record: &TokenRecord) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(serde_json::to_vec(record).expect("a token record serializes"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{create, harness, Harness};
    use bulwark_proto::auth::v1::CreateTokenRequest;
    use bulwark_shared::keyring::Keyring;
    use bulwark_shared::storage::{Database, StorageConfig};

    #[tokio::test]
    async fn hmac_key_is_stable_across_rotation_and_replicas() {
        let Harness { db, store, .. } = harness().await;
        let h1 = store.hash("hvs.abc").await.unwrap();
        assert_eq!(h1.len(), 64);
        // A new keyring term: the stored key still decrypts, the hash is unchanged.
        store.barrier.keyring().install(
            2,
            [
                (1, Zeroizing::new([7u8; 32])),
                (2, Zeroizing::new([8u8; 32])),
            ],
        );
        store.forget_hmac_key();
        assert_eq!(store.hash("hvs.abc").await.unwrap(), h1);
        // A second replica over the same database agrees.
        let ring = Keyring::new();
        ring.install(1, [(1, Zeroizing::new([7u8; 32]))]);
        let other = TokenStore::new(Barrier::new(db.namespace("auth").await.unwrap(), ring));
        assert_eq!(other.hash("hvs.abc").await.unwrap(), h1);
        assert_ne!(other.hash("hvs.abd").await.unwrap(), h1);
    }

    #[tokio::test]
    async fn racing_first_uses_agree_on_one_key() {
        let db = Database::connect(&StorageConfig::SqliteMemory)
            .await
            .unwrap();
        let mut stores = Vec::new();
        for _ in 0..4 {
            let ring = Keyring::new();
            ring.install(1, [(1, Zeroizing::new([7u8; 32]))]);
            stores.push(Arc::new(TokenStore::new(Barrier::new(
                db.namespace("auth").await.unwrap(),
                ring,
            ))));
        }
        let tasks: Vec<_> = stores
            .iter()
            .cloned()
            .map(|s| tokio::spawn(async move { s.hash("x").await.unwrap() }))
            .collect();
        let mut hashes = Vec::new();
        for t in tasks {
            hashes.push(t.await.unwrap());
        }
        hashes.dedup();
        assert_eq!(hashes.len(), 1);
    }

    #[tokio::test]
    async fn sealed_refuses_everything() {
        let Harness { store, root, .. } = harness().await;
        store.barrier.keyring().clear();
        let sealed = |e: AuthError| {
            assert!(e.is_sealed(), "{e:?}");
            let s = tonic::Status::from(e);
            assert_eq!(
                (s.code(), s.message()),
                (tonic::Code::Unavailable, "Vault is sealed")
            );
        };
        sealed(store.authenticate(&root, "").await.unwrap_err());
        sealed(store.authenticate("", "").await.unwrap_err());
        sealed(store.lookup(TokenRef::Accessor("nope")).await.unwrap_err());
        sealed(store.lookup(TokenRef::Accessor("a/b")).await.unwrap_err());
        sealed(store.list_accessors().await.unwrap_err());
        sealed(
            store
                .create(&CreateTokenRequest {
                    parent_token: root.clone(),
                    ..Default::default()
                })
                .await
                .unwrap_err(),
        );
    }

    #[tokio::test]
    async fn lookup_needs_a_live_token() {
        let Harness { store, root, .. } = harness().await;
        let e = store
            .lookup(TokenRef::Token("hvs.unknown"))
            .await
            .unwrap_err();
        assert!(matches!(e, AuthError::BadToken));
        let e = store
            .lookup(TokenRef::Accessor("unknown"))
            .await
            .unwrap_err();
        assert!(matches!(e, AuthError::InvalidAccessor));
        let e = store.authenticate("hvs.unknown", "").await.unwrap_err();
        assert!(matches!(e, AuthError::PermissionDenied));
        let e = store.authenticate("", "").await.unwrap_err();
        assert!(matches!(e, AuthError::PermissionDenied));
        let entry = store.lookup(TokenRef::Token(&root)).await.unwrap();
        assert_eq!(entry.id, root);
        assert_eq!(entry.policies, ["root"]);
        let by_acc = store
            .lookup(TokenRef::Accessor(&entry.accessor))
            .await
            .unwrap();
        assert_eq!(by_acc.id, "");
        assert_eq!(by_acc.accessor, entry.accessor);
    }

    #[tokio::test]
    async fn list_accessors_is_sorted_and_live_only() {
        let Harness { store, root, .. } = harness().await;
        let mut expected = vec![store.lookup(TokenRef::Token(&root)).await.unwrap().accessor];
        for ttl in [0, 10] {
            let c = store
                .create(&CreateTokenRequest {
                    parent_token: root.clone(),
                    policies: vec!["a".into()],
                    ttl,
                    ..Default::default()
                })
                .await
                .unwrap();
            if ttl == 0 {
                expected.push(c.entry.accessor);
            }
        }
        store.clock.advance(11);
        expected.sort();
        assert_eq!(store.list_accessors().await.unwrap(), expected);
    }

    #[tokio::test]
    async fn revocation_events_are_numbered() {
        let Harness { store, .. } = harness().await;
        let (generation, mut rx) = store.subscribe_revocations();
        store.publish(vec![]).await;
        store.publish(vec!["a".into()]).await;
        store.publish(vec!["b".into(), "c".into()]).await;
        let e1 = rx.recv().await.unwrap();
        let e2 = rx.recv().await.unwrap();
        assert_eq!(
            (e1.generation, e1.accessors),
            (generation + 1, vec!["a".to_string()])
        );
        assert_eq!(e2.generation, generation + 2);
        assert_eq!(store.subscribe_revocations().0, generation + 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn num_uses_two_allows_exactly_two_requests_under_concurrency() {
        let Harness { store, root, .. } = harness().await;
        let limited = create(&store, &root, |r| r.num_uses = 2).await;
        let (_, mut events) = store.subscribe_revocations();
        let tasks: Vec<_> = (0..10)
            .map(|_| {
                let store = store.clone();
                let token = limited.token.to_string();
                tokio::spawn(async move { store.authenticate(&token, "").await })
            })
            .collect();
        let mut granted = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                Ok(entry) => granted.push(entry.num_uses),
                Err(AuthError::PermissionDenied) => {}
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        granted.sort();
        // Each answer counts the uses left including its own: never 0.
        assert_eq!(granted, [1, 2]);
        // Revoked after the last use, and announced.
        assert_eq!(
            events.recv().await.unwrap().accessors,
            [limited.entry.accessor.as_str()]
        );
        assert!(matches!(
            store.lookup(TokenRef::Token(&limited.token)).await,
            Err(AuthError::BadToken)
        ));
        assert!(store.authenticate(&limited.token, "").await.is_err());
        // Lookups do not count uses.
        let three = create(&store, &root, |r| r.num_uses = 1).await;
        for _ in 0..3 {
            assert_eq!(
                store
                    .lookup(TokenRef::Token(&three.token))
                    .await
                    .unwrap()
                    .num_uses,
                1
            );
        }
        assert!(store.authenticate(&three.token, "").await.is_ok());
        assert!(store.authenticate(&three.token, "").await.is_err());
    }

    #[tokio::test]
    async fn stored_bytes_never_contain_a_token() {
        let Harness { db, store, root } = harness().await;
        let mut tokens = vec![root.clone()];
        let parent = create(&store, &root, |r| {
            r.meta = [("k".into(), "v".into())].into()
        })
        .await;
        tokens.push(parent.token.to_string());
        let child = create(&store, &parent.token, |_| {}).await;
        tokens.push(child.token.to_string());
        let custom = create(&store, &root, |r| r.id = "custom-token-value".into()).await;
        tokens.push(custom.token.to_string());
        store.authenticate(&parent.token, "").await.unwrap();
        store
            .renew(TokenRef::Token(&child.token), 60)
            .await
            .unwrap();

        let raw = db.namespace("auth").await.unwrap();
        let mut keys = Vec::new();
        let mut pending = vec![String::new()];
        while let Some(prefix) = pending.pop() {
            for entry in raw.list(&prefix).await.unwrap() {
                let full = format!("{prefix}{entry}");
                if entry.ends_with('/') {
                    pending.push(full);
                } else {
                    keys.push(full);
                }
            }
        }
        assert!(keys.len() >= 10, "{keys:?}");
        assert!(keys.iter().any(|k| k == HMAC_KEY_PATH));
        for key in &keys {
            let value = raw.get(key).await.unwrap().unwrap();
            for token in &tokens {
                assert!(!key.contains(token.as_str()), "token in key {key}");
                let body = token.strip_prefix("hvs.").unwrap_or(token).as_bytes();
                assert!(
                    !value.windows(body.len()).any(|w| w == body),
                    "token in the value at {key}"
                );
            }
            // Nothing is stored in the clear.
            assert!(
                !value.windows(16).any(|w| w == b"plaintext-marker"),
                "plaintext at {key}"
            );
        }
    }
}
