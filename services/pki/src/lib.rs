//! The pki service: Vault's PKI secrets engine for every `pki` mount behind
//! the `bulwark.pki.v1.Pki` gRPC API. The gateway owns the mount table and
//! Vault's HTTP shapes (and passes each mount's TTL limits in); this service
//! owns the keys, certificates and their rules. Certificates are built with
//! rcgen and parsed with x509-parser; RSA keys come from the `rsa` crate
//! (ring, rcgen's backend, only signs with RSA).
//!
//! * [`store`]: where everything lives, and the operations (issuers,
//!   `config/urls`, roles, issue/sign, revocation, CRL, dropping a mount);
//!   intermediates, `config/ca` and tidy are in `ca.rs`.
//! * [`names`]: Vault's role name rules.
//! * [`crypto`]: key types, serials, PEM, the AIA extension.
//! * [`PkiService`]: the gRPC service; only the gateway may call it. While
//!   sealed every RPC answers `UNAVAILABLE "Vault is sealed"`.
//!
//! What works: root CAs (`internal`/`exported`; rsa 2048/3072/4096, ec
//! 256/384, ed25519; subject O/OU, DNS/IP SANs, max_path_length, TTL capped
//! by the mount max with a warning); a second root becomes another issuer,
//! the first stays the default; reading issuers by `default`/id/name,
//! listing them, the CA in PEM and DER, deleting every issuer and key;
//! `config/urls` written into issued certificates (CRL distribution points,
//! AIA caIssuers and OCSP); roles; `issue`, `sign` and `sign-verbatim` with
//! Vault's name rules (allowed_domains, bare, subdomains incl. wildcards,
//! globs, any name, localhost, IP SANs, enforce_hostnames), server/client
//! EKU flags, TTLs capped by role max, mount max and the CA's notAfter
//! (capped with a warning instead of Vault's default
//! `leaf_not_after_behavior=err`), no_store, generate_lease passed back;
//! revoke by serial or certificate (an unstored certificate is revocable
//! when presented and signed by one of the mount's issuers); the CRL (DER
//! and PEM, rebuilt on each revocation, on rotate and when within a day of
//! its nextUpdate); reading and listing certificates and revocations;
//! intermediates (CSR with a kept key, `sign-intermediate` honouring the
//! signer's path length, `set-signed` matching a kept key); `config/ca`
//! (CA certificate + PKCS#8, PKCS#1 or SEC1 key); `private_key_format`
//! (Vault's default PKCS#1/SEC1, or `pkcs8`); tidy (synchronous);
//! dropping a mount.
//!
//! Signing picks its issuer by the request's `issuer_ref`, else the role's,
//! else the default; every issuer has its own CRL (revocations go to the
//! CRL of the certificate's issuer).
//!
//! Not yet: issuer/key naming and updates (`pki/issuer/:ref` writes,
//! `pki/keys`, `key_ref`, `key_name` is echoed but not stored, `existing`
//! generation), `config/issuers` writes (the first issuer stays the
//! default), `config/crl`, delta CRLs, OCSP, uri/email/other SANs, `format`
//! (answers are PEM text; DER/pem_bundle is the gateway's to shape), role
//! `key_usage`/`ext_key_usage` lists, `code_signing_flag`,
//! `require_cn=false`, `use_csr_*=false`, the RSA key size of CSRs (only
//! the key type is checked), CSRs with extensions rcgen does not parse
//! (anything beyond SAN, KU, EKU, basic constraints is refused as
//! malformed), `not_after`, tidy-status and asynchronous tidy. rcgen's
//! in-memory `KeyPair` is not zeroized on drop (the stored PEM is).

#![forbid(unsafe_code)]

mod ca;
pub mod crypto;
pub mod error;
pub mod names;
mod service;
pub mod store;
#[cfg(test)]
mod tests;

use std::future::Future;
use std::sync::Arc;

use bulwark_proto::pki::v1::pki_server::PkiServer;
use bulwark_proto::seal::v1::seal_client::SealClient;
use bulwark_shared::barrier::Barrier;
use bulwark_shared::grpc::{self, GrpcError, KeyedRuntime};
use bulwark_shared::peer::AllowList;
use bulwark_shared::storage::{Database, StorageError};
use bulwark_shared::tls::ServiceIdentity;
use bulwark_shared::ServiceName;
use tokio::net::TcpListener;
use tonic::service::Routes;

pub use crate::error::PkiError;
pub use crate::service::PkiService;
pub use crate::store::PkiStore;

const PKI_PREFIX: &str = "/bulwark.pki.v1.Pki/";

/// Who may call what: only the gateway talks to the pki service.
pub fn allow_list() -> AllowList {
    AllowList::new().allow(PKI_PREFIX, &[ServiceName::Gateway])
}

/// Why [`serve`] stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Grpc(#[from] GrpcError),
}

/// Runs the pki service on `listener` until `shutdown`: its keyring fed by
/// the seal service at `seal`, its data in `db`'s `pki` namespace. Until the
/// data key arrives (and whenever sealed) every RPC answers
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
        db.namespace(ServiceName::Pki.namespace()).await?,
        rt.keyring.clone(),
    );
    let store = Arc::new(PkiStore::new(barrier));
    let routes = Routes::new(
        PkiServer::new(PkiService::new(store))
            .max_decoding_message_size(grpc::MAX_BODY_MESSAGE)
            .max_encoding_message_size(grpc::MAX_BODY_MESSAGE),
    )
    .add_service(rt.health_service);
    Ok(grpc::serve(&identity, allow_list(), routes, listener, shutdown).await?)
}

#[cfg(test)]
mod allow_tests {
    use super::*;

    #[test]
    fn only_the_gateway_may_call() {
        let allow = allow_list();
        for method in ["GenerateRoot", "Issue", "Revoke", "DropMount"] {
            let path = format!("{PKI_PREFIX}{method}");
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
