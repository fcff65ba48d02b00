//! The `bulwark.seal.v1.Seal` gRPC service over [`SealCore`].

use std::pin::Pin;
use std::sync::Arc;

use bulwark_proto::seal::v1::seal_server::Seal;
use bulwark_proto::seal::v1::{
    AckInitRootTokenRequest, AckInitRootTokenResponse, ClaimInitRootTokenRequest,
    ClaimInitRootTokenResponse, GenerateRootCancelRequest, GenerateRootCancelResponse,
    GenerateRootInitRequest, GenerateRootStatus, GenerateRootStatusRequest,
    GenerateRootUpdateRequest, InitRequest, InitResponse, KeyStatusRequest, KeyStatusResponse,
    RekeyCancelRequest, RekeyCancelResponse, RekeyInitRequest, RekeyStatus, RekeyStatusRequest,
    RekeyUpdateRequest, RekeyUpdateResponse, RotateRequest, SealRequest, SealState, SealStatus,
    ServiceKeyRequest, ServiceKeyResponse, StatusRequest, UnsealRequest, WatchSealStateRequest,
};
use bulwark_shared::peer::PeerIdentity;
use futures::Stream;
use tonic::{Request, Response, Status};
use zeroize::Zeroizing;

use crate::core::{InitParams, SealCore};
use crate::error::SealError;
use crate::keys::{RekeyOutcome, RekeyTarget};

fn target(recovery: bool) -> RekeyTarget {
    if recovery {
        RekeyTarget::Recovery
    } else {
        RekeyTarget::Barrier
    }
}

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
            .initialize(InitParams {
                secret_shares: req.secret_shares,
                secret_threshold: req.secret_threshold,
                recovery_shares: req.recovery_shares,
                recovery_threshold: req.recovery_threshold,
                root_token_id: &req.root_token_id,
            })
            .await?;
        Ok(Response::new(InitResponse {
            keys: out.keys.iter().map(|k| k.to_vec()).collect(),
            recovery_keys: out.recovery_keys.iter().map(|k| k.to_vec()).collect(),
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
        let claim = self.core.claim_init_root_token().await?;
        Ok(Response::new(match claim {
            Some(c) => ClaimInitRootTokenResponse {
                root_token: c.token.to_string(),
                id: c.id,
                more: c.more,
            },
            None => ClaimInitRootTokenResponse::default(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn ack_init_root_token(
        &self,
        req: Request<AckInitRootTokenRequest>,
    ) -> Result<Response<AckInitRootTokenResponse>, Status> {
        self.core.ack_init_root_token(&req.get_ref().id).await?;
        Ok(Response::new(AckInitRootTokenResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn rotate(
        &self,
        _: Request<RotateRequest>,
    ) -> Result<Response<KeyStatusResponse>, Status> {
        Ok(Response::new(self.core.rotate().await?))
    }

    #[tracing::instrument(skip_all)]
    async fn key_status(
        &self,
        _: Request<KeyStatusRequest>,
    ) -> Result<Response<KeyStatusResponse>, Status> {
        Ok(Response::new(self.core.key_status().await?))
    }

    #[tracing::instrument(skip_all)]
    async fn rekey_status(
        &self,
        req: Request<RekeyStatusRequest>,
    ) -> Result<Response<RekeyStatus>, Status> {
        let t = target(req.get_ref().recovery);
        Ok(Response::new(self.core.rekey_status_for(t).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn rekey_init(
        &self,
        req: Request<RekeyInitRequest>,
    ) -> Result<Response<RekeyStatus>, Status> {
        let req = req.into_inner();
        Ok(Response::new(
            self.core
                .rekey_init_for(
                    target(req.recovery),
                    req.secret_shares,
                    req.secret_threshold,
                )
                .await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn rekey_cancel(
        &self,
        req: Request<RekeyCancelRequest>,
    ) -> Result<Response<RekeyCancelResponse>, Status> {
        self.core
            .rekey_cancel_for(target(req.get_ref().recovery))
            .await?;
        Ok(Response::new(RekeyCancelResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn rekey_update(
        &self,
        req: Request<RekeyUpdateRequest>,
    ) -> Result<Response<RekeyUpdateResponse>, Status> {
        let req = req.into_inner();
        let key = Zeroizing::new(req.key);
        Ok(Response::new(
            match self
                .core
                .rekey_update_for(target(req.recovery), &key, &req.nonce)
                .await?
            {
                RekeyOutcome::Pending(status) => RekeyUpdateResponse {
                    status: Some(status),
                    ..Default::default()
                },
                RekeyOutcome::Complete { keys, nonce } => RekeyUpdateResponse {
                    status: None,
                    complete: true,
                    keys: keys.iter().map(|k| k.to_vec()).collect(),
                    nonce,
                },
            },
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn generate_root_status(
        &self,
        _: Request<GenerateRootStatusRequest>,
    ) -> Result<Response<GenerateRootStatus>, Status> {
        Ok(Response::new(self.core.generate_root_status().await?))
    }

    #[tracing::instrument(skip_all)]
    async fn generate_root_init(
        &self,
        req: Request<GenerateRootInitRequest>,
    ) -> Result<Response<GenerateRootStatus>, Status> {
        let otp = Zeroizing::new(req.into_inner().otp);
        Ok(Response::new(self.core.generate_root_init(&otp).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn generate_root_cancel(
        &self,
        _: Request<GenerateRootCancelRequest>,
    ) -> Result<Response<GenerateRootCancelResponse>, Status> {
        self.core.generate_root_cancel().await?;
        Ok(Response::new(GenerateRootCancelResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn generate_root_update(
        &self,
        req: Request<GenerateRootUpdateRequest>,
    ) -> Result<Response<GenerateRootStatus>, Status> {
        let req = req.into_inner();
        let key = Zeroizing::new(req.key);
        Ok(Response::new(
            self.core.generate_root_update(&key, &req.nonce).await?,
        ))
    }
}
