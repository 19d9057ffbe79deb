//! A workflow's spec file (the YAML `torch-workflow-archiver --spec-file` packs): its models
//! with TorchServe's defaults and per-model overrides, and its `dag:`. Nodes the `models:`
//! section does not name are functions of the workflow's handler file.

use serde_yaml_ng::{Mapping, Value};

use super::dag::Dag;

/// What every model node gets unless it says otherwise (TorchServe's `WorkFlow` defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeSettings {
    pub min_workers: u64,
    pub max_workers: u64,
    pub batch_size: u64,
    /// Milliseconds.
    pub max_batch_delay: u64,
    /// Tries after the first, when a node fails or times out.
    pub retry_attempts: u64,
    /// How long one try may take, in milliseconds.
    pub timeout_ms: u64,
}

impl Default for NodeSettings {
    fn default() -> Self {
        Self {
            min_workers: 1,
            max_workers: 1,
            batch_size: 1,
            max_batch_delay: 50,
            retry_attempts: 1,
            timeout_ms: 10_000,
        }
    }
}

impl NodeSettings {
    /// These settings with the keys `map` sets; a value that is not a whole number is an error.
    fn with(mut self, map: &Mapping) -> Result<Self, String> {
        for (key, value) in map {
            let Some(key) = key.as_str() else { continue };
            let field = match key {
                "min-workers" => &mut self.min_workers,
                "max-workers" => &mut self.max_workers,
                "batch-size" => &mut self.batch_size,
                "max-batch-delay" => &mut self.max_batch_delay,
                "retry-attempts" => &mut self.retry_attempts,
                "timeout-ms" => &mut self.timeout_ms,
                _ => continue,
            };
            *field = value.as_u64().ok_or_else(|| format!("models: {key} must be a whole number, got {value:?}"))?;
        }
        Ok(self)
    }
}

/// A model node: where its archive is, and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelNode {
    pub url: String,
    pub settings: NodeSettings,
}

#[derive(Debug, Clone)]
pub struct WorkflowSpec {
    /// The `models:` section's own settings (what describe shows).
    pub defaults: NodeSettings,
    /// Model nodes by node name.
    pub models: Vec<(String, ModelNode)>,
    pub dag: Dag,
}

impl WorkflowSpec {
    /// Parses a spec. Errors say what is wrong: YAML, a section, a value, or the graph.
    pub fn parse(text: &str) -> Result<Self, SpecError> {
        let root: Value = serde_yaml_ng::from_str(text).map_err(|e| SpecError::Invalid(format!("Failed to parse yaml: {e}")))?;
        let section = |name: &str| {
            root.get(name)
                .and_then(Value::as_mapping)
                .ok_or_else(|| SpecError::Invalid(format!("the spec has no `{name}:` mapping")))
        };
        let models_section = section("models")?;
        let defaults = NodeSettings::default().with(models_section).map_err(SpecError::Invalid)?;
        let mut models = Vec::new();
        for (key, value) in models_section {
            let (Some(name), Some(map)) = (key.as_str(), value.as_mapping()) else { continue };
            let url = map
                .get("url")
                .and_then(Value::as_str)
                .filter(|u| !u.is_empty())
                .ok_or_else(|| SpecError::Invalid(format!("model {name} has no url")))?;
            let settings = defaults.with(map).map_err(SpecError::Invalid)?;
            models.push((name.to_string(), ModelNode { url: url.to_string(), settings }));
        }
        let mut edges = Vec::new();
        for (key, value) in section("dag")? {
            let node = key.as_str().ok_or_else(|| SpecError::Invalid("dag: node names must be strings".into()))?;
            let children = match value {
                Value::Null => Vec::new(),
                Value::Sequence(items) => items.iter().filter_map(Value::as_str).filter(|c| !c.trim().is_empty()).map(String::from).collect(),
                _ => return Err(SpecError::Invalid(format!("dag: the children of {node} must be a list"))),
            };
            edges.push((node.to_string(), children));
        }
        let dag = Dag::new(edges).map_err(|e| SpecError::Dag(e.to_string()))?;
        Ok(Self { defaults, models, dag })
    }

    /// The model node named `node`, if it is one.
    pub fn model(&self, node: &str) -> Option<&ModelNode> {
        self.models.iter().find(|(name, _)| name == node).map(|(_, model)| model)
    }

    /// The DAG's nodes that are not models: the handler file's functions.
    pub fn functions(&self) -> Vec<String> {
        self.dag.nodes().iter().filter(|n| self.model(n).is_none()).cloned().collect()
    }
}

/// Why a spec cannot be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// TorchServe's `InvalidWorkflowException`.
    #[error("{0}")]
    Invalid(String),
    /// TorchServe's `InvalidDAGException`.
    #[error("{0}")]
    Dag(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = "models:\n  min-workers: 1\n  max-workers: 2\n  batch-size: 4\n  m1:\n    url: mlp.mar\n  m2:\n    url: mlp_v2.mar\n    batch-size: 1\n\
                        dag:\n  pre: [m1, m2]\n  m1: [post]\n  m2: [post]\n";

    #[test]
    fn models_take_the_sections_settings_and_their_own() {
        let spec = WorkflowSpec::parse(SPEC).unwrap();
        assert_eq!(spec.defaults.max_workers, 2);
        assert_eq!(spec.defaults.timeout_ms, 10_000, "TorchServe's default");
        assert_eq!(spec.model("m1").unwrap().settings.batch_size, 4);
        assert_eq!(spec.model("m2").unwrap().settings.batch_size, 1);
        assert_eq!(spec.model("m2").unwrap().url, "mlp_v2.mar");
        assert_eq!(spec.functions(), ["pre", "post"]);
    }

    #[test]
    fn bad_specs_say_why() {
        assert!(matches!(WorkflowSpec::parse("models: [1"), Err(SpecError::Invalid(m)) if m.starts_with("Failed to parse yaml")));
        assert!(matches!(WorkflowSpec::parse("dag:\n  a: [b]\n"), Err(SpecError::Invalid(m)) if m.contains("models:")));
        assert!(matches!(WorkflowSpec::parse("models:\n  m: {batch-size: 1}\ndag:\n  a: [m]\n"), Err(SpecError::Invalid(m)) if m.contains("no url")));
        assert!(matches!(WorkflowSpec::parse("models:\n  timeout-ms: soon\ndag:\n  a: [b]\n"), Err(SpecError::Invalid(m)) if m.contains("timeout-ms")));
        assert!(matches!(WorkflowSpec::parse("models: {}\ndag:\n  a: [b]\n  b: [a]\n"), Err(SpecError::Dag(m)) if m.contains("only one start node")));
    }
}
