//! Auth methods under `auth/<mount>/`: Vault's HTTP shapes for userpass,
//! AppRole and cert, over the auth service's `Methods` RPCs (credentials are
//! checked and tokens minted there). Logins are the only unauthenticated
//! paths of a method ([`is_login`]).

mod approle;
mod cert;
mod userpass;

use axum::response::{IntoResponse, Response};
use bulwark_proto::auth::v1 as pb;
use bulwark_proto::policy::v1::Operation as PolicyOp;
use serde_json::{json, Map, Value};

use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::mounts::MountEntry;
pub(crate) use crate::reply::{found, keys_response, no_content, unsupported_path};
use crate::request::{Fields, Operation};
use crate::{ApiRequest, Gateway};

/// The mount as the auth service needs to know it.
pub(crate) fn mount_ref(m: &MountEntry) -> pb::Mount {
    pb::Mount {
        uuid: m.uuid.clone(),
        path: m.path.clone(),
        default_ttl: m.config.default_lease_ttl as i64,
        max_ttl: m.config.max_lease_ttl as i64,
        token_type: m.config.token_type.clone(),
    }
}

/// Whether `rest` (the path below the mount) is the method's login endpoint,
/// which needs no token.
pub(crate) fn is_login(kind: &str, rest: &str) -> bool {
    let rest = rest.trim_end_matches('/');
    match kind {
        "userpass" => rest.starts_with("login/") && rest.len() > "login/".len(),
        "approle" | "cert" => rest == "login",
        _ => false,
    }
}

/// Serves a request under an auth method mount.
pub(crate) async fn handle(
    gw: &Gateway,
    req: ApiRequest,
    op: Operation,
    m: &MountEntry,
    rest: &str,
) -> Result<Response, ApiError> {
    let rest = rest.trim_end_matches('/');
    match m.kind.as_str() {
        "userpass" => userpass::handle(gw, req, op, m, rest).await,
        "approle" => approle::handle(gw, req, op, m, rest).await,
        "cert" => cert::handle(gw, req, op, m, rest).await,
        _ => Err(unsupported_path()),
    }
}

/// Vault's create-vs-update existence check for the items of a method
/// (`users/<name>`, `role/<name>`, `certs/<name>`).
pub(crate) async fn write_op(
    gw: &Gateway,
    m: &MountEntry,
    rest: &str,
) -> Result<PolicyOp, ApiError> {
    let rest = rest.trim_end_matches('/');
    let item = |prefix: &str| {
        rest.strip_prefix(prefix)
            .filter(|n| !n.is_empty() && !n.contains('/'))
            .map(|n| pb::ItemRequest {
                mount: Some(mount_ref(m)),
                name: n.to_string(),
            })
    };
    let mut methods = gw.methods();
    let found = match m.kind.as_str() {
        "userpass" => match item("users/") {
            Some(r) => exists(methods.read_user(r).await)?,
            None => return Ok(PolicyOp::Update),
        },
        "approle" => match item("role/") {
            Some(r) => exists(methods.read_role(r).await)?,
            None => return Ok(PolicyOp::Update),
        },
        "cert" => match item("certs/") {
            Some(r) => exists(methods.read_cert_role(r).await)?,
            None => return Ok(PolicyOp::Update),
        },
        _ => return Ok(PolicyOp::Update),
    };
    Ok(if found {
        PolicyOp::Update
    } else {
        PolicyOp::Create
    })
}

fn exists<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Result<bool, ApiError> {
    match r {
        Ok(_) => Ok(true),
        Err(s)
            if matches!(
                s.code(),
                tonic::Code::NotFound | tonic::Code::InvalidArgument
            ) =>
        {
            Ok(false)
        }
        Err(s) => Err(s.into()),
    }
}

pub(crate) fn login_context(req: &ApiRequest, m: &MountEntry) -> pb::LoginContext {
    pb::LoginContext {
        mount: Some(mount_ref(m)),
        remote_ip: req.remote.map(|a| a.ip().to_string()).unwrap_or_default(),
    }
}

/// A login's answer: the token in `auth`, `data: null`.
pub(crate) fn login_response(created: pb::CreateTokenResponse, mount_type: &str) -> Response {
    let entry = created.entry.unwrap_or_default();
    Envelope::auth(crate::token::auth_block(&created.token, &entry), mount_type)
        .with_warnings(created.warnings)
        .into_response()
}

/// Applies Vault's common `token_*` parameters (and their legacy aliases:
/// `policies`, `ttl`, `max_ttl`, `period`, `bound_cidrs`, `num_uses`) that
/// the body carries to `p`.
pub(crate) fn apply_token_params(f: &Fields<'_>, p: &mut pb::TokenParams) -> Result<(), ApiError> {
    if let Some(v) = f.secs(&["token_ttl", "ttl"])? {
        p.ttl = v;
    }
    if let Some(v) = f.secs(&["token_max_ttl", "max_ttl"])? {
        p.max_ttl = v;
    }
    if let Some(v) = f.secs(&["token_explicit_max_ttl"])? {
        p.explicit_max_ttl = v;
    }
    if let Some(v) = f.secs(&["token_period", "period"])? {
        p.period = v;
    }
    if let Some(v) = f.list_any(&["token_policies", "policies"])? {
        p.policies = v;
    }
    if let Some(v) = f.list_any(&["token_bound_cidrs", "bound_cidrs"])? {
        p.bound_cidrs = v;
    }
    if let Some(v) = f.bool("token_no_default_policy")? {
        p.no_default_policy = v;
    }
    for k in ["token_num_uses", "num_uses"] {
        if let Some(v) = f.u32(k)? {
            p.num_uses = i64::from(v);
            break;
        }
    }
    if let Some(t) = f.string("token_type")? {
        p.r#type = match t.as_str() {
            "" | "default" => String::new(),
            "service" | "batch" => t,
            other => {
                return Err(ApiError::bad_request(format!(
                    "invalid 'token_type' value {other:?}"
                )))
            }
        };
    }
    if p.max_ttl > 0 && p.ttl > p.max_ttl {
        return Err(ApiError::bad_request(
            "\"token_ttl\" value must be less than \"token_max_ttl\" value",
        ));
    }
    Ok(())
}

/// The `token_*` keys of a user or role read.
pub(crate) fn token_params_json(p: &pb::TokenParams, out: &mut Map<String, Value>) {
    let kv = [
        ("token_bound_cidrs", json!(p.bound_cidrs)),
        ("token_explicit_max_ttl", json!(p.explicit_max_ttl)),
        ("token_max_ttl", json!(p.max_ttl)),
        ("token_no_default_policy", json!(p.no_default_policy)),
        ("token_num_uses", json!(p.num_uses)),
        ("token_period", json!(p.period)),
        ("token_policies", json!(p.policies)),
        ("policies", json!(p.policies)),
        ("token_ttl", json!(p.ttl)),
        (
            "token_type",
            json!(if p.r#type.is_empty() {
                "default"
            } else {
                p.r#type.as_str()
            }),
        ),
    ];
    for (k, v) in kv {
        out.insert(k.to_string(), v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logins_are_recognised() {
        assert!(is_login("userpass", "login/alice"));
        assert!(!is_login("userpass", "login/"));
        assert!(!is_login("userpass", "users/alice"));
        assert!(is_login("approle", "login"));
        assert!(!is_login("approle", "login/x"));
        assert!(is_login("cert", "login/"));
        assert!(!is_login("token", "login"));
    }

    #[test]
    fn token_params_and_aliases() {
        let body = json!({
            "token_ttl": "1h", "max_ttl": 14400, "policies": "a, b",
            "token_bound_cidrs": ["10.0.0.0/8"], "token_num_uses": "3",
            "token_type": "default", "token_no_default_policy": null,
        });
        let mut p = pb::TokenParams::default();
        apply_token_params(&Fields(body.as_object().unwrap()), &mut p).unwrap();
        assert_eq!((p.ttl, p.max_ttl, p.num_uses), (3600, 14400, 3));
        assert_eq!(p.policies, ["a", "b"]);
        assert_eq!(p.bound_cidrs, ["10.0.0.0/8"]);
        assert!(p.r#type.is_empty() && !p.no_default_policy);
        for bad in [
            json!({"token_ttl": "soon"}),
            json!({"token_ttl": -1}),
            json!({"token_type": "weird"}),
            json!({"token_num_uses": -2}),
            json!({"token_policies": {"a": 1}}),
            json!({"token_ttl": "5h", "token_max_ttl": "1h"}),
        ] {
            let mut p = pb::TokenParams::default();
            let e = apply_token_params(&Fields(bad.as_object().unwrap()), &mut p).unwrap_err();
            assert_eq!(e.status, 400, "{bad}");
        }
    }
}
