//! The static-role rotator: every few seconds, while unsealed, rotates the
//! static roles whose period has elapsed; while sealed, keeps no connection
//! pool (nor the database passwords they hold) open.

use std::sync::Arc;
use std::time::Duration;

use bulwark_shared::grpc::SealView;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::store::DbStore;

/// How often the rotator looks for static roles due for rotation.
pub const ROTATION_INTERVAL: Duration = Duration::from_secs(5);

/// Starts the rotator; it ends when `stop` turns true (or its sender goes).
pub fn spawn(
    store: Arc<DbStore>,
    seal: watch::Receiver<SealView>,
    every: Duration,
    stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(rotate_loop(store, seal, every, stop))
}

async fn rotate_loop(
    store: Arc<DbStore>,
    mut seal: watch::Receiver<SealView>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            changed = stop.changed() => if changed.is_err() || *stop.borrow() { return },
            changed = seal.changed() => {
                if changed.is_err() {
                    return;
                }
                if seal.borrow_and_update().sealed {
                    store.close_pools();
                }
                continue;
            }
            _ = tick.tick() => {}
        }
        if seal.borrow().sealed || !store.keyring().is_loaded() {
            store.close_pools();
            continue;
        }
        match store.rotate_due().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rotated = n, "rotated static roles"),
            Err(e) if e.is_sealed() => store.close_pools(),
            Err(e) => tracing::warn!(error = %e, "static role rotation pass failed"),
        }
    }
}
