//! [`ApiError`]: why an `/_api` call was refused or failed, as `application/problem+json`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use crate::gateway::Problem;
use crate::jobs::JobsError;

/// Why an `/_api` call was refused or failed.
#[derive(Debug)]
pub(super) enum ApiError {
    /// A parameter is malformed: 400 naming it.
    Bad(String),
    /// What was asked for does not exist: 404.
    NotFound(String),
    /// The job is not in a state that allows the action: 409.
    Conflict(String),
    /// The body is well formed but does not fit (a job's arguments): 422.
    Invalid(String),
    /// The database failed: 503.
    Database(sqlx::Error),
    /// Something else failed: 500, its detail logged, not shown.
    Internal(String),
}

/// What a handler answers.
pub(super) type ApiResult<T> = Result<T, ApiError>;

/// 400 for `parameter`, saying what is wrong with it.
pub(super) fn bad(parameter: &str, message: impl std::fmt::Display) -> ApiError {
    ApiError::Bad(format!("`{parameter}`: {message}"))
}

pub(super) fn problem(status: StatusCode, kind: &str, detail: impl Into<String>, instance: &str) -> Response {
    Problem::new(status, detail).with_type(format!("urn:forge:problem:{kind}")).with_instance(instance).into_response()
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        Self::Database(e)
    }
}

impl From<JobsError> for ApiError {
    fn from(e: JobsError) -> Self {
        match e {
            JobsError::NotFound(id) => ApiError::NotFound(format!("no job {id}")),
            JobsError::Database(e) => ApiError::Database(e),
            e @ (JobsError::InvalidOption(_) | JobsError::Args(_)) => ApiError::Bad(e.to_string()),
            other => ApiError::Conflict(other.to_string()),
        }
    }
}

impl From<crate::api::ApiError> for ApiError {
    fn from(e: crate::api::ApiError) -> Self {
        use crate::api::ApiError as Job;
        match e {
            Job::NotFound(detail) => ApiError::NotFound(detail),
            Job::Conflict(detail) => ApiError::Conflict(detail),
            e @ Job::Unprocessable { .. } => ApiError::Invalid(e.to_string()),
            Job::BadRequest(detail) => ApiError::Bad(detail),
            Job::Unavailable => ApiError::Database(sqlx::Error::PoolTimedOut),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            Self::Bad(detail) => problem(StatusCode::BAD_REQUEST, "invalid-parameter", detail, "/_api"),
            Self::NotFound(detail) => problem(StatusCode::NOT_FOUND, "not-found", detail, "/_api"),
            Self::Conflict(detail) => problem(StatusCode::CONFLICT, "conflict", detail, "/_api"),
            Self::Invalid(detail) => problem(StatusCode::UNPROCESSABLE_ENTITY, "invalid-args", detail, "/_api"),
            Self::Internal(detail) => {
                tracing::error!(error = %detail, "dashboard call failed");
                problem(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error", "/_api")
            }
            Self::Database(e) => {
                tracing::error!(error = %e, "dashboard query failed");
                problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the database did not answer; try again",
                    "/_api",
                )
            }
        }
    }
}

/// A JSON body (empty means `{}`), or 400 naming the field that does not fit.
pub(super) fn body<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}".as_slice() } else { bytes };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        if e.inner().is_syntax() || e.inner().is_eof() {
            bad("body", format!("is not valid JSON: {}", e.inner()))
        } else if path == "." {
            bad("body", e.inner())
        } else {
            bad(&path, e.inner())
        }
    })
}
