//! [`ForgeRecorder`]: the `metrics` crate's facade, recording into the node's [`Metrics`].
//!
//! Application code uses the standard macros (`metrics::counter!("emails_sent_total",
//! "provider" => "ses").increment(1)`); each value lands in the metrics of the node whose span
//! it was recorded in (a job's, a request's), or the process's oldest node, and so in
//! `/metrics` and `forge_metrics` with Forge's own series. Histograms use
//! [`DURATION_BUCKETS`] (seconds).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use metrics::{Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata, SharedString, Unit};

use super::layer::current_metrics;
use super::metrics::Labels;
use super::{DURATION_BUCKETS, Metrics};

/// What the application's metrics are described as in `/metrics` when it gave no description.
const NO_HELP: &str = "Recorded by the application.";

/// The `metrics` recorder Forge installs (once per process, when a node starts and no other
/// recorder is set).
#[derive(Debug, Default)]
pub struct ForgeRecorder {
    _private: (),
}

impl ForgeRecorder {
    /// Installs the recorder as the process's global one; `false` if one was already set.
    pub fn install() -> bool {
        metrics::set_global_recorder(ForgeRecorder::default()).is_ok()
    }
}

/// Names and label keys become `&'static str` once each: series are few and live for the
/// process.
fn intern(text: &str) -> &'static str {
    static STRINGS: Mutex<Option<HashSet<&'static str>>> = Mutex::new(None);
    let mut strings = STRINGS.lock().unwrap_or_else(PoisonError::into_inner);
    let set = strings.get_or_insert_with(HashSet::new);
    if let Some(known) = set.get(text) {
        return known;
    }
    let leaked: &'static str = Box::leak(text.to_owned().into_boxed_str());
    set.insert(leaked);
    leaked
}

#[derive(Debug)]
struct Series {
    name: &'static str,
    labels: Labels,
}

impl Series {
    fn of(key: &Key) -> Arc<Self> {
        Arc::new(Self {
            name: intern(key.name()),
            labels: key.labels().map(|l| (intern(l.key()), l.value().to_owned())).collect(),
        })
    }

    fn with<R>(&self, f: impl FnOnce(&Metrics, &[(&'static str, &str)]) -> R) -> Option<R> {
        let metrics = current_metrics()?;
        let labels: Vec<(&'static str, &str)> = self.labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Some(f(&metrics, &labels))
    }
}

impl CounterFn for Series {
    fn increment(&self, value: u64) {
        self.with(|m, labels| m.count(self.name, NO_HELP, labels, value));
    }

    fn absolute(&self, value: u64) {
        self.with(|m, labels| {
            let current = m.counter(self.name, labels);
            if value > current {
                m.count(self.name, NO_HELP, labels, value - current);
            }
        });
    }
}

impl GaugeFn for Series {
    fn increment(&self, value: f64) {
        self.with(|m, labels| m.gauge_add(self.name, NO_HELP, labels, value));
    }

    fn decrement(&self, value: f64) {
        self.with(|m, labels| m.gauge_add(self.name, NO_HELP, labels, -value));
    }

    fn set(&self, value: f64) {
        self.with(|m, labels| m.gauge(self.name, NO_HELP, labels, value));
    }
}

impl HistogramFn for Series {
    fn record(&self, value: f64) {
        self.with(|m, labels| m.observe(self.name, NO_HELP, DURATION_BUCKETS, labels, value));
    }
}

impl metrics::Recorder for ForgeRecorder {
    fn describe_counter(&self, _key: KeyName, _unit: Option<Unit>, _description: SharedString) {}

    fn describe_gauge(&self, _key: KeyName, _unit: Option<Unit>, _description: SharedString) {}

    fn describe_histogram(&self, _key: KeyName, _unit: Option<Unit>, _description: SharedString) {}

    fn register_counter(&self, key: &Key, _metadata: &Metadata<'_>) -> Counter {
        Counter::from_arc(Series::of(key))
    }

    fn register_gauge(&self, key: &Key, _metadata: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(Series::of(key))
    }

    fn register_histogram(&self, key: &Key, _metadata: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(Series::of(key))
    }
}
