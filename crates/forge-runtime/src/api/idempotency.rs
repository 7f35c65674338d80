//! `Idempotency-Key` on every `/v1` POST, as the IETF httpapi draft
//! ("The Idempotency-Key HTTP Header Field") describes it.
//!
//! A POST with a key runs in one transaction that first takes a transaction-scoped advisory
//! lock on (owner, key) and reads the key's record, in one statement:
//!
//! - the lock is held by another request: **409** (the first is still in flight);
//! - a stored response exists for the key: if the request's fingerprint (method, path and
//!   the body's JSON, keys sorted) matches, the stored status and body are returned again with
//!   `Idempotent-Replayed: true`; if not, **422** (the key was reused for another request);
//! - otherwise the change is made and the response stored with the key, in the same
//!   transaction: the change and its record commit together or not at all.
//!
//! Only successful responses are stored; a refused request changes nothing and may be sent
//! again with the same key. Keys are scoped to their owner (the client) and expire after
//! `[api] idempotency_ttl` (24 h by default). A key is 1 to 255 visible ASCII characters.

use std::future::Future;
use std::pin::Pin;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use sqlx::PgConnection;

use super::error::ApiError;
use super::sql;
use super::state::ApiState;

/// The request header.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The response header marking a replayed response.
pub const REPLAYED: &str = "idempotent-replayed";

/// What a change answers: a status and a JSON body.
pub(crate) type Answer = (StatusCode, serde_json::Value);

/// A change made inside the request's transaction.
pub(crate) type Change<'c> = Pin<Box<dyn Future<Output = Result<Answer, ApiError>> + Send + 'c>>;

/// One POST: who sends it, to where, with what.
pub(crate) struct Post<'a> {
    /// The idempotency keys' owner (a client, or an operator).
    pub owner: &'a str,
    /// The path, as sent.
    pub path: &'a str,
    /// The body's JSON.
    pub body: &'a serde_json::Value,
}

/// Runs `change` for `post` once per idempotency key (when the request has one), in one
/// transaction with the key's record.
pub(crate) async fn run<F>(state: &ApiState, headers: &HeaderMap, post: Post<'_>, change: F) -> Response
where
    F: for<'c> FnOnce(&'c mut PgConnection) -> Change<'c>,
{
    respond(run_inner(state, headers, post, change).await)
}

/// An answer (and whether it is replayed) as the response.
pub(super) fn respond(answer: Result<(StatusCode, serde_json::Value, bool), ApiError>) -> Response {
    match answer {
        Ok((status, body, replayed)) => {
            let mut response = (status, axum::Json(body)).into_response();
            if replayed {
                response.headers_mut().insert(REPLAYED, HeaderValue::from_static("true"));
            }
            response
        }
        Err(e) => e.into_response(),
    }
}

async fn run_inner<F>(
    state: &ApiState,
    headers: &HeaderMap,
    post: Post<'_>,
    change: F,
) -> Result<(StatusCode, serde_json::Value, bool), ApiError>
where
    F: for<'c> FnOnce(&'c mut PgConnection) -> Change<'c>,
{
    let key = key(headers)?;
    let mut tx = state.pool().begin().await?;
    let Some(key) = key else {
        let (status, body) = change(&mut tx).await?;
        tx.commit().await?;
        return Ok((status, body, false));
    };
    let fingerprint = fingerprint(post.path, post.body);
    let found: Lookup = sqlx::query_as(sql::LOCK_AND_FIND_IDEMPOTENCY_KEY)
        .bind(lock_key(post.owner, key))
        .bind(post.owner)
        .bind(key)
        .fetch_one(&mut *tx)
        .await?;
    if let Some(answer) = found.answer(&post, &fingerprint) {
        return answer;
    }
    let (status, body) = change(&mut tx).await?;
    let stored = sqlx::query(sql::STORE_IDEMPOTENCY_KEY)
        .bind(post.owner)
        .bind(key)
        .bind("POST")
        .bind(post.path)
        .bind(&fingerprint)
        .bind(i16::try_from(status.as_u16()).unwrap_or(200))
        .bind(&body)
        .bind(state.idempotency_ttl().as_secs_f64())
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if stored == 0 {
        // A request with this key committed between this one's snapshot and its lock (see
        // `LOCK_AND_FIND_IDEMPOTENCY_KEY`): this one's change is undone, the first one's answer given.
        tx.rollback().await?;
        let first: Option<Stored> =
            sqlx::query_as(sql::FIND_IDEMPOTENCY_KEY).bind(post.owner).bind(key).fetch_optional(state.pool()).await?;
        let first = first.ok_or_else(|| {
            ApiError::Conflict("a request with this Idempotency-Key ended just now; retry".to_owned())
        })?;
        return replay(&post, &fingerprint, first);
    }
    tx.commit().await?;
    Ok((status, body, false))
}

/// What taking a key's lock and reading its record found.
#[derive(sqlx::FromRow)]
pub(super) struct Lookup {
    locked: bool,
    method: Option<String>,
    path: Option<String>,
    fingerprint: Option<Vec<u8>>,
    status: Option<i16>,
    stored: Option<serde_json::Value>,
}

impl Lookup {
    /// The answer when the key decides it: 409 while another request holds the key, the
    /// stored answer (or 422) once one is stored; `None` when the request is to be made.
    pub(super) fn answer(
        self,
        post: &Post<'_>,
        fingerprint: &[u8],
    ) -> Option<Result<(StatusCode, serde_json::Value, bool), ApiError>> {
        if !self.locked {
            return Some(Err(ApiError::Conflict(
                "a request with this Idempotency-Key is still in flight; retry after it ends".to_owned(),
            )));
        }
        let (Some(method), Some(path), Some(stored_fingerprint), Some(status), Some(body)) =
            (self.method, self.path, self.fingerprint, self.status, self.stored)
        else {
            return None;
        };
        Some(replay(post, fingerprint, Stored { method, path, fingerprint: stored_fingerprint, status, body }))
    }
}

/// A stored response to a key.
#[derive(sqlx::FromRow)]
struct Stored {
    method: String,
    path: String,
    fingerprint: Vec<u8>,
    status: i16,
    body: serde_json::Value,
}

/// The stored answer, for a request that is the stored one; 422 for another request.
fn replay(
    post: &Post<'_>,
    fingerprint: &[u8],
    stored: Stored,
) -> Result<(StatusCode, serde_json::Value, bool), ApiError> {
    if stored.method != "POST" || stored.path != post.path || stored.fingerprint != fingerprint {
        return Err(ApiError::field(
            "Idempotency-Key",
            "this key was already used for a different request; use a new key",
        ));
    }
    let status = u16::try_from(stored.status).ok().and_then(|s| StatusCode::from_u16(s).ok()).unwrap_or(StatusCode::OK);
    Ok((status, stored.body, true))
}

/// `value` as the JSON of an answer.
pub(crate) fn to_json<T: serde::Serialize>(value: &T) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(value).map_err(|e| ApiError::Internal(format!("cannot write the answer: {e}")))
}

/// The request's `Idempotency-Key`, checked.
pub(super) fn key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let mut values = headers.get_all(IDEMPOTENCY_KEY).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::BadRequest("send one Idempotency-Key header, not several".to_owned()));
    }
    let key = value
        .to_str()
        .ok()
        .map(|k| k.trim().trim_matches('"'))
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or_else(|| {
            ApiError::BadRequest("the Idempotency-Key must be 1 to 255 visible ASCII characters".to_owned())
        })?;
    Ok(Some(key))
}

/// The name an idempotency key's advisory lock is taken on: its owner and the key. Both ways of
/// submitting lock the same name, so a key is held by one request at a time across them.
pub(super) fn lock_key(owner: &str, key: &str) -> String {
    format!("{owner}\u{1f}{key}")
}

/// SHA-256 over the path and the body's JSON with its keys sorted (so the same request with
/// its fields in another order, or other white space, is the same request).
pub(super) fn fingerprint(path: &str, body: &serde_json::Value) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(b"POST ");
    hasher.update(path.as_bytes());
    hasher.update(b"\n");
    hasher.update(serde_json::to_vec(body).unwrap_or_default());
    hasher.finalize().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fingerprint_ignores_key_order_and_white_space() {
        let a: serde_json::Value = serde_json::from_str(r#"{"kind":"a","args":{"x":1,"y":2}}"#).expect("json");
        let b: serde_json::Value = serde_json::from_str(r#"{ "args": {"y": 2, "x": 1}, "kind": "a" }"#).expect("json");
        let c: serde_json::Value = serde_json::from_str(r#"{"kind":"a","args":{"x":1,"y":3}}"#).expect("json");
        assert_eq!(fingerprint("/v1/jobs", &a), fingerprint("/v1/jobs", &b));
        assert_ne!(fingerprint("/v1/jobs", &a), fingerprint("/v1/jobs", &c));
        assert_ne!(fingerprint("/v1/jobs", &a), fingerprint("/v1/clients", &a));
    }

    /// The race the one-statement lock and read leaves open: a request with the same key
    /// commits after this one's snapshot but before its lock. Simulated by committing that
    /// request's record from another connection while this one's change runs: this one's
    /// change is rolled back and the first one's answer is given.
    #[tokio::test]
    async fn a_record_committed_under_the_snapshot_wins_and_the_change_is_undone() {
        let db = crate::testing::TestDatabase::new().await.expect("db");
        let state = ApiState::new(db.pool().clone(), &db.config(), crate::jobs::JobRegistry::default(), None);
        sqlx::query("create table changes (n int)").execute(db.pool()).await.expect("table");
        let body = serde_json::json!({ "n": 1 });
        let mut headers = HeaderMap::new();
        headers.insert(IDEMPOTENCY_KEY, HeaderValue::from_static("race-1"));
        let post = Post { owner: "client-a", path: "/v1/things", body: &body };
        let pool = db.pool().clone();
        let stored_fingerprint = fingerprint("/v1/things", &body);
        let response = run(&state, &headers, post, move |conn| -> Change<'_> {
            Box::pin(async move {
                sqlx::query("insert into changes values (2)").execute(&mut *conn).await?;
                sqlx::query(
                    "insert into forge_idempotency_keys (owner, key, method, path, fingerprint, status, body, expires_at)
                     values ('client-a', 'race-1', 'POST', '/v1/things', $1, 201, '{\"first\": true}', now() + interval '1 hour')",
                )
                .bind(stored_fingerprint)
                .execute(&pool)
                .await?;
                Ok((StatusCode::CREATED, serde_json::json!({ "first": false })))
            })
        })
        .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        assert_eq!(response.headers().get(REPLAYED).map(|v| v.as_bytes()), Some(&b"true"[..]));
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.expect("body");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&bytes).expect("json"),
            serde_json::json!({ "first": true })
        );
        let changes: i64 =
            sqlx::query_scalar("select count(*) from changes").fetch_one(db.pool()).await.expect("count");
        assert_eq!(changes, 0, "the second change was rolled back");
    }

    #[test]
    fn a_key_is_visible_ascii_of_at_most_255_bytes() {
        let mut headers = HeaderMap::new();
        assert_eq!(key(&headers).ok(), Some(None));
        headers.insert(IDEMPOTENCY_KEY, HeaderValue::from_static("\"abc-123\""));
        assert_eq!(key(&headers).ok(), Some(Some("abc-123")));
        headers.insert(IDEMPOTENCY_KEY, HeaderValue::from_str(&"k".repeat(256)).expect("header"));
        assert!(key(&headers).is_err());
        headers.insert(IDEMPOTENCY_KEY, HeaderValue::from_static("a b"));
        assert!(key(&headers).is_err());
    }
}
