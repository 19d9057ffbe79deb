//! TorchServe's metrics as values: a family per metric (its definition) holding one series per
//! set of dimension values. Counters and gauges are one `f64` each, histograms Prometheus'
//! cumulative buckets; every update is an atomic operation, so callers that hold a series handle
//! (as each model holds its own) take no lock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use super::definitions::{Kind, MetricSpec};

/// Prometheus simpleclient's default buckets, which TorchServe's histograms use.
pub const DEFAULT_BUCKETS: [f64; 14] = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];

/// An `f64` updated atomically.
#[derive(Debug, Default)]
pub struct AtomicF64(AtomicU64);

impl AtomicF64 {
    pub fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }

    pub fn set(&self, value: f64) {
        self.0.store(value.to_bits(), Ordering::Relaxed);
    }

    pub fn add(&self, value: f64) {
        let _ = self.0.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
            Some((f64::from_bits(bits) + value).to_bits())
        });
    }
}

/// One series: its dimension values, in the family's dimension order, and its value.
#[derive(Debug)]
pub struct Series {
    pub labels: Vec<String>,
    /// A counter's total or a gauge's last value; a histogram's sum.
    pub value: AtomicF64,
    /// A histogram's cumulative bucket counts (empty for counters and gauges).
    pub buckets: Vec<AtomicU64>,
    /// A histogram's observation count.
    pub count: AtomicU64,
    /// Recorded at least once: only such series are shown, as simpleclient shows only the label
    /// sets it has seen (series are made ahead of use, so requests need no lock).
    pub touched: AtomicBool,
}

impl Series {
    /// Applies one reading as the family's kind wants: counters add, gauges set, histograms
    /// observe.
    pub fn record(&self, kind: Kind, value: f64) {
        if !self.touched.load(Ordering::Relaxed) {
            self.touched.store(true, Ordering::Relaxed);
        }
        match kind {
            Kind::Counter => self.value.add(value),
            Kind::Gauge => self.value.set(value),
            Kind::Histogram => {
                self.value.add(value);
                self.count.fetch_add(1, Ordering::Relaxed);
                for (bucket, bound) in self.buckets.iter().zip(DEFAULT_BUCKETS) {
                    if value <= bound {
                        bucket.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
    }
}

/// A metric and its series.
#[derive(Debug)]
pub struct Family {
    pub spec: MetricSpec,
    series: RwLock<Vec<Arc<Series>>>,
}

impl Family {
    pub fn new(spec: MetricSpec) -> Self {
        Self {
            spec,
            series: RwLock::new(Vec::new()),
        }
    }

    /// The series for these dimension values, made on first use.
    pub fn series(&self, labels: &[&str]) -> Arc<Series> {
        let found = |series: &[Arc<Series>]| {
            series
                .iter()
                .find(|s| s.labels.iter().map(String::as_str).eq(labels.iter().copied()))
                .cloned()
        };
        if let Some(series) = found(&self.series.read().unwrap_or_else(PoisonError::into_inner)) {
            return series;
        }
        let mut all = self.series.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(series) = found(&all) {
            return series;
        }
        let buckets = match self.spec.kind {
            Kind::Histogram => DEFAULT_BUCKETS.iter().map(|_| AtomicU64::new(0)).collect(),
            _ => Vec::new(),
        };
        let series = Arc::new(Series {
            labels: labels.iter().map(|l| l.to_string()).collect(),
            value: AtomicF64::default(),
            buckets,
            count: AtomicU64::new(0),
            touched: AtomicBool::new(false),
        });
        all.push(series.clone());
        series
    }

    /// The series recorded at least once.
    pub fn all_series(&self) -> Vec<Arc<Series>> {
        let series = self.series.read().unwrap_or_else(PoisonError::into_inner);
        series.iter().filter(|s| s.touched.load(Ordering::Relaxed)).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn family(kind: Kind) -> Family {
        Family::new(MetricSpec {
            name: "m".into(),
            unit: "Count".into(),
            kind,
            dimensions: vec!["Level".into(), "Hostname".into()],
        })
    }

    #[test]
    fn counters_add_gauges_set_histograms_observe() {
        let counter = family(Kind::Counter);
        counter.series(&["Host", "h"]).record(Kind::Counter, 1.0);
        counter.series(&["Host", "h"]).record(Kind::Counter, 2.5);
        assert_eq!(counter.series(&["Host", "h"]).value.get(), 3.5);
        assert_eq!(counter.all_series().len(), 1, "the same labels are the same series");

        let gauge = family(Kind::Gauge);
        gauge.series(&["Host", "h"]).record(Kind::Gauge, 7.0);
        gauge.series(&["Host", "h"]).record(Kind::Gauge, 2.0);
        assert_eq!(gauge.series(&["Host", "h"]).value.get(), 2.0);

        let histogram = family(Kind::Histogram);
        let series = histogram.series(&["Host", "h"]);
        series.record(Kind::Histogram, 0.02);
        series.record(Kind::Histogram, 3.0);
        assert_eq!(series.count.load(Ordering::Relaxed), 2);
        assert_eq!(series.buckets[1].load(Ordering::Relaxed), 0, "≤ 0.01");
        assert_eq!(series.buckets[2].load(Ordering::Relaxed), 1, "≤ 0.025");
        assert_eq!(series.buckets[13].load(Ordering::Relaxed), 2, "≤ 10");
        assert!((series.value.get() - 3.02).abs() < 1e-12);
    }
}
