//! The `bulwark.pki.v1.Pki` gRPC service over [`PkiStore`].
//!
//! Every RPC answers UNAVAILABLE "Vault is sealed" while the service holds no
//! data key. Changes run as tasks of their own, so a caller that goes away
//! cannot leave a multi-record change half done. Spans carry the mount and
//! role, never keys.

use std::future::Future;
use std::sync::Arc;

use bulwark_proto::pki::v1 as pb;
use bulwark_proto::pki::v1::pki_server::Pki;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::crypto;
use crate::error::PkiError;
use crate::store::{rfc3339, PkiStore};

/// The pki service's gRPC handlers.
pub struct PkiService {
    store: Arc<PkiStore>,
}

impl PkiService {
    /// Handlers over `store`.
    pub fn new(store: Arc<PkiStore>) -> Self {
        PkiService { store }
    }

    /// Refuses while sealed, then runs `work` on a task of its own.
    async fn run<T, F, Fut>(&self, work: F) -> Result<Response<T>, Status>
    where
        T: Send + 'static,
        F: FnOnce(Arc<PkiStore>) -> Fut,
        Fut: Future<Output = Result<T, PkiError>> + Send + 'static,
    {
        self.store.ensure_unsealed().await?;
        let fut = work(self.store.clone());
        match tokio::spawn(fut.instrument(tracing::Span::current())).await {
            Ok(result) => Ok(Response::new(result?)),
            Err(e) => {
                tracing::error!(error = %e, "pki task failed");
                Err(Status::internal("internal error"))
            }
        }
    }
}

fn pem_chain(chain: &[String]) -> String {
    chain.concat()
}

#[tonic::async_trait]
impl Pki for PkiService {
    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount))]
    async fn generate_root(
        &self,
        req: Request<pb::GenerateRootRequest>,
    ) -> Result<Response<pb::GenerateRootResponse>, Status> {
        let req = req.into_inner();
        self.run(|s| async move { s.generate_root(&req).await })
            .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount))]
    async fn read_issuer(
        &self,
        req: Request<pb::ReadIssuerRequest>,
    ) -> Result<Response<pb::ReadIssuerResponse>, Status> {
        let req = req.into_inner();
        self.run(|s| async move {
            let Some(i) = s.find_issuer(&req.mount, &req.issuer_ref).await? else {
                return Ok(pb::ReadIssuerResponse::default());
            };
            let der = crypto::pem_blocks(&i.certificate)
                .and_then(|b| b.into_iter().next())
                .map(|(_, der)| der.to_vec())
                .unwrap_or_default();
            Ok(pb::ReadIssuerResponse {
                found: true,
                is_default: s.is_default(&req.mount, &i.id).await?,
                issuer_id: i.id,
                issuer_name: i.name,
                key_id: i.key_id,
                certificate: i.certificate,
                ca_chain: i.ca_chain,
                certificate_der: der,
                serial_number: i.serial_number,
                expiration: i.not_after,
            })
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount))]
    async fn list_issuers(
        &self,
        req: Request<pb::MountRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let req = req.into_inner();
        self.run(|s| async move {
            Ok(pb::ListResponse {
                keys: s.list_issuers(&req.mount).await?,
            })
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount))]
    async fn get_ca(
        &self,
        req: Request<pb::MountRequest>,
    ) -> Result<Response<pb::GetCaResponse>, Status> {
        let req = req.into_inner();
        self.run(|s| async move {
            let Some(i) = s.find_issuer(&req.mount, "default").await? else {
                return Ok(pb::GetCaResponse::default());
            };
            let der = crypto::pem_blocks(&i.certificate)
                .and_then(|b| b.into_iter().next())
                .map(|(_, der)| der.to_vec())
                .unwrap_or_default();
            Ok(pb::GetCaResponse {
                found: true,
                ca_chain_pem: pem_chain(&i.ca_chain),
                certificate_pem: i.certificate,
                certificate_der: der,
            })
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount))]
    async fn delete_root(
        &self,
        req: Request<pb::MountRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let req = req.into_inner();
        self.run(|s| async move {
            s.delete_root(&req.mount).await?;
            Ok(pb::Empty {})
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount))]
    async fn read_urls(
        &self,
        req: Request<pb::MountRequest>,
    ) -> Result<Response<pb::UrlsConfig>, Status> {
        let req = req.into_inner();
        self.run(|s| async move {
            let u = s.read_urls(&req.mount).await?;
            Ok(pb::UrlsConfig {
                issuing_certificates: u.issuing_certificates.clone(),
                crl_distribution_points: u.crl_distribution_points.clone(),
                ocsp_servers: u.ocsp_servers.clone(),
            })
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount))]
    async fn write_urls(
        &self,
        req: Request<pb::WriteUrlsRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let req = req.into_inner();
        self.run(|s| async move {
            s.write_urls(&req.mount, req.urls.unwrap_or_default())
                .await?;
            Ok(pb::Empty {})
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, role = %req.get_ref().name))]
    async fn write_role(
        &self,
        req: Request<pb::WriteRoleRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let req = req.into_inner();
        self.run(|s| async move {
            s.write_role(&req.mount, &req.name, req.role.unwrap_or_default())
                .await?;
            Ok(pb::Empty {})
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, role = %req.get_ref().name))]
    async fn read_role(
        &self,
        req: Request<pb::RoleRequest>,
    ) -> Result<Response<pb::ReadRoleResponse>, Status> {
        let req = req.into_inner();
        self.run(|s| async move {
            Ok(match s.read_role(&req.mount, &req.name).await? {
                Some(r) => pb::ReadRoleResponse {
                    found: true,
                    role: Some(r.into()),
                },
                None => pb::ReadRoleResponse::default(),
            })
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount))]
    async fn list_roles(
        &self,
        req: Request<pb::MountRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let req = req.into_inner();
        self.run(|s| async move {
            Ok(pb::ListResponse {
                keys: s.list_roles(&req.mount).await?,
            })
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, role = %req.get_ref().name))]
    async fn delete_role(
        &self,
        req: Request<pb::RoleRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let req = req.into_inner();
        self.run(|s| async move {
            s.delete_role(&req.mount, &req.name).await?;
            Ok(pb::Empty {})
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, role = %req.get_ref().role))]
    async fn issue(
        &self,
        req: Request<pb::IssueRequest>,
    ) -> Result<Response<pb::IssueResponse>, Status> {
        let req = req.into_inner();
        self.run(|s| async move { s.issue(&req).await }).await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, role = %req.get_ref().role))]
    async fn sign(
        &self,
        req: Request<pb::SignRequest>,
    ) -> Result<Response<pb::IssueResponse>, Status> {
        let req = req.into_inner();
        if req.role.is_empty() {
            return Err(PkiError::invalid("missing role name").into());
        }
        self.run(|s| async move { s.sign(&req, false).await }).await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount, role = %req.get_ref().role))]
    async fn sign_verbatim(
        &self,
        req: Request<pb::SignRequest>,
    ) -> Result<Response<pb::IssueResponse>, Status> {
        let req = req.into_inner();
        self.run(|s| async move { s.sign(&req, true).await }).await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount))]
    async fn revoke(
        &self,
        req: Request<pb::RevokeRequest>,
    ) -> Result<Response<pb::RevokeResponse>, Status> {
        let req = req.into_inner();
        self.run(|s| async move {
            let t = s.revoke(&req).await?;
            Ok(pb::RevokeResponse {
                revocation_time: t,
                revocation_time_rfc3339: rfc3339(t),
            })
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount))]
    async fn crl(&self, req: Request<pb::CrlRequest>) -> Result<Response<pb::CrlResponse>, Status> {
        let req = req.into_inner();
        self.run(|s| async move { Ok(crl_response(s.crl_of(&req.mount, &req.issuer_ref).await?)) })
            .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount))]
    async fn rotate_crl(
        &self,
        req: Request<pb::MountRequest>,
    ) -> Result<Response<pb::CrlResponse>, Status> {
        let req = req.into_inner();
        self.run(|s| async move { Ok(crl_response(s.rotate_crl(&req.mount).await?)) })
            .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount))]
    async fn read_cert(
        &self,
        req: Request<pb::ReadCertRequest>,
    ) -> Result<Response<pb::ReadCertResponse>, Status> {
        let req = req.into_inner();
        self.run(|s| async move {
            Ok(match s.read_cert(&req.mount, &req.serial_number).await? {
                Some((cert, revoked)) => {
                    let t = revoked.map_or(0, |r| r.revocation_time);
                    pb::ReadCertResponse {
                        found: true,
                        certificate: cert.certificate,
                        revocation_time: t,
                        revocation_time_rfc3339: rfc3339(t),
                        issuer_id: cert.issuer_id,
                    }
                }
                None => pb::ReadCertResponse::default(),
            })
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount))]
    async fn list_certs(
        &self,
        req: Request<pb::MountRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let req = req.into_inner();
        self.run(|s| async move {
            Ok(pb::ListResponse {
                keys: s.list_certs(&req.mount).await?,
            })
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount))]
    async fn list_revoked(
        &self,
        req: Request<pb::MountRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let req = req.into_inner();
        self.run(|s| async move {
            Ok(pb::ListResponse {
                keys: s.list_revoked(&req.mount).await?,
            })
        })
        .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount))]
    async fn generate_intermediate(
        &self,
        req: Request<pb::GenerateIntermediateRequest>,
    ) -> Result<Response<pb::GenerateIntermediateResponse>, Status> {
        let req = req.into_inner();
        self.run(|s| async move { s.generate_intermediate(&req).await })
            .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount))]
    async fn sign_intermediate(
        &self,
        req: Request<pb::SignIntermediateRequest>,
    ) -> Result<Response<pb::IssueResponse>, Status> {
        let req = req.into_inner();
        self.run(|s| async move { s.sign_intermediate(&req).await })
            .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount))]
    async fn set_signed(
        &self,
        req: Request<pb::SetSignedRequest>,
    ) -> Result<Response<pb::ImportResponse>, Status> {
        let req = req.into_inner();
        self.run(|s| async move { s.set_signed(&req.mount, &req.certificate).await })
            .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount))]
    async fn config_ca(
        &self,
        req: Request<pb::ConfigCaRequest>,
    ) -> Result<Response<pb::ImportResponse>, Status> {
        let req = req.into_inner();
        self.run(|s| async move { s.config_ca(&req.mount, &req.pem_bundle).await })
            .await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount))]
    async fn tidy(
        &self,
        req: Request<pb::TidyRequest>,
    ) -> Result<Response<pb::TidyResponse>, Status> {
        let req = req.into_inner();
        self.run(|s| async move { s.tidy(&req).await }).await
    }

    #[tracing::instrument(skip_all, fields(mount = %req.get_ref().mount))]
    async fn drop_mount(
        &self,
        req: Request<pb::MountRequest>,
    ) -> Result<Response<pb::Empty>, Status> {
        let req = req.into_inner();
        self.run(|s| async move {
            s.drop_mount(&req.mount).await?;
            Ok(pb::Empty {})
        })
        .await
    }
}

fn crl_response(der: Option<Vec<u8>>) -> pb::CrlResponse {
    match der {
        Some(der) => pb::CrlResponse {
            found: true,
            pem: crypto::to_pem("X509 CRL", &der),
            der,
        },
        None => pb::CrlResponse::default(),
    }
}
