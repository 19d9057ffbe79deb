//! tserve: a TorchServe-compatible model server. TorchServe's flags, config.properties, `.mar`
//! archives and inference API, with TorchScript models run in-process by libtorch.
//!
//! Layout, with dependencies pointing one way (`http` → `service` → `actors` → `handlers` →
//! libtorch):
//! - [`cli`], [`launcher`]: the command line and `--start`/`--stop`.
//! - [`config`]: config.properties + CLI, resolved once; [`settings`]: one model's settings.
//! - [`server`]: starts the model service, loads start-up models, binds the listeners.
//! - [`http`]: the APIs; parses requests and calls the model service.
//! - [`service`]: the one handle to the served models: predict, register, scale, describe ...
//! - [`actors`]: Supervisor → ModelManager → workers (each an OS thread that owns a model).
//! - [`handlers`]: built-in handlers: bytes → tensors → forward → JSON answers.
//! - [`archive`]: model archives in the model store.
//! - [`error`]: the table of error codes: each error's HTTP status and TorchServe type.
//! - [`request`]: what a prediction carries: the request as backends see it, and their answer.
//! - [`tensor`]: typed tensors as the Open Inference Protocol names them, without libtorch.
//! - [`allocator`]: when mimalloc, malloc for the whole process, gives memory back.

pub mod actors;
pub mod allocator;
mod archive;
mod auth;
pub mod archiver;
pub mod cli;
mod config;
mod error;
mod gpu;
pub mod handlers;
pub mod grpc;
mod http;
pub mod launcher;
pub mod logging;
pub mod metrics;
pub mod request;
mod server;
mod service;
pub mod settings;
mod snapshot;
pub mod tensor;
mod workflow;

/// What the property tests share: how many cases each runs.
#[cfg(test)]
mod property_tests {
    /// 4,096 cases per property (a few seconds for all of them in CI), or `PROPTEST_CASES` for a
    /// longer run: `PROPTEST_CASES=1000000 cargo test --release --lib arbitrary_input`.
    pub fn config() -> proptest::prelude::ProptestConfig {
        let mut config = proptest::prelude::ProptestConfig::default();
        if std::env::var_os("PROPTEST_CASES").is_none() {
            config.cases = 4096;
        }
        config
    }
}
