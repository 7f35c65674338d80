//! Starting a run: its job and its row, in one transaction.

use std::time::Duration;

use forge_core::jobs::JobId;
use sqlx::{Acquire, PgConnection};

use super::error::WorkflowsError;
use super::sql;
use crate::jobs::{NewJob, insert_jobs};

/// A run's own row, as it starts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RunRow<'a> {
    pub(crate) workflow: &'a str,
    pub(crate) version: u32,
    pub(crate) timeout: Option<Duration>,
    pub(crate) key: Option<&'a str>,
    pub(crate) parent: Option<JobId>,
}

/// Inserts the run's job and its row in one transaction (a savepoint inside the caller's);
/// when `key` is taken, nothing is inserted and the holder's id is returned.
pub(crate) async fn start_on(conn: &mut PgConnection, job: NewJob, row: RunRow<'_>) -> Result<JobId, WorkflowsError> {
    let RunRow { workflow, version, timeout, key, parent } = row;
    if let Some(key) = key {
        if key.is_empty() || key.len() > 512 || key.contains('\0') {
            return Err(WorkflowsError::InvalidName(format!(
                "a run key is 1 to 512 bytes without NUL, got {} bytes",
                key.len()
            )));
        }
        if let Some(id) = sqlx::query_scalar::<_, i64>(sql::RUN_BY_KEY).bind(key).fetch_optional(&mut *conn).await? {
            return Ok(JobId(id));
        }
    }
    let mut tx = conn.begin().await?;
    let id = insert_jobs(&mut tx, std::slice::from_ref(&job), true)
        .await?
        .into_iter()
        .next()
        .ok_or(crate::jobs::JobsError::NotInserted)?;
    let inserted: Option<i64> = sqlx::query_scalar(sql::START)
        .bind(id.0)
        .bind(workflow)
        .bind(i32::try_from(version).unwrap_or(i32::MAX))
        .bind(key)
        .bind(timeout.map(|t| t.as_secs_f64()))
        .bind(parent.map(|p| p.0))
        .fetch_optional(&mut *tx)
        .await?;
    match (inserted, key) {
        (Some(_), _) => {
            tx.commit().await?;
            Ok(id)
        }
        // Another start took the key meanwhile (its insert committed while ours waited).
        (None, Some(key)) => {
            tx.rollback().await?;
            let holder: i64 = sqlx::query_scalar(sql::RUN_BY_KEY).bind(key).fetch_one(&mut *conn).await?;
            Ok(JobId(holder))
        }
        (None, None) => Err(WorkflowsError::NotFound(format!("{id} (its row could not be inserted)"))),
    }
}

/// Inserts many runs (no keys) in two statements: their jobs, then their rows.
pub(crate) async fn start_many_on(
    conn: &mut PgConnection,
    jobs: &[NewJob],
    row: RunRow<'_>,
) -> Result<Vec<JobId>, WorkflowsError> {
    if row.key.is_some() {
        return Err(WorkflowsError::InvalidName(
            "a run key names one run: start runs with keys one at a time".to_owned(),
        ));
    }
    let mut tx = conn.begin().await?;
    let ids = insert_jobs(&mut tx, jobs, true).await?;
    let raw: Vec<i64> = ids.iter().map(|id| id.0).collect();
    sqlx::query(sql::START_MANY)
        .bind(&raw)
        .bind(row.workflow)
        .bind(i32::try_from(row.version).unwrap_or(i32::MAX))
        .bind(row.timeout.map(|t| t.as_secs_f64()))
        .bind(row.parent.map(|p| p.0))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(ids)
}
