//! Every refusal of the API: a status and a JSON body
//! `{"error": {"code": "...", "message": "..."}}` whose message names what
//! is wrong and where.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use duplex_core::app::AppError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiError {
    #[serde(skip, default = "default_status")]
    pub status: u16,
    pub code: String,
    pub message: String,
}

fn default_status() -> u16 {
    500
}

#[derive(Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ApiError,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status: status.as_u16(),
            code: code.to_string(),
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// An application error in the API's terms: refusals are conflicts
    /// with the session's state (409), the rest the server's (500).
    pub fn from_app(err: &AppError) -> ApiError {
        match err {
            AppError::Refused(_) => ApiError::new(StatusCode::CONFLICT, "refused", err.to_string()),
            AppError::NoRunInProgress { .. } | AppError::NoSession { .. } => ApiError::new(
                StatusCode::CONFLICT,
                "no_session",
                "no upgrade session is running here: nothing to command",
            ),
            _ => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                err.to_string(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(ErrorBody { error: self })).into_response()
    }
}
