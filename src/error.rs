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
    WorkflowNotFound,
    /// A workflow archive, manifest or spec that cannot be served.
    InvalidWorkflow,
    /// A workflow graph with a loop, several start nodes, or a node that is nothing.
    InvalidDag,
    /// Some of a workflow's nodes could not be registered.
    WorkflowFailed,
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
            Code::WorkflowNotFound => (404, "WorkflowNotFoundException"),
            Code::InvalidWorkflow => (400, "InvalidWorkflowException"),
            Code::InvalidDag => (400, "InvalidDAGException"),
            Code::WorkflowFailed => (500, "WorkflowException"),
        }
    }

    pub fn status(self) -> u16 {
        self.status_and_type().0
    }

    pub fn type_name(self) -> &'static str {
        self.status_and_type().1
    }
}

/// The gRPC status code (its number, as `google.rpc.Code`) for an error of HTTP status `status`,
/// as TorchServe's `GRPCUtils.getGRPCStatusCode` maps them, so a gRPC client sees the same
/// failure a REST client does.
pub fn grpc_code(status: u16) -> i32 {
    match status {
        200..=299 => 0,     // OK
        400 => 3,           // INVALID_ARGUMENT
        401 => 16,          // UNAUTHENTICATED
        403 => 7,           // PERMISSION_DENIED
        404 => 5,           // NOT_FOUND
        409 => 10,          // ABORTED
        413 | 429 => 8,     // RESOURCE_EXHAUSTED
        416 => 11,          // OUT_OF_RANGE
        499 => 1,           // CANCELLED
        501 => 12,          // UNIMPLEMENTED
        503 => 14,          // UNAVAILABLE
        504 => 4,           // DEADLINE_EXCEEDED
        _ if (400..500).contains(&status) => 9, // FAILED_PRECONDITION
        _ if (500..600).contains(&status) => 13, // INTERNAL
        _ => 2,                                  // UNKNOWN
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

    #[test]
    fn grpc_codes_follow_torchserve() {
        let cases = [(200, 0), (400, 3), (404, 5), (408, 9), (413, 8), (500, 13), (503, 14), (507, 13), (302, 2)];
        for (status, code) in cases {
            assert_eq!(grpc_code(status), code, "HTTP {status}");
        }
    }
}
