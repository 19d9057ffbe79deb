//! The actor system without HTTP: worker replacement, queue limits, abandoned jobs. Handlers are
//! instrumented wrappers around the real base_handler, running the real MLP.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use actix::Addr;
use bytes::Bytes;
use serde_json::Value;
use tch::Tensor;
use tserve::actors::{
    CheckHealth, Enqueue, Job, JobResult, ManagerError, ModelSpec, Register, Registration, Route,
    Supervisor,
};
use tserve::handlers::{BaseHandler, Handler, ModelError};

use crate::helpers::{assert_close, fixture, mlp_cases};

/// base_handler, plus: panics on the payload `panic`, optionally waits for a go-ahead before
/// each request, and counts the requests it sees.
struct Instrumented {
    gate: Option<Arc<Mutex<mpsc::Receiver<()>>>>,
    calls: Arc<AtomicUsize>,
}

impl Handler for Instrumented {
    fn preprocess(&self, payload: &[u8]) -> Result<Tensor, ModelError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if payload == b"panic" {
            panic!("injected panic");
        }
        if let Some(gate) = &self.gate {
            gate.lock().unwrap().recv().unwrap();
        }
        BaseHandler.preprocess(payload)
    }

    fn postprocess(&self, output: &Tensor) -> Result<Vec<Value>, ModelError> {
        BaseHandler.postprocess(output)
    }
}

struct Setup {
    supervisor: Addr<Supervisor>,
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
    let spec = ModelSpec::builder("mlp", "1.0", fixture("mlp.pt"))
        .handler(Arc::new(move |_| {
            Ok(Box::new(Instrumented {
                gate: gate.clone(),
                calls: handler_calls.clone(),
            }) as Box<dyn Handler>)
        }))
        .workers(1)
        .job_queue_size(job_queue_size)
        .build();
    let supervisor = actix::Supervisor::start(|_| Supervisor::default());
    let mut registration = supervisor.send(Register::new(spec)).await.unwrap().unwrap();
    wait_ready(&mut registration, 0).await;
    Setup {
        supervisor,
        registration,
        calls,
        go,
    }
}

/// Waits until the model has a ready worker after `failures` worker deaths.
async fn wait_ready(registration: &mut Registration, failures: usize) {
    let ready = registration
        .health
        .wait_for(|h| h.ready >= 1 && h.load_failures >= failures);
    tokio::time::timeout(Duration::from_secs(30), async { ready.await.map(|_| ()) })
        .await
        .expect("a worker became ready")
        .unwrap();
}

async fn enqueue(supervisor: &Addr<Supervisor>, payload: &[u8]) -> Result<tokio::sync::oneshot::Receiver<JobResult>, ManagerError> {
    let route = supervisor
        .send(Route {
            model: "mlp".into(),
            version: None,
        })
        .await
        .unwrap()?;
    let (job, answer) = Job::new(Bytes::copy_from_slice(payload));
    route.manager.send(Enqueue(job)).await.unwrap()?;
    Ok(answer)
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

        let answer = enqueue(&setup.supervisor, &input).await.unwrap().await.unwrap();
        assert_close(&answer.unwrap(), &expected, 1e-5);

        // The panic ends the worker; its manager answers the request it held `Worker died.`.
        let died = enqueue(&setup.supervisor, b"panic").await.unwrap().await.unwrap();
        assert!(matches!(died, Err(ManagerError::WorkerDied)), "{died:?}");
        setup
            .registration
            .health
            .wait_for(|h| h.load_failures == 1)
            .await
            .unwrap();
        assert!(!setup.supervisor.send(CheckHealth).await.unwrap(), "Unhealthy while replaced");

        // Replaced after TorchServe's first backoff step (1 s), and serving again.
        wait_ready(&mut setup.registration, 1).await;
        assert!(setup.supervisor.send(CheckHealth).await.unwrap());
        let answer = enqueue(&setup.supervisor, &input).await.unwrap().await.unwrap();
        assert_close(&answer.unwrap(), &expected, 1e-5);
    });
}

#[test]
fn a_full_queue_is_refused_at_once_and_queued_jobs_still_run() {
    actix::System::new().block_on(async {
        let setup = setup(true, 2).await;
        let (input, expected) = first_case();
        // One job on the worker (held at the gate), two in the queue: the queue is full.
        let running = enqueue(&setup.supervisor, &input).await.unwrap();
        let queued = [
            enqueue(&setup.supervisor, &input).await.unwrap(),
            enqueue(&setup.supervisor, &input).await.unwrap(),
        ];
        let refused = enqueue(&setup.supervisor, &input).await.unwrap_err();
        assert!(matches!(refused, ManagerError::QueueFull { capacity: 2, .. }), "{refused}");

        for _ in 0..3 {
            setup.go.send(()).unwrap();
        }
        for answer in std::iter::once(running).chain(queued) {
            assert_close(&answer.await.unwrap().unwrap(), &expected, 1e-5);
        }
    });
}

#[test]
fn jobs_whose_client_has_gone_are_not_run() {
    actix::System::new().block_on(async {
        let setup = setup(true, 10).await;
        let (input, expected) = first_case();
        let running = enqueue(&setup.supervisor, &input).await.unwrap();
        let abandoned = enqueue(&setup.supervisor, &input).await.unwrap();
        let kept = enqueue(&setup.supervisor, &input).await.unwrap();
        drop(abandoned);

        setup.go.send(()).unwrap();
        setup.go.send(()).unwrap();
        assert_close(&running.await.unwrap().unwrap(), &expected, 1e-5);
        assert_close(&kept.await.unwrap().unwrap(), &expected, 1e-5);
        assert_eq!(setup.calls.load(Ordering::SeqCst), 2, "the abandoned job never ran");
    });
}
