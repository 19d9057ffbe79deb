//! `base_handler` for tensor models: each request is a JSON nested number array (one sample);
//! samples are stacked along dim 0; each answer is that sample's output as nested arrays.

use serde_json::Value;
use tch::Tensor;

use super::{tensor_json, Handler, ModelError};

pub struct BaseHandler;

impl Handler for BaseHandler {
    fn preprocess(&self, payload: &[u8]) -> Result<Tensor, ModelError> {
        let json: Value = serde_json::from_slice(payload)
            .map_err(|e| ModelError::BadInput(format!("request body is not valid JSON: {e}")))?;
        tensor_json::json_to_tensor(&json).map_err(ModelError::BadInput)
    }

    fn postprocess(&self, output: &Tensor) -> Result<Vec<Value>, ModelError> {
        let invalid = |e: tch::TchError| ModelError::InvalidOutput(e.to_string());
        let batch = *output.size().first().ok_or_else(|| {
            ModelError::InvalidOutput("the model returned a scalar, expected a batch".into())
        })?;
        (0..batch)
            .map(|row| {
                let sample = output.f_select(0, row).map_err(invalid)?;
                tensor_json::tensor_to_json(&sample).map_err(invalid)
            })
            .collect()
    }
}
