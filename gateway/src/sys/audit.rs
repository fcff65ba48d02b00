//! `sys/audit`, `sys/audit/:path`, `sys/audit-hash/:path`: audit devices,
//! answered by the audit service.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bulwark_proto::audit::v1::{DisableDeviceRequest, Empty, EnableDeviceRequest, HashRequest};
use serde_json::{json, Map, Value};

use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::request::{json_object, Fields, Operation};
use crate::{ApiRequest, Gateway};

fn device_path(p: &str) -> Result<String, ApiError> {
    let p = p.trim().trim_matches('/');
    if p.is_empty() || p.split('/').any(|s| s.is_empty() || s == "..") {
        return Err(ApiError::bad_request("invalid audit device path"));
    }
    Ok(format!("{p}/"))
}

/// `GET sys/audit`.
pub async fn list(gw: &Gateway, op: Operation) -> Result<Response, ApiError> {
    if op != Operation::Read {
        return Err(ApiError::unsupported_operation());
    }
    let devices = gw
        .audit()
        .list_devices(Empty {})
        .await?
        .into_inner()
        .devices;
    let mut data = Map::new();
    for d in devices {
        data.insert(
            d.path.clone(),
            json!({
                "type": d.r#type,
                "description": d.description,
                "options": d.options,
                "local": d.local,
                "path": d.path,
            }),
        );
    }
    Ok(Envelope::data(Value::Object(data), "system").with_top_level_data())
}

/// `PUT/DELETE sys/audit/:path`.
pub async fn one(
    gw: &Gateway,
    req: ApiRequest,
    op: Operation,
    path: &str,
) -> Result<Response, ApiError> {
    let path = device_path(path)?;
    match op {
        Operation::Write => {
            let body = json_object(&req.body)?;
            let f = Fields(&body);
            let options = f
                .string_map("options")?
                .unwrap_or_default()
                .into_iter()
                .collect();
            gw.audit()
                .enable_device(EnableDeviceRequest {
                    path,
                    r#type: f.string("type")?.unwrap_or_default(),
                    description: f.string("description")?.unwrap_or_default(),
                    options,
                    local: f.bool("local")?.unwrap_or(false),
                })
                .await?;
            gw.audit_need().device_enabled();
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Operation::Delete => {
            gw.audit()
                .disable_device(DisableDeviceRequest { path })
                .await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        _ => Err(ApiError::unsupported_operation()),
    }
}

/// `PUT sys/audit-hash/:path` `{input}`.
pub async fn hash(
    gw: &Gateway,
    req: ApiRequest,
    op: Operation,
    path: &str,
) -> Result<Response, ApiError> {
    if op != Operation::Write {
        return Err(ApiError::unsupported_operation());
    }
    let body = json_object(&req.body)?;
    let input = Fields(&body)
        .string("input")?
        .ok_or_else(|| ApiError::bad_request("the \"input\" parameter is required"))?;
    let hash = gw
        .audit()
        .hash(HashRequest {
            path: device_path(path)?,
            input,
        })
        .await?
        .into_inner()
        .hash;
    Ok(Envelope::data(json!({ "hash": hash }), "system").with_top_level_data())
}
