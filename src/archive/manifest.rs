//! `MAR-INF/MANIFEST.json`, as written by torch-model-archiver and read by TorchServe.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ArchiveError;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_on: Option<String>,
    #[serde(default = "default_runtime")]
    pub runtime: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub model: ModelSection,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archiver_version: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelSection {
    // Field order is torch-model-archiver's key order in MANIFEST.json.
    pub model_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serialized_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    /// Present for eager-mode archives: a Python file defining the model class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_file: Option<String>,
    #[serde(default = "default_version")]
    pub model_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requirements_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The runtimes a manifest may name (`torch-model-archiver --runtime`, the register call's
/// `runtime`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Runtime {
    Python,
    Python3,
    #[value(name = "LSP")]
    Lsp,
}

impl Runtime {
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Python => "python",
            Runtime::Python3 => "python3",
            Runtime::Lsp => "LSP",
        }
    }

    /// Parses a runtime name exactly as written (TorchServe's `RuntimeType.fromValue`).
    pub fn parse(name: &str) -> Option<Self> {
        <Self as clap::ValueEnum>::from_str(name, false).ok()
    }
}

fn default_runtime() -> String {
    "python".to_string()
}

/// TorchServe sets `modelVersion` to "1.0" when an archive has none.
fn default_version() -> String {
    "1.0".to_string()
}

impl Manifest {
    /// Reads `dir/MAR-INF/MANIFEST.json`. (TorchServe falls back to an empty manifest, which
    /// names no model file and so cannot be served by tserve: a missing manifest is an error.)
    pub fn read_dir(dir: &Path) -> Result<Self, ArchiveError> {
        let path = dir.join("MAR-INF").join("MANIFEST.json");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ArchiveError::InvalidManifest {
                    path,
                    message: "the archive has no MAR-INF/MANIFEST.json".into(),
                })
            }
            Err(source) => return Err(ArchiveError::Io { path, source }),
        };
        Self::parse(&text).map_err(|message| ArchiveError::InvalidManifest { path, message })
    }

    /// Parses MANIFEST.json's text; a manifest must name its model.
    pub fn parse(text: &str) -> Result<Self, String> {
        let manifest: Self = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if manifest.model.model_name.is_empty() {
            return Err("Model name is not defined.".into());
        }
        Ok(manifest)
    }

    /// The manifest as torch-model-archiver writes it: `json.dumps(indent=2)`, which escapes
    /// non-ASCII characters and ends without a newline.
    pub fn to_json(&self) -> String {
        let pretty = serde_json::to_string_pretty(self).unwrap_or_default();
        let mut ascii = String::with_capacity(pretty.len());
        for c in pretty.chars() {
            if c.is_ascii() {
                ascii.push(c);
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    ascii.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
        ascii
    }
}

#[cfg(test)]
mod arbitrary_input {
    //! Arbitrary MANIFEST.json text, and manifests with arbitrary values in their known fields:
    //! each gives a manifest or an error, never a panic, and a manifest read writes back to the
    //! same manifest. `PROPTEST_CASES` raises the case count for a longer run.
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    fn any_field() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "\\PC{0,12}".prop_map(Value::from),
            Just(json!(["a"])),
            Just(json!({"x": 1})),
        ]
    }

    proptest! {
        #![proptest_config(crate::property_tests::config())]
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,256}") {
            let _ = Manifest::parse(&text);
        }

        #[test]
        fn arbitrary_fields_read_and_write_back(
            name in any_field(), file in any_field(), handler in any_field(),
            version in any_field(), runtime in any_field(),
        ) {
            let text = json!({
                "runtime": runtime,
                "model": {"modelName": name, "serializedFile": file, "handler": handler, "modelVersion": version},
            })
            .to_string();
            if let Ok(manifest) = Manifest::parse(&text) {
                prop_assert!(!manifest.model.model_name.is_empty());
                let again = Manifest::parse(&manifest.to_json()).map_err(TestCaseError::fail)?;
                prop_assert_eq!(again.to_json(), manifest.to_json());
            }
        }
    }
}
