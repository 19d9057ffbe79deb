//! Reads a prediction's input from the request, as TorchServe's handlers see it: a multipart
//! form's `data` field (or `body`, or the first field), or else the whole raw body. Every read
//! stops at `max_request_size`.

use actix_multipart::Multipart;
use actix_web::http::header;
use actix_web::{web, HttpRequest};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};

use super::ApiError;

pub async fn read_input(
    request: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    let is_multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let input = if is_multipart {
        read_form_field(request, payload, limit).await?
    } else {
        read_limited(payload, limit).await?
    };
    if input.is_empty() {
        return Err(ApiError::BadRequest(
            "Request has no input: send it as the body or as form field \"data\".".into(),
        ));
    }
    Ok(input)
}

async fn read_limited<E: std::fmt::Display>(
    mut stream: impl Stream<Item = Result<Bytes, E>> + Unpin,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let mut body = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::BadRequest(format!("cannot read request body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// The form field TorchServe's handlers read: `data`, then `body`, then whatever comes first.
async fn read_form_field(
    request: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let mut form = Multipart::new(request.headers(), payload);
    let mut chosen: Option<(u8, Bytes)> = None;
    let mut total = 0usize;
    while let Some(field) = form.next().await {
        let field = field.map_err(|e| ApiError::BadRequest(format!("invalid multipart form: {e}")))?;
        let rank = match field.name() {
            Some("data") => 0,
            Some("body") => 1,
            _ => 2,
        };
        let content = read_limited(field, limit - total).await?;
        total += content.len();
        if chosen.as_ref().map_or(true, |(best, _)| rank < *best) {
            chosen = Some((rank, content));
        }
    }
    Ok(chosen.map(|(_, content)| content).unwrap_or_default())
}
