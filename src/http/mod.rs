//! The HTTP side: actix-web listeners whose handlers parse requests into typed inputs and call
//! the model service ([`crate::service::Models`]). Nothing here touches actors or libtorch.

mod access;
mod disconnect;
mod error;
mod inference;
mod management;
mod metrics;
mod openapi;
mod payload;
mod trailing_slash;

use actix_web::dev::Server;
use actix_web::{middleware, web, App, HttpServer};

pub use error::ApiError;
use payload::BodyLimits;

use std::sync::Arc;

use crate::config::{Config, ListenAddress};
use crate::metrics::Metrics;
use crate::service::Models;

/// What every HTTP handler shares: cheap handles only.
pub struct AppState {
    pub models: Models,
    pub metrics: Arc<Metrics>,
    pub body_limits: BodyLimits,
    /// Whether register and unregister are allowed.
    pub enable_model_api: bool,
}

impl AppState {
    pub fn new(models: Models) -> Self {
        let config: &Config = models.config();
        let body_limits = BodyLimits {
            max_bytes: config.max_request_size,
            deadline: config.request_read_timeout,
        };
        let enable_model_api = config.enable_model_api;
        Self {
            metrics: models.metrics().clone(),
            models,
            body_limits,
            enable_model_api,
        }
    }
}

/// A bound listener: the running server and the addresses it bound (port 0 in the config picks
/// a free port, which is how the tests run servers side by side).
pub struct Listener {
    pub server: Server,
    pub addresses: Vec<std::net::SocketAddr>,
}

/// The inference API: `/ping`, `/predictions`.
pub fn bind_inference(models: &Models) -> std::io::Result<Listener> {
    bind(models, &models.config().inference_address, inference::routes)
}

/// The management API: `/models`, KServe readiness, the API description.
pub fn bind_management(models: &Models) -> std::io::Result<Listener> {
    bind(models, &models.config().management_address, management::routes)
}

/// The metrics API: `/metrics`.
pub fn bind_metrics(models: &Models) -> std::io::Result<Listener> {
    bind(models, &models.config().metrics_address, metrics::routes)
}

/// The routes of one API, for a listener or an in-process test service.
pub fn app(
    state: web::Data<AppState>,
    routes: fn(&mut web::ServiceConfig),
) -> App<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let max_bytes = state.body_limits.max_bytes;
    App::new()
        .app_data(state)
        .app_data(web::PayloadConfig::new(max_bytes))
        .wrap(torchserve_headers())
        .wrap(middleware::from_fn(error::with_request_id))
        .wrap(middleware::from_fn(access::record))
        .wrap(middleware::from_fn(trailing_slash::trim))
        .configure(routes)
        .default_service(web::to(error::resource_not_found))
}


fn bind(models: &Models, address: &ListenAddress, routes: fn(&mut web::ServiceConfig)) -> std::io::Result<Listener> {
    let state = web::Data::new(AppState::new(models.clone()));
    let threads = models.config().http_threads;
    let server = HttpServer::new(move || app(state.clone(), routes))
        .on_connect(disconnect::remember_socket)
        .workers(threads)
        // The server module owns SIGTERM/SIGINT, installed before the port is announced.
        .disable_signals()
        .bind((address.host.as_str(), address.port))?;
    let addresses = server.addrs();
    Ok(Listener {
        server: server.run(),
        addresses,
    })
}

/// The cache headers TorchServe puts on every response.
fn torchserve_headers() -> middleware::DefaultHeaders {
    middleware::DefaultHeaders::new()
        .add(("Pragma", "no-cache"))
        .add(("Cache-Control", "no-cache; no-store, must-revalidate, private"))
        .add(("Expires", "Thu, 01 Jan 1970 00:00:00 UTC"))
}

#[cfg(test)]
mod tests;
