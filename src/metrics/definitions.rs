//! Which metrics exist: TorchServe's `metrics.yaml` (its default list, or the file
//! `metrics_config` names), each with its type, unit and dimension names.

use serde::Deserialize;

/// TorchServe 0.12's default metrics list.
pub const DEFAULT_YAML: &str = include_str!("metrics.yaml");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }

    /// A `[METRICS]` line's `#type:` (COUNTER, GAUGE, HISTOGRAM).
    pub fn parse(name: &str) -> Option<Self> {
        match name.trim().to_ascii_lowercase().as_str() {
            "counter" => Some(Kind::Counter),
            "gauge" => Some(Kind::Gauge),
            "histogram" => Some(Kind::Histogram),
            _ => None,
        }
    }
}

/// One metric's definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricSpec {
    pub name: String,
    pub unit: String,
    pub kind: Kind,
    /// Dimension names, in order (the label order of the Prometheus page).
    pub dimensions: Vec<String>,
}

/// The frontend (`ts_metrics`) and backend (`model_metrics`) lists.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetricsConfig {
    pub frontend: Vec<MetricSpec>,
    pub backend: Vec<MetricSpec>,
}

#[derive(Deserialize, Default)]
struct File {
    #[serde(default)]
    ts_metrics: Option<Section>,
    #[serde(default)]
    model_metrics: Option<Section>,
}

#[derive(Deserialize, Default)]
struct Section {
    #[serde(default)]
    counter: Option<Vec<Entry>>,
    #[serde(default)]
    gauge: Option<Vec<Entry>>,
    #[serde(default)]
    histogram: Option<Vec<Entry>>,
}

#[derive(Deserialize)]
struct Entry {
    name: String,
    unit: String,
    #[serde(default)]
    dimensions: Vec<String>,
}

impl MetricsConfig {
    pub fn parse(yaml: &str) -> Result<Self, String> {
        let file: File = serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())?;
        Ok(Self {
            frontend: specs(file.ts_metrics),
            backend: specs(file.model_metrics),
        })
    }

    pub fn default_list() -> Self {
        Self::parse(DEFAULT_YAML).unwrap_or_default()
    }
}

fn specs(section: Option<Section>) -> Vec<MetricSpec> {
    let Some(section) = section else { return Vec::new() };
    let lists = [
        (Kind::Counter, section.counter),
        (Kind::Gauge, section.gauge),
        (Kind::Histogram, section.histogram),
    ];
    lists
        .into_iter()
        .flat_map(|(kind, entries)| {
            entries.unwrap_or_default().into_iter().map(move |entry| MetricSpec {
                name: entry.name,
                unit: entry.unit,
                kind,
                dimensions: entry.dimensions,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_list_is_torchserves() {
        let config = MetricsConfig::default_list();
        let names: Vec<&str> = config.frontend.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(&names[..6], ["Requests2XX", "Requests4XX", "Requests5XX", "ts_inference_requests_total", "ts_inference_latency_microseconds", "ts_queue_latency_microseconds"]);
        assert_eq!(config.frontend.len(), 19);
        let requests = &config.frontend[0];
        assert_eq!((requests.kind, requests.unit.as_str()), (Kind::Counter, "Count"));
        assert_eq!(requests.dimensions, ["Level", "Hostname"], "anchors resolved, in order");
        let handler = &config.backend[0];
        assert_eq!((handler.name.as_str(), handler.kind, handler.dimensions.len()), ("HandlerTime", Kind::Gauge, 2));
    }

    #[test]
    fn a_custom_list_and_a_broken_one() {
        let config = MetricsConfig::parse("model_metrics:\n  histogram:\n    - name: Tokens\n      unit: Count\n      dimensions: [ModelName]\n").unwrap();
        assert!(config.frontend.is_empty());
        assert_eq!(config.backend[0].kind, Kind::Histogram);
        assert!(MetricsConfig::parse("ts_metrics: [").is_err());
    }
}
