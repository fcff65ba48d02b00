//! The token expiry index: what lets the sweeper find expired tokens without
//! reading every token (issue 12: with a million live tokens, a full scan
//! every 5 s decrypted a million records each time and took a third of the
//! CPU from every request).
//!
//! Every token with an expiry has a marker `token-expiry/<bucket>/<hash>`,
//! written before its record (and again, at the new bucket, before a renewal
//! is stored). A bucket is the expiry rounded up to [`BUCKET_SECS`]; the
//! buckets in use are listed under `token-expiry-buckets/<bucket>`, so a
//! sweep lists the few buckets, then only the markers of the buckets that
//! are due. A marker is a hint, never a verdict: the sweeper reads the
//! record and revokes only what is expired (a renewed token's old marker is
//! dropped; its new one waits in a later bucket).
//!
//! A full scan (every record) still runs at the first sweep of a process
//! and then every [`FULL_SCAN_SECS`]: it catches what markers cannot (used-up
//! tokens and orphans left by a crash mid-revocation, tokens stored before
//! this index existed).

use std::collections::HashSet;
use std::sync::Mutex;

use crate::error::AuthError;
use crate::store::TokenStore;

/// Width of one expiry bucket.
pub const BUCKET_SECS: i64 = 10;

/// Between two full scans of every token record.
pub const FULL_SCAN_SECS: i64 = 3600;

const BUCKETS: &str = "token-expiry-buckets/";

fn bucket_of(expire_time: i64) -> i64 {
    // Rounded up: every token of a bucket has expired once `now` reaches
    // the bucket's time.
    (expire_time + BUCKET_SECS - 1).div_euclid(BUCKET_SECS) * BUCKET_SECS
}

fn bucket_key(bucket: i64) -> String {
    format!("{BUCKETS}{bucket:012}")
}

fn markers_prefix(bucket: i64) -> String {
    format!("token-expiry/{bucket:012}/")
}

/// What this process remembers of the index.
#[derive(Default)]
pub(crate) struct ExpiryState {
    /// Buckets this process has registered (to skip rewriting their key).
    registered: Mutex<HashSet<i64>>,
    /// When the last full scan ran (unix seconds; `None`: not yet).
    last_full_scan: Mutex<Option<i64>>,
}

impl TokenStore {
    /// Records that the token at `hash` expires at `expire_time` (nothing
    /// for tokens that never expire). Call before storing the record.
    pub(crate) async fn note_expiry(&self, hash: &str, expire_time: i64) -> Result<(), AuthError> {
        if expire_time == 0 {
            return Ok(());
        }
        let bucket = bucket_of(expire_time);
        let known = self
            .expiry
            .registered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&bucket);
        if !known {
            self.barrier.put(&bucket_key(bucket), b"1").await?;
            let now = self.now();
            let mut registered = self
                .expiry
                .registered
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            // Past buckets are the sweeper's: forget them here.
            registered.retain(|b| *b > now);
            registered.insert(bucket);
        }
        self.barrier
            .put(&format!("{}{hash}", markers_prefix(bucket)), b"1")
            .await?;
        Ok(())
    }

    /// Revokes the tokens the index says are due, with their descendants,
    /// and runs the full scan when it is due. Returns how many tokens went.
    pub async fn sweep(&self) -> Result<usize, AuthError> {
        let now = self.now();
        let mut revoked = self.sweep_due(now).await?;
        let full_due = self
            .expiry
            .last_full_scan
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_none_or(|last| now - last >= FULL_SCAN_SECS);
        if full_due {
            revoked += self.sweep_all().await?;
            *self
                .expiry
                .last_full_scan
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(now);
        }
        Ok(revoked)
    }

    /// The buckets whose time has come: each marker's token is revoked if it
    /// expired (or was used up), then the marker and the bucket go. The
    /// bucket `now` falls in is swept too, keeping the markers of what has
    /// not expired yet: a token goes at the first sweep after its expiry,
    /// not at the end of its bucket.
    async fn sweep_due(&self, now: i64) -> Result<usize, AuthError> {
        let mut revoked = 0;
        // Listings name the entries directly under the prefix.
        for key in self.barrier.list(BUCKETS).await? {
            let Ok(bucket) = key.parse::<i64>() else {
                continue;
            };
            if bucket - BUCKET_SECS >= now {
                continue;
            }
            let current = bucket > now;
            let prefix = markers_prefix(bucket);
            for hash in self.barrier.list(&prefix).await? {
                if hash.ends_with('/') {
                    continue;
                }
                let done = match self.read(&hash).await {
                    Ok(Some(r)) if r.used_up || r.is_expired(now) => {
                        revoked += self.revoke_tree(&hash).await?.len();
                        true
                    }
                    // Not due yet: its marker stays for a later sweep.
                    Ok(Some(_)) if current => false,
                    // Gone already, or renewed (marked again further on).
                    Ok(_) => true,
                    Err(AuthError::Corrupt(_)) => {
                        tracing::warn!("skipping a token record that does not decrypt");
                        true
                    }
                    Err(e) => return Err(e),
                };
                if done {
                    self.barrier.delete(&format!("{prefix}{hash}")).await?;
                }
            }
            if !current {
                self.barrier.delete(&bucket_key(bucket)).await?;
            }
        }
        Ok(revoked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::TokenRef;
    use crate::test_util::{create, harness, Harness};

    /// Every marker's full path.
    async fn markers(store: &TokenStore) -> Vec<String> {
        let mut out = Vec::new();
        for bucket in store.barrier.list("token-expiry/").await.unwrap() {
            let prefix = format!("token-expiry/{bucket}");
            for hash in store.barrier.list(&prefix).await.unwrap() {
                out.push(format!("{prefix}{hash}"));
            }
        }
        out
    }

    #[test]
    fn buckets_round_up() {
        assert_eq!(bucket_of(100), 100);
        assert_eq!(bucket_of(101), 110);
        assert_eq!(bucket_of(109), 110);
        assert_eq!(bucket_of(1), BUCKET_SECS);
    }

    #[tokio::test]
    async fn the_sweep_reads_only_the_tokens_that_are_due() {
        let Harness { store, root, .. } = harness().await;
        // The first sweep is the full scan; the ones after use the index.
        store.sweep().await.unwrap();
        let short = create(&store, &root, |r| r.ttl = 30).await;
        let renewed = create(&store, &root, |r| r.ttl = 30).await;
        let long = create(&store, &root, |r| r.ttl = 3600).await;
        // The default TTL: 768h.
        let default = create(&store, &root, |_| {}).await;
        let child = create(&store, &short.token, |r| r.ttl = 3600).await;
        store
            .renew(TokenRef::Token(&renewed.token), 600)
            .await
            .unwrap();
        assert_eq!(store.sweep().await.unwrap(), 0, "nothing is due yet");
        store.clock.advance(BUCKET_SECS + 31);
        // The short token and its child go; the renewed one stays.
        assert_eq!(store.sweep().await.unwrap(), 2);
        for (t, alive) in [
            (&short, false),
            (&child, false),
            (&renewed, true),
            (&long, true),
            (&default, true),
        ] {
            assert_eq!(
                store.lookup(TokenRef::Token(&t.token)).await.is_ok(),
                alive,
                "{}",
                t.entry.accessor
            );
        }
        // Markers of swept times are gone. The revoked child's marker stays
        // until its own bucket comes due (a marker is only a hint).
        assert_eq!(markers(&store).await.len(), 4);
        store.clock.advance(3600 + BUCKET_SECS);
        assert_eq!(store.sweep().await.unwrap(), 2, "renewed and long");
        // Only the default-TTL token's marker and bucket are left.
        assert_eq!(store.barrier.list(BUCKETS).await.unwrap().len(), 1);
        assert_eq!(markers(&store).await.len(), 1);
        assert!(store.lookup(TokenRef::Token(&default.token)).await.is_ok());
    }

    #[tokio::test]
    async fn a_token_goes_at_the_first_sweep_after_it_expires() {
        let Harness { store, root, .. } = harness().await;
        store.sweep().await.unwrap();
        // Expiring in the middle of a bucket, wherever `now` is.
        let t = create(&store, &root, |r| r.ttl = BUCKET_SECS / 2).await;
        store.clock.advance(BUCKET_SECS / 2 + 1);
        assert_eq!(store.sweep().await.unwrap(), 1);
        assert!(store.lookup(TokenRef::Token(&t.token)).await.is_err());
    }

    #[tokio::test]
    async fn the_full_scan_catches_tokens_without_a_marker() {
        let Harness { store, root, .. } = harness().await;
        store.sweep().await.unwrap();
        let t = create(&store, &root, |r| r.ttl = 30).await;
        // As if stored before the index existed.
        for m in markers(&store).await {
            store.barrier.delete(&m).await.unwrap();
        }
        for b in store.barrier.list(BUCKETS).await.unwrap() {
            store
                .barrier
                .delete(&format!("{BUCKETS}{b}"))
                .await
                .unwrap();
        }
        assert!(markers(&store).await.is_empty());
        store.clock.advance(60);
        assert_eq!(
            store.sweep().await.unwrap(),
            0,
            "no marker, no full scan yet"
        );
        store.clock.advance(FULL_SCAN_SECS);
        assert_eq!(store.sweep().await.unwrap(), 1);
        assert!(store.lookup(TokenRef::Token(&t.token)).await.is_err());
    }
}
