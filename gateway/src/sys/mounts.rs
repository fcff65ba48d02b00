//! `sys/mounts`, `sys/mounts/:path[/tune]`, `sys/remount`,
//! `sys/internal/ui/mounts[/:path]`: the mount table over HTTP.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::mounts::{MountConfig, MountEntry};
use crate::request::{json_object, Fields, Operation};
use crate::{ApiRequest, Gateway};

/// Engine types this server can mount today.
const KNOWN_TYPES: &[&str] = &["kv", "database", "pki", "transit"];

pub(crate) fn table_json(entries: &[MountEntry]) -> Value {
    let mut m = Map::new();
    for e in entries {
        m.insert(e.path.clone(), e.to_json());
    }
    Value::Object(m)
}

/// Applies the `config` keys shared by enable and tune.
pub(crate) fn apply_config(cfg: &mut MountConfig, c: &Map<String, Value>) -> Result<(), ApiError> {
    let f = Fields(c);
    if let Some(t) = f.duration_secs("default_lease_ttl")? {
        cfg.default_lease_ttl = t;
    }
    if let Some(t) = f.duration_secs("max_lease_ttl")? {
        cfg.max_lease_ttl = t;
    }
    if cfg.max_lease_ttl != 0 && cfg.default_lease_ttl > cfg.max_lease_ttl {
        return Err(ApiError::bad_request(
            "default lease TTL cannot be greater than the max lease TTL",
        ));
    }
    if let Some(b) = f.bool("force_no_cache")? {
        cfg.force_no_cache = b;
    }
    if c.contains_key("audit_non_hmac_request_keys") {
        cfg.audit_non_hmac_request_keys = f.string_list("audit_non_hmac_request_keys")?;
    }
    if c.contains_key("audit_non_hmac_response_keys") {
        cfg.audit_non_hmac_response_keys = f.string_list("audit_non_hmac_response_keys")?;
    }
    if let Some(v) = f.string("listing_visibility")? {
        cfg.listing_visibility = v;
    }
    if c.contains_key("passthrough_request_headers") {
        cfg.passthrough_request_headers = f.string_list("passthrough_request_headers")?;
    }
    if c.contains_key("allowed_response_headers") {
        cfg.allowed_response_headers = f.string_list("allowed_response_headers")?;
    }
    Ok(())
}

pub(crate) fn config_object(body: &Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    match body.get("config") {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(_) => Err(ApiError::bad_request("config must be an object")),
    }
}

/// `GET sys/mounts`.
pub async fn list(gw: &Gateway, op: Operation) -> Result<Response, ApiError> {
    if op != Operation::Read {
        return Err(ApiError::unsupported_operation());
    }
    let entries = gw.mounts().all().await?;
    Ok(Envelope::data(table_json(&entries), "system").with_top_level_data())
}

async fn enable(gw: &Gateway, req: &ApiRequest, path: &str) -> Result<Response, ApiError> {
    let body = json_object(&req.body)?;
    let f = Fields(&body);
    let raw_type = f
        .string("type")?
        .or(f.string("plugin_name")?)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::bad_request("backend type must be specified as a string"))?;
    let mut options = Fields(&body).string_map("options")?;
    let kind = match raw_type.as_str() {
        "kv-v2" => {
            options
                .get_or_insert_with(BTreeMap::new)
                .insert("version".into(), "2".into());
            "kv".to_string()
        }
        "kv-v1" => {
            options
                .get_or_insert_with(BTreeMap::new)
                .insert("version".into(), "1".into());
            "kv".to_string()
        }
        t => t.to_string(),
    };
    if !KNOWN_TYPES.contains(&kind.as_str()) {
        return Err(ApiError::bad_request(format!(
            "plugin not found in the catalog: {raw_type}"
        )));
    }
    if let Some(v) = options.as_ref().and_then(|o| o.get("version")) {
        if kind != "kv" {
            return Err(ApiError::bad_request(
                "options.version is only valid for kv mounts",
            ));
        }
        if !matches!(v.as_str(), "1" | "2") {
            return Err(ApiError::bad_request(format!("invalid kv version {v:?}")));
        }
    }
    let mut config = MountConfig::default();
    apply_config(&mut config, &config_object(&body)?)?;
    let entry = MountEntry {
        path: path.to_string(),
        kind,
        description: f.string("description")?.unwrap_or_default(),
        accessor: String::new(),
        uuid: String::new(),
        config,
        options,
        local: f.bool("local")?.unwrap_or(false),
        seal_wrap: f.bool("seal_wrap")?.unwrap_or(false),
    };
    gw.mounts().enable(entry).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn disable(gw: &Gateway, path: &str) -> Result<Response, ApiError> {
    if let Some(m) = gw.mounts().disable(path).await? {
        match m.kind.as_str() {
            "kv" => {
                gw.kv()
                    .drop_mount(bulwark_proto::kv::v1::MountRequest {
                        mount: m.uuid.clone(),
                    })
                    .await?;
            }
            "database" => {
                // The mount's secrets go first (Vault revokes a mount's
                // leases when it is disabled), then its configuration.
                gw.leases()
                    .revoke_prefix(bulwark_proto::auth::v1::RevokePrefixRequest {
                        prefix: m.path.clone(),
                        force: true,
                        sync: true,
                    })
                    .await?;
                gw.dynamic_db()
                    .drop_mount(bulwark_proto::dynamicdb::v1::MountRequest {
                        mount: m.uuid.clone(),
                    })
                    .await?;
            }
            "pki" => {
                gw.pki()
                    .drop_mount(bulwark_proto::pki::v1::MountRequest {
                        mount: m.uuid.clone(),
                    })
                    .await?;
            }
            "transit" => {
                gw.transit()
                    .drop_mount(bulwark_proto::transit::v1::MountRequest {
                        mount: m.uuid.clone(),
                    })
                    .await?;
            }
            _ => {}
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(crate) fn tune_json(m: &MountEntry) -> Value {
    json!({
        "default_lease_ttl": m.default_lease_ttl(),
        "max_lease_ttl": m.max_lease_ttl(),
        "force_no_cache": m.config.force_no_cache,
        "description": m.description,
        "options": m.options,
        "audit_non_hmac_request_keys": m.config.audit_non_hmac_request_keys,
        "audit_non_hmac_response_keys": m.config.audit_non_hmac_response_keys,
        "listing_visibility": m.config.listing_visibility,
        "passthrough_request_headers": m.config.passthrough_request_headers,
        "allowed_response_headers": m.config.allowed_response_headers,
    })
}

async fn tune(
    gw: &Gateway,
    req: &ApiRequest,
    op: Operation,
    path: &str,
) -> Result<Response, ApiError> {
    match op {
        Operation::Read => {
            let m = gw.mounts().get(path).await?.ok_or_else(|| {
                ApiError::bad_request(format!("cannot fetch sysview for path {path:?}"))
            })?;
            Ok(Envelope::data(tune_json(&m), "system").with_top_level_data())
        }
        Operation::Write => {
            let body = json_object(&req.body)?;
            let f = Fields(&body);
            let description = f.string("description")?;
            let options = Fields(&body).string_map("options")?;
            let current = gw
                .mounts()
                .get(path)
                .await?
                .ok_or_else(|| ApiError::bad_request(format!("no mount at {path}")))?;
            let upgrade = current.kind == "kv"
                && current.kv_version() == 1
                && options
                    .as_ref()
                    .and_then(|o| o.get("version"))
                    .map(String::as_str)
                    == Some("2");
            if let Some(v) = options.as_ref().and_then(|o| o.get("version")) {
                if current.kind != "kv" {
                    return Err(ApiError::bad_request(
                        "options.version is only valid for kv mounts",
                    ));
                }
                if current.kv_version() == 2 && v == "1" {
                    return Err(ApiError::bad_request(
                        "cannot downgrade a kv mount from version 2 to 1",
                    ));
                }
            }
            if upgrade {
                crate::engines::kv::upgrade_v1_to_v2(gw, &current).await?;
            }
            gw.mounts()
                .modify(path, |m| {
                    // The body itself may be the config (tune takes its keys at the top level).
                    apply_config(&mut m.config, &body)?;
                    if let Some(d) = &description {
                        m.description = d.clone();
                    }
                    if let Some(o) = &options {
                        let opts = m.options.get_or_insert_with(BTreeMap::new);
                        for (k, v) in o {
                            opts.insert(k.clone(), v.clone());
                        }
                    }
                    Ok(())
                })
                .await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        _ => Err(ApiError::unsupported_operation()),
    }
}

/// `sys/mounts/<path>` and `sys/mounts/<path>/tune`.
pub async fn one(
    gw: &Gateway,
    req: ApiRequest,
    op: Operation,
    rest: &str,
) -> Result<Response, ApiError> {
    if let Some(path) = rest.strip_suffix("/tune") {
        return tune(gw, &req, op, path).await;
    }
    match op {
        Operation::Write => enable(gw, &req, rest).await,
        Operation::Delete => disable(gw, rest).await,
        Operation::Read => {
            let m = gw.mounts().get(rest).await?.ok_or_else(|| {
                ApiError::bad_request(format!(
                    "No secret engine mount at {}/",
                    rest.trim_matches('/')
                ))
            })?;
            Ok(Envelope::data(m.to_json(), "system").with_top_level_data())
        }
        _ => Err(ApiError::unsupported_operation()),
    }
}

/// `POST sys/remount` `{from, to}`; the move is synchronous, reported as a
/// finished migration (`sys/remount/status/:id`), as the Vault CLI polls.
pub async fn remount(gw: &Gateway, req: ApiRequest) -> Result<Response, ApiError> {
    let body = json_object(&req.body)?;
    let f = Fields(&body);
    let from = f.string("from")?.unwrap_or_default();
    let to = f.string("to")?.unwrap_or_default();
    if from.is_empty() || to.is_empty() {
        return Err(ApiError::bad_request("both from and to must be specified"));
    }
    gw.mounts().remount(&from, &to).await?;
    let id = uuid::Uuid::new_v4().to_string();
    gw.record_migration(&id, &from, &to);
    Ok(Envelope::data(json!({ "migration_id": id }), "system").with_top_level_data())
}

/// `GET sys/remount/status/:id`.
pub async fn remount_status(gw: &Gateway, id: &str) -> Result<Response, ApiError> {
    let (from, to) = gw.migration(id).ok_or_else(ApiError::not_found)?;
    Ok(Envelope::data(
        json!({
            "migration_id": id,
            "migration_info": {
                "source_mount": from,
                "target_mount": to,
                "status": "success",
            },
        }),
        "system",
    )
    .into_response())
}

/// `GET sys/internal/ui/mounts[/:path]`: what the Vault CLI asks before every
/// `kv` command, to learn the mount and its kv version. Answered when the
/// token may do anything under the mount, as Vault does; listed mounts are
/// those the token can reach.
pub async fn ui_mounts(
    gw: &Gateway,
    caller: &crate::acl::Caller,
    path: Option<&str>,
) -> Result<Response, ApiError> {
    let reachable = |m: MountEntry, prefix: &'static str| async move {
        let allowed = m.config.listing_visibility == "unauth"
            || gw
                .policy()
                .has_access_under(bulwark_proto::policy::v1::HasAccessUnderRequest {
                    policies: caller.entry.policies.clone(),
                    path: format!("{prefix}{}", m.path),
                })
                .await?
                .into_inner()
                .allowed;
        Ok::<_, ApiError>(allowed.then_some(m))
    };
    match path.map(|p| p.trim_matches('/')).filter(|p| !p.is_empty()) {
        None => {
            let mut entries = Vec::new();
            for m in gw.mounts().all().await?.iter().cloned() {
                if let Some(m) = reachable(m, "").await? {
                    entries.push(m);
                }
            }
            let mut auth = Vec::new();
            for m in gw.auth_mounts().all().await?.iter().cloned() {
                if let Some(m) = reachable(m, "auth/").await? {
                    auth.push(m);
                }
            }
            Ok(Envelope::data(
                json!({ "secret": table_json(&entries), "auth": table_json(&auth) }),
                "system",
            )
            .into_response())
        }
        Some(p) => {
            let refused = || {
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "preflight capability check returned 403, please ensure client's policies grant access to path \"{p}/\""
                    ),
                )
            };
            let (m, _) = gw.mounts().route(p).await?.ok_or_else(refused)?;
            let m = reachable(m, "").await?.ok_or_else(refused)?;
            let mut v = m.to_json();
            v["path"] = json!(m.path);
            Ok(Envelope::data(v, "system").into_response())
        }
    }
}
