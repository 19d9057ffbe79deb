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
    JavaDouble(value).to_string()
}

/// [`java_double`] written where it is displayed: a metric line formats it without a
/// temporary string in the common range.
pub struct JavaDouble(pub f64);

impl std::fmt::Display for JavaDouble {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = self.0;
        if value.is_nan() {
            return out.write_str("NaN");
        }
        if value.is_infinite() {
            return out.write_str(if value > 0.0 { "Infinity" } else { "-Infinity" });
        }
        let magnitude = value.abs();
        if magnitude == 0.0 || (1e-3..1e7).contains(&magnitude) {
            // Rust prints whole numbers without a fraction ("8"); Java always has one ("8.0").
            return if value.fract() == 0.0 { write!(out, "{value}.0") } else { write!(out, "{value}") };
        }
        let text = format!("{value:e}");
        let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
        let fraction = if mantissa.contains('.') { "" } else { ".0" };
        write!(out, "{mantissa}{fraction}E{exponent}")
    }
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

/// One series' metric log lines (TorchServe's `LogMetric`): `Name.Unit:value|#dim:v,...|#hostname:h,`
/// then `requestID:<ids>,` for backend metrics, then `timestamp:<epoch seconds>`. What does not
/// change between readings is written once, here.
#[derive(Debug, Clone)]
pub struct LogSeries {
    /// `Name.Unit:`
    head: String,
    /// `|#dim:v,...|#hostname:h,`
    tail: String,
}

impl LogSeries {
    /// The series of `dimensions` (the hostname last, apart).
    pub fn new(name: &str, unit: &str, dimensions: &[(&str, &str)], hostname: &str) -> Self {
        let mut tail = String::from("|#");
        for (index, (key, value)) in dimensions.iter().enumerate() {
            if index > 0 {
                tail.push(',');
            }
            let _ = write!(tail, "{key}:{value}");
        }
        let _ = write!(tail, "|#hostname:{hostname},");
        Self {
            head: format!("{name}.{unit}:"),
            tail,
        }
    }

    /// One reading's line, formatted where it is written (no string of its own).
    pub fn line<'a>(&'a self, value: f64, request_id: Option<&'a str>, timestamp: i64) -> LogLine<'a> {
        LogLine {
            series: self,
            value,
            request_id,
            timestamp,
        }
    }
}

/// A reading of a [`LogSeries`], as text when displayed.
pub struct LogLine<'a> {
    series: &'a LogSeries,
    value: f64,
    request_id: Option<&'a str>,
    timestamp: i64,
}

impl std::fmt::Display for LogLine<'_> {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let LogSeries { head, tail } = self.series;
        write!(out, "{head}{}{tail}", JavaDouble(self.value))?;
        if let Some(ids) = self.request_id {
            write!(out, "requestID:{ids},")?;
        }
        write!(out, "timestamp:{}", self.timestamp)
    }
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
        assert_eq!(java_double(-0.0), "-0.0");
        assert_eq!(java_double(-3.0), "-3.0");
        assert_eq!(java_double(0.001), "0.001");
        assert_eq!(java_double(-2.5e-9), "-2.5E-9");
        assert_eq!(java_double(f64::NAN), "NaN");
        assert_eq!(java_double(f64::NEG_INFINITY), "-Infinity");
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
        let requests = LogSeries::new("Requests2XX", "Count", &[("Level", "Host")], "vm");
        assert_eq!(
            requests.line(1.0, None, 1795637268).to_string(),
            "Requests2XX.Count:1.0|#Level:Host|#hostname:vm,timestamp:1795637268"
        );
        let handler = LogSeries::new("HandlerTime", "ms", &[("ModelName", "densenet161"), ("Level", "Model")], "vm");
        assert_eq!(
            handler.line(1254.36, Some("abc"), 5).to_string(),
            "HandlerTime.ms:1254.36|#ModelName:densenet161,Level:Model|#hostname:vm,requestID:abc,timestamp:5"
        );
        assert_eq!(
            handler.line(12345678.0, None, 6).to_string(),
            "HandlerTime.ms:1.2345678E7|#ModelName:densenet161,Level:Model|#hostname:vm,timestamp:6"
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
