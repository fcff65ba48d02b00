//! RenewToken: extends a renewable token's TTL.
//!
//! Periodic tokens get their period again (capped only by an explicit max
//! TTL). Others get the increment, or their creation TTL, but never past
//! `creation_time + min(explicit_max_ttl, max_ttl or the system max)` (a
//! login's `max_ttl` is its user's or role's, within the mount's); a cap adds
//! Vault's warning. Batch tokens are never renewed. The record is updated with compare-and-swap, so a renewal never
//! undoes a use counted at the same time.

use bulwark_proto::auth::v1::TokenEntry;

use crate::create::ttl_capped_warning;
use crate::error::AuthError;
use crate::record::{TokenRecord, TokenRef};
use crate::store::{not_found, TokenStore, SYSTEM_MAX_TTL};

/// The answer to a renewal.
#[derive(Debug, Clone, PartialEq)]
pub struct Renewed {
    /// The token's entry after renewal (`id` = "" when renewed by accessor).
    pub entry: TokenEntry,
    pub warnings: Vec<String>,
}

/// The renewed record at `now`, and any warning. `increment` is in seconds
/// (0 = the creation TTL).
pub(crate) fn renewed(
    record: &TokenRecord,
    increment: i64,
    now: i64,
) -> Result<(TokenRecord, Vec<String>), AuthError> {
    if increment < 0 {
        return Err(AuthError::invalid("increment must not be negative"));
    }
    if record.is_batch() {
        return Err(AuthError::invalid("batch tokens cannot be renewed"));
    }
    if !record.renewable {
        return Err(AuthError::NotRenewable);
    }
    let mut warnings = Vec::new();
    let (wanted, max_expire) = if record.period > 0 {
        let cap = (record.explicit_max_ttl > 0)
            .then(|| record.creation_time.saturating_add(record.explicit_max_ttl));
        (record.period, cap)
    } else {
        let base = if record.max_ttl > 0 {
            record.max_ttl
        } else {
            SYSTEM_MAX_TTL
        };
        let max = if record.explicit_max_ttl > 0 {
            record.explicit_max_ttl.min(base)
        } else {
            base
        };
        let wanted = if increment > 0 {
            increment
        } else {
            record.creation_ttl
        };
        (wanted, Some(record.creation_time.saturating_add(max)))
    };
    let mut ttl = wanted;
    if let Some(max_expire) = max_expire {
        let left = (max_expire - now).max(0);
        if ttl > left {
            warnings.push(ttl_capped_warning(wanted, left));
            ttl = left;
        }
    }
    let mut next = record.clone();
    next.expire_time = now.saturating_add(ttl);
    next.last_renewal_time = now;
    Ok((next, warnings))
}

impl TokenStore {
    /// Renews a token named by value or accessor.
    pub async fn renew(&self, r: TokenRef<'_>, increment: i64) -> Result<Renewed, AuthError> {
        if increment < 0 {
            return Err(AuthError::invalid("increment must not be negative"));
        }
        let found = self.find(r).await?.ok_or_else(|| not_found(r))?;
        loop {
            let Some((record, version)) = self.read_versioned(&found.hash).await? else {
                return Err(not_found(r));
            };
            let now = self.now();
            if !record.is_live(now) {
                return Err(not_found(r));
            }
            let (next, warnings) = renewed(&record, increment, now)?;
            if next.expire_time != record.expire_time {
                self.note_expiry(&found.hash, next.expire_time).await?;
            }
            if self.replace(&found.hash, &version, &next).await? {
                return Ok(Renewed {
                    entry: next.entry(&found.id, now),
                    warnings,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{harness, Harness};
    use bulwark_proto::auth::v1::CreateTokenRequest;

    #[tokio::test]
    async fn renew_extends_and_caps_at_explicit_max() {
        let Harness { store, root, .. } = harness().await;
        // TTLs are compared to the second: no second may tick unseen.
        store.clock.stop();
        let made = store
            .create(&CreateTokenRequest {
                parent_token: root.clone(),
                policies: vec!["dev".into()],
                ttl: 600,
                explicit_max_ttl: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        let created = made.entry.creation_time;
        store.clock.advance(300);
        // Back to the creation TTL.
        let r = store.renew(TokenRef::Token(&made.token), 0).await.unwrap();
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        assert_eq!(r.entry.ttl, 600);
        assert_eq!(r.entry.id, made.token.as_str());
        let now = store.now();
        assert_eq!(r.entry.last_renewal_time, now);
        assert_eq!(r.entry.expire_time, now + 600);
        // Past the explicit max: capped, with a warning.
        let r = store
            .renew(TokenRef::Accessor(&made.entry.accessor), 5000)
            .await
            .unwrap();
        assert_eq!(r.entry.id, "");
        assert_eq!(r.entry.expire_time, created + 1000);
        let left = created + 1000 - now;
        assert_eq!(
            r.warnings,
            [format!(
                "TTL of \"5000s\" exceeded the effective max_ttl of \"{left}s\"; TTL value is capped accordingly"
            )]
        );
        let looked = store.lookup(TokenRef::Token(&made.token)).await.unwrap();
        assert_eq!(looked.expire_time, created + 1000);
        // It dies at the cap whatever happens.
        store.clock.advance(left);
        assert!(matches!(
            store.renew(TokenRef::Token(&made.token), 10).await,
            Err(AuthError::BadToken)
        ));
    }

    #[test]
    fn max_ttl_caps_renewal() {
        let now = 1_700_000_000;
        let record = TokenRecord {
            accessor: "a".into(),
            policies: vec!["default".into()],
            meta: Default::default(),
            display_name: "userpass-alice".into(),
            path: "auth/userpass/login/alice".into(),
            creation_time: now,
            creation_ttl: 60,
            expire_time: now + 60,
            explicit_max_ttl: 0,
            period: 0,
            num_uses: 0,
            orphan: true,
            renewable: true,
            token_type: "service".into(),
            parent: None,
            last_renewal_time: 0,
            used_up: false,
            max_ttl: 100,
            bound_cidrs: vec![],
        };
        let (next, warnings) = renewed(&record, 0, now + 50).unwrap();
        assert_eq!((next.expire_time, warnings.len()), (now + 100, 1));
        let (next, warnings) = renewed(&record, 30, now + 50).unwrap();
        assert_eq!((next.expire_time, warnings.len()), (now + 80, 0));
        // The explicit max still caps below it.
        let tighter = TokenRecord {
            explicit_max_ttl: 70,
            ..record.clone()
        };
        assert_eq!(
            renewed(&tighter, 0, now + 50).unwrap().0.expire_time,
            now + 70
        );
        // A max_ttl above the system max is the record's own limit.
        let long = TokenRecord {
            max_ttl: SYSTEM_MAX_TTL * 2,
            creation_ttl: SYSTEM_MAX_TTL,
            ..record.clone()
        };
        let at = now + SYSTEM_MAX_TTL;
        assert_eq!(
            renewed(&long, 0, at).unwrap().0.expire_time,
            at + SYSTEM_MAX_TTL
        );
        let batch = TokenRecord {
            token_type: "batch".into(),
            renewable: false,
            ..record
        };
        assert_eq!(
            renewed(&batch, 0, now).unwrap_err().to_string(),
            "batch tokens cannot be renewed"
        );
    }

    #[tokio::test]
    async fn non_renewable_refused() {
        let Harness { store, root, .. } = harness().await;
        // TTLs are compared to the second: no second may tick unseen.
        store.clock.stop();
        let err = store.renew(TokenRef::Token(&root), 0).await.unwrap_err();
        assert!(matches!(err, AuthError::NotRenewable));
        assert_eq!(err.to_string(), "lease is not renewable");
        let fixed = store
            .create(&CreateTokenRequest {
                parent_token: root.clone(),
                policies: vec!["dev".into()],
                renewable: Some(false),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(matches!(
            store.renew(TokenRef::Token(&fixed.token), 0).await,
            Err(AuthError::NotRenewable)
        ));
        assert!(matches!(
            store.renew(TokenRef::Token("hvs.unknown"), 0).await,
            Err(AuthError::BadToken)
        ));
        assert!(matches!(
            store.renew(TokenRef::Accessor("unknown"), 0).await,
            Err(AuthError::InvalidAccessor)
        ));
        assert!(matches!(
            store.renew(TokenRef::Token(&root), -1).await,
            Err(AuthError::InvalidRequest(_))
        ));
    }

    #[tokio::test]
    async fn periodic_tokens_renew_to_their_period() {
        let Harness { store, root, .. } = harness().await;
        // TTLs are compared to the second: no second may tick unseen.
        store.clock.stop();
        let made = store
            .create(&CreateTokenRequest {
                parent_token: root.clone(),
                policies: vec!["dev".into()],
                period: 120,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(made.entry.ttl, 120);
        store.clock.advance(100);
        let r = store.renew(TokenRef::Token(&made.token), 10).await.unwrap();
        assert_eq!(r.entry.ttl, 120);
        assert!(r.warnings.is_empty());
        // Long after the system max, a periodic token still renews to its
        // period; an explicit max TTL caps it.
        let record = store
            .read(&store.hash(&made.token).await.unwrap())
            .await
            .unwrap()
            .unwrap();
        let later = record.creation_time + 10 * SYSTEM_MAX_TTL;
        let (next, warnings) = renewed(&record, 0, later).unwrap();
        assert_eq!((next.expire_time, warnings.len()), (later + 120, 0));
        let capped = TokenRecord {
            explicit_max_ttl: 1000,
            ..record
        };
        let at = capped.creation_time + 950;
        let (next, warnings) = renewed(&capped, 0, at).unwrap();
        assert_eq!(next.expire_time, capped.creation_time + 1000);
        assert_eq!(warnings.len(), 1);
    }
}
