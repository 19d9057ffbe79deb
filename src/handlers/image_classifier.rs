//! `image_classifier`: ImageNet pre-processing, then softmax and the top 5 classes, answered as
//! TorchServe does: `{"label": probability, ...}` in descending order.

use std::path::Path;

use serde_json::{Map, Value};
use tch::{Kind, Tensor};

use super::labels::Labels;
use super::{image, Handler, ModelError, Sample};

pub struct ImageClassifier {
    labels: Labels,
    top_k: i64,
    /// `limit_max_image_pixels`: larger images are refused before decoding.
    max_pixels: Option<u64>,
}

impl ImageClassifier {
    pub const DEFAULT_TOP_K: i64 = 5;

    pub fn new(model_dir: &Path, top_k: Option<i64>, max_pixels: Option<u64>) -> Result<Self, ModelError> {
        Ok(Self {
            labels: Labels::read(model_dir)?,
            top_k: top_k.unwrap_or(Self::DEFAULT_TOP_K),
            max_pixels,
        })
    }
}

impl Handler for ImageClassifier {
    fn preprocess(&self, payload: &[u8]) -> Result<Sample, ModelError> {
        image::imagenet_input(payload, self.max_pixels)
    }

    fn example_input(&self) -> Option<Sample> {
        Sample::zeros(vec![3, 224, 224])
    }

    fn postprocess(&self, output: &Tensor) -> Result<Vec<Value>, ModelError> {
        let size = output.size();
        let [_, classes] = size[..] else {
            return Err(ModelError::InvalidOutput(format!(
                "image_classifier expects scores of shape [batch, classes], got {size:?}"
            )));
        };
        let invalid = |e: tch::TchError| ModelError::InvalidOutput(e.to_string());
        let probabilities = output.f_softmax(1, Kind::Float).map_err(invalid)?;
        let (scores, indices) = probabilities
            .f_topk(self.top_k.min(classes), 1, true, true)
            .map_err(invalid)?;
        let scores = Vec::<Vec<f32>>::try_from(&scores).map_err(invalid)?;
        let indices = Vec::<Vec<i64>>::try_from(&indices).map_err(invalid)?;
        Ok(scores
            .into_iter()
            .zip(indices)
            .map(|(row_scores, row_indices)| {
                let top: Map<String, Value> = row_indices
                    .into_iter()
                    .zip(row_scores)
                    .map(|(class, score)| (self.labels.label(class), Value::from(f64::from(score))))
                    .collect();
                Value::Object(top)
            })
            .collect())
    }
}
