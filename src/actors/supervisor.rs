//! The Supervisor: one per process, the registry of models → versions → ModelManager. HTTP
//! handlers ask it where a model lives ([`Route`]) and whether all models are healthy
//! ([`CheckHealth`]); the registry is never scanned by anyone else.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr, Context, Handler, Message};
use tokio::sync::watch;

use super::manager::ModelHealth;
use super::{ManagerError, ModelManager, ModelSpec};

/// Start a ModelManager for a model version.
#[derive(Message)]
#[rtype(result = "Result<Registration, ManagerError>")]
pub struct Register(pub ModelSpec);

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

/// True while every model version has at least its minimum of ready workers.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct CheckHealth;

struct RegisteredVersion {
    /// Kept to start the manager again should it die.
    spec: Arc<ModelSpec>,
    manager: Addr<ModelManager>,
    health: watch::Receiver<ModelHealth>,
    min_workers: usize,
}

struct RegisteredModel {
    /// The version `/predictions/{model}` goes to: the first one registered, as in TorchServe.
    default_version: String,
    versions: BTreeMap<String, RegisteredVersion>,
}

#[derive(Default)]
pub struct Supervisor {
    models: HashMap<String, RegisteredModel>,
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

impl Handler<Register> for Supervisor {
    type Result = Result<Registration, ManagerError>;

    fn handle(&mut self, Register(spec): Register, _ctx: &mut Context<Self>) -> Self::Result {
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
        let spec = Arc::new(spec);
        let (manager, health) = start_manager(&spec);
        let registration = Registration {
            name: name.clone(),
            version: version.clone(),
            workers: spec.min_workers,
            startup_timeout: spec.startup_timeout,
            health: health.clone(),
        };
        let entry = RegisteredVersion {
            min_workers: spec.min_workers,
            spec,
            manager,
            health,
        };
        self.models
            .entry(name)
            .or_insert_with(|| RegisteredModel {
                default_version: version.clone(),
                versions: BTreeMap::new(),
            })
            .versions
            .insert(version, entry);
        Ok(registration)
    }
}

/// Starts a model version's manager under actix supervision (a manager that stops is restarted
/// with its state), with a fresh health channel.
fn start_manager(spec: &Arc<ModelSpec>) -> (Addr<ModelManager>, watch::Receiver<ModelHealth>) {
    let (health_sender, health) = watch::channel(ModelHealth::default());
    let spec = spec.clone();
    let manager = actix::Supervisor::start(move |_| ModelManager::new(spec, health_sender));
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
            (self.manager, self.health) = start_manager(&self.spec);
        }
    }
}

impl Handler<Route> for Supervisor {
    type Result = Result<RouteTo, ManagerError>;

    fn handle(&mut self, route: Route, _ctx: &mut Context<Self>) -> Self::Result {
        let model = self
            .models
            .get_mut(&route.model)
            .ok_or_else(|| ManagerError::ModelNotFound(route.model.clone()))?;
        let version = route.version.as_ref().unwrap_or(&model.default_version);
        let entry = model
            .versions
            .get_mut(version)
            .ok_or_else(|| ManagerError::VersionNotFound {
                model: route.model.clone(),
                version: version.clone(),
            })?;
        entry.ensure_alive();
        Ok(RouteTo {
            manager: entry.manager.clone(),
        })
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
                entry.health.borrow().ready >= entry.min_workers
            })
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

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
            supervisor.send(Register(spec)).await.unwrap().unwrap();
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
