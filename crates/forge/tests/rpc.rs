//! Functions over HTTP: `POST /rpc/{function}` with RFC 7807 problems and `POST /rpc` with
//! JSON-RPC 2.0, against a running gateway and real Postgres.

use forge::config::{Role, Roles};
use forge::functions::{FunctionKind, FunctionRegistry};
mod common;

use forge::prelude::*;
use forge::testing::TestDatabase;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Deserialize)]
struct Add {
    a: i64,
    b: i64,
}

#[forge::query(public)]
async fn add(_ctx: &QueryContext, args: Add) -> Result<i64, ForgeError> {
    Ok(args.a + args.b)
}

#[forge::query(public)]
async fn count_notes(ctx: &QueryContext, _args: ()) -> Result<i64, ForgeError> {
    Ok(sqlx::query_scalar("select count(*) from notes").fetch_one(ctx.db()).await?)
}

#[forge::query(public)]
async fn broken(ctx: &QueryContext, _args: ()) -> Result<i64, ForgeError> {
    Ok(sqlx::query_scalar("select secret_column from no_such_table").fetch_one(ctx.db()).await?)
}

async fn gateway() -> (TestDatabase, RunningForge, String) {
    let db = common::notes_database().await;
    let mut config = db.config();
    config.node.roles = Roles::new([Role::Gateway, Role::Function]).expect("roles");
    config.gateway.body_limit = "1KiB".parse().expect("size");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let node = Forge::builder().config(config).listener(listener).build().expect("build").start().await.expect("start");
    let base = format!("http://{}", node.local_addr().expect("addr"));
    (db, node, base)
}

async fn post(url: &str, content_type: &str, body: impl Into<reqwest::Body>) -> (u16, String, Value) {
    let response =
        reqwest::Client::new().post(url).header("content-type", content_type).body(body).send().await.expect("request");
    let status = response.status().as_u16();
    let ct = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let text = response.text().await.expect("body");
    let value = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).expect("JSON body") };
    (status, ct, value)
}

async fn count(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.expect("count")
}

#[tokio::test]
async fn rest_calls_answer_data_or_problems() {
    let (db, node, base) = gateway().await;
    let json_ct = "application/json";

    let (status, _, body) = post(&format!("{base}/rpc/add"), json_ct, r#"{"a": 2, "b": 40}"#).await;
    assert_eq!((status, body), (200, json!({"data": 42})));

    let (status, ct, body) = post(&format!("{base}/rpc/nope"), json_ct, "{}").await;
    assert_eq!((status, ct.as_str()), (404, "application/problem+json"));
    assert_eq!(body["instance"], "/rpc/nope");

    let (status, _, body) = post(&format!("{base}/rpc/add"), json_ct, "{not json").await;
    assert_eq!(status, 400, "{body}");

    let (status, _, body) = post(&format!("{base}/rpc/add"), json_ct, r#"{"a": "two", "b": 1}"#).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["path"], "a", "the field path: {body}");

    let (status, _, _) = post(&format!("{base}/rpc/add"), "text/plain", r#"{"a": 1, "b": 1}"#).await;
    assert_eq!(status, 415);

    let (status, ct, _) =
        post(&format!("{base}/rpc/add"), json_ct, format!(r#"{{"a": 1, "b": 1, "pad": "{}"}}"#, "x".repeat(4096)))
            .await;
    assert_eq!((status, ct.as_str()), (413, "application/problem+json"));

    let (status, _, body) = post(&format!("{base}/rpc/broken"), json_ct, "null").await;
    assert_eq!(status, 500);
    assert_eq!(body["detail"], "internal error", "no internals leak: {body}");
    assert!(!body.to_string().contains("no_such_table"));
    // A server error names the request, so its log lines can be found.
    let traced = reqwest::Client::new()
        .post(format!("{base}/rpc/broken"))
        .header("x-request-id", "req-500-test")
        .json(&())
        .send()
        .await
        .expect("request");
    let problem: Value = traced.json().await.expect("problem");
    assert_eq!(problem["request_id"], "req-500-test", "{problem}");

    // A mutation that fails takes its write and its job with it.
    let (status, _, body) = post(&format!("{base}/rpc/create_note"), json_ct, r#"{"body": "  "}"#).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["path"], "body");
    assert_eq!(count(db.pool(), "select count(*) from notes").await, 0);
    assert_eq!(count(db.pool(), "select count(*) from forge_jobs").await, 0);

    let (status, _, body) = post(&format!("{base}/rpc/create_note"), json_ct, r#"{"body": "hello"}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(count(db.pool(), "select count(*) from notes").await, 1);
    assert_eq!(count(db.pool(), "select count(*) from forge_jobs where kind = 'index_note'").await, 1);
    let (_, _, body) = post(&format!("{base}/rpc/count_notes"), json_ct, "").await;
    assert_eq!(body, json!({"data": 1}));
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn json_rpc_follows_the_spec() {
    let (_db, node, base) = gateway().await;
    let rpc = format!("{base}/rpc");
    let call = |body: &'static str| {
        let rpc = rpc.clone();
        async move { post(&rpc, "application/json", body).await }
    };

    let (_, _, r) = call(r#"{"jsonrpc": "2.0", "method": "add", "params": {"a": 1, "b": 2}, "id": 7}"#).await;
    assert_eq!(r, json!({"jsonrpc": "2.0", "result": 3, "id": 7}));

    let (_, _, r) = call("{oops").await;
    assert_eq!(r["error"]["code"], -32700);
    assert_eq!(r["id"], Value::Null);

    let (_, _, r) = call(r#"{"method": "add", "id": 1}"#).await;
    assert_eq!(r["error"]["code"], -32600);

    let (_, _, r) = call(r#"{"jsonrpc": "2.0", "method": "nope", "id": "x"}"#).await;
    assert_eq!((r["error"]["code"].clone(), r["id"].clone()), (json!(-32601), json!("x")));

    let (_, _, r) = call(r#"{"jsonrpc": "2.0", "method": "add", "params": {"a": 1, "b": [2]}, "id": 2}"#).await;
    assert_eq!(r["error"]["code"], -32602);
    assert_eq!(r["error"]["data"]["errors"][0]["path"], "b");

    let (_, _, r) = call(r#"{"jsonrpc": "2.0", "method": "add", "params": [{"a": 1, "b": 2}], "id": 4}"#).await;
    assert_eq!(r["result"], 3, "by position, the list holds the one argument: {r}");
    let (_, _, r) = call(r#"{"jsonrpc": "2.0", "method": "add", "params": [1, 2], "id": 5}"#).await;
    assert_eq!(r["error"]["code"], -32602, "{r}");

    let (_, _, r) = call(r#"{"jsonrpc": "2.0", "method": "broken", "id": 3}"#).await;
    assert_eq!(r["error"]["code"], -32603);
    assert_eq!(r["error"]["message"], "internal error");
    assert!(r["error"]["data"]["request_id"].as_str().is_some_and(|id| !id.is_empty()), "{r}");

    let (_, _, r) = call("[]").await;
    assert_eq!(r["error"]["code"], -32600);

    // A batch: answers in order, the notification (no id) gets none.
    let (status, _, r) = call(
        r#"[{"jsonrpc": "2.0", "method": "add", "params": {"a": 1, "b": 1}, "id": 1},
            {"jsonrpc": "2.0", "method": "add", "params": {"a": 5, "b": 5}},
            {"jsonrpc": "2.0", "method": "nope", "id": 2},
            42]"#,
    )
    .await;
    assert_eq!(status, 200);
    let replies = r.as_array().expect("array");
    assert_eq!(replies.len(), 3, "{r}");
    assert_eq!(replies[0]["result"], 2);
    assert_eq!(replies[1]["error"]["code"], -32601);
    assert_eq!(replies[2]["error"]["code"], -32600);

    let (status, _, _) = call(r#"{"jsonrpc": "2.0", "method": "add", "params": {"a": 1, "b": 1}}"#).await;
    assert_eq!(status, 204, "a lone notification gets no body");
    node.stop().await.expect("stop");
}

#[test]
fn functions_are_introspectable() {
    let list = FunctionRegistry::collect().list();
    let add = list.iter().find(|f| f.name == "add").expect("add");
    assert_eq!(add.kind, FunctionKind::Query);
    assert_eq!(add.args_type, "Add");
    assert_eq!(add.output_type, "i64");
    let create = list.iter().find(|f| f.name == "create_note").expect("create_note");
    assert_eq!(create.kind, FunctionKind::Mutation);
}
