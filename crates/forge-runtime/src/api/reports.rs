//! `GET /v1/jobs/{id}/report`: a job with its outcome, every attempt, its timings and events.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use forge_core::jobs::{AttemptError, FailureKind};

use super::error::ApiError;
use super::jobs::{find, job_id, not_found};
use super::sql;
use super::state::ApiState;
use super::types::{ApiJob, JobEvent, JobReport, ReportAttempt, ReportTimings};

/// Events a report carries at most.
const REPORT_EVENTS: i64 = 1000;

/// `GET /v1/jobs/{id}/report`.
#[utoipa::path(get, operation_id = "get_job_report", path = "/v1/jobs/{id}/report", tag = "jobs", params(("id" = i64, Path, description = "The job's id")), responses((status = 200, description = "Everything about the job", body = super::types::JobReport)))]
pub(super) async fn report(State(state): State<ApiState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let result = async {
        let client = state.client(&headers, "jobs:read").await?;
        let id = job_id(&id)?;
        // One snapshot: the job, its attempts and its events agree.
        let mut tx = state.pool().begin().await?;
        sqlx::query("set transaction isolation level repeatable read read only").execute(&mut *tx).await?;
        let job = find(&mut tx, id, client).await?.ok_or_else(|| not_found(id))?;
        let (errors, node): (serde_json::Value, Option<String>) =
            sqlx::query_as(sql::JOB_ATTEMPTS).bind(id.0).bind(client).fetch_one(&mut *tx).await?;
        let events: Vec<JobEvent> =
            sqlx::query_as(sql::EVENTS_AFTER).bind(id.0).bind(0_i64).bind(REPORT_EVENTS).fetch_all(&mut *tx).await?;
        tx.commit().await?;
        let errors: Vec<AttemptError> = serde_json::from_value(errors).unwrap_or_default();
        Ok::<_, ApiError>(build(job, &errors, node, events))
    };
    match result.await {
        Ok(report) => Json(report).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The report of `job`, whose failed attempts are `errors` and whose last attempt ran on `node`.
fn build(job: ApiJob, errors: &[AttemptError], node: Option<String>, events: Vec<JobEvent>) -> JobReport {
    let mut attempts: Vec<ReportAttempt> = errors
        .iter()
        .map(|e| ReportAttempt {
            attempt: e.attempt,
            started_at: e.started_at,
            ended_at: Some(e.at),
            outcome: match e.kind {
                FailureKind::Lease => "lost".to_owned(),
                FailureKind::Cancel => "cancelled".to_owned(),
                _ => "failed".to_owned(),
            },
            error: Some(e.message.clone()),
            node: e.node.clone(),
        })
        .collect();
    // The last attempt, when it is not among the failures: running, succeeded or cancelled.
    if job.attempt > 0 && !errors.iter().any(|e| e.attempt == job.attempt) {
        let outcome = match job.state.as_str() {
            "running" => "running",
            "completed" => "succeeded",
            "cancelled" => "cancelled",
            _ => "failed",
        };
        attempts.push(ReportAttempt {
            attempt: job.attempt,
            started_at: job.attempted_at,
            ended_at: if outcome == "running" { None } else { job.finalized_at },
            outcome: outcome.to_owned(),
            error: None,
            node,
        });
    }
    attempts.sort_by_key(|a| a.attempt);
    let outcome = match job.state.as_str() {
        "completed" => Some("succeeded"),
        "discarded" => Some("failed"),
        "cancelled" => Some("cancelled"),
        _ => None,
    };
    let first_start = attempts.iter().filter_map(|a| a.started_at).min();
    let ms = |from: Option<DateTime<Utc>>, to: Option<DateTime<Utc>>| match (from, to) {
        (Some(from), Some(to)) => Some((to - from).num_milliseconds()),
        _ => None,
    };
    let timings = ReportTimings {
        queued_ms: ms(Some(job.created_at), first_start),
        last_attempt_ms: ms(job.attempted_at, job.finalized_at),
        total_ms: ms(Some(job.created_at), job.finalized_at),
    };
    JobReport { outcome: outcome.map(str::to_owned), attempts, timings, events, job }
}
