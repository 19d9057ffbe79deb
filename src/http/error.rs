//! The HTTP layer's errors and their one rendering: the status and TorchServe exception name come
//! from the crate's code table ([`crate::error::Code`]), the body is TorchServe's
//! `{"code", "type", "message"}`.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::error::{Code, ErrorCode};
use crate::service::ServiceError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error("Request body is larger than max_request_size ({limit} bytes)")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    BadRequest(String),
    #[error("Requested resource is not found, please refer to API document.")]
    ResourceNotFound,
    #[error("Requested method is not allowed, please refer to API document.")]
    MethodNotAllowed,
    #[error("The request body did not arrive within {seconds}s")]
    BodyTimeout { seconds: u64 },
    #[error("Token Authorization failed. Token either incorrect, expired, or not provided correctly")]
    InvalidKey,
    /// `/token` with a wrong API key or type: TorchServe's other wording.
    #[error("Token Authentication failed. Token either incorrect, expired, or not provided correctly")]
    TokenApiRefused,
    /// The client hung up before its answer; nobody reads this response.
    #[error("Client closed the connection before the answer")]
    ClientGone,
    #[error("{0}")]
    NotImplemented(String),
}

impl ErrorCode for ApiError {
    fn code(&self) -> Code {
        match self {
            ApiError::Service(e) => e.code(),
            ApiError::PayloadTooLarge { .. } => Code::PayloadTooLarge,
            ApiError::BadRequest(_) => Code::BadRequest,
            ApiError::ResourceNotFound => Code::ResourceNotFound,
            ApiError::MethodNotAllowed => Code::MethodNotAllowed,
            ApiError::BodyTimeout { .. } => Code::RequestTimeout,
            ApiError::InvalidKey | ApiError::TokenApiRefused => Code::InvalidKey,
            ApiError::ClientGone => Code::ClientGone,
            ApiError::NotImplemented(_) => Code::NotImplemented,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code().status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let body = ErrorBody {
            code: status.as_u16(),
            r#type: self.code().type_name(),
            message: self.to_string(),
        };
        let mut response = HttpResponse::build(status);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // Overload is temporary: tell well-behaved clients when to come back.
            response.insert_header(("Retry-After", "1"));
        }
        response.content_type("application/json").body(pretty_json(&body))
    }
}

#[derive(Serialize)]
struct ErrorBody {
    code: u16,
    r#type: &'static str,
    message: String,
}

/// JSON as TorchServe writes it: two-space indent, newline at the end.
pub use crate::request::pretty_json;

/// The answer for any path no route matches.
pub async fn resource_not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::ResourceNotFound)
}

pub async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

/// Gives every response an `x-request-id`, as TorchServe does; a prediction sets its own (the
/// id its backend saw), which is kept.
pub async fn with_request_id(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut response = next.call(request).await?;
    let name = HeaderName::from_static("x-request-id");
    if !response.headers().contains_key(&name) {
        if let Ok(value) = HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()) {
            response.headers_mut().insert(name, value);
        }
    }
    Ok(response)
}
