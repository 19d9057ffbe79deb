//! The workflow management API: `POST /workflows` (register, always synchronous, as in
//! TorchServe), `GET /workflows` (list), `GET /workflows/{name}` (describe),
//! `DELETE /workflows/{name}`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::params::{ListParams, Params};
use super::{json_response, status};
use crate::http::{ApiError, AppState};
use crate::service::RegisterWorkflow;

pub async fn register(request: HttpRequest, body: web::Payload, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let params = Params::from_request(&request, body, state.body_limits).await?;
    let seconds = |key: &str| params.positive(key).map(std::time::Duration::from_secs);
    let registration = RegisterWorkflow {
        url: params.text("url").unwrap_or_default().to_string(),
        name: params.text("workflow_name").filter(|n| !n.is_empty()).map(String::from),
        response_timeout: seconds("response_timeout"),
        startup_timeout: seconds("startup_timeout"),
    };
    let message = state.models.register_workflow(registration).await?;
    Ok(status(StatusCode::OK, message))
}

pub async fn list(request: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let ListParams { limit, start } = ListParams::parse(&Params::from_query(&request));
    json_response(&state.models.workflows_page(limit, start))
}

pub async fn describe(name: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(json_response(&state.models.describe_workflow(&name)?))
}

pub async fn unregister(name: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let message = state.models.unregister_workflow(&name).await?;
    Ok(status(StatusCode::OK, message))
}
