//! `auth/token/*`: the token auth method's HTTP shapes over the auth service.

use std::collections::HashMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bulwark_proto::auth::v1::{
    CreateTokenRequest, ListAccessorsRequest, LookupTokenRequest, RenewTokenRequest,
    RevokeTokenRequest, TokenEntry,
};
use serde_json::{json, Map, Value};

use crate::acl::Caller;
use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::request::{json_object, Fields, Operation};
use crate::{ApiRequest, Gateway};

const MOUNT_TYPE: &str = "token";

fn rfc3339(unix: i64) -> Value {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| Value::from(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)))
        .unwrap_or(Value::Null)
}

fn meta_value(meta: &HashMap<String, String>) -> Value {
    if meta.is_empty() {
        Value::Null
    } else {
        serde_json::to_value(meta).unwrap_or(Value::Null)
    }
}

/// The `data` of a token lookup, as Vault shapes it.
pub fn token_info(e: &TokenEntry) -> Value {
    let mut v = json!({
        "accessor": e.accessor,
        "creation_time": e.creation_time,
        "creation_ttl": e.creation_ttl,
        "display_name": e.display_name,
        "entity_id": "",
        "expire_time": if e.expire_time == 0 { Value::Null } else { rfc3339(e.expire_time) },
        "explicit_max_ttl": e.explicit_max_ttl,
        "id": e.id,
        "issue_time": rfc3339(e.issue_time),
        "meta": meta_value(&e.meta),
        "num_uses": e.num_uses,
        "orphan": e.orphan,
        "path": e.path,
        "policies": e.policies,
        "renewable": e.renewable,
        "ttl": e.ttl,
        "type": if e.r#type.is_empty() { "service" } else { e.r#type.as_str() },
    });
    if e.period > 0 {
        v["period"] = json!(e.period);
    }
    if e.last_renewal_time > 0 {
        v["last_renewal_time"] = json!(e.last_renewal_time);
        v["last_renewal"] = rfc3339(e.last_renewal_time);
    }
    v
}

/// The TTL just granted: from the issue (or last renewal) to expiry, so a
/// second boundary crossed between the grant and this answer does not show
/// as `599` for a `10m` token, as Vault never does.
fn granted_ttl(e: &TokenEntry) -> i64 {
    granted(e.expire_time, e.creation_time, e.last_renewal_time)
}

/// Seconds from the issue (or last renewal, when later) to expiry; 0 for
/// what never expires. Tokens and leases alike.
pub(crate) fn granted(expire_time: i64, issued: i64, renewed: i64) -> i64 {
    if expire_time == 0 {
        return 0;
    }
    (expire_time - issued.max(renewed)).max(0)
}

/// The `auth` block of a create, login or renew answer.
pub fn auth_block(client_token: &str, e: &TokenEntry) -> Value {
    json!({
        "client_token": client_token,
        "accessor": e.accessor,
        "policies": e.policies,
        "token_policies": e.policies,
        "metadata": meta_value(&e.meta),
        "lease_duration": granted_ttl(e),
        "renewable": e.renewable,
        "entity_id": "",
        "token_type": if e.r#type.is_empty() { "service" } else { e.r#type.as_str() },
        "orphan": e.orphan,
        "mfa_requirement": Value::Null,
        "num_uses": e.num_uses,
    })
}

fn meta_map(f: &Fields<'_>) -> Result<HashMap<String, String>, ApiError> {
    match f.0.get("meta") {
        None | Some(Value::Null) => Ok(HashMap::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(ApiError::bad_request("meta values must be strings")),
            })
            .collect(),
        Some(_) => Err(ApiError::bad_request("meta must be a map of strings")),
    }
}

fn auth_err(s: tonic::Status) -> ApiError {
    // A lookup of an unknown token is a 403 (`bad token`), of an unknown
    // accessor a 400, as in Vault.
    ApiError::from(s)
}

async fn create(
    gw: &Gateway,
    req: &ApiRequest,
    caller: &Caller,
    capabilities: &[String],
    orphan_path: bool,
) -> Result<Response, ApiError> {
    let body = json_object(&req.body)?;
    let f = Fields(&body);
    if f.string("role_name")?.is_some_and(|r| !r.is_empty()) {
        return Err(ApiError::bad_request("token roles are not supported yet"));
    }
    let num_uses = match f.0.get("num_uses") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| ApiError::bad_request("num_uses must be an integer"))?,
    };
    let mut ttl = f.duration_secs("ttl")?.unwrap_or(0) as i64;
    if ttl == 0 {
        ttl = f.duration_secs("lease")?.unwrap_or(0) as i64;
    }
    let sudo = caller.is_root() || capabilities.iter().any(|c| c == "sudo" || c == "root");
    let request = CreateTokenRequest {
        parent_token: caller.token.clone(),
        parent_has_sudo: sudo || orphan_path,
        policies: f.string_list("policies")?,
        meta: meta_map(&f)?,
        no_parent: orphan_path || f.bool("no_parent")?.unwrap_or(false),
        no_default_policy: f.bool("no_default_policy")?.unwrap_or(false),
        renewable: f.bool("renewable")?,
        ttl,
        explicit_max_ttl: f.duration_secs("explicit_max_ttl")?.unwrap_or(0) as i64,
        period: f.duration_secs("period")?.unwrap_or(0) as i64,
        display_name: f.string("display_name")?.unwrap_or_default(),
        num_uses,
        id: f.string("id")?.unwrap_or_default(),
        path: if orphan_path {
            "auth/token/create-orphan"
        } else {
            "auth/token/create"
        }
        .to_string(),
        r#type: f.string("type")?.unwrap_or_default(),
    };
    if orphan_path && !sudo && !caller.is_root() {
        // create-orphan needs no sudo, but the subset rule still holds.
        let requested: Vec<String> = request
            .policies
            .iter()
            .map(|p| p.trim().to_lowercase())
            .collect();
        if !requested
            .iter()
            .all(|p| p == "default" || caller.entry.policies.contains(p))
        {
            return Err(ApiError::bad_request(
                "child policies must be subset of parent",
            ));
        }
        if request.period > 0 || !request.id.is_empty() {
            return Err(ApiError::bad_request(
                "root or sudo privileges required to create periodic token or set an id",
            ));
        }
    }
    let out = gw
        .auth()
        .create_token(request)
        .await
        .map_err(auth_err)?
        .into_inner();
    let entry = out.entry.unwrap_or_default();
    Ok(Envelope::auth(auth_block(&out.token, &entry), MOUNT_TYPE)
        .with_warnings(out.warnings)
        .into_response())
}

fn body_field(req: &ApiRequest, key: &str) -> Result<(String, Map<String, Value>), ApiError> {
    let body = json_object(&req.body)?;
    let v = Fields(&body).string(key)?.unwrap_or_default();
    if v.is_empty() {
        return Err(ApiError::bad_request(format!("missing {key}")));
    }
    Ok((v, body))
}

async fn lookup(gw: &Gateway, token: String, accessor: String) -> Result<Response, ApiError> {
    let e = gw
        .auth()
        .lookup_token(LookupTokenRequest { token, accessor })
        .await
        .map_err(auth_err)?
        .into_inner();
    Ok(Envelope::data(token_info(&e), MOUNT_TYPE).into_response())
}

async fn renew(
    gw: &Gateway,
    token: String,
    accessor: String,
    body: &Map<String, Value>,
) -> Result<Response, ApiError> {
    let increment = Fields(body).duration_secs("increment")?.unwrap_or(0) as i64;
    let show = token.clone();
    let out = gw
        .auth()
        .renew_token(RenewTokenRequest {
            token,
            accessor,
            increment,
        })
        .await
        .map_err(auth_err)?
        .into_inner();
    let entry = out.entry.unwrap_or_default();
    Ok(Envelope::auth(auth_block(&show, &entry), MOUNT_TYPE)
        .with_warnings(out.warnings)
        .into_response())
}

async fn revoke(
    gw: &Gateway,
    token: String,
    accessor: String,
    orphan: bool,
) -> Result<Response, ApiError> {
    let revoked = gw
        .auth()
        .revoke_token(RevokeTokenRequest {
            token,
            accessor,
            orphan,
        })
        .await
        .map_err(auth_err)?
        .into_inner()
        .accessors;
    // Refused on the very next request, whatever the event stream's timing.
    gw.acl().forget_accessors(&revoked);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Routes `auth/token/<rest>` (already authorized).
pub async fn handle(
    gw: &Gateway,
    req: ApiRequest,
    op: Operation,
    rest: &str,
    caller: &Caller,
    capabilities: &[String],
) -> Result<Response, ApiError> {
    let none = String::new;
    match (rest, op) {
        ("create", Operation::Write) => create(gw, &req, caller, capabilities, false).await,
        ("create-orphan", Operation::Write) => create(gw, &req, caller, capabilities, true).await,
        ("lookup-self", Operation::Read | Operation::Write) if caller.entry.num_uses != 0 => {
            // This request spent one of a limited token's uses, and the last
            // one revokes the token at once: answer from the entry this
            // request was authenticated with (never cached), so that every
            // granted use can look itself up, as in Vault.
            let mut e = TokenEntry::clone(&caller.entry);
            e.num_uses -= 1;
            e.ttl = if e.expire_time == 0 {
                0
            } else {
                (e.expire_time - chrono::Utc::now().timestamp()).max(0)
            };
            Ok(Envelope::data(token_info(&e), MOUNT_TYPE).into_response())
        }
        ("lookup-self", Operation::Read | Operation::Write) => {
            lookup(gw, caller.token.clone(), none()).await
        }
        ("lookup", Operation::Write) => {
            let (t, _) = body_field(&req, "token")?;
            lookup(gw, t, none()).await
        }
        ("lookup-accessor", Operation::Write) => {
            let (a, _) = body_field(&req, "accessor")?;
            lookup(gw, none(), a).await
        }
        ("renew-self", Operation::Write) => {
            let body = json_object(&req.body)?;
            renew(gw, caller.token.clone(), none(), &body).await
        }
        ("renew", Operation::Write) => {
            let (t, body) = body_field(&req, "token")?;
            renew(gw, t, none(), &body).await
        }
        ("renew-accessor", Operation::Write) => {
            let (a, body) = body_field(&req, "accessor")?;
            let resp = renew(gw, none(), a, &body).await?;
            Ok(resp)
        }
        ("revoke-self", Operation::Write) => revoke(gw, caller.token.clone(), none(), false).await,
        ("revoke", Operation::Write) => {
            let (t, _) = body_field(&req, "token")?;
            revoke(gw, t, none(), false).await
        }
        ("revoke-accessor", Operation::Write) => {
            let (a, _) = body_field(&req, "accessor")?;
            revoke(gw, none(), a, false).await
        }
        ("revoke-orphan", Operation::Write) => {
            let (t, _) = body_field(&req, "token")?;
            revoke(gw, t, none(), true).await
        }
        ("accessors", Operation::List) => {
            let keys = gw
                .auth()
                .list_accessors(ListAccessorsRequest {})
                .await?
                .into_inner()
                .accessors;
            if keys.is_empty() {
                return Err(ApiError::not_found());
            }
            Ok(Envelope::data(json!({ "keys": keys }), MOUNT_TYPE).into_response())
        }
        (
            "create" | "create-orphan" | "lookup-self" | "lookup" | "lookup-accessor"
            | "renew-self" | "renew" | "renew-accessor" | "revoke-self" | "revoke"
            | "revoke-accessor" | "revoke-orphan" | "accessors",
            _,
        ) => Err(ApiError::unsupported_operation()),
        _ => Err(ApiError::new(StatusCode::NOT_FOUND, "unsupported path")),
    }
}
