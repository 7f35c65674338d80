//! [`Telemetry`]: one node's buffers and metrics, and the flusher that writes them to Postgres.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock, Weak};
use std::time::Duration;

use chrono::Utc;
use forge_core::config::RequestSpans;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::buffer::Buffer;
use super::logs::{self, LogRecord};
use super::metrics::{Labels, Sample, SampleKind};
use super::system::SystemSampler;
use super::traces::{self, SpanRecord};
use super::{Metrics, sql};

/// Records written by one statement at most.
const BATCH: usize = 1000;

/// Readings of the node's components, filled in as they start.
#[derive(Default)]
pub struct Probes {
    /// Busy and total worker slots.
    pub(crate) worker: OnceLock<Box<dyn Fn() -> (usize, usize) + Send + Sync>>,
    /// Whether the node leads.
    pub(crate) leader: OnceLock<Arc<AtomicBool>>,
}

impl std::fmt::Debug for Probes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probes").finish_non_exhaustive()
    }
}

impl Probes {
    pub(crate) fn worker_slots(&self) -> Option<(usize, usize)> {
        self.worker.get().map(|probe| probe())
    }

    pub(crate) fn is_leader(&self) -> Option<bool> {
        self.leader.get().map(|flag| flag.load(Ordering::SeqCst))
    }
}

/// One node's telemetry: the bounded buffers of log records and spans waiting to be written,
/// its [`Metrics`], and readings of its components.
///
/// **Never in the way.** Recording only pushes onto a bounded buffer. When a buffer is full
/// the *oldest* record is dropped and counted; when the database is slow or down, a failed
/// batch goes back to the front of its buffer and is retried later. Job execution never waits
/// on telemetry, and memory stays bounded.
#[derive(Debug)]
pub struct Telemetry {
    node_id: String,
    logs: Buffer<LogRecord>,
    spans: Buffer<SpanRecord>,
    metrics: Metrics,
    probes: Probes,
    wake: Notify,
    attached: AtomicBool,
    requests: RequestBudget,
}

/// Which plain requests have their span stored (`[observability] request_spans` and
/// `slow_request`): at most `per_second` in each second of the clock, counting the others.
#[derive(Debug)]
struct RequestBudget {
    /// Spans per second; `u32::MAX` for all.
    per_second: AtomicU32,
    /// Requests at least this slow (µs) are always stored.
    slow_us: AtomicI64,
    /// The second `used` counts in (Unix time).
    second: AtomicI64,
    used: AtomicU32,
    /// Plain requests whose span was not stored.
    unstored: AtomicU64,
}

impl RequestBudget {
    /// A budget of `[observability]`'s defaults.
    fn new() -> Self {
        let defaults = forge_core::config::ObservabilityConfig::default();
        let budget = Self {
            per_second: AtomicU32::new(0),
            slow_us: AtomicI64::new(0),
            second: AtomicI64::new(0),
            used: AtomicU32::new(0),
            unstored: AtomicU64::new(0),
        };
        budget.set(defaults.request_spans, defaults.slow_request.as_std());
        budget
    }

    fn set(&self, spans: RequestSpans, slow: Duration) {
        let per_second = match spans {
            RequestSpans::All => u32::MAX,
            RequestSpans::PerSecond(n) => n.min(u32::MAX - 1),
        };
        self.per_second.store(per_second, Ordering::Relaxed);
        self.slow_us.store(i64::try_from(slow.as_micros()).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    fn admits(&self, second: i64, duration_us: i64) -> bool {
        let per_second = self.per_second.load(Ordering::Relaxed);
        if per_second == u32::MAX || duration_us >= self.slow_us.load(Ordering::Relaxed) {
            return true;
        }
        let current = self.second.load(Ordering::Relaxed);
        if current != second
            && self.second.compare_exchange(current, second, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            // A request finishing late in the previous second may count in this one: harmless.
            self.used.store(0, Ordering::Relaxed);
        }
        let admitted = per_second > 0 && self.used.fetch_add(1, Ordering::Relaxed) < per_second;
        if !admitted {
            self.unstored.fetch_add(1, Ordering::Relaxed);
        }
        admitted
    }
}

/// The nodes of this process that store telemetry, oldest first.
static NODES: RwLock<Vec<Weak<Telemetry>>> = RwLock::new(Vec::new());

thread_local! {
    /// The node [`node`] found last on this thread: asked once per request span, almost always
    /// for the same node, it is found without the lock on [`NODES`] that every core shares.
    static LAST_NODE: std::cell::RefCell<Weak<Telemetry>> = const { std::cell::RefCell::new(Weak::new()) };
}

/// The node named `node_id`, if it stores telemetry.
pub(crate) fn node(node_id: &str) -> Option<Arc<Telemetry>> {
    let last = LAST_NODE.with_borrow(Weak::upgrade);
    if let Some(last) = last.filter(|t| t.node_id == node_id && t.is_attached()) {
        return Some(last);
    }
    let found = {
        let nodes = NODES.read().unwrap_or_else(PoisonError::into_inner);
        nodes.iter().filter_map(Weak::upgrade).find(|t| t.node_id == node_id)
    };
    if let Some(found) = &found {
        LAST_NODE.set(Arc::downgrade(found));
    }
    found
}

/// Where records from outside any node's spans go: the process's oldest node.
pub(crate) fn default_node() -> Option<Arc<Telemetry>> {
    let nodes = NODES.read().unwrap_or_else(PoisonError::into_inner);
    nodes.iter().find_map(Weak::upgrade)
}

impl Telemetry {
    /// Telemetry for node `node_id`, each buffer holding at most `buffer_size` records.
    pub fn new(node_id: impl Into<String>, buffer_size: usize) -> Arc<Self> {
        Arc::new(Self {
            node_id: node_id.into(),
            logs: Buffer::new(buffer_size),
            spans: Buffer::new(buffer_size),
            metrics: Metrics::default(),
            probes: Probes::default(),
            wake: Notify::new(),
            attached: AtomicBool::new(false),
            requests: RequestBudget::new(),
        })
    }

    /// Sets which plain requests have their span stored: `spans` per second (or all), and any
    /// request taking `slow` or longer. Until called: `[observability]`'s defaults (100 per
    /// second, requests of 100 ms).
    pub fn set_request_spans(&self, spans: RequestSpans, slow: Duration) {
        self.requests.set(spans, slow);
    }

    /// Whether the span of a plain request (see [`Telemetry::set_request_spans`]) that started
    /// in Unix second `second` and took `duration_us` is stored; counts it if not.
    pub(crate) fn stores_plain_request(&self, second: i64, duration_us: i64) -> bool {
        self.requests.admits(second, duration_us)
    }

    /// Plain requests whose span was not stored (beyond `request_spans` per second).
    pub fn unstored_request_spans(&self) -> u64 {
        self.requests.unstored.load(Ordering::Relaxed)
    }

    /// The node's id.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The node's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub(crate) fn probes(&self) -> &Probes {
        &self.probes
    }

    /// Log records dropped because the buffer was full.
    pub fn dropped_logs(&self) -> u64 {
        self.logs.dropped()
    }

    /// Spans dropped because the buffer was full.
    pub fn dropped_spans(&self) -> u64 {
        self.spans.dropped()
    }

    /// Log records and spans waiting to be written.
    pub fn buffered(&self) -> (usize, usize) {
        (self.logs.len(), self.spans.len())
    }

    /// Starts receiving the records of spans naming this node (and of everything outside a
    /// node's spans, if it is the process's oldest).
    pub(crate) fn attach(self: &Arc<Self>) {
        let mut nodes = NODES.write().unwrap_or_else(PoisonError::into_inner);
        nodes.retain(|t| t.strong_count() > 0);
        nodes.push(Arc::downgrade(self));
        self.attached.store(true, Ordering::SeqCst);
    }

    /// Whether the node stores telemetry (it is attached).
    pub(crate) fn is_attached(&self) -> bool {
        self.attached.load(Ordering::Relaxed)
    }

    /// Stops receiving records.
    pub(crate) fn detach(&self) {
        self.attached.store(false, Ordering::SeqCst);
        let mut nodes = NODES.write().unwrap_or_else(PoisonError::into_inner);
        nodes.retain(|t| t.upgrade().is_some_and(|t| !std::ptr::eq(Arc::as_ptr(&t), self)));
    }

    pub(crate) fn push_log(&self, record: LogRecord) {
        if self.logs.push(record) >= BATCH {
            self.wake.notify_one();
        }
    }

    pub(crate) fn push_span(&self, record: SpanRecord) {
        if self.spans.push(record) >= BATCH {
            self.wake.notify_one();
        }
    }

    /// Writes every buffered log record and span, in batches; returns how many were written.
    /// When the database cannot be reached the unwritten records go back to their buffer and
    /// the error is returned. A batch the database refuses for its data is split, so that only
    /// the records it refuses are dropped (and counted): one bad record never stalls the rest.
    pub async fn flush(&self, pool: &PgPool) -> Result<usize, sqlx::Error> {
        let mut written = 0;
        written += flush_buffer(pool, &self.node_id, &self.logs).await?;
        written += flush_buffer(pool, &self.node_id, &self.spans).await?;
        Ok(written)
    }

    /// Sets the gauges read off the node: pool, worker slots, leadership, telemetry drops.
    pub(crate) fn sample_gauges(&self, pool: &PgPool) {
        let m = &self.metrics;
        let (size, idle) = (f64::from(pool.size()), pool.num_idle() as f64);
        let in_use = (size - idle).max(0.0);
        let help = "Open connections in the node's pool, by state.";
        m.gauge("forge_db_pool_connections", help, &[("state", "idle")], idle);
        m.gauge("forge_db_pool_connections", help, &[("state", "in_use")], in_use);
        let max = f64::from(pool.options().get_max_connections());
        m.gauge("forge_db_pool_max_connections", "The pool's size limit.", &[], max);
        if let Some((busy, total)) = self.probes.worker_slots() {
            m.gauge("forge_worker_busy_slots", "Jobs running on this node.", &[], busy as f64);
            m.gauge("forge_worker_slots", "Jobs this node may run at once.", &[], total as f64);
        }
        if let Some(leader) = self.probes.is_leader() {
            let v = if leader { 1.0 } else { 0.0 };
            m.gauge("forge_leader", "1 while this node leads the cluster.", &[("role", "scheduler")], v);
        }
        let help = "Telemetry records dropped because the buffer was full (database slow or down).";
        m.gauge("forge_telemetry_dropped", help, &[("kind", "logs")], self.logs.dropped() as f64);
        m.gauge("forge_telemetry_dropped", help, &[("kind", "spans")], self.spans.dropped() as f64);
        let help = "Plain requests whose span was not stored (beyond `request_spans` per second); \
                    forge_http_requests_total counts every request.";
        m.gauge("forge_telemetry_unstored_request_spans", help, &[], self.unstored_request_spans() as f64);
    }
}

/// A kind of telemetry record and how a batch of them is written.
trait Stored: Sized + Send + Sync {
    fn insert(pool: &PgPool, node_id: &str, batch: &[Self]) -> impl Future<Output = Result<(), sqlx::Error>> + Send;
}

impl Stored for LogRecord {
    fn insert(pool: &PgPool, node_id: &str, batch: &[Self]) -> impl Future<Output = Result<(), sqlx::Error>> + Send {
        logs::insert(pool, node_id, batch)
    }
}

impl Stored for SpanRecord {
    fn insert(pool: &PgPool, node_id: &str, batch: &[Self]) -> impl Future<Output = Result<(), sqlx::Error>> + Send {
        traces::insert(pool, node_id, batch)
    }
}

/// Writes everything in `buffer`, batch by batch; returns how many records were written.
async fn flush_buffer<T: Stored>(pool: &PgPool, node_id: &str, buffer: &Buffer<T>) -> Result<usize, sqlx::Error> {
    let mut written = 0;
    loop {
        let batch = buffer.take(BATCH);
        if batch.is_empty() {
            return Ok(written);
        }
        let n = batch.len();
        match write_batch(pool, node_id, buffer, batch).await {
            Ok(refused) => {
                written += n - refused as usize;
            }
            Err((e, unwritten)) => {
                buffer.put_back(unwritten);
                return Err(e);
            }
        }
    }
}

/// Writes `batch`, halving it around records the database refuses; returns how many were
/// refused. A refused record is counted as dropped in `buffer` the moment it is refused, before
/// the records after it are written (so whoever sees a later record also sees the count). On
/// any other error, returns it with the records not yet written.
async fn write_batch<T: Stored>(
    pool: &PgPool,
    node_id: &str,
    buffer: &Buffer<T>,
    batch: Vec<T>,
) -> Result<u64, (sqlx::Error, Vec<T>)> {
    match T::insert(pool, node_id, &batch).await {
        Ok(()) => Ok(0),
        Err(e) if !crate::db::refused_data(&e) => Err((e, batch)),
        Err(e) if batch.len() == 1 => {
            tracing::warn!(target: "forge::telemetry", error = %e, "a telemetry record was refused by the database; dropped");
            buffer.count_dropped(1);
            Ok(1)
        }
        Err(_) => {
            let mut left = batch;
            let right = left.split_off(left.len() / 2);
            let refused = match Box::pin(write_batch(pool, node_id, buffer, left)).await {
                Ok(refused) => refused,
                Err((e, mut rest)) => {
                    rest.extend(right);
                    return Err((e, rest));
                }
            };
            Ok(refused + Box::pin(write_batch(pool, node_id, buffer, right)).await?)
        }
    }
}

/// Unfinished jobs by queue and state: `(queue, state, count)`.
pub async fn queue_depths(pool: &PgPool) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
    sqlx::query_as(sql::QUEUE_DEPTH).fetch_all(pool).await
}

/// Sets `forge_queue_depth` from the job table (one query; the leader runs it).
pub(crate) async fn sample_queue_depth(metrics: &Metrics, pool: &PgPool) -> Result<(), sqlx::Error> {
    let rows = queue_depths(pool).await?;
    metrics.clear_gauge("forge_queue_depth");
    for (queue, state, n) in rows {
        metrics.gauge(
            "forge_queue_depth",
            "Jobs not yet finished, by queue and state.",
            &[("queue", &queue), ("state", &state)],
            n as f64,
        );
    }
    Ok(())
}

/// How often the flusher works.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FlushSettings {
    pub(crate) flush_every: Duration,
    pub(crate) metrics_every: Duration,
}

/// Writes logs and spans every `flush_every` (or as soon as a batch is full) and metrics every
/// `metrics_every`, until `stop`; then writes everything once more.
pub(crate) fn spawn_flusher(
    telemetry: Arc<Telemetry>,
    pool: PgPool,
    settings: FlushSettings,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut writer = MetricsWriter::new();
        let mut next_metrics = tokio::time::Instant::now() + settings.metrics_every;
        let mut failing = false;
        loop {
            // While the database is failing, try less often (and do not wake on full batches).
            let wait = if failing { settings.flush_every.max(Duration::from_secs(1)) } else { settings.flush_every };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = telemetry.wake.notified(), if !failing => {}
                () = stop.cancelled() => break,
            }
            match telemetry.flush(&pool).await {
                Ok(_) => failing = false,
                Err(e) => {
                    if !failing {
                        tracing::warn!(target: "forge::telemetry", error = %e, "cannot write telemetry; buffering it (oldest records are dropped when full)");
                    }
                    failing = true;
                }
            }
            if tokio::time::Instant::now() >= next_metrics {
                next_metrics = tokio::time::Instant::now() + settings.metrics_every;
                if let Err(e) = writer.write(&telemetry, &pool).await {
                    tracing::debug!(target: "forge::telemetry", error = %e, "cannot write metrics; they will be in the next interval");
                }
            }
        }
        telemetry.detach();
        if let Err(e) = telemetry.flush(&pool).await {
            let (logs, spans) = telemetry.buffered();
            tracing::warn!(target: "forge::telemetry", error = %e, logs, spans, "telemetry lost at shutdown");
        }
        if let Err(e) = writer.write(&telemetry, &pool).await {
            tracing::warn!(target: "forge::telemetry", error = %e, "metrics of the last interval lost at shutdown");
        }
    })
}

/// Writes one row per series per interval: counters and histograms as the change since the
/// last successful write, gauges as their current value. A failed write leaves the baseline
/// where it was, so the next write covers both intervals: counts are never lost.
#[derive(Debug)]
pub(crate) struct MetricsWriter {
    last: HashMap<(&'static str, Labels), Sample>,
    last_at: chrono::DateTime<Utc>,
    system: SystemSampler,
}

impl MetricsWriter {
    pub(crate) fn new() -> Self {
        Self { last: HashMap::new(), last_at: Utc::now(), system: SystemSampler::new() }
    }

    pub(crate) async fn write(&mut self, telemetry: &Telemetry, pool: &PgPool) -> Result<usize, sqlx::Error> {
        telemetry.sample_gauges(pool);
        self.system.sample(&telemetry.metrics);
        if telemetry.probes.is_leader() == Some(true)
            && let Err(e) = sample_queue_depth(&telemetry.metrics, pool).await
        {
            tracing::debug!(target: "forge::telemetry", error = %e, "cannot read queue depths");
        }
        let now = Utc::now();
        let snapshot = telemetry.metrics.snapshot();
        let mut rows = Rows::default();
        for sample in &snapshot {
            let previous = self.last.get(&(sample.name, sample.labels.clone()));
            let (value, sum, buckets) = match (sample.kind, previous) {
                (SampleKind::Gauge, _) => (sample.value, None, None),
                (_, Some(p)) if p.value == sample.value => continue,
                (SampleKind::Counter, p) => (sample.value - p.map_or(0.0, |p| p.value), None, None),
                (SampleKind::Histogram, p) => {
                    let counts: Vec<u64> = match p {
                        Some(p) => sample.buckets.iter().zip(&p.buckets).map(|(a, b)| a.saturating_sub(*b)).collect(),
                        None => sample.buckets.clone(),
                    };
                    let le: Vec<serde_json::Value> = sample.bounds.iter().map(|b| (*b).into()).collect();
                    (
                        sample.value - p.map_or(0.0, |p| p.value),
                        Some(sample.sum - p.map_or(0.0, |p| p.sum)),
                        Some(serde_json::json!({ "le": le, "counts": counts })),
                    )
                }
            };
            rows.name.push(sample.name);
            rows.kind.push(sample.kind.as_str());
            rows.labels.push(serde_json::Value::Object(
                sample.labels.iter().map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(v.as_str()))).collect(),
            ));
            rows.value.push(value);
            rows.sum.push(sum);
            rows.buckets.push(buckets);
        }
        let seconds = (now - self.last_at).num_milliseconds() as f64 / 1000.0;
        let written = rows.name.len();
        if written > 0 {
            sqlx::query(sql::INSERT_METRICS)
                .bind(now)
                .bind(&telemetry.node_id)
                .bind(seconds)
                .bind(&rows.name)
                .bind(&rows.kind)
                .bind(&rows.labels)
                .bind(&rows.value)
                .bind(&rows.sum)
                .bind(&rows.buckets)
                .execute(pool)
                .await?;
        }
        self.last = snapshot.into_iter().map(|s| ((s.name, s.labels.clone()), s)).collect();
        self.last_at = now;
        Ok(written)
    }
}

#[derive(Default)]
struct Rows {
    name: Vec<&'static str>,
    kind: Vec<&'static str>,
    labels: Vec<serde_json::Value>,
    value: Vec<f64>,
    sum: Vec<Option<f64>>,
    buckets: Vec<Option<serde_json::Value>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_budget_admits_so_many_a_second_and_every_slow_one() {
        let t = Telemetry::new("budget", 10);
        t.set_request_spans(RequestSpans::PerSecond(2), Duration::from_millis(100));
        let admitted = |second| (0..5).filter(|_| t.stores_plain_request(second, 10)).count();
        assert_eq!((admitted(1), admitted(2)), (2, 2), "two in each second");
        assert!(t.stores_plain_request(2, 100_000), "a slow one whatever the count");
        assert_eq!(t.unstored_request_spans(), 6);
        t.set_request_spans(RequestSpans::PerSecond(0), Duration::from_millis(100));
        assert_eq!(admitted(3), 0);
        t.set_request_spans(RequestSpans::All, Duration::from_millis(100));
        assert_eq!(admitted(3), 5);
        assert_eq!(t.unstored_request_spans(), 11);
    }

    #[test]
    fn a_node_is_found_by_its_id_while_attached_and_not_after() {
        let first = Telemetry::new("lookup-first", 10);
        let second = Telemetry::new("lookup-second", 10);
        first.attach();
        second.attach();
        let found = |id| node(id).map(|t| t.node_id().to_owned());
        // Asked twice: the second answer comes from the thread's last one.
        for _ in 0..2 {
            assert_eq!(found("lookup-first").as_deref(), Some("lookup-first"));
        }
        assert_eq!(found("lookup-second").as_deref(), Some("lookup-second"));
        assert_eq!(found("lookup-first").as_deref(), Some("lookup-first"));
        first.detach();
        assert_eq!(found("lookup-first"), None, "a detached node is not found, not even as the last one");
        assert_eq!(found("lookup-second").as_deref(), Some("lookup-second"));
        drop(second);
        assert_eq!(found("lookup-second"), None, "nor a dropped one");
        assert_eq!(found("lookup-none"), None);
    }
}
