//! The seal service: init (Shamir split of a random 256-bit root key), unseal
//! with progress and nonce, seal, the seal-state stream, and per-service data
//! keys derived from the barrier keyring.
//!
//! Invariant: only this service ever holds the root key or the keyring. Other
//! services get `ServiceKey` answers derived for the name in *their own*
//! certificate, so no service can obtain another's key.

#![forbid(unsafe_code)]

mod core;
pub mod error;
mod service;
mod shamir;

use std::future::Future;
use std::sync::Arc;

use bulwark_proto::seal::v1::seal_server::SealServer;
use bulwark_shared::grpc::{self, GrpcError};
use bulwark_shared::peer::AllowList;
use bulwark_shared::storage::Database;
use bulwark_shared::tls::ServiceIdentity;
use bulwark_shared::ServiceName;
use tokio::net::TcpListener;
use tonic::service::Routes;

pub use crate::core::{random_base62, InitOutput, SealCore};
pub use crate::error::SealError;
pub use crate::service::SealService;

const SEAL_PREFIX: &str = "/bulwark.seal.v1.Seal/";

/// Who may call what: the gateway drives the lifecycle; every service may
/// follow the state and ask for its own key.
pub fn allow_list() -> AllowList {
    use ServiceName::*;
    let everyone = [Auth, Policy, Kv, DynamicDb, Pki, Audit, Gateway];
    AllowList::new()
        .allow(SEAL_PREFIX, &[Gateway])
        .allow("/bulwark.seal.v1.Seal/Status", &everyone)
        .allow("/bulwark.seal.v1.Seal/WatchSealState", &everyone)
        .allow("/bulwark.seal.v1.Seal/ServiceKey", &everyone)
        .allow("/bulwark.seal.v1.Seal/ClaimInitRootToken", &[Auth])
        .allow("/bulwark.seal.v1.Seal/AckInitRootToken", &[Auth])
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Seal(#[from] SealError),
    #[error(transparent)]
    Storage(#[from] bulwark_shared::storage::StorageError),
    #[error(transparent)]
    Grpc(#[from] GrpcError),
}

/// Runs the seal service on `listener` until `shutdown`.
pub async fn serve(
    identity: ServiceIdentity,
    db: Database,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let storage = db.namespace(ServiceName::Seal.namespace()).await?;
    let core = Arc::new(SealCore::load(storage, db.kind()).await?);
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let routes = Routes::new(SealServer::new(SealService::new(core))).add_service(health_service);
    grpc::serve(&identity, allow_list(), routes, listener, shutdown).await?;
    Ok(())
}
