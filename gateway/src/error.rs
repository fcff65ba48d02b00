//! The one place where failures become Vault's HTTP errors: a status code and
//! `{"errors":[...]}`. Every `tonic::Status` from a service is mapped here.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// An HTTP error in Vault's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub errors: Vec<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, msg: impl Into<String>) -> Self {
        ApiError {
            status,
            errors: vec![msg.into()],
        }
    }

    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, msg)
    }

    /// 403 with Vault's text. The gateway never says why (bad, expired or
    /// missing token look the same).
    pub fn permission_denied() -> Self {
        Self::new(StatusCode::FORBIDDEN, "permission denied")
    }

    /// 404 with an empty error list, as Vault answers a missing item.
    pub fn not_found() -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            errors: vec![],
        }
    }

    pub fn no_route(path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("no handler for route \"{path}\". route entry not found."),
        )
    }

    pub fn unsupported_operation() -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "unsupported operation")
    }

    pub fn sealed() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "Vault is sealed")
    }
}

impl From<tonic::Status> for ApiError {
    fn from(s: tonic::Status) -> Self {
        use tonic::Code;
        // No answer from the service, only a broken connection to it
        // (tonic's own messages; the code is h2's reason, e.g.
        // RESOURCE_EXHAUSTED for a GOAWAY ENHANCE_YOUR_CALM, or UNKNOWN):
        // unavailable, not the client's fault and not a rate limit.
        if s.message().starts_with("h2 protocol error") || s.message() == "transport error" {
            tracing::warn!(code = ?s.code(), message = s.message(), "upstream connection failed");
            return ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream service unavailable",
            );
        }
        let status = match s.code() {
            Code::InvalidArgument
            | Code::FailedPrecondition
            | Code::AlreadyExists
            | Code::OutOfRange => StatusCode::BAD_REQUEST,
            Code::PermissionDenied | Code::Unauthenticated => StatusCode::FORBIDDEN,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::Unimplemented => StatusCode::METHOD_NOT_ALLOWED,
            Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
            Code::Aborted => StatusCode::CONFLICT,
            Code::Ok | Code::Cancelled | Code::Unknown | Code::Internal | Code::DataLoss => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let msg = match (status, s.message()) {
            // Never leak a peer's reason for an authorization failure.
            (StatusCode::FORBIDDEN, _) => "permission denied".to_string(),
            (StatusCode::SERVICE_UNAVAILABLE, m) if m.is_empty() || m.contains("transport") => {
                "upstream service unavailable".to_string()
            }
            (_, "") => status.canonical_reason().unwrap_or("error").to_string(),
            (_, m) => m.to_string(),
        };
        if status.is_server_error() {
            tracing::warn!(code = ?s.code(), message = s.message(), "upstream error");
        }
        ApiError::new(status, msg)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "errors": self.errors });
        (self.status, axum::Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_follow_vault() {
        let cases = [
            (tonic::Status::invalid_argument("bad"), 400, "bad"),
            (
                tonic::Status::permission_denied("svc x may not"),
                403,
                "permission denied",
            ),
            (
                tonic::Status::unauthenticated("why"),
                403,
                "permission denied",
            ),
            (tonic::Status::not_found("gone"), 404, "gone"),
            (
                tonic::Status::unavailable("Vault is sealed"),
                503,
                "Vault is sealed",
            ),
            (
                tonic::Status::resource_exhausted("slow down"),
                429,
                "slow down",
            ),
            (tonic::Status::internal(""), 500, "Internal Server Error"),
            // A connection torn down under a call, whatever h2's reason.
            (
                tonic::Status::resource_exhausted("h2 protocol error: http2 error"),
                503,
                "upstream service unavailable",
            ),
            (
                tonic::Status::internal("h2 protocol error: stream error received"),
                503,
                "upstream service unavailable",
            ),
            (
                tonic::Status::unknown("transport error"),
                503,
                "upstream service unavailable",
            ),
            (
                tonic::Status::deadline_exceeded("upstream service did not answer within 2s"),
                504,
                "upstream service did not answer within 2s",
            ),
        ];
        for (status, code, msg) in cases {
            let e = ApiError::from(status);
            assert_eq!(e.status.as_u16(), code);
            assert_eq!(e.errors, vec![msg.to_string()]);
        }
    }
}
