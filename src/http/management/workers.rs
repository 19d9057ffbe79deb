//! `PUT /models/{model}[/{version}]`: scale a model version's workers.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::params::{Params, ScaleParams};
use super::status;
use crate::http::{ApiError, AppState};
use crate::service::{messages, Scaled, Target};

pub async fn scale(
    request: HttpRequest,
    path: web::Path<Target>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let params = ScaleParams::parse(&Params::from_query(&request));
    let mut target = path.into_inner();
    target.version = target.version.or(params.model_version);
    let scaled = state
        .models
        .scale(&target, params.min_worker, params.max_worker, params.synchronous)
        .await?;
    let code = match scaled {
        Scaled::Accepted => StatusCode::ACCEPTED,
        Scaled::Done => StatusCode::OK,
    };
    Ok(status(code, messages::scaled(&scaled, params.min_worker, &target)))
}
