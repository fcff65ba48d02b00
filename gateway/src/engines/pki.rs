//! `pki` mounts: Vault's PKI paths over the pki service. CA and CRL fetches
//! (`ca`, `ca/pem`, `ca_chain`, `crl`, `crl/pem`) answer raw DER/PEM without
//! an envelope, as Vault does.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use bulwark_proto::pki::v1 as pb;
use serde_json::{json, Value};

use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::mounts::MountEntry;
use crate::reply::{keys_response, no_content, unsupported_path};
use crate::request::{json_object, Fields, Operation};
use crate::{ApiRequest, Gateway};

const MOUNT_TYPE: &str = "pki";

fn mount_req(m: &MountEntry) -> pb::MountRequest {
    pb::MountRequest {
        mount: m.uuid.clone(),
    }
}

fn mount_ttl(m: &MountEntry) -> Option<pb::MountTtl> {
    Some(pb::MountTtl {
        default_ttl: m.default_lease_ttl() as i64,
        max_ttl: m.max_lease_ttl() as i64,
    })
}

fn raw(content_type: &'static str, body: Vec<u8>) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

fn data(v: Value, warnings: Vec<String>) -> Response {
    Envelope::data(v, MOUNT_TYPE)
        .with_warnings(warnings)
        .into_response()
}

fn list(f: &Fields<'_>, key: &str) -> Result<Vec<String>, ApiError> {
    Ok(f.list_any(&[key])?.unwrap_or_default())
}

fn key_bits(f: &Fields<'_>) -> Result<i32, ApiError> {
    Ok(f.u32("key_bits")?
        .map(|b| i32::try_from(b).unwrap_or(i32::MAX))
        .unwrap_or(0))
}

fn max_path_length(f: &Fields<'_>) -> Result<i32, ApiError> {
    match f.0.get("max_path_length") {
        None | Some(Value::Null) => Ok(-1),
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| ApiError::bad_request("max_path_length must be an integer")),
    }
}

/// Paths Vault serves without a token (CA and CRL distribution, issued
/// certificates by serial): `ca`, `ca/pem`, `ca_chain`, `crl`, `crl/pem`,
/// `cert/<serial>`, `issuer/<ref>`, `issuers` (reads only).
pub fn is_public(rest: &str, op: Operation) -> bool {
    let rest = rest.trim_end_matches('/');
    let public = matches!(rest, "ca" | "ca/pem" | "ca_chain" | "crl" | "crl/pem")
        || rest.strip_prefix("cert/").is_some_and(|s| !s.contains('/'))
        || rest
            .strip_prefix("issuer/")
            .is_some_and(|s| !s.contains('/'));
    (public && op == Operation::Read) || (rest == "issuers" && op == Operation::List)
}

pub async fn handle(
    gw: &Gateway,
    req: ApiRequest,
    op: Operation,
    m: &MountEntry,
    rest: &str,
) -> Result<Response, ApiError> {
    let rest = rest.trim_end_matches('/');
    let segs: Vec<&str> = rest.split('/').collect();
    let mut pki = gw.pki();
    match (segs.as_slice(), op) {
        (["ca"] | ["cert", "ca"], Operation::Read)
        | (["ca", "pem"] | ["ca_chain"], Operation::Read) => {
            let ca = pki.get_ca(mount_req(m)).await?.into_inner();
            if !ca.found {
                return Err(ApiError::not_found());
            }
            Ok(match segs.as_slice() {
                ["ca"] => raw("application/pkix-cert", ca.certificate_der),
                ["cert", "ca"] => data(json!({ "certificate": ca.certificate_pem }), vec![]),
                ["ca_chain"] => raw(
                    "application/pem-certificate-chain",
                    ca.ca_chain_pem.into_bytes(),
                ),
                _ => raw(
                    "application/pem-certificate-chain",
                    ca.certificate_pem.into_bytes(),
                ),
            })
        }
        (["crl"] | ["crl", "pem"] | ["cert", "crl"], Operation::Read) => {
            let crl = pki
                .crl(pb::CrlRequest {
                    mount: m.uuid.clone(),
                    issuer_ref: String::new(),
                })
                .await?
                .into_inner();
            if !crl.found {
                return Err(ApiError::not_found());
            }
            Ok(match segs.as_slice() {
                ["crl"] => raw("application/pkix-crl", crl.der),
                ["cert", "crl"] => data(json!({ "certificate": crl.pem }), vec![]),
                _ => raw("application/x-pem-file", crl.pem.into_bytes()),
            })
        }
        (["crl", "rotate"], Operation::Read) => {
            pki.rotate_crl(mount_req(m)).await?;
            Ok(data(json!({ "success": true }), vec![]))
        }
        (["root", "generate", kind @ ("internal" | "exported")], Operation::Write) => {
            let body = json_object(&req.body)?;
            let f = Fields(&body);
            let r = pki
                .generate_root(pb::GenerateRootRequest {
                    mount: m.uuid.clone(),
                    exported: *kind == "exported",
                    common_name: f.string("common_name")?.unwrap_or_default(),
                    alt_names: list(&f, "alt_names")?,
                    ip_sans: list(&f, "ip_sans")?,
                    ttl: f.secs(&["ttl"])?.unwrap_or(0),
                    mount_ttl: mount_ttl(m),
                    key_type: f.string("key_type")?.unwrap_or_default(),
                    key_bits: key_bits(&f)?,
                    issuer_name: f.string("issuer_name")?.unwrap_or_default(),
                    organization: list(&f, "organization")?,
                    ou: list(&f, "ou")?,
                    max_path_length: max_path_length(&f)?,
                    key_name: f.string("key_name")?.unwrap_or_default(),
                    private_key_format: f.string("private_key_format")?.unwrap_or_default(),
                })
                .await?
                .into_inner();
            let mut v = json!({
                "certificate": r.certificate,
                "issuing_ca": r.issuing_ca,
                "serial_number": r.serial_number,
                "expiration": r.expiration,
                "issuer_id": r.issuer_id,
                "issuer_name": r.issuer_name,
                "key_id": r.key_id,
                "key_name": r.key_name,
            });
            if !r.private_key.is_empty() {
                v["private_key"] = json!(r.private_key);
                v["private_key_type"] = json!(r.private_key_type);
            }
            Ok(data(v, r.warnings))
        }
        (["root"], Operation::Delete) => {
            pki.delete_root(mount_req(m)).await?;
            Ok(no_content())
        }
        (["intermediate", "generate", kind @ ("internal" | "exported")], Operation::Write) => {
            let body = json_object(&req.body)?;
            let f = Fields(&body);
            let r = pki
                .generate_intermediate(pb::GenerateIntermediateRequest {
                    mount: m.uuid.clone(),
                    exported: *kind == "exported",
                    common_name: f.string("common_name")?.unwrap_or_default(),
                    alt_names: list(&f, "alt_names")?,
                    ip_sans: list(&f, "ip_sans")?,
                    key_type: f.string("key_type")?.unwrap_or_default(),
                    key_bits: key_bits(&f)?,
                    organization: list(&f, "organization")?,
                    ou: list(&f, "ou")?,
                    key_name: f.string("key_name")?.unwrap_or_default(),
                    private_key_format: f.string("private_key_format")?.unwrap_or_default(),
                })
                .await?
                .into_inner();
            let mut v = json!({ "csr": r.csr, "key_id": r.key_id });
            if !r.private_key.is_empty() {
                v["private_key"] = json!(r.private_key);
                v["private_key_type"] = json!(r.private_key_type);
            }
            Ok(data(v, vec![]))
        }
        (["root", "sign-intermediate"], Operation::Write) => {
            let body = json_object(&req.body)?;
            let f = Fields(&body);
            let r = pki
                .sign_intermediate(pb::SignIntermediateRequest {
                    mount: m.uuid.clone(),
                    csr: f.string("csr")?.unwrap_or_default(),
                    common_name: f.string("common_name")?.unwrap_or_default(),
                    alt_names: list(&f, "alt_names")?,
                    ip_sans: list(&f, "ip_sans")?,
                    ttl: f.secs(&["ttl"])?.unwrap_or(0),
                    mount_ttl: mount_ttl(m),
                    max_path_length: max_path_length(&f)?,
                    use_csr_values: f.bool("use_csr_values")?.unwrap_or(false),
                    organization: list(&f, "organization")?,
                    ou: list(&f, "ou")?,
                    ..Default::default()
                })
                .await?
                .into_inner();
            Ok(issued(r, false))
        }
        (["intermediate", "set-signed"], Operation::Write)
        | (["config", "ca"], Operation::Write) => {
            let body = json_object(&req.body)?;
            let f = Fields(&body);
            let r = if segs[0] == "config" {
                pki.config_ca(pb::ConfigCaRequest {
                    mount: m.uuid.clone(),
                    pem_bundle: f.string("pem_bundle")?.unwrap_or_default(),
                })
                .await?
            } else {
                pki.set_signed(pb::SetSignedRequest {
                    mount: m.uuid.clone(),
                    certificate: f.string("certificate")?.unwrap_or_default(),
                })
                .await?
            }
            .into_inner();
            Ok(data(
                json!({
                    "imported_issuers": r.imported_issuers,
                    "imported_keys": r.imported_keys,
                    "existing_issuers": r.existing_issuers,
                    "existing_keys": r.existing_keys,
                    "mapping": r.mapping,
                }),
                vec![],
            ))
        }
        (["config", "urls"], Operation::Read) => {
            let u = pki.read_urls(mount_req(m)).await?.into_inner();
            Ok(data(urls_json(&u), vec![]))
        }
        (["config", "urls"], Operation::Write) => {
            let body = json_object(&req.body)?;
            let f = Fields(&body);
            let mut u = pki.read_urls(mount_req(m)).await?.into_inner();
            for (key, slot) in [
                ("issuing_certificates", &mut u.issuing_certificates),
                ("crl_distribution_points", &mut u.crl_distribution_points),
                ("ocsp_servers", &mut u.ocsp_servers),
            ] {
                if let Some(v) = f.list_any(&[key])? {
                    *slot = v;
                }
            }
            pki.write_urls(pb::WriteUrlsRequest {
                mount: m.uuid.clone(),
                urls: Some(u.clone()),
            })
            .await?;
            Ok(data(urls_json(&u), vec![]))
        }
        (["roles"], Operation::List) => keys_response(
            pki.list_roles(mount_req(m)).await?.into_inner().keys,
            MOUNT_TYPE,
        ),
        (["roles", name], op) => role(gw, &req, op, m, name).await,
        (["issue", role], Operation::Write) => {
            let body = json_object(&req.body)?;
            let f = Fields(&body);
            let r = pki
                .issue(pb::IssueRequest {
                    mount: m.uuid.clone(),
                    role: role.to_string(),
                    common_name: f.string("common_name")?.unwrap_or_default(),
                    alt_names: list(&f, "alt_names")?,
                    ip_sans: list(&f, "ip_sans")?,
                    ttl: f.secs(&["ttl"])?.unwrap_or(0),
                    mount_ttl: mount_ttl(m),
                    exclude_cn_from_sans: f.bool("exclude_cn_from_sans")?.unwrap_or(false),
                    private_key_format: f.string("private_key_format")?.unwrap_or_default(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            Ok(issued(r, true))
        }
        (["sign", _] | ["sign-verbatim"] | ["sign-verbatim", _], Operation::Write) => {
            let body = json_object(&req.body)?;
            let f = Fields(&body);
            let sign = pb::SignRequest {
                mount: m.uuid.clone(),
                role: segs.get(1).map(|s| s.to_string()).unwrap_or_default(),
                csr: f.string("csr")?.unwrap_or_default(),
                common_name: f.string("common_name")?.unwrap_or_default(),
                alt_names: list(&f, "alt_names")?,
                ip_sans: list(&f, "ip_sans")?,
                ttl: f.secs(&["ttl"])?.unwrap_or(0),
                mount_ttl: mount_ttl(m),
                exclude_cn_from_sans: f.bool("exclude_cn_from_sans")?.unwrap_or(false),
                ..Default::default()
            };
            let r = if segs[0] == "sign" {
                pki.sign(sign).await?
            } else {
                pki.sign_verbatim(sign).await?
            }
            .into_inner();
            Ok(issued(r, false))
        }
        (["revoke"], Operation::Write) => {
            let body = json_object(&req.body)?;
            let f = Fields(&body);
            let r = pki
                .revoke(pb::RevokeRequest {
                    mount: m.uuid.clone(),
                    serial_number: f.string("serial_number")?.unwrap_or_default(),
                    certificate: f.string("certificate")?.unwrap_or_default(),
                })
                .await?
                .into_inner();
            Ok(data(
                json!({
                    "revocation_time": r.revocation_time,
                    "revocation_time_rfc3339": r.revocation_time_rfc3339,
                }),
                vec![],
            ))
        }
        (["cert", serial], Operation::Read) => {
            let c = pki
                .read_cert(pb::ReadCertRequest {
                    mount: m.uuid.clone(),
                    serial_number: serial.to_string(),
                })
                .await?
                .into_inner();
            if !c.found {
                return Err(ApiError::not_found());
            }
            Ok(data(
                json!({
                    "certificate": c.certificate,
                    "revocation_time": c.revocation_time,
                    "revocation_time_rfc3339": c.revocation_time_rfc3339,
                    "issuer_id": c.issuer_id,
                }),
                vec![],
            ))
        }
        (["certs"], Operation::List) => keys_response(
            pki.list_certs(mount_req(m)).await?.into_inner().keys,
            MOUNT_TYPE,
        ),
        (["certs", "revoked"], Operation::List) => keys_response(
            pki.list_revoked(mount_req(m)).await?.into_inner().keys,
            MOUNT_TYPE,
        ),
        (["issuers"], Operation::List) => keys_response(
            pki.list_issuers(mount_req(m)).await?.into_inner().keys,
            MOUNT_TYPE,
        ),
        (["issuer", r], Operation::Read) => {
            let i = pki
                .read_issuer(pb::ReadIssuerRequest {
                    mount: m.uuid.clone(),
                    issuer_ref: r.to_string(),
                })
                .await?
                .into_inner();
            if !i.found {
                return Err(ApiError::not_found());
            }
            Ok(data(
                json!({
                    "issuer_id": i.issuer_id,
                    "issuer_name": i.issuer_name,
                    "key_id": i.key_id,
                    "certificate": i.certificate,
                    "ca_chain": i.ca_chain,
                    "serial_number": i.serial_number,
                }),
                vec![],
            ))
        }
        (["tidy"], Operation::Write) => {
            let body = json_object(&req.body)?;
            let f = Fields(&body);
            pki.tidy(pb::TidyRequest {
                mount: m.uuid.clone(),
                tidy_cert_store: f.bool("tidy_cert_store")?.unwrap_or(false),
                tidy_revoked_certs: f.bool("tidy_revoked_certs")?.unwrap_or(false),
                safety_buffer: f.secs(&["safety_buffer"])?.unwrap_or(0),
            })
            .await?;
            let env = Envelope::new(MOUNT_TYPE).with_warnings(vec![
                "Tidy operation successfully started. Any information from the operation will be printed to Vault's server logs.".into(),
            ]);
            Ok((StatusCode::ACCEPTED, axum::Json(env)).into_response())
        }
        (
            ["ca" | "ca_chain" | "crl" | "cert" | "certs" | "root" | "intermediate" | "config"
            | "roles" | "issue" | "sign" | "sign-verbatim" | "revoke" | "issuers" | "issuer"
            | "tidy", ..],
            _,
        ) => Err(ApiError::unsupported_operation()),
        _ => Err(unsupported_path()),
    }
}

fn urls_json(u: &pb::UrlsConfig) -> Value {
    json!({
        "issuing_certificates": u.issuing_certificates,
        "crl_distribution_points": u.crl_distribution_points,
        "ocsp_servers": u.ocsp_servers,
    })
}

fn issued(r: pb::IssueResponse, with_key: bool) -> Response {
    let mut v = json!({
        "certificate": r.certificate,
        "issuing_ca": r.issuing_ca,
        "ca_chain": r.ca_chain,
        "serial_number": r.serial_number,
        "expiration": r.expiration,
    });
    if with_key {
        v["private_key"] = json!(r.private_key);
        v["private_key_type"] = json!(r.private_key_type);
    }
    data(v, r.warnings)
}

fn role_json(r: &pb::Role) -> Value {
    json!({
        "ttl": r.ttl,
        "max_ttl": r.max_ttl,
        "allow_localhost": r.allow_localhost,
        "allowed_domains": r.allowed_domains,
        "allow_bare_domains": r.allow_bare_domains,
        "allow_subdomains": r.allow_subdomains,
        "allow_glob_domains": r.allow_glob_domains,
        "allow_any_name": r.allow_any_name,
        "enforce_hostnames": r.enforce_hostnames,
        "allow_ip_sans": r.allow_ip_sans,
        "server_flag": r.server_flag,
        "client_flag": r.client_flag,
        "key_type": r.key_type,
        "key_bits": r.key_bits,
        "no_store": r.no_store,
        "generate_lease": r.generate_lease,
        "ou": r.ou,
        "organization": r.organization,
    })
}

async fn role(
    gw: &Gateway,
    req: &ApiRequest,
    op: Operation,
    m: &MountEntry,
    name: &str,
) -> Result<Response, ApiError> {
    let mut pki = gw.pki();
    let role_req = pb::RoleRequest {
        mount: m.uuid.clone(),
        name: name.to_string(),
    };
    match op {
        Operation::Read => {
            let r = pki.read_role(role_req).await?.into_inner();
            let role = r.role.filter(|_| r.found).ok_or_else(ApiError::not_found)?;
            Ok(data(role_json(&role), vec![]))
        }
        Operation::Write => {
            // POST replaces the whole role, with Vault's defaults for what
            // the body leaves out.
            let body = json_object(&req.body)?;
            let f = Fields(&body);
            let b = |k: &str, default: bool| -> Result<bool, ApiError> {
                Ok(f.bool(k)?.unwrap_or(default))
            };
            let role = pb::Role {
                ttl: f.secs(&["ttl"])?.unwrap_or(0),
                max_ttl: f.secs(&["max_ttl"])?.unwrap_or(0),
                allow_localhost: b("allow_localhost", true)?,
                allowed_domains: list(&f, "allowed_domains")?,
                allow_bare_domains: b("allow_bare_domains", false)?,
                allow_subdomains: b("allow_subdomains", false)?,
                allow_glob_domains: b("allow_glob_domains", false)?,
                allow_any_name: b("allow_any_name", false)?,
                enforce_hostnames: b("enforce_hostnames", true)?,
                allow_ip_sans: b("allow_ip_sans", true)?,
                server_flag: b("server_flag", true)?,
                client_flag: b("client_flag", true)?,
                key_type: f.string("key_type")?.unwrap_or_else(|| "rsa".into()),
                key_bits: key_bits(&f)?,
                no_store: b("no_store", false)?,
                generate_lease: b("generate_lease", false)?,
                ou: list(&f, "ou")?,
                organization: list(&f, "organization")?,
                ..Default::default()
            };
            if role.max_ttl > 0 && role.ttl > role.max_ttl {
                return Err(ApiError::bad_request("ttl cannot be larger than max_ttl"));
            }
            pki.write_role(pb::WriteRoleRequest {
                mount: m.uuid.clone(),
                name: name.to_string(),
                role: Some(role),
            })
            .await?;
            Ok(no_content())
        }
        Operation::Delete => {
            pki.delete_role(role_req).await?;
            Ok(no_content())
        }
        _ => Err(ApiError::unsupported_operation()),
    }
}
