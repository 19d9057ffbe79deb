//! The gRPC listeners, as TorchServe has them: inference (`grpc_inference_address:
//! grpc_inference_port`, default 127.0.0.1:7070) with TorchServe's `InferenceAPIsService` and,
//! when the protocol is on, the Open Inference Protocol's `inference.GRPCInferenceService` (the
//! standard package, so `tritonclient.grpc` and KServe's clients work); management
//! (`grpc_management_*`, default 127.0.0.1:7071) with `ManagementAPIsService`. TLS with
//! `enable_grpc_ssl`. Each runs tonic's HTTP/2 server on a tokio runtime of its own. Each service
//! is a front door over the model service; every call passes [`call::FrontDoor`] for the token,
//! the access log and the response counts REST requests get.

mod call;
mod contents;
mod management;
mod oip;
mod torchserve;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::oneshot;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use crate::auth::{TokenKind, Tokens};
use crate::config::{ConnectionAge, ListenAddress};
use crate::service::Models;

/// The Rust code prost and tonic generate from `proto/kserve/grpc_predict_v2.proto` (public
/// for the benchmark, which encodes its requests with it).
#[allow(clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("inference");
}

/// `google.rpc.Status`, which TorchServe's `PredictionResponse` carries.
#[allow(clippy::all, clippy::pedantic)]
pub mod google {
    pub mod rpc {
        tonic::include_proto!("google.rpc");
    }
}

/// TorchServe's own services, in modules named after their packages (the generated code refers
/// to `google.rpc` by a relative path).
#[allow(clippy::all, clippy::pedantic)]
pub mod org {
    pub mod pytorch {
        pub mod serve {
            pub mod grpc {
                pub mod inference {
                    tonic::include_proto!("org.pytorch.serve.grpc.inference");
                }
                pub mod management {
                    tonic::include_proto!("org.pytorch.serve.grpc.management");
                }
            }
        }
    }
}

/// A bound gRPC listener, serving until [`GrpcListener::stop`].
pub struct GrpcListener {
    pub address: SocketAddr,
    pub scheme: &'static str,
    stop: oneshot::Sender<()>,
    stopped: oneshot::Receiver<Result<(), String>>,
}

impl GrpcListener {
    /// Stops accepting calls, lets the calls in flight finish, and waits until it has.
    pub async fn stop(self) -> Result<(), String> {
        let _ = self.stop.send(());
        self.stopped.await.unwrap_or(Ok(()))
    }
}

/// Binds the inference listener: TorchServe's inference service, and OIP's while it is on.
pub(crate) fn bind_inference(models: &Models, tokens: Option<Arc<Tokens>>) -> Result<GrpcListener, String> {
    let listeners = &models.config().listeners;
    let max_request_size = listeners.max_request_size;
    let door = call::FrontDoor::new(models.clone(), tokens, TokenKind::Inference);
    let mut routes = Routes::new(torchserve::server(door.clone(), max_request_size));
    if listeners.open_inference_protocol {
        routes = routes.add_service(oip::server(door, max_request_size));
    }
    bind(models, &listeners.grpc_inference, listeners.grpc_inference_age, routes)
}

/// Binds the management listener.
pub(crate) fn bind_management(models: &Models, tokens: Option<Arc<Tokens>>) -> Result<GrpcListener, String> {
    let listeners = &models.config().listeners;
    let door = call::FrontDoor::new(models.clone(), tokens, TokenKind::Management);
    let routes = Routes::new(management::server(door, listeners.max_request_size));
    bind(models, &listeners.grpc_management, listeners.grpc_management_age, routes)
}

/// Binds `listen` and starts serving `routes` on a runtime of its own (as many threads as each
/// HTTP listener has), so gRPC calls never wait behind the actors' thread.
fn bind(models: &Models, listen: &ListenAddress, age: ConnectionAge, routes: Routes) -> Result<GrpcListener, String> {
    let cannot_listen = |e: std::io::Error| format!("cannot listen for gRPC on {}:{}: {e}", listen.host, listen.port);
    let listener = std::net::TcpListener::bind((listen.host.as_str(), listen.port)).map_err(cannot_listen)?;
    listener.set_nonblocking(true).map_err(cannot_listen)?;
    let address = listener.local_addr().map_err(cannot_listen)?;
    let mut server = Server::builder();
    if let Some(max) = age.max {
        server = server.max_connection_age(max);
    }
    if let Some(grace) = age.grace {
        server = server.max_connection_age_grace(grace);
    }
    if listen.tls {
        server = server.tls_config(tls_config(models)?).map_err(|e| format!("gRPC TLS: {e}"))?;
    }
    let router = server.add_routes(routes);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(models.config().listeners.http_threads)
        .thread_name("grpc")
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the gRPC runtime: {e}"))?;
    let (stop, stop_requested) = oneshot::channel::<()>();
    let (done, stopped) = oneshot::channel();
    std::thread::Builder::new()
        .name("grpc-listener".into())
        .spawn(move || {
            let served = runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).map_err(|e| e.to_string())?;
                let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
                router
                    .serve_with_incoming_shutdown(incoming, async {
                        let _ = stop_requested.await;
                    })
                    .await
                    .map_err(|e| e.to_string())
            });
            let _ = done.send(served);
        })
        .map_err(|e| format!("cannot start the gRPC listener thread: {e}"))?;
    Ok(GrpcListener {
        address,
        scheme: if listen.tls { "grpcs" } else { "grpc" },
        stop,
        stopped,
    })
}

/// `enable_grpc_ssl`: TorchServe's PEM files (`certificate_file`, `private_key_file`).
fn tls_config(models: &Models) -> Result<ServerTlsConfig, String> {
    let tls = &models.config().security.tls;
    let (Some(certificate), Some(key)) = (&tls.certificate_file, &tls.private_key_file) else {
        return Err("enable_grpc_ssl=true needs certificate_file and private_key_file".into());
    };
    let read = |path: &std::path::Path| std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()));
    Ok(ServerTlsConfig::new().identity(Identity::from_pem(read(certificate)?, read(key)?)))
}
