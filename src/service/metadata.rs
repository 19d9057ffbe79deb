//! What the Open Inference Protocol's model metadata and readiness say of a model version:
//! its versions, platform, and input and output tensors as far as they can be known, from the
//! first of these that has them:
//! 1. the model config's declaration, `tserve: {inputs: [{name, datatype, shape}], outputs:
//!    [...]}` (as Triton's `config.pbtxt` declares them), for any backend;
//! 2. for a TorchScript model, its file: `forward`'s argument names and how many tensors it
//!    returns, but no dtypes or shapes, which are then `FP32` (what `base_handler` makes of JSON
//!    numbers) and `[-1]` (unknown);
//! 3. nothing, for a Python handler that declares none.

use std::path::PathBuf;

use serde::Serialize;

use crate::actors::{BackendSpec, ModelEntry};
use crate::archive::DeclaredTensors;
use crate::handlers::typed::forward_signature;

/// One model version as the OIP front door needs it.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub name: String,
    pub version: String,
    /// Every registered version of the model, in order.
    pub versions: Vec<String>,
    /// Served in-process from a TorchScript file, which takes typed tensors.
    pub native: bool,
    /// At least one worker is ready.
    pub ready: bool,
    pub(super) serialized_file: Option<PathBuf>,
    pub(super) declared: Option<DeclaredTensors>,
}

impl ModelInfo {
    pub(super) fn new(entry: &ModelEntry, versions: Vec<String>) -> Self {
        let serialized_file = match &entry.spec.backend {
            BackendSpec::Native { serialized_file, .. } => Some(serialized_file.clone()),
            BackendSpec::Python(_) => None,
        };
        Self {
            name: entry.spec.name.clone(),
            version: entry.spec.version.clone(),
            versions,
            native: serialized_file.is_some(),
            ready: entry.health.borrow().ready > 0,
            serialized_file,
            declared: entry.spec.tensors.clone(),
        }
    }
}

/// An input or output as model metadata describes it: the shape a model config declares
/// (-1 marks a dimension that is not known).
pub use crate::archive::DeclaredTensor as TensorMetadata;

/// OIP's model metadata response.
#[derive(Debug, Clone, Serialize)]
pub struct ModelMetadata {
    pub name: String,
    pub versions: Vec<String>,
    pub platform: &'static str,
    pub inputs: Vec<TensorMetadata>,
    pub outputs: Vec<TensorMetadata>,
}

/// The metadata of a model version; reading its TorchScript file is file I/O, done on the
/// blocking pool.
pub async fn metadata(info: ModelInfo) -> ModelMetadata {
    let unknown = |name: String| TensorMetadata {
        name,
        datatype: "FP32".into(),
        shape: vec![-1],
    };
    let platform = match info.native {
        true => "pytorch_torchscript",
        false => "pytorch_python",
    };
    let (inputs, outputs) = match (info.declared, info.serialized_file) {
        (Some(tensors), _) => (tensors.inputs, tensors.outputs),
        (None, Some(file)) => {
            let signature = tokio::task::spawn_blocking(move || forward_signature(&file)).await.ok().flatten();
            let (inputs, outputs) = match signature {
                Some(signature) => (
                    signature
                        .inputs
                        .iter()
                        .filter(|(_, kind)| kind.contains("Tensor"))
                        .map(|(name, _)| unknown(name.clone()))
                        .collect(),
                    (0..signature.output_count()).map(|i| unknown(format!("output__{i}"))).collect(),
                ),
                None => (vec![unknown("input__0".into())], vec![unknown("output__0".into())]),
            };
            (inputs, outputs)
        }
        (None, None) => (Vec::new(), Vec::new()),
    };
    ModelMetadata {
        name: info.name,
        versions: info.versions,
        platform,
        inputs,
        outputs,
    }
}
