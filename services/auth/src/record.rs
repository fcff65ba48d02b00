//! The stored token record, its wire view ([`TokenEntry`]), how a request
//! names a token ([`TokenRef`]) and the random values tokens are made of.

use std::collections::BTreeMap;
use std::fmt;

use bulwark_proto::auth::v1::TokenEntry;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::error::AuthError;

/// Tokens that live in the store: renewable, revocable, with an accessor.
pub(crate) const SERVICE_TYPE: &str = "service";

/// Light tokens: not renewable, not revocable by themselves, no accessor
/// shown, no children; they expire at their TTL (or with their parent). Vault
/// does not store them; this store does (under an internal accessor), which
/// is what lets their parent's revocation and the sweeper reach them.
pub(crate) const BATCH_TYPE: &str = "batch";

/// Prefix of service tokens (Vault 1.10+).
pub(crate) const SERVICE_PREFIX: &str = "hvs.";

/// Prefix of batch tokens (Vault 1.10+).
pub(crate) const BATCH_PREFIX: &str = "hvb.";

/// Random characters in a token body and in an accessor.
pub(crate) const RANDOM_LEN: usize = 24;

/// One token as stored at `token/<hmac>`. The token value itself is never
/// stored; `parent` is the parent's HMAC, not its value.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct TokenRecord {
    pub accessor: String,
    /// Sorted and deduplicated.
    pub policies: Vec<String>,
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
    pub display_name: String,
    pub path: String,
    /// Unix seconds.
    pub creation_time: i64,
    /// Seconds; 0 = never expires.
    pub creation_ttl: i64,
    /// Unix seconds; 0 = never expires.
    pub expire_time: i64,
    pub explicit_max_ttl: i64,
    pub period: i64,
    /// Remaining uses; 0 = unlimited.
    pub num_uses: i64,
    pub orphan: bool,
    pub renewable: bool,
    #[serde(rename = "type")]
    pub token_type: String,
    /// The parent's HMAC; `None` for orphans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Unix seconds; 0 = never renewed.
    #[serde(default)]
    pub last_renewal_time: i64,
    /// Set, with compare-and-swap, by the request that spent the last use: the
    /// token is refused from then on while its revocation completes (so that
    /// `num_uses: 0`, "unlimited", is never written for a used-up token).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub used_up: bool,
    /// The longest a non-periodic token may live from creation, in seconds,
    /// when its issuer set a limit (logins: the user's or role's
    /// `token_max_ttl` within the mount's max); 0 = the system max. Renewal
    /// never goes past `creation_time + max_ttl` (nor the explicit max).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_ttl: i64,
    /// CIDR blocks (or bare addresses) the token may be used from; empty =
    /// anywhere. Authenticate refuses the token from any other address.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bound_cidrs: Vec<String>,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl fmt::Debug for TokenRecord {
    // By hand, so that the parent's hash never reaches a log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRecord")
            .field("accessor", &self.accessor)
            .field("policies", &self.policies)
            .field("display_name", &self.display_name)
            .field("path", &self.path)
            .field("expire_time", &self.expire_time)
            .field("num_uses", &self.num_uses)
            .field("orphan", &self.orphan)
            .field("has_parent", &self.parent.is_some())
            .field("type", &self.token_type)
            .field("bound_cidrs", &self.bound_cidrs)
            .finish_non_exhaustive()
    }
}

impl TokenRecord {
    /// Whether the token has expired at `now` (unix seconds).
    pub fn is_expired(&self, now: i64) -> bool {
        self.expire_time != 0 && self.expire_time <= now
    }

    /// Whether the token may still be used at `now`.
    pub fn is_live(&self, now: i64) -> bool {
        !self.used_up && !self.is_expired(now)
    }

    pub fn is_root(&self) -> bool {
        self.policies.iter().any(|p| p == "root")
    }

    pub fn is_batch(&self) -> bool {
        self.token_type == BATCH_TYPE
    }

    /// The wire view: `id` is the token when looked up by token, `""` by accessor.
    pub fn entry(&self, id: &str, now: i64) -> TokenEntry {
        TokenEntry {
            bound_cidrs: self.bound_cidrs.clone(),
            id: id.to_string(),
            // Batch tokens have no accessor as far as clients know (Vault's
            // have none at all); the internal one never leaves this service
            // except in revocation announcements.
            accessor: if self.is_batch() {
                String::new()
            } else {
                self.accessor.clone()
            },
            policies: self.policies.clone(),
            meta: self
                .meta
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            display_name: self.display_name.clone(),
            path: self.path.clone(),
            creation_time: self.creation_time,
            creation_ttl: self.creation_ttl,
            expire_time: self.expire_time,
            explicit_max_ttl: self.explicit_max_ttl,
            period: self.period,
            num_uses: self.num_uses,
            orphan: self.orphan,
            renewable: self.renewable,
            r#type: self.token_type.clone(),
            last_renewal_time: self.last_renewal_time,
            ttl: if self.expire_time == 0 {
                0
            } else {
                (self.expire_time - now).max(0)
            },
            issue_time: self.creation_time,
        }
    }
}

/// How a request names a token: by value or by accessor, never both.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TokenRef<'a> {
    Token(&'a str),
    Accessor(&'a str),
}

impl fmt::Debug for TokenRef<'_> {
    // Never print a token value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenRef::Token(_) => f.write_str("Token(..)"),
            TokenRef::Accessor(a) => f.debug_tuple("Accessor").field(a).finish(),
        }
    }
}

impl<'a> TokenRef<'a> {
    /// From a request's `token` and `accessor` fields: exactly one must be set.
    pub fn from_parts(token: &'a str, accessor: &'a str) -> Result<Self, AuthError> {
        match (token.is_empty(), accessor.is_empty()) {
            (false, true) => Ok(TokenRef::Token(token)),
            (true, false) => Ok(TokenRef::Accessor(accessor)),
            _ => Err(AuthError::invalid(
                "exactly one of token or accessor must be given",
            )),
        }
    }
}

/// `len` characters from `[0-9A-Za-z]`, uniformly, from the OS generator.
pub(crate) fn random_base62(len: usize) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::rngs::OsRng;
    let mut out = String::with_capacity(len);
    let mut buf = [0u8; 32];
    while out.len() < len {
        rng.fill_bytes(&mut buf);
        for &b in &buf {
            // 248 = 4 × 62: rejecting the rest keeps every character equally likely.
            if b < 248 && out.len() < len {
                out.push(char::from(ALPHABET[usize::from(b % 62)]));
            }
        }
    }
    out
}

/// A fresh service token: `hvs.` and 24 base62 characters.
pub(crate) fn new_token() -> String {
    format!("{SERVICE_PREFIX}{}", random_base62(RANDOM_LEN))
}

/// A fresh token of `token_type`: `hvb.` for batch tokens, else `hvs.`.
pub(crate) fn new_token_of(token_type: &str) -> String {
    if token_type == BATCH_TYPE {
        format!("{BATCH_PREFIX}{}", random_base62(RANDOM_LEN))
    } else {
        new_token()
    }
}

/// A fresh accessor: 24 base62 characters.
pub(crate) fn new_accessor() -> String {
    random_base62(RANDOM_LEN)
}

/// Whether `accessor` could be one of ours (and is safe inside a storage path).
pub(crate) fn plausible_accessor(accessor: &str) -> bool {
    !accessor.is_empty()
        && accessor.len() <= 128
        && accessor.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The longest token value accepted anywhere (Vault's own are under 100 bytes).
pub(crate) const MAX_TOKEN_LEN: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_values_have_the_right_shape() {
        let t = new_token();
        assert_eq!(t.len(), 4 + RANDOM_LEN);
        assert!(t.starts_with("hvs."));
        assert!(t[4..].bytes().all(|b| b.is_ascii_alphanumeric()));
        let a = new_accessor();
        assert_eq!(a.len(), RANDOM_LEN);
        assert!(plausible_accessor(&a));
        assert_ne!(new_accessor(), a);
        // Every character of the alphabet shows up (a loose uniformity check).
        let many: String = (0..200).map(|_| random_base62(62)).collect();
        let distinct: std::collections::BTreeSet<char> = many.chars().collect();
        assert_eq!(distinct.len(), 62);
    }

    #[test]
    fn batch_tokens_look_like_vaults() {
        let b = new_token_of(BATCH_TYPE);
        assert!(b.starts_with("hvb.") && b.len() == 4 + RANDOM_LEN);
        assert!(new_token_of(SERVICE_TYPE).starts_with("hvs."));
    }

    #[test]
    fn records_without_the_new_fields_still_read() {
        // A record as stored before `max_ttl` and `bound_cidrs` existed.
        let old = r#"{"accessor":"acc","policies":["default"],"display_name":"token",
            "path":"auth/token/create","creation_time":1,"creation_ttl":60,
            "expire_time":61,"explicit_max_ttl":0,"period":0,"num_uses":0,
            "orphan":true,"renewable":true,"type":"service"}"#;
        let r: TokenRecord = serde_json::from_str(old).unwrap();
        assert_eq!((r.max_ttl, r.bound_cidrs.len()), (0, 0));
        let e = r.entry("", 1);
        assert!(e.bound_cidrs.is_empty());
        assert_eq!(e.accessor, "acc");
        // Unset fields are not written either.
        let again = serde_json::to_string(&r).unwrap();
        assert!(!again.contains("\"max_ttl\"") && !again.contains("bound_cidrs"));
        let batch = TokenRecord {
            token_type: BATCH_TYPE.into(),
            bound_cidrs: vec!["10.0.0.0/8".into()],
            ..r
        };
        let e = batch.entry("hvb.x", 1);
        assert_eq!(e.accessor, "");
        assert_eq!(e.bound_cidrs, ["10.0.0.0/8"]);
        assert_eq!(e.r#type, "batch");
    }

    #[test]
    fn token_ref_needs_exactly_one() {
        assert!(matches!(
            TokenRef::from_parts("t", ""),
            Ok(TokenRef::Token("t"))
        ));
        assert!(matches!(
            TokenRef::from_parts("", "a"),
            Ok(TokenRef::Accessor("a"))
        ));
        assert!(matches!(
            TokenRef::from_parts("", ""),
            Err(AuthError::InvalidRequest(_))
        ));
        assert!(matches!(
            TokenRef::from_parts("t", "a"),
            Err(AuthError::InvalidRequest(_))
        ));
        assert_eq!(format!("{:?}", TokenRef::Token("hvs.secret")), "Token(..)");
    }

    #[test]
    fn accessor_paths_are_safe() {
        for bad in ["", "a/b", "../x", "a%", "a.b"] {
            assert!(!plausible_accessor(bad), "{bad}");
        }
    }
}
