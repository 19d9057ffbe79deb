//! The inference API: `/ping` and `/predictions/{model}[/{version}]`.

use actix_web::{guard, web, HttpRequest, HttpResponse};
use serde_json::json;

use super::error::pretty_json;
use super::{disconnect, payload, ApiError, AppState};
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
    // The manager answers every job it accepted: with the prediction, or with `Worker died.`
    // once its batch overruns the response timeout, or with an error when the job expires or
    // the model has no workers left. If the client goes away first, `answer` is dropped and
    // the manager skips the job.
    let answer = tokio::select! {
        answer = answer => answer.map_err(|_| ManagerError::WorkerDied)??,
        _ = disconnect::client_gone(&request) => {
            log::debug!("client of {} went away before its answer", request.path());
            return Err(ApiError::ClientGone);
        }
    };
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(pretty_json(&answer)))
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}
