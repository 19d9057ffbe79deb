//! The HTTP side: actix-web listeners whose handlers parse requests into typed inputs and call
//! the model service ([`crate::service::Models`]). Nothing here touches actors or libtorch.

mod access;
mod auth;
mod cloud;
mod cors;
mod disconnect;
mod error;
mod idle;
mod inference;
mod kserve;
mod management;
mod metrics;
mod oip;
mod openapi;
mod payload;
mod tls;
mod trailing_slash;

use actix_web::dev::Server;
use actix_web::http::KeepAlive;
use actix_web::{middleware, web, App, HttpServer};

pub use error::ApiError;
use payload::BodyLimits;

use std::sync::Arc;

use crate::auth::Tokens;
use crate::config::{Config, Cors, ListenAddress};
use crate::metrics::Metrics;
use crate::service::Models;

/// Which API a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    Inference,
    Management,
    /// One listener for both, when their addresses are equal (TorchServe's behaviour).
    Both,
    Metrics,
}

/// What every HTTP handler shares: cheap handles only.
pub struct AppState {
    pub models: Models,
    pub metrics: Arc<Metrics>,
    pub body_limits: BodyLimits,
    /// Whether register and unregister are allowed.
    pub enable_model_api: bool,
    pub api: Api,
    /// The keys requests must carry; `None` with token authorization off.
    pub tokens: Option<Arc<Tokens>>,
    pub cors: Cors,
}

impl AppState {
    pub fn new(models: Models, api: Api, tokens: Option<Arc<Tokens>>) -> Self {
        let config: &Config = models.config();
        let body_limits = BodyLimits {
            max_bytes: config.listeners.max_request_size,
            deadline: config.listeners.request_read_timeout,
        };
        let (enable_model_api, cors) = (config.security.enable_model_api, config.security.cors.clone());
        Self {
            metrics: models.metrics().clone(),
            models,
            body_limits,
            enable_model_api,
            api,
            tokens,
            cors,
        }
    }
}

/// A bound listener: the running server and the addresses it bound (port 0 in the config picks
/// a free port, which is how the tests run servers side by side).
pub struct Listener {
    pub server: Server,
    pub addresses: Vec<std::net::SocketAddr>,
    /// `http` or `https`.
    pub scheme: &'static str,
}

/// Binds the listener of `api` where the config says.
pub fn bind_api(models: &Models, api: Api, tokens: Option<Arc<Tokens>>) -> Result<Listener, String> {
    let config = models.config();
    let (address, routes): (&ListenAddress, fn(&mut web::ServiceConfig)) = match api {
        Api::Inference => (&config.listeners.inference, inference::routes),
        Api::Management => (&config.listeners.management, management::routes),
        Api::Both => (&config.listeners.inference, both_routes),
        Api::Metrics => (&config.listeners.metrics, metrics::routes),
    };
    bind(models, address, api, routes, tokens)
}

/// Both APIs on one listener; its API description covers both.
fn both_routes(cfg: &mut web::ServiceConfig) {
    openapi::description_routes(cfg, openapi::both);
    inference::endpoints(cfg);
    management::endpoints(cfg);
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
    // Outermost last: every request counts as activity on its connection (`idle`); the path is
    // normalised first; a CORS preflight is answered before any token check; every response,
    // refusals included, is logged and counted.
    App::new()
        .app_data(state)
        .app_data(web::PayloadConfig::new(max_bytes))
        .wrap(middleware::from_fn(auth::check))
        .wrap(torchserve_headers())
        .wrap(middleware::from_fn(error::with_request_id))
        .wrap(middleware::from_fn(access::record))
        .wrap(middleware::from_fn(cors::apply))
        .wrap(middleware::from_fn(trailing_slash::trim))
        .wrap(middleware::from_fn(idle::track))
        .configure(routes)
        .default_service(web::to(error::resource_not_found))
}

fn bind(
    models: &Models,
    address: &ListenAddress,
    api: Api,
    routes: fn(&mut web::ServiceConfig),
    tokens: Option<Arc<Tokens>>,
) -> Result<Listener, String> {
    let tokens = if api == Api::Metrics { None } else { tokens };
    let state = web::Data::new(AppState::new(models.clone(), api, tokens));
    let threads = models.config().listeners.http_threads;
    let server = HttpServer::new(move || app(state.clone(), routes))
        .on_connect(disconnect::remember_socket)
        // actix-web's keep-alive and head timers count a paused process's pause against its
        // clients: idle connections are closed by `idle` instead, which does not.
        .keep_alive(KeepAlive::Os)
        .client_request_timeout(std::time::Duration::ZERO)
        .workers(threads)
        // The server module owns SIGTERM/SIGINT, installed before the port is announced.
        .disable_signals();
    let cannot_listen = |e: std::io::Error| format!("cannot listen on {address}: {e}");
    let server = if address.tls {
        let tls = tls::server_config(&models.config().security.tls, &address.host)?;
        server
            .bind_rustls_0_23((address.host.as_str(), address.port), Arc::unwrap_or_clone(tls))
            .map_err(cannot_listen)?
    } else {
        server.bind((address.host.as_str(), address.port)).map_err(cannot_listen)?
    };
    let addresses = server.addrs();
    Ok(Listener {
        server: server.run(),
        addresses,
        scheme: if address.tls { "https" } else { "http" },
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
