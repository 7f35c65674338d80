//! Webhooks of the job API over real HTTP against real Postgres: Standard Webhooks signatures
//! (checked by Forge and by the reference library from npm), the retry schedule with the same
//! message id, `Retry-After`, `410 Gone`, disabling an endpoint that fails too long and
//! recovering what it missed, secret rotation, SSRF refusal on resolved addresses, and each
//! event delivered once per endpoint when several nodes dispatch.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use forge::api::webhooks::signature;
use forge::gateway::{ApiKeys, NewApiKey};
use forge::prelude::*;
use forge::testing::TestDatabase;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, Serialize, Deserialize)]
struct Work {
    n: u32,
}

#[forge::job(api)]
async fn hook_work(_ctx: &JobContext, args: Work) -> Result<u32, JobError> {
    Ok(args.n * 2)
}

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    behaviour: String,
    headers: HashMap<String, String>,
    body: String,
    at: Instant,
}

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Received>>>,
    healthy: Arc<AtomicBool>,
}

impl Receiver {
    async fn start() -> (Self, SocketAddr) {
        let receiver = Receiver::default();
        receiver.healthy.store(true, Ordering::SeqCst);
        let app = axum::Router::new().route("/{behaviour}", axum::routing::post(receive)).with_state(receiver.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, addr)
    }

    fn got(&self, behaviour: &str) -> Vec<Received> {
        self.got.lock().expect("lock").iter().filter(|r| r.behaviour == behaviour).cloned().collect()
    }

    /// Waits until `behaviour` got `n` requests that `count` says count.
    async fn wait(&self, behaviour: &str, n: usize, count: impl Fn(&Received) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got: Vec<Received> = self.got(behaviour).into_iter().filter(|r| count(r)).collect();
            if got.len() >= n {
                return got;
            }
            assert!(Instant::now() < deadline, "{behaviour}: {} of {n} requests arrived", got.len());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn receive(
    State(receiver): State<Receiver>,
    Path(behaviour): Path<String>,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    let headers: HashMap<String, String> =
        headers.iter().map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned())).collect();
    let id = headers.get("webhook-id").cloned().unwrap_or_default();
    let earlier = {
        let mut got = receiver.got.lock().expect("lock");
        let earlier =
            got.iter().filter(|r| r.behaviour == behaviour && r.headers.get("webhook-id") == Some(&id)).count();
        got.push(Received { behaviour: behaviour.clone(), headers, body, at: Instant::now() });
        earlier
    };
    match behaviour.as_str() {
        "fail2" if earlier < 2 => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        "gone" => StatusCode::GONE.into_response(),
        "retry-after" if earlier == 0 => (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "2")]).into_response(),
        "toggle" if !receiver.healthy.load(Ordering::SeqCst) => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        _ => StatusCode::NO_CONTENT.into_response(),
    }
}

struct Api {
    node: RunningForge,
    base: String,
    http: reqwest::Client,
    key: String,
    db: TestDatabase,
}

async fn start_node(db: &TestDatabase, tweak: impl FnOnce(&mut forge::ForgeConfig)) -> RunningForge {
    let mut config = db.config();
    config.api.enabled = true;
    config.api.webhooks.allow_private = true;
    // Short first delays; the longest (5 s) caps a `Retry-After`.
    config.api.webhooks.schedule =
        vec!["100ms".parse().expect("d"), "100ms".parse().expect("d"), "5s".parse().expect("d")];
    config.api.webhooks.poll_interval = "20ms".parse().expect("d");
    tweak(&mut config);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    Forge::builder().config(config).listener(listener).build().expect("build").start().await.expect("start")
}

impl Api {
    async fn start(tweak: impl FnOnce(&mut forge::ForgeConfig)) -> Self {
        let db = TestDatabase::new().await.expect("db");
        let node = start_node(&db, tweak).await;
        let base = format!("http://{}", node.local_addr().expect("addr"));
        let http = reqwest::Client::new();
        let operator = ApiKeys::new(db.pool().clone())
            .create(NewApiKey::named("ops").with_role("forge:admin"))
            .await
            .expect("key")
            .key;
        let client: Value = http
            .post(format!("{base}/v1/clients"))
            .bearer_auth(&operator)
            .json(&json!({"name": "acme"}))
            .send()
            .await
            .expect("client")
            .json()
            .await
            .expect("json");
        let id = client["id"].as_str().expect("id");
        let key: Value = http
            .post(format!("{base}/v1/clients/{id}/keys"))
            .bearer_auth(&operator)
            .json(&json!({}))
            .send()
            .await
            .expect("key")
            .json()
            .await
            .expect("json");
        let key = key["key"].as_str().expect("key").to_owned();
        Self { node, base, http, key, db }
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
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.http.get(format!("{}{path}", self.base)).bearer_auth(&self.key).send().await.expect("get");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A new endpoint: its id and secret.
    async fn endpoint(&self, url: String, events: &[&str]) -> (String, String) {
        let (status, created) = self.post("/v1/webhooks", json!({"url": url, "events": events})).await;
        assert_eq!(status, 201, "{created}");
        (created["id"].as_str().expect("id").to_owned(), created["secret"].as_str().expect("secret").to_owned())
    }

    async fn submit(&self, n: u32) -> i64 {
        let (status, job) = self.post("/v1/jobs", json!({"kind": "hook_work", "args": {"n": n}})).await;
        assert_eq!(status, 201, "{job}");
        job["id"].as_i64().expect("id")
    }

    async fn endpoint_state(&self, id: &str) -> Value {
        self.get(&format!("/v1/webhooks/{id}")).await.1
    }
}

fn for_job(job: i64) -> impl Fn(&Received) -> bool {
    move |r| serde_json::from_str::<Value>(&r.body).is_ok_and(|b| b["data"]["job_id"] == job)
}

fn verifies(secret: &str, r: &Received) -> bool {
    let ts: i64 = r.headers["webhook-timestamp"].parse().expect("timestamp");
    signature::verify(secret, &r.headers["webhook-id"], ts, r.body.as_bytes(), &r.headers["webhook-signature"])
}

/// Verifies deliveries with the reference library (`tests/browser/verify-webhooks.mjs`).
fn verify_with_reference_library(deliveries: &[(String, &Received)]) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    assert!(
        root.join("tests/browser/node_modules/standardwebhooks").exists(),
        "the reference check needs node and tests/browser/node_modules: run ./dev.sh setup"
    );
    let input: Vec<Value> = deliveries
        .iter()
        .map(|(secret, r)| {
            let headers: HashMap<&str, &str> = ["webhook-id", "webhook-timestamp", "webhook-signature"]
                .into_iter()
                .map(|h| (h, r.headers[h].as_str()))
                .collect();
            json!({"secret": secret, "headers": headers, "body": r.body})
        })
        .collect();
    let mut child = std::process::Command::new("node")
        .arg(root.join("tests/browser/verify-webhooks.mjs"))
        .current_dir(root.join("tests/browser"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("node");
    use std::io::Write;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(serde_json::to_string(&input).expect("json").as_bytes())
        .expect("write");
    let output = child.wait_with_output().expect("node ran");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), format!("verified {}", deliveries.len()));
}

#[tokio::test]
async fn events_are_delivered_signed_and_the_reference_library_verifies_them() {
    let (receiver, addr) = Receiver::start().await;
    let api = Api::start(|_| {}).await;
    let (_, all_secret) = api.endpoint(format!("http://{addr}/ok"), &[]).await;
    let (_, done_secret) = api.endpoint(format!("http://{addr}/done"), &["job.succeeded"]).await;
    let job = api.submit(21).await;
    let mut all = receiver.wait("ok", 3, for_job(job)).await;
    // Deliveries run in parallel: their order is not the events' (the event id is).
    let body_of = |r: &Received| serde_json::from_str::<Value>(&r.body).expect("json");
    all.sort_by_key(|r| body_of(r)["data"]["event_id"].as_i64());
    let types: Vec<String> = all.iter().map(|r| body_of(r)["type"].as_str().expect("type").to_owned()).collect();
    assert_eq!(types, ["job.created", "job.started", "job.succeeded"]);
    let done = receiver.wait("done", 1, for_job(job)).await;
    let body: Value = serde_json::from_str(&done[0].body).expect("json");
    assert_eq!(body["type"], "job.succeeded");
    assert_eq!(body["data"]["kind"], "hook_work");
    let event_id = body["data"]["event_id"].as_i64().expect("event id");
    assert_eq!(done[0].headers["webhook-id"], format!("msg_{event_id}"));
    assert_eq!(done[0].headers["content-type"], "application/json");
    let ts: i64 = done[0].headers["webhook-timestamp"].parse().expect("ts");
    assert!((chrono::Utc::now().timestamp() - ts).abs() < 60);
    assert!(done[0].headers.contains_key("traceparent"), "{:?}", done[0].headers);
    for r in &all {
        assert!(verifies(&all_secret, r));
        assert!(!verifies(&done_secret, r), "another endpoint's secret verifies");
    }
    // A webhook given with the job: its own secret, its job's events only.
    let (status, submitted) = api
        .post("/v1/jobs", json!({"kind": "hook_work", "args": {"n": 1}, "webhook": format!("http://{addr}/single")}))
        .await;
    assert_eq!(status, 201, "{submitted}");
    let single_secret = submitted["webhook"]["secret"].as_str().expect("secret").to_owned();
    let single_job = submitted["id"].as_i64().expect("id");
    let single = receiver.wait("single", 3, for_job(single_job)).await;
    assert!(single.iter().all(|r| verifies(&single_secret, r)));
    assert!(receiver.got("single").iter().all(for_job(single_job)), "the job's endpoint got another job's event");
    let (_, job_view) = api.get(&format!("/v1/jobs/{single_job}")).await;
    assert!(job_view.get("webhook").is_none(), "the secret is shown once");

    let mut checked: Vec<(String, &Received)> = all.iter().map(|r| (all_secret.clone(), r)).collect();
    checked.extend(done.iter().map(|r| (done_secret.clone(), r)));
    checked.extend(single.iter().map(|r| (single_secret.clone(), r)));
    verify_with_reference_library(&checked);
    api.node.stop().await.expect("stop");
}

#[tokio::test]
async fn failed_deliveries_retry_with_the_same_id_and_honour_retry_after() {
    let (receiver, addr) = Receiver::start().await;
    let api = Api::start(|_| {}).await;
    let (flaky, _) = api.endpoint(format!("http://{addr}/fail2"), &["job.succeeded"]).await;
    let (_, _) = api.endpoint(format!("http://{addr}/retry-after"), &["job.succeeded"]).await;
    let job = api.submit(1).await;
    let tries = receiver.wait("fail2", 3, for_job(job)).await;
    assert_eq!(tries.len(), 3);
    assert!(tries.iter().all(|r| r.headers["webhook-id"] == tries[0].headers["webhook-id"]), "a retry changed the id");
    let later = receiver.wait("retry-after", 2, for_job(job)).await;
    let gap = later[1].at - later[0].at;
    // The next attempt is due 2 s after the 429 was answered (the schedule says 100 ms; an
    // idle queue's poll would find it within about 1 s).
    assert!(gap >= Duration::from_millis(1990), "Retry-After: 2 was not honoured: {gap:?}");
    // Each attempt is recorded, and the endpoint's listing pages them.
    let deadline = Instant::now() + Duration::from_secs(10);
    let history = loop {
        let (status, page) = api.get(&format!("/v1/webhooks/{flaky}/deliveries")).await;
        assert_eq!(status, 200, "{page}");
        if page["data"].as_array().expect("data").len() >= 3 {
            break page;
        }
        assert!(Instant::now() < deadline, "attempts not recorded: {page}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let statuses: Vec<i64> =
        history["data"].as_array().expect("data").iter().map(|d| d["status"].as_i64().expect("status")).collect();
    assert_eq!(statuses, [204, 500, 500], "newest first");
    let attempts: Vec<i64> =
        history["data"].as_array().expect("data").iter().map(|d| d["attempt"].as_i64().expect("attempt")).collect();
    assert_eq!(attempts, [3, 2, 1]);
    let (_, page) = api.get(&format!("/v1/webhooks/{flaky}/deliveries?limit=1")).await;
    let cursor = page["next_cursor"].as_str().expect("cursor");
    let (_, next) = api.get(&format!("/v1/webhooks/{flaky}/deliveries?limit=1&cursor={cursor}")).await;
    assert_eq!(next["data"][0]["status"], 500);
    assert_eq!(api.endpoint_state(&flaky).await["failing_since"], Value::Null, "a success ends the streak");
    api.node.stop().await.expect("stop");
}

#[tokio::test]
async fn a_410_disables_the_endpoint_and_one_failing_too_long_is_disabled_then_recovered() {
    let (receiver, addr) = Receiver::start().await;
    let api = Api::start(|c| {
        c.api.webhooks.disable_after = "1s".parse().expect("d");
        c.api.webhooks.schedule =
            ["400ms", "400ms", "400ms", "400ms", "400ms", "400ms", "400ms"].map(|d| d.parse().expect("d")).to_vec();
    })
    .await;
    let (gone, _) = api.endpoint(format!("http://{addr}/gone"), &["job.succeeded"]).await;
    let (toggle, secret) = api.endpoint(format!("http://{addr}/toggle"), &["job.succeeded"]).await;
    receiver.healthy.store(false, Ordering::SeqCst);
    let first = api.submit(1).await;
    receiver.wait("gone", 1, for_job(first)).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while api.endpoint_state(&gone).await["disabled_at"].is_null()
        || api.endpoint_state(&toggle).await["disabled_at"].is_null()
    {
        assert!(
            Instant::now() < deadline,
            "not disabled: {} / {}",
            api.endpoint_state(&gone).await,
            api.endpoint_state(&toggle).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let gone_state = api.endpoint_state(&gone).await;
    assert!(gone_state["disabled_reason"].as_str().expect("reason").contains("410"), "{gone_state}");
    let toggle_state = api.endpoint_state(&toggle).await;
    assert!(
        toggle_state["disabled_reason"].as_str().expect("reason").contains("no successful delivery for"),
        "{toggle_state}"
    );
    // While disabled, nothing is delivered.
    let missed = api.submit(2).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, job) = api.get(&format!("/v1/jobs/{missed}")).await;
        let max_event: i64 = sqlx::query_scalar("select coalesce(max(id), 0) from forge_job_events")
            .fetch_one(api.db.pool())
            .await
            .expect("max");
        let cursor: i64 = sqlx::query_scalar("select event_id from forge_api_cursors")
            .fetch_one(api.db.pool())
            .await
            .expect("cursor");
        if job["state"] == "completed" && cursor >= max_event {
            break;
        }
        assert!(Instant::now() < deadline, "the dispatcher did not catch up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(receiver.got("toggle").iter().all(|r| !for_job(missed)(r)), "a disabled endpoint got an event");
    // Recovery: enabled again, and what it missed since the first job is replayed.
    receiver.healthy.store(true, Ordering::SeqCst);
    let since = chrono::Utc::now() - chrono::Duration::minutes(5);
    let (status, replayed) = api.post(&format!("/v1/webhooks/{toggle}/recover"), json!({"since": since})).await;
    assert_eq!(status, 202, "{replayed}");
    assert_eq!(replayed["queued"], 2);
    let got = receiver.wait("toggle", 1, for_job(missed)).await;
    assert!(verifies(&secret, &got[0]));
    receiver.wait("toggle", 1, |r| for_job(first)(r) && r.at > got[0].at - Duration::from_secs(5)).await;
    assert!(api.endpoint_state(&toggle).await["disabled_at"].is_null());
    // Bad bodies change nothing.
    assert_eq!(api.post(&format!("/v1/webhooks/{toggle}/recover"), json!({"since": "yesterday"})).await.0, 422);
    assert_eq!(api.post(&format!("/v1/webhooks/{toggle}/resend"), json!({"event_id": 999999})).await.0, 404);
    api.node.stop().await.expect("stop");
}

#[tokio::test]
async fn deliveries_to_internal_addresses_are_refused_unless_allowed() {
    let (receiver, addr) = Receiver::start().await;
    let api = Api::start(|c| c.api.webhooks.allow_private = false).await;
    // A literal loopback address is refused when the endpoint is registered.
    let (status, problem) = api.post("/v1/webhooks", json!({"url": format!("http://{addr}/ok")})).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["errors"][0]["path"], "url");
    let (status, _) = api
        .post("/v1/jobs", json!({"kind": "hook_work", "args": {"n": 1}, "webhook": "http://169.254.169.254/latest"}))
        .await;
    assert_eq!(status, 422);
    // A name is checked where it matters, on the address it resolves to at delivery.
    let (endpoint, _) = api.endpoint(format!("http://localhost:{}/ok", addr.port()), &["job.succeeded"]).await;
    let job = api.submit(1).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let refused = loop {
        let (_, page) = api.get(&format!("/v1/webhooks/{endpoint}/deliveries")).await;
        if let Some(first) = page["data"].as_array().and_then(|d| d.last()).cloned() {
            break first;
        }
        assert!(Instant::now() < deadline, "no delivery attempt recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(refused["status"].is_null());
    assert!(refused["error"].as_str().expect("error").contains("refused"), "{refused}");
    assert!(receiver.got("ok").is_empty(), "a refused delivery reached the receiver");
    let _ = job;
    // Bad endpoints are refused with the field named.
    for (url, events) in [
        ("ftp://example.com/x", json!([])),
        ("not a url", json!([])),
        ("https://example.com/x", json!(["job.exploded"])),
    ] {
        let (status, problem) = api.post("/v1/webhooks", json!({"url": url, "events": events})).await;
        assert_eq!(status, 422, "{url}: {problem}");
    }
    api.node.stop().await.expect("stop");
}

#[tokio::test]
async fn endpoints_are_listed_rotated_disabled_and_deleted() {
    let (receiver, addr) = Receiver::start().await;
    let api = Api::start(|_| {}).await;
    let (id, old) = api.endpoint(format!("http://{addr}/ok"), &["job.succeeded"]).await;
    let (_, listed) = api.get("/v1/webhooks").await;
    assert_eq!(listed["data"].as_array().expect("data").len(), 1);
    assert!(listed["data"][0].get("secret").is_none(), "a listing shows no secret");
    let (status, rotated) = api.post(&format!("/v1/webhooks/{id}/rotate-secret"), json!({"grace_seconds": 600})).await;
    assert_eq!(status, 200, "{rotated}");
    let new = rotated["secret"].as_str().expect("secret").to_owned();
    assert_ne!(new, old);
    let job = api.submit(3).await;
    let got = receiver.wait("ok", 1, for_job(job)).await;
    assert_eq!(got[0].headers["webhook-signature"].split(' ').count(), 2, "both secrets sign during the grace");
    assert!(verifies(&old, &got[0]) && verifies(&new, &got[0]));
    verify_with_reference_library(&[(old.clone(), &got[0]), (new.clone(), &got[0])]);
    // Resend: the same message again, with its id.
    let event_id = serde_json::from_str::<Value>(&got[0].body).expect("json")["data"]["event_id"].as_i64().expect("id");
    assert_eq!(api.post(&format!("/v1/webhooks/{id}/resend"), json!({"event_id": event_id})).await.0, 202);
    let again = receiver.wait("ok", 2, for_job(job)).await;
    assert_eq!(again[1].headers["webhook-id"], got[0].headers["webhook-id"]);
    // Disabled: no deliveries; enabled: deliveries again.
    let (_, disabled) = api.post(&format!("/v1/webhooks/{id}/disable"), json!({})).await;
    assert!(!disabled["disabled_at"].is_null());
    let (_, enabled) = api.post(&format!("/v1/webhooks/{id}/enable"), json!({})).await;
    assert!(enabled["disabled_at"].is_null());
    // Another client does not see it; deleted, it is gone.
    let response =
        api.http.delete(format!("{}/v1/webhooks/{id}", api.base)).bearer_auth(&api.key).send().await.expect("delete");
    assert_eq!(response.status(), 204);
    assert_eq!(api.get(&format!("/v1/webhooks/{id}")).await.0, 404);
    api.node.stop().await.expect("stop");
}

#[tokio::test]
async fn with_two_nodes_dispatching_every_event_is_delivered_once_per_endpoint() {
    let (receiver, addr) = Receiver::start().await;
    let api = Api::start(|_| {}).await;
    let second = start_node(&api.db, |_| {}).await;
    api.endpoint(format!("http://{addr}/ok"), &[]).await;
    let mut jobs = Vec::new();
    let submits: Vec<_> =
        (0..40).map(|n| api.post("/v1/jobs", json!({"kind": "hook_work", "args": {"n": n}}))).collect();
    for (status, job) in futures_util::future::join_all(submits).await {
        assert_eq!(status, 201);
        jobs.push(job["id"].as_i64().expect("id"));
    }
    // Three events per job (created, started, succeeded), each delivered once.
    let all = receiver.wait("ok", jobs.len() * 3, |_| true).await;
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline && receiver.got("ok").len() == all.len() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = receiver.got("ok");
    let mut ids: Vec<&str> = got.iter().map(|r| r.headers["webhook-id"].as_str()).collect();
    let total = ids.len();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), total, "an event was delivered twice");
    let events: i64 =
        sqlx::query_scalar("select count(*) from forge_job_events").fetch_one(api.db.pool()).await.expect("count");
    assert_eq!(total as i64, events, "every event was delivered");
    second.stop().await.expect("stop");
    api.node.stop().await.expect("stop");
}
