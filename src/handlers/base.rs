//! `base_handler` for tensor models: each request is a JSON nested number array (one sample);
//! samples are stacked along dim 0; each answer is that sample's output as nested arrays.

use serde_json::Value;
use tch::Tensor;

use super::tensor_json::{self, BodyError};
use super::{Handler, ModelError, Sample};

#[derive(Debug, Default)]
pub struct BaseHandler {
    /// A sample's shape (no batch dimension), from the model-config YAML, for the warm-up.
    pub warmup_shape: Option<Vec<i64>>,
}

impl Handler for BaseHandler {
    fn preprocess(&self, payload: &[u8]) -> Result<Sample, ModelError> {
        tensor_json::body_to_sample(payload).map_err(|e| match e {
            BodyError::NotJson(e) => ModelError::BadInput(format!("request body is not valid JSON: {e}")),
            BodyError::Tensor(message) => ModelError::BadInput(message),
        })
    }

    fn example_input(&self) -> Option<Sample> {
        Sample::zeros(self.warmup_shape.clone()?)
    }

    fn postprocess(&self, output: &Tensor) -> Result<Vec<Value>, ModelError> {
        // The whole batch leaves libtorch in one copy; its rows are the answers.
        match tensor_json::tensor_to_json(output) {
            Ok(Value::Array(rows)) => Ok(rows),
            Ok(_) => Err(ModelError::InvalidOutput("the model returned a scalar, expected a batch".into())),
            Err(e) => Err(ModelError::InvalidOutput(e.to_string())),
        }
    }
}
