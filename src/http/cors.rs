//! CORS, as TorchServe's keys configure it: each of `cors_allowed_origin`,
//! `cors_allowed_methods` and `cors_allowed_headers` that is set becomes its
//! `Access-Control-Allow-*` header on every response; a preflight (`OPTIONS` with
//! `Access-Control-Request-Method`) is answered 200 with them, before any token check, since
//! browsers send no credentials on it.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};

use super::AppState;
use crate::config::Cors;

pub async fn apply(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    // Looked at before it is cloned: with CORS off (the default) a request pays nothing here.
    let cors = request
        .app_data::<web::Data<AppState>>()
        .filter(|state| state.cors.enabled())
        .map(|state| state.cors.clone());
    let Some(cors) = cors else {
        return Ok(next.call(request).await?.map_into_left_body());
    };
    let preflight = request.method() == Method::OPTIONS && request.headers().contains_key("access-control-request-method");
    if preflight {
        let mut response = HttpResponse::Ok().finish();
        add_headers(response.headers_mut(), &cors);
        return Ok(request.into_response(response).map_into_right_body());
    }
    let mut response = next.call(request).await?;
    add_headers(response.headers_mut(), &cors);
    Ok(response.map_into_left_body())
}

fn add_headers(headers: &mut HeaderMap, cors: &Cors) {
    let pairs = [
        ("access-control-allow-origin", &cors.allowed_origin),
        ("access-control-allow-methods", &cors.allowed_methods),
        ("access-control-allow-headers", &cors.allowed_headers),
    ];
    for (name, value) in pairs {
        if let Some(value) = value.as_deref().and_then(|v| HeaderValue::from_str(v).ok()) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
}
