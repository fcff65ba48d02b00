//! `auth/<cert mount>/`: `certs[/:name]` (trusted CAs per role) and `login`
//! with the TLS client certificate presented to the HTTPS listener.

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

const MOUNT_TYPE: &str = "cert";

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
        (["certs"], Operation::List) => {
            let names = gw
                .methods()
                .list_cert_roles(pb::MountRequest {
                    mount: Some(mount_ref(m)),
                })
                .await?
                .into_inner()
                .names;
            keys_response(names, MOUNT_TYPE)
        }
        (["certs", name], op) => role(gw, &req, op, m, name).await,
        (["login"], Operation::Write) => {
            let body = json_object(&req.body)?;
            let name = Fields(&body).string("name")?.unwrap_or_default();
            let created = gw
                .methods()
                .cert_login(pb::CertLoginRequest {
                    context: Some(login_context(&req, m)),
                    chain: req.client_chain.0.clone(),
                    name,
                })
                .await?
                .into_inner();
            Ok(login_response(created, MOUNT_TYPE))
        }
        (["certs" | "login", ..], _) => Err(ApiError::unsupported_operation()),
        _ => Err(unsupported_path()),
    }
}

fn role_json(r: &pb::CertRole) -> Value {
    let mut data = Map::new();
    for (k, v) in [
        ("certificate", json!(r.certificate)),
        ("display_name", json!(r.display_name)),
        ("allowed_common_names", json!(r.allowed_common_names)),
        ("allowed_dns_sans", json!(r.allowed_dns_sans)),
        ("allowed_email_sans", json!(r.allowed_email_sans)),
        ("allowed_uri_sans", json!(r.allowed_uri_sans)),
        (
            "allowed_organizational_units",
            json!(r.allowed_organizational_units),
        ),
    ] {
        data.insert(k.into(), v);
    }
    token_params_json(&r.token.clone().unwrap_or_default(), &mut data);
    Value::Object(data)
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
            let r = found(gw.methods().read_cert_role(item(m, name)).await)?
                .ok_or_else(ApiError::not_found)?;
            Ok(Envelope::data(role_json(&r), MOUNT_TYPE).into_response())
        }
        Operation::Write => {
            let body = json_object(&req.body)?;
            let f = Fields(&body);
            let mut r =
                found(gw.methods().read_cert_role(item(m, name)).await)?.unwrap_or(pb::CertRole {
                    name: name.to_string(),
                    ..Default::default()
                });
            if let Some(c) = f.string("certificate")? {
                r.certificate = c;
            }
            if r.certificate.trim().is_empty() {
                return Err(ApiError::bad_request("missing certificate"));
            }
            if let Some(d) = f.string("display_name")? {
                r.display_name = d;
            }
            for (key, slot) in [
                ("allowed_common_names", &mut r.allowed_common_names),
                ("allowed_dns_sans", &mut r.allowed_dns_sans),
                ("allowed_email_sans", &mut r.allowed_email_sans),
                ("allowed_uri_sans", &mut r.allowed_uri_sans),
                (
                    "allowed_organizational_units",
                    &mut r.allowed_organizational_units,
                ),
            ] {
                if let Some(v) = f.list_any(&[key])? {
                    *slot = v;
                }
            }
            apply_token_params(&f, r.token.get_or_insert_with(Default::default))?;
            gw.methods()
                .write_cert_role(pb::WriteCertRoleRequest {
                    mount: Some(mount_ref(m)),
                    role: Some(r),
                })
                .await?;
            Ok(no_content())
        }
        Operation::Delete => {
            gw.methods().delete_cert_role(item(m, name)).await?;
            Ok(no_content())
        }
        _ => Err(ApiError::unsupported_operation()),
    }
}
