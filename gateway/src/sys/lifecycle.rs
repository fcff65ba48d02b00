//! Init, unseal, seal, seal-status, health and leader: the unauthenticated
//! (or root-only) lifecycle endpoints. Their answers are bare JSON objects,
//! not the envelope, because the Vault CLI decodes them directly.

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bulwark_proto::seal::v1::{InitRequest, SealRequest, SealStatus, StatusRequest, UnsealRequest};
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::error::ApiError;
use crate::request::{json_object, parse_bool, Fields};
use crate::{ApiRequest, Gateway, BUILD_DATE, VERSION};

fn seal_status_json(s: &SealStatus) -> Value {
    let mut v = json!({
        "type": s.r#type,
        "initialized": s.initialized,
        "sealed": s.sealed,
        "t": s.threshold,
        "n": s.shares,
        "progress": s.progress,
        "nonce": s.nonce,
        "version": VERSION,
        "build_date": BUILD_DATE,
        "migration": false,
        "recovery_seal": s.recovery_seal,
        "storage_type": s.storage_type,
    });
    // Vault names the recovery keys' kind only under an auto seal.
    if s.recovery_seal {
        v["recovery_seal_type"] = json!("shamir");
    }
    if !s.sealed {
        v["cluster_name"] = json!(s.cluster_name);
        v["cluster_id"] = json!(s.cluster_id);
    }
    v
}

fn ok_json(v: Value) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}

fn hex_and_base64(keys: &[Zeroizing<Vec<u8>>]) -> (Vec<String>, Vec<String>) {
    keys.iter()
        .map(|k| {
            (
                hex::encode(k.as_slice()),
                base64::engine::general_purpose::STANDARD.encode(k.as_slice()),
            )
        })
        .unzip()
}

/// `GET/PUT sys/init`. With a Shamir seal, `secret_shares` and
/// `secret_threshold`; with an auto seal, `recovery_shares` and
/// `recovery_threshold` (each kind refused under the other seal, as Vault
/// does); `stored_shares` is accepted and ignored (Vault forces it).
pub async fn init(gw: &Gateway, req: ApiRequest) -> Result<Response, ApiError> {
    match req.method {
        Method::GET => {
            let st = gw.seal().status(StatusRequest {}).await?.into_inner();
            Ok(ok_json(json!({ "initialized": st.initialized })))
        }
        Method::PUT | Method::POST => {
            let body = json_object(&req.body)?;
            let f = Fields(&body);
            if !f.string_list("pgp_keys")?.is_empty()
                || !f.string_list("recovery_pgp_keys")?.is_empty()
                || f.string("root_token_pgp_key")?
                    .is_some_and(|s| !s.is_empty())
            {
                return Err(ApiError::bad_request(
                    "PGP-encrypted key shares are not supported",
                ));
            }
            f.u32("stored_shares")?;
            // The seal service checks them against its seal type and
            // answers Vault's messages.
            let out = gw
                .seal()
                .init(InitRequest {
                    secret_shares: f.u32("secret_shares")?.unwrap_or(0),
                    secret_threshold: f.u32("secret_threshold")?.unwrap_or(0),
                    recovery_shares: f.u32("recovery_shares")?.unwrap_or(0),
                    recovery_threshold: f.u32("recovery_threshold")?.unwrap_or(0),
                    root_token_id: String::new(),
                })
                .await?
                .into_inner();
            let keys: Vec<Zeroizing<Vec<u8>>> = out.keys.into_iter().map(Zeroizing::new).collect();
            let recovery: Vec<Zeroizing<Vec<u8>>> =
                out.recovery_keys.into_iter().map(Zeroizing::new).collect();
            let root_token = Zeroizing::new(out.root_token);
            let (hex_keys, b64_keys) = hex_and_base64(&keys);
            let mut answer = json!({
                "keys": hex_keys,
                "keys_base64": b64_keys,
                "root_token": root_token.as_str(),
            });
            // Only when there are some (Vault's omitempty).
            if !recovery.is_empty() {
                let (hex_keys, b64_keys) = hex_and_base64(&recovery);
                answer["recovery_keys"] = json!(hex_keys);
                answer["recovery_keys_base64"] = json!(b64_keys);
            }
            Ok(ok_json(answer))
        }
        _ => Err(ApiError::unsupported_operation()),
    }
}

/// Decodes an unseal key as Vault does: hex if it decodes to 16–33 bytes,
/// else standard base64.
pub fn decode_unseal_key(key: &str) -> Option<Zeroizing<Vec<u8>>> {
    if let Ok(k) = hex::decode(key) {
        if (16..=33).contains(&k.len()) {
            return Some(Zeroizing::new(k));
        }
    }
    base64::engine::general_purpose::STANDARD
        .decode(key)
        .ok()
        .map(Zeroizing::new)
}

/// `PUT sys/unseal`.
pub async fn unseal(gw: &Gateway, req: ApiRequest) -> Result<Response, ApiError> {
    if !matches!(req.method, Method::PUT | Method::POST) {
        return Err(ApiError::unsupported_operation());
    }
    let body = json_object(&req.body)?;
    let f = Fields(&body);
    let reset = f.bool("reset")?.unwrap_or(false);
    let key = Zeroizing::new(f.string("key")?.unwrap_or_default());
    let raw = if reset {
        Zeroizing::new(Vec::new())
    } else if key.is_empty() {
        return Err(ApiError::bad_request(
            "'key' must be specified in request body as JSON, or 'reset' set to true",
        ));
    } else {
        decode_unseal_key(&key)
            .ok_or_else(|| ApiError::bad_request("'key' must be a valid hex or base64 string"))?
    };
    let st = gw
        .seal()
        .unseal(UnsealRequest {
            key: raw.to_vec(),
            reset,
        })
        .await?
        .into_inner();
    Ok(ok_json(seal_status_json(&st)))
}

/// `GET sys/seal-status`.
pub async fn seal_status(gw: &Gateway, req: ApiRequest) -> Result<Response, ApiError> {
    if req.method != Method::GET {
        return Err(ApiError::unsupported_operation());
    }
    let st = gw.seal().status(StatusRequest {}).await?.into_inner();
    Ok(ok_json(seal_status_json(&st)))
}

/// `PUT sys/seal` (authorized by the caller: it needs `sudo` on `sys/seal`).
pub async fn seal(gw: &Gateway, req: ApiRequest) -> Result<Response, ApiError> {
    if !matches!(req.method, Method::PUT | Method::POST) {
        return Err(ApiError::unsupported_operation());
    }
    gw.seal().seal(SealRequest {}).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn code_param(
    query: &[(String, String)],
    name: &str,
    default: u16,
) -> Result<StatusCode, ApiError> {
    match query.iter().find(|(k, _)| k == name) {
        None => Ok(StatusCode::from_u16(default).expect("valid default")),
        Some((_, v)) => v
            .parse::<u16>()
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .ok_or_else(|| {
                ApiError::bad_request(format!("bad code for '{name}' parameter: {v:?}"))
            }),
    }
}

/// `GET/HEAD sys/health`.
pub async fn health(gw: &Gateway, req: ApiRequest) -> Result<Response, ApiError> {
    if !matches!(req.method, Method::GET | Method::HEAD) {
        return Err(ApiError::unsupported_operation());
    }
    let q = &req.query;
    for flag in ["standbyok", "perfstandbyok"] {
        if let Some((_, v)) = q.iter().find(|(k, _)| k == flag) {
            if !v.is_empty() && parse_bool(v).is_none() {
                return Err(ApiError::bad_request(format!(
                    "bad value for '{flag}' parameter: {v:?}"
                )));
            }
        }
    }
    let active = code_param(q, "activecode", 200)?;
    // Parsed for validation; a single node is never a standby or DR secondary.
    code_param(q, "standbycode", 429)?;
    code_param(q, "drsecondarycode", 472)?;
    code_param(q, "performancestandbycode", 473)?;
    let sealed_code = code_param(q, "sealedcode", 503)?;
    let uninit = code_param(q, "uninitcode", 501)?;
    let st = gw.seal().status(StatusRequest {}).await?.into_inner();
    let code = if !st.initialized {
        uninit
    } else if st.sealed {
        sealed_code
    } else {
        active
    };
    if req.method == Method::HEAD || code == StatusCode::NO_CONTENT {
        return Ok(code.into_response());
    }
    let mut body = json!({
        "initialized": st.initialized,
        "sealed": st.sealed,
        "standby": false,
        "performance_standby": false,
        "replication_performance_mode": "disabled",
        "replication_dr_mode": "disabled",
        "server_time_utc": chrono::Utc::now().timestamp(),
        "version": VERSION,
        "enterprise": false,
        "echo_duration_ms": 0,
        "clock_skew_ms": 0,
    });
    if !st.sealed {
        body["cluster_name"] = json!(st.cluster_name);
        body["cluster_id"] = json!(st.cluster_id);
    }
    Ok((code, axum::Json(body)).into_response())
}

/// `GET sys/leader`: a single node, no HA.
pub async fn leader(_gw: &Gateway, req: ApiRequest) -> Result<Response, ApiError> {
    if req.method != Method::GET {
        return Err(ApiError::unsupported_operation());
    }
    Ok(ok_json(json!({
        "ha_enabled": false,
        "is_self": false,
        "active_time": "0001-01-01T00:00:00Z",
        "leader_address": "",
        "leader_cluster_address": "",
        "performance_standby": false,
        "performance_standby_last_remote_wal": 0,
        "raft_committed_index": 0,
        "raft_applied_index": 0,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_status_names_an_auto_seal_like_vault() {
        let auto = seal_status_json(&SealStatus {
            r#type: "static".into(),
            recovery_seal: true,
            initialized: true,
            threshold: 3,
            shares: 5,
            ..Default::default()
        });
        assert_eq!(
            (
                &auto["type"],
                &auto["recovery_seal"],
                &auto["recovery_seal_type"]
            ),
            (&json!("static"), &json!(true), &json!("shamir"))
        );
        assert_eq!((&auto["t"], &auto["n"]), (&json!(3), &json!(5)));
        let shamir = seal_status_json(&SealStatus {
            r#type: "shamir".into(),
            ..Default::default()
        });
        assert_eq!(shamir["recovery_seal"], false);
        assert!(shamir.get("recovery_seal_type").is_none());
    }

    #[test]
    fn unseal_keys_decode_as_hex_or_base64() {
        let raw: Vec<u8> = (0..33).collect();
        assert_eq!(
            decode_unseal_key(&hex::encode(&raw)).unwrap().as_slice(),
            raw.as_slice()
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
        assert_eq!(decode_unseal_key(&b64).unwrap().as_slice(), raw.as_slice());
        assert!(decode_unseal_key("not a key!").is_none());
    }
}
