//! `forge jobs list|show|retry|cancel|dispatch`.

use chrono::Utc;
use clap::Subcommand;
use forge::jobs::{self, CancelOutcome, JobFilter, JobId, JobState, JobsError, NewJob, Priority};
use serde_json::{Value, json};
use sqlx::PgPool;

use super::output::{db_error, done, print_json};

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
    /// Whether the command only reads (it then runs on a database with migrations pending).
    pub(crate) fn is_read_only(&self) -> bool {
        matches!(self, Self::List { .. } | Self::Show { .. })
    }

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

fn jobs_error(e: JobsError) -> String {
    match e {
        JobsError::NotFound(id) => format!("no job with id {id}"),
        other => other.to_string(),
    }
}
