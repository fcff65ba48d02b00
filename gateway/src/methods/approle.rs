//! `auth/<approle mount>/`: roles, role-id, secret-ids, login, tidy.

use std::collections::HashMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bulwark_proto::auth::v1 as pb;
use serde_json::{json, Map, Value};

use super::{
    apply_token_params, found, keys_response, login_context, login_response, mount_ref, no_content,
    token_params_json, unsupported_path,
};
use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::mounts::MountEntry;
use crate::request::{json_object, Fields, Operation};
use crate::{ApiRequest, Gateway};

const MOUNT_TYPE: &str = "approle";

/// The single-field endpoints `role/:name/<field>` and the read keys they show.
const FIELDS: &[(&str, &[&str])] = &[
    ("policies", &["policies", "token_policies"]),
    ("secret-id-num-uses", &["secret_id_num_uses"]),
    ("secret-id-ttl", &["secret_id_ttl"]),
    ("token-ttl", &["token_ttl"]),
    ("token-max-ttl", &["token_max_ttl"]),
    ("token-num-uses", &["token_num_uses"]),
    ("bind-secret-id", &["bind_secret_id"]),
    ("secret-id-bound-cidrs", &["secret_id_bound_cidrs"]),
    ("token-bound-cidrs", &["token_bound_cidrs"]),
    ("period", &["period", "token_period"]),
    ("local-secret-ids", &["local_secret_ids"]),
];

fn item(m: &MountEntry, name: &str) -> pb::ItemRequest {
    pb::ItemRequest {
        mount: Some(mount_ref(m)),
        name: name.to_string(),
    }
}

pub(super) async fn handle(
    gw: &Gateway,
    req: ApiRequest,
    op: Operation,
    m: &MountEntry,
    rest: &str,
) -> Result<Response, ApiError> {
    let segs: Vec<&str> = rest.split('/').collect();
    match (segs.as_slice(), op) {
        (["role"], Operation::List) => {
            let names = gw
                .methods()
                .list_roles(pb::MountRequest {
                    mount: Some(mount_ref(m)),
                })
                .await?
                .into_inner()
                .names;
            keys_response(names, MOUNT_TYPE)
        }
        (["role", name], op) => role(gw, &req, op, m, name).await,
        (["role", name, "role-id"], Operation::Read) => {
            let r = read_role(gw, m, name).await?;
            Ok(Envelope::data(json!({ "role_id": r.role_id }), MOUNT_TYPE).into_response())
        }
        (["role", name, "role-id"], Operation::Write) => {
            let body = json_object(&req.body)?;
            let role_id = Fields(&body)
                .string("role_id")?
                .filter(|r| !r.is_empty())
                .ok_or_else(|| ApiError::bad_request("missing role_id"))?;
            gw.methods()
                .set_role_id(pb::SetRoleIdRequest {
                    mount: Some(mount_ref(m)),
                    name: name.to_string(),
                    role_id,
                })
                .await?;
            Ok(no_content())
        }
        (["role", name, "secret-id"], Operation::Write) => {
            create_secret_id(gw, &req, m, name, false).await
        }
        (["role", name, "custom-secret-id"], Operation::Write) => {
            create_secret_id(gw, &req, m, name, true).await
        }
        (["role", name, "secret-id"], Operation::List) => {
            read_role(gw, m, name).await?;
            let names = gw
                .methods()
                .list_secret_ids(item(m, name))
                .await?
                .into_inner()
                .names;
            keys_response(names, MOUNT_TYPE)
        }
        (["role", name, "secret-id", action @ ("lookup" | "destroy")], Operation::Write)
        | (["role", name, "secret-id", action @ "destroy"], Operation::Delete) => {
            let r = secret_ref(&req, m, name, "secret_id")?;
            secret_action(gw, r, action).await
        }
        (
            ["role", name, "secret-id-accessor", action @ ("lookup" | "destroy")],
            Operation::Write,
        )
        | (["role", name, "secret-id-accessor", action @ "destroy"], Operation::Delete) => {
            let r = secret_ref(&req, m, name, "secret_id_accessor")?;
            secret_action(gw, r, action).await
        }
        (["role", name, field], op) if FIELDS.iter().any(|(f, _)| f == field) => {
            role_field(gw, &req, op, m, name, field).await
        }
        (["login"], Operation::Write) => {
            let body = json_object(&req.body)?;
            let f = Fields(&body);
            let role_id = f.string("role_id")?.unwrap_or_default();
            if role_id.is_empty() {
                return Err(ApiError::bad_request("missing role_id"));
            }
            let created = gw
                .methods()
                .app_role_login(pb::AppRoleLoginRequest {
                    context: Some(login_context(&req, m)),
                    role_id,
                    secret_id: f.string("secret_id")?.unwrap_or_default(),
                })
                .await?
                .into_inner();
            Ok(login_response(created, MOUNT_TYPE))
        }
        (["tidy", "secret-id"], Operation::Write) => {
            gw.methods()
                .tidy_secret_ids(pb::MountRequest {
                    mount: Some(mount_ref(m)),
                })
                .await?;
            let env = Envelope::new(MOUNT_TYPE).with_warnings(vec![
                "Tidy operation successfully started. Any information from the operation will be printed to Vault's server logs.".into(),
            ]);
            Ok((StatusCode::ACCEPTED, axum::Json(env)).into_response())
        }
        (["role" | "login" | "tidy", ..], _) => Err(ApiError::unsupported_operation()),
        _ => Err(unsupported_path()),
    }
}

async fn read_role(gw: &Gateway, m: &MountEntry, name: &str) -> Result<pb::AppRole, ApiError> {
    found(gw.methods().read_role(item(m, name)).await)?
        .ok_or_else(|| ApiError::bad_request(format!("role \"{name}\" does not exist")))
}

/// Applies the role keys the body carries to `r`.
fn apply_role(f: &Fields<'_>, r: &mut pb::AppRole, creating: bool) -> Result<(), ApiError> {
    if let Some(b) = f.bool("bind_secret_id")? {
        r.bind_secret_id = b;
    }
    if let Some(v) = f.list_any(&["secret_id_bound_cidrs", "bound_cidr_list"])? {
        r.secret_id_bound_cidrs = v;
    }
    if let Some(v) = f.u32("secret_id_num_uses")? {
        r.secret_id_num_uses = i64::from(v);
    }
    if let Some(v) = f.secs(&["secret_id_ttl"])? {
        r.secret_id_ttl = v;
    }
    if let Some(b) = f.bool("local_secret_ids")? {
        if !creating && b != r.local_secret_ids {
            return Err(ApiError::bad_request(
                "local_secret_ids can only be modified during role creation",
            ));
        }
        r.local_secret_ids = b;
    }
    if let Some(id) = f.string("role_id")? {
        r.role_id = id;
    }
    apply_token_params(f, r.token.get_or_insert_with(Default::default))
}

fn role_json(r: &pb::AppRole) -> Value {
    let token = r.token.clone().unwrap_or_default();
    let mut data = Map::new();
    data.insert("bind_secret_id".into(), json!(r.bind_secret_id));
    data.insert("local_secret_ids".into(), json!(r.local_secret_ids));
    data.insert(
        "secret_id_bound_cidrs".into(),
        json!(r.secret_id_bound_cidrs),
    );
    data.insert("secret_id_num_uses".into(), json!(r.secret_id_num_uses));
    data.insert("secret_id_ttl".into(), json!(r.secret_id_ttl));
    data.insert("period".into(), json!(token.period));
    token_params_json(&token, &mut data);
    Value::Object(data)
}

async fn write_role(gw: &Gateway, m: &MountEntry, role: pb::AppRole) -> Result<(), ApiError> {
    gw.methods()
        .write_role(pb::WriteRoleRequest {
            mount: Some(mount_ref(m)),
            role: Some(role),
        })
        .await?;
    Ok(())
}

async fn role(
    gw: &Gateway,
    req: &ApiRequest,
    op: Operation,
    m: &MountEntry,
    name: &str,
) -> Result<Response, ApiError> {
    match op {
        Operation::Read => {
            let r = found(gw.methods().read_role(item(m, name)).await)?
                .ok_or_else(ApiError::not_found)?;
            Ok(Envelope::data(role_json(&r), MOUNT_TYPE).into_response())
        }
        Operation::Write => {
            let body = json_object(&req.body)?;
            let existing = found(gw.methods().read_role(item(m, name)).await)?;
            let creating = existing.is_none();
            let mut r = existing.unwrap_or(pb::AppRole {
                name: name.to_string(),
                bind_secret_id: true,
                ..Default::default()
            });
            apply_role(&Fields(&body), &mut r, creating)?;
            write_role(gw, m, r).await?;
            Ok(no_content())
        }
        Operation::Delete => {
            gw.methods().delete_role(item(m, name)).await?;
            Ok(no_content())
        }
        _ => Err(ApiError::unsupported_operation()),
    }
}

/// `role/:name/<field>`: read, set or reset one field of a role.
async fn role_field(
    gw: &Gateway,
    req: &ApiRequest,
    op: Operation,
    m: &MountEntry,
    name: &str,
    field: &str,
) -> Result<Response, ApiError> {
    let keys = FIELDS
        .iter()
        .find(|(f, _)| *f == field)
        .map(|(_, k)| *k)
        .unwrap_or_default();
    let mut r = read_role(gw, m, name).await?;
    match op {
        Operation::Read => {
            let all = role_json(&r);
            let data: Map<String, Value> = keys
                .iter()
                .map(|k| (k.to_string(), all.get(*k).cloned().unwrap_or(Value::Null)))
                .collect();
            Ok(Envelope::data(Value::Object(data), MOUNT_TYPE).into_response())
        }
        Operation::Write => {
            let body = json_object(&req.body)?;
            if !keys
                .iter()
                .chain(["token_policies", "token_period"].iter())
                .any(|k| body.get(*k).is_some_and(|v| !v.is_null()))
            {
                return Err(ApiError::bad_request(format!(
                    "missing {}",
                    keys.first().copied().unwrap_or(field)
                )));
            }
            let only: Map<String, Value> = body
                .into_iter()
                .filter(|(k, _)| {
                    keys.contains(&k.as_str()) || k == "token_policies" || k == "token_period"
                })
                .collect();
            apply_role(&Fields(&only), &mut r, false)?;
            write_role(gw, m, r).await?;
            Ok(no_content())
        }
        Operation::Delete => {
            let token = r.token.get_or_insert_with(Default::default);
            match field {
                "policies" => token.policies.clear(),
                "secret-id-num-uses" => r.secret_id_num_uses = 0,
                "secret-id-ttl" => r.secret_id_ttl = 0,
                "token-ttl" => token.ttl = 0,
                "token-max-ttl" => token.max_ttl = 0,
                "token-num-uses" => token.num_uses = 0,
                "bind-secret-id" => r.bind_secret_id = true,
                "secret-id-bound-cidrs" => r.secret_id_bound_cidrs.clear(),
                "token-bound-cidrs" => token.bound_cidrs.clear(),
                "period" => token.period = 0,
                _ => return Err(ApiError::unsupported_operation()),
            }
            write_role(gw, m, r).await?;
            Ok(no_content())
        }
        _ => Err(ApiError::unsupported_operation()),
    }
}

/// Secret-ID metadata: a JSON object encoded as a string (as Vault takes
/// it), or an object.
fn metadata(f: &Fields<'_>) -> Result<HashMap<String, String>, ApiError> {
    let bad =
        || ApiError::bad_request("failed to parse metadata: must be a JSON object of strings");
    let obj = match f.0.get("metadata") {
        None | Some(Value::Null) => return Ok(HashMap::new()),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(HashMap::new()),
        Some(Value::String(s)) => serde_json::from_str::<Value>(s).map_err(|_| bad())?,
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => return Err(bad()),
    };
    let Value::Object(m) = obj else {
        return Err(bad());
    };
    m.into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            _ => Err(bad()),
        })
        .collect()
}

async fn create_secret_id(
    gw: &Gateway,
    req: &ApiRequest,
    m: &MountEntry,
    name: &str,
    custom: bool,
) -> Result<Response, ApiError> {
    let body = json_object(&req.body)?;
    let f = Fields(&body);
    let secret_id = if custom {
        f.string("secret_id")?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| ApiError::bad_request("missing secret_id"))?
    } else {
        String::new()
    };
    let created = gw
        .methods()
        .create_secret_id(pb::CreateSecretIdRequest {
            mount: Some(mount_ref(m)),
            role: name.to_string(),
            secret_id,
            metadata: metadata(&f)?,
            cidr_list: f.string_list("cidr_list")?,
            token_bound_cidrs: f.string_list("token_bound_cidrs")?,
            num_uses: f.u32("num_uses")?.map(i64::from).unwrap_or(0),
            ttl: f.secs(&["ttl"])?.unwrap_or(0),
        })
        .await?
        .into_inner();
    Ok(Envelope::data(
        json!({
            "secret_id": created.secret_id,
            "secret_id_accessor": created.secret_id_accessor,
            "secret_id_ttl": created.secret_id_ttl,
            "secret_id_num_uses": created.secret_id_num_uses,
        }),
        MOUNT_TYPE,
    )
    .into_response())
}

fn secret_ref(
    req: &ApiRequest,
    m: &MountEntry,
    role: &str,
    key: &str,
) -> Result<pb::SecretIdRef, ApiError> {
    let body = json_object(&req.body)?;
    let value = Fields(&body)
        .string(key)?
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::bad_request(format!("missing {key}")))?;
    let mut r = pb::SecretIdRef {
        mount: Some(mount_ref(m)),
        role: role.to_string(),
        ..Default::default()
    };
    if key == "secret_id" {
        r.secret_id = value;
    } else {
        r.accessor = value;
    }
    Ok(r)
}

fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

async fn secret_action(
    gw: &Gateway,
    r: pb::SecretIdRef,
    action: &str,
) -> Result<Response, ApiError> {
    if action == "destroy" {
        gw.methods().destroy_secret_id(r).await?;
        return Ok(no_content());
    }
    let e = gw.methods().lookup_secret_id(r).await?.into_inner();
    if !e.found {
        return Ok(no_content());
    }
    Ok(Envelope::data(
        json!({
            "cidr_list": e.cidr_list,
            "creation_time": rfc3339(e.creation_time),
            "expiration_time": if e.expiration_time == 0 {
                "0001-01-01T00:00:00Z".to_string()
            } else {
                rfc3339(e.expiration_time)
            },
            "last_updated_time": rfc3339(e.last_updated_time),
            "metadata": e.metadata,
            "secret_id_accessor": e.secret_id_accessor,
            "secret_id_num_uses": e.secret_id_num_uses,
            "secret_id_ttl": e.secret_id_ttl,
            "token_bound_cidrs": e.token_bound_cidrs,
        }),
        MOUNT_TYPE,
    )
    .into_response())
}
