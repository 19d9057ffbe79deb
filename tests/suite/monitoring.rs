//! TorchServe's monitoring surface: its log files with their line patterns, the metrics API in
//! each mode (parsed with Prometheus' own parser), rollover, system metrics, and tserve's own
//! gauges and histograms.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use regex::Regex;
use serde_json::Value;

use crate::helpers::{mlp_cases, repo_root, Reply, TestServer};

/// The file's contents once `ready` holds for them (lines arrive through a writer thread), or
/// after 10 s whatever there is.
pub(crate) fn file_when(path: &Path, ready: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if ready(&text) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn lines_matching<'a>(text: &'a str, pattern: &Regex) -> Vec<&'a str> {
    text.lines().filter(|line| pattern.is_match(line)).collect()
}

/// The metrics page, parsed by prometheus_client: family name → its JSON.
pub(crate) fn scrape(server: &TestServer, query: &str) -> (Reply, Vec<Value>) {
    let reply = Reply::from(ureq::get(&format!("{}/metrics{query}", server.metrics_url())).call());
    let mut parser = Command::new(repo_root().join(".venv/bin/python"))
        .arg(repo_root().join("tests/fixtures/parse_metrics.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    parser.stdin.take().unwrap().write_all(reply.body.as_bytes()).unwrap();
    let output = parser.wait_with_output().unwrap();
    assert!(output.status.success(), "not valid Prometheus text:\n{}\n{}", reply.body, String::from_utf8_lossy(&output.stderr));
    (reply, serde_json::from_slice(&output.stdout).unwrap())
}

/// The value of the sample of `family` whose labels include all of `labels`. (The parser names
/// a counter family without its `_total`.)
pub(crate) fn sample(families: &[Value], family: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let family = families
        .iter()
        .find(|f| f["name"] == family || format!("{}_total", f["name"].as_str().unwrap_or("")) == family)?;
    family["samples"].as_array()?.iter().find_map(|s| {
        labels.iter().all(|(k, v)| s["labels"][*k] == *v).then(|| s["value"].as_f64()).flatten()
    })
}

fn predict_mlp(server: &TestServer, path: &str) -> Reply {
    let (input, _) = &mlp_cases()[0];
    server.post(path, input.to_string().as_bytes())
}

#[test]
fn the_log_files_hold_torchserves_lines() {
    let server = TestServer::start(&["mlp.mar", "py_function.mar"], "");
    let ok = predict_mlp(&server, "/predictions/mlp");
    assert_eq!(ok.status, 200);
    let request_id = ok.header("x-request-id").unwrap().to_string();
    assert_eq!(predict_mlp(&server, "/predictions/mlp/1.0").status, 200);
    assert_eq!(server.post("/predictions/nope", b"[1]").status, 404);
    assert_eq!(server.post("/predictions/mlp", b"{not json").status, 400);
    let py = Reply::from(ureq::post(&server.url("/predictions/py_function")).set("Content-Type", "text/plain").send_string("hi"));
    assert_eq!(py.status, 200);
    let logs = server.dir().join("logs");
    let stamp = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2},\d{3}";

    let access = file_when(&logs.join("access_log.log"), |t| t.contains("/predictions/py_function"));
    let line = Regex::new(&format!(r#"^{stamp} - /127\.0\.0\.1:\d+ "POST /predictions/mlp HTTP/1\.1" 200 \d+$"#)).unwrap();
    assert_eq!(lines_matching(&access, &line).len(), 1, "{access}");
    let not_found = Regex::new(&format!(r#"^{stamp} - /127\.0\.0\.1:\d+ "POST /predictions/nope HTTP/1\.1" 404 \d+$"#)).unwrap();
    assert_eq!(lines_matching(&access, &not_found).len(), 1, "{access}");

    // metrics_mode=log: one line per increment, as TorchServe writes them.
    let ts_metrics = file_when(&logs.join("ts_metrics.log"), |t| t.matches("Requests4XX").count() >= 2);
    let two = Regex::new(&format!(r"^{stamp} - Requests2XX\.Count:1\.0\|#Level:Host\|#hostname:[^,]+,timestamp:\d+$")).unwrap();
    assert_eq!(lines_matching(&ts_metrics, &two).len(), 3, "{ts_metrics}");
    let four = Regex::new(&format!(r"^{stamp} - Requests4XX\.Count:1\.0\|#Level:Host\|#hostname:[^,]+,timestamp:\d+$")).unwrap();
    assert_eq!(lines_matching(&ts_metrics, &four).len(), 2, "{ts_metrics}");
    let default_version = Regex::new(&format!(
        r"^{stamp} - ts_inference_requests_total\.Count:1\.0\|#model_name:mlp,model_version:default\|#hostname:[^,]+,timestamp:\d+$"
    ))
    .unwrap();
    assert_eq!(lines_matching(&ts_metrics, &default_version).len(), 2, "the 400 was accepted too:\n{ts_metrics}");
    let named = Regex::new(&format!(r"^{stamp} - ts_inference_latency_microseconds\.Microseconds:[\d.E]+\|#model_name:mlp,model_version:1\.0\|#hostname:[^,]+,timestamp:\d+$")).unwrap();
    assert_eq!(lines_matching(&ts_metrics, &named).len(), 1, "{ts_metrics}");

    let model_metrics = file_when(&logs.join("model_metrics.log"), |t| t.contains(&request_id) && t.contains("py_function"));
    let handler_time = Regex::new(&format!(
        r"^{stamp} - HandlerTime\.ms:[\d.]+\|#ModelName:mlp,Level:Model\|#hostname:[^,]+,requestID:{request_id},timestamp:\d+$"
    ))
    .unwrap();
    assert_eq!(lines_matching(&model_metrics, &handler_time).len(), 1, "{model_metrics}");
    // The Python backend's own PredictionTime, as TorchServe's frontend logs it.
    let python = Regex::new(&format!(r"^{stamp} - PredictionTime\.ms:[\d.]+\|#ModelName:py_function,Level:Model\|#hostname:[^,]+,requestID:[0-9a-f-]+,timestamp:\d+$")).unwrap();
    assert!(!lines_matching(&model_metrics, &python).is_empty(), "{model_metrics}");

    let model_log = file_when(&logs.join("model_log.log"), |t| t.contains("Torch worker started."));
    let started = Regex::new(&format!(r"^{stamp} \[INFO \] W-\d+-py_function_1\.0-stdout MODEL_LOG - Torch worker started\.$")).unwrap();
    assert_eq!(lines_matching(&model_log, &started).len(), 1, "{model_log}");

    let ts_log = file_when(&logs.join("ts_log.log"), |t| t.contains("ACCESS_LOG"));
    let own = Regex::new(&format!(r"^{stamp} \[INFO \] \S+ tserve::\S+ - .+$")).unwrap();
    assert!(!lines_matching(&ts_log, &own).is_empty(), "{ts_log}");
    assert!(ts_log.contains("ACCESS_LOG - /127.0.0.1:"), "the root logger's copy: {ts_log}");
}

#[test]
fn the_metrics_page_in_each_mode() {
    // log (the default): TorchServe's page is empty.
    let server = TestServer::start(&["mlp.mar"], "");
    predict_mlp(&server, "/predictions/mlp");
    let (reply, families) = scrape(&server, "");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    assert!(families.is_empty(), "{}", reply.body);

    let server = TestServer::start(&["mlp.mar"], "metrics_mode=prometheus");
    for _ in 0..3 {
        assert_eq!(predict_mlp(&server, "/predictions/mlp").status, 200);
    }
    assert_eq!(predict_mlp(&server, "/predictions/mlp/1.0").status, 200);
    assert_eq!(server.post("/predictions/mlp", b"{not json").status, 400);
    assert_eq!(server.post("/predictions/nope", b"[1]").status, 404);
    // A batch's own metrics (its size, its time) are recorded as its worker finishes it, just
    // after its answers are out: the page may lag the last answer by a moment.
    let batch_of_one = |families: &[Value]| sample(families, "tserve_batch_size", &[("model_version", "1.0"), ("le", "1")]);
    let (reply, families) = scrape_when(&server, |families| batch_of_one(families) == Some(5.0));
    assert!(reply.body.contains("Requests2XX{Level=\"Host\",Hostname=\""), "simpleclient's label order and comma:\n{}", reply.body);
    assert!(reply.body.contains("# HELP Requests2XX Torchserve prometheus counter metric with unit: Count\n"));
    assert_eq!(sample(&families, "Requests2XX", &[("Level", "Host")]), Some(4.0));
    assert_eq!(sample(&families, "Requests4XX", &[("Level", "Host")]), Some(2.0));
    assert!(!reply.body.contains("Requests5XX{"), "no 5xx yet: no series, as simpleclient shows it");
    let total = |version: &str| sample(&families, "ts_inference_requests_total", &[("model_name", "mlp"), ("model_version", version)]);
    assert_eq!((total("default"), total("1.0")), (Some(4.0), Some(1.0)), "the 400 was accepted and counted too:\n{}", reply.body);
    assert!(sample(&families, "ts_inference_latency_microseconds", &[("model_version", "default")]).unwrap() > 0.0);
    assert!(sample(&families, "ts_queue_latency_microseconds", &[("model_version", "1.0")]).is_some());
    // tserve's own: histograms and the autoscaling gauges, per model and version.
    let requests = sample(&families, "tserve_request_duration_seconds", &[("model_name", "mlp"), ("model_version", "1.0"), ("le", "+Inf")]);
    assert_eq!(requests, Some(5.0), "{}", reply.body);
    assert_eq!(batch_of_one(&families), Some(5.0));
    assert_eq!(sample(&families, "tserve_queue_depth", &[("model_name", "mlp")]), Some(0.0));
    assert_eq!(sample(&families, "tserve_requests_in_flight", &[("model_name", "mlp")]), Some(0.0));
    assert_eq!(sample(&families, "tserve_workers", &[("model_name", "mlp"), ("state", "ready")]), Some(1.0));
    // `?name[]=` keeps only the families named.
    let (_, only) = scrape(&server, "?name[]=Requests4XX&name[]=tserve_queue_depth");
    let names: Vec<&str> = only.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Requests4XX", "tserve_queue_depth"]);

    // legacy: only the three ts_ counters reach Prometheus; the rest are logged.
    let server = TestServer::start(&["mlp.mar"], "metrics_mode=legacy");
    predict_mlp(&server, "/predictions/mlp");
    let (_, families) = scrape(&server, "");
    let mut names: Vec<&str> = families.iter().map(|f| f["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["ts_inference_latency_microseconds", "ts_inference_requests", "ts_queue_latency_microseconds"]);
    assert_eq!(sample(&families, "ts_inference_requests_total", &[("model_version", "default")]), Some(1.0));
}

#[test]
fn the_metrics_api_describes_itself_and_can_be_turned_off() {
    let server = TestServer::start(&["mlp.mar"], "");
    let description = Reply::from(ureq::request("OPTIONS", &format!("{}/", server.metrics_url())).call());
    assert_eq!(description.json()["openapi"], "3.0.1");
    let server = TestServer::start(&["mlp.mar"], "enable_metrics_api=false");
    let output = server.output_when(|o| o.contains("Management API bound"));
    assert!(!output.contains("Metrics API bound"), "{output}");
}

#[test]
fn system_metrics_are_logged_every_interval_unless_disabled() {
    let server = TestServer::start(&["mlp.mar"], "metric_time_interval=1");
    let path = server.dir().join("logs/ts_metrics.log");
    let text = file_when(&path, |t| t.contains("MemoryUtilization") && t.contains("DiskAvailable"));
    let cpu = Regex::new(r"^\S+ - CPUUtilization\.Percent:[\d.]+\|#Level:Host\|#hostname:[^,]+,timestamp:\d+$").unwrap();
    assert!(!lines_matching(&text, &cpu).is_empty(), "{text}");
    assert!(text.contains("MemoryUsed.Megabytes:") && text.contains("DiskAvailable.Gigabytes:"), "{text}");

    let quiet = TestServer::start(&["mlp.mar"], "metric_time_interval=1\ndisable_system_metrics=true");
    std::thread::sleep(Duration::from_millis(2500));
    let text = std::fs::read_to_string(quiet.dir().join("logs/ts_metrics.log")).unwrap_or_default();
    assert!(!text.contains("CPUUtilization"), "{text}");
}

/// The metrics page once `ready` holds for its families, or after 10 s whatever it holds.
fn scrape_when(server: &TestServer, ready: impl Fn(&[Value]) -> bool) -> (Reply, Vec<Value>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (reply, families) = scrape(server, "");
        if ready(&families) || Instant::now() > deadline {
            return (reply, families);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn worker_thread_time_is_recorded_for_every_batch_in_each_mode() {
    // log: one TorchServe line per batch in ts_metrics.log, for native and Python workers alike.
    let server = TestServer::start(&["mlp.mar", "py_function.mar"], "");
    for _ in 0..2 {
        assert_eq!(predict_mlp(&server, "/predictions/mlp").status, 200);
    }
    let py = Reply::from(ureq::post(&server.url("/predictions/py_function")).set("Content-Type", "text/plain").send_string("hi"));
    assert_eq!(py.status, 200);
    let pattern = Regex::new(r"^\S+ - WorkerThreadTime\.Milliseconds:[\d.E-]+\|#Level:Host\|#hostname:[^,]+,timestamp:\d+$").unwrap();
    let path = server.dir().join("logs/ts_metrics.log");
    let text = file_when(&path, |t| lines_matching(t, &pattern).len() >= 3);
    assert_eq!(lines_matching(&text, &pattern).len(), 3, "three batches, three readings:\n{text}");

    // prometheus: a gauge with TorchServe's labels, HELP and unit.
    let server = TestServer::start(&["mlp.mar"], "metrics_mode=prometheus");
    assert_eq!(predict_mlp(&server, "/predictions/mlp").status, 200);
    // Recorded once the worker thread is done with the batch, which can be just after the
    // client has its answer.
    let (reply, families) = scrape_when(&server, |families| sample(families, "WorkerThreadTime", &[("Level", "Host")]).is_some());
    assert!(
        reply.body.contains("# HELP WorkerThreadTime Torchserve prometheus gauge metric with unit: Milliseconds\n"),
        "{}",
        reply.body
    );
    assert!(reply.body.contains("WorkerThreadTime{Level=\"Host\",Hostname=\""), "{}", reply.body);
    let value = sample(&families, "WorkerThreadTime", &[("Level", "Host")]);
    assert!(value.is_some_and(|ms| ms >= 0.0), "{}", reply.body);
}

const SYSTEM_METRICS: [(&str, &str); 7] = [
    ("CPUUtilization", "Percent"),
    ("MemoryUsed", "Megabytes"),
    ("MemoryAvailable", "Megabytes"),
    ("MemoryUtilization", "Percent"),
    ("DiskUsage", "Gigabytes"),
    ("DiskAvailable", "Gigabytes"),
    ("DiskUtilization", "Percent"),
];

#[test]
fn system_metrics_are_reported_from_start_up() {
    // The default interval is 60 s: these readings can only be the one taken at start-up.
    let server = TestServer::start(&["mlp.mar"], "");
    let path = server.dir().join("logs/ts_metrics.log");
    let text = file_when(&path, |t| SYSTEM_METRICS.iter().all(|(name, _)| t.contains(name)));
    for (name, unit) in SYSTEM_METRICS {
        let line = Regex::new(&format!(r"^\S+ - {name}\.{unit}:[\d.E]+\|#Level:Host\|#hostname:[^,]+,timestamp:\d+$")).unwrap();
        assert_eq!(lines_matching(&text, &line).len(), 1, "{name}:\n{text}");
    }

    let server = TestServer::start(&["mlp.mar"], "metrics_mode=prometheus");
    let present = |families: &[Value]| SYSTEM_METRICS.iter().all(|(name, _)| sample(families, name, &[("Level", "Host")]).is_some());
    let (reply, families) = scrape_when(&server, present);
    for (name, unit) in SYSTEM_METRICS {
        assert!(sample(&families, name, &[("Level", "Host")]).is_some_and(|v| v >= 0.0), "{name}:\n{}", reply.body);
        assert!(reply.body.contains(&format!("# HELP {name} Torchserve prometheus gauge metric with unit: {unit}\n")), "{}", reply.body);
    }
    let memory = sample(&families, "MemoryUtilization", &[("Level", "Host")]).unwrap_or(-1.0);
    assert!((0.0..=100.0).contains(&memory), "{memory}");
}

#[test]
fn log_files_roll_over_at_the_size_a_log4j2_config_sets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("model_store")).unwrap();
    std::fs::copy(crate::helpers::fixture("mlp.mar"), dir.path().join("model_store/mlp.mar")).unwrap();
    std::fs::write(dir.path().join("config.properties"), crate::helpers::FREE_PORTS.to_string() + "default_workers_per_model=1\n").unwrap();
    let log4j = r#"<?xml version="1.0" encoding="UTF-8"?>
<Configuration>
  <Appenders>
    <RollingFile name="access_log" fileName="${env:LOG_LOCATION:-logs}/access_log.log" filePattern="x">
      <PatternLayout pattern="%d{ISO8601} - %m%n"/>
      <Policies><SizeBasedTriggeringPolicy size="1 KB"/></Policies>
      <DefaultRolloverStrategy max="2"/>
    </RollingFile>
  </Appenders>
  <Loggers><Logger name="ACCESS_LOG" level="info"/></Loggers>
</Configuration>"#;
    std::fs::write(dir.path().join("log4j2.xml"), log4j).unwrap();
    let args: Vec<String> = "--foreground --ncs --ts-config config.properties --model-store model_store --models mlp.mar --log-config log4j2.xml"
        .split(' ')
        .map(String::from)
        .collect();
    let server = TestServer::spawn_in(dir.path(), &args).unwrap();
    for _ in 0..60 {
        assert_eq!(server.get("/ping").status, 200);
    }
    let logs = dir.path().join("logs");
    let rolled = || {
        std::fs::read_dir(&logs)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("access_log.") && name.ends_with(".log.gz"))
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while rolled() < 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rolled(), 2, "60 lines of ~70 bytes in 1 KB files: rolled over, and only 2 kept");
    assert!(std::fs::metadata(logs.join("access_log.log")).unwrap().len() <= 1024);
}

#[test]
fn a_log_folder_that_cannot_be_written_stops_start_up_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("model_store")).unwrap();
    std::fs::write(dir.path().join("config.properties"), crate::helpers::FREE_PORTS).unwrap();
    std::fs::write(dir.path().join("not_a_folder"), "").unwrap();
    let mut command = crate::helpers::tserve_command(dir.path());
    let output = command
        .env("LOG_LOCATION", dir.path().join("not_a_folder/logs"))
        .args(["--foreground", "--ncs", "--ts-config", "config.properties", "--model-store", "model_store"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stderr).to_string() + &String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("not_a_folder/logs"), "{text}");
}

/// KServe v1 and OIP requests are predictions like any other: counted in TorchServe's and
/// tserve's metrics, and logged in the access log.
#[test]
fn kserve_and_oip_requests_are_counted_and_logged() {
    let server = TestServer::start(&["mlp.mar"], "metrics_mode=prometheus");
    let oip = br#"{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}"#;
    assert_eq!(server.post("/v2/models/mlp/versions/1.0/infer", oip).status, 200);
    assert_eq!(server.post("/v1/models/mlp:predict", br#"{"instances": [[1.5, 2, 3, 4]]}"#).status, 200);
    assert_eq!(server.post("/v2/models/nope/infer", oip).status, 404);
    let (reply, families) = scrape(&server, "");
    let total = |version: &str| sample(&families, "ts_inference_requests_total", &[("model_name", "mlp"), ("model_version", version)]);
    assert_eq!((total("default"), total("1.0")), (Some(1.0), Some(1.0)), "{}", reply.body);
    assert_eq!(sample(&families, "Requests2XX", &[("Level", "Host")]), Some(2.0));
    assert_eq!(sample(&families, "Requests4XX", &[("Level", "Host")]), Some(1.0));
    let log = file_when(&server.dir().join("logs/access_log.log"), |log| log.contains(":predict"));
    assert!(log.contains("\"POST /v2/models/mlp/versions/1.0/infer HTTP/1.1\" 200"), "{log}");
    assert!(log.contains("\"POST /v1/models/mlp:predict HTTP/1.1\" 200"), "{log}");
}
