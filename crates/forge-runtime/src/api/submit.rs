//! A submission in one round trip: [`sql::SUBMIT`] takes the idempotency key's lock, reads its
//! stored answer, inserts the job and its `job.created` event and stores the answer, in one
//! statement that commits on its own. The transactional way ([`idempotency::run`]) needs five
//! round trips for the same; it remains for what this statement does not do (a kind with
//! unique keys, a submission with a webhook) and for the rare race described at
//! [`sql::SUBMIT`].

use axum::http::{HeaderMap, StatusCode};

use super::error::ApiError;
use super::idempotency::{self, Lookup, Post};
use super::sql;
use super::state::ApiState;
use crate::jobs::{NewJob, Prepared};

/// What the one-statement submission did.
pub(super) enum Outcome {
    /// An answer: `(status, body, replayed)`, or the refusal.
    Answered(Result<(StatusCode, serde_json::Value, bool), ApiError>),
    /// Nothing (the statement was undone): submit the transactional way.
    Undone,
}

/// The row [`sql::SUBMIT`] returns.
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

/// Submits `job` for `post` in one statement.
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
    let row: Result<Row, sqlx::Error> = sqlx::query_as(sql::SUBMIT)
        .bind(key.map(|key| format!("{}\u{1f}{key}", post.owner)))
        .bind(post.owner)
        .bind(key)
        .bind(&job.kind)
        .bind(&job.queue)
        .bind(&job.args)
        .bind(job.priority)
        .bind(job.max_attempts)
        .bind(job.run_at)
        .bind(job.capability.as_deref())
        .bind(&job.tags)
        .bind(&prepared.metadata)
        .bind(job.client)
        .bind(post.path)
        .bind(&fingerprint)
        .bind(state.idempotency_ttl().as_secs_f64())
        .fetch_one(state.pool())
        .await;
    let row = match row {
        Ok(row) => row,
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("22012") => {
            prepared.finish(job, None);
            return Outcome::Undone;
        }
        Err(e) => {
            prepared.finish(job, None);
            return Outcome::Answered(Err(e.into()));
        }
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

    use super::*;
    use crate::testing::TestDatabase;

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
