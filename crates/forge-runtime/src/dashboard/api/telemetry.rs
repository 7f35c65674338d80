//! `/_api/logs`, `/_api/traces/{trace_id}` and `/_api/metrics…`: what the node recorded.

use std::time::Duration;

use axum::Json;
use axum::extract::{RawQuery, State};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult, bad};
use super::extract::{ApiPath, ApiQuery, from_pairs, query_pairs};
use crate::dashboard::{DashboardState, sql};
use crate::observability::{self, LogCursor, LogPage, LogQuery, SeriesQuery, Trace, TraceId};

const LEVELS: [&str; 5] = ["error", "warn", "info", "debug", "trace"];

/// A log search.
#[derive(Debug, Default, Deserialize)]
pub(super) struct LogParams {
    /// The least severe level shown.
    pub(super) level: Option<String>,
    /// Text the message contains.
    pub(super) q: Option<String>,
    pub(super) job: Option<i64>,
    pub(super) trace: Option<TraceId>,
    pub(super) node: Option<String>,
    pub(super) since: Option<DateTime<Utc>>,
    pub(super) until: Option<DateTime<Utc>>,
    pub(super) limit: Option<u32>,
    /// The previous page's `next`, in two halves.
    pub(super) before_at: Option<DateTime<Utc>>,
    pub(super) before_id: Option<i64>,
}

pub(super) async fn logs(
    State(state): State<DashboardState>,
    ApiQuery(params): ApiQuery<LogParams>,
) -> ApiResult<Json<LogPage>> {
    fetch_logs(&state, params).await
}

/// Runs a log search.
pub(super) async fn fetch_logs(state: &DashboardState, p: LogParams) -> ApiResult<Json<LogPage>> {
    let mut query = LogQuery::default();
    if let Some(level) = p.level {
        if !LEVELS.contains(&level.as_str()) {
            return Err(bad("level", format!("{level:?} is not one of {}", LEVELS.join(", "))));
        }
        query = query.min_level(&level);
    }
    if let Some(text) = p.q {
        query = query.text(text);
    }
    if let Some(id) = p.job {
        query = query.job(id);
    }
    if let Some(trace) = p.trace {
        query = query.trace(trace);
    }
    if let Some(node) = p.node {
        query = query.node(node);
    }
    if let Some(t) = p.since {
        query = query.since(t);
    }
    if let Some(t) = p.until {
        query = query.until(t);
    }
    if let Some(n) = p.limit {
        let max = observability::MAX_LOG_PAGE;
        if !(1..=max).contains(&n) {
            return Err(bad("limit", format!("must be between 1 and {max}")));
        }
        query = query.limit(n);
    }
    match (p.before_at, p.before_id) {
        (Some(at), Some(id)) => query = query.before(LogCursor { at, id }),
        (None, None) => {}
        _ => return Err(bad("before_at", "goes with `before_id` (both from a page's `next`)")),
    }
    Ok(Json(query.fetch(state.pool()).await?))
}

/// `{trace_id}` of `/_api/traces/{trace_id}`.
#[derive(Debug, Deserialize)]
pub(super) struct TracePath {
    trace_id: TraceId,
}

pub(super) async fn trace(
    State(state): State<DashboardState>,
    ApiPath(p): ApiPath<TracePath>,
) -> ApiResult<Json<Trace>> {
    let trace = observability::trace(state.pool(), p.trace_id).await?;
    trace.map(Json).ok_or_else(|| ApiError::NotFound(format!("no spans stored for trace {}", p.trace_id)))
}

/// The stored metrics' names.
#[derive(Debug, Serialize)]
pub(super) struct MetricNames {
    names: Vec<String>,
}

pub(super) async fn metric_names(State(state): State<DashboardState>) -> ApiResult<Json<MetricNames>> {
    Ok(Json(MetricNames { names: sqlx::query_scalar(sql::METRIC_NAMES).fetch_all(state.pool()).await? }))
}

/// `{name}` of `/_api/metrics/{name}`.
#[derive(Debug, Deserialize)]
pub(super) struct MetricPath {
    name: String,
}

/// A metric's range and resolution (its `label` filters repeat, so they are read apart).
#[derive(Debug, Deserialize)]
struct SeriesParams {
    since: Option<DateTime<Utc>>,
    until: Option<DateTime<Utc>>,
    /// Such as `"1m"`.
    step: Option<String>,
}

/// A metric's series.
#[derive(Debug, Serialize)]
pub(super) struct MetricSeries {
    series: Vec<observability::Series>,
}

pub(super) async fn metric(
    State(state): State<DashboardState>,
    ApiPath(p): ApiPath<MetricPath>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<MetricSeries>> {
    let (labels, rest): (Vec<_>, Vec<_>) = query_pairs(raw.as_deref()).into_iter().partition(|(k, _)| k == "label");
    let params: SeriesParams = from_pairs(rest)?;
    let until = params.until.unwrap_or_else(Utc::now);
    let since = params.since.unwrap_or(until - chrono::Duration::hours(1));
    if since >= until {
        return Err(bad("since", "must be before `until`"));
    }
    let mut query = SeriesQuery::new(p.name).range(since, until);
    if let Some(step) = params.step {
        match step.parse::<forge_core::config::Duration>().map(|d| d.as_std()) {
            Ok(d) if d >= Duration::from_secs(1) => query = query.step(d),
            _ => return Err(bad("step", format!("{step:?} is not a duration of at least 1s, such as \"1m\""))),
        }
    }
    for (_, label) in labels {
        let (key, value) = label.split_once(':').ok_or_else(|| bad("label", format!("{label:?} is not key:value")))?;
        query = query.label(key, value);
    }
    Ok(Json(MetricSeries { series: query.fetch(state.pool()).await? }))
}
