//! The transit service: Vault's transit secrets engine (encryption as a
//! service) for every `transit` mount behind the `bulwark.transit.v1.Transit`
//! gRPC API. The gateway owns the mount table and Vault's HTTP shapes; this
//! service owns the keys, which never leave it except through an export or
//! backup the key was created to allow.
//!
//! * [`keys`]: key types and the stored key ring (one record per key).
//! * [`crypto`]: the primitives (AEAD, HKDF, HMAC, digests, Ed25519,
//!   ECDSA, RSA), each from a RustCrypto crate.
//! * [`ops`]: one item of an operation over a loaded key, in Vault's text
//!   forms (`vault:v<N>:<base64>`) with Vault's version rules.
//! * [`store`]: keys through the barrier; create-only creation,
//!   compare-and-swap changes, backup/restore, automatic rotation.
//! * [`TransitService`]: the gRPC service; only the gateway may call it.
//!   While sealed every RPC answers `UNAVAILABLE "Vault is sealed"`.
//!
//! What works: key types aes128-gcm96, aes256-gcm96 (default),
//! chacha20-poly1305, ed25519, ecdsa-p256, ecdsa-p384, rsa-2048/3072/4096,
//! hmac; derived keys (HKDF-SHA256 per context), convergent encryption;
//! encrypt/decrypt/rewrap (batches, associated data, upsert), data keys,
//! HMAC, sign/verify (ASN.1 or JWS ECDSA, PSS or PKCS#1 v1.5 RSA,
//! prehashed input), hash, random; key config, rotate (also automatic,
//! checked every minute), trim, delete, export, backup/restore.
//!
//! Not yet: ecdsa-p521, xchacha20-poly1305, ml-dsa, managed and imported
//! keys (BYOK, `wrapping_key`), `keys/:name/csr` and certificates,
//! `config/keys` (disable_upsert), soft delete, the convergent nonce
//! schemes of Vault's versions 1 and 2 (a caller-chosen nonce is refused),
//! Ed25519ph. Backups are this service's own format (not Vault's).

#![forbid(unsafe_code)]

pub mod crypto;
pub mod error;
pub mod keys;
pub mod ops;
mod service;
pub mod store;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bulwark_proto::seal::v1::seal_client::SealClient;
use bulwark_proto::transit::v1::transit_server::TransitServer;
use bulwark_shared::barrier::Barrier;
use bulwark_shared::grpc::{self, GrpcError, KeyedRuntime};
use bulwark_shared::peer::AllowList;
use bulwark_shared::storage::{Database, StorageError};
use bulwark_shared::tls::ServiceIdentity;
use bulwark_shared::ServiceName;
use tokio::net::TcpListener;
use tonic::service::Routes;

pub use crate::error::TransitError;
pub use crate::service::TransitService;
pub use crate::store::TransitStore;

const TRANSIT_PREFIX: &str = "/bulwark.transit.v1.Transit/";

/// How often keys are checked for automatic rotation.
const ROTATION_CHECK: Duration = Duration::from_secs(60);

/// Who may call what: only the gateway talks to the transit service.
pub fn allow_list() -> AllowList {
    AllowList::new().allow(TRANSIT_PREFIX, &[ServiceName::Gateway])
}

/// Why [`serve`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Grpc(#[from] GrpcError),
}

/// Rotates due keys every [`ROTATION_CHECK`] while unsealed.
async fn rotation_loop(store: Arc<TransitStore>) {
    let mut tick = tokio::time::interval(ROTATION_CHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if store.ensure_unsealed().await.is_err() {
            continue;
        }
        if let Err(e) = store.rotate_due(keys::now()).await {
            tracing::warn!(error = %e, "automatic key rotation failed");
        }
    }
}

/// Runs the transit service on `listener` until `shutdown`: its keyring fed
/// by the seal service at `seal`, its data in `db`'s `transit` namespace.
/// Until the data key arrives (and whenever sealed) every RPC answers
/// `UNAVAILABLE "Vault is sealed"`.
pub async fn serve(
    identity: ServiceIdentity,
    db: Database,
    seal: grpc::Channel,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let rt = KeyedRuntime::start(SealClient::new(seal));
    let barrier = Barrier::new(
        db.namespace(ServiceName::Transit.namespace()).await?,
        rt.keyring.clone(),
    );
    let store = Arc::new(TransitStore::new(barrier));
    let rotation = tokio::spawn(rotation_loop(store.clone()));
    let routes = Routes::new(
        TransitServer::new(TransitService::new(store))
            .max_decoding_message_size(grpc::MAX_BODY_MESSAGE)
            .max_encoding_message_size(grpc::MAX_BODY_MESSAGE),
    )
    .add_service(rt.health_service);
    let served = grpc::serve(&identity, allow_list(), routes, listener, shutdown).await;
    rotation.abort();
    Ok(served?)
}

#[cfg(test)]
mod allow_tests {
    use super::*;

    #[test]
    fn only_the_gateway_may_call() {
        let allow = allow_list();
        for method in ["Encrypt", "Decrypt", "ExportKey", "BackupKey", "DropMount"] {
            let path = format!("{TRANSIT_PREFIX}{method}");
            assert!(allow.permits(&path, ServiceName::Gateway), "{method}");
            for other in ServiceName::ALL
                .into_iter()
                .filter(|n| *n != ServiceName::Gateway)
            {
                assert!(!allow.permits(&path, other), "{method} {other}");
            }
        }
        assert!(allow.permits("/grpc.health.v1.Health/Check", ServiceName::Auth));
    }
}
