//! `/_api/queues…`: every queue with its depth and pause, and the pause and resume controls.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::{ApiResult, bad};
use super::extract::ApiPath;
use crate::dashboard::DashboardState;
use crate::jobs;

/// A queue as its page shows it.
#[derive(Debug, Serialize)]
pub(super) struct QueueView {
    name: String,
    /// Unfinished jobs by state.
    depth: BTreeMap<String, i64>,
    /// Its concurrency on this node, if this node works it.
    concurrency: Option<usize>,
    paused_at: Option<DateTime<Utc>>,
}

/// Every queue with unfinished jobs, a pause, or a worker on this node.
#[derive(Debug, Serialize)]
pub(super) struct Queues {
    queues: Vec<QueueView>,
}

pub(super) async fn list(State(state): State<DashboardState>) -> ApiResult<Json<Queues>> {
    let mut summaries = jobs::queue_summaries(state.pool()).await?;
    // This node's queues are listed even while empty.
    for (name, _) in state.queue_config() {
        summaries.entry(name.clone()).or_default();
    }
    let concurrency = |name: &str| state.queue_config().iter().find(|(n, _)| n == name).map(|(_, c)| *c);
    let queues = summaries
        .into_iter()
        .map(|(name, q)| QueueView { concurrency: concurrency(&name), name, depth: q.depth, paused_at: q.paused_at })
        .collect();
    Ok(Json(Queues { queues }))
}

/// `{name}` of a queue's routes.
#[derive(Debug, Deserialize)]
pub(super) struct QueuePath {
    name: String,
}

impl QueuePath {
    fn checked(self) -> ApiResult<String> {
        if self.name.is_empty() || self.name.len() > 200 {
            return Err(bad("queue", "a queue name is 1 to 200 characters"));
        }
        Ok(self.name)
    }
}

/// A queue after a pause or resume.
#[derive(Debug, Serialize)]
pub(super) struct QueuePaused {
    queue: String,
    paused: bool,
    /// For a resume: whether it was paused.
    #[serde(skip_serializing_if = "Option::is_none")]
    was_paused: Option<bool>,
}

pub(super) async fn pause(
    State(state): State<DashboardState>,
    ApiPath(p): ApiPath<QueuePath>,
) -> ApiResult<Json<QueuePaused>> {
    let queue = p.checked()?;
    jobs::pause_queue(state.pool(), &queue, "dashboard").await?;
    Ok(Json(QueuePaused { queue, paused: true, was_paused: None }))
}

pub(super) async fn resume(
    State(state): State<DashboardState>,
    ApiPath(p): ApiPath<QueuePath>,
) -> ApiResult<Json<QueuePaused>> {
    let queue = p.checked()?;
    let was_paused = jobs::resume_queue(state.pool(), &queue).await?;
    Ok(Json(QueuePaused { queue, paused: false, was_paused: Some(was_paused) }))
}
