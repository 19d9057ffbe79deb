//! The Open Inference Protocol (KServe v2) over REST, on the inference listener: server and
//! model health and metadata, and infer with JSON or binary tensors. A native model gets the
//! request's tensors as its `forward` arguments and answers with its output tensors; a Python
//! handler gets the body as `/predictions` would give it (TorchServe's way: its `kservev2`
//! envelope parses it) and its answer goes back as it is. Errors are OIP's `{"error": "..."}`.

mod codec;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{guard, web, HttpRequest, HttpResponse, ResponseError};
use serde_json::json;

use super::error::pretty_json;
use super::inference::{output_tensors, respond, run};
use super::{payload, ApiError, AppState};
use crate::request::InferenceRequest;
use crate::service::{ServiceError, Target};

/// The header that says how long the JSON part of a body with binary tensors is.
const HEADER_LENGTH: &str = "inference-header-content-length";

/// The protocol's own routes answer only while it is on (`ts_open_inference_protocol`); off,
/// they are TorchServe's 404, and infer stays routed, as TorchServe routes it either way.
pub fn endpoints(cfg: &mut web::ServiceConfig) {
    cfg.route("/v2", web::get().guard(guard::fn_guard(protocol_on)).to(server_metadata))
        .route("/v2/health/live", web::get().guard(guard::fn_guard(protocol_on)).to(live))
        .route("/v2/health/ready", web::get().guard(guard::fn_guard(protocol_on)).to(ready))
        .service(
            web::resource(["/v2/models/{model}", "/v2/models/{model}/versions/{version}"])
                .guard(guard::fn_guard(protocol_on))
                .route(web::get().to(model_metadata))
                .route(web::route().to(method_not_allowed)),
        )
        .service(
            web::resource(["/v2/models/{model}/ready", "/v2/models/{model}/versions/{version}/ready"])
                .guard(guard::fn_guard(protocol_on))
                .route(web::get().to(model_ready))
                .route(web::route().to(method_not_allowed)),
        )
        .service(
            web::resource(["/v2/models/{model}/infer", "/v2/models/{model}/versions/{version}/infer"])
                .route(web::post().to(infer))
                .route(web::route().to(method_not_allowed)),
        )
        .service(
            web::resource(["/v2/models/{model}/explain", "/v2/models/{model}/versions/{version}/explain"])
                .route(web::post().to(explain))
                .route(web::route().to(method_not_allowed)),
        );
}

fn protocol_on(context: &guard::GuardContext) -> bool {
    context
        .app_data::<web::Data<AppState>>()
        .is_some_and(|state| state.models.config().listeners.open_inference_protocol)
}

/// Any error, as OIP writes one: the status the error has everywhere else, body
/// `{"error": "..."}`.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct OipError(#[from] ApiError);

impl From<ServiceError> for OipError {
    fn from(e: ServiceError) -> Self {
        OipError(ApiError::Service(e))
    }
}

impl ResponseError for OipError {
    fn status_code(&self) -> StatusCode {
        self.0.status_code()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if self.status_code() == StatusCode::SERVICE_UNAVAILABLE {
            response.insert_header(("Retry-After", "1"));
        }
        response
            .content_type("application/json")
            .body(pretty_json(&json!({ "error": self.0.to_string() })))
    }
}

async fn method_not_allowed() -> Result<HttpResponse, OipError> {
    Err(ApiError::MethodNotAllowed.into())
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/json")
        .body(pretty_json(value))
}

async fn server_metadata() -> HttpResponse {
    json_response(
        StatusCode::OK,
        &json!({
            "name": "tserve",
            "version": env!("CARGO_PKG_VERSION"),
            "extensions": ["binary_tensor_data"],
        }),
    )
}

async fn live() -> HttpResponse {
    json_response(StatusCode::OK, &json!({ "live": true }))
}

/// Ready when every registered model version has a ready worker; 503 until then.
async fn ready(state: web::Data<AppState>) -> HttpResponse {
    let ready = state.models.all_ready();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    json_response(status, &json!({ "ready": ready }))
}

async fn model_metadata(target: web::Path<Target>, state: web::Data<AppState>) -> Result<HttpResponse, OipError> {
    let metadata = state.models.metadata(&target).await?;
    Ok(HttpResponse::Ok().content_type("application/json").body(pretty_json(&metadata)))
}

/// 200 `{"name", "ready": true}` when a worker is ready, else 503 with `"ready": false`
/// (clients read the status: tritonclient and KServe's both want 200).
async fn model_ready(target: web::Path<Target>, state: web::Data<AppState>) -> Result<HttpResponse, OipError> {
    let info = state.models.model_info(&target)?;
    let status = if info.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    Ok(json_response(status, &json!({ "name": info.name, "ready": info.ready })))
}

/// TorchServe's explanations ([`super::inference::explain`]), errors in OIP's shape.
async fn explain(
    request: HttpRequest,
    target: web::Path<Target>,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OipError> {
    Ok(super::inference::explain(&request, &target, body, &state).await?)
}

async fn infer(
    request: HttpRequest,
    target: web::Path<Target>,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, OipError> {
    let info = state.models.model_info(&target)?;
    if !info.native {
        // TorchServe's way for Python handlers: the body as it came, the answer as it goes.
        let input = payload::read_request(&request, body, state.body_limits).await?;
        let request_id = input.id.clone();
        let prediction = run(&request, &state, &target, input).await?;
        return Ok(respond(prediction, &request_id));
    }
    let bytes = payload::read_body(&request, body, state.body_limits).await?;
    let header_length = match request.headers().get(HEADER_LENGTH) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| ApiError::BadRequest("Inference-Header-Content-Length is not a number".into()))?,
        ),
    };
    let parsed = codec::parse_infer(&bytes, header_length).map_err(ApiError::BadRequest)?;
    let request_id = uuid::Uuid::new_v4().to_string();
    let input = InferenceRequest {
        id: request_id.clone(),
        headers: payload::headers(&request),
        parameters: Vec::new(),
        tensors: Some(parsed.inputs.clone()),
    };
    // The version that served it, named in the answer.
    let target = Target {
        model: info.name.clone(),
        version: target.version.clone(),
    };
    let prediction = run(&request, &state, &target, input).await?;
    let outputs = output_tensors(prediction)?;
    let id = parsed.id.clone().unwrap_or_else(|| request_id.clone());
    let rendered = codec::render_infer(&info.name, &info.version, &id, outputs, &parsed).map_err(ApiError::BadRequest)?;
    let mut response = HttpResponse::Ok();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.insert_header((HeaderName::from_static("x-request-id"), value));
    }
    match rendered.header_length {
        Some(length) => {
            response
                .insert_header((HeaderName::from_static(HEADER_LENGTH), length.to_string()))
                .content_type("application/octet-stream");
        }
        None => {
            response.content_type("application/json");
        }
    }
    Ok(response.body(rendered.body))
}
