//! kv v1, kv v2 and cubbyhole mounts: Vault's paths and JSON shapes over the
//! kv service. Cubbyhole keys are prefixed with the caller's token accessor,
//! so each token sees only its own.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bulwark_proto::kv::v1::{
    KeyMetadata, KeyRequest, Kind, MountRequest, PutRequest, ReadVersionRequest, VersionMetadata,
    VersionsRequest, WriteConfigRequest, WriteMetadataRequest, WriteVersionRequest,
};
use bulwark_proto::policy::v1::Operation as PolicyOp;
use bulwark_shared::ttl::{format_go_duration, parse_duration_value};
use serde_json::{json, Map, Value};

use crate::acl::Caller;
use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::mounts::MountEntry;
use crate::request::{json_object, Fields, Operation};
use crate::{ApiRequest, Gateway};

const INVALID_V2_PATH: &str = "Invalid path for a versioned K/V secrets engine. See the API docs for the appropriate API endpoints to use. If using the Vault CLI, use 'vault kv get' for this operation.";
const V2_ROOT: &str = "Non-listing operations on the root of a K/V v2 mount are not supported.";

/// How one request addresses the kv service.
struct Target {
    mount: String,
    kind: Kind,
    /// kv v1 / cubbyhole: the storage key (cubbyhole: prefixed by accessor).
    key: String,
}

fn target(m: &MountEntry, rest: &str, caller: &Caller) -> Result<Target, ApiError> {
    Ok(match m.kind.as_str() {
        // Batch tokens have no accessor, hence no cubbyhole (as in Vault).
        "cubbyhole" if caller.entry.accessor.is_empty() => {
            return Err(ApiError::bad_request(
                "cubbyhole is not available to batch tokens",
            ))
        }
        "cubbyhole" => Target {
            mount: "cubbyhole".into(),
            kind: Kind::Cubbyhole,
            key: format!("{}/{}", caller.entry.accessor, rest),
        },
        _ if m.kv_version() == 2 => Target {
            mount: m.uuid.clone(),
            kind: Kind::KvV2,
            key: rest.to_string(),
        },
        _ => Target {
            mount: m.uuid.clone(),
            kind: Kind::KvV1,
            key: rest.to_string(),
        },
    })
}

fn key_req(t: &Target, path: &str) -> KeyRequest {
    KeyRequest {
        mount: t.mount.clone(),
        kind: t.kind as i32,
        path: path.to_string(),
    }
}

/// The ACL operation of a write: `create` when nothing is stored yet, else
/// `update` (Vault's existence check).
pub async fn write_op(
    gw: &Gateway,
    m: &MountEntry,
    rest: &str,
    caller: &Caller,
) -> Result<PolicyOp, ApiError> {
    let t = target(m, rest, caller)?;
    let key = match t.kind {
        Kind::KvV2 => match rest.split_once('/') {
            Some(("data" | "metadata", k)) if !k.is_empty() => k.to_string(),
            _ => return Ok(PolicyOp::Update),
        },
        _ => t.key.clone(),
    };
    let exists = gw.kv().exists(key_req(&t, &key)).await?.into_inner().exists;
    Ok(if exists {
        PolicyOp::Update
    } else {
        PolicyOp::Create
    })
}

fn time(nanos: i64) -> Value {
    if nanos == 0 {
        return json!("");
    }
    json!(chrono::DateTime::from_timestamp_nanos(nanos)
        .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
}

fn custom(m: &HashMap<String, String>) -> Value {
    if m.is_empty() {
        Value::Null
    } else {
        serde_json::to_value(m).unwrap_or(Value::Null)
    }
}

fn version_json(v: &VersionMetadata) -> Value {
    json!({
        "created_time": time(v.created_time),
        "custom_metadata": custom(&v.custom_metadata),
        "deletion_time": time(v.deletion_time),
        "destroyed": v.destroyed,
        "version": v.version,
    })
}

fn metadata_json(m: &KeyMetadata) -> Value {
    let mut versions = Map::new();
    for (n, s) in &m.versions {
        versions.insert(
            n.to_string(),
            json!({"created_time": time(s.created_time), "deletion_time": time(s.deletion_time), "destroyed": s.destroyed}),
        );
    }
    json!({
        "cas_required": m.cas_required,
        "created_time": time(m.created_time),
        "current_version": m.current_version,
        "custom_metadata": custom(&m.custom_metadata),
        "delete_version_after": format_go_duration(Duration::from_secs(m.delete_version_after.max(0) as u64)),
        "max_versions": m.max_versions,
        "oldest_version": m.oldest_version,
        "updated_time": time(m.updated_time),
        "versions": versions,
    })
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// A 404 that still carries the envelope (Vault's clients rely on it).
fn not_found_envelope(env: Envelope) -> Response {
    let mut r = env.into_response();
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

fn map_not_found(s: tonic::Status) -> ApiError {
    if s.code() == tonic::Code::NotFound {
        ApiError::not_found()
    } else {
        s.into()
    }
}

fn query<'a>(req: &'a ApiRequest, key: &str) -> Option<&'a str> {
    req.query
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn parse_u64(v: Option<&str>, what: &str) -> Result<u64, ApiError> {
    match v {
        None | Some("") => Ok(0),
        Some(s) => s
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid {what} {s:?}"))),
    }
}

fn json_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("JSON value serializes")
}

fn versions_field(body: &Map<String, Value>) -> Result<Vec<u64>, ApiError> {
    let bad = || ApiError::bad_request("versions must be a list of version numbers");
    let one = |v: &Value| match v {
        Value::Number(n) => n.as_u64().ok_or_else(bad),
        Value::String(s) => s.trim().parse::<u64>().map_err(|_| bad()),
        _ => Err(bad()),
    };
    match body.get("versions") {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(a)) => a.iter().map(one).collect(),
        Some(Value::String(s)) => s
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|p| one(&json!(p)))
            .collect(),
        Some(v @ Value::Number(_)) => Ok(vec![one(v)?]),
        Some(_) => Err(bad()),
    }
}

fn cas_field(body: &Map<String, Value>) -> Result<Option<u64>, ApiError> {
    let options = match body.get("options") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(o)) => o,
        Some(_) => return Err(ApiError::bad_request("options must be an object")),
    };
    match options.get("cas") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| ApiError::bad_request("error parsing check-and-set parameter")),
        Some(Value::String(s)) => s
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request("error parsing check-and-set parameter")),
        Some(_) => Err(ApiError::bad_request(
            "error parsing check-and-set parameter",
        )),
    }
}

/// Subkeys: the data's structure with every leaf replaced by null, down to
/// `depth` levels (0 = all).
fn subkeys(v: &Value, depth: u64, level: u64) -> Value {
    match v {
        Value::Object(m) if depth == 0 || level < depth => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), subkeys(v, depth, level + 1)))
                .collect(),
        ),
        _ => Value::Null,
    }
}

async fn list(
    gw: &Gateway,
    t: &Target,
    path: &str,
    mount_type: &str,
) -> Result<Response, ApiError> {
    let mut prefix = path.to_string();
    if !prefix.is_empty() && !prefix.ends_with('/') {
        prefix.push('/');
    }
    if t.kind == Kind::Cubbyhole {
        let accessor = t.key.split_once('/').map_or("", |(a, _)| a);
        prefix = format!("{accessor}/{prefix}");
    }
    let keys = gw.kv().list(key_req(t, &prefix)).await?.into_inner().keys;
    if keys.is_empty() {
        return Err(ApiError::not_found());
    }
    Ok(Envelope::data(json!({ "keys": keys }), mount_type).into_response())
}

/// Reads a kv v2 version (`?version=`) and answers `{<field>: shape(data),
/// metadata}`. A deleted or destroyed version is a 404 that still carries the
/// metadata, as Vault's clients expect.
async fn read_shaped(
    gw: &Gateway,
    req: &ApiRequest,
    mount: String,
    key: &str,
    field: &str,
    shape: impl Fn(&Value) -> Value,
) -> Result<Response, ApiError> {
    let version = parse_u64(query(req, "version"), "version")?;
    let r = gw
        .kv()
        .read_version(ReadVersionRequest {
            mount,
            path: key.into(),
            version,
        })
        .await?
        .into_inner();
    if !r.found {
        return Err(ApiError::not_found());
    }
    let mut body = Map::new();
    body.insert(
        "metadata".into(),
        r.metadata.as_ref().map(version_json).unwrap_or(Value::Null),
    );
    if r.deleted {
        body.insert(field.into(), Value::Null);
        return Ok(not_found_envelope(Envelope::data(
            Value::Object(body),
            "kv",
        )));
    }
    let data: Value = serde_json::from_slice(&r.data).unwrap_or(Value::Null);
    body.insert(field.into(), shape(&data));
    Ok(Envelope::data(Value::Object(body), "kv").into_response())
}

/// kv v1 and cubbyhole.
async fn flat(
    gw: &Gateway,
    req: &ApiRequest,
    op: Operation,
    m: &MountEntry,
    t: Target,
    rest: &str,
) -> Result<Response, ApiError> {
    let mount_type = m.kind.as_str();
    match op {
        Operation::List => list(gw, &t, rest, mount_type).await,
        _ if rest.is_empty() => Err(ApiError::unsupported_operation()),
        Operation::Read => {
            let got = gw.kv().get(key_req(&t, &t.key)).await?.into_inner();
            if !got.found {
                return Err(ApiError::not_found());
            }
            let data: Value = serde_json::from_slice(&got.data).unwrap_or(Value::Null);
            let mut env = Envelope::data(data.clone(), mount_type);
            if t.kind == Kind::KvV1 {
                // Vault reports the mount's TTL (or a stored `ttl`) though no lease exists.
                let ttl = ["ttl", "lease"]
                    .iter()
                    .find_map(|k| data.get(*k))
                    .and_then(|v| parse_duration_value(v).ok().flatten())
                    .map(|d| d.as_secs());
                env.lease_duration = ttl.unwrap_or_else(|| m.default_lease_ttl());
            }
            Ok(env.into_response())
        }
        Operation::Write => {
            let body = json_object(&req.body)?;
            if body.is_empty() {
                return Err(ApiError::bad_request("missing data fields"));
            }
            gw.kv()
                .put(PutRequest {
                    mount: t.mount.clone(),
                    kind: t.kind as i32,
                    path: t.key.clone(),
                    data: json_bytes(&Value::Object(body)),
                })
                .await?;
            Ok(no_content())
        }
        Operation::Delete => {
            gw.kv().delete(key_req(&t, &t.key)).await?;
            Ok(no_content())
        }
        _ => Err(ApiError::unsupported_operation()),
    }
}

/// kv v2: `data/`, `metadata/`, `delete/`, `undelete/`, `destroy/`, `subkeys/`, `config`.
async fn versioned(
    gw: &Gateway,
    req: &ApiRequest,
    op: Operation,
    m: &MountEntry,
    t: Target,
    rest: &str,
) -> Result<Response, ApiError> {
    let (family, key) = rest.split_once('/').unwrap_or((rest, ""));
    let mount = t.mount.clone();
    let kv = || gw.kv();
    match (family, op) {
        ("config", Operation::Read) if key.is_empty() => {
            let c = kv().read_config(MountRequest { mount }).await?.into_inner();
            Ok(Envelope::data(
                json!({
                    "cas_required": c.cas_required,
                    "delete_version_after": format_go_duration(Duration::from_secs(c.delete_version_after.max(0) as u64)),
                    "max_versions": c.max_versions,
                }),
                "kv",
            )
            .into_response())
        }
        ("config", Operation::Write) if key.is_empty() => {
            let body = json_object(&req.body)?;
            let f = Fields(&body);
            kv().write_config(WriteConfigRequest {
                mount,
                max_versions: f.u32("max_versions")?,
                cas_required: f.bool("cas_required")?,
                delete_version_after: f.duration_secs("delete_version_after")?.map(|s| s as i64),
            })
            .await?;
            Ok(no_content())
        }
        ("metadata", Operation::List) => list(gw, &t, key, "kv").await,
        ("data" | "metadata" | "delete" | "undelete" | "destroy" | "subkeys", _)
            if key.is_empty() =>
        {
            Ok(not_found_envelope(
                Envelope::new("kv").with_warnings(vec![V2_ROOT.into()]),
            ))
        }
        ("data", Operation::Read) => read_shaped(gw, req, mount, key, "data", Value::clone).await,
        ("data", Operation::Write | Operation::Patch) => {
            if op == Operation::Patch {
                let ct = req
                    .headers
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if !ct.starts_with("application/merge-patch+json") {
                    return Err(ApiError::new(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        format!(
                            "PATCH requires Content-Type application/merge-patch+json, not {ct:?}"
                        ),
                    ));
                }
            }
            let body = json_object(&req.body)?;
            let data = body.get("data").cloned().unwrap_or(Value::Null);
            if !data.is_object() {
                return Err(ApiError::bad_request("no data provided"));
            }
            let w = WriteVersionRequest {
                mount: mount.clone(),
                path: key.into(),
                data: json_bytes(&data),
                cas: cas_field(&body)?,
            };
            let meta = if op == Operation::Patch {
                match kv().patch_version(w).await {
                    Ok(m) => m,
                    // A deleted or destroyed current version: a 404 that
                    // still carries its metadata, as Vault answers.
                    Err(s) if s.code() == tonic::Code::NotFound => {
                        return read_shaped(gw, req, mount, key, "data", Value::clone)
                            .await
                            .map(|mut r| {
                                *r.status_mut() = StatusCode::NOT_FOUND;
                                r
                            });
                    }
                    Err(s) => return Err(s.into()),
                }
            } else {
                kv().write_version(w).await?
            }
            .into_inner();
            Ok(Envelope::data(version_json(&meta), "kv").into_response())
        }
        ("data", Operation::Delete) => {
            kv().delete_versions(VersionsRequest {
                mount,
                path: key.into(),
                versions: vec![],
            })
            .await?;
            Ok(no_content())
        }
        ("delete" | "undelete" | "destroy", Operation::Write) => {
            let body = json_object(&req.body)?;
            let versions = versions_field(&body)?;
            if versions.is_empty() {
                return Err(ApiError::bad_request("No version number provided"));
            }
            let r = VersionsRequest {
                mount,
                path: key.into(),
                versions,
            };
            match family {
                "delete" => kv().delete_versions(r).await?,
                "undelete" => kv().undelete_versions(r).await?,
                _ => kv().destroy_versions(r).await?,
            };
            Ok(no_content())
        }
        ("metadata", Operation::Read) => {
            let md = kv()
                .read_metadata(key_req(&t, key))
                .await
                .map_err(map_not_found)?
                .into_inner();
            Ok(Envelope::data(metadata_json(&md), "kv").into_response())
        }
        ("metadata", Operation::Write | Operation::Patch) => {
            let body = json_object(&req.body)?;
            let f = Fields(&body);
            let patch = op == Operation::Patch;
            let mut set = HashMap::new();
            let mut remove = Vec::new();
            let has_custom = match body.get("custom_metadata") {
                None | Some(Value::Null) => false,
                Some(Value::Object(cm)) => {
                    for (k, v) in cm {
                        match v {
                            Value::String(s) => {
                                set.insert(k.clone(), s.clone());
                            }
                            Value::Null if patch => remove.push(k.clone()),
                            _ => {
                                return Err(ApiError::bad_request(
                                    "custom_metadata values must be strings",
                                ))
                            }
                        }
                    }
                    true
                }
                Some(_) => {
                    return Err(ApiError::bad_request(
                        "custom_metadata must be a map of strings",
                    ))
                }
            };
            kv().write_metadata(WriteMetadataRequest {
                mount,
                path: key.into(),
                max_versions: f.u32("max_versions")?,
                cas_required: f.bool("cas_required")?,
                delete_version_after: f.duration_secs("delete_version_after")?.map(|s| s as i64),
                custom_metadata: set,
                set_custom_metadata: has_custom && !patch,
                remove_custom_metadata: remove,
                patch,
            })
            .await
            .map_err(map_not_found)?;
            Ok(no_content())
        }
        ("metadata", Operation::Delete) => {
            kv().delete_metadata(key_req(&t, key)).await?;
            Ok(no_content())
        }
        ("subkeys", Operation::Read) => {
            let depth = parse_u64(query(req, "depth"), "depth")?;
            read_shaped(gw, req, mount, key, "subkeys", |d| subkeys(d, depth, 0)).await
        }
        ("data" | "metadata" | "delete" | "undelete" | "destroy" | "subkeys" | "config", _) => {
            Err(ApiError::unsupported_operation())
        }
        _ => {
            let _ = m;
            Ok(not_found_envelope(
                Envelope::new("kv").with_warnings(vec![INVALID_V2_PATH.into()]),
            ))
        }
    }
}

/// Serves a request routed to a kv or cubbyhole mount (already authorized).
pub async fn handle(
    gw: &Gateway,
    req: ApiRequest,
    op: Operation,
    m: &MountEntry,
    rest: &str,
    caller: &Caller,
) -> Result<Response, ApiError> {
    let t = target(m, rest, caller)?;
    match t.kind {
        Kind::KvV2 => versioned(gw, &req, op, m, t, rest).await,
        _ => flat(gw, &req, op, m, t, rest).await,
    }
}

/// Moves a kv v1 mount's data to kv v2 (each entry becomes version 1), before
/// the mount's `options.version` is set to 2.
pub async fn upgrade_v1_to_v2(gw: &Gateway, m: &MountEntry) -> Result<(), ApiError> {
    let v1 = |path: &str| KeyRequest {
        mount: m.uuid.clone(),
        kind: Kind::KvV1 as i32,
        path: path.to_string(),
    };
    let mut folders = vec![String::new()];
    while let Some(folder) = folders.pop() {
        for k in gw.kv().list(v1(&folder)).await?.into_inner().keys {
            let path = format!("{folder}{k}");
            if k.ends_with('/') {
                folders.push(path);
                continue;
            }
            let got = gw.kv().get(v1(&path)).await?.into_inner();
            if got.found {
                gw.kv()
                    .write_version(WriteVersionRequest {
                        mount: m.uuid.clone(),
                        path: path.clone(),
                        data: got.data,
                        cas: None,
                    })
                    .await?;
            }
            gw.kv().delete(v1(&path)).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subkeys_replace_leaves() {
        let v = json!({"a": 1, "b": {"c": "x", "d": {"e": true}}});
        assert_eq!(
            subkeys(&v, 0, 0),
            json!({"a": null, "b": {"c": null, "d": {"e": null}}})
        );
        assert_eq!(subkeys(&v, 1, 0), json!({"a": null, "b": null}));
    }

    #[test]
    fn versions_accept_numbers_and_strings() {
        let m = json_object(br#"{"versions":[1,"2"]}"#).unwrap();
        assert_eq!(versions_field(&m).unwrap(), vec![1, 2]);
        let m = json_object(br#"{"versions":"3,4"}"#).unwrap();
        assert_eq!(versions_field(&m).unwrap(), vec![3, 4]);
        let m = json_object(br#"{"versions":[true]}"#).unwrap();
        assert!(versions_field(&m).is_err());
    }

    #[test]
    fn cas_parsing() {
        let m = json_object(br#"{"options":{"cas":2}}"#).unwrap();
        assert_eq!(cas_field(&m).unwrap(), Some(2));
        let m = json_object(br#"{"options":{}}"#).unwrap();
        assert_eq!(cas_field(&m).unwrap(), None);
        let m = json_object(br#"{"options":{"cas":"x"}}"#).unwrap();
        assert!(cas_field(&m).is_err());
        let m = json_object(br#"{"options":{"cas":-1}}"#).unwrap();
        assert!(cas_field(&m).is_err());
    }
}
