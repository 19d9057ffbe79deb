//! The registry of served model versions as an immutable snapshot. The Supervisor owns the
//! registry and publishes a new snapshot after every change; readers (every prediction, /ping,
//! list, describe) load the current one without a lock or an actor message.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use actix::Addr;
use arc_swap::ArcSwap;
use tokio::sync::watch;

use super::model_queue::ModelQueue;
use super::pool::ModelHealth;
use super::{ManagerError, ModelManager, ModelSpec};

/// One registered model version.
pub struct ModelEntry {
    pub spec: Arc<ModelSpec>,
    /// Where its jobs go.
    pub queue: Arc<ModelQueue>,
    /// Its manager, for describe.
    pub manager: Addr<ModelManager>,
    /// Its workers' health, as the manager publishes it.
    pub health: watch::Receiver<ModelHealth>,
}

/// The versions of one model.
#[derive(Clone)]
pub struct RegisteredModel {
    /// The version `/predictions/{model}` goes to: the first one registered, as in TorchServe,
    /// until set-default changes it.
    pub default_version: String,
    pub versions: BTreeMap<String, Arc<ModelEntry>>,
}

/// Which versions of a model a lookup wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSelector {
    Default,
    Named(String),
    All,
}

impl VersionSelector {
    /// A path's optional version segment: none is the default version, `all` is every one.
    pub fn from_path(version: Option<String>) -> Self {
        match version {
            None => VersionSelector::Default,
            Some(v) if v == "all" => VersionSelector::All,
            Some(v) => VersionSelector::Named(v),
        }
    }
}

/// A snapshot of the registry.
#[derive(Clone, Default)]
pub struct Registry {
    pub models: HashMap<String, RegisteredModel>,
}

impl Registry {
    /// The entry serving `model` at `version`, or at its default version.
    pub fn lookup(&self, model: &str, version: Option<&str>) -> Result<&Arc<ModelEntry>, ManagerError> {
        let registered = self
            .models
            .get(model)
            .ok_or_else(|| ManagerError::ModelNotFound(model.to_string()))?;
        let version = version.unwrap_or(&registered.default_version);
        registered
            .versions
            .get(version)
            .ok_or_else(|| ManagerError::VersionNotFound {
                model: model.to_string(),
                version: version.to_string(),
            })
    }

    /// The entries a selector names, in version order for `All`.
    pub fn select(&self, model: &str, versions: &VersionSelector) -> Result<Vec<Arc<ModelEntry>>, ManagerError> {
        match versions {
            VersionSelector::Default => Ok(vec![self.lookup(model, None)?.clone()]),
            VersionSelector::Named(version) => Ok(vec![self.lookup(model, Some(version))?.clone()]),
            VersionSelector::All => self
                .models
                .get(model)
                .map(|registered| registered.versions.values().cloned().collect())
                .ok_or_else(|| ManagerError::ModelNotFound(model.to_string())),
        }
    }

    /// Every model's default version.
    pub fn defaults(&self) -> impl Iterator<Item = (&String, &Arc<ModelEntry>)> {
        self.models
            .iter()
            .filter_map(|(name, model)| Some((name, model.versions.get(&model.default_version)?)))
    }

    pub fn entries(&self) -> impl Iterator<Item = &Arc<ModelEntry>> {
        self.models.values().flat_map(|model| model.versions.values())
    }
}

/// Where the current snapshot is published: written by the Supervisor, read by everyone.
pub type SharedRegistry = Arc<ArcSwap<Registry>>;

pub fn shared_registry() -> SharedRegistry {
    Arc::new(ArcSwap::from_pointee(Registry::default()))
}
