//! What TorchServe does for every response on every listener: a line in the access log,
//! `/ip:port "METHOD URI HTTP/1.1" status ms`, and a count in `Requests2XX`/`4XX`/`5XX`.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;

use super::AppState;
use crate::logging::layout::Peer;
use crate::logging::ACCESS_LOG;

pub async fn record(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let metrics = request.app_data::<web::Data<AppState>>().map(|state| state.metrics.clone());
    // Only keep what the line needs when the line will be written; it is formatted once, at
    // the end (the parts are cheap to hold: an address, and a method and URI that share their
    // bytes with the request).
    let line_parts = log::log_enabled!(target: ACCESS_LOG, log::Level::Info)
        .then(|| (request.peer_addr(), request.method().clone(), request.uri().clone(), request.version()));
    let response = next.call(request).await?;
    let status = response.status().as_u16();
    if let Some((peer, method, uri, version)) = line_parts {
        let took = started.elapsed().as_millis();
        log::info!(target: ACCESS_LOG, "{} \"{method} {uri} {version:?}\" {status} {took}", Peer(peer));
    }
    if let Some(metrics) = metrics {
        metrics.response(status);
    }
    Ok(response)
}

