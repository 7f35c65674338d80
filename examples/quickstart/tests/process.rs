//! The quickstart binary as a real process: it serves /health, /ready and its functions, and SIGTERM stops it
//! with exit status 0 — on a given DATABASE_URL, and on the embedded default.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use forge::testing::TestDatabase;

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Polls `url` until it answers `want`, or fails after `limit`. Returns the last body.
async fn wait_for(url: &str, want: u16, limit: Duration, child: &mut Child) -> String {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client");
    let deadline = Instant::now() + limit;
    let mut last = String::from("no answer yet");
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("try_wait") {
            panic!("quickstart exited early with {status}; last answer: {last}");
        }
        match client.get(url).send().await {
            Ok(response) if response.status().as_u16() == want => {
                return response.text().await.expect("body");
            }
            Ok(response) => last = format!("{} {}", response.status(), response.text().await.unwrap_or_default()),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} did not answer {want} within {limit:?}; last answer: {last}");
}

fn sigterm_and_wait(mut child: Child) -> std::process::ExitStatus {
    let pid = i32::try_from(child.id()).expect("pid fits in i32");
    // SAFETY: kill with a valid pid and signal number has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "send SIGTERM");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("quickstart did not exit within 30s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spawn(dir: &Path, port: u16, database_url: Option<&str>) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_quickstart"));
    cmd.current_dir(dir).env("FORGE_PORT", port.to_string()).stdout(Stdio::null()).stderr(Stdio::inherit());
    match database_url {
        Some(url) => cmd.env("DATABASE_URL", url),
        None => cmd.env_remove("DATABASE_URL"),
    };
    cmd.spawn().expect("spawn quickstart")
}

#[tokio::test]
async fn serves_probes_and_exits_0_on_sigterm() {
    let db = TestDatabase::new().await.expect("database");
    let dir = tempfile::tempdir().expect("project dir");
    let port = free_port();
    let mut child = spawn(dir.path(), port, Some(db.url()));
    wait_for(&format!("http://127.0.0.1:{port}/health"), 200, Duration::from_secs(30), &mut child).await;
    let body = wait_for(&format!("http://127.0.0.1:{port}/ready"), 200, Duration::from_secs(30), &mut child).await;
    assert!(body.contains("ready"), "{body}");
    assert!(!dir.path().join(".forge").exists(), "with DATABASE_URL set, nothing is started");

    // The job it dispatched at start-up ran.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let output: Option<serde_json::Value> =
            sqlx::query_scalar("select output from forge_jobs where kind = 'greet' and state = 'completed'")
                .fetch_optional(db.pool())
                .await
                .expect("query");
        if let Some(output) = output {
            assert_eq!(output, serde_json::json!("hello, world"));
            break;
        }
        assert!(Instant::now() < deadline, "the greet job did not complete");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Its functions answer over real HTTP; the mutation's job runs.
    let client = reqwest::Client::new();
    let rpc = |name: &str| format!("http://127.0.0.1:{port}/rpc/{name}");
    let hello = client.post(rpc("hello")).json(&serde_json::json!({"name": "Ada"})).send().await.expect("hello");
    assert_eq!(hello.json::<serde_json::Value>().await.expect("json"), serde_json::json!({"data": "hello, Ada"}));
    let later = client.post(rpc("greet_later")).json(&serde_json::json!({"name": "Bob"})).send().await.expect("call");
    assert!(later.headers().contains_key("x-request-id"));
    let id = later.json::<serde_json::Value>().await.expect("json")["data"].as_i64().expect("job id");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let state: String = sqlx::query_scalar("select state from forge_jobs where id = $1")
            .bind(id)
            .fetch_one(db.pool())
            .await
            .expect("job");
        if state == "completed" {
            break;
        }
        assert!(Instant::now() < deadline, "the dispatched job did not complete: {state}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = sigterm_and_wait(child);
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn starts_its_own_postgres_without_database_url() {
    let dir = tempfile::Builder::new().prefix("forge-quickstart-").tempdir().expect("project dir");
    // tempdir makes the folder 0700; as root the server runs as `postgres`, which must reach it.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let port = free_port();
    let mut child = spawn(dir.path(), port, None);
    let body = wait_for(&format!("http://127.0.0.1:{port}/ready"), 200, Duration::from_secs(90), &mut child).await;
    assert!(body.contains("ready"), "{body}");
    let cluster = dir.path().join(".forge/postgres");
    assert!(cluster.join("data/PG_VERSION").exists(), "cluster created in .forge/postgres");
    assert!(cluster.join(".s.PGSQL.5432").exists(), "socket in the cluster folder");

    let status = sigterm_and_wait(child);
    assert!(status.success(), "exit status {status}");
    assert!(!cluster.join("data/postmaster.pid").exists(), "the embedded server stopped with the process");
}
