//! The pki service's errors, and their one mapping to `tonic::Status`.
//!
//! No variant carries key material: messages name mounts, roles, serials and
//! certificate names at most.

use bulwark_shared::barrier::BarrierError;
use bulwark_shared::keyring::KeyError;
use tonic::Status;

/// Everything the pki service can fail with.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("Vault is sealed")]
    Sealed,
    /// A malformed or refused request (Vault answers 400).
    #[error("{0}")]
    Invalid(String),
    /// Nothing there (Vault answers 404 or an empty 204, the gateway decides).
    #[error("{0}")]
    NotFound(String),
    /// Certificate or key machinery failed on input we produced ourselves.
    #[error("certificate generation failed: {0}")]
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

impl From<KeyError> for PkiError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Sealed => PkiError::Sealed,
            other => PkiError::Barrier(BarrierError::Key(other)),
        }
    }
}

impl PkiError {
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        PkiError::Invalid(msg.into())
    }
}

impl From<PkiError> for Status {
    fn from(e: PkiError) -> Self {
        match e {
            PkiError::Invalid(_) => Status::invalid_argument(e.to_string()),
            PkiError::NotFound(_) => Status::not_found(e.to_string()),
            PkiError::Sealed | PkiError::Contention => Status::unavailable(e.to_string()),
            PkiError::Barrier(b) => Status::from(b),
            PkiError::Crypto(_) | PkiError::Corrupt { .. } => {
                tracing::error!(error = %e, "pki failure");
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
        let code = |e: PkiError| Status::from(e).code();
        assert_eq!(code(PkiError::invalid("x")), Code::InvalidArgument);
        assert_eq!(code(PkiError::NotFound("x".into())), Code::NotFound);
        assert_eq!(code(PkiError::Sealed), Code::Unavailable);
        assert_eq!(code(PkiError::Contention), Code::Unavailable);
        assert_eq!(
            code(PkiError::Barrier(BarrierError::Key(KeyError::Sealed))),
            Code::Unavailable
        );
        let s = Status::from(PkiError::Crypto("boom".into()));
        assert_eq!((s.code(), s.message()), (Code::Internal, "internal error"));
    }
}
