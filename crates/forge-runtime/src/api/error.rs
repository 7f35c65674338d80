//! [`ApiError`]: every error `/v1` answers, as RFC 7807 problems.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::functions::FieldError;
use crate::gateway::Problem;

/// Why a `/v1` request was refused. Each variant owns its status; the problem's `type` is
/// `urn:forge:problem:<slug>`, its `detail` the message below.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The request is malformed: not JSON, a bad query parameter, a bad header (400).
    #[error("{0}")]
    BadRequest(String),
    /// No credentials, or credentials that do not hold (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Valid credentials without the right (403).
    #[error("{0}")]
    Forbidden(String),
    /// Nothing there, or not the caller's (404).
    #[error("{0}")]
    NotFound(String),
    /// The resource is not in a state that allows this, or the same idempotency key is in
    /// flight (409).
    #[error("{0}")]
    Conflict(String),
    /// The body is JSON but does not fit: each field error names its path (422).
    #[error("{detail}")]
    Unprocessable {
        /// What is wrong, in one sentence.
        detail: String,
        /// The fields at fault.
        errors: Vec<FieldError>,
    },
    /// The client's token bucket is empty (429, with `Retry-After`).
    #[error("{0}")]
    TooManyRequests(String),
    /// The body is not `application/json` (415).
    #[error("the body must be application/json")]
    UnsupportedMediaType,
    /// The database could not be reached (503, with `Retry-After`).
    #[error("the service is unavailable; retry shortly")]
    Unavailable,
    /// Anything else: logged with the request, never shown (500).
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// A 422 for one field.
    pub fn field(path: impl Into<String>, message: impl Into<String>) -> Self {
        let (path, message) = (path.into(), message.into());
        ApiError::Unprocessable { detail: format!("{path}: {message}"), errors: vec![FieldError { path, message }] }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn slug(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad-request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not-found",
            ApiError::Conflict(_) => "conflict",
            ApiError::Unprocessable { .. } => "invalid-request",
            ApiError::UnsupportedMediaType => "unsupported-media-type",
            ApiError::TooManyRequests(_) => "rate-limited",
            ApiError::Unavailable => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }

    /// The problem document.
    pub fn problem(&self) -> Problem {
        let mut problem =
            Problem::new(self.status(), self.to_string()).with_type(format!("urn:forge:problem:{}", self.slug()));
        if let ApiError::Unprocessable { errors, .. } = self {
            problem.errors = errors.clone();
        }
        problem
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
                tracing::warn!(error = %e, "/v1: the database is unavailable");
                ApiError::Unavailable
            }
            other => {
                tracing::error!(error = %other, "/v1: database error");
                ApiError::Internal(other.to_string())
            }
        }
    }
}

impl From<crate::jobs::JobsError> for ApiError {
    fn from(e: crate::jobs::JobsError) -> Self {
        use crate::jobs::JobsError;
        match e {
            JobsError::InvalidArgs { message, .. } => {
                // The registry says `<path>: <message>` (a path has no spaces), or just the
                // message when the whole value is at fault.
                match message
                    .split_once(": ")
                    .filter(|(path, _)| !path.is_empty() && !path.contains(char::is_whitespace))
                {
                    Some((path, message)) => {
                        let sep = if path.starts_with('[') { "" } else { "." };
                        ApiError::field(with_missing_field(&format!("args{sep}{path}"), message), message)
                    }
                    None => ApiError::field(with_missing_field("args", &message), message),
                }
            }
            JobsError::InvalidOption(message) => ApiError::Unprocessable { detail: message.clone(), errors: vec![] },
            JobsError::Database(e) => e.into(),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// The path of the field at fault: serde names a missing field in its message (`missing field
/// \`url\``) with the path of the object that lacks it, so the field's name is appended.
pub(crate) fn with_missing_field(path: &str, message: &str) -> String {
    match message.strip_prefix("missing field `").and_then(|rest| rest.split_once('`')) {
        Some((field, _)) if path.is_empty() => field.to_owned(),
        Some((field, _)) => format!("{path}.{field}"),
        None => path.to_owned(),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let unavailable = matches!(self, ApiError::Unavailable);
        let unauthorized = matches!(self, ApiError::Unauthorized(_));
        let mut response = self.problem().into_response();
        if unavailable {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if unauthorized {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
