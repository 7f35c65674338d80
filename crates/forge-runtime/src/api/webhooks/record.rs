//! The [`Recorder`]: delivery attempts written to `forge_webhook_deliveries` in batches, with
//! their endpoints' failure streaks.

use std::time::Duration;

use uuid::Uuid;

use super::sql;
use crate::db::batch::Batcher;
use crate::db::spares::Spares;
use crate::jobs::JobError;

/// One attempt of a delivery, as `forge_webhook_deliveries` records it.
#[derive(Debug)]
pub(super) struct Record {
    /// The endpoint.
    pub(super) endpoint: Uuid,
    /// The event delivered.
    pub(super) event: i64,
    /// The job the event is about.
    pub(super) job: i64,
    /// The delivery's attempt (from 1).
    pub(super) attempt: i32,
    /// The endpoint's status code, if it answered.
    pub(super) status: Option<i32>,
    /// Why the attempt failed.
    pub(super) error: Option<String>,
    /// How long it took.
    pub(super) latency_ms: i32,
    /// Whether it succeeded (a 2xx).
    pub(super) succeeded: bool,
}

/// The most attempts one statement records.
const MAX_RECORDS: usize = 256;

/// Records the node's delivery attempts in batches ([`sql::RECORD_DELIVERIES`]): one statement
/// and one commit for whatever waits, instead of one per delivery. Each delivery still waits
/// until its attempt is recorded, as it did alone.
#[derive(Debug)]
pub(super) struct Recorder {
    batcher: Batcher<Record, Result<bool, String>>,
}

impl Recorder {
    /// Starts the recorder's task over `pool`, marking endpoints overdue after `disable_after`.
    pub(super) fn start(pool: sqlx::PgPool, disable_after: Duration) -> Self {
        let disable_after = disable_after.as_secs_f64();
        // A statement keeps its connection for the next one (see `Spares`).
        let spares = Spares::new(pool);
        let batcher = Batcher::start(1, MAX_RECORDS, move |records: Vec<Record>| {
            let spares = spares.clone();
            async move { record_batch(&spares, disable_after, records).await }
        });
        Self { batcher }
    }

    /// Records `record` with whatever else waits: whether its endpoint has failed for longer
    /// than `disable_after`.
    pub(super) async fn record(&self, record: Record) -> Result<bool, JobError> {
        match self.batcher.call(record).await {
            Some(Ok(overdue)) => Ok(overdue),
            Some(Err(e)) => Err(JobError::retry(format!("could not record the delivery: {e}"))),
            None => Err(JobError::retry("could not record the delivery: the recorder stopped")),
        }
    }
}

/// Records `records` in one statement; if that fails (a deadlock with another node's batch,
/// one bad row), each alone, so one record's failure is its own.
async fn record_batch(spares: &Spares, disable_after: f64, records: Vec<Record>) -> Vec<Result<bool, String>> {
    match record_all(spares, disable_after, &records).await {
        Ok(overdue) if overdue.len() == records.len() => overdue.into_iter().map(Ok).collect(),
        outcome if records.len() > 1 => {
            if let Err(e) = outcome {
                tracing::debug!(error = %e, records = records.len(), "webhooks: a batch of delivery records failed; each goes alone");
            }
            let mut answers = Vec::with_capacity(records.len());
            for record in records {
                let answer = record_all(spares, disable_after, std::slice::from_ref(&record)).await;
                answers.push(
                    answer
                        .map_err(|e| e.to_string())
                        .and_then(|o| o.first().copied().ok_or_else(|| "no row".to_owned())),
                );
            }
            answers
        }
        Ok(_) => records.iter().map(|_| Err("the statement answered no row".to_owned())).collect(),
        Err(e) => records.iter().map(|_| Err(e.to_string())).collect(),
    }
}

/// Records `records` in one statement, on a kept connection (kept again if it went well).
async fn record_all(spares: &Spares, disable_after: f64, records: &[Record]) -> Result<Vec<bool>, sqlx::Error> {
    let mut conn = spares.take().await?;
    let overdue = sqlx::query_scalar(sql::RECORD_DELIVERIES)
        .bind(records.iter().map(|r| r.endpoint).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.event).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.job).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.attempt).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.status).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.error.as_deref()).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.latency_ms).collect::<Vec<_>>())
        .bind(records.iter().map(|r| r.succeeded).collect::<Vec<_>>())
        .bind(disable_after)
        .fetch_all(&mut *conn)
        .await?;
    spares.keep(conn);
    Ok(overdue)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestDatabase;

    fn record(endpoint: Uuid, event: i64, succeeded: bool) -> Record {
        Record {
            endpoint,
            event,
            job: event,
            attempt: 1,
            status: Some(if succeeded { 200 } else { 500 }),
            error: (!succeeded).then(|| "answered 500".to_owned()),
            latency_ms: 3,
            succeeded,
        }
    }

    /// One statement records a batch: each endpoint's streak follows its last attempt in it, each
    /// failure learns whether its endpoint is overdue, in the order given; a record that cannot
    /// be written (its endpoint deleted) fails alone, the others are still recorded.
    #[tokio::test]
    async fn a_batch_of_records_keeps_each_endpoints_streak_and_fails_a_bad_record_alone() {
        let db = TestDatabase::new().await.expect("db");
        let pool = db.pool();
        let client = Uuid::new_v4();
        sqlx::query("insert into forge_api_clients (id, name) values ($1, 'c')")
            .bind(client)
            .execute(pool)
            .await
            .expect("client");
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        for (id, failing) in [(a, None), (b, Some(3600.0)), (c, Some(3600.0))] {
            sqlx::query(
                "insert into forge_webhook_endpoints (id, client_id, url, secrets, failing_since)
                 values ($1, $2, 'http://x', '{s}', now() - make_interval(secs => $3))",
            )
            .bind(id)
            .bind(client)
            .bind(failing)
            .execute(pool)
            .await
            .expect("endpoint");
        }
        // a fails then succeeds: no streak. b succeeds then fails: its old streak was ended, a
        // new one starts (not overdue). c fails again: its hour-old streak is overdue (60 s).
        let batch =
            vec![record(a, 1, false), record(b, 2, true), record(a, 3, true), record(b, 4, false), record(c, 5, false)];
        let spares = Spares::new(pool.clone());
        let answers = record_batch(&spares, 60.0, batch).await;
        assert_eq!(answers, vec![Ok(false), Ok(false), Ok(false), Ok(false), Ok(true)]);
        let streaks: Vec<(Uuid, bool)> = sqlx::query_as(
            "select id, failing_since is not null from forge_webhook_endpoints order by array_position($1, id)",
        )
        .bind(vec![a, b, c])
        .fetch_all(pool)
        .await
        .expect("streaks");
        assert_eq!(streaks, vec![(a, false), (b, true), (c, true)]);

        let gone = Uuid::new_v4();
        let answers =
            record_batch(&spares, 60.0, vec![record(a, 6, true), record(gone, 7, true), record(c, 8, true)]).await;
        assert!(matches!(answers[..], [Ok(false), Err(_), Ok(false)]), "{answers:?}");
        let recorded: Vec<i64> = sqlx::query_scalar("select event_id from forge_webhook_deliveries order by event_id")
            .fetch_all(pool)
            .await
            .expect("deliveries");
        assert_eq!(recorded, [1, 2, 3, 4, 5, 6, 8]);
    }

    /// Batches one after another keep their connection: not handed back to the pool, and
    /// pinged by it, after each statement.
    #[tokio::test]
    async fn batches_one_after_another_keep_their_connection() {
        use std::sync::atomic::Ordering;

        use crate::testing::counted_pool;

        let db = TestDatabase::new().await.expect("db");
        let (client, endpoint) = (Uuid::new_v4(), Uuid::new_v4());
        sqlx::query(
            "with c as (insert into forge_api_clients (id, name) values ($1, 'c'))
             insert into forge_webhook_endpoints (id, client_id, url, secrets) values ($2, $1, 'http://x', '{s}')",
        )
        .bind(client)
        .bind(endpoint)
        .execute(db.pool())
        .await
        .expect("endpoint");
        let (pool, returns) = counted_pool(&db).await;
        let spares = Spares::new(pool);
        for event in 1..=10 {
            assert_eq!(record_batch(&spares, 60.0, vec![record(endpoint, event, true)]).await, vec![Ok(false)]);
        }
        assert_eq!(returns.load(Ordering::SeqCst), 0, "kept from one statement to the next");
    }
}
