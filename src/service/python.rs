//! The Python that runs Python-backend workers: found and checked once per interpreter, at the
//! first registration that needs it, so a missing or broken Python is a clear error then rather
//! than workers that never start; and an archive's requirements installed, as TorchServe does
//! with `install_py_dep_per_model`. Blocking: called on the blocking pool.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// How long checking the Python may take.
const PROBE_DEADLINE: Duration = Duration::from_secs(60);
/// How long installing an archive's requirements may take.
const INSTALL_DEADLINE: Duration = Duration::from_secs(900);

/// A Python with TorchServe's backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonEnv {
    pub python: PathBuf,
    /// Its `ts/model_service_worker.py`.
    pub worker_script: PathBuf,
    /// Its `ts/configs/metrics.yaml`.
    pub metrics_config: PathBuf,
}

/// Checks that `python` runs and has the `torchserve` package; the answer is kept.
pub fn probe(python: &Path) -> Result<PythonEnv, String> {
    static PROBED: OnceLock<Mutex<HashMap<PathBuf, PythonEnv>>> = OnceLock::new();
    let probed = PROBED.get_or_init(Mutex::default);
    if let Some(env) = probed.lock().unwrap_or_else(PoisonError::into_inner).get(python) {
        return Ok(env.clone());
    }
    let script = "import os, ts; print(os.path.dirname(ts.__file__)); print(ts.__version__)";
    let output = run(Command::new(python).args(["-c", script]), PROBE_DEADLINE)
        .map_err(|e| format!("cannot be run: {e}"))?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no output");
        return Err(format!("has no TorchServe backend (`import ts` failed: {last})"));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let ts_dir = PathBuf::from(stdout.lines().next().unwrap_or_default().trim());
    let env = PythonEnv {
        python: python.to_path_buf(),
        worker_script: ts_dir.join("model_service_worker.py"),
        metrics_config: ts_dir.join("configs").join("metrics.yaml"),
    };
    if !env.worker_script.is_file() {
        return Err(format!("has a `ts` package without model_service_worker.py ({})", ts_dir.display()));
    }
    log::info!(
        "Python backend: {} with torchserve {}",
        python.display(),
        stdout.lines().nth(1).unwrap_or("?").trim()
    );
    probed
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(python.to_path_buf(), env.clone());
    Ok(env)
}

/// `pip install -U -t <model dir> -r <requirements>`, in the model's folder, as TorchServe runs
/// it; the packages land beside the model, which is on its workers' `PYTHONPATH`. The error
/// carries pip's output.
pub fn install_requirements(python: &Path, model_dir: &Path, requirements: &Path) -> Result<(), String> {
    let started = Instant::now();
    let output = run(
        Command::new(python)
            .args(["-m", "pip", "install", "--disable-pip-version-check", "-U", "-t"])
            .arg(model_dir)
            .arg("-r")
            .arg(requirements)
            .current_dir(model_dir),
        INSTALL_DEADLINE,
    )
    .map_err(|e| e.to_string())?;
    if output.status.success() {
        log::info!("installed {} in {:?}", requirements.display(), started.elapsed());
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Runs a command to its end, or kills it past `deadline`.
fn run(command: &mut Command, deadline: Duration) -> std::io::Result<Output> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    // Read both pipes while waiting, so a chatty command cannot fill one and stall.
    let stdout = child.stdout.take().map(read_all);
    let stderr = child.stderr.take().map(read_all);
    let until = Instant::now() + deadline;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("did not finish within {}s", deadline.as_secs()),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let collect = |reader: Option<std::thread::JoinHandle<Vec<u8>>>| reader.and_then(|r| r.join().ok()).unwrap_or_default();
    Ok(Output {
        status,
        stdout: collect(stdout),
        stderr: collect(stderr),
    })
}

fn read_all(mut stream: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stream.read_to_end(&mut bytes);
        bytes
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_python_that_does_not_exist_is_a_clear_error() {
        let err = probe(Path::new("/nonexistent/bin/python")).unwrap_err();
        assert!(err.starts_with("cannot be run"), "{err}");
    }

    #[test]
    fn a_python_without_torchserve_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("python");
        std::fs::write(&fake, "#!/bin/sh\necho \"ModuleNotFoundError: No module named 'ts'\" >&2\nexit 1\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = probe(&fake).unwrap_err();
        assert_eq!(err, "has no TorchServe backend (`import ts` failed: ModuleNotFoundError: No module named 'ts')");
    }
}
