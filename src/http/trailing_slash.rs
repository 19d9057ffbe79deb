//! TorchServe accepts a trailing slash (`DELETE /models/name/?synchronous=true`): such a path is
//! routed as if it had none. (actix-web's `NormalizePath` runs a regex over every path; this
//! looks at the last byte and rewrites only the rare path that needs it.)

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Uri;
use actix_web::middleware::Next;

pub async fn trim(
    mut request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let path = request.path();
    if path.len() > 1 && path.ends_with('/') {
        let trimmed = path.trim_end_matches('/');
        let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
        let rewritten = match request.uri().query() {
            Some(query) => format!("{trimmed}?{query}"),
            None => trimmed.to_string(),
        };
        if let Ok(uri) = rewritten.parse::<Uri>() {
            request.head_mut().uri = uri.clone();
            request.match_info_mut().get_mut().update(&uri);
        }
    }
    next.call(request).await
}
