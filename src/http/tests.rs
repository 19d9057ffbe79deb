//! The HTTP handlers in-process (`actix_web::test`), over a model service with no models:
//! routing, TorchServe's error bodies and the API descriptions, without a server process.

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{test, web};
use serde_json::Value;

use super::inference::routes as inference_routes;
use super::management::routes as management_routes;
use super::{app, AppState};
use crate::config::Config;
use crate::service::Models;

fn models(store: &std::path::Path) -> Models {
    let properties = BTreeMap::from([
        ("enable_model_api".to_string(), "true".to_string()),
        ("model_store".to_string(), store.display().to_string()),
    ]);
    let config = Config::from_properties(&properties, 0).unwrap();
    Models::start(Arc::new(config), None, crate::metrics::Metrics::new(crate::metrics::MetricsSettings {
        mode: crate::metrics::Mode::Prometheus,
        definitions: crate::metrics::definitions::MetricsConfig::default_list(),
        auto_detect: false,
        hostname: "test".into(),
    }))
}

async fn call(
    routes: fn(&mut web::ServiceConfig),
    method: &str,
    uri: &str,
) -> (StatusCode, Value) {
    let store = tempfile::tempdir().unwrap();
    let state = web::Data::new(AppState::new(models(store.path()), super::Api::Inference, None));
    let service = test::init_service(app(state, routes)).await;
    let request = test::TestRequest::default()
        .method(method.parse().unwrap())
        .uri(uri)
        .to_request();
    let response = test::call_service(&service, request).await;
    let status = response.status();
    let body = test::read_body(response).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn error_type(body: &Value) -> &str {
    body["type"].as_str().unwrap_or_default()
}

#[actix_web::test]
async fn the_api_description_is_on_options_root_and_api_description() {
    for routes in [inference_routes, management_routes] {
        let (status, body) = call(routes, "OPTIONS", "/").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["openapi"], "3.0.1");
        let (status, body) = call(routes, "GET", "/api-description").await;
        assert_eq!((status, body["openapi"].as_str()), (StatusCode::OK, Some("3.0.1")));
        let (status, body) = call(routes, "GET", "/").await;
        assert_eq!((status, error_type(&body)), (StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowedException"));
    }
}

#[actix_web::test]
async fn ping_without_models_is_healthy_with_or_without_a_trailing_slash() {
    for uri in ["/ping", "/ping/"] {
        let (status, body) = call(inference_routes, "GET", uri).await;
        assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("Healthy")), "{uri}");
    }
}

#[actix_web::test]
async fn unknown_models_and_paths_get_torchserve_errors() {
    let (status, body) = call(inference_routes, "POST", "/predictions/nope").await;
    assert_eq!((status, error_type(&body)), (StatusCode::NOT_FOUND, "ModelNotFoundException"));
    let (status, body) = call(management_routes, "GET", "/models/nope/").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["message"], "Model not found: nope");
    assert_eq!(body["code"], 404);
    let (status, body) = call(management_routes, "GET", "/no/such/thing").await;
    assert_eq!((status, error_type(&body)), (StatusCode::NOT_FOUND, "ResourceNotFoundException"));
}

#[actix_web::test]
async fn register_parameters_are_checked_as_torchserve_does() {
    let (status, body) = call(management_routes, "POST", "/models").await;
    assert_eq!((status, body["message"].as_str()), (StatusCode::BAD_REQUEST, Some("Parameter url is required.")));
    let (status, body) = call(management_routes, "POST", "/models?url=").await;
    assert_eq!((status, error_type(&body)), (StatusCode::NOT_FOUND, "ModelNotFoundException"));
    assert_eq!(body["message"], "empty url");
    let (status, body) = call(management_routes, "POST", "/models?url=m.mar&runtime=java").await;
    assert_eq!((status, body["message"].as_str()), (StatusCode::BAD_REQUEST, Some("Invalid RuntimeType value: java")));
    let (status, body) = call(management_routes, "POST", "/models?url=missing.mar").await;
    assert_eq!((status, body["message"].as_str()), (StatusCode::NOT_FOUND, Some("Model not found at: missing.mar")));
}

#[actix_web::test]
async fn the_model_list_starts_empty() {
    let (status, body) = call(management_routes, "GET", "/models/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, serde_json::json!({"models": []}));
}
