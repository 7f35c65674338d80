//! `POST /rpc` (JSON-RPC 2.0: single calls, batches, notifications) and `POST /rpc/{function}`
//! (the body is the arguments; `{"data": …}` or an RFC 7807 problem).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::problem::Problem;
use super::routes::GatewayState;
use crate::functions::{CallParts, ForgeError};

/// Most calls in one batch.
const MAX_BATCH: usize = 100;

fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

fn body_problem(rejection: BytesRejection, instance: &str) -> Response {
    let status = rejection.status();
    let detail = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "the request body is larger than the gateway's body_limit".to_owned()
    } else {
        rejection.body_text()
    };
    Problem::new(status, detail).with_instance(instance).into_response()
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")))
}

/// `POST /rpc/{function}`.
pub(crate) async fn call_rest(
    State(state): State<GatewayState>,
    Path(function): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let instance = format!("/rpc/{function}");
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return body_problem(rejection, &instance),
    };
    if !body.is_empty() && !is_json(&headers) {
        return Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send the arguments as application/json")
            .with_instance(instance)
            .into_response();
    }
    let args = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(args) => args,
            Err(e) => {
                return Problem::new(StatusCode::BAD_REQUEST, format!("the body is not valid JSON: {e}"))
                    .with_instance(instance)
                    .into_response();
            }
        }
    };
    let parts = CallParts { pool: state.pool().clone(), request_id: request_id(&headers) };
    match state.functions().call(&function, parts, args).await {
        None => Problem::new(StatusCode::NOT_FOUND, format!("no function named {function:?}"))
            .with_instance(instance)
            .into_response(),
        Some(Ok(data)) => (StatusCode::OK, axum::Json(json!({ "data": data }))).into_response(),
        Some(Err(e)) => error_problem(&e, &function, &instance),
    }
}

fn error_problem(e: &ForgeError, function: &str, instance: &str) -> Response {
    if let ForgeError::Internal(message) = e {
        tracing::error!(function, error = %message, "function failed");
    }
    let mut problem = Problem::new(e.status(), e.public_message()).with_instance(instance);
    problem.errors = e.field_errors().to_vec();
    problem.data = e.data().cloned();
    problem.into_response()
}

/// `POST /rpc`.
pub(crate) async fn call_jsonrpc(
    State(state): State<GatewayState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => return body_problem(rejection, "/rpc"),
    };
    let request_id = request_id(&headers);
    let message: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return reply(Some(rpc_error(Value::Null, -32700, "parse error", None))),
    };
    match message {
        Value::Array(calls) if calls.is_empty() => {
            reply(Some(rpc_error(Value::Null, -32600, "invalid request: empty batch", None)))
        }
        Value::Array(calls) if calls.len() > MAX_BATCH => reply(Some(rpc_error(
            Value::Null,
            -32600,
            &format!("invalid request: a batch holds at most {MAX_BATCH} calls"),
            None,
        ))),
        Value::Array(calls) => {
            let mut replies = Vec::new();
            for call in calls {
                if let Some(r) = one_call(&state, &request_id, call).await {
                    replies.push(r);
                }
            }
            if replies.is_empty() { StatusCode::NO_CONTENT.into_response() } else { reply(Some(Value::Array(replies))) }
        }
        call => reply(one_call(&state, &request_id, call).await),
    }
}

fn reply(body: Option<Value>) -> Response {
    match body {
        Some(body) => (StatusCode::OK, axum::Json(body)).into_response(),
        // A notification gets no answer.
        None => StatusCode::NO_CONTENT.into_response(),
    }
}

fn rpc_error(id: Value, code: i64, message: &str, data: Option<Value>) -> Value {
    let mut error = json!({ "code": code, "message": message });
    if let Some(data) = data {
        error["data"] = data;
    }
    json!({ "jsonrpc": "2.0", "error": error, "id": id })
}

/// Runs one call; `None` for a notification (no `id`).
async fn one_call(state: &GatewayState, request_id: &str, call: Value) -> Option<Value> {
    let Value::Object(call) = call else {
        return Some(rpc_error(Value::Null, -32600, "invalid request: a call is a JSON object", None));
    };
    let id = call.get("id").cloned();
    let valid_id = matches!(&id, None | Some(Value::String(_) | Value::Number(_) | Value::Null));
    let reply_id = if valid_id { id.clone().unwrap_or(Value::Null) } else { Value::Null };
    if call.get("jsonrpc") != Some(&json!("2.0")) || !valid_id {
        return Some(rpc_error(
            reply_id,
            -32600,
            "invalid request: expected jsonrpc \"2.0\", a method and an optional id",
            None,
        ));
    }
    let Some(Value::String(method)) = call.get("method") else {
        return Some(rpc_error(reply_id, -32600, "invalid request: method must be a string", None));
    };
    let params = match call.get("params") {
        None => Value::Null,
        Some(p @ (Value::Object(_) | Value::Array(_))) => p.clone(),
        Some(_) => {
            return Some(rpc_error(reply_id, -32600, "invalid request: params must be an object or an array", None));
        }
    };
    let parts = CallParts { pool: state.pool().clone(), request_id: request_id.to_owned() };
    let result = state.functions().call(method, parts, params).await;
    id.as_ref()?;
    Some(match result {
        None => rpc_error(reply_id, -32601, &format!("method not found: {method}"), None),
        Some(Ok(value)) => json!({ "jsonrpc": "2.0", "result": value, "id": reply_id }),
        Some(Err(e)) => {
            if let ForgeError::Internal(message) = &e {
                tracing::error!(function = %method, error = %message, "function failed");
            }
            let data = match (e.field_errors(), e.data()) {
                ([], None) => None,
                ([], Some(data)) => Some(data.clone()),
                (errors, _) => Some(json!({ "errors": errors })),
            };
            rpc_error(reply_id, e.rpc_code(), &e.public_message(), data)
        }
    })
}
