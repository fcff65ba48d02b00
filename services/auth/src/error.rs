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
    /// Renewal of a token or lease that is not renewable (root tokens, among others).
    #[error("lease is not renewable")]
    NotRenewable,
    /// A lease id that names no live lease (unknown, expired, being revoked).
    #[error("invalid lease")]
    InvalidLease,
    /// The lease's engine refused or failed a renewal: its code and message
    /// (never the lease's engine data).
    #[error("{1}")]
    Engine(tonic::Code, String),
    /// A synchronous revocation failed in the engine; the lease stays queued
    /// for the expiration manager. The message says why.
    #[error("{0}")]
    RevokeFailed(String),
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
        Some("lease" | "lease-path" | "lease-token" | "lease-pending") => "lease",
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
            AuthError::InvalidAccessor
            | AuthError::InvalidRequest(_)
            | AuthError::NotRenewable
            | AuthError::InvalidLease => Status::invalid_argument(e.to_string()),
            // The engine's refusals pass through; anything else from it
            // (unreachable, internal failure) is the engine being unavailable.
            AuthError::Engine(code, msg) => match code {
                tonic::Code::InvalidArgument
                | tonic::Code::NotFound
                | tonic::Code::FailedPrecondition
                | tonic::Code::OutOfRange => Status::new(code, msg),
                _ => Status::unavailable(msg),
            },
            AuthError::RevokeFailed(msg) => Status::unavailable(msg),
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
                AuthError::InvalidLease,
                tonic::Code::InvalidArgument,
                "invalid lease",
            ),
            (
                AuthError::Engine(tonic::Code::InvalidArgument, "no such role".into()),
                tonic::Code::InvalidArgument,
                "no such role",
            ),
            (
                AuthError::Engine(tonic::Code::Internal, "db down".into()),
                tonic::Code::Unavailable,
                "db down",
            ),
            (
                AuthError::RevokeFailed("failed to revoke lease: db down".into()),
                tonic::Code::Unavailable,
                "failed to revoke lease: db down",
            ),
            (
                BarrierError::Corrupt("lease-token/abcdef/0123".into()).into(),
                tonic::Code::Internal,
                "internal error",
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
        let e = AuthError::from(BarrierError::Corrupt(
            "lease-token/0123456789abcdef/x".into(),
        ));
        assert_eq!(e.to_string(), "stored lease data is corrupt");
    }
}
