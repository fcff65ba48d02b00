//! The audit broker: the table of enabled devices, their salts and writers,
//! and the fail-closed fan-out of every entry.
//!
//! Device configurations live behind the barrier at `device/<path>` (the
//! path with `%` and `/` escaped, so every device is one flat key): type,
//! description, options, `local` and the device's random 32-byte salt, made
//! at enable (a re-enabled path gets a new one). The table is loaded on the
//! first call after the service (re)starts or unseals, and every device's
//! writer opens its sink right away; a device that cannot be opened counts
//! as failed until a write succeeds. [`AuditBroker::unload`] (on seal and on
//! shutdown) writes out what is queued, closes every device and forgets the
//! salts.
//!
//! Replicas of this service on one PostgreSQL write the same devices: an
//! enable or disable is announced on the notice bus ([`DEVICES_TOPIC`]), and
//! every other replica reconciles its table with storage (opening what was
//! enabled, closing what was disabled), also every [`RECONCILE_EVERY`] in
//! case a notice was lost.
//!
//! Entries are never logged: they hold secrets in the clear until hashed.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use bulwark_shared::barrier::Barrier;
use bulwark_shared::bus::{Bus, Notice};
use bulwark_shared::keyring::Keyring;
use futures::future::join_all;
use serde::{Deserialize, Serialize};

use zeroize::{Zeroize, Zeroizing};

use crate::entry::{NonHmacKeys, Salt};
use crate::error::AuditError;
use crate::options::{self, FormatOptions};
use crate::sink::Sink;
use crate::sparse;
use crate::writer::Writer;

#[cfg(test)]
mod tests;

/// Where device configurations are stored.
const DEVICE_PREFIX: &str = "device/";

/// The bus topic of device changes (the payload is the device path).
pub const DEVICES_TOPIC: &str = "audit_devices";

/// How often a replica reconciles its table with storage unprompted.
pub const RECONCILE_EVERY: std::time::Duration = std::time::Duration::from_secs(30);

/// A device as enabled and listed (its salt is never shown).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceConfig {
    /// With its trailing slash: `"file/"`.
    pub path: String,
    /// `"file"`, `"socket"` or `"syslog"`.
    pub kind: String,
    pub description: String,
    pub options: BTreeMap<String, String>,
    pub local: bool,
}

/// A device configuration as stored.
#[derive(Serialize, Deserialize)]
struct DeviceRecord {
    path: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    options: BTreeMap<String, String>,
    #[serde(default)]
    local: bool,
    /// Hex.
    salt: String,
}

impl Drop for DeviceRecord {
    fn drop(&mut self) {
        self.salt.zeroize();
    }
}

/// One enabled device.
struct Device {
    config: DeviceConfig,
    salt: Salt,
    format: FormatOptions,
    writer: Writer,
}

impl Device {
    /// Starts a stored device. Options that no longer validate (or a bad
    /// salt) make a device that fails every write, so that it counts as
    /// failed rather than vanishing.
    fn restore(config: DeviceConfig, salt: Option<Salt>) -> Device {
        let (sink, format) = match (options::parse(&config.kind, &config.options), &salt) {
            (Ok(spec), Some(_)) => (Sink::new(&spec.sink), spec.format),
            (Err(e), _) => (
                Sink::Broken(format!("stored options are invalid: {e}")),
                FormatOptions::default(),
            ),
            (Ok(_), None) => (
                Sink::Broken("stored configuration is unreadable".into()),
                FormatOptions::default(),
            ),
        };
        let writer = Writer::spawn(config.path.clone(), sink, true);
        Device {
            config,
            salt: salt.unwrap_or_else(Salt::generate),
            format,
            writer,
        }
    }

    /// This device's line for `entry`.
    fn line(&self, entry: &sparse::Entry<'_>, non_hmac: NonHmacKeys<'_>) -> Vec<u8> {
        entry.line(&self.salt, &self.format, non_hmac)
    }
}

/// Entries recorded together (all or none), with their mount's non-HMAC
/// keys.
pub struct Group<'a> {
    pub entries: Vec<&'a [u8]>,
    pub non_hmac: NonHmacKeys<'a>,
}

#[derive(Default)]
struct Table {
    /// Whether `devices` reflects storage (false after start and seal).
    loaded: bool,
    devices: BTreeMap<String, Arc<Device>>,
}

/// The audit service's core: devices, salts, writers.
pub struct AuditBroker {
    barrier: Barrier,
    table: RwLock<Table>,
    /// Serialises loading, enabling, disabling and unloading.
    admin: tokio::sync::Mutex<()>,
    /// The number of configured devices; `None` while not loaded.
    count: tokio::sync::watch::Sender<Option<u32>>,
    /// Announces changes to the other replicas.
    bus: Option<Bus>,
}

impl AuditBroker {
    /// A broker over `barrier` (the `audit` namespace). Nothing is loaded
    /// until the first call.
    pub fn new(barrier: Barrier) -> Self {
        AuditBroker {
            barrier,
            table: RwLock::default(),
            admin: tokio::sync::Mutex::new(()),
            count: tokio::sync::watch::channel(None).0,
            bus: None,
        }
    }

    /// Announces this replica's changes on `bus` (follow the others' with
    /// [`AuditBroker::follow_replicas`]).
    pub fn with_bus(mut self, bus: Bus) -> Self {
        self.bus = Some(bus);
        self
    }

    async fn announce(&self, path: &str) {
        if let Some(bus) = &self.bus {
            if let Err(e) = bus.publish(DEVICES_TOPIC, path).await {
                tracing::warn!(error = %e, "could not tell other audit replicas of a device change");
            }
        }
    }

    /// Applies the other replicas' device changes until `stopped`.
    pub async fn follow_replicas(
        self: std::sync::Arc<Self>,
        mut stopped: tokio::sync::watch::Receiver<bool>,
    ) {
        let Some(bus) = self.bus.clone() else {
            return;
        };
        let mut notices = bus.subscribe(DEVICES_TOPIC);
        let mut tick = tokio::time::interval(RECONCILE_EVERY);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = stopped.wait_for(|s| *s) => return,
                n = notices.recv() => match n {
                    Some(Notice::Message(_) | Notice::Resync) => {}
                    None => return,
                },
                _ = tick.tick() => {}
            }
            if let Err(e) = self.reconcile().await {
                if !e.is_sealed() {
                    tracing::warn!(error = %e, "could not reconcile the audit devices");
                }
            }
        }
    }

    /// Brings a loaded table in line with storage: devices enabled
    /// elsewhere are opened, devices disabled elsewhere are flushed and
    /// closed, a path re-enabled elsewhere (new salt) is replaced. A table
    /// not loaded is left for the next call to load.
    pub async fn reconcile(&self) -> Result<(), AuditError> {
        self.ensure_unsealed().await?;
        let _admin = self.admin.lock().await;
        if !self.read().loaded {
            return Ok(());
        }
        let stored = self.stored_devices().await?;
        let mut closed = Vec::new();
        {
            let mut table = self.write();
            let gone: Vec<String> = table
                .devices
                .keys()
                .filter(|p| !stored.contains_key(*p))
                .cloned()
                .collect();
            for path in gone {
                closed.extend(table.devices.remove(&path));
            }
            for (path, (config, salt)) in stored {
                let same = match (table.devices.get(&path), &salt) {
                    (Some(d), Some(s)) => d.salt.to_hex() == s.to_hex(),
                    (Some(_), None) => true,
                    (None, _) => false,
                };
                if !same {
                    let device = Arc::new(Device::restore(config, salt));
                    closed.extend(table.devices.insert(path, device));
                }
            }
        }
        self.publish_count();
        join_all(closed.iter().map(|d| d.writer.close())).await;
        Ok(())
    }

    /// Follows the number of configured devices (`None`: not known now).
    pub fn subscribe_count(&self) -> tokio::sync::watch::Receiver<Option<u32>> {
        self.count.subscribe()
    }

    /// Publishes the table's size; the caller holds `admin`.
    fn publish_count(&self) {
        let table = self.read();
        let next = table.loaded.then_some(table.devices.len() as u32);
        drop(table);
        self.count.send_if_modified(|c| {
            let changed = *c != next;
            *c = next;
            changed
        });
    }

    /// The keyring of the barrier (cleared while sealed).
    pub fn keyring(&self) -> &Keyring {
        self.barrier.keyring()
    }

    /// Refuses while sealed.
    pub async fn ensure_unsealed(&self) -> Result<(), AuditError> {
        self.keyring().ensure_active().await?;
        Ok(())
    }

    /// Enables a device: validates the type and options, opens the device
    /// now (the sanity check), stores it with a fresh salt.
    pub async fn enable(&self, config: DeviceConfig) -> Result<(), AuditError> {
        self.ensure_unsealed().await?;
        let path = normalize(&config.path)?;
        let spec = options::parse(&config.kind, &config.options)?;
        let _admin = self.admin.lock().await;
        self.load_locked().await?;
        if self
            .read()
            .devices
            .keys()
            .any(|p| p.starts_with(&path) || path.starts_with(p.as_str()))
        {
            return Err(AuditError::PathInUse);
        }
        let mut sink = Sink::new(&spec.sink);
        sink.open().await.map_err(AuditError::SanityCheck)?;
        let salt = Salt::generate();
        let config = DeviceConfig { path, ..config };
        let record = DeviceRecord {
            path: config.path.clone(),
            kind: config.kind.clone(),
            description: config.description.clone(),
            options: config.options.clone(),
            local: config.local,
            salt: salt.to_hex().to_string(),
        };
        let bytes = Zeroizing::new(serde_json::to_vec(&record).map_err(|e| {
            AuditError::Invalid(format!("device configuration does not encode: {e}"))
        })?);
        if !self
            .barrier
            .create(&storage_key(&config.path), &bytes)
            .await?
        {
            return Err(AuditError::PathInUse);
        }
        let writer = Writer::spawn(config.path.clone(), sink, false);
        let device = Device {
            config,
            salt,
            format: spec.format,
            writer,
        };
        tracing::info!(device = %device.config.path, kind = %device.config.kind, "audit device enabled");
        let path = device.config.path.clone();
        self.write().devices.insert(path.clone(), Arc::new(device));
        self.publish_count();
        self.announce(&path).await;
        Ok(())
    }

    /// Disables the device at `path`: what it has queued is written, then it
    /// closes, and its salt is gone. A missing device is not an error.
    pub async fn disable(&self, path: &str) -> Result<(), AuditError> {
        self.ensure_unsealed().await?;
        let path = normalize(path)?;
        let _admin = self.admin.lock().await;
        self.load_locked().await?;
        self.barrier.delete(&storage_key(&path)).await?;
        let removed = self.write().devices.remove(&path);
        self.publish_count();
        if let Some(device) = removed {
            device.writer.close().await;
            tracing::info!(device = %path, "audit device disabled");
        }
        self.announce(&path).await;
        Ok(())
    }

    /// Every enabled device, by path.
    pub async fn list(&self) -> Result<Vec<DeviceConfig>, AuditError> {
        self.ensure_unsealed().await?;
        Ok(self
            .devices()
            .await?
            .iter()
            .map(|d| d.config.clone())
            .collect())
    }

    /// `input` hashed under the salt of the device at `path` (an empty
    /// input is refused, as Vault's `sys/audit-hash` does).
    pub async fn hash(&self, path: &str, input: &str) -> Result<String, AuditError> {
        self.ensure_unsealed().await?;
        if input.is_empty() {
            return Err(AuditError::Invalid(
                "the \"input\" parameter is empty".into(),
            ));
        }
        let path = normalize(path).map_err(|_| AuditError::UnknownDevice)?;
        self.devices()
            .await?
            .iter()
            .find(|d| d.config.path == path)
            .map(|d| d.salt.hash(input))
            .ok_or(AuditError::UnknownDevice)
    }

    /// Records `entry` (a JSON object, values in the clear) on every device;
    /// returns how many recorded it. Fails closed: [`AuditError::NotRecorded`]
    /// when devices are enabled and none recorded it.
    pub async fn log(&self, entry: &[u8], non_hmac: NonHmacKeys<'_>) -> Result<u32, AuditError> {
        self.log_all(&[entry], non_hmac).await
    }

    /// Records `entries` in order, on each device in one batch (all or
    /// none), and returns how many devices recorded them.
    pub async fn log_all(
        &self,
        entries: &[&[u8]],
        non_hmac: NonHmacKeys<'_>,
    ) -> Result<u32, AuditError> {
        let group = Group {
            entries: entries.to_vec(),
            non_hmac,
        };
        self.log_groups(&[group])
            .await?
            .pop()
            .unwrap_or(Err(AuditError::NotRecorded))
    }

    /// Records many groups of entries at once: each group is refused alone
    /// if one of its entries is not a JSON object; the others are written
    /// in order, on each device in one batch (all or none). One result per
    /// group: how many devices recorded it. `Err` for the whole call when
    /// sealed or the device table cannot be read.
    pub async fn log_groups(
        &self,
        groups: &[Group<'_>],
    ) -> Result<Vec<Result<u32, AuditError>>, AuditError> {
        self.ensure_unsealed().await?;
        let devices = self.devices().await?;
        if devices.is_empty() {
            return Ok(groups.iter().map(|_| Ok(0)).collect());
        }
        let mut results = Vec::with_capacity(groups.len());
        let mut parsed = Vec::with_capacity(groups.len());
        for group in groups {
            let entries = group
                .entries
                .iter()
                // Never echo the entry (nor serde's excerpt of it).
                .map(|entry| {
                    sparse::Entry::parse(entry)
                        .ok_or_else(|| AuditError::Invalid("entry must be a JSON object".into()))
                })
                .collect::<Result<Vec<_>, _>>();
            match entries {
                Ok(entries) => {
                    results.push(None);
                    parsed.push((entries, group.non_hmac));
                }
                Err(e) => results.push(Some(Err(e))),
            }
        }
        if parsed.is_empty() {
            return Ok(results.into_iter().flatten().collect());
        }
        let written = join_all(devices.iter().map(|device| {
            let lines: Vec<Vec<u8>> = parsed
                .iter()
                .flat_map(|(entries, non_hmac)| entries.iter().map(|e| device.line(e, *non_hmac)))
                .collect();
            async move { device.writer.write_all(lines).await }
        }))
        .await;
        let recorded = written.iter().filter(|ok| **ok).count();
        if recorded == 0 {
            tracing::error!(
                devices = devices.len(),
                "no audit device could record an entry"
            );
        } else if recorded < devices.len() {
            let failed: Vec<&str> = devices
                .iter()
                .zip(&written)
                .filter(|(_, ok)| !**ok)
                .map(|(d, _)| d.config.path.as_str())
                .collect();
            tracing::warn!(?failed, recorded, "audit devices failed to record an entry");
        }
        let outcome = || {
            if recorded == 0 {
                Err(AuditError::NotRecorded)
            } else {
                Ok(u32::try_from(recorded).unwrap_or(u32::MAX))
            }
        };
        Ok(results
            .into_iter()
            .map(|r| r.unwrap_or_else(outcome))
            .collect())
    }

    /// Closes and reopens every device (log rotation): lines queued before
    /// go to the old file, lines after to the new one. Fails naming the
    /// devices that could not reopen (they count as failed until a write
    /// succeeds).
    pub async fn reopen(&self) -> Result<(), AuditError> {
        self.ensure_unsealed().await?;
        let devices = self.devices().await?;
        let results = join_all(devices.iter().map(|d| d.writer.reopen())).await;
        let failed: Vec<String> = devices
            .iter()
            .zip(results)
            .filter(|(_, r)| r.is_err())
            .map(|(d, _)| d.config.path.clone())
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(AuditError::Reopen(failed))
        }
    }

    /// Waits until everything queued on every device is written.
    pub async fn flush(&self) {
        let devices: Vec<Arc<Device>> = self.read().devices.values().cloned().collect();
        join_all(devices.iter().map(|d| d.writer.flush())).await;
    }

    /// How many batches the device at `path` has written (`None`: no such
    /// device loaded). Group commit makes this far less than the entries.
    pub fn batches(&self, path: &str) -> Option<u64> {
        let path = normalize(path).ok()?;
        self.read().devices.get(&path).map(|d| d.writer.batches())
    }

    /// Loads the device table if it is not loaded (opening every device).
    pub async fn load(&self) -> Result<(), AuditError> {
        self.ensure_unsealed().await?;
        self.devices().await.map(|_| ())
    }

    /// Writes out what is queued, closes every device and forgets the table
    /// and its salts (on seal and on shutdown). The next call loads again.
    pub async fn unload(&self) {
        let _admin = self.admin.lock().await;
        let devices = {
            let mut table = self.write();
            table.loaded = false;
            std::mem::take(&mut table.devices)
        };
        self.publish_count();
        join_all(devices.values().map(|d| d.writer.close())).await;
    }

    /// The enabled devices, loading them first if needed.
    async fn devices(&self) -> Result<Vec<Arc<Device>>, AuditError> {
        {
            let table = self.read();
            if table.loaded {
                return Ok(table.devices.values().cloned().collect());
            }
        }
        let _admin = self.admin.lock().await;
        self.load_locked().await?;
        Ok(self.read().devices.values().cloned().collect())
    }

    /// Loads the table from storage unless loaded; the caller holds `admin`.
    async fn load_locked(&self) -> Result<(), AuditError> {
        if self.read().loaded {
            return Ok(());
        }
        let devices = self
            .stored_devices()
            .await?
            .into_iter()
            .map(|(path, (config, salt))| (path, Arc::new(Device::restore(config, salt))))
            .collect();
        {
            let mut table = self.write();
            table.devices = devices;
            table.loaded = true;
        }
        self.publish_count();
        Ok(())
    }

    /// Every device configuration in storage with its salt (`None`: the
    /// record is unreadable), by path.
    async fn stored_devices(
        &self,
    ) -> Result<BTreeMap<String, (DeviceConfig, Option<Salt>)>, AuditError> {
        let mut devices = BTreeMap::new();
        for key in self.barrier.list(DEVICE_PREFIX).await? {
            if key.ends_with('/') {
                continue;
            }
            let full = format!("{DEVICE_PREFIX}{key}");
            let Some(bytes) = self.barrier.get(&full).await? else {
                continue;
            };
            let (config, salt) = match serde_json::from_slice::<DeviceRecord>(&bytes) {
                Ok(record) => (
                    DeviceConfig {
                        path: record.path.clone(),
                        kind: record.kind.clone(),
                        description: record.description.clone(),
                        options: record.options.clone(),
                        local: record.local,
                    },
                    Salt::from_hex(&record.salt),
                ),
                Err(e) => {
                    tracing::error!(key = %full, error = %e, "stored audit device is unreadable");
                    let config = DeviceConfig {
                        path: unescape(&key),
                        ..DeviceConfig::default()
                    };
                    (config, None)
                }
            };
            devices.insert(config.path.clone(), (config, salt));
        }
        Ok(devices)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.table.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// A device path with exactly one trailing slash: `"/file"` → `"file/"`.
/// Empty paths and empty, `.` or `..` segments are refused.
pub fn normalize(path: &str) -> Result<String, AuditError> {
    let trimmed = path.trim_matches('/');
    let bad = trimmed.is_empty()
        || trimmed
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == ".." || s.chars().any(char::is_control));
    if bad {
        return Err(AuditError::Invalid(format!("invalid audit path {path:?}")));
    }
    Ok(format!("{trimmed}/"))
}

/// The storage key of a device path: one flat key under `device/`.
fn storage_key(path: &str) -> String {
    let mut key = String::with_capacity(DEVICE_PREFIX.len() + path.len() + 8);
    key.push_str(DEVICE_PREFIX);
    for c in path.chars() {
        match c {
            '%' => key.push_str("%25"),
            '/' => key.push_str("%2F"),
            c => key.push(c),
        }
    }
    key
}

/// The path of a storage key's last part (inverse of [`storage_key`]).
fn unescape(key: &str) -> String {
    key.replace("%2F", "/").replace("%25", "%")
}
