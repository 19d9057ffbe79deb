//! Token authorization on the inference and management listeners: every request but the API
//! description (`OPTIONS /`, `/api-description`) must carry its API's key, as in TorchServe
//! 0.12; the metrics listener needs none. `/token` checks the API key itself.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, ResponseError};

use super::{Api, ApiError, AppState};
use crate::auth::TokenKind;

pub async fn check(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    let needed = request
        .app_data::<web::Data<AppState>>()
        .and_then(|state| Some((state.tokens.clone()?, state.api)))
        // The percent-decoded path, as the router sees it: on a listener serving both APIs,
        // `/%6Dodels` must need the management key, since it routes to `/models`.
        .and_then(|(tokens, api)| Some((tokens, key_for(api, request.method(), request.match_info().as_str())?)));
    if let Some((tokens, kind)) = needed {
        let header = request.headers().get("Authorization").and_then(|v| v.to_str().ok());
        if !tokens.check(kind, header) {
            let response = ApiError::InvalidKey.error_response();
            return Ok(request.into_response(response).map_into_right_body());
        }
    }
    Ok(next.call(request).await?.map_into_left_body())
}

/// The key a request needs on a listener of `api`; `None` when it needs none.
fn key_for(api: Api, method: &Method, path: &str) -> Option<TokenKind> {
    let description = (path == "/" && method == Method::OPTIONS) || path == "/api-description";
    if description || path == "/token" {
        return None;
    }
    match api {
        Api::Inference => Some(TokenKind::Inference),
        Api::Management => Some(TokenKind::Management),
        Api::Both if is_management_path(method, path) => Some(TokenKind::Management),
        Api::Both => Some(TokenKind::Inference),
        Api::Metrics => None,
    }
}

/// On a listener serving both APIs: which requests are management's.
fn is_management_path(method: &Method, path: &str) -> bool {
    // SageMaker's `/models/{model}/invoke` is a prediction.
    let invoke = path.strip_prefix("/models/").and_then(|rest| rest.strip_suffix("/invoke")).is_some_and(|m| !m.contains('/'));
    path == "/models"
        || (path.starts_with("/models/") && !invoke)
        || path == "/workflows"
        || path.starts_with("/workflows/")
        || (method == Method::GET && path.starts_with("/v1/models/") && !path.contains(':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_listener_asks_for_its_own_key() {
        assert_eq!(key_for(Api::Inference, &Method::GET, "/ping"), Some(TokenKind::Inference));
        assert_eq!(key_for(Api::Inference, &Method::OPTIONS, "/"), None);
        assert_eq!(key_for(Api::Inference, &Method::GET, "/"), Some(TokenKind::Inference));
        assert_eq!(key_for(Api::Management, &Method::GET, "/api-description"), None);
        assert_eq!(key_for(Api::Management, &Method::GET, "/models"), Some(TokenKind::Management));
        assert_eq!(key_for(Api::Management, &Method::GET, "/token"), None, "checked by /token itself");
        assert_eq!(key_for(Api::Metrics, &Method::GET, "/metrics"), None);
        assert_eq!(key_for(Api::Both, &Method::GET, "/models/mlp"), Some(TokenKind::Management));
        assert_eq!(key_for(Api::Both, &Method::POST, "/predictions/mlp"), Some(TokenKind::Inference));
        assert_eq!(key_for(Api::Both, &Method::GET, "/workflows/wf"), Some(TokenKind::Management));
        assert_eq!(key_for(Api::Both, &Method::POST, "/wfpredict/wf"), Some(TokenKind::Inference));
        assert_eq!(key_for(Api::Both, &Method::POST, "/models/mlp/invoke"), Some(TokenKind::Inference));
        assert_eq!(key_for(Api::Both, &Method::POST, "/invocations"), Some(TokenKind::Inference));
    }
}
