//! Resource quotas and overload protection: Vault's rate-limit and
//! lease-count quotas (`sys/quotas/*`, handlers in [`crate::sys::quotas`])
//! and the gateway's global bound on requests in flight.
//!
//! *Definitions* live in one record, `core/quotas`, in the gateway's barrier
//! namespace, changed by compare-and-swap like the mount table (`core/mounts`)
//! and announced on the same bus topic ([`crate::mounts::MOUNTS_TOPIC`]), so
//! other gateway replicas drop their cached copy at once; the cache is also
//! refreshed every [`crate::mounts::REFRESH`].
//!
//! *Rate limits* are token buckets per (quota, client IP address), per
//! gateway process, as Vault keeps them per node: `rate` requests per
//! `interval`, a burst of `rate`. Of the quotas whose path matches a
//! request, the most specific applies (an exact path, then a path glob,
//! then the mount, then the global quota). A client over its limit gets 429
//! with `Retry-After`; with `block_interval` it is refused for that long.
//! The bucket table is bounded ([`MAX_BUCKETS`]): buckets that have refilled
//! are dropped first (forgetting them changes nothing), then the least
//! recently used.
//!
//! *Lease-count quotas* count live leases under their path in the auth
//! service's lease registry (`Leases/CountLeases`, the path index) before a
//! lease-issuing request (`<database mount>/creds/<role>`) reaches its
//! engine. Requests under one quota are serialized in this gateway while
//! they count and issue, so concurrent requests cannot overshoot it here;
//! replicas of the gateway can each let one request through at the edge.
//! Login tokens are not counted (they are not in the lease registry).
//!
//! *Overload*: at most `max_request_in_flight` `/v1` requests are handled at
//! once; one more is answered 503 at once (`Retry-After: 1`), before its
//! body is read, so overload costs fast refusals rather than memory.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use bulwark_shared::barrier::Barrier;
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedMutexGuard, OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;
use crate::mounts::{MountEntry, MOUNTS_TOPIC, REFRESH};
use crate::request::Operation;
use crate::Gateway;

/// Where the definitions are stored (gateway barrier namespace).
pub const RECORD: &str = "core/quotas";

/// Most buckets kept at once (about 100 bytes each).
pub const MAX_BUCKETS: usize = 65_536;

/// How often buckets that have refilled are swept away.
const SWEEP_EVERY: Duration = Duration::from_secs(30);

/// Longest `interval` or `block_interval` accepted (a year, in seconds).
pub const MAX_INTERVAL_SECS: u64 = 365 * 24 * 3600;

/// Largest `rate` accepted.
pub const MAX_RATE: f64 = 1e9;

/// Paths never rate limited nor refused as overload: a load balancer's
/// health checks and an operator's unseal must get through.
const ALWAYS_EXEMPT: &[&str] = &["sys/health", "sys/seal-status", "sys/unseal"];

/// Vault's default `rate_limit_exempt_paths`.
pub const DEFAULT_EXEMPT_PATHS: &[&str] = &[
    "sys/generate-recovery-token/attempt",
    "sys/generate-recovery-token/update",
    "sys/generate-root/attempt",
    "sys/generate-root/update",
    "sys/health",
    "sys/seal-status",
    "sys/unseal",
];

// === Definitions ===

/// `sys/quotas/config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuotaConfig {
    #[serde(default)]
    pub enable_rate_limit_audit_logging: bool,
    #[serde(default)]
    pub enable_rate_limit_response_headers: bool,
    /// Exact paths, or prefixes ending in `*`.
    #[serde(default = "default_exempt")]
    pub rate_limit_exempt_paths: Vec<String>,
}

fn default_exempt() -> Vec<String> {
    DEFAULT_EXEMPT_PATHS.iter().map(|s| s.to_string()).collect()
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig {
            enable_rate_limit_audit_logging: false,
            enable_rate_limit_response_headers: false,
            rate_limit_exempt_paths: default_exempt(),
        }
    }
}

impl QuotaConfig {
    /// Whether `path` is in `rate_limit_exempt_paths`.
    pub fn exempt(&self, path: &str) -> bool {
        self.rate_limit_exempt_paths
            .iter()
            .any(|e| match e.strip_suffix('*') {
                Some(prefix) => path.starts_with(prefix),
                None => path == e.trim_end_matches('/'),
            })
    }
}

/// What a quota's `path` covers, decided when it is written (with the
/// mount table at hand) so that matching a request needs no lookup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "path", rename_all = "snake_case")]
pub enum Scope {
    /// `path = ""`: every request.
    Global,
    /// A whole mount: `secret/`, `auth/userpass/` (with its slash).
    Mount(String),
    /// A path below a mount: `secret/data/app` (exactly that path) or
    /// `secret/data/app*` (every path starting `secret/data/app`).
    Path(String),
}

impl Scope {
    /// How specifically this scope covers `path`: `None` if it does not;
    /// else higher is more specific (exact path > glob > mount > global,
    /// then longer).
    pub fn specificity(&self, path: &str) -> Option<(u8, usize)> {
        let path = path.trim_end_matches('/');
        match self {
            Scope::Global => Some((0, 0)),
            Scope::Mount(m) => (path.starts_with(m.as_str()) || path == m.trim_end_matches('/'))
                .then_some((1, m.len())),
            Scope::Path(p) => match p.strip_suffix('*') {
                Some(prefix) => path.starts_with(prefix).then_some((2, prefix.len())),
                None => (path == p).then_some((3, p.len())),
            },
        }
    }

    /// The lease id prefix of the leases this scope covers.
    pub fn lease_prefix(&self) -> String {
        match self {
            Scope::Global => String::new(),
            Scope::Mount(m) => m.clone(),
            Scope::Path(p) => match p.strip_suffix('*') {
                Some(prefix) => prefix.to_string(),
                None => format!("{p}/"),
            },
        }
    }

    /// The `path` Vault shows for the quota.
    pub fn path(&self) -> &str {
        match self {
            Scope::Global => "",
            Scope::Mount(p) | Scope::Path(p) => p,
        }
    }

    /// Checks a quota's `path` and finds what it covers. `mount` is the
    /// mount that routes it — its full path (`auth/` included for an auth
    /// method) and the rest of `path` below it — or `None` if no mount does.
    pub fn classify(path: &str, mount: Option<(&str, &str)>) -> Result<Scope, ApiError> {
        let p = normalize_path(path)?;
        if p.is_empty() {
            return Ok(Scope::Global);
        }
        let Some((mount_path, rest)) = mount else {
            return Err(ApiError::bad_request(format!(
                "invalid path {p:?}: no mount exists at this path"
            )));
        };
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest == "*" {
            return Ok(Scope::Mount(mount_path.to_string()));
        }
        Ok(Scope::Path(p.trim_end_matches('/').to_string()))
    }
}

/// A quota `path` as given, checked: no leading slash, no `.`/`..` or empty
/// segment, `*` only at the end, at most 512 bytes.
pub fn normalize_path(path: &str) -> Result<String, ApiError> {
    let p = path.trim().trim_start_matches('/');
    let bad = |why: &str| {
        Err(ApiError::bad_request(format!(
            "invalid path {path:?}: {why}"
        )))
    };
    if p.len() > 512 {
        return bad("longer than 512 bytes");
    }
    if p.chars().any(char::is_control) {
        return bad("control characters");
    }
    if p.trim_end_matches('*').contains('*') || p.contains('+') {
        return bad("a glob (*) may only end the path");
    }
    let body = p.trim_end_matches('*').trim_end_matches('/');
    if !body.is_empty()
        && body
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return bad("empty, . or .. segment");
    }
    Ok(p.to_string())
}

/// `sys/quotas/rate-limit/:name`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateLimit {
    pub name: String,
    /// What the quota's `path` covers.
    pub scope: Scope,
    /// Requests per `interval`, and the burst.
    pub rate: f64,
    /// Whole seconds (Vault's `interval` is a duration in seconds).
    pub interval_secs: u64,
    /// 0 = none.
    pub block_secs: u64,
    /// Stored and shown; not enforced (role-based quotas are not supported).
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub inheritable: bool,
}

impl RateLimit {
    fn limits(&self) -> Limits {
        Limits {
            capacity: self.rate.max(1.0),
            per_sec: self.rate / self.interval_secs.max(1) as f64,
            block: Duration::from_secs(self.block_secs),
        }
    }
}

/// `sys/quotas/lease-count/:name`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseCount {
    pub name: String,
    /// What the quota's `path` covers (its lease id prefix).
    pub scope: Scope,
    /// Live leases allowed under the path; the next issue is refused.
    pub max_leases: u64,
    #[serde(default)]
    pub role: String,
    #[serde(default)]
    pub inheritable: bool,
}

/// Everything stored in [`RECORD`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Definitions {
    #[serde(default)]
    pub config: QuotaConfig,
    #[serde(default)]
    pub rate_limits: BTreeMap<String, RateLimit>,
    #[serde(default)]
    pub lease_counts: BTreeMap<String, LeaseCount>,
}

/// The most specific of `items` covering `path` (ties: the first name).
fn most_specific<'a, T>(
    items: impl Iterator<Item = &'a T>,
    scope: impl Fn(&T) -> &Scope,
    path: &str,
) -> Option<&'a T>
where
    T: 'a,
{
    let mut best: Option<((u8, usize), &T)> = None;
    for item in items {
        if let Some(s) = scope(item).specificity(path) {
            if best.as_ref().is_none_or(|(b, _)| s > *b) {
                best = Some((s, item));
            }
        }
    }
    best.map(|(_, item)| item)
}

impl Definitions {
    /// The rate-limit quota that applies to `path`, if any.
    pub fn rate_limit_for(&self, path: &str) -> Option<&RateLimit> {
        most_specific(self.rate_limits.values(), |q| &q.scope, path)
    }

    /// The lease-count quota that applies to `path`, if any.
    pub fn lease_count_for(&self, path: &str) -> Option<&LeaseCount> {
        most_specific(self.lease_counts.values(), |q| &q.scope, path)
    }
}

/// A request path as quotas match it: without repeated or trailing slashes.
fn match_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        if !out.is_empty() {
            out.push('/');
        }
        out.push_str(seg);
    }
    out
}

// === Token buckets ===

/// A bucket's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Burst size (tokens when full).
    pub capacity: f64,
    /// Tokens added per second.
    pub per_sec: f64,
    /// How long a client that ran dry is refused (zero: not at all).
    pub block: Duration,
}

#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    last: Instant,
    blocked_until: Option<Instant>,
    limits: Limits,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.limits.per_sec).min(self.limits.capacity);
        self.last = now;
    }

    /// Whether forgetting this bucket changes nothing: full again and not blocked.
    fn idle(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.blocked_until.is_none_or(|t| t <= now)
            && self.tokens + elapsed * self.limits.per_sec >= self.limits.capacity
    }

    fn state(&self) -> RateState {
        let missing = (self.limits.capacity - self.tokens).max(0.0);
        RateState {
            limit: self.limits.capacity.floor() as u64,
            remaining: self.tokens.max(0.0).floor() as u64,
            reset_secs: ceil_secs(missing / self.limits.per_sec),
        }
    }
}

/// Whole seconds, rounded up, at least 1.
fn ceil_secs(secs: f64) -> u64 {
    if !secs.is_finite() {
        return MAX_INTERVAL_SECS;
    }
    (secs.ceil() as u64).clamp(1, MAX_INTERVAL_SECS)
}

/// What the client is told about the quota that applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateState {
    /// `X-Ratelimit-Limit`.
    pub limit: u64,
    /// `X-Ratelimit-Remaining`.
    pub remaining: u64,
    /// `X-Ratelimit-Reset`: seconds until the bucket is full again.
    pub reset_secs: u64,
}

/// A bucket's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow(RateState),
    /// Refused; `Retry-After` is `retry_after` seconds (≥ 1).
    Deny {
        retry_after: u64,
        state: RateState,
    },
}

/// The buckets of every (quota, client address), bounded in number.
pub struct Buckets {
    map: HashMap<(Arc<str>, IpAddr), Bucket>,
    cap: usize,
    last_sweep: Instant,
}

impl Buckets {
    /// At most `cap` buckets: memory stays bounded however many addresses
    /// a client can send from.
    pub fn new(cap: usize) -> Self {
        Buckets {
            map: HashMap::new(),
            cap: cap.max(1),
            last_sweep: Instant::now(),
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Takes a token for `ip` from quota `quota`'s bucket at `now` (passed
    /// in, so that the arithmetic is tested without sleeping).
    pub fn take(&mut self, quota: &Arc<str>, ip: IpAddr, limits: Limits, now: Instant) -> Verdict {
        if now.saturating_duration_since(self.last_sweep) >= SWEEP_EVERY {
            self.sweep_idle(now);
        }
        let key = (quota.clone(), ip);
        if !self.map.contains_key(&key) && self.map.len() >= self.cap {
            self.make_room(now);
        }
        let b = self.map.entry(key).or_insert_with(|| Bucket {
            tokens: limits.capacity,
            last: now,
            blocked_until: None,
            limits,
        });
        b.limits = limits;
        b.tokens = b.tokens.min(limits.capacity);
        b.refill(now);
        if let Some(until) = b.blocked_until {
            if until > now {
                return Verdict::Deny {
                    retry_after: ceil_secs(until.duration_since(now).as_secs_f64()),
                    state: RateState {
                        remaining: 0,
                        ..b.state()
                    },
                };
            }
            b.blocked_until = None;
        }
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Verdict::Allow(b.state());
        }
        let retry_after = if limits.block > Duration::ZERO {
            b.blocked_until = Some(now + limits.block);
            ceil_secs(limits.block.as_secs_f64())
        } else {
            ceil_secs((1.0 - b.tokens) / limits.per_sec)
        };
        Verdict::Deny {
            retry_after,
            state: b.state(),
        }
    }

    /// Drops buckets that have refilled (and are not blocking).
    fn sweep_idle(&mut self, now: Instant) {
        self.map.retain(|_, b| !b.idle(now));
        self.last_sweep = now;
    }

    /// Below the cap again: idle buckets first, then the least recently
    /// used (unblocked before blocked) down to 7/8 of the cap.
    fn make_room(&mut self, now: Instant) {
        self.sweep_idle(now);
        if self.map.len() < self.cap {
            return;
        }
        let target = self.cap - self.cap / 8 - 1;
        let mut order: Vec<(bool, Instant, (Arc<str>, IpAddr))> = self
            .map
            .iter()
            .map(|(k, b)| (b.blocked_until.is_some_and(|t| t > now), b.last, k.clone()))
            .collect();
        order.sort_by_key(|a| (a.0, a.1));
        let excess = self.map.len().saturating_sub(target);
        for (_, _, k) in order.into_iter().take(excess) {
            self.map.remove(&k);
        }
    }

    /// Forgets every bucket of the quotas `keep` rejects.
    fn retain_quotas(&mut self, keep: impl Fn(&str) -> bool) {
        self.map.retain(|(q, _), _| keep(q));
    }
}

// === The engine ===

struct Cached {
    defs: Arc<Definitions>,
    at: Instant,
    /// Another replica changed them: read again (kept only as a fallback).
    forgotten: bool,
}

/// One gateway's quotas: the cached definitions, the buckets, the
/// per-quota locks of lease-count checks.
pub struct Quotas {
    barrier: Barrier,
    bus: Option<bulwark_shared::bus::Bus>,
    cache: RwLock<Option<Cached>>,
    buckets: Mutex<Buckets>,
    lease_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl Quotas {
    /// Definitions in `barrier` (the gateway's namespace); changes announced
    /// on `bus` so that other gateway replicas read them again.
    pub fn new(barrier: Barrier, bus: Option<bulwark_shared::bus::Bus>) -> Self {
        Quotas {
            barrier,
            bus,
            cache: RwLock::new(None),
            buckets: Mutex::new(Buckets::new(MAX_BUCKETS)),
            lease_locks: Mutex::new(HashMap::new()),
        }
    }

    /// Drops the cached definitions (another replica changed them).
    pub fn forget(&self) {
        if let Some(c) = self
            .cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            c.forgotten = true;
        }
    }

    async fn stored(&self) -> Result<(Definitions, Option<Vec<u8>>), ApiError> {
        match self
            .barrier
            .get_versioned(RECORD)
            .await
            .map_err(tonic::Status::from)?
        {
            None => Ok((Definitions::default(), None)),
            Some((plain, version)) => {
                let defs = serde_json::from_slice(&plain).map_err(|_| {
                    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "quota table is corrupt")
                })?;
                Ok((defs, Some(version)))
            }
        }
    }

    fn fresh(&self) -> Option<Arc<Definitions>> {
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        cache
            .as_ref()
            .filter(|c| !c.forgotten && c.at.elapsed() < REFRESH)
            .map(|c| c.defs.clone())
    }

    fn stale(&self) -> Option<Arc<Definitions>> {
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        cache.as_ref().map(|c| c.defs.clone())
    }

    /// Installs freshly read definitions, forgetting the buckets and locks
    /// of quotas that changed or went.
    fn install(&self, defs: Definitions) -> Arc<Definitions> {
        let defs = Arc::new(defs);
        let old = self
            .cache
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .replace(Cached {
                defs: defs.clone(),
                at: Instant::now(),
                forgotten: false,
            });
        if let Some(old) = old {
            if old.defs.rate_limits != defs.rate_limits {
                self.buckets
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .retain_quotas(|q| old.defs.rate_limits.get(q) == defs.rate_limits.get(q));
            }
        }
        self.lease_locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|name, _| defs.lease_counts.contains_key(name));
        defs
    }

    /// The current definitions (cached for [`REFRESH`]).
    pub async fn current(&self) -> Result<Arc<Definitions>, ApiError> {
        if let Some(d) = self.fresh() {
            return Ok(d);
        }
        let (defs, _) = self.stored().await?;
        Ok(self.install(defs))
    }

    /// [`Quotas::current`], or the last copy when storage cannot be read.
    /// With a copy to fall back on, storage that is slow or down costs at
    /// most [`crate::mounts::STALE_READ_WAIT`], and the copy then serves
    /// another [`REFRESH`] (not a wait on every request).
    async fn current_or_stale(&self) -> Option<Arc<Definitions>> {
        let read = match self.stale() {
            None => self.current().await,
            Some(_) => tokio::time::timeout(crate::mounts::STALE_READ_WAIT, self.current())
                .await
                .unwrap_or_else(|_| {
                    Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "storage did not answer",
                    ))
                }),
        };
        match read {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::debug!(status = e.status.as_u16(), "quota definitions unreadable");
                if let Some(c) = self
                    .cache
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .as_mut()
                {
                    c.at = Instant::now();
                    c.forgotten = false;
                }
                self.stale()
            }
        }
    }

    /// Applies `f` to the stored definitions with compare-and-swap, then
    /// tells the other gateways. Nothing is written when `f` fails.
    pub async fn update<T>(
        &self,
        mut f: impl FnMut(&mut Definitions) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        loop {
            let (mut defs, version) = self.stored().await?;
            let out = f(&mut defs)?;
            let bytes = serde_json::to_vec(&defs).map_err(|_| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "quota table encoding")
            })?;
            let written = match &version {
                Some(v) => self.barrier.replace(RECORD, v, &bytes).await,
                None => self.barrier.create(RECORD, &bytes).await,
            }
            .map_err(tonic::Status::from)?;
            if written {
                self.install(defs);
                if let Some(bus) = &self.bus {
                    if let Err(e) = bus.publish(MOUNTS_TOPIC, RECORD).await {
                        tracing::warn!(error = %e, "could not tell other gateways of a quota change");
                    }
                }
                return Ok(out);
            }
        }
    }

    fn take(&self, quota: &RateLimit, ip: IpAddr) -> Verdict {
        let name: Arc<str> = Arc::from(quota.name.as_str());
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).take(
            &name,
            ip,
            quota.limits(),
            Instant::now(),
        )
    }

    fn lease_lock(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.lease_locks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(name.to_string())
            .or_default()
            .clone()
    }
}

// === Rate limiting a request ===

/// Headers to add to a response that a rate-limit quota let through.
#[derive(Debug, Default)]
pub struct RateHeaders(Option<RateState>);

impl RateHeaders {
    /// Adds `X-Ratelimit-*` (when `sys/quotas/config` asks for them).
    pub fn decorate(&self, headers: &mut HeaderMap) {
        if let Some(s) = &self.0 {
            set_rate_headers(headers, s);
        }
    }
}

fn set_rate_headers(h: &mut HeaderMap, s: &RateState) {
    h.insert("x-ratelimit-limit", HeaderValue::from(s.limit));
    h.insert("x-ratelimit-remaining", HeaderValue::from(s.remaining));
    h.insert("x-ratelimit-reset", HeaderValue::from(s.reset_secs));
}

/// Applies the rate-limit quota covering `path` to the client at `remote`.
/// `Err` is the 429 to answer (recorded in the audit log when
/// `enable_rate_limit_audit_logging` is on). Sealed, or with no quota
/// defined, nothing is limited.
pub(crate) async fn rate_limit(
    gw: &Gateway,
    method: &Method,
    query: &[(String, String)],
    path: &str,
    remote: Option<SocketAddr>,
) -> Result<RateHeaders, Response> {
    let path = match_path(path);
    if ALWAYS_EXEMPT.contains(&path.as_str()) || gw.inner.seal_watch.current().sealed {
        return Ok(RateHeaders::default());
    }
    let Some(defs) = gw.inner.quotas.current_or_stale().await else {
        return Ok(RateHeaders::default());
    };
    if defs.rate_limits.is_empty() || defs.config.exempt(&path) {
        return Ok(RateHeaders::default());
    }
    let Some(quota) = defs.rate_limit_for(&path) else {
        return Ok(RateHeaders::default());
    };
    let ip = remote
        .map(|a| a.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let headers = defs.config.enable_rate_limit_response_headers;
    let (retry_after, state) = match gw.inner.quotas.take(quota, ip) {
        Verdict::Allow(state) => return Ok(RateHeaders(headers.then_some(state))),
        Verdict::Deny { retry_after, state } => (retry_after, state),
    };
    bulwark_shared::metrics::metrics()
        .rate_limit_violations
        .inc();
    tracing::debug!(quota = %quota.name, "rate limit quota exceeded");
    let err = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!("request path {path:?}: rate limit quota exceeded"),
    );
    if defs.config.enable_rate_limit_audit_logging
        && crate::audit::audited(&path)
        && gw.audit_need().needed()
    {
        audit_refusal(gw, method, query, &path, remote, &err).await;
    }
    let mut resp = err.into_response();
    let h = resp.headers_mut();
    h.insert("retry-after", HeaderValue::from(retry_after));
    if headers {
        set_rate_headers(h, &state);
    }
    Err(resp)
}

/// Records a refused request and its answer. The request is refused either
/// way: a failing audit device only loses the record (and is logged).
async fn audit_refusal(
    gw: &Gateway,
    method: &Method,
    query: &[(String, String)],
    path: &str,
    remote: Option<SocketAddr>,
    err: &ApiError,
) {
    let mut ctx = crate::audit::Context::new(
        crate::observe::request_id(),
        path,
        serde_json::Value::Object(Default::default()),
        remote,
        None,
    );
    let op = crate::request::operation(method, query).unwrap_or(Operation::Read);
    ctx.operation = crate::audit::operation_name(op, false);
    let logged = ctx.log_refused(gw, &err.errors);
    if let Err(e) = logged.await {
        tracing::warn!(
            status = e.status.as_u16(),
            "could not audit a rate-limited request"
        );
    }
}

// === Lease counts ===

/// Held while a lease-issuing request runs: other requests under the same
/// lease-count quota wait, so that they count what this one issued.
pub(crate) struct LeaseSlot(#[allow(dead_code)] OwnedMutexGuard<()>);

/// Whether a request issues a lease (so lease-count quotas apply).
fn issues_lease(mount: &MountEntry, rest: &str, op: Operation) -> bool {
    mount.kind == "database" && op == Operation::Read && rest.starts_with("creds/")
}

/// Refuses (429) a lease-issuing request that would take the live leases
/// under its lease-count quota past `max_leases`; otherwise returns the
/// slot to hold until the lease is registered. Other requests pass.
pub(crate) async fn lease_gate(
    gw: &Gateway,
    path: &str,
    op: Operation,
    mount: Option<&(MountEntry, String)>,
    auth_method: bool,
) -> Result<Option<LeaseSlot>, ApiError> {
    let Some((m, rest)) = mount else {
        return Ok(None);
    };
    if auth_method || !issues_lease(m, rest, op) {
        return Ok(None);
    }
    let quotas = &gw.inner.quotas;
    let defs = quotas.current().await?;
    let path = match_path(path);
    let Some(quota) = defs.lease_count_for(&path) else {
        return Ok(None);
    };
    let guard = quotas.lease_lock(&quota.name).lock_owned().await;
    let count = gw
        .leases()
        .count_leases(bulwark_proto::auth::v1::CountLeasesRequest {
            prefix: quota.scope.lease_prefix(),
        })
        .await?
        .into_inner()
        .count;
    if u64::try_from(count).unwrap_or(0) >= quota.max_leases {
        bulwark_shared::metrics::metrics()
            .lease_count_violations
            .inc();
        tracing::debug!(quota = %quota.name, "lease count quota exceeded");
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!("request path {path:?}: lease count quota exceeded"),
        ));
    }
    Ok(Some(LeaseSlot(guard)))
}

// === Overload ===

/// The bound on `/v1` requests handled at once.
pub struct InFlight {
    sem: RwLock<Arc<Semaphore>>,
}

impl InFlight {
    /// At most `max` requests at once (at least one).
    pub fn new(max: usize) -> Self {
        InFlight {
            sem: RwLock::new(Arc::new(Semaphore::new(max.max(1)))),
        }
    }

    /// A new bound (from the config file). Requests already admitted keep
    /// their permits of the old one.
    pub fn set_max(&self, max: usize) {
        *self.sem.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Semaphore::new(max.max(1)));
    }

    /// A permit for one request, or `None` when the bound is reached.
    pub fn try_admit(&self) -> Option<OwnedSemaphorePermit> {
        let sem = self.sem.read().unwrap_or_else(|e| e.into_inner()).clone();
        sem.try_acquire_owned().ok()
    }
}

/// Whether `path` (below `/v1/`) skips the in-flight bound.
pub fn overload_exempt(path: &str) -> bool {
    matches!(path.trim_end_matches('/'), "sys/health" | "sys/seal-status")
}

/// The answer when the bound is reached.
pub fn overloaded() -> Response {
    bulwark_shared::metrics::metrics().overload_rejections.inc();
    let mut resp = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "server is overloaded, try again",
    )
    .into_response();
    resp.headers_mut()
        .insert("retry-after", HeaderValue::from_static("1"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use bulwark_shared::keyring::Keyring;
    use bulwark_shared::storage::{Database, StorageConfig};

    fn limits(rate: f64, interval: u64, block: u64) -> Limits {
        RateLimit {
            name: "q".into(),
            scope: Scope::Global,
            rate,
            interval_secs: interval,
            block_secs: block,
            role: String::new(),
            inheritable: true,
        }
        .limits()
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, n))
    }

    fn allowed(v: Verdict) -> bool {
        matches!(v, Verdict::Allow(_))
    }

    #[test]
    fn token_bucket_bursts_then_refills_at_the_rate() {
        let mut b = Buckets::new(100);
        let q: Arc<str> = Arc::from("q");
        let l = limits(5.0, 1, 0);
        let t0 = Instant::now();
        let mut ok = 0;
        for _ in 0..30 {
            if allowed(b.take(&q, ip(1), l, t0)) {
                ok += 1;
            }
        }
        assert_eq!(ok, 5, "a burst of `rate`");
        match b.take(&q, ip(1), l, t0) {
            Verdict::Deny { retry_after, state } => {
                assert_eq!(retry_after, 1);
                assert_eq!((state.limit, state.remaining, state.reset_secs), (5, 0, 1));
            }
            v => panic!("{v:?}"),
        }
        // Another client has its own bucket.
        assert!(allowed(b.take(&q, ip(2), l, t0)));
        // 5 per second: one token every 200 ms.
        assert!(!allowed(b.take(
            &q,
            ip(1),
            l,
            t0 + Duration::from_millis(150)
        )));
        assert!(allowed(b.take(
            &q,
            ip(1),
            l,
            t0 + Duration::from_millis(210)
        )));
        assert!(!allowed(b.take(
            &q,
            ip(1),
            l,
            t0 + Duration::from_millis(220)
        )));
        // Full again after a second.
        let t1 = t0 + Duration::from_secs(2);
        match b.take(&q, ip(1), l, t1) {
            Verdict::Allow(s) => assert_eq!((s.limit, s.remaining, s.reset_secs), (5, 4, 1)),
            v => panic!("{v:?}"),
        }
        // 2 per minute: a denied client waits 30 s.
        let slow = limits(2.0, 60, 0);
        let s: Arc<str> = Arc::from("slow");
        assert!(allowed(b.take(&s, ip(1), slow, t0)));
        assert!(allowed(b.take(&s, ip(1), slow, t0)));
        match b.take(&s, ip(1), slow, t0) {
            Verdict::Deny { retry_after, .. } => assert_eq!(retry_after, 30),
            v => panic!("{v:?}"),
        }
        // A fractional rate below one still lets one request through.
        let frac = limits(0.5, 1, 0);
        let f: Arc<str> = Arc::from("frac");
        assert!(allowed(b.take(&f, ip(1), frac, t0)));
        match b.take(&f, ip(1), frac, t0) {
            Verdict::Deny { retry_after, .. } => assert_eq!(retry_after, 2),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn block_interval_keeps_refusing() {
        let mut b = Buckets::new(100);
        let q: Arc<str> = Arc::from("q");
        let l = limits(1.0, 1, 10);
        let t0 = Instant::now();
        assert!(allowed(b.take(&q, ip(1), l, t0)));
        match b.take(&q, ip(1), l, t0) {
            Verdict::Deny { retry_after, .. } => assert_eq!(retry_after, 10),
            v => panic!("{v:?}"),
        }
        // The bucket has refilled, the block has not ended.
        match b.take(&q, ip(1), l, t0 + Duration::from_secs(5)) {
            Verdict::Deny { retry_after, .. } => assert_eq!(retry_after, 5),
            v => panic!("{v:?}"),
        }
        assert!(allowed(b.take(&q, ip(1), l, t0 + Duration::from_secs(10))));
    }

    #[test]
    fn buckets_are_bounded_idle_ones_go_first() {
        let mut b = Buckets::new(64);
        let q: Arc<str> = Arc::from("q");
        let l = limits(2.0, 1, 0);
        let t0 = Instant::now();
        // Client 1 drains its bucket.
        assert!(allowed(b.take(&q, ip(1), l, t0)));
        assert!(allowed(b.take(&q, ip(1), l, t0)));
        assert!(!allowed(b.take(&q, ip(1), l, t0)));
        // Many clients, each once: the table never exceeds its cap.
        for i in 0..10_000u32 {
            let a = IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i));
            b.take(&q, a, l, t0);
            assert!(b.len() <= 64);
        }
        // Evicted clients start over with a full bucket; eviction took the
        // least recently used, so a drained client seen last stays drained.
        let mut b = Buckets::new(64);
        for i in 0..63u32 {
            let a = IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i));
            b.take(&q, a, l, t0);
        }
        let t1 = t0 + Duration::from_millis(10);
        assert!(allowed(b.take(&q, ip(1), l, t1)));
        assert!(allowed(b.take(&q, ip(1), l, t1)));
        assert!(!allowed(b.take(&q, ip(1), l, t1)));
        for i in 0..10u32 {
            let a = IpAddr::V4(Ipv4Addr::from(0x0c00_0000 + i));
            b.take(&q, a, l, t1);
        }
        assert!(b.len() <= 64);
        assert!(!allowed(b.take(&q, ip(1), l, t1)), "still drained");
        // Refilled buckets are dropped by the periodic sweep.
        let later = t1 + SWEEP_EVERY + Duration::from_secs(1);
        b.take(&q, ip(2), l, later);
        assert_eq!(b.len(), 1);
        assert!(!b.is_empty());
    }

    #[test]
    fn blocked_buckets_survive_the_sweep() {
        let mut b = Buckets::new(8);
        let q: Arc<str> = Arc::from("q");
        let l = limits(1.0, 1, 3600);
        let t0 = Instant::now();
        assert!(allowed(b.take(&q, ip(1), l, t0)));
        assert!(!allowed(b.take(&q, ip(1), l, t0)));
        // The sweep (run by the next call) keeps the blocked client.
        let later = t0 + SWEEP_EVERY + Duration::from_secs(1);
        assert!(allowed(b.take(&q, ip(2), l, later)));
        assert_eq!(b.len(), 2);
        assert!(!allowed(b.take(&q, ip(1), l, later)));
    }

    fn rl(name: &str, scope: Scope) -> RateLimit {
        RateLimit {
            name: name.into(),
            scope,
            rate: 1.0,
            interval_secs: 1,
            block_secs: 0,
            role: String::new(),
            inheritable: false,
        }
    }

    #[test]
    fn the_most_specific_quota_wins() {
        let mut d = Definitions::default();
        for q in [
            rl("global", Scope::Global),
            rl("mount", Scope::Mount("secret/".into())),
            rl("glob", Scope::Path("secret/data/app*".into())),
            rl("exact", Scope::Path("secret/data/app/one".into())),
            rl("auth", Scope::Mount("auth/userpass/".into())),
        ] {
            d.rate_limits.insert(q.name.clone(), q);
        }
        fn winner_in(d: &Definitions, p: &str) -> Option<String> {
            d.rate_limit_for(&match_path(p)).map(|q| q.name.clone())
        }
        let winner = |p: &str| winner_in(&d, p);
        assert_eq!(winner("secret/data/app/one").as_deref(), Some("exact"));
        assert_eq!(winner("secret/data/app/one/").as_deref(), Some("exact"));
        assert_eq!(winner("secret//data/app/one").as_deref(), Some("exact"));
        assert_eq!(winner("secret/data/app/two").as_deref(), Some("glob"));
        assert_eq!(winner("secret/data/apple").as_deref(), Some("glob"));
        assert_eq!(winner("secret/data/other").as_deref(), Some("mount"));
        assert_eq!(winner("secret").as_deref(), Some("mount"));
        assert_eq!(winner("secretive/x").as_deref(), Some("global"));
        assert_eq!(winner("auth/userpass/login/bob").as_deref(), Some("auth"));
        assert_eq!(winner("sys/mounts").as_deref(), Some("global"));
        d.rate_limits.remove("global");
        assert_eq!(winner_in(&d, "sys/mounts"), None);
        // Lease prefixes.
        assert_eq!(Scope::Global.lease_prefix(), "");
        assert_eq!(Scope::Mount("database/".into()).lease_prefix(), "database/");
        assert_eq!(
            Scope::Path("database/creds/app".into()).lease_prefix(),
            "database/creds/app/"
        );
        assert_eq!(
            Scope::Path("database/creds/a*".into()).lease_prefix(),
            "database/creds/a"
        );
    }

    #[test]
    fn quota_paths_are_checked_and_classified() {
        assert_eq!(Scope::classify("", None).unwrap(), Scope::Global);
        assert_eq!(Scope::classify("  ", None).unwrap(), Scope::Global);
        assert_eq!(
            Scope::classify("secret/", Some(("secret/", ""))).unwrap(),
            Scope::Mount("secret/".into())
        );
        assert_eq!(
            Scope::classify("/secret", Some(("secret/", ""))).unwrap(),
            Scope::Mount("secret/".into())
        );
        assert_eq!(
            Scope::classify("secret/*", Some(("secret/", "*"))).unwrap(),
            Scope::Mount("secret/".into())
        );
        assert_eq!(
            Scope::classify("secret/data/x/", Some(("secret/", "data/x/"))).unwrap(),
            Scope::Path("secret/data/x".into())
        );
        assert_eq!(
            Scope::classify("secret/data/x*", Some(("secret/", "data/x*"))).unwrap(),
            Scope::Path("secret/data/x*".into())
        );
        for bad in ["a/../b", "a//b", "./a", "a*b", "*a", "a\u{0}b", "a+b"] {
            let e = Scope::classify(bad, Some(("a/", "b"))).unwrap_err();
            assert_eq!(e.status, 400, "{bad}");
        }
        let long = "a/".repeat(300);
        assert_eq!(
            Scope::classify(&long, Some(("a/", "x")))
                .unwrap_err()
                .status,
            400
        );
        let e = Scope::classify("nomount/x", None).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.errors[0].contains("no mount"), "{:?}", e.errors);
    }

    #[test]
    fn exempt_paths_exact_and_prefix() {
        let mut c = QuotaConfig::default();
        assert!(c.exempt("sys/generate-root/attempt"));
        assert!(!c.exempt("sys/mounts"));
        c.rate_limit_exempt_paths = vec!["sys/internal/*".into(), "secret/data/open".into()];
        assert!(c.exempt("sys/internal/ui/mounts"));
        assert!(c.exempt("secret/data/open"));
        assert!(!c.exempt("secret/data/open/more"));
        assert!(!c.exempt("sys/generate-root/attempt"));
    }

    #[test]
    fn in_flight_bound() {
        let f = InFlight::new(2);
        let a = f.try_admit().unwrap();
        let _b = f.try_admit().unwrap();
        assert!(f.try_admit().is_none());
        drop(a);
        assert!(f.try_admit().is_some());
        f.set_max(1);
        let _c = f.try_admit().unwrap();
        assert!(f.try_admit().is_none());
        assert!(overload_exempt("sys/health"));
        assert!(overload_exempt("sys/seal-status/"));
        assert!(!overload_exempt("sys/mounts"));
        let r = overloaded();
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "1");
    }

    async fn engine() -> Quotas {
        let db = Database::connect(&StorageConfig::SqliteMemory)
            .await
            .unwrap();
        let k = Keyring::new();
        k.install(1, [(1, zeroize::Zeroizing::new([7u8; 32]))]);
        Quotas::new(
            Barrier::new(db.namespace("gateway").await.unwrap(), k),
            None,
        )
    }

    #[tokio::test]
    async fn definitions_are_stored_and_changes_forget_buckets() {
        let q = engine().await;
        assert_eq!(*q.current().await.unwrap(), Definitions::default());
        q.update(|d| {
            d.rate_limits.insert("g".into(), rl("g", Scope::Global));
            Ok(())
        })
        .await
        .unwrap();
        let d = q.current().await.unwrap();
        let g = d.rate_limit_for("x").unwrap().clone();
        assert!(allowed(q.take(&g, ip(1))));
        assert!(!allowed(q.take(&g, ip(1))));
        // A failed update writes nothing.
        let e = q
            .update(|d| {
                d.rate_limits.clear();
                Err::<(), _>(ApiError::bad_request("no"))
            })
            .await
            .unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(q.current().await.unwrap().rate_limits.len(), 1);
        // Changing the quota starts its buckets over.
        q.update(|d| {
            if let Some(g) = d.rate_limits.get_mut("g") {
                g.rate = 2.0;
            }
            Ok(())
        })
        .await
        .unwrap();
        let g = q.current().await.unwrap().rate_limits["g"].clone();
        assert!(allowed(q.take(&g, ip(1))));
        // Stored through the barrier: read back by a second engine.
        let (stored, version) = q.stored().await.unwrap();
        assert!(version.is_some());
        assert_eq!(stored.rate_limits["g"].rate, 2.0);
    }
}
