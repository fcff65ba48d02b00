//! The data keys one service holds in memory while the system is unsealed.
//!
//! Keys are per service and per keyring term. The seal service fills its own
//! keyring directly; every other service fills it from `seal.ServiceKey` (see
//! [`crate::grpc::SealWatcher`]). On seal the keyring is cleared: every key is
//! zeroized as soon as the last in-flight operation using it finishes.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use futures::future::BoxFuture;
use zeroize::Zeroizing;

/// A 256-bit data key, zeroized on drop.
pub type DataKey = Zeroizing<[u8; 32]>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum KeyError {
    #[error("Vault is sealed")]
    Sealed,
    #[error("no key for keyring term {0}")]
    UnknownTerm(u32),
    #[error("key service unavailable: {0}")]
    Unavailable(String),
}

/// Fetches a key this service does not hold yet (an older term, after rotation).
pub trait KeyLoader: Send + Sync + 'static {
    /// Returns `(term, key)`; term 0 asks for the active term.
    fn load(&self, term: u32) -> BoxFuture<'_, Result<(u32, DataKey), KeyError>>;
}

struct KeyState {
    active: u32,
    keys: BTreeMap<u32, Arc<DataKey>>,
}

/// Shared handle to a service's keys. Cheap to clone.
#[derive(Clone, Default)]
pub struct Keyring {
    state: Arc<RwLock<Option<KeyState>>>,
    loader: Option<Arc<dyn KeyLoader>>,
    /// Bumped by every clear, so that a key fetched before a seal is never
    /// installed after it.
    epoch: Arc<AtomicU64>,
}

impl Keyring {
    pub fn new() -> Self {
        Self::default()
    }

    /// A keyring that can fetch missing terms from `loader`.
    pub fn with_loader(loader: Arc<dyn KeyLoader>) -> Self {
        Keyring {
            state: Arc::default(),
            loader: Some(loader),
            epoch: Arc::default(),
        }
    }

    /// Installs keys and marks `active` as the term new writes use.
    pub fn install(&self, active: u32, keys: impl IntoIterator<Item = (u32, DataKey)>) {
        let keys = keys.into_iter().map(|(t, k)| (t, Arc::new(k))).collect();
        *self.write() = Some(KeyState { active, keys });
    }

    /// Makes `term` (with `key`) the term new writes use, keeping the keys
    /// already held so older data is read without a fetch (after a
    /// rotation). Without keys, installs just this one.
    pub fn set_active(&self, term: u32, key: DataKey) {
        let mut guard = self.write();
        let key = Arc::new(key);
        match guard.as_mut() {
            Some(state) => {
                state.keys.insert(term, key);
                state.active = term;
            }
            None => {
                *guard = Some(KeyState {
                    active: term,
                    keys: [(term, key)].into_iter().collect(),
                })
            }
        }
    }

    /// Drops every key (each is zeroized when its last user lets go).
    pub fn clear(&self) {
        let mut guard = self.write();
        self.epoch.fetch_add(1, Ordering::SeqCst);
        *guard = None;
    }

    pub fn is_loaded(&self) -> bool {
        self.read().is_some()
    }

    /// The term and key new writes use.
    pub fn active(&self) -> Result<(u32, Arc<DataKey>), KeyError> {
        let guard = self.read();
        let state = guard.as_ref().ok_or(KeyError::Sealed)?;
        let key = state
            .keys
            .get(&state.active)
            .ok_or(KeyError::UnknownTerm(state.active))?;
        Ok((state.active, key.clone()))
    }

    /// Like [`Keyring::active`], but when no key is held and a loader exists,
    /// asks for the active key first: a request arriving just after unseal,
    /// before the seal-state stream has delivered, is served rather than
    /// refused. The seal service refuses while sealed, so this never unseals.
    pub async fn ensure_active(&self) -> Result<(u32, Arc<DataKey>), KeyError> {
        match self.active() {
            Err(KeyError::Sealed) => {}
            other => return other,
        }
        let Some(loader) = &self.loader else {
            return Err(KeyError::Sealed);
        };
        // A clear while the key was in flight may be a stale "sealed" event
        // rather than a seal: ask again; the seal service refuses if sealed.
        for _ in 0..3 {
            let epoch = self.epoch.load(Ordering::SeqCst);
            let (term, key) = loader.load(0).await?;
            let mut guard = self.write();
            if self.epoch.load(Ordering::SeqCst) != epoch {
                continue;
            }
            if guard.is_none() {
                *guard = Some(KeyState {
                    active: term,
                    keys: [(term, Arc::new(key))].into_iter().collect(),
                });
            }
            drop(guard);
            return self.active();
        }
        Err(KeyError::Sealed)
    }

    /// The key of `term`, fetched through the loader if not held yet.
    pub async fn get(&self, term: u32) -> Result<Arc<DataKey>, KeyError> {
        {
            let guard = self.read();
            let state = guard.as_ref().ok_or(KeyError::Sealed)?;
            if let Some(k) = state.keys.get(&term) {
                return Ok(k.clone());
            }
        }
        let loader = self.loader.as_ref().ok_or(KeyError::UnknownTerm(term))?;
        let epoch = self.epoch.load(Ordering::SeqCst);
        let (got, key) = loader.load(term).await?;
        if got != term {
            return Err(KeyError::UnknownTerm(term));
        }
        let key = Arc::new(key);
        let mut guard = self.write();
        if self.epoch.load(Ordering::SeqCst) != epoch {
            return Err(KeyError::Sealed);
        }
        let state = guard.as_mut().ok_or(KeyError::Sealed)?;
        Ok(state.keys.entry(term).or_insert(key).clone())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Option<KeyState>> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Option<KeyState>> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sealed_until_installed_and_after_clear() {
        let k = Keyring::new();
        assert!(matches!(k.active(), Err(KeyError::Sealed)));
        k.install(
            2,
            [
                (1, Zeroizing::new([1u8; 32])),
                (2, Zeroizing::new([2u8; 32])),
            ],
        );
        let (term, key) = k.active().unwrap();
        assert_eq!((term, key[0]), (2, 2));
        assert_eq!(k.get(1).await.unwrap()[0], 1);
        assert!(matches!(k.get(3).await, Err(KeyError::UnknownTerm(3))));
        k.clear();
        assert!(!k.is_loaded());
        assert!(matches!(k.get(1).await, Err(KeyError::Sealed)));
    }

    struct Fixed;
    impl KeyLoader for Fixed {
        fn load(&self, term: u32) -> BoxFuture<'_, Result<(u32, DataKey), KeyError>> {
            Box::pin(async move { Ok((term, Zeroizing::new([term as u8; 32]))) })
        }
    }

    #[tokio::test]
    async fn loads_the_active_key_on_demand() {
        let k = Keyring::with_loader(Arc::new(Fixed));
        assert!(matches!(k.active(), Err(KeyError::Sealed)));
        let (term, key) = k.ensure_active().await.unwrap();
        assert_eq!((term, key[0]), (0, 0));
        assert!(k.is_loaded());
        // Without a loader there is nothing to ask.
        assert!(matches!(
            Keyring::new().ensure_active().await,
            Err(KeyError::Sealed)
        ));
    }

    #[tokio::test]
    async fn set_active_keeps_older_keys() {
        let k = Keyring::new();
        k.set_active(1, Zeroizing::new([1u8; 32]));
        assert_eq!(k.active().unwrap().0, 1);
        k.set_active(2, Zeroizing::new([2u8; 32]));
        let (term, key) = k.active().unwrap();
        assert_eq!((term, key[0]), (2, 2));
        // No loader: term 1 is still served from memory.
        assert_eq!(k.get(1).await.unwrap()[0], 1);
        k.clear();
        assert!(matches!(k.active(), Err(KeyError::Sealed)));
    }

    #[tokio::test]
    async fn loads_missing_terms() {
        let k = Keyring::with_loader(Arc::new(Fixed));
        assert!(matches!(k.get(1).await, Err(KeyError::Sealed)));
        k.install(2, [(2, Zeroizing::new([2u8; 32]))]);
        assert_eq!(k.get(1).await.unwrap()[0], 1);
    }
}
