//! TorchServe's answers to management operations, in one place for both front doors: REST sends
//! each text as `{"status": ...}`, gRPC as `ManagementResponse.msg`; the model list is the same
//! JSON page on both.

use serde_json::{json, Map, Value};

use super::{ModelSummary, Registered, Scaled, Target};

/// What a registration says.
pub fn registered(outcome: &Registered) -> String {
    match outcome {
        Registered::NoWorkers { name, version } => format!(
            "Model \"{name}\" Version: {version} registered with 0 initial workers. Use scale workers API to add workers for the model."
        ),
        Registered::Loading(_) => "Processing worker updates...".into(),
        Registered::Ready(registration) => format!(
            "Model \"{}\" Version: {} registered with {} initial workers",
            registration.name, registration.version, registration.workers
        ),
    }
}

/// What a scale call says; `min_workers` is what was asked for.
pub fn scaled(outcome: &Scaled, min_workers: i64, target: &Target) -> String {
    match outcome {
        Scaled::Accepted => "Processing worker updates...".into(),
        Scaled::Done => match &target.version {
            Some(version) => format!("Workers scaled to {min_workers} for model: {}, version: {version}", target.model),
            None => format!("Workers scaled to {min_workers} for model: {}", target.model),
        },
    }
}

pub fn unregistered(model: &str) -> String {
    format!("Model \"{model}\" unregistered")
}

pub fn workflow_unregistered(name: &str) -> String {
    format!("Workflow \"{name}\" unregistered")
}

pub fn default_set(model: &str, version: &str) -> String {
    format!("Default version successfully updated for model \"{model}\" to \"{version}\"")
}

/// One page of the model list, as TorchServe pages it.
pub fn model_page(models: &[ModelSummary], limit: usize, start: usize) -> Value {
    let entries: Vec<(&str, &str)> = models.iter().map(|m| (m.name.as_str(), m.url.as_str())).collect();
    page(&entries, ("models", "modelName", "modelUrl"), limit, start)
}

/// One page of the workflow list, paged as the model list.
pub fn workflow_page(workflows: &[(&str, &str)], limit: usize, start: usize) -> Value {
    page(workflows, ("workflows", "workflowName", "workflowUrl"), limit, start)
}

/// A page of `(name, url)` entries under `list` as TorchServe pages its lists: `start` is the
/// offset a `nextPageToken` names, and a token is given whenever the page did not run past the
/// end.
fn page(entries: &[(&str, &str)], (list, name_key, url_key): (&str, &str, &str), limit: usize, start: usize) -> Value {
    let start = start.min(entries.len());
    let mut end = start.saturating_add(limit);
    let next_page_token = if end > entries.len() {
        end = entries.len();
        None
    } else {
        Some(end.to_string())
    };
    let page: Vec<Value> = entries[start..end]
        .iter()
        .map(|(name, url)| json!({ name_key: name, url_key: url }))
        .collect();
    let mut body = Map::new();
    if let Some(token) = next_page_token {
        body.insert("nextPageToken".into(), Value::String(token));
    }
    body.insert(list.into(), Value::Array(page));
    Value::Object(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_carry_a_token_until_they_run_past_the_end() {
        let models: Vec<ModelSummary> = ["a", "b", "c"]
            .iter()
            .map(|n| ModelSummary { name: n.to_string(), url: format!("{n}.mar") })
            .collect();
        let first = model_page(&models, 2, 0);
        assert_eq!(first["nextPageToken"], "2");
        assert_eq!(first["models"][1], json!({"modelName": "b", "modelUrl": "b.mar"}));
        let last = model_page(&models, 2, 2);
        assert!(last.get("nextPageToken").is_none());
        assert_eq!(last["models"].as_array().unwrap().len(), 1);
        assert_eq!(model_page(&models, 5, 9)["models"], json!([]));
    }

    #[test]
    fn scale_texts_name_the_version_when_one_was_named() {
        let target = |version: Option<&str>| Target { model: "m".into(), version: version.map(String::from) };
        assert_eq!(scaled(&Scaled::Done, 2, &target(None)), "Workers scaled to 2 for model: m");
        assert_eq!(scaled(&Scaled::Done, 2, &target(Some("1.0"))), "Workers scaled to 2 for model: m, version: 1.0");
        assert_eq!(scaled(&Scaled::Accepted, 2, &target(None)), "Processing worker updates...");
    }
}
