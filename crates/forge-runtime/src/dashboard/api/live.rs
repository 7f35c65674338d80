//! The dashboard's live pages as built-in sources of `/ws` (see the realtime layer's
//! `sources.rs`), each the JSON of an `/_api` route:
//!
//! | source | arguments | value |
//! |--------|-----------|-------|
//! | `forge:overview` | none | `GET /_api/overview` |
//! | `forge:jobs` | a filter (`state`, `kind`, `queue`, `tag`, `args`, `since`, `until`) and `limit` | the first page of `GET /_api/jobs` |
//! | `forge:job` | `{"id": N}` | `{"job": GET /_api/jobs/{id}, "logs": its latest 200 log lines}` |
//! | `forge:queues` | none | `GET /_api/queues`: every queue's depth by state, and its pause |
//! | `forge:workflow` | `{"id": N}` | `GET /_api/workflows/{id}`: the run, its steps, its events |
//!
//! The same access rule as `/_api`: the dashboard's role, or a connection from this machine in
//! development mode.

use axum::extract::State;
use serde::Deserialize;
use serde_json::Value;

use super::error::ApiError;
use super::extract::{ApiPath, ApiQuery};
use super::{cluster, jobs, queues, telemetry, workflows};
use crate::dashboard::DashboardState;
use crate::functions::ForgeError;
use crate::jobs::BoxFuture;
use crate::realtime::{Caller, LiveSource, LiveSources};

/// The dashboard's sources, over `state`.
pub(crate) fn sources(state: &DashboardState) -> LiveSources {
    LiveSources::new()
        .with("forge:overview", Source { state: state.clone(), page: Page::Overview })
        .with("forge:jobs", Source { state: state.clone(), page: Page::Jobs })
        .with("forge:job", Source { state: state.clone(), page: Page::Job })
        .with("forge:queues", Source { state: state.clone(), page: Page::Queues })
        .with("forge:workflow", Source { state: state.clone(), page: Page::Workflow })
}

#[derive(Clone, Copy, Debug)]
enum Page {
    Overview,
    Jobs,
    Job,
    Queues,
    Workflow,
}

#[derive(Debug)]
struct Source {
    state: DashboardState,
    page: Page,
}

/// `forge:job`'s and `forge:workflow`'s arguments.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JobArgs {
    id: i64,
}

impl LiveSource for Source {
    fn authorize(&self, caller: Caller<'_>) -> Result<(), ForgeError> {
        if self.state.opens_locally() && caller.local {
            return Ok(());
        }
        let role = self.state.role();
        if caller.auth.has_role(role) {
            Ok(())
        } else if caller.auth.is_authenticated() {
            Err(ForgeError::Forbidden(format!("the dashboard needs the `{role}` role")))
        } else {
            Err(ForgeError::Unauthorized)
        }
    }

    fn run(&self, args: Value) -> BoxFuture<Result<Value, ForgeError>> {
        let state = self.state.clone();
        let page = self.page;
        Box::pin(async move {
            match page {
                Page::Overview => json(cluster::overview(State(state)).await?.0),
                Page::Jobs => {
                    let args = if args.is_null() { Value::Object(Default::default()) } else { args };
                    let (page, filter) = split_jobs_args(args)?;
                    json(jobs::list(State(state), ApiQuery(page), ApiQuery(filter)).await?.0)
                }
                Page::Job => {
                    let JobArgs { id } = serde_json::from_value(args).map_err(|e| invalid(&e.to_string()))?;
                    let job = jobs::one(State(state.clone()), ApiPath(jobs::JobPath::of(id))).await?.0;
                    let logs = telemetry::fetch_logs(
                        &state,
                        telemetry::LogParams { job: Some(id), limit: Some(200), ..Default::default() },
                    )
                    .await?
                    .0;
                    Ok(serde_json::json!({ "job": json(job)?, "logs": json(logs)? }))
                }
                Page::Queues => json(queues::list(State(state)).await?.0),
                Page::Workflow => {
                    let JobArgs { id } = serde_json::from_value(args).map_err(|e| invalid(&e.to_string()))?;
                    json(workflows::one(State(state), ApiPath(workflows::RunPath::of(id))).await?.0)
                }
            }
        })
    }
}

/// `forge:jobs`'s arguments: the page size beside the filter's fields (no `before`: a live
/// list is the newest page).
fn split_jobs_args(args: Value) -> Result<(jobs::PageParams, jobs::FilterParams), ForgeError> {
    let Value::Object(mut fields) = args else {
        return Err(invalid("forge:jobs takes an object: the filter's fields and `limit`"));
    };
    let mut page = serde_json::Map::new();
    if let Some(limit) = fields.remove("limit") {
        page.insert("limit".to_owned(), limit);
    }
    // Empty fields (an unset form input) mean no condition.
    fields.retain(|_, v| !(v.is_null() || v.as_str() == Some("")));
    let page = serde_json::from_value(Value::Object(page)).map_err(|e| invalid(&e.to_string()))?;
    let filter = serde_json::from_value(Value::Object(fields)).map_err(|e| invalid(&e.to_string()))?;
    Ok((page, filter))
}

fn json(value: impl serde::Serialize) -> Result<Value, ForgeError> {
    serde_json::to_value(value).map_err(|e| ForgeError::Internal(e.to_string()))
}

fn invalid(message: &str) -> ForgeError {
    ForgeError::InvalidArgs { message: message.to_owned(), errors: Vec::new() }
}

impl From<ApiError> for ForgeError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Bad(m) | ApiError::Invalid(m) => invalid(&m),
            ApiError::NotFound(m) => ForgeError::NotFound(m),
            ApiError::Conflict(m) => ForgeError::Conflict(m),
            ApiError::Database(e) => ForgeError::Internal(e.to_string()),
            ApiError::Internal(m) => ForgeError::Internal(m),
        }
    }
}
