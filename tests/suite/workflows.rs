//! Workflows as TorchServe 0.12 serves them: `.war` archives made by torch-workflow-archiver,
//! registered through `/workflows`, run through `/wfpredict`, their nodes ordinary models.

use serde_json::{json, Value};

use crate::helpers::{assert_close, mlp_cases, TestServer};

fn served() -> TestServer {
    let archives = ["wf_seq.war", "wf_par.war", "wf_cycle.war", "wf_unknown.war", "wf_two_starts.war", "mlp.mar", "mlp_v2.mar"];
    TestServer::launch(&archives, &[], "")
}

/// An MLP case of the fixtures (its input row and the model's output) whose first element is
/// positive, which `mlp_v2.mar` (doubles its input, fails on a negative first element) takes.
fn mlp_case() -> (Value, Value) {
    let cases = mlp_cases();
    cases.into_iter().find(|(input, _)| input[0].as_f64() > Some(0.0)).unwrap()
}

fn register(server: &TestServer, war: &str) -> crate::helpers::Reply {
    server.manage("POST", &format!("/workflows?url={war}"))
}

#[test]
fn a_sequential_workflow_runs_function_model_function() {
    let server = served();
    let reply = register(&server, "wf_seq.war");
    assert_eq!((reply.status, reply.json()), (200, json!({"status": "Workflow wf_seq has been registered and scaled successfully."})));
    // Each node is a model of its own, named as TorchServe names it.
    let models: Vec<String> = server.manage("GET", "/models").json()["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["modelName"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(models, ["wf_seq__mlp", "wf_seq__post_processing", "wf_seq__pre_processing"]);
    let (input, output) = mlp_case();
    let reply = server.request("PUT", "/wfpredict/wf_seq", serde_json::to_string(&input).unwrap().as_bytes());
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    let answer = reply.json();
    assert_close(&answer["scores"], &output, 1e-5);
    let scores: Vec<f64> = output.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    let best = (0..scores.len()).max_by(|&a, &b| scores[a].total_cmp(&scores[b])).unwrap();
    assert_eq!(answer["best"], best);
    // A node that fails on every try fails the workflow, naming the node.
    let (kind, message) = server.post("/wfpredict/wf_seq", b"[1, 2]").error(500);
    assert_eq!(kind, "InternalServerException");
    assert!(message.starts_with("Error executing mlp"), "{message}");
}

#[test]
fn a_parallel_workflow_fans_out_and_back_in() {
    let server = served();
    assert_eq!(register(&server, "wf_par.war").status, 200);
    let (input, output) = mlp_case();
    let reply = server.post("/wfpredict/wf_par", serde_json::to_string(&input).unwrap().as_bytes());
    assert_eq!(reply.status, 200, "{}", reply.body);
    let answer = reply.json();
    assert_close(&answer["mlp"], &output, 1e-5);
    let doubled: Vec<f64> = input.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() * 2.0).collect();
    assert_close(&answer["doubled"], &json!(doubled), 1e-5);
}

#[test]
fn the_workflow_api_lists_describes_and_unregisters() {
    let server = served();
    assert_eq!(register(&server, "wf_seq.war").status, 200);
    let reply = register(&server, "wf_seq.war");
    let (kind, message) = reply.error(409);
    assert_eq!((kind.as_str(), message.as_str()), ("ConflictStatusException", "Workflow wf_seq is already registered."));
    let list = server.manage("GET", "/workflows").json();
    assert_eq!(list, json!({"workflows": [{"workflowName": "wf_seq", "workflowUrl": "wf_seq.war"}]}));
    let described = server.manage("GET", "/workflows/wf_seq").json();
    assert_eq!(
        described,
        json!([{"workflowName": "wf_seq", "workflowUrl": "wf_seq.war", "minWorkers": 1, "maxWorkers": 1,
                "batchSize": 1, "maxBatchDelay": 10,
                "workflowDag": "{pre_processing=[mlp], mlp=[post_processing]}"}])
    );
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
