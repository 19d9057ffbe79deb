//! `cargo bench --bench predictions`: tserve's throughput and latency next to their ceilings,
//! all measured in one run on this machine.
//!
//! Load comes from `wrk` (Debian: `apt-get install wrk`) on the same machine, so on a small
//! machine it competes with the server for cores, as it does for every row alike. Rows:
//!
//! - **HTTP ceiling**: a bare actix-web server (as many workers as tserve's) whose handler parses
//!   the same JSON body into floats and answers 10 floats: what HTTP and JSON alone cost.
//! - **MLP** (64 → 256 → 256 → 10, JSON body): raw `forward` over as many threads as tserve has
//!   workers (one intra-op thread each, batch 1, no HTTP), then tserve's `/predictions` at
//!   several concurrencies with its defaults, and the rate as a fraction of the HTTP ceiling.
//! - **ResNet-18** (JPEG body): raw forward at batch 1; then `/predictions` as configured by
//!   default, with opportunistic batching's refill wait off, and with opportunistic batching off,
//!   each at concurrency 1 (as a fraction of one thread's batch-1 forward) and 16 (as a fraction
//!   of raw batch-8 forward on every thread, measured just before it); then with `batchSize` 8
//!   and `maxBatchDelay` 5 ms at concurrency 16 next to raw batch-8 forward.
//! - **First request**: a model's first prediction after it loads, next to the median of the
//!   20 after it.
//! - **Python handler**: the same MLP through a custom Python handler archive (TorchServe's
//!   backend driven by tserve), at the MLP's concurrencies, next to TorchServe 0.12.0 itself
//!   serving the very same archive with the same worker count (the venv's `torchserve`, which
//!   needs a Java runtime; the row is skipped without one).
//!
//! - **Monitoring**: the MLP at concurrency 64 with TorchServe's monitoring as it ships (log files,
//!   `metrics_mode=log`: an access line and metric lines per request), with `prometheus` mode,
//!   and with monitoring off (a log4j2 config turning every logger off, no metrics API, no
//!   system metrics), alternated three times so drift hits all alike.
//!
//! - **Security**: the MLP at concurrency 64 (metrics in `prometheus` mode) with token
//!   authorization off, on (every request carrying its key), and on over TLS (`https://`, the
//!   self-signed certificate tserve makes), alternated three times.
//!
//! - **KServe/OIP**: the MLP through each front door at the MLP's concurrencies, side by side:
//!   `/predictions` (JSON sample), OIP infer with a JSON tensor, OIP infer with a binary tensor
//!   (`Inference-Header-Content-Length`, binary output), and KServe v1 `:predict` (one instance).
//!
//! - **Memory**: the server's resident memory, idle, with the default workers for ResNet-18 and
//!   DenseNet-161, and what one worker more adds; ResNet-18 under TorchServe beside it (its
//!   launcher, Java frontend and Python workers summed). Printed after the table.
//!
//! - **Start**: ResNet-18 from `tserve` started to `/ping` healthy, five times, with the phases
//!   the server logs (unpacking, the slowest worker's load and warm-up), under `tserve --version`
//!   (libtorch's static initialisers, which run before any of tserve's code). After the table.
//!
//! Settings (environment): BENCH_SECONDS (per run, default 10), BENCH_CONCURRENCY (MLP, default
//! "1,16,64"), BENCH_ROWS (default "ceiling,mlp,resnet18,batched,first,python,monitoring,security,oip,memory,start").

#[path = "../tests/suite/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use helpers::{fixture, TestServer};
use tch::{CModule, Device, Tensor};

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn main() {
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("the benchmark drives load with wrk: install it (apt-get install wrk) and run again");
        std::process::exit(1);
    }
    // The servers' consoles as tserve's default has them (INFO, without the per-request access,
    // metrics and worker-output lines, which go to the log files): a console line per request
    // would be measured too.
    std::env::set_var("TSERVE_TEST_LOG", "info,ACCESS_LOG=warn,TS_METRICS=warn,MODEL_METRICS=warn,MODEL_LOG=warn");
    let seconds: u64 = env_or("BENCH_SECONDS", "10").parse().expect("BENCH_SECONDS");
    let concurrencies: Vec<usize> = env_or("BENCH_CONCURRENCY", "1,16,64")
        .split(',')
        .map(|c| c.trim().parse().expect("BENCH_CONCURRENCY"))
        .collect();
    let rows = env_or("BENCH_ROWS", "ceiling,mlp,resnet18,batched,first,python,monitoring,security,oip,memory,start");
    let wanted = |row: &str| rows.split(',').any(|r| r == row);
    let workers = cores();
    let mlp_body = fixture("mlp_bench_input.json");
    let jpeg = fixture("images/photo.jpg");

    println!("| row | path | concurrency | requests/s | p50 ms | p99 ms | errors | vs ceiling |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut ceiling = None;
    // Tables printed after the main one: where the CPU went, per request.
    let mut cpu_split: Vec<String> = Vec::new();
    let mut python_cost: Vec<String> = Vec::new();
    if wanted("ceiling") {
        let bare = bare_json::start(workers);
        let run = wrk(&bare, &mlp_body, "application/json", 64, seconds);
        cpu_split.extend(cpu_line("HTTP ceiling", &run, std::process::id()));
        run.print("HTTP ceiling", &format!("bare actix-web JSON handler, {workers} workers"), 64, None);
        ceiling = Some(run.requests_per_second);
    }
    if wanted("mlp") {
        let raw = raw_forward_rate("mlp_bench.pt", |n| Tensor::randn([n, 64], FLOAT), workers, 1, seconds);
        print_raw("MLP", &format!("raw forward, {workers} threads × batch 1"), raw);
        for batch in [1, 8] {
            let path = handler_path_rate("mlp_bench.pt", &mlp_body, batch, seconds);
            let raw = raw_forward_rate("mlp_bench.pt", |n| Tensor::randn([n, 64], FLOAT), 1, batch as i64, seconds);
            print_raw("MLP", &format!("base_handler's whole path, 1 thread × batch {batch} (raw forward {raw:.0})"), path);
        }
        let unbatched = without_opportunistic_batching("mlp_bench", "mlp_bench.pt", "base_handler", &[]);
        for (archive, setup) in [("mlp_bench", "default"), (unbatched.as_str(), "opportunistic batching off")] {
            let server = TestServer::start_with(&[&format!("{archive}.mar")], "job_queue_size=1000");
            let url = server.url(&format!("/predictions/{archive}"));
            for &clients in &concurrencies {
                let run = wrk(&url, &mlp_body, "application/json", clients, seconds);
                if clients == 64 {
                    cpu_split.extend(cpu_line(&format!("MLP, {setup}"), &run, server.pid()));
                }
                let label = format!("/predictions, {workers} workers, {setup}");
                run.print("MLP", &label, clients, ceiling.map(|c| run.requests_per_second / c));
            }
        }
    }
    if wanted("resnet18") {
        let input = |n| Tensor::randn([n, 3, 224, 224], FLOAT);
        let raw = raw_forward_rate("resnet18.pt", input, workers, 1, seconds);
        print_raw("ResNet-18", &format!("raw forward, {workers} threads × batch 1"), raw);
        // The ratio is to the raw batch-8 rate, what opportunistic batching can reach, measured
        // again just before each c=16 run (the server idle): on a shared VM the cores' speed
        // drifts by more than the gap being measured within minutes.
        let extra = ["index_to_name.json"];
        let unbatched = without_opportunistic_batching("resnet18", "resnet18.pt", "image_classifier", &extra);
        let unrefilled = with_tserve_setting("resnet18_unrefilled", "batch_refill: false", "resnet18.pt", "image_classifier", &extra);
        let setups = [
            ("resnet18", "default"),
            (unrefilled.as_str(), "batch refill off"),
            (unbatched.as_str(), "opportunistic batching off"),
        ];
        for (archive, setup) in setups {
            let server = TestServer::start_with(&[&format!("{archive}.mar")], "job_queue_size=1000");
            let single = wrk(&server.url(&format!("/predictions/{archive}")), &jpeg, "image/jpeg", 1, seconds);
            let label = format!("/predictions, {workers} workers, {setup}");
            single.print("ResNet-18", &label, 1, Some(single.requests_per_second / (raw / workers as f64)));
            let raw8 = raw_forward_rate("resnet18.pt", input, workers, 8, seconds);
            print_raw("ResNet-18", &format!("raw forward, {workers} threads × batch 8 (samples/s)"), raw8);
            let run = wrk(&server.url(&format!("/predictions/{archive}")), &jpeg, "image/jpeg", 16, seconds);
            run.print("ResNet-18", &label, 16, Some(run.requests_per_second / raw8));
        }
    }
    if wanted("batched") {
        let input = |n| Tensor::randn([n, 3, 224, 224], FLOAT);
        let raw = raw_forward_rate("resnet18.pt", input, workers, 8, seconds);
        print_raw("ResNet-18", &format!("raw forward, {workers} threads × batch 8 (samples/s)"), raw);
        let config = r#"job_queue_size=1000
models={"resnet18": {"1.0": {"batchSize": 8, "maxBatchDelay": 5}}}"#;
        let server = TestServer::start_with(&["resnet18.mar"], config);
        let run = wrk(&server.url("/predictions/resnet18"), &jpeg, "image/jpeg", 16, seconds);
        let label = format!("/predictions, {workers} workers, batch 8, delay 5 ms");
        run.print("ResNet-18", &label, 16, Some(run.requests_per_second / raw));
    }
    if wanted("python") {
        let label = format!("/predictions, Python handler, {workers} workers");
        // Each server as it ships (default), then tuned by hand with OMP_NUM_THREADS=1 in its
        // environment, the usual advice for TorchServe's Python workers.
        let tunings: [(&str, &[(&str, &str)]); 2] = [("default", &[]), ("OMP_NUM_THREADS=1", &[("OMP_NUM_THREADS", "1")])];
        // What TorchServe's Python worker itself costs per request, whichever frontend drives
        // it: no frontend passes cores ÷ that on this machine (printed after the table).
        let mut measured = |row: &str, pid: u32, clients: usize, url: &str| {
            let run = wrk(url, &mlp_body, "application/json", clients, seconds);
            if let Some((groups, wrk_cpu)) = run.cpu_per_request(pid, true) {
                let python: f64 = groups.iter().filter(|(g, _)| g == PYTHON_WORKERS).map(|(_, us)| us).sum();
                let frontend: f64 = groups.iter().filter(|(g, _)| g != PYTHON_WORKERS).map(|(_, us)| us).sum();
                python_cost.push(format!(
                    "| {row} | {clients} | {python:.0} | {frontend:.0} | {wrk_cpu:.0} | {:.0} |",
                    cores() as f64 / python * 1e6
                ));
            }
            run.print(row, &label, clients, ceiling.map(|c| run.requests_per_second / c));
        };
        for (tuning, env) in tunings {
            let server = TestServer::start_with_env(&["py_mlp_bench.mar"], "job_queue_size=1000", env);
            let url = server.url("/predictions/py_mlp_bench");
            for &clients in &concurrencies {
                measured(&format!("MLP, tserve, {tuning}"), server.pid(), clients, &url);
            }
        }
        for (tuning, env) in tunings {
            match torchserve::TorchServe::start("py_mlp_bench.mar", workers, env) {
                Ok(torchserve) => {
                    let url = torchserve.url("/predictions/py_mlp_bench");
                    for &clients in &concurrencies {
                        measured(&format!("MLP, TorchServe 0.12.0, {tuning}"), torchserve.pid(), clients, &url);
                    }
                }
                Err(e) => eprintln!("TorchServe row skipped: {e}"),
            }
        }
    }
    if wanted("monitoring") {
        let setups = [
            ("monitoring as TorchServe ships it (log files, metrics_mode=log)", "", false),
            ("metrics_mode=prometheus", "metrics_mode=prometheus\n", false),
            ("monitoring off (log4j2 levels off, no metrics API)", "enable_metrics_api=false\ndisable_system_metrics=true\n", true),
        ];
        for round in 0..3 {
            for (label, config, quiet) in setups {
                let (server, _dir) = monitored_server(config, quiet);
                let run = wrk(&server.url("/predictions/mlp_bench"), &mlp_body, "application/json", 64, seconds);
                run.print(&format!("MLP, round {}", round + 1), label, 64, ceiling.map(|c| run.requests_per_second / c));
            }
        }
    }
    if wanted("security") {
        let setups = [
            ("token authorization off", "", false),
            ("token authorization on", "disable_token_authorization=false\n", true),
            (
                "token authorization on, TLS",
                "disable_token_authorization=false\ninference_address=https://127.0.0.1:0\n",
                true,
            ),
        ];
        for round in 0..3 {
            for (label, config, with_key) in setups {
                let (server, dir) = monitored_server(&format!("metrics_mode=prometheus\n{config}"), false);
                let key = with_key.then(|| inference_key(dir.path()));
                let headers: Vec<(&str, String)> = key.iter().map(|k| ("Authorization", format!("Bearer {k}"))).collect();
                let url = server.url("/predictions/mlp_bench");
                let run = wrk_with(&url, &mlp_body, "application/json", &headers, 64, seconds);
                run.print(&format!("MLP, round {}", round + 1), label, 64, ceiling.map(|c| run.requests_per_second / c));
            }
        }
    }
    if wanted("oip") {
        let sample: Vec<f32> = serde_json::from_str(&std::fs::read_to_string(&mlp_body).unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let oip_json = dir.path().join("oip.json");
        let tensor = serde_json::json!({"name": "x", "shape": [1, 64], "datatype": "FP32", "data": sample});
        std::fs::write(&oip_json, serde_json::json!({"inputs": [tensor]}).to_string()).unwrap();
        let header = serde_json::json!({
            "inputs": [{"name": "x", "shape": [1, 64], "datatype": "FP32", "parameters": {"binary_data_size": 256}}],
            "parameters": {"binary_data_output": true},
        })
        .to_string();
        let mut binary = header.clone().into_bytes();
        binary.extend(sample.iter().flat_map(|v| v.to_le_bytes()));
        let oip_binary = dir.path().join("oip.bin");
        std::fs::write(&oip_binary, binary).unwrap();
        let v1 = dir.path().join("v1.json");
        std::fs::write(&v1, serde_json::json!({"instances": [sample]}).to_string()).unwrap();
        let server = TestServer::start_with(&["mlp_bench.mar"], "job_queue_size=1000");
        let length = [("Inference-Header-Content-Length", header.len().to_string())];
        /// A front door: its label, path, body file, content type and extra headers.
        type Door<'a> = (&'a str, &'a str, &'a Path, &'a str, &'a [(&'a str, String)]);
        let doors: [Door; 4] = [
            ("/predictions, JSON sample", "/predictions/mlp_bench", &mlp_body, "application/json", &[]),
            ("OIP infer, JSON tensor", "/v2/models/mlp_bench/infer", &oip_json, "application/json", &[]),
            ("OIP infer, binary tensor in and out", "/v2/models/mlp_bench/infer", &oip_binary, "application/octet-stream", &length),
            ("KServe v1 :predict, one instance", "/v1/models/mlp_bench:predict", &v1, "application/json", &[]),
        ];
        // gRPC load needs nghttp2's h2load; without it those rows are left out, and said so.
        let h2load_present = Command::new("h2load").arg("--version").output().is_ok();
        if !h2load_present {
            println!("(gRPC rows skipped: no h2load; apt-get install nghttp2-client)");
        }
        let grpc_body = dir.path().join("oip.grpc");
        std::fs::write(&grpc_body, grpc_infer_body("mlp_bench", &sample)).unwrap();
        let torchserve_body = dir.path().join("predictions.grpc");
        std::fs::write(&torchserve_body, grpc_predictions_body("mlp_bench", &std::fs::read(&mlp_body).unwrap())).unwrap();
        for &clients in &concurrencies {
            for (label, path, body, content_type, headers) in doors {
                let run = wrk_with(&server.url(path), body, content_type, headers, clients, seconds);
                run.print("MLP, KServe/OIP", label, clients, ceiling.map(|c| run.requests_per_second / c));
            }
            if !h2load_present {
                continue;
            }
            let url = format!("http://{}/inference.GRPCInferenceService/ModelInfer", server.grpc_address());
            let run = h2load(&url, &grpc_body, clients, seconds);
            run.print("MLP, KServe/OIP", "OIP gRPC ModelInfer, raw tensor (h2load)", clients, ceiling.map(|c| run.requests_per_second / c));
            let url = format!("http://{}/org.pytorch.serve.grpc.inference.InferenceAPIsService/Predictions", server.grpc_address());
            let run = h2load(&url, &torchserve_body, clients, seconds);
            run.print("MLP, KServe/OIP", "TorchServe gRPC Predictions, JSON sample (h2load)", clients, ceiling.map(|c| run.requests_per_second / c));
        }
        let log = std::fs::read_to_string(server.dir().join("logs/access_log.log")).unwrap_or_default();
        let failed = log.lines().filter(|l| l.contains("\"gRPC ") && !l.contains("HTTP/2.0\" 0 ")).count();
        assert_eq!(failed, 0, "gRPC calls that did not end OK: the gRPC rows are not valid");
    }
    if wanted("first") {
        first_request("MLP", "mlp_bench.mar", "/predictions/mlp_bench", &std::fs::read(&mlp_body).unwrap());
        first_request("ResNet-18", "resnet18.mar", "/predictions/resnet18", &std::fs::read(&jpeg).unwrap());
    }
    let memory = if wanted("memory") { memory_rows(workers) } else { Vec::new() };
    let start = if wanted("start") { start_rows(workers) } else { Vec::new() };
    if !cpu_split.is_empty() {
        println!("\n| c=64, CPU per request | server's threads, µs | wrk µs | all, µs |\n|---|---|---|---|");
        cpu_split.iter().for_each(|line| println!("{line}"));
    }
    if !python_cost.is_empty() {
        println!(
            "\n| Python handler, CPU per request | concurrency | Python workers µs | frontend µs | wrk µs | \
             cores ÷ Python workers' µs: requests/s no frontend passes |\n|---|---|---|---|---|---|"
        );
        python_cost.iter().for_each(|line| println!("{line}"));
    }
    if !memory.is_empty() {
        println!("\n| memory, idle (VmRSS once steady) | workers | MiB | one worker more: MiB added |\n|---|---|---|---|");
        memory.iter().for_each(|line| println!("{line}"));
    }
    if !start.is_empty() {
        println!(
            "\n| start → ready, ResNet-18, {workers} workers | ms, each start | mean ms |\n|---|---|---|"
        );
        start.iter().for_each(|line| println!("{line}"));
    }
}

/// The start table's rows: ResNet-18 served from `tserve` started to `/ping` healthy, five
/// times, with the phases the server's log reports (the unpacking, and the slowest worker's load
/// and warm-up); above them the part no server code runs in: `tserve --version` started to its
/// line, which is the process's start and libtorch's static initialisers (its exit, libtorch's
/// static destructors, another 70 ms, is left out).
fn start_rows(workers: usize) -> Vec<String> {
    use std::io::BufRead;
    const STARTS: usize = 5;
    let ms = |took: Duration| took.as_secs_f64() * 1e3;
    let scratch = tempfile::tempdir().unwrap();
    let version: Vec<f64> = (0..STARTS)
        .map(|_| {
            let started = Instant::now();
            let mut child = helpers::tserve_command(scratch.path())
                .arg("--version")
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut line = String::new();
            std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
            let took = ms(started.elapsed());
            assert!(line.starts_with("tserve version"), "tserve --version printed {line:?}");
            assert!(child.wait().unwrap().success(), "tserve --version failed");
            took
        })
        .collect();
    let (mut ready, mut unpacked, mut loaded, mut warmed) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..STARTS {
        let started = Instant::now();
        let server = TestServer::start_with(&["resnet18.mar"], "");
        let deadline = Instant::now() + Duration::from_secs(60);
        while server.get("/ping").json()["status"] != "Healthy" {
            assert!(Instant::now() < deadline, "ResNet-18 was not healthy within 60 s");
            std::thread::sleep(Duration::from_millis(2));
        }
        ready.push(ms(started.elapsed()));
        let output = server.output_when(|o| o.matches("warm-up").count() >= workers);
        // `… resnet18.mar: unpacked in 151.2 ms` and, per worker, `… model loaded on Cpu in
        // 231.0 ms, warm-up 118.5 ms of it`: the slowest worker's numbers count.
        let number_after = |line: &str, marker: &str| -> Option<f64> {
            line.split_once(marker)?.1.split_whitespace().next()?.parse().ok()
        };
        let slowest = |marker: &str| output.lines().filter_map(|l| number_after(l, marker)).fold(f64::NAN, f64::max);
        unpacked.push(slowest("unpacked in "));
        loaded.push(slowest("model loaded on Cpu in "));
        warmed.push(slowest("warm-up "));
    }
    let row = |label: &str, times: &[f64]| {
        let each: Vec<String> = times.iter().map(|t| format!("{t:.0}")).collect();
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        format!("| {label} | {} | {mean:.0} |", each.join(" / "))
    };
    vec![
        row("`tserve --version` to its line (libtorch's static initialisers; no model)", &version),
        row("**started → `/ping` healthy**", &ready),
        row("of which: unpacking `resnet18.pt` from the `.mar`", &unpacked),
        row("of which: the slowest worker's load, warm-up included", &loaded),
        row("of which: that warm-up (two `forward`s)", &warmed),
    ]
}

/// The memory table's rows: each server idle with `workers` workers, then with one more added
/// (`PUT /models/{m}?min_worker=N&synchronous=true`), both once the reading is steady.
fn memory_rows(workers: usize) -> Vec<String> {
    let extra = ["index_to_name.json"];
    let densenet = archive("densenet161", "densenet161.pt", "image_classifier", &extra, None);
    let mut rows = Vec::new();
    let mib = |kib: u64| kib as f64 / 1024.0;
    for name in ["resnet18", densenet.as_str()] {
        let server = TestServer::start_with(&[&format!("{name}.mar")], "");
        let (idle, added) = server.resident_kib_scaling(name, workers + 1);
        rows.push(format!("| {name}, tserve | {workers} | {:.0} | +{:.1} |", mib(idle), mib(added)));
    }
    // A TorchServe that does not get going costs its line only: the run's other tables still print.
    let torchserve = torchserve::TorchServe::start("resnet18.mar", workers, &[]).and_then(|torchserve| {
        let tree = || tree_resident_kib(torchserve.pid());
        torchserve.wait_for_workers("resnet18", workers)?;
        let idle = helpers::settled(tree);
        torchserve.scale("resnet18", workers + 1)?;
        let added = helpers::settled(tree).saturating_sub(idle);
        Ok(format!("| resnet18, TorchServe 0.12.0 (all its processes) | {workers} | {:.0} | +{:.1} |", mib(idle), mib(added)))
    });
    match torchserve {
        Ok(row) => rows.push(row),
        Err(e) => eprintln!("TorchServe memory row skipped: {e}"),
    }
    rows
}

/// The resident memory of `pid` and every process under it, in KiB.
fn tree_resident_kib(pid: u32) -> u64 {
    let parents: std::collections::HashMap<u32, u32> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|process| {
            let child = process.file_name().to_string_lossy().parse::<u32>().ok()?;
            let stat = std::fs::read_to_string(process.path().join("stat")).ok()?;
            let (_, fields) = stat_fields(&stat)?;
            Some((child, field(&fields, 1) as u32))
        })
        .collect();
    parents
        .keys()
        .filter(|&&process| descends_from(process, pid, |p| parents.get(&p).copied()))
        .filter_map(|&process| helpers::resident_kib(process))
        .sum()
}

/// Whether `process` is `ancestor` or runs under it, following `parent_of` up to init.
fn descends_from(mut process: u32, ancestor: u32, parent_of: impl Fn(u32) -> Option<u32>) -> bool {
    loop {
        if process == ancestor {
            return true;
        }
        match parent_of(process) {
            Some(parent) if parent > 1 => process = parent,
            _ => return false,
        }
    }
}

/// A row of the CPU table: the CPU each thread group of `pid` and wrk spent per request.
fn cpu_line(row: &str, run: &WrkRun, pid: u32) -> Option<String> {
    let (groups, wrk_cpu) = run.cpu_per_request(pid, false)?;
    let server: f64 = groups.iter().map(|(_, us)| us).sum();
    let named: Vec<String> = groups
        .iter()
        .filter(|(_, us)| *us >= 0.5)
        .map(|(group, us)| format!("{} {us:.0}", group.replace('|', "/")))
        .collect();
    Some(format!("| {row} | {server:.0} ({}) | {wrk_cpu:.0} | {:.0} |", named.join(", "), server + wrk_cpu))
}

const FLOAT: (tch::Kind, Device) = (tch::Kind::Float, Device::Cpu);

/// A server of the bench MLP with `config`; `quiet` turns every log file off with a log4j2 config.
fn monitored_server(config: &str, quiet: bool) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("model_store")).unwrap();
    std::fs::copy(fixture("mlp_bench.mar"), dir.path().join("model_store/mlp_bench.mar")).unwrap();
    std::fs::write(dir.path().join("config.properties"), format!("{}job_queue_size=1000\n{config}", helpers::FREE_PORTS)).unwrap();
    let mut args: Vec<String> = "--foreground --ncs --ts-config config.properties --model-store model_store --models mlp_bench.mar"
        .split(' ')
        .map(String::from)
        .collect();
    if quiet {
        let loggers = ["ACCESS_LOG", "MODEL_LOG", "MODEL_METRICS", "TS_METRICS", "org.pytorch.serve"]
            .map(|name| format!("<Logger name=\"{name}\" level=\"off\"/>"))
            .join("");
        let xml = format!("<Configuration><Loggers>{loggers}<Root level=\"off\"/></Loggers></Configuration>");
        std::fs::write(dir.path().join("quiet.xml"), xml).unwrap();
        args.extend(["--log-config".to_string(), "quiet.xml".to_string()]);
    }
    let server = TestServer::spawn_in(dir.path(), &args).unwrap();
    (server, dir)
}

/// The fixture `serialized` archived again as `<name>_unbatched` with a model-config YAML that
/// turns opportunistic batching off: the row's "before". Written beside the fixtures.
fn without_opportunistic_batching(name: &str, serialized: &str, handler: &str, extra: &[&str]) -> String {
    with_tserve_setting(&format!("{name}_unbatched"), "opportunistic_batching: false", serialized, handler, extra)
}

/// Archives `serialized` as `archive` with one setting in its YAML's `tserve` section.
fn with_tserve_setting(archive_name: &str, setting: &str, serialized: &str, handler: &str, extra: &[&str]) -> String {
    let yaml = fixture(&format!("{archive_name}.yaml"));
    std::fs::write(&yaml, format!("tserve:\n  {setting}\n")).unwrap();
    archive(archive_name, serialized, handler, extra, Some(&yaml))
}

/// Archives the fixture `serialized` as `<archive>.mar` beside the fixtures, with `extra` files
/// and, if given, a model-config YAML.
fn archive(archive: &str, serialized: &str, handler: &str, extra: &[&str], config: Option<&Path>) -> String {
    let archive = archive.to_string();
    let mut command = Command::new(env!("CARGO_BIN_EXE_tserve-archiver"));
    command
        .args(["--model-name", &archive, "--version", "1.0", "--handler", handler, "-f"])
        .arg("--serialized-file")
        .arg(fixture(serialized))
        .arg("--export-path")
        .arg(fixture(""));
    if let Some(config) = config {
        command.arg("--config-file").arg(config);
    }
    if !extra.is_empty() {
        let files: Vec<String> = extra.iter().map(|file| fixture(file).display().to_string()).collect();
        command.args(["--extra-files", &files.join(",")]);
    }
    let status = command.status().unwrap();
    assert!(status.success(), "tserve-archiver failed for {archive}");
    archive
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn print_raw(row: &str, label: &str, rate: f64) {
    println!("| {row} | {label} | - | {rate:.0} | - | - | - | - |");
}

/// Samples per second through `forward` alone, in batches of `batch`, over `threads` threads,
/// each with its own module and one intra-op thread, as the server's workers run.
fn raw_forward_rate(model: &str, input: fn(i64) -> Tensor, threads: usize, batch: i64, seconds: u64) -> f64 {
    let path = fixture(model);
    let duration = Duration::from_secs(seconds);
    let counts: Vec<u64> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let path = path.clone();
                scope.spawn(move || {
                    tch::set_num_threads(1);
                    let _no_grad = tch::no_grad_guard();
                    let mut module = CModule::load_on_device(&path, Device::Cpu).unwrap();
                    module.set_eval();
                    let input = input(batch);
                    for _ in 0..3 {
                        let _ = module.forward_ts(&[&input]).unwrap(); // warm-up
                    }
                    let deadline = Instant::now() + duration;
                    let mut count = 0u64;
                    while Instant::now() < deadline {
                        let _ = module.forward_ts(&[&input]).unwrap();
                        count += batch as u64;
                    }
                    count
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    counts.iter().sum::<u64>() as f64 / duration.as_secs_f64()
}

/// Requests per second through base_handler's whole path in one thread, as a worker runs a
/// batch: `batch` JSON bodies parsed, one `forward`, each answer back as a JSON value. Beside the
/// same batch's raw `forward` rate it shows what the handler adds to the model.
fn handler_path_rate(model: &str, body: &Path, batch: usize, seconds: u64) -> f64 {
    let body = std::fs::read(body).unwrap();
    let path = fixture(model);
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tch::set_num_threads(1);
                let _no_grad = tch::no_grad_guard(); // as on a worker's thread
                let handler = Box::new(tserve::handlers::BaseHandler::default());
                let model = tserve::handlers::LoadedModel::load(&path, handler, Device::Cpu).unwrap();
                let payloads: Vec<&[u8]> = vec![&body[..]; batch];
                let run = || assert!(model.predict(&payloads).iter().all(Result::is_ok));
                (0..100).for_each(|_| run()); // warm-up
                let duration = Duration::from_secs(seconds);
                let (started, mut count) = (Instant::now(), 0u64);
                while started.elapsed() < duration {
                    run();
                    count += batch as u64;
                }
                count as f64 / started.elapsed().as_secs_f64()
            })
            .join()
            .unwrap()
    })
}

/// A model's first request after it loads, against the median of the next 20.
fn first_request(row: &str, archive: &str, path: &str, body: &[u8]) {
    let server = TestServer::start(&[archive], "");
    // One client, already connected (a /ping first), so that only the model's first run differs.
    let agent = ureq::AgentBuilder::new().build();
    agent.get(&server.url("/ping")).call().expect("ping");
    let url = server.url(path);
    let time = || {
        let started = Instant::now();
        let reply = agent.post(&url).send_bytes(body).expect("prediction");
        assert_eq!(reply.status(), 200);
        let _ = reply.into_string();
        started.elapsed().as_secs_f64() * 1e3
    };
    let first = time();
    let mut warm: Vec<f64> = (0..20).map(|_| time()).collect();
    warm.sort_by(f64::total_cmp);
    let median = warm[warm.len() / 2];
    println!(
        "| {row} | first request after load: {first:.1} ms; warm median {median:.1} ms | 1 | - | - | - | - | {:.2}× warm |",
        first / median
    );
}

struct WrkRun {
    /// CPU use when the measured run began (not the warm-up before it), and its requests.
    cpu: Option<CpuSnapshot>,
    requests: f64,
    requests_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

impl WrkRun {
    /// The CPU each thread group of `pid` (and, with `descendants`, of the processes under it)
    /// and wrk spent per request in the measured run, in µs. Call it right after the run.
    fn cpu_per_request(&self, pid: u32, descendants: bool) -> Option<(Vec<(String, f64)>, f64)> {
        let (groups, wrk) = self.cpu.as_ref()?.since(pid, descendants);
        let per_request = |seconds: f64| seconds / self.requests * 1e6;
        Some((groups.into_iter().map(|(group, seconds)| (group, per_request(seconds))).collect(), per_request(wrk)))
    }

    fn print(&self, row: &str, label: &str, clients: usize, ratio: Option<f64>) {
        let ratio = ratio.map_or("-".to_string(), |r| format!("{r:.2}"));
        println!(
            "| {row} | {label} | {clients} | {:.0} | {:.2} | {:.2} | {} | {ratio} |",
            self.requests_per_second, self.p50_ms, self.p99_ms, self.errors
        );
    }
}

/// The inference key from the key file of a server started in `dir`.
fn inference_key(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("key_file.json")).expect("key_file.json");
    let keys: serde_json::Value = serde_json::from_str(&text).expect("key file JSON");
    keys["inference"]["key"].as_str().expect("inference key").to_string()
}

/// One framed gRPC message (flag, length, bytes) of an OIP ModelInfer of one FP32 row, raw.
fn grpc_infer_body(model: &str, sample: &[f32]) -> Vec<u8> {
    use prost::Message;
    use tserve::grpc::proto::{model_infer_request::InferInputTensor, ModelInferRequest};
    let request = ModelInferRequest {
        model_name: model.into(),
        inputs: vec![InferInputTensor {
            name: "x".into(),
            datatype: "FP32".into(),
            shape: vec![1, sample.len() as i64],
            ..Default::default()
        }],
        raw_input_contents: vec![sample.iter().flat_map(|v| v.to_le_bytes()).collect()],
        ..Default::default()
    };
    grpc_frame(request.encode_to_vec())
}

/// One framed gRPC message of TorchServe's PredictionsRequest, the JSON sample as `data`.
fn grpc_predictions_body(model: &str, sample: &[u8]) -> Vec<u8> {
    use prost::Message;
    use tserve::grpc::org::pytorch::serve::grpc::inference::PredictionsRequest;
    let request = PredictionsRequest {
        model_name: model.into(),
        input: [("data".to_string(), sample.to_vec())].into(),
        ..Default::default()
    };
    grpc_frame(request.encode_to_vec())
}

/// A gRPC message on the wire: not compressed, its length, its bytes.
fn grpc_frame(message: Vec<u8>) -> Vec<u8> {
    let mut framed = vec![0u8];
    framed.extend((message.len() as u32).to_be_bytes());
    framed.extend(message);
    framed
}

/// Runs h2load (nghttp2's HTTP/2 load generator, the wrk of gRPC) against a gRPC method with
/// `clients` connections of one stream each, after a 2 s warm-up; percentiles come from its
/// per-request log.
fn h2load(url: &str, body: &Path, clients: usize, seconds: u64) -> WrkRun {
    let log = tempfile::NamedTempFile::new().unwrap();
    let run = |seconds: u64| {
        let output = Command::new("h2load")
            .args(["-t", &clients.clamp(1, 2).to_string(), "-c", &clients.to_string(), "-m", "1"])
            .args(["-D", &seconds.to_string(), "-d"])
            .arg(body)
            .args(["-H", "content-type: application/grpc", "-H", "te: trailers", "--log-file"])
            .arg(log.path())
            .arg(url)
            .output()
            .expect("run h2load (apt-get install nghttp2-client)");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    run(2);
    let output = run(seconds);
    // "requests: 1000 total, 1000 started, 1000 done, 998 succeeded, 2 failed, 2 errored, 0 timeout"
    let requests = output.lines().find_map(|l| l.trim().strip_prefix("requests: ")).unwrap_or_default();
    let errors: u64 = requests
        .split(", ")
        .filter_map(|part| part.split_once(' '))
        .filter(|(_, what)| matches!(*what, "failed" | "errored" | "timeout"))
        .filter_map(|(n, _)| n.parse::<u64>().ok())
        .sum();
    // "finished in 10.00s, 23456.70 req/s, ..."
    let rate = output
        .lines()
        .find_map(|l| l.trim().strip_prefix("finished in ")?.split(", ").nth(1)?.strip_suffix(" req/s")?.parse().ok())
        .unwrap_or(f64::NAN);
    let mut micros: Vec<u64> = std::fs::read_to_string(log.path())
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split('\t').nth(2)?.parse().ok())
        .collect();
    micros.sort_unstable();
    let percentile = |p: f64| micros.get(((micros.len() as f64 * p) as usize).min(micros.len().saturating_sub(1))).map_or(f64::NAN, |&us| us as f64 / 1e3);
    WrkRun {
        cpu: None,
        requests: f64::NAN,
        requests_per_second: rate,
        p50_ms: percentile(0.50),
        p99_ms: percentile(0.99),
        errors,
    }
}

/// Runs wrk against `url` with `body` POSTed, after a 2 s warm-up.
fn wrk(url: &str, body: &Path, content_type: &str, connections: usize, seconds: u64) -> WrkRun {
    wrk_with(url, body, content_type, &[], connections, seconds)
}

/// [`wrk`] with extra request headers.
fn wrk_with(url: &str, body: &Path, content_type: &str, headers: &[(&str, String)], connections: usize, seconds: u64) -> WrkRun {
    let script = tempfile::Builder::new().suffix(".lua").tempfile().unwrap();
    let mut lua = format!(
        "wrk.method = \"POST\"\nwrk.body = io.open(\"{}\", \"rb\"):read(\"*a\")\nwrk.headers[\"Content-Type\"] = \"{content_type}\"\n",
        body.display()
    );
    for (name, value) in headers {
        lua.push_str(&format!("wrk.headers[\"{name}\"] = \"{value}\"\n"));
    }
    std::fs::write(script.path(), lua).unwrap();
    let threads = connections.clamp(1, 2).to_string();
    let run = |seconds: u64| {
        let output = Command::new("wrk")
            .args(["-t", &threads, "-c", &connections.to_string(), "-d", &format!("{seconds}s")])
            .args(["--latency", "-s"])
            .arg(script.path())
            .arg(url)
            .output()
            .expect("run wrk");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    run(2);
    let measuring = CpuSnapshot::take();
    let mut measured = parse_wrk(&run(seconds));
    measured.cpu = Some(measuring);
    measured.requests = measured.requests_per_second * seconds as f64;
    measured
}

/// The group of every thread of TorchServe's Python worker processes.
const PYTHON_WORKERS: &str = "Python workers";

/// CPU time used so far, to be compared after a run: by each group of alike-named threads of
/// every process (its `comm`, digits dropped: `actix-rt|system:0|arbiter:N`, `W-N-mlp_benc`;
/// the Python workers' as one), by each process as a whole, and by the benchmark's finished
/// children (wrk).
struct CpuSnapshot {
    threads: std::collections::HashMap<(u32, u32), (u32, String, u64)>,
    /// Each process's own total, which keeps the time of its threads that have ended.
    processes: std::collections::HashMap<u32, u64>,
    children: Duration,
}

/// The group of the time a process's ended threads spent (tserve's rolled-log compression runs
/// on a thread of its own per file, which is gone by the time the run ends).
const ENDED_THREADS: &str = "threads that ended";

impl CpuSnapshot {
    fn take() -> Self {
        let mut threads = std::collections::HashMap::new();
        let mut processes = std::collections::HashMap::new();
        for process in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = process.file_name().to_string_lossy().parse::<u32>() else { continue };
            let Some((parent, total)) = std::fs::read_to_string(process.path().join("stat"))
                .ok()
                .and_then(|stat| stat_fields(&stat).map(|(_, fields)| (field(&fields, 1), field(&fields, 11) + field(&fields, 12))))
            else {
                continue;
            };
            let parent = parent as u32;
            processes.insert(pid, total);
            // TorchServe's Python worker, whichever frontend started it (torch renames its
            // threads, so the command line tells, not the thread names).
            let python_worker = std::fs::read(process.path().join("cmdline"))
                .is_ok_and(|line| String::from_utf8_lossy(&line).contains("model_service_worker"));
            for thread in std::fs::read_dir(process.path().join("task")).into_iter().flatten().flatten() {
                let Ok(tid) = thread.file_name().to_string_lossy().parse::<u32>() else { continue };
                let Ok(stat) = std::fs::read_to_string(thread.path().join("stat")) else { continue };
                let Some((comm, fields)) = stat_fields(&stat) else { continue };
                let group = match python_worker {
                    true => PYTHON_WORKERS.to_string(),
                    false => comm.chars().map(|c| if c.is_ascii_digit() { 'N' } else { c }).collect(),
                };
                threads.insert((pid, tid), (parent, group, field(&fields, 11) + field(&fields, 12)));
            }
        }
        // SAFETY: getrusage writes one `rusage` into the zeroed value given.
        let children = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
            let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
            time(usage.ru_utime) + time(usage.ru_stime)
        };
        Self { threads, processes, children }
    }

    /// CPU seconds since `self` of the threads of `pid` and, with `descendants`, of every process
    /// under it, by thread group; then wrk's (the children that ended since).
    fn since(&self, pid: u32, descendants: bool) -> (Vec<(String, f64)>, f64) {
        let now = Self::take();
        let parent_of = |process: u32| now.threads.get(&(process, process)).map(|&(parent, _, _)| parent).filter(|_| descendants);
        let under = |process: u32| descends_from(process, pid, parent_of);
        // SAFETY: sysconf only reads a constant of the system.
        let tick = 1.0 / unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let mut groups: std::collections::BTreeMap<String, f64> = std::collections::BTreeMap::new();
        // Per process: its own total's growth less its live threads' is what threads that ended
        // meanwhile spent (a thread born in the run counts from zero, as in the total).
        let mut unaccounted: std::collections::HashMap<u32, i64> = std::collections::HashMap::new();
        for (&process, &total) in &now.processes {
            if under(process) {
                unaccounted.insert(process, total.saturating_sub(self.processes.get(&process).copied().unwrap_or(0)) as i64);
            }
        }
        for (&(process, tid), (_, group, ticks)) in &now.threads {
            if !under(process) {
                continue;
            }
            let before = self.threads.get(&(process, tid)).map_or(0, |t| t.2);
            let grown = ticks.saturating_sub(before);
            *groups.entry(group.clone()).or_default() += grown as f64 * tick;
            if let Some(left) = unaccounted.get_mut(&process) {
                *left -= grown as i64;
            }
        }
        let ended: i64 = unaccounted.values().map(|&left| left.max(0)).sum();
        if ended > 0 {
            *groups.entry(ENDED_THREADS.to_string()).or_default() += ended as f64 * tick;
        }
        let mut groups: Vec<(String, f64)> = groups.into_iter().filter(|(_, seconds)| *seconds > 0.0).collect();
        groups.sort_by(|a, b| b.1.total_cmp(&a.1));
        (groups, (now.children.saturating_sub(self.children)).as_secs_f64())
    }
}

/// Field `index` of a `/proc` stat line's fields after the command name, as a number (0 if absent).
fn field(fields: &[&str], index: usize) -> u64 {
    fields.get(index).and_then(|f| f.parse().ok()).unwrap_or(0)
}

/// A `/proc/<pid>/stat` line's command name and the fields after it.
fn stat_fields(stat: &str) -> Option<(String, Vec<&str>)> {
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    Some((stat[open + 1..close].to_string(), stat.get(close + 2..)?.split(' ').collect()))
}

fn parse_wrk(output: &str) -> WrkRun {
    let field = |prefix: &str| {
        output
            .lines()
            .map(str::trim)
            .find_map(|line| line.strip_prefix(prefix))
            .map(|rest| rest.split_whitespace().next().unwrap_or("").to_string())
    };
    let millis = |text: Option<String>| {
        let text = text.unwrap_or_default();
        let (number, scale) = if let Some(n) = text.strip_suffix("us") {
            (n, 1e-3)
        } else if let Some(n) = text.strip_suffix("ms") {
            (n, 1.0)
        } else if let Some(n) = text.strip_suffix('s') {
            (n, 1e3)
        } else {
            (text.as_str(), f64::NAN)
        };
        number.parse::<f64>().map_or(f64::NAN, |n| n * scale)
    };
    let count = |prefix: &str| field(prefix).and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
    let socket_errors: u64 = output
        .lines()
        .find_map(|line| line.trim().strip_prefix("Socket errors:"))
        .map(|rest| {
            rest.split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    WrkRun {
        cpu: None,
        requests: f64::NAN,
        requests_per_second: field("Requests/sec:").and_then(|n| n.parse().ok()).unwrap_or(f64::NAN),
        p50_ms: millis(field("50%")),
        p99_ms: millis(field("99%")),
        errors: count("Non-2xx or 3xx responses:") + socket_errors,
    }
}

/// TorchServe 0.12.0 itself, from the project's venv, serving an archive from the fixtures.
mod torchserve {
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use super::helpers::{fixture, free_port, repo_root};

    pub struct TorchServe {
        child: Child,
        dir: tempfile::TempDir,
        port: u16,
        management: u16,
    }

    impl TorchServe {
        pub fn start(archive: &str, workers: usize, env: &[(&str, &str)]) -> Result<Self, String> {
            let launcher = repo_root().join(".venv/bin/torchserve");
            if Command::new("java").arg("-version").output().is_err() {
                return Err("no Java runtime (apt-get install openjdk-17-jre-headless)".into());
            }
            let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
            let store = dir.path().join("model_store");
            std::fs::create_dir(&store).map_err(|e| e.to_string())?;
            std::fs::copy(fixture(archive), store.join(archive)).map_err(|e| e.to_string())?;
            let (port, management, metrics) = (free_port(), free_port(), free_port());
            let config = format!(
                "inference_address=http://127.0.0.1:{port}\nmanagement_address=http://127.0.0.1:{management}\n\
                 metrics_address=http://127.0.0.1:{metrics}\ndefault_workers_per_model={workers}\n\
                 job_queue_size=1000\ndisable_token_authorization=true\n"
            );
            std::fs::write(dir.path().join("config.properties"), config).map_err(|e| e.to_string())?;
            let child = Command::new(&launcher)
                .current_dir(dir.path())
                .env("TMPDIR", dir.path())
                .envs(env.iter().copied())
                .args(["--start", "--foreground", "--ncs", "--disable-token-auth", "--model-store"])
                .arg(&store)
                .args(["--ts-config", "config.properties", "--models", archive])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| format!("cannot start {}: {e}", launcher.display()))?;
            let server = Self { child, dir, port, management };
            let deadline = Instant::now() + Duration::from_secs(180);
            while Instant::now() < deadline {
                let ready = ureq::get(&server.url("/ping")).call().ok().map(|r| r.status()) == Some(200);
                if ready {
                    return Ok(server);
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            Err("TorchServe did not become healthy within 180 s".into())
        }

        pub fn url(&self, path: &str) -> String {
            format!("http://127.0.0.1:{}{path}", self.port)
        }

        /// Waits until `model` has `count` workers READY (its Python workers have loaded it).
        pub fn wait_for_workers(&self, model: &str, count: usize) -> Result<(), String> {
            let url = format!("http://127.0.0.1:{}/models/{model}", self.management);
            let deadline = Instant::now() + Duration::from_secs(180);
            while Instant::now() < deadline {
                let ready = ureq::get(&url)
                    .call()
                    .ok()
                    .and_then(|reply| reply.into_json::<serde_json::Value>().ok())
                    .and_then(|described| {
                        let workers = described[0]["workers"].as_array()?.clone();
                        Some(workers.iter().filter(|w| w["status"] == "READY").count())
                    });
                if ready >= Some(count) {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(format!("TorchServe's {model} did not get {count} workers READY within 180 s"))
        }

        /// Scales `model` to `workers`, waiting for them.
        pub fn scale(&self, model: &str, workers: usize) -> Result<(), String> {
            let url = format!("http://127.0.0.1:{}/models/{model}?min_worker={workers}&synchronous=true", self.management);
            let status = ureq::put(&url).call().map(|reply| reply.status()).unwrap_or_else(|e| match e {
                ureq::Error::Status(code, _) => code,
                ureq::Error::Transport(_) => 0,
            });
            if status != 200 {
                return Err(format!("TorchServe answered {status} to scaling {model} to {workers}"));
            }
            self.wait_for_workers(model, workers)
        }

        /// The launcher's process, under which the Java frontend and its Python workers run.
        pub fn pid(&self) -> u32 {
            self.child.id()
        }
    }

    impl Drop for TorchServe {
        fn drop(&mut self) {
            let launcher: PathBuf = repo_root().join(".venv/bin/torchserve");
            let _ = Command::new(launcher)
                .arg("--stop")
                .current_dir(self.dir.path())
                .env("TMPDIR", self.dir.path())
                .output();
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The HTTP ceiling: actix-web with nothing but the JSON work a prediction's HTTP side needs.
mod bare_json {
    use actix_web::{web, App, HttpResponse, HttpServer};

    async fn predict(body: web::Bytes) -> HttpResponse {
        match serde_json::from_slice::<Vec<f32>>(&body) {
            Ok(input) => {
                let sum: f32 = input.iter().sum();
                let answer: Vec<f32> = (0..10).map(|i| sum * i as f32).collect();
                let mut text = serde_json::to_vec_pretty(&answer).unwrap_or_default();
                text.push(b'\n');
                HttpResponse::Ok().content_type("application/json").body(text)
            }
            Err(e) => HttpResponse::BadRequest().body(e.to_string()),
        }
    }

    /// Starts the server on its own thread; returns its URL.
    pub fn start(workers: usize) -> String {
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(|| App::new().route("/predictions/{model}", web::post().to(predict)))
                    .workers(workers)
                    .disable_signals()
                    .bind(("127.0.0.1", 0))
                    .unwrap();
                let port = server.addrs()[0].port();
                sender.send(format!("http://127.0.0.1:{port}/predictions/bare")).unwrap();
                server.run().await
            })
        });
        receiver.recv().unwrap()
    }
}
