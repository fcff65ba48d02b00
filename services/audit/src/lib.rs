//! The audit service: audit devices (file, socket, syslog), HMAC of sensitive
//! fields with a per-device salt, fail-closed logging of every request and
//! response, behind the `bulwark.audit.v1.Audit` gRPC API.
//!
//! * [`options`]: device types and their options, validated at enable.
//! * [`entry`]: from the gateway's entry (values in the clear) to one
//!   device's line: salts, HMAC of tokens, accessors and data, list
//!   elision, JSON (`time` first) or JSONx, prefix.
//! * [`sparse`]: the same for JSON devices, from the entry's text without a
//!   tree of the whole entry.
//! * [`sink`]: files (and `stdout`, `discard`), sockets, syslog.
//! * [`writer`]: one writer task per device, group commit (one fsync per
//!   batch), reopen without losing queued lines.
//! * [`AuditBroker`]: the device table behind the barrier and the
//!   fail-closed fan-out of `Log`.
//! * [`AuditService`]: the gRPC service; only the gateway may call it. While
//!   sealed every RPC answers `UNAVAILABLE "Vault is sealed"`, so a sealed
//!   audit service fails every audited request closed.
//!
//! Audit entries are never written to the service's own logs or spans.

#![forbid(unsafe_code)]

pub mod broker;
pub mod entry;
pub mod error;
pub mod options;
mod service;
pub mod sink;
pub mod sparse;
#[cfg(test)]
mod test_util;
pub mod writer;

use std::future::Future;
use std::sync::Arc;

use bulwark_proto::audit::v1::audit_server::AuditServer;
use bulwark_proto::seal::v1::seal_client::SealClient;
use bulwark_shared::barrier::Barrier;
use bulwark_shared::grpc::{self, Channel, GrpcError, KeyedRuntime, SealView};
use bulwark_shared::peer::AllowList;
use bulwark_shared::storage::{Database, StorageError};
use bulwark_shared::tls::ServiceIdentity;
use bulwark_shared::ServiceName;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::Routes;

pub use crate::broker::{AuditBroker, DeviceConfig};
pub use crate::error::AuditError;
pub use crate::service::AuditService;

const AUDIT_PREFIX: &str = "/bulwark.audit.v1.Audit/";

/// Who may call what: only the gateway talks to the audit service.
pub fn allow_list() -> AllowList {
    AllowList::new().allow(AUDIT_PREFIX, &[ServiceName::Gateway])
}

/// Why [`serve`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Grpc(#[from] GrpcError),
}

/// Runs the audit service on `listener` until `shutdown`: its keyring fed by
/// the seal service at `seal`, its device table in `db`'s `audit` namespace.
/// Until the data key arrives (and whenever sealed) every RPC answers
/// `UNAVAILABLE "Vault is sealed"`.
///
/// On unseal every configured device is reopened; on seal every device is
/// flushed and closed and the salts are forgotten. On unix, SIGHUP reopens
/// every device (log rotation). When `shutdown` completes the server stops
/// and every device is flushed and closed before this returns.
pub async fn serve(
    identity: ServiceIdentity,
    db: Database,
    seal: Channel,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let rt = KeyedRuntime::start(SealClient::new(seal));
    let barrier = Barrier::new(
        db.namespace(ServiceName::Audit.namespace()).await?,
        rt.keyring.clone(),
    );
    let broker =
        Arc::new(AuditBroker::new(barrier).with_bus(bulwark_shared::bus::Bus::new(db.clone())));
    let (stop, stopped) = watch::channel(false);
    let replicas = tokio::spawn(broker.clone().follow_replicas(stopped.clone()));
    let follower = tokio::spawn(follow_seal(
        broker.clone(),
        rt.seal.subscribe(),
        stopped.clone(),
    ));
    let hangup = tokio::spawn(reopen_on_hangup(broker.clone(), stopped));
    let routes = Routes::new(
        AuditServer::new(AuditService::new(broker.clone()))
            .max_decoding_message_size(bulwark_shared::grpc::MAX_BODY_MESSAGE),
    )
    .add_service(rt.health_service);
    let shutdown = async {
        shutdown.await;
        let _ = stop.send(true);
    };
    let result = grpc::serve(&identity, allow_list(), routes, listener, shutdown).await;
    let _ = stop.send(true);
    let _ = follower.await;
    let _ = hangup.await;
    let _ = replicas.await;
    broker.unload().await;
    Ok(result?)
}

/// Opens every device on unseal; closes them (and forgets the salts) on seal.
async fn follow_seal(
    broker: Arc<AuditBroker>,
    mut seal: watch::Receiver<SealView>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let sealed = seal.borrow_and_update().sealed;
        if sealed {
            broker.unload().await;
        } else {
            match broker.load().await {
                Ok(()) => {}
                // Sealed again meanwhile: the next change says so.
                Err(e) if e.is_sealed() => {}
                // Loaded again on the next call.
                Err(e) => tracing::warn!(error = %e, "could not load the audit devices"),
            }
        }
        tokio::select! {
            changed = seal.changed() => if changed.is_err() { return },
            () = until_stopped(&mut stopped) => return,
        }
    }
}

/// Reopens every device on SIGHUP (unix only) until stopped.
async fn reopen_on_hangup(broker: Arc<AuditBroker>, mut stopped: watch::Receiver<bool>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut hangups = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP; audit devices reopen only on request");
                until_stopped(&mut stopped).await;
                return;
            }
        };
        loop {
            tokio::select! {
                got = hangups.recv() => {
                    if got.is_none() {
                        return;
                    }
                    match broker.reopen().await {
                        Ok(()) => tracing::info!("SIGHUP: audit devices reopened"),
                        Err(e) if e.is_sealed() => {}
                        Err(e) => tracing::warn!(error = %e, "SIGHUP: audit devices not all reopened"),
                    }
                }
                () = until_stopped(&mut stopped) => return,
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = broker;
        until_stopped(&mut stopped).await;
    }
}

/// Completes once `stopped` turns true (or its sender is gone).
async fn until_stopped(stopped: &mut watch::Receiver<bool>) {
    let _ = stopped.wait_for(|s| *s).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_gateway_may_call() {
        let allow = allow_list();
        for method in ["EnableDevice", "Log", "Hash", "Reopen"] {
            let path = format!("{AUDIT_PREFIX}{method}");
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
