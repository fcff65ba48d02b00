//! The internal CA and service identities for mTLS between services.
//!
//! Every service holds a leaf certificate signed by the internal CA. Its
//! identity is the URI SAN `spiffe://bulwark/<service>`; its DNS SANs are the
//! service name (used for hostname verification by clients), `localhost` and
//! any extra hostnames given to `bulwark certs`.
//!
//! A certificate directory holds `ca.pem`, `ca-key.pem` and, per service,
//! `<service>.pem` and `<service>-key.pem`. `bulwark server` creates missing
//! files itself (dev and single-binary runs); deployments create them once with
//! `bulwark certs` and give each process only its own key.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use zeroize::Zeroizing;

use crate::names::ServiceName;

pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca-key.pem";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Bulwark Internal CA");
    dn.push(DnType::OrganizationName, "Bulwark");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// A leaf certificate and its private key, PEM encoded.
pub struct LeafCert {
    pub cert_pem: String,
    pub key_pem: Zeroizing<String>,
}

/// The CA that signs every service certificate of one deployment.
pub struct InternalCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl InternalCa {
    /// A new CA valid for ten years.
    pub fn generate() -> Result<Self, TlsError> {
        let key = KeyPair::generate()?;
        let mut params = ca_params();
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(3650);
        let cert = params.self_signed(&key)?;
        Ok(InternalCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(ca_params(), key),
        })
    }

    /// Loads a CA written by [`InternalCa::save`].
    pub fn load(dir: &Path) -> Result<Self, TlsError> {
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let cert_pem = std::fs::read_to_string(&cert_path).map_err(io_err(&cert_path))?;
        let key_pem =
            Zeroizing::new(std::fs::read_to_string(&key_path).map_err(io_err(&key_path))?);
        let key = KeyPair::from_pem(&key_pem)?;
        Ok(InternalCa {
            cert_pem,
            issuer: Issuer::new(ca_params(), key),
        })
    }

    pub fn save(&self, dir: &Path) -> Result<(), TlsError> {
        write_file(&dir.join(CA_CERT_FILE), &self.cert_pem, 0o644)?;
        let key = Zeroizing::new(self.issuer.key().serialize_pem());
        write_file(&dir.join(CA_KEY_FILE), &key, 0o600)
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a certificate for `service`, valid for `days` days from now.
    pub fn issue(
        &self,
        service: ServiceName,
        hostnames: &[String],
        days: i64,
    ) -> Result<LeafCert, TlsError> {
        let now = OffsetDateTime::now_utc();
        self.issue_with_validity(
            service,
            hostnames,
            now - Duration::hours(1),
            now + Duration::days(days),
        )
    }

    /// Issues a certificate with an explicit validity window (tests use an
    /// expired one).
    pub fn issue_with_validity(
        &self,
        service: ServiceName,
        hostnames: &[String],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<LeafCert, TlsError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, service.as_str());
        dn.push(DnType::OrganizationName, "Bulwark");
        params.distinguished_name = dn;
        let mut sans = vec![
            SanType::URI(service.spiffe_id().try_into()?),
            SanType::DnsName(service.as_str().try_into()?),
            SanType::DnsName("localhost".try_into()?),
            SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        ];
        for h in hostnames {
            match h.parse::<IpAddr>() {
                Ok(ip) => sans.push(SanType::IpAddress(ip)),
                Err(_) => sans.push(SanType::DnsName(h.as_str().try_into()?)),
            }
        }
        params.subject_alt_names = sans;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = not_before;
        params.not_after = not_after;
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(LeafCert {
            cert_pem: cert.pem(),
            key_pem: Zeroizing::new(key.serialize_pem()),
        })
    }
}

fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), TlsError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    let mut f = opts.open(path).map_err(io_err(path))?;
    f.write_all(contents.as_bytes()).map_err(io_err(path))
}

fn cert_file(dir: &Path, service: ServiceName) -> std::path::PathBuf {
    dir.join(format!("{}.pem", service.as_str()))
}

fn key_file(dir: &Path, service: ServiceName) -> std::path::PathBuf {
    dir.join(format!("{}-key.pem", service.as_str()))
}

/// Makes sure `dir` holds a CA and a certificate for each of `services`,
/// creating whatever is missing. Existing files are left alone.
pub fn ensure_certs(
    dir: &Path,
    services: &[ServiceName],
    hostnames: &[String],
) -> Result<(), TlsError> {
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let ca = if dir.join(CA_CERT_FILE).exists() {
        InternalCa::load(dir)?
    } else {
        let ca = InternalCa::generate()?;
        ca.save(dir)?;
        ca
    };
    for &svc in services {
        if cert_file(dir, svc).exists() && key_file(dir, svc).exists() {
            continue;
        }
        let leaf = ca.issue(svc, hostnames, 365)?;
        write_file(&cert_file(dir, svc), &leaf.cert_pem, 0o644)?;
        write_file(&key_file(dir, svc), &leaf.key_pem, 0o600)?;
    }
    Ok(())
}

/// What a service presents to its peers and trusts from them.
#[derive(Clone)]
pub struct ServiceIdentity {
    pub name: ServiceName,
    cert_pem: String,
    key_pem: Zeroizing<String>,
    ca_pem: String,
}

impl ServiceIdentity {
    pub fn from_pem(
        name: ServiceName,
        cert_pem: String,
        key_pem: Zeroizing<String>,
        ca_pem: String,
    ) -> Self {
        ServiceIdentity {
            name,
            cert_pem,
            key_pem,
            ca_pem,
        }
    }

    /// Loads `name`'s certificate and key, and the CA certificate, from `dir`.
    pub fn load(dir: &Path, name: ServiceName) -> Result<Self, TlsError> {
        let read = |p: std::path::PathBuf| std::fs::read_to_string(&p).map_err(io_err(&p));
        Ok(ServiceIdentity {
            name,
            cert_pem: read(cert_file(dir, name))?,
            key_pem: Zeroizing::new(read(key_file(dir, name))?),
            ca_pem: read(dir.join(CA_CERT_FILE))?,
        })
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Server side: present our certificate, require one signed by our CA.
    pub fn server_tls(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(Identity::from_pem(&self.cert_pem, self.key_pem.as_bytes()))
            .client_ca_root(Certificate::from_pem(&self.ca_pem))
    }

    /// Client side: present our certificate, accept only `target` signed by our CA.
    pub fn client_tls(&self, target: ServiceName) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .identity(Identity::from_pem(&self.cert_pem, self.key_pem.as_bytes()))
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .domain_name(target.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certs_carry_the_service_identity() {
        let dir = tempfile::tempdir().unwrap();
        ensure_certs(
            dir.path(),
            &[ServiceName::Seal, ServiceName::Kv],
            &["node1.example".into()],
        )
        .unwrap();
        let id = ServiceIdentity::load(dir.path(), ServiceName::Kv).unwrap();
        let der = rustls_pemfile_first(&id.cert_pem);
        assert_eq!(crate::peer::identity_of(&der), Some(ServiceName::Kv));
        // A second call keeps what exists.
        let before = std::fs::read(dir.path().join("kv.pem")).unwrap();
        ensure_certs(dir.path(), &[ServiceName::Kv, ServiceName::Pki], &[]).unwrap();
        assert_eq!(before, std::fs::read(dir.path().join("kv.pem")).unwrap());
        assert!(dir.path().join("pki.pem").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("kv-key.pem"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    fn rustls_pemfile_first(pem: &str) -> Vec<u8> {
        let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        p.contents
    }
}
