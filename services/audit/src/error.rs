//! The audit service's errors, and their one mapping to `tonic::Status`.
//!
//! No variant carries an audit entry or any part of one: messages name device
//! paths, option names and I/O failures at most.

use bulwark_shared::barrier::BarrierError;
use bulwark_shared::keyring::KeyError;
use tonic::Status;

/// The message of a `Log` that no device recorded (the gateway answers 500).
pub const NOT_RECORDED: &str = "audit: no audit device could record the request";

/// Everything the audit service can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("Vault is sealed")]
    Sealed,
    /// A malformed request: path, option value or entry.
    #[error("{0}")]
    Invalid(String),
    /// Enabling at a path taken by (or nested with) an enabled device.
    #[error("path already in use")]
    PathInUse,
    #[error("unknown audit backend type: {0}")]
    UnknownType(String),
    /// A file device enabled without `file_path`.
    #[error("file_path is required")]
    FilePathRequired,
    /// The device could not be opened (or connected) when enabled.
    #[error("sanity check failed; {0}")]
    SanityCheck(String),
    /// `Hash` for a path where no device is enabled.
    #[error("unknown audit backend")]
    UnknownDevice,
    /// Devices are enabled and none of them recorded the entry.
    #[error("{}", NOT_RECORDED)]
    NotRecorded,
    /// `Reopen` could not reopen these devices.
    #[error("audit: could not reopen {}", .0.join(", "))]
    Reopen(Vec<String>),
    #[error(transparent)]
    Barrier(#[from] BarrierError),
    /// A stored device configuration that does not decode.
    #[error("stored audit device at {path:?} is unreadable: {reason}")]
    Corrupt { path: String, reason: String },
}

impl From<KeyError> for AuditError {
    fn from(e: KeyError) -> Self {
        match e {
            KeyError::Sealed => AuditError::Sealed,
            other => AuditError::Barrier(BarrierError::Key(other)),
        }
    }
}

impl AuditError {
    /// Whether this is the sealed refusal.
    pub fn is_sealed(&self) -> bool {
        match self {
            AuditError::Sealed => true,
            AuditError::Barrier(b) => b.is_sealed(),
            _ => false,
        }
    }
}

impl From<AuditError> for Status {
    fn from(e: AuditError) -> Self {
        match e {
            AuditError::Invalid(_)
            | AuditError::PathInUse
            | AuditError::UnknownType(_)
            | AuditError::FilePathRequired
            | AuditError::SanityCheck(_)
            | AuditError::UnknownDevice => Status::invalid_argument(e.to_string()),
            AuditError::Sealed => Status::unavailable(e.to_string()),
            AuditError::NotRecorded | AuditError::Reopen(_) => Status::internal(e.to_string()),
            // Sealed → unavailable "Vault is sealed"; storage failures are
            // logged there and answered as internal.
            AuditError::Barrier(b) => Status::from(b),
            AuditError::Corrupt { .. } => {
                tracing::error!(error = %e, "audit storage failure");
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
        let status = |e: AuditError| {
            let s = Status::from(e);
            (s.code(), s.message().to_string())
        };
        let cases = [
            (
                AuditError::PathInUse,
                Code::InvalidArgument,
                "path already in use",
            ),
            (
                AuditError::UnknownType("nope".into()),
                Code::InvalidArgument,
                "unknown audit backend type: nope",
            ),
            (
                AuditError::FilePathRequired,
                Code::InvalidArgument,
                "file_path is required",
            ),
            (
                AuditError::SanityCheck("unable to open \"/x\" for writing: denied".into()),
                Code::InvalidArgument,
                "sanity check failed; unable to open \"/x\" for writing: denied",
            ),
            (
                AuditError::UnknownDevice,
                Code::InvalidArgument,
                "unknown audit backend",
            ),
            (AuditError::NotRecorded, Code::Internal, NOT_RECORDED),
            (
                AuditError::Reopen(vec!["a/".into(), "b/".into()]),
                Code::Internal,
                "audit: could not reopen a/, b/",
            ),
            (AuditError::Sealed, Code::Unavailable, "Vault is sealed"),
            (
                AuditError::Barrier(BarrierError::Key(KeyError::Sealed)),
                Code::Unavailable,
                "Vault is sealed",
            ),
            (
                AuditError::Corrupt {
                    path: "device/x".into(),
                    reason: "bad".into(),
                },
                Code::Internal,
                "internal error",
            ),
        ];
        for (error, code, message) in cases {
            assert_eq!(status(error), (code, message.to_string()));
        }
    }

    #[test]
    fn sealed_is_recognised_either_way() {
        assert!(AuditError::Sealed.is_sealed());
        assert!(AuditError::from(KeyError::Sealed).is_sealed());
        assert!(!AuditError::PathInUse.is_sealed());
    }
}
