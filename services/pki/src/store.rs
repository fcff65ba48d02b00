//! The pki store: every pki mount's issuers, keys, roles, certificates,
//! revocations, CRL and URL configuration through the barrier, and the
//! operations over them.
//!
//! ```text
//! m/<mount>/issuer/<id>        IssuerRecord (certificate, chain, key id)
//! m/<mount>/key/<id>           StoredKey (PKCS#8 PEM; never answered)
//! m/<mount>/config/issuers     the default issuer id
//! m/<mount>/config/urls        UrlsRecord
//! m/<mount>/role/<name>        RoleRecord
//! m/<mount>/cert/<serial>      CertRecord (serial in hyphen hex)
//! m/<mount>/revoked/<serial>   RevokedRecord
//! m/<mount>/crl/<issuer id>   CrlRecord (DER of that issuer's CRL)
//! ```
//!
//! Leaf TTLs: the request's `ttl`, else the role's, else the mount default,
//! else 768h; capped by the role's `max_ttl`, the mount max and — instead of
//! Vault's default `leaf_not_after_behavior=err` — by the CA's own notAfter
//! (with a warning in the answer).

use std::net::IpAddr;

use bulwark_proto::pki::v1 as pb;
use bulwark_shared::barrier::Barrier;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams,
    CertificateSigningRequestParams, CrlDistributionPoint, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, SanType,
    SerialNumber,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::crypto::{self, KeyFormat, KeySpec, StoredKey};
use crate::error::PkiError;
use crate::names;

/// Vault's system default and max lease TTL (768h), used when the gateway
/// passes no mount limits.
pub const SYSTEM_TTL: i64 = 768 * 3600;
/// Leaf certificates start this long before now (Vault's
/// `not_before_duration` default).
pub(crate) const NOT_BEFORE: i64 = 30;
/// How long a CRL is valid (Vault's `config/crl` expiry default, 72h).
const CRL_EXPIRY: i64 = 72 * 3600;
/// How many times a CRL rebuild is tried against concurrent rebuilds.
const CRL_ATTEMPTS: u32 = 50;
/// A stored CRL is rebuilt when read this close to its nextUpdate.
const CRL_REFRESH: i64 = 24 * 3600;
/// The longest mount id accepted, in bytes.
const MAX_MOUNT_LEN: usize = 256;

/// A CA certificate this mount can sign with.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuerRecord {
    pub id: String,
    pub name: String,
    pub key_id: String,
    /// PEM.
    pub certificate: String,
    /// PEM, this issuer first, up to the root.
    pub ca_chain: Vec<String>,
    /// Colon hex.
    pub serial_number: String,
    pub not_after: i64,
}

/// A role, as stored (the proto `Role`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RoleRecord {
    pub ttl: i64,
    pub max_ttl: i64,
    pub allow_localhost: bool,
    pub allowed_domains: Vec<String>,
    pub allow_bare_domains: bool,
    pub allow_subdomains: bool,
    pub allow_glob_domains: bool,
    pub allow_any_name: bool,
    pub enforce_hostnames: bool,
    pub allow_ip_sans: bool,
    pub server_flag: bool,
    pub client_flag: bool,
    pub key_type: String,
    pub key_bits: i32,
    pub no_store: bool,
    pub generate_lease: bool,
    pub ou: Vec<String>,
    pub organization: Vec<String>,
    /// `""` = the default issuer.
    pub issuer_ref: String,
}

impl From<pb::Role> for RoleRecord {
    fn from(r: pb::Role) -> Self {
        RoleRecord {
            ttl: r.ttl,
            max_ttl: r.max_ttl,
            allow_localhost: r.allow_localhost,
            allowed_domains: r.allowed_domains,
            allow_bare_domains: r.allow_bare_domains,
            allow_subdomains: r.allow_subdomains,
            allow_glob_domains: r.allow_glob_domains,
            allow_any_name: r.allow_any_name,
            enforce_hostnames: r.enforce_hostnames,
            allow_ip_sans: r.allow_ip_sans,
            server_flag: r.server_flag,
            client_flag: r.client_flag,
            key_type: r.key_type,
            key_bits: r.key_bits,
            no_store: r.no_store,
            generate_lease: r.generate_lease,
            ou: r.ou,
            organization: r.organization,
            issuer_ref: r.issuer_ref,
        }
    }
}

impl From<RoleRecord> for pb::Role {
    fn from(r: RoleRecord) -> Self {
        pb::Role {
            ttl: r.ttl,
            max_ttl: r.max_ttl,
            allow_localhost: r.allow_localhost,
            allowed_domains: r.allowed_domains,
            allow_bare_domains: r.allow_bare_domains,
            allow_subdomains: r.allow_subdomains,
            allow_glob_domains: r.allow_glob_domains,
            allow_any_name: r.allow_any_name,
            enforce_hostnames: r.enforce_hostnames,
            allow_ip_sans: r.allow_ip_sans,
            server_flag: r.server_flag,
            client_flag: r.client_flag,
            key_type: r.key_type,
            key_bits: r.key_bits,
            no_store: r.no_store,
            generate_lease: r.generate_lease,
            ou: r.ou,
            organization: r.organization,
            issuer_ref: r.issuer_ref,
        }
    }
}

/// An issued (or issuer) certificate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertRecord {
    pub certificate: String,
    pub issuer_id: String,
    pub not_after: i64,
}

/// A revocation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RevokedRecord {
    pub revocation_time: i64,
    pub issuer_id: String,
    pub not_after: i64,
}

/// The current CRL of the default issuer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CrlRecord {
    pub issuer_id: String,
    pub number: u64,
    pub der: Vec<u8>,
    /// Unix seconds; 0 in records of older versions (rebuilt at once).
    #[serde(default)]
    pub next_update: i64,
}

/// `config/urls`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct UrlsRecord {
    pub issuing_certificates: Vec<String>,
    pub crl_distribution_points: Vec<String>,
    pub ocsp_servers: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct DefaultIssuer {
    default: String,
}

/// Refuses an empty mount id, or one holding `/` or a NUL byte.
pub(crate) fn check_mount(mount: &str) -> Result<(), PkiError> {
    if mount.is_empty() {
        return Err(PkiError::invalid("missing mount id"));
    }
    if mount.len() > MAX_MOUNT_LEN || mount.contains(['/', '\0']) {
        return Err(PkiError::invalid("invalid mount id"));
    }
    Ok(())
}

/// Refuses a role or issuer name that cannot be a storage key segment.
pub(crate) fn check_name(what: &str, name: &str) -> Result<(), PkiError> {
    if name.is_empty() || name.len() > 256 || name.contains(['/', '\0']) || name == ".." {
        return Err(PkiError::invalid(format!("invalid {what} name {name:?}")));
    }
    Ok(())
}

/// Key generation (RSA takes a while) on the blocking pool.
pub(crate) async fn generate_off_thread(spec: KeySpec) -> Result<(KeyPair, StoredKey), PkiError> {
    let span = tracing::info_span!("crypto.keygen", key_type = ?spec);
    tokio::task::spawn_blocking(move || span.in_scope(|| crypto::generate(spec)))
        .await
        .map_err(|e| PkiError::Crypto(e.to_string()))?
}

pub(crate) fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

pub(crate) fn datetime(unix: i64) -> Result<OffsetDateTime, PkiError> {
    OffsetDateTime::from_unix_timestamp(unix).map_err(|_| PkiError::invalid("time out of range"))
}

/// RFC 3339 text of a Unix time (`""` for 0).
pub fn rfc3339(unix: i64) -> String {
    if unix == 0 {
        return String::new();
    }
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// The parsed facts of one DER certificate we need.
pub(crate) struct CertFacts {
    pub serial: String,
    pub not_after: i64,
    pub is_ca: bool,
    pub public_key: Vec<u8>,
}

/// Parses a DER certificate (refused as InvalidArgument).
pub(crate) fn cert_facts(der: &[u8]) -> Result<CertFacts, PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|_| PkiError::invalid("the certificate could not be parsed"))?;
    Ok(CertFacts {
        serial: crypto::colon_hex(cert.raw_serial()),
        not_after: cert.validity().not_after.timestamp(),
        is_ca: cert.is_ca(),
        public_key: cert.public_key().subject_public_key.data.to_vec(),
    })
}

/// The certificates of a PEM text, DER, in order; refused unless there is
/// at least one and every block parses.
pub(crate) fn pem_certificates(text: &str) -> Result<Vec<Vec<u8>>, PkiError> {
    let blocks =
        crypto::pem_blocks(text).ok_or_else(|| PkiError::invalid("no data found in PEM block"))?;
    let certs: Vec<Vec<u8>> = blocks
        .iter()
        .filter(|(label, _)| label == "CERTIFICATE")
        .map(|(_, der)| der.to_vec())
        .collect();
    if certs.is_empty() {
        return Err(PkiError::invalid("no certificate found in PEM data"));
    }
    Ok(certs)
}

/// A DN string value as text.
pub(crate) fn dn_text(value: &DnValue) -> Option<String> {
    match value {
        DnValue::Utf8String(s) => Some(s.clone()),
        DnValue::PrintableString(s) => Some(s.as_str().to_string()),
        DnValue::Ia5String(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

/// The names a certificate will carry.
pub(crate) struct Names {
    pub common_name: String,
    pub dns: Vec<String>,
    pub ips: Vec<IpAddr>,
}

pub(crate) fn parse_ips(ips: &[String]) -> Result<Vec<IpAddr>, PkiError> {
    ips.iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpAddr>().map_err(|_| {
                PkiError::invalid(format!("the value {s:?} is not a valid IP address"))
            })
        })
        .collect()
}

/// The common name (unless excluded or not a hostname), then `alt_names`,
/// trimmed, without duplicates.
pub(crate) fn dns_names(common_name: &str, alt_names: &[String], exclude_cn: bool) -> Vec<String> {
    let mut dns: Vec<String> = Vec::new();
    let mut push = |n: &str| {
        let n = n.trim();
        if !n.is_empty() && !dns.iter().any(|d| d.eq_ignore_ascii_case(n)) {
            dns.push(n.to_string());
        }
    };
    // As Vault: the common name joins the DNS SANs only if it is a DNS name.
    if !exclude_cn && names::is_hostname(common_name.trim()) {
        push(common_name);
    }
    for n in alt_names {
        push(n);
    }
    dns
}

/// The subject of a certificate.
pub(crate) fn subject(
    common_name: &str,
    organization: &[String],
    ou: &[String],
) -> rcgen::DistinguishedName {
    let mut dn = rcgen::DistinguishedName::new();
    for o in organization.iter().filter(|o| !o.is_empty()) {
        dn.push(DnType::OrganizationName, o.as_str());
    }
    for u in ou.iter().filter(|u| !u.is_empty()) {
        dn.push(DnType::OrganizationalUnitName, u.as_str());
    }
    if !common_name.is_empty() {
        dn.push(DnType::CommonName, common_name);
    }
    dn
}

pub(crate) fn sans(names: &Names) -> Result<Vec<SanType>, PkiError> {
    let mut out = Vec::new();
    for d in &names.dns {
        let ia5 = d
            .as_str()
            .try_into()
            .map_err(|_| PkiError::invalid(format!("invalid DNS name {d:?}")))?;
        out.push(SanType::DnsName(ia5));
    }
    out.extend(names.ips.iter().map(|ip| SanType::IpAddress(*ip)));
    Ok(out)
}

/// Caps `ttl` by `max` (with a warning).
pub(crate) fn cap_ttl(ttl: i64, max: i64, warnings: &mut Vec<String>) -> i64 {
    if max > 0 && ttl > max {
        warnings.push(format!(
            "TTL \"{ttl}s\" is longer than permitted maxTTL \"{max}s\", so maxTTL is being used"
        ));
        max
    } else {
        ttl
    }
}

pub(crate) fn mount_ttl(m: Option<&pb::MountTtl>) -> (i64, i64) {
    let m = m.cloned().unwrap_or_default();
    let max = if m.max_ttl > 0 { m.max_ttl } else { SYSTEM_TTL };
    let default = if m.default_ttl > 0 {
        m.default_ttl
    } else {
        max
    };
    (default, max)
}

/// A leaf's notAfter under the rules in the module documentation.
fn leaf_not_after(
    requested: i64,
    role: Option<&RoleRecord>,
    mount: Option<&pb::MountTtl>,
    ca_not_after: i64,
    now: i64,
    warnings: &mut Vec<String>,
) -> Result<i64, PkiError> {
    if requested < 0 {
        return Err(PkiError::invalid("ttl must not be negative"));
    }
    let (mount_default, mount_max) = mount_ttl(mount);
    let role_ttl = role.map_or(0, |r| r.ttl);
    let role_max = role.map_or(0, |r| r.max_ttl);
    let ttl = if requested > 0 {
        requested
    } else if role_ttl > 0 {
        role_ttl
    } else {
        mount_default
    };
    let ttl = cap_ttl(ttl, role_max, warnings);
    let ttl = cap_ttl(ttl, mount_max, warnings);
    let mut not_after = now.saturating_add(ttl);
    if not_after > ca_not_after {
        warnings.push(format!(
            "the requested TTL would end after the CA certificate (notAfter {}); the certificate's notAfter was capped to the CA's",
            rfc3339(ca_not_after)
        ));
        not_after = ca_not_after;
    }
    if not_after <= now {
        return Err(PkiError::invalid("the CA certificate has expired"));
    }
    Ok(not_after)
}

/// Writes `config/urls` into a certificate: CRL distribution points and
/// Authority Information Access (caIssuers, OCSP).
pub(crate) fn apply_urls(params: &mut CertificateParams, urls: &UrlsRecord) {
    if !urls.crl_distribution_points.is_empty() {
        params.crl_distribution_points = vec![CrlDistributionPoint {
            uris: urls.crl_distribution_points.clone(),
        }];
    }
    if let Some(aia) = crypto::authority_info_access(&urls.issuing_certificates, &urls.ocsp_servers)
    {
        params.custom_extensions.push(aia);
    }
}

/// The pki data of every mount.
pub struct PkiStore {
    pub(crate) barrier: Barrier,
}

/// A loaded signer: the issuer and its key pair (wiped with the key).
pub(crate) struct Signer {
    pub issuer: IssuerRecord,
    pub key: KeyPair,
}

impl PkiStore {
    /// A store over `barrier` (the `pki` namespace).
    pub fn new(barrier: Barrier) -> Self {
        PkiStore { barrier }
    }

    /// Refuses with "Vault is sealed" while this service holds no data key.
    pub async fn ensure_unsealed(&self) -> Result<(), PkiError> {
        self.barrier.keyring().ensure_active().await?;
        Ok(())
    }

    pub(crate) async fn get<T: DeserializeOwned>(
        &self,
        what: &'static str,
        path: &str,
    ) -> Result<Option<T>, PkiError> {
        match self.barrier.get(path).await? {
            Some(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|_| PkiError::Corrupt {
                        what,
                        path: path.to_string(),
                    })
            }
            None => Ok(None),
        }
    }

    pub(crate) async fn put<T: Serialize>(&self, path: &str, value: &T) -> Result<(), PkiError> {
        Ok(self.barrier.put_json(path, value).await?)
    }

    // === issuers ===

    pub(crate) async fn default_issuer_id(&self, mount: &str) -> Result<Option<String>, PkiError> {
        Ok(self
            .get::<DefaultIssuer>("default issuer", &format!("m/{mount}/config/issuers"))
            .await?
            .map(|d| d.default)
            .filter(|d| !d.is_empty()))
    }

    pub(crate) async fn issuer_ids(&self, mount: &str) -> Result<Vec<String>, PkiError> {
        Ok(self.barrier.list(&format!("m/{mount}/issuer/")).await?)
    }

    /// An issuer by `default`, id or name.
    pub async fn find_issuer(
        &self,
        mount: &str,
        reference: &str,
    ) -> Result<Option<IssuerRecord>, PkiError> {
        check_mount(mount)?;
        let reference = if reference.is_empty() {
            "default"
        } else {
            reference
        };
        if reference == "default" {
            return match self.default_issuer_id(mount).await? {
                Some(id) => self.get("issuer", &format!("m/{mount}/issuer/{id}")).await,
                None => Ok(None),
            };
        }
        check_name("issuer", reference)?;
        if let Some(found) = self
            .get::<IssuerRecord>("issuer", &format!("m/{mount}/issuer/{reference}"))
            .await?
        {
            return Ok(Some(found));
        }
        for id in self.issuer_ids(mount).await? {
            if let Some(i) = self
                .get::<IssuerRecord>("issuer", &format!("m/{mount}/issuer/{id}"))
                .await?
            {
                if i.name == reference {
                    return Ok(Some(i));
                }
            }
        }
        Ok(None)
    }

    /// The issuer named by `reference` (`""` = `default`) with its key.
    pub(crate) async fn signer(&self, mount: &str, reference: &str) -> Result<Signer, PkiError> {
        let issuer = match self.find_issuer(mount, reference).await? {
            Some(i) => i,
            None if reference.is_empty() || reference == "default" => {
                return Err(PkiError::invalid("no default issuer currently configured"))
            }
            None => {
                return Err(PkiError::invalid(format!(
                    "unable to find PKI issuer for reference: {reference}"
                )))
            }
        };
        let key: StoredKey = self
            .get("key", &format!("m/{mount}/key/{}", issuer.key_id))
            .await?
            .ok_or_else(|| PkiError::invalid("the default issuer has no private key"))?;
        Ok(Signer {
            key: key.key_pair()?,
            issuer,
        })
    }

    /// Stores a new issuer (and makes it the default if there is none),
    /// and, if `generated` here, its certificate under `cert/`.
    pub(crate) async fn add_issuer(
        &self,
        mount: &str,
        issuer: &IssuerRecord,
        generated: bool,
    ) -> Result<(), PkiError> {
        self.put(&format!("m/{mount}/issuer/{}", issuer.id), issuer)
            .await?;
        let serial = crypto::serial_key(&issuer.serial_number)?;
        // Like Vault, generated CA certificates are listed under certs/,
        // imported ones are not.
        if generated {
            self.put(
                &format!("m/{mount}/cert/{serial}"),
                &CertRecord {
                    certificate: issuer.certificate.clone(),
                    issuer_id: issuer.id.clone(),
                    not_after: issuer.not_after,
                },
            )
            .await?;
        }
        if self.default_issuer_id(mount).await?.is_none() {
            self.put(
                &format!("m/{mount}/config/issuers"),
                &DefaultIssuer {
                    default: issuer.id.clone(),
                },
            )
            .await?;
        }
        Ok(())
    }

    /// `root/generate/:type`.
    pub async fn generate_root(
        &self,
        req: &pb::GenerateRootRequest,
    ) -> Result<pb::GenerateRootResponse, PkiError> {
        check_mount(&req.mount)?;
        if req.common_name.trim().is_empty() {
            return Err(PkiError::invalid("the common_name field is required"));
        }
        if !req.issuer_name.is_empty() {
            check_name("issuer", &req.issuer_name)?;
            if req.issuer_name == "default" {
                return Err(PkiError::invalid("reserved issuer name \"default\""));
            }
            if self
                .find_issuer(&req.mount, &req.issuer_name)
                .await?
                .is_some()
            {
                return Err(PkiError::invalid(format!(
                    "issuer name already in use: {}",
                    req.issuer_name
                )));
            }
        }
        let spec = KeySpec::parse(&req.key_type, req.key_bits)?;
        let key_format = KeyFormat::parse(&req.private_key_format)?;
        let names = Names {
            common_name: req.common_name.trim().to_string(),
            dns: dns_names("", &req.alt_names, true),
            ips: parse_ips(&req.ip_sans)?,
        };
        let mut warnings = Vec::new();
        let (_, mount_max) = mount_ttl(req.mount_ttl.as_ref());
        if req.ttl < 0 {
            return Err(PkiError::invalid("ttl must not be negative"));
        }
        let ttl = if req.ttl > 0 { req.ttl } else { mount_max };
        let ttl = cap_ttl(ttl, mount_max, &mut warnings);
        let now = now();
        let serial = crypto::random_serial();

        let mut params = CertificateParams::default();
        params.distinguished_name = subject(&names.common_name, &req.organization, &req.ou);
        params.subject_alt_names = sans(&names)?;
        params.not_before = datetime(now - NOT_BEFORE)?;
        params.not_after = datetime(now.saturating_add(ttl))?;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.is_ca = match req.max_path_length {
            n if n < 0 => IsCa::Ca(BasicConstraints::Unconstrained),
            n => IsCa::Ca(BasicConstraints::Constrained(
                u8::try_from(n).map_err(|_| PkiError::invalid("max_path_length is too large"))?,
            )),
        };
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        params.key_identifier_method = KeyIdMethod::Sha256;
        let (key, stored) = generate_off_thread(spec).await?;
        let cert = params
            .self_signed(&key)
            .map_err(|e| PkiError::Crypto(e.to_string()))?;
        let pem = cert.pem();
        let facts = cert_facts(cert.der())?;

        let key_id = uuid::Uuid::new_v4().to_string();
        let issuer = IssuerRecord {
            id: uuid::Uuid::new_v4().to_string(),
            name: req.issuer_name.clone(),
            key_id: key_id.clone(),
            certificate: pem.clone(),
            ca_chain: vec![pem.clone()],
            serial_number: facts.serial.clone(),
            not_after: facts.not_after,
        };
        self.put(&format!("m/{}/key/{key_id}", req.mount), &stored)
            .await?;
        self.add_issuer(&req.mount, &issuer, true).await?;
        Ok(pb::GenerateRootResponse {
            certificate: pem.clone(),
            issuing_ca: pem,
            serial_number: facts.serial,
            expiration: facts.not_after,
            issuer_id: issuer.id,
            issuer_name: issuer.name,
            key_id,
            key_name: req.key_name.clone(),
            private_key: if req.exported {
                stored.export(key_format)?.to_string()
            } else {
                String::new()
            },
            private_key_type: if req.exported {
                spec.name().to_string()
            } else {
                String::new()
            },
            warnings,
        })
    }

    /// Every issuer id of a mount.
    pub async fn list_issuers(&self, mount: &str) -> Result<Vec<String>, PkiError> {
        check_mount(mount)?;
        self.issuer_ids(mount).await
    }

    /// Whether `id` is the default issuer.
    pub async fn is_default(&self, mount: &str, id: &str) -> Result<bool, PkiError> {
        Ok(self.default_issuer_id(mount).await?.as_deref() == Some(id))
    }

    /// `DELETE pki/root`: every issuer and key (certificates, roles and
    /// revocations stay, as in Vault).
    pub async fn delete_root(&self, mount: &str) -> Result<(), PkiError> {
        check_mount(mount)?;
        for id in self.issuer_ids(mount).await? {
            self.barrier
                .delete(&format!("m/{mount}/issuer/{id}"))
                .await?;
        }
        for id in self.barrier.list(&format!("m/{mount}/key/")).await? {
            self.barrier.delete(&format!("m/{mount}/key/{id}")).await?;
        }
        self.barrier
            .delete(&format!("m/{mount}/config/issuers"))
            .await?;
        for id in self.barrier.list(&format!("m/{mount}/crl/")).await? {
            self.barrier.delete(&format!("m/{mount}/crl/{id}")).await?;
        }
        Ok(())
    }

    // === config/urls ===

    pub async fn read_urls(&self, mount: &str) -> Result<UrlsRecord, PkiError> {
        check_mount(mount)?;
        Ok(self
            .get("urls", &format!("m/{mount}/config/urls"))
            .await?
            .unwrap_or_default())
    }

    pub async fn write_urls(&self, mount: &str, urls: pb::UrlsConfig) -> Result<(), PkiError> {
        check_mount(mount)?;
        let clean = |v: Vec<String>| -> Result<Vec<String>, PkiError> {
            let v: Vec<String> = v
                .iter()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            for u in &v {
                if !u.is_ascii() || !u.contains(':') || u.contains(char::is_whitespace) {
                    return Err(PkiError::invalid(format!("invalid URL {u:?}")));
                }
            }
            Ok(v)
        };
        let record = UrlsRecord {
            issuing_certificates: clean(urls.issuing_certificates)?,
            crl_distribution_points: clean(urls.crl_distribution_points)?,
            ocsp_servers: clean(urls.ocsp_servers)?,
        };
        self.put(&format!("m/{mount}/config/urls"), &record).await
    }

    // === roles ===

    pub async fn write_role(
        &self,
        mount: &str,
        name: &str,
        role: pb::Role,
    ) -> Result<(), PkiError> {
        check_mount(mount)?;
        check_name("role", name)?;
        let role = RoleRecord::from(role);
        if role.key_type != "any" {
            KeySpec::parse(&role.key_type, role.key_bits)?;
        }
        if role.ttl < 0 || role.max_ttl < 0 {
            return Err(PkiError::invalid("ttl and max_ttl must not be negative"));
        }
        if role.max_ttl > 0 && role.ttl > role.max_ttl {
            return Err(PkiError::invalid(
                "\"ttl\" value must be less than \"max_ttl\" value",
            ));
        }
        self.put(&format!("m/{mount}/role/{name}"), &role).await
    }

    pub async fn read_role(&self, mount: &str, name: &str) -> Result<Option<RoleRecord>, PkiError> {
        check_mount(mount)?;
        check_name("role", name)?;
        self.get("role", &format!("m/{mount}/role/{name}")).await
    }

    pub async fn list_roles(&self, mount: &str) -> Result<Vec<String>, PkiError> {
        check_mount(mount)?;
        Ok(self.barrier.list(&format!("m/{mount}/role/")).await?)
    }

    pub async fn delete_role(&self, mount: &str, name: &str) -> Result<(), PkiError> {
        check_mount(mount)?;
        check_name("role", name)?;
        Ok(self
            .barrier
            .delete(&format!("m/{mount}/role/{name}"))
            .await?)
    }

    async fn role(&self, mount: &str, name: &str) -> Result<RoleRecord, PkiError> {
        self.read_role(mount, name)
            .await?
            .ok_or_else(|| PkiError::invalid(format!("unknown role: {name}")))
    }

    // === issuing ===

    /// Builds, signs and (unless `no_store`) stores one leaf certificate.
    #[allow(clippy::too_many_arguments)]
    async fn sign_leaf(
        &self,
        mount: &str,
        names: &Names,
        role: Option<&RoleRecord>,
        requested_ttl: i64,
        mount_ttl: Option<&pb::MountTtl>,
        public_key: &impl rcgen::PublicKeyData,
        verbatim: Option<&CertificateParams>,
        issuer_ref: &str,
    ) -> Result<pb::IssueResponse, PkiError> {
        // The request's issuer_ref, else the role's, else the default.
        let reference = match (issuer_ref, role) {
            ("", Some(r)) => r.issuer_ref.as_str(),
            (reference, _) => reference,
        };
        let signer = self.signer(mount, reference).await?;
        let urls = self.read_urls(mount).await?;
        let now = now();
        let mut warnings = Vec::new();
        let not_after = leaf_not_after(
            requested_ttl,
            role,
            mount_ttl,
            signer.issuer.not_after,
            now,
            &mut warnings,
        )?;
        let serial = crypto::random_serial();
        let mut params = CertificateParams::default();
        let (org, ou) = role.map_or((&[][..], &[][..]), |r| (&r.organization[..], &r.ou[..]));
        params.distinguished_name = match verbatim {
            Some(csr) => csr.distinguished_name.clone(),
            None => subject(&names.common_name, org, ou),
        };
        params.subject_alt_names = sans(names)?;
        params.not_before = datetime(now - NOT_BEFORE)?;
        params.not_after = datetime(not_after)?;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        match verbatim {
            Some(csr) => {
                params.key_usages = csr.key_usages.clone();
                params.extended_key_usages = csr.extended_key_usages.clone();
            }
            None => {
                params.key_usages = vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyEncipherment,
                    KeyUsagePurpose::KeyAgreement,
                ];
                if let Some(r) = role {
                    if r.server_flag {
                        params
                            .extended_key_usages
                            .push(ExtendedKeyUsagePurpose::ServerAuth);
                    }
                    if r.client_flag {
                        params
                            .extended_key_usages
                            .push(ExtendedKeyUsagePurpose::ClientAuth);
                    }
                }
            }
        }
        apply_urls(&mut params, &urls);
        let issuer = Issuer::from_ca_cert_pem(&signer.issuer.certificate, &signer.key)
            .map_err(|e| PkiError::Crypto(e.to_string()))?;
        let cert = params
            .signed_by(public_key, &issuer)
            .map_err(|e| PkiError::Crypto(e.to_string()))?;
        let pem = cert.pem();
        let serial_number = crypto::colon_hex(&serial);
        if !role.is_some_and(|r| r.no_store) {
            self.put(
                &format!("m/{mount}/cert/{}", crypto::serial_key(&serial_number)?),
                &CertRecord {
                    certificate: pem.clone(),
                    issuer_id: signer.issuer.id.clone(),
                    not_after,
                },
            )
            .await?;
        }
        Ok(pb::IssueResponse {
            certificate: pem,
            issuing_ca: signer.issuer.certificate.clone(),
            ca_chain: signer.issuer.ca_chain.clone(),
            private_key: String::new(),
            private_key_type: String::new(),
            serial_number,
            expiration: not_after,
            warnings,
            generate_lease: role.is_some_and(|r| r.generate_lease),
        })
    }

    /// The names of an issue or sign request, checked against `role`.
    fn role_names(
        role: &RoleRecord,
        common_name: &str,
        alt_names: &[String],
        ip_sans: &[String],
        exclude_cn: bool,
    ) -> Result<Names, PkiError> {
        let common_name = common_name.trim();
        if common_name.is_empty() {
            return Err(PkiError::invalid(
                "the common_name field is required, or must be provided in a CSR with \"use_csr_common_name\" set to true, unless \"require_cn\" is set to false",
            ));
        }
        let alt: Vec<String> = dns_names("", alt_names, true);
        names::check_names(role, common_name, &alt)?;
        let ips = parse_ips(ip_sans)?;
        if !ips.is_empty() && !role.allow_ip_sans {
            return Err(PkiError::invalid(
                "IP Subject Alternative Names are not allowed in this role",
            ));
        }
        Ok(Names {
            common_name: common_name.to_string(),
            dns: dns_names(common_name, &alt, exclude_cn),
            ips,
        })
    }

    /// `issue/:role`.
    pub async fn issue(&self, req: &pb::IssueRequest) -> Result<pb::IssueResponse, PkiError> {
        check_mount(&req.mount)?;
        let role = self.role(&req.mount, &req.role).await?;
        if role.key_type == "any" {
            return Err(PkiError::invalid(
                "role key type \"any\" not allowed for issuing certificates, only signing",
            ));
        }
        let spec = KeySpec::parse(&role.key_type, role.key_bits)?;
        let key_format = KeyFormat::parse(&req.private_key_format)?;
        let names = Self::role_names(
            &role,
            &req.common_name,
            &req.alt_names,
            &req.ip_sans,
            req.exclude_cn_from_sans,
        )?;
        let (key, stored) = generate_off_thread(spec).await?;
        let mut out = self
            .sign_leaf(
                &req.mount,
                &names,
                Some(&role),
                req.ttl,
                req.mount_ttl.as_ref(),
                &key,
                None,
                &req.issuer_ref,
            )
            .await?;
        out.private_key = stored.export(key_format)?.to_string();
        out.private_key_type = spec.name().to_string();
        Ok(out)
    }

    /// `sign/:role` (role rules on the CSR's names) and `sign-verbatim`
    /// (`verbatim`: the CSR's subject, names and key usages as they are).
    pub async fn sign(
        &self,
        req: &pb::SignRequest,
        verbatim: bool,
    ) -> Result<pb::IssueResponse, PkiError> {
        check_mount(&req.mount)?;
        let csr = CertificateSigningRequestParams::from_pem(&req.csr).map_err(|_| {
            PkiError::invalid("the CSR could not be parsed or its signature is invalid")
        })?;
        let csr_cn = csr
            .params
            .distinguished_name
            .get(&DnType::CommonName)
            .and_then(dn_text)
            .unwrap_or_default();
        let common_name = if csr_cn.is_empty() {
            req.common_name.clone()
        } else {
            csr_cn
        };
        let mut alt: Vec<String> = req.alt_names.clone();
        let mut ips: Vec<String> = req.ip_sans.clone();
        for san in &csr.params.subject_alt_names {
            match san {
                SanType::DnsName(n) => alt.push(n.as_str().to_string()),
                SanType::IpAddress(ip) => ips.push(ip.to_string()),
                _ => {
                    return Err(PkiError::invalid(
                        "only DNS and IP subject alternative names are supported in CSRs",
                    ))
                }
            }
        }
        if verbatim && req.role.is_empty() {
            let names = Names {
                dns: dns_names(&common_name, &alt, req.exclude_cn_from_sans),
                common_name,
                ips: parse_ips(&ips)?,
            };
            return self
                .sign_leaf(
                    &req.mount,
                    &names,
                    None,
                    req.ttl,
                    req.mount_ttl.as_ref(),
                    &csr.public_key,
                    Some(&csr.params),
                    &req.issuer_ref,
                )
                .await;
        }
        let role = self.role(&req.mount, &req.role).await?;
        if verbatim {
            // sign-verbatim/:role uses the role for TTLs and storage only.
            let names = Names {
                dns: dns_names(&common_name, &alt, req.exclude_cn_from_sans),
                common_name,
                ips: parse_ips(&ips)?,
            };
            return self
                .sign_leaf(
                    &req.mount,
                    &names,
                    Some(&role),
                    req.ttl,
                    req.mount_ttl.as_ref(),
                    &csr.public_key,
                    Some(&csr.params),
                    &req.issuer_ref,
                )
                .await;
        }
        if role.key_type != "any" {
            let want = KeySpec::parse(&role.key_type, role.key_bits)?;
            let alg = csr.public_key.algorithm();
            let got = if alg == &rcgen::PKCS_ED25519 {
                "ed25519"
            } else if alg == &rcgen::PKCS_ECDSA_P256_SHA256 || alg == &rcgen::PKCS_ECDSA_P384_SHA384
            {
                "ec"
            } else {
                "rsa"
            };
            if got != want.name() {
                return Err(PkiError::invalid(format!(
                    "role requires keys of type {} but the CSR has a {got} key",
                    want.name()
                )));
            }
        }
        let names = Self::role_names(&role, &common_name, &alt, &ips, req.exclude_cn_from_sans)?;
        self.sign_leaf(
            &req.mount,
            &names,
            Some(&role),
            req.ttl,
            req.mount_ttl.as_ref(),
            &csr.public_key,
            None,
            &req.issuer_ref,
        )
        .await
    }

    // === certificates, revocation, CRL ===

    pub async fn read_cert(
        &self,
        mount: &str,
        serial: &str,
    ) -> Result<Option<(CertRecord, Option<RevokedRecord>)>, PkiError> {
        check_mount(mount)?;
        let key = crypto::serial_key(serial)?;
        let Some(cert) = self
            .get::<CertRecord>("certificate", &format!("m/{mount}/cert/{key}"))
            .await?
        else {
            return Ok(None);
        };
        let revoked = self
            .get("revocation", &format!("m/{mount}/revoked/{key}"))
            .await?;
        Ok(Some((cert, revoked)))
    }

    pub async fn list_certs(&self, mount: &str) -> Result<Vec<String>, PkiError> {
        check_mount(mount)?;
        let keys = self.barrier.list(&format!("m/{mount}/cert/")).await?;
        Ok(keys.iter().map(|k| crypto::key_to_colon(k)).collect())
    }

    pub async fn list_revoked(&self, mount: &str) -> Result<Vec<String>, PkiError> {
        check_mount(mount)?;
        let keys = self.barrier.list(&format!("m/{mount}/revoked/")).await?;
        Ok(keys.iter().map(|k| crypto::key_to_colon(k)).collect())
    }

    /// `revoke`: by serial or by certificate PEM; the revocation time (the
    /// first one if already revoked). The CRL is rebuilt.
    pub async fn revoke(&self, req: &pb::RevokeRequest) -> Result<i64, PkiError> {
        check_mount(&req.mount)?;
        let mut presented = None;
        let serial = match (req.serial_number.trim(), req.certificate.trim()) {
            (s, "") if !s.is_empty() => crypto::serial_key(s)?,
            ("", pem) if !pem.is_empty() => {
                let certs = pem_certificates(pem)?;
                let der = certs
                    .into_iter()
                    .next()
                    .ok_or_else(|| PkiError::invalid("no certificate found in PEM data"))?;
                let serial = crypto::serial_key(&cert_facts(&der)?.serial)?;
                presented = Some(der);
                serial
            }
            _ => {
                return Err(PkiError::invalid(
                    "exactly one of serial_number or certificate is required",
                ))
            }
        };
        let colon = crypto::key_to_colon(&serial);
        for id in self.issuer_ids(&req.mount).await? {
            if let Some(i) = self
                .get::<IssuerRecord>("issuer", &format!("m/{}/issuer/{id}", req.mount))
                .await?
            {
                if i.serial_number == colon {
                    return Err(PkiError::invalid(format!(
                        "adding issuer (id: {id}) to its own CRL is not allowed"
                    )));
                }
            }
        }
        let (issuer_id, not_after) = match self.read_cert(&req.mount, &serial).await? {
            Some((_, Some(r))) => return Ok(r.revocation_time),
            Some((cert, None)) => (cert.issuer_id, cert.not_after),
            // Not stored (no_store): a presented certificate that one of
            // this mount's issuers signed may still be revoked.
            None => match &presented {
                Some(der) => self
                    .verify_issued_here(&req.mount, der)
                    .await?
                    .ok_or_else(|| {
                        PkiError::invalid(format!(
                            "certificate with serial {colon} was not issued by this mount"
                        ))
                    })?,
                None => {
                    return Err(PkiError::invalid(format!(
                        "certificate with serial {colon} not found."
                    )))
                }
            },
        };
        if let Some(r) = self
            .get::<RevokedRecord>("revocation", &format!("m/{}/revoked/{serial}", req.mount))
            .await?
        {
            return Ok(r.revocation_time);
        }
        let record = RevokedRecord {
            revocation_time: now(),
            issuer_id,
            not_after,
        };
        let path = format!("m/{}/revoked/{serial}", req.mount);
        let bytes = serde_json::to_vec(&record).map_err(|e| PkiError::Crypto(e.to_string()))?;
        // Create-only: of racing revocations the first time stays.
        if !self.barrier.create(&path, &bytes).await? {
            if let Some(r) = self.get::<RevokedRecord>("revocation", &path).await? {
                return Ok(r.revocation_time);
            }
        }
        self.rotate_issuer_crl(&req.mount, &record.issuer_id)
            .await?;
        Ok(record.revocation_time)
    }

    /// The issuer of this mount whose key signed `der`, with the
    /// certificate's notAfter; `None` if none did.
    async fn verify_issued_here(
        &self,
        mount: &str,
        der: &[u8],
    ) -> Result<Option<(String, i64)>, PkiError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|_| PkiError::invalid("the certificate could not be parsed"))?;
        for id in self.issuer_ids(mount).await? {
            let Some(i) = self
                .get::<IssuerRecord>("issuer", &format!("m/{mount}/issuer/{id}"))
                .await?
            else {
                continue;
            };
            let Some(ca_der) = pem_certificates(&i.certificate)?.into_iter().next() else {
                continue;
            };
            let Ok((_, ca)) = x509_parser::parse_x509_certificate(&ca_der) else {
                continue;
            };
            if cert.issuer() == ca.subject() && cert.verify_signature(Some(ca.public_key())).is_ok()
            {
                return Ok(Some((i.id, cert.validity().not_after.timestamp())));
            }
        }
        Ok(None)
    }

    /// `crl/rotate`: rebuilds the CRL of every issuer with a key; the
    /// default issuer's, `None` without one.
    pub async fn rotate_crl(&self, mount: &str) -> Result<Option<Vec<u8>>, PkiError> {
        check_mount(mount)?;
        let default = self.default_issuer_id(mount).await?;
        let mut out = None;
        for id in self.issuer_ids(mount).await? {
            let der = self.rotate_issuer_crl(mount, &id).await?;
            if default.as_deref() == Some(id.as_str()) {
                out = der;
            }
        }
        Ok(out)
    }

    /// Rebuilds and stores the CRL of issuer `issuer_id`; `None` if there
    /// is no such issuer or it has no key.
    pub(crate) async fn rotate_issuer_crl(
        &self,
        mount: &str,
        issuer_id: &str,
    ) -> Result<Option<Vec<u8>>, PkiError> {
        let signer = match self.signer(mount, issuer_id).await {
            Ok(s) => s,
            Err(PkiError::Invalid(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let issuer = Issuer::from_ca_cert_pem(&signer.issuer.certificate, &signer.key)
            .map_err(|e| PkiError::Crypto(e.to_string()))?;
        let path = format!("m/{mount}/crl/{}", signer.issuer.id);
        // Compare-and-swap on the CRL record: a rebuild that raced another
        // (and may have listed fewer revocations) builds again, and CRL
        // numbers never repeat.
        for _ in 0..CRL_ATTEMPTS {
            let previous = self.barrier.get_versioned(&path).await?;
            let number = match &previous {
                Some((plain, _)) => serde_json::from_slice::<CrlRecord>(plain)
                    .map_err(|_| PkiError::Corrupt {
                        what: "crl",
                        path: path.clone(),
                    })?
                    .number
                    .saturating_add(1),
                None => 1,
            };
            let mut revoked_certs = Vec::new();
            for key in self.barrier.list(&format!("m/{mount}/revoked/")).await? {
                let Some(r) = self
                    .get::<RevokedRecord>("revocation", &format!("m/{mount}/revoked/{key}"))
                    .await?
                else {
                    continue;
                };
                if r.issuer_id != signer.issuer.id {
                    continue;
                }
                revoked_certs.push(rcgen::RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&crypto::serial_bytes(&key)),
                    revocation_time: datetime(r.revocation_time)?,
                    reason_code: None,
                    invalidity_date: None,
                });
            }
            let now = now();
            let params = CertificateRevocationListParams {
                this_update: datetime(now)?,
                next_update: datetime(now + CRL_EXPIRY)?,
                crl_number: SerialNumber::from(number),
                issuing_distribution_point: None,
                revoked_certs,
                key_identifier_method: KeyIdMethod::Sha256,
            };
            let crl = params
                .signed_by(&issuer)
                .map_err(|e| PkiError::Crypto(e.to_string()))?;
            let der = crl.der().to_vec();
            let record = CrlRecord {
                issuer_id: signer.issuer.id.clone(),
                number,
                der: der.clone(),
                next_update: now + CRL_EXPIRY,
            };
            let bytes = serde_json::to_vec(&record).map_err(|e| PkiError::Crypto(e.to_string()))?;
            let written = match &previous {
                Some((_, sealed)) => self.barrier.replace(&path, sealed, &bytes).await?,
                None => self.barrier.create(&path, &bytes).await?,
            };
            if written {
                return Ok(Some(der));
            }
            tokio::time::sleep(std::time::Duration::from_millis(
                1 + rand::random::<u64>() % 20,
            ))
            .await;
        }
        Err(PkiError::Contention)
    }

    /// The current CRL of the default issuer (see [`PkiStore::crl_of`]).
    pub async fn crl(&self, mount: &str) -> Result<Option<Vec<u8>>, PkiError> {
        self.crl_of(mount, "default").await
    }

    /// The current CRL of the issuer `reference` names (built if there is
    /// none yet or it is within a day of its nextUpdate); `None` without
    /// such an issuer.
    pub async fn crl_of(&self, mount: &str, reference: &str) -> Result<Option<Vec<u8>>, PkiError> {
        check_mount(mount)?;
        let Some(issuer) = self.find_issuer(mount, reference).await? else {
            return Ok(None);
        };
        let current: Option<CrlRecord> = self
            .get("crl", &format!("m/{mount}/crl/{}", issuer.id))
            .await?;
        match current {
            Some(c) if now() < c.next_update - CRL_REFRESH => Ok(Some(c.der)),
            _ => self.rotate_issuer_crl(mount, &issuer.id).await,
        }
    }

    // === mounts ===

    /// Deletes every record of `mount`.
    pub async fn drop_mount(&self, mount: &str) -> Result<(), PkiError> {
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
}
