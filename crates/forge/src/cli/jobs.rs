//! `forge jobs list|show|retry|cancel|delete|run-now|dispatch`.

use chrono::Utc;
use clap::Subcommand;
use forge::ForgeConfig;
use forge::jobs::{self, CancelOutcome, DispatchOptions, JobFilter, JobId, JobState, JobsError, NewJob, Priority};
use serde_json::{Value, json};
use sqlx::PgPool;

use super::app_api::{self, Answer, Unreachable};
use super::output::{count, db_error, done, print_json};

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
    /// Make a discarded or cancelled job available again; with --filter, every such job the
    /// filter selects (at most 10,000 per call).
    Retry {
        /// The job's id.
        #[arg(required_unless_present = "filter", conflicts_with = "filter")]
        id: Option<i64>,
        /// KEY=VALUE (repeatable): state, kind, queue, tag, args (JSON the arguments contain),
        /// since, until (RFC 3339).
        #[arg(long, value_name = "KEY=VALUE")]
        filter: Vec<String>,
    },
    /// Cancel a job that has not finished (a running one through its worker); with --filter,
    /// every unfinished job the filter selects (at most 10,000 per call).
    Cancel {
        /// The job's id.
        #[arg(required_unless_present = "filter", conflicts_with = "filter")]
        id: Option<i64>,
        /// KEY=VALUE (repeatable), as for `retry`.
        #[arg(long, value_name = "KEY=VALUE")]
        filter: Vec<String>,
    },
    /// Delete a job that is not running.
    Delete {
        /// The job's id.
        id: i64,
    },
    /// Run a scheduled or retryable job now instead of at its time.
    RunNow {
        /// The job's id.
        id: i64,
    },
    /// Dispatch a job of a kind the application's nodes have registered. The running app checks
    /// the arguments against the kind's Rust type; without it, only that they are JSON.
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
        #[arg(long, conflicts_with = "run_at")]
        delay: Option<forge::config::Duration>,
        /// Run no earlier than this time (RFC 3339, such as 2026-12-24T08:00:00Z).
        #[arg(long)]
        run_at: Option<chrono::DateTime<Utc>>,
        /// The unique key (required for a kind unique by key; a live job with the same key is
        /// returned instead of a new one).
        #[arg(long)]
        unique_key: Option<String>,
        /// Tags, comma-separated (repeatable).
        #[arg(long, value_delimiter = ',')]
        tags: Vec<String>,
        /// Do not ask the running app: check the arguments as JSON only.
        #[arg(long)]
        offline: bool,
    },
}

impl JobsAction {
    /// Whether the command only reads (it then runs on a database with migrations pending).
    pub(crate) fn is_read_only(&self) -> bool {
        matches!(self, Self::List { .. } | Self::Show { .. })
    }

    /// What can be checked before connecting: `--args` is JSON, the filter is well-formed.
    pub(crate) fn check(&self) -> Result<(), String> {
        match self {
            Self::Dispatch { args, .. } => {
                serde_json::from_str::<Value>(args).map_err(|e| format!("--args is not valid JSON: {e}"))?;
            }
            Self::Retry { id: None, filter } | Self::Cancel { id: None, filter } => {
                parse_filter(filter)?;
            }
            _ => {}
        }
        Ok(())
    }
}

pub(crate) async fn jobs(pool: &PgPool, config: &ForgeConfig, action: JobsAction, json: bool) -> Result<(), String> {
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
        JobsAction::Retry { id: Some(id), .. } => {
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
        JobsAction::Retry { id: None, filter } => {
            let n = jobs::retry_all(pool, &parse_filter(&filter)?).await.map_err(db_error)?;
            done(
                json,
                json!({ "retried": n, "limit": jobs::MAX_BULK }),
                &format!(
                    "{} available again{}",
                    count(i64::try_from(n).unwrap_or(i64::MAX), "job", "jobs"),
                    bulk_note(n)
                ),
            )
        }
        JobsAction::Cancel { id: Some(id), .. } => match jobs::cancel(pool, JobId(id)).await.map_err(jobs_error)? {
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
        JobsAction::Cancel { id: None, filter } => {
            let n = jobs::cancel_all(pool, &parse_filter(&filter)?).await.map_err(db_error)?;
            done(
                json,
                json!({ "cancelled": n, "limit": jobs::MAX_BULK }),
                &format!(
                    "{} cancelled (running ones through their workers){}",
                    count(i64::try_from(n).unwrap_or(i64::MAX), "job", "jobs"),
                    bulk_note(n)
                ),
            )
        }
        JobsAction::Delete { id } => {
            if jobs::delete(pool, JobId(id)).await.map_err(jobs_error)? {
                return done(json, json!({ "id": id, "deleted": true }), &format!("job {id} deleted"));
            }
            Err(match jobs::find_job(pool, JobId(id)).await.map_err(db_error)? {
                None => format!("no job with id {id}"),
                Some(_) => format!("job {id} is running: cancel it first"),
            })
        }
        JobsAction::RunNow { id } => {
            if jobs::run_now(pool, JobId(id)).await.map_err(jobs_error)? {
                return done(json, json!({ "id": id, "state": "available" }), &format!("job {id} runs now"));
            }
            Err(match jobs::find_job(pool, JobId(id)).await.map_err(db_error)? {
                None => format!("no job with id {id}"),
                Some(j) => format!("job {id} is {}: only scheduled or retryable jobs can be run now", j.state),
            })
        }
        JobsAction::Dispatch { kind, args, queue, priority, delay, run_at, unique_key, tags, offline } => {
            let args: Value = serde_json::from_str(&args).map_err(|e| format!("--args is not valid JSON: {e}"))?;
            let run_at = match delay {
                Some(delay) => Some(
                    Utc::now()
                        + chrono::Duration::from_std(delay.as_std()).map_err(|_| "--delay is too long".to_owned())?,
                ),
                None => run_at,
            };
            let tags: Vec<String> = tags.into_iter().map(|t| t.trim().to_owned()).filter(|t| !t.is_empty()).collect();
            let note = if offline {
                "--offline".to_owned()
            } else {
                let body = json!({
                    "kind": kind, "args": args, "queue": queue, "priority": priority.map(Priority::as_i16),
                    "run_at": run_at, "unique_key": unique_key, "tags": tags,
                });
                match app_api::post(config, "/jobs", &body).await {
                    Ok(Answer::Done(answer)) => {
                        let id = answer["id"].as_i64().ok_or_else(|| format!("the app answered {answer}"))?;
                        let via = app_api::base_url(config);
                        return done(
                            json,
                            json!({ "id": id, "kind": kind, "queue": answer["queue"], "checked": "type", "via": via }),
                            &format!(
                                "dispatched job {id} ({kind}); its arguments were checked against the kind's Rust type by the app at {via}"
                            ),
                        );
                    }
                    Ok(Answer::Refused(why)) => return Err(why),
                    Err(Unreachable(why)) => why,
                }
            };
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
            let mut options = DispatchOptions::new().tags(tags);
            options.run_at = run_at;
            options.priority = priority;
            options.queue = queue;
            options.unique_key = unique_key;
            let job = NewJob::for_known(registered, args, &options).map_err(jobs_error)?;
            let mut conn = pool.acquire().await.map_err(db_error)?;
            let ids = jobs::insert_jobs(&mut conn, std::slice::from_ref(&job), true).await.map_err(jobs_error)?;
            let id = ids.first().ok_or("the job was not inserted")?;
            eprintln!("note: {note}: the arguments were checked as JSON only, not against {kind}'s Rust type");
            done(
                json,
                json!({ "id": id.0, "kind": kind, "queue": job.queue(), "checked": "json" }),
                &format!("dispatched job {} ({kind})", id.0),
            )
        }
    }
}

/// `--filter KEY=VALUE …` as a [`JobFilter`]; an empty filter is refused (it would select
/// every job).
fn parse_filter(pairs: &[String]) -> Result<JobFilter, String> {
    let mut filter = JobFilter::default();
    if pairs.is_empty() {
        return Err(
            "--filter is needed: say which jobs (state=discarded, kind=…, queue=…, tag=…, args={…}, since=…, until=…)"
                .to_owned(),
        );
    }
    for pair in pairs {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("--filter {pair:?}: write KEY=VALUE, such as state=discarded"))?;
        let time = |v: &str| {
            chrono::DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| format!("--filter {key}: {v:?} is not an RFC 3339 time: {e}"))
        };
        match key {
            "state" => filter.state = Some(value.parse().map_err(|e| format!("--filter state: {e}"))?),
            "kind" => filter.kind = Some(value.to_owned()),
            "queue" => filter.queue = Some(value.to_owned()),
            "tag" => filter.tag = Some(value.to_owned()),
            "args" => {
                let args: Value = serde_json::from_str(value).map_err(|e| format!("--filter args: not JSON: {e}"))?;
                if !args.is_object() {
                    return Err("--filter args: must be a JSON object (jobs whose arguments contain it)".to_owned());
                }
                filter.args = Some(args);
            }
            "since" => filter.since = Some(time(value)?),
            "until" => filter.until = Some(time(value)?),
            other => {
                return Err(format!(
                    "--filter {other:?} is not a filter key (state, kind, queue, tag, args, since, until)"
                ));
            }
        }
    }
    Ok(filter)
}

/// Says when a bulk action stopped at its limit.
fn bulk_note(n: u64) -> String {
    if i64::try_from(n).unwrap_or(i64::MAX) >= jobs::MAX_BULK {
        " (the limit per call: run it again for the rest)".to_owned()
    } else {
        String::new()
    }
}

fn jobs_error(e: JobsError) -> String {
    match e {
        JobsError::NotFound(id) => format!("no job with id {id}"),
        other => other.to_string(),
    }
}
