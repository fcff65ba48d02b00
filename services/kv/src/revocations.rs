//! Follows the auth service's revocations and deletes each revoked token's
//! cubbyhole.
//!
//! The follower watches `bulwark.auth.v1.Auth/WatchRevocations`, reconnecting
//! with back-off whenever the stream fails or ends. An accessor whose
//! cubbyhole cannot be deleted yet (sealed, storage trouble) is kept and
//! retried until it can. Revocations announced while this service was not
//! watching are not seen: their cubbyholes stay until the mount is dropped.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bulwark_proto::auth::v1::auth_client::AuthClient;
use bulwark_proto::auth::v1::{RevocationEvent, WatchRevocationsRequest};
use bulwark_shared::grpc::Channel;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::Status;

use crate::layout;
use crate::store::KvStore;

/// The first delay before reconnecting (and retrying a failed deletion).
pub const RETRY_MIN: Duration = Duration::from_millis(200);
/// The longest delay between reconnection attempts.
pub const RETRY_MAX: Duration = Duration::from_secs(10);
/// At most this many revoked accessors wait for their cubbyhole's deletion
/// (while sealed, say); beyond, new ones are dropped with a warning.
pub const MAX_PENDING: usize = 100_000;

/// A stream of revocation events.
pub type RevocationStream = BoxStream<'static, Result<RevocationEvent, Status>>;

/// Where revocations come from: the auth service, or a fake in tests.
pub trait RevocationSource: Send + Sync + 'static {
    /// Opens a fresh stream of revocation events.
    fn watch(&self) -> BoxFuture<'_, Result<RevocationStream, Status>>;
}

impl RevocationSource for AuthClient<Channel> {
    fn watch(&self) -> BoxFuture<'_, Result<RevocationStream, Status>> {
        let mut client = self.clone();
        Box::pin(async move {
            let stream = client
                .watch_revocations(WatchRevocationsRequest::default())
                .await?
                .into_inner();
            Ok(stream.boxed())
        })
    }
}

/// Starts following `source`, deleting the cubbyhole of every revoked
/// accessor, until `stop` turns true (or its sender goes).
pub fn spawn(
    store: Arc<KvStore>,
    source: impl RevocationSource,
    stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(follow(store, source, stop))
}

/// Resolves once `stop` is true or its sender is gone.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn follow(store: Arc<KvStore>, source: impl RevocationSource, stop: watch::Receiver<bool>) {
    let stop = stopped(stop);
    tokio::pin!(stop);
    let mut pending = BTreeSet::new();
    let mut backoff = RETRY_MIN;
    loop {
        let opened = tokio::select! {
            () = &mut stop => return,
            opened = source.watch() => opened,
        };
        match opened {
            Ok(mut events) => loop {
                let retry = tokio::time::sleep(RETRY_MIN);
                tokio::select! {
                    () = &mut stop => return,
                    event = events.next() => match event {
                        Some(Ok(event)) => {
                            backoff = RETRY_MIN;
                            remember(&mut pending, event.accessors);
                            purge(&store, &mut pending).await;
                        }
                        Some(Err(status)) => {
                            tracing::warn!(code = ?status.code(), message = status.message(), "revocation stream failed; reconnecting");
                            break;
                        }
                        None => {
                            tracing::debug!("revocation stream ended; reconnecting");
                            break;
                        }
                    },
                    () = retry, if !pending.is_empty() => purge(&store, &mut pending).await,
                }
            },
            Err(status) => {
                tracing::debug!(code = ?status.code(), message = status.message(), "cannot watch revocations yet");
            }
        }
        tokio::select! {
            () = &mut stop => return,
            () = tokio::time::sleep(backoff) => {}
        }
        purge(&store, &mut pending).await;
        backoff = (backoff * 2).min(RETRY_MAX);
    }
}

/// Adds revoked `accessors` to `pending`, skipping implausible ones and
/// dropping (with a warning) what would grow it beyond [`MAX_PENDING`].
fn remember(pending: &mut BTreeSet<String>, accessors: Vec<String>) {
    let mut dropped = 0usize;
    for accessor in accessors {
        if !layout::plausible_accessor(&accessor) {
            continue;
        }
        if pending.len() >= MAX_PENDING {
            dropped += 1;
        } else {
            pending.insert(accessor);
        }
    }
    if dropped > 0 {
        tracing::warn!(
            dropped,
            "too many revoked cubbyholes awaiting deletion; some will stay until their mount is dropped"
        );
    }
}

/// Deletes the cubbyholes of `pending`, keeping those that fail for later.
/// While sealed nothing is tried (the keyring fills again on unseal).
async fn purge(store: &KvStore, pending: &mut BTreeSet<String>) {
    if pending.is_empty() || !store.keyring().is_loaded() {
        return;
    }
    let accessors = std::mem::take(pending);
    for accessor in accessors {
        match store.purge_cubbyhole(&accessor).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(entries = n, "deleted a revoked token's cubbyhole"),
            Err(e) => {
                if !e.is_sealed() {
                    tracing::warn!(error = %e, "could not delete a revoked token's cubbyhole; will retry");
                }
                pending.insert(accessor);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Kind;
    use crate::test_util::harness;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    use tokio::sync::mpsc;

    /// Hands out one queued stream per `watch`, then refuses.
    struct FakeAuth {
        streams: Mutex<Vec<mpsc::UnboundedReceiver<Result<RevocationEvent, Status>>>>,
        watches: AtomicUsize,
    }

    impl RevocationSource for Arc<FakeAuth> {
        fn watch(&self) -> BoxFuture<'_, Result<RevocationStream, Status>> {
            self.watches.fetch_add(1, Ordering::SeqCst);
            let next = self.streams.lock().unwrap().pop();
            Box::pin(async move {
                match next {
                    Some(rx) => {
                        Ok(tokio_stream::wrappers::UnboundedReceiverStream::new(rx).boxed())
                    }
                    None => Err(Status::unavailable("auth is down")),
                }
            })
        }
    }

    fn event(generation: u64, accessors: &[&str]) -> Result<RevocationEvent, Status> {
        Ok(RevocationEvent {
            generation,
            accessors: accessors.iter().map(|a| a.to_string()).collect(),
            watcher_id: String::new(),
        })
    }

    async fn eventually(mut f: impl FnMut() -> BoxFuture<'static, bool>) {
        for _ in 0..500 {
            if f().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition not reached in time");
    }

    async fn cubby_len(store: &Arc<KvStore>, accessor: &str) -> usize {
        store
            .list(Kind::Cubbyhole, "cubbyhole", &format!("{accessor}/"))
            .await
            .unwrap()
            .len()
    }

    #[test]
    fn pending_skips_implausible_accessors_and_is_bounded() {
        let mut pending = BTreeSet::new();
        remember(
            &mut pending,
            vec!["a".into(), "".into(), "b/c".into(), "a".into()],
        );
        assert_eq!(pending.iter().collect::<Vec<_>>(), ["a"]);
        remember(
            &mut pending,
            (0..MAX_PENDING + 10).map(|i| format!("x{i}")).collect(),
        );
        assert_eq!(pending.len(), MAX_PENDING);
    }

    #[tokio::test]
    async fn revoked_cubbyholes_go_across_reconnects() {
        let h = harness().await;
        let store = h.store.clone();
        for acc in ["a1", "a2", "a3", "keep"] {
            store
                .put(
                    Kind::Cubbyhole,
                    "cubbyhole",
                    &format!("{acc}/x"),
                    br#"{"s":"1"}"#,
                )
                .await
                .unwrap();
            store
                .put(
                    Kind::Cubbyhole,
                    "cubbyhole",
                    &format!("{acc}/d/y"),
                    br#"{"s":"2"}"#,
                )
                .await
                .unwrap();
        }
        let (tx1, rx1) = mpsc::unbounded_channel();
        let (tx2, rx2) = mpsc::unbounded_channel();
        let fake = Arc::new(FakeAuth {
            // Popped from the back: rx1 first.
            streams: Mutex::new(vec![rx2, rx1]),
            watches: AtomicUsize::new(0),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = spawn(store.clone(), fake.clone(), stop_rx);

        tx1.send(event(1, &[])).unwrap();
        tx1.send(event(2, &["a1", "bad/accessor", ""])).unwrap();
        let s = store.clone();
        eventually(move || {
            let s = s.clone();
            Box::pin(async move { cubby_len(&s, "a1").await == 0 })
        })
        .await;
        assert_eq!(cubby_len(&store, "a2").await, 2);

        // The stream breaks: the follower reconnects and goes on.
        tx1.send(Err(Status::aborted("lagged"))).unwrap();
        tx2.send(event(7, &["a2", "a3"])).unwrap();
        let s = store.clone();
        eventually(move || {
            let s = s.clone();
            Box::pin(async move { cubby_len(&s, "a2").await + cubby_len(&s, "a3").await == 0 })
        })
        .await;
        assert_eq!(cubby_len(&store, "keep").await, 2);
        assert!(fake.watches.load(Ordering::SeqCst) >= 2);

        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the follower stops")
            .unwrap();
    }

    #[tokio::test]
    async fn deletions_refused_while_sealed_are_retried() {
        let h = harness().await;
        let store = h.store.clone();
        store
            .put(Kind::Cubbyhole, "cubbyhole", "acc/x", br#"{"s":"1"}"#)
            .await
            .unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let fake = Arc::new(FakeAuth {
            streams: Mutex::new(vec![rx]),
            watches: AtomicUsize::new(0),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = spawn(store.clone(), fake, stop_rx);
        store.keyring().clear();
        tx.send(event(1, &["acc"])).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        h.unseal();
        let s = store.clone();
        eventually(move || {
            let s = s.clone();
            Box::pin(async move { cubby_len(&s, "acc").await == 0 })
        })
        .await;
        // Dropping the sender stops the follower too.
        drop(stop_tx);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the follower stops")
            .unwrap();
    }
}
