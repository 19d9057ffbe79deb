//! The describe API's view of a model version: TorchServe's `DescribeModelResponse`, fields in
//! its order, from the spec and the manager's live status.

use serde::Serialize;

use crate::actors::{ModelSpec, ModelStatus};

/// One element of the describe array.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeModel {
    pub model_name: String,
    pub model_version: String,
    pub model_url: String,
    pub runtime: String,
    pub min_workers: usize,
    pub max_workers: usize,
    pub batch_size: usize,
    pub max_batch_delay: u128,
    pub response_timeout: u64,
    pub startup_timeout: u64,
    pub max_retry_timeout_in_sec: u64,
    pub client_timeout_in_mills: u128,
    pub parallel_type: &'static str,
    pub parallel_level: u32,
    pub device_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_ids: Option<Vec<usize>>,
    pub continuous_batching: bool,
    pub use_job_ticket: bool,
    pub use_venv: bool,
    pub stateful: bool,
    pub sequence_max_idle_m_sec: u64,
    pub sequence_timeout_m_sec: u64,
    pub max_num_sequence: u64,
    pub max_sequence_job_queue_size: u64,
    pub loaded_at_startup: bool,
    pub workers: Vec<DescribeWorker>,
    pub job_queue_status: JobQueueStatus,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeWorker {
    pub id: String,
    pub start_time: String,
    pub status: &'static str,
    /// Bytes resident in the worker's process (for in-process workers, the server's own, which
    /// they share).
    pub memory_usage: u64,
    pub pid: u32,
    pub gpu: bool,
    pub gpu_usage: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobQueueStatus {
    pub remaining_capacity: usize,
    pub pending_requests: usize,
}

/// Describes a model version from its spec and live status. Reading each worker process's
/// memory is file I/O, done on the blocking pool.
pub async fn describe(spec: &ModelSpec, status: ModelStatus) -> DescribeModel {
    let pids: Vec<u32> = status.workers.iter().map(|worker| worker.pid).collect();
    let memory = tokio::task::spawn_blocking(move || pids.into_iter().map(resident_memory_bytes).collect())
        .await
        .unwrap_or_else(|_| vec![0; status.workers.len()]);
    let workers = status
        .workers
        .iter()
        .zip(memory)
        .map(|(worker, memory_usage)| DescribeWorker {
            id: worker.id.to_string(),
            start_time: worker.started_at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            status: if worker.ready { "READY" } else { "LOADING" },
            memory_usage,
            pid: worker.pid,
            gpu: worker.gpu.is_some(),
            gpu_usage: worker.gpu.map_or_else(|| "N/A".to_string(), |id| format!("gpuId::{id}")),
        })
        .collect();
    let settings = &spec.settings;
    DescribeModel {
        model_name: spec.name.clone(),
        model_version: spec.version.clone(),
        model_url: spec.origin.url.clone(),
        runtime: spec.runtime.clone(),
        min_workers: status.min_workers,
        max_workers: status.max_workers,
        batch_size: settings.batch_size,
        max_batch_delay: settings.max_batch_delay.as_millis(),
        response_timeout: settings.response_timeout.as_secs(),
        startup_timeout: settings.startup_timeout.as_secs(),
        max_retry_timeout_in_sec: settings.max_retry_timeout.as_secs(),
        client_timeout_in_mills: settings.client_timeout.map_or(0, |t| t.as_millis()),
        parallel_type: "",
        parallel_level: 0,
        device_type: if settings.gpu_ids.is_empty() { "cpu" } else { "gpu" },
        device_ids: (!settings.gpu_ids.is_empty()).then(|| settings.gpu_ids.clone()),
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

/// A process's resident memory, from /proc (0 where unavailable).
fn resident_memory_bytes(pid: u32) -> u64 {
    let pages: u64 = std::fs::read_to_string(format!("/proc/{pid}/statm"))
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    pages * 4096
}
