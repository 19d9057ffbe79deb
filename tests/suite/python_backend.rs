//! Archives only TorchServe's Python backend can serve (eager models, custom handlers, Python
//! built-in handlers), made by torch-model-archiver and served through TorchServe's own
//! `ts.model_service_worker`, which tserve starts and drives. Expected answers come from
//! TorchServe's own handler code run in the fixture script, or from PyTorch.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{assert_close, fixture, mlp_cases, repo_root, Reply, TestServer, FREE_PORTS};

fn post_json(server: &TestServer, path: &str, body: &str) -> Reply {
    Reply::from(ureq::post(&server.url(path)).set("Content-Type", "application/json").send_string(body))
}

fn post_text(server: &TestServer, path: &str, body: &str) -> Reply {
    Reply::from(ureq::post(&server.url(path)).set("Content-Type", "text/plain").send_string(body))
}

fn describe_workers(server: &TestServer, model: &str) -> Vec<Value> {
    server.manage("GET", &format!("/models/{model}")).json()[0]["workers"].as_array().unwrap().clone()
}

/// Waits until the KServe readiness of `model` says ready.
fn wait_until_ready(server: &TestServer, model: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while server.manage("GET", &format!("/v1/models/{model}")).json()["ready"] != json!(true) {
        assert!(Instant::now() < deadline, "{model} ready again:\n{}", server.output());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_custom_class_handler_answers_as_the_native_path_does() {
    let server = TestServer::start(&["py_mlp.mar", "mlp.mar"], "");
    for (input, expected) in mlp_cases().iter().take(4) {
        let python = post_json(&server, "/predictions/py_mlp", &input.to_string());
        assert_eq!(python.status, 200, "{}", python.body);
        assert_close(&python.json(), expected, 1e-5);
        let native = server.post("/predictions/mlp", input.to_string().as_bytes());
        assert_close(&native.json(), &python.json(), 1e-5);
    }
    // Each Python worker is its own process, with its own pid and memory.
    let server_pid = server.pid();
    let python = &describe_workers(&server, "py_mlp")[0];
    assert_ne!(python["pid"], json!(server_pid));
    assert!(python["memoryUsage"].as_u64().unwrap() > 10 << 20, "{python}");
    assert_eq!(python["status"], "READY");
    assert_eq!(describe_workers(&server, "mlp")[0]["pid"], json!(server_pid), "native workers are in-process");
    // Its output is in the log under the worker's name.
    let output = server.output_when(|o| o.contains("-stdout - Torch worker started."));
    assert!(output.contains("W-") && output.contains("py_mlp_1.0-stdout - Torch worker started."), "{output}");
}

#[test]
fn function_handlers_see_what_torchserve_gives_them() {
    let server = TestServer::start(&["py_function.mar", "py_shout.mar"], "");
    let reply = Reply::from(
        ureq::post(&server.url("/predictions/py_function"))
            .set("Content-Type", "text/plain")
            .set("x-probe", "hello")
            .send_string("some text"),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let seen = reply.json();
    assert_eq!(seen["input"], "some text", "text/* reaches the handler decoded");
    assert_eq!(seen["batch_size"], 1);
    assert_eq!(seen["gpu_id"], Value::Null, "on the CPU");
    assert_eq!(seen["batch_setting"], 1);
    assert_eq!(seen["probe_header"], "hello");
    assert_eq!(seen["model_name"], "py_function");
    assert_eq!(seen["request_id"].as_str(), reply.header("x-request-id"), "TorchServe's requestID is the response's id");
    let model_dir = std::path::PathBuf::from(seen["model_dir"].as_str().unwrap());
    assert!(model_dir.join("MAR-INF/MANIFEST.json").is_file(), "{model_dir:?}");
    // JSON answers keep TorchServe's formatting: json.dumps(indent=2), no content type set.
    assert!(reply.body.starts_with("{\n  \"input\": \"some text\",\n"), "{}", reply.body);
    assert_eq!(reply.header("content-type"), None);
    // A JSON body reaches the handler decoded too.
    assert_eq!(post_json(&server, "/predictions/py_function", "[1, 2]").json()["input"], json!([1, 2]));

    // `function_handler:shout`: a named function; a str answer is sent as its UTF-8 text.
    let reply = post_text(&server, "/predictions/py_shout", "quiet");
    assert_eq!((reply.status, reply.body.as_str()), (200, "QUIET"));
}

#[test]
fn a_batch_goes_to_the_python_worker_in_one_message() {
    // batchSize 4, maxBatchDelay 1000 ms, one worker.
    let server = TestServer::launch(&["py_function_batched.mar"], &["py_function_batched.mar"], "");
    let answers: Vec<Value> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..4)
            .map(|i| {
                let server = &server;
                scope.spawn(move || post_text(server, "/predictions/py_function_batched", &format!("request {i}")).json())
            })
            .collect();
        clients.into_iter().map(|c| c.join().unwrap()).collect()
    });
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(answer["input"], format!("request {i}"), "each gets its own answer");
        assert_eq!(answer["batch_size"], 4, "all four in one batch: {answers:?}");
    }
    let ids: BTreeSet<&str> = answers.iter().map(|a| a["request_id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 4);
}

#[test]
fn handler_failures_and_answers_in_other_shapes_get_torchserves_responses() {
    let server = TestServer::start(&["py_behaviour.mar"], "");
    let (kind, message) = post_text(&server, "/predictions/py_behaviour", "raise").error(503);
    assert_eq!((kind.as_str(), message.as_str()), ("InternalServerException", "Prediction failed"));
    let (kind, message) = post_text(&server, "/predictions/py_behaviour", "mismatch").error(503);
    assert_eq!((kind.as_str(), message.as_str()), ("InternalServerException", "number of batch response mismatched"));

    let png = ureq::post(&server.url("/predictions/py_behaviour")).set("Content-Type", "text/plain").send_string("png").unwrap();
    assert_eq!(png.header("content-type"), Some("image/png"));
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut png.into_reader(), &mut bytes).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "the handler's bytes as they are: {bytes:?}");

    let created = post_text(&server, "/predictions/py_behaviour", "created");
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.header("x-handler"), Some("behaviour"));
    assert_eq!(created.json(), json!({"created": true}));
    // The worker went on serving throughout.
    assert_eq!(post_text(&server, "/predictions/py_behaviour", "hello").json()["echo"], "hello");
}

#[test]
fn a_worker_process_that_dies_is_replaced_and_nothing_else_is_hurt() {
    let server = TestServer::start(&["py_behaviour.mar", "mlp.mar"], "");
    let first_pid = post_text(&server, "/predictions/py_behaviour", "hello").json()["pid"].clone();

    let (kind, message) = post_text(&server, "/predictions/py_behaviour", "exit").error(500);
    assert_eq!((kind.as_str(), message.as_str()), ("InternalServerException", "Worker died."));
    let (input, expected) = &mlp_cases()[0];
    assert_close(&server.post("/predictions/mlp", input.to_string().as_bytes()).json(), expected, 1e-5);
    assert_eq!(server.get("/ping").status, 200, "a worker in its retry window is healthy");

    wait_until_ready(&server, "py_behaviour", Duration::from_secs(60));
    let second_pid = post_text(&server, "/predictions/py_behaviour", "hello").json()["pid"].clone();
    assert_ne!(first_pid, second_pid, "a new process");

    // Killed by SIGKILL, as the OOM killer does: TorchServe's 507.
    let (kind, message) = post_text(&server, "/predictions/py_behaviour", "kill").error(507);
    assert_eq!((kind.as_str(), message.as_str()), ("InternalServerException", "Worker died."));
    wait_until_ready(&server, "py_behaviour", Duration::from_secs(60));
    assert_eq!(post_text(&server, "/predictions/py_behaviour", "hello").status, 200);
    let output = server.output_when(|o| o.matches("Retry worker: W-").count() >= 2);
    assert!(output.matches("Retry worker: W-").count() >= 2, "{output}");
}

#[test]
fn a_hung_python_worker_is_killed_at_the_response_timeout() {
    let server = TestServer::start(&["py_behaviour.mar"], "default_response_timeout=2");
    let (kind, message) = post_text(&server, "/predictions/py_behaviour", "sleep 60").error(500);
    assert_eq!((kind.as_str(), message.as_str()), ("InternalServerException", "Worker died."));
    wait_until_ready(&server, "py_behaviour", Duration::from_secs(60));
    assert_eq!(post_text(&server, "/predictions/py_behaviour", "hello").status, 200);
}

/// Reads a chunked body to its end, noting when each read's bytes arrived.
fn read_with_arrivals(response: ureq::Response, started: Instant) -> (Vec<u8>, Vec<(Duration, usize)>) {
    let mut reader = response.into_reader();
    let (mut body, mut arrivals, mut buffer) = (Vec::new(), Vec::new(), vec![0u8; 1 << 16]);
    loop {
        let n = reader.read(&mut buffer).unwrap();
        if n == 0 {
            return (body, arrivals);
        }
        body.extend_from_slice(&buffer[..n]);
        arrivals.push((started.elapsed(), body.len()));
    }
}

/// A handler that calls `send_intermediate_predict_response` streams: a chunked body whose
/// parts arrive as the handler makes them, not when it has finished; the worker stays in step.
#[test]
fn a_streaming_handler_streams_over_rest() {
    let server = TestServer::start(&["py_stream.mar"], "");
    let pid = post_text(&server, "/predictions/py_stream", "hello").json()["pid"].clone();
    let started = Instant::now();
    let response = ureq::post(&server.url("/predictions/py_stream"))
        .set("Content-Type", "text/plain")
        .send_string("stream")
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.header("transfer-encoding"), Some("chunked"));
    assert!(response.header("x-request-id").is_some());
    let (body, arrivals) = read_with_arrivals(response, started);
    assert_eq!(String::from_utf8(body).unwrap(), "part 0part 1part 2done");
    // The handler spends 1.2 s between its first part and its answer: the first part was here
    // long before the end.
    let first = arrivals[0];
    let last = arrivals[arrivals.len() - 1];
    assert_eq!(first.1, "part 0".len(), "{arrivals:?}");
    assert!(last.0 - first.0 >= Duration::from_millis(800), "{arrivals:?}");
    // Later requests are answered in step, by the same process.
    for i in 0..5 {
        let answer = post_text(&server, "/predictions/py_stream", &format!("request {i}")).json();
        assert_eq!((answer["echo"].as_str(), &answer["pid"]), (Some(format!("request {i}").as_str()), &pid));
    }
}

/// A stream is never buffered without bound: a client that stops reading holds the handler
/// back, and gets every part when it reads on; a client that leaves mid-stream gets nothing
/// more, and the worker stays in step.
#[test]
fn a_slow_reader_holds_a_stream_back_and_a_gone_one_drops_it() {
    let server = TestServer::start(&["py_stream.mar"], "");
    let pid = post_text(&server, "/predictions/py_stream", "hello").json()["pid"].clone();
    let progress = server.dir().join("progress");
    let flood = format!("flood 1000 {}", progress.display());
    let response = ureq::post(&server.url("/predictions/py_stream")).set("Content-Type", "text/plain").send_string(&flood).unwrap();
    let mut reader = response.into_reader();
    let mut start = vec![0u8; 1000];
    reader.read_exact(&mut start).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let sent: usize = std::fs::read_to_string(&progress).unwrap().trim().parse().unwrap();
    assert!(sent < 500, "a client that stopped reading must hold the handler back; it sent {sent} of 1000 64 KiB parts");
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert_eq!(start.len() + rest.len(), 1000 * 65536 + "done".len());
    assert!(rest.ends_with(b"xxxxdone"));

    let response = ureq::post(&server.url("/predictions/py_stream")).set("Content-Type", "text/plain").send_string(&flood).unwrap();
    let mut reader = response.into_reader();
    reader.read_exact(&mut start).unwrap();
    drop(reader);
    let answer = post_text(&server, "/predictions/py_stream", "after").json();
    assert_eq!((&answer["echo"], &answer["pid"]), (&Value::from("after"), &pid), "the same worker, in step");
}

/// What each of `workers` Python workers of py_threads reports, keyed by pid: concurrent
/// requests until every worker has answered.
fn thread_reports(server: &TestServer, workers: usize) -> BTreeMap<String, Value> {
    let mut reports = BTreeMap::new();
    for _ in 0..30 {
        let answers: Vec<Value> = std::thread::scope(|scope| {
            let clients: Vec<_> = (0..workers)
                .map(|_| scope.spawn(|| post_text(server, "/predictions/py_threads", "x").json()))
                .collect();
            clients.into_iter().map(|c| c.join().unwrap()).collect()
        });
        for answer in answers {
            reports.insert(answer["pid"].to_string(), answer);
        }
        if reports.len() == workers {
            return reports;
        }
    }
    panic!("not every worker answered: {reports:?}");
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[test]
fn python_workers_get_their_share_of_the_cores() {
    let share = (cores() / 2).max(1);
    let server = TestServer::start_with(&["py_threads.mar"], "default_workers_per_model=2");
    wait_until_ready(&server, "py_threads", Duration::from_secs(120));
    for report in thread_reports(&server, 2).values() {
        assert_eq!(report["torch_threads"], share, "{report}");
        assert_eq!(report["omp"], share.to_string(), "{report}");
        assert_eq!(report["mkl"], share.to_string(), "{report}");
    }
}

#[test]
fn a_python_worker_started_by_a_scale_gets_the_new_share_and_running_ones_keep_theirs() {
    let server = TestServer::start(&["py_threads.mar"], "");
    let first = thread_reports(&server, 1).into_values().next().unwrap();
    assert_eq!(first["torch_threads"], cores(), "one worker has every core: {first}");
    let reply = server.manage("PUT", "/models/py_threads?min_worker=2&max_worker=2&synchronous=true");
    assert_eq!(reply.status, 200, "{}", reply.body);
    wait_until_ready(&server, "py_threads", Duration::from_secs(120));
    let reports = thread_reports(&server, 2);
    let first_pid = first["pid"].to_string();
    assert_eq!(reports[&first_pid]["torch_threads"], cores(), "sized at its start: {reports:?}");
    let new = reports.iter().find(|(pid, _)| **pid != first_pid).unwrap().1;
    assert_eq!(new["torch_threads"], (cores() / 2).max(1), "{new}");
}

#[test]
fn thread_variables_set_for_tserve_reach_python_workers_as_they_are() {
    let server = TestServer::start_with_env(&["py_threads.mar"], "default_workers_per_model=2", &[("OMP_NUM_THREADS", "2")]);
    wait_until_ready(&server, "py_threads", Duration::from_secs(120));
    for report in thread_reports(&server, 2).values() {
        assert_eq!(report["omp"], "2", "{report}");
        assert_eq!(report["torch_threads"], 2, "{report}");
        assert_eq!(report["mkl"], Value::Null, "none of the others is set for the user: {report}");
    }
}

#[test]
fn json_and_text_bodies_with_parameters_reach_the_handler_decoded_as_in_torchserve() {
    let server = TestServer::start(&["py_content.mar"], "");
    let send = |content_type: &str, body: &str| {
        let reply = Reply::from(ureq::post(&server.url("/predictions/py_content")).set("Content-Type", content_type).send_string(body));
        assert_eq!(reply.status, 200, "{content_type}: {}", reply.body);
        reply.json()
    };
    // TorchServe's frontend passes the media type without its parameters, and its backend
    // decodes `application/json` to an object and `text/*` to a str.
    let expected = json!({"type": "dict", "value": {"a": 1}, "content_type": "application/json"});
    assert_eq!(send("application/json", r#"{"a": 1}"#), expected);
    assert_eq!(send("application/json; charset=utf-8", r#"{"a": 1}"#), expected);
    assert_eq!(
        send("text/plain; charset=utf-8", "h\u{e9}llo"),
        json!({"type": "str", "value": "h\u{e9}llo", "content_type": "text/plain"})
    );
    assert_eq!(
        send("application/octet-stream", "raw"),
        json!({"type": "bytearray", "value": "raw", "content_type": "application/octet-stream"})
    );
}

/// TorchServe's quick start, as its README has it, with an eager DenseNet-161 made locally.
#[test]
fn the_torchserve_quick_start_with_an_eager_densenet161() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("model_store");
    std::fs::create_dir(&store).unwrap();
    let archiver = repo_root().join(".venv/bin/torch-model-archiver");
    let status = Command::new(archiver)
        .current_dir(fixture("quickstart"))
        .args(["--model-name", "densenet161", "--version", "1.0", "--model-file", "model.py"])
        .args(["--serialized-file", "densenet161-8d451a50.pth", "--extra-files", "index_to_name.json"])
        .args(["--handler", "image_classifier", "--export-path"])
        .arg(&store)
        .status()
        .unwrap();
    assert!(status.success());
    // The same weights as TorchScript, served natively, for comparison.
    let archive = env!("CARGO_BIN_EXE_tserve-archiver");
    let status = Command::new(archive)
        .current_dir(fixture(""))
        .args(["--model-name", "densenet161_scripted", "--version", "1.0", "--serialized-file", "densenet161.pt"])
        .args(["--extra-files", "index_to_name.json", "--handler", "image_classifier", "--export-path"])
        .arg(&store)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::write(dir.path().join("config.properties"), format!("{FREE_PORTS}default_workers_per_model=1\n")).unwrap();
    let args: Vec<String> = ["--start", "--foreground", "--ncs", "--model-store", "model_store", "--models", "densenet161.mar", "densenet161_scripted.mar"]
        .map(String::from)
        .to_vec();
    let server = TestServer::spawn_in(dir.path(), &args).unwrap();

    let photo = std::fs::read(fixture("images/photo.jpg")).unwrap();
    let reply = server.post("/predictions/densenet161", &photo);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let ours = reply.json();
    let theirs: Value = serde_json::from_str(&std::fs::read_to_string(fixture("densenet161_expected.json")).unwrap()).unwrap();
    let (ours, theirs) = (ours.as_object().unwrap(), theirs.as_object().unwrap());
    assert_eq!(ours.keys().collect::<Vec<_>>(), theirs.keys().collect::<Vec<_>>(), "the same 5 labels, in order");
    for (label, probability) in theirs {
        let diff = (ours[label].as_f64().unwrap() - probability.as_f64().unwrap()).abs();
        assert!(diff <= 1e-4, "{label}: {} vs TorchServe's {probability}", ours[label]);
    }
    // The TorchScript model on the native path agrees within its pre-processing's tolerance.
    let native = server.post("/predictions/densenet161_scripted", &photo).json();
    let native = native.as_object().unwrap();
    let shared = native.keys().filter(|label| ours.contains_key(*label)).count();
    assert!(shared >= 4, "{native:?} vs {ours:?}");
    for (label, probability) in native.iter().filter(|(label, _)| ours.contains_key(*label)) {
        assert!((probability.as_f64().unwrap() - ours[label].as_f64().unwrap()).abs() < 1e-3, "{label}");
    }
}

/// A built-in Python handler's answer for the test photo, served from `<model>.mar`, next to what
/// TorchServe's own handler answered for it at fixture time (`<expected>.json`).
fn built_in_answer(model: &str, expected: &str) -> (Value, Value) {
    let server = TestServer::start(&[&format!("{model}.mar")], "");
    let photo = std::fs::read(fixture("images/photo.jpg")).unwrap();
    let reply = server.post(&format!("/predictions/{model}"), &photo);
    assert_eq!(reply.status, 200, "{}", reply.body.chars().take(300).collect::<String>());
    let expected = serde_json::from_str(&std::fs::read_to_string(fixture(&format!("{expected}.json"))).unwrap()).unwrap();
    (reply.json(), expected)
}

#[test]
fn image_segmenter_a_python_built_in_handler_answers_as_torchserve() {
    let (answer, expected) = built_in_answer("py_segmenter", "segmenter_expected");
    assert_eq!(answer.as_array().unwrap().len(), 224);
    assert_close(&answer, &expected, 1e-4);
}

#[test]
fn object_detector_a_python_built_in_handler_answers_as_torchserve() {
    let (answer, expected) = built_in_answer("py_detector", "detector_expected");
    // Boxes named by index_to_name.json, each with its score; those under 0.5 left out.
    let labels: Vec<&str> = answer
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|detection| detection.as_object().unwrap().keys().filter(|k| *k != "score").map(String::as_str))
        .collect();
    assert!(!labels.is_empty() && labels.len() < 3, "some boxes pass the threshold, not all: {answer}");
    assert!(labels.iter().all(|label| ["cat", "dog", "bird"].contains(label)), "{answer}");
    assert_close(&answer, &expected, 1e-4);
}

#[test]
fn a_native_model_can_be_switched_to_the_python_backend() {
    // resnet18_python: resnet18.pt with image_classifier and `tserve: {backend: python}`.
    let server = TestServer::start(&["resnet18_python.mar"], "");
    assert_ne!(describe_workers(&server, "resnet18_python")[0]["pid"], json!(server.pid()));
    let expected: Value = serde_json::from_str(&std::fs::read_to_string(fixture("resnet18_expected.json")).unwrap()).unwrap();
    let reply = server.post("/predictions/resnet18_python", &std::fs::read(fixture("images/photo.jpg")).unwrap());
    assert_eq!(reply.status, 200, "{}", reply.body);
    let (ours, theirs) = (reply.json(), expected["photo.jpg"].clone());
    assert_eq!(
        ours.as_object().unwrap().keys().collect::<Vec<_>>(),
        theirs.as_object().unwrap().keys().collect::<Vec<_>>(),
        "TorchServe's own pre-processing: the same labels in the same order"
    );
    for (label, probability) in theirs.as_object().unwrap() {
        assert!((ours[label].as_f64().unwrap() - probability.as_f64().unwrap()).abs() <= 1e-4, "{label}");
    }
}

#[test]
fn requirements_are_installed_per_model_when_asked() {
    let config = "enable_model_api=true\ninstall_py_dep_per_model=true";
    let server = TestServer::launch(&["py_dependency.mar", "py_dependency_broken.mar"], &[], config);
    let reply = server.manage("POST", "/models?url=py_dependency.mar&initial_workers=1&synchronous=true");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(post_text(&server, "/predictions/py_dependency", "x").json(), json!({"tinydep": 42}));
    let (kind, message) = server.manage("POST", "/models?url=py_dependency_broken.mar&initial_workers=1").error(400);
    assert_eq!(kind, "InvalidModelException");
    assert_eq!(message, "Custom pip package installation failed for model py_dependency_broken");
    assert_eq!(server.manage("GET", "/models/py_dependency_broken").status, 404);

    // Without install_py_dep_per_model the handler cannot import its dependency: the workers
    // fail to start, and the model is unregistered again, as in TorchServe.
    let server = TestServer::launch(&["py_dependency.mar"], &[], "enable_model_api=true");
    let (kind, message) = server.manage("POST", "/models?url=py_dependency.mar&initial_workers=1&synchronous=true").error(500);
    assert_eq!((kind.as_str(), message.as_str()), ("InternalServerException", "Failed to start workers for model py_dependency version: 1.0"));
}

#[test]
fn a_handler_that_does_not_exist_gets_torchserves_responses() {
    let server = TestServer::launch(&["py_function.mar"], &[], "enable_model_api=true");
    // Accepted, as TorchServe accepts it; then its workers cannot load it.
    let (kind, message) = server
        .manage("POST", "/models?url=py_function.mar&handler=invalidHandler&initial_workers=1&synchronous=true")
        .error(500);
    assert_eq!((kind.as_str(), message.as_str()), ("InternalServerException", "Failed to start workers for model py_function version: 1.0"));
    let reply = server.manage("POST", "/models?url=py_function.mar&handler=invalidHandler");
    assert_eq!(reply.status, 200, "with no workers there is nothing to fail: {}", reply.body);
    let output = server.output_when(|o| o.contains("invalidHandler"));
    assert!(output.contains("invalidHandler"), "the worker's error is in the log:\n{output}");
}

#[test]
fn a_missing_python_is_a_clear_error_at_registration() {
    let server = TestServer::launch(&["py_function.mar", "mlp.mar"], &[], "enable_model_api=true\npython=/nonexistent/bin/python");
    let (kind, message) = server.manage("POST", "/models?url=py_function.mar&initial_workers=1").error(500);
    assert_eq!(kind, "InternalServerException");
    assert!(message.contains("/nonexistent/bin/python") && message.contains("`python`"), "{message}");
    // Native models do not need it.
    assert_eq!(server.manage("POST", "/models?url=mlp.mar&initial_workers=1").status, 200);
}

/// TorchServe 0.12's extra path segments: `/predictions/{model}/{version}/{path...}` reaches the
/// handler as the request header `url_path`, requests of one batch each with their own.
#[test]
fn extra_path_segments_reach_the_handler_as_url_path() {
    let server = TestServer::start(&["py_url_path.mar"], "");
    for path in ["v1/chat/completions", "v1/completions"] {
        let reply = post_json(&server, &format!("/predictions/py_url_path/1.0/{path}"), r#"{"prompt": "Hello world"}"#);
        assert_eq!((reply.status, reply.body.as_str()), (200, path));
    }
    // Without extra segments there is no url_path; an unknown version is still a 404.
    assert_eq!(post_json(&server, "/predictions/py_url_path/1.0", "{}").body, "");
    assert_eq!(post_json(&server, "/predictions/py_url_path/9.9/v1/completions", "{}").status, 404);
}

/// `OPTIONS /predictions/{model}`: the model's prediction API, in TorchServe's shape.
#[test]
fn options_on_a_model_describes_its_prediction_api() {
    let server = TestServer::start(&["py_url_path.mar"], "");
    let reply = server.request("OPTIONS", "/predictions/py_url_path", b"");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let api = reply.json();
    assert_eq!(api["openapi"], "3.0.1");
    assert_eq!(api["info"]["title"], "RESTful API for: py_url_path");
    let entry = &api["paths"]["/predictions/py_url_path"]["post"];
    assert_eq!(entry["operationId"], "py_url_path");
    assert_eq!(entry["description"], "A predict entry point for model: py_url_path.");
    assert!(api["paths"]["/v1/models/{model_name}:predict"]["post"].is_object());
    assert_eq!(server.request("OPTIONS", "/predictions/py_url_path/1.0", b"").status, 200);
    let (kind, _) = server.request("OPTIONS", "/predictions/nope", b"").error(404);
    assert_eq!(kind, "ModelNotFoundException");
}

/// `responseTimeout` bounds the gap between a stream's parts, as in TorchServe, not the whole
/// stream: a 1.2 s stream with parts 0.4 s apart passes a 1 s timeout.
#[test]
fn response_timeout_applies_to_the_gap_between_parts() {
    let server = TestServer::launch(&["py_stream.mar"], &[], "enable_model_api=true");
    let reply = server.manage("POST", "/models?url=py_stream.mar&initial_workers=1&synchronous=true&response_timeout=1");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = post_text(&server, "/predictions/py_stream", "stream");
    assert_eq!((reply.status, reply.body.as_str()), (200, "part 0part 1part 2done"));
}

/// `asyncCommunication: true`: one Python worker (TorchServe's `AsyncService`) holds several
/// requests at once; each still gets its own answer.
#[test]
fn an_async_worker_holds_many_requests_at_once() {
    let server = &TestServer::start(&["py_async.mar"], "");
    let answers: Vec<Value> = std::thread::scope(|scope| {
        let clients: Vec<_> = (0..4)
            .map(|i| scope.spawn(move || post_text(server, "/predictions/py_async", &format!("request {i}"))))
            .collect();
        clients.into_iter().map(|c| c.join().unwrap()).map(|reply| {
            assert_eq!(reply.status, 200, "{}", reply.body);
            reply.json()
        }).collect()
    });
    let pids: BTreeSet<String> = answers.iter().map(|a| a["pid"].to_string()).collect();
    assert_eq!(pids.len(), 1, "one worker process: {answers:?}");
    // Every request started before any finished: they were in the handler together.
    let latest_start = answers.iter().map(|a| a["started"].as_f64().unwrap()).fold(f64::MIN, f64::max);
    let earliest_end = answers.iter().map(|a| a["finished"].as_f64().unwrap()).fold(f64::MAX, f64::min);
    assert!(latest_start < earliest_end, "{answers:?}");
}

/// An asynchronous worker's request past `responseTimeout` gets `Worker died.`; the worker goes
/// on serving the others (its late reply, when it comes, is dropped).
#[test]
fn an_async_request_past_its_response_timeout_is_answered_and_the_worker_serves_on() {
    let server = TestServer::launch(&["py_async.mar"], &[], "enable_model_api=true");
    let reply = server.manage("POST", "/models?url=py_async.mar&initial_workers=1&synchronous=true&response_timeout=1");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let (kind, message) = post_text(&server, "/predictions/py_async", "slow").error(500);
    assert_eq!((kind.as_str(), message.as_str()), ("InternalServerException", "Worker died."));
    let pid = post_text(&server, "/predictions/py_async", "quick").json()["pid"].clone();
    std::thread::sleep(Duration::from_secs(3));
    let again = post_text(&server, "/predictions/py_async", "quick");
    assert_eq!((again.status, &again.json()["pid"]), (200, &pid), "the same process, still in step");
}
