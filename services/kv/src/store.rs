//! The kv store: every mount's data through the barrier. This module holds
//! the store itself, the shared record plumbing (compare-and-swap updates,
//! retries, whole-tree deletion), kv v1 / cubbyhole entries, listing, the kv
//! v2 mount configuration and dropping a mount or a token's cubbyhole. The
//! versioned kv v2 operations are in [`crate::versioned`].
//!
//! The layout is described in [`crate::layout`]. Secret data is never logged
//! and never put in a span or an error message.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bulwark_proto::kv::v1::MountConfig;
use bulwark_shared::barrier::Barrier;
use bulwark_shared::keyring::Keyring;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::KvError;
use crate::layout::{self, Kind, CUBBYHOLE_MOUNT};

/// Unix nanoseconds, with an offset that tests can move forward.
#[derive(Clone, Default)]
pub(crate) struct Clock {
    offset: Arc<AtomicI64>,
}

impl Clock {
    /// Now, in Unix nanoseconds.
    pub fn now(&self) -> i64 {
        chrono::Utc::now()
            .timestamp_nanos_opt()
            .unwrap_or(i64::MAX)
            .saturating_add(self.offset.load(Ordering::Relaxed))
    }

    /// Moves this clock forward by `by`.
    #[cfg(test)]
    pub fn advance(&self, by: Duration) {
        let nanos = i64::try_from(by.as_nanos()).unwrap_or(i64::MAX);
        self.offset.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// How many times a compare-and-swap update is tried before giving up.
const MAX_ATTEMPTS: u32 = 1000;

/// Paces the retries of a compare-and-swap loop: the first few at once, then
/// with a short random sleep so that racing writers spread out.
#[derive(Default)]
pub(crate) struct Backoff {
    attempts: u32,
}

impl Backoff {
    /// Waits before the next attempt; [`KvError::Contention`] once too many
    /// attempts have lost.
    pub async fn wait(&mut self) -> Result<(), KvError> {
        self.attempts += 1;
        if self.attempts >= MAX_ATTEMPTS {
            return Err(KvError::Contention);
        }
        if self.attempts <= 2 {
            tokio::task::yield_now().await;
        } else {
            let spread = 100 * u64::from(self.attempts.min(50));
            let micros = 50 + rand::random::<u64>() % spread;
            tokio::time::sleep(Duration::from_micros(micros)).await;
        }
        Ok(())
    }
}

/// What an update closure decided (see [`KvStore::update_record`]).
pub(crate) enum Update<T, R> {
    /// Nothing to write; answer `R`.
    Keep(R),
    /// Store `T` (if nothing changed meanwhile), then answer `R`.
    Write(T, R),
}

/// A kv v2 mount's configuration, as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct ConfigRecord {
    /// 0 = the default (10).
    pub max_versions: u32,
    pub cas_required: bool,
    /// Seconds; 0 = never.
    pub delete_version_after: i64,
}

/// Decodes a stored JSON record.
pub(crate) fn decode<T: DeserializeOwned>(
    what: &'static str,
    key: &str,
    bytes: &[u8],
) -> Result<T, KvError> {
    serde_json::from_slice(bytes).map_err(|e| KvError::Corrupt {
        what,
        path: key.to_string(),
        reason: e.to_string(),
    })
}

/// Checks that `data` is one JSON object and returns how many members it
/// has, without copying its values.
pub(crate) fn object_len(data: &[u8]) -> Option<usize> {
    serde_json::from_slice::<BTreeMap<String, IgnoredAny>>(data)
        .ok()
        .map(|m| m.len())
}

/// Refuses a negative `delete_version_after`.
pub(crate) fn check_delete_after(seconds: Option<i64>) -> Result<(), KvError> {
    match seconds {
        Some(s) if s < 0 => Err(KvError::Invalid(
            "delete_version_after must not be negative".into(),
        )),
        _ => Ok(()),
    }
}

/// The storage of every kv v1, kv v2 and cubbyhole mount. Cheap to share
/// behind an `Arc`; every method is safe to call concurrently, also from
/// several replicas over one database (records change by compare-and-swap).
pub struct KvStore {
    pub(crate) barrier: Barrier,
    pub(crate) clock: Clock,
}

impl KvStore {
    /// A store over `barrier` (the `kv` namespace).
    pub fn new(barrier: Barrier) -> Self {
        KvStore {
            barrier,
            clock: Clock::default(),
        }
    }

    /// The keyring this store's barrier uses.
    pub fn keyring(&self) -> &Keyring {
        self.barrier.keyring()
    }

    /// Refuses with "Vault is sealed" while this service holds no data key.
    pub async fn ensure_unsealed(&self) -> Result<(), KvError> {
        self.barrier.keyring().ensure_active().await?;
        Ok(())
    }

    // === records ===

    /// A JSON record with its stored bytes (for [`KvStore::store_record`]).
    pub(crate) async fn load_record<T: DeserializeOwned>(
        &self,
        what: &'static str,
        key: &str,
    ) -> Result<Option<(T, Vec<u8>)>, KvError> {
        match self.barrier.get_versioned(key).await? {
            Some((plain, stored)) => Ok(Some((decode(what, key, &plain)?, stored))),
            None => Ok(None),
        }
    }

    /// Stores `value` at `key` if the stored bytes are still `expected`
    /// (`None`: only if absent). Returns whether it was written.
    pub(crate) async fn store_record<T: Serialize>(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        value: &T,
    ) -> Result<bool, KvError> {
        let bytes = Zeroizing::new(serde_json::to_vec(value).map_err(|e| KvError::Corrupt {
            what: "record",
            path: key.to_string(),
            reason: e.to_string(),
        })?);
        Ok(match expected {
            Some(expected) => self.barrier.replace(key, expected, &bytes).await?,
            None => self.barrier.create(key, &bytes).await?,
        })
    }

    /// Read-modify-write of one record by compare-and-swap: `f` sees the
    /// current value (`None` if absent) and is called again whenever another
    /// writer got there first.
    pub(crate) async fn update_record<T, R>(
        &self,
        what: &'static str,
        key: &str,
        mut f: impl FnMut(Option<T>) -> Result<Update<T, R>, KvError>,
    ) -> Result<R, KvError>
    where
        T: Serialize + DeserializeOwned,
    {
        let mut backoff = Backoff::default();
        loop {
            let (current, stored) = match self.load_record::<T>(what, key).await? {
                Some((value, stored)) => (Some(value), Some(stored)),
                None => (None, None),
            };
            match f(current)? {
                Update::Keep(r) => return Ok(r),
                Update::Write(value, r) => {
                    if self.store_record(key, stored.as_deref(), &value).await? {
                        return Ok(r);
                    }
                }
            }
            backoff.wait().await?;
        }
    }

    /// Deletes every key under `prefix` (and a key equal to it), walking the
    /// folders with an explicit stack. Returns how many entries it deleted.
    pub(crate) async fn delete_tree(&self, prefix: &str) -> Result<usize, KvError> {
        let mut deleted = 0;
        let mut folders = vec![prefix.to_string()];
        while let Some(folder) = folders.pop() {
            // A key that ends in "/" lists as a folder; delete it as a key too.
            self.barrier.delete(&folder).await?;
            for entry in self.barrier.list(&folder).await? {
                let key = format!("{folder}{entry}");
                if entry.ends_with('/') {
                    folders.push(key);
                } else {
                    self.barrier.delete(&key).await?;
                    deleted += 1;
                }
            }
        }
        Ok(deleted)
    }

    // === kv v1 and cubbyhole ===

    /// Whether something is stored at the key: the entry (kv v1, cubbyhole)
    /// or the key's metadata (kv v2). An empty key holds nothing.
    pub async fn exists(&self, kind: Kind, mount: &str, path: &str) -> Result<bool, KvError> {
        self.ensure_unsealed().await?;
        let key = match kind {
            Kind::KvV2 => {
                layout::check_mount(mount)?;
                if path.is_empty() {
                    return Ok(false);
                }
                layout::check_key(path)?;
                layout::meta_key(mount, path)
            }
            Kind::KvV1 | Kind::Cubbyhole => {
                let mount = flat_mount(kind, mount)?;
                if flat_root(kind, path)? {
                    return Ok(false);
                }
                check_flat_key(kind, path)?;
                layout::entry_key(mount, path)
            }
        };
        Ok(self.barrier.get(&key).await?.is_some())
    }

    /// A kv v1 or cubbyhole entry (a JSON object), if any.
    pub async fn get(
        &self,
        kind: Kind,
        mount: &str,
        path: &str,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, KvError> {
        self.ensure_unsealed().await?;
        let mount = flat_mount(kind, mount)?;
        check_flat_key(kind, path)?;
        Ok(self.barrier.get(&layout::entry_key(mount, path)).await?)
    }

    /// Stores a kv v1 or cubbyhole entry, replacing what was there. `data`
    /// must be a non-empty JSON object; it is stored as given.
    pub async fn put(
        &self,
        kind: Kind,
        mount: &str,
        path: &str,
        data: &[u8],
    ) -> Result<(), KvError> {
        self.ensure_unsealed().await?;
        let mount = flat_mount(kind, mount)?;
        check_flat_key(kind, path)?;
        match object_len(data) {
            Some(0) => return Err(KvError::MissingDataFields),
            Some(_) => {}
            None if data.iter().all(u8::is_ascii_whitespace) => {
                return Err(KvError::MissingDataFields)
            }
            None => return Err(KvError::Invalid("data must be a JSON object".into())),
        }
        Ok(self
            .barrier
            .put(&layout::entry_key(mount, path), data)
            .await?)
    }

    /// Reads and deletes a kv v1 or cubbyhole entry at once: of several
    /// racing callers exactly one gets it (response unwrapping).
    pub async fn take(
        &self,
        kind: Kind,
        mount: &str,
        path: &str,
    ) -> Result<Option<Zeroizing<Vec<u8>>>, KvError> {
        self.ensure_unsealed().await?;
        let mount = flat_mount(kind, mount)?;
        check_flat_key(kind, path)?;
        Ok(self.barrier.take(&layout::entry_key(mount, path)).await?)
    }

    /// Deletes a kv v1 or cubbyhole entry (a missing one is fine).
    pub async fn delete(&self, kind: Kind, mount: &str, path: &str) -> Result<(), KvError> {
        self.ensure_unsealed().await?;
        let mount = flat_mount(kind, mount)?;
        check_flat_key(kind, path)?;
        Ok(self.barrier.delete(&layout::entry_key(mount, path)).await?)
    }

    /// The entries directly under a folder (`""` = the mount's root): kv v1
    /// and cubbyhole entries, or kv v2 keys. Sub-folders end in `/`.
    pub async fn list(&self, kind: Kind, mount: &str, path: &str) -> Result<Vec<String>, KvError> {
        self.ensure_unsealed().await?;
        let folder = layout::folder(path)?;
        let prefix = match kind {
            Kind::KvV2 => {
                layout::check_mount(mount)?;
                layout::meta_folder(mount, &folder)
            }
            Kind::KvV1 | Kind::Cubbyhole => {
                let mount = flat_mount(kind, mount)?;
                if kind == Kind::Cubbyhole {
                    layout::cubbyhole_accessor(&folder)?;
                }
                layout::entry_folder(mount, &folder)
            }
        };
        Ok(self.barrier.list(&prefix).await?)
    }

    // === kv v2 mount configuration ===

    /// A kv v2 mount's stored configuration (defaults when never written).
    pub(crate) async fn config_record(&self, mount: &str) -> Result<ConfigRecord, KvError> {
        let key = layout::config_key(mount);
        Ok(self
            .load_record::<ConfigRecord>("configuration", &key)
            .await?
            .map(|(config, _)| config)
            .unwrap_or_default())
    }

    /// A kv v2 mount's configuration: the stored values (`max_versions` 0
    /// means the default of 10).
    pub async fn read_config(&self, mount: &str) -> Result<MountConfig, KvError> {
        self.ensure_unsealed().await?;
        layout::check_mount(mount)?;
        let c = self.config_record(mount).await?;
        Ok(MountConfig {
            max_versions: c.max_versions,
            cas_required: c.cas_required,
            delete_version_after: c.delete_version_after,
        })
    }

    /// Changes a kv v2 mount's configuration; `None` keeps a value.
    pub async fn write_config(
        &self,
        mount: &str,
        max_versions: Option<u32>,
        cas_required: Option<bool>,
        delete_version_after: Option<i64>,
    ) -> Result<(), KvError> {
        self.ensure_unsealed().await?;
        layout::check_mount(mount)?;
        check_delete_after(delete_version_after)?;
        let key = layout::config_key(mount);
        self.update_record("configuration", &key, |current: Option<ConfigRecord>| {
            let mut config = current.unwrap_or_default();
            if let Some(v) = max_versions {
                config.max_versions = v;
            }
            if let Some(v) = cas_required {
                config.cas_required = v;
            }
            if let Some(v) = delete_version_after {
                config.delete_version_after = v;
            }
            Ok(Update::Write(config, ()))
        })
        .await
    }

    // === whole mounts and cubbyholes ===

    /// Deletes everything of a mount (it was disabled). Returns how many
    /// entries went.
    pub async fn drop_mount(&self, mount: &str) -> Result<usize, KvError> {
        self.ensure_unsealed().await?;
        layout::check_mount(mount)?;
        self.delete_tree(&layout::mount_prefix(mount)).await
    }

    /// Deletes every cubbyhole entry of the token with `accessor` (it was
    /// revoked). An implausible accessor names no cubbyhole: nothing to do.
    pub async fn purge_cubbyhole(&self, accessor: &str) -> Result<usize, KvError> {
        self.ensure_unsealed().await?;
        if !layout::plausible_accessor(accessor) {
            return Ok(0);
        }
        self.delete_tree(&layout::cubbyhole_prefix(accessor)).await
    }
}

/// The storage mount id of a kv v1 or cubbyhole request.
fn flat_mount(kind: Kind, mount: &str) -> Result<&str, KvError> {
    match kind {
        Kind::KvV1 => {
            layout::check_mount(mount)?;
            Ok(mount)
        }
        Kind::Cubbyhole => Ok(CUBBYHOLE_MOUNT),
        Kind::KvV2 => Err(KvError::Invalid(
            "not supported on a kv v2 mount (use the versioned operations)".into(),
        )),
    }
}

/// Whether `path` is the root of a kv v1 mount (`""`) or of a cubbyhole
/// (`"<accessor>/"`), where no entry can be stored.
fn flat_root(kind: Kind, path: &str) -> Result<bool, KvError> {
    Ok(match kind {
        Kind::Cubbyhole => path.len() == layout::cubbyhole_accessor(path)?.len() + 1,
        Kind::KvV1 | Kind::KvV2 => path.is_empty(),
    })
}

/// A kv v1 or cubbyhole data key: a cubbyhole key names its accessor and a
/// non-empty key under it.
fn check_flat_key(kind: Kind, path: &str) -> Result<(), KvError> {
    layout::check_key(path)?;
    if flat_root(kind, path)? {
        return Err(KvError::Invalid("missing path".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{harness, raw_keys};

    #[tokio::test]
    async fn v1_put_get_list_delete() {
        let h = harness().await;
        let s = &h.store;
        let v1 = Kind::KvV1;
        s.put(v1, "m1", "a", br#"{"k":"v1"}"#).await.unwrap();
        s.put(v1, "m1", "dir/b", br#"{"k":"v2"}"#).await.unwrap();
        s.put(v1, "m1", "dir/sub/c", br#"{"k":"v3"}"#)
            .await
            .unwrap();
        assert_eq!(
            s.get(v1, "m1", "a").await.unwrap().unwrap().as_slice(),
            br#"{"k":"v1"}"#
        );
        assert!(s.get(v1, "m1", "missing").await.unwrap().is_none());
        assert!(s.exists(v1, "m1", "a").await.unwrap());
        assert!(!s.exists(v1, "m1", "missing").await.unwrap());
        assert!(!s.exists(v1, "m1", "").await.unwrap());

        let lists = [
            ("", vec!["a", "dir/"]),
            ("dir", vec!["b", "sub/"]),
            ("dir/", vec!["b", "sub/"]),
            ("dir/sub/", vec!["c"]),
            ("nothing/", vec![]),
        ];
        for (folder, want) in lists {
            assert_eq!(s.list(v1, "m1", folder).await.unwrap(), want, "{folder:?}");
        }
        // Another mount sees none of it.
        assert!(s.list(v1, "m2", "").await.unwrap().is_empty());

        // Replace, then delete (twice: a missing entry is fine).
        s.put(v1, "m1", "a", br#"{"k":"new"}"#).await.unwrap();
        assert_eq!(
            s.get(v1, "m1", "a").await.unwrap().unwrap().as_slice(),
            br#"{"k":"new"}"#
        );
        s.delete(v1, "m1", "a").await.unwrap();
        s.delete(v1, "m1", "a").await.unwrap();
        assert!(s.get(v1, "m1", "a").await.unwrap().is_none());
        assert_eq!(s.list(v1, "m1", "").await.unwrap(), ["dir/"]);
    }

    #[tokio::test]
    async fn v1_refuses_bad_requests() {
        let h = harness().await;
        let s = &h.store;
        let v1 = Kind::KvV1;
        let cases: [(&str, &str, &[u8], &str); 9] = [
            ("m", "a", b"{}", "missing data fields"),
            ("m", "a", b"", "missing data fields"),
            ("m", "a", b"[1]", "data must be a JSON object"),
            ("m", "a", b"{\"a\":", "data must be a JSON object"),
            ("", "a", b"{\"a\":1}", "missing mount id"),
            ("m/x", "a", b"{\"a\":1}", "invalid mount id"),
            ("m", "", b"{\"a\":1}", "missing path"),
            (
                "m",
                "../a",
                b"{\"a\":1}",
                "path must not contain \"..\" segments",
            ),
            ("m", "/a", b"{\"a\":1}", "path must not start with \"/\""),
        ];
        for (mount, path, data, message) in cases {
            let e = s.put(v1, mount, path, data).await.unwrap_err();
            assert_eq!(e.to_string(), message, "{mount:?} {path:?}");
            assert_eq!(tonic::Status::from(e).code(), tonic::Code::InvalidArgument);
        }
        let too_long = "a".repeat(layout::MAX_PATH_LEN + 1);
        assert!(matches!(
            s.get(v1, "m", &too_long).await,
            Err(KvError::Invalid(_))
        ));
        // kv v1 calls on a kv v2 mount are refused.
        assert!(matches!(
            s.get(Kind::KvV2, "m", "a").await,
            Err(KvError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn take_hands_an_entry_to_exactly_one_caller() {
        let h = harness().await;
        let s = h.store.clone();
        let c = Kind::Cubbyhole;
        s.put(c, "cubbyhole", "acc9/response", br#"{"a":"1"}"#)
            .await
            .unwrap();
        let racers: Vec<_> = (0..8)
            .map(|_| {
                let s = s.clone();
                tokio::spawn(async move { s.take(c, "cubbyhole", "acc9/response").await })
            })
            .collect();
        let mut winners = 0;
        for r in racers {
            if let Some(v) = r.await.unwrap().unwrap() {
                assert_eq!(v.as_slice(), br#"{"a":"1"}"#);
                winners += 1;
            }
        }
        assert_eq!(winners, 1);
        assert!(s
            .get(c, "cubbyhole", "acc9/response")
            .await
            .unwrap()
            .is_none());
        assert!(s
            .take(c, "cubbyhole", "acc9/response")
            .await
            .unwrap()
            .is_none());
    }

    #[tokio::test]
    async fn cubbyholes_are_per_accessor() {
        let h = harness().await;
        let s = &h.store;
        let c = Kind::Cubbyhole;
        // Whatever mount id the request names, cubbyholes live together.
        s.put(c, "cubbyhole", "acc1/x", br#"{"a":"1"}"#)
            .await
            .unwrap();
        s.put(c, "some-uuid", "acc1/dir/y", br#"{"a":"2"}"#)
            .await
            .unwrap();
        s.put(c, "cubbyhole", "acc2/x", br#"{"a":"3"}"#)
            .await
            .unwrap();
        assert_eq!(
            s.list(c, "cubbyhole", "acc1/").await.unwrap(),
            ["dir/", "x"]
        );
        assert_eq!(s.list(c, "cubbyhole", "acc2").await.unwrap(), ["x"]);
        assert!(s.exists(c, "cubbyhole", "acc1/x").await.unwrap());
        assert!(!s.exists(c, "cubbyhole", "acc1/").await.unwrap());
        for bad in ["x", "/x", "acc1/", ""] {
            assert!(
                matches!(s.get(c, "cubbyhole", bad).await, Err(KvError::Invalid(_))),
                "{bad:?}"
            );
        }
        assert!(s.list(c, "cubbyhole", "").await.is_err());

        assert_eq!(s.purge_cubbyhole("acc1").await.unwrap(), 2);
        assert!(s.list(c, "cubbyhole", "acc1/").await.unwrap().is_empty());
        assert!(s.get(c, "cubbyhole", "acc2/x").await.unwrap().is_some());
        // Nothing to do for an unknown or implausible accessor.
        assert_eq!(s.purge_cubbyhole("acc1").await.unwrap(), 0);
        assert_eq!(s.purge_cubbyhole("").await.unwrap(), 0);
        assert_eq!(s.purge_cubbyhole("a/b").await.unwrap(), 0);
    }

    #[tokio::test]
    async fn config_defaults_and_partial_updates() {
        let h = harness().await;
        let s = &h.store;
        let c = s.read_config("m").await.unwrap();
        assert_eq!(
            (c.max_versions, c.cas_required, c.delete_version_after),
            (0, false, 0)
        );
        s.write_config("m", Some(5), None, None).await.unwrap();
        s.write_config("m", None, Some(true), Some(60))
            .await
            .unwrap();
        let c = s.read_config("m").await.unwrap();
        assert_eq!(
            (c.max_versions, c.cas_required, c.delete_version_after),
            (5, true, 60)
        );
        // Other mounts keep their defaults.
        assert_eq!(s.read_config("other").await.unwrap().max_versions, 0);
        assert!(matches!(
            s.write_config("m", None, None, Some(-1)).await,
            Err(KvError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn drop_mount_removes_that_mount_only() {
        let h = harness().await;
        let s = &h.store;
        for mount in ["gone", "kept"] {
            s.put(Kind::KvV1, mount, "a/b/c", br#"{"x":"1"}"#)
                .await
                .unwrap();
            s.put(Kind::KvV1, mount, "top", br#"{"x":"1"}"#)
                .await
                .unwrap();
            // A key ending in "/" lists as a folder, yet must go too.
            s.put(Kind::KvV1, mount, "odd/", br#"{"x":"1"}"#)
                .await
                .unwrap();
            s.write_version(mount, "v2/key", br#"{"x":"1"}"#, None)
                .await
                .unwrap();
            s.write_version(mount, "v2/key", br#"{"x":"2"}"#, None)
                .await
                .unwrap();
            s.write_config(mount, Some(3), None, None).await.unwrap();
        }
        // A mount whose id starts like another's is another mount.
        s.put(Kind::KvV1, "gone2", "a", br#"{"x":"1"}"#)
            .await
            .unwrap();
        let before = raw_keys(&h.raw).await;
        let kept: Vec<_> = before
            .iter()
            .filter(|k| !k.starts_with("m/gone/"))
            .cloned()
            .collect();
        assert!(kept.len() < before.len());
        assert!(s.drop_mount("gone").await.unwrap() >= 6);
        assert_eq!(raw_keys(&h.raw).await, kept);
        assert!(s.get(Kind::KvV1, "kept", "a/b/c").await.unwrap().is_some());
        assert_eq!(s.read_config("gone").await.unwrap().max_versions, 0);
    }

    #[tokio::test]
    async fn drop_mount_handles_deep_trees() {
        let h = harness().await;
        let s = &h.store;
        let deep = (0..300)
            .map(|i| format!("d{i}"))
            .collect::<Vec<_>>()
            .join("/");
        s.put(Kind::KvV1, "m", &deep, br#"{"x":"1"}"#)
            .await
            .unwrap();
        for i in 0..50 {
            s.put(Kind::KvV1, "m", &format!("wide/{i}"), br#"{"x":"1"}"#)
                .await
                .unwrap();
        }
        assert_eq!(s.drop_mount("m").await.unwrap(), 51);
        assert!(raw_keys(&h.raw).await.is_empty());
    }
}
