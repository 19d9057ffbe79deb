//! tserve: a TorchServe-compatible model server. TorchServe's flags, config.properties, `.mar`
//! archives and inference API, with TorchScript models run in-process by libtorch.
//!
//! Layout, with dependencies pointing one way (`http` → `actors` → `handlers` → libtorch):
//! - [`cli`], [`launcher`]: the command line and `--start`/`--stop`.
//! - [`config`]: config.properties + CLI, resolved once.
//! - [`server`]: starts the actors, loads start-up models, binds the listeners.
//! - [`http`]: the inference API; parses requests into actor messages.
//! - [`actors`]: Supervisor → ModelManager → Worker (each worker owns an OS thread and a model).
//! - [`handlers`]: built-in handlers: bytes → tensors → forward → JSON answers.
//! - [`archive`]: model archives in the model store.

pub mod actors;
pub mod archive;
pub mod archiver;
pub mod cli;
pub mod config;
pub mod handlers;
pub mod http;
pub mod launcher;
pub mod server;
pub mod snapshot;
