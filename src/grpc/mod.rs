//! The gRPC inference listener (`grpc_inference_address:grpc_inference_port`, default
//! 127.0.0.1:7070, TLS with `enable_grpc_ssl`): a tonic HTTP/2 server on a tokio runtime of its
//! own, serving the Open Inference Protocol's `inference.GRPCInferenceService` (the standard
//! package, so `tritonclient.grpc` and KServe's clients work) when the protocol is on. Each
//! service is a front door over the model service; every call passes [`call::FrontDoor`] for
//! the token, the access log and the response counts REST requests get.

mod call;
mod contents;
mod oip;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::oneshot;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use crate::auth::Tokens;
use crate::service::Models;

/// The Rust code prost and tonic generate from `proto/kserve/grpc_predict_v2.proto` (public
/// for the benchmark, which encodes its requests with it).
#[allow(clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("inference");
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

/// Binds the gRPC inference listener and starts serving on a runtime of its own (as many
/// threads as each HTTP listener has), so gRPC calls never wait behind the actors' thread.
pub(crate) fn bind(models: &Models, tokens: Option<Arc<Tokens>>) -> Result<GrpcListener, String> {
    let config = models.config();
    let listen = &config.listeners.grpc_inference;
    let cannot_listen = |e: std::io::Error| format!("cannot listen for gRPC on {}:{}: {e}", listen.host, listen.port);
    let listener = std::net::TcpListener::bind((listen.host.as_str(), listen.port)).map_err(cannot_listen)?;
    listener.set_nonblocking(true).map_err(cannot_listen)?;
    let address = listener.local_addr().map_err(cannot_listen)?;
    let tls = match listen.tls {
        true => Some(tls_config(models)?),
        false => None,
    };
    let max_request_size = config.listeners.max_request_size;
    let door = call::FrontDoor::new(models.clone(), tokens);
    let oip = config.listeners.open_inference_protocol.then(|| {
        proto::grpc_inference_service_server::GrpcInferenceServiceServer::new(oip::OpenInference::new(door))
            .max_decoding_message_size(max_request_size)
            .max_encoding_message_size(usize::MAX)
    });
    let mut server = Server::builder();
    if let Some(age) = config.listeners.grpc_max_connection_age {
        server = server.max_connection_age(age);
    }
    if let Some(grace) = config.listeners.grpc_max_connection_age_grace {
        server = server.max_connection_age_grace(grace);
    }
    if let Some(tls) = tls {
        server = server.tls_config(tls).map_err(|e| format!("gRPC TLS: {e}"))?;
    }
    // With the protocol off nothing is routed: every call answers UNIMPLEMENTED, as TorchServe's.
    let router = server.add_optional_service(oip);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(config.listeners.http_threads)
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
