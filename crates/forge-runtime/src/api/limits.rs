//! The middleware in front of every authenticated `/v1` route: it authenticates the caller
//! once (the handlers read it from [`CALLER`]) and draws a client's
//! request from its token bucket (`[api.rate_limit]`, kept in Postgres so every gateway node
//! shares it).
//!
//! Every answer to a client carries the IETF httpapi rate-limit headers:
//! `RateLimit-Policy: "default";q=<requests>;w=<seconds>` and
//! `RateLimit: "default";r=<left>;t=<seconds until full>`. A request with the bucket empty is
//! refused with 429, `Retry-After` and the same headers, and changes nothing. Operators are
//! not limited.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::state::{ApiState, CALLER};
use crate::functions::rate_limit::{self, Draw};

/// Authenticates, draws a client's token, runs the route and adds the rate-limit headers.
pub(super) async fn per_client(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let auth = match state.authenticate(request.headers()).await {
        Ok(auth) => auth,
        Err(e) => return e.into_response(),
    };
    let (Some(client), Some(limit)) = (auth.client(), state.rate_limit()) else {
        return CALLER.scope(auth, next.run(request)).await;
    };
    let key = format!("api:{}", client.id);
    let draw = match rate_limit::draw(state.pool(), &key, limit).await {
        Ok(draw) => draw,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let mut response = if draw.allowed {
        CALLER.scope(auth, next.run(request)).await
    } else {
        let mut refused = ApiError::TooManyRequests(format!(
            "this client may make {} requests per {} ms; retry in {} s",
            limit.requests,
            limit.per.as_millis(),
            draw.reset.as_secs()
        ))
        .into_response();
        if let Ok(v) = HeaderValue::from_str(&draw.reset.as_secs().to_string()) {
            refused.headers_mut().insert(header::RETRY_AFTER, v);
        }
        refused
    };
    add_headers(response.headers_mut(), limit.requests, limit.per, draw);
    response
}

fn add_headers(headers: &mut HeaderMap, requests: u32, per: std::time::Duration, draw: Draw) {
    let window = per.as_secs().max(1);
    let policy = format!("\"default\";q={requests};w={window}");
    let left = format!("\"default\";r={};t={}", draw.remaining, draw.reset.as_secs());
    if let (Ok(policy), Ok(left)) = (HeaderValue::from_str(&policy), HeaderValue::from_str(&left)) {
        headers.insert("ratelimit-policy", policy);
        headers.insert("ratelimit", left);
    }
}
