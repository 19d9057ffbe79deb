//! The management API: register, scale, describe, list, unregister, set-default, KServe
//! readiness and the API description, with TorchServe's parameters, bodies and codes. One file
//! per resource; each handler parses typed parameters and calls the model service.

mod models;
mod params;
mod register;
mod token;
mod workers;
mod workflows;

use actix_web::http::StatusCode;
use actix_web::{guard, web, HttpResponse};
use serde::Serialize;
use serde_json::json;

use super::error::{method_not_allowed, pretty_json};
use super::openapi;

pub fn routes(cfg: &mut web::ServiceConfig) {
    openapi::description_routes(cfg, || openapi::MANAGEMENT);
    endpoints(cfg);
}

/// The API's own paths, without its description (a listener serving both APIs has its own).
pub fn endpoints(cfg: &mut web::ServiceConfig) {
    cfg.route("/token", web::route().to(token::rotate))
    .service(
        web::resource("/models")
            .route(web::get().to(models::list))
            .route(web::post().to(register::register))
            .route(web::route().to(method_not_allowed)),
    )
    .service(
        web::resource(["/models/{model}", "/models/{model}/{version}"])
            .route(web::get().to(models::describe))
            .route(web::put().to(workers::scale))
            .route(web::delete().to(models::unregister))
            .route(web::route().guard(guard::Options()).to(|| openapi::describe(|| openapi::MANAGEMENT)))
            .route(web::route().to(method_not_allowed)),
    )
    .service(
        web::resource("/models/{model}/{version}/set-default")
            .route(web::put().to(models::set_default))
            .route(web::route().to(method_not_allowed)),
    )
    .service(
        web::resource("/workflows")
            .route(web::get().to(workflows::list))
            .route(web::post().to(workflows::register))
            .route(web::route().to(method_not_allowed)),
    )
    .service(
        web::resource("/workflows/{name}")
            .route(web::get().to(workflows::describe))
            .route(web::delete().to(workflows::unregister))
            .route(web::route().to(method_not_allowed)),
    )
    .service(
        web::resource("/v1/models/{model}")
            .route(web::get().to(models::kserve_readiness))
            .route(web::route().to(method_not_allowed)),
    );
}

/// TorchServe's `{"status": "..."}` answer.
fn status(code: StatusCode, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(code)
        .content_type("application/json")
        .body(pretty_json(&json!({ "status": message.into() })))
}

fn json_response(value: &impl Serialize) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(pretty_json(value))
}
