//! The API's errors and their one mapping to HTTP: TorchServe's status codes and its JSON body
//! `{"code", "type", "message"}`, where `type` is the TorchServe exception name clients match on.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::middleware::Next;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::actors::ManagerError;
use crate::archive::ArchiveError;
use crate::handlers::ModelError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Manager(#[from] ManagerError),
    #[error("Request body is larger than max_request_size ({limit} bytes)")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    BadRequest(String),
    #[error("Requested resource is not found, please refer to API document.")]
    ResourceNotFound,
    #[error("Requested method is not allowed, please refer to API document.")]
    MethodNotAllowed,
    #[error("Model store has not been configured.")]
    NoModelStore,
    #[error("Failed to start workers for model {model} version: {}", version.as_deref().unwrap_or("null"))]
    WorkersFailed {
        model: String,
        version: Option<String>,
    },
    /// The client hung up before its answer; nobody reads this response.
    #[error("Client closed the connection before the answer")]
    ClientGone,
    /// An actor did not take or answer a message (it is gone or the server is stopping).
    #[error("Server is busy or stopping: {0}")]
    Unavailable(String),
}

impl From<actix::MailboxError> for ApiError {
    fn from(e: actix::MailboxError) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}

impl From<ArchiveError> for ApiError {
    fn from(e: ArchiveError) -> Self {
        ApiError::Manager(ManagerError::Archive(e))
    }
}

impl From<ModelError> for ApiError {
    fn from(e: ModelError) -> Self {
        ApiError::Manager(ManagerError::Model(e))
    }
}

impl ApiError {
    /// TorchServe's exception name for this error, sent as `type`.
    fn type_name(&self) -> &'static str {
        match self {
            ApiError::Manager(e) => match e {
                ManagerError::ModelNotFound(_) => "ModelNotFoundException",
                ManagerError::VersionNotFound { .. } => "ModelVersionNotFoundException",
                ManagerError::QueueFull { .. }
                | ManagerError::NoWorkers { .. }
                | ManagerError::Expired { .. }
                | ManagerError::Stopped(_) => "ServiceUnavailableException",
                ManagerError::Model(ModelError::BadInput(_)) => "BadRequestException",
                ManagerError::AlreadyRegistered { .. } => "ConflictStatusException",
                ManagerError::NoSuchDefaultVersion { .. } => "ModelVersionNotFoundException",
                ManagerError::CannotRemoveDefault(_) => "InvalidModelVersionException",
                ManagerError::Archive(
                    ArchiveError::NotFound(_)
                    | ArchiveError::PathEscapesStore(_)
                    | ArchiveError::UrlNotAllowed(_),
                ) => "ModelNotFoundException",
                ManagerError::Archive(ArchiveError::AlreadyExists(_) | ArchiveError::Io { .. }) => {
                    "InternalServerException"
                }
                ManagerError::Archive(ArchiveError::DownloadFailed { .. }) => "DownloadArchiveException",
                ManagerError::Archive(_)
                | ManagerError::EagerModel { .. }
                | ManagerError::MissingSerializedFile { .. } => "InvalidModelException",
                ManagerError::Model(ModelError::UnsupportedHandler(_)) => "InvalidModelException",
                ManagerError::WorkerDied | ManagerError::Model(_) => "InternalServerException",
            },
            ApiError::PayloadTooLarge { .. } => "PayloadTooLargeException",
            ApiError::BadRequest(_) => "BadRequestException",
            ApiError::ResourceNotFound => "ResourceNotFoundException",
            ApiError::MethodNotAllowed => "MethodNotAllowedException",
            ApiError::Unavailable(_) => "ServiceUnavailableException",
            ApiError::ClientGone => "ClientClosedRequest",
            ApiError::NoModelStore => "ModelNotFoundException",
            ApiError::WorkersFailed { .. } => "InternalServerException",
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Manager(e) => match e {
                ManagerError::ModelNotFound(_) | ManagerError::VersionNotFound { .. } => {
                    StatusCode::NOT_FOUND
                }
                ManagerError::QueueFull { .. }
                | ManagerError::NoWorkers { .. }
                | ManagerError::Expired { .. }
                | ManagerError::Stopped(_) => StatusCode::SERVICE_UNAVAILABLE,
                ManagerError::WorkerDied => StatusCode::INTERNAL_SERVER_ERROR,
                // A payload that cannot be model input is the client's error. (TorchServe
                // answers 503 for it, like any handler exception.)
                ManagerError::Model(ModelError::BadInput(_)) => StatusCode::BAD_REQUEST,
                // TorchServe's code for an exception raised while the model runs.
                ManagerError::Model(ModelError::Prediction(_) | ModelError::InvalidOutput(_)) => {
                    StatusCode::SERVICE_UNAVAILABLE
                }
                ManagerError::Model(ModelError::UnsupportedHandler(_)) => StatusCode::BAD_REQUEST,
                ManagerError::Model(_) => StatusCode::INTERNAL_SERVER_ERROR,
                ManagerError::Archive(ArchiveError::Io { .. }) => StatusCode::INTERNAL_SERVER_ERROR,
                ManagerError::AlreadyRegistered { .. } => StatusCode::CONFLICT,
                ManagerError::NoSuchDefaultVersion { .. } => StatusCode::NOT_FOUND,
                ManagerError::CannotRemoveDefault(_) => StatusCode::FORBIDDEN,
                ManagerError::Archive(
                    ArchiveError::NotFound(_)
                    | ArchiveError::PathEscapesStore(_)
                    | ArchiveError::UrlNotAllowed(_),
                ) => StatusCode::NOT_FOUND,
                ManagerError::Archive(ArchiveError::AlreadyExists(_)) => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
                ManagerError::Archive(_)
                | ManagerError::EagerModel { .. }
                | ManagerError::MissingSerializedFile { .. } => StatusCode::BAD_REQUEST,
            },
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::ResourceNotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            // nginx's 499: recorded in logs only, since the client is gone.
            ApiError::ClientGone => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            ApiError::NoModelStore => StatusCode::NOT_FOUND,
            ApiError::WorkersFailed { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        let body = ErrorBody {
            code: status.as_u16(),
            r#type: self.type_name(),
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
pub fn pretty_json(value: &impl Serialize) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".to_string());
    text.push('\n');
    text
}

/// The answer for any path no route matches.
pub async fn resource_not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::ResourceNotFound)
}

/// Gives every response an `x-request-id`, as TorchServe does.
pub async fn with_request_id(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut response = next.call(request).await?;
    let id = uuid::Uuid::new_v4().to_string();
    if let Ok(value) = HeaderValue::from_str(&id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-request-id"), value);
    }
    Ok(response)
}
