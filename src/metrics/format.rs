//! The text TorchServe writes for metrics: the Prometheus page as its simpleclient 0.9 writes
//! it (labels in dimension order, a trailing comma, Java's float format), and the metric log
//! lines of `ts_metrics.log` and `model_metrics.log` (`Name.Unit:value|#dims|#hostname:h,...`).

use std::fmt::Write;
use std::sync::atomic::Ordering;

use super::definitions::Kind;
use super::store::{Family, DEFAULT_BUCKETS};

/// Java's `Double.toString`, as simpleclient and TorchServe's log lines print values: `8.0`,
/// `0.25`, `1.2345678E7`, `1.0E-4`.
pub fn java_double(value: f64) -> String {
    if value.is_nan() {
        return "NaN".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    let magnitude = value.abs();
    if magnitude == 0.0 || (1e-3..1e7).contains(&magnitude) {
        let text = format!("{value}");
        return if text.contains('.') { text } else { format!("{text}.0") };
    }
    let text = format!("{value:e}");
    let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
    let mantissa = if mantissa.contains('.') { mantissa.to_string() } else { format!("{mantissa}.0") };
    format!("{mantissa}E{exponent}")
}

/// simpleclient's value text: Java's format, with `+Inf`/`-Inf`/`NaN` spelt as Prometheus does.
fn go_double(value: f64) -> String {
    match value {
        v if v == f64::INFINITY => "+Inf".into(),
        v if v == f64::NEG_INFINITY => "-Inf".into(),
        v => java_double(v),
    }
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// `{a="x",b="y",}`: every label followed by a comma, as simpleclient 0.9 writes them.
fn labels(names: &[String], values: &[String], extra: Option<(&str, &str)>) -> String {
    let mut out = String::from("{");
    for (name, value) in names.iter().zip(values) {
        let _ = write!(out, "{name}=\"{}\",", escape(value));
    }
    if let Some((name, value)) = extra {
        let _ = write!(out, "{name}=\"{value}\",");
    }
    out.push('}');
    out
}

/// One family of the Prometheus page: HELP, TYPE, and its samples.
pub fn family(out: &mut String, family: &Family) {
    let spec = &family.spec;
    let _ = writeln!(out, "# HELP {} Torchserve prometheus {} metric with unit: {}", spec.name, spec.kind.name(), spec.unit);
    let _ = writeln!(out, "# TYPE {} {}", spec.name, spec.kind.name());
    for series in family.all_series() {
        match spec.kind {
            Kind::Counter | Kind::Gauge => {
                let _ = writeln!(out, "{}{} {}", spec.name, labels(&spec.dimensions, &series.labels, None), go_double(series.value.get()));
            }
            Kind::Histogram => {
                for (bucket, bound) in series.buckets.iter().zip(DEFAULT_BUCKETS) {
                    let le = go_double(bound);
                    let _ = writeln!(
                        out,
                        "{}_bucket{} {}",
                        spec.name,
                        labels(&spec.dimensions, &series.labels, Some(("le", &le))),
                        go_double(bucket.load(Ordering::Relaxed) as f64)
                    );
                }
                let count = go_double(series.count.load(Ordering::Relaxed) as f64);
                let all = labels(&spec.dimensions, &series.labels, Some(("le", "+Inf")));
                let plain = labels(&spec.dimensions, &series.labels, None);
                let _ = writeln!(out, "{}_bucket{all} {count}", spec.name);
                let _ = writeln!(out, "{}_count{plain} {count}", spec.name);
                let _ = writeln!(out, "{}_sum{plain} {}", spec.name, go_double(series.value.get()));
            }
        }
    }
}

/// A metric log line (TorchServe's `LogMetric`): `Name.Unit:value|#dim:v,...|#hostname:h,`
/// then `requestID:<ids>,` for backend metrics, then `timestamp:<epoch seconds>`. The last
/// dimension is the hostname.
pub fn log_line(name: &str, unit: &str, value: f64, dimensions: &[(&str, &str)], hostname: &str, request_id: Option<&str>, timestamp: i64) -> String {
    let mut line = String::with_capacity(128);
    let _ = write!(line, "{name}.{unit}:{}|#", java_double(value));
    for (index, (key, value)) in dimensions.iter().enumerate() {
        if index > 0 {
            line.push(',');
        }
        let _ = write!(line, "{key}:{value}");
    }
    let _ = write!(line, "|#hostname:{hostname},");
    if let Some(ids) = request_id {
        let _ = write!(line, "requestID:{ids},");
    }
    let _ = write!(line, "timestamp:{timestamp}");
    line
}

/// A metric a Python handler printed (`[METRICS]` stripped):
/// `Name.Unit:value|#dim:v,...|#type:GAUGE|#hostname:h,<timestamp>,<request ids>`.
#[derive(Debug, Clone, PartialEq)]
pub struct HandlerMetric {
    pub name: String,
    pub unit: String,
    pub value: f64,
    pub dimensions: Vec<(String, String)>,
    pub kind: Option<Kind>,
    pub hostname: String,
    pub request_id: Option<String>,
}

impl HandlerMetric {
    /// Parses a line as TorchServe's frontend does (`Metric.parse`); `None` if it is not one.
    pub fn parse(line: &str) -> Option<Self> {
        let mut parts = line.trim().split("|#");
        let head = parts.next()?;
        let (name_unit, value) = head.split_once(':')?;
        let (name, unit) = name_unit.rsplit_once('.')?;
        let value: f64 = value.trim().parse().ok()?;
        let dimensions = parts
            .next()?
            .split(',')
            .filter_map(|pair| {
                let (key, value) = pair.split_once(':')?;
                Some((key.to_string(), value.to_string()))
            })
            .collect();
        let mut kind = None;
        let mut rest = parts.next()?;
        if let Some(type_name) = rest.strip_prefix("type:") {
            kind = Some(Kind::parse(type_name)?);
            rest = parts.next()?;
        }
        let rest = rest.strip_prefix("hostname:")?;
        let mut fields = rest.splitn(3, ',');
        let hostname = fields.next()?.to_string();
        let _timestamp = fields.next()?;
        let request_id = fields.next().map(str::to_string).filter(|ids| !ids.is_empty());
        Some(Self {
            name: name.trim().to_string(),
            unit: unit.to_string(),
            value,
            dimensions,
            kind,
            hostname,
            request_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::definitions::MetricSpec;

    #[test]
    fn values_print_as_java_prints_them() {
        assert_eq!(java_double(8.0), "8.0");
        assert_eq!(java_double(0.25), "0.25");
        assert_eq!(java_double(1234.5), "1234.5");
        assert_eq!(java_double(12345678.0), "1.2345678E7");
        assert_eq!(java_double(1e7), "1.0E7");
        assert_eq!(java_double(0.0001), "1.0E-4");
        assert_eq!(java_double(0.0), "0.0");
        assert_eq!(go_double(f64::INFINITY), "+Inf");
    }

    #[test]
    fn a_family_prints_as_simpleclient_0_9() {
        let family = Family::new(MetricSpec {
            name: "Requests2XX".into(),
            unit: "Count".into(),
            kind: Kind::Counter,
            dimensions: vec!["Level".into(), "Hostname".into()],
        });
        family.series(&["Host", "myhost"]).record(Kind::Counter, 8.0);
        let mut out = String::new();
        super::family(&mut out, &family);
        assert_eq!(
            out,
            "# HELP Requests2XX Torchserve prometheus counter metric with unit: Count\n\
             # TYPE Requests2XX counter\n\
             Requests2XX{Level=\"Host\",Hostname=\"myhost\",} 8.0\n"
        );
    }

    #[test]
    fn log_lines_read_as_torchserves() {
        assert_eq!(
            log_line("Requests2XX", "Count", 1.0, &[("Level", "Host")], "vm", None, 1795637268),
            "Requests2XX.Count:1.0|#Level:Host|#hostname:vm,timestamp:1795637268"
        );
        assert_eq!(
            log_line("HandlerTime", "ms", 1254.36, &[("ModelName", "densenet161"), ("Level", "Model")], "vm", Some("abc"), 5),
            "HandlerTime.ms:1254.36|#ModelName:densenet161,Level:Model|#hostname:vm,requestID:abc,timestamp:5"
        );
    }

    #[test]
    fn handler_metric_lines_parse_as_torchserve_parses_them() {
        let line = "PredictionTime.Milliseconds:0.02|#ModelName:echo,Level:Model|#type:GAUGE|#hostname:vm,1795651488,7c40-25d7";
        let metric = HandlerMetric::parse(line).unwrap();
        assert_eq!(metric.name, "PredictionTime");
        assert_eq!(metric.unit, "Milliseconds");
        assert_eq!(metric.value, 0.02);
        assert_eq!(metric.dimensions, vec![("ModelName".into(), "echo".into()), ("Level".into(), "Model".into())]);
        assert_eq!(metric.kind, Some(Kind::Gauge));
        assert_eq!((metric.hostname.as_str(), metric.request_id.as_deref()), ("vm", Some("7c40-25d7")));
        assert!(HandlerMetric::parse("just some output").is_none());
        assert!(HandlerMetric::parse("X.Y:notanumber|#a:b|#hostname:h,1").is_none());
    }
}
