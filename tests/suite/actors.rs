//! The actor system without HTTP: worker replacement, queue limits, abandoned jobs. Handlers are
//! instrumented wrappers around the real base_handler, running the real MLP.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use actix::Addr;
use serde_json::Value;
use tch::Tensor;
use tserve::actors::{
    shared_registry, Job, JobResult, ManagerError, ModelSpec, Register, Registration, SharedRegistry,
    Supervisor,
};
use tserve::handlers::{BaseHandler, Handler, ModelError, Sample};
use tserve::request::{Body, InferenceRequest};
use tserve::settings::{ModelSettings, Overrides, ServerDefaults};

use crate::helpers::{assert_close, fixture, mlp_cases};

/// base_handler, plus: panics on the payload `panic`, optionally waits for a go-ahead before
/// each request, and counts the requests it sees.
struct Instrumented {
    gate: Option<Arc<Mutex<mpsc::Receiver<()>>>>,
    calls: Arc<AtomicUsize>,
}

impl Handler for Instrumented {
    fn preprocess(&self, payload: &[u8]) -> Result<Sample, ModelError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if payload == b"panic" {
            panic!("injected panic");
        }
        if let Some(gate) = &self.gate {
            gate.lock().unwrap().recv().unwrap();
        }
        BaseHandler::default().preprocess(payload)
    }

    fn postprocess(&self, output: &Tensor) -> Result<Vec<Value>, ModelError> {
        BaseHandler::default().postprocess(output)
    }
}

struct Setup {
    _supervisor: Addr<Supervisor>,
    registry: SharedRegistry,
    registration: Registration,
    calls: Arc<AtomicUsize>,
    /// Each `()` sent lets one gated request through.
    go: mpsc::Sender<()>,
}

async fn setup(gated: bool, job_queue_size: usize) -> Setup {
    let calls = Arc::new(AtomicUsize::new(0));
    let (go, gate) = mpsc::channel();
    let gate = gated.then(|| Arc::new(Mutex::new(gate)));
    let handler_calls = calls.clone();
    let server = ServerDefaults {
        workers: 1,
        gpus: 0,
        job_queue_size,
        response_timeout: Duration::from_secs(120),
        startup_timeout: Duration::from_secs(120),
    };
    let settings = ModelSettings::resolve(&server, &Default::default(), &Default::default(), &Overrides::default());
    let handler: tserve::actors::HandlerFactory = Arc::new(move |_| {
        Ok(Box::new(Instrumented {
            gate: gate.clone(),
            calls: handler_calls.clone(),
        }) as Box<dyn Handler>)
    });
    let spec = ModelSpec::new("mlp", "1.0", fixture("mlp.pt"), handler, settings);
    let registry = shared_registry();
    let supervisor = {
        let registry = registry.clone();
        actix::Supervisor::start(move |_| Supervisor::new(registry, None))
    };
    let register = Register { spec, make_default: false, snapshot: false };
    let mut registration = supervisor.send(register).await.unwrap().unwrap();
    wait_ready(&mut registration, 0).await;
    Setup {
        _supervisor: supervisor,
        registry,
        registration,
        calls,
        go,
    }
}

/// Waits until the model has a ready worker after `failures` worker deaths.
async fn wait_ready(registration: &mut Registration, failures: usize) {
    let ready = registration
        .health
        .wait_for(|h| h.ready >= 1 && h.failures >= failures);
    tokio::time::timeout(Duration::from_secs(30), async { ready.await.map(|_| ()) })
        .await
        .expect("a worker became ready")
        .unwrap();
}

/// Queues a job for the MLP, as a prediction does: through the published registry.
fn enqueue(registry: &SharedRegistry, payload: &[u8]) -> Result<tokio::sync::oneshot::Receiver<JobResult>, ManagerError> {
    let registry = registry.load();
    let entry = registry.lookup("mlp", None)?;
    let (job, answer) = Job::new(InferenceRequest::from_body(payload.to_vec().into()));
    entry.queue.submit(job, false)?;
    Ok(answer)
}

/// Whether every model is healthy, as /ping asks.
fn healthy(registry: &SharedRegistry) -> bool {
    registry.load().entries().all(|entry| entry.health.borrow().is_healthy())
}

/// Whether every model has its minimum of ready workers.
fn ready(registry: &SharedRegistry) -> bool {
    registry.load().entries().all(|entry| entry.health.borrow().is_ready())
}

fn json(result: JobResult) -> Value {
    match result.unwrap().body {
        Body::Json(value) => value,
        other => panic!("expected JSON, got {other:?}"),
    }
}

fn first_case() -> (Vec<u8>, Value) {
    let (input, output) = mlp_cases().remove(0);
    (input.to_string().into_bytes(), output)
}

#[test]
fn a_panicking_worker_is_replaced_and_its_request_gets_worker_died() {
    actix::System::new().block_on(async {
        let mut setup = setup(false, 10).await;
        let (input, expected) = first_case();

        let answer = enqueue(&setup.registry, &input).unwrap().await.unwrap();
        assert_close(&json(answer), &expected, 1e-5);

        // The panic ends the worker; its manager answers the request it held `Worker died.`.
        let died = enqueue(&setup.registry, b"panic").unwrap().await.unwrap();
        assert!(matches!(died, Err(ManagerError::WorkerDied)), "{died:?}");
        setup
            .registration
            .health
            .wait_for(|h| h.failures == 1)
            .await
            .unwrap();
        assert!(!ready(&setup.registry), "not ready while replaced");
        assert!(healthy(&setup.registry), "but healthy: inside its retry window");

        // Replaced after TorchServe's first backoff step (1 s), and serving again.
        wait_ready(&mut setup.registration, 1).await;
        assert!(ready(&setup.registry));
        let answer = enqueue(&setup.registry, &input).unwrap().await.unwrap();
        assert_close(&json(answer), &expected, 1e-5);
    });
}

#[test]
fn a_full_queue_is_refused_at_once_and_queued_jobs_still_run() {
    actix::System::new().block_on(async {
        let setup = setup(true, 2).await;
        let (input, expected) = first_case();
        // One job on the worker (held at the gate), two in the queue: the queue is full.
        let running = enqueue(&setup.registry, &input).unwrap();
        // The worker has taken it once its handler is called.
        while setup.calls.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let queued = [
            enqueue(&setup.registry, &input).unwrap(),
            enqueue(&setup.registry, &input).unwrap(),
        ];
        let refused = enqueue(&setup.registry, &input).unwrap_err();
        assert!(matches!(refused, ManagerError::QueueFull { capacity: 2, .. }), "{refused}");

        for _ in 0..3 {
            setup.go.send(()).unwrap();
        }
        for answer in std::iter::once(running).chain(queued) {
            assert_close(&json(answer.await.unwrap()), &expected, 1e-5);
        }
    });
}

#[test]
fn jobs_whose_client_has_gone_are_not_run() {
    actix::System::new().block_on(async {
        let setup = setup(true, 10).await;
        let (input, expected) = first_case();
        let running = enqueue(&setup.registry, &input).unwrap();
        let abandoned = enqueue(&setup.registry, &input).unwrap();
        let kept = enqueue(&setup.registry, &input).unwrap();
        drop(abandoned);

        setup.go.send(()).unwrap();
        setup.go.send(()).unwrap();
        assert_close(&json(running.await.unwrap()), &expected, 1e-5);
        assert_close(&json(kept.await.unwrap()), &expected, 1e-5);
        assert_eq!(setup.calls.load(Ordering::SeqCst), 2, "the abandoned job never ran");
    });
}
