//! `sys/policy`, `sys/policies/acl`: policy CRUD, answered by the policy service.
//!
//! `sys/policy/:name` returns the text as `rules` (and copies `data` to the top
//! level, as hvac reads it); `sys/policies/acl/:name` returns it as `policy`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bulwark_proto::policy::v1::{
    DeletePolicyRequest, GetPolicyRequest, ListPoliciesRequest, PutPolicyRequest,
};
use serde_json::json;

use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::request::{json_object, Fields, Operation};
use crate::{ApiRequest, Gateway};

/// Largest policy text accepted (checked before it crosses gRPC).
pub const MAX_POLICY_BYTES: usize = 1024 * 1024;

/// Which of the two path families a request came through.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `sys/policy[/:name]`
    Legacy,
    /// `sys/policies/acl[/:name]`
    Acl,
}

pub async fn list(gw: &Gateway, family: Family, op: Operation) -> Result<Response, ApiError> {
    match (family, op) {
        (Family::Legacy, Operation::Read | Operation::List) | (Family::Acl, Operation::List) => {}
        _ => return Err(ApiError::unsupported_operation()),
    }
    let names = gw
        .policy()
        .list_policies(ListPoliciesRequest {})
        .await?
        .into_inner()
        .names;
    Ok(match family {
        Family::Legacy => Envelope::data(json!({ "keys": names, "policies": names }), "system")
            .with_top_level_data(),
        Family::Acl => Envelope::data(json!({ "keys": names }), "system").into_response(),
    })
}

/// The policy text of a write: `policy` (or legacy `rules`), base64 accepted.
fn policy_text(req: &ApiRequest, family: Family) -> Result<String, ApiError> {
    let body = json_object(&req.body)?;
    let f = Fields(&body);
    let mut text = f.string("policy")?;
    if text.is_none() && family == Family::Legacy {
        text = f.string("rules")?;
    }
    let text = text.unwrap_or_default();
    if text.trim().is_empty() {
        return Err(ApiError::bad_request(
            "'policy' parameter not supplied or empty",
        ));
    }
    if text.len() > MAX_POLICY_BYTES {
        return Err(ApiError::bad_request(format!(
            "policy is larger than the limit of {MAX_POLICY_BYTES} bytes"
        )));
    }
    // As in Vault: a value that decodes as base64 is the base64 of the policy.
    if let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(text.trim()) {
        if let Ok(s) = String::from_utf8(decoded) {
            return Ok(s);
        }
    }
    Ok(text)
}

pub async fn one(
    gw: &Gateway,
    req: ApiRequest,
    family: Family,
    op: Operation,
    name: &str,
) -> Result<Response, ApiError> {
    let name = name.trim().to_lowercase();
    match op {
        Operation::Read => {
            let doc = gw
                .policy()
                .get_policy(GetPolicyRequest { name })
                .await
                .map_err(|s| {
                    if s.code() == tonic::Code::NotFound {
                        ApiError::not_found()
                    } else {
                        s.into()
                    }
                })?
                .into_inner();
            Ok(match family {
                Family::Legacy => {
                    Envelope::data(json!({ "name": doc.name, "rules": doc.policy }), "system")
                        .with_top_level_data()
                }
                Family::Acl => {
                    Envelope::data(json!({ "name": doc.name, "policy": doc.policy }), "system")
                        .into_response()
                }
            })
        }
        Operation::Write => {
            let policy = policy_text(&req, family)?;
            gw.policy()
                .put_policy(PutPolicyRequest { name, policy })
                .await?;
            // Applies to the very next request, whatever the event stream's timing.
            gw.acl().clear_decisions();
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Operation::Delete => {
            gw.policy()
                .delete_policy(DeletePolicyRequest { name })
                .await?;
            gw.acl().clear_decisions();
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        Operation::List => list(gw, family, op).await,
        _ => Err(ApiError::unsupported_operation()),
    }
}
