//! AppRole: roles with a RoleID, and SecretIDs issued against them.
//!
//! * A role lives at `role/<name>`; its RoleID is indexed at
//!   `role-id/<hmac(role_id)>` → name (one role per RoleID on a mount).
//! * A SecretID is stored only as its keyed hash: `secret-id/<role>/<hmac>`
//!   holds its limits and metadata, `secret-id-accessor/<role>/<accessor>`
//!   points at the hash. The SecretID itself is shown once, at creation.
//! * A SecretID with a use limit is spent with compare-and-swap: exactly N
//!   logins succeed for `num_uses = N`, however many race, on any number of
//!   replicas. The last use marks it used up, then deletes it.
//!
//! Login failures that concern the credentials (unknown RoleID, unknown,
//! expired or used-up SecretID) all answer "invalid role or secret ID" and
//! count towards the RoleID's lockout.

use std::collections::BTreeMap;
use std::fmt;

use bulwark_proto::auth::v1::{
    AppRole, AppRoleLoginRequest, CreateSecretIdRequest, CreateTokenResponse, ItemRequest, Mount,
    MountRequest, SecretIdCreated, SecretIdEntry, SecretIdRef, SetRoleIdRequest, WriteRoleRequest,
};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{check_mount, login_context, role_name, LockKey, Login, MethodsService, Params};
use crate::cidr;
use crate::error::AuthError;

const INVALID_LOGIN: &str = "invalid role or secret ID";
const NO_CONSTRAINT: &str = "at least one constraint should be enabled on the role";

/// Longest RoleID or custom SecretID accepted.
const MAX_CREDENTIAL_LEN: usize = 1024;

/// Attempts at a compare-and-swap before giving up (only ever reached if
/// storage keeps changing under us).
const CAS_ATTEMPTS: usize = 64;

fn role_path(uuid: &str, name: &str) -> String {
    format!("method/{uuid}/role/{name}")
}

fn role_id_path(uuid: &str, role_id_hash: &str) -> String {
    format!("method/{uuid}/role-id/{role_id_hash}")
}

fn secret_path(uuid: &str, role: &str, hash: &str) -> String {
    format!("method/{uuid}/secret-id/{role}/{hash}")
}

fn accessor_path(uuid: &str, role: &str, accessor: &str) -> String {
    format!("method/{uuid}/secret-id-accessor/{role}/{accessor}")
}

/// Whether `accessor` could be one of ours (a UUID) and is safe in a path.
fn plausible_accessor(accessor: &str) -> bool {
    !accessor.is_empty()
        && accessor.len() <= 64
        && accessor.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// Whether `hash` is a hex HMAC (what an accessor entry must point at).
fn plausible_hash(hash: &str) -> bool {
    hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit())
}

fn role_missing(name: &str) -> AuthError {
    AuthError::invalid(format!("role {name:?} does not exist"))
}

/// One role as stored.
#[derive(Clone, Serialize, Deserialize)]
struct RoleRecord {
    name: String,
    role_id: String,
    bind_secret_id: bool,
    #[serde(default)]
    secret_id_bound_cidrs: Vec<String>,
    #[serde(default)]
    secret_id_num_uses: i64,
    #[serde(default)]
    secret_id_ttl: i64,
    #[serde(default)]
    local_secret_ids: bool,
    #[serde(default)]
    token: Params,
}

impl fmt::Debug for RoleRecord {
    // By hand: the RoleID is half a credential.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoleRecord")
            .field("name", &self.name)
            .field("bind_secret_id", &self.bind_secret_id)
            .field("secret_id_bound_cidrs", &self.secret_id_bound_cidrs)
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

impl RoleRecord {
    fn to_proto(&self) -> AppRole {
        AppRole {
            name: self.name.clone(),
            bind_secret_id: self.bind_secret_id,
            secret_id_bound_cidrs: self.secret_id_bound_cidrs.clone(),
            secret_id_num_uses: self.secret_id_num_uses,
            secret_id_ttl: self.secret_id_ttl,
            local_secret_ids: self.local_secret_ids,
            token: Some(self.token.to_proto()),
            role_id: self.role_id.clone(),
        }
    }
}

/// One SecretID as stored (without the SecretID).
#[derive(Clone, Debug, Serialize, Deserialize)]
struct SecretIdRecord {
    accessor: String,
    #[serde(default)]
    cidr_list: Vec<String>,
    #[serde(default)]
    token_bound_cidrs: Vec<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    creation_time: i64,
    /// 0 = never expires.
    expiration_time: i64,
    last_updated_time: i64,
    /// Remaining uses; 0 = unlimited.
    num_uses: i64,
    ttl: i64,
    /// Set, with compare-and-swap, by the login that spent the last use: the
    /// SecretID is refused from then on while it is deleted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    used_up: bool,
}

impl SecretIdRecord {
    fn is_expired(&self, now: i64) -> bool {
        self.expiration_time != 0 && self.expiration_time <= now
    }

    fn is_live(&self, now: i64) -> bool {
        !self.used_up && !self.is_expired(now)
    }

    fn to_entry(&self) -> SecretIdEntry {
        SecretIdEntry {
            found: true,
            secret_id_accessor: self.accessor.clone(),
            cidr_list: self.cidr_list.clone(),
            token_bound_cidrs: self.token_bound_cidrs.clone(),
            metadata: self
                .metadata
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            creation_time: self.creation_time,
            expiration_time: self.expiration_time,
            last_updated_time: self.last_updated_time,
            secret_id_num_uses: self.num_uses,
            secret_id_ttl: self.ttl,
        }
    }
}

fn encode(record: &SecretIdRecord) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(serde_json::to_vec(record).expect("a SecretID record serializes"))
}

fn decode(raw: &[u8]) -> Result<SecretIdRecord, AuthError> {
    serde_json::from_slice(raw).map_err(|_| AuthError::Corrupt("auth method"))
}

/// How a request names a SecretID.
enum SecretRef<'a> {
    Value(&'a str),
    Accessor(&'a str),
}

/// A SecretID found, with where it is and its stored bytes (for CAS).
struct FoundSecret {
    hash: String,
    record: SecretIdRecord,
    version: Vec<u8>,
}

impl MethodsService {
    async fn get_role(&self, uuid: &str, name: &str) -> Result<Option<RoleRecord>, AuthError> {
        self.get_record(&role_path(uuid, name)).await
    }

    /// `hmac(role_id)` within the mount.
    async fn role_id_hash(&self, uuid: &str, role_id: &str) -> Result<String, AuthError> {
        self.store
            .keyed_hash(&format!("approle/role-id/{uuid}"), role_id.as_bytes())
            .await
    }

    /// `hmac(secret_id)` within the mount and role.
    async fn secret_hash(&self, uuid: &str, role: &str, secret: &str) -> Result<String, AuthError> {
        self.store
            .keyed_hash(
                &format!("approle/secret-id/{uuid}/{role}"),
                secret.as_bytes(),
            )
            .await
    }

    /// The role a RoleID belongs to (checked against the role's record).
    async fn role_by_id(&self, uuid: &str, role_id: &str) -> Result<Option<RoleRecord>, AuthError> {
        let hash = self.role_id_hash(uuid, role_id).await?;
        let Some(raw) = self.store.barrier.get(&role_id_path(uuid, &hash)).await? else {
            return Ok(None);
        };
        let Ok(name) = std::str::from_utf8(&raw) else {
            return Err(AuthError::Corrupt("auth method"));
        };
        let Some(role) = self.get_role(uuid, name).await? else {
            return Ok(None);
        };
        // The index may be stale (the role got another RoleID meanwhile).
        if !bool::from(role.role_id.as_bytes().ct_eq(role_id.as_bytes())) {
            return Ok(None);
        }
        Ok(Some(role))
    }

    /// Points the RoleID index at `name`, unless another live role holds
    /// that RoleID (InvalidArgument). A stale entry is taken over.
    async fn claim_role_id(&self, uuid: &str, role_id: &str, name: &str) -> Result<(), AuthError> {
        let path = role_id_path(uuid, &self.role_id_hash(uuid, role_id).await?);
        for _ in 0..CAS_ATTEMPTS {
            if self.store.barrier.create(&path, name.as_bytes()).await? {
                return Ok(());
            }
            let Some((raw, version)) = self.store.barrier.get_versioned(&path).await? else {
                continue;
            };
            let holder = String::from_utf8_lossy(&raw).into_owned();
            if holder == name {
                return Ok(());
            }
            if let Some(other) = self.get_role(uuid, &holder).await? {
                if bool::from(other.role_id.as_bytes().ct_eq(role_id.as_bytes())) {
                    return Err(AuthError::invalid("role_id already in use"));
                }
            }
            if self
                .store
                .barrier
                .replace(&path, &version, name.as_bytes())
                .await?
            {
                return Ok(());
            }
        }
        Err(AuthError::Internal("role_id index kept changing"))
    }

    /// Drops the RoleID index entry if it still points at `name`.
    async fn release_role_id(
        &self,
        uuid: &str,
        role_id: &str,
        name: &str,
    ) -> Result<(), AuthError> {
        let path = role_id_path(uuid, &self.role_id_hash(uuid, role_id).await?);
        if let Some(raw) = self.store.barrier.get(&path).await? {
            if raw.as_slice() == name.as_bytes() {
                self.store.barrier.delete(&path).await?;
            }
        }
        Ok(())
    }

    /// WriteRole: creates or replaces a role (the gateway sends the merged
    /// whole role). The RoleID is the given one, else the stored one, else a
    /// new UUID.
    pub(crate) async fn role_write(&self, req: WriteRoleRequest) -> Result<(), AuthError> {
        let mount = check_mount(req.mount)?;
        let role = req.role.ok_or_else(|| AuthError::invalid("missing role"))?;
        let name = role_name(&role.name)?;
        let token = Params::from_proto(role.token)?;
        let secret_id_bound_cidrs = cidr::validate_blocks(&role.secret_id_bound_cidrs)?;
        if role.secret_id_num_uses < 0 {
            return Err(AuthError::invalid("secret_id_num_uses cannot be negative"));
        }
        if role.secret_id_ttl < 0 {
            return Err(AuthError::invalid("secret_id_ttl cannot be negative"));
        }
        if !role.bind_secret_id && secret_id_bound_cidrs.is_empty() && token.bound_cidrs.is_empty()
        {
            return Err(AuthError::invalid(NO_CONSTRAINT));
        }
        if role.role_id.len() > MAX_CREDENTIAL_LEN {
            return Err(AuthError::invalid("role_id is too long"));
        }
        let existing = self.get_role(&mount.uuid, &name).await?;
        let role_id = if !role.role_id.is_empty() {
            role.role_id
        } else if let Some(e) = &existing {
            e.role_id.clone()
        } else {
            uuid::Uuid::new_v4().to_string()
        };
        self.claim_role_id(&mount.uuid, &role_id, &name).await?;
        let record = RoleRecord {
            name: name.clone(),
            role_id: role_id.clone(),
            bind_secret_id: role.bind_secret_id,
            secret_id_bound_cidrs,
            secret_id_num_uses: role.secret_id_num_uses,
            secret_id_ttl: role.secret_id_ttl,
            // Set at creation only, as in Vault.
            local_secret_ids: existing
                .as_ref()
                .map_or(role.local_secret_ids, |e| e.local_secret_ids),
            token,
        };
        self.put_record(&role_path(&mount.uuid, &name), &record)
            .await?;
        if let Some(old) = existing {
            if old.role_id != role_id {
                self.release_role_id(&mount.uuid, &old.role_id, &name)
                    .await?;
            }
        }
        Ok(())
    }

    /// ReadRole: the role with its RoleID.
    pub(crate) async fn role_read(&self, req: ItemRequest) -> Result<AppRole, AuthError> {
        let mount = check_mount(req.mount)?;
        let name = role_name(&req.name)?;
        let role = self
            .get_role(&mount.uuid, &name)
            .await?
            .ok_or_else(|| AuthError::NotFound(format!("role {name:?} not found")))?;
        Ok(role.to_proto())
    }

    /// DeleteRole: the role, its RoleID index and all its SecretIDs.
    /// Idempotent.
    pub(crate) async fn role_delete(&self, req: ItemRequest) -> Result<(), AuthError> {
        let mount = check_mount(req.mount)?;
        let name = role_name(&req.name)?;
        if let Some(role) = self.get_role(&mount.uuid, &name).await? {
            // The record first: logins with it stop at once.
            self.store
                .barrier
                .delete(&role_path(&mount.uuid, &name))
                .await?;
            self.release_role_id(&mount.uuid, &role.role_id, &name)
                .await?;
        }
        self.delete_tree(&format!("method/{}/secret-id/{name}/", mount.uuid))
            .await?;
        self.delete_tree(&format!("method/{}/secret-id-accessor/{name}/", mount.uuid))
            .await?;
        Ok(())
    }

    /// ListRoles: sorted names.
    pub(crate) async fn role_list(&self, req: MountRequest) -> Result<Vec<String>, AuthError> {
        let mount = check_mount(req.mount)?;
        self.list_leaves(&format!("method/{}/role/", mount.uuid))
            .await
    }

    /// SetRoleId: gives a role a new RoleID (unique on the mount).
    pub(crate) async fn role_set_id(&self, req: SetRoleIdRequest) -> Result<(), AuthError> {
        let mount = check_mount(req.mount)?;
        let name = role_name(&req.name)?;
        if req.role_id.is_empty() {
            return Err(AuthError::invalid("missing role_id"));
        }
        if req.role_id.len() > MAX_CREDENTIAL_LEN {
            return Err(AuthError::invalid("role_id is too long"));
        }
        let mut role = self
            .get_role(&mount.uuid, &name)
            .await?
            .ok_or_else(|| role_missing(&name))?;
        if role.role_id == req.role_id {
            return Ok(());
        }
        self.claim_role_id(&mount.uuid, &req.role_id, &name).await?;
        let old = std::mem::replace(&mut role.role_id, req.role_id);
        self.put_record(&role_path(&mount.uuid, &name), &role)
            .await?;
        self.release_role_id(&mount.uuid, &old, &name).await
    }

    /// CreateSecretId: a generated (UUID) or custom SecretID, within the
    /// role's limits.
    pub(crate) async fn secret_id_create(
        &self,
        req: CreateSecretIdRequest,
    ) -> Result<SecretIdCreated, AuthError> {
        let mount = check_mount(req.mount)?;
        let custom = Zeroizing::new(req.secret_id);
        let name = role_name(&req.role)?;
        let role = self
            .get_role(&mount.uuid, &name)
            .await?
            .ok_or_else(|| role_missing(&name))?;
        if req.num_uses < 0 {
            return Err(AuthError::invalid("num_uses cannot be negative"));
        }
        if req.ttl < 0 {
            return Err(AuthError::invalid("ttl cannot be negative"));
        }
        // 0 = the role's; the role's nonzero limit cannot be exceeded (0 is
        // "unlimited", which exceeds every limit).
        let num_uses = match (req.num_uses, role.secret_id_num_uses) {
            (0, r) => r,
            (n, 0) => n,
            (n, r) if n <= r => n,
            _ => {
                return Err(AuthError::invalid(
                    "num_uses cannot be higher than the role's secret_id_num_uses",
                ))
            }
        };
        let ttl = match (req.ttl, role.secret_id_ttl) {
            (0, r) => r,
            (t, 0) => t,
            (t, r) if t <= r => t,
            _ => {
                return Err(AuthError::invalid(
                    "ttl cannot be longer than the role's secret_id_ttl",
                ))
            }
        };
        let cidr_list = cidr::validate_blocks(&req.cidr_list)?;
        if !role.secret_id_bound_cidrs.is_empty() {
            cidr::check_subset(
                &role.secret_id_bound_cidrs,
                &cidr_list,
                "secret_id_bound_cidrs",
            )?;
        }
        let token_bound_cidrs = cidr::validate_blocks(&req.token_bound_cidrs)?;
        if !role.token.bound_cidrs.is_empty() {
            cidr::check_subset(
                &role.token.bound_cidrs,
                &token_bound_cidrs,
                "token_bound_cidrs",
            )?;
        }
        if custom.len() > MAX_CREDENTIAL_LEN {
            return Err(AuthError::invalid("secret_id is too long"));
        }
        let secret = if custom.is_empty() {
            Zeroizing::new(uuid::Uuid::new_v4().to_string())
        } else {
            custom
        };
        let hash = self.secret_hash(&mount.uuid, &name, &secret).await?;
        let now = self.store.now();
        let record = SecretIdRecord {
            accessor: uuid::Uuid::new_v4().to_string(),
            cidr_list,
            token_bound_cidrs,
            metadata: req.metadata.into_iter().collect(),
            creation_time: now,
            expiration_time: if ttl > 0 { now.saturating_add(ttl) } else { 0 },
            last_updated_time: now,
            num_uses,
            ttl,
            used_up: false,
        };
        let path = secret_path(&mount.uuid, &name, &hash);
        if !self.store.barrier.create(&path, &encode(&record)).await? {
            // A generated UUID colliding is as good as impossible.
            return Err(AuthError::invalid("SecretID is already registered"));
        }
        let index = accessor_path(&mount.uuid, &name, &record.accessor);
        if !self.store.barrier.create(&index, hash.as_bytes()).await? {
            self.store.barrier.delete(&path).await?;
            return Err(AuthError::Internal("SecretID accessors collided"));
        }
        Ok(SecretIdCreated {
            secret_id: secret.to_string(),
            secret_id_accessor: record.accessor,
            secret_id_ttl: ttl,
            secret_id_num_uses: num_uses,
        })
    }

    /// A SecretID of `role` by value or accessor, live or not.
    async fn find_secret(
        &self,
        uuid: &str,
        role: &str,
        r: SecretRef<'_>,
    ) -> Result<Option<FoundSecret>, AuthError> {
        let hash = match r {
            SecretRef::Value(secret) => self.secret_hash(uuid, role, secret).await?,
            SecretRef::Accessor(accessor) => {
                if !plausible_accessor(accessor) {
                    return Ok(None);
                }
                let Some(raw) = self
                    .store
                    .barrier
                    .get(&accessor_path(uuid, role, accessor))
                    .await?
                else {
                    return Ok(None);
                };
                match std::str::from_utf8(&raw) {
                    Ok(h) if plausible_hash(h) => h.to_string(),
                    _ => return Err(AuthError::Corrupt("auth method")),
                }
            }
        };
        let Some((raw, version)) = self
            .store
            .barrier
            .get_versioned(&secret_path(uuid, role, &hash))
            .await?
        else {
            return Ok(None);
        };
        let record = decode(&raw)?;
        if let SecretRef::Accessor(accessor) = r {
            if !bool::from(record.accessor.as_bytes().ct_eq(accessor.as_bytes())) {
                return Ok(None);
            }
        }
        Ok(Some(FoundSecret {
            hash,
            record,
            version,
        }))
    }

    /// Deletes a SecretID's record (first: it is refused at once) and index.
    async fn delete_secret(
        &self,
        uuid: &str,
        role: &str,
        hash: &str,
        accessor: &str,
    ) -> Result<(), AuthError> {
        self.store
            .barrier
            .delete(&secret_path(uuid, role, hash))
            .await?;
        if plausible_accessor(accessor) {
            self.store
                .barrier
                .delete(&accessor_path(uuid, role, accessor))
                .await?;
        }
        Ok(())
    }

    /// The role and the SecretID reference of a lookup or destroy.
    async fn secret_ref<'a>(
        &self,
        req: &'a SecretIdRef,
    ) -> Result<(Mount, String, SecretRef<'a>), AuthError> {
        let mount = check_mount(req.mount.clone())?;
        let name = role_name(&req.role)?;
        let r = match (req.secret_id.is_empty(), req.accessor.is_empty()) {
            (false, true) => SecretRef::Value(&req.secret_id),
            (true, false) => SecretRef::Accessor(&req.accessor),
            _ => {
                return Err(AuthError::invalid(
                    "exactly one of secret_id or secret_id_accessor must be given",
                ))
            }
        };
        if self.get_role(&mount.uuid, &name).await?.is_none() {
            return Err(role_missing(&name));
        }
        Ok((mount, name, r))
    }

    /// LookupSecretId: found=false for unknown, expired or used-up ones.
    pub(crate) async fn secret_id_lookup(
        &self,
        req: SecretIdRef,
    ) -> Result<SecretIdEntry, AuthError> {
        let req = ZeroizingRef(req);
        let (mount, name, r) = self.secret_ref(&req.0).await?;
        let now = self.store.now();
        match self.find_secret(&mount.uuid, &name, r).await? {
            Some(found) if found.record.is_live(now) => Ok(found.record.to_entry()),
            _ => Ok(SecretIdEntry::default()),
        }
    }

    /// DestroySecretId: unknown is not an error.
    pub(crate) async fn secret_id_destroy(&self, req: SecretIdRef) -> Result<(), AuthError> {
        let req = ZeroizingRef(req);
        let (mount, name, r) = self.secret_ref(&req.0).await?;
        if let Some(found) = self.find_secret(&mount.uuid, &name, r).await? {
            self.delete_secret(&mount.uuid, &name, &found.hash, &found.record.accessor)
                .await?;
        }
        Ok(())
    }

    /// ListSecretIds: the accessors of the role's live SecretIDs, sorted.
    pub(crate) async fn secret_id_list(&self, req: ItemRequest) -> Result<Vec<String>, AuthError> {
        let mount = check_mount(req.mount)?;
        let name = role_name(&req.name)?;
        if self.get_role(&mount.uuid, &name).await?.is_none() {
            return Err(role_missing(&name));
        }
        let now = self.store.now();
        let mut out = Vec::new();
        for accessor in self
            .list_leaves(&format!("method/{}/secret-id-accessor/{name}/", mount.uuid))
            .await?
        {
            if let Some(found) = self
                .find_secret(&mount.uuid, &name, SecretRef::Accessor(&accessor))
                .await?
            {
                if found.record.is_live(now) {
                    out.push(accessor);
                }
            }
        }
        Ok(out)
    }

    /// TidySecretIds: removes expired and used-up SecretIDs (and those of
    /// roles that are gone, and index entries pointing nowhere). Returns how
    /// many SecretIDs went.
    pub(crate) async fn secret_id_tidy(&self, req: MountRequest) -> Result<i64, AuthError> {
        let mount = check_mount(req.mount)?;
        let uuid = &mount.uuid;
        let now = self.store.now();
        let mut removed = 0;
        let roles = self
            .store
            .barrier
            .list(&format!("method/{uuid}/secret-id/"))
            .await?;
        for dir in roles.iter().filter(|d| d.ends_with('/')) {
            let role = dir.trim_end_matches('/');
            let role_exists = self.get_role(uuid, role).await?.is_some();
            for hash in self
                .list_leaves(&format!("method/{uuid}/secret-id/{role}/"))
                .await?
            {
                let path = secret_path(uuid, role, &hash);
                let record = match self.store.barrier.get(&path).await {
                    Ok(Some(raw)) => decode(&raw).ok(),
                    Ok(None) => continue,
                    Err(e) if e.is_sealed() => return Err(e.into()),
                    // Undecryptable: it can never be used; drop it.
                    Err(_) => None,
                };
                let dead = match &record {
                    Some(r) => !role_exists || !r.is_live(now),
                    None => true,
                };
                if dead {
                    let accessor = record.map(|r| r.accessor).unwrap_or_default();
                    self.delete_secret(uuid, role, &hash, &accessor).await?;
                    removed += 1;
                }
            }
        }
        // Index entries whose SecretID is gone.
        let indexed = self
            .store
            .barrier
            .list(&format!("method/{uuid}/secret-id-accessor/"))
            .await?;
        for dir in indexed.iter().filter(|d| d.ends_with('/')) {
            let role = dir.trim_end_matches('/');
            for accessor in self
                .list_leaves(&format!("method/{uuid}/secret-id-accessor/{role}/"))
                .await?
            {
                let index = accessor_path(uuid, role, &accessor);
                let target = match self.store.barrier.get(&index).await? {
                    Some(raw) => String::from_utf8(raw.to_vec()).ok(),
                    None => continue,
                };
                let live = match target {
                    Some(h) if plausible_hash(&h) => self
                        .store
                        .barrier
                        .get(&secret_path(uuid, role, &h))
                        .await?
                        .is_some(),
                    _ => false,
                };
                if !live {
                    self.store.barrier.delete(&index).await?;
                }
            }
        }
        Ok(removed)
    }

    /// AppRoleLogin.
    pub(crate) async fn approle_login(
        &self,
        req: AppRoleLoginRequest,
    ) -> Result<CreateTokenResponse, AuthError> {
        let role_id = Zeroizing::new(req.role_id);
        let secret = Zeroizing::new(req.secret_id);
        let (mount, remote_ip) = login_context(req.context)?;
        if role_id.is_empty() {
            return Err(AuthError::invalid("missing role_id"));
        }
        let key = LockKey::new(&mount.uuid, "role-id", &role_id);
        if self.lockout.is_locked(&key) {
            return Err(AuthError::PermissionDenied);
        }
        let role = if role_id.len() > MAX_CREDENTIAL_LEN {
            None
        } else {
            self.role_by_id(&mount.uuid, &role_id).await?
        };
        let Some(role) = role else {
            self.lockout.failed(&key);
            return Err(AuthError::invalid(INVALID_LOGIN));
        };
        let cidr_refused = || {
            AuthError::invalid(format!(
                "source address {:?} unauthorized through CIDR restrictions on the secret ID",
                cidr::quote(&remote_ip)
            ))
        };
        if !role.secret_id_bound_cidrs.is_empty()
            && !cidr::allows(&role.secret_id_bound_cidrs, &remote_ip)
        {
            return Err(cidr_refused());
        }
        let mut meta = BTreeMap::new();
        let mut bound_cidrs = role.token.bound_cidrs.clone();
        if role.bind_secret_id {
            if secret.is_empty() {
                return Err(AuthError::invalid("missing secret_id"));
            }
            let spent = if secret.len() > MAX_CREDENTIAL_LEN {
                Spend::Invalid
            } else {
                self.spend_secret(&mount.uuid, &role.name, &secret, &remote_ip)
                    .await?
            };
            let record = match spent {
                Spend::Spent(r) => r,
                Spend::Invalid => {
                    self.lockout.failed(&key);
                    return Err(AuthError::invalid(INVALID_LOGIN));
                }
                Spend::CidrRefused => return Err(cidr_refused()),
            };
            if !record.token_bound_cidrs.is_empty() {
                bound_cidrs = record.token_bound_cidrs;
            }
            meta = record.metadata;
        }
        self.lockout.succeeded(&key);
        meta.insert("role_name".to_string(), role.name.clone());
        let login = Login {
            display_name: "approle".to_string(),
            path: format!("auth/{}login", mount.path),
            meta,
            bound_cidrs,
        };
        self.mint(&mount, &role.token, login).await
    }

    /// Spends one use of a SecretID presented from `remote_ip`: checks it is
    /// live and allowed from there, then counts the use with compare-and-swap
    /// (deleting it after its last use).
    async fn spend_secret(
        &self,
        uuid: &str,
        role: &str,
        secret: &str,
        remote_ip: &str,
    ) -> Result<Spend, AuthError> {
        for _ in 0..CAS_ATTEMPTS {
            let Some(found) = self
                .find_secret(uuid, role, SecretRef::Value(secret))
                .await?
            else {
                return Ok(Spend::Invalid);
            };
            let FoundSecret {
                hash,
                record,
                version,
            } = found;
            let now = self.store.now();
            if record.used_up {
                return Ok(Spend::Invalid);
            }
            if record.is_expired(now) {
                // Best effort: tidy gets it otherwise.
                if let Err(e) = self
                    .delete_secret(uuid, role, &hash, &record.accessor)
                    .await
                {
                    tracing::warn!(error = %e, "could not delete an expired SecretID");
                }
                return Ok(Spend::Invalid);
            }
            if !record.cidr_list.is_empty() && !cidr::allows(&record.cidr_list, remote_ip) {
                return Ok(Spend::CidrRefused);
            }
            if record.num_uses == 0 {
                return Ok(Spend::Spent(record));
            }
            let mut next = record.clone();
            next.num_uses -= 1;
            next.used_up = next.num_uses == 0;
            next.last_updated_time = now;
            let path = secret_path(uuid, role, &hash);
            if self
                .store
                .barrier
                .replace(&path, &version, &encode(&next))
                .await?
            {
                if next.used_up {
                    // The use is granted; the SecretID goes right after it.
                    // If deleting fails, `used_up` refuses it and tidy
                    // finishes the job.
                    if let Err(e) = self
                        .delete_secret(uuid, role, &hash, &record.accessor)
                        .await
                    {
                        tracing::warn!(error = %e, "could not delete a used-up SecretID");
                    }
                }
                return Ok(Spend::Spent(record));
            }
            // Another login spent a use meanwhile: look again.
        }
        Err(AuthError::Internal("SecretID kept changing"))
    }
}

/// What spending a SecretID came to.
enum Spend {
    Spent(SecretIdRecord),
    /// Unknown, expired or used up.
    Invalid,
    CidrRefused,
}

/// A SecretIdRef whose `secret_id` is wiped when dropped.
struct ZeroizingRef(SecretIdRef);

impl Drop for ZeroizingRef {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0.secret_id);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::testing::*;
    use super::super::{Methods, LOCKOUT_THRESHOLD};
    use super::*;
    use bulwark_proto::auth::v1::TokenParams;
    use tonic::Request;

    fn role(name: &str) -> AppRole {
        AppRole {
            name: name.into(),
            bind_secret_id: true,
            token: Some(TokenParams {
                policies: strings(&["dev"]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn write(m: &Mount, role: AppRole) -> WriteRoleRequest {
        WriteRoleRequest {
            mount: Some(m.clone()),
            role: Some(role),
        }
    }

    fn item(m: &Mount, name: &str) -> ItemRequest {
        ItemRequest {
            mount: Some(m.clone()),
            name: name.into(),
        }
    }

    fn secret_req(m: &Mount, role: &str) -> CreateSecretIdRequest {
        CreateSecretIdRequest {
            mount: Some(m.clone()),
            role: role.into(),
            ..Default::default()
        }
    }

    fn by_value(m: &Mount, role: &str, secret: &str) -> SecretIdRef {
        SecretIdRef {
            mount: Some(m.clone()),
            role: role.into(),
            secret_id: secret.into(),
            accessor: String::new(),
        }
    }

    fn by_accessor(m: &Mount, role: &str, accessor: &str) -> SecretIdRef {
        SecretIdRef {
            mount: Some(m.clone()),
            role: role.into(),
            secret_id: String::new(),
            accessor: accessor.into(),
        }
    }

    fn login(m: &Mount, role_id: &str, secret: &str, ip: &str) -> AppRoleLoginRequest {
        AppRoleLoginRequest {
            context: ctx(m, ip),
            role_id: role_id.into(),
            secret_id: secret.into(),
        }
    }

    async fn role_id(svc: &MethodsService, m: &Mount, name: &str) -> String {
        svc.role_read(item(m, name)).await.unwrap().role_id
    }

    #[tokio::test]
    async fn roles_write_read_list_delete() {
        let (_h, svc) = service().await;
        let m = mount("approle/");
        let mut web = role("Web");
        web.secret_id_bound_cidrs = strings(&["10.0.0.0/8"]);
        web.secret_id_num_uses = 3;
        web.secret_id_ttl = 600;
        web.local_secret_ids = true;
        svc.role_write(write(&m, web)).await.unwrap();
        svc.role_write(write(&m, role("batch-jobs"))).await.unwrap();
        let read = svc.role_read(item(&m, "WEB")).await.unwrap();
        assert_eq!(read.name, "web");
        assert!(
            uuid::Uuid::parse_str(&read.role_id).is_ok(),
            "{}",
            read.role_id
        );
        assert_eq!(read.secret_id_bound_cidrs, ["10.0.0.0/8"]);
        assert_eq!((read.secret_id_num_uses, read.secret_id_ttl), (3, 600));
        assert!(read.local_secret_ids && read.bind_secret_id);
        assert_eq!(read.token.unwrap().policies, ["dev"]);
        assert_eq!(
            svc.role_list(MountRequest {
                mount: Some(m.clone())
            })
            .await
            .unwrap(),
            ["batch-jobs", "web"]
        );
        // A replacement keeps the RoleID (and local_secret_ids, create-only).
        let mut again = role("web");
        again.secret_id_ttl = 60;
        svc.role_write(write(&m, again)).await.unwrap();
        let after = svc.role_read(item(&m, "web")).await.unwrap();
        assert_eq!(after.role_id, read.role_id);
        assert_eq!(after.secret_id_ttl, 60);
        assert!(after.local_secret_ids);
        // Delete takes the role, its index and its SecretIDs.
        let s = svc.secret_id_create(secret_req(&m, "web")).await.unwrap();
        svc.role_delete(item(&m, "web")).await.unwrap();
        svc.role_delete(item(&m, "web")).await.unwrap();
        let e = svc
            .read_role(Request::new(item(&m, "web")))
            .await
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::NotFound);
        assert!(svc
            .store
            .barrier
            .list(&format!("method/{}/secret-id/", m.uuid))
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            invalid(
                svc.approle_login(login(&m, &read.role_id, &s.secret_id, ""))
                    .await
            ),
            INVALID_LOGIN
        );
        // A new role of the same name starts afresh.
        svc.role_write(write(&m, role("web"))).await.unwrap();
        assert_ne!(role_id(&svc, &m, "web").await, read.role_id);
        assert!(svc
            .secret_id_list(item(&m, "web"))
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn bad_roles() {
        let (_h, svc) = service().await;
        let m = mount("approle/");
        let check = |adjust: fn(&mut AppRole)| {
            let mut r = role("web");
            adjust(&mut r);
            write(&m, r)
        };
        assert_eq!(
            invalid(svc.role_write(check(|r| r.name = "a/b".into())).await),
            "invalid role name"
        );
        assert_eq!(
            invalid(svc.role_write(check(|r| r.bind_secret_id = false)).await),
            NO_CONSTRAINT
        );
        assert_eq!(
            invalid(svc.role_write(check(|r| r.secret_id_num_uses = -1)).await),
            "secret_id_num_uses cannot be negative"
        );
        assert_eq!(
            invalid(svc.role_write(check(|r| r.secret_id_ttl = -1)).await),
            "secret_id_ttl cannot be negative"
        );
        assert_eq!(
            invalid(
                svc.role_write(check(|r| r.secret_id_bound_cidrs = strings(&["nope"])))
                    .await
            ),
            "invalid CIDR block or IP address \"nope\""
        );
        assert_eq!(
            invalid(
                svc.role_write(check(|r| {
                    r.token.as_mut().unwrap().bound_cidrs = strings(&["1.2.3.4/99"])
                }))
                .await
            ),
            "invalid CIDR block or IP address \"1.2.3.4/99\""
        );
        assert_eq!(
            invalid(
                svc.role_write(check(|r| r.token.as_mut().unwrap().num_uses = -3))
                    .await
            ),
            "'token_num_uses' cannot be negative"
        );
        assert_eq!(
            invalid(
                svc.role_write(WriteRoleRequest {
                    mount: Some(m.clone()),
                    role: None
                })
                .await
            ),
            "missing role"
        );
        // Without bind_secret_id, CIDRs are a constraint.
        svc.role_write(check(|r| {
            r.bind_secret_id = false;
            r.secret_id_bound_cidrs = strings(&["10.0.0.0/8"]);
        }))
        .await
        .unwrap();
        svc.role_write(check(|r| {
            r.bind_secret_id = false;
            r.token.as_mut().unwrap().bound_cidrs = strings(&["10.0.0.0/8"]);
        }))
        .await
        .unwrap();
        assert!(
            svc.role_list(MountRequest { mount: Some(m) })
                .await
                .unwrap()
                .len()
                == 1
        );
    }

    #[tokio::test]
    async fn role_ids_are_unique_per_mount() {
        let (_h, svc) = service().await;
        let m = mount("approle/");
        let mut a = role("a");
        a.role_id = "shared-id".into();
        svc.role_write(write(&m, a.clone())).await.unwrap();
        let mut b = role("b");
        b.role_id = "shared-id".into();
        assert_eq!(
            invalid(svc.role_write(write(&m, b)).await),
            "role_id already in use"
        );
        svc.role_write(write(&m, role("b"))).await.unwrap();
        let set = |name: &str, id: &str| SetRoleIdRequest {
            mount: Some(m.clone()),
            name: name.into(),
            role_id: id.into(),
        };
        assert_eq!(
            invalid(svc.role_set_id(set("b", "shared-id")).await),
            "role_id already in use"
        );
        assert_eq!(
            invalid(svc.role_set_id(set("b", "")).await),
            "missing role_id"
        );
        assert_eq!(
            invalid(svc.role_set_id(set("ghost", "x")).await),
            "role \"ghost\" does not exist"
        );
        // Another mount may use it.
        let other = mount("approle2/");
        svc.role_write(write(&other, a)).await.unwrap();
        // Moving a's RoleID frees the old one.
        svc.role_set_id(set("a", "new-id")).await.unwrap();
        assert_eq!(role_id(&svc, &m, "a").await, "new-id");
        svc.role_set_id(set("b", "shared-id")).await.unwrap();
        assert_eq!(role_id(&svc, &m, "b").await, "shared-id");
        let s = svc.secret_id_create(secret_req(&m, "b")).await.unwrap();
        let made = svc
            .approle_login(login(&m, "shared-id", &s.secret_id, ""))
            .await
            .unwrap();
        assert_eq!(
            made.entry
                .unwrap()
                .meta
                .get("role_name")
                .map(String::as_str),
            Some("b")
        );
        // The old RoleID logs in nowhere.
        let s = svc.secret_id_create(secret_req(&m, "a")).await.unwrap();
        assert!(svc
            .approle_login(login(&m, "shared-id", &s.secret_id, ""))
            .await
            .is_err());
        assert!(svc
            .approle_login(login(&m, "new-id", &s.secret_id, ""))
            .await
            .is_ok());
        // RoleIDs never appear in storage paths.
        let keys = svc
            .store
            .barrier
            .list(&format!("method/{}/role-id/", m.uuid))
            .await
            .unwrap();
        assert_eq!(keys.len(), 2);
        assert!(keys.iter().all(|k| plausible_hash(k)), "{keys:?}");
    }

    #[tokio::test]
    async fn secret_id_limits() {
        let (_h, svc) = service().await;
        let m = mount("approle/");
        let mut r = role("web");
        r.secret_id_num_uses = 5;
        r.secret_id_ttl = 600;
        r.secret_id_bound_cidrs = strings(&["10.0.0.0/8"]);
        r.token.as_mut().unwrap().bound_cidrs = strings(&["10.0.0.0/8", "192.168.0.0/16"]);
        svc.role_write(write(&m, r)).await.unwrap();
        // Defaults are the role's.
        let s = svc.secret_id_create(secret_req(&m, "web")).await.unwrap();
        assert_eq!((s.secret_id_num_uses, s.secret_id_ttl), (5, 600));
        assert!(uuid::Uuid::parse_str(&s.secret_id).is_ok());
        assert!(uuid::Uuid::parse_str(&s.secret_id_accessor).is_ok());
        // Within them.
        let mut within = secret_req(&m, "web");
        within.num_uses = 2;
        within.ttl = 60;
        within.cidr_list = strings(&["10.1.0.0/16"]);
        within.token_bound_cidrs = strings(&["192.168.1.0/24"]);
        let s = svc.secret_id_create(within).await.unwrap();
        assert_eq!((s.secret_id_num_uses, s.secret_id_ttl), (2, 60));
        // Beyond them.
        let check = |adjust: fn(&mut CreateSecretIdRequest)| {
            let mut r = secret_req(&m, "web");
            adjust(&mut r);
            r
        };
        for (adjust, msg) in [
            (
                (|r| r.num_uses = 6) as fn(&mut CreateSecretIdRequest),
                "num_uses cannot be higher than the role's secret_id_num_uses",
            ),
            (
                |r| r.ttl = 601,
                "ttl cannot be longer than the role's secret_id_ttl",
            ),
            (|r| r.num_uses = -1, "num_uses cannot be negative"),
            (|r| r.ttl = -1, "ttl cannot be negative"),
            (
                |r| r.cidr_list = strings(&["11.0.0.0/8"]),
                "CIDR block \"11.0.0.0/8\" is not within the role's secret_id_bound_cidrs",
            ),
            (
                |r| r.cidr_list = strings(&["bad"]),
                "invalid CIDR block or IP address \"bad\"",
            ),
            (
                |r| r.token_bound_cidrs = strings(&["172.16.0.0/12"]),
                "CIDR block \"172.16.0.0/12\" is not within the role's token_bound_cidrs",
            ),
            (|r| r.role = "ghost".into(), "role \"ghost\" does not exist"),
            (|r| r.role = "bad name".into(), "invalid role name"),
            (|r| r.secret_id = "x".repeat(2000), "secret_id is too long"),
        ] {
            assert_eq!(invalid(svc.secret_id_create(check(adjust)).await), msg);
        }
        // A role without limits takes any.
        svc.role_write(write(&m, role("free"))).await.unwrap();
        let mut any = secret_req(&m, "free");
        any.num_uses = 1000;
        any.ttl = 10_000_000;
        any.cidr_list = strings(&["0.0.0.0/0"]);
        let s = svc.secret_id_create(any).await.unwrap();
        assert_eq!((s.secret_id_num_uses, s.secret_id_ttl), (1000, 10_000_000));
    }

    #[tokio::test]
    async fn custom_secret_ids_lookup_list_destroy() {
        let (h, svc) = service().await;
        let m = mount("approle/");
        svc.role_write(write(&m, role("web"))).await.unwrap();
        let mut custom = secret_req(&m, "web");
        custom.secret_id = "my-custom-secret-plaintext-marker".into();
        custom.metadata = [("team".to_string(), "blue".to_string())].into();
        custom.cidr_list = strings(&["10.0.0.0/8"]);
        let made = svc.secret_id_create(custom.clone()).await.unwrap();
        assert_eq!(made.secret_id, "my-custom-secret-plaintext-marker");
        assert_eq!(
            invalid(svc.secret_id_create(custom).await),
            "SecretID is already registered"
        );
        let other = svc.secret_id_create(secret_req(&m, "web")).await.unwrap();
        // Lookup by value and by accessor.
        let e = svc
            .secret_id_lookup(by_value(&m, "web", &made.secret_id))
            .await
            .unwrap();
        assert!(e.found);
        assert_eq!(e.secret_id_accessor, made.secret_id_accessor);
        assert_eq!(e.metadata.get("team").map(String::as_str), Some("blue"));
        assert_eq!(e.cidr_list, ["10.0.0.0/8"]);
        assert_eq!((e.expiration_time, e.secret_id_num_uses), (0, 0));
        let now = h.store.now();
        assert!((now - 1..=now).contains(&e.creation_time));
        let by_acc = svc
            .secret_id_lookup(by_accessor(&m, "web", &made.secret_id_accessor))
            .await
            .unwrap();
        assert_eq!(by_acc, e);
        // Unknown: found=false, no error.
        for r in [
            by_value(&m, "web", "nope"),
            by_accessor(&m, "web", "00000000-0000-0000-0000-000000000000"),
            by_accessor(&m, "web", "../../x"),
        ] {
            assert!(!svc.secret_id_lookup(r).await.unwrap().found);
        }
        // Exactly one of value and accessor.
        let mut both = by_value(&m, "web", "x");
        both.accessor = "y".into();
        assert!(invalid(svc.secret_id_lookup(both).await).starts_with("exactly one"));
        assert!(
            invalid(svc.secret_id_destroy(by_value(&m, "web", "")).await)
                .starts_with("exactly one")
        );
        assert_eq!(
            invalid(svc.secret_id_lookup(by_value(&m, "ghost", "x")).await),
            "role \"ghost\" does not exist"
        );
        // The same SecretID under another role is another SecretID.
        svc.role_write(write(&m, role("api"))).await.unwrap();
        assert!(
            !svc.secret_id_lookup(by_value(&m, "api", &made.secret_id))
                .await
                .unwrap()
                .found
        );
        let mut listed = svc.secret_id_list(item(&m, "web")).await.unwrap();
        listed.sort();
        let mut want = vec![
            made.secret_id_accessor.clone(),
            other.secret_id_accessor.clone(),
        ];
        want.sort();
        assert_eq!(listed, want);
        assert!(svc
            .list_secret_ids(Request::new(item(&m, "ghost")))
            .await
            .is_err());
        // Destroy by accessor, then by value; unknown is fine.
        svc.secret_id_destroy(by_accessor(&m, "web", &made.secret_id_accessor))
            .await
            .unwrap();
        svc.secret_id_destroy(by_value(&m, "web", &other.secret_id))
            .await
            .unwrap();
        svc.secret_id_destroy(by_value(&m, "web", &other.secret_id))
            .await
            .unwrap();
        assert!(svc
            .secret_id_list(item(&m, "web"))
            .await
            .unwrap()
            .is_empty());
        assert!(svc
            .approle_login(login(
                &m,
                &role_id(&svc, &m, "web").await,
                &made.secret_id,
                "10.0.0.1"
            ))
            .await
            .is_err());
        // Nothing of a SecretID is stored in the clear, nor in a path.
        let raw = h.db.namespace("auth").await.unwrap();
        let mut pending = vec![String::new()];
        while let Some(prefix) = pending.pop() {
            for entry in raw.list(&prefix).await.unwrap() {
                let full = format!("{prefix}{entry}");
                assert!(!full.contains("plaintext-marker"));
                if entry.ends_with('/') {
                    pending.push(full);
                } else {
                    let v = raw.get(&full).await.unwrap().unwrap();
                    assert!(!v.windows(16).any(|w| w == b"plaintext-marker"));
                }
            }
        }
    }

    #[tokio::test]
    async fn login_mints_an_approle_token() {
        let (h, svc) = service().await;
        let m = mount("ci/approle/");
        let mut r = role("web");
        r.token.as_mut().unwrap().bound_cidrs = strings(&["10.0.0.0/8"]);
        r.token.as_mut().unwrap().ttl = 120;
        svc.role_write(write(&m, r)).await.unwrap();
        let id = role_id(&svc, &m, "web").await;
        let mut req = secret_req(&m, "web");
        req.metadata = [
            ("team".to_string(), "blue".to_string()),
            ("role_name".to_string(), "spoofed".to_string()),
        ]
        .into();
        let s = svc.secret_id_create(req).await.unwrap();
        let made = svc
            .app_role_login(Request::new(login(&m, &id, &s.secret_id, "10.0.0.9")))
            .await
            .unwrap()
            .into_inner();
        let e = made.entry.unwrap();
        assert_eq!(e.display_name, "approle");
        assert_eq!(e.path, "auth/ci/approle/login");
        assert_eq!(e.policies, ["default", "dev"]);
        assert_eq!(e.meta.get("role_name").map(String::as_str), Some("web"));
        assert_eq!(e.meta.get("team").map(String::as_str), Some("blue"));
        assert_eq!(e.bound_cidrs, ["10.0.0.0/8"]);
        assert_eq!((e.ttl, e.orphan), (120, true));
        assert!(h.store.authenticate(&made.token, "10.1.1.1").await.is_ok());
        assert!(h.store.authenticate(&made.token, "8.8.8.8").await.is_err());
        // The SecretID's token_bound_cidrs win over the role's.
        let mut narrower = secret_req(&m, "web");
        narrower.token_bound_cidrs = strings(&["10.5.0.0/16"]);
        let s = svc.secret_id_create(narrower).await.unwrap();
        let made = svc
            .approle_login(login(&m, &id, &s.secret_id, ""))
            .await
            .unwrap();
        assert_eq!(made.entry.unwrap().bound_cidrs, ["10.5.0.0/16"]);
        // A role without bind_secret_id logs in with its RoleID alone
        // (from its CIDRs).
        let mut open = role("open");
        open.bind_secret_id = false;
        open.secret_id_bound_cidrs = strings(&["127.0.0.1"]);
        svc.role_write(write(&m, open)).await.unwrap();
        let open_id = role_id(&svc, &m, "open").await;
        assert!(svc
            .approle_login(login(&m, &open_id, "", "127.0.0.1"))
            .await
            .is_ok());
        assert_eq!(
            invalid(
                svc.approle_login(login(&m, &open_id, "", "127.0.0.2"))
                    .await
            ),
            "source address \"127.0.0.2\" unauthorized through CIDR restrictions on the secret ID"
        );
    }

    #[tokio::test]
    async fn login_failures() {
        let (h, svc) = service().await;
        let m = mount("approle/");
        let mut r = role("web");
        r.secret_id_ttl = 60;
        svc.role_write(write(&m, r)).await.unwrap();
        let id = role_id(&svc, &m, "web").await;
        let s = svc.secret_id_create(secret_req(&m, "web")).await.unwrap();
        assert_eq!(
            invalid(svc.approle_login(login(&m, "", "x", "")).await),
            "missing role_id"
        );
        assert_eq!(
            invalid(svc.approle_login(login(&m, &id, "", "")).await),
            "missing secret_id"
        );
        let long = "x".repeat(5000);
        for (rid, secret) in [
            ("unknown", s.secret_id.as_str()),
            (id.as_str(), "wrong"),
            (id.as_str(), long.as_str()),
        ] {
            let st = svc
                .app_role_login(Request::new(login(&m, rid, secret, "")))
                .await
                .unwrap_err();
            assert_eq!(
                (st.code(), st.message()),
                (tonic::Code::InvalidArgument, INVALID_LOGIN)
            );
        }
        // Another mount does not know the role.
        assert_eq!(
            invalid(
                svc.approle_login(login(&mount("other/"), &id, &s.secret_id, ""))
                    .await
            ),
            INVALID_LOGIN
        );
        // Expired: refused, then gone.
        h.store.clock.advance(60);
        assert_eq!(
            invalid(svc.approle_login(login(&m, &id, &s.secret_id, "")).await),
            INVALID_LOGIN
        );
        assert!(svc
            .list_leaves(&format!("method/{}/secret-id/web/", m.uuid))
            .await
            .unwrap()
            .is_empty());
        // CIDR restrictions on the SecretID.
        let mut bound = secret_req(&m, "web");
        bound.cidr_list = strings(&["10.0.0.0/8"]);
        let s = svc.secret_id_create(bound).await.unwrap();
        for ip in ["", "11.0.0.1"] {
            assert_eq!(
                invalid(svc.approle_login(login(&m, &id, &s.secret_id, ip)).await),
                format!(
                    "source address {ip:?} unauthorized through CIDR restrictions on the secret ID"
                )
            );
        }
        assert!(svc
            .approle_login(login(&m, &id, &s.secret_id, "10.0.0.1"))
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn lockout_by_role_id() {
        let (_h, svc) = service().await;
        let m = mount("approle/");
        svc.role_write(write(&m, role("web"))).await.unwrap();
        let id = role_id(&svc, &m, "web").await;
        let s = svc.secret_id_create(secret_req(&m, "web")).await.unwrap();
        for _ in 0..LOCKOUT_THRESHOLD {
            assert_eq!(
                invalid(svc.approle_login(login(&m, &id, "wrong", "")).await),
                INVALID_LOGIN
            );
        }
        let st = svc
            .app_role_login(Request::new(login(&m, &id, &s.secret_id, "")))
            .await
            .unwrap_err();
        assert_eq!(
            (st.code(), st.message()),
            (tonic::Code::PermissionDenied, "permission denied")
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn num_uses_n_allows_exactly_n_logins_under_concurrency() {
        let (h, svc) = service().await;
        let svc = Arc::new(svc);
        let m = mount("approle/");
        svc.role_write(write(&m, role("web"))).await.unwrap();
        let id = role_id(&svc, &m, "web").await;
        // Two replicas over one database race as well.
        let replica = Arc::new(MethodsService::new(Arc::new(
            crate::store::TokenStore::new(h.store.barrier.clone()),
        )));
        for n in [1, 3] {
            let mut req = secret_req(&m, "web");
            req.num_uses = n;
            let s = svc.secret_id_create(req).await.unwrap();
            let tasks: Vec<_> = (0..12)
                .map(|i| {
                    let svc = if i % 2 == 0 {
                        svc.clone()
                    } else {
                        replica.clone()
                    };
                    let req = login(&m, &id, &s.secret_id, "");
                    tokio::spawn(async move { svc.approle_login(req).await })
                })
                .collect();
            let mut granted = 0;
            for t in tasks {
                match t.await.unwrap() {
                    Ok(_) => granted += 1,
                    // Failures come after the last use, and lock the RoleID.
                    Err(AuthError::InvalidRequest(m)) if m == INVALID_LOGIN => {}
                    Err(AuthError::PermissionDenied) => {}
                    Err(e) => panic!("unexpected {e:?}"),
                }
            }
            let key = LockKey::new(&m.uuid, "role-id", &id);
            svc.lockout.succeeded(&key);
            replica.lockout.succeeded(&key);
            assert_eq!(granted, n, "num_uses={n}");
            // Deleted after its last use.
            assert!(
                !svc.secret_id_lookup(by_accessor(&m, "web", &s.secret_id_accessor))
                    .await
                    .unwrap()
                    .found
            );
            assert!(svc
                .secret_id_list(item(&m, "web"))
                .await
                .unwrap()
                .is_empty());
        }
    }

    #[tokio::test]
    async fn uses_count_down() {
        let (_h, svc) = service().await;
        let m = mount("approle/");
        svc.role_write(write(&m, role("web"))).await.unwrap();
        let id = role_id(&svc, &m, "web").await;
        let mut req = secret_req(&m, "web");
        req.num_uses = 2;
        let s = svc.secret_id_create(req).await.unwrap();
        svc.approle_login(login(&m, &id, &s.secret_id, ""))
            .await
            .unwrap();
        let e = svc
            .secret_id_lookup(by_value(&m, "web", &s.secret_id))
            .await
            .unwrap();
        assert_eq!(e.secret_id_num_uses, 1);
        svc.approle_login(login(&m, &id, &s.secret_id, ""))
            .await
            .unwrap();
        assert!(svc
            .approle_login(login(&m, &id, &s.secret_id, ""))
            .await
            .is_err());
    }

    #[tokio::test]
    async fn tidy_removes_dead_secret_ids() {
        let (h, svc) = service().await;
        let m = mount("approle/");
        svc.role_write(write(&m, role("web"))).await.unwrap();
        let mut short = secret_req(&m, "web");
        short.ttl = 10;
        let expired = svc.secret_id_create(short).await.unwrap();
        let live = svc.secret_id_create(secret_req(&m, "web")).await.unwrap();
        // A used-up one whose deletion did not happen.
        let stuck = svc.secret_id_create(secret_req(&m, "web")).await.unwrap();
        let found = svc
            .find_secret(&m.uuid, "web", SecretRef::Value(&stuck.secret_id))
            .await
            .unwrap()
            .unwrap();
        let mut used = found.record.clone();
        used.used_up = true;
        svc.store
            .barrier
            .put(&secret_path(&m.uuid, "web", &found.hash), &encode(&used))
            .await
            .unwrap();
        // A dangling index entry.
        svc.store
            .barrier
            .put(&accessor_path(&m.uuid, "web", "dead-beef"), &[b'0'; 64])
            .await
            .unwrap();
        h.store.clock.advance(10);
        let removed = svc
            .tidy_secret_ids(Request::new(MountRequest {
                mount: Some(m.clone()),
            }))
            .await
            .unwrap()
            .into_inner()
            .removed;
        assert_eq!(removed, 2);
        assert_eq!(
            svc.secret_id_list(item(&m, "web")).await.unwrap(),
            std::slice::from_ref(&live.secret_id_accessor)
        );
        let index = svc
            .list_leaves(&format!("method/{}/secret-id-accessor/web/", m.uuid))
            .await
            .unwrap();
        assert_eq!(index, [live.secret_id_accessor]);
        assert!(
            !svc.secret_id_lookup(by_value(&m, "web", &expired.secret_id))
                .await
                .unwrap()
                .found
        );
        assert_eq!(
            svc.secret_id_tidy(MountRequest { mount: Some(m) })
                .await
                .unwrap(),
            0
        );
    }

    #[test]
    fn debug_hides_the_role_id() {
        let r = RoleRecord {
            name: "web".into(),
            role_id: "secret-role-id".into(),
            bind_secret_id: true,
            secret_id_bound_cidrs: vec![],
            secret_id_num_uses: 0,
            secret_id_ttl: 0,
            local_secret_ids: false,
            token: Params::default(),
        };
        assert!(!format!("{r:?}").contains("secret-role-id"));
    }
}
