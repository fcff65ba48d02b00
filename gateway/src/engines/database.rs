//! `database` mounts: Vault's database secrets engine paths over the
//! dynamic-db service; `creds/<role>` answers carry a lease registered with
//! the auth service's lease registry (owned by the requesting token).

use axum::response::{IntoResponse, Response};
use bulwark_proto::auth::v1::RegisterLeaseRequest;
use bulwark_proto::dynamicdb::v1 as pb;
use serde_json::{json, Value};

use crate::acl::Caller;
use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::mounts::MountEntry;
use crate::reply::{found, keys_response, no_content, unsupported_path};
use crate::request::{json_object, Fields, Operation};
use crate::{ApiRequest, Gateway};

const MOUNT_TYPE: &str = "database";
/// The engine name the lease registry maps to the dynamic-db service.
pub const LEASE_ENGINE: &str = "dynamic-db";

fn item(m: &MountEntry, name: &str) -> pb::ItemRequest {
    pb::ItemRequest {
        mount: m.uuid.clone(),
        name: name.to_string(),
    }
}

fn mount_req(m: &MountEntry) -> pb::MountRequest {
    pb::MountRequest {
        mount: m.uuid.clone(),
    }
}

/// Statements: a list, or one string (which may hold several statements).
fn statements(f: &Fields<'_>, key: &str) -> Result<Option<Vec<String>>, ApiError> {
    if !f.present(key) {
        return Ok(None);
    }
    match f.0.get(key) {
        Some(Value::String(s)) => Ok(Some(if s.trim().is_empty() {
            vec![]
        } else {
            vec![s.clone()]
        })),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str().map(String::from).ok_or_else(|| {
                    ApiError::bad_request(format!("{key} must be a list of strings"))
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        _ => Err(ApiError::bad_request(format!(
            "{key} must be a string or a list of strings"
        ))),
    }
}

fn int(f: &Fields<'_>, key: &str) -> Result<Option<i64>, ApiError> {
    Ok(f.u32(key)?.map(i64::from))
}

pub async fn handle(
    gw: &Gateway,
    req: ApiRequest,
    op: Operation,
    m: &MountEntry,
    rest: &str,
    caller: &Caller,
) -> Result<Response, ApiError> {
    let rest = rest.trim_end_matches('/');
    let segs: Vec<&str> = rest.split('/').collect();
    let mut db = gw.dynamic_db();
    match (segs.as_slice(), op) {
        (["config"], Operation::List) => keys_response(
            db.list_configs(mount_req(m)).await?.into_inner().names,
            MOUNT_TYPE,
        ),
        (["roles"], Operation::List) => keys_response(
            db.list_roles(mount_req(m)).await?.into_inner().names,
            MOUNT_TYPE,
        ),
        (["static-roles"], Operation::List) => keys_response(
            db.list_static_roles(mount_req(m)).await?.into_inner().names,
            MOUNT_TYPE,
        ),
        (["config", name], op) => config(gw, &req, op, m, name).await,
        (["reset", name], Operation::Write) => {
            db.reset_connection(item(m, name)).await?;
            Ok(no_content())
        }
        (["rotate-root", name], Operation::Write) => {
            db.rotate_root(item(m, name)).await?;
            Ok(no_content())
        }
        (["roles", name], op) => role(gw, &req, op, m, name).await,
        (["creds", role], Operation::Read) => creds(gw, m, role, caller).await,
        (["static-roles", name], op) => static_role(gw, &req, op, m, name).await,
        (["static-creds", name], Operation::Read) => {
            let c = db.get_static_credentials(item(m, name)).await?.into_inner();
            Ok(Envelope::data(
                json!({
                    "username": c.username,
                    "password": c.password,
                    "last_vault_rotation": rfc3339(c.last_vault_rotation),
                    "rotation_period": c.rotation_period,
                    "ttl": c.ttl,
                }),
                MOUNT_TYPE,
            )
            .into_response())
        }
        (["rotate-role", name], Operation::Write) => {
            db.rotate_static_role(item(m, name)).await?;
            Ok(no_content())
        }
        (
            ["config" | "roles" | "creds" | "static-roles" | "static-creds" | "reset"
            | "rotate-root" | "rotate-role", ..],
            _,
        ) => Err(ApiError::unsupported_operation()),
        _ => Err(unsupported_path()),
    }
}

fn rfc3339(unix: i64) -> Value {
    chrono::DateTime::from_timestamp(unix, 0)
        .filter(|_| unix > 0)
        .map(|t| Value::from(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)))
        .unwrap_or(Value::Null)
}

async fn config(
    gw: &Gateway,
    req: &ApiRequest,
    op: Operation,
    m: &MountEntry,
    name: &str,
) -> Result<Response, ApiError> {
    let mut db = gw.dynamic_db();
    match op {
        Operation::Read => {
            let c = found(db.read_config(item(m, name)).await)?.ok_or_else(ApiError::not_found)?;
            Ok(Envelope::data(
                json!({
                    "plugin_name": c.plugin_name,
                    "plugin_version": "",
                    "connection_details": {
                        "connection_url": c.connection_url,
                        "username": c.username,
                        "max_open_connections": c.max_open_connections,
                        "max_idle_connections": c.max_idle_connections,
                        "max_connection_lifetime": format!("{}s", c.max_connection_lifetime),
                    },
                    "allowed_roles": c.allowed_roles,
                    "root_credentials_rotate_statements": c.root_rotation_statements,
                    "password_policy": c.password_policy,
                    "username_template": c.username_template,
                    "verify_connection": c.verify_connection,
                }),
                MOUNT_TYPE,
            )
            .into_response())
        }
        Operation::Write => {
            let body = json_object(&req.body)?;
            let f = Fields(&body);
            let mut c = found(db.read_config(item(m, name)).await)?.unwrap_or_default();
            c.password.clear();
            if let Some(v) = f.string("plugin_name")? {
                c.plugin_name = v;
            }
            if c.plugin_name.is_empty() {
                return Err(ApiError::bad_request("plugin_name must be provided"));
            }
            for (key, slot) in [
                ("connection_url", &mut c.connection_url),
                ("username", &mut c.username),
                ("password", &mut c.password),
                ("username_template", &mut c.username_template),
                ("password_policy", &mut c.password_policy),
            ] {
                if let Some(v) = f.string(key)? {
                    *slot = v;
                }
            }
            if let Some(v) = f.list_any(&["allowed_roles"])? {
                c.allowed_roles = v;
            }
            if let Some(v) = statements(&f, "root_rotation_statements")? {
                c.root_rotation_statements = v;
            }
            if let Some(v) = int(&f, "max_open_connections")? {
                c.max_open_connections = v;
            }
            if let Some(v) = int(&f, "max_idle_connections")? {
                c.max_idle_connections = v;
            }
            if let Some(v) = f.secs(&["max_connection_lifetime"])? {
                c.max_connection_lifetime = v;
            }
            c.verify_connection = f.bool("verify_connection")?.unwrap_or(true);
            db.write_config(pb::WriteConfigRequest {
                mount: m.uuid.clone(),
                name: name.to_string(),
                config: Some(c),
            })
            .await?;
            Ok(no_content())
        }
        Operation::Delete => {
            db.delete_config(item(m, name)).await?;
            Ok(no_content())
        }
        _ => Err(ApiError::unsupported_operation()),
    }
}

async fn role(
    gw: &Gateway,
    req: &ApiRequest,
    op: Operation,
    m: &MountEntry,
    name: &str,
) -> Result<Response, ApiError> {
    let mut db = gw.dynamic_db();
    match op {
        Operation::Read => {
            let r = found(db.read_role(item(m, name)).await)?.ok_or_else(ApiError::not_found)?;
            Ok(Envelope::data(
                json!({
                    "db_name": r.db_name,
                    "creation_statements": r.creation_statements,
                    "revocation_statements": r.revocation_statements,
                    "rollback_statements": r.rollback_statements,
                    "renew_statements": r.renew_statements,
                    "default_ttl": r.default_ttl,
                    "max_ttl": r.max_ttl,
                    "credential_type": "password",
                }),
                MOUNT_TYPE,
            )
            .into_response())
        }
        Operation::Write => {
            let body = json_object(&req.body)?;
            let f = Fields(&body);
            let mut r = found(db.read_role(item(m, name)).await)?.unwrap_or(pb::Role {
                name: name.to_string(),
                ..Default::default()
            });
            if let Some(v) = f.string("db_name")? {
                r.db_name = v;
            }
            for (key, slot) in [
                ("creation_statements", &mut r.creation_statements),
                ("revocation_statements", &mut r.revocation_statements),
                ("rollback_statements", &mut r.rollback_statements),
                ("renew_statements", &mut r.renew_statements),
            ] {
                if let Some(v) = statements(&f, key)? {
                    *slot = v;
                }
            }
            if let Some(v) = f.secs(&["default_ttl"])? {
                r.default_ttl = v;
            }
            if let Some(v) = f.secs(&["max_ttl"])? {
                r.max_ttl = v;
            }
            if r.max_ttl > 0 && r.default_ttl > r.max_ttl {
                return Err(ApiError::bad_request("ttl cannot be greater than max_ttl"));
            }
            db.write_role(pb::WriteRoleRequest {
                mount: m.uuid.clone(),
                role: Some(r),
            })
            .await?;
            Ok(no_content())
        }
        Operation::Delete => {
            db.delete_role(item(m, name)).await?;
            Ok(no_content())
        }
        _ => Err(ApiError::unsupported_operation()),
    }
}

async fn static_role(
    gw: &Gateway,
    req: &ApiRequest,
    op: Operation,
    m: &MountEntry,
    name: &str,
) -> Result<Response, ApiError> {
    let mut db = gw.dynamic_db();
    match op {
        Operation::Read => {
            let r =
                found(db.read_static_role(item(m, name)).await)?.ok_or_else(ApiError::not_found)?;
            Ok(Envelope::data(
                json!({
                    "db_name": r.db_name,
                    "username": r.username,
                    "rotation_period": r.rotation_period,
                    "rotation_statements": r.rotation_statements,
                    "last_vault_rotation": rfc3339(r.last_vault_rotation),
                    "credential_type": "password",
                }),
                MOUNT_TYPE,
            )
            .into_response())
        }
        Operation::Write => {
            let body = json_object(&req.body)?;
            let f = Fields(&body);
            let mut r =
                found(db.read_static_role(item(m, name)).await)?.unwrap_or(pb::StaticRole {
                    name: name.to_string(),
                    ..Default::default()
                });
            if let Some(v) = f.string("db_name")? {
                r.db_name = v;
            }
            if let Some(v) = f.string("username")? {
                r.username = v;
            }
            if let Some(v) = f.secs(&["rotation_period"])? {
                r.rotation_period = v;
            }
            if let Some(v) = statements(&f, "rotation_statements")? {
                r.rotation_statements = v;
            }
            db.write_static_role(pb::WriteStaticRoleRequest {
                mount: m.uuid.clone(),
                role: Some(r),
            })
            .await?;
            Ok(no_content())
        }
        Operation::Delete => {
            db.delete_static_role(item(m, name)).await?;
            Ok(no_content())
        }
        _ => Err(ApiError::unsupported_operation()),
    }
}

/// `creds/<role>`: a new database user, and a lease owned by the caller's
/// token. If the lease cannot be registered the user is revoked at once.
async fn creds(
    gw: &Gateway,
    m: &MountEntry,
    role: &str,
    caller: &Caller,
) -> Result<Response, ApiError> {
    let mut db = gw.dynamic_db();
    let c = db
        .create_credentials(pb::CreateCredentialsRequest {
            mount: m.uuid.clone(),
            role: role.to_string(),
            display_name: caller.entry.display_name.clone(),
            mount_default_ttl: m.config.default_lease_ttl as i64,
            mount_max_ttl: m.config.max_lease_ttl as i64,
        })
        .await?
        .into_inner();
    let registered = gw
        .leases()
        .register_lease(RegisterLeaseRequest {
            path: format!("{}creds/{role}", m.path),
            client_token: caller.token.clone(),
            ttl: c.ttl,
            max_ttl: c.max_ttl,
            renewable: true,
            engine: LEASE_ENGINE.into(),
            engine_mount: m.uuid.clone(),
            revoke_data: c.revoke_data.clone(),
        })
        .await;
    let lease = match registered {
        Ok(l) => l.into_inner(),
        Err(e) => {
            let _ = db
                .revoke_credentials(pb::RevokeCredentialsRequest {
                    mount: m.uuid.clone(),
                    revoke_data: c.revoke_data,
                })
                .await;
            return Err(e.into());
        }
    };
    let mut env = Envelope::data(
        json!({ "username": c.username, "password": c.password }),
        MOUNT_TYPE,
    );
    env.lease_duration = crate::sys::leases::granted_secs(&lease);
    env.lease_id = lease.id;
    env.renewable = lease.renewable;
    Ok(env.into_response())
}
