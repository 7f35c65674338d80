//! The dashboard in a real browser: Debian's headless Chromium, driven by Playwright
//! (`tests/browser/dashboard.mjs`), against a running node on real PostgreSQL. The script opens
//! the overview, dispatches a job from the form (a wrong argument first), sees it complete in
//! the jobs list, opens a failing job's error and logs, retries it, pauses a queue and renders
//! every other page; then, on a gateway that is not a development one, is refused with a wrong
//! key and let in with an admin API key. It writes a screenshot of each step to the folder it
//! prints.
//!
//! Needs `node`, `/usr/bin/chromium` and `tests/browser/node_modules` (`./dev.sh setup`
//! installs them; CI runs it).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use forge::config::{Role, Roles};
use forge::gateway::{ApiKeys, NewApiKey};
use forge::prelude::*;
use forge::testing::{TestDatabase, project_root};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
struct Greeting {
    name: String,
}

#[forge::job]
async fn greet_browser(_ctx: &JobContext, args: Greeting) -> Result<String, JobError> {
    tracing::info!(name = %args.name, "greeting");
    Ok(format!("hello, {}", args.name))
}

#[forge::job(max_attempts = 1)]
async fn print_invoice(_ctx: &JobContext, _args: Greeting) -> Result<(), JobError> {
    tracing::warn!(printer = "lobby", "about to fail");
    Err(JobError::retry("the printer is on fire"))
}

#[forge::cron("0 3 * * *", timezone = "Europe/Paris")]
async fn nightly_report(_ctx: &CronContext) -> Result<(), JobError> {
    Ok(())
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_works_in_a_real_browser() {
    let root = project_root();
    let script = root.join("tests/browser/dashboard.mjs");
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned());
    assert!(
        std::path::Path::new(&chromium).exists() && root.join("tests/browser/node_modules/playwright-core").exists(),
        "the browser test needs {chromium} and tests/browser/node_modules: run ./dev.sh setup"
    );

    let db = TestDatabase::new().await.expect("db");
    let mut config = db.config();
    // `function`: the node serves /ws, so the dashboard's pages follow their data live.
    config.node.roles = Roles::new([Role::Gateway, Role::Function, Role::Worker, Role::Scheduler]).expect("roles");
    config.worker.poll_interval = "100ms".parse().expect("duration");
    config.observability.flush_interval = "100ms".parse().expect("duration");
    config.observability.metrics_interval = "1s".parse().expect("duration");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let node = Forge::builder().config(config).listener(listener).build().expect("build").start().await.expect("start");
    let base = format!("http://{}", node.local_addr().expect("gateway address"));

    // A job that fails for good, with its logs stored, before the browser looks.
    let failing = PrintInvoice::dispatch(&node, Greeting { name: "lobby".into() }).await.expect("dispatch");
    let pool = db.pool().clone();
    let state = async |id: i64| -> String {
        sqlx::query_scalar("select state from forge_jobs where id = $1").bind(id).fetch_one(&pool).await.expect("state")
    };
    wait_for("the failing job to be discarded", async || state(failing.0).await == "discarded").await;
    node.flush_telemetry().await.expect("flush");

    // A second gateway over the same database that runs in production mode: the dashboard
    // asks for credentials there, even from this machine.
    let mut closed = db.config();
    closed.node.roles = Roles::new([Role::Gateway]).expect("roles");
    closed.project.mode = forge::config::Mode::Production;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed =
        Forge::builder().config(closed).listener(listener).build().expect("build").start().await.expect("start");
    let closed_base = format!("http://{}", closed.local_addr().expect("gateway address"));
    let mut key = NewApiKey::named("ops");
    key.roles = vec!["forge:admin".to_owned()];
    let admin_key = ApiKeys::new(db.pool().clone()).create(key).await.expect("key").key;

    let shots: PathBuf = root.join("target/dashboard-screenshots");
    println!("screenshots: {}", shots.display());
    let output = tokio::process::Command::new("node")
        .arg(&script)
        .arg(&base)
        .arg(&shots)
        .arg(failing.0.to_string())
        .arg(&closed_base)
        .arg(&admin_key)
        .env("CHROMIUM", &chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(240), output).await.expect("the browser run timed out");
    let output = output.expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(output.status.success(), "the browser run failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));

    // What the browser did is in the database.
    let dispatched: Vec<String> = sqlx::query_scalar("select state from forge_jobs where kind = 'greet_browser'")
        .fetch_all(db.pool())
        .await
        .expect("jobs");
    assert_eq!(dispatched, ["completed"; 3], "one job dispatched from the form and two for the live pages, completed");
    let attempts: i32 = sqlx::query_scalar("select jsonb_array_length(errors) from forge_jobs where id = $1")
        .bind(failing.0)
        .fetch_one(db.pool())
        .await
        .expect("errors");
    assert_eq!(attempts, 2, "retried once from its page");
    let paused: bool = sqlx::query_scalar("select paused_at is not null from forge_queues where name = 'default'")
        .fetch_one(db.pool())
        .await
        .expect("queue");
    assert!(paused, "the default queue was paused from the queues page");
    for page in [
        "overview",
        "dispatch",
        "jobs",
        "job-failed",
        "job-retried",
        "live-overview",
        "live-job",
        "queues",
        "crons",
        "logs",
        "metrics",
        "sign-in",
        "signed-in",
    ] {
        assert!(shots.join(format!("{page}.png")).exists(), "no screenshot of {page}");
    }
    closed.stop().await.expect("stop");
    node.stop().await.expect("stop");
}
