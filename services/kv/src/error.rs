//! The kv service's errors, and their one mapping to `tonic::Status`.
//!
//! No variant carries secret data: messages name paths at most.

use bulwark_shared::barrier::BarrierError;
use bulwark_shared::keyring::KeyError;
use tonic::Status;

/// Everything the kv service can fail with.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    #[error("Vault is sealed")]
    Sealed,
    /// A malformed request: mount id, path, kind or field value.
    #[error("{0}")]
    Invalid(String),
    /// A kv v1 or cubbyhole write of an empty object.
    #[error("missing data fields")]
    MissingDataFields,
    /// A kv v2 write whose data is missing or not a JSON object.
    #[error("no data provided")]
    NoData,
    #[error("check-and-set parameter required for this call")]
    CasRequired,
    #[error("check-and-set parameter did not match the current version")]
    CasMismatch,
    #[error("no version number provided")]
    NoVersions,
    /// Custom metadata over Vault's limits.
    #[error("custom_metadata validation failed: {0}")]
    CustomMetadata(String),
    /// No such key (or, for a patch, no live current version).
    #[error("{0}")]
    NotFound(&'static str),
    /// A compare-and-swap loop kept losing to concurrent writers.
    #[error("too many concurrent changes to this key; try again")]
    Contention,
    #[error(transparent)]
    Barrier(#[from] BarrierError),
    /// A stored record that does not decode (written by another version?).
    #[error("stored {what} at {path:?} is unreadable: {reason}")]
    Corrupt {
        what: &'static str,
        path: String,
        reason: String,
    },
}

impl From<KeyError> for KvError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Sealed => KvError::Sealed,
            other => KvError::Barrier(BarrierError::Key(other)),
        }
    }
}

impl KvError {
    /// Whether this is the sealed refusal (a background task waits for the
    /// unseal rather than logging it).
    pub fn is_sealed(&self) -> bool {
        match self {
            KvError::Sealed => true,
            KvError::Barrier(b) => b.is_sealed(),
            _ => false,
        }
    }
}

impl From<KvError> for Status {
    fn from(e: KvError) -> Self {
        match e {
            KvError::Invalid(_)
            | KvError::MissingDataFields
            | KvError::NoData
            | KvError::CasRequired
            | KvError::CasMismatch
            | KvError::NoVersions
            | KvError::CustomMetadata(_) => Status::invalid_argument(e.to_string()),
            KvError::NotFound(_) => Status::not_found(e.to_string()),
            KvError::Sealed | KvError::Contention => Status::unavailable(e.to_string()),
            // Sealed → unavailable "Vault is sealed"; storage failures are
            // logged there and answered as internal.
            KvError::Barrier(b) => Status::from(b),
            KvError::Corrupt { .. } => {
                tracing::error!(error = %e, "kv storage failure");
                Status::internal("internal error")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn status_codes() {
        let status = |e: KvError| {
            let s = Status::from(e);
            (s.code(), s.message().to_string())
        };
        let cases = [
            (
                KvError::CasRequired,
                Code::InvalidArgument,
                "check-and-set parameter required for this call",
            ),
            (
                KvError::CasMismatch,
                Code::InvalidArgument,
                "check-and-set parameter did not match the current version",
            ),
            (KvError::NoData, Code::InvalidArgument, "no data provided"),
            (
                KvError::MissingDataFields,
                Code::InvalidArgument,
                "missing data fields",
            ),
            (
                KvError::NoVersions,
                Code::InvalidArgument,
                "no version number provided",
            ),
            (
                KvError::NotFound("no such key"),
                Code::NotFound,
                "no such key",
            ),
            (KvError::Sealed, Code::Unavailable, "Vault is sealed"),
            (
                KvError::Barrier(BarrierError::Key(KeyError::Sealed)),
                Code::Unavailable,
                "Vault is sealed",
            ),
            (
                KvError::Corrupt {
                    what: "metadata",
                    path: "m/x/meta/a".into(),
                    reason: "bad".into(),
                },
                Code::Internal,
                "internal error",
            ),
        ];
        for (error, code, message) in cases {
            assert_eq!(status(error), (code, message.to_string()));
        }
        assert_eq!(status(KvError::Contention).0, Code::Unavailable);
    }

    #[test]
    fn sealed_is_recognised_either_way() {
        assert!(KvError::Sealed.is_sealed());
        assert!(KvError::from(KeyError::Sealed).is_sealed());
        assert!(KvError::Barrier(BarrierError::Key(KeyError::Sealed)).is_sealed());
        assert!(!KvError::NoData.is_sealed());
    }
}
