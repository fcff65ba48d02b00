//! The kv service: the storage of every kv v1, kv v2 and cubbyhole mount
//! (cubbyhole also holds response-wrapping payloads) behind the
//! `bulwark.kv.v1.Kv` gRPC API. The gateway owns the mount table and Vault's
//! HTTP shapes; this service owns the storage semantics.
//!
//! * [`layout`]: where everything lives, and what mount ids and paths may be.
//! * [`KvStore`]: kv v1 / cubbyhole entries, listing, kv v2 mount
//!   configuration and dropping mounts ([`store`]); versions, metadata,
//!   check-and-set, soft delete and destroy ([`versioned`]). Every value is
//!   sealed by the barrier; kv v2 metadata changes by compare-and-swap, so
//!   concurrent writers never lose a version.
//! * [`revocations`]: follows the auth service's revocations and deletes each
//!   revoked token's cubbyhole.
//! * [`KvService`]: the gRPC service; only the gateway may call it. While
//!   sealed every RPC answers `UNAVAILABLE "Vault is sealed"`.

#![forbid(unsafe_code)]

pub mod error;
pub mod layout;
mod merge;
pub mod revocations;
mod service;
pub mod store;
#[cfg(test)]
mod test_util;
pub mod versioned;

use std::future::Future;
use std::sync::Arc;

use bulwark_proto::auth::v1::auth_client::AuthClient;
use bulwark_proto::kv::v1::kv_server::KvServer;
use bulwark_proto::seal::v1::seal_client::SealClient;
use bulwark_shared::barrier::Barrier;
use bulwark_shared::grpc::{self, Channel, GrpcError, KeyedRuntime};
use bulwark_shared::peer::AllowList;
use bulwark_shared::storage::{Database, StorageError};
use bulwark_shared::tls::ServiceIdentity;
use bulwark_shared::ServiceName;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::Routes;

pub use crate::error::KvError;
pub use crate::layout::Kind;
pub use crate::service::KvService;
pub use crate::store::KvStore;

const KV_PREFIX: &str = "/bulwark.kv.v1.Kv/";

/// Who may call what: only the gateway talks to the kv service.
pub fn allow_list() -> AllowList {
    AllowList::new().allow(KV_PREFIX, &[ServiceName::Gateway])
}

/// Why [`serve`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Grpc(#[from] GrpcError),
}

/// Runs the kv service on `listener` until `shutdown`: its keyring fed by the
/// seal service at `seal`, its data in `db`'s `kv` namespace, and a follower
/// of the auth service's revocations at `auth` that deletes revoked tokens'
/// cubbyholes (stopped when `shutdown` completes). Until the data key
/// arrives (and whenever sealed) every RPC answers
/// `UNAVAILABLE "Vault is sealed"`.
pub async fn serve(
    identity: ServiceIdentity,
    db: Database,
    seal: Channel,
    auth: Channel,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let rt = KeyedRuntime::start(SealClient::new(seal));
    let barrier = Barrier::new(
        db.namespace(ServiceName::Kv.namespace()).await?,
        rt.keyring.clone(),
    );
    let store = Arc::new(KvStore::new(barrier));
    let (stop, stopped) = watch::channel(false);
    let follower = revocations::spawn(store.clone(), AuthClient::new(auth), stopped);
    let routes = Routes::new(
        KvServer::new(KvService::new(store))
            .max_decoding_message_size(bulwark_shared::grpc::MAX_BODY_MESSAGE)
            .max_encoding_message_size(bulwark_shared::grpc::MAX_BODY_MESSAGE),
    )
    .add_service(rt.health_service);
    let shutdown = async {
        shutdown.await;
        let _ = stop.send(true);
    };
    let result = grpc::serve(&identity, allow_list(), routes, listener, shutdown).await;
    let _ = stop.send(true);
    let _ = follower.await;
    Ok(result?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_gateway_may_call() {
        let allow = allow_list();
        for method in ["Get", "WriteVersion", "DropMount"] {
            let path = format!("{KV_PREFIX}{method}");
            assert!(allow.permits(&path, ServiceName::Gateway), "{method}");
            for other in ServiceName::ALL
                .into_iter()
                .filter(|n| *n != ServiceName::Gateway)
            {
                assert!(!allow.permits(&path, other), "{method} {other}");
            }
        }
        // Health stays open to every peer.
        assert!(allow.permits("/grpc.health.v1.Health/Check", ServiceName::Auth));
    }
}
