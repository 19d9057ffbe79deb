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

use crate::helpers::{assert_close, collect_lines, fixture, free_port, mlp_cases, repo_root, Reply, FREE_PORTS};

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
    // libtorch's CUDA half is loaded at run time where a GPU driver is (src/gpu.rs), never linked:
    // a CPU-only host does not map cuBLAS and the rest, and a CPU-only torch works.
    assert!(dynamic.contains("[libtorch_cpu.so]") && !dynamic.contains("libtorch_cuda"), "{dynamic}");
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

    /// Stops the background server whatever the test's outcome (`--stop` is a no-op once stopped).
    struct StopOnDrop<F: FnMut()>(F);
    impl<F: FnMut()> Drop for StopOnDrop<F> {
        fn drop(&mut self) {
            (self.0)()
        }
    }
    let _stop = StopOnDrop(|| {
        let _ = tserve(&["--stop"]).output();
    });

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

/// `scripts/podman.sh` (Podman with the flags this machine needs), its output or `None` if it
/// failed.
fn podman(args: &[&str]) -> Option<String> {
    let output = Command::new(repo_root().join("scripts/podman.sh")).args(args).output().ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// Whether the container tests can run: Podman works and `tserve:latest` is built. Where either
/// is missing the test says so and passes, unless TSERVE_REQUIRE_IMAGE is set (scripts/test.sh
/// sets it where it built the image), where it fails.
fn image_ready() -> bool {
    let required = std::env::var_os("TSERVE_REQUIRE_IMAGE").is_some();
    let reason = if podman(&["info"]).is_none() {
        "Podman cannot run on this machine"
    } else if podman(&["image", "exists", "tserve:latest"]).is_none() {
        "there is no tserve:latest image (scripts/image.sh builds it)"
    } else {
        return true;
    };
    assert!(!required, "TSERVE_REQUIRE_IMAGE is set, but {reason}");
    println!("SKIPPED: the container test needs Podman and the image; {reason}");
    false
}

/// A running container, removed when dropped.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = podman(&["rm", "--force", "--time", "0", &self.0]);
    }
}

#[test]
fn the_image_serves_drains_and_runs_as_non_root_on_a_read_only_root() {
    if !image_ready() {
        return;
    }
    let size: f64 = podman(&["image", "inspect", "tserve:latest", "--format", "{{.Size}}"]).unwrap().parse().unwrap();
    println!("tserve:latest is {:.2} GB", size / 1e9);

    // The model store as a read-only volume; logs and tmp writable volumes owned by uid 1000,
    // the rest of the filesystem read-only.
    let dir = tempfile::tempdir().unwrap();
    let (store, logs, tmp) = (dir.path().join("model-store"), dir.path().join("logs"), dir.path().join("tmp"));
    for folder in [&store, &logs, &tmp] {
        std::fs::create_dir(folder).unwrap();
        nix::unistd::chown(folder.as_path(), Some(nix::unistd::Uid::from_raw(1000)), Some(nix::unistd::Gid::from_raw(1000))).ok();
    }
    for archive in ["resnet18.mar", "py_behaviour.mar"] {
        std::fs::copy(fixture(archive), store.join(archive)).unwrap();
    }
    let port = free_port();
    let name = format!("tserve-test-{port}");
    let volume = |host: &Path, inside: &str, mode: &str| format!("{}:/home/model-server/{inside}:{mode}", host.display());
    let started = podman(&[
        "run", "--detach", "--name", &name, "--user", "1000", "--read-only",
        "--publish", &format!("127.0.0.1:{port}:8080"),
        "--volume", &volume(&store, "model-store", "ro"),
        "--volume", &volume(&logs, "logs", "rw"),
        "--volume", &volume(&tmp, "tmp", "rw"),
        "tserve:latest", "serve", "--models", "resnet18.mar", "py_behaviour.mar",
    ]);
    assert!(started.is_some(), "podman run failed");
    let container = Container(name.clone());
    let base = format!("http://127.0.0.1:{port}");

    // /ping is the health probe: Healthy once both models have their workers.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let ping = ureq::get(&format!("{base}/ping")).call();
        if ping.is_ok_and(|r| r.status() == 200) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never healthy:\n{}", podman(&["logs", &name]).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(250));
    }
    let kitten = std::fs::read(repo_root().join("examples/kitten_small.jpg")).unwrap();
    let reply = Reply::from(ureq::post(&format!("{base}/predictions/resnet18")).send_bytes(&kitten));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json().as_object().map(|labels| labels.len()), Some(5), "{}", reply.body);
    let reply = Reply::from(ureq::post(&format!("{base}/predictions/py_behaviour")).send_string("hello"));
    assert_eq!(reply.json()["echo"], "hello", "{}", reply.body);

    // Non-root, and the server itself is the container's first process (so `stop` reaches it).
    assert_eq!(podman(&["exec", &name, "id", "-u"]).as_deref(), Some("1000"));
    let init = podman(&["exec", &name, "cat", "/proc/1/cmdline"]).unwrap();
    assert!(init.starts_with("torchserve\0--start"), "{init:?}");
    // Logs on stdout, and in logs/ as TorchServe writes them.
    assert!(podman(&["logs", &name]).unwrap().contains("Inference API bound to"));
    assert!(logs.join("ts_log.log").is_file() && logs.join("access_log.log").is_file());

    // `podman stop` with a prediction in flight: it is answered, and tserve exits 0 in the grace period.
    let slow = std::thread::spawn({
        let url = format!("{base}/predictions/py_behaviour");
        move || Reply::from(ureq::post(&url).send_string("sleep 2"))
    });
    std::thread::sleep(Duration::from_millis(500));
    let stopping = std::time::Instant::now();
    assert!(podman(&["stop", "--time", "30", &name]).is_some(), "podman stop failed");
    let stopped_in = stopping.elapsed();
    let slow = slow.join().unwrap();
    assert_eq!(slow.status, 200, "{}", slow.body);
    assert_eq!(slow.json()["echo"], "sleep 2");
    let exit = podman(&["inspect", &name, "--format", "{{.State.ExitCode}}"]).unwrap();
    assert_eq!(exit, "0", "after {stopped_in:?}:\n{}", podman(&["logs", &name]).unwrap_or_default());
    assert!(stopped_in < Duration::from_secs(30), "stopped in {stopped_in:?}, past the grace period");
    println!("podman stop with a 2 s prediction in flight: answered, exit 0 in {stopped_in:?}");
    drop(container);
}

#[test]
fn the_image_serves_sagemakers_contract() {
    if !image_ready() {
        return;
    }
    // SageMaker extracts model.tar.gz into /opt/ml/model and runs the image with `serve`; it
    // probes /ping and predicts on /invocations, port 8080.
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    std::fs::copy(fixture("mlp.mar"), model.join("mlp.mar")).unwrap();
    let port = free_port();
    let name = format!("tserve-sagemaker-{port}");
    let started = podman(&[
        "run", "--detach", "--name", &name,
        "--publish", &format!("127.0.0.1:{port}:8080"),
        "--volume", &format!("{}:/opt/ml/model:ro", model.display()),
        "tserve:latest", "serve",
    ]);
    assert!(started.is_some(), "podman run failed");
    let _container = Container(name.clone());
    let base = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !ureq::get(&format!("{base}/ping")).call().is_ok_and(|r| r.status() == 200) {
        assert!(std::time::Instant::now() < deadline, "never healthy:\n{}", podman(&["logs", &name]).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(250));
    }
    let (input, expected) = &mlp_cases()[0];
    let reply = Reply::from(ureq::post(&format!("{base}/invocations")).send_string(&input.to_string()));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_close(&reply.json(), expected, 1e-5);
    let parameters = Reply::from(ureq::get(&format!("{base}/execution-parameters")).call());
    assert_eq!(parameters.json()["BatchStrategy"], "MULTI_RECORD");
}
