//! The dashboard's JSON API over HTTP, against real PostgreSQL: every endpoint, its bad
//! parameters, and who may call it.

use axum::body::Body;
use axum::http::Request;
use forge::gateway::{ApiKeys, NewApiKey};
use forge::testing::TestDatabase;
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

mod common;

async fn get(router: &axum::Router, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = Request::get(path);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = router.clone().oneshot(request.body(Body::empty()).expect("request")).await.expect("response");
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn seed(db: &TestDatabase) {
    sqlx::raw_sql(
        "insert into forge_jobs (kind, queue, state, args, errors, metadata)
           select case when i % 2 = 0 then 'even' else 'odd' end, 'default',
                  case when i <= 3 then 'discarded' else 'available' end,
                  jsonb_build_object('i', i),
                  case when i <= 3 then '[{\"attempt\": 1, \"message\": \"boom\"}]'::jsonb else '[]' end,
                  case when i = 1 then '{\"traceparent\": \"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\"}'::jsonb else '{}' end
           from generate_series(1, 12) i;
         insert into forge_logs (at, level, target, message, node_id, job_id, trace_id)
           values (now() - interval '2 seconds', 'info', 't', 'starting', 'n1', 1, '4bf92f3577b34da6a3ce929d0e0e4736'),
                  (now() - interval '1 second', 'error', 't', 'boom', 'n1', 1, '4bf92f3577b34da6a3ce929d0e0e4736'),
                  (now(), 'info', 't', 'elsewhere', 'n1', 2, null);
         insert into forge_traces (trace_id, span_id, parent_span_id, name, kind, started_at, duration_us, status, node_id, job_id)
           values ('4bf92f3577b34da6a3ce929d0e0e4736', 'aaaaaaaaaaaaaaaa', '00f067aa0ba902b7', 'forge.http', 'server', now(), 900, 'ok', 'n1', null),
                  ('4bf92f3577b34da6a3ce929d0e0e4736', 'bbbbbbbbbbbbbbbb', 'aaaaaaaaaaaaaaaa', 'forge.job', 'consumer', now(), 300, 'error', 'n1', 1);
         insert into forge_metrics (at, node_id, name, kind, labels, value, seconds)
           values (now() - interval '30 seconds', 'n1', 'forge_jobs_completed_total', 'counter', '{\"kind\": \"even\"}', 4, 10),
                  (now() - interval '20 seconds', 'n1', 'forge_jobs_completed_total', 'counter', '{\"kind\": \"even\"}', 6, 10),
                  (now() - interval '20 seconds', 'n1', 'forge_jobs_completed_total', 'counter', '{\"kind\": \"odd\"}', 1, 10);
         insert into forge_nodes (id, hostname, pid, roles, version) values ('n1', 'host', 1, '{worker,scheduler}', '0.1.0');
         insert into forge_leaders (role, node_id, lease_until) values ('scheduler', 'n1', now() + interval '1 minute');",
    )
    .execute(db.pool())
    .await
    .expect("seed");
}

#[tokio::test]
async fn every_endpoint_answers_on_a_loopback_gateway() {
    let db = common::notes_database().await;
    seed(&db).await;
    let router = db.router().expect("router");

    // Jobs: newest first, filtered, paged by keyset.
    let (status, page) = get(&router, "/_api/jobs?limit=5", &[]).await;
    assert_eq!(status, 200, "{page}");
    let ids: Vec<i64> = page["jobs"].as_array().expect("jobs").iter().map(|j| j["id"].as_i64().expect("id")).collect();
    assert_eq!(ids, [12, 11, 10, 9, 8]);
    let (_, next) = get(&router, &format!("/_api/jobs?limit=5&before={}", page["next"]), &[]).await;
    assert_eq!(next["jobs"][0]["id"], 7);
    let (_, odd) = get(&router, "/_api/jobs?state=discarded&kind=odd", &[]).await;
    let odd_ids: Vec<i64> =
        odd["jobs"].as_array().expect("jobs").iter().map(|j| j["id"].as_i64().expect("id")).collect();
    assert_eq!(odd_ids, [3, 1]);
    assert_eq!(odd["next"], Value::Null);

    // One job, with its errors and its trace; its logs.
    let (status, job) = get(&router, "/_api/jobs/1", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(job["errors"][0]["message"], "boom");
    assert_eq!(job["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    let (_, job2) = get(&router, "/_api/jobs/2", &[]).await;
    assert_eq!(job2["trace_id"], forge::observability::job_trace_id(2));
    let (_, logs) = get(&router, "/_api/jobs/1/logs", &[]).await;
    let messages: Vec<&str> =
        logs["entries"].as_array().expect("entries").iter().map(|e| e["message"].as_str().expect("m")).collect();
    assert_eq!(messages, ["boom", "starting"]);

    // Logs by level and text; a trace; a metric; queues; nodes; functions.
    let (_, errors) = get(&router, "/_api/logs?level=error", &[]).await;
    assert_eq!(errors["entries"].as_array().map(Vec::len), Some(1));
    let (_, text) = get(&router, "/_api/logs?q=ELSE", &[]).await;
    assert_eq!(text["entries"][0]["message"], "elsewhere");
    let (status, trace) = get(&router, "/_api/traces/4bf92f3577b34da6a3ce929d0e0e4736", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(trace["roots"][0]["children"][0]["name"], "forge.job");
    let (status, metric) = get(&router, "/_api/metrics/forge_jobs_completed_total?step=1h&label=kind:even", &[]).await;
    assert_eq!(status, 200, "{metric}");
    let series = metric["series"].as_array().expect("series");
    assert_eq!(series.len(), 1);
    let total: f64 =
        series[0]["points"].as_array().expect("points").iter().map(|p| p["value"].as_f64().expect("v")).sum();
    assert_eq!(total, 10.0);
    let (_, queues) = get(&router, "/_api/queues", &[]).await;
    assert_eq!(queues["queues"][0]["depth"]["available"], 9);
    let (_, nodes) = get(&router, "/_api/nodes", &[]).await;
    assert_eq!((nodes["nodes"][0]["id"].as_str(), nodes["nodes"][0]["leader"].as_bool()), (Some("n1"), Some(true)));
    let (_, functions) = get(&router, "/_api/functions", &[]).await;
    assert!(functions["functions"].as_array().expect("list").iter().any(|f| f["name"] == "create_note"), "{functions}");
}

#[tokio::test]
async fn bad_parameters_get_a_400_naming_them_and_missing_things_a_404() {
    let db = TestDatabase::new().await.expect("db");
    let router = db.router().expect("router");
    for (path, parameter) in [
        ("/_api/jobs?limit=0", "limit"),
        ("/_api/jobs?limit=abc", "limit"),
        ("/_api/jobs?state=finished", "state"),
        ("/_api/jobs?before=x", "before"),
        ("/_api/jobs/abc", "id"),
        ("/_api/logs?level=loud", "level"),
        ("/_api/logs?since=yesterday", "since"),
        ("/_api/logs?before_at=2026-01-01T00:00:00Z", "before_at"),
        ("/_api/traces/xyz", "trace_id"),
        ("/_api/metrics/m?step=0s", "step"),
        ("/_api/metrics/m?label=nocolon", "label"),
        ("/_api/metrics/m?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", "since"),
    ] {
        let (status, body) = get(&router, path, &[]).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body["detail"].as_str().is_some_and(|d| d.contains(&format!("`{parameter}`"))), "{path}: {body}");
    }
    let (status, _) = get(&router, "/_api/jobs/999", &[]).await;
    assert_eq!(status, 404);
    let (status, _) = get(&router, "/_api/traces/0123456789abcdef0123456789abcdef", &[]).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn off_loopback_the_api_needs_the_admin_role() {
    let db = TestDatabase::new().await.expect("db");
    let mut config = db.config();
    config.gateway.host = "0.0.0.0".to_owned();
    let router = db.router_with(&config).expect("router");
    let keys = ApiKeys::new(db.pool().clone());
    let new = |name: &str, roles: &[&str]| {
        let mut key = NewApiKey::named(name);
        key.roles = roles.iter().map(|r| (*r).to_owned()).collect();
        key
    };
    let user = keys.create(new("user", &["user"])).await.expect("key").key;
    let admin = keys.create(new("admin", &["admin"])).await.expect("key").key;

    let (status, body) = get(&router, "/_api/jobs", &[]).await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = get(&router, "/_api/jobs", &[("x-api-key", "forge_nope_nope")]).await;
    assert_eq!(status, 401);
    let (status, body) = get(&router, "/_api/nodes", &[("x-api-key", &user)]).await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = get(&router, "/_api/nodes", &[("x-api-key", &admin)]).await;
    assert_eq!(status, 200);

    // Closed on loopback too when the configuration says so.
    let mut config = db.config();
    config.dashboard.open_on_loopback = false;
    let router = db.router_with(&config).expect("router");
    assert_eq!(get(&router, "/_api/functions", &[]).await.0, 401);
    // And gone when disabled.
    config.dashboard.enabled = false;
    let router = db.router_with(&config).expect("router");
    assert_eq!(get(&router, "/_api/functions", &[("x-api-key", &admin)]).await.0, 404);
}

async fn post(router: &axum::Router, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut request = Request::post(path);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = router.clone().oneshot(request.body(Body::empty()).expect("request")).await.expect("response");
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn state_of(db: &TestDatabase, id: i64) -> String {
    sqlx::query_scalar("select state from forge_jobs where id = $1").bind(id).fetch_one(db.pool()).await.expect("state")
}

#[tokio::test]
async fn jobs_are_retried_and_cancelled_with_the_csrf_header_only() {
    let db = TestDatabase::new().await.expect("db");
    seed(&db).await;
    let router = db.router().expect("router");
    let csrf = [("x-forge-csrf", "1")];

    // Without the header nothing changes, whoever asks.
    let (status, body) = post(&router, "/_api/jobs/1/retry", &[]).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(state_of(&db, 1).await, "discarded");

    let (status, body) = post(&router, "/_api/jobs/1/retry", &csrf).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("available")), "{body}");
    assert_eq!(state_of(&db, 1).await, "available");
    let (status, body) = post(&router, "/_api/jobs/1/retry", &csrf).await;
    assert_eq!(status, 409, "only discarded or cancelled jobs: {body}");

    let (status, body) = post(&router, "/_api/jobs/1/cancel", &csrf).await;
    assert_eq!((status, body["state"].as_str()), (200, Some("cancelled")), "{body}");
    assert_eq!(state_of(&db, 1).await, "cancelled");
    let (status, _) = post(&router, "/_api/jobs/1/cancel", &csrf).await;
    assert_eq!(status, 409, "already finished");

    assert_eq!(post(&router, "/_api/jobs/999/retry", &csrf).await.0, 404);
    assert_eq!(post(&router, "/_api/jobs/999/cancel", &csrf).await.0, 404);
    assert_eq!(post(&router, "/_api/jobs/x/cancel", &csrf).await.0, 400);
}
