//! What a user installs without building: the wheel (`scripts/wheel.sh`) in a fresh venv outside
//! the source tree, run as `torchserve` was (`tserve --start`, predict, `tserve --stop`).
//!
//! The fresh venv gets the project venv's site-packages through a `.pth` file, so pip finds
//! torch==2.11.0 and torchserve already installed there instead of downloading several GB; the
//! wheel's binaries then find libtorch in that torch package, which is not beside them: the path
//! a `--system-site-packages` venv or a user site takes.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use crate::helpers::{assert_close, collect_lines, fixture, mlp_cases, repo_root, Reply, FREE_PORTS};

/// `scripts/wheel.sh --no-build`: packages the binaries cargo just built (cargo holds the build
/// lock while tests run, so the script must not build).
fn build_wheel() -> PathBuf {
    let output = Command::new(repo_root().join("scripts/wheel.sh")).arg("--no-build").output().expect("run wheel.sh");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "wheel.sh failed:\n{stdout}{}", String::from_utf8_lossy(&output.stderr));
    repo_root().join(stdout.lines().last().expect("the wheel's path").trim())
}

fn run(command: &mut Command) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{command:?} failed:\n{text}");
    text
}

/// A new venv at `dir` seeing the project venv's packages, with `wheel` installed by pip.
fn fresh_venv(dir: &Path, wheel: &Path) -> PathBuf {
    let venv = dir.join("venv");
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv));
    let site = |venv: &Path| -> PathBuf {
        let lib = std::fs::read_dir(venv.join("lib")).unwrap().next().unwrap().unwrap().path();
        lib.join("site-packages")
    };
    std::fs::write(site(&venv).join("project-venv.pth"), format!("{}\n", site(&repo_root().join(".venv")).display())).unwrap();
    let pip = run(Command::new(venv.join("bin/pip")).args(["install", "--no-index", "--disable-pip-version-check"]).arg(wheel));
    assert!(pip.contains("Successfully installed tserve-"), "{pip}");
    venv
}

#[test]
fn the_wheel_installs_in_a_fresh_venv_and_serves_like_torchserve() {
    let wheel = build_wheel();
    let name = wheel.file_name().unwrap().to_string_lossy().to_string();
    assert!(name.starts_with(&format!("tserve-{}-py3-none-manylinux_2_", env!("CARGO_PKG_VERSION"))), "{name}");
    assert!(name.ends_with("_x86_64.whl"), "{name}");
    // No libtorch inside: the installed torch's is used.
    let listing = run(Command::new("unzip").arg("-l").arg(&wheel));
    assert!(!listing.contains(".so"), "{listing}");

    let dir = tempfile::tempdir().unwrap();
    let venv = fresh_venv(dir.path(), &wheel);
    let installed = venv.join("lib").read_dir().unwrap().next().unwrap().unwrap().path().join("site-packages/tserve/bin/tserve");
    let dynamic = run(Command::new("readelf").arg("-d").arg(&installed));
    assert!(dynamic.contains("[$ORIGIN/../../torch/lib]"), "no build-machine path in the runpath:\n{dynamic}");
    let version = run(Command::new(venv.join("bin/tserve")).arg("--version"));
    assert_eq!(version.trim(), format!("tserve version is {}", env!("CARGO_PKG_VERSION")));

    // A user's working folder, anywhere: a model store with a TorchScript and a Python-handler archive.
    let work = dir.path().join("work");
    std::fs::create_dir_all(work.join("model_store")).unwrap();
    for archive in ["mlp.mar", "py_behaviour.mar"] {
        std::fs::copy(fixture(archive), work.join("model_store").join(archive)).unwrap();
    }
    std::fs::write(work.join("config.properties"), format!("{FREE_PORTS}default_workers_per_model=1\n")).unwrap();
    let tserve = |args: &[&str]| {
        let mut command = Command::new(venv.join("bin/tserve"));
        command.args(args).current_dir(&work).env("TMPDIR", &work).env_remove("TS_CONFIG_FILE").env("RUST_LOG", "info");
        command
    };

    // `tserve --start` returns at once, as `torchserve --start` does; the server, sharing our
    // stdout, says where it listens.
    let mut start = tserve(&["--start", "--ncs", "--model-store", "model_store", "--models", "mlp.mar", "py_behaviour.mar"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let output = Arc::new(Mutex::new(String::new()));
    let (bound_tx, bound_rx) = mpsc::channel();
    collect_lines(start.stdout.take().unwrap(), output.clone(), Some(bound_tx));
    assert_eq!(start.wait().unwrap().code(), Some(0));
    let base = bound_rx.recv_timeout(Duration::from_secs(120)).expect("the server bound");

    for (input, expected) in mlp_cases().iter().take(3) {
        let reply = Reply::from(ureq::post(&format!("{base}/predictions/mlp")).send_string(&input.to_string()));
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_close(&reply.json(), expected, 1e-5);
    }
    // The Python backend runs on the venv tserve was installed in.
    let reply = Reply::from(ureq::post(&format!("{base}/predictions/py_behaviour")).send_string("hello"));
    assert_eq!(reply.status, 200, "{}\n{}", reply.body, output.lock().unwrap());
    assert_eq!(reply.json()["echo"], "hello");
    let log = std::fs::read_to_string(work.join("logs/ts_log.log")).unwrap_or_default();
    let python = venv.join("bin/python").display().to_string();
    assert!(log.contains(&format!("Python backend: {python}")), "{log}");

    let stop = run(&mut tserve(&["--stop"]));
    assert_eq!(stop.trim(), "tserve has stopped.");
    assert!(!work.join(".tserve.pid").exists());
}
