//! `transit` mounts: Vault's transit paths over the transit service.
//!
//! Plaintexts, contexts, nonces, associated data and inputs are base64 in
//! Vault's API: they are decoded here (a bad one fails only its item) and
//! travel to the service as bytes; plaintexts come back encoded. Batch
//! requests (`batch_input`) answer `batch_results` in order, each with
//! `reference` and either its result or `error`; any failed item makes the
//! status 400 (500 for a server fault) unless the caller chose
//! `partial_failure_response_code`, as Vault does.
//!
//! Encrypting with a missing key creates it (Vault's upsert) only when the
//! caller's policy grants `create` on the path; otherwise the answer is 403,
//! as Vault's ACL gives for such a request.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bulwark_proto::transit::v1 as pb;
use serde_json::{json, Map, Value};

use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::mounts::MountEntry;
use crate::reply::{keys_response, no_content, unsupported_path};
use crate::request::{json_object, Fields, Operation};
use crate::{ApiRequest, Gateway};

const MOUNT_TYPE: &str = "transit";

fn data(v: Value, warnings: Vec<String>) -> Response {
    Envelope::data(v, MOUNT_TYPE)
        .with_warnings(warnings)
        .into_response()
}

fn key_req(m: &MountEntry, name: &str) -> pb::KeyRequest {
    pb::KeyRequest {
        mount: m.uuid.clone(),
        name: name.to_string(),
    }
}

fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// A key read as Vault shows it.
fn key_json(k: &pb::KeyInfo) -> Value {
    let mut keys = Map::new();
    for v in &k.versions {
        let value = if k.asymmetric {
            json!({
                "creation_time": rfc3339(v.creation_time),
                "name": v.name,
                "public_key": v.public_key,
            })
        } else {
            json!(v.creation_time)
        };
        keys.insert(v.version.to_string(), value);
    }
    let mut d = json!({
        "name": k.name,
        "type": k.r#type,
        "keys": keys,
        "latest_version": k.latest_version,
        "min_available_version": k.min_available_version,
        "min_decryption_version": k.min_decryption_version,
        "min_encryption_version": k.min_encryption_version,
        "deletion_allowed": k.deletion_allowed,
        "derived": k.derived,
        "exportable": k.exportable,
        "allow_plaintext_backup": k.allow_plaintext_backup,
        "supports_encryption": k.supports_encryption,
        "supports_decryption": k.supports_decryption,
        "supports_derivation": k.supports_derivation,
        "supports_signing": k.supports_signing,
        "auto_rotate_period": k.auto_rotate_period,
        "imported_key": false,
    });
    if k.key_size > 0 {
        d["key_size"] = json!(k.key_size);
    }
    if k.derived {
        d["kdf"] = json!("hkdf_sha256");
        d["convergent_encryption"] = json!(k.convergent_encryption);
    }
    for (field, stamp) in [
        ("backup_info", &k.backup_info),
        ("restore_info", &k.restore_info),
    ] {
        if let Some(s) = stamp {
            d[field] = json!({ "time": s.time, "version": s.version });
        }
    }
    d
}

fn key_reply(r: pb::KeyInfoResponse) -> Result<Response, ApiError> {
    let k = r.key.filter(|_| r.found).ok_or_else(ApiError::not_found)?;
    Ok(data(key_json(&k), r.warnings))
}

// === request items ===

/// The items of a request: each object of `batch_input`, or the body
/// itself as one item; and whether it was a batch.
fn items(body: &Map<String, Value>) -> Result<(Vec<Map<String, Value>>, bool), ApiError> {
    match body.get("batch_input") {
        None | Some(Value::Null) => Ok((vec![body.clone()], false)),
        Some(Value::Array(list)) => {
            if list.is_empty() {
                return Err(ApiError::bad_request("missing batch input to process"));
            }
            let items = list
                .iter()
                .map(|v| match v {
                    Value::Object(o) => Ok(o.clone()),
                    _ => Err(ApiError::bad_request(
                        "failed to parse batch input: every item must be an object",
                    )),
                })
                .collect::<Result<_, _>>()?;
            Ok((items, true))
        }
        Some(_) => Err(ApiError::bad_request(
            "failed to parse batch input: batch_input must be a list of objects",
        )),
    }
}

/// An item's failure before it reaches the service (bad base64, missing
/// field): its message.
type ItemError = String;

fn item_error(e: ApiError) -> ItemError {
    e.errors.join("; ")
}

/// A base64 field of an item (absent = empty).
fn b64(f: &Fields<'_>, key: &str) -> Result<Vec<u8>, ItemError> {
    match f.string(key).map_err(item_error)? {
        None => Ok(Vec::new()),
        Some(s) => STANDARD
            .decode(s.trim())
            .map_err(|_| format!("failed to base64-decode {key}")),
    }
}

/// A required base64 field.
fn b64_required(f: &Fields<'_>, key: &str, missing: &str) -> Result<Vec<u8>, ItemError> {
    if !f.present(key) {
        return Err(missing.to_string());
    }
    b64(f, key)
}

fn string_field(f: &Fields<'_>, key: &str) -> Result<String, ItemError> {
    Ok(f.string(key).map_err(item_error)?.unwrap_or_default())
}

fn u32_field(f: &Fields<'_>, key: &str) -> Result<u32, ApiError> {
    Ok(f.u32(key)?.unwrap_or(0))
}

/// One answer item: its result fields, or an error (`internal` for a
/// server fault).
enum Outcome {
    Ok(Map<String, Value>),
    Err { message: String, internal: bool },
}

impl Outcome {
    fn ok(v: Value) -> Outcome {
        match v {
            Value::Object(m) => Outcome::Ok(m),
            _ => Outcome::Ok(Map::new()),
        }
    }

    fn from_service(error: String, internal: bool, v: Value) -> Outcome {
        if error.is_empty() {
            Outcome::ok(v)
        } else {
            Outcome::Err {
                message: error,
                internal,
            }
        }
    }

    fn user(message: String) -> Outcome {
        Outcome::Err {
            message,
            internal: false,
        }
    }
}

/// Sends the decoded items to the service (those that failed to decode
/// are answered in place) and merges the answers back in order.
async fn per_item<I, F, Fut>(
    decoded: Vec<Result<I, ItemError>>,
    call: F,
) -> Result<Vec<Outcome>, ApiError>
where
    F: FnOnce(Vec<I>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<Outcome>, ApiError>>,
{
    let mut good = Vec::new();
    let mut slots = Vec::with_capacity(decoded.len());
    for d in decoded {
        match d {
            Ok(item) => {
                good.push(item);
                slots.push(None);
            }
            Err(e) => slots.push(Some(Outcome::user(e))),
        }
    }
    let mut answers = if good.is_empty() {
        Vec::new()
    } else {
        call(good).await?
    }
    .into_iter();
    slots
        .into_iter()
        .map(|s| match s {
            Some(o) => Ok(o),
            None => answers
                .next()
                .ok_or_else(|| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")),
        })
        .collect()
}

/// The answer of a single or batch request, as Vault gives it: a single
/// item's error is a plain error; a batch answers every item with its
/// `reference`, and a failed item sets the status.
fn reply(
    outcomes: Vec<Outcome>,
    requests: &[Map<String, Value>],
    batch: bool,
    body: &Map<String, Value>,
) -> Result<Response, ApiError> {
    if !batch {
        return match outcomes.into_iter().next() {
            Some(Outcome::Ok(m)) => Ok(data(Value::Object(m), vec![])),
            Some(Outcome::Err { message, internal }) => Err(if internal {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
            } else {
                ApiError::bad_request(message)
            }),
            None => Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
            )),
        };
    }
    let (mut user_error, mut internal_error, mut success) = (false, false, false);
    let mut results = Vec::with_capacity(outcomes.len());
    for (o, req) in outcomes.into_iter().zip(requests) {
        let mut item = match o {
            Outcome::Ok(m) => {
                success = true;
                m
            }
            Outcome::Err { message, internal } => {
                if internal {
                    internal_error = true;
                } else {
                    user_error = true;
                }
                let mut m = Map::new();
                m.insert("error".into(), json!(message));
                m
            }
        };
        let reference = req.get("reference").cloned().unwrap_or(json!(""));
        item.insert("reference".into(), reference);
        results.push(Value::Object(item));
    }
    let mut status = if user_error {
        StatusCode::BAD_REQUEST
    } else if internal_error {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    };
    let mut warnings = Vec::new();
    if status != StatusCode::OK && success {
        if let Some(code) = Fields(body).u32("partial_failure_response_code")? {
            match u16::try_from(code)
                .ok()
                .filter(|c| (1..=599).contains(c))
                .and_then(|c| StatusCode::from_u16(c).ok())
            {
                Some(c) => status = c,
                None => warnings.push(format!(
                    "invalid HTTP response code override from partial_failure_response_code, reverting to {}",
                    status.as_u16()
                )),
            }
        }
    }
    let env =
        Envelope::data(json!({ "batch_results": results }), MOUNT_TYPE).with_warnings(warnings);
    Ok((status, axum::Json(env)).into_response())
}

// === handlers ===

pub async fn handle(
    gw: &Gateway,
    req: ApiRequest,
    op: Operation,
    m: &MountEntry,
    rest: &str,
    caps: &[String],
) -> Result<Response, ApiError> {
    let rest = rest.trim_end_matches('/');
    let segs: Vec<&str> = rest.split('/').collect();
    let mut t = gw.transit();
    match (segs.as_slice(), op) {
        (["keys"], Operation::List) => keys_response(
            t.list_keys(pb::MountRequest {
                mount: m.uuid.clone(),
            })
            .await?
            .into_inner()
            .keys,
            MOUNT_TYPE,
        ),
        (["keys", name], Operation::Write) => {
            let body = json_object(&req.body)?;
            let f = Fields(&body);
            let r = t
                .create_key(pb::CreateKeyRequest {
                    mount: m.uuid.clone(),
                    name: name.to_string(),
                    r#type: f.string("type")?.unwrap_or_default(),
                    derived: f.bool("derived")?.unwrap_or(false),
                    convergent_encryption: f.bool("convergent_encryption")?.unwrap_or(false),
                    exportable: f.bool("exportable")?.unwrap_or(false),
                    allow_plaintext_backup: f.bool("allow_plaintext_backup")?.unwrap_or(false),
                    auto_rotate_period: f.secs(&["auto_rotate_period"])?.unwrap_or(0),
                    key_size: u32_field(&f, "key_size")?,
                })
                .await?
                .into_inner();
            key_reply(r)
        }
        (["keys", name], Operation::Read) => {
            let query: Map<String, Value> = req
                .query
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            let context = b64(&Fields(&query), "context").map_err(ApiError::bad_request)?;
            let r = t
                .read_key(pb::ReadKeyRequest {
                    mount: m.uuid.clone(),
                    name: name.to_string(),
                    context,
                })
                .await?
                .into_inner();
            key_reply(r)
        }
        (["keys", name], Operation::Delete) => {
            t.delete_key(key_req(m, name)).await?;
            Ok(no_content())
        }
        (["keys", name, "config"], Operation::Write) => {
            let body = json_object(&req.body)?;
            let f = Fields(&body);
            let r = t
                .configure_key(pb::ConfigureKeyRequest {
                    mount: m.uuid.clone(),
                    name: name.to_string(),
                    min_decryption_version: f.u32("min_decryption_version")?,
                    min_encryption_version: f.u32("min_encryption_version")?,
                    deletion_allowed: f.bool("deletion_allowed")?,
                    exportable: f.bool("exportable")?,
                    allow_plaintext_backup: f.bool("allow_plaintext_backup")?,
                    auto_rotate_period: f.secs(&["auto_rotate_period"])?,
                })
                .await?
                .into_inner();
            key_reply(r)
        }
        (["keys", name, "rotate"], Operation::Write) => {
            key_reply(t.rotate_key(key_req(m, name)).await?.into_inner())
        }
        (["keys", name, "trim"], Operation::Write) => {
            let body = json_object(&req.body)?;
            let min = Fields(&body)
                .u32("min_available_version")?
                .ok_or_else(|| ApiError::bad_request("missing min_available_version"))?;
            let r = t
                .trim_key(pb::TrimKeyRequest {
                    mount: m.uuid.clone(),
                    name: name.to_string(),
                    min_available_version: min,
                })
                .await?
                .into_inner();
            key_reply(r)
        }
        (["encrypt", name], Operation::Write) => encrypt(gw, &req, m, name, caps).await,
        (["decrypt", name], Operation::Write) => decrypt(gw, &req, m, name).await,
        (["rewrap", name], Operation::Write) => rewrap(gw, &req, m, name).await,
        (["datakey", kind @ ("plaintext" | "wrapped"), name], Operation::Write) => {
            let body = json_object(&req.body)?;
            let f = Fields(&body);
            let r = t
                .generate_data_key(pb::DataKeyRequest {
                    mount: m.uuid.clone(),
                    name: name.to_string(),
                    bits: u32_field(&f, "bits")?,
                    context: b64(&f, "context").map_err(ApiError::bad_request)?,
                    nonce: b64(&f, "nonce").map_err(ApiError::bad_request)?,
                    associated_data: b64(&f, "associated_data").map_err(ApiError::bad_request)?,
                    with_plaintext: *kind == "plaintext",
                })
                .await?
                .into_inner();
            let mut v = json!({ "ciphertext": r.ciphertext, "key_version": r.key_version });
            if *kind == "plaintext" {
                v["plaintext"] = json!(STANDARD.encode(&r.plaintext));
            }
            Ok(data(v, vec![]))
        }
        (["hmac", name] | ["hmac", name, _], Operation::Write) => {
            hmac(gw, &req, m, name, segs.get(2).copied()).await
        }
        (["sign", name] | ["sign", name, _], Operation::Write) => {
            sign(gw, &req, m, name, segs.get(2).copied()).await
        }
        (["verify", name] | ["verify", name, _], Operation::Write) => {
            verify(gw, &req, m, name, segs.get(2).copied()).await
        }
        (["hash"] | ["hash", _], Operation::Write) => {
            let body = json_object(&req.body)?;
            let f = Fields(&body);
            let algorithm = match segs.get(1) {
                Some(a) => a.to_string(),
                None => f.string("algorithm")?.unwrap_or_default(),
            };
            let format = f.string("format")?.unwrap_or_else(|| "hex".into());
            if format != "hex" && format != "base64" {
                return Err(ApiError::bad_request(format!(
                    "unsupported encoding format {format}; must be \"hex\" or \"base64\""
                )));
            }
            let input = b64_required(&f, "input", "missing input to hash")
                .map_err(ApiError::bad_request)?;
            let sum = t
                .hash(pb::HashRequest { algorithm, input })
                .await?
                .into_inner()
                .sum;
            let sum = if format == "hex" {
                hex::encode(sum)
            } else {
                STANDARD.encode(sum)
            };
            Ok(data(json!({ "sum": sum }), vec![]))
        }
        (["random", ..], Operation::Write) if segs.len() <= 3 => {
            let body = json_object(&req.body)?;
            let f = Fields(&body);
            // random[/<source>][/<bytes>]: a lone segment is the byte
            // count when it is a number, else the source.
            let (mut source, mut bytes) = (f.string("source")?, f.u32("bytes")?);
            let parse_bytes = |seg: &str| {
                seg.parse::<u32>().map_err(|_| {
                    ApiError::bad_request(format!("error parsing bytes {seg:?} as an integer"))
                })
            };
            match segs[1..] {
                [] => {}
                [one] => match one.parse::<u32>() {
                    Ok(n) => bytes = Some(n),
                    Err(_) => source = Some(one.to_string()),
                },
                [src, n] => {
                    source = Some(src.to_string());
                    bytes = Some(parse_bytes(n)?);
                }
                _ => return Err(unsupported_path()),
            }
            match source.as_deref() {
                None | Some("" | "platform" | "all") => {}
                Some(other) => {
                    return Err(ApiError::bad_request(format!(
                        "unsupported entropy source {other:?}; must be \"platform\" or \"all\""
                    )))
                }
            }
            let format = f.string("format")?.unwrap_or_else(|| "base64".into());
            if format != "hex" && format != "base64" {
                return Err(ApiError::bad_request(format!(
                    "unsupported encoding format {format}; must be \"hex\" or \"base64\""
                )));
            }
            if bytes == Some(0) {
                return Err(ApiError::bad_request(
                    "the number of bytes must be positive",
                ));
            }
            let random = t
                .random(pb::RandomRequest {
                    bytes: bytes.unwrap_or(0),
                })
                .await?
                .into_inner()
                .random;
            let text = if format == "hex" {
                hex::encode(random)
            } else {
                STANDARD.encode(random)
            };
            Ok(data(json!({ "random_bytes": text }), vec![]))
        }
        (["export", kind, name] | ["export", kind, name, _], Operation::Read) => {
            let r = t
                .export_key(pb::ExportKeyRequest {
                    mount: m.uuid.clone(),
                    name: name.to_string(),
                    key_type: kind.to_string(),
                    version: segs.get(3).map(|s| s.to_string()).unwrap_or_default(),
                })
                .await?
                .into_inner();
            let keys: Map<String, Value> = r
                .keys
                .into_iter()
                .map(|k| (k.version.to_string(), json!(k.key)))
                .collect();
            Ok(data(
                json!({ "name": r.name, "type": r.r#type, "keys": keys }),
                vec![],
            ))
        }
        (["backup", name], Operation::Read) => {
            let r = t.backup_key(key_req(m, name)).await?.into_inner();
            Ok(data(json!({ "backup": r.backup }), vec![]))
        }
        (["restore"] | ["restore", _], Operation::Write) => {
            let body = json_object(&req.body)?;
            let f = Fields(&body);
            let backup = f
                .string("backup")?
                .filter(|b| !b.is_empty())
                .ok_or_else(|| ApiError::bad_request("'backup' must be supplied"))?;
            t.restore_key(pb::RestoreKeyRequest {
                mount: m.uuid.clone(),
                name: segs.get(1).map(|s| s.to_string()).unwrap_or_default(),
                backup,
                force: f.bool("force")?.unwrap_or(false),
            })
            .await?;
            Ok(no_content())
        }
        (["cache-config"], Operation::Read) => {
            let c = t
                .read_cache_config(pb::MountRequest {
                    mount: m.uuid.clone(),
                })
                .await?
                .into_inner();
            Ok(data(json!({ "size": c.size }), vec![]))
        }
        (["cache-config"], Operation::Write) => {
            let body = json_object(&req.body)?;
            let size = u32_field(&Fields(&body), "size")?;
            let c = t
                .write_cache_config(pb::WriteCacheConfigRequest {
                    mount: m.uuid.clone(),
                    size,
                })
                .await?
                .into_inner();
            Ok(data(
                json!({ "size": c.size }),
                vec!["cache configurations will be applied when this backend is restarted".into()],
            ))
        }
        (
            ["keys" | "encrypt" | "decrypt" | "rewrap" | "datakey" | "hmac" | "sign" | "verify"
            | "hash" | "random" | "export" | "backup" | "restore" | "cache-config", ..],
            _,
        ) => Err(ApiError::unsupported_operation()),
        _ => Err(unsupported_path()),
    }
}

async fn encrypt(
    gw: &Gateway,
    req: &ApiRequest,
    m: &MountEntry,
    name: &str,
    caps: &[String],
) -> Result<Response, ApiError> {
    let body = json_object(&req.body)?;
    let f = Fields(&body);
    let (requests, batch) = items(&body)?;
    let key_version = u32_field(&f, "key_version")?;
    let decoded: Vec<Result<pb::EncryptItem, ItemError>> = requests
        .iter()
        .map(|it| {
            let i = Fields(it);
            Ok(pb::EncryptItem {
                plaintext: b64_required(&i, "plaintext", "missing plaintext to encrypt")?,
                context: b64(&i, "context")?,
                nonce: b64(&i, "nonce")?,
                associated_data: b64(&i, "associated_data")?,
                key_version: if batch {
                    i.u32("key_version").map_err(item_error)?.unwrap_or(0)
                } else {
                    0
                },
            })
        })
        .collect();
    // Upsert: Vault derives the new key when the (first) request carries
    // a context.
    let derived = decoded
        .first()
        .and_then(|d| d.as_ref().ok())
        .is_some_and(|i| !i.context.is_empty());
    let upsert = pb::Upsert {
        allowed: caps.iter().any(|c| c == "create" || c == "root"),
        r#type: f.string("type")?.unwrap_or_default(),
        derived,
        convergent_encryption: f.bool("convergent_encryption")?.unwrap_or(false),
    };
    let mount = m.uuid.clone();
    let name = name.to_string();
    let outcomes = per_item(decoded, |good| async move {
        let r = gw
            .transit()
            .encrypt(pb::EncryptRequest {
                mount,
                name,
                key_version,
                items: good,
                upsert: Some(upsert),
            })
            .await
            .map_err(|s| {
                if s.code() == tonic::Code::NotFound {
                    // A request against a missing key is a `create`, which
                    // the caller's policy does not grant.
                    ApiError::permission_denied()
                } else {
                    ApiError::from(s)
                }
            })?
            .into_inner();
        Ok(r.results
            .into_iter()
            .map(|c| {
                Outcome::from_service(
                    c.error,
                    c.internal,
                    json!({ "ciphertext": c.ciphertext, "key_version": c.key_version }),
                )
            })
            .collect())
    })
    .await?;
    reply(outcomes, &requests, batch, &body)
}

fn decrypt_items(requests: &[Map<String, Value>]) -> Vec<Result<pb::DecryptItem, ItemError>> {
    requests
        .iter()
        .map(|it| {
            let i = Fields(it);
            let ciphertext = string_field(&i, "ciphertext")?;
            if ciphertext.is_empty() {
                return Err("missing ciphertext to decrypt".to_string());
            }
            Ok(pb::DecryptItem {
                ciphertext,
                context: b64(&i, "context")?,
                nonce: b64(&i, "nonce")?,
                associated_data: b64(&i, "associated_data")?,
            })
        })
        .collect()
}

async fn decrypt(
    gw: &Gateway,
    req: &ApiRequest,
    m: &MountEntry,
    name: &str,
) -> Result<Response, ApiError> {
    let body = json_object(&req.body)?;
    let (requests, batch) = items(&body)?;
    let mount = m.uuid.clone();
    let name = name.to_string();
    let outcomes = per_item(decrypt_items(&requests), |good| async move {
        let r = gw
            .transit()
            .decrypt(pb::DecryptRequest {
                mount,
                name,
                items: good,
            })
            .await?
            .into_inner();
        Ok(r.results
            .into_iter()
            .map(|p| {
                Outcome::from_service(
                    p.error,
                    p.internal,
                    json!({ "plaintext": STANDARD.encode(&p.plaintext) }),
                )
            })
            .collect())
    })
    .await?;
    reply(outcomes, &requests, batch, &body)
}

async fn rewrap(
    gw: &Gateway,
    req: &ApiRequest,
    m: &MountEntry,
    name: &str,
) -> Result<Response, ApiError> {
    let body = json_object(&req.body)?;
    let key_version = u32_field(&Fields(&body), "key_version")?;
    let (requests, batch) = items(&body)?;
    let mount = m.uuid.clone();
    let name = name.to_string();
    let outcomes = per_item(decrypt_items(&requests), |good| async move {
        let r = gw
            .transit()
            .rewrap(pb::RewrapRequest {
                mount,
                name,
                key_version,
                items: good,
            })
            .await?
            .into_inner();
        Ok(r.results
            .into_iter()
            .map(|c| {
                Outcome::from_service(
                    c.error,
                    c.internal,
                    json!({ "ciphertext": c.ciphertext, "key_version": c.key_version }),
                )
            })
            .collect())
    })
    .await?;
    reply(outcomes, &requests, batch, &body)
}

async fn hmac(
    gw: &Gateway,
    req: &ApiRequest,
    m: &MountEntry,
    name: &str,
    path_algorithm: Option<&str>,
) -> Result<Response, ApiError> {
    let body = json_object(&req.body)?;
    let f = Fields(&body);
    let algorithm = match path_algorithm {
        Some(a) => a.to_string(),
        None => f.string("algorithm")?.unwrap_or_default(),
    };
    let key_version = u32_field(&f, "key_version")?;
    let (requests, batch) = items(&body)?;
    let decoded: Vec<Result<Vec<u8>, ItemError>> = requests
        .iter()
        .map(|it| b64_required(&Fields(it), "input", "missing input for HMAC"))
        .collect();
    let mount = m.uuid.clone();
    let name = name.to_string();
    let outcomes = per_item(decoded, |good| async move {
        let r = gw
            .transit()
            .hmac(pb::HmacRequest {
                mount,
                name,
                algorithm,
                key_version,
                inputs: good,
            })
            .await?
            .into_inner();
        Ok(r.results
            .into_iter()
            .map(|h| Outcome::from_service(h.error, h.internal, json!({ "hmac": h.hmac })))
            .collect())
    })
    .await?;
    reply(outcomes, &requests, batch, &body)
}

/// Vault's signature parameters (the hash algorithm from the path wins).
fn signature_options(
    f: &Fields<'_>,
    path_algorithm: Option<&str>,
) -> Result<pb::SignatureOptions, ApiError> {
    let hash_algorithm = match path_algorithm {
        Some(a) => a.to_string(),
        None => match f.string("hash_algorithm")? {
            Some(a) => a,
            None => f.string("algorithm")?.unwrap_or_default(),
        },
    };
    Ok(pb::SignatureOptions {
        hash_algorithm,
        prehashed: f.bool("prehashed")?.unwrap_or(false),
        signature_algorithm: f.string("signature_algorithm")?.unwrap_or_default(),
        marshaling_algorithm: f.string("marshaling_algorithm")?.unwrap_or_default(),
        salt_length: f.string("salt_length")?.unwrap_or_default(),
    })
}

async fn sign(
    gw: &Gateway,
    req: &ApiRequest,
    m: &MountEntry,
    name: &str,
    path_algorithm: Option<&str>,
) -> Result<Response, ApiError> {
    let body = json_object(&req.body)?;
    let f = Fields(&body);
    let options = signature_options(&f, path_algorithm)?;
    let key_version = u32_field(&f, "key_version")?;
    let (requests, batch) = items(&body)?;
    let decoded: Vec<Result<pb::SignItem, ItemError>> = requests
        .iter()
        .map(|it| {
            let i = Fields(it);
            Ok(pb::SignItem {
                input: b64_required(&i, "input", "missing input")?,
                context: b64(&i, "context")?,
            })
        })
        .collect();
    let mount = m.uuid.clone();
    let name = name.to_string();
    let outcomes = per_item(decoded, |good| async move {
        let r = gw
            .transit()
            .sign(pb::SignRequest {
                mount,
                name,
                key_version,
                options: Some(options),
                items: good,
            })
            .await?
            .into_inner();
        Ok(r.results
            .into_iter()
            .map(|s| {
                let mut v = json!({ "signature": s.signature, "key_version": s.key_version });
                if !s.public_key.is_empty() {
                    // Vault's batch items say `publickey`, single answers
                    // `public_key`.
                    v[if batch { "publickey" } else { "public_key" }] = json!(s.public_key);
                }
                Outcome::from_service(s.error, s.internal, v)
            })
            .collect())
    })
    .await?;
    reply(outcomes, &requests, batch, &body)
}

async fn verify(
    gw: &Gateway,
    req: &ApiRequest,
    m: &MountEntry,
    name: &str,
    path_algorithm: Option<&str>,
) -> Result<Response, ApiError> {
    let body = json_object(&req.body)?;
    let f = Fields(&body);
    let options = signature_options(&f, path_algorithm)?;
    let (requests, batch) = items(&body)?;
    // Every item verifies the same kind of thing.
    let kinds: Vec<(bool, bool)> = requests
        .iter()
        .map(|it| {
            let i = Fields(it);
            (i.present("signature"), i.present("hmac"))
        })
        .collect();
    if batch && kinds.iter().any(|k| k.0) && kinds.iter().any(|k| k.1) {
        return Err(ApiError::bad_request(
            "batch items must all supply either hmac or signature, not a mix",
        ));
    }
    let decoded: Vec<Result<pb::VerifyItem, ItemError>> = requests
        .iter()
        .map(|it| {
            let i = Fields(it);
            Ok(pb::VerifyItem {
                input: b64_required(&i, "input", "missing input")?,
                context: b64(&i, "context")?,
                signature: string_field(&i, "signature")?,
                hmac: string_field(&i, "hmac")?,
            })
        })
        .collect();
    let mount = m.uuid.clone();
    let name = name.to_string();
    let outcomes = per_item(decoded, |good| async move {
        let r = gw
            .transit()
            .verify(pb::VerifyRequest {
                mount,
                name,
                options: Some(options),
                items: good,
            })
            .await?
            .into_inner();
        Ok(r.results
            .into_iter()
            .map(|v| Outcome::from_service(v.error, v.internal, json!({ "valid": v.valid })))
            .collect())
    })
    .await?;
    reply(outcomes, &requests, batch, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn items_single_and_batch() {
        let (one, batch) = items(&obj(json!({"plaintext": "eA=="}))).unwrap();
        assert!(!batch);
        assert_eq!(one.len(), 1);
        let (many, batch) = items(&obj(
            json!({"plaintext": "x", "batch_input": [{"plaintext": "eA=="}, {}]}),
        ))
        .unwrap();
        assert!(batch);
        assert_eq!(many.len(), 2);
        assert!(items(&obj(json!({"batch_input": []}))).is_err());
        assert!(items(&obj(json!({"batch_input": "x"}))).is_err());
        assert!(items(&obj(json!({"batch_input": [1]}))).is_err());
        // JSON null is absent.
        assert!(!items(&obj(json!({"batch_input": null}))).unwrap().1);
    }

    #[test]
    fn base64_fields() {
        let m = obj(json!({"a": "aGk=", "bad": "**", "n": null}));
        let f = Fields(&m);
        assert_eq!(b64(&f, "a").unwrap(), b"hi");
        assert_eq!(b64(&f, "n").unwrap(), b"");
        assert_eq!(b64(&f, "missing").unwrap(), b"");
        assert_eq!(b64(&f, "bad").unwrap_err(), "failed to base64-decode bad");
        assert_eq!(
            b64_required(&f, "missing", "missing plaintext").unwrap_err(),
            "missing plaintext"
        );
        assert_eq!(
            b64_required(&f, "n", "missing plaintext").unwrap_err(),
            "missing plaintext"
        );
    }

    #[tokio::test]
    async fn per_item_keeps_order_around_local_failures() {
        let decoded = vec![Ok(1), Err("bad".to_string()), Ok(3)];
        let out = per_item(decoded, |good: Vec<i32>| async move {
            assert_eq!(good, vec![1, 3]);
            Ok(good
                .into_iter()
                .map(|n| Outcome::ok(json!({ "n": n })))
                .collect())
        })
        .await
        .unwrap();
        assert!(matches!(&out[0], Outcome::Ok(m) if m["n"] == 1));
        assert!(matches!(&out[1], Outcome::Err { message, internal: false } if message == "bad"));
        assert!(matches!(&out[2], Outcome::Ok(m) if m["n"] == 3));
    }

    async fn status_and_body(r: Response) -> (u16, Value) {
        let status = r.status().as_u16();
        let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn batch_replies_follow_vault() {
        let reqs = vec![obj(json!({"reference": "a"})), obj(json!({}))];
        let outcomes = || {
            vec![
                Outcome::ok(json!({"ciphertext": "vault:v1:x"})),
                Outcome::user("missing plaintext to encrypt".into()),
            ]
        };
        let (status, body) =
            status_and_body(reply(outcomes(), &reqs, true, &Map::new()).unwrap()).await;
        assert_eq!(status, 400);
        let results = &body["data"]["batch_results"];
        assert_eq!(results[0]["reference"], "a");
        assert_eq!(results[0]["ciphertext"], "vault:v1:x");
        assert_eq!(results[1]["reference"], "");
        assert_eq!(results[1]["error"], "missing plaintext to encrypt");
        // partial_failure_response_code applies when something succeeded.
        let body_in = obj(json!({"partial_failure_response_code": 207}));
        let (status, _) = status_and_body(reply(outcomes(), &reqs, true, &body_in).unwrap()).await;
        assert_eq!(status, 207);
        let (status, body) = status_and_body(
            reply(
                outcomes(),
                &reqs,
                true,
                &obj(json!({"partial_failure_response_code": 900})),
            )
            .unwrap(),
        )
        .await;
        assert_eq!(status, 400);
        assert!(body["warnings"][0].as_str().unwrap().contains("reverting"));
        // Everything fine: 200.
        let (status, _) = status_and_body(
            reply(
                vec![Outcome::ok(json!({})), Outcome::ok(json!({}))],
                &reqs,
                true,
                &Map::new(),
            )
            .unwrap(),
        )
        .await;
        assert_eq!(status, 200);
        // A single request's failure is a plain error.
        let e = reply(
            vec![Outcome::user("bad".into())],
            &reqs[..1],
            false,
            &Map::new(),
        )
        .unwrap_err();
        assert_eq!(
            (e.status.as_u16(), e.errors.clone()),
            (400, vec!["bad".to_string()])
        );
        let e = reply(
            vec![Outcome::Err {
                message: "internal error".into(),
                internal: true,
            }],
            &reqs[..1],
            false,
            &Map::new(),
        )
        .unwrap_err();
        assert_eq!(e.status.as_u16(), 500);
    }

    #[test]
    fn key_reads_have_vaults_shape() {
        let k = pb::KeyInfo {
            name: "k".into(),
            r#type: "ecdsa-p256".into(),
            latest_version: 1,
            min_decryption_version: 1,
            asymmetric: true,
            supports_signing: true,
            versions: vec![pb::KeyVersionInfo {
                version: 1,
                creation_time: 1_700_000_000,
                name: "P-256".into(),
                public_key: "-----BEGIN PUBLIC KEY-----".into(),
            }],
            ..Default::default()
        };
        let v = key_json(&k);
        assert_eq!(v["keys"]["1"]["name"], "P-256");
        assert_eq!(v["keys"]["1"]["creation_time"], "2023-11-14T22:13:20Z");
        assert_eq!(v["min_encryption_version"], 0);
        assert!(v.get("kdf").is_none());
        let sym = key_json(&pb::KeyInfo {
            derived: true,
            versions: vec![pb::KeyVersionInfo {
                version: 1,
                creation_time: 42,
                ..Default::default()
            }],
            ..Default::default()
        });
        assert_eq!(sym["keys"]["1"], 42);
        assert_eq!(sym["kdf"], "hkdf_sha256");
    }
}
