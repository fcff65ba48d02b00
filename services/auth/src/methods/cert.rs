//! cert: TLS client certificate login. A role (`cert/<name>`) holds the PEM
//! of the certificates a client chain must lead to, constraints on the leaf
//! (names, SANs, OUs) and token parameters.
//!
//! A login tries the named role, or every role in name order, and the first
//! that trusts the chain and whose constraints the leaf meets wins. Chain
//! checks are CPU work and run on the blocking pool. Whatever the reason
//! (no chain, untrusted, constraints unmet, unknown role), the answer is the
//! same 403 "invalid certificate or no client certificate supplied"; a role
//! with `token_bound_cidrs` also refuses other client addresses (403).

use bulwark_proto::auth::v1::{
    CertLoginRequest, CertRole, CreateTokenResponse, ItemRequest, MountRequest,
    WriteCertRoleRequest,
};
use serde::{Deserialize, Serialize};

use super::cert_verify::{self, LeafInfo};
use super::{check_mount, login_context, role_name, Login, MethodsService, Params};
use crate::cidr;
use crate::error::AuthError;

const REFUSED: &str = "invalid certificate or no client certificate supplied";

fn cert_path(uuid: &str, name: &str) -> String {
    format!("method/{uuid}/cert/{name}")
}

/// One certificate role as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct CertRecord {
    name: String,
    certificate: String,
    display_name: String,
    #[serde(default)]
    allowed_common_names: Vec<String>,
    #[serde(default)]
    allowed_dns_sans: Vec<String>,
    #[serde(default)]
    allowed_email_sans: Vec<String>,
    #[serde(default)]
    allowed_uri_sans: Vec<String>,
    #[serde(default)]
    allowed_organizational_units: Vec<String>,
    #[serde(default)]
    token: Params,
}

impl CertRecord {
    fn to_proto(&self) -> CertRole {
        CertRole {
            name: self.name.clone(),
            certificate: self.certificate.clone(),
            display_name: self.display_name.clone(),
            allowed_common_names: self.allowed_common_names.clone(),
            allowed_dns_sans: self.allowed_dns_sans.clone(),
            allowed_email_sans: self.allowed_email_sans.clone(),
            allowed_uri_sans: self.allowed_uri_sans.clone(),
            allowed_organizational_units: self.allowed_organizational_units.clone(),
            token: Some(self.token.to_proto()),
        }
    }

    /// The leaf, if this role trusts `chain` at `now` and its constraints
    /// allow the leaf.
    fn accepts(&self, chain: &[Vec<u8>], now: i64) -> Option<LeafInfo> {
        let leaf = cert_verify::verify_chain(&self.certificate, chain, now).ok()?;
        cert_verify::constraints_allow(
            &leaf,
            &self.allowed_common_names,
            &self.allowed_dns_sans,
            &self.allowed_email_sans,
            &self.allowed_uri_sans,
            &self.allowed_organizational_units,
        )
        .then_some(leaf)
    }
}

/// A constraint list: trimmed, without empties.
fn patterns(list: Vec<String>) -> Vec<String> {
    list.into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

fn refused() -> AuthError {
    AuthError::Forbidden(REFUSED.to_string())
}

impl MethodsService {
    async fn get_cert(&self, uuid: &str, name: &str) -> Result<Option<CertRecord>, AuthError> {
        self.get_record(&cert_path(uuid, name)).await
    }

    /// WriteCertRole: creates or replaces a role; its PEM must parse.
    pub(crate) async fn cert_write(&self, req: WriteCertRoleRequest) -> Result<(), AuthError> {
        let mount = check_mount(req.mount)?;
        let role = req.role.ok_or_else(|| AuthError::invalid("missing role"))?;
        let name = role_name(&role.name)?;
        let token = Params::from_proto(role.token)?;
        if role.certificate.trim().is_empty() {
            return Err(AuthError::invalid("missing certificate"));
        }
        cert_verify::parse_trusted(&role.certificate)
            .map_err(|e| AuthError::invalid(e.to_string()))?;
        let display_name = match role.display_name.trim() {
            "" => name.clone(),
            given => given.to_string(),
        };
        let record = CertRecord {
            name: name.clone(),
            certificate: role.certificate,
            display_name,
            allowed_common_names: patterns(role.allowed_common_names),
            allowed_dns_sans: patterns(role.allowed_dns_sans),
            allowed_email_sans: patterns(role.allowed_email_sans),
            allowed_uri_sans: patterns(role.allowed_uri_sans),
            allowed_organizational_units: patterns(role.allowed_organizational_units),
            token,
        };
        self.put_record(&cert_path(&mount.uuid, &name), &record)
            .await
    }

    /// ReadCertRole.
    pub(crate) async fn cert_read(&self, req: ItemRequest) -> Result<CertRole, AuthError> {
        let mount = check_mount(req.mount)?;
        let name = role_name(&req.name)?;
        let role = self
            .get_cert(&mount.uuid, &name)
            .await?
            .ok_or_else(|| AuthError::NotFound(format!("certificate role {name:?} not found")))?;
        Ok(role.to_proto())
    }

    /// DeleteCertRole: idempotent.
    pub(crate) async fn cert_delete(&self, req: ItemRequest) -> Result<(), AuthError> {
        let mount = check_mount(req.mount)?;
        let name = role_name(&req.name)?;
        self.store
            .barrier
            .delete(&cert_path(&mount.uuid, &name))
            .await?;
        Ok(())
    }

    /// ListCertRoles: sorted names.
    pub(crate) async fn cert_list(&self, req: MountRequest) -> Result<Vec<String>, AuthError> {
        let mount = check_mount(req.mount)?;
        self.list_leaves(&format!("method/{}/cert/", mount.uuid))
            .await
    }

    /// CertLogin.
    pub(crate) async fn cert_login_inner(
        &self,
        req: CertLoginRequest,
    ) -> Result<CreateTokenResponse, AuthError> {
        let (mount, remote_ip) = login_context(req.context)?;
        if req.chain.is_empty() {
            return Err(refused());
        }
        let roles = if req.name.trim().is_empty() {
            let mut all = Vec::new();
            for name in self
                .list_leaves(&format!("method/{}/cert/", mount.uuid))
                .await?
            {
                if let Some(role) = self.get_cert(&mount.uuid, &name).await? {
                    all.push(role);
                }
            }
            all
        } else {
            let Ok(name) = role_name(&req.name) else {
                return Err(refused());
            };
            match self.get_cert(&mount.uuid, &name).await? {
                Some(role) => vec![role],
                None => return Err(refused()),
            }
        };
        let now = self.store.now();
        let chain = req.chain;
        let matched = tokio::task::spawn_blocking(move || {
            roles
                .into_iter()
                .find_map(|role| role.accepts(&chain, now).map(|leaf| (role, leaf)))
        })
        .await
        .map_err(|_| AuthError::Internal("certificate verification task"))?;
        let Some((role, leaf)) = matched else {
            return Err(refused());
        };
        if !role.token.bound_cidrs.is_empty() && !cidr::allows(&role.token.bound_cidrs, &remote_ip)
        {
            return Err(AuthError::PermissionDenied);
        }
        let display = if role.display_name.is_empty() {
            &role.name
        } else {
            &role.display_name
        };
        let login = Login {
            display_name: format!("cert-{display}"),
            path: format!("auth/{}login", mount.path),
            meta: [
                ("cert_name".to_string(), role.name.clone()),
                ("common_name".to_string(), leaf.common_name),
                ("serial_number".to_string(), leaf.serial_number),
                ("subject_key_id".to_string(), leaf.subject_key_id),
                ("authority_key_id".to_string(), leaf.authority_key_id),
            ]
            .into(),
            bound_cidrs: role.token.bound_cidrs.clone(),
        };
        self.mint(&mount, &role.token, login).await
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::super::Methods;
    use super::*;
    use bulwark_proto::auth::v1::{Mount, TokenParams};
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose, SanType,
    };
    use tonic::Request;

    struct Ca {
        pem: String,
        issuer: Issuer<'static, KeyPair>,
    }

    fn ca(name: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    fn leaf(ca: &Ca, cn: &str, dns: &str) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.subject_alt_names = vec![SanType::DnsName(dns.try_into().unwrap())];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.use_authority_key_identifier_extension = true;
        p.signed_by(&key, &ca.issuer).unwrap().der().to_vec()
    }

    fn role(name: &str, ca: &Ca) -> CertRole {
        CertRole {
            name: name.into(),
            certificate: ca.pem.clone(),
            token: Some(TokenParams {
                policies: strings(&["web"]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn write(m: &Mount, role: CertRole) -> WriteCertRoleRequest {
        WriteCertRoleRequest {
            mount: Some(m.clone()),
            role: Some(role),
        }
    }

    fn item(m: &Mount, name: &str) -> ItemRequest {
        ItemRequest {
            mount: Some(m.clone()),
            name: name.into(),
        }
    }

    fn login(m: &Mount, chain: Vec<Vec<u8>>, name: &str, ip: &str) -> CertLoginRequest {
        CertLoginRequest {
            context: ctx(m, ip),
            chain,
            name: name.into(),
        }
    }

    fn refused_status(s: tonic::Status) {
        assert_eq!(
            (s.code(), s.message()),
            (tonic::Code::PermissionDenied, REFUSED)
        );
    }

    #[tokio::test]
    async fn roles_write_read_list_delete() {
        let (_h, svc) = service().await;
        let m = mount("cert/");
        let a = ca("CA A");
        let mut web = role("Web", &a);
        web.allowed_common_names = strings(&[" web-* ", ""]);
        svc.cert_write(write(&m, web)).await.unwrap();
        let mut named = role("api", &a);
        named.display_name = "API clients".into();
        svc.cert_write(write(&m, named)).await.unwrap();
        let read = svc.cert_read(item(&m, "WEB")).await.unwrap();
        assert_eq!(read.name, "web");
        assert_eq!(read.display_name, "web");
        assert_eq!(read.certificate, a.pem);
        assert_eq!(read.allowed_common_names, ["web-*"]);
        assert_eq!(read.token.unwrap().policies, ["web"]);
        assert_eq!(
            svc.cert_read(item(&m, "api")).await.unwrap().display_name,
            "API clients"
        );
        assert_eq!(
            svc.cert_list(MountRequest {
                mount: Some(m.clone())
            })
            .await
            .unwrap(),
            ["api", "web"]
        );
        svc.cert_delete(item(&m, "web")).await.unwrap();
        svc.cert_delete(item(&m, "web")).await.unwrap();
        let s = svc
            .read_cert_role(Request::new(item(&m, "web")))
            .await
            .unwrap_err();
        assert_eq!(s.code(), tonic::Code::NotFound);
    }

    #[tokio::test]
    async fn bad_roles() {
        let (_h, svc) = service().await;
        let m = mount("cert/");
        let a = ca("CA A");
        let mut r = role("web", &a);
        r.certificate = String::new();
        assert_eq!(
            invalid(svc.cert_write(write(&m, r)).await),
            "missing certificate"
        );
        let mut r = role("web", &a);
        r.certificate = "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n".into();
        assert!(svc.cert_write(write(&m, r)).await.is_err());
        let mut r = role("web", &a);
        r.certificate = "just text".into();
        assert_eq!(
            invalid(svc.cert_write(write(&m, r)).await),
            "no certificates found in PEM"
        );
        assert_eq!(
            invalid(svc.cert_write(write(&m, role("a/b", &a))).await),
            "invalid role name"
        );
        let mut r = role("web", &a);
        r.token.as_mut().unwrap().bound_cidrs = strings(&["x"]);
        assert_eq!(
            invalid(svc.cert_write(write(&m, r)).await),
            "invalid CIDR block or IP address \"x\""
        );
        assert!(svc
            .cert_list(MountRequest { mount: Some(m) })
            .await
            .unwrap()
            .is_empty());
    }

    #[tokio::test]
    async fn login_mints_a_cert_token() {
        let (h, svc) = service().await;
        let m = mount("cert/");
        let a = ca("CA A");
        let b = ca("CA B");
        let mut named = role("b-role", &b);
        named.display_name = "partners".into();
        svc.cert_write(write(&m, named)).await.unwrap();
        let mut web = role("web", &a);
        web.allowed_dns_sans = strings(&["*.example.com"]);
        svc.cert_write(write(&m, web)).await.unwrap();
        let made = svc
            .cert_login(Request::new(login(
                &m,
                vec![leaf(&a, "web-01", "web-01.example.com")],
                "",
                "",
            )))
            .await
            .unwrap()
            .into_inner();
        let e = made.entry.unwrap();
        assert_eq!(e.display_name, "cert-web");
        assert_eq!(e.path, "auth/cert/login");
        assert_eq!(e.policies, ["default", "web"]);
        assert_eq!(e.meta.get("cert_name").map(String::as_str), Some("web"));
        assert_eq!(
            e.meta.get("common_name").map(String::as_str),
            Some("web-01")
        );
        for k in ["serial_number", "authority_key_id"] {
            assert!(
                e.meta.get(k).is_some_and(|v| !v.is_empty()),
                "{k}: {:?}",
                e.meta
            );
        }
        // rcgen leaves carry no subject key id: the key is there, empty.
        assert_eq!(e.meta.get("subject_key_id").map(String::as_str), Some(""));
        assert!(h.store.authenticate(&made.token, "").await.is_ok());
        // The other CA's role, by name or by search.
        let chain = vec![leaf(&b, "partner", "p.other.org")];
        let made = svc
            .cert_login_inner(login(&m, chain.clone(), "", ""))
            .await
            .unwrap();
        assert_eq!(made.entry.unwrap().display_name, "cert-partners");
        let made = svc
            .cert_login_inner(login(&m, chain.clone(), "B-Role", ""))
            .await
            .unwrap();
        assert_eq!(made.entry.unwrap().meta.get("cert_name").unwrap(), "b-role");
        // Named role that does not trust the chain.
        refused_status(
            svc.cert_login(Request::new(login(&m, chain, "web", "")))
                .await
                .unwrap_err(),
        );
    }

    #[tokio::test]
    async fn refusals_look_alike() {
        let (_h, svc) = service().await;
        let m = mount("cert/");
        let a = ca("CA A");
        let stranger = ca("Stranger");
        let mut web = role("web", &a);
        web.allowed_common_names = strings(&["web-*"]);
        svc.cert_write(write(&m, web)).await.unwrap();
        let cases = vec![
            login(&m, vec![], "", ""),
            login(&m, vec![leaf(&stranger, "web-01", "x.example.com")], "", ""),
            login(&m, vec![leaf(&a, "db-01", "x.example.com")], "", ""),
            login(&m, vec![b"not DER".to_vec()], "", ""),
            login(&m, vec![leaf(&a, "web-01", "x.example.com")], "ghost", ""),
            login(
                &m,
                vec![leaf(&a, "web-01", "x.example.com")],
                "bad/name",
                "",
            ),
        ];
        for req in cases {
            refused_status(svc.cert_login(Request::new(req)).await.unwrap_err());
        }
        // No roles at all.
        let empty = mount("cert2/");
        refused_status(
            svc.cert_login(Request::new(login(
                &empty,
                vec![leaf(&a, "web-01", "x")],
                "",
                "",
            )))
            .await
            .unwrap_err(),
        );
        assert!(svc
            .cert_login_inner(login(&m, vec![leaf(&a, "web-01", "x")], "", ""))
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn bound_cidrs_limit_cert_logins() {
        let (h, svc) = service().await;
        let m = mount("cert/");
        let a = ca("CA A");
        let mut web = role("web", &a);
        web.token.as_mut().unwrap().bound_cidrs = strings(&["10.0.0.0/8"]);
        svc.cert_write(write(&m, web)).await.unwrap();
        let chain = vec![leaf(&a, "web-01", "x")];
        assert!(matches!(
            svc.cert_login_inner(login(&m, chain.clone(), "", "8.8.8.8"))
                .await,
            Err(AuthError::PermissionDenied)
        ));
        let made = svc
            .cert_login_inner(login(&m, chain, "", "10.0.0.1"))
            .await
            .unwrap();
        assert!(h.store.authenticate(&made.token, "10.0.0.2").await.is_ok());
        assert!(h.store.authenticate(&made.token, "8.8.8.8").await.is_err());
    }
}
