//! Who is calling: the peer's service name, read from its mTLS certificate, and
//! a per-RPC allow-list enforced by one tower layer on every gRPC server.
//!
//! TLS (rustls, inside tonic) has already checked that the certificate chains
//! to the internal CA. This layer then reads the identity (the
//! `spiffe://bulwark/<service>` URI SAN) and checks it against the allow-list
//! of the method being called. No certificate, an unknown identity or a name
//! not on the list: the call is refused before any handler runs. The identity
//! is handed to handlers as a [`PeerIdentity`] request extension.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
use tower::{Layer, Service};
use x509_parser::extensions::GeneralName;

use crate::names::ServiceName;

/// The authenticated calling service, available to handlers through
/// `request.extensions().get::<PeerIdentity>()`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerIdentity(pub ServiceName);

/// Reads the service identity from a DER certificate: exactly one
/// `spiffe://bulwark/<service>` URI SAN.
pub fn identity_of(der: &[u8]) -> Option<ServiceName> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let san = cert.subject_alternative_name().ok()??;
    let mut found = None;
    for name in &san.value.general_names {
        if let GeneralName::URI(uri) = name {
            if let Some(svc) = ServiceName::from_spiffe_id(uri) {
                if found.is_some() {
                    return None;
                }
                found = Some(svc);
            }
        }
    }
    found
}

/// Which callers may call which RPCs. Rules are matched by full method path
/// (`/bulwark.seal.v1.Seal/Unseal`) or by service prefix (`/bulwark.seal.v1.Seal/`);
/// the most specific rule wins; no rule means refused.
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    rules: Vec<(String, Vec<ServiceName>)>,
}

/// The standard health service, callable by any authenticated peer.
pub const HEALTH_SERVICE: &str = "/grpc.health.v1.Health/";

impl AllowList {
    pub fn new() -> Self {
        AllowList::default().allow(HEALTH_SERVICE, &ServiceName::ALL)
    }

    /// Allows `callers` to call `method` (a full path, or a `/pkg.Service/` prefix).
    pub fn allow(mut self, method: &str, callers: &[ServiceName]) -> Self {
        self.rules.push((method.to_string(), callers.to_vec()));
        self
    }

    pub fn permits(&self, path: &str, caller: ServiceName) -> bool {
        let exact = self.rules.iter().filter(|(m, _)| m == path);
        let prefix = self
            .rules
            .iter()
            .filter(|(m, _)| m.ends_with('/') && path.starts_with(m.as_str()));
        match exact.chain(prefix).next() {
            Some((_, callers)) => callers.contains(&caller),
            None => false,
        }
    }
}

/// Layer applying an [`AllowList`] to every request of a gRPC server.
#[derive(Clone)]
pub struct PeerAuthzLayer {
    allow: Arc<AllowList>,
    identities: Arc<IdentityCache>,
}

impl PeerAuthzLayer {
    pub fn new(allow: AllowList) -> Self {
        PeerAuthzLayer {
            allow: Arc::new(allow),
            identities: Default::default(),
        }
    }
}

impl<S> Layer<S> for PeerAuthzLayer {
    type Service = PeerAuthz<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PeerAuthz {
            inner,
            allow: self.allow.clone(),
            identities: self.identities.clone(),
        }
    }
}

#[derive(Clone)]
pub struct PeerAuthz<S> {
    inner: S,
    allow: Arc<AllowList>,
    identities: Arc<IdentityCache>,
}

/// The identities of the certificates presented lately. A connection
/// presents the same certificate on every call and a server has a handful
/// of peers: each certificate is parsed once, not on every call.
#[derive(Default)]
struct IdentityCache(std::sync::Mutex<VecDeque<Seen>>);

/// A certificate (DER) and the identity it names.
type Seen = (Arc<[u8]>, Option<ServiceName>);

/// The most certificates [`IdentityCache`] remembers.
const IDENTITY_CACHE: usize = 64;

impl IdentityCache {
    /// [`identity_of`] `der`, remembered.
    fn identity(&self, der: &[u8]) -> Option<ServiceName> {
        let lock = || self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, id)) = lock().iter().find(|(c, _)| **c == *der) {
            return *id;
        }
        let id = identity_of(der);
        let mut seen = lock();
        seen.push_front((Arc::from(der), id));
        seen.truncate(IDENTITY_CACHE);
        id
    }
}

impl<S, B> Service<http::Request<B>> for PeerAuthz<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::Either<
        S::Future,
        futures::future::Ready<Result<Self::Response, Self::Error>>,
    >;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let caller = req
            .extensions()
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(|info| info.peer_certs())
            .and_then(|certs| certs.first().and_then(|c| self.identities.identity(c)));
        let path = req.uri().path();
        let refusal = match caller {
            None => Some(tonic::Status::unauthenticated(
                "a client certificate naming a Bulwark service is required",
            )),
            Some(name) if !self.allow.permits(path, name) => {
                tracing::warn!(caller = %name, rpc = path, "peer not allowed to call this RPC");
                Some(tonic::Status::permission_denied(format!(
                    "service {name} may not call {path}"
                )))
            }
            Some(_) => None,
        };
        match (refusal, caller) {
            (Some(status), _) => {
                futures::future::Either::Right(futures::future::ready(Ok(status.into_http())))
            }
            (None, Some(name)) => {
                req.extensions_mut().insert(PeerIdentity(name));
                futures::future::Either::Left(self.inner.call(req))
            }
            (None, None) => unreachable!("no caller always refuses"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ServiceName::*;

    #[test]
    fn allow_list_is_default_deny_and_exact_beats_prefix() {
        let allow = AllowList::new()
            .allow("/bulwark.seal.v1.Seal/", &[Gateway, Kv])
            .allow("/bulwark.seal.v1.Seal/Unseal", &[Gateway]);
        assert!(allow.permits("/bulwark.seal.v1.Seal/Status", Kv));
        assert!(allow.permits("/bulwark.seal.v1.Seal/Unseal", Gateway));
        assert!(!allow.permits("/bulwark.seal.v1.Seal/Unseal", Kv));
        assert!(!allow.permits("/bulwark.seal.v1.Seal/Status", Pki));
        assert!(!allow.permits("/bulwark.kv.v1.Kv/Read", Gateway));
        assert!(allow.permits("/grpc.health.v1.Health/Check", Pki));
    }

    #[test]
    fn identity_needs_exactly_one_bulwark_uri() {
        let ca = crate::tls::InternalCa::generate().unwrap();
        let leaf = ca.issue(Audit, &[], 1).unwrap();
        let (_, pem) = x509_parser::pem::parse_x509_pem(leaf.cert_pem.as_bytes()).unwrap();
        assert_eq!(identity_of(&pem.contents), Some(Audit));
        assert_eq!(identity_of(b"not a certificate"), None);
        // The CA certificate itself names no service.
        let (_, ca_pem) = x509_parser::pem::parse_x509_pem(ca.cert_pem().as_bytes()).unwrap();
        assert_eq!(identity_of(&ca_pem.contents), None);
    }

    #[test]
    fn remembered_identities_are_those_of_the_same_certificate() {
        let ca = crate::tls::InternalCa::generate().unwrap();
        let der = |pem: &str| {
            x509_parser::pem::parse_x509_pem(pem.as_bytes())
                .unwrap()
                .1
                .contents
        };
        let audit = der(&ca.issue(Audit, &[], 1).unwrap().cert_pem);
        let kv = der(&ca.issue(Kv, &[], 1).unwrap().cert_pem);
        let cache = IdentityCache::default();
        for _ in 0..2 {
            assert_eq!(cache.identity(&audit), Some(Audit));
            assert_eq!(cache.identity(&kv), Some(Kv));
            assert_eq!(cache.identity(ca.cert_pem().as_bytes()), None);
        }
        for i in 0..2 * IDENTITY_CACHE {
            cache.identity(format!("junk {i}").as_bytes());
        }
        assert_eq!(cache.0.lock().unwrap().len(), IDENTITY_CACHE);
        assert_eq!(cache.identity(&kv), Some(Kv));
    }
}
