//! `tserve --start/--stop/--version`: TorchServe's launcher outcomes and exit codes.

use std::process::{Output, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use crate::helpers::{collect_lines, fixture, tserve_command, Reply};

fn run(dir: &std::path::Path, args: &[&str]) -> (i32, String) {
    let Output { status, stdout, .. } = tserve_command(dir)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    (status.code().unwrap(), String::from_utf8_lossy(&stdout).trim().to_string())
}

#[test]
fn version_prints_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = run(dir.path(), &["--version"]);
    assert_eq!((code, out.as_str()), (0, concat!("tserve version is ", env!("CARGO_PKG_VERSION"))));
}

#[test]
fn version_leaves_an_orphan_pid_file_to_start_and_stop() {
    // A server that died without cleaning up (SIGKILL) left its pid file; its pid names no process.
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join(".tserve.pid");
    std::fs::write(&pid_file, format!("{}\n", i32::MAX)).unwrap();
    let (code, out) = run(dir.path(), &["--version"]);
    assert_eq!((code, out.as_str()), (0, concat!("tserve version is ", env!("CARGO_PKG_VERSION"))));
    assert!(pid_file.exists(), "--version only prints, as TorchServe's");
    let (code, out) = run(dir.path(), &["--stop"]);
    assert_eq!((code, out.as_str()), (0, "Removing orphan pid file.\ntserve is not currently running."));
    assert!(!pid_file.exists());
}

#[test]
fn stop_when_not_running() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = run(dir.path(), &["--stop"]);
    assert_eq!((code, out.as_str()), (0, "tserve is not currently running."));
}

#[test]
fn start_needs_a_model_store() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = run(dir.path(), &["--start", "--ncs"]);
    assert_eq!((code, out.as_str()), (1, "Missing mandatory parameter --model-store"));
    let (code, out) = run(dir.path(), &["--start", "--model-store", "nowhere"]);
    assert_eq!((code, out.as_str()), (1, "--model-store directory not found: nowhere"));
    let (code, out) = run(dir.path(), &["--start", "--ts-config", "missing.properties"]);
    assert_eq!((code, out.as_str()), (1, "--ts-config file not found: missing.properties"));
}

#[test]
fn start_in_background_then_stop() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("model_store");
    std::fs::create_dir(&store).unwrap();
    std::fs::copy(fixture("mlp.mar"), store.join("mlp.mar")).unwrap();
    std::fs::write(
        dir.path().join("config.properties"),
        "inference_address=http://127.0.0.1:0\nmanagement_address=http://127.0.0.1:0\nmetrics_address=http://127.0.0.1:0\ngrpc_inference_port=0\ngrpc_management_port=0\ndisable_token_authorization=true\ndefault_workers_per_model=1\n",
    )
    .unwrap();

    // `--start` returns at once; the server goes on in the background and, sharing our stdout
    // pipe, tells us its port.
    let mut launcher = tserve_command(dir.path())
        .args(["--start", "--ncs", "--model-store", "model_store", "--models", "mlp.mar"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (bound_tx, bound_rx) = mpsc::channel();
    collect_lines(launcher.stdout.take().unwrap(), Arc::new(Mutex::new(String::new())), Some(bound_tx));
    assert_eq!(launcher.wait().unwrap().code(), Some(0));
    let base = bound_rx.recv_timeout(Duration::from_secs(120)).expect("server bound");

    let pid: i32 = std::fs::read_to_string(dir.path().join(".tserve.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let ping = Reply::from(ureq::get(&format!("{base}/ping")).call());
    assert_eq!(ping.status, 200);

    let (code, out) = run(dir.path(), &["--start", "--model-store", "model_store"]);
    assert_eq!(
        (code, out.as_str()),
        (1, "tserve is already running, please use tserve --stop to stop tserve.")
    );

    let (code, out) = run(dir.path(), &["--stop"]);
    assert_eq!((code, out.as_str()), (0, "tserve has stopped."));
    assert!(!dir.path().join(".tserve.pid").exists());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z")),
        "the server process has exited"
    );
    let (code, out) = run(dir.path(), &["--stop"]);
    assert_eq!((code, out.as_str()), (0, "tserve is not currently running."));
}

#[test]
fn flags_and_keys_without_effect_are_named_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("model_store")).unwrap();
    std::fs::create_dir(dir.path().join("wf")).unwrap();
    std::fs::write(
        dir.path().join("config.properties"),
        format!("{}netty_client_threads=4\njob_queue_sise=5\nkeystore_pass=changeit\n", crate::helpers::FREE_PORTS),
    )
    .unwrap();
    let args: Vec<String> = [
        "--foreground", "--ts-config", "config.properties", "--model-store", "model_store",
        "--plugins-path", "plugins", "--workflow-store", "wf",
    ]
    .map(String::from)
    .to_vec();
    let server = crate::helpers::TestServer::spawn_in(dir.path(), &args).unwrap_or_else(|(_, output)| panic!("{output}"));
    let output = server.output_when(|o| o.contains("without effect in tserve") && o.contains("job_queue_sise"));
    assert!(output.contains("accepted for compatibility, without effect in tserve: --plugins-path"), "{output}");
    assert!(output.contains("config key netty_client_threads is a TorchServe setting tserve does not apply yet"), "{output}");
    assert!(output.contains("unknown config key job_queue_sise; ignored"), "{output}");
    assert_eq!(Reply::from(ureq::get(&format!("{}/ping", server.base_url)).call()).status, 200);
    // The start-up snapshot (written just after the listeners bind) carries the config, but
    // never the keystore's password.
    let config_dir = dir.path().join("logs/config");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let snapshots = loop {
        let found: Vec<_> = std::fs::read_dir(&config_dir)
            .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "cfg")).collect())
            .unwrap_or_default();
        if !found.is_empty() {
            break found;
        }
        assert!(std::time::Instant::now() < deadline, "a start-up snapshot is written");
        std::thread::sleep(Duration::from_millis(50));
    };
    drop(server);
    for snapshot in snapshots {
        let text = std::fs::read_to_string(&snapshot).unwrap();
        assert!(text.contains("grpc_inference_port") && !text.contains("changeit"), "{text}");
    }
}
