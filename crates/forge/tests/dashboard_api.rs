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

/// Sends one request through the router; answers the status and the JSON body (null if none).
async fn send(
    router: &axum::Router,
    request: axum::http::request::Builder,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    let mut request = request;
    // As a browser on this machine would send it, unless the test names another host.
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        request = request.header("host", "localhost:8080");
    }
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let request = request.body(Body::from(body.to_owned())).expect("request");
    let response = router.clone().oneshot(request).await.expect("response");
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn get(router: &axum::Router, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    send(router, Request::get(path), headers, "").await
}

async fn seed(db: &TestDatabase) {
    sqlx::raw_sql(
        "insert into forge_jobs (kind, queue, state, args, attempt, attempted_at, finalized_at, errors, metadata)
           select case when i % 2 = 0 then 'even' else 'odd' end, 'default',
                  case when i <= 3 then 'discarded' else 'available' end,
                  jsonb_build_object('i', i),
                  case when i <= 3 then 1 else 0 end,
                  case when i <= 3 then now() - interval '1 second' end,
                  case when i <= 3 then now() end,
                  case when i <= 3 then jsonb_build_array(jsonb_build_object('attempt', 1, 'message', 'boom',
                      'kind', 'error', 'node', 'n1', 'started_at', now() - interval '1 second', 'at', now()))
                       else '[]' end,
                  case when i = 1 then '{\"traceparent\": \"00-4bf92f3577b34da6a3ce929d0e0e4736-bbbbbbbbbbbbbbbb-01\"}'::jsonb
                       when i = 3 then '{\"traceparent\": \"00-11111111111111111111111111111111-cccccccccccccccc-01\"}'::jsonb
                       else '{}' end
           from generate_series(1, 12) i;
         insert into forge_logs (at, level, target, message, node_id, job_id, trace_id)
           values (now() - interval '2 seconds', 'info', 't', 'starting', 'n1', 1, '4bf92f3577b34da6a3ce929d0e0e4736'),
                  (now() - interval '1 second', 'error', 't', 'boom', 'n1', 1, '4bf92f3577b34da6a3ce929d0e0e4736'),
                  (now(), 'info', 't', 'elsewhere', 'n1', 2, null);
         insert into forge_traces (trace_id, span_id, parent_span_id, name, kind, started_at, duration_us, status, node_id, attributes)
           values ('4bf92f3577b34da6a3ce929d0e0e4736', 'aaaaaaaaaaaaaaaa', '00f067aa0ba902b7', 'forge.http', 'server', now() - interval '2 seconds', 900, 'ok', 'n1', '{}'),
                  ('4bf92f3577b34da6a3ce929d0e0e4736', 'bbbbbbbbbbbbbbbb', 'aaaaaaaaaaaaaaaa', 'forge.dispatch', 'producer', now() - interval '2 seconds', 300, 'ok', 'n1',
                   '{\"jobs\": [[1, 1]], \"kind\": \"odd\", \"count\": 1}');
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
    assert_eq!(job2["trace_id"], forge::observability::TraceId::of_job(forge::jobs::JobId(2)).to_string());
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
    // The dispatch span is stored; the attempt under it is rebuilt from job 1's row.
    let dispatch = &trace["roots"][0]["children"][0];
    assert_eq!(dispatch["name"], "forge.dispatch");
    let attempt = &dispatch["children"][0];
    assert_eq!((attempt["name"].as_str(), attempt["status"].as_str()), (Some("forge.job"), Some("error")));
    assert_eq!((attempt["job_id"].as_i64(), attempt["attributes"]["error"].as_str()), (Some(1), Some("boom")));
    // Job 3's dispatch span was never stored: its trace has no spans, but the job's trace has
    // its attempt.
    let (status, _) = get(&router, "/_api/traces/11111111111111111111111111111111", &[]).await;
    assert_eq!(status, 404);
    let (status, trace) = get(&router, "/_api/jobs/3/trace", &[]).await;
    assert_eq!(status, 200, "{trace}");
    assert_eq!(trace["trace_id"], "11111111111111111111111111111111");
    assert_eq!(
        (trace["roots"][0]["name"].as_str(), trace["roots"][0]["job_id"].as_i64()),
        (Some("forge.job"), Some(3))
    );
    let (status, _) = get(&router, "/_api/jobs/999/trace", &[]).await;
    assert_eq!(status, 404);
    let (status, _) = get(&router, "/_api/jobs/4/trace", &[]).await;
    assert_eq!(status, 404, "never attempted, outside any stored trace");
    let (status, metric) = get(&router, "/_api/metrics/forge_jobs_completed_total?step=1h&label=kind:even", &[]).await;
    assert_eq!(status, 200, "{metric}");
    let series = metric["series"].as_array().expect("series");
    assert_eq!(series.len(), 1);
    let total: f64 =
        series[0]["points"].as_array().expect("points").iter().map(|p| p["value"].as_f64().expect("v")).sum();
    assert_eq!(total, 10.0);
    let (_, queues) = get(&router, "/_api/queues", &[]).await;
    assert_eq!(queues["queues"][0]["depth"]["available"], 9);
    sqlx::raw_sql(
        "insert into forge_jobs (kind, queue, state, attempt, attempted_by, heartbeat_at) values ('odd', 'other', 'running', 1, 'n1', now());
         insert into forge_metrics (at, node_id, name, kind, labels, value, seconds)
           values (now() - interval '1 minute', 'n1', 'forge_process_cpu_percent', 'gauge', '{}', 12.5, 10),
                  (now(), 'n1', 'forge_process_cpu_percent', 'gauge', '{}', 37.5, 10);",
    )
    .execute(db.pool())
    .await
    .expect("load");
    let (_, nodes) = get(&router, "/_api/nodes", &[]).await;
    let n1 = &nodes["nodes"][0];
    assert_eq!((n1["id"].as_str(), n1["leader"].as_bool()), (Some("n1"), Some(true)));
    assert_eq!((n1["running_jobs"].as_i64(), n1["cpu_percent"].as_f64()), (Some(1), Some(37.5)), "{n1}");
    assert_eq!(n1["memory_bytes"], Value::Null, "no sample: null");
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
async fn a_request_not_from_this_machine_needs_the_dashboard_role() {
    let db = TestDatabase::new().await.expect("db");
    let router = db.router().expect("router");
    let keys = ApiKeys::new(db.pool().clone());
    let new = |name: &str, roles: &[&str]| {
        let mut key = NewApiKey::named(name);
        key.roles = roles.iter().map(|r| (*r).to_owned()).collect();
        key
    };
    let user = keys.create(new("user", &["user"])).await.expect("key").key;
    let app_admin = keys.create(new("app-admin", &["admin"])).await.expect("key").key;
    let operator = keys.create(new("operator", &["forge:admin"])).await.expect("key").key;
    let remote = ("host", "forge.example.com");

    let (status, body) = get(&router, "/_api/jobs", &[remote]).await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = get(&router, "/_api/jobs", &[remote, ("x-api-key", "forge_nope_nope")]).await;
    assert_eq!(status, 401);
    let (status, body) = get(&router, "/_api/nodes", &[remote, ("x-api-key", &user)]).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = get(&router, "/_api/nodes", &[remote, ("x-api-key", &app_admin)]).await;
    assert_eq!(status, 403, "an application's own admin role does not open the operator API: {body}");
    let (status, _) = get(&router, "/_api/nodes", &[remote, ("x-api-key", &operator)]).await;
    assert_eq!(status, 200);
    // A local Host relayed by a proxy is not local.
    let (status, _) = get(&router, "/_api/nodes", &[("x-forwarded-for", "203.0.113.9")]).await;
    assert_eq!(status, 401);
    // The role is configurable.
    let mut config = db.config();
    config.dashboard.role = "ops".to_owned();
    config.project.mode = forge::config::Mode::Production;
    let router = db.router_with(&config).expect("router");
    assert_eq!(get(&router, "/_api/nodes", &[("x-api-key", &user)]).await.0, 403);
    assert_eq!(get(&router, "/_api/nodes", &[]).await.0, 401, "production mode: closed to local requests too");
    let ops = keys.create(new("ops", &["ops"])).await.expect("key").key;
    assert_eq!(get(&router, "/_api/nodes", &[("x-api-key", &ops)]).await.0, 200);

    // Closed on loopback too when the configuration says so.
    let mut config = db.config();
    config.dashboard.open_on_loopback = false;
    let router = db.router_with(&config).expect("router");
    assert_eq!(get(&router, "/_api/functions", &[]).await.0, 401);
    // And gone when disabled.
    config.dashboard.enabled = false;
    let router = db.router_with(&config).expect("router");
    assert_eq!(get(&router, "/_api/functions", &[("x-api-key", &operator)]).await.0, 404);
}

async fn post(router: &axum::Router, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    send(router, Request::post(path), headers, "").await
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

#[forge::cron("30 4 * * *", timezone = "Europe/Paris")]
async fn nightly_cleanup(_ctx: &forge::cron::CronContext) -> Result<(), forge::jobs::JobError> {
    Ok(())
}

async fn post_json(router: &axum::Router, path: &str, body: &str) -> (u16, Value) {
    send(router, Request::post(path), &[("x-forge-csrf", "1"), ("content-type", "application/json")], body).await
}

#[tokio::test]
async fn the_dispatch_form_validates_kind_and_arguments_and_changes_nothing_on_error() {
    let db = common::notes_database().await;
    let router = db.router().expect("router");
    let (status, kinds) = get(&router, "/_api/job-kinds", &[]).await;
    assert_eq!(status, 200);
    assert!(kinds["kinds"].as_array().expect("kinds").iter().any(|k| k["kind"] == "index_note"), "{kinds}");

    for (body, want, mentions) in [
        (r#"{"kind": "nope", "args": {}}"#, 400, "`kind`"),
        (r#"{"kind": "index_note", "args": {"bod": "x"}}"#, 422, "missing field `body`"),
        (r#"{"kind": "index_note", "args": {"body": 7}}"#, 422, "body"),
        (r#"{"kind": "index_note", "args": {"body": "x"}, "priority": 9}"#, 400, "`priority`"),
        (r#"{"kind": "index_note", "args": {"body": "x"}, "colour": "red"}"#, 400, "colour"),
        (r#"{"kind": "index_note", "args": "#, 400, "`body`"),
        (r#"{"args": {}}"#, 400, "kind"),
    ] {
        let (status, problem) = post_json(&router, "/_api/jobs", body).await;
        assert_eq!(status, want, "{body}: {problem}");
        assert!(problem["detail"].as_str().is_some_and(|d| d.contains(mentions)), "{body}: {problem}");
    }
    let jobs: i64 = sqlx::query_scalar("select count(*) from forge_jobs").fetch_one(db.pool()).await.expect("count");
    assert_eq!(jobs, 0, "a refused dispatch inserts nothing");

    let (status, created) = post_json(
        &router,
        "/_api/jobs",
        r#"{"kind": "index_note", "args": {"body": "x"}, "queue": "slow", "priority": 0}"#,
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let (queue, priority, state): (String, i16, String) =
        sqlx::query_as("select queue, priority, state from forge_jobs where id = $1")
            .bind(created["id"].as_i64().expect("id"))
            .fetch_one(db.pool())
            .await
            .expect("row");
    assert_eq!((queue.as_str(), priority, state.as_str()), ("slow", 0, "available"));
}

#[tokio::test]
async fn operator_actions_over_http() {
    let db = TestDatabase::new().await.expect("db");
    seed(&db).await;
    let router = db.router().expect("router");

    // Every state-changing route refuses a call without the CSRF header.
    for path in [
        "/_api/jobs",
        "/_api/jobs/retry",
        "/_api/jobs/cancel",
        "/_api/jobs/1/run",
        "/_api/jobs/1/delete",
        "/_api/crons/nightly_cleanup/trigger",
        "/_api/crons/nightly_cleanup/pause",
        "/_api/queues/default/pause",
    ] {
        assert_eq!(post(&router, path, &[]).await.0, 403, "{path}");
    }

    // Bulk retry of the odd discarded jobs (1 and 3), then cancel of what is available of kind even.
    let (status, out) = post_json(&router, "/_api/jobs/retry", r#"{"state": "discarded", "kind": "odd"}"#).await;
    assert_eq!((status, out["retried"].as_i64()), (200, Some(2)), "{out}");
    let (status, out) = post_json(&router, "/_api/jobs/cancel", r#"{"kind": "even"}"#).await;
    assert_eq!((status, out["cancelled"].as_i64()), (200, Some(5)), "the 5 available even jobs: {out}");
    let (status, out) = post_json(&router, "/_api/jobs/cancel", r#"{"state": "sleeping"}"#).await;
    assert_eq!(status, 400, "{out}");
    let (status, out) = post_json(&router, "/_api/jobs/retry", r#"{"queues": "x"}"#).await;
    assert_eq!(status, 400, "unknown filter field: {out}");

    // Run now and delete.
    sqlx::query("update forge_jobs set state = 'scheduled', run_at = now() + interval '1 day' where id = 5")
        .execute(db.pool())
        .await
        .expect("schedule");
    assert_eq!(post_json(&router, "/_api/jobs/5/run", "").await.0, 200);
    assert_eq!(state_of(&db, 5).await, "available");
    assert_eq!(post_json(&router, "/_api/jobs/5/run", "").await.0, 409);
    assert_eq!(post_json(&router, "/_api/jobs/5/delete", "").await.0, 200);
    assert_eq!(post_json(&router, "/_api/jobs/5/delete", "").await.0, 404);
    sqlx::query("update forge_jobs set state = 'running' where id = 7").execute(db.pool()).await.expect("run");
    assert_eq!(post_json(&router, "/_api/jobs/7/delete", "").await.0, 409);

    // Queues: pause, see it, resume.
    assert_eq!(post_json(&router, "/_api/queues/default/pause", "").await.0, 200);
    let (_, queues) = get(&router, "/_api/queues", &[]).await;
    let default =
        queues["queues"].as_array().expect("queues").iter().find(|q| q["name"] == "default").expect("default");
    assert!(default["paused_at"].is_string(), "{default}");
    assert_eq!(default["concurrency"], 100, "this node's configured concurrency");
    let (_, resumed) = post_json(&router, "/_api/queues/default/resume", "").await;
    assert_eq!(resumed["was_paused"], true);

    // Crons: listed with next runs; triggered (a job and a `triggered` run), paused, resumed.
    let nightly = async || {
        let (status, crons) = get(&router, "/_api/crons", &[]).await;
        assert_eq!(status, 200, "{crons}");
        crons["crons"]
            .as_array()
            .expect("crons")
            .iter()
            .find(|c| c["name"] == "nightly_cleanup")
            .cloned()
            .expect("cron")
    };
    let cron = nightly().await;
    assert_eq!((cron["expression"].as_str(), cron["timezone"].as_str()), (Some("30 4 * * *"), Some("Europe/Paris")));
    assert_eq!(cron["next"].as_array().map(Vec::len), Some(5));
    let (status, fired) = post_json(&router, "/_api/crons/nightly_cleanup/trigger", "").await;
    assert_eq!(status, 200, "{fired}");
    let job_id = fired["job_id"].as_i64().expect("job id");
    let kind: String = sqlx::query_scalar("select kind from forge_jobs where id = $1")
        .bind(job_id)
        .fetch_one(db.pool())
        .await
        .expect("job");
    assert_eq!(kind, "cron:nightly_cleanup");
    assert_eq!(post_json(&router, "/_api/crons/nightly_cleanup/pause", "").await.0, 200);
    let cron = nightly().await;
    assert!(cron["paused_at"].is_string(), "{cron}");
    assert_eq!(
        (cron["runs"][0]["status"].as_str(), cron["runs"][0]["job_id"].as_i64()),
        (Some("triggered"), Some(job_id))
    );
    assert_eq!(post_json(&router, "/_api/crons/nightly_cleanup/resume", "").await.1["was_paused"], true);
    assert_eq!(post_json(&router, "/_api/crons/nope/trigger", "").await.0, 404);

    // The overview and the metric names.
    let (status, overview) = get(&router, "/_api/overview", &[]).await;
    assert_eq!(status, 200, "{overview}");
    assert_eq!(overview["counts"]["cancelled"], 5);
    assert!(overview["recent_failures"].as_array().is_some_and(|f| !f.is_empty()), "{overview}");
    let (_, names) = get(&router, "/_api/metrics", &[]).await;
    assert_eq!(names["names"], serde_json::json!(["forge_jobs_completed_total"]));
}

#[tokio::test]
async fn the_pages_are_served_from_the_binary_with_a_strict_policy() {
    let db = TestDatabase::new().await.expect("db");
    let mut config = db.config();
    config.gateway.host = "0.0.0.0".to_owned();
    let router = db.router_with(&config).expect("router");
    let fetch = async |path: &str, etag: Option<&str>| {
        let mut request = Request::get(path);
        if let Some(etag) = etag {
            request = request.header("if-none-match", etag);
        }
        router.clone().oneshot(request.body(Body::empty()).expect("request")).await.expect("response")
    };
    // The shell holds no data, so it is served without credentials; the data is not.
    let page = fetch("/_dashboard", None).await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    assert!(page.headers()["content-security-policy"].to_str().expect("csp").contains("script-src 'self'"));
    let script = fetch("/_dashboard/assets/app.js", None).await;
    assert_eq!(script.status(), 200);
    let etag = script.headers()["etag"].to_str().expect("etag").to_owned();
    assert_eq!(fetch("/_dashboard/assets/app.js", Some(&etag)).await.status(), 304);
    assert_eq!(fetch("/_dashboard/assets/nope.js", None).await.status(), 404);
    assert_eq!(fetch("/_api/overview", None).await.status(), 401);
}

#[tokio::test]
async fn workflow_routes_refuse_bad_input_precisely_and_change_nothing() {
    let db = TestDatabase::new().await.expect("db");
    sqlx::raw_sql(
        "insert into forge_jobs (id, kind, args, state, run_at) overriding system value
           values (7, 'some_flow', 'null', 'scheduled', now() + interval '1 hour');
         insert into forge_workflow_runs (id, workflow, version, run_key, waiting_for) values (7, 'some_flow', 1, 'k7', 'go');",
    )
    .execute(db.pool())
    .await
    .expect("a run");
    let router = db.router().expect("router");
    let (status, body) = get(&router, "/_api/workflows?status=sleepy", &[]).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["detail"].as_str().unwrap_or_default().contains("`status`"), "{body}");
    assert_eq!(get(&router, "/_api/workflows?limit=0", &[]).await.0, 400);
    let (status, body) = get(&router, "/_api/workflows?status=waiting&key=k7", &[]).await;
    assert_eq!((status, body["runs"][0]["id"].as_i64()), (200, Some(7)), "{body}");
    assert_eq!(body["runs"][0]["status"], "waiting");
    assert_eq!(get(&router, "/_api/workflows/x", &[]).await.0, 400);

    for (body, want) in
        [("{oops", 400), (r#"{"payload": 1}"#, 400), (r#"{"name": ""}"#, 422), (r#"{"name": "a\u0000b"}"#, 422)]
    {
        let (status, answer) = post_json(&router, "/_api/workflows/7/events", body).await;
        assert_eq!(status, want, "{body}: {answer}");
    }
    let events: i64 =
        sqlx::query_scalar("select count(*) from forge_workflow_events").fetch_one(db.pool()).await.expect("events");
    assert_eq!(events, 0, "refused events change nothing");
    let (status, answer) =
        post_json(&router, "/_api/workflows/7/events", r#"{"name": "go", "payload": {"ok": true}}"#).await;
    assert_eq!(
        (status, answer["delivered"].as_bool(), answer["woke"].as_bool()),
        (201, Some(true), Some(true)),
        "{answer}"
    );
    let (status, answer) = post_json(&router, "/_api/workflows/7/events", r#"{"name": "go"}"#).await;
    assert_eq!((status, answer["delivered"].as_bool()), (200, Some(false)), "the first event wins: {answer}");
    let (status, answer) = post_json(&router, "/_api/workflows/7/resume", "{}").await;
    assert_eq!(status, 409, "not blocked: {answer}");
    let (status, answer) = post_json(&router, "/_api/workflows/7/retry", "{}").await;
    assert_eq!(status, 409, "not failed: {answer}");
}
