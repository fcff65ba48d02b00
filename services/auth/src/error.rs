//! The auth service's errors, and their one mapping to `tonic::Status`.
//!
//! Storage paths in this service contain token hashes, which must never reach
//! a log: barrier errors that name a path are redacted to the path's first
//! segment when they become an [`AuthError`].

use bulwark_shared::barrier::BarrierError;
use bulwark_shared::keyring::KeyError;
use tonic::Status;

/// Everything the token store can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The presented token is unknown, expired or used up (Authenticate and
    /// CreateToken's parent).
    #[error("permission denied")]
    PermissionDenied,
    /// A lookup or renewal by token found no live token.
    #[error("bad token")]
    BadToken,
    /// A lookup or renewal by accessor found no live token.
    #[error("invalid accessor")]
    InvalidAccessor,
    /// The request itself is invalid (a Vault 400).
    #[error("{0}")]
    InvalidRequest(String),
    /// The named user, role or record does not exist (a Vault 404).
    #[error("{0}")]
    NotFound(String),
    /// A refusal with its own wording (a Vault 403), e.g. a certificate login
    /// that no role accepts.
    #[error("{0}")]
    Forbidden(String),
    /// Renewal of a token that is not renewable (root tokens, among others).
    #[error("lease is not renewable")]
    NotRenewable,
    /// The seal service failed during the root token hand-off.
    #[error("seal service: {0}")]
    Seal(String),
    /// The barrier refused (sealed) or storage failed.
    #[error(transparent)]
    Barrier(BarrierError),
    /// A stored value could not be decrypted or decoded. Carries the kind of
    /// value only (never a path holding a token hash).
    #[error("stored {0} data is corrupt")]
    Corrupt(&'static str),
    /// Something that cannot fail did (a hashing task panicked, a random
    /// value collided). Names the operation only.
    #[error("internal failure: {0}")]
    Internal(&'static str),
}

impl AuthError {
    /// Whether this error only says that the service is sealed.
    pub fn is_sealed(&self) -> bool {
        matches!(self, AuthError::Barrier(e) if e.is_sealed())
    }

    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        AuthError::InvalidRequest(msg.into())
    }
}

/// The kind of stored value at `path`, named by its first segment.
fn kind_of(path: &str) -> &'static str {
    match path.split('/').next() {
        Some("token") => "token",
        Some("accessor") => "accessor",
        Some("children") => "token tree",
        Some("core") => "core",
        Some("method") => "auth method",
        _ => "auth",
    }
}

impl From<BarrierError> for AuthError {
    fn from(e: BarrierError) -> Self {
        match e {
            BarrierError::Corrupt(path) | BarrierError::Decode(path, _) => {
                AuthError::Corrupt(kind_of(&path))
            }
            other => AuthError::Barrier(other),
        }
    }
}

impl From<KeyError> for AuthError {
    fn from(e: KeyError) -> Self {
        AuthError::Barrier(BarrierError::Key(e))
    }
}

impl From<AuthError> for Status {
    fn from(e: AuthError) -> Self {
        match e {
            AuthError::PermissionDenied | AuthError::BadToken | AuthError::Forbidden(_) => {
                Status::permission_denied(e.to_string())
            }
            AuthError::NotFound(_) => Status::not_found(e.to_string()),
            AuthError::InvalidAccessor | AuthError::InvalidRequest(_) | AuthError::NotRenewable => {
                Status::invalid_argument(e.to_string())
            }
            AuthError::Seal(_) => {
                tracing::warn!(error = %e, "seal service failure");
                Status::unavailable(e.to_string())
            }
            AuthError::Barrier(b) => b.into(),
            AuthError::Corrupt(_) | AuthError::Internal(_) => {
                tracing::error!(error = %e, "auth service failure");
                Status::internal("internal error")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        let cases: Vec<(AuthError, tonic::Code, &str)> = vec![
            (
                AuthError::PermissionDenied,
                tonic::Code::PermissionDenied,
                "permission denied",
            ),
            (
                AuthError::BadToken,
                tonic::Code::PermissionDenied,
                "bad token",
            ),
            (
                AuthError::InvalidAccessor,
                tonic::Code::InvalidArgument,
                "invalid accessor",
            ),
            (
                AuthError::NotRenewable,
                tonic::Code::InvalidArgument,
                "lease is not renewable",
            ),
            (
                AuthError::NotFound("user not found".into()),
                tonic::Code::NotFound,
                "user not found",
            ),
            (
                AuthError::Forbidden("no".into()),
                tonic::Code::PermissionDenied,
                "no",
            ),
            (
                AuthError::Internal("hashing"),
                tonic::Code::Internal,
                "internal error",
            ),
            (
                KeyError::Sealed.into(),
                tonic::Code::Unavailable,
                "Vault is sealed",
            ),
            (
                BarrierError::Corrupt("token/abcdef".into()).into(),
                tonic::Code::Internal,
                "internal error",
            ),
        ];
        for (err, code, msg) in cases {
            let s = Status::from(err);
            assert_eq!((s.code(), s.message()), (code, msg));
        }
    }

    #[test]
    fn barrier_paths_are_redacted() {
        let e = AuthError::from(BarrierError::Decode(
            "token/0123456789abcdef".into(),
            "detail".into(),
        ));
        let text = e.to_string();
        assert!(!text.contains("0123456789abcdef"), "{text}");
        assert_eq!(text, "stored token data is corrupt");
    }
}
