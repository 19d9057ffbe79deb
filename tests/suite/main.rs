//! tserve's black-box and component tests, in one binary so libtorch is linked once.
//!
//! Every model is a real TorchScript file made by the venv's PyTorch (`tests/fixtures`), every
//! server a real `tserve` process on a free port, spoken to over HTTP.

mod actors;
mod archiver;
mod cloud;
mod deploy;
mod helpers;
mod grpc;
mod hostile;
mod kserve;
mod launcher;
mod workflows;
mod management;
mod model;
mod packaging;
mod monitoring;
mod preprocessing;
mod python_backend;
mod replicas;
mod resilience;
mod security;
mod server;
