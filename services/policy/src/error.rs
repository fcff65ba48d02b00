//! The policy service's errors, and their one mapping to `tonic::Status`.

use bulwark_shared::barrier::BarrierError;
use tonic::Status;

use crate::parse::ParseError;

/// Everything the policy service can fail with.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("Vault is sealed")]
    Sealed,
    /// A policy name that is empty, too long, or holds forbidden characters.
    #[error("{0}")]
    InvalidName(&'static str),
    /// The policy text does not parse (the message carries line and column
    /// for syntax errors).
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("policy is too large: {size} bytes (at most {limit})")]
    TooLarge { size: usize, limit: usize },
    #[error("cannot update \"root\" policy")]
    RootImmutable,
    #[error("cannot delete \"root\" policy")]
    RootUndeletable,
    #[error("cannot delete default policy")]
    DefaultUndeletable,
    #[error("no policy named {0:?}")]
    NotFound(String),
    #[error("an operation (read, list, create, update, delete or patch) is required")]
    MissingOperation,
    #[error(transparent)]
    Barrier(#[from] BarrierError),
    /// A stored policy no longer parses (written by another version?).
    #[error("stored policy {name:?} is unreadable: {reason}")]
    Corrupt { name: String, reason: String },
}

impl From<PolicyError> for Status {
    fn from(e: PolicyError) -> Self {
        match e {
            PolicyError::InvalidName(_)
            | PolicyError::Parse(_)
            | PolicyError::TooLarge { .. }
            | PolicyError::RootImmutable
            | PolicyError::RootUndeletable
            | PolicyError::DefaultUndeletable
            | PolicyError::MissingOperation => Status::invalid_argument(e.to_string()),
            PolicyError::NotFound(_) => Status::not_found(e.to_string()),
            PolicyError::Sealed => Status::unavailable(e.to_string()),
            // Sealed → unavailable "Vault is sealed"; storage failures are
            // logged there and answered as internal.
            PolicyError::Barrier(b) => Status::from(b),
            PolicyError::Corrupt { .. } => {
                tracing::error!(error = %e, "policy storage failure");
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
        let code = |e: PolicyError| Status::from(e).code();
        assert_eq!(code(PolicyError::RootImmutable), Code::InvalidArgument);
        assert_eq!(code(PolicyError::DefaultUndeletable), Code::InvalidArgument);
        assert_eq!(code(PolicyError::NotFound("x".into())), Code::NotFound);
        let sealed = Status::from(PolicyError::Sealed);
        assert_eq!(
            (sealed.code(), sealed.message()),
            (Code::Unavailable, "Vault is sealed")
        );
        let via_barrier = Status::from(PolicyError::Barrier(BarrierError::Key(
            bulwark_shared::keyring::KeyError::Sealed,
        )));
        assert_eq!(
            (via_barrier.code(), via_barrier.message()),
            (Code::Unavailable, "Vault is sealed")
        );
        let corrupt = Status::from(PolicyError::Corrupt {
            name: "x".into(),
            reason: "bad".into(),
        });
        assert_eq!(
            (corrupt.code(), corrupt.message()),
            (Code::Internal, "internal error")
        );
    }
}
