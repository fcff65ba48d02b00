//! Helpers for this crate's tests: a token store over in-memory SQLite with a
//! fixed data key, and a stored root token.

use std::sync::Arc;

use bulwark_proto::auth::v1::CreateTokenRequest;
use bulwark_shared::barrier::Barrier;
use bulwark_shared::keyring::Keyring;
use bulwark_shared::storage::{Database, StorageConfig};
use zeroize::Zeroizing;

use crate::create::Created;
use crate::store::TokenStore;

/// The root token every [`harness`] starts with.
pub(crate) const ROOT: &str = "hvs.TestRootToken0123456789";

pub(crate) struct Harness {
    pub db: Database,
    pub store: Arc<TokenStore>,
    pub root: String,
}

/// A store over a fresh in-memory database, unsealed, with no root token.
pub(crate) async fn bare_store() -> (Database, TokenStore) {
    let db = Database::connect(&StorageConfig::SqliteMemory)
        .await
        .expect("in-memory database");
    let keyring = Keyring::new();
    keyring.install(1, [(1, Zeroizing::new([7u8; 32]))]);
    let storage = db.namespace("auth").await.expect("auth namespace");
    (db, TokenStore::new(Barrier::new(storage, keyring)))
}

/// A store with the root token [`ROOT`] stored.
pub(crate) async fn harness() -> Harness {
    let (db, store) = bare_store().await;
    store.store_root_token(ROOT).await.expect("root token");
    Harness {
        db,
        store: Arc::new(store),
        root: ROOT.to_string(),
    }
}

/// Creates a token with policy `dev` under `parent`, after `adjust`.
pub(crate) async fn create(
    store: &TokenStore,
    parent: &str,
    adjust: impl FnOnce(&mut CreateTokenRequest),
) -> Created {
    let mut req = CreateTokenRequest {
        parent_token: parent.to_string(),
        policies: vec!["dev".into()],
        ..Default::default()
    };
    adjust(&mut req);
    store.create(&req).await.expect("create token")
}
