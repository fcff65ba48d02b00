//! The closed set of Bulwark services. A service's name is its identity: it is
//! the URI SAN of its certificate, the key of its storage namespace and the
//! HKDF info of its data key.

use std::fmt;
use std::str::FromStr;

/// One of Bulwark's services (or the gateway, which is a gRPC client of all).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceName {
    Seal,
    Auth,
    Policy,
    Kv,
    DynamicDb,
    Pki,
    Audit,
    Transit,
    Gateway,
}

impl ServiceName {
    /// Every service, in start-up order (dependencies first).
    pub const ALL: [ServiceName; 9] = [
        ServiceName::Seal,
        ServiceName::Auth,
        ServiceName::Policy,
        ServiceName::Kv,
        ServiceName::DynamicDb,
        ServiceName::Pki,
        ServiceName::Audit,
        ServiceName::Transit,
        ServiceName::Gateway,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceName::Seal => "seal",
            ServiceName::Auth => "auth",
            ServiceName::Policy => "policy",
            ServiceName::Kv => "kv",
            ServiceName::DynamicDb => "dynamic-db",
            ServiceName::Pki => "pki",
            ServiceName::Audit => "audit",
            ServiceName::Transit => "transit",
            ServiceName::Gateway => "gateway",
        }
    }

    /// The storage namespace (table suffix) of this service.
    pub fn namespace(self) -> &'static str {
        match self {
            ServiceName::DynamicDb => "dynamic_db",
            other => other.as_str(),
        }
    }

    /// The SPIFFE-style URI SAN carried by this service's certificate.
    pub fn spiffe_id(self) -> String {
        format!("spiffe://bulwark/{}", self.as_str())
    }

    /// Parses a SPIFFE-style URI SAN back into a service name.
    pub fn from_spiffe_id(uri: &str) -> Option<Self> {
        uri.strip_prefix("spiffe://bulwark/")?.parse().ok()
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown service {0:?} (known: seal, auth, policy, kv, dynamic-db, pki, audit, transit, gateway)")]
pub struct UnknownService(pub String);

impl FromStr for ServiceName {
    type Err = UnknownService;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ServiceName::ALL
            .into_iter()
            .find(|n| n.as_str() == s)
            .ok_or_else(|| UnknownService(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for n in ServiceName::ALL {
            assert_eq!(n.as_str().parse::<ServiceName>().unwrap(), n);
            assert_eq!(ServiceName::from_spiffe_id(&n.spiffe_id()), Some(n));
        }
        assert!("nope".parse::<ServiceName>().is_err());
        assert_eq!(ServiceName::from_spiffe_id("spiffe://other/seal"), None);
    }
}
