//! `deploy/`: the Kubernetes and KServe manifests validate against the published schemas (as the
//! `kubernetes` and `kserve` SDKs carry them), and the ServingRuntime's own command line, run
//! through the image's entrypoint, serves a model directory laid out as KServe's storage
//! initializer leaves it.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::{json, Value};

use crate::helpers::{assert_close, fixture, mlp_cases, repo_root, Reply, TestServer};

/// `tests/fixtures/validate_manifests.py` on `files`: each document's problems.
fn validate(files: &[std::path::PathBuf]) -> BTreeMap<String, Vec<String>> {
    let output = Command::new(repo_root().join(".venv/bin/python"))
        .arg(repo_root().join("tests/fixtures/validate_manifests.py"))
        .args(files)
        .output()
        .expect("run validate_manifests.py");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("a JSON report")
}

fn manifests() -> Vec<std::path::PathBuf> {
    ["deploy/kserve", "deploy/kubernetes"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(repo_root().join(dir)).unwrap())
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect()
}

#[test]
fn manifests_validate_against_kserve_and_kubernetes_schemas() {
    let report = validate(&manifests());
    let kinds: Vec<&str> = report.keys().filter_map(|k| k.split(' ').nth(1)?.split('/').next()).collect();
    for kind in ["ServingRuntime", "ClusterServingRuntime", "InferenceService", "Deployment", "Service", "HorizontalPodAutoscaler"] {
        assert!(kinds.contains(&kind), "no {kind} among {kinds:?}");
    }
    for (document, problems) in &report {
        assert!(problems.is_empty(), "{document}: {problems:#?}");
    }

    // The same check on a runtime with a misspelt key and a mistyped field fails, naming both.
    let runtime = std::fs::read_to_string(repo_root().join("deploy/kserve/servingruntime.yaml")).unwrap();
    let broken = runtime.replace("autoSelect: true", "autoselect: true").replace("    - v1\n", "    - 1\n");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.yaml");
    std::fs::write(&path, broken).unwrap();
    let problems: Vec<String> = validate(&[path]).into_values().flatten().collect();
    assert!(problems.iter().any(|p| p.contains("autoselect: no such field")), "{problems:#?}");
    assert!(problems.iter().any(|p| p.contains("protocolVersions[0]: expected a string")), "{problems:#?}");
}

/// The ServingRuntime's container: its args and env.
fn runtime_container() -> (Vec<String>, Vec<(String, String)>) {
    let text = std::fs::read_to_string(repo_root().join("deploy/kserve/servingruntime.yaml")).unwrap();
    let runtime: Value = serde_yaml_ng::from_str(&text).unwrap();
    let container = &runtime["spec"]["containers"][0];
    let args = container["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().to_string()).collect();
    let env = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e["value"].as_str().unwrap().to_string()))
        .collect();
    (args, env)
}

#[test]
fn the_kserve_runtime_command_line_serves_the_storage_initializer_layout() {
    // /mnt/models as KServe's storage initializer leaves it for a TorchServe model: TorchServe's
    // own KServe config.properties (API on 8085 for its Python wrapper, environment config on, a
    // model_snapshot naming the model) and the archive in model-store/.
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("mnt/models");
    std::fs::create_dir_all(models.join("config")).unwrap();
    std::fs::create_dir_all(models.join("model-store")).unwrap();
    std::fs::copy(fixture("mlp.mar"), models.join("model-store/mlp.mar")).unwrap();
    std::fs::write(
        models.join("config/config.properties"),
        format!(
            "inference_address=http://0.0.0.0:8085\nmanagement_address=http://0.0.0.0:8085\n\
             metrics_address=http://0.0.0.0:8082\ngrpc_inference_port=0\ngrpc_management_port=0\n\
             enable_envvars_config=true\ninstall_py_dep_per_model=true\nenable_metrics_api=true\n\
             number_of_netty_threads=4\njob_queue_size=10\nmodel_store={store}\n\
             model_snapshot={{\"name\":\"startup.cfg\",\"modelCount\":1,\"models\":{{\"mlp\":{{\"1.0\":\
             {{\"defaultVersion\":true,\"marName\":\"mlp.mar\",\"minWorkers\":1,\"maxWorkers\":1,\
             \"batchSize\":1,\"maxBatchDelay\":10,\"responseTimeout\":120}}}}}}}}\n",
            store = models.join("model-store").display()
        ),
    )
    .unwrap();

    // The image's `torchserve` is tserve; the runtime's exact args go through the image's
    // entrypoint, with /mnt/models where this test laid it out and each port moved to a free one
    // (the label serviceEnvelope unset renders as "", as KServe renders it).
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_tserve"), bin.join("torchserve")).unwrap();
    let (args, env) = runtime_container();
    assert_eq!(args[..2], ["torchserve", "--start"]);
    let mnt = models.display().to_string();
    let args: Vec<String> = args.iter().map(|a| a.replace("/mnt/models", &mnt)).collect();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut command = Command::new(repo_root().join("docker/dockerd-entrypoint.sh"));
    command.current_dir(dir.path()).env("TMPDIR", dir.path()).env("PATH", path).env("RUST_LOG", "info").args(&args);
    for (name, value) in &env {
        let value = value.replace("{{.Labels.serviceEnvelope}}", "");
        let value = value.replace("0.0.0.0:8080", "127.0.0.1:0").replace("127.0.0.1:8081", "127.0.0.1:0");
        command.env(name, value.replace("0.0.0.0:8082", "127.0.0.1:0"));
    }
    let server = TestServer::spawn(command).unwrap_or_else(|(_, output)| panic!("{output}"));

    // The runtime's variables won over the model's config: KServe's port, management inside the pod.
    assert!(server.base_url.starts_with("http://127.0.0.1:"), "{}", server.base_url);
    assert_ne!(server.base_url, server.management_url, "the management API has its own listener");
    let output = server.output_when(|o| o.contains("Metrics API bound to "));
    assert!(output.contains("bound to http://127.0.0.1:"), "{output}");

    // The readiness probe, and both protocols KServe routes (v1 and v2) for the snapshot's model.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while server.get("/v2/health/ready").status != 200 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(server.get("/v2/health/ready").status, 200, "{}", server.output());
    assert_eq!(server.get("/v2/health/live").status, 200);
    let (input, expected) = &mlp_cases()[0];
    let reply = server.post("/v1/models/mlp:predict", json!({ "instances": [input] }).to_string().as_bytes());
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_close(&reply.json()["predictions"], &json!([expected]), 1e-5);
    let v2 = json!({"inputs": [{"name": "input__0", "shape": [1, 4], "datatype": "FP32", "data": input}]});
    let reply = server.post("/v2/models/mlp/infer", v2.to_string().as_bytes());
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_close(&reply.json()["outputs"][0]["data"], expected, 1e-5);

    // Prometheus scrapes the annotated port: TorchServe's metrics and tserve's queue gauges.
    let page = Reply::from(ureq::get(&format!("{}/metrics", server.metrics_url())).call());
    assert_eq!(page.status, 200);
    assert!(page.body.contains("# TYPE ts_inference_requests_total counter"), "{}", page.body);
    assert!(page.body.contains("tserve_requests_in_flight{"), "{}", page.body);
}
