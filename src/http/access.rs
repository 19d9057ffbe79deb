//! What TorchServe does for every response on every listener: a line in the access log,
//! `/ip:port "METHOD URI HTTP/1.1" status ms`, and a count in `Requests2XX`/`4XX`/`5XX`.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;

use super::AppState;
use crate::logging::ACCESS_LOG;

pub async fn record(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let metrics = request.app_data::<web::Data<AppState>>().map(|state| state.metrics.clone());
    // Only read what the line needs when the line will be written.
    let line_head = log::log_enabled!(target: ACCESS_LOG, log::Level::Info).then(|| {
        let peer = request
            .peer_addr()
            .map_or_else(|| "unknown".to_string(), |peer| format!("/{}:{}", peer.ip(), peer.port()));
        format!("{peer} \"{} {} {:?}\"", request.method(), request.uri(), request.version())
    });
    let response = next.call(request).await?;
    let status = response.status().as_u16();
    if let Some(head) = line_head {
        log::info!(target: ACCESS_LOG, "{head} {status} {}", started.elapsed().as_millis());
    }
    if let Some(metrics) = metrics {
        metrics.response(status);
    }
    Ok(response)
}
