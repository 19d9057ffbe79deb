//! The Supervisor: one per process, the registry of models → versions → ModelManager, with each
//! model's default version. HTTP handlers ask it where a model lives ([`Route`], [`Lookup`]),
//! whether all models are healthy ([`CheckHealth`]), and for every management change; nobody
//! else holds or scans the registry. After each change it writes a config snapshot.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr, Context, Handler, Message};
use tokio::sync::watch;

use super::manager::{ModelHealth, ScaleWorkers, Shutdown};
use super::{ManagerError, ModelManager, ModelSpec};
use crate::snapshot::{SnapshotKind, SnapshotModel, SnapshotWriter};

/// Start a ModelManager for a model version.
#[derive(Message)]
#[rtype(result = "Result<Registration, ManagerError>")]
pub struct Register {
    pub spec: ModelSpec,
    /// Make it the model's default version (a snapshot restore says which one was).
    pub make_default: bool,
    /// Write a snapshot after it: yes for the management API; at start-up the start-up
    /// snapshot covers every model at once.
    pub snapshot: bool,
}

impl Register {
    /// A registration through the management API.
    pub fn new(spec: ModelSpec) -> Self {
        Self {
            spec,
            make_default: false,
            snapshot: true,
        }
    }

    /// A model loaded at start-up (`--models`, or a snapshot restore).
    pub fn at_startup(spec: ModelSpec, make_default: bool) -> Self {
        Self {
            spec,
            make_default,
            snapshot: false,
        }
    }
}

/// What registering gives back: enough to wait for the workers to load.
#[derive(Debug)]
pub struct Registration {
    pub name: String,
    pub version: String,
    pub workers: usize,
    pub startup_timeout: Duration,
    /// The manager's worker health, updated as workers load and die.
    pub health: watch::Receiver<ModelHealth>,
}

/// Which manager serves `model` (at `version`, or its default version).
#[derive(Message)]
#[rtype(result = "Result<RouteTo, ManagerError>")]
pub struct Route {
    pub model: String,
    pub version: Option<String>,
}

pub struct RouteTo {
    pub manager: Addr<ModelManager>,
}

/// The managers of a model's versions: the default one, a named one, or all.
#[derive(Message)]
#[rtype(result = "Result<Vec<Addr<ModelManager>>, ManagerError>")]
pub struct Lookup {
    pub model: String,
    pub versions: VersionSelector,
}

pub enum VersionSelector {
    Default,
    Named(String),
    All,
}

/// True while every model version has at least its minimum of ready workers.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct CheckHealth;

/// Scale a model version's workers; answers its health channel, to wait on.
#[derive(Message)]
#[rtype(result = "Result<Registration, ManagerError>")]
pub struct Scale {
    pub model: String,
    pub version: Option<String>,
    pub min: usize,
    pub max: usize,
}

/// Remove a model version (its default version when none is named).
#[derive(Message)]
#[rtype(result = "Result<Unregistered, ManagerError>")]
pub struct Unregister {
    pub model: String,
    pub version: Option<String>,
}

pub struct Unregistered {
    pub spec: Arc<ModelSpec>,
}

#[derive(Message)]
#[rtype(result = "Result<(), ManagerError>")]
pub struct SetDefault {
    pub model: String,
    pub version: String,
}

/// Every model's default version: (name, modelUrl), sorted by name.
#[derive(Message)]
#[rtype(result = "Vec<(String, String)>")]
pub struct ListModels;

/// Whether a model's default version has any worker (KServe v1 readiness).
#[derive(Message)]
#[rtype(result = "Result<bool, ManagerError>")]
pub struct Readiness(pub String);

/// Write a snapshot of the registry now; answers once it is on disk.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TakeSnapshot(pub SnapshotKind);

struct RegisteredVersion {
    /// Kept to start the manager again should it die.
    spec: Arc<ModelSpec>,
    manager: Addr<ModelManager>,
    health: watch::Receiver<ModelHealth>,
    /// The worker counts last asked for, for snapshots.
    min_workers: usize,
    max_workers: usize,
}

struct RegisteredModel {
    /// The version `/predictions/{model}` goes to: the first one registered, as in TorchServe.
    default_version: String,
    versions: BTreeMap<String, RegisteredVersion>,
}

#[derive(Default)]
pub struct Supervisor {
    models: HashMap<String, RegisteredModel>,
    /// Writes config snapshots after changes; None with `--ncs`.
    snapshots: Option<SnapshotWriter>,
}

impl Supervisor {
    pub fn new(snapshots: Option<SnapshotWriter>) -> Self {
        Self {
            models: HashMap::new(),
            snapshots,
        }
    }

    fn version_mut(
        &mut self,
        model: &str,
        version: Option<&str>,
    ) -> Result<&mut RegisteredVersion, ManagerError> {
        let registered = self
            .models
            .get_mut(model)
            .ok_or_else(|| ManagerError::ModelNotFound(model.to_string()))?;
        let version = version.unwrap_or(&registered.default_version).to_string();
        registered
            .versions
            .get_mut(&version)
            .ok_or_else(|| ManagerError::VersionNotFound {
                model: model.to_string(),
                version,
            })
    }

    /// The registry as TorchServe's `model_snapshot` lists it.
    fn snapshot_models(&self) -> BTreeMap<String, BTreeMap<String, SnapshotModel>> {
        self.models
            .iter()
            .map(|(name, model)| {
                let versions = model
                    .versions
                    .iter()
                    .map(|(version, entry)| {
                        let spec = &entry.spec;
                        let settings = SnapshotModel {
                            default_version: *version == model.default_version,
                            mar_name: spec.origin.store_name.clone(),
                            min_workers: entry.min_workers,
                            max_workers: entry.max_workers,
                            batch_size: spec.batch_size,
                            max_batch_delay: spec.max_batch_delay.as_millis() as u64,
                            response_timeout: spec.response_timeout.as_secs(),
                            startup_timeout: spec.startup_timeout.as_secs(),
                            runtime_type: spec.runtime.clone(),
                        };
                        (version.clone(), settings)
                    })
                    .collect();
                (name.clone(), versions)
            })
            .collect()
    }

    /// Writes a snapshot off the actor's thread (file I/O blocks); the handle says when done.
    /// The name is fixed here, in the order of the changes.
    fn save_snapshot(&mut self, kind: SnapshotKind) -> Option<tokio::task::JoinHandle<()>> {
        let name = self.snapshots.as_mut()?.next_name(kind);
        let writer = self.snapshots.clone()?;
        let models = self.snapshot_models();
        Some(tokio::task::spawn_blocking(move || {
            if let Err(e) = writer.write(name, models) {
                log::error!("cannot write config snapshot: {e}");
            }
        }))
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;
}

/// Restarted by actix's Supervisor if it ever stops while still addressed; the registry is the
/// actor's own state, so it survives the restart.
impl actix::Supervised for Supervisor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        log::warn!("supervisor restarting with {} models", self.models.len());
    }
}

/// Starts a model version's manager under actix supervision (a manager that stops is restarted
/// with its state), with a fresh health channel.
fn start_manager(
    spec: &Arc<ModelSpec>,
    workers: (usize, usize),
) -> (Addr<ModelManager>, watch::Receiver<ModelHealth>) {
    let (health_sender, health) = watch::channel(ModelHealth::default());
    let spec = spec.clone();
    let manager = actix::Supervisor::start(move |_| ModelManager::new(spec, workers, health_sender));
    (manager, health)
}

impl RegisteredVersion {
    /// A manager whose task died (a panic is not a stop, so actix cannot restart it) is started
    /// again from its spec; its jobs were lost with it, its registration is not.
    fn ensure_alive(&mut self) {
        if !self.manager.connected() {
            log::error!(
                "{}_{}: model manager died; starting a new one",
                self.spec.name,
                self.spec.version
            );
            (self.manager, self.health) =
                start_manager(&self.spec, (self.min_workers, self.max_workers));
        }
    }

    fn registration(&self) -> Registration {
        Registration {
            name: self.spec.name.clone(),
            version: self.spec.version.clone(),
            workers: self.min_workers,
            startup_timeout: self.spec.startup_timeout,
            health: self.health.clone(),
        }
    }
}

impl Handler<Register> for Supervisor {
    type Result = Result<Registration, ManagerError>;

    fn handle(&mut self, register: Register, _ctx: &mut Context<Self>) -> Self::Result {
        let spec = Arc::new(register.spec);
        let (name, version) = (spec.name.clone(), spec.version.clone());
        if self
            .models
            .get(&name)
            .is_some_and(|model| model.versions.contains_key(&version))
        {
            return Err(ManagerError::AlreadyRegistered {
                model: name,
                version,
            });
        }
        let (manager, health) = start_manager(&spec, (spec.min_workers, spec.max_workers));
        let entry = RegisteredVersion {
            min_workers: spec.min_workers,
            max_workers: spec.max_workers,
            spec,
            manager,
            health,
        };
        let registration = entry.registration();
        let model = self.models.entry(name).or_insert_with(|| RegisteredModel {
            default_version: version.clone(),
            versions: BTreeMap::new(),
        });
        if register.make_default {
            model.default_version = version.clone();
        }
        model.versions.insert(version, entry);
        if register.snapshot {
            self.save_snapshot(SnapshotKind::Snapshot);
        }
        Ok(registration)
    }
}

impl Handler<Route> for Supervisor {
    type Result = Result<RouteTo, ManagerError>;

    fn handle(&mut self, route: Route, _ctx: &mut Context<Self>) -> Self::Result {
        let entry = self.version_mut(&route.model, route.version.as_deref())?;
        entry.ensure_alive();
        Ok(RouteTo {
            manager: entry.manager.clone(),
        })
    }
}

impl Handler<Lookup> for Supervisor {
    type Result = Result<Vec<Addr<ModelManager>>, ManagerError>;

    fn handle(&mut self, lookup: Lookup, _ctx: &mut Context<Self>) -> Self::Result {
        let version = match lookup.versions {
            VersionSelector::Default => None,
            VersionSelector::Named(version) => Some(version),
            VersionSelector::All => {
                let model = self
                    .models
                    .get_mut(&lookup.model)
                    .ok_or_else(|| ManagerError::ModelNotFound(lookup.model.clone()))?;
                return Ok(model
                    .versions
                    .values_mut()
                    .map(|entry| {
                        entry.ensure_alive();
                        entry.manager.clone()
                    })
                    .collect());
            }
        };
        let entry = self.version_mut(&lookup.model, version.as_deref())?;
        entry.ensure_alive();
        Ok(vec![entry.manager.clone()])
    }
}

impl Handler<CheckHealth> for Supervisor {
    type Result = bool;

    fn handle(&mut self, _: CheckHealth, _ctx: &mut Context<Self>) -> bool {
        self.models
            .values_mut()
            .flat_map(|model| model.versions.values_mut())
            .all(|entry| {
                entry.ensure_alive();
                let health = *entry.health.borrow();
                health.ready >= health.min_workers
            })
    }
}

impl Handler<Scale> for Supervisor {
    type Result = Result<Registration, ManagerError>;

    fn handle(&mut self, scale: Scale, _ctx: &mut Context<Self>) -> Self::Result {
        let entry = self.version_mut(&scale.model, scale.version.as_deref())?;
        entry.ensure_alive();
        (entry.min_workers, entry.max_workers) = (scale.min, scale.max.max(scale.min));
        entry.manager.do_send(ScaleWorkers {
            min: entry.min_workers,
            max: entry.max_workers,
        });
        let registration = entry.registration();
        self.save_snapshot(SnapshotKind::Snapshot);
        Ok(registration)
    }
}

impl Handler<Unregister> for Supervisor {
    type Result = Result<Unregistered, ManagerError>;

    fn handle(&mut self, unregister: Unregister, _ctx: &mut Context<Self>) -> Self::Result {
        let name = unregister.model;
        let model = self
            .models
            .get_mut(&name)
            .ok_or_else(|| ManagerError::ModelNotFound(name.clone()))?;
        let version = unregister
            .version
            .unwrap_or_else(|| model.default_version.clone());
        if !model.versions.contains_key(&version) {
            return Err(ManagerError::VersionNotFound {
                model: name,
                version,
            });
        }
        if version == model.default_version && model.versions.len() > 1 {
            return Err(ManagerError::CannotRemoveDefault(name));
        }
        let Some(entry) = model.versions.remove(&version) else {
            return Err(ManagerError::VersionNotFound { model: name, version });
        };
        if model.versions.is_empty() {
            self.models.remove(&name);
        }
        // The manager refuses what is queued and retires its workers as their batches end; it
        // goes away once nothing addresses it.
        entry.manager.do_send(Shutdown);
        self.save_snapshot(SnapshotKind::Snapshot);
        Ok(Unregistered { spec: entry.spec })
    }
}

impl Handler<SetDefault> for Supervisor {
    type Result = Result<(), ManagerError>;

    fn handle(&mut self, set: SetDefault, _ctx: &mut Context<Self>) -> Self::Result {
        let model = self
            .models
            .get_mut(&set.model)
            .ok_or_else(|| ManagerError::ModelNotFound(set.model.clone()))?;
        if !model.versions.contains_key(&set.version) {
            return Err(ManagerError::NoSuchDefaultVersion {
                model: set.model,
                version: set.version,
            });
        }
        model.default_version = set.version;
        self.save_snapshot(SnapshotKind::Snapshot);
        Ok(())
    }
}

impl Handler<ListModels> for Supervisor {
    type Result = Vec<(String, String)>;

    fn handle(&mut self, _: ListModels, _ctx: &mut Context<Self>) -> Self::Result {
        let mut models: Vec<(String, String)> = self
            .models
            .iter()
            .filter_map(|(name, model)| {
                let entry = model.versions.get(&model.default_version)?;
                Some((name.clone(), entry.spec.origin.url.clone()))
            })
            .collect();
        models.sort();
        models
    }
}

impl Handler<Readiness> for Supervisor {
    type Result = Result<bool, ManagerError>;

    fn handle(&mut self, Readiness(model): Readiness, _ctx: &mut Context<Self>) -> Self::Result {
        let entry = self.version_mut(&model, None)?;
        Ok(entry.health.borrow().ready > 0)
    }
}

impl Handler<TakeSnapshot> for Supervisor {
    type Result = actix::ResponseFuture<()>;

    fn handle(&mut self, TakeSnapshot(kind): TakeSnapshot, _ctx: &mut Context<Self>) -> Self::Result {
        let written = self.save_snapshot(kind);
        Box::pin(async move {
            if let Some(written) = written {
                let _ = written.await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use actix::{Message, Supervisor as ActixSupervisor};
    use bytes::Bytes;

    use super::*;
    use crate::actors::{Enqueue, Job};

    /// Test-only: makes a manager's handler panic, which kills the actor's task.
    #[derive(Message)]
    #[rtype(result = "()")]
    struct Crash;

    impl Handler<Crash> for ModelManager {
        type Result = ();
        fn handle(&mut self, _: Crash, _ctx: &mut Context<Self>) {
            panic!("injected manager crash");
        }
    }

    fn route() -> Route {
        Route {
            model: "m".into(),
            version: None,
        }
    }

    #[test]
    fn a_dead_manager_is_restarted_and_the_registry_kept() {
        actix::System::new().block_on(async {
            let supervisor = ActixSupervisor::start(|_| Supervisor::default());
            // No workers: nothing to load, yet the manager answers every Enqueue.
            let spec = ModelSpec::builder("m", "1.0", PathBuf::from("m.pt")).workers(0).build();
            supervisor.send(Register::new(spec)).await.unwrap().unwrap();
            let first = supervisor.send(route()).await.unwrap().unwrap().manager;

            first.do_send(Crash);
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(!first.connected(), "the panic ended the manager");

            let second = supervisor.send(route()).await.unwrap().unwrap().manager;
            assert!(second.connected());
            let (job, _answer) = Job::new(Bytes::from_static(b"[1.0]"));
            let answer = second.send(Enqueue(job)).await.expect("the new manager answers");
            assert!(matches!(answer, Err(ManagerError::NoWorkers { .. })), "{answer:?}");
        });
    }
}
