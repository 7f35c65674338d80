//! The job API's OpenAPI document (`/v1/openapi.json`) and the API's conformance to it:
//! Schemathesis (from PyPI, installed into `tests/api/.venv` by `./dev.sh setup`) fuzzes the
//! running node from the document, as a client and as an operator, and fails on any 5xx or any
//! response that does not match the document (status, content type, headers, body schema), and
//! on invalid data the API accepts. Also the per-client rate limit and its `RateLimit` headers.

use std::path::PathBuf;
use std::process::Command;

use forge::gateway::{ApiKeys, NewApiKey};
use forge::prelude::*;
use forge::testing::TestDatabase;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Debug, Serialize, Deserialize)]
struct Note {
    text: String,
}

/// Open to clients.
#[forge::job(api)]
async fn fuzz_note(_ctx: &JobContext, args: Note) -> Result<usize, JobError> {
    Ok(args.text.len())
}

struct Node {
    _node: RunningForge,
    base: String,
    operator: String,
    _db: TestDatabase,
}

async fn start(rate_limit: u32) -> Node {
    let db = TestDatabase::new().await.expect("db");
    let mut config = db.config();
    config.api.enabled = true;
    config.api.rate_limit.requests = rate_limit;
    config.api.rate_limit.per = forge::config::Duration::from_secs(60);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let node = Forge::builder().config(config).listener(listener).build().expect("build").start().await.expect("start");
    let base = format!("http://{}", node.local_addr().expect("addr"));
    let operator = ApiKeys::new(db.pool().clone())
        .create(NewApiKey::named("ops").with_role("forge:admin"))
        .await
        .expect("operator key")
        .key;
    Node { _node: node, base, operator, _db: db }
}

/// A new client's id and key.
async fn client(node: &Node, http: &reqwest::Client, name: &str) -> (String, String) {
    let created: Value = http
        .post(format!("{}/v1/clients", node.base))
        .bearer_auth(&node.operator)
        .json(&json!({ "name": name }))
        .send()
        .await
        .expect("client")
        .json()
        .await
        .expect("json");
    let id = created["id"].as_str().expect("id").to_owned();
    let key: Value = http
        .post(format!("{}/v1/clients/{id}/keys", node.base))
        .bearer_auth(&node.operator)
        .send()
        .await
        .expect("key")
        .json()
        .await
        .expect("json");
    (id, key["key"].as_str().expect("key").to_owned())
}

fn schemathesis() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let bin = root.join("tests/api/.venv/bin/schemathesis");
    assert!(bin.exists(), "the fuzz test needs Schemathesis in tests/api/.venv: run ./dev.sh setup");
    bin
}

/// Runs Schemathesis against `base` with `key` on the operations whose path matches `paths`.
fn fuzz(base: &str, key: &str, paths: &str, examples: u32) {
    let report = tempfile::tempdir().expect("dir");
    let output = Command::new(schemathesis())
        .arg("run")
        .arg(format!("{base}/v1/openapi.json"))
        .args(["--url", base])
        .args(["--header", &format!("Authorization: Bearer {key}")])
        .args(["--include-path-regex", paths])
        .args(["--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--max-examples", &examples.to_string()])
        // One worker: Hypothesis describing its strategies from two threads at once trips
        // CPython 3.11's parser ("AST constructor recursion depth mismatch").
        .args(["--workers", "1"])
        .args(["--seed", "7"])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,\
             response_schema_conformance,negative_data_rejection,missing_required_header,unsupported_method",
        ])
        .args(["--request-timeout", "10"])
        .env("SCHEMATHESIS_HOOKS", "")
        .env("NO_COLOR", "1")
        .current_dir(report.path())
        .output()
        .expect("run schemathesis");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let tail = |text: &str| text.chars().rev().take(8_000).collect::<Vec<_>>().into_iter().rev().collect::<String>();
    assert!(output.status.success(), "Schemathesis found failures on {paths}:\n{}\n{}", tail(&stdout), tail(&stderr));
    assert!(!stdout.contains("No operations"), "Schemathesis tested nothing on {paths}:\n{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_matches_its_openapi_document_under_fuzzing() {
    let node = start(1_000_000).await;
    let http = reqwest::Client::new();

    let doc: Value =
        http.get(format!("{}/v1/openapi.json", node.base)).send().await.expect("doc").json().await.expect("json");
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["components"]["schemas"]["SubmitJob"]["properties"]["kind"]["enum"], json!(["fuzz_note"]));
    for path in
        ["/v1/jobs", "/v1/jobs/{id}/events", "/v1/clients/{id}/keys/{key_id}/rotate", "/v1/webhooks/{id}/resend"]
    {
        assert!(doc["paths"][path].is_object(), "{path} is not documented");
    }

    // Something to read: a client with a job and a webhook endpoint.
    let (_, key) = client(&node, &http, "fuzzer").await;
    let job: Value = http
        .post(format!("{}/v1/jobs", node.base))
        .bearer_auth(&key)
        .json(&json!({"kind": "fuzz_note", "args": {"text": "hello"}}))
        .send()
        .await
        .expect("submit")
        .json()
        .await
        .expect("json");
    assert!(job["id"].is_i64(), "{job}");

    let base = node.base.clone();
    let operator = node.operator.clone();
    tokio::task::spawn_blocking(move || {
        fuzz(&base, &key, "^/v1/(jobs|webhooks)", 40);
        fuzz(&base, &operator, "^/v1/clients", 25);
    })
    .await
    .expect("fuzz");
}

#[tokio::test]
async fn each_client_has_its_own_rate_limit_with_ratelimit_headers() {
    let node = start(3).await;
    let http = reqwest::Client::new();
    let (_, a) = client(&node, &http, "a").await;
    let (_, b) = client(&node, &http, "b").await;
    let url = format!("{}/v1/jobs", node.base);

    let mut left = Vec::new();
    for _ in 0..3 {
        let response = http.get(&url).bearer_auth(&a).send().await.expect("list");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["ratelimit-policy"], "\"default\";q=3;w=60");
        let header = response.headers()["ratelimit"].to_str().expect("text").to_owned();
        left.push(header);
    }
    assert!(left[0].starts_with("\"default\";r=2;"), "{left:?}");
    assert!(left[2].starts_with("\"default\";r=0;"), "{left:?}");

    // The fourth is refused, changes nothing, and says when to come back.
    let before: i64 = count_jobs(&node).await;
    let refused = http
        .post(&url)
        .bearer_auth(&a)
        .json(&json!({"kind": "fuzz_note", "args": {"text": "x"}}))
        .send()
        .await
        .expect("submit");
    assert_eq!(refused.status(), 429);
    let retry_after: u64 = refused.headers()["retry-after"].to_str().expect("text").parse().expect("seconds");
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    assert!(refused.headers()["ratelimit"].to_str().expect("text").starts_with("\"default\";r=0;"));
    let problem: Value = refused.json().await.expect("json");
    assert_eq!(problem["type"], "urn:forge:problem:rate-limited");
    assert_eq!(count_jobs(&node).await, before);

    // Another client has a bucket of its own; the operator is not limited.
    let response = http.get(&url).bearer_auth(&b).send().await.expect("list");
    assert_eq!(response.status(), 200);
    for _ in 0..5 {
        let response =
            http.get(format!("{}/v1/clients", node.base)).bearer_auth(&node.operator).send().await.expect("ops");
        assert_eq!(response.status(), 200);
        assert!(response.headers().get("ratelimit").is_none());
    }
}

async fn count_jobs(node: &Node) -> i64 {
    sqlx::query_scalar("select count(*) from forge_jobs").fetch_one(node._db.pool()).await.expect("count")
}
