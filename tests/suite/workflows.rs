//! Workflows as TorchServe 0.12 serves them: `.war` archives made by torch-workflow-archiver,
//! registered through `/workflows`, run through `/wfpredict`, their nodes ordinary models; the
//! answers compared with TorchServe's own, recorded once (`recorded/torchserve_workflows.json`,
//! by `tests/fixtures/record_torchserve_workflows.py`).

use serde_json::{json, Value};

use crate::helpers::{assert_close, mlp_cases, repo_root, Reply, TestServer};

fn served() -> TestServer {
    let archives = [
        "wf_seq.war", "wf_par.war", "wf_native.war", "wf_cycle.war", "wf_unknown.war", "wf_two_starts.war",
        "py_mlp.mar", "mlp.mar", "mlp_v2.mar",
    ];
    TestServer::launch(&archives, &[], "")
}

/// What TorchServe 0.12.0 answered for the same archives and input.
fn torchserve() -> Value {
    let text = std::fs::read_to_string(repo_root().join("tests/fixtures/recorded/torchserve_workflows.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// A workflow prediction of a JSON body, as the recording sent it.
fn predict(server: &TestServer, workflow: &str, body: &Value) -> Reply {
    Reply::from(
        ureq::post(&server.url(&format!("/wfpredict/{workflow}")))
            .set("Content-Type", "application/json")
            .send_string(&body.to_string()),
    )
}

/// An MLP case of the fixtures (its input row and the model's output) whose first element is
/// positive, which `mlp_v2.mar` (doubles its input, fails on a negative first element) takes.
fn mlp_case() -> (Value, Value) {
    let cases = mlp_cases();
    cases.into_iter().find(|(input, _)| input[0].as_f64() > Some(0.0)).unwrap()
}

/// TorchServe's answer in TorchServe's layout byte for byte (keys, their order, indentation,
/// number formatting), and its numbers within float32 rounding: the recording was made on another
/// CPU, and BLAS kernels of another CPU may sum in another order (on an Intel AVX-512 machine one
/// output differs from the recording in its last float32 bit).
fn assert_torchserve_body(body: &str, recorded: &str) {
    let numbers = regex::Regex::new(r"-?\d+(\.\d+)?([eE][-+]?\d+)?").unwrap();
    assert_eq!(numbers.replace_all(body, "N"), numbers.replace_all(recorded, "N"), "TorchServe's layout");
    let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap();
    assert_close(&parse(body), &parse(recorded), 1e-6);
}

fn register(server: &TestServer, war: &str) -> crate::helpers::Reply {
    server.manage("POST", &format!("/workflows?url={war}"))
}

#[test]
fn a_sequential_workflow_answers_as_torchserve() {
    let server = served();
    let recorded = torchserve();
    let reply = register(&server, "wf_seq.war");
    assert_eq!((reply.status, reply.json()), (200, recorded["wf_seq"]["register"][1].clone()));
    // Each node is a model of its own, named as TorchServe names it.
    let models: Vec<String> = server.manage("GET", "/models").json()["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["modelName"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(models, ["wf_seq__mlp", "wf_seq__post_processing", "wf_seq__pre_processing"]);
    let reply = predict(&server, "wf_seq", &recorded["input"]);
    assert_eq!((reply.status, reply.header("content-type")), (200, Some("application/json")));
    assert_torchserve_body(&reply.body, recorded["wf_seq"]["body"].as_str().unwrap());
    // A node that fails on every try fails the workflow, naming the node, as in TorchServe.
    let (kind, message) = predict(&server, "wf_seq", &json!([1, 2])).error(500);
    assert_eq!(kind, "InternalServerException");
    assert!(message.starts_with(recorded["wf_seq_bad_input"][1]["message"].as_str().unwrap()), "{message}");
}

#[test]
fn a_parallel_workflow_fans_out_and_back_in_as_torchserve() {
    let server = served();
    let recorded = torchserve();
    assert_eq!(register(&server, "wf_par.war").status, 200);
    let reply = predict(&server, "wf_par", &recorded["input"]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_torchserve_body(&reply.body, recorded["wf_par"]["body"].as_str().unwrap());
}

/// The same fan-out over tserve's native models, which take the bytes workflow nodes get (the
/// built-in handler under TorchServe cannot).
#[test]
fn native_models_serve_as_workflow_nodes() {
    let server = served();
    assert_eq!(register(&server, "wf_native.war").status, 200);
    let (input, output) = mlp_case();
    let reply = predict(&server, "wf_native", &input);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let answer = reply.json();
    assert_close(&answer["m1"], &output, 1e-5);
    let doubled: Vec<f64> = input.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() * 2.0).collect();
    assert_close(&answer["m2"], &json!(doubled), 1e-5);
}

#[test]
fn the_workflow_api_lists_describes_and_unregisters() {
    let server = served();
    assert_eq!(register(&server, "wf_seq.war").status, 200);
    let reply = register(&server, "wf_seq.war");
    let (kind, message) = reply.error(409);
    assert_eq!((kind.as_str(), message.as_str()), ("ConflictStatusException", "Workflow wf_seq is already registered."));
    assert_eq!(register(&server, "wf_par.war").status, 200);
    let recorded = torchserve();
    assert_eq!(server.manage("GET", "/workflows").json(), recorded["list"]);
    assert_eq!(server.manage("GET", "/workflows/wf_seq").json(), recorded["describe_wf_seq"]);
    assert_eq!(server.manage("DELETE", "/workflows/wf_par").status, 200);
    let reply = server.manage("DELETE", "/workflows/wf_seq");
    assert_eq!((reply.status, reply.json()), (200, json!({"status": "Workflow \"wf_seq\" unregistered"})));
    assert_eq!(server.manage("GET", "/models").json()["models"], json!([]), "its node models went with it");
    for (method, path) in [("GET", "/workflows/wf_seq"), ("DELETE", "/workflows/wf_seq")] {
        let (kind, message) = server.manage(method, path).error(404);
        assert_eq!((kind.as_str(), message.as_str()), ("WorkflowNotFoundException", "Workflow not found: wf_seq"));
    }
    let (kind, _) = server.post("/wfpredict/wf_seq", b"[1]").error(404);
    assert_eq!(kind, "WorkflowNotFoundException");
    // Registered again after the delete: the name is free.
    assert_eq!(register(&server, "wf_seq.war").status, 200);
}

#[test]
fn bad_workflows_are_refused_at_registration() {
    let server = served();
    let cases = [
        ("wf_cycle.war", "Not a valid DAG"),
        ("wf_unknown.war", "node nowhere is neither a model"),
        ("wf_two_starts.war", "DAG should have only one start node"),
    ];
    for (war, words) in cases {
        let (kind, message) = register(&server, war).error(400);
        assert_eq!(kind, "InvalidDAGException", "{war}");
        assert!(message.contains(words), "{war}: {message}");
    }
    let (kind, message) = register(&server, "nosuch.war").error(404);
    assert_eq!((kind.as_str(), message.as_str()), ("WorkflowNotFoundException", "Workflow not found in workflow store: nosuch.war"));
    let (kind, _) = server.manage("POST", "/workflows").error(400);
    assert_eq!(kind, "BadRequestException");
    assert_eq!(server.manage("GET", "/models").json()["models"], json!([]), "nothing left behind");
    assert_eq!(server.manage("GET", "/workflows").json()["workflows"], json!([]));
}
