//! The lease registry's storage operations on the token store's barrier,
//! and the hook that every token revocation runs ([`TokenStore::revoke_leases_of`]).
//!
//! Writers update a lease's record first and then its pending marker
//! (`lease-pending/<hash>`); the expiration manager deletes a marker before
//! reading the record it names, so it never misses a change made by another
//! replica.

use crate::error::AuthError;
use crate::leases::record::{
    decode, encode, index_path, owner_path, owner_prefix, pending_path, plausible_hash,
    record_path, LeaseRecord, LeaseState,
};
use crate::store::TokenStore;

/// A record and its stored bytes, for compare-and-swap.
pub(crate) type Versioned = (LeaseRecord, Vec<u8>);

impl TokenStore {
    pub(crate) async fn read_lease(&self, hash: &str) -> Result<Option<LeaseRecord>, AuthError> {
        match self.barrier.get(&record_path(hash)).await? {
            Some(raw) => Ok(Some(decode(&raw)?)),
            None => Ok(None),
        }
    }

    pub(crate) async fn read_lease_versioned(
        &self,
        hash: &str,
    ) -> Result<Option<Versioned>, AuthError> {
        match self.barrier.get_versioned(&record_path(hash)).await? {
            Some((raw, version)) => Ok(Some((decode(&raw)?, version))),
            None => Ok(None),
        }
    }

    /// Compare-and-swap of a lease record; `false`: it changed (or went) meanwhile.
    pub(crate) async fn replace_lease(
        &self,
        hash: &str,
        version: &[u8],
        record: &LeaseRecord,
    ) -> Result<bool, AuthError> {
        Ok(self
            .barrier
            .replace(&record_path(hash), version, &encode(record))
            .await?)
    }

    /// Writes a new lease record and its indexes; `false` if the hash is taken.
    pub(crate) async fn create_lease(
        &self,
        hash: &str,
        record: &LeaseRecord,
    ) -> Result<bool, AuthError> {
        if !self
            .barrier
            .create(&record_path(hash), &encode(record))
            .await?
        {
            return Ok(false);
        }
        self.barrier
            .put(&index_path(&record.id), hash.as_bytes())
            .await?;
        self.barrier
            .put(&owner_path(&record.owner, hash), b"")
            .await?;
        Ok(true)
    }

    /// Deletes a lease's record, then its indexes.
    pub(crate) async fn delete_lease(
        &self,
        hash: &str,
        record: &LeaseRecord,
    ) -> Result<(), AuthError> {
        self.barrier.delete(&record_path(hash)).await?;
        self.barrier.delete(&index_path(&record.id)).await?;
        self.barrier
            .delete(&owner_path(&record.owner, hash))
            .await?;
        Ok(())
    }

    /// Tells the expiration manager (on whichever replica runs it) to look
    /// at the lease again. Written after the record.
    pub(crate) async fn mark_lease_pending(&self, hash: &str) -> Result<(), AuthError> {
        Ok(self.barrier.put(&pending_path(hash), b"").await?)
    }

    /// Moves the lease at `hash` to the revoking state, first try at
    /// `next_try` (a lease already revoking keeps its attempts and its
    /// earlier next try). Returns the record as now stored, `None` if there
    /// is no lease there.
    pub(crate) async fn mark_lease_revoking(
        &self,
        hash: &str,
        next_try: i64,
    ) -> Result<Option<LeaseRecord>, AuthError> {
        loop {
            let Some((record, version)) = self.read_lease_versioned(hash).await? else {
                return Ok(None);
            };
            let state = match record.state {
                LeaseState::Active => LeaseState::Revoking {
                    attempts: 0,
                    next_try,
                },
                LeaseState::Revoking {
                    attempts,
                    next_try: at,
                } => LeaseState::Revoking {
                    attempts,
                    next_try: at.min(next_try),
                },
            };
            if state == record.state {
                return Ok(Some(record));
            }
            let next = LeaseRecord { state, ..record };
            if self.replace_lease(hash, &version, &next).await? {
                self.mark_lease_pending(hash).await?;
                return Ok(Some(next));
            }
            // Changed meanwhile (renewed, revoked elsewhere): look again.
        }
    }

    /// Run for every revoked token (`owner` is its HMAC): its leases stop
    /// being renewable or visible at once, and the expiration manager
    /// revokes them (asynchronously, as Vault does). Returns how many.
    pub(crate) async fn revoke_leases_of(&self, owner: &str) -> Result<usize, AuthError> {
        let now = self.now();
        let mut marked = 0;
        for hash in self.barrier.list(&owner_prefix(owner)).await? {
            if !plausible_hash(&hash) {
                continue;
            }
            match self.mark_lease_revoking(&hash, now).await {
                Ok(Some(_)) => marked += 1,
                // A dangling index entry.
                Ok(None) => self.barrier.delete(&owner_path(owner, &hash)).await?,
                Err(AuthError::Corrupt(_)) => {
                    tracing::warn!("skipping a lease record that does not decrypt");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(marked)
    }
}
