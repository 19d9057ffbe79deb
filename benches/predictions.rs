//! `cargo bench --bench predictions`: requests/s and p50/p99 latency of `/predictions` on the MLP
//! and ResNet-18 at several concurrencies, next to the raw `forward` throughput of the same model
//! measured in the same run (the ceiling the server can approach).
//!
//! The server runs with its defaults (one worker per core, one intra-op thread each); the raw
//! figure runs the same number of threads, each with its own copy of the model, calling
//! `forward` on a batch of 1 with no HTTP, queueing or pre-processing. Load comes from client
//! threads on the same machine, so on a small machine they compete with the server for cores.
//!
//! A batched run follows: ResNet-18 with `batchSize` 8 and `maxBatchDelay` 5 ms (through the
//! `models=` key of config.properties) at concurrency 16, next to the raw `forward` rate of
//! batches of 8 (counted in samples per second).
//!
//! Settings (environment): BENCH_SECONDS (per run, default 5), BENCH_CONCURRENCY (default
//! "1,4,16"), BENCH_MODELS (default "mlp,resnet18"), BENCH_BATCHED (default "1"; "0" skips the
//! batched run).

#[path = "../tests/suite/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use std::time::{Duration, Instant};

use helpers::{fixture, mlp_cases, TestServer};
use tch::{CModule, Device, Tensor};

struct Model {
    name: &'static str,
    archive: &'static str,
    torchscript: &'static str,
    /// One request's body.
    payload: Vec<u8>,
    /// The model's input for a batch of `n` such requests.
    input: fn(i64) -> Tensor,
}

fn models() -> Vec<Model> {
    vec![
        Model {
            name: "mlp",
            archive: "mlp.mar",
            torchscript: "mlp.pt",
            payload: mlp_cases()[0].0.to_string().into_bytes(),
            input: |n| Tensor::randn([n, 4], (tch::Kind::Float, Device::Cpu)),
        },
        Model {
            name: "resnet18",
            archive: "resnet18.mar",
            torchscript: "resnet18.pt",
            payload: std::fs::read(fixture("images/photo.jpg")).unwrap(),
            input: |n| Tensor::randn([n, 3, 224, 224], (tch::Kind::Float, Device::Cpu)),
        },
    ]
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn main() {
    let seconds: u64 = env_or("BENCH_SECONDS", "5").parse().expect("BENCH_SECONDS");
    let duration = Duration::from_secs(seconds);
    let concurrencies: Vec<usize> = env_or("BENCH_CONCURRENCY", "1,4,16")
        .split(',')
        .map(|c| c.trim().parse().expect("BENCH_CONCURRENCY"))
        .collect();
    let wanted = env_or("BENCH_MODELS", "mlp,resnet18");
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());

    println!("| model | path | concurrency | requests/s | p50 ms | p99 ms | errors |");
    println!("|---|---|---|---|---|---|---|");
    for model in models().into_iter().filter(|m| wanted.split(',').any(|w| w == m.name)) {
        let raw = raw_forward_rate(&model, workers, 1, duration);
        println!(
            "| {} | raw forward, {workers} threads × batch 1 | - | {raw:.1} | - | - | - |",
            model.name
        );
        let server = TestServer::start_with(&[model.archive], "job_queue_size=1000");
        for &clients in &concurrencies {
            report(&model, &server, &format!("/predictions, {workers} workers"), clients, duration);
        }
    }
    if env_or("BENCH_BATCHED", "1") != "0" {
        let model = models().remove(1);
        let raw = raw_forward_rate(&model, workers, 8, duration);
        println!(
            "| {} | raw forward, {workers} threads × batch 8 | - | {raw:.1} | - | - | - |",
            model.name
        );
        let config = r#"job_queue_size=1000
models={"resnet18": {"1.0": {"batchSize": 8, "maxBatchDelay": 5}}}"#;
        let server = TestServer::start_with(&[model.archive], config);
        let path = format!("/predictions, {workers} workers, batch 8, delay 5 ms");
        report(&model, &server, &path, 16, duration);
    }
}

/// Drives the server at `clients` concurrency (after a short warm-up) and prints a table row.
fn report(model: &Model, server: &TestServer, label: &str, clients: usize, duration: Duration) {
    let path = format!("/predictions/{}", model.name);
    drive(server, &path, &model.payload, clients, Duration::from_secs(1));
    let run = drive(server, &path, &model.payload, clients, duration);
    println!(
        "| {} | {label} | {clients} | {:.1} | {:.2} | {:.2} | {} |",
        model.name,
        run.requests_per_second,
        run.percentile(0.50),
        run.percentile(0.99),
        run.errors
    );
}

/// Samples per second through `forward` alone, in batches of `batch`, over `threads` threads,
/// each with its own module and one intra-op thread, as the server's workers run.
fn raw_forward_rate(model: &Model, threads: usize, batch: i64, duration: Duration) -> f64 {
    let path = fixture(model.torchscript);
    let counts: Vec<u64> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let path = path.clone();
                scope.spawn(move || {
                    tch::set_num_threads(1);
                    let _no_grad = tch::no_grad_guard();
                    let mut module = CModule::load_on_device(&path, Device::Cpu).unwrap();
                    module.set_eval();
                    let input = (model.input)(batch);
                    let _ = module.forward_ts(&[&input]).unwrap(); // warm-up
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

struct Run {
    requests_per_second: f64,
    /// Latencies of successful requests, sorted, in milliseconds.
    latencies_ms: Vec<f64>,
    errors: usize,
}

impl Run {
    fn percentile(&self, q: f64) -> f64 {
        if self.latencies_ms.is_empty() {
            return f64::NAN;
        }
        let index = ((self.latencies_ms.len() as f64 - 1.0) * q).round() as usize;
        self.latencies_ms[index]
    }
}

/// `clients` threads, each with its own keep-alive connection, sending back to back until the
/// deadline.
fn drive(server: &TestServer, path: &str, payload: &[u8], clients: usize, duration: Duration) -> Run {
    let url = server.url(path);
    let started = Instant::now();
    let deadline = started + duration;
    let results: Vec<(Vec<f64>, usize)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..clients)
            .map(|_| {
                let url = url.clone();
                scope.spawn(move || {
                    let agent = ureq::AgentBuilder::new().build();
                    let (mut latencies, mut errors) = (Vec::new(), 0usize);
                    while Instant::now() < deadline {
                        let sent = Instant::now();
                        match agent.post(&url).send_bytes(payload) {
                            Ok(response) if response.status() == 200 => {
                                let _ = response.into_string();
                                latencies.push(sent.elapsed().as_secs_f64() * 1e3);
                            }
                            _ => errors += 1,
                        }
                    }
                    (latencies, errors)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let errors = results.iter().map(|(_, e)| e).sum();
    let mut latencies_ms: Vec<f64> = results.into_iter().flat_map(|(l, _)| l).collect();
    latencies_ms.sort_by(f64::total_cmp);
    Run {
        requests_per_second: latencies_ms.len() as f64 / elapsed,
        latencies_ms,
        errors,
    }
}
