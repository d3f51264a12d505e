//! Errors a handler answers with, rendered as the real server's `ErrorResponse`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::model::ErrorResponse;

/// The `instance` field of every `ErrorResponse` (the real server puts its host name there).
pub const INSTANCE: &str = "conductor-devserver";

/// An error answered to the client; the variant picks the status code the real server uses.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: bad parameters or body (`IllegalArgumentException`, bean validation).
    #[error("{0}")]
    BadRequest(String),
    /// 404: `NotFoundException`.
    #[error("{0}")]
    NotFound(String),
    /// 409: `ConflictException`.
    #[error("{0}")]
    Conflict(String),
    /// 500 that the real server answers for a client mistake too (a missing required query
    /// parameter), not retryable.
    #[error("{0}")]
    Internal(String),
    /// 400 from bean validation: one entry per invalid field, as `(path, message)`.
    #[error("Validation failed, check below errors for detail.")]
    Validation(Vec<(&'static str, &'static str)>),
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Validation(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// A JSON response from bytes already serialized.
pub fn json_bytes(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// An `ErrorResponse` body with the given status.
pub fn error_response(status: StatusCode, message: String, retryable: bool) -> Response {
    let body = ErrorResponse {
        status: status.as_u16(),
        message,
        instance: INSTANCE.to_string(),
        retryable,
    };
    json_bytes(status, serde_json::to_vec(&body).unwrap_or_default())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Validation(errors) = &self {
            // Bean validation failures carry no `instance`, and list every invalid field.
            let body = serde_json::json!({
                "status": status.as_u16(),
                "message": self.to_string(),
                "retryable": false,
                "validationErrors": errors
                    .iter()
                    .map(|(path, message)| serde_json::json!({"path": path, "message": message}))
                    .collect::<Vec<_>>(),
            });
            return json_bytes(status, body.to_string().into_bytes());
        }
        error_response(status, self.to_string(), false)
    }
}
