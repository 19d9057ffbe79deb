//! `index_to_name.json`: class index → label, as TorchServe's `map_class_to_label` reads it.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value;

use super::ModelError;

#[derive(Debug, Default)]
pub struct Labels(HashMap<String, String>);

impl Labels {
    pub const FILE_NAME: &'static str = "index_to_name.json";

    /// Reads the model folder's label file; without one, labels are the class indices.
    /// Values may be a string or a list whose last element is the label
    /// (`{"0": ["n01440764", "tench"]}`); the legacy `{"object_type_names": [...]}` also works.
    pub fn read(model_dir: &Path) -> Result<Self, ModelError> {
        let path = model_dir.join(Self::FILE_NAME);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => {
                return Err(ModelError::Load {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })
            }
        };
        let invalid = |message: String| ModelError::Load {
            path: path.display().to_string(),
            message,
        };
        let json: Value = serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        let Value::Object(map) = json else {
            return Err(invalid("expected a JSON object".into()));
        };
        if let Some(Value::Array(names)) = map.get("object_type_names") {
            let labels = names
                .iter()
                .enumerate()
                .map(|(i, name)| (i.to_string(), label_text(name)))
                .collect();
            return Ok(Self(labels));
        }
        Ok(Self(
            map.iter()
                .map(|(index, name)| (index.clone(), label_text(name)))
                .collect(),
        ))
    }

    pub fn label(&self, class_index: i64) -> String {
        let key = class_index.to_string();
        self.0.get(&key).cloned().unwrap_or(key)
    }
}

fn label_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.last().map(label_text).unwrap_or_default(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_string_and_list_values() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(Labels::FILE_NAME),
            r#"{"0": ["n01440764", "tench"], "1": "goldfish"}"#,
        )
        .unwrap();
        let labels = Labels::read(dir.path()).unwrap();
        assert_eq!(labels.label(0), "tench");
        assert_eq!(labels.label(1), "goldfish");
        assert_eq!(labels.label(7), "7");
    }

    #[test]
    fn legacy_object_type_names() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(Labels::FILE_NAME),
            r#"{"object_type_names": ["background", "person"]}"#,
        )
        .unwrap();
        assert_eq!(Labels::read(dir.path()).unwrap().label(1), "person");
    }

    #[test]
    fn missing_file_gives_indices() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Labels::read(dir.path()).unwrap().label(3), "3");
    }
}
