//! The board API's error replies: an HTTP status, one sentence, and the field it
//! is about, as `{"error": "...", "field": ...}` the way the control API sends
//! them (the body is replicated here: `board` may not import `control`). A 409
//! about a lock also names its holder and when the lease ends.
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::service::{LockError, ServiceError};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    /// The JSON field, query or path parameter at fault ("body" for a body that
    /// is not JSON); null when no one field is.
    pub field: Option<String>,
    /// A lock conflict: who holds the lock, and until when (microseconds since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_us: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
}

impl ApiError {
    pub fn new(status: StatusCode, field: Option<&str>, message: impl Into<String>) -> ApiError {
        let body =
            ErrorBody { error: message.into(), field: field.map(str::to_string), holder: None, expires_at_us: None };
        ApiError { status, body }
    }
    pub fn bad_request(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, Some(field), message)
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, None, message)
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> ApiError {
        let message = error.to_string();
        match error {
            ServiceError::Invalid(invalid) => ApiError::bad_request(invalid.field, message),
            ServiceError::NoRecord(_) => ApiError::new(StatusCode::NOT_FOUND, None, message),
            ServiceError::Lock(LockError::NotLocked { .. }) => ApiError::new(StatusCode::NOT_FOUND, None, message),
            ServiceError::Lock(LockError::HeldBy { holder, expires_at_us, .. }) => {
                let mut refused = ApiError::new(StatusCode::CONFLICT, Some("holder"), message);
                refused.body.holder = Some(holder);
                refused.body.expires_at_us = Some(expires_at_us);
                refused
            }
            ServiceError::Lock(LockError::QueueFull { holder, .. }) => {
                let mut refused = ApiError::new(StatusCode::CONFLICT, None, message);
                refused.body.holder = Some(holder);
                refused
            }
            ServiceError::Store(_) => ApiError::internal(message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}
