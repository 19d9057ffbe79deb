//! `MAR-INF/MANIFEST.json`, as written by torch-model-archiver and read by TorchServe.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ArchiveError;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_on: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default = "default_runtime")]
    pub runtime: String,
    pub model: ModelSection,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archiver_version: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelSection {
    pub model_name: String,
    #[serde(default = "default_version")]
    pub model_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serialized_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    /// Present for eager-mode archives: a Python file defining the model class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requirements_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn default_runtime() -> String {
    "python".to_string()
}

/// TorchServe sets `modelVersion` to "1.0" when an archive has none.
fn default_version() -> String {
    "1.0".to_string()
}

impl Manifest {
    /// Reads `dir/MAR-INF/MANIFEST.json`. An archive without one gets TorchServe's default
    /// manifest, named after its file.
    pub fn read_dir(dir: &Path, default_name: &str) -> Result<Self, ArchiveError> {
        let path = dir.join("MAR-INF").join("MANIFEST.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::default_for(default_name))
            }
            Err(source) => return Err(ArchiveError::Io { path, source }),
        };
        serde_json::from_str(&text).map_err(|e| ArchiveError::InvalidManifest {
            path,
            message: e.to_string(),
        })
    }

    fn default_for(name: &str) -> Self {
        Self {
            created_on: None,
            description: None,
            runtime: default_runtime(),
            model: ModelSection {
                model_name: name.to_string(),
                model_version: default_version(),
                serialized_file: None,
                handler: None,
                model_file: None,
                requirements_file: None,
                config_file: None,
                description: None,
            },
            archiver_version: None,
        }
    }
}
