//! ForgeRun over real HTTP against real PostgreSQL, as its README walks through it: an operator
//! creates a client and its key; the client registers a webhook, submits work from the
//! catalogue (now and at `run_at`), follows it and reads its reports.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{get, post};
use forge::gateway::{ApiKeys, NewApiKey};
use forge::prelude::*;
use forge::testing::TestDatabase;
use serde_json::{Value, json};

#[path = "../src/catalogue.rs"]
mod catalogue;

struct ForgeRun {
    _node: RunningForge,
    base: String,
    http: reqwest::Client,
    /// The client's key.
    key: String,
    /// What the loopback site saw: the webhook deliveries' bodies.
    hooks: Arc<Mutex<Vec<Value>>>,
    /// The loopback site: `/file`, `/flaky` (503 once, then 200), `/hook`.
    site: String,
    _db: TestDatabase,
}

impl ForgeRun {
    /// ForgeRun with its own forge.toml on a fresh database; `allow_private` for `http_get`.
    async fn start(allow_private: bool) -> Self {
        let db = TestDatabase::new().await.expect("db");
        let mut config =
            ForgeConfig::load_or_default(concat!(env!("CARGO_MANIFEST_DIR"), "/forge.toml")).expect("forge.toml");
        config.database = db.config().database;
        // Webhooks go to this test's loopback receiver.
        config.api.webhooks.allow_private = true;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let node = Forge::builder()
            .config(config)
            .listener(listener)
            .extension(catalogue::Fetcher::new(allow_private))
            .build()
            .expect("build")
            .start()
            .await
            .expect("start");
        let base = format!("http://{}", node.local_addr().expect("addr"));

        let hooks: Arc<Mutex<Vec<Value>>> = Arc::default();
        let flaky = Arc::new(Mutex::new(0u32));
        let received = hooks.clone();
        let app = Router::new()
            .route("/file", get(|| async { "hello forge" }))
            .route(
                "/flaky",
                get(move || {
                    let flaky = flaky.clone();
                    async move {
                        let mut calls = flaky.lock().expect("flaky");
                        *calls += 1;
                        if *calls == 1 { (StatusCode::SERVICE_UNAVAILABLE, "busy") } else { (StatusCode::OK, "ok") }
                    }
                }),
            )
            .route(
                "/hook",
                post(move |body: String| {
                    let received = received.clone();
                    async move {
                        received.lock().expect("hooks").push(serde_json::from_str(&body).expect("json"));
                        "ok"
                    }
                }),
            );
        let site = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let site_url = format!("http://{}", site.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(site, app).await });

        // The operator's key (the CLI's `forge keys create ops --role forge:admin`).
        let operator = ApiKeys::new(db.pool().clone())
            .create(NewApiKey::named("ops").with_role("forge:admin"))
            .await
            .expect("operator key")
            .key;
        let http = reqwest::Client::new();
        let mut run = Self { _node: node, base, http, key: operator, hooks, site: site_url, _db: db };
        let (status, client) = run.post("/v1/clients", json!({"name": "acme"})).await;
        assert_eq!(status, 201, "{client}");
        let id = client["id"].as_str().expect("id").to_owned();
        let (status, key) = run.post(&format!("/v1/clients/{id}/keys"), json!({})).await;
        assert_eq!(status, 201, "{key}");
        run.key = key["key"].as_str().expect("key").to_owned();
        run
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await
            .expect("post");
        (response.status().as_u16(), response.json().await.expect("json"))
    }

    async fn get(&self, path: &str) -> Value {
        let response = self.http.get(format!("{}{path}", self.base)).bearer_auth(&self.key).send().await.expect("get");
        assert!(response.status().is_success(), "{path}: {}", response.status());
        response.json().await.expect("json")
    }

    async fn submit(&self, body: Value) -> i64 {
        let (status, job) = self.post("/v1/jobs", body).await;
        assert_eq!(status, 201, "{job}");
        job["id"].as_i64().expect("id")
    }

    /// Waits for job `id` to reach `state`.
    async fn wait(&self, id: i64, state: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let job = self.get(&format!("/v1/jobs/{id}")).await;
            if job["state"] == state {
                return job;
            }
            assert!(Instant::now() < deadline, "job {id} never became {state}: {job}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

#[tokio::test]
async fn a_client_runs_the_catalogue_follows_it_and_reads_reports() {
    let run = ForgeRun::start(true).await;
    let (status, hook) =
        run.post("/v1/webhooks", json!({"url": format!("{}/hook", run.site), "events": ["job.succeeded"]})).await;
    assert_eq!(status, 201, "{hook}");
    assert!(hook["secret"].as_str().expect("secret").starts_with("whsec_"));

    let fetch = run.submit(json!({"kind": "http_get", "args": {"url": format!("{}/file", run.site)}})).await;
    let sum = run.submit(json!({"kind": "checksum", "args": {"data": "hello forge"}})).await;
    let report = run
        .submit(json!({"kind": "render_report", "args": {"title": "Sales", "rows": [
            {"label": "north", "value": 2.5}, {"label": "south", "value": 4}]}}))
        .await;
    let flaky = run.submit(json!({"kind": "http_get", "args": {"url": format!("{}/flaky", run.site)}})).await;
    let nap = run.submit(json!({"kind": "sleep", "args": {"seconds": 2}})).await;

    let fetched = run.wait(fetch, "completed").await;
    let summed = run.wait(sum, "completed").await;
    assert_eq!(fetched["output"]["status"], 200);
    assert_eq!(fetched["output"]["bytes"], 11);
    // Two kinds of work agree: the fetched body's hash is the checksum of the same text.
    assert_eq!(fetched["output"]["sha256"], summed["output"]);
    assert_eq!(fetched["queue"], "fetch");

    let rendered = run.wait(report, "completed").await;
    assert_eq!(rendered["output"]["total"], 6.5);
    assert!(rendered["output"]["markdown"].as_str().expect("md").contains("| south | 4 |"));

    // The flaky URL answered 503 once: the report shows the failed attempt, then the success.
    run.wait(flaky, "completed").await;
    let flaky_report = run.get(&format!("/v1/jobs/{flaky}/report")).await;
    assert_eq!(flaky_report["outcome"], "succeeded");
    let attempts = flaky_report["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 2, "{flaky_report}");
    assert!(attempts[0]["error"].as_str().expect("error").contains("503"), "{flaky_report}");

    // The sleep reported progress, seen in its events.
    run.wait(nap, "completed").await;
    let events = run.get(&format!("/v1/jobs/{nap}/events")).await;
    let types: Vec<&str> =
        events["data"].as_array().expect("events").iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(types.first(), Some(&"job.created"));
    assert!(types.contains(&"job.progress"), "{types:?}");
    assert_eq!(types.last(), Some(&"job.succeeded"));

    // One signed webhook per finished job.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut jobs: Vec<i64> =
            run.hooks.lock().expect("hooks").iter().filter_map(|h| h["data"]["job_id"].as_i64()).collect();
        jobs.sort_unstable();
        jobs.dedup();
        if jobs.len() == 5 {
            assert_eq!(jobs, {
                let mut all = vec![fetch, sum, report, flaky, nap];
                all.sort_unstable();
                all
            });
            break;
        }
        assert!(Instant::now() < deadline, "webhooks so far: {jobs:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn work_scheduled_with_run_at_waits_for_its_time() {
    let run = ForgeRun::start(true).await;
    let at = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let id = run.submit(json!({"kind": "checksum", "args": {"data": "later"}, "run_at": at})).await;
    assert_eq!(run.get(&format!("/v1/jobs/{id}")).await["state"], "scheduled");
    let done = run.wait(id, "completed").await;
    let started = done["attempted_at"].as_str().expect("attempted_at");
    assert!(started >= at.as_str(), "{started} < {at}");
}

#[tokio::test]
async fn bad_work_is_refused_and_internal_addresses_are_not_fetched() {
    let run = ForgeRun::start(false).await;
    let (status, problem) = run.post("/v1/jobs", json!({"kind": "http_get", "args": {}})).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["path"], "args.url", "{problem}");
    let (status, problem) = run.post("/v1/jobs", json!({"kind": "sleep", "args": {"seconds": "ten"}})).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["path"], "args.seconds", "{problem}");
    let (status, _) = run.post("/v1/jobs", json!({"kind": "format_disk", "args": {}})).await;
    assert_eq!(status, 422);

    // Without FORGERUN_ALLOW_PRIVATE, a loopback URL fails at once, saying why.
    let id = run.submit(json!({"kind": "http_get", "args": {"url": format!("{}/file", run.site)}})).await;
    run.wait(id, "discarded").await;
    let report = run.get(&format!("/v1/jobs/{id}/report")).await;
    assert_eq!(report["outcome"], "failed");
    assert_eq!(report["attempts"].as_array().expect("attempts").len(), 1, "{report}");
    assert!(report["attempts"][0]["error"].as_str().expect("error").contains("refused"), "{report}");
}
