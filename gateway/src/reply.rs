//! Small answers shared by the engine and method handlers.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::envelope::Envelope;
use crate::error::ApiError;

/// A read that may find nothing.
pub fn found<T>(r: Result<tonic::Response<T>, tonic::Status>) -> Result<Option<T>, ApiError> {
    match r {
        Ok(v) => Ok(Some(v.into_inner())),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
        Err(s) => Err(s.into()),
    }
}

pub fn unsupported_path() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "unsupported path")
}

pub fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// A LIST answer: `keys`, or 404 when there are none (as Vault answers).
pub fn keys_response(names: Vec<String>, mount_type: &str) -> Result<Response, ApiError> {
    if names.is_empty() {
        return Err(ApiError::not_found());
    }
    Ok(Envelope::data(json!({ "keys": names }), mount_type).into_response())
}
