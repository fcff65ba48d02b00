//! The expiration manager: revokes leases when they expire, and retries
//! revocations that failed, with exponential backoff, until they succeed.
//!
//! Exactly one replica runs it: the one holding the storage advisory lock
//! [`LOCK_NAME`] ([`Database::try_lock`]; on PostgreSQL shared by every
//! replica). The others try to take the lock every
//! [`ManagerConfig::lock_retry`] and meanwhile only serve RPCs. The holder
//! checks its lock before every pass and stops the moment it is lost; it
//! lets the lock go while sealed (when it cannot act anyway).
//!
//! The holder finds due leases in its in-memory queue (due time → lease
//! hash), so a pass reads only the leases that are due: the queue is loaded
//! from storage (every record, once) when this replica unseals or takes the
//! lock, follows this replica's own changes directly, and other replicas'
//! changes through the pending markers they write (each pass drains them).

use std::sync::Arc;
use std::time::Duration;

use bulwark_shared::storage::{Database, LockGuard};
use futures::StreamExt;
use tokio::task::JoinHandle;

use super::record::{backoff, pending_path, plausible_hash, LeaseRecord, LeaseState};
use super::LeaseRegistry;
use crate::error::AuthError;

/// The advisory lock whose holder runs the expiration manager.
pub const LOCK_NAME: &str = "bulwark/auth/lease-expiration";

/// Leases taken from the queue at a time.
const BATCH: usize = 256;

/// Engine calls in flight at once during a pass.
const CONCURRENCY: usize = 16;

/// How often the manager works.
#[derive(Debug, Clone, Copy)]
pub struct ManagerConfig {
    /// Between two passes (and lock checks): 1 s.
    pub tick: Duration,
    /// Between two attempts to take the lock, when another replica has it: 5 s.
    pub lock_retry: Duration,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        ManagerConfig {
            tick: Duration::from_secs(1),
            lock_retry: Duration::from_secs(5),
        }
    }
}

/// Starts the manager for `registry`, locking through `db`; it ends (and
/// lets the lock go) once the registry's token store is closed.
pub fn spawn(registry: Arc<LeaseRegistry>, db: Database, config: ManagerConfig) -> JoinHandle<()> {
    tokio::spawn(run(registry, db, config))
}

async fn run(registry: Arc<LeaseRegistry>, db: Database, config: ManagerConfig) {
    let closed = registry.store().closed();
    tokio::pin!(closed);
    let mut state = Holder {
        guard: None,
        next_lock_try: tokio::time::Instant::now(),
    };
    let mut tick = tokio::time::interval(config.tick);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut closed => break,
            _ = tick.tick() => {}
        }
        // Every step ends at once on close (a revocation cut short is
        // retried later: engines revoke idempotently).
        tokio::select! {
            () = &mut closed => break,
            () = step(&registry, &db, &config, &mut state) => {}
        }
    }
    // Dropping the guard lets the lock go.
    drop(state);
}

/// What the manager holds between steps.
struct Holder {
    guard: Option<LockGuard>,
    next_lock_try: tokio::time::Instant,
}

/// One tick: follow the seal state, keep or take the lock, and run a pass
/// if this replica holds it.
async fn step(registry: &LeaseRegistry, db: &Database, config: &ManagerConfig, state: &mut Holder) {
    if !registry.store().is_unsealed() {
        if state.guard.take().is_some() {
            tracing::info!("sealed: this replica stopped expiring leases");
        }
        registry.unload();
        return;
    }
    if let Some(g) = &state.guard {
        if !g.check().await {
            tracing::warn!("lost the lease expiration lock: this replica stopped expiring leases");
            state.guard = None;
            registry.unload();
        }
    }
    if state.guard.is_none() {
        let now = tokio::time::Instant::now();
        if now < state.next_lock_try {
            return;
        }
        state.next_lock_try = now + config.lock_retry;
        match db.try_lock(LOCK_NAME).await {
            Ok(Some(g)) => {
                tracing::info!("this replica now expires leases");
                // Whatever the queue held is stale: the last holder consumed
                // the pending markers meanwhile.
                registry.unload();
                state.guard = Some(g);
            }
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(error = %e, "could not try the lease expiration lock");
                return;
            }
        }
    }
    let Some(g) = &state.guard else {
        return;
    };
    let held = || g.is_held();
    match registry.expire_due(&held).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(revoked = n, "revoked expired leases"),
        Err(e) if e.is_sealed() => registry.unload(),
        Err(e) => tracing::warn!(error = %e, "lease expiration pass failed"),
    }
}

impl LeaseRegistry {
    /// Forgets the in-memory queue (sealed, or no longer the manager).
    pub(crate) fn unload(&self) {
        self.queue().clear();
    }

    /// Fills the queue from every stored lease. Returns how many are queued.
    async fn load(&self) -> Result<usize, AuthError> {
        let mut entries = Vec::new();
        for hash in self.store.barrier.list("lease/").await? {
            if !plausible_hash(&hash) {
                continue;
            }
            match self.store.read_lease(&hash).await {
                Ok(Some(record)) => {
                    if let Some(due) = record.due() {
                        entries.push((hash, due));
                    }
                }
                Ok(None) => {}
                Err(AuthError::Corrupt(_)) => {
                    tracing::warn!("skipping a lease record that does not decrypt");
                }
                Err(e) => return Err(e),
            }
        }
        let n = entries.len();
        self.queue().install(entries);
        Ok(n)
    }

    /// Takes in the changes other replicas (and this one) announced.
    async fn drain_pending(&self) -> Result<(), AuthError> {
        for hash in self.store.barrier.list("lease-pending/").await? {
            // The marker goes before the record is read: a change after the
            // read writes a new marker, seen by the next pass.
            self.store.barrier.delete(&pending_path(&hash)).await?;
            if !plausible_hash(&hash) {
                continue;
            }
            match self.store.read_lease(&hash).await {
                Ok(Some(record)) => self.schedule(&hash, record.due()),
                Ok(None) => self.queue().remove(&hash),
                Err(AuthError::Corrupt(_)) => {
                    tracing::warn!("skipping a lease record that does not decrypt");
                }
                Err(e) => {
                    // Keep the news for the next pass, or reload everything.
                    if self.store.mark_lease_pending(&hash).await.is_err() {
                        self.unload();
                    }
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// One pass of the manager (the caller holds the lock while `held()`
    /// says so): loads the queue if needed, takes in pending changes, then
    /// revokes every lease that is due. Returns how many were revoked.
    pub async fn expire_due(
        &self,
        held: &(dyn Fn() -> bool + Send + Sync),
    ) -> Result<usize, AuthError> {
        self.store.ensure_unsealed().await?;
        if !self.queue().loaded {
            let n = self.load().await?;
            tracing::debug!(leases = n, "loaded the lease expiration queue");
        }
        self.drain_pending().await?;
        let mut revoked = 0;
        while held() {
            let now = self.now();
            let batch = self.queue().pop_due(now, BATCH);
            if batch.is_empty() {
                break;
            }
            let results: Vec<(String, Result<bool, AuthError>)> = futures::stream::iter(batch)
                .map(|hash| async move {
                    let r = if held() {
                        self.expire_one(&hash, now).await
                    } else {
                        Err(AuthError::Internal("lost the lease expiration lock"))
                    };
                    (hash, r)
                })
                .buffer_unordered(CONCURRENCY)
                .collect()
                .await;
            let mut failure = None;
            for (hash, r) in results {
                match r {
                    Ok(true) => revoked += 1,
                    Ok(false) => {}
                    Err(e) => {
                        // Never forgotten: look again in a second.
                        self.schedule(&hash, Some(now + 1));
                        failure.get_or_insert(e);
                    }
                }
            }
            if let Some(e) = failure {
                return Err(e);
            }
        }
        Ok(revoked)
    }

    /// Handles one lease taken from the queue at `now`: revokes it if it is
    /// due (deleting it), else puts it back at its due time. A failing
    /// engine counts an attempt and sets the next try.
    async fn expire_one(&self, hash: &str, now: i64) -> Result<bool, AuthError> {
        let Some((record, version)) = self.store.read_lease_versioned(hash).await? else {
            return Ok(false);
        };
        match record.due() {
            None => return Ok(false),
            // Renewed, or retried later, since it was queued.
            Some(due) if due > now => {
                self.schedule(hash, Some(due));
                return Ok(false);
            }
            Some(_) => {}
        }
        let status = match self.engine_revoke(&record).await {
            Ok(()) => {
                self.finish(hash, &record).await?;
                return Ok(true);
            }
            Err(status) => status,
        };
        let attempts = record.attempts().saturating_add(1);
        let delay = backoff(attempts);
        let next_try = now + delay;
        let id = record.id.clone();
        let next = LeaseRecord {
            state: LeaseState::Revoking { attempts, next_try },
            ..record
        };
        if self.store.replace_lease(hash, &version, &next).await? {
            self.schedule(hash, Some(next_try));
        } else {
            // Changed meanwhile: read it again shortly.
            self.schedule(hash, Some(now + 1));
        }
        tracing::warn!(
            lease_id = %id,
            attempts,
            retry_in_secs = delay,
            error = %status.message(),
            "could not revoke a lease; will retry"
        );
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leases::engine::test_engine::TestEngine;
    use crate::leases::tests::{fixture, lease_req, Fixture};
    use crate::leases::Engines;
    use crate::store::TokenStore;
    use crate::test_util::ROOT;
    use bulwark_shared::barrier::Barrier;
    use bulwark_shared::keyring::Keyring;
    use bulwark_shared::storage::test_util::TestPg;
    use zeroize::Zeroizing;

    const FAST: ManagerConfig = ManagerConfig {
        tick: Duration::from_millis(20),
        lock_retry: Duration::from_millis(50),
    };

    async fn wait_until(what: &str, f: impl Fn() -> bool) {
        for _ in 0..500 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("timed out waiting until {what}");
    }

    fn unseal(keyring: &Keyring) {
        keyring.install(1, [(1, Zeroizing::new([7u8; 32]))]);
    }

    #[tokio::test]
    async fn runs_in_the_background_idles_while_sealed_and_stops_on_close() {
        let Fixture {
            db,
            store,
            root,
            engine,
            reg,
        } = fixture().await;
        let task = spawn(reg.clone(), db.clone(), FAST);
        reg.register(&lease_req(&root, "db/creds/a", 5, 0))
            .await
            .unwrap();
        store.clock.advance(6);
        wait_until("the lease is revoked", || engine.calls() == 1).await;

        // Sealed: the queue is dropped and the lock let go.
        let keyring = store.barrier.keyring().clone();
        keyring.clear();
        wait_until("the queue is unloaded", || !reg.queue().loaded).await;
        let mut free = None;
        for _ in 0..100 {
            free = db.try_lock(LOCK_NAME).await.unwrap();
            if free.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(free.is_some(), "the sealed manager keeps the lock");
        drop(free);

        // Unsealed again: back at work, with a queue rebuilt from storage.
        unseal(&keyring);
        reg.register(&lease_req(&root, "db/creds/b", 5, 0))
            .await
            .unwrap();
        store.clock.advance(6);
        wait_until("the second lease is revoked", || engine.calls() == 2).await;
        assert!(reg.queue().loaded);

        store.close();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the manager stops on close")
            .unwrap();
        // And the lock is free again.
        assert!(db.try_lock(LOCK_NAME).await.unwrap().is_some());
    }

    struct Replica {
        store: Arc<TokenStore>,
        engine: Arc<TestEngine>,
        reg: Arc<LeaseRegistry>,
        task: JoinHandle<()>,
    }

    async fn replica(db: &Database) -> Replica {
        let keyring = Keyring::new();
        unseal(&keyring);
        let store = Arc::new(TokenStore::new(Barrier::new(
            db.namespace("auth").await.unwrap(),
            keyring,
        )));
        store.store_root_token(ROOT).await.unwrap();
        let engine = Arc::new(TestEngine::default());
        let reg = Arc::new(LeaseRegistry::new(
            store.clone(),
            Engines::new(engine.clone()),
        ));
        let task = spawn(reg.clone(), db.clone(), FAST);
        Replica {
            store,
            engine,
            reg,
            task,
        }
    }

    #[tokio::test]
    async fn exactly_one_manager_on_postgres_and_the_other_takes_over() {
        let pg = TestPg::new().await;
        let db1 = Database::connect(&pg.config()).await.unwrap();
        let db2 = Database::connect(&pg.config()).await.unwrap();
        let one = replica(&db1).await;
        let two = replica(&db2).await;
        // Both serve RPCs; leases registered on either.
        for _ in 0..3 {
            one.reg
                .register(&lease_req(ROOT, "db/creds/one", 2, 0))
                .await
                .unwrap();
            two.reg
                .register(&lease_req(ROOT, "db/creds/two", 2, 0))
                .await
                .unwrap();
        }
        one.store.clock.advance(3);
        two.store.clock.advance(3);
        let total = || one.engine.calls() + two.engine.calls();
        wait_until("all six leases are revoked", || total() == 6).await;
        // A few more passes: nothing is revoked twice, one manager did it all.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(total(), 6);
        let (holder, standby) = if one.engine.calls() == 6 {
            (one, two)
        } else {
            (two, one)
        };
        assert_eq!((holder.engine.calls(), standby.engine.calls()), (6, 0));
        assert!(standby.reg.list("db/creds/").await.unwrap().is_empty());

        // The holder stops (its guard drops): the standby takes over.
        holder.store.close();
        tokio::time::timeout(Duration::from_secs(5), holder.task)
            .await
            .expect("the manager stops on close")
            .unwrap();
        // The stopped replica still serves RPCs.
        holder
            .reg
            .register(&lease_req(ROOT, "db/creds/late", 2, 0))
            .await
            .unwrap();
        standby
            .reg
            .register(&lease_req(ROOT, "db/creds/late", 2, 0))
            .await
            .unwrap();
        holder.store.clock.advance(3);
        standby.store.clock.advance(3);
        wait_until("the standby revokes the new leases", || {
            standby.engine.calls() == 2
        })
        .await;
        assert_eq!(holder.engine.calls(), 6);
        standby.store.close();
        tokio::time::timeout(Duration::from_secs(5), standby.task)
            .await
            .expect("the manager stops on close")
            .unwrap();
        db1.close().await;
        db2.close().await;
    }
}
