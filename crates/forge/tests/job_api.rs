//! The job API (`/v1`) over real HTTP against real Postgres: submit, read, list, cancel, retry,
//! reports, the event feed (JSON pages and SSE with `Last-Event-ID`), idempotency keys, clients
//! and their keys (rotation with grace, revocation at once), and one client never reaching
//! another's jobs.

use std::time::{Duration, Instant};

use forge::gateway::{ApiKeys, NewApiKey};
use forge::prelude::*;
use forge::testing::TestDatabase;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, Serialize, Deserialize)]
struct Echo {
    text: String,
    #[serde(default)]
    fail_times: u32,
    #[serde(default)]
    progress: bool,
}

/// Open to clients: upper-cases `text`, after failing `fail_times` attempts.
#[forge::job(api, max_attempts = 5, backoff(fixed, base = "10ms", jitter = 0.0))]
async fn api_echo(ctx: &JobContext, args: Echo) -> Result<String, JobError> {
    if ctx.attempt() <= args.fail_times {
        return Err(JobError::retry(format!("planned failure {}", ctx.attempt())));
    }
    if args.progress {
        ctx.progress(50, "half way").await?;
    }
    Ok(args.text.to_uppercase())
}

/// Not open to clients.
#[forge::job]
async fn api_internal(_ctx: &JobContext, _args: ()) -> Result<(), JobError> {
    Ok(())
}

struct Api {
    node: RunningForge,
    base: String,
    http: reqwest::Client,
    /// An operator's key (`forge:admin`).
    operator: String,
    db: TestDatabase,
}

impl Api {
    async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    async fn start_with(configure: impl FnOnce(&mut ForgeConfig)) -> Self {
        let db = TestDatabase::new().await.expect("db");
        let mut config = db.config();
        config.api.enabled = true;
        configure(&mut config);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let node =
            Forge::builder().config(config).listener(listener).build().expect("build").start().await.expect("start");
        let base = format!("http://{}", node.local_addr().expect("addr"));
        let operator = ApiKeys::new(db.pool().clone())
            .create(NewApiKey::named("ops").with_role("forge:admin"))
            .await
            .expect("operator key")
            .key;
        Self { node, base, http: reqwest::Client::new(), operator, db }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn post(&self, key: &str, path: &str, body: Value) -> (u16, Value) {
        let response = self.http.post(self.url(path)).bearer_auth(key).json(&body).send().await.expect("post");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, key: &str, path: &str) -> (u16, Value) {
        let response = self.http.get(self.url(path)).bearer_auth(key).send().await.expect("get");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A new client and a key for it (`scopes`: empty for all).
    async fn client(&self, name: &str, scopes: &[&str]) -> (String, String) {
        let (status, client) = self.post(&self.operator, "/v1/clients", json!({ "name": name })).await;
        assert_eq!(status, 201, "{client}");
        let id = client["id"].as_str().expect("id").to_owned();
        let (status, key) =
            self.post(&self.operator, &format!("/v1/clients/{id}/keys"), json!({ "scopes": scopes })).await;
        assert_eq!(status, 201, "{key}");
        assert!(key["prefix"].as_str().is_some_and(|p| key["key"].as_str().expect("key").starts_with(p)));
        (id, key["key"].as_str().expect("key").to_owned())
    }

    async fn submit(&self, key: &str, body: Value) -> i64 {
        let (status, job) = self.post(key, "/v1/jobs", body).await;
        assert_eq!(status, 201, "{job}");
        job["id"].as_i64().expect("id")
    }

    /// Waits until job `id` is in `state`.
    async fn wait_state(&self, key: &str, id: i64, state: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, job) = self.get(key, &format!("/v1/jobs/{id}")).await;
            assert_eq!(status, 200, "{job}");
            if job["state"] == state {
                return job;
            }
            assert!(Instant::now() < deadline, "job {id} never became {state}: {job}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn jobs_in_table(&self) -> i64 {
        sqlx::query_scalar("select count(*) from forge_jobs").fetch_one(self.db.pool()).await.expect("count")
    }
}

fn event_types(events: &Value) -> Vec<String> {
    events.as_array().expect("events").iter().map(|e| e["type"].as_str().expect("type").to_owned()).collect()
}

#[tokio::test]
async fn a_client_submits_a_job_and_reads_it_its_report_and_its_events() {
    let api = Api::start().await;
    let (_, key) = api.client("acme", &[]).await;
    let body = json!({"kind": "api_echo", "args": {"text": "hi", "fail_times": 2, "progress": true}, "tags": ["t1"]});
    let (status, job) = api.post(&key, "/v1/jobs", body).await;
    assert_eq!(status, 201, "{job}");
    assert_eq!(job["kind"], "api_echo");
    assert_eq!(job["state"], "available");
    assert_eq!(job["priority"], "normal");
    assert_eq!(job["tags"], json!(["t1"]));
    let id = job["id"].as_i64().expect("id");

    let done = api.wait_state(&key, id, "completed").await;
    assert_eq!(done["output"], "HI");
    assert_eq!(done["attempt"], 3);

    let (status, report) = api.get(&key, &format!("/v1/jobs/{id}/report")).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["outcome"], "succeeded");
    let attempts = report["attempts"].as_array().expect("attempts");
    let outcomes: Vec<&str> = attempts.iter().map(|a| a["outcome"].as_str().expect("outcome")).collect();
    assert_eq!(outcomes, ["failed", "failed", "succeeded"]);
    assert_eq!(attempts[0]["error"], "planned failure 1");
    assert!(report["timings"]["total_ms"].as_i64().is_some());
    assert_eq!(
        event_types(&report["events"]),
        [
            "job.created",
            "job.started",
            "job.retried",
            "job.started",
            "job.retried",
            "job.started",
            "job.progress",
            "job.succeeded"
        ]
    );
    assert_eq!(report["events"][2]["data"]["error"], "planned failure 1");
    assert_eq!(report["events"][6]["data"]["percent"], 50);

    // The same events, paged by cursor.
    let (status, first) = api.get(&key, &format!("/v1/jobs/{id}/events?limit=3")).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["data"].as_array().expect("page").len(), 3);
    let cursor = first["next_cursor"].as_str().expect("cursor");
    let (_, rest) = api.get(&key, &format!("/v1/jobs/{id}/events?cursor={cursor}")).await;
    assert_eq!(
        event_types(&rest["data"]),
        report["events"].as_array().expect("events")[3..]
            .iter()
            .map(|e| e["type"].as_str().expect("type").to_owned())
            .collect::<Vec<_>>()
    );

    // The listing: the client's jobs, newest first, filtered, in keyset pages.
    let second = api.submit(&key, json!({"kind": "api_echo", "args": {"text": "b"}, "delay": 3600})).await;
    let (_, page) = api.get(&key, "/v1/jobs?limit=1").await;
    assert_eq!(page["data"][0]["id"], second);
    assert_eq!(page["data"][0]["state"], "scheduled");
    let cursor = page["next_cursor"].as_str().expect("cursor");
    let (_, page) = api.get(&key, &format!("/v1/jobs?limit=1&cursor={cursor}")).await;
    assert_eq!(page["data"][0]["id"], id);
    assert!(page.get("next_cursor").is_none(), "{page}");
    let (_, tagged) = api.get(&key, "/v1/jobs?tag=t1&state=completed").await;
    assert_eq!(tagged["data"].as_array().expect("jobs").len(), 1);

    // The application's own jobs write no events.
    ApiInternal::dispatch(api.db.pool(), ()).await.expect("dispatch");
    let foreign: i64 = sqlx::query_scalar("select count(*) from forge_job_events where job_id not in ($1, $2)")
        .bind(id)
        .bind(second)
        .fetch_one(api.db.pool())
        .await
        .expect("count");
    assert_eq!(foreign, 0);
    api.node.stop().await.expect("stop");
}

#[tokio::test]
async fn bad_submissions_get_a_precise_error_and_change_nothing() {
    let api = Api::start().await;
    let (_, key) = api.client("acme", &[]).await;
    let cases = [
        (json!({"kind": "api_echo", "args": {"text": 5}}), 422, "args.text"),
        (json!({"kind": "api_echo", "args": {}}), 422, "args.text"),
        (json!({"kind": "api_internal", "args": null}), 422, "kind"),
        (json!({"kind": "nope"}), 422, "kind"),
        (json!({"kind": "api_echo", "args": {"text": "x"}, "priority": "urgent"}), 422, "priority"),
        (json!({"kind": "api_echo", "args": {"text": "x"}, "max_attempts": 0}), 422, "max_attempts"),
        (json!({"kind": "api_echo", "args": {"text": "x"}, "tags": ["a\u{0}b"]}), 422, "tags[0]"),
        (json!({"kind": "api_echo", "args": {"text": "a\u{0}b"}}), 422, "args"),
        (json!({"kind": "api_echo", "args": {"text": "x"}, "colour": "red"}), 422, ""),
        (json!({"kind": "api_echo", "args": {"text": "x"}, "delay": -1}), 422, "delay"),
    ];
    for (body, status, path) in cases {
        let (got, problem) = api.post(&key, "/v1/jobs", body.clone()).await;
        assert_eq!(got, status, "{body} -> {problem}");
        assert_eq!(problem["status"], status);
        assert!(problem["type"].as_str().is_some_and(|t| t.starts_with("urn:forge:problem:")), "{problem}");
        let paths: Vec<&str> =
            problem["errors"].as_array().map_or(vec![], |e| e.iter().filter_map(|e| e["path"].as_str()).collect());
        assert!(paths.iter().any(|p| p.starts_with(path)), "{body}: expected an error at {path}: {problem}");
    }
    // Not JSON, not JSON at all, no credentials, a bad key, an operator who is not a client.
    let raw = |body: &'static str, content_type: &'static str, key: Option<&str>| {
        let mut request = api.http.post(api.url("/v1/jobs")).header("content-type", content_type).body(body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send()
    };
    assert_eq!(raw("{\"kind\":", "application/json", Some(&key)).await.expect("send").status(), 400);
    assert_eq!(
        raw("kind=api_echo", "application/x-www-form-urlencoded", Some(&key)).await.expect("send").status(),
        415
    );
    let anonymous = raw("{}", "application/json", None).await.expect("send");
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.headers()["content-type"], "application/problem+json");
    assert_eq!(raw("{}", "application/json", Some("forge_000000000000_nope")).await.expect("send").status(), 401);
    let (status, problem) =
        api.post(&api.operator, "/v1/jobs", json!({"kind": "api_echo", "args": {"text": "x"}})).await;
    assert_eq!(status, 403, "{problem}");
    // A key without the write scope reads but does not submit.
    let (_, reader) = api.client("reader", &["jobs:read"]).await;
    let (status, _) = api.post(&reader, "/v1/jobs", json!({"kind": "api_echo", "args": {"text": "x"}})).await;
    assert_eq!(status, 403);
    assert_eq!(api.get(&reader, "/v1/jobs").await.0, 200);
    // Bad query parameters and ids.
    assert_eq!(api.get(&key, "/v1/jobs?limit=0").await.0, 400);
    assert_eq!(api.get(&key, "/v1/jobs?state=done").await.0, 400);
    assert_eq!(api.get(&key, "/v1/jobs?cursor=abc").await.0, 400);
    assert_eq!(api.get(&key, "/v1/jobs?sort=id").await.0, 400);
    assert_eq!(api.get(&key, "/v1/jobs/abc").await.0, 404);
    assert_eq!(api.get(&key, "/v1/jobs/99999999").await.0, 404);
    assert_eq!(api.jobs_in_table().await, 0, "a refused request inserted a job");
    api.node.stop().await.expect("stop");
}

#[tokio::test]
async fn an_idempotency_key_makes_a_post_happen_once() {
    let api = Api::start().await;
    let (client_id, key) = api.client("acme", &[]).await;
    let body = json!({"kind": "api_echo", "args": {"text": "once"}, "delay": 3600});
    let send = |body: Value, idem: &'static str| {
        api.http.post(api.url("/v1/jobs")).bearer_auth(&key).header("Idempotency-Key", idem).json(&body).send()
    };
    let first = send(body.clone(), "k-1").await.expect("send");
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.expect("json");
    // The same request again (fields in another order): the first response, replayed.
    let again = send(json!({"delay": 3600, "args": {"text": "once"}, "kind": "api_echo"}), "k-1").await.expect("send");
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<Value>().await.expect("json"), first);
    // The same key with another body: 422, nothing created.
    let other = send(json!({"kind": "api_echo", "args": {"text": "twice"}}), "k-1").await.expect("send");
    assert_eq!(other.status(), 422);
    assert_eq!(api.jobs_in_table().await, 1);
    // Another client may use the same key: keys are per client.
    let (_, other_key) = api.client("globex", &[]).await;
    let (status, _) = {
        let r = api
            .http
            .post(api.url("/v1/jobs"))
            .bearer_auth(&other_key)
            .header("Idempotency-Key", "k-1")
            .json(&body)
            .send()
            .await
            .expect("send");
        (r.status().as_u16(), ())
    };
    assert_eq!(status, 201);
    assert_eq!(api.jobs_in_table().await, 2);

    // While the first request with a key is in flight, a repeat is a 409 (the test holds the
    // key's lock as a request in flight would).
    let mut holder = api.db.pool().acquire().await.expect("conn");
    sqlx::query("select pg_advisory_lock(hashtextextended($1, 7211))")
        .bind(format!("{client_id}\u{1f}k-2"))
        .execute(&mut *holder)
        .await
        .expect("lock");
    let busy = send(body.clone(), "k-2").await.expect("send");
    assert_eq!(busy.status(), 409);
    sqlx::query("select pg_advisory_unlock_all()").execute(&mut *holder).await.expect("unlock");
    assert_eq!(send(body.clone(), "k-2").await.expect("send").status(), 201);

    // Many at once with one key: one job; every answer is the job or a 409.
    let racers: Vec<_> = (0..16).map(|_| send(body.clone(), "k-3")).collect();
    let answers = futures_util::future::join_all(racers).await;
    let mut created = std::collections::BTreeSet::new();
    for answer in answers {
        let answer = answer.expect("send");
        match answer.status().as_u16() {
            201 => {
                created.insert(answer.json::<Value>().await.expect("json")["id"].as_i64().expect("id"));
            }
            409 => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(created.len(), 1, "one key made {created:?}");
    assert_eq!(api.jobs_in_table().await, 4);
    // A malformed key is refused before anything happens.
    let bad = api
        .http
        .post(api.url("/v1/jobs"))
        .bearer_auth(&key)
        .header("Idempotency-Key", "a b")
        .json(&body)
        .send()
        .await
        .expect("send");
    assert_eq!(bad.status(), 400);
    assert_eq!(api.jobs_in_table().await, 4);
    api.node.stop().await.expect("stop");
}

/// The answer to a submission is built from what was sent and what the insert returned (not
/// read back): it must be the job exactly as `GET` reads it.
#[tokio::test]
async fn a_submission_answers_with_the_job_as_it_is_stored() {
    let api = Api::start().await;
    let (_, key) = api.client("stored", &[]).await;
    let sent = json!({
        "kind": "api_echo", "args": { "text": "héllo", "progress": true, "fail_times": 0 },
        "queue": "reports", "priority": "high", "delay": 3600, "max_attempts": 7, "tags": ["b", "a"],
    });
    let (status, submitted) = api.post(&key, "/v1/jobs", sent).await;
    assert_eq!(status, 201, "{submitted}");
    let (status, stored) = api.get(&key, &format!("/v1/jobs/{}", submitted["id"])).await;
    assert_eq!(status, 200, "{stored}");
    assert_eq!(submitted, stored);
    assert_eq!(stored["state"], "scheduled");
    let (status, now) = api.post(&key, "/v1/jobs", json!({ "kind": "api_echo", "args": { "text": "x" } })).await;
    assert_eq!(status, 201, "{now}");
    assert_eq!(
        (now["state"].as_str(), now["priority"].as_str(), now["attempt"].as_i64()),
        (Some("available"), Some("normal"), Some(0))
    );
    assert_eq!(now["max_attempts"], 5);
}

#[tokio::test]
async fn a_client_never_reaches_another_clients_jobs() {
    let api = Api::start().await;
    let (_, a) = api.client("a", &[]).await;
    let (_, b) = api.client("b", &[]).await;
    let id = api.submit(&a, json!({"kind": "api_echo", "args": {"text": "mine"}, "delay": 3600})).await;
    for path in ["", "/report", "/events"] {
        let (status, problem) = api.get(&b, &format!("/v1/jobs/{id}{path}")).await;
        assert_eq!(status, 404, "{path}: {problem}");
    }
    for action in ["cancel", "retry"] {
        let (status, _) = api.post(&b, &format!("/v1/jobs/{id}/{action}"), json!({})).await;
        assert_eq!(status, 404, "{action}");
    }
    let (_, listed) = api.get(&b, "/v1/jobs").await;
    assert_eq!(listed["data"], json!([]));
    assert_eq!(api.get(&a, &format!("/v1/jobs/{id}")).await.1["state"], "scheduled", "b changed a's job");
    // Clients do not manage clients.
    assert_eq!(api.post(&a, "/v1/clients", json!({"name": "c"})).await.0, 403);
    assert_eq!(api.get(&a, "/v1/clients").await.0, 403);
    api.node.stop().await.expect("stop");
}

#[tokio::test]
async fn cancel_and_retry_follow_the_jobs_state() {
    let api = Api::start().await;
    let (_, key) = api.client("acme", &[]).await;
    let id = api.submit(&key, json!({"kind": "api_echo", "args": {"text": "later"}, "delay": 3600})).await;
    let (status, job) = api.post(&key, &format!("/v1/jobs/{id}/retry"), json!({})).await;
    assert_eq!(status, 409, "a scheduled job is not retried: {job}");
    let (status, job) = api.post(&key, &format!("/v1/jobs/{id}/cancel"), json!({})).await;
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["state"], "cancelled");
    assert_eq!(api.post(&key, &format!("/v1/jobs/{id}/cancel"), json!({})).await.0, 409);
    let (status, job) = api.post(&key, &format!("/v1/jobs/{id}/retry"), json!({})).await;
    assert_eq!(status, 200, "{job}");
    assert_eq!(job["state"], "available");
    api.wait_state(&key, id, "completed").await;
    assert_eq!(api.post(&key, &format!("/v1/jobs/{id}/retry"), json!({})).await.0, 409);
    assert_eq!(api.post(&key, &format!("/v1/jobs/{id}/cancel"), json!({"force": true})).await.0, 422);
    let (_, events) = api.get(&key, &format!("/v1/jobs/{id}/events")).await;
    assert_eq!(
        event_types(&events["data"]),
        ["job.created", "job.cancelled", "job.retried", "job.started", "job.succeeded"]
    );
    // A failed job can be retried.
    let failing = api.submit(&key, json!({"kind": "api_echo", "args": {"text": "x", "fail_times": 9}})).await;
    api.wait_state(&key, failing, "discarded").await;
    let (_, report) = api.get(&key, &format!("/v1/jobs/{failing}/report")).await;
    assert_eq!(report["outcome"], "failed");
    assert_eq!(report["attempts"].as_array().expect("attempts").len(), 5);
    assert_eq!(event_types(&report["events"]).last().map(String::as_str), Some("job.failed"));
    assert_eq!(api.post(&key, &format!("/v1/jobs/{failing}/retry"), json!({})).await.0, 200);
    api.node.stop().await.expect("stop");
}

#[tokio::test]
async fn a_rotated_key_works_for_its_grace_and_a_revoked_key_stops_at_once() {
    let api = Api::start().await;
    let (client, old) = api.client("acme", &[]).await;
    let pool = api.db.pool().clone();
    let key_id = |key: &str| {
        let prefix = key.split('_').nth(1).expect("prefix").to_owned();
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, uuid::Uuid>("select id from forge_api_keys where prefix = $1")
                .bind(prefix)
                .fetch_one(&pool)
                .await
                .expect("key id")
        }
    };
    let old_id = key_id(&old).await;
    let (status, rotated) = api
        .post(&api.operator, &format!("/v1/clients/{client}/keys/{old_id}/rotate"), json!({"grace_seconds": 3600}))
        .await;
    assert_eq!(status, 201, "{rotated}");
    let new = rotated["key"].as_str().expect("key").to_owned();
    assert_eq!(api.get(&old, "/v1/jobs").await.0, 200, "the old key works during its grace");
    assert_eq!(api.get(&new, "/v1/jobs").await.0, 200);
    // Rotating the new key with no grace: the new key stops at once, the newest works.
    let new_id = key_id(&new).await;
    let (_, newest) = api.post(&api.operator, &format!("/v1/clients/{client}/keys/{new_id}/rotate"), json!({})).await;
    assert_eq!(api.get(&new, "/v1/jobs").await.0, 401);
    let newest = newest["key"].as_str().expect("key").to_owned();
    assert_eq!(api.get(&newest, "/v1/jobs").await.0, 200);
    // Revocation takes effect at once.
    let newest_id = key_id(&newest).await;
    let (status, revoked) =
        api.post(&api.operator, &format!("/v1/clients/{client}/keys/{newest_id}/revoke"), json!({})).await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(api.get(&newest, "/v1/jobs").await.0, 401);
    // The listing shows prefixes, never keys.
    let (_, keys) = api.get(&api.operator, &format!("/v1/clients/{client}/keys")).await;
    let keys = keys["data"].as_array().expect("keys");
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().all(|k| k.get("key").is_none() && k["prefix"].as_str().is_some()));
    // Another client's key id under this client is not found.
    let (other, other_key) = api.client("other", &[]).await;
    let other_id = key_id(&other_key).await;
    assert_eq!(
        api.post(&api.operator, &format!("/v1/clients/{client}/keys/{other_id}/revoke"), json!({})).await.0,
        404
    );
    assert_eq!(api.get(&other_key, "/v1/jobs").await.0, 200);
    assert_eq!(api.post(&api.operator, "/v1/clients", json!({"name": "other"})).await.0, 409);
    assert_eq!(api.get(&api.operator, &format!("/v1/clients/{other}")).await.0, 200);
    api.node.stop().await.expect("stop");
}

/// Reads an SSE response until it ends: each event's id and type.
async fn read_stream(response: reqwest::Response) -> Vec<(i64, String)> {
    let text = tokio::time::timeout(Duration::from_secs(20), response.text())
        .await
        .expect("the stream did not end")
        .expect("body");
    let mut events = Vec::new();
    let (mut id, mut kind) = (None, None);
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("id: ").or_else(|| line.strip_prefix("id:")) {
            id = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("event: ").or_else(|| line.strip_prefix("event:")) {
            kind = Some(v.trim().to_owned());
        } else if line.is_empty()
            && let (Some(i), Some(k)) = (id.take(), kind.take())
        {
            events.push((i, k));
        }
    }
    events
}

#[tokio::test]
async fn events_stream_as_sse_and_resume_after_the_last_event_id() {
    let api = Api::start().await;
    let (_, key) = api.client("acme", &[]).await;
    // A job that waits: the stream is open when it is cancelled.
    let id = api.submit(&key, json!({"kind": "api_echo", "args": {"text": "x"}, "delay": 3600})).await;
    let stream = api
        .http
        .get(api.url(&format!("/v1/jobs/{id}/events")))
        .bearer_auth(&key)
        .header("accept", "text/event-stream")
        .send()
        .await
        .expect("stream");
    assert_eq!(stream.status(), 200);
    assert!(stream.headers()["content-type"].to_str().expect("type").starts_with("text/event-stream"));
    let reading = tokio::spawn(read_stream(stream));
    assert_eq!(api.post(&key, &format!("/v1/jobs/{id}/cancel"), json!({})).await.0, 200);
    let events = reading.await.expect("reader");
    let types: Vec<&str> = events.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(types, ["job.created", "job.cancelled"], "the stream ends once the job has finished");

    // Retried and run: a reconnect after the first event gets the rest, no gap, no repeat.
    api.post(&key, &format!("/v1/jobs/{id}/retry"), json!({})).await;
    api.wait_state(&key, id, "completed").await;
    let resumed = api
        .http
        .get(api.url(&format!("/v1/jobs/{id}/events")))
        .bearer_auth(&key)
        .header("accept", "text/event-stream")
        .header("last-event-id", events[0].0.to_string())
        .send()
        .await
        .expect("stream");
    let rest = read_stream(resumed).await;
    let types: Vec<&str> = rest.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(types, ["job.cancelled", "job.retried", "job.started", "job.succeeded"]);
    assert!(rest.windows(2).all(|w| w[0].0 < w[1].0));
    assert_eq!(rest[0].0, events[1].0);
    api.node.stop().await.expect("stop");
}

#[tokio::test]
async fn without_api_enabled_there_is_no_v1() {
    let db = TestDatabase::new().await.expect("db");
    let router = db.router().expect("router");
    let response = tower::ServiceExt::oneshot(
        router,
        axum::http::Request::get("/v1/jobs").body(axum::body::Body::empty()).expect("request"),
    )
    .await
    .expect("response");
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn a_submission_wakes_an_idle_worker_after_its_commit() {
    // Idle workers poll every minute here: only the wake-up sent after the submission's commit
    // (not from inside its transaction) can get the job run within the wait below.
    let api = Api::start_with(|c| c.worker.poll_interval = "60s".parse().expect("duration")).await;
    let (_, key) = api.client("acme", &[]).await;
    // A first job, found at start; once it is done the worker is idle.
    let first = api.submit(&key, json!({"kind": "api_echo", "args": {"text": "first"}})).await;
    api.wait_state(&key, first, "completed").await;
    let id = api.submit(&key, json!({"kind": "api_echo", "args": {"text": "now"}})).await;
    let done = api.wait_state(&key, id, "completed").await;
    assert_eq!(done["output"], "NOW");
}
