//! Live queries over real sockets: `GET /ws` and `GET /sse` against a running node and real
//! Postgres — the first result, a push per change and none for a change that leaves the result
//! as it was, coalesced bursts, shared runs, access checked at subscribe and at expiry, limits,
//! bad messages, other nodes' writes (hint) and writes from outside Forge (poll).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use forge::config::ForgeConfig;
use forge::gateway::{TokenRequest, mint_token};
use forge::prelude::*;
use forge::testing::TestDatabase;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const SECRET: &str = "a-test-secret-of-at-least-32-bytes";
/// The longest a test waits for a message that must come.
const WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Deserialize)]
struct Longer {
    min: i32,
}

/// The notes at least `min` characters long.
#[forge::query(public, reads = ["rt_notes"])]
async fn rt_notes(ctx: &QueryContext, args: Longer) -> Result<Vec<String>, ForgeError> {
    Ok(sqlx::query_scalar("select body from rt_notes where length(body) >= $1 order by id")
        .bind(args.min)
        .fetch_all(ctx.db())
        .await?)
}

/// How many notes there are, for callers with credentials.
#[forge::query(reads = ["rt_notes"])]
async fn rt_private_count(ctx: &QueryContext, _args: ()) -> Result<i64, ForgeError> {
    Ok(sqlx::query_scalar("select count(*) from rt_notes").fetch_one(ctx.db()).await?)
}

static COUNTED_RUNS: AtomicUsize = AtomicUsize::new(0);

/// How many rows `rt_counted` has, counting its own runs.
#[forge::query(public, reads = ["rt_counted"])]
async fn rt_counted_rows(ctx: &QueryContext, _args: ()) -> Result<i64, ForgeError> {
    COUNTED_RUNS.fetch_add(1, Ordering::SeqCst);
    Ok(sqlx::query_scalar("select count(*) from rt_counted").fetch_one(ctx.db()).await?)
}

/// Declares no `reads`: any change to an application table runs it again.
#[forge::query(public)]
async fn rt_undeclared(ctx: &QueryContext, _args: ()) -> Result<i64, ForgeError> {
    Ok(sqlx::query_scalar("select count(*) from rt_other").fetch_one(ctx.db()).await?)
}

#[forge::mutation(public)]
async fn rt_add_note(ctx: &MutationContext, body: String) -> Result<i64, ForgeError> {
    Ok(sqlx::query_scalar("insert into rt_notes (body) values ($1) returning id")
        .bind(body)
        .fetch_one(&mut ctx.tx().await?)
        .await?)
}

async fn database() -> TestDatabase {
    let db = TestDatabase::new().await.expect("db");
    for table in ["rt_notes", "rt_counted", "rt_other"] {
        sqlx::query(&format!(
            "create table {table} (id bigint generated always as identity primary key, body text not null default '')"
        ))
        .execute(db.pool())
        .await
        .expect("table");
    }
    db
}

async fn start(db: &TestDatabase, tweak: impl FnOnce(&mut ForgeConfig)) -> (RunningForge, String) {
    let mut config = db.config();
    config.auth.jwt_secret = Some(SECRET.to_owned());
    tweak(&mut config);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let node = Forge::builder().config(config).listener(listener).build().expect("build").start().await.expect("start");
    let addr = node.local_addr().expect("gateway").to_string();
    (node, addr)
}

fn token(ttl: Duration) -> String {
    let mut config = ForgeConfig::default();
    config.auth.jwt_secret = Some(SECRET.to_owned());
    mint_token(&config.auth, &TokenRequest::new("ada", ttl)).expect("token")
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket client of `/ws`.
struct Client {
    socket: Socket,
}

impl Client {
    async fn connect(addr: &str, bearer: Option<&str>) -> Self {
        let mut request = format!("ws://{addr}/ws").into_client_request().expect("request");
        if let Some(token) = bearer {
            request.headers_mut().insert("authorization", format!("Bearer {token}").parse().expect("header"));
        }
        let (socket, _) = tokio_tungstenite::connect_async(request).await.expect("connect");
        Self { socket }
    }

    async fn send(&mut self, message: Value) {
        self.socket.send(Message::Text(message.to_string().into())).await.expect("send");
    }

    async fn subscribe(&mut self, id: &str, query: &str, args: Value) {
        self.send(json!({"type": "subscribe", "id": id, "query": query, "args": args})).await;
    }

    /// The next JSON message (pings are answered by the library and skipped).
    async fn next(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(WAIT, self.socket.next())
                .await
                .expect("a message within the wait")
                .expect("the socket is open")
                .expect("a frame");
            match frame {
                Message::Text(text) => return serde_json::from_str(text.as_str()).expect("JSON"),
                Message::Close(frame) => panic!("closed: {frame:?}"),
                _ => {}
            }
        }
    }

    /// Sends a ping and returns every message before the pong.
    async fn drain(&mut self) -> Vec<Value> {
        self.send(json!({"type": "ping"})).await;
        let mut before = Vec::new();
        loop {
            let message = self.next().await;
            if message["type"] == "pong" {
                return before;
            }
            before.push(message);
        }
    }
}

async fn add_note(addr: &str, body: &str) {
    let answer = reqwest::Client::new()
        .post(format!("http://{addr}/rpc/rt_add_note"))
        .json(&json!(body))
        .send()
        .await
        .expect("rpc");
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap_or_default());
}

#[tokio::test]
async fn a_subscription_gets_its_result_then_each_change_once() {
    let db = database().await;
    let (node, addr) = start(&db, |_| {}).await;
    let mut client = Client::connect(&addr, None).await;
    client.subscribe("long", "rt_notes", json!({"min": 3})).await;
    assert_eq!(client.next().await, json!({"type": "data", "id": "long", "data": []}));

    // A mutation through this node: pushed once.
    add_note(&addr, "first").await;
    assert_eq!(client.next().await, json!({"type": "data", "id": "long", "data": ["first"]}));

    // A write from outside Forge that leaves the result as it was (too short): nothing is
    // pushed; the next push is the write that changes it, not a repeat.
    sqlx::query("insert into rt_notes (body) values ('ab')").execute(db.pool()).await.expect("insert");
    sqlx::query("insert into rt_notes (body) values ('second')").execute(db.pool()).await.expect("insert");
    assert_eq!(client.next().await, json!({"type": "data", "id": "long", "data": ["first", "second"]}));

    // After unsubscribing, nothing more arrives.
    client.send(json!({"type": "unsubscribe", "id": "long"})).await;
    assert!(client.drain().await.is_empty());
    add_note(&addr, "third").await;
    // Long enough for the node to have read the change and run any subscription.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(client.drain().await, Vec::<Value>::new());
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn a_burst_of_writes_is_coalesced_and_subscribers_share_each_run() {
    let db = database().await;
    let (node, addr) = start(&db, |_| {}).await;
    let mut first = Client::connect(&addr, None).await;
    let mut second = Client::connect(&addr, None).await;
    first.subscribe("n", "rt_counted_rows", json!(null)).await;
    assert_eq!(first.next().await["data"], 0);
    second.subscribe("m", "rt_counted_rows", json!(null)).await;
    assert_eq!(second.next().await, json!({"type": "data", "id": "m", "data": 0}));
    let runs_before = COUNTED_RUNS.load(Ordering::SeqCst);

    // 200 transactions as fast as four connections make them.
    let writes = (0..4).map(|_| {
        let pool = db.pool().clone();
        tokio::spawn(async move {
            for _ in 0..50 {
                sqlx::query("insert into rt_counted default values").execute(&pool).await.expect("insert");
            }
        })
    });
    for w in writes {
        w.await.expect("writer");
    }
    let mut pushes = 0;
    loop {
        let message = first.next().await;
        pushes += 1;
        if message["data"] == 200 {
            break;
        }
    }
    loop {
        if second.next().await["data"] == 200 {
            break;
        }
    }
    let runs = COUNTED_RUNS.load(Ordering::SeqCst) - runs_before;
    assert!(pushes <= 20, "200 writes made {pushes} pushes");
    assert!(runs <= 20, "200 writes made {runs} runs for two subscribers");
    // Both subscribers were served by the same runs: no more runs than pushes to one.
    assert!(runs <= pushes + 1, "{runs} runs for {pushes} pushes");
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn access_is_checked_at_subscribe_and_again_when_the_token_expires() {
    let db = database().await;
    let (node, addr) = start(&db, |_| {}).await;

    // Anonymous: refused, and the subscription ends (its id can be used again).
    let mut anonymous = Client::connect(&addr, None).await;
    anonymous.subscribe("c", "rt_private_count", json!(null)).await;
    let refused = anonymous.next().await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert_eq!(refused["id"], "c");
    assert_eq!(refused["error"]["status"], 401);
    // With a token sent in an `auth` message, the same id subscribes.
    anonymous.send(json!({"type": "auth", "token": token(Duration::from_secs(600))})).await;
    anonymous.subscribe("c", "rt_private_count", json!(null)).await;
    assert_eq!(anonymous.next().await, json!({"type": "data", "id": "c", "data": 0}));
    // A bad token in an `auth` message is refused and changes nothing.
    anonymous.send(json!({"type": "auth", "token": "not-a-token"})).await;
    let bad = anonymous.next().await;
    assert_eq!((bad["type"].as_str(), bad["error"]["status"].as_u64()), (Some("error"), Some(401)), "{bad}");
    add_note(&addr, "x").await;
    assert_eq!(anonymous.next().await, json!({"type": "data", "id": "c", "data": 1}));

    // A token in the upgrade request that expires in 2 s: served, then refused at expiry.
    let mut short = Client::connect(&addr, Some(&token(Duration::from_secs(2)))).await;
    short.subscribe("c", "rt_private_count", json!(null)).await;
    assert_eq!(short.next().await, json!({"type": "data", "id": "c", "data": 1}));
    let expired = short.next().await;
    assert_eq!(expired["type"], "error", "{expired}");
    assert_eq!(expired["id"], "c");
    assert_eq!(expired["error"]["status"], 401);
    add_note(&addr, "y").await;
    assert_eq!(anonymous.next().await["data"], 2);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(short.drain().await, Vec::<Value>::new(), "nothing after the expiry");

    // Credentials that do not hold are refused before the upgrade.
    let mut request = format!("ws://{addr}/ws").into_client_request().expect("request");
    request.headers_mut().insert("authorization", "Bearer nope".parse().expect("header"));
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("expected 401, got {other:?}"),
    }
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn bad_messages_get_precise_errors_and_the_connection_goes_on() {
    let db = database().await;
    let (node, addr) = start(&db, |_| {}).await;
    let mut client = Client::connect(&addr, None).await;
    let cases: [(Value, Option<&str>, &str, u64); 6] = [
        (json!("{not json"), None, "urn:forge:problem:bad-message", 400),
        (json!({"type": "launch"}), None, "urn:forge:problem:bad-message", 400),
        (
            json!({"type": "subscribe", "id": "u", "query": "no_such_query"}),
            Some("u"),
            "urn:forge:problem:unknown-function",
            404,
        ),
        (
            json!({"type": "subscribe", "id": "m", "query": "rt_add_note", "args": "x"}),
            Some("m"),
            "urn:forge:problem:not-a-query",
            400,
        ),
        (
            json!({"type": "subscribe", "id": "a", "query": "rt_notes", "args": {"min": "three"}}),
            Some("a"),
            "urn:forge:problem:invalid-args",
            400,
        ),
        (json!({"type": "unsubscribe", "id": "never"}), Some("never"), "urn:forge:problem:no-subscription", 404),
    ];
    for (message, id, kind, status) in cases {
        match &message {
            Value::String(raw) => client.socket.send(Message::Text(raw.clone().into())).await.expect("send"),
            _ => client.send(message.clone()).await,
        }
        let answer = client.next().await;
        assert_eq!(answer["type"], "error", "{message} → {answer}");
        assert_eq!(answer["id"].as_str(), id, "{message} → {answer}");
        assert_eq!(answer["error"]["type"], kind, "{message} → {answer}");
        assert_eq!(answer["error"]["status"], status, "{message} → {answer}");
    }
    // A used id, and an id that is too long.
    client.subscribe("same", "rt_notes", json!({"min": 0})).await;
    assert_eq!(client.next().await["type"], "data");
    client.subscribe("same", "rt_notes", json!({"min": 0})).await;
    assert_eq!(client.next().await["error"]["type"], "urn:forge:problem:subscription-exists");
    client.subscribe(&"x".repeat(65), "rt_notes", json!({"min": 0})).await;
    assert_eq!(client.next().await["error"]["type"], "urn:forge:problem:bad-message");
    // A binary frame.
    client.socket.send(Message::Binary(vec![1, 2, 3].into())).await.expect("send");
    assert_eq!(client.next().await["error"]["type"], "urn:forge:problem:bad-message");
    assert!(client.drain().await.is_empty(), "the connection still answers");

    // `/ws` without an upgrade is a problem, not a hang.
    let plain = reqwest::get(format!("http://{addr}/ws")).await.expect("get");
    assert!(plain.status().is_client_error(), "{}", plain.status());
    assert_eq!(plain.headers()["content-type"], "application/problem+json");
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn limits_on_subscriptions_and_connections_are_enforced() {
    let db = database().await;
    let (node, addr) = start(&db, |c| {
        c.realtime.max_subscriptions = 2.try_into().expect("non-zero");
        c.realtime.max_connections = 1.try_into().expect("non-zero");
    })
    .await;
    let mut client = Client::connect(&addr, None).await;
    for (id, min) in [("a", 0), ("b", 1)] {
        client.subscribe(id, "rt_notes", json!({"min": min})).await;
        assert_eq!(client.next().await["type"], "data");
    }
    client.subscribe("c", "rt_notes", json!({"min": 2})).await;
    let refused = client.next().await;
    assert_eq!(refused["error"]["type"], "urn:forge:problem:too-many-subscriptions", "{refused}");
    assert_eq!(refused["error"]["status"], 429);
    // After ending one, another fits.
    client.send(json!({"type": "unsubscribe", "id": "a"})).await;
    client.subscribe("c", "rt_notes", json!({"min": 2})).await;
    assert_eq!(client.next().await["type"], "data");

    // One connection per node: the second is refused with 503, and SSE counts too.
    match tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 503),
        other => panic!("expected 503, got {other:?}"),
    }
    let sse = reqwest::get(format!("http://{addr}/sse?query=rt_notes&args=%7B%22min%22%3A0%7D")).await.expect("get");
    assert_eq!(sse.status(), 503);
    // Once the first closes, a new one is let in.
    drop(client);
    let mut again = None;
    for _ in 0..100 {
        if let Ok((socket, _)) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws")).await {
            again = Some(socket);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(again.is_some(), "the slot of a closed connection is given back");
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn a_mutation_on_another_node_reaches_subscribers_through_the_hint() {
    let db = database().await;
    // The subscribers' node polls only once a minute: only the hint can wake it in time.
    let (watcher, watcher_addr) = start(&db, |c| c.realtime.poll = "60s".parse().expect("duration")).await;
    let (writer, writer_addr) = start(&db, |_| {}).await;
    let mut client = Client::connect(&watcher_addr, None).await;
    client.subscribe("n", "rt_notes", json!({"min": 0})).await;
    assert_eq!(client.next().await["data"], json!([]));
    // Nobody subscribes on the writer's node: it hints all the same.
    let started = std::time::Instant::now();
    add_note(&writer_addr, "from the other node").await;
    assert_eq!(client.next().await["data"], json!(["from the other node"]));
    assert!(started.elapsed() < Duration::from_secs(30), "woken by the hint, not the minute's poll");
    writer.stop().await.expect("stop");
    watcher.stop().await.expect("stop");
}

#[tokio::test]
async fn with_listen_off_writes_from_outside_forge_are_polled() {
    let db = database().await;
    let (node, addr) = start(&db, |c| {
        c.realtime.listen = false;
        c.realtime.poll = "100ms".parse().expect("duration");
    })
    .await;
    let mut client = Client::connect(&addr, None).await;
    client.subscribe("n", "rt_notes", json!({"min": 0})).await;
    assert_eq!(client.next().await["data"], json!([]));
    sqlx::query("insert into rt_notes (body) values ('psql')").execute(db.pool()).await.expect("insert");
    assert_eq!(client.next().await["data"], json!(["psql"]));
    // No NOTIFY listener was opened.
    let listening: i64 = sqlx::query_scalar(
        "select count(*) from pg_stat_activity where datname = current_database() and query like 'LISTEN \"forge_changes\"%'",
    )
    .fetch_one(db.pool())
    .await
    .expect("count");
    assert_eq!(listening, 0);
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn a_query_without_reads_follows_every_application_table_and_one_row_is_written_per_transaction() {
    let db = database().await;
    let (node, addr) = start(&db, |_| {}).await;
    let mut client = Client::connect(&addr, None).await;
    client.subscribe("u", "rt_undeclared", json!(null)).await;
    assert_eq!(client.next().await["data"], 0);
    let triggers: Vec<String> = sqlx::query_scalar(
        "select c.relname::text from pg_trigger t join pg_class c on c.oid = t.tgrelid where t.tgname = 'forge_changes' order by 1",
    )
    .fetch_all(db.pool())
    .await
    .expect("triggers");
    for table in ["rt_counted", "rt_notes", "rt_other"] {
        assert!(triggers.iter().any(|t| t == table), "{table} is watched: {triggers:?}");
    }
    assert!(!triggers.iter().any(|t| t.starts_with("forge_")), "none of Forge's tables: {triggers:?}");

    // Three statements in one transaction: one row in the feed.
    let before: i64 =
        sqlx::query_scalar("select count(*) from forge_changes").fetch_one(db.pool()).await.expect("count");
    let mut tx = db.pool().begin().await.expect("begin");
    for _ in 0..3 {
        sqlx::query("insert into rt_other default values").execute(&mut *tx).await.expect("insert");
    }
    tx.commit().await.expect("commit");
    let after: i64 =
        sqlx::query_scalar("select count(*) from forge_changes").fetch_one(db.pool()).await.expect("count");
    assert_eq!(after - before, 1);
    assert_eq!(client.next().await["data"], 3);
    // A rolled-back write leaves no row and pushes nothing.
    let mut tx = db.pool().begin().await.expect("begin");
    sqlx::query("insert into rt_other default values").execute(&mut *tx).await.expect("insert");
    tx.rollback().await.expect("rollback");
    let rolled: i64 =
        sqlx::query_scalar("select count(*) from forge_changes").fetch_one(db.pool()).await.expect("count");
    assert_eq!(rolled, after);
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn a_transaction_that_commits_late_is_still_seen() {
    let db = database().await;
    let (node, addr) = start(&db, |c| c.realtime.poll = "50ms".parse().expect("duration")).await;
    let mut client = Client::connect(&addr, None).await;
    client.subscribe("n", "rt_notes", json!({"min": 0})).await;
    assert_eq!(client.next().await["data"], json!([]));
    // A transaction writes first and commits last: its change row has the lower id.
    let mut slow = db.pool().begin().await.expect("begin");
    sqlx::query("insert into rt_notes (body) values ('slow')").execute(&mut *slow).await.expect("insert");
    sqlx::query("insert into rt_notes (body) values ('fast')").execute(db.pool()).await.expect("insert");
    assert_eq!(client.next().await["data"], json!(["fast"]));
    tokio::time::sleep(Duration::from_millis(300)).await;
    slow.commit().await.expect("commit");
    assert_eq!(client.next().await["data"], json!(["slow", "fast"]));
    node.stop().await.expect("stop");
}

/// An event stream's events as they arrive (comments skipped).
struct Events {
    body: reqwest::Response,
    text: String,
}

impl Events {
    async fn next(&mut self) -> String {
        loop {
            if let Some(end) = self.text.find("\n\n") {
                let event = self.text[..end].to_owned();
                self.text.drain(..end + 2);
                if !event.starts_with(':') {
                    return event;
                }
                continue;
            }
            let chunk = tokio::time::timeout(WAIT, self.body.chunk())
                .await
                .expect("within the wait")
                .expect("open")
                .expect("chunk");
            self.text.push_str(std::str::from_utf8(&chunk).expect("utf-8"));
        }
    }
}

#[tokio::test]
async fn an_event_stream_and_a_websocket_outlive_the_header_and_request_timeouts() {
    // A response's body has no time limit: only the wait for a head and a request before its
    // answer do.
    let db = database().await;
    let (node, addr) = start(&db, |c| {
        c.gateway.header_read_timeout = "1s".parse().expect("duration");
        c.gateway.request_timeout = "1s".parse().expect("duration");
    })
    .await;
    let body = reqwest::get(format!("http://{addr}/sse?query=rt_notes&args=%7B%22min%22%3A0%7D")).await.expect("get");
    assert_eq!(body.status(), 200);
    let mut events = Events { body, text: String::new() };
    assert_eq!(events.next().await, "event: data\ndata: []");
    // A WebSocket too: once upgraded, the connection is the socket's, without those limits.
    let mut socket = Client::connect(&addr, None).await;
    socket.subscribe("w", "rt_notes", json!({"min": 0})).await;
    assert_eq!(socket.next().await, json!({"type": "data", "id": "w", "data": []}));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    add_note(&addr, "later").await;
    assert_eq!(events.next().await, "event: data\ndata: [\"later\"]");
    assert_eq!(socket.next().await, json!({"type": "data", "id": "w", "data": ["later"]}));
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn sse_streams_a_live_query() {
    let db = database().await;
    let (node, addr) = start(&db, |_| {}).await;
    let url = format!("http://{addr}/sse?query=rt_notes&args=%7B%22min%22%3A0%7D");
    let response = reqwest::get(&url).await.expect("get");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut events = Events { body: response, text: String::new() };
    assert_eq!(events.next().await, "event: data\ndata: []");
    add_note(&addr, "streamed").await;
    assert_eq!(events.next().await, "event: data\ndata: [\"streamed\"]");

    // Bad requests are problems.
    for (query, status) in
        [("query=rt_notes&args=%7Bbad", 400), ("query=nope", 404), ("query=rt_private_count", 401), ("args=1", 400)]
    {
        let answer = reqwest::get(format!("http://{addr}/sse?{query}")).await.expect("get");
        assert_eq!(answer.status(), status, "{query}");
        assert_eq!(answer.headers()["content-type"], "application/problem+json", "{query}");
    }
    // A token in `access_token` opens a private query.
    let private = reqwest::get(format!(
        "http://{addr}/sse?query=rt_private_count&access_token={}",
        token(Duration::from_secs(60))
    ))
    .await
    .expect("get");
    assert_eq!(private.status(), 200);
    node.stop().await.expect("stop");
}

/// A large result (about 1 MB) that changes with every row of `rt_other`.
#[forge::query(public, reads = ["rt_other"])]
async fn rt_large(ctx: &QueryContext, _args: ()) -> Result<String, ForgeError> {
    Ok(sqlx::query_scalar("select count(*)::text || repeat('x', 1000000) from rt_other").fetch_one(ctx.db()).await?)
}

#[tokio::test]
async fn a_client_that_reads_too_slowly_is_resynced_instead_of_queued_for() {
    let db = database().await;
    let (node, addr) = start(&db, |c| c.realtime.send_buffer = 2.try_into().expect("non-zero")).await;
    // The slow client's receive buffer is fixed small: the kernel would otherwise grow it (up to
    // `net.ipv4.tcp_rmem`'s maximum, 32 MB on some machines) and hold every update for it.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(64 * 1024).expect("SO_RCVBUF");
    let stream = socket.connect(addr.parse().expect("address")).await.expect("connect");
    let request = format!("ws://{addr}/ws").into_client_request().expect("request");
    let (socket, _) = tokio_tungstenite::client_async(request, tokio_tungstenite::MaybeTlsStream::Plain(stream))
        .await
        .expect("handshake");
    let mut slow = Client { socket };
    slow.subscribe("big", "rt_large", json!(null)).await;
    assert!(slow.next().await["data"].as_str().is_some_and(|d| d.starts_with('0')));
    // A client that reads paces the changes: each of the 40 changes is pushed (a new 1 MB result)
    // before the next is made, while the slow client reads nothing. Its socket's buffers fill,
    // then the node's queue of two, then the node drops updates and marks it slow.
    let mut reader = Client::connect(&addr, None).await;
    reader.subscribe("big", "rt_large", json!(null)).await;
    for n in 1..=40 {
        sqlx::query("insert into rt_other default values").execute(db.pool()).await.expect("insert");
        let prefix = format!("{n}x");
        loop {
            let message = reader.next().await;
            if message["data"].as_str().is_some_and(|d| d.starts_with(&prefix)) {
                break;
            }
        }
    }
    let mut resynced = false;
    let mut received = 0;
    loop {
        let message = slow.next().await;
        match message["type"].as_str() {
            Some("resync") => resynced = true,
            Some("data") => {
                received += 1;
                if message["data"].as_str().is_some_and(|d| d.starts_with("40x")) {
                    break;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(resynced, "the slow client was told to resync");
    assert!(received < 40, "updates were dropped, not queued: {received} of 40 arrived");
    node.stop().await.expect("stop");
}

/// Reports half its progress, then waits for a row `go` in `rt_other`.
#[forge::job]
async fn rt_waiting_job(ctx: &JobContext, _args: ()) -> Result<String, JobError> {
    ctx.progress(50, "halfway").await?;
    loop {
        let go: bool =
            sqlx::query_scalar("select exists (select 1 from rt_other where body = 'go')").fetch_one(ctx.db()).await?;
        if go {
            return Ok("done".to_owned());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn operator_token() -> String {
    let mut config = ForgeConfig::default();
    config.auth.jwt_secret = Some(SECRET.to_owned());
    let mut request = TokenRequest::new("op", Duration::from_secs(600));
    request.roles = vec!["forge:admin".to_owned()];
    mint_token(&config.auth, &request).expect("token")
}

/// The next `job` message whose job satisfies `done`; the cursor of each message seen.
async fn job_until(client: &mut Client, done: impl Fn(&Value) -> bool) -> (Value, Vec<String>) {
    let mut cursors = Vec::new();
    loop {
        let message = client.next().await;
        assert_eq!(message["type"], "job", "{message}");
        let cursor = message["cursor"].as_str().expect("cursor").to_owned();
        assert!(!cursors.contains(&cursor), "a version was pushed twice: {message}");
        cursors.push(cursor);
        if done(&message["job"]) {
            return (message, cursors);
        }
    }
}

#[tokio::test]
async fn a_watched_job_pushes_its_state_and_progress_and_resumes_from_a_cursor() {
    let db = database().await;
    let (node, addr) = start(&db, |c| c.realtime.poll = "100ms".parse().expect("duration")).await;
    let job = RtWaitingJob::dispatch(&node, ()).await.expect("dispatch").0;

    // Anonymous callers and users without the operator role are refused; an unknown job is 404.
    let mut anonymous = Client::connect(&addr, None).await;
    anonymous.send(json!({"type": "watch", "id": "j", "job": job})).await;
    assert_eq!(anonymous.next().await["error"]["status"], 401);
    let mut user = Client::connect(&addr, Some(&token(Duration::from_secs(60)))).await;
    user.send(json!({"type": "watch", "id": "j", "job": job})).await;
    assert_eq!(user.next().await["error"]["status"], 403);
    let mut operator = Client::connect(&addr, Some(&operator_token())).await;
    operator.send(json!({"type": "watch", "id": "none", "job": 999_999_999})).await;
    assert_eq!(operator.next().await["error"]["status"], 404);

    // The operator sees the job run, report progress, and complete.
    operator.send(json!({"type": "watch", "id": "j", "job": job})).await;
    let (running, _) = job_until(&mut operator, |j| j["progress"]["percent"] == 50).await;
    assert_eq!(running["id"], "j");
    assert_eq!(running["job"]["state"], "running");
    assert_eq!(running["job"]["progress"]["message"], "halfway");
    let old_cursor = running["cursor"].as_str().expect("cursor").to_owned();
    sqlx::query("insert into rt_other (body) values ('go')").execute(db.pool()).await.expect("go");
    let (done, _) = job_until(&mut operator, |j| j["state"] == "completed").await;
    assert_eq!(done["job"]["output"], "done");
    assert_eq!(done["job"]["attempt"], 1);
    let last_cursor = done["cursor"].as_str().expect("cursor").to_owned();

    // Reconnecting with the last cursor: nothing until the job changes. With an older one: the
    // job as it is now, once.
    let mut resumed = Client::connect(&addr, Some(&operator_token())).await;
    resumed.send(json!({"type": "watch", "id": "j", "job": job, "cursor": last_cursor})).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(resumed.drain().await, Vec::<Value>::new());
    let mut behind = Client::connect(&addr, Some(&operator_token())).await;
    behind.send(json!({"type": "watch", "id": "j", "job": job, "cursor": old_cursor})).await;
    let caught_up = behind.next().await;
    assert_eq!(
        (caught_up["cursor"].as_str(), caught_up["job"]["state"].as_str()),
        (Some(last_cursor.as_str()), Some("completed"))
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(behind.drain().await, Vec::<Value>::new(), "shown once");

    // Retention deletes it: the watch ends with 404.
    sqlx::query("delete from forge_jobs where id = $1").bind(job).execute(db.pool()).await.expect("delete");
    let gone = resumed.next().await;
    assert_eq!((gone["type"].as_str(), gone["error"]["status"].as_u64()), (Some("error"), Some(404)), "{gone}");
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn a_client_that_answers_no_ping_is_closed_after_the_idle_timeout() {
    let db = database().await;
    let (node, addr) = start(&db, |c| c.realtime.idle_timeout = "900ms".parse().expect("duration")).await;
    let mut client = Client::connect(&addr, None).await;
    client.subscribe("n", "rt_notes", json!({"min": 0})).await;
    // Not reading the socket: the library answers no ping, so the node hears nothing.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    // The node closed it: a close frame (1001, "idle…"), or, when the library first tries to
    // answer a queued ping on the closed socket, an I/O error.
    let mut closed = false;
    while let Ok(Some(frame)) = tokio::time::timeout(WAIT, client.socket.next()).await {
        match frame {
            Ok(Message::Close(frame)) => {
                let frame = frame.expect("a close frame with a code");
                assert_eq!(u16::from(frame.code), 1001, "{frame:?}");
                assert!(frame.reason.contains("idle"), "{frame:?}");
                closed = true;
                break;
            }
            Ok(_) => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(closed, "the node closed the silent connection");

    // A client that keeps reading answers the pings and stays.
    let mut reader = Client::connect(&addr, None).await;
    reader.subscribe("n", "rt_notes", json!({"min": 0})).await;
    assert_eq!(reader.next().await["type"], "data");
    let until = std::time::Instant::now() + Duration::from_millis(2500);
    while std::time::Instant::now() < until {
        if let Ok(Some(frame)) = tokio::time::timeout(Duration::from_millis(100), reader.socket.next()).await {
            assert!(!matches!(frame, Ok(Message::Close(_))), "closed although it answered: {frame:?}");
        }
    }
    assert!(reader.drain().await.is_empty());
    node.stop().await.expect("stop");
}

/// A client of several subscriptions, remembering the latest data of each.
struct Following {
    client: Client,
    latest: std::collections::HashMap<String, Value>,
}

impl Following {
    /// Subscription `id`'s data once it satisfies `done` (the latest already received, or the
    /// next pushed that does).
    async fn until(&mut self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        if let Some(data) = self.latest.get(id).filter(|d| done(d)) {
            return data.clone();
        }
        loop {
            let message = self.client.next().await;
            let Some(sub) = message["id"].as_str() else { continue };
            assert_eq!(message["type"], "data", "{message}");
            self.latest.insert(sub.to_owned(), message["data"].clone());
            if sub == id && done(&message["data"]) {
                return message["data"].clone();
            }
        }
    }
}

/// One step, then a wait for the event `go`, then a last step.
#[forge::workflow]
async fn rt_flow(ctx: &WorkflowContext, _args: ()) -> Result<i64, WorkflowError> {
    let first: i64 = ctx.step("first", || async { Ok(1) }).await?;
    let _: Option<Value> = ctx.wait_for_event("go", Duration::from_secs(3600)).await?;
    let last: i64 = ctx.step("last", || async { Ok(2) }).await?;
    Ok(first + last)
}

#[tokio::test]
async fn a_workflow_runs_steps_and_the_queues_depth_are_pushed_as_they_change() {
    let db = database().await;
    let (node, addr) = start(&db, |c| {
        c.realtime.source_poll = "100ms".parse().expect("duration");
        c.dashboard.open_on_loopback = false;
    })
    .await;
    let mut user = Client::connect(&addr, Some(&token(Duration::from_secs(60)))).await;
    user.subscribe("w", "forge:workflow", json!({"id": 1})).await;
    assert_eq!(user.next().await["error"]["status"], 403, "operators only");
    let mut operator =
        Following { client: Client::connect(&addr, Some(&operator_token())).await, latest: Default::default() };
    operator.client.subscribe("q", "forge:queues", Value::Null).await;
    operator.until("q", |q| q["queues"].is_array()).await;

    // The job waits: the default queue's depth shows it running.
    let job = RtWaitingJob::dispatch(&node, ()).await.expect("dispatch").0;
    operator
        .until("q", |q| {
            q["queues"]
                .as_array()
                .is_some_and(|qs| qs.iter().any(|q| q["name"] == "default" && q["depth"]["running"] == 1))
        })
        .await;

    let run = RtFlow::start(&node, ()).await.expect("start").0;
    operator.client.subscribe("w", "forge:workflow", json!({"id": run})).await;
    let waiting = operator.until("w", |w| w["run"]["waiting_for"] == "go").await;
    assert_eq!(waiting["steps"][0]["name"], "first");
    assert_eq!(waiting["steps"][0]["status"], "completed");
    forge::workflows::send_event(db.pool(), JobId(run), "go", json!(true)).await.expect("send");
    let done = operator.until("w", |w| w["run"]["status"] == "completed").await;
    let steps: Vec<&str> =
        done["steps"].as_array().expect("steps").iter().map(|s| s["name"].as_str().unwrap_or("")).collect();
    assert_eq!(steps, ["first", "go", "last"], "{done}");
    assert_eq!(done["events"][0]["name"], "go");

    sqlx::query("insert into rt_other (body) values ('go')").execute(db.pool()).await.expect("go");
    operator
        .until("q", |q| !q["queues"].as_array().is_some_and(|qs| qs.iter().any(|q| q["depth"]["running"] == 1)))
        .await;
    let _ = job;
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn the_dashboards_live_sources_push_counts_the_jobs_list_and_a_job_as_they_change() {
    let db = database().await;
    let (node, addr) = start(&db, |c| {
        c.realtime.source_poll = "100ms".parse().expect("duration");
        c.dashboard.open_on_loopback = false;
    })
    .await;

    // The dashboard's access rule: credentials with its role.
    let mut anonymous = Client::connect(&addr, None).await;
    anonymous.subscribe("o", "forge:overview", Value::Null).await;
    assert_eq!(anonymous.next().await["error"]["status"], 401);
    let mut user = Client::connect(&addr, Some(&token(Duration::from_secs(60)))).await;
    user.subscribe("o", "forge:overview", Value::Null).await;
    assert_eq!(user.next().await["error"]["status"], 403);
    let mut operator = Client::connect(&addr, Some(&operator_token())).await;
    operator.subscribe("bad", "forge:job", json!({"id": "seven"})).await;
    assert_eq!(operator.next().await["error"]["status"], 400);
    operator.subscribe("bad2", "forge:jobs", json!({"state": "sleeping"})).await;
    assert_eq!(operator.next().await["error"]["status"], 400);
    let mut operator = Following { client: operator, latest: Default::default() };

    operator.client.subscribe("o", "forge:overview", Value::Null).await;
    operator.client.subscribe("l", "forge:jobs", json!({"state": "running", "kind": "", "limit": 10})).await;
    operator.until("o", |o| o["counts"].is_object()).await;
    operator.until("l", |l| l["jobs"] == json!([])).await;

    // A job runs: the counts, the running list and the job's page follow it.
    let job = RtWaitingJob::dispatch(&node, ()).await.expect("dispatch").0;
    operator.until("o", |o| o["counts"]["running"] == 1).await;
    let list = operator.until("l", |l| l["jobs"].as_array().is_some_and(|j| j.len() == 1)).await;
    assert_eq!(list["jobs"][0]["id"], job);
    operator.client.subscribe("j", "forge:job", json!({"id": job})).await;
    let page = operator.until("j", |p| p["job"]["progress"]["percent"] == 50).await;
    assert_eq!(page["job"]["state"], "running");
    assert!(page["logs"]["entries"].is_array(), "{page}");

    sqlx::query("insert into rt_other (body) values ('go')").execute(db.pool()).await.expect("go");
    let page = operator.until("j", |p| p["job"]["state"] == "completed").await;
    assert_eq!(page["job"]["output"], "done");
    operator.until("l", |l| l["jobs"] == json!([])).await;
    operator.until("o", |o| o["counts"]["completed"] == 1 && o["counts"].get("running").is_none_or(|n| n == 0)).await;
    node.stop().await.expect("stop");

    // In development mode a connection from this machine needs no credentials, as for /_api.
    let (node, addr) = start(&db, |c| c.realtime.source_poll = "100ms".parse().expect("duration")).await;
    let mut local = Client::connect(&addr, None).await;
    local.subscribe("o", "forge:overview", Value::Null).await;
    let overview = local.next().await["data"].clone();
    assert_eq!(overview["counts"]["completed"], 1);
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn a_revoked_api_key_stops_serving_its_open_subscriptions() {
    let db = database().await;
    let (node, addr) = start(&db, |c| c.realtime.idle_timeout = "900ms".parse().expect("duration")).await;
    let keys = forge::gateway::ApiKeys::new(db.pool().clone());
    let key = keys.create(forge::gateway::NewApiKey::named("watcher")).await.expect("key");
    let mut client = Client::connect(&addr, Some(&key.key)).await;
    client.subscribe("c", "rt_private_count", Value::Null).await;
    let first = client.next().await;
    assert_eq!((first["type"].as_str(), first["data"].as_i64()), (Some("data"), Some(0)), "{first}");

    // Revoked: at the next server ping (a third of idle_timeout) the connection turns anonymous
    // and the subscription, which needs credentials, ends with 401.
    keys.revoke(key.record.id).await.expect("revoke");
    let ended = client.next().await;
    assert_eq!((ended["type"].as_str(), ended["error"]["status"].as_u64()), (Some("error"), Some(401)), "{ended}");
    add_note(&addr, "after").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(client.drain().await, Vec::<Value>::new(), "nothing more is pushed");
    node.stop().await.expect("stop");
}
