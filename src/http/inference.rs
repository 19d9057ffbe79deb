//! The inference API: `/ping`, `/predictions/{model}[/{version}]`, and the API description;
//! the KServe v1 and Open Inference Protocol front doors ([`super::kserve`], [`super::oip`]), and
//! the SageMaker and Vertex AI routes ([`super::cloud`]).

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{guard, web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::json;

use super::error::{method_not_allowed, pretty_json};
use super::{cloud, disconnect, kserve, oip, openapi, payload, ApiError, AppState};
use crate::handlers::ModelError;
use crate::request::{Body, InferenceRequest, Prediction};
use crate::service::{Answer, AnswerStream, ServiceError, Target};
use crate::tensor::TensorData;

pub fn routes(cfg: &mut web::ServiceConfig) {
    openapi::description_routes(cfg, || openapi::INFERENCE);
    endpoints(cfg);
}

/// The API's own paths, without its description (a listener serving both APIs has its own).
pub fn endpoints(cfg: &mut web::ServiceConfig) {
    cfg.route("/ping", web::route().to(ping))
        // TorchServe takes predictions by any method but OPTIONS (`curl -T` sends PUT).
        .service(
            web::resource(["/predictions/{model}", "/predictions/{model}/{version}"])
                .route(web::route().guard(guard::Options()).to(model_api))
                .route(web::route().to(predict)),
        )
        // Workflows take predictions by any method, as TorchServe's (`curl -T` sends PUT).
        .route("/wfpredict/{name}", web::route().to(workflow_predict))
        // TorchServe 0.12: segments after the version reach the handler as the request header
        // `url_path` (how its OpenAI-style LLM routes, `.../v1/chat/completions`, work).
        .service(
            web::resource("/predictions/{model}/{version}/{url_path:.+}")
                .route(web::route().guard(guard::Options()).to(method_not_allowed))
                .route(web::route().to(predict_with_path)),
        )
        .service(
            web::resource(["/explanations/{model}", "/explanations/{model}/{version}"])
                .route(web::route().guard(guard::Options()).to(method_not_allowed))
                .route(web::route().to(explanations)),
        );
    oip::endpoints(cfg);
    kserve::endpoints(cfg);
    // Last: a platform's configured paths match only what nothing above does.
    cloud::endpoints(cfg);
}

/// Healthy while every model has its minimum of ready workers; otherwise 500, as TorchServe.
pub(super) async fn ping(state: web::Data<AppState>) -> HttpResponse {
    let (mut response, status) = if state.models.health() {
        (HttpResponse::Ok(), "Healthy")
    } else {
        (HttpResponse::InternalServerError(), "Unhealthy")
    };
    response
        .content_type("application/json")
        .body(pretty_json(&json!({ "status": status })))
}

async fn predict(
    request: HttpRequest,
    target: web::Path<Target>,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    predict_target(request, &target, |_| {}, body, &state).await
}

/// The model, version and extra path of `/predictions/{model}/{version}/{url_path}`.
#[derive(serde::Deserialize)]
struct PathTarget {
    model: String,
    version: String,
    url_path: String,
}

async fn predict_with_path(
    request: HttpRequest,
    path: web::Path<PathTarget>,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let PathTarget { model, version, url_path } = path.into_inner();
    let target = Target { model, version: Some(version) };
    let with_url_path = |input: &mut InferenceRequest| {
        input.headers.retain(|(name, _)| name != "url_path");
        input.headers.push(("url_path".into(), url_path));
    };
    predict_target(request, &target, with_url_path, body, &state).await
}

/// A prediction with the request as `/predictions` reads it, then `adjust`ed by the route (an
/// extra header or parameters); answered whole or streamed, as the handler answers.
pub(super) async fn predict_target(
    request: HttpRequest,
    target: &Target,
    adjust: impl FnOnce(&mut InferenceRequest),
    body: web::Payload,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    state.models.check(target)?;
    let mut input = payload::read_request(&request, body, state.body_limits).await?;
    adjust(&mut input);
    let request_id = input.id.clone();
    let answer = unless_client_goes(&request, state.models.predict_streaming(target, input)).await?;
    Ok(match answer {
        Answer::Whole(prediction) => respond(prediction, &request_id),
        Answer::Streamed { head, rest } => respond_streamed(head, rest, &request_id),
    })
}

/// A streamed answer as a chunked body, one chunk per part as it comes, with the first part's
/// status and headers (as TorchServe sends a streaming handler's answer). Dropping the body (the
/// client went away) drops the parts still to come. An error after the first part can no longer
/// change the status: it ends the body early, which the client sees as a broken transfer.
fn respond_streamed(head: Prediction, rest: AnswerStream, request_id: &str) -> HttpResponse {
    let (mut response, body) = response_head(head, request_id);
    let first = futures_util::stream::once(async move { Ok::<_, ApiError>(body) });
    let more = futures_util::stream::unfold(rest, |mut rest| async move {
        let part = rest.next().await?;
        Some((part.map(|p| p.body.into_bytes()).map_err(ApiError::from), rest))
    });
    response.streaming(first.chain(more))
}

async fn workflow_predict(
    request: HttpRequest,
    name: web::Path<String>,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let input = payload::read_request(&request, body, state.body_limits).await?;
    let request_id = input.id.clone();
    let prediction = unless_client_goes(&request, state.models.predict_workflow(&name, input)).await?;
    Ok(respond(prediction, &request_id))
}

/// `OPTIONS /predictions/{model}[/{version}]`: the model's prediction API, as TorchServe
/// describes it.
async fn model_api(target: web::Path<Target>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.models.check(&target)?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(pretty_json(&openapi::model_api(&target.model))))
}

async fn explanations(
    request: HttpRequest,
    target: web::Path<Target>,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    explain(&request, &target, body, &state).await
}

/// TorchServe's explanations, for every route that asks for one (`/explanations`, KServe v1
/// `:explain`, OIP `/explain`): a Python handler gets the request with the header
/// `explain: True`, on which TorchServe's BaseHandler runs its `explain_handle` (Captum) and the
/// `kserve` envelopes answer `{"explanations": ...}`. A native model has no explainer: 501,
/// naming the way to one.
pub(super) async fn explain(
    request: &HttpRequest,
    target: &Target,
    body: web::Payload,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    if state.models.model_info(target)?.native {
        return Err(ApiError::NotImplemented(format!(
            "Model {} is a TorchScript model served natively, which has no explainer yet; serve it \
             on the Python backend (model-config YAML `tserve: {{backend: python}}`) with a handler that \
             explains, e.g. with Captum",
            target.model
        )));
    }
    let mut input = payload::read_request(request, body, state.body_limits).await?;
    input.headers.retain(|(name, _)| name != "explain");
    input.headers.push(("explain".into(), "True".into()));
    let request_id = input.id.clone();
    let prediction = run(request, state, target, input).await?;
    Ok(respond(prediction, &request_id))
}

/// Runs one prediction through the model service for any front door (`/predictions`, OIP,
/// KServe). If the client goes away first, dropping the prediction withdraws its job.
pub(super) async fn run(
    request: &HttpRequest,
    state: &AppState,
    target: &Target,
    input: InferenceRequest,
) -> Result<Prediction, ApiError> {
    unless_client_goes(request, state.models.predict(target, input)).await
}

/// Waits for `answer` while the client is there; if it goes first, dropping `answer` withdraws
/// what it was waiting for (a queued job, a workflow's nodes).
async fn unless_client_goes<T>(
    request: &HttpRequest,
    answer: impl std::future::Future<Output = Result<T, ServiceError>>,
) -> Result<T, ApiError> {
    tokio::select! {
        answer = answer => Ok(answer?),
        _ = disconnect::client_gone(request) => {
            log::debug!("client of {} went away before its answer", request.path());
            Err(ApiError::ClientGone)
        }
    }
}

/// The output tensors of a native model's answer to typed input (OIP, KServe v1).
pub(super) fn output_tensors(prediction: Prediction) -> Result<Vec<TensorData>, ApiError> {
    Ok(crate::service::output_tensors(prediction)?)
}

/// A model output that the protocol cannot render: TorchServe's invalid-output failure.
pub(super) fn invalid_output(message: String) -> ApiError {
    ApiError::Service(ServiceError::from(ModelError::InvalidOutput(message)))
}

/// The HTTP response for a backend's answer: its status, content type, headers and body.
pub(super) fn respond(prediction: Prediction, request_id: &str) -> HttpResponse {
    let (mut response, body) = response_head(prediction, request_id);
    response.body(body)
}

/// A backend's status, content type and headers as an HTTP response, and its body's bytes.
fn response_head(prediction: Prediction, request_id: &str) -> (actix_web::HttpResponseBuilder, bytes::Bytes) {
    let status = StatusCode::from_u16(prediction.status).unwrap_or(StatusCode::OK);
    let mut response = HttpResponse::build(status);
    if let Ok(id) = HeaderValue::from_str(request_id) {
        response.insert_header((HeaderName::from_static("x-request-id"), id));
    }
    for (name, value) in &prediction.headers {
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name.as_str()), HeaderValue::from_str(value)) {
            response.insert_header((name, value));
        }
    }
    let default_type = match &prediction.body {
        Body::Json(_) | Body::Tensors(_) => Some("application/json"),
        Body::Raw(_) => None,
    };
    if let Some(content_type) = prediction.content_type.as_deref().or(default_type) {
        response.content_type(content_type);
    }
    (response, prediction.body.into_bytes())
}
