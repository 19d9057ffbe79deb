//! Built-in handlers, in Rust: turn request bytes into tensors, run one batched `forward`, turn
//! the output back into one answer per request. Nothing here knows about HTTP or actors, so it is
//! tested with real TorchScript models and no server; only a worker thread calls [`LoadedModel`].

mod base;
pub mod image;
mod image_classifier;
mod labels;
pub mod sample;
mod shared;
pub mod tensor_json;
pub mod typed;

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use tch::{CModule, Device, IValue, Tensor};

use crate::error::{Code, ErrorCode};
use crate::tensor::TensorData;

pub use base::BaseHandler;
pub use image_classifier::ImageClassifier;
pub use sample::{Sample, Values};

/// Errors of the model layer: loading a model, and running one request through it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ModelError {
    /// The request's payload cannot become model input (corrupt image, malformed JSON).
    #[error("{0}")]
    BadInput(String),
    /// libtorch failed while running the model; holds the last line of its traceback.
    #[error("Prediction failed: {0}")]
    Prediction(String),
    /// A device failure (a CUDA error) that may leave the worker's device context corrupt: the
    /// worker is replaced rather than reused.
    #[error("Device fault: {0}")]
    DeviceFault(String),
    /// The model ran but its output does not fit the handler (wrong type, rank or batch size).
    #[error("Invalid model predict output: {0}")]
    InvalidOutput(String),
    #[error("failed to load model {path}: {message}")]
    Load { path: String, message: String },
}

impl ModelError {
    /// Whether the worker that met this error can no longer be trusted to serve.
    pub fn is_fault(&self) -> bool {
        matches!(self, ModelError::DeviceFault(_))
    }

    /// Classifies a libtorch failure once, where it happens: a CUDA error is a device fault,
    /// anything else a failure of this prediction.
    fn from_torch(err: tch::TchError) -> Self {
        let message = last_line(&err.to_string());
        if message.contains("CUDA error") {
            ModelError::DeviceFault(message)
        } else {
            ModelError::Prediction(message)
        }
    }
}

impl ErrorCode for ModelError {
    fn code(&self) -> Code {
        match self {
            // A payload that cannot be model input is the client's error. (TorchServe answers
            // 503 for it, like any handler exception.)
            ModelError::BadInput(_) => Code::BadRequest,
            // TorchServe's code for an exception raised while the model runs.
            ModelError::Prediction(_) | ModelError::InvalidOutput(_) => Code::Backend(503),
            ModelError::DeviceFault(_) | ModelError::Load { .. } => Code::Internal,
        }
    }
}

/// A TorchScript error carries the whole interpreter traceback; the caller gets its final line
/// (e.g. `RuntimeError: Expected 4D input`), the log keeps the rest.
pub fn last_line(message: &str) -> String {
    let line = message
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or(message);
    if line.len() < message.trim().len() {
        log::debug!("libtorch error in full: {message}");
    }
    line.trim_start_matches("Internal torch error: ").to_string()
}

/// The built-in handlers, named as in TorchServe's manifests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandlerKind {
    ImageClassifier,
    Base,
}

impl HandlerKind {
    /// The native handler for a manifest's `handler`, if tserve has one: a built-in name,
    /// optionally as its TorchServe module path (`ts.torch_handler.image_classifier`). An archive
    /// with no handler gets base_handler. Any other handler runs on the Python backend.
    pub fn native(handler: Option<&str>) -> Option<Self> {
        let Some(name) = handler else {
            return Some(HandlerKind::Base);
        };
        match name.strip_prefix("ts.torch_handler.").unwrap_or(name) {
            "image_classifier" => Some(HandlerKind::ImageClassifier),
            "base_handler" => Some(HandlerKind::Base),
            _ => None,
        }
    }
}

/// What a handler does around `forward`. Preprocessing works on one request at a time, so one
/// bad payload fails only its own request; postprocessing splits the batch output.
pub trait Handler: Send {
    /// One request's payload → one sample (no batch dimension).
    fn preprocess(&self, payload: &[u8]) -> Result<Sample, ModelError>;
    /// The batched output (on the CPU) → one JSON answer per sample, in order.
    fn postprocess(&self, output: &Tensor) -> Result<Vec<Value>, ModelError>;
    /// A sample shaped like the handler's input, to warm the model up before it serves; `None`
    /// when the shape is not known.
    fn example_input(&self) -> Option<Sample> {
        None
    }
}

/// Builds a handler, reading what it needs (e.g. `index_to_name.json`) from the model folder.
/// `settings` are the model-config YAML's keys that are not frontend settings (TorchServe's
/// `context.model_yaml_config`); `handler: {topk: N}` sets image_classifier's number of classes.
pub fn build_handler(
    kind: HandlerKind,
    model_dir: &Path,
    settings: &serde_yaml_ng::Mapping,
    max_image_pixels: Option<u64>,
) -> Result<Box<dyn Handler>, ModelError> {
    Ok(match kind {
        HandlerKind::ImageClassifier => {
            let top_k = settings
                .get("handler")
                .and_then(|handler| handler.get("topk"))
                .and_then(serde_yaml_ng::Value::as_i64)
                .filter(|&k| k > 0);
            Box::new(ImageClassifier::new(model_dir, top_k, max_image_pixels)?)
        }
        HandlerKind::Base => {
            // `handler: {warmup_input_shape: [64]}`: a sample's shape, for the warm-up.
            let warmup_shape = settings
                .get("handler")
                .and_then(|handler| handler.get("warmup_input_shape"))
                .and_then(serde_yaml_ng::Value::as_sequence)
                .map(|dims| dims.iter().filter_map(serde_yaml_ng::Value::as_i64).collect());
            Box::new(BaseHandler { warmup_shape })
        }
    })
}

/// A TorchScript module on its device with its handler. Owned by one worker thread; the module
/// itself is shared with the other workers of the same file and device (see `shared`).
pub struct LoadedModel {
    module: Arc<CModule>,
    handler: Box<dyn Handler>,
    device: Device,
    /// How long [`Self::load`]'s warm-up took (part of a start's time to ready).
    warmed_up_in: std::time::Duration,
}

/// Samples of one shape and dtype, which can go through one `forward` together, and the
/// payloads (by index) they came from.
struct SubBatch {
    owners: Vec<usize>,
    samples: Vec<Sample>,
}

impl LoadedModel {
    /// Loads `model_file` onto `device` in eval mode. Call it on the thread that will run it.
    pub fn load(
        model_file: &Path,
        handler: Box<dyn Handler>,
        device: Device,
    ) -> Result<Self, ModelError> {
        let load_error = |e: tch::TchError| ModelError::Load {
            path: model_file.display().to_string(),
            message: last_line(&e.to_string()),
        };
        let (module, fresh) = shared::module(model_file, device, || {
            let mut module = CModule::load_on_device(model_file, device)?;
            module.f_set_eval()?;
            Ok(module)
        })
        .map_err(load_error)?;
        if !fresh {
            log::info!("{}: sharing the weights already loaded on {device:?}", model_file.display());
        }
        let mut model = Self {
            module,
            handler,
            device,
            warmed_up_in: std::time::Duration::ZERO,
        };
        let started = std::time::Instant::now();
        model.warm_up().map_err(|e| ModelError::Load {
            path: model_file.display().to_string(),
            message: format!("warm-up failed: {e}"),
        })?;
        model.warmed_up_in = started.elapsed();
        Ok(model)
    }

    /// How long loading spent on the warm-up runs.
    pub fn warmed_up_in(&self) -> std::time::Duration {
        self.warmed_up_in
    }

    /// Runs the model on the handler's example input, so that libtorch's one-time work
    /// (kernel selection, oneDNN's primitives) is done before the first request rather than
    /// during it. Twice: ResNet-18's first request then took 1.03–1.04× a warm one, as after three
    /// runs (`BENCH_ROWS=first cargo bench --bench predictions`), where one run left it at 2.05×;
    /// each run saved is a forward off every start. Since the worker gives the warm-up's freed
    /// pages back (`give_back_scratch`), the first request faults them in again: 1.29–1.43×.
    fn warm_up(&self) -> Result<(), ModelError> {
        const RUNS: usize = 2;
        let Some(example) = self.handler.example_input() else { return Ok(()) };
        for _ in 0..RUNS {
            // The path a request takes, postprocessing included.
            self.forward(std::slice::from_ref(&example))?;
        }
        Ok(())
    }

    /// Runs a batch of payloads: each is preprocessed alone; samples of the same shape and
    /// dtype go through one `forward` together (a batch of mixed shapes becomes several); every
    /// payload gets its own answer or error, in order.
    pub fn predict(&self, payloads: &[&[u8]]) -> Vec<Result<Value, ModelError>> {
        let mut answers: Vec<Option<Result<Value, ModelError>>> = vec![None; payloads.len()];
        // Sub-batches in order of first appearance.
        let mut groups: Vec<SubBatch> = Vec::new();
        for (index, payload) in payloads.iter().enumerate() {
            match self.handler.preprocess(payload) {
                Ok(sample) => {
                    let alike = |group: &&mut SubBatch| {
                        group.samples.first().is_some_and(|first| first.shape() == sample.shape() && first.kind() == sample.kind())
                    };
                    match groups.iter_mut().find(alike) {
                        Some(group) => {
                            group.owners.push(index);
                            group.samples.push(sample);
                        }
                        None => groups.push(SubBatch { owners: vec![index], samples: vec![sample] }),
                    }
                }
                Err(e) => answers[index] = Some(Err(e)),
            }
        }
        for SubBatch { owners, samples, .. } in groups {
            match self.forward(&samples) {
                Ok(outputs) => {
                    for (index, output) in owners.iter().zip(outputs) {
                        answers[*index] = Some(Ok(output));
                    }
                }
                Err(e) => {
                    for index in &owners {
                        answers[*index] = Some(Err(e.clone()));
                    }
                }
            }
        }
        answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err(ModelError::InvalidOutput("no answer".into()))))
            .collect()
    }

    /// Runs requests of typed tensors, each request's tensors being the model's `forward`
    /// arguments (each carries its own batch dimension). Requests whose tensors agree in number,
    /// datatypes and all but the first dimension go through one `forward`, concatenated along
    /// dim 0, when every output's first dimension then holds their rows (else each runs alone);
    /// every request gets its own rows back, or its own error.
    pub fn predict_typed(&self, requests: &[&[TensorData]]) -> Vec<Result<Vec<TensorData>, ModelError>> {
        let mut answers: Vec<Option<Result<Vec<TensorData>, ModelError>>> = vec![None; requests.len()];
        // Groups of compatible requests, in order of first appearance.
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (index, request) in requests.iter().enumerate() {
            // Each of its tensors has the same number of rows.
            let batchable = request.first().and_then(|t| t.shape.first()).is_some_and(|&rows| {
                request.iter().all(|t| t.shape.first() == Some(&rows))
            });
            let fits = |other: &[TensorData]| {
                other.len() == request.len()
                    && other
                        .iter()
                        .zip(request.iter())
                        .all(|(a, b)| a.datatype == b.datatype && a.shape[1..] == b.shape[1..] && a.shape.len() == b.shape.len())
            };
            match groups.iter_mut().find(|group| batchable && group.first().is_some_and(|&first| fits(requests[first]))) {
                Some(group) => group.push(index),
                None => groups.push(vec![index]),
            }
        }
        for group in groups {
            if group.len() > 1 {
                let members: Vec<&[TensorData]> = group.iter().map(|&i| requests[i]).collect();
                if let Some(split) = self.forward_typed_together(&members) {
                    for (&index, answer) in group.iter().zip(split) {
                        answers[index] = Some(answer);
                    }
                    continue;
                }
            }
            for index in group {
                answers[index] = Some(self.predict_tensors(requests[index]));
            }
        }
        answers
            .into_iter()
            .map(|a| a.unwrap_or_else(|| Err(ModelError::InvalidOutput("no answer".into()))))
            .collect()
    }

    /// One `forward` for compatible requests; `None` when their outputs cannot be split back
    /// by rows (or the batch fails: then each request runs alone, for its own answer or error).
    fn forward_typed_together(&self, members: &[&[TensorData]]) -> Option<Vec<Result<Vec<TensorData>, ModelError>>> {
        let rows: Vec<i64> = members.iter().map(|m| m[0].shape[0]).collect();
        let total: i64 = rows.iter().sum();
        let arguments = (0..members[0].len())
            .map(|argument| {
                let parts = members
                    .iter()
                    .map(|m| typed::to_tensor(&m[argument]))
                    .collect::<Result<Vec<_>, _>>()?;
                Tensor::f_cat(&parts, 0).map_err(ModelError::from_torch)
            })
            .collect::<Result<Vec<_>, ModelError>>()
            .ok()?;
        let outputs = self.forward_tensors(arguments).ok()?;
        if outputs.iter().any(|o| o.dim() == 0 || o.size()[0] != total) {
            return None;
        }
        let mut answers: Vec<Vec<TensorData>> = vec![Vec::with_capacity(outputs.len()); members.len()];
        for (index, output) in outputs.iter().enumerate() {
            let pieces = output.f_split_with_sizes(&rows, 0).ok()?;
            for (answer, piece) in answers.iter_mut().zip(pieces) {
                answer.push(typed::from_tensor(format!("output__{index}"), &piece).ok()?);
            }
        }
        Some(answers.into_iter().map(Ok).collect())
    }

    /// Runs one request's typed tensors as the model's `forward` arguments, as they are (the
    /// request's tensors carry their own batch dimension); its result, a tensor or a tuple or
    /// list of tensors, comes back as `output__0`, `output__1` ..., with real dtypes and shapes.
    pub fn predict_tensors(&self, inputs: &[TensorData]) -> Result<Vec<TensorData>, ModelError> {
        let arguments = inputs.iter().map(typed::to_tensor).collect::<Result<Vec<_>, ModelError>>()?;
        self.forward_tensors(arguments)?
            .iter()
            .enumerate()
            .map(|(index, tensor)| typed::from_tensor(format!("output__{index}"), tensor))
            .collect()
    }

    /// `forward` on CPU tensors: moved to the model's device, the results (a tensor, or a tuple
    /// or list of tensors) back on the CPU.
    fn forward_tensors(&self, arguments: Vec<Tensor>) -> Result<Vec<Tensor>, ModelError> {
        let arguments = arguments
            .into_iter()
            .map(|tensor| {
                let tensor = if self.device == Device::Cpu {
                    tensor
                } else {
                    tensor.f_to(self.device).map_err(ModelError::from_torch)?
                };
                Ok(IValue::Tensor(tensor))
            })
            .collect::<Result<Vec<_>, ModelError>>()?;
        let output = self.module.forward_is(&arguments).map_err(ModelError::from_torch)?;
        let tensors = match output {
            IValue::Tensor(tensor) => vec![tensor],
            IValue::TensorList(tensors) => tensors,
            IValue::Tuple(items) | IValue::GenericList(items) => items
                .into_iter()
                .map(|item| match item {
                    IValue::Tensor(tensor) => Ok(tensor),
                    other => Err(ModelError::InvalidOutput(format!(
                        "the model returned {} among its results, expected tensors",
                        ivalue_kind(&other)
                    ))),
                })
                .collect::<Result<_, _>>()?,
            other => {
                return Err(ModelError::InvalidOutput(format!(
                    "the model returned {}, expected tensors",
                    ivalue_kind(&other)
                )))
            }
        };
        tensors
            .into_iter()
            .map(|tensor| tensor.f_to(Device::Cpu).map_err(ModelError::from_torch))
            .collect()
    }

    fn forward(&self, samples: &[Sample]) -> Result<Vec<Value>, ModelError> {
        let batch = Sample::batch(samples)
            .map_err(|e| ModelError::BadInput(format!("inputs cannot form a batch: {}", last_line(&e))))?;
        // A failed copy to the device is the device's error (and may be fatal), not the input's.
        let batch = if self.device == Device::Cpu {
            batch
        } else {
            batch.f_to(self.device).map_err(ModelError::from_torch)?
        };
        let output = self
            .module
            .forward_is(&[IValue::Tensor(batch)])
            .map_err(ModelError::from_torch)?;
        let IValue::Tensor(output) = output else {
            return Err(ModelError::InvalidOutput(format!(
                "the model returned {}, expected a tensor",
                ivalue_kind(&output)
            )));
        };
        let output = output.f_to(Device::Cpu).map_err(ModelError::from_torch)?;
        let answers = self.handler.postprocess(&output)?;
        if answers.len() != samples.len() {
            return Err(ModelError::InvalidOutput(format!(
                "number of batch response mismatched: {} inputs, {} outputs",
                samples.len(),
                answers.len()
            )));
        }
        Ok(answers)
    }
}

fn ivalue_kind(value: &IValue) -> &'static str {
    match value {
        IValue::Tuple(_) => "a tuple",
        IValue::GenericList(_) | IValue::TensorList(_) => "a list",
        IValue::GenericDict(_) => "a dict",
        IValue::None => "None",
        _ => "a non-tensor value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handler_names_resolve_like_torchserve() {
        assert_eq!(HandlerKind::native(Some("image_classifier")), Some(HandlerKind::ImageClassifier));
        assert_eq!(HandlerKind::native(Some("ts.torch_handler.base_handler")), Some(HandlerKind::Base));
        assert_eq!(HandlerKind::native(None), Some(HandlerKind::Base));
        assert_eq!(HandlerKind::native(Some("my_handler.py")), None, "Python runs it");
        assert_eq!(HandlerKind::native(Some("image_segmenter")), None, "Python runs it");
    }

    #[test]
    fn last_line_of_a_traceback() {
        let message = "Internal torch error: The following operation failed in the TorchScript \
                       interpreter.\nTraceback of TorchScript (most recent call last):\n  File \
                       \"x.py\", line 3\nRuntimeError: boom\n";
        assert_eq!(last_line(message), "RuntimeError: boom");
    }

    #[test]
    fn cuda_errors_are_device_faults() {
        let cuda = ModelError::from_torch(tch::TchError::Torch("CUDA error: an illegal memory access".into()));
        assert!(cuda.is_fault(), "{cuda:?}");
        let plain = ModelError::from_torch(tch::TchError::Torch("RuntimeError: boom".into()));
        assert!(!plain.is_fault(), "{plain:?}");
    }
}
