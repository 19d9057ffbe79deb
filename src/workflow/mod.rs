//! Workflows, as TorchServe 0.12 has them: a `.war` archive (`torch-workflow-archiver`) holding
//! a spec (models and a DAG) and a handler file whose functions are the DAG's other nodes. This
//! module owns what needs no server: reading an archive ([`WorkflowArchive`]), its spec
//! ([`spec`]) and graph ([`dag`]), and the errors; the model service registers a workflow's
//! nodes as models and runs its DAG over them (`service::workflows`).

pub mod dag;
pub mod spec;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::archive::{ArchiveError, Limits, Manifest, ModelSection};
use crate::error::{Code, ErrorCode};
use spec::{SpecError, WorkflowSpec};

/// Everything that can go wrong with a workflow, each with TorchServe's exception name.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    #[error("Workflow not found: {0}")]
    NotFound(String),
    #[error("Workflow not found in workflow store: {0}")]
    ArchiveNotFound(String),
    #[error("Workflow store has not been configured.")]
    NoStore,
    /// A bad archive, manifest or spec (TorchServe: 500 `InvalidWorkflowException`; it is the
    /// client's archive, so 400 here).
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    InvalidDag(String),
    #[error("Workflow {0} is already registered.")]
    Conflict(String),
    #[error("Workflow {name} has failed to register. Failures: [{}]", failures.join(", "))]
    NodesFailed { name: String, failures: Vec<String> },
    /// A node failed on every try (TorchServe's message, with the cause it drops).
    #[error("Error executing {node}: {cause}")]
    NodeFailed { node: String, cause: String },
    #[error("Workflow {workflow}: the output of leaf node {leaf} is not a JSON object, so the outputs of several leaves cannot be combined")]
    LeafNotObject { workflow: String, leaf: String },
    #[error(transparent)]
    Archive(#[from] ArchiveError),
}

impl ErrorCode for WorkflowError {
    fn code(&self) -> Code {
        match self {
            WorkflowError::NotFound(_) | WorkflowError::ArchiveNotFound(_) | WorkflowError::NoStore => Code::WorkflowNotFound,
            WorkflowError::Invalid(_) => Code::InvalidWorkflow,
            WorkflowError::InvalidDag(_) => Code::InvalidDag,
            WorkflowError::Conflict(_) => Code::Conflict,
            WorkflowError::NodesFailed { .. } => Code::WorkflowFailed,
            WorkflowError::NodeFailed { .. } | WorkflowError::LeafNotObject { .. } => Code::Internal,
            WorkflowError::Archive(e) => e.code(),
        }
    }
}

impl From<SpecError> for WorkflowError {
    fn from(e: SpecError) -> Self {
        match e {
            SpecError::Invalid(message) => WorkflowError::Invalid(message),
            SpecError::Dag(message) => WorkflowError::InvalidDag(message),
        }
    }
}

/// `WAR-INF/MANIFEST.json`, as torch-workflow-archiver writes it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WarManifest {
    workflow: Option<WarWorkflow>,
    archiver_version: Option<String>,
    created_on: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WarWorkflow {
    workflow_name: Option<String>,
    spec_file: Option<String>,
    handler: Option<String>,
}

/// An unpacked, checked workflow archive.
#[derive(Debug)]
pub struct WorkflowArchive {
    pub name: String,
    pub spec: WorkflowSpec,
    /// The handler file's name, in [`WorkflowArchive::dir`].
    pub handler: String,
    pub dir: PathBuf,
    unpacked: Arc<tempfile::TempDir>,
}

impl WorkflowArchive {
    /// Unpacks and checks the archive at `path`: its manifest (with TorchServe's messages), its
    /// spec and graph, and that every node is a model of the spec or a function of the handler
    /// (TorchServe finds a missing function only when the node's worker fails to start).
    /// `name` overrides the manifest's. Blocking.
    pub fn open(path: &Path, name: Option<String>, limits: Limits) -> Result<Self, WorkflowError> {
        let unpacked = crate::archive::unpack(path, limits)?;
        let dir = unpacked.path().to_path_buf();
        let text = std::fs::read_to_string(dir.join("WAR-INF").join("MANIFEST.json"))
            .map_err(|e| WorkflowError::Invalid(format!("the archive has no readable WAR-INF/MANIFEST.json: {e}")))?;
        let manifest: WarManifest =
            serde_json::from_str(&text).map_err(|e| WorkflowError::Invalid(format!("invalid WAR-INF/MANIFEST.json: {e}")))?;
        let workflow = manifest.workflow.ok_or_else(|| WorkflowError::Invalid("Missing Workflow entry in manifest file.".into()))?;
        let name = name
            .or(workflow.workflow_name)
            .ok_or_else(|| WorkflowError::Invalid("Workflow name is not defined.".into()))?;
        check_name(&name)?;
        if manifest.archiver_version.is_none() {
            return Err(WorkflowError::Invalid("Workflow archive version is not defined.".into()));
        }
        if manifest.created_on.is_none() {
            return Err(WorkflowError::Invalid("Workflow archive createdOn is not defined.".into()));
        }
        let file = |what: &str, value: Option<String>| -> Result<String, WorkflowError> {
            let value = value.filter(|v| !v.is_empty() && v != "null").ok_or_else(|| {
                WorkflowError::Invalid(format!("the workflow archive names no {what} (torch-workflow-archiver --{what})"))
            })?;
            let plain = Path::new(&value).components().all(|c| matches!(c, std::path::Component::Normal(_)));
            if !plain || !dir.join(&value).is_file() {
                return Err(WorkflowError::Invalid(format!("the workflow archive has no {what} {value}")));
            }
            Ok(value)
        };
        let spec_file = file("spec-file", workflow.spec_file)?;
        let handler = file("handler", workflow.handler)?;
        let spec_text = std::fs::read_to_string(dir.join(&spec_file))
            .map_err(|e| WorkflowError::Invalid(format!("cannot read {spec_file}: {e}")))?;
        let spec = WorkflowSpec::parse(&spec_text)?;
        let source = std::fs::read_to_string(dir.join(&handler)).unwrap_or_default();
        for function in spec.functions() {
            if !defines_function(&source, &function) {
                return Err(WorkflowError::InvalidDag(format!(
                    "node {function} is neither a model under `models:` nor a function of {handler}"
                )));
            }
        }
        Ok(Self {
            name,
            spec,
            handler,
            dir,
            unpacked: Arc::new(unpacked),
        })
    }

    /// The model name a node is registered under, as TorchServe names it.
    pub fn node_model(&self, node: &str) -> String {
        format!("{}__{node}", self.name)
    }

    /// The archive a function node's worker runs: the workflow's files, its handler's
    /// `function`, version 1.0.
    pub fn function_archive(&self, function: &str) -> crate::archive::ModelArchive {
        let manifest = Manifest {
            created_on: None,
            runtime: "python".into(),
            description: None,
            model: ModelSection {
                model_name: self.node_model(function),
                serialized_file: None,
                handler: Some(format!("{}:{function}", self.handler)),
                model_file: None,
                model_version: "1.0".into(),
                requirements_file: None,
                config_file: None,
                description: None,
            },
            archiver_version: None,
        };
        crate::archive::ModelArchive::prepared(manifest, self.dir.clone(), self.unpacked.clone())
    }
}

/// Whether Python source defines a top-level function `name`.
fn defines_function(source: &str, name: &str) -> bool {
    source.lines().any(|line| {
        let rest = line.strip_prefix("def ").or_else(|| line.strip_prefix("async def "));
        rest.and_then(|rest| rest.strip_prefix(name)).is_some_and(|rest| rest.trim_start().starts_with('('))
    })
}

/// torch-workflow-archiver's name rule (the name becomes part of model names and paths).
fn check_name(name: &str) -> Result<(), WorkflowError> {
    let valid = name.len() <= 200
        && name.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    match valid {
        true => Ok(()),
        false => Err(WorkflowError::Invalid(format!(
            "workflow name {name:?}: use letters, digits, '_', '-' and '.', starting with a letter or digit"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_are_found_at_the_top_level_only() {
        let source = "import json\n\ndef pre_processing(data, context):\n    def inner(x):\n        pass\n\nasync def post (data, context):\n    pass\n";
        assert!(defines_function(source, "pre_processing"));
        assert!(defines_function(source, "post"));
        assert!(!defines_function(source, "inner"), "nested");
        assert!(!defines_function(source, "pre"), "a prefix of another name");
    }
}
