//! Auto-unseal with a static key (`seal "static"`, OpenBao's static seal)
//! or through another server's transit engine (`seal "transit"`, Vault's).
//!
//! With an auto seal the root key is not split: it is stored wrapped by the
//! seal key (AES-256-GCM, associated data naming its purpose, the key id
//! recorded beside it), and the service unseals itself at start. What the
//! operators hold instead are *recovery keys*: Shamir shares of a separate
//! random recovery key, which cannot decrypt anything and only authorize —
//! generate-root, rekey, and unsealing again after a `sys/seal` (as Vault's
//! `sys/unseal` does under an auto seal). As with unseal shares, only SHA-256
//! digests of the recovery shares and of the recovery key are stored (under
//! their own labels): uniformly random 256-bit values, so the digests reveal
//! nothing useful.
//!
//! The transit seal wraps the root key by calling
//! `POST <address>/v1/<mount_path>encrypt/<key_name>` with the seal's token
//! (`X-Vault-Token`) and stores the `vault:v1:…` ciphertext it answers; it
//! unwraps with `decrypt`. The plaintext (the root key, base64) is held in
//! zeroized buffers on this side and never logged; errors name the address,
//! the operation and the transit server's answer, never the token.

use std::time::Duration;

use base64::Engine as _;
use bulwark_shared::barrier::{open_value, seal_value};
use bulwark_shared::config::{SealSettings, StaticSealKey, TransitSealSettings};
use bulwark_shared::keyring::DataKey;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::SealError;
use crate::shamir;

/// The seal types, as stored and as `sys/seal-status` reports them.
pub(crate) const SHAMIR: &str = "shamir";
pub(crate) const STATIC: &str = "static";
pub(crate) const TRANSIT: &str = "transit";

/// The associated data of the wrapped root key: it opens as nothing else.
const ROOT_KEY_AAD: &[u8] = b"bulwark/seal/static/root-key";

/// The recovery key configuration (stored in the seal row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RecoveryConfig {
    pub(crate) shares: u32,
    pub(crate) threshold: u32,
    /// Digests of the recovery key shares.
    pub(crate) share_hashes: Vec<String>,
    /// Digest of the recovery key itself.
    pub(crate) key_hash: String,
}

/// The root key wrapped by the static seal key (stored in the seal row).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredRootKey {
    /// `current_key_id` of the key that wrapped it.
    pub(crate) key_id: String,
    /// `[v1][term 0][nonce][ct‖tag]`, base64.
    pub(crate) wrapped: String,
}

/// The configured static seal key (zeroized on drop).
pub(crate) struct StaticSeal {
    key_id: String,
    key: DataKey,
}

impl From<StaticSealKey> for StaticSeal {
    fn from(k: StaticSealKey) -> Self {
        StaticSeal {
            key_id: k.key_id,
            key: k.key,
        }
    }
}

impl StaticSeal {
    /// Wraps `root` for storage.
    pub(crate) fn wrap(&self, root: &DataKey) -> StoredRootKey {
        StoredRootKey {
            key_id: self.key_id.clone(),
            wrapped: base64::engine::general_purpose::STANDARD.encode(seal_value(
                0,
                &self.key,
                ROOT_KEY_AAD,
                root.as_slice(),
            )),
        }
    }

    /// Unwraps the stored root key. A key that does not open it (another
    /// key, or the data was changed) is named by its id, never shown.
    pub(crate) fn unwrap(&self, stored: &StoredRootKey) -> Result<DataKey, SealError> {
        let sealed = base64::engine::general_purpose::STANDARD
            .decode(&stored.wrapped)
            .map_err(|_| SealError::Corrupt("wrapped root key encoding"))?;
        let plain = open_value(&self.key, ROOT_KEY_AAD, &sealed).ok_or_else(|| {
            SealError::StaticKeyMismatch {
                configured: self.key_id.clone(),
                stored: stored.key_id.clone(),
            }
        })?;
        if plain.len() != 32 {
            return Err(SealError::Corrupt("wrapped root key length"));
        }
        let mut root = Zeroizing::new([0u8; 32]);
        root.copy_from_slice(&plain);
        Ok(root)
    }
}

/// The configured auto seal.
pub(crate) enum AutoSeal {
    Static(StaticSeal),
    Transit(TransitSeal),
}

impl From<SealSettings> for AutoSeal {
    fn from(s: SealSettings) -> Self {
        match s {
            SealSettings::Static(k) => AutoSeal::Static(k.into()),
            SealSettings::Transit(t) => AutoSeal::Transit(TransitSeal { settings: t }),
        }
    }
}

impl AutoSeal {
    /// The seal type, as stored and reported.
    pub(crate) fn seal_type(&self) -> &'static str {
        match self {
            AutoSeal::Static(_) => STATIC,
            AutoSeal::Transit(_) => TRANSIT,
        }
    }

    /// Whether unsealing at start may succeed later by itself (the transit
    /// server not reachable or sealed yet): then it is retried.
    pub(crate) fn retries(&self) -> bool {
        matches!(self, AutoSeal::Transit(_))
    }

    /// Wraps `root` for storage.
    pub(crate) async fn wrap(&self, root: &DataKey) -> Result<StoredRootKey, SealError> {
        match self {
            AutoSeal::Static(s) => Ok(s.wrap(root)),
            AutoSeal::Transit(t) => t.wrap(root).await,
        }
    }

    /// Unwraps the stored root key.
    pub(crate) async fn unwrap(&self, stored: &StoredRootKey) -> Result<DataKey, SealError> {
        match self {
            AutoSeal::Static(s) => s.unwrap(stored),
            AutoSeal::Transit(t) => t.unwrap(stored).await,
        }
    }
}

/// `seal "transit"`: the root key wrapped by a transit key of another
/// server, over its HTTP API.
pub(crate) struct TransitSeal {
    settings: TransitSealSettings,
}

/// How long one call to the transit server may take.
const TRANSIT_TIMEOUT: Duration = Duration::from_secs(30);
const TRANSIT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl TransitSeal {
    /// The HTTP client and the base URL. With `tls_server_name`, the URL
    /// names that host (what the certificate is checked against, and the
    /// SNI), resolved to the address's host.
    async fn client(&self) -> Result<(reqwest::Client, String), SealError> {
        let s = &self.settings;
        let fail = |why: String| SealError::Transit(format!("{}: {why}", s.address));
        let mut b = reqwest::Client::builder()
            .timeout(TRANSIT_TIMEOUT)
            .connect_timeout(TRANSIT_CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(pem) = &s.ca_pem {
            for cert in reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| fail(format!("tls_ca_cert: {e}")))?
            {
                b = b.add_root_certificate(cert);
            }
        }
        if let Some(pem) = &s.client_identity_pem {
            b = b.identity(
                reqwest::Identity::from_pem(pem)
                    .map_err(|e| fail(format!("tls_client_cert/tls_client_key: {e}")))?,
            );
        }
        let mut base = s.address.clone();
        if let Some(name) = &s.server_name {
            let (scheme, authority) = s
                .address
                .split_once("://")
                .ok_or_else(|| fail("not a URL".into()))?;
            let default_port = if scheme == "https" { 443 } else { 80 };
            // host, [v6], host:port, [v6]:port
            let (host, port) = match authority.rsplit_once(':') {
                Some((h, p)) if !p.contains(']') => (
                    h.to_string(),
                    p.parse::<u16>()
                        .map_err(|_| fail(format!("bad port {p:?}")))?,
                ),
                _ => (authority.to_string(), default_port),
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| fail(format!("cannot resolve {host}: {e}")))?
                .collect();
            b = b.resolve_to_addrs(name, &addrs);
            base = format!("{scheme}://{name}:{port}");
        }
        let client = b.build().map_err(|e| fail(format!("HTTP client: {e}")))?;
        Ok((client, base))
    }

    /// `POST <mount>/<op>/<key_name>` with `body`; the `data` object of
    /// the answer.
    async fn call(
        &self,
        op: &str,
        body: Zeroizing<Vec<u8>>,
    ) -> Result<serde_json::Map<String, serde_json::Value>, SealError> {
        let s = &self.settings;
        let (client, base) = self.client().await?;
        let url = format!("{base}/v1/{}{op}/{}", s.mount_path, s.key_name);
        let fail = |why: String| SealError::Transit(format!("{op} at {url}: {why}"));
        let mut req = client
            .post(&url)
            .header("X-Vault-Token", s.token.as_str())
            .header("Content-Type", "application/json")
            // The transport's copy is the HTTP stack's; ours is zeroized.
            .body(body.to_vec());
        if let Some(ns) = &s.namespace {
            req = req.header("X-Vault-Namespace", ns.as_str());
        }
        let resp = req.send().await.map_err(|e| fail(without_url(e)))?;
        let status = resp.status();
        let raw = Zeroizing::new(
            resp.bytes()
                .await
                .map_err(|e| fail(without_url(e)))?
                .to_vec(),
        );
        let value: serde_json::Value = serde_json::from_slice(&raw).unwrap_or_default();
        if !status.is_success() {
            let errors: Vec<String> = value
                .get("errors")
                .and_then(|e| e.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|e| e.as_str())
                        .map(|e| e.chars().take(300).collect())
                        .collect()
                })
                .unwrap_or_default();
            return Err(fail(format!("HTTP {status}: {}", errors.join("; "))));
        }
        match value {
            serde_json::Value::Object(mut o) => match o.remove("data") {
                Some(serde_json::Value::Object(data)) => Ok(data),
                _ => Err(fail("the answer has no data".into())),
            },
            _ => Err(fail("the answer is not JSON".into())),
        }
    }

    async fn wrap(&self, root: &DataKey) -> Result<StoredRootKey, SealError> {
        let plaintext =
            Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(root.as_slice()));
        let body = Zeroizing::new(
            serde_json::to_vec(&serde_json::json!({ "plaintext": plaintext.as_str() }))
                .expect("serializable request"),
        );
        let data = self.call("encrypt", body).await?;
        match data.get("ciphertext").and_then(|c| c.as_str()) {
            Some(ct) if ct.starts_with("vault:v") => Ok(StoredRootKey {
                key_id: self.settings.key_name.clone(),
                wrapped: ct.to_string(),
            }),
            _ => Err(SealError::Transit(format!(
                "encrypt at {}: the answer has no ciphertext",
                self.settings.address
            ))),
        }
    }

    async fn unwrap(&self, stored: &StoredRootKey) -> Result<DataKey, SealError> {
        let body = serde_json::to_vec(&serde_json::json!({ "ciphertext": stored.wrapped }))
            .expect("serializable request");
        let mut data = self.call("decrypt", Zeroizing::new(body)).await?;
        let plaintext = match data.remove("plaintext") {
            Some(serde_json::Value::String(p)) => Zeroizing::new(p),
            _ => {
                return Err(SealError::Transit(format!(
                    "decrypt at {}: the answer has no plaintext",
                    self.settings.address
                )))
            }
        };
        let plain = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(plaintext.as_bytes())
                .map_err(|_| SealError::Corrupt("transit-wrapped root key encoding"))?,
        );
        if plain.len() != 32 {
            return Err(SealError::Corrupt("transit-wrapped root key length"));
        }
        let mut root = Zeroizing::new([0u8; 32]);
        root.copy_from_slice(&plain);
        Ok(root)
    }
}

/// A reqwest error without the URL (the caller names it once).
fn without_url(e: reqwest::Error) -> String {
    use std::error::Error as _;
    let e = e.without_url();
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}

fn digest(label: &[u8], value: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(label);
    h.update(value);
    hex::encode(h.finalize())
}

pub(crate) fn hash_recovery_share(share: &[u8]) -> String {
    digest(b"bulwark-recovery-share-v1\0", share)
}

fn hash_recovery_key(key: &[u8]) -> String {
    digest(b"bulwark-recovery-key-v1\0", key)
}

/// Whether `digest` is one of `hashes`, compared in constant time over all.
pub(crate) fn among(hashes: &[String], digest: &str) -> bool {
    hashes.iter().fold(0u8, |acc, h| {
        acc | h.as_bytes().ct_eq(digest.as_bytes()).unwrap_u8()
    }) == 1
}

/// A new random recovery key split into `shares` shares (configuration
/// already validated): its stored configuration and the shares.
pub(crate) fn new_recovery(
    shares: u32,
    threshold: u32,
) -> (RecoveryConfig, Vec<Zeroizing<Vec<u8>>>) {
    let mut key = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(key.as_mut_slice());
    let parts = shamir::split(&key, shares as u8, threshold as u8);
    let config = RecoveryConfig {
        shares,
        threshold,
        share_hashes: parts.iter().map(|p| hash_recovery_share(p)).collect(),
        key_hash: hash_recovery_key(key.as_slice()),
    };
    (config, parts)
}

/// Whether a threshold of recovery shares combines to the recovery key.
pub(crate) fn recovery_key_matches(rc: &RecoveryConfig, parts: &[Zeroizing<Vec<u8>>]) -> bool {
    let Ok(threshold) = u8::try_from(rc.threshold) else {
        return false;
    };
    shamir::combine(parts, threshold).is_some_and(|key| {
        bool::from(
            hash_recovery_key(key.as_slice())
                .as_bytes()
                .ct_eq(rc.key_hash.as_bytes()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(id: &str, byte: u8) -> StaticSeal {
        StaticSeal {
            key_id: id.into(),
            key: Zeroizing::new([byte; 32]),
        }
    }

    #[test]
    fn wrapped_root_key_opens_only_with_its_key() {
        let root: DataKey = Zeroizing::new([42u8; 32]);
        let stored = seal("k1", 1).wrap(&root);
        assert_eq!(stored.key_id, "k1");
        assert!(!stored.wrapped.contains(&hex::encode([42u8; 32])));
        assert_eq!(*seal("k1", 1).unwrap(&stored).unwrap(), [42u8; 32]);
        match seal("k2", 2).unwrap(&stored) {
            Err(SealError::StaticKeyMismatch { configured, stored }) => {
                assert_eq!((configured.as_str(), stored.as_str()), ("k2", "k1"))
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
        // Tampering is caught by the tag.
        let mut bad = stored.clone();
        let mut raw = base64::engine::general_purpose::STANDARD
            .decode(&bad.wrapped)
            .unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        bad.wrapped = base64::engine::general_purpose::STANDARD.encode(raw);
        assert!(seal("k1", 1).unwrap(&bad).is_err());
    }

    #[test]
    fn recovery_shares_combine_to_the_recorded_key() {
        let (rc, parts) = new_recovery(5, 3);
        assert_eq!((rc.shares, rc.threshold, rc.share_hashes.len()), (5, 3, 5));
        assert!(parts
            .iter()
            .all(|p| among(&rc.share_hashes, &hash_recovery_share(p))));
        assert!(recovery_key_matches(&rc, &parts[1..4]));
        assert!(!recovery_key_matches(&rc, &parts[..2]));
        let (other, _) = new_recovery(5, 3);
        assert!(!recovery_key_matches(&other, &parts[..3]));
        assert!(!among(&rc.share_hashes, &hash_recovery_share(&[0u8; 33])));
    }

    // The service with a static seal: init, restart, wrong key, quorum.

    use crate::core::{InitParams, SealCore, INIT_ROOT_ID};
    use crate::keys::{decode_token, RekeyOutcome, RekeyTarget};
    use bulwark_shared::storage::{test_util::TestPg, Database, StorageConfig};
    use bulwark_shared::ServiceName;

    fn key(id: &str, byte: u8) -> StaticSealKey {
        StaticSealKey {
            key_id: id.into(),
            key: Zeroizing::new([byte; 32]),
        }
    }

    async fn start(db: &Database, seal: Option<StaticSealKey>) -> Result<SealCore, SealError> {
        SealCore::load_with(
            db.namespace("seal").await.unwrap(),
            db.kind(),
            seal.map(SealSettings::Static),
        )
        .await
    }

    fn recovery(n: u32, t: u32) -> InitParams<'static> {
        InitParams {
            recovery_shares: n,
            recovery_threshold: t,
            ..InitParams::default()
        }
    }

    async fn unseal_with(core: &SealCore, keys: &[&Zeroizing<Vec<u8>>]) -> Result<bool, SealError> {
        for k in keys {
            core.unseal(k, false).await?;
        }
        Ok(!core.status().await?.sealed)
    }

    async fn static_lifecycle(cfg: StorageConfig) {
        let db = Database::connect(&cfg).await.unwrap();
        let core = start(&db, Some(key("k1", 1))).await.unwrap();
        let st = core.status().await.unwrap();
        assert!(!st.initialized && st.sealed);
        assert_eq!((st.r#type.as_str(), st.recovery_seal), ("static", true));

        // Vault's checks: no unseal key parameters, recovery ones required.
        for (p, msg) in [
            (
                InitParams {
                    secret_shares: 5,
                    secret_threshold: 3,
                    ..recovery(5, 3)
                },
                "parameters secret_shares,secret_threshold not applicable to seal type static",
            ),
            (
                recovery(0, 0),
                "recovery configuration must specify a positive number of shares",
            ),
            (
                recovery(3, 5),
                "invalid recovery configuration: threshold cannot be larger than shares",
            ),
        ] {
            assert_eq!(core.initialize(p).await.err().unwrap().to_string(), msg);
        }
        assert!(!core.status().await.unwrap().initialized);

        // Init: recovery keys, no unseal keys, unsealed at once.
        let mut watch = core.subscribe();
        let out = core.initialize(recovery(5, 3)).await.unwrap();
        assert!(out.keys.is_empty());
        assert_eq!(out.recovery_keys.len(), 5);
        assert!(out.recovery_keys.iter().all(|k| k.len() == 33));
        assert!(out.root_token.starts_with("hvs."));
        let st = core.status().await.unwrap();
        assert!(st.initialized && !st.sealed && !st.cluster_id.is_empty());
        assert_eq!((st.threshold, st.shares, st.progress), (3, 5, 0));
        assert_eq!((st.r#type.as_str(), st.recovery_seal), ("static", true));
        assert!(
            !watch.borrow_and_update().sealed,
            "the stream says unsealed"
        );
        let (_, kv) = core.service_key(ServiceName::Kv, 0).await.unwrap();
        let claimed = core.claim_init_root_token().await.unwrap().unwrap();
        assert_eq!(
            (claimed.token.as_str(), claimed.id.as_str()),
            (out.root_token.as_str(), INIT_ROOT_ID)
        );

        // Stored: the key id, and nothing secret in the clear.
        let raw = db
            .namespace("seal")
            .await
            .unwrap()
            .get("core/seal")
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&raw);
        assert!(text.contains("\"type\":\"static\"") && text.contains("\"key_id\":\"k1\""));
        assert!(!text.contains(out.root_token.as_str()));
        assert!(!text.contains(&hex::encode([1u8; 32])));
        for k in &out.recovery_keys {
            assert!(!text.contains(&hex::encode(k.as_slice())));
            assert!(!raw.windows(k.len()).any(|w| w == k.as_slice()));
        }

        // A restart unseals without any key; the data keys are the same.
        drop(core);
        let core = start(&db, Some(key("k1", 1))).await.unwrap();
        assert!(!core.status().await.unwrap().sealed);
        assert_eq!(*core.service_key(ServiceName::Kv, 0).await.unwrap().1, *kv);

        // After sys/seal it stays sealed; a quorum of recovery keys unseals,
        // with progress and nonce; an unseal-key-shaped wrong share is refused.
        core.seal().await.unwrap();
        assert!(core.status().await.unwrap().sealed);
        let st = core.unseal(&out.recovery_keys[0], false).await.unwrap();
        assert_eq!((st.progress, st.sealed), (1, true));
        assert!(!st.nonce.is_empty());
        assert!(matches!(
            core.unseal(&[7u8; 33], false).await,
            Err(SealError::BadKey(_))
        ));
        assert_eq!(core.status().await.unwrap().progress, 0);
        assert!(unseal_with(
            &core,
            &[
                &out.recovery_keys[4],
                &out.recovery_keys[2],
                &out.recovery_keys[1]
            ]
        )
        .await
        .unwrap());
        assert_eq!(*core.service_key(ServiceName::Kv, 0).await.unwrap().1, *kv);
    }

    #[tokio::test]
    async fn static_lifecycle_sqlite() {
        static_lifecycle(StorageConfig::SqliteMemory).await;
    }

    #[tokio::test]
    async fn static_lifecycle_postgres() {
        let pg = TestPg::new().await;
        static_lifecycle(pg.config()).await;
    }

    #[tokio::test]
    async fn a_wrong_static_key_leaves_it_sealed() {
        let db = Database::connect(&StorageConfig::SqliteMemory)
            .await
            .unwrap();
        let core = start(&db, Some(key("k1", 1))).await.unwrap();
        let out = core.initialize(recovery(3, 2)).await.unwrap();
        drop(core);
        // Another key: the service starts, sealed, and says why on unseal.
        let core = start(&db, Some(key("k2", 2))).await.unwrap();
        let st = core.status().await.unwrap();
        assert!(st.initialized && st.sealed && st.recovery_seal);
        assert!(matches!(
            core.service_key(ServiceName::Kv, 0).await,
            Err(SealError::Sealed)
        ));
        core.unseal(&out.recovery_keys[0], false).await.unwrap();
        let e = core
            .unseal(&out.recovery_keys[1], false)
            .await
            .err()
            .unwrap();
        assert!(matches!(e, SealError::StaticKeyMismatch { .. }), "{e}");
        let msg = e.to_string();
        assert!(msg.contains("\"k2\"") && msg.contains("\"k1\""), "{msg}");
        assert!(!msg.contains(&hex::encode([2u8; 32])) && !msg.contains(&hex::encode([1u8; 32])));
        assert!(core.status().await.unwrap().sealed);
        drop(core);
        // The same key under a new id still opens it.
        let core = start(&db, Some(key("renamed", 1))).await.unwrap();
        assert!(!core.status().await.unwrap().sealed);
    }

    #[tokio::test]
    async fn changing_the_seal_type_is_refused() {
        let db = Database::connect(&StorageConfig::SqliteMemory)
            .await
            .unwrap();
        let core = start(&db, None).await.unwrap();
        core.init(1, 1, "").await.unwrap();
        drop(core);
        let e = start(&db, Some(key("k", 1))).await.err().unwrap();
        assert!(matches!(e, SealError::SealMigration { .. }), "{e}");
        assert!(e.to_string().contains("\"shamir\"") && e.to_string().contains("-migrate"));
        assert!(
            crate::check_seal_config(&db, Some(&SealSettings::Static(key("k", 1))))
                .await
                .is_err()
        );
        assert!(crate::check_seal_config(&db, None).await.is_ok());

        let db = Database::connect(&StorageConfig::SqliteMemory)
            .await
            .unwrap();
        start(&db, Some(key("k", 1)))
            .await
            .unwrap()
            .initialize(recovery(1, 1))
            .await
            .unwrap();
        let e = start(&db, None).await.err().unwrap();
        assert!(e.to_string().contains("\"static\""), "{e}");
        assert!(crate::check_seal_config(&db, None).await.is_err());
    }

    #[tokio::test]
    async fn generate_root_with_recovery_keys() {
        let db = Database::connect(&StorageConfig::SqliteMemory)
            .await
            .unwrap();
        let core = start(&db, Some(key("k1", 1))).await.unwrap();
        let out = core.initialize(recovery(5, 3)).await.unwrap();
        core.ack_init_root_token("").await.unwrap();
        let st = core.generate_root_init("").await.unwrap();
        assert_eq!(st.required, 3);
        let (otp, nonce) = (st.otp.clone(), st.nonce.clone());
        // An unseal key is not a recovery key.
        assert!(matches!(
            core.generate_root_update(&[3u8; 33], &nonce).await,
            Err(SealError::BadShare { .. })
        ));
        for k in &out.recovery_keys[..2] {
            let st = core.generate_root_update(k, &nonce).await.unwrap();
            assert!(!st.complete);
        }
        let st = core
            .generate_root_update(&out.recovery_keys[2], &nonce)
            .await
            .unwrap();
        assert!(st.complete && st.progress == 3);
        let token = decode_token(&st.encoded_token, &otp).unwrap();
        assert_eq!(token.as_str(), st.root_token);
        let c = core.claim_init_root_token().await.unwrap().unwrap();
        assert_eq!(c.token.as_str(), token.as_str());
    }

    #[tokio::test]
    async fn rekeys_under_a_static_seal() {
        let db = Database::connect(&StorageConfig::SqliteMemory)
            .await
            .unwrap();
        let core = start(&db, Some(key("k1", 1))).await.unwrap();
        let out = core.initialize(recovery(5, 3)).await.unwrap();
        let (_, kv) = core.service_key(ServiceName::Kv, 0).await.unwrap();

        // The root key: forced to one stored share, authorized by recovery
        // keys, no shares returned.
        let st = core.rekey_init(5, 3).await.unwrap();
        assert_eq!((st.new_shares, st.new_threshold, st.required), (1, 1, 3));
        for k in &out.recovery_keys[..2] {
            assert!(matches!(
                core.rekey_update(k, &st.nonce).await.unwrap(),
                RekeyOutcome::Pending(_)
            ));
        }
        let RekeyOutcome::Complete { keys, .. } = core
            .rekey_update(&out.recovery_keys[3], &st.nonce)
            .await
            .unwrap()
        else {
            panic!("not complete");
        };
        assert!(keys.is_empty());
        drop(core);
        let core = start(&db, Some(key("k1", 1))).await.unwrap();
        assert!(
            !core.status().await.unwrap().sealed,
            "the new root key is stored wrapped"
        );
        assert_eq!(*core.service_key(ServiceName::Kv, 0).await.unwrap().1, *kv);

        // The recovery keys: 3 new ones, 2 of which authorize from then on.
        assert_eq!(
            core.rekey_status_for(RekeyTarget::Recovery)
                .await
                .unwrap()
                .required,
            3
        );
        let st = core
            .rekey_init_for(RekeyTarget::Recovery, 3, 2)
            .await
            .unwrap();
        assert_eq!((st.new_shares, st.new_threshold), (3, 2));
        let mut done = None;
        for k in &out.recovery_keys[2..5] {
            if let RekeyOutcome::Complete { keys, .. } = core
                .rekey_update_for(RekeyTarget::Recovery, k, &st.nonce)
                .await
                .unwrap()
            {
                done = Some(keys);
            }
        }
        let new = done.expect("complete at the threshold");
        assert_eq!(new.len(), 3);
        let st = core.status().await.unwrap();
        assert_eq!((st.shares, st.threshold), (3, 2));
        core.seal().await.unwrap();
        assert!(unseal_with(&core, &[&out.recovery_keys[0]]).await.is_err());
        assert!(unseal_with(&core, &[&new[2], &new[0]]).await.unwrap());

        // Without an auto seal there are no recovery keys to rekey.
        let shamir = Database::connect(&StorageConfig::SqliteMemory)
            .await
            .unwrap();
        let core = start(&shamir, None).await.unwrap();
        let out = core.init(1, 1, "").await.unwrap();
        core.unseal(&out.keys[0], false).await.unwrap();
        let e = core
            .rekey_init_for(RekeyTarget::Recovery, 3, 2)
            .await
            .err()
            .unwrap();
        assert_eq!(e.to_string(), "recovery keys not supported");
    }

    // The transit seal against a stand-in transit server (plain HTTP; its
    // "ciphertext" is only the plaintext marked, enough to check the calls).

    use bulwark_shared::config::TransitSealSettings;
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const TOKEN: &str = "hvs.transit-seal-test-token";

    /// Serves `encrypt`/`decrypt` of key `k` under `transit/` on `listener`;
    /// answers 503 while `sealed`, 403 to another token.
    async fn fake_transit(
        listener: tokio::net::TcpListener,
        sealed: Arc<std::sync::atomic::AtomicBool>,
    ) {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let sealed = sealed.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (head, body) = loop {
                    let n = conn.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        if body.len() >= len {
                            break (head.to_string(), body.to_string());
                        }
                    }
                };
                let req: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
                let token_ok = head
                    .lines()
                    .any(|l| l.to_ascii_lowercase() == format!("x-vault-token: {TOKEN}"));
                let path = head.split(' ').nth(1).unwrap_or("").to_string();
                let (code, answer) = if sealed.load(std::sync::atomic::Ordering::SeqCst) {
                    (503, serde_json::json!({"errors": ["Vault is sealed"]}))
                } else if !token_ok {
                    (403, serde_json::json!({"errors": ["permission denied"]}))
                } else if path == "/v1/transit/encrypt/k" {
                    let p = req["plaintext"].as_str().unwrap();
                    (
                        200,
                        serde_json::json!({"data": {"ciphertext": format!("vault:v1:{p}")}}),
                    )
                } else if path == "/v1/transit/decrypt/k" {
                    let c = req["ciphertext"].as_str().unwrap();
                    let p = c.strip_prefix("vault:v1:").unwrap();
                    (200, serde_json::json!({"data": {"plaintext": p}}))
                } else {
                    (
                        404,
                        serde_json::json!({"errors": [format!("no handler for {path}")]}),
                    )
                };
                let text = answer.to_string();
                let reply = format!(
                    "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
            });
        }
    }

    fn transit_settings(port: u16, token: &str) -> SealSettings {
        SealSettings::Transit(TransitSealSettings {
            address: format!("http://127.0.0.1:{port}"),
            token: Zeroizing::new(token.to_string()),
            key_name: "k".into(),
            mount_path: "transit/".into(),
            namespace: None,
            ca_pem: None,
            client_identity_pem: None,
            server_name: None,
        })
    }

    #[tokio::test]
    async fn transit_seal_wraps_through_the_server_and_retries_at_start() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let sealed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let server = tokio::spawn(fake_transit(listener, sealed.clone()));

        let db = Database::connect(&StorageConfig::SqliteMemory)
            .await
            .unwrap();
        let load = |token: &str| {
            let settings = transit_settings(port, token);
            let db = db.clone();
            async move {
                SealCore::load_with(
                    db.namespace("seal").await.unwrap(),
                    db.kind(),
                    Some(settings),
                )
                .await
            }
        };
        let core = load(TOKEN).await.unwrap();
        let st = core.status().await.unwrap();
        assert_eq!((st.r#type.as_str(), st.recovery_seal), ("transit", true));
        let e = core
            .initialize(InitParams {
                secret_shares: 1,
                secret_threshold: 1,
                ..recovery(1, 1)
            })
            .await
            .err()
            .unwrap();
        assert!(e.to_string().contains("seal type transit"), "{e}");
        let out = core.initialize(recovery(1, 1)).await.unwrap();
        assert!(!core.status().await.unwrap().sealed);
        let (_, kv) = core.service_key(ServiceName::Kv, 0).await.unwrap();
        let raw = db
            .namespace("seal")
            .await
            .unwrap()
            .get("core/seal")
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&raw);
        assert!(
            text.contains("\"type\":\"transit\"") && text.contains("\"wrapped\":\"vault:v1:"),
            "{text}"
        );
        assert!(!text.contains(TOKEN));
        drop(core);

        // Restart: unsealed in the background, not by load_with.
        let core = Arc::new(load(TOKEN).await.unwrap());
        assert!(core.status().await.unwrap().sealed);
        assert!(core.needs_retrying_unseal().await);
        crate::core::retry_auto_unseal(Arc::downgrade(&core)).await;
        assert!(!core.status().await.unwrap().sealed);
        assert_eq!(*core.service_key(ServiceName::Kv, 0).await.unwrap().1, *kv);

        // A refused token: the error names the answer, never the token.
        core.seal().await.unwrap();
        let bad = load("hvs.wrong").await.unwrap();
        let e = bad
            .unseal(&out.recovery_keys[0], false)
            .await
            .err()
            .unwrap();
        let msg = e.to_string();
        assert!(
            msg.contains("403") && msg.contains("permission denied"),
            "{msg}"
        );
        assert!(!msg.contains("hvs.wrong") && !msg.contains(TOKEN), "{msg}");

        // The server sealed, then down: a start stays sealed and keeps trying;
        // it unseals once the server answers again.
        sealed.store(true, std::sync::atomic::Ordering::SeqCst);
        let core = Arc::new(load(TOKEN).await.unwrap());
        let retry = tokio::spawn(crate::core::retry_auto_unseal(Arc::downgrade(&core)));
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        assert!(core.status().await.unwrap().sealed);
        server.abort();
        let _ = server.await;
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        assert!(core.status().await.unwrap().sealed);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        sealed.store(false, std::sync::atomic::Ordering::SeqCst);
        let server = tokio::spawn(fake_transit(listener, sealed.clone()));
        tokio::time::timeout(std::time::Duration::from_secs(30), retry)
            .await
            .expect("unsealed in time")
            .unwrap();
        assert!(!core.status().await.unwrap().sealed);

        // sys/seal stops the background unseal.
        let core = Arc::new(load(TOKEN).await.unwrap());
        core.seal().await.unwrap();
        crate::core::retry_auto_unseal(Arc::downgrade(&core)).await;
        assert!(core.status().await.unwrap().sealed);
        server.abort();
    }
}
