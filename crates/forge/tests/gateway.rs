//! The gateway over HTTP (the router in-process, real Postgres): authentication with JWTs and
//! API keys, roles, rate limits, timeouts, the body limit, request ids, trace context, metrics,
//! actions, the query cache and read-only queries.

use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use forge::ForgeConfig;
use forge::gateway::{ApiKeys, NewApiKey};
mod common;

use common::{IndexNote, Note, create_note};
use forge::prelude::*;
use forge::testing::{TestCaller, TestDatabase};
use http_body_util::BodyExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tower::ServiceExt;

const SECRET: &str = "a-test-secret-of-at-least-32-bytes";

#[forge::query(public)]
async fn ping(ctx: &QueryContext, _args: ()) -> Result<Value, ForgeError> {
    Ok(json!({ "request_id": ctx.request_id(), "trace_id": ctx.trace_id(), "user": ctx.auth().user_id() }))
}

#[forge::query]
async fn whoami(ctx: &QueryContext, _args: ()) -> Result<Value, ForgeError> {
    let auth = ctx.auth();
    Ok(json!({ "user": auth.user_id(), "roles": auth.roles(), "tenant": auth.tenant() }))
}

#[forge::query(require_role("admin", "ops"))]
async fn admin_only(_ctx: &QueryContext, _args: ()) -> Result<&'static str, ForgeError> {
    Ok("secret")
}

#[forge::query(public, rate_limit(requests = 2, per = "1h", key = "ip"))]
async fn limited(_ctx: &QueryContext, _args: ()) -> Result<u8, ForgeError> {
    Ok(1)
}

#[forge::query(public, timeout = "100ms")]
async fn slow(_ctx: &QueryContext, _args: ()) -> Result<(), ForgeError> {
    tokio::time::sleep(Duration::from_secs(30)).await;
    Ok(())
}

#[forge::mutation(public)]
async fn pay(_ctx: &MutationContext, amount: i64) -> Result<(), ForgeError> {
    Err(ForgeError::App {
        code: 1402,
        status: 402,
        message: "insufficient funds".to_owned(),
        data: Some(json!({ "needed": amount, "balance": 3 })),
    })
}

#[forge::query(public)]
async fn explode(_ctx: &QueryContext, _args: ()) -> Result<(), ForgeError> {
    panic!("secret panic detail")
}

#[forge::query(public, cache = "1h")]
async fn cached_count(ctx: &QueryContext, _args: ()) -> Result<i64, ForgeError> {
    Ok(sqlx::query_scalar("select count(*) from notes").fetch_one(ctx.db()).await?)
}

#[forge::query(public)]
async fn sneaky_write(ctx: &QueryContext, _args: ()) -> Result<(), ForgeError> {
    sqlx::query("insert into notes (body) values ('from a query')").execute(ctx.db()).await?;
    Ok(())
}

/// An action: runs the mutation, then dispatches a job of its own; fails after both when asked.
#[forge::action(public)]
async fn import_note(ctx: &ActionContext, args: Note) -> Result<i64, ForgeError> {
    let body = args.body.clone();
    let id = ctx.mutate(|m| async move { create_note(&m, Note { body }).await }).await?;
    IndexNote::dispatch(ctx, Note { body: format!("again: {}", args.body) }).await?;
    Ok(id)
}

/// An action calling the outside world (here, a server on loopback) with the context's client.
#[forge::action(require_auth, timeout = 5)]
async fn fetch_text(ctx: &ActionContext, url: String) -> Result<String, ForgeError> {
    let response = ctx.http().get(&url).send().await.map_err(|e| ForgeError::Internal(e.to_string()))?;
    response.text().await.map_err(|e| ForgeError::Internal(e.to_string()))
}

async fn setup() -> (TestDatabase, axum::Router) {
    let db = common::notes_database().await;
    let router = db.router_with(&config(&db)).expect("router");
    (db, router)
}

fn config(db: &TestDatabase) -> ForgeConfig {
    let mut config = db.config();
    config.gateway.body_limit = "1KiB".parse().expect("size");
    config.auth.jwt_secret = Some(SECRET.to_owned());
    config.auth.jwt_issuer = Some("forge-tests".to_owned());
    config.auth.jwt_audience = Some("forge-api".to_owned());
    config
}

struct Reply {
    status: u16,
    headers: HeaderMap,
    body: Value,
}

async fn send(router: &axum::Router, path: &str, headers: &[(&str, &str)], body: impl Into<Body>) -> Reply {
    let mut request = Request::post(path).header("content-type", "application/json");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = router.clone().oneshot(request.body(body.into()).expect("request")).await.expect("response");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Reply { status, headers, body }
}

fn token(claims: Value) -> String {
    token_with(Algorithm::HS256, SECRET, claims)
}

fn token_with(alg: Algorithm, secret: &str, claims: Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), &claims, &EncodingKey::from_secret(secret.as_bytes())).expect("token")
}

fn claims(extra: Value) -> Value {
    let now = chrono::Utc::now().timestamp();
    let mut c = json!({"sub": "u-1", "iss": "forge-tests", "aud": "forge-api", "exp": now + 600, "iat": now});
    if let (Value::Object(c), Value::Object(extra)) = (&mut c, extra) {
        c.extend(extra);
    }
    c
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

async fn count(db: &TestDatabase, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db.pool()).await.expect("count")
}

#[tokio::test]
async fn jwts_are_checked_strictly() {
    let (_db, router) = setup().await;
    let now = chrono::Utc::now().timestamp();

    let none = send(&router, "/rpc/whoami", &[], "").await;
    assert_eq!(none.status, 401, "{}", none.body);
    assert_eq!(none.headers["www-authenticate"], "Bearer");
    assert_eq!(none.headers["content-type"], "application/problem+json");

    let good = token(claims(json!({"roles": ["editor"], "tenant": "acme"})));
    let ok = send(&router, "/rpc/whoami", &[("authorization", &bearer(&good))], "").await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["data"], json!({"user": "u-1", "roles": ["editor"], "tenant": "acme"}));

    let cases = [
        ("expired", token(claims(json!({"exp": now - 3600}))), "expired"),
        ("not yet valid", token(claims(json!({"nbf": now + 3600}))), "not valid yet"),
        ("wrong audience", token(claims(json!({"aud": "someone-else"}))), "audience"),
        ("wrong issuer", token(claims(json!({"iss": "mallory"}))), "issuer"),
        ("wrong secret", token_with(Algorithm::HS256, "another-secret", claims(json!({}))), "signature"),
        ("other algorithm", token_with(Algorithm::HS512, SECRET, claims(json!({}))), "algorithm"),
        ("no exp", token(json!({"sub": "u-1", "iss": "forge-tests", "aud": "forge-api"})), "exp"),
        ("garbage", "not.a.token".to_owned(), "invalid token"),
    ];
    for (what, token, needle) in cases {
        let r = send(&router, "/rpc/whoami", &[("authorization", &bearer(&token))], "").await;
        assert_eq!(r.status, 401, "{what}: {}", r.body);
        let detail = r.body["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(needle), "{what}: {detail}");
    }

    // alg "none": an unsigned token with valid claims.
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims(json!({"roles": ["admin"]})).to_string());
    let unsigned = format!("{header}.{payload}.");
    let r = send(&router, "/rpc/admin_only", &[("authorization", &bearer(&unsigned))], "").await;
    assert_eq!(r.status, 401, "alg none is refused: {}", r.body);

    // Bad credentials are refused even for a public function.
    let r = send(&router, "/rpc/ping", &[("authorization", "Basic dXNlcjpwYXNz")], "").await;
    assert_eq!(r.status, 401, "{}", r.body);
    let r = send(&router, "/rpc/ping", &[], "").await;
    assert_eq!(r.status, 200, "anonymous is fine for a public function: {}", r.body);
}

#[tokio::test]
async fn roles_gate_functions() {
    let (_db, router) = setup().await;
    let editor = token(claims(json!({"roles": ["editor"]})));
    let r = send(&router, "/rpc/admin_only", &[("authorization", &bearer(&editor))], "").await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body["detail"].as_str().unwrap_or_default().contains("admin"), "{}", r.body);
    let ops = token(claims(json!({"role": "ops"})));
    let r = send(&router, "/rpc/admin_only", &[("authorization", &bearer(&ops))], "").await;
    assert_eq!((r.status, r.body["data"].clone()), (200, json!("secret")));

    // JSON-RPC carries the same answers as error codes.
    let call = r#"{"jsonrpc": "2.0", "method": "admin_only", "id": 1}"#;
    let r = send(&router, "/rpc", &[("authorization", &bearer(&editor))], call).await;
    assert_eq!(r.body["error"]["code"], -32003, "{}", r.body);
    let r = send(&router, "/rpc", &[], call).await;
    assert_eq!(r.body["error"]["code"], -32001, "{}", r.body);
}

#[tokio::test]
async fn api_keys_are_created_used_rotated_and_revoked() {
    let (db, router) = setup().await;
    let keys = ApiKeys::new(db.pool().clone());
    let created = keys.create(NewApiKey::named("billing").with_role("admin").with_tenant("acme")).await.expect("key");
    assert!(created.key.starts_with(&format!("forge_{}_", created.record.prefix)));
    let stored: Vec<u8> = sqlx::query_scalar("select key_hash from forge_api_keys where id = $1")
        .bind(created.record.id)
        .fetch_one(db.pool())
        .await
        .expect("hash");
    assert_eq!(stored.len(), 32, "only a SHA-256 is stored");
    assert!(!String::from_utf8_lossy(&stored).contains(&created.key[18..]));

    let r = send(&router, "/rpc/admin_only", &[("authorization", &bearer(&created.key))], "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = send(&router, "/rpc/whoami", &[("x-api-key", &created.key)], "").await;
    assert_eq!(r.body["data"]["tenant"], "acme", "{}", r.body);

    // A wrong secret with a real prefix is refused.
    let mut forged = created.key.clone();
    forged.pop();
    forged.push(if created.key.ends_with('0') { '1' } else { '0' });
    let r = send(&router, "/rpc/admin_only", &[("authorization", &bearer(&forged))], "").await;
    assert_eq!(r.status, 401, "{}", r.body);

    // Rotation with no grace: the new key works, the old one does not.
    let rotated = keys.rotate(created.record.id, Duration::ZERO).await.expect("rotate");
    assert_eq!(rotated.record.roles, vec!["admin".to_owned()]);
    let r = send(&router, "/rpc/admin_only", &[("authorization", &bearer(&created.key))], "").await;
    assert_eq!(r.status, 401, "the rotated-out key: {}", r.body);
    let r = send(&router, "/rpc/admin_only", &[("authorization", &bearer(&rotated.key))], "").await;
    assert_eq!(r.status, 200, "{}", r.body);

    // Rotation with grace: both work until the grace ends.
    let again = keys.rotate(rotated.record.id, Duration::from_secs(3600)).await.expect("rotate");
    for key in [&rotated.key, &again.key] {
        let r = send(&router, "/rpc/admin_only", &[("authorization", &bearer(key))], "").await;
        assert_eq!(r.status, 200, "{}", r.body);
    }

    let revoked = keys.revoke(again.record.id).await.expect("revoke");
    assert!(!revoked.is_live());
    let r = send(&router, "/rpc/admin_only", &[("authorization", &bearer(&again.key))], "").await;
    assert_eq!(r.status, 401, "a revoked key: {}", r.body);
    assert!(r.body["detail"].as_str().unwrap_or_default().contains("revoked"), "{}", r.body);

    let expired = keys
        .create(NewApiKey::named("old").expires_at(chrono::Utc::now() - chrono::Duration::seconds(1)))
        .await
        .expect("key");
    let r = send(&router, "/rpc/whoami", &[("authorization", &bearer(&expired.key))], "").await;
    assert_eq!(r.status, 401, "an expired key: {}", r.body);

    let listed = keys.list().await.expect("list");
    assert_eq!(listed.len(), 4);
    assert_eq!(listed.iter().filter(|k| k.is_live()).count(), 1, "only the grace-period key is live");
    let used = keys.get(created.record.id).await.expect("get");
    let mut waited = 0;
    let mut used = used;
    while used.last_used_at.is_none() && waited < 100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        used = keys.get(created.record.id).await.expect("get");
        waited += 1;
    }
    assert!(used.last_used_at.is_some(), "use is recorded");
    assert!(keys.create(NewApiKey::named("  ")).await.is_err(), "a key needs a name");
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let (db, router) = setup().await;
    for _ in 0..2 {
        let r = send(&router, "/rpc/limited", &[], "").await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = send(&router, "/rpc/limited", &[], "").await;
    assert_eq!(r.status, 429, "{}", r.body);
    let retry: u64 = r.headers["retry-after"].to_str().expect("header").parse().expect("seconds");
    assert!((1..=1800).contains(&retry), "a token comes back within half an hour: {retry}");
    assert_eq!(r.body["type"], "urn:forge:problem:rate-limited");

    // Buckets live in Postgres, one per IP: a caller from another address starts full.
    let other = TestCaller::anonymous().with_ip("10.0.0.9".parse().expect("ip"));
    assert_eq!(db.call::<u8>("limited", (), &other).await.expect("allowed"), 1);
    assert_eq!(db.call::<u8>("limited", (), &other).await.expect("allowed"), 1);
    let err = db.call::<u8>("limited", (), &other).await.expect_err("limited");
    assert!(matches!(err, ForgeError::RateLimited { .. }), "{err:?}");
    let buckets = count(&db, "select count(*) from forge_rate_limits").await;
    assert_eq!(buckets, 2, "one bucket per IP");
}

#[tokio::test]
async fn limits_timeouts_and_media_types() {
    let (_db, router) = setup().await;
    let r = send(&router, "/rpc/slow", &[], "").await;
    assert_eq!(r.status, 504, "{}", r.body);
    assert_eq!(r.body["type"], "urn:forge:problem:timeout");

    let big = format!(r#"{{"body": "{}"}}"#, "x".repeat(4096));
    let r = send(&router, "/rpc/create_note", &[], big.clone()).await;
    assert_eq!(r.status, 413, "{}", r.body);
    let r = send(&router, "/rpc", &[], big).await;
    assert_eq!(r.status, 413, "{}", r.body);

    let request = Request::post("/rpc").header("content-type", "text/plain").body(Body::from("{}")).expect("req");
    let response = router.clone().oneshot(request).await.expect("response");
    assert_eq!(response.status().as_u16(), 415);

    let r = send(&router, "/rpc/explode", &[], "").await;
    assert_eq!(r.status, 500, "a panic is an internal error: {}", r.body);
    assert!(!r.body.to_string().contains("secret"), "{}", r.body);
    let r = send(&router, "/rpc/ping", &[], "").await;
    assert_eq!(r.status, 200, "and the gateway goes on: {}", r.body);

    let request = Request::get("/nowhere").body(Body::empty()).expect("req");
    let response = router.clone().oneshot(request).await.expect("response");
    assert_eq!(response.status().as_u16(), 404);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn application_errors_keep_their_status_code_and_data() {
    let (_db, router) = setup().await;
    let r = send(&router, "/rpc/pay", &[], "10").await;
    assert_eq!(r.status, 402, "{}", r.body);
    assert_eq!(r.body["type"], "urn:forge:problem:application");
    assert_eq!(r.body["detail"], "insufficient funds");
    assert_eq!(r.body["data"], json!({"needed": 10, "balance": 3}));
    let r = send(&router, "/rpc", &[], r#"{"jsonrpc": "2.0", "method": "pay", "params": [10], "id": 9}"#).await;
    assert_eq!(r.body["error"]["code"], 1402, "{}", r.body);
    assert_eq!(r.body["error"]["data"]["needed"], 10);
}

#[tokio::test]
async fn request_ids_and_trace_context_reach_functions() {
    let (_db, router) = setup().await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = send(&router, "/rpc/ping", &[("x-request-id", "req-42"), ("traceparent", traceparent)], "").await;
    assert_eq!(r.headers["x-request-id"], "req-42");
    assert_eq!(r.body["data"]["request_id"], "req-42");
    assert_eq!(r.body["data"]["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");

    let r = send(&router, "/rpc/ping", &[("traceparent", "garbage")], "").await;
    let generated = r.headers["x-request-id"].to_str().expect("id").to_owned();
    assert_eq!(generated.len(), 36, "a UUID is generated");
    assert_eq!(r.body["data"]["request_id"], generated.as_str());
    let trace = r.body["data"]["trace_id"].as_str().expect("trace");
    assert!(trace.len() == 32 && trace != "4bf92f3577b34da6a3ce929d0e0e4736", "a new trace: {trace}");
}

#[tokio::test]
async fn metrics_count_requests_functions_jobs_and_the_pool() {
    let (_db, router) = setup().await;
    send(&router, "/rpc/ping", &[], "").await;
    send(&router, "/rpc/create_note", &[], r#"{"body": "hi"}"#).await;
    send(&router, "/rpc/no_such_function_xyz", &[], "").await;
    let request = Request::get("/metrics").body(Body::empty()).expect("req");
    let response = router.clone().oneshot(request).await.expect("response");
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.headers()["content-type"].to_str().expect("ct").starts_with("text/plain; version=0.0.4"));
    let text =
        String::from_utf8(response.into_body().collect().await.expect("body").to_bytes().to_vec()).expect("utf8");
    for needle in [
        r#"forge_http_requests_total{method="POST",route="/rpc/{function}",status="200"} 2"#,
        r#"forge_http_requests_total{method="POST",route="/rpc/{function}",status="404"} 1"#,
        r#"forge_function_calls_total{function="ping",status="200"} 1"#,
        r#"forge_function_calls_total{function="unknown",status="404"} 1"#,
        r#"forge_function_call_duration_seconds_count{function="create_note"} 1"#,
        r#"forge_http_request_duration_seconds_bucket{route="/rpc/{function}",le="+Inf"} 3"#,
        r#"forge_queue_depth{queue="default",state="available"} 1"#,
        "# TYPE forge_db_pool_connections gauge",
        "forge_db_pool_max_connections 5",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    assert!(!text.contains("no_such_function_xyz"), "unknown names never become labels");
}

#[tokio::test]
async fn actions_run_mutations_and_dispatch_jobs() {
    let (db, router) = setup().await;
    let r = send(&router, "/rpc/import_note", &[], r#"{"body": "imported"}"#).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(count(&db, "select count(*) from notes").await, 1);
    assert_eq!(count(&db, "select count(*) from forge_jobs where kind = 'index_note'").await, 2);

    // The mutation inside fails: its note and its job roll back; the action stops there.
    let r = send(&router, "/rpc/import_note", &[], r#"{"body": " "}"#).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert_eq!(count(&db, "select count(*) from notes").await, 1);
    assert_eq!(count(&db, "select count(*) from forge_jobs").await, 2);
}

#[tokio::test]
async fn actions_call_http_services() {
    let db = TestDatabase::new().await.expect("db");
    let app = axum::Router::new().route("/greeting", axum::routing::get(|| async { "hello from upstream" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let url = format!("http://{addr}/greeting");
    let text: String = db.call("fetch_text", &url, &TestCaller::user("u-1")).await.expect("fetch");
    assert_eq!(text, "hello from upstream");
    let err = db.call::<String>("fetch_text", &url, &TestCaller::anonymous()).await.expect_err("401");
    assert!(matches!(err, ForgeError::Unauthorized), "{err:?}");
    server.abort();
}

#[tokio::test]
async fn queries_are_read_only_and_may_be_cached() {
    let (db, router) = setup().await;
    let r = send(&router, "/rpc/sneaky_write", &[], "").await;
    assert_eq!(r.status, 500, "a write in a query fails: {}", r.body);
    assert_eq!(count(&db, "select count(*) from notes").await, 0);

    let first = send(&router, "/rpc/cached_count", &[], "").await;
    assert_eq!(first.body["data"], 0);
    sqlx::query("insert into notes (body) values ('x')").execute(db.pool()).await.expect("insert");
    let second = send(&router, "/rpc/cached_count", &[], "").await;
    assert_eq!(second.body["data"], 0, "served from the cache");
    let as_user = db.call::<i64>("cached_count", (), &TestCaller::user("u-2")).await.expect("call");
    assert_eq!(as_user, 1, "another caller does not share the anonymous caller's entry");
}

#[tokio::test]
async fn test_callers_go_through_the_same_checks() {
    let (db, _router) = setup().await;
    let err = db.call::<Value>("whoami", (), &TestCaller::anonymous()).await.expect_err("401");
    assert!(matches!(err, ForgeError::Unauthorized), "{err:?}");
    let me: Value =
        db.call("whoami", (), &TestCaller::user("u-7").with_role("admin").with_tenant("t1")).await.expect("whoami");
    assert_eq!(me, json!({"user": "u-7", "roles": ["admin"], "tenant": "t1"}));
    let err = db.call::<String>("admin_only", (), &TestCaller::user("u-7")).await.expect_err("403");
    assert!(matches!(err, ForgeError::Forbidden(_)), "{err:?}");
    let ok: String = db.call("admin_only", (), &TestCaller::api_key("ci").with_role("ops")).await.expect("ops");
    assert_eq!(ok, "secret");
    let err = db.call::<i64>("create_note", json!({"body": 5}), &TestCaller::anonymous()).await.expect_err("400");
    assert_eq!(err.field_errors()[0].path, "body");
    let err = db.call::<i64>("nope", (), &TestCaller::anonymous()).await.expect_err("404");
    assert!(matches!(err, ForgeError::UnknownFunction(_)), "{err:?}");
}

/// A small deterministic generator, so a failure names a reproducible case.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let n = 1 + (self.next() as usize) % max;
        (0..n).map(|_| self.next() as u8).collect()
    }
}

#[tokio::test]
async fn malformed_input_never_gets_a_5xx_and_changes_nothing() {
    let (db, router) = setup().await;
    let mut corpus: Vec<Vec<u8>> = vec![
        b"{".to_vec(),
        b"[".repeat(1000),
        b"{\"a\":".repeat(150),
        br#"{"a": 1e400, "b": 2}"#.to_vec(),
        br#"{"a": 123456789012345678901234567890, "b": -1e-400}"#.to_vec(),
        b"-1e999".to_vec(),
        br#"{"body": 123}"#.to_vec(),
        br#"{"body": null}"#.to_vec(),
        br#"{"body": ["x"], "zzz": {"deep": [1, 2, {"x": null}]}}"#.to_vec(),
        br#"{"zzz": 1}"#.to_vec(),
        br#""a string""#.to_vec(),
        b"true".to_vec(),
        b"[1, 2, 3]".to_vec(),
        vec![0xff, 0xfe, 0x00, 0x7b],
        br#"{"body": "\ud800"}"#.to_vec(),
        br#"{"jsonrpc": "2.0", "method": "create_note", "params": {"body": 7}, "id": 1}"#.to_vec(),
        br#"{"jsonrpc": "2.0", "method": "create_note", "params": "x", "id": {}}"#.to_vec(),
        br#"{"jsonrpc": "2.0", "method": 123, "id": 1}"#.to_vec(),
        br#"{"jsonrpc": "1.0", "method": "create_note", "params": {"body": "x"}, "id": 1}"#.to_vec(),
        br#"[[], {}, null, {"jsonrpc": "2.0", "method": "create_note", "params": [1], "id": 2}]"#.to_vec(),
        format!("[{}]", vec![r#"{"jsonrpc":"2.0","method":"ping"}"#; 101].join(",")).into_bytes(),
    ];
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for _ in 0..40 {
        corpus.push(rng.bytes(300));
    }
    let functions: Vec<&str> = forge::functions::FunctionRegistry::collect().list().iter().map(|f| f.name).collect();
    let mut paths: Vec<String> = functions.iter().map(|f| format!("/rpc/{f}")).collect();
    paths.extend(["/rpc".to_owned(), "/rpc/%00%ff".to_owned(), format!("/rpc/{}", "n".repeat(2000))]);
    paths.extend(["/health", "/ready", "/metrics", "/"].map(str::to_owned));
    let mut sent = 0;
    for path in &paths {
        for body in &corpus {
            for content_type in ["application/json", "application/octet-stream"] {
                let request = Request::post(path.as_str())
                    .header("content-type", content_type)
                    .body(Body::from(body.clone()))
                    .expect("request");
                let response = router.clone().oneshot(request).await.expect("response");
                let status = response.status().as_u16();
                assert!(status < 500, "{path} with {:?} ({content_type}) got {status}", String::from_utf8_lossy(body));
                sent += 1;
            }
        }
    }
    assert!(sent > 1000, "{sent} requests");
    assert_eq!(count(&db, "select count(*) from notes").await, 0, "nothing written");
    assert_eq!(count(&db, "select count(*) from forge_jobs").await, 0, "no job enqueued");
    assert_eq!(count(&db, "select count(*) from forge_api_keys").await, 0);
}

#[tokio::test]
async fn cors_follows_the_configured_origins() {
    let (db, plain) = setup().await;
    let preflight = |origin: &'static str| {
        Request::options("/rpc/ping")
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type,authorization")
            .body(Body::empty())
            .expect("request")
    };
    let response = plain.clone().oneshot(preflight("https://app.example.com")).await.expect("response");
    assert!(!response.headers().contains_key("access-control-allow-origin"), "no CORS unless configured");

    let mut config = config(&db);
    config.gateway.cors_origins = vec!["https://app.example.com".to_owned()];
    let router = db.router_with(&config).expect("router");
    let response = router.clone().oneshot(preflight("https://app.example.com")).await.expect("response");
    assert_eq!(response.headers()["access-control-allow-origin"], "https://app.example.com");
    let allowed = response.headers()["access-control-allow-headers"].to_str().expect("headers").to_owned();
    assert!(allowed.contains("authorization"), "{allowed}");
    let response = router.clone().oneshot(preflight("https://evil.example.com")).await.expect("response");
    assert!(!response.headers().contains_key("access-control-allow-origin"), "other origins get nothing");
}

/// Collects the fields of `forge::access` events.
#[derive(Clone, Default)]
struct AccessLog(std::sync::Arc<std::sync::Mutex<Vec<std::collections::BTreeMap<String, String>>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for AccessLog {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: tracing_subscriber::layer::Context<'_, S>) {
        struct Fields<'a>(&'a mut std::collections::BTreeMap<String, String>);
        impl tracing::field::Visit for Fields<'_> {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                self.0.insert(field.name().to_owned(), format!("{value:?}"));
            }
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                self.0.insert(field.name().to_owned(), value.to_owned());
            }
        }
        if event.metadata().target() == "forge::access" {
            let mut fields = std::collections::BTreeMap::new();
            event.record(&mut Fields(&mut fields));
            fields.insert("level".to_owned(), event.metadata().level().to_string());
            self.0.lock().expect("lock").push(fields);
        }
    }
}

#[tokio::test]
async fn each_request_logs_one_access_event() {
    use tracing_subscriber::layer::SubscriberExt;

    let (_db, router) = setup().await;
    let log = AccessLog::default();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(log.clone()));
    let traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    send(&router, "/rpc/ping", &[("x-request-id", "log-1"), ("traceparent", traceparent)], "").await;
    send(&router, "/rpc/whoami", &[], "").await;
    let events = log.0.lock().expect("lock").clone();
    assert_eq!(events.len(), 2, "{events:?}");
    let first = &events[0];
    assert_eq!(first["method"], "POST");
    assert_eq!(first["path"], "/rpc/ping");
    assert_eq!(first["route"], "/rpc/{function}");
    assert_eq!(first["status"], "200");
    assert_eq!(first["request_id"], "log-1");
    assert_eq!(first["trace_id"], "0af7651916cd43dd8448eb211c80319c");
    assert!(first.contains_key("duration_ms"));
    assert_eq!(first["level"], "INFO");
    assert_eq!(events[1]["status"], "401");
}

/// A load balancer's probes are logged at debug (not printed or stored at the default level);
/// durations are rounded to hundredths of a millisecond.
#[tokio::test]
async fn probes_are_logged_at_debug_and_durations_are_rounded() {
    use tracing_subscriber::layer::SubscriberExt;

    let (_db, router) = setup().await;
    let log = AccessLog::default();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(log.clone()));
    for path in ["/health", "/ready"] {
        let request = Request::get(path).body(Body::empty()).expect("request");
        router.clone().oneshot(request).await.expect("response");
    }
    send(&router, "/rpc/ping", &[], "").await;
    let events = log.0.lock().expect("lock").clone();
    let levels: Vec<(&str, &str)> = events.iter().map(|e| (e["path"].as_str(), e["level"].as_str())).collect();
    assert_eq!(levels, [("/health", "DEBUG"), ("/ready", "DEBUG"), ("/rpc/ping", "INFO")]);
    for event in &events {
        let duration = &event["duration_ms"];
        let decimals = duration.split_once('.').map_or(0, |(_, d)| d.len());
        assert!(decimals <= 2, "duration_ms={duration} is not rounded");
    }
}

#[tokio::test]
async fn a_running_node_reports_its_worker_and_leadership() {
    let db = TestDatabase::new().await.expect("db");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let node =
        Forge::builder().config(db.config()).listener(listener).build().expect("build").start().await.expect("start");
    let url = format!("http://{}/metrics", node.local_addr().expect("addr"));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = reqwest::get(&url).await.expect("GET").text().await.expect("body");
        if text.contains(r#"forge_leader{role="scheduler"} 1"#) {
            break text;
        }
        assert!(std::time::Instant::now() < deadline, "never became leader:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(text.contains("forge_worker_busy_slots 0"), "{text}");
    assert!(text.contains("forge_worker_slots 100"), "{text}");
    assert!(text.contains(r#"forge_db_pool_connections{state="idle"}"#), "{text}");
    node.stop().await.expect("stop");
}
