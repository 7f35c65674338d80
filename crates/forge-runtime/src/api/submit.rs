//! Submissions in one round trip: [`sql::SUBMIT`](super::sql::SUBMIT) takes each idempotency key's lock, reads its
//! stored answer, inserts the job and its `job.created` event and stores the answer, in one
//! statement that commits on its own. The transactional way ([`idempotency::run`]) needs five
//! round trips for the same; it remains for what this statement does not do (a kind with
//! unique keys, a submission with a webhook) and for the rare race described at
//! [`sql::SUBMIT`](super::sql::SUBMIT).
//!
//! Concurrent submissions share the statement: each handler hands its submission to the
//! [`Submitter`](super::batch::Submitter), which submits what waits in batches.

use axum::http::{HeaderMap, StatusCode};
use sqlx::FromRow;

use super::batch::Pending;
use super::error::ApiError;
use super::idempotency::{self, Lookup, Post};
use super::state::ApiState;
use crate::jobs::{NewJob, Prepared};

/// What the one-statement submission did.
pub(super) enum Outcome {
    /// An answer: `(status, body, replayed)`, or the refusal.
    Answered(Result<(StatusCode, serde_json::Value, bool), ApiError>),
    /// Nothing (the statement was undone): submit the transactional way.
    Undone,
}

/// The row [`sql::SUBMIT`](super::sql::SUBMIT) returns for each submission.
#[derive(sqlx::FromRow)]
struct Row {
    #[sqlx(flatten)]
    lookup: Lookup,
    body: Option<serde_json::Value>,
}

/// Whether `job` can be submitted by [`submit`]: it has no unique key (whose holder the
/// statement would have to look for).
pub(super) fn fits(job: &NewJob) -> bool {
    job.unique_key.is_none()
}

/// Submits `job` for `post`, in a batch with whatever else is being submitted.
pub(super) async fn submit(state: &ApiState, headers: &HeaderMap, post: &Post<'_>, job: &NewJob) -> Outcome {
    let key = match idempotency::key(headers) {
        Ok(key) => key,
        Err(e) => return Outcome::Answered(Err(e)),
    };
    let prepared = match Prepared::new(job) {
        Ok(prepared) => prepared,
        Err(e) => return Outcome::Answered(Err(e.into())),
    };
    let fingerprint = idempotency::fingerprint(post.path, post.body);
    let pending = Pending {
        lock_key: key.map(|key| idempotency::lock_key(post.owner, key)),
        owner: post.owner.to_owned(),
        key: key.map(str::to_owned),
        job: job.clone(),
        metadata: prepared.metadata.clone(),
        path: post.path.to_owned(),
        fingerprint: fingerprint.clone(),
    };
    let row = state.submitter().submit(pending).await.map(|row| Row::from_row(&row));
    let Some(Ok(row)) = row else {
        prepared.finish(job, None);
        return Outcome::Undone;
    };
    let id = row.body.as_ref().and_then(|b| b["id"].as_i64());
    prepared.finish(job, id);
    Outcome::Answered(answer(post, &fingerprint, row))
}

/// The answer a row stands for.
fn answer(post: &Post<'_>, fingerprint: &[u8], row: Row) -> Result<(StatusCode, serde_json::Value, bool), ApiError> {
    if let Some(answer) = row.lookup.answer(post, fingerprint) {
        return answer;
    }
    let body = row.body.ok_or_else(|| ApiError::Internal("the submission inserted no job".to_owned()))?;
    Ok((StatusCode::CREATED, body, false))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use sqlx::postgres::PgRow;

    use super::super::batch::submit_batch;
    use super::*;
    use crate::db::spares::Spares;
    use crate::testing::TestDatabase;

    fn parse(row: Option<PgRow>) -> Option<Row> {
        row.map(|row| Row::from_row(&row).expect("a row of sql::SUBMIT"))
    }

    async fn jobs(db: &TestDatabase) -> i64 {
        sqlx::query_scalar("select count(*) from forge_jobs").fetch_one(db.pool()).await.expect("count")
    }

    #[tokio::test]
    async fn one_statement_submits_replays_and_refuses_a_reused_key() {
        let db = TestDatabase::new().await.expect("db");
        let state = ApiState::new(db.pool().clone(), &db.config(), crate::jobs::JobRegistry::default(), None);
        let job = NewJob::raw("thing", "default", serde_json::json!({ "n": 1 })).with_client(uuid::Uuid::new_v4());
        let mut headers = HeaderMap::new();
        headers.insert(idempotency::IDEMPOTENCY_KEY, HeaderValue::from_static("k-1"));
        let body = serde_json::json!({ "kind": "thing", "args": { "n": 1 } });
        let post = Post { owner: "a", path: "/v1/jobs", body: &body };
        let Outcome::Answered(Ok((StatusCode::CREATED, first, false))) = submit(&state, &headers, &post, &job).await
        else {
            panic!("the first submission is created");
        };
        assert_eq!((first["state"].as_str(), first["attempt"].as_i64()), (Some("available"), Some(0)));
        let Outcome::Answered(Ok((StatusCode::CREATED, again, true))) = submit(&state, &headers, &post, &job).await
        else {
            panic!("the repeat is replayed");
        };
        assert_eq!(again, first);
        let other = serde_json::json!({ "kind": "thing", "args": { "n": 2 } });
        let post = Post { owner: "a", path: "/v1/jobs", body: &other };
        assert!(matches!(
            submit(&state, &headers, &post, &job).await,
            Outcome::Answered(Err(ApiError::Unprocessable { .. }))
        ));
        let events: i64 = sqlx::query_scalar("select count(*) from forge_job_events where type = 'job.created'")
            .fetch_one(db.pool())
            .await
            .expect("events");
        assert_eq!((jobs(&db).await, events), (1, 1));
    }

    /// A submission as a handler hands it over.
    fn pending(owner: &str, key: Option<&str>, n: u64) -> Pending {
        let body = serde_json::json!({ "kind": "thing", "args": { "n": n } });
        let job = NewJob::raw("thing", "default", body["args"].clone()).with_client(uuid::Uuid::new_v4());
        Pending {
            lock_key: key.map(|key| idempotency::lock_key(owner, key)),
            owner: owner.to_owned(),
            key: key.map(str::to_owned),
            metadata: serde_json::json!({}),
            job,
            path: "/v1/jobs".to_owned(),
            fingerprint: idempotency::fingerprint("/v1/jobs", &body),
        }
    }

    /// Submissions one after another (a client posting a job, waiting, posting the next) keep
    /// one connection: not handed back to the pool, and pinged by it, after each statement.
    #[tokio::test]
    async fn submissions_one_after_another_keep_their_connection() {
        use std::sync::atomic::Ordering;

        use crate::testing::counted_pool;

        let db = TestDatabase::new().await.expect("db");
        let (pool, returns) = counted_pool(&db).await;
        let spares = Spares::new(pool);
        for n in 0..20 {
            let answer = submit_batch(&spares, 3600.0, vec![pending("a", None, n)]).await;
            assert!(parse(answer.into_iter().next().expect("an answer")).is_some(), "submitted");
        }
        assert_eq!(returns.load(Ordering::SeqCst), 0, "kept from one statement to the next");
        assert_eq!(jobs(&db).await, 20);
    }

    /// One statement for many submissions: each new key gets its own job, answer and record
    /// (rows and jobs paired up, whatever order the database inserts in); a key stored
    /// before is replayed, not inserted again; a key twice in one batch is sent back for the
    /// transactional way (inside the statement its lock would let both through).
    #[tokio::test]
    async fn a_batch_submits_each_key_once_and_sends_back_a_repeat_within_it() {
        let db = TestDatabase::new().await.expect("db");
        let ttl = 3600.0;
        let first = submit_batch(&Spares::new(db.pool().clone()), ttl, vec![pending("a", Some("old"), 0)]).await;
        let old = parse(first.into_iter().next().expect("an answer")).expect("row").body.expect("inserted");

        let batch: Vec<Pending> = [("a", Some("k1"), 1), ("b", Some("k1"), 2), ("a", None, 3), ("a", Some("old"), 0)]
            .into_iter()
            .chain((4..40).map(|n| ("c", None, n)))
            .chain([("a", Some("k1"), 1)])
            .map(|(owner, key, n)| pending(owner, key, n))
            .collect();
        let sent = batch.len();
        let mut answered: Vec<Option<Row>> =
            submit_batch(&Spares::new(db.pool().clone()), ttl, batch).await.into_iter().map(parse).collect();
        assert_eq!(answered.len(), sent, "an answer for each submission");
        let repeat = answered.pop().expect("the repeat");
        assert!(repeat.is_none(), "a key twice in one batch goes the transactional way");
        for (i, row) in answered.into_iter().enumerate() {
            let row = row.expect("a row for each");
            if i == 3 {
                assert!(row.body.is_none(), "the stored key inserts nothing");
                let body = serde_json::json!({ "kind": "thing", "args": { "n": 0 } });
                let post = Post { owner: "a", path: "/v1/jobs", body: &body };
                let fingerprint = idempotency::fingerprint("/v1/jobs", &body);
                let replayed = answer(&post, &fingerprint, row).expect("the stored answer");
                assert_eq!(replayed, (StatusCode::CREATED, old.clone(), true), "its stored answer comes back");
                continue;
            }
            let n = [1, 2, 3].get(i).copied().unwrap_or(i as u64);
            let body = row.body.expect("a new job's answer");
            assert_eq!(body["args"]["n"].as_u64(), Some(n), "row {i} is paired with its own job");
            let args: serde_json::Value = sqlx::query_scalar("select args from forge_jobs where id = $1")
                .bind(body["id"].as_i64())
                .fetch_one(db.pool())
                .await
                .expect("the job");
            assert_eq!(args["n"].as_u64(), Some(n));
        }
        let records: i64 =
            sqlx::query_scalar("select count(*) from forge_idempotency_keys").fetch_one(db.pool()).await.expect("keys");
        assert_eq!((jobs(&db).await, records), (1 + 39, 3), "old, then 39 new jobs; keys old, a/k1, b/k1");
    }

    /// The race of `sql::SUBMIT`: another request's record of the key commits after the
    /// statement's snapshot was taken. Made certain by a trigger that holds the statement
    /// while the record commits from another connection: the whole statement is undone and the
    /// caller told to go the transactional way.
    #[tokio::test]
    async fn a_record_the_snapshot_missed_undoes_the_statement() {
        let db = TestDatabase::new().await.expect("db");
        sqlx::raw_sql(
            r"create function hold() returns trigger language plpgsql as $$
              begin perform pg_sleep(0.5); return new; end $$;
              create trigger hold before insert on forge_jobs for each row execute function hold();",
        )
        .execute(db.pool())
        .await
        .expect("trigger");
        let state = ApiState::new(db.pool().clone(), &db.config(), crate::jobs::JobRegistry::default(), None);
        let submitting = tokio::spawn(async move {
            let job = NewJob::raw("thing", "default", serde_json::json!({})).with_client(uuid::Uuid::new_v4());
            let mut headers = HeaderMap::new();
            headers.insert(idempotency::IDEMPOTENCY_KEY, HeaderValue::from_static("k-1"));
            let body = serde_json::json!({ "kind": "thing" });
            let post = Post { owner: "a", path: "/v1/jobs", body: &body };
            match submit(&state, &headers, &post, &job).await {
                Outcome::Undone => Ok(()),
                Outcome::Answered(answer) => Err(format!("the statement answered: {answer:?}")),
            }
        });
        // Once the statement sits in the trigger (its snapshot taken), the record commits.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let held: bool = sqlx::query_scalar(
                "select exists (select 1 from pg_stat_activity where datname = current_database() and wait_event = 'PgSleep')",
            )
            .fetch_one(db.pool())
            .await
            .expect("activity");
            if held {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the statement never reached the trigger");
            tokio::task::yield_now().await;
        }
        sqlx::query(
            r"insert into forge_idempotency_keys (owner, key, method, path, fingerprint, status, body, expires_at)
              values ('a', 'k-1', 'POST', '/v1/jobs', '\x00', 201, '{}', now() + interval '1 hour')",
        )
        .execute(db.pool())
        .await
        .expect("the other request's record");
        submitting.await.expect("task").expect("undone");
        assert_eq!(jobs(&db).await, 0, "the job was undone with the statement");
    }
}
