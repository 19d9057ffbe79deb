//! The one table of error codes: every error a client can see names a [`Code`], and this file alone
//! says which HTTP status and which TorchServe exception name (`type` in the JSON body) each code
//! has. Each layer keeps its own error enum and implements [`ErrorCode`] for it; the HTTP layer
//! turns any of them into TorchServe's `{"code", "type", "message"}` body from this table.

/// What kind of failure a client sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// A malformed request, parameter or input.
    BadRequest,
    /// An archive that cannot be served (bad manifest, unsafe entries, no model file).
    InvalidModel,
    /// A model URL whose download failed.
    DownloadFailed,
    /// A missing, wrong or expired token.
    InvalidKey,
    ModelNotFound,
    VersionNotFound,
    /// A path no route serves.
    ResourceNotFound,
    MethodNotAllowed,
    /// The client took too long to send its request.
    RequestTimeout,
    /// A model version that is already registered.
    Conflict,
    PayloadTooLarge,
    /// Unregistering the default version while others exist.
    CannotRemoveDefault,
    /// A failure of the server itself.
    Internal,
    /// The worker running the request died or overran the response timeout.
    WorkerDied,
    /// Overload or no worker: try again later.
    ServiceUnavailable,
    /// An inference failure with the status the backend chose (TorchServe sends every backend
    /// error as `InternalServerException` with the worker's own code: 503 for a handler
    /// exception, 507 when out of memory, or whatever a `PredictionException` names).
    Backend(u16),
    /// The client hung up before its answer (nginx's 499; only ever seen in logs).
    ClientGone,
    /// A route tserve knows but does not serve for this model.
    NotImplemented,
}

impl Code {
    /// The HTTP status and TorchServe's exception name, in one place.
    pub fn status_and_type(self) -> (u16, &'static str) {
        match self {
            Code::BadRequest => (400, "BadRequestException"),
            Code::InvalidModel => (400, "InvalidModelException"),
            Code::DownloadFailed => (400, "DownloadArchiveException"),
            Code::InvalidKey => (400, "InvalidKeyException"),
            Code::ModelNotFound => (404, "ModelNotFoundException"),
            Code::VersionNotFound => (404, "ModelVersionNotFoundException"),
            Code::ResourceNotFound => (404, "ResourceNotFoundException"),
            Code::MethodNotAllowed => (405, "MethodNotAllowedException"),
            Code::RequestTimeout => (408, "RequestTimeoutException"),
            Code::Conflict => (409, "ConflictStatusException"),
            Code::PayloadTooLarge => (413, "PayloadTooLargeException"),
            Code::CannotRemoveDefault => (403, "InvalidModelVersionException"),
            Code::Internal => (500, "InternalServerException"),
            Code::WorkerDied => (500, "InternalServerException"),
            Code::ServiceUnavailable => (503, "ServiceUnavailableException"),
            Code::Backend(status) => (status, "InternalServerException"),
            Code::ClientGone => (499, "ClientClosedRequest"),
            Code::NotImplemented => (501, "NotImplementedException"),
        }
    }

    pub fn status(self) -> u16 {
        self.status_and_type().0
    }

    pub fn type_name(self) -> &'static str {
        self.status_and_type().1
    }
}

/// An error that knows what its client sees.
pub trait ErrorCode {
    fn code(&self) -> Code;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_errors_keep_the_workers_status() {
        assert_eq!(Code::Backend(507).status_and_type(), (507, "InternalServerException"));
        assert_eq!(Code::WorkerDied.status(), 500);
    }
}
