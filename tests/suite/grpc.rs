//! TorchServe's own gRPC services, as its users call them: stubs generated from the vendored
//! `proto/torchserve/*.proto` with grpcio-tools, driven by `tests/fixtures/torchserve_grpc.py`
//! against a live server's inference (7070-style) and management (7071-style) ports.

use std::process::Command;

use crate::helpers::{fixture, repo_root, TestServer};

/// Runs one check of the client script; panics with its output if it fails.
fn check(server: &TestServer, name: &str, extra: &[&str]) -> String {
    let inference = server.grpc_address();
    let management = server.grpc_api_address("Management");
    let output = Command::new(repo_root().join(".venv/bin/python"))
        .arg(repo_root().join("tests/fixtures/torchserve_grpc.py"))
        .args([name, &inference, &management, &server.base_url])
        .args(extra)
        .output()
        .expect("run torchserve_grpc.py");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "torchserve_grpc.py {name} failed:\n{text}\nserver:\n{}", server.output());
    print!("{text}");
    text
}

#[test]
fn torchserve_inference_service_through_generated_stubs() {
    let server = TestServer::start(&["mlp.mar"], "");
    let expected = fixture("mlp_expected.json");
    check(&server, "inference", &[expected.to_str().unwrap()]);
    let log = std::fs::read_to_string(server.dir().join("logs/access_log.log")).unwrap();
    let line = "\"gRPC org.pytorch.serve.grpc.inference.InferenceAPIsService/Predictions HTTP/2.0\"";
    assert!(log.contains(&format!("{line} 0 ")), "{log}");
    assert!(log.contains(&format!("{line} 5 ")), "NOT_FOUND is logged with its code: {log}");
}

#[test]
fn stream_predictions_streams_a_streaming_handler() {
    let server = TestServer::start(&["py_stream.mar"], "");
    check(&server, "stream", &[]);
}

#[test]
fn torchserve_management_service_through_generated_stubs() {
    let server = TestServer::launch(&["mlp.mar", "mlp_v2.mar"], &["mlp.mar"], "default_workers_per_model=1\nenable_model_api=true");
    check(&server, "management", &[&server.management_url]);
    // What gRPC changed is what REST sees.
    let reply = server.manage("GET", "/models/mlp");
    assert_eq!(reply.json()[0]["modelVersion"], "2.0", "{}", reply.body);
    let off = TestServer::start(&["mlp.mar"], "");
    check(&off, "model_api_off", &[]);
}

#[test]
fn each_grpc_port_wants_its_own_key() {
    let server = TestServer::launch(&["mlp.mar"], &["mlp.mar"], "default_workers_per_model=1\ndisable_token_authorization=false");
    let keys: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(server.dir().join("key_file.json")).unwrap()).unwrap();
    let inference = keys["inference"]["key"].as_str().unwrap();
    let management = keys["management"]["key"].as_str().unwrap();
    check(&server, "tokens", &[inference, management]);
}
