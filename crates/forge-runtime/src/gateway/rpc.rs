//! `POST /rpc` (JSON-RPC 2.0: single calls, batches, notifications) and `POST /rpc/{function}`
//! (the body is the arguments; `{"data": …}` or an RFC 7807 problem).

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::auth::AuthError;
use super::problem::Problem;
use super::request::RequestMeta;
use super::state::GatewayState;
use crate::functions::{CallParts, ForgeError};

/// Most calls in one batch.
const MAX_BATCH: usize = 100;

/// The request's headers, taken out of it (the `HeaderMap` extractor would copy them all), and
/// its body, read whole under `[gateway] body_limit`.
async fn headers_and_body(request: Request, limit: usize) -> (HeaderMap, Result<Bytes, BodyError>) {
    let (parts, body) = request.into_parts();
    (parts.headers, read_whole(body, limit).await)
}

/// Why a body could not be read.
#[derive(Debug)]
enum BodyError {
    /// Longer than the limit.
    TooLarge,
    /// The connection failed while it was being sent.
    Unreadable(axum::Error),
}

/// `body`, read whole, or [`BodyError::TooLarge`] as soon as it is longer than `limit` bytes (a
/// declared length too long is refused before reading). A body in one piece, as most are, is
/// kept as it came, without a copy or a list of pieces.
async fn read_whole(mut body: axum::body::Body, limit: usize) -> Result<Bytes, BodyError> {
    use http_body_util::BodyExt as _;
    if usize::try_from(axum::body::HttpBody::size_hint(&body).lower()).unwrap_or(usize::MAX) > limit {
        return Err(BodyError::TooLarge);
    }
    let mut whole: Option<Bytes> = None;
    let mut pieces: Option<Vec<u8>> = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(BodyError::Unreadable)?.into_data() else {
            continue; // trailers
        };
        let length = whole.as_ref().map_or(0, Bytes::len) + pieces.as_ref().map_or(0, |p| p.len()) + data.len();
        if length > limit {
            return Err(BodyError::TooLarge);
        }
        match (&mut whole, &mut pieces) {
            (None, None) => whole = Some(data),
            (Some(first), None) => {
                let mut joined = Vec::with_capacity(length);
                joined.extend_from_slice(first);
                joined.extend_from_slice(&data);
                whole = None;
                pieces = Some(joined);
            }
            (_, Some(joined)) => joined.extend_from_slice(&data),
        }
        // A body whose declared length is all in: done, without polling it once more for its
        // end (a wake-up of the connection's reader and a look at the trailers).
        if axum::body::HttpBody::is_end_stream(&body) {
            break;
        }
    }
    Ok(pieces.map(Bytes::from).or(whole).unwrap_or_default())
}

/// The body, or the problem that it is too large, unreadable or not JSON.
#[allow(clippy::result_large_err, reason = "the error is the response itself, returned at once")]
fn read_body(
    headers: &HeaderMap,
    body: Result<Bytes, BodyError>,
    instance: impl std::fmt::Display,
) -> Result<Bytes, Response> {
    let body = body.map_err(|e| {
        let (status, detail) = match e {
            BodyError::TooLarge => {
                (StatusCode::PAYLOAD_TOO_LARGE, "the request body is larger than the gateway's body_limit".to_owned())
            }
            BodyError::Unreadable(e) => (StatusCode::BAD_REQUEST, format!("the request body could not be read: {e}")),
        };
        Problem::new(status, detail)
            .with_type("urn:forge:problem:body")
            .with_instance(instance.to_string())
            .into_response()
    })?;
    if !body.is_empty() && !is_json(headers) {
        return Err(Problem::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send the body as application/json")
            .with_type("urn:forge:problem:media-type")
            .with_instance(instance.to_string())
            .into_response());
    }
    Ok(body)
}

/// Whether the body is declared JSON: `application/json`, in any case, with parameters or not.
fn is_json(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|v| {
        let media_type = v.as_bytes().split(|b| *b == b';').next().unwrap_or_default();
        media_type.trim_ascii().eq_ignore_ascii_case(b"application/json")
    })
}

/// What the request middleware learnt about the request, taken out of it (the `Extension`
/// extractor would clone it). Missing only if the handler were routed without the middleware.
#[allow(clippy::result_large_err, reason = "the error is the response itself, returned at once")]
fn request_meta(request: &mut Request) -> Result<RequestMeta, Response> {
    request.extensions_mut().remove::<RequestMeta>().ok_or_else(|| {
        tracing::error!("an /rpc request reached its handler without the request middleware");
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
    })
}

/// The call's parts with its caller, or the 401 (503) for credentials that do not hold.
#[allow(clippy::result_large_err, reason = "the error is the response itself, returned at once")]
async fn call_parts(
    state: &GatewayState,
    meta: &RequestMeta,
    headers: &HeaderMap,
    instance: impl std::fmt::Display,
) -> Result<CallParts, Response> {
    let auth = state.authenticator().authenticate(headers).await.map_err(|e| {
        let status = match e {
            AuthError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        };
        if let AuthError::Unavailable(reason) = &e {
            tracing::error!(error = %reason, "credentials could not be checked");
        }
        let detail = if status == StatusCode::UNAUTHORIZED { e.to_string() } else { "try again later".to_owned() };
        let mut response = Problem::new(status, detail)
            .with_type("urn:forge:problem:unauthorized")
            .with_instance(instance.to_string())
            .into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    })?;
    let mut parts = state.request_parts(meta.request_id.clone(), meta.trace_id, auth).with_client_ip(meta.client_ip);
    parts.request_deadline = Some(meta.deadline);
    Ok(parts)
}

/// `POST /rpc/{function}`.
pub(crate) async fn call_rest(
    State(state): State<GatewayState>,
    Path(function): Path<String>,
    mut request: Request,
) -> Response {
    let meta = match request_meta(&mut request) {
        Ok(meta) => meta,
        Err(problem) => return problem,
    };
    let (headers, body) = headers_and_body(request, state.http_settings().body_limit).await;
    // The problem's `instance`, written only for an answer that is one.
    let instance = Instance(&function);
    let body = match read_body(&headers, body, instance) {
        Ok(body) => body,
        Err(problem) => return problem,
    };
    let args = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(args) => args,
            Err(e) => {
                return Problem::new(StatusCode::BAD_REQUEST, format!("the body is not valid JSON: {e}"))
                    .with_type("urn:forge:problem:malformed-json")
                    .with_instance(instance.to_string())
                    .into_response();
            }
        }
    };
    let parts = match call_parts(&state, &meta, &headers, instance).await {
        Ok(parts) => parts,
        Err(problem) => return problem,
    };
    match state.call(&function, parts, args).await {
        Ok(data) => data_response(&data),
        Err(e) => error_problem(&e, &function, &instance.to_string(), &meta.request_id),
    }
}

/// `/rpc/{function}`, the `instance` of a problem answering `POST /rpc/{function}`.
#[derive(Clone, Copy)]
struct Instance<'a>(&'a str);

impl std::fmt::Display for Instance<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "/rpc/{}", self.0)
    }
}

/// `{"data": …}`, written straight from the value (no map built around it first).
fn data_response(data: &Value) -> Response {
    let mut body = Vec::with_capacity(128);
    body.extend_from_slice(b"{\"data\":");
    if let Err(e) = serde_json::to_writer(&mut body, data) {
        // A `Value` always serialises; were it ever not to, the caller gets a 500, not a 200
        // with half a body.
        tracing::error!(error = %e, "a function's result could not be written");
        return Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response();
    }
    body.push(b'}');
    // Built directly: `Vec<u8>`'s own response would set a content type only to have it replaced.
    let mut response = Response::new(axum::body::Body::from(body));
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn error_problem(e: &ForgeError, function: &str, instance: &str, request_id: &str) -> Response {
    if let ForgeError::Internal(message) = e {
        tracing::error!(function, error = %message, "function failed");
    }
    let mut problem = Problem::new(e.status(), e.public_message()).with_type(e.problem_type()).with_instance(instance);
    if e.status().is_server_error() {
        problem = problem.with_request_id(request_id);
    }
    problem.errors = e.field_errors().to_vec();
    problem.data = e.data();
    let mut response = problem.into_response();
    add_error_headers(&mut response, e);
    response
}

fn add_error_headers(response: &mut Response, e: &ForgeError) {
    if let Some(secs) = e.retry_after() {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    if matches!(e, ForgeError::Unauthorized) {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
}

/// `POST /rpc`.
pub(crate) async fn call_jsonrpc(State(state): State<GatewayState>, mut request: Request) -> Response {
    let meta = match request_meta(&mut request) {
        Ok(meta) => meta,
        Err(problem) => return problem,
    };
    let (headers, body) = headers_and_body(request, state.http_settings().body_limit).await;
    let body = match read_body(&headers, body, "/rpc") {
        Ok(body) => body,
        Err(problem) => return problem,
    };
    let message: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return reply(Some(rpc_error(Value::Null, -32700, "parse error", None))),
    };
    let parts = match call_parts(&state, &meta, &headers, "/rpc").await {
        Ok(parts) => parts,
        Err(problem) => return problem,
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
                if let Some(r) = one_call(&state, &parts, call).await {
                    replies.push(r);
                }
            }
            if replies.is_empty() { StatusCode::NO_CONTENT.into_response() } else { reply(Some(Value::Array(replies))) }
        }
        call => reply(one_call(&state, &parts, call).await),
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
async fn one_call(state: &GatewayState, parts: &CallParts, call: Value) -> Option<Value> {
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
    // By name (an object) the params are the argument; by position (an array) they are the
    // argument list, which holds the one argument (or none, for `()`).
    let params = match call.get("params") {
        None => Value::Null,
        Some(p @ Value::Object(_)) => p.clone(),
        Some(Value::Array(list)) => match list.as_slice() {
            [] => Value::Null,
            [one] => one.clone(),
            more => {
                let message = format!("invalid params: by-position params hold one argument, not {}", more.len());
                return id.as_ref().map(|_| rpc_error(reply_id, -32602, &message, None));
            }
        },
        Some(_) => {
            return Some(rpc_error(reply_id, -32600, "invalid request: params must be an object or an array", None));
        }
    };
    let result = state.call(method, parts.clone(), params).await;
    id.as_ref()?;
    Some(match result {
        Ok(value) => json!({ "jsonrpc": "2.0", "result": value, "id": reply_id }),
        Err(e) => {
            if let ForgeError::Internal(message) = &e {
                tracing::error!(function = %method, error = %message, "function failed");
            }
            let data = match (e.field_errors(), e.data()) {
                _ if e.status().is_server_error() => Some(json!({ "request_id": parts.request_id })),
                ([], data) => data,
                (errors, _) => Some(json!({ "errors": errors })),
            };
            rpc_error(reply_id, e.rpc_code(), &e.public_message(), data)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_body_is_json_when_its_media_type_says_so_in_any_case_with_or_without_parameters() {
        let declared = |value: Option<&'static str>| {
            let mut headers = HeaderMap::new();
            if let Some(value) = value {
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
            }
            is_json(&headers)
        };
        assert!(declared(Some("application/json")));
        assert!(declared(Some("Application/JSON; charset=utf-8")));
        assert!(declared(Some(" application/json ;charset=utf-8")));
        assert!(!declared(Some("text/plain")));
        assert!(!declared(Some("application/jsonp")));
        assert!(!declared(Some("application/json-seq")));
        assert!(!declared(Some("")));
        assert!(!declared(None));
    }

    /// A body sent as `pieces`, then failing if `fails`.
    fn body_of(pieces: &[&'static str], fails: bool) -> axum::body::Body {
        let mut frames: Vec<Result<Bytes, std::io::Error>> =
            pieces.iter().map(|p| Ok(Bytes::from_static(p.as_bytes()))).collect();
        if fails {
            frames.push(Err(std::io::Error::other("connection reset")));
        }
        axum::body::Body::from_stream(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn a_body_is_read_whole_in_one_piece_or_many_up_to_the_limit() {
        // One piece is kept as it came; many are joined in order; none is empty.
        assert_eq!(read_whole(body_of(&["[1,2]"], false), 5).await.expect("one piece"), "[1,2]");
        assert_eq!(read_whole(body_of(&["[1", ",", "2]"], false), 5).await.expect("pieces"), "[1,2]");
        assert_eq!(read_whole(body_of(&[], false), 5).await.expect("empty"), "");
        // One byte over, in the first piece or the last; a declared length over the limit is
        // refused before anything is read.
        assert!(matches!(read_whole(body_of(&["[1,2,]"], false), 5).await, Err(BodyError::TooLarge)));
        assert!(matches!(read_whole(body_of(&["[1", ",", "2]", " "], false), 5).await, Err(BodyError::TooLarge)));
        assert!(matches!(read_whole(axum::body::Body::from("123456"), 5).await, Err(BodyError::TooLarge)));
        // A connection failing half-way is not a body.
        assert!(matches!(read_whole(body_of(&["[1"], true), 5).await, Err(BodyError::Unreadable(_))));
    }
}
