//! `sys/quotas/config`, `sys/quotas/rate-limit[/:name]`,
//! `sys/quotas/lease-count[/:name]`: Vault's resource quota endpoints. The
//! definitions and their enforcement live in [`crate::quotas`].
//!
//! Writes are partial updates of an existing quota (what is not given is
//! kept); `rate` (rate limits) and `max_leases` (lease counts) are required
//! when a quota is created. Unknown fields and bad values are refused with
//! 400 before anything is stored. `role` is kept and shown but not enforced
//! (role-based quotas are not supported), which the answer warns about.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::observe::set_route;
use crate::quotas::{
    normalize_path, LeaseCount, QuotaConfig, RateLimit, Scope, MAX_INTERVAL_SECS, MAX_RATE,
};
use crate::reply::keys_response;
use crate::request::{json_object, Fields, Operation};
use crate::{ApiRequest, Gateway};

/// Longest quota name.
const MAX_NAME: usize = 128;

/// Most entries in `rate_limit_exempt_paths`.
const MAX_EXEMPT_PATHS: usize = 1000;

const RATE_LIMIT_FIELDS: &[&str] = &[
    "name",
    "path",
    "type",
    "rate",
    "interval",
    "block_interval",
    "role",
    "inheritable",
];

const LEASE_COUNT_FIELDS: &[&str] = &["name", "path", "type", "max_leases", "role", "inheritable"];

const CONFIG_FIELDS: &[&str] = &[
    "enable_rate_limit_audit_logging",
    "enable_rate_limit_response_headers",
    "rate_limit_exempt_paths",
];

const ROLE_WARNING: &str =
    "role-based quotas are not supported: the role is stored but not enforced";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    RateLimit,
    LeaseCount,
}

/// Routes `sys/quotas/<rest>`.
pub async fn handle(
    gw: &Gateway,
    req: ApiRequest,
    op: Operation,
    rest: &str,
) -> Result<Response, ApiError> {
    let (family, name) = match rest.split_once('/') {
        Some((f, n)) => (f, Some(n)),
        None => (rest, None),
    };
    let kind = match family {
        "config" if name.is_none() => {
            set_route("sys/quotas/config".into());
            return config(gw, req, op).await;
        }
        "rate-limit" => Kind::RateLimit,
        "lease-count" => Kind::LeaseCount,
        _ => return Err(ApiError::no_route(&format!("sys/quotas/{rest}"))),
    };
    let Some(name) = name else {
        set_route(format!("sys/quotas/{family}"));
        return list(gw, kind, op).await;
    };
    set_route(format!("sys/quotas/{family}/:name"));
    check_name(name)?;
    match op {
        Operation::Read => read(gw, kind, name).await,
        Operation::Write => write(gw, kind, &req, name).await,
        Operation::Delete => {
            gw.inner
                .quotas
                .update(|d| {
                    match kind {
                        Kind::RateLimit => d.rate_limits.remove(name).map(|_| ()),
                        Kind::LeaseCount => d.lease_counts.remove(name).map(|_| ()),
                    };
                    Ok(())
                })
                .await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        _ => Err(ApiError::unsupported_operation()),
    }
}

fn check_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name != "."
        && name != "..";
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "invalid quota name {name:?}: letters, digits, '-', '_' and '.' only, at most {MAX_NAME}"
        )))
    }
}

fn check_fields(body: &Map<String, Value>, allowed: &[&str]) -> Result<(), ApiError> {
    let mut unknown: Vec<&str> = body
        .keys()
        .map(String::as_str)
        .filter(|k| !allowed.contains(k))
        .collect();
    if unknown.is_empty() {
        return Ok(());
    }
    unknown.sort_unstable();
    Err(ApiError::bad_request(format!(
        "unknown fields: {}",
        unknown.join(", ")
    )))
}

// === LIST ===

async fn list(gw: &Gateway, kind: Kind, op: Operation) -> Result<Response, ApiError> {
    if op != Operation::List {
        return Err(ApiError::unsupported_operation());
    }
    let defs = gw.inner.quotas.current().await?;
    let names: Vec<String> = match kind {
        Kind::RateLimit => defs.rate_limits.keys().cloned().collect(),
        Kind::LeaseCount => defs.lease_counts.keys().cloned().collect(),
    };
    keys_response(names, "system")
}

// === GET ===

async fn read(gw: &Gateway, kind: Kind, name: &str) -> Result<Response, ApiError> {
    let defs = gw.inner.quotas.current().await?;
    let data = match kind {
        Kind::RateLimit => {
            let q = defs.rate_limits.get(name).ok_or_else(ApiError::not_found)?;
            json!({
                "name": q.name,
                "path": q.scope.path(),
                "type": "rate-limit",
                "rate": q.rate,
                "interval": q.interval_secs,
                "block_interval": q.block_secs,
                "role": q.role,
                "inheritable": q.inheritable,
            })
        }
        Kind::LeaseCount => {
            let q = defs
                .lease_counts
                .get(name)
                .ok_or_else(ApiError::not_found)?;
            let counter = gw
                .leases()
                .count_leases(bulwark_proto::auth::v1::CountLeasesRequest {
                    prefix: q.scope.lease_prefix(),
                })
                .await?
                .into_inner()
                .count;
            json!({
                "name": q.name,
                "path": q.scope.path(),
                "type": "lease-count",
                "max_leases": q.max_leases,
                "counter": counter,
                "role": q.role,
                "inheritable": q.inheritable,
            })
        }
    };
    Ok(Envelope::data(data, "system").into_response())
}

// === POST ===

/// The values of a quota write, checked; `None` where not given.
struct Given {
    scope: Option<Scope>,
    role: Option<String>,
    inheritable: Option<bool>,
    rate: Option<f64>,
    interval: Option<u64>,
    block: Option<u64>,
    max_leases: Option<u64>,
}

async fn write(
    gw: &Gateway,
    kind: Kind,
    req: &ApiRequest,
    name: &str,
) -> Result<Response, ApiError> {
    let body = json_object(&req.body)?;
    let (fields, type_name) = match kind {
        Kind::RateLimit => (RATE_LIMIT_FIELDS, "rate-limit"),
        Kind::LeaseCount => (LEASE_COUNT_FIELDS, "lease-count"),
    };
    check_fields(&body, fields)?;
    let f = Fields(&body);
    if let Some(n) = f.string("name")? {
        if n != name {
            return Err(ApiError::bad_request(format!(
                "name {n:?} does not match the path's {name:?}"
            )));
        }
    }
    if let Some(t) = f.string("type")? {
        if t != type_name {
            return Err(ApiError::bad_request(format!(
                "type {t:?}: this endpoint takes {type_name:?} quotas"
            )));
        }
    }
    let scope = match f.string("path")? {
        Some(p) => Some(scope_of(gw, &p).await?),
        None => None,
    };
    let given = Given {
        scope,
        role: f.string("role")?,
        inheritable: f.bool("inheritable")?,
        rate: body
            .get("rate")
            .filter(|v| !v.is_null())
            .map(parse_rate)
            .transpose()?,
        interval: seconds(&body, "interval", false)?,
        block: seconds(&body, "block_interval", true)?,
        max_leases: body
            .get("max_leases")
            .filter(|v| !v.is_null())
            .map(parse_max_leases)
            .transpose()?,
    };
    let role = gw
        .inner
        .quotas
        .update(|d| match kind {
            Kind::RateLimit => {
                let old = d.rate_limits.get(name);
                let scope = pick(&given.scope, old.map(|o| &o.scope), Scope::Global);
                let role = pick(&given.role, old.map(|o| &o.role), String::new());
                let q = RateLimit {
                    name: name.to_string(),
                    inheritable: given
                        .inheritable
                        .or(old.map(|o| o.inheritable))
                        .unwrap_or(scope == Scope::Global),
                    rate: given
                        .rate
                        .or(old.map(|o| o.rate))
                        .ok_or_else(|| ApiError::bad_request("missing rate"))?,
                    interval_secs: given.interval.or(old.map(|o| o.interval_secs)).unwrap_or(1),
                    block_secs: given.block.or(old.map(|o| o.block_secs)).unwrap_or(0),
                    scope,
                    role,
                };
                if let Some(other) = d
                    .rate_limits
                    .values()
                    .find(|o| o.name != name && o.scope == q.scope && o.role == q.role)
                {
                    return Err(similar(&other.name));
                }
                let role = q.role.clone();
                d.rate_limits.insert(name.to_string(), q);
                Ok(role)
            }
            Kind::LeaseCount => {
                let old = d.lease_counts.get(name);
                let scope = pick(&given.scope, old.map(|o| &o.scope), Scope::Global);
                let role = pick(&given.role, old.map(|o| &o.role), String::new());
                let q = LeaseCount {
                    name: name.to_string(),
                    inheritable: given
                        .inheritable
                        .or(old.map(|o| o.inheritable))
                        .unwrap_or(scope == Scope::Global),
                    max_leases: given
                        .max_leases
                        .or(old.map(|o| o.max_leases))
                        .ok_or_else(|| ApiError::bad_request("missing max_leases"))?,
                    scope,
                    role,
                };
                if let Some(other) = d
                    .lease_counts
                    .values()
                    .find(|o| o.name != name && o.scope == q.scope && o.role == q.role)
                {
                    return Err(similar(&other.name));
                }
                let role = q.role.clone();
                d.lease_counts.insert(name.to_string(), q);
                Ok(role)
            }
        })
        .await?;
    if role.is_empty() {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok(Envelope::new("system")
        .with_warnings(vec![ROLE_WARNING.into()])
        .into_response())
}

/// The given value, else the stored one, else the default.
fn pick<T: Clone>(given: &Option<T>, stored: Option<&T>, default: T) -> T {
    given.clone().or_else(|| stored.cloned()).unwrap_or(default)
}

fn similar(name: &str) -> ApiError {
    ApiError::bad_request(format!(
        "quota rule with similar properties exists under the name {name:?}"
    ))
}

/// What a quota's `path` covers: checked, and routed through the mount
/// tables (secrets engines, or auth methods under `auth/`).
async fn scope_of(gw: &Gateway, path: &str) -> Result<Scope, ApiError> {
    let p = normalize_path(path)?;
    let body = p.trim_end_matches('*');
    if body.is_empty() {
        if p.is_empty() {
            return Scope::classify("", None);
        }
        return Err(ApiError::bad_request(
            "invalid path \"*\": leave the path empty for a global quota",
        ));
    }
    let routed = match body.strip_prefix("auth/") {
        Some(below) => gw
            .auth_mounts()
            .route(below)
            .await?
            .map(|(m, rest)| (format!("auth/{}", m.path), rest)),
        None if body == "auth" => None,
        None => gw
            .mounts()
            .route(body)
            .await?
            .map(|(m, rest)| (m.path, rest)),
    };
    if let Some((mount, rest)) = &routed {
        // A glob must follow the mount path: `secret*` would reach past it.
        if p.ends_with('*') && rest.is_empty() && !body.ends_with('/') {
            return Err(ApiError::bad_request(format!(
                "invalid path {p:?}: a glob must follow the mount path {mount:?}"
            )));
        }
    }
    let rest_with_glob = routed.as_ref().map(|(m, rest)| {
        let glob = if p.ends_with('*') { "*" } else { "" };
        (m.as_str(), format!("{rest}{glob}"))
    });
    Scope::classify(&p, rest_with_glob.as_ref().map(|(m, r)| (*m, r.as_str())))
}

/// `rate`: a number (or numeric string) above zero.
fn parse_rate(v: &Value) -> Result<f64, ApiError> {
    let rate = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match rate {
        Some(r) if r.is_finite() && r > 0.0 && r <= MAX_RATE => Ok(r),
        _ => Err(ApiError::bad_request(format!(
            "invalid rate {v}: must be a number above 0 (at most {MAX_RATE})"
        ))),
    }
}

/// `max_leases`: a whole number above zero.
fn parse_max_leases(v: &Value) -> Result<u64, ApiError> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    match n {
        Some(n) if n > 0 && i64::try_from(n).is_ok() => Ok(n),
        _ => Err(ApiError::bad_request(format!(
            "invalid max_leases {v}: must be a whole number above 0"
        ))),
    }
}

/// A duration field in whole seconds, at most a year. `interval` 0 means
/// the default (1s), as in Vault; `block_interval` 0 means none.
fn seconds(body: &Map<String, Value>, key: &str, zero_ok: bool) -> Result<Option<u64>, ApiError> {
    let Some(v) = body.get(key) else {
        return Ok(None);
    };
    let d = bulwark_shared::ttl::parse_duration_value(v)
        .map_err(|e| ApiError::bad_request(format!("invalid {key}: {e}")))?;
    let Some(d) = d else { return Ok(None) };
    if d.subsec_nanos() != 0 {
        return Err(ApiError::bad_request(format!(
            "invalid {key}: must be a whole number of seconds"
        )));
    }
    match d.as_secs() {
        0 if zero_ok => Ok(Some(0)),
        0 => Ok(Some(1)),
        s if s > MAX_INTERVAL_SECS => Err(ApiError::bad_request(format!(
            "invalid {key}: at most {MAX_INTERVAL_SECS} seconds"
        ))),
        s => Ok(Some(s)),
    }
}

// === config ===

async fn config(gw: &Gateway, req: ApiRequest, op: Operation) -> Result<Response, ApiError> {
    match op {
        Operation::Read => {
            let c = gw.inner.quotas.current().await?.config.clone();
            Ok(Envelope::data(config_json(&c), "system").into_response())
        }
        Operation::Write => {
            let body = json_object(&req.body)?;
            check_fields(&body, CONFIG_FIELDS)?;
            let f = Fields(&body);
            let audit = f.bool("enable_rate_limit_audit_logging")?;
            let headers = f.bool("enable_rate_limit_response_headers")?;
            let exempt = if f.present("rate_limit_exempt_paths") {
                Some(exempt_paths(f.string_list("rate_limit_exempt_paths")?)?)
            } else {
                None
            };
            gw.inner
                .quotas
                .update(|d| {
                    if let Some(v) = audit {
                        d.config.enable_rate_limit_audit_logging = v;
                    }
                    if let Some(v) = headers {
                        d.config.enable_rate_limit_response_headers = v;
                    }
                    if let Some(v) = &exempt {
                        d.config.rate_limit_exempt_paths = v.clone();
                    }
                    Ok(())
                })
                .await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        _ => Err(ApiError::unsupported_operation()),
    }
}

fn config_json(c: &QuotaConfig) -> Value {
    json!({
        "enable_rate_limit_audit_logging": c.enable_rate_limit_audit_logging,
        "enable_rate_limit_response_headers": c.enable_rate_limit_response_headers,
        "rate_limit_exempt_paths": c.rate_limit_exempt_paths,
    })
}

/// Exempt paths as stored: relative to `/v1/`, checked like quota paths.
fn exempt_paths(items: Vec<String>) -> Result<Vec<String>, ApiError> {
    if items.len() > MAX_EXEMPT_PATHS {
        return Err(ApiError::bad_request(format!(
            "at most {MAX_EXEMPT_PATHS} rate_limit_exempt_paths"
        )));
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let p = item.trim().trim_start_matches('/');
        let p = p.strip_prefix("v1/").unwrap_or(p);
        let p = normalize_path(p)?;
        if p.is_empty() || p == "*" {
            return Err(ApiError::bad_request(format!(
                "invalid exempt path {item:?}"
            )));
        }
        out.push(p.trim_end_matches('/').to_string());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["global", "a.b-c_d", "X1"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "a b", "a/b", "é", &"x".repeat(129)] {
            assert_eq!(check_name(bad).unwrap_err().status, 400, "{bad:?}");
        }
    }

    #[test]
    fn rates_and_leases() {
        assert_eq!(parse_rate(&json!(5)).unwrap(), 5.0);
        assert_eq!(parse_rate(&json!(0.25)).unwrap(), 0.25);
        assert_eq!(parse_rate(&json!("897.3")).unwrap(), 897.3);
        for bad in [
            json!(0),
            json!(-1),
            json!(-0.5),
            json!("abc"),
            json!("NaN"),
            json!("inf"),
            json!(1e12),
            json!(true),
            json!([1]),
        ] {
            assert_eq!(parse_rate(&bad).unwrap_err().status, 400, "{bad}");
        }
        assert_eq!(parse_max_leases(&json!(2)).unwrap(), 2);
        assert_eq!(parse_max_leases(&json!("10")).unwrap(), 10);
        for bad in [json!(0), json!(-3), json!(1.5), json!("x"), json!(u64::MAX)] {
            assert_eq!(parse_max_leases(&bad).unwrap_err().status, 400, "{bad}");
        }
    }

    #[test]
    fn durations() {
        let body = |v: Value| {
            let mut m = Map::new();
            m.insert("d".into(), v);
            m
        };
        let secs = |v: Value, zero_ok| seconds(&body(v), "d", zero_ok);
        assert_eq!(secs(json!("2m"), false).unwrap(), Some(120));
        assert_eq!(secs(json!(30), false).unwrap(), Some(30));
        assert_eq!(secs(json!(0), false).unwrap(), Some(1));
        assert_eq!(secs(json!(0), true).unwrap(), Some(0));
        assert_eq!(secs(Value::Null, true).unwrap(), None);
        assert_eq!(seconds(&Map::new(), "d", true).unwrap(), None);
        for bad in [
            json!("soon"),
            json!("-1s"),
            json!(-5),
            json!("1.5s"),
            json!("500ms"),
            json!("9999999h"),
            json!(true),
        ] {
            assert_eq!(secs(bad.clone(), true).unwrap_err().status, 400, "{bad}");
        }
    }

    #[test]
    fn unknown_fields_are_refused() {
        let m = json_object(br#"{"rate": 1, "burst": 3, "aaa": 1}"#).unwrap();
        let e = check_fields(&m, RATE_LIMIT_FIELDS).unwrap_err();
        assert_eq!(e.status, 400);
        assert_eq!(e.errors, vec!["unknown fields: aaa, burst".to_string()]);
        let m = json_object(br#"{"rate": 1, "path": "", "block_interval": "1m"}"#).unwrap();
        assert!(check_fields(&m, RATE_LIMIT_FIELDS).is_ok());
        let m = json_object(br#"{"rate": 1}"#).unwrap();
        assert!(check_fields(&m, LEASE_COUNT_FIELDS).is_err());
    }

    #[test]
    fn exempt_paths_are_normalized() {
        assert_eq!(
            exempt_paths(vec![
                "/v1/sys/health".into(),
                "sys/internal/*".into(),
                "sys/health/".into(),
            ])
            .unwrap(),
            vec!["sys/health".to_string(), "sys/internal/*".to_string()]
        );
        for bad in ["", "*", "a/../b", "a*b"] {
            assert_eq!(
                exempt_paths(vec![bad.into()]).unwrap_err().status,
                400,
                "{bad:?}"
            );
        }
    }
}
