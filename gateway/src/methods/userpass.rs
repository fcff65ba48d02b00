//! `auth/<userpass mount>/`: `users[/:name[/password|/policies]]`, `login/:name`.

use axum::response::{IntoResponse, Response};
use bulwark_proto::auth::v1 as pb;
use serde_json::{Map, Value};

use super::{
    apply_token_params, found, keys_response, login_context, login_response, mount_ref, no_content,
    token_params_json, unsupported_path,
};
use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::mounts::MountEntry;
use crate::request::{json_object, Fields, Operation};
use crate::{ApiRequest, Gateway};

const MOUNT_TYPE: &str = "userpass";

pub(super) async fn handle(
    gw: &Gateway,
    req: ApiRequest,
    op: Operation,
    m: &MountEntry,
    rest: &str,
) -> Result<Response, ApiError> {
    let segs: Vec<&str> = rest.split('/').collect();
    match (segs.as_slice(), op) {
        (["users"], Operation::List) => {
            let names = gw
                .methods()
                .list_users(pb::MountRequest {
                    mount: Some(mount_ref(m)),
                })
                .await?
                .into_inner()
                .names;
            keys_response(names, MOUNT_TYPE)
        }
        (["users", name], op) => user(gw, &req, op, m, name).await,
        (["users", name, "password"], Operation::Write) => {
            let body = json_object(&req.body)?;
            let password = Fields(&body)
                .string("password")?
                .filter(|p| !p.is_empty())
                .ok_or_else(|| ApiError::bad_request("missing password"))?;
            let user = existing(gw, m, name).await?;
            write(gw, m, user, password, String::new()).await
        }
        (["users", name, "policies"], Operation::Write) => {
            let body = json_object(&req.body)?;
            let f = Fields(&body);
            let mut user = existing(gw, m, name).await?;
            let token = user.token.get_or_insert_with(Default::default);
            if let Some(p) = f.list_any(&["token_policies", "policies"])? {
                token.policies = p;
            }
            write(gw, m, user, String::new(), String::new()).await
        }
        (["login", name], Operation::Write) => {
            let body = json_object(&req.body)?;
            let password = Fields(&body).string("password")?.unwrap_or_default();
            if password.is_empty() {
                return Err(ApiError::bad_request("missing password"));
            }
            let created = gw
                .methods()
                .userpass_login(pb::UserpassLoginRequest {
                    context: Some(login_context(&req, m)),
                    username: name.to_string(),
                    password,
                })
                .await?
                .into_inner();
            Ok(login_response(created, MOUNT_TYPE))
        }
        (["users" | "login", ..], _) => Err(ApiError::unsupported_operation()),
        _ => Err(unsupported_path()),
    }
}

fn item(m: &MountEntry, name: &str) -> pb::ItemRequest {
    pb::ItemRequest {
        mount: Some(mount_ref(m)),
        name: name.to_string(),
    }
}

async fn existing(gw: &Gateway, m: &MountEntry, name: &str) -> Result<pb::User, ApiError> {
    found(gw.methods().read_user(item(m, name)).await)?
        .ok_or_else(|| ApiError::bad_request("username does not exist"))
}

async fn write(
    gw: &Gateway,
    m: &MountEntry,
    user: pb::User,
    password: String,
    password_hash: String,
) -> Result<Response, ApiError> {
    gw.methods()
        .write_user(pb::WriteUserRequest {
            mount: Some(mount_ref(m)),
            user: Some(user),
            password,
            password_hash,
        })
        .await?;
    Ok(no_content())
}

async fn user(
    gw: &Gateway,
    req: &ApiRequest,
    op: Operation,
    m: &MountEntry,
    name: &str,
) -> Result<Response, ApiError> {
    match op {
        Operation::Read => {
            let user = found(gw.methods().read_user(item(m, name)).await)?
                .ok_or_else(ApiError::not_found)?;
            let mut data = Map::new();
            token_params_json(&user.token.unwrap_or_default(), &mut data);
            Ok(Envelope::data(Value::Object(data), MOUNT_TYPE).into_response())
        }
        Operation::Write => {
            let body = json_object(&req.body)?;
            let f = Fields(&body);
            let mut user =
                found(gw.methods().read_user(item(m, name)).await)?.unwrap_or(pb::User {
                    name: name.to_string(),
                    token: None,
                });
            apply_token_params(&f, user.token.get_or_insert_with(Default::default))?;
            let password = f.string("password")?.unwrap_or_default();
            let hash = f.string("password_hash")?.unwrap_or_default();
            write(gw, m, user, password, hash).await
        }
        Operation::Delete => {
            gw.methods().delete_user(item(m, name)).await?;
            Ok(no_content())
        }
        _ => Err(ApiError::unsupported_operation()),
    }
}
