//! Workflows over the model service: registering one registers each node of its DAG as a model
//! (`{workflow}__{node}`: model nodes from their archives, function nodes from the workflow's
//! handler), and a prediction runs the DAG, each node a prediction of its model, independent
//! branches at once. What the API answers follows TorchServe 0.12 (see the README).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::{messages, Models, RegisterRequest, ServiceError, Target};
use crate::archive::fetch_into_store;
use crate::request::{Body, InferenceRequest, Parameter, Prediction};
use crate::settings::Overrides;
use crate::workflow::{WorkflowArchive, WorkflowError};

/// A registered workflow.
#[derive(Debug)]
struct Workflow {
    url: String,
    archive: WorkflowArchive,
}

/// The registered workflows by name, and the names being registered (so two registrations of
/// one name cannot both go ahead).
#[derive(Debug, Default)]
pub(super) struct Workflows {
    registered: Mutex<BTreeMap<String, Arc<Workflow>>>,
    registering: Mutex<BTreeSet<String>>,
}

impl Workflows {
    fn get(&self, name: &str) -> Result<Arc<Workflow>, WorkflowError> {
        let registered = self.registered.lock().unwrap_or_else(PoisonError::into_inner);
        registered.get(name).cloned().ok_or_else(|| WorkflowError::NotFound(name.to_string()))
    }

    /// Claims `name` for a registration; `None` if it is taken.
    fn claim(&self, name: &str) -> Option<Claim<'_>> {
        let taken = self.registered.lock().unwrap_or_else(PoisonError::into_inner).contains_key(name);
        let mut registering = self.registering.lock().unwrap_or_else(PoisonError::into_inner);
        (!taken && registering.insert(name.to_string())).then(|| Claim { workflows: self, name: name.to_string() })
    }
}

/// A name being registered; released when dropped.
struct Claim<'a> {
    workflows: &'a Workflows,
    name: String,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.workflows.registering.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.name);
    }
}

/// A `POST /workflows` call.
#[derive(Debug, Clone, Default)]
pub struct RegisterWorkflow {
    pub url: String,
    pub name: Option<String>,
    pub response_timeout: Option<Duration>,
    pub startup_timeout: Option<Duration>,
}

impl Models {
    /// Registers a workflow and every node of its DAG, waiting for their workers; if a node
    /// fails, the nodes registered so far are unregistered again.
    pub async fn register_workflow(&self, request: RegisterWorkflow) -> Result<String, ServiceError> {
        let config = self.inner.config.clone();
        let store = config.models.workflow_store.clone().ok_or(WorkflowError::NoStore)?;
        let url = request.url.clone();
        if url.is_empty() {
            return Err(ServiceError::BadRequest("Parameter url is required.".into()));
        }
        let name = request.name.clone();
        // Fetching and unpacking block: off the async threads.
        let archive = tokio::task::spawn_blocking(move || {
            let entry = fetch_into_store(&store, &url, &config.security.allowed_urls, config.models.archive_limits.max_bytes)
                .map_err(|e| match e {
                    crate::archive::ArchiveError::NotFound(url) => WorkflowError::ArchiveNotFound(url),
                    other => WorkflowError::Archive(other),
                })?;
            WorkflowArchive::open(&store.join(&entry.name), name, config.models.archive_limits)
        })
        .await
        .map_err(|e| ServiceError::Unavailable(e.to_string()))??;
        let workflow_name = archive.name.clone();
        let _claim = self
            .inner
            .workflows
            .claim(&workflow_name)
            .ok_or_else(|| WorkflowError::Conflict(workflow_name.clone()))?;
        let nodes = archive.spec.dag.nodes().to_vec();
        let registrations = nodes.iter().map(|node| self.register_node(&archive, node, &request));
        let outcomes = futures_util::future::join_all(registrations).await;
        let failures: Vec<String> = outcomes.iter().filter_map(|o| o.as_ref().err().cloned()).collect();
        if !failures.is_empty() {
            for (node, outcome) in nodes.iter().zip(&outcomes) {
                if outcome.is_ok() {
                    let _ = self.unregister(&Target { model: archive.node_model(node), version: None }).await;
                }
            }
            return Err(WorkflowError::NodesFailed { name: workflow_name, failures }.into());
        }
        let workflow = Arc::new(Workflow { url: request.url, archive });
        self.inner
            .workflows
            .registered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(workflow_name.clone(), workflow);
        Ok(format!("Workflow {workflow_name} has been registered and scaled successfully."))
    }

    /// Registers one node as its model, with as many workers as the spec's `max-workers`, as
    /// TorchServe does; the error is TorchServe's text for the failure list.
    async fn register_node(&self, archive: &WorkflowArchive, node: &str, request: &RegisterWorkflow) -> Result<(), String> {
        let name = archive.node_model(node);
        let settings = archive.spec.model(node).map(|m| m.settings);
        let overrides = Overrides {
            initial_workers: Some(settings.map_or(1, |s| s.max_workers as usize)),
            batch_size: Some(settings.map_or(1, |s| s.batch_size as usize)),
            max_batch_delay: Some(Duration::from_millis(settings.map_or(0, |s| s.max_batch_delay))),
            response_timeout: request.response_timeout,
            startup_timeout: request.startup_timeout,
            workers: None,
        };
        let registration = RegisterRequest {
            name: Some(name.clone()),
            prepared: archive.spec.model(node).is_none().then(|| archive.function_archive(node)),
            in_workflow: true,
            snapshot: false,
            ..RegisterRequest::from_api(archive.spec.model(node).map(|m| m.url.clone()).unwrap_or_default(), overrides, true)
        };
        match self.register(registration).await {
            Ok(_) => Ok(()),
            Err(e) => Err(format!("Workflow Node {name} failed to register. Details: {e}")),
        }
    }

    /// Registered workflows, a page at a time, as the model list pages.
    pub fn workflows_page(&self, limit: usize, start: usize) -> Value {
        let registered = self.inner.workflows.registered.lock().unwrap_or_else(PoisonError::into_inner);
        let all: Vec<(&str, &str)> = registered.iter().map(|(name, w)| (name.as_str(), w.url.as_str())).collect();
        messages::workflow_page(&all, limit, start)
    }

    /// TorchServe's describe: the spec's own settings and the graph, in a one-element array.
    pub fn describe_workflow(&self, name: &str) -> Result<Value, ServiceError> {
        let workflow = self.inner.workflows.get(name)?;
        let d = workflow.archive.spec.defaults;
        Ok(json!([{
            "workflowName": name,
            "workflowUrl": workflow.url,
            "minWorkers": d.min_workers,
            "maxWorkers": d.max_workers,
            "batchSize": d.batch_size,
            "maxBatchDelay": d.max_batch_delay,
            "workflowDag": workflow.archive.spec.dag.describe(),
        }]))
    }

    /// Unregisters a workflow and its node models.
    pub async fn unregister_workflow(&self, name: &str) -> Result<String, ServiceError> {
        let workflow = {
            let mut registered = self.inner.workflows.registered.lock().unwrap_or_else(PoisonError::into_inner);
            registered.remove(name).ok_or_else(|| WorkflowError::NotFound(name.to_string()))?
        };
        for node in workflow.archive.spec.dag.nodes() {
            let target = Target { model: workflow.archive.node_model(node), version: None };
            if let Err(e) = self.unregister(&target).await {
                log::warn!("workflow {name}: node model {} was not unregistered: {e}", target.model);
            }
        }
        Ok(messages::workflow_unregistered(name))
    }

    /// Runs a workflow on a request: each node once its parents have answered, independent
    /// nodes at once; the answer is the leaf's output, or the leaves' outputs by name.
    pub async fn predict_workflow(&self, name: &str, request: InferenceRequest) -> Result<Prediction, ServiceError> {
        let workflow = self.inner.workflows.get(name)?;
        let dag = &workflow.archive.spec.dag;
        let mut outputs: BTreeMap<String, Bytes> = BTreeMap::new();
        let mut done = BTreeSet::new();
        loop {
            let ready = dag.ready(&done);
            if ready.is_empty() {
                break;
            }
            let runs = ready.iter().map(|node| self.run_node(&workflow.archive, node, node_input(dag, node, &request, &outputs)));
            for (node, output) in ready.iter().zip(futures_util::future::join_all(runs).await) {
                outputs.insert(node.clone(), output?);
                done.insert(node.clone());
            }
        }
        answer(name, &dag.leaves(), outputs)
    }

    /// One node's prediction, tried again after a failure or a timeout up to the spec's
    /// `retry-attempts` (each try within its `timeout-ms`).
    async fn run_node(&self, archive: &WorkflowArchive, node: &str, input: InferenceRequest) -> Result<Bytes, ServiceError> {
        let settings = archive.spec.model(node).map_or(archive.spec.defaults, |m| m.settings);
        let target = Target { model: archive.node_model(node), version: None };
        let mut cause = String::new();
        for _ in 0..=settings.retry_attempts {
            let attempt = InferenceRequest { id: uuid::Uuid::new_v4().to_string(), ..input.clone() };
            match tokio::time::timeout(Duration::from_millis(settings.timeout_ms), self.predict(&target, attempt)).await {
                Ok(Ok(prediction)) => return Ok(prediction.body.into_bytes()),
                Ok(Err(e)) => cause = e.to_string(),
                Err(_) => cause = format!("no answer within {} ms", settings.timeout_ms),
            }
        }
        Err(WorkflowError::NodeFailed { node: node.to_string(), cause }.into())
    }
}

/// A node's input, as TorchServe builds it: the request itself for the start node; the one
/// parent's output as `body`; for several parents, each output named by its parent. Every node
/// gets the request's headers.
fn node_input(dag: &crate::workflow::dag::Dag, node: &str, request: &InferenceRequest, outputs: &BTreeMap<String, Bytes>) -> InferenceRequest {
    let parents = dag.parents(node);
    let parameters = match parents.as_slice() {
        [] => request.parameters.clone(),
        [parent] => vec![Parameter { name: "body".into(), content_type: None, value: outputs.get(parent).cloned().unwrap_or_default() }],
        parents => parents
            .iter()
            .map(|parent| Parameter { name: parent.clone(), content_type: None, value: outputs.get(parent).cloned().unwrap_or_default() })
            .collect(),
    };
    InferenceRequest {
        id: String::new(),
        headers: request.headers.clone(),
        parameters,
        tensors: None,
    }
}

/// The workflow's answer: one leaf's output as it is (TorchServe labels it JSON), or several
/// leaves' JSON objects under their names.
fn answer(workflow: &str, leaves: &[String], mut outputs: BTreeMap<String, Bytes>) -> Result<Prediction, ServiceError> {
    if let [leaf] = leaves {
        let body = outputs.remove(leaf).unwrap_or_default();
        return Ok(Prediction {
            body: Body::Raw(body),
            status: 200,
            content_type: Some("application/json".into()),
            headers: Vec::new(),
        });
    }
    let mut combined = Map::new();
    for leaf in leaves {
        let output = outputs.remove(leaf).unwrap_or_default();
        match serde_json::from_slice::<Value>(&output) {
            Ok(Value::Object(object)) => {
                combined.insert(leaf.clone(), Value::Object(object));
            }
            _ => return Err(WorkflowError::LeafNotObject { workflow: workflow.into(), leaf: leaf.clone() }.into()),
        }
    }
    Ok(Prediction::json(Value::Object(combined)))
}
