//! The routes SageMaker and Vertex AI call a serving container on: `/invocations` (one model, a
//! named one, a multi-model endpoint's target), `/execution-parameters`, and Vertex's routes from
//! its `AIP_*` variables, answered over the same model service as `/predictions`.

use serde_json::json;

use crate::helpers::{assert_close, mlp_cases, Reply, TestServer};

#[test]
fn sagemaker_invocations_reach_the_one_model() {
    let server = TestServer::start(&["mlp.mar"], "");
    for (input, expected) in mlp_cases() {
        let reply = server.post("/invocations", input.to_string().as_bytes());
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_close(&reply.json(), &expected, 1e-5);
    }
    let (input, expected) = &mlp_cases()[0];
    let reply = server.post("/models/mlp/invoke", input.to_string().as_bytes());
    assert_close(&reply.json(), expected, 1e-5);
    assert_eq!(server.get("/ping").json(), json!({"status": "Healthy"}));

    // Batch transform asks first; the answer is SageMaker's three settings.
    let parameters = server.get("/execution-parameters");
    assert_eq!(parameters.status, 200, "{}", parameters.body);
    let parameters = parameters.json();
    assert!(parameters["MaxConcurrentTransforms"].as_u64().is_some_and(|n| n >= 1), "{parameters}");
    assert_eq!(parameters["BatchStrategy"], "MULTI_RECORD");
    assert_eq!(parameters["MaxPayloadInMB"], 6);
    assert_eq!(server.request("POST", "/execution-parameters", b"{}").status, 405);
}

#[test]
fn sagemaker_multi_model_endpoints_name_their_model() {
    let server = TestServer::start(&["mlp.mar", "py_behaviour.mar"], "");
    let (kind, message) = server.post("/invocations", b"hello").error(400);
    assert_eq!((kind.as_str(), message.as_str()), ("BadRequestException", "Parameter model_name is required."));

    // The header SageMaker's multi-model endpoints send names the artifact.
    let reply = Reply::from(
        ureq::post(&server.url("/invocations"))
            .set("X-Amzn-SageMaker-Target-Model", "py_behaviour.tar.gz")
            .send_bytes(b"hello"),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["echo"], "hello");

    let (input, expected) = &mlp_cases()[0];
    let reply = server.post("/invocations?model_name=mlp", input.to_string().as_bytes());
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_close(&reply.json(), expected, 1e-5);

    let (kind, _) = server.post("/invocations?model_name=nope", b"hello").error(404);
    assert_eq!(kind, "ModelNotFoundException");
    let (kind, _) = server.post("/models/nope/invoke", b"hello").error(404);
    assert_eq!(kind, "ModelNotFoundException");
}

#[test]
fn vertex_routes_and_port_come_from_its_environment() {
    let health = "/v1/endpoints/7/deployedModels/9";
    let predict = "/v1/endpoints/7/deployedModels/9:predict";
    // AIP_HTTP_PORT=0: a free port, on every interface as Vertex needs (the test speaks to loopback).
    let server = TestServer::start_with_env(
        &["mlp.mar"],
        "default_workers_per_model=1",
        &[("AIP_HTTP_PORT", "0"), ("AIP_HEALTH_ROUTE", health), ("AIP_PREDICT_ROUTE", predict)],
    );
    assert!(server.base_url.starts_with("http://0.0.0.0:"), "{}", server.base_url);
    let base = server.base_url.replace("0.0.0.0", "127.0.0.1");
    let get = |path: &str| Reply::from(ureq::get(&format!("{base}{path}")).call());
    let post = |path: &str, body: &str| Reply::from(ureq::post(&format!("{base}{path}")).send_string(body));

    assert_eq!(get(health).json(), json!({"status": "Healthy"}));
    let (input, expected) = &mlp_cases()[0];
    let reply = post(predict, &json!({ "instances": [input] }).to_string());
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_close(&reply.json()["predictions"], &json!([expected]), 1e-5);
    assert_eq!(get(predict).status, 405);
    // Only the configured paths: a neighbour is not found, and the usual routes still serve.
    assert_eq!(get("/v1/endpoints/7/deployedModels/8").status, 404);
    assert_eq!(post("/predictions/mlp", &input.to_string()).status, 200);
}
