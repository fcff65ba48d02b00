//! The `bulwark.auth.v1.Leases` gRPC service: a thin layer over
//! [`LeaseRegistry`]. Every RPC answers UNAVAILABLE "Vault is sealed" while
//! the service holds no data key, before looking at the request.

use std::sync::Arc;

use bulwark_proto::auth::v1::leases_server::Leases;
use bulwark_proto::auth::v1::{
    CountLeasesRequest, CountLeasesResponse, LeaseEmpty, LeaseInfo, LeaseRequest,
    ListLeasesRequest, ListLeasesResponse, RegisterLeaseRequest, RenewLeaseRequest,
    RevokeLeaseRequest, RevokePrefixRequest, RevokePrefixResponse,
};
use tonic::{Request, Response, Status};

use super::LeaseRegistry;

/// The gRPC face of a [`LeaseRegistry`].
pub struct LeasesService {
    registry: Arc<LeaseRegistry>,
}

impl LeasesService {
    pub fn new(registry: Arc<LeaseRegistry>) -> Self {
        LeasesService { registry }
    }
}

#[tonic::async_trait]
impl Leases for LeasesService {
    #[tracing::instrument(skip_all)]
    async fn register_lease(
        &self,
        req: Request<RegisterLeaseRequest>,
    ) -> Result<Response<LeaseInfo>, Status> {
        self.registry.store().ensure_unsealed().await?;
        Ok(Response::new(self.registry.register(req.get_ref()).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn lookup_lease(
        &self,
        req: Request<LeaseRequest>,
    ) -> Result<Response<LeaseInfo>, Status> {
        self.registry.store().ensure_unsealed().await?;
        Ok(Response::new(
            self.registry.lookup(&req.get_ref().lease_id).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn renew_lease(
        &self,
        req: Request<RenewLeaseRequest>,
    ) -> Result<Response<LeaseInfo>, Status> {
        self.registry.store().ensure_unsealed().await?;
        let req = req.into_inner();
        Ok(Response::new(
            self.registry.renew(&req.lease_id, req.increment).await?,
        ))
    }

    #[tracing::instrument(skip_all, fields(sync = req.get_ref().sync))]
    async fn revoke_lease(
        &self,
        req: Request<RevokeLeaseRequest>,
    ) -> Result<Response<LeaseEmpty>, Status> {
        self.registry.store().ensure_unsealed().await?;
        let req = req.into_inner();
        self.registry.revoke(&req.lease_id, req.sync).await?;
        Ok(Response::new(LeaseEmpty {}))
    }

    #[tracing::instrument(skip_all, fields(force = req.get_ref().force, sync = req.get_ref().sync))]
    async fn revoke_prefix(
        &self,
        req: Request<RevokePrefixRequest>,
    ) -> Result<Response<RevokePrefixResponse>, Status> {
        self.registry.store().ensure_unsealed().await?;
        let req = req.into_inner();
        let revoked = self
            .registry
            .revoke_prefix(&req.prefix, req.force, req.sync)
            .await?;
        Ok(Response::new(RevokePrefixResponse { revoked }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_leases(
        &self,
        req: Request<ListLeasesRequest>,
    ) -> Result<Response<ListLeasesResponse>, Status> {
        self.registry.store().ensure_unsealed().await?;
        Ok(Response::new(ListLeasesResponse {
            keys: self.registry.list(&req.get_ref().prefix).await?,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn count_leases(
        &self,
        req: Request<CountLeasesRequest>,
    ) -> Result<Response<CountLeasesResponse>, Status> {
        self.registry.store().ensure_unsealed().await?;
        let count = self.registry.count(&req.get_ref().prefix).await?;
        Ok(Response::new(CountLeasesResponse {
            count: i64::try_from(count).unwrap_or(i64::MAX),
        }))
    }

    /// Starts a tidy in the background and answers at once (Vault's 202).
    #[tracing::instrument(skip_all)]
    async fn tidy_leases(&self, _: Request<LeaseEmpty>) -> Result<Response<LeaseEmpty>, Status> {
        self.registry.store().ensure_unsealed().await?;
        self.registry.start_tidy();
        Ok(Response::new(LeaseEmpty {}))
    }
}
