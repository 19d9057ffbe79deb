//! TorchServe's `ManagementAPIsService` (`org.pytorch.serve.grpc.management`) on the management
//! port: each rpc is the REST management call of the same name, and `msg` carries what REST
//! sends (the status text, or the describe/list JSON without its trailing newline).
//!
//! proto3 cannot tell an unset number from 0, so as in TorchServe 0s take the REST defaults
//! (`initial_workers`: `default_workers_per_model`; `min_worker`: 1; `max_worker`: `min_worker`).
//! Where TorchServe is broken this does better: `ListModels` without a limit lists (TorchServe
//! answers an empty page), and a conflict or the default version's removal get their REST
//! errors as statuses (ABORTED, PERMISSION_DENIED) where TorchServe ends the call with an empty
//! UNKNOWN.

use serde::Serialize;
use tonic::{Request, Response, Status};

use super::call::{target, CallError, FrontDoor};
use super::org::pytorch::serve::grpc::management::management_ap_is_service_server::{
    ManagementApIsService, ManagementApIsServiceServer,
};
use super::org::pytorch::serve::grpc::management::*;
use crate::archive::Runtime;
use crate::service::{messages, RegisterRequest, VersionSelector};
use crate::settings::Overrides;

pub struct TorchServeManagement {
    door: FrontDoor,
}

/// The service, taking messages up to `max_request_size`.
pub fn server(door: FrontDoor, max_request_size: usize) -> ManagementApIsServiceServer<TorchServeManagement> {
    ManagementApIsServiceServer::new(TorchServeManagement { door }).max_decoding_message_size(max_request_size)
}

/// The full method names, as the access log shows them.
mod method {
    pub const DESCRIBE: &str = "org.pytorch.serve.grpc.management.ManagementAPIsService/DescribeModel";
    pub const LIST: &str = "org.pytorch.serve.grpc.management.ManagementAPIsService/ListModels";
    pub const REGISTER: &str = "org.pytorch.serve.grpc.management.ManagementAPIsService/RegisterModel";
    pub const SCALE: &str = "org.pytorch.serve.grpc.management.ManagementAPIsService/ScaleWorker";
    pub const SET_DEFAULT: &str = "org.pytorch.serve.grpc.management.ManagementAPIsService/SetDefault";
    pub const UNREGISTER: &str = "org.pytorch.serve.grpc.management.ManagementAPIsService/UnregisterModel";
}

fn reply(msg: String) -> ManagementResponse {
    ManagementResponse { msg }
}

/// JSON as REST sends it, without the trailing newline (Gson's pretty printing, as TorchServe's
/// gRPC answers carry it).
fn json_reply(value: &impl Serialize) -> ManagementResponse {
    reply(serde_json::to_string_pretty(value).unwrap_or_default())
}

/// A positive proto3 number, or unset.
fn positive(value: i32) -> Option<u64> {
    u64::try_from(value).ok().filter(|&v| v > 0)
}

impl TorchServeManagement {
    /// Register and unregister need `enable_model_api`, as on REST.
    fn model_api(&self) -> Result<(), CallError> {
        match self.door.models.config().security.enable_model_api {
            true => Ok(()),
            false => Err(CallError::status(405, Status::permission_denied("Model API disabled"))),
        }
    }
}

#[tonic::async_trait]
impl ManagementApIsService for TorchServeManagement {
    async fn describe_model(&self, request: Request<DescribeModelRequest>) -> Result<Response<ManagementResponse>, Status> {
        let models = self.door.models.clone();
        self.door
            .call(method::DESCRIBE, request, |request| async move {
                let target = target(&request.model_name, &request.model_version, "model_name")?;
                let described = models.describe(&target.model, &VersionSelector::from_path(target.version)).await?;
                Ok(json_reply(&described))
            })
            .await
    }

    async fn list_models(&self, request: Request<ListModelsRequest>) -> Result<Response<ManagementResponse>, Status> {
        let models = self.door.models.clone();
        self.door
            .call(method::LIST, request, |request| async move {
                // REST's paging: 1..=100 per page (else 100), the token an offset.
                let limit = positive(request.limit).filter(|&l| l <= 100).unwrap_or(100) as usize;
                let start = positive(request.next_page_token).unwrap_or(0) as usize;
                Ok(json_reply(&messages::model_page(&models.list(), limit, start)))
            })
            .await
    }

    async fn register_model(&self, request: Request<RegisterModelRequest>) -> Result<Response<ManagementResponse>, Status> {
        let models = self.door.models.clone();
        let allowed = self.model_api();
        self.door
            .call(method::REGISTER, request, |request| async move {
                allowed?;
                let registration = register_request(request, models.config().models.configured_workers)?;
                Ok(reply(messages::registered(&models.register(registration).await?)))
            })
            .await
    }

    async fn scale_worker(&self, request: Request<ScaleWorkerRequest>) -> Result<Response<ManagementResponse>, Status> {
        let models = self.door.models.clone();
        self.door
            .call(method::SCALE, request, |request| async move {
                let target = target(&request.model_name, &request.model_version, "model_name")?;
                let min = positive(request.min_worker).unwrap_or(1) as i64;
                let max = positive(request.max_worker).map(|max| max as i64);
                let scaled = models.scale(&target, min, max, request.synchronous).await?;
                Ok(reply(messages::scaled(&scaled, min, &target)))
            })
            .await
    }

    async fn set_default(&self, request: Request<SetDefaultRequest>) -> Result<Response<ManagementResponse>, Status> {
        let models = self.door.models.clone();
        self.door
            .call(method::SET_DEFAULT, request, |request| async move {
                let target = target(&request.model_name, &request.model_version, "model_name")?;
                let version = target.version.ok_or_else(|| CallError::bad_request("Parameter model_version is required."))?;
                models.set_default(&target.model, &version).await?;
                Ok(reply(messages::default_set(&target.model, &version)))
            })
            .await
    }

    async fn unregister_model(
        &self,
        request: Request<UnregisterModelRequest>,
    ) -> Result<Response<ManagementResponse>, Status> {
        let models = self.door.models.clone();
        let allowed = self.model_api();
        self.door
            .call(method::UNREGISTER, request, |request| async move {
                allowed?;
                let target = target(&request.model_name, &request.model_version, "model_name")?;
                models.unregister(&target).await?;
                Ok(reply(messages::unregistered(&target.model)))
            })
            .await
    }
}

/// The service's registration for a RegisterModel call; `synchronous` defaults to false here
/// (proto3's false), where REST's defaults to true, as in TorchServe.
fn register_request(request: RegisterModelRequest, configured_workers: usize) -> Result<RegisterRequest, CallError> {
    if request.url.is_empty() {
        return Err(CallError::bad_request("Parameter url is required."));
    }
    let runtime = match request.runtime.as_str() {
        "" => None,
        name => Some(Runtime::parse(name).ok_or_else(|| CallError::bad_request(format!("Invalid RuntimeType value: {name}")))?),
    };
    let overrides = Overrides {
        initial_workers: Some(positive(request.initial_workers).map_or(configured_workers, |n| n as usize)),
        workers: None,
        batch_size: positive(request.batch_size).map(|n| n as usize),
        max_batch_delay: positive(request.max_batch_delay).map(std::time::Duration::from_millis),
        response_timeout: positive(request.response_timeout).map(std::time::Duration::from_secs),
        startup_timeout: None,
    };
    let non_empty = |text: String| (!text.is_empty()).then_some(text);
    Ok(RegisterRequest {
        name: non_empty(request.model_name),
        handler: non_empty(request.handler),
        runtime,
        ..RegisterRequest::from_api(request.url, overrides, request.synchronous)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto3_zeros_take_the_rest_defaults() {
        let request = RegisterModelRequest { url: "m.mar".into(), ..Default::default() };
        let registration = register_request(request, 3).unwrap();
        assert_eq!(registration.overrides.initial_workers, Some(3), "default_workers_per_model as written");
        assert_eq!((registration.name, registration.overrides.batch_size), (None, None));
        assert!(!registration.synchronous, "gRPC's default, unlike REST's");
        let named = RegisterModelRequest { url: "m.mar".into(), model_name: "n".into(), batch_size: 4, initial_workers: 2, ..Default::default() };
        let registration = register_request(named, 3).unwrap();
        assert_eq!((registration.name.as_deref(), registration.overrides.batch_size, registration.overrides.initial_workers), (Some("n"), Some(4), Some(2)));
        assert!(register_request(RegisterModelRequest::default(), 0).is_err());
        let bad = RegisterModelRequest { url: "m.mar".into(), runtime: "java".into(), ..Default::default() };
        assert!(register_request(bad, 0).is_err());
    }
}
