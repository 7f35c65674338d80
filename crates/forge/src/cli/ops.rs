//! `forge jobs …`, `forge status`, `forge run` and `forge migrate new`.

use std::path::Path;

use chrono::Utc;
use clap::Subcommand;
use forge::jobs::{self, CancelOutcome, JobFilter, JobId, JobState, JobsError, NewJob, Priority};
use serde_json::{Value, json};
use sqlx::PgPool;

/// `forge jobs …`.
#[derive(Debug, Subcommand)]
pub(crate) enum JobsAction {
    /// List jobs, newest first.
    List {
        /// Only jobs in this state (scheduled, available, running, retryable, completed,
        /// discarded, cancelled).
        #[arg(long)]
        state: Option<JobState>,
        /// Only jobs of this kind.
        #[arg(long)]
        kind: Option<String>,
        /// Only jobs of this queue.
        #[arg(long)]
        queue: Option<String>,
        /// How many (1 to 500).
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i64).range(1..=500))]
        limit: i64,
        /// Only jobs with an id below this one (the next page).
        #[arg(long)]
        before: Option<i64>,
    },
    /// Show one job: arguments, output, every failed attempt's error.
    Show {
        /// The job's id.
        id: i64,
    },
    /// Make a discarded or cancelled job available again.
    Retry {
        /// The job's id.
        id: i64,
    },
    /// Cancel a job that has not finished (a running one through its worker).
    Cancel {
        /// The job's id.
        id: i64,
    },
    /// Dispatch a job of a kind the application's nodes have registered.
    Dispatch {
        /// The job kind.
        kind: String,
        /// Its arguments, as JSON.
        #[arg(long, default_value = "null")]
        args: String,
        /// The queue (default: the kind's).
        #[arg(long)]
        queue: Option<String>,
        /// critical, high, normal, low or background.
        #[arg(long)]
        priority: Option<Priority>,
        /// Run no earlier than this long from now, such as "10m".
        #[arg(long)]
        delay: Option<forge::config::Duration>,
    },
}

impl JobsAction {
    /// What can be checked before connecting: `--args` is JSON.
    pub(crate) fn check(&self) -> Result<(), String> {
        if let Self::Dispatch { args, .. } = self {
            serde_json::from_str::<Value>(args).map_err(|e| format!("--args is not valid JSON: {e}"))?;
        }
        Ok(())
    }
}

pub(crate) async fn jobs(pool: &PgPool, action: JobsAction, json: bool) -> Result<(), String> {
    match action {
        JobsAction::List { state, kind, queue, limit, before } => {
            let filter = JobFilter { state, kind, queue, ..Default::default() };
            let rows = jobs::list_jobs(pool, &filter, before.map(JobId), limit).await.map_err(db_error)?;
            if json {
                return print_json(&rows);
            }
            println!(
                "{:>8}  {:<24} {:<12} {:<10} {:>8}  {:<25} LAST ERROR",
                "ID", "KIND", "QUEUE", "STATE", "ATTEMPTS", "CREATED"
            );
            for j in &rows {
                println!(
                    "{:>8}  {:<24} {:<12} {:<10} {:>8}  {:<25} {}",
                    j.id,
                    j.kind,
                    j.queue,
                    j.state,
                    format!("{}/{}", j.attempt, j.max_attempts),
                    j.created_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    j.last_error().map(|e| e.message.chars().take(60).collect::<String>()).unwrap_or_default(),
                );
            }
            if rows.is_empty() {
                println!("(no jobs)");
            }
            Ok(())
        }
        JobsAction::Show { id } => {
            let job = jobs::find_job(pool, JobId(id)).await.map_err(db_error)?.ok_or(format!("no job with id {id}"))?;
            if json {
                return print_json(&job);
            }
            let time = |t: Option<chrono::DateTime<chrono::Utc>>| t.map_or("-".to_owned(), |t| t.to_rfc3339());
            let fields: [(&str, String); 12] = [
                ("id", job.id.to_string()),
                ("kind", job.kind.clone()),
                ("queue", job.queue.clone()),
                ("state", job.state.to_string()),
                ("priority", job.priority.to_string()),
                ("attempt", job.attempt.to_string()),
                ("max_attempts", job.max_attempts.to_string()),
                ("created_at", time(Some(job.created_at))),
                ("run_at", time(Some(job.run_at))),
                ("attempted_at", time(job.attempted_at)),
                ("finalized_at", time(job.finalized_at)),
                ("attempted_by", job.attempted_by.clone().unwrap_or_else(|| "-".to_owned())),
            ];
            for (key, value) in fields {
                println!("{key:<13} {value}");
            }
            println!("args          {}", job.args);
            println!("output        {}", job.output.as_ref().map_or("-".to_owned(), Value::to_string));
            for e in &job.errors {
                println!("error         attempt {} at {} ({}): {}", e.attempt, e.at.to_rfc3339(), e.kind, e.message);
            }
            Ok(())
        }
        JobsAction::Retry { id } => {
            if !jobs::retry(pool, JobId(id)).await.map_err(jobs_error)? {
                let job = jobs::find_job(pool, JobId(id)).await.map_err(db_error)?;
                return Err(match job {
                    None => format!("no job with id {id}"),
                    Some(j) => {
                        format!("job {id} is {}: only discarded or cancelled jobs can be retried", j.state)
                    }
                });
            }
            done(json, json!({ "id": id, "state": "available" }), &format!("job {id} is available again"))
        }
        JobsAction::Cancel { id } => match jobs::cancel(pool, JobId(id)).await.map_err(jobs_error)? {
            CancelOutcome::Cancelled => {
                done(json, json!({ "id": id, "state": "cancelled" }), &format!("job {id} cancelled"))
            }
            CancelOutcome::Requested => done(
                json,
                json!({ "id": id, "state": "running", "cancel_requested": true }),
                &format!("job {id} is running: its worker was told to stop it"),
            ),
            CancelOutcome::AlreadyFinished => Err(format!("job {id} has already finished")),
        },
        JobsAction::Dispatch { kind, args, queue, priority, delay } => {
            let args: Value = serde_json::from_str(&args).map_err(|e| format!("--args is not valid JSON: {e}"))?;
            let known = jobs::known_kinds(pool).await.map_err(db_error)?;
            let Some(registered) = known.iter().find(|k| k.kind == kind) else {
                let names: Vec<&str> = known.iter().map(|k| k.kind.as_str()).collect();
                return Err(if names.is_empty() {
                    format!(
                        "unknown job kind {kind:?}: no node of this application has registered its kinds yet (start it once)"
                    )
                } else {
                    format!("unknown job kind {kind:?}; the application's kinds are: {}", names.join(", "))
                });
            };
            let mut job = NewJob::raw(&registered.kind, queue.unwrap_or_else(|| registered.queue.clone()), args)
                .with_max_attempts(u32::try_from(registered.max_attempts).unwrap_or(1));
            if let Some(priority) = priority {
                job = job.with_priority(priority);
            }
            if let Some(delay) = delay {
                let delay = chrono::Duration::from_std(delay.as_std()).map_err(|_| "--delay is too long".to_owned())?;
                job = job.with_run_at(Utc::now() + delay);
            }
            let mut conn = pool.acquire().await.map_err(db_error)?;
            let ids = jobs::insert_jobs(&mut conn, std::slice::from_ref(&job), true).await.map_err(jobs_error)?;
            let id = ids.first().ok_or("the job was not inserted")?;
            done(json, json!({ "id": id.0, "kind": kind }), &format!("dispatched job {} ({kind})", id.0))
        }
    }
}

/// `forge status`: nodes and the leader, queue depths, failures in the last hour.
pub(crate) async fn status(pool: &PgPool, json: bool) -> Result<(), String> {
    let nodes = forge::cluster::nodes(pool).await.map_err(db_error)?;
    let summaries = jobs::queue_summaries(pool).await.map_err(db_error)?;
    let hour_ago = Utc::now() - chrono::Duration::hours(1);
    let (failed_attempts, discarded) = jobs::failures_since(pool, hour_ago).await.map_err(db_error)?;
    let live: Vec<&Value> =
        nodes.iter().filter(|n| matches!(n["status"].as_str(), Some("running" | "draining"))).collect();
    let leader = nodes.iter().find(|n| n["leader"] == true).and_then(|n| n["id"].as_str());
    let queues: serde_json::Map<String, Value> = summaries
        .into_iter()
        .map(|(name, q)| {
            let mut depth = json!(q.depth);
            if q.paused_at.is_some() {
                depth["paused"] = true.into();
            }
            (name, depth)
        })
        .collect();
    if json {
        return print_json(&json!({
            "nodes": nodes,
            "leader": leader,
            "queues": queues,
            "last_hour": { "failed_attempts": failed_attempts, "discarded": discarded },
        }));
    }
    println!("nodes: {} live, leader {}", live.len(), leader.unwrap_or("none"));
    for n in &nodes {
        let roles: Vec<&str> = n["roles"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let age = n["heartbeat_age_s"].as_f64().unwrap_or(0.0);
        println!(
            "  {:<32} {:<9} {:<28} heartbeat {:.1}s ago{}",
            text(&n["id"]),
            text(&n["status"]),
            roles.join(","),
            age,
            if n["leader"] == true { "  (leader)" } else { "" }
        );
    }
    println!("queues:");
    if queues.is_empty() {
        println!("  (no unfinished jobs)");
    }
    for (name, depth) in &queues {
        let count = |s: &str| depth[s].as_i64().unwrap_or(0);
        println!(
            "  {:<20} available {:>6}  scheduled {:>6}  running {:>6}  retryable {:>6}{}",
            name,
            count("available"),
            count("scheduled"),
            count("running"),
            count("retryable"),
            if depth["paused"] == true { "  PAUSED" } else { "" }
        );
    }
    println!("last hour: {failed_attempts} failed attempts, {discarded} jobs discarded");
    Ok(())
}

/// `forge migrate new NAME`: the next numbered file in the migrations folder.
pub(crate) fn new_migration(dir: &Path, name: &str, json: bool) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(format!("{name:?} is not a valid migration name: use lowercase letters, digits and `_`"));
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut last = 0u32;
    for entry in std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))? {
        let file = entry.map_err(|e| e.to_string())?.file_name();
        let file = file.to_string_lossy();
        if let Some((number, _)) = file.strip_suffix(".sql").and_then(|f| f.split_once('_'))
            && let Ok(n) = number.parse::<u32>()
        {
            last = last.max(n);
        }
    }
    let path = dir.join(format!("{:04}_{name}.sql", last + 1));
    let body = format!("-- {name}\n\n-- @up\n\n\n-- @down\n\n");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    std::io::Write::write_all(&mut file, body.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    done(json, json!({ "created": path }), &format!("created {}", path.display()))
}

/// `forge run`: builds and runs the application in `project` with cargo, passing the
/// environment and `args`; answers its exit status.
pub(crate) async fn run_app(project: &Path, release: bool, args: &[String]) -> Result<std::process::ExitCode, String> {
    if !project.join("Cargo.toml").is_file() {
        return Err(format!(
            "no Cargo.toml in {}: run `forge run` in a Forge application's folder (`forge new NAME` creates one)",
            project.display()
        ));
    }
    let mut command = tokio::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.arg("run").current_dir(project);
    if release {
        command.arg("--release");
    }
    command.arg("--").args(args);
    let mut child = command.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => "cargo not found: install Rust from https://rustup.rs".to_owned(),
        _ => format!("cannot run cargo: {e}"),
    })?;
    // `cargo run` becomes the application (it execs it), so the child is the app. A SIGTERM
    // sent to `forge run` is passed on once (the app drains and exits); Ctrl-C reaches the whole
    // terminal's process group, the app included, so it is only waited out here.
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(|e| format!("cannot handle signals: {e}"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle signals: {e}"))?;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status.map_err(|e| format!("cannot wait for the app: {e}"))?,
            _ = term.recv() => {
                if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
                    // SAFETY: kill(2) with a pid this process spawned and has not reaped yet.
                    unsafe { libc::kill(pid, libc::SIGTERM) };
                }
            }
            _ = int.recv() => {}
        }
    };
    Ok(match status.code() {
        Some(0) => std::process::ExitCode::SUCCESS,
        Some(code) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => std::process::ExitCode::from(130),
    })
}

fn done(json: bool, value: Value, message: &str) -> Result<(), String> {
    if json {
        print_json(&value)
    } else {
        println!("{message}");
        Ok(())
    }
}

fn print_json(value: &impl serde::Serialize) -> Result<(), String> {
    println!("{}", serde_json::to_string(value).map_err(|e| e.to_string())?);
    Ok(())
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn db_error(e: sqlx::Error) -> String {
    format!("database error: {e}")
}

fn jobs_error(e: JobsError) -> String {
    match e {
        JobsError::NotFound(id) => format!("no job with id {id}"),
        other => other.to_string(),
    }
}
