//! [`Metrics`]: counters, gauges and histograms with labels, kept in memory, rendered as
//! Prometheus text (exposition format 0.0.4) and snapshotted for `forge_metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

/// Buckets for durations in seconds: 1 ms to 30 s.
pub const DURATION_BUCKETS: &[f64] =
    &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

pub(crate) type Labels = Vec<(&'static str, String)>;

#[derive(Debug)]
enum Family {
    Counter { help: &'static str, values: Series<u64> },
    Gauge { help: &'static str, values: Series<f64> },
    Histogram { help: &'static str, buckets: &'static [f64], values: Series<Histogram> },
}

/// A family's series, sorted by their labels (the order `render` writes them in), found by
/// binary search on borrowed labels: recording into an existing series (every request, every
/// call) neither allocates a key nor looks at every series.
#[derive(Debug)]
struct Series<V>(Vec<(Labels, V)>);

impl<V> Default for Series<V> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<V: Default> Series<V> {
    /// Where `labels` are, or would be inserted.
    fn search(&self, labels: &[(&'static str, &str)]) -> Result<usize, usize> {
        self.0.binary_search_by(|(key, _)| key.iter().map(|(k, v)| (*k, v.as_str())).cmp(labels.iter().copied()))
    }

    /// The series with `labels`, created if new.
    fn entry(&mut self, labels: &[(&'static str, &str)]) -> &mut V {
        let i = match self.search(labels) {
            Ok(i) => i,
            Err(i) => {
                self.0.insert(i, (owned(labels), V::default()));
                i
            }
        };
        &mut self.0[i].1
    }

    fn get(&self, labels: &[(&'static str, &str)]) -> Option<&V> {
        self.search(labels).ok().map(|i| &self.0[i].1)
    }

    fn iter(&self) -> impl Iterator<Item = (&Labels, &V)> {
        self.0.iter().map(|(labels, v)| (labels, v))
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

#[derive(Clone, Debug, Default)]
struct Histogram {
    /// Values per bucket: at `i`, those above bound `i - 1` and at most bound `i` (one
    /// increment per value; [`Histogram::cumulative`] adds them up for the readers).
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    /// Records `value` in the first bucket whose bound it does not exceed (none past the last
    /// bound, nor for NaN: those are only in `count`).
    fn record(&mut self, buckets: &[f64], value: f64) {
        if self.counts.len() != buckets.len() {
            self.counts = vec![0; buckets.len()];
        }
        let i = buckets.partition_point(|bound| *bound < value);
        if !value.is_nan()
            && let Some(n) = self.counts.get_mut(i)
        {
            *n += 1;
        }
        self.sum += value;
        self.count += 1;
    }

    /// The count at or below each bound, as Prometheus and `forge_metrics` want it.
    fn cumulative(&self) -> Vec<u64> {
        self.counts
            .iter()
            .scan(0, |total, n| {
                *total += n;
                Some(*total)
            })
            .collect()
    }
}

/// A node's metrics. Cheap to clone; clones share the values.
///
/// ```
/// use forge_runtime::observability::{DURATION_BUCKETS, Metrics};
///
/// let metrics = Metrics::default();
/// metrics.count("forge_demo_total", "Demo events.", &[("kind", "a")], 2);
/// metrics.observe("forge_demo_seconds", "Demo durations.", DURATION_BUCKETS, &[], 0.003);
/// let text = metrics.render();
/// assert!(text.contains("forge_demo_total{kind=\"a\"} 2"));
/// assert!(text.contains("forge_demo_seconds_bucket{le=\"0.005\"} 1"));
/// assert!(text.contains("forge_demo_seconds_count 1"));
/// ```
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    families: Arc<Mutex<Families>>,
}

impl Metrics {
    /// Adds `n` to counter `name` with `labels`.
    pub fn count(&self, name: &'static str, help: &'static str, labels: &[(&'static str, &str)], n: u64) {
        add(&mut self.families.lock().unwrap_or_else(PoisonError::into_inner), name, help, labels, n);
    }

    /// Adds one to `counter` and records `value` in `histogram` (with `buckets`), under one
    /// lock: the two metrics of an answered request or a function call.
    pub(crate) fn count_and_observe(
        &self,
        counter: (&'static str, &'static str, &[(&'static str, &str)]),
        histogram: (&'static str, &'static str, &[(&'static str, &str)]),
        buckets: &'static [f64],
        value: f64,
    ) {
        let mut families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        add(&mut families, counter.0, counter.1, counter.2, 1);
        record(&mut families, histogram.0, histogram.1, buckets, histogram.2, [value]);
    }

    /// Sets gauge `name` with `labels` to `value`.
    pub fn gauge(&self, name: &'static str, help: &'static str, labels: &[(&'static str, &str)], value: f64) {
        let mut families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        let family = families.entry(name).or_insert_with(|| Family::Gauge { help, values: Series::default() });
        if let Family::Gauge { values, .. } = family {
            *values.entry(labels) = value;
        }
    }

    /// Adds `delta` to gauge `name` with `labels` (from 0 if never set).
    pub fn gauge_add(&self, name: &'static str, help: &'static str, labels: &[(&'static str, &str)], delta: f64) {
        let mut families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        let family = families.entry(name).or_insert_with(|| Family::Gauge { help, values: Series::default() });
        if let Family::Gauge { values, .. } = family {
            *values.entry(labels) += delta;
        }
    }

    /// Forgets every series of gauge `name` (before setting the ones that still exist).
    pub fn clear_gauge(&self, name: &str) {
        let mut families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(Family::Gauge { values, .. }) = families.get_mut(name) {
            values.clear();
        }
    }

    /// Records `value` in histogram `name` with `labels` (the first call fixes the buckets).
    pub fn observe(
        &self,
        name: &'static str,
        help: &'static str,
        buckets: &'static [f64],
        labels: &[(&'static str, &str)],
        value: f64,
    ) {
        self.observe_each(name, help, buckets, labels, [value]);
    }

    /// Records each of `values` in histogram `name` with `labels`, finding the series once.
    pub fn observe_each(
        &self,
        name: &'static str,
        help: &'static str,
        buckets: &'static [f64],
        labels: &[(&'static str, &str)],
        values: impl IntoIterator<Item = f64>,
    ) {
        record(&mut self.families.lock().unwrap_or_else(PoisonError::into_inner), name, help, buckets, labels, values);
    }

    /// The value of a counter (0 if never counted).
    pub fn counter(&self, name: &str, labels: &[(&'static str, &str)]) -> u64 {
        let families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        match families.get(name) {
            Some(Family::Counter { values, .. }) => values.get(labels).copied().unwrap_or(0),
            _ => 0,
        }
    }

    /// The value of a gauge, if set.
    pub fn gauge_value(&self, name: &str, labels: &[(&'static str, &str)]) -> Option<f64> {
        let families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        match families.get(name) {
            Some(Family::Gauge { values, .. }) => values.get(labels).copied(),
            _ => None,
        }
    }

    /// Every series' current value: counters and histograms cumulative since the start.
    pub(crate) fn snapshot(&self) -> Vec<Sample> {
        let families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = Vec::new();
        for (name, family) in families.iter() {
            match family {
                Family::Counter { values, .. } => out.extend(values.iter().map(|(labels, v)| Sample {
                    name,
                    kind: SampleKind::Counter,
                    labels: labels.clone(),
                    value: *v as f64,
                    sum: 0.0,
                    bounds: &[],
                    buckets: Vec::new(),
                })),
                Family::Gauge { values, .. } => out.extend(values.iter().map(|(labels, v)| Sample {
                    name,
                    kind: SampleKind::Gauge,
                    labels: labels.clone(),
                    value: *v,
                    sum: 0.0,
                    bounds: &[],
                    buckets: Vec::new(),
                })),
                Family::Histogram { buckets, values, .. } => out.extend(values.iter().map(|(labels, h)| Sample {
                    name,
                    kind: SampleKind::Histogram,
                    labels: labels.clone(),
                    value: h.count as f64,
                    sum: h.sum,
                    bounds: buckets,
                    buckets: h.cumulative(),
                })),
            }
        }
        out
    }

    /// Every metric, as Prometheus text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let families = self.families.lock().unwrap_or_else(PoisonError::into_inner);
        for (name, family) in families.iter() {
            match family {
                Family::Counter { help, values } => {
                    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
                    for (labels, v) in values.iter() {
                        let _ = writeln!(out, "{name}{} {v}", label_text(labels, None));
                    }
                }
                Family::Gauge { help, values } => {
                    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
                    for (labels, v) in values.iter() {
                        let _ = writeln!(out, "{name}{} {v}", label_text(labels, None));
                    }
                }
                Family::Histogram { help, buckets, values } => {
                    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
                    for (labels, h) in values.iter() {
                        for (bound, n) in buckets.iter().zip(h.cumulative()) {
                            let le = bound.to_string();
                            let _ = writeln!(out, "{name}_bucket{} {n}", label_text(labels, Some(&le)));
                        }
                        let _ = writeln!(out, "{name}_bucket{} {}", label_text(labels, Some("+Inf")), h.count);
                        let _ = writeln!(out, "{name}_sum{} {}", label_text(labels, None), h.sum);
                        let _ = writeln!(out, "{name}_count{} {}", label_text(labels, None), h.count);
                    }
                }
            }
        }
        out
    }
}

/// What a series is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SampleKind {
    Counter,
    Gauge,
    Histogram,
}

impl SampleKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// One series at one moment.
#[derive(Clone, Debug)]
pub(crate) struct Sample {
    pub(crate) name: &'static str,
    pub(crate) kind: SampleKind,
    pub(crate) labels: Labels,
    /// Counter total, gauge value, or histogram count.
    pub(crate) value: f64,
    /// Histogram sum.
    pub(crate) sum: f64,
    /// Histogram upper bounds.
    pub(crate) bounds: &'static [f64],
    /// Histogram cumulative counts per bound.
    pub(crate) buckets: Vec<u64>,
}

/// Every family, by name.
type Families = BTreeMap<&'static str, Family>;

/// Adds `n` to counter `name` with `labels`.
fn add(families: &mut Families, name: &'static str, help: &'static str, labels: &[(&'static str, &str)], n: u64) {
    let family = families.entry(name).or_insert_with(|| Family::Counter { help, values: Series::default() });
    if let Family::Counter { values, .. } = family {
        *values.entry(labels) += n;
    }
}

/// Records each of `values` in histogram `name` with `labels`.
fn record(
    families: &mut Families,
    name: &'static str,
    help: &'static str,
    buckets: &'static [f64],
    labels: &[(&'static str, &str)],
    values: impl IntoIterator<Item = f64>,
) {
    let family = families.entry(name).or_insert_with(|| Family::Histogram { help, buckets, values: Series::default() });
    if let Family::Histogram { buckets, values: series_of, .. } = family {
        let h = series_of.entry(labels);
        for value in values {
            h.record(buckets, value);
        }
    }
}

fn owned(labels: &[(&'static str, &str)]) -> Labels {
    labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

fn label_text(labels: &[(&'static str, String)], le: Option<&str>) -> String {
    let mut parts: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    if parts.is_empty() { String::new() } else { format!("{{{}}}", parts.join(",")) }
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::default();
        m.count("x_total", "X.", &[("v", "a\"b\\c\nd")], 1);
        assert!(m.render().contains(r#"x_total{v="a\"b\\c\nd"} 1"#), "{}", m.render());
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        for v in [0.0005, 0.02, 3.0, 100.0] {
            m.observe("d_seconds", "D.", DURATION_BUCKETS, &[("f", "a")], v);
        }
        let text = m.render();
        assert!(text.contains(r#"d_seconds_bucket{f="a",le="0.001"} 1"#), "{text}");
        assert!(text.contains(r#"d_seconds_bucket{f="a",le="0.025"} 2"#), "{text}");
        assert!(text.contains(r#"d_seconds_bucket{f="a",le="5"} 3"#), "{text}");
        assert!(text.contains(r#"d_seconds_bucket{f="a",le="+Inf"} 4"#), "{text}");
        assert!(text.contains(r#"d_seconds_count{f="a"} 4"#), "{text}");
    }

    #[test]
    fn observing_many_values_at_once_is_observing_each() {
        let (each, many) = (Metrics::default(), Metrics::default());
        let values = [0.0005, 0.02, 3.0, 100.0];
        for v in values {
            each.observe("d_seconds", "D.", DURATION_BUCKETS, &[("f", "a")], v);
        }
        many.observe_each("d_seconds", "D.", DURATION_BUCKETS, &[("f", "a")], values);
        assert_eq!(each.render(), many.render());
        assert!(many.render().contains(r#"d_seconds_count{f="a"} 4"#), "{}", many.render());
    }

    #[test]
    fn each_bucket_counts_the_values_at_or_below_its_bound() {
        // Values on the bounds, between them, below the first, above the last, and NaN:
        // against the definition, bound by bound.
        let mut values: Vec<f64> = DURATION_BUCKETS.to_vec();
        values.extend(DURATION_BUCKETS.iter().map(|b| b * 1.5));
        values.extend([0.0, -1.0, 1e-9, 31.0, 1e9, f64::NAN, f64::INFINITY]);
        let m = Metrics::default();
        m.observe_each("d_seconds", "D.", DURATION_BUCKETS, &[], values.iter().copied());
        let sample = m.snapshot().pop().expect("one series");
        let expected: Vec<u64> =
            DURATION_BUCKETS.iter().map(|bound| values.iter().filter(|v| **v <= *bound).count() as u64).collect();
        assert_eq!(sample.buckets, expected);
        assert_eq!(sample.value, values.len() as f64, "every value is counted, NaN and beyond the last bound too");
        let text = m.render();
        for (bound, n) in DURATION_BUCKETS.iter().zip(&expected) {
            assert!(text.contains(&format!("d_seconds_bucket{{le=\"{bound}\"}} {n}\n")), "{bound}: {text}");
        }
    }

    #[test]
    fn series_are_found_by_their_labels_and_written_in_their_order() {
        // Against a map of the same labels: the same counts, the same order.
        let m = Metrics::default();
        let mut model = BTreeMap::<Labels, u64>::new();
        let names = ["b", "a", "", "ab", "a\u{0}", "z", "é"];
        for i in 0..400usize {
            let (x, y) = (names[i % 7], names[(i * 3 + 1) % 7]);
            // Label sets of different lengths and keys in one family.
            let labels: &[(&'static str, &str)] = match i % 3 {
                0 => &[("k", x)],
                1 => &[("k", x), ("l", y)],
                _ => &[("j", y), ("k", x)],
            };
            m.count("s_total", "S.", labels, 1);
            *model.entry(owned(labels)).or_default() += 1;
        }
        for (labels, n) in &model {
            let borrowed: Vec<(&'static str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            assert_eq!(m.counter("s_total", &borrowed), *n, "{labels:?}");
        }
        let written: Vec<Labels> = m.snapshot().into_iter().map(|s| s.labels).collect();
        assert_eq!(written, model.into_keys().collect::<Vec<_>>());
        assert_eq!(m.counter("s_total", &[("k", "nowhere")]), 0);
    }
}
