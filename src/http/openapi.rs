//! The APIs' OpenAPI 3 descriptions, served on each listener's `OPTIONS /` and
//! `/api-description`.

use actix_web::{guard, web, HttpResponse};

use super::error::method_not_allowed;

/// A listener's description routes: `OPTIONS /` and `/api-description` answer `document`; any
/// other method on `/` is 405, as in TorchServe.
pub fn description_routes(cfg: &mut web::ServiceConfig, document: fn() -> &'static str) {
    cfg.service(
        web::resource("/")
            .route(web::route().guard(guard::Options()).to(move || describe(document)))
            .route(web::route().to(method_not_allowed)),
    )
    .route("/api-description", web::route().to(move || describe(document)));
}

/// `document` as the answer.
pub async fn describe(document: fn() -> &'static str) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(document())
}

/// One model's prediction API, as TorchServe answers `OPTIONS /predictions/{model}`: its
/// predict entry points (TorchServe names the first `/prediction/{model}`, a path it does not
/// serve; this names the one it does).
pub fn model_api(model: &str) -> serde_json::Value {
    let error = serde_json::json!({
        "description": "Internal Server Error",
        "content": {"application/json": {"schema": {
            "type": "object",
            "required": ["code", "type", "message"],
            "properties": {
                "code": {"type": "integer", "description": "Error code."},
                "type": {"type": "string", "description": "Error type."},
                "message": {"type": "string", "description": "Error message."}
            }
        }}}
    });
    let entry = serde_json::json!({"post": {
        "description": format!("A predict entry point for model: {model}."),
        "operationId": model,
        "parameters": [],
        "responses": {"200": {"description": "OK"}, "500": error}
    }});
    serde_json::json!({
        "openapi": "3.0.1",
        "info": {"title": format!("RESTful API for: {model}"), "version": "1.0.0"},
        "paths": {
            format!("/predictions/{model}"): entry.clone(),
            "/v1/models/{model_name}:predict": entry,
        }
    })
}

/// The description of a listener that serves both APIs: both sets of paths.
pub fn both() -> &'static str {
    static BOTH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    BOTH.get_or_init(|| {
        let mut inference: serde_json::Value = serde_json::from_str(INFERENCE).unwrap_or_default();
        let management: serde_json::Value = serde_json::from_str(MANAGEMENT).unwrap_or_default();
        if let (Some(paths), Some(more)) = (inference["paths"].as_object_mut(), management["paths"].as_object()) {
            paths.extend(more.clone());
        }
        inference["info"]["title"] = "tserve API".into();
        serde_json::to_string_pretty(&inference).unwrap_or_default()
    })
}

pub const METRICS: &str = r##"{
  "openapi": "3.0.1",
  "info": {
    "title": "tserve Metrics API",
    "description": "TorchServe-compatible metrics API: Prometheus text format 0.0.4.",
    "version": "0.1.0"
  },
  "paths": {
    "/metrics": {
      "get": {
        "operationId": "metrics",
        "parameters": [{"in": "query", "name": "name[]", "schema": {"type": "array", "items": {"type": "string"}}, "description": "Only these metric families"}],
        "responses": {"200": {"description": "Prometheus text", "content": {"text/plain; version=0.0.4; charset=utf-8": {"schema": {"type": "string"}}}}}
      }
    }
  }
}
"##;

pub const INFERENCE: &str = r##"{
  "openapi": "3.0.1",
  "info": {
    "title": "tserve Inference API",
    "description": "TorchServe-compatible inference API: health and predictions; KServe v1 and Open Inference Protocol v2 (REST).",
    "version": "0.1.0"
  },
  "paths": {
    "/": {
      "options": {"operationId": "apiDescription", "responses": {"200": {"description": "This document"}}}
    },
    "/api-description": {
      "get": {"operationId": "apiDescriptionGet", "responses": {"200": {"description": "This document"}}}
    },
    "/ping": {
      "get": {
        "operationId": "ping",
        "description": "Healthy while every model has its minimum of ready workers.",
        "responses": {
          "200": {"description": "{\"status\": \"Healthy\"}", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}},
          "500": {"description": "{\"status\": \"Unhealthy\"}", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Health"}}}}
        }
      }
    },
    "/predictions/{model_name}": {
      "parameters": [{"in": "path", "name": "model_name", "required": true, "schema": {"type": "string"}}],
      "post": {
        "operationId": "predictions",
        "description": "Runs the model's default version on the body (or the multipart field data).",
        "requestBody": {"content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
        "responses": {
          "200": {"description": "The handler's answer"},
          "400": {"$ref": "#/components/responses/Error"},
          "404": {"$ref": "#/components/responses/Error"},
          "413": {"$ref": "#/components/responses/Error"},
          "500": {"$ref": "#/components/responses/Error"},
          "503": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/predictions/{model_name}/{model_version}": {
      "parameters": [
        {"in": "path", "name": "model_name", "required": true, "schema": {"type": "string"}},
        {"in": "path", "name": "model_version", "required": true, "schema": {"type": "string"}}
      ],
      "post": {
        "operationId": "versionPredictions",
        "requestBody": {"content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}},
        "responses": {"200": {"description": "The handler's answer"}, "404": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}}
      }
    },
    "/explanations/{model_name}": {
      "parameters": [{"in": "path", "name": "model_name", "required": true, "schema": {"type": "string"}}],
      "post": {"operationId": "explanations", "description": "A Python handler explains (the explain: True header); native models: 501.", "responses": {"200": {"description": "The handler's explanations"}, "404": {"$ref": "#/components/responses/Error"}, "501": {"$ref": "#/components/responses/Error"}}}
    },
    "/explanations/{model_name}/{model_version}": {
      "parameters": [{"in": "path", "name": "model_name", "required": true, "schema": {"type": "string"}}, {"in": "path", "name": "model_version", "required": true, "schema": {"type": "string"}}],
      "post": {"operationId": "versionExplanations", "responses": {"200": {"description": "The handler's explanations"}, "404": {"$ref": "#/components/responses/Error"}, "501": {"$ref": "#/components/responses/Error"}}}
    },
    "/v1/models/{model_name}:predict": {
      "parameters": [{"in": "path", "name": "model_name", "required": true, "schema": {"type": "string"}}],
      "post": {"operationId": "kserveV1Predict", "description": "KServe v1: {\"instances\": [...]} in, {\"predictions\": [...]} out.", "responses": {"200": {"description": "{\"predictions\": [...]}"}, "400": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "503": {"$ref": "#/components/responses/Error"}}}
    },
    "/v1/models/{model_name}:explain": {
      "parameters": [{"in": "path", "name": "model_name", "required": true, "schema": {"type": "string"}}],
      "post": {"operationId": "kserveV1Explain", "description": "A Python handler explains (the explain: True header); native models: 501.", "responses": {"200": {"description": "The handler's explanations"}, "404": {"$ref": "#/components/responses/Error"}, "501": {"$ref": "#/components/responses/Error"}}}
    },
    "/v1/models/{model_name}": {
      "parameters": [{"in": "path", "name": "model_name", "required": true, "schema": {"type": "string"}}],
      "get": {"operationId": "kserveV1Ready", "responses": {"200": {"description": "{\"name\", \"ready\": true}"}, "503": {"description": "{\"name\", \"ready\": false}"}, "404": {"$ref": "#/components/responses/Error"}}}
    },
    "/v2": {"get": {"operationId": "oipServerMetadata", "responses": {"200": {"description": "{\"name\", \"version\", \"extensions\"}"}}}},
    "/v2/health/live": {"get": {"operationId": "oipLive", "responses": {"200": {"description": "{\"live\": true}"}}}},
    "/v2/health/ready": {"get": {"operationId": "oipReady", "responses": {"200": {"description": "Every model version has a ready worker"}, "503": {"description": "Not ready"}}}},
    "/v2/models/{model_name}": {
      "parameters": [{"in": "path", "name": "model_name", "required": true, "schema": {"type": "string"}}],
      "get": {"operationId": "oipModelMetadata", "responses": {"200": {"description": "OIP model metadata"}, "404": {"$ref": "#/components/responses/OipError"}}}
    },
    "/v2/models/{model_name}/versions/{model_version}": {
      "parameters": [{"in": "path", "name": "model_name", "required": true, "schema": {"type": "string"}}, {"in": "path", "name": "model_version", "required": true, "schema": {"type": "string"}}],
      "get": {"operationId": "oipVersionMetadata", "responses": {"200": {"description": "OIP model metadata"}, "404": {"$ref": "#/components/responses/OipError"}}}
    },
    "/v2/models/{model_name}/ready": {
      "parameters": [{"in": "path", "name": "model_name", "required": true, "schema": {"type": "string"}}],
      "get": {"operationId": "oipModelReady", "responses": {"200": {"description": "{\"name\", \"ready\": true}"}, "503": {"description": "Not ready"}, "404": {"$ref": "#/components/responses/OipError"}}}
    },
    "/v2/models/{model_name}/versions/{model_version}/ready": {
      "parameters": [{"in": "path", "name": "model_name", "required": true, "schema": {"type": "string"}}, {"in": "path", "name": "model_version", "required": true, "schema": {"type": "string"}}],
      "get": {"operationId": "oipVersionReady", "responses": {"200": {"description": "{\"name\", \"ready\": true}"}, "503": {"description": "Not ready"}, "404": {"$ref": "#/components/responses/OipError"}}}
    },
    "/v2/models/{model_name}/explain": {
      "parameters": [{"in": "path", "name": "model_name", "required": true, "schema": {"type": "string"}}],
      "post": {"operationId": "oipExplain", "description": "A Python handler explains (the explain: True header); native models: 501.", "responses": {"200": {"description": "The handler's explanations"}, "404": {"$ref": "#/components/responses/OipError"}, "501": {"$ref": "#/components/responses/OipError"}}}
    },
    "/v2/models/{model_name}/infer": {
      "parameters": [{"in": "path", "name": "model_name", "required": true, "schema": {"type": "string"}}],
      "post": {"operationId": "oipInfer", "description": "OIP infer: JSON, or JSON then binary tensors (Inference-Header-Content-Length).", "responses": {"200": {"description": "OIP infer response"}, "400": {"$ref": "#/components/responses/OipError"}, "404": {"$ref": "#/components/responses/OipError"}, "503": {"$ref": "#/components/responses/OipError"}}}
    },
    "/v2/models/{model_name}/versions/{model_version}/infer": {
      "parameters": [{"in": "path", "name": "model_name", "required": true, "schema": {"type": "string"}}, {"in": "path", "name": "model_version", "required": true, "schema": {"type": "string"}}],
      "post": {"operationId": "oipVersionInfer", "responses": {"200": {"description": "OIP infer response"}, "400": {"$ref": "#/components/responses/OipError"}, "404": {"$ref": "#/components/responses/OipError"}, "503": {"$ref": "#/components/responses/OipError"}}}
    }
  },
  "components": {
    "schemas": {
      "Health": {"type": "object", "properties": {"status": {"type": "string"}}},
      "OipError": {"type": "object", "properties": {"error": {"type": "string"}}},
      "Error": {"type": "object", "properties": {"code": {"type": "integer"}, "type": {"type": "string"}, "message": {"type": "string"}}}
    },
    "responses": {
      "Error": {"description": "TorchServe error body", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
      "OipError": {"description": "OIP error body", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/OipError"}}}}
    }
  }
}
"##;

pub const MANAGEMENT: &str = r##"{
  "openapi": "3.0.1",
  "info": {
    "title": "tserve Management API",
    "description": "TorchServe-compatible management API: register, scale, describe, list, unregister and set the default version of models.",
    "version": "0.1.0"
  },
  "paths": {
    "/models": {
      "get": {
        "operationId": "listModels",
        "description": "List registered models (default versions), sorted by name.",
        "parameters": [
          {"in": "query", "name": "limit", "schema": {"type": "integer", "default": 100}},
          {"in": "query", "name": "next_page_token", "schema": {"type": "string"}}
        ],
        "responses": {"200": {"description": "A page of models", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ModelList"}}}}}
      },
      "post": {
        "operationId": "registerModel",
        "description": "Register a model archive from the model store or a URL (needs enable_model_api).",
        "parameters": [
          {"in": "query", "name": "url", "required": true, "schema": {"type": "string"}},
          {"in": "query", "name": "model_name", "schema": {"type": "string"}},
          {"in": "query", "name": "handler", "schema": {"type": "string"}},
          {"in": "query", "name": "runtime", "schema": {"type": "string", "enum": ["python", "python3", "LSP"]}},
          {"in": "query", "name": "batch_size", "schema": {"type": "integer"}},
          {"in": "query", "name": "max_batch_delay", "schema": {"type": "integer"}},
          {"in": "query", "name": "initial_workers", "schema": {"type": "integer"}},
          {"in": "query", "name": "synchronous", "schema": {"type": "boolean", "default": true}},
          {"in": "query", "name": "response_timeout", "schema": {"type": "integer"}},
          {"in": "query", "name": "startup_timeout", "schema": {"type": "integer"}}
        ],
        "responses": {
          "200": {"$ref": "#/components/responses/Status"},
          "202": {"$ref": "#/components/responses/Status"},
          "400": {"$ref": "#/components/responses/Error"},
          "404": {"$ref": "#/components/responses/Error"},
          "405": {"$ref": "#/components/responses/Error"},
          "409": {"$ref": "#/components/responses/Error"},
          "500": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/models/{model_name}": {
      "parameters": [{"in": "path", "name": "model_name", "required": true, "schema": {"type": "string"}}],
      "get": {"operationId": "describeModel", "responses": {"200": {"$ref": "#/components/responses/Describe"}, "404": {"$ref": "#/components/responses/Error"}}},
      "put": {
        "operationId": "scaleModel",
        "parameters": [
          {"in": "query", "name": "min_worker", "schema": {"type": "integer", "default": 1}},
          {"in": "query", "name": "max_worker", "schema": {"type": "integer"}},
          {"in": "query", "name": "synchronous", "schema": {"type": "boolean", "default": false}}
        ],
        "responses": {"200": {"$ref": "#/components/responses/Status"}, "202": {"$ref": "#/components/responses/Status"}, "400": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}}
      },
      "delete": {"operationId": "unregisterModel", "responses": {"200": {"$ref": "#/components/responses/Status"}, "403": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}, "405": {"$ref": "#/components/responses/Error"}}}
    },
    "/models/{model_name}/{model_version}": {
      "parameters": [
        {"in": "path", "name": "model_name", "required": true, "schema": {"type": "string"}},
        {"in": "path", "name": "model_version", "required": true, "description": "A version, or 'all' for describe", "schema": {"type": "string"}}
      ],
      "get": {"operationId": "describeModelVersion", "responses": {"200": {"$ref": "#/components/responses/Describe"}, "404": {"$ref": "#/components/responses/Error"}}},
      "put": {"operationId": "scaleModelVersion", "responses": {"200": {"$ref": "#/components/responses/Status"}, "202": {"$ref": "#/components/responses/Status"}, "404": {"$ref": "#/components/responses/Error"}}},
      "delete": {"operationId": "unregisterModelVersion", "responses": {"200": {"$ref": "#/components/responses/Status"}, "403": {"$ref": "#/components/responses/Error"}, "404": {"$ref": "#/components/responses/Error"}}}
    },
    "/models/{model_name}/{model_version}/set-default": {
      "parameters": [
        {"in": "path", "name": "model_name", "required": true, "schema": {"type": "string"}},
        {"in": "path", "name": "model_version", "required": true, "schema": {"type": "string"}}
      ],
      "put": {"operationId": "setDefault", "responses": {"200": {"$ref": "#/components/responses/Status"}, "404": {"$ref": "#/components/responses/Error"}}}
    },
    "/v1/models/{model_name}": {
      "parameters": [{"in": "path", "name": "model_name", "required": true, "schema": {"type": "string"}}],
      "get": {"operationId": "kserveReadiness", "responses": {"200": {"description": "{\"name\", \"ready\"}"}, "404": {"$ref": "#/components/responses/Error"}}}
    }
  },
  "components": {
    "schemas": {
      "Status": {"type": "object", "properties": {"status": {"type": "string"}}},
      "Error": {"type": "object", "properties": {"code": {"type": "integer"}, "type": {"type": "string"}, "message": {"type": "string"}}},
      "ModelList": {"type": "object", "properties": {"nextPageToken": {"type": "string"}, "models": {"type": "array", "items": {"type": "object", "properties": {"modelName": {"type": "string"}, "modelUrl": {"type": "string"}}}}}}
    },
    "responses": {
      "Status": {"description": "Outcome", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Status"}}}},
      "Error": {"description": "TorchServe error body", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
      "Describe": {"description": "An array with one object per model version", "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}}
    }
  }
}
"##;

#[cfg(test)]
mod tests {
    #[test]
    fn is_valid_json() {
        let doc: serde_json::Value = serde_json::from_str(super::MANAGEMENT).unwrap();
        assert_eq!(doc["openapi"], "3.0.1");
        assert!(doc["paths"]["/models"]["post"].is_object());
        let doc: serde_json::Value = serde_json::from_str(super::INFERENCE).unwrap();
        assert!(doc["paths"]["/predictions/{model_name}"]["post"].is_object());
        assert!(doc["paths"]["/v2/models/{model_name}/infer"]["post"].is_object());
        assert!(doc["paths"]["/explanations/{model_name}"]["post"].is_object());
        assert!(doc["paths"]["/v1/models/{model_name}:predict"]["post"].is_object());
    }
}
