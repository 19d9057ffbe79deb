//! `/token?type=management|inference` with the API key: a new key of that type, written to
//! `key_file.json`; 200 with an empty body, as TorchServe answers.

use actix_web::{web, HttpRequest, HttpResponse};

use super::params::Params;
use crate::auth::TokenKind;
use crate::http::{ApiError, AppState};

pub async fn rotate(request: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let Some(tokens) = state.tokens.clone() else {
        return Err(ApiError::ResourceNotFound);
    };
    let header = request.headers().get("Authorization").and_then(|v| v.to_str().ok());
    let kind = match Params::from_query(&request).text("type") {
        Some("management") => TokenKind::Management,
        Some("inference") => TokenKind::Inference,
        _ => return Err(ApiError::TokenApiRefused),
    };
    if !tokens.check(TokenKind::Api, header) {
        return Err(ApiError::TokenApiRefused);
    }
    web::block(move || tokens.rotate(kind))
        .await
        .map_err(|_| ApiError::TokenApiRefused)?
        .map_err(|e| {
            log::error!("Failed to update key file: {e}");
            ApiError::TokenApiRefused
        })?;
    Ok(HttpResponse::Ok().content_type("application/json").finish())
}
