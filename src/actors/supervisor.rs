//! The Supervisor: one per process, the owner of the registry of models → versions →
//! ModelManager, with each model's default version. Every change (register, scale, unregister,
//! set-default) is a message to it; after each it publishes a new registry snapshot for readers
//! and writes a config snapshot. It also restarts a ModelManager whose task died.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, AsyncContext, Context, Handler, Message};
use tokio::sync::watch;

use super::manager::{ScaleWorkers, Shutdown};
use super::model_queue::ModelQueue;
use super::pool::ModelHealth;
use super::registry::{ModelEntry, RegisteredModel, Registry, SharedRegistry};
use super::{ManagerError, ModelManager, ModelSpec};
use crate::snapshot::{SnapshotKind, SnapshotModel, SnapshotWriter};

/// How often the Supervisor looks for managers whose task died.
const MANAGER_CHECK_INTERVAL: Duration = Duration::from_secs(1);

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

/// What registering or scaling gives back: enough to wait for the workers to load.
#[derive(Debug, Clone)]
pub struct Registration {
    pub name: String,
    pub version: String,
    /// Workers asked for.
    pub workers: usize,
    pub startup_timeout: Duration,
    /// The manager's worker health, updated as workers load and die.
    pub health: watch::Receiver<ModelHealth>,
}

/// Scale a model version's workers.
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
#[rtype(result = "Result<Arc<ModelSpec>, ManagerError>")]
pub struct Unregister {
    pub model: String,
    pub version: Option<String>,
}

#[derive(Message)]
#[rtype(result = "Result<(), ManagerError>")]
pub struct SetDefault {
    pub model: String,
    pub version: String,
}

/// Write a snapshot of the registry now; answers once it is on disk.
#[derive(Message)]
#[rtype(result = "()")]
pub struct TakeSnapshot(pub SnapshotKind);

pub struct Supervisor {
    /// The registry as the Supervisor changes it; readers see `published`.
    registry: Registry,
    published: SharedRegistry,
    /// The worker counts last asked for, per (model, version), for snapshots.
    worker_counts: HashMap<(String, String), (usize, usize)>,
    /// Writes config snapshots after changes; None with `--ncs`.
    snapshots: Option<SnapshotWriter>,
}

impl Supervisor {
    pub fn new(published: SharedRegistry, snapshots: Option<SnapshotWriter>) -> Self {
        Self {
            registry: Registry::default(),
            published,
            worker_counts: HashMap::new(),
            snapshots,
        }
    }

    fn publish(&self) {
        self.published.store(Arc::new(self.registry.clone()));
    }

    fn entry(&self, model: &str, version: Option<&str>) -> Result<Arc<ModelEntry>, ManagerError> {
        self.registry.lookup(model, version).cloned()
    }

    fn registration(&self, entry: &ModelEntry) -> Registration {
        let spec = &entry.spec;
        let (min, _) = self.counts(spec);
        Registration {
            name: spec.name.clone(),
            version: spec.version.clone(),
            workers: min,
            startup_timeout: spec.settings.startup_timeout,
            health: entry.health.clone(),
        }
    }

    fn counts(&self, spec: &ModelSpec) -> (usize, usize) {
        self.worker_counts
            .get(&(spec.name.clone(), spec.version.clone()))
            .copied()
            .unwrap_or((spec.settings.min_workers, spec.settings.max_workers))
    }

    /// The registry as TorchServe's `model_snapshot` lists it.
    fn snapshot_models(&self) -> BTreeMap<String, BTreeMap<String, SnapshotModel>> {
        self.registry
            .models
            .iter()
            .map(|(name, model)| {
                let versions: BTreeMap<String, SnapshotModel> = model
                    .versions
                    .iter()
                    .filter(|(_, entry)| !entry.spec.origin.in_workflow)
                    .map(|(version, entry)| {
                        let spec = &entry.spec;
                        let snapshot = SnapshotModel::new(
                            &spec.settings,
                            self.counts(spec),
                            *version == model.default_version,
                            &spec.origin.store_name,
                            &spec.runtime,
                        );
                        (version.clone(), snapshot)
                    })
                    .collect();
                (name.clone(), versions)
            })
            .filter(|(_, versions)| !versions.is_empty())
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

    /// Restarts, from their specs, the managers whose task died (a panic is not a stop, so actix
    /// cannot restart them). Their queues and registrations are kept.
    fn revive_dead_managers(&mut self) {
        let dead: Vec<Arc<ModelEntry>> = self
            .registry
            .entries()
            .filter(|entry| !entry.manager.connected())
            .cloned()
            .collect();
        if dead.is_empty() {
            return;
        }
        for entry in dead {
            log::error!("{}: model manager died; starting a new one", entry.spec.label());
            let counts = self.counts(&entry.spec);
            let revived = start_manager(entry.spec.clone(), entry.queue.clone(), counts);
            self.insert(revived, false);
        }
        self.publish();
    }

    fn insert(&mut self, entry: ModelEntry, make_default: bool) {
        let (name, version) = (entry.spec.name.clone(), entry.spec.version.clone());
        let model = self.registry.models.entry(name).or_insert_with(|| RegisteredModel {
            default_version: version.clone(),
            versions: BTreeMap::new(),
        });
        if make_default {
            model.default_version = version.clone();
        }
        model.versions.insert(version, Arc::new(entry));
    }
}

/// Starts a model version's manager, with a fresh health channel. It stops only when
/// unregistered; one that dies (a panic) is revived by [`Supervisor::revive_dead_managers`],
/// the one recovery path, so nothing restarts a manager that was stopped on purpose.
fn start_manager(spec: Arc<ModelSpec>, queue: Arc<ModelQueue>, workers: (usize, usize)) -> ModelEntry {
    let (health_sender, health) = watch::channel(ModelHealth::default());
    let manager = ModelManager::new(spec.clone(), queue.clone(), workers, health_sender).start();
    ModelEntry {
        spec,
        queue,
        manager,
        health,
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(MANAGER_CHECK_INTERVAL, |supervisor, _| supervisor.revive_dead_managers());
    }
}

/// Restarted by actix's Supervisor if it ever stops while still addressed; the registry is the
/// actor's own state, so it survives the restart.
impl actix::Supervised for Supervisor {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        log::warn!("supervisor restarting with {} models", self.registry.models.len());
    }
}

impl Handler<Register> for Supervisor {
    type Result = Result<Registration, ManagerError>;

    fn handle(&mut self, register: Register, _ctx: &mut Context<Self>) -> Self::Result {
        let spec = Arc::new(register.spec);
        if self.registry.lookup(&spec.name, Some(&spec.version)).is_ok() {
            return Err(ManagerError::AlreadyRegistered {
                model: spec.name.clone(),
                version: spec.version.clone(),
            });
        }
        let counts = (spec.settings.min_workers, spec.settings.max_workers);
        self.worker_counts.insert((spec.name.clone(), spec.version.clone()), counts);
        let queue = Arc::new(ModelQueue::new(spec.queue_settings()));
        let entry = start_manager(spec, queue, counts);
        let registration = self.registration(&entry);
        self.insert(entry, register.make_default);
        self.publish();
        if register.snapshot {
            self.save_snapshot(SnapshotKind::Snapshot);
        }
        Ok(registration)
    }
}

impl Handler<Scale> for Supervisor {
    type Result = Result<Registration, ManagerError>;

    fn handle(&mut self, scale: Scale, _ctx: &mut Context<Self>) -> Self::Result {
        self.revive_dead_managers();
        let entry = self.entry(&scale.model, scale.version.as_deref())?;
        let (min, max) = (scale.min, scale.max.max(scale.min));
        let key = (entry.spec.name.clone(), entry.spec.version.clone());
        self.worker_counts.insert(key, (min, max));
        entry.manager.do_send(ScaleWorkers { min, max });
        let registration = self.registration(&entry);
        self.save_snapshot(SnapshotKind::Snapshot);
        Ok(registration)
    }
}

impl Handler<Unregister> for Supervisor {
    type Result = Result<Arc<ModelSpec>, ManagerError>;

    fn handle(&mut self, unregister: Unregister, _ctx: &mut Context<Self>) -> Self::Result {
        let name = unregister.model;
        let model = self
            .registry
            .models
            .get_mut(&name)
            .ok_or_else(|| ManagerError::ModelNotFound(name.clone()))?;
        let version = unregister
            .version
            .unwrap_or_else(|| model.default_version.clone());
        if !model.versions.contains_key(&version) {
            return Err(ManagerError::VersionNotFound { model: name, version });
        }
        if version == model.default_version && model.versions.len() > 1 {
            return Err(ManagerError::CannotRemoveDefault(name));
        }
        let Some(entry) = model.versions.remove(&version) else {
            return Err(ManagerError::VersionNotFound { model: name, version });
        };
        if model.versions.is_empty() {
            self.registry.models.remove(&name);
        }
        self.worker_counts.remove(&(name, version));
        // The manager refuses what is queued and retires its workers as their batches end; it
        // goes away once nothing addresses it.
        entry.manager.do_send(Shutdown);
        self.publish();
        self.save_snapshot(SnapshotKind::Snapshot);
        Ok(entry.spec.clone())
    }
}

impl Handler<SetDefault> for Supervisor {
    type Result = Result<(), ManagerError>;

    fn handle(&mut self, set: SetDefault, _ctx: &mut Context<Self>) -> Self::Result {
        let model = self
            .registry
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
        self.publish();
        self.save_snapshot(SnapshotKind::Snapshot);
        Ok(())
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

    use actix::Supervisor as ActixSupervisor;

    use super::*;
    use crate::actors::registry::shared_registry;
    use crate::actors::Job;
    use crate::request::InferenceRequest;
    use crate::settings::{ModelSettings, Overrides, ServerDefaults};

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

    fn spec_without_workers() -> ModelSpec {
        let server = ServerDefaults {
            workers: 0,
            gpus: 0,
            job_queue_size: 10,
            response_timeout: Duration::from_secs(120),
            startup_timeout: Duration::from_secs(120),
        };
        let settings = ModelSettings::resolve(&server, &Default::default(), &Default::default(), &Overrides::default());
        let handler: crate::actors::HandlerFactory =
            Arc::new(|_| Err(crate::handlers::ModelError::BadInput("unused".into())));
        ModelSpec::new("m", "1.0", PathBuf::from("m.pt"), handler, settings)
    }

    #[test]
    fn a_dead_manager_is_restarted_and_the_registry_kept() {
        actix::System::new().block_on(async {
            let registry = shared_registry();
            let supervisor = ActixSupervisor::start({
                let registry = registry.clone();
                move |_| Supervisor::new(registry, None)
            });
            let register = Register { spec: spec_without_workers(), make_default: false, snapshot: false };
            supervisor.send(register).await.unwrap().unwrap();
            let first = registry.load().lookup("m", None).unwrap().manager.clone();

            first.do_send(Crash);
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(!first.connected(), "the panic ended the manager");

            // The next control message (or the periodic check) starts a new one.
            let scaled = supervisor
                .send(Scale { model: "m".into(), version: None, min: 0, max: 0 })
                .await
                .unwrap();
            assert!(scaled.is_ok());
            let second = registry.load().lookup("m", None).unwrap().clone();
            assert!(second.manager.connected());
            // No workers: the new manager closed the queue to predictions, with TorchServe's answer.
            tokio::time::sleep(Duration::from_millis(100)).await;
            let (job, _answer) = Job::new(InferenceRequest::from_body("[1.0]".into()));
            let refused = second.queue.submit(job, false).unwrap_err();
            assert!(matches!(refused, ManagerError::NoWorkers { .. }), "{refused:?}");
        });
    }
}
