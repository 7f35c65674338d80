//! `/_api/crons…`: every cron with its next ticks and latest runs, and the trigger, pause and
//! resume controls.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult};
use super::extract::ApiPath;
use crate::cron::{self, CronRegistration, CronStatus};
use crate::dashboard::DashboardState;
use crate::jobs::JobId;

/// Every cron in the binary.
#[derive(Debug, Serialize)]
pub(super) struct Crons {
    crons: Vec<CronStatus>,
}

pub(super) async fn list(State(state): State<DashboardState>) -> ApiResult<Json<Crons>> {
    Ok(Json(Crons { crons: state.crons().status(state.pool(), 5, 10).await? }))
}

/// `{name}` of a cron's routes.
#[derive(Debug, Deserialize)]
pub(super) struct CronPath {
    name: String,
}

impl CronPath {
    fn registered(&self, state: &DashboardState) -> ApiResult<&'static CronRegistration> {
        state
            .crons()
            .get(&self.name)
            .ok_or_else(|| ApiError::NotFound(format!("no cron {:?} is registered", self.name)))
    }
}

/// A tick fired by hand.
#[derive(Debug, Serialize)]
pub(super) struct Triggered {
    cron: String,
    job_id: JobId,
}

/// A cron after a pause or resume.
#[derive(Debug, Serialize)]
pub(super) struct CronPaused {
    cron: String,
    paused: bool,
    /// For a resume: whether it was paused.
    #[serde(skip_serializing_if = "Option::is_none")]
    was_paused: Option<bool>,
}

pub(super) async fn trigger(
    State(state): State<DashboardState>,
    ApiPath(p): ApiPath<CronPath>,
) -> ApiResult<Json<Triggered>> {
    let job_id = cron::trigger(state.pool(), p.registered(&state)?, "dashboard").await?;
    Ok(Json(Triggered { cron: p.name, job_id }))
}

pub(super) async fn pause(
    State(state): State<DashboardState>,
    ApiPath(p): ApiPath<CronPath>,
) -> ApiResult<Json<CronPaused>> {
    cron::pause_cron(state.pool(), p.registered(&state)?.name, "dashboard").await?;
    Ok(Json(CronPaused { cron: p.name, paused: true, was_paused: None }))
}

pub(super) async fn resume(
    State(state): State<DashboardState>,
    ApiPath(p): ApiPath<CronPath>,
) -> ApiResult<Json<CronPaused>> {
    let was_paused = cron::resume_cron(state.pool(), p.registered(&state)?.name).await?;
    Ok(Json(CronPaused { cron: p.name, paused: false, was_paused: Some(was_paused) }))
}
