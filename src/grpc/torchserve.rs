//! TorchServe's `InferenceAPIsService` (`org.pytorch.serve.grpc.inference`), for the clients
//! TorchServe users generated from its `inference.proto`. A prediction is what `/predictions`
//! makes of a form: each `input` entry one named parameter (no content type, so the Python
//! backend hands it on as bytes), and the answer's bytes are the REST body's.
//!
//! StreamPredictions sends one message per part of a streaming handler's answer
//! (`send_intermediate_predict_response`) as it comes; Predictions joins them into one.
//! Where TorchServe 0.12 is broken this does better: StreamPredictions on a handler that does
//! not stream gets its one answer and OK (TorchServe sends it, then fails the call with
//! `Worker died.`); Predictions on a streaming handler gets the whole answer (TorchServe: the
//! first part, leaving the rest to break later calls); an unknown model is NOT_FOUND
//! (TorchServe: INTERNAL).

use futures_util::{stream, StreamExt};
use serde_json::json;
use tonic::{Request, Response, Status, Streaming};

use super::call::{target, CallError, FrontDoor};
use super::org::pytorch::serve::grpc::inference::inference_ap_is_service_server::{
    InferenceApIsService, InferenceApIsServiceServer,
};
use super::org::pytorch::serve::grpc::inference::{PredictionResponse, PredictionsRequest, TorchServeHealthResponse};
use crate::request::{InferenceRequest, Parameter, Prediction};
use crate::service::{Answer, Target};

/// A stream of prediction messages: one per part of a streamed answer, or the one answer.
type Answers = std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<PredictionResponse, Status>> + Send>>;

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
                let (target, input) = prediction_request(&door, request)?;
                let answers: Answers = match door.models.predict_streaming(&target, input).await? {
                    Answer::Whole(prediction) => Box::pin(stream::iter([Ok(message(prediction))])),
                    Answer::Streamed { head, rest } => {
                        // One message per part as it comes; an error after the first ends the
                        // call with its status.
                        let more = stream::unfold(rest, |mut rest| async move {
                            let part = rest.next().await?;
                            Some((part.map(message).map_err(|e| CallError::from(e).into_status()), rest))
                        });
                        Box::pin(stream::iter([Ok(message(head))]).chain(more))
                    }
                };
                Ok(answers)
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

/// One prediction, answered whole (a streamed answer's parts joined).
async fn predict(door: FrontDoor, request: PredictionsRequest) -> Result<PredictionResponse, CallError> {
    let (target, input) = prediction_request(&door, request)?;
    Ok(message(door.models.predict(&target, input).await?))
}

/// The answer's bytes as REST's body.
fn message(prediction: Prediction) -> PredictionResponse {
    PredictionResponse {
        prediction: prediction.body.into_bytes().to_vec(),
        sequence_id: None,
        status: None,
    }
}

/// The model a request names, and the request as the model service takes it: the input map
/// as its parameters.
fn prediction_request(door: &FrontDoor, request: PredictionsRequest) -> Result<(Target, InferenceRequest), CallError> {
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
    Ok((target, input))
}
