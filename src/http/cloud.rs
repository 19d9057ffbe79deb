//! The routes cloud platforms call a serving container on, over the same model service as
//! `/predictions`. SageMaker: `POST /invocations` (TorchServe's; also `/models/{model}/invoke`)
//! with the raw body, to the model named by `?model_name=`, by the multi-model endpoint's
//! `X-Amzn-SageMaker-Target-Model` header, or else the one model registered; and
//! `GET /execution-parameters`, which batch transform asks first (TorchServe serves it from an
//! endpoint plugin). Vertex AI: the paths named by `AIP_HEALTH_ROUTE` (answered as `/ping`) and
//! `AIP_PREDICT_ROUTE` (KServe v1 `{"instances": [...]}` to the one model, Vertex's request shape).

use actix_web::guard::{self, GuardContext};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::json;

use super::error::pretty_json;
use super::inference::{ping, predict_target};
use super::{kserve, ApiError, AppState};
use crate::config::CloudRoutes;
use crate::request::{InferenceRequest, Parameter};
use crate::service::Target;

/// SageMaker's default `MaxPayloadInMB` (its own limit on a request to a container).
const SAGEMAKER_MAX_PAYLOAD_MB: usize = 6;

pub fn endpoints(cfg: &mut web::ServiceConfig) {
    cfg.route("/invocations", web::route().to(invocations))
        .route("/models/{model}/invoke", web::route().to(invoke))
        .service(
            web::resource("/execution-parameters")
                .route(web::get().to(execution_parameters))
                .route(web::route().to(super::error::method_not_allowed)),
        )
        .service(
            web::resource("/{vertex_health:.+}")
                .guard(guard::fn_guard(|ctx| is_route(ctx, |routes| &routes.health)))
                .to(ping),
        )
        .service(
            web::resource("/{vertex_predict:.+}")
                .guard(guard::fn_guard(|ctx| is_route(ctx, |routes| &routes.predict)))
                .route(web::post().to(vertex_predict))
                .route(web::route().to(super::error::method_not_allowed)),
        );
}

/// Whether the request's path is the one a platform configured (a resource guard: otherwise
/// the router moves on, and an unconfigured platform route matches nothing).
fn is_route(ctx: &GuardContext, route: impl Fn(&CloudRoutes) -> &Option<String>) -> bool {
    let Some(state) = ctx.app_data::<web::Data<AppState>>() else { return false };
    route(&state.models.config().cloud).as_deref() == Some(ctx.head().uri.path())
}

async fn invocations(request: HttpRequest, body: web::Payload, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let query = query_pairs(&request);
    let named = query.iter().find(|(name, _)| name == "model_name").map(|(_, model)| model.clone());
    let model = match named.or_else(|| target_model_header(&request)) {
        Some(model) => model,
        None => only_model(&state).ok_or_else(|| ApiError::BadRequest("Parameter model_name is required.".into()))?,
    };
    predict_with_query(request, Target { model, version: None }, query, body, &state).await
}

async fn invoke(
    request: HttpRequest,
    model: web::Path<String>,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let query = query_pairs(&request);
    predict_with_query(request, Target { model: model.into_inner(), version: None }, query, body, &state).await
}

/// As TorchServe's `/invocations`: the request as `/predictions` takes it, plus each query
/// parameter (but `model_name`) as a parameter of its own.
async fn predict_with_query(
    request: HttpRequest,
    target: Target,
    query: Vec<(String, String)>,
    body: web::Payload,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let with_query = |input: &mut InferenceRequest| {
        let parameters = query.into_iter().filter(|(name, _)| name != "model_name");
        input.parameters.extend(parameters.map(|(name, value)| Parameter { name, content_type: None, value: Bytes::from(value) }));
    };
    predict_target(request, &target, with_query, body, state).await
}

/// SageMaker batch transform's question to the container; its `SAGEMAKER_*` variables, where
/// set, are its answer, else as many concurrent transforms as the machine has cores.
async fn execution_parameters(state: web::Data<AppState>) -> HttpResponse {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let number = |name: &str| env(name).and_then(|v| v.trim().parse::<usize>().ok());
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let max_payload_mb = (state.body_limits.max_bytes >> 20).clamp(1, SAGEMAKER_MAX_PAYLOAD_MB);
    let body = json!({
        "MaxConcurrentTransforms": number("SAGEMAKER_MAX_CONCURRENT_TRANSFORMS").unwrap_or(cores),
        "BatchStrategy": env("SAGEMAKER_BATCH_STRATEGY").unwrap_or_else(|| "MULTI_RECORD".into()),
        "MaxPayloadInMB": number("SAGEMAKER_MAX_PAYLOAD_IN_MB").unwrap_or(max_payload_mb),
    });
    HttpResponse::Ok().content_type("application/json").body(pretty_json(&body))
}

async fn vertex_predict(request: HttpRequest, body: web::Payload, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let model = only_model(&state).ok_or_else(|| {
        ApiError::BadRequest("Vertex AI's predict route serves one model; register exactly one".into())
    })?;
    kserve::predict_instances(&request, &Target { model, version: None }, body, &state).await
}

/// A multi-model endpoint's model: the header names the artifact (`resnet.tar.gz`), whose name
/// without the archive suffix is the model's.
fn target_model_header(request: &HttpRequest) -> Option<String> {
    let artifact = request.headers().get("X-Amzn-SageMaker-Target-Model")?.to_str().ok()?.trim();
    let name = [".tar.gz", ".mar", ".tgz"].iter().find_map(|suffix| artifact.strip_suffix(suffix)).unwrap_or(artifact);
    (!name.is_empty()).then(|| name.to_string())
}

/// The model when exactly one is registered.
fn only_model(state: &AppState) -> Option<String> {
    match state.models.list().as_slice() {
        [only] => Some(only.name.clone()),
        _ => None,
    }
}

fn query_pairs(request: &HttpRequest) -> Vec<(String, String)> {
    web::Query::<Vec<(String, String)>>::from_query(request.query_string()).map_or_else(|_| Vec::new(), |q| q.into_inner())
}
