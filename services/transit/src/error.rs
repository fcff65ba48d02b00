//! The transit service's errors, and their one mapping to `tonic::Status`.
//!
//! No variant carries key material, plaintext or ciphertext: messages name
//! mounts, keys, versions and algorithms at most.

use bulwark_shared::barrier::BarrierError;
use bulwark_shared::keyring::KeyError;
use tonic::Status;

/// Everything the transit service can fail with.
#[derive(Debug, thiserror::Error)]
pub enum TransitError {
    #[error("Vault is sealed")]
    Sealed,
    /// A malformed or refused request (Vault answers 400).
    #[error("{0}")]
    Invalid(String),
    /// Encrypt against a missing key the caller may not create (Vault's
    /// ACL answers 403: the request was a `create`).
    #[error("{0}")]
    NotFound(String),
    /// Key generation or a cryptographic primitive failed on material we
    /// produced ourselves.
    #[error("cryptographic failure: {0}")]
    Crypto(String),
    /// A compare-and-swap loop kept losing to concurrent writers.
    #[error("too many concurrent changes; try again")]
    Contention,
    #[error(transparent)]
    Barrier(#[from] BarrierError),
    /// A stored record that does not decode.
    #[error("stored {what} at {path:?} is unreadable")]
    Corrupt { what: &'static str, path: String },
}

impl From<KeyError> for TransitError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Sealed => TransitError::Sealed,
            other => TransitError::Barrier(BarrierError::Key(other)),
        }
    }
}

impl TransitError {
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        TransitError::Invalid(msg.into())
    }

    /// Whether this is the caller's fault (Vault's user error) rather than
    /// the server's, for batch items.
    pub(crate) fn is_user_error(&self) -> bool {
        matches!(self, TransitError::Invalid(_) | TransitError::NotFound(_))
    }

    /// The text a batch item carries: the message of a user error, a
    /// generic one for a server fault (logged here).
    pub(crate) fn item_message(&self) -> String {
        if self.is_user_error() {
            self.to_string()
        } else {
            tracing::error!(error = %self, "transit item failure");
            "internal error".to_string()
        }
    }
}

impl From<TransitError> for Status {
    fn from(e: TransitError) -> Self {
        match e {
            TransitError::Invalid(_) => Status::invalid_argument(e.to_string()),
            TransitError::NotFound(_) => Status::not_found(e.to_string()),
            TransitError::Sealed | TransitError::Contention => Status::unavailable(e.to_string()),
            TransitError::Barrier(b) => Status::from(b),
            TransitError::Crypto(_) | TransitError::Corrupt { .. } => {
                tracing::error!(error = %e, "transit failure");
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
        let code = |e: TransitError| Status::from(e).code();
        assert_eq!(code(TransitError::invalid("x")), Code::InvalidArgument);
        assert_eq!(code(TransitError::NotFound("x".into())), Code::NotFound);
        assert_eq!(code(TransitError::Sealed), Code::Unavailable);
        assert_eq!(code(TransitError::Contention), Code::Unavailable);
        assert_eq!(
            code(TransitError::Barrier(BarrierError::Key(KeyError::Sealed))),
            Code::Unavailable
        );
        let s = Status::from(TransitError::Crypto("boom".into()));
        assert_eq!((s.code(), s.message()), (Code::Internal, "internal error"));
    }

    #[test]
    fn item_messages() {
        assert!(TransitError::invalid("bad").is_user_error());
        assert_eq!(TransitError::invalid("bad").item_message(), "bad");
        assert!(!TransitError::Crypto("rng".into()).is_user_error());
        assert_eq!(
            TransitError::Crypto("rng".into()).item_message(),
            "internal error"
        );
    }
}
