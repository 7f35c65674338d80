//! The dashboard's job API pages: `/_api/clients` and `/_api/webhooks…` over HTTP (bad input
//! refused, nothing changed), and the pages in a real browser (`tests/browser/job-api.mjs`):
//! the overview's banner for an endpoint Forge disabled (a 410), the clients page with key
//! prefixes, the webhooks list, an endpoint's delivery history, recover, resend, disable and
//! enable.
//!
//! Needs `node`, `/usr/bin/chromium` and `tests/browser/node_modules` (`./dev.sh setup`).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use forge::gateway::{ApiKeys, NewApiKey};
use forge::prelude::*;
use forge::testing::{TestDatabase, project_root};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, Serialize, Deserialize)]
struct Nap {
    n: u32,
}

#[forge::job(api)]
async fn dashboard_api_work(_ctx: &JobContext, args: Nap) -> Result<u32, JobError> {
    Ok(args.n)
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// `/gone` answers 410 until `gone` is cleared, then 204; `/ok` answers 204.
async fn receiver(gone: Arc<AtomicBool>) -> String {
    async fn gone_handler(State(gone): State<Arc<AtomicBool>>) -> StatusCode {
        if gone.load(Ordering::SeqCst) { StatusCode::GONE } else { StatusCode::NO_CONTENT }
    }
    let app = Router::new()
        .route("/gone", post(gone_handler))
        .route("/ok", post(|| async { StatusCode::NO_CONTENT }))
        .with_state(gone);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_clients_and_webhooks_and_controls_them() {
    let root = project_root();
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(
        std::path::Path::new(&chromium).exists() && root.join("tests/browser/node_modules/playwright-core").exists(),
        "the browser test needs {chromium} and tests/browser/node_modules: run ./dev.sh setup"
    );
    let gone = Arc::new(AtomicBool::new(true));
    let site = receiver(gone.clone()).await;

    let db = TestDatabase::new().await.expect("db");
    let mut config = db.config();
    config.api.enabled = true;
    config.api.webhooks.allow_private = true;
    config.api.webhooks.poll_interval = "50ms".parse().expect("duration");
    config.worker.poll_interval = "100ms".parse().expect("duration");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let node = Forge::builder().config(config).listener(listener).build().expect("build").start().await.expect("start");
    let base = format!("http://{}", node.local_addr().expect("addr"));
    let http = reqwest::Client::new();
    let operator = ApiKeys::new(db.pool().clone())
        .create(NewApiKey::named("ops").with_role("forge:admin"))
        .await
        .expect("key")
        .key;
    let post = async |key: &str, path: &str, body: Value| -> Value {
        let response = http.post(format!("{base}{path}")).bearer_auth(key).json(&body).send().await.expect("post");
        assert!(response.status().is_success(), "{path}: {}", response.status());
        response.json().await.expect("json")
    };
    let client = post(&operator, "/v1/clients", json!({"name": "acme"})).await;
    let key = post(&operator, &format!("/v1/clients/{}/keys", client["id"].as_str().expect("id")), json!({})).await;
    let (prefix, key) =
        (key["prefix"].as_str().expect("prefix").to_owned(), key["key"].as_str().expect("key").to_owned());
    let disabled =
        post(&key, "/v1/webhooks", json!({"url": format!("{site}/gone"), "events": ["job.succeeded"]})).await;
    let working = post(&key, "/v1/webhooks", json!({"url": format!("{site}/ok"), "events": ["job.succeeded"]})).await;
    let (disabled, working) =
        (disabled["id"].as_str().expect("id").to_owned(), working["id"].as_str().expect("id").to_owned());
    post(&key, "/v1/jobs", json!({"kind": "dashboard_api_work", "args": {"n": 1}})).await;

    let pool = db.pool().clone();
    let disabled_reason = async || -> Option<String> {
        sqlx::query_scalar("select disabled_reason from forge_webhook_endpoints where id = $1::uuid")
            .bind(&disabled)
            .fetch_one(&pool)
            .await
            .expect("endpoint")
    };
    wait_for("the 410 to disable the endpoint", async || disabled_reason().await.is_some()).await;
    let delivered = async |endpoint: &str| -> i64 {
        sqlx::query_scalar(
            "select count(*) from forge_webhook_deliveries where endpoint_id = $1::uuid and status between 200 and 299",
        )
        .bind(endpoint)
        .fetch_one(&pool)
        .await
        .expect("deliveries")
    };
    wait_for("the working endpoint's delivery", async || delivered(&working).await == 1).await;

    // /_api over HTTP (from this machine in development mode: open): answers and refusals.
    let dashboard = |path: &str| http.get(format!("{base}/_api{path}"));
    let clients: Value = dashboard("/clients").send().await.expect("clients").json().await.expect("json");
    assert_eq!(clients["clients"][0]["name"], "acme");
    assert_eq!(clients["clients"][0]["keys"][0]["prefix"], prefix.as_str());
    assert!(clients["clients"][0]["keys"][0].get("key").is_none(), "a key's secret is shown");
    assert_eq!(clients["clients"][0]["endpoints"], 2);
    let overview: Value = dashboard("/overview").send().await.expect("overview").json().await.expect("json");
    assert_eq!(overview["webhooks_disabled"][0]["id"], disabled.as_str());
    assert!(overview["webhooks_disabled"][0]["disabled_reason"].as_str().expect("reason").contains("410"));
    let listed: Value = dashboard("/webhooks").send().await.expect("webhooks").json().await.expect("json");
    let row = |id: &str| {
        listed["endpoints"].as_array().expect("endpoints").iter().find(|e| e["id"] == id).expect("listed").clone()
    };
    assert_eq!((row(&working)["ok_24h"].clone(), row(&working)["failed_24h"].clone()), (json!(1), json!(0)));
    assert_eq!((row(&disabled)["ok_24h"].clone(), row(&disabled)["failed_24h"].clone()), (json!(0), json!(1)));
    assert_eq!(listed["endpoints"][0]["id"], disabled.as_str(), "disabled endpoints are listed first");
    let page: Value =
        dashboard(&format!("/webhooks/{disabled}")).send().await.expect("endpoint").json().await.expect("json");
    assert_eq!(page["deliveries"]["data"][0]["status"], 410);
    assert_eq!(dashboard("/webhooks/not-a-uuid").send().await.expect("bad").status(), 400);
    let unknown = uuid::Uuid::new_v4();
    assert_eq!(dashboard(&format!("/webhooks/{unknown}")).send().await.expect("unknown").status(), 404);
    assert_eq!(dashboard(&format!("/webhooks/{disabled}?limit=0")).send().await.expect("limit").status(), 400);
    let act = |path: String, body: &'static str| {
        http.post(format!("{base}/_api{path}"))
            .header("x-forge-csrf", "1")
            .header("content-type", "application/json")
            .body(body)
    };
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(
        status(act(format!("/webhooks/{disabled}/recover"), r#"{"since": "yesterday"}"#).send().await.expect("r")),
        400
    );
    assert_eq!(
        status(act(format!("/webhooks/{disabled}/resend"), r#"{"event_id": 999999}"#).send().await.expect("r")),
        404
    );
    assert_eq!(status(act(format!("/webhooks/{unknown}/enable"), "").send().await.expect("r")), 404);
    let without_csrf = http.post(format!("{base}/_api/webhooks/{disabled}/enable")).send().await.expect("csrf");
    assert_eq!(without_csrf.status(), 403);
    assert!(disabled_reason().await.is_some(), "a refused call changed the endpoint");

    // The browser: the receiver stops answering 410 so that recovery can succeed.
    gone.store(false, Ordering::SeqCst);
    let shots: PathBuf = root.join("target/dashboard-screenshots");
    let output = tokio::process::Command::new("node")
        .arg(root.join("tests/browser/job-api.mjs"))
        .arg(&base)
        .arg(&shots)
        .arg(&disabled)
        .arg(&working)
        .arg(&prefix)
        .env("CHROMIUM", &chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), output).await.expect("the browser run timed out");
    let output = output.expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(output.status.success(), "the browser run failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));

    // What the browser did is in the database: the disabled endpoint was recovered (enabled, its
    // missed event delivered), the working one got its event again and is enabled.
    assert_eq!(disabled_reason().await, None);
    wait_for("the recovered delivery", async || delivered(&disabled).await >= 1).await;
    wait_for("the resent delivery", async || delivered(&working).await >= 2).await;
    let enabled: bool =
        sqlx::query_scalar("select disabled_at is null from forge_webhook_endpoints where id = $1::uuid")
            .bind(&working)
            .fetch_one(db.pool())
            .await
            .expect("endpoint");
    assert!(enabled);
    for page in ["api-banner", "api-clients", "api-webhooks", "api-recovered", "api-endpoint"] {
        assert!(shots.join(format!("{page}.png")).exists(), "no screenshot of {page}");
    }
    node.stop().await.expect("stop");
}
