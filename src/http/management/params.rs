//! The management API's parameters, typed. TorchServe reads them from the query string (or, for
//! register, from a JSON body); the first value of a repeated key wins, and a number that does
//! not parse counts as absent, falling back to the default, as in TorchServe.

use std::collections::HashMap;
use std::time::Duration;

use actix_web::HttpRequest;
use serde_json::Value;

use crate::archive::Runtime;
use crate::http::ApiError;
use crate::service::RegisterRequest;
use crate::settings::Overrides;

/// Raw parameters: key → first value.
pub struct Params(HashMap<String, String>);

impl Params {
    pub fn from_query(request: &HttpRequest) -> Self {
        let pairs = actix_web::web::Query::<Vec<(String, String)>>::from_query(request.query_string())
            .map(actix_web::web::Query::into_inner)
            .unwrap_or_default();
        let mut map = HashMap::new();
        for (key, value) in pairs {
            map.entry(key).or_insert(value);
        }
        Self(map)
    }

    /// A management call's parameters: its JSON body's keys when it sends
    /// `application/json` (as TorchServe's register calls may), else its query string.
    pub async fn from_request(
        request: &HttpRequest,
        body: actix_web::web::Payload,
        limits: crate::http::payload::BodyLimits,
    ) -> Result<Self, ApiError> {
        let is_json = request
            .headers()
            .get(actix_web::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        match is_json {
            true => Self::from_json(&crate::http::payload::read_body(request, body, limits).await?),
            false => Ok(Self::from_query(request)),
        }
    }

    pub fn from_json(body: &[u8]) -> Result<Self, ApiError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("Invalid JSON body: {e}")))?;
        let Value::Object(object) = value else {
            return Err(ApiError::BadRequest("Invalid JSON body: expected an object".into()));
        };
        Ok(Self(
            object
                .into_iter()
                .map(|(key, value)| {
                    let text = match value {
                        Value::String(s) => s,
                        other => other.to_string(),
                    };
                    (key, text)
                })
                .collect(),
        ))
    }

    pub fn text(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// A number above 0, or unset.
    pub fn positive(&self, key: &str) -> Option<u64> {
        self.int(key).filter(|&v| v > 0).map(|v| v as u64)
    }

    fn int(&self, key: &str) -> Option<i64> {
        self.text(key).and_then(|v| v.trim().parse().ok())
    }

    /// Java's `Boolean.parseBoolean`: only "true", in any case, is true.
    fn boolean(&self, key: &str) -> Option<bool> {
        self.text(key).map(|v| v.eq_ignore_ascii_case("true"))
    }
}

/// `POST /models`.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisterParams {
    pub url: String,
    pub model_name: Option<String>,
    pub handler: Option<String>,
    pub runtime: Option<Runtime>,
    pub batch_size: Option<usize>,
    pub max_batch_delay: Option<Duration>,
    /// Absent: the configured `default_workers_per_model` as written (0 unless set).
    pub initial_workers: Option<usize>,
    /// Default true (TorchServe's code; its docs say false).
    pub synchronous: bool,
    pub response_timeout: Option<Duration>,
    /// Zero is kept: the workers then cannot start, as in TorchServe.
    pub startup_timeout: Option<Duration>,
}

impl RegisterParams {
    pub fn parse(params: &Params) -> Result<Self, ApiError> {
        let url = params
            .text("url")
            .ok_or_else(|| ApiError::BadRequest("Parameter url is required.".into()))?
            .to_string();
        let runtime = match params.text("runtime") {
            Some(name) => Some(
                Runtime::parse(name).ok_or_else(|| ApiError::BadRequest(format!("Invalid RuntimeType value: {name}")))?,
            ),
            None => None,
        };
        let positive = |key: &str| params.int(key).filter(|&v| v > 0);
        let non_negative = |key: &str| params.int(key).filter(|&v| v >= 0);
        Ok(Self {
            url,
            model_name: params.text("model_name").filter(|n| !n.is_empty()).map(String::from),
            handler: params.text("handler").filter(|h| !h.is_empty()).map(String::from),
            runtime,
            batch_size: positive("batch_size").map(|n| n as usize),
            max_batch_delay: non_negative("max_batch_delay").map(|ms| Duration::from_millis(ms as u64)),
            initial_workers: params.int("initial_workers").map(|n| n.max(0) as usize),
            synchronous: params.boolean("synchronous").unwrap_or(true),
            response_timeout: positive("response_timeout").map(|s| Duration::from_secs(s as u64)),
            startup_timeout: non_negative("startup_timeout").map(|s| Duration::from_secs(s as u64)),
        })
    }

    /// The service's request; `configured_workers` is `default_workers_per_model` as written.
    pub fn into_request(self, configured_workers: usize) -> RegisterRequest {
        let overrides = Overrides {
            initial_workers: Some(self.initial_workers.unwrap_or(configured_workers)),
            workers: None,
            batch_size: self.batch_size,
            max_batch_delay: self.max_batch_delay,
            response_timeout: self.response_timeout,
            startup_timeout: self.startup_timeout,
        };
        RegisterRequest {
            name: self.model_name,
            handler: self.handler,
            runtime: self.runtime,
            ..RegisterRequest::from_api(self.url, overrides, self.synchronous)
        }
    }
}

/// `PUT /models/{model}[/{version}]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleParams {
    /// Default 1.
    pub min_worker: i64,
    /// Default: `min_worker`.
    pub max_worker: Option<i64>,
    /// Used when the path names no version.
    pub model_version: Option<String>,
    /// Default false.
    pub synchronous: bool,
}

impl ScaleParams {
    pub fn parse(params: &Params) -> Self {
        Self {
            min_worker: params.int("min_worker").unwrap_or(1),
            max_worker: params.int("max_worker"),
            model_version: params.text("model_version").map(String::from),
            synchronous: params.boolean("synchronous").unwrap_or(false),
        }
    }
}

/// `GET /models`: TorchServe's paging, `limit` 1..=100 (else 100) and `next_page_token` an
/// offset (negative: 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListParams {
    pub limit: usize,
    pub start: usize,
}

impl ListParams {
    pub fn parse(params: &Params) -> Self {
        Self {
            limit: params.int("limit").filter(|l| (0..=100).contains(l)).unwrap_or(100) as usize,
            start: params.int("next_page_token").unwrap_or(0).max(0) as usize,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Params {
        Params(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn register_parameters_as_torchserve_reads_them() {
        let parsed = RegisterParams::parse(&params(&[
            ("url", "m.mar"),
            ("batch_size", "nan"),
            ("max_batch_delay", "0"),
            ("startup_timeout", "0"),
            ("response_timeout", "-1"),
            ("synchronous", "TRUE"),
            ("runtime", "python3"),
        ]))
        .unwrap();
        assert_eq!(parsed.batch_size, None, "not a number: the default");
        assert_eq!(parsed.max_batch_delay, Some(Duration::ZERO));
        assert_eq!(parsed.startup_timeout, Some(Duration::ZERO));
        assert_eq!(parsed.response_timeout, None);
        assert!(parsed.synchronous);
        assert_eq!(parsed.runtime, Some(Runtime::Python3));
        assert!(RegisterParams::parse(&params(&[("url", "m.mar")])).unwrap().synchronous);
        let request = parsed.into_request(0);
        assert_eq!(request.overrides.initial_workers, Some(0));
    }

    #[test]
    fn register_needs_a_url_and_a_known_runtime() {
        let err = RegisterParams::parse(&params(&[])).unwrap_err();
        assert_eq!(err.to_string(), "Parameter url is required.");
        let err = RegisterParams::parse(&params(&[("url", "m.mar"), ("runtime", "java")])).unwrap_err();
        assert_eq!(err.to_string(), "Invalid RuntimeType value: java");
    }

    #[test]
    fn json_bodies_carry_the_same_keys() {
        let parsed = Params::from_json(br#"{"url": "m.mar", "initial_workers": 2, "synchronous": false}"#).unwrap();
        let parsed = RegisterParams::parse(&parsed).unwrap();
        assert_eq!((parsed.initial_workers, parsed.synchronous), (Some(2), false));
        assert!(Params::from_json(b"[1]").is_err());
    }

    #[test]
    fn scale_and_list_defaults() {
        assert_eq!(
            ScaleParams::parse(&params(&[("max_worker", "x")])),
            ScaleParams { min_worker: 1, max_worker: None, model_version: None, synchronous: false }
        );
        assert_eq!(ListParams::parse(&params(&[("limit", "500"), ("next_page_token", "-3")])), ListParams {
            limit: 100,
            start: 0
        });
    }
}
