//! The dynamic-db service's errors, and their one mapping to `tonic::Status`.
//!
//! No variant carries a password or a connection URL: messages that come
//! from a database driver are redacted before they become an error (see
//! [`crate::conn::Redactor`]).

use bulwark_shared::barrier::BarrierError;
use bulwark_shared::keyring::KeyError;
use tonic::Status;

/// Everything the dynamic-db service can fail with.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("Vault is sealed")]
    Sealed,
    /// A malformed or refused request: names, fields, plugin, TTLs, a role
    /// that its connection does not allow, a failed connection check.
    #[error("{0}")]
    Invalid(String),
    /// No such config, role or static role.
    #[error("{0}")]
    NotFound(String),
    /// A statement the database refused (creation, renewal, rotation): the
    /// database's own message, redacted.
    #[error("{0}")]
    Statement(String),
    /// The database could not be reached (refused, timed out, closed); the
    /// caller may retry. The reason is redacted.
    #[error("{0}")]
    Unreachable(String),
    /// What Vault answers with a 500 and a message: credentials asked of a
    /// role that its connection no longer allows, a revocation or renewal
    /// the database refused (redacted).
    #[error("{0}")]
    Refused(String),
    /// The request names something that is gone (a lease whose connection
    /// was deleted): it cannot succeed by retrying.
    #[error("{0}")]
    Gone(String),
    /// Another rotation of the same static role is under way.
    #[error("{0}")]
    Busy(String),
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

impl From<KeyError> for DbError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Sealed => DbError::Sealed,
            other => DbError::Barrier(BarrierError::Key(other)),
        }
    }
}

impl DbError {
    /// Whether this is the sealed refusal (background tasks wait for the
    /// unseal rather than logging it).
    pub fn is_sealed(&self) -> bool {
        match self {
            DbError::Sealed => true,
            DbError::Barrier(b) => b.is_sealed(),
            _ => false,
        }
    }
}

impl From<DbError> for Status {
    fn from(e: DbError) -> Self {
        match e {
            DbError::Invalid(_) | DbError::Statement(_) => Status::invalid_argument(e.to_string()),
            DbError::NotFound(_) => Status::not_found(e.to_string()),
            DbError::Gone(_) => Status::failed_precondition(e.to_string()),
            DbError::Sealed | DbError::Unreachable(_) | DbError::Busy(_) => {
                Status::unavailable(e.to_string())
            }
            DbError::Refused(_) => Status::internal(e.to_string()),
            DbError::Barrier(b) => Status::from(b),
            DbError::Corrupt { .. } => {
                tracing::error!(error = %e, "dynamic-db storage failure");
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
        let cases = [
            (DbError::Sealed, Code::Unavailable, "Vault is sealed"),
            (DbError::Invalid("bad".into()), Code::InvalidArgument, "bad"),
            (DbError::NotFound("nope".into()), Code::NotFound, "nope"),
            (
                DbError::Statement("syntax".into()),
                Code::InvalidArgument,
                "syntax",
            ),
            (
                DbError::Unreachable("down".into()),
                Code::Unavailable,
                "down",
            ),
            (
                DbError::Refused("\"r\" is not an allowed role".into()),
                Code::Internal,
                "\"r\" is not an allowed role",
            ),
            (
                DbError::Gone("gone".into()),
                Code::FailedPrecondition,
                "gone",
            ),
            (DbError::Busy("busy".into()), Code::Unavailable, "busy"),
            (
                DbError::Barrier(BarrierError::Key(KeyError::Sealed)),
                Code::Unavailable,
                "Vault is sealed",
            ),
            (
                DbError::Corrupt {
                    what: "role",
                    path: "m/x/role/a".into(),
                    reason: "bad".into(),
                },
                Code::Internal,
                "internal error",
            ),
        ];
        for (error, code, message) in cases {
            let s = Status::from(error);
            assert_eq!((s.code(), s.message()), (code, message));
        }
    }

    #[test]
    fn sealed_is_recognised_either_way() {
        assert!(DbError::Sealed.is_sealed());
        assert!(DbError::from(KeyError::Sealed).is_sealed());
        assert!(!DbError::Invalid("x".into()).is_sealed());
    }
}
