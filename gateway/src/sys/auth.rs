//! `sys/auth`, `sys/auth/:path[/tune]`: the auth method table over HTTP.
//! Methods are served under `auth/<path>` by the auth service
//! ([`crate::methods`]); `token/` is built in.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::mounts::{apply_config, config_object, table_json, tune_json};
use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::methods;
use crate::mounts::{MountConfig, MountEntry};
use crate::request::{json_object, Fields, Operation};
use crate::{ApiRequest, Gateway};

/// Auth method types this server can enable.
const KNOWN_TYPES: &[&str] = &["userpass", "approle", "cert"];

fn apply_token_type(cfg: &mut MountConfig, c: &Map<String, Value>) -> Result<(), ApiError> {
    if let Some(t) = Fields(c).string("token_type")? {
        match t.as_str() {
            "default-service" | "default-batch" | "service" | "batch" => cfg.token_type = t,
            "default" | "" => cfg.token_type = "default-service".into(),
            other => {
                return Err(ApiError::bad_request(format!(
                    "invalid value for \"token_type\": {other:?}"
                )))
            }
        }
    }
    Ok(())
}

/// `GET sys/auth`.
pub async fn list(gw: &Gateway, op: Operation) -> Result<Response, ApiError> {
    if op != Operation::Read {
        return Err(ApiError::unsupported_operation());
    }
    let entries = gw.auth_mounts().all().await?;
    Ok(Envelope::data(table_json(&entries), "system").with_top_level_data())
}

async fn enable(gw: &Gateway, req: &ApiRequest, path: &str) -> Result<Response, ApiError> {
    let body = json_object(&req.body)?;
    let f = Fields(&body);
    let kind = f
        .string("type")?
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::bad_request("backend type must be specified as a string"))?;
    if kind == "token" {
        return Err(ApiError::bad_request(
            "token credential backend cannot be instantiated",
        ));
    }
    if !KNOWN_TYPES.contains(&kind.as_str()) {
        return Err(ApiError::bad_request(format!(
            "plugin not found in the catalog: {kind}"
        )));
    }
    let mut config = MountConfig {
        token_type: "default-service".into(),
        ..MountConfig::default()
    };
    let c = config_object(&body)?;
    apply_config(&mut config, &c)?;
    apply_token_type(&mut config, &c)?;
    let entry = MountEntry {
        path: path.to_string(),
        kind,
        description: f.string("description")?.unwrap_or_default(),
        accessor: String::new(),
        uuid: String::new(),
        config,
        options: None,
        local: f.bool("local")?.unwrap_or(false),
        seal_wrap: f.bool("seal_wrap")?.unwrap_or(false),
    };
    gw.auth_mounts().enable(entry).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Disabling a method deletes its users/roles and revokes every token it
/// issued (the gateway drops them from its cache before answering).
async fn disable(gw: &Gateway, path: &str) -> Result<Response, ApiError> {
    if let Some(m) = gw.auth_mounts().disable(path).await? {
        let revoked = gw
            .methods()
            .drop_mount(bulwark_proto::auth::v1::DropMountRequest {
                mount: Some(methods::mount_ref(&m)),
            })
            .await?
            .into_inner();
        gw.acl().forget_accessors(&revoked.accessors);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn tune(
    gw: &Gateway,
    req: &ApiRequest,
    op: Operation,
    path: &str,
) -> Result<Response, ApiError> {
    match op {
        Operation::Read => {
            let m = gw.auth_mounts().get(path).await?.ok_or_else(|| {
                ApiError::bad_request(format!("cannot fetch sysview for path {path:?}"))
            })?;
            let mut v = tune_json(&m);
            v["token_type"] = Value::from(if m.config.token_type.is_empty() {
                "default-service"
            } else {
                m.config.token_type.as_str()
            });
            Ok(Envelope::data(v, "system").with_top_level_data())
        }
        Operation::Write => {
            let body = json_object(&req.body)?;
            let description = Fields(&body).string("description")?;
            gw.auth_mounts()
                .modify(path, |m| {
                    apply_config(&mut m.config, &body)?;
                    apply_token_type(&mut m.config, &body)?;
                    if let Some(d) = &description {
                        m.description = d.clone();
                    }
                    Ok(())
                })
                .await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        _ => Err(ApiError::unsupported_operation()),
    }
}

/// `sys/auth/<path>` and `sys/auth/<path>/tune`.
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
            let m = gw.auth_mounts().get(rest).await?.ok_or_else(|| {
                ApiError::bad_request(format!("No auth engine at {}/", rest.trim_matches('/')))
            })?;
            Ok(Envelope::data(m.to_json(), "system").with_top_level_data())
        }
        _ => Err(ApiError::unsupported_operation()),
    }
}
