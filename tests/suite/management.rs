//! The management API, end to end, against the live actor system: every endpoint, its errors,
//! versions side by side, concurrent changes under prediction load, and snapshots.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{assert_close, fixture, mlp_cases, Reply, TestServer, FREE_PORTS};

fn with_model_api(store_files: &[&str], config: &str) -> TestServer {
    TestServer::launch(store_files, &[], &format!("enable_model_api=true\n{config}"))
}

fn status_of(reply: &Reply) -> String {
    reply.json()["status"].as_str().unwrap_or_default().to_string()
}

fn mlp_answer_ok(server: &TestServer, path: &str) {
    let (input, expected) = &mlp_cases()[0];
    let reply = server.post(path, input.to_string().as_bytes());
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_close(&reply.json(), expected, 1e-5);
}

#[test]
fn the_model_api_is_off_unless_enabled() {
    let server = TestServer::launch(&["mlp.mar"], &["mlp.mar"], "default_workers_per_model=1");
    for (method, path) in [("POST", "/models?url=mlp.mar"), ("DELETE", "/models/mlp")] {
        let reply = server.manage(method, path);
        assert_eq!(reply.status, 405);
        assert_eq!(
            reply.body,
            "{\n  \"code\": 405,\n  \"type\": \"MethodNotAllowedException\",\n  \"message\": \"Requested method is not allowed, please refer to API document.\"\n}\n"
        );
    }
    // Reading and scaling need no model API.
    assert_eq!(server.manage("GET", "/models").status, 200);
    assert_eq!(server.manage("PUT", "/models/mlp?min_worker=1").status, 202);
    mlp_answer_ok(&server, "/predictions/mlp");
}

#[test]
fn register_describe_scale_list_and_unregister() {
    let server = with_model_api(&["mlp.mar", "faulty.mar"], "");
    let reply = server.manage("POST", "/models?url=mlp.mar&initial_workers=1&synchronous=true");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(status_of(&reply), "Model \"mlp\" Version: 1.0 registered with 1 initial workers");
    mlp_answer_ok(&server, "/predictions/mlp");

    let described = server.manage("GET", "/models/mlp").json();
    let model = &described[0];
    assert_eq!(described.as_array().unwrap().len(), 1);
    assert_eq!(model["modelName"], "mlp");
    assert_eq!(model["modelVersion"], "1.0");
    assert_eq!(model["modelUrl"], "mlp.mar");
    assert_eq!(model["runtime"], "python");
    assert_eq!((model["minWorkers"].clone(), model["maxWorkers"].clone()), (json!(1), json!(1)));
    assert_eq!((model["batchSize"].clone(), model["maxBatchDelay"].clone()), (json!(1), json!(100)));
    assert_eq!(model["loadedAtStartup"], false);
    assert_eq!(model["deviceType"], "cpu");
    assert_eq!(model["jobQueueStatus"], json!({"remainingCapacity": 100, "pendingRequests": 0}));
    let worker = &model["workers"][0];
    assert_eq!(worker["status"], "READY");
    assert_eq!(worker["gpu"], false);
    assert_eq!(worker["gpuUsage"], "N/A");
    assert!(worker["id"].as_str().unwrap().parse::<u32>().unwrap() >= 9000);
    assert!(worker["startTime"].as_str().unwrap().ends_with('Z'));
    let keys: Vec<&String> = model.as_object().unwrap().keys().collect();
    assert_eq!(&keys[..4], ["modelName", "modelVersion", "modelUrl", "runtime"]);
    assert_eq!(keys.last().unwrap().as_str(), "jobQueueStatus");

    let reply = server.manage("PUT", "/models/mlp?min_worker=2&max_worker=3&synchronous=true");
    assert_eq!((reply.status, status_of(&reply)), (200, "Workers scaled to 2 for model: mlp".into()));
    let model = &server.manage("GET", "/models/mlp/1.0").json()[0];
    assert_eq!(model["workers"].as_array().unwrap().len(), 2);
    assert_eq!((model["minWorkers"].clone(), model["maxWorkers"].clone()), (json!(2), json!(3)));

    let reply = server.manage("PUT", "/models/mlp/1.0?min_worker=1");
    assert_eq!((reply.status, status_of(&reply)), (202, "Processing worker updates...".into()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.manage("GET", "/models/mlp").json()[0]["workers"].as_array().unwrap().len() != 1 {
        assert!(Instant::now() < deadline, "scaled down");
        std::thread::sleep(Duration::from_millis(50));
    }
    mlp_answer_ok(&server, "/predictions/mlp");

    let reply = server.manage("POST", "/models?url=faulty.mar&initial_workers=1");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let list = server.manage("GET", "/models").json();
    assert_eq!(
        list,
        json!({"models": [{"modelName": "faulty", "modelUrl": "faulty.mar"}, {"modelName": "mlp", "modelUrl": "mlp.mar"}]})
    );

    let reply = server.manage("DELETE", "/models/mlp");
    assert_eq!((reply.status, status_of(&reply)), (200, "Model \"mlp\" unregistered".into()));
    let (kind, _) = server.post("/predictions/mlp", b"[1.0]").error(404);
    assert_eq!(kind, "ModelNotFoundException");
    assert_eq!(server.manage("GET", "/models").json()["models"].as_array().unwrap().len(), 1);
    assert_eq!(server.get("/ping").status, 200);
}

#[test]
fn register_errors_are_torchserves() {
    let server = with_model_api(&["mlp.mar", "broken.mar"], "");
    let (kind, message) = server.manage("POST", "/models").error(400);
    assert_eq!((kind.as_str(), message.as_str()), ("BadRequestException", "Parameter url is required."));
    let (_, message) = server.manage("POST", "/models?url=mlp.mar&runtime=java").error(400);
    assert_eq!(message, "Invalid RuntimeType value: java");
    let (kind, message) = server.manage("POST", "/models?url=missing.mar").error(404);
    assert_eq!((kind.as_str(), message.as_str()), ("ModelNotFoundException", "Model not found at: missing.mar"));
    let (_, message) = server.manage("POST", "/models?url=../etc/passwd").error(404);
    assert_eq!(message, "Relative path is not allowed in url: ../etc/passwd");

    let reply = server.manage("POST", "/models?url=mlp.mar");
    assert_eq!(
        status_of(&reply),
        "Model \"mlp\" Version: 1.0 registered with 0 initial workers. Use scale workers API to add workers for the model."
    );
    let (kind, message) = server.manage("POST", "/models?url=mlp.mar").error(409);
    assert_eq!((kind.as_str(), message.as_str()), ("ConflictStatusException", "Model version 1.0 is already registered for model mlp"));
    let (kind, _) = server.post("/predictions/mlp", b"[1.0]").error(503);
    assert_eq!(kind, "ServiceUnavailableException", "no workers yet");

    // Workers that cannot start: 500, and the model is unregistered again.
    let (kind, message) = server.manage("POST", "/models?url=broken.mar&initial_workers=1&synchronous=true").error(500);
    assert_eq!((kind.as_str(), message.as_str()), ("InternalServerException", "Failed to start workers for model broken version: 1.0"));
    assert_eq!(server.manage("GET", "/models/broken").status, 404);

    // Parameters may come as a JSON body.
    let reply = Reply::from(
        ureq::post(&format!("{}/models", server.management_url))
            .send_json(json!({"url": "mlp.mar", "model_name": "mlp_json", "initial_workers": 1, "batch_size": 4, "max_batch_delay": 20})),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let model = &server.manage("GET", "/models/mlp_json").json()[0];
    assert_eq!((model["batchSize"].clone(), model["maxBatchDelay"].clone()), (json!(4), json!(20)));
    mlp_answer_ok(&server, "/predictions/mlp_json");
}

#[test]
fn scale_describe_and_delete_errors() {
    let server = with_model_api(&["mlp.mar"], "");
    server.manage("POST", "/models?url=mlp.mar&initial_workers=1");
    let (_, message) = server.manage("PUT", "/models/mlp?min_worker=3&max_worker=2").error(400);
    assert_eq!(message, "max_worker cannot be less than min_worker.");
    let (kind, message) = server.manage("PUT", "/models/nope?min_worker=1").error(404);
    assert_eq!((kind.as_str(), message.as_str()), ("ModelNotFoundException", "Model not found: nope"));
    let (kind, message) = server.manage("PUT", "/models/mlp/9.9?min_worker=1").error(404);
    assert_eq!((kind.as_str(), message.as_str()), ("ModelVersionNotFoundException", "Model version: 9.9 does not exist for model: mlp"));
    assert_eq!(server.manage("GET", "/models/nope").error(404).0, "ModelNotFoundException");
    assert_eq!(server.manage("GET", "/models/nope/all").error(404).0, "ModelNotFoundException");
    assert_eq!(server.manage("GET", "/models/mlp/9.9").error(404).0, "ModelVersionNotFoundException");
    assert_eq!(server.manage("DELETE", "/models/mlp/9.9").error(404).0, "ModelVersionNotFoundException");
    assert_eq!(server.manage("DELETE", "/models/nope").error(404).0, "ModelNotFoundException");
    let (kind, message) = server.manage("PUT", "/models/mlp/9.9/set-default").error(404);
    assert_eq!((kind.as_str(), message.as_str()), ("ModelVersionNotFoundException", "Model version 9.9 does not exist for model mlp"));
    assert_eq!(server.manage("GET", "/nowhere").error(404).0, "ResourceNotFoundException");
    assert_eq!(server.manage("PATCH", "/models").error(405).0, "MethodNotAllowedException");
}

#[test]
fn versions_side_by_side_and_default_version() {
    let server = with_model_api(&["mlp.mar", "mlp_v2.mar"], "");
    assert_eq!(server.manage("POST", "/models?url=mlp.mar&initial_workers=1").status, 200);
    assert_eq!(server.manage("POST", "/models?url=mlp_v2.mar&initial_workers=1").status, 200);
    // The first version registered is the default; 2.0 (the doubling model) by name.
    mlp_answer_ok(&server, "/predictions/mlp");
    assert_eq!(server.post("/predictions/mlp/2.0", b"[1.0, 2.0]").json(), json!([2.0, 4.0]));
    let all = server.manage("GET", "/models/mlp/all").json();
    let mut versions: Vec<&str> = all.as_array().unwrap().iter().map(|m| m["modelVersion"].as_str().unwrap()).collect();
    versions.sort();
    assert_eq!(versions, ["1.0", "2.0"]);

    let (kind, message) = server.manage("DELETE", "/models/mlp/1.0").error(403);
    assert_eq!((kind.as_str(), message.as_str()), ("InvalidModelVersionException", "Cannot remove default version for model mlp"));
    let reply = server.manage("PUT", "/models/mlp/2.0/set-default");
    assert_eq!(status_of(&reply), "Default version successfully updated for model \"mlp\" to \"2.0\"");
    assert_eq!(server.post("/predictions/mlp", b"[1.0, 2.0]").json(), json!([2.0, 4.0]));
    assert_eq!(server.manage("GET", "/models/mlp").json()[0]["modelVersion"], "2.0");
    assert_eq!(server.manage("DELETE", "/models/mlp/1.0").status, 200);
    assert_eq!(server.post("/predictions/mlp/1.0", b"[1.0]").error(404).0, "ModelVersionNotFoundException");
    assert_eq!(server.manage("GET", "/v1/models/mlp").json(), json!({"name": "mlp", "ready": true}));
    assert_eq!(server.manage("GET", "/v1/models/nope").error(404).0, "ModelNotFoundException");
}

#[test]
fn list_pages_like_torchserve() {
    let server = TestServer::launch(&["mlp.mar", "faulty.mar", "sleepy.mar"], &["all"], "default_workers_per_model=1");
    let page = server.manage("GET", "/models?limit=2").json();
    assert_eq!(page["nextPageToken"], "2");
    let names: Vec<&str> = page["models"].as_array().unwrap().iter().map(|m| m["modelName"].as_str().unwrap()).collect();
    assert_eq!(names, ["faulty", "mlp"]);
    let rest = server.manage("GET", "/models?limit=2&next_page_token=2").json();
    assert_eq!(rest, json!({"models": [{"modelName": "sleepy", "modelUrl": "sleepy.mar"}]}));
    assert_eq!(server.manage("GET", "/models?limit=-1").json()["models"].as_array().unwrap().len(), 3);
    assert_eq!(server.manage("GET", "/models?next_page_token=9").json(), json!({"models": []}));
    assert_eq!(server.manage("GET", "/models/mlp").json()[0]["loadedAtStartup"], true);
}

#[test]
fn api_description_is_openapi() {
    let server = with_model_api(&[], "");
    for (method, path) in [("OPTIONS", "/"), ("GET", "/api-description")] {
        let doc = server.manage(method, path).json();
        assert_eq!(doc["openapi"], "3.0.1");
        assert!(doc["paths"]["/models/{model_name}"]["put"].is_object());
    }
    assert_eq!(server.manage("GET", "/").error(405).0, "MethodNotAllowedException");
}

/// Serves one file over HTTP on a free port, for `count` requests.
fn serve_file(bytes: Vec<u8>, count: usize) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(count) {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", bytes.len());
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&bytes);
        }
    });
    url
}

#[test]
fn models_registered_by_url_are_downloaded_and_removed_again() {
    let server = with_model_api(&[], "allowed_urls=http://127\\\\.0\\\\.0\\\\.1:\\\\d+/.*,file://.*");
    let url = serve_file(std::fs::read(fixture("mlp.mar")).unwrap(), 1);
    let reply = server.manage("POST", &format!("/models?url={url}/archives/mlp.mar&initial_workers=1"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    mlp_answer_ok(&server, "/predictions/mlp");
    let model = &server.manage("GET", "/models/mlp").json()[0];
    assert_eq!(model["modelUrl"], format!("{url}/archives/mlp.mar"));
    let stored = server.store_path().join("mlp.mar");
    assert!(stored.is_file(), "downloaded into the model store");
    assert_eq!(server.manage("DELETE", "/models/mlp").status, 200);
    assert!(!stored.exists(), "removed on unregister");

    let file_url = format!("file://{}", fixture("faulty.mar").display());
    assert_eq!(server.manage("POST", &format!("/models?url={file_url}&initial_workers=1")).status, 200);
    assert_eq!(server.post("/predictions/faulty", b"[1.0]").json(), json!([2.0]));
    let (kind, message) = server.manage("POST", "/models?url=https://example.com/x.mar").error(404);
    assert_eq!(kind, "ModelNotFoundException");
    assert_eq!(message, "Given URL https://example.com/x.mar does not match any allowed URL(s)");
}

#[test]
fn concurrent_management_changes_while_predictions_run() {
    let server = with_model_api(&["mlp.mar", "mlp_v2.mar", "faulty.mar"], "");
    assert_eq!(server.manage("POST", "/models?url=mlp.mar&initial_workers=1").status, 200);
    let cases = mlp_cases();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        let predictors: Vec<_> = (0..4)
            .map(|client| {
                let (server, cases, stop) = (&server, &cases, &stop);
                scope.spawn(move || {
                    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
                    let mut answered = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let (input, expected) = &cases[(client + answered) % cases.len()];
                        let reply = Reply::from(agent.post(&server.url("/predictions/mlp/1.0")).send_bytes(input.to_string().as_bytes()));
                        assert_eq!(reply.status, 200, "{}", reply.body);
                        // Always version 1.0's answer, whatever happens to the other versions.
                        assert_close(&reply.json(), expected, 1e-5);
                        answered += 1;
                    }
                    answered
                })
            })
            .collect();
        for round in 0..3 {
            assert_eq!(server.manage("POST", "/models?url=mlp_v2.mar&initial_workers=1").status, 200);
            assert_eq!(server.manage("POST", "/models?url=faulty.mar&initial_workers=1&synchronous=false").status, 202);
            assert_eq!(server.manage("PUT", &format!("/models/mlp/1.0?min_worker={}", 1 + round % 2)).status, 202);
            assert_eq!(server.manage("PUT", "/models/mlp/2.0?min_worker=2&synchronous=true").status, 200);
            assert_eq!(server.manage("DELETE", "/models/mlp/2.0").status, 200);
            assert_eq!(server.manage("DELETE", "/models/faulty").status, 200);
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let answered: usize = predictors.into_iter().map(|p| p.join().unwrap()).sum();
        assert!(answered > 0);
    });
    let all = server.manage("GET", "/models/mlp/all").json();
    assert_eq!(all.as_array().unwrap().len(), 1, "only 1.0 remains: {all}");
    assert_eq!(server.manage("GET", "/models").json()["models"].as_array().unwrap().len(), 1);
    mlp_answer_ok(&server, "/predictions/mlp");
}

#[test]
fn a_stop_start_cycle_restores_the_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("model_store");
    std::fs::create_dir(&store).unwrap();
    for file in ["mlp.mar", "mlp_v2.mar", "faulty.mar"] {
        std::fs::copy(fixture(file), store.join(file)).unwrap();
    }
    std::fs::create_dir(dir.path().join("conf")).unwrap();
    std::fs::write(dir.path().join("conf/ts.properties"), format!("{FREE_PORTS}enable_model_api=true\njob_queue_size=50\n")).unwrap();
    let args = |extra: &[&str]| -> Vec<String> {
        let mut args = vec!["--foreground".to_string(), "--model-store".into(), "model_store".into()];
        args.extend(extra.iter().map(|a| a.to_string()));
        args
    };

    let first = TestServer::spawn_in(dir.path(), &args(&["--ts-config", "conf/ts.properties"])).unwrap();
    assert_eq!(first.manage("POST", "/models?url=mlp.mar&initial_workers=1").status, 200);
    assert_eq!(first.manage("POST", "/models?url=mlp_v2.mar&initial_workers=1").status, 200);
    assert_eq!(first.manage("POST", "/models?url=faulty.mar&initial_workers=1&batch_size=4&max_batch_delay=7").status, 200);
    assert_eq!(first.manage("PUT", "/models/mlp/2.0?min_worker=2&synchronous=true").status, 200);
    assert_eq!(first.manage("PUT", "/models/mlp/2.0/set-default").status, 200);
    assert_eq!(first.stop().and_then(|s| s.code()), Some(0));

    let snapshots: Vec<String> = std::fs::read_dir(dir.path().join("logs/config"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for kind in ["-startup.cfg", "-snapshot.cfg", "-shutdown.cfg"] {
        assert!(snapshots.iter().any(|name| name.ends_with(kind)), "{kind} in {snapshots:?}");
    }

    // No config file named: the newest snapshot is the config, and its models come back.
    let second = TestServer::spawn_in(dir.path(), &args(&[])).unwrap();
    let output = second.output_when(|o| o.contains("Restoring config snapshot"));
    assert!(output.contains("Restoring config snapshot"), "{output}");
    assert_eq!(second.post("/predictions/mlp", b"[1.0, 2.0]").json(), json!([2.0, 4.0]), "default is 2.0");
    mlp_answer_ok(&second, "/predictions/mlp/1.0");
    let v2 = &second.manage("GET", "/models/mlp/2.0").json()[0];
    assert_eq!(v2["workers"].as_array().unwrap().len(), 2);
    assert_eq!(v2["jobQueueStatus"]["remainingCapacity"], 50, "the config came back too");
    let faulty = &second.manage("GET", "/models/faulty").json()[0];
    assert_eq!((faulty["batchSize"].clone(), faulty["maxBatchDelay"].clone()), (json!(4), json!(7)));
    assert_eq!(second.stop().and_then(|s| s.code()), Some(0));

    // A snapshot naming an archive that is gone: start-up fails, saying which.
    std::fs::remove_file(store.join("faulty.mar")).unwrap();
    let (code, output) = match TestServer::spawn_in(dir.path(), &args(&[])) {
        Ok(_) => panic!("started without faulty.mar"),
        Err(failure) => failure,
    };
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains("Model archive file for model :faulty, version :1.0 not found in model store"), "{output}");

    // --ncs: no restore, no snapshots.
    let before = std::fs::read_dir(dir.path().join("logs/config")).unwrap().count();
    let third = TestServer::spawn_in(dir.path(), &args(&["--ncs", "--ts-config", "conf/ts.properties"])).unwrap();
    assert_eq!(third.manage("GET", "/models").json(), json!({"models": []}));
    assert_eq!(third.stop().and_then(|s| s.code()), Some(0));
    assert_eq!(std::fs::read_dir(dir.path().join("logs/config")).unwrap().count(), before);
}

#[test]
fn torchserves_answers_for_no_workers_empty_urls_zero_startup_timeouts_and_trailing_slashes() {
    let server = with_model_api(&["mlp.mar"], "");
    let (kind, message) = server.manage("POST", "/models?url=").error(404);
    assert_eq!((kind.as_str(), message.as_str()), ("ModelNotFoundException", "empty url"));

    // A zero startup timeout with no workers registers; with workers they cannot start in time.
    let reply = server.manage("POST", "/models?url=mlp.mar&startup_timeout=0");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let (kind, message) = server.post("/predictions/mlp", b"[1.0, 2.0, 3.0, 4.0]").error(503);
    assert_eq!(kind, "ServiceUnavailableException");
    assert_eq!(
        message,
        "Model \"mlp\" has no worker to serve inference request. Please use scale workers API to add \
         workers. If this is a sequence inference, please check if it is closed, or expired; or \
         exceeds maxSequenceJobQueueSize"
    );
    let (_, message) = server.post("/predictions/mlp/1.0", b"[1.0, 2.0, 3.0, 4.0]").error(503);
    assert!(message.starts_with("Model \"mlp\" Version 1.0\" has no worker to serve inference request."), "{message}");
    assert_eq!(server.manage("DELETE", "/models/mlp/?synchronous=true").status, 200, "a trailing slash is fine");
    assert_eq!(server.manage("GET", "/models/mlp").status, 404);

    let (kind, message) = server
        .manage("POST", "/models?url=mlp.mar&initial_workers=1&startup_timeout=0&synchronous=true")
        .error(500);
    assert_eq!((kind.as_str(), message.as_str()), ("InternalServerException", "Failed to start workers for model mlp version: 1.0"));
    assert_eq!(server.manage("GET", "/models/mlp/").status, 404, "unregistered again");
    assert_eq!(server.manage("GET", "/models/").status, 200);
}

#[test]
fn model_configs_asking_for_features_tserve_lacks_are_refused_naming_the_key() {
    const KEYS: [&str; 10] = [
        "parallelType", "parallelLevel", "torchrun", "continuousBatching", "sequenceBatching",
        "sequenceMaxIdleMSec", "sequenceTimeoutMSec", "maxSequenceJobQueueSize", "maxNumSequence",
        "useVenv",
    ];
    let archives: Vec<String> = KEYS.iter().map(|key| format!("unsupported_{key}.mar")).collect();
    let mut store: Vec<&str> = archives.iter().map(String::as_str).collect();
    store.push("sleepy.mar");
    let server = with_model_api(&store, "");
    for (key, archive) in KEYS.iter().zip(&archives) {
        let (kind, message) = server.manage("POST", &format!("/models?url={archive}&initial_workers=1")).error(400);
        assert_eq!(kind, "BadRequestException", "{key}");
        assert!(
            message.contains(&format!("model-config key {key} asks for a TorchServe feature tserve does not support yet")),
            "{key}: {message}"
        );
        assert_eq!(server.manage("GET", &format!("/models/unsupported_{key}")).status, 404, "{key} is not registered");
    }
    // The server keeps serving registrations that ask for nothing it lacks.
    let reply = server.manage("POST", "/models?url=sleepy.mar&initial_workers=1&synchronous=true");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(server.post("/predictions/sleepy", b"[0.0]").status, 200);
}
