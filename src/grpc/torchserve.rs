//! TorchServe's `InferenceAPIsService` (`org.pytorch.serve.grpc.inference`), for the clients
//! TorchServe users generated from its `inference.proto`. A prediction is what `/predictions`
//! makes of a form: each `input` entry one named parameter (no content type, so the Python
//! backend hands it on as bytes), and the answer's bytes are the REST body's.
//!
//! Where TorchServe 0.12 is broken this does better: StreamPredictions on a handler that does
//! not stream gets its one answer and OK (TorchServe sends it, then fails the call with
//! `Worker died.`); an unknown model is NOT_FOUND (TorchServe: INTERNAL).

use futures_util::stream;
use serde_json::json;
use tonic::{Request, Response, Status, Streaming};

use super::call::{target, CallError, FrontDoor};
use super::org::pytorch::serve::grpc::inference::inference_ap_is_service_server::{
    InferenceApIsService, InferenceApIsServiceServer,
};
use super::org::pytorch::serve::grpc::inference::{PredictionResponse, PredictionsRequest, TorchServeHealthResponse};
use crate::request::{InferenceRequest, Parameter};

/// A stream of prediction messages; StreamPredictions sends one.
type Answers = stream::Iter<std::vec::IntoIter<Result<PredictionResponse, Status>>>;

pub struct TorchServeInference {
    door: FrontDoor,
}

/// The service, taking messages up to `max_request_size`.
pub fn server(door: FrontDoor, max_request_size: usize) -> InferenceApIsServiceServer<TorchServeInference> {
    InferenceApIsServiceServer::new(TorchServeInference { door })
        .max_decoding_message_size(max_request_size)
        .max_encoding_message_size(usize::MAX)
}

#[tonic::async_trait]
impl InferenceApIsService for TorchServeInference {
    /// `health` is the REST `/ping` body as TorchServe's Gson writes it; the call is OK either way.
    async fn ping(&self, request: Request<()>) -> Result<Response<TorchServeHealthResponse>, Status> {
        let models = self.door.models.clone();
        self.door
            .call(method::PING, request, |()| async move {
                let status = if models.health() { "Healthy" } else { "Unhealthy" };
                let health = serde_json::to_string_pretty(&json!({ "status": status })).unwrap_or_default();
                Ok(TorchServeHealthResponse { health })
            })
            .await
    }

    async fn predictions(&self, request: Request<PredictionsRequest>) -> Result<Response<PredictionResponse>, Status> {
        let door = self.door.clone();
        self.door.call(method::PREDICTIONS, request, |request| predict(door, request)).await
    }

    type StreamPredictionsStream = Answers;

    async fn stream_predictions(
        &self,
        request: Request<PredictionsRequest>,
    ) -> Result<Response<Self::StreamPredictionsStream>, Status> {
        let door = self.door.clone();
        self.door
            .call(method::STREAM_PREDICTIONS, request, |request| async move {
                let answer = predict(door, request).await?;
                Ok(stream::iter(vec![Ok(answer)]))
            })
            .await
    }

    type StreamPredictions2Stream = Answers;

    async fn stream_predictions2(
        &self,
        request: Request<Streaming<PredictionsRequest>>,
    ) -> Result<Response<Self::StreamPredictions2Stream>, Status> {
        self.door
            .call(method::STREAM_PREDICTIONS2, request, |_| async {
                Err::<Answers, _>(CallError::status(
                    501,
                    Status::unimplemented(
                        "StreamPredictions2 serves sequence batching (stateful models), which tserve does not \
                         support yet; use Predictions or StreamPredictions",
                    ),
                ))
            })
            .await
    }
}

/// The full method names, as the access log shows them.
mod method {
    pub const PING: &str = "org.pytorch.serve.grpc.inference.InferenceAPIsService/Ping";
    pub const PREDICTIONS: &str = "org.pytorch.serve.grpc.inference.InferenceAPIsService/Predictions";
    pub const STREAM_PREDICTIONS: &str = "org.pytorch.serve.grpc.inference.InferenceAPIsService/StreamPredictions";
    pub const STREAM_PREDICTIONS2: &str = "org.pytorch.serve.grpc.inference.InferenceAPIsService/StreamPredictions2";
}

/// One prediction: the input map as the request's parameters, the answer as REST's body.
async fn predict(door: FrontDoor, request: PredictionsRequest) -> Result<PredictionResponse, CallError> {
    let target = target(&request.model_name, &request.model_version, "model_name")?;
    door.models.check(&target)?;
    if request.input.is_empty() {
        return Err(CallError::bad_request("Request has no input: send it in the input map, as \"data\"."));
    }
    let input = InferenceRequest {
        id: uuid::Uuid::new_v4().to_string(),
        parameters: request
            .input
            .into_iter()
            .map(|(name, value)| Parameter {
                name,
                content_type: None,
                value: value.into(),
            })
            .collect(),
        ..InferenceRequest::default()
    };
    let prediction = door.models.predict(&target, input).await?;
    Ok(PredictionResponse {
        prediction: prediction.body.into_bytes().to_vec(),
        sequence_id: None,
        status: None,
    })
}
