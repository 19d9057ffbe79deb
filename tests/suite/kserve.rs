//! KServe's data plane with its real clients: the Open Inference Protocol v2 over REST
//! (tritonclient.http and kserve's InferenceRESTClient, JSON and binary tensors) and over gRPC
//! (tritonclient.grpc, grpcio stubs generated from the vendored proto), KServe v1, and
//! explanations, driven by `tests/fixtures/oip_clients.py` against a live server; plus the
//! bodies and codes a client sees for errors.

use std::process::Command;

use serde_json::json;

use crate::helpers::{repo_root, TestServer};
use crate::monitoring::{file_when, sample, scrape};

/// Runs one check of the client script against `server`; panics with its output if it fails.
fn clients(server: &TestServer, check: &str) {
    run_clients(server, &[check, &server.base_url]);
}

/// Runs one gRPC check (`grpc_<check>`) against the server's gRPC listener.
fn grpc_clients(server: &TestServer, check: &str, extra: &[&str]) {
    let check = format!("grpc_{check}");
    let address = server.grpc_address();
    let mut args = vec![check.as_str(), address.as_str()];
    args.extend(extra);
    run_clients(server, &args);
}

fn run_clients(server: &TestServer, args: &[&str]) {
    let check = args[0];
    let output = Command::new(repo_root().join(".venv/bin/python"))
        .arg(repo_root().join("tests/fixtures/oip_clients.py"))
        .args(args)
        .output()
        .expect("run oip_clients.py");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "oip_clients.py {check} failed:\n{text}\nserver:\n{}", server.output());
    print!("{text}");
}

/// Every model the client checks use, one worker each, both versions of `mlp`.
fn served() -> TestServer {
    let server = TestServer::launch(
        &["identity.mar", "pair.mar", "mlp.mar", "mlp_v2.mar"],
        &["identity.mar", "pair.mar", "mlp.mar"],
        "default_workers_per_model=1\nenable_model_api=true\nmetrics_mode=prometheus",
    );
    let reply = server.manage("POST", "/models?url=mlp_v2.mar&initial_workers=1&synchronous=true");
    assert_eq!(reply.status, 200, "{}", reply.body);
    server
}

#[test]
fn every_datatype_round_trips_through_tritonclient() {
    clients(&served(), "datatypes");
}

#[test]
fn oip_metadata_versions_outputs_and_errors_through_tritonclient() {
    clients(&served(), "protocol");
}

#[test]
fn oip_over_grpc_with_tritonclient_and_generated_stubs() {
    let server = served();
    grpc_clients(&server, "protocol", &[]);
    grpc_clients(&server, "stubs", &[]);
    // Each call has its access-log line, in TorchServe's gRPC form, with its status code.
    let log = file_when(&server.dir().join("logs/access_log.log"), |log| log.contains("HTTP/2.0\" 5 "));
    assert!(log.contains("\"gRPC inference.GRPCInferenceService/ModelInfer HTTP/2.0\" 0 "), "{log}");
    assert!(log.contains("\"gRPC inference.GRPCInferenceService/ModelInfer HTTP/2.0\" 5 "), "NOT_FOUND: {log}");
    // Predictions over gRPC count as predictions, and every call as a response.
    let (reply, families) = scrape(&server, "");
    let identity = sample(&families, "ts_inference_requests_total", &[("model_name", "identity"), ("model_version", "default")]);
    assert!(identity >= Some(13.0), "12 datatypes, BF16 and the stubs' calls: {}", reply.body);
    assert!(sample(&families, "Requests4XX", &[("Level", "Host")]) >= Some(3.0), "{}", reply.body);
}

#[test]
fn kserve_client_v2_and_v1() {
    clients(&served(), "kserve");
}

#[test]
fn readiness_waits_for_workers() {
    let server = TestServer::launch(&["identity.mar"], &[], "enable_model_api=true");
    let reply = server.manage("POST", "/models?url=identity.mar&initial_workers=0");
    assert_eq!(reply.status, 200, "{}", reply.body);
    clients(&server, "not_ready");
    assert_eq!(server.get("/v2/health/ready").status, 503);
    let v1 = server.get("/v1/models/identity");
    assert_eq!((v1.status, v1.json()), (503, json!({"name": "identity", "ready": false})));
    let reply = server.manage("PUT", "/models/identity?min_worker=1&synchronous=true");
    assert_eq!(reply.status, 200, "{}", reply.body);
    clients(&server, "ready");
    let v1 = server.get("/v1/models/identity");
    assert_eq!((v1.status, v1.json()), (200, json!({"name": "identity", "ready": true})));
}

#[test]
fn errors_in_each_protocols_shape() {
    let server = TestServer::start(&["mlp.mar"], "");
    // OIP: {"error": "..."} with the status the error has everywhere.
    let missing = server.post("/v2/models/nope/infer", b"{}");
    assert_eq!(missing.status, 404);
    assert!(missing.json()["error"].as_str().unwrap().contains("nope"), "{}", missing.body);
    let version = server.get("/v2/models/mlp/versions/7.0/ready");
    assert_eq!(version.status, 404);
    assert!(version.json()["error"].as_str().unwrap().contains("7.0"), "{}", version.body);
    let bad = server.post("/v2/models/mlp/infer", b"{\"inputs\": 3}");
    assert_eq!(bad.status, 400);
    assert!(bad.json()["error"].as_str().is_some(), "{}", bad.body);
    let method = server.request("DELETE", "/v2/models/mlp/infer", b"");
    assert_eq!(method.status, 405);
    // KServe v1 keeps TorchServe's shape, as TorchServe answers these routes.
    let (kind, _) = server.post("/v1/models/nope:predict", b"{\"instances\": [[1]]}").error(404);
    assert_eq!(kind, "ModelNotFoundException");
    let (kind, message) = server.post("/v1/models/mlp:predict", b"{\"rows\": []}").error(400);
    assert_eq!(kind, "BadRequestException");
    assert!(message.contains("instances"), "{message}");
    // A v1 predict is a prediction like any other: counted, and its rows in one answer.
    let reply = server.post("/v1/models/mlp:predict", b"{\"instances\": [[1.5, 2, 3, 4], [0, 0, 0, 0]]}");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["predictions"].as_array().unwrap().len(), 2);
    // Native models have no explainer: a 501 that names the alternative.
    let (kind, message) = server.post("/v1/models/mlp:explain", b"{\"instances\": [[1.5, 2, 3, 4]]}").error(501);
    assert_eq!(kind, "NotImplementedException");
    assert!(message.contains("Python backend"), "{message}");
    let live = server.get("/v2/health/live");
    assert_eq!((live.status, live.json()), (200, json!({"live": true})));
}

#[test]
fn the_new_routes_need_the_inference_token() {
    let server = TestServer::launch(&["mlp.mar"], &["mlp.mar"], "default_workers_per_model=1\ndisable_token_authorization=false");
    for path in ["/v2/health/live", "/v2/models/mlp", "/v1/models/mlp"] {
        assert_eq!(server.get(path).status, 400, "{path} without a token");
    }
    assert_eq!(server.post("/v2/models/mlp/infer", b"{}").status, 400);
    assert_eq!(server.post("/v1/models/mlp:predict", b"{}").status, 400);
    let keys: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(server.dir().join("key_file.json")).unwrap()).unwrap();
    let key = keys["inference"]["key"].as_str().unwrap();
    let live = ureq::get(&server.url("/v2/health/live"))
        .set("Authorization", &format!("Bearer {key}"))
        .call()
        .unwrap();
    assert_eq!(live.status(), 200);
    grpc_clients(&server, "token", &[key]);
}

/// TorchServe's switch, read as TorchServe reads it: the file's key, and the environment's
/// `TS_OPEN_INFERENCE_PROTOCOL` (which wins, without `enable_envvars_config`).
#[test]
fn the_open_inference_protocol_switch() {
    let off = TestServer::start(&["mlp.mar"], "ts_open_inference_protocol=false");
    let (kind, _) = off.get("/v2/health/live").error(404);
    assert_eq!(kind, "ResourceNotFoundException");
    assert_eq!(off.get("/v2/models/mlp").status, 404);
    // Infer stays routed, as TorchServe routes it either way.
    let reply = off.post("/v2/models/mlp/infer", br#"{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}"#);
    assert_eq!(reply.status, 200, "{}", reply.body);
    grpc_clients(&off, "off", &[]);
    drop(off);
    let on = TestServer::start_with_env(
        &["mlp.mar"],
        "default_workers_per_model=1\nts_open_inference_protocol=false",
        &[("TS_OPEN_INFERENCE_PROTOCOL", "oip")],
    );
    assert_eq!(on.get("/v2/health/live").status, 200);
}

/// Explanations on every route TorchServe has them: a Python handler explains with Captum
/// (TorchServe's VisionHandler, integrated gradients over the image); a native model answers 501
/// naming the way to one, in each protocol's error shape.
#[test]
fn explanations_from_captum_and_501_for_native_models() {
    let server = TestServer::start(&["resnet18_python.mar", "mlp.mar"], "");
    let photo = std::fs::read(crate::helpers::fixture("images/photo.jpg")).unwrap();
    let reply = server.post("/explanations/resnet18_python", &photo);
    assert_eq!(reply.status, 200, "{}", reply.body);
    // One attribution per input value: 3 × 224 × 224.
    let attributions = reply.json();
    let channels = attributions.as_array().unwrap();
    assert_eq!(channels.len(), 3, "{}", &reply.body[..200.min(reply.body.len())]);
    assert_eq!(channels[0].as_array().unwrap().len(), 224);
    assert_eq!(channels[0][0].as_array().unwrap().len(), 224);
    assert!(channels[0][0][0].is_number());
    let (kind, message) = server.post("/explanations/mlp", b"[[1, 2, 3, 4]]").error(501);
    assert_eq!(kind, "NotImplementedException");
    assert!(message.contains("Python backend"), "{message}");
    let v2 = server.post("/v2/models/mlp/explain", b"{}");
    assert_eq!(v2.status, 501);
    assert!(v2.json()["error"].as_str().unwrap().contains("Python backend"), "{}", v2.body);
    assert_eq!(server.post("/explanations/nope", b"").status, 404);
}

/// Behind each envelope a Python handler answers byte for byte what TorchServe's own envelope
/// makes of the same request (recorded by `make_models.py` running TorchServe's envelope
/// classes, as its Python worker does), on every route that reaches it.
#[test]
fn envelope_answers_are_torchserves_byte_for_byte() {
    let recorded: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(crate::helpers::fixture("envelope_expected.json")).unwrap()).unwrap();
    let body = |name: &str| serde_json::to_vec(&recorded["requests"][name]).unwrap();
    let expected = |name: &str| recorded[name].as_str().unwrap().to_string();
    let v2 = TestServer::start(&["py_envelope.mar"], "service_envelope=kservev2");
    for (path, answer) in [("/v2/models/py_envelope/infer", "kservev2"), ("/v2/models/py_envelope/explain", "kservev2_explain")] {
        let reply = v2.post(path, &body("kservev2"));
        assert_eq!((reply.status, reply.body.clone()), (200, expected(answer)), "{path}");
    }
    drop(v2);
    let v1 = TestServer::start(&["py_envelope.mar"], "service_envelope=kserve");
    for (path, answer) in [
        ("/v1/models/py_envelope:predict", "kserve"),
        ("/v1/models/py_envelope:explain", "kserve_explain"),
        ("/explanations/py_envelope", "kserve_explain"),
        ("/predictions/py_envelope", "kserve"),
    ] {
        let reply = v1.post(path, &body("kserve"));
        assert_eq!((reply.status, reply.body.clone()), (200, expected(answer)), "{path}");
    }
}

/// Python handlers get OIP and v1 bodies wrapped by TorchServe's own envelope, chosen by
/// `service_envelope`, and answer as TorchServe answers.
#[test]
fn python_handlers_behind_torchserves_kserve_envelopes() {
    let v2 = TestServer::start(&["py_envelope.mar"], "service_envelope=kservev2");
    clients(&v2, "envelope_v2");
    grpc_clients(&v2, "envelope_v2", &[]);
    drop(v2);
    let v1 = TestServer::start(&["py_envelope.mar"], "service_envelope=kserve");
    clients(&v1, "envelope_v1");
}
