//! Authentication and authorization of every request that is not one of the
//! unauthenticated lifecycle endpoints: the token is resolved by the auth
//! service; the policies are owned by the policy service.
//!
//! Both are cached here, and both caches are invalidated by their owner's
//! watch stream: a revoked token or an edited policy is refused on the very
//! next request. While a stream is down, its cache is bypassed (tokens go to
//! the auth service, decisions to the policy service's `Authorize`).
//!
//! Policies are cached compiled: the ACL of each set of policy names on a
//! token, built with the policy service's own matcher (`bulwark-policy`)
//! from the texts it serves. A decision is then a sub-microsecond lookup
//! here, for any path, instead of a call per path not seen before (issue
//! 12: with a million secrets almost every read is a first read).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bulwark_policy::Acl;
use bulwark_proto::auth::v1::auth_client::AuthClient;
use bulwark_proto::auth::v1::{
    AckRevocationsRequest, AuthenticateRequest, TokenEntry, WatchRevocationsRequest,
};
use bulwark_proto::policy::v1::policy_client::PolicyClient;
use bulwark_proto::policy::v1::{
    AckPoliciesRequest, AuthorizeRequest, AuthorizeResponse, GetPolicyRequest,
    Operation as PolicyOp, WatchPoliciesRequest,
};
use bulwark_shared::grpc::Channel;
use futures::StreamExt;
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::request::Operation;

/// Entries past this count are dropped wholesale (a crude bound on memory).
const MAX_ENTRIES: usize = 100_000;

/// The authenticated caller of one request.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token: String,
    /// Shared with the token cache: a hit copies nothing.
    pub entry: Arc<TokenEntry>,
}

impl Caller {
    /// The caller of an unauthenticated request (a login, an unwrap with the
    /// wrapping token itself).
    pub fn anonymous() -> Self {
        Caller {
            token: String::new(),
            entry: Default::default(),
        }
    }

    pub fn is_root(&self) -> bool {
        self.entry.policies.iter().any(|p| p == "root")
    }
}

#[derive(Default)]
struct TokenCache {
    /// sha256(token) → entry.
    by_hash: HashMap<[u8; 32], Arc<TokenEntry>>,
    /// accessor → sha256(token), to drop entries on revocation events.
    by_accessor: HashMap<String, [u8; 32]>,
}

/// A token's policy names, normalized, sorted and deduplicated.
type PolicySet = Vec<String>;

/// Compiled ACLs kept at most (sets of policies seen on tokens).
const MAX_ACLS: usize = 10_000;

/// Caches with pushed invalidation.
pub struct AclCache {
    tokens: RwLock<TokenCache>,
    token_live: AtomicBool,
    /// Revocation streams open (one per auth replica) and replicas known.
    token_streams: AtomicUsize,
    token_replicas: AtomicUsize,
    token_gen: AtomicU64,
    acls: RwLock<HashMap<PolicySet, Arc<Acl>>>,
    policy_live: AtomicBool,
    /// Change streams open (one per policy replica) and replicas known.
    policy_streams: AtomicUsize,
    policy_replicas: AtomicUsize,
    policy_gen: AtomicU64,
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

impl AclCache {
    pub fn new() -> Arc<Self> {
        Arc::new(AclCache {
            tokens: RwLock::default(),
            token_live: AtomicBool::new(false),
            token_streams: AtomicUsize::new(0),
            token_replicas: AtomicUsize::new(1),
            token_gen: AtomicU64::new(0),
            acls: RwLock::default(),
            policy_live: AtomicBool::new(false),
            policy_streams: AtomicUsize::new(0),
            policy_replicas: AtomicUsize::new(1),
            policy_gen: AtomicU64::new(0),
        })
    }

    /// Follows every auth replica's revocations and every policy replica's
    /// changes, for as long as the process runs.
    pub fn spawn_watchers(
        self: &Arc<Self>,
        auth_replicas: Vec<AuthClient<Channel>>,
        policy_replicas: Vec<PolicyClient<Channel>>,
    ) {
        // One stream from every replica: a revocation or a policy change
        // answers only once each stream's watcher acknowledged it, so no
        // replica's change can be outrun by a request to this gateway. A
        // cache is used only while every one of its streams is open.
        self.token_replicas
            .store(auth_replicas.len(), Ordering::SeqCst);
        self.policy_replicas
            .store(policy_replicas.len(), Ordering::SeqCst);
        for auth in auth_replicas {
            let me = self.clone();
            tokio::spawn(async move {
                loop {
                    me.follow_revocations(auth.clone()).await;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            });
        }
        for policy in policy_replicas {
            let me = self.clone();
            tokio::spawn(async move {
                loop {
                    me.follow_policies(policy.clone()).await;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            });
        }
    }

    /// Applies one policy replica's change stream until it ends,
    /// acknowledging every change once applied.
    async fn follow_policies(&self, mut client: PolicyClient<Channel>) {
        let req = WatchPoliciesRequest { acknowledge: true };
        let Ok(resp) = client.watch_policies(req).await else {
            return;
        };
        let mut stream = resp.into_inner();
        // Changes may have been missed while disconnected.
        self.clear_decisions();
        let open = self.policy_streams.fetch_add(1, Ordering::SeqCst) + 1;
        self.policy_live.store(
            open >= self.policy_replicas.load(Ordering::SeqCst),
            Ordering::SeqCst,
        );
        let mut watcher_id = String::new();
        while let Some(Ok(ev)) = stream.next().await {
            self.clear_decisions();
            if !ev.watcher_id.is_empty() {
                watcher_id = ev.watcher_id;
            } else if !watcher_id.is_empty() {
                let mut c = client.clone();
                let ack = AckPoliciesRequest {
                    watcher_id: watcher_id.clone(),
                    generation: ev.generation,
                };
                tokio::spawn(async move {
                    let _ = c.ack_policies(ack).await;
                });
            }
        }
        self.policy_streams.fetch_sub(1, Ordering::SeqCst);
        self.policy_live.store(false, Ordering::SeqCst);
        self.clear_decisions();
    }

    /// Applies one auth replica's revocation stream until it ends,
    /// acknowledging every event once applied.
    async fn follow_revocations(&self, mut client: AuthClient<Channel>) {
        let req = WatchRevocationsRequest { acknowledge: true };
        let Ok(resp) = client.watch_revocations(req).await else {
            return;
        };
        let mut stream = resp.into_inner();
        let mut watcher_id = String::new();
        // Events may have been missed while disconnected.
        self.clear_tokens();
        let open = self.token_streams.fetch_add(1, Ordering::SeqCst) + 1;
        self.token_live.store(
            open >= self.token_replicas.load(Ordering::SeqCst),
            Ordering::SeqCst,
        );
        while let Some(Ok(ev)) = stream.next().await {
            if !ev.watcher_id.is_empty() {
                watcher_id = ev.watcher_id.clone();
            }
            if ev.accessors.iter().any(|a| a == "*") {
                // Revocations may have been missed (auth lost its
                // replicas' notices): trust nothing cached.
                self.clear_tokens();
            } else if !ev.accessors.is_empty() {
                self.token_gen.fetch_add(1, Ordering::SeqCst);
                let mut c = self.tokens.write().unwrap_or_else(|e| e.into_inner());
                for acc in &ev.accessors {
                    if let Some(h) = c.by_accessor.remove(acc) {
                        c.by_hash.remove(&h);
                    }
                }
            }
            if !ev.accessors.is_empty() && !watcher_id.is_empty() {
                let mut c = client.clone();
                let ack = AckRevocationsRequest {
                    watcher_id: watcher_id.clone(),
                    generation: ev.generation,
                };
                tokio::spawn(async move {
                    let _ = c.ack_revocations(ack).await;
                });
            }
        }
        self.token_streams.fetch_sub(1, Ordering::SeqCst);
        self.token_live.store(false, Ordering::SeqCst);
        self.clear_tokens();
    }

    fn clear_tokens(&self) {
        self.token_gen.fetch_add(1, Ordering::SeqCst);
        *self.tokens.write().unwrap_or_else(|e| e.into_inner()) = TokenCache::default();
    }

    /// Drops every compiled ACL (a policy changed).
    pub fn clear_decisions(&self) {
        self.policy_gen.fetch_add(1, Ordering::SeqCst);
        self.acls.write().unwrap_or_else(|e| e.into_inner()).clear();
    }

    /// Drops the tokens of these accessors at once (revoked through this gateway).
    pub fn forget_accessors(&self, accessors: &[String]) {
        self.token_gen.fetch_add(1, Ordering::SeqCst);
        let mut c = self.tokens.write().unwrap_or_else(|e| e.into_inner());
        for acc in accessors {
            if let Some(h) = c.by_accessor.remove(acc) {
                c.by_hash.remove(&h);
            }
        }
    }

    fn cached_token(&self, token: &str) -> Option<Arc<TokenEntry>> {
        if !self.token_live.load(Ordering::SeqCst) {
            return None;
        }
        let c = self.tokens.read().unwrap_or_else(|e| e.into_inner());
        let e = c.by_hash.get(&token_hash(token))?;
        // Expiry is checked here too: an expired token is refused at once.
        if e.expire_time != 0 && e.expire_time <= now_unix() {
            return None;
        }
        Some(e.clone())
    }

    fn store_token(&self, token: &str, entry: &Arc<TokenEntry>, generation: u64) {
        // Tokens with a use count must reach the auth service on every use.
        // Batch tokens (no accessor) cannot be dropped by revocation events.
        if entry.num_uses != 0
            || entry.accessor.is_empty()
            || !self.token_live.load(Ordering::SeqCst)
        {
            return;
        }
        let mut c = self.tokens.write().unwrap_or_else(|e| e.into_inner());
        // A revocation seen since the lookup started may concern this token.
        if self.token_gen.load(Ordering::SeqCst) != generation {
            return;
        }
        if c.by_hash.len() >= MAX_ENTRIES {
            *c = TokenCache::default();
        }
        let h = token_hash(token);
        c.by_accessor.insert(entry.accessor.clone(), h);
        c.by_hash.insert(h, entry.clone());
    }

    /// Resolves the request's token: cached, or through the auth service.
    pub async fn authenticate(
        &self,
        auth: &mut AuthClient<Channel>,
        token: &str,
        remote_ip: Option<std::net::IpAddr>,
    ) -> Result<Arc<TokenEntry>, ApiError> {
        if let Some(e) = self.cached_token(token) {
            return Ok(e);
        }
        let generation = self.token_gen.load(Ordering::SeqCst);
        let entry = auth
            .authenticate(AuthenticateRequest {
                token: token.to_string(),
                remote_ip: remote_ip.map(|ip| ip.to_string()).unwrap_or_default(),
            })
            .await
            .map_err(|s| match s.code() {
                tonic::Code::PermissionDenied
                | tonic::Code::Unauthenticated
                | tonic::Code::NotFound => ApiError::permission_denied(),
                _ => ApiError::from(s),
            })?
            .into_inner();
        let entry = Arc::new(entry);
        self.store_token(token, &entry, generation);
        Ok(entry)
    }

    /// Decides whether `policies` may do `op` on `path`: with the compiled
    /// ACL while every policy stream is open, else by the policy service.
    pub async fn authorize(
        &self,
        policy: &mut PolicyClient<Channel>,
        policies: &[String],
        path: &str,
        op: PolicyOp,
        needs_sudo: bool,
    ) -> Result<AuthorizeResponse, ApiError> {
        if self.policy_live.load(Ordering::SeqCst) {
            if let Some(acl_op) = bulwark_policy::Operation::from_proto(op as i32) {
                let acl = self.acl(policy, policies).await?;
                let d = acl.authorize(path, acl_op, needs_sudo);
                return Ok(AuthorizeResponse {
                    allowed: d.allowed,
                    root: d.root,
                    capabilities: d.capabilities,
                    granting_policies: d.granting_policies,
                });
            }
        }
        Ok(policy
            .authorize(AuthorizeRequest {
                policies: policies.to_vec(),
                path: path.to_string(),
                operation: op as i32,
                needs_sudo,
            })
            .await?
            .into_inner())
    }

    /// The compiled ACL of `policies`: cached, or built from the texts the
    /// policy service serves (the names it does not know add nothing, as
    /// there). Kept only if no policy changed while it was built.
    async fn acl(
        &self,
        policy: &mut PolicyClient<Channel>,
        policies: &[String],
    ) -> Result<Arc<Acl>, ApiError> {
        let key: PolicySet = bulwark_policy::store::policy_set(policies);
        if let Some(acl) = self
            .acls
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(acl.clone());
        }
        let generation = self.policy_gen.load(Ordering::SeqCst);
        let mut parsed = Vec::with_capacity(key.len());
        for name in &key {
            let doc = match policy
                .get_policy(GetPolicyRequest { name: name.clone() })
                .await
            {
                Ok(doc) => doc.into_inner(),
                Err(s) if s.code() == tonic::Code::NotFound => continue,
                Err(s) => return Err(s.into()),
            };
            // Stored texts were checked when written; one that no longer
            // parses grants nothing (as in the policy service).
            if let Ok(p) = bulwark_policy::parse_policy(&doc.policy) {
                parsed.push((name.as_str(), p));
            }
        }
        let acl = Arc::new(Acl::new(parsed.iter().map(|(n, p)| (*n, p))));
        let mut cache = self.acls.write().unwrap_or_else(|e| e.into_inner());
        if self.policy_gen.load(Ordering::SeqCst) == generation {
            if cache.len() >= MAX_ACLS {
                cache.clear();
            }
            cache.insert(key, acl.clone());
        }
        Ok(acl)
    }
}

/// The policy operation a request needs. Writes are updates: no backend
/// served here has an existence check yet (as in Vault without one).
pub fn policy_op(op: Operation) -> Option<PolicyOp> {
    Some(match op {
        Operation::Read => PolicyOp::Read,
        Operation::List => PolicyOp::List,
        Operation::Write => PolicyOp::Update,
        Operation::Delete => PolicyOp::Delete,
        Operation::Patch => PolicyOp::Patch,
        Operation::Head | Operation::Options => return None,
    })
}

/// Whether a token bound to `cidrs` may be used from `ip` (no bound CIDRs:
/// from anywhere; bound, and the address unknown: refused).
pub fn address_allowed(cidrs: &[String], ip: Option<std::net::IpAddr>) -> bool {
    if cidrs.is_empty() {
        return true;
    }
    let Some(ip) = ip else {
        return false;
    };
    bulwark_shared::cidr::contains(cidrs, ip)
}

/// Root-protected paths: `sudo` is needed on top of the operation's capability.
pub fn needs_sudo(path: &str, op: Operation) -> bool {
    let p = path.trim_end_matches('/');
    let under = |prefix: &str| p == prefix || p.starts_with(&format!("{prefix}/"));
    match p {
        "sys/seal"
        | "sys/step-down"
        | "sys/rotate"
        | "sys/remount"
        | "sys/config/cors"
        | "sys/audit"
        | "auth/token/revoke-orphan" => true,
        "auth/token/accessors" => op == Operation::List,
        _ => {
            (p.starts_with("sys/audit/"))
                || (p.starts_with("sys/auth/") && p != "sys/auth")
                || under("sys/config/auditing/request-headers")
                || under("sys/config/ui/headers")
                || p.starts_with("sys/internal/inspect/router/")
                || (under("sys/leases/lookup") && op == Operation::List)
                || p.starts_with("sys/leases/revoke-force/")
                || p.starts_with("sys/leases/revoke-prefix/")
                || p.starts_with("sys/revoke-force/")
                || p.starts_with("sys/revoke-prefix/")
                || p.starts_with("sys/plugins/catalog/")
                || p.starts_with("sys/raw/")
                || p.starts_with("sys/storage/raft/snapshot-auto/config")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_cidrs() {
        let ip = |s: &str| Some(s.parse().unwrap());
        assert!(address_allowed(&[], None));
        let cidrs = vec!["10.0.0.0/8".to_string(), "127.0.0.1".to_string()];
        assert!(address_allowed(&cidrs, ip("10.1.2.3")));
        assert!(address_allowed(&cidrs, ip("127.0.0.1")));
        assert!(!address_allowed(&cidrs, ip("127.0.0.2")));
        assert!(!address_allowed(&cidrs, None));
        assert!(!address_allowed(&["junk".to_string()], ip("10.0.0.1")));
    }

    #[test]
    fn sudo_paths() {
        for (p, op, want) in [
            ("sys/seal", Operation::Write, true),
            ("sys/policy/x", Operation::Write, false),
            ("sys/mounts/x", Operation::Write, false),
            ("sys/auth", Operation::Read, false),
            ("sys/leases/lookup/", Operation::List, true),
            ("sys/leases/lookup/database/creds", Operation::List, true),
            ("sys/leases/lookup", Operation::Write, false),
            ("sys/auth/userpass", Operation::Write, true),
            ("sys/auth/userpass/tune", Operation::Write, true),
            ("sys/audit", Operation::Read, true),
            ("sys/audit/file", Operation::Write, true),
            ("auth/token/accessors/", Operation::List, true),
            ("auth/token/revoke-orphan", Operation::Write, true),
            ("auth/token/create", Operation::Write, false),
            ("sys/leases/lookup/database/", Operation::List, true),
            ("sys/leases/lookup", Operation::Write, false),
            ("sys/leases/revoke-prefix/db", Operation::Write, true),
            ("sys/raw/x", Operation::Read, true),
        ] {
            assert_eq!(needs_sudo(p, op), want, "{p}");
        }
    }
}
