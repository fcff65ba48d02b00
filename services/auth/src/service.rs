//! The `bulwark.auth.v1.Auth` gRPC service: a thin layer over [`TokenStore`].
//!
//! Every RPC but `WatchRevocations` answers UNAVAILABLE "Vault is sealed"
//! while the service holds no data key, before looking at the request.

use std::pin::Pin;
use std::sync::Arc;

use bulwark_proto::auth::v1::auth_server::Auth;
use bulwark_proto::auth::v1::{
    AckRevocationsRequest, AckRevocationsResponse, AuthenticateRequest, ClaimRootTokensRequest,
    ClaimRootTokensResponse, CreateTokenRequest, CreateTokenResponse, ListAccessorsRequest,
    ListAccessorsResponse, LookupTokenRequest, RenewTokenRequest, RenewTokenResponse,
    RevocationEvent, RevokeTokenRequest, RevokeTokenResponse, TokenEntry, WatchRevocationsRequest,
};
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_stream::wrappers::BroadcastStream;
use tonic::{Request, Response, Status};

use crate::record::TokenRef;
use crate::store::TokenStore;

/// The gRPC face of a [`TokenStore`].
pub struct AuthService {
    store: Arc<TokenStore>,
}

impl AuthService {
    pub fn new(store: Arc<TokenStore>) -> Self {
        AuthService { store }
    }
}

type RevocationStream = Pin<Box<dyn Stream<Item = Result<RevocationEvent, Status>> + Send>>;

/// The revocation stream of `store`: the current generation at once, then
/// every batch; ends when the store closes, or with ABORTED if the watcher
/// fell so far behind that events were lost (it must then drop every token it
/// caches and watch again).
pub fn revocation_stream(store: &TokenStore, acknowledge: bool) -> RevocationStream {
    let (generation, rx) = store.subscribe_revocations();
    let guard = acknowledge.then(|| store.register_watcher(generation));
    let watcher_id = guard
        .as_ref()
        .map(|g| g.id().to_string())
        .unwrap_or_default();
    let first = futures::stream::once(async move {
        Ok(RevocationEvent {
            generation,
            accessors: Vec::new(),
            watcher_id,
        })
    });
    let rest = BroadcastStream::new(rx).map(|event| {
        event.map_err(|BroadcastStreamRecvError::Lagged(n)| {
            Status::aborted(format!(
                "revocation watcher fell behind by {n} events; drop cached tokens and watch again"
            ))
        })
    });
    // The watcher stays registered for as long as its stream lives.
    let rest = rest.map(move |e| {
        let _registered = &guard;
        e
    });
    Box::pin(first.chain(rest).take_until(store.closed()))
}

#[tonic::async_trait]
impl Auth for AuthService {
    #[tracing::instrument(skip_all)]
    async fn authenticate(
        &self,
        req: Request<AuthenticateRequest>,
    ) -> Result<Response<TokenEntry>, Status> {
        self.store.ensure_unsealed().await?;
        let req = req.into_inner();
        Ok(Response::new(
            self.store.authenticate(&req.token, &req.remote_ip).await?,
        ))
    }

    #[tracing::instrument(skip_all)]
    async fn create_token(
        &self,
        req: Request<CreateTokenRequest>,
    ) -> Result<Response<CreateTokenResponse>, Status> {
        self.store.ensure_unsealed().await?;
        let created = self.store.create(req.get_ref()).await?;
        Ok(Response::new(CreateTokenResponse {
            token: created.token.to_string(),
            entry: Some(created.entry),
            warnings: created.warnings,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn lookup_token(
        &self,
        req: Request<LookupTokenRequest>,
    ) -> Result<Response<TokenEntry>, Status> {
        self.store.ensure_unsealed().await?;
        let req = req.into_inner();
        let r = TokenRef::from_parts(&req.token, &req.accessor)?;
        Ok(Response::new(self.store.lookup(r).await?))
    }

    #[tracing::instrument(skip_all)]
    async fn renew_token(
        &self,
        req: Request<RenewTokenRequest>,
    ) -> Result<Response<RenewTokenResponse>, Status> {
        self.store.ensure_unsealed().await?;
        let req = req.into_inner();
        let r = TokenRef::from_parts(&req.token, &req.accessor)?;
        let renewed = self.store.renew(r, req.increment).await?;
        Ok(Response::new(RenewTokenResponse {
            entry: Some(renewed.entry),
            warnings: renewed.warnings,
        }))
    }

    #[tracing::instrument(skip_all, fields(orphan = req.get_ref().orphan))]
    async fn revoke_token(
        &self,
        req: Request<RevokeTokenRequest>,
    ) -> Result<Response<RevokeTokenResponse>, Status> {
        self.store.ensure_unsealed().await?;
        let req = req.into_inner();
        let r = TokenRef::from_parts(&req.token, &req.accessor)?;
        let accessors = self.store.revoke(r, req.orphan).await?;
        Ok(Response::new(RevokeTokenResponse { accessors }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_accessors(
        &self,
        _: Request<ListAccessorsRequest>,
    ) -> Result<Response<ListAccessorsResponse>, Status> {
        self.store.ensure_unsealed().await?;
        Ok(Response::new(ListAccessorsResponse {
            accessors: self.store.list_accessors().await?,
        }))
    }

    type WatchRevocationsStream = RevocationStream;

    /// Allowed while sealed: the stream carries accessors only, and a
    /// watcher connected before unseal misses nothing.
    async fn watch_revocations(
        &self,
        req: Request<WatchRevocationsRequest>,
    ) -> Result<Response<Self::WatchRevocationsStream>, Status> {
        Ok(Response::new(revocation_stream(
            &self.store,
            req.into_inner().acknowledge,
        )))
    }

    /// Allowed while sealed, like the stream it acknowledges.
    async fn ack_revocations(
        &self,
        req: Request<AckRevocationsRequest>,
    ) -> Result<Response<AckRevocationsResponse>, Status> {
        let req = req.into_inner();
        self.store.ack_revocations(&req.watcher_id, req.generation);
        Ok(Response::new(AckRevocationsResponse {}))
    }

    /// Stores every root token pending in the seal service (see
    /// [`TokenStore::claim_root_tokens`]).
    #[tracing::instrument(skip_all)]
    async fn claim_root_tokens(
        &self,
        _: Request<ClaimRootTokensRequest>,
    ) -> Result<Response<ClaimRootTokensResponse>, Status> {
        self.store.ensure_unsealed().await?;
        let claimed = self.store.claim_root_tokens().await?;
        Ok(Response::new(ClaimRootTokensResponse { claimed }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{create, harness, Harness};

    #[tokio::test]
    async fn rpcs_map_requests_and_errors() {
        let Harness { store, root, .. } = harness().await;
        let svc = AuthService::new(store.clone());
        let created = svc
            .create_token(Request::new(CreateTokenRequest {
                parent_token: root.clone(),
                policies: vec!["dev".into()],
                ttl: 3600,
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        let entry = created.entry.unwrap();
        assert_eq!(entry.id, created.token);
        let status = svc
            .lookup_token(Request::new(LookupTokenRequest {
                token: created.token.clone(),
                accessor: entry.accessor.clone(),
            }))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        let status = svc
            .lookup_token(Request::new(LookupTokenRequest {
                token: "hvs.nope".into(),
                accessor: String::new(),
            }))
            .await
            .unwrap_err();
        assert_eq!(
            (status.code(), status.message()),
            (tonic::Code::PermissionDenied, "bad token")
        );
        let status = svc
            .authenticate(Request::new(AuthenticateRequest {
                token: "hvs.nope".into(),
                ..Default::default()
            }))
            .await
            .unwrap_err();
        assert_eq!(
            (status.code(), status.message()),
            (tonic::Code::PermissionDenied, "permission denied")
        );
        let renewed = svc
            .renew_token(Request::new(RenewTokenRequest {
                token: String::new(),
                accessor: entry.accessor.clone(),
                increment: 60,
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(renewed.entry.unwrap().ttl, 60);
        let listed = svc
            .list_accessors(Request::new(ListAccessorsRequest {}))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(listed.accessors.len(), 2);
        svc.revoke_token(Request::new(RevokeTokenRequest {
            token: created.token.clone(),
            accessor: String::new(),
            orphan: false,
        }))
        .await
        .unwrap();
        svc.revoke_token(Request::new(RevokeTokenRequest {
            token: created.token.clone(),
            accessor: String::new(),
            orphan: false,
        }))
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn sealed_answers_unavailable_before_validating() {
        let Harness { store, .. } = harness().await;
        store.barrier.keyring().clear();
        let svc = AuthService::new(store.clone());
        let sealed = |s: Status| {
            assert_eq!(
                (s.code(), s.message()),
                (tonic::Code::Unavailable, "Vault is sealed")
            );
        };
        sealed(
            svc.lookup_token(Request::new(LookupTokenRequest::default()))
                .await
                .unwrap_err(),
        );
        sealed(
            svc.revoke_token(Request::new(RevokeTokenRequest::default()))
                .await
                .unwrap_err(),
        );
        sealed(
            svc.renew_token(Request::new(RenewTokenRequest {
                increment: -1,
                ..Default::default()
            }))
            .await
            .unwrap_err(),
        );
        sealed(
            svc.create_token(Request::new(CreateTokenRequest {
                ttl: -1,
                ..Default::default()
            }))
            .await
            .unwrap_err(),
        );
        sealed(
            svc.authenticate(Request::new(AuthenticateRequest::default()))
                .await
                .unwrap_err(),
        );
        sealed(
            svc.list_accessors(Request::new(ListAccessorsRequest {}))
                .await
                .unwrap_err(),
        );
        // Watching works while sealed.
        let mut stream = svc
            .watch_revocations(Request::new(WatchRevocationsRequest::default()))
            .await
            .unwrap()
            .into_inner();
        assert!(stream.next().await.unwrap().is_ok());
    }

    #[tokio::test]
    async fn watch_sends_the_generation_then_revocations_and_ends_on_close() {
        let Harness { store, root, .. } = harness().await;
        let token = create(&store, &root, |_| {}).await;
        let mut stream = revocation_stream(&store, false);
        let first = stream.next().await.unwrap().unwrap();
        assert!(first.accessors.is_empty());
        store
            .revoke(TokenRef::Token(&token.token), false)
            .await
            .unwrap();
        let event = stream.next().await.unwrap().unwrap();
        assert_eq!(event.generation, first.generation + 1);
        assert_eq!(event.accessors, [token.entry.accessor.as_str()]);
        store.close();
        assert!(stream.next().await.is_none());
    }
}
