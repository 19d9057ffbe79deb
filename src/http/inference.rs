//! The inference API: `/ping` and `/predictions/{model}[/{version}]`.

use actix_web::{guard, web, HttpRequest, HttpResponse};
use serde_json::json;

use super::error::pretty_json;
use super::{payload, ApiError, AppState};
use crate::actors::{CheckHealth, Enqueue, Job, ManagerError, Route};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/ping", web::route().to(ping))
        // TorchServe takes predictions by any method but OPTIONS (`curl -T` sends PUT).
        .service(
            web::resource(["/predictions/{model}", "/predictions/{model}/{version}"])
                .route(web::route().guard(guard::Options()).to(method_not_allowed))
                .route(web::route().to(predict)),
        );
}

/// Healthy while every model has its minimum of ready workers; otherwise 500, as TorchServe.
async fn ping(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let healthy = state.supervisor.send(CheckHealth).await?;
    let (mut response, status) = if healthy {
        (HttpResponse::Ok(), "Healthy")
    } else {
        (HttpResponse::InternalServerError(), "Unhealthy")
    };
    Ok(response
        .content_type("application/json")
        .body(pretty_json(&json!({ "status": status }))))
}

/// The model (and version) a prediction path names.
#[derive(serde::Deserialize)]
struct Target {
    model: String,
    version: Option<String>,
}

async fn predict(
    request: HttpRequest,
    target: web::Path<Target>,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let Target { model, version } = target.into_inner();
    let input = payload::read_input(&request, body, state.max_request_size).await?;
    let route = state.supervisor.send(Route { model, version }).await??;

    let (job, answer) = Job::new(input);
    route.manager.send(Enqueue(job)).await??;
    // If the client goes away, this future is dropped with `answer`, and the manager skips the
    // job. Otherwise the wait is bounded by the model's response timeout.
    let answer = tokio::time::timeout(route.response_timeout, answer)
        .await
        .map_err(|_| ManagerError::WorkerDied)?
        .map_err(|_| ManagerError::WorkerDied)??;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(pretty_json(&answer)))
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}
