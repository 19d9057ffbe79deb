//! What a cloud platform tells a serving container through its environment. Vertex AI starts a
//! custom container with `AIP_HTTP_PORT` (where to listen), `AIP_HEALTH_ROUTE` and
//! `AIP_PREDICT_ROUTE` (the paths it probes and predicts on). TorchServe reads none of them (Vertex's
//! prebuilt PyTorch images wrap it); tserve reads them itself, so one image serves Vertex unchanged.
//! SageMaker needs nothing here: its routes are fixed (`/ping`, `/invocations`).

use std::collections::BTreeMap;

/// The extra paths a platform asked for; `None` where it asked for none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CloudRoutes {
    /// `AIP_HEALTH_ROUTE`: answered as `/ping`.
    pub health: Option<String>,
    /// `AIP_PREDICT_ROUTE`: KServe v1 `{"instances": [...]}` to the one model, as Vertex sends it.
    pub predict: Option<String>,
}

impl CloudRoutes {
    pub fn from_environment(lookup: impl Fn(&str) -> Option<String>) -> Self {
        // A route is a path; anything else would never match a request, so it is dropped.
        let route = |name| lookup(name).map(|r| r.trim().to_string()).filter(|r| r.starts_with('/') && r.len() > 1);
        Self {
            health: route("AIP_HEALTH_ROUTE"),
            predict: route("AIP_PREDICT_ROUTE"),
        }
    }
}

/// `AIP_HTTP_PORT`: the inference listener on every interface at that port (a container's port is
/// reached from outside it), winning over the file and the command line as Vertex requires.
pub fn apply_vertex_port(props: &mut BTreeMap<String, String>, lookup: impl Fn(&str) -> Option<String>) {
    if let Some(port) = lookup("AIP_HTTP_PORT").and_then(|p| p.trim().parse::<u16>().ok()) {
        props.insert("inference_address".into(), format!("http://0.0.0.0:{port}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string())
    }

    #[test]
    fn vertex_routes_come_from_its_variables() {
        let vertex = env(&[
            ("AIP_HEALTH_ROUTE", "/v1/endpoints/1/deployedModels/2"),
            ("AIP_PREDICT_ROUTE", "/v1/endpoints/1/deployedModels/2:predict"),
        ]);
        let routes = CloudRoutes::from_environment(vertex);
        assert_eq!(routes.health.as_deref(), Some("/v1/endpoints/1/deployedModels/2"));
        assert_eq!(routes.predict.as_deref(), Some("/v1/endpoints/1/deployedModels/2:predict"));
        assert_eq!(CloudRoutes::from_environment(env(&[])), CloudRoutes::default());
        let not_paths = CloudRoutes::from_environment(env(&[("AIP_HEALTH_ROUTE", "health"), ("AIP_PREDICT_ROUTE", "/")]));
        assert_eq!(not_paths, CloudRoutes::default());
    }

    #[test]
    fn vertex_port_moves_the_inference_listener() {
        let mut props = BTreeMap::from([("inference_address".to_string(), "http://127.0.0.1:8080".to_string())]);
        apply_vertex_port(&mut props, env(&[("AIP_HTTP_PORT", "7080")]));
        assert_eq!(props["inference_address"], "http://0.0.0.0:7080");
        apply_vertex_port(&mut props, env(&[("AIP_HTTP_PORT", "not a port")]));
        assert_eq!(props["inference_address"], "http://0.0.0.0:7080", "an unreadable port changes nothing");
    }
}
