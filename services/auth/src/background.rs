//! The service's background tasks: the root token hand-off on every unseal,
//! the expiry sweeper and the token/lease gauges. All stop when the store
//! is closed.

use std::sync::Arc;
use std::time::Duration;

use bulwark_shared::grpc::SealView;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::store::TokenStore;

/// How often the sweeper looks for expired tokens.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Retry delays of a failed root token hand-off.
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// Starts the hand-off task (following `seal`) and the sweeper (every
/// `sweep_every`). Both end once [`TokenStore::close`] is called.
pub fn spawn(
    store: Arc<TokenStore>,
    seal: watch::Receiver<SealView>,
    sweep_every: Duration,
) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(hand_off_loop(store.clone(), seal)),
        tokio::spawn(sweep_loop(store.clone(), sweep_every)),
        tokio::spawn(gauge_loop(store, GAUGE_INTERVAL)),
    ]
}

/// How often the token and lease gauges are recounted.
pub const GAUGE_INTERVAL: Duration = Duration::from_secs(10);

/// Every `every`, counts the stored tokens and leases into the process
/// metrics (`vault_token_count`, `vault_expire_num_leases`).
async fn gauge_loop(store: Arc<TokenStore>, every: Duration) {
    let closed = store.closed();
    tokio::pin!(closed);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let m = bulwark_shared::metrics::metrics();
    loop {
        tokio::select! {
            () = &mut closed => return,
            _ = tick.tick() => {}
        }
        if let Ok(n) = store.barrier.count("token/").await {
            m.token_count.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        if let Ok(n) = store.barrier.count("lease/").await {
            m.lease_count.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}

/// On every unseal, hands the init root token over (retrying with back-off
/// until it succeeds or the service seals); on seal, forgets what the store
/// caches.
async fn hand_off_loop(store: Arc<TokenStore>, mut seal: watch::Receiver<SealView>) {
    let closed = store.closed();
    tokio::pin!(closed);
    let mut retry = RETRY_MIN;
    loop {
        let view = *seal.borrow_and_update();
        let mut wait = None;
        if !view.sealed && store.is_unsealed() {
            match store.hand_off_root_token().await {
                Ok(_) => retry = RETRY_MIN,
                Err(e) if e.is_sealed() => {}
                Err(e) => {
                    tracing::warn!(error = %e, "root token hand-off failed; will retry");
                    wait = Some(retry);
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
        } else {
            store.on_sealed().await;
        }
        let next = async {
            match wait {
                // A change, or the retry delay, whichever comes first.
                Some(delay) => !matches!(
                    tokio::time::timeout(delay, seal.changed()).await,
                    Ok(Err(_))
                ),
                None => seal.changed().await.is_ok(),
            }
        };
        tokio::select! {
            () = &mut closed => return,
            alive = next => if !alive { return },
        }
    }
}

/// Every `every`, while unsealed, revokes expired tokens.
async fn sweep_loop(store: Arc<TokenStore>, every: Duration) {
    let closed = store.closed();
    tokio::pin!(closed);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = &mut closed => return,
            _ = tick.tick() => {}
        }
        if !store.is_unsealed() {
            continue;
        }
        match store.sweep().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(revoked = n, "revoked expired tokens"),
            Err(e) if e.is_sealed() => {}
            Err(e) => tracing::warn!(error = %e, "token sweep failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::TokenRef;
    use crate::root::tests::FakeSeal;
    use crate::test_util::{bare_store, create, harness, Harness};
    use std::sync::atomic::Ordering;
    use zeroize::Zeroizing;

    fn view(sealed: bool) -> SealView {
        SealView {
            initialized: true,
            sealed,
            connected: true,
        }
    }

    #[tokio::test]
    async fn hand_off_follows_the_seal_state() {
        let (_db, store) = bare_store().await;
        let keyring = store.barrier.keyring().clone();
        keyring.clear();
        let seal = FakeSeal::with("hvs.initroot");
        let store = Arc::new(store.with_root_source(seal.clone()));
        let (tx, rx) = watch::channel(view(true));
        let tasks = spawn(store.clone(), rx, Duration::from_secs(3600));
        tokio::task::yield_now().await;
        assert_eq!(seal.claims.load(Ordering::SeqCst), 0);
        // Unseal: the token arrives without anyone asking for it.
        keyring.install(1, [(1, Zeroizing::new([7u8; 32]))]);
        tx.send(view(false)).unwrap();
        for _ in 0..100 {
            if seal.acks.load(Ordering::SeqCst) == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(seal.acks.load(Ordering::SeqCst), 1);
        assert_eq!(
            store
                .lookup(TokenRef::Token("hvs.initroot"))
                .await
                .unwrap()
                .display_name,
            "root"
        );
        store.close();
        for t in tasks {
            tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .expect("tasks stop on close")
                .unwrap();
        }
    }

    #[tokio::test]
    async fn sweeper_revokes_expired_tokens() {
        let Harness { store, root, .. } = harness().await;
        let short = create(&store, &root, |r| r.ttl = 1).await;
        let (_, mut events) = store.subscribe_revocations();
        let (_tx, rx) = watch::channel(view(false));
        let tasks = spawn(store.clone(), rx, Duration::from_millis(20));
        store.clock.advance(5);
        let event = tokio::time::timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("the sweeper revokes the expired token")
            .unwrap();
        assert_eq!(event.accessors, [short.entry.accessor.as_str()]);
        store.close();
        for t in tasks {
            t.await.unwrap();
        }
    }
}
