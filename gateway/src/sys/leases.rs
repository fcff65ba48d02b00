//! `sys/leases/*` (and the legacy `sys/renew`, `sys/revoke*`): the lease
//! registry of the auth service over HTTP.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bulwark_proto::auth::v1::{
    LeaseEmpty, LeaseInfo, LeaseRequest, ListLeasesRequest, RenewLeaseRequest, RevokeLeaseRequest,
    RevokePrefixRequest,
};
use serde_json::{json, Value};

use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::reply::{keys_response, no_content};
use crate::request::{json_object, Fields, Operation};
use crate::{ApiRequest, Gateway};

fn rfc3339(unix: i64) -> Value {
    chrono::DateTime::from_timestamp(unix, 0)
        .filter(|_| unix > 0)
        .map(|t| Value::from(t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)))
        .unwrap_or(Value::Null)
}

/// The `lease_duration` of a grant or renewal: the TTL just granted (from the
/// issue or last renewal to expiry), not the seconds left a moment later.
pub fn granted_secs(l: &LeaseInfo) -> u64 {
    let secs = crate::token::granted(l.expire_time, l.issue_time, l.last_renewal);
    u64::try_from(secs).unwrap_or(0)
}

fn info_json(l: &LeaseInfo) -> Value {
    json!({
        "id": l.id,
        "issue_time": rfc3339(l.issue_time),
        "expire_time": rfc3339(l.expire_time),
        "last_renewal": rfc3339(l.last_renewal),
        "renewable": l.renewable,
        "ttl": l.ttl,
    })
}

/// The lease id: the body's `lease_id` wins over the one in the path.
fn lease_id(f: &Fields<'_>, in_path: &str) -> Result<String, ApiError> {
    f.string("lease_id")?
        .filter(|l| !l.is_empty())
        .or_else(|| (!in_path.is_empty()).then(|| in_path.to_string()))
        .ok_or_else(|| ApiError::bad_request("lease_id must be specified"))
}

/// Routes `sys/leases/<rest>`; legacy routes arrive mapped onto the same
/// names (`renew`, `revoke`, `revoke-prefix`, `revoke-force`).
pub async fn handle(
    gw: &Gateway,
    req: ApiRequest,
    op: Operation,
    rest: &str,
) -> Result<Response, ApiError> {
    let (action, arg) = rest.split_once('/').unwrap_or((rest, ""));
    let body = json_object(&req.body)?;
    let f = Fields(&body);
    let mut leases = gw.leases();
    match (action, op) {
        ("lookup", Operation::List) => {
            let prefix = if arg.is_empty() || arg.ends_with('/') {
                arg.to_string()
            } else {
                format!("{arg}/")
            };
            let keys = leases
                .list_leases(ListLeasesRequest { prefix })
                .await?
                .into_inner()
                .keys;
            keys_response(keys, "system")
        }
        ("lookup", Operation::Write) => {
            let l = leases
                .lookup_lease(LeaseRequest {
                    lease_id: lease_id(&f, "")?,
                })
                .await?
                .into_inner();
            Ok(Envelope::data(info_json(&l), "system").into_response())
        }
        ("renew", Operation::Write) => {
            let id = lease_id(&f, arg)?;
            let increment = f.secs(&["increment"])?.unwrap_or(0);
            let l = leases
                .renew_lease(RenewLeaseRequest {
                    lease_id: id,
                    increment,
                })
                .await?
                .into_inner();
            let mut env = Envelope::new("system");
            env.lease_duration = granted_secs(&l);
            env.lease_id = l.id;
            env.renewable = l.renewable;
            Ok(env.into_response())
        }
        ("revoke", Operation::Write) => {
            leases
                .revoke_lease(RevokeLeaseRequest {
                    lease_id: lease_id(&f, arg)?,
                    sync: f.bool("sync")?.unwrap_or(true),
                })
                .await?;
            Ok(no_content())
        }
        ("revoke-prefix" | "revoke-force", Operation::Write) => {
            if arg.is_empty() {
                return Err(ApiError::bad_request("prefix must be specified"));
            }
            leases
                .revoke_prefix(RevokePrefixRequest {
                    prefix: arg.to_string(),
                    force: action == "revoke-force",
                    sync: f.bool("sync")?.unwrap_or(true),
                })
                .await?;
            Ok(no_content())
        }
        ("tidy", Operation::Write) => {
            leases.tidy_leases(LeaseEmpty {}).await?;
            let env = Envelope::new("system").with_warnings(vec![
                "Tidy operation successfully started. Any information from the operation will be printed to Vault's server logs.".into(),
            ]);
            Ok((StatusCode::ACCEPTED, axum::Json(env)).into_response())
        }
        ("lookup" | "renew" | "revoke" | "revoke-prefix" | "revoke-force" | "tidy", _) => {
            Err(ApiError::unsupported_operation())
        }
        _ => Err(ApiError::no_route(&format!("sys/leases/{rest}"))),
    }
}
