//! Errors of the actor layer: finding a model version, queueing a job, running it, and changing
//! the registry.

use crate::error::{Code, ErrorCode};
use crate::handlers::ModelError;

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("Model not found: {0}")]
    ModelNotFound(String),
    #[error("Model version: {version} does not exist for model: {model}")]
    VersionNotFound { model: String, version: String },
    #[error("Model \"{model}\" Version {version}: job queue is full ({capacity} jobs waiting); retry later")]
    QueueFull {
        model: String,
        version: String,
        capacity: usize,
    },
    /// TorchServe's words, misplaced quote included, for a model with no worker; the version
    /// appears when the request named one.
    #[error(
        "Model \"{model}{}\" has no worker to serve inference request. Please use scale workers API \
         to add workers. If this is a sequence inference, please check if it is closed, or \
         expired; or exceeds maxSequenceJobQueueSize",
        version.as_ref().map(|v| format!("\" Version {v}")).unwrap_or_default()
    )]
    NoWorkers { model: String, version: Option<String> },
    #[error("Worker died.")]
    WorkerDied,
    /// A Python backend's answer for the whole batch when it is not a success: TorchServe's
    /// status and message (503 `Prediction failed`, 507 `Out of resources`, a handler's own
    /// `PredictionException`, or 507 `Worker died.` for a worker killed by the OOM killer).
    #[error("{message}")]
    Backend { status: u16, message: String },
    #[error("Request dropped: it waited {waited_ms} ms in the queue, longer than the model's clientTimeoutInMills ({limit_ms} ms)")]
    Expired { waited_ms: u128, limit_ms: u128 },
    #[error("Model \"{0}\" is shutting down")]
    Stopped(String),
    /// The model failed this request.
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error("Model version {version} is already registered for model {model}")]
    AlreadyRegistered { model: String, version: String },
    /// set-default's own wording (no colons), as TorchServe's.
    #[error("Model version {version} does not exist for model {model}")]
    NoSuchDefaultVersion { model: String, version: String },
    #[error("Cannot remove default version for model {0}")]
    CannotRemoveDefault(String),
}

impl ErrorCode for ManagerError {
    fn code(&self) -> Code {
        match self {
            ManagerError::ModelNotFound(_) => Code::ModelNotFound,
            ManagerError::VersionNotFound { .. } | ManagerError::NoSuchDefaultVersion { .. } => {
                Code::VersionNotFound
            }
            ManagerError::QueueFull { .. }
            | ManagerError::NoWorkers { .. }
            | ManagerError::Expired { .. }
            | ManagerError::Stopped(_) => Code::ServiceUnavailable,
            ManagerError::WorkerDied => Code::WorkerDied,
            ManagerError::Backend { status, .. } => Code::Backend(*status),
            ManagerError::Model(e) => e.code(),
            ManagerError::AlreadyRegistered { .. } => Code::Conflict,
            ManagerError::CannotRemoveDefault(_) => Code::CannotRemoveDefault,
        }
    }
}
