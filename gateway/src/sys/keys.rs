//! Key management: `sys/rotate` and `sys/key-status` (authenticated, in the
//! envelope), and Vault's unauthenticated `sys/rekey/*`,
//! `sys/rekey-recovery-key/*` and `sys/generate-root/*`, where the unseal
//! keys (the recovery keys under an auto seal) are the authority; those
//! answer bare JSON objects, as Vault's raw handlers do.
//!
//! Under an auto seal (`seal "static"`), as in Vault: `sys/rekey/*` rekeys
//! the root key with recovery keys, forced to one stored share, and answers
//! no keys; `sys/rekey-recovery-key/*` rekeys the recovery keys (refused
//! without an auto seal: "recovery keys not supported").
//!
//! Generate-root: the seal service mints the root token and keeps it
//! claimable; before answering `complete`, this handler has the auth service
//! claim and store it and checks that it resolves as a root token, so the
//! client can use it at once.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use bulwark_proto::auth::v1::{ClaimRootTokensRequest, LookupTokenRequest};
use bulwark_proto::seal::v1::{
    GenerateRootCancelRequest, GenerateRootInitRequest, GenerateRootStatus,
    GenerateRootStatusRequest, GenerateRootUpdateRequest, KeyStatusRequest, RekeyCancelRequest,
    RekeyInitRequest, RekeyStatus, RekeyStatusRequest, RekeyUpdateRequest, RotateRequest,
};
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::request::{json_object, Fields, Operation};
use crate::sys::lifecycle::decode_unseal_key;
use crate::{ApiRequest, Gateway};

fn ok_json(v: Value) -> Response {
    (StatusCode::OK, axum::Json(v)).into_response()
}

/// `PUT sys/rotate` (update + sudo, checked before the handler): a new
/// keyring term, active at once. 204, as Vault.
pub async fn rotate(gw: &Gateway, op: Operation) -> Result<Response, ApiError> {
    if op != Operation::Write {
        return Err(ApiError::unsupported_operation());
    }
    let st = gw.seal().rotate(RotateRequest {}).await?.into_inner();
    tracing::info!(term = st.term, "barrier key rotated");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET sys/key-status`: the active term, its install time and the
/// encryption count (not tracked: 0).
pub async fn key_status(gw: &Gateway, op: Operation) -> Result<Response, ApiError> {
    if op != Operation::Read {
        return Err(ApiError::unsupported_operation());
    }
    let st = gw
        .seal()
        .key_status(KeyStatusRequest {})
        .await?
        .into_inner();
    let data = json!({
        "term": st.term,
        "install_time": st.install_time,
        "encryptions": st.encryptions,
    });
    Ok(Envelope::data(data, "system").with_top_level_data())
}

/// A share from the `key` field, hex or base64 (as unseal takes it).
fn share_from(f: &Fields<'_>) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    let key = Zeroizing::new(f.string("key")?.unwrap_or_default());
    if key.is_empty() {
        return Err(ApiError::bad_request(
            "'key' must be specified in request body as JSON",
        ));
    }
    decode_unseal_key(key.trim())
        .ok_or_else(|| ApiError::bad_request("'key' must be a valid hex or base64 string"))
}

fn rekey_status_json(s: &RekeyStatus) -> Value {
    json!({
        "nonce": s.nonce,
        "started": s.started,
        "t": s.new_threshold,
        "n": s.new_shares,
        "progress": s.progress,
        "required": s.required,
        "pgp_fingerprints": null,
        "backup": false,
        "verification_required": false,
    })
}

/// `GET/PUT/DELETE sys/rekey/init`.
pub async fn rekey_init(gw: &Gateway, req: ApiRequest) -> Result<Response, ApiError> {
    rekey_init_of(gw, req, false).await
}

/// `GET/PUT/DELETE sys/rekey-recovery-key/init`.
pub async fn rekey_recovery_init(gw: &Gateway, req: ApiRequest) -> Result<Response, ApiError> {
    rekey_init_of(gw, req, true).await
}

/// `PUT sys/rekey/update`.
pub async fn rekey_update(gw: &Gateway, req: ApiRequest) -> Result<Response, ApiError> {
    rekey_update_of(gw, req, false).await
}

/// `PUT sys/rekey-recovery-key/update`.
pub async fn rekey_recovery_update(gw: &Gateway, req: ApiRequest) -> Result<Response, ApiError> {
    rekey_update_of(gw, req, true).await
}

async fn rekey_init_of(
    gw: &Gateway,
    req: ApiRequest,
    recovery: bool,
) -> Result<Response, ApiError> {
    match req.method {
        Method::GET => {
            let st = gw
                .seal()
                .rekey_status(RekeyStatusRequest { recovery })
                .await?;
            Ok(ok_json(rekey_status_json(st.get_ref())))
        }
        Method::PUT | Method::POST => {
            let body = json_object(&req.body)?;
            let f = Fields(&body);
            if !f.string_list("pgp_keys")?.is_empty() {
                return Err(ApiError::bad_request(
                    "PGP-encrypted unseal keys are not supported: start the rekey without pgp_keys",
                ));
            }
            if f.bool("backup")?.unwrap_or(false) {
                return Err(ApiError::bad_request(
                    "backing up the new unseal keys is not supported (it needs PGP-encrypted keys)",
                ));
            }
            if f.bool("require_verification")?.unwrap_or(false) {
                return Err(ApiError::bad_request(
                    "rekey verification is not supported: start the rekey without require_verification",
                ));
            }
            // Vault: the root key's stored shares are forced (to 1); the
            // recovery keys are never stored.
            if recovery && f.u32("stored_shares")?.is_some_and(|n| n > 0) {
                return Err(ApiError::bad_request(
                    "stored shares not supported by recovery key",
                ));
            }
            f.u32("stored_shares")?;
            let st = gw
                .seal()
                .rekey_init(RekeyInitRequest {
                    secret_shares: f.u32("secret_shares")?.unwrap_or(0),
                    secret_threshold: f.u32("secret_threshold")?.unwrap_or(0),
                    recovery,
                })
                .await?;
            Ok(ok_json(rekey_status_json(st.get_ref())))
        }
        Method::DELETE => {
            gw.seal()
                .rekey_cancel(RekeyCancelRequest { recovery })
                .await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        _ => Err(ApiError::unsupported_operation()),
    }
}

/// One current unseal (or recovery) key; at the threshold, the new shares
/// (none for the root key under an auto seal).
async fn rekey_update_of(
    gw: &Gateway,
    req: ApiRequest,
    recovery: bool,
) -> Result<Response, ApiError> {
    if !matches!(req.method, Method::PUT | Method::POST) {
        return Err(ApiError::unsupported_operation());
    }
    let body = json_object(&req.body)?;
    let f = Fields(&body);
    let key = share_from(&f)?;
    let nonce = f.string("nonce")?.unwrap_or_default();
    let resp = gw
        .seal()
        .rekey_update(RekeyUpdateRequest {
            key: key.to_vec(),
            nonce,
            recovery,
        })
        .await?
        .into_inner();
    if !resp.complete {
        let st = resp.status.unwrap_or_default();
        return Ok(ok_json(rekey_status_json(&st)));
    }
    let keys: Vec<Zeroizing<Vec<u8>>> = resp.keys.into_iter().map(Zeroizing::new).collect();
    Ok(ok_json(json!({
        "nonce": resp.nonce,
        "complete": true,
        "keys": keys.iter().map(|k| hex::encode(k.as_slice())).collect::<Vec<_>>(),
        "keys_base64": keys
            .iter()
            .map(|k| base64::engine::general_purpose::STANDARD.encode(k.as_slice()))
            .collect::<Vec<_>>(),
        "pgp_fingerprints": null,
        "backup": false,
        "verification_required": false,
    })))
}

fn generate_root_json(s: &GenerateRootStatus) -> Value {
    json!({
        "nonce": s.nonce,
        "started": s.started,
        "progress": s.progress,
        "required": s.required,
        "complete": s.complete,
        "encoded_token": s.encoded_token,
        "encoded_root_token": s.encoded_token,
        "pgp_fingerprint": "",
        "otp": s.otp,
        "otp_length": s.otp_length,
    })
}

/// `GET/PUT/DELETE sys/generate-root/attempt`. A start without `otp`
/// answers a generated one-time password (only in that answer).
pub async fn generate_root_attempt(gw: &Gateway, req: ApiRequest) -> Result<Response, ApiError> {
    match req.method {
        Method::GET => {
            let st = gw
                .seal()
                .generate_root_status(GenerateRootStatusRequest {})
                .await?;
            Ok(ok_json(generate_root_json(st.get_ref())))
        }
        Method::PUT | Method::POST => {
            let body = json_object(&req.body)?;
            let f = Fields(&body);
            if f.string("pgp_key")?.is_some_and(|k| !k.is_empty()) {
                return Err(ApiError::bad_request(
                    "PGP-encrypted root tokens are not supported: start without pgp_key to get a one-time password",
                ));
            }
            let otp = Zeroizing::new(f.string("otp")?.unwrap_or_default());
            let st = gw
                .seal()
                .generate_root_init(GenerateRootInitRequest {
                    otp: otp.to_string(),
                })
                .await?
                .into_inner();
            let out = ok_json(generate_root_json(&st));
            // The OTP leaves only in the answer.
            let _otp = Zeroizing::new(st.otp);
            Ok(out)
        }
        Method::DELETE => {
            gw.seal()
                .generate_root_cancel(GenerateRootCancelRequest {})
                .await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        _ => Err(ApiError::unsupported_operation()),
    }
}

/// `PUT sys/generate-root/update`: one unseal key; at the threshold the
/// encoded root token, answered once the auth service accepts the token.
pub async fn generate_root_update(gw: &Gateway, req: ApiRequest) -> Result<Response, ApiError> {
    if !matches!(req.method, Method::PUT | Method::POST) {
        return Err(ApiError::unsupported_operation());
    }
    let body = json_object(&req.body)?;
    let f = Fields(&body);
    let key = share_from(&f)?;
    let nonce = f.string("nonce")?.unwrap_or_default();
    let mut st = gw
        .seal()
        .generate_root_update(GenerateRootUpdateRequest {
            key: key.to_vec(),
            nonce: nonce.clone(),
        })
        .await?
        .into_inner();
    let token = Zeroizing::new(std::mem::take(&mut st.root_token));
    if st.complete {
        confirm_root_token(gw, &token).await?;
    }
    // Vault answers the nonce the client sent.
    st.nonce = nonce;
    Ok(ok_json(generate_root_json(&st)))
}

/// Has the auth service store the new root token and checks that it
/// resolves as a root token, retrying briefly (the auth service may be
/// catching up with the seal state).
async fn confirm_root_token(gw: &Gateway, token: &str) -> Result<(), ApiError> {
    let mut last = String::new();
    for attempt in 0u32..6 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        }
        if let Err(s) = gw.auth().claim_root_tokens(ClaimRootTokensRequest {}).await {
            last = s.message().to_string();
            continue;
        }
        match gw
            .auth()
            .lookup_token(LookupTokenRequest {
                token: token.to_string(),
                accessor: String::new(),
            })
            .await
        {
            Ok(e) if e.get_ref().policies == ["root"] => return Ok(()),
            Ok(_) => last = "the generated token is not a root token".into(),
            Err(s) => last = s.message().to_string(),
        }
    }
    tracing::error!(error = %last, "a generated root token was not accepted by the auth service");
    Err(ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("the root token was generated but the auth service did not store it: {last}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rekey_status_has_vaults_fields() {
        let v = rekey_status_json(&RekeyStatus {
            started: true,
            nonce: "n".into(),
            new_threshold: 2,
            new_shares: 3,
            progress: 1,
            required: 3,
        });
        assert_eq!(
            v,
            json!({"nonce": "n", "started": true, "t": 2, "n": 3, "progress": 1, "required": 3,
                   "pgp_fingerprints": null, "backup": false, "verification_required": false})
        );
    }

    #[test]
    fn generate_root_status_never_shows_the_token_itself() {
        let v = generate_root_json(&GenerateRootStatus {
            started: true,
            complete: true,
            encoded_token: "enc".into(),
            root_token: "hvs.secret".into(),
            otp_length: 28,
            ..Default::default()
        });
        assert_eq!(v["encoded_token"], "enc");
        assert_eq!(v["encoded_root_token"], "enc");
        assert_eq!(v["pgp_fingerprint"], "");
        assert!(!v.to_string().contains("hvs.secret"));
        for k in [
            "nonce",
            "started",
            "progress",
            "required",
            "complete",
            "otp",
            "otp_length",
        ] {
            assert!(v.get(k).is_some(), "{k}");
        }
    }

    #[test]
    fn shares_must_be_given_and_decodable() {
        let m = json_object(br#"{"key": ""}"#).unwrap();
        assert_eq!(share_from(&Fields(&m)).unwrap_err().status, 400);
        let m = json_object(br#"{"key": "zz"}"#).unwrap();
        assert!(share_from(&Fields(&m)).unwrap_err().errors[0].contains("hex or base64"));
        let m =
            json_object(format!(r#"{{"key": "{}"}}"#, hex::encode([5u8; 33])).as_bytes()).unwrap();
        assert_eq!(share_from(&Fields(&m)).unwrap().as_slice(), &[5u8; 33]);
    }
}
