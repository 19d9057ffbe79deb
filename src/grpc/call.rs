//! What every gRPC call gets, as every REST request does: its listener's token (metadata
//! `authorization: Bearer <key>`: the inference key on the inference port, the management key on
//! the management port), one access-log line when it ends (TorchServe's gRPC form,
//! `/ip:port "gRPC <method> HTTP/2.0" <code> <ms>`), and a count in `Requests2XX`/`4XX`/`5XX` by
//! the HTTP status its outcome has on REST. Errors become gRPC statuses through the crate's one
//! code table.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tonic::{Request, Response, Status};

use crate::auth::{TokenKind, Tokens};
use crate::error::{grpc_code, ErrorCode};
use crate::logging::layout::Peer;
use crate::logging::ACCESS_LOG;
use crate::service::{Models, ServiceError, Target};

/// Why a call failed: the status a REST client would have had (for the counts), and the gRPC
/// status the client gets.
#[derive(Debug)]
pub struct CallError {
    http_status: u16,
    status: Status,
}

impl CallError {
    /// A malformed request: INVALID_ARGUMENT, as REST's 400.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::from_status(400, message.into())
    }

    /// A gRPC status of its own (for the counts, `http_status` is what REST would answer).
    pub fn status(http_status: u16, status: Status) -> Self {
        Self { http_status, status }
    }

    /// The gRPC status alone, for a stream that ends with it after the call has begun.
    pub fn into_status(self) -> Status {
        self.status
    }

    fn from_status(http_status: u16, message: String) -> Self {
        Self {
            http_status,
            status: Status::new(tonic::Code::from_i32(grpc_code(http_status)), message),
        }
    }

    /// A missing, wrong or expired token: PERMISSION_DENIED with TorchServe's message (REST
    /// answers it 400, which would read as INVALID_ARGUMENT).
    fn token_refused() -> Self {
        Self {
            http_status: 400,
            status: Status::permission_denied(
                "Token Authorization failed. Token either incorrect, expired, or not provided correctly",
            ),
        }
    }
}

impl From<ServiceError> for CallError {
    fn from(error: ServiceError) -> Self {
        Self::from_status(error.code().status(), error.to_string())
    }
}

/// The model and version a request names; an empty name is a bad request (naming the field
/// that should have held it), an empty version the default one.
pub fn target(name: &str, version: &str, field: &str) -> Result<Target, CallError> {
    if name.is_empty() {
        return Err(CallError::bad_request(format!("Parameter {field} is required.")));
    }
    Ok(Target {
        model: name.to_string(),
        version: (!version.is_empty()).then(|| version.to_string()),
    })
}

/// The model service, and what each call passes through before it reaches it.
#[derive(Clone)]
pub struct FrontDoor {
    pub models: Models,
    tokens: Option<Arc<Tokens>>,
    kind: TokenKind,
}

impl FrontDoor {
    /// A door that wants the `kind` key (when token authorization is on).
    pub fn new(models: Models, tokens: Option<Arc<Tokens>>, kind: TokenKind) -> Self {
        Self { models, tokens, kind }
    }

    /// Runs `handler` on the request's message once its token is checked, then logs and counts
    /// the outcome. `method` is the full method name, as the access log shows it.
    pub async fn call<T, R, Fut>(
        &self,
        method: &'static str,
        request: Request<T>,
        handler: impl FnOnce(T) -> Fut,
    ) -> Result<Response<R>, Status>
    where
        Fut: Future<Output = Result<R, CallError>>,
    {
        let started = Instant::now();
        let peer = request.remote_addr();
        let authorized = match &self.tokens {
            None => true,
            Some(tokens) => {
                let header = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
                tokens.check(self.kind, header)
            }
        };
        let outcome = match authorized {
            true => handler(request.into_inner()).await,
            false => Err(CallError::token_refused()),
        };
        let (http_status, result) = match outcome {
            Ok(message) => (200, Ok(Response::new(message))),
            Err(error) => (error.http_status, Err(error.status)),
        };
        if log::log_enabled!(target: ACCESS_LOG, log::Level::Info) {
            let code = result.as_ref().map_or_else(|status| status.code() as i32, |_| 0);
            log::info!(target: ACCESS_LOG, "{} \"gRPC {method} HTTP/2.0\" {code} {}", Peer(peer), started.elapsed().as_millis());
        }
        self.models.metrics().response(http_status);
        result
    }
}
