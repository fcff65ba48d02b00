//! The lease registry and expiration manager (`bulwark.auth.v1.Leases`).
//!
//! A lease is one dynamic secret: registered by the gateway right after an
//! engine issued it, owned by the token that asked (revoking the token, or
//! any ancestor, revokes the lease), ended by its engine's revoke when it
//! expires or is revoked, extended by the engine's renew. Lease ids are
//! `<request path>/<24 random base62>`.
//!
//! Layout (namespace `auth`, every value sealed by the barrier; `<hash>` is
//! `hex(SHA-256(lease id))`, `<owner>` the owner token's HMAC):
//!
//! ```text
//! lease/<hash>                 → JSON LeaseRecord (incl. the engine's opaque data)
//! lease-path/<lease id>        → <hash>    (listing, prefix revocation)
//! lease-token/<owner>/<hash>   → marker    (the token's leases)
//! lease-pending/<hash>         → marker    (changed since the manager last looked)
//! ```
//!
//! A lease is `active` or `revoking {attempts, next_try}`. Revoking leases
//! are invisible to lookups and renewals, and are never dropped because
//! their engine fails: the expiration manager ([`manager`]) retries them
//! with exponential backoff (1 s, 2 s, 4 s, … 60 s) until the engine agrees.
//! Only `RevokePrefix` with `force` deletes a lease whose engine failed.
//!
//! The manager runs on one replica at a time (a storage advisory lock) and
//! keeps the due times of every lease in memory, loaded at unseal and kept
//! current by this replica's own changes and by the pending markers that
//! every replica writes after changing a lease.

mod engine;
pub mod manager;
mod record;
mod service;
mod storage;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bulwark_proto::auth::v1::{LeaseInfo, RegisterLeaseRequest};
use tonic::Status;

use crate::error::AuthError;
use crate::record::{random_base62, TokenRef};
use crate::store::{TokenStore, SYSTEM_DEFAULT_TTL, SYSTEM_MAX_TTL};

pub use engine::{Engines, LeaseEngine, DYNAMIC_DB, ENGINE_CALL_TIMEOUT};
pub use manager::{ManagerConfig, LOCK_NAME};
pub use service::LeasesService;

use record::{
    backoff, index_path, lease_hash, owner_path, plausible_hash, plausible_lease_id, validate_path,
    LeaseRecord, LeaseState, RevokeData, ID_RANDOM_LEN, MAX_REVOKE_DATA,
};

/// How long a revocation in progress keeps the manager off its lease (an
/// engine call's timeout, and a margin): if the revoking request dies, the
/// manager takes over after this.
const IN_FLIGHT_GRACE: i64 = ENGINE_CALL_TIMEOUT.as_secs() as i64 + 5;

/// Compare-and-swap retries of a renewal racing other writers.
const CAS_RETRIES: usize = 8;

/// What a tidy pass found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TidyReport {
    /// Index entries that pointed at no lease, removed.
    pub dangling: usize,
    /// Leases whose owner token is gone, queued for revocation.
    pub orphaned: usize,
}

/// Due times of leases, earliest first (the manager's in-memory queue).
#[derive(Default)]
struct DueQueue {
    /// Filled from storage: until then, changes are left to the pending markers.
    loaded: bool,
    order: BTreeSet<(i64, String)>,
    at: HashMap<String, i64>,
}

impl DueQueue {
    fn remove(&mut self, hash: &str) {
        if let Some(due) = self.at.remove(hash) {
            self.order.remove(&(due, hash.to_string()));
        }
    }

    fn schedule(&mut self, hash: &str, due: Option<i64>) {
        if !self.loaded {
            return;
        }
        self.remove(hash);
        if let Some(due) = due {
            self.order.insert((due, hash.to_string()));
            self.at.insert(hash.to_string(), due);
        }
    }

    /// Takes up to `max` leases due at `now`.
    fn pop_due(&mut self, now: i64, max: usize) -> Vec<String> {
        let mut out = Vec::new();
        while out.len() < max {
            match self.order.first() {
                Some((due, _)) if *due <= now => {}
                _ => break,
            }
            if let Some((_, hash)) = self.order.pop_first() {
                self.at.remove(&hash);
                out.push(hash);
            }
        }
        out
    }

    fn install(&mut self, entries: Vec<(String, i64)>) {
        self.clear();
        self.loaded = true;
        for (hash, due) in entries {
            self.schedule(&hash, Some(due));
        }
    }

    fn clear(&mut self) {
        self.order.clear();
        self.at.clear();
        self.loaded = false;
    }
}

/// The lease registry: every RPC of `Leases`, and the expiration passes
/// that [`manager`] runs. Safe to share and to run on several replicas over
/// one database.
pub struct LeaseRegistry {
    store: Arc<TokenStore>,
    engines: Engines,
    due: Mutex<DueQueue>,
    tidying: AtomicBool,
}

impl LeaseRegistry {
    pub fn new(store: Arc<TokenStore>, engines: Engines) -> Self {
        LeaseRegistry {
            store,
            engines,
            due: Mutex::new(DueQueue::default()),
            tidying: AtomicBool::new(false),
        }
    }

    pub fn store(&self) -> &Arc<TokenStore> {
        &self.store
    }

    fn now(&self) -> i64 {
        self.store.now()
    }

    fn queue(&self) -> std::sync::MutexGuard<'_, DueQueue> {
        self.due.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn schedule(&self, hash: &str, due: Option<i64>) {
        self.queue().schedule(hash, due);
    }

    /// After a change to the lease at `hash`: tells every replica's manager
    /// (the pending marker) and this one's queue.
    async fn touch(&self, hash: &str, due: Option<i64>) -> Result<(), AuthError> {
        self.store.mark_lease_pending(hash).await?;
        self.schedule(hash, due);
        Ok(())
    }

    /// Whether the token with HMAC `owner` is live (an expired one is
    /// revoked on the spot, with its leases).
    async fn owner_alive(&self, owner: &str) -> Result<bool, AuthError> {
        match self.store.read(owner).await? {
            Some(record) => self.store.check_live(owner, &record).await,
            None => Ok(false),
        }
    }

    /// Calls the lease's engine to revoke its secret.
    async fn engine_revoke(&self, record: &LeaseRecord) -> Result<(), Status> {
        let engine = self
            .engines
            .get(&record.engine)
            .ok_or_else(|| Status::failed_precondition("unknown lease engine"))?;
        engine
            .revoke(&record.engine_mount, &record.revoke_data.0)
            .await
    }

    // === RegisterLease ===

    /// Registers a lease owned by `req.client_token` (PermissionDenied if
    /// that token is not live). TTL 0 = the system default, max TTL 0 = the
    /// system max; the TTL never exceeds the max.
    pub async fn register(&self, req: &RegisterLeaseRequest) -> Result<LeaseInfo, AuthError> {
        self.store.ensure_unsealed().await?;
        validate_path(&req.path)?;
        if self.engines.get(&req.engine).is_none() {
            return Err(AuthError::invalid("unknown lease engine"));
        }
        if req.engine_mount.is_empty() || req.engine_mount.len() > 128 {
            return Err(AuthError::invalid("invalid engine mount"));
        }
        if req.revoke_data.len() > MAX_REVOKE_DATA {
            return Err(AuthError::invalid("revoke data is too large"));
        }
        if req.ttl < 0 || req.max_ttl < 0 {
            return Err(AuthError::invalid("ttl and max_ttl must not be negative"));
        }
        let owner = self
            .store
            .find(TokenRef::Token(&req.client_token))
            .await?
            .ok_or(AuthError::PermissionDenied)?
            .hash;
        let now = self.now();
        let max_ttl = if req.max_ttl == 0 {
            SYSTEM_MAX_TTL
        } else {
            req.max_ttl
        };
        let ttl = if req.ttl == 0 {
            SYSTEM_DEFAULT_TTL
        } else {
            req.ttl
        }
        .min(max_ttl);
        let mut record = LeaseRecord {
            id: String::new(),
            path: req.path.clone(),
            owner,
            issue_time: now,
            expire_time: now.saturating_add(ttl),
            max_expire: now.saturating_add(max_ttl),
            last_renewal: 0,
            renewable: req.renewable,
            ttl,
            engine: req.engine.clone(),
            engine_mount: req.engine_mount.clone(),
            revoke_data: RevokeData(req.revoke_data.clone()),
            state: LeaseState::Active,
        };
        let mut created = None;
        for _ in 0..3 {
            record.id = format!("{}/{}", req.path, random_base62(ID_RANDOM_LEN));
            let hash = lease_hash(&record.id);
            if self.store.create_lease(&hash, &record).await? {
                created = Some(hash);
                break;
            }
        }
        let hash = created.ok_or(AuthError::Internal("lease id collision"))?;
        // The owner may have been revoked between the check and the write,
        // and its revocation may have missed this lease: look again.
        if !self.owner_alive(&record.owner).await? {
            self.store.delete_lease(&hash, &record).await?;
            return Err(AuthError::PermissionDenied);
        }
        self.touch(&hash, record.due()).await?;
        Ok(record.info(now))
    }

    // === LookupLease, RenewLease ===

    /// The live lease `id` (its hash, record and stored bytes), or InvalidLease.
    async fn find_live(&self, id: &str) -> Result<(String, LeaseRecord, Vec<u8>), AuthError> {
        self.store.ensure_unsealed().await?;
        if !plausible_lease_id(id) {
            return Err(AuthError::InvalidLease);
        }
        let hash = lease_hash(id);
        let Some((record, version)) = self.store.read_lease_versioned(&hash).await? else {
            return Err(AuthError::InvalidLease);
        };
        let now = self.now();
        if record.id != id || !record.is_live(now) {
            return Err(AuthError::InvalidLease);
        }
        if !self.owner_alive(&record.owner).await? {
            // The owner's revocation has not reached this lease (yet).
            if let Some(r) = self.store.mark_lease_revoking(&hash, now).await? {
                self.schedule(&hash, r.due());
            }
            return Err(AuthError::InvalidLease);
        }
        Ok((hash, record, version))
    }

    /// The lease `id`; InvalidLease if unknown, expired or being revoked.
    pub async fn lookup(&self, id: &str) -> Result<LeaseInfo, AuthError> {
        let (_, record, _) = self.find_live(id).await?;
        Ok(record.info(self.now()))
    }

    /// Extends the lease `id` to now + `increment` (0: its original TTL),
    /// never past its max; the engine renews first (its error leaves the
    /// lease unchanged).
    pub async fn renew(&self, id: &str, increment: i64) -> Result<LeaseInfo, AuthError> {
        if increment < 0 {
            self.store.ensure_unsealed().await?;
            return Err(AuthError::invalid("increment must not be negative"));
        }
        for _ in 0..CAS_RETRIES {
            let (hash, record, version) = self.find_live(id).await?;
            if !record.renewable {
                return Err(AuthError::NotRenewable);
            }
            let now = self.now();
            let grant = if increment == 0 {
                record.ttl
            } else {
                increment
            };
            let mut expire = now.saturating_add(grant);
            if record.max_expire != 0 {
                expire = expire.min(record.max_expire);
            }
            let engine = self
                .engines
                .get(&record.engine)
                .ok_or(AuthError::Internal("lease of an unknown engine"))?;
            engine
                .renew(&record.engine_mount, &record.revoke_data.0, expire)
                .await
                .map_err(|s| AuthError::Engine(s.code(), s.message().to_string()))?;
            let next = LeaseRecord {
                expire_time: expire,
                last_renewal: now,
                ..record
            };
            if self.store.replace_lease(&hash, &version, &next).await? {
                self.touch(&hash, next.due()).await?;
                return Ok(next.info(now));
            }
            // Changed meanwhile: look again (it may be gone or revoking now).
        }
        Err(AuthError::Internal("lease renewal kept racing"))
    }

    // === RevokeLease, RevokePrefix ===

    /// Revokes the lease `id`: the engine revokes, then the lease is
    /// deleted. Unknown ids are not an error. On an engine error the lease
    /// stays queued for the manager; with `sync` the call then fails.
    pub async fn revoke(&self, id: &str, sync: bool) -> Result<(), AuthError> {
        self.store.ensure_unsealed().await?;
        if !plausible_lease_id(id) {
            return Ok(());
        }
        self.revoke_now(&lease_hash(id), sync, false).await?;
        Ok(())
    }

    /// Revokes the lease at `hash` now. Returns `false` if there is none.
    async fn revoke_now(&self, hash: &str, sync: bool, force: bool) -> Result<bool, AuthError> {
        // Revoking from here on: no renewal, no lookup; and if this request
        // dies half-way, the manager finishes the job.
        let Some(record) = self
            .store
            .mark_lease_revoking(hash, self.now() + IN_FLIGHT_GRACE)
            .await?
        else {
            return Ok(false);
        };
        self.schedule(hash, record.due());
        match self.engine_revoke(&record).await {
            Ok(()) => {}
            Err(status) if force => {
                tracing::warn!(
                    lease_id = %record.id,
                    error = %status.message(),
                    "engine failed to revoke a lease; deleting it anyway (force)"
                );
            }
            Err(status) => {
                let attempts = self.record_failure(hash).await?;
                tracing::warn!(
                    lease_id = %record.id,
                    attempts,
                    error = %status.message(),
                    "engine failed to revoke a lease; will retry"
                );
                return if sync {
                    Err(AuthError::RevokeFailed(format!(
                        "failed to revoke lease: {}",
                        status.message()
                    )))
                } else {
                    Ok(true)
                };
            }
        }
        self.finish(hash, &record).await?;
        Ok(true)
    }

    /// The lease is revoked: its record and indexes go.
    async fn finish(&self, hash: &str, record: &LeaseRecord) -> Result<(), AuthError> {
        self.store.delete_lease(hash, record).await?;
        self.queue().remove(hash);
        Ok(())
    }

    /// Counts a failed revocation of the lease at `hash` and schedules the
    /// next try after the backoff. Returns the attempts so far.
    async fn record_failure(&self, hash: &str) -> Result<u32, AuthError> {
        for _ in 0..CAS_RETRIES {
            let Some((record, version)) = self.store.read_lease_versioned(hash).await? else {
                return Ok(0);
            };
            let attempts = record.attempts().saturating_add(1);
            let next_try = self.now() + backoff(attempts);
            let next = LeaseRecord {
                state: LeaseState::Revoking { attempts, next_try },
                ..record
            };
            if self.store.replace_lease(hash, &version, &next).await? {
                self.touch(hash, Some(next_try)).await?;
                return Ok(attempts);
            }
        }
        // Still revoking either way; the manager looks again soon.
        self.schedule(hash, Some(self.now() + 1));
        Ok(0)
    }

    /// Revokes every lease under `prefix`, Vault style: a prefix naming one
    /// lease exactly revokes that lease, else `prefix/` is the directory.
    /// With `force`, engine errors are logged and the leases deleted anyway;
    /// with `sync` (or `force`) the engine is called now, else the leases
    /// are queued for the manager. Returns how many leases were revoked (or
    /// queued). Without `force`, leases whose engine failed stay queued, and
    /// the call fails after trying every lease.
    pub async fn revoke_prefix(
        &self,
        prefix: &str,
        force: bool,
        sync: bool,
    ) -> Result<i64, AuthError> {
        self.store.ensure_unsealed().await?;
        if prefix.is_empty() {
            return Err(AuthError::invalid("prefix must be specified"));
        }
        let exact = !prefix.ends_with('/')
            && plausible_lease_id(prefix)
            && self.store.read_lease(&lease_hash(prefix)).await?.is_some();
        let ids = if exact {
            vec![prefix.to_string()]
        } else {
            self.ids_under(&as_dir(prefix)).await?
        };
        let total = ids.len();
        let (mut revoked, mut failed) = (0i64, 0usize);
        let mut first_error = None;
        for id in ids {
            let hash = lease_hash(&id);
            let done = if force || sync {
                match self.revoke_now(&hash, true, force).await {
                    Err(AuthError::RevokeFailed(msg)) => {
                        failed += 1;
                        first_error.get_or_insert(msg);
                        continue;
                    }
                    other => other?,
                }
            } else {
                self.queue_revocation(&hash).await?
            };
            if done {
                revoked += 1;
            } else {
                // An index entry that points at nothing.
                self.store.barrier.delete(&index_path(&id)).await?;
            }
        }
        match first_error {
            Some(msg) => Err(AuthError::RevokeFailed(format!(
                "{failed} of {total} leases could not be revoked yet (queued for retry); {msg}"
            ))),
            None => Ok(revoked),
        }
    }

    /// Queues the lease at `hash` for the manager (revoking, due now).
    async fn queue_revocation(&self, hash: &str) -> Result<bool, AuthError> {
        match self.store.mark_lease_revoking(hash, self.now()).await? {
            Some(record) => {
                self.schedule(hash, record.due());
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Every lease id in the path index under `dir` ("" or ending in `/`).
    async fn ids_under(&self, dir: &str) -> Result<Vec<String>, AuthError> {
        let mut out = Vec::new();
        let mut dirs = vec![dir.to_string()];
        while let Some(d) = dirs.pop() {
            for key in self.store.barrier.list(&index_path(&d)).await? {
                let full = format!("{d}{key}");
                if key.ends_with('/') {
                    dirs.push(full);
                } else {
                    out.push(full);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    // === ListLeases, TidyLeases ===

    /// Lease ids and sub-prefixes (ending in `/`) directly under `prefix`
    /// (taken as a directory), sorted; nothing there is an empty list.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, AuthError> {
        self.store.ensure_unsealed().await?;
        let dir = if prefix.is_empty() {
            String::new()
        } else {
            as_dir(prefix)
        };
        Ok(self.store.barrier.list(&index_path(&dir)).await?)
    }

    /// How many leases have ids starting with `prefix` (a raw prefix; ""
    /// counts every lease). Read from the path index alone — one counting
    /// query, no record read or decrypted — so a lease-count quota can ask
    /// before every issue. A lease counts until it is gone: while it is
    /// being revoked (its engine failing, say) it still holds its place,
    /// as in Vault, where the quota is released only by the revocation.
    pub async fn count(&self, prefix: &str) -> Result<u64, AuthError> {
        self.store.ensure_unsealed().await?;
        if prefix.len() > record::MAX_PATH_LEN
            || prefix.contains("..")
            || prefix.chars().any(char::is_control)
        {
            return Err(AuthError::invalid("invalid lease prefix"));
        }
        Ok(self.store.barrier.count(&index_path(prefix)).await?)
    }

    /// Starts [`LeaseRegistry::tidy`] in the background (Vault answers 202
    /// at once); a tidy already running is not started twice.
    pub fn start_tidy(self: &Arc<Self>) {
        if self.tidying.swap(true, Ordering::SeqCst) {
            return;
        }
        let registry = self.clone();
        tokio::spawn(async move {
            match registry.tidy().await {
                Ok(report) => tracing::info!(
                    dangling = report.dangling,
                    orphaned = report.orphaned,
                    "lease tidy finished"
                ),
                Err(e) => tracing::warn!(error = %e, "lease tidy failed"),
            }
            registry.tidying.store(false, Ordering::SeqCst);
        });
    }

    /// Removes index entries that point at no lease, and queues for
    /// revocation every lease whose owner token is gone.
    pub async fn tidy(&self) -> Result<TidyReport, AuthError> {
        self.store.ensure_unsealed().await?;
        let mut report = TidyReport::default();
        for id in self.ids_under("").await? {
            let ok = plausible_lease_id(&id)
                && match self.store.read_lease(&lease_hash(&id)).await {
                    Ok(found) => found.is_some_and(|r| r.id == id),
                    // Not provably dangling.
                    Err(AuthError::Corrupt(_)) => true,
                    Err(e) => return Err(e),
                };
            if !ok {
                self.store.barrier.delete(&index_path(&id)).await?;
                report.dangling += 1;
            }
        }
        for dir in self.store.barrier.list("lease-token/").await? {
            let Some(owner) = dir.strip_suffix('/') else {
                continue;
            };
            for hash in self
                .store
                .barrier
                .list(&format!("lease-token/{dir}"))
                .await?
            {
                let ok = plausible_hash(&hash)
                    && match self.store.read_lease(&hash).await {
                        Ok(found) => found.is_some_and(|r| r.owner == owner),
                        Err(AuthError::Corrupt(_)) => true,
                        Err(e) => return Err(e),
                    };
                if !ok {
                    self.store.barrier.delete(&owner_path(owner, &hash)).await?;
                    report.dangling += 1;
                }
            }
        }
        let mut owners: HashMap<String, bool> = HashMap::new();
        for hash in self.store.barrier.list("lease/").await? {
            if !plausible_hash(&hash) {
                continue;
            }
            let record = match self.store.read_lease(&hash).await {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(AuthError::Corrupt(_)) => {
                    tracing::warn!("skipping a lease record that does not decrypt");
                    continue;
                }
                Err(e) => return Err(e),
            };
            if record.state != LeaseState::Active {
                continue;
            }
            let alive = match owners.get(&record.owner) {
                Some(alive) => *alive,
                None => {
                    let alive = self.owner_alive(&record.owner).await?;
                    owners.insert(record.owner.clone(), alive);
                    alive
                }
            };
            if !alive && self.queue_revocation(&hash).await? {
                report.orphaned += 1;
            }
        }
        Ok(report)
    }
}

/// `prefix` as a directory: with a trailing `/`.
fn as_dir(prefix: &str) -> String {
    if prefix.ends_with('/') {
        prefix.to_string()
    } else {
        format!("{prefix}/")
    }
}

#[cfg(test)]
mod tests;
