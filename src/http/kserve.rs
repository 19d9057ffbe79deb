//! KServe's v1 protocol on the inference listener: `POST /v1/models/{model}:predict` with
//! `{"instances": [...]}` (or `{"inputs": [...]}`), `:explain`, and `GET /v1/models/{model}`
//! readiness. For
//! a native model the instances are its rows: stacked into one tensor (`torch.as_tensor`'s
//! dtypes), run through one `forward`, the output's rows are the predictions. A Python handler
//! gets the body as `/predictions` would give it, as TorchServe does (its `kserve` envelope reads
//! the instances and shapes the answer). `:explain` is TorchServe's: the request goes to a
//! Python handler with the header `explain: True` (BaseHandler then explains; the `kserve`
//! envelope answers `{"explanations": ...}`); native models have no explainer yet (501). Errors
//! keep TorchServe's shape, as TorchServe answers them on these routes.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::error::{method_not_allowed, pretty_json};
use super::inference::{invalid_output, output_tensors, respond, run};
use super::{payload, ApiError, AppState};
use crate::request::InferenceRequest;
use crate::service::Target;
use crate::tensor::TensorData;

pub fn endpoints(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/v1/models/{model}:predict")
            .route(web::post().to(predict))
            .route(web::route().to(method_not_allowed)),
    )
    .service(
        web::resource("/v1/models/{model}:explain")
            .route(web::post().to(explain))
            .route(web::route().to(method_not_allowed)),
    )
    .service(
        web::resource("/v1/models/{model}")
            .route(web::get().to(readiness))
            .route(web::route().to(method_not_allowed)),
    );
}

/// The rows a v1 body holds: its `instances`, else its `inputs`, as one tensor.
pub fn instances(body: &[u8]) -> Result<TensorData, String> {
    let body: Value = serde_json::from_slice(body).map_err(|e| format!("request body is not valid JSON: {e}"))?;
    let rows = body
        .get("instances")
        .or_else(|| body.get("inputs"))
        .ok_or("expected a JSON object with \"instances\" (or \"inputs\")")?;
    if !rows.is_array() {
        return Err("\"instances\" must be a list".into());
    }
    TensorData::from_nested("instances", rows)
}

/// The answer for a model's output tensors: the first output's rows.
pub fn predictions(outputs: &[TensorData]) -> Result<Value, String> {
    let first = outputs.first().ok_or("the model returned no tensor")?;
    Ok(json!({ "predictions": first.to_nested_json()? }))
}

async fn predict(
    request: HttpRequest,
    target: web::Path<Target>,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    predict_instances(&request, &target, body, &state).await
}

/// A v1 prediction of `target`, for `:predict` and for Vertex AI's predict route.
pub(super) async fn predict_instances(
    request: &HttpRequest,
    target: &Target,
    body: web::Payload,
    state: &AppState,
) -> Result<HttpResponse, ApiError> {
    let info = state.models.model_info(target)?;
    let input = payload::read_request(request, body, state.body_limits).await?;
    let request_id = input.id.clone();
    if !info.native {
        let prediction = run(request, state, target, input).await?;
        return Ok(respond(prediction, &request_id));
    }
    let rows = instances(input.input()).map_err(ApiError::BadRequest)?;
    let typed = InferenceRequest {
        tensors: Some(vec![rows]),
        parameters: Vec::new(),
        ..input
    };
    let prediction = run(request, state, target, typed).await?;
    let answer = predictions(&output_tensors(prediction)?).map_err(invalid_output)?;
    Ok(HttpResponse::Ok()
        .insert_header(("x-request-id", request_id))
        .content_type("application/json")
        .body(pretty_json(&answer)))
}

/// `:explain`: TorchServe's explanations ([`super::inference::explain`]).
async fn explain(
    request: HttpRequest,
    target: web::Path<Target>,
    body: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    super::inference::explain(&request, &target, body, &state).await
}

/// `{"name", "ready"}`: 200 when the default version has a ready worker, else 503, as KServe's
/// own servers answer (and its client reads).
async fn readiness(target: web::Path<Target>, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let info = state.models.model_info(&target)?;
    let status = if info.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    Ok(HttpResponse::build(status)
        .content_type("application/json")
        .body(pretty_json(&json!({ "name": info.name, "ready": info.ready }))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::DataType;

    #[test]
    fn instances_are_rows_of_one_tensor() {
        let rows = instances(br#"{"instances": [[1.5, 2], [3, 4]]}"#).unwrap();
        assert_eq!((rows.datatype, rows.shape.clone()), (DataType::Fp32, vec![2, 2]));
        let ints = instances(br#"{"inputs": [[1, 2]]}"#).unwrap();
        assert_eq!(ints.datatype, DataType::Int64);
        assert!(instances(br#"{"rows": []}"#).unwrap_err().contains("instances"));
        assert!(instances(br#"{"instances": 3}"#).is_err());
        assert!(instances(b"nope").is_err());
    }

    #[test]
    fn predictions_are_the_first_outputs_rows() {
        let out = TensorData::from_json("output__0", DataType::Fp32, vec![2, 1], &json!([0.5, 1.5])).unwrap();
        assert_eq!(predictions(&[out]).unwrap(), json!({"predictions": [[0.5], [1.5]]}));
        assert!(predictions(&[]).is_err());
    }
}
