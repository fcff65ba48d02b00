//! Helpers for this crate's tests: a store over in-memory SQLite with a fixed
//! data key, and the raw (still encrypted) view of its namespace.

use std::sync::Arc;

use bulwark_shared::barrier::Barrier;
use bulwark_shared::keyring::Keyring;
use bulwark_shared::storage::{Database, Storage, StorageConfig};
use zeroize::Zeroizing;

use crate::store::KvStore;

pub(crate) struct Harness {
    /// Kept so the in-memory database lives as long as the test.
    pub _db: Database,
    pub store: Arc<KvStore>,
    /// The `kv` namespace without the barrier: what an attacker with the
    /// database would see.
    pub raw: Storage,
}

impl Harness {
    /// Installs the data key again (after `keyring().clear()`).
    pub fn unseal(&self) {
        install(self.store.keyring());
    }
}

fn install(keyring: &Keyring) {
    keyring.install(1, [(1, Zeroizing::new([7u8; 32]))]);
}

/// A store over a fresh in-memory database, unsealed.
pub(crate) async fn harness() -> Harness {
    let db = Database::connect(&StorageConfig::SqliteMemory)
        .await
        .expect("in-memory database");
    let keyring = Keyring::new();
    install(&keyring);
    let raw = db.namespace("kv").await.expect("kv namespace");
    let store = Arc::new(KvStore::new(Barrier::new(raw.clone(), keyring)));
    Harness {
        _db: db,
        store,
        raw,
    }
}

/// Every key stored in `raw`, sorted (walking folders without recursion).
pub(crate) async fn raw_keys(raw: &Storage) -> Vec<String> {
    let mut keys = Vec::new();
    let mut folders = vec![String::new()];
    while let Some(folder) = folders.pop() {
        if !folder.is_empty() && raw.get(&folder).await.expect("get").is_some() {
            keys.push(folder.clone());
        }
        for entry in raw.list(&folder).await.expect("list") {
            let key = format!("{folder}{entry}");
            if entry.ends_with('/') {
                folders.push(key);
            } else {
                keys.push(key);
            }
        }
    }
    keys.sort();
    keys
}
