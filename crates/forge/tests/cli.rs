//! The `forge` command line as a user runs it: real processes, a fresh database each. (`forge
//! keys` is in cli_keys.rs; `.ci/forge-new.sh` builds and runs a generated app end to end.)

use std::path::Path;
use std::process::Output;

use forge::jobs::{JobRegistry, record_kinds};
use forge::prelude::*;
use forge::testing::{TestDatabase, project_root};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Serialize, Deserialize)]
struct Invoice {
    number: i64,
}

#[forge::job(queue = "billing", max_attempts = 4)]
async fn send_invoice(_ctx: &JobContext, _args: Invoice) -> Result<(), JobError> {
    Ok(())
}

/// A kind unique by an explicit key.
#[derive(Debug, Serialize, Deserialize)]
struct Refund {
    order: i64,
}

#[forge::job(unique(key))]
async fn refund_order(_ctx: &JobContext, _args: Refund) -> Result<(), JobError> {
    Ok(())
}

#[forge::cron("0 3 * * *")]
async fn nightly_cleanup(_ctx: &CronContext) -> Result<(), JobError> {
    Ok(())
}

async fn forge_in(dir: &Path, database_url: Option<&str>, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_forge"));
    command.arg("--project").arg(dir).args(args);
    match database_url {
        Some(url) => command.env("DATABASE_URL", url),
        None => command.env_remove("DATABASE_URL"),
    };
    command.output().await.expect("run forge")
}

/// `forge` in `dir`, looking for the running app on loopback port `app_port`.
async fn forge_at(dir: &Path, database_url: Option<&str>, app_port: u16, args: &[&str]) -> Output {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_forge"));
    command.arg("--project").arg(dir).args(args).env("FORGE_PORT", app_port.to_string());
    match database_url {
        Some(url) => command.env("DATABASE_URL", url),
        None => command.env_remove("DATABASE_URL"),
    };
    command.output().await.expect("run forge")
}

async fn forge(db: &TestDatabase, args: &[&str]) -> Output {
    forge_in(&project_root(), Some(db.url()), args).await
}

fn json(output: &Output) -> Value {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("JSON on stdout")
}

/// The one line a failed command prints.
fn error_line(output: &Output) -> String {
    assert!(
        !output.status.success(),
        "expected a failure: {} {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    stderr
}

#[tokio::test]
async fn forge_new_writes_a_project_and_never_overwrites() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = project_root();
    let root_arg = root.to_str().expect("utf-8 path");
    let out = forge_in(dir.path(), None, &["--json", "new", "shop", "--forge-path", root_arg]).await;
    let created = json(&out);
    let app = dir.path().join("shop");
    assert_eq!(created["created"], app.to_str().expect("path"));
    for file in [
        "Cargo.toml",
        "forge.toml",
        "README.md",
        ".gitignore",
        "src/main.rs",
        "src/signups.rs",
        "migrations/0001_init.sql",
        "tests/signups.rs",
        "Cargo.lock",
    ] {
        assert!(app.join(file).is_file(), "{file} was not written");
    }
    let manifest = std::fs::read_to_string(app.join("Cargo.toml")).expect("Cargo.toml");
    assert!(manifest.contains("name = \"shop\""), "{manifest}");
    let facade = root.canonicalize().expect("root").join("crates/forge");
    assert!(manifest.contains(&format!("forge = {{ path = \"{}\" }}", facade.display())), "{manifest}");
    assert!(!manifest.contains("{{"), "every placeholder is filled: {manifest}");
    let migration = std::fs::read_to_string(app.join("migrations/0001_init.sql")).expect("migration");
    assert!(migration.contains("-- @up") && migration.contains("-- @down"));

    // Again: refused, and the project is untouched.
    std::fs::write(app.join("src/main.rs"), "// mine").expect("edit");
    let again = forge_in(dir.path(), None, &["new", "shop"]).await;
    assert!(error_line(&again).contains("already exists"), "{again:?}");
    assert_eq!(std::fs::read_to_string(app.join("src/main.rs")).expect("main"), "// mine");

    // Without --forge-path: the released version.
    json(&forge_in(dir.path(), None, &["--json", "new", "plain"]).await);
    let manifest = std::fs::read_to_string(dir.path().join("plain/Cargo.toml")).expect("Cargo.toml");
    assert!(manifest.contains(&format!("forge = \"{}\"", env!("CARGO_PKG_VERSION"))), "{manifest}");

    for bad in ["Shop", "2shop", "my shop", "forge", "self", ""] {
        let out = forge_in(dir.path(), None, &["new", bad]).await;
        let line = error_line(&out);
        assert!(line.contains("name") || line.contains("reserved"), "{bad}: {line}");
        assert!(!dir.path().join(bad).exists() || bad.is_empty(), "{bad} was created");
    }
    let out = forge_in(dir.path(), None, &["new", "other", "--forge-path", "/nonexistent"]).await;
    assert!(error_line(&out).contains("--forge-path"));
    assert!(!dir.path().join("other").exists(), "nothing is left behind");
}

#[tokio::test]
async fn forge_migrate_new_numbers_the_next_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("migrations")).expect("dir");
    std::fs::write(dir.path().join("migrations/0007_old.sql"), "-- @up\n-- @down\n").expect("old");
    let out = json(&forge_in(dir.path(), None, &["--json", "migrate", "new", "add_orders"]).await);
    let path = dir.path().join("migrations/0008_add_orders.sql");
    assert_eq!(out["created"], path.to_str().expect("path"));
    let text = std::fs::read_to_string(&path).expect("file");
    assert!(text.contains("-- @up") && text.contains("-- @down"));
    assert!(
        error_line(&forge_in(dir.path(), None, &["migrate", "new", "Add Orders"]).await).contains("migration name")
    );
}

#[tokio::test]
async fn forge_jobs_lists_shows_retries_cancels_and_dispatches() {
    let db = TestDatabase::new().await.expect("db");
    // What a node records at start-up: the kinds it runs.
    record_kinds(db.pool(), &JobRegistry::collect(&[]), "node-1").await.expect("kinds");

    let dispatched = json(
        &forge(&db, &["--json", "jobs", "dispatch", "--offline", "send_invoice", "--args", r#"{"number": 7}"#]).await,
    );
    let id = dispatched["id"].as_i64().expect("id");
    let (queue, max_attempts, args): (String, i32, Value) =
        sqlx::query_as("select queue, max_attempts, args from forge_jobs where id = $1")
            .bind(id)
            .fetch_one(db.pool())
            .await
            .expect("row");
    assert_eq!(
        (queue.as_str(), max_attempts, args),
        ("billing", 4, serde_json::json!({"number": 7})),
        "the kind's defaults"
    );
    let later = json(
        &forge(
            &db,
            &[
                "--json",
                "jobs",
                "dispatch",
                "--offline",
                "send_invoice",
                "--args",
                r#"{"number": 8}"#,
                "--delay",
                "1h",
                "--priority",
                "high",
            ],
        )
        .await,
    );

    let listed = json(&forge(&db, &["--json", "jobs", "list", "--kind", "send_invoice"]).await);
    let ids: Vec<i64> = listed.as_array().expect("list").iter().map(|j| j["id"].as_i64().expect("id")).collect();
    assert_eq!(ids, [later["id"].as_i64().expect("id"), id]);
    let scheduled = json(&forge(&db, &["--json", "jobs", "list", "--state", "scheduled"]).await);
    assert_eq!(scheduled.as_array().map(Vec::len), Some(1));
    let table = forge(&db, &["jobs", "list"]).await;
    assert!(String::from_utf8_lossy(&table.stdout).starts_with("      ID  KIND"), "{table:?}");

    let shown = json(&forge(&db, &["--json", "jobs", "show", &id.to_string()]).await);
    assert_eq!((shown["kind"].as_str(), shown["state"].as_str()), (Some("send_invoice"), Some("available")));

    let cancelled = json(&forge(&db, &["--json", "jobs", "cancel", &id.to_string()]).await);
    assert_eq!(cancelled["state"], "cancelled");
    assert!(error_line(&forge(&db, &["jobs", "cancel", &id.to_string()]).await).contains("already finished"));
    let retried = json(&forge(&db, &["--json", "jobs", "retry", &id.to_string()]).await);
    assert_eq!(retried["state"], "available");
    assert!(error_line(&forge(&db, &["jobs", "retry", &id.to_string()]).await).contains("only discarded or cancelled"));

    // Errors: one clear line each, and nothing changes.
    let before: i64 = sqlx::query_scalar("select count(*) from forge_jobs").fetch_one(db.pool()).await.expect("count");
    let unknown = error_line(&forge(&db, &["jobs", "dispatch", "--offline", "send_invoise", "--args", "{}"]).await);
    assert!(unknown.contains(r#"unknown job kind "send_invoise""#) && unknown.contains("send_invoice"), "{unknown}");
    let bad_json = error_line(&forge(&db, &["jobs", "dispatch", "send_invoice", "--args", "{number: 7"]).await);
    assert!(bad_json.contains("--args is not valid JSON"), "{bad_json}");
    let after: i64 = sqlx::query_scalar("select count(*) from forge_jobs").fetch_one(db.pool()).await.expect("count");
    assert_eq!(before, after);
    assert_eq!(error_line(&forge(&db, &["jobs", "show", "999999"]).await), "error: no job with id 999999");
    let bad_state = forge(&db, &["jobs", "list", "--state", "sleeping"]).await;
    assert!(!bad_state.status.success());
}

/// A node of this test binary on a free port (gateway and functions only: nothing runs the
/// jobs), having recorded its job kinds and crons as every node does at start-up.
async fn gateway_node(db: &TestDatabase) -> (RunningForge, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let port = listener.local_addr().expect("addr").port();
    let mut config = db.config();
    config.node.roles = forge::config::Roles::new([Role::Gateway, Role::Function]).expect("roles");
    let node = Forge::builder().config(config).listener(listener).build().expect("build").start().await.expect("start");
    (node, port)
}

/// With the app running, `forge jobs dispatch` has it check the arguments against the kind's
/// Rust type (a wrong field is refused, naming it); without the app it says it could check JSON
/// only. `--unique-key`, `--tags` and `--run-at` apply; a kind unique by key dispatched without
/// a key is an error either way.
#[tokio::test]
async fn dispatch_is_checked_by_the_running_app_and_follows_the_kinds_rules() {
    let db = TestDatabase::new().await.expect("db");
    let (node, port) = gateway_node(&db).await;
    let root = project_root();
    let app = |args: &'static [&'static str]| forge_at(&root, Some(db.url()), port, args);

    let wrong = error_line(&app(&["jobs", "dispatch", "send_invoice", "--args", r#"{"number": "seven"}"#]).await);
    assert!(wrong.contains("number") && wrong.contains("send_invoice"), "{wrong}");
    let out = app(&[
        "--json",
        "jobs",
        "dispatch",
        "send_invoice",
        "--args",
        r#"{"number": 7}"#,
        "--tags",
        "vip,eu",
        "--run-at",
        "2030-01-02T03:04:05Z",
    ])
    .await;
    let typed = json(&out);
    assert_eq!(typed["checked"], "type", "{typed}");
    let (tags, run_at): (Vec<String>, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("select tags, run_at from forge_jobs where id = $1")
            .bind(typed["id"].as_i64().expect("id"))
            .fetch_one(db.pool())
            .await
            .expect("row");
    assert_eq!(tags, ["vip", "eu"]);
    assert_eq!(run_at.to_rfc3339(), "2030-01-02T03:04:05+00:00");

    let keyless = error_line(&app(&["jobs", "dispatch", "refund_order", "--args", r#"{"order": 1}"#]).await);
    assert!(keyless.contains("unique by key"), "{keyless}");
    let first = json(
        &app(&["--json", "jobs", "dispatch", "refund_order", "--args", r#"{"order": 1}"#, "--unique-key", "o-1"]).await,
    );
    let again = json(
        &app(&["--json", "jobs", "dispatch", "refund_order", "--args", r#"{"order": 1}"#, "--unique-key", "o-1"]).await,
    );
    assert_eq!(first["id"], again["id"], "a live job with the key is returned, not duplicated");
    node.stop().await.expect("stop");

    // The app is gone: JSON only, said on stderr; the kind's uniqueness rule still holds.
    let offline = app(&["--json", "jobs", "dispatch", "send_invoice", "--args", r#"{"number": "seven"}"#]).await;
    assert_eq!(json(&offline)["checked"], "json");
    let note = String::from_utf8_lossy(&offline.stderr);
    assert!(note.contains("checked as JSON only, not against send_invoice's Rust type"), "{note}");
    let keyless = error_line(&app(&["jobs", "dispatch", "refund_order", "--args", r#"{"order": 2}"#]).await);
    assert!(keyless.contains("unique by key"), "{keyless}");
    let count: i64 = sqlx::query_scalar("select count(*) from forge_jobs where kind = 'refund_order'")
        .fetch_one(db.pool())
        .await
        .expect("count");
    assert_eq!(count, 1);
}

/// What the dashboard does to queues, crons and many jobs at once, the CLI does too, each with
/// `--json`.
#[tokio::test]
async fn queues_crons_bulk_actions_delete_and_run_now() {
    let db = TestDatabase::new().await.expect("db");
    let (node, _) = gateway_node(&db).await;
    node.stop().await.expect("stop");
    let run = |args: Vec<String>| {
        let url = db.url().to_owned();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            forge_in(&project_root(), Some(&url), &args).await
        }
    };
    let cmd = |s: &str| s.split(' ').map(str::to_owned).collect::<Vec<_>>();

    // Queues.
    json(&run(cmd("--json jobs dispatch --offline send_invoice --args {\"number\":1}")).await);
    let paused = json(&run(cmd("--json queues pause billing")).await);
    assert_eq!(paused["paused"], true);
    let listed = json(&run(cmd("--json queues list")).await);
    let billing = listed.as_array().expect("rows").iter().find(|q| q["name"] == "billing").expect("billing").clone();
    assert!(billing["paused_at"].is_string() && billing["depth"]["available"] == 1, "{listed}");
    let table = String::from_utf8_lossy(&run(cmd("queues list")).await.stdout).into_owned();
    assert!(table.lines().any(|l| l.starts_with("billing") && l.contains("since")), "{table}");
    assert_eq!(json(&run(cmd("--json queues resume billing")).await)["was_paused"], true);

    // Crons: recorded by the node, listed with their next tick, paused, triggered.
    let crons = json(&run(cmd("--json crons list")).await);
    let nightly =
        crons.as_array().expect("rows").iter().find(|c| c["name"] == "nightly_cleanup").expect("recorded").clone();
    assert_eq!(nightly["expression"], "0 3 * * *");
    assert!(nightly["next"].as_str().is_some_and(|t| t.contains("T03:00:00")), "{nightly}");
    assert_eq!(json(&run(cmd("--json crons pause nightly_cleanup")).await)["paused"], true);
    let triggered = json(&run(cmd("--json crons trigger nightly_cleanup")).await);
    let job = triggered["job_id"].as_i64().expect("job id");
    let (kind, status): (String, String) = sqlx::query_as(
        "select j.kind, r.status from forge_jobs j join forge_cron_runs r on r.job_id = j.id where j.id = $1",
    )
    .bind(job)
    .fetch_one(db.pool())
    .await
    .expect("the job and its run");
    assert_eq!((kind.as_str(), status.as_str()), ("cron:nightly_cleanup", "triggered"));
    assert_eq!(json(&run(cmd("--json crons resume nightly_cleanup")).await)["was_paused"], true);
    let unknown = error_line(&run(cmd("crons trigger nightly")).await);
    assert!(unknown.contains("nightly_cleanup"), "{unknown}");

    // Bulk: cancel then retry every billing job; an empty filter is refused.
    json(&run(cmd("--json jobs dispatch --offline send_invoice --args {\"number\":2}")).await);
    let cancelled = json(&run(cmd("--json jobs cancel --filter queue=billing --filter kind=send_invoice")).await);
    assert_eq!(cancelled["cancelled"], 2);
    let retried = json(&run(cmd("--json jobs retry --filter state=cancelled --filter queue=billing")).await);
    assert_eq!(retried["retried"], 2);
    assert!(error_line(&run(cmd("jobs retry --filter colour=red")).await).contains("not a filter key"));
    assert!(!run(cmd("jobs retry")).await.status.success(), "an id or a filter is required");

    // Run now and delete.
    let later = json(&run(cmd("--json jobs dispatch --offline send_invoice --args {\"number\":3} --delay 1h")).await);
    let id = later["id"].as_i64().expect("id").to_string();
    assert_eq!(json(&run(cmd(&format!("--json jobs run-now {id}"))).await)["state"], "available");
    assert!(error_line(&run(cmd(&format!("jobs run-now {id}"))).await).contains("only scheduled or retryable"));
    assert_eq!(json(&run(cmd(&format!("--json jobs delete {id}"))).await)["deleted"], true);
    assert_eq!(error_line(&run(cmd(&format!("jobs delete {id}"))).await), format!("error: no job with id {id}"));
}

/// `forge keys token` signs a JWT the gateway accepts, with the configured secret; without one
/// it says there is nothing to sign with.
#[tokio::test]
async fn keys_token_mints_a_jwt_the_app_accepts() {
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("forge.toml"), "[auth]\njwt_secret = \"dev-secret\"\n").expect("forge.toml");
    let out =
        forge_in(dir.path(), None, &["--json", "keys", "token", "--sub", "u1", "--role", "admin", "--ttl", "1h"]).await;
    let minted = json(&out);
    let token = minted["token"].as_str().expect("token");
    let config = ForgeConfig::load(dir.path().join("forge.toml")).expect("config");
    let pool = sqlx::PgPool::connect_lazy("postgres://unused@127.0.0.1/none").expect("lazy");
    let auth = forge::gateway::Authenticator::new(&config.auth, pool).verify_jwt(token).expect("accepted");
    assert_eq!(auth.user_id(), Some("u1"));
    assert!(auth.has_role("admin"));

    let empty = tempfile::tempdir().expect("dir");
    let refused = error_line(&forge_in(empty.path(), None, &["keys", "token", "--sub", "u1"]).await);
    assert!(refused.contains("jwt_secret"), "{refused}");
}

/// `forge db create` creates the database DATABASE_URL names on its server, once.
#[tokio::test]
async fn db_create_makes_the_database_the_url_names() {
    let db = TestDatabase::new().await.expect("db");
    let name = format!("forge_cli_create_{}", std::process::id());
    // The test database's URL with another database name (and the same query, such as an
    // embedded cluster's socket folder).
    let (base, query) = db.url().split_once('?').map_or((db.url(), None), |(b, q)| (b, Some(q)));
    let (server, _) = base.rsplit_once('/').expect("a URL with a database");
    let url = format!("{server}/{name}{}", query.map(|q| format!("?{q}")).unwrap_or_default());
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("forge.toml"), "").expect("forge.toml");
    let created = json(&forge_in(dir.path(), Some(&url), &["--json", "db", "create"]).await);
    assert_eq!(created["created"], true, "{created}");
    let again = json(&forge_in(dir.path(), Some(&url), &["--json", "db", "create"]).await);
    assert_eq!(again["created"], false);
    let applied = json(&forge_in(dir.path(), Some(&url), &["--json", "migrate", "up"]).await);
    assert!(applied["applied"].as_array().is_some_and(|a| !a.is_empty()));
    sqlx::query(&format!("drop database {name} with (force)")).execute(db.pool()).await.expect("drop");
}

#[tokio::test]
async fn forge_status_shows_nodes_the_leader_queues_and_failures() {
    let db = TestDatabase::new().await.expect("db");
    let mut config = db.config();
    config.node.roles = forge::config::Roles::new([Role::Worker, Role::Scheduler]).expect("roles");
    let node = Forge::builder().config(config).build().expect("build").start().await.expect("start");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !node.is_leader() {
        assert!(std::time::Instant::now() < deadline, "the node never led");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    sqlx::query(
        "insert into forge_jobs (kind, queue, state, attempt, max_attempts, attempted_at, finalized_at, errors)
         values ('x', 'mail', 'discarded', 1, 1, now(), now(), jsonb_build_array(jsonb_build_object('attempt', 1, 'at', now(), 'message', 'boom'))),
                ('x', 'mail', 'available', 0, 1, null, null, '[]')",
    )
    .execute(db.pool())
    .await
    .expect("seed");
    forge::jobs::pause_queue(db.pool(), "mail", "test").await.expect("pause");

    let status = json(&forge(&db, &["--json", "status"]).await);
    assert_eq!(status["leader"], node.node_id());
    assert_eq!(status["queues"]["mail"]["available"], 1);
    assert_eq!(status["queues"]["mail"]["paused"], true);
    assert_eq!(status["last_hour"]["failed_attempts"], 1);
    assert_eq!(status["last_hour"]["discarded"], 1);
    let text = forge(&db, &["status"]).await;
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.starts_with(&format!("nodes: 1 live, leader {}", node.node_id())), "{text}");
    assert!(text.contains("PAUSED"), "{text}");
    node.stop().await.expect("stop");
}

#[tokio::test]
async fn without_a_database_every_command_says_so_in_one_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Port 1: nothing listens there.
    let url = "postgres://postgres@127.0.0.1:1/nowhere";
    for args in [&["status"][..], &["jobs", "list"], &["keys", "list"], &["migrate", "status"]] {
        let out = forge_in(dir.path(), Some(url), args).await;
        let line = error_line(&out);
        assert!(line.contains("127.0.0.1:1") || line.contains("connect"), "{args:?}: {line}");
    }
}

#[tokio::test]
async fn forge_run_outside_an_app_says_what_to_do() {
    let dir = tempfile::tempdir().expect("tempdir");
    let line = error_line(&forge_in(dir.path(), None, &["run"]).await);
    assert!(line.contains("no Cargo.toml") && line.contains("forge new"), "{line}");
    // Every command has help.
    for args in [
        &["--help"][..],
        &["new", "--help"],
        &["run", "--help"],
        &["jobs", "dispatch", "--help"],
        &["status", "--help"],
    ] {
        let out = forge_in(dir.path(), None, args).await;
        assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Usage"), "{args:?}");
    }
}

#[tokio::test]
async fn forge_migrate_applies_lists_and_rolls_back() {
    let db = TestDatabase::empty().await.expect("db");
    let status = json(&forge(&db, &["--json", "migrate", "status"]).await);
    let rows = status.as_array().expect("rows");
    assert!(rows.len() >= 8, "Forge's migrations and the app's: {status}");
    assert!(rows.iter().all(|r| r["applied_at"].is_null()), "nothing applied yet");

    let applied = json(&forge(&db, &["--json", "migrate", "up"]).await);
    assert_eq!(applied["applied"].as_array().map(Vec::len), Some(rows.len()));
    let again = json(&forge(&db, &["--json", "migrate", "up"]).await);
    assert_eq!(again["applied"], serde_json::json!([]), "nothing left to apply");

    let last = rows.last().expect("a migration")["migration"].as_str().expect("label").to_owned();
    let rolled = json(&forge(&db, &["--json", "migrate", "down"]).await);
    assert_eq!(rolled["rolled back"], serde_json::json!([last]));
    let status = json(&forge(&db, &["--json", "migrate", "status"]).await);
    let pending: Vec<&str> = status
        .as_array()
        .expect("rows")
        .iter()
        .filter(|r| r["applied_at"].is_null())
        .filter_map(|r| r["migration"].as_str())
        .collect();
    assert_eq!(pending, [last.as_str()]);
    let table = forge(&db, &["migrate", "status"]).await;
    assert!(String::from_utf8_lossy(&table.stdout).contains("pending"), "{table:?}");
}

/// An applied migration whose file is gone shows as `missing`; an edited one's error says to
/// restore the file and write a new migration (not to run `migrate up`); reading commands work
/// with migrations pending and warn, writing ones refuse.
#[tokio::test]
async fn migrate_status_shows_missing_files_and_reading_commands_work_with_pending_migrations() {
    let db = TestDatabase::empty().await.expect("db");
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("forge.toml"), "").expect("forge.toml");
    let migrations = dir.path().join("migrations");
    std::fs::create_dir(&migrations).expect("migrations/");
    let first = "-- @up\ncreate table a (id int);\n-- @down\ndrop table a;\n";
    std::fs::write(migrations.join("0001_a.sql"), first).expect("0001");
    std::fs::write(migrations.join("0002_b.sql"), "-- @up\ncreate table b (id int);\n").expect("0002");
    let run = |args: &'static [&'static str]| forge_in(dir.path(), Some(db.url()), args);
    json(&run(&["--json", "migrate", "up"]).await);

    std::fs::remove_file(migrations.join("0002_b.sql")).expect("remove 0002");
    let status = json(&run(&["--json", "migrate", "status"]).await);
    let missing: Vec<&str> = status
        .as_array()
        .expect("rows")
        .iter()
        .filter(|r| r["state"] == "missing")
        .filter_map(|r| r["migration"].as_str())
        .collect();
    assert_eq!(missing, ["app/0002_b"], "{status}");
    let table = String::from_utf8_lossy(&run(&["migrate", "status"]).await.stdout).into_owned();
    assert!(table.lines().any(|l| l.starts_with("app/0002_b") && l.contains("missing")), "{table}");

    // A pending migration: reading commands warn and answer, writing ones refuse.
    std::fs::write(migrations.join("0003_c.sql"), "-- @up\ncreate table c (id int);\n").expect("0003");
    let listed = run(&["--json", "jobs", "list"]).await;
    assert_eq!(json(&listed), serde_json::json!([]));
    let warning = String::from_utf8_lossy(&listed.stderr);
    assert!(warning.starts_with("warning: migrations not applied: app/0003_c"), "{warning}");
    let status = run(&["--json", "status"]).await;
    assert!(json(&status)["nodes"].is_array());
    let refused = error_line(&run(&["jobs", "retry", "1"]).await);
    assert!(refused.contains("app/0003_c") && refused.contains("forge migrate up"), "{refused}");

    // An edited applied migration: the advice is to restore it, never `migrate up`.
    std::fs::remove_file(migrations.join("0003_c.sql")).expect("remove 0003");
    std::fs::write(migrations.join("0001_a.sql"), first.replace("int", "bigint")).expect("edit 0001");
    let refused = error_line(&run(&["jobs", "retry", "1"]).await);
    assert!(refused.contains("app/0001_a") && refused.contains("restore its file"), "{refused}");
    assert!(refused.contains("forge migrate new") && !refused.contains("migrate up"), "{refused}");
    let up = error_line(&run(&["migrate", "up"]).await);
    assert!(up.contains("restore its file"), "{up}");
    let table = String::from_utf8_lossy(&run(&["migrate", "status"]).await.stdout).into_owned();
    assert!(table.lines().any(|l| l.starts_with("app/0001_a") && l.contains("changed")), "{table}");
}

#[tokio::test]
async fn forge_config_prints_the_configuration_and_names_a_bad_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("forge.toml"),
        "[auth]\njwt_secret = \"s3cret-s3cret-s3cret-s3cret-s3cret\"\n[database]\nurl = \"postgres://app:hunter2@db.example/app\"\n",
    )
    .expect("write");
    let shown = json(&forge_in(dir.path(), None, &["--json", "config"]).await);
    assert_eq!(shown["auth"]["jwt_secret"], "<redacted>");
    let url = shown["database"]["url"].as_str().expect("url");
    assert!(!url.contains("hunter2") && url.contains("db.example"), "{url}");
    assert_eq!(shown["gateway"]["port"], 8080);

    std::fs::write(dir.path().join("forge.toml"), "[gateway]\nport = 0\n").expect("write");
    let line = error_line(&forge_in(dir.path(), None, &["config"]).await);
    assert!(line.contains("forge.toml:2") && line.contains("gateway.port"), "{line}");

    // What parses but cannot run is refused as a node's build refuses it.
    std::fs::write(dir.path().join("forge.toml"), "[node]\nheartbeat_interval = \"5s\"\ndead_after = \"6s\"\n")
        .expect("write");
    let line = error_line(&forge_in(dir.path(), None, &["config"]).await);
    assert!(line.contains("`node.dead_after`") && line.contains("twice"), "{line}");
}
