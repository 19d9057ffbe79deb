//! The `/models` resources: list, describe, unregister, set-default, and KServe v1 readiness.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::params::{ListParams, Params};
use super::{json_response, status};
use crate::service::VersionSelector;
use crate::http::{ApiError, AppState};
use crate::service::{messages, Target};

/// Every model's default version, a page at a time.
pub async fn list(request: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let ListParams { limit, start } = ListParams::parse(&Params::from_query(&request));
    json_response(&messages::model_page(&state.models.list(), limit, start))
}

pub async fn describe(path: web::Path<Target>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let Target { model, version } = path.into_inner();
    let described = state
        .models
        .describe(&model, &VersionSelector::from_path(version))
        .await?;
    Ok(json_response(&described))
}

pub async fn unregister(path: web::Path<Target>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if !state.enable_model_api {
        return Err(ApiError::MethodNotAllowed);
    }
    let target = path.into_inner();
    state.models.unregister(&target).await?;
    Ok(status(StatusCode::OK, messages::unregistered(&target.model)))
}

pub async fn set_default(path: web::Path<(String, String)>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (model, version) = path.into_inner();
    state.models.set_default(&model, &version).await?;
    Ok(status(StatusCode::OK, messages::default_set(&model, &version)))
}

/// `GET /v1/models/{model}`: `{"name", "ready"}`, ready when the default version has a worker.
pub async fn kserve_readiness(path: web::Path<String>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let path = path.into_inner();
    let model = path.split(':').next().unwrap_or_default().to_string();
    let ready = state.models.readiness(&model)?;
    Ok(json_response(&json!({ "name": model, "ready": ready })))
}
