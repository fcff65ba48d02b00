//! The `bulwark.auth.v1.Methods` gRPC service: the userpass, AppRole and TLS
//! certificate auth methods. The gateway owns the auth mount table and names
//! the mount on every call; credentials are checked here and a login's token
//! is minted here, through the token store's own write path
//! ([`TokenStore::issue`]).
//!
//! Layout (namespace `auth`, every value sealed by the barrier; `<uuid>` is
//! the mount's, so a disabled mount's records go with one prefix):
//!
//! ```text
//! method/<uuid>/user/<name>                          → JSON user (password hash, token params)
//! method/<uuid>/role/<name>                          → JSON AppRole role (with its RoleID)
//! method/<uuid>/role-id/<hmac(role_id)>              → role name
//! method/<uuid>/secret-id/<role>/<hmac(secret_id)>   → JSON SecretID (never the SecretID itself)
//! method/<uuid>/secret-id-accessor/<role>/<accessor> → hmac(secret_id)
//! method/<uuid>/cert/<name>                          → JSON certificate role
//! ```
//!
//! `hmac(x)` is the token store's keyed hash with a per-mount, per-use domain
//! ([`TokenStore::keyed_hash`]), so neither RoleIDs nor SecretIDs appear in a
//! storage path or value.
//!
//! Every RPC answers UNAVAILABLE "Vault is sealed" while the service holds no
//! data key, before looking at the request.
//!
//! Login lockout ([`Lockout`]) is Vault's (1.13+) default: 5 failed logins
//! for one user (userpass) or RoleID (AppRole) on one mount, each within 15
//! minutes of the previous one, lock it for 15 minutes. It is kept in memory
//! by each process: replicas count separately and a restart forgets it.

mod approle;
mod cert;
mod cert_verify;
mod userpass;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bulwark_proto::auth::v1::methods_server::Methods;
use bulwark_proto::auth::v1::{
    AppRole, AppRoleLoginRequest, CertLoginRequest, CertRole, CreateSecretIdRequest,
    CreateTokenResponse, DropMountRequest, ItemRequest, MethodsEmpty, Mount, MountRequest,
    NamesResponse, RevokeTokenResponse, SecretIdCreated, SecretIdEntry, SecretIdRef,
    SetRoleIdRequest, TidyResponse, TokenParams, User, UserpassLoginRequest, WriteCertRoleRequest,
    WriteRoleRequest, WriteUserRequest,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tonic::{Request, Response, Status};

use crate::cidr;
use crate::create::{normalize_policies, period_capped_warning, ttl_capped_warning, Plan};
use crate::error::AuthError;
use crate::record::{TokenRecord, BATCH_TYPE, SERVICE_TYPE};
use crate::store::{Clock, TokenStore, SYSTEM_DEFAULT_TTL, SYSTEM_MAX_TTL};

/// Longest user or role name.
const MAX_NAME_LEN: usize = 128;

/// Every record of the mount `uuid`.
fn mount_prefix(uuid: &str) -> String {
    format!("method/{uuid}/")
}

/// The gateway's mount, checked: a UUID safe inside a storage path, a path
/// with its trailing slash, TTLs not negative, a known token type.
pub(crate) fn check_mount(mount: Option<Mount>) -> Result<Mount, AuthError> {
    let m = mount.ok_or_else(|| AuthError::invalid("missing mount"))?;
    if m.uuid.is_empty()
        || m.uuid.len() > 64
        || !m
            .uuid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    {
        return Err(AuthError::invalid("invalid mount uuid"));
    }
    if m.path.is_empty()
        || m.path.len() > 1024
        || !m.path.ends_with('/')
        || m.path.starts_with('/')
        || m.path.contains("//")
    {
        return Err(AuthError::invalid("invalid mount path"));
    }
    if m.default_ttl < 0 || m.max_ttl < 0 {
        return Err(AuthError::invalid("mount TTLs cannot be negative"));
    }
    match m.token_type.as_str() {
        "" | "default-service" | "default-batch" | "service" | "batch" => Ok(m),
        _ => Err(AuthError::invalid("invalid mount token_type")),
    }
}

/// An AppRole or certificate role name: 1 to 128 of `[A-Za-z0-9_.@-]`,
/// lower-cased (Vault treats role names case-insensitively).
pub(crate) fn role_name(raw: &str) -> Result<String, AuthError> {
    let name = raw.trim();
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b'-'))
    {
        return Err(AuthError::invalid("invalid role name"));
    }
    Ok(name.to_ascii_lowercase())
}

// === token parameters ===

/// A user's or role's token parameters (Vault's `token_*`), as stored:
/// validated and normalized when written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Params {
    pub ttl: i64,
    pub max_ttl: i64,
    /// Normalized (trimmed, lower-cased, deduplicated, sorted).
    pub policies: Vec<String>,
    /// Validated CIDR blocks or bare addresses.
    pub bound_cidrs: Vec<String>,
    pub explicit_max_ttl: i64,
    pub no_default_policy: bool,
    pub num_uses: i64,
    pub period: i64,
    /// "default", "service" or "batch".
    #[serde(rename = "type")]
    pub token_type: String,
}

impl Params {
    /// Checks the parameters as Vault's `tokenutil` does, and normalizes them.
    pub fn from_proto(params: Option<TokenParams>) -> Result<Self, AuthError> {
        let p = params.unwrap_or_default();
        for (value, name) in [
            (p.ttl, "token_ttl"),
            (p.max_ttl, "token_max_ttl"),
            (p.explicit_max_ttl, "token_explicit_max_ttl"),
            (p.num_uses, "token_num_uses"),
            (p.period, "token_period"),
        ] {
            if value < 0 {
                return Err(AuthError::invalid(format!("'{name}' cannot be negative")));
            }
        }
        if p.ttl > 0 && p.max_ttl > 0 && p.ttl > p.max_ttl {
            return Err(AuthError::invalid(
                "'token_ttl' cannot be greater than 'token_max_ttl'",
            ));
        }
        let token_type = match p.r#type.trim() {
            "" | "default" => "default",
            SERVICE_TYPE => SERVICE_TYPE,
            BATCH_TYPE => BATCH_TYPE,
            other => {
                return Err(AuthError::invalid(format!(
                    "invalid 'token_type' value {:?}",
                    cidr::quote(other)
                )))
            }
        };
        if token_type == BATCH_TYPE {
            if p.period != 0 {
                return Err(AuthError::invalid(
                    "'token_type' cannot be 'batch' or 'default_batch' when set to generate periodic tokens",
                ));
            }
            if p.num_uses != 0 {
                return Err(AuthError::invalid(
                    "'token_type' cannot be 'batch' or 'default_batch' when set to generate tokens with limited use count",
                ));
            }
        }
        Ok(Params {
            ttl: p.ttl,
            max_ttl: p.max_ttl,
            policies: normalize_policies(&p.policies),
            bound_cidrs: cidr::validate_blocks(&p.bound_cidrs)?,
            explicit_max_ttl: p.explicit_max_ttl,
            no_default_policy: p.no_default_policy,
            num_uses: p.num_uses,
            period: p.period,
            token_type: token_type.to_string(),
        })
    }

    pub fn to_proto(&self) -> TokenParams {
        TokenParams {
            ttl: self.ttl,
            max_ttl: self.max_ttl,
            policies: self.policies.clone(),
            bound_cidrs: self.bound_cidrs.clone(),
            explicit_max_ttl: self.explicit_max_ttl,
            no_default_policy: self.no_default_policy,
            num_uses: self.num_uses,
            period: self.period,
            r#type: self.token_type.clone(),
        }
    }
}

// === login tokens ===

/// What a successful login knows about the token it earns, besides the
/// user's or role's parameters.
#[derive(Debug)]
pub(crate) struct Login {
    pub display_name: String,
    /// Creation path, e.g. `auth/userpass/login/alice`.
    pub path: String,
    pub meta: BTreeMap<String, String>,
    /// Validated blocks the token is bound to.
    pub bound_cidrs: Vec<String>,
}

/// The type of a login's token: the user's or role's explicit type, else the
/// mount's default.
fn login_token_type(params: &Params, mount: &Mount) -> &'static str {
    match params.token_type.as_str() {
        SERVICE_TYPE => SERVICE_TYPE,
        BATCH_TYPE => BATCH_TYPE,
        _ => match mount.token_type.as_str() {
            "batch" | "default-batch" => BATCH_TYPE,
            _ => SERVICE_TYPE,
        },
    }
}

/// Decides a login's token at `now`, as Vault's `CalculateTTL` does for a
/// login: the max is the mount's (768h if unset), lowered by the user's or
/// role's `token_max_ttl` and `token_explicit_max_ttl`; the TTL is the
/// period for periodic tokens, else `token_ttl`, else the mount's default
/// (768h if unset), capped by the max with Vault's warning. Batch tokens
/// ignore period, use limit and explicit max (as in Vault).
pub(crate) fn plan_login(
    mount: &Mount,
    params: &Params,
    login: Login,
    now: i64,
) -> Result<Plan, AuthError> {
    let mut policies = params.policies.clone();
    if policies.iter().any(|p| p == "root") {
        return Err(AuthError::invalid("auth methods cannot create root tokens"));
    }
    if !params.no_default_policy && !policies.iter().any(|p| p == "default") {
        policies.push("default".to_string());
        policies.sort();
    }
    let token_type = login_token_type(params, mount);
    let batch = token_type == BATCH_TYPE;
    let mount_max = if mount.max_ttl > 0 {
        mount.max_ttl
    } else {
        SYSTEM_MAX_TTL
    };
    let max = if params.max_ttl > 0 {
        params.max_ttl.min(mount_max)
    } else {
        mount_max
    };
    let explicit = if batch { 0 } else { params.explicit_max_ttl };
    let effective_max = if explicit > 0 { max.min(explicit) } else { max };
    let period = if batch { 0 } else { params.period };
    let mut warnings = Vec::new();
    let ttl = if period > 0 {
        if period > effective_max {
            warnings.push(period_capped_warning(period, effective_max));
            effective_max
        } else {
            period
        }
    } else {
        let wanted = if params.ttl > 0 {
            params.ttl
        } else if mount.default_ttl > 0 {
            mount.default_ttl
        } else {
            SYSTEM_DEFAULT_TTL
        };
        if wanted > effective_max {
            warnings.push(ttl_capped_warning(wanted, effective_max));
            effective_max
        } else {
            wanted
        }
    };
    let record = TokenRecord {
        accessor: String::new(),
        policies,
        meta: login.meta,
        display_name: login.display_name,
        path: login.path,
        creation_time: now,
        creation_ttl: ttl,
        expire_time: now.saturating_add(ttl),
        explicit_max_ttl: explicit,
        period: if period > 0 { ttl } else { 0 },
        num_uses: if batch { 0 } else { params.num_uses },
        orphan: true,
        renewable: !batch,
        token_type: token_type.to_string(),
        parent: None,
        last_renewal_time: 0,
        used_up: false,
        max_ttl: max,
        bound_cidrs: login.bound_cidrs,
    };
    Ok(Plan { record, warnings })
}

// === lockout ===

/// Failed logins before a lock (Vault's `lockout_threshold`).
pub(crate) const LOCKOUT_THRESHOLD: u32 = 5;
/// How long a lock lasts, seconds (Vault's `lockout_duration`).
pub(crate) const LOCKOUT_DURATION: i64 = 15 * 60;
/// A quiet period after which failures are forgotten, seconds (Vault's
/// `lockout_counter_reset`).
pub(crate) const LOCKOUT_COUNTER_RESET: i64 = 15 * 60;
/// Principals tracked at most; beyond it the stalest are forgotten first.
const LOCKOUT_MAX_ENTRIES: usize = 100_000;

/// Who a lockout counts for: one principal on one mount. The principal is
/// kept as a digest only (AppRole's is a RoleID).
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct LockKey {
    mount: String,
    principal: [u8; 32],
}

impl LockKey {
    pub fn new(mount_uuid: &str, kind: &str, name: &str) -> Self {
        let mut h = Sha256::new();
        h.update(kind.as_bytes());
        h.update([0]);
        h.update(name.as_bytes());
        LockKey {
            mount: mount_uuid.to_string(),
            principal: h.finalize().into(),
        }
    }
}

#[derive(Default)]
struct Failures {
    count: u32,
    last_failure: i64,
    locked_until: i64,
}

/// Failed-login counting, per process (see the module documentation). The
/// lock is checked before a login's credentials are, so attempts already in
/// flight when the threshold is reached still complete (as in Vault).
pub(crate) struct Lockout {
    clock: Clock,
    entries: Mutex<HashMap<LockKey, Failures>>,
}

impl Lockout {
    pub fn new(clock: Clock) -> Self {
        Lockout {
            clock,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<LockKey, Failures>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `key` is locked now.
    pub fn is_locked(&self, key: &LockKey) -> bool {
        let now = self.clock.now();
        self.entries()
            .get(key)
            .is_some_and(|f| f.locked_until > now)
    }

    /// Counts one failed login; the threshold-th locks.
    pub fn failed(&self, key: &LockKey) {
        let now = self.clock.now();
        let mut map = self.entries();
        if !map.contains_key(key) && map.len() >= LOCKOUT_MAX_ENTRIES {
            prune(&mut map, now);
        }
        let f = map.entry(key.clone()).or_default();
        let lock_over = f.locked_until != 0 && f.locked_until <= now;
        let quiet = f.last_failure != 0 && now - f.last_failure >= LOCKOUT_COUNTER_RESET;
        if lock_over || quiet {
            *f = Failures::default();
        }
        f.count += 1;
        f.last_failure = now;
        if f.count >= LOCKOUT_THRESHOLD && f.locked_until <= now {
            f.locked_until = now + LOCKOUT_DURATION;
        }
    }

    /// A successful login clears the count.
    pub fn succeeded(&self, key: &LockKey) {
        self.entries().remove(key);
    }

    /// Forgets every count of a mount (disabled).
    pub fn forget_mount(&self, mount_uuid: &str) {
        self.entries().retain(|k, _| k.mount != mount_uuid);
    }
}

/// Makes room: drops what no longer matters, then the stalest unlocked
/// entries, and only if every entry is a lock, the locks ending soonest.
fn prune(map: &mut HashMap<LockKey, Failures>, now: i64) {
    map.retain(|_, f| f.locked_until > now || now - f.last_failure < LOCKOUT_COUNTER_RESET);
    if map.len() < LOCKOUT_MAX_ENTRIES {
        return;
    }
    let mut ages: Vec<i64> = map
        .values()
        .filter(|f| f.locked_until <= now)
        .map(|f| f.last_failure)
        .collect();
    if !ages.is_empty() {
        ages.sort_unstable();
        let cut = ages[ages.len() / 2];
        map.retain(|_, f| f.locked_until > now || f.last_failure > cut);
    }
    if map.len() >= LOCKOUT_MAX_ENTRIES {
        let mut ends: Vec<i64> = map.values().map(|f| f.locked_until).collect();
        ends.sort_unstable();
        let cut = ends[ends.len() / 2];
        map.retain(|_, f| f.locked_until > cut);
    }
}

// === the service ===

/// The gRPC face of the auth methods, over the token store.
pub struct MethodsService {
    store: Arc<TokenStore>,
    lockout: Lockout,
}

impl MethodsService {
    pub fn new(store: Arc<TokenStore>) -> Self {
        let lockout = Lockout::new(store.clock.clone());
        MethodsService { store, lockout }
    }

    // --- storage helpers ---

    async fn get_record<T: DeserializeOwned>(&self, path: &str) -> Result<Option<T>, AuthError> {
        Ok(self.store.barrier.get_json(path).await?)
    }

    async fn put_record<T: Serialize>(&self, path: &str, value: &T) -> Result<(), AuthError> {
        Ok(self.store.barrier.put_json(path, value).await?)
    }

    /// The entries (not folders) directly under `prefix`, sorted.
    async fn list_leaves(&self, prefix: &str) -> Result<Vec<String>, AuthError> {
        Ok(self
            .store
            .barrier
            .list(prefix)
            .await?
            .into_iter()
            .filter(|k| !k.ends_with('/'))
            .collect())
    }

    /// Deletes every record under `prefix` (at any depth); returns how many.
    async fn delete_tree(&self, prefix: &str) -> Result<usize, AuthError> {
        let mut pending = vec![prefix.to_string()];
        let mut deleted = 0;
        while let Some(p) = pending.pop() {
            for entry in self.store.barrier.list(&p).await? {
                let full = format!("{p}{entry}");
                if entry.ends_with('/') {
                    pending.push(full);
                } else {
                    self.store.barrier.delete(&full).await?;
                    deleted += 1;
                }
            }
        }
        Ok(deleted)
    }

    /// Mints a login's token from `params` on `mount`.
    async fn mint(
        &self,
        mount: &Mount,
        params: &Params,
        login: Login,
    ) -> Result<CreateTokenResponse, AuthError> {
        let Plan { record, warnings } = plan_login(mount, params, login, self.store.now())?;
        let created = self.store.issue(record, None, warnings).await?;
        Ok(CreateTokenResponse {
            token: created.token.to_string(),
            entry: Some(created.entry),
            warnings: created.warnings,
        })
    }

    // --- DropMount ---

    /// Deletes every record of the mount, then revokes (with descendants,
    /// announced on the revocation stream) every token whose creation path
    /// starts with `auth/<mount path>`; returns the revoked accessors.
    ///
    /// Tokens are not indexed by path, so this scans every token: a mount is
    /// disabled rarely, and the sweeper scans as much every few seconds.
    pub(crate) async fn mount_drop(&self, req: DropMountRequest) -> Result<Vec<String>, AuthError> {
        let mount = check_mount(req.mount)?;
        // Records first: no login succeeds on this mount from here on.
        self.delete_tree(&mount_prefix(&mount.uuid)).await?;
        self.lockout.forget_mount(&mount.uuid);
        let prefix = format!("auth/{}", mount.path);
        let mut revoked = Vec::new();
        for hash in self.store.list_hashes().await? {
            let record = match self.store.read(&hash).await {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(AuthError::Corrupt(_)) => {
                    tracing::warn!("skipping a token record that does not decrypt");
                    continue;
                }
                Err(e) => return Err(e),
            };
            if record.path.starts_with(&prefix) {
                revoked.extend(self.store.revoke_tree(&hash).await?);
            }
        }
        Ok(revoked)
    }
}

/// The context of a login, checked.
fn login_context(
    ctx: Option<bulwark_proto::auth::v1::LoginContext>,
) -> Result<(Mount, String), AuthError> {
    let ctx = ctx.ok_or_else(|| AuthError::invalid("missing login context"))?;
    Ok((check_mount(ctx.mount)?, ctx.remote_ip))
}

fn ok<T>(value: T) -> Result<Response<T>, Status> {
    Ok(Response::new(value))
}

#[tonic::async_trait]
impl Methods for MethodsService {
    // --- userpass ---

    #[tracing::instrument(skip_all)]
    async fn write_user(
        &self,
        req: Request<WriteUserRequest>,
    ) -> Result<Response<MethodsEmpty>, Status> {
        self.store.ensure_unsealed().await?;
        self.user_write(req.into_inner()).await?;
        ok(MethodsEmpty {})
    }

    #[tracing::instrument(skip_all)]
    async fn read_user(&self, req: Request<ItemRequest>) -> Result<Response<User>, Status> {
        self.store.ensure_unsealed().await?;
        ok(self.user_read(req.into_inner()).await?)
    }

    #[tracing::instrument(skip_all)]
    async fn delete_user(
        &self,
        req: Request<ItemRequest>,
    ) -> Result<Response<MethodsEmpty>, Status> {
        self.store.ensure_unsealed().await?;
        self.user_delete(req.into_inner()).await?;
        ok(MethodsEmpty {})
    }

    #[tracing::instrument(skip_all)]
    async fn list_users(
        &self,
        req: Request<MountRequest>,
    ) -> Result<Response<NamesResponse>, Status> {
        self.store.ensure_unsealed().await?;
        ok(NamesResponse {
            names: self.user_list(req.into_inner()).await?,
        })
    }

    #[tracing::instrument(skip_all)]
    async fn userpass_login(
        &self,
        req: Request<UserpassLoginRequest>,
    ) -> Result<Response<CreateTokenResponse>, Status> {
        self.store.ensure_unsealed().await?;
        ok(self.user_login(req.into_inner()).await?)
    }

    // --- AppRole ---

    #[tracing::instrument(skip_all)]
    async fn write_role(
        &self,
        req: Request<WriteRoleRequest>,
    ) -> Result<Response<MethodsEmpty>, Status> {
        self.store.ensure_unsealed().await?;
        self.role_write(req.into_inner()).await?;
        ok(MethodsEmpty {})
    }

    #[tracing::instrument(skip_all)]
    async fn read_role(&self, req: Request<ItemRequest>) -> Result<Response<AppRole>, Status> {
        self.store.ensure_unsealed().await?;
        ok(self.role_read(req.into_inner()).await?)
    }

    #[tracing::instrument(skip_all)]
    async fn delete_role(
        &self,
        req: Request<ItemRequest>,
    ) -> Result<Response<MethodsEmpty>, Status> {
        self.store.ensure_unsealed().await?;
        self.role_delete(req.into_inner()).await?;
        ok(MethodsEmpty {})
    }

    #[tracing::instrument(skip_all)]
    async fn list_roles(
        &self,
        req: Request<MountRequest>,
    ) -> Result<Response<NamesResponse>, Status> {
        self.store.ensure_unsealed().await?;
        ok(NamesResponse {
            names: self.role_list(req.into_inner()).await?,
        })
    }

    #[tracing::instrument(skip_all)]
    async fn set_role_id(
        &self,
        req: Request<SetRoleIdRequest>,
    ) -> Result<Response<MethodsEmpty>, Status> {
        self.store.ensure_unsealed().await?;
        self.role_set_id(req.into_inner()).await?;
        ok(MethodsEmpty {})
    }

    #[tracing::instrument(skip_all)]
    async fn create_secret_id(
        &self,
        req: Request<CreateSecretIdRequest>,
    ) -> Result<Response<SecretIdCreated>, Status> {
        self.store.ensure_unsealed().await?;
        ok(self.secret_id_create(req.into_inner()).await?)
    }

    #[tracing::instrument(skip_all)]
    async fn lookup_secret_id(
        &self,
        req: Request<SecretIdRef>,
    ) -> Result<Response<SecretIdEntry>, Status> {
        self.store.ensure_unsealed().await?;
        ok(self.secret_id_lookup(req.into_inner()).await?)
    }

    #[tracing::instrument(skip_all)]
    async fn destroy_secret_id(
        &self,
        req: Request<SecretIdRef>,
    ) -> Result<Response<MethodsEmpty>, Status> {
        self.store.ensure_unsealed().await?;
        self.secret_id_destroy(req.into_inner()).await?;
        ok(MethodsEmpty {})
    }

    #[tracing::instrument(skip_all)]
    async fn list_secret_ids(
        &self,
        req: Request<ItemRequest>,
    ) -> Result<Response<NamesResponse>, Status> {
        self.store.ensure_unsealed().await?;
        ok(NamesResponse {
            names: self.secret_id_list(req.into_inner()).await?,
        })
    }

    #[tracing::instrument(skip_all)]
    async fn app_role_login(
        &self,
        req: Request<AppRoleLoginRequest>,
    ) -> Result<Response<CreateTokenResponse>, Status> {
        self.store.ensure_unsealed().await?;
        ok(self.approle_login(req.into_inner()).await?)
    }

    #[tracing::instrument(skip_all)]
    async fn tidy_secret_ids(
        &self,
        req: Request<MountRequest>,
    ) -> Result<Response<TidyResponse>, Status> {
        self.store.ensure_unsealed().await?;
        ok(TidyResponse {
            removed: self.secret_id_tidy(req.into_inner()).await?,
        })
    }

    // --- TLS certificates ---

    #[tracing::instrument(skip_all)]
    async fn write_cert_role(
        &self,
        req: Request<WriteCertRoleRequest>,
    ) -> Result<Response<MethodsEmpty>, Status> {
        self.store.ensure_unsealed().await?;
        self.cert_write(req.into_inner()).await?;
        ok(MethodsEmpty {})
    }

    #[tracing::instrument(skip_all)]
    async fn read_cert_role(
        &self,
        req: Request<ItemRequest>,
    ) -> Result<Response<CertRole>, Status> {
        self.store.ensure_unsealed().await?;
        ok(self.cert_read(req.into_inner()).await?)
    }

    #[tracing::instrument(skip_all)]
    async fn delete_cert_role(
        &self,
        req: Request<ItemRequest>,
    ) -> Result<Response<MethodsEmpty>, Status> {
        self.store.ensure_unsealed().await?;
        self.cert_delete(req.into_inner()).await?;
        ok(MethodsEmpty {})
    }

    #[tracing::instrument(skip_all)]
    async fn list_cert_roles(
        &self,
        req: Request<MountRequest>,
    ) -> Result<Response<NamesResponse>, Status> {
        self.store.ensure_unsealed().await?;
        ok(NamesResponse {
            names: self.cert_list(req.into_inner()).await?,
        })
    }

    #[tracing::instrument(skip_all)]
    async fn cert_login(
        &self,
        req: Request<CertLoginRequest>,
    ) -> Result<Response<CreateTokenResponse>, Status> {
        self.store.ensure_unsealed().await?;
        ok(self.cert_login_inner(req.into_inner()).await?)
    }

    // --- mounts ---

    #[tracing::instrument(skip_all)]
    async fn drop_mount(
        &self,
        req: Request<DropMountRequest>,
    ) -> Result<Response<RevokeTokenResponse>, Status> {
        self.store.ensure_unsealed().await?;
        ok(RevokeTokenResponse {
            accessors: self.mount_drop(req.into_inner()).await?,
        })
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers for the methods' tests.

    use super::*;
    use crate::test_util::{harness, Harness};

    /// A service over a fresh store (with a root token).
    pub(crate) async fn service() -> (Harness, MethodsService) {
        let h = harness().await;
        let svc = MethodsService::new(h.store.clone());
        (h, svc)
    }

    /// A mount at `path` with the system's TTLs.
    pub(crate) fn mount(path: &str) -> Mount {
        Mount {
            uuid: format!("uuid-{}", path.trim_end_matches('/').replace('/', "-")),
            path: path.to_string(),
            default_ttl: 0,
            max_ttl: 0,
            token_type: String::new(),
        }
    }

    /// Login context from `ip` on `mount`.
    pub(crate) fn ctx(mount: &Mount, ip: &str) -> Option<bulwark_proto::auth::v1::LoginContext> {
        Some(bulwark_proto::auth::v1::LoginContext {
            mount: Some(mount.clone()),
            remote_ip: ip.to_string(),
        })
    }

    pub(crate) fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// The message of an InvalidArgument error.
    pub(crate) fn invalid<T: std::fmt::Debug>(r: Result<T, AuthError>) -> String {
        match r {
            Err(AuthError::InvalidRequest(m)) => m,
            other => panic!("expected InvalidRequest, got {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use crate::record::TokenRef;
    use bulwark_proto::auth::v1::CreateTokenRequest;

    const NOW: i64 = 1_700_000_000;

    fn login() -> Login {
        Login {
            display_name: "userpass-alice".into(),
            path: "auth/userpass/login/alice".into(),
            meta: [("username".to_string(), "alice".to_string())].into(),
            bound_cidrs: vec![],
        }
    }

    fn params(adjust: impl FnOnce(&mut TokenParams)) -> Params {
        let mut p = TokenParams::default();
        adjust(&mut p);
        Params::from_proto(Some(p)).unwrap()
    }

    #[test]
    fn mounts_are_checked() {
        assert!(check_mount(Some(mount("userpass/"))).is_ok());
        assert!(check_mount(Some(mount("ci/approle/"))).is_ok());
        let bad: Vec<fn(&mut Mount)> = vec![
            |m| m.uuid = String::new(),
            |m| m.uuid = "a/b".into(),
            |m| m.uuid = "../x".into(),
            |m| m.uuid = "x".repeat(65),
            |m| m.path = String::new(),
            |m| m.path = "userpass".into(),
            |m| m.path = "/userpass/".into(),
            |m| m.path = "a//b/".into(),
            |m| m.default_ttl = -1,
            |m| m.max_ttl = -1,
            |m| m.token_type = "weird".into(),
        ];
        for adjust in bad {
            let mut m = mount("userpass/");
            adjust(&mut m);
            assert!(
                matches!(check_mount(Some(m)), Err(AuthError::InvalidRequest(_))),
                "accepted"
            );
        }
        assert_eq!(invalid(check_mount(None)), "missing mount");
    }

    #[test]
    fn role_names() {
        assert_eq!(role_name(" Web.App@x-1_2 ").unwrap(), "web.app@x-1_2");
        for bad in ["", " ", "a/b", "a b", "é", &"x".repeat(129)] {
            assert_eq!(invalid(role_name(bad)), "invalid role name", "{bad:?}");
        }
        assert!(role_name(&"x".repeat(128)).is_ok());
    }

    #[test]
    fn params_are_validated_and_normalized() {
        let p = params(|p| {
            p.policies = strings(&[" Dev", "ops", "dev", ""]);
            p.bound_cidrs = strings(&["10.0.0.0/8", " 1.2.3.4 "]);
            p.r#type = String::new();
        });
        assert_eq!(p.policies, ["dev", "ops"]);
        assert_eq!(p.bound_cidrs, ["10.0.0.0/8", "1.2.3.4"]);
        assert_eq!(p.token_type, "default");
        assert_eq!(Params::from_proto(Some(p.to_proto())).unwrap(), p);
        let check = |adjust: fn(&mut TokenParams)| {
            let mut p = TokenParams::default();
            adjust(&mut p);
            invalid(Params::from_proto(Some(p)))
        };
        assert_eq!(check(|p| p.ttl = -1), "'token_ttl' cannot be negative");
        assert_eq!(
            check(|p| p.max_ttl = -1),
            "'token_max_ttl' cannot be negative"
        );
        assert_eq!(
            check(|p| p.explicit_max_ttl = -5),
            "'token_explicit_max_ttl' cannot be negative"
        );
        assert_eq!(
            check(|p| p.num_uses = -1),
            "'token_num_uses' cannot be negative"
        );
        assert_eq!(
            check(|p| p.period = -1),
            "'token_period' cannot be negative"
        );
        assert_eq!(
            check(|p| {
                p.ttl = 100;
                p.max_ttl = 50;
            }),
            "'token_ttl' cannot be greater than 'token_max_ttl'"
        );
        assert_eq!(
            check(|p| p.r#type = "fancy".into()),
            "invalid 'token_type' value \"fancy\""
        );
        assert!(check(|p| {
            p.r#type = "batch".into();
            p.period = 60;
        })
        .contains("periodic"));
        assert!(check(|p| {
            p.r#type = "batch".into();
            p.num_uses = 3;
        })
        .contains("limited use count"));
        assert_eq!(
            check(|p| p.bound_cidrs = strings(&["10.0.0.0/8", "300.1.1.1"])),
            "invalid CIDR block or IP address \"300.1.1.1\""
        );
    }

    #[test]
    fn login_ttls() {
        let m = mount("userpass/");
        // (mount default, mount max, ttl, max_ttl, explicit, period) → (ttl, max, warned)
        let cases = [
            (
                (0, 0),
                (0, 0, 0, 0),
                (SYSTEM_DEFAULT_TTL, SYSTEM_MAX_TTL, false),
            ),
            ((600, 0), (0, 0, 0, 0), (600, SYSTEM_MAX_TTL, false)),
            ((600, 3600), (0, 0, 0, 0), (600, 3600, false)),
            ((0, 3600), (0, 0, 0, 0), (3600, 3600, true)),
            ((0, 3600), (60, 0, 0, 0), (60, 3600, false)),
            ((0, 3600), (0, 120, 0, 0), (120, 120, true)),
            ((0, 3600), (0, 7200, 0, 0), (3600, 3600, true)),
            ((0, 0), (100, 0, 50, 0), (50, SYSTEM_MAX_TTL, true)),
            ((0, 0), (0, 0, 0, 300), (300, SYSTEM_MAX_TTL, false)),
            ((0, 3600), (0, 0, 0, 7200), (3600, 3600, true)),
            ((0, 0), (0, 0, 100, 300), (100, SYSTEM_MAX_TTL, true)),
        ];
        for ((default_ttl, max_ttl), (ttl, pmax, explicit, period), (want, want_max, warned)) in
            cases
        {
            let mount = Mount {
                default_ttl,
                max_ttl,
                ..m.clone()
            };
            let p = params(|p| {
                p.ttl = ttl;
                p.max_ttl = pmax;
                p.explicit_max_ttl = explicit;
                p.period = period;
            });
            let plan = plan_login(&mount, &p, login(), NOW).unwrap();
            let r = &plan.record;
            let case = format!("{default_ttl} {max_ttl} {ttl} {pmax} {explicit} {period}");
            assert_eq!(r.creation_ttl, want, "{case}");
            assert_eq!(r.expire_time, NOW + want, "{case}");
            assert_eq!(r.max_ttl, want_max, "{case}");
            assert_eq!(
                !plan.warnings.is_empty(),
                warned,
                "{case} {:?}",
                plan.warnings
            );
            assert_eq!(r.period, if period > 0 { want } else { 0 }, "{case}");
            assert!(r.orphan && r.renewable && r.parent.is_none(), "{case}");
        }
    }

    #[test]
    fn login_policies_types_and_names() {
        let m = mount("userpass/");
        let p = params(|p| p.policies = strings(&["web", "ops"]));
        let r = plan_login(&m, &p, login(), NOW).unwrap().record;
        assert_eq!(r.policies, ["default", "ops", "web"]);
        assert_eq!(r.display_name, "userpass-alice");
        assert_eq!(r.path, "auth/userpass/login/alice");
        assert_eq!(r.token_type, "service");
        let p = params(|p| {
            p.policies = strings(&["web"]);
            p.no_default_policy = true;
        });
        assert_eq!(
            plan_login(&m, &p, login(), NOW).unwrap().record.policies,
            ["web"]
        );
        let p = params(|p| p.policies = strings(&["root"]));
        assert_eq!(
            invalid(plan_login(&m, &p, login(), NOW)),
            "auth methods cannot create root tokens"
        );
        // Token types: explicit, else the mount's default.
        for (mount_type, param_type, want) in [
            ("", "", "service"),
            ("default-service", "default", "service"),
            ("default-batch", "", "batch"),
            ("batch", "default", "batch"),
            ("default-batch", "service", "service"),
            ("service", "batch", "batch"),
        ] {
            let mount = Mount {
                token_type: mount_type.into(),
                ..m.clone()
            };
            let p = params(|p| p.r#type = param_type.into());
            let r = plan_login(&mount, &p, login(), NOW).unwrap().record;
            assert_eq!(r.token_type, want, "{mount_type} {param_type}");
            assert_eq!(r.renewable, want == "service");
        }
        // Batch tokens ignore the use limit, period and explicit max.
        let mount = Mount {
            token_type: "default-batch".into(),
            ..m.clone()
        };
        let p = params(|p| {
            p.num_uses = 3;
            p.period = 60;
            p.explicit_max_ttl = 30;
        });
        let r = plan_login(&mount, &p, login(), NOW).unwrap().record;
        assert_eq!((r.num_uses, r.period, r.explicit_max_ttl), (0, 0, 0));
        assert_eq!(r.creation_ttl, SYSTEM_DEFAULT_TTL);
    }

    #[tokio::test]
    async fn minted_tokens_renew_within_their_max() {
        let (h, svc) = service().await;
        let m = mount("userpass/");
        let p = params(|p| {
            p.ttl = 60;
            p.max_ttl = 100;
        });
        let made = svc.mint(&m, &p, login()).await.unwrap();
        let entry = made.entry.unwrap();
        assert_eq!((entry.ttl, entry.orphan, entry.renewable), (60, true, true));
        assert_eq!(
            entry.meta.get("username").map(String::as_str),
            Some("alice")
        );
        h.store.clock.advance(50);
        let r = h
            .store
            .renew(TokenRef::Token(&made.token), 0)
            .await
            .unwrap();
        assert_eq!(r.entry.expire_time, entry.creation_time + 100);
        assert_eq!(r.warnings.len(), 1);
        h.store.clock.advance(50);
        assert!(h.store.authenticate(&made.token, "").await.is_err());
    }

    #[tokio::test]
    async fn bound_tokens_only_work_from_their_blocks() {
        let (h, svc) = service().await;
        let m = mount("userpass/");
        let mut l = login();
        l.bound_cidrs = strings(&["10.0.0.0/8", "192.168.1.7"]);
        let p = params(|p| p.num_uses = 3);
        let made = svc.mint(&m, &p, l).await.unwrap();
        assert_eq!(
            made.entry.as_ref().unwrap().bound_cidrs,
            ["10.0.0.0/8", "192.168.1.7"]
        );
        for refused in ["", "11.0.0.1", "192.168.1.8", "garbage"] {
            let e = h
                .store
                .authenticate(&made.token, refused)
                .await
                .unwrap_err();
            assert!(matches!(e, AuthError::PermissionDenied), "{refused}");
            assert_eq!(tonic::Status::from(e).message(), "permission denied");
        }
        // Refusals did not count uses.
        let e = h.store.authenticate(&made.token, "10.9.9.9").await.unwrap();
        assert_eq!(e.num_uses, 3);
        assert_eq!(e.bound_cidrs, ["10.0.0.0/8", "192.168.1.7"]);
        assert!(h
            .store
            .authenticate(&made.token, "192.168.1.7:4433")
            .await
            .is_ok());
        // Lookups show them too.
        let looked = h
            .store
            .lookup(TokenRef::Accessor(&e.accessor))
            .await
            .unwrap();
        assert_eq!(looked.bound_cidrs, ["10.0.0.0/8", "192.168.1.7"]);
    }

    #[tokio::test]
    async fn children_inherit_bound_cidrs() {
        let (h, svc) = service().await;
        let mut l = login();
        l.bound_cidrs = strings(&["10.0.0.0/8"]);
        let p = params(|p| p.policies = strings(&["dev"]));
        let made = svc.mint(&mount("userpass/"), &p, l).await.unwrap();
        let child = h
            .store
            .create(&CreateTokenRequest {
                parent_token: made.token.clone(),
                policies: vec!["dev".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(child.entry.bound_cidrs, ["10.0.0.0/8"]);
        assert!(h.store.authenticate(&child.token, "8.8.8.8").await.is_err());
        let orphan = h
            .store
            .create(&CreateTokenRequest {
                parent_token: made.token.clone(),
                parent_has_sudo: true,
                no_parent: true,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(orphan.entry.bound_cidrs.is_empty());
    }

    #[tokio::test]
    async fn batch_login_tokens() {
        let (h, svc) = service().await;
        let m = Mount {
            token_type: "default-batch".into(),
            ..mount("approle/")
        };
        let made = svc
            .mint(&m, &params(|p| p.ttl = 30), login())
            .await
            .unwrap();
        assert!(made.token.starts_with("hvb."));
        let entry = made.entry.unwrap();
        assert_eq!(
            (
                entry.accessor.as_str(),
                entry.r#type.as_str(),
                entry.renewable
            ),
            ("", "batch", false)
        );
        let auth = h.store.authenticate(&made.token, "").await.unwrap();
        assert_eq!(auth.accessor, "");
        assert_eq!(
            h.store
                .renew(TokenRef::Token(&made.token), 0)
                .await
                .unwrap_err()
                .to_string(),
            "batch tokens cannot be renewed"
        );
        h.store.clock.advance(30);
        assert!(h.store.authenticate(&made.token, "").await.is_err());
    }

    #[test]
    fn lockout_counts_locks_and_resets() {
        let clock = Clock::default();
        let l = Lockout::new(clock.clone());
        let alice = LockKey::new("m1", "user", "alice");
        let other_mount = LockKey::new("m2", "user", "alice");
        for _ in 0..LOCKOUT_THRESHOLD - 1 {
            l.failed(&alice);
            assert!(!l.is_locked(&alice));
        }
        l.failed(&alice);
        assert!(l.is_locked(&alice));
        assert!(!l.is_locked(&other_mount));
        clock.advance(LOCKOUT_DURATION - 1);
        assert!(l.is_locked(&alice));
        clock.advance(1);
        assert!(!l.is_locked(&alice));
        // The lock over, counting starts again.
        l.failed(&alice);
        assert!(!l.is_locked(&alice));
        // Failures spaced more than the reset apart never lock.
        let bob = LockKey::new("m1", "user", "bob");
        for _ in 0..10 {
            l.failed(&bob);
            clock.advance(LOCKOUT_COUNTER_RESET);
        }
        assert!(!l.is_locked(&bob));
        // A success clears the count.
        for _ in 0..LOCKOUT_THRESHOLD - 1 {
            l.failed(&bob);
        }
        l.succeeded(&bob);
        l.failed(&bob);
        assert!(!l.is_locked(&bob));
        // Forgetting a mount unlocks its principals.
        for _ in 0..LOCKOUT_THRESHOLD {
            l.failed(&other_mount);
        }
        assert!(l.is_locked(&other_mount));
        l.forget_mount("m2");
        assert!(!l.is_locked(&other_mount));
    }

    #[test]
    fn lockout_stays_bounded() {
        let clock = Clock::default();
        let l = Lockout::new(clock.clone());
        let locked = LockKey::new("m", "user", "victim");
        for _ in 0..LOCKOUT_THRESHOLD {
            l.failed(&locked);
        }
        for i in 0..LOCKOUT_MAX_ENTRIES + 10 {
            if i == LOCKOUT_MAX_ENTRIES / 2 {
                clock.advance(1);
            }
            l.failed(&LockKey::new("m", "user", &i.to_string()));
        }
        assert!(l.entries().len() <= LOCKOUT_MAX_ENTRIES);
        assert!(l.is_locked(&locked));
    }

    #[tokio::test]
    async fn drop_mount_deletes_records_and_revokes_its_tokens() {
        let (h, svc) = service().await;
        let up = mount("userpass/");
        let other = mount("userpass2/");
        let mk = |path: &str| Login {
            display_name: "x".into(),
            path: path.into(),
            meta: BTreeMap::new(),
            bound_cidrs: vec![],
        };
        let p = params(|p| p.policies = strings(&["dev"]));
        let a = svc
            .mint(&up, &p, mk("auth/userpass/login/a"))
            .await
            .unwrap();
        let b = svc
            .mint(&up, &p, mk("auth/userpass/login/b"))
            .await
            .unwrap();
        let keep = svc
            .mint(&other, &p, mk("auth/userpass2/login/a"))
            .await
            .unwrap();
        // A child of a login token goes with it.
        let child = h
            .store
            .create(&CreateTokenRequest {
                parent_token: a.token.clone(),
                policies: vec!["dev".into()],
                ..Default::default()
            })
            .await
            .unwrap();
        for m in [&up, &other] {
            svc.store
                .barrier
                .put(&format!("method/{}/user/x", m.uuid), b"{}")
                .await
                .unwrap();
            svc.store
                .barrier
                .put(&format!("method/{}/secret-id/r/abc", m.uuid), b"{}")
                .await
                .unwrap();
        }
        let (_, mut events) = h.store.subscribe_revocations();
        let mut revoked = svc
            .drop_mount(Request::new(DropMountRequest {
                mount: Some(up.clone()),
            }))
            .await
            .unwrap()
            .into_inner()
            .accessors;
        revoked.sort();
        let mut want: Vec<String> = [&a, &b]
            .iter()
            .map(|c| c.entry.as_ref().unwrap().accessor.clone())
            .chain([child.entry.accessor.clone()])
            .collect();
        want.sort();
        assert_eq!(revoked, want);
        let mut announced = Vec::new();
        while let Ok(e) = events.try_recv() {
            announced.extend(e.accessors);
        }
        announced.sort();
        assert_eq!(announced, want);
        for gone in [a.token.as_str(), b.token.as_str(), child.token.as_str()] {
            assert!(h.store.authenticate(gone, "").await.is_err());
        }
        assert!(h.store.authenticate(&keep.token, "").await.is_ok());
        assert!(h.store.authenticate(&h.root, "").await.is_ok());
        assert!(svc
            .store
            .barrier
            .list(&mount_prefix(&up.uuid))
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            svc.store
                .barrier
                .list(&mount_prefix(&other.uuid))
                .await
                .unwrap(),
            ["secret-id/", "user/"]
        );
        // Again: nothing left, no error.
        assert!(svc
            .mount_drop(DropMountRequest {
                mount: Some(up.clone()),
            })
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            invalid(svc.mount_drop(DropMountRequest { mount: None }).await),
            "missing mount"
        );
    }

    #[tokio::test]
    async fn sealed_answers_unavailable_before_validating() {
        let (h, svc) = service().await;
        h.store.barrier.keyring().clear();
        let sealed = |s: Status| {
            assert_eq!(
                (s.code(), s.message()),
                (tonic::Code::Unavailable, "Vault is sealed")
            );
        };
        sealed(
            svc.write_user(Request::new(WriteUserRequest::default()))
                .await
                .unwrap_err(),
        );
        sealed(
            svc.userpass_login(Request::new(UserpassLoginRequest::default()))
                .await
                .unwrap_err(),
        );
        sealed(
            svc.app_role_login(Request::new(AppRoleLoginRequest::default()))
                .await
                .unwrap_err(),
        );
        sealed(
            svc.cert_login(Request::new(CertLoginRequest::default()))
                .await
                .unwrap_err(),
        );
        sealed(
            svc.drop_mount(Request::new(DropMountRequest::default()))
                .await
                .unwrap_err(),
        );
        sealed(
            svc.list_roles(Request::new(MountRequest::default()))
                .await
                .unwrap_err(),
        );
    }
}
