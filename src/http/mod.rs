//! The HTTP side: actix-web listeners that turn requests into typed actor messages. Nothing here
//! touches libtorch; handlers parse, route through the Supervisor and await a reply with a
//! deadline.

mod disconnect;
mod error;
mod inference;
mod management;
mod openapi;
mod payload;

use std::sync::Arc;

use actix::Addr;
use actix_web::dev::Server;
use actix_web::{middleware, web, App, HttpServer};

pub use error::ApiError;

use crate::actors::Supervisor;
use crate::config::Config;

/// What every HTTP handler shares: cheap handles only.
pub struct AppState {
    pub supervisor: Addr<Supervisor>,
    pub config: Arc<Config>,
    /// Largest request body accepted, in bytes.
    pub max_request_size: usize,
}

/// A bound listener: the running server and the addresses it bound (port 0 in the config picks
/// a free port, which is how the tests run servers side by side).
pub struct Listener {
    pub server: Server,
    pub addresses: Vec<std::net::SocketAddr>,
}

/// The inference API: `/ping`, `/predictions`.
pub fn bind_inference(config: &Arc<Config>, supervisor: Addr<Supervisor>) -> std::io::Result<Listener> {
    bind(config, supervisor, &config.inference_address, inference::routes)
}

/// The management API: `/models`, KServe readiness, the API description.
pub fn bind_management(config: &Arc<Config>, supervisor: Addr<Supervisor>) -> std::io::Result<Listener> {
    bind(config, supervisor, &config.management_address, management::routes)
}

fn bind(
    config: &Arc<Config>,
    supervisor: Addr<Supervisor>,
    address: &crate::config::ListenAddress,
    routes: fn(&mut web::ServiceConfig),
) -> std::io::Result<Listener> {
    let state = web::Data::new(AppState {
        supervisor,
        config: config.clone(),
        max_request_size: config.max_request_size,
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(state.max_request_size))
            .wrap(torchserve_headers())
            .wrap(middleware::from_fn(error::with_request_id))
            .configure(routes)
            .default_service(web::to(error::resource_not_found))
    })
    .on_connect(disconnect::remember_socket)
    .workers(std::thread::available_parallelism().map_or(2, |n| n.get()))
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
