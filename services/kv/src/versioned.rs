//! kv v2: versioned keys, their metadata, check-and-set, soft delete,
//! undelete, destroy, and trimming to `max_versions`, with Vault's
//! semantics.
//!
//! A key's metadata record (`m/<mount>/meta/<path>`) is the single source of
//! truth: it names every version and where its data is. It only ever changes
//! by compare-and-swap, so concurrent writers (here or on another replica)
//! never lose or duplicate a version, and of several writers with the same
//! `cas` exactly one succeeds. Data is written before the metadata that
//! names it, under a key of the writer's own (see [`crate::layout`]); a
//! writer that loses deletes its data again. Destroying deletes the data
//! first (as Vault does), then marks the version destroyed; a reader that
//! finds a live version without data looks again, and answers "destroyed"
//! if it stays so.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bulwark_proto::kv::v1::{
    KeyMetadata, ReadVersionResponse, VersionMetadata, VersionState, WriteMetadataRequest,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::Zeroizing;

use crate::error::KvError;
use crate::layout;
use crate::merge::merge_patch;
use crate::store::{check_delete_after, object_len, Backoff, ConfigRecord, KvStore, Update};

/// Versions kept per key when neither the key nor the mount says.
pub const DEFAULT_MAX_VERSIONS: u32 = 10;
/// At most this many custom metadata entries per key.
pub const MAX_CUSTOM_METADATA_KEYS: usize = 64;
/// Custom metadata keys are at most this long, in bytes.
pub const MAX_CUSTOM_METADATA_KEY_LEN: usize = 128;
/// Custom metadata values are at most this long, in bytes.
pub const MAX_CUSTOM_METADATA_VALUE_LEN: usize = 512;

const NO_METADATA: KvError = KvError::NotFound("no metadata for this key");
const NOT_LIVE: KvError = KvError::NotFound("no live current version to patch");

/// One version of a key, as stored in its metadata record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct VersionRecord {
    /// Unix nanoseconds.
    pub created_time: i64,
    /// Unix nanoseconds; 0 = not deleted (a future time is a scheduled
    /// deletion).
    pub deletion_time: i64,
    pub destroyed: bool,
    /// The id of the version's data (`ver/<path>/<id>`); empty once
    /// destroyed.
    pub data: String,
}

impl VersionRecord {
    fn is_deleted(&self, now: i64) -> bool {
        self.deletion_time != 0 && self.deletion_time <= now
    }

    fn is_live(&self, now: i64) -> bool {
        !self.destroyed && !self.is_deleted(now)
    }

    fn metadata(&self, version: u64, custom: &BTreeMap<String, String>) -> VersionMetadata {
        VersionMetadata {
            created_time: self.created_time,
            custom_metadata: custom_map(custom),
            deletion_time: self.deletion_time,
            destroyed: self.destroyed,
            version,
        }
    }
}

/// A kv v2 key's metadata record.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct KeyRecord {
    pub cas_required: bool,
    pub created_time: i64,
    pub current_version: u64,
    pub custom_metadata: BTreeMap<String, String>,
    /// Seconds; 0 = the mount's setting.
    pub delete_version_after: i64,
    /// 0 = the mount's setting.
    pub max_versions: u32,
    pub oldest_version: u64,
    pub updated_time: i64,
    pub versions: BTreeMap<u64, VersionRecord>,
}

impl KeyRecord {
    /// Adds version `current + 1`, its data stored under `data`, and returns
    /// its number.
    fn add_version(&mut self, now: i64, data: String, delete_after_secs: i64) -> u64 {
        self.current_version += 1;
        let deletion_time = if delete_after_secs > 0 {
            now.saturating_add(delete_after_secs.saturating_mul(1_000_000_000))
        } else {
            0
        };
        self.versions.insert(
            self.current_version,
            VersionRecord {
                created_time: now,
                deletion_time,
                destroyed: false,
                data,
            },
        );
        self.updated_time = now;
        if self.created_time == 0 {
            self.created_time = now;
        }
        self.current_version
    }

    /// Drops the versions beyond `max` (oldest first, as Vault: once
    /// `current - oldest >= max`, everything up to `current - max` goes and
    /// `oldest_version` becomes `current - max + 1`). Returns the data ids
    /// to delete once the record is stored.
    fn trim(&mut self, max: u32) -> Vec<String> {
        let max = u64::from(max.max(1));
        if self.current_version.saturating_sub(self.oldest_version) < max {
            return Vec::new();
        }
        let cutoff = self.current_version - max;
        let kept = self.versions.split_off(&(cutoff + 1));
        let removed = std::mem::replace(&mut self.versions, kept);
        self.oldest_version = cutoff + 1;
        removed
            .into_values()
            .map(|v| v.data)
            .filter(|id| !id.is_empty())
            .collect()
    }

    fn to_proto(&self) -> KeyMetadata {
        KeyMetadata {
            cas_required: self.cas_required,
            created_time: self.created_time,
            current_version: self.current_version,
            custom_metadata: custom_map(&self.custom_metadata),
            delete_version_after: self.delete_version_after,
            max_versions: self.max_versions,
            oldest_version: self.oldest_version,
            updated_time: self.updated_time,
            versions: self
                .versions
                .iter()
                .map(|(n, v)| {
                    (
                        *n,
                        VersionState {
                            created_time: v.created_time,
                            deletion_time: v.deletion_time,
                            destroyed: v.destroyed,
                        },
                    )
                })
                .collect(),
        }
    }
}

fn custom_map(custom: &BTreeMap<String, String>) -> HashMap<String, String> {
    custom.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// How many versions a key keeps: its own setting, else the mount's, else 10.
fn max_versions(config: &ConfigRecord, key: &KeyRecord) -> u32 {
    [key.max_versions, config.max_versions, DEFAULT_MAX_VERSIONS]
        .into_iter()
        .find(|n| *n > 0)
        .unwrap_or(DEFAULT_MAX_VERSIONS)
}

/// Seconds after which a new version counts as deleted (0 = never): the
/// key's setting, else the mount's; the smaller when both are set (Vault:
/// a key cannot outlive its mount's setting).
fn delete_after(config: &ConfigRecord, key: &KeyRecord) -> i64 {
    match (key.delete_version_after, config.delete_version_after) {
        (k, m) if k > 0 && m > 0 => k.min(m),
        (k, _) if k > 0 => k,
        (_, m) if m > 0 => m,
        _ => 0,
    }
}

/// Vault's check-and-set rules: `cas` must be the current version (0 = no
/// version yet); without it, refused if the key or the mount requires it.
fn check_cas(config: &ConfigRecord, key: &KeyRecord, cas: Option<u64>) -> Result<(), KvError> {
    match cas {
        Some(cas) if cas != key.current_version => Err(KvError::CasMismatch),
        Some(_) => Ok(()),
        None if config.cas_required || key.cas_required => Err(KvError::CasRequired),
        None => Ok(()),
    }
}

/// Vault's custom metadata limits: at most 64 entries, keys of 1 to 128
/// bytes, values of at most 512 bytes, all printable. Reports every problem.
fn check_custom_metadata<'a>(
    entries: impl ExactSizeIterator<Item = (&'a String, &'a String)>,
) -> Result<(), KvError> {
    let count = entries.len();
    if count > MAX_CUSTOM_METADATA_KEYS {
        return Err(KvError::CustomMetadata(format!(
            "payload must contain at most {MAX_CUSTOM_METADATA_KEYS} keys, provided {count}"
        )));
    }
    let mut problems = Vec::new();
    for (key, value) in entries {
        if key.is_empty() || key.len() > MAX_CUSTOM_METADATA_KEY_LEN {
            problems.push(format!(
                "length of key {key:?} is {} but must be 0 < len(key) <= {MAX_CUSTOM_METADATA_KEY_LEN}",
                key.len()
            ));
        }
        if value.len() > MAX_CUSTOM_METADATA_VALUE_LEN {
            problems.push(format!(
                "length of value for key {key:?} is {} but must be <= {MAX_CUSTOM_METADATA_VALUE_LEN}",
                value.len()
            ));
        }
        if key.chars().any(char::is_control) {
            problems.push(format!("key {key:?} contains unprintable characters"));
        }
        if value.chars().any(char::is_control) {
            problems.push(format!(
                "value for key {key:?} contains unprintable characters"
            ));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    problems.sort();
    Err(KvError::CustomMetadata(problems.join("; ")))
}

/// What a new version holds.
#[derive(Clone, Copy)]
enum Content<'a> {
    /// This JSON object, as given.
    Data(&'a [u8]),
    /// The current version's data with this merge patch applied.
    Patch(&'a Value),
}

/// A version write in progress: where its data goes, and how far it got
/// (for cleaning up after a failure).
struct Pending {
    /// The id of the new version's data, chosen once per write.
    id: String,
    /// `ver/<path>/<id>`: ours alone.
    data_key: String,
    /// Our data is in storage.
    written: bool,
    /// The metadata write naming our data may have happened (it failed
    /// without saying): keep the data.
    maybe_published: bool,
}

impl KvStore {
    /// Reads version `version` of a key (0 = the current one).
    pub async fn read_version(
        &self,
        mount: &str,
        path: &str,
        version: u64,
    ) -> Result<ReadVersionResponse, KvError> {
        self.ensure_unsealed().await?;
        layout::check_mount(mount)?;
        layout::check_key(path)?;
        let meta_key = layout::meta_key(mount, path);
        let not_found = ReadVersionResponse::default();
        let mut last = None;
        // A live version without data is being destroyed (data goes first):
        // look again; if it stays so, answer as destroyed.
        for _ in 0..3 {
            let Some((record, _)) = self.load_record::<KeyRecord>("metadata", &meta_key).await?
            else {
                return Ok(not_found);
            };
            let n = if version == 0 {
                record.current_version
            } else {
                version
            };
            let Some(v) = record.versions.get(&n) else {
                return Ok(not_found);
            };
            let metadata = v.metadata(n, &record.custom_metadata);
            if !v.is_live(self.clock.now()) {
                return Ok(ReadVersionResponse {
                    found: true,
                    deleted: true,
                    data: Vec::new(),
                    metadata: Some(metadata),
                });
            }
            let data_key = layout::version_key(mount, path, &v.data);
            if let Some(data) = self.barrier.get(&data_key).await? {
                return Ok(ReadVersionResponse {
                    found: true,
                    deleted: false,
                    data: data.to_vec(),
                    metadata: Some(metadata),
                });
            }
            last = Some(metadata);
            tokio::task::yield_now().await;
        }
        tracing::warn!(
            mount,
            version,
            "kv v2 version has no data; answering as destroyed"
        );
        Ok(ReadVersionResponse {
            found: true,
            deleted: true,
            data: Vec::new(),
            metadata: last.map(|m| VersionMetadata {
                destroyed: true,
                ..m
            }),
        })
    }

    /// Writes a new version holding `data` (a JSON object), under Vault's
    /// check-and-set rules, and trims old versions.
    pub async fn write_version(
        &self,
        mount: &str,
        path: &str,
        data: &[u8],
        cas: Option<u64>,
    ) -> Result<VersionMetadata, KvError> {
        self.ensure_unsealed().await?;
        layout::check_mount(mount)?;
        layout::check_key(path)?;
        if object_len(data).is_none() {
            return Err(KvError::NoData);
        }
        self.publish_version(mount, path, Content::Data(data), cas)
            .await
    }

    /// Writes a new version: the current one's data with the JSON merge
    /// `patch` (RFC 7386) applied. The current version must be live.
    pub async fn patch_version(
        &self,
        mount: &str,
        path: &str,
        patch: &[u8],
        cas: Option<u64>,
    ) -> Result<VersionMetadata, KvError> {
        self.ensure_unsealed().await?;
        layout::check_mount(mount)?;
        layout::check_key(path)?;
        let patch: Value = match serde_json::from_slice(patch) {
            Ok(v @ Value::Object(_)) => v,
            _ => return Err(KvError::NoData),
        };
        self.publish_version(mount, path, Content::Patch(&patch), cas)
            .await
    }

    /// Adds a version, cleaning up its data if that fails.
    async fn publish_version(
        &self,
        mount: &str,
        path: &str,
        content: Content<'_>,
        cas: Option<u64>,
    ) -> Result<VersionMetadata, KvError> {
        let id = layout::new_data_id();
        let mut state = Pending {
            data_key: layout::version_key(mount, path, &id),
            id,
            written: false,
            maybe_published: false,
        };
        let result = self
            .publish_loop(mount, path, content, cas, &mut state)
            .await;
        if result.is_err() && state.written && !state.maybe_published {
            if let Err(e) = self.barrier.delete(&state.data_key).await {
                tracing::warn!(error = %e, "could not delete the data of a failed kv v2 write");
            }
        }
        result
    }

    /// The compare-and-swap loop of [`KvStore::publish_version`].
    async fn publish_loop(
        &self,
        mount: &str,
        path: &str,
        content: Content<'_>,
        cas: Option<u64>,
        state: &mut Pending,
    ) -> Result<VersionMetadata, KvError> {
        let meta_key = layout::meta_key(mount, path);
        let mut backoff = Backoff::default();
        let mut missing_base = false;
        loop {
            let config = self.config_record(mount).await?;
            let (mut record, stored) =
                match self.load_record::<KeyRecord>("metadata", &meta_key).await? {
                    Some((record, stored)) => (record, Some(stored)),
                    None => (KeyRecord::default(), None),
                };
            match content {
                Content::Data(data) => {
                    check_cas(&config, &record, cas)?;
                    if !state.written {
                        self.barrier.put(&state.data_key, data).await?;
                        state.written = true;
                    }
                }
                Content::Patch(patch) => {
                    let now = self.clock.now();
                    let current = record
                        .versions
                        .get(&record.current_version)
                        .filter(|v| v.is_live(now))
                        .ok_or(NOT_LIVE)?;
                    check_cas(&config, &record, cas)?;
                    let base_key = layout::version_key(mount, path, &current.data);
                    let Some(base) = self.barrier.get(&base_key).await? else {
                        // Being destroyed (its data goes first): look once more.
                        if missing_base {
                            return Err(NOT_LIVE);
                        }
                        missing_base = true;
                        backoff.wait().await?;
                        continue;
                    };
                    let mut value: Value =
                        serde_json::from_slice(&base).map_err(|_| KvError::Corrupt {
                            what: "version data",
                            path: base_key.clone(),
                            reason: "not JSON".into(),
                        })?;
                    merge_patch(&mut value, patch);
                    let bytes = Zeroizing::new(serde_json::to_vec(&value).map_err(|_| {
                        KvError::Corrupt {
                            what: "version data",
                            path: base_key,
                            reason: "does not serialize".into(),
                        }
                    })?);
                    // The id is ours alone: overwriting an earlier attempt is safe.
                    self.barrier.put(&state.data_key, &bytes).await?;
                    state.written = true;
                }
            }
            let now = self.clock.now();
            let after = delete_after(&config, &record);
            let version = record.add_version(now, state.id.clone(), after);
            let freed = record.trim(max_versions(&config, &record));
            state.maybe_published = true;
            if self
                .store_record(&meta_key, stored.as_deref(), &record)
                .await?
            {
                self.delete_data(mount, path, &freed).await;
                let metadata = record
                    .versions
                    .get(&version)
                    .map(|v| v.metadata(version, &record.custom_metadata))
                    .unwrap_or_default();
                return Ok(metadata);
            }
            state.maybe_published = false;
            backoff.wait().await?;
        }
    }

    /// Deletes the data of versions the metadata no longer names (after the
    /// record is stored). Failures leave unreachable data behind: logged.
    async fn delete_data(&self, mount: &str, path: &str, ids: &[String]) {
        for id in ids {
            if let Err(e) = self
                .barrier
                .delete(&layout::version_key(mount, path, id))
                .await
            {
                tracing::warn!(error = %e, "could not delete purged kv v2 version data");
            }
        }
    }

    /// Soft-deletes the given live versions (none listed: the current one).
    /// Unknown versions, and a missing key, are ignored.
    pub async fn delete_versions(
        &self,
        mount: &str,
        path: &str,
        versions: &[u64],
    ) -> Result<(), KvError> {
        self.mark_versions(mount, path, versions, |v, now| {
            if v.is_live(now) {
                v.deletion_time = now;
                true
            } else {
                false
            }
        })
        .await
    }

    /// Clears the deletion time of the given versions (not of destroyed
    /// ones). Unknown versions, and a missing key, are ignored.
    pub async fn undelete_versions(
        &self,
        mount: &str,
        path: &str,
        versions: &[u64],
    ) -> Result<(), KvError> {
        if versions.is_empty() {
            self.ensure_unsealed().await?;
            return Err(KvError::NoVersions);
        }
        self.mark_versions(mount, path, versions, |v, _| {
            if !v.destroyed && v.deletion_time != 0 {
                v.deletion_time = 0;
                true
            } else {
                false
            }
        })
        .await
    }

    /// Applies `mark` to each listed version (none listed: the current one)
    /// in one compare-and-swap of the key's metadata; writes only if `mark`
    /// changed something. Unknown versions, and a missing key, are ignored.
    async fn mark_versions(
        &self,
        mount: &str,
        path: &str,
        versions: &[u64],
        mark: impl Fn(&mut VersionRecord, i64) -> bool,
    ) -> Result<(), KvError> {
        self.ensure_unsealed().await?;
        layout::check_mount(mount)?;
        layout::check_key(path)?;
        let meta_key = layout::meta_key(mount, path);
        self.update_record("metadata", &meta_key, |current: Option<KeyRecord>| {
            let Some(mut record) = current else {
                return Ok(Update::Keep(()));
            };
            let now = self.clock.now();
            let targets = if versions.is_empty() {
                vec![record.current_version]
            } else {
                versions.to_vec()
            };
            let mut changed = false;
            for n in targets {
                if let Some(v) = record.versions.get_mut(&n) {
                    changed |= mark(v, now);
                }
            }
            Ok(if changed {
                Update::Write(record, ())
            } else {
                Update::Keep(())
            })
        })
        .await
    }

    /// Destroys the given versions: their data is deleted, then they are
    /// marked destroyed. Unknown versions, and a missing key, are ignored.
    pub async fn destroy_versions(
        &self,
        mount: &str,
        path: &str,
        versions: &[u64],
    ) -> Result<(), KvError> {
        self.ensure_unsealed().await?;
        layout::check_mount(mount)?;
        layout::check_key(path)?;
        if versions.is_empty() {
            return Err(KvError::NoVersions);
        }
        let wanted: BTreeSet<u64> = versions.iter().copied().collect();
        let meta_key = layout::meta_key(mount, path);
        let mut backoff = Backoff::default();
        loop {
            let Some((mut record, stored)) =
                self.load_record::<KeyRecord>("metadata", &meta_key).await?
            else {
                return Ok(());
            };
            let mut changed = false;
            for n in &wanted {
                let Some(v) = record.versions.get_mut(n) else {
                    continue;
                };
                if v.destroyed {
                    continue;
                }
                if !v.data.is_empty() {
                    self.barrier
                        .delete(&layout::version_key(mount, path, &v.data))
                        .await?;
                }
                v.destroyed = true;
                v.data.clear();
                changed = true;
            }
            if !changed || self.store_record(&meta_key, Some(&stored), &record).await? {
                return Ok(());
            }
            backoff.wait().await?;
        }
    }

    /// A key's metadata; NotFound when it has none.
    pub async fn read_metadata(&self, mount: &str, path: &str) -> Result<KeyMetadata, KvError> {
        self.ensure_unsealed().await?;
        layout::check_mount(mount)?;
        layout::check_key(path)?;
        let meta_key = layout::meta_key(mount, path);
        match self.load_record::<KeyRecord>("metadata", &meta_key).await? {
            Some((record, _)) => Ok(record.to_proto()),
            None => Err(NO_METADATA),
        }
    }

    /// Changes a key's metadata (creating it unless `patch`): unset fields
    /// keep their value; custom metadata is replaced (`set_custom_metadata`)
    /// or merged (`patch`, removing `remove_custom_metadata`). Lowering
    /// `max_versions` trims the key at once.
    pub async fn write_metadata(&self, req: &WriteMetadataRequest) -> Result<(), KvError> {
        self.ensure_unsealed().await?;
        layout::check_mount(&req.mount)?;
        layout::check_key(&req.path)?;
        check_delete_after(req.delete_version_after)?;
        if req.patch || req.set_custom_metadata {
            check_custom_metadata(req.custom_metadata.iter())?;
        }
        let config = self.config_record(&req.mount).await?;
        let meta_key = layout::meta_key(&req.mount, &req.path);
        let freed = self
            .update_record("metadata", &meta_key, |current: Option<KeyRecord>| {
                let now = self.clock.now();
                let mut record = match current {
                    Some(record) => record,
                    None if req.patch => return Err(NO_METADATA),
                    None => KeyRecord {
                        created_time: now,
                        ..KeyRecord::default()
                    },
                };
                if let Some(v) = req.max_versions {
                    record.max_versions = v;
                }
                if let Some(v) = req.cas_required {
                    record.cas_required = v;
                }
                if let Some(v) = req.delete_version_after {
                    record.delete_version_after = v;
                }
                if req.patch {
                    for (k, v) in &req.custom_metadata {
                        record.custom_metadata.insert(k.clone(), v.clone());
                    }
                    for k in &req.remove_custom_metadata {
                        record.custom_metadata.remove(k);
                    }
                } else if req.set_custom_metadata {
                    record.custom_metadata = req
                        .custom_metadata
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                }
                check_custom_metadata(record.custom_metadata.iter())?;
                record.updated_time = now;
                let freed = record.trim(max_versions(&config, &record));
                Ok(Update::Write(record, freed))
            })
            .await?;
        self.delete_data(&req.mount, &req.path, &freed).await;
        Ok(())
    }

    /// Deletes a key: every version's data, then its metadata. A missing key
    /// is fine.
    pub async fn delete_metadata(&self, mount: &str, path: &str) -> Result<(), KvError> {
        self.ensure_unsealed().await?;
        layout::check_mount(mount)?;
        layout::check_key(path)?;
        let meta_key = layout::meta_key(mount, path);
        let Some((record, _)) = self.load_record::<KeyRecord>("metadata", &meta_key).await? else {
            return Ok(());
        };
        for v in record.versions.values().filter(|v| !v.data.is_empty()) {
            self.barrier
                .delete(&layout::version_key(mount, path, &v.data))
                .await?;
        }
        self.barrier.delete(&meta_key).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::layout::Kind;
    use crate::test_util::{harness, raw_keys, Harness};
    use serde_json::json;

    const M: &str = "mount-1";

    async fn write(
        h: &Harness,
        path: &str,
        data: Value,
        cas: Option<u64>,
    ) -> Result<VersionMetadata, KvError> {
        let bytes = serde_json::to_vec(&data).unwrap();
        h.store.write_version(M, path, &bytes, cas).await
    }

    async fn patch(
        h: &Harness,
        path: &str,
        data: Value,
        cas: Option<u64>,
    ) -> Result<VersionMetadata, KvError> {
        let bytes = serde_json::to_vec(&data).unwrap();
        h.store.patch_version(M, path, &bytes, cas).await
    }

    async fn read(h: &Harness, path: &str, version: u64) -> ReadVersionResponse {
        h.store.read_version(M, path, version).await.unwrap()
    }

    fn data(r: &ReadVersionResponse) -> Value {
        assert!(r.found && !r.deleted, "{r:?}");
        serde_json::from_slice(&r.data).unwrap()
    }

    async fn version_keys(h: &Harness, path: &str) -> usize {
        let prefix = format!("m/{M}/ver/{path}/");
        raw_keys(&h.raw)
            .await
            .iter()
            .filter(|k| k.strip_prefix(&prefix).is_some_and(|id| !id.contains('/')))
            .count()
    }

    fn metadata_req(
        path: &str,
        adjust: impl FnOnce(&mut WriteMetadataRequest),
    ) -> WriteMetadataRequest {
        let mut req = WriteMetadataRequest {
            mount: M.into(),
            path: path.into(),
            ..Default::default()
        };
        adjust(&mut req);
        req
    }

    #[tokio::test]
    async fn version_lifecycle() {
        let h = harness().await;
        let s = &h.store;
        assert!(!s.exists(Kind::KvV2, M, "app/db").await.unwrap());
        let v1 = write(&h, "app/db", json!({"password": "one"}), None)
            .await
            .unwrap();
        assert_eq!((v1.version, v1.deletion_time, v1.destroyed), (1, 0, false));
        assert!(v1.created_time > 0);
        let v2 = write(&h, "app/db", json!({"password": "two"}), None)
            .await
            .unwrap();
        assert_eq!(v2.version, 2);
        assert!(s.exists(Kind::KvV2, M, "app/db").await.unwrap());

        assert_eq!(
            data(&read(&h, "app/db", 0).await),
            json!({"password": "two"})
        );
        assert_eq!(
            data(&read(&h, "app/db", 1).await),
            json!({"password": "one"})
        );
        assert_eq!(read(&h, "app/db", 1).await.metadata.unwrap().version, 1);
        for (path, version) in [("app/db", 3), ("missing", 0), ("missing", 1)] {
            let r = read(&h, path, version).await;
            assert!(!r.found && r.metadata.is_none(), "{path} {version}");
        }

        // Soft delete of the current version (no list), then undelete.
        s.delete_versions(M, "app/db", &[]).await.unwrap();
        let r = read(&h, "app/db", 0).await;
        assert!(r.found && r.deleted && r.data.is_empty());
        let meta = r.metadata.unwrap();
        assert_eq!(meta.version, 2);
        assert!(meta.deletion_time > 0 && !meta.destroyed);
        assert_eq!(
            data(&read(&h, "app/db", 1).await),
            json!({"password": "one"})
        );
        s.undelete_versions(M, "app/db", &[2, 99]).await.unwrap();
        assert_eq!(
            data(&read(&h, "app/db", 0).await),
            json!({"password": "two"})
        );
        assert_eq!(
            read(&h, "app/db", 0).await.metadata.unwrap().deletion_time,
            0
        );

        // Destroy version 1: its data leaves storage for good.
        assert_eq!(version_keys(&h, "app/db").await, 2);
        s.destroy_versions(M, "app/db", &[1, 42]).await.unwrap();
        let r = read(&h, "app/db", 1).await;
        assert!(r.found && r.deleted && r.metadata.as_ref().unwrap().destroyed);
        assert_eq!(version_keys(&h, "app/db").await, 1);
        // Undelete and delete leave a destroyed version alone.
        s.undelete_versions(M, "app/db", &[1]).await.unwrap();
        s.delete_versions(M, "app/db", &[1]).await.unwrap();
        let meta = s.read_metadata(M, "app/db").await.unwrap();
        assert_eq!(meta.current_version, 2);
        assert_eq!(meta.oldest_version, 0);
        assert!(meta.versions[&1].destroyed && meta.versions[&1].deletion_time == 0);
        assert!(!meta.versions[&2].destroyed);
        assert!(meta.created_time > 0 && meta.updated_time >= meta.created_time);

        // Deleting the metadata wipes every version.
        s.delete_metadata(M, "app/db").await.unwrap();
        assert!(matches!(
            s.read_metadata(M, "app/db").await,
            Err(KvError::NotFound(_))
        ));
        assert!(!read(&h, "app/db", 0).await.found);
        assert!(raw_keys(&h.raw).await.is_empty());
        // Writing again starts over at version 1.
        assert_eq!(
            write(&h, "app/db", json!({"a": "b"}), None)
                .await
                .unwrap()
                .version,
            1
        );
    }

    #[tokio::test]
    async fn missing_keys_and_bad_requests() {
        let h = harness().await;
        let s = &h.store;
        // Missing keys: no error, as Vault.
        s.delete_versions(M, "nope", &[1]).await.unwrap();
        s.undelete_versions(M, "nope", &[1]).await.unwrap();
        s.destroy_versions(M, "nope", &[1]).await.unwrap();
        s.delete_metadata(M, "nope").await.unwrap();
        for (input, what) in [
            (&b""[..], "empty"),
            (b"[1]", "array"),
            (b"\"x\"", "string"),
            (b"{", "broken"),
        ] {
            let e = s.write_version(M, "k", input, None).await.unwrap_err();
            assert_eq!(e.to_string(), "no data provided", "{what}");
            let e = s.patch_version(M, "k", input, None).await.unwrap_err();
            assert_eq!(e.to_string(), "no data provided", "{what}");
        }
        // An empty object is a valid version.
        assert_eq!(write(&h, "k", json!({}), None).await.unwrap().version, 1);
        for e in [
            s.undelete_versions(M, "k", &[]).await.unwrap_err(),
            s.destroy_versions(M, "k", &[]).await.unwrap_err(),
        ] {
            assert_eq!(e.to_string(), "no version number provided");
        }
        for (mount, path) in [("", "k"), ("a/b", "k"), (M, ""), (M, "/k"), (M, "a/../k")] {
            assert!(
                matches!(
                    s.read_version(mount, path, 0).await,
                    Err(KvError::Invalid(_))
                ),
                "{mount:?} {path:?}"
            );
            assert!(matches!(
                s.write_version(mount, path, b"{}", None).await,
                Err(KvError::Invalid(_))
            ));
        }
    }

    /// `cas_required` set on the mount, or on the key: the same rules.
    #[tokio::test]
    async fn check_and_set() {
        for via_config in [true, false] {
            let h = harness().await;
            let s = &h.store;
            if via_config {
                s.write_config(M, None, Some(true), None).await.unwrap();
            } else {
                s.write_metadata(&metadata_req("k", |r| r.cas_required = Some(true)))
                    .await
                    .unwrap();
                assert!(s.exists(Kind::KvV2, M, "k").await.unwrap());
            }
            let cases: [(Option<u64>, Result<u64, &str>); 7] = [
                (None, Err("check-and-set parameter required for this call")),
                (
                    Some(1),
                    Err("check-and-set parameter did not match the current version"),
                ),
                (Some(0), Ok(1)),
                (
                    Some(0),
                    Err("check-and-set parameter did not match the current version"),
                ),
                (Some(1), Ok(2)),
                (
                    Some(1),
                    Err("check-and-set parameter did not match the current version"),
                ),
                (Some(2), Ok(3)),
            ];
            for (i, (cas, want)) in cases.into_iter().enumerate() {
                let got = write(&h, "k", json!({"i": i}), cas)
                    .await
                    .map(|m| m.version)
                    .map_err(|e| e.to_string());
                assert_eq!(
                    got,
                    want.map_err(str::to_string),
                    "case {i} (config: {via_config})"
                );
            }
            // Refused writes left no data behind.
            assert_eq!(version_keys(&h, "k").await, 3);
            // Patch follows the same rules.
            let e = patch(&h, "k", json!({"p": 1}), None).await.unwrap_err();
            assert!(matches!(e, KvError::CasRequired));
            let e = patch(&h, "k", json!({"p": 1}), Some(2)).await.unwrap_err();
            assert!(matches!(e, KvError::CasMismatch));
            assert_eq!(
                patch(&h, "k", json!({"p": 1}), Some(3))
                    .await
                    .unwrap()
                    .version,
                4
            );
        }
        // Without cas_required anywhere, cas is still honoured when given.
        let h = harness().await;
        write(&h, "k", json!({"a": 1}), None).await.unwrap();
        assert!(matches!(
            write(&h, "k", json!({"a": 2}), Some(0)).await,
            Err(KvError::CasMismatch)
        ));
        assert_eq!(
            write(&h, "k", json!({"a": 2}), Some(1))
                .await
                .unwrap()
                .version,
            2
        );
    }

    #[tokio::test]
    async fn max_versions_trims_oldest_first() {
        let h = harness().await;
        let s = &h.store;
        s.write_metadata(&metadata_req("k", |r| r.max_versions = Some(3)))
            .await
            .unwrap();
        let mut oldest = Vec::new();
        for i in 1..=5u64 {
            assert_eq!(
                write(&h, "k", json!({"i": i}), None).await.unwrap().version,
                i
            );
            oldest.push(s.read_metadata(M, "k").await.unwrap().oldest_version);
        }
        assert_eq!(oldest, [0, 0, 1, 2, 3]);
        let meta = s.read_metadata(M, "k").await.unwrap();
        let mut kept: Vec<_> = meta.versions.keys().copied().collect();
        kept.sort();
        assert_eq!(kept, [3, 4, 5]);
        assert_eq!(meta.max_versions, 3);
        assert_eq!(version_keys(&h, "k").await, 3);
        for purged in [1, 2] {
            assert!(!read(&h, "k", purged).await.found, "{purged}");
        }
        assert_eq!(data(&read(&h, "k", 3).await), json!({"i": 3}));

        // Lowering max_versions trims at once.
        s.write_metadata(&metadata_req("k", |r| r.max_versions = Some(1)))
            .await
            .unwrap();
        let meta = s.read_metadata(M, "k").await.unwrap();
        assert_eq!(meta.versions.keys().copied().collect::<Vec<_>>(), [5]);
        assert_eq!(meta.oldest_version, 5);
        assert_eq!(version_keys(&h, "k").await, 1);

        // The mount's setting applies to keys without their own.
        s.write_config(M, Some(2), None, None).await.unwrap();
        for i in 0..4 {
            write(&h, "other", json!({"i": i}), None).await.unwrap();
        }
        let meta = s.read_metadata(M, "other").await.unwrap();
        assert_eq!(
            (meta.versions.len(), meta.oldest_version, meta.max_versions),
            (2, 3, 0)
        );
        assert_eq!(s.read_config(M).await.unwrap().max_versions, 2);
    }

    #[tokio::test]
    async fn default_keeps_ten_versions() {
        let h = harness().await;
        for i in 0..12 {
            write(&h, "k", json!({"i": i}), None).await.unwrap();
        }
        let meta = h.store.read_metadata(M, "k").await.unwrap();
        assert_eq!((meta.versions.len(), meta.oldest_version), (10, 3));
    }

    #[tokio::test]
    async fn delete_version_after_expires_versions() {
        let h = harness().await;
        let s = &h.store;
        s.write_config(M, None, None, Some(60)).await.unwrap();
        s.write_metadata(&metadata_req("short", |r| {
            r.delete_version_after = Some(10)
        }))
        .await
        .unwrap();
        s.write_metadata(&metadata_req("long", |r| {
            r.delete_version_after = Some(600)
        }))
        .await
        .unwrap();
        let mut deletion = Vec::new();
        for path in ["short", "long", "mount"] {
            let m = write(&h, path, json!({"s": "x"}), None).await.unwrap();
            deletion.push((m.deletion_time - m.created_time) / 1_000_000_000);
            assert_eq!(data(&read(&h, path, 0).await), json!({"s": "x"}));
        }
        // The key's own setting, but never beyond the mount's.
        assert_eq!(deletion, [10, 60, 60]);
        h.store.clock.advance(Duration::from_secs(11));
        assert!(read(&h, "short", 0).await.deleted);
        assert!(!read(&h, "long", 0).await.deleted);
        h.store.clock.advance(Duration::from_secs(50));
        for path in ["short", "long", "mount"] {
            let r = read(&h, path, 0).await;
            assert!(r.found && r.deleted && r.data.is_empty(), "{path}");
        }
        // Undelete clears the scheduled deletion.
        s.undelete_versions(M, "mount", &[1]).await.unwrap();
        assert_eq!(data(&read(&h, "mount", 0).await), json!({"s": "x"}));
        // Patch needs a live current version.
        assert!(matches!(
            patch(&h, "short", json!({"a": 1}), None).await,
            Err(KvError::NotFound(_))
        ));
    }

    #[tokio::test]
    async fn patch_merges() {
        let h = harness().await;
        assert!(matches!(
            patch(&h, "k", json!({"a": 1}), None).await,
            Err(KvError::NotFound(_))
        ));
        write(
            &h,
            "k",
            json!({"keep": "1", "drop": "2", "nested": {"x": 1, "y": 2}}),
            None,
        )
        .await
        .unwrap();
        let m = patch(
            &h,
            "k",
            json!({"drop": null, "new": "3", "nested": {"y": null, "z": 3}}),
            None,
        )
        .await
        .unwrap();
        assert_eq!(m.version, 2);
        assert_eq!(
            data(&read(&h, "k", 0).await),
            json!({"keep": "1", "new": "3", "nested": {"x": 1, "z": 3}})
        );
        // Version 1 is untouched.
        assert_eq!(data(&read(&h, "k", 1).await)["drop"], json!("2"));
        // A deleted or destroyed current version cannot be patched.
        h.store.delete_versions(M, "k", &[]).await.unwrap();
        assert!(matches!(
            patch(&h, "k", json!({"a": 1}), None).await,
            Err(KvError::NotFound(_))
        ));
        h.store.undelete_versions(M, "k", &[2]).await.unwrap();
        h.store.destroy_versions(M, "k", &[2]).await.unwrap();
        assert!(matches!(
            patch(&h, "k", json!({"a": 1}), None).await,
            Err(KvError::NotFound(_))
        ));
        assert_eq!(version_keys(&h, "k").await, 1);
    }

    #[tokio::test]
    async fn custom_metadata() {
        let h = harness().await;
        let s = &h.store;
        let many: HashMap<String, String> = (0..65)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        let bad: [(HashMap<String, String>, &str); 5] = [
            (many, "at most 64 keys, provided 65"),
            (
                [("k".repeat(129), "v".into())].into(),
                "must be 0 < len(key) <= 128",
            ),
            (
                [(String::new(), "v".into())].into(),
                "must be 0 < len(key) <= 128",
            ),
            ([("k".into(), "v".repeat(513))].into(), "must be <= 512"),
            ([("k".into(), "a\nb".into())].into(), "unprintable"),
        ];
        for (custom, message) in bad {
            for patch in [false, true] {
                let req = metadata_req("k", |r| {
                    r.custom_metadata = custom.clone();
                    r.set_custom_metadata = !patch;
                    r.patch = patch;
                });
                let e = s.write_metadata(&req).await.unwrap_err();
                assert!(matches!(e, KvError::CustomMetadata(_)), "{e}");
                assert!(e.to_string().contains(message), "{e}");
            }
        }
        // Exactly at the limits is fine.
        let full: HashMap<String, String> = (0..64)
            .map(|i| (format!("{i:0>128}"), "v".repeat(512)))
            .collect();
        s.write_metadata(&metadata_req("full", |r| {
            r.custom_metadata = full;
            r.set_custom_metadata = true;
        }))
        .await
        .unwrap();

        // POST creates, and replaces the map; unset fields keep their value.
        s.write_metadata(&metadata_req("k", |r| {
            r.custom_metadata = [("a".into(), "1".into()), ("b".into(), "2".into())].into();
            r.set_custom_metadata = true;
            r.max_versions = Some(7);
        }))
        .await
        .unwrap();
        s.write_metadata(&metadata_req("k", |r| r.cas_required = Some(true)))
            .await
            .unwrap();
        let meta = s.read_metadata(M, "k").await.unwrap();
        assert_eq!((meta.max_versions, meta.cas_required), (7, true));
        assert_eq!(meta.custom_metadata.len(), 2);
        assert_eq!(meta.current_version, 0);
        // No version yet: reads find nothing.
        assert!(!read(&h, "k", 0).await.found);

        // PATCH merges and removes.
        s.write_metadata(&metadata_req("k", |r| {
            r.custom_metadata = [("c".into(), "3".into()), ("a".into(), "9".into())].into();
            r.remove_custom_metadata = vec!["b".into(), "absent".into()];
            r.patch = true;
        }))
        .await
        .unwrap();
        let meta = s.read_metadata(M, "k").await.unwrap();
        let mut custom: Vec<_> = meta.custom_metadata.into_iter().collect();
        custom.sort();
        assert_eq!(
            custom,
            [("a".to_string(), "9".to_string()), ("c".into(), "3".into())]
        );
        // A write carries the key's custom metadata.
        let m = write(&h, "k", json!({"x": 1}), Some(0)).await.unwrap();
        assert_eq!(m.custom_metadata.get("c").map(String::as_str), Some("3"));
        assert_eq!(
            read(&h, "k", 1)
                .await
                .metadata
                .unwrap()
                .custom_metadata
                .len(),
            2
        );
        // A POST without custom metadata keeps it.
        s.write_metadata(&metadata_req("k", |r| r.max_versions = Some(8)))
            .await
            .unwrap();
        assert_eq!(
            s.read_metadata(M, "k").await.unwrap().custom_metadata.len(),
            2
        );

        // PATCH needs the key to exist.
        let e = s
            .write_metadata(&metadata_req("missing", |r| r.patch = true))
            .await
            .unwrap_err();
        assert!(matches!(e, KvError::NotFound(_)));
        assert!(matches!(
            s.read_metadata(M, "missing").await,
            Err(KvError::NotFound(_))
        ));
        assert!(matches!(
            s.write_metadata(&metadata_req("k", |r| r.delete_version_after = Some(-5)))
                .await,
            Err(KvError::Invalid(_))
        ));
    }

    #[tokio::test]
    async fn list_shows_keys_and_folders() {
        let h = harness().await;
        for path in ["a", "dir/b", "dir/sub/c", "dir/sub/d"] {
            write(&h, path, json!({"x": 1}), None).await.unwrap();
        }
        let cases = [
            ("", vec!["a", "dir/"]),
            ("dir/", vec!["b", "sub/"]),
            ("dir/sub", vec!["c", "d"]),
            ("none/", vec![]),
        ];
        for (folder, want) in cases {
            assert_eq!(
                h.store.list(Kind::KvV2, M, folder).await.unwrap(),
                want,
                "{folder:?}"
            );
        }
        // Version data and configuration never show up as keys.
        h.store.write_config(M, Some(4), None, None).await.unwrap();
        assert_eq!(
            h.store.list(Kind::KvV2, M, "").await.unwrap(),
            ["a", "dir/"]
        );
        // A deleted key's metadata leaves the list.
        h.store.delete_metadata(M, "a").await.unwrap();
        assert_eq!(h.store.list(Kind::KvV2, M, "").await.unwrap(), ["dir/"]);
    }

    #[tokio::test]
    async fn keys_that_share_a_prefix_stay_apart() {
        let h = harness().await;
        write(&h, "a", json!({"v": "a"}), None).await.unwrap();
        write(&h, "a/1", json!({"v": "a/1"}), None).await.unwrap();
        h.store.delete_metadata(M, "a").await.unwrap();
        assert_eq!(data(&read(&h, "a/1", 1).await), json!({"v": "a/1"}));
        assert!(!read(&h, "a", 1).await.found);
    }

    #[tokio::test]
    async fn a_live_version_without_data_reads_as_destroyed() {
        let h = harness().await;
        write(&h, "k", json!({"x": 1}), None).await.unwrap();
        let prefix = format!("m/{M}/ver/k/");
        for key in raw_keys(&h.raw).await {
            if key.starts_with(&prefix) {
                h.raw.delete(&key).await.unwrap();
            }
        }
        let r = read(&h, "k", 0).await;
        assert!(r.found && r.deleted && r.metadata.unwrap().destroyed);
    }

    /// 50 writers with the same `cas`, on a multi-threaded runtime: exactly
    /// one wins each round.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_cas_writers_one_winner() {
        let h = harness().await;
        for cas in 0..3u64 {
            let tasks: Vec<_> = (0..50)
                .map(|i| {
                    let store = h.store.clone();
                    tokio::spawn(async move {
                        let body = serde_json::to_vec(&json!({"writer": i})).unwrap();
                        store.write_version(M, "race", &body, Some(cas)).await
                    })
                })
                .collect();
            let mut wins = Vec::new();
            for task in tasks {
                match task.await.unwrap() {
                    Ok(m) => wins.push(m.version),
                    Err(KvError::CasMismatch) => {}
                    Err(e) => panic!("unexpected error: {e}"),
                }
            }
            assert_eq!(wins, [cas + 1], "round {cas}");
        }
        let meta = h.store.read_metadata(M, "race").await.unwrap();
        assert_eq!(meta.current_version, 3);
        // The losers' data is gone again.
        assert_eq!(version_keys(&h, "race").await, 3);
    }

    /// Writers without cas never lose or duplicate a version, and each
    /// version holds exactly what its writer wrote.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers_lose_nothing() {
        let h = harness().await;
        const N: u64 = 50;
        h.store
            .write_config(M, Some(100), None, None)
            .await
            .unwrap();
        let tasks: Vec<_> = (0..N)
            .map(|i| {
                let store = h.store.clone();
                tokio::spawn(async move {
                    let body = serde_json::to_vec(&json!({"writer": i})).unwrap();
                    let m = store.write_version(M, "busy", &body, None).await.unwrap();
                    (m.version, i)
                })
            })
            .collect();
        let mut versions = BTreeMap::new();
        for task in tasks {
            let (version, writer) = task.await.unwrap();
            assert!(
                versions.insert(version, writer).is_none(),
                "version {version} twice"
            );
        }
        assert_eq!(
            versions.keys().copied().collect::<Vec<_>>(),
            (1..=N).collect::<Vec<_>>()
        );
        for (version, writer) in versions {
            assert_eq!(
                data(&read(&h, "busy", version).await),
                json!({"writer": writer})
            );
        }
        let meta = h.store.read_metadata(M, "busy").await.unwrap();
        assert_eq!((meta.current_version, meta.versions.len()), (N, N as usize));
        assert_eq!(version_keys(&h, "busy").await, N as usize);
    }

    /// Concurrent patches each see the previous one: none is lost.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_patches_lose_nothing() {
        let h = harness().await;
        write(&h, "p", json!({}), None).await.unwrap();
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let store = h.store.clone();
                tokio::spawn(async move {
                    let body = serde_json::to_vec(&json!({format!("f{i}"): i})).unwrap();
                    store.patch_version(M, "p", &body, None).await.unwrap()
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let current = data(&read(&h, "p", 0).await);
        assert_eq!(current.as_object().unwrap().len(), 20);
        assert_eq!(read(&h, "p", 0).await.metadata.unwrap().version, 21);
    }

    #[tokio::test]
    async fn sealed_refuses_everything() {
        let h = harness().await;
        let s = &h.store;
        write(&h, "k", json!({"x": 1}), None).await.unwrap();
        s.keyring().clear();
        let req = metadata_req("k", |_| {});
        let results: Vec<Result<(), KvError>> = vec![
            s.read_version(M, "k", 0).await.map(drop),
            s.write_version(M, "k", b"{}", None).await.map(drop),
            s.patch_version(M, "k", b"{}", None).await.map(drop),
            s.delete_versions(M, "k", &[]).await,
            s.undelete_versions(M, "k", &[1]).await,
            s.destroy_versions(M, "k", &[1]).await,
            s.read_metadata(M, "k").await.map(drop),
            s.write_metadata(&req).await,
            s.delete_metadata(M, "k").await,
            s.read_config(M).await.map(drop),
            s.write_config(M, None, None, None).await,
            s.drop_mount(M).await.map(drop),
            s.purge_cubbyhole("acc").await.map(drop),
            s.exists(Kind::KvV2, M, "k").await.map(drop),
            s.list(Kind::KvV2, M, "").await.map(drop),
            s.get(Kind::KvV1, M, "k").await.map(drop),
            s.put(Kind::KvV1, M, "k", b"{\"a\":1}").await,
            s.delete(Kind::KvV1, M, "k").await,
            // Refused before the request is even looked at.
            s.read_version("", "", 0).await.map(drop),
            s.exists(Kind::KvV1, M, "").await.map(drop),
        ];
        for (i, r) in results.into_iter().enumerate() {
            let e = r.unwrap_err();
            assert!(e.is_sealed(), "call {i}: {e}");
            let status = tonic::Status::from(e);
            assert_eq!(
                (status.code(), status.message()),
                (tonic::Code::Unavailable, "Vault is sealed"),
                "call {i}"
            );
        }
        h.unseal();
        assert_eq!(data(&read(&h, "k", 0).await), json!({"x": 1}));
    }

    #[tokio::test]
    async fn no_plaintext_at_rest() {
        let h = harness().await;
        let s = &h.store;
        let secret = "hunter2-Sup3rSecretValue";
        s.put(
            Kind::KvV1,
            M,
            "v1",
            format!(r#"{{"pw":"{secret}"}}"#).as_bytes(),
        )
        .await
        .unwrap();
        s.put(
            Kind::Cubbyhole,
            "cubbyhole",
            "acc/c",
            format!(r#"{{"pw":"{secret}"}}"#).as_bytes(),
        )
        .await
        .unwrap();
        write(&h, "v2", json!({"pw": secret}), None).await.unwrap();
        patch(&h, "v2", json!({"other": secret}), None)
            .await
            .unwrap();
        s.write_metadata(&metadata_req("v2", |r| {
            r.custom_metadata = [("note".into(), secret.into())].into();
            r.set_custom_metadata = true;
        }))
        .await
        .unwrap();
        let keys = raw_keys(&h.raw).await;
        assert_eq!(keys.len(), 5, "{keys:?}");
        for key in keys {
            assert!(!key.contains(secret));
            let raw = h.raw.get(&key).await.unwrap().unwrap();
            assert!(
                !raw.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{key} holds the secret in plaintext"
            );
        }
    }
}
