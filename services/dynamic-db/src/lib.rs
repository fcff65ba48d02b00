//! The dynamic-db service: Vault's database secrets engine behind the
//! `bulwark.dynamicdb.v1.DynamicDb` gRPC API, for PostgreSQL
//! (`postgresql-database-plugin`) and MySQL/MariaDB (`mysql-database-plugin`
//! and its aliases). The gateway owns the mount table and Vault's HTTP
//! shapes and names each mount by UUID; the auth service's lease registry
//! calls `RevokeCredentials` / `RenewCredentials`.
//!
//! * [`layout`]: where records live (`m/<mount>/config|role|static-role/…`),
//!   all sealed by the barrier; connection and static-role passwords are
//!   stored only there and never returned.
//! * [`conn`]: plugins, connection URLs (`{{username}}`/`{{password}}`,
//!   MySQL's Go DSN form), one lazily opened pool per connection, driver
//!   errors redacted of passwords and URL user information.
//! * [`DbStore`] ([`store`]): connections (verified before they are stored),
//!   root rotation, roles, credentials created in one transaction (rolled
//!   back on failure), revocation (idempotent; unreachable database =
//!   retryable `UNAVAILABLE`), renewal, static roles with claimed,
//!   replica-safe rotations, and dropping a mount.
//! * [`template`]: usernames from Vault's username templates and passwords
//!   after Vault's default policy, from the OS CSPRNG. [`sql`]: statement
//!   splitting, placeholders and quoting.
//! * [`background`]: rotates due static roles while unsealed.
//! * [`DynamicDbService`]: the gRPC handlers. While sealed every RPC answers
//!   `UNAVAILABLE "Vault is sealed"`.
//!
//! With the `test-util` feature, `testing::PrivatePg` runs a private
//! PostgreSQL cluster with password authentication for tests.
//!
//! Not supported yet: named password policies (`password_policy` is stored
//! but the default policy is used), `rotation_schedule` for static roles, and
//! PostgreSQL key/value DSNs (`host=… user=…`).

#![forbid(unsafe_code)]

pub mod background;
pub mod conn;
pub mod error;
pub mod layout;
mod ops;
mod service;
pub mod sql;
pub mod store;
pub mod template;
#[cfg(any(test, feature = "test-util"))]
mod test_util;
#[cfg(test)]
mod tests_mysql;
#[cfg(test)]
mod tests_pg;

/// Test helpers shared with the end-to-end tests (feature `test-util`).
#[cfg(any(test, feature = "test-util"))]
pub mod testing {
    pub use crate::test_util::PrivatePg;
}

use std::future::Future;
use std::sync::Arc;

use bulwark_proto::dynamicdb::v1::dynamic_db_server::DynamicDbServer;
use bulwark_proto::seal::v1::seal_client::SealClient;
use bulwark_shared::barrier::Barrier;
use bulwark_shared::grpc::{self, GrpcError, KeyedRuntime};
use bulwark_shared::peer::AllowList;
use bulwark_shared::storage::{Database, StorageError};
use bulwark_shared::tls::ServiceIdentity;
use bulwark_shared::ServiceName;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::Routes;

pub use crate::error::DbError;
pub use crate::service::DynamicDbService;
pub use crate::store::DbStore;

const PREFIX: &str = "/bulwark.dynamicdb.v1.DynamicDb/";

/// Who may call what: the gateway everything; the auth service's lease
/// registry revokes and renews credentials.
pub fn allow_list() -> AllowList {
    AllowList::new()
        .allow(PREFIX, &[ServiceName::Gateway])
        .allow(
            "/bulwark.dynamicdb.v1.DynamicDb/RevokeCredentials",
            &[ServiceName::Gateway, ServiceName::Auth],
        )
        .allow(
            "/bulwark.dynamicdb.v1.DynamicDb/RenewCredentials",
            &[ServiceName::Gateway, ServiceName::Auth],
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

/// Runs the dynamic-db service on `listener` until `shutdown`: its keyring
/// fed by the seal service at `seal`, its records in `db`'s `dynamic_db`
/// namespace, and the static-role rotator (stopped with the server). Until
/// the data key arrives (and whenever sealed) every RPC answers
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
        db.namespace(ServiceName::DynamicDb.namespace()).await?,
        rt.keyring.clone(),
    );
    let store = Arc::new(DbStore::new(barrier));
    let (stop, stopped) = watch::channel(false);
    let rotator = background::spawn(
        store.clone(),
        rt.seal.subscribe(),
        background::ROTATION_INTERVAL,
        stopped,
    );
    let routes = Routes::new(
        DynamicDbServer::new(DynamicDbService::new(store.clone()))
            .max_decoding_message_size(grpc::MAX_BODY_MESSAGE)
            .max_encoding_message_size(grpc::MAX_BODY_MESSAGE),
    )
    .add_service(rt.health_service);
    let shutdown = async {
        shutdown.await;
        let _ = stop.send(true);
    };
    let result = grpc::serve(&identity, allow_list(), routes, listener, shutdown).await;
    let _ = stop.send(true);
    let _ = rotator.await;
    store.close_pools();
    Ok(result?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ServiceName::*;

    #[test]
    fn the_gateway_calls_everything() {
        let allow = allow_list();
        for rpc in [
            "WriteConfig",
            "ReadConfig",
            "RotateRoot",
            "WriteRole",
            "CreateCredentials",
            "RevokeCredentials",
            "RenewCredentials",
            "WriteStaticRole",
            "GetStaticCredentials",
            "DropMount",
        ] {
            let path = format!("{PREFIX}{rpc}");
            assert!(allow.permits(&path, Gateway), "{rpc}");
            for other in [Seal, Policy, Kv, DynamicDb, Pki, Audit] {
                assert!(!allow.permits(&path, other), "{rpc} {other}");
            }
        }
        assert!(allow.permits("/grpc.health.v1.Health/Check", Auth));
    }

    #[test]
    fn auth_only_revokes_and_renews() {
        let allow = allow_list();
        assert!(allow.permits(&format!("{PREFIX}RevokeCredentials"), Auth));
        assert!(allow.permits(&format!("{PREFIX}RenewCredentials"), Auth));
        for rpc in [
            "CreateCredentials",
            "WriteConfig",
            "ReadConfig",
            "GetStaticCredentials",
            "RotateRoot",
            "DropMount",
        ] {
            assert!(!allow.permits(&format!("{PREFIX}{rpc}"), Auth), "{rpc}");
        }
        // No prefix confusion: a longer method name is another method.
        assert!(!allow.permits(&format!("{PREFIX}RevokeCredentialsX"), Auth));
    }
}
