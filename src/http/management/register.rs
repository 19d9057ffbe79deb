//! `POST /models`: register a model version from the store or a URL.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::params::{Params, RegisterParams};
use super::status;
use crate::http::{ApiError, AppState};
use crate::service::{messages, Registered};

pub async fn register(
    request: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if !state.enable_model_api {
        return Err(ApiError::MethodNotAllowed);
    }
    let params = Params::from_request(&request, body, state.body_limits).await?;
    let params = RegisterParams::parse(&params)?;
    let configured_workers = state.models.config().models.configured_workers;
    let registered = state.models.register(params.into_request(configured_workers)).await?;
    let code = match registered {
        Registered::Loading(_) => StatusCode::ACCEPTED,
        Registered::NoWorkers { .. } | Registered::Ready(_) => StatusCode::OK,
    };
    Ok(status(code, messages::registered(&registered)))
}
