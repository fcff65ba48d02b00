//! Helpers for this crate's tests: a broker over in-memory SQLite with a
//! fixed data key, and the raw (still encrypted) view of its namespace.

use std::sync::Arc;

use bulwark_shared::barrier::Barrier;
use bulwark_shared::keyring::Keyring;
use bulwark_shared::storage::{Database, Storage, StorageConfig};
use zeroize::Zeroizing;

use crate::broker::AuditBroker;

pub(crate) struct Harness {
    /// Kept so the in-memory database lives as long as the test.
    pub db: Database,
    pub broker: Arc<AuditBroker>,
    /// The `audit` namespace without the barrier.
    pub raw: Storage,
}

impl Harness {
    /// Installs the data key again (after `keyring().clear()`).
    pub fn unseal(&self) {
        install(self.broker.keyring());
    }

    /// A new broker over the same storage: the service restarted.
    pub async fn restart(&self) -> Arc<AuditBroker> {
        self.broker.unload().await;
        broker(&self.db).await
    }
}

fn install(keyring: &Keyring) {
    keyring.install(1, [(1, Zeroizing::new([7u8; 32]))]);
}

async fn broker(db: &Database) -> Arc<AuditBroker> {
    let keyring = Keyring::new();
    install(&keyring);
    let storage = db.namespace("audit").await.expect("audit namespace");
    Arc::new(AuditBroker::new(Barrier::new(storage, keyring)))
}

/// A broker over a fresh in-memory database, unsealed.
pub(crate) async fn harness() -> Harness {
    let db = Database::connect(&StorageConfig::SqliteMemory)
        .await
        .expect("in-memory database");
    let raw = db.namespace("audit").await.expect("audit namespace");
    let broker = broker(&db).await;
    Harness { db, broker, raw }
}
