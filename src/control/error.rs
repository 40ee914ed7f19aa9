//! API errors: an HTTP status class, one sentence, and the field it is about.
use core::fmt;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400: malformed or invalid request.
    BadRequest,
    /// 404: the id in the path (or the route) does not exist.
    NotFound,
    /// 405
    MethodNotAllowed,
    /// 409: the request conflicts with the configuration (duplicate, still referenced).
    Conflict,
    /// 413
    PayloadTooLarge,
    /// 415
    UnsupportedMediaType,
    /// 422: the upgrade ran but the new unit was refused (rolled back).
    UpgradeFailed,
    /// 500: the config database failed; nothing was changed.
    Internal,
}

impl ErrorKind {
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::BadRequest => 400,
            ErrorKind::NotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::Conflict => 409,
            ErrorKind::PayloadTooLarge => 413,
            ErrorKind::UnsupportedMediaType => 415,
            ErrorKind::UpgradeFailed => 422,
            ErrorKind::Internal => 500,
        }
    }
}

/// The JSON body of every error response: `{"error": "...", "field": "vni"}`;
/// `field` is the JSON field or path parameter at fault, "body" for a body that is
/// not JSON at all, and null when no field is (unknown route, database failure).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub field: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub body: ErrorBody,
}

impl ApiError {
    pub fn new(kind: ErrorKind, field: Option<&str>, message: impl Into<String>) -> ApiError {
        ApiError { kind, body: ErrorBody { error: message.into(), field: field.map(str::to_string) } }
    }
    pub fn bad_request(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::BadRequest, Some(field), message)
    }
    pub fn not_found(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::NotFound, Some(field), message)
    }
    pub fn conflict(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::Conflict, Some(field), message)
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::Internal, None, message)
    }
    pub fn status(&self) -> u16 {
        self.kind.status()
    }
    pub fn field(&self) -> Option<&str> {
        self.body.field.as_deref()
    }
    pub fn message(&self) -> &str {
        &self.body.error
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.body.field {
            Some(field) => write!(f, "{} (field: {field})", self.body.error),
            None => f.write_str(&self.body.error),
        }
    }
}

impl std::error::Error for ApiError {}
