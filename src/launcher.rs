//! `tserve --start/--stop/--version`: the launcher, with the outcomes, messages and exit codes of
//! TorchServe's (`ts/model_server.py`), worded for tserve. The pid file is
//! `<tmpdir>/.tserve.pid`; `--start` without `--foreground` runs the server in the background.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cli::Args;
use crate::config::{Config, ConfigError};

/// How long `--stop` waits for the server to exit after SIGTERM.
const STOP_WAIT: Duration = Duration::from_secs(60);

pub fn run(args: Args) -> ExitCode {
    // Only prints, touching no pid file (as TorchServe's launcher: only --start and --stop remove
    // an orphan one).
    if args.version {
        println!("tserve version is {}", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    let pid_file = pid_file_path();
    let running = running_server(&pid_file);
    if args.stop {
        return stop(running, &pid_file);
    }
    // A background start re-runs this command with --foreground; its parent has already
    // written the child's own pid into the file.
    if running.is_some_and(|pid| pid != std::process::id() as i32) {
        println!("tserve is already running, please use tserve --stop to stop tserve.");
        return ExitCode::FAILURE;
    }
    if let Err(message) = check_start_arguments(&args) {
        println!("{message}");
        return ExitCode::FAILURE;
    }
    if args.foreground {
        // The launcher's checks counted no GPUs; the server counts them, once CUDA is loaded
        // where a driver says there may be any.
        match crate::gpu::load_cuda() {
            crate::gpu::CudaSupport::NotLoadable(reason) => {
                log::warn!("an NVIDIA driver is present but libtorch's CUDA library is not loadable ({reason}); serving on the CPU")
            }
            crate::gpu::CudaSupport::Loaded | crate::gpu::CudaSupport::NoDriver => {}
        }
        let gpus = usize::try_from(tch::Cuda::device_count()).unwrap_or(0);
        match Config::resolve(&args.config_overrides(), gpus) {
            Ok(config) => serve_here(config, &pid_file),
            Err(e) => {
                println!("{e}");
                ExitCode::FAILURE
            }
        }
    } else {
        start_in_background(&pid_file)
    }
}

fn pid_file_path() -> PathBuf {
    std::env::temp_dir().join(".tserve.pid")
}

/// The pid of a tserve process named by the pid file. A pid file whose process is gone is
/// removed; one naming another program is ignored.
fn running_server(pid_file: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(pid_file).ok()?;
    let pid: i32 = text.trim().parse().ok()?;
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        // The program's own name, so a reused pid of another program is never signalled.
        Ok(cmdline) => cmdline
            .split(|&b| b == 0)
            .next()
            .is_some_and(|argv0| is_server_name(&String::from_utf8_lossy(argv0)))
            .then_some(pid),
        Err(_) => {
            println!("Removing orphan pid file.");
            let _ = std::fs::remove_file(pid_file);
            None
        }
    }
}

/// The names a server runs under: `tserve`, or `torchserve` where tserve stands in for it (the
/// container image's `torchserve` executable starts tserve under that name).
fn is_server_name(argv0: &str) -> bool {
    matches!(argv0.rsplit('/').next(), Some("tserve" | "torchserve"))
}

fn stop(running: Option<i32>, pid_file: &Path) -> ExitCode {
    let Some(pid) = running else {
        println!("tserve is not currently running.");
        return ExitCode::SUCCESS;
    };
    match kill(Pid::from_raw(pid), Signal::SIGTERM) {
        Ok(()) => {
            // Unlike TorchServe's launcher, wait for the exit, so `--stop` then `--start` in a
            // script does not race the old server for its ports.
            let deadline = Instant::now() + STOP_WAIT;
            while Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid) {
                if Instant::now() > deadline {
                    // Still running: keep the pid file, so a --start does not start a second.
                    println!("tserve did not stop within {}s.", STOP_WAIT.as_secs());
                    return ExitCode::FAILURE;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            println!("tserve has stopped.");
        }
        Err(_) => println!("tserve already stopped."),
    }
    let _ = std::fs::remove_file(pid_file);
    // As TorchServe's `--stop`: the keys go with the server.
    let _ = std::fs::remove_file(crate::auth::KEY_FILE);
    ExitCode::SUCCESS
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| stat.rsplit(") ").next().is_some_and(|rest| rest.starts_with('Z')))
        .unwrap_or(true)
}

/// The launcher's checks, in its order and with its messages.
fn check_start_arguments(args: &Args) -> Result<(), String> {
    if let Some(log_config) = &args.log_config {
        if !log_config.is_file() {
            return Err(format!("--log-config file not found: {}", log_config.display()));
        }
    }
    // GPUs are counted by the server itself; the launcher only validates.
    let config = Config::resolve(&args.config_overrides(), 0).map_err(|e| match e {
        ConfigError::FileNotFound(path) => format!("--ts-config file not found: {}", path.display()),
        other => other.to_string(),
    })?;
    match &config.models.store {
        None => return Err("Missing mandatory parameter --model-store".into()),
        Some(store) if !store.is_dir() => {
            return Err(format!("--model-store directory not found: {}", store.display()))
        }
        Some(_) => {}
    }
    if let Some(store) = &args.workflow_store {
        if !store.is_dir() {
            return Err(format!("--workflow-store directory not found: {}", store.display()));
        }
    }
    Ok(())
}

fn serve_here(config: Config, pid_file: &Path) -> ExitCode {
    let own_pid = std::process::id();
    if let Err(e) = std::fs::write(pid_file, own_pid.to_string()) {
        log::warn!("cannot write pid file {}: {e}", pid_file.display());
    }
    let outcome = crate::server::run(config);
    if running_server(pid_file) == Some(own_pid as i32) {
        let _ = std::fs::remove_file(pid_file);
    }
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("tserve failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Starts this same command with `--foreground` in its own process group (so the terminal's
/// Ctrl-C does not reach it), records its pid, and returns.
fn start_in_background(pid_file: &Path) -> ExitCode {
    use std::os::unix::process::CommandExt;

    let spawned = std::env::current_exe().and_then(|exe| {
        Command::new(exe)
            .args(std::env::args_os().skip(1))
            .arg("--foreground")
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
    });
    match spawned {
        Ok(child) => {
            if let Err(e) = std::fs::write(pid_file, child.id().to_string()) {
                println!("cannot write pid file {}: {e}", pid_file.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("start tserve failed: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_server_name;

    #[test]
    fn the_pid_file_may_name_tserve_or_its_torchserve_stand_in() {
        assert!(is_server_name("tserve"));
        assert!(is_server_name("/usr/local/lib/python3.11/site-packages/tserve/bin/tserve"));
        assert!(is_server_name("/usr/local/bin/torchserve"));
        assert!(!is_server_name("/usr/bin/java"));
        assert!(!is_server_name("tserve-archiver"));
        assert!(!is_server_name("/opt/tserve/python3"));
    }
}
