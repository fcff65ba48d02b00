//! The stored lease record, lease ids, and the storage paths of the lease
//! registry (see the layout in [`crate::leases`]).

use std::fmt;

use bulwark_proto::auth::v1::LeaseInfo;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use crate::error::AuthError;

/// Longest request path a lease may be registered under.
pub(crate) const MAX_PATH_LEN: usize = 512;

/// Random base62 characters after the path in a lease id.
pub(crate) const ID_RANDOM_LEN: usize = 24;

/// Largest engine data a lease carries.
pub(crate) const MAX_REVOKE_DATA: usize = 64 * 1024;

/// Longest retry delay of a failing revocation, in seconds.
pub(crate) const MAX_BACKOFF: i64 = 60;

pub(crate) fn record_path(hash: &str) -> String {
    format!("lease/{hash}")
}

pub(crate) fn index_path(id: &str) -> String {
    format!("lease-path/{id}")
}

pub(crate) fn owner_prefix(owner: &str) -> String {
    format!("lease-token/{owner}/")
}

pub(crate) fn owner_path(owner: &str, hash: &str) -> String {
    format!("lease-token/{owner}/{hash}")
}

pub(crate) fn pending_path(hash: &str) -> String {
    format!("lease-pending/{hash}")
}

/// `hex(SHA-256(lease id))`: where a lease's record lives.
pub(crate) fn lease_hash(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// Whether `hash` could be one of [`lease_hash`]'s (and is safe in a path).
pub(crate) fn plausible_hash(hash: &str) -> bool {
    hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Checks a path a lease is registered under: not empty, at most
/// [`MAX_PATH_LEN`] bytes, no `..`, no empty segment, no control character.
pub(crate) fn validate_path(path: &str) -> Result<(), AuthError> {
    if path.is_empty() {
        return Err(AuthError::invalid("lease path must not be empty"));
    }
    if path.len() > MAX_PATH_LEN {
        return Err(AuthError::invalid(format!(
            "lease path is longer than {MAX_PATH_LEN} characters"
        )));
    }
    if !shaped_like_a_path(path) {
        return Err(AuthError::invalid("invalid lease path"));
    }
    Ok(())
}

fn shaped_like_a_path(s: &str) -> bool {
    !s.contains("..")
        && !s.chars().any(char::is_control)
        && s.split('/').all(|segment| !segment.is_empty())
}

/// Whether `id` could name a lease: a valid path, then `/` and the random part.
pub(crate) fn plausible_lease_id(id: &str) -> bool {
    id.len() <= MAX_PATH_LEN + 1 + ID_RANDOM_LEN
        && id.rsplit_once('/').is_some_and(|(path, random)| {
            random.len() == ID_RANDOM_LEN
                && random.bytes().all(|b| b.is_ascii_alphanumeric())
                && validate_path(path).is_ok()
        })
}

/// The retry delay after `attempts` failed revocations: 1 s, 2 s, 4 s, …
/// capped at [`MAX_BACKOFF`].
pub(crate) fn backoff(attempts: u32) -> i64 {
    let exp = attempts.saturating_sub(1).min(6);
    (1i64 << exp).min(MAX_BACKOFF)
}

/// Where a lease is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum LeaseState {
    Active,
    /// Being revoked: no longer renewable or visible to lookups; the
    /// expiration manager tries (again) at `next_try` (Unix seconds).
    Revoking {
        attempts: u32,
        next_try: i64,
    },
}

/// The engine's opaque data: never printed, zeroized when dropped, stored
/// as hex inside the (encrypted) record.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct RevokeData(pub Vec<u8>);

impl fmt::Debug for RevokeData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RevokeData({} bytes)", self.0.len())
    }
}

impl Drop for RevokeData {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl Serialize for RevokeData {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut text = hex::encode(&self.0);
        let out = s.serialize_str(&text);
        text.zeroize();
        out
    }
}

impl<'de> Deserialize<'de> for RevokeData {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut text = String::deserialize(d)?;
        let bytes = hex::decode(&text).map_err(serde::de::Error::custom);
        text.zeroize();
        Ok(RevokeData(bytes?))
    }
}

/// One lease as stored at `lease/<hash>`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LeaseRecord {
    pub id: String,
    /// The request path it was registered under (the id without its random part).
    pub path: String,
    /// The owner token's HMAC (the token store's), never the token.
    pub owner: String,
    pub issue_time: i64,
    /// Unix seconds; 0 = never.
    pub expire_time: i64,
    /// Renewals never go past it; 0 = no limit.
    pub max_expire: i64,
    /// 0 = never renewed.
    #[serde(default)]
    pub last_renewal: i64,
    pub renewable: bool,
    /// The TTL granted at registration (what a renewal with increment 0 grants).
    pub ttl: i64,
    pub engine: String,
    pub engine_mount: String,
    pub revoke_data: RevokeData,
    pub state: LeaseState,
}

impl fmt::Debug for LeaseRecord {
    // By hand: the owner's HMAC and the engine data never reach a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaseRecord")
            .field("id", &self.id)
            .field("issue_time", &self.issue_time)
            .field("expire_time", &self.expire_time)
            .field("max_expire", &self.max_expire)
            .field("renewable", &self.renewable)
            .field("engine", &self.engine)
            .field("engine_mount", &self.engine_mount)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl LeaseRecord {
    /// When the expiration manager must next look at it: its expiry while
    /// active (`None`: never expires), its next try while revoking.
    pub fn due(&self) -> Option<i64> {
        match self.state {
            LeaseState::Active => (self.expire_time != 0).then_some(self.expire_time),
            LeaseState::Revoking { next_try, .. } => Some(next_try),
        }
    }

    /// Active and not expired at `now`.
    pub fn is_live(&self, now: i64) -> bool {
        self.state == LeaseState::Active && (self.expire_time == 0 || self.expire_time > now)
    }

    /// Failed revocations so far.
    pub fn attempts(&self) -> u32 {
        match self.state {
            LeaseState::Active => 0,
            LeaseState::Revoking { attempts, .. } => attempts,
        }
    }

    pub fn info(&self, now: i64) -> LeaseInfo {
        LeaseInfo {
            id: self.id.clone(),
            issue_time: self.issue_time,
            expire_time: self.expire_time,
            last_renewal: self.last_renewal,
            renewable: self.renewable,
            ttl: if self.expire_time == 0 {
                0
            } else {
                (self.expire_time - now).max(0)
            },
        }
    }
}

pub(crate) fn decode(raw: &[u8]) -> Result<LeaseRecord, AuthError> {
    serde_json::from_slice(raw).map_err(|_| AuthError::Corrupt("lease"))
}

pub(crate) fn encode(record: &LeaseRecord) -> zeroize::Zeroizing<Vec<u8>> {
    zeroize::Zeroizing::new(serde_json::to_vec(record).expect("a lease record serializes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> LeaseRecord {
        LeaseRecord {
            id: "database/creds/app/abcdefghijklmnopqrstuvwx".into(),
            path: "database/creds/app".into(),
            owner: "f".repeat(64),
            issue_time: 100,
            expire_time: 160,
            max_expire: 400,
            last_renewal: 0,
            renewable: true,
            ttl: 60,
            engine: "dynamic-db".into(),
            engine_mount: "uuid".into(),
            revoke_data: RevokeData(b"user=v-app-123".to_vec()),
            state: LeaseState::Active,
        }
    }

    #[test]
    fn paths_and_ids() {
        for ok in ["database/creds/app", "a", "x/y-z_1.2/%"] {
            assert!(validate_path(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(MAX_PATH_LEN + 1);
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "a/../b",
            "..",
            "a\nb",
            long.as_str(),
        ] {
            assert!(validate_path(bad).is_err(), "{bad:?}");
        }
        let random = "A".repeat(ID_RANDOM_LEN);
        assert!(plausible_lease_id(&format!("database/creds/app/{random}")));
        assert!(plausible_lease_id(&format!("{}/{random}", "a".repeat(512))));
        for bad in [
            String::new(),
            random.clone(),
            "database/creds/app/short".into(),
            format!("a/../b/{random}"),
            format!("a/{}", "A".repeat(ID_RANDOM_LEN + 1)),
            format!("a/{}!", "A".repeat(ID_RANDOM_LEN - 1)),
            format!("{}/{random}", "a".repeat(513)),
        ] {
            assert!(!plausible_lease_id(&bad), "{bad:?}");
        }
        let h = lease_hash("x");
        assert!(plausible_hash(&h));
        assert!(!plausible_hash("../x"));
    }

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let delays: Vec<i64> = (1..=9).map(backoff).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(0), 1);
        assert_eq!(backoff(u32::MAX), 60);
    }

    #[test]
    fn records_round_trip_and_hide_secrets_from_debug() {
        let mut r = sample();
        r.state = LeaseState::Revoking {
            attempts: 3,
            next_try: 170,
        };
        let back = decode(&encode(&r)).unwrap();
        assert_eq!(back, r);
        assert_eq!((back.due(), back.attempts()), (Some(170), 3));
        let text = format!("{r:?}");
        assert!(!text.contains("ffff"), "{text}");
        assert!(!text.contains("v-app"), "{text}");
        assert!(!text.contains("RevokeData"), "{text}");
        assert_eq!(format!("{:?}", r.revoke_data), "RevokeData(14 bytes)");
        // Stored as hex, not as the raw bytes.
        let json = String::from_utf8(encode(&r).to_vec()).unwrap();
        assert!(!json.contains("v-app"), "{json}");
        assert!(matches!(decode(b"{}"), Err(AuthError::Corrupt("lease"))));
    }

    #[test]
    fn liveness_and_info() {
        let r = sample();
        assert!(r.is_live(159) && !r.is_live(160));
        assert_eq!(r.due(), Some(160));
        let info = r.info(150);
        assert_eq!(
            (info.ttl, info.expire_time, info.renewable),
            (10, 160, true)
        );
        assert_eq!(r.info(500).ttl, 0);
        let never = LeaseRecord {
            expire_time: 0,
            ..sample()
        };
        assert!(never.is_live(i64::MAX));
        assert_eq!((never.due(), never.info(1).ttl), (None, 0));
        let revoking = LeaseRecord {
            state: LeaseState::Revoking {
                attempts: 0,
                next_try: 1,
            },
            ..sample()
        };
        assert!(!revoking.is_live(0));
    }
}
