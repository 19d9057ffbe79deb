//! The metrics API (`metrics_address`, default 127.0.0.1:8082): `GET /metrics` in Prometheus
//! text format 0.0.4, optionally only the families named by `?name[]=`; the API description on
//! `OPTIONS /` and `/api-description`. No token is needed here, as in TorchServe.

use actix_web::{web, HttpRequest, HttpResponse};

use super::error::method_not_allowed;
use super::{openapi, AppState};

pub fn routes(cfg: &mut web::ServiceConfig) {
    openapi::description_routes(cfg, || openapi::METRICS);
    cfg.service(
        web::resource("/metrics")
            .route(web::get().to(metrics))
            .route(web::route().to(method_not_allowed)),
    );
}

async fn metrics(request: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let names: Vec<String> = web::Query::<Vec<(String, String)>>::from_query(request.query_string())
        .map(web::Query::into_inner)
        .unwrap_or_default()
        .into_iter()
        .filter(|(key, _)| key == "name[]")
        .map(|(_, value)| value)
        .collect();
    let models = state.models.clone();
    // Reading every series is quick but not free: off the async thread.
    let page = web::block(move || models.metrics_page(&names)).await.unwrap_or_default();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(page)
}
