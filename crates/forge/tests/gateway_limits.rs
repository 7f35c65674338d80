//! The gateway's limits, over real sockets: a client that sends its headers too slowly is cut
//! off; past `max_concurrent_requests` calls are shed with 503 and `Retry-After` while the
//! probes still answer; a call longer than `request_timeout` is answered 408 and counted; `/ready` says what is wrong without the database's own words; `/metrics`
//! can require a token and does not count the job table on every scrape.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use forge::config::{Role, Roles};
use forge::prelude::*;
use forge::testing::TestDatabase;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

static RELEASE: Notify = Notify::const_new();
static WAITING: AtomicUsize = AtomicUsize::new(0);

/// Holds its request until the test releases it.
#[forge::query(public)]
async fn hold(_ctx: &QueryContext, _args: ()) -> Result<u32, ForgeError> {
    WAITING.fetch_add(1, Ordering::SeqCst);
    RELEASE.notified().await;
    Ok(1)
}

/// Answers after ten seconds.
#[forge::query(public)]
async fn linger(_ctx: &QueryContext, _args: ()) -> Result<u32, ForgeError> {
    tokio::time::sleep(Duration::from_secs(10)).await;
    Ok(1)
}

/// Set once `overstay` has started.
static OVERSTAYING: AtomicUsize = AtomicUsize::new(0);

/// Answers after ten seconds, saying when it has started.
#[forge::query(public)]
async fn overstay(_ctx: &QueryContext, _args: ()) -> Result<u32, ForgeError> {
    OVERSTAYING.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(10)).await;
    Ok(1)
}

/// The sum of its arguments.
#[forge::query(public)]
async fn limits_sum(_ctx: &QueryContext, numbers: Vec<i64>) -> Result<i64, ForgeError> {
    Ok(numbers.iter().sum())
}

#[forge::job]
async fn limits_noop(_ctx: &JobContext, _args: ()) -> Result<(), JobError> {
    Ok(())
}

async fn gateway(db: &TestDatabase, tweak: impl FnOnce(&mut forge::ForgeConfig)) -> RunningForge {
    let mut config = db.config();
    config.node.roles = Roles::new([Role::Gateway, Role::Function]).expect("roles");
    tweak(&mut config);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    Forge::builder().config(config).listener(listener).build().expect("build").start().await.expect("start")
}

#[tokio::test]
async fn a_client_that_sends_its_headers_too_slowly_is_cut_off() {
    let db = TestDatabase::new().await.expect("db");
    let node = gateway(&db, |c| c.gateway.header_read_timeout = "1s".parse().expect("duration")).await;
    let mut slow = tokio::net::TcpStream::connect(node.local_addr().expect("addr")).await.expect("connect");
    // Half a request, then nothing (a slow-loris client).
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n").await.expect("write");
    let started = Instant::now();
    let mut buffer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), slow.read_to_end(&mut buffer)).await;
    assert!(read.is_ok(), "the connection was still open after 15 s");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900), "closed before the timeout: {waited:?}");
    // A prompt client on the same node is served.
    let mut prompt = tokio::net::TcpStream::connect(node.local_addr().expect("addr")).await.expect("connect");
    prompt.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.expect("write");
    let mut answer = String::new();
    prompt.read_to_string(&mut answer).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn a_busy_keep_alive_connection_outlives_its_time_limits_and_an_idle_one_is_closed() {
    // The connection keeps both limits with one timer of its own: each request must start the
    // clock again, and the wait after an answer is a wait for a head like the first.
    let db = TestDatabase::new().await.expect("db");
    let node = gateway(&db, |c| {
        c.gateway.header_read_timeout = "1s".parse().expect("duration");
        c.gateway.request_timeout = "1s".parse().expect("duration");
    })
    .await;
    let mut connection = tokio::net::TcpStream::connect(node.local_addr().expect("addr")).await.expect("connect");
    let started = Instant::now();
    for i in 0..8 {
        connection.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("write");
        let mut answer = Vec::new();
        while !answer.ends_with(br#"{"status":"ok"}"#) {
            let mut chunk = [0; 1024];
            let n = tokio::time::timeout(Duration::from_secs(5), connection.read(&mut chunk))
                .await
                .expect("an answer within 5 s")
                .expect("read");
            assert!(n > 0, "request {i} ({:?} in): the connection was closed", started.elapsed());
            answer.extend_from_slice(&chunk[..n]);
        }
        assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert!(started.elapsed() > Duration::from_secs(3), "the requests spanned both limits several times");
    // Then nothing: closed about a second after the last answer (the 400 ms above included).
    let idle = Instant::now();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), connection.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "an idle connection was still open after 10 s");
    assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    assert!(idle.elapsed() < Duration::from_secs(3), "closed only after {:?}", idle.elapsed());
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn past_the_limit_of_requests_in_flight_calls_are_shed_and_the_probes_still_answer() {
    let db = TestDatabase::new().await.expect("db");
    let node = gateway(&db, |c| c.gateway.max_concurrent_requests = std::num::NonZeroUsize::new(2).expect("2")).await;
    let base = format!("http://{}", node.local_addr().expect("addr"));
    let client = reqwest::Client::new();
    let call = || client.post(format!("{base}/rpc/hold")).json(&serde_json::Value::Null).send();
    let held = [tokio::spawn(call()), tokio::spawn(call())];
    let deadline = Instant::now() + Duration::from_secs(10);
    while WAITING.load(Ordering::SeqCst) < 2 {
        assert!(Instant::now() < deadline, "the two calls did not arrive");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let shed = call().await.expect("response");
    assert_eq!(shed.status().as_u16(), 503);
    assert_eq!(shed.headers()["retry-after"], "1");
    let problem: serde_json::Value = shed.json().await.expect("problem");
    assert_eq!(problem["type"], "urn:forge:problem:overloaded");
    for probe in ["/health", "/ready"] {
        let status = client.get(format!("{base}{probe}")).send().await.expect("probe").status();
        assert_eq!(status.as_u16(), 200, "{probe} answers while the gateway is full");
    }
    // Room again once the held calls end.
    RELEASE.notify_waiters();
    for call in held {
        assert_eq!(call.await.expect("task").expect("response").status().as_u16(), 200);
    }
    let status = client.post(format!("{base}/rpc/no_such_function")).json(&()).send().await.expect("response").status();
    assert_eq!(status.as_u16(), 404, "a slot is free again: the call reaches the router");
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn a_call_longer_than_the_request_timeout_is_answered_408_and_counted() {
    let db = TestDatabase::new().await.expect("db");
    let node = gateway(&db, |c| c.gateway.request_timeout = "1s".parse().expect("duration")).await;
    let base = format!("http://{}", node.local_addr().expect("addr"));
    let client = reqwest::Client::new();
    let started = Instant::now();
    let response = client.post(format!("{base}/rpc/linger")).json(&()).send().await.expect("response");
    let waited = started.elapsed();
    assert_eq!(response.status().as_u16(), 408);
    assert!(waited >= Duration::from_millis(900) && waited < Duration::from_secs(9), "answered after {waited:?}");
    assert!(response.headers()["content-type"].to_str().expect("type").starts_with("application/problem+json"));
    let problem: serde_json::Value = response.json().await.expect("problem");
    assert_eq!(problem["type"], "urn:forge:problem:request-timeout", "{problem}");
    assert_eq!(problem["instance"], "/rpc/linger", "{problem}");
    assert!(problem["detail"].as_str().expect("detail").contains("request_timeout (1s)"), "{problem}");
    let metrics = client.get(format!("{base}/metrics")).send().await.expect("metrics").text().await.expect("text");
    assert!(
        metrics.lines().any(|l| l.starts_with("forge_http_requests_total{")
            && l.contains(r#"route="/rpc/{function}""#)
            && l.contains(r#"status="408""#)),
        "the timed-out request is counted: {metrics}"
    );
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn a_request_in_flight_when_the_node_stops_is_still_answered_at_its_deadline() {
    // The node lets requests in flight finish when it stops; one that would run past
    // `request_timeout` gets its 408 then, with `Connection: close`.
    let db = TestDatabase::new().await.expect("db");
    let node = gateway(&db, |c| c.gateway.request_timeout = "1s".parse().expect("duration")).await;
    let url = format!("http://{}/rpc/overstay", node.local_addr().expect("addr"));
    let started = Instant::now();
    let call = tokio::spawn(async move { reqwest::Client::new().post(url).json(&()).send().await });
    while OVERSTAYING.load(Ordering::SeqCst) == 0 {
        assert!(started.elapsed() < Duration::from_secs(10), "the call did not arrive");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let stopping = tokio::spawn(node.stop());
    let response = call.await.expect("task").expect("response");
    let waited = started.elapsed();
    assert_eq!(response.status().as_u16(), 408);
    assert_eq!(response.headers()["connection"], "close");
    assert!(waited < Duration::from_secs(5), "answered after {waited:?}");
    stopping.await.expect("task").expect("stop");
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_as_soon_as_the_node_stops() {
    // The stop reaches each connection's task: an idle connection is closed then, not after its
    // `header_read_timeout` (a minute here), and the stop does not wait for it.
    let db = TestDatabase::new().await.expect("db");
    let node = gateway(&db, |c| c.gateway.header_read_timeout = "60s".parse().expect("duration")).await;
    let addr = node.local_addr().expect("addr");
    let mut idle = Vec::new();
    for _ in 0..3 {
        let mut connection = tokio::net::TcpStream::connect(addr).await.expect("connect");
        connection.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("write");
        let mut answer = Vec::new();
        while !answer.ends_with(br#"{"status":"ok"}"#) {
            let mut chunk = [0; 1024];
            let n = connection.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed before its answer");
            answer.extend_from_slice(&chunk[..n]);
        }
        idle.push(connection);
    }
    let stopping = tokio::spawn(node.stop());
    for mut connection in idle {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(20), connection.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "an idle connection was still open 20 s after the node began to stop");
        assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
    }
    tokio::time::timeout(Duration::from_secs(20), stopping).await.expect("stopped").expect("task").expect("stop");
}

#[tokio::test]
async fn a_request_timeout_too_long_for_the_clock_is_no_deadline() {
    let db = TestDatabase::new().await.expect("db");
    let node = gateway(&db, |c| c.gateway.request_timeout = "300000000000y".parse().expect("duration")).await;
    let base = format!("http://{}", node.local_addr().expect("addr"));
    let client = reqwest::Client::new();
    let response = client.post(format!("{base}/rpc/no_such_function")).json(&()).send().await.expect("response");
    assert_eq!(response.status().as_u16(), 404, "served, not a panic");
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn ready_says_the_database_is_unreachable_without_its_error_text() {
    let db = TestDatabase::new().await.expect("db");
    let node = gateway(&db, |_| {}).await;
    let base = format!("http://{}", node.local_addr().expect("addr"));
    db.cut_connections().await.expect("outage");
    let response = reqwest::get(format!("{base}/ready")).await.expect("response");
    assert_eq!(response.status().as_u16(), 503);
    let body = response.text().await.expect("body");
    assert!(body.contains("database unreachable"), "{body}");
    assert!(!body.contains(db.name()) && !body.contains("accepting"), "the server's own words leaked: {body}");
    db.restore_connections().await.expect("back");
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn metrics_can_require_a_token_and_do_not_count_jobs_on_every_scrape() {
    let db = TestDatabase::new().await.expect("db");
    let node = gateway(&db, |c| c.gateway.metrics_token = Some("scrape-token-1".to_owned())).await;
    let url = format!("http://{}/metrics", node.local_addr().expect("addr"));
    let client = reqwest::Client::new();
    assert_eq!(client.get(&url).send().await.expect("response").status().as_u16(), 401);
    let wrong = client.get(&url).bearer_auth("scrape-token-2").send().await.expect("response");
    assert_eq!(wrong.status().as_u16(), 401);
    let scrape = async || {
        let response = client.get(&url).bearer_auth("scrape-token-1").send().await.expect("response");
        assert_eq!(response.status().as_u16(), 200);
        response.text().await.expect("body")
    };
    let depth =
        |text: &str| text.lines().any(|l| l.starts_with("forge_queue_depth{") && l.contains("queue=\"default\""));
    let first = scrape().await;
    assert!(!depth(&first), "no jobs yet: {first}");
    LimitsNoop::dispatch(db.pool(), ()).await.expect("dispatch");
    // Scraped again at once: the depth is the one counted moments ago, not a new count.
    let second = scrape().await;
    assert!(!depth(&second), "the job table was counted again for this scrape");
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn a_gateway_without_the_function_role_serves_the_dashboard_but_no_functions() {
    let db = TestDatabase::new().await.expect("db");
    let node = gateway(&db, |c| c.node.roles = Roles::new([Role::Gateway]).expect("roles")).await;
    let base = format!("http://{}", node.local_addr().expect("addr"));
    let client = reqwest::Client::new();
    for path in ["/rpc/hold", "/rpc"] {
        let response =
            client.post(format!("{base}{path}")).json(&serde_json::Value::Null).send().await.expect("response");
        assert_eq!(response.status().as_u16(), 404, "{path}");
        let problem: serde_json::Value = response.json().await.expect("problem");
        assert_eq!(problem["type"], "urn:forge:problem:no-functions", "{problem}");
        assert!(problem["detail"].as_str().expect("detail").contains("`function` role"), "{problem}");
    }
    assert_eq!(client.get(format!("{base}/health")).send().await.expect("health").status().as_u16(), 200);
    let nodes = client.get(format!("{base}/_api/nodes")).header("host", "localhost").send().await.expect("api");
    assert_eq!(nodes.status().as_u16(), 200, "the dashboard's API is served");
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn a_static_dir_serves_its_files_for_unrouted_gets_and_nothing_else() {
    let db = TestDatabase::new().await.expect("db");
    let site = tempfile::tempdir().expect("dir");
    std::fs::write(site.path().join("index.html"), "<h1>home</h1>").expect("write");
    std::fs::create_dir(site.path().join("js")).expect("mkdir");
    std::fs::write(site.path().join("js/app.js"), "export const x = 1;").expect("write");
    // A file beside the folder, which no path may reach.
    let outside = site.path().parent().expect("parent").join(format!("secret-{}.txt", std::process::id()));
    std::fs::write(&outside, "TOP-SECRET-CONTENT").expect("write");
    let dir = site.path().to_owned();
    let node = gateway(&db, move |c| c.gateway.static_dir = Some(dir)).await;
    let base = format!("http://{}", node.local_addr().expect("addr"));
    let client = reqwest::Client::new();

    let home = client.get(format!("{base}/")).send().await.expect("response");
    assert_eq!(home.status().as_u16(), 200);
    assert!(home.headers()["content-type"].to_str().expect("type").starts_with("text/html"));
    assert_eq!(home.text().await.expect("body"), "<h1>home</h1>");
    let script = client.get(format!("{base}/js/app.js")).send().await.expect("response");
    assert_eq!(script.status().as_u16(), 200);
    assert!(script.headers()["content-type"].to_str().expect("type").contains("javascript"));

    // Routes still win; an unknown path or another method is the gateway's 404 problem.
    assert_eq!(client.get(format!("{base}/health")).send().await.expect("response").status().as_u16(), 200);
    for response in [
        client.get(format!("{base}/missing.html")).send().await.expect("response"),
        client.post(format!("{base}/index.html")).send().await.expect("response"),
        client
            .get(format!("{base}/..%2f{}", outside.file_name().expect("name").to_string_lossy()))
            .send()
            .await
            .expect("response"),
    ] {
        assert_eq!(response.status().as_u16(), 404, "{}", response.url());
        let body = response.text().await.expect("body");
        assert!(body.contains("no route for") && !body.contains("TOP-SECRET"), "{body}");
    }
    node.stop().await.expect("stop");
    let _ = std::fs::remove_file(outside);
}

#[tokio::test]
async fn a_static_dir_that_is_not_a_folder_is_refused_at_build() {
    let db = TestDatabase::new().await.expect("db");
    let mut config = db.config();
    config.gateway.static_dir = Some("no/such/folder".into());
    let error = Forge::builder().config(config).build().expect_err("a missing folder is refused");
    let message = error.to_string();
    assert!(message.contains("gateway.static_dir") && message.contains("no/such/folder"), "{message}");
}

/// A body sent in chunks (with a trailer) is read whole, and so is one of a declared length
/// right after it on the same keep-alive connection: the reader stops once a declared length is
/// all in, and leaves the connection ready for the next request.
#[tokio::test]
async fn bodies_in_chunks_and_of_a_declared_length_share_a_keep_alive_connection() {
    let db = TestDatabase::new().await.expect("db");
    let node = gateway(&db, |_| {}).await;
    let mut stream = tokio::net::TcpStream::connect(node.local_addr().expect("addr")).await.expect("connect");
    let chunked = "POST /rpc/limits_sum HTTP/1.1\r\nHost: localhost\r\ncontent-type: application/json\r\n\
                   transfer-encoding: chunked\r\n\r\n5\r\n[1,2,\r\n2\r\n3]\r\n0\r\nx-note: end\r\n\r\n";
    let sized = "POST /rpc/limits_sum HTTP/1.1\r\nHost: localhost\r\ncontent-type: application/json\r\n\
                 content-length: 7\r\nconnection: close\r\n\r\n[10,20]";
    stream.write_all(chunked.as_bytes()).await.expect("write");
    stream.write_all(sized.as_bytes()).await.expect("write");
    let mut answers = String::new();
    tokio::time::timeout(Duration::from_secs(15), stream.read_to_string(&mut answers))
        .await
        .expect("both answers within 15 s")
        .expect("read");
    let statuses: Vec<&str> = answers.matches("HTTP/1.1 200 OK").collect();
    assert_eq!(statuses.len(), 2, "{answers}");
    let first = answers.find(r#"{"data":6}"#).expect(&answers);
    let second = answers.find(r#"{"data":30}"#).expect(&answers);
    assert!(first < second, "{answers}");
    node.stop().await.expect("stop");
}
