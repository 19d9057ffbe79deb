//! What one prediction carries through the server, in TorchServe's model: the request as every
//! backend sees it (its id, the HTTP headers, named parameters) and a backend's answer (a body
//! with its status, content type and headers). HTTP builds the one and sends the other; the
//! actors carry both; handlers read the one and make the other.

use bytes::Bytes;
use serde_json::Value;

use crate::tensor::TensorData;

/// One named input: a multipart form field, or the whole raw body named `body`.
#[derive(Debug, Clone)]
pub struct Parameter {
    pub name: String,
    pub content_type: Option<String>,
    pub value: Bytes,
}

/// A prediction request.
#[derive(Debug, Clone, Default)]
pub struct InferenceRequest {
    /// The id TorchServe calls `requestID`; also the response's `x-request-id`.
    pub id: String,
    /// The HTTP request's headers, names in lower case.
    pub headers: Vec<(String, String)>,
    pub parameters: Vec<Parameter>,
    /// Typed input tensors (OIP infer, KServe v1 instances) for a native model: they become
    /// its `forward` arguments as they are, and the answer is [`Body::Tensors`].
    pub tensors: Option<Vec<TensorData>>,
}

impl InferenceRequest {
    /// A request whose raw body is its one parameter, `body`, as TorchServe makes of any
    /// request that is not a form.
    pub fn from_body(body: Bytes) -> Self {
        Self {
            id: String::new(),
            headers: Vec::new(),
            parameters: vec![Parameter {
                name: "body".into(),
                content_type: None,
                value: body,
            }],
            tensors: None,
        }
    }

    /// The input TorchServe's built-in handlers read: `data`, else `body`, else the first
    /// parameter; empty when there is none.
    pub fn input(&self) -> &[u8] {
        let named = |name: &str| self.parameters.iter().find(|p| p.name == name);
        named("data")
            .or_else(|| named("body"))
            .or_else(|| self.parameters.first())
            .map_or(&[], |parameter| parameter.value.as_ref())
    }
}

/// A backend's answer body.
#[derive(Debug, Clone)]
pub enum Body {
    /// A JSON value, sent as TorchServe's handlers send one: `json.dumps(value, indent=2)`.
    Json(Value),
    /// Bytes sent as they are.
    Raw(Bytes),
    /// A native model's output tensors, for a request that gave it tensors.
    Tensors(Vec<TensorData>),
}

impl Body {
    /// The bytes a client gets, on every front door that answers with the handler's body
    /// (REST `/predictions`, TorchServe's gRPC `Predictions`): JSON as TorchServe's handlers
    /// write it, raw bytes as they are, output tensors as JSON by name, nested.
    pub fn into_bytes(self) -> Bytes {
        match self {
            Body::Json(value) => Bytes::from(pretty_json(&value)),
            Body::Raw(bytes) => bytes,
            Body::Tensors(tensors) => {
                let outputs: serde_json::Map<String, Value> = tensors
                    .iter()
                    .map(|t| (t.name.clone(), t.to_nested_json().unwrap_or_default()))
                    .collect();
                Bytes::from(pretty_json(&outputs))
            }
        }
    }
}

impl Prediction {
    /// A streamed answer's parts as one answer, for a client that takes answers whole: the
    /// first part's status, content type and headers, every part's body in order.
    pub fn joined(parts: Vec<Prediction>) -> Prediction {
        let mut parts = parts.into_iter();
        let Some(first) = parts.next() else {
            return Prediction::json(Value::Null);
        };
        let Prediction { body, status, content_type, headers } = first;
        let mut joined = body.into_bytes().to_vec();
        for part in parts {
            joined.extend_from_slice(&part.body.into_bytes());
        }
        Prediction {
            body: Body::Raw(Bytes::from(joined)),
            status,
            content_type,
            headers,
        }
    }
}

/// JSON as `json.dumps(value, indent=2)` writes it, and a newline.
pub fn pretty_json(value: &impl serde::Serialize) -> Vec<u8> {
    let mut text = Vec::with_capacity(128);
    if serde_json::to_writer_pretty(&mut text, value).is_err() {
        text = b"null".to_vec();
    }
    text.push(b'\n');
    text
}

/// A backend's answer to one request.
#[derive(Debug, Clone)]
pub struct Prediction {
    pub body: Body,
    /// 200 unless the handler set another.
    pub status: u16,
    /// The handler's content type; JSON answers default to `application/json`.
    pub content_type: Option<String>,
    pub headers: Vec<(String, String)>,
}

impl Prediction {
    pub fn json(value: Value) -> Self {
        Self::of(Body::Json(value))
    }

    pub fn tensors(tensors: Vec<TensorData>) -> Self {
        Self::of(Body::Tensors(tensors))
    }

    fn of(body: Body) -> Self {
        Self {
            body,
            status: 200,
            content_type: None,
            headers: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parameter(name: &str, value: &'static [u8]) -> Parameter {
        Parameter {
            name: name.into(),
            content_type: None,
            value: Bytes::from_static(value),
        }
    }

    #[test]
    fn input_is_data_then_body_then_the_first_field() {
        let mut request = InferenceRequest {
            parameters: vec![parameter("other", b"o"), parameter("body", b"b"), parameter("data", b"d")],
            ..Default::default()
        };
        assert_eq!(request.input(), b"d");
        request.parameters.pop();
        assert_eq!(request.input(), b"b");
        request.parameters.pop();
        assert_eq!(request.input(), b"o");
        request.parameters.clear();
        assert_eq!(request.input(), b"");
    }
}
