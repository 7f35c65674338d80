//! The gateway's probes, through the router and over real HTTP.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{get, listener, with_roles};
use forge_runtime::Forge;
use forge_runtime::config::Role;
use forge_runtime::db::Migrator;
use forge_runtime::gateway::{GatewayState, PROBLEM_JSON, router};
use forge_runtime::testing::TestDatabase;
use http_body_util::BodyExt;
use sqlx::postgres::PgPoolOptions;
use tower::ServiceExt;

fn app(pool: sqlx::PgPool, migrator: Migrator) -> axum::Router {
    let mut config = forge_runtime::ForgeConfig::default();
    config.gateway.body_limit = "1KiB".parse().expect("size");
    router(GatewayState::with_config(pool, migrator, &config))
}

async fn call(app: axum::Router, path: &str) -> (StatusCode, String, serde_json::Value) {
    let response = app.oneshot(Request::get(path).body(Body::empty()).expect("request")).await.expect("response");
    let status = response.status();
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    (status, content_type, serde_json::from_slice(&bytes).expect("json body"))
}

fn assert_problem(content_type: &str, body: &serde_json::Value, needle: &str) {
    assert_eq!(content_type, PROBLEM_JSON);
    assert_eq!(body["status"], 503);
    assert_eq!(body["title"], "Service Unavailable");
    assert_eq!(body["instance"], "/ready");
    let detail = body["detail"].as_str().expect("detail");
    assert!(detail.contains(needle), "{detail}");
}

#[tokio::test]
async fn health_and_ready_answer_200_on_a_migrated_database() {
    let db = TestDatabase::new().await.expect("database");
    let app = app(db.pool().clone(), Migrator::forge().expect("migrator"));
    let (status, _, body) = call(app.clone(), "/health").await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (status, _, body) = call(app, "/ready").await;
    assert_eq!((status, body["status"].as_str()), (StatusCode::OK, Some("ready")));
}

#[tokio::test]
async fn ready_is_503_while_migrations_are_pending() {
    let db = TestDatabase::empty().await.expect("database");
    let app = app(db.pool().clone(), Migrator::forge().expect("migrator"));
    let (status, content_type, body) = call(app.clone(), "/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_problem(&content_type, &body, "migrations not applied: forge/0001_jobs");
    let (status, _, _) = call(app, "/health").await;
    assert_eq!(status, StatusCode::OK, "/health does not depend on the database");
}

#[tokio::test]
async fn ready_is_503_when_the_database_is_unreachable() {
    // Nothing listens on port 1; the pool connects lazily, as a pool whose server went away would.
    let pool = PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_secs(1))
        .connect_lazy("postgres://postgres@127.0.0.1:1/forge")
        .expect("lazy pool");
    let app = app(pool, Migrator::forge().expect("migrator"));
    let (status, content_type, body) = call(app, "/ready").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_problem(&content_type, &body, "database unreachable");
}

#[tokio::test]
async fn a_running_node_turns_unready_when_its_database_disappears() {
    let db = TestDatabase::new().await.expect("database");
    let config = with_roles(db.config(), &[Role::Gateway]);
    let node =
        Forge::builder().config(config).listener(listener()).build().expect("build").start().await.expect("start");
    let base = format!("http://{}", node.local_addr().expect("gateway address"));

    assert_eq!(get(&format!("{base}/ready")).await.0, 200);
    sqlx::raw_sql(&format!("drop database \"{}\" with (force)", db.name()))
        .execute(&mut admin_connection(&db).await)
        .await
        .expect("drop the node's database");

    let (status, content_type, body) = get(&format!("{base}/ready")).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(content_type, PROBLEM_JSON);
    assert!(body.contains("database unreachable"), "{body}");
    assert_eq!(get(&format!("{base}/health")).await.0, 200, "the process still lives");
    node.stop().await.expect("stop");
}

/// An admin connection to the test database's server.
async fn admin_connection(db: &TestDatabase) -> sqlx::PgConnection {
    use sqlx::Connection;
    use sqlx::postgres::PgConnectOptions;
    let options: PgConnectOptions = db.url().parse().expect("test url");
    sqlx::PgConnection::connect_with(&options.database("postgres")).await.expect("admin connection")
}
