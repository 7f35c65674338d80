//! Reading a request: its JSON body into a type (415, 400 or 422 naming the field) and its
//! query parameters (400 naming the parameter).

use axum::http::{HeaderMap, header};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::functions::FieldError;

/// The body as JSON: empty is `{}` (for POSTs that take no options); anything else must be
/// `application/json`.
pub(crate) fn json_value(headers: &HeaderMap, body: &[u8]) -> Result<serde_json::Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(serde_json::Value::Object(serde_json::Map::new()));
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(ApiError::UnsupportedMediaType);
    }
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON: {e}")))
}

/// `value` as a `T`: a 422 naming the field that does not fit.
pub(crate) fn parse<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.inner().to_string();
        let path = super::error::with_missing_field(if path == "." { "" } else { &path }, &message);
        let detail = if path.is_empty() { message.clone() } else { format!("{path}: {message}") };
        ApiError::Unprocessable { detail, errors: vec![FieldError { path, message }] }
    })
}

/// The query string as a `T`: a 400 naming the parameter that does not fit.
pub(crate) fn query<T: DeserializeOwned>(query: Option<&str>) -> Result<T, ApiError> {
    let pairs = form_urlencoded::parse(query.unwrap_or_default().as_bytes());
    let mut map = serde_json::Map::new();
    for (key, value) in pairs {
        if map.insert(key.to_string(), serde_json::Value::String(value.to_string())).is_some() {
            return Err(ApiError::BadRequest(format!("query parameter `{key}` is given twice")));
        }
    }
    serde_path_to_error::deserialize(serde_json::Value::Object(map))
        .map_err(|e| ApiError::BadRequest(format!("query parameter `{}`: {}", e.path(), e.inner())))
}

/// Text a client sent for storage: no NUL (Postgres cannot store it), `1..=max` characters.
pub(crate) fn check_text(path: &str, text: &str, max: usize) -> Result<(), ApiError> {
    if text.contains('\0') {
        return Err(ApiError::field(path, "must not contain NUL (\\u0000)"));
    }
    let n = text.chars().count();
    if n == 0 || n > max {
        return Err(ApiError::field(path, format!("must be 1 to {max} characters")));
    }
    Ok(())
}
