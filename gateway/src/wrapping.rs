//! Response wrapping: `X-Vault-Wrap-TTL` on any request, and
//! `sys/wrapping/{wrap,unwrap,lookup,rewrap}`.
//!
//! A wrapped response is stored in the cubbyhole of a fresh single-use token
//! (policy `response-wrapping`, an orphan minted by the auth service) at
//! `<accessor>/response`; the client gets only `wrap_info`. Unwrapping takes
//! the payload out of the cubbyhole with kv's atomic `Take` and then revokes
//! the token, so of two racing unwraps exactly one gets the response. An
//! expired wrapping token is revoked by the auth service, and kv drops its
//! cubbyhole with it.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use bulwark_proto::auth::v1::{
    CreateTokenRequest, LookupTokenRequest, RevokeTokenRequest, TokenEntry,
};
use bulwark_proto::kv::v1::{KeyRequest, Kind, PutRequest};
use serde_json::{json, Value};

use crate::envelope::{Envelope, WrapInfo};
use crate::error::ApiError;
use crate::request::{json_object, Fields, Operation};
use crate::{ApiRequest, Gateway};

/// The policy a wrapping token carries.
pub const POLICY: &str = "response-wrapping";
/// The longest a response may stay wrapped (Vault's system max TTL).
pub const MAX_TTL: u64 = 768 * 3600;
const CUBBYHOLE_MOUNT: &str = "cubbyhole";
const INVALID: &str = "wrapping token is not valid or does not exist";

/// The wrap TTL a request asks for: `None` without the header (or with 0).
pub fn requested_ttl(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(v) = headers.get("x-vault-wrap-ttl") else {
        return Ok(None);
    };
    let bad = || ApiError::bad_request("error parsing X-Vault-Wrap-TTL header");
    let s = v.to_str().map_err(|_| bad())?.trim();
    let secs = bulwark_shared::ttl::parse_duration(s)
        .map_err(|_| bad())?
        .as_secs();
    match secs {
        0 => Ok(None),
        s if s > MAX_TTL => Err(ApiError::bad_request(format!(
            "wrapping ttl of {s}s exceeds the maximum of {MAX_TTL}s"
        ))),
        s => Ok(Some(s)),
    }
}

fn key(accessor: &str) -> String {
    format!("{accessor}/response")
}

fn rfc3339_nanos(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
        .unwrap_or_default()
}

/// Stores `payload` (a response body) under a new wrapping token and
/// answers with its `wrap_info`.
async fn wrap_payload(
    gw: &Gateway,
    payload: &[u8],
    ttl: u64,
    creation_path: &str,
) -> Result<Response, ApiError> {
    let created = gw
        .auth()
        .create_token(CreateTokenRequest {
            policies: vec![POLICY.into()],
            no_default_policy: true,
            renewable: Some(false),
            ttl: ttl as i64,
            num_uses: 1,
            path: creation_path.to_string(),
            display_name: String::new(),
            ..Default::default()
        })
        .await?
        .into_inner();
    let entry = created.entry.unwrap_or_default();
    let text = String::from_utf8_lossy(payload);
    let stored = json!({ "response": text }).to_string();
    gw.kv()
        .put(PutRequest {
            mount: CUBBYHOLE_MOUNT.into(),
            kind: Kind::Cubbyhole as i32,
            path: key(&entry.accessor),
            data: stored.into_bytes(),
        })
        .await?;
    let wrapped_accessor = serde_json::from_slice::<Value>(payload)
        .ok()
        .and_then(|v| v["auth"]["accessor"].as_str().map(String::from))
        .unwrap_or_default();
    let env = Envelope {
        request_id: String::new(),
        wrap_info: Some(WrapInfo {
            token: created.token,
            accessor: entry.accessor,
            ttl,
            creation_time: rfc3339_nanos(entry.creation_time),
            creation_path: creation_path.to_string(),
            wrapped_accessor,
        }),
        ..Envelope::new("")
    };
    Ok(env.into_response())
}

/// Wraps a handler's answer when it is a successful JSON body; errors and
/// empty answers pass through unwrapped, as in Vault.
pub async fn wrap_response(
    gw: &Gateway,
    resp: Response,
    ttl: u64,
    creation_path: &str,
) -> Result<Response, ApiError> {
    if resp.status() != StatusCode::OK {
        return Ok(resp);
    }
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "reading response"))?;
    if bytes.is_empty() {
        return Ok(Response::from_parts(parts, Body::from(bytes)));
    }
    wrap_payload(gw, &bytes, ttl, creation_path).await
}

/// The wrapping token a request names: the body's `token`, else the
/// request's own token. Returns whether it came from the body.
fn named_token(req: &ApiRequest) -> Result<(String, bool), ApiError> {
    let body = json_object(&req.body)?;
    if let Some(t) = Fields(&body).string("token")?.filter(|t| !t.is_empty()) {
        return Ok((t, true));
    }
    crate::request::client_token(&req.headers)
        .map(|t| (t, false))
        .ok_or_else(|| ApiError::bad_request(INVALID))
}

/// Whether a `sys/wrapping/*` request is answered without authenticating
/// the caller: lookup always; unwrap and rewrap when the wrapping token is
/// the request's own token (authenticating it would spend its one use).
pub fn unauthenticated(req: &ApiRequest, path: &str) -> bool {
    match path.trim_end_matches('/') {
        "sys/wrapping/lookup" => true,
        "sys/wrapping/unwrap" | "sys/wrapping/rewrap" => {
            matches!(named_token(req), Ok((_, false)))
        }
        _ => false,
    }
}

/// A live wrapping token's entry, or Vault's 400.
async fn wrapping_entry(gw: &Gateway, token: &str) -> Result<TokenEntry, ApiError> {
    let entry = gw
        .auth()
        .lookup_token(LookupTokenRequest {
            token: token.to_string(),
            accessor: String::new(),
        })
        .await
        .map_err(|_| ApiError::bad_request(INVALID))?
        .into_inner();
    if entry.policies != [POLICY] {
        return Err(ApiError::bad_request(INVALID));
    }
    Ok(entry)
}

/// Takes the wrapped payload out (exactly once) and revokes the token.
async fn take(gw: &Gateway, token: &str) -> Result<(TokenEntry, Vec<u8>), ApiError> {
    let entry = wrapping_entry(gw, token).await?;
    let got = gw
        .kv()
        .take(KeyRequest {
            mount: CUBBYHOLE_MOUNT.into(),
            kind: Kind::Cubbyhole as i32,
            path: key(&entry.accessor),
        })
        .await?
        .into_inner();
    let revoked = gw
        .auth()
        .revoke_token(RevokeTokenRequest {
            token: String::new(),
            accessor: entry.accessor.clone(),
            orphan: false,
        })
        .await?
        .into_inner();
    gw.acl().forget_accessors(&revoked.accessors);
    if !got.found {
        return Err(ApiError::bad_request(INVALID));
    }
    let stored: Value = serde_json::from_slice(&got.data).unwrap_or(Value::Null);
    let payload = stored["response"]
        .as_str()
        .map(|s| s.as_bytes().to_vec())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "corrupt wrapped response",
            )
        })?;
    Ok((entry, payload))
}

/// `sys/wrapping/*`.
pub async fn handle(
    gw: &Gateway,
    req: ApiRequest,
    op: Operation,
    action: &str,
) -> Result<Response, ApiError> {
    if op != Operation::Write && !(action == "lookup" && op == Operation::Read) {
        return Err(ApiError::unsupported_operation());
    }
    match action {
        "wrap" => {
            if requested_ttl(&req.headers)?.is_none() {
                return Err(ApiError::bad_request(
                    "endpoint requires response wrapping to be used",
                ));
            }
            let body = json_object(&req.body)?;
            Ok(Envelope::data(Value::Object(body), "system").with_top_level_data())
        }
        "unwrap" => {
            let (token, _) = named_token(&req)?;
            let (_, payload) = take(gw, &token).await?;
            Ok((
                StatusCode::OK,
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                payload,
            )
                .into_response())
        }
        "lookup" => {
            let (token, _) = named_token(&req)?;
            let e = wrapping_entry(gw, &token).await?;
            Ok(Envelope::data(
                json!({
                    "creation_path": e.path,
                    "creation_time": rfc3339_nanos(e.creation_time),
                    "creation_ttl": e.creation_ttl,
                }),
                "system",
            )
            .into_response())
        }
        "rewrap" => {
            let (token, _) = named_token(&req)?;
            let (entry, payload) = take(gw, &token).await?;
            let ttl = u64::try_from(entry.creation_ttl).unwrap_or(1).max(1);
            wrap_payload(gw, &payload, ttl, &entry.path).await
        }
        _ => Err(ApiError::no_route(&format!("sys/wrapping/{action}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert("x-vault-wrap-ttl", v.parse().unwrap());
        m
    }

    #[test]
    fn wrap_ttl_header() {
        assert_eq!(requested_ttl(&HeaderMap::new()).unwrap(), None);
        assert_eq!(requested_ttl(&h("60")).unwrap(), Some(60));
        assert_eq!(requested_ttl(&h("15s")).unwrap(), Some(15));
        assert_eq!(requested_ttl(&h("20m")).unwrap(), Some(1200));
        assert_eq!(requested_ttl(&h("0")).unwrap(), None);
        for bad in ["-5", "soon", "5x", "800h"] {
            assert_eq!(requested_ttl(&h(bad)).unwrap_err().status, 400, "{bad}");
        }
    }
}
