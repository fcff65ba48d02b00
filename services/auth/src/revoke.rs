//! RevokeToken and the expiry sweep.
//!
//! Revoking walks the descendant tree breadth-first with an explicit queue (no
//! recursion, so depth is unbounded), deleting each token's record before
//! anything else of it so it is refused at once. Revoked accessors go out on
//! the revocation broadcast in batches as the walk proceeds.
//!
//! A revocation cut short (a crash, storage failing) leaves tokens whose parent
//! is gone: the sweep revokes those too, with expired and used-up tokens.
//!
//! Every token that goes, by whatever path, has its leases queued for
//! revocation ([`TokenStore::revoke_leases_of`]).

use std::collections::{HashSet, VecDeque};

use crate::error::AuthError;
use crate::record::TokenRef;
use crate::store::{accessor_path, child_path, children_prefix, token_path, TokenStore};

/// Revoked accessors are announced at least this often during a large revocation.
const EVENT_BATCH: usize = 128;

impl TokenStore {
    /// Revokes a token named by value or accessor: with its descendants, or
    /// with `orphan` alone (its children become orphans). Unknown: no error.
    /// Returns every accessor revoked. A batch token cannot be revoked by
    /// itself (InvalidArgument, as Vault), and has no accessor to name it by.
    pub async fn revoke(&self, r: TokenRef<'_>, orphan: bool) -> Result<Vec<String>, AuthError> {
        let hash = match r {
            TokenRef::Token(token) => {
                if token.is_empty() || token.len() > crate::record::MAX_TOKEN_LEN {
                    self.barrier.keyring().ensure_active().await?;
                    return Ok(vec![]);
                }
                self.hash(token).await?
            }
            TokenRef::Accessor(accessor) => match self.accessor_hash(accessor).await? {
                Some(hash) => hash,
                None => return Ok(vec![]),
            },
        };
        let is_batch = match self.read(&hash).await {
            Ok(record) => record.is_some_and(|r| r.is_batch()),
            // An undecryptable record still goes.
            Err(AuthError::Corrupt(_)) => false,
            Err(e) => return Err(e),
        };
        if is_batch {
            return match r {
                TokenRef::Token(_) => Err(AuthError::invalid("batch tokens cannot be revoked")),
                TokenRef::Accessor(_) => Ok(vec![]),
            };
        }
        if orphan {
            Ok(self.revoke_orphan(&hash).await?.into_iter().collect())
        } else {
            self.revoke_tree(&hash).await
        }
    }

    /// Revokes the token at `hash` and every descendant; returns the
    /// accessors of the tokens that went.
    pub(crate) async fn revoke_tree(&self, hash: &str) -> Result<Vec<String>, AuthError> {
        let mut queue = VecDeque::from([hash.to_string()]);
        let mut seen = HashSet::new();
        let mut batch = Vec::new();
        let mut all = Vec::new();
        let result = async {
            while let Some(h) = queue.pop_front() {
                if !seen.insert(h.clone()) {
                    continue;
                }
                // The record goes before the children are listed: a child
                // being created meanwhile writes its link, then its record,
                // then checks that its parent still exists, so it is either
                // listed here or sees its parent gone and revokes itself.
                if let Some(accessor) = self.delete_token(&h).await? {
                    all.push(accessor.clone());
                    batch.push(accessor);
                }
                let children = self.barrier.list(&children_prefix(&h)).await?;
                for child in children.into_iter().filter(|c| !c.ends_with('/')) {
                    self.barrier.delete(&child_path(&h, &child)).await?;
                    queue.push_back(child);
                }
                if batch.len() >= EVENT_BATCH {
                    self.publish(std::mem::take(&mut batch)).await;
                }
            }
            Ok::<_, AuthError>(())
        }
        .await;
        // Announce what did go, even if the walk failed half-way.
        self.publish(batch).await;
        result.map(|()| all)
    }

    /// Deletes one token's record, accessor entry and link from its parent,
    /// and queues its leases for revocation; returns its accessor if it
    /// existed.
    async fn delete_token(&self, hash: &str) -> Result<Option<String>, AuthError> {
        let record = match self.read(hash).await {
            Ok(r) => r,
            // An undecryptable record still goes; its accessor is unknown.
            Err(AuthError::Corrupt(_)) => None,
            Err(e) => return Err(e),
        };
        self.barrier.delete(&token_path(hash)).await?;
        // Its leases stop at once; the expiration manager revokes them. (If
        // this fails, lookups and renewals still refuse them, as their owner
        // is gone, and a lease tidy queues them.)
        self.revoke_leases_of(hash).await?;
        let Some(record) = record else {
            return Ok(None);
        };
        self.barrier
            .delete(&accessor_path(&record.accessor))
            .await?;
        if let Some(parent) = &record.parent {
            self.barrier.delete(&child_path(parent, hash)).await?;
        }
        Ok(Some(record.accessor))
    }

    /// Revokes only the token at `hash`: its children become orphans first.
    async fn revoke_orphan(&self, hash: &str) -> Result<Option<String>, AuthError> {
        for child in self.barrier.list(&children_prefix(hash)).await? {
            if child.ends_with('/') {
                continue;
            }
            loop {
                let Some((record, version)) = self.read_versioned(&child).await? else {
                    break;
                };
                let mut next = record;
                next.orphan = true;
                next.parent = None;
                if self.replace(&child, &version, &next).await? {
                    break;
                }
            }
            self.barrier.delete(&child_path(hash, &child)).await?;
        }
        let accessor = self.delete_token(hash).await?;
        if let Some(a) = &accessor {
            self.publish(vec![a.clone()]).await;
        }
        Ok(accessor)
    }

    /// Revokes every expired or used-up token, and every token whose parent is
    /// gone, with their descendants, reading every record (the expiry index's
    /// full scan, see [`crate::expiry`]). Returns how many tokens went.
    pub(crate) async fn sweep_all(&self) -> Result<usize, AuthError> {
        let hashes: HashSet<String> = self.list_hashes().await?.into_iter().collect();
        let now = self.now();
        let mut revoked = 0;
        for hash in &hashes {
            let record = match self.read(hash).await {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(AuthError::Corrupt(_)) => {
                    tracing::warn!("skipping a token record that does not decrypt");
                    continue;
                }
                Err(e) => return Err(e),
            };
            let dangling = match &record.parent {
                // Listed tokens were all there at listing time, so a parent
                // missing from the list had gone by then; confirm it.
                Some(p) if !hashes.contains(p) => self.read(p).await?.is_none(),
                _ => false,
            };
            if record.used_up || record.is_expired(now) || dangling {
                revoked += self.revoke_tree(hash).await?.len();
            }
        }
        Ok(revoked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{create, harness, Harness};
    use bulwark_proto::auth::v1::CreateTokenRequest;

    async fn alive(store: &TokenStore, token: &str) -> bool {
        store.lookup(TokenRef::Token(token)).await.is_ok()
    }

    #[tokio::test]
    async fn revoke_parent_kills_descendants_but_not_orphans() {
        let Harness { store, root, .. } = harness().await;
        let parent = create(&store, &root, |_| {}).await;
        let child = create(&store, &parent.token, |_| {}).await;
        let grandchild = create(&store, &child.token, |_| {}).await;
        let sibling = create(&store, &parent.token, |_| {}).await;
        let orphan = create(&store, &parent.token, |r| {
            r.no_parent = true;
            r.parent_has_sudo = true;
        })
        .await;
        assert!(orphan.entry.orphan);
        let (_, mut events) = store.subscribe_revocations();

        store
            .revoke(TokenRef::Token(&parent.token), false)
            .await
            .unwrap();
        for gone in [&parent, &child, &grandchild, &sibling] {
            assert!(!alive(&store, &gone.token).await);
            assert!(matches!(
                store.lookup(TokenRef::Accessor(&gone.entry.accessor)).await,
                Err(AuthError::InvalidAccessor)
            ));
        }
        assert!(alive(&store, &orphan.token).await);
        assert!(alive(&store, &root).await);
        // One event with the four accessors.
        let event = events.recv().await.unwrap();
        let mut got = event.accessors;
        got.sort();
        let mut want: Vec<String> = [&parent, &child, &grandchild, &sibling]
            .iter()
            .map(|c| c.entry.accessor.clone())
            .collect();
        want.sort();
        assert_eq!(got, want);
        // Nothing of them is left in storage: records, accessors, links.
        let raw = store.barrier.list("children/").await.unwrap();
        assert!(raw.is_empty(), "{raw:?}");
        assert_eq!(store.list_hashes().await.unwrap().len(), 2);
        assert_eq!(store.barrier.list("accessor/").await.unwrap().len(), 2);
        // Revoking again, or something unknown, is fine.
        store
            .revoke(TokenRef::Token(&parent.token), false)
            .await
            .unwrap();
        store
            .revoke(TokenRef::Token("hvs.unknown"), false)
            .await
            .unwrap();
        store
            .revoke(TokenRef::Accessor("unknown"), false)
            .await
            .unwrap();
        store
            .revoke(TokenRef::Accessor("../x"), true)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn revoke_orphan_keeps_children_as_orphans() {
        let Harness { store, root, .. } = harness().await;
        let parent = create(&store, &root, |_| {}).await;
        let child = create(&store, &parent.token, |_| {}).await;
        let grandchild = create(&store, &child.token, |_| {}).await;
        assert!(!child.entry.orphan);

        store
            .revoke(TokenRef::Token(&parent.token), true)
            .await
            .unwrap();
        assert!(!alive(&store, &parent.token).await);
        let c = store.lookup(TokenRef::Token(&child.token)).await.unwrap();
        assert!(c.orphan);
        // The grandchild stays the child's child.
        let g = store
            .lookup(TokenRef::Token(&grandchild.token))
            .await
            .unwrap();
        assert!(!g.orphan);
        // The sweep does not take the new orphan for a dangling token.
        assert_eq!(store.sweep().await.unwrap(), 0);
        store
            .revoke(TokenRef::Token(&child.token), false)
            .await
            .unwrap();
        assert!(!alive(&store, &grandchild.token).await);
    }

    #[tokio::test]
    async fn revoke_by_accessor() {
        let Harness { store, root, .. } = harness().await;
        let parent = create(&store, &root, |_| {}).await;
        let child = create(&store, &parent.token, |_| {}).await;
        store
            .revoke(TokenRef::Accessor(&parent.entry.accessor), false)
            .await
            .unwrap();
        assert!(!alive(&store, &parent.token).await);
        assert!(!alive(&store, &child.token).await);
        assert!(matches!(
            store.authenticate(&child.token, "").await,
            Err(AuthError::PermissionDenied)
        ));
    }

    #[tokio::test]
    async fn deep_trees_revoke_without_recursion() {
        let Harness { store, root, .. } = harness().await;
        let first = create(&store, &root, |_| {}).await;
        let mut last = first.token.clone();
        for _ in 0..300 {
            last = create(&store, &last, |_| {}).await.token;
        }
        let (_, mut events) = store.subscribe_revocations();
        assert_eq!(
            store
                .revoke_tree(&store.hash(&first.token).await.unwrap())
                .await
                .unwrap()
                .len(),
            301
        );
        assert!(!alive(&store, &last).await);
        // Announced in batches.
        let mut n = 0;
        while let Ok(e) = events.try_recv() {
            assert!(e.accessors.len() <= EVENT_BATCH);
            n += e.accessors.len();
        }
        assert_eq!(n, 301);
    }

    #[tokio::test]
    async fn expired_tokens_are_refused_at_once_and_swept() {
        let Harness { store, root, .. } = harness().await;
        let short = create(&store, &root, |r| r.ttl = 2).await;
        let child = create(&store, &short.token, |_| {}).await;
        let other = create(&store, &root, |r| r.ttl = 2).await;
        assert!(store.authenticate(&short.token, "").await.is_ok());
        store.clock.advance(2);
        // Refused by Authenticate, without waiting for the sweeper, and gone
        // with its child.
        assert!(matches!(
            store.authenticate(&short.token, "").await,
            Err(AuthError::PermissionDenied)
        ));
        assert!(!alive(&store, &child.token).await);
        let (_, mut events) = store.subscribe_revocations();
        assert_eq!(store.sweep().await.unwrap(), 1);
        assert_eq!(
            events.recv().await.unwrap().accessors,
            [other.entry.accessor.as_str()]
        );
        assert!(matches!(
            store
                .lookup(TokenRef::Accessor(&other.entry.accessor))
                .await,
            Err(AuthError::InvalidAccessor)
        ));
        assert!(alive(&store, &root).await);
    }

    #[tokio::test]
    async fn sweep_takes_dangling_tokens() {
        let Harness { store, root, .. } = harness().await;
        let parent = create(&store, &root, |_| {}).await;
        let child = create(&store, &parent.token, |_| {}).await;
        // A revocation cut short: only the parent's record went.
        let hash = store.hash(&parent.token).await.unwrap();
        store.barrier.delete(&token_path(&hash)).await.unwrap();
        assert!(alive(&store, &child.token).await);
        assert_eq!(store.sweep().await.unwrap(), 1);
        assert!(!alive(&store, &child.token).await);
    }

    #[tokio::test]
    async fn child_of_a_parent_revoked_meanwhile_is_refused() {
        let Harness { store, root, .. } = harness().await;
        let parent = create(&store, &root, |_| {}).await;
        let parent_hash = store.hash(&parent.token).await.unwrap();
        let parent_record = store.read(&parent_hash).await.unwrap().unwrap();
        // Simulate the race: the parent is found, then revoked, then the
        // child is written.
        store
            .revoke(TokenRef::Token(&parent.token), false)
            .await
            .unwrap();
        let mut record = crate::create::plan(
            &CreateTokenRequest {
                parent_token: parent.token.to_string(),
                ..Default::default()
            },
            Some(&parent_record),
            store.now(),
        )
        .unwrap()
        .record;
        record.parent = Some(parent_hash);
        let child_hash = store.hash("hvs.child").await.unwrap();
        store.insert(&child_hash, record).await.unwrap().unwrap();
        assert_eq!(store.sweep().await.unwrap(), 1);
        assert!(!alive(&store, "hvs.child").await);
    }
}
