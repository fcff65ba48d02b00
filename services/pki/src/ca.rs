//! Intermediate CAs (generate a CSR, have a root sign it, import the signed
//! certificate), CA imports (`config/ca`) and tidy, over [`PkiStore`].

use bulwark_proto::pki::v1 as pb;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType, IsCa, Issuer,
    KeyIdMethod, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};

use crate::crypto::{self, KeyFormat, KeySpec, StoredKey};
use crate::error::PkiError;
use crate::store::{
    apply_urls, cap_ttl, cert_facts, check_mount, datetime, dn_text, dns_names,
    generate_off_thread, mount_ttl, now, parse_ips, pem_certificates, rfc3339, sans, subject,
    CertRecord, IssuerRecord, Names, PkiStore, RevokedRecord, NOT_BEFORE,
};

/// Vault's default tidy safety buffer (72h).
pub const TIDY_SAFETY_BUFFER: i64 = 72 * 3600;

impl PkiStore {
    /// `intermediate/generate/:type`: a new key (kept under `key/`) and a
    /// CSR for it.
    pub async fn generate_intermediate(
        &self,
        req: &pb::GenerateIntermediateRequest,
    ) -> Result<pb::GenerateIntermediateResponse, PkiError> {
        check_mount(&req.mount)?;
        if req.common_name.trim().is_empty() {
            return Err(PkiError::invalid("the common_name field is required"));
        }
        let spec = KeySpec::parse(&req.key_type, req.key_bits)?;
        let key_format = KeyFormat::parse(&req.private_key_format)?;
        let names = Names {
            common_name: req.common_name.trim().to_string(),
            dns: dns_names("", &req.alt_names, true),
            ips: parse_ips(&req.ip_sans)?,
        };
        let mut params = CertificateParams::default();
        params.distinguished_name = subject(&names.common_name, &req.organization, &req.ou);
        params.subject_alt_names = sans(&names)?;
        let (key, stored) = generate_off_thread(spec).await?;
        let csr = params
            .serialize_request(&key)
            .and_then(|c| c.pem())
            .map_err(|e| PkiError::Crypto(e.to_string()))?;
        let key_id = uuid::Uuid::new_v4().to_string();
        self.put(&format!("m/{}/key/{key_id}", req.mount), &stored)
            .await?;
        Ok(pb::GenerateIntermediateResponse {
            csr,
            key_id,
            private_key: if req.exported {
                stored.export(key_format)?.to_string()
            } else {
                String::new()
            },
            private_key_type: if req.exported {
                spec.name().to_string()
            } else {
                String::new()
            },
        })
    }

    /// `root/sign-intermediate`: the default issuer signs `csr` as a CA.
    pub async fn sign_intermediate(
        &self,
        req: &pb::SignIntermediateRequest,
    ) -> Result<pb::IssueResponse, PkiError> {
        check_mount(&req.mount)?;
        let csr = CertificateSigningRequestParams::from_pem(&req.csr).map_err(|_| {
            PkiError::invalid("the CSR could not be parsed or its signature is invalid")
        })?;
        let signer = self.signer(&req.mount, &req.issuer_ref).await?;
        let signer_der = pem_certificates(&signer.issuer.certificate)?;
        let limit = path_len_limit(&signer_der[0])?;
        let path_len = match (req.max_path_length, limit) {
            (_, Some(0)) => {
                return Err(PkiError::invalid(
                    "the issuer's max_path_length is 0: it cannot sign intermediate CAs",
                ))
            }
            (n, Some(l)) if n < 0 || i64::from(n) >= l => Some(l - 1),
            (n, _) if n < 0 => None,
            (n, _) => Some(i64::from(n)),
        };
        let mut warnings = Vec::new();
        let (_, mount_max) = mount_ttl(req.mount_ttl.as_ref());
        if req.ttl < 0 {
            return Err(PkiError::invalid("ttl must not be negative"));
        }
        let ttl = if req.ttl > 0 { req.ttl } else { mount_max };
        let ttl = cap_ttl(ttl, mount_max, &mut warnings);
        let now = now();
        let mut not_after = now.saturating_add(ttl);
        if not_after > signer.issuer.not_after {
            warnings.push(format!(
                "the requested TTL would end after the CA certificate (notAfter {}); the certificate's notAfter was capped to the CA's",
                rfc3339(signer.issuer.not_after)
            ));
            not_after = signer.issuer.not_after;
        }

        let mut params = CertificateParams::default();
        if req.use_csr_values {
            params.distinguished_name = csr.params.distinguished_name.clone();
            params.subject_alt_names = csr
                .params
                .subject_alt_names
                .iter()
                .filter(|s| matches!(s, SanType::DnsName(_) | SanType::IpAddress(_)))
                .cloned()
                .collect();
        } else {
            let cn = if req.common_name.trim().is_empty() {
                csr.params
                    .distinguished_name
                    .get(&DnType::CommonName)
                    .and_then(dn_text)
                    .unwrap_or_default()
            } else {
                req.common_name.trim().to_string()
            };
            if cn.is_empty() {
                return Err(PkiError::invalid("the common_name field is required"));
            }
            params.distinguished_name = subject(&cn, &req.organization, &req.ou);
            params.subject_alt_names = sans(&Names {
                common_name: cn,
                dns: dns_names("", &req.alt_names, true),
                ips: parse_ips(&req.ip_sans)?,
            })?;
        }
        let serial = crypto::random_serial();
        params.not_before = datetime(now - NOT_BEFORE)?;
        params.not_after = datetime(not_after)?;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.is_ca = match path_len {
            None => IsCa::Ca(BasicConstraints::Unconstrained),
            Some(n) => IsCa::Ca(BasicConstraints::Constrained(
                u8::try_from(n).map_err(|_| PkiError::invalid("max_path_length is too large"))?,
            )),
        };
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        params.key_identifier_method = KeyIdMethod::Sha256;
        params.use_authority_key_identifier_extension = true;
        apply_urls(&mut params, &self.read_urls(&req.mount).await?);
        let issuer = Issuer::from_ca_cert_pem(&signer.issuer.certificate, &signer.key)
            .map_err(|e| PkiError::Crypto(e.to_string()))?;
        let cert = params
            .signed_by(&csr.public_key, &issuer)
            .map_err(|e| PkiError::Crypto(e.to_string()))?;
        let pem = cert.pem();
        let serial_number = crypto::colon_hex(&serial);
        self.put(
            &format!(
                "m/{}/cert/{}",
                req.mount,
                crypto::serial_key(&serial_number)?
            ),
            &CertRecord {
                certificate: pem.clone(),
                issuer_id: signer.issuer.id.clone(),
                not_after,
            },
        )
        .await?;
        Ok(pb::IssueResponse {
            certificate: pem,
            issuing_ca: signer.issuer.certificate.clone(),
            ca_chain: signer.issuer.ca_chain.clone(),
            serial_number,
            expiration: not_after,
            warnings,
            ..Default::default()
        })
    }

    /// `intermediate/set-signed`: the first certificate must be a CA whose
    /// public key is one this mount holds (from GenerateIntermediate); it
    /// becomes an issuer, with the rest of the PEM as its chain.
    pub async fn set_signed(
        &self,
        mount: &str,
        certificate: &str,
    ) -> Result<pb::ImportResponse, PkiError> {
        check_mount(mount)?;
        let certs = pem_certificates(certificate)?;
        let facts = cert_facts(&certs[0])?;
        let mut found = None;
        for key_id in self.barrier.list(&format!("m/{mount}/key/")).await? {
            let Some(stored) = self
                .get::<StoredKey>("key", &format!("m/{mount}/key/{key_id}"))
                .await?
            else {
                continue;
            };
            if stored.key_pair()?.public_key_raw() == facts.public_key.as_slice() {
                found = Some(key_id);
                break;
            }
        }
        let key_id = found.ok_or_else(|| {
            PkiError::invalid("the certificate's public key matches no key of this mount")
        })?;
        self.import_issuer(mount, &certs, key_id, false).await
    }

    /// `config/ca`: a PEM bundle of a CA certificate (plus chain) and its
    /// PKCS#8 private key.
    pub async fn config_ca(
        &self,
        mount: &str,
        pem_bundle: &str,
    ) -> Result<pb::ImportResponse, PkiError> {
        check_mount(mount)?;
        let blocks = crypto::pem_blocks(pem_bundle)
            .ok_or_else(|| PkiError::invalid("no data found in PEM bundle"))?;
        let mut key = None;
        let mut certs = Vec::new();
        for (label, der) in &blocks {
            match label.as_str() {
                "CERTIFICATE" => certs.push(der.to_vec()),
                "PRIVATE KEY" if key.is_none() => {
                    let pem = zeroize::Zeroizing::new(crypto::to_pem("PRIVATE KEY", der));
                    key = Some(crypto::parse_private_key(&pem)?);
                }
                "PRIVATE KEY" => {
                    return Err(PkiError::invalid("more than one private key in the bundle"))
                }
                "RSA PRIVATE KEY" | "EC PRIVATE KEY" if key.is_none() => {
                    let der = crypto::legacy_to_pkcs8(label, der)
                        .ok_or_else(|| PkiError::invalid("the private key could not be parsed"))?;
                    let pem = zeroize::Zeroizing::new(crypto::to_pem("PRIVATE KEY", &der));
                    key = Some(crypto::parse_private_key(&pem)?);
                }
                "RSA PRIVATE KEY" | "EC PRIVATE KEY" => {
                    return Err(PkiError::invalid("more than one private key in the bundle"))
                }
                other => {
                    return Err(PkiError::invalid(format!(
                        "unexpected PEM block {other:?} in the bundle"
                    )))
                }
            }
        }
        let (pair, stored): (KeyPair, StoredKey) =
            key.ok_or_else(|| PkiError::invalid("the bundle holds no private key"))?;
        if certs.is_empty() {
            return Err(PkiError::invalid("the bundle holds no certificate"));
        }
        let facts = cert_facts(&certs[0])?;
        if pair.public_key_raw() != facts.public_key.as_slice() {
            return Err(PkiError::invalid(
                "the private key does not match the first certificate",
            ));
        }
        let key_id = uuid::Uuid::new_v4().to_string();
        self.put(&format!("m/{mount}/key/{key_id}"), &stored)
            .await?;
        self.import_issuer(mount, &certs, key_id, true).await
    }

    async fn import_issuer(
        &self,
        mount: &str,
        certs: &[Vec<u8>],
        key_id: String,
        new_key: bool,
    ) -> Result<pb::ImportResponse, PkiError> {
        let first = certs
            .first()
            .ok_or_else(|| PkiError::invalid("no certificate found in PEM data"))?;
        let facts = cert_facts(first)?;
        if !facts.is_ca {
            return Err(PkiError::invalid("the certificate is not a CA certificate"));
        }
        for other in certs.iter().skip(1) {
            cert_facts(other)?;
        }
        let mut out = pb::ImportResponse::default();
        if new_key {
            out.imported_keys.push(key_id.clone());
        } else {
            out.existing_keys.push(key_id.clone());
        }
        for id in self.issuer_ids(mount).await? {
            if let Some(i) = self
                .get::<IssuerRecord>("issuer", &format!("m/{mount}/issuer/{id}"))
                .await?
            {
                if i.serial_number == facts.serial && i.key_id == key_id {
                    out.existing_issuers.push(id.clone());
                    out.mapping.insert(id, key_id);
                    return Ok(out);
                }
            }
        }
        let chain: Vec<String> = certs
            .iter()
            .map(|der| crypto::to_pem("CERTIFICATE", der))
            .collect();
        let issuer = IssuerRecord {
            id: uuid::Uuid::new_v4().to_string(),
            name: String::new(),
            key_id: key_id.clone(),
            certificate: crypto::to_pem("CERTIFICATE", first),
            ca_chain: chain,
            serial_number: facts.serial,
            not_after: facts.not_after,
        };
        self.add_issuer(mount, &issuer, false).await?;
        out.imported_issuers.push(issuer.id.clone());
        out.mapping.insert(issuer.id, key_id);
        Ok(out)
    }

    /// `tidy`: removes certificates (`tidy_cert_store`) and revocations
    /// (`tidy_revoked_certs`) whose notAfter is more than the safety buffer
    /// in the past; issuer certificates stay. The CRL is rebuilt if a
    /// revocation went.
    pub async fn tidy(&self, req: &pb::TidyRequest) -> Result<pb::TidyResponse, PkiError> {
        self.tidy_at(req, now()).await
    }

    pub(crate) async fn tidy_at(
        &self,
        req: &pb::TidyRequest,
        now: i64,
    ) -> Result<pb::TidyResponse, PkiError> {
        check_mount(&req.mount)?;
        if req.safety_buffer < 0 {
            return Err(PkiError::invalid("safety_buffer must not be negative"));
        }
        let buffer = if req.safety_buffer == 0 {
            TIDY_SAFETY_BUFFER
        } else {
            req.safety_buffer
        };
        let cutoff = now.saturating_sub(buffer);
        let mount = &req.mount;
        let mut issuer_serials = Vec::new();
        for id in self.issuer_ids(mount).await? {
            if let Some(i) = self
                .get::<IssuerRecord>("issuer", &format!("m/{mount}/issuer/{id}"))
                .await?
            {
                issuer_serials.push(crypto::serial_key(&i.serial_number)?);
            }
        }
        let mut out = pb::TidyResponse::default();
        if req.tidy_revoked_certs {
            for key in self.barrier.list(&format!("m/{mount}/revoked/")).await? {
                let path = format!("m/{mount}/revoked/{key}");
                let Some(r) = self.get::<RevokedRecord>("revocation", &path).await? else {
                    continue;
                };
                if r.not_after < cutoff {
                    self.barrier.delete(&path).await?;
                    self.barrier
                        .delete(&format!("m/{mount}/cert/{key}"))
                        .await?;
                    out.revoked_deleted += 1;
                }
            }
        }
        if req.tidy_cert_store {
            for key in self.barrier.list(&format!("m/{mount}/cert/")).await? {
                if issuer_serials.contains(&key) {
                    continue;
                }
                let path = format!("m/{mount}/cert/{key}");
                let Some(c) = self.get::<CertRecord>("certificate", &path).await? else {
                    continue;
                };
                if c.not_after < cutoff {
                    self.barrier.delete(&path).await?;
                    out.certs_deleted += 1;
                }
            }
        }
        if out.revoked_deleted > 0 {
            self.rotate_crl(mount).await?;
        }
        Ok(out)
    }
}

/// The path length limit of a CA certificate (`None` = unconstrained).
fn path_len_limit(der: &[u8]) -> Result<Option<i64>, PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|_| PkiError::Crypto("stored issuer certificate does not parse".into()))?;
    let bc = cert
        .basic_constraints()
        .map_err(|_| PkiError::Crypto("stored issuer certificate does not parse".into()))?;
    Ok(bc.and_then(|b| b.value.path_len_constraint.map(i64::from)))
}
