//! The transit store: every transit mount's keys through the barrier, and
//! the changes to them.
//!
//! ```text
//! m/<mount>/key/<name>       KeyRecord (policy + every live version's material)
//! m/<mount>/config/cache     CacheRecord
//! ```
//!
//! Creation is create-only (of racing creators one wins, the others get
//! its key); every change (config, rotate, trim, backup stamp) is a
//! compare-and-swap of the whole record, so replicas never lose or
//! duplicate a version.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bulwark_proto::transit::v1 as pb;
use bulwark_shared::barrier::Barrier;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::TransitError;
use crate::keys::{self, KeyOptions, KeyRecord, KeyType, KeyVersion, Stamp};

/// How many times a compare-and-swap is tried against concurrent writers.
const CAS_ATTEMPTS: u32 = 50;
/// The longest mount id accepted, in bytes.
const MAX_MOUNT_LEN: usize = 256;
/// The smallest non-zero cache size Vault accepts.
const MIN_CACHE_SIZE: u32 = 10;

/// `cache-config`, kept so clients read back what they wrote (keys are
/// read through the barrier on every use; nothing is cached).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct CacheRecord {
    pub size: u32,
}

/// Refuses an empty mount id, or one holding `/` or a NUL byte.
pub(crate) fn check_mount(mount: &str) -> Result<(), TransitError> {
    if mount.is_empty() {
        return Err(TransitError::invalid("missing mount id"));
    }
    if mount.len() > MAX_MOUNT_LEN || mount.contains(['/', '\0']) {
        return Err(TransitError::invalid("invalid mount id"));
    }
    Ok(())
}

fn key_path(mount: &str, name: &str) -> Result<String, TransitError> {
    check_mount(mount)?;
    keys::check_name(name)?;
    Ok(format!("m/{mount}/key/{name}"))
}

pub(crate) fn not_found() -> TransitError {
    TransitError::invalid("encryption key not found")
}

fn encode(record: &KeyRecord) -> Result<Zeroizing<Vec<u8>>, TransitError> {
    serde_json::to_vec(record)
        .map(Zeroizing::new)
        .map_err(|_| TransitError::Crypto("key record encoding".into()))
}

fn decode(bytes: &[u8], path: &str) -> Result<KeyRecord, TransitError> {
    serde_json::from_slice(bytes).map_err(|_| TransitError::Corrupt {
        what: "key",
        path: path.to_string(),
    })
}

/// New key material, RSA generation on the blocking pool.
pub(crate) async fn generate_off_thread(
    kt: KeyType,
    key_size: u32,
    now: i64,
) -> Result<KeyVersion, TransitError> {
    if kt.rsa_bits().is_none() {
        return keys::generate(kt, key_size, now);
    }
    let span = tracing::info_span!("crypto.keygen", key_type = kt.as_str());
    tokio::task::spawn_blocking(move || span.in_scope(|| keys::generate(kt, key_size, now)))
        .await
        .map_err(|e| TransitError::Crypto(e.to_string()))?
}

/// The transit data of every mount.
pub struct TransitStore {
    barrier: Barrier,
}

impl TransitStore {
    /// A store over `barrier` (the `transit` namespace).
    pub fn new(barrier: Barrier) -> Self {
        TransitStore { barrier }
    }

    /// Refuses with "Vault is sealed" while this service holds no data key.
    pub async fn ensure_unsealed(&self) -> Result<(), TransitError> {
        self.barrier.keyring().ensure_active().await?;
        Ok(())
    }

    /// A key, if it exists.
    pub async fn load(&self, mount: &str, name: &str) -> Result<Option<KeyRecord>, TransitError> {
        let path = key_path(mount, name)?;
        match self.barrier.get(&path).await? {
            Some(bytes) => Ok(Some(decode(&bytes, &path)?)),
            None => Ok(None),
        }
    }

    /// A key that must exist (Vault's 400 "encryption key not found").
    pub async fn require(&self, mount: &str, name: &str) -> Result<KeyRecord, TransitError> {
        self.load(mount, name).await?.ok_or_else(not_found)
    }

    /// Creates a key unless one of that name exists: the key, and whether
    /// this call created it.
    pub async fn create(
        &self,
        mount: &str,
        name: &str,
        kt: KeyType,
        opts: &KeyOptions,
    ) -> Result<(KeyRecord, bool), TransitError> {
        let path = key_path(mount, name)?;
        opts.check(kt)?;
        if let Some(existing) = self.load(mount, name).await? {
            return Ok((existing, false));
        }
        let first = generate_off_thread(kt, opts.key_size, keys::now()).await?;
        let record = KeyRecord::new(name, kt, opts, first);
        if self.barrier.create(&path, &encode(&record)?).await? {
            return Ok((record, true));
        }
        // Another creator won: theirs is the key.
        Ok((self.require(mount, name).await?, false))
    }

    /// Applies `change` to a key with compare-and-swap, retrying on
    /// concurrent writes; answers the stored result.
    pub async fn update<F>(
        &self,
        mount: &str,
        name: &str,
        mut change: F,
    ) -> Result<KeyRecord, TransitError>
    where
        F: FnMut(&mut KeyRecord) -> Result<(), TransitError>,
    {
        let path = key_path(mount, name)?;
        for _ in 0..CAS_ATTEMPTS {
            let Some((bytes, sealed)) = self.barrier.get_versioned(&path).await? else {
                return Err(not_found());
            };
            let mut record = decode(&bytes, &path)?;
            change(&mut record)?;
            if self
                .barrier
                .replace(&path, &sealed, &encode(&record)?)
                .await?
            {
                return Ok(record);
            }
        }
        Err(TransitError::Contention)
    }

    /// Adds a new latest version.
    pub async fn rotate(&self, mount: &str, name: &str) -> Result<KeyRecord, TransitError> {
        let current = self.require(mount, name).await?;
        let (kt, size) = (current.key_type, current.key_size);
        drop(current);
        let mut next = Some(generate_off_thread(kt, size, keys::now()).await?);
        self.update(mount, name, |r| {
            let v = match next.take() {
                Some(v) => v,
                // Lost a race: fresh material for the retry.
                None => keys::generate(kt, size, keys::now())?,
            };
            r.rotate(v);
            Ok(())
        })
        .await
    }

    /// Deletes versions below `min_available` for good.
    pub async fn trim(
        &self,
        mount: &str,
        name: &str,
        min_available: u32,
    ) -> Result<KeyRecord, TransitError> {
        self.update(mount, name, |r| {
            if min_available == 0 {
                return Err(TransitError::invalid(
                    "missing or invalid min_available_version",
                ));
            }
            if r.min_encryption_version == 0 {
                return Err(TransitError::invalid(
                    "cannot trim while min_encryption_version is 0: set it first",
                ));
            }
            if min_available > r.min_encryption_version {
                return Err(TransitError::invalid(
                    "cannot set min available version higher than min encryption version",
                ));
            }
            if min_available > r.min_decryption_version {
                return Err(TransitError::invalid(
                    "cannot set min available version higher than min decryption version",
                ));
            }
            if min_available < r.min_available_version {
                return Err(TransitError::invalid(
                    "cannot set min available version lower than the current one",
                ));
            }
            r.min_available_version = min_available;
            r.versions.retain(|v, _| *v >= min_available);
            Ok(())
        })
        .await
    }

    /// `keys/:name/config`: only the fields given change. Answers the key
    /// and Vault's warnings.
    pub async fn configure(
        &self,
        mount: &str,
        name: &str,
        c: &pb::ConfigureKeyRequest,
    ) -> Result<(KeyRecord, Vec<String>), TransitError> {
        if let Some(p) = c.auto_rotate_period {
            keys::check_rotate_period(p)?;
        }
        let mut warnings = Vec::new();
        let record = self
            .update(mount, name, |r| {
                warnings.clear();
                if let Some(mut v) = c.min_decryption_version {
                    if v == 0 {
                        v = 1;
                        warnings.push(
                            "since Vault 0.3, transit key numbering starts at 1; forcing minimum to 1"
                                .to_string(),
                        );
                    }
                    if v > r.latest_version {
                        return Err(TransitError::invalid(format!(
                            "cannot set min decryption version of {v}, latest key version is {}",
                            r.latest_version
                        )));
                    }
                    if v < r.min_available_version {
                        return Err(TransitError::invalid(
                            "min decryption version should not be less than min available version",
                        ));
                    }
                    r.min_decryption_version = v;
                }
                if let Some(v) = c.min_encryption_version {
                    if v > r.latest_version {
                        return Err(TransitError::invalid(format!(
                            "cannot set min encryption version of {v}, latest key version is {}",
                            r.latest_version
                        )));
                    }
                    r.min_encryption_version = v;
                }
                if r.min_encryption_version > 0
                    && r.min_encryption_version < r.min_decryption_version
                {
                    return Err(TransitError::invalid(
                        "min encryption version should not be less than min decryption version",
                    ));
                }
                if let Some(d) = c.deletion_allowed {
                    r.deletion_allowed = d;
                }
                if let Some(e) = c.exportable {
                    if r.exportable && !e {
                        return Err(TransitError::invalid(
                            "exportable key cannot be made non-exportable",
                        ));
                    }
                    r.exportable = e;
                }
                if let Some(b) = c.allow_plaintext_backup {
                    if r.allow_plaintext_backup && !b {
                        return Err(TransitError::invalid(
                            "plaintext backups cannot be disabled once allowed",
                        ));
                    }
                    r.allow_plaintext_backup = b;
                }
                if let Some(p) = c.auto_rotate_period {
                    r.auto_rotate_period = p;
                }
                Ok(())
            })
            .await?;
        Ok((record, warnings))
    }

    /// Names of a mount's keys.
    pub async fn list(&self, mount: &str) -> Result<Vec<String>, TransitError> {
        check_mount(mount)?;
        Ok(self.barrier.list(&format!("m/{mount}/key/")).await?)
    }

    /// Deletes a key; only once its `deletion_allowed` is set.
    pub async fn delete(&self, mount: &str, name: &str) -> Result<(), TransitError> {
        let path = key_path(mount, name)?;
        let Some(record) = self.load(mount, name).await? else {
            return Err(TransitError::invalid("could not delete key; not found"));
        };
        if !record.deletion_allowed {
            return Err(TransitError::invalid(
                "deletion is not allowed for this key",
            ));
        }
        Ok(self.barrier.delete(&path).await?)
    }

    /// A plaintext backup (base64 of the key's record, stamped with the
    /// backup time), for keys that are exportable and allow it.
    pub async fn backup(&self, mount: &str, name: &str) -> Result<Zeroizing<String>, TransitError> {
        let record = self
            .update(mount, name, |r| {
                if !r.exportable || !r.allow_plaintext_backup {
                    return Err(TransitError::invalid(
                        "plaintext backup is disallowed on this key: it must be exportable and allow_plaintext_backup",
                    ));
                }
                r.backup_info = Some(Stamp {
                    time: keys::rfc3339(keys::now()),
                    version: r.latest_version,
                });
                Ok(())
            })
            .await?;
        Ok(Zeroizing::new(STANDARD.encode(encode(&record)?.as_slice())))
    }

    /// Restores a backup as `name` (`""`: the name it was backed up
    /// under); refuses an existing key unless `force`.
    pub async fn restore(
        &self,
        mount: &str,
        name: &str,
        backup: &str,
        force: bool,
    ) -> Result<KeyRecord, TransitError> {
        let bytes = Zeroizing::new(
            STANDARD
                .decode(backup.trim())
                .map_err(|_| TransitError::invalid("invalid backup: not base64"))?,
        );
        let mut record: KeyRecord = serde_json::from_slice(&bytes)
            .map_err(|_| TransitError::invalid("invalid backup: not a key backup"))?;
        if !name.is_empty() {
            record.name = name.to_string();
        }
        let path = key_path(mount, &record.name)?;
        record.validate()?;
        record.restore_info = Some(Stamp {
            time: keys::rfc3339(keys::now()),
            version: record.latest_version,
        });
        let encoded = encode(&record)?;
        if force {
            self.barrier.put(&path, &encoded).await?;
        } else if !self.barrier.create(&path, &encoded).await? {
            return Err(TransitError::invalid(format!(
                "key {:?} already exists; delete it first or restore with force",
                record.name
            )));
        }
        Ok(record)
    }

    pub async fn read_cache_config(&self, mount: &str) -> Result<CacheRecord, TransitError> {
        check_mount(mount)?;
        let path = format!("m/{mount}/config/cache");
        match self.barrier.get(&path).await? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|_| TransitError::Corrupt {
                what: "cache config",
                path,
            }),
            None => Ok(CacheRecord::default()),
        }
    }

    pub async fn write_cache_config(
        &self,
        mount: &str,
        size: u32,
    ) -> Result<CacheRecord, TransitError> {
        check_mount(mount)?;
        if size != 0 && size < MIN_CACHE_SIZE {
            return Err(TransitError::invalid(format!(
                "size must be 0 or a value greater or equal to {MIN_CACHE_SIZE}"
            )));
        }
        let record = CacheRecord { size };
        self.barrier
            .put_json(&format!("m/{mount}/config/cache"), &record)
            .await?;
        Ok(record)
    }

    /// Deletes every record of a mount.
    pub async fn drop_mount(&self, mount: &str) -> Result<(), TransitError> {
        check_mount(mount)?;
        let mut folders = vec![format!("m/{mount}/")];
        while let Some(folder) = folders.pop() {
            for entry in self.barrier.list(&folder).await? {
                let key = format!("{folder}{entry}");
                if entry.ends_with('/') {
                    folders.push(key);
                } else {
                    self.barrier.delete(&key).await?;
                }
            }
        }
        Ok(())
    }

    /// Rotates every key whose `auto_rotate_period` has passed since its
    /// latest version was made; answers how many were rotated. A key
    /// rotated meanwhile by another replica is left alone.
    pub async fn rotate_due(&self, now: i64) -> Result<u32, TransitError> {
        let mut rotated = 0;
        for mount in self.barrier.list("m/").await? {
            let Some(mount) = mount.strip_suffix('/') else {
                continue;
            };
            for name in self.barrier.list(&format!("m/{mount}/key/")).await? {
                let Some(record) = self.load(mount, &name).await? else {
                    continue;
                };
                if !record.rotation_due(now) {
                    continue;
                }
                let (kt, size) = (record.key_type, record.key_size);
                drop(record);
                let mut next = Some(generate_off_thread(kt, size, now).await?);
                let mut did = false;
                self.update(mount, &name, |r| {
                    did = false;
                    if !r.rotation_due(now) {
                        return Ok(());
                    }
                    let v = match next.take() {
                        Some(v) => v,
                        None => keys::generate(kt, size, now)?,
                    };
                    r.rotate(v);
                    did = true;
                    Ok(())
                })
                .await?;
                if did {
                    tracing::info!(mount, key = %name, "transit key rotated automatically");
                    rotated += 1;
                }
            }
        }
        Ok(rotated)
    }
}
