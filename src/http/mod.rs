//! The HTTP side: actix-web listeners that turn requests into typed actor messages. Nothing here
//! touches libtorch; handlers parse, route through the Supervisor and await a reply with a
//! deadline.

mod disconnect;
mod error;
mod inference;
mod payload;

use actix::Addr;
use actix_web::dev::Server;
use actix_web::{middleware, web, App, HttpServer};

pub use error::ApiError;

use crate::actors::Supervisor;
use crate::config::Config;

/// What every HTTP handler shares: cheap handles only.
pub struct AppState {
    pub supervisor: Addr<Supervisor>,
    /// Largest request body accepted, in bytes.
    pub max_request_size: usize,
}

/// Binds the inference listener and returns the running server and the address it bound (port 0
/// in the config picks a free port, which is how the tests run servers side by side).
pub fn bind_inference(
    config: &Config,
    supervisor: Addr<Supervisor>,
) -> std::io::Result<(Server, Vec<std::net::SocketAddr>)> {
    let state = web::Data::new(AppState {
        supervisor,
        max_request_size: config.max_request_size,
    });
    let address = &config.inference_address;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(torchserve_headers())
            .wrap(middleware::from_fn(error::with_request_id))
            .configure(inference::routes)
            .default_service(web::to(error::resource_not_found))
    })
    .on_connect(disconnect::remember_socket)
    .workers(std::thread::available_parallelism().map_or(2, |n| n.get()))
    // The server module owns SIGTERM/SIGINT, installed before the port is announced.
    .disable_signals()
    .bind((address.host.as_str(), address.port))?;
    let addrs = server.addrs();
    Ok((server.run(), addrs))
}

/// The cache headers TorchServe puts on every response.
fn torchserve_headers() -> middleware::DefaultHeaders {
    middleware::DefaultHeaders::new()
        .add(("Pragma", "no-cache"))
        .add(("Cache-Control", "no-cache; no-store, must-revalidate, private"))
        .add(("Expires", "Thu, 01 Jan 1970 00:00:00 UTC"))
}
