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
    /// Init: the unseal key configuration (Vault's wording).
    #[error("invalid seal configuration: {0}")]
    InvalidSealConfig(&'static str),
    /// Init with an auto seal: the recovery key configuration.
    #[error("invalid recovery configuration: {0}")]
    InvalidRecoveryConfig(&'static str),
    #[error("recovery configuration must specify a positive number of shares")]
    NoRecoveryShares,
    /// Init: parameters of the other kind of seal (Vault's message).
    #[error("parameters {params} not applicable to seal type {seal_type}")]
    NotApplicable {
        params: String,
        seal_type: &'static str,
    },
    /// Start-up: the configured seal is not the one the storage was
    /// initialized with (seal migration is not supported).
    #[error(
        "the storage was initialized with seal type {stored:?} but the configuration {configured}: \
         changing seal types (Vault's seal migration, -migrate) is not supported"
    )]
    SealMigration {
        stored: String,
        configured: &'static str,
    },
    /// Auto seal: the configured key does not open the stored root key.
    #[error(
        "the static seal key (current_key_id {configured:?}) does not decrypt the stored root key \
         (wrapped under key id {stored:?}): check seal \"static\" current_key"
    )]
    StaticKeyMismatch { configured: String, stored: String },
    /// Transit seal: the transit server did not wrap or unwrap the root key
    /// (unreachable, sealed, refused). Names the address and the answer,
    /// never the token or the key.
    #[error("transit seal: {0}")]
    Transit(String),
    #[error("invalid rekey seal configuration: {0}")]
    InvalidRekeyConfig(&'static str),
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
    /// Rekey or generate-root: a share that is not a current unseal key.
    #[error("invalid key: {why}; {op} progress was reset")]
    BadShare { op: &'static str, why: &'static str },
    /// Rekey or generate-root: no attempt to add a share to.
    #[error("no {0} in progress")]
    NotInProgress(&'static str),
    /// Rekey or generate-root: only one attempt at a time.
    #[error("{0} already in progress")]
    InProgress(&'static str),
    /// Rekey or generate-root: the nonce names another attempt.
    #[error("incorrect nonce supplied; nonce for this {op} operation is {nonce:?}")]
    WrongNonce { op: &'static str, nonce: String },
    #[error("given key has already been provided during this generation operation")]
    DuplicateKey,
    #[error("{0}")]
    InvalidRequest(&'static str),
    /// The seal row kept changing under a read-modify-write.
    #[error("the seal configuration is being changed concurrently; try again")]
    Contended,
}

impl From<SealError> for Status {
    fn from(e: SealError) -> Self {
        match e {
            SealError::AlreadyInitialized
            | SealError::NotInitialized
            | SealError::InvalidConfig(_)
            | SealError::InvalidSealConfig(_)
            | SealError::InvalidRecoveryConfig(_)
            | SealError::NoRecoveryShares
            | SealError::NotApplicable { .. }
            | SealError::InvalidRekeyConfig(_)
            | SealError::InvalidRootTokenId(_)
            | SealError::MissingKey
            | SealError::BadKey(_)
            | SealError::BadShare { .. }
            | SealError::NotInProgress(_)
            | SealError::InProgress(_)
            | SealError::WrongNonce { .. }
            | SealError::DuplicateKey
            | SealError::InvalidRequest(_) => Status::invalid_argument(e.to_string()),
            SealError::Contended => Status::aborted(e.to_string()),
            SealError::SealMigration { .. } => Status::failed_precondition(e.to_string()),
            // Names key ids only: safe to show, and what the operator must fix.
            SealError::StaticKeyMismatch { .. } => {
                tracing::error!(error = %e, "auto seal: cannot unwrap the root key");
                Status::internal(e.to_string())
            }
            SealError::Transit(_) => {
                tracing::error!(error = %e, "auto seal: the transit server did not answer as expected");
                Status::unavailable(e.to_string())
            }
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
