//! [`ForgeError`]: what a function returns when it fails, and how the gateway shows it.

use axum::http::StatusCode;
use serde::Serialize;

/// One invalid field of the arguments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// The field's path, such as `user.email` or `items[2].qty`.
    pub path: String,
    /// What is wrong with it.
    pub message: String,
}

/// A function's failure. Each variant owns its HTTP status and JSON-RPC code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForgeError {
    /// The arguments do not fit the function (400 / −32602).
    #[error("invalid arguments: {message}")]
    InvalidArgs {
        /// What is wrong.
        message: String,
        /// The fields concerned.
        errors: Vec<FieldError>,
    },
    /// Valid arguments the function refuses (422).
    #[error("{message}")]
    Validation {
        /// What is wrong.
        message: String,
        /// The fields concerned.
        errors: Vec<FieldError>,
    },
    /// Something asked for does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// No function has this name (404 / −32601).
    #[error("no function named {0:?}")]
    UnknownFunction(String),
    /// The caller's rate limit is spent (429, with `Retry-After`).
    #[error("rate limit exceeded; retry in {}s", retry_after.as_secs().max(1))]
    RateLimited {
        /// When a call will be allowed again.
        retry_after: std::time::Duration,
    },
    /// A uniqueness or state conflict (409).
    #[error("{0}")]
    Conflict(String),
    /// No valid credentials (401).
    #[error("authentication required: send `Authorization: Bearer <JWT or API key>`")]
    Unauthorized,
    /// Credentials without the needed role (403).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The function ran past its timeout (504).
    #[error("the function did not finish within {0:?}")]
    Timeout(std::time::Duration),
    /// An application error with its own code, status and data.
    #[error("{message}")]
    App {
        /// JSON-RPC error code (outside −32768..−32000).
        code: i64,
        /// HTTP status.
        status: u16,
        /// The message.
        message: String,
        /// Extra data for the caller.
        data: Option<serde_json::Value>,
    },
    /// Anything else (500 / −32603). The message is logged, never shown to the caller.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ForgeError {
    /// A 422 with one field error.
    pub fn invalid_field(path: impl Into<String>, message: impl Into<String>) -> Self {
        let message = message.into();
        ForgeError::Validation { message: message.clone(), errors: vec![FieldError { path: path.into(), message }] }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ForgeError::InvalidArgs { .. } => StatusCode::BAD_REQUEST,
            ForgeError::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ForgeError::NotFound(_) | ForgeError::UnknownFunction(_) => StatusCode::NOT_FOUND,
            ForgeError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ForgeError::Conflict(_) => StatusCode::CONFLICT,
            ForgeError::Unauthorized => StatusCode::UNAUTHORIZED,
            ForgeError::Forbidden(_) => StatusCode::FORBIDDEN,
            ForgeError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ForgeError::App { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            ForgeError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON-RPC error code.
    pub fn rpc_code(&self) -> i64 {
        match self {
            ForgeError::InvalidArgs { .. } => -32602,
            ForgeError::Internal(_) => -32603,
            ForgeError::Validation { .. } => -32000,
            ForgeError::NotFound(_) => -32004,
            ForgeError::UnknownFunction(_) => -32601,
            ForgeError::RateLimited { .. } => -32029,
            ForgeError::Conflict(_) => -32009,
            ForgeError::Unauthorized => -32001,
            ForgeError::Forbidden(_) => -32003,
            ForgeError::Timeout(_) => -32008,
            ForgeError::App { code, .. } => *code,
        }
    }

    /// The message shown to callers (internal errors say only that they happened).
    pub fn public_message(&self) -> String {
        match self {
            ForgeError::Internal(_) => "internal error".to_owned(),
            other => other.to_string(),
        }
    }

    /// Field errors, if any.
    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            ForgeError::InvalidArgs { errors, .. } | ForgeError::Validation { errors, .. } => errors,
            _ => &[],
        }
    }

    /// Application data, if any.
    pub fn data(&self) -> Option<serde_json::Value> {
        match self {
            ForgeError::App { data, .. } => data.clone(),
            ForgeError::RateLimited { retry_after } => {
                Some(serde_json::json!({ "retry_after": retry_after.as_secs().max(1) }))
            }
            _ => None,
        }
    }

    /// Seconds until a rate-limited caller may try again (the `Retry-After` header).
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ForgeError::RateLimited { retry_after } => Some(retry_after.as_secs().max(1)),
            _ => None,
        }
    }

    /// A URI naming the kind of problem, for RFC 7807's `type`.
    pub fn problem_type(&self) -> &'static str {
        match self {
            ForgeError::InvalidArgs { .. } => "urn:forge:problem:invalid-args",
            ForgeError::Validation { .. } => "urn:forge:problem:validation",
            ForgeError::NotFound(_) => "urn:forge:problem:not-found",
            ForgeError::UnknownFunction(_) => "urn:forge:problem:unknown-function",
            ForgeError::RateLimited { .. } => "urn:forge:problem:rate-limited",
            ForgeError::Conflict(_) => "urn:forge:problem:conflict",
            ForgeError::Unauthorized => "urn:forge:problem:unauthorized",
            ForgeError::Forbidden(_) => "urn:forge:problem:forbidden",
            ForgeError::Timeout(_) => "urn:forge:problem:timeout",
            ForgeError::App { .. } => "urn:forge:problem:application",
            ForgeError::Internal(_) => "urn:forge:problem:internal",
        }
    }
}

impl From<sqlx::Error> for ForgeError {
    fn from(e: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &e
            && db.code().as_deref() == Some("23505")
        {
            return ForgeError::Conflict("a record with the same unique value exists".to_owned());
        }
        if matches!(e, sqlx::Error::RowNotFound) {
            return ForgeError::NotFound("not found".to_owned());
        }
        ForgeError::Internal(e.to_string())
    }
}

/// A JSON error inside a function (building or reading a value) is the server's fault (500);
/// bad arguments from the caller are reported before the function runs, as `InvalidArgs`.
impl From<serde_json::Error> for ForgeError {
    fn from(e: serde_json::Error) -> Self {
        ForgeError::Internal(format!("json: {e}"))
    }
}

/// An outgoing HTTP request that failed (an action's `ctx.http()`): a 500 whose detail stays in
/// the server's logs.
impl From<reqwest::Error> for ForgeError {
    fn from(e: reqwest::Error) -> Self {
        ForgeError::Internal(format!("http: {e}"))
    }
}

impl From<crate::jobs::JobsError> for ForgeError {
    fn from(e: crate::jobs::JobsError) -> Self {
        ForgeError::Internal(e.to_string())
    }
}
