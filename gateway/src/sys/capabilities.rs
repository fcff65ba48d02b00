//! `sys/capabilities`, `sys/capabilities-self`, `sys/capabilities-accessor`:
//! what a token may do on some paths, from the same evaluation that
//! authorizes requests.

use axum::response::Response;
use bulwark_proto::auth::v1::LookupTokenRequest;
use bulwark_proto::policy::v1::CapabilitiesRequest;
use serde_json::{Map, Value};

use crate::acl::Caller;
use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::request::{json_object, Fields};
use crate::{ApiRequest, Gateway};

#[derive(Clone, Copy)]
pub enum Whose {
    /// The calling token.
    Own,
    /// `token` in the body.
    Token,
    /// `accessor` in the body.
    Accessor,
}

pub async fn handle(
    gw: &Gateway,
    req: ApiRequest,
    caller: &Caller,
    whose: Whose,
) -> Result<Response, ApiError> {
    let body = json_object(&req.body)?;
    let f = Fields(&body);
    let mut paths = f.string_list("paths")?;
    if paths.is_empty() {
        if let Some(p) = f.string("path")? {
            paths.push(p);
        }
    }
    if paths.is_empty() {
        return Err(ApiError::bad_request("missing paths"));
    }
    let paths: Vec<String> = paths
        .into_iter()
        .map(|p| p.trim_start_matches('/').to_string())
        .collect();
    let policies = match whose {
        Whose::Own => caller.entry.policies.clone(),
        Whose::Token | Whose::Accessor => {
            let (key, lookup) = match whose {
                Whose::Token => (
                    "token",
                    LookupTokenRequest {
                        token: f.string("token")?.unwrap_or_default(),
                        accessor: String::new(),
                    },
                ),
                _ => (
                    "accessor",
                    LookupTokenRequest {
                        token: String::new(),
                        accessor: f.string("accessor")?.unwrap_or_default(),
                    },
                ),
            };
            if lookup.token.is_empty() && lookup.accessor.is_empty() {
                return Err(ApiError::bad_request(format!("missing {key}")));
            }
            gw.auth()
                .lookup_token(lookup)
                .await
                .map_err(|s| match s.code() {
                    tonic::Code::PermissionDenied
                    | tonic::Code::InvalidArgument
                    | tonic::Code::NotFound => ApiError::bad_request(format!("invalid {key}")),
                    _ => s.into(),
                })?
                .into_inner()
                .policies
        }
    };
    let resp = gw
        .policy()
        .capabilities(CapabilitiesRequest {
            policies,
            paths: paths.clone(),
        })
        .await?
        .into_inner();
    let mut data = Map::new();
    for pc in &resp.paths {
        data.insert(pc.path.clone(), Value::from(pc.capabilities.clone()));
    }
    if resp.paths.len() == 1 {
        data.insert(
            "capabilities".into(),
            Value::from(resp.paths[0].capabilities.clone()),
        );
    }
    Ok(Envelope::data(Value::Object(data), "system").with_top_level_data())
}
