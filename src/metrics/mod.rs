//! Metrics, as TorchServe reports them and beyond.
//!
//! TorchServe's metrics (`definitions`: its `metrics.yaml`) are written as it writes them: in
//! `metrics_mode=log` (the default) each reading is a line in `ts_metrics.log` (frontend) or
//! `model_metrics.log` (backend) and the Prometheus page is empty; in `prometheus` mode each is a
//! Prometheus series on `/metrics`, in simpleclient 0.9's text; in `legacy` mode only the three
//! `ts_*` counters are, the rest logged.
//!
//! In `prometheus` mode tserve adds what TorchServe's users have asked for, under its own
//! `tserve_` names so nothing a TorchServe scraper expects changes: latency histograms per model
//! and version (request, queue, inference), the batch sizes formed, and gauges for queue depth,
//! requests in flight and workers by state, the signals an autoscaler needs.
//!
//! Updates on a request's path are atomic operations on series each model resolves once, or one
//! log record handed to the log writer: no lock, no file I/O.

pub mod definitions;
pub mod format;
pub mod store;
pub mod system;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use prometheus::{Encoder, GaugeVec, HistogramOpts, HistogramVec, Opts, Registry, TextEncoder};

use crate::logging::{MODEL_METRICS, TS_METRICS};
use definitions::{Kind, MetricSpec, MetricsConfig};
use format::HandlerMetric;
use store::{Family, Series};

/// `metrics_mode`, as the configuration reads it.
pub use crate::config::MetricsMode as Mode;

/// The metrics `legacy` mode keeps in Prometheus (as counters).
const LEGACY_PROMETHEUS: [&str; 3] = ["ts_inference_requests_total", "ts_inference_latency_microseconds", "ts_queue_latency_microseconds"];

/// What [`Metrics`] is made from.
#[derive(Debug, Clone)]
pub struct MetricsSettings {
    pub mode: Mode,
    pub definitions: MetricsConfig,
    /// `model_metrics_auto_detect`: handler metrics not in the definitions are accepted.
    pub auto_detect: bool,
    pub hostname: String,
}

/// The process's metrics. Cheap to share (`Arc`).
pub struct Metrics {
    mode: Mode,
    hostname: String,
    /// Frontend families, by name, in definition order.
    frontend: Vec<Arc<Family>>,
    /// Backend families; handler metrics found by auto-detection are added.
    backend: RwLock<Vec<Arc<Family>>>,
    auto_detect: bool,
    /// `Requests2XX`, `Requests4XX`, `Requests5XX`, resolved once.
    responses: [Option<Recorder>; 3],
    tserve: Option<TserveMetrics>,
}

/// Where one reading goes: a Prometheus series, or a log line.
#[derive(Clone)]
enum Recorder {
    Series(Kind, Arc<Series>),
    Log(format::LogSeries),
}

impl Metrics {
    pub fn new(settings: MetricsSettings) -> Arc<Self> {
        let families = |specs: &[MetricSpec], legacy: bool| -> Vec<Arc<Family>> {
            specs
                .iter()
                .map(|spec| {
                    let mut spec = spec.clone();
                    if legacy && LEGACY_PROMETHEUS.contains(&spec.name.as_str()) {
                        spec.kind = Kind::Counter;
                    }
                    Arc::new(Family::new(spec))
                })
                .collect()
        };
        let legacy = settings.mode == Mode::Legacy;
        // Model metrics get the Hostname dimension added, as TorchServe's backend metrics do.
        let mut definitions = settings.definitions;
        for spec in &mut definitions.backend {
            if !spec.dimensions.iter().any(|d| d == "Hostname") {
                spec.dimensions.push("Hostname".into());
            }
        }
        let mut metrics = Self {
            mode: settings.mode,
            hostname: settings.hostname,
            frontend: families(&definitions.frontend, legacy),
            backend: RwLock::new(families(&definitions.backend, legacy)),
            auto_detect: settings.auto_detect,
            responses: [None, None, None],
            tserve: match settings.mode {
                Mode::Prometheus => TserveMetrics::new()
                    .map_err(|e| log::error!("tserve's own metrics are off: {e}"))
                    .ok(),
                _ => None,
            },
        };
        metrics.responses = ["Requests2XX", "Requests4XX", "Requests5XX"].map(|name| metrics.frontend_recorder(name, &["Host"]));
        Arc::new(metrics)
    }

    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    fn in_prometheus(&self, name: &str) -> bool {
        match self.mode {
            Mode::Prometheus => true,
            Mode::Legacy => LEGACY_PROMETHEUS.contains(&name),
            Mode::Log => false,
        }
    }

    /// How readings of backend metric `name` are recorded, as [`Self::frontend_recorder`].
    fn backend_recorder(&self, name: &str, values: &[&str]) -> Option<Recorder> {
        let backend = self.backend.read().unwrap_or_else(PoisonError::into_inner);
        let family = backend.iter().find(|f| f.spec.name == name)?;
        Some(self.recorder(family, values))
    }

    /// How readings of frontend metric `name` with these dimension values (the hostname is
    /// added) are recorded; `None` when the definitions have no such metric.
    fn frontend_recorder(&self, name: &str, values: &[&str]) -> Option<Recorder> {
        let family = self.frontend.iter().find(|f| f.spec.name == name)?;
        Some(self.recorder(family, values))
    }

    fn recorder(&self, family: &Family, values: &[&str]) -> Recorder {
        if self.in_prometheus(&family.spec.name) {
            let mut labels: Vec<&str> = values.to_vec();
            labels.push(&self.hostname);
            Recorder::Series(family.spec.kind, family.series(&labels))
        } else {
            let names = family.spec.dimensions.iter().take(family.spec.dimensions.len().saturating_sub(1));
            let dimensions: Vec<(&str, &str)> = names.map(String::as_str).zip(values.iter().copied()).collect();
            Recorder::Log(format::LogSeries::new(&family.spec.name, &family.spec.unit, &dimensions, &self.hostname))
        }
    }

    fn record(&self, recorder: &Recorder, value: f64, target: &str, request_id: Option<&str>) {
        match recorder {
            Recorder::Series(kind, series) => series.record(*kind, value),
            Recorder::Log(series) => {
                // Formatting costs: only for a line that will be written.
                if !log::log_enabled!(target: target, log::Level::Info) {
                    return;
                }
                // Seconds since the epoch are the same in every zone: no local-time lookup.
                let now = chrono::Utc::now().timestamp();
                // Formatted once, by the logger, into the line it hands the writer.
                log::info!(target: target, "{}", series.line(value, request_id, now));
            }
        }
    }

    /// Counts an HTTP response by its status class (`Requests2XX`, `4XX`, and `5XX` for
    /// anything else), as TorchServe counts every response on every listener.
    pub fn response(&self, status: u16) {
        let index = match status {
            200..=299 => 0,
            400..=499 => 1,
            _ => 2,
        };
        if let Some(recorder) = &self.responses[index] {
            self.record(recorder, 1.0, TS_METRICS, None);
        }
    }

    /// A frontend reading with level `Host` (the system metrics).
    pub fn host_gauge(&self, name: &str, value: f64) {
        if let Some(recorder) = self.frontend_recorder(name, &["Host"]) {
            self.record(&recorder, value, TS_METRICS, None);
        }
    }

    /// `WorkerLoadTime`, in milliseconds.
    pub fn worker_loaded(&self, worker: &str, took: Duration) {
        if let Some(recorder) = self.frontend_recorder("WorkerLoadTime", &[worker, "Host"]) {
            self.record(&recorder, millis(took), TS_METRICS, None);
        }
    }

    /// A backend reading: `HandlerTime`/`PredictionTime` from native workers, or a metric a
    /// Python handler printed. Metrics outside the definitions count only with
    /// `model_metrics_auto_detect`, as in TorchServe.
    pub fn handler_metric(&self, metric: &HandlerMetric) {
        let family = {
            let backend = self.backend.read().unwrap_or_else(PoisonError::into_inner);
            backend.iter().find(|f| f.spec.name == metric.name).cloned()
        };
        let family = match family {
            Some(family) => family,
            None if self.auto_detect => self.add_backend_family(metric),
            None => return,
        };
        let values: Vec<&str> = metric.dimensions.iter().map(|(_, v)| v.as_str()).collect();
        let recorder = self.recorder(&family, &values);
        self.record(&recorder, metric.value, MODEL_METRICS, metric.request_id.as_deref());
    }

    fn add_backend_family(&self, metric: &HandlerMetric) -> Arc<Family> {
        let mut backend = self.backend.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(family) = backend.iter().find(|f| f.spec.name == metric.name) {
            return family.clone();
        }
        log::info!("Registering auto detected backend metric: {}", metric.name);
        let mut dimensions: Vec<String> = metric.dimensions.iter().map(|(k, _)| k.clone()).collect();
        dimensions.push("Hostname".into());
        let family = Arc::new(Family::new(MetricSpec {
            name: metric.name.clone(),
            unit: metric.unit.clone(),
            kind: metric.kind.unwrap_or(Kind::Gauge),
            dimensions,
        }));
        backend.push(family.clone());
        family
    }

    /// The metrics of one model version, resolved once.
    pub fn for_model(self: &Arc<Self>, model: &str, version: &str) -> Arc<ModelMetrics> {
        let per_label = |name: &str| -> [Option<Recorder>; 2] {
            [self.frontend_recorder(name, &[model, "default"]), self.frontend_recorder(name, &[model, version])]
        };
        Arc::new(ModelMetrics {
            metrics: self.clone(),
            requests: per_label("ts_inference_requests_total"),
            latency: per_label("ts_inference_latency_microseconds"),
            queue_latency: per_label("ts_queue_latency_microseconds"),
            queue_time: self.frontend_recorder("QueueTime", &["Host"]),
            worker_thread_time: self.frontend_recorder("WorkerThreadTime", &["Host"]),
            handler_time: self.backend_recorder("HandlerTime", &[model, "Model"]),
            prediction_time: self.backend_recorder("PredictionTime", &[model, "Model"]),
            tserve: self.tserve.as_ref().map(|t| t.for_model(model, version)),
            in_flight: AtomicI64::new(0),
        })
    }

    /// The Prometheus page (`?name[]=` keeps only the named families): empty in `log` mode, as
    /// TorchServe's; `models` gives the live gauges tserve adds in `prometheus` mode.
    pub fn render(&self, names: &[String], models: &[ModelGauges]) -> String {
        let wanted = |name: &str| names.is_empty() || names.iter().any(|n| n == name);
        let mut out = String::new();
        let backend = self.backend.read().unwrap_or_else(PoisonError::into_inner).clone();
        for family in self.frontend.iter().chain(backend.iter()) {
            if self.in_prometheus(&family.spec.name) && wanted(&family.spec.name) {
                format::family(&mut out, family);
            }
        }
        if let Some(tserve) = &self.tserve {
            out.push_str(&tserve.render(models, &wanted));
        }
        out
    }
}

/// One model version's live state, read when the page is scraped.
#[derive(Debug, Clone)]
pub struct ModelGauges {
    pub model: String,
    pub version: String,
    pub queue_depth: usize,
    pub in_flight: i64,
    pub workers_ready: usize,
    pub workers_starting: usize,
    pub workers_failed: usize,
}

/// One model version's series, resolved once at registration: recording is atomic updates, or
/// a log record.
pub struct ModelMetrics {
    metrics: Arc<Metrics>,
    /// Indexed by whether the request named its version (TorchServe labels it `default` if not).
    requests: [Option<Recorder>; 2],
    latency: [Option<Recorder>; 2],
    queue_latency: [Option<Recorder>; 2],
    queue_time: Option<Recorder>,
    worker_thread_time: Option<Recorder>,
    handler_time: Option<Recorder>,
    prediction_time: Option<Recorder>,
    tserve: Option<TserveModel>,
    /// Requests accepted and not yet answered.
    in_flight: AtomicI64,
}

impl ModelMetrics {
    /// Metrics that go nowhere, for a model made outside a server (component tests).
    pub fn detached(model: &str, version: &str) -> Arc<Self> {
        let nowhere = Metrics::new(MetricsSettings {
            mode: Mode::Log,
            definitions: MetricsConfig::default(),
            auto_detect: false,
            hostname: hostname(),
        });
        nowhere.for_model(model, version)
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn in_flight(&self) -> i64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn record(&self, recorders: &[Option<Recorder>; 2], version_named: bool, value: f64) {
        if let Some(recorder) = &recorders[usize::from(version_named)] {
            self.metrics.record(recorder, value, TS_METRICS, None);
        }
    }

    /// A request was accepted into the queue.
    pub fn accepted(&self, version_named: bool) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.record(&self.requests, version_named, 1.0);
    }

    /// An accepted request's client went away before its answer.
    pub fn abandoned(&self) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// An accepted request was answered, `elapsed` after it was accepted.
    pub fn answered(&self, version_named: bool, elapsed: Duration) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.record(&self.latency, version_named, micros(elapsed));
        if let Some(tserve) = &self.tserve {
            tserve.request.observe(elapsed.as_secs_f64());
        }
    }

    /// A job left the queue for a worker after waiting `waited`.
    pub fn dequeued(&self, version_named: bool, waited: Duration) {
        self.record(&self.queue_latency, version_named, micros(waited));
        if let Some(recorder) = &self.queue_time {
            self.metrics.record(recorder, millis(waited), TS_METRICS, None);
        }
        if let Some(tserve) = &self.tserve {
            tserve.queue.observe(waited.as_secs_f64());
        }
    }

    /// `WorkerThreadTime`: what a worker's thread spent on a batch outside the backend call
    /// (forming the request, answering the jobs, bookkeeping), recorded for every batch run.
    pub fn worker_thread_time(&self, took: Duration) {
        if let Some(recorder) = &self.worker_thread_time {
            self.metrics.record(recorder, millis(took), TS_METRICS, None);
        }
    }

    /// A batch ran for `took`; `handler_time` is set by native workers, whose handler runs in
    /// tserve (a Python handler reports its own `HandlerTime` and `PredictionTime`).
    pub fn batch_ran(&self, size: usize, took: Duration, handler_time: Option<&str>) {
        if let Some(tserve) = &self.tserve {
            tserve.inference.observe(took.as_secs_f64());
            tserve.batch_size.observe(size as f64);
        }
        if let Some(request_ids) = handler_time {
            let value = (millis(took) * 100.0).round() / 100.0;
            for recorder in [&self.handler_time, &self.prediction_time].into_iter().flatten() {
                self.metrics.record(recorder, value, MODEL_METRICS, Some(request_ids));
            }
        }
    }
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

/// tserve's own Prometheus metrics: the histograms, recorded as requests go, in a `prometheus`
/// registry; the live gauges are made afresh for each page (see [`TserveMetrics::render`]).
struct TserveMetrics {
    registry: Registry,
    request: HistogramVec,
    queue: HistogramVec,
    inference: HistogramVec,
    batch_size: HistogramVec,
}

struct TserveModel {
    request: prometheus::Histogram,
    queue: prometheus::Histogram,
    inference: prometheus::Histogram,
    batch_size: prometheus::Histogram,
}

/// Latency buckets, in seconds: 1 ms to 60 s.
const LATENCY_BUCKETS: [f64; 16] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0];
const BATCH_BUCKETS: [f64; 9] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

impl TserveMetrics {
    fn new() -> prometheus::Result<Self> {
        let labels = ["model_name", "model_version"];
        let histogram = |name: &str, help: &str, buckets: &[f64]| {
            HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), &labels)
        };
        let registry = Registry::new();
        let metrics = Self {
            request: histogram("tserve_request_duration_seconds", "Time from a prediction's arrival in the queue to its answer.", &LATENCY_BUCKETS)?,
            queue: histogram("tserve_queue_duration_seconds", "Time a prediction waited in its model's queue.", &LATENCY_BUCKETS)?,
            inference: histogram("tserve_inference_duration_seconds", "Time a worker took to run one batch.", &LATENCY_BUCKETS)?,
            batch_size: histogram("tserve_batch_size", "Requests per batch run.", &BATCH_BUCKETS)?,
            registry: registry.clone(),
        };
        registry.register(Box::new(metrics.request.clone()))?;
        registry.register(Box::new(metrics.queue.clone()))?;
        registry.register(Box::new(metrics.inference.clone()))?;
        registry.register(Box::new(metrics.batch_size.clone()))?;
        Ok(metrics)
    }

    fn for_model(&self, model: &str, version: &str) -> TserveModel {
        let labels = [model, version];
        TserveModel {
            request: self.request.with_label_values(&labels),
            queue: self.queue.with_label_values(&labels),
            inference: self.inference.with_label_values(&labels),
            batch_size: self.batch_size.with_label_values(&labels),
        }
    }

    /// The histograms and this page's gauges, in Prometheus' text.
    ///
    /// The gauges are the models' state now: they are filled into a registry of this page's own,
    /// never into shared ones, so two scrapes at once cannot see each other's half-filled page
    /// (resetting and refilling shared gauges would let one scrape read another's reset).
    fn render(&self, models: &[ModelGauges], wanted: &dyn Fn(&str) -> bool) -> String {
        let mut families = self.registry.gather();
        match live_gauges(models) {
            Ok(gauges) => families.extend(gauges.gather()),
            Err(e) => log::error!("cannot make the live gauges: {e}"),
        }
        // One page in name order, as a single registry's gather gives it.
        families.sort_by(|a, b| a.name().cmp(b.name()));
        families.retain(|f| wanted(f.name()));
        let mut out = Vec::new();
        if TextEncoder::new().encode(&families, &mut out).is_err() {
            return String::new();
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// A registry holding the queue depth, requests in flight and workers by state of `models`.
fn live_gauges(models: &[ModelGauges]) -> prometheus::Result<Registry> {
    let labels = ["model_name", "model_version"];
    let gauge = |name: &str, help: &str, labels: &[&str]| GaugeVec::new(Opts::new(name, help), labels);
    let queue_depth = gauge("tserve_queue_depth", "Predictions waiting in the model's queue.", &labels)?;
    let in_flight = gauge("tserve_requests_in_flight", "Predictions accepted and not yet answered.", &labels)?;
    let workers = gauge("tserve_workers", "The model's workers by state.", &["model_name", "model_version", "state"])?;
    for model in models {
        let labels = [model.model.as_str(), model.version.as_str()];
        queue_depth.with_label_values(&labels).set(model.queue_depth as f64);
        in_flight.with_label_values(&labels).set(model.in_flight as f64);
        for (state, count) in [("ready", model.workers_ready), ("starting", model.workers_starting), ("failed", model.workers_failed)] {
            workers.with_label_values(&[labels[0], labels[1], state]).set(count as f64);
        }
    }
    let registry = Registry::new();
    registry.register(Box::new(queue_depth))?;
    registry.register(Box::new(in_flight))?;
    registry.register(Box::new(workers))?;
    Ok(registry)
}

/// This machine's name, for the `Hostname` dimension.
pub fn hostname() -> String {
    sysinfo::System::host_name().unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics(mode: Mode) -> Arc<Metrics> {
        Metrics::new(MetricsSettings {
            mode,
            definitions: MetricsConfig::default_list(),
            auto_detect: false,
            hostname: "vm".into(),
        })
    }

    #[test]
    fn the_log_mode_page_is_empty() {
        let metrics = metrics(Mode::Log);
        metrics.response(200);
        assert_eq!(metrics.render(&[], &[]), "");
    }

    #[test]
    fn prometheus_mode_counts_responses_by_class() {
        let metrics = metrics(Mode::Prometheus);
        for status in [200, 201, 503, 302] {
            metrics.response(status);
        }
        let page = metrics.render(&["Requests2XX".into(), "Requests5XX".into()], &[]);
        assert!(page.contains("Requests2XX{Level=\"Host\",Hostname=\"vm\",} 2.0\n"), "{page}");
        assert!(page.contains("Requests5XX{Level=\"Host\",Hostname=\"vm\",} 2.0\n"), "{page}");
        assert!(!metrics.render(&[], &[]).contains("Requests4XX{"), "never counted: no series");
        assert!(!page.contains("Requests4XX"), "filtered out:\n{page}");
    }

    #[test]
    fn model_series_are_labelled_default_unless_a_version_was_named() {
        let metrics = metrics(Mode::Prometheus);
        let model = metrics.for_model("mlp", "1.0");
        model.accepted(false);
        model.accepted(true);
        model.accepted(true);
        model.answered(false, Duration::from_micros(1500));
        let page = metrics.render(&["ts_inference_requests_total".into(), "ts_inference_latency_microseconds".into()], &[]);
        assert!(page.contains("ts_inference_requests_total{model_name=\"mlp\",model_version=\"default\",hostname=\"vm\",} 1.0"), "{page}");
        assert!(page.contains("ts_inference_requests_total{model_name=\"mlp\",model_version=\"1.0\",hostname=\"vm\",} 2.0"), "{page}");
        assert!(page.contains("ts_inference_latency_microseconds{model_name=\"mlp\",model_version=\"default\",hostname=\"vm\",} 1500.0"), "{page}");
        assert_eq!(model.in_flight(), 2);
    }

    #[test]
    fn legacy_mode_keeps_only_the_three_counters() {
        let metrics = metrics(Mode::Legacy);
        metrics.response(200);
        metrics.for_model("mlp", "1.0").accepted(false);
        let page = metrics.render(&[], &[]);
        assert!(page.contains("# TYPE ts_inference_requests_total counter"), "{page}");
        assert!(!page.contains("Requests2XX"), "logged, not on the page:\n{page}");
    }

    #[test]
    fn tserve_gauges_and_histograms_appear_in_prometheus_mode() {
        let metrics = metrics(Mode::Prometheus);
        let model = metrics.for_model("mlp", "1.0");
        model.batch_ran(4, Duration::from_millis(3), None);
        let gauges = ModelGauges {
            model: "mlp".into(),
            version: "1.0".into(),
            queue_depth: 7,
            in_flight: 9,
            workers_ready: 2,
            workers_starting: 1,
            workers_failed: 0,
        };
        let page = metrics.render(&[], &[gauges]);
        assert!(page.contains("tserve_queue_depth{model_name=\"mlp\",model_version=\"1.0\"} 7"), "{page}");
        assert!(page.contains("tserve_workers{model_name=\"mlp\",model_version=\"1.0\",state=\"starting\"} 1"), "{page}");
        assert!(page.contains("tserve_batch_size_bucket{model_name=\"mlp\",model_version=\"1.0\",le=\"4\"} 1"), "{page}");
    }

    #[test]
    fn concurrent_renders_each_see_the_whole_page() {
        let metrics = metrics(Mode::Prometheus);
        let models: Vec<ModelGauges> = (0..40)
            .map(|i| ModelGauges {
                model: format!("m{i}"),
                version: "1.0".into(),
                queue_depth: i,
                in_flight: 1,
                workers_ready: 1,
                workers_starting: 0,
                workers_failed: 0,
            })
            .collect();
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..200 {
                        let page = metrics.render(&[], &models);
                        for model in &models {
                            let line = format!("tserve_queue_depth{{model_name=\"{}\",model_version=\"1.0\"}} {}\n", model.model, model.queue_depth);
                            assert!(page.contains(&line), "{line} missing from\n{page}");
                        }
                        assert_eq!(page.matches("tserve_workers{").count(), 3 * models.len(), "{page}");
                    }
                });
            }
        });
    }

    #[test]
    fn handler_metrics_outside_the_definitions_need_auto_detection() {
        let line = "Tokens.Count:5|#ModelName:m,Level:Model|#type:COUNTER|#hostname:vm,1,r1";
        let metric = HandlerMetric::parse(line).unwrap();
        let strict = metrics(Mode::Prometheus);
        strict.handler_metric(&metric);
        assert!(!strict.render(&[], &[]).contains("Tokens"));
        let detecting = Metrics::new(MetricsSettings {
            mode: Mode::Prometheus,
            definitions: MetricsConfig::default_list(),
            auto_detect: true,
            hostname: "vm".into(),
        });
        detecting.handler_metric(&metric);
        detecting.handler_metric(&metric);
        let page = detecting.render(&[], &[]);
        assert!(page.contains("Tokens{ModelName=\"m\",Level=\"Model\",Hostname=\"vm\",} 10.0"), "{page}");
    }
}
