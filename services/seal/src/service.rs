//! The `bulwark.seal.v1.Seal` gRPC service over [`SealCore`].

use std::pin::Pin;
use std::sync::Arc;

use bulwark_proto::seal::v1::seal_server::Seal;
use bulwark_proto::seal::v1::{
    AckInitRootTokenRequest, AckInitRootTokenResponse, ClaimInitRootTokenRequest,
    ClaimInitRootTokenResponse, InitRequest, InitResponse, SealRequest, SealState, SealStatus,
    ServiceKeyRequest, ServiceKeyResponse, StatusRequest, UnsealRequest, WatchSealStateRequest,
};
use bulwark_shared::peer::PeerIdentity;
use futures::Stream;
use tonic::{Request, Response, Status};

use crate::core::SealCore;
use crate::error::SealError;

pub struct SealService {
    core: Arc<SealCore>,
}

impl SealService {
    pub fn new(core: Arc<SealCore>) -> Self {
        SealService { core }
    }
}

type StateStream = Pin<Box<dyn Stream<Item = Result<SealState, Status>> + Send>>;

#[tonic::async_trait]
impl Seal for SealService {
    #[tracing::instrument(skip_all)]
    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<SealStatus>, Status> {
        Ok(Response::new(self.core.status().await?))
    }

    #[tracing::instrument(skip_all)]
    async fn init(&self, req: Request<InitRequest>) -> Result<Response<InitResponse>, Status> {
        let req = req.into_inner();
        let out = self
            .core
            .init(req.secret_shares, req.secret_threshold, &req.root_token_id)
            .await?;
        Ok(Response::new(InitResponse {
            keys: out.keys.iter().map(|k| k.to_vec()).collect(),
            root_token: out.root_token.to_string(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn unseal(&self, req: Request<UnsealRequest>) -> Result<Response<SealStatus>, Status> {
        let req = req.into_inner();
        let key = zeroize::Zeroizing::new(req.key);
        Ok(Response::new(self.core.unseal(&key, req.reset).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn seal(&self, _: Request<SealRequest>) -> Result<Response<SealStatus>, Status> {
        Ok(Response::new(self.core.seal().await?))
    }

    type WatchSealStateStream = StateStream;

    async fn watch_seal_state(
        &self,
        _: Request<WatchSealStateRequest>,
    ) -> Result<Response<Self::WatchSealStateStream>, Status> {
        let rx = self.core.subscribe();
        let stream = tokio_stream::wrappers::WatchStream::new(rx);
        Ok(Response::new(Box::pin(futures::StreamExt::map(stream, Ok))))
    }

    #[tracing::instrument(skip_all, fields(caller))]
    async fn service_key(
        &self,
        req: Request<ServiceKeyRequest>,
    ) -> Result<Response<ServiceKeyResponse>, Status> {
        let caller = req
            .extensions()
            .get::<PeerIdentity>()
            .ok_or(SealError::NoPeer)?
            .0;
        tracing::Span::current().record("caller", caller.as_str());
        let (term, key) = self.core.service_key(caller, req.get_ref().term).await?;
        Ok(Response::new(ServiceKeyResponse {
            term,
            key: key.to_vec(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn claim_init_root_token(
        &self,
        _: Request<ClaimInitRootTokenRequest>,
    ) -> Result<Response<ClaimInitRootTokenResponse>, Status> {
        let token = self.core.claim_init_root_token().await?;
        Ok(Response::new(ClaimInitRootTokenResponse {
            root_token: token.map(|t| t.to_string()).unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn ack_init_root_token(
        &self,
        _: Request<AckInitRootTokenRequest>,
    ) -> Result<Response<AckInitRootTokenResponse>, Status> {
        self.core.ack_init_root_token().await?;
        Ok(Response::new(AckInitRootTokenResponse {}))
    }
}
