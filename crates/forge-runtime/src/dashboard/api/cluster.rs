//! `/_api/overview`, `/_api/nodes` and `/_api/functions`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::error::ApiResult;
use crate::cluster::{self, NodeRecord};
use crate::dashboard::{DashboardState, sql};
use crate::functions::FunctionInfo;
use crate::jobs::{JobId, JobState};

/// A job whose latest attempt failed.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub(super) struct RecentFailure {
    id: JobId,
    kind: String,
    queue: String,
    state: JobState,
    attempt: i32,
    max_attempts: i32,
    /// The latest attempt's error.
    error: Option<String>,
    at: Option<DateTime<Utc>>,
}

/// The overview's numbers (its charts read `/_api/metrics`).
#[derive(Debug, Serialize)]
pub(super) struct Overview {
    project: String,
    /// Jobs by state.
    counts: BTreeMap<JobState, i64>,
    recent_failures: Vec<RecentFailure>,
    nodes: Vec<NodeRecord>,
    /// Webhook endpoints Forge disabled by itself (the page's banner).
    webhooks_disabled: Vec<super::clients::DisabledEndpoint>,
}

pub(super) async fn overview(State(state): State<DashboardState>) -> ApiResult<Json<Overview>> {
    let counts: Vec<(JobState, i64)> = sqlx::query_as(sql::STATE_COUNTS).fetch_all(state.pool()).await?;
    let recent_failures = sqlx::query_as(sql::RECENT_FAILURES).fetch_all(state.pool()).await?;
    let nodes = cluster::nodes(state.pool()).await?;
    let project = state.project().to_owned();
    let webhooks_disabled = super::clients::disabled(&state).await?;
    Ok(Json(Overview { project, counts: counts.into_iter().collect(), recent_failures, nodes, webhooks_disabled }))
}

/// Whether the live pages can follow their data over `/ws` on this node.
#[derive(Debug, Serialize)]
pub(super) struct Live {
    live: bool,
}

pub(super) async fn live(State(state): State<DashboardState>) -> Json<Live> {
    Json(Live { live: state.live() })
}

/// Every registered node.
#[derive(Debug, Serialize)]
pub(super) struct Nodes {
    nodes: Vec<NodeRecord>,
}

pub(super) async fn nodes(State(state): State<DashboardState>) -> ApiResult<Json<Nodes>> {
    Ok(Json(Nodes { nodes: cluster::nodes(state.pool()).await? }))
}

/// Every function the binary registers.
#[derive(Debug, Serialize)]
pub(super) struct Functions {
    functions: Vec<FunctionInfo>,
}

pub(super) async fn functions(State(state): State<DashboardState>) -> Json<Functions> {
    Json(Functions { functions: state.functions().to_vec() })
}
