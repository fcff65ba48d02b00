//! The root token hand-off: the root token minted at init, and those made by
//! generate-root, wait in the seal service until this service has stored them.
//!
//! Whenever the service is unsealed, the background task (see
//! [`crate::background`]) claims them (`ClaimInitRootToken`), stores each and
//! acknowledges it by its id (`AckInitRootToken`). An Authenticate or Lookup
//! that finds no token also tries once per unseal, so a root token used the
//! moment the service unseals is found. When generate-root completes, the
//! gateway has this service claim at once (`ClaimRootTokens`, see
//! [`TokenStore::claim_root_tokens`]) and answers only after that, so the new
//! token works as soon as the client sees it. Storing is idempotent (the same
//! token has the same HMAC), so a crash between storing and acknowledging is
//! harmless.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bulwark_proto::seal::v1::seal_client::SealClient;
use bulwark_proto::seal::v1::{AckInitRootTokenRequest, ClaimInitRootTokenRequest};
use bulwark_shared::grpc::Channel;
use futures::future::BoxFuture;
use tokio::sync::Mutex;
use zeroize::Zeroizing;

use crate::error::AuthError;
use crate::record::{TokenRecord, MAX_TOKEN_LEN, SERVICE_TYPE};
use crate::store::TokenStore;

/// How long one call to the seal service may take.
const SEAL_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// At most this many root tokens are claimed in one hand-off.
const MAX_CLAIMS: usize = 64;

/// A root token waiting in the seal service.
pub struct PendingRootToken {
    pub token: Zeroizing<String>,
    /// Names it for the acknowledgement.
    pub id: String,
    /// Whether another one is pending after it.
    pub more: bool,
}

/// Where root tokens come from: the seal service in production, a stand-in
/// in tests.
pub trait RootTokenSource: Send + Sync + 'static {
    /// The next pending root token, if any (`None` when there is none).
    fn claim(&self) -> BoxFuture<'_, Result<Option<PendingRootToken>, AuthError>>;
    /// The token `id` is stored: the source may forget it.
    fn ack<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), AuthError>>;
}

fn seal_error(status: tonic::Status) -> AuthError {
    AuthError::Seal(format!("{:?}: {}", status.code(), status.message()))
}

impl RootTokenSource for SealClient<Channel> {
    fn claim(&self) -> BoxFuture<'_, Result<Option<PendingRootToken>, AuthError>> {
        let mut client = self.clone();
        Box::pin(async move {
            let resp = tokio::time::timeout(
                SEAL_CALL_TIMEOUT,
                client.claim_init_root_token(ClaimInitRootTokenRequest {}),
            )
            .await
            .map_err(|_| AuthError::Seal("ClaimInitRootToken timed out".into()))?
            .map_err(seal_error)?
            .into_inner();
            let token = Zeroizing::new(resp.root_token);
            Ok((!token.is_empty()).then_some(PendingRootToken {
                token,
                id: resp.id,
                more: resp.more,
            }))
        })
    }

    fn ack<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), AuthError>> {
        let mut client = self.clone();
        Box::pin(async move {
            tokio::time::timeout(
                SEAL_CALL_TIMEOUT,
                client.ack_init_root_token(AckInitRootTokenRequest { id: id.to_string() }),
            )
            .await
            .map_err(|_| AuthError::Seal("AckInitRootToken timed out".into()))?
            .map_err(seal_error)?;
            Ok(())
        })
    }
}

/// Progress of the hand-off since the last unseal.
#[derive(Default)]
struct Progress {
    /// The seal service has nothing pending (any more).
    done: bool,
    /// The lazy path (a token miss) has had its one try.
    lazy_tried: bool,
}

/// The hand-off state a store keeps.
pub(crate) struct Handoff {
    source: Arc<dyn RootTokenSource>,
    /// Held across a claim, so concurrent callers wait for it rather than
    /// claim again.
    progress: Mutex<Progress>,
    /// Counts claimed tokens, so that a miss can tell whether one arrived
    /// since it looked.
    claimed: AtomicU64,
}

impl TokenStore {
    /// Takes the init root token from `source` when unsealed.
    pub fn with_root_source(mut self, source: Arc<dyn RootTokenSource>) -> Self {
        self.root = Some(Handoff {
            source,
            progress: Mutex::new(Progress::default()),
            claimed: AtomicU64::new(0),
        });
        self
    }

    /// Claims the pending init root token, stores it and acknowledges it.
    /// Returns whether a token was claimed; does nothing once a claim has
    /// found nothing pending since the last unseal.
    pub async fn hand_off_root_token(&self) -> Result<bool, AuthError> {
        let Some(h) = &self.root else {
            return Ok(false);
        };
        let mut progress = h.progress.lock().await;
        if progress.done {
            return Ok(false);
        }
        let claimed = self.claim_and_store(h).await?;
        progress.done = true;
        Ok(claimed > 0)
    }

    /// Claims, stores and acknowledges every pending root token now, even
    /// if a hand-off already ran since the last unseal (generate-root has
    /// just made one). Waits for a hand-off under way. Returns how many this
    /// call claimed; when it returns, every token pending before the call
    /// is stored.
    pub async fn claim_root_tokens(&self) -> Result<u32, AuthError> {
        let Some(h) = &self.root else {
            return Ok(0);
        };
        let mut progress = h.progress.lock().await;
        let claimed = self.claim_and_store(h).await?;
        progress.done = true;
        Ok(claimed)
    }

    /// A mark to take before looking a token up, for [`Self::hand_off_on_miss`].
    pub(crate) fn handoff_mark(&self) -> u64 {
        self.root
            .as_ref()
            .map_or(0, |h| h.claimed.load(Ordering::SeqCst))
    }

    /// The lazy path, after a lookup that began at `mark` found nothing: at
    /// most one try per unseal (waiting for a hand-off already under way).
    /// Returns whether a root token was claimed since `mark`, i.e. whether
    /// looking again may help.
    pub(crate) async fn hand_off_on_miss(&self, mark: u64) -> bool {
        let Some(h) = &self.root else {
            return false;
        };
        let mut progress = h.progress.lock().await;
        if !progress.done && !progress.lazy_tried && self.is_unsealed() {
            progress.lazy_tried = true;
            match self.claim_and_store(h).await {
                Ok(_) => progress.done = true,
                Err(e) if e.is_sealed() => {}
                Err(e) => tracing::warn!(error = %e, "root token hand-off failed"),
            }
        }
        h.claimed.load(Ordering::SeqCst) != mark
    }

    /// Forgets the hand-off progress and the cached HMAC key (on seal).
    pub(crate) async fn on_sealed(&self) {
        self.forget_hmac_key();
        if let Some(h) = &self.root {
            *h.progress.lock().await = Progress::default();
        }
    }

    /// Claims, stores and acknowledges pending root tokens one by one, as
    /// long as the source says more are pending. Returns how many.
    async fn claim_and_store(&self, h: &Handoff) -> Result<u32, AuthError> {
        // Sealed: nothing could be stored, so do not claim.
        self.barrier.keyring().ensure_active().await?;
        let mut claimed = 0;
        for _ in 0..MAX_CLAIMS {
            let Some(pending) = h.source.claim().await? else {
                break;
            };
            if self.store_root_token(&pending.token).await? {
                tracing::info!(id = %pending.id, "stored a root token from the seal service");
            }
            h.claimed.fetch_add(1, Ordering::SeqCst);
            h.source.ack(&pending.id).await?;
            claimed += 1;
            if !pending.more {
                break;
            }
        }
        Ok(claimed)
    }

    /// Stores `token` as a root token: policies `root`, never expiring, an
    /// orphan, not renewable. Returns whether it was new (storing the same
    /// token again changes nothing).
    pub async fn store_root_token(&self, token: &str) -> Result<bool, AuthError> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::invalid("invalid root token"));
        }
        let hash = self.hash(token).await?;
        if self.read(&hash).await?.is_some() {
            return Ok(false);
        }
        let record = TokenRecord {
            accessor: String::new(),
            policies: vec!["root".to_string()],
            meta: Default::default(),
            display_name: "root".to_string(),
            path: "auth/token/root".to_string(),
            creation_time: self.now(),
            creation_ttl: 0,
            expire_time: 0,
            explicit_max_ttl: 0,
            period: 0,
            num_uses: 0,
            orphan: true,
            renewable: false,
            token_type: SERVICE_TYPE.to_string(),
            parent: None,
            last_renewal_time: 0,
            used_up: false,
            max_ttl: 0,
            bound_cidrs: Vec::new(),
        };
        Ok(self.insert(&hash, record).await?.is_some())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::record::TokenRef;
    use crate::test_util::{bare_store, harness, Harness};
    use std::sync::atomic::AtomicUsize;
    use std::sync::Mutex as StdMutex;

    /// A seal stand-in holding pending tokens as `(id, token)`.
    #[derive(Default)]
    pub(crate) struct FakeSeal {
        pub pending: StdMutex<Vec<(String, String)>>,
        pub claims: AtomicUsize,
        pub acks: AtomicUsize,
        pub fail: std::sync::atomic::AtomicBool,
    }

    impl FakeSeal {
        pub fn with(token: &str) -> Arc<Self> {
            let f = FakeSeal::default();
            f.push("init", token);
            Arc::new(f)
        }

        pub fn push(&self, id: &str, token: &str) {
            self.pending
                .lock()
                .unwrap()
                .push((id.to_string(), token.to_string()));
        }
    }

    impl RootTokenSource for FakeSeal {
        fn claim(&self) -> BoxFuture<'_, Result<Option<PendingRootToken>, AuthError>> {
            Box::pin(async move {
                self.claims.fetch_add(1, Ordering::SeqCst);
                if self.fail.load(Ordering::SeqCst) {
                    return Err(AuthError::Seal("unreachable".into()));
                }
                let pending = self.pending.lock().unwrap();
                Ok(pending.first().map(|(id, token)| PendingRootToken {
                    token: Zeroizing::new(token.clone()),
                    id: id.clone(),
                    more: pending.len() > 1,
                }))
            })
        }

        fn ack<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<(), AuthError>> {
            Box::pin(async move {
                self.acks.fetch_add(1, Ordering::SeqCst);
                self.pending.lock().unwrap().retain(|(i, _)| i != id);
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn root_token_is_stored_with_vault_fields() {
        let Harness { store, root, .. } = harness().await;
        let e = store.lookup(TokenRef::Token(&root)).await.unwrap();
        assert_eq!(e.policies, ["root"]);
        assert_eq!(e.display_name, "root");
        assert_eq!(e.path, "auth/token/root");
        assert_eq!((e.ttl, e.expire_time, e.creation_ttl), (0, 0, 0));
        assert!(e.orphan && !e.renewable);
        // Idempotent.
        assert!(!store.store_root_token(&root).await.unwrap());
        assert_eq!(store.list_accessors().await.unwrap(), [e.accessor]);
    }

    #[tokio::test]
    async fn hand_off_claims_stores_and_acks_once() {
        let (_db, store) = bare_store().await;
        let seal = FakeSeal::with("hvs.initroot");
        let store = Arc::new(store.with_root_source(seal.clone()));
        assert!(store.hand_off_root_token().await.unwrap());
        assert_eq!(seal.acks.load(Ordering::SeqCst), 1);
        assert!(seal.pending.lock().unwrap().is_empty());
        assert_eq!(
            store
                .authenticate("hvs.initroot", "")
                .await
                .unwrap()
                .policies,
            ["root"]
        );
        // Nothing more is claimed until the next unseal.
        assert!(!store.hand_off_root_token().await.unwrap());
        assert!(store.authenticate("hvs.other", "").await.is_err());
        assert_eq!(seal.claims.load(Ordering::SeqCst), 1);
        store.on_sealed().await;
        assert!(!store.hand_off_root_token().await.unwrap());
        assert_eq!(seal.claims.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_miss_claims_lazily_at_most_once_per_unseal() {
        let (_db, store) = bare_store().await;
        let seal = FakeSeal::with("hvs.initroot");
        seal.fail.store(true, Ordering::SeqCst);
        let store = Arc::new(store.with_root_source(seal.clone()));
        // The seal service fails: one try, then misses stay misses.
        for _ in 0..5 {
            assert!(matches!(
                store.authenticate("hvs.initroot", "").await,
                Err(AuthError::PermissionDenied)
            ));
        }
        assert_eq!(seal.claims.load(Ordering::SeqCst), 1);
        // Next unseal, the seal service is back: the first miss stores it and
        // the very same request succeeds.
        seal.fail.store(false, Ordering::SeqCst);
        store.on_sealed().await;
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let s = store.clone();
                tokio::spawn(async move { s.lookup(TokenRef::Token("hvs.initroot")).await })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().policies, ["root"]);
        }
        assert_eq!(seal.claims.load(Ordering::SeqCst), 2);
        assert_eq!(seal.acks.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn crash_between_store_and_ack_is_harmless() {
        let (_db, store) = bare_store().await;
        let seal = FakeSeal::with("hvs.initroot");
        let store = store.with_root_source(seal.clone());
        // Stored, but the ack never arrived.
        store.store_root_token("hvs.initroot").await.unwrap();
        let before = store.lookup(TokenRef::Token("hvs.initroot")).await.unwrap();
        assert!(store.hand_off_root_token().await.unwrap());
        let after = store.lookup(TokenRef::Token("hvs.initroot")).await.unwrap();
        assert_eq!(before, after);
        assert_eq!(store.list_accessors().await.unwrap().len(), 1);
        assert_eq!(seal.acks.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn generated_tokens_are_claimed_on_request_even_after_a_hand_off() {
        let (_db, store) = bare_store().await;
        let seal = FakeSeal::with("hvs.initroot");
        let store = Arc::new(store.with_root_source(seal.clone()));
        assert!(store.hand_off_root_token().await.unwrap());
        // generate-root made two more: the background hand-off is done for
        // this unseal, but a claim on request takes both, in one pass.
        seal.push("g1", "hvs.generated1");
        seal.push("g2", "hvs.generated2");
        assert!(!store.hand_off_root_token().await.unwrap());
        let claims = seal.claims.load(Ordering::SeqCst);
        assert_eq!(store.claim_root_tokens().await.unwrap(), 2);
        assert_eq!(seal.claims.load(Ordering::SeqCst), claims + 2);
        assert!(seal.pending.lock().unwrap().is_empty());
        for t in ["hvs.initroot", "hvs.generated1", "hvs.generated2"] {
            let e = store.lookup(TokenRef::Token(t)).await.unwrap();
            assert_eq!(
                (e.policies.as_slice(), e.ttl),
                (["root".to_string()].as_slice(), 0)
            );
        }
        // Nothing pending: nothing claimed, no error.
        assert_eq!(store.claim_root_tokens().await.unwrap(), 0);
        // Racing claims store each token once.
        seal.push("g3", "hvs.generated3");
        let (a, b) = tokio::join!(store.claim_root_tokens(), store.claim_root_tokens());
        assert_eq!(a.unwrap() + b.unwrap(), 1);
        assert_eq!(store.list_accessors().await.unwrap().len(), 4);
        // Sealed: refused, nothing claimed.
        store.barrier.keyring().clear();
        assert!(store.claim_root_tokens().await.unwrap_err().is_sealed());
    }
}
