//! The seal service: init (Shamir split of a random 256-bit root key), unseal
//! with progress and nonce, seal, the seal-state stream, per-service data
//! keys derived from the barrier keyring, and key management: keyring
//! rotation, rekey and root token generation. With `seal "static"` or
//! `seal "transit"` (auto-unseal) the root key is stored wrapped by the seal
//! key (or another server's transit key), the service unseals itself, and
//! recovery keys take the unseal keys' place as the authority for rekey,
//! generate-root and unsealing after `sys/seal`.
//!
//! Invariant: only this service ever holds the root key or the keyring. Other
//! services get `ServiceKey` answers derived for the name in *their own*
//! certificate, so no service can obtain another's key.

#![forbid(unsafe_code)]

mod autoseal;
mod core;
pub mod error;
mod keys;
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

pub use crate::core::{
    random_base62, InitOutput, InitParams, PendingClaim, SealCore, INIT_ROOT_ID,
};
pub use crate::error::SealError;
pub use crate::keys::{decode_token, encode_token, RekeyOutcome, RekeyTarget, OTP_LEN};
pub use crate::service::SealService;
pub use bulwark_shared::config::{SealSettings, StaticSealKey, TransitSealSettings};

const SEAL_PREFIX: &str = "/bulwark.seal.v1.Seal/";

/// Who may call what: the gateway drives the lifecycle; every service may
/// follow the state and ask for its own key.
pub fn allow_list() -> AllowList {
    use ServiceName::*;
    let everyone = [Auth, Policy, Kv, DynamicDb, Pki, Audit, Transit, Gateway];
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

/// Refuses a seal configuration that does not match the one the storage was
/// initialized with (seal migration is not supported). [`serve`] checks it
/// too; calling this first lets a process stop before starting anything.
pub async fn check_seal_config(
    db: &Database,
    seal: Option<&SealSettings>,
) -> Result<(), ServeError> {
    let storage = db.namespace(ServiceName::Seal.namespace()).await?;
    if let Some(cfg) = crate::core::read_config(&storage).await? {
        crate::core::check_seal_type(&cfg, seal.map(SealSettings::seal_type))?;
    }
    Ok(())
}

/// Runs the seal service on `listener` until `shutdown`. With `seal` (a
/// `seal "static"` or `seal "transit"` block), an auto seal: the service
/// unseals itself (a transit seal in the background, retried until its
/// server answers).
pub async fn serve(
    identity: ServiceIdentity,
    db: Database,
    seal: Option<SealSettings>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let storage = db.namespace(ServiceName::Seal.namespace()).await?;
    let core = Arc::new(SealCore::load_with(storage, db.kind(), seal).await?);
    if core.needs_retrying_unseal().await {
        tokio::spawn(crate::core::retry_auto_unseal(Arc::downgrade(&core)));
    }
    // `vault_core_unsealed` follows the state (the task ends with the core).
    let mut states = core.subscribe();
    tokio::spawn(async move {
        let gauge = &bulwark_shared::metrics::metrics().unsealed;
        loop {
            gauge.set(i64::from(!states.borrow_and_update().sealed));
            if states.changed().await.is_err() {
                return;
            }
        }
    });
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    let routes = Routes::new(SealServer::new(SealService::new(core))).add_service(health_service);
    grpc::serve(&identity, allow_list(), routes, listener, shutdown).await?;
    Ok(())
}
