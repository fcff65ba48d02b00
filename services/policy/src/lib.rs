//! The policy service: ACL policies in HCL or JSON, the compiled path matcher
//! and every authorization decision (`Authorize(policies, path, operation)`),
//! with `root` and `default` built in.
//!
//! * [`parse`]: policy text → path rules (Vault's policy language).
//! * [`acl`]: the compiled ACL of a set of policies and Vault's matching
//!   algorithm (exact, glob and segment rules, priorities, `deny`, `sudo`).
//! * [`store`]: policies stored through the barrier, built-ins, caches and
//!   the change feed.
//! * [`PolicyService`]: the `bulwark.policy.v1.Policy` gRPC service; only the
//!   gateway may call it. While sealed every RPC answers
//!   `UNAVAILABLE "Vault is sealed"`.

#![forbid(unsafe_code)]

pub mod acl;
pub mod error;
pub mod parse;
mod service;
pub mod store;

use std::future::Future;
use std::sync::Arc;

use bulwark_proto::policy::v1::policy_server::PolicyServer;
use bulwark_proto::seal::v1::seal_client::SealClient;
use bulwark_shared::barrier::Barrier;
use bulwark_shared::grpc::{self, Channel, GrpcError, KeyedRuntime};
use bulwark_shared::peer::AllowList;
use bulwark_shared::storage::{Database, StorageError};
use bulwark_shared::tls::ServiceIdentity;
use bulwark_shared::ServiceName;
use tokio::net::TcpListener;
use tonic::service::Routes;

pub use crate::acl::{Acl, Decision, Operation};
pub use crate::error::PolicyError;
pub use crate::parse::{parse_policy, ParseError, ParsedPolicy};
pub use crate::service::PolicyService;
pub use crate::store::PolicyStore;

const POLICY_PREFIX: &str = "/bulwark.policy.v1.Policy/";

/// Who may call what: only the gateway talks to the policy service.
pub fn allow_list() -> AllowList {
    AllowList::new().allow(POLICY_PREFIX, &[ServiceName::Gateway])
}

/// Why [`serve`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Grpc(#[from] GrpcError),
}

/// Runs the policy service on `listener` until `shutdown`. Its data key comes
/// from the seal service over `seal`; until then (and whenever sealed) every
/// RPC answers `UNAVAILABLE "Vault is sealed"`.
pub async fn serve(
    identity: ServiceIdentity,
    db: Database,
    seal: Channel,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    // Keep the seal watcher alive as long as the server runs.
    let KeyedRuntime {
        keyring,
        seal: _seal_watcher,
        health_service,
        ..
    } = KeyedRuntime::start(SealClient::new(seal));
    let storage = db.namespace(ServiceName::Policy.namespace()).await?;
    let store = Arc::new(PolicyStore::new(Barrier::new(storage, keyring)));
    let routes =
        Routes::new(PolicyServer::new(PolicyService::new(store))).add_service(health_service);
    grpc::serve(&identity, allow_list(), routes, listener, shutdown).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_gateway_may_call() {
        let allow = allow_list();
        assert!(allow.permits("/bulwark.policy.v1.Policy/Authorize", ServiceName::Gateway));
        for other in ServiceName::ALL
            .into_iter()
            .filter(|n| *n != ServiceName::Gateway)
        {
            assert!(
                !allow.permits("/bulwark.policy.v1.Policy/Authorize", other),
                "{other}"
            );
        }
        // Health stays open to every peer.
        assert!(allow.permits("/grpc.health.v1.Health/Check", ServiceName::Auth));
    }
}
