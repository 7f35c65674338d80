//! Retention: the leader deletes telemetry older than `[observability.retention]` says, in
//! bounded batches so no statement holds locks for long or bloats one transaction.

use std::time::Duration;

use chrono::Utc;
use forge_core::config::RetentionConfig;
use serde::Serialize;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::sql;

/// Rows deleted by one statement at most.
const BATCH: i64 = 5000;
/// How often the leader enforces retention.
const EVERY: Duration = Duration::from_secs(60);

/// Rows deleted by one pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Pruned {
    /// Log records.
    pub logs: u64,
    /// Spans.
    pub spans: u64,
    /// Metric rows.
    pub metrics: u64,
}

/// Deletes every log record, span and metric row older than its retention, batch by batch.
pub async fn enforce_retention(pool: &PgPool, retention: &RetentionConfig) -> Result<Pruned, sqlx::Error> {
    Ok(Pruned {
        logs: prune(pool, "forge_logs", "at", retention.logs.as_std()).await?,
        spans: prune(pool, "forge_traces", "started_at", retention.traces.as_std()).await?,
        metrics: prune(pool, "forge_metrics", "at", retention.metrics.as_std()).await?,
    })
}

async fn prune(pool: &PgPool, table: &str, column: &str, keep: Duration) -> Result<u64, sqlx::Error> {
    let cutoff = Utc::now() - chrono::Duration::from_std(keep).unwrap_or(chrono::Duration::MAX);
    let statement = sql::delete_older(table, column);
    let mut total = 0;
    loop {
        let deleted = sqlx::query(&statement).bind(cutoff).bind(BATCH).execute(pool).await?.rows_affected();
        total += deleted;
        if deleted < BATCH as u64 {
            return Ok(total);
        }
        // Let other work in between batches.
        tokio::task::yield_now().await;
    }
}

/// The leader's duty: enforce retention every minute until the term ends.
pub(crate) async fn run(pool: PgPool, retention: RetentionConfig, term: CancellationToken) {
    loop {
        match enforce_retention(&pool, &retention).await {
            Ok(pruned) if pruned != Pruned::default() => {
                tracing::debug!(logs = pruned.logs, spans = pruned.spans, metrics = pruned.metrics, "telemetry pruned");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(target: "forge::telemetry", error = %e, "cannot prune telemetry"),
        }
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            () = term.cancelled() => return,
        }
    }
}
