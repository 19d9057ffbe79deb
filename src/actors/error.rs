//! Errors of the manager layer: routing a request, queueing it, and registering models.

use crate::archive::ArchiveError;
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
    #[error("Model \"{model}\" Version {version} has no worker to serve inference request. Please use scale workers API to add workers.")]
    NoWorkers { model: String, version: String },
    #[error("Worker died.")]
    WorkerDied,
    #[error("Request dropped: it waited {waited_ms} ms in the queue, longer than the model's clientTimeoutInMills ({limit_ms} ms)")]
    Expired { waited_ms: u128, limit_ms: u128 },
    #[error("Model \"{0}\" is shutting down")]
    Stopped(String),
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    #[error(
        "Model {model} is an eager-mode archive (modelFile {model_file}): tserve serves \
         TorchScript. Script or trace the model in Python \
         (torch.jit.script(model).save(\"model.pt\"), or torch.jit.trace(model, example).save(...)) \
         and archive that file with --serialized-file and no --model-file."
    )]
    EagerModel { model: String, model_file: String },
    #[error("Model {model} has no serializedFile in its manifest, or the file is missing from the archive")]
    MissingSerializedFile { model: String },
    #[error("Model version {version} is already registered for model {model}")]
    AlreadyRegistered { model: String, version: String },
    /// set-default's own wording (no colons), as TorchServe's.
    #[error("Model version {version} does not exist for model {model}")]
    NoSuchDefaultVersion { model: String, version: String },
    #[error("Cannot remove default version for model {0}")]
    CannotRemoveDefault(String),
}
