//! Errors as HTTP answers: a status and a JSON `{"error": message}` body.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::PluginError;

/// An error answer of the plugin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl PluginError {
    /// The HTTP status this kind of failure is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            PluginError::BadRequest(_) => StatusCode::BAD_REQUEST,
            PluginError::NotFound(_) => StatusCode::NOT_FOUND,
            PluginError::Rejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
            PluginError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            PluginError::NotRunning(_) => StatusCode::CONFLICT,
            PluginError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            PluginError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
        }
    }
}

impl From<PluginError> for ApiError {
    fn from(e: PluginError) -> ApiError {
        ApiError {
            status: e.status(),
            message: e.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message });
        (self.status, Json(body)).into_response()
    }
}

impl IntoResponse for PluginError {
    fn into_response(self) -> Response {
        ApiError::from(self).into_response()
    }
}
