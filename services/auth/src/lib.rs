//! The auth service: the token store (tokens, accessors, the parent/child
//! tree, TTLs and use counts) behind the `bulwark.auth.v1.Auth` gRPC API, and
//! the auth methods (userpass, AppRole, TLS certificates) behind
//! `bulwark.auth.v1.Methods`.
//!
//! * [`TokenStore`] holds every token as `HMAC-SHA256(k, token)` through the
//!   barrier (the token value itself is never stored, logged or traced).
//!   Service (`hvs.`) and batch (`hvb.`) tokens; tokens may be bound to CIDR
//!   blocks, checked by `Authenticate` against the client's address.
//! * The root token minted at init is handed over from the seal service on
//!   every unseal ([`RootTokenSource`]).
//! * Expired tokens are refused at once, and swept with their descendants
//!   every few seconds; every revocation is announced on `WatchRevocations`
//!   so the gateway drops cached tokens.
//! * [`MethodsService`]: users (argon2id or bcrypt hashes), AppRole roles and
//!   SecretIDs (stored as keyed hashes only, uses counted with
//!   compare-and-swap), certificate roles; logins mint orphan tokens through
//!   the token store, with Vault's lockout after repeated failures (kept in
//!   memory per process). Records live under `method/<mount uuid>/`, dropped
//!   with the mount (`DropMount`, which also revokes the mount's tokens).
//!
//! * [`LeasesService`] (`bulwark.auth.v1.Leases`): the lease registry of
//!   dynamic secrets ([`LeaseRegistry`]; see [`leases`] for the storage
//!   layout). A lease is owned by the token that asked for the secret, so
//!   revoking a token (or an ancestor, or letting it expire) revokes its
//!   leases; the secret's engine (today only `dynamic-db`, through
//!   [`Engines`] and the [`LeaseEngine`] trait) revokes or renews it.
//!   The expiration manager ([`leases::manager`]) runs on exactly one
//!   replica (a storage advisory lock), idle while sealed, and retries
//!   failed revocations with exponential backoff: a lease is never dropped
//!   because its engine fails.
//!
//! Not built yet: token roles, and renewal of login tokens through their
//! auth method (Vault re-checks the user or role).

#![forbid(unsafe_code)]

pub mod background;
mod cidr;
mod create;
pub mod error;
mod expiry;
pub mod leases;
mod methods;
mod record;
mod renew;
mod revoke;
mod root;
mod service;
mod store;
#[cfg(test)]
mod test_util;

use std::future::Future;
use std::sync::Arc;

use bulwark_proto::auth::v1::auth_server::AuthServer;
use bulwark_proto::auth::v1::leases_server::LeasesServer;
use bulwark_proto::auth::v1::methods_server::MethodsServer;
use bulwark_proto::seal::v1::seal_client::SealClient;
use bulwark_shared::barrier::Barrier;
use bulwark_shared::grpc::{self, GrpcError, KeyedRuntime};
use bulwark_shared::peer::AllowList;
use bulwark_shared::storage::{Database, StorageError};
use bulwark_shared::tls::ServiceIdentity;
use bulwark_shared::ServiceName;
use tokio::net::TcpListener;
use tonic::service::Routes;

pub use crate::create::Created;
pub use crate::error::AuthError;
pub use crate::leases::{Engines, LeaseEngine, LeaseRegistry, LeasesService};
pub use crate::methods::MethodsService;
pub use crate::record::TokenRef;
pub use crate::renew::Renewed;
pub use crate::root::RootTokenSource;
pub use crate::service::{revocation_stream, AuthService};
pub use crate::store::{TokenStore, SYSTEM_DEFAULT_TTL, SYSTEM_MAX_TTL};

const AUTH_PREFIX: &str = "/bulwark.auth.v1.Auth/";
const METHODS_PREFIX: &str = "/bulwark.auth.v1.Methods/";
const LEASES_PREFIX: &str = "/bulwark.auth.v1.Leases/";

/// Who may call what: only the gateway calls the auth service.
pub fn allow_list() -> AllowList {
    AllowList::new()
        .allow(AUTH_PREFIX, &[ServiceName::Gateway])
        .allow(METHODS_PREFIX, &[ServiceName::Gateway])
        .allow(LEASES_PREFIX, &[ServiceName::Gateway])
        // kv drops a revoked token's cubbyhole.
        .allow(
            "/bulwark.auth.v1.Auth/WatchRevocations",
            &[ServiceName::Gateway, ServiceName::Kv],
        )
}

/// Why [`serve`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Grpc(#[from] GrpcError),
}

/// Runs the auth service on `listener` until `shutdown`: its keyring fed by
/// the seal service at `seal`, its tokens and leases in `db`'s `auth`
/// namespace, lease revocations and renewals sent to the dynamic-db service
/// over `dynamic_db` (a lazily connecting channel), and in the background
/// the root token hand-off, the token expiry sweeper and the lease
/// expiration manager (all stopped, with every revocation stream, when
/// `shutdown` completes).
pub async fn serve(
    identity: ServiceIdentity,
    db: Database,
    seal: grpc::Channel,
    dynamic_db: grpc::Channel,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let seal = SealClient::new(seal);
    let rt = KeyedRuntime::start(seal.clone());
    let barrier = Barrier::new(
        db.namespace(ServiceName::Auth.namespace()).await?,
        rt.keyring.clone(),
    );
    let store = Arc::new(
        TokenStore::new(barrier)
            .with_root_source(Arc::new(seal))
            .with_bus(bulwark_shared::bus::Bus::new(db.clone())),
    );
    let leases = Arc::new(LeaseRegistry::new(store.clone(), Engines::grpc(dynamic_db)));
    let mut tasks = background::spawn(
        store.clone(),
        rt.seal.subscribe(),
        background::SWEEP_INTERVAL,
    );
    tasks.extend(store.follow_replicas());
    tasks.push(leases::manager::spawn(
        leases.clone(),
        db.clone(),
        leases::ManagerConfig::default(),
    ));
    let routes = Routes::new(AuthServer::new(AuthService::new(store.clone())))
        .add_service(MethodsServer::new(MethodsService::new(store.clone())))
        .add_service(LeasesServer::new(LeasesService::new(leases)))
        .add_service(rt.health_service);
    let closing = store.clone();
    let shutdown = async move {
        shutdown.await;
        // End the revocation streams, or the server would wait on them.
        closing.close();
    };
    let result = grpc::serve(&identity, allow_list(), routes, listener, shutdown).await;
    store.close();
    for task in tasks {
        let _ = task.await;
    }
    Ok(result?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ServiceName::*;

    #[test]
    fn only_the_gateway_calls_auth() {
        let allow = allow_list();
        assert!(allow.permits("/bulwark.auth.v1.Auth/Authenticate", Gateway));
        assert!(allow.permits("/bulwark.auth.v1.Auth/WatchRevocations", Gateway));
        for other in [Seal, Auth, Policy, Kv, DynamicDb, Pki, Audit] {
            assert!(!allow.permits("/bulwark.auth.v1.Auth/CreateToken", other));
        }
        assert!(allow.permits("/grpc.health.v1.Health/Check", Kv));
    }

    #[test]
    fn only_the_gateway_calls_leases() {
        let allow = allow_list();
        for rpc in [
            "RegisterLease",
            "LookupLease",
            "RenewLease",
            "RevokeLease",
            "RevokePrefix",
            "ListLeases",
            "TidyLeases",
        ] {
            let path = format!("/bulwark.auth.v1.Leases/{rpc}");
            assert!(allow.permits(&path, Gateway), "{rpc}");
            for other in [Seal, Auth, Policy, Kv, DynamicDb, Pki, Audit] {
                assert!(!allow.permits(&path, other), "{rpc} {other:?}");
            }
        }
    }

    #[test]
    fn only_the_gateway_calls_methods() {
        let allow = allow_list();
        for rpc in [
            "UserpassLogin",
            "AppRoleLogin",
            "CertLogin",
            "DropMount",
            "WriteUser",
        ] {
            let path = format!("/bulwark.auth.v1.Methods/{rpc}");
            assert!(allow.permits(&path, Gateway), "{rpc}");
            for other in [Seal, Auth, Policy, Kv, DynamicDb, Pki, Audit] {
                assert!(!allow.permits(&path, other), "{rpc} {other:?}");
            }
        }
    }
}
