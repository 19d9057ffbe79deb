//! `inference.GRPCInferenceService`: the Open Inference Protocol over gRPC, as Triton serves it.
//! A native model gets the request's tensors (typed `contents` or `raw_input_contents`) as its
//! `forward` arguments; a Python handler gets the request as TorchServe's frontend hands it on,
//! the OIP JSON body its `kservev2` envelope parses, and its JSON answer's outputs come back as
//! tensors. Outputs travel the way the inputs came: raw when the request used
//! `raw_input_contents` (or an output is FP16/BF16, which has no typed field), else typed.

use serde_json::{json, Value};
use tonic::{Request, Response, Status};

use super::call::{target, CallError, FrontDoor};
use super::contents::{from_contents, to_contents, to_raw};
use super::proto::grpc_inference_service_server::{GrpcInferenceService, GrpcInferenceServiceServer};
use super::proto::model_infer_response::InferOutputTensor;
use super::proto::model_metadata_response::TensorMetadata;
use super::proto::*;
use crate::error::{Code, ErrorCode};
use crate::handlers::ModelError;
use crate::request::{Body, InferenceRequest, Parameter};
use crate::service::{ModelInfo, ServiceError, Target};
use crate::tensor::{select_outputs, DataType, TensorData};

pub struct OpenInference {
    door: FrontDoor,
}

/// The service, taking messages up to `max_request_size`.
pub fn server(door: FrontDoor, max_request_size: usize) -> GrpcInferenceServiceServer<OpenInference> {
    GrpcInferenceServiceServer::new(OpenInference { door })
        .max_decoding_message_size(max_request_size)
        .max_encoding_message_size(usize::MAX)
}

#[tonic::async_trait]
impl GrpcInferenceService for OpenInference {
    async fn server_live(&self, request: Request<ServerLiveRequest>) -> Result<Response<ServerLiveResponse>, Status> {
        self.door
            .call("inference.GRPCInferenceService/ServerLive", request, |_| async {
                Ok(ServerLiveResponse { live: true })
            })
            .await
    }

    async fn server_ready(&self, request: Request<ServerReadyRequest>) -> Result<Response<ServerReadyResponse>, Status> {
        let models = self.door.models.clone();
        self.door
            .call("inference.GRPCInferenceService/ServerReady", request, |_| async move {
                Ok(ServerReadyResponse { ready: models.all_ready() })
            })
            .await
    }

    async fn model_ready(&self, request: Request<ModelReadyRequest>) -> Result<Response<ModelReadyResponse>, Status> {
        let models = self.door.models.clone();
        self.door
            .call("inference.GRPCInferenceService/ModelReady", request, |request| async move {
                // A model that is not there is not ready, as Triton answers (clients ask to poll).
                let ready = match models.model_info(&target(&request.name, &request.version, "name")?) {
                    Ok(info) => info.ready,
                    Err(e) if matches!(e.code(), Code::ModelNotFound | Code::VersionNotFound) => false,
                    Err(e) => return Err(e.into()),
                };
                Ok(ModelReadyResponse { ready })
            })
            .await
    }

    async fn server_metadata(
        &self,
        request: Request<ServerMetadataRequest>,
    ) -> Result<Response<ServerMetadataResponse>, Status> {
        self.door
            .call("inference.GRPCInferenceService/ServerMetadata", request, |_| async {
                Ok(ServerMetadataResponse {
                    name: "tserve".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    extensions: vec!["binary_tensor_data".into()],
                })
            })
            .await
    }

    async fn model_metadata(
        &self,
        request: Request<ModelMetadataRequest>,
    ) -> Result<Response<ModelMetadataResponse>, Status> {
        let models = self.door.models.clone();
        self.door
            .call("inference.GRPCInferenceService/ModelMetadata", request, |request| async move {
                let metadata = models.metadata(&target(&request.name, &request.version, "model_name")?).await?;
                let tensors = |list: Vec<crate::service::TensorMetadata>| {
                    let proto = |t: crate::service::TensorMetadata| TensorMetadata { name: t.name, datatype: t.datatype, shape: t.shape };
                    list.into_iter().map(proto).collect()
                };
                Ok(ModelMetadataResponse {
                    name: metadata.name,
                    versions: metadata.versions,
                    platform: metadata.platform.to_string(),
                    inputs: tensors(metadata.inputs),
                    outputs: tensors(metadata.outputs),
                })
            })
            .await
    }

    async fn model_infer(&self, request: Request<ModelInferRequest>) -> Result<Response<ModelInferResponse>, Status> {
        let door = self.door.clone();
        self.door
            .call("inference.GRPCInferenceService/ModelInfer", request, |request| infer(door, request))
            .await
    }
}

async fn infer(door: FrontDoor, request: ModelInferRequest) -> Result<ModelInferResponse, CallError> {
    let target = target(&request.model_name, &request.model_version, "model_name")?;
    let info = door.models.model_info(&target)?;
    let raw = !request.raw_input_contents.is_empty();
    let inputs = input_tensors(&request).map_err(CallError::bad_request)?;
    let request_id = uuid::Uuid::new_v4().to_string();
    let id = if request.id.is_empty() { request_id.clone() } else { request.id.clone() };
    let outputs = match info.native {
        true => {
            let input = InferenceRequest {
                id: request_id,
                tensors: Some(inputs),
                ..InferenceRequest::default()
            };
            door.models.predict_tensors(&target, input).await?
        }
        false => python_infer(&door, &target, &info, &id, request_id, inputs).await?,
    };
    let wanted: Vec<&str> = request.outputs.iter().map(|o| o.name.as_str()).collect();
    let outputs = select_outputs(outputs, (!wanted.is_empty()).then_some(wanted.as_slice()), &info.name)
        .map_err(CallError::bad_request)?;
    render(info, id, outputs, raw).map_err(invalid_output)
}

/// An answer the protocol cannot carry is the model's invalid output.
fn invalid_output(message: String) -> CallError {
    ServiceError::from(ModelError::InvalidOutput(message)).into()
}

/// The request's input tensors, from `raw_input_contents` (one entry per input) or each input's
/// typed contents, never both.
fn input_tensors(request: &ModelInferRequest) -> Result<Vec<TensorData>, String> {
    let raw = &request.raw_input_contents;
    if !raw.is_empty() && raw.len() != request.inputs.len() {
        return Err(format!(
            "raw_input_contents has {} entries for {} inputs",
            raw.len(),
            request.inputs.len()
        ));
    }
    request
        .inputs
        .iter()
        .enumerate()
        .map(|(index, input)| {
            let datatype = DataType::parse(&input.datatype)
                .ok_or_else(|| format!("input '{}': unknown datatype '{}'", input.name, input.datatype))?;
            match (raw.get(index), &input.contents) {
                (Some(_), Some(_)) => Err(format!(
                    "input '{}': contents and raw_input_contents are both set",
                    input.name
                )),
                (Some(bytes), None) => {
                    TensorData::from_binary(&input.name, datatype, input.shape.clone(), bytes::Bytes::copy_from_slice(bytes))
                }
                (None, contents) => {
                    from_contents(&input.name, datatype, input.shape.clone(), &contents.clone().unwrap_or_default())
                }
            }
        })
        .collect()
}

/// A Python handler's inference: the OIP JSON body TorchServe's frontend makes of a gRPC
/// request (flat `data`), and the output tensors of the `kservev2` answer.
async fn python_infer(
    door: &FrontDoor,
    target: &Target,
    info: &ModelInfo,
    id: &str,
    request_id: String,
    inputs: Vec<TensorData>,
) -> Result<Vec<TensorData>, CallError> {
    let inputs = inputs
        .iter()
        .map(|t| {
            Ok(json!({"name": t.name, "shape": t.shape, "datatype": t.datatype.name(), "data": t.to_json()?}))
        })
        .collect::<Result<Vec<Value>, String>>()
        .map_err(CallError::bad_request)?;
    let body = json!({"id": id, "model_name": info.name, "inputs": inputs});
    let input = InferenceRequest {
        id: request_id,
        parameters: vec![Parameter {
            name: "body".into(),
            content_type: Some("application/json".into()),
            value: bytes::Bytes::from(body.to_string()),
        }],
        ..InferenceRequest::default()
    };
    let prediction = door.models.predict(target, input).await?;
    let answer: Value = match prediction.body {
        Body::Json(value) => value,
        Body::Raw(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| invalid_output(format!("the handler's answer is not OIP JSON: {e}")))?,
        Body::Tensors(tensors) => return Ok(tensors),
    };
    python_outputs(&answer).map_err(invalid_output)
}

/// The `outputs` of a `kservev2` envelope's answer, as tensors.
fn python_outputs(answer: &Value) -> Result<Vec<TensorData>, String> {
    let outputs = answer
        .get("outputs")
        .and_then(Value::as_array)
        .ok_or("the handler's answer has no OIP \"outputs\" (is service_envelope=kservev2 set?)")?;
    outputs
        .iter()
        .map(|output| {
            let field = |key: &str| output.get(key).ok_or_else(|| format!("an output without \"{key}\""));
            let name = field("name")?.as_str().unwrap_or_default();
            let datatype = field("datatype")?.as_str().and_then(DataType::parse).ok_or("an output with an unknown datatype")?;
            let shape: Vec<i64> = serde_json::from_value(field("shape")?.clone()).map_err(|e| format!("output '{name}': shape {e}"))?;
            TensorData::from_json(name, datatype, shape, field("data")?)
        })
        .collect()
}

/// The response, each output raw or typed as the request's inputs came.
fn render(info: ModelInfo, id: String, outputs: Vec<TensorData>, raw_inputs: bool) -> Result<ModelInferResponse, String> {
    let raw = raw_inputs || outputs.iter().any(|o| matches!(o.datatype, DataType::Fp16 | DataType::Bf16));
    let mut response = ModelInferResponse {
        model_name: info.name,
        model_version: info.version,
        id,
        ..ModelInferResponse::default()
    };
    for output in &outputs {
        let contents = if raw {
            response.raw_output_contents.push(to_raw(output));
            None
        } else {
            to_contents(output)?
        };
        response.outputs.push(InferOutputTensor {
            name: output.name.clone(),
            datatype: output.datatype.name().to_string(),
            shape: output.shape.clone(),
            parameters: Default::default(),
            contents,
        });
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kservev2_answer_becomes_tensors() {
        let answer = json!({"id": "1", "model_name": "m", "model_version": "1.0", "outputs": [
            {"name": "input-0", "datatype": "FP32", "data": [1.0, 2.5], "shape": [2]},
            {"name": "labels", "datatype": "BYTES", "data": ["cat"], "shape": [1]},
        ]});
        let outputs = python_outputs(&answer).unwrap();
        assert_eq!(outputs[0].to_json().unwrap(), vec![json!(1.0), json!(2.5)]);
        assert_eq!(outputs[1].to_json().unwrap(), vec![json!("cat")]);
        let err = python_outputs(&json!({"predictions": [1]})).unwrap_err();
        assert!(err.contains("kservev2"), "{err}");
    }

    #[test]
    fn inputs_come_typed_or_raw_never_both() {
        let input = |contents| model_infer_request::InferInputTensor {
            name: "x".into(),
            datatype: "FP32".into(),
            shape: vec![1, 2],
            parameters: Default::default(),
            contents,
        };
        let typed = InferTensorContents { fp32_contents: vec![1.0, 2.0], ..Default::default() };
        let mut request = ModelInferRequest { inputs: vec![input(Some(typed.clone()))], ..Default::default() };
        assert_eq!(input_tensors(&request).unwrap()[0].to_json().unwrap(), vec![json!(1.0), json!(2.0)]);
        request.raw_input_contents = vec![[1.0f32, 2.0].iter().flat_map(|f| f.to_le_bytes()).collect()];
        assert!(input_tensors(&request).unwrap_err().contains("both set"));
        request.inputs = vec![input(None)];
        assert_eq!(input_tensors(&request).unwrap()[0].to_json().unwrap(), vec![json!(1.0), json!(2.0)]);
        request.raw_input_contents.push(vec![]);
        assert!(input_tensors(&request).unwrap_err().contains("2 entries for 1 inputs"));
    }
}
