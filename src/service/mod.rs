//! The model service: the one handle HTTP (and start-up) holds to serve models. It hides the
//! actor topology: a prediction reads the Supervisor's published registry and submits one job to
//! its model's queue; control operations are messages to the Supervisor. Every wait has its
//! deadline here.

mod describe;
mod error;
pub mod messages;
mod metadata;
mod python;
mod register;
mod startup;
mod workflows;

use std::sync::Arc;
use std::time::Duration;

use actix::{Addr, Message};

use crate::actors::{
    shared_registry, Answers, Job, ManagerError, Registration, Scale, SetDefault, SharedRegistry, Supervisor,
    TakeSnapshot, Unregister,
};
use crate::config::Config;
use crate::metrics::{Metrics, ModelGauges, ModelMetrics};
use crate::handlers::ModelError;
use crate::request::{Body, InferenceRequest, Prediction};
use crate::tensor::TensorData;
use crate::snapshot::{SnapshotKind, SnapshotWriter};

pub use describe::DescribeModel;
pub use error::ServiceError;
pub use metadata::{ModelInfo, ModelMetadata, TensorMetadata};
pub use register::{RegisterRequest, Registered};
pub use workflows::RegisterWorkflow;
pub use crate::actors::VersionSelector;

/// A prediction's answer: whole, or streamed by a handler that sends intermediate answers.
pub enum Answer {
    Whole(Prediction),
    /// The first part (whose status, content type and headers are the answer's), and the rest.
    Streamed { head: Prediction, rest: AnswerStream },
}

/// The parts of a streamed answer after the first, its last answer at the end.
pub struct AnswerStream {
    parts: tokio::sync::mpsc::Receiver<Prediction>,
    last: Option<tokio::sync::oneshot::Receiver<crate::actors::JobResult>>,
    pending: Option<Pending>,
}

impl AnswerStream {
    /// The next part; the last answer (or the error that ended the stream) comes last, then
    /// `None`.
    pub async fn next(&mut self) -> Option<Result<Prediction, ServiceError>> {
        if let Some(part) = self.parts.recv().await {
            return Some(Ok(part));
        }
        let last = self.last.take()?.await;
        let pending = self.pending.take()?;
        Some(Self::finish(pending, last))
    }

    /// The last answer, counted as answered.
    fn finish(
        mut pending: Pending,
        last: Result<crate::actors::JobResult, tokio::sync::oneshot::error::RecvError>,
    ) -> Result<Prediction, ServiceError> {
        let answer = last.map_err(|_| ManagerError::WorkerDied)?;
        pending.answered();
        Ok(answer?)
    }
}

/// The output tensors of a native model's answer to typed input. An answer of another kind is
/// an invalid model output, as the model layer counts one.
pub fn output_tensors(prediction: Prediction) -> Result<Vec<TensorData>, ServiceError> {
    match prediction.body {
        Body::Tensors(outputs) => Ok(outputs),
        _ => Err(ModelError::InvalidOutput("the model answered without tensors".into()).into()),
    }
}

/// How long a control message may wait for the Supervisor or a manager before the caller is told
/// the server is busy.
const CONTROL_DEADLINE: Duration = Duration::from_secs(30);

/// The model (and version) a request names.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Target {
    pub model: String,
    pub version: Option<String>,
}

/// A model's default version, as the list API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSummary {
    pub name: String,
    pub url: String,
}

/// What a scale call did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scaled {
    /// Asked for; workers start (or stop) in the background.
    Accepted,
    /// The workers are up.
    Done,
}

/// The handle to the served models. Cheap to clone.
#[derive(Clone)]
pub struct Models {
    inner: Arc<Inner>,
}

struct Inner {
    supervisor: Addr<Supervisor>,
    registry: SharedRegistry,
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    workflows: workflows::Workflows,
}

impl Models {
    /// Starts the Supervisor on the current actix system.
    pub fn start(config: Arc<Config>, snapshots: Option<SnapshotWriter>, metrics: Arc<Metrics>) -> Self {
        let registry = shared_registry();
        let supervisor = {
            let registry = registry.clone();
            actix::Supervisor::start(move |_| Supervisor::new(registry, snapshots))
        };
        Self {
            inner: Arc::new(Inner {
                supervisor,
                registry,
                config,
                metrics,
                workflows: workflows::Workflows::default(),
            }),
        }
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Whether the target names a registered model version: checked before a request's body is
    /// read, so a request for an unknown model costs nothing more.
    pub fn check(&self, target: &Target) -> Result<(), ServiceError> {
        self.inner.registry.load().lookup(&target.model, target.version.as_deref())?;
        Ok(())
    }

    /// Runs one prediction: queued at once (a full queue or a model without workers refuses it
    /// at once), answered when a worker has run it. A streamed answer comes back whole, its
    /// parts joined. Dropping the future withdraws the job: a worker skips a job whose client
    /// has gone.
    pub async fn predict(&self, target: &Target, request: InferenceRequest) -> Result<Prediction, ServiceError> {
        match self.predict_streaming(target, request).await? {
            Answer::Whole(prediction) => Ok(prediction),
            Answer::Streamed { head, mut rest } => {
                let mut parts = vec![head];
                while let Some(part) = rest.next().await {
                    parts.push(part?);
                }
                Ok(Prediction::joined(parts))
            }
        }
    }

    /// Runs one prediction whose handler may stream (`send_intermediate_predict_response`):
    /// the answer is whole, or its first part with the rest to come. Dropping the answer (or
    /// the future) withdraws the job or, mid-stream, drops the parts still to come.
    pub async fn predict_streaming(&self, target: &Target, request: InferenceRequest) -> Result<Answer, ServiceError> {
        let version_named = target.version.is_some();
        let (answers, metrics) = {
            let registry = self.inner.registry.load();
            let entry = registry.lookup(&target.model, target.version.as_deref())?;
            // Only Python handlers stream; a native job needs no parts channel.
            let streams = matches!(entry.spec.backend, crate::actors::BackendSpec::Python(_));
            let (mut job, answers) = Job::with_answers(request, streams);
            job.version_named = version_named;
            entry.queue.submit(job, version_named)?;
            (answers, entry.spec.metrics.clone())
        };
        let pending = Pending::new(metrics, version_named);
        let Answers { parts, mut last } = answers;
        let Some(mut parts) = parts else {
            return AnswerStream::finish(pending, last.await).map(Answer::Whole);
        };
        // Bounded by construction: the manager answers every job it accepted, with `Worker
        // died.` once its batch overruns the response timeout (or, streaming, goes that long
        // without a part), or an error if it expires or the model loses its workers; a job
        // dropped unanswered answers `Worker died.` too. Parts come before the last answer, so
        // a part waiting is always taken first.
        let first = tokio::select! {
            biased;
            part = parts.recv() => part,
            last_answer = &mut last => return AnswerStream::finish(pending, last_answer).map(Answer::Whole),
        };
        match first {
            Some(head) => Ok(Answer::Streamed {
                head,
                rest: AnswerStream {
                    parts,
                    last: Some(last),
                    pending: Some(pending),
                },
            }),
            // No part, ever: the last answer has been sent (or dropped).
            None => AnswerStream::finish(pending, last.await).map(Answer::Whole),
        }
    }

    /// Runs one prediction of typed tensors on a native model (OIP, KServe v1), answered with
    /// the model's output tensors.
    pub async fn predict_tensors(&self, target: &Target, request: InferenceRequest) -> Result<Vec<TensorData>, ServiceError> {
        output_tensors(self.predict(target, request).await?)
    }

    /// The Prometheus page (`GET /metrics`), with the live gauges of every model version.
    pub fn metrics_page(&self, names: &[String]) -> String {
        let registry = self.inner.registry.load();
        let gauges: Vec<ModelGauges> = registry
            .entries()
            .map(|entry| {
                let health = *entry.health.borrow();
                ModelGauges {
                    model: entry.spec.name.clone(),
                    version: entry.spec.version.clone(),
                    queue_depth: entry.queue.depth().0,
                    in_flight: entry.spec.metrics.in_flight(),
                    workers_ready: health.ready,
                    workers_starting: health.starting,
                    workers_failed: health.min_workers.saturating_sub(health.ready + health.starting),
                }
            })
            .collect();
        self.inner.metrics.render(names, &gauges)
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// Healthy while every model version has at least its minimum of ready workers.
    pub fn health(&self) -> bool {
        self.inner
            .registry
            .load()
            .entries()
            .all(|entry| entry.health.borrow().is_healthy())
    }

    /// Whether a model's default version has a ready worker (KServe v1 readiness).
    pub fn readiness(&self, model: &str) -> Result<bool, ServiceError> {
        let registry = self.inner.registry.load();
        let entry = registry.lookup(model, None)?;
        let ready = entry.health.borrow().ready > 0;
        Ok(ready)
    }

    /// A model version as the OIP front door sees it: its versions, backend and readiness.
    pub fn model_info(&self, target: &Target) -> Result<ModelInfo, ServiceError> {
        let registry = self.inner.registry.load();
        let entry = registry.lookup(&target.model, target.version.as_deref())?;
        let versions = registry
            .models
            .get(&target.model)
            .map(|model| model.versions.keys().cloned().collect())
            .unwrap_or_default();
        Ok(ModelInfo::new(entry, versions))
    }

    /// OIP model metadata of a model version.
    pub async fn metadata(&self, target: &Target) -> Result<ModelMetadata, ServiceError> {
        Ok(metadata::metadata(self.model_info(target)?).await)
    }

    /// Every registered model version has a ready worker (OIP server readiness).
    pub fn all_ready(&self) -> bool {
        self.inner
            .registry
            .load()
            .entries()
            .all(|entry| entry.health.borrow().ready > 0)
    }

    /// Every model's default version, sorted by name.
    pub fn list(&self) -> Vec<ModelSummary> {
        let registry = self.inner.registry.load();
        let mut models: Vec<ModelSummary> = registry
            .defaults()
            .map(|(name, entry)| ModelSummary {
                name: name.clone(),
                url: entry.spec.origin.url.clone(),
            })
            .collect();
        models.sort_by(|a, b| a.name.cmp(&b.name));
        models
    }

    /// The live state of a model's versions: the default one, a named one, or `all`.
    pub async fn describe(&self, model: &str, versions: &VersionSelector) -> Result<Vec<DescribeModel>, ServiceError> {
        let entries = self.inner.registry.load().select(model, versions)?;
        let mut described = Vec::with_capacity(entries.len());
        for entry in entries {
            let status = self.control(&entry.manager, crate::actors::Describe).await?;
            described.push(describe::describe(&entry.spec, status).await);
        }
        Ok(described)
    }

    /// Changes a model version's worker count; with `synchronous`, waits for the workers.
    pub async fn scale(
        &self,
        target: &Target,
        min: i64,
        max: Option<i64>,
        synchronous: bool,
    ) -> Result<Scaled, ServiceError> {
        let max = max.unwrap_or(min);
        if max < min {
            return Err(ServiceError::BadRequest("max_worker cannot be less than min_worker.".into()));
        }
        if min < 0 {
            return Err(ServiceError::BadRequest("min_worker cannot be negative.".into()));
        }
        register::check_worker_count(max.max(min) as usize, self.inner.config.models.max_workers)?;
        let scale = Scale {
            model: target.model.clone(),
            version: target.version.clone(),
            min: min as usize,
            max: max as usize,
        };
        let registration = self.control(&self.inner.supervisor, scale).await??;
        if !synchronous {
            return Ok(Scaled::Accepted);
        }
        if wait_ready(registration).await {
            Ok(Scaled::Done)
        } else {
            Err(ServiceError::WorkersFailed {
                model: target.model.clone(),
                version: target.version.clone(),
            })
        }
    }

    /// Removes a model version (the default one when none is named), and the archive it was
    /// downloaded from, if any.
    pub async fn unregister(&self, target: &Target) -> Result<(), ServiceError> {
        let unregister = Unregister {
            model: target.model.clone(),
            version: target.version.clone(),
        };
        let spec = self.control(&self.inner.supervisor, unregister).await??;
        let downloaded = spec.origin.downloaded.clone();
        drop(spec);
        register::remove_download(downloaded).await;
        Ok(())
    }

    pub async fn set_default(&self, model: &str, version: &str) -> Result<(), ServiceError> {
        let set = SetDefault {
            model: model.to_string(),
            version: version.to_string(),
        };
        Ok(self.control(&self.inner.supervisor, set).await??)
    }

    /// Writes a config snapshot and waits until it is on disk.
    pub async fn snapshot(&self, kind: SnapshotKind) -> Result<(), ServiceError> {
        self.control(&self.inner.supervisor, TakeSnapshot(kind)).await
    }

    /// Sends a control message and waits for its answer, at most [`CONTROL_DEADLINE`].
    async fn control<A, M>(&self, actor: &Addr<A>, message: M) -> Result<M::Result, ServiceError>
    where
        A: actix::Actor + actix::Handler<M>,
        A::Context: actix::dev::ToEnvelope<A, M>,
        M: Message + Send + 'static,
        M::Result: Send,
    {
        match tokio::time::timeout(CONTROL_DEADLINE, actor.send(message)).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(ServiceError::Unavailable(e.to_string())),
            Err(_) => Err(ServiceError::Unavailable(format!(
                "no answer within {}s",
                CONTROL_DEADLINE.as_secs()
            ))),
        }
    }
}

/// A prediction accepted and not yet answered: its metrics are settled when it is answered, or
/// when its client goes away first (the future is dropped).
struct Pending {
    metrics: Arc<ModelMetrics>,
    version_named: bool,
    accepted: std::time::Instant,
    answered: bool,
}

impl Pending {
    fn new(metrics: Arc<ModelMetrics>, version_named: bool) -> Self {
        metrics.accepted(version_named);
        Self {
            metrics,
            version_named,
            accepted: std::time::Instant::now(),
            answered: false,
        }
    }

    fn answered(&mut self) {
        self.answered = true;
        self.metrics.answered(self.version_named, self.accepted.elapsed());
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if !self.answered {
            self.metrics.abandoned();
        }
    }
}

/// The startup timeout plus a second, saturating: `default_startup_timeout` may be any number of
/// seconds, and a timeout past any clock waits for ever rather than overflowing.
fn ready_wait_limit(startup_timeout: Duration) -> Duration {
    startup_timeout.saturating_add(Duration::from_secs(1))
}

/// Waits until the registration's workers are all ready; false once one fails, or when they
/// have not loaded within the startup timeout (plus a second, so that the manager, which times
/// loads out itself, has the last word).
pub async fn wait_ready(mut registration: Registration) -> bool {
    let wanted = registration.workers;
    let failures_before = registration.health.borrow().failures;
    let settled = registration.health.wait_for(|health| {
        (health.min_workers == wanted && health.ready >= wanted) || health.failures > failures_before
    });
    let limit = ready_wait_limit(registration.startup_timeout);
    let outcome = tokio::time::timeout(limit, async { settled.await.map(|health| *health) }).await;
    matches!(outcome, Ok(Ok(health)) if health.ready >= wanted && health.failures == failures_before)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_startup_timeout_past_any_clock_neither_overflows_nor_fires() {
        let limit = ready_wait_limit(Duration::from_secs(u64::MAX));
        assert_eq!(limit, Duration::MAX);
        assert_eq!(ready_wait_limit(Duration::from_secs(120)), Duration::from_secs(121));
        // tokio takes it as "no deadline": the future's own answer comes first.
        assert_eq!(tokio::time::timeout(limit, async { 7 }).await.ok(), Some(7));
    }
}
