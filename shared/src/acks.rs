//! Acknowledged change streams: a service that pushes invalidations to
//! caching watchers (revoked tokens, changed policies) answers a change
//! only once every watcher has applied it, so no cache can serve what was
//! just revoked to a request that follows the answer.
//!
//! A watcher registers when its stream opens ([`AckSet::register`]; the
//! returned guard lives as long as the stream), acknowledges each
//! generation it applied ([`AckSet::ack`]), and the writer waits with
//! [`AckSet::wait`], bounded: a watcher that neither acknowledges nor goes
//! away delays a change by at most the limit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

/// How long a change waits for its watchers by default.
pub const ACK_WAIT: Duration = Duration::from_secs(1);

/// The open watchers of one change stream and what each acknowledged.
#[derive(Clone)]
pub struct AckSet {
    watchers: Arc<Mutex<HashMap<String, u64>>>,
    /// Bumped on every acknowledgement and every watcher that leaves.
    changed: Arc<watch::Sender<u64>>,
}

impl Default for AckSet {
    fn default() -> Self {
        AckSet {
            watchers: Arc::default(),
            changed: Arc::new(watch::Sender::new(0)),
        }
    }
}

/// Keeps a watcher registered until dropped (with its stream).
pub struct AckGuard {
    set: AckSet,
    id: String,
}

impl AckGuard {
    /// The id the watcher acknowledges with.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Drop for AckGuard {
    fn drop(&mut self) {
        self.set.lock().remove(&self.id);
        self.set.changed.send_modify(|n| *n += 1);
    }
}

impl AckSet {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.watchers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a watcher that has seen everything up to `generation`.
    pub fn register(&self, generation: u64) -> AckGuard {
        let id = uuid::Uuid::new_v4().simple().to_string();
        self.lock().insert(id.clone(), generation);
        AckGuard {
            set: self.clone(),
            id,
        }
    }

    /// The watcher `id` applied every change up to `generation` (unknown
    /// ids are ignored).
    pub fn ack(&self, id: &str, generation: u64) {
        if let Some(acked) = self.lock().get_mut(id) {
            *acked = (*acked).max(generation);
        }
        self.changed.send_modify(|n| *n += 1);
    }

    /// Waits until every watcher acknowledged `generation`, or `limit`.
    /// Returns whether they all did.
    pub async fn wait(&self, generation: u64, limit: Duration) -> bool {
        let mut rx = self.changed.subscribe();
        tokio::time::timeout(limit, async {
            loop {
                rx.borrow_and_update();
                if self.lock().values().all(|acked| *acked >= generation) {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await
        .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_change_waits_for_every_watcher() {
        let set = AckSet::default();
        assert!(set.wait(5, Duration::from_millis(10)).await, "no watcher");
        let a = set.register(1);
        let b = set.register(1);
        let waiter = {
            let set = set.clone();
            tokio::spawn(async move { set.wait(2, Duration::from_secs(5)).await })
        };
        set.ack(a.id(), 2);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "b has not acknowledged");
        drop(b); // b's stream ended: nothing to wait for
        assert!(waiter.await.unwrap());
        // A silent watcher delays by the limit only.
        let _c = set.register(2);
        assert!(!set.wait(3, Duration::from_millis(50)).await);
        set.ack("unknown", 9);
    }
}
