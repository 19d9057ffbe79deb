//! The management API: register, scale, describe, list, unregister, set-default, KServe
//! readiness and the API description, with TorchServe's parameters, bodies and codes.

use std::collections::HashMap;
use std::sync::Arc;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::{json, Value};

use super::error::pretty_json;
use super::{openapi, ApiError, AppState};
use crate::actors::{
    Describe, ListModels, Lookup, ModelOrigin, ModelSpec, ModelStatus, Overrides, Readiness,
    Register, Registration, Scale, SetDefault, Unregister, VersionSelector,
};
use crate::archive::{fetch_into_store, ModelArchive};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/")
            .route(web::route().guard(actix_web::guard::Options()).to(api_description))
            .route(web::route().to(method_not_allowed)),
    )
    .route("/api-description", web::route().to(api_description))
    .service(
        web::resource("/models")
            .route(web::get().to(list))
            .route(web::post().to(register))
            .route(web::route().to(method_not_allowed)),
    )
    .service(
        web::resource(["/models/{model}", "/models/{model}/{version}"])
            .route(web::get().to(describe))
            .route(web::put().to(scale))
            .route(web::delete().to(unregister))
            .route(web::route().guard(actix_web::guard::Options()).to(api_description))
            .route(web::route().to(method_not_allowed)),
    )
    .service(
        web::resource("/models/{model}/{version}/set-default")
            .route(web::put().to(set_default))
            .route(web::route().to(method_not_allowed)),
    )
    .service(
        web::resource("/v1/models/{model}")
            .route(web::get().to(kserve_readiness))
            .route(web::route().to(method_not_allowed)),
    );
}

/// Request parameters, from the query string or (for register) a JSON body. The first value of a
/// repeated query parameter wins; numbers that do not parse count as absent, as in TorchServe.
struct Params(HashMap<String, String>);

impl Params {
    fn from_query(request: &HttpRequest) -> Self {
        let pairs = web::Query::<Vec<(String, String)>>::from_query(request.query_string())
            .map(web::Query::into_inner)
            .unwrap_or_default();
        let mut map = HashMap::new();
        for (key, value) in pairs {
            map.entry(key).or_insert(value);
        }
        Self(map)
    }

    fn from_json(body: &[u8]) -> Result<Self, ApiError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("Invalid JSON body: {e}")))?;
        let Value::Object(object) = value else {
            return Err(ApiError::BadRequest("Invalid JSON body: expected an object".into()));
        };
        Ok(Self(
            object
                .into_iter()
                .map(|(key, value)| {
                    let text = match value {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, text)
                })
                .collect(),
        ))
    }

    fn text(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn int(&self, key: &str) -> Option<i64> {
        self.text(key).and_then(|v| v.trim().parse().ok())
    }

    /// Java's `Boolean.parseBoolean`: only "true", in any case, is true.
    fn boolean(&self, key: &str) -> Option<bool> {
        self.text(key).map(|v| v.eq_ignore_ascii_case("true"))
    }
}

fn status(code: StatusCode, message: impl Into<String>) -> HttpResponse {
    HttpResponse::build(code)
        .content_type("application/json")
        .body(pretty_json(&json!({ "status": message.into() })))
}

fn json_response(value: &impl Serialize) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(pretty_json(value))
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

async fn api_description() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(openapi::MANAGEMENT)
}

const RUNTIMES: [&str; 3] = ["python", "python3", "LSP"];

async fn register(
    request: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let config = state.config.clone();
    if !config.enable_model_api {
        return Err(ApiError::MethodNotAllowed);
    }
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let params = if is_json { Params::from_json(&body)? } else { Params::from_query(&request) };
    let url = params
        .text("url")
        .ok_or_else(|| ApiError::BadRequest("Parameter url is required.".into()))?
        .to_string();
    if let Some(runtime) = params.text("runtime").filter(|r| !RUNTIMES.contains(r)) {
        return Err(ApiError::BadRequest(format!("Invalid RuntimeType value: {runtime}")));
    }
    let store = config.model_store.clone().ok_or(ApiError::NoModelStore)?;
    let positive = |key: &str| params.int(key).filter(|&v| v > 0);
    let overrides = Overrides {
        initial_workers: Some(
            params
                .int("initial_workers")
                .map_or(config.configured_workers_per_model, |n| n.max(0) as usize),
        ),
        batch_size: positive("batch_size").map(|n| n as usize),
        max_batch_delay: params
            .int("max_batch_delay")
            .filter(|&ms| ms >= 0)
            .map(|ms| std::time::Duration::from_millis(ms as u64)),
        response_timeout: positive("response_timeout").map(|s| std::time::Duration::from_secs(s as u64)),
        startup_timeout: positive("startup_timeout").map(|s| std::time::Duration::from_secs(s as u64)),
        handler: params.text("handler").filter(|h| !h.is_empty()).map(String::from),
        workers: None,
    };
    let name = params.text("model_name").filter(|n| !n.is_empty()).map(String::from);
    let spec_config = config.clone();
    // Downloading, unpacking and reading the archive's files block: off the async threads.
    let spec = web::block(move || {
        let entry = fetch_into_store(&store, &url, &spec_config.allowed_urls)?;
        let origin = ModelOrigin {
            url,
            store_name: entry.name.clone(),
            loaded_at_startup: false,
            downloaded: entry.downloaded.clone(),
        };
        let spec = ModelArchive::open(&store, &entry.name, spec_config.archive_limits)
            .map_err(crate::actors::ManagerError::from)
            .and_then(|archive| {
                ModelSpec::from_archive(archive, name.as_deref(), &spec_config, origin, &overrides)
            });
        if spec.is_err() {
            remove_download(entry.downloaded.as_deref());
        }
        spec
    })
    .await
    .map_err(|e| ApiError::Unavailable(e.to_string()))??;
    let downloaded = spec.origin.downloaded.clone();
    let registration = match state.supervisor.send(Register::new(spec)).await? {
        Ok(registration) => registration,
        Err(e) => {
            let _ = web::block(move || remove_download(downloaded.as_deref())).await;
            return Err(e.into());
        }
    };
    let Registration { name, version, workers, .. } = &registration;
    if *workers == 0 {
        return Ok(status(
            StatusCode::OK,
            format!(
                "Model \"{name}\" Version: {version} registered with 0 initial workers. Use scale workers API to add workers for the model."
            ),
        ));
    }
    if !params.boolean("synchronous").unwrap_or(true) {
        return Ok(status(StatusCode::ACCEPTED, "Processing worker updates..."));
    }
    if wait_for_workers(registration.health.clone(), *workers, registration.startup_timeout).await {
        return Ok(status(
            StatusCode::OK,
            format!("Model \"{name}\" Version: {version} registered with {workers} initial workers"),
        ));
    }
    // As TorchServe: a model whose workers do not start is unregistered again.
    let unregistered = state
        .supervisor
        .send(Unregister {
            model: name.clone(),
            version: Some(version.clone()),
        })
        .await?;
    if let Ok(unregistered) = unregistered {
        let downloaded = unregistered.spec.origin.downloaded.clone();
        let _ = web::block(move || remove_download(downloaded.as_deref())).await;
    }
    Err(ApiError::WorkersFailed {
        model: name.clone(),
        version: Some(version.clone()),
    })
}

/// Waits until `wanted` workers are ready; false once a worker fails or time runs out.
async fn wait_for_workers(
    mut health: tokio::sync::watch::Receiver<crate::actors::ModelHealth>,
    wanted: usize,
    limit: std::time::Duration,
) -> bool {
    let failures_before = health.borrow().load_failures;
    let settled = health.wait_for(|h| {
        (h.min_workers == wanted && h.ready >= wanted) || h.load_failures > failures_before
    });
    let outcome = tokio::time::timeout(limit, async { settled.await.map(|h| *h) }).await;
    matches!(outcome, Ok(Ok(h)) if h.ready >= wanted && h.load_failures == failures_before)
}

fn remove_download(path: Option<&std::path::Path>) {
    if let Some(path) = path {
        if let Err(e) = std::fs::remove_file(path) {
            log::warn!("cannot remove downloaded archive {}: {e}", path.display());
        }
    }
}

#[derive(serde::Deserialize)]
struct ModelPath {
    model: String,
    version: Option<String>,
}

async fn scale(
    request: HttpRequest,
    path: web::Path<ModelPath>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ModelPath { model, version } = path.into_inner();
    let params = Params::from_query(&request);
    let min = params.int("min_worker").unwrap_or(1);
    let max = params.int("max_worker").unwrap_or(min);
    if max < min {
        return Err(ApiError::BadRequest("max_worker cannot be less than min_worker.".into()));
    }
    if min < 0 {
        return Err(ApiError::BadRequest("min_worker cannot be negative.".into()));
    }
    let version = version.or_else(|| params.text("model_version").map(String::from));
    let registration = state
        .supervisor
        .send(Scale {
            model: model.clone(),
            version: version.clone(),
            min: min as usize,
            max: max as usize,
        })
        .await??;
    if !params.boolean("synchronous").unwrap_or(false) {
        return Ok(status(StatusCode::ACCEPTED, "Processing worker updates..."));
    }
    if !wait_for_workers(registration.health.clone(), min as usize, registration.startup_timeout).await {
        return Err(ApiError::WorkersFailed { model, version });
    }
    let mut message = format!("Workers scaled to {min} for model: {model}");
    if let Some(version) = version {
        message.push_str(&format!(", version: {version}"));
    }
    Ok(status(StatusCode::OK, message))
}

async fn describe(
    path: web::Path<ModelPath>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let ModelPath { model, version } = path.into_inner();
    let versions = match version {
        None => VersionSelector::Default,
        Some(v) if v == "all" => VersionSelector::All,
        Some(v) => VersionSelector::Named(v),
    };
    let managers = state.supervisor.send(Lookup { model, versions }).await??;
    let mut described = Vec::with_capacity(managers.len());
    for manager in managers {
        described.push(DescribeModel::from(manager.send(Describe).await?));
    }
    Ok(json_response(&described))
}

async fn unregister(
    path: web::Path<ModelPath>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if !state.config.enable_model_api {
        return Err(ApiError::MethodNotAllowed);
    }
    let ModelPath { model, version } = path.into_inner();
    let unregistered = state
        .supervisor
        .send(Unregister {
            model: model.clone(),
            version,
        })
        .await??;
    let downloaded = unregistered.spec.origin.downloaded.clone();
    let _ = web::block(move || remove_download(downloaded.as_deref())).await;
    Ok(status(StatusCode::OK, format!("Model \"{model}\" unregistered")))
}

async fn set_default(
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (model, version) = path.into_inner();
    state
        .supervisor
        .send(SetDefault {
            model: model.clone(),
            version: version.clone(),
        })
        .await??;
    Ok(status(
        StatusCode::OK,
        format!("Default version successfully updated for model \"{model}\" to \"{version}\""),
    ))
}

/// TorchServe's paging: `limit` 1..=100 (else 100), `next_page_token` an offset (negative: 0).
async fn list(request: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let params = Params::from_query(&request);
    let limit = params.int("limit").filter(|l| (0..=100).contains(l)).unwrap_or(100) as usize;
    let start = params.int("next_page_token").unwrap_or(0).max(0) as usize;
    let models = state.supervisor.send(ListModels).await?;
    let mut end = start.saturating_add(limit);
    // As TorchServe: a token is given whenever the page did not run past the end.
    let next_page_token = if end > models.len() {
        end = models.len();
        None
    } else {
        Some(end.to_string())
    };
    let page: Vec<Value> = models
        .get(start.min(models.len())..end.max(start.min(models.len())))
        .unwrap_or_default()
        .iter()
        .map(|(name, url)| json!({ "modelName": name, "modelUrl": url }))
        .collect();
    let mut body = serde_json::Map::new();
    if let Some(token) = next_page_token {
        body.insert("nextPageToken".into(), Value::String(token));
    }
    body.insert("models".into(), Value::Array(page));
    Ok(json_response(&body))
}

async fn kserve_readiness(
    path: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let path = path.into_inner();
    let model = path.split(':').next().unwrap_or_default().to_string();
    let ready = state.supervisor.send(Readiness(model.clone())).await??;
    Ok(json_response(&json!({ "name": model, "ready": ready })))
}

/// One element of the describe array, TorchServe's fields in its order.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DescribeModel {
    model_name: String,
    model_version: String,
    model_url: String,
    runtime: String,
    min_workers: usize,
    max_workers: usize,
    batch_size: usize,
    max_batch_delay: u128,
    response_timeout: u64,
    startup_timeout: u64,
    max_retry_timeout_in_sec: u64,
    client_timeout_in_mills: u128,
    parallel_type: &'static str,
    parallel_level: u32,
    device_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_ids: Option<Vec<usize>>,
    continuous_batching: bool,
    use_job_ticket: bool,
    use_venv: bool,
    stateful: bool,
    sequence_max_idle_m_sec: u64,
    sequence_timeout_m_sec: u64,
    max_num_sequence: u64,
    max_sequence_job_queue_size: u64,
    loaded_at_startup: bool,
    workers: Vec<DescribeWorker>,
    job_queue_status: JobQueueStatus,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DescribeWorker {
    id: String,
    start_time: String,
    status: &'static str,
    /// Bytes: the resident memory of the server process, which all workers share.
    memory_usage: u64,
    pid: u32,
    gpu: bool,
    gpu_usage: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct JobQueueStatus {
    remaining_capacity: usize,
    pending_requests: usize,
}

impl From<ModelStatus> for DescribeModel {
    fn from(status: ModelStatus) -> Self {
        let spec: Arc<ModelSpec> = status.spec;
        let memory = resident_memory_bytes();
        let workers = status
            .workers
            .iter()
            .map(|worker| {
                let gpu = match worker.device {
                    tch::Device::Cuda(id) => Some(id),
                    _ => None,
                };
                DescribeWorker {
                    id: worker.id.to_string(),
                    start_time: worker.started_at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
                    status: if worker.ready { "READY" } else { "LOADING" },
                    memory_usage: memory,
                    pid: std::process::id(),
                    gpu: gpu.is_some(),
                    gpu_usage: gpu.map_or_else(|| "N/A".to_string(), |id| format!("gpuId::{id}")),
                }
            })
            .collect();
        Self {
            model_name: spec.name.clone(),
            model_version: spec.version.clone(),
            model_url: spec.origin.url.clone(),
            runtime: spec.runtime.clone(),
            min_workers: status.min_workers,
            max_workers: status.max_workers,
            batch_size: spec.batch_size,
            max_batch_delay: spec.max_batch_delay.as_millis(),
            response_timeout: spec.response_timeout.as_secs(),
            startup_timeout: spec.startup_timeout.as_secs(),
            max_retry_timeout_in_sec: spec.max_retry_timeout.as_secs(),
            client_timeout_in_mills: spec.client_timeout.map_or(0, |t| t.as_millis()),
            parallel_type: "",
            parallel_level: 0,
            device_type: if spec.gpu_ids.is_empty() { "cpu" } else { "gpu" },
            device_ids: (!spec.gpu_ids.is_empty()).then(|| spec.gpu_ids.clone()),
            continuous_batching: false,
            use_job_ticket: false,
            use_venv: false,
            stateful: false,
            sequence_max_idle_m_sec: 0,
            sequence_timeout_m_sec: 0,
            max_num_sequence: 0,
            max_sequence_job_queue_size: 0,
            loaded_at_startup: spec.origin.loaded_at_startup,
            workers,
            job_queue_status: JobQueueStatus {
                remaining_capacity: status.remaining_capacity,
                pending_requests: status.pending_jobs,
            },
        }
    }
}

/// The process's resident memory, from /proc (0 where unavailable).
fn resident_memory_bytes() -> u64 {
    let pages: u64 = std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

