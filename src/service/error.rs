//! Errors of the model-service layer: everything a caller of [`super::Models`] can be told.

use crate::actors::ManagerError;
use crate::archive::ArchiveError;
use crate::error::{Code, ErrorCode};
use crate::handlers::ModelError;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Manager(#[from] ManagerError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(
        "cannot serve Python-backend models: the Python {python} (config key `python`) {reason}. \
         Install TorchServe's backend there (pip install torchserve==0.12.0), or set `python` to \
         one that has it."
    )]
    PythonUnavailable { python: String, reason: String },
    #[error("Model {model} has no serializedFile in its manifest, or the file is missing from the archive")]
    MissingSerializedFile { model: String },
    #[error("Custom pip package installation failed for model {model}")]
    DependencyInstallFailed { model: String },
    /// A model-config key that asks for a TorchServe feature tserve lacks: refused, since
    /// serving the archive without it would not be what the archive asks for.
    #[error(
        "Model {model}: model-config key {key} asks for a TorchServe feature tserve does not support \
         yet; remove the key (or set it off) to serve this model single-process"
    )]
    UnsupportedModelConfig { model: String, key: String },
    #[error("Model store has not been configured.")]
    NoModelStore,
    #[error("{0}")]
    BadRequest(String),
    #[error("Failed to start workers for model {model} version: {}", version.as_deref().unwrap_or("null"))]
    WorkersFailed {
        model: String,
        version: Option<String>,
    },
    #[error(transparent)]
    Workflow(#[from] crate::workflow::WorkflowError),
    /// An actor did not answer in time, or is gone (the server is stopping).
    #[error("Server is busy or stopping: {0}")]
    Unavailable(String),
}

impl From<ModelError> for ServiceError {
    fn from(e: ModelError) -> Self {
        ServiceError::Manager(ManagerError::Model(e))
    }
}

impl ErrorCode for ServiceError {
    fn code(&self) -> Code {
        match self {
            ServiceError::Manager(e) => e.code(),
            ServiceError::Archive(e) => e.code(),
            ServiceError::PythonUnavailable { .. } => Code::Internal,
            ServiceError::DependencyInstallFailed { .. } | ServiceError::MissingSerializedFile { .. } => {
                Code::InvalidModel
            }
            ServiceError::NoModelStore => Code::ModelNotFound,
            ServiceError::BadRequest(_) | ServiceError::UnsupportedModelConfig { .. } => Code::BadRequest,
            ServiceError::WorkersFailed { .. } => Code::Internal,
            ServiceError::Unavailable(_) => Code::ServiceUnavailable,
            ServiceError::Workflow(e) => e.code(),
        }
    }
}
