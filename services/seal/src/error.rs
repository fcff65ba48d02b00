//! The seal service's errors, and their one mapping to `tonic::Status`.

use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("Vault is already initialized")]
    AlreadyInitialized,
    #[error("Vault is not initialized")]
    NotInitialized,
    #[error("{0}")]
    InvalidConfig(&'static str),
    #[error("{0}")]
    InvalidRootTokenId(&'static str),
    #[error("'key' must be specified in request body as JSON, or 'reset' set to true")]
    MissingKey,
    #[error("invalid unseal key: {0}; unseal progress was reset")]
    BadKey(&'static str),
    #[error("Vault is sealed")]
    Sealed,
    #[error("no key for keyring term {0}")]
    UnknownTerm(u32),
    #[error("the caller presented no service identity")]
    NoPeer,
    #[error(transparent)]
    Storage(#[from] bulwark_shared::storage::StorageError),
    #[error("stored seal data is corrupt: {0}")]
    Corrupt(&'static str),
}

impl From<SealError> for Status {
    fn from(e: SealError) -> Self {
        match e {
            SealError::AlreadyInitialized
            | SealError::NotInitialized
            | SealError::InvalidConfig(_)
            | SealError::InvalidRootTokenId(_)
            | SealError::MissingKey
            | SealError::BadKey(_) => Status::invalid_argument(e.to_string()),
            SealError::Sealed => Status::unavailable(e.to_string()),
            SealError::UnknownTerm(_) => Status::not_found(e.to_string()),
            SealError::NoPeer => Status::unauthenticated(e.to_string()),
            SealError::Storage(_) | SealError::Corrupt(_) => {
                tracing::error!(error = %e, "seal storage failure");
                Status::internal("internal error")
            }
        }
    }
}
