//! Policy storage: named policy texts kept through the barrier, the built-in
//! `root` and `default`, and caches of parsed policies and compiled ACLs.
//!
//! * Each policy is stored at `policy/<name>` as JSON `{name, policy}`, the
//!   text verbatim. Names are trimmed and lower-cased; empty names, names of
//!   more than 128 characters, names with control characters, `..` or empty
//!   `/`-separated parts are refused. Texts are limited to 1 MiB.
//! * `root` is virtual: never stored, cannot be written or deleted, reads as
//!   an empty text, is always listed, and its presence in a set allows
//!   everything.
//! * `default` is created with the text Vault 1.15 ships the first time it is
//!   needed and absent (a create-only write, so a concurrent writer's version
//!   wins); it can be edited but not deleted.
//! * A name that matches no stored policy grants nothing.
//!
//! Parsed policies and compiled ACLs (per sorted set of names) are cached in
//! memory. Every write or delete bumps a generation counter, drops the
//! changed policy and every compiled ACL, and is announced to watchers; a
//! cache fill that started before a change is discarded.
//!
//! Replicas on one PostgreSQL stay coherent through a change stamp: every
//! write or delete also stores a fresh random stamp (`core/stamp`), after
//! the policy itself. Before answering from its caches a replica reads the
//! stamp (one point read, only on the gateway's cache misses) and drops
//! every cache when it differs from the one its caches were filled under,
//! telling its own watchers too. So once a write has answered, no replica
//! decides on the old text.
//!
//! While sealed every operation answers [`PolicyError::Sealed`], even when
//! the answer is cached (the caches are dropped then).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use bulwark_shared::barrier::Barrier;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::acl::{Acl, Decision, Operation, ROOT_POLICY};
use crate::error::PolicyError;
use crate::parse::{parse_policy, ParsedPolicy};

/// The name of the built-in policy every token gets unless told otherwise.
pub const DEFAULT_POLICY_NAME: &str = "default";

/// The largest policy text accepted, in bytes (1 MiB).
pub const MAX_POLICY_BYTES: usize = 1024 * 1024;

/// The longest policy name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 128;

/// Storage prefix of the policies.
const PREFIX: &str = "policy/";

/// Where the change stamp is kept (outside [`PREFIX`], never listed).
const STAMP_PATH: &str = "core/stamp";

/// Cache bounds: when full, a cache is emptied and refilled on demand.
const MAX_CACHED_POLICIES: usize = 4096;
const MAX_CACHED_ACLS: usize = 4096;

/// The text of the `default` policy as Vault 1.15 ships it.
pub const DEFAULT_POLICY: &str = r#"
# Allow tokens to look up their own properties
path "auth/token/lookup-self" {
    capabilities = ["read"]
}

# Allow tokens to renew themselves
path "auth/token/renew-self" {
    capabilities = ["update"]
}

# Allow tokens to revoke themselves
path "auth/token/revoke-self" {
    capabilities = ["update"]
}

# Allow a token to look up its own capabilities on a path
path "sys/capabilities-self" {
    capabilities = ["update"]
}

# Allow a token to look up its own entity by id or name
path "identity/entity/id/{{identity.entity.id}}" {
  capabilities = ["read"]
}
path "identity/entity/name/{{identity.entity.name}}" {
  capabilities = ["read"]
}


# Allow a token to look up its resultant ACL from all policies. This is useful
# for UIs. It is an internal path because the format may change at any time
# based on how the internal ACL features and capabilities change.
path "sys/internal/ui/resultant-acl" {
    capabilities = ["read"]
}

# Allow a token to renew a lease via lease_id in the request body; old path for
# old clients, new path for newer
path "sys/renew" {
    capabilities = ["update"]
}
path "sys/leases/renew" {
    capabilities = ["update"]
}

# Allow looking up lease properties. This requires knowing the lease ID ahead
# of time and does not divulge any sensitive information.
path "sys/leases/lookup" {
    capabilities = ["update"]
}

# Allow a token to manage its own cubbyhole
path "cubbyhole/*" {
    capabilities = ["create", "read", "update", "delete", "list"]
}

# Allow a token to wrap arbitrary values in a response-wrapping token
path "sys/wrapping/wrap" {
    capabilities = ["update"]
}

# Allow a token to look up the creation time and TTL of a given
# response-wrapping token
path "sys/wrapping/lookup" {
    capabilities = ["update"]
}

# Allow a token to unwrap a response-wrapping token. This is a convenience to
# avoid client token swapping since this is also part of the response wrapping
# policy.
path "sys/wrapping/unwrap" {
    capabilities = ["update"]
}

# Allow general purpose tools
path "sys/tools/hash" {
    capabilities = ["update"]
}
path "sys/tools/hash/*" {
    capabilities = ["update"]
}

# Allow checking the status of a Control Group request if the user has the
# accessor
path "sys/control-group/request" {
    capabilities = ["update"]
}

# Allow a token to make requests to the Authorization Endpoint for OIDC providers.
path "identity/oidc/provider/+/authorize" {
    capabilities = ["read", "update"]
}
"#;

/// A policy as stored and as read back: its name and verbatim text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredPolicy {
    pub name: String,
    pub policy: String,
}

/// One policy change, as announced to watchers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The generation after this change.
    pub generation: u64,
    /// The policy written or deleted.
    pub name: String,
}

/// A stored policy with its parsed rules.
#[derive(Debug)]
struct Loaded {
    doc: StoredPolicy,
    parsed: ParsedPolicy,
}

struct Cache {
    /// Bumped on every change; fills started under an older one are dropped.
    generation: u64,
    /// Name → policy (`None`: known to be absent).
    policies: HashMap<String, Option<Arc<Loaded>>>,
    /// Sorted, deduplicated names → compiled ACL.
    acls: HashMap<Vec<String>, Arc<Acl>>,
    /// The stored change stamp the caches were filled under (`None`: not
    /// read yet, or no policy was ever changed).
    stamp: Option<Vec<u8>>,
}

/// The policies of this Bulwark: storage, built-ins, caches, change feed.
pub struct PolicyStore {
    barrier: Barrier,
    cache: Mutex<Cache>,
    /// Serializes writers, so that change events follow storage order.
    writes: tokio::sync::Mutex<()>,
    events: broadcast::Sender<Change>,
    /// The watchers that acknowledge changes.
    acks: bulwark_shared::acks::AckSet,
}

/// Normalizes a policy name (trimmed, lower-cased) and validates it.
pub fn normalize_name(raw: &str) -> Result<String, PolicyError> {
    let name = raw.trim().to_lowercase();
    if name.is_empty() {
        return Err(PolicyError::InvalidName("missing policy name"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(PolicyError::InvalidName(
            "policy name is too long (at most 128 characters)",
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(PolicyError::InvalidName(
            "policy name must not contain control characters",
        ));
    }
    if name.contains("..") {
        return Err(PolicyError::InvalidName(
            "policy name must not contain \"..\"",
        ));
    }
    if name.split('/').any(str::is_empty) {
        return Err(PolicyError::InvalidName(
            "policy name must not start or end with '/' or contain '//'",
        ));
    }
    Ok(name)
}

/// The policy set of a token's names: normalized, sorted, deduplicated;
/// names that cannot be policies grant nothing and are dropped. What a
/// compiled ACL is keyed by, here and in the gateway's cache.
pub fn policy_set(names: &[String]) -> Vec<String> {
    let mut set: Vec<String> = names
        .iter()
        .filter_map(|n| normalize_name(n).ok())
        .collect();
    set.sort_unstable();
    set.dedup();
    set
}

fn storage_path(name: &str) -> String {
    format!("{PREFIX}{name}")
}

impl PolicyStore {
    /// A store over `barrier` (the service's `policy` namespace).
    pub fn new(barrier: Barrier) -> Self {
        // Start from the wall clock so generations keep increasing across
        // restarts of this service.
        let generation = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(1);
        let (events, _) = broadcast::channel(256);
        PolicyStore {
            barrier,
            cache: Mutex::new(Cache {
                generation,
                policies: HashMap::new(),
                acls: HashMap::new(),
                stamp: None,
            }),
            writes: tokio::sync::Mutex::new(()),
            events,
            acks: Default::default(),
        }
    }

    fn cache(&self) -> MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current generation.
    pub fn generation(&self) -> u64 {
        self.cache().generation
    }

    /// The current generation and a receiver of every later change.
    pub fn subscribe(&self) -> (u64, broadcast::Receiver<Change>) {
        // Under the cache lock: no change can fall between the two.
        let cache = self.cache();
        (cache.generation, self.events.subscribe())
    }

    /// [`PolicyError::Sealed`] while sealed (the caches are dropped then).
    pub async fn ensure_unsealed(&self) -> Result<(), PolicyError> {
        if self.barrier.keyring().ensure_active().await.is_ok() {
            return Ok(());
        }
        let mut cache = self.cache();
        cache.policies.clear();
        cache.acls.clear();
        Err(PolicyError::Sealed)
    }

    /// Creates or replaces a policy. `root` cannot be written.
    pub async fn put(&self, name: &str, text: &str) -> Result<(), PolicyError> {
        self.ensure_unsealed().await?;
        let name = normalize_name(name)?;
        if name == ROOT_POLICY {
            return Err(PolicyError::RootImmutable);
        }
        if text.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::TooLarge {
                size: text.len(),
                limit: MAX_POLICY_BYTES,
            });
        }
        parse_policy(text)?;
        let doc = StoredPolicy {
            name: name.clone(),
            policy: text.to_string(),
        };
        let _writer = self.writes.lock().await;
        self.barrier.put_json(&storage_path(&name), &doc).await?;
        let stamp = self.restamp().await?;
        let generation = self.changed(&name, Some(stamp));
        drop(_writer);
        self.wait_acked(generation).await;
        tracing::info!(policy = %name, "policy written");
        Ok(())
    }

    /// Reads a policy; `None` if absent. `root` reads as an empty text.
    pub async fn get(&self, name: &str) -> Result<Option<StoredPolicy>, PolicyError> {
        self.ensure_unsealed().await?;
        let name = normalize_name(name)?;
        if name == ROOT_POLICY {
            return Ok(Some(StoredPolicy {
                name,
                policy: String::new(),
            }));
        }
        self.sync_stamp().await?;
        Ok(self.load(&name).await?.map(|l| l.doc.clone()))
    }

    /// Every policy name, sorted, `root` and `default` included.
    pub async fn list(&self) -> Result<Vec<String>, PolicyError> {
        self.ensure_unsealed().await?;
        let mut names = Vec::new();
        let mut folders = vec![String::new()];
        while let Some(folder) = folders.pop() {
            for entry in self.barrier.list(&storage_path(&folder)).await? {
                if entry.ends_with('/') {
                    folders.push(format!("{folder}{entry}"));
                } else {
                    names.push(format!("{folder}{entry}"));
                }
            }
        }
        if !names.iter().any(|n| n == DEFAULT_POLICY_NAME)
            && self.load(DEFAULT_POLICY_NAME).await?.is_some()
        {
            names.push(DEFAULT_POLICY_NAME.to_string());
        }
        names.push(ROOT_POLICY.to_string());
        names.sort_unstable();
        names.dedup();
        Ok(names)
    }

    /// Deletes a policy; deleting an absent one is not an error. `root` and
    /// `default` cannot be deleted.
    pub async fn delete(&self, name: &str) -> Result<(), PolicyError> {
        self.ensure_unsealed().await?;
        let name = normalize_name(name)?;
        if name == ROOT_POLICY {
            return Err(PolicyError::RootUndeletable);
        }
        if name == DEFAULT_POLICY_NAME {
            return Err(PolicyError::DefaultUndeletable);
        }
        let path = storage_path(&name);
        let _writer = self.writes.lock().await;
        let existed = self.barrier.get(&path).await?.is_some();
        self.barrier.delete(&path).await?;
        if existed {
            let stamp = self.restamp().await?;
            let generation = self.changed(&name, Some(stamp));
            drop(_writer);
            self.wait_acked(generation).await;
            tracing::info!(policy = %name, "policy deleted");
        }
        Ok(())
    }

    /// The compiled ACL of a set of policy names (as listed on a token).
    /// Names are normalized like stored ones; unknown or invalid names
    /// contribute nothing.
    pub async fn acl(&self, names: &[String]) -> Result<Arc<Acl>, PolicyError> {
        self.ensure_unsealed().await?;
        let key = policy_set(names);
        self.sync_stamp().await?;
        let generation = {
            let cache = self.cache();
            if let Some(acl) = cache.acls.get(&key) {
                return Ok(acl.clone());
            }
            cache.generation
        };
        let root = ParsedPolicy::default();
        let mut loaded: Vec<(&str, Arc<Loaded>)> = Vec::new();
        let mut has_root = false;
        for name in &key {
            if name == ROOT_POLICY {
                has_root = true;
            } else if let Some(policy) = self.load(name).await? {
                loaded.push((name, policy));
            }
        }
        let pairs = loaded.iter().map(|(n, l)| (*n, &l.parsed));
        let acl = Arc::new(if has_root {
            Acl::new(pairs.chain([(ROOT_POLICY, &root)]))
        } else {
            Acl::new(pairs)
        });
        let mut cache = self.cache();
        if cache.generation == generation {
            if cache.acls.len() >= MAX_CACHED_ACLS {
                cache.acls.clear();
            }
            cache.acls.insert(key, acl.clone());
        }
        Ok(acl)
    }

    /// The decision for `op` on `path` by a token holding `policies`.
    pub async fn authorize(
        &self,
        policies: &[String],
        path: &str,
        op: Operation,
        needs_sudo: bool,
    ) -> Result<Decision, PolicyError> {
        Ok(self.acl(policies).await?.authorize(path, op, needs_sudo))
    }

    /// Whether `policies` grant anything under the mount at `path`.
    pub async fn has_access_under(
        &self,
        policies: &[String],
        path: &str,
    ) -> Result<bool, PolicyError> {
        Ok(self.acl(policies).await?.has_access_under(path))
    }

    /// The capabilities `policies` grant on each of `paths`, in order.
    pub async fn capabilities(
        &self,
        policies: &[String],
        paths: &[String],
    ) -> Result<Vec<(String, Vec<String>)>, PolicyError> {
        let acl = self.acl(policies).await?;
        Ok(paths
            .iter()
            .map(|p| (p.clone(), acl.capabilities(p)))
            .collect())
    }

    /// A policy by normalized name, through the cache.
    async fn load(&self, name: &str) -> Result<Option<Arc<Loaded>>, PolicyError> {
        let generation = {
            let cache = self.cache();
            if let Some(hit) = cache.policies.get(name) {
                return Ok(hit.clone());
            }
            cache.generation
        };
        let loaded = self.read(name).await?;
        let mut cache = self.cache();
        if cache.generation == generation {
            if cache.policies.len() >= MAX_CACHED_POLICIES {
                cache.policies.clear();
            }
            cache.policies.insert(name.to_string(), loaded.clone());
        }
        Ok(loaded)
    }

    /// A policy from storage, creating `default` if it is absent.
    async fn read(&self, name: &str) -> Result<Option<Arc<Loaded>>, PolicyError> {
        let path = storage_path(name);
        let mut doc: Option<StoredPolicy> = self.barrier.get_json(&path).await?;
        if doc.is_none() && name == DEFAULT_POLICY_NAME {
            let default = StoredPolicy {
                name: DEFAULT_POLICY_NAME.to_string(),
                policy: DEFAULT_POLICY.to_string(),
            };
            let bytes = serde_json::to_vec(&default).map_err(|e| PolicyError::Corrupt {
                name: name.to_string(),
                reason: e.to_string(),
            })?;
            if self.barrier.create(&path, &bytes).await? {
                tracing::info!("created the default policy");
            }
            doc = self.barrier.get_json(&path).await?;
        }
        let Some(doc) = doc else {
            return Ok(None);
        };
        let parsed = parse_policy(&doc.policy).map_err(|e| PolicyError::Corrupt {
            name: name.to_string(),
            reason: e.to_string(),
        })?;
        Ok(Some(Arc::new(Loaded { doc, parsed })))
    }

    #[cfg(test)]
    pub(crate) fn keyring(&self) -> &bulwark_shared::keyring::Keyring {
        self.barrier.keyring()
    }

    /// Stores a fresh change stamp (after the change it marks); returns it.
    async fn restamp(&self) -> Result<Vec<u8>, PolicyError> {
        let mut stamp = vec![0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut stamp);
        self.barrier.put(STAMP_PATH, &stamp).await?;
        Ok(stamp)
    }

    /// Drops every cache when another replica changed a policy since they
    /// were filled (see the module documentation).
    async fn sync_stamp(&self) -> Result<(), PolicyError> {
        let stored = self.barrier.get(STAMP_PATH).await?.map(|s| s.to_vec());
        if stored.is_none() || self.cache().stamp == stored {
            return Ok(());
        }
        self.changed("*", stored);
        Ok(())
    }

    /// Records a change: new generation, caches dropped (all of them for
    /// `*`), watchers told. `stamp`: the change stamp this replica stored.
    fn changed(&self, name: &str, stamp: Option<Vec<u8>>) -> u64 {
        let mut cache = self.cache();
        cache.generation += 1;
        if name == "*" {
            cache.policies.clear();
        } else {
            cache.policies.remove(name);
        }
        cache.acls.clear();
        if stamp.is_some() {
            cache.stamp = stamp;
        }
        // No receiver is not an error.
        let _ = self.events.send(Change {
            generation: cache.generation,
            name: name.to_string(),
        });
        cache.generation
    }

    /// Waits (bounded) until every acknowledging watcher applied `generation`.
    async fn wait_acked(&self, generation: u64) {
        if !self
            .acks
            .wait(generation, bulwark_shared::acks::ACK_WAIT)
            .await
        {
            tracing::warn!(generation, "a policy watcher did not acknowledge in time");
        }
    }

    /// The acknowledging watchers of the change feed.
    pub fn acks(&self) -> &bulwark_shared::acks::AckSet {
        &self.acks
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use bulwark_shared::keyring::Keyring;
    use bulwark_shared::storage::{Database, StorageConfig};

    /// A store over in-memory SQLite with an installed key.
    pub(crate) async fn store() -> PolicyStore {
        let db = Database::connect(&StorageConfig::SqliteMemory)
            .await
            .unwrap();
        let keyring = Keyring::new();
        keyring.install(1, [(1, zeroize::Zeroizing::new([7u8; 32]))]);
        PolicyStore::new(Barrier::new(db.namespace("policy").await.unwrap(), keyring))
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn default_exists_and_is_editable() {
        let s = store().await;
        let doc = s.get("default").await.unwrap().unwrap();
        assert_eq!(doc.name, "default");
        assert_eq!(doc.policy, DEFAULT_POLICY);
        let d = s
            .authorize(
                &names(&["default"]),
                "auth/token/lookup-self",
                Operation::Read,
                false,
            )
            .await
            .unwrap();
        assert!(d.allowed);
        assert_eq!(d.granting_policies, ["default"]);

        let edited = r#"path "auth/token/lookup-self" { capabilities = ["read"] }"#;
        s.put("Default", edited).await.unwrap();
        assert_eq!(s.get("default").await.unwrap().unwrap().policy, edited);
        // The edit is not undone by the create-on-first-read.
        let s2_caps = s
            .capabilities(&names(&["default"]), &names(&["cubbyhole/x"]))
            .await
            .unwrap();
        assert_eq!(s2_caps, [("cubbyhole/x".to_string(), names(&["deny"]))]);
    }

    #[tokio::test]
    async fn root_and_default_are_undeletable_and_root_unwritable() {
        let s = store().await;
        assert!(matches!(
            s.delete("root").await,
            Err(PolicyError::RootUndeletable)
        ));
        assert!(matches!(
            s.delete(" ROOT ").await,
            Err(PolicyError::RootUndeletable)
        ));
        assert!(matches!(
            s.delete("default").await,
            Err(PolicyError::DefaultUndeletable)
        ));
        assert!(matches!(
            s.put("root", r#"path "*" { capabilities = ["deny"] }"#)
                .await,
            Err(PolicyError::RootImmutable)
        ));
        let root = s.get("Root").await.unwrap().unwrap();
        assert_eq!((root.name.as_str(), root.policy.as_str()), ("root", ""));
        let caps = s
            .capabilities(&names(&["root"]), &names(&["sys/raw/x"]))
            .await
            .unwrap();
        assert_eq!(caps[0].1, ["root"]);
    }

    #[tokio::test]
    async fn delete_is_idempotent_and_a_deleted_policy_grants_nothing() {
        let s = store().await;
        let tok = names(&["reader"]);
        s.put("reader", r#"path "secret/*" { capabilities = ["read"] }"#)
            .await
            .unwrap();
        assert!(
            s.authorize(&tok, "secret/a", Operation::Read, false)
                .await
                .unwrap()
                .allowed
        );
        s.delete("reader").await.unwrap();
        s.delete("reader").await.unwrap();
        s.delete("never-existed").await.unwrap();
        assert!(s.get("reader").await.unwrap().is_none());
        // The cached ACL was dropped with the policy.
        assert!(
            !s.authorize(&tok, "secret/a", Operation::Read, false)
                .await
                .unwrap()
                .allowed
        );
    }

    #[tokio::test]
    async fn writes_invalidate_cached_acls() {
        let s = store().await;
        let tok = names(&["p"]);
        s.put("p", r#"path "a" { capabilities = ["read"] }"#)
            .await
            .unwrap();
        assert!(
            s.authorize(&tok, "a", Operation::Read, false)
                .await
                .unwrap()
                .allowed
        );
        s.put("p", r#"path "a" { capabilities = ["list"] }"#)
            .await
            .unwrap();
        assert!(
            !s.authorize(&tok, "a", Operation::Read, false)
                .await
                .unwrap()
                .allowed
        );
        // A policy created after a token referenced it starts granting.
        let tok2 = names(&["later", "p"]);
        assert!(
            !s.authorize(&tok2, "b", Operation::Read, false)
                .await
                .unwrap()
                .allowed
        );
        s.put("later", r#"path "b" { capabilities = ["read"] }"#)
            .await
            .unwrap();
        assert!(
            s.authorize(&tok2, "b", Operation::Read, false)
                .await
                .unwrap()
                .allowed
        );
    }

    #[tokio::test]
    async fn names_are_normalized_and_validated() {
        let s = store().await;
        s.put("  MixedCase  ", "").await.unwrap();
        assert_eq!(s.get("mixedcase").await.unwrap().unwrap().name, "mixedcase");
        assert_eq!(s.get("MIXEDCASE").await.unwrap().unwrap().name, "mixedcase");
        let long = "a".repeat(MAX_NAME_CHARS + 1);
        for bad in [
            "",
            "   ",
            long.as_str(),
            "a\u{7}b",
            "a\nb",
            "../x",
            "a..b",
            "/a",
            "a/",
            "a//b",
        ] {
            assert!(
                matches!(s.put(bad, "").await, Err(PolicyError::InvalidName(_))),
                "{bad:?}"
            );
        }
        s.put(&"b".repeat(MAX_NAME_CHARS), "").await.unwrap();
        // Tokens naming a policy in another case still get it.
        s.put("team", r#"path "t" { capabilities = ["read"] }"#)
            .await
            .unwrap();
        assert!(
            s.authorize(&names(&["TEAM "]), "t", Operation::Read, false)
                .await
                .unwrap()
                .allowed
        );
    }

    #[tokio::test]
    async fn oversized_and_unparsable_policies_are_refused() {
        let s = store().await;
        let huge = format!("# {}\n", "x".repeat(10 * 1024 * 1024));
        assert!(matches!(
            s.put("big", &huge).await,
            Err(PolicyError::TooLarge { .. })
        ));
        assert!(matches!(
            s.put("bad", r#"path "a" { capabilities = ["fly"] }"#).await,
            Err(PolicyError::Parse(_))
        ));
        assert!(s.get("big").await.unwrap().is_none());
        assert!(s.get("bad").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn list_includes_root_and_default_sorted() {
        let s = store().await;
        assert_eq!(s.list().await.unwrap(), ["default", "root"]);
        for name in ["zeta", "alpha", "team/ops", "team/dev/x"] {
            s.put(name, "").await.unwrap();
        }
        assert_eq!(
            s.list().await.unwrap(),
            ["alpha", "default", "root", "team/dev/x", "team/ops", "zeta"]
        );
        assert!(s.get("team/dev/x").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn text_is_kept_verbatim() {
        let s = store().await;
        let text = "\n# spaced   out\npath \"a\"   {\n\tcapabilities = [\"read\"]\n}\n\n";
        s.put("v", text).await.unwrap();
        assert_eq!(s.get("v").await.unwrap().unwrap().policy, text);
        let json = r#"{"path": {"a": {"capabilities": ["read"]}}}"#;
        s.put("j", json).await.unwrap();
        assert_eq!(s.get("j").await.unwrap().unwrap().policy, json);
    }

    #[tokio::test]
    async fn sealed_refuses_everything() {
        let s = store().await;
        s.put("p", r#"path "a" { capabilities = ["read"] }"#)
            .await
            .unwrap();
        let tok = names(&["p"]);
        assert!(
            s.authorize(&tok, "a", Operation::Read, false)
                .await
                .unwrap()
                .allowed
        );
        s.barrier.keyring().clear();
        assert!(matches!(s.get("p").await, Err(PolicyError::Sealed)));
        assert!(matches!(s.get("root").await, Err(PolicyError::Sealed)));
        assert!(matches!(s.list().await, Err(PolicyError::Sealed)));
        assert!(matches!(s.put("p", "").await, Err(PolicyError::Sealed)));
        assert!(matches!(s.delete("p").await, Err(PolicyError::Sealed)));
        // Cached decisions are not served while sealed.
        assert!(matches!(
            s.authorize(&tok, "a", Operation::Read, false).await,
            Err(PolicyError::Sealed)
        ));
        assert!(matches!(
            s.acl(&names(&["root"])).await,
            Err(PolicyError::Sealed)
        ));
    }

    #[tokio::test]
    async fn changes_are_announced_in_order() {
        let s = store().await;
        let (g0, mut rx) = s.subscribe();
        s.put("a", "").await.unwrap();
        s.delete("a").await.unwrap();
        s.delete("a").await.unwrap(); // absent: no change
        s.put("b", "").await.unwrap();
        let mut seen = Vec::new();
        while let Ok(change) = rx.try_recv() {
            seen.push(change);
        }
        let expected: Vec<Change> = [(1, "a"), (2, "a"), (3, "b")]
            .into_iter()
            .map(|(n, name)| Change {
                generation: g0 + n,
                name: name.to_string(),
            })
            .collect();
        assert_eq!(seen, expected);
        assert_eq!(s.generation(), g0 + 3);
    }
}
