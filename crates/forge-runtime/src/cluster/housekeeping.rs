//! The leader's housekeeping: every minute it deletes what would otherwise grow without end —
//! rate-limit buckets idle for a day, cron runs older than a week (each cron's latest tick and
//! the runs of unfinished jobs are kept), the rows of nodes stopped or dead for a day, the job
//! API's expired idempotency keys, job events and webhook delivery records past
//! `[api] event_retention`, and the webhook endpoints of jobs that are gone.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::sql;

/// How often the housekeeping runs.
const EVERY: Duration = Duration::from_secs(60);
/// Rate-limit buckets idle this long go (they would be full again anyway).
const BUCKETS_IDLE: Duration = Duration::from_secs(86_400);
/// Cron runs older than this go.
const CRON_RUNS_KEPT: Duration = Duration::from_secs(7 * 86_400);
/// Nodes stopped or dead this long go.
const NODES_GONE: Duration = Duration::from_secs(86_400);

/// What one round deleted.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Pruned {
    pub(crate) buckets: u64,
    pub(crate) cron_runs: u64,
    pub(crate) nodes: u64,
    pub(crate) idempotency_keys: u64,
    pub(crate) events: u64,
    pub(crate) deliveries: u64,
    pub(crate) job_endpoints: u64,
}

/// Rows deleted per statement, so a large backlog never holds locks for long.
const BATCH: i64 = 10_000;

/// One round of housekeeping.
pub(crate) async fn prune_once(pool: &PgPool, event_retention: Duration) -> Result<Pruned, sqlx::Error> {
    Ok(Pruned {
        buckets: crate::functions::rate_limit::prune(pool, BUCKETS_IDLE).await?,
        cron_runs: crate::cron::prune_runs(pool, CRON_RUNS_KEPT).await?,
        nodes: sqlx::query(sql::PRUNE_NODES).bind(NODES_GONE.as_secs_f64()).execute(pool).await?.rows_affected(),
        idempotency_keys: sqlx::query(sql::PRUNE_IDEMPOTENCY_KEYS).bind(BATCH).execute(pool).await?.rows_affected(),
        events: crate::jobs::prune_events(pool, event_retention, BATCH).await?,
        deliveries: sqlx::query(sql::PRUNE_WEBHOOK_DELIVERIES)
            .bind(event_retention.as_secs_f64())
            .bind(BATCH)
            .execute(pool)
            .await?
            .rows_affected(),
        job_endpoints: sqlx::query(sql::PRUNE_JOB_ENDPOINTS).bind(BATCH).execute(pool).await?.rows_affected(),
    })
}

/// The leader's duty: a round every minute until `stop`.
pub(crate) async fn run(pool: PgPool, event_retention: Duration, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(EVERY) => {}
            () = stop.cancelled() => return,
        }
        match prune_once(&pool, event_retention).await {
            Ok(pruned) if pruned != Pruned::default() => tracing::debug!(?pruned, "housekeeping"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "housekeeping failed; retrying in a minute"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestDatabase;

    #[tokio::test]
    async fn old_cron_runs_stopped_nodes_and_idle_buckets_are_deleted_and_the_rest_kept() {
        let db = TestDatabase::new().await.expect("db");
        let pool = db.pool();
        sqlx::raw_sql(
            "insert into forge_nodes (id, hostname, pid, roles, version, last_heartbeat, status) values
               ('old-stopped', 'h', 1, '{worker}', '0', now() - interval '2 days', 'stopped'),
               ('old-dead', 'h', 1, '{worker}', '0', now() - interval '2 days', 'dead'),
               ('recent-stopped', 'h', 1, '{worker}', '0', now() - interval '1 hour', 'stopped'),
               ('silent-running', 'h', 1, '{worker}', '0', now() - interval '2 days', 'running');
             insert into forge_jobs (id, kind, args, state) overriding system value values
               (900001, 'digest', 'null', 'running'), (900002, 'digest', 'null', 'completed');
             insert into forge_cron_runs (cron_name, scheduled_at, job_id, status, fired_by) values
               ('digest', now() - interval '30 days', 900002, 'fired', 'n'),
               ('digest', now() - interval '20 days', 900001, 'fired', 'n'),
               ('digest', now() - interval '10 days', null, 'skipped', 'n'),
               ('digest', now() - interval '1 day', null, 'fired', 'n'),
               ('yearly', now() - interval '200 days', null, 'fired', 'n');
             insert into forge_rate_limits (key, tokens, allowed, updated_at) values
               ('fn:f:old', 1, true, now() - interval '2 days'), ('fn:f:new', 1, true, now());",
        )
        .execute(pool)
        .await
        .expect("seed");
        let pruned = prune_once(pool, Duration::from_secs(7 * 86_400)).await.expect("prune");
        assert_eq!(pruned, Pruned { buckets: 1, cron_runs: 2, nodes: 2, ..Pruned::default() });
        let nodes: Vec<String> =
            sqlx::query_scalar("select id from forge_nodes order by id").fetch_all(pool).await.expect("nodes");
        assert_eq!(nodes, ["recent-stopped", "silent-running"]);
        let runs: Vec<(String, Option<i64>)> =
            sqlx::query_as("select cron_name, job_id from forge_cron_runs order by scheduled_at")
                .fetch_all(pool)
                .await
                .expect("runs");
        // The running job's run, the last day's, and each cron's latest tick stay.
        assert_eq!(
            runs,
            [("yearly".to_owned(), None), ("digest".to_owned(), Some(900001)), ("digest".to_owned(), None)]
        );
    }
}
