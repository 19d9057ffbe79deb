//! Reads a prediction request into the [`InferenceRequest`] every backend sees, as TorchServe's
//! frontend does: each field of a multipart form becomes a named parameter with its own content
//! type; any other body becomes one parameter named `body`, with the request's content type. A
//! parameter's content type is the media type alone, without parameters (`application/json` for
//! `application/json; charset=utf-8`), as TorchServe's `HttpUtil.getMimeType` gives it: its Python
//! backend decodes JSON bodies by that exact string. The HTTP headers go along whole. Every read
//! stops at `max_request_size`, and the whole body must arrive within the read deadline, so a
//! client trickling bytes cannot hold a connection forever.

use std::time::Duration;

use actix_multipart::Multipart;
use actix_web::http::header;
use actix_web::{web, HttpRequest};
use bytes::{Bytes, BytesMut};
use futures_util::{Stream, StreamExt};

use super::ApiError;
use crate::request::{InferenceRequest, Parameter};

/// What a body read may take.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: usize,
    pub deadline: Duration,
}

/// Reads the whole prediction request.
pub async fn read_request(
    request: &HttpRequest,
    payload: web::Payload,
    limits: BodyLimits,
) -> Result<InferenceRequest, ApiError> {
    let parameters = within_deadline(limits, read_parameters(request, payload, limits.max_bytes)).await?;
    if parameters.iter().all(|p| p.value.is_empty() && p.name == "body") {
        return Err(ApiError::BadRequest(
            "Request has no input: send it as the body or as form field \"data\".".into(),
        ));
    }
    Ok(InferenceRequest {
        id: uuid::Uuid::new_v4().to_string(),
        headers: headers(request),
        parameters,
        tensors: None,
    })
}

/// The request's headers as every backend sees them, names in lower case.
pub fn headers(request: &HttpRequest) -> Vec<(String, String)> {
    request
        .headers()
        .iter()
        .filter_map(|(name, value)| Some((name.as_str().to_string(), value.to_str().ok()?.to_string())))
        .collect()
}

/// Reads a whole body (for JSON management requests), within the same limits.
pub async fn read_body(request: &HttpRequest, payload: web::Payload, limits: BodyLimits) -> Result<Bytes, ApiError> {
    check_declared_length(request, limits.max_bytes)?;
    within_deadline(limits, read_limited(payload, limits.max_bytes)).await
}

async fn within_deadline<T>(
    limits: BodyLimits,
    read: impl std::future::Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    tokio::time::timeout(limits.deadline, read)
        .await
        .map_err(|_| ApiError::BodyTimeout {
            seconds: limits.deadline.as_secs(),
        })?
}

fn check_declared_length(request: &HttpRequest, limit: usize) -> Result<(), ApiError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    Ok(())
}

async fn read_parameters(
    request: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<Vec<Parameter>, ApiError> {
    check_declared_length(request, limit)?;
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if content_type.as_deref().is_some_and(|v| v.starts_with("multipart/form-data")) {
        return read_form(request, payload, limit).await;
    }
    if content_type.as_deref().is_some_and(|v| v.starts_with("application/x-www-form-urlencoded")) {
        let body = read_limited(payload, limit).await?;
        return url_encoded_fields(&body, limit);
    }
    Ok(vec![Parameter {
        name: "body".into(),
        content_type: content_type.as_deref().map(media_type),
        value: read_limited(payload, limit).await?,
    }])
}

/// A content type's media type, its parameters dropped: what TorchServe passes its backend.
fn media_type(content_type: &str) -> String {
    content_type.split(';').next().unwrap_or_default().trim().to_string()
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

/// The fields of a `x-www-form-urlencoded` body, in order: each a parameter with no content
/// type, as TorchServe's decoder makes them. Bytes that are not UTF-8 decode to U+FFFD, three
/// bytes for one, so the decoded fields are held to the size limit too.
fn url_encoded_fields(body: &[u8], limit: usize) -> Result<Vec<Parameter>, ApiError> {
    let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid form body: {e}")))?;
    if fields.iter().map(|(name, value)| name.len() + value.len()).sum::<usize>() > limit {
        return Err(ApiError::PayloadTooLarge { limit });
    }
    Ok(fields
        .into_iter()
        .map(|(name, value)| Parameter {
            name,
            content_type: None,
            value: Bytes::from(value),
        })
        .collect())
}

/// Every field of a form, in order, each with its name and content type.
async fn read_form(request: &HttpRequest, payload: web::Payload, limit: usize) -> Result<Vec<Parameter>, ApiError> {
    let mut form = Multipart::new(request.headers(), payload);
    let mut parameters = Vec::new();
    let mut total = 0usize;
    while let Some(field) = form.next().await {
        let field = field.map_err(|e| ApiError::BadRequest(format!("invalid multipart form: {e}")))?;
        let name = field.name().unwrap_or_default().to_string();
        let content_type = field.content_type().map(|mime| mime.essence_str().to_string());
        let value = read_limited(field, limit - total).await?;
        total += value.len();
        parameters.push(Parameter {
            name,
            content_type,
            value,
        });
    }
    Ok(parameters)
}

#[cfg(test)]
mod arbitrary_input {
    //! Arbitrary bodies, and well-formed forms with arbitrary bytes overwritten, through the
    //! request reader with each content type it reads: each gives parameters within the size limit
    //! or an error, never a panic. `PROPTEST_CASES` raises the case count for a longer run.
    use super::*;
    use actix_web::test::TestRequest;
    use actix_web::FromRequest;
    use proptest::prelude::*;

    const LIMITS: BodyLimits = BodyLimits {
        max_bytes: 4096,
        deadline: Duration::from_secs(5),
    };

    const FORM: &[u8] = b"--XyZ\r\nContent-Disposition: form-data; name=\"data\"; filename=\"a.jpg\"\r\n\
        Content-Type: image/jpeg\r\n\r\n\xff\xd8\xff\xe0 some bytes\r\n--XyZ\r\n\
        Content-Disposition: form-data; name=\"extra\"\r\n\r\nplain text\r\n--XyZ--\r\n";

    const CONTENT_TYPES: &[&str] = &[
        "multipart/form-data; boundary=XyZ",
        "multipart/form-data",
        "multipart/form-data; boundary=\"\"",
        "application/x-www-form-urlencoded",
        "application/json",
    ];

    /// Reads `body` sent with `content_type` as a prediction request.
    fn read(content_type: &str, body: Vec<u8>) -> Result<InferenceRequest, ApiError> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        runtime.block_on(async move {
            let (request, mut payload) = TestRequest::post()
                .insert_header((header::CONTENT_TYPE, content_type))
                .set_payload(body)
                .to_http_parts();
            let payload = web::Payload::from_request(&request, &mut payload).await.unwrap();
            read_request(&request, payload, LIMITS).await
        })
    }

    fn within_limit(read: Result<InferenceRequest, ApiError>) -> Result<(), TestCaseError> {
        if let Ok(request) = read {
            let total: usize = request.parameters.iter().map(|p| p.value.len()).sum();
            prop_assert!(total <= LIMITS.max_bytes, "{} bytes read", total);
        }
        Ok(())
    }

    #[test]
    fn content_types_reach_backends_without_their_parameters() {
        assert_eq!(media_type("application/json; charset=utf-8"), "application/json");
        assert_eq!(media_type("text/plain;charset=utf-8"), "text/plain");
        assert_eq!(media_type("application/json"), "application/json");
        let request = read("application/json; charset=utf-8", b"[1]".to_vec()).unwrap();
        assert_eq!(request.parameters[0].content_type.as_deref(), Some("application/json"));
        let form = b"--XyZ\r\nContent-Disposition: form-data; name=\"data\"\r\n\
            Content-Type: application/json; charset=utf-8\r\n\r\n[1]\r\n--XyZ--\r\n";
        let request = read(CONTENT_TYPES[0], form.to_vec()).unwrap();
        assert_eq!(request.parameters[0].content_type.as_deref(), Some("application/json"));
    }

    #[test]
    fn the_undamaged_form_reads_into_its_fields() {
        let request = read(CONTENT_TYPES[0], FORM.to_vec()).unwrap();
        let fields: Vec<_> = request.parameters.iter().map(|p| (p.name.as_str(), p.content_type.as_deref())).collect();
        assert_eq!(fields, [("data", Some("image/jpeg")), ("extra", None)]);
        assert_eq!(&request.parameters[1].value[..], b"plain text");
    }

    proptest! {
        #![proptest_config(crate::property_tests::config())]
        #[test]
        fn arbitrary_bodies_never_panic(
            content_type in prop::sample::select(CONTENT_TYPES),
            body in prop::collection::vec(any::<u8>(), 0..6000),
        ) {
            within_limit(read(content_type, body))?;
        }

        #[test]
        fn damaged_forms_never_panic(edits in prop::collection::vec((any::<usize>(), any::<u8>()), 1..12)) {
            let mut body = FORM.to_vec();
            let len = body.len();
            for (at, value) in edits {
                body[at % len] = value;
            }
            within_limit(read(CONTENT_TYPES[0], body))?;
        }
    }
}
